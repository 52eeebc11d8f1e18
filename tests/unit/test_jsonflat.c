/* The strict flat-JSON reader (lib/daemon/src/jsonflat.c): what the gateway's JSON API takes and
 * what it refuses, each refusal with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keyless/jsonflat.h"

static int parse(const char *s, kl_jsonflat_kv_t *kv, size_t *n, kl_err_t *e) {
  return kl_jsonflat_parse((const uint8_t *)s, strlen(s), kv, 4, n, e);
}

static void accepts_objects_of_strings(void **state) {
  (void)state;
  kl_jsonflat_kv_t kv[4];
  size_t n;
  kl_err_t e = {0};
  assert_int_equal(parse(" {\"hash\" : \"SHA-256:ab\" ,\"x\":\"\"}\n", kv, &n, &e), 0);
  assert_int_equal(n, 2);
  assert_string_equal(kl_jsonflat_get(kv, n, "hash"), "SHA-256:ab");
  assert_string_equal(kl_jsonflat_get(kv, n, "x"), "");
  assert_null(kl_jsonflat_get(kv, n, "y"));
  assert_int_equal(parse("{}", kv, &n, &e), 0);
  assert_int_equal(n, 0);
  /* escapes, a surrogate pair, raw UTF-8 */
  assert_int_equal(parse("{\"k\":\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\xc3\xa9\"}", kv, &n, &e), 0);
  assert_string_equal(kv[0].value, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9");
}

static void refuses_with_a_reason(void **state) {
  (void)state;
  static const struct {
    const char *in, *why;
  } bad[] = {
      {"", "an object expected"},
      {"[\"a\"]", "an object expected"},
      {"{\"a\":1}", "a string expected"},
      {"{\"a\":{\"b\":\"c\"}}", "a string expected"},
      {"{\"a\":\"b\",\"a\":\"c\"}", "a repeated key"},
      {"{\"a\":\"b\"} x", "bytes after the object"},
      {"{\"a\":\"b\",}", "a string expected"},
      {"{\"a\" \"b\"}", "':' expected"},
      {"{\"a\":\"b\"", "',' or '}' expected"},
      {"{\"a\":\"b\x01\"}", "a control character"},
      {"{\"a\":\"\\x\"}", "an unknown escape"},
      {"{\"a\":\"\\u00\"}", "a bad hex digit"},
      {"{\"a\":\"\\u0000\"}", "\\u0000"},
      {"{\"a\":\"\\udc00\"}", "a lone low surrogate"},
      {"{\"a\":\"\\ud800x\"}", "a lone high surrogate"},
      {"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8"},
      {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},
      {"{\"a\":\"b", "an unterminated string"},
      {"{\"1\":\"\",\"2\":\"\",\"3\":\"\",\"4\":\"\",\"5\":\"\"}", "too many members"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kl_jsonflat_kv_t kv[4];
    size_t n = 99;
    kl_err_t e = {0};
    assert_int_equal(parse(bad[i].in, kv, &n, &e), KL_EFORMAT);
    assert_int_equal(n, 0);
    if (strstr(e.msg, bad[i].why) == NULL || strstr(e.msg, "at byte") == NULL) fail_msg("%s: got '%s'", bad[i].in, e.msg);
  }
}

static void refuses_long_strings(void **state) {
  (void)state;
  char in[400], v[300];
  memset(v, 'a', 257);
  v[257] = '\0';
  snprintf(in, sizeof in, "{\"k\":\"%s\"}", v);
  kl_jsonflat_kv_t kv[4];
  size_t n;
  kl_err_t e = {0};
  assert_int_equal(parse(in, kv, &n, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "longer than 256"));
  v[256] = '\0';
  snprintf(in, sizeof in, "{\"k\":\"%s\"}", v);
  assert_int_equal(parse(in, kv, &n, &e), 0);
  assert_int_equal(strlen(kv[0].value), 256);
}

static void quote_writes_json(void **state) {
  (void)state;
  char q[64];
  kl_json_quote("a\"b\\c\n\x01", q, sizeof q);
  assert_string_equal(q, "\"a\\\"b\\\\c\\u000a\\u0001\"");
  kl_json_quote("too long for this", q, 8);
  assert_string_equal(q, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accepts_objects_of_strings),
      cmocka_unit_test(refuses_with_a_reason),
      cmocka_unit_test(refuses_long_strings),
      cmocka_unit_test(quote_writes_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
