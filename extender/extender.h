/* keyless-extender: internal interfaces of the daemon.
 *
 *   ext_config.c   the configuration keys and their checks
 *   ext_service.c  one request PDU in, one response PDU out (calendar + users; no sockets)
 *   ext_pubfile.c  the publications file, re-read when it changes, and its history directory
 *   ext_wait.c     request PDUs held until the replica holds their second ([server] replica_wait)
 *   ext_pool.c     the worker threads that run ext_handle ([server] workers)
 *   ext_follow.c   following one of several cores into the replica; switching when it fails
 *   ext_daemon.c   the servers, handlers, metrics and signals on a libuv loop
 *   main.c         arguments and wiring
 */
#ifndef KL_EXTENDER_H
#define KL_EXTENDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "keyless/calendar.h"
#include "keyless/config.h"
#include "keyless/err.h"
#include "keyless/metrics.h"
#include "keyless/net.h"
#include "keyless/replica.h"
#include "keyless/tls.h"
#include "keyless/users.h"

/* ---- configuration (deploy/extender.conf documents every key) ---- */

#define EXT_MAX_UPSTREAMS 8

typedef struct ext_config {
  char *http_listen, *tcp_listen, *admin_listen;
  char *calendar_dir;
  char *users_file;
  char *publications_file;
  char *upstream;       /* [replication] upstream: a core node's replication port ("" = none) */
  char *upstream_list[EXT_MAX_UPSTREAMS]; /* [replication] upstream1..upstream8 */
  /* derived: every core named above, in order, without the empty ones; none = fed by another process */
  const char *upstreams[EXT_MAX_UPSTREAMS + 1];
  size_t n_upstreams;
  uint64_t silence_timeout_ms; /* a replication link quiet this long is down */
  int64_t genesis;      /* with upstream: the genesis of a calendar created here (0: none) */
  char *calendar_auth_cert; /* PEM file of the trusted calendar-auth certificates ("" = none) */
  bool insecure;        /* accept batches without an authentication record */
  uint64_t max_lag_ms;  /* stop serving when the replica lags more than this (0: never) */
  uint64_t replica_wait_ms; /* [server] replica_wait: hold a request for a second the replica lacks yet (0: off) */
  int64_t replica_wait_max; /* request PDUs held at once */
  int64_t workers;      /* [server] workers: threads answering requests (0: one per CPU) */
  /* derived: the certificates of calendar_auth_cert, DER */
  uint8_t **auth_ders;
  size_t *auth_lens;
  size_t n_auth;
  uint64_t max_pdu_size, max_header_size, idle_timeout_ms, write_watermark, shutdown_timeout_ms;
  int64_t max_connections, max_inflight, max_requests;
  int64_t max_connections_per_address, rate_per_address;
  char *https_listen, *https_cert, *https_key; /* https for clients ("" = off; cert/key: the [tls] ones) */
  kl_tls_settings_t tls; /* [tls]: this extender's certificate towards the core (with upstream) */
  char *path;
} ext_config_t;

/* Frees certificate arrays taken from a configuration (auth_ders, auth_lens, n_auth). */
void ext_config_free_certs(uint8_t **ders, size_t *lens, size_t n);
/* Loads and validates path into cfg (zeroed first); free with ext_config_free. */
int ext_config_load(const char *path, ext_config_t *cfg, kl_err_t *e);
void ext_config_free(ext_config_t *cfg);
void ext_config_limits(const ext_config_t *cfg, kl_net_limits_t *lim);

/* ---- the service: PDU in, PDU out ---- */

typedef struct ext_ctx {
  kl_cal_t *cal;            /* NULL: the calendar cannot be opened (status 0x201) */
  const char *unsynced;     /* non-NULL: the replica cannot be trusted now, why (status 0x200) */
  const kl_users_t *users;
  uint64_t max_requests;    /* extension requests in one PDU */
  uint64_t now;             /* UNIX seconds, for "in the future" */
  uint64_t wait_bound;      /* > 0: a PDU asking for a second in (last, last + wait_bound], not after now,
                             * is not answered but deferred (out->wait_second); 0: always answer */
} ext_ctx_t;

/* The seconds beyond the replica's last one that a PDU may wait for, given [server]
 * replica_wait: the whole seconds of the wait plus one (the replica gains about a second per
 * second, in batches). 0 when waiting is off. */
uint64_t ext_wait_bound(uint64_t replica_wait_ms);

typedef struct ext_outcome {
  uint64_t status;     /* 0, or the PDU-level error status sent */
  size_t n_requests;   /* extension requests answered (each with its own status) */
  bool config;         /* the configuration was sent */
  bool not_a_pdu;      /* the input is not a KSI PDU at all: a stream should be closed */
  bool foreign;        /* not a PDU of this service (not a PDU, unparseable, or not 0x320): HTTP 400 */
  uint64_t wait_second; /* > 0: deferred, no *resp: ask again once the calendar holds this second */
  char login[64];      /* as sent (cut), "" if unknown */
  char message[256];   /* why the PDU or the first failed request was refused */
} ext_outcome_t;

/* Extension requests one PDU may hold: the configured max_requests, or fewer when that many
 * answers might not fit one response PDU (what a configuration response announces). */
uint64_t ext_fit(uint64_t configured, uint64_t now);

/* Called once per extension request with its status (for metrics). */
typedef void (*ext_status_fn)(void *arg, uint64_t status);

/* Answers one request PDU. *resp (caller frees) is set on return 0: a signed 0x321, or an
 * unsigned error-only 0x321 when the request cannot be authenticated or parsed; except when
 * ctx->wait_bound defers the PDU: then *resp is NULL, out->wait_second says which second to
 * wait for, and nothing was counted. Nonzero only when not even an error PDU could be built (out
 * of memory). */
int ext_handle(const ext_ctx_t *ctx, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
               ext_outcome_t *out, ext_status_fn count, void *count_arg);

/* ---- the publications file ---- */

typedef struct ext_pubfile {
  char *path;            /* NULL: not configured */
  uint8_t *data;         /* the last good copy, or NULL */
  size_t len;
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime; /* of the copy we hold */
  bool failed;           /* the last attempt failed (logged once) */
} ext_pubfile_t;

int ext_pubfile_init(ext_pubfile_t *pf, const char *path, kl_err_t *e);
void ext_pubfile_free(ext_pubfile_t *pf);
/* The current file (re-read if it changed). *data valid until the next call. KL_ENOTFOUND
 * when not configured; another code when no good copy could be read. */
int ext_pubfile_get(ext_pubfile_t *pf, const uint8_t **data, size_t *len, kl_err_t *e);

/* The history directory next to the file (DIR/history): its file names, one a line, sorted
 * (KL_ENOTFOUND: no directory); and one file of it (KL_ENOTFOUND: no such file, or a name that
 * is not served), in a new buffer. */
int ext_pubfile_history_list(const ext_pubfile_t *pf, kl_buf_t *out, kl_err_t *e);
int ext_pubfile_history_get(const ext_pubfile_t *pf, const char *name, uint8_t **data, size_t *len, kl_err_t *e);
/* The witnesses' cosignature file next to it (PATH.witness, docs/formats.md §8), read on every
 * request, in a new buffer: KL_ENOTFOUND when there is none; its magic is checked, not more. */
int ext_pubfile_witness_get(const ext_pubfile_t *pf, uint8_t **data, size_t *len, kl_err_t *e);

/* ---- PDUs waiting for the replica (ext_wait.c) ---- */

enum { EXT_WAKE_CAUGHT_UP, EXT_WAKE_TIMEOUT, EXT_WAKE_GONE, EXT_WAKE_STOP };

typedef struct ext_waiter ext_waiter_t;
struct ext_waiter {
  ext_waiter_t *prev, *next;       /* the queue's */
  uint64_t second;                 /* answer once the calendar holds it */
  uint64_t deadline;               /* loop time, ms (set by ext_waitq_add) */
  bool (*connected)(ext_waiter_t *w); /* false once the client is gone */
};
/* Answers w (why: EXT_WAKE_*) and frees it; w is already out of the queue. */
typedef void (*ext_wait_answer_fn)(ext_waiter_t *w, int why, void *arg);
/* The calendar's last second now; false when unknown (no calendar, empty). */
typedef bool (*ext_wait_last_fn)(void *arg, uint64_t *last);

typedef struct ext_waitq {
  uv_loop_t *loop;
  uv_timer_t timer;
  bool timer_on;
  uint64_t wait_ms;
  size_t n, max;
  ext_waiter_t *head, *tail; /* arrival order = deadline order */
  ext_wait_answer_fn answer;
  ext_wait_last_fn last;
  void *arg;
} ext_waitq_t;

void ext_waitq_init(ext_waitq_t *q, uv_loop_t *loop, uint64_t wait_ms, size_t max, ext_wait_answer_fn answer,
                    ext_wait_last_fn last, void *arg);
/* Parks w (its second and connected set); false when max are waiting already, or closed. */
bool ext_waitq_add(ext_waitq_t *q, ext_waiter_t *w);
/* The calendar's last second grew to last: answers every waiter it satisfies. */
void ext_waitq_progress(ext_waitq_t *q, uint64_t last);
/* Answers every waiter now (EXT_WAKE_STOP). */
void ext_waitq_flush(ext_waitq_t *q);
/* Flushes and closes the timer (run the loop to finish closing). */
void ext_waitq_close(ext_waitq_t *q);

/* ---- the worker pool (ext_pool.c) ---- */

typedef struct ext_job ext_job_t;
struct ext_job {
  ext_job_t *next;             /* the pool's */
  void (*work)(ext_job_t *j);  /* on a worker thread */
  void (*done)(ext_job_t *j);  /* then on the loop thread */
};

typedef struct ext_pool {
  uv_loop_t *loop;
  uv_async_t async;
  pthread_t *threads;
  unsigned n;                  /* threads running */
  pthread_mutex_t mu;          /* guards the lists, idle and stop */
  pthread_cond_t cv;
  ext_job_t *todo_head, *todo_tail, *done_head, *done_tail;
  unsigned idle;               /* workers waiting on cv */
  bool stop;
  /* loop thread only: */
  size_t pending;              /* submitted, not yet done */
  bool running, closing;
} ext_pool_t;

/* The number of CPUs online (what workers = 0 means), 1..256. */
unsigned ext_pool_default_size(void);
/* Starts n worker threads (0: ext_pool_default_size) on loop; on failure nothing is left. */
int ext_pool_start(ext_pool_t *p, uv_loop_t *loop, unsigned n, kl_err_t *e);
/* Loop thread: j->work runs on a worker, then j->done on the loop. Once the pool is closed,
 * both run at once on the loop thread. */
void ext_pool_submit(ext_pool_t *p, ext_job_t *j);
/* Loop thread: once every job submitted is done, the threads end and the async handle closes
 * (run the loop to finish closing). */
void ext_pool_close(ext_pool_t *p);

/* ---- following the cores (ext_follow.c) ---- */

typedef struct ext_follow ext_follow_t;
typedef struct ext_follow_cbs {
  void (*on_progress)(void *arg, uint64_t last);                /* the replica grew to last */
  void (*on_error)(void *arg, const char *why, bool refused); /* replication stopped for good */
} ext_follow_cbs_t;

/* Probes every core of cfg->upstreams and registers the upstream metrics in m; follows once a
 * calendar is attached. trust and tls must outlive it. On failure *out is set all the same:
 * close and free it. */
int ext_follow_start(uv_loop_t *loop, const ext_config_t *cfg, const kl_repl_trust_t *trust, kl_tls_ctx_t *tls,
                     kl_metrics_t *m, const ext_follow_cbs_t *cbs, void *arg, ext_follow_t **out, kl_err_t *e);
/* The replica is open (read-write): follow into it. */
void ext_follow_attach(ext_follow_t *fo, kl_cal_t *cal);
/* The highest committed second known from the followed core and the cores that are up; false
 * when none is known. */
bool ext_follow_upstream_last(const ext_follow_t *fo, uint64_t *last);
/* The followed core's address (NULL: none now), and how many cores are up. */
const char *ext_follow_current(const ext_follow_t *fo);
size_t ext_follow_n_up(const ext_follow_t *fo);
/* NULL when the replica in cal (NULL: not open) may be served; else why not: a refused batch
 * (for good), or a lag over [replication] max_lag behind the highest committed second of the
 * cores that answer or the clock. Logs each change (event=replication_state). NULL fo: NULL. */
const char *ext_follow_sync(ext_follow_t *fo, kl_cal_t *cal);
/* The lag in seconds as the last ext_follow_sync found it (-1: unknown); whether a batch was
 * refused (replication stopped until restart). */
int64_t ext_follow_lag(const ext_follow_t *fo);
bool ext_follow_diverged(const ext_follow_t *fo);
/* *trust (the caller's, given at start) has changed: the current follower uses it from its next
 * batch on, and so does every later one. NULL fo is fine. */
void ext_follow_trust_changed(ext_follow_t *fo);
/* Closes the links and the timer (run the loop to finish), then ext_follow_free. NULL is fine. */
void ext_follow_close(ext_follow_t *fo);
void ext_follow_free(ext_follow_t *fo);

/* ---- the daemon ---- */

typedef struct extender extender_t;

/* Opens the calendar (or keeps trying), loads the users, starts the servers and signal
 * handlers on loop. On failure everything started is being closed: run the loop to let it
 * finish, then extender_free. */
int extender_start(uv_loop_t *loop, const ext_config_t *cfg, extender_t **out, kl_err_t *e);
/* Graceful stop (what SIGTERM does): the loop returns once every handle is closed. */
void extender_stop(extender_t *x);
/* After the loop has returned. */
void extender_free(extender_t *x);

#endif
