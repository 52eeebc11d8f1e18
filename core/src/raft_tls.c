/* Raft over mutual TLS (raft_tls.h).
 *
 * A bridge is one Raft connection: a TCP socket carrying TLS on the network side, and a Unix
 * socket pair whose one end libraft owns (it reads, writes and closes it as any stream) and
 * whose other end the bridge relays. States: TCP (connecting) → TLS (handshake) → HELLO (the
 * acceptor waits for the connector's hello) → OPEN (relaying) → DEAD (handles closing).
 * Failure modes: connect refused or timed out, TLS refused (certificate, role, id), a bad or
 * slow hello, a non-member, either side closing or failing: the bridge closes both its
 * handles; libraft sees EOF on its end and reconnects as it always does. A connect request
 * gets its callback exactly once (RAFT_NOCONNECTION on failure, RAFT_CANCELED on close).
 * Back-pressure: a side whose write queue passes WQ_HIGH stops the other side's reading. */
#include "raft_tls.h"

#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyless/frameclient.h" /* kl_frame_addr_split */
#include "keyless/log.h"
#include "keyless/net.h"
#include "raft_guard.h"

#define HANDSHAKE_MS 10000
#define MAX_CONNS 64
#define WQ_HIGH ((size_t)8 << 20)
#define READ_BUF 65536

typedef struct bridge bridge_t;

typedef struct rt {
  struct raft_uv_transport *t;
  uv_loop_t *loop;
  kl_tls_ctx_t *tls;
  kl_raft_member_fn is_member;
  void *arg;
  raft_id id;
  char address[256];
  uv_tcp_t listener;
  bool listening, closing, free_when_done;
  raft_uv_accept_cb accept_cb;
  raft_uv_transport_close_cb close_cb;
  bridge_t *bridges;
  unsigned n;
  unsigned long refused, accepted;
  uint8_t plain[READ_BUF + 16384 + 256];
} rt_t;

enum { B_TCP, B_TLS, B_HELLO, B_OPEN, B_DEAD };

struct bridge {
  rt_t *rt;
  bridge_t *next, *prev;
  bool outbound, pipe_init, tcp_paused, pipe_paused;
  int state, handles;
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_timer_t timer;
  uv_pipe_t pipe; /* our end of the pair */
  uv_getaddrinfo_t gai; /* an outbound bridge to a member named by host name: resolving */
  bool resolving;
  kl_tls_session_t *tls;
  raft_id peer_id;
  char peer_addr[256];
  char where[64]; /* "ip:port" for logs */
  struct raft_uv_connect *req;
  raft_uv_connect_cb cb;
  uint8_t hello[KL_RAFT_HELLO_MAX];
  size_t hello_have;
};

typedef struct wreq {
  uv_write_t w;
  bridge_t *b;
  uint8_t *p;
} wreq_t;

static void maybe_done(rt_t *rt) {
  if (!rt->closing || rt->bridges || rt->listening) return;
  raft_uv_transport_close_cb cb = rt->close_cb;
  rt->close_cb = NULL;
  if (cb) cb(rt->t);
  if (rt->free_when_done) {
    kl_tls_ctx_unref(rt->tls);
    free(rt);
  }
}

/* A handle closed or the name resolution finished: the bridge goes with the last of them. */
static void bridge_release(bridge_t *b) {
  if (--b->handles > 0) return;
  rt_t *rt = b->rt;
  if (b->prev) b->prev->next = b->next;
  else rt->bridges = b->next;
  if (b->next) b->next->prev = b->prev;
  rt->n--;
  kl_tls_session_free(b->tls);
  free(b);
  maybe_done(rt);
}

static void on_bridge_closed(uv_handle_t *h) {
  bridge_release(h->data);
}

static void report(bridge_t *b, struct uv_stream_s *stream, int status) {
  raft_uv_connect_cb cb = b->cb;
  b->cb = NULL;
  if (cb) cb(b->req, stream, status);
}

static void bridge_close(bridge_t *b, const char *why, bool refused) {
  if (b->state == B_DEAD) return;
  if (refused) {
    b->rt->refused++;
    kl_log(KL_LOG_WARN, "raft_peer_refused", "peer=%s dir=%s reason=\"%s\"", b->where, b->outbound ? "out" : "in", why);
  } else if (b->state == B_OPEN) {
    kl_log(KL_LOG_DEBUG, "raft_link_closed", "peer=%s id=%llu reason=\"%s\"", b->where, (unsigned long long)b->peer_id,
           why);
  }
  b->state = B_DEAD;
  if (b->resolving) uv_cancel((uv_req_t *)&b->gai); /* on_resolved still runs, with UV_ECANCELED */
  report(b, NULL, b->rt->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
  uv_close((uv_handle_t *)&b->tcp, on_bridge_closed);
  uv_close((uv_handle_t *)&b->timer, on_bridge_closed);
  if (b->pipe_init) uv_close((uv_handle_t *)&b->pipe, on_bridge_closed);
}

/* ---- writes ---- */

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf);
static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  bridge_t *b = q->b;
  bool to_tcp = w->handle == (uv_stream_t *)&b->tcp;
  free(q->p);
  free(q);
  if (b->state == B_DEAD) return;
  if (status < 0) {
    bridge_close(b, uv_strerror(status), false);
    return;
  }
  /* Below the watermark again: the side that was paused reads again. */
  if (to_tcp && b->pipe_paused && uv_stream_get_write_queue_size((uv_stream_t *)&b->tcp) < WQ_HIGH / 2) {
    b->pipe_paused = false;
    uv_read_start((uv_stream_t *)&b->pipe, on_alloc, on_pipe_read);
  } else if (!to_tcp && b->tcp_paused && uv_stream_get_write_queue_size((uv_stream_t *)&b->pipe) < WQ_HIGH / 2) {
    b->tcp_paused = false;
    uv_read_start((uv_stream_t *)&b->tcp, on_alloc, on_tcp_read);
  }
}

/* Takes p (malloc'd). */
static void put(bridge_t *b, uv_stream_t *s, uint8_t *p, size_t n) {
  wreq_t *q = malloc(sizeof *q);
  uv_buf_t buf = uv_buf_init((char *)p, (unsigned)n);
  if (q == NULL) {
    free(p);
    bridge_close(b, "out of memory", false);
    return;
  }
  q->b = b;
  q->p = p;
  int rc = uv_write(&q->w, s, &buf, 1, on_written);
  if (rc) {
    free(p);
    free(q);
    bridge_close(b, uv_strerror(rc), false);
  }
}

static void tls_flush(bridge_t *b) {
  size_t n;
  uint8_t *p;
  while (b->state != B_DEAD && (p = kl_tls_session_output(b->tls, &n)) != NULL) put(b, (uv_stream_t *)&b->tcp, p, n);
}

/* Plaintext towards the peer. */
static void send_plain(bridge_t *b, const uint8_t *p, size_t n) {
  if (b->tls == NULL) {
    uint8_t *copy = malloc(n);
    if (copy == NULL) {
      bridge_close(b, "out of memory", false);
      return;
    }
    memcpy(copy, p, n);
    put(b, (uv_stream_t *)&b->tcp, copy, n);
    return;
  }
  kl_err_t e = {0};
  if (kl_tls_session_write(b->tls, p, n, &e)) {
    bridge_close(b, e.msg, false);
    return;
  }
  tls_flush(b);
}

/* Plaintext from the peer, towards libraft. */
static void to_raft(bridge_t *b, const uint8_t *p, size_t n) {
  uint8_t *copy = malloc(n);
  if (copy == NULL) {
    bridge_close(b, "out of memory", false);
    return;
  }
  memcpy(copy, p, n);
  put(b, (uv_stream_t *)&b->pipe, copy, n);
  if (b->state == B_OPEN && !b->tcp_paused && uv_stream_get_write_queue_size((uv_stream_t *)&b->pipe) > WQ_HIGH) {
    b->tcp_paused = true;
    uv_read_stop((uv_stream_t *)&b->tcp);
  }
}

/* ---- opening: the socket pair, libraft's end handed over ---- */

static void free_theirs(uv_handle_t *h) { raft_free(h); }

static void open_pair(bridge_t *b) {
  rt_t *rt = b->rt;
  int sv[2];
  uv_pipe_t *theirs = raft_malloc(sizeof *theirs); /* libraft closes and frees it */
  if (theirs == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    raft_free(theirs);
    bridge_close(b, "socketpair failed", false);
    return;
  }
  uv_pipe_init(rt->loop, theirs, 0);
  uv_pipe_init(rt->loop, &b->pipe, 0);
  b->pipe.data = b;
  b->pipe_init = true;
  b->handles++;
  if (uv_pipe_open(theirs, sv[0]) || uv_pipe_open(&b->pipe, sv[1])) { /* cannot fail for a fresh pair */
    close(sv[0]);
    uv_close((uv_handle_t *)theirs, free_theirs);
    bridge_close(b, "pipe open failed", false);
    return;
  }
  b->state = B_OPEN;
  uv_read_start((uv_stream_t *)&b->pipe, on_alloc, on_pipe_read);
  uv_timer_stop(&b->timer);
  rt->accepted++;
  kl_log(KL_LOG_INFO, "raft_link_up", "peer=%s id=%llu dir=%s tls=%s", b->where, (unsigned long long)b->peer_id,
         b->outbound ? "out" : "in", b->tls ? "yes" : "no");
  if (b->outbound) report(b, (struct uv_stream_s *)theirs, 0);
  else if (rt->accept_cb && !rt->closing) rt->accept_cb(rt->t, b->peer_id, b->peer_addr, (struct uv_stream_s *)theirs);
  else uv_close((uv_handle_t *)theirs, free_theirs);
}

static void send_hello(bridge_t *b) {
  uint8_t h[KL_RAFT_HELLO_MAX];
  size_t n = kl_raft_hello_encode(b->rt->id, b->rt->address, h);
  if (n == 0) {
    bridge_close(b, "our own Raft address does not fit a hello", false);
    return;
  }
  send_plain(b, h, n);
}

/* The acceptor's side: bytes of the hello, then whatever follows goes to libraft. */
static void take_hello(bridge_t *b, const uint8_t *p, size_t n) {
  while (n > 0 && b->state == B_HELLO) {
    size_t need = kl_raft_hello_need(b->hello, b->hello_have);
    if (need > sizeof b->hello) { /* checked before a byte more is stored */
      bridge_close(b, "hello: bad address length", true);
      return;
    }
    size_t take = need - b->hello_have < n ? need - b->hello_have : n;
    memcpy(b->hello + b->hello_have, p, take);
    b->hello_have += take;
    p += take;
    n -= take;
    if (b->hello_have < need || kl_raft_hello_need(b->hello, b->hello_have) > b->hello_have) continue;
    uint64_t id;
    const char *bad;
    if (kl_raft_hello_parse(b->hello, b->hello_have, &id, b->peer_addr, &bad)) {
      bridge_close(b, bad, true);
      return;
    }
    const kl_peer_t *who = b->tls ? kl_tls_session_peer(b->tls) : NULL;
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%" PRIu64, id);
    if (who && strcmp(who->id, idtext) != 0) {
      char why[160];
      snprintf(why, sizeof why, "claims member %s but its certificate is core/%s", idtext, who->id);
      bridge_close(b, why, true);
      return;
    }
    if (!b->rt->is_member(b->rt->arg, id)) {
      char why[64];
      snprintf(why, sizeof why, "%s is not a member", idtext);
      bridge_close(b, why, true);
      return;
    }
    b->peer_id = id;
    open_pair(b);
  }
  if (n > 0 && b->state == B_OPEN) to_raft(b, p, n);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  (void)h;
  (void)sz;
  buf->base = malloc(READ_BUF);
  buf->len = buf->base ? READ_BUF : 0;
}

static void plain_in(bridge_t *b, const uint8_t *p, size_t n) {
  if (b->state == B_HELLO) take_hello(b, p, n);
  else if (b->state == B_OPEN) to_raft(b, p, n);
}

static void tls_in(bridge_t *b, const uint8_t *p, size_t n) {
  rt_t *rt = b->rt;
  kl_err_t e = {0};
  int st = kl_tls_session_feed(b->tls, p, n, &e);
  if (st < 0) {
    tls_flush(b);
    bridge_close(b, e.msg, true);
    return;
  }
  tls_flush(b);
  if (st == KL_TLS_READY && b->state == B_TLS) {
    if (b->outbound) {
      send_hello(b);
      if (b->state == B_TLS) open_pair(b);
    } else {
      b->state = B_HELLO;
    }
  }
  for (;;) {
    if (b->state != B_HELLO && b->state != B_OPEN) return;
    bool closed = false;
    long got = kl_tls_session_read(b->tls, rt->plain, sizeof rt->plain, &closed, &e);
    if (got < 0) {
      bridge_close(b, e.msg, false);
      return;
    }
    if (got > 0) plain_in(b, rt->plain, (size_t)got);
    if (closed) {
      bridge_close(b, "closed by peer", false);
      return;
    }
    if (got == 0) return;
  }
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  bridge_t *b = s->data;
  if (n < 0) {
    free(buf->base);
    bridge_close(b, n == UV_EOF ? "closed by peer" : uv_strerror((int)n), b->state == B_TLS || b->state == B_HELLO);
    return;
  }
  if (n > 0 && b->state != B_DEAD) {
    if (b->tls) tls_in(b, (const uint8_t *)buf->base, (size_t)n);
    else plain_in(b, (const uint8_t *)buf->base, (size_t)n);
  }
  free(buf->base);
}

static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  bridge_t *b = s->data;
  if (n < 0) {
    free(buf->base);
    bridge_close(b, "closed by raft", false);
    return;
  }
  if (n > 0 && b->state == B_OPEN) {
    send_plain(b, (const uint8_t *)buf->base, (size_t)n);
    if (b->state == B_OPEN && !b->pipe_paused && uv_stream_get_write_queue_size((uv_stream_t *)&b->tcp) > WQ_HIGH) {
      b->pipe_paused = true;
      uv_read_stop((uv_stream_t *)&b->pipe);
    }
  }
  free(buf->base);
}

static void on_deadline(uv_timer_t *t) {
  bridge_t *b = t->data;
  bridge_close(b, "no TLS handshake and hello within 10 s", true);
}

/* Starts TLS (or, without it, the hello) on a connected socket. */
static void start(bridge_t *b) {
  rt_t *rt = b->rt;
  uv_tcp_nodelay(&b->tcp, 1);
  kl_net_link_liveness(&b->tcp, KL_NET_LINK_TIMEOUT_MS); /* a silent peer fails the link: libraft redials */
  uv_read_start((uv_stream_t *)&b->tcp, on_alloc, on_tcp_read);
  if (rt->tls == NULL) {
    if (b->outbound) {
      send_hello(b);
      if (b->state != B_DEAD) open_pair(b);
    } else {
      b->state = B_HELLO;
    }
    return;
  }
  char id[24];
  snprintf(id, sizeof id, "%llu", (unsigned long long)b->peer_id);
  b->state = B_TLS;
  b->tls = kl_tls_session_new(rt->tls, !b->outbound, KL_ROLE_CORE, b->outbound ? id : NULL);
  kl_err_t e = {0};
  if (b->tls == NULL) {
    bridge_close(b, "out of memory", false);
    return;
  }
  if (b->outbound && kl_tls_session_start(b->tls, &e) < 0) {
    bridge_close(b, e.msg, true);
    return;
  }
  tls_flush(b);
}

static bridge_t *bridge_new(rt_t *rt, bool outbound) {
  bridge_t *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
  b->rt = rt;
  b->outbound = outbound;
  uv_tcp_init(rt->loop, &b->tcp);
  uv_timer_init(rt->loop, &b->timer);
  b->tcp.data = b->timer.data = b;
  b->handles = 2;
  b->next = rt->bridges;
  if (rt->bridges) rt->bridges->prev = b;
  rt->bridges = b;
  rt->n++;
  uv_timer_start(&b->timer, on_deadline, HANDSHAKE_MS, 0);
  return b;
}

/* ---- the transport interface ---- */

static void on_connected(uv_connect_t *req, int status) {
  bridge_t *b = req->data;
  if (b->state == B_DEAD) return;
  if (status < 0) {
    bridge_close(b, uv_strerror(status), false);
    return;
  }
  start(b);
}

static int dial(bridge_t *b, const struct sockaddr *sa) {
  b->creq.data = b;
  int rc = uv_tcp_connect(&b->creq, &b->tcp, sa, on_connected);
  if (rc == 0) kl_net_link_liveness(&b->tcp, KL_NET_LINK_TIMEOUT_MS); /* bounds the connect too */
  return rc;
}

/* A member named by host name: resolved again on every connection, so that a member that moved
 * is found at its new address (the name lives in the Raft configuration, not the number). */
static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  bridge_t *b = g->data;
  b->resolving = false;
  if (b->state != B_DEAD) {
    int rc = status < 0 || res == NULL ? (status < 0 ? status : UV_EAI_NONAME) : dial(b, res->ai_addr);
    if (rc) {
      char why[160];
      snprintf(why, sizeof why, "%s: %s", status < 0 ? "cannot resolve" : "cannot connect", uv_strerror(rc));
      bridge_close(b, why, false);
    }
  }
  uv_freeaddrinfo(res);
  bridge_release(b);
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id, const char *address,
                     raft_uv_connect_cb cb) {
  rt_t *rt = t->impl;
  struct sockaddr_storage ss;
  char host[256], port[8];
  if (rt->closing) return RAFT_CANCELED;
  bool numeric = kl_net_parse_addr(address, &ss, NULL) == 0;
  if (!numeric && kl_frame_addr_split(address, host, sizeof host, port, sizeof port, NULL)) return RAFT_NOCONNECTION;
  bridge_t *b = bridge_new(rt, true);
  if (b == NULL) return RAFT_NOMEM;
  b->req = req;
  b->cb = cb;
  b->peer_id = id;
  snprintf(b->where, sizeof b->where, "%s", address);
  int rc;
  if (numeric) {
    rc = dial(b, (const struct sockaddr *)&ss);
  } else {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    b->gai.data = b;
    rc = uv_getaddrinfo(rt->loop, &b->gai, on_resolved, host, port, &hints);
    if (rc == 0) b->resolving = true, b->handles++; /* released by on_resolved */
  }
  if (rc) {
    b->cb = NULL; /* failing synchronously: libraft gets the return code, not the callback */
    bridge_close(b, uv_strerror(rc), false);
    return RAFT_NOCONNECTION;
  }
  return 0;
}

static void on_connection(uv_stream_t *server, int status) {
  rt_t *rt = server->data;
  if (status < 0) return;
  bridge_t *b = bridge_new(rt, false);
  if (b == NULL) return;
  if (uv_accept(server, (uv_stream_t *)&b->tcp)) {
    bridge_close(b, "accept failed", false);
    return;
  }
  struct sockaddr_storage peer;
  int len = sizeof peer;
  char ip[64] = "?";
  if (uv_tcp_getpeername(&b->tcp, (struct sockaddr *)&peer, &len) == 0) {
    if (peer.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&peer, ip, sizeof ip);
    else uv_ip6_name((struct sockaddr_in6 *)&peer, ip, sizeof ip);
    snprintf(b->where, sizeof b->where, "%.46s:%d", ip,
             ntohs(peer.ss_family == AF_INET ? ((struct sockaddr_in *)&peer)->sin_port
                                             : ((struct sockaddr_in6 *)&peer)->sin6_port));
  }
  if (rt->closing || rt->n > MAX_CONNS) {
    bridge_close(b, "too many Raft connections", true);
    return;
  }
  start(b);
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address) {
  rt_t *rt = t->impl;
  rt->id = id;
  snprintf(rt->address, sizeof rt->address, "%s", address);
  return 0;
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb) {
  rt_t *rt = t->impl;
  struct sockaddr_storage ss;
  kl_err_t e = {0};
  if (kl_net_parse_addr(rt->address, &ss, &e)) {
    snprintf(t->errmsg, sizeof t->errmsg, "%.200s", e.msg);
    return RAFT_INVALID;
  }
  uv_tcp_init(rt->loop, &rt->listener);
  rt->listener.data = rt;
  rt->listening = true;
  int rc = uv_tcp_bind(&rt->listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&rt->listener, 64, on_connection);
  if (rc) {
    snprintf(t->errmsg, sizeof t->errmsg, "cannot listen on %.64s: %.64s", rt->address, uv_strerror(rc));
    return RAFT_IOERR;
  }
  rt->accept_cb = cb;
  kl_log(KL_LOG_INFO, "listen", "server=raft proto=raft+%s addr=%s", rt->tls ? "tls" : "tcp", rt->address);
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  rt_t *rt = h->data;
  rt->listening = false;
  maybe_done(rt);
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb) {
  rt_t *rt = t->impl;
  rt->closing = true;
  rt->close_cb = cb;
  for (bridge_t *b = rt->bridges, *next; b; b = next) {
    next = b->next;
    bridge_close(b, "transport closing", false);
  }
  if (rt->listening) uv_close((uv_handle_t *)&rt->listener, on_listener_closed);
  else maybe_done(rt);
}

int kl_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop, kl_tls_ctx_t *tls, kl_raft_member_fn is_member,
                     void *arg) {
  rt_t *rt = calloc(1, sizeof *rt);
  if (rt == NULL) return RAFT_NOMEM;
  memset(t, 0, sizeof *t);
  rt->t = t;
  rt->loop = loop;
  rt->tls = kl_tls_ctx_ref(tls);
  rt->is_member = is_member;
  rt->arg = arg;
  t->impl = rt;
  t->init = t_init;
  t->listen = t_listen;
  t->connect = t_connect;
  t->close = t_close;
  return 0;
}

void kl_raft_tls_close(struct raft_uv_transport *t) {
  rt_t *rt = t->impl;
  if (rt == NULL) return;
  t->impl = NULL;
  if (rt->bridges || rt->listening) { /* still closing: the last callback frees it */
    rt->free_when_done = true;
    return;
  }
  kl_tls_ctx_unref(rt->tls);
  free(rt);
}

unsigned long kl_raft_tls_refused(const struct raft_uv_transport *t) {
  const rt_t *rt = t->impl;
  return rt ? rt->refused : 0;
}

unsigned long kl_raft_tls_accepted(const struct raft_uv_transport *t) {
  const rt_t *rt = t->impl;
  return rt ? rt->accepted : 0;
}
