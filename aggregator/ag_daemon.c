/* The aggregator daemon on a libuv loop: the children's port (proto/aggregation.proto Request
 * and Response, Ping and Pong, 4-byte length framing, many requests in flight per connection),
 * the tier
 * (rounds and parents), the admin port (/healthz, /metrics), SIGTERM/SIGINT for a graceful stop.
 *
 * A child's root is a request like any other: it joins the open round at the child's level,
 * with a metadata link naming the child (its Request.client_id) and this aggregator. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggregation.pb-c.h"
#include "aggregator.h"
#include "keyless/log.h"
#include "keyless/metrics.h"
#include "keyless/net.h"
#include "keyless/pdu.h"

#define STATUS_CACHE 16
#define MAX_FREE_REQS 65536

struct aggregator {
  uv_loop_t *loop;
  const ag_config_t *cfg;
  kl_metrics_t *m;
  kl_tier_t *tier;
  const char *parents[KL_TIER_MAX_PARENTS];
  char name[128];
  uint64_t seq;
  kl_tlv_server_t *srv;
  kl_http_server_t *admin;
  kl_net_metrics_t nm_srv, nm_admin;
  kl_admin_t adm;
  uv_signal_t sig[3];
  int n_sig;
  kl_tls_ctx_t *tls;
  bool stopping;
  kl_metric_t *m_ok, *m_bad;
  /* Per child root: no lookup, no copy of the round's shared part, no malloc but the frame's. */
  struct {
    uint64_t status;
    kl_metric_t *m;
  } by_status[STATUS_CACHE]; /* the labelled counters met so far (status 0 is m_ok) */
  size_t n_status;
  kl_tier_frame_cache_t frames; /* the round being answered: its shared part, encoded once */
  struct child_req *free_reqs;  /* child_req_t to reuse */
  size_t n_free_reqs;
};

typedef struct child_req {
  kl_tlv_req_t *req;
  uint64_t id;
  struct child_req *next; /* in free_reqs */
} child_req_t;

static child_req_t *req_get(aggregator_t *a) {
  child_req_t *c = a->free_reqs;
  if (c == NULL) return malloc(sizeof *c);
  a->free_reqs = c->next;
  a->n_free_reqs--;
  return c;
}

static void req_put(aggregator_t *a, child_req_t *c) {
  if (c == NULL) return;
  if (a->n_free_reqs >= MAX_FREE_REQS) {
    free(c);
    return;
  }
  c->next = a->free_reqs;
  a->free_reqs = c;
  a->n_free_reqs++;
}

static void answer(aggregator_t *ag, kl_tlv_req_t *req, uint64_t id, const kl_tier_answer_t *a) {
  uint8_t *buf;
  size_t len;
  if (kl_tier_response_frame_cached(&ag->frames, id, a, &buf, &len, NULL)) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  kl_tlv_respond_take(req, buf, len, false);
}

static void count(aggregator_t *a, uint64_t status) {
  if (status == 0) {
    kl_metric_inc(a->m_ok);
    return;
  }
  for (size_t i = 0; i < a->n_status; i++)
    if (a->by_status[i].status == status) {
      kl_metric_inc(a->by_status[i].m);
      return;
    }
  char st[24];
  snprintf(st, sizeof st, "0x%04llX", (unsigned long long)status);
  kl_metric_t *m = kl_metrics_counter(a->m, "keyless_aggregator_requests_total",
                                      "Children's requests answered, by KSI status.", (const char *[]){"status", st, NULL});
  if (m && a->n_status < STATUS_CACHE) a->by_status[a->n_status].status = status, a->by_status[a->n_status++].m = m;
  kl_metric_inc(m);
}

static void on_answer(void *ctx, const kl_tier_answer_t *ans, void *arg) {
  child_req_t *c = ctx;
  count(arg, ans->status);
  answer(arg, c->req, c->id, ans);
  req_put(arg, c);
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *health(void *arg);

/* A child's heartbeat: answered at once, ready when this aggregator's /healthz is green (its
 * parents are up and answering), so a child prefers a sibling that can reach the core. */
static void on_ping(aggregator_t *a, kl_tlv_req_t *req, uint64_t id) {
  uint8_t *buf;
  size_t len;
  if (kl_tier_pong_frame(id, a->stopping ? "stopping" : health(a), &buf, &len, NULL)) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  kl_tlv_respond_take(req, buf, len, false);
}

/* protobuf-c's allocations for one unpacked frame, from a buffer on the stack (a frame is at
 * most max_body = 4096 bytes; its unpacked form fits in twice that), else the heap. */
typedef struct unpack_arena {
  _Alignas(max_align_t) uint8_t mem[8192];
  size_t used;
} unpack_arena_t;

static void *arena_alloc(void *d, size_t n) {
  unpack_arena_t *ar = d;
  size_t al = _Alignof(max_align_t), at = (ar->used + al - 1) / al * al;
  if (n <= sizeof ar->mem && at <= sizeof ar->mem - n) {
    ar->used = at + n;
    return ar->mem + at;
  }
  return malloc(n);
}

static void arena_free(void *d, void *p) {
  unpack_arena_t *ar = d;
  if ((uint8_t *)p < ar->mem || (uint8_t *)p >= ar->mem + sizeof ar->mem) free(p);
}

static void on_frame(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  aggregator_t *a = arg;
  unpack_arena_t ar;
  ar.used = 0;
  ProtobufCAllocator alloc = {arena_alloc, arena_free, &ar};
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(&alloc, len - 4, frame + 4);
  if (m && m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PING) {
    on_ping(a, req, m->ping->id);
    keyless__aggregation__message__free_unpacked(m, &alloc);
    return;
  }
  if (m == NULL || m->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST) {
    kl_metric_inc(a->m_bad);
    kl_log(KL_LOG_WARN, "bad_frame", "peer=%s bytes=%zu", kl_tlv_req_peer(req), len);
    if (m) keyless__aggregation__message__free_unpacked(m, &alloc);
    kl_tlv_respond(req, NULL, 0, true); /* not our protocol: drop the connection */
    return;
  }
  const Keyless__Aggregation__Request *rq = m->request;
  kl_imprint_t imp;
  kl_err_t e = {0};
  uint64_t status = KL_STATUS_INVALID_PAYLOAD;
  child_req_t *c = req_get(a);
  const char *who_id = rq->client_id && rq->client_id[0] ? rq->client_id : "child";
  kl_round_identity_t who = {who_id, a->name, true, true, a->seq++, now_us()};
  if (c == NULL) {
    status = KL_STATUS_INTERNAL_ERROR;
    kl_err_set(&e, KL_ENOMEM, "out of memory");
  } else if (kl_imprint_from_bytes(&imp, rq->imprint.data, rq->imprint.len, &e) == 0) {
    *c = (child_req_t){req, rq->request_id, NULL};
    if (kl_tier_submit(a->tier, &imp, rq->level, &who, c, &status, &e) == 0) status = 0;
  }
  if (status != 0) {
    kl_tier_answer_t ans = {.status = status, .error = e.msg};
    count(a, status);
    answer(a, req, rq->request_id, &ans);
    req_put(a, c);
  }
  keyless__aggregation__message__free_unpacked(m, &alloc);
}

/* Green while a parent is up and rounds are answered (kl_tier_health); the loop thread's. */
static const char *health(void *arg) {
  static char why[512];
  aggregator_t *a = arg;
  return a->tier ? kl_tier_health(a->tier, why, sizeof why) : "stopping";
}

static int metrics_init(aggregator_t *a, kl_err_t *e) {
  if (kl_metrics_create(&a->m, e)) return KL_ENOMEM;
  bool ok = true;
  ok &= (a->m_ok = kl_metrics_counter(a->m, "keyless_aggregator_requests_total",
                                      "Children's requests answered, by KSI status.",
                                      (const char *[]){"status", "0x0000", NULL})) != NULL;
  ok &= (a->m_bad = kl_metrics_counter(a->m, "keyless_aggregator_bad_frames_total",
                                       "Frames that are not aggregation requests (the connection is closed).", NULL)) !=
        NULL;
  ok &= kl_net_metrics_register(a->m, &a->nm_srv, "children", false) == 0;
  ok &= kl_net_metrics_register(a->m, &a->nm_admin, "admin", true) == 0;
  return ok ? 0 : kl_err_set(e, KL_ENOMEM, "metrics: registration failed");
}

static void on_signal(uv_signal_t *h, int signum) {
  aggregator_t *a = h->data;
  if (signum == SIGHUP) {
    kl_tls_reload_logged(a->tls, "tls");
    return;
  }
  kl_log(KL_LOG_INFO, "signal", "signal=%s", signum == SIGTERM ? "TERM" : "INT");
  aggregator_stop(a);
}

static void on_admin_closed(kl_http_server_t *s, void *arg) {
  (void)s;
  (void)arg;
}

static void on_tier_closed(void *arg) {
  aggregator_t *a = arg;
  kl_http_server_t *admin = a->admin;
  a->admin = NULL;
  a->nm_admin.stats = NULL;
  kl_http_server_close(admin, on_admin_closed, a);
  for (int i = 0; i < a->n_sig; i++) uv_close((uv_handle_t *)&a->sig[i], NULL);
  a->n_sig = 0;
}

static void on_srv_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  aggregator_t *a = arg;
  kl_tier_t *t = a->tier;
  a->tier = NULL;
  if (t) kl_tier_close(t, on_tier_closed, a);
  else on_tier_closed(a);
}

/* The children's port closes first (rounds in flight are answered and written), then the tier,
 * then the admin port. */
void aggregator_stop(aggregator_t *a) {
  if (a == NULL || a->stopping) return;
  a->stopping = true;
  kl_log(KL_LOG_INFO, "stopping", NULL);
  kl_tlv_server_t *srv = a->srv;
  a->srv = NULL;
  a->nm_srv.stats = NULL;
  if (srv) kl_tlv_server_close(srv, on_srv_closed, a);
  else on_srv_closed(NULL, a);
}

int aggregator_start(uv_loop_t *loop, const ag_config_t *cfg, aggregator_t **out, kl_err_t *e) {
  aggregator_t *a = calloc(1, sizeof *a);
  if (a == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  *out = a;
  a->loop = loop;
  a->cfg = cfg;
  int r;
  kl_tier_config_t tc;
  if ((r = kl_tier_settings_apply(&cfg->tier, a->parents, a->name, &tc, e)) || (r = metrics_init(a, e))) return r;
  if ((r = kl_tls_settings_open(&cfg->tls, cfg->path, KL_ROLE_AGGREGATOR, NULL, &a->tls, e))) return r;
  tc.tls = a->tls;
  if ((r = kl_tier_create(loop, &tc, a->m, "aggregator", on_answer, a, &a->tier, e))) return r;
  static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, &a->sig[i]);
    a->sig[i].data = a;
    a->n_sig++;
    uv_signal_start(&a->sig[i], on_signal, sigs[i]);
  }
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  lim.max_body = 4096; /* one Request */
  lim.max_connections = (unsigned)cfg->max_connections;
  lim.idle_timeout_ms = cfg->idle_timeout_ms;
  lim.shutdown_timeout_ms = cfg->shutdown_timeout_ms;
  lim.max_inflight = 1024; /* a child's rounds waiting for an answer */
  lim.max_connections_per_ip = (unsigned)cfg->max_connections_per_address;
  if (kl_tlv_server_create(loop, &lim, "children", on_frame, a, &a->srv, e) ||
      (kl_tlv_server_set_framing(a->srv, KL_FRAMING_U32),
       a->tls ? kl_tlv_server_set_tls(a->srv, a->tls, KL_ROLE_GATEWAY | KL_ROLE_AGGREGATOR, NULL, NULL) : (void)0,
       kl_tlv_server_listen(a->srv, cfg->listen, e))) {
    r = kl_err_wrap(e, "[server] listen");
    aggregator_stop(a);
    return r;
  }
  a->nm_srv.stats = kl_tlv_server_stats(a->srv);
  if (cfg->admin_listen[0]) {
    a->adm = (kl_admin_t){a->m, health, a};
    if (kl_admin_server_create(loop, NULL, &a->adm, &a->admin, e) || kl_http_server_listen(a->admin, cfg->admin_listen, e)) {
      r = kl_err_wrap(e, "[server] admin_listen");
      aggregator_stop(a);
      return r;
    }
    a->nm_admin.stats = kl_http_server_stats(a->admin);
  }
  char q[200];
  kl_log(KL_LOG_INFO, "started", "name=%s parents=%zu mode=%s period_ms=%llu max_level=%u port=%d admin_port=%d",
         kl_log_q(q, sizeof q, a->name), tc.n_parents, cfg->tier.mode, (unsigned long long)tc.period_ms,
         kl_tier_max_request_level(a->tier), kl_tlv_server_port(a->srv), a->admin ? kl_http_server_port(a->admin) : 0);
  return 0;
}

void aggregator_free(aggregator_t *a) {
  if (a == NULL) return;
  kl_metrics_destroy(a->m);
  kl_tier_frame_cache_free(&a->frames);
  for (child_req_t *c = a->free_reqs, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  kl_tls_ctx_unref(a->tls);
  free(a);
}
