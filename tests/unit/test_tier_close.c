/* The tier closed by its owner (keyless/tier.h "Closing by the owner"; a multi-loop gateway's
 * main loop, gateway/gw_pool.c): with manual_close the timer closes no round however many
 * periods pass, kl_tier_close_now closes it at once (its root goes up, every request is
 * answered with a chain that verifies), an empty round sends nothing, a round that fills up
 * still closes early and goes up before the open one, the timer still times rounds out, and
 * kl_tier_next_close follows the wall-clock schedule. One fake parent on loopback. */
#include <stdlib.h>
#include <string.h>

#include "aggregation.pb-c.h"
#include "keyless/net.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/tier.h"
#include "keyless/tlv.h"
#include "keyless/tree.h"
#include "keyless/verify.h"
#include "testutil.h"
#include "tu_parent.h"

#define T0 1760000000u
#define N_DOCS 5

typedef struct run {
  uv_loop_t loop;
  kl_tlv_server_t *srv;
  bool silent;            /* the parent takes requests and never answers */
  int requests;           /* aggregation requests the parent received */
  unsigned levels[8];     /* their levels, in order */
  kl_tlv_req_t *held[8];
  int n_held;
  kl_tier_t *tier;
  kl_imprint_t docs[N_DOCS];
  uint64_t status[N_DOCS];
  bool verified[N_DOCS];
  int answered;
  size_t closed;          /* what the last kl_tier_close_now returned */
  int step;
  uv_timer_t steps, guard;
} run_t;

static run_t R;

static void parent_handler(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  (void)arg;
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, len - 4, frame + 4);
  assert_non_null(m);
  uint8_t *out;
  size_t n;
  if (m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PING) {
    assert_int_equal(kl_tier_pong_frame(m->ping->id, NULL, &out, &n, NULL), 0);
    keyless__aggregation__message__free_unpacked(m, NULL);
    if (R.silent && R.n_held > 0) { /* answers stay in order: behind the held request */
      assert_true(R.n_held < 8);
      R.held[R.n_held++] = req;
      free(out);
      return;
    }
    kl_tlv_respond_take(req, out, n, false);
    return;
  }
  assert_int_equal(m->body_case, KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST);
  assert_true(R.requests < 8);
  R.levels[R.requests++] = (unsigned)m->request->level;
  if (R.silent) {
    assert_true(R.n_held < 8);
    R.held[R.n_held++] = req;
    keyless__aggregation__message__free_unpacked(m, NULL);
    return;
  }
  tu_parent_answer(m->request, T0, false, &out, &n);
  kl_tlv_respond_take(req, out, n, false);
  keyless__aggregation__message__free_unpacked(m, NULL);
}

static void on_srv_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  (void)arg;
}

static void finish(void) {
  uv_timer_stop(&R.guard);
  uv_timer_stop(&R.steps);
  uv_close((uv_handle_t *)&R.guard, NULL);
  uv_close((uv_handle_t *)&R.steps, NULL);
  kl_tier_close(R.tier, NULL, NULL);
  for (int k = 0; k < R.n_held; k++) kl_tlv_respond(R.held[k], NULL, 0, false);
  kl_tlv_server_close(R.srv, on_srv_closed, NULL);
}

static void on_done(void *ctx, const kl_tier_answer_t *a, void *arg) {
  (void)arg;
  size_t i = (size_t)(uintptr_t)ctx;
  assert_true(i < N_DOCS);
  R.status[i] = a->status;
  R.answered++;
  if (a->status != 0) return;
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  kl_buf_put(&b, a->tlvs, a->len);
  if (a->tail) kl_buf_put(&b, a->tail, a->tail_len);
  assert_int_equal(kl_tlv_close(&b, m, KL_T_SIGNATURE, 0), 0);
  kl_sig_t *sig;
  kl_err_t e = {0};
  if (kl_sig_parse(b.p, b.len, &sig, &e)) fail_msg("%s", e.msg);
  kl_verify_opts_t o = {0};
  o.doc_hash = &R.docs[i];
  kl_verify_result_t res;
  kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
  R.verified[i] = res.verdict == KL_VER_OK;
  kl_sig_free(sig);
  kl_buf_free(&b);
}

static void submit(size_t i) {
  kl_round_identity_t who = {"w0", "gw-test", true, false, i, 0};
  uint64_t st;
  kl_err_t e = {0};
  if (kl_tier_submit(R.tier, &R.docs[i], 0, &who, (void *)(uintptr_t)i, &st, &e)) fail_msg("%s", e.msg);
}

static void on_guard(uv_timer_t *h) {
  (void)h;
  fail_msg("the scenario did not end within 10 s");
}

/* Starts a tier with manual_close (period 20 ms) against one parent and runs the loop; step
 * drives the scenario every 150 ms (7 or more periods: the timer had its chances). */
static void scenario(uv_timer_cb step, size_t max_requests, uint64_t round_timeout) {
  memset(&R, 0, sizeof R);
  assert_int_equal(uv_loop_init(&R.loop), 0);
  assert_int_equal(kl_tlv_server_create(&R.loop, NULL, "parent", parent_handler, NULL, &R.srv, NULL), 0);
  kl_tlv_server_set_framing(R.srv, KL_FRAMING_U32);
  assert_int_equal(kl_tlv_server_listen(R.srv, "127.0.0.1:0", NULL), 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", kl_tlv_server_port(R.srv));
  const char *parents[1] = {addr};
  for (int i = 0; i < N_DOCS; i++) kl_hash(KL_HASH_SHA256, &i, sizeof i, &R.docs[i], NULL);
  kl_tier_config_t tc = {.round = {KL_HASH_SHA256, 200, max_requests, 0},
                         .period_ms = 20,
                         .parents = parents,
                         .n_parents = 1,
                         .parent_timeout_ms = 150,
                         .round_timeout_ms = round_timeout,
                         .name = "gw-test",
                         .manual_close = true};
  kl_err_t e = {0};
  if (kl_tier_create(&R.loop, &tc, NULL, "gateway", on_done, NULL, &R.tier, &e)) fail_msg("%s", e.msg);
  uv_timer_init(&R.loop, &R.steps);
  uv_timer_init(&R.loop, &R.guard);
  uv_timer_start(&R.steps, step, 150, 150); /* the first after the link is up */
  uv_timer_start(&R.guard, on_guard, 10000, 0);
  uv_run(&R.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&R.loop), 0);
}

/* 1: an empty close sends nothing; 5 requests; 2: none went up on the timer, close now; 3: all
 * answered by one round. */
static void step_close_now(uv_timer_t *h) {
  (void)h;
  switch (R.step++) {
  case 0:
    assert_int_equal(kl_tier_close_now(R.tier), 0);
    for (size_t i = 0; i < N_DOCS; i++) submit(i);
    break;
  case 1:
    assert_int_equal(R.requests, 0); /* the timer closed nothing */
    assert_int_equal(R.answered, 0);
    assert_int_equal(kl_tier_pending(R.tier), N_DOCS);
    R.closed = kl_tier_close_now(R.tier);
    break;
  default:
    if (R.answered == N_DOCS || R.step > 40) finish();
  }
}

static void test_close_now(void **state) {
  (void)state;
  scenario(step_close_now, 1000, 2000);
  assert_int_equal(R.closed, N_DOCS);
  assert_int_equal(R.requests, 1); /* one round, one root */
  assert_int_equal(R.answered, N_DOCS);
  for (int i = 0; i < N_DOCS; i++) {
    assert_int_equal(R.status[i], 0);
    assert_true(R.verified[i]);
  }
}

/* Rounds of 2: 5 requests fill two rounds, which go up on their own (before any close); the
 * fifth waits for close_now. */
static void step_full(uv_timer_t *h) {
  (void)h;
  switch (R.step++) {
  case 0:
    for (size_t i = 0; i < N_DOCS; i++) submit(i);
    break;
  case 1:
    assert_int_equal(R.requests, 2); /* the two full rounds, not the open one */
    assert_int_equal(R.answered, 4);
    R.closed = kl_tier_close_now(R.tier);
    break;
  default:
    if (R.answered == N_DOCS || R.step > 40) finish();
  }
}

static void test_full_rounds_still_close_early(void **state) {
  (void)state;
  scenario(step_full, 2, 2000);
  assert_int_equal(R.closed, 1);
  assert_int_equal(R.requests, 3);
  for (int i = 0; i < N_DOCS; i++) assert_true(R.verified[i]);
}

/* A silent parent: a round closed by its owner still fails with 0x0301 at round_timeout. */
static void step_timeout(uv_timer_t *h) {
  (void)h;
  switch (R.step++) {
  case 0:
    R.silent = true;
    submit(0);
    submit(1);
    R.closed = kl_tier_close_now(R.tier);
    break;
  default:
    if (R.answered == 2 || R.step > 40) finish();
  }
}

static void test_timeout_without_timer_close(void **state) {
  (void)state;
  scenario(step_timeout, 1000, 300);
  assert_int_equal(R.closed, 2);
  assert_int_equal(R.answered, 2);
  assert_int_equal(R.status[0], KL_STATUS_UPSTREAM_TIMEOUT);
  assert_int_equal(R.status[1], KL_STATUS_UPSTREAM_TIMEOUT);
}

/* The schedule: period 20 ms, the lead of a tier with no parent heard (5 ms): closes at
 * k * 20 - 5 and at each second's end - 5. */
static void step_schedule(uv_timer_t *h) {
  (void)h;
  uint64_t base = 1760000000000ull; /* a whole second */
  assert_int_equal(kl_tier_next_close(R.tier, base), base + 15);
  assert_int_equal(kl_tier_next_close(R.tier, base + 15), base + 35);
  assert_int_equal(kl_tier_next_close(R.tier, base + 990), base + 995);
  uint64_t now = base + 7;
  for (int i = 0; i < 100; i++, now += 13) { /* always ahead, at most a period */
    uint64_t at = kl_tier_next_close(R.tier, now);
    assert_true(at > now && at <= now + 20);
  }
  finish();
}

static void test_next_close(void **state) {
  (void)state;
  scenario(step_schedule, 1000, 2000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_close_now),
      cmocka_unit_test(test_full_rounds_still_close_early),
      cmocka_unit_test(test_timeout_without_timer_close),
      cmocka_unit_test(test_next_close),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
