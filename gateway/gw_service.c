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

/* What a PDU in flight keeps (issue 12: memory per request in flight): the header fields the
 * response repeats, the key, and per request its id and, once answered, its own chain. The
 * request's bytes and its parsed form are released once its requests are in the round; the
 * parts its round shares with every other request (the parents' chains, the calendar chain, the
 * authentication record) are kept once per PDU, and a one-request PDU keeps no answer at all:
 * its response is built as the answer arrives. */
typedef struct gw_item {
  gw_pdu_t *owner;
  uint64_t request_id;
  uint64_t status;
  char *error;   /* with a status: malloc'd */
  uint8_t *head; /* status 0, answered before the last: its own chain (or its whole answer: whole) */
  uint32_t len;
  bool whole;    /* head is the whole answer (its round was not the PDU's first round) */
} gw_item_t;

struct gw_pdu {
  gw_service_t *s;
  gateway_t *gw;
  void *req;
  gw_respond_fn respond;
  uint64_t t0;
  uint64_t instance_id, message_id;
  uint32_t n, remaining;
  uint8_t transport, hmac_alg;
  bool has_instance_id, has_message_id, config;
  uint8_t *tail; /* the shared parts of the first round answered (multi-request PDUs) */
  size_t tail_len;
  uint64_t tail_round;
  char *message; /* why the PDU or its first refused request was refused (malloc'd, or NULL) */
  char *login, *key; /* in this allocation, after items */
  size_t keylen;
  gw_item_t items[];
};

/* A string into a fixed field, cut to fit (what snprintf("%s") did, without its cost on every PDU). */
static void put_field(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* The outcome's fields that are read, the large ones empty (no 350-byte clearing per PDU). */
static void outcome_init(gw_outcome_t *out, size_t n_requests) {
  out->status = 0;
  out->n_requests = n_requests;
  out->config = out->not_a_pdu = out->wrong_service = false;
  out->login[0] = out->message[0] = '\0';
}

/* An empty error, without clearing its 512-byte message on every PDU (= {0} did). */
static void err_init(kl_err_t *e) {
  e->code = 0;
  e->msg[0] = '\0';
}

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
    free(g->items[i].head);
  }
  memset(g->key, 0, g->keylen);
  free(g->tail);
  free(g->message);
  free(g);
}

static void note(gw_pdu_t *g, uint64_t request_id, const char *why) {
  char m[256];
  if (g->message) return;
  snprintf(m, sizeof m, "request %llu: %.200s", (unsigned long long)request_id, why ? why : "");
  g->message = strdup(m);
}

/* Every request has its answer: build the response and hand it over. cur (may be NULL) is the
 * request answered last, with its answer a, which is used in place (nothing of it was kept). */
static void finish(gw_pdu_t *g, const gw_item_t *cur, const kl_tier_answer_t *a) {
  gw_service_t *s = g->s;
  kl_pdu_writer_t w;
  kl_err_t e;
  uint8_t *resp = NULL;
  size_t len = 0, need = 256;
  err_init(&e);
  gw_outcome_t out;
  outcome_init(&out, g->n);
  put_field(out.login, sizeof out.login, g->login);
  if (g->message) put_field(out.message, sizeof out.message, g->message);
  kl_pdu_header_t hdr = {.login_id = g->login, .has_instance_id = g->has_instance_id, .instance_id = g->instance_id,
                         .has_message_id = g->has_message_id, .message_id = g->message_id};
  for (size_t i = 0; i < g->n; i++) {
    const gw_item_t *it = &g->items[i];
    need += 32 + (it == cur ? a->len + a->tail_len : it->status ? 64 : it->len + (it->whole ? 0 : g->tail_len));
  }
  need += strlen(g->login);
  int rc = kl_pdu_writer_begin_sized(&w, KL_PDU_AGGR_RESP, &hdr, need, &e); /* one allocation, not grown */
  for (size_t i = 0; rc == 0 && i < g->n; i++) {
    const gw_item_t *it = &g->items[i];
    const uint8_t *runs[2];
    size_t lens[2], n_runs = 0;
    if (it->status == 0 && it == cur) {
      runs[n_runs] = a->tlvs, lens[n_runs++] = a->len;
      if (a->tail) runs[n_runs] = a->tail, lens[n_runs++] = a->tail_len;
    } else if (it->status == 0) {
      runs[n_runs] = it->head, lens[n_runs++] = it->len;
      if (!it->whole) runs[n_runs] = g->tail, lens[n_runs++] = g->tail_len;
    }
    rc = kl_pdu_add_aggr_resp_runs(&w, it->request_id, it->status, it->status ? it->error : NULL, runs, lens, n_runs,
                                   &e);
  }
  if (rc == 0 && g->config) {
    kl_pdu_config_t cf = s->conf;
    cf.max_requests = gw_fit(s);
    rc = kl_pdu_add_config(&w, &cf, &e);
    out.config = rc == 0;
  }
  if (rc == 0) rc = kl_pdu_writer_finish(&w, g->hmac_alg, g->key, g->keylen, &resp, &len, &e);
  else kl_pdu_writer_free(&w);
  if (rc) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot build the response: %.180s%s", e.msg,
             rc == KL_ETOOBIG ? " (send fewer requests per PDU)" : "");
    out.message[0] = '\0';
    out.config = false;
    resp = error_pdu(rc == KL_ETOOBIG ? KL_STATUS_INVALID_REQUEST : KL_STATUS_INTERNAL_ERROR, msg, &len, &out);
    for (size_t i = 0; i < g->n; i++) count(s, out.status);
  } else {
    for (size_t i = 0; i < g->n; i++) count(s, g->items[i].status);
  }
  g->respond(g->gw, g->transport, g->req, resp, len, &out, g->t0);
  free_pdu(g);
}

/* Keeps an answer that is not the PDU's last: its own chain, and the round's shared parts once. */
static void keep(gw_pdu_t *g, gw_item_t *it, const kl_tier_answer_t *a) {
  bool shared = a->tail == NULL || (g->tail != NULL && g->tail_round == a->round && g->tail_len == a->tail_len);
  if (!shared && g->tail == NULL) {
    if ((g->tail = malloc(a->tail_len ? a->tail_len : 1)) != NULL) {
      memcpy(g->tail, a->tail, a->tail_len);
      g->tail_len = a->tail_len;
      g->tail_round = a->round;
      shared = true;
    }
  }
  size_t n = a->len + (shared ? 0 : a->tail_len);
  if (n > UINT32_MAX || (it->head = malloc(n ? n : 1)) == NULL) {
    it->status = KL_STATUS_INTERNAL_ERROR;
    it->error = strdup("out of memory");
    return;
  }
  memcpy(it->head, a->tlvs, a->len);
  if (!shared) memcpy(it->head + a->len, a->tail, a->tail_len);
  it->len = (uint32_t)n;
  it->whole = !shared || a->tail == NULL;
}

/* No signature leaves dated after the moment it is handed out: an answer whose second has not
 * begun on this clock is withheld (retryable), counted, and logged at error level (1st, 2nd,
 * 4th, ... time). With the core on quorum time this means a clock is wrong, this one or the
 * cluster's majority: keyless_clock_synchronized on each says which. */
static const kl_tier_answer_t *dated_now(gw_service_t *s, const kl_tier_answer_t *a, kl_tier_answer_t *refused) {
  uint64_t now = (uint64_t)time(NULL);
  if (a->status != 0 || a->second <= now) return a;
  kl_metric_inc(s->m_future);
  uint64_t n = (uint64_t)kl_metric_value(s->m_future);
  if ((n & (n - 1)) == 0)
    kl_log(KL_LOG_ERROR, "future_signature", "second=%llu now=%llu count=%llu", (unsigned long long)a->second,
           (unsigned long long)now, (unsigned long long)n);
  *refused = (kl_tier_answer_t){.status = KL_STATUS_UPSTREAM_ERROR,
                                .error = "the signature's second has not begun on the gateway's clock; retry"};
  return refused;
}

void gw_on_answer(void *ctx, const kl_tier_answer_t *a, void *arg) {
  (void)arg;
  gw_item_t *it = ctx;
  gw_pdu_t *g = it->owner;
  kl_tier_answer_t refused;
  a = dated_now(g->s, a, &refused);
  it->status = a->status;
  if (a->status == 0 && a->len + a->tail_len > g->s->answer_raw_max)
    gw_fit_observe(g->s, a->tlvs, a->len, a->tail, a->tail_len);
  if (a->status != 0) {
    it->error = strdup(a->error ? a->error : kl_pdu_status_text(KL_PDU_SVC_AGGR, a->status));
    note(g, it->request_id, it->error);
  }
  if (--g->remaining == 0) {
    finish(g, it, a);
    return;
  }
  if (a->status == 0) keep(g, it, a);
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
  kl_err_t e;
  char msg[256];
  gw_outcome_t out;
  uint64_t t0 = uv_hrtime();
  err_init(&e);
  outcome_init(&out, 0);
  if (kl_pdu_parse(p, n, &pdu, &e)) {
    out.not_a_pdu = !kl_pdu_looks_like(p, n);
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
    if (pdu->type == KL_PDU_AGGR_REQ && pdu->header != NULL) /* the log's (finish copies its own) */
      put_field(out.login, sizeof out.login, pdu->header->login_id);
    kl_pdu_free(pdu);
    refuse(s, gw, transport, req, respond, t0, &out, status, why);
    return;
  }
  /* One allocation: the PDU, its items, its login and key; the request itself is let go below. */
  size_t loginlen = strlen(pdu->header->login_id), nitems = pdu->n_aggr_reqs;
  gw_pdu_t *g = calloc(1, sizeof *g + nitems * sizeof(gw_item_t) + loginlen + 1 + keylen + 1);
  if (g == NULL) {
    kl_pdu_free(pdu);
    refuse(s, gw, transport, req, respond, t0, &out, KL_STATUS_INTERNAL_ERROR, "out of memory");
    return;
  }
  g->login = (char *)&g->items[nitems];
  memcpy(g->login, pdu->header->login_id, loginlen + 1);
  g->key = g->login + loginlen + 1;
  memcpy(g->key, key, keylen);
  g->keylen = keylen;
  g->s = s;
  g->gw = gw;
  g->transport = (uint8_t)transport;
  g->req = req;
  g->respond = respond;
  g->t0 = t0;
  g->n = (uint32_t)nitems;
  g->hmac_alg = pdu->hmac.alg;
  g->config = pdu->config != NULL;
  g->has_instance_id = pdu->header->has_instance_id;
  g->instance_id = pdu->header->instance_id;
  g->has_message_id = pdu->header->has_message_id;
  g->message_id = pdu->header->message_id;
  uint64_t t_us = now_us();
  size_t waiting = 0;
  for (size_t i = 0; i < g->n; i++) {
    const kl_pdu_aggr_req_t *q = &pdu->aggr_reqs[i];
    gw_item_t *it = &g->items[i];
    it->owner = g;
    it->request_id = q->request_id;
    kl_round_identity_t who = {g->login, s->machine_id, true, true, s->seq++, t_us};
    uint64_t st;
    unsigned level = !q->has_level ? 0 : q->level > UINT_MAX ? UINT_MAX : (unsigned)q->level;
    if (q->refused) { /* one bad field: this request alone is refused */
      kl_err_set(&e, KL_EFORMAT, "%s", q->why);
      st = q->refused;
    }
    if (q->refused || (s->worker ? gw_worker_submit(s->worker, &q->hash, level, &who, it, &st, &e)
                                 : kl_tier_submit(s->tier, &q->hash, level, &who, it, &st, &e))) {
      it->status = st;
      it->error = strdup(e.msg);
      note(g, q->request_id, e.msg);
    } else {
      waiting++;
    }
  }
  kl_pdu_free(pdu); /* what the response needs is in g now */
  if (transport == GW_TCP) kl_tlv_req_drop_frame(req);
  g->remaining = (uint32_t)waiting;
  if (waiting == 0) finish(g, NULL, NULL);
}
