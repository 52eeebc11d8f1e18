/* keyless: an outbound framed connection on libuv (internal links: a follower forwarding to the
 * leader, an aggregator to its parents, an extender to the core's replication port).
 *
 * Frames are a 4-byte big-endian length then the payload (docs/formats.md). The client
 * connects, reconnects with backoff (100 ms doubling to 5 s) when the connection fails or
 * drops, and reports every received frame and every state change to its callbacks. Sends while
 * disconnected fail at once (KL_ESTATE): the caller decides whether to retry; nothing is
 * buffered across reconnections, so a reconnect never replays stale requests.
 *
 * Lifecycle: create, kl_frame_client_connect, ..., kl_frame_client_close(cb): the memory is
 * freed after every handle's close callback, then cb runs. All calls from the loop thread. */
#ifndef KEYLESS_FRAMECLIENT_H
#define KEYLESS_FRAMECLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keyless/err.h"
#include "keyless/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_frame_client kl_frame_client_t;

typedef struct kl_frame_client_cbs {
  /* A whole frame's payload (valid during the call). */
  void (*on_frame)(kl_frame_client_t *c, const uint8_t *payload, size_t len, void *arg);
  /* Connected (true) or disconnected (false); optional. */
  void (*on_state)(kl_frame_client_t *c, bool connected, void *arg);
} kl_frame_client_cbs_t;

KL_API int kl_frame_client_create(uv_loop_t *loop, const char *name, size_t max_frame, const kl_frame_client_cbs_t *cbs,
                                  void *arg, kl_frame_client_t **out, kl_err_t *e);
/* Mutual TLS on this link (before connect; ctx is referenced): the server's certificate must
 * carry one of `roles` and, when expect_id is not NULL, that id. The link is up (on_state)
 * only once the server is authenticated; a refused server is logged (link_refused) and
 * retried with the usual backoff. */
KL_API void kl_frame_client_set_tls(kl_frame_client_t *c, kl_tls_ctx_t *ctx, unsigned roles, const char *expect_id);
/* "IPv4:port", "[IPv6]:port" or "name:port" (resolved with uv_getaddrinfo before every attempt,
 * so a reconnect finds a moved host; the addresses of a name are tried in turn). Only a
 * malformed address fails here; connecting goes on in the background until close. */
KL_API int kl_frame_client_connect(kl_frame_client_t *c, const char *addr, kl_err_t *e);
/* Splits and checks "host:port" / "[IPv6]:port" (port 0..65535: 0 is for a listener) without
 * resolving (for config checks): 0, or
 * KL_EINVAL with the reason. host gets the name or address without brackets. */
KL_API int kl_frame_addr_split(const char *addr, char *host, size_t host_n, char *port, size_t port_n, kl_err_t *e);
/* A configuration check for an address a link dials ("" is allowed: not configured): a malformed
 * address or port 0 is an error, written to msg; a host name that does not resolve now is only
 * a warning, logged as event=EVENT with KEY=the address (DNS may come up after the daemon, and
 * the link resolves the name again on every attempt). 0 or -1, as a kl_cfg_check_fn. */
KL_API int kl_frame_check_dial(const char *addr, const char *what, const char *event, const char *key, char *msg,
                               size_t n);
/* Drops the connection (or the attempt in progress) because its owner found the peer silent;
 * a new one is dialled after the backoff, which keeps growing until the peer sends a frame.
 * Nothing happens while no connection or attempt exists. */
KL_API void kl_frame_client_reset(kl_frame_client_t *c, const char *why);
/* The longest wait between attempts (default 5 s, at least 100 ms). */
KL_API void kl_frame_client_set_max_backoff(kl_frame_client_t *c, uint64_t ms);
KL_API bool kl_frame_client_connected(const kl_frame_client_t *c);
/* Queues one frame (the header is added); copies payload. */
KL_API int kl_frame_client_send(kl_frame_client_t *c, const uint8_t *payload, size_t len, kl_err_t *e);
/* Bytes queued for writing and not yet written. */
KL_API size_t kl_frame_client_queued(const kl_frame_client_t *c);
KL_API void kl_frame_client_close(kl_frame_client_t *c, void (*cb)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
