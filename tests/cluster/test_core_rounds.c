/* Round bookkeeping: a node's own requests of a second closed into one leaf (a batch, or the
 * lone request), the leader's collection, answers from committed rounds, late arrivals
 * moved to the next round, lost rounds answered with a retryable error, never a chain; and
 * what a node accepts (docs/core.md, "What a node accepts"): levels that fit the round's tree,
 * forwards only from the member they name, near the leader's clock and within max_pending,
 * answers only from a leaf with the request's own imprint and level, per request frame. */
#include <stdlib.h>
#include <string.h>

#include "keyless/chains.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "rounds.h"
#include "testutil.h"

typedef struct got {
  void *ctx;
  uint64_t client_id, second;
  int status, kind;
  uint8_t chain[4096]; /* status 0 */
  size_t chain_len;
} got_t;

#define MAX_ANSWERS 512
static got_t answers[MAX_ANSWERS];
static int n_answers;

static void on_answer(void *arg, void *ctx, uint64_t client_id, const kl_core_answer_t *a) {
  (void)arg;
  assert_true(n_answers < MAX_ANSWERS);
  got_t *g = &answers[n_answers++];
  memset(g, 0, sizeof *g);
  g->ctx = ctx;
  g->client_id = client_id;
  g->second = a->second;
  g->status = a->status;
  g->kind = a->kind;
  assert_true((a->status == 0) == (a->kind == KL_CORE_ANSWER_CHAIN));
  if (a->status == 0) {
    assert_non_null(a->chain);
    assert_true(a->chain_len <= sizeof g->chain);
    memcpy(g->chain, a->chain, a->chain_len);
    g->chain_len = a->chain_len;
  } else {
    assert_null(a->chain);
    assert_non_null(a->error);
  }
}

/* The answer's chain starts from `input` (a request at `level`) and ends at `root`: one 0x801,
 * with a chain index of one element that is the chain's shape (a request in a batch too: its
 * path up the batch tree goes on up the round's). Returns its number of links. */
static size_t check_chain(const got_t *g, const kl_imprint_t *input, unsigned level, const kl_imprint_t *root) {
  kl_tlv_t t;
  kl_arena_t ar = KL_ARENA_INIT;
  kl_aggr_chain_t c;
  kl_hasher_t h;
  kl_imprint_t out;
  uint64_t level_out = 0, shape;
  assert_int_equal(g->status, 0);
  assert_int_equal(kl_tlv_parse_one(g->chain, g->chain_len, &t, NULL), 0);
  assert_int_equal(t.raw_len, g->chain_len); /* one TLV, nothing after it */
  assert_int_equal(kl_aggr_chain_decode(&t, g->chain, &ar, &c, NULL), 0);
  assert_int_equal(c.n_index, 1);
  assert_true(kl_aggr_chain_shape(&c, &shape) && shape == c.index[0]);
  kl_buf_t again = KL_BUF_INIT; /* the same bytes as the general encoder writes for the chain */
  kl_aggr_chain_encode(&again, &c);
  assert_int_equal(again.len, g->chain_len);
  assert_memory_equal(again.p, g->chain, g->chain_len);
  kl_buf_free(&again);
  assert_true(c.aggr_time == g->second);
  assert_true(kl_imprint_eq(&c.input, input));
  kl_hasher_init(&h, NULL);
  assert_int_equal(kl_aggr_chain_compute(&h, &c, level, &out, &level_out, NULL), 0);
  kl_hasher_close(&h);
  assert_true(level_out <= 255);
  assert_true(kl_imprint_eq(&out, root));
  size_t n = c.n_links;
  kl_arena_free(&ar);
  return n;
}

static const got_t *answer_for(void *ctx) {
  const got_t *found = NULL;
  for (int i = 0; i < n_answers; i++)
    if (answers[i].ctx == ctx) {
      assert_null(found); /* one answer per request */
      found = &answers[i];
    }
  assert_non_null(found);
  return found;
}

static kl_imprint_t imp(uint64_t x) {
  kl_imprint_t i;
  kl_hash(KL_HASH_SHA256, &x, sizeof x, &i, NULL);
  return i;
}

static kl_core_rounds_t *make(uint64_t self, unsigned max_level, size_t max_pending) {
  kl_core_rounds_t *r;
  kl_err_t e = {0};
  assert_int_equal(kl_core_rounds_create(self, KL_HASH_SHA256, max_level, on_answer, NULL, &r, &e), 0);
  if (max_pending) kl_core_rounds_set_max_pending(r, max_pending);
  return r;
}

/* The leader collects `second` and every node in nodes[] applies the committed round. */
static void commit(kl_core_rounds_t *leader, uint64_t second, kl_core_rounds_t **nodes, size_t n_nodes, size_t *n_leaves,
                   kl_imprint_t *root) {
  kl_core_leaf_t *leaves;
  size_t n;
  int has_root;
  kl_err_t e = {0};
  assert_int_equal(kl_core_rounds_collect(leader, second, &leaves, &n, root, &has_root, &e), 0);
  assert_true(has_root == (n > 0));
  kl_core_round_t round = {second, leaves, n, has_root ? root : NULL, KL_HASH_SHA256};
  for (size_t i = 0; i < n_nodes; i++) assert_int_equal(kl_core_rounds_committed(nodes[i], &round, &e), 0);
  free(leaves);
  if (n_leaves) *n_leaves = n;
}

static void test_leader_and_follower(void **state) {
  (void)state;
  kl_core_rounds_t *leader = make(1, 255, 0), *follower = make(2, 255, 0);
  kl_err_t e = {0};
  n_answers = 0;
  uint64_t id, fid;
  kl_imprint_t a = imp(1), b = imp(2), late = imp(3);
  assert_int_equal(kl_core_rounds_add(leader, 100, &a, 2, NULL, 11, &id, &e), 0);
  assert_int_equal(kl_core_rounds_add(follower, 100, &b, 2, NULL, 22, &fid, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 100, 100, 2, fid, &b, 2, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 100, 100, 2, fid, &b, 2, &e), 0); /* duplicate: ignored */
  assert_int_equal(kl_core_rounds_pending(leader), 2);
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
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 101, 100, 2, lid, &late, 2, &e), 0);
  kl_core_round_t r100 = {100, leaves, n, &root, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(leader, &r100, &e), 0);
  assert_int_equal(kl_core_rounds_committed(follower, &r100, &e), 0);
  assert_int_equal(n_answers, 2); /* 11 and 22; 33 waits one more round */
  check_chain(&answers[0], &a, 2, &root);
  check_chain(&answers[1], &b, 2, &root);
  assert_int_equal(kl_core_rounds_pending(leader), 1); /* the late forward, for 101 */
  free(leaves);
  assert_int_equal(kl_core_rounds_collect(leader, 101, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(n, 1);
  kl_core_round_t r101 = {101, leaves, n, &root, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(follower, &r101, &e), 0);
  assert_int_equal(kl_core_rounds_committed(leader, &r101, &e), 0);
  assert_int_equal(n_answers, 3);
  assert_true(answers[2].client_id == 33 && answers[2].second == 101);
  check_chain(&answers[2], &late, 2, &root);
  free(leaves);
  assert_int_equal(kl_core_rounds_pending(follower), 0);
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(follower);
}

static void test_lost_round_and_bad_root(void **state) {
  (void)state;
  kl_core_rounds_t *r = make(7, 255, 0);
  kl_err_t e = {0};
  n_answers = 0;
  uint64_t id, id2;
  kl_imprint_t x = imp(9), y = imp(10);
  assert_int_equal(kl_core_rounds_add(r, 200, &x, 2, NULL, 1, &id, &e), 0);
  assert_int_equal(kl_core_rounds_add(r, 203, &y, 2, NULL, 2, &id2, &e), 0);
  /* The leader changed; seconds 200..202 were committed empty. */
  kl_core_round_t empty = {202, NULL, 0, NULL, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(r, &empty, &e), 0);
  assert_int_equal(n_answers, 1);
  assert_int_equal(answers[0].status, KL_STATUS_UPSTREAM_ERROR);
  assert_int_equal(answers[0].kind, KL_CORE_ANSWER_RETRY);
  assert_int_equal(kl_core_rounds_pending(r), 1);
  /* A committed root that is not its leaves' root: nothing is answered with a chain. */
  kl_core_leaf_t leaf = {y, 2, 7, id2};
  kl_imprint_t wrong = imp(11);
  kl_core_round_t bad = {203, &leaf, 1, &wrong, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(r, &bad, &e), KL_EFORMAT);
  assert_int_equal(n_answers, 2);
  assert_int_equal(answers[1].status, KL_STATUS_UPSTREAM_ERROR);
  assert_int_equal(kl_core_rounds_pending(r), 0);
  assert_int_equal(kl_core_rounds_add(r, 300, &y, 256, NULL, 3, &id, &e), KL_ERANGE);
  kl_core_rounds_destroy(r);
}

/* ---- levels ---- */

static void test_depth(void **state) {
  (void)state;
  static const struct {
    size_t n;
    unsigned d;
  } v[] = {{0, 1}, {1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {8, 3}, {9, 4}, {64, 6}, {65, 7}, {100000, 17}, {131072, 17},
           {131073, 18}};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    if (kl_core_rounds_depth(v[i].n) != v[i].d) fail_msg("depth(%zu) = %u, want %u", v[i].n, kl_core_rounds_depth(v[i].n), v[i].d);
  }
  /* The bound is what the tree builder really does: n leaves at level L reach at most L + depth(n). */
  for (size_t n = 1; n <= 70; n++) {
    kl_tree_leaf_t tl[70];
    kl_tree_t *t;
    memset(tl, 0, sizeof tl);
    for (size_t i = 0; i < n; i++) tl[i].hash = imp(i);
    assert_int_equal(kl_tree_build(tl, n, KL_HASH_SHA256, 255, &t, NULL), 0);
    assert_int_equal(kl_tree_root_level(t), kl_core_rounds_depth(n)); /* tight: the deepest leaf is that deep */
    kl_tree_free(t);
  }
}

static void test_level_fit_on_add(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id;
  kl_imprint_t x = imp(1);
  kl_core_rounds_t *r = make(1, 255, 0);
  /* The default max_pending (100000): 17 levels deep, so requests up to 238. */
  assert_int_equal(kl_core_rounds_max_request_level(r), 255 - 17);
  assert_int_equal(kl_core_rounds_add(r, 10, &x, 255, NULL, 1, &id, &e), KL_ERANGE); /* the attack: level 255 */
  assert_int_equal(kl_core_rounds_add(r, 10, &x, 239, NULL, 1, &id, &e), KL_ERANGE);
  assert_int_equal(kl_core_rounds_add(r, 10, &x, 238, NULL, 1, &id, &e), 0);
  assert_int_equal(kl_core_rounds_pending(r), 1);
  kl_core_rounds_destroy(r);
  r = make(1, 40, 8); /* a lower max_level is the root's limit: 40 - 3 */
  assert_int_equal(kl_core_rounds_max_request_level(r), 37);
  assert_int_equal(kl_core_rounds_add(r, 10, &x, 38, NULL, 1, &id, &e), KL_ERANGE);
  assert_int_equal(kl_core_rounds_add_forward(r, 2, 10, 10, 2, 5, &x, 38, &e), KL_ERANGE);
  assert_int_equal(kl_core_rounds_pending(r), 0);
  kl_core_rounds_destroy(r);
  r = make(1, 255, 0); /* a forward may be a batch's root: up to 255 - 4, more than a request (238) */
  assert_int_equal(kl_core_rounds_add_forward(r, 2, 10, 10, 2, 5, &x, 252, &e), KL_ERANGE);
  assert_int_equal(kl_core_rounds_add_forward(r, 2, 10, 10, 2, 5, &x, 251, &e), 0);
  kl_core_rounds_destroy(r);
  r = make(1, 2, 8); /* no level fits */
  assert_int_equal(kl_core_rounds_max_request_level(r), -1);
  assert_int_equal(kl_core_rounds_add(r, 10, &x, 0, NULL, 1, &id, &e), KL_ERANGE);
  kl_core_rounds_destroy(r);

  /* The bounds are tight and safe: 16 members' full batches (max_pending requests each, all at
   * the highest level a batch takes, 255 - 3 - 4) in one round are built, nothing dropped,
   * every chain verifies, and the root is at 255. A request above that goes alone: below. */
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 64), *m[16];
  static int ctx[16][8];
  kl_imprint_t in[16][8];
  for (uint64_t k = 0; k < 16; k++) {
    m[k] = make(2 + k, 255, 8);
    assert_int_equal(kl_core_rounds_max_request_level(m[k]), 252); /* a batch takes up to 252 - 4 */
    for (int i = 0; i < 8; i++) {
      in[k][i] = imp(100 + k * 8 + (uint64_t)i);
      assert_int_equal(kl_core_rounds_add(m[k], 10, &in[k][i], 248, &ctx[k][i], (uint64_t)i, &id, &e), 0);
    }
    assert_int_equal(kl_core_rounds_add(m[k], 10, &x, 2, NULL, 9, &id, &e), KL_ETOOBIG); /* max_pending */
    kl_core_leaf_t leaf;
    uint64_t second;
    uint32_t count;
    int have;
    assert_int_equal(kl_core_rounds_close_own(m[k], 10, &leaf, &second, &count, &have, &e), 0);
    assert_true(have && second == 10 && count == 8 && leaf.origin == 2 + k);
    assert_int_equal(leaf.level, 251); /* 248 + 3 */
    assert_int_equal(kl_core_rounds_add_forward_n(leader, 2 + k, 10, 10, 2 + k, leaf.request_id, &leaf.imprint,
                                                  leaf.level, count, &e), 0);
  }
  kl_core_leaf_t *leaves;
  size_t n;
  kl_imprint_t root;
  int has_root;
  assert_int_equal(kl_core_rounds_collect(leader, 10, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(n, 16);
  assert_int_equal(kl_core_rounds_collected_requests(leader), 16 * 8);
  assert_int_equal(kl_core_rounds_dropped(leader), 0);
  kl_tree_t *t;
  kl_tree_leaf_t tl[16];
  for (size_t i = 0; i < n; i++) tl[i] = (kl_tree_leaf_t){leaves[i].imprint, (uint8_t)leaves[i].level, NULL, 0};
  assert_int_equal(kl_tree_build(tl, n, KL_HASH_SHA256, 255, &t, &e), 0);
  assert_int_equal(kl_tree_root_level(t), 255);
  kl_tree_free(t);
  kl_core_round_t round = {10, leaves, n, &root, KL_HASH_SHA256};
  for (int k = 0; k < 16; k++) assert_int_equal(kl_core_rounds_committed(m[k], &round, &e), 0);
  free(leaves);
  assert_int_equal(n_answers, 16 * 8);
  for (int k = 0; k < 16; k++) {
    for (int i = 0; i < 8; i++) check_chain(answer_for(&ctx[k][i]), &in[k][i], 248, &root);
    assert_int_equal(kl_core_rounds_pending(m[k]), 0);
    kl_core_rounds_destroy(m[k]);
  }
  kl_core_rounds_destroy(leader);
}

/* A leaf that does not fit the round's tree is left out: the round is still built, the others
 * get chains, the one left out gets 0x104 when the second commits. Reaching collect with such
 * a leaf takes a change of max_pending between add and collect (the add check stops it
 * otherwise): that is the defence in depth the leader keeps anyway. (Never every leaf: the
 * last one added was admitted for a round at least as big as the one collected.) */
static void test_level_fit_on_collect(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id, fid;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 1), *follower = make(2, 255, 64);
  int bad_ctx, ctx[39];
  kl_imprint_t bad = imp(999), in[39];
  assert_int_equal(kl_core_rounds_add(leader, 50, &bad, 250, &bad_ctx, 7, &id, &e), 0); /* 250 <= 255 - 1 */
  kl_core_rounds_set_max_pending(leader, 64); /* now 249: rounds may be 6 deep */
  assert_int_equal(kl_core_rounds_add(leader, 50, &bad, 250, NULL, 8, &id, &e), KL_ERANGE);
  for (int i = 0; i < 39; i++) { /* forwarded one by one (lone requests, or an older member's), all low */
    in[i] = imp((uint64_t)i);
    assert_int_equal(kl_core_rounds_add(follower, 50, &in[i], 1, &ctx[i], 7, &fid, &e), 0);
    assert_int_equal(kl_core_rounds_add_forward(leader, 2, 50, 50, 2, fid, &in[i], 1, &e), 0);
  }
  /* 40 leaves: 6 deep; 250 + 6 > 255. */
  kl_core_rounds_t *nodes[2] = {leader, follower};
  kl_imprint_t root;
  size_t n;
  commit(leader, 50, nodes, 2, &n, &root);
  assert_int_equal(n, 39);
  assert_int_equal(kl_core_rounds_dropped(leader), 1);
  assert_int_equal(n_answers, 40);
  const got_t *g = answer_for(&bad_ctx);
  assert_int_equal(g->status, KL_STATUS_AGGR_REQUEST_TOO_LARGE);
  assert_int_equal(g->kind, KL_CORE_ANSWER_TOO_HIGH);
  for (int i = 0; i < 39; i++) check_chain(answer_for(&ctx[i]), &in[i], 1, &root);
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  assert_int_equal(kl_core_rounds_pending(follower), 0);

  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(follower);
}

/* A follower rebuilds what the leader committed, whatever its own limits: a member with a lower
 * max_level still answers from a round whose root is higher; a committed leaf whose level no
 * tree can hold (> 255) makes the round unusable (retry), never a failed node. */
static void test_committed_levels(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id, fid;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 0), *follower = make(2, 40, 8);
  kl_imprint_t hi = imp(1), lo = imp(2);
  int fctx;
  assert_int_equal(kl_core_rounds_add(leader, 70, &hi, 200, NULL, 1, &id, &e), 0);
  assert_int_equal(kl_core_rounds_add(follower, 70, &lo, 10, &fctx, 2, &fid, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 70, 70, 2, fid, &lo, 10, &e), 0);
  kl_core_rounds_t *nodes[2] = {leader, follower};
  kl_imprint_t root;
  commit(leader, 70, nodes, 2, NULL, &root);
  assert_int_equal(n_answers, 2);
  check_chain(answer_for(&fctx), &lo, 10, &root);

  n_answers = 0;
  assert_int_equal(kl_core_rounds_add(follower, 71, &lo, 10, &fctx, 3, &fid, &e), 0);
  kl_core_leaf_t l[2] = {{hi, 300, 1, 77}, {lo, 10, 2, fid}};
  kl_core_round_t r71 = {71, l, 2, &root, KL_HASH_SHA256};
  assert_int_equal(kl_core_rounds_committed(follower, &r71, &e), KL_EFORMAT);
  assert_int_equal(n_answers, 1);
  assert_int_equal(answers[0].status, KL_STATUS_UPSTREAM_ERROR);
  assert_int_equal(kl_core_rounds_pending(follower), 0);
  /* The entry's algorithm is the leader's: a member configured with another rebuilds with it. */
  n_answers = 0;
  kl_core_rounds_t *leader512;
  assert_int_equal(kl_core_rounds_create(1, KL_HASH_SHA512, 255, on_answer, NULL, &leader512, &e), 0);
  assert_int_equal(kl_core_rounds_add(follower, 72, &lo, 10, &fctx, 4, &fid, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader512, 2, 72, 72, 2, fid, &lo, 10, &e), 0);
  assert_int_equal(kl_core_rounds_add(leader512, 72, &hi, 3, NULL, 5, &id, &e), 0);
  kl_core_leaf_t *leaves;
  size_t n;
  int has_root;
  assert_int_equal(kl_core_rounds_collect(leader512, 72, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(root.alg, KL_HASH_SHA512);
  kl_core_round_t r72s = {72, leaves, n, &root, KL_HASH_SHA512};
  assert_int_equal(kl_core_rounds_committed(follower, &r72s, &e), 0);
  free(leaves);
  assert_int_equal(n_answers, 1);
  check_chain(answer_for(&fctx), &lo, 10, &root);
  kl_core_rounds_destroy(leader512);
  /* An entry whose algorithm cannot be used: like an inconsistent one. */
  n_answers = 0;
  assert_int_equal(kl_core_rounds_add(follower, 73, &lo, 10, &fctx, 4, &fid, &e), 0);
  l[1].request_id = fid;
  kl_core_round_t r73 = {73, &l[1], 1, &root, 0x7E};
  assert_int_equal(kl_core_rounds_committed(follower, &r73, &e), KL_EFORMAT);
  assert_int_equal(n_answers, 1);
  assert_int_equal(answers[0].status, KL_STATUS_UPSTREAM_ERROR);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(follower);
}

/* ---- forwards ---- */

static void test_forward_window(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_core_rounds_t *leader = make(1, 255, 0);
  kl_imprint_t x = imp(5);
  const uint64_t now = 1000;
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, now + 3, 2, 1, &x, 2, &e), KL_ESTATE);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, now - 3, 2, 2, &x, 2, &e), KL_ESTATE);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, UINT64_MAX, 2, 3, &x, 2, &e), KL_ESTATE);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, 0, 2, 4, &x, 2, &e), KL_ESTATE);
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, now + 2, 2, 5, &x, 2, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, now - 2, 2, 6, &x, 2, &e), 0);
  /* Inside the window but already collected: into the next open second. */
  kl_core_leaf_t *leaves;
  size_t n;
  kl_imprint_t root;
  int has_root;
  assert_int_equal(kl_core_rounds_collect(leader, now - 2, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(n, 1);
  assert_true(leaves[0].request_id == 6);
  free(leaves);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, now, now - 2, 2, 7, &x, 2, &e), 0);
  assert_int_equal(kl_core_rounds_collect(leader, now - 1, &leaves, &n, &root, &has_root, &e), 0);
  assert_int_equal(n, 1);
  assert_true(leaves[0].request_id == 7);
  free(leaves);
  kl_core_rounds_destroy(leader);
}

static void test_forward_limits(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 100000);
  kl_imprint_t x = imp(6);
  /* The attack: 150,000 forged forwards. At most max_pending are held. */
  size_t refused = 0;
  for (uint64_t i = 0; i < 150000; i++) {
    int rc = kl_core_rounds_add_forward(leader, 2, 500, 500, 2, i + 1, &x, 2, &e);
    if (rc) {
      assert_int_equal(rc, KL_ETOOBIG);
      refused++;
    }
  }
  assert_int_equal(kl_core_rounds_pending(leader), 100000);
  assert_int_equal(refused, 50000);
  /* Own requests share the limit. */
  assert_int_equal(kl_core_rounds_add(leader, 500, &x, 2, NULL, 1, &id, &e), KL_ETOOBIG);
  /* A duplicate at the limit is still only a duplicate. */
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 500, 500, 2, 1, &x, 2, &e), 0);
  assert_int_equal(kl_core_rounds_pending(leader), 100000);
  /* Once the second commits, the forwards are done with: room again. */
  kl_imprint_t root;
  size_t n;
  commit(leader, 500, &leader, 1, &n, &root);
  assert_int_equal(n, 100000);
  assert_int_equal(kl_core_rounds_dropped(leader), 0);
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 501, 501, 2, 200001, &x, 2, &e), 0);
  kl_core_rounds_destroy(leader);
}

static void test_forward_origin(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_core_rounds_t *leader = make(1, 255, 0);
  kl_imprint_t x = imp(7);
  assert_int_equal(kl_core_rounds_add_forward(leader, 3, 10, 10, 2, 1, &x, 2, &e), KL_EAUTH); /* 3 claims 2's */
  assert_int_equal(kl_core_rounds_add_forward(leader, 1, 10, 10, 1, 1, &x, 2, &e), KL_EAUTH); /* the leader's own */
  assert_int_equal(kl_core_rounds_add_forward(leader, 0, 10, 10, 2, 1, &x, 2, &e), KL_EAUTH); /* unauthenticated */
  assert_int_equal(kl_core_rounds_add_forward(leader, 0, 10, 10, 0, 1, &x, 2, &e), KL_EAUTH);
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 3, 10, 10, 3, 1, &x, 2, &e), 0);
  assert_int_equal(kl_core_rounds_pending(leader), 1);
  kl_core_rounds_destroy(leader);
}

/* ---- answers ---- */

/* A committed leaf under a request's id that is not that request (another imprint or level:
 * a forged or stale forward got there first) is never answered with its chain. */
static void test_mismatch_answered_retry(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t fid1, fid2, fid3;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 0), *follower = make(2, 255, 0);
  kl_imprint_t mine = imp(1), theirs = imp(2), other = imp(3);
  int c1, c2, c3;
  assert_int_equal(kl_core_rounds_add(follower, 80, &mine, 2, &c1, 1, &fid1, &e), 0);
  assert_int_equal(kl_core_rounds_add(follower, 80, &mine, 2, &c2, 2, &fid2, &e), 0);
  assert_int_equal(kl_core_rounds_add(follower, 80, &other, 4, &c3, 3, &fid3, &e), 0);
  /* Forwards that won the ids first: another imprint; the same imprint at another level. */
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 80, 80, 2, fid1, &theirs, 2, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 80, 80, 2, fid2, &mine, 3, &e), 0);
  /* The genuine ones are duplicates now. */
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 80, 80, 2, fid1, &mine, 2, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 80, 80, 2, fid2, &mine, 2, &e), 0);
  assert_int_equal(kl_core_rounds_add_forward(leader, 2, 80, 80, 2, fid3, &other, 4, &e), 0);
  kl_imprint_t root;
  size_t n;
  kl_core_rounds_t *nodes[1] = {follower};
  commit(leader, 80, nodes, 1, &n, &root);
  assert_int_equal(n, 3);
  assert_int_equal(n_answers, 3);
  for (int k = 0; k < 2; k++) {
    const got_t *g = answer_for(k == 0 ? &c1 : &c2);
    assert_int_equal(g->status, KL_STATUS_UPSTREAM_ERROR);
    assert_int_equal(g->kind, KL_CORE_ANSWER_MISMATCH);
    assert_int_equal(g->chain_len, 0);
  }
  check_chain(answer_for(&c3), &other, 4, &root);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(follower);
}

/* The tier below picks request ids: two connections (two request contexts) using the same id,
 * on the leader and on a follower, each get their own chain. */
static void test_same_request_id_two_connections(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id, fid;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 0), *follower = make(2, 255, 0);
  int conn[4];
  kl_imprint_t in[4] = {imp(41), imp(42), imp(43), imp(44)};
  unsigned lv[4] = {0, 5, 1, 7};
  for (int i = 0; i < 4; i++) {
    if (i < 2) {
      assert_int_equal(kl_core_rounds_add(leader, 90, &in[i], lv[i], &conn[i], 42, &id, &e), 0);
    } else {
      assert_int_equal(kl_core_rounds_add(follower, 90, &in[i], lv[i], &conn[i], 42, &fid, &e), 0);
      assert_int_equal(kl_core_rounds_add_forward(leader, 2, 90, 90, 2, fid, &in[i], lv[i], &e), 0);
    }
  }
  kl_imprint_t root;
  size_t n;
  kl_core_rounds_t *nodes[2] = {leader, follower};
  commit(leader, 90, nodes, 2, &n, &root);
  assert_int_equal(n, 3); /* the leader's two in one batch, the follower's two as forwarded */
  assert_int_equal(n_answers, 4);
  for (int i = 0; i < 4; i++) {
    const got_t *g = answer_for(&conn[i]);
    assert_true(g->client_id == 42);
    check_chain(g, &in[i], lv[i], &root);
  }
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(follower);
}

/* ---- batches ---- */

/* A follower's own leaf for a second: a batch's root (two or more requests) or the lone
 * request; later requests for a closed second go to the next. */
static kl_core_leaf_t close_one(kl_core_rounds_t *r, uint64_t second, uint64_t want_second, uint32_t want_count) {
  kl_core_leaf_t leaf;
  uint64_t s;
  uint32_t count;
  int have;
  kl_err_t e = {0};
  assert_int_equal(kl_core_rounds_close_own(r, second, &leaf, &s, &count, &have, &e), 0);
  assert_true(have);
  assert_true(s == want_second);
  assert_int_equal(count, want_count);
  return leaf;
}

static void forward_leaf(kl_core_rounds_t *leader, uint64_t member, uint64_t now, uint64_t second, const kl_core_leaf_t *l,
                         uint32_t count) {
  kl_err_t e = {0};
  assert_int_equal(l->origin, member);
  assert_int_equal(kl_core_rounds_add_forward_n(leader, member, now, second, member, l->request_id, &l->imprint,
                                                l->level, count, &e), 0);
}

static void test_batches(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 0), *f2 = make(2, 255, 0), *f3 = make(3, 255, 0);
  int lc[3], c2[5], c3;
  kl_imprint_t li[3], i2[5], i3 = imp(300);
  unsigned lv2[5] = {0, 3, 1, 9, 0};
  for (int i = 0; i < 3; i++) {
    li[i] = imp(100 + (uint64_t)i);
    assert_int_equal(kl_core_rounds_add(leader, 100, &li[i], 2, &lc[i], 1, &id, &e), 0);
  }
  for (int i = 0; i < 4; i++) {
    i2[i] = imp(200 + (uint64_t)i);
    assert_int_equal(kl_core_rounds_add(f2, 100, &i2[i], lv2[i], &c2[i], (uint64_t)i, &id, &e), 0);
  }
  assert_int_equal(kl_core_rounds_add(f3, 100, &i3, 5, &c3, 1, &id, &e), 0);
  /* f2's fifth is too high for a batch (above 238 - 4): it goes alone, before the batch. */
  int hc;
  kl_imprint_t hi = imp(299);
  assert_int_equal(kl_core_rounds_add(f2, 100, &hi, 237, &hc, 9, &id, &e), 0);
  /* Nothing to close yet before 100: nothing held for 99. */
  kl_core_leaf_t leaf;
  uint64_t s;
  uint32_t count;
  int have = 1;
  assert_int_equal(kl_core_rounds_close_own(f2, 99, &leaf, &s, &count, &have, &e), 0);
  assert_false(have);
  kl_core_leaf_t h2 = close_one(f2, 100, 100, 1);
  assert_true(kl_imprint_eq(&h2.imprint, &hi) && h2.level == 237);
  kl_core_leaf_t b2 = close_one(f2, 100, 100, 4), l3 = close_one(f3, 100, 100, 1);
  assert_true(kl_imprint_eq(&l3.imprint, &i3) && l3.level == 5); /* a lone request goes as itself */
  assert_false(kl_imprint_eq(&b2.imprint, &i2[0]));
  assert_int_equal(b2.level, 9 + 2); /* the highest request plus the batch tree's depth */
  assert_int_equal(kl_core_rounds_close_own(f2, 100, &leaf, &s, &count, &have, &e), 0);
  assert_false(have); /* closed once */
  /* A request for a closed second goes into the next one. */
  i2[4] = imp(204);
  assert_int_equal(kl_core_rounds_add(f2, 100, &i2[4], 0, &c2[4], 4, &id, &e), 0);
  forward_leaf(leader, 2, 100, 100, &b2, 4);
  forward_leaf(leader, 2, 100, 100, &h2, 1);
  forward_leaf(leader, 3, 100, 100, &l3, 1);
  forward_leaf(leader, 2, 100, 100, &b2, 4); /* a duplicate: ignored */
  kl_core_rounds_t *nodes[3] = {leader, f2, f3};
  kl_imprint_t root;
  size_t n;
  commit(leader, 100, nodes, 3, &n, &root);
  assert_int_equal(n, 4); /* the leader's batch, f2's batch and high request, f3's request */
  assert_int_equal(kl_core_rounds_collected_requests(leader), 9);
  assert_int_equal(n_answers, 9);
  assert_int_equal(check_chain(answer_for(&hc), &hi, 237, &root), 2);
  /* 4 leaves: 2 links up the round; f2's 4 add 2 links of their batch, the leader's 3 one or two
   * (an odd node moves up unchanged). */
  size_t links = 0;
  for (int i = 0; i < 3; i++) links += check_chain(answer_for(&lc[i]), &li[i], 2, &root);
  assert_int_equal(links, 4 + 4 + 3);
  for (int i = 0; i < 4; i++) assert_int_equal(check_chain(answer_for(&c2[i]), &i2[i], lv2[i], &root), 4);
  assert_int_equal(check_chain(answer_for(&c3), &i3, 5, &root), 2);
  assert_int_equal(kl_core_rounds_pending(f2), 1); /* the request for 101 */
  assert_int_equal(kl_core_rounds_pending(f3), 0);
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  /* 101: f2's lone request. */
  kl_core_leaf_t l2 = close_one(f2, 101, 101, 1);
  forward_leaf(leader, 2, 101, 101, &l2, 1);
  commit(leader, 101, nodes, 3, &n, &root);
  assert_int_equal(n, 1);
  assert_int_equal(n_answers, 10);
  check_chain(answer_for(&c2[4]), &i2[4], 0, &root);
  assert_int_equal(kl_core_rounds_pending(f2), 0);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(f2);
  kl_core_rounds_destroy(f3);
}

/* A batch that reaches the leader after it collected its second goes into the next round and is
 * answered from it; a batch that never reaches it is answered "retry" one round later. */
static void test_batch_late_and_lost(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 0), *late = make(2, 255, 0), *lost = make(3, 255, 0);
  int lc[2], gc[2];
  kl_imprint_t li[2] = {imp(1), imp(2)}, gi[2] = {imp(3), imp(4)};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(kl_core_rounds_add(late, 100, &li[i], 1, &lc[i], 1, &id, &e), 0);
    assert_int_equal(kl_core_rounds_add(lost, 100, &gi[i], 1, &gc[i], 1, &id, &e), 0);
  }
  kl_core_leaf_t bl = close_one(late, 100, 100, 2);
  close_one(lost, 100, 100, 2); /* never sent: the link was down */
  kl_core_rounds_t *nodes[3] = {leader, late, lost};
  kl_imprint_t root;
  size_t n;
  commit(leader, 100, nodes, 3, &n, &root);
  assert_int_equal(n, 0);
  assert_int_equal(n_answers, 0); /* both wait one more round */
  forward_leaf(leader, 2, 101, 100, &bl, 2); /* late: into 101 */
  commit(leader, 101, nodes, 3, &n, &root);
  assert_int_equal(n, 1);
  assert_int_equal(n_answers, 4);
  for (int i = 0; i < 2; i++) {
    const got_t *g = answer_for(&lc[i]);
    assert_true(g->second == 101);
    check_chain(g, &li[i], 1, &root);
    g = answer_for(&gc[i]);
    assert_int_equal(g->status, KL_STATUS_UPSTREAM_ERROR);
    assert_int_equal(g->kind, KL_CORE_ANSWER_RETRY);
  }
  assert_int_equal(kl_core_rounds_pending(late), 0);
  assert_int_equal(kl_core_rounds_pending(lost), 0);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(late);
  kl_core_rounds_destroy(lost);
}

/* A leaf under a batch's id that is not the batch's root (a forged or stale forward got there
 * first): no request of the batch gets a chain. The leader's own batch left out for its level:
 * every request in it gets 0x104. */
static void test_batch_mismatch_and_dropped(void **state) {
  (void)state;
  kl_err_t e = {0};
  uint64_t id;
  n_answers = 0;
  kl_core_rounds_t *leader = make(1, 255, 2), *f2 = make(2, 255, 0);
  int fc[2], lc[2];
  kl_imprint_t fi[2] = {imp(1), imp(2)}, li[2] = {imp(3), imp(4)}, forged = imp(5);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(kl_core_rounds_add(f2, 60, &fi[i], 1, &fc[i], 1, &id, &e), 0);
    assert_int_equal(kl_core_rounds_add(leader, 60, &li[i], 250, &lc[i], 1, &id, &e), 0); /* a batch's: 255 - 1 - 4 */
  }
  kl_core_rounds_set_max_pending(leader, 64); /* now 249: rounds of up to 64 leaves may be 6 deep */
  kl_core_leaf_t b = close_one(f2, 60, 60, 2);
  kl_core_leaf_t fake = b;
  fake.imprint = forged;
  forward_leaf(leader, 2, 60, 60, &fake, 2);
  forward_leaf(leader, 2, 60, 60, &b, 2); /* the genuine one is a duplicate now */
  for (uint64_t k = 0; k < 38; k++) { /* low lone requests of member 3: 40 leaves, 6 deep */
    kl_imprint_t x = imp(1000 + k);
    assert_int_equal(kl_core_rounds_add_forward(leader, 3, 60, 60, 3, k + 1, &x, 0, &e), 0);
  }
  kl_core_rounds_t *nodes[2] = {leader, f2};
  kl_imprint_t root;
  size_t n;
  commit(leader, 60, nodes, 2, &n, &root);
  assert_int_equal(n, 39); /* the leader's batch (251 + 6 > 255) left out */
  assert_int_equal(kl_core_rounds_dropped(leader), 2);
  assert_int_equal(n_answers, 4);
  for (int i = 0; i < 2; i++) {
    const got_t *g = answer_for(&fc[i]);
    assert_int_equal(g->kind, KL_CORE_ANSWER_MISMATCH);
    assert_int_equal(g->status, KL_STATUS_UPSTREAM_ERROR);
    g = answer_for(&lc[i]);
    assert_int_equal(g->kind, KL_CORE_ANSWER_TOO_HIGH);
    assert_int_equal(g->status, KL_STATUS_AGGR_REQUEST_TOO_LARGE);
  }
  assert_int_equal(kl_core_rounds_pending(leader), 0);
  assert_int_equal(kl_core_rounds_pending(f2), 0);
  kl_core_rounds_destroy(leader);
  kl_core_rounds_destroy(f2);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_leader_and_follower),
                                     cmocka_unit_test(test_lost_round_and_bad_root),
                                     cmocka_unit_test(test_depth),
                                     cmocka_unit_test(test_level_fit_on_add),
                                     cmocka_unit_test(test_level_fit_on_collect),
                                     cmocka_unit_test(test_committed_levels),
                                     cmocka_unit_test(test_forward_window),
                                     cmocka_unit_test(test_forward_limits),
                                     cmocka_unit_test(test_forward_origin),
                                     cmocka_unit_test(test_mismatch_answered_retry),
                                     cmocka_unit_test(test_same_request_id_two_connections),
                                     cmocka_unit_test(test_batches),
                                     cmocka_unit_test(test_batch_late_and_lost),
                                     cmocka_unit_test(test_batch_mismatch_and_dropped)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
