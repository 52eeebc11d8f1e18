/* keyless: hash chain arithmetic (KSI-FORMAT.md §4, §5). Pure functions: no I/O, no state
 * beyond the caller's hasher.
 *
 * Threads: thread-safe with one kl_hasher_t per thread. Memory: results are values in the
 * caller's memory; nothing is allocated. */
#ifndef KEYLESS_CHAINS_H
#define KEYLESS_CHAINS_H

#include <stdbool.h>
#include <stdint.h>

#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_MAX_LEVEL 255

/* Hashes one aggregation step: left ? H(cur||sib||level) : H(sib||cur||level). */
KL_API int kl_aggr_step(kl_hasher_t *h, int alg, bool left, const kl_imprint_t *cur,
                        const uint8_t *sib, size_t sib_len, uint8_t level, kl_imprint_t *out,
                        kl_err_t *e);

/* Computes an aggregation chain from its input hash starting at level_in; gives the output
 * imprint and level. KL_ERANGE if a level exceeds 255. */
KL_API int kl_aggr_chain_compute(kl_hasher_t *h, const kl_aggr_chain_t *c, uint64_t level_in,
                                 kl_imprint_t *out, uint64_t *level_out, kl_err_t *e);

/* The chain's shape: a leading 1 then one bit per link, first link least significant,
 * 1 = left link. False if the chain has more than 63 links. */
KL_API bool kl_aggr_chain_shape(const kl_aggr_chain_t *c, uint64_t *shape);

/* Calendar chain root (the hash for its publication time). Each step uses the right child's
 * algorithm. */
KL_API int kl_cal_chain_root(kl_hasher_t *h, const kl_cal_chain_t *c, kl_imprint_t *out,
                             kl_err_t *e);
/* The aggregation time encoded in the chain's shape for its publication time; false if the
 * shape is inconsistent with pub_time. */
KL_API bool kl_cal_chain_time(const kl_cal_chain_t *c, uint64_t *t);
/* Same input hash and the same sequence of right-link siblings (KSI-FORMAT.md §5.2). */
KL_API bool kl_cal_chain_compatible(const kl_cal_chain_t *a, const kl_cal_chain_t *b);
/* Every hash algorithm a calendar chain uses, as a bit set over ids 0..31. */
KL_API uint32_t kl_cal_chain_algs(const kl_cal_chain_t *c);

/* RFC 3161 legacy record output (KSI-FORMAT.md §4.6); out_alg is the first chain's input
 * hash algorithm. */
KL_API int kl_rfc3161_compute(kl_hasher_t *h, const kl_rfc3161_t *r, int out_alg,
                              kl_imprint_t *out, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
