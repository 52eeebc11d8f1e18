/* keyless: a small blocking client for the CLI: HTTP/1.1 POST and GET over plain TCP or TLS,
 * and ksi+tcp (one PDU out, one TLV back), with connect and transfer timeouts. Not for daemons
 * (they use libuv).
 *
 * URLs: http://host[:port]/path, https://host[:port]/path, ksi+http://user:key@host[:port]/path
 * and ksi+https://user:key@host[:port]/path (the userinfo is the KSI login and key, returned by
 * kl_url_parse and stripped from the request), ksi+tcp://host:port. IPv6 literals in brackets
 * (http://[::1]:8080/). Default ports 80 and 443.
 *
 * https (OpenSSL, TLS 1.2 or later) verifies the server by default: its chain must end at a
 * trust anchor (the system CA store, or the caller's CA file) and its certificate must name the
 * URL's host (subjectAltName DNS, or IP for an address literal; SNI is sent for names). A client
 * certificate is presented when the caller gives one and the server asks (the core's admin port
 * requires an admin-role certificate of the cluster CA). Errors say what failed: "certificate
 * verify failed: unable to get local issuer certificate (trusting the system CA store)", "host
 * name mismatch: ...", "the server asked for a client certificate (use --cert/--key)".
 *
 * Threads: requests may run in several threads at once (SIGPIPE is masked per thread while
 * writing; nothing process-wide changes); the TLS defaults are behind a lock. Memory: the
 * response body goes into the caller's kl_buf_t (kl_buf_free); kl_url_t is a value. */
#ifndef KEYLESS_NETCLIENT_H
#define KEYLESS_NETCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_url {
  enum { KL_URL_HTTP, KL_URL_TCP } kind;
  char host[256]; /* without the brackets of an IPv6 literal */
  char port[8];
  char path[1024];
  char user[128]; /* from ksi+http(s)://user:key@..., "" if none */
  char key[256];
  bool tls; /* https:// or ksi+https:// (kind KL_URL_HTTP) */
} kl_url_t;

KL_API int kl_url_parse(const char *url, kl_url_t *out, kl_err_t *e);

/* TLS options of an https request. All zero: trust the system CA store, no client
 * certificate. Strings are file names, read during the call that takes them. */
typedef struct kl_net_tls_opts {
  const char *ca_file; /* PEM trust anchors (a file, or a hashed directory) used instead of the
                          system store; NULL: the system store */
  const char *cert;    /* client certificate chain (PEM), presented if the server asks; NULL: none */
  const char *key;     /* its private key (PEM, unencrypted); needed with cert */
  int insecure_skip_verify; /* nonzero: accept any server certificate (diagnosis only: the
                               connection is then encrypted but not authenticated) */
} kl_net_tls_opts_t;

/* Sends a request and reads the whole response body into out (at most max_body bytes).
 * For HTTP, *status gets the HTTP status; for ksi+tcp it is 200. timeout_ms bounds connecting,
 * the TLS handshake (as a whole), and each read/write. body == NULL means GET. For an https
 * URL, tls gives the trust anchors and client certificate (NULL: as all zero); it is ignored
 * for other URLs. Errors: KL_EIO for transport and TLS failures (the message says which),
 * KL_EINVAL for unusable options (a key without a certificate), KL_ETOOBIG, KL_EFORMAT. The
 * message carries no URL: callers wrap it with theirs. */
KL_API int kl_net_request_tls(const kl_url_t *u, const kl_net_tls_opts_t *tls, const uint8_t *body, size_t len,
                              const char *content_type, int timeout_ms, size_t max_body, kl_buf_t *out, int *status,
                              kl_err_t *e);

/* kl_net_request_tls with the process-wide TLS defaults below; what the signing and
 * extending clients (signclient.h, extclient.h) call. */
KL_API int kl_net_request(const kl_url_t *u, const uint8_t *body, size_t len, const char *content_type,
                          int timeout_ms, size_t max_body, kl_buf_t *out, int *status, kl_err_t *e);

/* Sets the TLS options kl_net_request uses for https URLs (the CLI's --ca, --cert, --key):
 * the file names are copied, and the files are loaded once here so that a bad CA file,
 * certificate or key (or a key that does not match the certificate) fails now, naming the
 * file. NULL resets to the defaults (system store, no client certificate). Thread-safe, but
 * meant to be called once at start. */
KL_API int kl_net_set_tls_defaults(const kl_net_tls_opts_t *tls, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
