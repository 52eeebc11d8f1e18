/* Calendar consistency proofs (RFC 9162 §2.1.4 on the KSI calendar tree) and the forest.
 *
 * Build: SUBPROOF(m, D[lo, lo + n), b) with m = from + 1 and n = to + 1 leaves:
 *   m == n: {} if b, else {MTH(D)};
 *   m <= k: SUBPROOF(m, D[lo, lo + k), b) : MTH(D[lo + k, lo + n));
 *   m > k:  SUBPROOF(m - k, D[lo + k, lo + n), false) : MTH(D[lo, lo + k)),
 * k the largest power of two < n. Every range reached is aligned, so MTH of a power-of-two range
 * is one stored perfect node, and MTH of another range is the fold of its perfect subtrees.
 * Verify: RFC 9162's iterative algorithm with HASH(0x01 || l || r) replaced by the KSI calendar
 * parent rule. */
#include "keyless/calproof.h"

#include <string.h>

#include "keyless/tlv.h"

int kl_calproof_parent(kl_hasher_t *h, const kl_imprint_t *l, const kl_imprint_t *r, kl_imprint_t *out,
                       kl_err_t *e) {
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

static uint64_t split(uint64_t n) { /* largest power of two < n, n >= 2 */
  uint64_t k = 1;
  while (k < n - k) k <<= 1;
  return k;
}

static unsigned log2u(uint64_t v) {
  unsigned r = 0;
  while (v >>= 1) r++;
  return r;
}

static bool pow2(uint64_t v) { return v && (v & (v - 1)) == 0; }

size_t kl_calproof_len(uint64_t from, uint64_t to) {
  if (from >= to || to >= (UINT64_C(1) << 63)) return 0;
  uint64_t m = from + 1, n = to + 1;
  size_t len = 0;
  bool b = true;
  while (m != n) {
    uint64_t k = split(n);
    if (m <= k) {
      n = k;
    } else {
      m -= k;
      n -= k;
      b = false;
    }
    len++;
  }
  return len + (b ? 0 : 1);
}

typedef struct builder {
  kl_calproof_node_fn node;
  void *arg;
  kl_hasher_t h;
} builder_t;

/* MTH of the aligned range [lo, lo + n): its perfect subtrees folded from the right. */
static int mth(builder_t *b, uint64_t lo, uint64_t n, kl_imprint_t *out, kl_err_t *e) {
  kl_imprint_t t[64];
  size_t m = 0;
  int r;
  while (n > 0) {
    uint64_t k = pow2(n) ? n : split(n);
    if (lo & (k - 1)) return kl_err_set(e, KL_EINVAL, "calendar proof: range at %llu is not aligned", (unsigned long long)lo);
    unsigned h = log2u(k);
    if ((r = b->node(b->arg, h, lo >> h, &t[m++], e))) return r;
    lo += k;
    n -= k;
  }
  for (size_t j = m - 1; j-- > 0;)
    if ((r = kl_calproof_parent(&b->h, &t[j], &t[j + 1], &t[j], e))) return r;
  *out = t[0];
  return 0;
}

int kl_calproof_build(uint64_t from, uint64_t to, kl_calproof_node_fn node, void *arg, kl_calproof_t *out,
                      kl_err_t *e) {
  memset(out, 0, sizeof *out);
  if (from > to || to >= (UINT64_C(1) << 63))
    return kl_err_set(e, KL_EINVAL, "consistency from %llu to %llu: need from <= to < 2^63", (unsigned long long)from,
                      (unsigned long long)to);
  out->from = from;
  out->to = to;
  if (from == to) return 0;
  builder_t b = {node, arg, {0}};
  int r = kl_hasher_init(&b.h, e);
  if (r) return r;
  /* Descend, remembering the sibling ranges; the nodes come out in reverse order of descent. */
  uint64_t m = from + 1, n = to + 1, lo = 0;
  uint64_t sib_lo[KL_CALPROOF_MAX], sib_n[KL_CALPROOF_MAX];
  size_t d = 0;
  bool first = true;
  while (m != n) {
    uint64_t k = split(n);
    if (m <= k) {
      sib_lo[d] = lo + k;
      sib_n[d++] = n - k;
      n = k;
    } else {
      sib_lo[d] = lo;
      sib_n[d++] = k;
      lo += k;
      m -= k;
      n -= k;
      first = false;
    }
  }
  if (!first) r = mth(&b, lo, n, &out->path[out->n++], e);
  for (size_t j = d; r == 0 && j-- > 0;) r = mth(&b, sib_lo[j], sib_n[j], &out->path[out->n++], e);
  kl_hasher_close(&b.h);
  if (r) return kl_err_wrap(e, "consistency from %llu to %llu", (unsigned long long)from, (unsigned long long)to);
  return 0;
}

static int mismatch(const kl_calproof_t *p, const char *which, uint64_t t, const kl_imprint_t *got,
                    const kl_imprint_t *want, kl_err_t *e) {
  char a[2 * KL_IMPRINT_MAX + 1], b[2 * KL_IMPRINT_MAX + 1];
  return kl_err_set(e, KL_EFORMAT, "consistency %llu..%llu: the proof gives %s root(%llu) = %s, expected %s",
                    (unsigned long long)p->from, (unsigned long long)p->to, which, (unsigned long long)t,
                    kl_imprint_hex(got, a), kl_imprint_hex(want, b));
}

int kl_calproof_verify(const kl_calproof_t *p, const kl_imprint_t *root_from, const kl_imprint_t *root_to,
                       kl_err_t *e) {
  size_t want = kl_calproof_len(p->from, p->to);
  if (p->from > p->to || p->to >= (UINT64_C(1) << 63))
    return kl_err_set(e, KL_EFORMAT, "consistency %llu..%llu: from is after to", (unsigned long long)p->from,
                      (unsigned long long)p->to);
  if (p->n != want || p->n > KL_CALPROOF_MAX)
    return kl_err_set(e, KL_EFORMAT, "consistency %llu..%llu: the proof has %zu nodes, this span needs %zu",
                      (unsigned long long)p->from, (unsigned long long)p->to, p->n, want);
  if (p->from == p->to) {
    if (!kl_imprint_eq(root_from, root_to)) return mismatch(p, "the later", p->to, root_from, root_to, e);
    return 0;
  }
  kl_imprint_t path[KL_CALPROOF_MAX + 1];
  size_t n = 0;
  uint64_t fn = p->from, sn = p->to; /* first - 1, second - 1 */
  if (pow2(p->from + 1)) path[n++] = *root_from;
  memcpy(&path[n], p->path, p->n * sizeof p->path[0]);
  n += p->n;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  kl_hasher_t h;
  int r = kl_hasher_init(&h, e);
  if (r) return r;
  kl_imprint_t fr = path[0], sr = path[0];
  for (size_t j = 1; j < n && r == 0; j++) {
    if (sn == 0) {
      r = kl_err_set(e, KL_EFORMAT, "consistency %llu..%llu: the proof is longer than the tree",
                     (unsigned long long)p->from, (unsigned long long)p->to);
      break;
    }
    if ((fn & 1) || fn == sn) {
      if ((r = kl_calproof_parent(&h, &path[j], &fr, &fr, e)) || (r = kl_calproof_parent(&h, &path[j], &sr, &sr, e)))
        break;
      if (!(fn & 1))
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
    } else if ((r = kl_calproof_parent(&h, &sr, &path[j], &sr, e))) {
      break;
    }
    fn >>= 1;
    sn >>= 1;
  }
  kl_hasher_close(&h);
  if (r) return r;
  if (sn != 0)
    return kl_err_set(e, KL_EFORMAT, "consistency %llu..%llu: the proof ends below the root",
                      (unsigned long long)p->from, (unsigned long long)p->to);
  if (!kl_imprint_eq(&fr, root_from)) return mismatch(p, "the earlier", p->from, &fr, root_from, e);
  if (!kl_imprint_eq(&sr, root_to)) return mismatch(p, "the later", p->to, &sr, root_to, e);
  return 0;
}

/* ---- TLV ---- */

static void put_imprint(kl_buf_t *b, uint16_t type, const kl_imprint_t *imp) {
  uint8_t raw[KL_IMPRINT_MAX];
  kl_tlv_put_bytes(b, type, 0, raw, kl_imprint_to_bytes(imp, raw));
}

void kl_calproof_encode(kl_buf_t *b, const kl_calproof_t *p) {
  size_t mark = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, p->from);
  kl_tlv_put_uint(b, 0x02, 0, p->to);
  if (p->has_roots) {
    put_imprint(b, 0x03, &p->root_from);
    put_imprint(b, 0x04, &p->root_to);
  }
  for (size_t j = 0; j < p->n; j++) put_imprint(b, 0x05, &p->path[j]);
  kl_tlv_close(b, mark, KL_TLV_CAL_CONSISTENCY, 0);
}

static int get_imprint(const kl_tlv_t *t, const char *what, kl_imprint_t *out, kl_err_t *e) {
  if (kl_imprint_from_bytes(out, t->value, t->len, e))
    return kl_err_wrap(e, "%s at offset %zu", what, t->offset);
  return 0;
}

int kl_calproof_decode(const uint8_t *p, size_t len, kl_calproof_t *out, kl_err_t *e) {
  static const char W[] = "consistency proof";
  kl_tlv_t top, t;
  kl_tlv_iter_t it;
  int r, got;
  memset(out, 0, sizeof *out);
  if (kl_tlv_parse_one(p, len, &top, e)) return kl_err_wrap(e, W);
  if (top.type != KL_TLV_CAL_CONSISTENCY)
    return kl_err_set(e, KL_EFORMAT, "%s: element 0x%X, expected 0x%X", W, top.type, KL_TLV_CAL_CONSISTENCY);
  kl_tlv_iter_children(&it, p, &top);
  unsigned next = 0x01; /* the lowest type allowed next */
  bool seen_from = false, seen_to = false, seen_r1 = false;
  while ((got = kl_tlv_next(&it, &t, e)) == 1) {
    if (t.type < next || t.type > 0x05 || t.type == 0) {
      if (t.type >= 0x01 && t.type <= 0x05) return kl_tlv_err_dup(&t, W, e);
      return kl_tlv_err_unknown(&t, W, e);
    }
    switch (t.type) {
    case 0x01:
      if ((r = kl_tlv_get_uint(&t, &out->from, e))) return kl_err_wrap(e, W);
      seen_from = true;
      next = 0x02;
      break;
    case 0x02:
      if ((r = kl_tlv_get_uint(&t, &out->to, e))) return kl_err_wrap(e, W);
      seen_to = true;
      next = 0x03;
      break;
    case 0x03:
      if ((r = get_imprint(&t, "consistency proof: earlier root", &out->root_from, e))) return r;
      seen_r1 = true;
      next = 0x04;
      break;
    case 0x04:
      if (!seen_r1) return kl_err_set(e, KL_EFORMAT, "%s: later root without the earlier one", W);
      if ((r = get_imprint(&t, "consistency proof: later root", &out->root_to, e))) return r;
      out->has_roots = true;
      next = 0x05;
      break;
    default: /* 0x05 */
      if (seen_r1 && !out->has_roots) return kl_err_set(e, KL_EFORMAT, "%s: earlier root without the later one", W);
      if (out->n >= KL_CALPROOF_MAX) return kl_err_set(e, KL_ETOOBIG, "%s: more than %d nodes", W, KL_CALPROOF_MAX);
      if ((r = get_imprint(&t, "consistency proof: node", &out->path[out->n], e))) return r;
      out->n++;
      next = 0x05;
      break;
    }
  }
  if (got < 0) return kl_err_wrap(e, W);
  if (!seen_from || !seen_to) return kl_err_set(e, KL_EFORMAT, "%s: %s missing", W, seen_from ? "to (0x02)" : "from (0x01)");
  if (seen_r1 && !out->has_roots) return kl_err_set(e, KL_EFORMAT, "%s: earlier root without the later one", W);
  if (out->from > out->to || out->to >= (UINT64_C(1) << 63))
    return kl_err_set(e, KL_EFORMAT, "%s: from %llu, to %llu: need from <= to < 2^63", W,
                      (unsigned long long)out->from, (unsigned long long)out->to);
  size_t want = kl_calproof_len(out->from, out->to);
  if (out->n != want)
    return kl_err_set(e, KL_EFORMAT, "%s %llu..%llu: %zu nodes, this span needs %zu", W, (unsigned long long)out->from,
                      (unsigned long long)out->to, out->n, want);
  /* Only the canonical encoding: no flags, short headers where they fit (one proof, one form). */
  kl_buf_t b = KL_BUF_INIT;
  kl_calproof_encode(&b, out);
  bool same = kl_buf_check(&b, NULL) == 0 && b.len == len && memcmp(b.p, p, len) == 0;
  kl_buf_free(&b);
  if (!same) return kl_err_set(e, KL_EFORMAT, "%s: not in the canonical encoding (flags or long headers)", W);
  return 0;
}

/* ---- forest ---- */

static unsigned popcount64(uint64_t v) {
  unsigned c = 0;
  for (; v; v &= v - 1) c++;
  return c;
}

int kl_calforest_set(kl_calforest_t *f, uint64_t n, const kl_imprint_t *trees, size_t m, kl_err_t *e) {
  if (m != popcount64(n))
    return kl_err_set(e, KL_EFORMAT, "forest of %llu seconds: %zu trees, it has %u", (unsigned long long)n, m,
                      popcount64(n));
  f->n = n;
  f->m = m;
  if (m) memcpy(f->tree, trees, m * sizeof *trees);
  return 0;
}

int kl_calforest_push(kl_calforest_t *f, kl_hasher_t *h, const kl_imprint_t *leaf, kl_err_t *e) {
  if (f->n >= (UINT64_C(1) << 63) - 1) return kl_err_set(e, KL_ERANGE, "forest: too many seconds");
  f->tree[f->m++] = *leaf;
  /* Merge while the two rightmost trees are the same size: as many times as n has trailing 1s. */
  for (uint64_t c = f->n; c & 1; c >>= 1) {
    int r = kl_calproof_parent(h, &f->tree[f->m - 2], &f->tree[f->m - 1], &f->tree[f->m - 2], e);
    if (r) return r;
    f->m--;
  }
  f->n++;
  return 0;
}

int kl_calforest_root(const kl_calforest_t *f, kl_hasher_t *h, kl_imprint_t *out, kl_err_t *e) {
  if (f->m == 0) return kl_err_set(e, KL_ESTATE, "forest: no seconds");
  kl_imprint_t acc = f->tree[f->m - 1];
  for (size_t j = f->m - 1; j-- > 0;) {
    int r = kl_calproof_parent(h, &f->tree[j], &acc, &acc, e);
    if (r) return r;
  }
  *out = acc;
  return 0;
}
