/* keyless: calendar replication messages (proto/replication.proto) and applying them to a
 * replica calendar. Pure: framing and decoding of bytes; the sockets live in the daemons.
 *
 * Frame: a 4-byte big-endian length, then one ReplicationMessage. */
#ifndef KEYLESS_REPLICA_H
#define KEYLESS_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/calendar.h"
#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_FRAME_HDR 4
#define KL_REPL_MAX_FRAME (1u << 20) /* default maximum frame: 1 MiB */

/* Reads a frame header: 1 and the payload length when buf holds a whole frame, 0 when more
 * bytes are needed, -1 (KL_ETOOBIG in e) when the announced length exceeds max. */
KL_API int kl_frame_peek(const uint8_t *buf, size_t len, size_t max, size_t *payload_len, kl_err_t *e);
/* Appends a 4-byte length header then the payload. */
KL_API void kl_frame_put(kl_buf_t *out, const uint8_t *payload, size_t len);

/* Encoders: each appends one framed message. */
KL_API int kl_repl_encode_subscribe(kl_buf_t *out, uint64_t after, int from_genesis, kl_err_t *e);
/* Entries for seconds [from, to] read from cal (the core's calendar). */
KL_API int kl_repl_encode_entries(kl_buf_t *out, kl_cal_t *cal, uint64_t from, uint64_t to, kl_err_t *e);

typedef struct kl_repl_subscribe {
  uint64_t after;
  int from_genesis;
} kl_repl_subscribe_t;

/* Decodes one frame's payload. Exactly one of *sub, *applied is set: a Subscribe is returned
 * in *sub; an Entries message is checked (genesis equal to the replica's, seconds consecutive
 * from the replica's next second, valid imprints) and appended to replica in one
 * transaction, *applied getting the count. An Error message becomes KL_ESERVICE. */
KL_API int kl_repl_handle(const uint8_t *payload, size_t len, kl_cal_t *replica, kl_repl_subscribe_t *sub,
                          int *is_subscribe, size_t *applied, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
