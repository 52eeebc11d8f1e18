/* keyless benchmarks: the client side of the aggregation protocol under load (aggr_load.h says
 * what is here and what the programs keep). */
#include "aggr_load.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/chains.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"

#define MAX_FRAME (1u << 20)

const char *al_prog = "bench";

void al_wrong(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fflush(stdout);
  fprintf(stderr, "%s: WRONG ANSWER: ", al_prog);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

void al_die(const char *what, const char *msg) {
  fflush(stdout);
  fprintf(stderr, "%s: %s: %s\n", al_prog, what, msg);
  exit(1);
}

double al_wall_now(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) al_die("clock_gettime", strerror(errno));
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double al_proc_cpu(long pid) {
  double v = kb_proc_cpu(pid);
  return v < 0 ? NAN : v;
}

/* The first field of /proc/PID/task/TID/schedstat (time on a CPU, ns), summed over the threads:
 * /proc/PID/stat counts in clock ticks (10 ms), too coarse for a few milliseconds per round. */
double al_proc_sched(long pid) {
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

bool al_parse_dbl(const char *s, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool al_common_opt(al_cfg_t *g, int ch, const char *arg, bool *ok) {
  switch (ch) {
    case 'l':
      *ok = (kb_parse_count(arg, &g->level) || strcmp(arg, "0") == 0) && g->level <= 200;
      if (strcmp(arg, "0") == 0) g->level = 0;
      return true;
    case 'K': *ok = kb_parse_seconds(arg, &g->keep_s); return true;
    case 'T': *ok = kb_parse_seconds(arg, &g->drain_s) && g->drain_s <= 300; return true;
    case 'v': *ok = kb_parse_count(arg, &g->verify_every); return true;
    case 's': *ok = kb_parse_count(arg, &g->seed); return true;
    case 'C': g->ca = arg; return true;
    case 'P': g->cert = arg; return true;
    case 'k': g->key = arg; return true;
    default: return false;
  }
}

void al_imprint_of(const al_run_t *r, uint64_t i, kl_imprint_t *out) {
  uint8_t in[16];
  for (int k = 0; k < 8; k++) {
    in[k] = (uint8_t)(r->cfg.seed >> (8 * k));
    in[8 + k] = (uint8_t)(i >> (8 * k));
  }
  kl_err_t e;
  if (kl_hash(KL_HASH_SHA256, in, sizeof in, out, &e)) al_die("kl_hash", e.msg);
}

/* ---- answers ---- */

/* The answer's chains as a child at the request level would build them (the first 0x801's first
 * level correction plus the level, the other 0x801s, the 0x802, the 0x805), parsed. */
static kl_sig_t *build_sig(al_run_t *r, unsigned long long id, const Keyless__Aggregation__Response *a) {
  kl_err_t e = {0};
  kl_arena_t arena = KL_ARENA_INIT;
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  for (size_t k = 0; k < a->n_chains; k++) {
    kl_tlv_t t;
    kl_aggr_chain_t ch;
    if (kl_tlv_parse_one(a->chains[k].data, a->chains[k].len, &t, &e) || t.type != KL_T_AGGR_CHAIN ||
        t.raw_len != a->chains[k].len)
      al_wrong("request %llu: chain %zu is not one 0x801 TLV (%s)", id, k, e.msg);
    if (kl_aggr_chain_decode(&t, a->chains[k].data, &arena, &ch, &e)) al_wrong("request %llu: 0x801 #%zu: %s", id, k, e.msg);
    if (ch.n_links == 0) al_wrong("request %llu: chain %zu has no links", id, k);
    if (ch.aggr_time != a->second)
      al_wrong("request %llu: chain %zu time %llu, answer second %llu", id, k, (unsigned long long)ch.aggr_time,
               (unsigned long long)a->second);
    if (k == 0) ch.links[0].level_corr += r->cfg.level; /* the child's part: its root's level */
    kl_aggr_chain_encode(&b, &ch);
  }
  kl_buf_put(&b, a->calendar_chain.data, a->calendar_chain.len);
  kl_buf_put(&b, a->auth_record.data, a->auth_record.len);
  if (kl_tlv_close(&b, m, KL_T_SIGNATURE, 0) || !kl_buf_ok(&b)) al_die("signature", "cannot encode");
  kl_arena_free(&arena);
  kl_sig_t *sig;
  if (kl_sig_parse(b.p, b.len, &sig, &e)) al_wrong("request %llu: the signature does not parse: %s", id, e.msg);
  kl_buf_free(&b);
  r->parsed++;
  if (kl_sig_signing_time(sig) != a->second || sig->cal == NULL || sig->cal->pub_time != a->second ||
      sig->auth == NULL || sig->auth->data.time != a->second)
    al_wrong("request %llu: signature for second %llu: signing time %llu, calendar chain to %llu, auth record %llu", id,
             (unsigned long long)a->second, (unsigned long long)kl_sig_signing_time(sig),
             (unsigned long long)(sig->cal ? sig->cal->pub_time : 0),
             (unsigned long long)(sig->auth ? sig->auth->data.time : 0));
  return sig;
}

/* Verified under the internal policy with the request's imprint at the request level; its
 * calendar root is compared with the first one seen for that second (from any address). */
static void verify_sig(al_run_t *r, uint64_t i, const Keyless__Aggregation__Response *a, kl_sig_t *sig) {
  unsigned long long id = (unsigned long long)i + 1;
  kl_err_t e = {0};
  kl_imprint_t doc, root;
  al_imprint_of(r, i, &doc);
  kl_verify_opts_t vo = {.doc_hash = &doc, .doc_level = r->cfg.level};
  kl_verify_result_t res;
  kl_verifier_run(r->ver, sig, KL_POLICY_INTERNAL, &vo, &res);
  if (res.verdict != KL_VER_OK)
    al_wrong("request %llu (second %llu): internal verification %s %s: %s", id, (unsigned long long)a->second,
             kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
  if (kl_cal_chain_root(&r->h, sig->cal, &root, &e)) al_wrong("request %llu: calendar root: %s", id, e.msg);
  if (a->second >= r->first_sec && a->second - r->first_sec < r->n_secs) {
    al_sec_t *s = &r->secs[a->second - r->first_sec];
    if (!s->root_set) {
      s->root_set = true;
      s->root = root;
    } else if (!kl_imprint_eq(&s->root, &root)) {
      al_wrong("request %llu from %s: calendar root for second %llu differs from an earlier answer's", id,
               r->cfg.addr[r->c[r->q[i].conn].addr], (unsigned long long)a->second);
    }
  }
  r->verified++;
}

static void check_ok(al_run_t *r, uint64_t i, const Keyless__Aggregation__Response *a) {
  const al_cfg_t *o = &r->cfg;
  unsigned long long id = (unsigned long long)i + 1;
  if (a->n_chains < o->min_chains || a->n_chains > o->max_chains || !a->has_calendar_chain || !a->has_auth_record)
    al_wrong("request %llu: OK answer with %zu chains (%s), calendar chain %d, auth record %d", id, a->n_chains,
             o->chains_expect, a->has_calendar_chain, a->has_auth_record);
  if (a->second < r->q[i].sent_sec)
    al_wrong("request %llu sent in second %llu is answered for the earlier second %llu", id,
             (unsigned long long)r->q[i].sent_sec, (unsigned long long)a->second);
  bool sample = ++r->checked % o->verify_every == 0;
  if (!sample && !o->parse_all) return;
  kl_sig_t *sig = build_sig(r, id, a);
  if (sample) verify_sig(r, i, a, sig);
  kl_sig_free(sig);
}

static void on_frame(al_conn_t *c, const uint8_t *p, size_t n) {
  al_run_t *r = c->r;
  double now = kb_now(), wnow = al_wall_now();
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, n, p);
  if (m == NULL) al_wrong("an answer frame of %zu bytes does not unpack", n);
  if (m->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE)
    al_wrong("a frame that is not a Response (%d)", m->body_case);
  const Keyless__Aggregation__Response *a = m->response;
  r->frames++;
  if (a->request_id == 0 || a->request_id > r->total)
    al_wrong("an answer for request %llu, never sent", (unsigned long long)a->request_id);
  uint64_t i = a->request_id - 1;
  al_rq_t *q = &r->q[i];
  if (q->state != AL_FLIGHT || q->conn != c->idx)
    al_wrong("an answer for request %llu, which is not in flight on this connection (state %d)",
             (unsigned long long)a->request_id, q->state);
  q->lat = now - q->sent;
  q->status = a->status;
  q->ans_sec = a->second;
  q->ans_wall = wnow;
  c->in_flight--;
  r->in_flight--;
  if (r->hk.on_answer) r->hk.on_answer(r, a);
  if (a->status == KL_STATUS_OK) {
    check_ok(r, i, a);
    q->state = AL_OK;
    if (a->second >= r->first_sec && a->second - r->first_sec < r->n_secs) {
      al_sec_t *s = &r->secs[a->second - r->first_sec];
      if (s->n++ == 0) s->first = wnow;
      s->last = wnow;
    }
  } else {
    bool retry = a->status == KL_STATUS_UPSTREAM_ERROR;
    q->state = retry ? AL_RETRY : AL_ERROR;
    bool seen = retry && !r->cfg.report_retry;
    for (size_t k = 0; k < r->n_other; k++) seen |= r->other_codes[k] == a->status;
    if (!seen && r->n_other < 8) {
      r->other_codes[r->n_other++] = a->status;
      fprintf(stderr, "%s: request %llu: status 0x%04X: %s\n", al_prog, (unsigned long long)a->request_id, a->status,
              a->error ? a->error : "");
    }
  }
  keyless__aggregation__message__free_unpacked(m, NULL);
}

/* ---- connections ---- */

static void stop(al_run_t *r);

static void on_close(uv_handle_t *h) {
  al_conn_t *c = h->data;
  al_run_t *r = c->r;
  kb_tls_free(&c->tls);
  kb_rx_free(&c->rx);
  free(c->tx);
  c->tx = NULL;
  if (--r->open == 0) {
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->guard, NULL);
  }
}

static void conn_close(al_conn_t *c) {
  if (c->closing || !c->started) return;
  c->closing = true;
  if (c->tcp_up) uv_read_stop((uv_stream_t *)&c->h);
  uv_close((uv_handle_t *)&c->h, on_close);
}

/* The parent closed a connection: what was in flight on it is lost. */
static void conn_lost(al_conn_t *c, const char *why) {
  al_run_t *r = c->r;
  if (c->lost || c->closing) return;
  if (!r->started) al_die("a connection closed before the load started", why);
  c->lost = true;
  r->conns_closed++;
  fprintf(stderr, "%s: connection %u to %s closed by %s (%s) with %llu requests in flight\n", al_prog, c->idx,
          r->cfg.addr[c->addr], r->cfg.peer, why, (unsigned long long)c->in_flight);
  for (uint64_t i = 0; i < r->next; i++)
    if (r->q[i].state == AL_FLIGHT && r->q[i].conn == c->idx) {
      r->q[i].state = AL_LOST;
      r->in_flight--;
    }
  c->in_flight = 0;
  conn_close(c);
  bool any = false;
  for (unsigned k = 0; k < r->cfg.conns; k++) any |= !r->c[k].lost && !r->c[k].closing;
  if (!any) { /* nothing left to send on: the rest is never sent */
    fprintf(stderr, "%s: every connection was closed by %s; stopping\n", al_prog, r->cfg.peer);
    stop(r);
  } else {
    al_maybe_stop(r);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  al_conn_t *c = h->data;
  if (c->tls.s != NULL) { /* ciphertext: decrypted into c->rx by kb_tls_read */
    *b = kb_tls_scratch();
    return;
  }
  size_t avail = 0;
  uint8_t *p = kb_rx_space(&c->rx, c->r->cfg.rx_min, c->r->cfg.rx_first, &avail);
  if (p == NULL) al_die("read buffer", "out of memory");
  *b = uv_buf_init((char *)p, (unsigned)avail);
}

static void conn_ready(al_conn_t *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  al_conn_t *c = s->data;
  const char *addr = c->r->cfg.addr[c->addr];
  if (n < 0 && !c->up) al_die(addr, n == UV_EOF ? c->r->cfg.eof_hint : uv_strerror((int)n));
  if (n < 0) {
    conn_lost(c, uv_err_name((int)n));
    return;
  }
  if (c->tls.s != NULL) {
    kl_err_t e = {0};
    bool closed = false;
    int st = kb_tls_read(&c->tls, (const uint8_t *)b->base, (size_t)n, &c->rx, &closed, &e);
    if (st < 0 && !c->up) al_die("TLS handshake", e.msg);
    if (st < 0) al_wrong("TLS from %s: %s", addr, e.msg);
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
    if (len > MAX_FRAME) al_wrong("an answer frame of %zu bytes", len);
    if (c->rx.len - off < 4 + len) break;
    off += 4 + len;
    if (len == 0 && c->tls.s != NULL && !c->up) { /* the parent judged the certificate: accepted */
      conn_ready(c);
      continue;
    }
    if (len == 0) al_wrong("an empty frame from %s%s", addr, c->tls.s ? " after the accept" : "");
    on_frame(c, p + 4, len);
  }
  kb_rx_consume(&c->rx, off);
  al_maybe_stop(c->r);
}

/* ---- sending ---- */

typedef struct wreq {
  uv_write_t w;
  uint8_t *data;
} wreq_t;

static void on_write(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  al_conn_t *c = w->handle->data;
  free(q->data);
  free(q);
  if (status < 0) conn_lost(c, uv_strerror(status));
}

static void put_request(al_run_t *r, al_conn_t *c, uint64_t i) {
  Keyless__Aggregation__Request rq = KEYLESS__AGGREGATION__REQUEST__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  kl_imprint_t imp;
  uint8_t ib[KL_IMPRINT_MAX];
  char name[32];
  al_imprint_of(r, i, &imp);
  rq.request_id = i + 1;
  rq.imprint.len = kl_imprint_to_bytes(&imp, ib);
  rq.imprint.data = ib;
  rq.level = (uint32_t)r->cfg.level;
  if (r->hk.client_id) rq.client_id = (char *)r->hk.client_id(r, i, name);
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
  m.request = &rq;
  size_t n = keyless__aggregation__message__get_packed_size(&m);
  if (c->tx_cap - c->tx_len < n + 4) {
    size_t cap = c->tx_cap ? 2 * c->tx_cap : r->cfg.tx_first;
    while (cap - c->tx_len < n + 4) cap *= 2;
    uint8_t *p = realloc(c->tx, cap);
    if (p == NULL) al_die("send buffer", "out of memory");
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

static void flush(al_conn_t *c) {
  if (c->tx_len == 0) return;
  if (c->tls.s != NULL) { /* encrypted into records of their own: the plaintext is done with */
    kl_err_t e = {0};
    uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)c->tx_len);
    if (kb_tls_write(&c->tls, &b, 1, &e)) al_die("TLS write", e.msg);
    c->tx_len = 0;
    return;
  }
  wreq_t *w = malloc(sizeof *w);
  if (w == NULL) al_die("write", "out of memory");
  w->data = c->tx;
  uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)c->tx_len);
  c->tx = NULL;
  c->tx_len = c->tx_cap = 0;
  int rc = uv_write(&w->w, (uv_stream_t *)&c->h, &b, 1, on_write);
  if (rc) al_die("uv_write", uv_strerror(rc));
}

void al_send(al_run_t *r, al_conn_t *c, uint64_t i, double w, double now, double sched) {
  al_rq_t *q = &r->q[i];
  put_request(r, c, i);
  q->state = AL_FLIGHT;
  q->sent = now;
  q->sent_sec = (uint64_t)w;
  q->conn = c->idx;
  if (w - sched > r->gen_delay_max) r->gen_delay_max = w - sched;
  if (w - sched > r->cfg.late_s) r->gen_late++;
  if (++c->in_flight > c->max_in_flight) c->max_in_flight = c->in_flight;
  r->in_flight++;
}

/* The sends are stamped before the writes; the packing of a tick is inside the latency. */
void al_flush_all(al_run_t *r) {
  for (unsigned k = 0; k < r->cfg.conns; k++)
    if (!r->c[k].lost && !r->c[k].closing) flush(&r->c[k]);
}

/* ---- the run ---- */

static void stop(al_run_t *r) {
  if (r->stopping) return;
  r->stopping = true;
  r->t_end_mono = kb_now();
  r->cpu1 = kb_cpu();
  if (r->hk.on_stop) r->hk.on_stop(r);
  uv_timer_stop(&r->tick);
  uv_timer_stop(&r->guard);
  for (uint64_t i = 0; i < r->next; i++)
    if (r->q[i].state == AL_FLIGHT) r->q[i].state = AL_LOST;
  for (unsigned k = 0; k < r->cfg.conns; k++) conn_close(&r->c[k]);
}

void al_maybe_stop(al_run_t *r) {
  if (!r->started || r->stopping || r->next < r->total || r->in_flight != 0) return;
  if (r->hk.may_stop && !r->hk.may_stop(r)) return;
  stop(r);
}

static void on_tick(uv_timer_t *t) {
  al_run_t *r = t->data;
  if (!r->stopping) r->hk.on_tick(r);
}

/* The guard: the connect phase; then the drain deadline (the rest are lost), then a hard stop. */
static void on_guard(uv_timer_t *t) {
  al_run_t *r = t->data;
  const al_cfg_t *o = &r->cfg;
  if (!r->started) {
    if (kb_now() - r->connect_start > o->drain_s + 120) al_die("guard", "the connections did not come up in time");
    return;
  }
  double end = r->hk.last_round_end(r) + o->drain_s;
  if (r->next == r->total && al_wall_now() >= end) {
    fprintf(stderr, "%s: %llu requests unanswered %.0f s after the last round: counted as lost\n", al_prog,
            (unsigned long long)r->in_flight, o->drain_s);
    stop(r);
  } else if (al_wall_now() >= end + 30) {
    al_die("guard", "the run did not end 30 s after its drain deadline");
  }
}

static void connect_next(al_run_t *r);

/* The connection can carry requests: TCP is up and, with TLS, the parent accepted us. */
static void conn_ready(al_conn_t *c) {
  al_run_t *r = c->r;
  c->up = true;
  r->connecting--;
  if (++r->connected == r->cfg.conns) {
    r->started = true;
    r->t0_mono = kb_now();
    r->cpu0 = kb_cpu();
    r->hk.on_start(r);
    uv_timer_start(&r->tick, on_tick, 1, 1);
  } else {
    connect_next(r);
  }
}

static void on_connect(uv_connect_t *cr, int status) {
  al_conn_t *c = cr->handle->data;
  al_run_t *r = c->r;
  if (status < 0) al_die(r->cfg.addr[c->addr], uv_strerror(status));
  c->tcp_up = true;
  int rc = uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
  if (rc) al_die("uv_read_start", uv_strerror(rc));
  if (r->tls != NULL) { /* ready once the parent's accept frame is read (on_read) */
    kl_err_t e = {0};
    if (kb_tls_start(&c->tls, r->tls, (uv_stream_t *)&c->h, r->cfg.tls_roles, &e)) al_die("TLS", e.msg);
    return;
  }
  conn_ready(c);
}

/* Opens connections while fewer than connecting_max are on their way up. */
static void connect_next(al_run_t *r) {
  while (r->next_connect < r->cfg.conns && (r->cfg.connecting_max == 0 || r->connecting < r->cfg.connecting_max)) {
    al_conn_t *c = &r->c[r->next_connect];
    c->r = r;
    c->idx = r->next_connect++;
    c->addr = (unsigned)(c->idx % r->cfg.n_addrs);
    uv_tcp_init(&r->loop, &c->h);
    c->h.data = c;
    c->started = true;
    uv_tcp_nodelay(&c->h, 1);
    int rc = uv_tcp_connect(&c->cr, &c->h, (const struct sockaddr *)&r->sa[c->addr], on_connect);
    if (rc) al_die("uv_tcp_connect", uv_strerror(rc));
    r->open++;
    r->connecting++;
  }
}

void al_init(al_run_t *r, uint64_t total, uint64_t n_secs) {
  const al_cfg_t *o = &r->cfg;
  if ((o->ca != NULL) != (o->cert != NULL) || (o->cert != NULL) != (o->key != NULL))
    al_die("-C/-P/-k", "give all three or none");
  r->total = total;
  r->n_secs = n_secs;
  r->q = calloc(total, sizeof *r->q);
  r->c = calloc(o->conns, sizeof *r->c);
  r->secs = calloc(n_secs, sizeof *r->secs);
  kl_err_t e = {0};
  if (r->q == NULL || r->c == NULL || r->secs == NULL) al_die("run", "out of memory");
  if (kl_verifier_create(&r->ver, &e) || kl_hasher_init(&r->h, &e)) al_die("verifier", e.msg);
  if (o->ca != NULL) r->tls = kb_tls_client_ctx(al_prog, o->ca, o->cert, o->key);
  for (size_t k = 0; k < o->n_addrs; k++) {
    const char *why = kb_parse_loopback(o->addr[k], &r->sa[k]);
    if (why != NULL) al_die(o->addr[k], why);
  }
}

void al_run(al_run_t *r) {
  int rc = uv_loop_init(&r->loop);
  if (rc) al_die("uv_loop_init", uv_strerror(rc));
  uv_timer_init(&r->loop, &r->tick);
  uv_timer_init(&r->loop, &r->guard);
  r->tick.data = r->guard.data = r;
  r->connect_start = kb_now();
  uv_timer_start(&r->guard, on_guard, 100, 100);
  connect_next(r);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&r->loop);
  if (rc) al_die("uv_loop_close", uv_strerror(rc));
}

void al_free(al_run_t *r) {
  kl_verifier_destroy(r->ver);
  kl_tls_ctx_unref(r->tls);
  kl_hasher_close(&r->h);
  free(r->q);
  free(r->c);
  free(r->secs);
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

al_dist_t al_dist_of(double *v, size_t n) {
  al_dist_t d = {NAN, NAN, NAN, NAN};
  if (n == 0) return d;
  qsort(v, n, sizeof *v, cmp_double);
  d.p50 = pct(v, n, 0.5);
  d.p90 = pct(v, n, 0.9);
  d.p99 = pct(v, n, 0.99);
  d.max = v[n - 1];
  return d;
}

al_tally_t al_tally(const al_run_t *r, uint64_t from, double *lat, double *aft) {
  al_tally_t t = {0};
  for (uint64_t i = 0; i < r->total; i++) {
    const al_rq_t *q = &r->q[i];
    switch (q->state) {
      case AL_OK:
        t.ok++;
        t.moved += q->ans_sec != q->sent_sec;
        t.slow += q->lat > r->cfg.keep_s;
        if (i >= from) {
          lat[t.n] = q->lat;
          aft[t.n++] = q->ans_wall - (double)(q->ans_sec + 1);
        }
        break;
      case AL_RETRY: t.retry++; break;
      case AL_ERROR: t.err++; break;
      case AL_UNSENT: t.unsent++; break;
      default: t.lost++; break;
    }
  }
  return t;
}

uint64_t al_max_flight(const al_run_t *r) {
  uint64_t m = 0;
  for (unsigned k = 0; k < r->cfg.conns; k++)
    if (r->c[k].max_in_flight > m) m = r->c[k].max_in_flight;
  return m;
}
