/* The core's Raft guard (core/src/raft_guard.h): kl_raft_guard_check on a struct raft whose
 * configuration and term are set by hand, one rule at a time (members only, and anyone while
 * the configuration is empty; terms at most KL_GUARD_TERM_JUMP ahead and below KL_GUARD_MAX;
 * indexes below KL_GUARD_MAX; a RequestVote only for its sender; no entry term after the
 * message's; a bounded entry count; known types only), normal messages of every type accepted;
 * kl_raft_guard_free_message on messages laid out the way libraft's decoder allocates them
 * (ASan proves nothing leaks); and the forwarding raft_io, which passes good messages on and
 * drops, counts and frees bad ones. */
#include <raft.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/log.h"
#include "raft_guard.h"
#include "testutil.h"

#define TERM 5

static struct raft R;

/* A raft with members 1, 2, 3 (0: empty configuration) at term TERM. */
static void raft_with(unsigned members) {
  memset(&R, 0, sizeof R);
  raft_configuration_init(&R.configuration);
  for (unsigned id = 1; id <= members; id++) {
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", 9000 + id);
    assert_int_equal(raft_configuration_add(&R.configuration, id, addr, RAFT_VOTER), 0);
  }
  R.current_term = TERM;
}

static int setup(void **state) {
  (void)state;
  raft_with(3);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  raft_configuration_close(&R.configuration);
  return 0;
}

/* A sane message of each type from `from` at `term`. */
static struct raft_message msg(unsigned short type, raft_id from, raft_term term) {
  struct raft_message m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.server_id = from;
  m.server_address = "127.0.0.1:9002";
  switch (type) {
    case RAFT_IO_APPEND_ENTRIES:
      m.append_entries.term = term;
      m.append_entries.prev_log_index = 10;
      m.append_entries.prev_log_term = term > 1 ? term - 1 : term;
      m.append_entries.leader_commit = 9;
      break;
    case RAFT_IO_APPEND_ENTRIES_RESULT:
      m.append_entries_result.term = term;
      m.append_entries_result.rejected = 0;
      m.append_entries_result.last_log_index = 10;
      break;
    case RAFT_IO_REQUEST_VOTE:
      m.request_vote.term = term;
      m.request_vote.candidate_id = from;
      m.request_vote.last_log_index = 10;
      m.request_vote.last_log_term = term > 1 ? term - 1 : term;
      break;
    case RAFT_IO_REQUEST_VOTE_RESULT:
      m.request_vote_result.term = term;
      m.request_vote_result.vote_granted = true;
      break;
    case RAFT_IO_INSTALL_SNAPSHOT:
      m.install_snapshot.term = term;
      m.install_snapshot.last_index = 100;
      m.install_snapshot.last_term = term > 1 ? term - 1 : term;
      m.install_snapshot.conf_index = 50;
      break;
    case RAFT_IO_TIMEOUT_NOW:
      m.timeout_now.term = term;
      m.timeout_now.last_log_index = 10;
      m.timeout_now.last_log_term = term > 1 ? term - 1 : term;
      break;
    default: break;
  }
  return m;
}

static const unsigned short TYPES[] = {RAFT_IO_APPEND_ENTRIES,      RAFT_IO_APPEND_ENTRIES_RESULT,
                                       RAFT_IO_REQUEST_VOTE,        RAFT_IO_REQUEST_VOTE_RESULT,
                                       RAFT_IO_INSTALL_SNAPSHOT,    RAFT_IO_TIMEOUT_NOW};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

/* Accepted: NULL. */
static void expect_ok(const struct raft_message *m, int line) {
  int reason = -1;
  const char *why = kl_raft_guard_check(&R, m, &reason);
  if (why) fail_msg("line %d: type %u from %llu refused: %s", line, m->type, (unsigned long long)m->server_id, why);
}

/* Refused for `reason`, the message containing `needle`. */
static void expect_refused(const struct raft_message *m, int reason, const char *needle, int line) {
  int got = -1;
  const char *why = kl_raft_guard_check(&R, m, &got);
  if (why == NULL) fail_msg("line %d: type %u from %llu accepted", line, m->type, (unsigned long long)m->server_id);
  if (got != reason) fail_msg("line %d: type %u refused for reason %d (%s), not %d", line, m->type, got, why, reason);
  if (needle && strstr(why, needle) == NULL) fail_msg("line %d: \"%s\" does not say \"%s\"", line, why, needle);
}
#define OK(m) expect_ok(&(m), __LINE__)
#define REFUSED(m, reason, needle) expect_refused(&(m), (reason), (needle), __LINE__)

/* ---- who may send ---- */

static void test_members(void **state) {
  (void)state;
  for (size_t t = 0; t < N_TYPES; t++) {
    for (raft_id id = 1; id <= 3; id++) {
      struct raft_message m = msg(TYPES[t], id, TERM);
      OK(m);
    }
    struct raft_message m = msg(TYPES[t], 4, TERM);
    REFUSED(m, KL_GUARD_NOT_MEMBER, "not a member");
    m = msg(TYPES[t], 1000000, TERM);
    REFUSED(m, KL_GUARD_NOT_MEMBER, "not a member");
    m = msg(TYPES[t], 0, TERM);
    REFUSED(m, KL_GUARD_BAD_SHAPE, "no sender");
  }
  /* a member removed from the configuration is refused from then on */
  raft_configuration_close(&R.configuration);
  raft_configuration_init(&R.configuration);
  assert_int_equal(raft_configuration_add(&R.configuration, 1, "a", RAFT_VOTER), 0);
  assert_int_equal(raft_configuration_add(&R.configuration, 3, "c", RAFT_STANDBY), 0);
  struct raft_message m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  REFUSED(m, KL_GUARD_NOT_MEMBER, NULL);
  m = msg(RAFT_IO_APPEND_ENTRIES, 3, TERM); /* a standby is a member */
  OK(m);
}

static void test_empty_configuration(void **state) {
  (void)state;
  raft_configuration_close(&R.configuration);
  raft_with(0);
  for (size_t t = 0; t < N_TYPES; t++) {
    struct raft_message m = msg(TYPES[t], 42, TERM);
    OK(m);
    m = msg(TYPES[t], 0, TERM); /* still no anonymous sender */
    REFUSED(m, KL_GUARD_BAD_SHAPE, NULL);
    m = msg(TYPES[t], 42, TERM + KL_GUARD_TERM_JUMP + 1); /* and the other rules still hold */
    REFUSED(m, KL_GUARD_BAD_TERM, NULL);
  }
}

/* ---- terms ---- */

static void test_terms(void **state) {
  (void)state;
  for (size_t t = 0; t < N_TYPES; t++) {
    struct raft_message m = msg(TYPES[t], 2, TERM + KL_GUARD_TERM_JUMP); /* as far as allowed */
    OK(m);
    m = msg(TYPES[t], 2, 1); /* stale terms are libraft's business */
    OK(m);
    m = msg(TYPES[t], 2, TERM + KL_GUARD_TERM_JUMP + 1);
    REFUSED(m, KL_GUARD_BAD_TERM, "term");
    m = msg(TYPES[t], 2, KL_GUARD_MAX);
    REFUSED(m, KL_GUARD_BAD_TERM, "term");
    m = msg(TYPES[t], 2, UINT64_MAX);
    REFUSED(m, KL_GUARD_BAD_TERM, "term");
  }
  /* near the ceiling: within the jump, but KL_GUARD_MAX itself is never taken */
  R.current_term = KL_GUARD_MAX - 10;
  for (size_t t = 0; t < N_TYPES; t++) {
    struct raft_message m = msg(TYPES[t], 3, KL_GUARD_MAX - 1);
    OK(m);
    m = msg(TYPES[t], 3, KL_GUARD_MAX);
    REFUSED(m, KL_GUARD_BAD_TERM, NULL);
    m = msg(TYPES[t], 3, KL_GUARD_MAX + 5);
    REFUSED(m, KL_GUARD_BAD_TERM, NULL);
  }
  /* a node that has not started a term yet (0) still takes a first real term */
  R.current_term = 0;
  struct raft_message m = msg(RAFT_IO_REQUEST_VOTE, 1, 1);
  OK(m);
  m = msg(RAFT_IO_REQUEST_VOTE, 1, KL_GUARD_TERM_JUMP + 1);
  REFUSED(m, KL_GUARD_BAD_TERM, NULL);
}

/* ---- indexes ---- */

static void test_indexes(void **state) {
  (void)state;
  const uint64_t big = KL_GUARD_MAX, ok = KL_GUARD_MAX - 1;
  struct raft_message m;
  /* every index field of every type, at the last allowed value and at the first refused one */
  for (int pass = 0; pass < 2; pass++) {
    uint64_t v = pass ? big : ok;
#define CASE(type, field)                                              \
  do {                                                                 \
    m = msg(type, 2, TERM);                                            \
    m.field = v;                                                       \
    if (pass) REFUSED(m, KL_GUARD_BAD_INDEX, "index");                 \
    else OK(m);                                                        \
  } while (0)
    CASE(RAFT_IO_APPEND_ENTRIES, append_entries.prev_log_index);
    CASE(RAFT_IO_APPEND_ENTRIES, append_entries.leader_commit);
    CASE(RAFT_IO_APPEND_ENTRIES_RESULT, append_entries_result.rejected);
    CASE(RAFT_IO_APPEND_ENTRIES_RESULT, append_entries_result.last_log_index);
    CASE(RAFT_IO_REQUEST_VOTE, request_vote.last_log_index);
    CASE(RAFT_IO_INSTALL_SNAPSHOT, install_snapshot.last_index);
    CASE(RAFT_IO_INSTALL_SNAPSHOT, install_snapshot.conf_index);
    CASE(RAFT_IO_TIMEOUT_NOW, timeout_now.last_log_index);
#undef CASE
  }
  m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  m.append_entries.prev_log_index = UINT64_MAX;
  REFUSED(m, KL_GUARD_BAD_INDEX, NULL);
  m = msg(RAFT_IO_TIMEOUT_NOW, 2, TERM);
  m.timeout_now.last_log_index = UINT64_MAX;
  REFUSED(m, KL_GUARD_BAD_INDEX, NULL);
  /* terms carried next to indexes: beyond the ceiling is refused either way */
  m = msg(RAFT_IO_REQUEST_VOTE, 2, TERM);
  m.request_vote.last_log_term = big;
  assert_non_null(kl_raft_guard_check(&R, &m, &(int){0}));
  m = msg(RAFT_IO_INSTALL_SNAPSHOT, 2, TERM);
  m.install_snapshot.last_term = big;
  assert_non_null(kl_raft_guard_check(&R, &m, &(int){0}));
  m = msg(RAFT_IO_TIMEOUT_NOW, 2, TERM);
  m.timeout_now.last_log_term = big;
  assert_non_null(kl_raft_guard_check(&R, &m, &(int){0}));
}

/* ---- shapes ---- */

static void test_request_vote_candidate(void **state) {
  (void)state;
  struct raft_message m = msg(RAFT_IO_REQUEST_VOTE, 2, TERM + 1);
  OK(m);
  m.request_vote.candidate_id = 3; /* member 2 asking votes for member 3 */
  REFUSED(m, KL_GUARD_BAD_SHAPE, "candidate");
  m.request_vote.candidate_id = 0;
  REFUSED(m, KL_GUARD_BAD_SHAPE, "candidate");
  m.request_vote.candidate_id = 99;
  REFUSED(m, KL_GUARD_BAD_SHAPE, "candidate");
  /* pre-votes follow the same rule */
  m = msg(RAFT_IO_REQUEST_VOTE, 1, TERM + 1);
  m.request_vote.pre_vote = true;
  OK(m);
  m.request_vote.candidate_id = 2;
  REFUSED(m, KL_GUARD_BAD_SHAPE, "candidate");
}

static void test_append_entries_terms(void **state) {
  (void)state;
  struct raft_entry e[3];
  memset(e, 0, sizeof e);
  e[0].term = TERM - 2;
  e[1].term = TERM - 1;
  e[2].term = TERM; /* the message's own term: fine */
  struct raft_message m = msg(RAFT_IO_APPEND_ENTRIES, 1, TERM);
  m.append_entries.entries = e;
  m.append_entries.n_entries = 3;
  OK(m);
  e[2].term = TERM + 1; /* an entry from after the leader's term */
  REFUSED(m, KL_GUARD_BAD_TERM, "entry");
  e[2].term = TERM;
  e[0].term = UINT64_MAX; /* anywhere in the batch */
  REFUSED(m, KL_GUARD_BAD_TERM, "entry");
  e[0].term = TERM - 2;
  OK(m);
  /* prev_log_term after the message's term */
  m.append_entries.prev_log_term = TERM + 1;
  REFUSED(m, KL_GUARD_BAD_TERM, "prev_log_term");
  m.append_entries.prev_log_term = TERM;
  OK(m);
  /* more entries than any sane batch: refused before they are looked at */
  m.append_entries.entries = NULL;
  m.append_entries.n_entries = KL_GUARD_MAX_ENTRIES + 1;
  REFUSED(m, KL_GUARD_BAD_SHAPE, "entries");
}

static void test_types(void **state) {
  (void)state;
  /* every type, normal values, from every member */
  for (size_t t = 0; t < N_TYPES; t++)
    for (raft_id id = 1; id <= 3; id++) {
      struct raft_message m = msg(TYPES[t], id, TERM);
      OK(m);
      m = msg(TYPES[t], id, TERM + 1); /* a new term, as after an election */
      OK(m);
    }
  /* a heartbeat: no entries */
  struct raft_message m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  m.append_entries.entries = NULL;
  m.append_entries.n_entries = 0;
  OK(m);
  /* a refusal answer */
  m = msg(RAFT_IO_APPEND_ENTRIES_RESULT, 3, TERM);
  m.append_entries_result.rejected = 11;
  OK(m);
  /* unknown types */
  static const unsigned short unknown[] = {0, RAFT_IO_TIMEOUT_NOW + 1, 255, 65535};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
    m.type = unknown[i];
    REFUSED(m, KL_GUARD_BAD_SHAPE, "type");
  }
}

/* ---- memory ---- */

/* An AppendEntries as libraft's decoder makes it: a raft_malloc'd entries array whose
 * entries point into one raft_malloc'd batch. */
static void fill_entries(struct raft_message *m, unsigned n) {
  size_t each = 24;
  uint8_t *batch = raft_malloc(n * each);
  struct raft_entry *e = raft_malloc(n * sizeof *e);
  assert_non_null(batch);
  assert_non_null(e);
  for (unsigned i = 0; i < n; i++) {
    memset(batch + i * each, (int)i, each);
    e[i].term = TERM;
    e[i].type = RAFT_COMMAND;
    e[i].buf.base = batch + i * each;
    e[i].buf.len = each;
    e[i].batch = batch;
  }
  m->append_entries.entries = e;
  m->append_entries.n_entries = n;
}

static void test_free_message(void **state) {
  (void)state;
  /* entries: the array and the one batch */
  struct raft_message m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  fill_entries(&m, 5);
  OK(m);
  kl_raft_guard_free_message(&m);
  m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  fill_entries(&m, 1);
  kl_raft_guard_free_message(&m);
  /* a heartbeat owns nothing */
  m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  kl_raft_guard_free_message(&m);
  /* a snapshot: its configuration and its data */
  m = msg(RAFT_IO_INSTALL_SNAPSHOT, 2, TERM);
  raft_configuration_init(&m.install_snapshot.conf);
  assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 1, "127.0.0.1:9001", RAFT_VOTER), 0);
  assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 2, "127.0.0.1:9002", RAFT_VOTER), 0);
  m.install_snapshot.data.len = 4096;
  m.install_snapshot.data.base = raft_malloc(4096);
  assert_non_null(m.install_snapshot.data.base);
  kl_raft_guard_free_message(&m);
  /* the other types own nothing: freeing is a no-op */
  for (size_t t = 0; t < N_TYPES; t++) {
    if (TYPES[t] == RAFT_IO_APPEND_ENTRIES || TYPES[t] == RAFT_IO_INSTALL_SNAPSHOT) continue;
    m = msg(TYPES[t], 2, TERM);
    kl_raft_guard_free_message(&m);
  }
}

/* ---- the forwarding raft_io ---- */

static raft_io_recv_cb real_recv;
static struct raft_io *real_io_seen;
static int passed;
static raft_id passed_from[8];

static int fake_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  (void)msecs;
  (void)tick;
  real_io_seen = io;
  real_recv = recv;
  return 0;
}

/* libraft's recv callback: it owns the message from here. */
static void raft_recv(struct raft_io *io, struct raft_message *m) {
  (void)io;
  if (passed < 8) passed_from[passed] = m->server_id;
  passed++;
  kl_raft_guard_free_message(m);
}

static void raft_tick(struct raft_io *io) { (void)io; }

static void test_forwarding_io(void **state) {
  (void)state;
  struct raft_io real;
  memset(&real, 0, sizeof real);
  real.version = 1;
  real.start = fake_start;
  kl_raft_guard_t g;
  kl_raft_guard_init(&g, &real);
  assert_ptr_equal(g.io.impl, &g);
  assert_null(g.io.async_work); /* version 1: libraft must not see one */
  g.raft = &R;
  assert_int_equal(g.io.start(&g.io, 100, raft_tick, raft_recv), 0);
  assert_ptr_equal(real_io_seen, &real);
  assert_non_null(real_recv);
  passed = 0;
  /* a good AppendEntries with entries: passed on (and freed by "libraft") */
  struct raft_message m = msg(RAFT_IO_APPEND_ENTRIES, 2, TERM);
  fill_entries(&m, 3);
  real_recv(&real, &m);
  /* from a stranger, with entries: dropped, counted, freed by the guard (ASan) */
  m = msg(RAFT_IO_APPEND_ENTRIES, 7, TERM);
  fill_entries(&m, 4);
  real_recv(&real, &m);
  /* a term jump: dropped */
  m = msg(RAFT_IO_REQUEST_VOTE, 3, TERM + KL_GUARD_TERM_JUMP + 1);
  real_recv(&real, &m);
  /* a snapshot with a bad index: dropped with its memory */
  m = msg(RAFT_IO_INSTALL_SNAPSHOT, 1, TERM);
  m.install_snapshot.last_index = KL_GUARD_MAX;
  raft_configuration_init(&m.install_snapshot.conf);
  assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 1, "x", RAFT_VOTER), 0);
  m.install_snapshot.data.len = 100;
  m.install_snapshot.data.base = raft_malloc(100);
  real_recv(&real, &m);
  /* a candidate voting for someone else: dropped */
  m = msg(RAFT_IO_REQUEST_VOTE, 1, TERM);
  m.request_vote.candidate_id = 2;
  real_recv(&real, &m);
  /* a good vote answer */
  m = msg(RAFT_IO_REQUEST_VOTE_RESULT, 3, TERM);
  real_recv(&real, &m);
  assert_int_equal(passed, 2);
  assert_int_equal(passed_from[0], 2);
  assert_int_equal(passed_from[1], 3);
  assert_int_equal(g.dropped[KL_GUARD_NOT_MEMBER], 1);
  assert_int_equal(g.dropped[KL_GUARD_BAD_TERM], 1);
  assert_int_equal(g.dropped[KL_GUARD_BAD_INDEX], 1);
  assert_int_equal(g.dropped[KL_GUARD_BAD_SHAPE], 1);
  /* before the raft is set, everything is passed on */
  g.raft = NULL;
  m = msg(RAFT_IO_APPEND_ENTRIES, 9, TERM);
  real_recv(&real, &m);
  assert_int_equal(passed, 3);
}

int main(void) {
  kl_log_set_level(KL_LOG_OFF); /* the forwarding io logs every drop */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_members, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_configuration, setup, teardown),
      cmocka_unit_test_setup_teardown(test_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_indexes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_vote_candidate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_append_entries_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_message, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forwarding_io, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
