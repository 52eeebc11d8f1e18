/* bench_aggregator: what one child costs a keyless-aggregator. It plays N children (gateways or
 * lower aggregators) against a running aggregator on loopback, each sending one round root per
 * round period exactly as a gateway's tier does (lib/daemon/tier: proto/aggregation.proto
 * Request frames with 4-byte length framing, request_id, imprint, level, client_id = the child's
 * name), and measures the aggregator's CPU per round and per child request, and the latency from
 * a child's send to its answer.
 *
 * The children's connections: a gateway holds one mutual-TLS link per parent, and its identity
 * upstream is Request.client_id, not the connection (the aggregator checks only that the
 * certificate is a gateway's or an aggregator's). So the protocol allows multiplexing; by default
 * every child gets its own connection (-c N, as deployed: N handshakes, N sockets, one TLS record
 * per root), and -c C < N spreads the children round-robin over C connections. The aggregator
 * reads at most 1,024 frames in flight per connection (then stops reading it): with answers
 * about a second away, a connection carries at most ~100 children at a 100 ms period.
 *
 * Timing, as a gateway's tier_clock.c: round k is the period ending at B0 + k * period (wall
 * clock, CLOCK_REALTIME, aligned to multiples of the period); a gateway closes its round lead +
 * KL_TIER_HOP_MS (5 ms) before that, where lead is its parent's lead from Response.lead_ms, so
 * every child sends round k's root at B0 + k * period - (lead + 5) ms (before the first answer,
 * -o MS), all N at once (-W MS spreads them over a window). A request is not sent again.
 *
 * Measured window: rounds 0 .. -w-1 warm the aggregator up (connections, its rounds and the
 * core's answers in steady state); from the send of round -w to the moment round -w + -t would
 * be sent, the CPU (utime + stime, /proc/PID/stat) of the processes given with -D and of this
 * generator is read: in steady state that window holds -t rounds' receiving and -t rounds' answer
 * fan-out, so CPU / (-t x N) is the cost of one child request. The CPU is read twice: from
 * /proc/PID/stat (utime + stime, 10 ms ticks) and from /proc/PID/task/TID/schedstat (time on a CPU
 * in ns, summed over the threads), which is what the per-request figures use. The latency figures cover every
 * request of the rounds from -w on. Per second of the calendar: the spread from the first to the
 * last answer read (the aggregator's fan-out of that second's rounds, as this generator sees it).
 *
 * Same-run reference: one aggregation step of SHA-256 (67 bytes, kl_aggr_step with a reused
 * hasher, bench_hash's method (a)) is timed for -H seconds before the connections and again after
 * the run; the per-child cost is also given as so many hashes.
 *
 * Checks: every OK answer has >= 2 chains (the aggregator's, then its parents' up to the core), a
 * calendar chain and an authentication record, for a second not before the one it was sent in.
 * Every -v'th is built into a signature as a gateway at level -l would (the first 0x801's first
 * level correction plus the request level, then the other 0x801s, the 0x802 and the 0x805),
 * parsed (its signing time is the answer's second), verified with kl_verifier_run under the
 * internal policy with the child's root as the document hash at level -l, and its calendar root
 * is compared with the first seen for its second. (Only a sample: at 5,000 children the answers
 * come at 50,000/s, and this generator shares two cores with the aggregator and the core.)
 * A wrong answer, an answer nobody asked for or a failed verification aborts (SIGABRT).
 *
 * Kept up: every request answered OK within -K seconds (default 2), none lost, none refused, and
 * no request went out over 50 ms after its time (otherwise the generator fell behind).
 *
 * Bounded: -w + -t rounds; answers awaited for at most -T seconds after the last round; a guard
 * aborts a run that outlives that by 30 s, and the connect phase by -T + 120 s. Loopback only.
 *
 * Output: a human summary and one line "result key=value ..." (run_aggregator_bench.sh).
 *
 * usage: bench_aggregator -a HOST:PORT -N CHILDREN [-c CONNS] [-t ROUNDS] [-w WARM] [-p MS]
 *                         [-l LEVEL] [-o MS] [-W MS] [-K S] [-T S] [-v EVERY] [-s SEED] [-H S]
 *                         [-D NAME:PID,...] [-C CA -P CERT -k KEY] [-V]
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "aggregation.pb-c.h"
#include "bench_tls.h"
#include "bench_util.h"
#include "keyless/chains.h"
#include "keyless/hash.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"
#include "keyless/verify.h"

#define MAX_PIDS 4
#define MAX_FRAME (1u << 20)
#define CONNECTING_MAX 128 /* connections in their TCP connect or TLS handshake at once */
#define HOP_MS 5           /* KL_TIER_HOP_MS (lib/daemon/tier/tier_clock.h) */

typedef struct opts {
  const char *addr;
  uint64_t children, conns, rounds, warm, period_ms, level, verify_every, seed;
  double lead_ms, window_ms, keep_s, drain_s, hash_s;
  bool lead_fixed, per_round;
  long pid[MAX_PIDS];
  char pid_name[MAX_PIDS][32];
  size_t n_pids;
  const char *ca, *cert, *key;
} opts_t;

static void wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void wrong(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "bench_aggregator: WRONG ANSWER: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void die(const char *what, const char *msg) __attribute__((noreturn));
static void die(const char *what, const char *msg) {
  fflush(stdout);
  fprintf(stderr, "bench_aggregator: %s: %s\n", what, msg);
  exit(1);
}

static double wall_now(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) die("clock_gettime", strerror(errno));
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- state ---- */

enum { Q_UNSENT = 0, Q_FLIGHT, Q_OK, Q_RETRY, Q_ERROR, Q_LOST };

typedef struct rq {
  double sent;     /* monotonic */
  double lat;      /* seconds, send to answer */
  double ans_wall; /* wall time the answer was read */
  uint64_t ans_sec, sent_sec;
  uint32_t status;
  uint32_t conn;
  uint8_t state;
} rq_t;

typedef struct conn {
  uv_tcp_t h;
  uv_connect_t cr;
  struct run *r;
  unsigned idx;
  kb_rxbuf_t rx;
  kb_tls_t tls;
  uint64_t in_flight, max_in_flight;
  bool tcp_up, up, closing, lost, started;
  uint8_t *tx;
  size_t tx_len, tx_cap;
} conn_t;

typedef struct wreq {
  uv_write_t w;
  uint8_t *data;
} wreq_t;

typedef struct sec_info {
  bool root_set;
  kl_imprint_t root;
  double first, last; /* wall times of the first and the last OK answer for this second */
  uint64_t n;
} sec_info_t;

typedef struct run {
  const opts_t *o;
  uv_loop_t loop;
  uv_timer_t tick, guard;
  kl_tls_ctx_t *tls;
  struct sockaddr_storage sa;
  conn_t *c;
  unsigned connected, open, connecting, next_connect;
  bool started, stopping;
  double b0;              /* wall time of the end of round 0's period */
  double connect_start;   /* monotonic */
  uint64_t total_rounds, total, next;
  double send_lead_ms;    /* how long before a period's end the children send */
  uint32_t lead_seen;     /* the last Response.lead_ms */
  rq_t *q;
  /* the measured window */
  bool win_open, win_closed;
  double win_mono0, win_mono1, win_cpu0, win_cpu1, pid_cpu0[MAX_PIDS], pid_cpu1[MAX_PIDS];
  double pid_ns0[MAX_PIDS], pid_ns1[MAX_PIDS]; /* schedstat */
  double t0_mono, cpu0, t_end_mono, cpu1;
  /* checks */
  kl_verifier_t *ver;
  kl_hasher_t h;
  sec_info_t *secs;
  uint64_t first_sec, n_secs;
  uint64_t checked, parsed, verified, gen_late, conns_closed, frames;
  double gen_delay_max;
  uint32_t other_codes[8];
  size_t n_other;
} run_t;

static double proc_cpu(long pid) {
  double v = kb_proc_cpu(pid);
  return v < 0 ? NAN : v;
}

/* The same to the nanosecond: the first field of /proc/PID/task/TID/schedstat (time on a CPU),
 * summed over the threads; NAN if unreadable. /proc/PID/stat counts in clock ticks (10 ms), too
 * coarse for a few milliseconds per round. */
static double proc_sched(long pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/task", pid);
  DIR *d = opendir(path);
  if (d == NULL) return NAN;
  double sum = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char p[300];
    snprintf(p, sizeof p, "/proc/%ld/task/%s/schedstat", pid, de->d_name);
    FILE *f = fopen(p, "r");
    if (f == NULL) continue; /* a thread that just ended */
    unsigned long long ns = 0;
    if (fscanf(f, "%llu", &ns) == 1) sum += (double)ns * 1e-9;
    fclose(f);
  }
  closedir(d);
  return sum;
}

/* The child's root for request i: SHA-256 of (seed, i), so it can be made again to check. */
static void imprint_of(const run_t *r, uint64_t i, kl_imprint_t *out) {
  uint8_t in[16];
  for (int k = 0; k < 8; k++) {
    in[k] = (uint8_t)(r->o->seed >> (8 * k));
    in[8 + k] = (uint8_t)(i >> (8 * k));
  }
  kl_err_t e;
  if (kl_hash(KL_HASH_SHA256, in, sizeof in, out, &e)) die("kl_hash", e.msg);
}

/* ---- the same-run reference: one aggregation step (67 bytes of SHA-256) ---- */

static double hash_ns(double seconds) {
  kl_hasher_t h;
  kl_err_t e = {0};
  if (kl_hasher_init(&h, &e)) die("kl_hasher_init", e.msg);
  kl_imprint_t cur;
  if (kl_hash(KL_HASH_SHA256, (const uint8_t *)"ref", 3, &cur, &e)) die("kl_hash", e.msg);
  uint8_t sib[33];
  memset(sib, 0x5a, sizeof sib);
  sib[0] = 1; /* SHA-256 */
  uint64_t n = 0;
  double t0 = kb_cpu(), t = t0;
  while (t - t0 < seconds) {
    for (int i = 0; i < 4096; i++)
      if (kl_aggr_step(&h, KL_HASH_SHA256, true, &cur, sib, sizeof sib, 42, &cur, &e)) die("kl_aggr_step", e.msg);
    n += 4096;
    t = kb_cpu();
  }
  kl_hasher_close(&h);
  return 1e9 * (t - t0) / (double)n;
}

/* ---- answers ---- */

static void check_ok(run_t *r, uint64_t i, const Keyless__Aggregation__Response *a) {
  const opts_t *o = r->o;
  unsigned long long id = (unsigned long long)i + 1;
  if (a->n_chains < 2 || !a->has_calendar_chain || !a->has_auth_record)
    wrong("request %llu: OK answer with %zu chains (expected the aggregator's and the core's), calendar chain %d, "
          "auth record %d",
          id, a->n_chains, a->has_calendar_chain, a->has_auth_record);
  if (a->second < r->q[i].sent_sec)
    wrong("request %llu sent in second %llu is answered for the earlier second %llu", id,
          (unsigned long long)r->q[i].sent_sec, (unsigned long long)a->second);
  if (++r->checked % o->verify_every != 0) return; /* the rest: a sample, built and verified */
  kl_err_t e = {0};
  kl_arena_t arena = KL_ARENA_INIT;
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  for (size_t k = 0; k < a->n_chains; k++) {
    kl_tlv_t t;
    kl_aggr_chain_t ch;
    if (kl_tlv_parse_one(a->chains[k].data, a->chains[k].len, &t, &e) || t.type != KL_T_AGGR_CHAIN ||
        t.raw_len != a->chains[k].len)
      wrong("request %llu: chain %zu is not one 0x801 TLV (%s)", id, k, e.msg);
    if (kl_aggr_chain_decode(&t, a->chains[k].data, &arena, &ch, &e)) wrong("request %llu: 0x801 #%zu: %s", id, k, e.msg);
    if (ch.n_links == 0) wrong("request %llu: chain %zu has no links", id, k);
    if (ch.aggr_time != a->second)
      wrong("request %llu: chain %zu time %llu, answer second %llu", id, k, (unsigned long long)ch.aggr_time,
            (unsigned long long)a->second);
    if (k == 0) ch.links[0].level_corr += o->level; /* the child's part: its root's level */
    kl_aggr_chain_encode(&b, &ch);
  }
  kl_buf_put(&b, a->calendar_chain.data, a->calendar_chain.len);
  kl_buf_put(&b, a->auth_record.data, a->auth_record.len);
  if (kl_tlv_close(&b, m, KL_T_SIGNATURE, 0) || !kl_buf_ok(&b)) die("signature", "cannot encode");
  kl_arena_free(&arena);
  kl_sig_t *sig;
  if (kl_sig_parse(b.p, b.len, &sig, &e)) wrong("request %llu: the signature does not parse: %s", id, e.msg);
  kl_buf_free(&b);
  r->parsed++;
  if (kl_sig_signing_time(sig) != a->second || sig->cal == NULL || sig->cal->pub_time != a->second ||
      sig->auth == NULL || sig->auth->data.time != a->second)
    wrong("request %llu: signature for second %llu: signing time %llu, calendar chain to %llu, auth record %llu", id,
          (unsigned long long)a->second, (unsigned long long)kl_sig_signing_time(sig),
          (unsigned long long)(sig->cal ? sig->cal->pub_time : 0), (unsigned long long)(sig->auth ? sig->auth->data.time : 0));
  {
    kl_imprint_t doc, root;
    imprint_of(r, i, &doc);
    kl_verify_opts_t vo = {.doc_hash = &doc, .doc_level = o->level};
    kl_verify_result_t res;
    kl_verifier_run(r->ver, sig, KL_POLICY_INTERNAL, &vo, &res);
    if (res.verdict != KL_VER_OK)
      wrong("request %llu (second %llu): internal verification %s %s: %s", id, (unsigned long long)a->second,
            kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
    if (kl_cal_chain_root(&r->h, sig->cal, &root, &e)) wrong("request %llu: calendar root: %s", id, e.msg);
    if (a->second >= r->first_sec && a->second - r->first_sec < r->n_secs) {
      sec_info_t *s = &r->secs[a->second - r->first_sec];
      if (!s->root_set) {
        s->root_set = true;
        s->root = root;
      } else if (!kl_imprint_eq(&s->root, &root)) {
        wrong("request %llu: calendar root for second %llu differs from an earlier answer's", id,
              (unsigned long long)a->second);
      }
    }
    r->verified++;
  }
  kl_sig_free(sig);
}

static void maybe_stop(run_t *r);
static void stop(run_t *r);

static void on_frame(conn_t *c, const uint8_t *p, size_t n) {
  run_t *r = c->r;
  double now = kb_now(), wnow = wall_now();
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, n, p);
  if (m == NULL) wrong("an answer frame of %zu bytes does not unpack", n);
  if (m->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE) wrong("a frame that is not a Response (%d)", m->body_case);
  const Keyless__Aggregation__Response *a = m->response;
  r->frames++;
  if (a->request_id == 0 || a->request_id > r->total) wrong("an answer for request %llu, never sent", (unsigned long long)a->request_id);
  uint64_t i = a->request_id - 1;
  rq_t *q = &r->q[i];
  if (q->state != Q_FLIGHT || q->conn != c->idx)
    wrong("an answer for request %llu, which is not in flight on this connection (state %d)",
          (unsigned long long)a->request_id, q->state);
  q->lat = now - q->sent;
  q->status = a->status;
  q->ans_sec = a->second;
  q->ans_wall = wnow;
  c->in_flight--;
  if (a->has_lead_ms) r->lead_seen = a->lead_ms;
  if (a->has_lead_ms && !r->o->lead_fixed) r->send_lead_ms = (double)a->lead_ms + HOP_MS;
  if (a->status == KL_STATUS_OK) {
    check_ok(r, i, a);
    q->state = Q_OK;
    if (a->second >= r->first_sec && a->second - r->first_sec < r->n_secs) {
      sec_info_t *s = &r->secs[a->second - r->first_sec];
      if (s->n++ == 0) s->first = wnow;
      s->last = wnow;
    }
  } else {
    q->state = a->status == KL_STATUS_UPSTREAM_ERROR ? Q_RETRY : Q_ERROR;
    bool seen = false;
    for (size_t k = 0; k < r->n_other; k++) seen |= r->other_codes[k] == a->status;
    if (!seen && r->n_other < 8) {
      r->other_codes[r->n_other++] = a->status;
      fprintf(stderr, "bench_aggregator: request %llu: status 0x%04X: %s\n", (unsigned long long)a->request_id,
              a->status, a->error ? a->error : "");
    }
  }
  keyless__aggregation__message__free_unpacked(m, NULL);
}

static void on_close(uv_handle_t *h) {
  conn_t *c = h->data;
  run_t *r = c->r;
  kb_tls_free(&c->tls);
  kb_rx_free(&c->rx);
  free(c->tx);
  c->tx = NULL;
  if (--r->open == 0) {
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->guard, NULL);
  }
}

static void conn_close(conn_t *c) {
  if (c->closing || !c->started) return;
  c->closing = true;
  if (c->tcp_up) uv_read_stop((uv_stream_t *)&c->h);
  uv_close((uv_handle_t *)&c->h, on_close);
}

static void conn_lost(conn_t *c, const char *why) {
  run_t *r = c->r;
  if (c->lost || c->closing) return;
  if (!r->started) die("a connection closed before the load started", why);
  c->lost = true;
  r->conns_closed++;
  fprintf(stderr, "bench_aggregator: connection %u closed by the aggregator (%s) with %llu requests in flight\n",
          c->idx, why, (unsigned long long)c->in_flight);
  for (uint64_t i = 0; i < r->next; i++)
    if (r->q[i].state == Q_FLIGHT && r->q[i].conn == c->idx) r->q[i].state = Q_LOST;
  c->in_flight = 0;
  conn_close(c);
  bool any = false;
  for (unsigned k = 0; k < r->o->conns; k++) any |= !r->c[k].lost && !r->c[k].closing;
  if (!any) {
    fprintf(stderr, "bench_aggregator: every connection was closed by the aggregator; stopping\n");
    stop(r);
  } else {
    maybe_stop(r);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  conn_t *c = h->data;
  if (c->tls.s != NULL) {
    *b = kb_tls_scratch();
    return;
  }
  size_t avail = 0;
  uint8_t *p = kb_rx_space(&c->rx, 16384, 65536, &avail);
  if (p == NULL) die("read buffer", "out of memory");
  *b = uv_buf_init((char *)p, (unsigned)avail);
}

static void conn_ready(conn_t *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *c = s->data;
  if (n < 0 && !c->up)
    die(c->r->o->addr, n == UV_EOF ? "closed by the aggregator during the TLS handshake (is it run with [tls] "
                                     "insecure = yes, does it refuse the certificate, or is it over max_connections?)"
                                   : uv_strerror((int)n));
  if (n < 0) {
    conn_lost(c, uv_err_name((int)n));
    return;
  }
  if (c->tls.s != NULL) {
    kl_err_t e = {0};
    bool closed = false;
    int st = kb_tls_read(&c->tls, (const uint8_t *)b->base, (size_t)n, &c->rx, &closed, &e);
    if (st < 0 && !c->up) die("TLS handshake", e.msg);
    if (st < 0) wrong("TLS: %s", e.msg);
    if (closed) {
      conn_lost(c, "TLS close_notify");
      return;
    }
  } else {
    c->rx.len += (size_t)n;
  }
  size_t off = 0;
  while (c->rx.len - off >= 4) {
    const uint8_t *p = c->rx.p + off;
    size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (len > MAX_FRAME) wrong("an answer frame of %zu bytes", len);
    if (c->rx.len - off < 4 + len) break;
    off += 4 + len;
    if (len == 0 && c->tls.s != NULL && !c->up) { /* the aggregator accepted the certificate */
      conn_ready(c);
      continue;
    }
    if (len == 0) wrong("an empty frame%s", c->tls.s ? " after the accept" : "");
    on_frame(c, p + 4, len);
  }
  kb_rx_consume(&c->rx, off);
  maybe_stop(c->r);
}

/* ---- sending ---- */

static void on_write(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  conn_t *c = w->handle->data;
  free(q->data);
  free(q);
  if (status < 0) conn_lost(c, uv_strerror(status));
}

static void put_request(run_t *r, conn_t *c, uint64_t i) {
  Keyless__Aggregation__Request rq = KEYLESS__AGGREGATION__REQUEST__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  kl_imprint_t imp;
  uint8_t ib[KL_IMPRINT_MAX];
  char name[32];
  imprint_of(r, i, &imp);
  snprintf(name, sizeof name, "child-%llu", (unsigned long long)(i % r->o->children));
  rq.request_id = i + 1;
  rq.imprint.len = kl_imprint_to_bytes(&imp, ib);
  rq.imprint.data = ib;
  rq.level = (uint32_t)r->o->level;
  rq.client_id = name;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
  m.request = &rq;
  size_t n = keyless__aggregation__message__get_packed_size(&m);
  if (c->tx_cap - c->tx_len < n + 4) {
    size_t cap = c->tx_cap ? 2 * c->tx_cap : 256;
    while (cap - c->tx_len < n + 4) cap *= 2;
    uint8_t *p = realloc(c->tx, cap);
    if (p == NULL) die("send buffer", "out of memory");
    c->tx = p;
    c->tx_cap = cap;
  }
  uint8_t *p = c->tx + c->tx_len;
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
  keyless__aggregation__message__pack(&m, p + 4);
  c->tx_len += n + 4;
}

static void flush(conn_t *c) {
  if (c->tx_len == 0) return;
  if (c->tls.s != NULL) {
    kl_err_t e = {0};
    uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)c->tx_len);
    if (kb_tls_write(&c->tls, &b, 1, &e)) die("TLS write", e.msg);
    c->tx_len = 0;
    return;
  }
  wreq_t *w = malloc(sizeof *w);
  if (w == NULL) die("write", "out of memory");
  w->data = c->tx;
  uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)c->tx_len);
  c->tx = NULL;
  c->tx_len = c->tx_cap = 0;
  int rc = uv_write(&w->w, (uv_stream_t *)&c->h, &b, 1, on_write);
  if (rc) die("uv_write", uv_strerror(rc));
}

/* When round k's roots go out: lead + hop before the end of its period (wall time). */
static double send_time(const run_t *r, uint64_t k) {
  return r->b0 + (double)(k * r->o->period_ms) / 1e3 - r->send_lead_ms / 1e3;
}

static void sample_window(run_t *r, bool open) {
  double *pc = open ? r->pid_cpu0 : r->pid_cpu1, *pn = open ? r->pid_ns0 : r->pid_ns1;
  for (size_t k = 0; k < r->o->n_pids; k++) {
    pc[k] = proc_cpu(r->o->pid[k]);
    pn[k] = proc_sched(r->o->pid[k]);
  }
  if (open) {
    r->win_open = true;
    r->win_mono0 = kb_now();
    r->win_cpu0 = kb_cpu();
  } else {
    r->win_closed = true;
    r->win_mono1 = kb_now();
    r->win_cpu1 = kb_cpu();
  }
}

static void on_tick(uv_timer_t *t) {
  run_t *r = t->data;
  if (r->stopping) return;
  const opts_t *o = r->o;
  double w = wall_now();
  if (!r->win_closed && r->win_open && w >= send_time(r, o->warm + o->rounds)) sample_window(r, false);
  if (r->win_closed) maybe_stop(r);
  double now = kb_now();
  bool sent = false;
  while (r->next < r->total) {
    uint64_t k = r->next / o->children;
    double sk = send_time(r, k);
    if (w < sk) break;
    if (k == o->warm && r->next % o->children == 0 && !r->win_open) sample_window(r, true);
    uint64_t part = o->children;
    if (o->window_ms > 0 && (w - sk) * 1e3 < o->window_ms) part = (uint64_t)ceil((double)o->children * (w - sk) * 1e3 / o->window_ms);
    if (part > o->children) part = o->children;
    uint64_t due = k * o->children + part;
    for (; r->next < due; r->next++) {
      uint64_t j = r->next % o->children;
      conn_t *c = &r->c[j % o->conns];
      rq_t *q = &r->q[r->next];
      if (c->lost || c->closing) {
        q->state = Q_LOST;
        continue;
      }
      put_request(r, c, r->next);
      q->state = Q_FLIGHT;
      q->sent = now;
      q->sent_sec = (uint64_t)w;
      q->conn = c->idx;
      double sched = sk + (o->window_ms > 0 ? o->window_ms * (double)j / (double)o->children / 1e3 : 0);
      if (w - sched > r->gen_delay_max) r->gen_delay_max = w - sched;
      if (w - sched > 0.05) r->gen_late++;
      if (++c->in_flight > c->max_in_flight) c->max_in_flight = c->in_flight;
      sent = true;
    }
    if (part < o->children) break;
  }
  if (sent)
    for (unsigned k = 0; k < o->conns; k++)
      if (!r->c[k].lost && !r->c[k].closing) flush(&r->c[k]);
}

static void stop(run_t *r) {
  if (r->stopping) return;
  r->stopping = true;
  r->t_end_mono = kb_now();
  r->cpu1 = kb_cpu();
  if (!r->win_closed && r->win_open) sample_window(r, false);
  uv_timer_stop(&r->tick);
  uv_timer_stop(&r->guard);
  for (uint64_t i = 0; i < r->next; i++)
    if (r->q[i].state == Q_FLIGHT) r->q[i].state = Q_LOST;
  for (unsigned k = 0; k < r->o->conns; k++) conn_close(&r->c[k]);
}

static void maybe_stop(run_t *r) {
  if (!r->started || r->stopping || !r->win_closed || r->next < r->total) return;
  for (unsigned k = 0; k < r->o->conns; k++)
    if (r->c[k].in_flight) return;
  stop(r);
}

static void on_guard(uv_timer_t *t) {
  run_t *r = t->data;
  const opts_t *o = r->o;
  if (!r->started) {
    if (kb_now() - r->connect_start > o->drain_s + 120) die("guard", "the connections did not come up in time");
    return;
  }
  double end = send_time(r, r->total_rounds) + o->drain_s;
  if (r->next == r->total && wall_now() >= end) {
    uint64_t f = 0;
    for (unsigned k = 0; k < o->conns; k++) f += r->c[k].in_flight;
    fprintf(stderr, "bench_aggregator: %llu requests unanswered %.0f s after the last round: counted as lost\n",
            (unsigned long long)f, o->drain_s);
    stop(r);
  } else if (wall_now() >= end + 30) {
    die("guard", "the run did not end 30 s after its drain deadline");
  }
}

static void start_load(run_t *r) {
  uint64_t p = r->o->period_ms;
  uint64_t now_ms = (uint64_t)(wall_now() * 1e3);
  r->b0 = (double)((now_ms + 1500) / p * p + p) / 1e3; /* a period's end at least 1.5 s away */
  r->first_sec = (uint64_t)r->b0 - 1;
  r->started = true;
  r->t0_mono = kb_now();
  r->cpu0 = kb_cpu();
  printf("connected: %u connections in %.1f s\n", r->connected, kb_now() - r->connect_start);
  fflush(stdout);
  uv_timer_start(&r->tick, on_tick, 1, 1);
}

static void connect_next(run_t *r);

static void conn_ready(conn_t *c) {
  run_t *r = c->r;
  c->up = true;
  r->connecting--;
  if (++r->connected == r->o->conns) start_load(r);
  else connect_next(r);
}

static void on_connect(uv_connect_t *cr, int status) {
  conn_t *c = cr->handle->data;
  run_t *r = c->r;
  if (status < 0) die(r->o->addr, uv_strerror(status));
  c->tcp_up = true;
  int rc = uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
  if (rc) die("uv_read_start", uv_strerror(rc));
  if (r->tls != NULL) {
    kl_err_t e = {0};
    if (kb_tls_start(&c->tls, r->tls, (uv_stream_t *)&c->h, KL_ROLE_AGGREGATOR, &e)) die("TLS", e.msg);
    return;
  }
  conn_ready(c);
}

/* Opens connections while fewer than CONNECTING_MAX are on their way up. */
static void connect_next(run_t *r) {
  while (r->next_connect < r->o->conns && r->connecting < CONNECTING_MAX) {
    conn_t *c = &r->c[r->next_connect];
    c->r = r;
    c->idx = r->next_connect++;
    uv_tcp_init(&r->loop, &c->h);
    c->h.data = c;
    c->started = true;
    uv_tcp_nodelay(&c->h, 1);
    int rc = uv_tcp_connect(&c->cr, &c->h, (const struct sockaddr *)&r->sa, on_connect);
    if (rc) die("uv_tcp_connect", uv_strerror(rc));
    r->open++;
    r->connecting++;
  }
}

/* ---- figures ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q) {
  if (n == 0) return NAN;
  size_t k = (size_t)ceil((double)n * q);
  return v[(k ? k : 1) - 1];
}

typedef struct dist {
  double p50, p90, p99, max;
} dist_t;

static dist_t dist_of(double *v, size_t n) {
  dist_t d = {NAN, NAN, NAN, NAN};
  if (n == 0) return d;
  qsort(v, n, sizeof *v, cmp_double);
  d.p50 = pct(v, n, 0.5);
  d.p90 = pct(v, n, 0.9);
  d.p99 = pct(v, n, 0.99);
  d.max = v[n - 1];
  return d;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_aggregator -a HOST:PORT -N CHILDREN [-c CONNS] [-t ROUNDS] [-w WARM] [-p MS] [-l LEVEL]\n"
          "                        [-o MS] [-W MS] [-K S] [-T S] [-v EVERY] [-s SEED] [-H S] [-D NAME:PID,...]\n"
          "                        [-C CA -P CERT -k KEY] [-V]\n"
          "  -a ADDR     the aggregator's children's port (loopback only)\n"
          "  -N N        children, each sending one root per round period\n"
          "  -c CONNS    connections; the children round-robin over them (default N: one each, as deployed)\n"
          "  -t ROUNDS   measured rounds (default 50)\n"
          "  -w WARM     rounds before the measured ones (default 20)\n"
          "  -p MS       the round period (default 100, the gateway's and the aggregator's default)\n"
          "  -l LEVEL    the roots' level (default 12, a gateway round of a few thousand requests)\n"
          "  -o MS       send MS ms before each period's end (default: the aggregator's Response.lead_ms + 5,\n"
          "              as a gateway does; 25 until the first answer)\n"
          "  -W MS       spread a round's roots over MS ms (default 0: all at once)\n"
          "  -K S        kept up: every request answered OK within S seconds (default 2)\n"
          "  -T S        wait this long for answers after the last round (default 10)\n"
          "  -v EVERY    build and verify every EVERY'th OK answer (default 50; all are checked)\n"
          "  -s SEED     seed of the roots (default 1)\n"
          "  -H S        CPU seconds for the SHA-256 reference, before and after the run (default 0.5)\n"
          "  -D LIST     NAME:PID of processes whose CPU is read over the measured window (the aggregator\n"
          "              first, then e.g. the core)\n"
          "  -C/-P/-k    mutual TLS 1.3: the cluster CA, a gateway's (or aggregator's) certificate and key;\n"
          "              the aggregator must present an aggregator certificate. Without: plain TCP\n"
          "  -V          a line per calendar second\n");
}

static bool parse_dbl(const char *s, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  opts_t o = {.rounds = 50, .warm = 20, .period_ms = 100, .level = 12, .verify_every = 50, .seed = 1,
              .lead_ms = 25, .window_ms = 0, .keep_s = 2, .drain_s = 10, .hash_s = 0.5};
  char *pids = NULL;
  int ch;
  while ((ch = getopt(argc, argv, "a:N:c:t:w:p:l:o:W:K:T:v:s:H:D:C:P:k:Vh")) != -1) {
    bool ok = true;
    switch (ch) {
      case 'a': o.addr = optarg; break;
      case 'N': ok = kb_parse_count(optarg, &o.children) && o.children <= 100000; break;
      case 'c': ok = kb_parse_count(optarg, &o.conns) && o.conns <= 100000; break;
      case 't': ok = kb_parse_count(optarg, &o.rounds) && o.rounds <= 100000; break;
      case 'w':
        ok = (kb_parse_count(optarg, &o.warm) || strcmp(optarg, "0") == 0) && o.warm <= 10000;
        if (strcmp(optarg, "0") == 0) o.warm = 0;
        break;
      case 'p': ok = kb_parse_count(optarg, &o.period_ms) && o.period_ms >= 10 && o.period_ms <= 10000; break;
      case 'l':
        ok = (kb_parse_count(optarg, &o.level) || strcmp(optarg, "0") == 0) && o.level <= 200;
        if (strcmp(optarg, "0") == 0) o.level = 0;
        break;
      case 'o': ok = parse_dbl(optarg, 0, 5000, &o.lead_ms); o.lead_fixed = true; break;
      case 'W': ok = parse_dbl(optarg, 0, 10000, &o.window_ms); break;
      case 'K': ok = kb_parse_seconds(optarg, &o.keep_s); break;
      case 'T': ok = kb_parse_seconds(optarg, &o.drain_s) && o.drain_s <= 300; break;
      case 'v': ok = kb_parse_count(optarg, &o.verify_every); break;
      case 's': ok = kb_parse_count(optarg, &o.seed); break;
      case 'H': ok = parse_dbl(optarg, 0.01, 60, &o.hash_s); break;
      case 'D': pids = optarg; break;
      case 'C': o.ca = optarg; break;
      case 'P': o.cert = optarg; break;
      case 'k': o.key = optarg; break;
      case 'V': o.per_round = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "bench_aggregator: bad value '%s' for -%c\n", optarg, ch);
      return 2;
    }
  }
  if (optind != argc || o.addr == NULL || o.children == 0) {
    usage(stderr);
    return 2;
  }
  if (o.conns == 0 || o.conns > o.children) o.conns = o.children;
  if (o.rounds * o.children > 50000000) die("-t/-N", "more than 5 x 10^7 requests");
  if ((o.ca != NULL) != (o.cert != NULL) || (o.cert != NULL) != (o.key != NULL)) die("-C/-P/-k", "give all three or none");
  for (char *save = NULL, *tok = pids ? strtok_r(pids, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    uint64_t v;
    if (o.n_pids == MAX_PIDS || colon == NULL || colon - tok >= 32 || !kb_parse_count(colon + 1, &v) || v >= (1u << 31))
      die("-D", "expected NAME:PID,NAME:PID,...");
    memcpy(o.pid_name[o.n_pids], tok, (size_t)(colon - tok));
    o.pid[o.n_pids++] = (long)v;
    if (isnan(proc_cpu((long)v))) die("-D", "no such process");
  }
  signal(SIGPIPE, SIG_IGN);

  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) die("run", "out of memory");
  r->o = &o;
  r->total_rounds = o.warm + o.rounds;
  r->total = r->total_rounds * o.children;
  r->send_lead_ms = o.lead_ms;
  r->q = calloc(r->total, sizeof *r->q);
  r->c = calloc(o.conns, sizeof *r->c);
  r->n_secs = (uint64_t)((double)(r->total_rounds * o.period_ms) / 1e3 + o.drain_s) + 8;
  r->secs = calloc(r->n_secs, sizeof *r->secs);
  kl_err_t e = {0};
  if (r->q == NULL || r->c == NULL || r->secs == NULL) die("run", "out of memory");
  if (kl_verifier_create(&r->ver, &e) || kl_hasher_init(&r->h, &e)) die("verifier", e.msg);
  if (o.ca != NULL) r->tls = kb_tls_client_ctx("bench_aggregator", o.ca, o.cert, o.key);
  const char *why = kb_parse_loopback(o.addr, &r->sa);
  if (why != NULL) die(o.addr, why);

  kb_print_header("bench_aggregator");
  printf("target: %s; %llu children over %llu connections (%s), %s\n", o.addr, (unsigned long long)o.children,
         (unsigned long long)o.conns, o.conns == o.children ? "one per child" : "multiplexed",
         r->tls ? "mutual TLS 1.3 (handshakes before the load starts)" : "plain TCP");
  printf("load: every child one root at level %llu per %llu ms period, sent %s before the period's end%s; %llu warm-up "
         "rounds, %llu measured\n",
         (unsigned long long)o.level, (unsigned long long)o.period_ms, o.lead_fixed ? "-o ms" : "lead_ms + 5 ms",
         o.window_ms > 0 ? " (spread over -W ms)" : " (all at once)", (unsigned long long)o.warm,
         (unsigned long long)o.rounds);
  fflush(stdout);
  double h_before = hash_ns(o.hash_s);

  int rc = uv_loop_init(&r->loop);
  if (rc) die("uv_loop_init", uv_strerror(rc));
  uv_timer_init(&r->loop, &r->tick);
  uv_timer_init(&r->loop, &r->guard);
  r->tick.data = r->guard.data = r;
  r->connect_start = kb_now();
  uv_timer_start(&r->guard, on_guard, 100, 100);
  connect_next(r);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&r->loop);
  if (rc) die("uv_loop_close", uv_strerror(rc));
  double h_after = hash_ns(o.hash_s);

  /* ---- figures ---- */
  uint64_t n_ok = 0, n_retry = 0, n_err = 0, n_lost = 0, n_unsent = 0, slow = 0, meas = 0;
  double *lat = malloc(r->total * sizeof *lat), *aft = malloc(r->total * sizeof *aft);
  if (lat == NULL || aft == NULL) die("figures", "out of memory");
  size_t nl = 0;
  for (uint64_t i = 0; i < r->total; i++) {
    const rq_t *q = &r->q[i];
    bool m = i / o.children >= o.warm;
    meas += m;
    switch (q->state) {
      case Q_OK:
        n_ok++;
        slow += q->lat > o.keep_s;
        if (m) {
          lat[nl] = q->lat;
          aft[nl++] = q->ans_wall - (double)(q->ans_sec + 1);
        }
        break;
      case Q_RETRY: n_retry++; break;
      case Q_ERROR: n_err++; break;
      case Q_UNSENT: n_unsent++; break;
      default: n_lost++; break;
    }
  }
  dist_t dl = dist_of(lat, nl), da = dist_of(aft, nl);
  /* the fan-out of each calendar second's answers: first to last read here */
  size_t nf = 0;
  double *fan = malloc(r->n_secs * sizeof *fan);
  if (fan == NULL) die("figures", "out of memory");
  if (o.per_round) printf("\n%-11s %8s %12s %12s\n", "second", "answers", "first+ ms", "spread ms");
  for (uint64_t k = 0; k < r->n_secs; k++) {
    const sec_info_t *s = &r->secs[k];
    if (s->n == 0) continue;
    if (o.per_round)
      printf("%-11llu %8llu %12.1f %12.1f\n", (unsigned long long)(r->first_sec + k), (unsigned long long)s->n,
             1e3 * (s->first - (double)(r->first_sec + k + 1)), 1e3 * (s->last - s->first));
    /* full seconds only: inside the measured rounds (10 rounds of every child at a 100 ms period) */
    double s0 = (double)(r->first_sec + k), s1 = s0 + 1;
    if (s0 >= send_time(r, o.warm) && s1 <= send_time(r, r->total_rounds)) fan[nf++] = 1e3 * (s->last - s->first);
  }
  dist_t df = dist_of(fan, nf);
  uint64_t max_flight = 0;
  for (unsigned k = 0; k < o.conns; k++)
    if (r->c[k].max_in_flight > max_flight) max_flight = r->c[k].max_in_flight;
  bool kept = n_ok == r->total && slow == 0 && r->gen_late == 0;
  const char *kwhy = kept ? "" : n_lost || n_unsent || r->conns_closed ? " (requests lost)"
                              : r->gen_late ? " (the generator fell behind: the run says little of the aggregator)"
                              : n_retry || n_err ? " (retries or errors)"
                                                 : " (answers slower than -K)";
  double wwin = r->win_mono1 - r->win_mono0;
  double reqs = (double)(o.rounds * o.children);
  double hash = (h_before + h_after) / 2;
  printf("\nsent %llu in %llu rounds; answered OK %llu, retry %llu, other errors %llu, lost %llu, never sent %llu; "
         "sent over 50 ms late %llu (at most %.1f ms late); connections closed by the aggregator %llu; last lead_ms %u\n",
         (unsigned long long)r->next, (unsigned long long)r->total_rounds, (unsigned long long)n_ok,
         (unsigned long long)n_retry, (unsigned long long)n_err, (unsigned long long)n_lost,
         (unsigned long long)n_unsent, (unsigned long long)r->gen_late, r->gen_delay_max * 1e3,
         (unsigned long long)r->conns_closed, r->lead_seen);
  printf("measured rounds (%llu requests): latency send -> OK answer, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
         (unsigned long long)meas, dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3);
  printf("  OK answer after the end of its second, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", da.p50 * 1e3,
         da.p90 * 1e3, da.p99 * 1e3, da.max * 1e3);
  printf("  a second's answers, first to last read (fan-out), ms, over %zu seconds: p50 %.1f  max %.1f\n", nf,
         df.p50, df.max);
  printf("checked: %llu OK answers (chains, calendar chain, auth record, second), %llu built into signatures and "
         "verified (internal policy, calendar roots agree); most in flight on one connection %llu\n",
         (unsigned long long)r->checked, (unsigned long long)r->verified, (unsigned long long)max_flight);
  printf("reference: one aggregation step (SHA-256 of 67 bytes, kl_aggr_step): %.1f ns before, %.1f ns after the run\n",
         h_before, h_after);
  char res[512] = "";
  size_t rl = 0;
  if (r->win_closed) {
    printf("CPU over the measured window (%.2f s, %llu rounds, %.0f requests):\n", wwin, (unsigned long long)o.rounds, reqs);
    for (size_t k = 0; k < o.n_pids; k++) {
      double d = r->pid_cpu1[k] - r->pid_cpu0[k], dn = r->pid_ns1[k] - r->pid_ns0[k];
      printf("  %s (pid %ld): /proc/PID/stat %.2f s (%.2f ms per round); schedstat %.4f s: %.3f ms per round, %.3f us "
             "per child request (%.0f hashes), %.1f%% of one core\n",
             o.pid_name[k], o.pid[k], d, 1e3 * d / (double)o.rounds, dn, 1e3 * dn / (double)o.rounds, 1e6 * dn / reqs,
             1e9 * dn / reqs / hash, wwin > 0 ? 100 * dn / wwin : 0.0);
      if (rl < sizeof res - 160)
        rl += (size_t)snprintf(res + rl, sizeof res - rl, " %s_stat_ms_round=%.3f %s_ms_round=%.4f %s_us_req=%.4f",
                               o.pid_name[k], 1e3 * d / (double)o.rounds, o.pid_name[k], 1e3 * dn / (double)o.rounds,
                               o.pid_name[k], 1e6 * dn / reqs);
    }
    double g = r->win_cpu1 - r->win_cpu0;
    printf("  bench_aggregator: %.2f s, %.2f us per child request, %.0f%% of one core\n", g, 1e6 * g / reqs,
           wwin > 0 ? 100 * g / wwin : 0.0);
    rl += (size_t)snprintf(res + rl, sizeof res - rl, " gen_us_req=%.3f window_s=%.3f", 1e6 * g / reqs, wwin);
  }
  printf("kept up: %s%s\n", kept ? "yes" : "no", kwhy);
  printf("result children=%llu conns=%llu rounds=%llu warm=%llu period_ms=%llu sent=%llu ok=%llu retry=%llu err=%llu "
         "lost=%llu unsent=%llu gen_late=%llu closed=%llu p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f "
         "end_p50_ms=%.1f end_p99_ms=%.1f fan_p50_ms=%.1f fan_max_ms=%.1f verified=%llu max_flight=%llu lead_ms=%u "
         "hash_ns=%.1f%s kept_up=%s\n",
         (unsigned long long)o.children, (unsigned long long)o.conns, (unsigned long long)o.rounds,
         (unsigned long long)o.warm, (unsigned long long)o.period_ms, (unsigned long long)r->next,
         (unsigned long long)n_ok, (unsigned long long)n_retry, (unsigned long long)n_err, (unsigned long long)n_lost,
         (unsigned long long)n_unsent, (unsigned long long)r->gen_late, (unsigned long long)r->conns_closed,
         dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3, da.p50 * 1e3, da.p99 * 1e3, df.p50, df.max,
         (unsigned long long)r->verified, (unsigned long long)max_flight, r->lead_seen, hash, res, kept ? "yes" : "no");
  free(lat);
  free(aft);
  free(fan);
  kl_verifier_destroy(r->ver);
  kl_tls_ctx_unref(r->tls);
  kl_hasher_close(&r->h);
  free(r->q);
  free(r->c);
  free(r->secs);
  free(r);
  return 0;
}
