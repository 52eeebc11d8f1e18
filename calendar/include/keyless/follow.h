/* keyless: following a core node's replication stream (proto/replication.proto) into a local
 * calendar: extenders keep their replica current with it, and a core node that restored a
 * snapshot beyond its calendar catches up with it. Runs on the caller's libuv loop (this is the
 * one socket-using part of calendar/, kept apart from the pure calendar code).
 *
 * It subscribes with the calendar's last second, appends every batch it receives (checked by
 * kl_repl_receive: same genesis, no gap, no repeat, and, with a trust, the core's signed root)
 * and asks again; the core answers at once when it has newer seconds and holds the request
 * otherwise (long poll). Connection failures are retried with backoff; a batch that does not
 * apply (a different calendar, a gap, a missing or untrusted record, a root other than the
 * signed one) stops the follower for good: nothing of it is written, the link is closed (no
 * retry against the core), one ERROR line is logged (event=replication_refused with the second
 * and both roots when they differ), and on_error says why.
 *
 * Lifecycle: kl_follow_start ... kl_follow_stop(cb): memory freed, then cb. Loop thread only. */
#ifndef KEYLESS_FOLLOW_H
#define KEYLESS_FOLLOW_H

#include <uv.h>

#include "keyless/calendar.h"
#include "keyless/replica.h"
#include "keyless/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_follow kl_follow_t;

typedef struct kl_follow_cbs {
  void (*on_progress)(kl_follow_t *f, uint64_t last, void *arg); /* after every applied batch; may be NULL */
  void (*on_error)(kl_follow_t *f, const kl_err_t *e, void *arg); /* the follower stopped; may be NULL */
} kl_follow_cbs_t;

/* Follows addr with kl_repl_receive's checks under trust (copied; the certificate arrays it
 * points to must stay valid until the follower is stopped). trust NULL: kl_repl_handle's
 * checks (a record is not required), as a core node catching up from its members uses. */
/* tls: mutual TLS to the core's replication port (its certificate must say core); NULL: plain
 * TCP ([tls] insecure = yes). The follower references it. */
KL_API int kl_follow_start_trusted(uv_loop_t *loop, kl_cal_t *cal, const char *addr, const kl_repl_trust_t *trust,
                                   kl_tls_ctx_t *tls, const kl_follow_cbs_t *cbs, void *arg, kl_follow_t **out,
                                   kl_err_t *e);
/* A follower started trusted takes trust (copied, as at start) from the next batch on: a new
 * list of calendar-auth certificates, e.g. after a reload. The old arrays may be freed on return. */
KL_API void kl_follow_set_trust(kl_follow_t *f, const kl_repl_trust_t *trust);
/* kl_follow_start_trusted with trust NULL. */
KL_API int kl_follow_start(uv_loop_t *loop, kl_cal_t *cal, const char *addr, kl_tls_ctx_t *tls,
                           const kl_follow_cbs_t *cbs, void *arg, kl_follow_t **out, kl_err_t *e);
KL_API void kl_follow_stop(kl_follow_t *f, void (*cb)(void *arg), void *arg);
/* Seconds appended so far, and whether the follower stopped on an error. */
KL_API uint64_t kl_follow_applied(const kl_follow_t *f);
KL_API bool kl_follow_failed(const kl_follow_t *f);
/* Batches refused so far (0 or 1: the first one stops the follower). */
KL_API uint64_t kl_follow_refused(const kl_follow_t *f);
/* The upstream's committed_last from its latest Entries message, and whether one has arrived. */
KL_API bool kl_follow_upstream_last(const kl_follow_t *f, uint64_t *committed_last);
/* Failure detection for an owner that follows one of several cores (the extender): the loop
 * time (uv_now, ms) of the last frame received (0: none yet), the times the link went down after
 * being up, and whether it is up now. */
KL_API uint64_t kl_follow_heard_ms(const kl_follow_t *f);
KL_API uint64_t kl_follow_drops(const kl_follow_t *f);
KL_API bool kl_follow_connected(const kl_follow_t *f);

#ifdef __cplusplus
}
#endif
#endif
