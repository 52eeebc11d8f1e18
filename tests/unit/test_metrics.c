/* The metrics registry: exact Prometheus text for counters with labels, gauges (set and
 * computed), histograms with cumulative buckets, escaping, and the programming errors that
 * give NULL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/metrics.h"
#include "keyless/version.h"
#include "testutil.h"

static char *render(kl_metrics_t *m) {
  kl_buf_t b = KL_BUF_INIT;
  assert_int_equal(kl_metrics_render(m, &b, NULL), 0);
  kl_buf_put_u8(&b, '\0');
  return (char *)kl_buf_steal(&b, NULL);
}

static double seven(void *arg) { return *(double *)arg; }

static void test_render(void **state) {
  (void)state;
  kl_metrics_t *m;
  assert_int_equal(kl_metrics_create(&m, NULL), 0);
  kl_metric_t *ok = kl_metrics_counter(m, "req_total", "Requests.", (const char *[]){"status", "0x0000", NULL});
  kl_metric_t *bad = kl_metrics_counter(m, "req_total", "ignored", (const char *[]){"status", "0x0102", NULL});
  assert_non_null(ok);
  assert_non_null(bad);
  assert_ptr_equal(ok, kl_metrics_counter(m, "req_total", NULL, (const char *[]){"status", "0x0000", NULL}));
  kl_metric_inc(ok);
  kl_metric_inc(ok);
  kl_metric_add(bad, 3);
  kl_metric_add(bad, -1); /* counters never go down */
  kl_metric_t *g = kl_metrics_gauge(m, "temp", "A \\ gauge\nwith newline.", NULL);
  kl_metric_set(g, -2.5);
  double v = 7;
  assert_non_null(kl_metrics_gauge_fn(m, "computed", "Computed.", (const char *[]){"a", "x\"y\\z\n", NULL}, seven, &v));
  const double bounds[] = {0.001, 0.01, 0.1};
  kl_metric_t *h = kl_metrics_histogram(m, "lat_seconds", "Latency.", NULL, bounds, 3);
  assert_non_null(h);
  kl_metric_observe(h, 0.0005);
  kl_metric_observe(h, 0.001); /* on the bound: counts in that bucket (le) */
  kl_metric_observe(h, 0.05);
  kl_metric_observe(h, 3);
  char *full = render(m);
  /* Every registry starts with the build's info (keyless/version.h), then what was added. */
  char head[512];
  snprintf(head, sizeof head,
           "# HELP keyless_build_info 1, labelled with the version, commit, OpenSSL and libuv of this process\n"
           "# TYPE keyless_build_info gauge\n"
           "keyless_build_info{version=\"%s\",commit=\"%s\",openssl=\"%s\",libuv=\"%s\"} 1\n",
           kl_version(), kl_build_commit(), kl_build_openssl(), kl_build_libuv());
  assert_int_equal(strncmp(full, head, strlen(head)), 0);
  /* then the host clock's discipline (the values are the host's) */
  assert_non_null(strstr(full, "# TYPE keyless_clock_synchronized gauge\nkeyless_clock_synchronized "));
  assert_non_null(strstr(full, "# TYPE keyless_clock_max_error_seconds gauge\nkeyless_clock_max_error_seconds "));
  char *text = strstr(full, "# HELP req_total");
  assert_non_null(text);
  const char *want =
      "# HELP req_total Requests.\n"
      "# TYPE req_total counter\n"
      "req_total{status=\"0x0000\"} 2\n"
      "req_total{status=\"0x0102\"} 3\n"
      "# HELP temp A \\\\ gauge\\nwith newline.\n"
      "# TYPE temp gauge\n"
      "temp -2.5\n"
      "# HELP computed Computed.\n"
      "# TYPE computed gauge\n"
      "computed{a=\"x\\\"y\\\\z\\n\"} 7\n"
      "# HELP lat_seconds Latency.\n"
      "# TYPE lat_seconds histogram\n"
      "lat_seconds_bucket{le=\"0.001\"} 2\n"
      "lat_seconds_bucket{le=\"0.01\"} 2\n"
      "lat_seconds_bucket{le=\"0.1\"} 3\n"
      "lat_seconds_bucket{le=\"+Inf\"} 4\n"
      "lat_seconds_sum 3.0515\n"
      "lat_seconds_count 4\n";
  assert_string_equal(text, want);
  free(full);
  assert_true(kl_metric_value(ok) == 2);
  assert_true(kl_metric_value(h) == 4);
  v = 8; /* computed at render time */
  text = render(m);
  assert_non_null(strstr(text, "computed{a=\"x\\\"y\\\\z\\n\"} 8\n"));
  free(text);
  kl_metrics_destroy(m);
}

static void test_labels_and_buckets(void **state) {
  (void)state;
  kl_metrics_t *m;
  assert_int_equal(kl_metrics_create(&m, NULL), 0);
  kl_metric_t *h = kl_metrics_histogram(m, "d", "D.", (const char *[]){"t", "http", NULL}, kl_metrics_latency_buckets,
                                        kl_metrics_latency_n);
  kl_metric_observe(h, 0.0002);
  char *text = render(m);
  assert_non_null(strstr(text, "d_bucket{t=\"http\",le=\"0.0001\"} 0\n"));
  assert_non_null(strstr(text, "d_bucket{t=\"http\",le=\"0.00025\"} 1\n"));
  assert_non_null(strstr(text, "d_bucket{t=\"http\",le=\"10\"} 1\n"));
  assert_non_null(strstr(text, "d_count{t=\"http\"} 1\n"));
  free(text);
  kl_metrics_destroy(m);
}

static void test_misuse(void **state) {
  (void)state;
  kl_metrics_t *m;
  assert_int_equal(kl_metrics_create(&m, NULL), 0);
  assert_non_null(kl_metrics_counter(m, "c_total", "C.", NULL));
  assert_null(kl_metrics_gauge(m, "c_total", "C.", NULL));                      /* other type */
  assert_null(kl_metrics_counter(m, "9bad", "", NULL));                         /* name */
  assert_null(kl_metrics_counter(m, "bad-name", "", NULL));
  assert_null(kl_metrics_counter(m, "x", "", (const char *[]){"bad-label", "v", NULL}));
  assert_null(kl_metrics_counter(m, "x", "", (const char *[]){"le", "v", NULL})); /* reserved */
  assert_null(kl_metrics_counter(m, "x", "", (const char *[]){"__x", "v", NULL}));
  const double unsorted[] = {1, 0.5};
  assert_null(kl_metrics_histogram(m, "h", "", NULL, unsorted, 2));
  assert_null(kl_metrics_histogram(m, "h", "", NULL, unsorted, 0));
  const double one[] = {1}, two[] = {1, 2};
  assert_non_null(kl_metrics_histogram(m, "h2", "", NULL, one, 1));
  assert_null(kl_metrics_histogram(m, "h2", "", NULL, two, 2)); /* same series, other buckets */
  /* updates on NULL or the wrong kind are ignored */
  kl_metric_inc(NULL);
  kl_metric_observe(kl_metrics_counter(m, "c_total", NULL, NULL), 1);
  kl_metric_set(kl_metrics_counter(m, "c_total", NULL, NULL), 5);
  assert_true(kl_metric_value(kl_metrics_counter(m, "c_total", NULL, NULL)) == 0);
  char *text = render(m);
  assert_non_null(strstr(text, "c_total 0\n"));
  free(text);
  kl_metrics_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render),
      cmocka_unit_test(test_labels_and_buckets),
      cmocka_unit_test(test_misuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
