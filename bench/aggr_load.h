/* keyless benchmarks: the client side of the aggregation protocol under load, shared by the two
 * load generators that play children of a parent (proto/aggregation.proto Request/Response
 * frames, 4-byte length framing, plain TCP or mutual TLS 1.3 through bench_tls.c):
 *   - bench_core plays aggregators against a core's internal ports;
 *   - bench_aggregator plays gateways against an aggregator.
 *
 * Who owns what:
 *   aggr_load.c (this module): the connections (connect, at most connecting_max at once; the TLS
 *     handshake and the parent's empty accept frame; reads, framing, gathered writes, losses), the
 *     per-request table (al_rq_t), the answer checks (unpack, request id, state, second; the
 *     chains built into a signature as a child at the request level would, parsed, a sample
 *     verified with kl_verifier_run under the internal policy, calendar roots compared per
 *     second), the per-second fan-out (first and last OK answer read), the stop and the guard
 *     (drain deadline, then a hard stop), the tallies and percentiles, /proc CPU readings, and
 *     the failure exits (wrong answer: abort; setup: exit 1).
 *   the programs (bench_core.c, bench_aggregator.c): their options, the schedule of sends (an
 *     on_tick hook that calls al_send for what is due, then al_flush_all), what they sample at the
 *     start and the stop, and every line they print (the "result key=value ..." lines the run_*.sh
 *     scripts parse).
 *
 * A program embeds al_run_t as the first member of its own run structure, fills al_run_t.cfg and
 * the hooks, calls al_init, then al_run (which returns when every connection is closed). */
#ifndef KL_BENCH_AGGR_LOAD_H
#define KL_BENCH_AGGR_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "aggregation.pb-c.h"
#include "bench_tls.h"
#include "bench_util.h"
#include "keyless/hash.h"
#include "keyless/verify.h"

#define AL_MAX_ADDRS 8

enum { AL_UNSENT = 0, AL_FLIGHT, AL_OK, AL_RETRY, AL_ERROR, AL_LOST };

typedef struct al_rq {
  double sent;       /* monotonic, when handed to the connection */
  double lat;        /* seconds, send to answer */
  double ans_wall;   /* wall time the answer was read */
  uint64_t sent_sec; /* the wall second it was sent in */
  uint64_t ans_sec;  /* the answer's second */
  uint32_t status;
  uint32_t conn;
  uint8_t state;
} al_rq_t;

typedef struct al_conn {
  uv_tcp_t h;
  uv_connect_t cr;
  struct al_run *r;
  unsigned idx, addr; /* addr: index into cfg.addr */
  kb_rxbuf_t rx;
  kb_tls_t tls; /* mutual TLS only */
  uint64_t in_flight, max_in_flight;
  bool tcp_up, up, closing, lost, started;
  uint8_t *tx; /* frames gathered in one tick */
  size_t tx_len, tx_cap;
} al_conn_t;

/* Per wall second from first_sec: the first calendar root seen, the OK answers' fan-out. */
typedef struct al_sec {
  bool root_set;
  kl_imprint_t root;
  double first, last; /* wall times of the first and the last OK answer read for this second */
  uint64_t n;
} al_sec_t;

typedef struct al_cfg {
  const char *peer;                /* "the core", "the aggregator": in messages */
  const char *addr[AL_MAX_ADDRS];  /* the parent's addresses; connection i goes to i % n_addrs */
  size_t n_addrs;
  uint64_t conns, level, verify_every, seed;
  double keep_s, drain_s, late_s; /* late_s: a send later than this after its time is gen_late */
  unsigned tls_roles;              /* the parent's certificate role (KL_ROLE_...) */
  const char *ca, *cert, *key;     /* all three: mutual TLS; none: plain TCP */
  unsigned connecting_max;         /* connections on their way up at once; 0: all at once */
  size_t rx_min, rx_first, tx_first; /* buffer sizes */
  size_t min_chains, max_chains;   /* an OK answer's 0x801s */
  const char *chains_expect;       /* said when the count is wrong */
  bool parse_all;                  /* build and parse every OK answer (else every verify_every'th) */
  bool report_retry;               /* print the first retry status too, as other errors */
  const char *eof_hint;            /* why the parent may close during the handshake */
} al_cfg_t;

typedef struct al_run al_run_t;

typedef struct al_hooks {
  void (*on_start)(al_run_t *r);      /* every connection is up: set the schedule (first_sec) */
  void (*on_tick)(al_run_t *r);       /* every 1 ms from the start: al_send what is due */
  void (*on_stop)(al_run_t *r);       /* the last CPU readings */
  bool (*may_stop)(al_run_t *r);      /* besides all sent and answered (NULL: nothing) */
  double (*last_round_end)(al_run_t *r); /* wall time; answers are awaited drain_s past it */
  void (*on_answer)(al_run_t *r, const Keyless__Aggregation__Response *a); /* NULL: nothing */
  const char *(*client_id)(al_run_t *r, uint64_t i, char buf[32]); /* NULL: none */
} al_hooks_t;

struct al_run {
  al_cfg_t cfg;
  al_hooks_t hk;
  uv_loop_t loop;
  uv_timer_t tick, guard;
  kl_tls_ctx_t *tls; /* NULL: plain connections */
  struct sockaddr_storage sa[AL_MAX_ADDRS];
  al_conn_t *c;
  unsigned connected, open, connecting, next_connect;
  bool started, stopping;
  double connect_start, t0_mono, cpu0, t_end_mono, cpu1;
  uint64_t total, next, in_flight; /* requests in all; the next to send; in flight */
  al_rq_t *q;
  al_sec_t *secs; /* n_secs seconds from first_sec (set by on_start) */
  uint64_t first_sec, n_secs;
  kl_verifier_t *ver;
  kl_hasher_t h;
  uint64_t checked, parsed, verified, gen_late, conns_closed, frames;
  double gen_delay_max;    /* the latest a request went out after its scheduled time, seconds */
  uint32_t other_codes[8]; /* statuses other than OK seen (the first of each is printed) */
  size_t n_other;
};

/* Failures: a wrong answer aborts (SIGABRT), anything else exits 1; prefixed with the name. */
extern const char *al_prog;
void al_wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void al_die(const char *what, const char *msg) __attribute__((noreturn));

double al_wall_now(void);            /* CLOCK_REALTIME, seconds */
double al_proc_cpu(long pid);        /* utime + stime (/proc/PID/stat), seconds; NAN if gone */
double al_proc_sched(long pid);      /* time on a CPU (schedstat, all threads), seconds; NAN */
bool al_parse_dbl(const char *s, double lo, double hi, double *out);
/* The options both programs take alike (-l -K -T -v -s -C -P -k) into g: true if ch is one of
 * them (*ok: the value was good). */
bool al_common_opt(al_cfg_t *g, int ch, const char *arg, bool *ok);

/* The request's imprint: SHA-256 of (seed, index), so it can be made again to check. */
void al_imprint_of(const al_run_t *r, uint64_t i, kl_imprint_t *out);

/* Allocates the table (total requests, n_secs seconds), the connections, the verifier and the
 * TLS context (-C/-P/-k: all three or none); parses the addresses (loopback only). */
void al_init(al_run_t *r, uint64_t total, uint64_t n_secs);
/* Connects, runs the loop until every connection is closed. */
void al_run(al_run_t *r);
void al_free(al_run_t *r);

/* Hands request i to connection c, scheduled for wall time sched; w and now: the tick's clocks. */
void al_send(al_run_t *r, al_conn_t *c, uint64_t i, double w, double now, double sched);
void al_flush_all(al_run_t *r);
void al_maybe_stop(al_run_t *r);

/* ---- figures ---- */

typedef struct al_dist {
  double p50, p90, p99, max;
} al_dist_t;

al_dist_t al_dist_of(double *v, size_t n); /* sorts v; nearest rank */

typedef struct al_tally {
  uint64_t ok, retry, err, lost, unsent, moved, slow; /* slow: OK later than keep_s */
  size_t n;                                           /* OK answers from index `from` on */
} al_tally_t;

/* Counts over every request; lat and aft (after the end of the answer's second), for the OK
 * answers from index `from` on, into the arrays (total long each). */
al_tally_t al_tally(const al_run_t *r, uint64_t from, double *lat, double *aft);
uint64_t al_max_flight(const al_run_t *r);

#endif
