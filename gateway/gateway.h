/* keyless-gateway: internal interfaces of the daemon.
 *
 *   gw_config.c   the configuration keys and their checks (deploy/gateway.conf documents them)
 *   gw_service.c  one request PDU: parse, authenticate, submit to the tier, build the answer
 *   gw_fit.c      how many requests one response PDU surely holds (the announced max_requests)
 *   gw_json.c     the JSON API (POST /v1/sign) for systems that cannot speak KSI PDUs
 *   gw_daemon.c   the servers, the tier, metrics and signals on a libuv loop
 *   gw_pool.c     [gateway] threads > 1, the main loop's side: the round clock, the workers'
 *                 roots joined in the tier's round, answers sent back, metrics summed
 *   gw_worker.c   [gateway] threads > 1, a worker thread: its loop, its subtree round
 *   main.c        arguments and wiring
 *
 * Ownership: the daemon owns the tier, the users and the servers; a gw_pdu_t (one request PDU
 * in progress) owns copies of everything it needs until it is answered (the header fields, the
 * key, the request ids; not the request's bytes), so a users reload or a closed connection never
 * leaves it with a dangling pointer.
 */
#ifndef KL_GATEWAY_H
#define KL_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keyless/config.h"
#include "keyless/tls.h"
#include "keyless/err.h"
#include "keyless/metrics.h"
#include "keyless/net.h"
#include "keyless/pdu.h"
#include "keyless/tier.h"
#include "keyless/users.h"

/* ---- configuration ---- */

typedef struct gw_config {
  kl_net_settings_t net; /* [server], [limits] */
  kl_tier_settings_t tier; /* [round], [parents] */
  char *users_file;      /* [auth] */
  kl_tls_settings_t tls; /* [tls]: this gateway's certificate towards its parents */
  char *json_api;             /* [clients]: where POST /v1/sign is served: off, https or any (gw_json.c) */
  int64_t announce_max_level; /* [clients]: the max level a configuration response announces */
  bool announce_parents;      /* [clients]: whether it lists the parents' addresses */
  char *threads;              /* [gateway] threads: a number or auto */
  int n_threads;              /* ... resolved: 1 = one loop, no workers */
  char *path;
} gw_config_t;

int gw_config_load(const char *path, gw_config_t *cfg, kl_err_t *e);
void gw_config_free(gw_config_t *cfg);

/* ---- the service ---- */

typedef struct gateway gateway_t;
typedef struct gw_pdu gw_pdu_t;

enum { GW_HTTP = 0, GW_TCP = 1 };

/* Why a PDU was answered as it was, for the log line and metrics. */
typedef struct gw_outcome {
  uint64_t status;     /* 0, or the PDU-level error status sent */
  size_t n_requests;   /* aggregation requests in the PDU */
  bool config;         /* the configuration was sent */
  bool not_a_pdu;      /* not a KSI PDU at all: a stream should be closed */
  bool wrong_service;  /* not a well-formed aggregation request PDU: HTTP answers 400 */
  char login[64];
  char message[256];   /* why the PDU or its first refused request was refused */
} gw_outcome_t;

/* The daemon's side of a PDU: where the response goes. */
typedef void (*gw_respond_fn)(gateway_t *gw, int transport, void *req, uint8_t *resp, size_t len,
                              const gw_outcome_t *out, uint64_t t0);
/* The daemon's accounting of an answered PDU: duration, PDU status counters, the log line. */
typedef void (*gw_account_fn)(gateway_t *gw, int transport, const gw_outcome_t *out, uint64_t t0);

typedef struct gw_service {
  kl_tier_t *tier;
  const kl_users_t *users;
  const char *machine_id;
  uint64_t max_requests;  /* aggregation requests per PDU, as configured */
  kl_pdu_config_t conf;   /* what a config request gets (max_requests: see gw_fit) */
  size_t answer_raw_max;  /* the largest answer (signature parts) of one request seen so far */
  size_t answer_bound;    /* what an answer's shared part (parents' chains, calendar chain, record)
                           * can grow to; 0: none yet */
  size_t own_fixed;       /* this gateway's chain without its round-sized links (metadata, header) */
  size_t chain_slack;     /* how much more this gateway's own chain can take than a seen one */
  size_t overhead;        /* a response PDU's bytes besides its aggr_resps (header, config, HMAC) */
  uint64_t seq;           /* metadata sequence numbers */
  struct gw_worker *worker; /* threads > 1: requests go to this worker's round, not to tier */
  kl_metrics_t *m;
  kl_metric_t *m_ok;      /* requests answered with a chain (the hot series) */
  kl_metric_t *m_future;  /* answers refused: their second had not begun on this gateway's clock */
} gw_service_t;

/* Handles one request PDU: answers at once (errors, config only) or once the round of its
 * requests is answered. respond is called exactly once, with a malloc'd PDU (the callee takes
 * it) or NULL when not even an error PDU could be built. */
void gw_handle(gw_service_t *s, gateway_t *gw, int transport, void *req, const uint8_t *p, size_t n,
               gw_respond_fn respond);
/* Requests per PDU whose answers surely fit one response PDU (65,535 bytes of payload): the
 * configured max_requests, or fewer as the answers seen so far say. What a configuration
 * response announces and what gw_handle enforces before a request enters a round. */
uint64_t gw_fit(const gw_service_t *s);
/* Sets chain_slack and overhead from the configuration (gw_fit.c). */
void gw_fit_init(gw_service_t *s, int algorithm, size_t round_max_requests);
/* An answer larger than any before (head then tail, as a tier answer gives it: tail may be
 * NULL): its bound, with the calendar chain at its longest. */
void gw_fit_observe(gw_service_t *s, const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len);
/* The tier's done callback: ctx is a request slot of a gw_pdu_t. */
void gw_on_answer(void *ctx, const kl_tier_answer_t *a, void *arg);
/* POST /v1/sign (gw_json.c): answers req with JSON; the PDU it makes is accounted with account. */
void gw_json_sign(gateway_t *gw, gw_service_t *s, kl_http_req_t *req, gw_account_fn account);

/* ---- threads > 1 (gw_pool.c, gw_worker.c) ---- */

typedef struct gw_pool gw_pool_t;
typedef struct gw_worker gw_worker_t;

/* What a worker's loop counted, copied at each of its round closes for the main loop's metrics. */
#define GW_N_REFUSED 10 /* the request statuses a worker reports: 0x0101..0x0107, 0x0200, 0x0300, 0x0301 */
#define GW_DUR_BUCKETS 17 /* keyless_gateway_pdu_duration_seconds: kl_metrics_latency_buckets and +Inf */
typedef struct gw_stats {
  double requests_ok, pdus_ok[2], future;
  double refused[GW_N_REFUSED];
  double rounds_full, roots_late; /* rounds closed full; roots after their tier round closed (gw_threads.h) */
  unsigned long long duration[2][GW_DUR_BUCKETS]; /* PDU durations by transport, per bucket */
  double duration_sum[2];
  kl_net_stats_t http, https, tcp;
} gw_stats_t;

/* Main loop. new: the pool (no workers yet) to give the tier as the done arg of
 * gw_pool_tier_done; workers: the N workers' loops and servers (made here, not running yet;
 * worker 0 binds the ports, the others the same ones); start: their threads and the clock. */
int gw_pool_new(uv_loop_t *loop, const gw_config_t *cfg, gw_pool_t **out, kl_err_t *e);
int gw_pool_workers(gw_pool_t *p, kl_tier_t *tier, const kl_tier_config_t *orig, const kl_pdu_config_t *conf,
                    kl_err_t *e);
int gw_pool_start(gw_pool_t *p, void (*tick)(void *arg), void *arg, kl_err_t *e);
/* A worker's round: the configured one (orig, before the tier's round was made the top tree's)
 * below the tier's highest request level. */
void gw_pool_round(kl_tier_t *tier, const kl_tier_config_t *orig, kl_round_config_t *rc);
void gw_pool_tier_done(void *ctx, const kl_tier_answer_t *a, void *arg);
/* Stop: each worker closes its servers (rounds in flight still answered); cb once all have. */
void gw_pool_stop(gw_pool_t *p, void (*cb)(void *arg), void *arg);
/* After the tier closed: the workers exit and are joined; the pool frees itself. */
void gw_pool_close(gw_pool_t *p);
void gw_pool_reload(gw_pool_t *p);
/* Sum over workers (per NULL) or one worker's stats. */
void gw_pool_stats(gw_pool_t *p, int worker, gw_stats_t *out);
int gw_pool_size(const gw_pool_t *p);
void gw_pool_ports(const gw_pool_t *p, int ports[3]);

/* Worker loop: a request joins this worker's open round (as kl_tier_submit). */
int gw_worker_submit(gw_worker_t *w, const kl_imprint_t *hash, unsigned level, const kl_round_identity_t *who,
                     void *ctx, uint64_t *status, kl_err_t *e);
/* The worker's servers have all closed (from gw_daemon.c on the worker's loop). */
void gw_worker_servers_closed(gw_worker_t *w);

/* A worker's serving side (gw_daemon.c): users, https context, servers on the given ports
 * (ports NULL: as configured) with SO_REUSEPORT, its service submitting to w; no tier, no admin. */
int gw_serve_start(uv_loop_t *loop, const gw_config_t *cfg, gw_worker_t *w, const kl_pdu_config_t *conf,
                   size_t round_max_requests, const int *ports, gateway_t **out, kl_err_t *e);
void gw_serve_ports(const gateway_t *gw, int ports[3]); /* http, https, tcp (0: off) */
void gw_serve_stats(const gateway_t *gw, gw_stats_t *out);
void gw_serve_reload(gateway_t *gw);

/* ---- the daemon ---- */

int gateway_start(uv_loop_t *loop, const gw_config_t *cfg, gateway_t **out, kl_err_t *e);
void gateway_stop(gateway_t *gw);
void gateway_free(gateway_t *gw);

#endif
