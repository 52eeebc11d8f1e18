/* The core's Raft transport over mutual TLS (a struct raft_uv_transport for raft_uv_init).
 *
 * libraft reads and writes a libuv stream per peer; this transport gives it one end of a Unix
 * socket pair and carries the other end's bytes over a TLS 1.3 connection whose peer
 * certificate says role core (docs/security.md). On a new connection:
 *   connect: TCP → TLS (the server's certificate must name core/ID for the member dialled) →
 *            hello {magic, our id, our address} → the stream goes to libraft
 *   accept:  TCP → TLS (a core certificate) → hello: its id must be the certificate's id and
 *            a member (is_member) → the stream goes to libraft with that id
 * so libraft attributes every message to the member the certificate names. Everything else
 * (no certificate, another role, another id, a non-member, a hello that is not one, a
 * handshake slower than 10 s) is closed and counted (refused). */
#ifndef KL_CORE_RAFT_TLS_H
#define KL_CORE_RAFT_TLS_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <uv.h>

#include "keyless/tls.h"

typedef bool (*kl_raft_member_fn)(void *arg, raft_id id);

/* tls NULL: plain TCP with the same hello (insecure = yes, tests only). The transport
 * references tls. is_member(arg, id) decides who may connect. 0 or a RAFT_* code. */
int kl_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop, kl_tls_ctx_t *tls, kl_raft_member_fn is_member,
                     void *arg);
/* Releases the memory once close has called back (or if never started). */
void kl_raft_tls_close(struct raft_uv_transport *t);
/* Connections refused so far (any reason), and accepted. */
unsigned long kl_raft_tls_refused(const struct raft_uv_transport *t);
unsigned long kl_raft_tls_accepted(const struct raft_uv_transport *t);

#endif
