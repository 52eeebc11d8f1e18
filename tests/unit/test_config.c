/* INI configuration with declared keys: defaults, conversions, ranges, checks, and the exact
 * messages (file, line, key) for every kind of mistake. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyless/config.h"
#include "testutil.h"

typedef struct conf {
  char *listen, *dir, *name;
  int64_t port;
  bool verbose;
  uint64_t max_body, timeout_ms;
} conf_t;

static int check_no_space(const void *f, char *msg, size_t n) {
  if (strchr(*(char *const *)f, ' ') == NULL) return 0;
  snprintf(msg, n, "must not contain spaces");
  return -1;
}

static const kl_cfg_key_t keys[] = {
    {"", "name", KL_CFG_STR, offsetof(conf_t, name), "node", 0, 0, NULL},
    {"server", "listen", KL_CFG_STR, offsetof(conf_t, listen), "127.0.0.1", 0, 0, check_no_space},
    {"server", "port", KL_CFG_INT, offsetof(conf_t, port), "8080", 1, 65535, NULL},
    {"server", "verbose", KL_CFG_BOOL, offsetof(conf_t, verbose), "no", 0, 0, NULL},
    {"limits", "max_body", KL_CFG_SIZE, offsetof(conf_t, max_body), "64k", 16, 65539, NULL},
    {"limits", "timeout", KL_CFG_DURATION, offsetof(conf_t, timeout_ms), "30s", 0, 0, NULL},
    {"calendar", "dir", KL_CFG_STR, offsetof(conf_t, dir), NULL, 0, 0, NULL},
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* Loads text; returns the code and leaves the message in msg. */
static int load(const char *text, conf_t *c, char *msg) {
  kl_err_t e;
  kl_err_clear(&e);
  memset(c, 0, sizeof *c);
  int r = kl_cfg_load_string("test.conf", text, keys, NKEYS, c, &e);
  strcpy(msg, e.msg);
  return r;
}

static void test_defaults_and_values(void **state) {
  (void)state;
  conf_t c;
  char msg[KL_ERR_MSG_MAX];
  assert_int_equal(load("[calendar]\ndir = /var/lib/cal\n", &c, msg), 0);
  assert_string_equal(c.name, "node");
  assert_string_equal(c.listen, "127.0.0.1");
  assert_int_equal(c.port, 8080);
  assert_false(c.verbose);
  assert_int_equal(c.max_body, 65536);
  assert_int_equal(c.timeout_ms, 30000);
  assert_string_equal(c.dir, "/var/lib/cal");
  kl_cfg_free(keys, NKEYS, &c);
  assert_null(c.dir);

  const char *full = "# comment\n"
                     "name = ext-1\n"
                     "; another comment\n"
                     "[server]\n"
                     "  listen = 0.0.0.0   ; inline comment\n"
                     "\tport=9000\r\n"
                     "verbose = YES\n"
                     "[limits]\n"
                     "max_body = 1000\n"
                     "timeout = 250ms\n"
                     "[calendar]\n"
                     "dir = cal dir with spaces\n";
  assert_int_equal(load(full, &c, msg), 0);
  assert_string_equal(c.name, "ext-1");
  assert_string_equal(c.listen, "0.0.0.0");
  assert_int_equal(c.port, 9000);
  assert_true(c.verbose);
  assert_int_equal(c.max_body, 1000);
  assert_int_equal(c.timeout_ms, 250);
  assert_string_equal(c.dir, "cal dir with spaces");
  kl_cfg_free(keys, NKEYS, &c);
}

static void expect_error(const char *text, const char *want) {
  conf_t c;
  char msg[KL_ERR_MSG_MAX];
  int r = load(text, &c, msg);
  kl_cfg_free(keys, NKEYS, &c);
  if (r == 0) fail_msg("accepted: %s", text);
  if (strcmp(msg, want) != 0) fail_msg("message\n  got:  %s\n  want: %s", msg, want);
}

static void test_errors(void **state) {
  (void)state;
  const char *dir = "[calendar]\ndir = d\n";
  char text[512];
  expect_error("[server]\nport = 80\n", "test.conf: [calendar] dir is required");
  snprintf(text, sizeof text, "%s[server]\ncolour = blue\n", dir);
  expect_error(text, "test.conf:4: [server] unknown key colour");
  snprintf(text, sizeof text, "%s[servr]\nport = 1\n", dir);
  expect_error(text, "test.conf:4: unknown section [servr] (key port)");
  snprintf(text, sizeof text, "%s[server]\nport = http\n", dir);
  expect_error(text, "test.conf:4: [server] port = \"http\": expected an integer");
  snprintf(text, sizeof text, "%s[server]\nport = 70000\n", dir);
  expect_error(text, "test.conf:4: [server] port = \"70000\": 70000 is above the maximum 65535");
  snprintf(text, sizeof text, "%s[server]\nport = 0\n", dir);
  expect_error(text, "test.conf:4: [server] port = \"0\": 0 is below the minimum 1");
  snprintf(text, sizeof text, "%s[server]\nverbose = maybe\n", dir);
  expect_error(text, "test.conf:4: [server] verbose = \"maybe\": expected yes or no");
  snprintf(text, sizeof text, "%s[limits]\nmax_body = 1T\n", dir);
  expect_error(text, "test.conf:4: [limits] max_body = \"1T\": expected a size in bytes (like 65539, 64k, 16M)");
  snprintf(text, sizeof text, "%s[limits]\nmax_body = 1M\n", dir);
  expect_error(text, "test.conf:4: [limits] max_body = \"1M\": 1048576 is above the maximum 65539");
  snprintf(text, sizeof text, "%s[limits]\ntimeout = 5 minutes\n", dir);
  expect_error(text, "test.conf:4: [limits] timeout = \"5 minutes\": expected a duration (like 250ms, 30s, 5m)");
  snprintf(text, sizeof text, "%s[server]\nport = 1\nport = 2\n", dir);
  expect_error(text, "test.conf:5: [server] port is given twice");
  snprintf(text, sizeof text, "%s[server]\nthis line has no equals sign\n", dir);
  expect_error(text, "test.conf:4: syntax error: expected \"name = value\", \"[section]\" or a comment");
  snprintf(text, sizeof text, "%s[server]\nlisten = a b\n", dir);
  expect_error(text, "test.conf: [server] listen: must not contain spaces");
  char longline[400];
  memset(longline, 'x', sizeof longline);
  memcpy(longline, "name = ", 7);
  longline[sizeof longline - 1] = '\0';
  snprintf(text, sizeof text, "%s\n%s", longline, dir);
  expect_error(text, "test.conf:1: line is longer than 198 characters");
  /* several problems: every one named, as long as they fit one message */
  expect_error("[server]\nport = x\nverbose = x\n",
               "test.conf:2: [server] port = \"x\": expected an integer; line 3: [server] verbose = \"x\": expected "
               "yes or no; [calendar] dir is required");
  /* too many for one message: those that fit, then how many more */
  char many[2048] = "[server]\n";
  for (int i = 0; i < 20; i++) strcat(many, "unknown_key_with_a_long_name = 1\n");
  conf_t c;
  char msg[KL_ERR_MSG_MAX];
  assert_int_not_equal(load(many, &c, msg), 0);
  kl_cfg_free(keys, NKEYS, &c);
  if (strncmp(msg, "test.conf:2: [server] unknown key unknown_key_with_a_long_name; line 3: ", 71) != 0 ||
      strstr(msg, " more problems)") == NULL || strlen(msg) >= sizeof msg)
    fail_msg("message: %s", msg);
}

static void test_files_and_converters(void **state) {
  (void)state;
  conf_t c;
  kl_err_t e;
  memset(&c, 0, sizeof c);
  assert_int_equal(kl_cfg_load("/nonexistent/x.conf", keys, NKEYS, &c, &e), KL_EIO);
  assert_non_null(strstr(e.msg, "/nonexistent/x.conf: cannot open"));
  char path[] = "/tmp/kl-cfg-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char text[] = "[calendar]\ndir = x\n[server]\nport = 1\n";
  assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
  close(fd);
  assert_int_equal(kl_cfg_load(path, keys, NKEYS, &c, &e), 0);
  assert_int_equal(c.port, 1);
  kl_cfg_free(keys, NKEYS, &c);
  FILE *f = fopen(path, "wb");
  fwrite("port\0= 1\n", 1, 9, f);
  fclose(f);
  assert_int_not_equal(kl_cfg_load(path, keys, NKEYS, &c, &e), 0);
  assert_non_null(strstr(e.msg, "NUL byte"));
  unlink(path);

  uint64_t u;
  bool b;
  assert_int_equal(kl_cfg_parse_size("64k", &u), 0), assert_int_equal(u, 65536);
  assert_int_equal(kl_cfg_parse_size("2MiB", &u), 0), assert_int_equal(u, 2 << 20);
  assert_int_equal(kl_cfg_parse_size("1G", &u), 0), assert_int_equal(u, 1 << 30);
  assert_int_equal(kl_cfg_parse_size("100B", &u), 0), assert_int_equal(u, 100);
  assert_int_not_equal(kl_cfg_parse_size("-1", &u), 0);
  assert_int_not_equal(kl_cfg_parse_size("", &u), 0);
  assert_int_not_equal(kl_cfg_parse_size("99999999999999999999", &u), 0);
  assert_int_not_equal(kl_cfg_parse_size("17179869184G", &u), 0);
  assert_int_equal(kl_cfg_parse_duration_ms("5m", &u), 0), assert_int_equal(u, 300000);
  assert_int_equal(kl_cfg_parse_duration_ms("2h", &u), 0), assert_int_equal(u, 7200000);
  assert_int_equal(kl_cfg_parse_duration_ms("3", &u), 0), assert_int_equal(u, 3000);
  assert_int_not_equal(kl_cfg_parse_duration_ms("3d", &u), 0);
  assert_int_equal(kl_cfg_parse_bool("On", &b), 0), assert_true(b);
  assert_int_equal(kl_cfg_parse_bool("0", &b), 0), assert_false(b);
  assert_int_not_equal(kl_cfg_parse_bool("y", &b), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_values),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_files_and_converters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
