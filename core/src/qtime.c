/* Quorum time (qtime.h). */
#include "qtime.h"

#define QTIME_MAX_CLOCKS 16 /* more than a cluster has members (node.h: KL_CORE_MAX_MEMBERS) */

uint64_t kl_qtime_quorum_ms(uint64_t own_ms, const kl_qtime_reading_t *peers, size_t n_peers, uint64_t mono_now_ms,
                            uint64_t max_age_ms) {
  uint64_t est[QTIME_MAX_CLOCKS];
  size_t n = 0, members = n_peers + 1, majority = members / 2 + 1;
  if (members > QTIME_MAX_CLOCKS) return 0;
  est[n++] = own_ms;
  for (size_t i = 0; i < n_peers; i++) {
    const kl_qtime_reading_t *r = &peers[i];
    if (r->wall_ms == 0 || r->wall_ms > UINT64_MAX / 2 || mono_now_ms < r->mono_ms || mono_now_ms - r->mono_ms > max_age_ms) continue;
    est[n++] = r->wall_ms + (mono_now_ms - r->mono_ms);
  }
  if (n < majority) return 0;
  for (size_t i = 1; i < n; i++) /* descending; n is at most a few */
    for (size_t j = i; j > 0 && est[j - 1] < est[j]; j--) {
      uint64_t t = est[j];
      est[j] = est[j - 1];
      est[j - 1] = t;
    }
  return est[majority - 1];
}
