/* Our own issuance pipeline end to end, without daemons: a development PKI, an aggregation
 * chain, a calendar, a calendar authentication record, a publications file; the signature
 * verifies key-based, then extended to a publication it verifies publication-based. */
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

static char dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("pki", dir, sizeof dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(dir);
}

static uint8_t *read_all(const char *path, size_t *len) {
  return tu_read_vector(path, len);
}

static void test_pipeline(void **state) {
  (void)state;
  char pki[300], cal_dir[300], p1[400], p2[400];
  kl_err_t e = {0};
  snprintf(pki, sizeof pki, "%s/pki", dir);
  snprintf(cal_dir, sizeof cal_dir, "%s/cal", dir);
  if (kl_devpki_create(pki, "publications@keyless.test", 30, &e)) fail_msg("%s", e.msg);
  assert_int_equal(kl_devpki_create(pki, "publications@keyless.test", 30, &e), KL_ESTATE); /* never replaces */
  /* The CA key is apart from what a node needs; the signing keys are where scripts look. */
  snprintf(p1, sizeof p1, "%s/ca.key", pki);
  assert_int_not_equal(access(p1, F_OK), 0);
  snprintf(p1, sizeof p1, "%s/offline/ca.key", pki);
  assert_int_equal(access(p1, F_OK), 0);

  /* A one-link aggregation chain: document D with sibling S at level 1. */
  const uint64_t T = (uint64_t)time(NULL) - 60; /* inside the fresh certificates' validity */
  kl_imprint_t doc, sib, root;
  uint8_t sib_bytes[KL_IMPRINT_MAX];
  kl_hash(KL_HASH_SHA256, "document", 8, &doc, NULL);
  kl_hash(KL_HASH_SHA256, "neighbour", 9, &sib, NULL);
  kl_aggr_link_t link = {0};
  link.dir = KL_LINK_LEFT;
  link.kind = KL_SIB_IMPRINT;
  link.sibling = sib;
  link.sib_bytes = sib_bytes;
  link.sib_len = kl_imprint_to_bytes(&sib, sib_bytes);
  uint64_t index = 3; /* shape: leading 1, then 1 for the left link */
  kl_aggr_chain_t ch = {T, &index, 1, doc, NULL, 0, false, KL_HASH_SHA256, &link, 1, 0};
  kl_hasher_t h;
  kl_hasher_init(&h, NULL);
  assert_int_equal(kl_aggr_chain_compute(&h, &ch, 0, &root, NULL, NULL), 0);
  kl_hasher_close(&h);

  /* The calendar: genesis a bit before T, the round at T, a few more seconds. */
  kl_cal_t *cal;
  assert_int_equal(kl_cal_create(cal_dir, T - 10, NULL, &e), 0);
  assert_int_equal(kl_cal_open(cal_dir, NULL, &cal, &e), 0);
  kl_cal_entry_t en[2] = {{T, &root}, {T + 5, NULL}};
  assert_int_equal(kl_cal_append(cal, en, 2, &e), 0);

  /* The fresh signature: 0x801, chain (T, T), 0x805. */
  kl_calauth_t *ca;
  snprintf(p1, sizeof p1, "%s/calendar-auth.crt", pki);
  snprintf(p2, sizeof p2, "%s/calendar-auth.key", pki);
  if (kl_calauth_load(p1, p2, &ca, &e)) fail_msg("%s", e.msg);
  kl_imprint_t cal_root;
  assert_int_equal(kl_cal_root(cal, T, &cal_root, &e), 0);
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  kl_aggr_chain_encode(&b, &ch);
  assert_int_equal(kl_cal_chain(cal, T, T, &b, &e), 0);
  assert_int_equal(kl_calauth_sign(ca, T, &cal_root, &b, &e), 0);
  assert_int_equal(kl_tlv_close(&b, m, KL_T_SIGNATURE, 0), 0);
  kl_sig_t *sig;
  if (kl_sig_parse(b.p, b.len, &sig, &e)) fail_msg("%s", e.msg);

  /* The publications file: the calendar-auth certificate and the publication of T + 5. */
  kl_imprint_t pub_root;
  assert_int_equal(kl_cal_root(cal, T + 5, &pub_root, &e), 0);
  size_t der_len;
  const uint8_t *der = kl_calauth_cert_der(ca, &der_len);
  const uint8_t *ders[1] = {der};
  size_t lens[1] = {der_len};
  kl_pub_data_t pd = {T + 5, pub_root, NULL, 0};
  char pcert[400], pkey[400], anchor[400];
  snprintf(pcert, sizeof pcert, "%s/publications.crt", pki);
  snprintf(pkey, sizeof pkey, "%s/publications.key", pki);
  snprintf(anchor, sizeof anchor, "%s/ca.crt", pki);
  kl_pubfile_spec_t spec = {0, T + 6, NULL, ders, lens, 1, &pd, 1, pcert, pkey, NULL, false};
  kl_buf_t pfb = KL_BUF_INIT;
  if (kl_pubfile_write(&spec, &pfb, &e)) fail_msg("%s", e.msg);
  kl_pubfile_t *pf;
  assert_int_equal(kl_pubfile_parse(pfb.p, pfb.len, &pf, &e), 0);
  const char *anchors[1] = {anchor};
  kl_cnstr_t cn[1] = {{"E", "publications@keyless.test"}};
  kl_pubfile_trust_t trust = {anchors, 1, cn, 1, 0, 0};
  if (kl_pubfile_verify(pf, &trust, &e)) fail_msg("%s", e.msg);

  kl_verify_opts_t o = {0};
  kl_verify_result_t res;
  o.doc_hash = &doc;
  o.pubfile = pf;
  kl_verify(sig, KL_POLICY_KEY, &o, &res);
  if (res.verdict != KL_VER_OK) fail_msg("key-based: %s %s", kl_vcode_str(res.code), res.message);

  /* Extend: the calendar chain to T + 5 and the publication record from the file. */
  kl_buf_t chain = KL_BUF_INIT, rec = KL_BUF_INIT;
  assert_int_equal(kl_cal_chain(cal, T, T + 5, &chain, &e), 0);
  m = kl_tlv_open(&rec);
  kl_buf_put(&rec, pf->pubs[0].data.raw, pf->pubs[0].data.raw_len);
  kl_tlv_close(&rec, m, KL_T_PUB_REC, 0);
  kl_sig_t *ext;
  assert_int_equal(kl_sig_rebuild(sig, chain.p, chain.len, rec.p, rec.len, &ext, &e), 0);
  kl_verify(ext, KL_POLICY_PUBFILE, &o, &res);
  if (res.verdict != KL_VER_OK) fail_msg("publication-based: %s %s", kl_vcode_str(res.code), res.message);
  char ps[KL_PUBSTR_MAX];
  assert_int_equal(kl_pubstr_encode(T + 5, &pub_root, ps, sizeof ps, &e), 0);
  kl_verify_opts_t u = {0};
  assert_int_equal(kl_pubstr_decode(ps, &u.user_pub_time, &u.user_pub_hash, &e), 0);
  u.has_user_pub = true;
  kl_verify(ext, KL_POLICY_USER_PUB, &u, &res);
  assert_int_equal(res.verdict, KL_VER_OK);
  /* A forged root in the authentication record fails, and so does another document. */
  kl_imprint_t other;
  kl_hash(KL_HASH_SHA256, "other", 5, &other, NULL);
  o.doc_hash = &other;
  kl_verify(sig, KL_POLICY_KEY, &o, &res);
  assert_int_equal(res.code, KL_VC_GEN_01);
  (void)read_all;

  kl_sig_free(ext);
  kl_sig_free(sig);
  kl_pubfile_free(pf);
  kl_calauth_free(ca);
  kl_cal_close(cal);
  kl_buf_free(&b);
  kl_buf_free(&pfb);
  kl_buf_free(&chain);
  kl_buf_free(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
