/* keyless: TLS for the daemons' links (DESIGN.md §3a, docs/security.md). Daemon part of lib.
 *
 * Every link between nodes is mutual TLS 1.3 under a cluster CA; a node certificate names its
 * role and id in one subjectAltName URI "keyless://ROLE/ID" (`keyless devpki issue` makes them).
 * Client-facing https (gateways, extenders) is server-only TLS 1.2+.
 *
 * A context (kl_tls_ctx_t) holds the configured files and an OpenSSL SSL_CTX; reload re-reads
 * the files (SIGHUP): connections opened afterwards use the new certificate, key, CA and CRL,
 * open ones keep theirs. A session (kl_tls_session_t) is one connection's TLS state over
 * memory BIOs: the owner feeds it the bytes read from the socket, takes the plaintext out,
 * puts plaintext in, and writes out what kl_tls_session_output() returns. No sockets here.
 *
 * Identity: after the handshake a session checks the peer's certificate (chain to the CA, CRL
 * when given, validity) and its role against the roles the link accepts (and its id when the
 * link expects one member); a session that fails any of these reports an error naming why,
 * and the owner closes the connection. All calls from one thread (the loop thread).
 */
#ifndef KEYLESS_TLS_H
#define KEYLESS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Roles, as bits: a link accepts a set of them. */
enum {
  KL_ROLE_CORE = 1u << 0,
  KL_ROLE_AGGREGATOR = 1u << 1,
  KL_ROLE_GATEWAY = 1u << 2,
  KL_ROLE_EXTENDER = 1u << 3,
  KL_ROLE_ADMIN = 1u << 4,
};
/* "core", "aggregator", ... for one bit; "?" otherwise. */
KL_API const char *kl_role_name(unsigned role);
/* The bit for a name, or 0. */
KL_API unsigned kl_role_from_name(const char *name);

/* An authenticated peer. role is 0 for a client without a certificate (https). */
#define KL_PEER_ID_MAX 64
typedef struct kl_peer {
  unsigned role;
  char id[KL_PEER_ID_MAX];
  char serial[48]; /* certificate serial, hex: for logs */
} kl_peer_t;

/* Parses "keyless://ROLE/ID" (the URI SAN). 0 or KL_EFORMAT with a message. */
KL_API int kl_peer_parse_uri(const char *uri, size_t len, kl_peer_t *out, kl_err_t *e);
/* The identity in a DER certificate (its URI SAN). KL_EPKI for an unparseable certificate or
 * a bad or second keyless URI, KL_ENOTFOUND when it names none. */
KL_API int kl_tls_der_identity(const uint8_t *der, size_t len, kl_peer_t *out, kl_err_t *e);
/* The identity in a PEM certificate file (its URI SAN). */
KL_API int kl_tls_cert_identity(const char *pem_path, kl_peer_t *out, kl_err_t *e);

typedef enum kl_tls_kind {
  KL_TLS_MUTUAL,  /* node links, both sides: TLS 1.3, certificates required both ways */
  KL_TLS_HTTPS,   /* client-facing server: TLS 1.2+, no client certificate asked */
  KL_TLS_CLIENT,  /* a client of https or of an admin port (may present a certificate) */
} kl_tls_kind_t;

typedef struct kl_tls_files {
  const char *ca;   /* PEM CA certificate(s) peers must chain to; NULL: the system store (CLIENT) */
  const char *cert; /* PEM certificate (chain) presented; NULL for a client without one */
  const char *key;  /* PEM private key of cert */
  const char *crl;  /* PEM CRL(s) of the CA, or NULL */
} kl_tls_files_t;

typedef struct kl_tls_ctx kl_tls_ctx_t;

/* Loads the files (copied paths: the same files are re-read by reload). A MUTUAL context
 * requires all of ca, cert and key; an HTTPS one cert and key. The certificate must match the
 * key. 0, or KL_EIO / KL_EPKI / KL_EINVAL with a message naming the file. */
KL_API int kl_tls_ctx_create(kl_tls_kind_t kind, const kl_tls_files_t *files, kl_tls_ctx_t **out, kl_err_t *e);
/* Re-reads the files; on failure the old material stays in use and e says why. */
KL_API int kl_tls_ctx_reload(kl_tls_ctx_t *t, kl_err_t *e);
/* The identity of this context's own certificate (role 0 if it has none). */
KL_API const kl_peer_t *kl_tls_ctx_self(const kl_tls_ctx_t *t);
/* Contexts are shared by the listeners and links of a daemon: reference counted. */
KL_API kl_tls_ctx_t *kl_tls_ctx_ref(kl_tls_ctx_t *t);
KL_API void kl_tls_ctx_unref(kl_tls_ctx_t *t);

typedef struct kl_tls_session kl_tls_session_t;

/* server: accept side. roles: the roles the peer may have (0: no peer certificate needed, for
 * https); expect_id: the peer's id must equal it (NULL: any). NULL on out of memory. */
KL_API kl_tls_session_t *kl_tls_session_new(kl_tls_ctx_t *t, bool server, unsigned roles, const char *expect_id);
KL_API void kl_tls_session_free(kl_tls_session_t *s);

enum { KL_TLS_HANDSHAKING = 0, KL_TLS_READY = 1 };
/* Feeds bytes read from the socket and advances the handshake. Returns KL_TLS_HANDSHAKING,
 * KL_TLS_READY (the peer is authenticated: kl_tls_session_peer), or -1 with e saying why
 * (handshake failure, certificate refused, wrong role or id, protocol error). */
KL_API int kl_tls_session_feed(kl_tls_session_t *s, const uint8_t *p, size_t n, kl_err_t *e);
/* Starts the handshake (client side; harmless on a server). Same returns as feed. */
KL_API int kl_tls_session_start(kl_tls_session_t *s, kl_err_t *e);
/* Decrypted bytes, at most cap. Returns the count, 0 when none is buffered, -1 on a fatal
 * error (e set). *closed is set when the peer sent close_notify. */
KL_API long kl_tls_session_read(kl_tls_session_t *s, uint8_t *buf, size_t cap, bool *closed, kl_err_t *e);
/* Encrypts plaintext (only once READY). 0 or -1 with e. */
KL_API int kl_tls_session_write(kl_tls_session_t *s, const void *p, size_t n, kl_err_t *e);
/* Queues a close_notify alert (then take the output and close). */
KL_API void kl_tls_session_shutdown(kl_tls_session_t *s);
/* The bytes to send, malloc'd (caller frees), or NULL when there are none. */
KL_API uint8_t *kl_tls_session_output(kl_tls_session_t *s, size_t *len);
KL_API bool kl_tls_session_ready(const kl_tls_session_t *s);
/* The peer once READY (role 0 for an https client), else NULL. Valid until free. */
KL_API const kl_peer_t *kl_tls_session_peer(const kl_tls_session_t *s);

/* ---------------- configuration shared by the daemons ----------------
 *
 * [tls] ca, cert, key, crl: the node's certificate and the cluster CA; insecure = yes turns
 * TLS off on every node link (tests only: loudly logged). A daemon's config struct holds a
 * kl_tls_settings_t; kl_tls_cfg_keys() writes its keys into the daemon's key table. */
typedef struct kl_tls_settings {
  char *ca, *cert, *key, *crl;
  bool insecure;
} kl_tls_settings_t;

#define KL_TLS_N_KEYS 5
KL_API void kl_tls_cfg_keys(size_t at, void *keys);
/* A daemon's key table with the [tls] keys appended: copies n_base keys from base into out
 * (n_base + KL_TLS_N_KEYS long) and writes the [tls] keys for settings at offset tls_at. */
KL_API void kl_tls_cfg_table(const void *base, size_t n_base, size_t tls_at, void *out);
/* Checks the settings and makes the daemon's mutual context: its own certificate must name
 * `role` (and `id` when not NULL). Insecure: *out = NULL, a warning logged, 0. `file` names
 * the configuration file in messages. */
KL_API int kl_tls_settings_open(const kl_tls_settings_t *s, const char *file, unsigned role, const char *id,
                                kl_tls_ctx_t **out, kl_err_t *e);

/* A client-facing https context (*out NULL when listen is empty): cert/key, or the node's
 * [tls] cert and key when those are empty. Messages name `file` and [server]. */
KL_API int kl_tls_https_open(const char *listen, const char *cert, const char *key, const kl_tls_settings_t *tls,
                             const char *file, kl_tls_ctx_t **out, kl_err_t *e);

/* SIGHUP: re-reads t's files (NULL: nothing), logging the outcome under `what`. */
KL_API void kl_tls_reload_logged(kl_tls_ctx_t *t, const char *what);

#ifdef __cplusplus
}
#endif
#endif
