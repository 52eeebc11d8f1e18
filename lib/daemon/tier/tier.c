/* One tier of the aggregation hierarchy on libuv: rounds on a timer, parents over framed
 * protobuf, answers fanned out (keyless/tier.h). Elsewhere: the round (round.c), heartbeats,
 * silence and health (tier_parents.c on tier_link.c's state machine), the clock (tier_clock.c),
 * the frames a parent sends (tier_frames.c); the structures in tier_internal.h. */
#include "keyless/tier.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregation.pb-c.h"
#include "keyless/frameclient.h"
#include "keyless/log.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"
#include "tier_clock.h"
#include "tier_internal.h"

static const double size_buckets[] = {1, 4, 16, 64, 256, 1024, 4096, 16384, 65536};

static kl_metric_t *refused_metric(kl_tier_t *t, uint64_t status) {
  char s[24];
  if (t->m == NULL) return NULL;
  snprintf(s, sizeof s, "0x%04llX", (unsigned long long)status);
  return kl_metrics_counter(t->m, "keyless_tier_requests_refused_total",
                            "Requests refused at once, by KSI status (limits, bad input).",
                            (const char *[]){"tier", t->kind, "status", s, NULL});
}

static void free_flight(flight_t *f) {
  kl_round_free(f->round);
  free(f->ctx);
  free(f->pbuf);
  free(f);
}

static void finish_flight(kl_tier_t *t, flight_t *f, uint64_t status, const char *why) {
  flight_t **pp = &t->flights;
  while (*pp && *pp != f) pp = &(*pp)->next;
  if (*pp) *pp = f->next;
  t->held -= f->n;
  if (!t->closing) {
    t->last_fail = uv_now(t->loop);
    snprintf(t->last_why, sizeof t->last_why, "%s", why);
  }
  kl_tier_answer_t a = {.status = status, .error = why};
  for (size_t i = 0; i < f->n; i++) t->done(f->ctx[i], &a, t->arg);
  kl_metric_inc(status == KL_STATUS_UPSTREAM_TIMEOUT ? t->m_timeout : t->m_failed);
  char q[300];
  kl_log(KL_LOG_WARN, "round_failed", "tier=%s round=%llu requests=%zu status=0x%04llX reason=%s", t->kind,
         (unsigned long long)f->id, f->n, (unsigned long long)status, kl_log_q(q, sizeof q, why));
  free_flight(f);
}

static bool send_to(kl_tier_t *t, flight_t *f, int i) {
  parent_t *p = &t->parents[i];
  Keyless__Aggregation__Request rq = KEYLESS__AGGREGATION__REQUEST__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  uint8_t imp[KL_HASH_MAX_DIGEST + 1], buf[512];
  rq.request_id = f->id;
  rq.imprint.len = kl_imprint_to_bytes(&f->root, imp);
  rq.imprint.data = imp;
  rq.level = f->level;
  rq.client_id = t->name;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
  m.request = &rq;
  f->tried |= 1u << i;
  size_t n = keyless__aggregation__message__get_packed_size(&m);
  if (!kl_link_usable(&p->link) || n > sizeof buf) {
    f->failed |= 1u << i;
    return false;
  }
  keyless__aggregation__message__pack(&m, buf);
  if (kl_frame_client_send(p->fc, buf, n, NULL)) {
    f->failed |= 1u << i;
    return false;
  }
  kl_link_sent(&p->link, uv_now(t->loop), false);
  return true;
}

/* Failover: asks the next connected parent not tried yet. false when none is left. */
static bool try_next(kl_tier_t *t, flight_t *f) {
  for (size_t k = 0; k < t->n_parents; k++) {
    int i = (int)k;
    if (f->tried & (1u << i)) continue;
    if (send_to(t, f, i)) {
      f->current = i;
      f->next_try = uv_now(t->loop) + t->cfg.parent_timeout_ms;
      return true;
    }
  }
  return false;
}

/* true while some parent asked may still answer. */
static bool waiting_on_someone(const flight_t *f) { return (f->tried & ~f->failed) != 0; }

static void parent_gave_up(kl_tier_t *t, flight_t *f, int i, uint64_t status, const char *why) {
  f->failed |= 1u << i;
  if (t->cfg.parent_mode == KL_TIER_FAILOVER && f->current == i && try_next(t, f)) return;
  if (waiting_on_someone(f)) return;
  /* A parent's limit is the client's limit too; anything else is the hierarchy's problem. */
  if (status != KL_STATUS_AGGR_TOO_MANY_REQUESTS && status != KL_STATUS_AGGR_OVER_QUOTA &&
      status != KL_STATUS_UPSTREAM_TIMEOUT)
    status = KL_STATUS_UPSTREAM_ERROR;
  finish_flight(t, f, status, why);
}

/* Hands out up to budget answers of f; returns how many. */
static size_t fan_out(kl_tier_t *t, flight_t *f, size_t budget) {
  size_t given = 0;
  kl_err_t e = {0};
  for (; f->next_slot < f->n && given < budget; f->next_slot++, given++) {
    kl_tier_answer_t a = {.second = f->second, .lead_ms = t->lead_ms};
    kl_buf_reset(&t->scratch);
    if (kl_round_answer_head(f->round, f->second, f->next_slot, &t->scratch, &e)) {
      a.status = KL_STATUS_INTERNAL_ERROR;
      a.error = "cannot build the aggregation chain";
    } else { /* the request's own chain; the parent's parts are one copy for the whole round */
      a.tlvs = t->scratch.p;
      a.len = t->scratch.len;
      a.tail = f->pbuf;
      a.tail_len = f->ptotal;
      a.round = f->id;
    }
    t->held--;
    t->done(f->ctx[f->next_slot], &a, t->arg);
  }
  return given;
}

static void launch_full(kl_tier_t *t);

static void on_fanout(uv_idle_t *h) {
  kl_tier_t *t = h->data;
  size_t budget = FANOUT_SLICE;
  t->in_fanout = true;
  launch_full(t);
  while (t->answering && (budget > 0 || t->closing)) {
    flight_t *f = t->answering;
    size_t given = fan_out(t, f, budget);
    budget -= given < budget ? given : budget;
    if (f->next_slot < f->n && !t->closing) break;
    if ((t->answering = f->next) == NULL) t->answering_tail = &t->answering;
    free_flight(f); /* when closing, kl_tier_close has handed out every answer already */
  }
  t->in_fanout = false;
  if (t->answering == NULL && t->full == NULL && !uv_is_closing((uv_handle_t *)h)) uv_idle_stop(h);
}

static void answer_flight(kl_tier_t *t, flight_t *f, parent_t *p, const Keyless__Aggregation__Response *r) {
  const uint8_t *parts[MAX_PARTS];
  size_t lens[MAX_PARTS], n = 0, total = 0;
  kl_err_t e = {0};
  for (size_t i = 0; i < r->n_chains && n < MAX_PARTS - 2; i++, n++) {
    parts[n] = r->chains[i].data;
    lens[n] = r->chains[i].len;
  }
  if (r->has_calendar_chain && r->calendar_chain.len) {
    parts[n] = r->calendar_chain.data;
    lens[n++] = r->calendar_chain.len;
  }
  if (r->has_auth_record && r->auth_record.len) {
    parts[n] = r->auth_record.data;
    lens[n++] = r->auth_record.len;
  }
  kl_round_parent_t parent = {parts, lens, n};
  if (r->n_chains == 0 || r->n_chains > MAX_PARTS - 2 || kl_round_accept(f->round, &parent, r->second, &e)) {
    char q[300];
    kl_metric_inc(p->m_invalid);
    kl_log(KL_LOG_ERROR, "parent_answer_invalid", "tier=%s parent=%s round=%llu error=%s", t->kind, p->addr,
           (unsigned long long)f->id, kl_log_q(q, sizeof q, r->n_chains ? e.msg : "no aggregation chain"));
    parent_gave_up(t, f, p->index, KL_STATUS_UPSTREAM_ERROR, "the parent's answer was invalid");
    return;
  }
  for (size_t i = 0; i < n; i++) total += lens[i];
  if ((f->pbuf = malloc(total ? total : 1)) == NULL) {
    finish_flight(t, f, KL_STATUS_INTERNAL_ERROR, "out of memory");
    return;
  }
  for (size_t i = 0, off = 0; i < n; off += lens[i], i++) {
    memcpy(f->pbuf + off, parts[i], lens[i]);
    f->parts[i] = f->pbuf + off;
    f->lens[i] = lens[i];
  }
  f->n_parts = n;
  f->ptotal = total;
  f->second = r->second;
  kl_metric_inc(p->m_used);
  kl_metric_observe(t->m_latency, (double)(uv_now(t->loop) - f->closed_at) / 1e3);
  kl_metric_inc(t->m_answered);
  t->last_ok = uv_now(t->loop);
  flight_t **pp = &t->flights;
  while (*pp != f) pp = &(*pp)->next;
  *pp = f->next;
  f->next = NULL;
  *t->answering_tail = f;
  t->answering_tail = &f->next;
  uv_idle_start(&t->fanout, on_fanout);
}

static void on_frame(kl_frame_client_t *c, const uint8_t *payload, size_t len, void *arg) {
  (void)c;
  parent_t *p = arg;
  kl_tier_t *t = p->t;
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, len, payload);
  uint64_t now = uv_now(t->loop);
  if (m && m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PONG) { /* a heartbeat's answer */
    snprintf(p->why, sizeof p->why, "%s", m->pong->ready ? "" : m->pong->reason ? m->pong->reason : "not ready");
    kl_link_heard(&p->link, now, m->pong->ready);
    kl__tier_report(t, p);
    keyless__aggregation__message__free_unpacked(m, NULL);
    return;
  }
  if (m == NULL || m->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE) {
    kl_metric_inc(p->m_invalid);
    kl_link_heard(&p->link, now, p->link.ready); /* an answer all the same (they come in order) */
    kl__tier_report(t, p);
    if (m) keyless__aggregation__message__free_unpacked(m, NULL);
    return;
  }
  const Keyless__Aggregation__Response *r = m->response;
  kl_link_heard(&p->link, now, r->status == 0 ? true : p->link.ready);
  kl__tier_report(t, p);
  if (r->status == 0) { /* the parents' leads decide ours (deadline propagation, tier_clock.h) */
    p->lead_ms = r->has_lead_ms ? r->lead_ms : 0;
    uint32_t most = 0;
    for (size_t i = 0; i < t->n_parents; i++)
      if (t->parents[i].lead_ms > most) most = t->parents[i].lead_ms;
    uint64_t lead = kl_tier_lead(t->cfg.lead_ms, most);
    if (lead != t->lead_ms) {
      kl_log(KL_LOG_INFO, "round_lead", "tier=%s lead_ms=%llu parents_lead_ms=%u", t->kind, (unsigned long long)lead, most);
      t->lead_ms = lead;
    }
  }
  flight_t *f = t->flights;
  while (f && f->id != r->request_id) f = f->next;
  if (f == NULL) {
    kl_metric_inc(p->m_late);
  } else if (r->status != 0) {
    char why[200];
    snprintf(why, sizeof why, "parent %s: status 0x%04X %s", p->addr, r->status, r->error ? r->error : "");
    kl_metric_inc(p->m_error);
    kl_log(KL_LOG_INFO, "parent_error", "tier=%s parent=%s round=%llu status=0x%04X", t->kind, p->addr,
           (unsigned long long)f->id, r->status);
    parent_gave_up(t, f, p->index, r->status, why);
  } else {
    answer_flight(t, f, p, r);
  }
  keyless__aggregation__message__free_unpacked(m, NULL);
}

static void on_state(kl_frame_client_t *c, bool connected, void *arg) {
  (void)c;
  parent_t *p = arg;
  kl_tier_t *t = p->t;
  if (connected) { /* up once it answers: a Ping now */
    kl_link_connected(&p->link, uv_now(t->loop));
    kl__tier_send_ping(t, p);
    return;
  }
  kl_link_disconnected(&p->link, uv_now(t->loop));
  kl__tier_report(t, p);
  flight_t *f = t->flights;
  while (f) {
    flight_t *next = f->next;
    if ((f->tried & (1u << p->index)) && !(f->failed & (1u << p->index)))
      parent_gave_up(t, f, p->index, KL_STATUS_UPSTREAM_ERROR, "the parent's connection was lost");
    f = next;
  }
}

/* The open round as a flight not yet closed; NULL out of memory (the round stays open). */
static flight_t *detach_open(kl_tier_t *t) {
  flight_t *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->round = t->open;
  f->ctx = t->open_ctx;
  f->n = kl_round_size(t->open);
  t->open = NULL;
  t->open_ctx = NULL;
  t->open_cap = 0;
  return f;
}

/* Closes f's round (its tree) and sends its root up. */
static void launch(kl_tier_t *t, flight_t *f) {
  kl_err_t e = {0};
  f->id = t->next_id++;
  f->current = -1;
  f->closed_at = uv_now(t->loop);
  f->deadline = f->closed_at + t->cfg.round_timeout_ms;
  flight_t **pp = &t->flights;
  while (*pp) pp = &(*pp)->next;
  *pp = f;
  kl_metric_observe(t->m_size, (double)f->n);
  if (kl_round_close(f->round, &f->root, &f->level, &e)) {
    finish_flight(t, f, KL_STATUS_INTERNAL_ERROR, e.msg);
    return;
  }
  bool sent = false;
  if (t->cfg.parent_mode == KL_TIER_FAILOVER) sent = try_next(t, f);
  else
    for (size_t i = 0; i < t->n_parents; i++) sent |= send_to(t, f, (int)i);
  if (!sent) finish_flight(t, f, KL_STATUS_UPSTREAM_ERROR, "no parent is reachable");
}

/* Closes the open round and sends it up; false out of memory (the round stays open). */
static bool close_round(kl_tier_t *t) {
  flight_t *f = detach_open(t);
  if (f) launch(t, f); /* else: try again next tick */
  return f != NULL;
}

/* Rounds that filled up before their time, in order (kl_tier_submit queued them). */
static void launch_full(kl_tier_t *t) {
  while (t->full && !t->closing) {
    flight_t *f = t->full;
    if ((t->full = f->next) == NULL) t->full_tail = &t->full;
    f->next = NULL;
    launch(t, f);
  }
}

static void on_tick(uv_timer_t *h);

/* The next round close on the wall clock (tier_clock.h), one-shot, re-armed at every tick. */
static void arm_tick(kl_tier_t *t) {
  uv_timer_start(&t->timer, on_tick, kl_tier_next_close_in(kl_tier_wall_ms(), t->cfg.period_ms, t->lead_ms), 0);
}

static void on_tick(uv_timer_t *h) {
  kl_tier_t *t = h->data;
  arm_tick(t);
  launch_full(t);
  if (!t->cfg.manual_close && t->open && kl_round_size(t->open) > 0) close_round(t);
  uint64_t now = uv_now(t->loop);
  flight_t *f = t->flights;
  while (f) {
    flight_t *next = f->next;
    if (now >= f->deadline) {
      char why[120];
      snprintf(why, sizeof why, "no answer from the parents within %llu ms", (unsigned long long)t->cfg.round_timeout_ms);
      finish_flight(t, f, KL_STATUS_UPSTREAM_TIMEOUT, why);
    } else if (t->cfg.parent_mode == KL_TIER_FAILOVER && now >= f->next_try) {
      f->next_try = UINT64_MAX; /* one failover per silence; the silent parent may still answer */
      if (f->current >= 0) { /* skipped by later rounds until it is heard again */
        kl_link_suspect(&t->parents[f->current].link);
        kl__tier_report(t, &t->parents[f->current]);
      }
      try_next(t, f);
    }
    f = next;
  }
}

size_t kl_tier_close_now(kl_tier_t *t) {
  if (t == NULL || t->closing) return 0;
  launch_full(t); /* the rounds that filled up before this one go up first */
  size_t n = t->open ? kl_round_size(t->open) : 0;
  return n > 0 && close_round(t) ? n : 0;
}

uint64_t kl_tier_next_close(const kl_tier_t *t, uint64_t wall_ms) {
  return wall_ms + kl_tier_next_close_in(wall_ms, t->cfg.period_ms, t->lead_ms);
}

static int open_round(kl_tier_t *t, kl_err_t *e) {
  if (t->open) return 0;
  return kl_round_create(&t->cfg.round, &t->open, e);
}

int kl_tier_submit(kl_tier_t *t, const kl_imprint_t *hash, unsigned level, const kl_round_identity_t *who, void *ctx,
                   uint64_t *status, kl_err_t *e) {
  size_t slot;
  int rc;
  *status = KL_STATUS_INTERNAL_ERROR;
  if (t->closing) {
    *status = KL_STATUS_UPSTREAM_ERROR;
    return kl_err_set(e, KL_ESTATE, "shutting down");
  }
  if (t->cfg.max_pending && t->held >= t->cfg.max_pending) {
    *status = KL_STATUS_AGGR_TOO_MANY_REQUESTS;
    kl_metric_inc(refused_metric(t, *status));
    return kl_err_set(e, KL_ERANGE, "%zu requests are waiting already; retry later", t->held);
  }
  if ((rc = open_round(t, e))) return rc;
  size_t n = kl_round_size(t->open);
  if (t->cfg.round.max_requests && n >= t->cfg.round.max_requests) {
    /* A full round closes now and a new one opens, instead of refusing the rest of the period
     * (a loop that fell behind reads several periods' roots at once): max_requests stays the
     * bound of one round, the parents get one root more. */
    flight_t *f = detach_open(t);
    if (f != NULL) { /* closed and sent from the loop (on_fanout), not inside the caller's submit */
      kl_metric_inc(t->m_early);
      *t->full_tail = f;
      t->full_tail = &f->next;
      uv_idle_start(&t->fanout, on_fanout);
      if ((rc = open_round(t, e))) return rc;
      n = kl_round_size(t->open);
    } /* else kl_round_add refuses it: the round is full */
  }
  if (n == t->open_cap) {
    size_t cap = t->open_cap ? t->open_cap * 2 : 64;
    void **p = realloc(t->open_ctx, cap * sizeof *p);
    if (p == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    t->open_ctx = p;
    t->open_cap = cap;
  }
  if ((rc = kl_round_add(t->open, hash, level, who, &slot, status, e))) {
    kl_metric_inc(refused_metric(t, *status));
    return rc;
  }
  t->open_ctx[slot] = ctx;
  t->held++;
  *status = 0;
  return 0;
}

unsigned kl_tier_max_request_level(const kl_tier_t *t) { return kl_round_max_request_level(&t->cfg.round); }

size_t kl_tier_pending(const kl_tier_t *t) { return t->held; }

static double m_held(void *arg) { return (double)((kl_tier_t *)arg)->held; }

static int metrics_init(kl_tier_t *t) {
  kl_metrics_t *m = t->m;
  const char *k = t->kind;
  bool ok = true;
  ok &= (t->m_answered = kl_metrics_counter(m, "keyless_tier_rounds_total", "Closed rounds by outcome.",
                                            (const char *[]){"tier", k, "outcome", "answered", NULL})) != NULL;
  ok &= (t->m_failed = kl_metrics_counter(m, "keyless_tier_rounds_total", "Closed rounds by outcome.",
                                          (const char *[]){"tier", k, "outcome", "failed", NULL})) != NULL;
  ok &= (t->m_timeout = kl_metrics_counter(m, "keyless_tier_rounds_total", "Closed rounds by outcome.",
                                           (const char *[]){"tier", k, "outcome", "timeout", NULL})) != NULL;
  ok &= (t->m_early = kl_metrics_counter(m, "keyless_tier_rounds_closed_full_total",
                                         "Rounds closed before their time because they held max_requests.",
                                         (const char *[]){"tier", k, NULL})) != NULL;
  ok &= (t->m_size = kl_metrics_histogram(m, "keyless_tier_round_requests", "Requests in a closed round.",
                                          (const char *[]){"tier", k, NULL}, size_buckets,
                                          sizeof size_buckets / sizeof size_buckets[0])) != NULL;
  ok &= (t->m_latency = kl_metrics_histogram(m, "keyless_tier_parent_latency_seconds",
                                             "From a round's close to its parent's valid answer.",
                                             (const char *[]){"tier", k, NULL}, kl_metrics_latency_buckets,
                                             kl_metrics_latency_n)) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_tier_requests_held", "Requests in the open round or waiting for a parent.",
                            (const char *[]){"tier", k, NULL}, m_held, t) != NULL;
  for (size_t i = 0; i < t->n_parents; i++) {
    parent_t *p = &t->parents[i];
    const char *h = "Parent answers: used (first valid), late (after another or after the round failed), error "
                    "(a KSI status), invalid (does not fit the round).";
    ok &= (p->m_up = kl_metrics_gauge(m, "keyless_tier_parent_up",
                                      "1 while the parent is usable: connected, answering heartbeats, ready for rounds.",
                                      (const char *[]){"tier", k, "parent", p->addr, NULL})) != NULL;
    ok &= (p->m_silent = kl_metrics_counter(m, "keyless_tier_parent_silences_total",
                                            "Connections to the parent closed because it answered nothing within "
                                            "heartbeat_timeout.",
                                            (const char *[]){"tier", k, "parent", p->addr, NULL})) != NULL;
    ok &= (p->m_used = kl_metrics_counter(m, "keyless_tier_parent_answers_total", h,
                                          (const char *[]){"tier", k, "parent", p->addr, "outcome", "used", NULL})) != NULL;
    ok &= (p->m_late = kl_metrics_counter(m, "keyless_tier_parent_answers_total", h,
                                          (const char *[]){"tier", k, "parent", p->addr, "outcome", "late", NULL})) != NULL;
    ok &= (p->m_error = kl_metrics_counter(m, "keyless_tier_parent_answers_total", h,
                                           (const char *[]){"tier", k, "parent", p->addr, "outcome", "error", NULL})) != NULL;
    ok &= (p->m_invalid = kl_metrics_counter(m, "keyless_tier_parent_answers_total", h,
                                             (const char *[]){"tier", k, "parent", p->addr, "outcome", "invalid", NULL})) !=
          NULL;
  }
  return ok ? 0 : -1;
}

static void handle_closed(kl_tier_t *t) {
  if (--t->closes_pending > 0) return;
  void (*cb)(void *) = t->close_cb;
  void *arg = t->close_arg;
  kl_buf_free(&t->scratch);
  free(t);
  if (cb) cb(arg);
}

static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }
static void on_client_closed(void *arg) { handle_closed(arg); }

int kl_tier_create(uv_loop_t *loop, const kl_tier_config_t *cfg, kl_metrics_t *metrics, const char *kind,
                   kl_tier_done_fn done, void *arg, kl_tier_t **out, kl_err_t *e) {
  *out = NULL;
  if (cfg->n_parents == 0 || cfg->n_parents > MAX_PARENTS)
    return kl_err_set(e, KL_EINVAL, "a tier needs 1 to %d parents, not %zu", MAX_PARENTS, cfg->n_parents);
  if (cfg->period_ms == 0 || cfg->round_timeout_ms == 0)
    return kl_err_set(e, KL_EINVAL, "round period and timeout must be positive");
  kl_round_t *probe;
  if (kl_round_create(&cfg->round, &probe, e)) return kl_err_wrap(e, "round configuration");
  kl_round_free(probe);
  kl_tier_t *t = calloc(1, sizeof *t);
  if (t == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  t->loop = loop;
  t->cfg = *cfg;
  t->cfg.parents = NULL;
  snprintf(t->name, sizeof t->name, "%s", cfg->name && cfg->name[0] ? cfg->name : "keyless");
  snprintf(t->kind, sizeof t->kind, "%s", kind ? kind : "tier");
  t->done = done;
  t->arg = arg;
  t->m = metrics;
  t->next_id = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 40); /* ids never repeat across restarts */
  if (t->next_id == 0) t->next_id = 1;
  if (t->cfg.heartbeat_interval_ms == 0) t->cfg.heartbeat_interval_ms = 500;
  if (t->cfg.heartbeat_timeout_ms == 0) t->cfg.heartbeat_timeout_ms = 2000;
  if (t->cfg.unhealthy_after_ms == 0) t->cfg.unhealthy_after_ms = 5000;
  t->last_ok = uv_now(loop);
  t->n_parents = cfg->n_parents;
  for (size_t i = 0; i < t->n_parents; i++) {
    t->parents[i].t = t;
    t->parents[i].index = (int)i;
    snprintf(t->parents[i].addr, sizeof t->parents[i].addr, "%s", cfg->parents[i]);
    kl_link_init(&t->parents[i].link, t->cfg.heartbeat_interval_ms, t->cfg.heartbeat_timeout_ms, uv_now(loop));
  }
  if (metrics && metrics_init(t)) {
    free(t);
    return kl_err_set(e, KL_ENOMEM, "metrics: registration failed");
  }
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_timer_init(loop, &t->link_timer);
  t->link_timer.data = t;
  uv_idle_init(loop, &t->fanout);
  t->fanout.data = t;
  t->answering_tail = &t->answering;
  t->full_tail = &t->full;
  t->closes_pending = 3;
  static const kl_frame_client_cbs_t cbs = {on_frame, on_state};
  for (size_t i = 0; i < t->n_parents; i++) {
    parent_t *p = &t->parents[i];
    char name[160];
    snprintf(name, sizeof name, "parent %s", p->addr);
    if (kl_frame_client_create(loop, name, MAX_FRAME, &cbs, p, &p->fc, e) ||
        (kl_frame_client_set_max_backoff(p->fc, t->cfg.heartbeat_timeout_ms < 1000 ? t->cfg.heartbeat_timeout_ms : 1000),
         0) ||
        (cfg->tls && (kl_frame_client_set_tls(p->fc, cfg->tls, KL_ROLE_CORE | KL_ROLE_AGGREGATOR, NULL), 0)) ||
        kl_frame_client_connect(p->fc, p->addr, e)) {
      int rc = kl_err_wrap(e, "parent %s", p->addr);
      kl_tier_close(t, NULL, NULL); /* the caller runs the loop to let the handles close */
      return rc;
    }
  }
  t->lead_ms = kl_tier_lead(cfg->lead_ms, 0);
  arm_tick(t);
  uint64_t every = (t->cfg.heartbeat_interval_ms < t->cfg.heartbeat_timeout_ms ? t->cfg.heartbeat_interval_ms
                                                                               : t->cfg.heartbeat_timeout_ms) / 4;
  uv_timer_start(&t->link_timer, kl__tier_on_link_timer, every < 10 ? 10 : every, every < 10 ? 10 : every);
  *out = t;
  return 0;
}

void kl_tier_close(kl_tier_t *t, void (*cb)(void *arg), void *arg) {
  if (t == NULL || t->closing) return;
  t->closing = true;
  t->close_cb = cb;
  t->close_arg = arg;
  kl_tier_answer_t a = {.status = KL_STATUS_UPSTREAM_ERROR, .error = "the service is shutting down; retry"};
  if (t->open) {
    for (size_t i = 0; i < kl_round_size(t->open); i++) t->done(t->open_ctx[i], &a, t->arg);
    kl_round_free(t->open);
    free(t->open_ctx);
    t->open = NULL;
  }
  while (t->full) { /* full rounds not sent yet */
    flight_t *f = t->full;
    if ((t->full = f->next) == NULL) t->full_tail = &t->full;
    t->held -= f->n;
    for (size_t i = 0; i < f->n; i++) t->done(f->ctx[i], &a, t->arg);
    free_flight(f);
  }
  while (t->flights) finish_flight(t, t->flights, KL_STATUS_UPSTREAM_ERROR, "the service is shutting down; retry");
  /* Rounds already answered: hand the rest out now. If a done callback is closing the tier from
   * inside on_fanout, that loop frees the flights once it regains control. */
  for (flight_t *f = t->answering; f; f = f->next) fan_out(t, f, SIZE_MAX);
  while (t->answering && !t->in_fanout) {
    flight_t *f = t->answering;
    t->answering = f->next;
    free_flight(f);
  }
  if (t->answering == NULL) t->answering_tail = &t->answering;
  uv_idle_stop(&t->fanout);
  uv_close((uv_handle_t *)&t->fanout, on_timer_closed);
  uv_timer_stop(&t->timer);
  uv_timer_stop(&t->link_timer);
  uv_close((uv_handle_t *)&t->link_timer, on_timer_closed);
  for (size_t i = 0; i < t->n_parents; i++)
    if (t->parents[i].fc) {
      t->closes_pending++;
      kl_frame_client_close(t->parents[i].fc, on_client_closed, t);
    }
  uv_close((uv_handle_t *)&t->timer, on_timer_closed);
}
