/* Calendar storage in LMDB: create/open, metadata, append with filler leaves and the perfect
 * nodes above them.
 *
 * Layout: database "meta" holds genesis, last, rounds and fillers (u64 big-endian); database
 * "nodes" maps (height u8, index u64 big-endian) to an imprint. Leaves are height 0. Every
 * append is one write transaction, committed (and fsynced) before kl_cal_append returns; a
 * crash at any point leaves the state of the last committed append. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cal_internal.h"

#define MAX_GAP (1u << 22) /* seconds filled in one append: about 48 days */
#define DEFAULT_MAP ((size_t)256 << 30) /* address space, not disk: about 38 years at ~200 B/s */

int kl__cal_mdb_err(kl_err_t *e, int rc, const char *what) {
  int code = rc == MDB_MAP_FULL ? KL_ERANGE : rc == ENOENT ? KL_ENOTFOUND : KL_EIO;
  if (rc == MDB_MAP_FULL)
    return kl_err_set(e, code, "%s: the calendar's map size is full (raise map_size); nothing was written", what);
  return kl_err_set(e, code, "%s: %s", what, mdb_strerror(rc));
}

static void be64(uint8_t *p, uint64_t v) {
  for (int k = 7; k >= 0; k--, v >>= 8) p[k] = (uint8_t)v;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int k = 0; k < 8; k++) v = v << 8 | p[k];
  return v;
}

static int meta_put(kl_cal_t *cal, MDB_txn *txn, const char *key, uint64_t v, kl_err_t *e) {
  uint8_t b[8];
  be64(b, v);
  MDB_val k = {strlen(key), (void *)key}, d = {8, b};
  int rc = mdb_put(txn, cal->meta, &k, &d, 0);
  return rc ? kl__cal_mdb_err(e, rc, "calendar metadata") : 0;
}

static int meta_read(kl_cal_t *cal, MDB_txn *txn, const char *key, uint64_t *v, kl_err_t *e) {
  MDB_val k = {strlen(key), (void *)key}, d;
  int rc = mdb_get(txn, cal->meta, &k, &d);
  if (rc == MDB_NOTFOUND) return kl_err_set(e, KL_EFORMAT, "calendar metadata lacks '%s': not a keyless calendar", key);
  if (rc) return kl__cal_mdb_err(e, rc, "calendar metadata");
  if (d.mv_size != 8) return kl_err_set(e, KL_EFORMAT, "calendar metadata '%s' is corrupt", key);
  *v = rd64(d.mv_data);
  return 0;
}

int kl__cal_meta_get(kl_cal_t *cal, MDB_txn *txn, kl__cal_meta_t *m, kl_err_t *e) {
  uint64_t count;
  int r;
  if ((r = meta_read(cal, txn, "genesis", &m->genesis, e)) || (r = meta_read(cal, txn, "count", &count, e)) ||
      (r = meta_read(cal, txn, "rounds", &m->rounds, e)) || (r = meta_read(cal, txn, "fillers", &m->fillers, e)))
    return r;
  m->empty = count == 0;
  m->last = m->genesis + count - 1; /* genesis - 1 while empty */
  return 0;
}

uint64_t kl__cal_node_pos(unsigned h, uint64_t i) {
  uint64_t L = ((i + 1) << h) - 1; /* the leaf whose append completes the node */
  return 2 * L - (uint64_t)__builtin_popcountll(L) + h;
}

/* Keys are the node's post-order position (as in a Merkle mountain range): every append
 * writes keys larger than all before it, so LMDB appends instead of splitting pages. */
static void node_key(uint8_t key[8], unsigned h, uint64_t i) { be64(key, kl__cal_node_pos(h, i)); }

int kl__cal_node_get(kl_cal_t *cal, MDB_txn *txn, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e) {
  uint8_t key[8];
  node_key(key, h, i);
  MDB_val k = {8, key}, d;
  int rc = mdb_get(txn, cal->nodes, &k, &d);
  if (rc == MDB_NOTFOUND)
    return kl_err_set(e, KL_ENOTFOUND, "calendar node (height %u, index %llu) is missing", h, (unsigned long long)i);
  if (rc) return kl__cal_mdb_err(e, rc, "calendar node");
  if (kl_imprint_from_bytes(out, d.mv_data, d.mv_size, e))
    return kl_err_wrap(e, "calendar node (height %u, index %llu) is corrupt", h, (unsigned long long)i);
  return 0;
}

static int node_put(kl_cal_t *cal, MDB_txn *txn, unsigned h, uint64_t i, const kl_imprint_t *v, kl_err_t *e) {
  uint8_t key[8], val[KL_IMPRINT_MAX];
  node_key(key, h, i);
  MDB_val k = {8, key}, d = {kl_imprint_to_bytes(v, val), val};
  int rc = mdb_put(txn, cal->nodes, &k, &d, MDB_APPEND);
  if (rc == MDB_KEYEXIST)
    return kl_err_set(e, KL_ESTATE, "calendar node (height %u, index %llu) is not after every stored node", h,
                      (unsigned long long)i);
  return rc ? kl__cal_mdb_err(e, rc, "calendar append") : 0;
}

size_t kl__cal_forest(uint64_t n, kl__cal_tree_t out[64]) {
  size_t m = 0;
  uint64_t lo = 0;
  for (int h = 63; h >= 0; h--) {
    if (!(n >> h & 1)) continue;
    out[m].h = (unsigned)h;
    out[m].i = lo >> h;
    m++;
    lo += (uint64_t)1 << h;
  }
  return m;
}

static int env_open(const char *dir, const kl_cal_opts_t *opts, bool create, kl_cal_t **out, kl_err_t *e) {
  kl_cal_t *cal = calloc(1, sizeof *cal);
  MDB_txn *txn = NULL;
  int rc;
  if (cal == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  snprintf(cal->dir, sizeof cal->dir, "%s", dir);
  cal->read_only = opts && opts->read_only;
  unsigned flags = MDB_NOTLS | (cal->read_only ? MDB_RDONLY : 0) | (opts && opts->no_sync ? MDB_NOSYNC : 0);
  if ((rc = mdb_env_create(&cal->env)) || (rc = mdb_env_set_maxdbs(cal->env, 4)) ||
      (rc = mdb_env_set_mapsize(cal->env, opts && opts->map_size ? opts->map_size : DEFAULT_MAP)) ||
      (rc = mdb_env_open(cal->env, dir, flags, 0644))) {
    kl__cal_mdb_err(e, rc, dir);
    goto fail;
  }
  if ((rc = mdb_txn_begin(cal->env, NULL, cal->read_only ? MDB_RDONLY : 0, &txn)) ||
      (rc = mdb_dbi_open(txn, "meta", create ? MDB_CREATE : 0, &cal->meta)) ||
      (rc = mdb_dbi_open(txn, "nodes", create ? MDB_CREATE : 0, &cal->nodes))) {
    if (rc == MDB_NOTFOUND) kl_err_set(e, KL_ENOTFOUND, "%s holds no keyless calendar (create one with 'keyless calendar init')", dir);
    else kl__cal_mdb_err(e, rc, dir);
    goto fail;
  }
  if ((rc = mdb_txn_commit(txn))) {
    txn = NULL;
    kl__cal_mdb_err(e, rc, dir);
    goto fail;
  }
  *out = cal;
  return 0;
fail:
  if (txn) mdb_txn_abort(txn);
  if (cal->env) mdb_env_close(cal->env);
  free(cal);
  return e ? e->code : KL_EIO;
}

int kl_cal_create(const char *dir, uint64_t genesis, const kl_cal_opts_t *opts, kl_err_t *e) {
  kl_cal_t *cal;
  MDB_txn *txn;
  kl__cal_tree_t forest[64];
  kl_err_t local = {0};
  int r, rc;
  if (e == NULL) e = &local;
  if (genesis > ((uint64_t)1 << 62)) return kl_err_set(e, KL_ERANGE, "genesis %llu is not a plausible UNIX time", (unsigned long long)genesis);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return kl_err_set(e, KL_EIO, "cannot create %s: %s", dir, strerror(errno));
  kl_cal_opts_t o = opts ? *opts : (kl_cal_opts_t){0};
  o.read_only = false;
  if ((r = env_open(dir, &o, true, &cal, e))) return r;
  if ((rc = mdb_txn_begin(cal->env, NULL, 0, &txn))) {
    r = kl__cal_mdb_err(e, rc, dir);
    goto out;
  }
  uint64_t dummy;
  if (meta_read(cal, txn, "genesis", &dummy, NULL) == 0) {
    mdb_txn_abort(txn);
    r = kl_err_set(e, KL_ESTATE, "%s already holds a calendar", dir);
    goto out;
  }
  /* The seconds before genesis: one opaque node per perfect subtree of their forest. */
  size_t m = kl__cal_forest(genesis, forest);
  r = 0;
  for (size_t k = 0; k < m && r == 0; k++) {
    kl_imprint_t v;
    kl_cal_genesis_node(forest[k].h, forest[k].i, &v);
    r = node_put(cal, txn, forest[k].h, forest[k].i, &v, e);
  }
  if (r == 0 && ((r = meta_put(cal, txn, "version", 1, e)) || (r = meta_put(cal, txn, "genesis", genesis, e)) ||
                 (r = meta_put(cal, txn, "count", 0, e)) || (r = meta_put(cal, txn, "rounds", 0, e)) ||
                 (r = meta_put(cal, txn, "fillers", 0, e)))) {
  }
  if (r) {
    mdb_txn_abort(txn);
    goto out;
  }
  if ((rc = mdb_txn_commit(txn))) r = kl__cal_mdb_err(e, rc, "calendar create");
out:
  kl_cal_close(cal);
  return r;
}

int kl_cal_open(const char *dir, const kl_cal_opts_t *opts, kl_cal_t **out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  *out = NULL;
  kl_cal_t *cal;
  int r = env_open(dir, opts, false, &cal, e);
  if (r) return r;
  kl_cal_info_t info;
  if ((r = kl_cal_info(cal, &info, e))) {
    kl_cal_close(cal);
    return r;
  }
  *out = cal;
  return 0;
}

int kl_cal_sync(kl_cal_t *cal, kl_err_t *e) {
  int rc = mdb_env_sync(cal->env, 1);
  return rc ? kl__cal_mdb_err(e, rc, "calendar sync") : 0;
}

void kl_cal_close(kl_cal_t *cal) {
  if (cal == NULL) return;
  mdb_env_close(cal->env);
  free(cal);
}

int kl_cal_info(kl_cal_t *cal, kl_cal_info_t *out, kl_err_t *e) {
  MDB_txn *txn;
  kl__cal_meta_t m;
  int rc = mdb_txn_begin(cal->env, NULL, MDB_RDONLY, &txn);
  if (rc) return kl__cal_mdb_err(e, rc, "calendar");
  int r = kl__cal_meta_get(cal, txn, &m, e);
  MDB_envinfo ei;
  MDB_stat st;
  mdb_env_info(cal->env, &ei);
  mdb_env_stat(cal->env, &st);
  mdb_txn_abort(txn);
  if (r) return r;
  memset(out, 0, sizeof *out);
  out->genesis = m.genesis;
  out->last = m.last;
  out->empty = m.empty;
  out->rounds = m.rounds;
  out->fillers = m.fillers;
  out->map_size = ei.me_mapsize;
  out->used_bytes = (ei.me_last_pgno + 1) * (size_t)st.ms_psize;
  return 0;
}

/* Stores leaf t and every perfect node it completes. */
static int put_leaf(kl_cal_t *cal, MDB_txn *txn, kl_hasher_t *h, uint64_t t, const kl_imprint_t *leaf, kl_err_t *e) {
  kl_imprint_t cur = *leaf, left;
  int r = node_put(cal, txn, 0, t, &cur, e);
  for (unsigned ht = 1; r == 0 && ht < 64 && ((t + 1) & (((uint64_t)1 << ht) - 1)) == 0; ht++) {
    uint64_t i = ((t + 1) >> ht) - 1;
    if ((r = kl__cal_node_get(cal, txn, ht - 1, 2 * i, &left, e)) || (r = kl_cal_parent(h, &left, &cur, &cur, e)))
      break;
    r = node_put(cal, txn, ht, i, &cur, e);
  }
  return r;
}

int kl_cal_append(kl_cal_t *cal, const kl_cal_entry_t *entries, size_t n, kl_err_t *e) {
  kl_err_t local = {0};
  MDB_txn *txn;
  kl__cal_meta_t m;
  kl_hasher_t h;
  kl_imprint_t filler;
  int r, rc;
  if (e == NULL) e = &local;
  if (cal->read_only) return kl_err_set(e, KL_ESTATE, "calendar %s is open read-only", cal->dir);
  if ((r = kl_hasher_init(&h, e))) return r;
  if ((rc = mdb_txn_begin(cal->env, NULL, 0, &txn))) {
    kl_hasher_close(&h);
    return kl__cal_mdb_err(e, rc, "calendar append");
  }
  if ((r = kl__cal_meta_get(cal, txn, &m, e))) goto fail;
  uint64_t next = m.empty ? m.genesis : m.last + 1; /* the first second not yet appended */
  for (size_t k = 0; k < n; k++) {
    uint64_t t = entries[k].time;
    if (t < next) {
      r = kl_err_set(e, KL_EINVAL, "calendar append: second %llu is not after the last second (next is %llu)",
                     (unsigned long long)t, (unsigned long long)next);
      goto fail;
    }
    if (t - next > MAX_GAP) {
      r = kl_err_set(e, KL_ERANGE, "calendar append: %llu empty seconds before %llu exceed the limit of %u per append",
                     (unsigned long long)(t - next), (unsigned long long)t, MAX_GAP);
      goto fail;
    }
    for (uint64_t s = next; s < t; s++) {
      kl_cal_filler_leaf(s, &filler);
      if ((r = put_leaf(cal, txn, &h, s, &filler, e))) goto fail;
      m.fillers++;
    }
    if (entries[k].root != NULL) {
      if (!kl_hash_known(entries[k].root->alg) || entries[k].root->len != kl_hash_digest_len(entries[k].root->alg)) {
        r = kl_err_set(e, KL_EINVAL, "calendar append: second %llu: invalid root imprint", (unsigned long long)t);
        goto fail;
      }
      r = put_leaf(cal, txn, &h, t, entries[k].root, e);
      m.rounds++;
    } else {
      kl_cal_filler_leaf(t, &filler);
      r = put_leaf(cal, txn, &h, t, &filler, e);
      m.fillers++;
    }
    if (r) goto fail;
    next = t + 1;
  }
  if ((r = meta_put(cal, txn, "count", next - m.genesis, e)) || (r = meta_put(cal, txn, "rounds", m.rounds, e)) ||
      (r = meta_put(cal, txn, "fillers", m.fillers, e)))
    goto fail;
  kl_hasher_close(&h);
  if ((rc = mdb_txn_commit(txn))) return kl__cal_mdb_err(e, rc, "calendar append commit");
  return 0;
fail:
  kl_hasher_close(&h);
  mdb_txn_abort(txn);
  return r;
}
