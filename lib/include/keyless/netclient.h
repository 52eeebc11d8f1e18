/* keyless: a small blocking client for the CLI: HTTP/1.1 POST and GET, and ksi+tcp (one PDU
 * out, one TLV back), with connect and transfer timeouts. Not for daemons (they use libuv).
 *
 * URLs: http://host[:port]/path, ksi+http://user:key@host[:port]/path (the userinfo is the KSI
 * login and key, returned by kl_url_parse and stripped from the request), ksi+tcp://host:port.
 * https is not supported yet: put a TLS-terminating proxy in front, or use http on a trusted
 * network (PDUs are authenticated by their HMAC either way). */
#ifndef KEYLESS_NETCLIENT_H
#define KEYLESS_NETCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_url {
  enum { KL_URL_HTTP, KL_URL_TCP } kind;
  char host[256];
  char port[8];
  char path[1024];
  char user[128]; /* from ksi+http://user:key@..., "" if none */
  char key[256];
} kl_url_t;

KL_API int kl_url_parse(const char *url, kl_url_t *out, kl_err_t *e);

/* Sends a request and reads the whole response body into out (at most max_body bytes).
 * For HTTP, *status gets the HTTP status; for ksi+tcp it is 200. timeout_ms bounds connecting
 * and each read/write. body == NULL means GET. */
KL_API int kl_net_request(const kl_url_t *u, const uint8_t *body, size_t len, const char *content_type,
                          int timeout_ms, size_t max_body, kl_buf_t *out, int *status, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
