/* The round tree: every leaf's chain hashes to the root at the root's level, shapes match the
 * chain index, metadata links come first, and two tiers make a signature that verifies. */
#include <stdlib.h>
#include <string.h>

#include "keyless/chains.h"
#include "keyless/sig.h"
#include "keyless/tree.h"
#include "keyless/verify.h"
#include "testutil.h"

static void decode_chain(const kl_buf_t *b, kl_arena_t *a, kl_aggr_chain_t *c) {
  kl_tlv_t t;
  kl_err_t e = {0};
  assert_int_equal(kl_tlv_parse_one(b->p, b->len, &t, NULL), 0);
  if (kl_aggr_chain_decode(&t, b->p, a, c, &e)) fail_msg("%s", e.msg);
}

static const uint8_t META[] = {0x01, 0x05, 'a', 'n', 'o', 'n', 0x00, 0x03, 0x01, 0x07};

static void test_every_leaf(void **state) {
  (void)state;
  kl_hasher_t h;
  kl_hasher_init(&h, NULL);
  for (size_t n = 1; n <= 40; n++) {
    kl_tree_leaf_t leaves[40];
    for (size_t i = 0; i < n; i++) {
      uint64_t seed = n * 100 + i;
      kl_hash(KL_HASH_SHA256, &seed, sizeof seed, &leaves[i].hash, NULL);
      leaves[i].level = (uint8_t)(seed % 4);
      leaves[i].meta = (seed % 3 == 0) ? META : NULL;
      leaves[i].meta_len = leaves[i].meta ? sizeof META : 0;
    }
    kl_tree_t *t;
    kl_err_t e = {0};
    if (kl_tree_build(leaves, n, KL_HASH_SHA256, 255, &t, &e)) fail_msg("n=%zu: %s", n, e.msg);
    assert_int_equal(kl_tree_size(t), n);
    for (size_t i = 0; i < n; i++) {
      kl_buf_t b = KL_BUF_INIT;
      kl_arena_t a = KL_ARENA_INIT;
      kl_aggr_chain_t c;
      kl_imprint_t out;
      uint64_t level, shape;
      const uint64_t parent[2] = {5, 9};
      if (kl_tree_chain(t, i, 1700000000, parent, 2, &b, &e)) fail_msg("n=%zu leaf %zu: %s", n, i, e.msg);
      decode_chain(&b, &a, &c);
      assert_int_equal(kl_aggr_chain_compute(&h, &c, leaves[i].level, &out, &level, &e), 0);
      assert_true(kl_imprint_eq(&out, kl_tree_root(t)));
      assert_int_equal(level, kl_tree_root_level(t));
      assert_true(kl_aggr_chain_shape(&c, &shape));
      assert_int_equal(c.n_index, 3);
      assert_true(c.index[0] == 5 && c.index[1] == 9 && c.index[2] == shape);
      if (leaves[i].meta) {
        assert_int_equal(c.links[0].kind, KL_SIB_METADATA);
        assert_string_equal(c.links[0].meta.client_id, "anon");
        assert_true(c.links[0].meta.trusted);
      }
      kl_arena_free(&a);
      kl_buf_free(&b);
    }
    kl_tree_free(t);
  }
  kl_hasher_close(&h);
}

static void test_max_level(void **state) {
  (void)state;
  kl_tree_leaf_t leaves[8] = {0};
  kl_tree_t *t;
  kl_err_t e = {0};
  for (int i = 0; i < 8; i++) {
    kl_hash(KL_HASH_SHA256, &i, sizeof i, &leaves[i].hash, NULL);
    leaves[i].level = 253;
  }
  assert_int_equal(kl_tree_build(leaves, 8, KL_HASH_SHA256, 255, &t, &e), KL_ERANGE); /* 253 + 3 levels > 255 */
  leaves[0].level = 0;
  for (int i = 0; i < 8; i++) leaves[i].level = 0;
  assert_int_equal(kl_tree_build(leaves, 8, KL_HASH_SHA256, 2, &t, &e), KL_ERANGE);
  assert_int_equal(kl_tree_build(leaves, 8, KL_HASH_SHA256, 3, &t, &e), 0);
  assert_int_equal(kl_tree_root_level(t), 3);
  kl_tree_free(t);
  assert_int_equal(kl_tree_build(leaves, 8, KL_HASH_SHA1, 255, &t, &e), KL_EHASHALG); /* never sign with SHA-1 */
}

/* Gateway (documents with identities) under a core (gateway roots): the two chains make a
 * signature whose internal verification passes, document hash included. */
static void test_two_tiers(void **state) {
  (void)state;
  kl_tree_leaf_t docs[5], tops[3];
  kl_tree_t *gw, *core;
  kl_err_t e = {0};
  for (int i = 0; i < 5; i++) {
    kl_hash(KL_HASH_SHA256, &i, sizeof i, &docs[i].hash, NULL);
    docs[i].level = 0;
    docs[i].meta = META;
    docs[i].meta_len = sizeof META;
  }
  assert_int_equal(kl_tree_build(docs, 5, KL_HASH_SHA256, 255, &gw, &e), 0);
  for (int i = 0; i < 3; i++) {
    int x = 100 + i;
    kl_hash(KL_HASH_SHA512, &x, sizeof x, &tops[i].hash, NULL);
    tops[i].level = 7;
    tops[i].meta = NULL;
  }
  tops[1].hash = *kl_tree_root(gw);
  tops[1].level = (uint8_t)kl_tree_root_level(gw);
  assert_int_equal(kl_tree_build(tops, 3, KL_HASH_SHA512, 255, &core, &e), 0);
  kl_buf_t top = KL_BUF_INIT;
  kl_arena_t a = KL_ARENA_INIT;
  kl_aggr_chain_t tc;
  assert_int_equal(kl_tree_chain(core, 1, 1700000000, NULL, 0, &top, &e), 0);
  decode_chain(&top, &a, &tc);
  for (size_t d = 0; d < 5; d++) {
    kl_buf_t b = KL_BUF_INIT;
    size_t m = kl_tlv_open(&b);
    assert_int_equal(kl_tree_chain(gw, d, 1700000000, tc.index, tc.n_index, &b, &e), 0);
    kl_buf_put(&b, top.p, top.len);
    assert_int_equal(kl_tlv_close(&b, m, KL_T_SIGNATURE, 0), 0);
    kl_sig_t *sig;
    if (kl_sig_parse(b.p, b.len, &sig, &e)) fail_msg("%s", e.msg);
    kl_verify_opts_t o = {0};
    o.doc_hash = &docs[d].hash;
    kl_verify_result_t res;
    kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
    if (res.verdict != KL_VER_OK) fail_msg("doc %zu: %s %s", d, kl_vcode_str(res.code), res.message);
    kl_imprint_t root;
    assert_int_equal(kl_sig_aggregation_root(sig, &root, &e), 0);
    assert_true(kl_imprint_eq(&root, kl_tree_root(core)));
    kl_sig_free(sig);
    kl_buf_free(&b);
  }
  kl_arena_free(&a);
  kl_buf_free(&top);
  kl_tree_free(gw);
  kl_tree_free(core);
}

/* kl_tree_chain writes the chain straight from the tree; the general encoder must give the same
 * bytes, for every leaf of trees of many sizes, with and without metadata (short and over 251
 * bytes: the general path), levels, and parent index lists. */
static void test_chain_bytes(void **state) {
  (void)state;
  static uint8_t long_meta[300];
  memset(long_meta, 0x41, sizeof long_meta);
  long_meta[0] = 0x01;
  long_meta[1] = 0xFF;
  uint64_t parent[3] = {5, 0x1234567, 0xFFFFFFFFFFull};
  for (size_t n = 1; n <= 70; n += (n < 20 ? 1 : 7)) {
    kl_tree_leaf_t leaves[70];
    for (size_t i = 0; i < n; i++) {
      uint64_t seed = n * 1000 + i;
      kl_hash(KL_HASH_SHA256, &seed, sizeof seed, &leaves[i].hash, NULL);
      leaves[i].level = (uint8_t)(seed % 5);
      leaves[i].meta = seed % 4 == 0 ? NULL : seed % 7 == 0 ? long_meta : META;
      leaves[i].meta_len = leaves[i].meta == NULL ? 0 : leaves[i].meta == META ? sizeof META : sizeof long_meta;
    }
    kl_tree_t *t;
    kl_err_t e = {0};
    if (kl_tree_build(leaves, n, KL_HASH_SHA256, 255, &t, &e)) fail_msg("n=%zu: %s", n, e.msg);
    for (size_t i = 0; i < n; i++)
      for (size_t np = 0; np <= 3; np += 3) {
        kl_buf_t a = KL_BUF_INIT, b = KL_BUF_INIT;
        kl_buf_put(&a, "pre", 3); /* appended after what the buffer holds */
        kl_buf_put(&b, "pre", 3);
        assert_int_equal(kl_tree_chain(t, i, 1700000000 + n, parent, np, &a, &e), 0);
        assert_int_equal(kl_tree_chain_general(t, i, 1700000000 + n, parent, np, &b, &e), 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.p, b.p, a.len);
        kl_buf_free(&a);
        kl_buf_free(&b);
      }
    kl_tree_free(t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_chain_bytes), cmocka_unit_test(test_every_leaf), cmocka_unit_test(test_max_level),
                                     cmocka_unit_test(test_two_tiers)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
