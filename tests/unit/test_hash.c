/* Hash algorithm table, digests against published vectors, HMAC (RFC 4231), imprints. */
#include <string.h>

#include "keyless/hash.h"
#include "testutil.h"

static void expect_digest(int alg, const char *msg, const char *hex) {
  kl_imprint_t imp;
  char out[2 * KL_IMPRINT_MAX + 1];
  assert_int_equal(kl_hash(alg, msg, strlen(msg), &imp, NULL), 0);
  assert_int_equal(imp.alg, alg);
  assert_int_equal(imp.len, kl_hash_digest_len(alg));
  kl_hex_encode(imp.digest, imp.len, out);
  assert_string_equal(out, hex);
}

/* FIPS 180 / FIPS 202 / ISO 10118-3 / GB/T 32905 "abc" vectors. */
static void test_abc_vectors(void **state) {
  (void)state;
  expect_digest(KL_HASH_SHA1, "abc", "a9993e364706816aba3e25717850c26c9cd0d89d");
  expect_digest(KL_HASH_SHA256, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  expect_digest(KL_HASH_RIPEMD160, "abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc");
  expect_digest(KL_HASH_SHA384, "abc",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
  expect_digest(KL_HASH_SHA512, "abc",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
                "454d4423643ce80e2a9ac94fa54ca49f");
  expect_digest(KL_HASH_SHA3_224, "abc", "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf");
  expect_digest(KL_HASH_SHA3_256, "abc", "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532");
  expect_digest(KL_HASH_SHA3_384, "abc",
                "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25");
  expect_digest(KL_HASH_SHA3_512, "abc",
                "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e39340"
                "57340b4cf408d5a56592f8274eec53f0");
  expect_digest(KL_HASH_SM3, "abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
  expect_digest(KL_HASH_SHA256, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_table(void **state) {
  (void)state;
  assert_false(kl_hash_known(0x03));
  assert_false(kl_hash_known(0x06));
  assert_false(kl_hash_known(0x0C));
  assert_false(kl_hash_known(-1));
  assert_int_equal(kl_hash_digest_len(KL_HASH_SHA3_224), 28);
  assert_int_equal(kl_hash_block_len(KL_HASH_SHA3_512), 72);
  assert_int_equal(kl_hash_from_name("SHA-256"), KL_HASH_SHA256);
  assert_int_equal(kl_hash_from_name("sha2-256"), KL_HASH_SHA256);
  assert_int_equal(kl_hash_from_name("default"), KL_HASH_SHA256);
  assert_int_equal(kl_hash_from_name("SHA3-512"), KL_HASH_SHA3_512);
  assert_int_equal(kl_hash_from_name("RIPEMD-160"), KL_HASH_RIPEMD160);
  assert_int_equal(kl_hash_from_name("SM3"), KL_HASH_SM3);
  assert_int_equal(kl_hash_from_name("MD5"), -1);
  /* SHA-1: deprecated from 2016-07-01T00:00:00Z, not trusted for new signatures. */
  assert_false(kl_hash_deprecated_at(KL_HASH_SHA1, 1467331199));
  assert_true(kl_hash_deprecated_at(KL_HASH_SHA1, 1467331200));
  assert_false(kl_hash_trusted(KL_HASH_SHA1));
  assert_false(kl_hash_deprecated_at(KL_HASH_SHA256, UINT64_MAX));
  assert_false(kl_hash_obsolete_at(KL_HASH_SHA1, UINT64_MAX));
  assert_true(kl_hash_deprecated_at(0x03, 0)); /* unknown ids are never acceptable */
  for (int a = 0; a <= KL_HASH_SM3; a++)
    if (kl_hash_known(a)) assert_true(kl_hash_available(a));
}

static void test_hmac_rfc4231(void **state) {
  (void)state;
  kl_imprint_t mac;
  char out[2 * KL_IMPRINT_MAX + 1];
  const char *data = "what do ya want for nothing?";
  assert_int_equal(kl_hmac(KL_HASH_SHA256, "Jefe", 4, data, strlen(data), &mac, NULL), 0);
  kl_hex_encode(mac.digest, mac.len, out);
  assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  assert_int_equal(kl_hmac(KL_HASH_SHA512, "Jefe", 4, data, strlen(data), &mac, NULL), 0);
  kl_hex_encode(mac.digest, mac.len, out);
  assert_string_equal(out,
                      "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6"
                      "fdcaeab1a34d4a6b4b636e070a38bce737");
}

/* The context keeps its last key: the same key again, another key, the same bytes at another
 * address, and a key that is a prefix of the last must each give the RFC 4231 result. */
static void test_hmac_key_reuse(void **state) {
  (void)state;
  kl_imprint_t mac;
  char out[2 * KL_IMPRINT_MAX + 1];
  uint8_t k1[20], k1b[20];
  memset(k1, 0x0b, sizeof k1);
  memset(k1b, 0x0b, sizeof k1b);
  const char *d1 = "Hi There", *d2 = "what do ya want for nothing?";
  const char *h1 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
  const char *h2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  struct { const void *key; size_t len; const char *data, *want; } seq[] = {
      {k1, 20, d1, h1}, {k1, 20, d1, h1}, {"Jefe", 4, d2, h2}, {k1b, 20, d1, h1}, {"Jefe", 4, d2, h2}, {"Jefe", 4, d2, h2}};
  for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
    assert_int_equal(kl_hmac(KL_HASH_SHA256, seq[i].key, seq[i].len, seq[i].data, strlen(seq[i].data), &mac, NULL), 0);
    kl_hex_encode(mac.digest, mac.len, out);
    assert_string_equal(out, seq[i].want);
  }
  /* a prefix of the last key is another key */
  assert_int_equal(kl_hmac(KL_HASH_SHA256, k1, 19, d1, strlen(d1), &mac, NULL), 0);
  kl_hex_encode(mac.digest, mac.len, out);
  assert_string_not_equal(out, h1);
}

static void test_imprint_text(void **state) {
  (void)state;
  kl_imprint_t a, b;
  kl_err_t e = {0};
  char hex[2 * KL_IMPRINT_MAX + 1];
  assert_int_equal(kl_imprint_parse_text(&a, "SHA-256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &e), 0);
  assert_int_equal(kl_imprint_parse_text(&b, "01BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &e), 0);
  assert_true(kl_imprint_eq(&a, &b));
  assert_string_equal(kl_imprint_hex(&a, hex), "01ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(kl_imprint_parse_text(&a, "SHA-256:abcd", &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "32 bytes"));
  assert_int_equal(kl_imprint_parse_text(&a, "MD5:abcd", &e), KL_EHASHALG);
  assert_int_equal(kl_imprint_parse_text(&a, "03aabb", &e), KL_EHASHALG);
  assert_int_equal(kl_imprint_parse_text(&a, "SHA-256:zz", &e), KL_EINVAL);
  const uint8_t shortimp[] = {0x01, 0xAA};
  assert_int_equal(kl_imprint_from_bytes(&a, shortimp, sizeof shortimp, &e), KL_EFORMAT);
}

static void test_hasher_reuse(void **state) {
  (void)state;
  kl_hasher_t h;
  kl_imprint_t x, y;
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  for (int round = 0; round < 3; round++) {
    assert_int_equal(kl_hasher_start(&h, KL_HASH_SHA3_256, NULL), 0);
    kl_hasher_update(&h, "ab", 2);
    kl_hasher_update(&h, "c", 1);
    assert_int_equal(kl_hasher_finish(&h, &x), 0);
    assert_int_equal(kl_hash(KL_HASH_SHA3_256, "abc", 3, &y, NULL), 0);
    assert_true(kl_imprint_eq(&x, &y));
    assert_int_equal(kl_hasher_start(&h, KL_HASH_SHA256, NULL), 0);
    assert_int_equal(kl_hasher_finish(&h, &x), 0);
    assert_int_equal(x.alg, KL_HASH_SHA256);
  }
  kl_err_t e = {0};
  assert_int_equal(kl_hasher_start(&h, 0x03, &e), KL_EHASHALG);
  kl_hasher_close(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abc_vectors), cmocka_unit_test(test_table),
      cmocka_unit_test(test_hmac_rfc4231), cmocka_unit_test(test_hmac_key_reuse),
      cmocka_unit_test(test_imprint_text),
      cmocka_unit_test(test_hasher_reuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
