/* Internal to the servers: the connection layer shared by HTTP and ksi+tcp.
 *
 * A kl__srv_t owns a listener and its connections; a protocol (kl__proto_t) sees each
 * connection's bytes through on_data and keeps its own state in conn->proto.
 *
 * Connection states:
 *
 *   OPEN ──kl__conn_end──► ENDING (writes flush, then FIN) ──► LINGER (read and discard until
 *     │                      │                                   the peer's EOF or a short timer)
 *     └──────────────────────┴──────── kl__conn_close / errors / timers ──► CLOSING ──► freed
 *
 * Input flow control: the protocol consumes what it can from each read; the rest is kept as a
 * backlog and reading stops until the protocol asks for more (kl__conn_resume) and the backlog
 * is drained from the server's idle handle (never re-entrantly from a respond call). Reading
 * also stops while any pause bit is set and while more than write_watermark bytes are queued.
 *
 * The idle timer runs while the protocol is idle (no request in progress): it is restarted when
 * the connection becomes idle and when a write completes, never by partial input, so a request
 * must arrive whole within idle_timeout_ms of the previous response.
 */
#ifndef KL_NET_INTERNAL_H
#define KL_NET_INTERNAL_H

#include <uv.h>

#include "keyless/net.h"
#include "keyless/tls.h"

typedef struct kl__srv kl__srv_t;
typedef struct kl__conn kl__conn_t;

typedef struct kl__proto {
  const char *kind; /* "http", "ksi+tcp": for logs */
  /* Allocates c->proto; nonzero closes the connection. */
  int (*on_open)(kl__conn_t *c);
  /* Returns how many bytes were consumed (the rest becomes the backlog). */
  size_t (*on_data)(kl__conn_t *c, const uint8_t *p, size_t n);
  /* No request in progress. */
  bool (*idle)(const kl__conn_t *c);
  /* The connection is closing: orphan pending requests, free c->proto. */
  void (*on_close)(kl__conn_t *c);
  /* Every handle is closed: the owner frees itself and calls its user's callback. */
  void (*on_server_closed)(kl__srv_t *s);
  /* TLS: the peer was authenticated and accepted (may be NULL). */
  void (*on_authenticated)(kl__conn_t *c);
} kl__proto_t;

enum { KL__C_OPEN, KL__C_ENDING, KL__C_LINGER, KL__C_CLOSING };
enum { KL__PAUSE_BUSY = 1 };

struct kl__conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  kl__srv_t *srv;
  kl__conn_t *prev, *next;   /* server's list */
  kl__conn_t *resume_next;   /* server's resume queue */
  bool resume_queued;
  int handles;               /* open handles: 2 until both close callbacks ran */
  int state;
  bool reading, eof, timer_idle, proto_open, end_when_idle;
  unsigned pause;
  size_t queued; /* bytes of writes not yet completed */
  uint8_t *backlog;
  size_t backlog_len;
  uv_shutdown_t shutdown_req;
  void *proto;
  char peer[64];
  /* TLS (when the server has a context): the session, and the peer once authenticated. Until
   * then the protocol sees no bytes and the timer bounds the handshake. */
  kl_tls_session_t *tls;
  bool authed;
  kl_peer_t who;
  struct kl__ipent *ip; /* this peer address's entry in the server's table */
  bool sniffed;         /* its first bytes were looked at (servers with share) */
};

#define KL__READ_BUF 65536
/* Plaintext of one read: a read buffer's worth plus a record carried over from the last. */
#define KL__PLAIN_BUF (KL__READ_BUF + 16384 + 256)

/* Per peer address (IP without port): open connections and a request-rate token bucket. */
typedef struct kl__ipent {
  struct kl__ipent *next;
  char ip[64];
  unsigned conns;
  double tokens;
  uint64_t last_ms;
} kl__ipent_t;

struct kl__srv {
  uv_loop_t *loop;
  const kl__proto_t *proto;
  void *owner;
  kl_net_limits_t lim;
  char name[32];
  uv_tcp_t listener;
  uv_idle_t idle;
  uv_timer_t stop_timer;
  int handles;
  bool listener_init, closing;
  int port;
  kl__conn_t *conns;
  kl__conn_t *resume_head, *resume_tail;
  kl_net_stats_t stats;
  kl_tls_ctx_t *tls;   /* NULL: plain TCP */
  unsigned tls_roles;  /* roles a peer certificate must have; 0: none needed (https) */
  kl_peer_check_fn peer_check;
  void *peer_check_arg;
  kl__ipent_t **ips;   /* hash table of peer addresses, KL__IP_BUCKETS long */
  kl__srv_t *share;    /* connections that open with a KSI PDU move there (kl_http_server_share) */
  kl__srv_t *shared_by; /* the server whose port this one shares, NULL if none */
  uint8_t readbuf[KL__READ_BUF];
  uint8_t plainbuf[KL__PLAIN_BUF];
};
#define KL__IP_BUCKETS 1024

int kl__srv_init(kl__srv_t *s, uv_loop_t *loop, const kl__proto_t *proto, void *owner,
                 const kl_net_limits_t *lim, const char *name, kl_err_t *e);
int kl__srv_listen(kl__srv_t *s, const char *addr, kl_err_t *e);
/* TLS on this server's connections (before listen): see kl_tlv_server_set_tls. */
void kl__srv_set_tls(kl__srv_t *s, kl_tls_ctx_t *ctx, unsigned roles, kl_peer_check_fn check, void *arg);
void kl__srv_close(kl__srv_t *s);
/* Connections of s that open with a KSI PDU move to to (see kl_http_server_share). */
void kl__srv_share(kl__srv_t *s, kl__srv_t *to);
kl__srv_t *kl__tlv_srv(kl_tlv_server_t *s);

/* Takes ownership of a and b (malloc'd or NULL); they are freed when the write completes or
 * fails. Writes after kl__conn_end / close are dropped. */
void kl__conn_write(kl__conn_t *c, void *a, size_t alen, void *b, size_t blen);
/* The same for n buffers (one writev when the socket takes them at once). */
void kl__conn_writev(kl__conn_t *c, void **p, const size_t *lens, size_t n);
/* Graceful close: pending writes flush, FIN, a short linger, close. */
void kl__conn_end(kl__conn_t *c);
/* Immediate close. */
void kl__conn_close(kl__conn_t *c);
void kl__conn_pause(kl__conn_t *c, unsigned bit);
/* A whole request arrived: the connection is in use, so its idle timer starts over (a peer that
 * only sends, such as a member's heartbeats and forwards, is not idle). */
void kl__conn_touch(kl__conn_t *c);
/* A request is about to be handed to its handler: false when its peer address is over its
 * request rate (the protocol then answers with its "too many requests" and counts it). */
bool kl__conn_rate_ok(kl__conn_t *c);
/* Clears the bit and, when the protocol can take input again, schedules the backlog. */
void kl__conn_unpause(kl__conn_t *c, unsigned bit);
/* Re-evaluates reading, the idle timer, the backlog and ending after a state change. */
void kl__conn_settle(kl__conn_t *c);
/* Whether the protocol should take more input now: open, not paused, write queue under the
 * watermark. Protocols check it between requests they find in one buffer. */
static inline bool kl__conn_can_take(const kl__conn_t *c) {
  return c->state == KL__C_OPEN && c->pause == 0 && c->queued <= c->srv->lim.write_watermark;
}

#endif
