/* Round bookkeeping: the leader's collection, answers from committed rounds, late arrivals
 * moved to the next round, lost rounds answered with a retryable error, never a chain. */
#include <stdlib.h>
#include <string.h>

#include "keyless/chains.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "rounds.h"
#include "testutil.h"

typedef struct got {
  uint64_t client_id, second;
  int status;
  kl_imprint_t out; /* the chain's output, for status 0 */
  int n;
} got_t;

static got_t answers[64];
static int n_answers;

static void on_answer(void *arg, void *ctx, uint64_t client_id, const kl_core_answer_t *a) {
  (void)arg;
  (void)ctx;
  got_t *g = &answers[n_answers++];
  memset(g, 0, sizeof *g);
  g->client_id = client_id;
  g->second = a->second;
  g->status = a->status;
  if (a->status == 0) {
    kl_tlv_t t;
    kl_arena_t ar = KL_ARENA_INIT;
    kl_aggr_chain_t c;
    kl_hasher_t h;
    assert_int_equal(kl_tlv_parse_one(a->chain, a->chain_len, &t, NULL), 0);
    assert_int_equal(kl_aggr_chain_decode(&t, a->chain, &ar, &c, NULL), 0);
    assert_int_equal(c.n_index, 1);
    assert_true(c.aggr_time == a->second);
    kl_hasher_init(&h, NULL);
    assert_int_equal(kl_aggr_chain_compute(&h, &c, 2, &g->out, NULL, NULL), 0); /* leaves at level 2 */
    kl_hasher_close(&h);
    kl_arena_free(&ar);
  }
}

static kl_imprint_t imp(uint64_t x) {
  kl_imprint_t i;
  kl_hash(KL_HASH_SHA256, &x, sizeof x, &i, NULL);
  return i;
}

static void test_leader_and_follower(void **state) {
  (void)state;
  kl_core_rounds_t *leader, *follower;
  kl_err_t e = {0};
  n_answers = 0;
  assert_int_equal(kl_core_rounds_create(1, KL_HASH_SHA256, 255, on_answer, NULL, &leader, &e), 0);
  assert_int_equal(kl_core_rounds_create(2, KL_HASH_SHA256, 255, on_answer, NULL, &follower, &e), 0);
  uint64_t id, fid;
  kl_imprint_t a = imp(1), b = imp(2), late = imp(3);
  assert_int_equal(kl_core_rounds_add(leader, 100, &a, 2, NULL, 11, &id, &e), 0);
  assert_int_equal(kl_core_rounds_add(follower, 100, &b, 2, NULL, 22, &fid, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 100, 2, fid, &b, 2, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 100, 2, fid, &b, 2, &e), 0); /* duplicate: ignored */
  kl_core_leaf_t *leaves;
  size_t n;
  kl_imprint_t root;
  int has_root;
  assert_int_equal(kl_core_rounds_collect(leader, 100, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(n, 2);
  assert_true(has_root);
  /* A forward arriving after the leader closed 100 goes into 101. */
  uint64_t lid;
  assert_int_equal(kl_core_rounds_add(follower, 100, &late, 2, NULL, 33, &lid, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 100, 2, lid, &late, 2, &e), 0);
  kl_core_round_t r100 = {100, leaves, n, &root, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(leader, &r100, &e), 0);
  assert_int_equal(kl_core_rounds_committed(follower, &r100, &e), 0);
  assert_int_equal(n_answers, 2); /* 11 and 22; 33 waits one more round */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(answers[i].status, 0);
    assert_true(kl_imprint_eq(&answers[i].out, &root));
  }
  free(leaves);
  assert_int_equal(kl_core_rounds_collect(leader, 101, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(n, 1);
  kl_core_round_t r101 = {101, leaves, n, &root, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(follower, &r101, &e), 0);
  assert_int_equal(n_answers, 3);
  assert_true(answers[2].client_id == 33 && answers[2].status == 0 && answers[2].second == 101);
  free(leaves);
  assert_int_equal(kl_core_rounds_pending(follower), 0);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(follower);
}

static void test_lost_round_and_bad_root(void **state) {
  (void)state;
  kl_core_rounds_t *r;
  kl_err_t e = {0};
  n_answers = 0;
  assert_int_equal(kl_core_rounds_create(7, KL_HASH_SHA256, 255, on_answer, NULL, &r, &e), 0);
  uint64_t id;
  kl_imprint_t x = imp(9), y = imp(10);
  assert_int_equal(kl_core_rounds_add(r, 200, &x, 2, NULL, 1, &id, &e), 0);
  assert_int_equal(kl_core_rounds_add(r, 203, &y, 2, NULL, 2, &id, &e), 0);
  /* The leader changed; seconds 200..202 were committed empty. */
  kl_core_round_t empty = {202, NULL, 0, NULL, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(r, &empty, &e), 0);
  assert_int_equal(n_answers, 1);
  assert_int_equal(answers[0].status, KL_STATUS_UPSTREAM_ERROR);
  assert_int_equal(kl_core_rounds_pending(r), 1);
  /* A committed root that is not its leaves' root: nothing is answered with a chain. */
  kl_core_leaf_t leaf = {y, 2, 7, 2};
  kl_imprint_t wrong = imp(11);
  kl_core_round_t bad = {203, &leaf, 1, &wrong, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(r, &bad, &e), KL_EFORMAT);
  assert_int_equal(n_answers, 2);
  assert_int_equal(answers[1].status, KL_STATUS_UPSTREAM_ERROR);
  assert_int_equal(kl_core_rounds_add(r, 300, &y, 256, NULL, 3, &id, &e), KL_ERANGE);
  kl_core_rounds_destroy(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_leader_and_follower),
                                     cmocka_unit_test(test_lost_round_and_bad_root)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
