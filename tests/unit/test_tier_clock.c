/* Round closes on the wall clock (lib/tier/tier_clock.c): aligned to the period shifted by the
 * lead, the last one of each second at its end minus the lead, whatever the period. */
#include <stdint.h>

#include "../../lib/daemon/tier/tier_clock.h"
#include "testutil.h"

static void test_aligned(void **state) {
  (void)state;
  const uint64_t S = 1796240000000ull; /* a whole second, in ms */
  /* period 100, lead 25: closes at .075, .175, ... .975 */
  assert_int_equal(kl_tier_next_close_in(S, 100, 25), 75);
  assert_int_equal(kl_tier_next_close_in(S + 75, 100, 25), 100);
  assert_int_equal(kl_tier_next_close_in(S + 80, 100, 25), 95);
  assert_int_equal(kl_tier_next_close_in(S + 900, 100, 25), 75);
  assert_int_equal(kl_tier_next_close_in(S + 975, 100, 25), 100); /* then .075 of the next second */
  /* lead 0: on the period's multiples */
  assert_int_equal(kl_tier_next_close_in(S + 10, 100, 0), 90);
}

static void test_second_cutoff(void **state) {
  (void)state;
  const uint64_t S = 1796240001000ull; /* a multiple of 3000 ms: of the second and of 300 ms */
  /* A period that does not divide the second (300 ms, lead 20): closes at .280, .580, .880, and
   * also at .980, the cut-off, instead of waiting for 1.180. */
  assert_int_equal(kl_tier_next_close_in(S + 880, 300, 20), 100);
  assert_int_equal(kl_tier_next_close_in(S + 980, 300, 20), 200); /* 1.180 is the next aligned */
  /* A long period (2 s) still closes before every second's end. */
  assert_int_equal(kl_tier_next_close_in(S + 100, 2000, 20), 880);
  assert_int_equal(kl_tier_next_close_in(S + 1100, 2000, 20), 880);
  /* never zero, even on the instant itself */
  for (uint64_t t = 0; t < 2000; t++) {
    uint64_t d = kl_tier_next_close_in(S + t, 100, 25);
    assert_true(d >= 1 && d <= 100);
    assert_int_equal((S + t + d + 25) % 100, 0);
  }
}

static void test_lead(void **state) {
  (void)state;
  assert_int_equal(kl_tier_lead(20, 0), 20);   /* under the core: its own minimum */
  assert_int_equal(kl_tier_lead(20, 20), 25);  /* under an aggregator leading by 20 */
  assert_int_equal(kl_tier_lead(0, 45), 50);
  assert_int_equal(kl_tier_lead(5000, 0), 500); /* capped */
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_aligned), cmocka_unit_test(test_second_cutoff),
                                     cmocka_unit_test(test_lead)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
