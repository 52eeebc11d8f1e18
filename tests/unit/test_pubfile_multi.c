/* Publications files signed by several signers (k of n, docs/keys.md): the unsigned body, detached
 * parts signed apart and assembled into one SignedData, and kl_pubfile_verify counting distinct
 * trusted signers: 1 of 2 required is refused, 2 of 2 accepted; one key counts once; an untrusted
 * signer does not count; a tampered body fails; a file signed by an old and a new key verifies for
 * clients trusting either (a publications-key rotation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "keyless/pubfile.h"
#include "keyless/tlv.h"
#include "testutil.h"

#define EMAIL "pub@example.org"

typedef struct who {
  X509 *x;
  EVP_PKEY *k;
  char crt[300], key[300];
} who_t;

typedef struct fx {
  char dir[256];
  who_t ca, ca2, a, b, b2, u; /* b2: another certificate for b's key; u: under ca2 */
  kl_buf_t body, body2;       /* two different unsigned bodies */
  kl_pubfile_t *pb, *pb2;
} fx_t;

static void write_pem(const char *path, X509 *x, EVP_PKEY *k) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  if (x) assert_int_equal(PEM_write_X509(f, x), 1);
  if (k) assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
}

/* A certificate for cn (key: reuse's, or a new one), signed by issuer (NULL: self-signed CA). */
static void make(fx_t *f, who_t *w, const char *name, const char *cn, const who_t *issuer, EVP_PKEY *reuse, long serial) {
  w->k = reuse ? reuse : EVP_EC_gen("P-256");
  assert_non_null(w->k);
  if (reuse) assert_int_equal(EVP_PKEY_up_ref(reuse), 1);
  X509 *x = w->x = X509_new();
  assert_non_null(x);
  assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
  assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 30));
  X509_NAME *nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_NAME_add_entry_by_txt(nm, "emailAddress", MBSTRING_ASC, (const unsigned char *)EMAIL, -1, -1, 0);
  assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->x) : nm), 1);
  assert_int_equal(X509_set_pubkey(x, w->k), 1);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer->x : x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
  assert_non_null(ext);
  assert_int_equal(X509_add_ext(x, ext, -1), 1);
  X509_EXTENSION_free(ext);
  assert_true(X509_sign(x, issuer ? issuer->k : w->k, EVP_sha256()) > 0);
  snprintf(w->crt, sizeof w->crt, "%s/%s.crt", f->dir, name);
  snprintf(w->key, sizeof w->key, "%s/%s.key", f->dir, name);
  write_pem(w->crt, x, NULL);
  write_pem(w->key, NULL, w->k);
}

static void make_body(kl_buf_t *b, uint64_t created, uint8_t fill) {
  kl_pub_data_t pubs[2];
  memset(pubs, 0, sizeof pubs);
  for (int i = 0; i < 2; i++) {
    pubs[i].time = 1700000000 + 86400u * (unsigned)i;
    pubs[i].hash.alg = KL_HASH_SHA256;
    pubs[i].hash.len = 32;
    memset(pubs[i].hash.digest, fill + i, 32);
  }
  kl_pubfile_spec_t spec = {.created = created, .pubs = pubs, .n_pubs = 2};
  kl_err_t e = {0};
  if (kl_pubfile_write_body(&spec, b, &e)) fail_msg("%s", e.msg);
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  tu_mkdtemp("pubfile-multi", f->dir, sizeof f->dir);
  make(f, &f->ca, "ca", "test publications CA", NULL, NULL, 1);
  make(f, &f->ca2, "ca2", "test publications CA 2", NULL, NULL, 2);
  make(f, &f->a, "a", "operator A", &f->ca, NULL, 10);
  make(f, &f->b, "b", "operator B", &f->ca, NULL, 11);
  make(f, &f->b2, "b2", "operator B again", &f->ca, f->b.k, 12);
  make(f, &f->u, "u", "operator U", &f->ca2, NULL, 13);
  make_body(&f->body, 1700300000, 0x11);
  make_body(&f->body2, 1700300001, 0x22);
  kl_err_t e = {0};
  if (kl_pubfile_parse_body(f->body.p, f->body.len, &f->pb, &e) || kl_pubfile_parse_body(f->body2.p, f->body2.len, &f->pb2, &e))
    fail_msg("%s", e.msg);
  *state = f;
  return 0;
}

static void who_free(who_t *w) {
  X509_free(w->x);
  EVP_PKEY_free(w->k);
}

static int teardown(void **state) {
  fx_t *f = *state;
  who_t *all[] = {&f->ca, &f->ca2, &f->a, &f->b, &f->b2, &f->u};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) who_free(all[i]);
  kl_buf_free(&f->body);
  kl_buf_free(&f->body2);
  kl_pubfile_free(f->pb);
  kl_pubfile_free(f->pb2);
  tu_rmrf(f->dir);
  free(f);
  return 0;
}

static void part(const kl_pubfile_t *body, const who_t *w, kl_buf_t *out) {
  kl_pubfile_signer_t s = {w->crt, w->key, NULL, true};
  kl_err_t e = {0};
  kl_buf_reset(out);
  if (kl_pubfile_cosign(body, &s, out, &e)) fail_msg("%s", e.msg);
}

/* The file assembled from the parts of signers ws[0..n) over f's body; NULL on failure (e set). */
static kl_pubfile_t *assemble(fx_t *f, const who_t *const *ws, size_t n, int want, kl_err_t *e) {
  kl_buf_t parts[4] = {KL_BUF_INIT, KL_BUF_INIT, KL_BUF_INIT, KL_BUF_INIT}, out = KL_BUF_INIT;
  const uint8_t *p[4];
  size_t l[4];
  assert_true(n <= 4);
  for (size_t i = 0; i < n; i++) {
    part(f->pb, ws[i], &parts[i]);
    p[i] = parts[i].p;
    l[i] = parts[i].len;
  }
  kl_err_clear(e);
  assert_int_equal(kl_pubfile_assemble(f->pb, p, l, n, &out, e), want);
  kl_pubfile_t *pf = NULL;
  if (want == 0) {
    assert_int_equal(out.len > f->body.len, 1);
    assert_memory_equal(out.p, f->body.p, f->body.len); /* the body, then the signature */
    if (kl_pubfile_parse(out.p, out.len, &pf, e)) fail_msg("%s", e->msg);
  } else {
    assert_int_equal(out.len, 0); /* nothing half-written */
  }
  for (size_t i = 0; i < n; i++) kl_buf_free(&parts[i]);
  kl_buf_free(&out);
  return pf;
}

static int verify(const kl_pubfile_t *pf, const char *a1, const char *a2, size_t k, kl_err_t *e) {
  const char *anchors[2] = {a1, a2};
  kl_cnstr_t c = {"E", EMAIL};
  kl_pubfile_trust_t tr = {anchors, a2 ? 2 : 1, &c, 1, 0, k};
  kl_err_clear(e);
  return kl_pubfile_verify(pf, &tr, e);
}

static void test_two_of_two(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  const who_t *ws[] = {&f->a, &f->b};
  kl_pubfile_t *pf = assemble(f, ws, 2, 0, &e);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 2, &e), 0);
  /* The default (k = 1, what KSI clients do) takes it too. */
  assert_int_equal(verify(pf, f->ca.crt, NULL, 0, &e), 0);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 3, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "2 of the 3 required distinct trusted signers (the CMS has 2)"));
  assert_int_equal(verify(pf, f->ca.crt, NULL, 17, &e), KL_EINVAL);
  /* The publisher's own check of a previous file: any of its signers' certificates. */
  assert_int_equal(kl_pubfile_verify_signer(pf, f->b.crt, &e), 0);
  assert_int_equal(kl_pubfile_verify_signer(pf, f->u.crt, &e), KL_EPKI);
  /* A SET OF SignerInfos is stored sorted by its DER, which holds the (randomised) signature
   * values: the signers' order is not the order they were added in. */
  assert_true(strstr(e.msg, "signed by CN=operator A, CN=operator B, not with the key of") != NULL ||
              strstr(e.msg, "signed by CN=operator B, CN=operator A, not with the key of") != NULL);
  kl_pubfile_free(pf);
}

static void test_one_of_two(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  const who_t *ws[] = {&f->a};
  kl_pubfile_t *pf = assemble(f, ws, 1, 0, &e);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 2, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "1 of the 2 required distinct trusted signers (the CMS has 1)"));
  assert_int_equal(verify(pf, f->ca.crt, NULL, 1, &e), 0);
  kl_pubfile_free(pf);
}

/* Two SignerInfos by one key (two certificates for it): one vote. */
static void test_same_key_counts_once(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  const unsigned fl = CMS_DETACHED | CMS_BINARY | CMS_PARTIAL;
  BIO *data = BIO_new_mem_buf(f->body.p, (int)f->body.len);
  CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, fl);
  assert_non_null(cms);
  assert_non_null(CMS_add1_signer(cms, f->b.x, f->b.k, EVP_sha256(), fl));
  assert_non_null(CMS_add1_signer(cms, f->b2.x, f->b.k, EVP_sha256(), fl));
  assert_int_equal(CMS_final(cms, data, NULL, fl), 1);
  unsigned char *der = NULL;
  int dl = i2d_CMS_ContentInfo(cms, &der);
  assert_true(dl > 0);
  kl_buf_t file = KL_BUF_INIT;
  kl_buf_put(&file, f->body.p, f->body.len);
  kl_tlv_put_bytes(&file, 0x704, 0, der, (size_t)dl);
  kl_pubfile_t *pf = NULL;
  if (kl_pubfile_parse(file.p, file.len, &pf, &e)) fail_msg("%s", e.msg);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 1, &e), 0);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 2, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "1 of the 2 required"));
  /* Which of the two comes first is the SET OF's (DER) order. */
  assert_non_null(strstr(e.msg, "rejected: signer 2 (CN=operator "));
  assert_non_null(strstr(e.msg, "): the same key as signer 1: counted once"));
  /* The same key in two parts is refused when assembling. */
  const uint8_t *p[2] = {der, der};
  size_t l[2] = {(size_t)dl, (size_t)dl};
  kl_buf_t out = KL_BUF_INIT;
  assert_int_equal(kl_pubfile_assemble(f->pb, p, l, 1, &out, &e), KL_EINVAL); /* one part, one key twice */
  assert_non_null(strstr(e.msg, "the same key as an earlier part"));
  const who_t *ws[] = {&f->a, &f->a};
  assert_null(assemble(f, ws, 2, KL_EINVAL, &e));
  assert_non_null(strstr(e.msg, "signature part 2"));
  kl_buf_free(&out);
  kl_pubfile_free(pf);
  kl_buf_free(&file);
  OPENSSL_free(der);
  CMS_ContentInfo_free(cms);
  BIO_free(data);
}

static void test_untrusted_does_not_count(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  const who_t *ws[] = {&f->a, &f->u};
  kl_pubfile_t *pf = assemble(f, ws, 2, 0, &e);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 2, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "1 of the 2 required"));
  assert_non_null(strstr(e.msg, "rejected: signer ")); /* 1 or 2: the SET OF's order (test_two_of_two) */
  assert_non_null(strstr(e.msg, " (CN=operator U): certificate chain check failed"));
  assert_int_equal(verify(pf, f->ca.crt, NULL, 1, &e), 0);
  /* A signer failing a constraint does not count either. */
  const char *anchors[2] = {f->ca.crt, f->ca2.crt};
  kl_cnstr_t c[2] = {{"E", EMAIL}, {"CN", "operator A"}};
  kl_pubfile_trust_t tr = {anchors, 2, c, 2, 0, 2};
  assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, " (CN=operator U): subject constraint failed"));
  kl_pubfile_free(pf);
}

/* A publications-key rotation: old key (under ca) and new key (under ca2) both sign. */
static void test_rotation_either_anchor(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  const who_t *ws[] = {&f->a, &f->u};
  kl_pubfile_t *pf = assemble(f, ws, 2, 0, &e);
  assert_int_equal(verify(pf, f->ca.crt, NULL, 0, &e), 0);
  assert_int_equal(verify(pf, f->ca2.crt, NULL, 0, &e), 0);
  assert_int_equal(verify(pf, f->ca.crt, f->ca2.crt, 2, &e), 0);
  kl_pubfile_free(pf);
}

static void test_tampered_body(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  const who_t *ws[] = {&f->a, &f->b};
  kl_pubfile_t *pf = assemble(f, ws, 2, 0, &e);
  kl_buf_t copy = KL_BUF_INIT;
  kl_buf_put(&copy, pf->raw, pf->raw_len);
  copy.p[pf->signed_len - 1] ^= 0x01; /* the last publication's last byte */
  kl_pubfile_t *bad = NULL;
  if (kl_pubfile_parse(copy.p, copy.len, &bad, &e)) fail_msg("%s", e.msg);
  assert_int_equal(verify(bad, f->ca.crt, NULL, 1, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "0 of the 1 required"));
  /* Both rejected, in whichever order the SET OF holds them (see test_two_of_two). */
  assert_true((strstr(e.msg, "signer 1 (CN=operator A): signature check failed") != NULL &&
               strstr(e.msg, "signer 2 (CN=operator B): signature check failed") != NULL) ||
              (strstr(e.msg, "signer 1 (CN=operator B): signature check failed") != NULL &&
               strstr(e.msg, "signer 2 (CN=operator A): signature check failed") != NULL));
  kl_pubfile_free(bad);
  kl_buf_free(&copy);
  kl_pubfile_free(pf);
}

static void test_parts_of_another_body(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  kl_buf_t pa = KL_BUF_INIT, pother = KL_BUF_INIT, out = KL_BUF_INIT;
  part(f->pb, &f->a, &pa);
  part(f->pb2, &f->b, &pother);
  size_t n = 0;
  assert_int_equal(kl_pubfile_part_check(f->pb, pa.p, pa.len, &n, &e), 0);
  assert_int_equal(n, 1);
  assert_int_equal(kl_pubfile_part_check(f->pb, pother.p, pother.len, &n, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "does not sign this body"));
  const uint8_t *p[2] = {pa.p, pother.p};
  size_t l[2] = {pa.len, pother.len};
  assert_int_equal(kl_pubfile_assemble(f->pb, p, l, 2, &out, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "signature part 2 does not sign this body: signer 1 (CN=operator B)"));
  assert_int_equal(out.len, 0);
  /* Garbage and a truncated part. */
  assert_int_equal(kl_pubfile_part_check(f->pb, f->body.p, f->body.len, &n, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "not a CMS structure"));
  assert_int_equal(kl_pubfile_part_check(f->pb, pa.p, pa.len - 1, &n, &e), KL_EPKI);
  kl_buf_free(&pa);
  kl_buf_free(&pother);
  kl_buf_free(&out);
}

static void test_body_and_keys(void **state) {
  fx_t *f = *state;
  kl_err_t e = {0};
  /* A signed file is no body, and a body is no signed file. */
  const who_t *ws[] = {&f->a};
  kl_pubfile_t *pf = assemble(f, ws, 1, 0, &e), *x = NULL;
  assert_int_equal(kl_pubfile_parse_body(pf->raw, pf->raw_len, &x, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "not an unsigned body"));
  assert_int_equal(kl_pubfile_parse(f->body.p, f->body.len, &x, &e), KL_EFORMAT);
  kl_pubfile_signer_t s = {f->a.crt, f->a.key, NULL, true};
  kl_buf_t out = KL_BUF_INIT;
  assert_int_equal(kl_pubfile_cosign(pf, &s, &out, &e), KL_EINVAL); /* a signed file as the body */
  /* A clear key is refused unless allowed. */
  s.allow_clear_key = false;
  assert_int_equal(kl_pubfile_cosign(f->pb, &s, &out, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "clear (unencrypted) private key"));
  s.allow_clear_key = true;
  s.key_uri = f->b.key; /* not a's key */
  assert_int_equal(kl_pubfile_cosign(f->pb, &s, &out, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "does not match"));
  assert_int_equal(out.len, 0);
  kl_buf_free(&out);
  kl_pubfile_free(pf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_of_two),
      cmocka_unit_test(test_one_of_two),
      cmocka_unit_test(test_same_key_counts_once),
      cmocka_unit_test(test_untrusted_does_not_count),
      cmocka_unit_test(test_rotation_either_anchor),
      cmocka_unit_test(test_tampered_body),
      cmocka_unit_test(test_parts_of_another_body),
      cmocka_unit_test(test_body_and_keys),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
