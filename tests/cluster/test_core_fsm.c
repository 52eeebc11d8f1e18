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
  raft_index proposed_index; /* its Raft index */
  uint64_t seed, seed0;
  unsigned catch_ups; /* for KL_TEST_VERBOSE */
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

static void remove_servers(cluster_t *c);

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
  remove_servers(c);
}

/* Closes the calendars and removes their directories. */
static void remove_servers(cluster_t *c) {
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
  if (c->leader == r->id && c->leader_term == r->current_term && c->s[li].fsm.state == KL_FSM_OK) return (int)li;
  struct raft_barrier b;
  int done = 0;
  b.data = &done;
  if (raft_barrier(r, &b, barrier_cb) != 0) return -1;
  for (int k = 0; k < 2000 && done == 0; k++) raft_fixture_step(&c->f);
  if (done != 1 || raft_state(r) != RAFT_LEADER) return -1;
  if (c->s[li].fsm.state != KL_FSM_OK) return -1; /* catching up: its calendar is behind */
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
  c->proposed_index = raft_last_index(raft_fixture_get(&c->f, (unsigned)li));
  return true;
}

/* A server that libraft stopped for good after a disk fault (as a crashed node that never comes
 * back): its calendar must still be a prefix of the others', but it applies nothing more. */
static bool down(cluster_t *c, unsigned i) { return raft_state(raft_fixture_get(&c->f, i)) == RAFT_UNAVAILABLE; }

/* A server that restored a snapshot beyond its calendar fetches the missing seconds from a
 * live server that has them (as the daemon does over the replication protocol), then applies
 * what Raft queued meanwhile. */
static void catch_up(cluster_t *c) {
  for (unsigned i = 0; i < c->n; i++) {
    server_t *s = &c->s[i];
    if (s->fsm.state != KL_FSM_CATCHING_UP || !raft_fixture_alive(&c->f, i) || down(c, i)) continue;
    kl_cal_info_t have, src;
    assert_int_equal(kl_cal_info(s->cal, &have, NULL), 0);
    for (unsigned j = 0; j < c->n; j++) {
      if (j == i || c->s[j].fsm.state != KL_FSM_OK || !raft_fixture_alive(&c->f, j) || down(c, j)) continue;
      assert_int_equal(kl_cal_info(c->s[j].cal, &src, NULL), 0);
      if (src.empty || src.last < s->fsm.target) continue;
      uint64_t first = have.empty ? GENESIS : have.last + 1;
      kl_err_t e = {0};
      if (first <= s->fsm.target) {
        kl_buf_t b = KL_BUF_INIT;
        size_t n, applied;
        int is_sub;
        kl_repl_subscribe_t sub;
        if (kl_repl_encode_entries(&b, c->s[j].cal, first, s->fsm.target, &e)) fail_msg("server %u: %s", j, e.msg);
        assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
        if (kl_repl_handle(b.p + KL_FRAME_HDR, n, s->cal, &sub, &is_sub, &applied, &e))
          fail_msg("server %u catching up from %u: %s", i, j, e.msg);
        kl_buf_free(&b);
      }
      if (kl_core_fsm_caught_up(&s->fsm, &e)) fail_msg("server %u caught up from %u: %s", i, j, e.msg);
      c->catch_ups++;
      break;
    }
  }
}

/* A server stopped by a disk fault is a crashed node: dead for the fixture (which otherwise
 * waits for it to acknowledge the leader), and never revived. */
static void bury(cluster_t *c) {
  for (unsigned i = 0; i < c->n; i++)
    if (down(c, i) && raft_fixture_alive(&c->f, i)) raft_fixture_kill(&c->f, i);
}

static void step_for(cluster_t *c, unsigned msecs) {
  raft_fixture_step_until_elapsed(&c->f, msecs);
  bury(c);
  catch_up(c);
}

/* ---- the checks ---- */

static void check_no_fork(cluster_t *c, uint64_t min_seconds) {
  kl_cal_info_t ref = {0}, info;
  int best = -1;
  for (unsigned i = 0; i < c->n; i++) {
    assert_int_equal(kl_cal_info(c->s[i].cal, &info, NULL), 0);
    if (c->s[i].fsm.state == KL_FSM_FAILED) fail_msg("server %u: %s", i, c->s[i].fsm.error);
    if (!down(c, i)) assert_int_equal(c->s[i].fsm.state, KL_FSM_OK);
    if (!info.empty && (best < 0 || info.last > ref.last)) {
      best = (int)i;
      ref = info;
    }
  }
  assert_true(best >= 0);
  if (getenv("KL_TEST_VERBOSE")) {
    unsigned n_down = 0;
    for (unsigned i = 0; i < c->n; i++) n_down += down(c, i);
    fprintf(stderr, "seed %llu: %u servers (%u stopped by disk faults), %u catch-ups from snapshots, %llu seconds committed, server 0 announced %zu\n",
            (unsigned long long)c->seed0, c->n, n_down, c->catch_ups, (unsigned long long)(ref.last - GENESIS + 1), c->s[0].n_seen);
  }
  assert_true(ref.last + 1 >= GENESIS + min_seconds); /* the scenario did commit what it should */
  for (unsigned i = 0; i < c->n; i++) {
    kl_cal_audit_t rep;
    kl_err_t e = {0};
    assert_int_equal(kl_cal_info(c->s[i].cal, &info, NULL), 0);
    /* Every server that runs has everything; one that stopped has a prefix. */
    if (!down(c, i) && (info.empty || info.last != ref.last))
      fail_msg("server %u has %llu seconds, server %d has %llu", i, (unsigned long long)(info.empty ? 0 : info.last - GENESIS + 1),
               best, (unsigned long long)(ref.last - GENESIS + 1));
    if (kl_cal_audit(c->s[i].cal, NULL, &rep, &e)) fail_msg("server %u: %s", i, e.msg); /* no hole */
    for (uint64_t t = GENESIS; !info.empty && t <= info.last; t++) {
      kl_imprint_t a, b;
      assert_int_equal(kl_cal_leaf(c->s[i].cal, t, &a, NULL), 0);
      assert_int_equal(kl_cal_leaf(c->s[best].cal, t, &b, NULL), 0);
      if (!kl_imprint_eq(&a, &b)) fail_msg("fork at second %llu between servers %u and %d", (unsigned long long)t, i, best);
    }
    /* No acknowledged second lost: every second a server announced (and so may have answered
     * clients for) is in the final calendar with the same leaf, and announcements only go
     * forward. */
    uint64_t prev = 0;
    for (size_t k = 0; k < c->s[i].n_seen; k++) {
      const announced_t *a = &c->s[i].seen[k];
      kl_imprint_t stored;
      if (a->second > ref.last || kl_cal_leaf(c->s[best].cal, a->second, &stored, NULL) || !kl_imprint_eq(&stored, &a->leaf))
        fail_msg("server %u announced second %llu, which the final calendar lacks or holds differently", i,
                 (unsigned long long)a->second);
      if (a->second <= prev) fail_msg("server %u announced %llu after %llu", i, (unsigned long long)a->second, (unsigned long long)prev);
      prev = a->second;
    }
  }
}

/* One line about every server, for failure messages. Valid until the next call. */
static const char *describe(cluster_t *c) {
  static char out[512];
  static const char *role[] = {"unavailable", "follower", "candidate", "leader"};
  size_t o = 0;
  for (unsigned i = 0; i < c->n && o < sizeof out; i++) {
    struct raft *r = raft_fixture_get(&c->f, i);
    kl_cal_info_t info = {0};
    kl_cal_info(c->s[i].cal, &info, NULL);
    o += (size_t)snprintf(out + o, sizeof out - o, "%s[%u %s%s term %llu applied %llu fsm %d last %llu]", i ? " " : "", i,
                          role[raft_state(r) & 3], raft_fixture_alive(&c->f, i) ? "" : " dead",
                          (unsigned long long)r->current_term, (unsigned long long)raft_last_applied(r), c->s[i].fsm.state,
                          (unsigned long long)(info.empty ? 0 : info.last - GENESIS + 1));
  }
  return out;
}

/* Heals everything and waits until every server has applied the leader's log (and caught up
 * if it restored a snapshot). */
static void settle(cluster_t *c) {
  bury(c);
  for (unsigned i = 0; i < c->n; i++) {
    if (!raft_fixture_alive(&c->f, i) && !down(c, i)) raft_fixture_revive(&c->f, i);
    for (unsigned j = 0; j < c->n; j++)
      if (i != j) {
        raft_fixture_reconnect(&c->f, i, j);
        raft_fixture_desaturate(&c->f, i, j);
      }
  }
  bool leader = false;
  for (int k = 0; k < 60 && !leader; k++) { /* a pending disk fault may still stop a server */
    leader = raft_fixture_step_until_has_leader(&c->f, 1000);
    bury(c);
  }
  if (!leader) fail_msg("no leader after healing: %s", describe(c));
  /* An entry of the current term commits everything before it; a leader may still be deposed
   * before it commits, then the next one proposes again. */
  for (int attempt = 0; attempt < 20; attempt++) {
    bool proposed = false;
    for (int k = 0; k < 200 && !proposed; k++) {
      catch_up(c);
      if (!(proposed = propose(c, 1))) step_for(c, 100);
    }
    if (!proposed) fail_msg("no leader accepts an entry after healing: %s", describe(c));
    raft_index idx = c->proposed_index;
    bool applied = false;
    for (int k = 0; k < 10 && !applied; k++) {
      bury(c);
      applied = true;
      for (unsigned i = 0; i < c->n; i++)
        if (!down(c, i) && !raft_fixture_step_until_applied(&c->f, i, idx, 1000)) applied = false;
      catch_up(c);
    }
    if (applied) return;
  }
  fail_msg("not applied everywhere after healing: %s", describe(c));
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

/* ---- seeded random faults ----
 *
 * One cmocka test per seed. Each seed draws a cluster: 3 or 5 servers, disk and network
 * latencies, for half the seeds snapshots every 8 to 36 entries (so that a lagging server comes
 * back from a thin snapshot and catches up through the replication protocol), and for a
 * quarter of them disk write failures on a minority of servers. Then STEPS random steps:
 * kills, revivals, disconnections, lossy links, disk faults and proposals. Every seed ends with
 * settle and check_no_fork: no fork (identical calendars, no hole) and no acknowledged second
 * lost (every second any server announced is in the final calendar with the same leaf).
 *
 * KL_FSM_SEEDS=N runs N seeds (default 50) from KL_FSM_SEED_FROM (default 100);
 * KL_FSM_SEED=S runs only seed S (and no other test); a failing seed prints the command that
 * replays it. scripts/fsm-seeds.sh runs many seeds within a time bound.
 *
 * KL_FSM_TRAILING=T (default 16) is the least number of entries a snapshot leaves in the log
 * (each seed adds 0 to 7). With fewer, libraft 0.15 itself crashes now and then (a NULL
 * dereference in its log code, in about 1 seed in 150 with 1 to 11), so the default stays
 * above that; lower it to reproduce. */
#define STEPS 150

typedef struct seed_case {
  uint64_t seed;
  bool passed;
  char name[40];
} seed_case_t;

/* Disk faults: libraft's fixture can inject I/O errors (raft_fixture_io_fault), but into any
 * request, sends included, and libraft 0.15 then frees a failed send twice. So the harness wraps
 * each server's disk methods instead and fails its next writes when asked: append, truncate,
 * snapshot_put, set_term and set_vote return RAFT_IOERR without reaching the fixture. */
static struct disk_fault {
  struct raft_io *io;
  struct raft_io stub; /* the fixture's methods */
  unsigned fail;       /* writes still to fail */
} faults[N_MAX];

static struct disk_fault *fault_of(struct raft_io *io) {
  for (unsigned i = 0; i < N_MAX; i++)
    if (faults[i].io == io) return &faults[i];
  abort();
}
static bool fault_now(struct disk_fault *d) { return d->fail > 0 && d->fail-- > 0; }
static int f_set_term(struct raft_io *io, raft_term t) {
  struct disk_fault *d = fault_of(io);
  return fault_now(d) ? RAFT_IOERR : d->stub.set_term(io, t);
}
static int f_set_vote(struct raft_io *io, raft_id v) {
  struct disk_fault *d = fault_of(io);
  return fault_now(d) ? RAFT_IOERR : d->stub.set_vote(io, v);
}
static int f_append(struct raft_io *io, struct raft_io_append *req, const struct raft_entry e[], unsigned n,
                    raft_io_append_cb cb) {
  struct disk_fault *d = fault_of(io);
  return fault_now(d) ? RAFT_IOERR : d->stub.append(io, req, e, n, cb);
}
static int f_truncate(struct raft_io *io, raft_index x) {
  struct disk_fault *d = fault_of(io);
  return fault_now(d) ? RAFT_IOERR : d->stub.truncate(io, x);
}
static int f_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                          const struct raft_snapshot *snap, raft_io_snapshot_put_cb cb) {
  struct disk_fault *d = fault_of(io);
  return fault_now(d) ? RAFT_IOERR : d->stub.snapshot_put(io, trailing, req, snap, cb);
}

static void wrap_disks(cluster_t *c) {
  memset(faults, 0, sizeof faults);
  for (unsigned i = 0; i < c->n; i++) {
    struct raft_io *io = raft_fixture_get(&c->f, i)->io;
    faults[i].io = io;
    faults[i].stub = *io;
    io->set_term = f_set_term;
    io->set_vote = f_set_vote;
    io->append = f_append;
    io->truncate = f_truncate;
    io->snapshot_put = f_snapshot_put;
  }
}

static cluster_t rf; /* large: not on the stack */
static bool rf_running;
static unsigned min_trailing = 16;

/* Runs after the test even when an assertion failed: the next seed starts clean. The failed
 * assertion may have jumped out of a libraft callback, so the fixture is left as it is (leaked)
 * rather than closed in an inconsistent state; the calendars are closed and removed. */
static int random_faults_teardown(void **state) {
  (void)state;
  if (rf_running) remove_servers(&rf);
  rf_running = false;
  return 0;
}

static void test_random_faults(void **state) {
  seed_case_t *sc = *state;
  cluster_t *c = &rf;
  unsigned n = (sc->seed * 0x9E3779B97F4A7C15ull) >> 62 == 0 ? 5 : 3;
  start(c, n, sc->seed);
  rf_running = true;
  wrap_disks(c);
  bool snapshots = rnd(c) % 2;
  for (unsigned i = 0; i < n; i++) {
    if (snapshots) {
      raft_set_snapshot_threshold(raft_fixture_get(&c->f, i), 8 + (unsigned)(rnd(c) % 29));
      raft_set_snapshot_trailing(raft_fixture_get(&c->f, i), min_trailing + (unsigned)(rnd(c) % 8));
    }
    if (rnd(c) % 3 == 0) raft_fixture_set_disk_latency(&c->f, i, 5 + (unsigned)(rnd(c) % 200));
    if (rnd(c) % 3 == 0) raft_fixture_set_network_latency(&c->f, i, 5 + (unsigned)(rnd(c) % 100));
  }
  bool disk_faults = rnd(c) % 4 == 0;
  unsigned broken = 0; /* servers given disk faults: at most a minority */
  raft_fixture_step_until_has_leader(&c->f, 10000);
  for (int step = 0; step < STEPS; step++) {
    unsigned a = (unsigned)(rnd(c) % n), b = (unsigned)(rnd(c) % n);
    switch (rnd(c) % 12) {
      case 0:
        if (raft_fixture_alive(&c->f, a)) raft_fixture_kill(&c->f, a);
        break;
      case 1: if (!raft_fixture_alive(&c->f, a) && !down(c, a)) raft_fixture_revive(&c->f, a); break;
      case 2: if (a != b) raft_fixture_disconnect(&c->f, a, b); break;
      case 3: if (a != b) raft_fixture_reconnect(&c->f, a, b); break;
      case 4:
        if (a != b) {
          if (rnd(c) % 2) raft_fixture_saturate(&c->f, a, b); /* drops everything from a to b */
          else raft_fixture_desaturate(&c->f, a, b);
        }
        break;
      case 5: /* failed disk writes: libraft may then stop the server for good (UNAVAILABLE) */
        if (disk_faults && rnd(c) % 4 == 0 && (unsigned)__builtin_popcount(broken | 1u << a) <= (n - 1) / 2) {
          broken |= 1u << a;
          faults[a].fail += 1 + (unsigned)(rnd(c) % 2);
        }
        break;
      default: propose(c, (size_t)(rnd(c) % 4)); break;
    }
    step_for(c, 50 + (unsigned)(rnd(c) % 300));
  }
  settle(c);
  check_no_fork(c, 1);
  rf_running = false;
  stop(c);
  sc->passed = true;
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

static bool env_u64(const char *name, uint64_t *out) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return false;
  char *end;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end != '\0') {
    fprintf(stderr, "%s=%s: not a number\n", name, v);
    exit(2);
  }
  *out = x;
  return true;
}

int main(int argc, char **argv) {
  (void)argc;
  const struct CMUnitTest fixed[] = {
      cmocka_unit_test(test_steady),
      cmocka_unit_test(test_leader_loss_mid_round),
      cmocka_unit_test(test_partitions),
      cmocka_unit_test(test_restart_from_snapshot),
      cmocka_unit_test(test_slow_disk_and_lossy_links),
      cmocka_unit_test(test_padded_entry),
  };
  size_t n_fixed = sizeof fixed / sizeof fixed[0];
  uint64_t from = 100, count = 50, one;
  if (env_u64("KL_FSM_SEED", &one)) { /* replay exactly one seed */
    from = one;
    count = 1;
    n_fixed = 0;
  } else {
    env_u64("KL_FSM_SEED_FROM", &from);
    env_u64("KL_FSM_SEEDS", &count);
  }
  uint64_t trailing;
  if (env_u64("KL_FSM_TRAILING", &trailing)) min_trailing = trailing ? (unsigned)trailing : 1;
  seed_case_t *cases = calloc(count ? count : 1, sizeof *cases);
  struct CMUnitTest *tests = calloc(n_fixed + count, sizeof *tests);
  if (cases == NULL || tests == NULL) return 2;
  memcpy(tests, fixed, n_fixed * sizeof *tests);
  for (uint64_t k = 0; k < count; k++) {
    cases[k].seed = from + k;
    snprintf(cases[k].name, sizeof cases[k].name, "random_faults/seed=%llu", (unsigned long long)(from + k));
    tests[n_fixed + k] = (struct CMUnitTest){cases[k].name, test_random_faults, NULL, random_faults_teardown, &cases[k]};
  }
  int rc = _cmocka_run_group_tests("cluster_test_core_fsm", tests, n_fixed + count, NULL, NULL);
  uint64_t failed = 0;
  for (uint64_t k = 0; k < count; k++)
    if (!cases[k].passed) {
      if (failed++ == 0) fprintf(stderr, "\nFailing seeds; replay each with:\n");
      char extra[40] = "";
      if (min_trailing != 16) snprintf(extra, sizeof extra, "KL_FSM_TRAILING=%u ", min_trailing);
      fprintf(stderr, "  %sKL_FSM_SEED=%llu %s\n", extra, (unsigned long long)cases[k].seed, argv[0]);
    }
  fprintf(stderr, "random faults: %llu seed(s) from %llu, %llu failed\n", (unsigned long long)count,
          (unsigned long long)from, (unsigned long long)failed);
  free(tests);
  free(cases);
  return rc != 0 || failed != 0;
}
