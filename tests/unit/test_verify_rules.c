/* Verification rules that the vectors reach only in part (issue 11, defect 7), on real
 * signatures re-encoded with one change:
 * - every way a metadata padding element can break the INT-11 rules (KSI-FORMAT.md §4.4) parses,
 *   and the internal policy then fails with INT-11; a structurally broken metadata value still
 *   does not parse;
 * - hash algorithms deprecated at the time that matters (§3: SHA-1 from 1467331200): the
 *   document hash (INT-13), an aggregation chain (INT-15), the RFC 3161 record (INT-14/17), the
 *   calendar chain under the key-based policy, and a calendar chain from an extender under the
 *   publication-based policies (GEN-02), with the calendar algorithms being those the chain's
 *   steps use (a SHA-1 right sibling is no reason for GEN-02). */
#include <stdlib.h>
#include <string.h>

#include "keyless/extclient.h"
#include "keyless/pubfile.h"
#include "keyless/sig.h"
#include "keyless/verify.h"
#include "testutil.h"
#include "verify_internal.h"

#define V_META "valid-signatures/signature-extended.ksig" /* metadata links with padding */
#define V_SHA1_AGGR "valid-signatures/signature-SHA1-in-aggregation-chain-aggregation-algorithm.ksig"
#define V_SHA1_RFC_IN "valid-signatures/signature-SHA1-in-rfc3161-record-input-hash.ksig"
#define V_SHA1_RFC_SIG "valid-signatures/signature-SHA1-in-rfc3161-record-sig-atr-algorithm.ksig"
#define V_RFC "valid-signatures/rfc3161-signature-no-calendar-auth-and-publication-record.ksig"
#define V_SHA1_RIGHT "valid-signatures/signature-has-deprecated-function-in-calendar-hash-chain.ksig"
#define V_SHA1_LEFT                                                                                  \
  "policy-verification-signatures/"                                                                  \
  "policy-verification-signature-has-deprecated-algorithm-in-calendar-chain-for-key-based-verification-GEN-02.ksig"
#define R_EXT_SHA1 "policy-verification-signatures/resources/extension-response-with-deprecated-algorithm.tlv"
#define R_PUBFILE "policy-verification-signatures/resources/publications-file-for-deprecated-algorithm-in-calendar-chain.bin"
#define SHA1_DEPRECATED 1467331200u

/* ---- re-encoding a signature with one edit ---- */

typedef enum { E_COPY, E_RECURSE, E_DONE } edit_t;
/* Called for every element met; stack[0..depth) are the types from the 0x800's child down to t.
 * E_COPY keeps t's bytes, E_RECURSE re-encodes t from its (edited) children, E_DONE means the
 * callback wrote t's replacement into b. */
typedef edit_t (*edit_fn)(const kl_tlv_t *t, const uint16_t *stack, size_t depth, kl_buf_t *b, void *arg);

static void rewrite(kl_buf_t *b, const uint8_t *base, const kl_tlv_t *parent, uint16_t *stack, size_t depth,
                    edit_fn fn, void *arg) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  assert_true(depth < 8);
  kl_tlv_iter_children(&it, base, parent);
  while (kl_tlv_next(&it, &c, NULL) > 0) {
    stack[depth] = c.type;
    edit_t d = fn(&c, stack, depth + 1, b, arg);
    if (d == E_COPY) {
      kl_buf_put(b, c.raw, c.raw_len);
    } else if (d == E_RECURSE) {
      size_t m = kl_tlv_open(b);
      rewrite(b, base, &c, stack, depth + 1, fn, arg);
      assert_int_equal(kl_tlv_close(b, m, c.type, c.flags & (KL_TLV_FLAG_N | KL_TLV_FLAG_F)), 0);
    }
  }
}

/* The vector `file` re-encoded with fn's edits, parsed; returns kl_sig_parse's code (*out is
 * the signature when 0) and leaves its message in e. */
static int edit_sig(const char *file, edit_fn fn, void *arg, kl_sig_t **out, kl_err_t *e) {
  size_t len;
  uint8_t *buf = tu_read_vector(file, &len);
  kl_tlv_t top;
  kl_buf_t b = KL_BUF_INIT;
  uint16_t stack[8];
  assert_int_equal(kl_tlv_parse_one(buf, len, &top, NULL), 0);
  size_t m = kl_tlv_open(&b);
  rewrite(&b, buf, &top, stack, 0, fn, arg);
  assert_int_equal(kl_tlv_close(&b, m, KL_T_SIGNATURE, 0), 0);
  assert_true(kl_buf_ok(&b));
  int r = kl_sig_parse(b.p, b.len, out, e);
  kl_buf_free(&b);
  free(buf);
  return r;
}

static kl_sig_t *load(const char *path) {
  size_t len;
  kl_sig_t *sig;
  kl_err_t e = {0};
  uint8_t *buf = tu_read_vector(path, &len);
  if (kl_sig_parse(buf, len, &sig, &e)) fail_msg("%s: %s", path, e.msg);
  free(buf);
  return sig;
}

static kl_verify_result_t verify(const kl_sig_t *sig, kl_policy_t pol, const kl_verify_opts_t *o) {
  kl_verify_result_t res;
  kl_verify(sig, pol, o, &res);
  return res;
}

#define EXPECT(res_expr, verdict_, code_)                                                          \
  do {                                                                                              \
    kl_verify_result_t r_ = (res_expr);                                                             \
    if (r_.verdict != (verdict_) || r_.code != (code_))                                             \
      fail_msg("line %d: expected %s %s, got %s %s: %s", __LINE__, kl_verdict_str(verdict_),       \
               kl_vcode_str(code_), kl_verdict_str(r_.verdict), kl_vcode_str(r_.code), r_.message); \
  } while (0)

/* ---- INT-11: metadata padding ---- */

/* Replaces the value of the first metadata sibling (0x801 / link / 0x04) met. */
typedef struct meta_edit {
  const uint8_t *value;
  size_t len;
  bool done;
} meta_edit_t;

static bool has_child(const kl_tlv_t *t, uint16_t type) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  kl_tlv_iter_children(&it, NULL, t);
  while (kl_tlv_next(&it, &c, NULL) > 0)
    if (c.type == type) return true;
  return false;
}

static edit_t meta_fn(const kl_tlv_t *t, const uint16_t *stack, size_t depth, kl_buf_t *b, void *arg) {
  meta_edit_t *m = arg;
  if (m->done) return E_COPY;
  if (depth == 1 && stack[0] == KL_T_AGGR_CHAIN) return E_RECURSE;
  if (depth == 2 && (t->type == KL_LINK_LEFT || t->type == KL_LINK_RIGHT) && has_child(t, KL_SIB_METADATA))
    return E_RECURSE;
  if (depth == 3 && t->type == KL_SIB_METADATA) {
    kl_tlv_put_bytes(b, KL_SIB_METADATA, t->flags & (KL_TLV_FLAG_N | KL_TLV_FLAG_F), m->value, m->len);
    m->done = true;
    return E_DONE;
  }
  return E_COPY;
}

/* A metadata value of V_META that has the one-byte padding 7E 01 01, without that padding: the
 * client id and the other fields, an odd number of bytes (37). */
static uint8_t *meta_rest(size_t *len) {
  kl_sig_t *sig = load(V_META);
  const kl_metadata_t *md = NULL;
  for (size_t i = 0; i < sig->n_chains && md == NULL; i++)
    for (size_t k = 0; k < sig->chains[i].n_links && md == NULL; k++) {
      const kl_metadata_t *x = &sig->chains[i].links[k].meta;
      if (sig->chains[i].links[k].kind == KL_SIB_METADATA && x->len > 3 && memcmp(x->value, "\x7e\x01\x01", 3) == 0)
        md = x;
    }
  assert_non_null(md);
  assert_true(md->trusted);
  *len = md->len - 3;
  assert_true(*len % 2 == 1);
  uint8_t *rest = malloc(*len);
  assert_non_null(rest);
  memcpy(rest, md->value + 3, *len);
  kl_sig_free(sig);
  return rest;
}

/* V_META with its first metadata value = pre + rest + post. Asserts that it parses, that the
 * metadata's trust is `trusted` (and its reason mentions `why`), and that the internal policy
 * fails with INT-11 when untrusted. */
static void check_meta(const char *pre, size_t pre_len, const char *post, size_t post_len, bool trusted,
                       const char *why) {
  size_t rest_len;
  uint8_t *rest = meta_rest(&rest_len);
  uint8_t v[300];
  assert_true(pre_len + rest_len + post_len <= sizeof v);
  memcpy(v, pre, pre_len);
  memcpy(v + pre_len, rest, rest_len);
  memcpy(v + pre_len + rest_len, post, post_len);
  meta_edit_t m = {v, pre_len + rest_len + post_len, false};
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (edit_sig(V_META, meta_fn, &m, &sig, &e)) fail_msg("%s: does not parse: %s", why, e.msg);
  assert_true(m.done);
  const kl_metadata_t *md = NULL;
  for (size_t i = 0; i < sig->n_chains && md == NULL; i++)
    for (size_t k = 0; k < sig->chains[i].n_links && md == NULL; k++)
      if (sig->chains[i].links[k].kind == KL_SIB_METADATA && sig->chains[i].links[k].meta.len == m.len &&
          memcmp(sig->chains[i].links[k].meta.value, v, m.len) == 0)
        md = &sig->chains[i].links[k].meta;
  assert_non_null(md);
  if (md->trusted != trusted) fail_msg("%s: trusted is %d", why, md->trusted);
  if (trusted) {
    assert_null(md->untrusted_why);
  } else {
    assert_non_null(md->untrusted_why);
    if (strstr(md->untrusted_why, why) == NULL) fail_msg("reason '%s' does not mention '%s'", md->untrusted_why, why);
    kl_verify_result_t r = verify(sig, KL_POLICY_INTERNAL, NULL);
    if (r.verdict != KL_VER_FAIL || r.code != KL_VC_INT_11 || strstr(r.message, why) == NULL)
      fail_msg("%s: got %s %s: %s", why, kl_verdict_str(r.verdict), kl_vcode_str(r.code), r.message);
  }
  kl_sig_free(sig);
  free(rest);
}

#define S(lit) lit, sizeof lit - 1

static void test_metadata_padding(void **state) {
  (void)state;
  /* Controls: the original value, and the two-byte padding (odd rest + 4 = odd, so only with a
   * one-byte padding is the total even: 3 + 37 = 40). */
  check_meta(S("\x7e\x01\x01"), S(""), true, NULL);
  /* Several padding elements (even total, each one well formed). */
  check_meta(S("\x7e\x01\x01\x7e\x02\x01\x01"), S(""), false, "more than one padding");
  /* Padding not first (the vector invalid-signature-aggr-chain-left-link-metadata-padding-wrong-order). */
  check_meta(S(""), S("\x7e\x01\x01"), false, "not the first element");
  /* TLV16 form: E0 1E 00 01 01 (with N and F), total 42. */
  check_meta(S("\xe0\x1e\x00\x01\x01"), S(""), false, "TLV16");
  /* Flags other than N+F: N only, F only, neither. */
  check_meta(S("\x5e\x01\x01"), S(""), false, "N and F flags");
  check_meta(S("\x3e\x01\x01"), S(""), false, "N and F flags");
  check_meta(S("\x1e\x01\x01"), S(""), false, "N and F flags");
  /* Values other than 01 and 01 01: 02, 00, 01 01 01 (total 42). */
  check_meta(S("\x7e\x01\x02"), S(""), false, "not 01 or 01 01");
  check_meta(S("\x7e\x01\x00"), S(""), false, "not 01 or 01 01");
  check_meta(S("\x7e\x03\x01\x01\x01"), S(""), false, "not 01 or 01 01");
  /* Odd total length: the two-byte padding with the 37-byte rest. */
  check_meta(S("\x7e\x02\x01\x01"), S(""), false, "odd length");
}

/* Without padding, a value of imprint length whose first byte is an algorithm id is INT-11; of
 * another length it is trusted. The values are one client id element: 01 LL name NUL. */
static void check_plain_meta(size_t name_len, bool trusted) {
  uint8_t v[64];
  v[0] = 0x01;
  v[1] = (uint8_t)(name_len + 1);
  memset(v + 2, 'a', name_len);
  v[2 + name_len] = 0;
  meta_edit_t m = {v, name_len + 3, false};
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (edit_sig(V_META, meta_fn, &m, &sig, &e)) fail_msg("does not parse: %s", e.msg);
  kl_verify_result_t r = verify(sig, KL_POLICY_INTERNAL, NULL);
  if (trusted) {
    /* Trusted metadata, but the chain no longer hashes to the calendar input: not INT-11. */
    assert_int_not_equal(r.code, KL_VC_INT_11);
  } else {
    EXPECT(r, KL_VER_FAIL, KL_VC_INT_11);
    assert_non_null(strstr(r.message, "reads as an imprint"));
  }
  kl_sig_free(sig);
}

static void test_metadata_imprint_lookalike(void **state) {
  (void)state;
  check_plain_meta(30, false); /* 33 bytes starting 01: a SHA-256 imprint's shape */
  check_plain_meta(31, true);  /* 34 bytes */
  check_plain_meta(29, true);  /* 32 bytes */
}

static void test_metadata_structure_still_parse_errors(void **state) {
  (void)state;
  size_t rest_len;
  uint8_t *rest = meta_rest(&rest_len);
  uint8_t v[300];
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  /* A padding element whose length runs past the end of the metadata value. */
  memcpy(v, rest, rest_len);
  memcpy(v + rest_len, "\x7e\x05\x01", 3);
  meta_edit_t m = {v, rest_len + 3, false};
  assert_int_not_equal(edit_sig(V_META, meta_fn, &m, &sig, &e), 0);
  assert_null(sig);
  /* A second client id is a structural error, not INT-11. */
  memcpy(v, "\x7e\x01\x01", 3);
  memcpy(v + 3, rest, rest_len);
  memcpy(v + 3 + rest_len, "\x01\x02\x62\x00", 4);
  meta_edit_t m2 = {v, rest_len + 7, false};
  assert_int_not_equal(edit_sig(V_META, meta_fn, &m2, &sig, &e), 0);
  assert_null(sig);
  free(rest);
}

/* ---- deprecated algorithms in the signature itself ---- */

/* Sets every aggregation chain's and the RFC 3161 record's aggregation time. */
static edit_t time_fn(const kl_tlv_t *t, const uint16_t *stack, size_t depth, kl_buf_t *b, void *arg) {
  uint64_t when = *(const uint64_t *)arg;
  bool in_chain = stack[0] == KL_T_AGGR_CHAIN || stack[0] == KL_T_RFC3161;
  if (depth == 1 && in_chain) return E_RECURSE;
  if (depth == 2 && in_chain && t->type == 0x02) {
    kl_tlv_put_uint(b, 0x02, t->flags & (KL_TLV_FLAG_N | KL_TLV_FLAG_F), when);
    return E_DONE;
  }
  return E_COPY;
}

static kl_verify_result_t at_time(const char *file, uint64_t when) {
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (edit_sig(file, time_fn, &when, &sig, &e)) fail_msg("%s at %llu: %s", file, (unsigned long long)when, e.msg);
  assert_int_equal(kl_sig_signing_time(sig), when);
  kl_verify_result_t r = verify(sig, KL_POLICY_INTERNAL, NULL);
  kl_sig_free(sig);
  return r;
}

static void test_aggregation_chain_sha1(void **state) {
  (void)state;
  /* SHA-1 aggregation is fine up to the second before 2016-07-01, INT-15 from then on. */
  EXPECT(at_time(V_SHA1_AGGR, SHA1_DEPRECATED - 1), KL_VER_OK, KL_VC_NONE);
  EXPECT(at_time(V_SHA1_AGGR, SHA1_DEPRECATED), KL_VER_FAIL, KL_VC_INT_15);
  EXPECT(at_time(V_SHA1_AGGR, 1500000000), KL_VER_FAIL, KL_VC_INT_15);
}

static void test_document_and_rfc3161_sha1(void **state) {
  (void)state;
  /* A SHA-1 document hash (the RFC 3161 record's input): INT-13 once deprecated. */
  EXPECT(at_time(V_SHA1_RFC_IN, SHA1_DEPRECATED - 1), KL_VER_OK, KL_VC_NONE);
  EXPECT(at_time(V_SHA1_RFC_IN, SHA1_DEPRECATED), KL_VER_FAIL, KL_VC_INT_13);
  /* SHA-1 inside the RFC 3161 record (signed attributes): INT-14. */
  EXPECT(at_time(V_SHA1_RFC_SIG, SHA1_DEPRECATED - 1), KL_VER_OK, KL_VC_NONE);
  EXPECT(at_time(V_SHA1_RFC_SIG, SHA1_DEPRECATED), KL_VER_FAIL, KL_VC_INT_14);
}

/* Replaces every aggregation chain's input hash with a SHA-1 imprint. */
static edit_t sha1_input_fn(const kl_tlv_t *t, const uint16_t *stack, size_t depth, kl_buf_t *b, void *arg) {
  (void)arg;
  uint64_t when = SHA1_DEPRECATED;
  if (depth <= 2 && (t->type == 0x02 || depth == 1)) return time_fn(t, stack, depth, b, &when);
  if (depth == 2 && stack[0] == KL_T_AGGR_CHAIN && t->type == 0x05) {
    kl_imprint_t imp = {.alg = KL_HASH_SHA1, .len = 20};
    memset(imp.digest, 0x5A, 20);
    kl_imprint_encode(b, 0x05, &imp);
    return E_DONE;
  }
  return E_COPY;
}

static void test_rfc3161_output_sha1(void **state) {
  (void)state;
  /* The RFC 3161 record's output (the first chain's input) in SHA-1 after 2016-07-01: INT-17,
   * judged before the record's output is computed. */
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (edit_sig(V_RFC, sha1_input_fn, NULL, &sig, &e)) fail_msg("%s", e.msg);
  assert_non_null(sig->rfc3161);
  assert_int_equal(sig->chains[0].input.alg, KL_HASH_SHA1);
  EXPECT(verify(sig, KL_POLICY_INTERNAL, NULL), KL_VER_FAIL, KL_VC_INT_17);
  kl_sig_free(sig);
}

/* ---- calendar chains: which algorithms count ---- */

static void test_calendar_step_algorithms(void **state) {
  (void)state;
  kl_sig_t *right = load(V_SHA1_RIGHT), *left = load(V_SHA1_LEFT);
  /* A SHA-1 right sibling (an older node, hashed as bytes) in 2024: no weak algorithm. */
  assert_int_equal(kl__cal_step_algs(right->cal), 1u << KL_HASH_SHA256);
  assert_int_equal(kl_cal_chain_weak_alg(right->cal, true), -1);
  /* A SHA-1 left sibling at 1467341200 (after 2016-07-01): SHA-1 hashed that step. */
  assert_true(left->cal->pub_time >= SHA1_DEPRECATED);
  assert_int_equal(kl_cal_chain_weak_alg(left->cal, true), KL_HASH_SHA1);
  assert_int_equal(kl_cal_chain_weak_alg(left->cal, false), -1); /* SHA-1 has no obsolete date */
  /* The input's algorithm counts for the right links before the first left link only. */
  kl_cal_link_t links[2] = {{KL_LINK_RIGHT, {.alg = KL_HASH_SHA256}}, {KL_LINK_LEFT, {.alg = KL_HASH_SHA256}}};
  kl_cal_chain_t c = {.pub_time = 1500000000, .aggr_time = 1500000000, .input = {.alg = KL_HASH_SHA1},
                      .links = links, .n_links = 2};
  assert_int_equal(kl_cal_chain_weak_alg(&c, true), KL_HASH_SHA1);
  links[0].dir = KL_LINK_LEFT;
  assert_int_equal(kl_cal_chain_weak_alg(&c, true), -1);
  c.pub_time = SHA1_DEPRECATED - 1;
  links[0].dir = KL_LINK_RIGHT;
  assert_int_equal(kl_cal_chain_weak_alg(&c, true), -1);
  /* The key-based policy: GEN-02 for the SHA-1 left link (the vector's row), by that rule. */
  kl_verify_result_t r = verify(left, KL_POLICY_KEY, NULL);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  assert_non_null(strstr(r.message, "deprecated"));
  kl_sig_free(right);
  kl_sig_free(left);
}

/* ---- calendar chains from an extender ---- */

typedef struct fake {
  const kl_cal_chain_t *chain; /* answered as is */
  const uint8_t *pdu;          /* or a canned 0x321 response (key "anon", request id 1) */
  size_t pdu_len;
  int calls;
} fake_t;

static int fake_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena, kl_cal_chain_t *out,
                       kl_err_t *e) {
  fake_t *f = arg;
  (void)aggr_time;
  (void)pub_time;
  f->calls++;
  if (f->pdu != NULL) return kl_ext_resp_chain_from_pdu(f->pdu, f->pdu_len, "anon", 1, arena, out, e);
  *out = *f->chain;
  out->links = kl_arena_memdup(arena, f->chain->links, f->chain->n_links * sizeof *out->links);
  return out->links ? 0 : kl_err_set(e, KL_ENOMEM, "out of memory");
}

/* The signature without its calendar chain and publication, so that every policy extends. */
static kl_sig_t *bare(const kl_sig_t *sig) {
  kl_sig_t *out;
  kl_err_t e = {0};
  if (kl_sig_rebuild(sig, NULL, 0, NULL, 0, &out, &e)) fail_msg("%s", e.msg);
  assert_null(out->cal);
  return out;
}

static kl_verify_result_t user_pub(const kl_sig_t *sig, const kl_cal_chain_t *chain, fake_t *f) {
  kl_verify_opts_t o = {0};
  kl_hasher_t h;
  kl_err_t e = {0};
  assert_int_equal(kl_hasher_init(&h, &e), 0);
  assert_int_equal(kl_cal_chain_root(&h, chain, &o.user_pub_hash, &e), 0);
  kl_hasher_close(&h);
  o.has_user_pub = true;
  o.user_pub_time = chain->pub_time;
  o.extending_allowed = true;
  o.extend = fake_extend;
  o.extend_arg = f;
  return verify(sig, KL_POLICY_USER_PUB, &o);
}

static void test_extended_chain_deprecated(void **state) {
  (void)state;
  kl_sig_t *left = load(V_SHA1_LEFT), *right = load(V_SHA1_RIGHT);
  kl_sig_t *bl = bare(left), *br = bare(right);
  kl_verify_opts_t o = {0};
  /* The extender answers the SHA-1-left-link chain, published at 1467341200: the user
   * publication matches its root, but the chain used SHA-1 after 2016-07-01: GEN-02. */
  fake_t f = {left->cal, NULL, 0, 0};
  kl_verify_result_t r = user_pub(bl, left->cal, &f);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  assert_non_null(strstr(r.message, "deprecated"));
  assert_int_equal(f.calls, 1);
  /* The calendar-based policy does not judge deprecation (SHA-1 is not obsolete): OK. */
  o.extend = fake_extend;
  o.extend_arg = &f;
  EXPECT(verify(bl, KL_POLICY_CALENDAR, &o), KL_VER_OK, KL_VC_NONE);
  /* A SHA-1 right sibling in 2024: the publication-based policy accepts the extended chain. */
  fake_t g = {right->cal, NULL, 0, 0};
  EXPECT(user_pub(br, right->cal, &g), KL_VER_OK, KL_VC_NONE);
  assert_int_equal(g.calls, 1);
  kl_sig_free(bl);
  kl_sig_free(br);
  kl_sig_free(left);
  kl_sig_free(right);
}

static void test_extended_chain_deprecated_pubfile(void **state) {
  (void)state;
  /* libksi's own resources: the extender answers a chain with a SHA-1 left link published at
   * 1468540800, for the publications file's first publication after the signing time. The chain
   * is judged before its root: GEN-02 under the publications-file-based policy. */
  size_t pf_len, resp_len;
  uint8_t *pf_buf = tu_read_vector(R_PUBFILE, &pf_len), *resp = tu_read_vector(R_EXT_SHA1, &resp_len);
  kl_pubfile_t *pf = NULL;
  kl_err_t e = {0};
  assert_int_equal(kl_pubfile_parse(pf_buf, pf_len, &pf, &e), 0);
  kl_sig_t *sig = load(V_SHA1_LEFT);
  fake_t f = {NULL, resp, resp_len, 0};
  kl_verify_opts_t o = {.pubfile = pf, .extending_allowed = true, .extend = fake_extend, .extend_arg = &f};
  kl_verify_result_t r = verify(sig, KL_POLICY_PUBFILE, &o);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  assert_non_null(strstr(r.message, "SHA-1"));
  assert_int_equal(f.calls, 1);
  /* Without extending: inconclusive for that reason, the extender not asked. */
  o.extending_allowed = false;
  r = verify(sig, KL_POLICY_PUBFILE, &o);
  EXPECT(r, KL_VER_NA, KL_VC_GEN_02);
  assert_int_equal(f.calls, 1);
  kl_sig_free(sig);
  kl_pubfile_free(pf);
  free(pf_buf);
  free(resp);
}

static void test_extended_chain_shape(void **state) {
  (void)state;
  /* An extender chain whose aggregation time field is right but whose shape encodes another
   * second: CAL-03 (what INT-05 would say of the extended signature). */
  kl_sig_t *right = load(V_SHA1_RIGHT);
  kl_sig_t *br = bare(right);
  kl_cal_chain_t c = *right->cal;
  kl_cal_link_t links[64];
  assert_true(c.n_links <= 64);
  memcpy(links, c.links, c.n_links * sizeof *links);
  c.links = links;
  for (size_t i = 0; i < c.n_links; i++) /* the bottom right link turned into a left one */
    if (links[i].dir == KL_LINK_RIGHT) {
      links[i].dir = KL_LINK_LEFT;
      break;
    }
  uint64_t t;
  assert_true(!kl_cal_chain_time(&c, &t) || t != c.aggr_time);
  fake_t f = {&c, NULL, 0, 0};
  kl_verify_opts_t o = {.extend = fake_extend, .extend_arg = &f};
  EXPECT(verify(br, KL_POLICY_CALENDAR, &o), KL_VER_FAIL, KL_VC_CAL_03);
  kl_sig_free(br);
  kl_sig_free(right);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metadata_padding),
      cmocka_unit_test(test_metadata_imprint_lookalike),
      cmocka_unit_test(test_metadata_structure_still_parse_errors),
      cmocka_unit_test(test_aggregation_chain_sha1),
      cmocka_unit_test(test_document_and_rfc3161_sha1),
      cmocka_unit_test(test_rfc3161_output_sha1),
      cmocka_unit_test(test_calendar_step_algorithms),
      cmocka_unit_test(test_extended_chain_deprecated),
      cmocka_unit_test(test_extended_chain_deprecated_pubfile),
      cmocka_unit_test(test_extended_chain_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
