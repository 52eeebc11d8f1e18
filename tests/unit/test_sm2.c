/* The SM2 profile (docs/profiles.md): calendar authentication records signed SM2-with-SM3
 * with the GM/T 0009 signer ID; a development PKI of SM2 keys; a publications file whose CMS
 * signer is SM2; SM3 aggregation chains; all verified key-based and publication-based, and a
 * mismatched or forged piece refused. */
#define _GNU_SOURCE /* memmem */
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyless/calendar.h"
#include "keyless/chains.h"
#include "keyless/pki.h"
#include "keyless/pubfile.h"
#include "keyless/verify.h"
#include "testutil.h"
#include "tu_pipeline.h"

#define SM2_OID "1.2.156.10197.1.501"
#define SM2_ID "1234567812345678"

static char dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("sm2", dir, sizeof dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(dir);
}

/* A self-signed certificate for a new key ("SM2" or "EC"), written as NAME.crt and NAME.key. */
static EVP_PKEY *make_pair(const char *alg, const char *name) {
  EVP_PKEY *k = strcmp(alg, "SM2") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "SM2") : EVP_EC_gen("P-256");
  assert_non_null(k);
  X509 *x = X509_new();
  assert_non_null(x);
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, k);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "emailAddress", MBSTRING_ASC,
                             (const unsigned char *)"publications@keyless.test", -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  assert_true(X509_sign(x, k, strcmp(alg, "SM2") == 0 ? EVP_sm3() : EVP_sha256()) > 0);
  char p[400];
  snprintf(p, sizeof p, "%s/%s.crt", dir, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_X509(f, x), 1);
  fclose(f);
  snprintf(p, sizeof p, "%s/%s.key", dir, name);
  f = fopen(p, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
  X509_free(x);
  return k;
}

/* Signs a record for (T, root) with NAME's key into b and decodes it into *auth (pointing into b). */
static void sign_record(const char *name, uint64_t T, const kl_imprint_t *root, kl_buf_t *b, kl_cal_auth_t *auth,
                        const uint8_t **der, size_t *der_len, kl_calauth_t **out) {
  char c[400], k[400];
  kl_err_t e = {0};
  snprintf(c, sizeof c, "%s/%s.crt", dir, name);
  snprintf(k, sizeof k, "%s/%s.key", dir, name);
  if (kl_calauth_load(c, k, out, &e)) fail_msg("%s", e.msg);
  if (kl_calauth_sign(*out, T, root, b, &e)) fail_msg("%s", e.msg);
  kl_tlv_t t;
  assert_int_equal(kl_tlv_parse_one(b->p, b->len, &t, &e), 0);
  if (kl_cal_auth_decode(&t, b->p, auth, &e)) fail_msg("%s", e.msg);
  *der = kl_calauth_cert_der(*out, der_len);
}

static int check_raw(EVP_PKEY *k, const kl_cal_auth_t *a, const char *id) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  int ok = EVP_DigestVerifyInit(ctx, &pctx, EVP_sm3(), NULL, k) == 1 &&
           EVP_PKEY_CTX_set1_id(pctx, id, strlen(id)) == 1 &&
           EVP_DigestVerify(ctx, a->sig.value, a->sig.value_len, a->data.raw, a->data.raw_len) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

static void test_calauth_record(void **state) {
  (void)state;
  EVP_PKEY *sm2 = make_pair("SM2", "sm2"), *ec = make_pair("EC", "ec");
  kl_imprint_t root;
  kl_err_t e = {0};
  kl_hash(KL_HASH_SM3, "root", 4, &root, NULL);
  const uint64_t T = (uint64_t)time(NULL) - 10;
  kl_buf_t b = KL_BUF_INIT, b2 = KL_BUF_INIT;
  kl_cal_auth_t a, a2;
  const uint8_t *der, *der2;
  size_t der_len, der2_len;
  kl_calauth_t *ca, *ca2;
  sign_record("sm2", T, &root, &b, &a, &der, &der_len, &ca);
  assert_string_equal(a.sig.sig_type, SM2_OID);
  /* The signer ID is GM/T 0009's default, not OpenSSL 3.0's empty one. */
  assert_true(check_raw(sm2, &a, SM2_ID));
  assert_false(check_raw(sm2, &a, ""));
  /* kl_cal_auth_verify (the extenders' check) accepts it with its certificate ... */
  const uint8_t *ders[2] = {der, NULL};
  size_t lens[2] = {der_len, 0};
  if (kl_cal_auth_verify(&a, ders, lens, 1, &e)) fail_msg("%s", e.msg);

  /* ... and refuses a changed signature, a changed type, and a type that is not the key's. */
  uint8_t bad[256];
  assert_true(a.sig.value_len <= sizeof bad);
  memcpy(bad, a.sig.value, a.sig.value_len);
  bad[a.sig.value_len / 2] ^= 1;
  kl_cal_auth_t forged = a;
  forged.sig.value = bad;
  assert_int_equal(kl_cal_auth_verify(&forged, ders, lens, 1, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "does not verify"));
  forged = a;
  forged.sig.sig_type = "1.2.840.10045.4.3.2"; /* ECDSA-SHA256 */
  assert_int_equal(kl_cal_auth_verify(&forged, ders, lens, 1, &e), KL_EPKI);
  if (strstr(e.msg, "SM2") == NULL) fail_msg("%s", e.msg);

  /* An EC key's record stays ECDSA-SHA256; labelled SM2-with-SM3 it fails. */
  sign_record("ec", T, &root, &b2, &a2, &der2, &der2_len, &ca2);
  assert_string_equal(a2.sig.sig_type, "1.2.840.10045.4.3.2");
  ders[1] = der2;
  lens[1] = der2_len;
  if (kl_cal_auth_verify(&a2, ders, lens, 2, &e)) fail_msg("%s", e.msg);
  forged = a2;
  forged.sig.sig_type = SM2_OID;
  assert_int_equal(kl_cal_auth_verify(&forged, ders, lens, 2, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "non-SM2"));

  kl_calauth_free(ca);
  kl_calauth_free(ca2);
  kl_buf_free(&b);
  kl_buf_free(&b2);
  EVP_PKEY_free(sm2);
  EVP_PKEY_free(ec);
}

static X509 *read_cert(const char *pki, const char *name) {
  char p[400];
  snprintf(p, sizeof p, "%s/%s", pki, name);
  FILE *f = fopen(p, "r");
  assert_non_null(f);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(x);
  return x;
}

static void test_devpki_profile(void **state) {
  (void)state;
  char pki[300], p[400];
  kl_err_t e = {0};
  snprintf(pki, sizeof pki, "%s/bad", dir);
  assert_int_equal(kl_devpki_create_profile(pki, "a@b.test", 30, NULL, "sm9", &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "sm9"));
  assert_int_not_equal(access(pki, F_OK), 0); /* nothing made */

  snprintf(pki, sizeof pki, "%s/pki", dir);
  if (kl_devpki_create_profile(pki, "a@b.test", 30, NULL, "sm2", &e)) fail_msg("%s", e.msg);
  static const char *const sm2_certs[] = {"ca.crt", "publications.crt", "calendar-auth.crt"};
  X509 *ca = read_cert(pki, "ca.crt");
  for (size_t i = 0; i < 3; i++) {
    X509 *x = read_cert(pki, sm2_certs[i]);
    assert_int_equal(X509_get_signature_nid(x), NID_SM2_with_SM3);
    assert_true(EVP_PKEY_is_a(X509_get0_pubkey(x), "SM2"));
    /* Signed with the SM2 ID: OpenSSL checks it only when told the ID. */
    assert_int_not_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
    ERR_clear_error();
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(id, (const unsigned char *)SM2_ID, 16);
    X509_set0_distinguishing_id(x, id);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
    X509_free(x);
  }
  X509_free(ca);
  /* The cluster CA and node certificates stay EC P-256 (TLS). */
  X509 *cl = read_cert(pki, "cluster-ca.crt");
  assert_false(EVP_PKEY_is_a(X509_get0_pubkey(cl), "SM2"));
  assert_int_equal(X509_get_signature_nid(cl), NID_ecdsa_with_SHA256);
  X509_free(cl);
  if (kl_devpki_issue_nodes(pki, "core:1", 30, &e)) fail_msg("%s", e.msg);
  snprintf(p, sizeof p, "%s/nodes/core-1.crt", pki);
  assert_int_equal(access(p, F_OK), 0);
}

static void test_pipeline(void **state) {
  (void)state;
  char pki[300], other[300], cal_dir[300];
  kl_err_t e = {0};
  snprintf(pki, sizeof pki, "%s/pki", dir);
  snprintf(other, sizeof other, "%s/rsa", dir);
  snprintf(cal_dir, sizeof cal_dir, "%s/cal", dir);
  if (kl_devpki_create_profile(pki, "publications@keyless.test", 30, NULL, "sm2", &e)) fail_msg("%s", e.msg);
  if (kl_devpki_create(other, "publications@keyless.test", 30, &e)) fail_msg("%s", e.msg);

  /* An SM3 aggregation chain, a calendar, the fresh signature (SM2-with-SM3) and the
   * publications file, signed by the SM2 publications key and verified against the SM2 CA. */
  tu_pipeline_t pl;
  tu_pipeline_build(&pl, pki, cal_dir, KL_HASH_SM3);
  assert_int_equal(pl.root.alg, KL_HASH_SM3);
  assert_string_equal(pl.sig->auth->sig.sig_type, SM2_OID);
  kl_pubfile_t *pf = pl.pf;
  /* Its one SignerInfo is SM2-with-SM3 over SM3. */
  const unsigned char *q = pf->cms;
  CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)pf->cms_len);
  assert_non_null(cms);
  X509_ALGOR *dig = NULL, *sa = NULL;
  const ASN1_OBJECT *o1 = NULL, *o2 = NULL;
  CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0), NULL, NULL, &dig, &sa);
  X509_ALGOR_get0(&o1, NULL, NULL, dig);
  X509_ALGOR_get0(&o2, NULL, NULL, sa);
  assert_int_equal(OBJ_obj2nid(o1), NID_sm3);
  assert_int_equal(OBJ_obj2nid(o2), NID_SM2_with_SM3);
  CMS_ContentInfo_free(cms);

  char other_anchor[400];
  snprintf(other_anchor, sizeof other_anchor, "%s/ca.crt", other);
  const char *anchors[1] = {pl.anchor};
  kl_cnstr_t cn[1] = {{"E", "publications@keyless.test"}};
  kl_pubfile_trust_t trust = {anchors, 1, cn, 1, 0, 0};
  if (kl_pubfile_verify_signer(pf, pl.pcert, &e)) fail_msg("%s", e.msg);
  /* Another PKI's anchor does not do. */
  const char *wrong[1] = {other_anchor};
  kl_pubfile_trust_t trust2 = {wrong, 1, cn, 1, 0, 0};
  assert_int_equal(kl_pubfile_verify(pf, &trust2, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "chain"));
  /* A changed body does not verify (the SM3 message digest). */
  kl_buf_t bad = KL_BUF_INIT;
  kl_buf_put(&bad, pl.pfb.p, pl.pfb.len);
  uint8_t *hit = memmem(bad.p, bad.len, pl.pub_root.digest, pl.pub_root.len); /* the published root */
  assert_non_null(hit);
  hit[0] ^= 1;
  kl_pubfile_t *pf_bad = NULL;
  assert_int_equal(kl_pubfile_parse(bad.p, bad.len, &pf_bad, &e), 0);
  assert_int_equal(kl_pubfile_verify(pf_bad, &trust, &e), KL_EPKI);
  kl_pubfile_free(pf_bad);
  /* A forged SignerInfo signature does not verify either. */
  kl_buf_free(&bad);
  kl_buf_put(&bad, pl.pfb.p, pl.pfb.len);
  bad.p[bad.len - 3] ^= 1; /* the signature is the SignerInfo's last field, at the file's end */
  pf_bad = NULL;
  assert_int_equal(kl_pubfile_parse(bad.p, bad.len, &pf_bad, &e), 0);
  assert_int_equal(kl_pubfile_verify(pf_bad, &trust, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "SM2 signature does not verify"));
  kl_pubfile_free(pf_bad);
  kl_buf_free(&bad);

  /* Key-based, extended and publication-based, another document refused. */
  kl_sig_t *ext;
  tu_pipeline_verify(&pl, &ext);
  kl_sig_free(ext);
  tu_pipeline_free(&pl);
}

/* k of n across profiles: an SM2 signer (devpki) and an ECDSA signer (self-signed, its own
 * anchor: two devpki PKIs would share issuer names and serials, which CMS cannot tell apart). */
static void test_mixed_signers(void **state) {
  (void)state;
  char sm2[300], c1[400], k1[400], c2[400], k2[400], a1[400];
  kl_err_t e = {0};
  snprintf(sm2, sizeof sm2, "%s/sm2", dir);
  if (kl_devpki_create_profile(sm2, "publications@keyless.test", 30, NULL, "sm2", &e)) fail_msg("%s", e.msg);
  EVP_PKEY_free(make_pair("EC", "ecsigner"));
  snprintf(c1, sizeof c1, "%s/publications.crt", sm2);
  snprintf(k1, sizeof k1, "%s/publications.key", sm2);
  snprintf(c2, sizeof c2, "%s/ecsigner.crt", dir);
  snprintf(k2, sizeof k2, "%s/ecsigner.key", dir);
  snprintf(a1, sizeof a1, "%s/ca.crt", sm2);
  kl_pub_data_t pd = {(uint64_t)time(NULL) - 5, {0}, NULL, 0};
  kl_hash(KL_HASH_SM3, "root", 4, &pd.hash, NULL);
  kl_pubfile_spec_t spec = {0, (uint64_t)time(NULL), NULL, NULL, NULL, 0, &pd, 1, NULL, NULL, NULL, false};
  kl_buf_t body_b = KL_BUF_INIT, p1 = KL_BUF_INIT, p2 = KL_BUF_INIT, out = KL_BUF_INIT;
  kl_pubfile_t *body, *pf;
  assert_int_equal(kl_pubfile_write_body(&spec, &body_b, &e), 0);
  assert_int_equal(kl_pubfile_parse_body(body_b.p, body_b.len, &body, &e), 0);
  kl_pubfile_signer_t s1 = {c1, k1, NULL, true}, s2 = {c2, k2, NULL, true};
  if (kl_pubfile_cosign(body, &s1, &p1, &e) || kl_pubfile_cosign(body, &s2, &p2, &e)) fail_msg("%s", e.msg);
  const uint8_t *parts[2] = {p1.p, p2.p};
  size_t lens[2] = {p1.len, p2.len};
  if (kl_pubfile_assemble(body, parts, lens, 2, &out, &e)) fail_msg("%s", e.msg);
  assert_int_equal(kl_pubfile_parse(out.p, out.len, &pf, &e), 0);
  const char *anchors[2] = {a1, c2};
  kl_cnstr_t cn[1] = {{"E", "publications@keyless.test"}};
  kl_pubfile_trust_t trust = {anchors, 2, cn, 1, 0, 2};
  if (kl_pubfile_verify(pf, &trust, &e)) fail_msg("2 of 2 across profiles: %s", e.msg);
  /* With only the SM2 anchor, one of the two is trusted. */
  kl_pubfile_trust_t one = {anchors, 1, cn, 1, 0, 2};
  assert_int_equal(kl_pubfile_verify(pf, &one, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "1 of the 2 required"));
  one.signers_required = 1;
  if (kl_pubfile_verify(pf, &one, &e)) fail_msg("%s", e.msg);
  kl_pubfile_free(pf);
  kl_pubfile_free(body);
  kl_buf_free(&body_b);
  kl_buf_free(&p1);
  kl_buf_free(&p2);
  kl_buf_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_calauth_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_devpki_profile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mixed_signers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
