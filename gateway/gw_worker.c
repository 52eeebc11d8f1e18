/* keyless-gateway, [gateway] threads > 1: a worker thread (gw_threads.h has the design). Its
 * loop serves its own connections; its requests collect in its own round; at the main clock's
 * word (or once it holds max_requests) the round closes and its root goes to the main loop; the
 * joined answer comes back and every request of the round is answered from this loop. Also the
 * mailboxes both sides use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "gw_threads.h"
#include "keyless/log.h"
#include "keyless/pdu.h"
#include "keyless/tlv.h"

#define MAX_PARTS 64
#define FANOUT_SLICE 2048 /* answers per loop iteration, as kl_tier: writes go out in between */

int gw_box_init(gw_box_t *b, uv_loop_t *loop, uv_async_cb cb, void *data) {
  b->head = NULL;
  b->tail = &b->head;
  int rc = uv_mutex_init(&b->mu);
  if (rc) return rc;
  if ((rc = uv_async_init(loop, &b->async, cb))) {
    uv_mutex_destroy(&b->mu);
    return rc;
  }
  b->async.data = data;
  return 0;
}

void gw_box_put(gw_box_t *b, gw_msg_t *m) {
  m->next = NULL;
  uv_mutex_lock(&b->mu);
  *b->tail = m;
  b->tail = &m->next;
  uv_mutex_unlock(&b->mu);
  uv_async_send(&b->async);
}

gw_msg_t *gw_box_take(gw_box_t *b) {
  uv_mutex_lock(&b->mu);
  gw_msg_t *m = b->head;
  b->head = NULL;
  b->tail = &b->head;
  uv_mutex_unlock(&b->mu);
  return m;
}

static gw_flight_t *detach_open(gw_worker_t *w);
static void on_fanout(uv_idle_t *h);

int gw_worker_submit(gw_worker_t *w, const kl_imprint_t *hash, unsigned level, const kl_round_identity_t *who,
                     void *ctx, uint64_t *status, kl_err_t *e) {
  size_t slot;
  int rc;
  *status = KL_STATUS_INTERNAL_ERROR;
  if (w->exiting) {
    *status = KL_STATUS_UPSTREAM_ERROR;
    return kl_err_set(e, KL_ESTATE, "shutting down");
  }
  if (w->max_pending && w->held >= w->max_pending) {
    *status = KL_STATUS_AGGR_TOO_MANY_REQUESTS;
    return kl_err_set(e, KL_ERANGE, "%zu requests are waiting already on this thread; retry later", w->held);
  }
  if (w->open == NULL && (rc = kl_round_create(&w->rc, &w->open, e))) return rc;
  size_t n = kl_round_size(w->open);
  if (w->rc.max_requests && n >= w->rc.max_requests) {
    /* As kl_tier_submit: a full round closes now and the request opens the next one, instead of
     * refusing the rest of the period; closed and sent from the loop (on_fanout), not inside
     * the caller's submit. max_pending is the bound on what a worker holds. */
    gw_flight_t *f = detach_open(w);
    if (f != NULL) {
      w->closed_full++;
      gw_flight_t **pp = &w->full;
      while (*pp) pp = &(*pp)->next;
      *pp = f;
      uv_idle_start(&w->fanout, on_fanout);
      if ((rc = kl_round_create(&w->rc, &w->open, e))) return rc;
      n = 0;
    } /* else kl_round_add refuses it: the round is full */
  }
  if (n == w->open_cap) {
    size_t cap = w->open_cap ? w->open_cap * 2 : 64;
    void **p = realloc(w->open_ctx, cap * sizeof *p);
    if (p == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    w->open_ctx = p;
    w->open_cap = cap;
  }
  if ((rc = kl_round_add(w->open, hash, level, who, &slot, status, e))) return rc;
  w->open_ctx[slot] = ctx;
  w->held++;
  *status = 0;
  return 0;
}

static void free_flight(gw_flight_t *f) {
  kl_round_free(f->round);
  free(f->ctx);
  if (f->ans) free(f->ans->parts);
  free(f->ans);
  free(f);
}

static void fail_flight(gw_worker_t *w, gw_flight_t *f, uint64_t status, const char *why) {
  kl_tier_answer_t a = {.status = status, .error = why};
  for (size_t i = 0; i < f->n; i++) {
    w->held--;
    gw_on_answer(f->ctx[i], &a, NULL);
  }
  free_flight(f);
}

static gw_flight_t *take_flight(gw_worker_t *w, uint64_t id) {
  for (gw_flight_t **pp = &w->flights; *pp; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      gw_flight_t *f = *pp;
      *pp = f->next;
      return f;
    }
  return NULL;
}

/* Hands out up to budget answers of an accepted flight: each request's own chain in front of
 * the joined parts (the shared tail). Returns how many. */
static size_t fan_out(gw_worker_t *w, gw_flight_t *f, size_t budget) {
  const gw_msg_t *m = f->ans;
  kl_err_t e = {0};
  size_t given = 0;
  for (; f->next_slot < f->n && given < budget; f->next_slot++, given++) {
    kl_tier_answer_t a = {.second = m->second, .lead_ms = m->lead_ms};
    kl_buf_reset(&w->scratch);
    if (kl_round_answer_head(f->round, m->second, f->next_slot, &w->scratch, &e)) {
      a.status = KL_STATUS_INTERNAL_ERROR;
      a.error = "cannot build the aggregation chain";
    } else {
      a.tlvs = w->scratch.p;
      a.len = w->scratch.len;
      a.tail = m->parts;
      a.tail_len = m->len;
      a.round = f->id;
    }
    w->held--;
    gw_on_answer(f->ctx[f->next_slot], &a, NULL);
  }
  return given;
}

static void launch_full(gw_worker_t *w);

static void on_fanout(uv_idle_t *h) {
  gw_worker_t *w = h->data;
  size_t budget = FANOUT_SLICE;
  launch_full(w);
  while (w->answering && budget > 0) {
    gw_flight_t *f = w->answering;
    budget -= fan_out(w, f, budget);
    if (f->next_slot < f->n) break;
    w->answering = f->next;
    free_flight(f);
  }
  if (w->answering == NULL && w->full == NULL) uv_idle_stop(h);
}

/* The joined answer (m: the top chain and the parents' parts), checked against this subtree
 * once; then the flight is answered FANOUT_SLICE requests per loop iteration. Takes m. */
static void answer_flight(gw_worker_t *w, gw_flight_t *f, gw_msg_t *m) {
  const uint8_t *parts[MAX_PARTS];
  size_t lens[MAX_PARTS], n = 0;
  kl_tlv_iter_t it;
  kl_tlv_t t;
  kl_err_t e = {0};
  int rc = 0;
  f->ans = m;
  kl_tlv_iter_init(&it, m->parts, m->parts, m->len);
  while (n < MAX_PARTS && (rc = kl_tlv_next(&it, &t, &e)) == 1) {
    parts[n] = t.raw;
    lens[n++] = t.raw_len;
  }
  kl_round_parent_t parent = {parts, lens, n};
  if (rc < 0 || n == 0 || n == MAX_PARTS || kl_round_accept(f->round, &parent, m->second, &e)) {
    char q[300];
    kl_log(KL_LOG_ERROR, "worker_answer_invalid", "worker=%d round=%llu error=%s", w->index,
           (unsigned long long)f->id, kl_log_q(q, sizeof q, n ? e.msg : "no aggregation chain"));
    fail_flight(w, f, KL_STATUS_UPSTREAM_ERROR, "the parent's answer was invalid");
    return;
  }
  gw_flight_t **pp = &w->answering;
  while (*pp) pp = &(*pp)->next;
  f->next = NULL;
  *pp = f;
  uv_idle_start(&w->fanout, on_fanout);
}

static void snapshot(gw_worker_t *w) {
  gw_stats_t s;
  gw_serve_stats(w->gw, &s);
  s.rounds_full = (double)w->closed_full;
  uv_mutex_lock(&w->stats_mu);
  w->stats = s;
  uv_mutex_unlock(&w->stats_mu);
}

/* The open round as a flight not yet closed; NULL out of memory (the round stays open). */
static gw_flight_t *detach_open(gw_worker_t *w) {
  gw_flight_t *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->round = w->open;
  f->ctx = w->open_ctx;
  f->n = kl_round_size(w->open);
  w->open = NULL;
  w->open_ctx = NULL;
  w->open_cap = 0;
  return f;
}

/* The main loop hears that this worker has no root for the tick (it stops waiting for it). */
static void answer_empty(gw_worker_t *w, uint64_t tick) {
  gw_msg_t *m = calloc(1, sizeof *m);
  if (m == NULL) return; /* the main loop closes at its deadline */
  m->kind = M_EMPTY;
  m->worker = w->index;
  m->tick = tick;
  gw_box_put(&w->pool->box, m);
}

/* Closes f's tree and posts its root to the main loop, answering tick (0: a round closed full). */
static void launch(gw_worker_t *w, gw_flight_t *f, uint64_t tick) {
  kl_err_t e = {0};
  gw_msg_t *m = calloc(1, sizeof *m);
  f->id = w->next_id++;
  if (m == NULL || kl_round_close(f->round, &m->root, &m->level, &e)) {
    const char *why = m ? e.msg : "out of memory";
    free(m);
    fail_flight(w, f, KL_STATUS_INTERNAL_ERROR, why);
    if (tick) answer_empty(w, tick);
    return;
  }
  gw_flight_t **pp = &w->flights;
  while (*pp) pp = &(*pp)->next;
  *pp = f;
  m->kind = M_ROOT;
  m->worker = w->index;
  m->wround = f->id;
  m->tick = tick;
  gw_box_put(&w->pool->box, m);
}

/* The rounds that filled up, in order (gw_worker_submit queued them). */
static void launch_full(gw_worker_t *w) {
  while (w->full && !w->exiting) {
    gw_flight_t *f = w->full;
    w->full = f->next;
    f->next = NULL;
    launch(w, f, 0);
  }
}

/* The main clock's tick: the full rounds go up, then the open one, whose root (or M_EMPTY)
 * answers the tick. */
static void close_round(gw_worker_t *w, uint64_t tick) {
  snapshot(w);
  launch_full(w);
  gw_flight_t *f = w->open && kl_round_size(w->open) > 0 ? detach_open(w) : NULL;
  if (f) launch(w, f, tick);
  else answer_empty(w, tick); /* nothing, or out of memory: the next tick takes it */
}

void gw_worker_drop(gw_worker_t *w, const char *why) {
  w->exiting = true;
  while (w->answering) { /* answered already: hand them out now */
    gw_flight_t *f = w->answering;
    fan_out(w, f, SIZE_MAX);
    w->answering = f->next;
    free_flight(f);
  }
  while (w->full) {
    gw_flight_t *f = w->full;
    w->full = f->next;
    fail_flight(w, f, KL_STATUS_UPSTREAM_ERROR, why);
  }
  if (w->open) {
    kl_tier_answer_t a = {.status = KL_STATUS_UPSTREAM_ERROR, .error = why};
    for (size_t i = 0; i < kl_round_size(w->open); i++) {
      w->held--;
      gw_on_answer(w->open_ctx[i], &a, NULL);
    }
    kl_round_free(w->open);
    free(w->open_ctx);
    w->open = NULL;
    w->open_ctx = NULL;
  }
  while (w->flights) {
    gw_flight_t *f = w->flights;
    w->flights = f->next;
    fail_flight(w, f, KL_STATUS_UPSTREAM_ERROR, why);
  }
}

void gw_worker_servers_closed(gw_worker_t *w) {
  snapshot(w);
  if (!w->thread_started) return; /* a pool that never started: nobody waits */
  gw_msg_t *m = calloc(1, sizeof *m);
  if (m == NULL) abort(); /* the pool would wait for this worker for ever */
  m->kind = M_STOPPED;
  m->worker = w->index;
  gw_box_put(&w->pool->box, m);
}

void gw_worker_on_box(uv_async_t *h) {
  gw_worker_t *w = h->data;
  for (gw_msg_t *m = gw_box_take(&w->box), *next; m; m = next) {
    next = m->next;
    gw_flight_t *f;
    switch (m->kind) {
    case M_CLOSE:
      close_round(w, m->tick);
      break;
    case M_ANSWER:
      if ((f = take_flight(w, m->wround)) == NULL) break;
      if (m->status) {
        fail_flight(w, f, m->status, m->error);
        break;
      }
      answer_flight(w, f, m); /* takes m */
      continue;
    case M_RELOAD:
      gw_serve_reload(w->gw);
      break;
    case M_STOP:
      gateway_stop(w->gw); /* gw_worker_servers_closed once its servers have closed */
      break;
    case M_EXIT:
      gw_worker_drop(w, "the service is shutting down; retry");
      uv_close((uv_handle_t *)&w->box.async, NULL);
      uv_close((uv_handle_t *)&w->fanout, NULL);
      break;
    default:
      break;
    }
    free(m->parts);
    free(m);
  }
}

void gw_worker_run(void *arg) {
  gw_worker_t *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT); /* until M_EXIT closed the mailbox (the servers are closed by then) */
  kl_hash_thread_end();             /* this thread's cached hasher and HMAC contexts */
  OPENSSL_thread_stop();            /* its random generator and error queue */
}
