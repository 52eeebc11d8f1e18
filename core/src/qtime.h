/* Quorum time: the cluster's clock, not one node's. Pure functions (no I/O), used by node.c and
 * node_serve.c and tested on their own (tests/unit/test_qtime.c).
 *
 * Every member sends its wall clock in a heartbeat twice a second. A node keeps, per member, the
 * last reading and its own monotonic time at receipt, so the member's clock now is estimated as
 * reading + (monotonic now - monotonic at receipt): that estimate does not move when this
 * node's own wall clock jumps. The quorum time is the latest instant that a majority of the
 * members' clocks (this node's own included) have passed: with N members and M = N/2 + 1, the
 * M-th largest clock. A node whose clock runs ahead (or behind) of everyone else cannot move it;
 * a second is closed, and a request stamped, only when a majority agrees it has begun. */
#ifndef KL_CORE_QTIME_H
#define KL_CORE_QTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_qtime_reading {
  uint64_t wall_ms; /* the member's clock as it sent it; 0: never heard */
  uint64_t mono_ms; /* this node's monotonic clock when it arrived */
} kl_qtime_reading_t;

/* The quorum time in ms, from this node's wall clock `own_ms` and the readings of its n_peers
 * peers (members other than itself) at monotonic time mono_now_ms. Readings older than
 * max_age_ms are not counted. 0 when fewer than a majority of the n_peers + 1 clocks are known:
 * no quorum time, so no second may be closed or stamped. */
uint64_t kl_qtime_quorum_ms(uint64_t own_ms, const kl_qtime_reading_t *peers, size_t n_peers, uint64_t mono_now_ms,
                            uint64_t max_age_ms);

#endif
