/* libFuzzer driver: the signature parser, the verifier and signature rebuilding.
 *
 * For every input that kl_sig_parse accepts:
 *  - kl_sig_bytes() must be the input, byte for byte;
 *  - the internal policy runs (with no document hash, the signature's own document hash, and a
 *    wrong one), as do kl_sig_aggregation_root and kl_sig_calendar_root, and their results must
 *    agree with the verdict (an OK signature's calendar input is its aggregation root, ...);
 *  - the calendar-based and user-publication policies run with an extender that answers with the
 *    signature's own calendar chain: a signature that is internally OK must then verify;
 *  - kl_sig_rebuild runs with the signature's own calendar chain and trust anchor (the result must
 *    parse and verify as the original), with a re-encoded calendar chain (the chain must read back
 *    the same), and with neither.
 * Any disagreement aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/chains.h"
#include "keyless/sig.h"
#include "keyless/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_at(bool ok, int line) {
  if (!ok) {
    fprintf(stderr, "fuzz_sig: check at line %d failed\n", line);
    abort();
  }
}
#define check(ok) check_at((ok), __LINE__)

static kl_verifier_t *verifier(void) {
  static kl_verifier_t *v;
  if (v == NULL && kl_verifier_create(&v, NULL) != 0) abort();
  return v;
}

static bool same_verdict(const kl_verify_result_t *a, const kl_verify_result_t *b) {
  return a->verdict == b->verdict && a->code == b->code && a->policy == b->policy;
}

static bool cal_eq(const kl_cal_chain_t *a, const kl_cal_chain_t *b) {
  if (a->pub_time != b->pub_time || a->aggr_time != b->aggr_time || !kl_imprint_eq(&a->input, &b->input) ||
      a->n_links != b->n_links)
    return false;
  for (size_t i = 0; i < a->n_links; i++)
    if (a->links[i].dir != b->links[i].dir || !kl_imprint_eq(&a->links[i].sibling, &b->links[i].sibling))
      return false;
  return true;
}

/* An extender that answers with the signature's own calendar chain. */
static int self_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena,
                       kl_cal_chain_t *out, kl_err_t *e) {
  const kl_sig_t *s = arg;
  (void)aggr_time;
  (void)pub_time;
  if (s->cal == NULL) return kl_err_set(e, KL_ENOTFOUND, "no calendar chain to answer with");
  *out = *s->cal;
  out->links = kl_arena_alloc(arena, (s->cal->n_links ? s->cal->n_links : 1) * sizeof *out->links);
  if (out->links == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (s->cal->n_links) memcpy(out->links, s->cal->links, s->cal->n_links * sizeof *out->links);
  return 0;
}

/* Finds the first top-level element of the given type in the signature's bytes. */
static bool find_top(const kl_sig_t *s, uint16_t type, kl_tlv_t *out) {
  size_t len;
  const uint8_t *p = kl_sig_bytes(s, &len);
  kl_tlv_t top;
  kl_tlv_iter_t it;
  int r;
  check(kl_tlv_parse_one(p, len, &top, NULL) == 0);
  kl_tlv_iter_children(&it, p, &top);
  while ((r = kl_tlv_next(&it, out, NULL)) > 0)
    if (out->type == type) return true;
  check(r == 0);
  return false;
}

static void exercise(const kl_sig_t *s, const uint8_t *data, size_t size) {
  kl_verifier_t *ver = verifier();
  kl_err_t e = {0};
  size_t len = 0;

  /* The object keeps the input's exact bytes. */
  const uint8_t *bytes = kl_sig_bytes(s, &len);
  check(len == size && memcmp(bytes, data, size) == 0);

  /* Structural rules the parser promises. */
  check(s->n_chains >= 1 && (s->cal != NULL || (s->pub == NULL && s->auth == NULL)) &&
        (s->pub == NULL || s->auth == NULL));
  for (size_t i = 0; i < s->n_chains; i++) {
    check(s->chains[i].n_index >= 1);
    if (i > 0) check(s->chains[i - 1].n_index >= s->chains[i].n_index);
  }
  const kl_imprint_t *doc = kl_sig_document_hash(s);
  volatile uint64_t sink = kl_sig_signing_time(s) + doc->len;
  (void)sink;

  /* Internal policy. */
  kl_verify_result_t res, res2;
  kl_verify(s, KL_POLICY_INTERNAL, NULL, &res);
  check(res.verdict == KL_VER_OK ? res.code == KL_VC_NONE : res.code != KL_VC_NONE);
  check(res.policy == KL_POLICY_INTERNAL);
  kl_verifier_run(ver, s, KL_POLICY_INTERNAL, NULL, &res2);
  check(same_verdict(&res, &res2));

  /* With the signature's own document hash nothing changes; with another one it is GEN-01. */
  kl_verify_opts_t o = {0};
  kl_imprint_t wrong = *doc;
  o.doc_hash = doc;
  kl_verifier_run(ver, s, KL_POLICY_INTERNAL, &o, &res2);
  check(same_verdict(&res, &res2));
  if (wrong.len > 0) {
    wrong.digest[0] ^= 1;
    o.doc_hash = &wrong;
    kl_verifier_run(ver, s, KL_POLICY_INTERNAL, &o, &res2);
    check(res2.verdict == KL_VER_FAIL && res2.code == KL_VC_GEN_01);
  }
  /* A document level: exercised (GEN-03 depends on the first link's level correction). */
  o.doc_hash = NULL;
  o.doc_level = 1;
  kl_verifier_run(ver, s, KL_POLICY_INTERNAL, &o, &res2);
  o.doc_level = 0;

  /* Roots. */
  kl_imprint_t aroot, croot;
  int ar = kl_sig_aggregation_root(s, &aroot, &e);
  kl_err_clear(&e);
  int cr = kl_sig_calendar_root(s, &croot, &e);
  check(s->cal != NULL || cr == KL_ENOTFOUND);
  if (res.verdict == KL_VER_OK) {
    check(ar == 0); /* the verifier computed it */
    if (s->cal != NULL) {
      check(cr == 0 && kl_imprint_eq(&s->cal->input, &aroot)); /* INT-03 */
      if (s->pub) check(kl_imprint_eq(&s->pub->data.hash, &croot)); /* INT-09 */
      if (s->auth) check(kl_imprint_eq(&s->auth->data.hash, &croot)); /* INT-08 */
    }
  }

  /* Calendar-based and user-publication policies against the signature's own chain. */
  o.extend = self_extend;
  o.extend_arg = (void *)s;
  kl_verifier_run(ver, s, KL_POLICY_CALENDAR, &o, &res2);
  if (res.verdict != KL_VER_OK) check(same_verdict(&res, &res2));
  else if (s->cal != NULL) check(res2.verdict == KL_VER_OK);
  else check(res2.verdict == KL_VER_NA && res2.code == KL_VC_GEN_02);
  if (s->cal != NULL && cr == 0) {
    o.has_user_pub = true;
    o.user_pub_time = s->cal->pub_time;
    o.user_pub_hash = croot;
    o.extending_allowed = true;
    /* An extender chain with an algorithm deprecated at its publication time is inconclusive
     * under the publication-based policies (GEN-02), whatever else holds. */
    bool weak = kl_cal_chain_weak_alg(s->cal, true) >= 0;
    kl_verifier_run(ver, s, KL_POLICY_USER_PUB, &o, &res2);
    if (res.verdict == KL_VER_OK && !weak) check(res2.verdict == KL_VER_OK);
    if (res.verdict == KL_VER_OK && weak) check(res2.verdict == KL_VER_NA && res2.code == KL_VC_GEN_02);
    kl_verifier_run(ver, s, KL_POLICY_GENERAL, &o, &res2);
    if (res.verdict == KL_VER_OK && !weak) check(res2.verdict == KL_VER_OK);
    /* A user publication with another hash: never OK, and PUB-04 when the record is for it. */
    if (croot.len > 0) {
      o.user_pub_hash.digest[0] ^= 1;
      kl_verifier_run(ver, s, KL_POLICY_USER_PUB, &o, &res2);
      check(res2.verdict != KL_VER_OK);
      if (res.verdict == KL_VER_OK && s->pub != NULL) check(res2.code == KL_VC_PUB_04);
    }
  }
  o = (kl_verify_opts_t){0};
  kl_verifier_run(ver, s, KL_POLICY_GENERAL, &o, &res2);
  check(res2.verdict != KL_VER_OK); /* nothing to anchor trust in */

  /* Rebuild with the signature's own calendar chain and anchor: same elements, same verdict. */
  kl_tlv_t cal_t, anchor_t;
  bool has_cal = find_top(s, KL_T_CAL_CHAIN, &cal_t);
  bool has_anchor = find_top(s, KL_T_PUB_REC, &anchor_t) || find_top(s, KL_T_CAL_AUTH, &anchor_t);
  check(has_cal == (s->cal != NULL) && has_anchor == (s->pub != NULL || s->auth != NULL));
  kl_sig_t *rb = NULL;
  kl_err_clear(&e);
  int r = kl_sig_rebuild(s, has_cal ? cal_t.raw : NULL, has_cal ? cal_t.raw_len : 0,
                         has_anchor ? anchor_t.raw : NULL, has_anchor ? anchor_t.raw_len : 0, &rb, &e);
  check(r == 0 && rb != NULL);
  kl_sig_bytes(rb, &len);
  check(len == size);
  check(rb->n_chains == s->n_chains && (rb->cal != NULL) == (s->cal != NULL) &&
        (rb->pub != NULL) == (s->pub != NULL) && (rb->auth != NULL) == (s->auth != NULL) &&
        (rb->rfc3161 != NULL) == (s->rfc3161 != NULL));
  if (s->cal) check(cal_eq(rb->cal, s->cal));
  kl_verifier_run(ver, rb, KL_POLICY_INTERNAL, NULL, &res2);
  check(same_verdict(&res, &res2));
  kl_sig_free(rb);
  rb = NULL;

  /* Rebuild with the calendar chain re-encoded by the canonical encoder, no anchor. */
  if (s->cal) {
    kl_buf_t b = KL_BUF_INIT;
    kl_cal_chain_encode(&b, s->cal);
    if (kl_buf_ok(&b)) {
      kl_err_clear(&e);
      r = kl_sig_rebuild(s, b.p, b.len, NULL, 0, &rb, &e);
      check(r == 0 || r == KL_ETOOBIG);
      if (r == 0) {
        check(rb->cal != NULL && rb->pub == NULL && rb->auth == NULL && cal_eq(rb->cal, s->cal));
        kl_verifier_run(ver, rb, KL_POLICY_INTERNAL, NULL, &res2);
        if (res.verdict == KL_VER_OK) check(res2.verdict == KL_VER_OK);
      }
      kl_sig_free(rb);
      rb = NULL;
    }
    kl_buf_free(&b);
  }

  /* Rebuild without calendar chain and anchor: only the aggregation part remains. */
  kl_err_clear(&e);
  r = kl_sig_rebuild(s, NULL, 0, NULL, 0, &rb, &e);
  check(r == 0 && rb->cal == NULL && rb->pub == NULL && rb->auth == NULL && rb->n_chains == s->n_chains);
  kl_verifier_run(ver, rb, KL_POLICY_INTERNAL, NULL, &res2);
  if (res.verdict == KL_VER_OK) check(res2.verdict == KL_VER_OK);
  kl_sig_free(rb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  int r = kl_sig_parse(data, size, &sig, &e);
  if (r != 0) {
    check(sig == NULL && e.msg[0] != '\0'); /* every rejection says why */
    return 0;
  }
  check(sig != NULL);
  exercise(sig, data, size);
  kl_sig_free(sig);
  return 0;
}
