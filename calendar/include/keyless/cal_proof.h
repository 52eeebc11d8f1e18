/* keyless: what a calendar serves to auditors (docs/formats.md "Calendar auditing"): consistency
 * proofs between two seconds, the head, and ranges of leaves with the forest before them. Each
 * call reads one LMDB snapshot (one read transaction) and costs O(log P) node lookups, or the
 * range's leaves; the pure proof code is keyless/calproof.h. Seconds are absolute UNIX seconds
 * (the calendar's leaves count from 0, KSI-FORMAT.md §5.2); proofs and roots exist only for
 * seconds in [genesis, last]. */
#ifndef KEYLESS_CAL_PROOF_H
#define KEYLESS_CAL_PROOF_H

#include "keyless/calendar.h"
#include "keyless/calproof.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The proof from..to with both roots set (genesis <= from <= to <= last). KL_ERANGE before
 * genesis, KL_ENOTFOUND after last, KL_EINVAL for from > to. */
KL_API int kl_cal_consistency(kl_cal_t *cal, uint64_t from, uint64_t to, kl_calproof_t *out, kl_err_t *e);
/* The last second and its root. KL_ENOTFOUND when the calendar is empty. */
KL_API int kl_cal_head(kl_cal_t *cal, kl_calhead_t *out, kl_err_t *e);
/* The leaves of from..to (genesis <= from <= to <= last, at most KL_CALRANGE_MAX seconds) and
 * the forest of [0, from). */
KL_API int kl_cal_range(kl_cal_t *cal, uint64_t from, uint64_t to, kl_calrange_t *out, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
