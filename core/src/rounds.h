/* The core's round bookkeeping (docs/core.md). Pure: no uv.h, no Raft.
 *
 * Holds the requests a node received, per second: its own (to answer) and, on the leader,
 * what its followers forwarded. A node's own requests of a second go into the round as one leaf:
 * at the end of the second (kl_core_rounds_close_own, or the leader's collection) two or more
 * are joined in a batch, a tree of their own whose root stands for them all; a lone request
 * goes as itself. A follower forwards that one leaf to the leader, not every request, so a
 * round holds a few leaves per member whatever the load, and so does its Raft entry. The
 * leader collects a second's leaves for its proposal; every node, when a second is committed,
 * rebuilds that second's tree from the committed leaves and answers its own requests: a
 * request in a batch gets one chain, up its batch tree and on up the round tree (the batch's
 * root is a leaf of the round: the two are one tree).
 * Requests the committed round does not contain (they came too late, or the round was lost)
 * are answered with a retryable error, never with a chain.
 *
 * What it accepts (docs/core.md, "What a node accepts"):
 * - levels: a leaf at level L placed at depth d in a tree reaches L + d, which must stay within
 *   max_level (KSI levels are one byte). A node holds at most max_pending requests, so a round
 *   or a batch is at most D = kl_core_rounds_depth(max_pending) deep; a request above
 *   max_level - D is refused. Batches keep KL_CORE_ROUND_RESERVE levels free
 *   for the round tree above them: only requests up to max_level - D - that reserve join a
 *   batch, a higher one goes alone (the tier below keeps its roots far lower: an aggregator's
 *   are at a few dozen). A forward (a batch root or a lone request) is refused above the higher
 *   of max_level - the reserve and max_level - D. The leader's collection drops any leaf that
 *   would still not fit, so a round is always built.
 * - forwards: only from the member they claim to come from, for a second within
 *   KL_CORE_FORWARD_WINDOW seconds of the leader's clock, and counted against max_pending.
 * - answers: a request is answered only from a committed leaf with its own imprint and level
 *   (for a batch: the batch root and its level, the batch being this node's own tree).
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

/* Levels kept free above the members' batches for the round tree over them: up to 16 leaves
 * (a batch or a lone request per member and second, late ones from the second before) stay
 * within max_level whatever their batches' depth. Requests too high for that go alone. */
#define KL_CORE_ROUND_RESERVE 4

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
  const uint8_t *chain; /* the core tier's 0x801 (status 0), valid during the callback: for a
                         * request in a batch, its path up the batch tree and on up the round's */
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

/* A request this node received for `second`, held until kl_core_rounds_close_own puts it into
 * its second's leaf (a follower then forwards that leaf to the leader). *id gets the node-local
 * request id. A second this node already closed is done: the request goes to the next one
 * (likewise for forwards on the leader).
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
/* The same for a forward standing for `requests` requests (a batch root; 1 for a lone request),
 * a count only for kl_core_rounds_collected_requests. */
int kl_core_rounds_add_forward_n(kl_core_rounds_t *r, uint64_t sender, uint64_t now, uint64_t second, uint64_t origin,
                                 uint64_t id, const kl_imprint_t *imprint, unsigned level, uint32_t requests,
                                 kl_err_t *e);

/* Closes this node's own requests of the earliest second up to `second` that has any not yet
 * closed: two or more become a batch (a tree over them, held until its round commits), a lone
 * one, or one too high for a batch, goes as itself (one per call). *leaf is what stands for them in the round (origin this node; request_id
 * the batch's id or the request's), *leaf_second its second, *requests how many it stands for;
 * *have = 0 when there was nothing to close. Later requests for a closed second go to the next.
 * A follower calls it once a second has ended and forwards each leaf; the leader's collection
 * calls it itself. Fails only for lack of memory (the requests stay held: retried next call). */
int kl_core_rounds_close_own(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t *leaf, uint64_t *leaf_second,
                             uint32_t *requests, int *have, kl_err_t *e);

/* The leader's proposal for `second`: its own leaf for it (closed here) and every forward held
 * for it, in arrival order, and the tree root (NULL when empty: *root_set = 0). A leaf whose level would not fit
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

/* Requests held (own + forwarded, and a leaf per batch), for metrics and limits. */
size_t kl_core_rounds_pending(const kl_core_rounds_t *r);
/* The last second closed (kl_core_rounds_close_own or a collection): the daemon closes its own
 * requests as soon as a later second has ended. */
uint64_t kl_core_rounds_closed(const kl_core_rounds_t *r);
/* How many requests the last collection's leaves stand for (a batch counts its requests). */
uint64_t kl_core_rounds_collected_requests(const kl_core_rounds_t *r);
/* Leaves the leader's collections left out because their level did not fit, since creation. */
uint64_t kl_core_rounds_dropped(const kl_core_rounds_t *r);

#endif
