/* Internal to the calendar: the LMDB handle and node access inside a transaction. */
#ifndef KL_CAL_INTERNAL_H
#define KL_CAL_INTERNAL_H

#include <lmdb.h>

#include "keyless/calendar.h"

struct kl_cal {
  MDB_env *env;
  MDB_dbi meta, nodes;
  bool read_only;
  char dir[512];
};

typedef struct kl__cal_meta {
  uint64_t genesis, last, rounds, fillers;
  bool empty;
} kl__cal_meta_t;

int kl__cal_meta_get(kl_cal_t *cal, MDB_txn *txn, kl__cal_meta_t *m, kl_err_t *e);
/* KL_ENOTFOUND if the node is not stored. */
int kl__cal_node_get(kl_cal_t *cal, MDB_txn *txn, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e);
int kl__cal_mdb_err(kl_err_t *e, int rc, const char *what);
/* The LMDB key of node (h, i): its post-order position, 8 bytes big-endian. */
uint64_t kl__cal_node_pos(unsigned h, uint64_t i);

/* Perfect subtrees of the forest over leaves [0, n), largest first. */
typedef struct kl__cal_tree {
  unsigned h;
  uint64_t i; /* covers [i << h, (i + 1) << h) */
} kl__cal_tree_t;
size_t kl__cal_forest(uint64_t n, kl__cal_tree_t out[64]);

#endif
