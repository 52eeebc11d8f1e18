/* The extension service: one request PDU (0x320) in, one response PDU (0x321) out
 * (KSI-FORMAT.md §7.3, §7.4, §9.4-5).
 *
 * Order of checks, each giving an unsigned error-only PDU when it fails (we cannot sign for a
 * peer we have not authenticated):
 *   1. the bytes parse as a PDU (else 0x103 invalid payload)
 *   2. it is an extension request 0x320 with a header (0x103 / 0x101)
 *   3. the login is in the users file and the HMAC checks with its key (0x102 either way, so
 *      that a prober cannot tell which logins exist)
 *   4. the calendar is available (0x201), the replica is in step with the core (0x200 internal
 *      error, "extender not synchronized: ...", while replication refused a batch or the replica
 *      lags more than [replication] max_lag), and the PDU asks for something, at most
 *      max_requests extensions (0x101)
 * Then every extension request gets its own status in a signed response: 0x104 aggregation time
 * after publication time, 0x107 in the future, 0x105 before the calendar's genesis, 0x106
 * after its last second, else 0 with the calendar chain from aggregation time to publication
 * time (the calendar's last second when absent). One read of the calendar's state serves the
 * whole PDU; every chain is computed in its own read transaction, so a request sees the latest
 * committed state (appends only grow the calendar: what was valid stays valid).
 *
 * With ctx->wait_bound (from [server] replica_wait), a PDU that would get 0x106 for a second not
 * after now and at most wait_bound seconds beyond the calendar's last is not answered: the
 * caller holds it and asks again once the replica holds that second or the wait ran out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extender.h"
#include "keyless/pdu.h"

static int error_pdu(uint64_t status, const char *msg, uint8_t **resp, size_t *len, ext_outcome_t *out) {
  kl_pdu_writer_t w;
  kl_err_t e;
  out->status = status;
  if (msg && out->message[0] == '\0') snprintf(out->message, sizeof out->message, "%s", msg);
  if (kl_pdu_writer_begin(&w, KL_PDU_EXT_RESP, NULL, &e) || kl_pdu_add_error(&w, status, msg, &e) ||
      kl_pdu_writer_finish_unsigned(&w, resp, len, &e)) {
    kl_pdu_writer_free(&w);
    return KL_ENOMEM;
  }
  return 0;
}

/* A status for one request, with the reason in msg. */
static uint64_t time_status(const kl_pdu_ext_req_t *q, const kl_cal_info_t *ci, uint64_t now, char *msg, size_t n,
                            uint64_t *P) {
  unsigned long long t = q->aggr_time;
  *P = q->has_pub_time ? q->pub_time : ci->last;
  unsigned long long p = *P, hi = t > p ? t : p;
  if (q->has_pub_time && t > p) {
    snprintf(msg, n, "aggregation time %llu is after publication time %llu", t, p);
    return KL_STATUS_EXT_INVALID_TIME_RANGE;
  }
  if (hi > now) {
    snprintf(msg, n, "time %llu is in the future (now %llu)", hi, (unsigned long long)now);
    return KL_STATUS_EXT_TIME_IN_FUTURE;
  }
  if (t < ci->genesis) {
    snprintf(msg, n, "aggregation time %llu is before the calendar's first second %llu", t,
             (unsigned long long)ci->genesis);
    return KL_STATUS_EXT_TIME_TOO_OLD;
  }
  if (ci->empty || hi > ci->last) {
    if (ci->empty) snprintf(msg, n, "time %llu: the calendar is still empty", hi);
    else snprintf(msg, n, "time %llu is after the calendar's last second %llu", hi, (unsigned long long)ci->last);
    return KL_STATUS_EXT_TIME_TOO_NEW;
  }
  return KL_STATUS_OK;
}

/* Adds the response to one extension request. */
static int add_one(const ext_ctx_t *ctx, kl_pdu_writer_t *w, const kl_pdu_ext_req_t *q, const kl_cal_info_t *ci,
                   ext_outcome_t *out, uint64_t *status, kl_err_t *e) {
  char msg[200] = "";
  uint64_t P;
  kl_buf_t chain = KL_BUF_INIT;
  kl_pdu_ext_resp_t r = {.request_id = q->request_id, .has_cal_last = !ci->empty, .cal_last = ci->last};
  if (q->refused) { /* one of its own fields is unusable: this request alone is refused */
    r.status = q->refused;
    snprintf(msg, sizeof msg, "%s", q->why);
  } else {
    r.status = time_status(q, ci, ctx->now, msg, sizeof msg, &P);
  }
  if (r.status == KL_STATUS_OK) {
    kl_err_t ce;
    int rc = kl_cal_chain(ctx->cal, q->aggr_time, P, &chain, &ce);
    if (rc) {
      r.status = rc == KL_EFORMAT || rc == KL_ENOTFOUND ? KL_STATUS_EXT_DB_CORRUPT : KL_STATUS_INTERNAL_ERROR;
      snprintf(msg, sizeof msg, "calendar: %.180s", ce.msg);
    } else {
      r.cal_raw = chain.p;
      r.cal_raw_len = chain.len;
    }
  }
  if (r.status != KL_STATUS_OK) {
    r.error_msg = msg;
    if (out->message[0] == '\0') snprintf(out->message, sizeof out->message, "request %llu: %s",
                                          (unsigned long long)q->request_id, msg);
  }
  *status = r.status;
  int rc = kl_pdu_add_ext_resp(w, &r, e);
  kl_buf_free(&chain);
  return rc;
}

/* A response PDU holds 65,535 bytes. One extension answer is at most a calendar chain between
 * two seconds up to now: two links per bit of the later second, plus a few, each a sibling
 * imprint of at most 64 digest bytes, and the chain's header, times and input hash. */
uint64_t ext_fit(uint64_t configured, uint64_t now) {
  unsigned bits = 0;
  for (uint64_t v = now; v; v >>= 1) bits++;
  uint64_t one = 64 /* ext_resp: id, status, last time; 0x802 header, times */ + (1 + 2 + 1 + 64) /* input */ +
                 (2 * (uint64_t)bits + 2) * (2 + 1 + 64);
  uint64_t fit = (65535u - 512u /* header, config, HMAC */) / one;
  if (fit < 1) fit = 1;
  return fit < configured ? fit : configured;
}

uint64_t ext_wait_bound(uint64_t replica_wait_ms) {
  return replica_wait_ms == 0 ? 0 : (replica_wait_ms + 999) / 1000 + 1;
}

int ext_handle(const ext_ctx_t *ctx, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
               ext_outcome_t *out, ext_status_fn count, void *count_arg) {
  kl_pdu_t *pdu = NULL;
  kl_err_t e;
  char msg[256];
  int rc;
  memset(out, 0, sizeof *out);
  *resp = NULL;
  *resp_len = 0;
  kl_err_clear(&e);
  if (kl_pdu_parse(req, len, &pdu, &e)) {
    out->not_a_pdu = !kl_pdu_looks_like(req, len);
    out->foreign = true;
    snprintf(msg, sizeof msg, "malformed request PDU: %.200s", e.msg);
    return error_pdu(KL_STATUS_INVALID_PAYLOAD, msg, resp, resp_len, out);
  }
  if (pdu->type != KL_PDU_EXT_REQ) {
    snprintf(msg, sizeof msg, "expected an extension request PDU (0x320), got 0x%X", pdu->type);
    out->foreign = true;
    rc = error_pdu(KL_STATUS_INVALID_PAYLOAD, msg, resp, resp_len, out);
    goto done;
  }
  if (pdu->header == NULL) {
    rc = error_pdu(KL_STATUS_INVALID_REQUEST, "extension request without a header", resp, resp_len, out);
    goto done;
  }
  snprintf(out->login, sizeof out->login, "%s", pdu->header->login_id);
  size_t keylen = 0;
  const char *key = kl_users_key(ctx->users, pdu->header->login_id, &keylen);
  if (key == NULL) {
    rc = error_pdu(KL_STATUS_AUTH_FAILURE, "unknown login or wrong HMAC key", resp, resp_len, out);
    snprintf(out->message, sizeof out->message, "unknown login");
    goto done;
  }
  if (kl_pdu_check_hmac(pdu, key, keylen, &e)) {
    rc = error_pdu(KL_STATUS_AUTH_FAILURE, "unknown login or wrong HMAC key", resp, resp_len, out);
    snprintf(out->message, sizeof out->message, "%.200s", e.msg);
    goto done;
  }
  if (ctx->cal == NULL) {
    rc = error_pdu(KL_STATUS_EXT_DB_MISSING, "the calendar database is not available", resp, resp_len, out);
    goto done;
  }
  if (ctx->unsynced != NULL) {
    snprintf(msg, sizeof msg, "extender not synchronized: %.200s", ctx->unsynced);
    rc = error_pdu(KL_STATUS_INTERNAL_ERROR, msg, resp, resp_len, out);
    goto done;
  }
  if (pdu->n_ext_reqs == 0 && pdu->config == NULL) {
    rc = error_pdu(KL_STATUS_INVALID_REQUEST, "the PDU holds no extension or configuration request", resp, resp_len,
                   out);
    goto done;
  }
  const uint64_t max_requests = ext_fit(ctx->max_requests, ctx->now);
  if (pdu->n_ext_reqs > max_requests) {
    snprintf(msg, sizeof msg, "%zu extension requests in one PDU; at most %llu fit one response", pdu->n_ext_reqs,
             (unsigned long long)max_requests);
    rc = error_pdu(KL_STATUS_INVALID_REQUEST, msg, resp, resp_len, out);
    goto done;
  }
  kl_cal_info_t ci;
  if (kl_cal_info(ctx->cal, &ci, &e)) {
    snprintf(msg, sizeof msg, "calendar: %.200s", e.msg);
    rc = error_pdu(KL_STATUS_EXT_DB_CORRUPT, msg, resp, resp_len, out);
    goto done;
  }
  if (ctx->wait_bound > 0 && !ci.empty) { /* a second the replica will have shortly: wait for it */
    uint64_t need = 0, P;
    for (size_t i = 0; i < pdu->n_ext_reqs; i++) {
      const kl_pdu_ext_req_t *q = &pdu->ext_reqs[i];
      if (q->refused || time_status(q, &ci, ctx->now, msg, sizeof msg, &P) != KL_STATUS_EXT_TIME_TOO_NEW) continue;
      uint64_t hi = q->aggr_time > P ? q->aggr_time : P;
      if (hi - ci.last <= ctx->wait_bound && hi > need) need = hi;
    }
    if (need > 0) {
      out->wait_second = need;
      rc = 0;
      goto done;
    }
  }
  kl_pdu_writer_t w;
  kl_pdu_header_t hdr = *pdu->header; /* echo login, instance and message ids */
  uint64_t *statuses = calloc(pdu->n_ext_reqs + 1, sizeof *statuses);
  rc = statuses ? kl_pdu_writer_begin(&w, KL_PDU_EXT_RESP, &hdr, &e) : kl_err_set(&e, KL_ENOMEM, "out of memory");
  for (size_t i = 0; rc == 0 && i < pdu->n_ext_reqs; i++) {
    rc = add_one(ctx, &w, &pdu->ext_reqs[i], &ci, out, &statuses[i], &e);
    if (rc == 0) out->n_requests++;
  }
  if (rc == 0 && pdu->config) {
    kl_pdu_config_t cf = {.has_max_requests = true, .max_requests = max_requests, .has_cal_first = true,
                          .cal_first = ci.genesis, .has_cal_last = !ci.empty, .cal_last = ci.last};
    rc = kl_pdu_add_config(&w, &cf, &e);
    out->config = rc == 0;
  }
  if (rc == 0) rc = kl_pdu_writer_finish(&w, pdu->hmac.alg, key, keylen, resp, resp_len, &e);
  else if (statuses) kl_pdu_writer_free(&w);
  for (size_t i = 0; rc == 0 && count && i < out->n_requests; i++) count(count_arg, statuses[i]);
  free(statuses);
  if (rc) { /* too many or too long chains for one PDU, or out of memory */
    out->n_requests = 0;
    out->config = false;
    out->message[0] = '\0';
    snprintf(msg, sizeof msg, "cannot build the response: %.180s%s", e.msg,
             rc == KL_ETOOBIG ? " (send fewer requests per PDU)" : "");
    rc = error_pdu(rc == KL_ETOOBIG ? KL_STATUS_INVALID_REQUEST : KL_STATUS_INTERNAL_ERROR, msg, resp, resp_len, out);
  }
done:
  kl_pdu_free(pdu);
  return rc;
}
