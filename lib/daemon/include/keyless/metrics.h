/* keyless: a metrics registry rendered as Prometheus text (exposition format 0.0.4).
 *
 *   kl_metrics_t *m; kl_metrics_create(&m, e);
 *   kl_metric_t *ok = kl_metrics_counter(m, "keyless_extender_requests_total",
 *                                        "Extension requests by status.",
 *                                        (const char *[]){"status", "0x0000", NULL});
 *   kl_metric_inc(ok);
 *   kl_metrics_render(m, &buf);    -> # HELP ... # TYPE ... counter / name{status="0x0000"} 1
 *
 * A series is a metric name plus label pairs. Registering the same name and labels again
 * returns the same series, so a daemon may look series up lazily (a linear search: keep the
 * pointer for hot paths). Series of one name form one family with one type and HELP text; a
 * name registered with another type, a bad name or label name, or a histogram without buckets
 * gives NULL (a programming error; the update functions ignore NULL).
 *
 * Gauges and counters may be computed at render time by a callback (calendar height, open
 * connections, a server's own counters).
 * Histograms have fixed upper bounds given at registration; +Inf is implicit.
 *
 * Not thread-safe: register, update and render from one thread (the daemon's loop). Series
 * live until kl_metrics_destroy(); name, help and labels are copied.
 */
#ifndef KEYLESS_METRICS_H
#define KEYLESS_METRICS_H

#include <stddef.h>

#include "keyless/buf.h"
#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_metrics kl_metrics_t;
typedef struct kl_metric kl_metric_t;
typedef double (*kl_metric_fn)(void *arg);

/* Upper bounds in seconds for request latencies: 100 us .. 10 s. */
KL_API extern const double kl_metrics_latency_buckets[];
KL_API extern const size_t kl_metrics_latency_n;

/* The libuv this process runs with (not only built against), for keyless_build_info and the
 * daemons' --version and start-up line (lib/daemon/src/uvversion.c; the client library's
 * keyless/version.h has the rest and no libuv). */
KL_API const char *kl_build_libuv(void);

KL_API int kl_metrics_create(kl_metrics_t **out, kl_err_t *e);
KL_API void kl_metrics_destroy(kl_metrics_t *m);

/* labels: NULL, or a NULL-terminated array of name, value, name, value... (at most 8 pairs). */
KL_API kl_metric_t *kl_metrics_counter(kl_metrics_t *m, const char *name, const char *help,
                                       const char *const *labels);
KL_API kl_metric_t *kl_metrics_gauge(kl_metrics_t *m, const char *name, const char *help,
                                     const char *const *labels);
/* A gauge whose value is fn(arg) at render time; arg must outlive the registry. */
KL_API kl_metric_t *kl_metrics_gauge_fn(kl_metrics_t *m, const char *name, const char *help,
                                        const char *const *labels, kl_metric_fn fn, void *arg);
/* A counter whose value is fn(arg) at render time (a count kept elsewhere, like a server's). */
KL_API kl_metric_t *kl_metrics_counter_fn(kl_metrics_t *m, const char *name, const char *help,
                                          const char *const *labels, kl_metric_fn fn, void *arg);
/* bounds: strictly increasing, finite, 1..64 of them; copied. */
KL_API kl_metric_t *kl_metrics_histogram(kl_metrics_t *m, const char *name, const char *help,
                                         const char *const *labels, const double *bounds,
                                         size_t n_bounds);

KL_API void kl_metric_inc(kl_metric_t *x);               /* counter or gauge: +1 */
KL_API void kl_metric_add(kl_metric_t *x, double v);     /* counter (v >= 0) or gauge */
KL_API void kl_metric_set(kl_metric_t *x, double v);     /* gauge */
KL_API void kl_metric_observe(kl_metric_t *x, double v); /* histogram */
/* A histogram's state copied out and in, for a registry per thread summed into one (a
 * multi-loop gateway, gateway/gw_daemon.c): counts per bucket, not cumulative, the last one
 * +Inf (n_bounds + 1 of them). get copies at most n and returns how many there are (0: not a
 * histogram); set replaces the counts, their total and sum (n must be n_bounds + 1, else it
 * does nothing). */
KL_API size_t kl_metric_histogram_get(const kl_metric_t *x, unsigned long long *counts, size_t n, double *sum);
KL_API void kl_metric_histogram_set(kl_metric_t *x, const unsigned long long *counts, size_t n, double sum);
/* Counter or gauge value; a histogram's count of observations. */
KL_API double kl_metric_value(const kl_metric_t *x);

/* Appends the whole registry as Prometheus text. 0 or KL_ENOMEM. */
KL_API int kl_metrics_render(const kl_metrics_t *m, kl_buf_t *out, kl_err_t *e);
#define KL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#ifdef __cplusplus
}
#endif
#endif
