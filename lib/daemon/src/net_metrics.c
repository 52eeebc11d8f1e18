/* Connection and response counters of a server as metrics (keyless/net.h). */
#include "keyless/metrics.h"
#include "keyless/net.h"

enum { F_OPEN, F_ACCEPTED, F_REJECTED, F_BAD, F_TLS, F_IP, F_RATE, F_RESP2, F_RESP5 = F_RESP2 + 3, F_N };

static double read_field(void *arg) {
  const struct kl_net_metrics_field *f = arg;
  const kl_net_stats_t *st = f->nm->stats;
  if (st == NULL) return 0;
  switch (f->field) {
    case F_OPEN: return (double)st->open;
    case F_ACCEPTED: return (double)st->accepted;
    case F_REJECTED: return (double)st->rejected;
    case F_BAD: return (double)st->bad_input;
    case F_TLS: return (double)st->tls_refused;
    case F_IP: return (double)st->ip_refused;
    case F_RATE: return (double)st->rate_limited;
    default: return (double)st->responses[f->field - F_RESP2 + 2];
  }
}

int kl_net_metrics_register(struct kl_metrics *m, kl_net_metrics_t *nm, const char *name, bool http) {
  static const char *const classes[] = {"2xx", "3xx", "4xx", "5xx"};
  bool ok = true;
  for (int i = 0; i < F_N; i++) {
    struct kl_net_metrics_field *f = &nm->f[i];
    f->nm = nm;
    f->field = i;
    const char *lab[] = {"server", name, i >= F_RESP2 ? "class" : NULL, i >= F_RESP2 ? classes[i - F_RESP2] : NULL,
                         NULL};
    if (i == F_OPEN)
      ok &= kl_metrics_gauge_fn(m, "keyless_net_connections_open", "Open connections.", lab, read_field, f) != NULL;
    else if (i == F_ACCEPTED)
      ok &= kl_metrics_counter_fn(m, "keyless_net_connections_accepted_total", "Connections accepted.", lab, read_field,
                                  f) != NULL;
    else if (i == F_REJECTED)
      ok &= kl_metrics_counter_fn(m, "keyless_net_connections_rejected_total",
                                  "Connections closed at once: over max_connections.", lab, read_field, f) != NULL;
    else if (i == F_BAD)
      ok &= kl_metrics_counter_fn(m, "keyless_net_bad_input_total",
                                  "Unparseable or oversized requests (HTTP 400/413/431, ksi+tcp framing).", lab,
                                  read_field, f) != NULL;
    else if (i == F_TLS)
      ok &= kl_metrics_counter_fn(m, "keyless_net_peers_refused_total",
                                  "TLS handshakes failed or peers refused (certificate, role, id, CRL).", lab, read_field,
                                  f) != NULL;
    else if (i == F_IP)
      ok &= kl_metrics_counter_fn(m, "keyless_net_connections_address_refused_total",
                                  "Connections closed at once: their address is over max_connections_per_address.", lab,
                                  read_field, f) != NULL;
    else if (i == F_RATE)
      ok &= kl_metrics_counter_fn(m, "keyless_net_rate_limited_total",
                                  "Requests refused: their address is over its request rate.", lab, read_field, f) != NULL;
    else if (http)
      ok &= kl_metrics_counter_fn(m, "keyless_http_responses_total", "HTTP responses by status class.", lab, read_field,
                                  f) != NULL;
  }
  return ok ? 0 : KL_ENOMEM;
}
