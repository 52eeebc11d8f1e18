/* The gateway's service: one aggregation request PDU (0x220) in, one response (0x221) out
 * (KSI-FORMAT.md §7.1, §7.2, §7.4, §9).
 *
 * Checks, each refused with an unsigned error-only PDU (we cannot sign for a peer we have not
 * authenticated): the bytes parse as a PDU (0x103), it is an aggregation request with a header
 * (0x103 / 0x101), the login is known and the HMAC checks with its key (0x102 either way, so a
 * prober cannot tell which logins exist), it asks for something and for at most max_requests
 * signatures (0x101). Then every aggregation request joins the open round (or is refused with
 * its own status: level too high 0x104, over quota 0x105, too many 0x106) and the PDU waits
 * until every request it holds has its answer; the response, signed with the request's HMAC
 * algorithm and the login's key, carries one aggr_resp per request, in request order.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "keyless/log.h"

typedef struct gw_item {
  gw_pdu_t *owner;
  uint64_t request_id;
  uint64_t status;
  char *error;
  uint8_t *tlvs;
  size_t len;
} gw_item_t;

struct gw_pdu {
  gw_service_t *s;
  gateway_t *gw;
  int transport;
  void *req;
  gw_respond_fn respond;
  kl_pdu_t *pdu; /* the request (header strings) */
  char *key;
  size_t keylen;
  uint64_t t0;
  size_t n, remaining;
  gw_outcome_t out;
  gw_item_t items[];
};

static uint8_t *error_pdu(uint64_t status, const char *msg, size_t *len, gw_outcome_t *out) {
  kl_pdu_writer_t w;
  kl_err_t e;
  uint8_t *resp = NULL;
  out->status = status;
  if (msg && out->message[0] == '\0') snprintf(out->message, sizeof out->message, "%s", msg);
  if (kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, NULL, &e) || kl_pdu_add_error(&w, status, msg, &e) ||
      kl_pdu_writer_finish_unsigned(&w, &resp, len, &e)) {
    kl_pdu_writer_free(&w);
    return NULL;
  }
  return resp;
}

static bool looks_like_pdu(const uint8_t *p, size_t n) {
  if (n < 4 || !(p[0] & 0x80)) return false;
  unsigned type = (unsigned)(p[0] & 0x1F) << 8 | p[1];
  return type == 0x200 || type == 0x220 || type == 0x221 || type == 0x300 || type == 0x320 || type == 0x321;
}

static void count(gw_service_t *s, uint64_t status) {
  if (status == 0) {
    kl_metric_inc(s->m_ok);
    return;
  }
  char st[24];
  snprintf(st, sizeof st, "0x%04llX", (unsigned long long)status);
  kl_metric_inc(kl_metrics_counter(s->m, "keyless_gateway_requests_total",
                                   "Aggregation requests answered, by KSI status.", (const char *[]){"status", st, NULL}));
}

static void free_pdu(gw_pdu_t *g) {
  for (size_t i = 0; i < g->n; i++) {
    free(g->items[i].error);
    free(g->items[i].tlvs);
  }
  if (g->key) memset(g->key, 0, g->keylen);
  free(g->key);
  kl_pdu_free(g->pdu);
  free(g);
}

/* Splits a TLV sequence into parts (pointing into p). */
static size_t split_parts(const uint8_t *p, size_t len, kl_pdu_part_t *parts, size_t max) {
  kl_tlv_iter_t it;
  kl_tlv_t t;
  size_t n = 0;
  kl_tlv_iter_init(&it, p, p, len);
  while (n < max && kl_tlv_next(&it, &t, NULL) == 1) {
    parts[n].type = t.type;
    parts[n].raw = t.raw;
    parts[n].len = t.raw_len;
    n++;
  }
  return n;
}

/* Every request has its answer: build the response and hand it over. */
static void finish(gw_pdu_t *g) {
  gw_service_t *s = g->s;
  kl_pdu_writer_t w;
  kl_err_t e = {0};
  uint8_t *resp = NULL;
  size_t len = 0;
  kl_pdu_header_t hdr = *g->pdu->header;
  int rc = kl_pdu_writer_begin(&w, KL_PDU_AGGR_RESP, &hdr, &e);
  for (size_t i = 0; rc == 0 && i < g->n; i++) {
    gw_item_t *it = &g->items[i];
    kl_pdu_part_t parts[64];
    kl_pdu_aggr_resp_t r = {.request_id = it->request_id, .has_status = true, .status = it->status,
                            .error_msg = it->error};
    if (it->status == 0) {
      r.parts = parts;
      r.n_parts = split_parts(it->tlvs, it->len, parts, 64);
    }
    rc = kl_pdu_add_aggr_resp(&w, &r, &e);
  }
  if (rc == 0 && g->pdu->config) {
    kl_pdu_config_t cf = s->conf;
    cf.max_requests = gw_fit(s);
    rc = kl_pdu_add_config(&w, &cf, &e);
    g->out.config = rc == 0;
  }
  if (rc == 0) rc = kl_pdu_writer_finish(&w, g->pdu->hmac.alg, g->key, g->keylen, &resp, &len, &e);
  else kl_pdu_writer_free(&w);
  if (rc) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot build the response: %.180s%s", e.msg,
             rc == KL_ETOOBIG ? " (send fewer requests per PDU)" : "");
    g->out.message[0] = '\0';
    g->out.config = false;
    resp = error_pdu(rc == KL_ETOOBIG ? KL_STATUS_INVALID_REQUEST : KL_STATUS_INTERNAL_ERROR, msg, &len, &g->out);
    for (size_t i = 0; i < g->n; i++) count(s, g->out.status);
  } else {
    for (size_t i = 0; i < g->n; i++) count(s, g->items[i].status);
  }
  g->respond(g->gw, g->transport, g->req, resp, len, &g->out, g->t0);
  free_pdu(g);
}

void gw_on_answer(void *ctx, const kl_tier_answer_t *a, void *arg) {
  (void)arg;
  gw_item_t *it = ctx;
  gw_pdu_t *g = it->owner;
  it->status = a->status;
  if (a->status == 0 && a->len > g->s->answer_raw_max) gw_fit_observe(g->s, a->tlvs, a->len);
  if (a->status == 0) {
    if ((it->tlvs = malloc(a->len)) == NULL) {
      it->status = KL_STATUS_INTERNAL_ERROR;
      it->error = strdup("out of memory");
    } else {
      memcpy(it->tlvs, a->tlvs, a->len);
      it->len = a->len;
    }
  } else {
    it->error = strdup(a->error ? a->error : kl_pdu_status_text(KL_PDU_SVC_AGGR, a->status));
    if (g->out.message[0] == '\0')
      snprintf(g->out.message, sizeof g->out.message, "request %llu: %s", (unsigned long long)it->request_id,
               it->error ? it->error : "");
  }
  if (--g->remaining == 0) finish(g);
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void refuse(gw_service_t *s, gateway_t *gw, int transport, void *req, gw_respond_fn respond, uint64_t t0,
                   gw_outcome_t *out, uint64_t status, const char *msg) {
  size_t len = 0;
  uint8_t *resp = error_pdu(status, msg, &len, out);
  (void)s;
  respond(gw, transport, req, resp, len, out, t0);
}

void gw_handle(gw_service_t *s, gateway_t *gw, int transport, void *req, const uint8_t *p, size_t n,
               gw_respond_fn respond) {
  kl_pdu_t *pdu = NULL;
  kl_err_t e = {0};
  char msg[256];
  gw_outcome_t out;
  uint64_t t0 = uv_hrtime();
  memset(&out, 0, sizeof out);
  if (kl_pdu_parse(p, n, &pdu, &e)) {
    out.not_a_pdu = !looks_like_pdu(p, n);
    out.wrong_service = true;
    snprintf(msg, sizeof msg, "malformed request PDU: %.200s", e.msg);
    refuse(s, gw, transport, req, respond, t0, &out, KL_STATUS_INVALID_PAYLOAD, msg);
    return;
  }
  const char *why = NULL;
  uint64_t status = 0;
  const char *key = NULL;
  size_t keylen = 0;
  if (pdu->type != KL_PDU_AGGR_REQ) {
    snprintf(msg, sizeof msg, "expected an aggregation request PDU (0x220), got 0x%X", pdu->type);
    why = msg;
    status = KL_STATUS_INVALID_PAYLOAD;
    out.wrong_service = true;
  } else if (pdu->header == NULL) {
    why = "aggregation request without a header";
    status = KL_STATUS_INVALID_REQUEST;
  } else {
    snprintf(out.login, sizeof out.login, "%s", pdu->header->login_id);
    if ((key = kl_users_key(s->users, pdu->header->login_id, &keylen)) == NULL) {
      why = "unknown login or wrong HMAC key";
      status = KL_STATUS_AUTH_FAILURE;
      snprintf(out.message, sizeof out.message, "unknown login");
    } else if (kl_pdu_check_hmac(pdu, key, keylen, &e)) {
      why = "unknown login or wrong HMAC key";
      status = KL_STATUS_AUTH_FAILURE;
      snprintf(out.message, sizeof out.message, "%.200s", e.msg);
    } else if (pdu->n_aggr_reqs == 0 && pdu->config == NULL) {
      why = "the PDU holds no aggregation or configuration request";
      status = KL_STATUS_INVALID_REQUEST;
    } else if (pdu->n_aggr_reqs > gw_fit(s)) {
      snprintf(msg, sizeof msg, "%zu aggregation requests in one PDU; at most %llu fit one response (ask for the configuration)",
               pdu->n_aggr_reqs, (unsigned long long)gw_fit(s));
      why = msg;
      status = KL_STATUS_INVALID_REQUEST;
    }
  }
  if (why) {
    kl_pdu_free(pdu);
    refuse(s, gw, transport, req, respond, t0, &out, status, why);
    return;
  }
  gw_pdu_t *g = calloc(1, sizeof *g + pdu->n_aggr_reqs * sizeof(gw_item_t));
  char *kcopy = malloc(keylen + 1);
  if (g == NULL || kcopy == NULL) {
    free(g);
    free(kcopy);
    kl_pdu_free(pdu);
    refuse(s, gw, transport, req, respond, t0, &out, KL_STATUS_INTERNAL_ERROR, "out of memory");
    return;
  }
  memcpy(kcopy, key, keylen);
  *g = (gw_pdu_t){.s = s, .gw = gw, .transport = transport, .req = req, .respond = respond, .pdu = pdu,
                  .key = kcopy, .keylen = keylen, .t0 = t0, .n = pdu->n_aggr_reqs, .out = out};
  g->out.n_requests = g->n;
  uint64_t t_us = now_us();
  size_t waiting = 0;
  for (size_t i = 0; i < g->n; i++) {
    const kl_pdu_aggr_req_t *q = &pdu->aggr_reqs[i];
    gw_item_t *it = &g->items[i];
    it->owner = g;
    it->request_id = q->request_id;
    kl_round_identity_t who = {pdu->header->login_id, s->machine_id, true, true, s->seq++, t_us};
    uint64_t st;
    unsigned level = !q->has_level ? 0 : q->level > UINT_MAX ? UINT_MAX : (unsigned)q->level;
    if (q->refused) { /* one bad field: this request alone is refused */
      kl_err_set(&e, KL_EFORMAT, "%s", q->why);
      st = q->refused;
    }
    if (q->refused || kl_tier_submit(s->tier, &q->hash, level, &who, it, &st, &e)) {
      it->status = st;
      it->error = strdup(e.msg);
      if (g->out.message[0] == '\0')
        snprintf(g->out.message, sizeof g->out.message, "request %llu: %.200s", (unsigned long long)q->request_id,
                 e.msg);
    } else {
      waiting++;
    }
  }
  g->remaining = waiting;
  if (waiting == 0) finish(g);
}
