/* bench_gateway: a load generator for a running keyless-gateway on loopback. Signatures per
 * second and the latency distribution at the client, over ksi+tcp, HTTP or https, with one or
 * many aggregation requests per PDU as the KSI SDKs send them.
 *
 * Why many requests in flight. A request waits for the gateway's round (default 100 ms), then
 * the aggregator's (100 ms), then the core's one-second round, its grace and its commit: about
 * 1 to 1.5 s end to end however idle the network is. So one connection with one request in
 * flight gets less than one signature a second, and throughput = requests in flight / latency
 * (Little's law). This program keeps C connections x N PDUs x K requests in flight and reports
 * how many it had on average next to the rate.
 *
 * The load (one libuv loop, one thread):
 *   - the configuration is asked for first (a config-only PDU on a blocking socket), which also
 *     checks the login and key;
 *   - C connections are opened (at most 256 connects at a time; not timed);
 *   - ksi+tcp: each connection keeps --inflight PDUs in flight (PDUs back to back on one stream;
 *     the gateway answers them in order, and answers are matched by request id anyway);
 *     HTTP: each connection sends one keep-alive POST at a time (--inflight is 1);
 *     https: the same over TLS (keyless's memory-BIO sessions, bench_tls.c): the handshake is
 *     made once per connection during the connect phase (server certificate checked against
 *     --ca), then every request and answer are records on that kept-alive connection; the
 *     connect phase's length and the processes' CPU over it are reported per connection (for
 *     https that is mostly the handshake);
 *   - each PDU is a fresh 0x220 with --per-pdu aggregation requests, new request ids and
 *     pseudo-random SHA-256 document hashes (from the seed and the request id, so they need not
 *     be stored), HMAC-SHA-256 with --user/--key. Building it is not inside the latency;
 *   - closed loop: a new PDU goes out as soon as one is answered. With --rate R the requests
 *     are paced instead (open loop, a 2 ms timer), still never more than the in-flight cap per
 *     connection; requests the pacer could not send because every connection was full are
 *     counted as "not sent" (the offered rate was then not kept).
 * Timing: warm-up (--warmup, default 3 s: the first answers take a core round), then the
 * measured window (--duration, default 20 s, and/or until --count requests were sent), then
 * new PDUs stop and the answers in flight are awaited (--drain, default 10 s; what is still
 * unanswered then counts as lost). Rate = requests answered with status 0 during the window /
 * window length. Latency: per PDU, from handing it to libuv (uv_write) to having read the whole
 * answer, over the PDUs answered during the window; percentiles are nearest-rank.
 *
 * Every answer is checked; the benchmark aborts (SIGABRT) on a wrong answer so that it cannot
 * time garbage: it must parse (kl_pdu_parse) as an 0x221; unless it is an error-only PDU its
 * HMAC must check with the key (SHA-256, as sent) and it must echo the login; its responses must
 * be for request ids of one PDU in flight on that connection, each at most once; a status-0
 * response must carry an aggregation chain whose input is the document hash sent and a calendar
 * chain. Statuses other than 0 (per request, or a PDU-level error for all requests of the PDU),
 * requests missing from an answer, non-200 HTTP answers and requests lost with a closed
 * connection are counted by kind, not fatal. With --verify-sample N, every Nth status-0
 * response is made into a signature (kl_pdu_aggr_resp_sig, kl_sig_parse) and verified with the
 * internal policy and the document hash; its signing time must lie within the request's flight
 * (+-2 s), and its calendar root must equal the first one seen for the same second.
 *
 * CPU: the client's own (CLOCK_PROCESS_CPUTIME_ID), and with -D the daemons' (utime + stime
 * from /proc/PID/stat) over the window, their RSS at its end, and the rest of the machine's
 * ("others": cores x wall time - idle time from /proc/stat - the processes named).
 *
 * Output: a human summary and one "result key=value ..." line (run_gateway_bench.sh reads it).
 * Only loopback addresses are accepted. Bounded: the connect phase by 30 s, the load by
 * warm-up + duration (at most 3600 s each), the drain by --drain, and a guard timer aborts a
 * run that outlives all of that by 30 s.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench_tls.h"
#include "bench_util.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/verify.h"

enum { T_TCP, T_HTTP, T_HTTPS };
static const char *const transport_name[3] = {"tcp", "http", "https"};
#define IS_HTTP(t) ((t) != T_TCP)

#define MAX_HTTP_HEADER 16384
#define MAX_PER_PDU 1000
#define MAX_DAEMONS 8
#define MAX_CONNECTING 256
#define FIRST_RX (2 * (KL_PDU_MAX_SIZE + MAX_HTTP_HEADER))

typedef struct daemon_ref {
  char name[32];
  long pid;
} daemon_ref_t;

typedef struct opts {
  const char *addr;
  int transport;
  unsigned conns, inflight, per_pdu;
  double duration, warmup, drain, rate; /* rate 0: closed loop */
  uint64_t count;                        /* 0: no bound but the duration */
  const char *user, *key;
  size_t keylen;
  const char *ca; /* https: the CA the gateway's certificate must chain to */
  uint64_t verify_every; /* 0: off */
  uint64_t seed;
  bool progress;
  daemon_ref_t daemons[MAX_DAEMONS];
  size_t n_daemons;
} opts_t;

/* ---- failures ---- */

static void wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void wrong(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "bench_gateway: WRONG ANSWER: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void die(const char *what, const char *msg) __attribute__((noreturn));
static void die(const char *what, const char *msg) {
  fflush(stdout);
  fprintf(stderr, "bench_gateway: %s: %s\n", what, msg);
  exit(1);
}

/* ---- document hashes: pseudo-random, recomputed from the request id ---- */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void doc_hash(uint64_t seed, uint64_t id, kl_imprint_t *h) {
  uint64_t s = seed * 0xD1B54A32D192ED03ull ^ id;
  memset(h, 0, sizeof *h);
  h->alg = KL_HASH_SHA256;
  h->len = 32;
  for (int i = 0; i < 4; i++) {
    uint64_t v = splitmix(&s);
    memcpy(h->digest + 8 * i, &v, 8);
  }
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- requests ---- */

/* An aggregation request PDU with k requests, ids base..base+k-1 (config: a config-only one).
 * Caller frees *out. */
static void make_pdu(const opts_t *o, uint64_t base, unsigned k, bool config, uint8_t **out, size_t *len) {
  kl_pdu_writer_t w;
  kl_err_t e;
  kl_pdu_header_t h = {.login_id = o->user};
  int r = kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &h, &e);
  for (unsigned i = 0; r == 0 && i < k; i++) {
    kl_pdu_aggr_req_t q = {.request_id = base + i};
    doc_hash(o->seed, base + i, &q.hash);
    r = kl_pdu_add_aggr_req(&w, &q, &e);
  }
  if (r == 0 && config) r = kl_pdu_add_config_req(&w, &e);
  if (r == 0) r = kl_pdu_writer_finish(&w, KL_HASH_SHA256, o->key, o->keylen, out, len, &e);
  else kl_pdu_writer_free(&w);
  if (r) die("building a request PDU", e.msg);
}

static size_t http_head(char *buf, size_t cap, const char *hostport, size_t len) {
  int n = snprintf(buf, cap,
                   "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ksi-request\r\n"
                   "User-Agent: bench_gateway\r\nContent-Length: %zu\r\n\r\n",
                   hostport, len);
  if (n < 0 || (size_t)n >= cap) die("HTTP request", "head too long");
  return (size_t)n;
}

/* ---- answers: framing ---- */

typedef struct frame {
  const uint8_t *body;
  size_t blen, used;
  int http_status; /* 200 for ksi+tcp */
  bool closes;     /* HTTP: "Connection: close" */
} frame_t;

/* One whole answer at the start of p[0..n): 1 and *f; 0 if more bytes are needed. Malformed
 * framing aborts. */
static int next_frame(int transport, const uint8_t *p, size_t n, frame_t *f) {
  memset(f, 0, sizeof *f);
  if (transport == T_TCP) {
    if (n < 2) return 0;
    if (!(p[0] & 0x80)) wrong("ksi+tcp: a frame that is not a TLV16 (first byte 0x%02X)", p[0]);
    if (n < 4) return 0;
    size_t vl = (size_t)p[2] << 8 | p[3];
    if (n < 4 + vl) return 0;
    f->body = p;
    f->blen = f->used = 4 + vl;
    f->http_status = 200;
    return 1;
  }
  const uint8_t *end = NULL;
  for (size_t k = 0; k + 4 <= n && end == NULL; k++)
    if (p[k] == '\r' && memcmp(p + k, "\r\n\r\n", 4) == 0) end = p + k;
  if (end == NULL) {
    if (n > MAX_HTTP_HEADER) wrong("HTTP answer head over %d bytes", MAX_HTTP_HEADER);
    return 0;
  }
  size_t head = (size_t)(end - p) + 4;
  int code = 0;
  if (head < 13 || memcmp(p, "HTTP/1.", 7) != 0 || sscanf((const char *)p + 9, "%3d", &code) != 1)
    wrong("HTTP answer without a status line: '%.*s'", (int)(head < 40 ? head : 40), (const char *)p);
  bool have_cl = false;
  size_t cl = 0;
  const char *line = memchr(p, '\n', head);
  while (line != NULL && (const uint8_t *)line + 1 < end) {
    line++;
    const char *eol = memchr(line, '\r', (size_t)((const char *)end - line) + 1);
    size_t ll = (size_t)(eol - line);
    if (ll >= 15 && strncasecmp(line, "content-length:", 15) == 0) {
      char num[24];
      size_t k = 15, m = 0;
      while (k < ll && line[k] == ' ') k++;
      while (k < ll && m + 1 < sizeof num) num[m++] = line[k++];
      num[m] = '\0';
      char *e = NULL;
      unsigned long long v = strtoull(num, &e, 10);
      if (m == 0 || *e != '\0' || v > KL_PDU_MAX_SIZE) wrong("HTTP answer with a bad Content-Length '%s'", num);
      cl = (size_t)v;
      have_cl = true;
    } else if (ll >= 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
      wrong("HTTP answer with Transfer-Encoding (expected Content-Length)");
    } else if (ll >= 11 && strncasecmp(line, "connection:", 11) == 0) {
      for (size_t k = 11; k + 5 <= ll; k++)
        if (strncasecmp(line + k, "close", 5) == 0) f->closes = true;
    }
    line = memchr(eol, '\n', (size_t)((const char *)end - eol) + 2);
  }
  if (!have_cl) wrong("HTTP answer %d without Content-Length", code);
  if (n < head + cl) return 0;
  f->body = p + head;
  f->blen = cl;
  f->used = head + cl;
  f->http_status = code;
  return 1;
}

/* ---- outcome counters ---- */

enum { K_STATUS, K_PDU_ERROR, K_HTTP, K_MISSING, K_LOST_CLOSED, K_LOST_DRAIN, K_NOT_SENT };
static const char *const kind_name[] = {"status", "PDU-level error", "HTTP status", "missing from the answer",
                                        "lost: connection closed", "lost: no answer by the end of the drain",
                                        "not sent: every connection full (--rate)"};

#define MAX_OUTCOMES 64
typedef struct outcome {
  int kind;
  uint64_t code, n, in_window;
} outcome_t;

typedef struct tally {
  outcome_t v[MAX_OUTCOMES];
  size_t n;
  uint64_t other; /* beyond MAX_OUTCOMES distinct ones */
} tally_t;

static void tally_add(tally_t *t, int kind, uint64_t code, uint64_t n, bool in_window) {
  for (size_t i = 0; i < t->n; i++)
    if (t->v[i].kind == kind && t->v[i].code == code) {
      t->v[i].n += n;
      t->v[i].in_window += in_window ? n : 0;
      return;
    }
  if (t->n == MAX_OUTCOMES) {
    t->other += n;
    return;
  }
  t->v[t->n++] = (outcome_t){kind, code, n, in_window ? n : 0};
}

/* ---- the run ---- */

typedef struct run run_t;

typedef struct pend {
  uint64_t base, seq;
  unsigned k;
  bool used;
  double sent;
} pend_t;

typedef struct conn {
  uv_tcp_t h;
  uv_connect_t cr;
  run_t *r;
  kb_rxbuf_t rx;
  pend_t *slots;
  unsigned n_slots, busy;
  uint64_t next_seq;
  kb_tls_t tls;   /* https only */
  bool connected; /* TCP connected and, for https, the handshake done */
  bool tcp_up, closing, dead;
} conn_t;

typedef struct wreq {
  uv_write_t w;
  uint8_t *pdu;
  char head[256];
} wreq_t;

typedef struct cal_seen {
  uint64_t t;
  kl_imprint_t root;
} cal_seen_t;

typedef struct proc_sample {
  double cpu; /* seconds, -1 unknown */
  uint64_t rss, peak;
  bool have_rss;
} proc_sample_t;

struct run {
  const opts_t *o;
  struct sockaddr_storage sa;
  uv_loop_t loop;
  uv_timer_t tick, pacer, phase, guard;
  conn_t *c;
  unsigned n_conns, next_connect, connecting, connected, open, rr;
  /* phases (kb_now) */
  double t0, t_ws, t_we, t_drain_end, t_last;
  bool started, window_started, stopped, drained;
  /* bookkeeping */
  uint64_t next_id, issued_reqs, issued_pdus, outstanding;
  uint64_t ok_total, ok_window, pdus_window, answered_window, errors_window;
  uint64_t ooo; /* answers that were not for the oldest PDU in flight on their connection */
  uint64_t verified, with_auth, conns_lost;
  double tokens, last_pace;
  uint64_t not_sent;
  double *lat;
  size_t n_lat, lat_cap;
  double inflight_sum;
  uint64_t inflight_samples;
  tally_t tally;
  /* progress: the current second */
  double sec_start;
  uint64_t sec_ok, sec_err, sec_pdus;
  double sec_lat_sum, sec_lat_max;
  /* checks */
  kl_verifier_t *verifier;
  cal_seen_t cal[256];
  uint64_t cal_seconds;
  /* CPU */
  double cpu0, cpu1, idle0, idle1, w0, w1;
  proc_sample_t d0[MAX_DAEMONS], d1[MAX_DAEMONS];
  uint64_t bytes_in, bytes_out;
  /* the connect phase (TLS handshakes for https) */
  kl_tls_ctx_t *tls;
  double c_t0, c_t1, c_cpu0, c_cpu1;
  proc_sample_t dc0[MAX_DAEMONS], dc1[MAX_DAEMONS];
};

static void issue(conn_t *c);
static void conn_close(conn_t *c);
static void stop_issuing(run_t *r);

static bool may_issue(const run_t *r, double now) {
  return r->started && !r->stopped && now < r->t_we && (r->o->count == 0 || r->issued_reqs < r->o->count);
}

/* The window is a state, entered and left by the phase timer (or --count), so that what is
 * counted in it and its length (w1 - w0) always agree, however late a busy loop runs timers. */
static bool in_window(const run_t *r, double now) {
  (void)now;
  return r->window_started && !r->stopped;
}

static void on_write(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  free(q->pdu);
  free(q);
  (void)status; /* a failed write shows up as a closed connection on the read side */
}

static void issue(conn_t *c) {
  run_t *r = c->r;
  const opts_t *o = r->o;
  if (c->dead || c->closing || c->busy == c->n_slots) return;
  unsigned s = 0;
  while (c->slots[s].used) s++;
  pend_t *p = &c->slots[s];
  unsigned k = o->per_pdu;
  if (o->count && r->issued_reqs + k > o->count) k = (unsigned)(o->count - r->issued_reqs);
  p->base = r->next_id;
  p->k = k;
  p->seq = c->next_seq++;
  p->used = true;
  r->next_id += k;
  wreq_t *w = malloc(sizeof *w);
  if (w == NULL) die("write", "out of memory");
  size_t len;
  make_pdu(o, p->base, k, false, &w->pdu, &len);
  uv_buf_t b[2];
  unsigned nb = 0;
  if (IS_HTTP(o->transport)) {
    size_t hl = http_head(w->head, sizeof w->head, o->addr, len);
    b[nb++] = uv_buf_init(w->head, (unsigned)hl);
    r->bytes_out += hl;
  }
  b[nb++] = uv_buf_init((char *)w->pdu, (unsigned)len);
  r->bytes_out += len;
  c->busy++;
  r->issued_reqs += k;
  r->issued_pdus++;
  r->outstanding += k;
  p->sent = kb_now();
  if (c->tls.s != NULL) { /* encrypted into records of its own: the plaintext is done with */
    kl_err_t e = {0};
    if (kb_tls_write(&c->tls, b, nb, &e)) die("https write", e.msg);
    free(w->pdu);
    free(w);
  } else {
    int rc = uv_write(&w->w, (uv_stream_t *)&c->h, b, nb, on_write);
    if (rc) die("uv_write", uv_strerror(rc));
  }
  if (o->count && r->issued_reqs >= o->count) stop_issuing(r); /* the window ends with the last request */
}

static void lat_push(run_t *r, double v) {
  if (r->n_lat == r->lat_cap) {
    size_t cap = r->lat_cap ? 2 * r->lat_cap : 65536;
    double *p = realloc(r->lat, cap * sizeof *p);
    if (p == NULL) die("latencies", "out of memory");
    r->lat = p;
    r->lat_cap = cap;
  }
  r->lat[r->n_lat++] = v;
}

/* A status-0 response made into a signature and verified (--verify-sample). */
static void verify_sig(run_t *r, const kl_pdu_aggr_resp_t *x, const kl_imprint_t *doc, double sent_wall,
                       double now_wall) {
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  kl_sig_t *sig = NULL;
  unsigned long long id = x->request_id;
  if (kl_pdu_aggr_resp_sig(x, &b, &e) || kl_buf_check(&b, &e)) wrong("request %llu: no signature: %s", id, e.msg);
  if (kl_sig_parse(b.p, b.len, &sig, &e)) wrong("request %llu: the signature does not parse: %s", id, e.msg);
  kl_buf_free(&b);
  kl_verify_opts_t vo;
  kl_verify_result_t res;
  memset(&vo, 0, sizeof vo);
  vo.doc_hash = doc;
  vo.doc_level = 0;
  kl_verifier_run(r->verifier, sig, KL_POLICY_INTERNAL, &vo, &res);
  if (res.verdict != KL_VER_OK)
    wrong("request %llu: the signature does not verify (internal policy): %s %s: %s", id,
          kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
  uint64_t t = kl_sig_signing_time(sig);
  if ((double)t < sent_wall - 2 || (double)t > now_wall + 2)
    wrong("request %llu: signing time %llu is outside the request's flight %.0f..%.0f", id, (unsigned long long)t,
          sent_wall, now_wall);
  if (sig->cal == NULL) wrong("request %llu: the signature has no calendar chain", id);
  kl_imprint_t root;
  if (kl_sig_calendar_root(sig, &root, &e)) wrong("request %llu: calendar root: %s", id, e.msg);
  cal_seen_t *cs = &r->cal[sig->cal->pub_time % 256];
  if (cs->t != sig->cal->pub_time) {
    cs->t = sig->cal->pub_time;
    cs->root = root;
    r->cal_seconds++;
  } else if (!kl_imprint_eq(&cs->root, &root)) {
    wrong("request %llu: a second calendar root for second %llu", id, (unsigned long long)cs->t);
  }
  r->with_auth += sig->auth != NULL;
  r->verified++;
  kl_sig_free(sig);
}

/* Takes the PDU in slot s of c off the books: n requests of it have been accounted for. */
static void slot_done(conn_t *c, pend_t *p) {
  run_t *r = c->r;
  r->outstanding -= p->k;
  p->used = false;
  c->busy--;
}

static pend_t *oldest(conn_t *c) {
  pend_t *best = NULL;
  for (unsigned i = 0; i < c->n_slots; i++)
    if (c->slots[i].used && (best == NULL || c->slots[i].seq < best->seq)) best = &c->slots[i];
  return best;
}

static void count_err(run_t *r, int kind, uint64_t code, uint64_t n, bool win) {
  tally_add(&r->tally, kind, code, n, win);
  if (win) r->errors_window += n;
  r->sec_err += n;
}

static void on_answer(conn_t *c, const frame_t *f) {
  run_t *r = c->r;
  const opts_t *o = r->o;
  double now = kb_now();
  bool win = in_window(r, now);
  r->bytes_in += f->used;
  if (c->busy == 0) wrong("an answer with no PDU in flight on the connection");
  pend_t *old = oldest(c), *p = NULL;
  kl_pdu_t *pdu = NULL;
  kl_err_t e = {0};
  if (f->http_status != 200) {
    p = old;
    count_err(r, K_HTTP, (uint64_t)f->http_status, p->k, win);
  } else {
    if (kl_pdu_parse(f->body, f->blen, &pdu, &e)) wrong("an answer does not parse: %s", e.msg);
    if (pdu->type != KL_PDU_AGGR_RESP) wrong("an answer of PDU type 0x%X", pdu->type);
    if (pdu->has_hmac || pdu->header) {
      if (kl_pdu_check_hmac_alg(pdu, KL_HASH_SHA256, o->key, o->keylen, &e)) wrong("HMAC: %s", e.msg);
      if (pdu->header == NULL || strcmp(pdu->header->login_id, o->user) != 0)
        wrong("the answer does not echo the login");
    }
    if (pdu->n_aggr_resps == 0) {
      if (pdu->error == NULL) wrong("an answer with neither responses nor an error");
      p = old; /* error-only: the gateway answers in order */
      count_err(r, K_PDU_ERROR, pdu->error->status, p->k, win);
    } else {
      uint64_t id0 = pdu->aggr_resps[0].request_id;
      for (unsigned i = 0; i < c->n_slots && p == NULL; i++)
        if (c->slots[i].used && id0 >= c->slots[i].base && id0 - c->slots[i].base < c->slots[i].k) p = &c->slots[i];
      if (p == NULL) wrong("an answer for request %llu, which is not in flight here", (unsigned long long)id0);
      if (pdu->error) count_err(r, K_PDU_ERROR, pdu->error->status, 0, win); /* noted, requests counted below */
      uint8_t seen[MAX_PER_PDU];
      memset(seen, 0, p->k);
      double now_wall = wall_now(), sent_wall = now_wall - (now - p->sent);
      for (size_t i = 0; i < pdu->n_aggr_resps; i++) {
        const kl_pdu_aggr_resp_t *x = &pdu->aggr_resps[i];
        unsigned long long id = x->request_id;
        if (id < p->base || id - p->base >= p->k) wrong("request %llu answered in the PDU of another", id);
        if (seen[id - p->base]++) wrong("request %llu answered twice in one PDU", id);
        if (x->status != KL_STATUS_OK) {
          count_err(r, K_STATUS, x->status, 1, win);
          continue;
        }
        if (x->n_chains == 0 || x->cal == NULL) wrong("request %llu: status 0 without an aggregation and a calendar chain", id);
        kl_imprint_t doc;
        doc_hash(o->seed, id, &doc);
        const kl_aggr_chain_t *bottom = &x->chains[0];
        for (size_t k = 1; k < x->n_chains; k++)
          if (x->chains[k].n_index > bottom->n_index) bottom = &x->chains[k];
        if (!kl_imprint_eq(&bottom->input, &doc)) wrong("request %llu: the chain starts from another hash", id);
        r->ok_total++;
        r->sec_ok++;
        if (win) r->ok_window++;
        tally_add(&r->tally, K_STATUS, 0, 1, win);
        if (o->verify_every && r->ok_total % o->verify_every == 0) verify_sig(r, x, &doc, sent_wall, now_wall);
      }
      uint64_t missing = 0;
      for (unsigned i = 0; i < p->k; i++) missing += !seen[i];
      if (missing) count_err(r, K_MISSING, 0, missing, win);
    }
  }
  if (p != old) r->ooo++;
  double lat = now - p->sent;
  if (win) {
    lat_push(r, lat);
    r->pdus_window++;
    r->answered_window += p->k;
  }
  r->sec_pdus++;
  r->sec_lat_sum += lat;
  if (lat > r->sec_lat_max) r->sec_lat_max = lat;
  r->t_last = now;
  slot_done(c, p);
  if (pdu) kl_pdu_free(pdu);
  if (f->closes) {
    c->dead = true;
    r->conns_lost++;
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
  uint8_t *p = kb_rx_space(&c->rx, 65536, FIRST_RX, &avail);
  if (p == NULL) die("read buffer", "out of memory");
  *b = uv_buf_init((char *)p, (unsigned)avail);
}

/* The connection is gone: what it had in flight is lost. */
static void conn_lost(conn_t *c, int kind) {
  run_t *r = c->r;
  bool win = in_window(r, kb_now());
  for (unsigned i = 0; i < c->n_slots; i++)
    if (c->slots[i].used) {
      count_err(r, kind, 0, c->slots[i].k, win);
      slot_done(c, &c->slots[i]);
    }
  conn_close(c);
}

static void maybe_finish(run_t *r);
static void conn_ready(conn_t *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *c = s->data;
  run_t *r = c->r;
  if (n < 0 && !c->connected) die(r->o->addr, n == UV_EOF ? "closed by the gateway during the TLS handshake" : uv_strerror((int)n));
  if (n < 0) {
    if (c->closing) return;
    if (!c->dead) r->conns_lost++;
    c->dead = true;
    conn_lost(c, K_LOST_CLOSED);
    maybe_finish(r);
    return;
  }
  if (c->tls.s != NULL) {
    kl_err_t e = {0};
    bool closed = false;
    int st = kb_tls_read(&c->tls, (const uint8_t *)b->base, (size_t)n, &c->rx, &closed, &e);
    if (st < 0 && !c->connected) die("TLS handshake", e.msg);
    if (st < 0) wrong("https: %s", e.msg);
    if (st == 1) {
      conn_ready(c);
      return;
    }
    if (closed && !c->dead) {
      c->dead = true;
      r->conns_lost++;
    }
  } else {
    c->rx.len += (size_t)n;
  }
  size_t off = 0;
  frame_t f;
  while (!c->closing && next_frame(r->o->transport, c->rx.p + off, c->rx.len - off, &f)) {
    on_answer(c, &f);
    off += f.used;
  }
  kb_rx_consume(&c->rx, off);
  if (c->dead) {
    conn_lost(c, K_LOST_CLOSED);
  } else if (r->o->rate <= 0) {
    double now = kb_now();
    while (c->busy < c->n_slots && may_issue(r, now)) issue(c);
  }
  maybe_finish(r);
}

static void on_close(uv_handle_t *h) {
  conn_t *c = h->data;
  run_t *r = c->r;
  kb_tls_free(&c->tls);
  kb_rx_free(&c->rx);
  free(c->slots);
  c->slots = NULL;
  c->n_slots = 0;
  r->open--;
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->tcp_up) uv_read_stop((uv_stream_t *)&c->h);
  uv_close((uv_handle_t *)&c->h, on_close);
}

static void close_timers(run_t *r) {
  uv_timer_t *t[] = {&r->tick, &r->pacer, &r->phase, &r->guard};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (!uv_is_closing((uv_handle_t *)t[i])) {
      uv_timer_stop(t[i]);
      uv_close((uv_handle_t *)t[i], NULL);
    }
}

/* Issuing has stopped and nothing is in flight (or the drain is over): close everything. */
static void maybe_finish(run_t *r) {
  if (!r->stopped || r->drained) return;
  if (r->outstanding != 0 && kb_now() < r->t_drain_end) return;
  r->drained = true;
  for (unsigned i = 0; i < r->n_conns; i++) {
    conn_t *c = &r->c[i];
    if (c->closing) continue;
    if (c->busy) conn_lost(c, K_LOST_DRAIN);
    else conn_close(c);
  }
  close_timers(r);
}

static void sample_procs(run_t *r, proc_sample_t *out) {
  for (size_t i = 0; i < r->o->n_daemons; i++) {
    long pid = r->o->daemons[i].pid;
    out[i].cpu = kb_proc_cpu(pid);
    out[i].have_rss = kb_proc_rss(pid, &out[i].rss, &out[i].peak);
  }
}

static void stop_issuing(run_t *r) {
  if (r->stopped) return;
  r->stopped = true;
  double now = kb_now();
  r->t_we = now; /* no new PDUs from here (the planned end, or --count reached first) */
  r->cpu1 = kb_cpu();
  r->idle1 = kb_machine_idle();
  r->w1 = now;
  sample_procs(r, r->d1);
  if (!r->window_started) { /* --count reached during the warm-up: no window */
    r->window_started = true;
    r->cpu0 = r->cpu1;
    r->idle0 = r->idle1;
    r->w0 = now;
    memcpy(r->d0, r->d1, sizeof r->d0);
  }
  r->t_drain_end = now + r->o->drain;
  uv_timer_stop(&r->pacer);
  uv_timer_stop(&r->phase);
  if (r->o->progress)
    printf("  -- %s; draining\n", r->o->count && r->issued_reqs >= r->o->count ? "--count reached" : "window ends");
}

static void on_phase(uv_timer_t *t) {
  run_t *r = t->data;
  double now = kb_now();
  if (!r->window_started) {
    r->window_started = true;
    r->cpu0 = kb_cpu();
    r->idle0 = kb_machine_idle();
    r->w0 = r->t_ws = now;
    r->t_we = now + r->o->duration;
    sample_procs(r, r->d0);
    if (r->o->progress) printf("  -- window starts (%.1f s after the first PDU)\n", now - r->t0);
    uv_update_time(&r->loop); /* the timer counts from now, not from the loop's cached time */
    uv_timer_start(&r->phase, on_phase, (uint64_t)(r->o->duration * 1000 + 0.5), 0);
    return;
  }
  stop_issuing(r);
  maybe_finish(r);
}

static void progress_line(run_t *r, double now) {
  double dt = now - r->sec_start;
  printf("  t=%6.1f s  ok/s %9.0f  errors/s %7.0f  PDUs/s %8.0f  in flight %8llu  latency mean %7.1f ms  max %7.1f ms\n",
         now - r->t0, (double)r->sec_ok / dt, (double)r->sec_err / dt, (double)r->sec_pdus / dt,
         (unsigned long long)r->outstanding, r->sec_pdus ? 1e3 * r->sec_lat_sum / (double)r->sec_pdus : 0.0,
         1e3 * r->sec_lat_max);
  fflush(stdout);
  r->sec_start = now;
  r->sec_ok = r->sec_err = r->sec_pdus = 0;
  r->sec_lat_sum = r->sec_lat_max = 0;
}

static void on_tick(uv_timer_t *t) {
  run_t *r = t->data;
  double now = kb_now();
  if (in_window(r, now)) {
    r->inflight_sum += (double)r->outstanding;
    r->inflight_samples++;
  }
  if (r->o->progress && now - r->sec_start >= 1.0) progress_line(r, now);
  maybe_finish(r);
}

/* --rate: sends what the tokens allow, round-robin over connections with room. */
static void on_pace(uv_timer_t *t) {
  run_t *r = t->data;
  double now = kb_now();
  r->tokens += (now - r->last_pace) * r->o->rate;
  r->last_pace = now;
  unsigned k = r->o->per_pdu;
  while (r->tokens >= (double)k && may_issue(r, now)) {
    conn_t *c = NULL;
    for (unsigned i = 0; i < r->n_conns && c == NULL; i++) {
      conn_t *x = &r->c[(r->rr + i) % r->n_conns];
      if (!x->dead && !x->closing && x->busy < x->n_slots) c = x;
    }
    if (c == NULL) { /* every connection full: the offered rate is not kept */
      double drop = (double)(uint64_t)(r->tokens / k) * k;
      if (drop > 0) tally_add(&r->tally, K_NOT_SENT, 0, (uint64_t)drop, in_window(r, now));
      r->not_sent += (uint64_t)drop;
      r->tokens -= drop;
      break;
    }
    r->rr = (unsigned)((c - r->c) + 1) % r->n_conns;
    issue(c);
    r->tokens -= k;
  }
}

static void on_guard(uv_timer_t *t) {
  run_t *r = t->data;
  wrong("stalled: %u of %u connections up, %llu requests in flight, %.0f s after the start", r->connected,
        r->n_conns, (unsigned long long)r->outstanding, r->started ? kb_now() - r->t0 : 0.0);
}

static void start_load(run_t *r) {
  const opts_t *o = r->o;
  r->started = true;
  r->t0 = kb_now();
  r->t_ws = r->t0 + o->warmup;
  r->t_we = r->t_ws + o->duration;
  r->sec_start = r->t0;
  r->last_pace = r->t0;
  uv_update_time(&r->loop);
  uv_timer_start(&r->tick, on_tick, 100, 100);
  uv_timer_start(&r->phase, on_phase, (uint64_t)(o->warmup * 1000 + 0.5), 0);
  uv_timer_stop(&r->guard);
  uv_timer_start(&r->guard, on_guard, (uint64_t)((o->warmup + o->duration + o->drain + 30) * 1000), 0);
  if (o->rate > 0) {
    uv_timer_start(&r->pacer, on_pace, 2, 2);
    return;
  }
  /* A connection the gateway closed while the others were still connecting (its idle timeout,
   * during a long connect phase) is skipped: issue() would not fill it, and this would spin. */
  for (unsigned i = 0; i < r->n_conns; i++)
    while (!r->c[i].dead && !r->c[i].closing && r->c[i].busy < r->c[i].n_slots && may_issue(r, r->t0))
      issue(&r->c[i]);
  if (r->conns_lost)
    printf("WARNING: the gateway closed %llu of %u connections before the load started (its [limits] "
           "idle_timeout during the connect phase?)\n",
           (unsigned long long)r->conns_lost, r->n_conns);
}

static void connect_next(run_t *r);

/* The connection can carry PDUs: TCP is up and, for https, the handshake is done. */
static void conn_ready(conn_t *c) {
  run_t *r = c->r;
  r->connecting--;
  c->connected = true;
  if (++r->connected == r->n_conns) {
    r->c_t1 = kb_now();
    r->c_cpu1 = kb_cpu();
    sample_procs(r, r->dc1);
    start_load(r);
  } else {
    connect_next(r);
  }
}

static void on_connect(uv_connect_t *cr, int status) {
  conn_t *c = cr->handle->data;
  run_t *r = c->r;
  if (status < 0) die(r->o->addr, uv_strerror(status));
  c->tcp_up = true;
  int rc = uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
  if (rc) die("uv_read_start", uv_strerror(rc));
  if (r->tls != NULL) { /* ready once the handshake is done (on_read) */
    kl_err_t e = {0};
    if (kb_tls_start(&c->tls, r->tls, (uv_stream_t *)&c->h, 0, &e)) die("TLS", e.msg);
    return;
  }
  conn_ready(c);
}

static void connect_next(run_t *r) {
  while (r->next_connect < r->n_conns && r->connecting < MAX_CONNECTING) {
    conn_t *c = &r->c[r->next_connect++];
    uv_tcp_init(&r->loop, &c->h);
    c->h.data = c;
    r->open++;
    uv_tcp_nodelay(&c->h, 1);
    int rc = uv_tcp_connect(&c->cr, &c->h, (const struct sockaddr *)&r->sa, on_connect);
    if (rc) die("uv_tcp_connect", uv_strerror(rc));
    r->connecting++;
  }
}

/* ---- the configuration, with a blocking socket ---- */

typedef struct gw_conf {
  uint64_t max_requests, aggr_period, max_level;
  bool has_max_requests, has_aggr_period, has_max_level;
} gw_conf_t;

static void send_all(int fd, const void *p, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t k = write(fd, (const uint8_t *)p + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("sending the configuration request", k == 0 ? "short write" : strerror(errno));
    done += (size_t)k;
  }
}

/* https on the probe's blocking socket: what the session has for the network, sent. */
static void tls_send_output(int fd, kl_tls_session_t *s) {
  size_t n;
  uint8_t *p;
  while ((p = kl_tls_session_output(s, &n)) != NULL) {
    send_all(fd, p, n);
    free(p);
  }
}

static void probe(const opts_t *o, const struct sockaddr_storage *sa, kl_tls_ctx_t *tls, gw_conf_t *gc) {
  uint8_t *pdu;
  size_t len;
  kl_err_t e = {0};
  make_pdu(o, 1, 0, true, &pdu, &len);
  int fd = socket(sa->ss_family, SOCK_STREAM, 0);
  struct timeval tv = {10, 0};
  if (fd < 0) die("socket", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  socklen_t sl = sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (connect(fd, (const struct sockaddr *)sa, sl) != 0) die(o->addr, strerror(errno));
  static uint8_t buf[KL_PDU_MAX_SIZE + MAX_HTTP_HEADER], raw[16384];
  kl_tls_session_t *s = NULL;
  if (tls != NULL) { /* the handshake, blocking */
    if ((s = kl_tls_session_new(tls, false, 0, NULL)) == NULL) die("TLS", "out of memory");
    int st = kl_tls_session_start(s, &e);
    for (int reads = 0; st == KL_TLS_HANDSHAKING; reads++) {
      tls_send_output(fd, s);
      ssize_t k = read(fd, raw, sizeof raw);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0 || reads > 1000) die("TLS handshake with the gateway", k == 0 ? "connection closed" : strerror(errno));
      st = kl_tls_session_feed(s, raw, (size_t)k, &e);
    }
    if (st < 0) die("TLS handshake with the gateway", e.msg);
    tls_send_output(fd, s);
  }
  char head[256];
  size_t hl = IS_HTTP(o->transport) ? http_head(head, sizeof head, o->addr, len) : 0;
  if (s != NULL) {
    if (kl_tls_session_write(s, head, hl, &e) || kl_tls_session_write(s, pdu, len, &e)) die("TLS", e.msg);
    tls_send_output(fd, s);
  } else {
    send_all(fd, head, hl);
    send_all(fd, pdu, len);
  }
  free(pdu);
  size_t n = 0;
  frame_t f;
  for (int reads = 0; !next_frame(o->transport, buf, n, &f); reads++) {
    if (reads > 10000 || n == sizeof buf) die("reading the configuration answer", "too long");
    ssize_t k = read(fd, s ? raw : buf + n, s ? sizeof raw : sizeof buf - n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("reading the configuration answer", k == 0 ? "connection closed" : strerror(errno));
    if (s == NULL) {
      n += (size_t)k;
      continue;
    }
    bool closed = false;
    if (kl_tls_session_feed(s, raw, (size_t)k, &e) < 0) die("TLS", e.msg);
    for (long got; (got = kl_tls_session_read(s, buf + n, sizeof buf - n, &closed, &e)) != 0;) {
      if (got < 0) die("TLS", e.msg);
      n += (size_t)got;
    }
  }
  kl_tls_session_free(s);
  close(fd);
  if (f.http_status != 200) {
    char m[64];
    snprintf(m, sizeof m, "HTTP status %d", f.http_status);
    die("configuration answer", m);
  }
  kl_pdu_t *p;
  if (kl_pdu_parse(f.body, f.blen, &p, &e)) wrong("configuration answer: %s", e.msg);
  if (p->error) {
    char m[300];
    snprintf(m, sizeof m, "error 0x%llX: %s (are --user/--key in the gateway's users file?)",
             (unsigned long long)p->error->status, p->error->message ? p->error->message : "");
    die("configuration answer", m);
  }
  if (kl_pdu_check_hmac_alg(p, KL_HASH_SHA256, o->key, o->keylen, &e)) wrong("configuration answer: %s", e.msg);
  if (p->config == NULL) wrong("configuration answer without a configuration");
  memset(gc, 0, sizeof *gc);
  gc->has_max_requests = p->config->has_max_requests;
  gc->max_requests = p->config->max_requests;
  gc->has_aggr_period = p->config->has_aggr_period;
  gc->aggr_period = p->config->aggr_period;
  gc->has_max_level = p->config->has_max_level;
  gc->max_level = p->config->max_level;
  kl_pdu_free(p);
}

/* ---- output ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q) { /* nearest rank */
  if (n == 0) return 0;
  size_t k = (size_t)((double)n * q + 0.999999);
  if (k > n) k = n;
  return v[(k ? k : 1) - 1];
}

static const char *status_label(int kind, uint64_t code, char *buf, size_t cap) {
  switch (kind) {
    case K_STATUS:
    case K_PDU_ERROR:
      snprintf(buf, cap, "%s 0x%04llX (%s)", kind_name[kind], (unsigned long long)code,
               code == 0 ? "ok" : kl_pdu_status_text(KL_PDU_SVC_AGGR, code));
      break;
    case K_HTTP: snprintf(buf, cap, "HTTP %llu", (unsigned long long)code); break;
    default: snprintf(buf, cap, "%s", kind_name[kind]); break;
  }
  return buf;
}

static void report(run_t *r) {
  const opts_t *o = r->o;
  double win = r->w1 - r->w0;
  bool have_window = r->window_started && win > 0.05;
  if (!have_window) win = 0;
  qsort(r->lat, r->n_lat, sizeof *r->lat, cmp_double);
  double sum = 0;
  for (size_t i = 0; i < r->n_lat; i++) sum += r->lat[i];
  double mean = r->n_lat ? sum / (double)r->n_lat : 0;
  double p50 = pct(r->lat, r->n_lat, 0.50), p90 = pct(r->lat, r->n_lat, 0.90), p99 = pct(r->lat, r->n_lat, 0.99),
         p999 = pct(r->lat, r->n_lat, 0.999), mx = r->n_lat ? r->lat[r->n_lat - 1] : 0;
  double sigs = win > 0 ? (double)r->ok_window / win : 0, pdus = win > 0 ? (double)r->pdus_window / win : 0;
  double infl = r->inflight_samples ? r->inflight_sum / (double)r->inflight_samples : 0;
  double ccpu = win > 0 ? (r->cpu1 - r->cpu0) / win : 0;
  uint64_t errors = 0;
  for (size_t i = 0; i < r->tally.n; i++)
    if (!(r->tally.v[i].kind == K_STATUS && r->tally.v[i].code == 0) && r->tally.v[i].kind != K_NOT_SENT)
      errors += r->tally.v[i].n;
  errors += r->tally.other;

  printf("\nresults: window %.2f s (after %.1f s of warm-up)%s\n", win, o->warmup,
         have_window ? "" : " -- NO WINDOW: the run stopped before the warm-up ended; nothing below is a rate");
  printf("  signatures/s     %10.1f   (requests answered with status 0 during the window / window)\n", sigs);
  printf("  PDUs/s           %10.1f   (%llu PDUs answered during the window)\n", pdus,
         (unsigned long long)r->pdus_window);
  printf("  PDU latency ms   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", 1e3 * p50, 1e3 * p90,
         1e3 * p99, 1e3 * p999, 1e3 * mx, 1e3 * mean);
  printf("  in flight        %10.0f   requests on average during the window; in flight / mean latency = %.0f/s "
         "(Little's law: the rate is bought with requests in flight)\n",
         infl, mean > 0 ? infl / mean : 0.0);
  printf("  answers          %llu requests sent in all, %llu answered with status 0 (%llu in the window); "
         "%llu not OK (%llu in the window)\n",
         (unsigned long long)r->issued_reqs, (unsigned long long)r->ok_total, (unsigned long long)r->ok_window,
         (unsigned long long)errors, (unsigned long long)r->errors_window);
  for (size_t i = 0; i < r->tally.n; i++) {
    char lb[160];
    const outcome_t *v = &r->tally.v[i];
    printf("    %-60s %10llu  (%llu in the window)\n", status_label(v->kind, v->code, lb, sizeof lb),
           (unsigned long long)v->n, (unsigned long long)v->in_window);
  }
  if (r->tally.other) printf("    %-60s %10llu\n", "other outcomes", (unsigned long long)r->tally.other);
  if (r->ooo) printf("    answers not for the oldest PDU in flight on their connection: %llu\n", (unsigned long long)r->ooo);
  if (r->conns_lost) printf("    connections closed by the gateway: %llu of %u\n", (unsigned long long)r->conns_lost, r->n_conns);
  if (o->verify_every)
    printf("  verified         %llu signatures (every %llu'th status-0 answer): internal policy OK, signing time in "
           "flight, one calendar root per second over %llu seconds; %llu with a calendar authentication record\n",
           (unsigned long long)r->verified, (unsigned long long)o->verify_every, (unsigned long long)r->cal_seconds,
           (unsigned long long)r->with_auth);
  else printf("  verified         off (--verify-sample N to build and verify every Nth signature)\n");
  printf("  client CPU       %5.1f%% of a core (%.1f us per signature); %.0f bytes out, %.0f in per PDU\n", 100 * ccpu,
         r->ok_window ? 1e6 * (r->cpu1 - r->cpu0) / (double)r->ok_window : 0.0,
         r->issued_pdus ? (double)r->bytes_out / (double)r->issued_pdus : 0.0,
         r->issued_pdus ? (double)r->bytes_in / (double)r->issued_pdus : 0.0);
  uint64_t wire_in = 0, wire_out = 0;
  for (unsigned i = 0; i < r->n_conns; i++) {
    wire_in += r->c[i].tls.wire_in;
    wire_out += r->c[i].tls.wire_out;
  }
  if (r->tls != NULL)
    printf("  TLS              %.0f bytes out, %.0f in per PDU on the wire (the handshakes included)\n",
           r->issued_pdus ? (double)wire_out / (double)r->issued_pdus : 0.0,
           r->issued_pdus ? (double)wire_in / (double)r->issued_pdus : 0.0);
  double cwall = r->c_t1 - r->c_t0, per = r->n_conns ? 1e6 / (double)r->n_conns : 0;
  printf("  connect phase    %u connections%s in %.2f s (%.0f/s, at most %d at a time); client CPU %.1f us per "
         "connection",
         r->n_conns, r->tls ? ", each with its TLS handshake," : "", cwall, cwall > 0 ? r->n_conns / cwall : 0.0,
         MAX_CONNECTING, per * (r->c_cpu1 - r->c_cpu0));
  for (size_t i = 0; i < o->n_daemons; i++)
    if (r->dc0[i].cpu >= 0 && r->dc1[i].cpu >= 0)
      printf("; %s %.1f us", o->daemons[i].name, per * (r->dc1[i].cpu - r->dc0[i].cpu));
  printf(" (CPU tick: 10 ms over all connections)\n");
  double named = r->cpu1 - r->cpu0;
  bool all_known = true;
  for (size_t i = 0; i < o->n_daemons; i++) {
    double d = r->d0[i].cpu >= 0 && r->d1[i].cpu >= 0 ? r->d1[i].cpu - r->d0[i].cpu : -1;
    if (d < 0) {
      all_known = false;
      printf("  %-10s pid %ld: not readable\n", o->daemons[i].name, o->daemons[i].pid);
      continue;
    }
    named += d;
    printf("  %-10s CPU %5.1f%% of a core (%.1f us per signature); RSS %.1f MiB at the window's end, peak %.1f MiB "
           "(pid %ld)\n",
           o->daemons[i].name, win > 0 ? 100 * d / win : 0.0, r->ok_window ? 1e6 * d / (double)r->ok_window : 0.0,
           (double)r->d1[i].rss / 1024, (double)r->d1[i].peak / 1024, o->daemons[i].pid);
  }
  double others = -1;
  if (o->n_daemons && all_known && r->idle0 >= 0 && r->idle1 >= 0 && win > 0) {
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
    others = ncpu * win - (r->idle1 - r->idle0) - named;
    if (others < 0) others = 0; /* tick rounding */
    printf("  others           CPU %5.1f%% of a core (the rest of the machine, interrupt work charged to no "
           "process included; %.0f cores)\n",
           100 * others / win, ncpu);
  }

  printf("result transport=%s conns=%u inflight=%u per_pdu=%u rate=%.0f window_s=%.2f sigs_per_s=%.1f pdus_per_s=%.1f "
         "p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f p999_ms=%.1f max_ms=%.1f mean_ms=%.1f in_flight=%.0f sent=%llu ok=%llu "
         "errors=%llu errors_window=%llu verified=%llu client_cpu=%.1f",
         transport_name[o->transport], r->n_conns, IS_HTTP(o->transport) ? 1 : o->inflight, o->per_pdu, o->rate, win,
         sigs, pdus, 1e3 * p50, 1e3 * p90, 1e3 * p99, 1e3 * p999, 1e3 * mx, 1e3 * mean, infl,
         (unsigned long long)r->issued_reqs, (unsigned long long)r->ok_total, (unsigned long long)errors,
         (unsigned long long)r->errors_window, (unsigned long long)r->verified, 100 * ccpu);
  for (size_t i = 0; i < o->n_daemons; i++) {
    double d = r->d0[i].cpu >= 0 && r->d1[i].cpu >= 0 ? r->d1[i].cpu - r->d0[i].cpu : -1;
    printf(" %s_cpu=%.1f %s_rss_mib=%.1f %s_peak_mib=%.1f", o->daemons[i].name, d >= 0 && win > 0 ? 100 * d / win : -1,
           o->daemons[i].name, (double)r->d1[i].rss / 1024, o->daemons[i].name, (double)r->d1[i].peak / 1024);
  }
  if (others >= 0) printf(" others_cpu=%.1f", 100 * others / win);
  printf(" connect_s=%.2f client_conn_us=%.1f", cwall, per * (r->c_cpu1 - r->c_cpu0));
  for (size_t i = 0; i < o->n_daemons; i++)
    if (r->dc0[i].cpu >= 0 && r->dc1[i].cpu >= 0)
      printf(" %s_conn_us=%.1f", o->daemons[i].name, per * (r->dc1[i].cpu - r->dc0[i].cpu));
  if (r->tls != NULL)
    printf(" wire_out_per_pdu=%.0f wire_in_per_pdu=%.0f", r->issued_pdus ? (double)wire_out / (double)r->issued_pdus : 0.0,
           r->issued_pdus ? (double)wire_in / (double)r->issued_pdus : 0.0);
  printf("\n");
}

/* ---- flags ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_gateway -a HOST:PORT --user LOGIN --key KEY [--transport tcp|http|https] [--ca FILE]\n"
          "                     [-c CONNECTIONS]\n"
          "                     [--inflight N] [--per-pdu K] [--duration S] [--count N] [--warmup S]\n"
          "                     [--drain S] [--rate R] [--verify-sample N] [--seed S] [-D NAME:PID,...]\n"
          "                     [--progress]\n"
          "  -a HOST:PORT        the gateway's ksi+tcp, HTTP or https port (loopback only)\n"
          "  --transport T       tcp (ksi+tcp, default), http (keep-alive POST, one PDU at a time) or https\n"
          "                      (the same over TLS: one handshake per connection, before the clock starts)\n"
          "  --ca FILE           https: the CA the gateway's certificate must chain to (PEM)\n"
          "  -c N                connections (default 16; at most 20000)\n"
          "  --inflight N        ksi+tcp: PDUs in flight per connection (default 16, at most 4096; the\n"
          "                      gateway's [limits] max_inflight, 64 by default, stops reading beyond it);\n"
          "                      http, https: 1\n"
          "  --per-pdu K|max     aggregation requests per PDU (default 1; the gateway's max_requests caps it;\n"
          "                      max: the max_requests the gateway announces, what surely fits one response)\n"
          "  --duration S        the measured window (default 20 s; at most 3600)\n"
          "  --count N           stop sending after N requests in all (warm-up included); without\n"
          "                      --duration the window then lasts at most 600 s and there is no warm-up\n"
          "  --warmup S          before the window (default 3 s, or 0 with --count alone)\n"
          "  --drain S           after the window, how long the answers in flight are awaited (default 10 s)\n"
          "  --rate R            open loop: send R requests/s in all (paced every 2 ms), never more than\n"
          "                      the in-flight cap per connection (default: closed loop)\n"
          "  --verify-sample N   build and verify (internal policy) every Nth signature (default 0: off)\n"
          "  --seed S            document hashes and request ids (default 1)\n"
          "  -D NAME:PID,...     report these processes' CPU over the window and their RSS (e.g.\n"
          "                      gateway:123,aggregator:456,core:789)\n"
          "  --progress          a line per second: answers, errors, in flight, latency\n");
}

static bool parse_uint(const char *s, uint64_t max, uint64_t *out) {
  uint64_t v;
  if (strcmp(s, "0") == 0) {
    *out = 0;
    return true;
  }
  if (!kb_parse_count(s, &v) || v > max) return false;
  *out = v;
  return true;
}

static bool parse_secs0(const char *s, double *out) {
  if (strcmp(s, "0") == 0) {
    *out = 0;
    return true;
  }
  return kb_parse_seconds(s, out);
}

static bool parse_daemons(char *s, opts_t *o) {
  for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (o->n_daemons == MAX_DAEMONS) return false;
    daemon_ref_t *d = &o->daemons[o->n_daemons];
    char *colon = strchr(tok, ':');
    const char *num = tok;
    if (colon) {
      size_t nl = (size_t)(colon - tok);
      if (nl == 0 || nl >= sizeof d->name) return false;
      memcpy(d->name, tok, nl);
      d->name[nl] = '\0';
      for (size_t i = 0; i < nl; i++)
        if (!((d->name[i] >= 'a' && d->name[i] <= 'z') || (d->name[i] >= '0' && d->name[i] <= '9') || d->name[i] == '_'))
          return false;
      num = colon + 1;
    } else {
      snprintf(d->name, sizeof d->name, "pid%zu", o->n_daemons + 1);
    }
    uint64_t v;
    if (!kb_parse_count(num, &v) || v >= (1u << 31)) return false;
    d->pid = (long)v;
    o->n_daemons++;
  }
  return o->n_daemons > 0;
}

int main(int argc, char **argv) {
  opts_t o = {.transport = T_TCP, .conns = 16, .inflight = 16, .per_pdu = 1, .warmup = 3, .drain = 10, .seed = 1};
  bool have_duration = false, have_inflight = false, have_warmup = false, per_pdu_max = false;
  enum { O_TRANSPORT = 256, O_INFLIGHT, O_PER_PDU, O_DURATION, O_COUNT, O_WARMUP, O_DRAIN, O_RATE, O_VERIFY,
         O_SEED, O_USER, O_KEY, O_PROGRESS, O_CA };
  static const struct option longs[] = {
      {"transport", required_argument, NULL, O_TRANSPORT}, {"inflight", required_argument, NULL, O_INFLIGHT},
      {"per-pdu", required_argument, NULL, O_PER_PDU},     {"duration", required_argument, NULL, O_DURATION},
      {"count", required_argument, NULL, O_COUNT},         {"warmup", required_argument, NULL, O_WARMUP},
      {"drain", required_argument, NULL, O_DRAIN},         {"rate", required_argument, NULL, O_RATE},
      {"verify-sample", required_argument, NULL, O_VERIFY}, {"seed", required_argument, NULL, O_SEED},
      {"user", required_argument, NULL, O_USER},           {"key", required_argument, NULL, O_KEY},
      {"progress", no_argument, NULL, O_PROGRESS},         {"help", no_argument, NULL, 'h'},
      {"ca", required_argument, NULL, O_CA},
      {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "a:c:D:h", longs, NULL)) != -1) {
    bool ok = true;
    uint64_t v = 0;
    switch (c) {
      case 'a': o.addr = optarg; break;
      case 'c': ok = kb_parse_count(optarg, &v) && v <= 20000, o.conns = (unsigned)v; break;
      case 'D': ok = parse_daemons(optarg, &o); break;
      case O_TRANSPORT:
        ok = false;
        for (int t = T_TCP; t <= T_HTTPS; t++)
          if (strcmp(optarg, transport_name[t]) == 0) ok = true, o.transport = t;
        break;
      case O_CA: o.ca = optarg; break;
      case O_INFLIGHT: ok = kb_parse_count(optarg, &v) && v <= 4096, o.inflight = (unsigned)v; have_inflight = true; break;
      case O_PER_PDU: /* max: as many as the gateway announces (its max_requests: what surely fits one response) */
        per_pdu_max = strcmp(optarg, "max") == 0;
        ok = per_pdu_max || (kb_parse_count(optarg, &v) && v <= MAX_PER_PDU);
        o.per_pdu = per_pdu_max ? 1 : (unsigned)v;
        break;
      case O_DURATION: ok = kb_parse_seconds(optarg, &o.duration); have_duration = true; break;
      case O_COUNT: ok = kb_parse_count(optarg, &o.count); break;
      case O_WARMUP: ok = parse_secs0(optarg, &o.warmup); have_warmup = true; break;
      case O_DRAIN: ok = kb_parse_seconds(optarg, &o.drain); break;
      case O_RATE: {
        char *end = NULL;
        o.rate = strtod(optarg, &end);
        ok = end != optarg && *end == '\0' && o.rate > 0 && o.rate <= 1e7;
        break;
      }
      case O_VERIFY: ok = parse_uint(optarg, 1ull << 40, &o.verify_every); break;
      case O_SEED: ok = kb_parse_count(optarg, &o.seed); break;
      case O_USER: o.user = optarg; break;
      case O_KEY: o.key = optarg; break;
      case O_PROGRESS: o.progress = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      const char *name = NULL;
      for (const struct option *lo = longs; lo->name && name == NULL; lo++)
        if (lo->val == c) name = lo->name;
      if (name) fprintf(stderr, "bench_gateway: bad value '%s' for --%s\n", optarg, name);
      else fprintf(stderr, "bench_gateway: bad value '%s' for -%c\n", optarg, c);
      return 2;
    }
  }
  if (optind != argc || o.addr == NULL || o.user == NULL || o.key == NULL) {
    usage(stderr);
    return 2;
  }
  if (!have_duration) o.duration = o.count ? 600 : 20;
  if (o.count && !have_duration && !have_warmup) o.warmup = 0; /* --count alone: measure from the first PDU */
  if ((o.transport == T_HTTPS) != (o.ca != NULL)) {
    fprintf(stderr, "bench_gateway: --transport https needs --ca FILE (the CA of the gateway's certificate), and "
                    "--ca needs https\n");
    return 2;
  }
  if (IS_HTTP(o.transport)) {
    if (have_inflight && o.inflight != 1)
      fprintf(stderr, "bench_gateway: %s: --inflight is 1 (no pipelining)\n", transport_name[o.transport]);
    o.inflight = 1;
  }
  o.keylen = strlen(o.key);
  signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
  /* Every answer is parsed into an arena and freed again; with thousands of connections glibc
   * kept giving the top of the heap back (brk) and faulting it in again, which took half of this
   * program's CPU over HTTP with 4,096 connections. Keep the heap. */
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
  for (size_t i = 0; i < o.n_daemons; i++)
    if (kb_proc_cpu(o.daemons[i].pid) < 0) die("-D", "no such process (or /proc is not readable)");

  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) die("run", "out of memory");
  r->o = &o;
  const char *why = kb_parse_loopback(o.addr, &r->sa);
  if (why != NULL) die(o.addr, why);
  kl_err_t e = {0};
  if (kl_verifier_create(&r->verifier, &e)) die("verifier", e.msg);

  kb_print_header("bench_gateway");
  if (o.transport == T_HTTPS) r->tls = kb_tls_client_ctx("bench_gateway", o.ca, NULL, NULL);
  gw_conf_t gc;
  probe(&o, &r->sa, r->tls, &gc);
  printf("target: %s %s, login %s; the gateway announces max_requests %s%llu, aggr_period %s%llu ms, max_level "
         "%s%llu\n",
         transport_name[o.transport], o.addr, o.user, gc.has_max_requests ? "" : "(absent) ",
         (unsigned long long)gc.max_requests, gc.has_aggr_period ? "" : "(absent) ", (unsigned long long)gc.aggr_period,
         gc.has_max_level ? "" : "(absent) ", (unsigned long long)gc.max_level);
  if (per_pdu_max) {
    if (!gc.has_max_requests || gc.max_requests == 0) die("--per-pdu max", "the gateway announces no max_requests");
    o.per_pdu = gc.max_requests < MAX_PER_PDU ? (unsigned)gc.max_requests : MAX_PER_PDU;
    printf("--per-pdu max: %u requests per PDU\n", o.per_pdu);
  }
  if (gc.has_max_requests && o.per_pdu > gc.max_requests)
    printf("WARNING: --per-pdu %u is over the gateway's max_requests %llu: every PDU will be refused\n", o.per_pdu,
           (unsigned long long)gc.max_requests);
  unsigned long long cap = (unsigned long long)o.conns * o.inflight * o.per_pdu;
  printf("load: %u connections x %u PDUs in flight x %u requests per PDU = %llu requests in flight at most; %s\n",
         o.conns, o.inflight, o.per_pdu, cap,
         o.rate > 0 ? "open loop, paced" : "closed loop (a new PDU as soon as one is answered)");
  if (o.rate > 0) printf("offered rate: %.0f requests/s\n", o.rate);
  printf("note: each request waits for the gateway's round (%llu ms), the aggregator's and the core's one-second "
         "round and commit, about 1-1.5 s in all: the rate is (requests in flight) / (latency), so it takes "
         "thousands in flight\n",
         (unsigned long long)(gc.has_aggr_period ? gc.aggr_period : 100));
  printf("timing: warm-up %.1f s, window %.1f s%s, drain up to %.1f s; latency from uv_write of a PDU to its whole "
         "answer read; verify every %llu%s\n",
         o.warmup, o.duration, o.count ? " (or until --count)" : "", o.drain, (unsigned long long)o.verify_every,
         o.verify_every ? "" : " (off)");
  fflush(stdout);

  int rc = uv_loop_init(&r->loop);
  if (rc) die("uv_loop_init", uv_strerror(rc));
  r->n_conns = o.conns;
  r->c = calloc(o.conns, sizeof *r->c);
  if (r->c == NULL) die("connections", "out of memory");
  for (unsigned i = 0; i < o.conns; i++) {
    conn_t *cn = &r->c[i];
    cn->r = r;
    cn->n_slots = o.inflight;
    cn->slots = calloc(o.inflight, sizeof *cn->slots);
    if (cn->slots == NULL) die("connections", "out of memory");
  }
  r->next_id = (o.seed << 40) + 1;
  uv_timer_t *timers[] = {&r->tick, &r->pacer, &r->phase, &r->guard};
  for (size_t i = 0; i < 4; i++) {
    uv_timer_init(&r->loop, timers[i]);
    timers[i]->data = r;
  }
  uv_timer_start(&r->guard, on_guard, 60000, 0); /* the connect phase */
  r->c_t0 = kb_now();
  r->c_cpu0 = kb_cpu();
  sample_procs(r, r->dc0);
  connect_next(r);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&r->loop);
  if (rc) die("uv_loop_close", uv_strerror(rc));
  if (r->outstanding != 0) wrong("%llu requests unaccounted for", (unsigned long long)r->outstanding);
  report(r);
  kl_tls_ctx_unref(r->tls);
  kl_verifier_destroy(r->verifier);
  free(r->lat);
  free(r->c);
  free(r);
  return 0;
}
