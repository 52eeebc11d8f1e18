/* TLV codec: header forms, flags, bounds, integers, strings, canonical writer. */
#include <stdlib.h>
#include <string.h>

#include "keyless/tlv.h"
#include "testutil.h"

static void test_tlv8_and_tlv16(void **state) {
  (void)state;
  const uint8_t in[] = {0x21, 0x02, 0xAA, 0xBB, 0x88, 0x01, 0x00, 0x01, 0xCC};
  kl_tlv_iter_t it;
  kl_tlv_t t;
  kl_err_t e = {0};
  kl_tlv_iter_init(&it, in, in, sizeof in);
  assert_int_equal(kl_tlv_next(&it, &t, &e), 1);
  assert_int_equal(t.type, 0x01);
  assert_true(kl_tlv_is_forward(&t));
  assert_false(kl_tlv_is_noncritical(&t));
  assert_int_equal(t.len, 2);
  assert_int_equal(t.value[1], 0xBB);
  assert_int_equal(kl_tlv_next(&it, &t, &e), 1);
  assert_int_equal(t.type, 0x801);
  assert_true(kl_tlv_is_16(&t));
  assert_int_equal(t.len, 1);
  assert_int_equal(t.offset, 4);
  assert_int_equal(kl_tlv_next(&it, &t, &e), 0);
}

static void test_truncated(void **state) {
  (void)state;
  const uint8_t in[] = {0x88, 0x01, 0x00, 0x05, 0x01};
  kl_tlv_t t;
  kl_err_t e = {0};
  assert_int_equal(kl_tlv_parse_one(in, sizeof in, &t, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "claims 5 value bytes"));
  assert_int_equal(kl_tlv_parse_one(in, 3, &t, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "truncated TLV16 header"));
  assert_int_equal(kl_tlv_parse_one(in, 1, &t, &e), KL_EFORMAT);
  const uint8_t trailing[] = {0x01, 0x00, 0x00};
  assert_int_equal(kl_tlv_parse_one(trailing, sizeof trailing, &t, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "trailing"));
}

static void test_uint(void **state) {
  (void)state;
  kl_tlv_t t;
  uint64_t v = 99;
  const uint8_t zero[] = {0x02, 0x00};
  assert_int_equal(kl_tlv_parse_one(zero, sizeof zero, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_uint(&t, &v, NULL), 0);
  assert_int_equal(v, 0);
  const uint8_t lead[] = {0x02, 0x02, 0x00, 0x01};
  assert_int_equal(kl_tlv_parse_one(lead, sizeof lead, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_uint(&t, &v, NULL), KL_EFORMAT);
  const uint8_t big[] = {0x02, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  assert_int_equal(kl_tlv_parse_one(big, sizeof big, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_uint(&t, &v, NULL), KL_EFORMAT);
  const uint8_t max[] = {0x02, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  assert_int_equal(kl_tlv_parse_one(max, sizeof max, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_uint(&t, &v, NULL), 0);
  assert_true(v == UINT64_MAX);
}

static void test_str(void **state) {
  (void)state;
  kl_tlv_t t;
  const char *s;
  const uint8_t ok[] = {0x01, 0x05, 'a', 'n', 'o', 'n', 0};
  assert_int_equal(kl_tlv_parse_one(ok, sizeof ok, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_str(&t, &s, NULL), 0);
  assert_string_equal(s, "anon");
  const uint8_t noterm[] = {0x01, 0x02, 'a', 'b'};
  assert_int_equal(kl_tlv_parse_one(noterm, sizeof noterm, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_str(&t, &s, NULL), KL_EFORMAT);
  const uint8_t embedded[] = {0x01, 0x03, 'a', 0, 0};
  assert_int_equal(kl_tlv_parse_one(embedded, sizeof embedded, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_str(&t, &s, NULL), KL_EFORMAT);
  const uint8_t empty[] = {0x01, 0x00};
  assert_int_equal(kl_tlv_parse_one(empty, sizeof empty, &t, NULL), 0);
  assert_int_equal(kl_tlv_get_str(&t, &s, NULL), KL_EFORMAT);
}

static void test_writer_canonical(void **state) {
  (void)state;
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  kl_tlv_put_uint(&b, 0x02, 0, 0);
  kl_tlv_put_uint(&b, 0x03, 0, 0x1234);
  kl_tlv_put_str(&b, 0x01, KL_TLV_FLAG_N | KL_TLV_FLAG_F, "anon");
  assert_int_equal(kl_tlv_close(&b, m, 0x04, 0), 0);
  const uint8_t want[] = {0x04, 0x0D, 0x02, 0x00, 0x03, 0x02, 0x12, 0x34,
                          0x61, 0x05, 'a',  'n',  'o',  'n',  0x00};
  assert_int_equal(b.len, sizeof want);
  assert_memory_equal(b.p, want, sizeof want);
  kl_buf_reset(&b);
  m = kl_tlv_open(&b);
  kl_tlv_put_uint(&b, 0x02, 0, 1);
  assert_int_equal(kl_tlv_close(&b, m, 0x801, 0), 0);
  const uint8_t want16[] = {0x88, 0x01, 0x00, 0x03, 0x02, 0x01, 0x01};
  assert_memory_equal(b.p, want16, sizeof want16);
  /* Long value forces TLV16 for a small type. */
  kl_buf_reset(&b);
  uint8_t big[300];
  memset(big, 7, sizeof big);
  kl_tlv_put_bytes(&b, 0x02, 0, big, sizeof big);
  assert_int_equal(b.p[0], 0x80);
  assert_int_equal(b.p[1], 0x02);
  assert_int_equal(b.p[2], 0x01);
  assert_int_equal(b.p[3], 0x2C);
  /* Over 65,535 bytes cannot be encoded. */
  kl_buf_reset(&b);
  m = kl_tlv_open(&b);
  uint8_t *huge = calloc(1, 70000);
  assert_non_null(huge);
  kl_buf_put(&b, huge, 70000);
  free(huge);
  assert_int_equal(kl_tlv_close(&b, m, 0x800, 0), KL_ETOOBIG);
  assert_false(kl_buf_ok(&b));
  kl_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tlv8_and_tlv16), cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_uint),           cmocka_unit_test(test_str),
      cmocka_unit_test(test_writer_canonical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
