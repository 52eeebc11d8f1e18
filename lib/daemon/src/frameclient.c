/* Outbound framed connection with reconnection.
 *
 * Happy path: connect → read frames (length-checked before allocating) → on_frame; sends are
 * written in order. Failure modes: connect refused or timed out, peer closes, read error, a
 * frame over max_frame (the connection is dropped: the peer is broken or hostile) → the
 * connection's handle is closed, on_state(false), and a timer reconnects after the backoff.
 * A host name is resolved (uv_getaddrinfo, off the loop thread) before every attempt, so a
 * moved host is found again on reconnect; a failed resolution is logged and retried after the
 * backoff like a refused connect. kl_frame_client_reset drops a connection its owner found
 * silent: the backoff then keeps growing until the peer sends a frame, so a peer that accepts
 * and says nothing is re-dialled at most every max_backoff. */
#include "keyless/frameclient.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/log.h"
#include "keyless/net.h"

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t req;
  kl_frame_client_t *owner; /* NULL once orphaned by close */
  uint8_t hdr[4];
  size_t hdr_have;
  uint8_t *frame;
  size_t frame_len, frame_have;
  bool connected;
  kl_tls_session_t *tls; /* with a TLS context: connected once the server accepted us */
  bool tls_ready;        /* the handshake is done; waiting for the server's empty "accepted" frame */
} conn_t;

typedef struct wreq {
  uv_write_t w;
  kl_frame_client_t *owner;
  uint8_t *buf;
  size_t len;
} wreq_t;

struct kl_frame_client {
  uv_loop_t *loop;
  uv_timer_t timer;
  char name[64];
  size_t max_frame;
  kl_frame_client_cbs_t cbs;
  void *arg;
  struct sockaddr_storage addr;
  bool have_addr, closing;
  char host[256], port[8]; /* by name: resolved before every attempt */
  bool by_name, resolving, hold_backoff;
  unsigned attempt; /* by name: which of the resolved addresses to try (rotates on failure) */
  uv_getaddrinfo_t gai;
  conn_t *conn;
  uint64_t backoff_ms, max_backoff_ms;
  size_t queued;
  int pending; /* handles and writes still to call back */
  void (*close_cb)(void *);
  void *close_arg;
  kl_tls_ctx_t *tls;
  unsigned tls_roles;
  char tls_id[KL_PEER_ID_MAX];
  uint8_t plain[16384 + 256];
};

static void maybe_free(kl_frame_client_t *c) {
  if (!c->closing || c->pending > 0) return;
  void (*cb)(void *) = c->close_cb;
  void *arg = c->close_arg;
  kl_tls_ctx_unref(c->tls);
  free(c);
  if (cb) cb(arg);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *k = h->data;
  kl_frame_client_t *c = k->owner;
  free(k->frame);
  kl_tls_session_free(k->tls);
  free(k);
  if (c) {
    c->pending--;
    maybe_free(c);
  }
}

static void schedule(kl_frame_client_t *c);

static void drop(kl_frame_client_t *c, const char *why) {
  conn_t *k = c->conn;
  if (k == NULL) return;
  bool was = k->connected;
  c->conn = NULL;
  uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
  if (was) kl_log(KL_LOG_INFO, "link_down", "link=%s reason=%s", c->name, why);
  if (was && c->cbs.on_state) c->cbs.on_state(c, false, c->arg);
  if (!c->closing) schedule(c);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = b->base ? sz : 0;
}

/* Frames out of plaintext bytes. */
static void up(kl_frame_client_t *c, conn_t *k);

static void parse(kl_frame_client_t *c, conn_t *k, const uint8_t *p, size_t len) {
  size_t off = 0;
  while (off < len && c->conn == k) {
    if (k->frame == NULL) {
      while (k->hdr_have < 4 && off < len) k->hdr[k->hdr_have++] = p[off++];
      if (k->hdr_have < 4) break;
      size_t fl = (size_t)k->hdr[0] << 24 | (size_t)k->hdr[1] << 16 | (size_t)k->hdr[2] << 8 | k->hdr[3];
      if (fl > c->max_frame || (k->frame = malloc(fl ? fl : 1)) == NULL) {
        kl_log(KL_LOG_WARN, "frame_too_big", "link=%s size=%zu max=%zu", c->name, fl, c->max_frame);
        drop(c, "oversized frame");
        break;
      }
      k->frame_len = fl;
      k->frame_have = 0;
      if (k->tls && fl == 0) { /* the server accepted our certificate (empty frames mean nothing else) */
        free(k->frame);
        k->frame = NULL;
        k->hdr_have = 0;
        if (!k->connected) up(c, k);
        continue;
      }
      if (k->tls && !k->connected) {
        free(k->frame);
        k->frame = NULL;
        drop(c, "a frame before the server accepted us");
        break;
      }
    }
    size_t take = k->frame_len - k->frame_have;
    if (take > len - off) take = len - off;
    memcpy(k->frame + k->frame_have, p + off, take);
    k->frame_have += take;
    off += take;
    if (k->frame_have == k->frame_len) {
      uint8_t *f = k->frame;
      size_t fl = k->frame_len;
      k->frame = NULL;
      k->hdr_have = 0;
      if (c->hold_backoff) c->hold_backoff = false, c->backoff_ms = 100; /* it talks again */
      c->cbs.on_frame(c, f, fl, c->arg);
      free(f);
    }
  }
}

static void raw_send(kl_frame_client_t *c, uint8_t *buf, size_t len);

static void tls_flush(kl_frame_client_t *c, conn_t *k) {
  size_t n;
  uint8_t *p;
  while (c->conn == k && (p = kl_tls_session_output(k->tls, &n)) != NULL) raw_send(c, p, n);
}

static void up(kl_frame_client_t *c, conn_t *k) {
  k->connected = true;
  if (!c->hold_backoff) c->backoff_ms = 100;
  kl_log(KL_LOG_INFO, "link_up", "link=%s", c->name);
  if (c->cbs.on_state) c->cbs.on_state(c, true, c->arg);
}

/* Ciphertext from the server: the handshake, then records. */
static void tls_read(kl_frame_client_t *c, conn_t *k, const uint8_t *p, size_t n) {
  kl_err_t e = {0};
  bool was = k->connected;
  int st = kl_tls_session_feed(k->tls, p, n, &e);
  if (st >= 0) tls_flush(c, k);
  if (st < 0) {
    kl_log(KL_LOG_WARN, "link_refused", "link=%s reason=\"%s\"", c->name, e.msg);
    drop(c, "TLS");
    return;
  }
  (void)was;
  if (st == KL_TLS_READY) k->tls_ready = true;
  while (c->conn == k && k->tls_ready) {
    bool closed = false;
    long got = kl_tls_session_read(k->tls, c->plain, sizeof c->plain, &closed, &e);
    if (got < 0) {
      drop(c, e.msg);
      return;
    }
    if (got > 0) parse(c, k, c->plain, (size_t)got);
    if (closed && c->conn == k) drop(c, "closed by peer");
    if (got == 0) return;
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *k = s->data;
  kl_frame_client_t *c = k->owner;
  if (n < 0 || c == NULL) {
    free(b->base);
    if (c && c->conn == k) drop(c, n == UV_EOF ? "closed by peer" : uv_strerror((int)n));
    return;
  }
  if (k->tls) tls_read(c, k, (const uint8_t *)b->base, (size_t)n);
  else parse(c, k, (const uint8_t *)b->base, (size_t)n);
  free(b->base);
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *k = req->data;
  kl_frame_client_t *c = k->owner;
  if (c == NULL || c->conn != k) return; /* orphaned: its close is under way */
  if (status < 0) {
    drop(c, uv_strerror(status));
    return;
  }
  uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
  if (c->tls == NULL) {
    up(c, k);
    return;
  }
  kl_err_t e = {0};
  k->tls = kl_tls_session_new(c->tls, false, c->tls_roles, c->tls_id[0] ? c->tls_id : NULL);
  if (k->tls == NULL || kl_tls_session_start(k->tls, &e) < 0) {
    drop(c, k->tls ? e.msg : "out of memory");
    return;
  }
  tls_flush(c, k);
}

static void dial(kl_frame_client_t *c);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  kl_frame_client_t *c = req->data;
  c->resolving = false;
  c->pending--;
  if (c->closing || status < 0 || res == NULL) {
    if (!c->closing) {
      kl_log(KL_LOG_WARN, "link_resolve", "link=%s host=%s error=\"%s\"", c->name, c->host,
             status < 0 ? uv_strerror(status) : "no address");
      schedule(c);
    }
    if (res) uv_freeaddrinfo(res);
    maybe_free(c);
    return;
  }
  unsigned n = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) n++;
  struct addrinfo *a = res;
  for (unsigned i = c->attempt % n; i > 0; i--) a = a->ai_next;
  memset(&c->addr, 0, sizeof c->addr);
  memcpy(&c->addr, a->ai_addr, a->ai_addrlen <= sizeof c->addr ? a->ai_addrlen : sizeof c->addr);
  uv_freeaddrinfo(res);
  dial(c);
}

static void start_connect(kl_frame_client_t *c) {
  if (c->by_name) {
    if (c->resolving) return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    c->gai.data = c;
    int r = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->host, c->port, &hints);
    if (r < 0) {
      kl_log(KL_LOG_WARN, "link_resolve", "link=%s host=%s error=\"%s\"", c->name, c->host, uv_strerror(r));
      schedule(c);
      return;
    }
    c->resolving = true;
    c->pending++;
    return;
  }
  dial(c);
}

static void dial(kl_frame_client_t *c) {
  conn_t *k = calloc(1, sizeof *k);
  if (k == NULL) {
    schedule(c);
    return;
  }
  k->owner = c;
  uv_tcp_init(c->loop, &k->tcp);
  k->tcp.data = k;
  k->req.data = k;
  c->conn = k;
  c->pending++;
  uv_tcp_nodelay(&k->tcp, 1);
  int r = uv_tcp_connect(&k->req, &k->tcp, (const struct sockaddr *)&c->addr, on_connect);
  if (r < 0) drop(c, uv_strerror(r));
  else kl_net_link_liveness(&k->tcp, KL_NET_LINK_TIMEOUT_MS); /* a silent parent or peer fails the link */
}

static void on_timer(uv_timer_t *t) {
  kl_frame_client_t *c = t->data;
  if (!c->closing && c->conn == NULL) start_connect(c);
}

static void schedule(kl_frame_client_t *c) {
  c->attempt++; /* by name: the next attempt takes the next address */
  uv_timer_start(&c->timer, on_timer, c->backoff_ms, 0);
  c->backoff_ms = c->backoff_ms * 2 > c->max_backoff_ms ? c->max_backoff_ms : c->backoff_ms * 2;
}

void kl_frame_client_set_max_backoff(kl_frame_client_t *c, uint64_t ms) {
  c->max_backoff_ms = ms < 100 ? 100 : ms;
  if (c->backoff_ms > c->max_backoff_ms) c->backoff_ms = c->max_backoff_ms;
}

void kl_frame_client_reset(kl_frame_client_t *c, const char *why) {
  if (c->closing || c->conn == NULL) return; /* waiting for the backoff or the resolver already */
  c->hold_backoff = true;
  drop(c, why);
}

int kl_frame_client_create(uv_loop_t *loop, const char *name, size_t max_frame, const kl_frame_client_cbs_t *cbs, void *arg,
                           kl_frame_client_t **out, kl_err_t *e) {
  if (cbs == NULL || cbs->on_frame == NULL) return kl_err_set(e, KL_EINVAL, "frame client %s: no frame callback", name);
  kl_frame_client_t *c = calloc(1, sizeof *c);
  if (c == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  c->loop = loop;
  snprintf(c->name, sizeof c->name, "%s", name);
  c->max_frame = max_frame;
  c->cbs = *cbs;
  c->arg = arg;
  c->backoff_ms = 100;
  c->max_backoff_ms = 5000;
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->pending = 1; /* the timer */
  *out = c;
  return 0;
}

int kl_frame_addr_split(const char *addr, char *host, size_t host_n, char *port, size_t port_n, kl_err_t *e) {
  const char *h = addr, *colon;
  size_t hl;
  if (addr == NULL || addr[0] == '\0') return kl_err_set(e, KL_EINVAL, "empty address: expected host:port");
  if (addr[0] == '[') {
    const char *close = strchr(addr, ']');
    if (close == NULL || close[1] != ':')
      return kl_err_set(e, KL_EINVAL, "address '%s': expected [IPv6]:port", addr);
    h = addr + 1;
    hl = (size_t)(close - h);
    colon = close + 1;
    struct sockaddr_in6 sa6;
    char tmp[64];
    if (hl == 0 || hl >= sizeof tmp) return kl_err_set(e, KL_EINVAL, "address '%s': not an IPv6 address", addr);
    memcpy(tmp, h, hl);
    tmp[hl] = '\0';
    if (uv_ip6_addr(tmp, 0, &sa6) != 0) return kl_err_set(e, KL_EINVAL, "address '%s': '%s' is not an IPv6 address", addr, tmp);
  } else {
    colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr)
      return kl_err_set(e, KL_EINVAL, "address '%s': expected host:port, IPv4:port or [IPv6]:port", addr);
    hl = (size_t)(colon - addr);
    if (memchr(addr, ':', hl) != NULL)
      return kl_err_set(e, KL_EINVAL, "address '%s': an IPv6 address goes in brackets, [IPv6]:port", addr);
    for (size_t i = 0; i < hl; i++) {
      char ch = addr[i];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
            ch == '_'))
        return kl_err_set(e, KL_EINVAL, "address '%s': '%c' cannot be in a host name", addr, ch);
    }
  }
  const char *p = colon + 1;
  char *end;
  long pn = strtol(p, &end, 10);
  if (p[0] < '0' || p[0] > '9' || *end != '\0' || pn < 0 || pn > 65535 || end - p > 5)
    return kl_err_set(e, KL_EINVAL, "address '%s': the port must be 0..65535", addr);
  if (hl >= host_n || hl >= 254) return kl_err_set(e, KL_EINVAL, "address '%s': the host name is too long", addr);
  memcpy(host, h, hl);
  host[hl] = '\0';
  snprintf(port, port_n, "%ld", pn);
  return 0;
}

int kl_frame_client_connect(kl_frame_client_t *c, const char *addr, kl_err_t *e) {
  if (kl_net_parse_addr(addr, &c->addr, NULL) != 0) { /* not numeric: a host name, resolved per attempt */
    if (kl_frame_addr_split(addr, c->host, sizeof c->host, c->port, sizeof c->port, e))
      return kl_err_wrap(e, "link %s", c->name);
    c->by_name = true;
  }
  c->have_addr = true;
  start_connect(c);
  return 0;
}

bool kl_frame_client_connected(const kl_frame_client_t *c) { return c->conn != NULL && c->conn->connected; }
size_t kl_frame_client_queued(const kl_frame_client_t *c) { return c->queued; }

static void on_write(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  kl_frame_client_t *c = q->owner;
  c->queued -= q->len;
  c->pending--;
  free(q->buf);
  free(q);
  if (status < 0 && c->conn != NULL && !c->closing) drop(c, uv_strerror(status));
  maybe_free(c);
}

int kl_frame_client_send(kl_frame_client_t *c, const uint8_t *payload, size_t len, kl_err_t *e) {
  if (!kl_frame_client_connected(c) || c->closing) return kl_err_set(e, KL_ESTATE, "link %s is down", c->name);
  if (len > c->max_frame) return kl_err_set(e, KL_ETOOBIG, "link %s: frame of %zu bytes", c->name, len);
  wreq_t *q = calloc(1, sizeof *q);
  uint8_t *buf = malloc(len + 4);
  if (q == NULL || buf == NULL) {
    free(q);
    free(buf);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  buf[0] = (uint8_t)(len >> 24);
  buf[1] = (uint8_t)(len >> 16);
  buf[2] = (uint8_t)(len >> 8);
  buf[3] = (uint8_t)len;
  memcpy(buf + 4, payload, len);
  if (c->conn->tls) {
    free(q);
    int r = kl_tls_session_write(c->conn->tls, buf, len + 4, e);
    free(buf);
    if (r) return KL_EIO;
    tls_flush(c, c->conn);
    return 0;
  }
  q->owner = c;
  q->buf = buf;
  q->len = len + 4;
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)(len + 4));
  int r = uv_write(&q->w, (uv_stream_t *)&c->conn->tcp, &b, 1, on_write);
  if (r < 0) {
    free(buf);
    free(q);
    return kl_err_set(e, KL_EIO, "link %s: %s", c->name, uv_strerror(r));
  }
  c->queued += len + 4;
  c->pending++;
  return 0;
}

/* Queues bytes as they are (ciphertext on a TLS link); takes buf. */
static void raw_send(kl_frame_client_t *c, uint8_t *buf, size_t len) {
  wreq_t *q = calloc(1, sizeof *q);
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  if (q == NULL) {
    free(buf);
    drop(c, "out of memory");
    return;
  }
  q->owner = c;
  q->buf = buf;
  q->len = len;
  if (uv_write(&q->w, (uv_stream_t *)&c->conn->tcp, &b, 1, on_write) < 0) {
    free(buf);
    free(q);
    drop(c, "write failed");
    return;
  }
  c->queued += len;
  c->pending++;
}

void kl_frame_client_set_tls(kl_frame_client_t *c, kl_tls_ctx_t *ctx, unsigned roles, const char *expect_id) {
  kl_tls_ctx_unref(c->tls);
  c->tls = kl_tls_ctx_ref(ctx);
  c->tls_roles = roles;
  snprintf(c->tls_id, sizeof c->tls_id, "%s", expect_id ? expect_id : "");
}

static void on_timer_closed(uv_handle_t *h) {
  kl_frame_client_t *c = h->data;
  c->pending--;
  maybe_free(c);
}

void kl_frame_client_close(kl_frame_client_t *c, void (*cb)(void *), void *arg) {
  if (c == NULL) return;
  c->closing = true;
  c->close_cb = cb;
  c->close_arg = arg;
  if (c->conn) {
    conn_t *k = c->conn;
    c->conn = NULL;
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
  }
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai); /* on_resolved still runs (and frees nothing twice) */
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

int kl_frame_check_dial(const char *addr, const char *what, const char *event, const char *key, char *msg, size_t n) {
  char host[256], port[8], q[300], qa[300];
  kl_err_t e = {0};
  if (addr[0] == '\0') return 0;
  if (kl_frame_addr_split(addr, host, sizeof host, port, sizeof port, &e)) {
    snprintf(msg, n, "%s", e.msg);
    return -1;
  }
  if (strcmp(port, "0") == 0) {
    snprintf(msg, n, "address '%s': %s port cannot be 0", addr, what);
    return -1;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0)
    kl_log(KL_LOG_WARN, event, "%s=%s error=%s (a warning: the name is resolved again on every connect)", key,
           kl_log_q(qa, sizeof qa, addr), kl_log_q(q, sizeof q, gai_strerror(rc)));
  if (res) freeaddrinfo(res);
  return 0;
}
