/* bench_core: a load generator for a running keyless-core cluster on loopback. It plays R
 * aggregators, each sending one top-level root per second-round, multiplexed over C connections
 * to the nodes' internal ports (proto/aggregation.proto Request frames, 4-byte length framing),
 * and measures how the core answers them.
 *
 * Rounds are aligned to wall-clock seconds (CLOCK_REALTIME, the clock the nodes use):
 *   - after every connection is up, the first round is the second after next; -t rounds follow;
 *   - in each round the R requests are sent evenly over the window [-o, -o + -W) milliseconds
 *     after the second starts (a 1 ms timer; -W 0: all at -o), round-robin over the connections,
 *     which are spread round-robin over the addresses given with -a;
 *   - each request is a fresh SHA-256 imprint (SHA-256 of seed and request number) at level -l
 *     (default 10), standing for an aggregator's round root;
 *   - a request is not sent again when the answer is a retry (that is counted instead).
 * For every answer: the latency from handing the request to libuv (uv_write) to having read the
 * answer; the second it was committed in; its status. And how long after the end of its round
 * (wall time of the answer minus the end of the answer's second) it came.
 *
 * Every OK answer is checked: exactly one 0x801, a calendar chain and an authentication record;
 * its second is not before the second it was sent in. A signature is built from it as an
 * aggregator at level -l would (the 0x801's first level correction plus the request level, then
 * the 0x802 and the 0x805; tests/system/core_client.c does the same at level 0) and parsed.
 * Every -v'th one is verified with kl_verifier_run under the internal policy, with the request's
 * imprint as the document hash at level -l, and its calendar root is compared with the first one
 * seen for that second from any node (so two nodes answering from forked calendars cannot pass).
 * A wrong answer, an answer nobody asked for, or a failed verification aborts (SIGABRT), so the
 * figures cannot time garbage.
 *
 * Kept up: every request answered OK within -K seconds (default 2) of being sent, no retry, no
 * error, nothing lost, and no request went out over 100 ms after its scheduled time (otherwise the
 * generator, not the core, fell behind, and the run says so).
 *
 * Bounded: -t rounds (at most -n requests in all); after the last round, answers are awaited for
 * at most -T seconds (then the rest count as lost); a guard timer aborts a run that outlives all
 * of that by 30 s. Only loopback addresses are accepted.
 *
 * Mutual TLS (-C CA -P CERT -k KEY, an aggregator certificate of the cluster CA): every
 * connection makes its TLS 1.3 handshake (keyless's memory-BIO sessions, bench_tls.c; the node
 * must present a keyless://core/N certificate) and waits for the node's empty frame that says
 * it accepted the certificate (docs/formats.md) before the load starts; then the frames go as
 * records. Without them the connections are plain, for nodes run with [tls] insecure = yes.
 *
 * With -D PID,PID,PID the nodes' CPU time (utime + stime from /proc/PID/stat) is read at the start
 * of the first round and after the last answer, and reported per round sent. The generator runs
 * on one libuv loop; on a small machine it shares the cores with the nodes, and prints its own CPU.
 *
 * Output: a human summary and one line "result key=value ..." for scripts (run_core_bench.sh).
 *
 * usage: bench_core -a HOST:PORT[,HOST:PORT...] -R RATE [-c CONNS] [-t ROUNDS] [-n COUNT]
 *                   [-l LEVEL] [-o MS] [-W MS] [-K SECONDS] [-T SECONDS] [-v EVERY] [-s SEED]
 *                   [-D PIDS] [-C CA -P CERT -k KEY] [-V]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
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

#define MAX_ADDRS 8
#define MAX_FRAME (1u << 20)

typedef struct opts {
  const char *addr[MAX_ADDRS];
  size_t n_addrs;
  uint64_t rate, rounds, max_count, conns, level, verify_every, seed;
  double offset_ms, window_ms, keep_s, drain_s;
  bool per_round;
  long pid[MAX_ADDRS]; /* -D: the nodes' processes, for their CPU time */
  size_t n_pids;
  const char *ca, *cert, *key; /* mutual TLS */
} opts_t;

/* ---- failures ---- */

static void wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void wrong(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "bench_core: WRONG ANSWER: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void die(const char *what, const char *msg) __attribute__((noreturn));
static void die(const char *what, const char *msg) {
  fflush(stdout);
  fprintf(stderr, "bench_core: %s: %s\n", what, msg);
  exit(1);
}

/* utime + stime of a process, in seconds (/proc/PID/stat); NAN if it is gone. */
static double proc_cpu(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return NAN;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long long ut, st;
  if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    die(path, "unexpected format");
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double wall_now(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) die("clock_gettime", strerror(errno));
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "127.0.0.1:8010" or "[::1]:8010"; loopback only (bench_util). */
static void parse_addr(const char *s, struct sockaddr_storage *out) {
  const char *why = kb_parse_loopback(s, out);
  if (why != NULL) die(s, why);
}

/* ---- state ---- */

enum { Q_UNSENT = 0, Q_FLIGHT, Q_OK, Q_RETRY, Q_ERROR, Q_LOST };

typedef struct rq {
  double sent;       /* monotonic */
  double lat;        /* seconds, send to answer */
  double after_end;  /* answer wall time minus the end of the answer's second */
  uint64_t sent_sec; /* the wall second it was sent in */
  uint64_t ans_sec;
  uint32_t status;
  uint32_t conn;
  uint8_t state;
} rq_t;

typedef struct conn {
  uv_tcp_t h;
  uv_connect_t cr;
  struct run *r;
  unsigned idx, addr;
  kb_rxbuf_t rx;
  kb_tls_t tls; /* mutual TLS only */
  uint64_t in_flight, max_in_flight;
  bool tcp_up, up, closing, lost;
  uint8_t *tx; /* frames gathered in one tick */
  size_t tx_len, tx_cap;
} conn_t;

typedef struct wreq {
  uv_write_t w;
  uint8_t *data;
} wreq_t;

typedef struct round_root {
  bool set;
  kl_imprint_t root;
} round_root_t;

typedef struct run {
  const opts_t *o;
  uv_loop_t loop;
  uv_timer_t tick, guard;
  kl_tls_ctx_t *tls; /* NULL: plain connections */
  conn_t *c;
  unsigned connected, open;
  bool started, stopping;
  uint64_t first_round; /* wall second */
  uint64_t total, next;  /* requests in all; next to send */
  unsigned next_conn;
  rq_t *q;
  double t0_mono, cpu0, t_end_mono, cpu1;
  bool in_rounds;                                 /* the first round has begun */
  double rounds_mono0, rounds_cpu0;               /* at the first round's start */
  double node_cpu0[MAX_ADDRS], node_cpu1[MAX_ADDRS];
  uint64_t in_flight;
  /* checks */
  kl_verifier_t *ver;
  kl_hasher_t h;
  round_root_t *roots; /* per second from first_round */
  size_t n_roots;
  uint64_t parsed, verified, gen_late, conns_closed, frames;
  double gen_delay_max; /* the latest a request went out after its scheduled time, seconds */
  uint32_t other_codes[8]; /* statuses other than OK and retry seen (the first of each is printed) */
  size_t n_other;
} run_t;

/* The request's imprint: SHA-256 of (seed, index), so it can be made again to check. */
static void imprint_of(const run_t *r, uint64_t i, kl_imprint_t *out) {
  uint8_t in[16];
  for (int k = 0; k < 8; k++) {
    in[k] = (uint8_t)(r->o->seed >> (8 * k));
    in[8 + k] = (uint8_t)(i >> (8 * k));
  }
  kl_err_t e;
  if (kl_hash(KL_HASH_SHA256, in, sizeof in, out, &e)) die("kl_hash", e.msg);
}

/* ---- answers ---- */

static void check_ok(run_t *r, uint64_t i, const Keyless__Aggregation__Response *a) {
  const opts_t *o = r->o;
  unsigned long long id = (unsigned long long)i + 1;
  if (a->n_chains != 1 || !a->has_calendar_chain || !a->has_auth_record)
    wrong("request %llu: OK answer with %zu chains, calendar chain %d, auth record %d", id, a->n_chains,
          a->has_calendar_chain, a->has_auth_record);
  /* The core's 0x801, with the request level added to its first link (the client's part). */
  kl_tlv_t t;
  kl_err_t e = {0};
  kl_arena_t arena = KL_ARENA_INIT;
  kl_aggr_chain_t ch;
  if (kl_tlv_parse_one(a->chains[0].data, a->chains[0].len, &t, &e) || t.type != KL_T_AGGR_CHAIN ||
      t.raw_len != a->chains[0].len)
    wrong("request %llu: the chain is not one 0x801 TLV (%s)", id, e.msg);
  if (kl_aggr_chain_decode(&t, a->chains[0].data, &arena, &ch, &e)) wrong("request %llu: 0x801: %s", id, e.msg);
  if (ch.n_links == 0) wrong("request %llu: an aggregation chain without links", id);
  if (ch.aggr_time != a->second)
    wrong("request %llu: chain time %llu, answer second %llu", id, (unsigned long long)ch.aggr_time,
          (unsigned long long)a->second);
  ch.links[0].level_corr += o->level;
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  kl_aggr_chain_encode(&b, &ch);
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
  if (r->parsed % o->verify_every == 0) {
    kl_imprint_t doc, root;
    imprint_of(r, i, &doc);
    kl_verify_opts_t vo = {.doc_hash = &doc, .doc_level = o->level};
    kl_verify_result_t res;
    kl_verifier_run(r->ver, sig, KL_POLICY_INTERNAL, &vo, &res);
    if (res.verdict != KL_VER_OK)
      wrong("request %llu (second %llu): internal verification %s %s: %s", id, (unsigned long long)a->second,
            kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
    if (kl_cal_chain_root(&r->h, sig->cal, &root, &e)) wrong("request %llu: calendar root: %s", id, e.msg);
    if (a->second >= r->first_round && a->second - r->first_round < r->n_roots) {
      round_root_t *rr = &r->roots[a->second - r->first_round];
      if (!rr->set) {
        rr->set = true;
        rr->root = root;
      } else if (!kl_imprint_eq(&rr->root, &root)) {
        wrong("request %llu from node address %s: calendar root for second %llu differs from an earlier answer's", id,
              o->addr[r->c[r->q[i].conn].addr], (unsigned long long)a->second);
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
  q->after_end = wnow - (double)(a->second + 1);
  c->in_flight--;
  r->in_flight--;
  if (a->status == KL_STATUS_OK) {
    if (a->second < q->sent_sec)
      wrong("request %llu sent in second %llu is answered for the earlier second %llu", (unsigned long long)a->request_id,
            (unsigned long long)q->sent_sec, (unsigned long long)a->second);
    check_ok(r, i, a);
    q->state = Q_OK;
  } else if (a->status == KL_STATUS_UPSTREAM_ERROR) {
    q->state = Q_RETRY;
  } else {
    q->state = Q_ERROR;
    bool seen = false;
    for (size_t k = 0; k < r->n_other; k++) seen |= r->other_codes[k] == a->status;
    if (!seen && r->n_other < 8) {
      r->other_codes[r->n_other++] = a->status;
      fprintf(stderr, "bench_core: request %llu: status 0x%04X: %s\n", (unsigned long long)a->request_id, a->status,
              a->error ? a->error : "");
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
  if (c->closing) return;
  c->closing = true;
  if (c->tcp_up) uv_read_stop((uv_stream_t *)&c->h);
  uv_close((uv_handle_t *)&c->h, on_close);
}

/* The core closed a connection: what was in flight on it is lost. */
static void conn_lost(conn_t *c, const char *why) {
  run_t *r = c->r;
  if (c->lost || c->closing) return;
  c->lost = true;
  r->conns_closed++;
  fprintf(stderr, "bench_core: connection %u to %s closed by the core (%s) with %llu requests in flight\n", c->idx,
          r->o->addr[c->addr], why, (unsigned long long)c->in_flight);
  for (uint64_t i = 0; i < r->next; i++)
    if (r->q[i].state == Q_FLIGHT && r->q[i].conn == c->idx) {
      r->q[i].state = Q_LOST;
      r->in_flight--;
    }
  c->in_flight = 0;
  conn_close(c);
  bool any = false;
  for (unsigned k = 0; k < r->o->conns; k++) any |= !r->c[k].lost && !r->c[k].closing;
  if (!any) { /* nothing left to send on: the rest is never sent */
    fprintf(stderr, "bench_core: every connection was closed by the core; stopping\n");
    stop(r);
  } else {
    maybe_stop(r);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  conn_t *c = h->data;
  if (c->tls.s != NULL) { /* ciphertext: decrypted into c->rx by kb_tls_read */
    *b = kb_tls_scratch();
    return;
  }
  size_t avail = 0;
  uint8_t *p = kb_rx_space(&c->rx, 65536, 262144, &avail);
  if (p == NULL) die("read buffer", "out of memory");
  *b = uv_buf_init((char *)p, (unsigned)avail);
}

static void conn_ready(conn_t *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *c = s->data;
  if (n < 0 && !c->up)
    die(c->r->o->addr[c->addr], n == UV_EOF ? "closed by the node during the TLS handshake (is it run with "
                                              "[tls] insecure = yes, or does it refuse the certificate?)"
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
    if (st < 0) wrong("TLS from %s: %s", c->r->o->addr[c->addr], e.msg);
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
    if (len == 0 && c->tls.s != NULL && !c->up) { /* the node judged the certificate: accepted */
      conn_ready(c);
      continue;
    }
    if (len == 0) wrong("an empty frame from %s%s", c->r->o->addr[c->addr], c->tls.s ? " after the accept" : "");
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
  imprint_of(r, i, &imp);
  rq.request_id = i + 1;
  rq.imprint.len = kl_imprint_to_bytes(&imp, ib);
  rq.imprint.data = ib;
  rq.level = (uint32_t)r->o->level;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
  m.request = &rq;
  size_t n = keyless__aggregation__message__get_packed_size(&m);
  if (c->tx_cap - c->tx_len < n + 4) {
    size_t cap = c->tx_cap ? 2 * c->tx_cap : 8192;
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
  if (c->tls.s != NULL) { /* encrypted into records of their own: the plaintext is done with */
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

/* How many requests are due by wall time w: whole rounds before w's second, and the share of
 * w's own round that the window has reached. */
static uint64_t due_at(const run_t *r, double w) {
  const opts_t *o = r->o;
  if (w < (double)r->first_round) return 0;
  uint64_t s = (uint64_t)w, k = s - r->first_round;
  if (k >= o->rounds) return r->total;
  double ms = (w - (double)s) * 1000.0 - o->offset_ms;
  uint64_t part;
  if (ms < 0) part = 0;
  else if (o->window_ms <= 0 || ms >= o->window_ms) part = o->rate;
  else part = (uint64_t)ceil((double)o->rate * ms / o->window_ms);
  uint64_t d = k * o->rate + part;
  return d < r->total ? d : r->total;
}

static void on_tick(uv_timer_t *t) {
  run_t *r = t->data;
  if (r->stopping) return;
  double w = wall_now();
  if (!r->in_rounds && w >= (double)r->first_round) { /* CPU from here to the last answer */
    r->in_rounds = true;
    r->rounds_mono0 = kb_now();
    r->rounds_cpu0 = kb_cpu();
    for (size_t k = 0; k < r->o->n_pids; k++) r->node_cpu0[k] = proc_cpu(r->o->pid[k]);
  }
  uint64_t due = due_at(r, w);
  if (due <= r->next) return;
  double now = kb_now();
  uint64_t sec = (uint64_t)w;
  unsigned nc = (unsigned)r->o->conns;
  for (; r->next < due; r->next++) {
    conn_t *c = NULL;
    for (unsigned k = 0; k < nc && c == NULL; k++) {
      conn_t *x = &r->c[(r->next_conn + k) % nc];
      if (!x->lost && !x->closing) c = x;
    }
    if (c == NULL) return; /* cannot happen: conn_lost stops the run with the last connection */
    r->next_conn = (c->idx + 1) % nc;
    rq_t *q = &r->q[r->next];
    put_request(r, c, r->next);
    q->state = Q_FLIGHT;
    q->sent = now;
    q->sent_sec = sec;
    q->conn = c->idx;
    /* request m of round k is due at second k + (offset + window * m / rate) ms; later than
     * 100 ms after that, the generator (not the core) is behind */
    uint64_t k = r->next / r->o->rate, mi = r->next % r->o->rate;
    double sched = (double)(r->first_round + k) + (r->o->offset_ms + r->o->window_ms * (double)mi / (double)r->o->rate) / 1e3;
    if (w - sched > r->gen_delay_max) r->gen_delay_max = w - sched;
    if (w - sched > 0.1) r->gen_late++;
    if (++c->in_flight > c->max_in_flight) c->max_in_flight = c->in_flight;
    r->in_flight++;
  }
  for (unsigned k = 0; k < nc; k++)
    if (!r->c[k].lost && !r->c[k].closing) flush(&r->c[k]);
  /* the sends are stamped before the writes; the packing of this tick is inside the latency */
}

static void stop(run_t *r) {
  if (r->stopping) return;
  r->stopping = true;
  r->t_end_mono = kb_now();
  r->cpu1 = kb_cpu();
  for (size_t k = 0; k < r->o->n_pids; k++) r->node_cpu1[k] = proc_cpu(r->o->pid[k]);
  uv_timer_stop(&r->tick);
  uv_timer_stop(&r->guard);
  for (uint64_t i = 0; i < r->next; i++)
    if (r->q[i].state == Q_FLIGHT) r->q[i].state = Q_LOST;
  for (unsigned k = 0; k < r->o->conns; k++) conn_close(&r->c[k]);
}

static void maybe_stop(run_t *r) {
  if (r->started && r->next == r->total && r->in_flight == 0) stop(r);
}

/* The guard: first the drain deadline (the rest are lost), then a hard stop. */
static void on_guard(uv_timer_t *t) {
  run_t *r = t->data;
  double end = (double)(r->first_round + r->o->rounds) + r->o->drain_s;
  if (r->next == r->total && wall_now() >= end) {
    fprintf(stderr, "bench_core: %llu requests unanswered %.0f s after the last round: counted as lost\n",
            (unsigned long long)r->in_flight, r->o->drain_s);
    stop(r);
  } else if (wall_now() >= end + 30) {
    die("guard", "the run did not end 30 s after its drain deadline");
  }
}

static void start_load(run_t *r) {
  r->first_round = (uint64_t)wall_now() + 2;
  r->started = true;
  r->t0_mono = kb_now();
  r->cpu0 = kb_cpu();
  uv_timer_start(&r->tick, on_tick, 1, 1);
  uv_timer_start(&r->guard, on_guard, 100, 100);
}

/* The connection can carry requests: TCP is up and, with TLS, the node accepted us. */
static void conn_ready(conn_t *c) {
  run_t *r = c->r;
  c->up = true;
  if (++r->connected == r->o->conns) start_load(r);
}

static void on_connect(uv_connect_t *cr, int status) {
  conn_t *c = cr->handle->data;
  run_t *r = c->r;
  if (status < 0) die(r->o->addr[c->addr], uv_strerror(status));
  c->tcp_up = true;
  int rc = uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
  if (rc) die("uv_read_start", uv_strerror(rc));
  if (r->tls != NULL) { /* ready once the handshake is done (on_read) */
    kl_err_t e = {0};
    if (kb_tls_start(&c->tls, r->tls, (uv_stream_t *)&c->h, KL_ROLE_CORE, &e)) die("TLS", e.msg);
    return;
  }
  conn_ready(c);
}

/* ---- figures ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q) { /* nearest rank */
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
          "usage: bench_core -a HOST:PORT[,HOST:PORT...] -R RATE [-c CONNS] [-t ROUNDS] [-n COUNT] [-l LEVEL]\n"
          "                  [-o MS] [-W MS] [-K SECONDS] [-T SECONDS] [-v EVERY] [-s SEED]\n"
          "                  [-D PIDS] [-C CA -P CERT -k KEY] [-V]\n"
          "  -a LIST     the core nodes' internal ports, comma-separated (loopback only)\n"
          "  -R RATE     requests per second-round, in total over all connections (aggregators)\n"
          "  -c CONNS    connections, spread round-robin over the addresses (default 30)\n"
          "  -t ROUNDS   second-rounds to send in (default 20)\n"
          "  -n COUNT    at most COUNT requests in all (default 2000000, at most 20000000; rounds are\n"
          "              cut to fit)\n"
          "  -l LEVEL    the requests' level (default 10)\n"
          "  -o MS       the round's requests start MS ms after the second starts (default 10)\n"
          "  -W MS       ... and are spread evenly over MS ms (default 100; 0: all at once); a request\n"
          "              going out over 100 ms after its time means the generator fell behind\n"
          "  -K SECONDS  kept up: every request answered OK within this (default 2)\n"
          "  -T SECONDS  after the last round, wait this long for answers (default 10)\n"
          "  -v EVERY    verify every EVERY'th OK answer (default 10; 1: all); all are parsed\n"
          "  -s SEED     seed of the imprints (default 1)\n"
          "  -D PIDS     the nodes' process ids, comma-separated: their CPU time from the start of the\n"
          "              first round to the last answer, per round sent\n"
          "  -C CA       mutual TLS 1.3 to the nodes: the cluster CA (PEM); with -P and -k, an aggregator's\n"
          "  -P CERT     certificate and key (keyless devpki ... --nodes aggregator:1); the nodes must\n"
          "  -k KEY      present core certificates. Without them: plain TCP ([tls] insecure = yes)\n"
          "  -V          a line per round\n");
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
  opts_t o = {.rounds = 20, .max_count = 2000000, .conns = 30, .level = 10, .verify_every = 10, .seed = 1,
              .offset_ms = 10, .window_ms = 100, .keep_s = 2, .drain_s = 10};
  char *addrs = NULL;
  int ch;
  char *pids = NULL;
  while ((ch = getopt(argc, argv, "a:R:c:t:n:l:o:W:K:T:v:s:D:C:P:k:Vh")) != -1) {
    bool ok = true;
    switch (ch) {
      case 'a': addrs = optarg; break;
      case 'R': ok = kb_parse_count(optarg, &o.rate) && o.rate <= 1000000; break;
      case 'c': ok = kb_parse_count(optarg, &o.conns) && o.conns <= 20000; break;
      case 't': ok = kb_parse_count(optarg, &o.rounds) && o.rounds <= 3600; break;
      case 'n': ok = kb_parse_count(optarg, &o.max_count) && o.max_count <= 20000000; break;
      case 'l':
        ok = (kb_parse_count(optarg, &o.level) || strcmp(optarg, "0") == 0) && o.level <= 200;
        if (strcmp(optarg, "0") == 0) o.level = 0;
        break;
      case 'o': ok = parse_dbl(optarg, 0, 900, &o.offset_ms); break;
      case 'W': ok = parse_dbl(optarg, 0, 1000, &o.window_ms); break;
      case 'K': ok = kb_parse_seconds(optarg, &o.keep_s); break;
      case 'T': ok = kb_parse_seconds(optarg, &o.drain_s) && o.drain_s <= 300; break;
      case 'v': ok = kb_parse_count(optarg, &o.verify_every); break;
      case 's': ok = kb_parse_count(optarg, &o.seed); break;
      case 'D': pids = optarg; break;
      case 'C': o.ca = optarg; break;
      case 'P': o.cert = optarg; break;
      case 'k': o.key = optarg; break;
      case 'V': o.per_round = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "bench_core: bad value '%s' for -%c\n", optarg, ch);
      return 2;
    }
  }
  if (optind != argc || addrs == NULL || o.rate == 0) {
    usage(stderr);
    return 2;
  }
  if (o.offset_ms + o.window_ms > 1000) die("-o/-W", "the window must end within the second");
  if ((o.ca != NULL) != (o.cert != NULL) || (o.cert != NULL) != (o.key != NULL)) die("-C/-P/-k", "give all three or none");
  for (char *save = NULL, *tok = strtok_r(addrs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (o.n_addrs == MAX_ADDRS) die("-a", "too many addresses");
    o.addr[o.n_addrs++] = tok;
  }
  for (char *save = NULL, *tok = pids ? strtok_r(pids, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
    uint64_t v;
    if (o.n_pids == MAX_ADDRS || !kb_parse_count(tok, &v) || v >= (1u << 31)) die("-D", "expected PID,PID,...");
    o.pid[o.n_pids++] = (long)v;
    if (isnan(proc_cpu((long)v))) die("-D", "no such process");
  }
  if (o.max_count / o.rate < o.rounds) o.rounds = o.max_count / o.rate;
  if (o.rounds == 0) die("-n", "fewer than one round's requests");
  signal(SIGPIPE, SIG_IGN);

  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) die("run", "out of memory");
  r->o = &o;
  r->total = o.rate * o.rounds;
  r->q = calloc(r->total, sizeof *r->q);
  r->c = calloc(o.conns, sizeof *r->c);
  r->n_roots = o.rounds + (size_t)o.drain_s + 8;
  r->roots = calloc(r->n_roots, sizeof *r->roots);
  kl_err_t e = {0};
  if (r->q == NULL || r->c == NULL || r->roots == NULL) die("run", "out of memory");
  if (kl_verifier_create(&r->ver, &e) || kl_hasher_init(&r->h, &e)) die("verifier", e.msg);
  if (o.ca != NULL) r->tls = kb_tls_client_ctx("bench_core", o.ca, o.cert, o.key);

  kb_print_header("bench_core");
  printf("target: %zu nodes (", o.n_addrs);
  for (size_t k = 0; k < o.n_addrs; k++) printf("%s%s", k ? ", " : "", o.addr[k]);
  printf("); %llu connections, %s\n", (unsigned long long)o.conns,
         r->tls ? "mutual TLS 1.3 (handshakes before the load starts)" : "plain TCP");
  printf("load: %llu requests per second-round (aggregator roots at level %llu) for %llu rounds, each round's sent "
         "evenly over [%.0f, %.0f) ms of its second, round-robin over the connections\n",
         (unsigned long long)o.rate, (unsigned long long)o.level, (unsigned long long)o.rounds, o.offset_ms,
         o.offset_ms + o.window_ms);
  printf("checks: every OK answer parsed as a signature, every %llu'th verified (internal policy) and its calendar "
         "root compared across nodes; kept up = all OK within %.1f s; drain %.0f s\n",
         (unsigned long long)o.verify_every, o.keep_s, o.drain_s);
  fflush(stdout);

  int rc = uv_loop_init(&r->loop);
  if (rc) die("uv_loop_init", uv_strerror(rc));
  uv_timer_init(&r->loop, &r->tick);
  uv_timer_init(&r->loop, &r->guard);
  r->tick.data = r->guard.data = r;
  for (unsigned i = 0; i < o.conns; i++) {
    conn_t *c = &r->c[i];
    struct sockaddr_storage sa;
    c->r = r;
    c->idx = i;
    c->addr = (unsigned)(i % o.n_addrs);
    parse_addr(o.addr[c->addr], &sa);
    uv_tcp_init(&r->loop, &c->h);
    c->h.data = c;
    uv_tcp_nodelay(&c->h, 1);
    rc = uv_tcp_connect(&c->cr, &c->h, (const struct sockaddr *)&sa, on_connect);
    if (rc) die("uv_tcp_connect", uv_strerror(rc));
    r->open++;
  }
  uv_run(&r->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&r->loop);
  if (rc) die("uv_loop_close", uv_strerror(rc));

  /* ---- figures ---- */
  uint64_t n_ok = 0, n_retry = 0, n_err = 0, n_lost = 0, n_unsent = 0, moved = 0, slow = 0;
  double *lat = malloc(r->total * sizeof *lat), *aft = malloc(r->total * sizeof *aft);
  if (lat == NULL || aft == NULL) die("figures", "out of memory");
  size_t nl = 0;
  for (uint64_t i = 0; i < r->total; i++) {
    const rq_t *q = &r->q[i];
    switch (q->state) {
      case Q_OK:
        n_ok++;
        lat[nl] = q->lat;
        aft[nl++] = q->after_end;
        moved += q->ans_sec != q->sent_sec;
        slow += q->lat > o.keep_s;
        break;
      case Q_RETRY: n_retry++; break;
      case Q_ERROR: n_err++; break;
      case Q_UNSENT: n_unsent++; break;
      default: n_lost++; break;
    }
  }
  if (o.per_round) {
    printf("\n%-11s %7s %7s %6s %6s %6s %9s %9s %9s\n", "round", "sent", "ok", "retry", "err+lost", "moved", "p50 ms",
           "max ms", "end+ ms");
    double *v = malloc(o.rate * sizeof *v);
    if (v == NULL) die("figures", "out of memory");
    for (uint64_t k = 0; k < o.rounds; k++) {
      uint64_t ok = 0, rt = 0, ot = 0, mv = 0;
      size_t nv = 0;
      double emax = NAN;
      for (uint64_t i = k * o.rate; i < (k + 1) * o.rate; i++) {
        const rq_t *q = &r->q[i];
        if (q->state == Q_OK) {
          ok++;
          v[nv++] = q->lat;
          mv += q->ans_sec != q->sent_sec;
          if (isnan(emax) || q->after_end > emax) emax = q->after_end;
        } else if (q->state == Q_RETRY) rt++;
        else ot++;
      }
      dist_t d = dist_of(v, nv);
      printf("%-11llu %7llu %7llu %6llu %6llu %6llu %9.1f %9.1f %9.1f\n", (unsigned long long)(r->first_round + k),
             (unsigned long long)o.rate, (unsigned long long)ok, (unsigned long long)rt, (unsigned long long)ot,
             (unsigned long long)mv, d.p50 * 1e3, d.max * 1e3, emax * 1e3);
    }
    free(v);
  }
  dist_t dl = dist_of(lat, nl), da = dist_of(aft, nl);
  uint64_t max_flight = 0;
  for (unsigned k = 0; k < o.conns; k++)
    if (r->c[k].max_in_flight > max_flight) max_flight = r->c[k].max_in_flight;
  double wall = r->t_end_mono - r->t0_mono, cpu = r->cpu1 - r->cpu0;
  bool kept = n_ok == r->total && slow == 0 && r->gen_late == 0;
  const char *why = kept ? "" : n_lost || n_unsent || r->conns_closed ? " (requests lost)"
                             : r->gen_late ? " (the generator fell behind: the run says nothing of the core)"
                             : n_retry || n_err ? " (retries or errors)"
                                                : " (answers slower than -K)";
  printf("\nsent %llu in %llu rounds (from second %llu); answered OK %llu, retry %llu, other errors %llu, lost %llu, never sent %llu; "
         "OK in a later second than sent %llu; sent over 100 ms late %llu (at most %.1f ms late); connections closed by "
         "the core %llu\n",
         (unsigned long long)r->next, (unsigned long long)o.rounds, (unsigned long long)r->first_round,
         (unsigned long long)n_ok, (unsigned long long)n_retry, (unsigned long long)n_err, (unsigned long long)n_lost,
         (unsigned long long)n_unsent, (unsigned long long)moved, (unsigned long long)r->gen_late, r->gen_delay_max * 1e3,
         (unsigned long long)r->conns_closed);
  printf("latency send -> OK answer, ms:         p50 %.1f  p90 %.1f  p99 %.1f  max %.1f (over %.1f s: %llu)\n",
         dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3, o.keep_s, (unsigned long long)slow);
  printf("OK answer after the end of its second, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", da.p50 * 1e3,
         da.p90 * 1e3, da.p99 * 1e3, da.max * 1e3);
  for (size_t a = 0; a < o.n_addrs; a++) { /* per node: how long after the round's end its answers came */
    size_t k = 0;
    uint64_t nr = 0;
    for (uint64_t i = 0; i < r->total; i++) {
      const rq_t *q = &r->q[i];
      if (r->c[q->conn].addr != a) continue;
      if (q->state == Q_OK) aft[k++] = q->after_end;
      else if (q->state == Q_RETRY) nr++;
    }
    dist_t d = dist_of(aft, k);
    printf("  node %s: OK %zu, retry %llu; after the end of the second, ms: p50 %.1f  p99 %.1f  max %.1f\n", o.addr[a],
           k, (unsigned long long)nr, d.p50 * 1e3, d.p99 * 1e3, d.max * 1e3);
  }
  printf("checked: %llu signatures parsed, %llu verified (internal policy, calendar roots agree across nodes); most "
         "in flight on one connection %llu\n",
         (unsigned long long)r->parsed, (unsigned long long)r->verified, (unsigned long long)max_flight);
  printf("generator: %.1f s, cpu %.1f s (%.0f%% of one core)\n", wall, cpu, wall > 0 ? 100 * cpu / wall : 0.0);
  double rwall = r->in_rounds ? r->t_end_mono - r->rounds_mono0 : 0;
  char nodecpu[256] = "";
  size_t nlen = 0;
  if (o.n_pids && r->in_rounds) {
    printf("CPU from the first round's start to the last answer (%.1f s, %llu rounds sent):\n", rwall,
           (unsigned long long)o.rounds);
    for (size_t k = 0; k < o.n_pids; k++) {
      double d = r->node_cpu1[k] - r->node_cpu0[k];
      printf("  pid %ld: %.2f s, %.1f ms per round, %.0f%% of one core\n", o.pid[k], d, 1e3 * d / (double)o.rounds,
             rwall > 0 ? 100 * d / rwall : 0.0);
      if (nlen < sizeof nodecpu - 40)
        nlen += (size_t)snprintf(nodecpu + nlen, sizeof nodecpu - nlen, " cpu_ms_round_%zu=%.1f", k + 1,
                                 1e3 * d / (double)o.rounds);
    }
    double gc = r->cpu1 - r->rounds_cpu0;
    printf("  bench_core: %.2f s, %.1f ms per round, %.0f%% of one core\n", gc, 1e3 * gc / (double)o.rounds,
           rwall > 0 ? 100 * gc / rwall : 0.0);
  }
  printf("kept up: %s%s\n", kept ? "yes" : "no", why);
  printf("result rate=%llu conns=%llu rounds=%llu sent=%llu ok=%llu retry=%llu err=%llu lost=%llu unsent=%llu moved=%llu "
         "gen_late=%llu closed=%llu p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f end_p50_ms=%.1f end_p99_ms=%.1f "
         "end_max_ms=%.1f verified=%llu max_flight=%llu gen_cpu=%.0f%%%s kept_up=%s\n",
         (unsigned long long)o.rate, (unsigned long long)o.conns, (unsigned long long)o.rounds,
         (unsigned long long)r->next, (unsigned long long)n_ok, (unsigned long long)n_retry, (unsigned long long)n_err,
         (unsigned long long)n_lost, (unsigned long long)n_unsent, (unsigned long long)moved, (unsigned long long)r->gen_late,
         (unsigned long long)r->conns_closed, dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3, da.p50 * 1e3,
         da.p99 * 1e3, da.max * 1e3, (unsigned long long)r->verified, (unsigned long long)max_flight,
         wall > 0 ? 100 * cpu / wall : 0.0, nodecpu, kept ? "yes" : "no");
  free(lat);
  free(aft);
  kl_verifier_destroy(r->ver);
  kl_tls_ctx_unref(r->tls);
  kl_hasher_close(&r->h);
  free(r->q);
  free(r->c);
  free(r->roots);
  free(r);
  return 0;
}
