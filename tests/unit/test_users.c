/* The users file: "login:key" lines, comments, indentation, CRLF, keys with colons and
 * spaces, lookups, and every refusal with its line number. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyless/users.h"
#include "testutil.h"

static kl_users_t *parse(const char *text, kl_err_t *e) {
  kl_users_t *u = NULL;
  kl_err_clear(e);
  int r = kl_users_parse("users", text, strlen(text), &u, e);
  if (r) assert_null(u);
  return u;
}

static void test_parse_and_lookup(void **state) {
  (void)state;
  kl_err_t e;
  kl_users_t *u = parse("# logins\n"
                        "\n"
                        "anon:anon\n"
                        "   # indented comment\n"
                        "  alice:s3cret:with:colons and spaces  \r\n"
                        "bob:b\r\n"
                        "zed:last-line-without-newline",
                        &e);
  assert_non_null(u);
  assert_int_equal(kl_users_count(u), 4);
  size_t n = 0;
  const char *k = kl_users_key(u, "alice", &n);
  assert_non_null(k);
  assert_int_equal(n, strlen("s3cret:with:colons and spaces"));
  assert_memory_equal(k, "s3cret:with:colons and spaces", n);
  assert_string_equal(kl_users_key(u, "anon", &n), "anon");
  assert_string_equal(kl_users_key(u, "bob", &n), "b");
  assert_string_equal(kl_users_key(u, "zed", &n), "last-line-without-newline");
  assert_null(kl_users_key(u, "mallory", &n));
  assert_null(kl_users_key(u, "ALICE", &n)); /* logins are case-sensitive */
  assert_null(kl_users_key(u, "", &n));
  assert_null(kl_users_key(u, NULL, &n));
  kl_users_free(u);

  u = parse("", &e); /* an empty file is valid: nobody may log in */
  assert_non_null(u);
  assert_int_equal(kl_users_count(u), 0);
  assert_null(kl_users_key(u, "anon", NULL));
  kl_users_free(u);
}

static void expect_error(const char *text, const char *want) {
  kl_err_t e;
  kl_users_t *u = parse(text, &e);
  if (u) {
    kl_users_free(u);
    fail_msg("accepted: %s", text);
  }
  if (strcmp(e.msg, want) != 0) fail_msg("message\n  got:  %s\n  want: %s", e.msg, want);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("anon:anon\njustaword\n", "users:2: expected \"login:key\"");
  expect_error(":key\n", "users:1: empty login");
  expect_error("# x\nanon:\n", "users:2: empty key for login 'anon'");
  expect_error("a:1\nb:2\na:3\n", "users: login 'a' is given twice");
  expect_error("a:b\x01\n", "users:1: control character in login or key");
  char big[400];
  memset(big, 'k', sizeof big);
  memcpy(big, "a:", 2);
  big[sizeof big - 1] = '\0';
  expect_error(big, "users:1: login or key longer than 255 bytes");
  kl_err_t e;
  kl_users_t *u;
  assert_int_equal(kl_users_parse("users", "a:b\0c", 5, &u, &e), KL_EFORMAT);
  assert_string_equal(e.msg, "users: holds a NUL byte");
  assert_int_equal(kl_users_load("/nonexistent/users", &u, &e), KL_EIO);
  assert_non_null(strstr(e.msg, "/nonexistent/users: cannot open"));
}

static void test_load_file(void **state) {
  (void)state;
  char path[] = "/tmp/kl-users-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char text[] = "anon:anon\nops:k3y\n";
  assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
  close(fd);
  kl_users_t *u;
  kl_err_t e;
  assert_int_equal(kl_users_load(path, &u, &e), 0);
  assert_int_equal(kl_users_count(u), 2);
  assert_string_equal(kl_users_key(u, "ops", NULL), "k3y");
  kl_users_free(u);
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_lookup),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_load_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
