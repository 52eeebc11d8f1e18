/* Calendar audit: every stored node recomputed from its children, the genesis nodes from their
 * definition, every second present, and published roots compared with a publications file. */
#include <string.h>

#include "cal_internal.h"

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int k = 0; k < 8; k++) v = v << 8 | p[k];
  return v;
}

int kl_cal_audit(kl_cal_t *cal, const kl_pubfile_t *pf, kl_cal_audit_t *rep, kl_err_t *e) {
  kl_err_t local = {0};
  MDB_txn *txn;
  MDB_cursor *cur = NULL;
  kl__cal_meta_t m;
  kl_hasher_t h;
  int r, rc;
  if (e == NULL) e = &local;
  memset(rep, 0, sizeof *rep);
  if ((rc = mdb_txn_begin(cal->env, NULL, MDB_RDONLY, &txn))) return kl__cal_mdb_err(e, rc, "calendar audit");
  if ((r = kl__cal_meta_get(cal, txn, &m, e)) || (r = kl_hasher_init(&h, e))) {
    mdb_txn_abort(txn);
    return r;
  }
  uint64_t end = m.empty ? m.genesis : m.last + 1; /* leaves [0, end) exist (virtually before genesis) */
  if ((rc = mdb_cursor_open(txn, cal->nodes, &cur))) {
    r = kl__cal_mdb_err(e, rc, "calendar audit");
    goto out;
  }
  MDB_val k, d;
  for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
    if (k.mv_size != 9) {
      r = kl_err_set(e, KL_EFORMAT, "calendar audit: a node key of %zu bytes", k.mv_size);
      goto out;
    }
    unsigned ht = ((const uint8_t *)k.mv_data)[0];
    uint64_t i = rd64((const uint8_t *)k.mv_data + 1);
    kl_imprint_t v, want, l, rr;
    if (ht > 62 || (i + 1) > (UINT64_MAX >> ht) || ((i + 1) << ht) > end) {
      r = kl_err_set(e, KL_EFORMAT, "calendar audit: node (height %u, index %llu) lies beyond the last second", ht,
                     (unsigned long long)i);
      goto out;
    }
    if ((r = kl_imprint_from_bytes(&v, d.mv_data, d.mv_size, e))) {
      kl_err_wrap(e, "calendar audit: node (height %u, index %llu)", ht, (unsigned long long)i);
      goto out;
    }
    rep->nodes_checked++;
    if (((i + 1) << ht) <= m.genesis) { /* entirely before genesis: an opaque genesis node */
      kl_cal_genesis_node(ht, i, &want);
    } else if (ht == 0) {
      rep->leaves++;
      continue;
    } else {
      if ((r = kl__cal_node_get(cal, txn, ht - 1, 2 * i, &l, e)) || (r = kl__cal_node_get(cal, txn, ht - 1, 2 * i + 1, &rr, e)) ||
          (r = kl_cal_parent(&h, &l, &rr, &want, e))) {
        kl_err_wrap(e, "calendar audit: children of node (height %u, index %llu)", ht, (unsigned long long)i);
        goto out;
      }
    }
    if (!kl_imprint_eq(&v, &want)) {
      char a[2 * KL_IMPRINT_MAX + 1], b[2 * KL_IMPRINT_MAX + 1];
      r = kl_err_set(e, KL_EFORMAT, "calendar audit: node (height %u, index %llu) holds %s, its children give %s", ht,
                     (unsigned long long)i, kl_imprint_hex(&v, a), kl_imprint_hex(&want, b));
      goto out;
    }
  }
  if (rc != MDB_NOTFOUND) {
    r = kl__cal_mdb_err(e, rc, "calendar audit");
    goto out;
  }
  uint64_t expect = end - m.genesis;
  if (rep->leaves != expect) {
    r = kl_err_set(e, KL_EFORMAT, "calendar audit: %llu leaves stored for %llu seconds from %llu to %llu",
                   (unsigned long long)rep->leaves, (unsigned long long)expect, (unsigned long long)m.genesis,
                   (unsigned long long)(end - 1));
    goto out;
  }
  if (rep->leaves != m.rounds + m.fillers) {
    r = kl_err_set(e, KL_EFORMAT, "calendar audit: metadata counts %llu rounds and %llu fillers for %llu leaves",
                   (unsigned long long)m.rounds, (unsigned long long)m.fillers, (unsigned long long)rep->leaves);
    goto out;
  }
  r = 0;
out:
  if (cur) mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  kl_hasher_close(&h);
  if (r || pf == NULL) return r;
  for (size_t p = 0; p < pf->n_pubs; p++) {
    const kl_pub_data_t *pd = &pf->pubs[p].data;
    kl_imprint_t root;
    if (m.empty || pd->time < m.genesis || pd->time > m.last) {
      rep->publications_outside++;
      continue;
    }
    if ((r = kl_cal_root(cal, pd->time, &root, e))) return r;
    if (!kl_imprint_eq(&root, &pd->hash))
      return kl_err_set(e, KL_EFORMAT, "calendar audit: the publication of %llu does not match the calendar root",
                        (unsigned long long)pd->time);
    rep->publications_checked++;
  }
  return 0;
}
