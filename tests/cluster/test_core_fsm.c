/* The core's Raft FSM on libraft's fixture: N servers in memory, one simulated clock. Every
 * scenario ends with the same checks: all calendars identical second by second (no fork), no
 * hole, and every round a node announced (answered) equal to the final calendar. */
#include <raft.h>
#include <raft/fixture.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm.h"
#include "keyless/replica.h"
#include "testutil.h"

#define N_MAX 5
#define GENESIS 1800000000ull
#define MAX_ANNOUNCED 4096

typedef struct announced {
  uint64_t second;
  kl_imprint_t leaf; /* root, or the filler for an empty second */
} announced_t;

typedef struct server {
  char dir[64];
  kl_cal_t *cal;
  kl_core_fsm_t fsm;
  announced_t seen[MAX_ANNOUNCED];
  size_t n_seen;
} server_t;

typedef struct cluster {
  struct raft_fixture f;
  server_t s[N_MAX];
  unsigned n;
  raft_id leader; /* whose barrier has completed in its current term */
  raft_term leader_term;
  uint64_t proposed; /* last second proposed by that leader */
  uint64_t seed, seed0;
} cluster_t;

static void on_round(void *arg, const kl_core_round_t *r) {
  server_t *s = arg;
  assert_true(s->n_seen < MAX_ANNOUNCED);
  announced_t *a = &s->seen[s->n_seen++];
  a->second = r->second;
  if (r->root) a->leaf = *r->root;
  else kl_cal_filler_leaf(r->second, &a->leaf);
}

static uint64_t rnd(cluster_t *c) {
  c->seed = c->seed * 6364136223846793005ull + 1442695040888963407ull;
  return c->seed >> 33;
}

static void open_server(server_t *s, unsigned i) {
  kl_err_t e = {0};
  snprintf(s->dir, sizeof s->dir, "/tmp/kl-fsm-%u-XXXXXX", i);
  assert_non_null(mkdtemp(s->dir));
  assert_int_equal(kl_cal_create(s->dir, GENESIS, NULL, &e), 0);
  kl_cal_opts_t o = {.no_sync = true}; /* as the daemon: no fsync, the Raft log is durable */
  assert_int_equal(kl_cal_open(s->dir, &o, &s->cal, &e), 0);
  kl_core_fsm_init(&s->fsm, s->cal, on_round, s);
}

static void start(cluster_t *c, unsigned n, uint64_t seed) {
  memset(c, 0, sizeof *c);
  c->n = n;
  c->seed = c->seed0 = seed;
  assert_int_equal(raft_fixture_initialize(&c->f), 0);
  for (unsigned i = 0; i < n; i++) {
    open_server(&c->s[i], i);
    assert_int_equal(raft_fixture_grow(&c->f, &c->s[i].fsm.raft), 0);
  }
  struct raft_configuration conf;
  assert_int_equal(raft_fixture_configuration(&c->f, n, &conf), 0);
  assert_int_equal(raft_fixture_bootstrap(&c->f, &conf), 0);
  raft_configuration_close(&conf);
  assert_int_equal(raft_fixture_start(&c->f), 0);
}

static void stop(cluster_t *c) {
  raft_fixture_close(&c->f);
  for (unsigned i = 0; i < c->n; i++) {
    char cmd[128];
    kl_core_fsm_close(&c->s[i].fsm);
    kl_cal_close(c->s[i].cal);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->s[i].dir);
    assert_int_equal(system(cmd), 0);
  }
}

/* ---- the leader's side of docs/core.md: barrier on taking office, then one entry a second ---- */

static void barrier_cb(struct raft_barrier *req, int status) {
  int *done = req->data;
  *done = status == 0 ? 1 : -1;
}

static void apply_cb(struct raft_apply *req, int status, void *result) {
  (void)status;
  (void)result;
  free(req);
}

/* Makes sure the current leader (if any) has committed its predecessors' entries; returns its
 * index or -1. */
static int ready_leader(cluster_t *c) {
  unsigned li = raft_fixture_leader_index(&c->f);
  if (li >= c->n) return -1;
  struct raft *r = raft_fixture_get(&c->f, li);
  if (c->leader == r->id && c->leader_term == r->current_term) return (int)li;
  struct raft_barrier b;
  int done = 0;
  b.data = &done;
  if (raft_barrier(r, &b, barrier_cb) != 0) return -1;
  for (int k = 0; k < 2000 && done == 0; k++) raft_fixture_step(&c->f);
  if (done != 1 || raft_state(r) != RAFT_LEADER) return -1;
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(c->s[li].cal, &info, NULL), 0);
  c->leader = r->id;
  c->leader_term = r->current_term;
  c->proposed = info.empty ? GENESIS - 1 : info.last;
  return (int)li;
}

/* The leader proposes the next second with k request leaves (0: empty). */
static bool propose(cluster_t *c, size_t k) {
  int li = ready_leader(c);
  if (li < 0) return false;
  uint64_t second = c->proposed + 1 + (rnd(c) % 4 == 0); /* sometimes a second is skipped: filled empty */
  kl_core_leaf_t leaves[8];
  kl_imprint_t root;
  for (size_t i = 0; i < k; i++) {
    uint64_t x = second * 10 + i;
    kl_hash(KL_HASH_SHA256, &x, sizeof x, &leaves[i].imprint, NULL);
    leaves[i].level = 3;
    leaves[i].origin = (uint64_t)li + 1;
    leaves[i].request_id = x;
  }
  if (k) kl_hash(KL_HASH_SHA256, leaves, sizeof leaves[0] * k, &root, NULL); /* stands in for the tree root */
  struct raft_buffer buf;
  kl_err_t e = {0};
  assert_int_equal(kl_core_entry_encode(second, 0, leaves, k, k ? &root : NULL, KL_HASH_SHA256, &buf, &e), 0);
  struct raft_apply *req = malloc(sizeof *req);
  if (raft_apply(raft_fixture_get(&c->f, (unsigned)li), req, &buf, 1, apply_cb) != 0) {
    raft_free(buf.base);
    free(req);
    return false;
  }
  c->proposed = second;
  return true;
}

/* ---- the checks ---- */

static void check_no_fork(cluster_t *c, uint64_t min_seconds) {
  kl_cal_info_t ref = {0}, info;
  int best = -1;
  for (unsigned i = 0; i < c->n; i++) {
    assert_int_equal(kl_cal_info(c->s[i].cal, &info, NULL), 0);
    assert_int_equal(c->s[i].fsm.state, KL_FSM_OK);
    if (!info.empty && (best < 0 || info.last > ref.last)) {
      best = (int)i;
      ref = info;
    }
  }
  assert_true(best >= 0);
  if (getenv("KL_TEST_VERBOSE"))
    fprintf(stderr, "seed %llu: %llu seconds committed, server 0 announced %zu\n", (unsigned long long)c->seed0,
            (unsigned long long)(ref.last - GENESIS + 1), c->s[0].n_seen);
  assert_true(ref.last + 1 >= GENESIS + min_seconds); /* the scenario did commit what it should */
  for (unsigned i = 0; i < c->n; i++) {
    kl_cal_audit_t rep;
    kl_err_t e = {0};
    if (kl_cal_audit(c->s[i].cal, NULL, &rep, &e)) fail_msg("server %u: %s", i, e.msg); /* no hole */
    assert_int_equal(kl_cal_info(c->s[i].cal, &info, NULL), 0);
    for (uint64_t t = GENESIS; !info.empty && t <= info.last; t++) {
      kl_imprint_t a, b;
      assert_int_equal(kl_cal_leaf(c->s[i].cal, t, &a, NULL), 0);
      assert_int_equal(kl_cal_leaf(c->s[best].cal, t, &b, NULL), 0);
      if (!kl_imprint_eq(&a, &b)) fail_msg("fork at second %llu between servers %u and %d", (unsigned long long)t, i, best);
    }
    /* Every announced round is what the calendar holds, and announcements only go forward. */
    uint64_t prev = 0;
    for (size_t k = 0; k < c->s[i].n_seen; k++) {
      const announced_t *a = &c->s[i].seen[k];
      kl_imprint_t stored;
      assert_int_equal(kl_cal_leaf(c->s[i].cal, a->second, &stored, NULL), 0);
      assert_true(kl_imprint_eq(&stored, &a->leaf));
      if (a->second <= prev) fail_msg("server %u announced %llu after %llu", i, (unsigned long long)a->second, (unsigned long long)prev);
      prev = a->second;
    }
  }
}

/* Heals everything and waits until every server has applied the leader's log. */
static void settle(cluster_t *c) {
  for (unsigned i = 0; i < c->n; i++) {
    if (!raft_fixture_alive(&c->f, i)) raft_fixture_revive(&c->f, i);
    for (unsigned j = 0; j < c->n; j++)
      if (i != j) raft_fixture_reconnect(&c->f, i, j);
  }
  assert_true(raft_fixture_step_until_has_leader(&c->f, 60000));
  assert_true(propose(c, 1)); /* an entry of the current term commits everything before it */
  unsigned li = raft_fixture_leader_index(&c->f);
  raft_index idx = raft_last_index(raft_fixture_get(&c->f, li));
  assert_true(raft_fixture_step_until_applied(&c->f, c->n, idx, 60000));
}

/* ---- scenarios ---- */

static void test_steady(void **state) {
  (void)state;
  cluster_t c;
  start(&c, 3, 1);
  assert_true(raft_fixture_step_until_has_leader(&c.f, 10000));
  for (int s = 0; s < 30; s++) {
    assert_true(propose(&c, (size_t)(s % 4)));
    raft_fixture_step_until_elapsed(&c.f, 100);
  }
  settle(&c);
  check_no_fork(&c, 31);
  assert_true(c.s[0].n_seen >= 24);
  stop(&c);
}

static void test_leader_loss_mid_round(void **state) {
  (void)state;
  cluster_t c;
  start(&c, 3, 2);
  assert_true(raft_fixture_step_until_has_leader(&c.f, 10000));
  for (int round = 0; round < 6; round++) {
    for (int s = 0; s < 5; s++) {
      propose(&c, 2);
      raft_fixture_step_until_elapsed(&c.f, 50);
    }
    unsigned li = raft_fixture_leader_index(&c.f);
    propose(&c, 3);                 /* in flight ... */
    raft_fixture_step_n(&c.f, 2);   /* ... barely started */
    if (li < c.n) raft_fixture_kill(&c.f, li);
    raft_fixture_step_until_has_leader(&c.f, 10000);
    for (int s = 0; s < 3; s++) {
      propose(&c, 1);
      raft_fixture_step_until_elapsed(&c.f, 50);
    }
    if (li < c.n) raft_fixture_revive(&c.f, li);
  }
  settle(&c);
  check_no_fork(&c, 30);
  stop(&c);
}

static void test_partitions(void **state) {
  (void)state;
  cluster_t c;
  start(&c, 5, 3);
  assert_true(raft_fixture_step_until_has_leader(&c.f, 10000));
  for (int s = 0; s < 5; s++) propose(&c, 1), raft_fixture_step_until_elapsed(&c.f, 100);
  /* Minority partition: the old leader with one follower; the majority goes on. */
  unsigned li = raft_fixture_leader_index(&c.f), buddy = (li + 1) % 5;
  for (unsigned i = 0; i < 5; i++)
    if (i != li && i != buddy) {
      raft_fixture_disconnect(&c.f, li, i);
      raft_fixture_disconnect(&c.f, buddy, i);
    }
  for (int s = 0; s < 5; s++) propose(&c, 2), raft_fixture_step_until_elapsed(&c.f, 200); /* cannot commit */
  raft_fixture_step_until_elapsed(&c.f, 3000);
  for (int s = 0; s < 10; s++) propose(&c, 1), raft_fixture_step_until_elapsed(&c.f, 200);
  settle(&c);
  check_no_fork(&c, 15);
  stop(&c);
}

/* A server down while the others snapshot and truncate their logs comes back from a thin
 * snapshot, catches up through the replication protocol, then applies the queued entries. */
static void test_restart_from_snapshot(void **state) {
  (void)state;
  cluster_t c;
  start(&c, 3, 4);
  for (unsigned i = 0; i < 3; i++) {
    raft_set_snapshot_threshold(raft_fixture_get(&c.f, i), 8);
    raft_set_snapshot_trailing(raft_fixture_get(&c.f, i), 2);
  }
  assert_true(raft_fixture_step_until_has_leader(&c.f, 10000));
  for (int s = 0; s < 4; s++) propose(&c, 1), raft_fixture_step_until_elapsed(&c.f, 100);
  unsigned li = raft_fixture_leader_index(&c.f), down = (li + 1) % 3;
  raft_fixture_kill(&c.f, down);
  for (int s = 0; s < 40; s++) propose(&c, 2), raft_fixture_step_until_elapsed(&c.f, 100);
  raft_fixture_revive(&c.f, down);
  /* Step until the revived server has restored a snapshot beyond its calendar. */
  for (int k = 0; k < 20000 && c.s[down].fsm.state != KL_FSM_CATCHING_UP; k++) raft_fixture_step(&c.f);
  assert_int_equal(c.s[down].fsm.state, KL_FSM_CATCHING_UP);
  for (int s = 0; s < 3; s++) propose(&c, 1), raft_fixture_step_until_elapsed(&c.f, 100); /* queued meanwhile */
  /* Catch up from the leader's calendar via replication messages. */
  unsigned from = raft_fixture_leader_index(&c.f);
  kl_cal_info_t have, src;
  kl_err_t e = {0};
  assert_int_equal(kl_cal_info(c.s[down].cal, &have, NULL), 0);
  assert_int_equal(kl_cal_info(c.s[from].cal, &src, NULL), 0);
  kl_buf_t b = KL_BUF_INIT;
  uint64_t first = have.empty ? GENESIS : have.last + 1;
  assert_int_equal(kl_repl_encode_entries(&b, c.s[from].cal, first, c.s[down].fsm.target, &e), 0);
  size_t n, applied;
  int is_sub;
  kl_repl_subscribe_t sub;
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  if (kl_repl_handle(b.p + KL_FRAME_HDR, n, c.s[down].cal, &sub, &is_sub, &applied, &e)) fail_msg("%s", e.msg);
  kl_buf_free(&b);
  if (kl_core_fsm_caught_up(&c.s[down].fsm, &e)) fail_msg("%s", e.msg);
  settle(&c);
  check_no_fork(&c, 45);
  stop(&c);
}

/* Seeded random faults: kills, revivals, disconnections and proposals. A failing seed replays. */
static void test_random_faults(void **state) {
  (void)state;
  for (uint64_t seed = 100; seed < 106; seed++) {
    cluster_t c;
    start(&c, 3, seed);
    raft_fixture_step_until_has_leader(&c.f, 10000);
    for (int step = 0; step < 150; step++) {
      unsigned a = (unsigned)(rnd(&c) % 3), b = (unsigned)(rnd(&c) % 3);
      switch (rnd(&c) % 8) {
        case 0:
          if (raft_fixture_alive(&c.f, a)) raft_fixture_kill(&c.f, a);
          break;
        case 1: if (!raft_fixture_alive(&c.f, a)) raft_fixture_revive(&c.f, a); break;
        case 2: if (a != b) raft_fixture_disconnect(&c.f, a, b); break;
        case 3: if (a != b) raft_fixture_reconnect(&c.f, a, b); break;
        default: propose(&c, (size_t)(rnd(&c) % 3)); break;
      }
      raft_fixture_step_until_elapsed(&c.f, 50 + rnd(&c) % 300);
    }
    settle(&c);
    check_no_fork(&c, 1);
    stop(&c);
  }
}

/* A slow disk on one follower, a slow network to another, and links that drop messages for a
 * while (saturated), toggled at random from a seed. */
static void test_slow_disk_and_lossy_links(void **state) {
  (void)state;
  cluster_t c;
  start(&c, 3, 7);
  raft_fixture_set_disk_latency(&c.f, 1, 300);
  raft_fixture_set_network_latency(&c.f, 2, 150);
  assert_true(raft_fixture_step_until_has_leader(&c.f, 20000));
  for (int step = 0; step < 120; step++) {
    unsigned a = (unsigned)(rnd(&c) % 3), b = (unsigned)(rnd(&c) % 3);
    if (a != b) {
      if (rnd(&c) % 2) raft_fixture_saturate(&c.f, a, b);
      else raft_fixture_desaturate(&c.f, a, b);
    }
    propose(&c, (size_t)(rnd(&c) % 3));
    raft_fixture_step_until_elapsed(&c.f, 100 + rnd(&c) % 200);
  }
  for (unsigned i = 0; i < 3; i++)
    for (unsigned j = 0; j < 3; j++)
      if (i != j) raft_fixture_desaturate(&c.f, i, j);
  raft_fixture_set_disk_latency(&c.f, 1, 10);
  raft_fixture_set_network_latency(&c.f, 2, 10);
  settle(&c);
  check_no_fork(&c, 10);
  stop(&c);
}

/* Entries read back from Raft's segment files may carry padding after the bytes written. */
static void test_padded_entry(void **state) {
  (void)state;
  static server_t s; /* zeroed: it is large */
  kl_err_t e = {0};
  open_server(&s, 9);
  kl_core_leaf_t leaf;
  kl_imprint_t root;
  kl_hash(KL_HASH_SHA256, "x", 1, &leaf.imprint, NULL);
  leaf.level = 0;
  leaf.origin = 1;
  leaf.request_id = 5;
  kl_hash(KL_HASH_SHA256, "r", 1, &root, NULL);
  struct raft_buffer buf;
  assert_int_equal(kl_core_entry_encode(GENESIS + 3, 0, &leaf, 1, &root, KL_HASH_SHA256, &buf, &e), 0);
  struct raft_buffer padded = {raft_malloc(buf.len + 7), buf.len + 7};
  memcpy(padded.base, buf.base, buf.len);
  memset((uint8_t *)padded.base + buf.len, 0, 7);
  void *result;
  assert_int_equal(s.fsm.raft.apply(&s.fsm.raft, &padded, &result), 0);
  assert_int_equal(s.fsm.state, KL_FSM_OK);
  kl_imprint_t got;
  assert_int_equal(kl_cal_leaf(s.cal, GENESIS + 3, &got, NULL), 0);
  assert_true(kl_imprint_eq(&got, &root));
  assert_int_equal(s.n_seen, 1);
  raft_free(buf.base);
  raft_free(padded.base);
  kl_core_fsm_close(&s.fsm);
  kl_cal_close(s.cal);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_steady),
      cmocka_unit_test(test_leader_loss_mid_round),
      cmocka_unit_test(test_partitions),
      cmocka_unit_test(test_restart_from_snapshot),
      cmocka_unit_test(test_random_faults),
      cmocka_unit_test(test_slow_disk_and_lossy_links),
      cmocka_unit_test(test_padded_entry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
