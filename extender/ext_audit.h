/* keyless-extender: the calendar endpoints for auditors (docs/formats.md "Calendar auditing"),
 * on the service port next to the PDUs:
 *   GET /calendar/head                       the last second and its root (Cache-Control: no-store)
 *   GET /calendar/consistency?from=P1&to=P2  proof that root(P1) is a prefix of root(P2), with
 *                                            both roots (immutable: cached for a year)
 *   GET /calendar/range?from=A&to=B          leaves A..B (at most KL_CALRANGE_MAX) and the forest
 *                                            before A (immutable)
 * Bad parameters: 400 naming what was wrong; seconds outside [genesis, last]: 404; no calendar
 * or an unsynchronized replica: 503. The work (O(log P) node reads for a proof, at most 512
 * leaves for a range) runs on the worker pool, never on the loop. */
#ifndef KL_EXT_AUDIT_H
#define KL_EXT_AUDIT_H

#include <stdbool.h>

#include "extender.h"

/* Whether path is one of the endpoints above (or another /calendar/ path: answered 404). */
bool ext_audit_path(const char *path);
/* Answers req (loop thread): cal NULL means no calendar (503); unsynced non-NULL is why the
 * replica cannot be trusted now (503). The work goes to pool. */
void ext_audit_get(kl_http_req_t *req, ext_pool_t *pool, kl_cal_t *cal, const char *unsynced);

#endif
