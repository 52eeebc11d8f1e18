/* Keys named by URI (lib/client/src/keyuri.c, docs/keys.md): parsing, secret sources, wrapped
 * and clear key files, and the calendar-auth signer on a wrapped key. PKCS#11 loading is in
 * tests/system/test_keys.sh (it needs a SoftHSM2 token). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keyless/pki.h"
#include "keyuri.h"
#include "testutil.h"

static char dir[512], pki[600], pass[600], cal_key[700], cal_crt[700], tls_key[700];

static void write_text(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

static int setup(void **state) {
  (void)state;
  kl_err_t e = {0};
  tu_mkdtemp("keyuri", dir, sizeof dir);
  snprintf(pki, sizeof pki, "%s/pki", dir);
  snprintf(pass, sizeof pass, "%s/secret.pass", dir);
  snprintf(cal_key, sizeof cal_key, "%s/calendar-auth.key", pki);
  snprintf(cal_crt, sizeof cal_crt, "%s/calendar-auth.crt", pki);
  snprintf(tls_key, sizeof tls_key, "%s/publications.key", pki);
  if (kl_devpki_create_wrapped(pki, "k@keyless.test", 30, pass, &e)) fail_msg("%s", e.msg);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rmrf(dir);
  return 0;
}

static void test_parse(void **state) {
  (void)state;
  kl_keyuri_t k;
  kl_err_t e = {0};
  assert_int_equal(kl_keyuri_parse("/etc/keyless/a.key", &k, &e), 0);
  assert_int_equal(k.kind, KL_KEYURI_FILE);
  assert_string_equal(k.path, "/etc/keyless/a.key");
  assert_string_equal(k.secret, "");
  assert_int_equal(kl_keyuri_parse("file:/k%20ey.pem?passphrase-source=credential:cal.pass", &k, &e), 0);
  assert_string_equal(k.path, "/k ey.pem");
  assert_string_equal(k.secret, "credential:cal.pass");
  assert_int_equal(kl_keyuri_parse("file:///etc/k.pem", &k, &e), 0);
  assert_string_equal(k.path, "/etc/k.pem");
  assert_int_equal(kl_keyuri_parse("pkcs11:token=my%20hsm;object=cal;id=%01?module-path=/m.so&pin-source=file:/p", &k, &e), 0);
  assert_int_equal(k.kind, KL_KEYURI_PKCS11);
  assert_string_equal(k.token, "my hsm");
  assert_string_equal(k.object, "cal");
  assert_string_equal(k.id, "%01");
  assert_string_equal(k.module, "/m.so");
  assert_string_equal(k.secret, "file:/p");
  assert_string_equal(k.engine_uri, "pkcs11:token=my%20hsm;object=cal;id=%01;type=private");

  /* Errors name what was wrong. */
  assert_int_equal(kl_keyuri_parse("pkcs11:token=t;object=o?pin-value=1234", &k, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "pin-value is refused"));
  assert_int_equal(kl_keyuri_parse("pkcs11:token=t;colour=red", &k, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "'colour'"));
  assert_int_equal(kl_keyuri_parse("pkcs11:", &k, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "names no key"));
  assert_int_equal(kl_keyuri_parse("pkcs11:object=a%2", &k, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "hex digits"));
  assert_int_equal(kl_keyuri_parse("pkcs11:object=a;type=public", &k, &e), KL_EINVAL);
  assert_int_equal(kl_keyuri_parse("file:/k?passphrase=x", &k, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "passphrase-source"));
  assert_int_equal(kl_keyuri_parse("file://host/k", &k, &e), KL_EINVAL);
  assert_int_equal(kl_keyuri_parse("", &k, &e), KL_EINVAL);
  assert_true(kl_keyuri_same("pkcs11:token=a;object=b", "pkcs11:token=a;object=b?pin-source=file:/x"));
  assert_false(kl_keyuri_same("pkcs11:token=a;object=b", "pkcs11:token=a;object=c"));
}

static void test_secret_sources(void **state) {
  (void)state;
  char buf[128], p[700], src[720];
  kl_err_t e = {0};
  setenv("KL_TEST_SECRET", "s3cret", 1);
  assert_int_equal(kl_key_secret_read("env:KL_TEST_SECRET", buf, sizeof buf, &e), 0);
  assert_string_equal(buf, "s3cret");
  assert_int_equal(kl_key_secret_read("env:KL_TEST_NO_SUCH_VARIABLE", buf, sizeof buf, &e), KL_ENOTFOUND);
  snprintf(p, sizeof p, "%s/cred", dir);
  write_text(p, "from-credential\n", 0400);
  setenv("CREDENTIALS_DIRECTORY", dir, 1);
  assert_int_equal(kl_key_secret_read("credential:cred", buf, sizeof buf, &e), 0);
  assert_string_equal(buf, "from-credential");
  assert_int_equal(kl_key_secret_read("credential:../cred", buf, sizeof buf, &e), KL_EINVAL);
  unsetenv("CREDENTIALS_DIRECTORY");
  snprintf(p, sizeof p, "%s/open.pass", dir);
  write_text(p, "x\n", 0644);
  snprintf(src, sizeof src, "file:%s", p);
  assert_int_equal(kl_key_secret_read(src, buf, sizeof buf, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "every user"));
  write_text(p, "\n", 0600);
  assert_int_equal(kl_key_secret_read(src, buf, sizeof buf, &e), KL_EINVAL);
  assert_int_equal(kl_key_secret_read("http://x", buf, sizeof buf, &e), KL_EINVAL);
}

static void test_wrapped_and_clear(void **state) {
  (void)state;
  char uri[2048], wrong[700], bad[2048];
  kl_err_t e = {0};
  EVP_PKEY *k = NULL;
  bool wrapped = false;
  struct stat st;
  assert_int_equal(stat(pass, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* No passphrase source: a clear error, not a prompt. */
  assert_int_equal(kl_key_load(cal_key, "calendar-auth key", 0, &k, NULL, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "wrapped"));
  snprintf(uri, sizeof uri, "file:%s?passphrase-source=file:%s", cal_key, pass);
  assert_int_equal(kl_key_load(uri, "calendar-auth key", 0, &k, &wrapped, &e), 0);
  assert_non_null(k);
  assert_true(wrapped);
  EVP_PKEY_free(k);
  k = NULL;
  /* The wrong passphrase. */
  snprintf(wrong, sizeof wrong, "%s/wrong.pass", dir);
  write_text(wrong, "not-the-passphrase\n", 0600);
  snprintf(bad, sizeof bad, "file:%s?passphrase-source=file:%s", cal_key, wrong);
  assert_int_equal(kl_key_load(bad, "calendar-auth key", 0, &k, NULL, &e), KL_EAUTH);
  assert_non_null(strstr(e.msg, "wrong passphrase"));
  assert_null(k);
  /* A missing passphrase file. */
  snprintf(bad, sizeof bad, "file:%s?passphrase-source=file:%s/none", cal_key, dir);
  assert_int_equal(kl_key_load(bad, "calendar-auth key", 0, &k, NULL, &e), KL_ENOTFOUND);
  /* A clear key: refused unless allowed. The cluster CA key of devpki is clear. */
  char clear[700];
  snprintf(clear, sizeof clear, "%s/offline/cluster-ca.key", pki);
  assert_int_equal(kl_key_load(clear, "test key", 0, &k, NULL, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "clear (unencrypted)"));
  assert_int_equal(kl_key_load(clear, "test key", KL_KEY_ALLOW_CLEAR, &k, &wrapped, &e), 0);
  assert_false(wrapped);
  EVP_PKEY_free(k);
  /* Not a key at all. */
  assert_int_equal(kl_key_load(cal_crt, "test key", KL_KEY_ALLOW_CLEAR, &k, NULL, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "not a PEM private key"));
  assert_int_equal(kl_key_load("/nonexistent/key.pem", "test key", 0, &k, NULL, &e), KL_ENOTFOUND);
}

static void test_calauth_wrapped(void **state) {
  (void)state;
  char uri[2048];
  kl_err_t e = {0};
  kl_calauth_t *ca = NULL;
  snprintf(uri, sizeof uri, "file:%s?passphrase-source=file:%s", cal_key, pass);
  if (kl_calauth_open(cal_crt, uri, 0, &ca, &e)) fail_msg("%s", e.msg);
  kl_imprint_t root = {KL_HASH_SHA256, 32, {0}};
  kl_buf_t b = KL_BUF_INIT;
  assert_int_equal(kl_calauth_sign(ca, 1700000000, &root, &b, &e), 0);
  assert_true(b.len > 100);
  kl_buf_free(&b);
  kl_calauth_free(ca);
  /* The publications key does not belong to the calendar-auth certificate. */
  snprintf(uri, sizeof uri, "file:%s?passphrase-source=file:%s", tls_key, pass);
  assert_int_equal(kl_calauth_open(cal_crt, uri, 0, &ca, &e), KL_ECRYPTO);
  bool same = true;
  char pub_crt[700];
  snprintf(pub_crt, sizeof pub_crt, "%s/publications.crt", pki);
  assert_int_equal(kl_cert_same_key(cal_crt, pub_crt, &same, &e), 0);
  assert_false(same);
  assert_int_equal(kl_cert_same_key(cal_crt, cal_crt, &same, &e), 0);
  assert_true(same);
  assert_false(kl_keyuri_same(cal_key, uri));
  snprintf(uri, sizeof uri, "file:%s?passphrase-source=file:%s", cal_key, pass);
  assert_true(kl_keyuri_same(cal_key, uri));
}

static void test_devpki_wrap(void **state) {
  (void)state;
  char p2[700];
  kl_err_t e = {0};
  struct stat st;
  /* A PKI that exists is not replaced, and the passphrase file made for it is not left behind. */
  snprintf(p2, sizeof p2, "%s/other.pass", dir);
  assert_int_equal(kl_devpki_create_wrapped(pki, "k@keyless.test", 30, p2, &e), KL_ESTATE);
  assert_int_not_equal(stat(p2, &st), 0);
  assert_int_equal(kl_devpki_create_wrapped(pki, "k@keyless.test", 30, "relative.pass", &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "absolute path"));
  /* An existing passphrase file is used, if only its owner may read it. */
  char pki2[700], key2[800], uri[2048];
  snprintf(pki2, sizeof pki2, "%s/pki2", dir);
  chmod(pass, 0644);
  assert_int_equal(kl_devpki_create_wrapped(pki2, "k@keyless.test", 30, pass, &e), KL_EPKI);
  chmod(pass, 0600);
  if (kl_devpki_create_wrapped(pki2, "k@keyless.test", 30, pass, &e)) fail_msg("%s", e.msg);
  snprintf(key2, sizeof key2, "%s/publications.key", pki2);
  snprintf(uri, sizeof uri, "file:%s?passphrase-source=file:%s", key2, pass);
  EVP_PKEY *k = NULL;
  assert_int_equal(kl_key_load(uri, "publications key", 0, &k, NULL, &e), 0);
  EVP_PKEY_free(k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_secret_sources),
      cmocka_unit_test(test_wrapped_and_clear),
      cmocka_unit_test(test_calauth_wrapped),
      cmocka_unit_test(test_devpki_wrap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
