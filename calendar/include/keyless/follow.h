/* keyless: following a core node's replication stream (proto/replication.proto) into a local
 * calendar: extenders keep their replica current with it, and a core node that restored a
 * snapshot beyond its calendar catches up with it. Runs on the caller's libuv loop (this is the
 * one socket-using part of calendar/, kept apart from the pure calendar code).
 *
 * It subscribes with the calendar's last second, appends every batch it receives (checked by
 * kl_repl_handle: same genesis, no gap, no repeat) and asks again; the core answers at once when
 * it has newer seconds and holds the request otherwise (long poll). Connection failures are
 * retried with backoff; a batch that does not apply (a different calendar, a gap) stops the
 * follower: on_error says why and nothing more is written.
 *
 * Lifecycle: kl_follow_start ... kl_follow_stop(cb): memory freed, then cb. Loop thread only. */
#ifndef KEYLESS_FOLLOW_H
#define KEYLESS_FOLLOW_H

#include <uv.h>

#include "keyless/calendar.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_follow kl_follow_t;

typedef struct kl_follow_cbs {
  void (*on_progress)(kl_follow_t *f, uint64_t last, void *arg); /* after every applied batch; may be NULL */
  void (*on_error)(kl_follow_t *f, const kl_err_t *e, void *arg); /* the follower stopped; may be NULL */
} kl_follow_cbs_t;

KL_API int kl_follow_start(uv_loop_t *loop, kl_cal_t *cal, const char *addr, const kl_follow_cbs_t *cbs, void *arg,
                           kl_follow_t **out, kl_err_t *e);
KL_API void kl_follow_stop(kl_follow_t *f, void (*cb)(void *arg), void *arg);
/* Seconds appended so far, and whether the follower stopped on an error. */
KL_API uint64_t kl_follow_applied(const kl_follow_t *f);
KL_API bool kl_follow_failed(const kl_follow_t *f);

#ifdef __cplusplus
}
#endif
#endif
