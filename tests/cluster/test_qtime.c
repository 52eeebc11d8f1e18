/* Quorum time (core/src/qtime.c, a pure part of the core like the FSM): the M-th largest of
 * the members' clocks, own included, stale readings left out, no answer without a majority. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "qtime.h"

#define T 1800000000000ull /* a wall clock in ms */
#define MONO 5000000ull    /* this node's monotonic clock now */

static void single_node_is_its_own_clock(void **state) {
  (void)state;
  assert_int_equal(kl_qtime_quorum_ms(T, NULL, 0, MONO, 3000), T);
}

static void a_node_ahead_cannot_move_it(void **state) {
  (void)state;
  /* three members; this one is 3 s ahead; the two others read T 100 ms ago */
  kl_qtime_reading_t p[2] = {{T - 100, MONO - 100}, {T - 100, MONO - 100}};
  assert_int_equal(kl_qtime_quorum_ms(T + 3000, p, 2, MONO, 3000), T);
  /* and 3 s behind: the majority is ahead of it, the quorum time is theirs */
  assert_int_equal(kl_qtime_quorum_ms(T - 3000, p, 2, MONO, 3000), T);
}

static void a_peer_ahead_cannot_either(void **state) {
  (void)state;
  kl_qtime_reading_t p[2] = {{T + 86400000, MONO}, {T, MONO}};
  assert_int_equal(kl_qtime_quorum_ms(T, p, 2, MONO, 3000), T);
  kl_qtime_reading_t q[2] = {{1, MONO}, {T, MONO}}; /* a wild reading far behind */
  assert_int_equal(kl_qtime_quorum_ms(T, q, 2, MONO, 3000), T);
}

static void readings_are_extrapolated_on_the_monotonic_clock(void **state) {
  (void)state;
  /* both peers read T - 2000 two seconds ago: their clocks are at T now, whatever ours says */
  kl_qtime_reading_t p[2] = {{T - 2000, MONO - 2000}, {T - 2000, MONO - 2000}};
  assert_int_equal(kl_qtime_quorum_ms(T + 60000, p, 2, MONO, 3000), T);
}

static void no_majority_no_time(void **state) {
  (void)state;
  kl_qtime_reading_t p[2] = {{0, 0}, {T, MONO - 5000}}; /* one never heard, one stale */
  assert_int_equal(kl_qtime_quorum_ms(T, p, 2, MONO, 3000), 0);
  /* five members: own + one fresh reading is 2 of 5, not a majority */
  kl_qtime_reading_t f[4] = {{T, MONO}, {0, 0}, {0, 0}, {T, MONO - 4000}};
  assert_int_equal(kl_qtime_quorum_ms(T, f, 4, MONO, 3000), 0);
  /* three of five: the 3rd largest */
  kl_qtime_reading_t g[4] = {{T + 10, MONO}, {T - 10, MONO}, {0, 0}, {0, 0}};
  assert_int_equal(kl_qtime_quorum_ms(T, g, 4, MONO, 3000), T - 10);
}

static void a_reading_from_the_future_of_our_monotonic_clock_is_ignored(void **state) {
  (void)state;
  kl_qtime_reading_t p[2] = {{T, MONO + 10}, {T, MONO + 10}};
  assert_int_equal(kl_qtime_quorum_ms(T, p, 2, MONO, 3000), 0);
}

static void two_members_need_both(void **state) {
  (void)state;
  kl_qtime_reading_t p[1] = {{T + 3000, MONO}};
  assert_int_equal(kl_qtime_quorum_ms(T, p, 1, MONO, 3000), T); /* the smaller of the two */
  kl_qtime_reading_t q[1] = {{0, 0}};
  assert_int_equal(kl_qtime_quorum_ms(T, q, 1, MONO, 3000), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(single_node_is_its_own_clock),
      cmocka_unit_test(a_node_ahead_cannot_move_it),
      cmocka_unit_test(a_peer_ahead_cannot_either),
      cmocka_unit_test(readings_are_extrapolated_on_the_monotonic_clock),
      cmocka_unit_test(no_majority_no_time),
      cmocka_unit_test(a_reading_from_the_future_of_our_monotonic_clock_is_ignored),
      cmocka_unit_test(two_members_need_both),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
