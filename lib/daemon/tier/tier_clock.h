/* When a tier closes its rounds (lib/tier/tier_clock.c): on the wall clock, so that the last
 * round of every second leaves in time for the core's cut-off at the end of that second.
 *
 * The core puts a root into the second it arrives in (its clock). A tier that closed its rounds
 * every period from its own start would send the last round of a second up to one period late,
 * and the requests in it would wait a whole second more. So rounds close at wall-clock instants
 * k * period - lead, and never later than the end of the current second - lead, where lead is
 * how long a root takes to reach the core from this tier (this tier's parent's own lead, plus
 * one hop). With period 100 ms and lead 25 ms a gateway closes at .075, .175, ... .975. */
#ifndef KL_TIER_CLOCK_H
#define KL_TIER_CLOCK_H

#include <stdint.h>

/* One hop between tiers (a loopback or LAN link and a parent's read): added to the parent's lead. */
#define KL_TIER_HOP_MS 5

/* Milliseconds from now_ms (wall clock, ms since the epoch) to the next round close, >= 1. */
uint64_t kl_tier_next_close_in(uint64_t now_ms, uint64_t period_ms, uint64_t lead_ms);

/* The wall clock, milliseconds since the epoch. */
uint64_t kl_tier_wall_ms(void);

/* The lead this tier uses: its configured minimum, or its parent's lead plus a hop if more. */
uint64_t kl_tier_lead(uint64_t configured_ms, uint64_t parent_lead_ms);

#endif
