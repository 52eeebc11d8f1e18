/* The core's round bookkeeping (docs/core.md). Pure: no uv.h, no Raft.
 *
 * Holds the requests a node received, per second: its own (to answer) and, on the leader,
 * those its followers forwarded. The leader collects a second's leaves for its proposal; every
 * node, when a second is committed, rebuilds that second's tree from the committed leaves and
 * answers its own requests; requests the committed round does not contain (they came too late,
 * or the round was lost) are answered with a retryable error, never with a chain.
 *
 * What it accepts (docs/core.md, "What a node accepts"):
 * - levels: a leaf at level L placed at depth d in a round tree reaches L + d, which must stay
 *   within max_level (KSI levels are one byte). A round holds at most max_pending leaves, so
 *   its depth is at most kl_core_rounds_depth(max_pending); a request (own or forwarded) above
 *   max_level minus that depth is refused. The leader's collection drops any leaf that would
 *   still not fit, so a round is always built.
 * - forwards: only from the member they claim to come from, for a second within
 *   KL_CORE_FORWARD_WINDOW seconds of the leader's clock, and counted against max_pending.
 * - answers: a request is answered only from a committed leaf with its own imprint and level.
 *
 * Answers go through the callback; `ctx` is the daemon's (one per request frame, so on the
 * connection it came from) and is never touched. The client's request id is only echoed: it
 * never identifies a request here (node-local ids and (origin, id) pairs do). */
#ifndef KL_CORE_ROUNDS_H
#define KL_CORE_ROUNDS_H

#include <stddef.h>
#include <stdint.h>

#include "fsm.h"
#include "keyless/buf.h"
#include "keyless/tree.h"

/* A forward's second may be at most this many seconds before or after the leader's current
 * second. Within it, a second the leader already collected goes into the next open one. */
#define KL_CORE_FORWARD_WINDOW 2

/* max_pending until kl_core_rounds_set_max_pending (the configuration's default). */
#define KL_CORE_ROUNDS_DEFAULT_MAX_PENDING 100000

enum {
  KL_CORE_ANSWER_CHAIN = 0, /* status 0, chain set */
  KL_CORE_ANSWER_RETRY,     /* KL_STATUS_UPSTREAM_ERROR: not in a committed round, or the round was unusable */
  KL_CORE_ANSWER_MISMATCH,  /* KL_STATUS_UPSTREAM_ERROR: the committed leaf under this request's id is not its
                             * imprint and level (a forged or stale forward won the id): never its chain */
  KL_CORE_ANSWER_TOO_HIGH,  /* KL_STATUS_AGGR_REQUEST_TOO_LARGE: the leader dropped it, its level did not fit */
};

typedef struct kl_core_answer {
  uint64_t second;
  int status;          /* 0, or a KSI status (KL_STATUS_UPSTREAM_ERROR: retry) */
  const char *error;   /* with a status */
  const uint8_t *chain; /* the core tier's 0x801 (status 0), valid during the callback */
  size_t chain_len;
  int kind;            /* KL_CORE_ANSWER_* */
} kl_core_answer_t;

typedef void (*kl_core_answer_cb)(void *arg, void *ctx, uint64_t client_request_id, const kl_core_answer_t *a);

typedef struct kl_core_rounds kl_core_rounds_t;

/* max_level: the highest level a round's root may reach (at most 255). */
int kl_core_rounds_create(uint64_t self, int algorithm, unsigned max_level, kl_core_answer_cb cb, void *arg,
                          kl_core_rounds_t **out, kl_err_t *e);
void kl_core_rounds_destroy(kl_core_rounds_t *r);

/* Requests held at once, own and forwarded (>= 1). Also bounds a round's leaves, hence the
 * depth of its tree and the highest level accepted. */
void kl_core_rounds_set_max_pending(kl_core_rounds_t *r, size_t max_pending);
/* The deepest a leaf sits in a round tree of n >= 1 leaves: ceil(log2 n), and 1 for a lone
 * leaf (paired with a blank). */
unsigned kl_core_rounds_depth(size_t n);
/* The highest level a request may have: max_level - kl_core_rounds_depth(max_pending), or -1
 * when no level fits. */
int kl_core_rounds_max_request_level(const kl_core_rounds_t *r);

/* A request this node received for `second`; the daemon forwards it to the leader unless it
 * is the leader. *id gets the node-local request id. A second this node already collected as
 * leader is closed: the request goes to the next one (likewise for forwards).
 * KL_ERANGE: the level does not fit (answer 0x104); KL_ETOOBIG: max_pending requests are held
 * (answer 0x106). */
int kl_core_rounds_add(kl_core_rounds_t *r, uint64_t second, const kl_imprint_t *imprint, unsigned level, void *ctx,
                       uint64_t client_request_id, uint64_t *id, kl_err_t *e);
/* A request a follower forwarded (leader only). `sender` is the member the forward came from
 * (authenticated by the transport), `now` the leader's current second. Duplicates (same
 * origin and id) are ignored. Refused, held nowhere:
 *   KL_EAUTH    origin is not the sender (or is this node; sender 0: not authenticated)
 *   KL_ESTATE   second outside now +- KL_CORE_FORWARD_WINDOW
 *   KL_ERANGE   the level does not fit
 *   KL_ETOOBIG  max_pending requests are held */
int kl_core_rounds_add_forward(kl_core_rounds_t *r, uint64_t sender, uint64_t now, uint64_t second, uint64_t origin,
                               uint64_t id, const kl_imprint_t *imprint, unsigned level, kl_err_t *e);

/* The leader's proposal for `second`: every request held for it, own and forwarded, in arrival
 * order, and the tree root (NULL when empty: *root_set = 0). A leaf whose level would not fit
 * the round's tree is left out (its own request is answered 0x104 when the second commits;
 * kl_core_rounds_dropped counts them). The leaves stay held until the second is committed or
 * dropped. Caller frees *leaves. Fails only for lack of memory. */
int kl_core_rounds_collect(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t **leaves, size_t *n,
                           kl_imprint_t *root, int *root_set, kl_err_t *e);

/* A committed second: answers this node's requests for it and for every earlier second still
 * held, and forgets them. The tree is rebuilt with the entry's algorithm, up to level 255 (the
 * leader's limits decided what is in it). A request is answered with a chain only from a leaf
 * with its own imprint and level. KL_EFORMAT if the committed leaves cannot be built or the
 * committed root is not their root (the node then answers nothing with a chain for that
 * second: its requests get the retryable error). Never leaves a held request behind for a
 * second that is done. */
int kl_core_rounds_committed(kl_core_rounds_t *r, const kl_core_round_t *round, kl_err_t *e);

/* Requests held (own + forwarded), for metrics and limits. */
size_t kl_core_rounds_pending(const kl_core_rounds_t *r);
/* Leaves the leader's collections left out because their level did not fit, since creation. */
uint64_t kl_core_rounds_dropped(const kl_core_rounds_t *r);

#endif
