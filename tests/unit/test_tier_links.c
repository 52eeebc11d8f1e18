/* The tier's parent links (lib/daemon/tier/tier_link.c and their use in tier.c): a parent that
 * goes silent is marked down within the heartbeat timeout and skipped by later failover rounds
 * until it answers again; a quiet link survives its parent's idle timeout (heartbeats); a
 * parent that says it is not ready gets no rounds and /healthz says why; addresses by name and
 * malformed ones. Fake parents are ksi+tcp servers speaking aggregation.proto on loopback. */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregation.pb-c.h"
#include "keyless/config.h"
#include "keyless/frameclient.h"
#include "keyless/net.h"
#include "keyless/pdu.h"
#include "keyless/tier.h"
#include "keyless/tree.h"
#include "testutil.h"
#include "tu_parent.h"
#include "../../lib/daemon/tier/tier_link.h"

#define T0 1760000000u
#define MAX_HELD 64

enum { ANSWER, MUTE, NOT_READY };

typedef struct fake {
  kl_tlv_server_t *srv;
  int mode;
  int requests, pings;
  kl_tlv_req_t *held[MAX_HELD];
  int n_held;
} fake_t;

typedef struct world {
  uv_loop_t loop;
  fake_t p[2];
  kl_tier_t *tier;
  uv_timer_t step, guard;
  int phase;
  uint64_t phase_at; /* loop ms the phase began */
  int answered, ok;
  uint64_t last_status;
  size_t min_up, max_up; /* sampled by the idle test */
  bool done;
} world_t;

static world_t W;

static void fake_handler(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  fake_t *p = arg;
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, len - 4, frame + 4);
  assert_non_null(m);
  uint8_t *out = NULL;
  size_t n = 0;
  if (p->mode == MUTE) { /* a stopped process: the kernel takes the bytes, nobody answers */
    assert_true(p->n_held < MAX_HELD);
    p->held[p->n_held++] = req;
    p->requests += m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
    keyless__aggregation__message__free_unpacked(m, NULL);
    return;
  }
  if (m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PING) {
    p->pings++;
    assert_int_equal(kl_tier_pong_frame(m->ping->id, p->mode == NOT_READY ? "no leader right now" : NULL, &out, &n, NULL), 0);
  } else {
    assert_int_equal(m->body_case, KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST);
    p->requests++;
    tu_parent_answer(m->request, T0, false, &out, &n);
  }
  kl_tlv_respond_take(req, out, n, false);
  keyless__aggregation__message__free_unpacked(m, NULL);
}

static void unmute(fake_t *p) {
  p->mode = ANSWER;
  for (int k = 0; k < p->n_held; k++) kl_tlv_respond(p->held[k], NULL, 0, false); /* their links are gone */
  p->n_held = 0;
}

static void on_srv_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  (void)arg;
}

static void finish(void) {
  W.done = true;
  uv_timer_stop(&W.guard);
  uv_close((uv_handle_t *)&W.guard, NULL);
  uv_close((uv_handle_t *)&W.step, NULL);
  kl_tier_close(W.tier, NULL, NULL);
  for (int i = 0; i < 2; i++) {
    unmute(&W.p[i]);
    kl_tlv_server_close(W.p[i].srv, on_srv_closed, NULL);
  }
}

static void on_done(void *ctx, const kl_tier_answer_t *a, void *arg) {
  (void)ctx;
  (void)arg;
  W.answered++;
  W.ok += a->status == 0;
  W.last_status = a->status;
}

static void submit(int tag) {
  kl_imprint_t h;
  kl_round_identity_t who = {"alice", "gw-test", true, false, (uint64_t)tag, 0};
  uint64_t st;
  kl_err_t e = {0};
  kl_hash(KL_HASH_SHA256, &tag, sizeof tag, &h, NULL);
  if (kl_tier_submit(W.tier, &h, 0, &who, NULL, &st, &e)) fail_msg("%s", e.msg);
}

static void next_phase(void) {
  W.phase++;
  W.phase_at = uv_now(&W.loop);
}

static uint64_t in_phase(void) { return uv_now(&W.loop) - W.phase_at; }

static void on_guard(uv_timer_t *h) {
  (void)h;
  fail_msg("phase %d did not finish within 20 s", W.phase);
}

/* Two fakes, a tier on them (addr2: the second parent's address, NULL for 127.0.0.1:port). */
static void setup_world(int mode, uint64_t idle_ms, const kl_tier_config_t *base, const char *host2, uv_timer_cb step) {
  memset(&W, 0, sizeof W);
  assert_int_equal(uv_loop_init(&W.loop), 0);
  char addr[2][300];
  const char *parents[2] = {addr[0], addr[1]};
  kl_net_limits_t lim;
  kl_net_limits_default(&lim);
  if (idle_ms) lim.idle_timeout_ms = idle_ms;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(kl_tlv_server_create(&W.loop, &lim, "parent", fake_handler, &W.p[i], &W.p[i].srv, NULL), 0);
    kl_tlv_server_set_framing(W.p[i].srv, KL_FRAMING_U32);
    bool v6 = i == 1 && host2 && host2[0] == '[';
    assert_int_equal(kl_tlv_server_listen(W.p[i].srv, v6 ? "[::1]:0" : "127.0.0.1:0", NULL), 0);
    snprintf(addr[i], sizeof addr[i], "%s:%d", i == 1 && host2 ? host2 : "127.0.0.1", kl_tlv_server_port(W.p[i].srv));
  }
  kl_tier_config_t tc = *base;
  tc.round = (kl_round_config_t){KL_HASH_SHA256, 200, 1000, 0};
  tc.period_ms = 20;
  tc.parents = parents;
  tc.n_parents = 2;
  tc.parent_mode = mode;
  tc.name = "gw-test";
  kl_err_t e = {0};
  if (kl_tier_create(&W.loop, &tc, NULL, "gateway", on_done, NULL, &W.tier, &e)) fail_msg("%s", e.msg);
  uv_timer_init(&W.loop, &W.step);
  uv_timer_init(&W.loop, &W.guard);
  W.phase_at = uv_now(&W.loop);
  W.min_up = SIZE_MAX;
  uv_timer_start(&W.step, step, 10, 10);
  uv_timer_start(&W.guard, on_guard, 20000, 0);
}

static void run_world(void) {
  uv_run(&W.loop, UV_RUN_DEFAULT);
  assert_true(W.done);
  assert_int_equal(uv_loop_close(&W.loop), 0);
}

/* ---- a parent goes silent: down within the heartbeat timeout, skipped, used again ---- */

static const kl_tier_config_t silent_cfg = {.parent_timeout_ms = 5000, .round_timeout_ms = 8000,
                                            .heartbeat_interval_ms = 50, .heartbeat_timeout_ms = 200};

static void silent_step(uv_timer_t *h) {
  (void)h;
  char why[300];
  switch (W.phase) {
    case 0: /* both up: then the first falls silent while a round waits on it */
      if (kl_tier_parents_up(W.tier) < 2) {
        if (in_phase() > 3000) fail_msg("the parents did not come up");
        return;
      }
      W.p[0].mode = MUTE;
      submit(1);
      next_phase();
      return;
    case 1: /* the round is answered by the second long before parent_timeout (5 s) */
      if (W.answered < 1) return;
      assert_int_equal(W.ok, 1);
      assert_true(in_phase() < 2500);
      assert_int_equal(W.p[0].requests, 1);
      assert_int_equal(W.p[1].requests, 1);
      assert_int_equal(kl_tier_parents_up(W.tier), 1); /* the silent one is down */
      assert_null(kl_tier_health(W.tier, why, sizeof why));
      next_phase();
      return;
    case 2: /* re-dialled while still silent: its Ping is taken and not answered */
      if (W.p[0].n_held < 2) {
        if (in_phase() > 3000) fail_msg("the silent parent was not re-dialled within 3 s");
        return;
      }
      assert_int_equal(kl_tlv_server_stats(W.p[0].srv)->accepted, 2);
      assert_int_equal(kl_tier_parents_up(W.tier), 1);
      submit(2); /* a later round goes straight to the second */
      next_phase();
      return;
    case 3:
      if (W.answered < 2) return;
      assert_int_equal(W.ok, 2);
      assert_true(in_phase() < 2500);
      assert_int_equal(W.p[0].requests, 1); /* skipped, though first in order */
      assert_int_equal(W.p[1].requests, 2);
      unmute(&W.p[0]);
      next_phase();
      return;
    case 4: /* healed: re-dialled, answers a Ping, up again, and first in order again */
      if (kl_tier_parents_up(W.tier) < 2) {
        if (in_phase() > 3000) fail_msg("the healed parent did not come back within 3 s");
        return;
      }
      submit(3);
      next_phase();
      return;
    case 5:
      if (W.answered < 3) return;
      assert_int_equal(W.ok, 3);
      assert_int_equal(W.p[0].requests, 2);
      assert_int_equal(W.p[1].requests, 2);
      finish();
      return;
  }
}

static void test_silent_parent_marked_down_and_skipped(void **state) {
  (void)state;
  setup_world(KL_TIER_FAILOVER, 0, &silent_cfg, NULL, silent_step);
  run_world();
}

/* ---- a quiet link stays up over several of the parent's idle timeouts ---- */

static const kl_tier_config_t idle_cfg = {.parent_timeout_ms = 1000, .round_timeout_ms = 2000,
                                          .heartbeat_interval_ms = 50, .heartbeat_timeout_ms = 250};

static void idle_step(uv_timer_t *h) {
  (void)h;
  size_t up = kl_tier_parents_up(W.tier);
  if (W.phase == 0) {
    if (up < 2) {
      if (in_phase() > 3000) fail_msg("the parents did not come up");
      return;
    }
    next_phase();
    return;
  }
  if (up < W.min_up) W.min_up = up;
  if (in_phase() < 1500) return; /* five idle timeouts of 300 ms */
  assert_int_equal(W.min_up, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(kl_tlv_server_stats(W.p[i].srv)->accepted, 1); /* never closed and re-dialled */
    assert_true(W.p[i].pings >= 10);
  }
  finish();
}

static void test_idle_link_stays_up(void **state) {
  (void)state;
  /* the second parent by this host's name when it resolves to loopback (the resolver path) */
  char host[256] = "", *use = NULL;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
  if (gethostname(host, sizeof host - 1) == 0 && getaddrinfo(host, "1", &hints, &res) == 0 &&
      ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr == htonl(0x7f000001))
    use = host;
  if (res) freeaddrinfo(res);
  if (use == NULL) print_message("this host's name does not resolve to 127.0.0.1: both parents by address\n");
  setup_world(KL_TIER_ALL, 300, &idle_cfg, use, idle_step);
  run_world();
}

/* ---- a parent that is not ready gets no round, and health says why ---- */

static void ready_step(uv_timer_t *h) {
  (void)h;
  char why[400];
  switch (W.phase) {
    case 0: /* heard from both (Pings answered), none ready */
      if (W.p[0].pings < 1 || W.p[1].pings < 1) {
        if (in_phase() > 3000) fail_msg("no Ping reached the parents");
        return;
      }
      assert_int_equal(kl_tier_parents_up(W.tier), 0);
      assert_non_null(kl_tier_health(W.tier, why, sizeof why));
      assert_non_null(strstr(why, "no parent is up"));
      assert_non_null(strstr(why, "no leader right now"));
      submit(1); /* refused at the round's close: no parent would take it */
      next_phase();
      return;
    case 1:
      if (W.answered < 1) return;
      assert_int_equal(W.last_status, KL_STATUS_UPSTREAM_ERROR);
      assert_int_equal(W.p[0].requests + W.p[1].requests, 0);
      W.p[1].mode = ANSWER; /* the second becomes ready: its next Pong says so */
      next_phase();
      return;
    case 2:
      if (kl_tier_parents_up(W.tier) < 1) {
        if (in_phase() > 3000) fail_msg("the ready parent did not come up");
        return;
      }
      assert_null(kl_tier_health(W.tier, why, sizeof why)); /* a parent came up after the failure */
      submit(2);
      next_phase();
      return;
    case 3:
      if (W.answered < 2) return;
      assert_int_equal(W.ok, 1);
      assert_int_equal(W.p[0].requests, 0);
      assert_int_equal(W.p[1].requests, 1);
      finish();
      return;
  }
}

static void test_not_ready_parent_skipped(void **state) {
  (void)state;
  setup_world(KL_TIER_ALL, 0, &silent_cfg, NULL, ready_step);
  W.p[0].mode = W.p[1].mode = NOT_READY;
  run_world();
}

/* ---- a parent at an IPv6 literal ---- */

static void v6_step(uv_timer_t *h) {
  (void)h;
  switch (W.phase) {
    case 0:
      if (kl_tier_parents_up(W.tier) < 2) {
        if (in_phase() > 3000) fail_msg("the parents did not come up");
        return;
      }
      submit(1);
      next_phase();
      return;
    case 1:
      if (W.answered < 1) return;
      assert_int_equal(W.ok, 1);
      assert_int_equal(W.p[1].requests, 1); /* mode all: the [::1] parent was asked too */
      finish();
      return;
  }
}

static void test_ipv6_parent(void **state) {
  (void)state;
  uv_tcp_t probe;
  struct sockaddr_in6 sa;
  uv_loop_t l;
  uv_loop_init(&l);
  uv_tcp_init(&l, &probe);
  uv_ip6_addr("::1", 0, &sa);
  int r = uv_tcp_bind(&probe, (const struct sockaddr *)&sa, 0);
  uv_close((uv_handle_t *)&probe, NULL);
  uv_run(&l, UV_RUN_DEFAULT);
  uv_loop_close(&l);
  if (r != 0) {
    print_message("no IPv6 loopback here (%s): skipped\n", uv_strerror(r));
    skip();
  }
  setup_world(KL_TIER_ALL, 0, &silent_cfg, "[::1]", v6_step);
  run_world();
}

/* ---- the link state machine alone ---- */

static void test_link_machine(void **state) {
  (void)state;
  kl_link_t l;
  kl_link_init(&l, 100, 400, 1000);
  assert_false(kl_link_usable(&l));
  assert_int_equal(kl_link_poll(&l, 1500), KL_LINK_NOTHING);
  assert_int_equal(kl_link_poll(&l, 1800), KL_LINK_SILENT); /* an attempt hanging 2 x timeout */
  kl_link_connected(&l, 2000);
  assert_string_equal(kl_link_state(&l), "unverified");
  assert_int_equal(kl_link_poll(&l, 2000), KL_LINK_PING); /* a new link is probed at once */
  kl_link_sent(&l, 2000, true);
  assert_int_equal(kl_link_poll(&l, 2399), KL_LINK_NOTHING);
  assert_int_equal(kl_link_poll(&l, 2400), KL_LINK_SILENT);
  kl_link_heard(&l, 2010, true);
  assert_true(kl_link_usable(&l));
  assert_int_equal(kl_link_poll(&l, 2050), KL_LINK_NOTHING);
  assert_int_equal(kl_link_poll(&l, 2110), KL_LINK_PING); /* quiet for an interval */
  /* two requests: each answer restarts the wait for the next */
  kl_link_sent(&l, 2100, false);
  kl_link_sent(&l, 2150, false);
  assert_int_equal(kl_link_poll(&l, 2450), KL_LINK_NOTHING);
  kl_link_heard(&l, 2450, true);
  assert_int_equal(kl_link_poll(&l, 2800), KL_LINK_NOTHING);
  assert_int_equal(kl_link_poll(&l, 2850), KL_LINK_SILENT);
  kl_link_heard(&l, 2860, true);
  assert_int_equal(l.outstanding, 0);
  kl_link_suspect(&l);
  assert_false(kl_link_usable(&l));
  assert_string_equal(kl_link_state(&l), "suspect");
  kl_link_heard(&l, 2900, true); /* heard again: no longer suspect */
  assert_true(kl_link_usable(&l));
  kl_link_heard(&l, 2950, false);
  assert_string_equal(kl_link_state(&l), "not ready");
  kl_link_disconnected(&l, 3000);
  assert_string_equal(kl_link_state(&l), "down");
  kl_link_sent(&l, 3001, false); /* nothing counts while down */
  kl_link_connected(&l, 3100);
  assert_int_equal(l.outstanding, 0);
  assert_false(kl_link_usable(&l));
}

static void test_addresses(void **state) {
  (void)state;
  char host[256], port[8];
  kl_err_t e = {0};
  assert_int_equal(kl_frame_addr_split("core1.example.internal:9101", host, sizeof host, port, sizeof port, &e), 0);
  assert_string_equal(host, "core1.example.internal");
  assert_string_equal(port, "9101");
  assert_int_equal(kl_frame_addr_split("[::1]:8090", host, sizeof host, port, sizeof port, &e), 0);
  assert_string_equal(host, "::1");
  static const char *bad[] = {"", "core1", "core1:", ":80", "core1:-1", "core1:65536", "core1:80x", "::1:80",
                              "[::1]80", "[nothost]:80", "co re:80", "a/b:80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    e.msg[0] = '\0';
    if (kl_frame_addr_split(bad[i], host, sizeof host, port, sizeof port, &e) == 0) fail_msg("accepted '%s'", bad[i]);
    assert_true(e.msg[0] != '\0');
  }
  /* the tier's config check: a malformed parent is an error with the reason */
  typedef struct cfg {
    kl_tier_settings_t tier;
  } cfg_t;
  kl_cfg_key_t keys[KL_TIER_N_KEYS];
  kl_tier_defaults_t d = {"100ms", "200", "65536", "1000"};
  kl_tier_cfg_keys(offsetof(cfg_t, tier), &d, keys);
  cfg_t c;
  memset(&c, 0, sizeof c);
  assert_int_not_equal(kl_cfg_load_string("t.conf", "[parents]\nparent1 = ::1:8090\n", keys, KL_TIER_N_KEYS, &c, &e), 0);
  assert_non_null(strstr(e.msg, "brackets"));
  kl_cfg_free(keys, KL_TIER_N_KEYS, &c);
  memset(&c, 0, sizeof c);
  assert_int_not_equal(kl_cfg_load_string("t.conf", "[parents]\nparent1 = core1:0\n", keys, KL_TIER_N_KEYS, &c, &e), 0);
  assert_non_null(strstr(e.msg, "cannot be 0"));
  kl_cfg_free(keys, KL_TIER_N_KEYS, &c);
  memset(&c, 0, sizeof c);
  assert_int_equal(kl_cfg_load_string("t.conf", "[parents]\nparent1 = [::1]:8090\nheartbeat_interval = 2s\n", keys,
                                      KL_TIER_N_KEYS, &c, &e),
                   0);
  const char *parents[KL_TIER_MAX_PARENTS];
  char name[128];
  kl_tier_config_t tc;
  assert_int_not_equal(kl_tier_settings_apply(&c.tier, parents, name, &tc, &e), 0); /* interval >= timeout */
  assert_non_null(strstr(e.msg, "heartbeat_interval"));
  kl_cfg_free(keys, KL_TIER_N_KEYS, &c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_link_machine),
      cmocka_unit_test(test_addresses),
      cmocka_unit_test(test_silent_parent_marked_down_and_skipped),
      cmocka_unit_test(test_idle_link_stays_up),
      cmocka_unit_test(test_not_ready_parent_skipped),
      cmocka_unit_test(test_ipv6_parent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
