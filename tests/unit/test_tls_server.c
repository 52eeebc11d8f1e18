/* The servers with TLS over real loopback sockets (keyless/net.h, lib/src/net_conn.c) and the
 * framed client with TLS (keyless/frameclient.h), all on one uv loop in the main thread:
 *
 * - a kl_tlv_server (KL_FRAMING_U32) with mutual TLS: frames from two clients go through and
 *   the handler sees each client's role and id (kl_tlv_req_peer_id); a plain server gives none;
 * - refusals: a client whose role the server does not take, one refused by the peer check,
 *   a plain-TCP client, each counted in stats.tls_refused and never handed to the handler;
 * - per-address limits: max_connections_per_ip (stats.ip_refused, and the slot comes back when
 *   a connection closes), max_rate_per_ip (stats.rate_limited, the connection closed), the
 *   handshake timeout for a client that connects and sends nothing;
 * - the HTTP server with mutual TLS (kl_http_req_peer_id) and with https (no identity), against
 *   a blocking client thread that speaks TLS through kl_tls_session.
 * Every loop run is bounded by a guard timer and ends with uv_loop_close() == 0. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/frameclient.h"
#include "keyless/log.h"
#include "keyless/net.h"
#include "nettest.h"
#include "tlstest.h"

#define GUARD_MS 20000 /* no test should come near it: reaching it fails the test */

static char tmp[256], pki[300];

static int group_setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  tu_mkdtemp("tlssrv", tmp, sizeof tmp);
  snprintf(pki, sizeof pki, "%s/pki", tmp);
  tt_pki(pki, "core:1,core:2,core:3,aggregator:1,gateway:1");
  kl_log_set_level(KL_LOG_OFF);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return tu_rmrf(tmp);
}

/* ---- one test's world: a server and some framed clients on a loop ---- */

#define MAX_CL 4

typedef struct world world_t;

typedef struct cl {
  world_t *w;
  kl_frame_client_t *fc;
  int ups, downs, frames;
  int send_on_up;   /* frames to send each time the link comes up */
  char payload[32]; /* what they carry */
  char last[64];    /* the last frame received */
  bool closing;
} cl_t;

struct world {
  uv_loop_t loop;
  uv_timer_t guard, poll;
  kl_tlv_server_t *srv;
  int port;
  int srv_closed, cl_closed, ncl;
  cl_t cl[MAX_CL];
  bool finishing, timed_out;
  bool (*step)(world_t *w); /* polled every 5 ms; true: done, shut everything down */
  int phase;
  /* what the handler saw */
  int handled, no_identity;
  char seen[MAX_CL][80]; /* "payload=role/id" */
  uint64_t first_ms, last_ms;
  const char *refuse_id; /* the peer check refuses this id */
  int checks, check_refusals;
  kl_net_stats_t st; /* the server's counters, copied at every poll and at the end */
  uint64_t max_open;
  kl_tlv_req_t *held; /* a "hold" frame, not answered by the handler */
};

static void on_frame(kl_frame_client_t *c, const uint8_t *p, size_t len, void *arg) {
  (void)c;
  cl_t *k = arg;
  k->frames++;
  snprintf(k->last, sizeof k->last, "%.*s", (int)len, (const char *)p);
}

static void on_state(kl_frame_client_t *c, bool up, void *arg) {
  cl_t *k = arg;
  kl_err_t e = {0};
  if (!up) {
    k->downs++;
    return;
  }
  k->ups++;
  for (int i = 0; i < k->send_on_up; i++)
    if (kl_frame_client_send(c, (const uint8_t *)k->payload, strlen(k->payload), &e)) break;
}

static void handler(kl_tlv_req_t *r, const uint8_t *frame, size_t len, void *arg) {
  world_t *w = arg;
  const kl_peer_t *who = kl_tlv_req_peer_id(r);
  uint64_t now = uv_now(&w->loop);
  if (w->handled++ == 0) w->first_ms = now;
  w->last_ms = now;
  if (who == NULL) w->no_identity++;
  for (int i = 0; i < MAX_CL; i++)
    if (w->seen[i][0] == 0) {
      snprintf(w->seen[i], sizeof w->seen[i], "%.*s=%s/%s", (int)(len - 4), (const char *)frame + 4,
               who ? kl_role_name(who->role) : "-", who ? who->id : "-");
      break;
    }
  if (len - 4 == 4 && memcmp(frame + 4, "hold", 4) == 0 && w->held == NULL && w->phase == 0) {
    w->held = r;
    return;
  }
  kl_tlv_respond(r, frame, len, false); /* echo, header included */
}

static const char *peer_check(const kl_peer_t *p, void *arg) {
  world_t *w = arg;
  w->checks++;
  if (w->refuse_id == NULL || strcmp(p->id, w->refuse_id) != 0) return NULL;
  w->check_refusals++;
  return "not a member of the configuration";
}

static void srv_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  ((world_t *)arg)->srv_closed++;
}

static void cl_closed(void *arg) { ((world_t *)arg)->cl_closed++; }

static void close_client(cl_t *k) {
  if (k->fc == NULL || k->closing) return;
  k->closing = true;
  kl_frame_client_close(k->fc, cl_closed, k->w);
}

static const kl_net_stats_t *stats(world_t *w) {
  w->st = *kl_tlv_server_stats(w->srv);
  if (w->st.open > w->max_open) w->max_open = w->st.open;
  return &w->st;
}

static void finish(world_t *w) {
  if (w->finishing) return;
  w->finishing = true;
  stats(w);
  for (int i = 0; i < w->ncl; i++) close_client(&w->cl[i]);
  if (w->srv) kl_tlv_server_close(w->srv, srv_closed, w);
  uv_close((uv_handle_t *)&w->guard, NULL);
  uv_close((uv_handle_t *)&w->poll, NULL);
}

static void on_guard(uv_timer_t *t) {
  world_t *w = t->data;
  w->timed_out = true;
  finish(w);
}

static void on_poll(uv_timer_t *t) {
  world_t *w = t->data;
  if (w->finishing) return;
  stats(w);
  if (w->step(w)) finish(w);
}

/* A loop, a U32 ksi+tcp server on 127.0.0.1:0 (TLS when ctx), its guard and poll timers. */
static void world_init(world_t *w, const kl_net_limits_t *lim, kl_tls_ctx_t *ctx, unsigned roles,
                       bool (*step)(world_t *)) {
  kl_err_t e = {0};
  memset(w, 0, sizeof *w);
  assert_int_equal(uv_loop_init(&w->loop), 0);
  if (kl_tlv_server_create(&w->loop, lim, "tls-test", handler, w, &w->srv, &e)) fail_msg("server: %s", e.msg);
  kl_tlv_server_set_framing(w->srv, KL_FRAMING_U32);
  if (ctx) kl_tlv_server_set_tls(w->srv, ctx, roles, peer_check, w);
  if (kl_tlv_server_listen(w->srv, "127.0.0.1:0", &e)) fail_msg("listen: %s", e.msg);
  w->port = kl_tlv_server_port(w->srv);
  assert_true(w->port > 0);
  w->step = step;
  uv_timer_init(&w->loop, &w->guard);
  uv_timer_init(&w->loop, &w->poll);
  w->guard.data = w->poll.data = w;
  uv_timer_start(&w->guard, on_guard, GUARD_MS, 0);
  uv_timer_start(&w->poll, on_poll, 5, 5);
}

/* A framed client on the world's loop (TLS when ctx: the server must be core/1). */
static cl_t *world_client(world_t *w, kl_tls_ctx_t *ctx, unsigned roles, const char *expect_id, const char *payload,
                          int send_on_up) {
  kl_err_t e = {0};
  assert_true(w->ncl < MAX_CL);
  cl_t *k = &w->cl[w->ncl++];
  k->w = w;
  snprintf(k->payload, sizeof k->payload, "%s", payload);
  k->send_on_up = send_on_up;
  kl_frame_client_cbs_t cbs = {on_frame, on_state};
  char name[16];
  snprintf(name, sizeof name, "cl%d", w->ncl);
  if (kl_frame_client_create(&w->loop, name, 1 << 16, &cbs, k, &k->fc, &e)) fail_msg("client: %s", e.msg);
  if (ctx) kl_frame_client_set_tls(k->fc, ctx, roles, expect_id);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", w->port);
  if (kl_frame_client_connect(k->fc, addr, &e)) fail_msg("connect: %s", e.msg);
  return k;
}

/* Runs until step says done (or the guard fires), then until every handle is closed. */
static void world_run(world_t *w) {
  uv_run(&w->loop, UV_RUN_DEFAULT);
  if (w->timed_out) fail_msg("the test did not finish within %d ms (phase %d)", GUARD_MS, w->phase);
  assert_int_equal(w->srv_closed, 1);
  assert_int_equal(w->cl_closed, w->ncl);
  assert_int_equal(uv_loop_close(&w->loop), 0);
}

static bool has_seen(world_t *w, const char *what) {
  for (int i = 0; i < MAX_CL; i++)
    if (strcmp(w->seen[i], what) == 0) return true;
  return false;
}

/* ---- a frame goes through, the handler knows who sent it ---- */

static bool step_echo(world_t *w) { return w->cl[0].frames >= 1 && w->cl[1].frames >= 1; }

static void test_frame_with_identity(void **state) {
  (void)state;
  static world_t w;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *agg = tt_node_ctx(pki, "aggregator-1", NULL),
               *core2 = tt_node_ctx(pki, "core-2", NULL);
  world_init(&w, NULL, sctx, KL_ROLE_CORE | KL_ROLE_AGGREGATOR, step_echo);
  kl_tls_ctx_unref(sctx); /* the server holds its own reference */
  cl_t *a = world_client(&w, agg, KL_ROLE_CORE, "1", "from-agg", 1);
  cl_t *b = world_client(&w, core2, KL_ROLE_CORE, NULL, "from-core", 1);
  kl_tls_ctx_unref(agg); /* so do the clients */
  kl_tls_ctx_unref(core2);
  world_run(&w);
  assert_int_equal(a->ups, 1);
  assert_int_equal(b->ups, 1);
  assert_string_equal(a->last, "from-agg");
  assert_string_equal(b->last, "from-core");
  assert_int_equal(w.handled, 2);
  assert_int_equal(w.no_identity, 0);
  if (!has_seen(&w, "from-agg=aggregator/1") || !has_seen(&w, "from-core=core/2"))
    fail_msg("the handler saw %s, %s", w.seen[0], w.seen[1]);
  assert_int_equal(w.checks, 2); /* the peer check ran once per authenticated peer */
}

/* A plain server: no identity for anyone. */
static bool step_one(world_t *w) { return w->cl[0].frames >= 1; }

static void test_plain_server_no_identity(void **state) {
  (void)state;
  static world_t w;
  world_init(&w, NULL, NULL, 0, step_one);
  world_client(&w, NULL, 0, NULL, "plain", 1);
  world_run(&w);
  assert_int_equal(w.handled, 1);
  assert_int_equal(w.no_identity, 1);
  assert_string_equal(w.seen[0], "plain=-/-");
}

/* A request outlives its connection (closed hard by the rate limit while the request is still
 * with its handler): its peer and identity are still there (the connection's, shared by its
 * requests, not a copy each), and answering it frees it. */
static char orphan_seen[80];
static bool orphan_connected;

static bool step_orphan(world_t *w) {
  if (w->phase != 0 || w->held == NULL || w->st.rate_limited < 1) return false;
  const kl_peer_t *who = kl_tlv_req_peer_id(w->held);
  orphan_connected = kl_tlv_req_connected(w->held);
  snprintf(orphan_seen, sizeof orphan_seen, "%s %s/%s", kl_tlv_req_peer(w->held), who ? kl_role_name(who->role) : "-",
           who ? who->id : "-");
  kl_tlv_respond(w->held, "late", 4, false); /* dropped, and the request freed */
  w->held = NULL;
  w->phase = 1;
  return true;
}

static void test_orphan_keeps_identity(void **state) {
  (void)state;
  static world_t w;
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  lim.max_rate_per_ip = 1.0; /* a burst of 2: the first frame is held, the third closes the link */
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *agg = tt_node_ctx(pki, "aggregator-1", NULL);
  world_init(&w, &lim, sctx, KL_ROLE_CORE | KL_ROLE_AGGREGATOR, step_orphan);
  kl_tls_ctx_unref(sctx);
  world_client(&w, agg, KL_ROLE_CORE, "1", "hold", 10);
  kl_tls_ctx_unref(agg);
  world_run(&w);
  assert_int_equal(w.phase, 1);
  assert_false(orphan_connected);
  if (strncmp(orphan_seen, "127.0.0.1:", 10) != 0 || strstr(orphan_seen, " aggregator/1") == NULL)
    fail_msg("the orphaned request said %s", orphan_seen);
}

/* ---- refusals ---- */

static bool step_refused(world_t *w) {
  /* each refused client has been refused at least twice (it retries), the good one answered */
  return w->check_refusals >= 2 && w->st.tls_refused >= (uint64_t)w->check_refusals + 2 && w->cl[2].frames >= 1;
}

static void test_refused_role_and_check(void **state) {
  (void)state;
  static world_t w;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *gw = tt_node_ctx(pki, "gateway-1", NULL),
               *core2 = tt_node_ctx(pki, "core-2", NULL), *core3 = tt_node_ctx(pki, "core-3", NULL);
  world_init(&w, NULL, sctx, KL_ROLE_CORE, step_refused);
  w.refuse_id = "2";
  cl_t *bad_role = world_client(&w, gw, KL_ROLE_CORE, "1", "gw", 1);
  cl_t *bad_id = world_client(&w, core2, KL_ROLE_CORE, "1", "core2", 1);
  cl_t *good = world_client(&w, core3, KL_ROLE_CORE, "1", "core3", 1);
  world_run(&w);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(gw);
  kl_tls_ctx_unref(core2);
  kl_tls_ctx_unref(core3);
  assert_true(w.st.tls_refused >= 4);
  assert_int_equal(w.st.requests, 1);
  assert_int_equal(w.handled, 1);
  assert_string_equal(w.seen[0], "core3=core/3");
  assert_int_equal(good->ups, 1);
  assert_int_equal(bad_role->frames, 0);
  assert_int_equal(bad_id->frames, 0);
  /* The refused links are never reported up: the frame client waits for the server's empty
   * "accepted" frame, which comes only after the server has judged the certificate. */
  assert_int_equal(bad_role->ups, 0);
  assert_int_equal(bad_id->ups, 0);
}

/* The client's side: a server that is not the member the link expects (core/1 where core/2
 * is expected, or a core where an aggregator is) is never reported up, and retried. */
static bool step_client_refuses(world_t *w) { return w->st.accepted >= 4; }

static void test_client_refuses_server(void **state) {
  (void)state;
  static world_t w;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *cctx = tt_node_ctx(pki, "core-3", NULL);
  world_init(&w, NULL, sctx, KL_ROLE_CORE, step_client_refuses);
  cl_t *wrong_id = world_client(&w, cctx, KL_ROLE_CORE, "2", "to-core-2", 1);
  cl_t *wrong_role = world_client(&w, cctx, KL_ROLE_AGGREGATOR, NULL, "to-aggregator", 1);
  world_run(&w);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
  assert_int_equal(wrong_id->ups, 0);
  assert_int_equal(wrong_role->ups, 0);
  assert_int_equal(wrong_id->frames + wrong_role->frames, 0);
  assert_int_equal(w.handled, 0);
  assert_true(w.st.accepted >= 4); /* both kept trying */
}

/* A plain-TCP client on a TLS server: its bytes are no handshake, so it is refused. */
static bool step_plain_client(world_t *w) { return w->st.tls_refused >= 1 && w->cl[0].downs >= 1; }

static void test_plain_client_refused(void **state) {
  (void)state;
  static world_t w;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL);
  world_init(&w, NULL, sctx, KL_ROLE_CORE, step_plain_client);
  cl_t *k = world_client(&w, NULL, 0, NULL, "plaintext frame", 1);
  world_run(&w);
  assert_true(k->ups >= 1); /* plain TCP: up as soon as connected */
  assert_int_equal(k->frames, 0);
  assert_int_equal(w.handled, 0);
  assert_true(w.st.tls_refused >= 1);
  assert_int_equal(w.st.requests, 0);
  kl_tls_ctx_unref(sctx);
}

/* ---- per-address limits ---- */

static int ip_cap_waiting = -1; /* the client that was kept out */

static bool step_ip_cap(world_t *w) {
  int up = 0;
  for (int i = 0; i < w->ncl; i++) up += w->cl[i].ups > 0;
  if (w->phase == 0) {
    if (up < 2 || w->st.ip_refused < 1) return false;
    /* two are in and the third was refused: close one of the two, its slot comes back */
    for (int i = 0; i < w->ncl; i++)
      if (w->cl[i].ups == 0) ip_cap_waiting = i;
    if (up != 2 || ip_cap_waiting < 0) fail_msg("%d clients up with max_connections_per_ip 2", up);
    for (int i = 0; i < w->ncl; i++)
      if (w->cl[i].ups > 0) {
        close_client(&w->cl[i]);
        break;
      }
    w->phase = 1;
    return false;
  }
  return w->cl[ip_cap_waiting].ups > 0;
}

static void test_max_connections_per_ip(void **state) {
  (void)state;
  static world_t w;
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  lim.max_connections_per_ip = 2;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *cctx = tt_node_ctx(pki, "core-2", NULL);
  world_init(&w, &lim, sctx, KL_ROLE_CORE, step_ip_cap);
  for (int i = 0; i < 3; i++) world_client(&w, cctx, KL_ROLE_CORE, "1", "x", 0);
  world_run(&w);
  assert_int_equal(w.phase, 1);
  assert_true(w.st.ip_refused >= 1);
  assert_true(w.max_open <= 2); /* sampled: never more than two open from 127.0.0.1 */
  assert_int_equal(w.st.tls_refused, 0);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
}

/* A burst of frames over max_rate_per_ip (1/s: a burst of 2 is allowed) closes the link. */
static bool step_rate(world_t *w) { return w->st.rate_limited >= 1 && w->cl[0].downs >= 1; }

static void test_max_rate_per_ip(void **state) {
  (void)state;
  static world_t w;
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  lim.max_rate_per_ip = 1.0;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *cctx = tt_node_ctx(pki, "core-2", NULL);
  world_init(&w, &lim, sctx, KL_ROLE_CORE, step_rate);
  cl_t *k = world_client(&w, cctx, KL_ROLE_CORE, "1", "burst", 10);
  world_run(&w);
  assert_true(w.st.rate_limited >= 1);
  assert_true(w.handled >= 1);   /* the burst allowance went through */
  assert_true(w.handled < 10);   /* but not the whole burst */
  assert_true(k->frames <= w.handled);
  assert_int_equal(w.st.requests, (uint64_t)w.handled);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
}

/* The rate is per address, not per connection: reconnecting must not refill the bucket.
 * 0.5/s gives a burst of 1 and one more request every 2 s; a client that reconnects after
 * each refusal (about every 100 ms) must not get more than that. */
static bool step_rate_reconnect(world_t *w) { return w->cl[0].ups >= 4 && w->cl[0].downs >= 4; }

static void test_rate_survives_reconnect(void **state) {
  (void)state;
  static world_t w;
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  lim.max_rate_per_ip = 0.5;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *cctx = tt_node_ctx(pki, "core-2", NULL);
  world_init(&w, &lim, sctx, KL_ROLE_CORE, step_rate_reconnect);
  world_client(&w, cctx, KL_ROLE_CORE, "1", "again", 3);
  world_run(&w);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
  assert_true(w.handled >= 1);
  assert_true(w.st.rate_limited >= 1);
  /* what the bucket allows between the first and the last request handled, plus one */
  uint64_t allowed = 1 + (uint64_t)((double)(w.last_ms - w.first_ms) * 0.5 / 1000.0) + 1;
  /* The address keeps its spent tokens across reconnections (a reconnect is no new burst). */
  if ((uint64_t)w.handled > allowed)
    print_message("%d requests handled in %llu ms at 0.5/s (allowed %llu)\n", w.handled,
                  (unsigned long long)(w.last_ms - w.first_ms), (unsigned long long)allowed);
  assert_true((uint64_t)w.handled <= allowed);
}

/* A client that connects and sends nothing is closed at the handshake deadline (the idle
 * timeout is a minute: only the handshake timer can close it before the guard). */
static bool step_handshake_timeout(world_t *w) { return w->cl[0].downs >= 1 && w->st.open == 0; }

static void test_handshake_timeout(void **state) {
  (void)state;
  static world_t w;
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  lim.handshake_timeout_ms = 150;
  lim.idle_timeout_ms = 60000;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL);
  world_init(&w, &lim, sctx, KL_ROLE_CORE, step_handshake_timeout);
  cl_t *k = world_client(&w, NULL, 0, NULL, "", 0); /* plain TCP, silent */
  world_run(&w);
  assert_true(k->ups >= 1);
  assert_true(k->downs >= 1);
  assert_true(w.st.accepted >= 1);
  assert_int_equal(w.handled, 0);
  kl_tls_ctx_unref(sctx);
}

/* ---- HTTP with TLS ---- */

static uv_loop_t hloop;
static uv_async_t h_done;
static uv_timer_t h_guard;
static kl_http_server_t *hsrv, *hssrv;
static int h_closed;
static kl_net_stats_t h_stats;

static void h_who(kl_http_req_t *r, void *arg) {
  (void)arg;
  const kl_peer_t *p = kl_http_req_peer_id(r);
  char b[128];
  if (p) snprintf(b, sizeof b, "%s/%s", kl_role_name(p->role), p->id);
  else snprintf(b, sizeof b, "none");
  kl_http_respond(r, 200, "text/plain", b, strlen(b));
}

static void h_server_closed(kl_http_server_t *s, void *arg) {
  (void)s;
  (void)arg;
  h_closed++;
}

static void h_stop(uv_async_t *a) {
  h_stats = *kl_http_server_stats(hsrv);
  kl_http_server_close(hsrv, h_server_closed, NULL);
  kl_http_server_close(hssrv, h_server_closed, NULL);
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&h_guard, NULL);
}

static void h_guard_fire(uv_timer_t *t) {
  (void)t;
  nt_fail(__LINE__, "the HTTP test did not finish within %d ms", GUARD_MS);
  h_stop(&h_done);
}

/* One GET /who over TLS from a blocking client (client thread). */
typedef struct hx {
  int port;
  kl_tls_ctx_t *ctx;
  unsigned roles;
  const char *expect;
  int status;
  char body[256];
  char err[KL_ERR_MSG_MAX];
} hx_t;

static bool hx_flush(int fd, kl_tls_session_t *s) {
  size_t n;
  uint8_t *p;
  bool ok = true;
  while ((p = kl_tls_session_output(s, &n)) != NULL) {
    ok &= nt_send(fd, p, n);
    free(p);
  }
  return ok;
}

static void hx_get(hx_t *x) {
  kl_err_t e = {0};
  uint8_t buf[16384];
  char resp[4096];
  size_t have = 0;
  int fd = nt_connect(x->port);
  if (fd < 0) {
    snprintf(x->err, sizeof x->err, "cannot connect");
    return;
  }
  kl_tls_session_t *s = kl_tls_session_new(x->ctx, false, x->roles, x->expect);
  int st = kl_tls_session_start(s, &e);
  while (st == KL_TLS_HANDSHAKING) {
    hx_flush(fd, s);
    ssize_t k = recv(fd, buf, sizeof buf, 0);
    if (k <= 0) {
      snprintf(x->err, sizeof x->err, "closed during the handshake");
      goto out;
    }
    st = kl_tls_session_feed(s, buf, (size_t)k, &e);
  }
  if (st < 0) {
    snprintf(x->err, sizeof x->err, "%s", e.msg);
    goto out;
  }
  hx_flush(fd, s);
  static const char req[] = "GET /who HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  if (kl_tls_session_write(s, req, sizeof req - 1, &e) || !hx_flush(fd, s)) {
    snprintf(x->err, sizeof x->err, "write: %.400s", e.msg);
    goto out;
  }
  for (;;) {
    ssize_t k = recv(fd, buf, sizeof buf, 0);
    if (k <= 0) break;
    if (kl_tls_session_feed(s, buf, (size_t)k, &e) < 0) break;
    bool closed = false;
    long r;
    while (have < sizeof resp - 1 &&
           (r = kl_tls_session_read(s, (uint8_t *)resp + have, sizeof resp - 1 - have, &closed, &e)) > 0)
      have += (size_t)r;
    if (closed) break;
  }
  resp[have] = 0;
  if (sscanf(resp, "HTTP/1.1 %d", &x->status) != 1) x->status = 0;
  const char *body = strstr(resp, "\r\n\r\n");
  if (body) snprintf(x->body, sizeof x->body, "%s", body + 4);
  if (have == 0) snprintf(x->err, sizeof x->err, "no response");
out:
  kl_tls_session_free(s);
  close(fd);
}

static hx_t hx[4];

static void *hx_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < 4; i++) hx_get(&hx[i]);
  uv_async_send(&h_done);
  return NULL;
}

static void test_http_tls(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL);
  kl_tls_ctx_t *https =
      tt_ctx(KL_TLS_HTTPS, NULL, tt_at(pki, "nodes/gateway-1.crt"), tt_at(pki, "nodes/gateway-1.key"), NULL);
  kl_tls_ctx_t *gw = tt_node_ctx(pki, "gateway-1", NULL), *agg = tt_node_ctx(pki, "aggregator-1", NULL);
  kl_tls_ctx_t *anon = tt_ctx(KL_TLS_CLIENT, tt_at(pki, "cluster-ca.crt"), NULL, NULL, NULL);
  assert_int_equal(uv_loop_init(&hloop), 0);
  assert_int_equal(kl_http_server_create(&hloop, NULL, "mtls", &hsrv, &e), 0);
  assert_int_equal(kl_http_route(hsrv, "GET", "/who", h_who, NULL, &e), 0);
  kl_http_server_set_tls(hsrv, sctx, KL_ROLE_CORE | KL_ROLE_GATEWAY, NULL, NULL);
  assert_int_equal(kl_http_server_listen(hsrv, "127.0.0.1:0", &e), 0);
  assert_int_equal(kl_http_server_create(&hloop, NULL, "https", &hssrv, &e), 0);
  assert_int_equal(kl_http_route(hssrv, "GET", "/who", h_who, NULL, &e), 0);
  kl_http_server_set_tls(hssrv, https, 0, NULL, NULL);
  assert_int_equal(kl_http_server_listen(hssrv, "127.0.0.1:0", &e), 0);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(https);
  int mport = kl_http_server_port(hsrv), sport = kl_http_server_port(hssrv);
  /* 0: a gateway on the mutual port; 1: an aggregator there (refused); 2: an anonymous client
   * there (refused); 3: an anonymous client on the https port */
  hx[0] = (hx_t){.port = mport, .ctx = gw, .roles = KL_ROLE_CORE, .expect = "1"};
  hx[1] = (hx_t){.port = mport, .ctx = agg, .roles = KL_ROLE_CORE, .expect = "1"};
  hx[2] = (hx_t){.port = mport, .ctx = anon, .roles = KL_ROLE_CORE, .expect = "1"};
  hx[3] = (hx_t){.port = sport, .ctx = anon, .roles = KL_ROLE_GATEWAY, .expect = "1"};
  assert_int_equal(uv_async_init(&hloop, &h_done, h_stop), 0);
  uv_timer_init(&hloop, &h_guard);
  uv_timer_start(&h_guard, h_guard_fire, GUARD_MS, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, hx_thread, NULL), 0);
  uv_run(&hloop, UV_RUN_DEFAULT);
  assert_int_equal(pthread_join(th, NULL), 0);
  if (nt_failure[0]) fail_msg("%s", nt_failure);
  assert_int_equal(h_closed, 2);
  assert_int_equal(uv_loop_close(&hloop), 0);
  kl_tls_ctx_unref(gw);
  kl_tls_ctx_unref(agg);
  kl_tls_ctx_unref(anon);
  if (hx[0].status != 200) fail_msg("gateway on the mutual port: status %d (%s)", hx[0].status, hx[0].err);
  assert_string_equal(hx[0].body, "gateway/1");
  if (hx[1].status != 0) fail_msg("an aggregator was answered: %d %s", hx[1].status, hx[1].body);
  if (hx[2].status != 0) fail_msg("a client without a certificate was answered: %d %s", hx[2].status, hx[2].body);
  assert_true(h_stats.tls_refused >= 2);
  assert_int_equal(h_stats.requests, 1);
  if (hx[3].status != 200) fail_msg("https: status %d (%s)", hx[3].status, hx[3].err);
  assert_string_equal(hx[3].body, "none");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frame_with_identity),   cmocka_unit_test(test_plain_server_no_identity),
      cmocka_unit_test(test_refused_role_and_check), cmocka_unit_test(test_client_refuses_server),
      cmocka_unit_test(test_plain_client_refused),
      cmocka_unit_test(test_max_connections_per_ip), cmocka_unit_test(test_max_rate_per_ip),
      cmocka_unit_test(test_rate_survives_reconnect), cmocka_unit_test(test_handshake_timeout),
      cmocka_unit_test(test_http_tls),              cmocka_unit_test(test_orphan_keeps_identity),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
