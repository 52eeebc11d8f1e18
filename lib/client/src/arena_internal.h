/* Library-internal: an arena whose first block lives in memory its owner allocated with
 * something else (kl_pdu_parse: the PDU, its bytes and its first block in one allocation, issue
 * 12). Owned by lib/client/src/buf.c; not part of the public API. */
#ifndef KL_ARENA_INTERNAL_H
#define KL_ARENA_INTERNAL_H

#include <stddef.h>

#include "keyless/buf.h"

/* Bytes to add to an allocation for a seeded first block of cap bytes. */
size_t kl__arena_seed_size(size_t cap);
/* a must be empty; mem (aligned for any type) holds kl__arena_seed_size(cap) bytes and outlives
 * the arena; kl_arena_free does not free it. */
void kl__arena_seed(kl_arena_t *a, void *mem, size_t cap);

#endif
