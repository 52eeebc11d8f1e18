/* keyless: servers on libuv for the daemons: HTTP/1.1 and ksi+tcp (a stream of whole TLVs).
 *
 * Both run on the caller's loop thread and share one connection layer (net_conn.c) with the
 * limits below: a maximum body/frame size checked before anything is buffered, a connection
 * cap (connections over it are accepted and closed at once), an idle timeout, and a write
 * queue watermark (a peer that does not read its responses stops being read from, and is
 * closed by the idle timeout if it stays that way).
 *
 * Requests may be answered at once, inside the handler, or later from any loop callback
 * (a gateway answers when its round closes). A request object is valid from the handler call
 * until the matching respond call, which must come exactly once, from the loop thread. If the
 * connection dies meanwhile, the request stays valid; the response is then dropped.
 *
 * HTTP: keep-alive and pipelining (requests of one connection are handled one at a time, in
 * order; the connection is not read while a request is with its handler, so a peer that goes
 * away meanwhile is noticed when its response is written), Content-Length and chunked bodies,
 * "Expect: 100-continue". Routing by method and
 * path: exact paths or "*" for any path; the first matching route wins. A path no route takes
 * gives 404, a path taken only with other methods 405 (with Allow), a body over max_body 413
 * (sent before the body is read), headers over max_header 431, anything unparseable 400; the
 * last three close the connection after the response.
 *
 * ksi+tcp: each TLV (8- or 16-bit header, KSI-FORMAT.md §1) read back to back is one request;
 * its total size is checked against max_body from its header before any allocation, and a
 * frame over it closes the connection. Up to max_inflight frames per connection are handled at
 * once; responses are written in request order whatever order they are given in.
 *
 * Shutdown: kl_*_server_close() stops accepting, lets requests in progress finish and their
 * responses be written, closes idle connections, and calls back once every handle is closed;
 * connections still open after shutdown_timeout_ms are closed hard. After the callback (and
 * once the caller closed its own handles) uv_loop_close() returns 0.
 */
#ifndef KEYLESS_NET_H
#define KEYLESS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keyless/err.h"
#include "keyless/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_net_limits {
  size_t max_body;           /* HTTP body or TLV frame, bytes (default 65,539: one KSI PDU) */
  size_t max_header;         /* HTTP request line + headers, bytes (default 8 KiB) */
  unsigned max_connections;  /* open at once (default 1024) */
  uint64_t idle_timeout_ms;  /* a connection with no request in progress (default 30 s) */
  size_t write_watermark;    /* bytes queued for writing before reading stops (default 1 MiB) */
  unsigned max_inflight;     /* ksi+tcp: frames handled at once per connection (default 64) */
  uint64_t shutdown_timeout_ms; /* graceful close before connections are cut (default 5 s) */
  /* Per peer address (the IP, whatever the port), so that one client cannot take what all
   * share: connections open at once (default 64; over it: accepted and closed at once), and
   * requests per second (0: unlimited, the default; a burst of twice the rate is allowed;
   * over it: the protocol's "too many requests"). Bytes buffered for unfinished requests are
   * bounded per address by max_connections_per_ip x (max_body + max_header). */
  unsigned max_connections_per_ip;
  double max_rate_per_ip;
  uint64_t handshake_timeout_ms; /* TLS: a handshake must finish within (default 10 s) */
  bool reuseport; /* listen with SO_REUSEPORT: several loops' servers share a port, the kernel
                   * spreads connections over them (a gateway's threads; default false) */
} kl_net_limits_t;

KL_API void kl_net_limits_default(kl_net_limits_t *l);

/* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:0" (port 0: the kernel picks one; see *_port()).
 * 0 or KL_EINVAL with a message. */
KL_API int kl_net_parse_addr(const char *s, struct sockaddr_storage *out, kl_err_t *e);

/* Links between nodes (Raft, tier to parent, core to core, replication): data sent that the peer
 * has not acknowledged for timeout_ms fails the connection (TCP_USER_TIMEOUT; it also bounds a
 * connect). Without it a silently cut peer keeps the connection in retransmission backoff, and
 * after the cut heals nothing is sent on it for up to a minute. Call once the socket exists
 * (after uv_tcp_connect, or on accept); best effort. */
#define KL_NET_LINK_TIMEOUT_MS 3000
KL_API void kl_net_link_liveness(uv_tcp_t *t, unsigned timeout_ms);

/* Binds t (initialised, no socket yet) to sa with SO_REUSEADDR and SO_REUSEPORT set, for the
 * servers of several loops on one port (libuv 1.44's uv_tcp_bind has no such flag): the socket
 * is made here and handed to uv_tcp_open. 0 or a libuv error code. */
KL_API int kl_net_bind_reuseport(uv_tcp_t *t, const struct sockaddr *sa);

/* Counters for metrics; read them at any time from the loop thread. */
typedef struct kl_net_stats {
  uint64_t accepted;    /* connections accepted and kept */
  uint64_t rejected;    /* closed at once: over max_connections */
  uint64_t open;        /* currently open */
  uint64_t requests;    /* requests handed to handlers */
  uint64_t responses[6]; /* HTTP: by status class (index 1..5); ksi+tcp: [2] responses written */
  uint64_t bad_input;   /* HTTP 400/413/431 or ksi+tcp framing errors */
  uint64_t tls_refused; /* TLS handshakes failed or peers refused (certificate, role, id) */
  uint64_t ip_refused;  /* closed at once: their address is over max_connections_per_ip */
  uint64_t rate_limited; /* requests refused: their address is over max_rate_per_ip */
} kl_net_stats_t;

/* TLS on a server (before listen): ctx is referenced; roles: the roles a peer certificate must
 * have (a KL_ROLE_* mask; 0: no client certificate, for https). check (may be NULL) is asked
 * once per authenticated peer and refuses it by returning a reason. */
typedef const char *(*kl_peer_check_fn)(const kl_peer_t *peer, void *arg);

/* ---------------- HTTP ---------------- */

typedef struct kl_http_server kl_http_server_t;
typedef struct kl_http_req kl_http_req_t;
typedef void (*kl_http_handler_fn)(kl_http_req_t *req, void *arg);
typedef void (*kl_http_close_fn)(kl_http_server_t *s, void *arg);

/* lim NULL: defaults. Caller closes with kl_http_server_close (also if never listening). */
KL_API int kl_http_server_create(uv_loop_t *loop, const kl_net_limits_t *lim, const char *name,
                                 kl_http_server_t **out, kl_err_t *e);
/* method: "GET", "POST", ... or NULL for any; path: exact (query string ignored) or "*". */
KL_API int kl_http_route(kl_http_server_t *s, const char *method, const char *path,
                         kl_http_handler_fn fn, void *arg, kl_err_t *e);
KL_API void kl_http_server_set_tls(kl_http_server_t *s, kl_tls_ctx_t *ctx, unsigned roles, kl_peer_check_fn check,
                                   void *arg);
KL_API int kl_http_server_listen(kl_http_server_t *s, const char *addr, kl_err_t *e);
/* The bound port (after listen), or 0. */
KL_API int kl_http_server_port(const kl_http_server_t *s);
KL_API const kl_net_stats_t *kl_http_server_stats(const kl_http_server_t *s);
/* Graceful shutdown (see above); cb (may be NULL) runs once, after which s is freed. */
KL_API void kl_http_server_close(kl_http_server_t *s, kl_http_close_fn cb, void *arg);

/* Request accessors: valid until the response call. */
KL_API const char *kl_http_req_method(const kl_http_req_t *r);
KL_API const char *kl_http_req_path(const kl_http_req_t *r); /* without the query string */
KL_API const char *kl_http_req_query(const kl_http_req_t *r); /* after the '?', "" if none (not decoded) */
/* The Authorization header's value, "" if none (or over 511 bytes). */
KL_API const char *kl_http_req_authorization(const kl_http_req_t *r);
KL_API const uint8_t *kl_http_req_body(const kl_http_req_t *r, size_t *len);
KL_API const char *kl_http_req_peer(const kl_http_req_t *r); /* "ip:port" */
/* The peer's certificate identity on a TLS server with roles; NULL on plain TCP or https. */
KL_API const kl_peer_t *kl_http_req_peer_id(const kl_http_req_t *r);
/* false once the connection is gone (the response will be dropped; still respond). */
KL_API bool kl_http_req_connected(const kl_http_req_t *r);
/* An extra response header ("Name", "value": no CR/LF; else ignored). Before responding. */
KL_API void kl_http_req_add_header(kl_http_req_t *r, const char *name, const char *value);

/* Responds and releases r. The body is copied; content_type may be NULL for none. */
KL_API void kl_http_respond(kl_http_req_t *r, int status, const char *content_type,
                            const void *body, size_t len);
/* The same, taking ownership of body (malloc'd; freed by the server, also on failure). */
KL_API void kl_http_respond_take(kl_http_req_t *r, int status, const char *content_type,
                                 void *body, size_t len);

/* ---------------- ksi+tcp ---------------- */

typedef struct kl_tlv_server kl_tlv_server_t;
typedef struct kl_tlv_req kl_tlv_req_t;
/* frame: the whole TLV, header included; valid until the response call. */
typedef void (*kl_tlv_handler_fn)(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg);
typedef void (*kl_tlv_close_fn)(kl_tlv_server_t *s, void *arg);

KL_API int kl_tlv_server_create(uv_loop_t *loop, const kl_net_limits_t *lim, const char *name,
                                kl_tlv_handler_fn fn, void *arg, kl_tlv_server_t **out,
                                kl_err_t *e);
/* Framing (before listen): KL_FRAMING_TLV (default, KSI PDUs) or KL_FRAMING_U32 (a 4-byte
 * big-endian length then that many bytes: the internal protobuf links, docs/formats.md). The
 * frame handed to the handler includes its header either way. */
enum { KL_FRAMING_TLV = 0, KL_FRAMING_U32 = 1 };
KL_API void kl_tlv_server_set_framing(kl_tlv_server_t *s, int framing);
KL_API void kl_tlv_server_set_tls(kl_tlv_server_t *s, kl_tls_ctx_t *ctx, unsigned roles, kl_peer_check_fn check,
                                  void *arg);
KL_API int kl_tlv_server_listen(kl_tlv_server_t *s, const char *addr, kl_err_t *e);
/* One port for both KSI transports, as libksi's configuration has one host:port per service:
 * a connection to http's port whose first byte is a KSI PDU's (TLV16 flag 0x80; HTTP starts
 * with a method's letter) is handed to tlv, which then serves it with its own limits and
 * handler. Plain servers only (neither has TLS); tlv need not listen itself, and its port reads
 * as http's. Call after kl_http_server_listen; both are closed separately as usual. */
KL_API void kl_http_server_share(kl_http_server_t *http, kl_tlv_server_t *tlv);
/* Whether [server] tcp_listen names the http_listen address itself (and not port 0, which
 * means a port of its own for each): then one port serves both (kl_http_server_share). */
KL_API bool kl_net_listen_shared(const char *http_listen, const char *tcp_listen);
KL_API int kl_tlv_server_port(const kl_tlv_server_t *s);
KL_API const kl_net_stats_t *kl_tlv_server_stats(const kl_tlv_server_t *s);
KL_API void kl_tlv_server_close(kl_tlv_server_t *s, kl_tlv_close_fn cb, void *arg);

KL_API const char *kl_tlv_req_peer(const kl_tlv_req_t *r);
KL_API const kl_peer_t *kl_tlv_req_peer_id(const kl_tlv_req_t *r); /* as kl_http_req_peer_id */
KL_API bool kl_tlv_req_connected(const kl_tlv_req_t *r);
/* Responds and releases r. len 0: no response for this frame. close_after: close the
 * connection once this response (and those before it) are written; frames read after this
 * one are dropped unanswered. The first copies p, the second takes ownership (malloc'd). */
KL_API void kl_tlv_respond(kl_tlv_req_t *r, const void *p, size_t len, bool close_after);
KL_API void kl_tlv_respond_take(kl_tlv_req_t *r, void *p, size_t len, bool close_after);
/* The handler has taken what it needs of the frame: its bytes are freed now rather than at the
 * response (a request in flight then holds no copy of itself). The frame pointer given to the
 * handler is invalid after this call. */
KL_API void kl_tlv_req_drop_frame(kl_tlv_req_t *r);

/* ---------------- metrics shared by the daemons ----------------
 *
 * Registers one server's connection counters (keyless_net_*, labelled server=name) and, for
 * HTTP, its responses by class. They are read at render time through nm->stats, which the
 * daemon points at kl_*_server_stats() once the server exists and sets back to NULL before it
 * closes the server. nm must outlive the registry. 0, or KL_ENOMEM. */
struct kl_metrics;
typedef struct kl_net_metrics {
  const kl_net_stats_t *stats;
  struct kl_net_metrics_field {
    struct kl_net_metrics *nm;
    int field;
  } f[12];
} kl_net_metrics_t;
KL_API int kl_net_metrics_register(struct kl_metrics *m, kl_net_metrics_t *nm, const char *name, bool http);

/* ---------------- the admin port every daemon serves ----------------
 *
 * GET /healthz: 200 "ok", or 503 with the reason health() gives; GET /metrics: the registry as
 * Prometheus text. kl_admin_server_create makes an HTTP server with the admin port's limits
 * (bodies of at most 1 KiB, 64 connections, the other limits from base; base NULL: defaults)
 * and these two routes; the caller may add its own routes, then listens. a must outlive the
 * server. */
typedef const char *(*kl_health_fn)(void *arg); /* NULL: healthy; else why not (one line) */
typedef struct kl_admin {
  struct kl_metrics *metrics;
  kl_health_fn health;
  void *arg;
} kl_admin_t;
KL_API int kl_admin_server_create(uv_loop_t *loop, const kl_net_limits_t *base, kl_admin_t *a, kl_http_server_t **out,
                                  kl_err_t *e);

/* ---------------- configuration shared by the daemons ----------------
 *
 * The [server] listen addresses and the [limits] keys every KSI-facing daemon has (deploy/NAME.conf
 * document them). A daemon's config struct holds a kl_net_settings_t; kl_net_cfg_keys() writes
 * its keys into the daemon's key table with the daemon's default addresses. */
typedef struct kl_net_settings {
  char *http_listen, *tcp_listen, *admin_listen; /* "" = off */
  char *https_listen;          /* "" = off; https for clients, next to http and ksi+tcp */
  char *https_cert, *https_key; /* "" = the node's [tls] cert and key */
  uint64_t max_pdu_size, max_header_size, idle_timeout_ms, write_watermark, shutdown_timeout_ms;
  int64_t max_connections, max_inflight, max_requests;
  int64_t max_connections_per_address;
  int64_t rate_key; /* max_requests_per_second_per_address, 0 = no limit */
} kl_net_settings_t;

typedef struct kl_net_defaults {
  const char *http, *tcp, *admin, *max_connections, *max_requests;
} kl_net_defaults_t;

#define KL_NET_N_KEYS 16
/* A config check (kl_cfg_check_fn) for a listen address: "" (off) or what kl_net_parse_addr
 * takes. */
KL_API int kl_net_cfg_check_listen(const void *field, char *msg, size_t n);
/* Writes KL_NET_N_KEYS keys (a kl_cfg_key_t array) for settings at offset `at`. */
KL_API void kl_net_cfg_keys(size_t at, const kl_net_defaults_t *d, void *keys);
/* The server limits the settings give. */
KL_API void kl_net_settings_limits(const kl_net_settings_t *s, kl_net_limits_t *lim);
/* The https context of a daemon (*out NULL when https_listen is off): https_cert/https_key, or
 * the node certificate of its [tls] section when those are empty. */
KL_API int kl_net_settings_https(const kl_net_settings_t *s, const kl_tls_settings_t *tls, const char *file,
                                 kl_tls_ctx_t **out, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
