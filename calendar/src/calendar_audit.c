/* Calendar audit: every stored node recomputed from its children, the genesis nodes from their
 * definition, every second present, nothing else stored, and published roots compared with a
 * publications file. */
#include <string.h>

#include "cal_internal.h"

typedef struct audit {
  kl_cal_t *cal;
  MDB_txn *txn;
  kl_hasher_t h;
  kl_cal_audit_t *rep;
} audit_t;

static int check(audit_t *a, unsigned ht, uint64_t i, const kl_imprint_t *want, kl_err_t *e) {
  kl_imprint_t v;
  int r = kl__cal_node_get(a->cal, a->txn, ht, i, &v, e);
  if (r) return kl_err_wrap(e, "calendar audit");
  a->rep->nodes_checked++;
  if (!kl_imprint_eq(&v, want)) {
    char x[2 * KL_IMPRINT_MAX + 1], y[2 * KL_IMPRINT_MAX + 1];
    return kl_err_set(e, KL_EFORMAT, "calendar audit: node (height %u, index %llu) holds %s, %s gives %s", ht,
                      (unsigned long long)i, kl_imprint_hex(&v, x), ht == 0 ? "the definition" : "its children",
                      kl_imprint_hex(want, y));
  }
  return 0;
}

int kl_cal_audit(kl_cal_t *cal, const kl_pubfile_t *pf, kl_cal_audit_t *rep, kl_err_t *e) {
  kl_err_t local = {0};
  kl__cal_meta_t m;
  kl__cal_tree_t forest[64];
  audit_t a = {cal, NULL, {0}, rep};
  int r, rc;
  if (e == NULL) e = &local;
  memset(rep, 0, sizeof *rep);
  if ((rc = mdb_txn_begin(cal->env, NULL, MDB_RDONLY, &a.txn))) return kl__cal_mdb_err(e, rc, "calendar audit");
  if ((r = kl__cal_meta_get(cal, a.txn, &m, e)) || (r = kl_hasher_init(&a.h, e))) {
    mdb_txn_abort(a.txn);
    return r;
  }
  uint64_t expected = 0;
  size_t nf = kl__cal_forest(m.genesis, forest);
  for (size_t k = 0; k < nf && r == 0; k++) {
    kl_imprint_t want;
    kl_cal_genesis_node(forest[k].h, forest[k].i, &want);
    r = check(&a, forest[k].h, forest[k].i, &want, e);
    expected++;
  }
  uint64_t end = m.empty ? m.genesis : m.last + 1;
  for (uint64_t t = m.genesis; t < end && r == 0; t++) {
    kl_imprint_t cur, left;
    if ((r = kl__cal_node_get(cal, a.txn, 0, t, &cur, e))) {
      kl_err_wrap(e, "calendar audit: second %llu", (unsigned long long)t);
      break;
    }
    rep->nodes_checked++;
    rep->leaves++;
    expected++;
    for (unsigned ht = 1; r == 0 && ht < 63 && ((t + 1) & (((uint64_t)1 << ht) - 1)) == 0; ht++) {
      uint64_t i = ((t + 1) >> ht) - 1;
      if ((r = kl__cal_node_get(cal, a.txn, ht - 1, 2 * i, &left, e)) || (r = kl_cal_parent(&a.h, &left, &cur, &cur, e))) {
        kl_err_wrap(e, "calendar audit: children of node (height %u, index %llu)", ht, (unsigned long long)i);
        break;
      }
      r = check(&a, ht, i, &cur, e);
      expected++;
    }
  }
  MDB_stat st;
  if (r == 0 && (rc = mdb_stat(a.txn, cal->nodes, &st))) r = kl__cal_mdb_err(e, rc, "calendar audit");
  if (r == 0 && st.ms_entries != expected)
    r = kl_err_set(e, KL_EFORMAT, "calendar audit: %zu nodes stored, %llu expected for seconds %llu..%llu", st.ms_entries,
                   (unsigned long long)expected, (unsigned long long)m.genesis, (unsigned long long)(end - 1));
  if (r == 0 && rep->leaves != m.rounds + m.fillers)
    r = kl_err_set(e, KL_EFORMAT, "calendar audit: metadata counts %llu rounds and %llu fillers for %llu seconds",
                   (unsigned long long)m.rounds, (unsigned long long)m.fillers, (unsigned long long)rep->leaves);
  mdb_txn_abort(a.txn);
  kl_hasher_close(&a.h);
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
