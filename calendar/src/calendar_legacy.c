/* Storage format 1 (every node under its post-order position in the database "nodes"): reads and
 * the audit as that format had them, for calendars opened read-only before they are converted,
 * and the conversion to format 2 that kl_cal_open makes when it opens one for writing.
 *
 * The conversion is one LMDB write transaction: the blocks of format 2 are written from the
 * stored leaves, every node of height >= 8 they carry is compared with the one format 1 stored
 * (a calendar that does not hash up is refused, and stays as it was), then "nodes" is deleted
 * and the version set to 2. A crash before the commit leaves the format-1 calendar untouched;
 * readers see one format or the other, never a mix. */
#include <string.h>

#include "cal_internal.h"
#include "keyless/log.h"

uint64_t kl__cal_node_pos(unsigned h, uint64_t i) {
  uint64_t L = ((i + 1) << h) - 1; /* the leaf whose append completes the node */
  return 2 * L - (uint64_t)__builtin_popcountll(L) + h;
}

int kl__cal_v1_node(kl__cal_rd_t *rd, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e) {
  uint8_t key[8];
  if (!rd->cal->has_nodes) return kl_err_set(e, KL_EFORMAT, "calendar %s lacks its 'nodes' database", rd->cal->dir);
  kl__cal_be64(key, kl__cal_node_pos(h, i));
  MDB_val k = {8, key}, d;
  int rc = mdb_get(rd->txn, rd->cal->nodes, &k, &d);
  if (rc == MDB_NOTFOUND)
    return kl_err_set(e, KL_ENOTFOUND, "calendar node (height %u, index %llu) is missing", h, (unsigned long long)i);
  if (rc) return kl__cal_mdb_err(e, rc, "calendar node");
  if (kl_imprint_from_bytes(out, d.mv_data, d.mv_size, e))
    return kl_err_wrap(e, "calendar node (height %u, index %llu) is corrupt", h, (unsigned long long)i);
  return 0;
}

static int check(kl__cal_rd_t *rd, kl_cal_audit_t *rep, unsigned ht, uint64_t i, const kl_imprint_t *want, kl_err_t *e) {
  kl_imprint_t v;
  int r = kl__cal_v1_node(rd, ht, i, &v, e);
  if (r) return kl_err_wrap(e, "calendar audit");
  rep->nodes_checked++;
  if (!kl_imprint_eq(&v, want)) {
    char x[2 * KL_IMPRINT_MAX + 1], y[2 * KL_IMPRINT_MAX + 1];
    return kl_err_set(e, KL_EFORMAT, "calendar audit: node (height %u, index %llu) holds %s, %s gives %s", ht,
                      (unsigned long long)i, kl_imprint_hex(&v, x), ht == 0 ? "the definition" : "its children",
                      kl_imprint_hex(want, y));
  }
  return 0;
}

/* Every stored node from its children, the genesis nodes from their definition, every second
 * present, nothing else stored. */
int kl__cal_v1_audit(kl__cal_rd_t *rd, kl_cal_audit_t *rep, kl_err_t *e) {
  kl__cal_tree_t forest[64];
  const kl__cal_meta_t *m = &rd->m;
  uint64_t expected = 0;
  int r = 0, rc;
  size_t nf = kl__cal_forest(m->genesis, forest);
  for (size_t k = 0; k < nf && r == 0; k++) {
    kl_imprint_t want;
    kl_cal_genesis_node(forest[k].h, forest[k].i, &want);
    r = check(rd, rep, forest[k].h, forest[k].i, &want, e);
    expected++;
  }
  uint64_t end = m->empty ? m->genesis : m->last + 1;
  for (uint64_t t = m->genesis; t < end && r == 0; t++) {
    kl_imprint_t cur, left;
    if ((r = kl__cal_v1_node(rd, 0, t, &cur, e))) return kl_err_wrap(e, "calendar audit: second %llu", (unsigned long long)t);
    rep->nodes_checked++;
    rep->leaves++;
    expected++;
    for (unsigned ht = 1; r == 0 && ht < 63 && ((t + 1) & (((uint64_t)1 << ht) - 1)) == 0; ht++) {
      uint64_t i = ((t + 1) >> ht) - 1;
      if ((r = kl__cal_v1_node(rd, ht - 1, 2 * i, &left, e)) || (r = kl_cal_parent(&rd->h, &left, &cur, &cur, e)))
        return kl_err_wrap(e, "calendar audit: children of node (height %u, index %llu)", ht, (unsigned long long)i);
      r = check(rd, rep, ht, i, &cur, e);
      expected++;
    }
  }
  MDB_stat st;
  if (r == 0 && (rc = mdb_stat(rd->txn, rd->cal->nodes, &st))) r = kl__cal_mdb_err(e, rc, "calendar audit");
  if (r == 0 && st.ms_entries != expected)
    r = kl_err_set(e, KL_EFORMAT, "calendar audit: %zu nodes stored, %llu expected for seconds %llu..%llu", st.ms_entries,
                   (unsigned long long)expected, (unsigned long long)m->genesis, (unsigned long long)(end - 1));
  return r;
}

/* The nodes of height >= 8 that format 2 stored for blocks [from, to] equal format 1's. */
static int compare_upper(kl__cal_rd_t *v1, kl__cal_rd_t *v2, uint64_t from, uint64_t to, kl_err_t *e) {
  for (uint64_t k = from; k <= to; k++) {
    for (unsigned j = 0; j < 64 - KL__CAL_BLOCK_BITS && ((k + 1) & (((uint64_t)1 << j) - 1)) == 0; j++) {
      unsigned h = KL__CAL_BLOCK_BITS + j;
      uint64_t i = ((k + 1) >> j) - 1;
      kl_imprint_t a, b;
      int r;
      if ((r = kl__cal_v1_node(v1, h, i, &a, e)) || (r = kl__cal_node(v2, h, i, &b, e))) return r;
      if (!kl_imprint_eq(&a, &b))
        return kl_err_set(e, KL_EFORMAT,
                          "node (height %u, index %llu) is not the hash of the seconds below it (run 'keyless "
                          "calendar audit')",
                          h, (unsigned long long)i);
    }
  }
  return 0;
}

int kl__cal_migrate(kl_cal_t *cal, kl_err_t *e) {
  kl__cal_rd_t v1 = {.cal = cal}, v2;
  kl__cal_writer_t *w = NULL;
  MDB_dbi blocks;
  int r, rc;
  if ((r = kl_hasher_init(&v1.h, e))) return r;
  if ((rc = mdb_txn_begin(cal->env, NULL, 0, &v1.txn))) {
    kl_hasher_close(&v1.h);
    return kl__cal_mdb_err(e, rc, "calendar conversion");
  }
  if ((r = kl__cal_meta_get(cal, v1.txn, &v1.m, e))) goto fail;
  if (v1.m.version != 1) { /* converted meanwhile by another process */
    kl_hasher_close(&v1.h);
    if ((rc = mdb_dbi_open(v1.txn, "blocks", 0, &blocks)) || (rc = mdb_txn_commit(v1.txn))) {
      if (rc != MDB_NOTFOUND) return kl__cal_mdb_err(e, rc, "calendar conversion");
      return kl_err_set(e, KL_EFORMAT, "%s: a calendar in storage format %llu without its 'blocks' database", cal->dir,
                        (unsigned long long)v1.m.version);
    }
    cal->blocks = blocks;
    cal->has_blocks = true;
    cal->version = v1.m.version;
    return 0;
  }
  if ((rc = mdb_dbi_open(v1.txn, "blocks", MDB_CREATE, &blocks))) {
    r = kl__cal_mdb_err(e, rc, "calendar conversion");
    goto fail;
  }
  cal->blocks = blocks;
  cal->has_blocks = true;
  uint64_t n = v1.m.empty ? 0 : v1.m.last - v1.m.genesis + 1;
  kl_log(KL_LOG_INFO, "calendar_convert", "dir=%s from=1 to=%d seconds=%llu", cal->dir, KL__CAL_VERSION,
         (unsigned long long)n);
  v2 = v1;
  v2.m.version = KL__CAL_VERSION;
  v2.m.empty = true;
  v2.m.last = v2.m.genesis - 1;
  if ((r = kl__cal_writer_open(&v2, &w, e))) goto fail;
  for (uint64_t t = v1.m.genesis; t < v1.m.genesis + n; t++) {
    kl_imprint_t leaf, filler;
    if ((r = kl__cal_v1_node(&v1, 0, t, &leaf, e)) || (r = kl__cal_filler(&v1.h, t, &filler, e))) goto fail;
    if ((r = kl__cal_writer_add(w, t, kl_imprint_eq(&leaf, &filler) ? NULL : &leaf, e))) goto fail;
  }
  r = kl__cal_writer_finish(w, e);
  w = NULL;
  if (r) goto fail;
  v2.m = v1.m;
  v2.m.version = KL__CAL_VERSION;
  uint64_t g = v1.m.genesis >> KL__CAL_BLOCK_BITS, end = v1.m.empty ? 0 : (v1.m.last + 1) >> KL__CAL_BLOCK_BITS;
  if (end > g && (r = compare_upper(&v1, &v2, g, end - 1, e))) goto fail;
  if ((rc = mdb_drop(v1.txn, cal->nodes, 1))) {
    r = kl__cal_mdb_err(e, rc, "calendar conversion");
    goto fail;
  }
  if ((r = kl__cal_meta_put(cal, v1.txn, "version", KL__CAL_VERSION, e))) goto fail;
  kl_hasher_close(&v1.h);
  if ((rc = mdb_txn_commit(v1.txn)) || (rc = mdb_env_sync(cal->env, 1))) {
    cal->has_blocks = false;
    return kl__cal_mdb_err(e, rc, "calendar conversion commit");
  }
  cal->has_nodes = false;
  cal->version = KL__CAL_VERSION;
  kl_log(KL_LOG_INFO, "calendar_converted", "dir=%s version=%d seconds=%llu", cal->dir, KL__CAL_VERSION,
         (unsigned long long)n);
  return 0;
fail:
  kl__cal_writer_free(w);
  kl_hasher_close(&v1.h);
  mdb_txn_abort(v1.txn);
  cal->has_blocks = false;
  return kl_err_wrap(e, "converting calendar %s to storage format %d", cal->dir, KL__CAL_VERSION);
}
