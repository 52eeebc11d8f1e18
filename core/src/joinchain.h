/* The core's joined chains. A request in a batch (rounds.h) sits in two trees: its node's batch
 * tree, whose root is a leaf of the round tree. It gets one core 0x801 for the whole path: the
 * batch tree's chain with the round tree's links after its own and the shape of the whole path
 * as its chain index, as if the two trees were one (they are). Written by joining the two
 * chains' bytes (both canonical, from kl_tree_chain): the same bytes as decoding both and
 * encoding the joined chain with kl_aggr_chain_encode, which the tests check.
 *
 * Pure; a kl_core_upper_t owns its buffer (kl_core_upper_free). */
#ifndef KL_CORE_JOINCHAIN_H
#define KL_CORE_JOINCHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/tree.h"

/* The round tree's chain for a batch's leaf, made once per batch and round. */
typedef struct kl_core_upper {
  kl_buf_t chain;
  size_t links_at, n_links; /* where its links start in `chain`, and how many */
  uint64_t shape;           /* its chain index: the shape of its links */
} kl_core_upper_t;

void kl_core_upper_init(kl_core_upper_t *u);
void kl_core_upper_free(kl_core_upper_t *u);
/* The round tree's chain for leaf `leaf` at aggregation time `second`. */
int kl_core_upper_set(kl_core_upper_t *u, const kl_tree_t *round, size_t leaf, uint64_t second, kl_err_t *e);
/* Appends to `out` the core chain of the batch tree's leaf `slot` under u (scratch: a work
 * buffer). KL_ERANGE when the path has more than 63 links. */
int kl_core_chain_join(const kl_core_upper_t *u, const kl_tree_t *batch, size_t slot, uint64_t second, kl_buf_t *scratch,
                       kl_buf_t *out, kl_err_t *e);

#endif
