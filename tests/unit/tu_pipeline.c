/* The issuance pipeline shared by test_pki.c and test_sm2.c (see tu_pipeline.h). */
#include "tu_pipeline.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

void tu_pipeline_build(tu_pipeline_t *p, const char *pki, const char *cal_dir, int alg) {
  kl_err_t e = {0};
  char p1[400], p2[400];
  memset(p, 0, sizeof *p);
  p->alg = alg;
  /* A one-link aggregation chain: document D with sibling S at level 1. */
  p->T = (uint64_t)time(NULL) - 60; /* inside the fresh certificates' validity */
  const uint64_t T = p->T;
  kl_hash(alg, "document", 8, &p->doc, NULL);
  kl_hash(alg, "neighbour", 9, &p->sib, NULL);
  p->link.dir = KL_LINK_LEFT;
  p->link.kind = KL_SIB_IMPRINT;
  p->link.sibling = p->sib;
  p->link.sib_bytes = p->sib_bytes;
  p->link.sib_len = kl_imprint_to_bytes(&p->sib, p->sib_bytes);
  p->index = 3; /* shape: leading 1, then 1 for the left link */
  kl_aggr_chain_t ch = {T, &p->index, 1, p->doc, NULL, 0, false, alg, &p->link, 1, 0};
  p->ch = ch;
  kl_hasher_t h;
  kl_hasher_init(&h, NULL);
  assert_int_equal(kl_aggr_chain_compute(&h, &p->ch, 0, &p->root, NULL, NULL), 0);
  kl_hasher_close(&h);

  /* The calendar: genesis a bit before T, the round at T, a few more seconds. */
  assert_int_equal(kl_cal_create(cal_dir, T - 10, NULL, &e), 0);
  assert_int_equal(kl_cal_open(cal_dir, NULL, &p->cal, &e), 0);
  kl_cal_entry_t en[2] = {{T, &p->root}, {T + 5, NULL}};
  assert_int_equal(kl_cal_append(p->cal, en, 2, &e), 0);

  /* The fresh signature: 0x801, chain (T, T), 0x805. */
  snprintf(p1, sizeof p1, "%s/calendar-auth.crt", pki);
  snprintf(p2, sizeof p2, "%s/calendar-auth.key", pki);
  if (kl_calauth_load(p1, p2, &p->ca, &e)) fail_msg("%s", e.msg);
  kl_imprint_t cal_root;
  assert_int_equal(kl_cal_root(p->cal, T, &cal_root, &e), 0);
  kl_buf_init(&p->sigb);
  size_t m = kl_tlv_open(&p->sigb);
  kl_aggr_chain_encode(&p->sigb, &p->ch);
  assert_int_equal(kl_cal_chain(p->cal, T, T, &p->sigb, &e), 0);
  assert_int_equal(kl_calauth_sign(p->ca, T, &cal_root, &p->sigb, &e), 0);
  assert_int_equal(kl_tlv_close(&p->sigb, m, KL_T_SIGNATURE, 0), 0);
  if (kl_sig_parse(p->sigb.p, p->sigb.len, &p->sig, &e)) fail_msg("%s", e.msg);

  /* The publications file: the calendar-auth certificate and the publication of T + 5. */
  assert_int_equal(kl_cal_root(p->cal, T + 5, &p->pub_root, &e), 0);
  size_t der_len;
  const uint8_t *der = kl_calauth_cert_der(p->ca, &der_len);
  const uint8_t *ders[1] = {der};
  size_t lens[1] = {der_len};
  kl_pub_data_t pd = {T + 5, p->pub_root, NULL, 0};
  snprintf(p->pcert, sizeof p->pcert, "%s/publications.crt", pki);
  snprintf(p->pkey, sizeof p->pkey, "%s/publications.key", pki);
  snprintf(p->anchor, sizeof p->anchor, "%s/ca.crt", pki);
  kl_pubfile_spec_t spec = {0, T + 6, NULL, ders, lens, 1, &pd, 1, p->pcert, p->pkey, NULL, false};
  kl_buf_init(&p->pfb);
  if (kl_pubfile_write(&spec, &p->pfb, &e)) fail_msg("%s", e.msg);
  assert_int_equal(kl_pubfile_parse(p->pfb.p, p->pfb.len, &p->pf, &e), 0);
  const char *anchors[1] = {p->anchor};
  kl_cnstr_t cn[1] = {{"E", "publications@keyless.test"}};
  kl_pubfile_trust_t trust = {anchors, 1, cn, 1, 0, 0};
  if (kl_pubfile_verify(p->pf, &trust, &e)) fail_msg("%s", e.msg);
}

void tu_pipeline_verify(tu_pipeline_t *p, kl_sig_t **ext) {
  kl_err_t e = {0};
  kl_verify_opts_t o = {0};
  kl_verify_result_t res;
  o.doc_hash = &p->doc;
  o.pubfile = p->pf;
  kl_verify(p->sig, KL_POLICY_KEY, &o, &res);
  if (res.verdict != KL_VER_OK) fail_msg("key-based: %s %s", kl_vcode_str(res.code), res.message);

  /* Extend: the calendar chain to T + 5 and the publication record from the file. */
  kl_buf_t chain = KL_BUF_INIT, rec = KL_BUF_INIT;
  assert_int_equal(kl_cal_chain(p->cal, p->T, p->T + 5, &chain, &e), 0);
  size_t m = kl_tlv_open(&rec);
  kl_buf_put(&rec, p->pf->pubs[0].data.raw, p->pf->pubs[0].data.raw_len);
  kl_tlv_close(&rec, m, KL_T_PUB_REC, 0);
  assert_int_equal(kl_sig_rebuild(p->sig, chain.p, chain.len, rec.p, rec.len, ext, &e), 0);
  kl_verify(*ext, KL_POLICY_PUBFILE, &o, &res);
  if (res.verdict != KL_VER_OK) fail_msg("publication-based: %s %s", kl_vcode_str(res.code), res.message);
  kl_buf_free(&chain);
  kl_buf_free(&rec);

  /* Another document fails. */
  kl_imprint_t other;
  kl_hash(p->alg, "other", 5, &other, NULL);
  o.doc_hash = &other;
  kl_verify(p->sig, KL_POLICY_KEY, &o, &res);
  assert_int_equal(res.code, KL_VC_GEN_01);
}

void tu_pipeline_free(tu_pipeline_t *p) {
  kl_sig_free(p->sig);
  kl_pubfile_free(p->pf);
  kl_calauth_free(p->ca);
  kl_cal_close(p->cal);
  kl_buf_free(&p->sigb);
  kl_buf_free(&p->pfb);
}
