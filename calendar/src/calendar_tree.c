/* Calendar tree reads: deterministic values, root(P), chain(t, P), consistency.
 *
 * The tree over leaves [0, P] is the RFC 6962 split (KSI-FORMAT.md §5.2), which is the fold
 * from the right of the forest of perfect subtrees of P + 1 leaves. chain(t, P) walks down
 * that forest: past each tree left of t (a right link whose sibling is that tree), into t's
 * tree (a left link whose sibling is the fold of the trees right of it, unless it is the last),
 * then down t's perfect tree by t's bits. */
#include <string.h>

#include "cal_internal.h"
#include "keyless/sig.h"

static void tagged(const char *tag, const uint8_t *p, size_t n, kl_imprint_t *out) {
  kl_hasher_t h;
  /* SHA-256 is always available; failure here is an OpenSSL misconfiguration. */
  if (kl_hasher_init(&h, NULL) == 0 && kl_hasher_start(&h, KL_HASH_SHA256, NULL) == 0) {
    kl_hasher_update(&h, tag, strlen(tag));
    kl_hasher_update(&h, p, n);
    kl_hasher_finish(&h, out);
  } else {
    memset(out, 0, sizeof *out);
    out->alg = KL_HASH_SHA256;
    out->len = 32;
  }
  kl_hasher_close(&h);
}

void kl_cal_filler_leaf(uint64_t t, kl_imprint_t *out) {
  uint8_t b[8];
  for (int k = 7; k >= 0; k--, t >>= 8) b[k] = (uint8_t)t;
  tagged("keyless calendar empty second v1", b, 8, out);
}

void kl_cal_genesis_node(unsigned h, uint64_t i, kl_imprint_t *out) {
  uint8_t b[9];
  b[0] = (uint8_t)h;
  for (int k = 8; k >= 1; k--, i >>= 8) b[k] = (uint8_t)i;
  tagged("keyless calendar before genesis v1", b, 9, out);
}

int kl_cal_parent(kl_hasher_t *h, const kl_imprint_t *l, const kl_imprint_t *r, kl_imprint_t *out, kl_err_t *e) {
  static const uint8_t ff = 0xFF;
  int rc = kl_hasher_start(h, r->alg, e);
  if (rc) return rc;
  kl_hasher_update_imprint(h, l);
  kl_hasher_update_imprint(h, r);
  kl_hasher_update(h, &ff, 1);
  kl_imprint_t tmp;
  if (kl_hasher_finish(h, &tmp)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  *out = tmp;
  return 0;
}

int kl__cal_rd_open(kl_cal_t *cal, kl__cal_rd_t *rd, kl_err_t *e) {
  memset(rd, 0, sizeof *rd);
  rd->cal = cal;
  int rc = mdb_txn_begin(cal->env, NULL, MDB_RDONLY, &rd->txn);
  if (rc) return kl__cal_mdb_err(e, rc, "calendar");
  int r = kl__cal_meta_get(cal, rd->txn, &rd->m, e);
  if (r == 0) r = kl_hasher_init(&rd->h, e);
  if (r) mdb_txn_abort(rd->txn);
  return r;
}

void kl__cal_rd_close(kl__cal_rd_t *rd) {
  kl_hasher_close(&rd->h);
  mdb_txn_abort(rd->txn);
}

static int check_time(const kl__cal_rd_t *rd, const char *what, uint64_t t, kl_err_t *e) {
  if (rd->m.empty) return kl_err_set(e, KL_ENOTFOUND, "%s %llu: the calendar is empty", what, (unsigned long long)t);
  if (t < rd->m.genesis)
    return kl_err_set(e, KL_ERANGE, "%s %llu is before the calendar's genesis %llu", what, (unsigned long long)t,
                      (unsigned long long)rd->m.genesis);
  if (t > rd->m.last)
    return kl_err_set(e, KL_ENOTFOUND, "%s %llu is after the calendar's last second %llu (not yet committed)", what,
                      (unsigned long long)t, (unsigned long long)rd->m.last);
  return 0;
}

/* Forest of P + 1 leaves with values, and suffix folds: fold[j] = root of trees j..m-1. */
typedef struct forest {
  kl__cal_tree_t tree[64];
  kl_imprint_t val[64], fold[64];
  size_t m;
} forest_t;

static int forest_load(kl__cal_rd_t *rd, uint64_t P, forest_t *f, kl_err_t *e) {
  int r;
  f->m = kl__cal_forest(P + 1, f->tree);
  for (size_t j = 0; j < f->m; j++)
    if ((r = kl__cal_node(rd, f->tree[j].h, f->tree[j].i, &f->val[j], e))) return r;
  f->fold[f->m - 1] = f->val[f->m - 1];
  for (size_t j = f->m - 1; j-- > 0;)
    if ((r = kl_cal_parent(&rd->h, &f->val[j], &f->fold[j + 1], &f->fold[j], e))) return r;
  return 0;
}

int kl_cal_leaf(kl_cal_t *cal, uint64_t t, kl_imprint_t *out, kl_err_t *e) {
  kl__cal_rd_t rd;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if ((r = check_time(&rd, "second", t, e)) == 0) r = kl__cal_leaf(&rd, t, out, e);
  kl__cal_rd_close(&rd);
  return r;
}

int kl_cal_root(kl_cal_t *cal, uint64_t P, kl_imprint_t *out, kl_err_t *e) {
  kl__cal_rd_t rd;
  forest_t f;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if ((r = check_time(&rd, "publication time", P, e)) == 0 && (r = forest_load(&rd, P, &f, e)) == 0) *out = f.fold[0];
  kl__cal_rd_close(&rd);
  return r;
}

int kl_cal_chain(kl_cal_t *cal, uint64_t t, uint64_t P, kl_buf_t *out, kl_err_t *e) {
  kl__cal_rd_t rd;
  forest_t f;
  kl_cal_link_t rev[128], links[128];
  size_t n = 0;
  kl_cal_chain_t c;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if (t > P) {
    r = kl_err_set(e, KL_EINVAL, "chain from %llu to %llu: the aggregation time is after the publication time",
                   (unsigned long long)t, (unsigned long long)P);
    goto out;
  }
  if ((r = check_time(&rd, "aggregation time", t, e)) || (r = check_time(&rd, "publication time", P, e)) ||
      (r = forest_load(&rd, P, &f, e)))
    goto out;
  size_t j = 0;
  while (j < f.m && !(t >= f.tree[j].i << f.tree[j].h && t < (f.tree[j].i + 1) << f.tree[j].h)) {
    rev[n].dir = KL_LINK_RIGHT; /* t is right of tree j */
    rev[n++].sibling = f.val[j];
    j++;
  }
  if (j + 1 < f.m) {
    rev[n].dir = KL_LINK_LEFT;
    rev[n++].sibling = f.fold[j + 1];
  }
  for (unsigned h = f.tree[j].h; h > 0; h--) {
    uint64_t i = t >> (h - 1); /* index of t's ancestor at height h - 1 */
    bool right = i & 1;
    rev[n].dir = right ? KL_LINK_RIGHT : KL_LINK_LEFT;
    if ((r = kl__cal_node(&rd, h - 1, i ^ 1, &rev[n].sibling, e))) goto out;
    n++;
  }
  for (size_t k = 0; k < n; k++) links[k] = rev[n - 1 - k];
  memset(&c, 0, sizeof c);
  c.pub_time = P;
  c.aggr_time = t;
  c.has_aggr_time = true;
  c.links = links;
  c.n_links = n;
  if ((r = kl__cal_leaf(&rd, t, &c.input, e))) goto out;
  kl_cal_chain_encode(out, &c);
  r = kl_buf_check(out, e);
out:
  kl__cal_rd_close(&rd);
  return r;
}

int kl_cal_check_consistent(kl_cal_t *cal, uint64_t P1, uint64_t P2, kl_err_t *e) {
  kl__cal_rd_t rd;
  forest_t f1;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if (P1 > P2) {
    r = kl_err_set(e, KL_EINVAL, "consistency: %llu is after %llu", (unsigned long long)P1, (unsigned long long)P2);
    goto out;
  }
  if ((r = check_time(&rd, "time", P1, e)) || (r = check_time(&rd, "time", P2, e)) || (r = forest_load(&rd, P1, &f1, e)))
    goto out;
  /* Every tree of P1's forest must be rebuilt by hashing the stored nodes of P2's tree that
   * contains it: walk up from it, combining with stored siblings, up to P2's forest root. */
  for (size_t j = 0; j < f1.m; j++) {
    kl_imprint_t cur = f1.val[j], sib, want;
    unsigned h = f1.tree[j].h;
    uint64_t i = f1.tree[j].i;
    for (;;) {
      uint64_t end = (i + 2) << h; /* end of the parent's span */
      if (end - 1 > P2 || h >= 62) break; /* parent not complete by P2 */
      if ((r = kl__cal_node(&rd, h, i ^ 1, &sib, e))) goto out;
      if (i & 1) r = kl_cal_parent(&rd.h, &sib, &cur, &cur, e);
      else r = kl_cal_parent(&rd.h, &cur, &sib, &cur, e);
      if (r) goto out;
      h++;
      i >>= 1;
      if ((r = kl__cal_node(&rd, h, i, &want, e))) goto out;
      if (!kl_imprint_eq(&cur, &want)) {
        r = kl_err_set(e, KL_EFORMAT, "consistency %llu..%llu: node (height %u, index %llu) does not hash from its children",
                       (unsigned long long)P1, (unsigned long long)P2, h, (unsigned long long)i);
        goto out;
      }
    }
  }
out:
  kl__cal_rd_close(&rd);
  return r;
}
