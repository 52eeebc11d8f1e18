/* Witness cosignatures (keyless/witness.h): the signed message byte for byte, the cosignature
 * file's codec (round trip, the exact encoding, every strictness rule, truncations), merging, and
 * the keys (Ed25519 and ECDSA P-256: sign, verify, refuse another second/root/key, save and
 * load, another curve refused). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "keyless/tlv.h"
#include "keyless/witness.h"
#include "testutil.h"

static kl_imprint_t imp(int alg, uint8_t fill) {
  kl_imprint_t r = {0};
  r.alg = (uint8_t)alg;
  r.len = (uint8_t)kl_hash_digest_len(alg);
  memset(r.digest, fill, r.len);
  return r;
}

static void test_message(void **state) {
  (void)state;
  kl_imprint_t root = imp(KL_HASH_SHA256, 0xAB);
  uint8_t msg[KL_WITNESS_MSG_MAX];
  size_t n = kl_witness_message(UINT64_C(0x0102030405060708), &root, msg);
  assert_int_equal(n, 19 + 8 + 33);
  assert_memory_equal(msg, "keyless witness v1\0", 19);
  const uint8_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  assert_memory_equal(msg + 19, t, 8);
  assert_int_equal(msg[27], 0x01);
  for (size_t i = 28; i < n; i++) assert_int_equal(msg[i], 0xAB);
  /* the example of docs/formats.md §8.1 */
  kl_imprint_t r11 = imp(KL_HASH_SHA256, 0x11);
  size_t hl;
  uint8_t *want = tu_hex("6b65796c657373207769746e65737320763100000000006553f10001", &hl);
  assert_int_equal(kl_witness_message(1700000000, &r11, msg), hl + 32);
  assert_memory_equal(msg, want, hl);
  free(want);
  kl_imprint_t r512 = imp(KL_HASH_SHA512, 1);
  assert_int_equal(kl_witness_message(0, &r512, msg), 19 + 8 + 65);
}

static kl_cosig_t fake(uint8_t id, uint8_t alg, uint8_t len) {
  kl_cosig_t c = {0};
  c.id = imp(KL_HASH_SHA256, id);
  c.alg = alg;
  c.sig_len = len;
  memset(c.sig, id, len);
  return c;
}

static void encode(const kl_witfile_t *f, kl_buf_t *b) {
  kl_buf_reset(b);
  assert_int_equal(kl_witfile_encode(b, f, NULL), 0);
}

/* decode must fail with KL_EFORMAT (KL_ECRITICAL: an unknown element) and a message holding want. */
static void refused(const uint8_t *p, size_t n, const char *want) {
  kl_witfile_t g;
  kl_err_t e = {0};
  int r = kl_witfile_decode(p, n, &g, &e);
  if (r != KL_EFORMAT && r != KL_ECRITICAL) fail_msg("decoded (%d): expected '%s'", r, want);
  if (strstr(e.msg, want) == NULL) fail_msg("'%s' does not say '%s'", e.msg, want);
  assert_int_equal(g.n, 0);
  assert_null(g.pubs);
}

static void test_codec(void **state) {
  (void)state;
  kl_witfile_t f = {0}, g;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  bool added;
  kl_imprint_t r1 = imp(KL_HASH_SHA256, 0x11), r2 = imp(KL_HASH_SHA512, 0x22);
  kl_cosig_t c5 = fake(5, KL_WITNESS_ED25519, 64), c3 = fake(3, KL_WITNESS_ECDSA_P256, 71);
  /* out of order on purpose: add keeps seconds and ids sorted */
  assert_int_equal(kl_witfile_add(&f, 2000, &r2, &c5, &added, &e), 0);
  assert_true(added);
  assert_int_equal(kl_witfile_add(&f, 1000, &r1, &c5, &added, &e), 0);
  assert_int_equal(kl_witfile_add(&f, 1000, &r1, &c3, &added, &e), 0);
  assert_int_equal(kl_witfile_add(&f, 1000, &r1, &c3, &added, &e), 0);
  assert_false(added);
  assert_int_equal(kl_witfile_add(&f, 1000, &r2, &c3, &added, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "second 1000: the file holds cosignatures of root 011111"));
  assert_int_equal(f.n, 2);
  assert_int_equal(f.pubs[0].time, 1000);
  assert_int_equal(f.pubs[0].n, 2);
  assert_int_equal(f.pubs[0].cosig[0].id.digest[0], 3);
  assert_null(kl_witfile_find(&f, 1500));
  assert_int_equal(kl_witfile_find(&f, 2000)->n, 1);

  encode(&f, &b);
  assert_memory_equal(b.p, "KLWITNS1", 8);
  assert_int_equal(b.p[8], 0x8C); /* TLV16, type 0x0C10 */
  assert_int_equal(b.p[9], 0x10);
  assert_int_equal(b.p[12], 0x01); /* second 1000 = 0x03E8 */
  assert_int_equal(b.p[13], 2);
  assert_int_equal(b.p[14], 0x03);
  assert_int_equal(b.p[15], 0xE8);
  assert_int_equal(kl_witfile_decode(b.p, b.len, &g, &e), 0);
  assert_int_equal(g.n, 2);
  assert_int_equal(g.pubs[1].time, 2000);
  assert_true(kl_imprint_eq(&g.pubs[1].root, &r2));
  assert_int_equal(g.pubs[0].cosig[0].sig_len, 71);
  assert_memory_equal(g.pubs[0].cosig[1].sig, c5.sig, 64);
  kl_buf_t b2 = KL_BUF_INIT;
  encode(&g, &b2);
  assert_int_equal(b2.len, b.len);
  assert_memory_equal(b2.p, b.p, b.len);
  kl_witfile_free(&g);

  /* every truncation fails cleanly, but for the bare magic (an empty file) and the first record */
  size_t first = 8 + 4 + ((size_t)b.p[10] << 8 | b.p[11]);
  for (size_t n = 0; n < b.len; n++) {
    int r = kl_witfile_decode(b.p, n, &g, &e);
    if (n == 8 || n == first) {
      assert_int_equal(r, 0);
      assert_int_equal(g.n, n == 8 ? 0 : 1);
    } else {
      assert_int_equal(r, KL_EFORMAT);
    }
    kl_witfile_free(&g);
  }
  /* trailing garbage, another magic, a non-canonical flag */
  uint8_t *p = malloc(b.len + 1);
  memcpy(p, b.p, b.len);
  p[b.len] = 0;
  refused(p, b.len + 1, "cosignature file");
  p[0] = 'X';
  refused(p, b.len, "does not start with \"KLWITNS1\"");
  memcpy(p, b.p, b.len);
  p[8] |= KL_TLV_FLAG_N;
  refused(p, b.len, "not in the canonical encoding");
  free(p);

  /* records out of order, repeated ids, bad children: encoded by hand through the encoder */
  kl_witfile_t h = f;
  kl_witpub_t swap[2] = {f.pubs[1], f.pubs[0]};
  h.pubs = swap;
  encode(&h, &b2);
  refused(b2.p, b2.len, "seconds not in increasing order");
  swap[0] = f.pubs[0];
  swap[1] = f.pubs[0];
  encode(&h, &b2);
  refused(b2.p, b2.len, "publication 1000 at offset");
  kl_witpub_t one = f.pubs[0];
  h.pubs = &one;
  h.n = 1;
  one.cosig[1] = one.cosig[0];
  encode(&h, &b2);
  refused(b2.p, b2.len, "witness ids not in increasing order (or repeated)");
  one = f.pubs[0];
  one.cosig[1].sig_len = 63; /* Ed25519 */
  encode(&h, &b2);
  refused(b2.p, b2.len, "a signature of 63 bytes");
  one = f.pubs[0];
  one.cosig[0].alg = 3;
  encode(&h, &b2);
  refused(b2.p, b2.len, "unknown signature algorithm 3");
  one = f.pubs[0];
  one.cosig[0].id = imp(KL_HASH_SHA512, 3);
  encode(&h, &b2);
  refused(b2.p, b2.len, "not a SHA-256 imprint");
  one = f.pubs[0];
  one.root.len = 20; /* SHA-256 with 20 bytes */
  encode(&h, &b2);
  refused(b2.p, b2.len, "root");

  /* an unknown child, and a non-minimal integer, written by hand */
  kl_buf_reset(&b2);
  kl_buf_put(&b2, "KLWITNS1", 8);
  size_t mark = kl_tlv_open(&b2);
  kl_tlv_put_uint(&b2, 0x01, 0, 1000);
  uint8_t raw[KL_IMPRINT_MAX];
  kl_tlv_put_bytes(&b2, 0x02, 0, raw, kl_imprint_to_bytes(&r1, raw));
  kl_tlv_put_uint(&b2, 0x07, 0, 1);
  kl_tlv_close(&b2, mark, KL_TLV_WITNESS_PUB, 0);
  refused(b2.p, b2.len, "unknown critical element 0x07");
  kl_buf_reset(&b2);
  kl_buf_put(&b2, "KLWITNS1", 8);
  mark = kl_tlv_open(&b2);
  const uint8_t two[2] = {0, 5};
  kl_tlv_put_bytes(&b2, 0x01, 0, two, 2);
  kl_tlv_put_bytes(&b2, 0x02, 0, raw, kl_imprint_to_bytes(&r1, raw));
  kl_tlv_close(&b2, mark, KL_TLV_WITNESS_PUB, 0);
  refused(b2.p, b2.len, "");
  kl_buf_free(&b2);
  kl_buf_free(&b);
  kl_witfile_free(&f);
}

static void test_keys(void **state) {
  (void)state;
  char dir[128], kp[256], pp[256];
  kl_err_t e = {0};
  kl_imprint_t root = imp(KL_HASH_SHA256, 0x42), other = imp(KL_HASH_SHA256, 0x43);
  tu_mkdtemp("witness", dir, sizeof dir);
  for (int alg = KL_WITNESS_ED25519; alg <= KL_WITNESS_ECDSA_P256; alg++) {
    kl_witkey_t *k, *k2, *pub, *pub2;
    kl_cosig_t c;
    assert_int_equal(kl_witkey_generate(alg, &k, &e), 0);
    assert_int_equal(kl_witkey_generate(alg, &k2, &e), 0);
    assert_int_equal(kl_witkey_alg(k), alg);
    assert_int_equal(kl_witkey_id(k)->alg, KL_HASH_SHA256);
    assert_false(kl_imprint_eq(kl_witkey_id(k), kl_witkey_id(k2)));
    assert_int_equal(kl_witkey_sign(k, 1700000000, &root, &c, &e), 0);
    assert_int_equal(c.alg, alg);
    if (alg == KL_WITNESS_ED25519) assert_int_equal(c.sig_len, 64);
    assert_int_equal(kl_witkey_verify(k, 1700000000, &root, &c, &e), 0);
    assert_int_equal(kl_witkey_verify(k, 1700000001, &root, &c, &e), KL_EPKI);
    assert_non_null(strstr(e.msg, "the cosignature of second 1700000001 is not valid"));
    assert_int_equal(kl_witkey_verify(k, 1700000000, &other, &c, &e), KL_EPKI);
    assert_int_equal(kl_witkey_verify(k2, 1700000000, &root, &c, &e), KL_EPKI);
    assert_non_null(strstr(e.msg, "not of this key"));
    kl_cosig_t bad = c;
    bad.sig[bad.sig_len / 2] ^= 1;
    assert_int_equal(kl_witkey_verify(k, 1700000000, &root, &bad, &e), KL_EPKI);
    bad = c;
    bad.alg = (uint8_t)(3 - alg);
    assert_int_equal(kl_witkey_verify(k, 1700000000, &root, &bad, &e), KL_EPKI);

    snprintf(kp, sizeof kp, "%s/k%d.key", dir, alg);
    snprintf(pp, sizeof pp, "%s/k%d.pub", dir, alg);
    assert_int_equal(kl_witkey_save(k, true, kp, &e), 0);
    assert_int_equal(kl_witkey_save(k, false, pp, &e), 0);
    assert_int_equal(kl_witkey_save(k2, true, kp, &e), KL_ESTATE); /* never replaced */
    assert_int_equal(kl_witkey_load_public(pp, &pub, &e), 0);
    assert_int_equal(kl_witkey_load_public(kp, &pub2, &e), 0); /* the public half of a private key */
    assert_true(kl_imprint_eq(kl_witkey_id(pub), kl_witkey_id(k)));
    assert_true(kl_imprint_eq(kl_witkey_id(pub2), kl_witkey_id(k)));
    assert_int_equal(kl_witkey_verify(pub, 1700000000, &root, &c, &e), 0);
    assert_int_not_equal(kl_witkey_sign(pub, 1, &root, &c, &e), 0); /* no private half */
    kl_witkey_free(pub2);
    assert_int_equal(kl_witkey_load_private(kp, &pub2, &e), 0);
    assert_true(kl_imprint_eq(kl_witkey_id(pub2), kl_witkey_id(k)));
    assert_int_equal(kl_witkey_load_private(pp, &k2 /* untouched on failure */, &e), KL_EFORMAT);
    kl_witkey_free(pub2);
    kl_witkey_free(pub);
    kl_witkey_free(k2);
    kl_witkey_free(k);
  }
  /* P-384 is not a witness key */
  EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
  assert_non_null(p384);
  snprintf(kp, sizeof kp, "%s/p384.key", dir);
  FILE *f = fopen(kp, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_PrivateKey(f, p384, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
  EVP_PKEY_free(p384);
  kl_witkey_t *k;
  assert_int_equal(kl_witkey_load_private(kp, &k, &e), KL_EUNSUPPORTED);
  assert_non_null(strstr(e.msg, "Ed25519 or ECDSA P-256"));
  snprintf(kp, sizeof kp, "%s/missing.key", dir);
  assert_int_equal(kl_witkey_load_public(kp, &k, &e), KL_ENOTFOUND);
  assert_int_equal(tu_rmrf(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_message),
      cmocka_unit_test(test_codec),
      cmocka_unit_test(test_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
