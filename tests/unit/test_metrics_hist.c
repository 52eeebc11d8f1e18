/* A histogram's state copied out and in (kl_metric_histogram_get/_set, keyless/metrics.h): what
 * a multi-loop gateway uses to merge its workers' PDU durations into one series. The copy is
 * exact, set replaces (not adds), the rendering follows, and wrong calls change nothing. */
#include <string.h>

#include "keyless/metrics.h"
#include "testutil.h"

static const double bounds[] = {0.1, 1, 10};

static void test_get_set(void **state) {
  (void)state;
  kl_metrics_t *a, *b;
  assert_int_equal(kl_metrics_create(&a, NULL), 0);
  assert_int_equal(kl_metrics_create(&b, NULL), 0);
  kl_metric_t *ha = kl_metrics_histogram(a, "x_seconds", "x", NULL, bounds, 3);
  kl_metric_t *hb = kl_metrics_histogram(b, "x_seconds", "x", NULL, bounds, 3);
  kl_metric_observe(ha, 0.05);
  kl_metric_observe(ha, 0.5);
  kl_metric_observe(ha, 0.5);
  kl_metric_observe(ha, 99);
  unsigned long long c[8] = {0};
  double sum = 0;
  assert_int_equal(kl_metric_histogram_get(ha, c, 8, &sum), 4);
  assert_int_equal(c[0], 1);
  assert_int_equal(c[1], 2);
  assert_int_equal(c[2], 0);
  assert_int_equal(c[3], 1);
  assert_true(sum > 100.04 && sum < 100.06);
  c[0] += 10; /* another loop's 10 fast ones */
  kl_metric_histogram_set(hb, c, 4, sum + 0.5);
  kl_metric_histogram_set(hb, c, 4, sum + 0.5); /* replaces: not twice */
  assert_int_equal((int)kl_metric_value(hb), 14);
  kl_buf_t out = KL_BUF_INIT;
  assert_int_equal(kl_metrics_render(b, &out, NULL), 0);
  kl_buf_put_u8(&out, 0);
  const char *text = (const char *)out.p;
  assert_non_null(strstr(text, "x_seconds_bucket{le=\"0.1\"} 11\n"));
  assert_non_null(strstr(text, "x_seconds_bucket{le=\"1\"} 13\n"));
  assert_non_null(strstr(text, "x_seconds_bucket{le=\"+Inf\"} 14\n"));
  assert_non_null(strstr(text, "x_seconds_count 14\n"));
  kl_buf_free(&out);
  /* Wrong calls: a bucket count that does not match, a counter, NULL. */
  kl_metric_histogram_set(hb, c, 3, 0);
  assert_int_equal((int)kl_metric_value(hb), 14);
  kl_metric_t *ctr = kl_metrics_counter(b, "y_total", "y", NULL);
  kl_metric_inc(ctr);
  assert_int_equal(kl_metric_histogram_get(ctr, c, 8, &sum), 0);
  kl_metric_histogram_set(ctr, c, 4, 0);
  assert_int_equal((int)kl_metric_value(ctr), 1);
  assert_int_equal(kl_metric_histogram_get(NULL, c, 8, NULL), 0);
  kl_metric_histogram_set(NULL, c, 4, 0);
  /* A short buffer gets what fits; the answer is still how many there are. */
  unsigned long long two[2] = {0};
  assert_int_equal(kl_metric_histogram_get(ha, two, 2, NULL), 4);
  assert_int_equal(two[1], 2);
  kl_metrics_destroy(a);
  kl_metrics_destroy(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_get_set)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
