/* keyless: the round engine shared by gateways and aggregators (pure: no I/O, no clock).
 *
 * A round collects requests (a hash at a level, with the identity of whoever sent it), closes,
 * and becomes a tree whose root goes to the parent tier. When the parent answers, every request
 * gets its own aggregation chain (0x801, with a metadata link naming its sender and a chain
 * index that continues the parent's) followed by everything the parent returned. A round that
 * gets no valid answer fails all its requests with a retryable status.
 *
 * Limits: at most max_requests per round (KSI status 0x0106 beyond) and per_client per round
 * for one client id (0x0105, over quota). Requests arriving after close go to the next round:
 * the daemon opens one; this object never drops a request silently.
 *
 * Ownership: a round copies everything it is given; kl_round_free releases it. */
#ifndef KEYLESS_ROUND_H
#define KEYLESS_ROUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The identity written into a request's metadata link (KSI-FORMAT.md §4.4). */
typedef struct kl_round_identity {
  const char *client_id;  /* mandatory */
  const char *machine_id; /* NULL: none */
  bool has_seq, has_req_time;
  uint64_t seq;
  uint64_t req_time_us;
} kl_round_identity_t;

/* Encodes a metadata value (the children of 0x04, as hashed): padding first (7E 01 or 7E 02 01
 * 01) so the total length is even, then client id, machine id, sequence, request time. */
KL_API int kl_metadata_encode(const kl_round_identity_t *id, kl_buf_t *out, kl_err_t *e);

typedef struct kl_round_config {
  int algorithm;         /* aggregation hash algorithm */
  unsigned max_level;    /* the highest level this tier's root may have (255 at most) */
  size_t max_requests;   /* per round */
  size_t per_client;     /* per round, per client id (0: no limit) */
} kl_round_config_t;

typedef struct kl_round kl_round_t;

/* The highest request level a round with this configuration accepts (what a gateway's config
 * response announces as max_level): max_level minus the metadata step and the depth of a full
 * round's tree, so no single request can push a round over max_level. */
KL_API unsigned kl_round_max_request_level(const kl_round_config_t *cfg);

KL_API int kl_round_create(const kl_round_config_t *cfg, kl_round_t **out, kl_err_t *e);
KL_API void kl_round_free(kl_round_t *r);

/* Adds a request; 0 and its index in *slot, or a KSI status in *status (0x0106 round full,
 * 0x0105 over quota, 0x0104 level too high, 0x0103 bad input) with a nonzero return. */
KL_API int kl_round_add(kl_round_t *r, const kl_imprint_t *hash, unsigned level, const kl_round_identity_t *who,
                        size_t *slot, uint64_t *status, kl_err_t *e);
KL_API size_t kl_round_size(const kl_round_t *r);

/* Closes the round: builds its tree. *root and *level are what goes to the parent. No more
 * requests are taken. KL_ESTATE if empty or already closed. */
KL_API int kl_round_close(kl_round_t *r, kl_imprint_t *root, unsigned *level, kl_err_t *e);

/* The parent's answer: the 0x801s above this tier (bottom first), then optionally the 0x802 and
 * the 0x805/0x803, all as whole TLVs. Checks that the first chain starts from this round's root
 * and that chain indexes continue; then the answer for request `slot` is this tier's 0x801
 * followed by the parent's parts, appended to out as a sequence of TLVs (the children of a
 * 0x800, or of an aggregation response). */
typedef struct kl_round_parent {
  const uint8_t *const *parts; /* whole TLVs */
  const size_t *lens;
  size_t n;
} kl_round_parent_t;

KL_API int kl_round_answer(kl_round_t *r, const kl_round_parent_t *parent, uint64_t aggr_time, size_t slot,
                           kl_buf_t *out, kl_err_t *e);
/* The parent's answer for this closed round, checked once (its first chain starts from this
 * round's root, and the whole answer passes the internal policy above it) and kept: the answer
 * a caller then builds per request with kl_round_answer_head. A repeat of the answer last
 * accepted is recognised by its bytes. */
KL_API int kl_round_accept(kl_round_t *r, const kl_round_parent_t *parent, uint64_t aggr_time, kl_err_t *e);
/* Only this tier's 0x801 for request `slot`, under the parent's answer accepted for aggr_time
 * (KL_ESTATE if none was): the rest of the answer is the parent's parts, the same bytes for
 * every request of the round, which a caller that builds many answers copies once (kl_tier
 * hands them out that way). No per-request look at the parent's bytes. */
KL_API int kl_round_answer_head(kl_round_t *r, uint64_t aggr_time, size_t slot, kl_buf_t *out, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
