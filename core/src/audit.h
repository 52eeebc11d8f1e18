/* The core's audit log writer (docs/operations.md, "The audit log"; format: auditlog.h and
 * docs/formats.md §9): every administrative event is appended to DATA_DIR/audit/audit.log as
 * one hash-chained record, written and fdatasync'd before kl_audit_event returns (so before
 * the event is acknowledged); once a second the records not signed yet are signed through the
 * [audit] gateway as one request (a local tree, kl_sign_hashes), and each record's own
 * signature is appended to audit.ksig. A failed signing is counted and retried with a backoff
 * (1 s doubling to 60 s); the records stay pending, in memory and on disk, until signed.
 *
 * Events (type, then key=value details; the actor is "node/ID" or the caller's):
 *   node_start, node_stop, membership_add, membership_remove, membership_result, membership,
 *   config_reload, audit_torn_tail; key_switch and key_reload_refused (node_keys.c, after a
 *   SIGHUP that loaded or refused new calendar-auth keys).
 *
 * Threads: every function runs on the loop thread. The signing request and the audit.ksig
 * append run in libuv's thread pool, one at a time, on copies of the hashes; only that job
 * writes audit.ksig after open. A NULL kl_audit_t (no [audit] log) makes every call a no-op.
 * Memory: kl_audit_close stops the timer (an in-flight job finishes: the loop waits for it);
 * kl_audit_free after the loop has run out. */
#ifndef KL_CORE_AUDIT_H
#define KL_CORE_AUDIT_H

#include <stdint.h>
#include <uv.h>

#include "keyless/err.h"
#include "keyless/metrics.h"

typedef struct kl_audit kl_audit_t;

typedef struct kl_audit_opts {
  const char *dir;       /* where audit.log and audit.ksig live (created 0700) */
  uint64_t node;         /* this node's id: in every record, and the actor "node/ID" */
  const char *gateway;   /* NULL or "": records are chained but not signed */
  const char *user;      /* the gateway login */
  const char *key_source; /* its HMAC key: a secret source (docs/keys.md): file:, env:, credential: */
  uint64_t timeout_ms;   /* one signing request */
  kl_metrics_t *metrics; /* keyless_core_audit_* */
} kl_audit_opts_t;

/* Opens (or creates) the log and the signatures file and checks them: a log that does not
 * decode or whose chain is broken, or signatures of records the log does not hold, stop the
 * start with a message saying what to do. A torn tail (a write cut short by a crash) is moved
 * to audit.log.torn-OFFSET, cut off, and recorded as an audit_torn_tail event; a torn tail of
 * audit.ksig is cut off (those records are signed again). */
int kl_audit_open(uv_loop_t *loop, const kl_audit_opts_t *o, kl_audit_t **out, kl_err_t *e);
void kl_audit_close(kl_audit_t *a);
void kl_audit_free(kl_audit_t *a);

/* Appends one record (actor "node/ID") and syncs it. Returns 0, or an error code after logging
 * the failure (audit_write_failed; keyless_core_audit_write_failures_total): the file is cut
 * back to its last whole record, never left half-written. details: printf format, key=value. */
int kl_audit_event(kl_audit_t *a, const char *type, const char *fmt, ...) KL_PRINTF(3, 4);
/* The same with an actor: "admin/SUBJECT" for an admin certificate's subject. */
int kl_audit_event_by(kl_audit_t *a, const char *actor, const char *type, const char *fmt, ...) KL_PRINTF(4, 5);

/* Records written but not signed yet. */
size_t kl_audit_pending(const kl_audit_t *a);

#endif
