/* The signing client: real Guardtime aggregation responses become verified signatures (with
 * their HMAC key and algorithm, request level, statuses, malformed PDUs refused); requests
 * round-trip through the PDU codec; and a synthetic gateway built from the real round engine
 * answers plain requests, requests at level R > 0, and local trees, whose signatures verify. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"
#include "keyless/round.h"
#include "keyless/signclient.h"
#include "keyless/tree.h"
#include "keyless/verify.h"
#include "testutil.h"

/* The document hash of the two 2017 responses (their bottom chain's input). */
#define DOC_2017 "SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"
#define DOC_2016 "SHA-256:35444be12efa697c9651013296cc5caeed3b0aee99d1562fb6b65913636483b6"

typedef struct {
  const char *file, *key, *doc;
  int alg;
  unsigned level; /* the request level the response was made for */
  uint64_t time;
  bool has_cal;
} rvec_t;

static const rvec_t rvecs[] = {
    {"pdu/ok-sig-2017-07-14.1-aggr_response.tlv", "anon", DOC_2017, KL_HASH_SHA256, 0, 1500030847, true},
    {"pdu/ok-sig-2017-04-20.1-aggr_response-hmac_sha512.tlv", "test3", DOC_2017, KL_HASH_SHA512, 0, 1500277150, true},
    /* Signed with a metadata link under the document: the request was at level 1. */
    {"pdu/ok-sig-2016-11-10.1.mdata.aggr-response.tlv", "anon", DOC_2016, KL_HASH_SHA256, 1, 1561460444, true},
};

static kl_imprint_t imp(const char *text) {
  kl_imprint_t x;
  kl_err_t e = {0};
  if (kl_imprint_parse_text(&x, text, &e)) fail_msg("%s: %s", text, e.msg);
  return x;
}

static kl_imprint_t doc(int i) {
  kl_imprint_t x;
  kl_hash(KL_HASH_SHA256, &i, sizeof i, &x, NULL);
  return x;
}

static kl_aggr_auth_t auth_of(const char *key, int alg) {
  kl_aggr_auth_t a = {"anon", key, strlen(key), alg};
  return a;
}

/* Opens a vector as a response; the expected error code (0 for success) and message part. */
static kl_aggr_resp_t *open_vec(const char *file, const char *key, int alg, int want, const char *needle) {
  size_t n;
  uint8_t *p = tu_read_vector(file, &n);
  kl_aggr_auth_t a = auth_of(key, alg);
  kl_aggr_resp_t *r = NULL;
  kl_err_t e = {0};
  int rc = kl_aggr_resp_open(p, n, &a, &r, &e);
  free(p);
  if (rc != want) fail_msg("%s: expected %s, got %s: %s", file, kl_errname(want), kl_errname(rc), e.msg);
  if (needle && strstr(e.msg, needle) == NULL) fail_msg("%s: message '%s' lacks '%s'", file, e.msg, needle);
  if (want) assert_null(r);
  return r;
}

static void test_real_responses(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof rvecs / sizeof rvecs[0]; i++) {
    const rvec_t *v = &rvecs[i];
    kl_aggr_resp_t *r = open_vec(v->file, v->key, v->alg, 0, NULL);
    assert_int_equal(kl_aggr_resp_count(r), 1);
    kl_aggr_item_t it = {1, imp(v->doc), v->level};
    kl_sig_t *sig = NULL;
    kl_err_t e = {0};
    if (kl_aggr_resp_signature(r, &it, &sig, &e)) fail_msg("%s: %s", v->file, e.msg);
    assert_int_equal(sig->n_chains, 5);
    assert_true(kl_imprint_eq(kl_sig_document_hash(sig), &it.hash));
    assert_int_equal(kl_sig_signing_time(sig), v->time);
    assert_int_equal(sig->cal != NULL, v->has_cal);
    assert_int_equal(sig->auth != NULL, v->has_cal);
    /* The request level went into the first link: a verifier from level 0 agrees. */
    assert_int_equal(sig->chains[0].links[0].level_corr, v->level);
    kl_verify_opts_t o = {0};
    kl_verify_result_t res;
    o.doc_hash = &it.hash;
    kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
    assert_int_equal(res.verdict, KL_VER_OK);
    if (v->level == 0) { /* nothing to change: the parts are copied byte for byte */
      size_t n;
      uint8_t *raw = tu_read_vector(v->file, &n);
      kl_pdu_t *pdu = NULL;
      kl_buf_t b = KL_BUF_INIT;
      assert_int_equal(kl_pdu_parse(raw, n, &pdu, NULL), 0);
      assert_int_equal(kl_pdu_aggr_resp_sig(&pdu->aggr_resps[0], &b, NULL), 0);
      const uint8_t *sb = kl_sig_bytes(sig, &n);
      assert_int_equal(n, b.len);
      assert_memory_equal(sb, b.p, n);
      kl_buf_free(&b);
      kl_pdu_free(pdu);
      free(raw);
    }
    kl_sig_free(sig);
    /* The wrong request level breaks the chain: refused, naming the check. */
    it.level = v->level ? 0 : 1;
    assert_int_equal(kl_aggr_resp_signature(r, &it, &sig, &e), KL_EFORMAT);
    assert_null(sig);
    assert_non_null(strstr(e.msg, "does not verify internally"));
    assert_non_null(strstr(e.msg, "INT-01"));
    /* Another document: GEN-01. */
    it.level = v->level;
    it.hash = doc(7);
    assert_int_equal(kl_aggr_resp_signature(r, &it, &sig, &e), KL_EFORMAT);
    assert_non_null(strstr(e.msg, "GEN-01"));
    /* An answer to another request id is not ours. */
    it.hash = imp(v->doc);
    it.request_id = 2;
    assert_int_equal(kl_aggr_resp_signature(r, &it, &sig, &e), KL_EFORMAT);
    assert_non_null(strstr(e.msg, "no answer for request id 2 (it answers request id 1)"));
    kl_aggr_resp_free(r);
  }
}

static void test_hmac(void **state) {
  (void)state;
  open_vec("pdu/ok-sig-2017-07-14.1-aggr_response.tlv", "wrong", 0, KL_EHMAC, NULL);
  open_vec("pdu/ok-sig-2017-04-20.1-aggr_response-hmac_sha512.tlv", "anon", KL_HASH_SHA512, KL_EHMAC, NULL);
  /* The right key, but the client asked for SHA-256 (the default) and got SHA-512. */
  open_vec("pdu/ok-sig-2017-04-20.1-aggr_response-hmac_sha512.tlv", "test3", 0, KL_EHMAC, "mismatch");
  open_vec("pdu/ok-sig-2017-07-14.1-aggr_response.tlv", "anon", KL_HASH_SHA512, KL_EHMAC, "mismatch");
  /* One flipped bit anywhere in the signed part is caught. */
  size_t n;
  uint8_t *p = tu_read_vector("pdu/ok-sig-2017-07-14.1-aggr_response.tlv", &n);
  p[n / 2] ^= 0x01;
  kl_aggr_auth_t a = auth_of("anon", 0);
  kl_aggr_resp_t *r = NULL;
  int rc = kl_aggr_resp_open(p, n, &a, &r, NULL);
  assert_true(rc == KL_EHMAC || rc == KL_EFORMAT || rc == KL_ECRITICAL);
  assert_null(r);
  free(p);
}

static void test_error_and_malformed(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_sig_t *sig = NULL;
  /* A per-request status: the PDU is authentic, the request failed. */
  kl_aggr_resp_t *r = open_vec("pdu/ok_aggr_err_response-1.tlv", "anon", 0, 0, NULL);
  kl_aggr_item_t it = {1, imp(DOC_2017), 0};
  assert_int_equal(kl_aggr_resp_signature(r, &it, &sig, &e), KL_ESERVICE);
  assert_non_null(strstr(e.msg, "0x103"));
  assert_non_null(strstr(e.msg, "The request contained invalid payload"));
  assert_int_equal(kl_aggr_err_status(&e), 0x103); /* what keyless sign classifies by */
  assert_false(kl_aggr_status_retryable(0x103));
  assert_null(sig);
  kl_aggr_resp_free(r);
  open_vec("pdu/nok_aggr_response_bad_tag.tlv", "anon", 0, KL_ECRITICAL, "unknown critical element 0x99");
  open_vec("pdu/nok_aggr_response_missing_header.tlv", "anon", 0, KL_EFORMAT, "no header");
  /* An extension response is not an aggregation response. */
  open_vec("pdu/ok-sig-2014-08-01.1-extend_response.tlv", "anon", 0, KL_EFORMAT, "expected an aggregation response");
  /* PDU-level errors, unsigned as gateways may send them: 0x102 is a login failure. */
  static const struct { uint64_t status; int want; const char *needle; } errs[] = {
      {0x102, KL_EAUTH, "could not be authenticated"}, {0x301, KL_ESERVICE, "No response from upstream"}, {0x999, KL_ESERVICE, "0x999"}};
  for (size_t i = 0; i < 3; i++) {
    kl_pdu_writer_t w;
    uint8_t *p = NULL;
    size_t n;
    assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, NULL, NULL), 0);
    assert_int_equal(kl_pdu_add_error(&w, errs[i].status, "from the gateway", NULL), 0);
    assert_int_equal(kl_pdu_writer_finish_unsigned(&w, &p, &n, NULL), 0);
    kl_aggr_auth_t a = auth_of("anon", 0);
    assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, &e), errs[i].want);
    if (!strstr(e.msg, errs[i].needle) || !strstr(e.msg, "from the gateway")) fail_msg("message: %s", e.msg);
    kl_err_wrap(&e, "aggregator http://gw/"); /* as kl_aggr_exchange wraps it */
    assert_int_equal(kl_aggr_err_status(&e), errs[i].status);
    free(p);
  }
  /* Not a PDU at all. */
  kl_aggr_auth_t a = auth_of("anon", 0);
  assert_int_not_equal(kl_aggr_resp_open((const uint8_t *)"hello", 5, &a, &r, &e), 0);
  assert_null(r);
}

static void test_request(void **state) {
  (void)state;
  kl_aggr_item_t items[2] = {{7, doc(1), 0}, {9, doc(2), 5}};
  kl_aggr_auth_t a = {"alice", "secret", 6, KL_HASH_SHA512};
  uint8_t *p = NULL;
  size_t n;
  kl_err_t e = {0};
  if (kl_aggr_request_build(&a, items, 2, true, &p, &n, &e)) fail_msg("%s", e.msg);
  kl_pdu_t *pdu = NULL;
  assert_int_equal(kl_pdu_parse(p, n, &pdu, NULL), 0);
  assert_int_equal(pdu->type, KL_PDU_AGGR_REQ);
  assert_string_equal(pdu->header->login_id, "alice");
  assert_int_equal(kl_pdu_check_hmac_alg(pdu, KL_HASH_SHA512, "secret", 6, NULL), 0);
  assert_int_equal(kl_pdu_check_hmac_alg(pdu, KL_HASH_SHA512, "secreT", 6, NULL), KL_EHMAC);
  assert_int_equal(pdu->n_aggr_reqs, 2);
  assert_int_equal(pdu->aggr_reqs[0].request_id, 7);
  assert_false(pdu->aggr_reqs[0].has_level);
  assert_true(kl_imprint_eq(&pdu->aggr_reqs[0].hash, &items[0].hash));
  assert_int_equal(pdu->aggr_reqs[1].request_id, 9);
  assert_true(pdu->aggr_reqs[1].has_level);
  assert_int_equal(pdu->aggr_reqs[1].level, 5);
  assert_non_null(pdu->config);
  kl_pdu_free(pdu);
  free(p);
  /* Refused before anything is built. */
  kl_aggr_item_t dup[2] = {{7, doc(1), 0}, {7, doc(2), 0}}, zero = {0, doc(1), 0}, high = {1, doc(1), 256};
  assert_int_equal(kl_aggr_request_build(&a, dup, 2, false, &p, &n, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "used twice"));
  assert_int_equal(kl_aggr_request_build(&a, &zero, 1, false, &p, &n, &e), KL_EINVAL);
  assert_int_equal(kl_aggr_request_build(&a, &high, 1, false, &p, &n, &e), KL_EINVAL);
  assert_int_equal(kl_aggr_request_build(&a, NULL, 0, false, &p, &n, &e), KL_EINVAL);
  kl_aggr_auth_t nouser = {NULL, "k", 1, 0};
  assert_int_equal(kl_aggr_request_build(&nouser, items, 1, false, &p, &n, &e), KL_EINVAL);
  assert_null(p);
  /* A configuration-only request is fine; the default HMAC is SHA-256. */
  kl_aggr_auth_t def = {"bob", "k", 1, 0};
  assert_int_equal(kl_aggr_request_build(&def, NULL, 0, true, &p, &n, NULL), 0);
  assert_int_equal(kl_pdu_parse(p, n, &pdu, NULL), 0);
  assert_int_equal(pdu->n_aggr_reqs, 0);
  assert_int_equal(kl_pdu_check_hmac_alg(pdu, KL_HASH_SHA256, "k", 1, NULL), 0);
  kl_pdu_free(pdu);
  free(p);
  uint64_t id1 = kl_aggr_request_id(), id2 = kl_aggr_request_id();
  assert_true(id1 != 0 && id1 != id2 && id1 < (1ull << 62));
}

/* A signed 0x221 with the given response elements and configuration. */
static uint8_t *resp_pdu(const kl_pdu_aggr_resp_t *rs, size_t n, const kl_pdu_config_t *cfg, const char *key,
                         size_t *len) {
  kl_pdu_writer_t w;
  kl_pdu_header_t hdr = {"anon", false, false, 0, 0};
  uint8_t *p = NULL;
  kl_err_t e = {0};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr, NULL), 0);
  for (size_t i = 0; i < n; i++)
    if (kl_pdu_add_aggr_resp(&w, &rs[i], &e)) fail_msg("%s", e.msg);
  if (cfg) assert_int_equal(kl_pdu_add_config(&w, cfg, NULL), 0);
  if (kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, strlen(key), &p, len, &e)) fail_msg("%s", e.msg);
  return p;
}

static void test_config(void **state) {
  (void)state;
  const char *uris[2] = {"ksi+tcp://agg1:3333", "http://agg2/"};
  kl_pdu_config_t cfg = {0};
  cfg.has_max_level = cfg.has_aggr_algo = cfg.has_aggr_period = cfg.has_max_requests = true;
  cfg.max_level = 19;
  cfg.aggr_algo = KL_HASH_SHA256;
  cfg.aggr_period = 100;
  cfg.max_requests = 1000;
  cfg.parent_uris = uris;
  cfg.n_parent_uris = 2;
  size_t n;
  uint8_t *p = resp_pdu(NULL, 0, &cfg, "k", &n);
  kl_aggr_auth_t a = auth_of("k", 0);
  kl_aggr_resp_t *r = NULL;
  kl_aggr_config_t c;
  assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
  assert_int_equal(kl_aggr_resp_config(r, &c, NULL), 0);
  assert_true(c.has_max_level && c.has_aggr_algo && c.has_aggr_period && c.has_max_requests);
  assert_int_equal(c.max_level, 19);
  assert_int_equal(c.aggr_algo, KL_HASH_SHA256);
  assert_int_equal(c.aggr_period, 100);
  assert_int_equal(c.max_requests, 1000);
  assert_int_equal(c.n_parent_uris, 2);
  assert_string_equal(c.parent_uris[1], "http://agg2/");
  kl_aggr_resp_free(r);
  free(p);
  /* Out of range values are refused; a response without configuration says so. */
  cfg.max_level = 300;
  p = resp_pdu(NULL, 0, &cfg, "k", &n);
  kl_err_t e = {0};
  assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
  assert_int_equal(kl_aggr_resp_config(r, &c, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "max_level 300"));
  kl_aggr_resp_free(r);
  free(p);
  cfg.max_level = 20;
  cfg.aggr_algo = 0x03;
  p = resp_pdu(NULL, 0, &cfg, "k", &n);
  assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
  assert_int_equal(kl_aggr_resp_config(r, &c, &e), KL_EFORMAT);
  kl_aggr_resp_free(r);
  free(p);
  r = open_vec("pdu/ok-sig-2017-07-14.1-aggr_response.tlv", "anon", 0, 0, NULL);
  assert_int_equal(kl_aggr_resp_config(r, &c, NULL), KL_ENOTFOUND);
  kl_aggr_resp_free(r);
}

/* ---- a synthetic gateway: the round engine under a fake parent tier ---- */

#define T0 1760000000ull

typedef struct {
  kl_round_t *round;
  kl_tree_t *parent;
  kl_buf_t pchain;
  size_t slots[8];
  size_t n;
} gw_t;

/* A gateway round over requests (hash, level), closed and answered by a parent whose tree
 * has our root in the middle of two others. */
static void gw_run(gw_t *g, const kl_imprint_t *h, const unsigned *lv, size_t n) {
  kl_round_config_t cfg = {KL_HASH_SHA256, 255, 100, 0};
  kl_imprint_t root;
  unsigned level;
  uint64_t st;
  kl_err_t e = {0};
  memset(g, 0, sizeof *g);
  assert_int_equal(kl_round_create(&cfg, &g->round, NULL), 0);
  for (size_t i = 0; i < n; i++) {
    kl_round_identity_t who = {"anon", "gw-test:1", true, true, i, T0 * 1000000 + i};
    if (kl_round_add(g->round, &h[i], lv[i], &who, &g->slots[i], &st, &e)) fail_msg("add %zu: %s", i, e.msg);
  }
  g->n = n;
  assert_int_equal(kl_round_close(g->round, &root, &level, NULL), 0);
  kl_tree_leaf_t top[3] = {{doc(100), 4, NULL, 0}, {root, (uint8_t)level, NULL, 0}, {doc(101), 9, NULL, 0}};
  assert_int_equal(kl_tree_build(top, 3, KL_HASH_SHA256, 255, &g->parent, NULL), 0);
  assert_int_equal(kl_tree_chain(g->parent, 1, T0, NULL, 0, &g->pchain, NULL), 0);
}

/* The 0x221 answering request `i` of the round as request id `id`, signed with key "k". */
static uint8_t *gw_answer(gw_t *g, const size_t *which, const uint64_t *ids, size_t k, size_t *len) {
  const uint8_t *parts[1] = {g->pchain.p};
  size_t lens[1] = {g->pchain.len};
  kl_round_parent_t parent = {parts, lens, 1};
  kl_buf_t ans[8];
  kl_pdu_part_t pp[8][4];
  kl_pdu_aggr_resp_t rs[8];
  kl_err_t e = {0};
  memset(rs, 0, sizeof rs);
  for (size_t j = 0; j < k; j++) {
    kl_buf_init(&ans[j]);
    if (kl_round_answer(g->round, &parent, T0, g->slots[which[j]], &ans[j], &e)) fail_msg("%s", e.msg);
    kl_tlv_iter_t it;
    kl_tlv_t t;
    size_t np = 0;
    kl_tlv_iter_init(&it, ans[j].p, ans[j].p, ans[j].len);
    while (kl_tlv_next(&it, &t, NULL) == 1) {
      assert_true(np < 4);
      pp[j][np].type = t.type;
      pp[j][np].raw = t.raw;
      pp[j][np].len = t.raw_len;
      np++;
    }
    rs[j].request_id = ids[j];
    rs[j].parts = pp[j];
    rs[j].n_parts = np;
  }
  uint8_t *p = resp_pdu(rs, k, NULL, "k", len);
  for (size_t j = 0; j < k; j++) kl_buf_free(&ans[j]);
  return p;
}

static void gw_free(gw_t *g) {
  kl_round_free(g->round);
  kl_tree_free(g->parent);
  kl_buf_free(&g->pchain);
}

static void check_sig(const kl_sig_t *sig, const kl_imprint_t *d) {
  kl_verify_opts_t o = {0};
  kl_verify_result_t res;
  o.doc_hash = d;
  kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
  if (res.verdict != KL_VER_OK) fail_msg("%s %s", kl_vcode_str(res.code), res.message);
  assert_int_equal(kl_sig_signing_time(sig), T0);
}

/* Plain requests at level 0 and at level R > 0, answered together in one PDU. */
static void test_roundtrip_plain(void **state) {
  (void)state;
  kl_imprint_t h[3] = {doc(1), doc(2), doc(3)};
  unsigned lv[3] = {0, 6, 0};
  gw_t g;
  gw_run(&g, h, lv, 3);
  size_t which[2] = {0, 1}, n;
  uint64_t ids[2] = {11, 12};
  uint8_t *p = gw_answer(&g, which, ids, 2, &n);
  kl_aggr_auth_t a = auth_of("k", 0);
  kl_aggr_resp_t *r = NULL;
  kl_err_t e = {0};
  assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
  assert_int_equal(kl_aggr_resp_count(r), 2);
  for (size_t i = 0; i < 2; i++) {
    kl_aggr_item_t it = {ids[i], h[i], lv[i]};
    kl_sig_t *sig = NULL;
    if (kl_aggr_resp_signature(r, &it, &sig, &e)) fail_msg("request %zu: %s", i, e.msg);
    assert_int_equal(sig->n_chains, 2);
    /* The gateway answers relative to R; the signature carries R in its first link. */
    assert_int_equal(sig->chains[0].links[0].level_corr, lv[i]);
    kl_verify_opts_t o = {0};
    kl_verify_result_t res;
    o.doc_hash = &h[i];
    o.doc_level = lv[i];
    kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
    assert_int_equal(res.verdict, KL_VER_OK);
    assert_int_equal(kl_sig_signing_time(sig), T0);
    kl_sig_free(sig);
  }
  /* Claiming level 0 for the level-6 request: refused. */
  kl_aggr_item_t bad = {12, h[1], 0};
  kl_sig_t *sig = NULL;
  assert_int_equal(kl_aggr_resp_signature(r, &bad, &sig, &e), KL_EFORMAT);
  assert_null(sig);
  /* The third request was not answered. */
  kl_aggr_item_t none = {13, h[2], 0};
  assert_int_equal(kl_aggr_resp_signature(r, &none, &sig, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "no answer for request id 13"));
  kl_aggr_resp_free(r);
  free(p);
  /* The same response answering one request id twice is ambiguous. */
  uint64_t same[2] = {11, 11};
  p = gw_answer(&g, which, same, 2, &n);
  assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
  kl_aggr_item_t it = {11, h[0], 0};
  assert_int_equal(kl_aggr_resp_signature(r, &it, &sig, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "2 times"));
  kl_aggr_resp_free(r);
  free(p);
  gw_free(&g);
}

/* Local trees of several sizes (root levels 1..3) signed next to other clients' requests. */
static void test_roundtrip_local_tree(void **state) {
  (void)state;
  static const size_t sizes[] = {2, 3, 5, 8};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t m = sizes[s];
    kl_imprint_t docs[8];
    for (size_t i = 0; i < m; i++) docs[i] = doc((int)(1000 * s + i));
    kl_sign_batch_t *b = NULL;
    kl_err_t e = {0};
    int alg = s == 2 ? KL_HASH_SHA512 : 0; /* the tree's algorithm need not be the documents' */
    assert_int_equal(kl_sign_batch_create(docs, m, 3, alg, 42, &b, &e), 0);
    const kl_aggr_item_t *item = kl_sign_batch_item(b);
    assert_int_equal(kl_sign_batch_size(b), m);
    assert_int_equal(item->request_id, 42);
    assert_int_equal(item->level, m <= 2 ? 1 : m <= 4 ? 2 : 3);
    /* The round also holds a plain request and another client's tree at level 2. */
    kl_imprint_t h[3] = {doc(-1), item->hash, doc(-2)};
    unsigned lv[3] = {0, item->level, 2};
    gw_t g;
    gw_run(&g, h, lv, 3);
    size_t which[1] = {1}, n;
    uint64_t ids[1] = {42};
    uint8_t *p = gw_answer(&g, which, ids, 1, &n);
    kl_aggr_auth_t a = auth_of("k", 0);
    kl_aggr_resp_t *r = NULL;
    assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
    for (size_t i = 0; i < m; i++) {
      kl_sig_t *sig = NULL;
      if (kl_sign_batch_signature(b, r, i, &sig, &e)) fail_msg("tree of %zu, leaf %zu: %s", m, i, e.msg);
      check_sig(sig, &docs[i]);
      /* local chain + gateway chain + parent chain, indexes prefix-linked (§4.5) */
      assert_int_equal(sig->n_chains, 3);
      const kl_aggr_chain_t *loc = &sig->chains[0], *gwc = &sig->chains[1];
      assert_int_equal(loc->n_index, gwc->n_index + 1);
      assert_memory_equal(loc->index, gwc->index, gwc->n_index * sizeof *gwc->index);
      assert_true(kl_imprint_eq(&loc->input, &docs[i]));
      assert_true(kl_imprint_eq(&gwc->input, &item->hash));
      assert_int_equal(gwc->links[0].level_corr, 0); /* as the gateway sent it */
      assert_int_equal(loc->aggr_time, T0);
      assert_int_equal(loc->algo, alg ? (uint64_t)alg : KL_HASH_SHA256);
      /* The signature is for this leaf only. */
      kl_verify_opts_t o = {0};
      kl_verify_result_t res;
      o.doc_hash = &docs[(i + 1) % m];
      kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
      assert_int_equal(res.verdict, KL_VER_FAIL);
      assert_string_equal(kl_vcode_str(res.code), "GEN-01");
      kl_sig_free(sig);
    }
    kl_sig_t *sig = NULL;
    assert_int_equal(kl_sign_batch_signature(b, r, m, &sig, &e), KL_EINVAL);
    kl_aggr_resp_free(r);
    free(p);
    /* The answer for the other client's request is not this tree's. */
    which[0] = 2;
    p = gw_answer(&g, which, ids, 1, &n);
    assert_int_equal(kl_aggr_resp_open(p, n, &a, &r, NULL), 0);
    assert_int_equal(kl_sign_batch_signature(b, r, 0, &sig, &e), KL_EFORMAT);
    assert_non_null(strstr(e.msg, "does not verify internally"));
    assert_null(sig);
    kl_aggr_resp_free(r);
    free(p);
    gw_free(&g);
    kl_sign_batch_free(b);
  }
}

static void test_batch_limits(void **state) {
  (void)state;
  kl_imprint_t docs[9];
  for (int i = 0; i < 9; i++) docs[i] = doc(i);
  kl_sign_batch_t *b = NULL;
  kl_err_t e = {0};
  assert_int_equal(kl_sign_batch_capacity(0), 1);
  assert_int_equal(kl_sign_batch_capacity(3), 8);
  assert_int_equal(kl_sign_batch_create(docs, 9, 3, 0, 1, &b, &e), KL_ERANGE);
  assert_non_null(strstr(e.msg, "9 hashes"));
  assert_null(b);
  assert_int_equal(kl_sign_batch_create(docs, 2, 0, 0, 1, &b, &e), KL_ERANGE);
  assert_int_equal(kl_sign_batch_create(docs, 0, 3, 0, 1, &b, &e), KL_EINVAL);
  assert_int_equal(kl_sign_batch_create(docs, 2, 3, 0, 0, &b, &e), KL_EINVAL);
  kl_imprint_t bad = docs[0];
  bad.len = 20;
  assert_int_equal(kl_sign_batch_create(&bad, 1, 3, 0, 1, &b, &e), KL_EHASHALG);
  /* One hash is sent as it is, at level 0. */
  assert_int_equal(kl_sign_batch_create(docs, 1, 0, 0, 5, &b, &e), 0);
  assert_true(kl_imprint_eq(&kl_sign_batch_item(b)->hash, &docs[0]));
  assert_int_equal(kl_sign_batch_item(b)->level, 0);
  kl_sign_batch_free(b);
  /* SHA-1 (id 0) is not accepted for new signatures, as documents or as the tree's algorithm. */
  kl_imprint_t sha1[2];
  memset(sha1, 0, sizeof sha1);
  sha1[0].alg = sha1[1].alg = KL_HASH_SHA1;
  sha1[0].len = sha1[1].len = 20;
  assert_int_equal(kl_sign_batch_create(sha1, 2, 3, 0, 5, &b, &e), KL_EHASHALG);
  assert_non_null(strstr(e.msg, "SHA-1"));
  assert_int_equal(kl_sign_batch_create(sha1, 1, 3, 0, 5, &b, &e), KL_EHASHALG);
  /* Another tree algorithm than the documents' is fine. */
  assert_int_equal(kl_sign_batch_create(docs, 3, 3, KL_HASH_SHA512, 5, &b, &e), 0);
  assert_int_equal(kl_sign_batch_item(b)->hash.alg, KL_HASH_SHA512);
  kl_sign_batch_free(b);
}

/* kl_sign_hashes through file:// (a canned response), and transport errors. */
static void test_exchange(void **state) {
  (void)state;
  char url[1200];
  kl_imprint_t d = imp(DOC_2017);
  kl_sig_t *sigs[2] = {NULL, NULL};
  kl_err_t e = {0};
  snprintf(url, sizeof url, "file://%s/pdu/ok-sig-2017-07-14.1-aggr_response.tlv", KL_VECTORS);
  if (kl_sign_hashes(url, "anon", "anon", &d, 1, 8, 0, 1000, sigs, &e)) fail_msg("%s", e.msg);
  assert_non_null(sigs[0]);
  assert_int_equal(kl_sig_signing_time(sigs[0]), 1500030847);
  kl_sig_free(sigs[0]);
  /* The wrong key, the wrong document, a local tree the response is not for. */
  assert_int_equal(kl_sign_hashes(url, "anon", "nona", &d, 1, 8, 0, 1000, sigs, &e), KL_EHMAC);
  assert_non_null(strstr(e.msg, url));
  kl_imprint_t two[2] = {d, doc(3)};
  assert_int_equal(kl_sign_hashes(url, "anon", "anon", two, 1, 8, 0, 1000, sigs, &e), 0);
  kl_sig_free(sigs[0]);
  assert_int_equal(kl_sign_hashes(url, "anon", "anon", two + 1, 1, 8, 0, 1000, sigs, &e), KL_EFORMAT);
  assert_int_equal(kl_sign_hashes(url, "anon", "anon", two, 2, 8, 0, 1000, sigs, &e), KL_EFORMAT);
  assert_null(sigs[0]);
  assert_null(sigs[1]);
  assert_int_equal(kl_sign_hashes(url, "anon", "anon", two, 2, 0, 0, 1000, sigs, &e), KL_ERANGE);
  /* Credentials come from the flags or the URL; without them nothing is sent. */
  assert_int_equal(kl_sign_hashes(url, NULL, NULL, &d, 1, 8, 0, 1000, sigs, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "--aggr-user"));
  assert_int_equal(kl_sign_hashes("file:///nonexistent/resp.tlv", "a", "b", &d, 1, 8, 0, 1000, sigs, &e), KL_EIO);
  assert_int_equal(kl_sign_hashes("gopher://x/", "a", "b", &d, 1, 8, 0, 1000, sigs, &e), KL_EINVAL);
  /* Nobody listens on port 1 of the loopback: a network error. */
  assert_int_equal(kl_sign_hashes("ksi+tcp://u:k@127.0.0.1:1", NULL, NULL, &d, 1, 8, 0, 1000, sigs, &e), KL_EIO);
  assert_int_equal(kl_sign_hashes("ksi+http://u:k@127.0.0.1:1/gw", NULL, NULL, &d, 1, 8, 0, 1000, sigs, &e), KL_EIO);
  assert_null(sigs[0]);
}

/* Which statuses keyless sign retries (docs/client.md): the transient ones only. */
static void test_retryable(void **state) {
  (void)state;
  static const uint64_t yes[] = {0x106, 0x200, 0x300, 0x301}, no[] = {0, 0x101, 0x102, 0x103, 0x104, 0x105, 0x107, 0x201};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) assert_true(kl_aggr_status_retryable(yes[i]));
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) assert_false(kl_aggr_status_retryable(no[i]));
  kl_err_t e = {0};
  kl_err_set(&e, KL_EIO, "aggregator error 0x300 in a message of another kind");
  assert_int_equal(kl_aggr_err_status(&e), 0); /* only service and login errors carry a status */
  assert_int_equal(kl_aggr_err_status(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retryable),
      cmocka_unit_test(test_real_responses),       cmocka_unit_test(test_hmac),
      cmocka_unit_test(test_error_and_malformed),  cmocka_unit_test(test_request),
      cmocka_unit_test(test_config),               cmocka_unit_test(test_roundtrip_plain),
      cmocka_unit_test(test_roundtrip_local_tree), cmocka_unit_test(test_batch_limits),
      cmocka_unit_test(test_exchange),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
