/* kl_repl_peek: what an extender's probe reads from a core it does not follow. A Subscribe, an
 * empty Entries (the core's heartbeat: its committed_last), a full signed-or-not batch (its
 * seconds and committed_last, nothing applied anywhere), an Error and garbage. */
#include <stdlib.h>
#include <string.h>

#include "keyless/replica.h"
#include "testutil.h"

static char core_dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("peek", core_dir, sizeof core_dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(core_dir);
}

/* The payload of the one frame in b. */
static const uint8_t *payload(const kl_buf_t *b, size_t *n) {
  kl_err_t e = {0};
  assert_int_equal(kl_frame_peek(b->p, b->len, KL_REPL_MAX_FRAME, n, &e), 1);
  return b->p + KL_FRAME_HDR;
}

static void test_subscribe(void **state) {
  (void)state;
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_err_t e = {0};
  size_t n;
  assert_int_equal(kl_repl_encode_subscribe(&b, UINT64_MAX / 2, 0, &e), 0);
  const uint8_t *pl = payload(&b, &n);
  assert_int_equal(kl_repl_peek(pl, n, &res, &e), 0);
  assert_true(res.is_subscribe);
  assert_false(res.is_entries);
  assert_true(res.sub.after == UINT64_MAX / 2);
  assert_int_equal(res.sub.from_genesis, 0);
  kl_buf_free(&b);
}

static void test_entries(void **state) {
  (void)state;
  const uint64_t G = 1800000000;
  kl_cal_t *core;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  size_t n;
  assert_int_equal(kl_cal_create(core_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(core_dir, NULL, &core, &e), 0);
  for (uint64_t t = G; t < G + 10; t++) {
    kl_imprint_t x;
    kl_hash(KL_HASH_SHA256, &t, sizeof t, &x, NULL);
    kl_cal_entry_t en = {t, &x};
    assert_int_equal(kl_cal_append(core, &en, 1, &e), 0);
  }
  assert_int_equal(kl_repl_encode_entries(&b, core, G + 3, G + 7, &e), 0);
  const uint8_t *pl = payload(&b, &n);
  assert_int_equal(kl_repl_peek(pl, n, &res, &e), 0);
  assert_true(res.is_entries);
  assert_true(res.genesis == G);
  assert_true(res.first == G + 3 && res.last == G + 7);
  assert_true(res.committed_last == G + 9);
  assert_int_equal(res.applied, 0);
  kl_cal_close(core);
  kl_buf_free(&b);
}

/* Protobuf by hand (the generated code is the library's, not the tests'). */
static void pb_varint(kl_buf_t *b, uint64_t v) {
  for (; v >= 0x80; v >>= 7) kl_buf_put_u8(b, (uint8_t)(v | 0x80));
  kl_buf_put_u8(b, (uint8_t)v);
}
static void pb_len(kl_buf_t *b, unsigned field, const uint8_t *p, size_t n) {
  pb_varint(b, field << 3 | 2);
  pb_varint(b, n);
  kl_buf_put(b, p, n);
}

/* What a core answers a probe with: Entries{genesis, committed_last} with no entries. */
static void test_heartbeat(void **state) {
  (void)state;
  kl_buf_t en = KL_BUF_INIT, m = KL_BUF_INIT;
  pb_varint(&en, 1 << 3 | 0);
  pb_varint(&en, 1700000000);
  pb_varint(&en, 3 << 3 | 0);
  pb_varint(&en, 1700000123);
  pb_len(&m, 2, en.p, en.len);
  kl_repl_result_t res;
  kl_err_t e = {0};
  assert_int_equal(kl_repl_peek(m.p, m.len, &res, &e), 0);
  assert_true(res.is_entries);
  assert_true(res.committed_last == 1700000123 && res.genesis == 1700000000);
  assert_true(res.first == res.last + 1); /* no seconds */
  kl_buf_free(&en);
  kl_buf_free(&m);
}

static void test_error_and_garbage(void **state) {
  (void)state;
  kl_buf_t er = KL_BUF_INIT, m = KL_BUF_INIT;
  pb_varint(&er, 1 << 3 | 0);
  pb_varint(&er, 5);
  pb_len(&er, 2, (const uint8_t *)"not now", 7);
  pb_len(&m, 3, er.p, er.len);
  kl_repl_result_t res;
  kl_err_t e = {0};
  assert_int_equal(kl_repl_peek(m.p, m.len, &res, &e), KL_ESERVICE);
  assert_non_null(strstr(e.msg, "not now"));
  kl_buf_free(&er);
  kl_buf_free(&m);
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
  assert_int_equal(kl_repl_peek(junk, sizeof junk, &res, &e), KL_EFORMAT);
  assert_false(res.is_entries || res.is_subscribe);
  assert_int_equal(kl_repl_peek(junk, 0, &res, &e), KL_EFORMAT); /* an empty message */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_subscribe),
      cmocka_unit_test_setup_teardown(test_entries, setup, teardown),
      cmocka_unit_test(test_heartbeat),
      cmocka_unit_test(test_error_and_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
