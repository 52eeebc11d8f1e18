/* Hash chain arithmetic against a naive reference: calendar trees built leaf by leaf with the
 * RFC 6962 split, chains walked down to each leaf, aggregation steps hashed by hand. */
#include <stdlib.h>
#include <string.h>

#include "keyless/chains.h"
#include "testutil.h"

#define MAXN 48

static kl_imprint_t leaf[MAXN];

static void make_leaves(int migrate_from) {
  for (uint64_t i = 0; i < MAXN; i++) {
    int alg = (int)i >= migrate_from ? KL_HASH_SHA512 : KL_HASH_SHA256;
    assert_int_equal(kl_hash(alg, &i, sizeof i, &leaf[i], NULL), 0);
  }
}

static uint64_t split(uint64_t n) { /* largest power of two strictly less than n */
  uint64_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

static kl_imprint_t node(const kl_imprint_t *l, const kl_imprint_t *r) {
  uint8_t buf[2 * KL_IMPRINT_MAX + 1];
  size_t n = kl_imprint_to_bytes(l, buf);
  n += kl_imprint_to_bytes(r, buf + n);
  buf[n++] = 0xFF;
  kl_imprint_t out;
  assert_int_equal(kl_hash(r->alg, buf, n, &out, NULL), 0); /* right child's algorithm */
  return out;
}

static kl_imprint_t ref_root(uint64_t lo, uint64_t n) {
  if (n == 1) return leaf[lo];
  uint64_t k = split(n);
  kl_imprint_t l = ref_root(lo, k), r = ref_root(lo + k, n - k);
  return node(&l, &r);
}

/* The chain for leaf t in the tree over leaves 0..P, leaf first. */
static void ref_chain(uint64_t t, uint64_t P, kl_cal_chain_t *c, kl_cal_link_t *links) {
  kl_cal_link_t rev[64];
  size_t n = 0;
  uint64_t lo = 0, cnt = P + 1;
  while (cnt > 1) {
    uint64_t k = split(cnt);
    if (t < lo + k) {
      rev[n].dir = KL_LINK_LEFT;
      rev[n++].sibling = ref_root(lo + k, cnt - k);
      cnt = k;
    } else {
      rev[n].dir = KL_LINK_RIGHT;
      rev[n++].sibling = ref_root(lo, k);
      lo += k;
      cnt -= k;
    }
  }
  for (size_t i = 0; i < n; i++) links[i] = rev[n - 1 - i];
  memset(c, 0, sizeof *c);
  c->pub_time = P;
  c->aggr_time = t;
  c->has_aggr_time = true;
  c->input = leaf[t];
  c->links = links;
  c->n_links = n;
}

static void check_calendar(int migrate_from) {
  kl_hasher_t h;
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  make_leaves(migrate_from);
  for (uint64_t P = 1; P < MAXN; P++) {
    kl_imprint_t want = ref_root(0, P + 1);
    for (uint64_t t = 0; t <= P; t++) {
      kl_cal_chain_t c, later;
      kl_cal_link_t links[64], links2[64];
      kl_imprint_t got;
      uint64_t tt;
      ref_chain(t, P, &c, links);
      assert_int_equal(kl_cal_chain_root(&h, &c, &got, NULL), 0);
      assert_true(kl_imprint_eq(&got, &want));
      assert_true(kl_cal_chain_time(&c, &tt));
      assert_int_equal(tt, t);
      /* Right links never change as the calendar grows (CAL-04's rule). */
      for (uint64_t P2 = P; P2 < MAXN; P2 += 5) {
        ref_chain(t, P2, &later, links2);
        assert_true(kl_cal_chain_compatible(&c, &later));
      }
    }
  }
  kl_hasher_close(&h);
}

static void test_calendar_sha256(void **state) {
  (void)state;
  check_calendar(MAXN);
}

static void test_calendar_algorithm_migration(void **state) {
  (void)state;
  check_calendar(20); /* leaves from 20 on are SHA-512: parents take the right child's */
}

static void test_calendar_shape_errors(void **state) {
  (void)state;
  kl_cal_link_t links[3] = {{KL_LINK_RIGHT, {0}}, {KL_LINK_RIGHT, {0}}, {KL_LINK_RIGHT, {0}}};
  kl_cal_chain_t c = {0};
  uint64_t t;
  c.links = links;
  c.n_links = 3;
  c.pub_time = 7; /* 0b111: three right links give t = 7 */
  assert_true(kl_cal_chain_time(&c, &t));
  assert_int_equal(t, 7);
  c.pub_time = 3; /* too many links for P = 3 */
  assert_false(kl_cal_chain_time(&c, &t));
  c.pub_time = 15; /* too few: r stays above 0 */
  assert_false(kl_cal_chain_time(&c, &t));
  /* Realistic times: a chain of right links only, one per 1-bit of t, for P == t. */
  uint64_t T = 1710452040;
  kl_cal_link_t many[64];
  size_t n = 0;
  for (int b = 0; b < 64; b++)
    if (T >> b & 1) many[n++].dir = KL_LINK_RIGHT;
  c.links = many;
  c.n_links = n;
  c.pub_time = T;
  assert_true(kl_cal_chain_time(&c, &t));
  assert_true(t == T);
}

static void test_aggregation_by_hand(void **state) {
  (void)state;
  kl_aggr_link_t links[2];
  kl_aggr_chain_t c = {0};
  kl_imprint_t in, s1, s2, mid, want, got;
  uint8_t b1[KL_IMPRINT_MAX], b2[KL_IMPRINT_MAX], buf[3 * KL_IMPRINT_MAX];
  uint64_t level, shape;
  kl_hasher_t h;
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  kl_hash(KL_HASH_SHA256, "in", 2, &in, NULL);
  kl_hash(KL_HASH_SHA256, "s1", 2, &s1, NULL);
  kl_hash(KL_HASH_SHA256, "s2", 2, &s2, NULL);
  memset(links, 0, sizeof links);
  links[0].dir = KL_LINK_LEFT;
  links[0].kind = KL_SIB_IMPRINT;
  links[0].sib_bytes = b1;
  links[0].sib_len = kl_imprint_to_bytes(&s1, b1);
  links[1].dir = KL_LINK_RIGHT;
  links[1].kind = KL_SIB_IMPRINT;
  links[1].level_corr = 2;
  links[1].sib_bytes = b2;
  links[1].sib_len = kl_imprint_to_bytes(&s2, b2);
  c.input = in;
  c.algo = KL_HASH_SHA256;
  c.links = links;
  c.n_links = 2;
  /* mid = H(in || s1 || 1); root = H(s2 || mid || 4) */
  size_t n = kl_imprint_to_bytes(&in, buf);
  n += kl_imprint_to_bytes(&s1, buf + n);
  buf[n++] = 1;
  kl_hash(KL_HASH_SHA256, buf, n, &mid, NULL);
  n = kl_imprint_to_bytes(&s2, buf);
  n += kl_imprint_to_bytes(&mid, buf + n);
  buf[n++] = 4;
  kl_hash(KL_HASH_SHA256, buf, n, &want, NULL);
  assert_int_equal(kl_aggr_chain_compute(&h, &c, 0, &got, &level, NULL), 0);
  assert_true(kl_imprint_eq(&got, &want));
  assert_int_equal(level, 4);
  assert_true(kl_aggr_chain_shape(&c, &shape));
  assert_int_equal(shape, 5); /* 0b101: leading 1, right, then left (first link lowest) */
  /* Levels above 255 are refused: 252 + 1 = 253, then 253 + 2 + 1 = 256. */
  kl_err_t e = {0};
  assert_int_equal(kl_aggr_chain_compute(&h, &c, 252, &got, &level, &e), KL_ERANGE);
  links[1].level_corr = 300;
  assert_int_equal(kl_aggr_chain_compute(&h, &c, 0, &got, &level, &e), KL_ERANGE);
  kl_hasher_close(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calendar_sha256),
      cmocka_unit_test(test_calendar_algorithm_migration),
      cmocka_unit_test(test_calendar_shape_errors),
      cmocka_unit_test(test_aggregation_by_hand),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
