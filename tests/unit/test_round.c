/* The round engine: limits with their KSI statuses, identities in metadata links that pass
 * INT-11, and answers that make signatures verifying internally once the parent answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"
#include "keyless/round.h"
#include "keyless/sig.h"
#include "keyless/tree.h"
#include "keyless/verify.h"
#include "testutil.h"

static kl_imprint_t doc(int i) {
  kl_imprint_t x;
  kl_hash(KL_HASH_SHA256, &i, sizeof i, &x, NULL);
  return x;
}

static void test_metadata_padding(void **state) {
  (void)state;
  for (int len = 1; len < 12; len++) {
    char client[16];
    memset(client, 'a', (size_t)len);
    client[len] = '\0';
    kl_round_identity_t who = {client, len % 2 ? "m1" : NULL, len % 3 == 0, len % 4 == 0, 7, 1700000000000000ull};
    kl_buf_t b = KL_BUF_INIT;
    assert_int_equal(kl_metadata_encode(&who, &b, NULL), 0);
    assert_int_equal(b.len % 2, 0);
    assert_int_equal(b.p[0], 0x7E);
    kl_buf_free(&b);
  }
  kl_round_identity_t none = {NULL, NULL, false, false, 0, 0};
  kl_buf_t b = KL_BUF_INIT;
  assert_int_equal(kl_metadata_encode(&none, &b, NULL), KL_EINVAL);
  kl_buf_free(&b);
}

/* Appended after what the buffer holds, byte for byte the padding and the children as KSI
 * writes them (KSI-FORMAT.md 4.4): 7E 01 01 when the children are odd, 7E 02 01 01 when even. */
static void test_metadata_append(void **state) {
  (void)state;
  for (int len = 1; len < 8; len++) {
    char client[16];
    memset(client, 'c', (size_t)len);
    client[len] = '\0';
    kl_round_identity_t who = {client, "m", true, len % 2 == 0, 9, 1700000000000001ull};
    kl_buf_t kids = KL_BUF_INIT, want = KL_BUF_INIT, b = KL_BUF_INIT;
    kl_tlv_put_str(&kids, 0x01, 0, client);
    kl_tlv_put_str(&kids, 0x02, 0, "m");
    kl_tlv_put_uint(&kids, 0x03, 0, 9);
    if (len % 2 == 0) kl_tlv_put_uint(&kids, 0x04, 0, 1700000000000001ull);
    static const uint8_t pad1[] = {0x7E, 0x01, 0x01}, pad2[] = {0x7E, 0x02, 0x01, 0x01};
    if ((kids.len + 3) % 2 == 0) kl_buf_put(&want, pad1, 3);
    else kl_buf_put(&want, pad2, 4);
    kl_buf_put(&want, kids.p, kids.len);
    kl_buf_put(&b, "xyz", 3);
    assert_int_equal(kl_metadata_encode(&who, &b, NULL), 0);
    assert_int_equal(b.len, 3 + want.len);
    assert_memory_equal(b.p, "xyz", 3);
    assert_memory_equal(b.p + 3, want.p, want.len);
    kl_buf_free(&kids);
    kl_buf_free(&want);
    kl_buf_free(&b);
  }
}

/* A request whose metadata cannot be encoded (a client id over 65,535 bytes) is refused alone:
 * the round's other requests still get their chains. */
static void test_bad_identity_alone(void **state) {
  (void)state;
  kl_round_config_t cfg = {KL_HASH_SHA256, 30, 16, 0};
  kl_round_t *r;
  size_t slot;
  uint64_t st;
  char *huge = malloc(70000);
  assert_non_null(huge);
  memset(huge, 'h', 69999);
  huge[69999] = '\0';
  kl_round_identity_t a = {"alice", "gw", true, true, 1, 2}, h = {huge, NULL, false, false, 0, 0};
  assert_int_equal(kl_round_create(&cfg, &r, NULL), 0);
  kl_imprint_t d = doc(5);
  assert_int_equal(kl_round_add(r, &d, 0, &a, &slot, &st, NULL), 0);
  assert_int_not_equal(kl_round_add(r, &d, 0, &h, &slot, &st, NULL), 0);
  assert_int_equal(kl_round_add(r, &d, 0, &a, &slot, &st, NULL), 0);
  assert_int_equal(slot, 1);
  kl_imprint_t root;
  unsigned level;
  assert_int_equal(kl_round_close(r, &root, &level, NULL), 0);
  assert_int_equal(kl_round_size(r), 2);
  kl_round_free(r);
  free(huge);
}

static void test_limits(void **state) {
  (void)state;
  kl_round_config_t cfg = {KL_HASH_SHA256, 20, 4, 2};
  kl_round_t *r;
  size_t slot;
  uint64_t st;
  kl_round_identity_t a = {"alice", NULL, false, false, 0, 0}, b = {"bob", NULL, false, false, 0, 0};
  assert_int_equal(kl_round_create(&cfg, &r, NULL), 0);
  kl_imprint_t h = doc(1);
  assert_int_equal(kl_round_add(r, &h, 0, &a, &slot, &st, NULL), 0);
  assert_int_equal(kl_round_add(r, &h, 0, &a, &slot, &st, NULL), 0);
  assert_int_not_equal(kl_round_add(r, &h, 0, &a, &slot, &st, NULL), 0);
  assert_int_equal(st, KL_STATUS_AGGR_OVER_QUOTA);
  assert_int_equal(kl_round_max_request_level(&cfg), 17); /* 20 - metadata - log2(4) */
  assert_int_not_equal(kl_round_add(r, &h, 18, &b, &slot, &st, NULL), 0); /* could push the round over 20 */
  assert_int_equal(st, KL_STATUS_AGGR_REQUEST_TOO_LARGE);
  assert_int_equal(kl_round_add(r, &h, 3, &b, &slot, &st, NULL), 0);
  assert_int_equal(kl_round_add(r, &h, 0, &b, &slot, &st, NULL), 0);
  assert_int_not_equal(kl_round_add(r, &h, 0, &b, &slot, &st, NULL), 0);
  assert_int_equal(st, KL_STATUS_AGGR_TOO_MANY_REQUESTS);
  kl_imprint_t bad = h;
  bad.len = 3;
  assert_int_not_equal(kl_round_add(r, &bad, 0, &b, &slot, &st, NULL), 0);
  assert_int_equal(st, KL_STATUS_INVALID_PAYLOAD);
  kl_imprint_t root;
  unsigned level;
  assert_int_equal(kl_round_close(r, &root, &level, NULL), 0);
  assert_int_equal(kl_round_add(r, &h, 0, &a, &slot, &st, NULL), KL_ESTATE);
  assert_int_equal(kl_round_close(r, &root, &level, NULL), KL_ESTATE);
  kl_round_free(r);
}

/* A gateway round under a parent tier: every request's answer is a signature that verifies. */
/* Many clients: the per-client counts survive the table growing. */
static void test_many_clients(void **state) {
  (void)state;
  kl_round_config_t cfg = {KL_HASH_SHA256, 255, 100000, 2};
  kl_round_t *r;
  size_t slot;
  uint64_t st;
  assert_int_equal(kl_round_create(&cfg, &r, NULL), 0);
  kl_imprint_t h = doc(2);
  for (int pass = 0; pass < 3; pass++)
    for (int c = 0; c < 300; c++) {
      char id[16];
      snprintf(id, sizeof id, "client-%d", c);
      kl_round_identity_t who = {id, NULL, false, false, 0, 0};
      int rc = kl_round_add(r, &h, 0, &who, &slot, &st, NULL);
      if (pass < 2) assert_int_equal(rc, 0);
      else {
        assert_int_not_equal(rc, 0);
        assert_int_equal(st, KL_STATUS_AGGR_OVER_QUOTA);
      }
    }
  assert_int_equal(kl_round_size(r), 600);
  kl_round_free(r);
}

static void test_two_tiers(void **state) {
  (void)state;
  const uint64_t T = 1760000000;
  kl_round_config_t cfg = {KL_HASH_SHA256, 255, 1000, 0};
  kl_round_t *gw;
  kl_imprint_t docs[6], root;
  unsigned level;
  size_t slots[6];
  uint64_t st;
  assert_int_equal(kl_round_create(&cfg, &gw, NULL), 0);
  for (int i = 0; i < 6; i++) {
    kl_round_identity_t who = {i % 2 ? "alice" : "bob", "gw-1", true, true, (uint64_t)i, T * 1000000 + (uint64_t)i};
    docs[i] = doc(i);
    assert_int_equal(kl_round_add(gw, &docs[i], 0, &who, &slots[i], &st, NULL), 0);
  }
  assert_int_equal(kl_round_close(gw, &root, &level, NULL), 0);
  /* The parent: a tree over three children's roots, ours in the middle. */
  kl_tree_leaf_t top[3] = {{doc(100), 4, NULL, 0}, {root, (uint8_t)level, NULL, 0}, {doc(101), 9, NULL, 0}};
  kl_tree_t *pt;
  assert_int_equal(kl_tree_build(top, 3, KL_HASH_SHA512, 255, &pt, NULL), 0);
  kl_buf_t pchain = KL_BUF_INIT;
  assert_int_equal(kl_tree_chain(pt, 1, T, NULL, 0, &pchain, NULL), 0);
  const uint8_t *parts[1] = {pchain.p};
  size_t lens[1] = {pchain.len};
  kl_round_parent_t parent = {parts, lens, 1};
  for (int i = 0; i < 6; i++) {
    kl_buf_t b = KL_BUF_INIT;
    kl_err_t e = {0};
    size_t m = kl_tlv_open(&b);
    if (kl_round_answer(gw, &parent, T, slots[i], &b, &e)) fail_msg("%s", e.msg);
    assert_int_equal(kl_tlv_close(&b, m, KL_T_SIGNATURE, 0), 0);
    kl_sig_t *sig;
    if (kl_sig_parse(b.p, b.len, &sig, &e)) fail_msg("%s", e.msg);
    kl_verify_opts_t o = {0};
    o.doc_hash = &docs[i];
    kl_verify_result_t res;
    kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
    if (res.verdict != KL_VER_OK) fail_msg("request %d: %s %s", i, kl_vcode_str(res.code), res.message);
    assert_string_equal(sig->chains[0].links[0].meta.client_id, i % 2 ? "alice" : "bob");
    assert_string_equal(sig->chains[0].links[0].meta.machine_id, "gw-1");
    kl_sig_free(sig);
    kl_buf_free(&b);
  }
  /* An answer for another round is refused. */
  kl_round_parent_t wrong = {parts, lens, 1};
  kl_buf_t b = KL_BUF_INIT;
  assert_int_equal(kl_round_answer(gw, &wrong, T + 1, slots[0], &b, NULL), KL_EFORMAT);
  /* A parent whose next chain does not continue its first (a wrong or hostile parent): the
   * whole answer fails the internal policy above our root, so no signature is made of it, even
   * though its first chain is the one accepted before. */
  kl_tree_leaf_t other[2] = {{doc(102), 3, NULL, 0}, {doc(103), 3, NULL, 0}};
  kl_tree_t *ot;
  assert_int_equal(kl_tree_build(other, 2, KL_HASH_SHA256, 255, &ot, NULL), 0);
  kl_buf_t ochain = KL_BUF_INIT;
  assert_int_equal(kl_tree_chain(ot, 0, T, NULL, 0, &ochain, NULL), 0);
  const uint8_t *bad_parts[2] = {pchain.p, ochain.p};
  size_t bad_lens[2] = {pchain.len, ochain.len};
  kl_round_parent_t bad = {bad_parts, bad_lens, 2};
  kl_err_t e = {0};
  b.len = 0;
  assert_int_equal(kl_round_answer(gw, &bad, T, slots[0], &b, &e), KL_EFORMAT);
  if (strstr(e.msg, "internal policy") == NULL) fail_msg("message: %s", e.msg);
  assert_int_equal(b.len, 0);
  /* The good answer is still taken afterwards. */
  assert_int_equal(kl_round_answer(gw, &parent, T, slots[0], &b, NULL), 0);
  /* Per-request chains come only under an accepted answer of that second. */
  b.len = 0;
  assert_int_equal(kl_round_answer_head(gw, T, slots[1], &b, NULL), 0);
  assert_true(b.len > 0);
  assert_int_equal(kl_round_answer_head(gw, T + 1, slots[1], &b, NULL), KL_ESTATE);
  kl_buf_free(&ochain);
  kl_tree_free(ot);
  kl_buf_free(&b);
  kl_buf_free(&pchain);
  kl_tree_free(pt);
  kl_round_free(gw);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_metadata_padding), cmocka_unit_test(test_metadata_append),
      cmocka_unit_test(test_bad_identity_alone), cmocka_unit_test(test_limits), cmocka_unit_test(test_many_clients),
                                     cmocka_unit_test(test_two_tiers)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
