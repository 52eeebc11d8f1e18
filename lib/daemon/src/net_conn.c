/* The connection layer of the servers (see net_internal.h for the state machine).
 *
 * Happy path: listen → accept → read → protocol consumes → protocol writes → idle timer →
 * next request ... → peer closes (EOF) or the server closes: FIN after the last write → close.
 * Failure modes handled here: accept errors (logged, the listener keeps going), over the
 * connection cap (accepted and closed), read errors and resets (closed), write errors (closed;
 * pending writes are cancelled by libuv and freed in their callbacks), a peer that stops
 * reading (reading stops at the watermark; the idle timer closes it), a peer that never
 * finishes a request (idle timer), a peer that keeps sending after our FIN (linger timer),
 * a shutdown that does not drain (stop timer closes what is left). Memory of a connection is
 * freed only when both of its handles' close callbacks have run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/log.h"
#include "net_internal.h"

#define LINGER_MS 2000

typedef struct wreq {
  uv_write_t req;
  kl__conn_t *c;
  size_t len, n;
  void *p[]; /* the n buffers written, freed when the write completes */
} wreq_t;

void kl_net_limits_default(kl_net_limits_t *l) {
  l->max_body = 65539;
  l->max_header = 8192;
  l->max_connections = 1024;
  l->idle_timeout_ms = 30000;
  l->write_watermark = 1u << 20;
  l->max_inflight = 64;
  l->shutdown_timeout_ms = 5000;
  l->max_connections_per_ip = 0; /* the daemons' configurations set it (default 256) */
  l->max_rate_per_ip = 0;
  l->handshake_timeout_ms = 10000;
  l->reuseport = false;
}

int kl_net_parse_addr(const char *s, struct sockaddr_storage *out, kl_err_t *e) {
  char host[64];
  const char *port;
  if (s == NULL || out == NULL) return kl_err_set(e, KL_EINVAL, "address: NULL argument");
  memset(out, 0, sizeof *out);
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
      return kl_err_set(e, KL_EINVAL, "address '%s': expected [IPv6]:port", s);
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    port = close + 2;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
      return kl_err_set(e, KL_EINVAL, "address '%s': expected IPv4:port or [IPv6]:port", s);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    port = colon + 1;
  }
  char *end;
  long p = strtol(port, &end, 10);
  if (port[0] < '0' || port[0] > '9' || *end != '\0' || p < 0 || p > 65535)
    return kl_err_set(e, KL_EINVAL, "address '%s': port must be 0..65535", s);
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)out) == 0 && s[0] != '[') return 0;
  if (s[0] == '[' && uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)out) == 0) return 0;
  return kl_err_set(e, KL_EINVAL, "address '%s': '%s' is not a numeric IP address", s, host);
}

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t n) {
  char ip[64] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(out, n, "%s:%d", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(out, n, "[%s]:%d", ip, port);
  } else {
    snprintf(out, n, "?");
  }
}

/* ---- per peer address ---- */

static uint64_t now_ms(uv_loop_t *loop) { return uv_now(loop); }

static unsigned ip_hash(const char *ip) {
  unsigned h = 2166136261u;
  for (; *ip; ip++) h = (h ^ (unsigned char)*ip) * 16777619u;
  return h % KL__IP_BUCKETS;
}

/* The peer's address without the port: "1.2.3.4:5" -> "1.2.3.4", "[::1]:5" -> "[::1]". */
static void ip_of(const char *peer, char *out, size_t n) {
  snprintf(out, n, "%s", peer);
  char *colon = strrchr(out, ':');
  if (colon && (out[0] != '[' || colon[-1] == ']')) *colon = '\0';
}

static void ip_sweep(kl__srv_t *s, unsigned h);
/* A full bucket: twice the rate, and at least one request. */
static double ip_burst(const kl__srv_t *s) { return s->lim.max_rate_per_ip < 0.5 ? 1 : 2 * s->lim.max_rate_per_ip; }


/* Takes a connection slot for c's address; false when the address is at its cap (or no
 * memory: refusing is the safe side). */
static bool ip_acquire(kl__srv_t *s, kl__conn_t *c) {
  if (s->ips == NULL && (s->ips = calloc(KL__IP_BUCKETS, sizeof *s->ips)) == NULL) return false;
  char ip[64];
  ip_of(c->peer, ip, sizeof ip);
  ip_sweep(s, ip_hash(ip));
  kl__ipent_t **pp = &s->ips[ip_hash(ip)], *en = *pp;
  while (en && strcmp(en->ip, ip) != 0) en = en->next;
  if (en == NULL) {
    if ((en = calloc(1, sizeof *en)) == NULL) return false;
    snprintf(en->ip, sizeof en->ip, "%s", ip);
    en->tokens = ip_burst(s);
    en->last_ms = now_ms(s->loop);
    en->next = *pp;
    *pp = en;
  }
  if (s->lim.max_connections_per_ip && en->conns >= s->lim.max_connections_per_ip) return false;
  en->conns++;
  c->ip = en;
  return true;
}

/* Refills an entry's bucket to now; true when it is full (it remembers nothing then). */
static bool ip_refill(kl__srv_t *s, kl__ipent_t *en) {
  double burst = ip_burst(s);
  uint64_t now = now_ms(s->loop);
  en->tokens += (double)(now - en->last_ms) * s->lim.max_rate_per_ip / 1000.0;
  if (en->tokens > burst) en->tokens = burst;
  en->last_ms = now;
  return en->tokens >= burst;
}

/* Frees the entries of a bucket chain that no connection uses and whose rate bucket is full:
 * an address keeps its spent tokens across reconnections, but not forever. */
static void ip_sweep(kl__srv_t *s, unsigned h) {
  for (kl__ipent_t **pp = &s->ips[h]; *pp;) {
    kl__ipent_t *en = *pp;
    if (en->conns == 0 && (s->lim.max_rate_per_ip <= 0 || ip_refill(s, en))) {
      *pp = en->next;
      free(en);
    } else {
      pp = &en->next;
    }
  }
}

static void ip_release(kl__srv_t *s, kl__conn_t *c) {
  kl__ipent_t *en = c->ip;
  c->ip = NULL;
  if (en == NULL || --en->conns > 0) return;
  ip_sweep(s, ip_hash(en->ip));
}

static void ip_free_all(kl__srv_t *s) {
  for (unsigned h = 0; s->ips && h < KL__IP_BUCKETS; h++)
    while (s->ips[h]) {
      kl__ipent_t *en = s->ips[h];
      s->ips[h] = en->next;
      free(en);
    }
  free(s->ips);
  s->ips = NULL;
}

bool kl__conn_rate_ok(kl__conn_t *c) {
  kl__srv_t *s = c->srv;
  kl__ipent_t *en = c->ip;
  if (s->lim.max_rate_per_ip <= 0 || en == NULL) return true;
  ip_refill(s, en);
  if (en->tokens < 1) {
    s->stats.rate_limited++;
    return false;
  }
  en->tokens -= 1;
  return true;
}

/* ---- server ---- */

static void srv_handle_closed(uv_handle_t *h) {
  kl__srv_t *s = h->data;
  if (--s->handles == 0) s->proto->on_server_closed(s);
}

static void srv_finish(kl__srv_t *s) {
  if (!s->closing || s->conns != NULL) return;
  if (!uv_is_closing((uv_handle_t *)&s->idle)) uv_close((uv_handle_t *)&s->idle, srv_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&s->stop_timer)) uv_close((uv_handle_t *)&s->stop_timer, srv_handle_closed);
  ip_free_all(s); /* entries kept for their rate after their last connection */
  kl_tls_ctx_unref(s->tls);
  s->tls = NULL;
}

int kl__srv_init(kl__srv_t *s, uv_loop_t *loop, const kl__proto_t *proto, void *owner, const kl_net_limits_t *lim,
                 const char *name, kl_err_t *e) {
  s->loop = loop;
  s->proto = proto;
  s->owner = owner;
  if (lim) s->lim = *lim;
  else kl_net_limits_default(&s->lim);
  if (s->lim.max_body == 0 || s->lim.max_connections == 0 || s->lim.max_inflight == 0 || s->lim.max_header < 256)
    return kl_err_set(e, KL_EINVAL, "server limits: max_body, max_connections and max_inflight must be positive, "
                      "max_header at least 256");
  snprintf(s->name, sizeof s->name, "%s", name ? name : proto->kind);
  int rc = uv_idle_init(loop, &s->idle);
  if (rc == 0) rc = uv_timer_init(loop, &s->stop_timer);
  if (rc) return kl_err_set(e, KL_EIO, "%s: %s", s->name, uv_strerror(rc)); /* cannot fail on Linux */
  s->idle.data = s->stop_timer.data = s;
  s->handles = 2;
  return 0;
}

static void on_connection(uv_stream_t *server, int status);

void kl__srv_set_tls(kl__srv_t *s, kl_tls_ctx_t *ctx, unsigned roles, kl_peer_check_fn check, void *arg) {
  kl_tls_ctx_unref(s->tls);
  s->tls = kl_tls_ctx_ref(ctx);
  s->tls_roles = roles;
  s->peer_check = check;
  s->peer_check_arg = arg;
}

int kl__srv_listen(kl__srv_t *s, const char *addr, kl_err_t *e) {
  struct sockaddr_storage ss;
  int rc;
  if (s->listener_init) return kl_err_set(e, KL_ESTATE, "%s: already listening", s->name);
  if ((rc = kl_net_parse_addr(addr, &ss, e))) return kl_err_wrap(e, "%s", s->name);
  if ((rc = uv_tcp_init(s->loop, &s->listener))) return kl_err_set(e, KL_EIO, "%s: %s", s->name, uv_strerror(rc));
  s->listener.data = s;
  s->listener_init = true;
  s->handles++;
  if ((rc = s->lim.reuseport ? kl_net_bind_reuseport(&s->listener, (const struct sockaddr *)&ss)
                             : uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0)) ||
      (rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection)))
    return kl_err_set(e, KL_EIO, "%s: cannot listen on %s: %s", s->name, addr, uv_strerror(rc));
  struct sockaddr_storage bound;
  int len = sizeof bound;
  if ((rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len)))
    return kl_err_set(e, KL_EIO, "%s: getsockname: %s", s->name, uv_strerror(rc));
  s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                               : ((struct sockaddr_in *)&bound)->sin_port);
  char name[80];
  addr_name(&bound, name, sizeof name);
  kl_log(KL_LOG_INFO, "listen", "server=%s proto=%s addr=%s port=%d", s->name, s->proto->kind, name, s->port);
  return 0;
}

static void stop_timeout(uv_timer_t *t) {
  kl__srv_t *s = t->data;
  unsigned n = 0;
  for (kl__conn_t *c = s->conns; c; c = c->next) n++;
  kl_log(KL_LOG_WARN, "shutdown_timeout", "server=%s connections=%u", s->name, n);
  for (kl__conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    kl__conn_close(c);
  }
}

void kl__srv_close(kl__srv_t *s) {
  if (s->closing) return;
  s->closing = true;
  if (s->share) s->share->shared_by = NULL; /* either may be freed first */
  if (s->shared_by) s->shared_by->share = NULL;
  s->share = s->shared_by = NULL;
  if (s->listener_init) uv_close((uv_handle_t *)&s->listener, srv_handle_closed);
  uv_timer_start(&s->stop_timer, stop_timeout, s->lim.shutdown_timeout_ms, 0);
  for (kl__conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    kl__conn_settle(c);
  }
  srv_finish(s);
}

/* ---- resume queue: backlogs are fed from the idle handle, outside any respond call ---- */

static void feed(kl__conn_t *c, const uint8_t *p, size_t n);

static void on_idle(uv_idle_t *h) {
  kl__srv_t *s = h->data;
  /* One pass over the connections queued so far, popped from the live queue so that a close
   * during the pass (which unlinks) cannot break it; one queued again waits for the next pass. */
  kl__conn_t *last = s->resume_tail;
  while (s->resume_head) {
    kl__conn_t *c = s->resume_head;
    s->resume_head = c->resume_next;
    if (s->resume_head == NULL) s->resume_tail = NULL;
    c->resume_next = NULL;
    c->resume_queued = false;
    if (c->backlog == NULL || !kl__conn_can_take(c)) {
      kl__conn_settle(c); /* queues it again once it can take the backlog */
    } else {
      uint8_t *b = c->backlog;
      size_t n = c->backlog_len;
      c->backlog = NULL;
      c->backlog_len = 0;
      feed(c, b, n);
      free(b);
    }
    if (c == last) break;
  }
  if (s->resume_head == NULL) uv_idle_stop(h);
}

static void resume_queue(kl__conn_t *c) {
  kl__srv_t *s = c->srv;
  if (c->resume_queued) return;
  c->resume_queued = true;
  if (s->resume_tail) s->resume_tail->resume_next = c;
  else s->resume_head = c;
  s->resume_tail = c;
  uv_idle_start(&s->idle, on_idle);
}

static void resume_unlink(kl__conn_t *c) {
  kl__srv_t *s = c->srv;
  if (!c->resume_queued) return;
  kl__conn_t **pp = &s->resume_head, *prev = NULL;
  while (*pp && *pp != c) {
    prev = *pp;
    pp = &(*pp)->resume_next;
  }
  if (*pp) *pp = c->resume_next;
  if (s->resume_tail == c) s->resume_tail = prev;
  c->resume_next = NULL;
  c->resume_queued = false;
}

/* ---- connections ---- */

static void conn_handle_closed(uv_handle_t *h) {
  kl__conn_t *c = h->data;
  if (--c->handles > 0) return;
  kl__srv_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->proto_open) s->stats.open--;
  ip_release(s, c);
  kl_tls_session_free(c->tls);
  free(c->backlog);
  free(c);
  srv_finish(s);
}

void kl__conn_close(kl__conn_t *c) {
  if (c->state == KL__C_CLOSING) return;
  c->state = KL__C_CLOSING;
  resume_unlink(c);
  if (c->proto_open) {
    kl_log(KL_LOG_DEBUG, "conn_close", "server=%s peer=%s", c->srv->name, c->peer);
    c->srv->proto->on_close(c);
  }
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_timer(uv_timer_t *t) {
  kl__conn_t *c = t->data;
  if (c->state == KL__C_OPEN && c->tls && !c->authed) {
    c->srv->stats.tls_refused++;
    kl_log(KL_LOG_WARN, "peer_refused", "server=%s peer=%s reason=\"no TLS handshake within %llu ms\"", c->srv->name,
           c->peer, (unsigned long long)c->srv->lim.handshake_timeout_ms);
  } else if (c->state == KL__C_OPEN) {
    kl_log(KL_LOG_DEBUG, "idle_timeout", "server=%s peer=%s", c->srv->name, c->peer);
  }
  kl__conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  kl__conn_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)c->srv->readbuf, sizeof c->srv->readbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void start_reading(kl__conn_t *c) {
  if (c->reading) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
  else kl__conn_close(c);
}

static void stop_reading(kl__conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

void kl__conn_settle(kl__conn_t *c) {
  if (c->state != KL__C_OPEN) return;
  kl__srv_t *s = c->srv;
  if (s->closing && c->backlog) { /* shutting down: input not yet looked at is dropped */
    free(c->backlog);
    c->backlog = NULL;
    c->backlog_len = 0;
  }
  bool idle = c->backlog == NULL && s->proto->idle(c);
  if (idle && (c->eof || s->closing || c->end_when_idle)) {
    kl__conn_end(c);
    return;
  }
  bool take = kl__conn_can_take(c);
  if (c->backlog && take) resume_queue(c);
  if (take && !c->eof && !s->closing && !c->end_when_idle && c->backlog == NULL) start_reading(c);
  else stop_reading(c);
  if (c->state != KL__C_OPEN) return;
  /* The timer runs while nothing is in progress, and while the peer does not read what we wrote
   * (stalled over the watermark, requests waiting unread behind it): either way idle_timeout
   * without progress closes the connection. Written bytes count as progress (on_write). */
  bool timed = idle || c->queued > s->lim.write_watermark;
  if (timed && !c->timer_idle) uv_timer_start(&c->timer, on_timer, s->lim.idle_timeout_ms, 0);
  else if (!timed && c->timer_idle) uv_timer_stop(&c->timer);
  c->timer_idle = timed;
}

void kl__conn_touch(kl__conn_t *c) {
  if (c->state == KL__C_OPEN && c->timer_idle && c->authed)
    uv_timer_start(&c->timer, on_timer, c->srv->lim.idle_timeout_ms, 0);
}

void kl__conn_pause(kl__conn_t *c, unsigned bit) {
  c->pause |= bit;
  kl__conn_settle(c);
}

void kl__conn_unpause(kl__conn_t *c, unsigned bit) {
  c->pause &= ~bit;
  kl__conn_settle(c);
}

void kl__srv_share(kl__srv_t *s, kl__srv_t *to) {
  s->share = to;
  to->shared_by = s;
  to->port = s->port;
}

/* A connection's first bytes on a server that shares its port: a KSI PDU (TLV16 flag 0x80)
 * moves it to the other server, with that server's protocol, limits and address table; text
 * (HTTP) stays. False when the connection was closed instead. */
static bool sniff(kl__conn_t *c, const uint8_t *p, size_t n) {
  kl__srv_t *from = c->srv, *to = from->share;
  c->sniffed = true;
  if (to == NULL || c->tls != NULL || n == 0 || !(p[0] & 0x80)) return true;
  if (to->closing || to->stats.open >= to->lim.max_connections) {
    to->stats.rejected++;
    kl__conn_close(c);
    return false;
  }
  resume_unlink(c);
  from->proto->on_close(c);
  c->proto_open = false;
  from->stats.open--;
  if (c->prev) c->prev->next = c->next;
  else from->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  ip_release(from, c);
  c->srv = to;
  c->prev = NULL;
  c->next = to->conns;
  if (to->conns) to->conns->prev = c;
  to->conns = c;
  srv_finish(from);
  if (!ip_acquire(to, c)) {
    to->stats.ip_refused++;
    kl__conn_close(c);
    return false;
  }
  if (to->proto->on_open(c)) {
    kl__conn_close(c);
    return false;
  }
  c->proto_open = true;
  to->stats.open++;
  to->stats.accepted++;
  kl_log(KL_LOG_DEBUG, "conn_moved", "from=%s to=%s peer=%s", from->name, to->name, c->peer);
  return true;
}

/* Hands bytes to the protocol and keeps what it does not take. */
static void feed(kl__conn_t *c, const uint8_t *p, size_t n) {
  if (!c->sniffed && !sniff(c, p, n)) return;
  size_t used = c->srv->proto->on_data(c, p, n);
  if (c->state != KL__C_OPEN) return;
  if (used < n) {
    /* Reading was stopped by the protocol before this backlog can grow: it holds at most one
     * read buffer's worth. */
    uint8_t *b = malloc(n - used);
    if (b == NULL) {
      kl_log(KL_LOG_ERROR, "oom", "server=%s peer=%s what=backlog", c->srv->name, c->peer);
      kl__conn_close(c);
      return;
    }
    memcpy(b, p + used, n - used);
    free(c->backlog);
    c->backlog = b;
    c->backlog_len = n - used;
  }
  kl__conn_settle(c);
}

static void raw_write(kl__conn_t *c, void *p, size_t n);
static void raw_writev(kl__conn_t *c, void **p, const size_t *lens, size_t n);

/* Sends what the TLS session has for the network (handshake messages, records, alerts). */
static void tls_flush(kl__conn_t *c) {
  size_t n;
  uint8_t *p;
  while ((p = kl_tls_session_output(c->tls, &n)) != NULL) raw_write(c, p, n);
}

static void tls_refuse(kl__conn_t *c, const char *why) {
  kl__srv_t *s = c->srv;
  s->stats.tls_refused++;
  kl_log(KL_LOG_WARN, "peer_refused", "server=%s peer=%s reason=\"%s\"", s->name, c->peer, why);
  tls_flush(c); /* the alert, if any: the peer learns why */
  kl__conn_end(c);
}

/* Ciphertext read: advance the handshake, authenticate the peer, hand the plaintext on. */
static void tls_read(kl__conn_t *c, const uint8_t *p, size_t n) {
  kl__srv_t *s = c->srv;
  kl_err_t e = {0};
  bool was = c->authed;
  int st = kl_tls_session_feed(c->tls, p, n, &e);
  if (st < 0) {
    tls_refuse(c, e.msg);
    return;
  }
  if (st == KL_TLS_READY && !was) {
    const kl_peer_t *who = kl_tls_session_peer(c->tls);
    const char *why = s->peer_check && who->role ? s->peer_check(who, s->peer_check_arg) : NULL;
    if (why) {
      tls_refuse(c, why);
      return;
    }
    c->who = *who;
    c->authed = true;
    if (who->role)
      kl_log(KL_LOG_DEBUG, "peer_authenticated", "server=%s peer=%s role=%s id=%s", s->name, c->peer,
             kl_role_name(who->role), who->id);
    c->timer_idle = false; /* the handshake's deadline is over: the idle timer takes over */
    uv_timer_stop(&c->timer);
    if (s->proto->on_authenticated) s->proto->on_authenticated(c);
  }
  tls_flush(c);
  if (c->state != KL__C_OPEN || !c->authed) return;
  /* Everything decrypted goes to the protocol at once (reading stops while it has a backlog). */
  uint8_t *buf = s->plainbuf, *big = NULL;
  size_t have = 0, cap = sizeof s->plainbuf;
  for (;;) {
    bool closed = false;
    long got = kl_tls_session_read(c->tls, buf + have, cap - have, &closed, &e);
    if (got < 0) {
      free(big);
      tls_refuse(c, e.msg);
      return;
    }
    have += (size_t)got;
    if (closed) c->eof = true;
    if (got == 0) break;
    if (have == cap) { /* unusual: more than one read's worth was buffered */
      uint8_t *nb = malloc(cap * 2);
      if (nb == NULL) break;
      memcpy(nb, buf, have);
      free(big);
      big = buf = nb;
      cap *= 2;
    }
  }
  if (have) feed(c, buf, have);
  else kl__conn_settle(c);
  free(big);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  kl__conn_t *c = st->data;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF && c->state == KL__C_OPEN) {
      c->eof = true;
      stop_reading(c);
      kl__conn_settle(c);
    } else {
      if (nread != UV_EOF && nread != UV_ECONNRESET)
        kl_log(KL_LOG_DEBUG, "read_error", "server=%s peer=%s error=%s", c->srv->name, c->peer, uv_err_name((int)nread));
      kl__conn_close(c);
    }
    return;
  }
  if (c->state != KL__C_OPEN) return; /* ending or lingering: discard */
  if (c->tls) tls_read(c, c->srv->readbuf, (size_t)nread);
  else feed(c, c->srv->readbuf, (size_t)nread);
}

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = req->data;
  kl__conn_t *c = w->c;
  c->queued -= w->len;
  for (size_t i = 0; i < w->n; i++) free(w->p[i]);
  free(w);
  if (c->state == KL__C_CLOSING) return;
  if (status < 0) {
    kl_log(KL_LOG_DEBUG, "write_error", "server=%s peer=%s error=%s", c->srv->name, c->peer, uv_err_name(status));
    kl__conn_close(c);
    return;
  }
  if (c->state == KL__C_OPEN && c->timer_idle && c->authed) /* progress: the peer is reading */
    uv_timer_start(&c->timer, on_timer, c->srv->lim.idle_timeout_ms, 0);
  kl__conn_settle(c);
}

void kl__conn_write(kl__conn_t *c, void *a, size_t alen, void *b, size_t blen) {
  void *p[2] = {a, b};
  size_t lens[2] = {alen, blen};
  kl__conn_writev(c, p, lens, 2);
}

void kl__conn_writev(kl__conn_t *c, void **p, const size_t *lens, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += lens[i];
  if (c->state != KL__C_OPEN || total == 0) {
    for (size_t i = 0; i < n; i++) free(p[i]);
    return;
  }
  if (c->tls) {
    kl_err_t e = {0};
    int r = 0;
    for (size_t i = 0; i < n; i++) {
      if (r == 0 && lens[i]) r = kl_tls_session_write(c->tls, p[i], lens[i], &e);
      free(p[i]);
    }
    if (r) {
      kl_log(KL_LOG_WARN, "tls_error", "server=%s peer=%s error=\"%s\"", c->srv->name, c->peer, e.msg);
      kl__conn_close(c);
      return;
    }
    tls_flush(c);
    return;
  }
  raw_writev(c, p, lens, n);
}

static void raw_write(kl__conn_t *c, void *p, size_t n) { raw_writev(c, &p, &n, 1); }

/* Queues bytes on the socket as they are (ciphertext on a TLS connection): one uv_write, so
 * one writev(2) when the socket takes it at once. */
static void raw_writev(kl__conn_t *c, void **p, const size_t *lens, size_t n) {
  uv_buf_t small[8] = {{0}}, *bufs = small;
  size_t nb = 0, total = 0;
  wreq_t *w = c->state == KL__C_CLOSING ? NULL : malloc(sizeof *w + n * sizeof w->p[0]);
  if (w != NULL && n > 8 && (bufs = malloc(n * sizeof *bufs)) == NULL) {
    free(w);
    w = NULL;
  }
  if (w == NULL) {
    for (size_t i = 0; i < n; i++) free(p[i]);
    if (c->state != KL__C_CLOSING) kl__conn_close(c);
    return;
  }
  w->n = 0;
  for (size_t i = 0; i < n; i++) {
    if (lens[i]) bufs[nb++] = uv_buf_init(p[i], (unsigned)lens[i]);
    total += lens[i];
    w->p[w->n++] = p[i];
  }
  w->c = c;
  w->len = total;
  w->req.data = w;
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nb, on_write);
  if (bufs != small) free(bufs);
  if (rc) {
    for (size_t i = 0; i < w->n; i++) free(w->p[i]);
    free(w);
    kl__conn_close(c);
    return;
  }
  c->queued += total;
  if (c->queued > c->srv->lim.write_watermark) {
    stop_reading(c);
    if (!c->timer_idle) { /* stalled: closed after idle_timeout unless the peer reads */
      uv_timer_start(&c->timer, on_timer, c->srv->lim.idle_timeout_ms, 0);
      c->timer_idle = true;
    }
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  kl__conn_t *c = req->data;
  if (c->state == KL__C_CLOSING) return;
  if (status < 0 || c->eof || c->srv->closing) {
    kl__conn_close(c);
    return;
  }
  /* Read and discard until the peer closes, so that data it is still sending (a body we
   * refused) does not make the kernel reset the connection before our response is read. */
  c->state = KL__C_LINGER;
  uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
  start_reading(c);
}

void kl__conn_end(kl__conn_t *c) {
  if (c->state != KL__C_OPEN) return;
  c->state = KL__C_ENDING;
  resume_unlink(c);
  free(c->backlog);
  c->backlog = NULL;
  c->backlog_len = 0;
  stop_reading(c);
  if (c->tls && c->authed) { /* close_notify, so the peer can tell our end from a cut */
    kl_tls_session_shutdown(c->tls);
    tls_flush(c);
  }
  /* The timer now bounds how long the last writes may take. */
  uv_timer_start(&c->timer, on_timer, c->srv->lim.idle_timeout_ms, 0);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown)) kl__conn_close(c);
}

static void on_connection(uv_stream_t *server, int status) {
  kl__srv_t *s = server->data;
  if (status < 0) {
    kl_log(KL_LOG_WARN, "accept_error", "server=%s error=%s", s->name, uv_err_name(status));
    return;
  }
  kl__conn_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    kl_log(KL_LOG_ERROR, "oom", "server=%s what=connection", s->name);
    return; /* the pending connection stays in the kernel's queue until memory is back */
  }
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
    kl__conn_close(c);
    return;
  }
  struct sockaddr_storage peer;
  int len = sizeof peer;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) == 0) addr_name(&peer, c->peer, sizeof c->peer);
  else snprintf(c->peer, sizeof c->peer, "?");
  if (s->closing || s->stats.open >= s->lim.max_connections) {
    s->stats.rejected++;
    kl_log(KL_LOG_DEBUG, "conn_reject", "server=%s peer=%s open=%llu", s->name, c->peer,
           (unsigned long long)s->stats.open);
    kl__conn_close(c);
    return;
  }
  if (!ip_acquire(s, c)) {
    s->stats.ip_refused++;
    kl_log(KL_LOG_DEBUG, "conn_reject", "server=%s peer=%s reason=per_address_cap", s->name, c->peer);
    kl__conn_close(c);
    return;
  }
  if (s->tls && (c->tls = kl_tls_session_new(s->tls, true, s->tls_roles, NULL)) == NULL) {
    kl_log(KL_LOG_ERROR, "oom", "server=%s what=tls_session", s->name);
    kl__conn_close(c);
    return;
  }
  if (s->proto->on_open(c)) {
    kl__conn_close(c);
    return;
  }
  c->proto_open = true;
  s->stats.open++;
  s->stats.accepted++;
  uv_tcp_nodelay(&c->tcp, 1);
  kl_log(KL_LOG_DEBUG, "conn_open", "server=%s peer=%s", s->name, c->peer);
  if (c->tls) { /* the handshake has its own deadline; the idle timer starts after it */
    uv_timer_start(&c->timer, on_timer, s->lim.handshake_timeout_ms, 0);
    c->timer_idle = true;
  } else {
    c->authed = true;
  }
  kl__conn_settle(c);
}
