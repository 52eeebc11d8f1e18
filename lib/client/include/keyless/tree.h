/* keyless: the aggregation tree of one round (KSI-FORMAT.md §4), shared by gateways,
 * aggregators and the core. Pure: no I/O.
 *
 * Leaves are imprints at levels (a client's request at its request_level, a child
 * aggregator's root at its root level). Neighbours are paired level by level, an odd node
 * moving up unchanged, so the tree is balanced; a parent's level is one more than its
 * children's highest, and each child's link carries the level correction that makes up the
 * difference. A leaf may carry a metadata value (its identity): its chain then starts with a
 * left link whose sibling is that metadata, as Guardtime's gateways do.
 *
 * The tree owns its memory; kl_tree_free releases it.
 *
 * Threads: a tree belongs to one thread at a time; no global state.
 */
#ifndef KEYLESS_TREE_H
#define KEYLESS_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_tree_leaf {
  kl_imprint_t hash;
  uint8_t level;        /* the level the hash sits at (0 for a document hash) */
  const uint8_t *meta;  /* metadata TLV value (children serialized), or NULL; copied */
  size_t meta_len;
} kl_tree_leaf_t;

typedef struct kl_tree kl_tree_t;

/* Builds the tree over n >= 1 leaves with hash algorithm alg. KL_ERANGE if the root's level
 * would exceed max_level (at most 255). */
KL_API int kl_tree_build(const kl_tree_leaf_t *leaves, size_t n, int alg, unsigned max_level, kl_tree_t **out,
                         kl_err_t *e);
KL_API void kl_tree_free(kl_tree_t *t);
KL_API const kl_imprint_t *kl_tree_root(const kl_tree_t *t);
KL_API unsigned kl_tree_root_level(const kl_tree_t *t);
KL_API size_t kl_tree_size(const kl_tree_t *t);

/* Appends leaf i's aggregation hash chain (a whole 0x801) for aggregation time t: its chain
 * index is parent_index (the parent tier's list, may be empty for the top tier) followed by
 * this chain's own shape. The first link's level correction is relative to the leaf's level,
 * as the protocol returns it (a client adds its request level, KSI-FORMAT.md §4.3). */
KL_API int kl_tree_chain(const kl_tree_t *t, size_t i, uint64_t aggr_time, const uint64_t *parent_index,
                         size_t n_parent, kl_buf_t *out, kl_err_t *e);
/* The same bytes through the general chain encoder (kl_aggr_chain_encode): kl_tree_chain
 * writes them straight from the tree when every element fits a short TLV, which is every chain
 * but one with a metadata value over 251 bytes; tests compare the two. */
KL_API int kl_tree_chain_general(const kl_tree_t *t, size_t i, uint64_t aggr_time, const uint64_t *parent_index,
                                 size_t n_parent, kl_buf_t *out, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
