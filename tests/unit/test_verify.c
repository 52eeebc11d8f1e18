/* Verification policies on real signatures with synthetic extender answers and tampering:
 * every CAL/PUB/KEY outcome the vectors cannot reach offline, and the general policy's routes. */
#include <stdlib.h>
#include <string.h>

#include "keyless/sig.h"
#include "keyless/verify.h"
#include "testutil.h"

#define V_EXT "valid-signatures/signature-extended.ksig"            /* 0x803 at 1710452045 */
#define V_CHC "valid-signatures/signature-one-aggregation-chain-and-chc.ksig" /* chain, no anchor */
#define V_BARE "valid-signatures/signature-just-one-aggregation-chain.ksig"  /* no calendar chain */
#define V_KEY "valid-signatures/signature-element-order-is-changed.ksig"      /* 0x805 */
#define PUBSTR "AAAAAA-DF6NWU-2ANERL-ZQKP5E-WEEQEF-JT76EI-HLTKXG-FQKRZC-ZJJV4E-LAJNHZ-2WY22Z-C3V2JA"

static kl_sig_t *load(const char *path) {
  size_t len;
  kl_sig_t *sig;
  kl_err_t e = {0};
  uint8_t *buf = tu_read_vector(path, &len);
  if (kl_sig_parse(buf, len, &sig, &e)) fail_msg("%s: %s", path, e.msg);
  free(buf);
  return sig;
}

/* Loads a signature and flips the last byte of the value of the element at `path` (types,
 * first match at each level, starting inside the 0x800). */
static kl_sig_t *load_tampered(const char *file, const uint16_t *path, size_t depth) {
  size_t len;
  kl_sig_t *sig;
  kl_err_t e = {0};
  uint8_t *buf = tu_read_vector(file, &len);
  kl_tlv_t t;
  assert_int_equal(kl_tlv_parse_one(buf, len, &t, NULL), 0);
  for (size_t d = 0; d < depth; d++) {
    kl_tlv_iter_t it;
    kl_tlv_t c;
    bool found = false;
    kl_tlv_iter_children(&it, buf, &t);
    while (!found && kl_tlv_next(&it, &c, NULL) > 0) found = c.type == path[d];
    assert_true(found);
    t = c;
  }
  buf[(size_t)(t.value - buf) + t.len - 1] ^= 0x01;
  if (kl_sig_parse(buf, len, &sig, &e)) fail_msg("%s tampered: %s", file, e.msg);
  free(buf);
  return sig;
}

/* A fake extender: answers with a copy of `chain`, altered as asked. */
typedef struct fake {
  const kl_cal_chain_t *chain;
  int flip_link; /* index of a link whose sibling to alter, -1 none */
  bool flip_input;
  int64_t aggr_delta, pub_delta;
  int calls;
} fake_t;

static int fake_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena, kl_cal_chain_t *out,
                       kl_err_t *e) {
  fake_t *f = arg;
  (void)aggr_time;
  (void)pub_time;
  f->calls++;
  if (f->chain == NULL) return kl_err_set(e, KL_ESERVICE, "extender unavailable");
  *out = *f->chain;
  out->links = kl_arena_memdup(arena, f->chain->links, f->chain->n_links * sizeof *out->links);
  if (f->flip_link >= 0) out->links[f->flip_link].sibling.digest[0] ^= 0x80;
  if (f->flip_input) out->input.digest[0] ^= 0x80;
  out->aggr_time = (uint64_t)((int64_t)out->aggr_time + f->aggr_delta);
  out->pub_time = (uint64_t)((int64_t)out->pub_time + f->pub_delta);
  return 0;
}

static int first_link(const kl_cal_chain_t *c, uint8_t dir) {
  for (size_t i = 0; i < c->n_links; i++)
    if (c->links[i].dir == dir) return (int)i;
  fail_msg("no link of direction 0x%02X", dir);
  return -1;
}

static kl_verify_result_t run(const kl_sig_t *sig, kl_policy_t pol, kl_verify_opts_t *o, fake_t *f) {
  kl_verify_result_t res;
  if (f != NULL) {
    o->extend = fake_extend;
    o->extend_arg = f;
  }
  kl_verify(sig, pol, o, &res);
  return res;
}

#define EXPECT(res_expr, verdict_, code_)                                                  \
  do {                                                                                      \
    kl_verify_result_t r_ = (res_expr); /* evaluated once: it may call the extender */      \
    if (r_.verdict != (verdict_) || r_.code != (code_))                                     \
      fail_msg("expected %s %s, got %s %s: %s", kl_verdict_str(verdict_), kl_vcode_str(code_), \
               kl_verdict_str(r_.verdict), kl_vcode_str(r_.code), r_.message);               \
  } while (0)

static void test_calendar_policy(void **state) {
  (void)state;
  kl_sig_t *chc = load(V_CHC), *ext = load(V_EXT);
  kl_verify_opts_t o = {0};
  fake_t f = {chc->cal, -1, false, 0, 0, 0};
  EXPECT(run(chc, KL_POLICY_CALENDAR, &o, &f), KL_VER_OK, KL_VC_NONE);
  f.flip_link = first_link(chc->cal, KL_LINK_RIGHT);
  EXPECT(run(chc, KL_POLICY_CALENDAR, &o, &f), KL_VER_FAIL, KL_VC_CAL_04);
  f.flip_link = -1;
  f.flip_input = true;
  EXPECT(run(chc, KL_POLICY_CALENDAR, &o, &f), KL_VER_FAIL, KL_VC_CAL_02);
  f.flip_input = false;
  f.aggr_delta = 1;
  EXPECT(run(chc, KL_POLICY_CALENDAR, &o, &f), KL_VER_FAIL, KL_VC_CAL_03);
  /* An extended signature: the extender's root must equal the signature's (CAL-01). */
  fake_t g = {ext->cal, first_link(ext->cal, KL_LINK_LEFT), false, 0, 0, 0};
  EXPECT(run(ext, KL_POLICY_CALENDAR, &o, &g), KL_VER_FAIL, KL_VC_CAL_01);
  g.flip_link = -1;
  EXPECT(run(ext, KL_POLICY_CALENDAR, &o, &g), KL_VER_OK, KL_VC_NONE);
  /* No extender, or one that fails: inconclusive, never OK. */
  kl_verify_opts_t none = {0};
  EXPECT(run(chc, KL_POLICY_CALENDAR, &none, NULL), KL_VER_NA, KL_VC_GEN_02);
  fake_t down = {NULL, -1, false, 0, 0, 0};
  kl_verify_result_t r = run(chc, KL_POLICY_CALENDAR, &o, &down);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  assert_non_null(strstr(r.message, "extender unavailable"));
  kl_sig_free(chc);
  kl_sig_free(ext);
}

static void test_user_publication_extending(void **state) {
  (void)state;
  kl_sig_t *bare = load(V_BARE), *ext = load(V_EXT);
  kl_verify_opts_t o = {0};
  assert_int_equal(kl_pubstr_decode(PUBSTR, &o.user_pub_time, &o.user_pub_hash, NULL), 0);
  o.has_user_pub = true;
  fake_t f = {ext->cal, -1, false, 0, 0, 0};
  /* Not extended and extending not allowed: inconclusive, and the extender is not asked. */
  EXPECT(run(bare, KL_POLICY_USER_PUB, &o, &f), KL_VER_NA, KL_VC_GEN_02);
  assert_int_equal(f.calls, 0);
  o.extending_allowed = true;
  EXPECT(run(bare, KL_POLICY_USER_PUB, &o, &f), KL_VER_OK, KL_VC_NONE);
  assert_int_equal(f.calls, 1);
  f.flip_link = first_link(ext->cal, KL_LINK_LEFT);
  EXPECT(run(bare, KL_POLICY_USER_PUB, &o, &f), KL_VER_FAIL, KL_VC_PUB_01);
  f.flip_link = -1;
  f.pub_delta = 1;
  EXPECT(run(bare, KL_POLICY_USER_PUB, &o, &f), KL_VER_FAIL, KL_VC_PUB_02);
  f.pub_delta = 0;
  /* Another core's signature for the same second: a different aggregation root, so the real
   * calendar chain (whose root matches the publication) does not start from it. */
  const uint16_t input[] = {KL_T_AGGR_CHAIN, 0x05};
  kl_sig_t *other = load_tampered(V_BARE, input, 2);
  EXPECT(run(other, KL_POLICY_USER_PUB, &o, &f), KL_VER_FAIL, KL_VC_PUB_03);
  EXPECT(run(other, KL_POLICY_CALENDAR, &o, &f), KL_VER_FAIL, KL_VC_CAL_02);
  /* A user publication older than the signature cannot be extended to. */
  o.user_pub_time = 1710452039;
  EXPECT(run(bare, KL_POLICY_USER_PUB, &o, &f), KL_VER_NA, KL_VC_GEN_02);
  kl_sig_free(other);
  kl_sig_free(bare);
  kl_sig_free(ext);
}

static kl_pubfile_t *guardtime_pubfile(void) {
  size_t len;
  kl_pubfile_t *pf;
  kl_err_t e = {0};
  uint8_t *buf = tu_read_vector("policy-verification-signatures/resources/publications-file.bin", &len);
  if (kl_pubfile_parse(buf, len, &pf, &e)) fail_msg("%s", e.msg);
  free(buf);
  return pf;
}

static void test_key_policy(void **state) {
  (void)state;
  kl_pubfile_t *pf = guardtime_pubfile();
  kl_sig_t *key = load(V_KEY);
  kl_verify_opts_t o = {0};
  EXPECT(run(key, KL_POLICY_KEY, &o, NULL), KL_VER_NA, KL_VC_GEN_02); /* no publications file */
  o.pubfile = pf;
  EXPECT(run(key, KL_POLICY_KEY, &o, NULL), KL_VER_OK, KL_VC_NONE);
  const uint16_t sigval[] = {KL_T_CAL_AUTH, 0x0B, 0x02};
  kl_sig_t *forged = load_tampered(V_KEY, sigval, 3);
  EXPECT(run(forged, KL_POLICY_KEY, &o, NULL), KL_VER_FAIL, KL_VC_KEY_02);
  const uint16_t certid[] = {KL_T_CAL_AUTH, 0x0B, 0x03};
  kl_sig_t *unknown = load_tampered(V_KEY, certid, 3);
  kl_verify_result_t r = run(unknown, KL_POLICY_KEY, &o, NULL);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  assert_non_null(strstr(r.message, "not in the publications file"));
  /* An extended signature has no calendar authentication record. */
  kl_sig_t *ext = load(V_EXT);
  EXPECT(run(ext, KL_POLICY_KEY, &o, NULL), KL_VER_NA, KL_VC_GEN_02);
  kl_sig_free(ext);
  kl_sig_free(unknown);
  kl_sig_free(forged);
  kl_sig_free(key);
  kl_pubfile_free(pf);
}

static void test_general_policy(void **state) {
  (void)state;
  kl_pubfile_t *pf = guardtime_pubfile();
  kl_sig_t *key = load(V_KEY), *ext = load(V_EXT);
  kl_verify_opts_t o = {0};
  kl_verify_result_t r;
  /* Nothing to anchor to: inconclusive. */
  r = run(ext, KL_POLICY_GENERAL, &o, NULL);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  /* A fresh signature with a publications file: key-based. */
  o.pubfile = pf;
  r = run(key, KL_POLICY_GENERAL, &o, NULL);
  EXPECT(r, KL_VER_OK, KL_VC_NONE);
  assert_int_equal(r.policy, KL_POLICY_KEY);
  /* A user publication wins over the file. */
  kl_verify_opts_t u = {0};
  assert_int_equal(kl_pubstr_decode(PUBSTR, &u.user_pub_time, &u.user_pub_hash, NULL), 0);
  u.has_user_pub = true;
  r = run(ext, KL_POLICY_GENERAL, &u, NULL);
  EXPECT(r, KL_VER_OK, KL_VC_NONE);
  assert_int_equal(r.policy, KL_POLICY_USER_PUB);
  u.user_pub_hash.digest[5] ^= 1;
  EXPECT(run(ext, KL_POLICY_GENERAL, &u, NULL), KL_VER_FAIL, KL_VC_PUB_04);
  /* Internal failures come first whatever the policy. */
  kl_imprint_t wrong = *kl_sig_document_hash(key);
  wrong.digest[0] ^= 1;
  o.doc_hash = &wrong;
  r = run(key, KL_POLICY_GENERAL, &o, NULL);
  EXPECT(r, KL_VER_FAIL, KL_VC_GEN_01);
  assert_int_equal(r.policy, KL_POLICY_INTERNAL);
  kl_sig_free(ext);
  kl_sig_free(key);
  kl_pubfile_free(pf);
}

static void test_codes_table(void **state) {
  (void)state;
  assert_string_equal(kl_vcode_str(KL_VC_INT_10), "INT-10");
  assert_string_equal(kl_vcode_str(KL_VC_CAL_04), "CAL-04");
  assert_string_equal(kl_vcode_msg(KL_VC_GEN_01), "Wrong document");
  assert_string_equal(kl_verdict_str(KL_VER_NA), "NA");
  for (int c = 1; c < KL_VC_MAX; c++) assert_int_equal(strlen(kl_vcode_str((kl_vcode_t)c)), 6);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calendar_policy), cmocka_unit_test(test_user_publication_extending),
      cmocka_unit_test(test_key_policy),      cmocka_unit_test(test_general_policy),
      cmocka_unit_test(test_codes_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
