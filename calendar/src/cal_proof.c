/* Consistency proofs, the head and leaf ranges from the LMDB calendar (keyless/cal_proof.h):
 * the pure proof code asks for perfect nodes, answered here inside one read transaction. */
#include <string.h>

#include "cal_internal.h"
#include "keyless/cal_proof.h"

static int node_fn(void *arg, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e) {
  return kl__cal_node(arg, h, i, out, e);
}

static int in_range(const kl__cal_rd_t *rd, const char *what, uint64_t t, kl_err_t *e) {
  if (rd->m.empty) return kl_err_set(e, KL_ENOTFOUND, "the calendar is empty");
  if (t < rd->m.genesis)
    return kl_err_set(e, KL_ERANGE, "%s %llu is before the calendar's genesis %llu", what, (unsigned long long)t,
                      (unsigned long long)rd->m.genesis);
  if (t > rd->m.last)
    return kl_err_set(e, KL_ENOTFOUND, "%s %llu is after the calendar's last second %llu", what, (unsigned long long)t,
                      (unsigned long long)rd->m.last);
  return 0;
}

/* The forest of [0, n) into f. */
static int forest(kl__cal_rd_t *rd, uint64_t n, kl_calforest_t *f, kl_err_t *e) {
  kl__cal_tree_t tr[64];
  kl_imprint_t v[64];
  size_t m = n ? kl__cal_forest(n, tr) : 0;
  for (size_t j = 0; j < m; j++) {
    int r = kl__cal_node(rd, tr[j].h, tr[j].i, &v[j], e);
    if (r) return r;
  }
  return kl_calforest_set(f, n, v, m, e);
}

static int root_at(kl__cal_rd_t *rd, uint64_t P, kl_imprint_t *out, kl_err_t *e) {
  kl_calforest_t f;
  int r = forest(rd, P + 1, &f, e);
  return r ? r : kl_calforest_root(&f, &rd->h, out, e);
}

int kl_cal_consistency(kl_cal_t *cal, uint64_t from, uint64_t to, kl_calproof_t *out, kl_err_t *e) {
  kl__cal_rd_t rd;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if (from > to)
    r = kl_err_set(e, KL_EINVAL, "consistency: from %llu is after to %llu", (unsigned long long)from,
                   (unsigned long long)to);
  if (r == 0 && (r = in_range(&rd, "from", from, e)) == 0 && (r = in_range(&rd, "to", to, e)) == 0 &&
      (r = kl_calproof_build(from, to, node_fn, &rd, out, e)) == 0 && (r = root_at(&rd, from, &out->root_from, e)) == 0 &&
      (r = root_at(&rd, to, &out->root_to, e)) == 0)
    out->has_roots = true;
  kl__cal_rd_close(&rd);
  return r;
}

int kl_cal_head(kl_cal_t *cal, kl_calhead_t *out, kl_err_t *e) {
  kl__cal_rd_t rd;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if (rd.m.empty) r = kl_err_set(e, KL_ENOTFOUND, "the calendar is empty");
  if (r == 0) {
    out->genesis = rd.m.genesis;
    out->last = rd.m.last;
    r = root_at(&rd, rd.m.last, &out->root, e);
  }
  kl__cal_rd_close(&rd);
  return r;
}

int kl_cal_range(kl_cal_t *cal, uint64_t from, uint64_t to, kl_calrange_t *out, kl_err_t *e) {
  kl__cal_rd_t rd;
  int r = kl__cal_rd_open(cal, &rd, e);
  if (r) return r;
  if (from > to || to - from >= KL_CALRANGE_MAX)
    r = kl_err_set(e, KL_EINVAL, "range %llu..%llu: from must be <= to, at most %d seconds", (unsigned long long)from,
                   (unsigned long long)to, KL_CALRANGE_MAX);
  if (r == 0 && (r = in_range(&rd, "from", from, e)) == 0 && (r = in_range(&rd, "to", to, e)) == 0 &&
      (r = forest(&rd, from, &out->before, e)) == 0) {
    out->from = from;
    out->to = to;
    for (uint64_t t = from; t <= to && r == 0; t++) r = kl__cal_leaf(&rd, t, &out->leaf[t - from], e);
  }
  kl__cal_rd_close(&rd);
  return r;
}
