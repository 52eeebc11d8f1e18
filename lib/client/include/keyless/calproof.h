/* keyless: calendar consistency proofs and the calendar forest (KSI-FORMAT.md §5.2,
 * docs/formats.md "Calendar auditing").
 *
 * The KSI calendar for publication time P is the RFC 6962 tree over the leaves of seconds
 * [0, P] (absolute UNIX seconds from 0, n = P + 1 leaves), split at the largest power of two
 * strictly less than n, with parent = H_alg(right)(left || right || 0xFF): imprints are hashed
 * whole (algorithm byte included), leaves are the round roots themselves (no leaf prefix), and a
 * node takes its right child's algorithm. Because the split is RFC 6962's, the RFC 9162
 * consistency proof (§2.1.4) carries over with only the node hash changed: a proof for
 * from = P1 <= to = P2 is the list of node values that lets a verifier recompute both root(P1)
 * and root(P2), which shows that the calendar of P1 is a prefix of the calendar of P2.
 *
 * Everything here is pure: no LMDB, no sockets. The builder asks the caller for perfect nodes
 * (h, i), which cover the seconds [i << h, (i + 1) << h) (calendar/cal_proof.h serves them from a
 * calendar, tests from memory).
 */
#ifndef KEYLESS_CALPROOF_H
#define KEYLESS_CALPROOF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A proof over n <= 2^63 leaves has at most 64 nodes. */
#define KL_CALPROOF_MAX 66
/* TLV types (docs/formats.md): a consistency proof, the calendar head, a range of leaves. */
#define KL_TLV_CAL_CONSISTENCY 0x0C01
#define KL_TLV_CAL_HEAD 0x0C02
#define KL_TLV_CAL_RANGE 0x0C03

typedef struct kl_calproof {
  uint64_t from, to;        /* P1 <= P2, UNIX seconds */
  bool has_roots;           /* root_from and root_to are set (as the extender sends them) */
  kl_imprint_t root_from, root_to;
  size_t n;
  kl_imprint_t path[KL_CALPROOF_MAX];
} kl_calproof_t;

/* Perfect node (h, i) of the calendar; 0 or a KL_E* code with a message. */
typedef int (*kl_calproof_node_fn)(void *arg, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e);

/* The parent rule: H_alg(r)(l || r || 0xFF). */
KL_API int kl_calproof_parent(kl_hasher_t *h, const kl_imprint_t *l, const kl_imprint_t *r, kl_imprint_t *out,
                              kl_err_t *e);

/* The number of nodes in the proof from..to (0 when from == to); 0 also for from > to. */
KL_API size_t kl_calproof_len(uint64_t from, uint64_t to);

/* Builds the proof from..to (from <= to < 2^63) into out (roots not set): at most about 2 log2(to)
 * node lookups and log2(to) hashes. */
KL_API int kl_calproof_build(uint64_t from, uint64_t to, kl_calproof_node_fn node, void *arg, kl_calproof_t *out,
                             kl_err_t *e);

/* Checks that p links root_from (the calendar root at p->from) to root_to (at p->to). 0 when it
 * does; KL_EFORMAT naming the mismatch (which root, which seconds, the hashes) otherwise. */
KL_API int kl_calproof_verify(const kl_calproof_t *p, const kl_imprint_t *root_from, const kl_imprint_t *root_to,
                              kl_err_t *e);

/* TLV 0x0C01 { 0x01 from, 0x02 to, [0x03 root_from, 0x04 root_to], 0x05 node* }. The decoder is
 * strict: exactly one element filling the input, these children in this order and no others,
 * minimal integers, imprints of known algorithms, from <= to < 2^63 and exactly
 * kl_calproof_len(from, to) nodes. */
KL_API void kl_calproof_encode(kl_buf_t *b, const kl_calproof_t *p);
KL_API int kl_calproof_decode(const uint8_t *p, size_t len, kl_calproof_t *out, kl_err_t *e);

/* ---- the forest: roots recomputed from leaves ---- */

/* The perfect subtrees of the leaves [0, n), largest first: tree j has the height of the j-th
 * highest 1-bit of n. */
typedef struct kl_calforest {
  uint64_t n;
  size_t m;
  kl_imprint_t tree[64];
} kl_calforest_t;

/* Sets f to the forest of [0, n) from its m = popcount(n) trees, largest first. */
KL_API int kl_calforest_set(kl_calforest_t *f, uint64_t n, const kl_imprint_t *trees, size_t m, kl_err_t *e);
/* Appends the leaf of second f->n. */
KL_API int kl_calforest_push(kl_calforest_t *f, kl_hasher_t *h, const kl_imprint_t *leaf, kl_err_t *e);
/* The calendar root at second f->n - 1 (the fold from the right); KL_ESTATE when empty. */
KL_API int kl_calforest_root(const kl_calforest_t *f, kl_hasher_t *h, kl_imprint_t *out, kl_err_t *e);


/* ---- what the extender serves next to proofs (calrange.c) ---- */

/* The calendar head: TLV 0x0C02 { 0x01 genesis, 0x02 last second, 0x03 root(last) }. */
typedef struct kl_calhead {
  uint64_t genesis, last;
  kl_imprint_t root;
} kl_calhead_t;
KL_API void kl_calhead_encode(kl_buf_t *b, const kl_calhead_t *h);
KL_API int kl_calhead_decode(const uint8_t *p, size_t len, kl_calhead_t *out, kl_err_t *e);

/* Leaves of a range of seconds, with the forest before it so that roots can be recomputed:
 * TLV 0x0C03 { 0x01 from, 0x02 to, 0x03 tree* (the forest of [0, from), largest first),
 * 0x04 leaf* (seconds from..to) }, at most KL_CALRANGE_MAX leaves (which fit one TLV whatever
 * the hash algorithm). */
#define KL_CALRANGE_MAX 512
typedef struct kl_calrange {
  uint64_t from, to;
  kl_calforest_t before;
  kl_imprint_t leaf[KL_CALRANGE_MAX]; /* leaf[j]: second from + j */
} kl_calrange_t;
KL_API void kl_calrange_encode(kl_buf_t *b, const kl_calrange_t *r);
/* Strict as kl_calproof_decode; from <= to, to - from < KL_CALRANGE_MAX, popcount(from) trees. */
KL_API int kl_calrange_decode(const uint8_t *p, size_t len, kl_calrange_t *out, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
