/* Internal to the calendar: the LMDB handle, metadata, node access inside a transaction, and the
 * block codec of storage format 2 (docs/formats.md §2). */
#ifndef KL_CAL_INTERNAL_H
#define KL_CAL_INTERNAL_H

#include <lmdb.h>

#include "keyless/calendar.h"

/* Storage formats: 1 stored every node under its post-order position in "nodes"; 2 stores the
 * leaves packed in blocks of 2^KL__CAL_BLOCK_BITS aligned seconds in "blocks", with the nodes of
 * height KL__CAL_MID_BITS complete in the block, and (once the block is complete) the perfect
 * nodes of height >= KL__CAL_BLOCK_BITS that its last second completes. */
#define KL__CAL_VERSION 2
#define KL__CAL_BLOCK_BITS 8
#define KL__CAL_BLOCK (1u << KL__CAL_BLOCK_BITS)
#define KL__CAL_MID_BITS 5
#define KL__CAL_MIDS (1u << (KL__CAL_BLOCK_BITS - KL__CAL_MID_BITS)) /* 8 per block */
#define KL__CAL_FILLER 0xFF /* a leaf record of one byte: the second is empty (filler leaf) */
#define KL__CAL_MAX_UPPER 56 /* heights 8..63 */

struct kl_cal {
  MDB_env *env;
  MDB_dbi meta, nodes, blocks;
  bool has_nodes, has_blocks; /* which of the two databases exists (opened at open time) */
  bool read_only;
  uint64_t version; /* storage format at open (or after the conversion) */
  char dir[512];
};

typedef struct kl__cal_meta {
  uint64_t genesis, last, rounds, fillers, version;
  bool empty;
} kl__cal_meta_t;

int kl__cal_meta_get(kl_cal_t *cal, MDB_txn *txn, kl__cal_meta_t *m, kl_err_t *e);
int kl__cal_meta_put(kl_cal_t *cal, MDB_txn *txn, const char *key, uint64_t v, kl_err_t *e);
int kl__cal_mdb_err(kl_err_t *e, int rc, const char *what);
void kl__cal_be64(uint8_t *p, uint64_t v);

/* A decoded block value: offsets into p, which stays owned by the caller (LMDB's map). */
typedef struct kl__cal_block {
  const uint8_t *p;
  size_t len;
  unsigned first, count, n_upper; /* leaves of seconds k*256 + first .. + count - 1 */
  unsigned mid0, n_mid;           /* stored nodes (5, k*8 + mid0 + j), j < n_mid */
  uint16_t upper[KL__CAL_MAX_UPPER]; /* node (8 + j, ((k + 1) >> j) - 1) at p + upper[j] */
  uint16_t mid[KL__CAL_MIDS];
  uint16_t leaves_at;                /* the first leaf record */
  bool have_leaves;                  /* leaf[] is filled in and the value's length checked */
  uint16_t leaf[KL__CAL_BLOCK];      /* leaf of second k*256 + first + j at p + leaf[j] */
} kl__cal_block_t;

/* One transaction (read or write), its metadata, one hasher, and the last block decoded. */
typedef struct kl__cal_rd {
  kl_cal_t *cal;
  MDB_txn *txn;
  kl__cal_meta_t m;
  kl_hasher_t h;
  bool have_blk; /* blk is block blk_k (cleared by every write in the transaction) */
  uint64_t blk_k;
  kl__cal_block_t blk;
} kl__cal_rd_t;

/* A read transaction with its metadata and a hasher; close with kl__cal_rd_close. */
int kl__cal_rd_open(kl_cal_t *cal, kl__cal_rd_t *rd, kl_err_t *e);
void kl__cal_rd_close(kl__cal_rd_t *rd);

/* Node (h, i): a genesis node when it lies entirely before genesis, else stored or computed
 * from its block's leaves. KL_ENOTFOUND if its last second is after rd->m.last. */
int kl__cal_node(kl__cal_rd_t *rd, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e);
/* The leaf of second t, genesis <= t <= last (not checked here). */
int kl__cal_leaf(kl__cal_rd_t *rd, uint64_t t, kl_imprint_t *out, kl_err_t *e);
/* filler(t) with the caller's hasher. */
int kl__cal_filler(kl_hasher_t *h, uint64_t t, kl_imprint_t *out, kl_err_t *e);

/* Perfect subtrees of the forest over leaves [0, n), largest first. */
typedef struct kl__cal_tree {
  unsigned h;
  uint64_t i; /* covers [i << h, (i + 1) << h) */
} kl__cal_tree_t;
size_t kl__cal_forest(uint64_t n, kl__cal_tree_t out[64]);

/* ---- format 2: blocks ---- */

/* Checks and indexes the value of block k: header, imprints of known algorithms, filler
 * records, the number of upper and middle nodes the block carries, nothing left over. */
int kl__cal_block_decode(const uint8_t *p, size_t len, uint64_t k, kl__cal_block_t *b, kl_err_t *e);
/* Node (h, i) with h <= 8 inside block k, from its leaves and (if stored) its middle nodes;
 * genesis nodes below genesis. */
int kl__cal_block_subtree(const kl__cal_block_t *b, uint64_t k, uint64_t genesis, bool stored, kl_hasher_t *h,
                          unsigned ht, uint64_t i, kl_imprint_t *out, kl_err_t *e);
/* Indexes (and checks) the leaf records of a block decoded without them. */
int kl__cal_block_leaves(kl__cal_block_t *b, uint64_t k, kl_err_t *e);
/* Block k of the calendar read in rd, decoded (its leaves too if asked) and checked against the
 * metadata; *b points into rd and stays valid until the next block is read or written in rd. */
int kl__cal_block_get(kl__cal_rd_t *rd, uint64_t k, bool leaves, const kl__cal_block_t **b, kl_err_t *e);

/* Appends in the open write transaction rd (format 2); rd->m is updated. Leaves: NULL = filler. */
typedef struct kl__cal_writer kl__cal_writer_t;
int kl__cal_writer_open(kl__cal_rd_t *rd, kl__cal_writer_t **out, kl_err_t *e);
int kl__cal_writer_add(kl__cal_writer_t *w, uint64_t t, const kl_imprint_t *leaf, kl_err_t *e);
/* Writes the last (partial) block; frees w whatever happens. */
int kl__cal_writer_finish(kl__cal_writer_t *w, kl_err_t *e);
void kl__cal_writer_free(kl__cal_writer_t *w);

/* ---- format 1 (calendar_legacy.c) ---- */
int kl__cal_v1_node(kl__cal_rd_t *rd, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e);
int kl__cal_v1_audit(kl__cal_rd_t *rd, kl_cal_audit_t *rep, kl_err_t *e);
/* Converts a format-1 calendar to format 2 in one write transaction (kl_cal_open does it). */
int kl__cal_migrate(kl_cal_t *cal, kl_err_t *e);
/* The LMDB key of node (h, i) in format 1: its post-order position. */
uint64_t kl__cal_node_pos(unsigned h, uint64_t i);

#endif
