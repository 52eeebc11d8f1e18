/* keyless-gateway: the structures shared by gw_pool.c (main loop) and gw_worker.c (workers),
 * for [gateway] threads > 1 (issue 12, goal 3).
 *
 * N worker threads, each a libuv loop with its own listeners on the shared ports (SO_REUSEPORT:
 * the kernel spreads connections), its own users, https context and service: it HMAC-checks,
 * decodes and collects its own requests into its own round (a kl_round_t, the subtree: one
 * metadata link per request, as in a one-loop gateway). The main loop keeps the one parent
 * link and the one round clock (the kl_tier), the admin port and the metrics.
 *
 * A round. The main clock ticks MARGIN ms before each scheduled close of the tier's round
 * (kl_tier_next_close: k * period - lead and each second's end - lead), once per close. Each
 * worker closes its subtree and answers the tick: its root and level (M_ROOT), or M_EMPTY. The
 * main loop submits each root to the tier's open round as one request (client id "NAME/wI"),
 * so the tier's round over the workers' roots is the small top tree and its root goes to the
 * parents once. The tier closes only when told (manual_close): once every worker has answered
 * the tick (kl_tier_close_now), or at the deadline, MARGIN after the scheduled close, so a
 * stuck worker cannot hold the round; a root after that joins the next round (later, never
 * wrong; counted in keyless_gateway_worker_roots_late_total). MARGIN is 10 ms or twice the
 * slowest recent hand-off (tick to root), at most period / 4.
 *
 * A worker's round that holds max_requests does not refuse the next request: it closes at once
 * (from the loop, not inside the submit, as the tier's does) and its root goes to the main loop
 * untied to a tick (tick 0), joining the tier's open round; the request opens the worker's next
 * round (keyless_tier_rounds_closed_full_total{tier="gateway_worker"}). Only max_pending
 * (per worker, the memory bound) refuses with 0x0106.
 *
 * The tier's answer for a worker's root (the top chain, then the parents' parts) goes back to
 * that worker, which checks it against its subtree (kl_round_accept) and answers each of its
 * requests with its own chain followed by those parts.
 *
 * Levels. The tier's round holds at most 16N roots, so the top tree adds 1 + ceil(log2 16N)
 * levels (metadata, tree); a worker's round may reach at most the tier's highest request level,
 * and the gateway announces the worker round's own highest request level below that, so
 * max_level holds for the whole chain.
 *
 * Hand-offs: one mailbox per worker and one for the main loop (a mutex-protected list and a
 * uv_async), a few messages per round and worker; nothing is locked per request: a request
 * lives on its worker only. Limits per worker: max_requests, per_client, max_connections and
 * max_connections_per_address; max_pending is split evenly.
 *
 * Ownership: the pool owns the workers; a worker owns its loop, its gateway (servers, service,
 * users), its open round and its rounds in flight; a message belongs to whoever took it from a
 * mailbox. A worker's loop and gateway are made on the main thread before its thread starts,
 * and freed after it is joined. */
#ifndef KL_GW_THREADS_H
#define KL_GW_THREADS_H

#include "gateway.h"
#include "keyless/round.h"

#define GW_MAX_THREADS 64
#define GW_TOP_ROOTS 16 /* per worker: the tier's round holds up to 16N roots (late ones, retries) */
#define GW_MARGIN_MS 10 /* the tick comes this much before the tier's close, the deadline as much after */

enum { M_CLOSE, M_ANSWER, M_RELOAD, M_STOP, M_EXIT, M_ROOT, M_EMPTY, M_STOPPED };

typedef struct gw_msg {
  struct gw_msg *next;
  int kind, worker;
  uint64_t wround; /* the worker's round */
  uint64_t tick;   /* M_CLOSE, and the M_ROOT or M_EMPTY answering it; 0: a root closed full */
  kl_imprint_t root;
  unsigned level;
  uint64_t status, second, lead_ms;
  char error[160];
  uint8_t *parts; /* M_ANSWER, status 0: the top chain and the parents' parts, whole TLVs */
  size_t len;
} gw_msg_t;

typedef struct gw_box {
  uv_mutex_t mu;
  gw_msg_t *head, **tail;
  uv_async_t async;
} gw_box_t;

int gw_box_init(gw_box_t *b, uv_loop_t *loop, uv_async_cb cb, void *data);
void gw_box_put(gw_box_t *b, gw_msg_t *m);
gw_msg_t *gw_box_take(gw_box_t *b); /* the whole list, oldest first */

typedef struct gw_flight {
  struct gw_flight *next;
  uint64_t id;
  kl_round_t *round;
  void **ctx;
  size_t n, next_slot;
  gw_msg_t *ans; /* the joined answer, once accepted */
} gw_flight_t;

struct gw_worker {
  gw_pool_t *pool;
  int index;
  uv_loop_t loop;
  bool loop_init, thread_started;
  uv_thread_t thread;
  gateway_t *gw;
  gw_box_t box;
  kl_round_config_t rc;
  kl_round_t *open;
  void **open_ctx;
  size_t open_cap, held, max_pending;
  gw_flight_t *full;      /* closed full, to close and send up from the loop (on_fanout) */
  gw_flight_t *flights;   /* sent up, waiting for the joined answer */
  gw_flight_t *answering; /* answered, being handed out (fanout) */
  uv_idle_t fanout;
  uint64_t next_id;
  uint64_t closed_full; /* rounds closed early, full (copied to stats) */
  bool exiting;
  kl_buf_t scratch;
  uv_mutex_t stats_mu;
  gw_stats_t stats; /* under stats_mu */
};

struct gw_pool {
  uv_loop_t *loop;
  const gw_config_t *cfg;
  kl_tier_t *tier;
  int n;
  gw_worker_t *w;
  gw_box_t box;
  uv_timer_t clock, deadline;
  bool started;
  int handles;           /* main-loop handles still open (box, clock, deadline) */
  uint64_t period_ms, seq;
  uint64_t due;          /* the tier close (wall ms) the next tick is for */
  uint64_t tick_no;      /* the last tick's number (from 1) */
  bool pending;          /* the last tick's tier round is still open */
  int waiting;           /* workers that have not answered the last tick */
  uint64_t told_at;      /* the last tick (loop ms) */
  uint64_t slowest_ms, late;        /* hand-offs: the slowest lately; roots after their round */
  uint64_t late_by[GW_MAX_THREADS]; /* ... by worker */
  char name[128];
  char ids[GW_MAX_THREADS][144]; /* the client id of each worker's root */
  int stopped;           /* workers whose servers have closed */
  void (*tick)(void *); /* at every clock tick (the daemon copies the workers' counters) */
  void *tick_arg;
  void (*stop_cb)(void *);
  void *stop_arg;
};

/* gw_worker.c: the worker's thread body and its mailbox. */
void gw_worker_run(void *arg);
void gw_worker_on_box(uv_async_t *h);
/* Fails and frees what the worker holds (exit, or a pool that never started). */
void gw_worker_drop(gw_worker_t *w, const char *why);

#endif
