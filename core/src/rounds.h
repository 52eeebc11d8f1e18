/* The core's round bookkeeping (docs/core.md). Pure: no uv.h, no Raft.
 *
 * Holds the requests a node received, per second: its own (to answer) and, on the leader,
 * those its followers forwarded. The leader collects a second's leaves for its proposal; every
 * node, when a second is committed, rebuilds that second's tree from the committed leaves and
 * answers its own requests; requests the committed round does not contain (they came too late,
 * or the round was lost) are answered with a retryable error, never with a chain.
 *
 * Answers go through the callback; `ctx` is the daemon's (a connection) and is never touched. */
#ifndef KL_CORE_ROUNDS_H
#define KL_CORE_ROUNDS_H

#include <stddef.h>
#include <stdint.h>

#include "fsm.h"
#include "keyless/buf.h"
#include "keyless/tree.h"

typedef struct kl_core_answer {
  uint64_t second;
  int status;          /* 0, or a KSI status (KL_STATUS_UPSTREAM_ERROR: retry) */
  const char *error;   /* with a status */
  const uint8_t *chain; /* the core tier's 0x801 (status 0), valid during the callback */
  size_t chain_len;
} kl_core_answer_t;

typedef void (*kl_core_answer_cb)(void *arg, void *ctx, uint64_t client_request_id, const kl_core_answer_t *a);

typedef struct kl_core_rounds kl_core_rounds_t;

int kl_core_rounds_create(uint64_t self, int algorithm, unsigned max_level, kl_core_answer_cb cb, void *arg,
                          kl_core_rounds_t **out, kl_err_t *e);
void kl_core_rounds_destroy(kl_core_rounds_t *r);

/* A request this node received for `second`; the daemon forwards it to the leader unless it
 * is the leader. *id gets the node-local request id. A second this node already collected as
 * leader is closed: the request goes to the next one (likewise for forwards). */
int kl_core_rounds_add(kl_core_rounds_t *r, uint64_t second, const kl_imprint_t *imprint, unsigned level, void *ctx,
                       uint64_t client_request_id, uint64_t *id, kl_err_t *e);
/* A request a follower forwarded (leader only). Duplicates (same origin and id) are ignored. */
int kl_core_rounds_add_forward(kl_core_rounds_t *r, uint64_t second, uint64_t origin, uint64_t id,
                               const kl_imprint_t *imprint, unsigned level, kl_err_t *e);

/* The leader's proposal for `second`: every request held for it, own and forwarded, in arrival
 * order, and the tree root (NULL when empty: *root_set = 0). The leaves stay held until the
 * second is committed or dropped. Caller frees *leaves. */
int kl_core_rounds_collect(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t **leaves, size_t *n,
                           kl_imprint_t *root, int *root_set, kl_err_t *e);

/* A committed second: answers this node's requests for it and for every earlier second still
 * held, and forgets them. KL_EFORMAT if the committed root is not the root of its leaves (the
 * node then answers nothing for that second). */
int kl_core_rounds_committed(kl_core_rounds_t *r, const kl_core_round_t *round, kl_err_t *e);

/* Requests held (own + forwarded), for metrics and limits. */
size_t kl_core_rounds_pending(const kl_core_rounds_t *r);

#endif
