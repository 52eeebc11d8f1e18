/* Metrics registry and its Prometheus text rendering. */
#include "keyless/metrics.h"
#include "keyless/version.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

#define MAX_BOUNDS 64
#define MAX_LABEL_PAIRS 8

struct kl_metric {
  struct family *fam;
  char *labels; /* rendered pairs without braces: a="x",b="y" ("" for none) */
  double value;
  kl_metric_fn fn;
  void *fn_arg;
  /* histograms */
  double *bounds;
  size_t n_bounds;
  unsigned long long *counts; /* per bucket, not cumulative; [n_bounds] is +Inf */
  unsigned long long count;
  double sum;
  struct kl_metric *next;
};

typedef struct family {
  char *name, *help;
  enum kind kind;
  kl_metric_t *first, *last;
  struct family *next;
} family_t;

struct kl_metrics {
  family_t *first, *last;
};

const double kl_metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
const size_t kl_metrics_latency_n = sizeof kl_metrics_latency_buckets / sizeof kl_metrics_latency_buckets[0];

/* The host's clock discipline as the kernel knows it (NTP, chrony: adjtimex(2) read-only). */
static double g_clock_synced(void *arg) {
  struct timex tx = {.modes = 0};
  (void)arg;
  return ntp_adjtime(&tx) == TIME_ERROR ? 0 : 1;
}

static double g_clock_maxerror(void *arg) {
  struct timex tx = {.modes = 0};
  (void)arg;
  ntp_adjtime(&tx);
  return (double)tx.maxerror / 1e6;
}

int kl_metrics_create(kl_metrics_t **out, kl_err_t *e) {
  if (out == NULL) return kl_err_set(e, KL_EINVAL, "kl_metrics_create: NULL argument");
  if ((*out = calloc(1, sizeof **out)) == NULL) return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  /* Every registry says which build answers (a daemon's /metrics, the benchmarks'). */
  const char *labels[] = {"version", kl_version(), "commit", kl_build_commit(), "openssl", kl_build_openssl(),
                          "libuv", kl_build_libuv(), NULL};
  kl_metric_t *b = kl_metrics_gauge(*out, "keyless_build_info",
                                    "1, labelled with the version, commit, OpenSSL and libuv of this process", labels);
  if (b == NULL) {
    kl_metrics_destroy(*out);
    *out = NULL;
    return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  }
  kl_metric_set(b, 1);
  /* Every process's clock dates signatures or checks them: whether the host keeps it in time. */
  if (kl_metrics_gauge_fn(*out, "keyless_clock_synchronized",
                          "1 when the kernel reports the host clock synchronized (NTP/chrony), else 0", NULL,
                          g_clock_synced, NULL) == NULL ||
      kl_metrics_gauge_fn(*out, "keyless_clock_max_error_seconds",
                          "the kernel's maximum error estimate of the host clock (adjtimex maxerror)", NULL,
                          g_clock_maxerror, NULL) == NULL) {
    kl_metrics_destroy(*out);
    *out = NULL;
    return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  }
  return 0;
}

static void series_free(kl_metric_t *x) {
  free(x->labels);
  free(x->bounds);
  free(x->counts);
  free(x);
}

void kl_metrics_destroy(kl_metrics_t *m) {
  if (m == NULL) return;
  for (family_t *f = m->first, *fn; f; f = fn) {
    fn = f->next;
    for (kl_metric_t *x = f->first, *xn; x; x = xn) {
      xn = x->next;
      series_free(x);
    }
    free(f->name);
    free(f->help);
    free(f);
  }
  free(m);
}

static bool valid_name(const char *s, bool colon) {
  if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9')) return false;
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          (colon && c == ':')))
      return false;
  }
  return true;
}

/* Label values escape \, " and newline. */
static void put_escaped(kl_buf_t *b, const char *s, bool quote) {
  for (; *s; s++) {
    if (*s == '\\') kl_buf_put(b, "\\\\", 2);
    else if (*s == '\n') kl_buf_put(b, "\\n", 2);
    else if (quote && *s == '"') kl_buf_put(b, "\\\"", 2);
    else kl_buf_put_u8(b, (uint8_t)*s);
  }
}

static char *render_labels(const char *const *labels) {
  kl_buf_t b = KL_BUF_INIT;
  size_t pairs = 0;
  for (size_t i = 0; labels && labels[i]; i += 2, pairs++) {
    if (pairs == MAX_LABEL_PAIRS || labels[i + 1] == NULL || !valid_name(labels[i], false) ||
        strcmp(labels[i], "le") == 0 || strncmp(labels[i], "__", 2) == 0) {
      kl_buf_free(&b);
      return NULL;
    }
    if (i) kl_buf_put_u8(&b, ',');
    kl_buf_put(&b, labels[i], strlen(labels[i]));
    kl_buf_put(&b, "=\"", 2);
    put_escaped(&b, labels[i + 1], true);
    kl_buf_put_u8(&b, '"');
  }
  kl_buf_put_u8(&b, '\0');
  if (!kl_buf_ok(&b)) {
    kl_buf_free(&b);
    return NULL;
  }
  return (char *)kl_buf_steal(&b, NULL);
}

static family_t *family_get(kl_metrics_t *m, const char *name, const char *help, enum kind kind) {
  for (family_t *f = m->first; f; f = f->next)
    if (strcmp(f->name, name) == 0) return f->kind == kind ? f : NULL;
  family_t *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  f->kind = kind;
  if (f->name == NULL || f->help == NULL) {
    free(f->name);
    free(f->help);
    free(f);
    return NULL;
  }
  if (m->last) m->last->next = f;
  else m->first = f;
  m->last = f;
  return f;
}

static kl_metric_t *series_get(kl_metrics_t *m, const char *name, const char *help, const char *const *labels,
                               enum kind kind, const double *bounds, size_t n_bounds) {
  if (m == NULL || !valid_name(name, true)) return NULL;
  if (kind == K_HISTOGRAM) {
    if (bounds == NULL || n_bounds == 0 || n_bounds > MAX_BOUNDS) return NULL;
    for (size_t i = 0; i < n_bounds; i++)
      if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1])) return NULL;
  }
  char *lab = render_labels(labels);
  if (lab == NULL) return NULL;
  family_t *f = family_get(m, name, help, kind);
  if (f == NULL) {
    free(lab);
    return NULL;
  }
  for (kl_metric_t *x = f->first; x; x = x->next)
    if (strcmp(x->labels, lab) == 0) {
      free(lab);
      return x;
    }
  kl_metric_t *x = calloc(1, sizeof *x);
  if (x == NULL) {
    free(lab);
    return NULL;
  }
  x->fam = f;
  x->labels = lab;
  if (kind == K_HISTOGRAM) {
    x->bounds = malloc(n_bounds * sizeof *x->bounds);
    x->counts = calloc(n_bounds + 1, sizeof *x->counts);
    if (x->bounds == NULL || x->counts == NULL) {
      series_free(x);
      return NULL;
    }
    memcpy(x->bounds, bounds, n_bounds * sizeof *bounds);
    x->n_bounds = n_bounds;
  }
  if (f->last) f->last->next = x;
  else f->first = x;
  f->last = x;
  return x;
}

kl_metric_t *kl_metrics_counter(kl_metrics_t *m, const char *name, const char *help, const char *const *labels) {
  return series_get(m, name, help, labels, K_COUNTER, NULL, 0);
}

kl_metric_t *kl_metrics_gauge(kl_metrics_t *m, const char *name, const char *help, const char *const *labels) {
  return series_get(m, name, help, labels, K_GAUGE, NULL, 0);
}

kl_metric_t *kl_metrics_gauge_fn(kl_metrics_t *m, const char *name, const char *help, const char *const *labels,
                                 kl_metric_fn fn, void *arg) {
  kl_metric_t *x = series_get(m, name, help, labels, K_GAUGE, NULL, 0);
  if (x) {
    x->fn = fn;
    x->fn_arg = arg;
  }
  return x;
}

kl_metric_t *kl_metrics_counter_fn(kl_metrics_t *m, const char *name, const char *help, const char *const *labels,
                                   kl_metric_fn fn, void *arg) {
  kl_metric_t *x = series_get(m, name, help, labels, K_COUNTER, NULL, 0);
  if (x) {
    x->fn = fn;
    x->fn_arg = arg;
  }
  return x;
}

kl_metric_t *kl_metrics_histogram(kl_metrics_t *m, const char *name, const char *help, const char *const *labels,
                                  const double *bounds, size_t n_bounds) {
  kl_metric_t *x = series_get(m, name, help, labels, K_HISTOGRAM, bounds, n_bounds);
  /* A histogram found again must have the same buckets. */
  if (x && (x->n_bounds != n_bounds || memcmp(x->bounds, bounds, n_bounds * sizeof *bounds) != 0)) return NULL;
  return x;
}

void kl_metric_inc(kl_metric_t *x) { kl_metric_add(x, 1); }

void kl_metric_add(kl_metric_t *x, double v) {
  if (x == NULL || x->fam->kind == K_HISTOGRAM || (x->fam->kind == K_COUNTER && !(v >= 0))) return;
  x->value += v;
}

void kl_metric_set(kl_metric_t *x, double v) {
  if (x != NULL && x->fam->kind == K_GAUGE) x->value = v;
}

void kl_metric_observe(kl_metric_t *x, double v) {
  if (x == NULL || x->fam->kind != K_HISTOGRAM || isnan(v)) return;
  size_t i = 0;
  while (i < x->n_bounds && v > x->bounds[i]) i++;
  x->counts[i]++;
  x->count++;
  x->sum += v;
}

size_t kl_metric_histogram_get(const kl_metric_t *x, unsigned long long *counts, size_t n, double *sum) {
  if (x == NULL || x->fam->kind != K_HISTOGRAM) return 0;
  size_t have = x->n_bounds + 1;
  memcpy(counts, x->counts, (n < have ? n : have) * sizeof *counts);
  if (sum) *sum = x->sum;
  return have;
}

void kl_metric_histogram_set(kl_metric_t *x, const unsigned long long *counts, size_t n, double sum) {
  if (x == NULL || x->fam->kind != K_HISTOGRAM || n != x->n_bounds + 1) return;
  x->count = 0;
  for (size_t i = 0; i < n; i++) x->count += x->counts[i] = counts[i];
  x->sum = sum;
}

double kl_metric_value(const kl_metric_t *x) {
  if (x == NULL) return 0;
  if (x->fam->kind == K_HISTOGRAM) return (double)x->count;
  return x->fn ? x->fn(x->fn_arg) : x->value;
}

/* ---- rendering ---- */

static void put_str(kl_buf_t *b, const char *s) { kl_buf_put(b, s, strlen(s)); }

static void put_double(kl_buf_t *b, double v) {
  char tmp[40];
  if (isnan(v)) put_str(b, "NaN");
  else if (isinf(v)) put_str(b, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(tmp, sizeof tmp, "%.0f", v); /* counts: 10, not 1e+01 */
    put_str(b, tmp);
  } else {
    snprintf(tmp, sizeof tmp, "%.17g", v);
    /* Shortest form that reads back the same (1 rather than 1.0000000000000000). */
    for (int prec = 1; prec < 17; prec++) {
      char t2[40];
      snprintf(t2, sizeof t2, "%.*g", prec, v);
      if (strtod(t2, NULL) == v) {
        memcpy(tmp, t2, sizeof tmp);
        break;
      }
    }
    put_str(b, tmp);
  }
}

static void put_sample(kl_buf_t *b, const char *name, const char *suffix, const char *labels, const char *extra,
                       double v) {
  put_str(b, name);
  put_str(b, suffix);
  bool any = labels[0] || extra;
  if (any) kl_buf_put_u8(b, '{');
  put_str(b, labels);
  if (labels[0] && extra) kl_buf_put_u8(b, ',');
  if (extra) put_str(b, extra);
  if (any) kl_buf_put_u8(b, '}');
  kl_buf_put_u8(b, ' ');
  put_double(b, v);
  kl_buf_put_u8(b, '\n');
}

static void render_histogram(kl_buf_t *b, const family_t *f, const kl_metric_t *x) {
  unsigned long long cum = 0;
  char le[64];
  for (size_t i = 0; i <= x->n_bounds; i++) {
    cum += x->counts[i];
    if (i < x->n_bounds) {
      kl_buf_t tmp = KL_BUF_INIT;
      put_double(&tmp, x->bounds[i]);
      snprintf(le, sizeof le, "le=\"%.*s\"", (int)tmp.len, tmp.p ? (const char *)tmp.p : "");
      kl_buf_free(&tmp);
    } else {
      snprintf(le, sizeof le, "le=\"+Inf\"");
    }
    put_sample(b, f->name, "_bucket", x->labels, le, (double)cum);
  }
  put_sample(b, f->name, "_sum", x->labels, NULL, x->sum);
  put_sample(b, f->name, "_count", x->labels, NULL, (double)x->count);
}

int kl_metrics_render(const kl_metrics_t *m, kl_buf_t *out, kl_err_t *e) {
  static const char *const type_names[] = {"counter", "gauge", "histogram"};
  if (m == NULL || out == NULL) return kl_err_set(e, KL_EINVAL, "kl_metrics_render: NULL argument");
  for (const family_t *f = m->first; f; f = f->next) {
    put_str(out, "# HELP ");
    put_str(out, f->name);
    kl_buf_put_u8(out, ' ');
    put_escaped(out, f->help, false);
    put_str(out, "\n# TYPE ");
    put_str(out, f->name);
    kl_buf_put_u8(out, ' ');
    put_str(out, type_names[f->kind]);
    kl_buf_put_u8(out, '\n');
    for (const kl_metric_t *x = f->first; x; x = x->next) {
      if (f->kind == K_HISTOGRAM) render_histogram(out, f, x);
      else put_sample(out, f->name, "", x->labels, NULL, kl_metric_value(x));
    }
  }
  return kl_buf_check(out, e);
}
