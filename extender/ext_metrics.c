/* The extender's metrics (ext_daemon.h): the registry's gauges read the daemon's state on the
 * loop thread at each scrape; the counters are bumped on the loop as PDUs are answered. */
#include <stdio.h>
#include <time.h>

#include "ext_daemon.h"

const char *const ext__transport_name[2] = {"http", "tcp"};
const char *const ext__wake_name[5] = {"caught_up", "timeout", "gone", "stopped", "full"};


static double m_cal(void *arg, int which) {
  extender_t *x = arg;
  kl_cal_info_t ci;
  kl_cal_t *cal = ext__cal_get(x);
  if (cal == NULL || kl_cal_info(cal, &ci, NULL)) return which == 2 ? 0 : -1;
  if (which == 0) return ci.empty ? -1 : (double)ci.last;
  if (which == 1) return (double)ci.genesis;
  return ci.empty ? 0 : 1;
}
static double m_cal_last(void *arg) { return m_cal(arg, 0); }
static double m_cal_genesis(void *arg) { return m_cal(arg, 1); }
static double m_cal_up(void *arg) { return m_cal(arg, 2); }
static double m_users(void *arg) { return (double)kl_users_count(((extender_t *)arg)->users->u); }
static double m_workers(void *arg) { return (double)((extender_t *)arg)->pool.n; }
static double m_queued(void *arg) { return (double)((extender_t *)arg)->pool.pending; }
static double m_lag(void *arg) {
  extender_t *x = arg;
  ext__sync_check(x);
  return x->follow ? (double)ext_follow_lag(x->follow) : -1;
}
/* now - the replica's last second: what a client asking for a fresh second waits on. */
static double m_replica_lag(void *arg) {
  extender_t *x = arg;
  kl_cal_info_t ci;
  kl_cal_t *cal = ext__cal_get(x);
  uint64_t now = (uint64_t)time(NULL);
  if (cal == NULL || kl_cal_info(cal, &ci, NULL) || ci.empty) return -1;
  return now > ci.last ? (double)(now - ci.last) : 0;
}
static double m_waiting(void *arg) { return (double)((extender_t *)arg)->waitq.n; }
static double m_diverged(void *arg) { return ext_follow_diverged(((extender_t *)arg)->follow) ? 1 : 0; }
static double m_serving(void *arg) {
  extender_t *x = arg;
  kl_cal_info_t ci;
  kl_cal_t *cal = ext__cal_get(x);
  if (cal == NULL || kl_cal_info(cal, &ci, NULL) || ci.empty) return 0;
  return ext__sync_check(x) == NULL ? 1 : 0;
}

int ext__metrics_init(extender_t *x, kl_err_t *e) {
  if (kl_metrics_create(&x->m, e)) return KL_ENOMEM;
  kl_metrics_t *m = x->m;
  bool ok = true;
  for (int t = 0; t < 2; t++)
    ok &= (x->duration[t] = kl_metrics_histogram(m, "keyless_extender_pdu_duration_seconds",
                                                 "Time to answer one request PDU, by transport.",
                                                 (const char *[]){"transport", ext__transport_name[t], NULL},
                                                 kl_metrics_latency_buckets, kl_metrics_latency_n)) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_calendar_last_second", "Last second in the calendar (-1: none).", NULL,
                            m_cal_last, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_calendar_genesis_second", "First second of the calendar (-1: unavailable).",
                            NULL, m_cal_genesis, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_calendar_up", "1 when the calendar is open and not empty.", NULL, m_cal_up,
                            x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_users", "Logins in the users file.", NULL, m_users, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_replication_lag_seconds",
                            "Seconds the replica's last second is behind the later of the clock and the core's "
                            "committed last second (-1: not following, or no calendar).",
                            NULL, m_lag, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_replica_lag_seconds",
                            "Seconds from the replica's last second to now (-1: no calendar, or empty).", NULL,
                            m_replica_lag, x) != NULL;
  ok &= (x->m_refused = kl_metrics_counter(m, "keyless_extender_replication_refused_total",
                                           "Replication batches refused (untrusted, or a root other than the core "
                                           "signed): each one stops the follower.",
                                           NULL)) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_replication_diverged",
                            "1 once replication refused a batch or stopped on an error (until restart).", NULL,
                            m_diverged, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_serving",
                            "1 when extension requests are answered: the calendar is open and, when following, "
                            "in step with the core.",
                            NULL, m_serving, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_replica_waiting",
                            "Request PDUs held now until the replica holds their second ([server] replica_wait).",
                            NULL, m_waiting, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_workers", "Threads answering extension requests ([server] workers).",
                            NULL, m_workers, x) != NULL;
  ok &= kl_metrics_gauge_fn(m, "keyless_extender_pdus_in_progress",
                            "Request PDUs handed to the workers and not yet answered (queued or being answered).",
                            NULL, m_queued, x) != NULL;
  ok &= kl_net_metrics_register(m, &x->nm_http, "http", true) == 0;
  ok &= kl_net_metrics_register(m, &x->nm_https, "https", true) == 0;
  ok &= kl_net_metrics_register(m, &x->nm_tcp, "tcp", false) == 0;
  ok &= kl_net_metrics_register(m, &x->nm_admin, "admin", true) == 0;
  return ok ? 0 : kl_err_set(e, KL_ENOMEM, "metrics: registration failed");
}

void ext__status_label(char *buf, size_t n, uint64_t status) {
  snprintf(buf, n, "0x%04llX", (unsigned long long)status);
}

void ext__count_status(void *arg, uint64_t status) {
  extender_t *x = arg;
  char s[24];
  ext__status_label(s, sizeof s, status);
  kl_metric_inc(kl_metrics_counter(x->m, "keyless_extender_requests_total",
                                   "Extension requests answered, by KSI status.", (const char *[]){"status", s, NULL}));
}

void ext__count_wait(extender_t *x, int why) {
  kl_metric_inc(kl_metrics_counter(x->m, "keyless_extender_replica_waits_total",
                                   "Request PDUs that asked for a second the replica did not hold yet and were "
                                   "held ([server] replica_wait), by how the wait ended (full: not held, too "
                                   "many waiting).",
                                   (const char *[]){"result", ext__wake_name[why], NULL}));
}

