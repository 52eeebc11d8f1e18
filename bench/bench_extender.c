/* bench_extender: a load generator for a running keyless-extender on loopback. Extensions per
 * second over HTTP and ksi+tcp, with latency percentiles measured at the client.
 *
 * It first asks the daemon for its configuration (a config-only 0x320 PDU) to learn the
 * calendar's first and last seconds. Then, for each transport given and each connection count
 * in -c, one measurement:
 *   - C connections are opened (not timed); the clock starts when all are connected.
 *   - HTTP: each connection sends one keep-alive HTTP/1.1 POST of an extension request PDU at a
 *     time and sends the next as soon as the answer is read (no pipelining).
 *     ksi+tcp: each connection keeps d PDUs in flight (each d of -d in turn); every answer
 *     read sends a new PDU. Requests in flight are C (HTTP) or C x d (ksi+tcp).
 *   - Each PDU is a fresh 0x320 with one extension request, a new request id, the aggregation
 *     time drawn uniformly from [first, last] of the calendar, and publication time = last
 *     (or absent with -P absent: extend to the calendar head), signed with HMAC-SHA-256 under
 *     -u/-k. Building it is client work and is not inside the latency.
 *   - Latency: from handing the request to libuv (uv_write) to having read the whole answer.
 *   - New requests stop at -t seconds or -n requests, whichever comes first; the answers in
 *     flight are then awaited. Rate = answers / (time of the last answer - start).
 * Every answer is checked: it parses (kl_pdu_parse) as an 0x321 without an error element, its
 * HMAC checks with the key (SHA-256, as sent), it echoes the login, it holds exactly one
 * response with the request id sent (answers come in order on a connection), status 0, and a
 * calendar chain whose publication and aggregation times are the ones asked for. Every -v'th
 * chain is also hashed: its root must equal the first checked root for the same publication
 * time, and its shape must encode the aggregation time. HTTP answers must be 200 with a
 * Content-Length and keep the connection open. Anything else aborts (exit by SIGABRT), so the
 * figures cannot time errors.
 *
 * Only loopback addresses are accepted (127.0.0.0/8, ::1). One libuv loop on one thread; on a
 * small machine it shares the cores with the daemon, so -D PID reports the daemon's CPU use
 * (utime + stime from /proc/PID/stat) during each measurement next to the client's own, and
 * the rest of the machine's ("others": cores x wall time, minus idle time from /proc/stat, minus
 * both processes). "others" includes interrupt and softirq work charged to no process: on the
 * 2-core VM of BENCHMARKS.md that alone was 5-15% of a core under this load.
 * On a shared machine, -q PERCENT repeats a measurement (at most 6 tries, pausing between
 * them) while the others used more than PERCENT of one core; the row says how many tries.
 *
 * usage: bench_extender [-H HOST:PORT] [-T HOST:PORT] -u LOGIN -k KEY [-c LIST] [-d LIST]
 *                       [-t SECONDS] [-n COUNT] [-w SECONDS] [-P last|absent] [-v EVERY]
 *                       [-s SEED] [-D PID [-q PERCENT]]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"
#include "keyless/chains.h"
#include "keyless/pdu.h"

enum { M_HTTP, M_TCP, M_N };
static const char *const mode_name[M_N] = {"http", "ksi+tcp"};

#define MAX_CONN_COUNTS 16
#define MAX_HTTP_HEADER 16384

typedef struct opts {
  const char *addr[M_N]; /* NULL: transport not measured */
  const char *login, *key;
  size_t keylen;
  unsigned conns[MAX_CONN_COUNTS], depths[MAX_CONN_COUNTS];
  size_t n_conns, n_depths;
  double secs, warm;
  uint64_t max_count, verify_every, seed;
  bool pub_absent;
  long daemon_pid; /* 0: not reported */
  double quiet;    /* -q: repeat a measurement while others used more than this % of a core; <0 off */
} opts_t;

/* From the configuration answer. */
static uint64_t cal_first, cal_last, max_requests;

/* ---- failures ---- */

static void wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void wrong(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "bench_extender: WRONG ANSWER: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void die(const char *what, const char *msg) {
  fflush(stdout);
  fprintf(stderr, "bench_extender: %s: %s\n", what, msg);
  exit(1);
}

/* ---- random numbers ---- */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t rand_in(uint64_t *s, uint64_t lo, uint64_t hi) { return lo + splitmix(s) % (hi - lo + 1); }

/* ---- addresses ---- */

/* "127.0.0.1:8010" or "[::1]:8010"; loopback only (bench_util). */
static void parse_addr(const char *s, struct sockaddr_storage *out) {
  const char *why = kb_parse_loopback(s, out);
  if (why != NULL) die(s, why);
}

/* ---- requests ---- */

/* An extension request PDU (config: a config-only one). Caller frees *out. */
static void make_pdu(const opts_t *o, uint64_t id, uint64_t t, bool has_P, uint64_t P, bool config, uint8_t **out,
                     size_t *len) {
  kl_pdu_writer_t w;
  kl_err_t e;
  kl_pdu_header_t h = {.login_id = o->login};
  kl_pdu_ext_req_t q = {.request_id = id, .aggr_time = t, .has_pub_time = has_P, .pub_time = P};
  int r = kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &h, &e);
  if (r == 0) r = config ? kl_pdu_add_config_req(&w, &e) : kl_pdu_add_ext_req(&w, &q, &e);
  if (r == 0) r = kl_pdu_writer_finish(&w, KL_HASH_SHA256, o->key, o->keylen, out, len, &e);
  else kl_pdu_writer_free(&w);
  if (r) die("building a request PDU", e.msg);
}

/* The HTTP request head for a body of len bytes; returns its length. */
static size_t http_head(char *buf, size_t cap, const char *hostport, size_t len) {
  int n = snprintf(buf, cap,
                   "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ksi-request\r\n"
                   "Content-Length: %zu\r\n\r\n",
                   hostport, len);
  if (n < 0 || (size_t)n >= cap) die("HTTP request", "head too long");
  return (size_t)n;
}

/* ---- answers: framing ---- */

/* Finds one whole answer at the start of p[0..n): 1 with the PDU at *body (*blen bytes) and the
 * bytes it takes in *used; 0 if more bytes are needed. Malformed input aborts. */
static int next_answer(int mode, const uint8_t *p, size_t n, const uint8_t **body, size_t *blen, size_t *used) {
  if (mode == M_TCP) {
    if (n < 2) return 0;
    size_t hl = (p[0] & 0x80) ? 4 : 2;
    if (n < hl) return 0;
    size_t vl = hl == 4 ? (size_t)p[2] << 8 | p[3] : p[1];
    if (n < hl + vl) return 0;
    *body = p;
    *blen = *used = hl + vl;
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
  if (head < 13 || memcmp(p, "HTTP/1.1 200 ", 13) != 0) {
    size_t k = 0;
    while (k < head && k < 60 && p[k] != '\r') k++;
    wrong("HTTP answer is not 200: '%.*s'", (int)k, (const char *)p);
  }
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
        if (strncasecmp(line + k, "close", 5) == 0) wrong("HTTP answer closes the connection");
    }
    line = memchr(eol, '\n', (size_t)((const char *)end - eol) + 2);
  }
  if (!have_cl) wrong("HTTP answer without Content-Length");
  if (n < head + cl) return 0;
  *body = p + head;
  *blen = cl;
  *used = head + cl;
  return 1;
}

/* ---- answers: content ---- */

typedef struct checker {
  const opts_t *o;
  kl_hasher_t h;
  bool have_ref;
  uint64_t ref_P;
  kl_imprint_t ref_root;
  uint64_t answers, hashed, bytes;
} checker_t;

typedef struct pend {
  uint64_t id, t, P; /* P 0: absent */
  double sent;
} pend_t;

static void check_answer(checker_t *ck, const pend_t *q, const uint8_t *p, size_t n) {
  const opts_t *o = ck->o;
  kl_pdu_t *pdu;
  kl_err_t e;
  unsigned long long id = q->id, t = q->t;
  if (kl_pdu_parse(p, n, &pdu, &e)) wrong("request %llu: the answer does not parse: %s", id, e.msg);
  if (pdu->type != KL_PDU_EXT_RESP) wrong("request %llu: answer PDU type 0x%X", id, pdu->type);
  if (pdu->error)
    wrong("request %llu: error 0x%llX: %s", id, (unsigned long long)pdu->error->status,
          pdu->error->message ? pdu->error->message : "");
  if (kl_pdu_check_hmac_alg(pdu, KL_HASH_SHA256, o->key, o->keylen, &e))
    wrong("request %llu: HMAC: %s", id, e.msg);
  if (pdu->header == NULL || strcmp(pdu->header->login_id, o->login) != 0)
    wrong("request %llu: the answer does not echo the login", id);
  if (pdu->n_ext_resps != 1) wrong("request %llu: %zu extension responses", id, pdu->n_ext_resps);
  const kl_pdu_ext_resp_t *r = &pdu->ext_resps[0];
  if (r->request_id != q->id)
    wrong("request %llu: the answer is for request %llu", id, (unsigned long long)r->request_id);
  if (r->status != KL_STATUS_OK)
    wrong("request %llu (t %llu): status 0x%llX: %s", id, t, (unsigned long long)r->status,
          r->error_msg ? r->error_msg : "");
  if (r->cal == NULL || r->cal_raw == NULL || r->cal_raw_len == 0) wrong("request %llu: no calendar chain", id);
  uint64_t P = q->P;
  if (P == 0) { /* absent: the calendar head the answer names */
    if (!r->has_cal_last || r->cal_last < cal_last) wrong("request %llu: no or an older calendar last time", id);
    P = r->cal_last;
  }
  if (r->cal->pub_time != P || !r->cal->has_aggr_time || r->cal->aggr_time != q->t)
    wrong("request %llu: the chain is for %llu..%llu, asked %llu..%llu", id,
          (unsigned long long)r->cal->aggr_time, (unsigned long long)r->cal->pub_time, t, (unsigned long long)P);
  if (ck->answers % o->verify_every == 0) {
    uint64_t st;
    kl_imprint_t root;
    if (!kl_cal_chain_time(r->cal, &st) || st != q->t)
      wrong("request %llu: the chain's shape does not encode %llu", id, t);
    if (kl_cal_chain_root(&ck->h, r->cal, &root, &e)) wrong("request %llu: chain root: %s", id, e.msg);
    if (!ck->have_ref || ck->ref_P != P) {
      ck->have_ref = true;
      ck->ref_P = P;
      ck->ref_root = root;
    } else if (!kl_imprint_eq(&root, &ck->ref_root)) {
      wrong("request %llu: the chain from %llu gives another root for %llu than earlier chains", id, t,
            (unsigned long long)P);
    }
    ck->hashed++;
  }
  ck->answers++;
  ck->bytes += n;
  kl_pdu_free(pdu);
}

/* ---- the configuration, with a blocking socket ---- */

static void probe(const opts_t *o, int mode) {
  struct sockaddr_storage sa;
  parse_addr(o->addr[mode], &sa);
  uint8_t *pdu;
  size_t len;
  make_pdu(o, 0, 0, false, 0, true, &pdu, &len);
  int fd = socket(sa.ss_family, SOCK_STREAM, 0);
  struct timeval tv = {10, 0};
  if (fd < 0) die("socket", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  socklen_t sl = sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (connect(fd, (struct sockaddr *)&sa, sl) != 0) die(o->addr[mode], strerror(errno));
  char head[512];
  size_t hl = mode == M_HTTP ? http_head(head, sizeof head, o->addr[mode], len) : 0;
  if (write(fd, head, hl) != (ssize_t)hl || write(fd, pdu, len) != (ssize_t)len)
    die("sending the configuration request", strerror(errno));
  free(pdu);
  static uint8_t buf[KL_PDU_MAX_SIZE + MAX_HTTP_HEADER];
  size_t n = 0, blen, used;
  const uint8_t *body;
  while (!next_answer(mode, buf, n, &body, &blen, &used)) {
    ssize_t k = read(fd, buf + n, sizeof buf - n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("reading the configuration answer", k == 0 ? "connection closed" : strerror(errno));
    n += (size_t)k;
  }
  close(fd);
  kl_pdu_t *p;
  kl_err_t e;
  if (kl_pdu_parse(body, blen, &p, &e)) wrong("configuration answer: %s", e.msg);
  if (p->error)
    wrong("configuration answer: error 0x%llX: %s", (unsigned long long)p->error->status,
          p->error->message ? p->error->message : "");
  if (kl_pdu_check_hmac_alg(p, KL_HASH_SHA256, o->key, o->keylen, &e)) wrong("configuration answer: %s", e.msg);
  if (p->config == NULL || !p->config->has_cal_first || !p->config->has_cal_last)
    wrong("configuration answer: no calendar range (is the calendar empty?)");
  cal_first = p->config->cal_first;
  cal_last = p->config->cal_last;
  max_requests = p->config->has_max_requests ? p->config->max_requests : 0;
  kl_pdu_free(p);
  if (cal_last < cal_first) wrong("configuration answer: calendar range %llu..%llu", (unsigned long long)cal_first,
                                  (unsigned long long)cal_last);
}

/* ---- the daemon's CPU time ---- */

static double proc_cpu(long pid) {
  if (pid <= 0) return 0;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) die(path, strerror(errno));
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long long ut = 0, st = 0;
  /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    die(path, "unexpected format");
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Idle time of the whole machine, all cores (idle + iowait), from /proc/stat, in seconds. The
 * busy time is taken as cores x wall time minus this: the kernel measures idle time exactly on
 * a tickless kernel, where its user/system/softirq figures are tick samples (and softirq
 * samples overlap the processes' own time). What is busy but charged to no process, such as
 * interrupts and softirqs handled on an otherwise idle core, ends up in "others". */
static double machine_idle(void) {
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[5] = {0};
  if (f == NULL) return -1;
  int k = fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]);
  fclose(f);
  if (k < 5) return -1;
  return (double)(v[3] + v[4]) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the load: one measurement on a libuv loop ---- */

typedef struct run run_t;

typedef struct conn {
  uv_tcp_t h;
  uv_connect_t cr;
  run_t *r;
  kb_rxbuf_t rx;
  pend_t *q; /* ring of requests in flight, oldest at head */
  unsigned q_head, q_n, q_cap;
  bool closing;
} conn_t;

typedef struct wreq {
  uv_write_t w;
  size_t len;
  uint8_t data[];
} wreq_t;

struct run {
  const opts_t *o;
  int mode;
  unsigned n_conns, depth;
  struct sockaddr_storage sa;
  uv_loop_t loop;
  uv_timer_t guard;
  conn_t *c;
  unsigned connected, open;
  double t0, deadline, t_last;
  double cpu0, daemon_cpu0, idle0; /* at t0 */
  uint64_t issued, done, max, next_id;
  uint64_t rng;
  double *lat;
  size_t n_lat, lat_cap;
  checker_t ck;
};

static void on_close(uv_handle_t *h) {
  conn_t *c = h->data;
  run_t *r = c->r;
  kb_rx_free(&c->rx);
  free(c->q);
  c->q = NULL;
  if (--r->open == 0) {
    uv_timer_stop(&r->guard);
    uv_close((uv_handle_t *)&r->guard, NULL);
  }
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->rx.len != 0) wrong("%zu bytes after the last answer on a connection", c->rx.len);
  uv_read_stop((uv_stream_t *)&c->h);
  uv_close((uv_handle_t *)&c->h, on_close);
}

static void on_write(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  conn_t *c = w->handle->data;
  free(q);
  if (status < 0 && !c->closing) die("write", uv_strerror(status));
}

static void issue(conn_t *c) {
  run_t *r = c->r;
  const opts_t *o = r->o;
  pend_t p;
  p.id = ++r->next_id;
  p.t = rand_in(&r->rng, cal_first, cal_last);
  p.P = o->pub_absent ? 0 : cal_last;
  uint8_t *pdu;
  size_t len;
  make_pdu(o, p.id, p.t, !o->pub_absent, cal_last, false, &pdu, &len);
  char head[512];
  size_t hl = r->mode == M_HTTP ? http_head(head, sizeof head, o->addr[M_HTTP], len) : 0;
  wreq_t *w = malloc(sizeof *w + hl + len);
  if (w == NULL) die("write", "out of memory");
  memcpy(w->data, head, hl);
  memcpy(w->data + hl, pdu, len);
  w->len = hl + len;
  free(pdu);
  if (c->q_n == c->q_cap) die("issue", "too many requests in flight"); /* cannot happen */
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
  p.sent = kb_now();
  c->q[(c->q_head + c->q_n++) % c->q_cap] = p;
  r->issued++;
  int rc = uv_write(&w->w, (uv_stream_t *)&c->h, &b, 1, on_write);
  if (rc) die("uv_write", uv_strerror(rc));
}

static bool may_issue(const run_t *r, double now) { return now < r->deadline && r->issued < r->max; }

static void on_answer(conn_t *c, const uint8_t *p, size_t n) {
  run_t *r = c->r;
  double now = kb_now();
  if (c->q_n == 0) wrong("an answer with no request in flight");
  pend_t q = c->q[c->q_head];
  c->q_head = (c->q_head + 1) % c->q_cap;
  c->q_n--;
  if (r->n_lat == r->lat_cap) {
    size_t cap = r->lat_cap ? 2 * r->lat_cap : 65536;
    double *v = realloc(r->lat, cap * sizeof *v);
    if (v == NULL) die("latencies", "out of memory");
    r->lat = v;
    r->lat_cap = cap;
  }
  r->lat[r->n_lat++] = now - q.sent;
  r->done++;
  r->t_last = now;
  check_answer(&r->ck, &q, p, n);
  if (may_issue(r, now)) issue(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  conn_t *c = h->data;
  size_t avail = 0;
  uint8_t *p = kb_rx_space(&c->rx, 65536, 2 * (KL_PDU_MAX_SIZE + MAX_HTTP_HEADER), &avail);
  if (p == NULL) die("read buffer", "out of memory");
  *b = uv_buf_init((char *)p, (unsigned)avail);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  conn_t *c = s->data;
  run_t *r = c->r;
  if (n < 0) {
    if (c->closing) return;
    wrong("the daemon closed a connection (%s) with %u requests in flight", uv_err_name((int)n), c->q_n);
  }
  c->rx.len += (size_t)n;
  size_t off = 0, blen, used;
  const uint8_t *body;
  while (next_answer(r->mode, c->rx.p + off, c->rx.len - off, &body, &blen, &used)) {
    on_answer(c, body, blen);
    off += used;
  }
  kb_rx_consume(&c->rx, off);
  if (c->q_n == 0 && !may_issue(r, kb_now())) conn_close(c);
}

static void start_load(run_t *r) {
  r->idle0 = machine_idle();
  r->daemon_cpu0 = proc_cpu(r->o->daemon_pid);
  r->cpu0 = kb_cpu();
  r->t0 = kb_now();
  r->deadline = r->t0 + r->o->secs;
  for (unsigned i = 0; i < r->n_conns; i++) {
    conn_t *c = &r->c[i];
    for (unsigned k = 0; k < r->depth && may_issue(r, r->t0); k++) issue(c);
    if (c->q_n == 0) conn_close(c);
  }
}

static void on_connect(uv_connect_t *cr, int status) {
  conn_t *c = cr->handle->data;
  run_t *r = c->r;
  if (status < 0) die(r->o->addr[r->mode], uv_strerror(status));
  int rc = uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
  if (rc) die("uv_read_start", uv_strerror(rc));
  if (++r->connected == r->n_conns) start_load(r);
}

static void on_guard(uv_timer_t *t) {
  run_t *r = t->data;
  unsigned in_flight = 0;
  for (unsigned i = 0; i < r->n_conns; i++) in_flight += r->c[i].q_n;
  wrong("stalled: %u of %u connections up, %u requests in flight, %llu answered, %.0f s after the start",
        r->connected, r->n_conns, in_flight, (unsigned long long)r->done, kb_now() - r->t0);
}

typedef struct result {
  int mode;
  unsigned conns, depth;
  uint64_t n;
  double secs, rate, p50, p90, p99, max, mean;
  double wall, cpu_client, cpu_daemon; /* seconds: start to loop end; CPU seconds (daemon -1: unknown) */
  double cpu_others; /* CPU seconds of everything else on the machine (-1: unknown) */
  int tries;
  double bytes, hashed;
} result_t;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q) { /* nearest rank */
  size_t k = (size_t)((double)n * q + 0.999999);
  return v[(k ? k : 1) - 1];
}

static result_t measure(const opts_t *o, int mode, unsigned n_conns, unsigned depth, double secs, uint64_t seed) {
  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) die("run", "out of memory");
  opts_t lo = *o;
  lo.secs = secs;
  r->o = &lo;
  r->mode = mode;
  r->n_conns = n_conns;
  r->depth = mode == M_TCP ? depth : 1;
  r->max = o->max_count;
  r->rng = seed;
  r->next_id = seed << 32; /* distinct ids across measurements */
  r->ck.o = o;
  if (kl_hasher_init(&r->ck.h, NULL)) die("hasher", "cannot initialise");
  parse_addr(o->addr[mode], &r->sa);
  int rc = uv_loop_init(&r->loop);
  if (rc) die("uv_loop_init", uv_strerror(rc));
  r->c = calloc(n_conns, sizeof *r->c);
  if (r->c == NULL) die("connections", "out of memory");
  uv_timer_init(&r->loop, &r->guard);
  r->guard.data = r;
  uv_timer_start(&r->guard, on_guard, (uint64_t)((secs + 30) * 1000), 0);
  for (unsigned i = 0; i < n_conns; i++) {
    conn_t *c = &r->c[i];
    c->r = r;
    c->q_cap = r->depth;
    c->q = calloc(c->q_cap, sizeof *c->q);
    if (c->q == NULL) die("connections", "out of memory");
    uv_tcp_init(&r->loop, &c->h);
    c->h.data = c;
    uv_tcp_nodelay(&c->h, 1);
    rc = uv_tcp_connect(&c->cr, &c->h, (const struct sockaddr *)&r->sa, on_connect);
    if (rc) die("uv_tcp_connect", uv_strerror(rc));
    r->open++;
  }
  uv_run(&r->loop, UV_RUN_DEFAULT); /* the clocks start once everything is connected (start_load) */
  double t_end = kb_now(), c1 = kb_cpu(), d1 = proc_cpu(o->daemon_pid), i1 = machine_idle();
  rc = uv_loop_close(&r->loop);
  if (rc) die("uv_loop_close", uv_strerror(rc));
  if (r->done != r->issued) wrong("%llu requests sent, %llu answered", (unsigned long long)r->issued,
                                  (unsigned long long)r->done);

  result_t res = {.mode = mode, .conns = n_conns, .depth = r->depth, .n = r->done};
  res.secs = r->t_last - r->t0;
  res.rate = res.secs > 0 ? (double)r->done / res.secs : 0;
  if (r->n_lat) {
    double sum = 0;
    for (size_t i = 0; i < r->n_lat; i++) sum += r->lat[i];
    qsort(r->lat, r->n_lat, sizeof *r->lat, cmp_double);
    res.p50 = pct(r->lat, r->n_lat, 0.50);
    res.p90 = pct(r->lat, r->n_lat, 0.90);
    res.p99 = pct(r->lat, r->n_lat, 0.99);
    res.max = r->lat[r->n_lat - 1];
    res.mean = sum / (double)r->n_lat;
  }
  res.wall = t_end - r->t0;
  res.cpu_client = c1 - r->cpu0;
  res.cpu_daemon = o->daemon_pid > 0 ? d1 - r->daemon_cpu0 : -1;
  /* -1 means unknown; a small negative value is tick rounding, shown as 0 */
  double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN), busy = ncpu * res.wall - (i1 - r->idle0);
  bool known = o->daemon_pid > 0 && i1 >= 0 && r->idle0 >= 0;
  res.cpu_others = known ? busy - res.cpu_client - res.cpu_daemon : -1;
  if (res.cpu_others < 0 && res.cpu_others > -0.05 * res.wall) res.cpu_others = 0;
  if (res.cpu_others <= -1) res.cpu_others = -0.99; /* still printed (it would mean the clocks disagree) */
  res.bytes = r->ck.answers ? (double)r->ck.bytes / (double)r->ck.answers : 0;
  res.hashed = (double)r->ck.hashed;
  kl_hasher_close(&r->ck.h);
  free(r->lat);
  free(r->c);
  free(r);
  return res;
}

/* measure(), repeated (at most MAX_TRIES times, after pauses of 3, 6, 9... s) while the rest of
 * the machine used more than -q percent of a core during it. */
#define MAX_TRIES 6
static result_t measure_quiet(const opts_t *o, int mode, unsigned n_conns, unsigned depth, uint64_t seed) {
  for (int t = 1;; t++) {
    result_t res = measure(o, mode, n_conns, depth, o->secs, seed + (uint64_t)t - 1);
    res.tries = t;
    double others = res.wall > 0 && res.cpu_others > -1 ? 100 * res.cpu_others / res.wall : 0;
    if (o->quiet < 0 || others <= o->quiet || t == MAX_TRIES) {
      if (o->quiet >= 0 && others > o->quiet)
        printf("  (%s, %u connections, depth %u: the rest of the machine used %.0f%% of a core in all %d tries; "
               "the last is kept)\n", mode_name[mode], n_conns, res.depth, others, t);
      return res;
    }
    printf("  (%s, %u connections, depth %u: repeated, the rest of the machine used %.0f%% of a core)\n",
           mode_name[mode], n_conns, res.depth, others);
    fflush(stdout);
    sleep(3 * (unsigned)t);
  }
}

/* ---- output ---- */

#define ROW_HEAD "%-8s %5s %5s %9s %7s %10s %8s %8s %8s %9s %8s %6s %6s %6s %9s %9s %5s\n"

static void print_row(const result_t *s) {
  char dcpu[16], dus[16], ocpu[16] = "-";
  if (s->cpu_others > -1) snprintf(ocpu, sizeof ocpu, "%.0f%%", s->wall > 0 ? 100 * s->cpu_others / s->wall : 0.0);
  if (s->cpu_daemon >= 0) {
    snprintf(dcpu, sizeof dcpu, "%.0f%%", s->wall > 0 ? 100 * s->cpu_daemon / s->wall : 0.0);
    snprintf(dus, sizeof dus, "%.1f", s->n ? s->cpu_daemon / (double)s->n * 1e6 : 0.0);
  } else {
    snprintf(dcpu, sizeof dcpu, "-");
    snprintf(dus, sizeof dus, "-");
  }
  printf("%-8s %5u %5u %9llu %7.2f %10.0f %8.1f %8.1f %8.1f %9.1f %8.1f %5.0f%% %6s %6s %9.1f %9s %5d\n",
         mode_name[s->mode],
         s->conns, s->depth, (unsigned long long)s->n, s->secs, s->rate, s->p50 * 1e6, s->p90 * 1e6, s->p99 * 1e6,
         s->max * 1e6, s->mean * 1e6, s->wall > 0 ? 100 * s->cpu_client / s->wall : 0.0, dcpu, ocpu,
         s->n ? s->cpu_client / (double)s->n * 1e6 : 0.0, dus, s->tries);
  fflush(stdout);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_extender [-H HOST:PORT] [-T HOST:PORT] -u LOGIN -k KEY [-c LIST] [-d LIST]\n"
          "                      [-t SECONDS] [-n COUNT] [-w SECONDS] [-P last|absent] [-v EVERY]\n"
          "                      [-s SEED] [-D PID [-q PERCENT]]\n"
          "  -H HOST:PORT  the extender's HTTP port (loopback only)\n"
          "  -T HOST:PORT  the extender's ksi+tcp port (loopback only); at least one of -H, -T\n"
          "  -u LOGIN      KSI login; -k KEY its HMAC key (HMAC-SHA-256)\n"
          "  -c LIST       connection counts, comma-separated (default 1,8,64)\n"
          "  -d LIST       ksi+tcp: PDUs in flight per connection, comma-separated (default 1,16);\n"
          "                HTTP is always 1\n"
          "  -t SECONDS    per measurement (default 5)\n"
          "  -n COUNT      at most COUNT requests per measurement (default 10000000)\n"
          "  -w SECONDS    unrecorded warm-up per transport, with the largest count (default 1)\n"
          "  -P last|absent  publication time: the calendar's last second (default) or absent\n"
          "  -v EVERY      hash every EVERY'th chain and compare its root (default 16; 1: all)\n"
          "  -s SEED       random seed (default 1)\n"
          "  -D PID        report this process's CPU use (the daemon's) during each measurement, and\n"
          "                the rest of the machine's (/proc/stat)\n"
          "  -q PERCENT    with -D: repeat a measurement (at most 6 tries) while the rest of the\n"
          "                machine used more than PERCENT of one core during it (default: off)\n");
}

/* "1,8,64": at most MAX_CONN_COUNTS numbers in [1, max]. */
static bool parse_list(const char *s, unsigned *out, size_t *n, uint64_t max) {
  *n = 0;
  char buf[256];
  if (strlen(s) >= sizeof buf) return false;
  strcpy(buf, s);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    uint64_t v;
    if (*n == MAX_CONN_COUNTS || !kb_parse_count(tok, &v) || v > max) return false;
    out[(*n)++] = (unsigned)v;
  }
  return *n > 0;
}

int main(int argc, char **argv) {
  opts_t o = {.secs = 5, .warm = 1, .max_count = 10000000, .verify_every = 16, .seed = 1, .quiet = -1};
  parse_list("1,8,64", o.conns, &o.n_conns, 1000);
  parse_list("1,16", o.depths, &o.n_depths, 100000);
  int c;
  while ((c = getopt(argc, argv, "H:T:u:k:c:d:t:n:w:P:v:s:D:q:h")) != -1) {
    bool ok = true;
    uint64_t v = 0;
    switch (c) {
      case 'H': o.addr[M_HTTP] = optarg; break;
      case 'T': o.addr[M_TCP] = optarg; break;
      case 'u': o.login = optarg; break;
      case 'k': o.key = optarg; break;
      case 'c': ok = parse_list(optarg, o.conns, &o.n_conns, 1000); break;
      case 'd': ok = parse_list(optarg, o.depths, &o.n_depths, 100000); break;
      case 't': ok = kb_parse_seconds(optarg, &o.secs); break;
      case 'n': ok = kb_parse_count(optarg, &o.max_count); break;
      case 'w': ok = kb_parse_seconds(optarg, &o.warm) || strcmp(optarg, "0") == 0;
        if (strcmp(optarg, "0") == 0) o.warm = 0;
        break;
      case 'P':
        ok = strcmp(optarg, "last") == 0 || strcmp(optarg, "absent") == 0;
        o.pub_absent = strcmp(optarg, "absent") == 0;
        break;
      case 'v': ok = kb_parse_count(optarg, &o.verify_every); break;
      case 's': ok = kb_parse_count(optarg, &o.seed); break;
      case 'D': ok = kb_parse_count(optarg, &v) && v < (1u << 31), o.daemon_pid = (long)v; break;
      case 'q': {
        char *end = NULL;
        o.quiet = strtod(optarg, &end);
        ok = end != optarg && *end == '\0' && o.quiet >= 0 && o.quiet <= 1000;
        break;
      }
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "bench_extender: bad value '%s' for -%c\n", optarg, c);
      return 2;
    }
  }
  if (optind != argc || (o.addr[M_HTTP] == NULL && o.addr[M_TCP] == NULL) || o.login == NULL || o.key == NULL) {
    usage(stderr);
    return 2;
  }
  o.keylen = strlen(o.key);
  signal(SIGPIPE, SIG_IGN);
  if (o.daemon_pid) proc_cpu(o.daemon_pid); /* fails early if there is no such process */
  if (o.quiet >= 0 && o.daemon_pid == 0) die("-q", "needs -D PID (the daemon's CPU time is not the rest of the machine's)");

  kb_print_header("bench_extender");
  probe(&o, o.addr[M_HTTP] ? M_HTTP : M_TCP);
  printf("target: http %s, ksi+tcp %s; login %s; calendar %llu..%llu (%llu seconds), daemon max_requests %llu\n",
         o.addr[M_HTTP] ? o.addr[M_HTTP] : "-", o.addr[M_TCP] ? o.addr[M_TCP] : "-", o.login,
         (unsigned long long)cal_first, (unsigned long long)cal_last, (unsigned long long)(cal_last - cal_first + 1),
         (unsigned long long)max_requests);
  printf("requests: one extension per PDU, t uniform over the calendar, publication time %s; HMAC-SHA-256; "
         "-t %.1f s, -n %llu, -w %.1f s, chain roots hashed every %llu; daemon pid %ld\n",
         o.pub_absent ? "absent (extend to the head)" : "= the last second", o.secs,
         (unsigned long long)o.max_count, o.warm, (unsigned long long)o.verify_every, o.daemon_pid);
  printf("latency: from uv_write of the request to the whole answer read; cpu (this program), daemon, others "
         "(the rest of the machine, with interrupt work charged to no process): CPU time / wall time of the "
         "measurement (100%% = one core); us/req: CPU time per answer\n\n");

  /* res[0][0][i]: http; res[1][d][i]: ksi+tcp with depth depths[d]; connection count conns[i] */
  static result_t res[M_N][MAX_CONN_COUNTS][MAX_CONN_COUNTS];
  unsigned maxc = 0, maxd = 0;
  for (size_t i = 0; i < o.n_conns; i++) maxc = o.conns[i] > maxc ? o.conns[i] : maxc;
  for (size_t d = 0; d < o.n_depths; d++) maxd = o.depths[d] > maxd ? o.depths[d] : maxd;
  uint64_t seed = o.seed << 8;
  printf(ROW_HEAD, "mode", "conns", "depth", "answers", "secs", "answers/s", "p50 us", "p90 us", "p99 us",
         "max us", "mean us", "cpu", "daemon", "others", "us/req cl", "us/req dm", "tries");
  for (int m = 0; m < M_N; m++) {
    if (o.addr[m] == NULL) continue;
    if (o.warm > 0) (void)measure(&o, m, maxc, maxd, o.warm, seed++);
    for (size_t d = 0; d < (m == M_TCP ? o.n_depths : 1); d++)
      for (size_t i = 0; i < o.n_conns; i++) {
        res[m][d][i] = measure_quiet(&o, m, o.conns[i], o.depths[d], seed);
        seed += MAX_TRIES;
        print_row(&res[m][d][i]);
      }
  }

  printf("\nratios of answers/s (same run):\n");
  for (int m = 0; m < M_N; m++) {
    if (o.addr[m] == NULL) continue;
    for (size_t d = 0; d < (m == M_TCP ? o.n_depths : 1); d++)
      for (size_t i = 1; i < o.n_conns; i++) {
        char dd[32] = "";
        if (m == M_TCP) snprintf(dd, sizeof dd, " depth %u", o.depths[d]);
        printf("  %s%s: %u connections / %u: %.2f\n", mode_name[m], dd, o.conns[i], o.conns[0],
               res[m][d][0].rate > 0 ? res[m][d][i].rate / res[m][d][0].rate : 0.0);
      }
  }
  if (o.addr[M_HTTP] && o.addr[M_TCP])
    for (size_t d = 0; d < o.n_depths; d++)
      for (size_t i = 0; i < o.n_conns; i++)
        printf("  %u connections: ksi+tcp depth %u / http: %.2f\n", o.conns[i], o.depths[d],
               res[M_HTTP][0][i].rate > 0 ? res[M_TCP][d][i].rate / res[M_HTTP][0][i].rate : 0.0);
  uint64_t total = 0;
  double bytes = 0, hashed = 0;
  for (int m = 0; m < M_N; m++)
    if (o.addr[m])
      for (size_t d = 0; d < (m == M_TCP ? o.n_depths : 1); d++)
        for (size_t i = 0; i < o.n_conns; i++) {
          total += res[m][d][i].n;
          bytes += res[m][d][i].bytes * (double)res[m][d][i].n;
          hashed += res[m][d][i].hashed;
        }
  printf("every answer checked (%llu in the rows above, plus the warm-ups), %.0f chains hashed; none failed; "
         "mean answer PDU %.0f bytes\n",
         (unsigned long long)total, hashed, total ? bytes / (double)total : 0.0);
  return 0;
}
