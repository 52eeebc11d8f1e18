/* Calendar consistency proofs (keyless/calproof.h, keyless/cal_proof.h): every pair of seconds
 * on a small calendar and random pairs on a calendar of 10^5 seconds after a realistic genesis
 * (10^7 with KL_CALPROOF_SECONDS=10000000),
 * checked against roots recomputed independently from the whole leaf range (a forest stack
 * written here, not the library's); tampered proofs and roots refused with the mismatch named;
 * the strict TLV decoders; the LMDB calendar's proofs, head and ranges against kl_cal_root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/cal_proof.h"
#include "keyless/calendar.h"
#include "keyless/tlv.h"
#include "testutil.h"

/* ---- an in-memory calendar: genesis G, leaves [G, G + N), nodes per height ---- */
typedef struct model {
  uint64_t G, N;
  unsigned low; /* nodes below this height are recomputed from the leaves when asked */
  kl_imprint_t *lvl[64]; /* lvl[h][i - (G >> h)]: complete nodes touching [G, G + N) */
  uint64_t cnt[64];
} model_t;

static void leaf_value(uint64_t t, kl_imprint_t *x) {
  if (t % 7 == 3) {
    kl_cal_filler_leaf(t, x);
    return;
  }
  assert_int_equal(kl_hash(t % 5 == 4 ? KL_HASH_SHA512 : KL_HASH_SHA256, &t, sizeof t, x, NULL), 0);
}

static void parent(const kl_imprint_t *l, const kl_imprint_t *r, kl_imprint_t *out) {
  kl_hasher_t h;
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  assert_int_equal(kl_cal_parent(&h, l, r, out, NULL), 0); /* the calendar's own rule */
  kl_hasher_close(&h);
}

static int model_node(void *arg, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e) {
  const model_t *md = arg;
  if (((i + 1) << h) <= md->G) {
    kl_cal_genesis_node(h, i, out);
    return 0;
  }
  if (h < md->low) {
    if (h == 0) {
      leaf_value(i, out);
      return 0;
    }
    kl_imprint_t l, r;
    int rc = model_node(arg, h - 1, 2 * i, &l, e);
    if (rc == 0) rc = model_node(arg, h - 1, 2 * i + 1, &r, e);
    if (rc == 0) parent(&l, &r, out);
    return rc;
  }
  uint64_t base = md->G >> h;
  if (i < base || i - base >= md->cnt[h]) return kl_err_set(e, KL_ENOTFOUND, "node (%u, %llu) not in the model", h, (unsigned long long)i);
  *out = md->lvl[h][i - base];
  return 0;
}

/* Nodes of height >= low kept in memory (low = 8 above a million seconds: 10^7 seconds would
 * need gigabytes otherwise). */
static void model_build(model_t *md, uint64_t G, uint64_t N) {
  memset(md, 0, sizeof *md);
  md->G = G;
  md->N = N;
  md->low = N > 1000000 ? 8 : 0;
  if (md->low == 0) {
    md->lvl[0] = calloc(N, sizeof(kl_imprint_t));
    md->cnt[0] = N;
    for (uint64_t t = G; t < G + N; t++) leaf_value(t, &md->lvl[0][t - G]);
  }
  for (unsigned h = md->low ? md->low : 1; h < 63; h++) {
    uint64_t base = G >> h, end = (G + N) >> h; /* complete nodes: i < end */
    if (end <= base) break;
    md->cnt[h] = end - base;
    md->lvl[h] = calloc(md->cnt[h], sizeof(kl_imprint_t));
    for (uint64_t i = base; i < end; i++) {
      kl_imprint_t l, r;
      if (h == md->low) { /* from the leaves */
        md->low++;
        assert_int_equal(model_node(md, h, i, &md->lvl[h][i - base], NULL), 0);
        md->low--;
        continue;
      }
      assert_int_equal(model_node(md, h - 1, 2 * i, &l, NULL), 0);
      assert_int_equal(model_node(md, h - 1, 2 * i + 1, &r, NULL), 0);
      parent(&l, &r, &md->lvl[h][i - base]);
    }
  }
}

static void model_free(model_t *md) {
  for (unsigned h = 0; h < 64; h++) free(md->lvl[h]);
}

/* Independent roots: stream the perfect trees covering [0, G) and every leaf into a stack of
 * (size, value); root(P) folds the stack from the right right after leaf P. wanted sorted. */
static void ref_roots(const model_t *md, const uint64_t *wanted, size_t nw, kl_imprint_t *roots) {
  kl_imprint_t val[130];
  uint64_t size[130];
  size_t sp = 0, w = 0;
  for (int b = 63; b >= 0; b--)
    if ((md->G >> b) & 1) {
      uint64_t lo = (md->G >> (b + 1)) << (b + 1);
      kl_cal_genesis_node((unsigned)b, lo >> b, &val[sp]);
      size[sp++] = (uint64_t)1 << b;
    }
  for (uint64_t t = md->G; t < md->G + md->N && w < nw; t++) {
    leaf_value(t, &val[sp]);
    size[sp++] = 1;
    while (sp >= 2 && size[sp - 1] == size[sp - 2]) {
      parent(&val[sp - 2], &val[sp - 1], &val[sp - 2]);
      size[sp - 2] *= 2;
      sp--;
    }
    while (w < nw && wanted[w] == t) {
      kl_imprint_t acc = val[sp - 1];
      for (size_t j = sp - 1; j-- > 0;) parent(&val[j], &acc, &acc);
      roots[w++] = acc;
    }
  }
  assert_int_equal(w, nw);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* A proof that verifies, then each of its nodes flipped, one dropped, one added, the roots
 * swapped or changed: all refused. */
static void check_pair(const model_t *md, uint64_t P1, uint64_t P2, const kl_imprint_t *r1, const kl_imprint_t *r2,
                       bool tamper) {
  kl_calproof_t p, q;
  kl_err_t e = {0};
  if (kl_calproof_build(P1, P2, model_node, (void *)md, &p, &e)) fail_msg("build %llu..%llu: %s", (unsigned long long)P1, (unsigned long long)P2, e.msg);
  assert_int_equal(p.n, kl_calproof_len(P1, P2));
  assert_true(p.n <= 2 * 64);
  if (kl_calproof_verify(&p, r1, r2, &e)) fail_msg("verify %llu..%llu: %s", (unsigned long long)P1, (unsigned long long)P2, e.msg);
  if (!tamper) return;
  kl_imprint_t bad = *r1;
  bad.digest[0] ^= 1;
  assert_int_equal(kl_calproof_verify(&p, &bad, r2, &e), KL_EFORMAT);
  if (P1 != P2) assert_non_null(strstr(e.msg, "root("));
  bad = *r2;
  bad.digest[bad.len - 1] ^= 0x80;
  assert_int_equal(kl_calproof_verify(&p, r1, &bad, &e), KL_EFORMAT);
  if (P1 == P2) return;
  assert_int_not_equal(kl_calproof_verify(&p, r2, r1, NULL), 0);
  for (size_t j = 0; j < p.n; j++) {
    q = p;
    q.path[j].digest[j % q.path[j].len] ^= 0x10;
    assert_int_equal(kl_calproof_verify(&q, r1, r2, NULL), KL_EFORMAT);
  }
  q = p;
  q.n--;
  assert_int_equal(kl_calproof_verify(&q, r1, r2, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "nodes"));
  q = p;
  q.path[q.n++] = *r1;
  assert_int_equal(kl_calproof_verify(&q, r1, r2, NULL), KL_EFORMAT);
}

static void test_every_pair_small(void **state) {
  (void)state;
  model_t md;
  model_build(&md, 0, 150); /* leaves from second 0: no genesis nodes */
  uint64_t all[150];
  kl_imprint_t roots[150];
  for (uint64_t t = 0; t < 150; t++) all[t] = t;
  ref_roots(&md, all, 150, roots);
  for (uint64_t a = 0; a < 150; a++)
    for (uint64_t b = a; b < 150; b++) check_pair(&md, a, b, &roots[a], &roots[b], b < 40);
  model_free(&md);
}

static void test_random_pairs_large(void **state) {
  (void)state;
  /* 10^5 seconds here; KL_CALPROOF_SECONDS=10000000 for the long run (about a minute). */
  enum { PAIRS = 300 };
  const char *env = getenv("KL_CALPROOF_SECONDS");
  uint64_t N = env ? strtoull(env, NULL, 10) : 100000;
  if (N < 1000 || N > 100000000) N = 100000;
  const uint64_t G = 1700000000 + 12345;
  model_t md;
  model_build(&md, G, N);
  static uint64_t want[2 * PAIRS + 2], p1[PAIRS], p2[PAIRS];
  static kl_imprint_t roots[2 * PAIRS + 2];
  srand(14);
  for (size_t k = 0; k < PAIRS; k++) {
    uint64_t a = G + (uint64_t)rand() % N, b = G + (uint64_t)rand() % N;
    if (k % 10 == 0) b = a; /* equal seconds: the empty proof */
    p1[k] = a < b ? a : b;
    p2[k] = a < b ? b : a;
    want[2 * k] = p1[k];
    want[2 * k + 1] = p2[k];
  }
  want[2 * PAIRS] = G; /* the extremes */
  want[2 * PAIRS + 1] = G + N - 1;
  qsort(want, 2 * PAIRS + 2, sizeof want[0], cmp_u64);
  ref_roots(&md, want, 2 * PAIRS + 2, roots);
  for (size_t k = 0; k < PAIRS + 1; k++) {
    uint64_t a = k < PAIRS ? p1[k] : G, b = k < PAIRS ? p2[k] : G + N - 1;
    const uint64_t *x = bsearch(&a, want, 2 * PAIRS + 2, sizeof want[0], cmp_u64);
    const uint64_t *y = bsearch(&b, want, 2 * PAIRS + 2, sizeof want[0], cmp_u64);
    check_pair(&md, a, b, &roots[x - want], &roots[y - want], k % 4 == 0);
  }
  /* The library's forest gives the same roots as the stack above. */
  kl_calforest_t f;
  kl_imprint_t gen[64], r;
  size_t m = 0;
  for (int b = 63; b >= 0; b--)
    if ((G >> b) & 1) kl_cal_genesis_node((unsigned)b, ((G >> (b + 1)) << (b + 1)) >> b, &gen[m++]);
  kl_hasher_t h;
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  assert_int_equal(kl_calforest_set(&f, G, gen, m, NULL), 0);
  size_t w = 0;
  for (uint64_t t = G; t < G + N; t++) {
    kl_imprint_t leaf;
    leaf_value(t, &leaf);
    assert_int_equal(kl_calforest_push(&f, &h, &leaf, NULL), 0);
    if (t == want[w]) {
      assert_int_equal(kl_calforest_root(&f, &h, &r, NULL), 0);
      assert_true(kl_imprint_eq(&r, &roots[w]));
      while (w < 2 * PAIRS + 1 && want[w] == t) w++;
    }
  }
  kl_hasher_close(&h);
  model_free(&md);
}

static void test_codec(void **state) {
  (void)state;
  model_t md;
  model_build(&md, 1000, 3000);
  kl_calproof_t p, q;
  kl_err_t e = {0};
  assert_int_equal(kl_calproof_build(1234, 3456, model_node, &md, &p, &e), 0);
  p.has_roots = true;
  kl_cal_filler_leaf(1, &p.root_from);
  assert_int_equal(kl_hash(KL_HASH_SHA384, "x", 1, &p.root_to, NULL), 0);
  kl_buf_t b = KL_BUF_INIT;
  kl_calproof_encode(&b, &p);
  assert_int_equal(kl_buf_check(&b, NULL), 0);
  assert_int_equal(kl_calproof_decode(b.p, b.len, &q, &e), 0);
  assert_true(q.from == 1234 && q.to == 3456 && q.n == p.n && q.has_roots);
  assert_true(kl_imprint_eq(&q.root_to, &p.root_to) && kl_imprint_eq(&q.path[q.n - 1], &p.path[p.n - 1]));
  for (size_t cut = 0; cut < b.len; cut++) assert_int_not_equal(kl_calproof_decode(b.p, cut, &q, NULL), 0);
  /* trailing byte */
  kl_buf_t c = KL_BUF_INIT;
  kl_buf_put(&c, b.p, b.len);
  kl_buf_put_u8(&c, 0);
  assert_int_equal(kl_calproof_decode(c.p, c.len, &q, &e), KL_EFORMAT);
  /* one node fewer than the span needs; roots not in pairs; wrong order; unknown child */
  kl_calproof_t s = p;
  s.n--;
  kl_buf_reset(&c);
  kl_calproof_encode(&c, &s);
  assert_int_equal(kl_calproof_decode(c.p, c.len, &q, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "needs"));
  static const uint8_t only_r1[] = {0x8C, 0x01, 0x00, 0x29, 0x01, 0x01, 0x05, 0x02, 0x01, 0x05, 0x03, 0x21, 0x01};
  uint8_t buf[64];
  memset(buf, 0, sizeof buf);
  memcpy(buf, only_r1, sizeof only_r1);
  assert_int_equal(kl_calproof_decode(buf, 4 + 0x29, &q, &e), KL_EFORMAT); /* 0x03 without 0x04 */
  static const uint8_t swapped[] = {0x8C, 0x01, 0x00, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0x05};
  assert_int_equal(kl_calproof_decode(swapped, sizeof swapped, &q, &e), KL_EFORMAT);
  static const uint8_t unknown[] = {0x8C, 0x01, 0x00, 0x09, 0x01, 0x01, 0x05, 0x02, 0x01, 0x05, 0x07, 0x01, 0x00};
  assert_int_not_equal(kl_calproof_decode(unknown, sizeof unknown, &q, &e), 0);
  assert_non_null(strstr(e.msg, "consistency proof"));
  static const uint8_t equal_ok[] = {0x8C, 0x01, 0x00, 0x06, 0x01, 0x01, 0x05, 0x02, 0x01, 0x05};
  assert_int_equal(kl_calproof_decode(equal_ok, sizeof equal_ok, &q, &e), 0);
  static const uint8_t backwards[] = {0x8C, 0x01, 0x00, 0x06, 0x01, 0x01, 0x06, 0x02, 0x01, 0x05};
  assert_int_equal(kl_calproof_decode(backwards, sizeof backwards, &q, &e), KL_EFORMAT);
  static const uint8_t nonminimal[] = {0x8C, 0x01, 0x00, 0x07, 0x01, 0x02, 0x00, 0x05, 0x02, 0x01, 0x05};
  assert_int_not_equal(kl_calproof_decode(nonminimal, sizeof nonminimal, &q, &e), 0);
  kl_buf_free(&b);
  kl_buf_free(&c);
  model_free(&md);
}

/* ---- the LMDB calendar ---- */

static void test_lmdb_calendar(void **state) {
  (void)state;
  char dir[256];
  tu_mkdtemp("calproof", dir, sizeof dir);
  const uint64_t G = 1700000000 - 37, N = 3000;
  kl_cal_t *cal;
  kl_err_t e = {0};
  kl_cal_opts_t fast = {.no_sync = true}; /* thousands of appends without an fsync each */
  assert_int_equal(kl_cal_create(dir, G, &fast, &e), 0);
  assert_int_equal(kl_cal_open(dir, &fast, &cal, &e), 0);
  kl_imprint_t x;
  for (uint64_t t = G; t < G + N; t++) {
    if (t % 11 == 5 && t != G + N - 1) continue; /* a filler leaf */
    leaf_value(t, &x);
    kl_cal_entry_t en = {t, &x};
    assert_int_equal(kl_cal_append(cal, &en, 1, &e), 0);
  }
  kl_calproof_t p;
  kl_imprint_t r1, r2;
  srand(1414);
  for (int k = 0; k < 300; k++) {
    uint64_t a = G + (uint64_t)rand() % N, b = G + (uint64_t)rand() % N;
    if (a > b) {
      uint64_t t = a;
      a = b;
      b = t;
    }
    if (kl_cal_consistency(cal, a, b, &p, &e)) fail_msg("%s", e.msg);
    assert_int_equal(kl_cal_root(cal, a, &r1, &e), 0);
    assert_int_equal(kl_cal_root(cal, b, &r2, &e), 0);
    assert_true(p.has_roots && kl_imprint_eq(&p.root_from, &r1) && kl_imprint_eq(&p.root_to, &r2));
    if (kl_calproof_verify(&p, &r1, &r2, &e)) fail_msg("%s", e.msg);
  }
  assert_int_equal(kl_cal_consistency(cal, G - 1, G + 5, &p, &e), KL_ERANGE);
  assert_int_equal(kl_cal_consistency(cal, G, G + N, &p, &e), KL_ENOTFOUND);
  assert_int_equal(kl_cal_consistency(cal, G + 5, G + 4, &p, &e), KL_EINVAL);
  kl_calhead_t hd;
  assert_int_equal(kl_cal_head(cal, &hd, &e), 0);
  assert_int_equal(hd.last, G + N - 1);
  assert_int_equal(hd.genesis, G);
  assert_int_equal(kl_cal_root(cal, G + N - 1, &r2, &e), 0);
  assert_true(kl_imprint_eq(&hd.root, &r2));
  /* A range recomputes the roots of its seconds, and survives its codec. */
  kl_calrange_t *rg = malloc(sizeof *rg), *rd = malloc(sizeof *rd);
  if (kl_cal_range(cal, G + 700, G + 700 + KL_CALRANGE_MAX - 1, rg, &e)) fail_msg("%s", e.msg);
  assert_int_equal(kl_cal_range(cal, G + 700, G + 700 + KL_CALRANGE_MAX, rd, &e), KL_EINVAL);
  kl_buf_t b = KL_BUF_INIT;
  kl_calrange_encode(&b, rg);
  assert_int_equal(kl_buf_check(&b, NULL), 0);
  assert_int_equal(kl_calrange_decode(b.p, b.len, rd, &e), 0);
  kl_hasher_t h;
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  for (uint64_t t = rd->from; t <= rd->to; t++) {
    assert_int_equal(kl_calforest_push(&rd->before, &h, &rd->leaf[t - rd->from], NULL), 0);
    assert_int_equal(kl_calforest_root(&rd->before, &h, &r1, NULL), 0);
    if (kl_cal_root(cal, t, &r2, &e)) fail_msg("root %llu (range %llu..%llu): %s", (unsigned long long)t, (unsigned long long)rd->from, (unsigned long long)rd->to, e.msg);
    assert_true(kl_imprint_eq(&r1, &r2));
  }
  kl_hasher_close(&h);
  assert_int_equal(kl_calrange_decode(b.p, b.len - 1, rd, NULL), KL_EFORMAT);
  kl_buf_reset(&b);
  kl_calhead_encode(&b, &hd);
  kl_calhead_t hd2;
  assert_int_equal(kl_calhead_decode(b.p, b.len, &hd2, &e), 0);
  assert_true(hd2.last == hd.last && kl_imprint_eq(&hd2.root, &hd.root));
  assert_int_not_equal(kl_calhead_decode(b.p, b.len - 1, &hd2, NULL), 0);
  kl_buf_free(&b);
  free(rg);
  free(rd);
  kl_cal_close(cal);
  assert_int_equal(tu_rmrf(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_pair_small),
      cmocka_unit_test(test_random_pairs_large),
      cmocka_unit_test(test_codec),
      cmocka_unit_test(test_lmdb_calendar),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
