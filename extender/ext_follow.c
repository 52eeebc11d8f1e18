/* Following one of several cores ([replication] upstream, upstream1..upstream8) into the
 * replica, and noticing when the followed one fails.
 *
 * One follower (keyless/follow.h) replicates from one core at a time; the replica's continuity
 * and every batch's signed root are checked there exactly as with a single core. Next to it, a
 * probe link to every configured core subscribes for a second far in the future: a core holds
 * such a request and answers it, about once a second (its replication heartbeat), with an empty
 * batch carrying its committed_last. So for every core we know whether it is up (a frame within
 * [replication] silence_timeout) and how far it has committed.
 *
 * Every 250 ms the followed core is dropped when
 *   - its link went down (reason "down"), or never came up within silence_timeout,
 *   - nothing arrived on it for silence_timeout (reason "silent": a stalled or cut link; the
 *     connection is closed, never left to TCP's retransmission backoff),
 *   - another core that is up has committed more than max(2 s, silence_timeout) beyond it
 *     (reason "behind": a core cut off from its quorum);
 * it is then avoided for a backoff (1 s doubling to 16 s, reset once it delivers a batch; a core
 * dropped as down is no longer avoided once its probe hears from it again) and
 * the next is chosen: the up core (by its probe) with the highest committed second, else the
 * next one in the configured order that is not being avoided. The new follower subscribes after
 * the replica's last second, so no second is lost or applied twice whatever the switch.
 *
 * A refused batch (divergence, an untrusted record) stops all following for good, as before:
 * the owner's on_error, and nothing is followed until the daemon restarts. A probe that hears
 * nothing for silence_timeout (connected or not) is dropped (kl_frame_client_reset) and dialled
 * again, its backoff growing to 5 s until the core talks again.
 *
 * Loop thread only. ext_follow_close closes the links and the timer; free the memory with
 * ext_follow_free after the loop has run their close callbacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "extender.h"
#include "keyless/follow.h"
#include "keyless/frameclient.h"
#include "keyless/log.h"

#define TICK_MS 250
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 16000
#define PROBE_AFTER (UINT64_MAX / 2) /* "after" of a probe's Subscribe: a second no core reaches */

static const char *const reason_name[3] = {"down", "silent", "behind"};

typedef struct ext_up {
  ext_follow_t *fo;
  const char *addr;
  kl_frame_client_t *probe; /* NULL while being re-dialled */
  bool probe_up;
  uint64_t probe_since_ms, probe_heard_ms; /* connected at; last frame (loop time) */
  uint64_t probe_checked_ms;               /* dialled or reset at */
  bool have_last;
  uint64_t committed_last;                 /* from its latest empty or full batch */
  uint64_t avoid_until_ms, backoff_ms;
  bool avoid_down;                         /* avoided because its link was down: a probe back up ends it */
} ext_up_t;

struct ext_follow {
  uv_loop_t *loop;
  const ext_config_t *cfg;
  const kl_repl_trust_t *trust;
  kl_tls_ctx_t *tls;
  ext_follow_cbs_t cbs;
  void *arg;
  kl_cal_t *cal;            /* NULL until attached */
  ext_up_t up[EXT_MAX_UPSTREAMS];
  size_t n;
  kl_follow_t *f;           /* the follower, on up[cur] */
  int cur, last_cur;        /* -1: none */
  uint64_t f_started_ms, f_drops;
  bool failed, closing;
  uv_timer_t timer;
  bool timer_on;
  kl_metric_t *switches[3];
  /* in step (ext_follow_sync) */
  char diverged_why[400];   /* set with failed */
  bool unsynced;            /* the state last logged */
  char unsynced_why[400];
  char lag_why[400];        /* scratch */
  int64_t lag;              /* seconds, as last computed; -1 unknown */
};

/* ---- probes ---- */

static void probe_subscribe(ext_up_t *u) {
  kl_buf_t b = KL_BUF_INIT;
  if (u->probe != NULL && kl_repl_encode_subscribe(&b, PROBE_AFTER, 0, NULL) == 0)
    kl_frame_client_send(u->probe, b.p + KL_FRAME_HDR, b.len - KL_FRAME_HDR, NULL);
  kl_buf_free(&b);
}

static void probe_state(kl_frame_client_t *c, bool up, void *arg) {
  ext_up_t *u = arg;
  (void)c;
  u->probe_up = up;
  if (!up) return;
  u->probe_since_ms = uv_now(u->fo->loop);
  probe_subscribe(u);
}

static void probe_frame(kl_frame_client_t *c, const uint8_t *p, size_t len, void *arg) {
  ext_up_t *u = arg;
  kl_repl_result_t res;
  kl_err_t e = {0};
  (void)c;
  if (kl_repl_peek(p, len, &res, &e) == 0 && res.is_entries) {
    u->probe_heard_ms = uv_now(u->fo->loop);
    if (u->avoid_down) u->avoid_until_ms = 0; /* it answers again: no need to sit out a long backoff */
    u->avoid_down = false;
    u->have_last = true;
    u->committed_last = res.committed_last;
  } else {
    char m[300];
    kl_log(KL_LOG_DEBUG, "upstream_probe", "upstream=%s error=%s", u->addr, kl_log_q(m, sizeof m, e.msg));
  }
  probe_subscribe(u);
}

static void probe_dial(ext_up_t *u) {
  static const kl_frame_client_cbs_t cbs = {probe_frame, probe_state};
  kl_err_t e;
  u->probe_up = false;
  u->probe_checked_ms = uv_now(u->fo->loop);
  if (kl_frame_client_create(u->fo->loop, "replication-probe", KL_REPL_MAX_FRAME, &cbs, u, &u->probe, &e)) {
    u->probe = NULL; /* out of memory: the next tick tries again */
    return;
  }
  if (u->fo->tls) kl_frame_client_set_tls(u->probe, u->fo->tls, KL_ROLE_CORE, NULL);
  if (kl_frame_client_connect(u->probe, u->addr, &e)) { /* checked at start: only a name that stopped resolving */
    char m[300];
    kl_log(KL_LOG_WARN, "upstream_probe", "upstream=%s error=%s", u->addr, kl_log_q(m, sizeof m, e.msg));
  }
}

static void probe_close(ext_up_t *u) {
  if (u->probe == NULL) return;
  kl_frame_client_close(u->probe, NULL, NULL);
  u->probe = NULL;
  u->probe_up = false;
}

/* Heard from within silence_timeout (counting from the connection when nothing came yet). */
static bool fresh(const ext_follow_t *fo, uint64_t now, uint64_t since, uint64_t heard) {
  uint64_t t = heard > since ? heard : since;
  return now - t <= fo->cfg->silence_timeout_ms;
}

/* Up: a heartbeat on this connection within silence_timeout (a connection alone is not enough:
 * the kernel accepts connections for a stopped process). */
static bool probe_ok(const ext_follow_t *fo, const ext_up_t *u, uint64_t now) {
  return u->probe_up && u->probe_heard_ms > 0 && u->probe_heard_ms >= u->probe_since_ms &&
         now - u->probe_heard_ms <= fo->cfg->silence_timeout_ms;
}

/* ---- the follower ---- */

static bool follower_ok(const ext_follow_t *fo, uint64_t now) {
  return fo->f != NULL && kl_follow_connected(fo->f) &&
         fresh(fo, now, fo->f_started_ms, kl_follow_heard_ms(fo->f));
}

static void on_progress(kl_follow_t *f, uint64_t last, void *arg) {
  ext_follow_t *fo = arg;
  (void)f;
  if (fo->cur >= 0) fo->up[fo->cur].backoff_ms = BACKOFF_MIN_MS;
  if (fo->cbs.on_progress) fo->cbs.on_progress(fo->arg, last);
}

static void on_error(kl_follow_t *f, const kl_err_t *e, void *arg) {
  ext_follow_t *fo = arg;
  fo->failed = true; /* for good: never fetch the same refused batch from another core */
  const char *msg = strncmp(e->msg, "replication: ", 13) == 0 ? e->msg + 13 : e->msg;
  snprintf(fo->diverged_why, sizeof fo->diverged_why, "replication stopped: %.300s (from %.60s)", msg,
           fo->cur >= 0 ? fo->up[fo->cur].addr : "?");
  if (fo->cbs.on_error) fo->cbs.on_error(fo->arg, fo->diverged_why, kl_follow_refused(f) > 0);
}

static void follow(ext_follow_t *fo, int k) {
  static const kl_follow_cbs_t cbs = {on_progress, on_error};
  kl_err_t e;
  char m[300];
  if (kl_follow_start_trusted(fo->loop, fo->cal, fo->up[k].addr, fo->trust, fo->tls, &cbs, fo, &fo->f, &e)) {
    fo->f = NULL;
    fo->up[k].avoid_until_ms = uv_now(fo->loop) + fo->up[k].backoff_ms;
    kl_log(KL_LOG_ERROR, "follow_start", "upstream=%s error=%s", fo->up[k].addr, kl_log_q(m, sizeof m, e.msg));
    return;
  }
  fo->cur = fo->last_cur = k;
  fo->f_started_ms = uv_now(fo->loop);
  fo->f_drops = 0;
  kl_log(KL_LOG_INFO, "upstream_follow", "upstream=%s", fo->up[k].addr);
}

/* Why the followed core should be dropped now (an index of reason_name), or -1. */
static int verdict(ext_follow_t *fo, uint64_t now, uint64_t *best_out) {
  ext_up_t *u = &fo->up[fo->cur];
  if (kl_follow_drops(fo->f) > fo->f_drops) return 0;
  if (!kl_follow_connected(fo->f)) return now - fo->f_started_ms > fo->cfg->silence_timeout_ms ? 0 : -1;
  if (!follower_ok(fo, now)) return 1;
  uint64_t mine = 0, best = 0, margin = fo->cfg->silence_timeout_ms / 1000;
  if (margin < 2) margin = 2;
  if (!kl_follow_upstream_last(fo->f, &mine)) mine = u->have_last ? u->committed_last : 0;
  for (size_t k = 0; k < fo->n; k++)
    if ((int)k != fo->cur && probe_ok(fo, &fo->up[k], now) && fo->up[k].have_last && fo->up[k].committed_last > best)
      best = fo->up[k].committed_last;
  *best_out = best;
  return best > mine + margin ? 2 : -1;
}

static void drop(ext_follow_t *fo, int why, uint64_t now, uint64_t best) {
  ext_up_t *u = &fo->up[fo->cur];
  uint64_t mine = 0;
  kl_follow_upstream_last(fo->f, &mine);
  kl_log(KL_LOG_WARN, "upstream_switch", "upstream=%s reason=%s committed=%llu others=%llu avoid_ms=%llu", u->addr,
         reason_name[why], (unsigned long long)mine, (unsigned long long)best, (unsigned long long)u->backoff_ms);
  kl_metric_inc(fo->switches[why]);
  u->avoid_until_ms = now + u->backoff_ms;
  u->avoid_down = why == 0;
  u->backoff_ms = u->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : u->backoff_ms * 2;
  kl_follow_stop(fo->f, NULL, NULL); /* a frame still in flight on it is ignored */
  fo->f = NULL;
  fo->cur = -1;
}

/* The up core with the highest committed second; else the next in order after the last one. */
static int choose(ext_follow_t *fo, uint64_t now) {
  int pick = -1;
  for (size_t i = 1; i <= fo->n; i++) {
    size_t k = ((size_t)(fo->last_cur < 0 ? -1 : fo->last_cur) + i) % fo->n;
    ext_up_t *u = &fo->up[k];
    if (now < u->avoid_until_ms || !probe_ok(fo, u, now) || !u->have_last) continue;
    if (pick < 0 || u->committed_last > fo->up[pick].committed_last) pick = (int)k;
  }
  if (pick >= 0) return pick;
  for (size_t i = 1; i <= fo->n; i++) {
    size_t k = ((size_t)(fo->last_cur < 0 ? -1 : fo->last_cur) + i) % fo->n;
    if (now >= fo->up[k].avoid_until_ms) return (int)k;
  }
  return -1;
}

static void on_tick(uv_timer_t *t) {
  ext_follow_t *fo = t->data;
  uint64_t now = uv_now(fo->loop), best = 0;
  for (size_t k = 0; k < fo->n; k++) {
    ext_up_t *u = &fo->up[k];
    uint64_t quiet_since = u->probe_heard_ms > u->probe_since_ms ? u->probe_heard_ms : u->probe_since_ms;
    if (u->probe_checked_ms > quiet_since) quiet_since = u->probe_checked_ms;
    if (u->probe == NULL) {
      probe_dial(u);
    } else if (now - quiet_since > fo->cfg->silence_timeout_ms) { /* silent, or not connected yet: drop, redial */
      kl_log(u->probe_up ? KL_LOG_INFO : KL_LOG_DEBUG, "upstream_probe", "upstream=%s silent_ms=%llu redial=1",
             u->addr, (unsigned long long)(now - quiet_since));
      u->probe_checked_ms = now;
      kl_frame_client_reset(u->probe, "silent"); /* its backoff grows until the core talks again */
      u->probe_up = false;
    }
  }
  if (fo->failed || fo->cal == NULL) return;
  int why;
  if (fo->f != NULL && (why = verdict(fo, now, &best)) >= 0) drop(fo, why, now, best);
  if (fo->f == NULL) {
    int k = choose(fo, now);
    if (k >= 0) follow(fo, k);
  }
}

/* ---- metrics ---- */

static double m_up(void *arg) {
  ext_up_t *u = arg;
  ext_follow_t *fo = u->fo;
  uint64_t now = uv_now(fo->loop);
  bool followed = fo->cur >= 0 && &fo->up[fo->cur] == u;
  uint64_t heard = followed ? kl_follow_heard_ms(fo->f) : 0;
  return probe_ok(fo, u, now) || (followed && follower_ok(fo, now) && heard > 0 && heard >= fo->f_started_ms) ? 1 : 0;
}

static double m_following(void *arg) {
  ext_up_t *u = arg;
  return u->fo->cur >= 0 && &u->fo->up[u->fo->cur] == u ? 1 : 0;
}

static int metrics(ext_follow_t *fo, kl_metrics_t *m) {
  bool ok = true;
  for (size_t k = 0; k < fo->n; k++) {
    const char *labels[] = {"upstream", fo->up[k].addr, NULL};
    ok &= kl_metrics_gauge_fn(m, "keyless_extender_upstream_up",
                              "1 when this core's replication link answered within [replication] silence_timeout.",
                              labels, m_up, &fo->up[k]) != NULL;
    ok &= kl_metrics_gauge_fn(m, "keyless_extender_upstream_following",
                              "1 for the core the replica follows now (at most one).", labels, m_following,
                              &fo->up[k]) != NULL;
  }
  for (int r = 0; r < 3; r++)
    ok &= (fo->switches[r] = kl_metrics_counter(m, "keyless_extender_upstream_switches_total",
                                                "Times the followed core was dropped for another, by reason (down, "
                                                "silent, behind).",
                                                (const char *[]){"reason", reason_name[r], NULL})) != NULL;
  return ok ? 0 : -1;
}

/* ---- lifecycle and queries ---- */

int ext_follow_start(uv_loop_t *loop, const ext_config_t *cfg, const kl_repl_trust_t *trust, kl_tls_ctx_t *tls,
                     kl_metrics_t *m, const ext_follow_cbs_t *cbs, void *arg, ext_follow_t **out, kl_err_t *e) {
  ext_follow_t *fo = calloc(1, sizeof *fo);
  if (fo == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  *out = fo;
  *fo = (ext_follow_t){.loop = loop, .cfg = cfg, .trust = trust, .tls = tls, .arg = arg, .cur = -1, .last_cur = -1,
                       .lag = -1};
  if (cbs) fo->cbs = *cbs;
  fo->n = cfg->n_upstreams;
  for (size_t k = 0; k < fo->n; k++) fo->up[k] = (ext_up_t){.fo = fo, .addr = cfg->upstreams[k], .backoff_ms = BACKOFF_MIN_MS};
  if (metrics(fo, m)) return kl_err_set(e, KL_ENOMEM, "metrics: registration failed");
  for (size_t k = 0; k < fo->n; k++) probe_dial(&fo->up[k]);
  uv_timer_init(loop, &fo->timer);
  fo->timer.data = fo;
  fo->timer_on = true;
  uv_timer_start(&fo->timer, on_tick, TICK_MS, TICK_MS);
  return 0;
}

void ext_follow_attach(ext_follow_t *fo, kl_cal_t *cal) {
  if (fo == NULL || fo->cal != NULL || fo->closing) return;
  fo->cal = cal;
  on_tick(&fo->timer); /* follow now, not a tick later */
}

bool ext_follow_upstream_last(const ext_follow_t *fo, uint64_t *last) {
  if (fo == NULL) return false;
  uint64_t now = uv_now(fo->loop), best = 0;
  bool have = fo->f != NULL && kl_follow_upstream_last(fo->f, &best);
  for (size_t k = 0; k < fo->n; k++)
    if (probe_ok(fo, &fo->up[k], now) && fo->up[k].have_last && (!have || fo->up[k].committed_last > best)) {
      best = fo->up[k].committed_last;
      have = true;
    }
  if (have) *last = best;
  return have;
}

const char *ext_follow_current(const ext_follow_t *fo) {
  return fo != NULL && fo->cur >= 0 ? fo->up[fo->cur].addr : NULL;
}

size_t ext_follow_n_up(const ext_follow_t *fo) {
  size_t n = 0;
  for (size_t k = 0; fo != NULL && k < fo->n; k++) n += m_up((void *)&fo->up[k]) > 0;
  return n;
}

/* ---- in step ---- */

const char *ext_follow_sync(ext_follow_t *fo, kl_cal_t *cal) {
  if (fo == NULL) return NULL;
  const ext_config_t *c = fo->cfg;
  const char *why = NULL, *cur = ext_follow_current(fo);
  char *buf = fo->lag_why;
  const size_t bufsz = sizeof fo->lag_why;
  kl_cal_info_t ci;
  fo->lag = -1;
  if (cal != NULL && kl_cal_info(cal, &ci, NULL) == 0) {
    uint64_t last = ci.empty ? (ci.genesis ? ci.genesis - 1 : 0) : ci.last, now = (uint64_t)time(NULL), core = 0;
    bool have_core = ext_follow_upstream_last(fo, &core);
    uint64_t lag_wall = now > last ? now - last : 0, lag_core = have_core && core > last ? core - last : 0;
    uint64_t lag = lag_wall > lag_core ? lag_wall : lag_core;
    fo->lag = (int64_t)lag;
    if (c->max_lag_ms > 0 && lag * 1000 > c->max_lag_ms) {
      if (lag_core * 1000 > c->max_lag_ms)
        snprintf(buf, bufsz, "the replica's last second %llu is %llu s behind the cores' %llu (max_lag %llu ms)",
                 (unsigned long long)last, (unsigned long long)lag_core, (unsigned long long)core,
                 (unsigned long long)c->max_lag_ms);
      else
        snprintf(buf, bufsz,
                 "the replica's last second %llu is %llu s behind the clock (max_lag %llu ms; %zu of %zu cores "
                 "answer, %s %s: are they reachable and committing?)",
                 (unsigned long long)last, (unsigned long long)lag_wall, (unsigned long long)c->max_lag_ms,
                 ext_follow_n_up(fo), fo->n, fo->f && kl_follow_connected(fo->f) ? "following" : "trying",
                 cur ? cur : "none");
      why = buf;
    }
  }
  if (fo->failed) why = fo->diverged_why; /* it outranks lag */
  bool unsynced = why != NULL;
  char q[500];
  if (unsynced != fo->unsynced) {
    if (unsynced)
      kl_log(fo->failed ? KL_LOG_ERROR : KL_LOG_WARN, "replication_state", "serving=0 lag=%lld reason=%s",
             (long long)fo->lag, kl_log_q(q, sizeof q, why));
    else
      kl_log(KL_LOG_WARN, "replication_state", "serving=1 lag=%lld reason=caught_up", (long long)fo->lag);
  } else if (unsynced && fo->failed && strcmp(why, fo->unsynced_why) != 0) { /* lag turned into divergence */
    kl_log(KL_LOG_ERROR, "replication_state", "serving=0 lag=%lld reason=%s", (long long)fo->lag,
           kl_log_q(q, sizeof q, why));
  }
  fo->unsynced = unsynced;
  if (unsynced && why != fo->unsynced_why) snprintf(fo->unsynced_why, sizeof fo->unsynced_why, "%s", why);
  return unsynced ? fo->unsynced_why : NULL;
}

int64_t ext_follow_lag(const ext_follow_t *fo) { return fo ? fo->lag : -1; }
bool ext_follow_diverged(const ext_follow_t *fo) { return fo != NULL && fo->failed; }

void ext_follow_close(ext_follow_t *fo) {
  if (fo == NULL || fo->closing) return;
  fo->closing = true;
  kl_follow_stop(fo->f, NULL, NULL);
  fo->f = NULL;
  fo->cur = -1;
  for (size_t k = 0; k < fo->n; k++) probe_close(&fo->up[k]);
  if (fo->timer_on) uv_close((uv_handle_t *)&fo->timer, NULL);
  fo->timer_on = false;
}

void ext_follow_trust_changed(ext_follow_t *fo) {
  if (fo != NULL && fo->f != NULL) kl_follow_set_trust(fo->f, fo->trust);
}

void ext_follow_free(ext_follow_t *fo) { free(fo); }
