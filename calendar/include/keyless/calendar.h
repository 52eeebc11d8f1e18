/* keyless: the KSI calendar in LMDB (KSI-FORMAT.md §5, docs/formats.md "Calendar").
 *
 * One leaf per UNIX second from 0; the leaves of seconds before the calendar's genesis G are
 * never stored: the perfect subtrees covering [0, G) get deterministic opaque values, and a
 * second with no round gets a deterministic filler leaf, so any two keyless calendars with the
 * same rounds agree byte for byte. Stored (storage format 2): the leaves packed 256 seconds to
 * an LMDB value, with the nodes of height 5 and those of height >= 8; root(P) and chain(t, P)
 * cost O(log P) lookups and O(log P) hashes plus at most about 30 hashes inside a block. A
 * calendar of format 1 (keyless before issue 12) is read as it is, and converted when opened
 * for writing; a newer format is refused (docs/formats.md §2).
 *
 * Threads: a kl_cal_t may be used from several threads for reads; appends must come from one
 * thread at a time (LMDB serializes writers; each append is one durable transaction and
 * blocks on fsync, so daemons call it from a worker, never from the event loop).
 * No sockets, no event loop here.
 */
#ifndef KEYLESS_CALENDAR_H
#define KEYLESS_CALENDAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/pubfile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_cal kl_cal_t;

typedef struct kl_cal_opts {
  size_t map_size; /* LMDB map size in bytes; 0 = 4 GiB. The calendar refuses appends beyond it. */
  bool read_only;  /* open without write access (extender replicas reading a live copy) */
  bool no_sync;    /* commit without fsync (MDB_NOSYNC): only where another log provides
                      durability, as the core's Raft log does; call kl_cal_sync before relying
                      on what was appended */
} kl_cal_opts_t;

typedef struct kl_cal_info {
  uint64_t genesis;   /* first second that may hold a round */
  uint64_t last;      /* last second appended; genesis - 1 while empty */
  bool empty;
  uint64_t rounds;    /* seconds appended with a real round root */
  uint64_t fillers;   /* seconds appended as empty rounds */
  size_t map_size;
  size_t used_bytes;  /* pages in use times page size */
} kl_cal_info_t;

/* Creates a new calendar in dir (created if missing; must not hold one already). */
KL_API int kl_cal_create(const char *dir, uint64_t genesis, const kl_cal_opts_t *opts, kl_err_t *e);
KL_API int kl_cal_open(const char *dir, const kl_cal_opts_t *opts, kl_cal_t **out, kl_err_t *e);
KL_API void kl_cal_close(kl_cal_t *cal);
/* Forces everything appended so far to disk (for calendars opened with no_sync). */
KL_API int kl_cal_sync(kl_cal_t *cal, kl_err_t *e);
KL_API int kl_cal_info(kl_cal_t *cal, kl_cal_info_t *out, kl_err_t *e);

typedef struct kl_cal_entry {
  uint64_t time;
  const kl_imprint_t *root; /* NULL: an empty round (filler leaf) */
} kl_cal_entry_t;

/* Appends entries in strictly increasing time, all after the last second; seconds skipped in
 * between get filler leaves. One transaction: all or nothing, durable when it returns 0. */
KL_API int kl_cal_append(kl_cal_t *cal, const kl_cal_entry_t *entries, size_t n, kl_err_t *e);

/* The leaf (round root or filler) of second t, genesis <= t <= last. */
KL_API int kl_cal_leaf(kl_cal_t *cal, uint64_t t, kl_imprint_t *out, kl_err_t *e);
/* The calendar root for publication time P, genesis <= P <= last. */
KL_API int kl_cal_root(kl_cal_t *cal, uint64_t P, kl_imprint_t *out, kl_err_t *e);
/* The calendar hash chain from second t to P (genesis <= t <= P <= last), appended to out as a
 * whole 0x802 TLV with publication time P, aggregation time t and input = leaf(t). */
KL_API int kl_cal_chain(kl_cal_t *cal, uint64_t t, uint64_t P, kl_buf_t *out, kl_err_t *e);

/* Consistency: the perfect subtree roots of P1's forest, each recomputed from P2's nodes, are
 * what P2 was built on. Returns 0 when root(P1) is a prefix of root(P2). */
KL_API int kl_cal_check_consistent(kl_cal_t *cal, uint64_t P1, uint64_t P2, kl_err_t *e);

typedef struct kl_cal_audit {
  uint64_t nodes_checked;
  uint64_t leaves;
  uint64_t publications_checked; /* publications inside [genesis, last] */
  uint64_t publications_outside; /* before genesis or after last: not checkable here */
} kl_cal_audit_t;

/* Recomputes every stored node from its children and checks that every second in
 * [genesis, last] has a leaf; with pf, compares root(P) with every publication in range.
 * KL_EFORMAT with the first discrepancy (which node, expected, found). */
KL_API int kl_cal_audit(kl_cal_t *cal, const kl_pubfile_t *pf, kl_cal_audit_t *report, kl_err_t *e);

/* The deterministic values (docs/formats.md). */
KL_API void kl_cal_filler_leaf(uint64_t t, kl_imprint_t *out);
KL_API void kl_cal_genesis_node(unsigned h, uint64_t i, kl_imprint_t *out);
/* parent = H_alg(right)(left || right || 0xFF) */
KL_API int kl_cal_parent(kl_hasher_t *h, const kl_imprint_t *l, const kl_imprint_t *r, kl_imprint_t *out,
                         kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
