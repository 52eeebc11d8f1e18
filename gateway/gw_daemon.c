/* The gateway daemon on a libuv loop: KSI aggregation over HTTP POST (any path) and ksi+tcp,
 * the admin port (/healthz, /metrics), the tier (rounds and parents), SIGTERM/SIGINT for a
 * graceful stop and SIGHUP to reload the users file.
 *
 * Stopping: the KSI servers close first (no new requests; the rounds in flight are answered
 * and written), then the tier (anything still held gets a retryable 0x0300), then the admin
 * port, so a rolling restart loses no acknowledged request.
 *
 * With [gateway] threads > 1 the same gateway_t serves on each worker's loop (gw_serve_*: its
 * servers with SO_REUSEPORT, its service, its own metrics registry; no tier, no admin), and the
 * main one holds the tier, the admin port and the pool (gw_pool.c); its metrics show the
 * workers' counters, copied at each round tick, summed and by worker, and their PDU duration
 * histograms merged into one per transport. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_threads.h"
#include "keyless/log.h"

struct gateway {
  uv_loop_t *loop;
  const gw_config_t *cfg;
  kl_users_t *users;
  kl_metrics_t *m;
  kl_tier_t *tier;
  gw_service_t svc;
  const char *parents[KL_TIER_MAX_PARENTS];
  char name[128];
  kl_http_server_t *http, *https, *admin;
  kl_tlv_server_t *tcp;
  kl_net_metrics_t nm_http, nm_https, nm_tcp, nm_admin;
  kl_tls_ctx_t *tls, *https_tls; /* towards the parents; for https clients */
  kl_admin_t adm;
  uv_signal_t sig[3];
  int n_sig;
  bool stopping;
  int servers_open;
  kl_metric_t *duration[2];
  kl_metric_t *pdus_ok[2]; /* keyless_gateway_pdus_total with status 0x0000, by transport: the hot series */
  gw_worker_t *worker;     /* a worker's gateway: its servers and service only */
  gw_pool_t *pool;         /* the main gateway of threads > 1 */
  const int *ports;        /* a worker after the first: the ports worker 0 bound (http, https, tcp) */
  int n_workers;
  gw_stats_t sum, per[GW_MAX_THREADS]; /* the workers' counters, copied at each round tick */
  struct wref {
    gateway_t *gw;
    int i, j;
  } wref[GW_MAX_THREADS], sref[GW_MAX_THREADS][GW_N_REFUSED];
  uint16_t exported[GW_MAX_THREADS]; /* which refused statuses have a series, by worker */
};

static const char *const refused_status[GW_N_REFUSED] = {"0x0101", "0x0102", "0x0103", "0x0104", "0x0105",
                                                         "0x0106", "0x0107", "0x0200", "0x0300", "0x0301"};
#define REQUESTS_HELP "Aggregation requests answered, by KSI status."

static const char *const transport_name[2] = {"http", "tcp"};
#define PDUS_HELP "Request PDUs answered, by transport and PDU-level status (0: answered per request)."

static void account(gateway_t *gw, int transport, const gw_outcome_t *out, uint64_t t0) {
  uint64_t us = (uv_hrtime() - t0) / 1000;
  kl_metric_observe(gw->duration[transport], (double)us / 1e6);
  char s[24], lq[100], mq[300];
  uint64_t status = out->status;
  bool ok_fast = status == 0 && gw->pdus_ok[transport]; /* no lookup by name and labels for every PDU */
  int level = out->status || out->message[0] ? KL_LOG_INFO : KL_LOG_DEBUG;
  bool logged = kl_log_enabled(level);
  if (!ok_fast || logged) snprintf(s, sizeof s, "0x%04llX", (unsigned long long)status); /* not for every PDU */
  if (ok_fast)
    kl_metric_inc(gw->pdus_ok[transport]);
  else
    kl_metric_inc(kl_metrics_counter(gw->m, "keyless_gateway_pdus_total", PDUS_HELP,
                                     (const char *[]){"transport", transport_name[transport], "status", s, NULL}));
  if (logged)
    kl_log(level, "aggregate", "transport=%s login=%s requests=%zu config=%d status=%s us=%llu%s%s",
           transport_name[transport], kl_log_q(lq, sizeof lq, out->login), out->n_requests, out->config, s,
           (unsigned long long)us, out->message[0] ? " message=" : "",
           out->message[0] ? kl_log_q(mq, sizeof mq, out->message) : "");
}

static void respond(gateway_t *gw, int transport, void *req, uint8_t *resp, size_t len, const gw_outcome_t *out,
                    uint64_t t0) {
  if (resp == NULL) { /* a copy only to change the status */
    gw_outcome_t o = *out;
    o.status = KL_STATUS_INTERNAL_ERROR;
    account(gw, transport, &o, t0);
  } else {
    account(gw, transport, out, t0);
  }
  if (transport == GW_HTTP) {
    /* 200 for every aggregation request PDU, whatever its KSI status; 400 (the error PDU still
     * in the body) for a body that is not one: libksi reads the body of either. */
    if (resp) kl_http_respond_take(req, out->wrong_service ? 400 : 200, "application/ksi-response", resp, len);
    else kl_http_respond(req, 500, "text/plain", "internal error\n", 15);
  } else {
    if (resp) kl_tlv_respond_take(req, resp, len, out->not_a_pdu);
    else kl_tlv_respond(req, NULL, 0, true);
  }
}

static void on_http(kl_http_req_t *req, void *arg) {
  gateway_t *gw = arg;
  size_t n;
  const uint8_t *body = kl_http_req_body(req, &n);
  gw_handle(&gw->svc, gw, GW_HTTP, req, body, n, respond);
}

static void on_json(kl_http_req_t *req, void *arg) {
  gateway_t *gw = arg;
  gw_json_sign(gw, &gw->svc, req, account);
}

static void on_tcp(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  gateway_t *gw = arg;
  gw_handle(&gw->svc, gw, GW_TCP, req, frame, len, respond);
}

/* Green while a parent is up and rounds are answered (kl_tier_health); the loop thread's. */
static const char *health(void *arg) {
  static char why[512];
  gateway_t *gw = arg;
  return gw->tier ? kl_tier_health(gw->tier, why, sizeof why) : "stopping";
}

static double m_users(void *arg) { return (double)kl_users_count(((gateway_t *)arg)->users); }
static double m_parents_up(void *arg) {
  gateway_t *gw = arg;
  return gw->tier ? (double)kl_tier_parents_up(gw->tier) : 0;
}

static double m_sum_pdus_http(void *arg) { return ((gateway_t *)arg)->sum.pdus_ok[GW_HTTP]; }
static double m_sum_pdus_tcp(void *arg) { return ((gateway_t *)arg)->sum.pdus_ok[GW_TCP]; }
static double m_worker_ok(void *arg) {
  const struct wref *r = arg;
  return r->gw->per[r->i].requests_ok;
}
static double m_worker_refused(void *arg) {
  const struct wref *r = arg;
  return r->gw->per[r->i].refused[r->j];
}
static double m_sum_future(void *arg) { return ((gateway_t *)arg)->sum.future; }
static double m_sum_rounds_full(void *arg) { return ((gateway_t *)arg)->sum.rounds_full; }
static double m_sum_roots_late(void *arg) { return ((gateway_t *)arg)->sum.roots_late; }

/* The main gateway with workers: their PDU and connection counters summed, their requests
 * answered by worker and status (labelled worker="I"; a refused status once a worker has one). */
static int pool_metrics_init(gateway_t *gw) {
  bool ok = true;
  static kl_metric_fn const pdus[2] = {m_sum_pdus_http, m_sum_pdus_tcp};
  for (int t = 0; t < 2; t++)
    ok &= kl_metrics_counter_fn(gw->m, "keyless_gateway_pdus_total", PDUS_HELP,
                                (const char *[]){"transport", transport_name[t], "status", "0x0000", NULL}, pdus[t],
                                gw) != NULL;
  for (int i = 0; i < gw->n_workers; i++) { /* by worker: sum() in a query adds them up */
    char w[16];
    snprintf(w, sizeof w, "%d", i);
    gw->wref[i] = (struct wref){gw, i, 0};
    ok &= kl_metrics_counter_fn(gw->m, "keyless_gateway_requests_total", REQUESTS_HELP,
                                (const char *[]){"status", "0x0000", "worker", w, NULL}, m_worker_ok, &gw->wref[i]) !=
          NULL;
  }
  ok &= kl_metrics_counter_fn(gw->m, "keyless_gateway_future_signatures_total",
                              "Answers withheld because their aggregation second had not begun on this gateway's "
                              "clock (a clock is wrong: this one or the core's)",
                              NULL, m_sum_future, gw) != NULL;
  /* The workers' rounds: the tier's series under tier="gateway_worker", summed over them. */
  ok &= kl_metrics_counter_fn(gw->m, "keyless_tier_rounds_closed_full_total",
                              "Rounds closed before their time because they held max_requests.",
                              (const char *[]){"tier", "gateway_worker", NULL}, m_sum_rounds_full, gw) != NULL;
  ok &= kl_metrics_counter_fn(gw->m, "keyless_gateway_worker_roots_late_total",
                              "Worker subtree roots that came after their tier round closed at its deadline "
                              "(they joined the next round).",
                              NULL, m_sum_roots_late, gw) != NULL;
  gw->nm_http.stats = &gw->sum.http;
  gw->nm_https.stats = &gw->sum.https;
  gw->nm_tcp.stats = &gw->sum.tcp;
  return ok ? 0 : -1;
}

static void on_pool_tick(void *arg) {
  gateway_t *gw = arg;
  if (gw->pool == NULL) return;
  for (int i = 0; i < gw->n_workers; i++) {
    gw_pool_stats(gw->pool, i, &gw->per[i]);
    for (int j = 0; j < GW_N_REFUSED; j++) { /* a series once the status has occurred */
      if (gw->per[i].refused[j] == 0 || (gw->exported[i] & (1u << j))) continue;
      char w[16];
      snprintf(w, sizeof w, "%d", i);
      gw->sref[i][j] = (struct wref){gw, i, j};
      if (kl_metrics_counter_fn(gw->m, "keyless_gateway_requests_total", REQUESTS_HELP,
                                (const char *[]){"status", refused_status[j], "worker", w, NULL}, m_worker_refused,
                                &gw->sref[i][j]))
        gw->exported[i] |= (uint16_t)(1u << j);
    }
  }
  gw_pool_stats(gw->pool, -1, &gw->sum);
  for (int t = 0; t < 2; t++) /* the workers' PDU durations merged: one histogram per transport */
    kl_metric_histogram_set(gw->duration[t], gw->sum.duration[t], GW_DUR_BUCKETS, gw->sum.duration_sum[t]);
}

static int metrics_init(gateway_t *gw, kl_err_t *e) {
  if (kl_metrics_create(&gw->m, e)) return KL_ENOMEM;
  bool ok = true;
  for (int t = 0; t < 2; t++) /* with workers: theirs summed (on_pool_tick) */
    ok &= (gw->duration[t] = kl_metrics_histogram(gw->m, "keyless_gateway_pdu_duration_seconds",
                                                  "From a request PDU's arrival to its response, by transport.",
                                                  (const char *[]){"transport", transport_name[t], NULL},
                                                  kl_metrics_latency_buckets, kl_metrics_latency_n)) != NULL;
  ok &= kl_metrics_latency_n + 1 == GW_DUR_BUCKETS;
  if (gw->n_workers > 1) {
    ok &= pool_metrics_init(gw) == 0;
    goto common;
  }
  for (int t = 0; t < 2; t++)
    ok &= (gw->pdus_ok[t] = kl_metrics_counter(gw->m, "keyless_gateway_pdus_total", PDUS_HELP,
                                               (const char *[]){"transport", transport_name[t], "status", "0x0000", NULL})) !=
          NULL;
  ok &= (gw->svc.m_ok = kl_metrics_counter(gw->m, "keyless_gateway_requests_total",
                                           "Aggregation requests answered, by KSI status.",
                                           (const char *[]){"status", "0x0000", NULL})) != NULL;
  ok &= (gw->svc.m_future = kl_metrics_counter(gw->m, "keyless_gateway_future_signatures_total",
                                               "Answers withheld because their aggregation second had not begun on "
                                               "this gateway's clock (a clock is wrong: this one or the core's)",
                                               NULL)) != NULL;
common:
  ok &= kl_metrics_gauge_fn(gw->m, "keyless_gateway_users", "Logins in the users file.", NULL, m_users, gw) != NULL;
  ok &= kl_metrics_gauge_fn(gw->m, "keyless_gateway_parents_up", "Parents up now (keyless_tier_parent_up).", NULL, m_parents_up, gw) !=
        NULL;
  ok &= kl_net_metrics_register(gw->m, &gw->nm_http, "http", true) == 0;
  ok &= kl_net_metrics_register(gw->m, &gw->nm_https, "https", true) == 0;
  ok &= kl_net_metrics_register(gw->m, &gw->nm_tcp, "tcp", false) == 0;
  ok &= kl_net_metrics_register(gw->m, &gw->nm_admin, "admin", true) == 0;
  return ok ? 0 : kl_err_set(e, KL_ENOMEM, "metrics: registration failed");
}

static void reload_users(gateway_t *gw) {
  kl_users_t *u;
  kl_err_t e;
  char q[300];
  if (kl_users_load(gw->cfg->users_file, &u, &e)) {
    kl_log(KL_LOG_ERROR, "users_reload_failed", "error=%s keeping=%zu", kl_log_q(q, sizeof q, e.msg),
           kl_users_count(gw->users));
    return;
  }
  kl_users_free(gw->users);
  gw->users = u;
  gw->svc.users = u; /* PDUs in flight hold their own copy of their key */
  kl_log(KL_LOG_INFO, "users_loaded", "logins=%zu", kl_users_count(u));
}

void gw_serve_reload(gateway_t *gw) {
  reload_users(gw);
  kl_tls_reload_logged(gw->https_tls, "https");
}

static void on_signal(uv_signal_t *h, int signum) {
  gateway_t *gw = h->data;
  if (signum == SIGHUP) {
    reload_users(gw);
    kl_tls_reload_logged(gw->tls, "tls");
    kl_tls_reload_logged(gw->https_tls, "https");
    if (gw->pool) gw_pool_reload(gw->pool);
    return;
  }
  kl_log(KL_LOG_INFO, "signal", "signal=%s", signum == SIGTERM ? "TERM" : "INT");
  gateway_stop(gw);
}

static void on_admin_closed(kl_http_server_t *s, void *arg) {
  (void)s;
  (void)arg;
}

static void on_tier_closed(void *arg) {
  gateway_t *gw = arg;
  if (gw->pool) { /* the workers have nothing left in flight: they exit and are joined */
    on_pool_tick(gw);
    gw_pool_close(gw->pool);
    gw->pool = NULL;
  }
  kl_http_server_t *admin = gw->admin;
  gw->admin = NULL;
  gw->nm_admin.stats = NULL;
  kl_http_server_close(admin, on_admin_closed, gw);
  for (int i = 0; i < gw->n_sig; i++) uv_close((uv_handle_t *)&gw->sig[i], NULL);
  gw->n_sig = 0;
}

static void server_closed(gateway_t *gw) {
  if (--gw->servers_open > 0) return;
  if (gw->worker) {
    gw_worker_servers_closed(gw->worker);
    return;
  }
  kl_tier_t *t = gw->tier;
  gw->tier = NULL;
  if (t) kl_tier_close(t, on_tier_closed, gw);
  else on_tier_closed(gw);
}
static void on_http_closed(kl_http_server_t *s, void *arg) {
  (void)s;
  server_closed(arg);
}
static void on_tcp_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  server_closed(arg);
}
static void on_pool_stopped(void *arg) { server_closed(arg); }

void gateway_stop(gateway_t *gw) {
  if (gw == NULL || gw->stopping) return;
  gw->stopping = true;
  kl_log(KL_LOG_INFO, "stopping", NULL);
  kl_http_server_t *http = gw->http, *https = gw->https;
  kl_tlv_server_t *tcp = gw->tcp;
  gw->http = gw->https = NULL;
  gw->tcp = NULL;
  gw->nm_http.stats = gw->nm_https.stats = gw->nm_tcp.stats = NULL;
  gw->servers_open = 1 + (http != NULL) + (https != NULL) + (tcp != NULL) + (gw->pool != NULL);
  if (gw->pool) gw_pool_stop(gw->pool, on_pool_stopped, gw);
  if (http) kl_http_server_close(http, on_http_closed, gw);
  if (https) kl_http_server_close(https, on_http_closed, gw);
  if (tcp) kl_tlv_server_close(tcp, on_tcp_closed, gw);
  server_closed(gw);
}

/* addr with its port replaced (a worker binding the port worker 0 was given for port 0). */
static const char *with_port(const char *addr, const int *ports, int i, char *buf, size_t n) {
  const char *colon = strrchr(addr, ':');
  if (ports == NULL || colon == NULL || addr[0] == '\0') return addr;
  snprintf(buf, n, "%.*s:%d", (int)(colon - addr), addr, ports[i]);
  return buf;
}

static int start_servers(gateway_t *gw, kl_err_t *e) {
  const kl_net_settings_t *c = &gw->cfg->net;
  kl_net_limits_t lim;
  kl_net_settings_limits(c, &lim);
  lim.reuseport = gw->worker != NULL;
  char b[3][128];
  const char *http_listen = with_port(c->http_listen, gw->ports, 0, b[0], sizeof b[0]);
  const char *https_listen = with_port(c->https_listen, gw->ports, 1, b[1], sizeof b[1]);
  const char *tcp_listen = with_port(c->tcp_listen, gw->ports, 2, b[2], sizeof b[2]);
  if (gw->pool) goto admin; /* the workers serve the clients */
  if (c->http_listen[0]) {
    if (kl_http_server_create(gw->loop, &lim, "http", &gw->http, e) ||
        (strcmp(gw->cfg->json_api, "any") == 0 && kl_http_route(gw->http, "POST", "/v1/sign", on_json, gw, e)) ||
        kl_http_route(gw->http, "POST", "*", on_http, gw, e) || kl_http_server_listen(gw->http, http_listen, e))
      return kl_err_wrap(e, "[server] http_listen");
    gw->nm_http.stats = kl_http_server_stats(gw->http);
  }
  if (gw->https_tls) {
    if (kl_http_server_create(gw->loop, &lim, "https", &gw->https, e) ||
        (strcmp(gw->cfg->json_api, "off") != 0 && kl_http_route(gw->https, "POST", "/v1/sign", on_json, gw, e)) ||
        kl_http_route(gw->https, "POST", "*", on_http, gw, e) ||
        (kl_http_server_set_tls(gw->https, gw->https_tls, 0, NULL, NULL), kl_http_server_listen(gw->https, https_listen, e)))
      return kl_err_wrap(e, "[server] https_listen");
    gw->nm_https.stats = kl_http_server_stats(gw->https);
  }
  if (c->tcp_listen[0]) {
    /* The same address for both: one port, each connection served by what it opens with
     * (port 0 means a port of its own for each, as everywhere). */
    bool shared = gw->http && kl_net_listen_shared(c->http_listen, c->tcp_listen);
    if (kl_tlv_server_create(gw->loop, &lim, "tcp", on_tcp, gw, &gw->tcp, e) ||
        (!shared && kl_tlv_server_listen(gw->tcp, tcp_listen, e)))
      return kl_err_wrap(e, "[server] tcp_listen");
    if (shared) kl_http_server_share(gw->http, gw->tcp);
    gw->nm_tcp.stats = kl_tlv_server_stats(gw->tcp);
  }
admin:
  if (c->admin_listen[0] && gw->worker == NULL) {
    gw->adm = (kl_admin_t){gw->m, health, gw};
    if (kl_admin_server_create(gw->loop, &lim, &gw->adm, &gw->admin, e) ||
        kl_http_server_listen(gw->admin, c->admin_listen, e))
      return kl_err_wrap(e, "[server] admin_listen");
    gw->nm_admin.stats = kl_http_server_stats(gw->admin);
  }
  return 0;
}

static void svc_init(gateway_t *gw, const kl_pdu_config_t *conf, size_t round_max_requests, int algorithm) {
  gw->svc = (gw_service_t){.tier = gw->tier, .worker = gw->worker, .users = gw->users,
                           .machine_id = gw->worker ? gw->worker->pool->name : gw->name,
                           .max_requests = (uint64_t)gw->cfg->net.max_requests, .m = gw->m, .m_ok = gw->svc.m_ok,
                           .m_future = gw->svc.m_future, .conf = *conf};
  gw_fit_init(&gw->svc, algorithm, round_max_requests);
}

int gw_serve_start(uv_loop_t *loop, const gw_config_t *cfg, gw_worker_t *w, const kl_pdu_config_t *conf,
                   size_t round_max_requests, const int *ports, gateway_t **out, kl_err_t *e) {
  gateway_t *gw = calloc(1, sizeof *gw);
  *out = gw;
  if (gw == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  gw->loop = loop;
  gw->cfg = cfg;
  gw->worker = w;
  gw->ports = ports;
  int r;
  if ((r = kl_users_load(cfg->users_file, &gw->users, e))) return kl_err_wrap(e, "[auth] users_file");
  if ((r = metrics_init(gw, e)) || (r = kl_net_settings_https(&cfg->net, &cfg->tls, cfg->path, &gw->https_tls, e)))
    return r;
  svc_init(gw, conf, round_max_requests, (int)conf->aggr_algo);
  return start_servers(gw, e);
}

void gw_serve_ports(const gateway_t *gw, int ports[3]) {
  ports[0] = gw->http ? kl_http_server_port(gw->http) : 0;
  ports[1] = gw->https ? kl_http_server_port(gw->https) : 0;
  ports[2] = gw->tcp ? kl_tlv_server_port(gw->tcp) : 0;
}

void gw_serve_stats(const gateway_t *gw, gw_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->requests_ok = kl_metric_value(gw->svc.m_ok);
  out->future = kl_metric_value(gw->svc.m_future);
  for (int j = 0; j < GW_N_REFUSED; j++) /* gw_service.c's count(); the series is made if absent */
    out->refused[j] = kl_metric_value(kl_metrics_counter(gw->m, "keyless_gateway_requests_total", REQUESTS_HELP,
                                                         (const char *[]){"status", refused_status[j], NULL}));
  for (int t = 0; t < 2; t++) {
    out->pdus_ok[t] = kl_metric_value(gw->pdus_ok[t]);
    kl_metric_histogram_get(gw->duration[t], out->duration[t], GW_DUR_BUCKETS, &out->duration_sum[t]);
  }
  if (gw->http) out->http = *kl_http_server_stats(gw->http);
  if (gw->https) out->https = *kl_http_server_stats(gw->https);
  if (gw->tcp) out->tcp = *kl_tlv_server_stats(gw->tcp);
}

int gateway_start(uv_loop_t *loop, const gw_config_t *cfg, gateway_t **out, kl_err_t *e) {
  gateway_t *gw = calloc(1, sizeof *gw);
  if (gw == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  *out = gw;
  gw->loop = loop;
  gw->cfg = cfg;
  gw->n_workers = cfg->n_threads > 1 ? cfg->n_threads : 0;
  int r;
  kl_tier_config_t tc, orig;
  if ((r = kl_users_load(cfg->users_file, &gw->users, e))) return kl_err_wrap(e, "[auth] users_file");
  if ((r = kl_tier_settings_apply(&cfg->tier, gw->parents, gw->name, &tc, e)) || (r = metrics_init(gw, e))) return r;
  if ((r = kl_tls_settings_open(&cfg->tls, cfg->path, KL_ROLE_GATEWAY, NULL, &gw->tls, e)) ||
      (r = kl_net_settings_https(&cfg->net, &cfg->tls, cfg->path, &gw->https_tls, e)))
    return r;
  tc.tls = gw->tls;
  orig = tc;
  if (gw->n_workers) { /* the tier's round holds the workers' roots: the top tree (gw_threads.h) */
    if ((r = gw_pool_new(loop, cfg, &gw->pool, e))) return r;
    tc.round.max_requests = GW_TOP_ROOTS * (size_t)gw->n_workers;
    tc.round.per_client = 0;
    tc.max_pending = 0;
    tc.manual_close = true; /* closed once every worker's root is in, or at a deadline (gw_pool.c) */
  }
  if ((r = kl_tier_create(loop, &tc, gw->m, "gateway", gw->pool ? gw_pool_tier_done : gw_on_answer,
                          gw->pool ? (void *)gw->pool : (void *)gw, &gw->tier, e)))
    return r;
  kl_round_config_t rc = orig.round;
  if (gw->pool) gw_pool_round(gw->tier, &orig, &rc);
  kl_pdu_config_t conf = {.has_max_level = true, .max_level = gw->pool ? kl_round_max_request_level(&rc)
                                                                       : kl_tier_max_request_level(gw->tier),
                          .has_aggr_algo = true, .aggr_algo = (uint64_t)tc.round.algorithm, .has_aggr_period = true,
                          .aggr_period = tc.period_ms, .has_max_requests = true,
                          .max_requests = (uint64_t)cfg->net.max_requests};
  if (cfg->announce_parents) {
    conf.parent_uris = gw->parents;
    conf.n_parent_uris = tc.n_parents;
  }
  if ((uint64_t)cfg->announce_max_level < conf.max_level) conf.max_level = (uint64_t)cfg->announce_max_level;
  svc_init(gw, &conf, rc.max_requests, tc.round.algorithm);
  if (gw->pool && (r = gw_pool_workers(gw->pool, gw->tier, &orig, &conf, e))) {
    gateway_stop(gw);
    return r;
  }
  static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, &gw->sig[i]);
    gw->sig[i].data = gw;
    gw->n_sig++;
    uv_signal_start(&gw->sig[i], on_signal, sigs[i]);
  }
  kl_log(KL_LOG_INFO, "users_loaded", "logins=%zu", kl_users_count(gw->users));
  if ((r = start_servers(gw, e)) || (gw->pool && (r = gw_pool_start(gw->pool, on_pool_tick, gw, e)))) {
    gateway_stop(gw);
    return r;
  }
  int ports[3];
  if (gw->pool) gw_pool_ports(gw->pool, ports);
  else gw_serve_ports(gw, ports);
  char q[200];
  kl_log(KL_LOG_INFO, "started",
         "name=%s parents=%zu mode=%s period_ms=%llu max_level=%u announced_max_level=%llu requests_per_pdu=%llu "
         "threads=%d http_port=%d https_port=%d tcp_port=%d admin_port=%d",
         kl_log_q(q, sizeof q, gw->name), tc.n_parents, cfg->tier.mode, (unsigned long long)tc.period_ms,
         kl_tier_max_request_level(gw->tier), (unsigned long long)gw->svc.conf.max_level,
         (unsigned long long)gw_fit(&gw->svc), gw->n_workers ? gw->n_workers : 1, ports[0], ports[1], ports[2],
         gw->admin ? kl_http_server_port(gw->admin) : 0);
  return 0;
}

void gateway_free(gateway_t *gw) {
  if (gw == NULL) return;
  kl_users_free(gw->users);
  kl_metrics_destroy(gw->m);
  kl_tls_ctx_unref(gw->tls);
  kl_tls_ctx_unref(gw->https_tls);
  free(gw);
}
