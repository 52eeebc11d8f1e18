/* Our own issuance pipeline end to end, without daemons: a development PKI, an aggregation
 * chain, a calendar, a calendar authentication record, a publications file; the signature
 * verifies key-based, then extended to a publication it verifies publication-based. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyless/calendar.h"
#include "keyless/chains.h"
#include "keyless/pki.h"
#include "keyless/pubfile.h"
#include "keyless/verify.h"
#include "testutil.h"
#include "tu_pipeline.h"

static char dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("pki", dir, sizeof dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(dir);
}

static uint8_t *read_all(const char *path, size_t *len) {
  return tu_read_vector(path, len);
}

static void test_pipeline(void **state) {
  (void)state;
  char pki[300], cal_dir[300], p1[400];
  kl_err_t e = {0};
  snprintf(pki, sizeof pki, "%s/pki", dir);
  snprintf(cal_dir, sizeof cal_dir, "%s/cal", dir);
  if (kl_devpki_create(pki, "publications@keyless.test", 30, &e)) fail_msg("%s", e.msg);
  assert_int_equal(kl_devpki_create(pki, "publications@keyless.test", 30, &e), KL_ESTATE); /* never replaces */
  /* The CA key is apart from what a node needs; the signing keys are where scripts look. */
  snprintf(p1, sizeof p1, "%s/ca.key", pki);
  assert_int_not_equal(access(p1, F_OK), 0);
  snprintf(p1, sizeof p1, "%s/offline/ca.key", pki);
  assert_int_equal(access(p1, F_OK), 0);

  tu_pipeline_t pl;
  tu_pipeline_build(&pl, pki, cal_dir, KL_HASH_SHA256);
  kl_sig_t *ext;
  tu_pipeline_verify(&pl, &ext);
  /* The extended signature verifies against its publication given as a string, too. */
  char ps[KL_PUBSTR_MAX];
  assert_int_equal(kl_pubstr_encode(pl.T + 5, &pl.pub_root, ps, sizeof ps, &e), 0);
  kl_verify_opts_t u = {0};
  kl_verify_result_t res;
  assert_int_equal(kl_pubstr_decode(ps, &u.user_pub_time, &u.user_pub_hash, &e), 0);
  u.has_user_pub = true;
  kl_verify(ext, KL_POLICY_USER_PUB, &u, &res);
  assert_int_equal(res.verdict, KL_VER_OK);
  (void)read_all;

  kl_sig_free(ext);
  tu_pipeline_free(&pl);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
