/* ext_follow (extender/ext_follow.c) against fake cores on loopback: small replication servers
 * that answer a Subscribe with the seconds of their own calendar after `after`, or, with none
 * new (a probe's far-future `after` included), an empty batch with their committed_last 200 ms
 * later (the core's heartbeat, shortened). Built by extender/CMakeLists.txt (it compiles
 * ext_follow.c).
 *   - behind: core A stopped committing at G+9, core B is at G+40: the extender starts on A (the
 *     first configured), drops it as "behind" once B's probe is heard, and its replica reaches
 *     B's last second, every second once;
 *   - divergence: after A, core B serves another history: its batch is refused, following stops
 *     for good, ext_follow_sync says why and nothing of B is stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "extender.h"
#include "keyless/pki.h"
#include "keyless/replica.h"
#include "testutil.h"

/* Genesis: 20 minutes ago (the development certificates are valid from an hour ago). */
static uint64_t G;
static char pki_dir[256];
static kl_calauth_t *auth;   /* the fakes sign their batches with it, as a core does */
static const uint8_t *der;   /* ... and the extender trusts its certificate */
static size_t der_len;

typedef struct fake {
  uv_loop_t *loop;
  kl_tlv_server_t *srv;
  kl_cal_t *cal;
  char dir[256];
  char addr[64];
  kl_tlv_req_t *held[16];
  uint64_t held_after[16];
  size_t n_held;
  uv_timer_t timer;
  unsigned subscribes;
} fake_t;

static void pb_varint(kl_buf_t *b, uint64_t v) {
  for (; v >= 0x80; v >>= 7) kl_buf_put_u8(b, (uint8_t)(v | 0x80));
  kl_buf_put_u8(b, (uint8_t)v);
}

/* Entries{genesis, committed_last}, framed. */
static void empty_batch(kl_buf_t *out, uint64_t committed_last) {
  kl_buf_t en = KL_BUF_INIT, m = KL_BUF_INIT;
  pb_varint(&en, 1 << 3);
  pb_varint(&en, G);
  pb_varint(&en, 3 << 3);
  pb_varint(&en, committed_last);
  pb_varint(&m, 2 << 3 | 2);
  pb_varint(&m, en.len);
  kl_buf_put(&m, en.p, en.len);
  kl_frame_put(out, m.p, m.len);
  kl_buf_free(&en);
  kl_buf_free(&m);
}

static uint64_t cal_last(kl_cal_t *cal) {
  kl_cal_info_t ci;
  assert_int_equal(kl_cal_info(cal, &ci, NULL), 0);
  return ci.empty ? G - 1 : ci.last;
}

/* The seconds after `after` (at most 1000), or nothing when there are none. */
static bool answer(fake_t *f, kl_tlv_req_t *req, uint64_t after) {
  uint64_t last = cal_last(f->cal), from = after + 1 < G ? G : after + 1;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  if (from > last) return false;
  uint64_t to = last - from >= 1000 ? from + 999 : last;
  assert_int_equal(kl_repl_encode_entries_signed(&b, f->cal, from, to, auth, &e), 0);
  size_t n;
  uint8_t *p = kl_buf_steal(&b, &n);
  kl_tlv_respond_take(req, p, n, false);
  return true;
}

static void on_sub(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  fake_t *f = arg;
  kl_repl_subscribe_t sub;
  int is_sub = 0;
  size_t applied;
  f->subscribes++;
  if (kl_repl_handle(frame + 4, len - 4, NULL, &sub, &is_sub, &applied, NULL) || !is_sub) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  uint64_t after = sub.from_genesis ? G - 1 : sub.after;
  if (answer(f, req, after)) return;
  if (f->n_held == 16) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  f->held_after[f->n_held] = after;
  f->held[f->n_held++] = req;
}

/* Every 200 ms: the held requests get an empty batch (the heartbeat). */
static void on_timer(uv_timer_t *t) {
  fake_t *f = t->data;
  for (size_t k = 0; k < f->n_held; k++) {
    kl_buf_t b = KL_BUF_INIT;
    empty_batch(&b, cal_last(f->cal));
    size_t n;
    uint8_t *p = kl_buf_steal(&b, &n);
    kl_tlv_respond_take(f->held[k], p, n, false);
  }
  f->n_held = 0;
}

/* A calendar G..last; `tag` changes every leaf (another history). */
static void fake_start(fake_t *f, uv_loop_t *loop, uint64_t last, int tag) {
  kl_err_t e = {0};
  kl_net_limits_t lim;
  memset(f, 0, sizeof *f);
  f->loop = loop;
  tu_mkdtemp("fakecore", f->dir, sizeof f->dir);
  assert_int_equal(kl_cal_create(f->dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(f->dir, NULL, &f->cal, &e), 0);
  for (uint64_t t = G; t <= last; t++) {
    kl_imprint_t x;
    uint64_t v[2] = {t, (uint64_t)tag};
    kl_hash(KL_HASH_SHA256, v, sizeof v, &x, NULL);
    kl_cal_entry_t en = {t, &x};
    assert_int_equal(kl_cal_append(f->cal, &en, 1, &e), 0);
  }
  kl_net_limits_default(&lim);
  assert_int_equal(kl_tlv_server_create(loop, &lim, "replication", on_sub, f, &f->srv, &e), 0);
  kl_tlv_server_set_framing(f->srv, KL_FRAMING_U32);
  assert_int_equal(kl_tlv_server_listen(f->srv, "127.0.0.1:0", &e), 0);
  snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", kl_tlv_server_port(f->srv));
  uv_timer_init(loop, &f->timer);
  f->timer.data = f;
  uv_timer_start(&f->timer, on_timer, 200, 200);
}

static void fake_stop(fake_t *f) {
  for (size_t k = 0; k < f->n_held; k++) kl_tlv_respond(f->held[k], NULL, 0, true);
  f->n_held = 0;
  kl_tlv_server_close(f->srv, NULL, NULL);
  uv_close((uv_handle_t *)&f->timer, NULL);
}

static void fake_free(fake_t *f) {
  kl_cal_close(f->cal);
  tu_rmrf(f->dir);
}

typedef struct world {
  uv_loop_t loop;
  fake_t a, b;
  ext_config_t cfg;
  kl_repl_trust_t trust;
  kl_metrics_t *m;
  ext_follow_t *fo;
  kl_cal_t *rep;
  char rep_dir[256];
  uint64_t progress_last;
  bool error, refused;
} world_t;

static void w_progress(void *arg, uint64_t last) { ((world_t *)arg)->progress_last = last; }
static void w_error(void *arg, const char *why, bool refused) {
  world_t *w = arg;
  (void)why;
  w->error = true;
  w->refused = refused;
}

static void world_start(world_t *w, uint64_t a_last, uint64_t b_last, int b_tag) {
  kl_err_t e = {0};
  static const ext_follow_cbs_t cbs = {w_progress, w_error};
  memset(w, 0, sizeof *w);
  assert_int_equal(uv_loop_init(&w->loop), 0);
  fake_start(&w->a, &w->loop, a_last, 0);
  fake_start(&w->b, &w->loop, b_last, b_tag);
  w->cfg.upstreams[0] = w->a.addr;
  w->cfg.upstreams[1] = w->b.addr;
  w->cfg.n_upstreams = 2;
  w->cfg.silence_timeout_ms = 2000;
  w->cfg.max_lag_ms = 0;
  w->trust = (kl_repl_trust_t){&der, &der_len, 1, false};
  tu_mkdtemp("replica", w->rep_dir, sizeof w->rep_dir);
  assert_int_equal(kl_cal_create(w->rep_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(w->rep_dir, NULL, &w->rep, &e), 0);
  assert_int_equal(kl_metrics_create(&w->m, &e), 0);
  assert_int_equal(ext_follow_start(&w->loop, &w->cfg, &w->trust, NULL, w->m, &cbs, w, &w->fo, &e), 0);
  ext_follow_attach(w->fo, w->rep);
}

/* Runs the loop until done(w) or deadline_ms of loop time. */
static bool run_until(world_t *w, bool (*done)(world_t *), uint64_t deadline_ms) {
  uint64_t end = uv_now(&w->loop) + deadline_ms;
  while (!done(w) && uv_now(&w->loop) < end) uv_run(&w->loop, UV_RUN_ONCE);
  return done(w);
}

static void world_stop(world_t *w) {
  ext_follow_close(w->fo);
  fake_stop(&w->a);
  fake_stop(&w->b);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&w->loop), 0);
  ext_follow_free(w->fo);
  fake_free(&w->a);
  fake_free(&w->b);
  kl_metrics_destroy(w->m);
  kl_cal_close(w->rep);
  tu_rmrf(w->rep_dir);
}

static double switches(world_t *w, const char *reason) {
  return kl_metric_value(kl_metrics_counter(w->m, "keyless_extender_upstream_switches_total",
                                            "Times the followed core was dropped for another, by reason (down, "
                                            "silent, behind).",
                                            (const char *[]){"reason", reason, NULL}));
}

static bool has_a(world_t *w) { return cal_last(w->rep) >= G + 9; }
static bool has_b(world_t *w) { return cal_last(w->rep) >= G + 40; }
static bool stopped(world_t *w) { return w->error; }

static void test_behind(void **state) {
  (void)state;
  world_t *w = calloc(1, sizeof *w);
  world_start(w, G + 9, G + 40, 0);
  assert_true(run_until(w, has_a, 5000));
  const char *cur = ext_follow_current(w->fo);
  assert_non_null(cur);
  assert_true(run_until(w, has_b, 8000)); /* B's probe heard, A dropped as behind */
  assert_true(cal_last(w->rep) == G + 40);
  assert_string_equal(ext_follow_current(w->fo), w->b.addr);
  assert_true(switches(w, "behind") >= 1);
  assert_true(switches(w, "silent") == 0);
  assert_false(w->error);
  assert_true(w->progress_last == G + 40);
  /* every second once, and B's history: the replica's root is B's */
  kl_imprint_t r1, r2;
  assert_int_equal(kl_cal_root(w->rep, G + 40, &r1, NULL), 0);
  assert_int_equal(kl_cal_root(w->b.cal, G + 40, &r2, NULL), 0);
  assert_true(kl_imprint_eq(&r1, &r2));
  uint64_t lb;
  assert_true(ext_follow_upstream_last(w->fo, &lb) && lb == G + 40);
  assert_int_equal(ext_follow_n_up(w->fo), 2);
  world_stop(w);
  free(w);
}

static void test_divergence_stops(void **state) {
  (void)state;
  world_t *w = calloc(1, sizeof *w);
  world_start(w, G + 9, G + 40, 7); /* B: another history */
  assert_true(run_until(w, has_a, 5000));
  assert_true(run_until(w, stopped, 8000));
  assert_true(w->refused);
  assert_true(ext_follow_diverged(w->fo));
  assert_true(cal_last(w->rep) == G + 9); /* nothing of B */
  const char *why = ext_follow_sync(w->fo, w->rep);
  assert_non_null(why);
  assert_non_null(strstr(why, "replication stopped"));
  assert_non_null(strstr(why, w->b.addr));
  /* and it stays stopped: A is still there, but nothing is followed any more */
  uint64_t end = uv_now(&w->loop) + 1500;
  while (uv_now(&w->loop) < end) uv_run(&w->loop, UV_RUN_ONCE);
  assert_true(cal_last(w->rep) == G + 9);
  assert_true(ext_follow_diverged(w->fo));
  world_stop(w);
  free(w);
}

static int pki_setup(void **state) {
  (void)state;
  kl_err_t e = {0};
  char crt[600], key[600];
  G = (uint64_t)time(NULL) - 1200;
  tu_mkdtemp("pki", pki_dir, sizeof pki_dir);
  if (kl_devpki_create(pki_dir, "follow-test@keyless.invalid", 30, &e)) {
    fprintf(stderr, "devpki: %s\n", e.msg);
    return -1;
  }
  snprintf(crt, sizeof crt, "%s/calendar-auth.crt", pki_dir);
  snprintf(key, sizeof key, "%s/calendar-auth.key", pki_dir);
  if (kl_calauth_load(crt, key, &auth, &e)) {
    fprintf(stderr, "calauth: %s\n", e.msg);
    return -1;
  }
  der = kl_calauth_cert_der(auth, &der_len);
  return 0;
}

static int pki_teardown(void **state) {
  (void)state;
  kl_calauth_free(auth);
  return tu_rmrf(pki_dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_behind),
      cmocka_unit_test(test_divergence_stops),
  };
  return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
