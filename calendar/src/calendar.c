/* Calendar storage in LMDB: create/open (with the conversion of format-1 calendars), metadata,
 * and appends (the block writer is cal_block.c).
 *
 * Layout (docs/formats.md §2): database "meta" holds version, genesis, count, rounds and fillers
 * (u64 big-endian); database "blocks" maps a block number (u64 big-endian) to the packed leaves
 * of its 256 seconds and the nodes of height >= 8 it completes. Every append is one write
 * transaction, committed (and fsynced) before kl_cal_append returns; a crash at any point leaves
 * the state of the last committed append. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cal_internal.h"

#define MAX_GAP (1u << 22) /* seconds filled in one append: about 48 days */
#define DEFAULT_MAP ((size_t)256 << 30) /* address space, not disk: centuries at ~35 B/s */

int kl__cal_mdb_err(kl_err_t *e, int rc, const char *what) {
  int code = rc == MDB_MAP_FULL ? KL_ERANGE : rc == ENOENT ? KL_ENOTFOUND : KL_EIO;
  if (rc == MDB_MAP_FULL)
    return kl_err_set(e, code, "%s: the calendar's map size is full (raise map_size); nothing was written", what);
  return kl_err_set(e, code, "%s: %s", what, mdb_strerror(rc));
}

void kl__cal_be64(uint8_t *p, uint64_t v) {
  for (int k = 7; k >= 0; k--, v >>= 8) p[k] = (uint8_t)v;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int k = 0; k < 8; k++) v = v << 8 | p[k];
  return v;
}

int kl__cal_meta_put(kl_cal_t *cal, MDB_txn *txn, const char *key, uint64_t v, kl_err_t *e) {
  uint8_t b[8];
  kl__cal_be64(b, v);
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
  MDB_val k = {7, "version"}, d;
  int rc = mdb_get(txn, cal->meta, &k, &d);
  m->version = 1; /* format 1 wrote it but never read it */
  if (rc != MDB_NOTFOUND && (r = meta_read(cal, txn, "version", &m->version, e))) return r;
  m->empty = count == 0;
  m->last = m->genesis + count - 1; /* genesis - 1 while empty */
  return 0;
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
  /* "meta" must exist (unless creating); "blocks" (format 2) and "nodes" (format 1) may not. */
  if ((rc = mdb_txn_begin(cal->env, NULL, cal->read_only ? MDB_RDONLY : 0, &txn)) ||
      (rc = mdb_dbi_open(txn, "meta", create ? MDB_CREATE : 0, &cal->meta))) {
    if (rc == MDB_NOTFOUND) kl_err_set(e, KL_ENOTFOUND, "%s holds no keyless calendar (create one with 'keyless calendar init')", dir);
    else kl__cal_mdb_err(e, rc, dir);
    goto fail;
  }
  rc = mdb_dbi_open(txn, "blocks", create ? MDB_CREATE : 0, &cal->blocks);
  cal->has_blocks = rc == 0;
  if (rc == 0 || rc == MDB_NOTFOUND) {
    rc = mdb_dbi_open(txn, "nodes", 0, &cal->nodes);
    cal->has_nodes = rc == 0;
  }
  if (rc && rc != MDB_NOTFOUND) {
    kl__cal_mdb_err(e, rc, dir);
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
  /* Nothing is stored for the seconds before genesis: their nodes are genesis_node(h, i). */
  if ((r = kl__cal_meta_put(cal, txn, "version", KL__CAL_VERSION, e)) == 0 &&
      (r = kl__cal_meta_put(cal, txn, "genesis", genesis, e)) == 0 && (r = kl__cal_meta_put(cal, txn, "count", 0, e)) == 0 &&
      (r = kl__cal_meta_put(cal, txn, "rounds", 0, e)) == 0)
    r = kl__cal_meta_put(cal, txn, "fillers", 0, e);
  if (r) {
    mdb_txn_abort(txn);
    goto out;
  }
  if ((rc = mdb_txn_commit(txn))) r = kl__cal_mdb_err(e, rc, "calendar create");
out:
  kl_cal_close(cal);
  return r;
}

/* Format 2 is read and written; format 1 is read as it is, and converted when opened for writing. */
static int check_version(kl_cal_t *cal, kl_err_t *e) {
  MDB_txn *txn;
  kl__cal_meta_t m;
  int rc = mdb_txn_begin(cal->env, NULL, MDB_RDONLY, &txn);
  if (rc) return kl__cal_mdb_err(e, rc, cal->dir);
  int r = kl__cal_meta_get(cal, txn, &m, e);
  mdb_txn_abort(txn);
  if (r) return r;
  cal->version = m.version;
  if (m.version > KL__CAL_VERSION || m.version == 0)
    return kl_err_set(e, KL_EFORMAT,
                      "%s holds a calendar in storage format %llu; this keyless reads formats 1 and %d (a newer keyless "
                      "wrote it: upgrade)",
                      cal->dir, (unsigned long long)m.version, KL__CAL_VERSION);
  if (m.version == 1 ? !cal->has_nodes : !cal->has_blocks)
    return kl_err_set(e, KL_EFORMAT, "%s: a calendar in storage format %llu without its '%s' database", cal->dir,
                      (unsigned long long)m.version, m.version == 1 ? "nodes" : "blocks");
  return 0;
}

int kl_cal_open(const char *dir, const kl_cal_opts_t *opts, kl_cal_t **out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  *out = NULL;
  kl_cal_t *cal;
  int r = env_open(dir, opts, false, &cal, e);
  if (r) return r;
  if ((r = check_version(cal, e)) == 0 && cal->version == 1 && !cal->read_only) r = kl__cal_migrate(cal, e);
  if (r == 0 && cal->version == 1 && !cal->read_only) r = kl_err_set(e, KL_EFORMAT, "%s: conversion failed", dir);
  kl_cal_info_t info;
  if (r == 0) r = kl_cal_info(cal, &info, e);
  if (r) {
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

int kl_cal_append(kl_cal_t *cal, const kl_cal_entry_t *entries, size_t n, kl_err_t *e) {
  kl_err_t local = {0};
  kl__cal_rd_t w = {.cal = cal};
  kl__cal_writer_t *wr = NULL;
  int r, rc;
  if (e == NULL) e = &local;
  if (cal->read_only) return kl_err_set(e, KL_ESTATE, "calendar %s is open read-only", cal->dir);
  if ((r = kl_hasher_init(&w.h, e))) return r;
  if ((rc = mdb_txn_begin(cal->env, NULL, 0, &w.txn))) {
    kl_hasher_close(&w.h);
    return kl__cal_mdb_err(e, rc, "calendar append");
  }
  if ((r = kl__cal_meta_get(cal, w.txn, &w.m, e))) goto fail;
  if (w.m.version != KL__CAL_VERSION) {
    r = kl_err_set(e, KL_ESTATE, "calendar %s: storage format %llu is not the one this keyless writes", cal->dir,
                   (unsigned long long)w.m.version);
    goto fail;
  }
  if ((r = kl__cal_writer_open(&w, &wr, e))) goto fail;
  uint64_t next = w.m.empty ? w.m.genesis : w.m.last + 1; /* the first second not yet appended */
  for (size_t k = 0; k < n; k++) {
    uint64_t t = entries[k].time;
    const kl_imprint_t *root = entries[k].root;
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
    if (root != NULL && (!kl_hash_known(root->alg) || root->len != kl_hash_digest_len(root->alg))) {
      r = kl_err_set(e, KL_EINVAL, "calendar append: second %llu: invalid root imprint", (unsigned long long)t);
      goto fail;
    }
    for (uint64_t s = next; s < t; s++) {
      if ((r = kl__cal_writer_add(wr, s, NULL, e))) goto fail;
      w.m.fillers++;
    }
    if ((r = kl__cal_writer_add(wr, t, root, e))) goto fail;
    if (root != NULL) w.m.rounds++;
    else w.m.fillers++;
    next = t + 1;
  }
  r = kl__cal_writer_finish(wr, e);
  wr = NULL;
  if (r || (r = kl__cal_meta_put(cal, w.txn, "count", next - w.m.genesis, e)) ||
      (r = kl__cal_meta_put(cal, w.txn, "rounds", w.m.rounds, e)) ||
      (r = kl__cal_meta_put(cal, w.txn, "fillers", w.m.fillers, e)))
    goto fail;
  kl_hasher_close(&w.h);
  if ((rc = mdb_txn_commit(w.txn))) return kl__cal_mdb_err(e, rc, "calendar append commit");
  return 0;
fail:
  kl__cal_writer_free(wr);
  kl_hasher_close(&w.h);
  mdb_txn_abort(w.txn);
  return r;
}
