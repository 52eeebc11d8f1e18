/* keyless benchmarks: TLS on the load generators' libuv connections, over keyless's own
 * memory-BIO sessions (keyless/tls.h), the same code the daemons run on their side.
 *
 * A kb_tls_t sits between one uv_tcp_t and the program's receive buffer:
 *   - after the TCP connect, kb_tls_start() creates the client session and sends the
 *     ClientHello; the connection is usable once kb_tls_read() reports the handshake done;
 *   - every read of the socket goes through kb_tls_read(): ciphertext in, plaintext appended to
 *     the receive buffer (kb_rxbuf_t), and whatever the session has to send (handshake
 *     messages, alerts) is written out;
 *   - kb_tls_write() encrypts the plaintext buffers into one uv_write of the ciphertext (which
 *     it owns and frees in its callback).
 * One handshake per connection, then the connection is kept: nothing is resumed or redone.
 * Plain connections do not use this at all (a NULL session is never passed here).
 *
 * The read side uses one scratch buffer per loop (kb_tls_scratch): libuv calls alloc and read
 * back to back on one thread, so every connection can share it. */
#ifndef KL_BENCH_TLS_H
#define KL_BENCH_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bench_util.h"
#include "keyless/tls.h"

typedef struct kb_tls {
  kl_tls_session_t *s;
  uv_stream_t *stream;
  bool ready;
  uint64_t wire_in, wire_out; /* ciphertext bytes, handshake included */
} kb_tls_t;

/* The client context from --ca/--cert/--key: with a certificate, mutual TLS 1.3 (a node link:
 * the daemon checks the certificate's keyless://ROLE/ID); without, an https client (TLS 1.2+,
 * the server's certificate must chain to ca). Dies with a message on failure. */
kl_tls_ctx_t *kb_tls_client_ctx(const char *prog, const char *ca, const char *cert, const char *key);

/* The scratch buffer for the alloc callback of TLS connections. */
uv_buf_t kb_tls_scratch(void);

/* Starts the client handshake on a connected stream. roles: the roles the server may have
 * (KL_ROLE_CORE...; 0: any certificate that chains to the CA, for https). 0, or -1 with e. */
int kb_tls_start(kb_tls_t *t, kl_tls_ctx_t *ctx, uv_stream_t *stream, unsigned roles, kl_err_t *e);

/* n ciphertext bytes read from the socket (in the scratch buffer). The plaintext goes to rx.
 * Returns 1 when this call finished the handshake, 0 otherwise, -1 on a TLS failure (e says
 * why: the connection is then useless). *closed: the server sent close_notify. */
int kb_tls_read(kb_tls_t *t, const uint8_t *p, size_t n, kb_rxbuf_t *rx, bool *closed, kl_err_t *e);

/* Encrypts the buffers (in order) and writes the records with one uv_write. 0 or -1 with e. */
int kb_tls_write(kb_tls_t *t, const uv_buf_t *bufs, unsigned nbufs, kl_err_t *e);

void kb_tls_free(kb_tls_t *t);

#endif
