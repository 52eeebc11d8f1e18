/* The core's calendar-auth keys (core/src/authkeys.c, node_config.c): which key signs which
 * second, the activation time's syntax, the refusals at load (next key not valid at its first
 * second, the same key twice, the TLS key as next key, half a next key), and which replacement
 * sets a SIGHUP may swap in. Keys come from two development PKIs in a temp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authkeys.h"
#include "keyless/pki.h"
#include "node.h"
#include "testutil.h"

static char dir[128], a_crt[256], a_key[256], b_crt[256], b_key[256], tls_crt[256], tls_key[256], short_dir[200];

static int setup(void **state) {
  kl_err_t e = {0};
  char p[200];
  (void)state;
  tu_mkdtemp("authkeys", dir, sizeof dir);
  snprintf(p, sizeof p, "%s/a", dir);
  if (kl_devpki_create(p, "a@keyless.test", 30, &e) || kl_devpki_issue(p, "core", "1", NULL, NULL, &e)) return -1;
  snprintf(a_crt, sizeof a_crt, "%s/calendar-auth.crt", p);
  snprintf(a_key, sizeof a_key, "%s/calendar-auth.key", p);
  snprintf(tls_crt, sizeof tls_crt, "%s/nodes/core-1.crt", p);
  snprintf(tls_key, sizeof tls_key, "%s/nodes/core-1.key", p);
  snprintf(p, sizeof p, "%s/b", dir);
  if (kl_devpki_create(p, "b@keyless.test", 30, &e)) return -1;
  snprintf(b_crt, sizeof b_crt, "%s/calendar-auth.crt", p);
  snprintf(b_key, sizeof b_key, "%s/calendar-auth.key", p);
  snprintf(short_dir, sizeof short_dir, "%s/s", dir); /* a key whose certificate is valid 1 day */
  if (kl_devpki_create(short_dir, "s@keyless.test", 1, &e)) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(dir);
}

static void test_index(void **state) {
  (void)state;
  const uint64_t one[] = {0}, two[] = {0, 1000};
  assert_int_equal(core_authkeys_index(one, 1, 0), 0);
  assert_int_equal(core_authkeys_index(one, 1, UINT64_MAX), 0);
  assert_int_equal(core_authkeys_index(two, 2, 999), 0);
  assert_int_equal(core_authkeys_index(two, 2, 1000), 1);
  assert_int_equal(core_authkeys_index(two, 2, 5000), 1);
}

static void test_parse_time(void **state) {
  kl_err_t e = {0};
  uint64_t t = 0;
  (void)state;
  assert_int_equal(core_authkeys_parse_time("1767225600", &t, &e), 0);
  assert_int_equal(t, 1767225600u);
  assert_int_equal(core_authkeys_parse_time("2026-01-01T00:00:00Z", &t, &e), 0);
  assert_int_equal(t, 1767225600u);
  assert_int_equal(core_authkeys_parse_time("2026-04-31T00:00:00Z", &t, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "2026-04-31"));
  assert_int_equal(core_authkeys_parse_time("2026-01-01 00:00:00", &t, &e), KL_EINVAL);
  assert_int_equal(core_authkeys_parse_time("", &t, &e), KL_EINVAL);
  assert_int_equal(core_authkeys_parse_time("-5", &t, &e), KL_EINVAL);
}

/* The certificate id in a 0x805: its last four bytes (the 0x03 element closes 0x0B, which closes
 * the record). */
static void signed_id(kl_calauth_t *ca, uint64_t s, char *id) {
  kl_buf_t b = KL_BUF_INIT;
  kl_imprint_t root = {0};
  kl_err_t e = {0};
  root.alg = KL_HASH_SHA256;
  root.len = 32;
  assert_int_equal(kl_calauth_sign(ca, s, &root, &b, &e), 0);
  assert_true(b.len > 4);
  snprintf(id, 9, "%02x%02x%02x%02x", b.p[b.len - 4], b.p[b.len - 3], b.p[b.len - 2], b.p[b.len - 1]);
  kl_buf_free(&b);
}

static void test_open_and_select(void **state) {
  kl_err_t e = {0};
  core_authkeys_t *ks = NULL;
  uint64_t from = (uint64_t)time(NULL) + 3600;
  char id[9];
  (void)state;
  core_authkey_spec_t spec[2] = {{a_crt, a_key, 0}, {b_crt, b_key, from}};
  assert_int_equal(core_authkeys_open("t", spec, 2, KL_KEY_ALLOW_CLEAR, &ks, &e), 0);
  assert_int_equal(ks->n, 2);
  assert_string_not_equal(ks->k[0].id, ks->k[1].id);
  assert_ptr_equal(core_authkeys_at(ks, from - 1), &ks->k[0]);
  assert_ptr_equal(core_authkeys_at(ks, from), &ks->k[1]);
  signed_id(core_authkeys_at(ks, from - 1)->ca, from - 1, id);
  assert_string_equal(id, ks->k[0].id);
  signed_id(core_authkeys_at(ks, from)->ca, from, id);
  assert_string_equal(id, ks->k[1].id);
  core_authkeys_free(ks);
}

static void test_open_refusals(void **state) {
  kl_err_t e = {0};
  core_authkeys_t *ks = NULL;
  uint64_t now = (uint64_t)time(NULL);
  char s_crt[256], s_key[256];
  (void)state;
  snprintf(s_crt, sizeof s_crt, "%s/calendar-auth.crt", short_dir);
  snprintf(s_key, sizeof s_key, "%s/calendar-auth.key", short_dir);
  /* the same key twice */
  core_authkey_spec_t same[2] = {{a_crt, a_key, 0}, {a_crt, a_key, now + 60}};
  assert_int_equal(core_authkeys_open("t.conf", same, 2, KL_KEY_ALLOW_CLEAR, &ks, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "a rotation needs a new key"));
  assert_null(ks);
  /* a next certificate that has expired by its first second (valid one day from an hour ago) */
  core_authkey_spec_t late[2] = {{a_crt, a_key, 0}, {s_crt, s_key, now + 3 * 86400}};
  assert_int_equal(core_authkeys_open("t.conf", late, 2, KL_KEY_ALLOW_CLEAR, &ks, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "not at its first second"));
  assert_non_null(strstr(e.msg, "next_calendar_auth_cert"));
  /* ... or is not valid yet */
  core_authkey_spec_t early[2] = {{a_crt, a_key, 0}, {s_crt, s_key, now - 86400}};
  assert_int_equal(core_authkeys_open("t.conf", early, 2, KL_KEY_ALLOW_CLEAR, &ks, &e), KL_EINVAL);
  /* a clear key without the flag: the next key is opened as strictly as the first */
  core_authkey_spec_t clear[2] = {{a_crt, a_key, 0}, {b_crt, b_key, now + 60}};
  assert_int_not_equal(core_authkeys_open("t.conf", clear, 2, 0, &ks, &e), 0);
  assert_null(ks);
}

static void test_reload_rules(void **state) {
  kl_err_t e = {0};
  core_authkeys_t *a = NULL, *ab = NULL, *ab2 = NULL, *b = NULL;
  uint64_t now = (uint64_t)time(NULL), t = now + 100;
  (void)state;
  core_authkey_spec_t sa[1] = {{a_crt, a_key, 0}}, sab[2] = {{a_crt, a_key, 0}, {b_crt, b_key, t}},
                      sab2[2] = {{a_crt, a_key, 0}, {b_crt, b_key, t + 50}}, sb[1] = {{b_crt, b_key, 0}};
  assert_int_equal(core_authkeys_open("t", sa, 1, KL_KEY_ALLOW_CLEAR, &a, &e), 0);
  assert_int_equal(core_authkeys_open("t", sab, 2, KL_KEY_ALLOW_CLEAR, &ab, &e), 0);
  assert_int_equal(core_authkeys_open("t", sab2, 2, KL_KEY_ALLOW_CLEAR, &ab2, &e), 0);
  assert_int_equal(core_authkeys_open("t", sb, 1, KL_KEY_ALLOW_CLEAR, &b, &e), 0);
  /* adding a next key that starts later: yes; one that starts now or before: no */
  assert_int_equal(core_authkeys_check_reload(a, ab, now, &e), 0);
  assert_int_equal(core_authkeys_check_reload(a, ab, t - 1, &e), 0);
  assert_int_equal(core_authkeys_check_reload(a, ab, t, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "still to come"));
  /* the same set again after the switch (a SIGHUP for something else): yes */
  assert_int_equal(core_authkeys_check_reload(ab, ab, t + 10, &e), 0);
  /* moving the start while it is still to come: yes; after it passed: no */
  assert_int_equal(core_authkeys_check_reload(ab, ab2, now, &e), 0);
  assert_int_equal(core_authkeys_check_reload(ab, ab2, t + 1, &e), KL_ESTATE);
  /* dropping the old key once the new one signs: yes; before: no */
  assert_int_equal(core_authkeys_check_reload(ab, b, t, &e), 0);
  assert_int_equal(core_authkeys_check_reload(ab, b, t - 1, &e), KL_ESTATE);
  /* replacing the key outright: no (a restart's business) */
  assert_int_equal(core_authkeys_check_reload(a, b, now, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "would change"));
  /* withdrawing a next key that has not started: yes */
  assert_int_equal(core_authkeys_check_reload(ab, a, now, &e), 0);
  core_authkeys_free(a);
  core_authkeys_free(ab);
  core_authkeys_free(ab2);
  core_authkeys_free(b);
}

/* core_config_load on a file with a [keys] section as given. */
static int load(const char *keys, const char *tls, core_config_t *cfg, kl_err_t *e) {
  char path[256];
  snprintf(path, sizeof path, "%s/core.conf", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "[node]\nid = 1\ndata_dir = %s/data\n[cluster]\nmember1 = 127.0.0.1:1 127.0.0.1:2\n[keys]\n%s\n%s\n", dir,
          keys, tls);
  fclose(f);
  return core_config_load(path, cfg, e);
}

static void test_config(void **state) {
  kl_err_t e = {0};
  core_config_t cfg;
  char keys[2048], tls[1024];
  (void)state;
  const char *insecure = "[tls]\ninsecure = yes";
  uint64_t from = (uint64_t)time(NULL) + 600;
  /* the old configuration: one key, opened at load */
  snprintf(keys, sizeof keys, "calendar_auth_cert = %s\ncalendar_auth_key = %s\nallow_clear_key = yes", a_crt, a_key);
  assert_int_equal(load(keys, insecure, &cfg, &e), 0);
  assert_non_null(cfg.authkeys);
  assert_int_equal(cfg.authkeys->n, 1);
  core_config_free(&cfg);
  /* a next key, its start as ISO time */
  char iso[32];
  time_t tt = (time_t)from;
  strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", gmtime(&tt));
  snprintf(keys, sizeof keys,
           "calendar_auth_cert = %s\ncalendar_auth_key = %s\nallow_clear_key = yes\nnext_calendar_auth_cert = %s\n"
           "next_calendar_auth_key = %s\nnext_calendar_auth_from = %s",
           a_crt, a_key, b_crt, b_key, iso);
  assert_int_equal(load(keys, insecure, &cfg, &e), 0);
  assert_int_equal(cfg.authkeys->n, 2);
  assert_int_equal(cfg.authkeys->k[1].from, from);
  core_config_free(&cfg);
  /* half a next key */
  snprintf(keys, sizeof keys,
           "calendar_auth_cert = %s\ncalendar_auth_key = %s\nallow_clear_key = yes\nnext_calendar_auth_cert = %s\n", a_crt,
           a_key, b_crt);
  assert_int_equal(load(keys, insecure, &cfg, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "go together"));
  core_config_free(&cfg);
  /* a bad start */
  snprintf(keys, sizeof keys,
           "calendar_auth_cert = %s\ncalendar_auth_key = %s\nallow_clear_key = yes\nnext_calendar_auth_cert = %s\n"
           "next_calendar_auth_key = %s\nnext_calendar_auth_from = tomorrow",
           a_crt, a_key, b_crt, b_key);
  assert_int_equal(load(keys, insecure, &cfg, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "next_calendar_auth_from"));
  core_config_free(&cfg);
  /* a next key that is the node's TLS key */
  snprintf(tls, sizeof tls, "[tls]\nca = %s/a/cluster-ca.crt\ncert = %s\nkey = %s", dir, tls_crt, tls_key);
  snprintf(keys, sizeof keys,
           "calendar_auth_cert = %s\ncalendar_auth_key = %s\nallow_clear_key = yes\nnext_calendar_auth_cert = %s\n"
           "next_calendar_auth_key = %s\nnext_calendar_auth_from = %llu",
           a_crt, a_key, tls_crt, tls_key, (unsigned long long)from);
  assert_int_equal(load(keys, tls, &cfg, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "next_calendar_auth_key"));
  assert_non_null(strstr(e.msg, "same key"));
  core_config_free(&cfg);
  /* a key that does not open (a clear key without allow_clear_key) fails the load itself, so
   * --check-config finds it */
  snprintf(keys, sizeof keys, "calendar_auth_cert = %s\ncalendar_auth_key = %s", a_crt, a_key);
  assert_int_not_equal(load(keys, insecure, &cfg, &e), 0);
  assert_non_null(strstr(e.msg, "calendar_auth"));
  core_config_free(&cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_index),           cmocka_unit_test(test_parse_time),   cmocka_unit_test(test_open_and_select),
      cmocka_unit_test(test_open_refusals),   cmocka_unit_test(test_reload_rules), cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
