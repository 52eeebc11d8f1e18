/* keyless-gateway, [gateway] threads > 1: the main loop's side (gw_threads.h has the design).
 * The round clock that tells the workers to close, the workers' roots submitted to the tier
 * (whose round over them is the top tree), the tier's answers sent back to their workers, the
 * workers started, stopped and joined, and their counters summed for the metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_threads.h"
#include "keyless/log.h"
#include "keyless/pdu.h"

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* How long before the tier's scheduled close the workers are told to close theirs, and how
 * long after it the tier waits at most for their roots: GW_MARGIN_MS, or twice the slowest
 * hand-off of the last rounds (a worker's tree takes longer as its rounds fill), at most a
 * quarter of the period. */
static uint64_t margin(gw_pool_t *p) {
  uint64_t m = 2 * p->slowest_ms > GW_MARGIN_MS ? 2 * p->slowest_ms : GW_MARGIN_MS, most = p->period_ms / 4;
  return m < most ? m : most;
}

/* The tier's round closes now, with the roots that are in (every worker's, or the deadline). */
static void close_tier(gw_pool_t *p) {
  p->pending = false;
  uv_timer_stop(&p->deadline);
  if (p->tier) kl_tier_close_now(p->tier);
}

static void on_deadline(uv_timer_t *h) {
  gw_pool_t *p = h->data;
  if (p->pending) close_tier(p); /* a worker has not answered: its root joins the next round */
}

/* One tick per scheduled tier close, margin before it: the next tick is for the first close
 * after the one this tick was for (a timer that fires a little early, or a margin that
 * shrinks, must not tell the workers twice for one tier round). */
static void on_clock(uv_timer_t *h) {
  gw_pool_t *p = h->data;
  if (p->tick) p->tick(p->tick_arg);
  if (p->pending) close_tier(p); /* the next close is due before the last one's deadline */
  uint64_t now = wall_ms(), m = margin(p);
  p->slowest_ms = p->slowest_ms * 7 / 8; /* forgets a slow round over a few seconds */
  p->told_at = uv_now(p->loop);
  p->tick_no++;
  p->pending = true;
  p->waiting = p->n;
  uv_timer_start(&p->deadline, on_deadline, (p->due > now ? p->due - now : 0) + m, 0);
  for (int i = 0; i < p->n; i++) {
    gw_msg_t *msg = calloc(1, sizeof *msg);
    if (msg == NULL) { /* that worker closes at the next tick */
      p->waiting--;
      continue;
    }
    msg->kind = M_CLOSE;
    msg->tick = p->tick_no;
    gw_box_put(&p->w[i].box, msg);
  }
  if (p->waiting == 0) close_tier(p);
  p->due = p->tier ? kl_tier_next_close(p->tier, p->due > now ? p->due : now) : now + p->period_ms;
  uint64_t at = p->due - margin(p);
  uv_timer_start(&p->clock, on_clock, at > now ? at - now : 1, 0);
}

static void send_answer(gw_pool_t *p, gw_msg_t *m, uint64_t status, const char *why) {
  m->kind = M_ANSWER;
  m->status = status;
  if (status) snprintf(m->error, sizeof m->error, "%.159s", why ? why : "");
  gw_box_put(&p->w[m->worker].box, m);
}

/* A worker's root joins the tier's open round; its M_ROOT message comes back as the answer. */
static void submit_root(gw_pool_t *p, gw_msg_t *m) {
  kl_err_t e = {0};
  uint64_t st = KL_STATUS_UPSTREAM_ERROR;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  kl_round_identity_t who = {p->ids[m->worker], p->name, true, true, p->seq++,
                             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u};
  if (p->tier == NULL) send_answer(p, m, st, "the service is shutting down; retry");
  else if (kl_tier_submit(p->tier, &m->root, m->level, &who, m, &st, &e)) send_answer(p, m, st, e.msg);
}

void gw_pool_tier_done(void *ctx, const kl_tier_answer_t *a, void *arg) {
  gw_pool_t *p = arg;
  gw_msg_t *m = ctx;
  if (a->status) {
    send_answer(p, m, a->status, a->error);
    return;
  }
  if ((m->parts = malloc(a->len + a->tail_len)) == NULL) {
    send_answer(p, m, KL_STATUS_INTERNAL_ERROR, "out of memory");
    return;
  }
  memcpy(m->parts, a->tlvs, a->len);
  if (a->tail_len) memcpy(m->parts + a->len, a->tail, a->tail_len);
  m->len = a->len + a->tail_len;
  m->second = a->second;
  m->lead_ms = a->lead_ms;
  send_answer(p, m, 0, NULL);
}

static void on_box(uv_async_t *h) {
  gw_pool_t *p = h->data;
  for (gw_msg_t *m = gw_box_take(&p->box), *next; m; m = next) {
    next = m->next;
    if (m->kind == M_ROOT || m->kind == M_EMPTY) {
      bool current = p->pending && m->tick == p->tick_no;
      int wk = m->worker;
      if (m->tick) { /* the answer to a tick (0: a round closed full, in whichever tier round) */
        /* from the tick that asked for it; an older tick's: more than a period (the margin grows) */
        uint64_t took = m->tick == p->tick_no ? uv_now(p->loop) - p->told_at : p->period_ms;
        if (took > p->slowest_ms) p->slowest_ms = took;
        if (!current && m->kind == M_ROOT) {
          p->late++;
          p->late_by[wk]++;
          if ((p->late & (p->late - 1)) == 0) /* 1st, 2nd, 4th... time */
            kl_log(KL_LOG_INFO, "worker_root_late", "worker=%d tick=%llu count=%llu", wk,
                   (unsigned long long)m->tick, (unsigned long long)p->late);
        }
      }
      if (m->kind == M_ROOT) submit_root(p, m); /* m travels on */
      else free(m);
      if (current && --p->waiting == 0) close_tier(p); /* every worker's root is in */
      continue;
    }
    if (m->kind == M_STOPPED && ++p->stopped == p->n && p->stop_cb) {
      uv_timer_stop(&p->clock);
      uv_timer_stop(&p->deadline);
      if (p->pending) close_tier(p);
      p->stop_cb(p->stop_arg);
    }
    free(m);
  }
}

int gw_pool_new(uv_loop_t *loop, const gw_config_t *cfg, gw_pool_t **out, kl_err_t *e) {
  gw_pool_t *p = calloc(1, sizeof *p);
  if (p == NULL || (p->w = calloc((size_t)cfg->n_threads, sizeof *p->w)) == NULL) {
    free(p);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  p->loop = loop;
  p->cfg = cfg;
  *out = p;
  return 0;
}

/* A worker that never ran: its servers closed on its loop, run here on the main thread. */
static void destroy_worker(gw_worker_t *w) {
  if (w->gw) gateway_stop(w->gw);
  if (w->loop_init) {
    uv_close((uv_handle_t *)&w->box.async, NULL);
    uv_close((uv_handle_t *)&w->fanout, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    uv_mutex_destroy(&w->box.mu);
    uv_mutex_destroy(&w->stats_mu);
  }
  gateway_free(w->gw);
  kl_buf_free(&w->scratch);
}

static void free_pool(gw_pool_t *p) {
  free(p->w);
  free(p);
}

void gw_pool_round(kl_tier_t *tier, const kl_tier_config_t *orig, kl_round_config_t *rc) {
  *rc = orig->round;
  rc->max_level = kl_tier_max_request_level(tier); /* the top tree's room above it */
}

int gw_pool_workers(gw_pool_t *p, kl_tier_t *tier, const kl_tier_config_t *orig, const kl_pdu_config_t *conf,
                    kl_err_t *e) {
  const gw_config_t *cfg = p->cfg;
  p->tier = tier;
  p->period_ms = orig->period_ms;
  snprintf(p->name, sizeof p->name, "%s", orig->name);
  kl_round_config_t rc;
  gw_pool_round(tier, orig, &rc);
  int ports[3] = {0, 0, 0};
  for (int i = 0; i < cfg->n_threads; i++) {
    gw_worker_t *w = &p->w[i];
    w->pool = p;
    w->index = i;
    w->rc = rc;
    w->next_id = 1;
    w->max_pending = orig->max_pending ? (orig->max_pending + (size_t)cfg->n_threads - 1) / (size_t)cfg->n_threads : 0;
    int rcode = uv_loop_init(&w->loop);
    if (rcode == 0 && (rcode = uv_mutex_init(&w->stats_mu)) != 0) uv_loop_close(&w->loop);
    if (rcode == 0 && (rcode = gw_box_init(&w->box, &w->loop, gw_worker_on_box, w)) != 0) {
      uv_mutex_destroy(&w->stats_mu);
      uv_loop_close(&w->loop);
    }
    if (rcode) {
      kl_err_set(e, KL_EIO, "worker %d: %s", i, uv_strerror(rcode));
      break;
    }
    uv_idle_init(&w->loop, &w->fanout);
    w->fanout.data = w;
    w->loop_init = true;
    p->n = i + 1;
    if (gw_serve_start(&w->loop, cfg, w, conf, rc.max_requests, i ? ports : NULL, &w->gw, e)) {
      kl_err_wrap(e, "worker %d", i);
      break;
    }
    if (i == 0) gw_serve_ports(w->gw, ports); /* port 0 resolved: the others bind the same */
    snprintf(p->ids[i], sizeof p->ids[i], "%.120s/w%d", orig->name, i);
  }
  if (p->n == cfg->n_threads && p->w[p->n - 1].gw) return 0;
  for (int i = 0; i < p->n; i++) destroy_worker(&p->w[i]);
  p->n = 0;
  return e->code ? e->code : KL_EIO;
}

int gw_pool_start(gw_pool_t *p, void (*tick)(void *arg), void *arg, kl_err_t *e) {
  int rc;
  p->tick = tick;
  p->tick_arg = arg;
  if ((rc = gw_box_init(&p->box, p->loop, on_box, p))) return kl_err_set(e, KL_EIO, "pool: %s", uv_strerror(rc));
  uv_timer_init(p->loop, &p->clock);
  p->clock.data = p;
  uv_timer_init(p->loop, &p->deadline);
  p->deadline.data = p;
  p->handles = 3;
  p->started = true;
  for (int i = 0; i < p->n; i++) {
    p->w[i].thread_started = true; /* before the thread reads it */
    if ((rc = uv_thread_create(&p->w[i].thread, gw_worker_run, &p->w[i]))) {
      p->w[i].thread_started = false;
      return kl_err_set(e, KL_EIO, "worker %d: cannot start its thread: %s", i, uv_strerror(rc));
    }
  }
  uint64_t now = wall_ms();
  p->due = kl_tier_next_close(p->tier, now);
  uv_timer_start(&p->clock, on_clock, p->due - now > margin(p) ? p->due - now - margin(p) : 1, 0);
  return 0;
}

void gw_pool_stop(gw_pool_t *p, void (*cb)(void *arg), void *arg) {
  p->stop_cb = cb;
  p->stop_arg = arg;
  int running = 0;
  for (int i = 0; i < p->n; i++) {
    if (!p->w[i].thread_started) continue;
    running++;
    gw_msg_t *m = calloc(1, sizeof *m);
    if (m == NULL) abort(); /* a worker that never hears of the stop is never joined */
    m->kind = M_STOP;
    gw_box_put(&p->w[i].box, m);
  }
  p->stopped += p->n - running;
  if (running == 0) cb(arg);
}

static void on_handle_closed(uv_handle_t *h) {
  gw_pool_t *p = h->data;
  if (--p->handles == 0) free_pool(p);
}

void gw_pool_close(gw_pool_t *p) {
  p->tier = NULL;
  for (int i = 0; i < p->n; i++) {
    gw_worker_t *w = &p->w[i];
    if (!w->thread_started) continue;
    gw_msg_t *m = calloc(1, sizeof *m);
    if (m == NULL) abort();
    m->kind = M_EXIT;
    gw_box_put(&w->box, m);
    uv_thread_join(&w->thread);
    w->thread_started = false;
    uv_loop_close(&w->loop);
    w->loop_init = false;
    uv_mutex_destroy(&w->box.mu);
    uv_mutex_destroy(&w->stats_mu);
    gateway_free(w->gw);
    w->gw = NULL;
    kl_buf_free(&w->scratch);
  }
  for (int i = 0; i < p->n; i++) destroy_worker(&p->w[i]); /* those whose thread never started */
  p->n = 0;
  for (gw_msg_t *m = p->started ? gw_box_take(&p->box) : NULL, *next; m; m = next) {
    next = m->next;
    free(m->parts);
    free(m);
  }
  if (!p->started) {
    free_pool(p);
    return;
  }
  uv_close((uv_handle_t *)&p->clock, on_handle_closed);
  uv_close((uv_handle_t *)&p->deadline, on_handle_closed);
  uv_close((uv_handle_t *)&p->box.async, on_handle_closed);
  uv_mutex_destroy(&p->box.mu);
}

void gw_pool_reload(gw_pool_t *p) {
  for (int i = 0; i < p->n; i++) {
    gw_msg_t *m = calloc(1, sizeof *m);
    if (m == NULL) continue;
    m->kind = M_RELOAD;
    gw_box_put(&p->w[i].box, m);
  }
}

static void add_net(kl_net_stats_t *a, const kl_net_stats_t *b) {
  a->accepted += b->accepted;
  a->rejected += b->rejected;
  a->open += b->open;
  a->requests += b->requests;
  for (int i = 0; i < 6; i++) a->responses[i] += b->responses[i];
  a->bad_input += b->bad_input;
  a->tls_refused += b->tls_refused;
  a->ip_refused += b->ip_refused;
  a->rate_limited += b->rate_limited;
}

void gw_pool_stats(gw_pool_t *p, int worker, gw_stats_t *out) {
  memset(out, 0, sizeof *out);
  for (int i = 0; i < p->n; i++) {
    if (worker >= 0 && i != worker) continue;
    gw_worker_t *w = &p->w[i];
    uv_mutex_lock(&w->stats_mu);
    out->requests_ok += w->stats.requests_ok;
    out->pdus_ok[0] += w->stats.pdus_ok[0];
    out->pdus_ok[1] += w->stats.pdus_ok[1];
    out->future += w->stats.future;
    for (int j = 0; j < GW_N_REFUSED; j++) out->refused[j] += w->stats.refused[j];
    out->rounds_full += w->stats.rounds_full;
    for (int t = 0; t < 2; t++) {
      for (int j = 0; j < GW_DUR_BUCKETS; j++) out->duration[t][j] += w->stats.duration[t][j];
      out->duration_sum[t] += w->stats.duration_sum[t];
    }
    add_net(&out->http, &w->stats.http);
    add_net(&out->https, &w->stats.https);
    add_net(&out->tcp, &w->stats.tcp);
    uv_mutex_unlock(&w->stats_mu);
    out->roots_late += (double)p->late_by[i]; /* the main loop's own count */
  }
}

int gw_pool_size(const gw_pool_t *p) { return p->n; }

void gw_pool_ports(const gw_pool_t *p, int ports[3]) {
  ports[0] = ports[1] = ports[2] = 0;
  if (p->n && p->w[0].gw) gw_serve_ports(p->w[0].gw, ports);
}
