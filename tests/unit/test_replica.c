/* Calendar replication: frames, Subscribe, Entries from a core calendar applied to a replica
 * that then agrees root for root; wrong genesis, gaps and garbage are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/replica.h"
#include "testutil.h"

static char core_dir[256], rep_dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("core", core_dir, sizeof core_dir);
  tu_mkdtemp("rep", rep_dir, sizeof rep_dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(core_dir) | tu_rmrf(rep_dir);
}

static void test_frames(void **state) {
  (void)state;
  kl_buf_t b = KL_BUF_INIT;
  size_t n;
  kl_err_t e = {0};
  kl_frame_put(&b, (const uint8_t *)"hello", 5);
  assert_int_equal(b.len, 9);
  assert_int_equal(kl_frame_peek(b.p, 3, 100, &n, &e), 0);
  assert_int_equal(kl_frame_peek(b.p, 8, 100, &n, &e), 0);
  assert_int_equal(kl_frame_peek(b.p, 9, 100, &n, &e), 1);
  assert_int_equal(n, 5);
  assert_int_equal(kl_frame_peek(b.p, 9, 4, &n, &e), -1);
  assert_int_equal(e.code, KL_ETOOBIG);
  kl_buf_free(&b);
}

static void fill_core(kl_cal_t **core, uint64_t G, int n) {
  kl_err_t e = {0};
  assert_int_equal(kl_cal_create(core_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(core_dir, NULL, core, &e), 0);
  for (int k = 0; k < n; k++) {
    kl_imprint_t x;
    uint64_t t = G + (uint64_t)k;
    if (k % 5 == 2) continue; /* empty seconds */
    kl_hash(KL_HASH_SHA256, &t, sizeof t, &x, NULL);
    kl_cal_entry_t en = {t, &x};
    assert_int_equal(kl_cal_append(*core, &en, 1, &e), 0);
  }
}

static void test_replicate(void **state) {
  (void)state;
  const uint64_t G = 1800000000;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  fill_core(&core, G, 50);
  assert_int_equal(kl_cal_create(rep_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(rep_dir, NULL, &rep, &e), 0);
  /* The replica subscribes; the core answers in two batches. */
  assert_int_equal(kl_repl_encode_subscribe(&b, 0, 1, &e), 0);
  size_t n, applied;
  int is_sub;
  kl_repl_subscribe_t sub;
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  assert_int_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, NULL, &sub, &is_sub, &applied, &e), 0);
  assert_true(is_sub && sub.from_genesis);
  uint64_t cuts[3][2] = {{G, G + 20}, {G + 21, G + 49}};
  for (int k = 0; k < 2; k++) {
    kl_buf_reset(&b);
    assert_int_equal(kl_repl_encode_entries(&b, core, cuts[k][0], cuts[k][1], &e), 0);
    assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
    if (kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e)) fail_msg("%s", e.msg);
    assert_false(is_sub);
    assert_int_equal(applied, cuts[k][1] - cuts[k][0] + 1);
  }
  for (uint64_t P = G; P < G + 50; P++) {
    kl_imprint_t a, c;
    assert_int_equal(kl_cal_root(core, P, &a, &e), 0);
    assert_int_equal(kl_cal_root(rep, P, &c, &e), 0);
    assert_true(kl_imprint_eq(&a, &c));
  }
  /* The same batch again: a repeat, refused, nothing changes. */
  assert_int_not_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e), 0);
  assert_non_null(strstr(e.msg, "expected"));
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(rep, &info, &e), 0);
  assert_true(info.last == G + 49);
  /* Garbage. */
  const uint8_t junk[] = {0xFF, 0xFF, 0xFF, 0x01, 0x02};
  assert_int_equal(kl_repl_handle(junk, sizeof junk, rep, &sub, &is_sub, &applied, &e), KL_EFORMAT);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

static void test_wrong_genesis(void **state) {
  (void)state;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  size_t n, applied;
  int is_sub;
  kl_repl_subscribe_t sub;
  fill_core(&core, 1000, 10);
  assert_int_equal(kl_cal_create(rep_dir, 999, NULL, &e), 0);
  assert_int_equal(kl_cal_open(rep_dir, NULL, &rep, &e), 0);
  assert_int_equal(kl_repl_encode_entries(&b, core, 1000, 1009, &e), 0);
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  assert_int_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "genesis"));
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frames),
      cmocka_unit_test_setup_teardown(test_replicate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_genesis, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
