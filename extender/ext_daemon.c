/* The extender daemon on a libuv loop: the service port (HTTP POST of PDUs on any path; GET
 * /publications.bin, /publications.bin.witness, /publications/history/[NAME], the calendar
 * endpoints for auditors /calendar/... (ext_audit.c) and the verification page /verify
 * (ext_www.c)), ksi+tcp, the admin port (/healthz, /metrics: ext_metrics.c), SIGTERM/SIGINT for
 * a graceful stop and SIGHUP to reload the users file, the trusted calendar-auth certificates
 * ([replication] calendar_auth_cert) and the TLS certificates.
 *
 * A PDU asking for a second the replica lacks yet but will have shortly (not after now, at
 * most replica_wait + 1 s beyond its last) is held (ext_wait.c) and answered when the replica
 * grows to it (the follower's on_progress, or a 100 ms poll) or after replica_wait.
 *
 * Threads: the loop thread keeps the sockets, the wait queue, the metrics, the log, the sync
 * state and the users file; every extension request PDU is answered by ext_handle on one of
 * [server] workers threads (ext_pool.c), with a snapshot of what the loop decided (the
 * calendar handle, the sync state, the users, the time), and comes back to the loop to be
 * counted, logged and answered (ksi+tcp answers are written in request order by the server
 * whatever order the workers finish in). A calendar chain is a few dozen LMDB page reads in a
 * read transaction of the worker's own and a few dozen hashes (microseconds); the calendar's
 * writer is the follower or another process. The users file stays alive while a worker uses
 * it, across a SIGHUP reload (users_ref_t). The calendar is opened read-only; if it cannot be opened (not created
 * yet, not replicated yet) the daemon still starts, answers 0x201 and /healthz 503, and tries
 * again at most once a second.
 *
 * With [replication] upstream (and upstream1..8) the daemon follows one of the cores
 * (ext_follow.c: it switches when the followed one is down, silent or behind) and appends only
 * batches whose signed root it computes itself (calendar_auth_cert). It stops serving
 * (/healthz 503, extension requests answered 0x200 "extender not synchronized") while
 *   - replication refused a batch: a core and the replica diverged, or a core's record is
 *     not trusted; following has stopped, and this lasts until the daemon is restarted;
 *   - the replica lags by more than max_lag: behind the highest committed_last of the cores
 *     that are up, or its last second behind the wall clock (every core stopped, unreachable
 *     or without quorum); it serves again once caught up.
 * Each change of that state is logged once (event=replication_state, WARN; ERROR for a
 * divergence), checked every second and on every request, health check and scrape.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ext_audit.h"
#include "ext_daemon.h"
#include "ext_www.h"
#include "keyless/log.h"
#include "keyless/pdu.h"
#include "keyless/pubfile.h" /* kl_crc32: a certificate's id */

static users_ref_t *users_ref_new(kl_users_t *u) {
  users_ref_t *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  *r = (users_ref_t){u, 1};
  return r;
}
static void users_ref(users_ref_t *r) { r->refs++; }
static void users_unref(users_ref_t *r) {
  if (r == NULL || --r->refs > 0) return;
  kl_users_free(r->u);
  free(r);
}


/* ---- calendar ---- */


/* The follower refused a batch (or stopped on an error): the replica can no longer be trusted
 * to follow the cores, and the daemon stops serving until it is restarted. */
static void on_follow_error(void *arg, const char *why, bool refused) {
  extender_t *x = arg;
  (void)why; /* ext_follow_sync says it from now on */
  if (refused) kl_metric_inc(x->m_refused);
  ext__sync_check(x); /* log the change now, not at the next tick */
}

/* The replica grew: answer the PDUs waiting for it now rather than at the next poll. */
static void on_follow_progress(void *arg, uint64_t last) { ext_waitq_progress(&((extender_t *)arg)->waitq, last); }

kl_cal_t *ext__cal_get(extender_t *x) {
  if (x->cal) return x->cal;
  uint64_t now = uv_now(x->loop);
  if (now < x->cal_next_try) return NULL;
  x->cal_next_try = now + 1000;
  bool follows = x->cfg->n_upstreams > 0;
  kl_cal_opts_t o = {.read_only = !follows};
  kl_err_t e;
  char q[300];
  int r = kl_cal_open(x->cfg->calendar_dir, &o, &x->cal, &e);
  if (r == KL_ENOTFOUND && follows && x->cfg->genesis > 0 &&
      kl_cal_create(x->cfg->calendar_dir, (uint64_t)x->cfg->genesis, &o, &e) == 0) {
    kl_log(KL_LOG_INFO, "calendar_created", "dir=%s genesis=%lld", kl_log_q(q, sizeof q, x->cfg->calendar_dir),
           (long long)x->cfg->genesis);
    r = kl_cal_open(x->cfg->calendar_dir, &o, &x->cal, &e);
  }
  if (r == 0) {
    kl_log(KL_LOG_INFO, "calendar_open", "dir=%s", kl_log_q(q, sizeof q, x->cfg->calendar_dir));
    x->cal_failed_logged = false;
    ext_follow_attach(x->follow, x->cal);
    return x->cal;
  }
  if (!x->cal_failed_logged) {
    char m[300];
    kl_log(KL_LOG_WARN, "calendar_unavailable", "dir=%s error=%s retry=1s", kl_log_q(q, sizeof q, x->cfg->calendar_dir),
           kl_log_q(m, sizeof m, e.msg));
    x->cal_failed_logged = true;
  }
  return NULL;
}

/* ---- in step with the cores (ext_follow.c) ---- */

/* NULL when the replica may be served; else why not (ext_follow_sync: logs a change). */
const char *ext__sync_check(extender_t *x) {
  if (x->cfg->n_upstreams == 0) return NULL; /* fed by another process: nothing to be in step with */
  return ext_follow_sync(x->follow, ext__cal_get(x));
}

static void on_sync_timer(uv_timer_t *t) { ext__sync_check(t->data); }

/* ---- handlers ---- */

/* One request PDU on its way: built on the loop, run by ext_handle on a worker thread (with a
 * copy of everything the loop decided: the calendar, the sync state, the users, the time),
 * then counted, logged and answered on the loop. A PDU that asks for a second the replica will
 * have shortly comes back with out.wait_second: it is held in the wait queue (ext_wait.c, loop
 * only) and run again, without waiting, when the queue releases it. */
typedef struct job {
  ext_waiter_t w; /* first: the queue hands it back */
  ext_job_t pj;   /* the pool's */
  extender_t *x;
  int transport;
  kl_http_req_t *hreq; /* one of the two */
  kl_tlv_req_t *treq;
  const uint8_t *p; /* the request, the server's until answered */
  size_t n;
  uint64_t t0;
  int waited; /* -1, or how the wait ended (ext__wake_name) */
  /* in: */
  ext_ctx_t ctx;
  users_ref_t *users;
  char unsynced[400];
  /* out: */
  int rc;
  uint8_t *resp;
  size_t rlen;
  ext_outcome_t out;
  size_t n_status, max_status;
  uint64_t status[]; /* per extension request, counted on the loop */
} job_t;


/* Metrics, the log line and the response of one answered request PDU. HTTP statuses: 200 for
 * every PDU of this service (clients read the KSI status inside), 400 with the error PDU when
 * the body is not one (deploy/extender.conf, docs/formats.md). */
static void finish(extender_t *x, int transport, kl_http_req_t *hreq, kl_tlv_req_t *treq, size_t n, uint64_t t0,
                   int rc, uint8_t *resp, size_t rlen, const ext_outcome_t *out, int waited) {
  const char *peer = hreq ? kl_http_req_peer(hreq) : kl_tlv_req_peer(treq);
  uint64_t dt = uv_hrtime() - t0;
  kl_metric_observe(x->duration[transport], (double)dt / 1e9);
  char s[24], lq[100], mq[300], wq[40] = "";
  ext__status_label(s, sizeof s, rc ? KL_STATUS_INTERNAL_ERROR : out->status);
  kl_metric_inc(kl_metrics_counter(x->m, "keyless_extender_pdus_total",
                                   "Request PDUs answered, by transport and PDU-level status (0: answered per request).",
                                   (const char *[]){"transport", ext__transport_name[transport], "status", s, NULL}));
  if (waited >= 0) snprintf(wq, sizeof wq, " waited=%s", ext__wake_name[waited]);
  int level = rc || out->status || out->message[0] ? KL_LOG_INFO : KL_LOG_DEBUG;
  kl_log(level, "extend", "transport=%s peer=%s login=%s bytes=%zu requests=%zu config=%d status=%s us=%llu%s%s%s",
         ext__transport_name[transport], peer, kl_log_q(lq, sizeof lq, out->login), n, out->n_requests, out->config, s,
         (unsigned long long)(dt / 1000), wq, out->message[0] ? " message=" : "",
         out->message[0] ? kl_log_q(mq, sizeof mq, out->message) : "");
  if (hreq) {
    if (rc) kl_http_respond(hreq, 500, "text/plain", "internal error\n", 15);
    else kl_http_respond_take(hreq, out->foreign ? 400 : 200, "application/ksi-response", resp, rlen);
  } else {
    if (rc) kl_tlv_respond(treq, NULL, 0, true);
    else kl_tlv_respond_take(treq, resp, rlen, out->not_a_pdu);
  }
}

/* Worker thread: ext_handle with what the loop handed over; touches nothing shared but the
 * calendar (LMDB read transactions) and the users (read only, kept alive by the job). */
static void collect_status(void *arg, uint64_t status) {
  job_t *j = arg;
  if (j->n_status < j->max_status) j->status[j->n_status++] = status;
}

static void job_work(ext_job_t *pj) {
  job_t *j = (job_t *)((char *)pj - offsetof(job_t, pj));
  j->n_status = 0;
  j->rc = ext_handle(&j->ctx, j->p, j->n, &j->resp, &j->rlen, &j->out, collect_status, j);
}

static void job_done(ext_job_t *pj);

/* Loop thread: takes a snapshot of the state ext_handle needs and hands the job to a worker. */
static void job_submit(extender_t *x, job_t *j, bool may_wait) {
  const char *unsynced = ext__sync_check(x);
  if (unsynced) snprintf(j->unsynced, sizeof j->unsynced, "%s", unsynced);
  users_ref(x->users);
  j->users = x->users;
  j->ctx = (ext_ctx_t){ext__cal_get(x), unsynced ? j->unsynced : NULL, j->users->u, (uint64_t)x->cfg->max_requests,
                       (uint64_t)time(NULL), may_wait ? x->wait_bound : 0};
  j->resp = NULL;
  j->rlen = 0;
  j->pj = (ext_job_t){NULL, job_work, job_done};
  ext_pool_submit(&x->pool, &j->pj);
}

static bool job_connected(ext_waiter_t *w) {
  job_t *j = (job_t *)w;
  return j->hreq ? kl_http_req_connected(j->hreq) : kl_tlv_req_connected(j->treq);
}

static void job_done(ext_job_t *pj) {
  job_t *j = (job_t *)((char *)pj - offsetof(job_t, pj));
  extender_t *x = j->x;
  users_unref(j->users);
  j->users = NULL;
  if (j->rc == 0 && j->out.wait_second > 0) { /* nothing was built or counted */
    int why = x->stopping ? EXT_WAKE_STOP : EXT_WAKE_FULL;
    j->w.second = j->out.wait_second;
    j->w.connected = job_connected;
    if (!x->stopping && ext_waitq_add(&x->waitq, &j->w)) return;
    ext__count_wait(x, why);
    j->waited = why;
    job_submit(x, j, false);
    return;
  }
  for (size_t i = 0; i < j->n_status; i++) ext__count_status(x, j->status[i]);
  finish(x, j->transport, j->hreq, j->treq, j->n, j->t0, j->rc, j->resp, j->rlen, &j->out, j->waited);
  free(j);
}

static void on_wait_answer(ext_waiter_t *w, int why, void *arg) {
  extender_t *x = arg;
  job_t *j = (job_t *)w;
  ext__count_wait(x, why);
  j->waited = why;
  job_submit(x, j, false);
}

static bool wait_last(void *arg, uint64_t *last) {
  extender_t *x = arg;
  kl_cal_info_t ci;
  kl_cal_t *cal = ext__cal_get(x);
  if (cal == NULL || kl_cal_info(cal, &ci, NULL) || ci.empty) return false;
  *last = ci.last;
  return true;
}

/* A request PDU from either transport: to a worker, and maybe to the wait queue after. */
static void incoming(extender_t *x, int transport, kl_http_req_t *hreq, kl_tlv_req_t *treq, const uint8_t *p,
                     size_t n) {
  uint64_t t0 = uv_hrtime();
  size_t max_status = (size_t)x->cfg->max_requests;
  job_t *j = malloc(sizeof *j + max_status * sizeof j->status[0]);
  if (j == NULL) {
    ext_outcome_t out = {0};
    snprintf(out.message, sizeof out.message, "out of memory");
    finish(x, transport, hreq, treq, n, t0, KL_ENOMEM, NULL, 0, &out, -1);
    return;
  }
  memset(j, 0, sizeof *j);
  j->x = x;
  j->transport = transport;
  j->hreq = hreq;
  j->treq = treq;
  j->p = p;
  j->n = n;
  j->t0 = t0;
  j->waited = -1;
  j->max_status = max_status;
  job_submit(x, j, true);
}

static void on_extend_http(kl_http_req_t *req, void *arg) {
  size_t n;
  const uint8_t *body = kl_http_req_body(req, &n);
  incoming(arg, 0, req, NULL, body, n);
}

static void on_extend_tcp(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  incoming(arg, 1, NULL, req, frame, len);
}

static void on_publications(kl_http_req_t *req, void *arg) {
  extender_t *x = arg;
  const uint8_t *data;
  size_t len;
  kl_err_t e;
  int r = ext_pubfile_get(&x->pub, &data, &len, &e);
  if (r == KL_ENOTFOUND) kl_http_respond(req, 404, "text/plain", "no publications file is configured\n", 35);
  else if (r) kl_http_respond(req, 503, "text/plain", "publications file unavailable\n", 30);
  else kl_http_respond(req, 200, "application/octet-stream", data, len);
}

#define HISTORY "/publications/history/"

/* GET on any other path: the history of the publications file, else 405 as before (the
 * service port takes POST on any path). */
static void on_get(kl_http_req_t *req, void *arg) {
  extender_t *x = arg;
  const char *path = kl_http_req_path(req);
  kl_err_t e;
  if (strcmp(path, "/publications.bin.witness") == 0) { /* witnesses' cosignatures (ext_pubfile.c) */
    uint8_t *data = NULL;
    size_t len = 0;
    int r = ext_pubfile_witness_get(&x->pub, &data, &len, &e);
    if (r == 0) kl_http_respond_take(req, 200, "application/octet-stream", data, len);
    else if (r == KL_ENOTFOUND) kl_http_respond(req, 404, "text/plain", "no cosignature file\n", 20);
    else kl_http_respond(req, 503, "text/plain", "cosignature file unavailable\n", 29);
    return;
  }
  if (ext_www_path(path)) { /* /verify: the verification page (ext_www.c) */
    ext_www_get(req, path);
    return;
  }
  if (ext_audit_path(path)) { /* /calendar/...: for auditors (ext_audit.c) */
    ext_audit_get(req, &x->pool, ext__cal_get(x), ext__sync_check(x));
    return;
  }
  if (strncmp(path, HISTORY, sizeof HISTORY - 1) != 0) {
    kl_http_req_add_header(req, "Allow", "POST");
    kl_http_respond(req, 405, "text/plain", "method not allowed\n", 19);
    return;
  }
  const char *name = path + sizeof HISTORY - 1;
  if (name[0] == '\0') {
    kl_buf_t b = KL_BUF_INIT;
    int r = ext_pubfile_history_list(&x->pub, &b, &e);
    if (r == 0) kl_http_respond(req, 200, "text/plain", b.p ? (const char *)b.p : "", b.len);
    else if (r == KL_ENOTFOUND) kl_http_respond(req, 404, "text/plain", "no publications history\n", 24);
    else kl_http_respond(req, 503, "text/plain", "publications history unavailable\n", 33);
    kl_buf_free(&b);
    return;
  }
  uint8_t *data = NULL;
  size_t len = 0;
  int r = ext_pubfile_history_get(&x->pub, name, &data, &len, &e);
  if (r == 0) kl_http_respond_take(req, 200, "application/octet-stream", data, len);
  else if (r == KL_ENOMEM) kl_http_respond(req, 503, "text/plain", "out of memory\n", 14);
  else kl_http_respond(req, 404, "text/plain", "no such publications file\n", 26);
}

static const char *health(void *arg) {
  extender_t *x = arg;
  kl_cal_info_t ci;
  kl_cal_t *cal = ext__cal_get(x);
  if (cal == NULL) return "calendar unavailable";
  if (kl_cal_info(cal, &ci, NULL)) return "calendar unreadable";
  const char *why = ext__sync_check(x); /* a refused batch says more than "empty" */
  if (why != NULL) return why;
  return ci.empty ? "calendar empty" : NULL;
}

/* ---- signals and lifecycle ---- */

static void reload_users(extender_t *x) {
  kl_users_t *u;
  users_ref_t *r = NULL;
  kl_err_t e;
  char q[300];
  if (kl_users_load(x->cfg->users_file, &u, &e) == 0 && (r = users_ref_new(u)) == NULL) {
    kl_users_free(u);
    kl_err_set(&e, KL_ENOMEM, "out of memory");
  }
  if (r == NULL) {
    kl_log(KL_LOG_ERROR, "users_reload_failed", "error=%s keeping=%zu", kl_log_q(q, sizeof q, e.msg),
           kl_users_count(x->users->u));
    return;
  }
  users_unref(x->users); /* freed once the last request using it is answered */
  x->users = r;
  kl_log(KL_LOG_INFO, "users_loaded", "logins=%zu", kl_users_count(u));
}

/* SIGHUP: the trusted calendar-auth certificates again, from the configuration file as it is now
 * (its [replication] calendar_auth_cert may name another file: a rotation lists the next
 * certificate before the cores switch to it, docs/keys.md). A configuration or file that does
 * not load keeps the certificates in force. The rest of the configuration takes a restart. */
static void reload_auth_certs(extender_t *x) {
  ext_config_t fresh;
  kl_err_t e;
  char q[300], ids[64 * 9 + 1] = "";
  if (x->cfg->n_upstreams == 0) return; /* not following: nothing to trust */
  if (ext_config_load(x->cfg->path, &fresh, &e)) {
    kl_log(KL_LOG_ERROR, "calendar_auth_certs_reload_failed", "error=%s keeping=%zu", kl_log_q(q, sizeof q, e.msg),
           x->trust.n_certs);
    return;
  }
  uint8_t **ders = fresh.auth_ders;
  size_t *lens = fresh.auth_lens, n = fresh.n_auth;
  fresh.auth_ders = NULL; /* taken */
  fresh.auth_lens = NULL;
  fresh.n_auth = 0;
  bool insecure = fresh.insecure;
  ext_config_free(&fresh);
  for (size_t k = 0; k < n; k++) {
    uint32_t crc = kl_crc32(ders[k], lens[k]);
    snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%08x", k ? "," : "", crc);
  }
  x->trust.certs = (const uint8_t *const *)ders;
  x->trust.cert_lens = lens;
  x->trust.n_certs = n;
  x->trust.insecure = insecure;
  ext_follow_trust_changed(x->follow); /* nothing refers to the previous arrays any more */
  ext_config_free_certs(x->auth_ders, x->auth_lens, x->n_auth);
  x->auth_ders = ders;
  x->auth_lens = lens;
  x->n_auth = n;
  kl_log(KL_LOG_INFO, "calendar_auth_certs_loaded", "count=%zu ids=%s%s", n, ids, insecure ? " insecure=yes" : "");
}

static void on_signal(uv_signal_t *h, int signum) {
  extender_t *x = h->data;
  if (signum == SIGHUP) {
    reload_users(x);
    reload_auth_certs(x);
    kl_tls_reload_logged(x->tls, "tls");
    kl_tls_reload_logged(x->https_tls, "https");
    return;
  }
  kl_log(KL_LOG_INFO, "signal", "signal=%s", signum == SIGTERM ? "TERM" : "INT");
  extender_stop(x);
}

static void on_http_closed(kl_http_server_t *s, void *arg) {
  (void)s;
  (void)arg;
}

static void on_tcp_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  (void)arg;
}

void extender_stop(extender_t *x) {
  if (x == NULL || x->stopping) return;
  x->stopping = true;
  kl_log(KL_LOG_INFO, "stopping", NULL);
  ext_waitq_close(&x->waitq); /* answers what waits, while the servers still take responses */
  ext_pool_close(&x->pool);   /* the workers end once every request handed to them is answered */
  /* The pointers are cleared first: metrics callbacks must not read a closing server. */
  kl_http_server_t *http = x->http, *https = x->https, *admin = x->admin;
  kl_tlv_server_t *tcp = x->tcp;
  x->http = x->https = x->admin = NULL;
  x->tcp = NULL;
  x->nm_http.stats = x->nm_https.stats = x->nm_tcp.stats = x->nm_admin.stats = NULL;
  kl_http_server_close(http, on_http_closed, x);
  kl_http_server_close(https, on_http_closed, x);
  kl_http_server_close(admin, on_http_closed, x);
  kl_tlv_server_close(tcp, on_tcp_closed, x);
  ext_follow_close(x->follow); /* freed with the daemon: the metrics point into it */
  if (x->sync_timer_on) uv_close((uv_handle_t *)&x->sync_timer, NULL);
  x->sync_timer_on = false;
  for (int i = 0; i < x->n_sig; i++) uv_close((uv_handle_t *)&x->sig[i], NULL);
  x->n_sig = 0;
}

static int start_servers(extender_t *x, kl_err_t *e) {
  const ext_config_t *c = x->cfg;
  kl_net_limits_t lim;
  ext_config_limits(c, &lim);
  if (c->http_listen[0]) {
    if (kl_http_server_create(x->loop, &lim, "http", &x->http, e) ||
        kl_http_route(x->http, "GET", "/publications.bin", on_publications, x, e) ||
        kl_http_route(x->http, "GET", "*", on_get, x, e) || kl_http_route(x->http, "POST", "*", on_extend_http, x, e) ||
        kl_http_server_listen(x->http, c->http_listen, e))
      return kl_err_wrap(e, "[server] http_listen");
    x->nm_http.stats = kl_http_server_stats(x->http);
  }
  if (x->https_tls) {
    if (kl_http_server_create(x->loop, &lim, "https", &x->https, e) ||
        kl_http_route(x->https, "GET", "/publications.bin", on_publications, x, e) ||
        kl_http_route(x->https, "GET", "*", on_get, x, e) || kl_http_route(x->https, "POST", "*", on_extend_http, x, e) ||
        (kl_http_server_set_tls(x->https, x->https_tls, 0, NULL, NULL), kl_http_server_listen(x->https, c->https_listen, e)))
      return kl_err_wrap(e, "[server] https_listen");
    x->nm_https.stats = kl_http_server_stats(x->https);
  }
  if (c->tcp_listen[0]) {
    /* The same address as http_listen: one port, each connection served by what it opens with. */
    bool shared = x->http && kl_net_listen_shared(c->http_listen, c->tcp_listen);
    if (kl_tlv_server_create(x->loop, &lim, "tcp", on_extend_tcp, x, &x->tcp, e) ||
        (!shared && kl_tlv_server_listen(x->tcp, c->tcp_listen, e)))
      return kl_err_wrap(e, "[server] tcp_listen");
    if (shared) kl_http_server_share(x->http, x->tcp);
    x->nm_tcp.stats = kl_tlv_server_stats(x->tcp);
  }
  if (c->admin_listen[0]) {
    x->adm = (kl_admin_t){x->m, health, x};
    if (kl_admin_server_create(x->loop, &lim, &x->adm, &x->admin, e) ||
        kl_http_server_listen(x->admin, c->admin_listen, e))
      return kl_err_wrap(e, "[server] admin_listen");
    x->nm_admin.stats = kl_http_server_stats(x->admin);
  }
  return 0;
}

int extender_start(uv_loop_t *loop, const ext_config_t *cfg, extender_t **out, kl_err_t *e) {
  extender_t *x = calloc(1, sizeof *x);
  if (x == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  *out = x;
  x->loop = loop;
  x->cfg = cfg;
  char q[300];
  int r;
  kl_users_t *u;
  if ((r = kl_users_load(cfg->users_file, &u, e))) return kl_err_wrap(e, "[auth] users_file");
  if ((x->users = users_ref_new(u)) == NULL) {
    kl_users_free(u);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  kl_log(KL_LOG_INFO, "users_loaded", "logins=%zu", kl_users_count(u));
  if ((r = ext_pubfile_init(&x->pub, cfg->publications_file, e)) || (r = ext__metrics_init(x, e))) return r;
  x->trust = (kl_repl_trust_t){(const uint8_t *const *)cfg->auth_ders, cfg->auth_lens, cfg->n_auth, cfg->insecure};
  if (cfg->n_upstreams > 0 && (r = kl_tls_settings_open(&cfg->tls, cfg->path, KL_ROLE_EXTENDER, NULL, &x->tls, e)))
    return r;
  if ((r = kl_tls_https_open(cfg->https_listen, cfg->https_cert, cfg->https_key, &cfg->tls, cfg->path, &x->https_tls, e)))
    return r;

  if (cfg->n_upstreams > 0) {
    static const ext_follow_cbs_t fcbs = {on_follow_progress, on_follow_error};
    if (cfg->insecure)
      kl_log(KL_LOG_WARN, "replication_insecure", "certificates=%zu (batches without a signed record are accepted)",
             cfg->n_auth);
    if ((r = ext_follow_start(loop, cfg, &x->trust, x->tls, x->m, &fcbs, x, &x->follow, e))) return r;
    uv_timer_init(loop, &x->sync_timer);
    x->sync_timer.data = x;
    x->sync_timer_on = true;
    uv_timer_start(&x->sync_timer, on_sync_timer, 1000, 1000);
  }
  if (ext__cal_get(x)) {
    kl_cal_info_t ci;
    if (kl_cal_info(x->cal, &ci, NULL) == 0)
      kl_log(KL_LOG_INFO, "calendar_state", "genesis=%llu last=%llu empty=%d", (unsigned long long)ci.genesis,
             (unsigned long long)ci.last, ci.empty);
  }
  static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, &x->sig[i]);
    x->sig[i].data = x;
    x->n_sig++;
    uv_signal_start(&x->sig[i], on_signal, sigs[i]);
  }
  x->wait_bound = ext_wait_bound(cfg->replica_wait_ms);
  ext_waitq_init(&x->waitq, loop, cfg->replica_wait_ms, (size_t)cfg->replica_wait_max, on_wait_answer, wait_last, x);
  if ((r = ext_pool_start(&x->pool, loop, (unsigned)cfg->workers, e)) || (r = start_servers(x, e))) {
    extender_stop(x);
    return r;
  }
  kl_log(KL_LOG_INFO, "started", "calendar=%s workers=%u http_port=%d https_port=%d tcp_port=%d admin_port=%d",
         kl_log_q(q, sizeof q, cfg->calendar_dir), x->pool.n, x->http ? kl_http_server_port(x->http) : 0,
         x->https ? kl_http_server_port(x->https) : 0,
         x->tcp ? kl_tlv_server_port(x->tcp) : 0, x->admin ? kl_http_server_port(x->admin) : 0);
  return 0;
}

void extender_free(extender_t *x) {
  if (x == NULL) return;
  ext_follow_free(x->follow);
  ext_config_free_certs(x->auth_ders, x->auth_lens, x->n_auth);
  kl_cal_close(x->cal);
  users_unref(x->users);
  ext_pubfile_free(&x->pub);
  kl_metrics_destroy(x->m);
  kl_tls_ctx_unref(x->tls);
  kl_tls_ctx_unref(x->https_tls);
  free(x);
}
