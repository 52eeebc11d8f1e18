/* PDU v2 codec: real Guardtime PDUs (parse, HMAC, chains, statuses), encode/parse round trips
 * of every kind, byte-exact re-encoding of real responses, envelope rules, bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "testutil.h"

#define ANON "anon", 4
#define TEST3 "test3", 5

/* The real PDUs and what decodes from them (pdu/ in the vectors; README "pdu/"). */
typedef struct {
  const char *file;
  uint16_t type;
  const char *key;
  int alg;
  uint64_t request_id, status;
  size_t n_chains, n_cal_links; /* aggregation chains in the response; calendar links (0: none) */
} vec_t;

static const vec_t vecs[] = {
    {"pdu/ok-sig-2017-07-14.1-aggr_response.tlv", KL_PDU_AGGR_RESP, "anon", KL_HASH_SHA256, 1, 0, 5, 19},
    {"pdu/ok-sig-2017-04-20.1-aggr_response-hmac_sha512.tlv", KL_PDU_AGGR_RESP, "test3", KL_HASH_SHA512, 1, 0, 5, 0},
    {"pdu/ok-sig-2016-11-10.1.mdata.aggr-response.tlv", KL_PDU_AGGR_RESP, "anon", KL_HASH_SHA256, 1, 0, 5, 0},
    {"pdu/ok_aggr_err_response-1.tlv", KL_PDU_AGGR_RESP, "anon", KL_HASH_SHA256, 1, 0x103, 0, 0},
    {"pdu/ok-sig-2014-08-01.1-extend_response.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 1, 0, 0, 28},
    {"pdu/ok-sig-2014-08-01.1-extend_response-hmac_sha512.tlv", KL_PDU_EXT_RESP, "test3", KL_HASH_SHA512, 1, 0, 0, 28},
    /* Named "request" in the vectors, but it is an extend response (0x321) to 2016-01-01. */
    {"pdu/ok-extend-request-2016-01-01.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 0x4ae5f0, 0, 0, 11},
    {"pdu/ok-ext-err-resp-104.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 0x261e80, 0x104, 0, 0},
    {"pdu/ok-ext-err-resp-106.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 0x4a1e20, 0x106, 0, 0},
    {"policy-verification-signatures/resources/extender-response-for-CAL-03.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 1, 0, 0, 0},
    {"policy-verification-signatures/resources/extender-response-for-different-time.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 1, 0, 0, 0},
    {"policy-verification-signatures/resources/extender-response-with-changed-times.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 1, 0, 0, 0},
    {"policy-verification-signatures/resources/extension-response-with-deprecated-algorithm.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 1, 0, 0, 0},
    {"valid-signatures/resources/extender-response-for-signature-with-deprecated-function-in-calendar-chain.tlv", KL_PDU_EXT_RESP, "anon", KL_HASH_SHA256, 1, 0, 0, 0},
};
#define N_VECS (sizeof vecs / sizeof vecs[0])

static kl_pdu_t *parse_ok(const uint8_t *p, size_t n) {
  kl_pdu_t *pdu = NULL;
  kl_err_t e = {0};
  int r = kl_pdu_parse(p, n, &pdu, &e);
  if (r != 0) fail_msg("parse failed: %s: %s", kl_errname(r), e.msg);
  return pdu;
}

static kl_pdu_t *parse_vec(const char *file) {
  size_t n;
  uint8_t *p = tu_read_vector(file, &n);
  kl_pdu_t *pdu = parse_ok(p, n);
  free(p);
  return pdu;
}

static void expect_parse_err(const uint8_t *p, size_t n, int code, const char *needle) {
  kl_pdu_t *pdu = (kl_pdu_t *)1;
  kl_err_t e = {0};
  int r = kl_pdu_parse(p, n, &pdu, &e);
  if (r != code) fail_msg("expected %s, got %s: %s", kl_errname(code), kl_errname(r), e.msg);
  assert_null(pdu);
  if (needle != NULL && strstr(e.msg, needle) == NULL) fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_vectors_parse(void **state) {
  (void)state;
  for (size_t i = 0; i < N_VECS; i++) {
    const vec_t *v = &vecs[i];
    kl_pdu_t *pdu = parse_vec(v->file);
    assert_int_equal(pdu->type, v->type);
    assert_non_null(pdu->header);
    assert_string_equal(pdu->header->login_id, "anon");
    assert_true(pdu->has_hmac);
    assert_int_equal(pdu->hmac.alg, v->alg);
    assert_int_equal(pdu->hmac_offset + pdu->hmac.len, pdu->raw_len);
    assert_null(pdu->error);
    assert_null(pdu->config);
    if (v->type == KL_PDU_AGGR_RESP) {
      assert_int_equal(pdu->n_aggr_resps, 1);
      const kl_pdu_aggr_resp_t *r = &pdu->aggr_resps[0];
      assert_int_equal(r->request_id, v->request_id);
      assert_true(r->has_status);
      assert_int_equal(r->status, v->status);
      assert_non_null(r->error_msg);
      assert_int_equal(r->n_chains, v->n_chains);
      if (v->n_chains) {
        assert_int_equal(r->n_parts, v->n_chains + 2); /* + 0x802 + 0x805 */
        assert_non_null(r->cal);
        assert_int_equal(r->parts[v->n_chains].type, KL_T_CAL_CHAIN);
        assert_int_equal(r->parts[v->n_chains + 1].type, KL_T_CAL_AUTH);
        assert_int_equal(r->cal->pub_time, r->chains[0].aggr_time); /* fresh: pub == aggr time */
      } else {
        assert_int_equal(r->n_parts, 0);
      }
      if (v->n_cal_links) assert_int_equal(r->cal->n_links, v->n_cal_links);
    } else {
      assert_int_equal(pdu->n_ext_resps, 1);
      const kl_pdu_ext_resp_t *r = &pdu->ext_resps[0];
      assert_int_equal(r->request_id, v->request_id);
      assert_int_equal(r->status, v->status);
      if (v->status == 0) {
        assert_non_null(r->cal);
        assert_non_null(r->cal_raw);
        assert_int_equal(r->cal_raw[0], 0x88);
        assert_int_equal(r->cal_raw[1], 0x02);
        assert_true(r->cal->has_aggr_time); /* a client requires it */
        if (v->n_cal_links) assert_int_equal(r->cal->n_links, v->n_cal_links);
      } else {
        assert_null(r->cal);
        assert_non_null(r->error_msg);
        assert_true(r->has_cal_last);
      }
    }
    kl_pdu_free(pdu);
  }
}

static void test_vector_details(void **state) {
  (void)state;
  kl_pdu_t *pdu = parse_vec("pdu/ok-sig-2017-07-14.1-aggr_response.tlv");
  assert_true(pdu->header->has_instance_id);
  assert_int_equal(pdu->header->instance_id, 0x585ff8dc);
  assert_int_equal(pdu->header->message_id, 0x092f37b9);
  assert_string_equal(pdu->aggr_resps[0].error_msg, "No error");
  assert_int_equal(pdu->aggr_resps[0].chains[0].n_links, 2);
  kl_pdu_free(pdu);

  pdu = parse_vec("pdu/ok-sig-2014-08-01.1-extend_response.tlv");
  const kl_pdu_ext_resp_t *r = &pdu->ext_resps[0];
  assert_true(r->has_cal_last);
  assert_int_equal(r->cal_last, 0x596ca283);
  assert_int_equal(r->cal->pub_time, 0x53ed4d80);
  assert_int_equal(r->cal->aggr_time, 0x53dba702);
  assert_int_equal(r->cal_raw_len, 1031);
  /* The extended chain continues the signature's: same input (aggregation root), same time. */
  size_t n;
  uint8_t *p = tu_read_vector("pdu/ok-sig-2014-08-01.1.ksig", &n);
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (kl_sig_parse(p, n, &sig, &e)) fail_msg("signature: %s", e.msg);
  assert_true(kl_imprint_eq(&sig->cal->input, &r->cal->input));
  assert_int_equal(kl_sig_signing_time(sig), r->cal->aggr_time);
  kl_sig_free(sig);
  free(p);
  kl_pdu_free(pdu);

  pdu = parse_vec("pdu/ok-extend-request-2016-01-01.tlv");
  assert_int_equal(pdu->ext_resps[0].cal->pub_time, 1451606400); /* 2016-01-01 */
  kl_pdu_free(pdu);
}

static void test_error_statuses(void **state) {
  (void)state;
  kl_pdu_t *pdu = parse_vec("pdu/ok-ext-err-resp-104.tlv");
  assert_int_equal(pdu->ext_resps[0].status, KL_STATUS_EXT_INVALID_TIME_RANGE);
  assert_string_equal(kl_pdu_status_text(kl_pdu_service(pdu->type), pdu->ext_resps[0].status), "The request asked for a hash chain going backwards in time");
  assert_non_null(strstr(pdu->ext_resps[0].error_msg, "hash chain going backwards"));
  assert_int_equal(kl_pdu_status_err(pdu->ext_resps[0].status), KL_ESERVICE);
  kl_pdu_free(pdu);
  pdu = parse_vec("pdu/ok-ext-err-resp-106.tlv");
  assert_int_equal(pdu->ext_resps[0].status, KL_STATUS_EXT_TIME_TOO_NEW);
  assert_non_null(strstr(kl_pdu_status_text(KL_PDU_SVC_EXT, 0x106), "newer than the newest round"));
  kl_pdu_free(pdu);
  pdu = parse_vec("pdu/ok_aggr_err_response-1.tlv");
  assert_int_equal(pdu->aggr_resps[0].status, KL_STATUS_INVALID_PAYLOAD);
  assert_string_equal(pdu->aggr_resps[0].error_msg, "The request contained invalid payload");
  assert_string_equal(kl_pdu_status_text(KL_PDU_SVC_AGGR, 0x103), "The request contained invalid payload");
  kl_pdu_free(pdu);

  assert_non_null(strstr(kl_pdu_status_text(KL_PDU_SVC_AGGR, 0x104), "aggregation tree larger than allowed"));
  assert_non_null(strstr(kl_pdu_status_text(KL_PDU_SVC_AGGR, 0x106), "too many requests"));
  assert_non_null(strstr(kl_pdu_status_text(KL_PDU_SVC_EXT, 0x202), "database is in an inconsistent state"));
  assert_string_equal(kl_pdu_status_text(KL_PDU_SVC_AGGR, 0x202), "Unknown service error");
  assert_string_equal(kl_pdu_status_text(KL_PDU_SVC_EXT, 0x999), "Unknown service error");
  /* A message that only repeats the status name (as Guardtime's servers send) is not doubled. */
  char buf[300];
  assert_string_equal(kl_pdu_status_msg(KL_PDU_SVC_AGGR, 0x103, "The request contained invalid payload.", buf, sizeof buf),
                      "The request contained invalid payload");
  assert_string_equal(kl_pdu_status_msg(KL_PDU_SVC_AGGR, 0x102, NULL, buf, sizeof buf),
                      "The request could not be authenticated");
  assert_string_equal(kl_pdu_status_msg(KL_PDU_SVC_AGGR, 0x101, "3 requests", buf, sizeof buf),
                      "The request had invalid format: 3 requests");
  assert_string_equal(kl_pdu_status_text(KL_PDU_SVC_EXT, 0), "OK");
  assert_int_equal(kl_pdu_status_err(0), 0);
  assert_int_equal(kl_pdu_status_err(KL_STATUS_AUTH_FAILURE), KL_EAUTH);
  assert_int_equal(kl_pdu_service(0x321), KL_PDU_SVC_EXT);
  assert_int_equal(kl_pdu_service(0x800), 0);
}

static void test_nok_vectors(void **state) {
  (void)state;
  size_t n;
  uint8_t *p = tu_read_vector("pdu/nok_aggr_response_bad_tag.tlv", &n);
  expect_parse_err(p, n, KL_ECRITICAL, "unknown critical element 0x99 at offset 4");
  free(p);
  p = tu_read_vector("pdu/nok_aggr_response_missing_header.tlv", &n);
  expect_parse_err(p, n, KL_EFORMAT, "aggregation response PDU has no header (0x01)");
  free(p);
}

static void test_hmac(void **state) {
  (void)state;
  kl_err_t e = {0};
  for (size_t i = 0; i < N_VECS; i++) {
    const vec_t *v = &vecs[i];
    size_t n, klen = strlen(v->key);
    uint8_t *p = tu_read_vector(v->file, &n);
    kl_pdu_t *pdu = parse_ok(p, n);
    if (kl_pdu_check_hmac(pdu, v->key, klen, &e)) fail_msg("%s: %s", v->file, e.msg);
    assert_int_equal(kl_pdu_check_hmac_alg(pdu, v->alg, v->key, klen, &e), 0);
    int other = v->alg == KL_HASH_SHA256 ? KL_HASH_SHA512 : KL_HASH_SHA256;
    assert_int_equal(kl_pdu_check_hmac_alg(pdu, other, v->key, klen, &e), KL_EHMAC);
    assert_non_null(strstr(e.msg, "algorithm mismatch"));
    const char *wrong = strcmp(v->key, "anon") == 0 ? "test3" : "anon";
    assert_int_equal(kl_pdu_check_hmac(pdu, wrong, strlen(wrong), &e), KL_EHMAC);
    assert_non_null(strstr(e.msg, "HMAC mismatch"));
    assert_int_equal(kl_pdu_check_hmac(pdu, v->key, klen - 1, &e), KL_EHMAC);
    kl_pdu_free(pdu);
    /* A flipped byte in the login id ('a' -> '`') or in the digest. */
    size_t flips[] = {8, n - 1};
    for (size_t k = 0; k < 2; k++) {
      p[flips[k]] ^= 1;
      pdu = parse_ok(p, n);
      assert_int_equal(kl_pdu_check_hmac(pdu, v->key, klen, &e), KL_EHMAC);
      kl_pdu_free(pdu);
      p[flips[k]] ^= 1;
    }
    free(p);
  }
}

/* Every real PDU re-encoded from its parsed parts gives the same bytes, so the same HMAC. */
static void test_reencode_real(void **state) {
  (void)state;
  kl_err_t e = {0};
  for (size_t i = 0; i < N_VECS; i++) {
    const vec_t *v = &vecs[i];
    size_t n, m;
    uint8_t *p = tu_read_vector(v->file, &n), *q;
    kl_pdu_t *pdu = parse_ok(p, n);
    kl_pdu_writer_t w;
    assert_int_equal(kl_pdu_writer_begin(&w, pdu->type, pdu->header, &e), 0);
    for (size_t k = 0; k < pdu->n_aggr_resps; k++) assert_int_equal(kl_pdu_add_aggr_resp(&w, &pdu->aggr_resps[k], &e), 0);
    for (size_t k = 0; k < pdu->n_ext_resps; k++) assert_int_equal(kl_pdu_add_ext_resp(&w, &pdu->ext_resps[k], &e), 0);
    if (kl_pdu_writer_finish(&w, pdu->hmac.alg, v->key, strlen(v->key), &q, &m, &e)) fail_msg("%s", e.msg);
    assert_int_equal(m, n);
    assert_memory_equal(q, p, n);
    free(q);
    kl_pdu_free(pdu);
    free(p);
  }
}

static void test_sig_from_aggr_resp(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_pdu_t *pdu = parse_vec("pdu/ok-sig-2017-07-14.1-aggr_response.tlv");
  kl_buf_t b = KL_BUF_INIT;
  assert_int_equal(kl_pdu_aggr_resp_sig(&pdu->aggr_resps[0], &b, &e), 0);
  kl_sig_t *sig = NULL;
  if (kl_sig_parse(b.p, b.len, &sig, &e)) fail_msg("%s", e.msg);
  assert_int_equal(sig->n_chains, 5);
  assert_non_null(sig->cal);
  assert_non_null(sig->auth);
  assert_true(kl_imprint_eq(kl_sig_document_hash(sig), &pdu->aggr_resps[0].chains[0].input));
  kl_sig_free(sig);
  kl_buf_free(&b);
  kl_pdu_free(pdu);
  /* An error response has no parts. */
  pdu = parse_vec("pdu/ok_aggr_err_response-1.tlv");
  assert_int_equal(kl_pdu_aggr_resp_sig(&pdu->aggr_resps[0], &b, &e), KL_EFORMAT);
  kl_pdu_free(pdu);
}

/* ---- round trips ---- */

static const kl_pdu_header_t hdr_full = {"user", true, true, 42, 7};
static const char key[] = "secret";

static uint8_t *finish(kl_pdu_writer_t *w, int alg, size_t *n) {
  uint8_t *q = NULL;
  kl_err_t e = {0};
  if (kl_pdu_writer_finish(w, alg, key, strlen(key), &q, n, &e)) fail_msg("finish: %s", e.msg);
  return q;
}

static kl_pdu_t *reparse(uint8_t *q, size_t n, int alg) {
  kl_err_t e = {0};
  kl_pdu_t *pdu = parse_ok(q, n);
  free(q);
  if (kl_pdu_check_hmac_alg(pdu, alg, key, strlen(key), &e)) fail_msg("hmac: %s", e.msg);
  return pdu;
}

static void test_roundtrip_aggr_req(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint8_t *q;
  kl_pdu_writer_t w;
  kl_pdu_aggr_req_t rq[3] = {{.request_id = 1}, {.request_id = 2, .has_level = true, .level = 3},
                             {.request_id = 0xFFFFFFFFFFFFFFFFull}};
  assert_int_equal(kl_hash(KL_HASH_SHA256, "a", 1, &rq[0].hash, &e), 0);
  assert_int_equal(kl_hash(KL_HASH_SHA512, "b", 1, &rq[1].hash, &e), 0);
  assert_int_equal(kl_hash(KL_HASH_SHA3_256, "c", 1, &rq[2].hash, &e), 0);
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr_full, &e), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(kl_pdu_add_aggr_req(&w, &rq[i], &e), 0);
  assert_int_equal(kl_pdu_add_config_req(&w, &e), 0);
  size_t n;
  q = finish(&w, KL_HASH_SHA512, &n);
  kl_pdu_t *pdu = reparse(q, n, KL_HASH_SHA512);
  assert_int_equal(pdu->type, KL_PDU_AGGR_REQ);
  assert_string_equal(pdu->header->login_id, "user");
  assert_int_equal(pdu->header->instance_id, 42);
  assert_int_equal(pdu->header->message_id, 7);
  assert_int_equal(pdu->n_aggr_reqs, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pdu->aggr_reqs[i].request_id, rq[i].request_id);
    assert_true(kl_imprint_eq(&pdu->aggr_reqs[i].hash, &rq[i].hash));
    assert_int_equal(pdu->aggr_reqs[i].has_level, rq[i].has_level);
    assert_int_equal(pdu->aggr_reqs[i].level, rq[i].level);
  }
  assert_non_null(pdu->config);
  assert_int_equal(pdu->config->n_parent_uris, 0);
  kl_pdu_free(pdu);

  /* Header without the optional ids; a request with no payload at all. */
  kl_pdu_header_t h = {.login_id = "anon"};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &h, &e), 0);
  q = finish(&w, KL_HASH_SHA256, &n);
  pdu = reparse(q, n, KL_HASH_SHA256);
  assert_false(pdu->header->has_instance_id);
  assert_false(pdu->header->has_message_id);
  assert_int_equal(pdu->n_aggr_reqs, 0);
  assert_null(pdu->config);
  kl_pdu_free(pdu);
}

static void test_roundtrip_aggr_resp(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint8_t *q;
  kl_pdu_t *real = parse_vec("pdu/ok-sig-2016-11-10.1.mdata.aggr-response.tlv");
  kl_pdu_aggr_resp_t r[2] = {{.request_id = 5, .parts = real->aggr_resps[0].parts,
                              .n_parts = real->aggr_resps[0].n_parts},
                             {.request_id = 6, .has_status = true, .status = 0x105, .error_msg = "over quota"}};
  const char *uris[] = {"ksi+tcp://a:1", "http://b/"};
  kl_pdu_config_t cf = {.has_max_level = true, .max_level = 20, .has_aggr_algo = true, .aggr_algo = 1,
                        .has_aggr_period = true, .aggr_period = 400, .has_max_requests = true,
                        .max_requests = 1000, .parent_uris = uris, .n_parent_uris = 2};
  kl_pdu_writer_t w;
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_aggr_resp(&w, &r[0], &e), 0);
  assert_int_equal(kl_pdu_add_aggr_resp(&w, &r[1], &e), 0);
  assert_int_equal(kl_pdu_add_config(&w, &cf, &e), 0);
  size_t n;
  q = finish(&w, KL_HASH_SHA256, &n);
  kl_pdu_t *pdu = reparse(q, n, KL_HASH_SHA256);
  assert_int_equal(pdu->n_aggr_resps, 2);
  const kl_pdu_aggr_resp_t *a = &pdu->aggr_resps[0], *b = &pdu->aggr_resps[1];
  assert_int_equal(a->request_id, 5);
  assert_false(a->has_status);
  assert_null(a->error_msg);
  assert_int_equal(a->n_parts, r[0].n_parts);
  for (size_t i = 0; i < a->n_parts; i++) {
    assert_int_equal(a->parts[i].len, r[0].parts[i].len);
    assert_memory_equal(a->parts[i].raw, r[0].parts[i].raw, a->parts[i].len);
  }
  assert_int_equal(a->n_chains, 5);
  assert_non_null(a->cal);
  assert_int_equal(b->request_id, 6);
  assert_true(b->has_status);
  assert_int_equal(b->status, 0x105);
  assert_string_equal(b->error_msg, "over quota");
  assert_int_equal(b->n_parts, 0);
  const kl_pdu_config_t *c = pdu->config;
  assert_non_null(c);
  assert_true(c->has_max_level && c->has_aggr_algo && c->has_aggr_period && c->has_max_requests);
  assert_false(c->has_cal_first || c->has_cal_last);
  assert_int_equal(c->max_level, 20);
  assert_int_equal(c->aggr_algo, 1);
  assert_int_equal(c->aggr_period, 400);
  assert_int_equal(c->max_requests, 1000);
  assert_int_equal(c->n_parent_uris, 2);
  assert_string_equal(c->parent_uris[1], "http://b/");
  kl_pdu_free(pdu);
  kl_pdu_free(real);
}

static void test_roundtrip_ext(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint8_t *q;
  kl_pdu_writer_t w;
  size_t n;
  kl_pdu_ext_req_t rq[2] = {{.request_id = 1, .aggr_time = 1406870000},
                            {.request_id = 2, .aggr_time = 1406870000, .has_pub_time = true, .pub_time = 1408060800}};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_ext_req(&w, &rq[0], &e), 0);
  assert_int_equal(kl_pdu_add_ext_req(&w, &rq[1], &e), 0);
  assert_int_equal(kl_pdu_add_config_req(&w, &e), 0);
  q = finish(&w, KL_HASH_SHA256, &n);
  kl_pdu_t *pdu = reparse(q, n, KL_HASH_SHA256);
  assert_int_equal(pdu->type, KL_PDU_EXT_REQ);
  assert_int_equal(pdu->n_ext_reqs, 2);
  assert_false(pdu->ext_reqs[0].has_pub_time);
  assert_int_equal(pdu->ext_reqs[0].aggr_time, 1406870000);
  assert_true(pdu->ext_reqs[1].has_pub_time);
  assert_int_equal(pdu->ext_reqs[1].pub_time, 1408060800);
  assert_non_null(pdu->config);
  kl_pdu_free(pdu);

  /* Responses: raw chain, parsed chain (encoded canonically), an error one; config. */
  kl_pdu_t *real = parse_vec("pdu/ok-sig-2014-08-01.1-extend_response.tlv");
  const kl_pdu_ext_resp_t *rr = &real->ext_resps[0];
  kl_pdu_ext_resp_t rs[3] = {
      {.request_id = 1, .has_cal_last = true, .cal_last = 99, .cal_raw = rr->cal_raw, .cal_raw_len = rr->cal_raw_len},
      {.request_id = 2, .cal = rr->cal},
      {.request_id = 3, .status = 0x106, .error_msg = "too new", .has_cal_last = true, .cal_last = 0}};
  const char *uris[] = {"http://x/"};
  kl_pdu_config_t cf = {.has_max_requests = true, .max_requests = 8, .parent_uris = uris, .n_parent_uris = 1,
                        .has_cal_first = true, .cal_first = 1, .has_cal_last = true, .cal_last = 2};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_EXT_RESP, &hdr_full, &e), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(kl_pdu_add_ext_resp(&w, &rs[i], &e), 0);
  assert_int_equal(kl_pdu_add_config(&w, &cf, &e), 0);
  q = finish(&w, KL_HASH_SHA384, &n);
  pdu = reparse(q, n, KL_HASH_SHA384);
  assert_int_equal(pdu->n_ext_resps, 3);
  const kl_pdu_ext_resp_t *x = pdu->ext_resps;
  assert_int_equal(x[0].status, 0);
  assert_int_equal(x[0].cal_last, 99);
  assert_int_equal(x[0].cal_raw_len, rr->cal_raw_len);
  assert_memory_equal(x[0].cal_raw, rr->cal_raw, rr->cal_raw_len);
  assert_false(x[1].has_cal_last);
  assert_int_equal(x[1].cal->n_links, rr->cal->n_links);
  assert_int_equal(x[1].cal->aggr_time, rr->cal->aggr_time);
  assert_true(kl_imprint_eq(&x[1].cal->links[27].sibling, &rr->cal->links[27].sibling));
  assert_int_equal(x[2].status, 0x106);
  assert_string_equal(x[2].error_msg, "too new");
  assert_true(x[2].has_cal_last);
  assert_null(x[2].cal);
  assert_int_equal(pdu->config->max_requests, 8);
  assert_int_equal(pdu->config->cal_first, 1);
  assert_int_equal(pdu->config->cal_last, 2);
  assert_false(pdu->config->has_max_level);
  assert_string_equal(pdu->config->parent_uris[0], "http://x/");
  kl_pdu_free(pdu);
  kl_pdu_free(real);
}

static void test_error_only(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_pdu_writer_t w;
  size_t n;
  uint8_t *q;
  /* No header, no HMAC. */
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, NULL, &e), 0);
  assert_int_equal(kl_pdu_add_error(&w, KL_STATUS_AUTH_FAILURE, "bad login", &e), 0);
  assert_int_equal(kl_pdu_writer_finish_unsigned(&w, &q, &n, &e), 0);
  kl_pdu_t *pdu = parse_ok(q, n);
  free(q);
  assert_null(pdu->header);
  assert_false(pdu->has_hmac);
  assert_non_null(pdu->error);
  assert_int_equal(pdu->error->status, 0x102);
  assert_string_equal(pdu->error->message, "bad login");
  assert_int_equal(kl_pdu_check_hmac(pdu, ANON, &e), KL_EHMAC);
  assert_non_null(strstr(e.msg, "no HMAC"));
  kl_pdu_free(pdu);
  /* With header and HMAC, message omitted. */
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_EXT_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_error(&w, 0x300, NULL, &e), 0);
  q = finish(&w, KL_HASH_SHA256, &n);
  pdu = reparse(q, n, KL_HASH_SHA256);
  assert_int_equal(pdu->error->status, 0x300);
  assert_null(pdu->error->message);
  kl_pdu_free(pdu);
  /* Unsigned with a payload is refused by the writer... */
  kl_pdu_ext_resp_t r = {.request_id = 1};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_EXT_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_error(&w, 0x300, NULL, &e), 0);
  assert_int_equal(kl_pdu_add_ext_resp(&w, &r, &e), 0);
  assert_int_equal(kl_pdu_writer_finish_unsigned(&w, &q, &n, &e), KL_EINVAL);
  assert_null(q);
  /* ...and by the parser (hand-made: error + payload, no HMAC). */
  const uint8_t bad[] = {0x83, 0x21, 0x00, 0x0D, 0x03, 0x04, 0x04, 0x02, 0x03, 0x00,
                         0x02, 0x05, 0x01, 0x01, 0x01, 0x04, 0x00};
  expect_parse_err(bad, sizeof bad, KL_EFORMAT, "has no header");
  const uint8_t ok[] = {0x83, 0x21, 0x00, 0x06, 0x03, 0x04, 0x04, 0x02, 0x03, 0x00};
  pdu = parse_ok(ok, sizeof ok);
  assert_int_equal(pdu->error->status, 0x300);
  kl_pdu_free(pdu);
}

/* ---- envelope rules on hand-made PDUs ---- */

/* Builds type{children} + an HMAC (SHA-256, key) from concatenated raw children. */
static uint8_t *seal(uint16_t type, const uint8_t *children, size_t n, bool hmac, size_t *out_len) {
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  kl_buf_put(&b, children, n);
  if (hmac) {
    uint8_t z[33] = {KL_HASH_SHA256};
    kl_tlv_put_bytes(&b, 0x1F, 0, z, sizeof z);
  }
  assert_int_equal(kl_tlv_close(&b, m, type, 0), 0);
  if (hmac) {
    kl_imprint_t mac;
    assert_int_equal(kl_hmac(KL_HASH_SHA256, key, strlen(key), b.p, b.len - 32, &mac, NULL), 0);
    memcpy(b.p + b.len - 32, mac.digest, 32);
  }
  return kl_buf_steal(&b, out_len);
}

#define HDR 0x01, 0x04, 0x01, 0x02, 0x61, 0x00 /* login "a" */
#define A8 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA
#define AREQ 0x02, 0x26, 0x01, 0x01, 0x07, 0x02, 0x21, 0x01, A8, A8, A8, A8 /* 40 bytes */

static void check_case(uint16_t type, const uint8_t *c, size_t n, bool hmac, int code, const char *needle) {
  size_t len;
  uint8_t *p = seal(type, c, n, hmac, &len);
  if (code == 0) {
    kl_pdu_t *pdu = parse_ok(p, len);
    if (hmac) assert_int_equal(kl_pdu_check_hmac(pdu, key, strlen(key), NULL), 0);
    kl_pdu_free(pdu);
  } else {
    expect_parse_err(p, len, code, needle);
  }
  free(p);
}

/* A request whose own field is bad: the PDU parses and that request alone is refused. */
static void check_refused(uint16_t type, const uint8_t *c, size_t n, uint64_t status, const char *needle) {
  size_t len;
  uint8_t *p = seal(type, c, n, true, &len);
  kl_pdu_t *pdu = parse_ok(p, len);
  uint64_t got = type == 0x220 ? pdu->aggr_reqs[0].refused : pdu->ext_reqs[0].refused;
  const char *why = type == 0x220 ? pdu->aggr_reqs[0].why : pdu->ext_reqs[0].why;
  if (got != status) fail_msg("refused 0x%llx, expected 0x%llx (%s)", (unsigned long long)got, (unsigned long long)status, why);
  if (needle && strstr(why, needle) == NULL) fail_msg("reason '%s' lacks '%s'", why, needle);
  kl_pdu_free(pdu);
  free(p);
}

#define REFUSED(type, status, needle, ...)                                         \
  do {                                                                             \
    const uint8_t c_[] = {__VA_ARGS__};                                            \
    check_refused(type, c_, sizeof c_, status, needle);                            \
  } while (0)

#define CASE(type, hmac, code, needle, ...)                                        \
  do {                                                                             \
    const uint8_t c_[] = {__VA_ARGS__};                                            \
    check_case(type, c_, sizeof c_, hmac, code, needle);                           \
  } while (0)

/* Levels are kept as sent, whatever their size: the service answers 0x104 for that request. */
static void test_looks_like(void **state) {
  (void)state;
  static const uint8_t aggr[] = {0x82, 0x20, 0x00, 0x00}, ext[] = {0x83, 0x21, 0x00, 0x10}, v1[] = {0x82, 0x00, 0, 0},
                       tlv8[] = {0x07, 0x02, 0x61, 0x62}, other[] = {0x88, 0x01, 0x00, 0x00}, text[] = "POST / HTTP/1.1";
  assert_true(kl_pdu_looks_like(aggr, sizeof aggr));
  assert_true(kl_pdu_looks_like(ext, sizeof ext));
  assert_true(kl_pdu_looks_like(v1, sizeof v1));
  assert_false(kl_pdu_looks_like(aggr, 3));
  assert_false(kl_pdu_looks_like(tlv8, sizeof tlv8));
  assert_false(kl_pdu_looks_like(other, sizeof other));
  assert_false(kl_pdu_looks_like(text, sizeof text - 1));
}

static void test_request_levels(void **state) {
  (void)state;
  static const struct { uint8_t bytes[10]; size_t n; uint64_t want; } lv[] = {
      {{0xFF}, 1, 255}, {{0x01, 0x00}, 2, 256}, {{0xFF, 0xFF, 0xFF}, 3, 0xFFFFFF},
      {{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, 9, UINT64_MAX}};
  for (size_t i = 0; i < sizeof lv / sizeof lv[0]; i++) {
    uint8_t c[80] = {HDR, 0x02, 0, 0x01, 0x01, 0x07, 0x02, 0x21, 0x01, A8, A8, A8, A8, 0x03, (uint8_t)lv[i].n};
    size_t hdr = 6, n = hdr + 2 + 3 + 35 + 2;
    memcpy(c + n, lv[i].bytes, lv[i].n);
    n += lv[i].n;
    c[hdr + 1] = (uint8_t)(n - hdr - 2);
    size_t len;
    uint8_t *p = seal(0x220, c, n, true, &len);
    kl_pdu_t *pdu = parse_ok(p, len);
    assert_true(pdu->aggr_reqs[0].has_level);
    assert_true(pdu->aggr_reqs[0].level == lv[i].want);
    assert_int_equal(pdu->aggr_reqs[0].refused, 0);
    kl_pdu_free(pdu);
    free(p);
  }
}

static void test_envelope_rules(void **state) {
  (void)state;
  CASE(0x220, true, 0, NULL, HDR, AREQ);
  CASE(0x220, true, 0, NULL, HDR, 0x5E, 0x01, 0x00, AREQ); /* unknown non-critical: skipped */
  CASE(0x220, true, KL_ECRITICAL, "unknown critical element 0x1E at offset 10", HDR, 0x1E, 0x01, 0x00, AREQ);
  CASE(0x220, true, KL_ECRITICAL, "unknown critical element 0x0E at offset 10", HDR, 0x0E, 0x00);
  CASE(0x220, true, KL_EFORMAT, "header (0x01) at offset 44 is not the first", AREQ, HDR);
  CASE(0x220, true, KL_EFORMAT, "appears more than once", HDR, HDR);
  CASE(0x220, false, KL_EFORMAT, "has no HMAC", HDR, AREQ);
  CASE(0x220, true, KL_EFORMAT, "has no header", AREQ);
  CASE(0x220, true, KL_ECRITICAL, "0x03 at offset 10", HDR, 0x03, 0x02, 0x04, 0x00); /* no error in requests */
  CASE(0x220, true, 0, NULL, HDR, 0x05, 0x00); /* ack request: recognised */
  CASE(0x320, true, KL_ECRITICAL, "0x05", HDR, 0x05, 0x00);
  CASE(0x220, true, KL_ECRITICAL, "configuration request", HDR, 0x04, 0x03, 0x01, 0x01, 0x01);
  /* A bad field of one request refuses that request, not the PDU (the request id is needed). */
  REFUSED(0x220, 0x101, "lacks its request hash", HDR, 0x02, 0x03, 0x01, 0x01, 0x01);
  REFUSED(0x220, 0x101, "unknown critical element 0x0F", HDR, 0x02, 0x06, 0x01, 0x01, 0x01, 0x0F, 0x01, 0x00, AREQ);
  REFUSED(0x220, 0x101, "appears more than once", HDR, 0x02, 0x0B, 0x01, 0x01, 0x01, 0x03, 0x01, 0x01, 0x03, 0x01,
          0x02, 0x02, 0x00);
  CASE(0x220, true, KL_EFORMAT, "lacks its request id", HDR, 0x02, 0x00);
  REFUSED(0x220, 0, NULL, HDR, AREQ); /* a good request is not refused */
  REFUSED(0x220, 0x101, "request hash", HDR, 0x02, 0x06, 0x01, 0x01, 0x07, 0x02, 0x01, 0x7F);
  CASE(0x220, true, KL_EFORMAT, "not minimally encoded", HDR, 0x02, 0x04, 0x01, 0x02, 0x00, 0x01);
  CASE(0x220, true, KL_EFORMAT, "lacks its login id", 0x01, 0x03, 0x02, 0x01, 0x05);
  CASE(0x220, true, KL_EFORMAT, "not NUL-terminated", 0x01, 0x03, 0x01, 0x01, 0x61);
  REFUSED(0x320, 0x101, "lacks its aggregation time", HDR, 0x02, 0x03, 0x01, 0x01, 0x01);
  REFUSED(0x320, 0x101, "not minimally encoded", HDR, 0x02, 0x07, 0x01, 0x01, 0x01, 0x02, 0x02, 0x00, 0x05);
  CASE(0x320, true, KL_EFORMAT, "lacks its request id", HDR, 0x02, 0x04, 0x02, 0x02, 0x01, 0x05);
  CASE(0x321, true, KL_EFORMAT, "lacks its status (0x04)", HDR, 0x02, 0x03, 0x01, 0x01, 0x01);
  CASE(0x321, true, 0, NULL, HDR, 0x02, 0x05, 0x01, 0x01, 0x01, 0x04, 0x00);
  CASE(0x321, true, KL_ECRITICAL, "configuration", HDR, 0x04, 0x03, 0x01, 0x01, 0x01); /* max_level is aggr only */
  CASE(0x221, true, 0, NULL, HDR, 0x04, 0x03, 0x01, 0x01, 0x01);
  CASE(0x221, true, KL_EFORMAT, "appears more than once", HDR, 0x03, 0x02, 0x04, 0x00, 0x03, 0x02, 0x04, 0x00);
  CASE(0x221, true, KL_EFORMAT, "lacks its status", 0x03, 0x00);
  CASE(0x221, false, 0, NULL, 0x03, 0x02, 0x04, 0x00, 0x5E, 0x00); /* error only (+ non-critical) */
  CASE(0x221, true, KL_EFORMAT, "appears more than once", HDR, 0x02, 0x0B, 0x01, 0x01, 0x01, 0x88, 0x05, 0x00, 0x00,
       0x88, 0x05, 0x00, 0x00); /* two calendar auth records in one response */
  CASE(0x221, true, KL_EFORMAT, "aggregation hash chain 1", HDR, 0x02, 0x07, 0x01, 0x01, 0x01, 0x88, 0x01, 0x00,
       0x00);

  /* Element after the HMAC; bad HMAC imprint; v1 and foreign top-level types; trailing bytes. */
  size_t len;
  const uint8_t hdr[] = {HDR};
  uint8_t *p = seal(0x220, hdr, sizeof hdr, true, &len);
  uint8_t *q = malloc(len + 2);
  memcpy(q, p, len);
  q[len] = 0x5E;
  q[len + 1] = 0x00;
  q[3] += 2;
  expect_parse_err(q, len + 2, KL_EFORMAT, "follows the HMAC (0x1F), which must be last");
  q[3] -= 2;
  expect_parse_err(q, len + 1, KL_EFORMAT, "1 trailing bytes");
  q[len - 33] = 0x7F; /* HMAC algorithm byte */
  expect_parse_err(q, len, KL_EHASHALG, "HMAC");
  free(q);
  free(p);
  const uint8_t v1[] = {0x82, 0x00, 0x00, 0x00};
  expect_parse_err(v1, sizeof v1, KL_EUNSUPPORTED, "version 1");
  const uint8_t sig[] = {0x88, 0x00, 0x00, 0x00};
  expect_parse_err(sig, sizeof sig, KL_EFORMAT, "not a KSI PDU");
  expect_parse_err(sig, 0, KL_EFORMAT, "empty");
  expect_parse_err(NULL, 0, KL_EFORMAT, NULL);
}

static void test_truncated_and_oversized(void **state) {
  (void)state;
  for (size_t i = 0; i < N_VECS; i++) {
    size_t n;
    uint8_t *p = tu_read_vector(vecs[i].file, &n);
    for (size_t k = 0; k < n; k++) {
      uint8_t *c = malloc(k ? k : 1); /* exact size, so ASan sees any overread */
      memcpy(c, p, k);
      kl_pdu_t *pdu = NULL;
      if (kl_pdu_parse(c, k, &pdu, NULL) == 0) fail_msg("%s: prefix of %zu bytes parsed", vecs[i].file, k);
      assert_null(pdu);
      free(c);
    }
    free(p);
  }
  uint8_t *big = calloc(1, KL_PDU_MAX_SIZE + 1);
  big[0] = 0x83;
  big[1] = 0x21;
  big[2] = big[3] = 0xFF;
  expect_parse_err(big, KL_PDU_MAX_SIZE + 1, KL_ETOOBIG, "maximum is 65539");
  free(big);
}

/* The writer stops at 65,539 bytes exactly, and what it makes at the limit parses. */
static void test_size_limit(void **state) {
  (void)state;
  kl_err_t e = {0};
  size_t msg_len = 1000, n;
  for (int pass = 0; pass < 3; pass++) {
    char *msg = malloc(msg_len + 1);
    memset(msg, 'x', msg_len);
    msg[msg_len] = 0;
    kl_pdu_ext_resp_t r = {.request_id = 1, .status = 0x101, .error_msg = msg};
    kl_pdu_writer_t w;
    uint8_t *q = NULL;
    assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_EXT_RESP, &hdr_full, &e), 0);
    int rc = kl_pdu_add_ext_resp(&w, &r, &e);
    if (rc == 0) rc = kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, strlen(key), &q, &n, &e);
    else kl_pdu_writer_free(&w);
    if (pass == 0) { /* measure, then aim at exactly the limit */
      assert_int_equal(rc, 0);
      free(q);
      msg_len += KL_PDU_MAX_SIZE - n;
    } else if (pass == 1) {
      assert_int_equal(rc, 0);
      assert_int_equal(n, KL_PDU_MAX_SIZE);
      kl_pdu_t *pdu = reparse(q, n, KL_HASH_SHA256);
      assert_int_equal(strlen(pdu->ext_resps[0].error_msg), msg_len);
      kl_pdu_free(pdu);
      msg_len++;
    } else {
      assert_int_equal(rc, KL_ETOOBIG);
      assert_null(q);
    }
    free(msg);
  }
}

static void test_writer_misuse(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_pdu_writer_t w;
  uint8_t *q = (uint8_t *)1;
  size_t n;
  kl_pdu_aggr_req_t rq = {.request_id = 1};
  kl_hash(KL_HASH_SHA256, "", 0, &rq.hash, NULL);
  assert_int_equal(kl_pdu_writer_begin(&w, 0x800, &hdr_full, &e), KL_EINVAL);
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, NULL, &e), KL_EINVAL);
  kl_pdu_header_t nologin = {0};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &nologin, &e), KL_EINVAL);
  /* Wrong payload for the type poisons the writer. */
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_aggr_req(&w, &rq, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "0x320"));
  kl_pdu_ext_req_t xq = {.request_id = 1};
  assert_int_equal(kl_pdu_add_ext_req(&w, &xq, &e), KL_ESTATE);
  assert_int_equal(kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, 3, &q, &n, &e), KL_ESTATE);
  assert_null(q);
  /* Bad values. */
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr_full, &e), 0);
  rq.level = 256;
  rq.has_level = true;
  assert_int_equal(kl_pdu_add_aggr_req(&w, &rq, &e), KL_ERANGE);
  kl_pdu_writer_free(&w);
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr_full, &e), 0);
  rq.has_level = false;
  rq.hash.len = 5;
  assert_int_equal(kl_pdu_add_aggr_req(&w, &rq, &e), KL_EHASHALG);
  kl_pdu_writer_free(&w);
  /* Placement rules. */
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_error(&w, 1, NULL, &e), KL_EINVAL);
  kl_pdu_writer_free(&w);
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_config_req(&w, &e), KL_EINVAL);
  kl_pdu_writer_free(&w);
  kl_pdu_config_t cf = {.has_cal_first = true};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_config(&w, &cf, &e), KL_EINVAL);
  kl_pdu_writer_free(&w);
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_error(&w, 1, NULL, &e), 0);
  assert_int_equal(kl_pdu_add_error(&w, 1, NULL, &e), KL_EINVAL);
  kl_pdu_writer_free(&w);
  /* Parts must be whole 0x801..0x806 TLVs, 0x802..0x806 once. */
  const uint8_t cal[] = {0x88, 0x02, 0x00, 0x00}, pub[] = {0x10, 0x00};
  kl_pdu_part_t parts[2] = {{0, cal, sizeof cal}, {0, cal, sizeof cal}};
  kl_pdu_aggr_resp_t ar = {.request_id = 1, .parts = parts, .n_parts = 2};
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_aggr_resp(&w, &ar, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "repeats element 0x802"));
  kl_pdu_writer_free(&w);
  parts[1].raw = pub;
  parts[1].len = sizeof pub;
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_aggr_resp(&w, &ar, &e), KL_EINVAL);
  kl_pdu_writer_free(&w);
  parts[1].len = 1;
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_add_aggr_resp(&w, &ar, &e), KL_EFORMAT);
  kl_pdu_writer_free(&w);
  /* HMAC algorithm must be trusted; no header only for error-only. */
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr_full, &e), 0);
  assert_int_equal(kl_pdu_writer_finish(&w, KL_HASH_SHA1, key, 3, &q, &n, &e), KL_EHASHALG);
  assert_int_equal(kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, NULL, &e), 0);
  assert_int_equal(kl_pdu_add_config(&w, &(kl_pdu_config_t){0}, &e), 0);
  assert_int_equal(kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, 3, &q, &n, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "no header"));
  /* The parser also refuses an SHA-1 HMAC check. */
  const uint8_t sha1_pdu_children[] = {HDR};
  size_t len;
  uint8_t *p = seal(0x220, sha1_pdu_children, sizeof sha1_pdu_children, true, &len);
  kl_pdu_t *pdu = parse_ok(p, len);
  pdu->hmac.alg = KL_HASH_SHA1; /* pretend */
  assert_int_equal(kl_pdu_check_hmac(pdu, key, 3, &e), KL_EHASHALG);
  kl_pdu_free(pdu);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors_parse),    cmocka_unit_test(test_vector_details),
      cmocka_unit_test(test_error_statuses),   cmocka_unit_test(test_nok_vectors),
      cmocka_unit_test(test_hmac),             cmocka_unit_test(test_reencode_real),
      cmocka_unit_test(test_sig_from_aggr_resp), cmocka_unit_test(test_roundtrip_aggr_req),
      cmocka_unit_test(test_roundtrip_aggr_resp), cmocka_unit_test(test_roundtrip_ext),
      cmocka_unit_test(test_error_only),       cmocka_unit_test(test_envelope_rules),
      cmocka_unit_test(test_request_levels),
      cmocka_unit_test(test_looks_like),
      cmocka_unit_test(test_truncated_and_oversized), cmocka_unit_test(test_size_limit),
      cmocka_unit_test(test_writer_misuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
