/* Round closes on the wall clock (tier_clock.h). */
#include "tier_clock.h"

#include <time.h>

/* The first instant after now that is lead before a multiple of step. */
static uint64_t next_before(uint64_t now, uint64_t step, uint64_t lead) {
  lead %= step;
  return ((now + lead) / step + 1) * step - lead;
}

uint64_t kl_tier_next_close_in(uint64_t now_ms, uint64_t period_ms, uint64_t lead_ms) {
  if (period_ms == 0) period_ms = 1;
  if (lead_ms >= 1000) lead_ms = 999;
  uint64_t aligned = next_before(now_ms, period_ms, lead_ms);
  uint64_t second = next_before(now_ms, 1000, lead_ms); /* the cut-off of the current second */
  uint64_t at = aligned < second ? aligned : second;
  return at > now_ms ? at - now_ms : 1;
}

uint64_t kl_tier_lead(uint64_t configured_ms, uint64_t parent_lead_ms) {
  uint64_t want = parent_lead_ms + KL_TIER_HOP_MS;
  uint64_t lead = configured_ms > want ? configured_ms : want;
  return lead < 500 ? lead : 500; /* a lead of half a second or more is a misconfiguration */
}

uint64_t kl_tier_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
