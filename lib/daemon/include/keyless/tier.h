/* keyless: one tier of the aggregation hierarchy on a libuv loop, what a gateway and an
 * aggregator share (DESIGN.md §1): the round engine (round.h) driven by a timer, the round's
 * root sent up to the parents over framed protobuf (proto/aggregation.proto), and the parent's
 * answer fanned out to every request of the round.
 *
 *   submit(hash, level, who, ctx)   the request joins the open round, or is refused at once
 *   every period_ms, on the wall    a non-empty open round closes; its root goes to the parents.
 *   clock, lead_ms early            Closes fall at k * period - lead and at every second's end
 *                                   - lead (lib/tier/tier_clock.h): the last round of a second
 *                                   reaches the core before the second ends. lead is the
 *                                   configured one or the parents' (Response.lead_ms) plus a hop.
 *   kl_tier_close_now()             with manual_close, instead of the timer: the owner closes
 *                                   (Closing by the owner, below)
 *   first valid parent answer       done(ctx, answer) for every request of that round (its own
 *                                   chain, and the round's shared tail built once)
 *   no valid answer in time         done(ctx, retryable status) for every request of that round
 *
 * Parents. A parent is up (usable) when its link is connected, it has answered since (a Pong
 * or a Response), its last Pong said it would take a round, and it has not let a failover round
 * wait parent_timeout_ms since it was last heard (lib/daemon/tier/tier_link.h). A link with
 * nothing waiting for an answer carries a Ping every heartbeat_interval_ms; a parent that
 * answers nothing for heartbeat_timeout_ms (or whose connection attempt hangs for twice that)
 * is marked down, its connection closed and re-dialled (backoff up to min(1 s, the timeout)).
 * In KL_TIER_ALL mode the root goes to every up parent and the first valid answer wins (the
 * others are counted as late). In KL_TIER_FAILOVER mode it goes to the first up parent in
 * configuration order; if that parent disconnects, answers with an error or an invalid chain,
 * or stays silent for parent_timeout_ms, the round goes to the next one, and a parent that
 * stayed silent is skipped by later rounds until it answers again (heartbeats probe it). A
 * round with no valid answer after round_timeout_ms, or with no parent left to try, fails with
 * KSI status 0x0301 (timeout) or 0x0300 (upstream error): retryable, never a wrong chain. An
 * answer is valid when its status is 0 and its first chain starts from this round's root at the
 * answer's second (kl_round_answer checks it); anything else is dropped and counted.
 *
 * Limits, each a KSI status: the round engine's per-client limit (0x0105), the request level
 * (0x0104), and max_pending requests held at once across the open round and the rounds waiting
 * for their parents (0x0106). A round that holds max_requests is not a refusal: it closes before
 * its time (on the next loop iteration, not inside submit) and the request opens the next one,
 * so a burst (a loop that fell behind, several periods' roots read at once) becomes more rounds;
 * max_requests stays the bound of one round (and so of the tree's depth, 0x0104 above).
 *
 * Ownership: the tier copies its configuration and everything submitted; ctx is the caller's
 * and comes back exactly once through done (also when the tier closes: status 0x0300). The
 * answer passed to done is valid during the call only. All calls from the loop thread.
 */
#ifndef KEYLESS_TIER_H
#define KEYLESS_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/metrics.h"
#include "keyless/round.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { KL_TIER_ALL = 0, KL_TIER_FAILOVER = 1 };

typedef struct kl_tier_config {
  kl_round_config_t round;
  uint64_t period_ms;          /* round length (default 100) */
  uint64_t lead_ms;            /* at least this much before a second's end its last round closes */
  const char *const *parents;  /* "host:port" of each parent's internal port, 1..16 */
  size_t n_parents;
  int parent_mode;             /* KL_TIER_ALL or KL_TIER_FAILOVER */
  uint64_t parent_timeout_ms;  /* failover: silence before the next parent is tried */
  uint64_t round_timeout_ms;   /* from the round's close to its failure */
  uint64_t heartbeat_interval_ms; /* a quiet link's Ping period (0: 500) */
  uint64_t heartbeat_timeout_ms;  /* silence that marks a parent down (0: 2000) */
  uint64_t unhealthy_after_ms;    /* rounds failing with none answered this long: unhealthy (0: 5000) */
  const char *name;            /* this node's identity: sent up as Request.client_id */
  size_t max_pending;          /* requests held at once (0: no limit) */
  struct kl_tls_ctx *tls;      /* mutual TLS to the parents (core or aggregator certificates); NULL: plain */
  bool manual_close;           /* rounds close by kl_tier_close_now (or full), not on the timer */
} kl_tier_config_t;

typedef struct kl_tier_answer {
  uint64_t status;  /* 0, or a KSI status for this request */
  const char *error; /* with a status: why */
  uint64_t second;  /* with status 0: the aggregation time */
  /* With status 0 the answer is tlvs followed by tail, each a sequence of whole TLVs: tlvs is
   * this request's own 0x801 (the only per-request part); tail is the parent's parts (its
   * 0x801s, then the 0x802 and 0x805/0x803), the same bytes for every request of the round.
   * tail may be NULL (tail_len 0) when tlvs holds the whole answer. */
  const uint8_t *tlvs;
  size_t len;
  const uint8_t *tail;
  size_t tail_len;
  uint64_t round; /* with status 0: the round's id; answers with the same id have the same tail */
  uint64_t lead_ms; /* this tier's lead, told to the children in Response.lead_ms (tier_clock.h) */
} kl_tier_answer_t;

typedef void (*kl_tier_done_fn)(void *ctx, const kl_tier_answer_t *a, void *arg);

typedef struct kl_tier kl_tier_t;

/* ---- configuration shared by the daemons that run a tier ----
 *
 * A daemon's config struct holds a kl_tier_settings_t; kl_tier_cfg_keys() writes the keys of
 * its [round] and [parents] sections (documented in deploy/gateway.conf and
 * deploy/aggregator.conf) into a daemon's key table, with the daemon's own defaults. */
#define KL_TIER_MAX_PARENTS 8
typedef struct kl_tier_settings {
  char *name;        /* [round] name: identity in metadata and upstream; "" = host name */
  char *algorithm;   /* [round] algorithm */
  uint64_t period_ms, lead_ms;
  int64_t max_level, max_requests, per_client, max_pending;
  char *parent[KL_TIER_MAX_PARENTS]; /* [parents] parent1..parent8 */
  char *mode;        /* [parents] mode: all | failover */
  uint64_t parent_timeout_ms, round_timeout_ms;
  uint64_t heartbeat_interval_ms, heartbeat_timeout_ms, unhealthy_after_ms; /* [parents] */
} kl_tier_settings_t;

typedef struct kl_tier_defaults {
  const char *period, *max_level, *max_requests, *max_pending;
} kl_tier_defaults_t;

#define KL_TIER_N_KEYS (14 + KL_TIER_MAX_PARENTS)
/* Writes KL_TIER_N_KEYS keys to keys[] for settings at offset `at` of the daemon's struct.
 * The strings in keys are static. */
KL_API void kl_tier_cfg_keys(size_t at, const kl_tier_defaults_t *d, void *keys);
/* Checks the settings (at least one parent, a usable algorithm, heartbeat_interval below
 * heartbeat_timeout) and fills tc; parents must
 * hold KL_TIER_MAX_PARENTS pointers; name_buf (at least 128 bytes) gets the identity. */
KL_API int kl_tier_settings_apply(const kl_tier_settings_t *s, const char **parents, char *name_buf,
                                  kl_tier_config_t *tc, kl_err_t *e);

/* Starts connecting to the parents and the round timer. metrics (may be NULL) receives the
 * tier's series (keyless_tier_*), labelled tier=kind ("gateway", "aggregator"). */
KL_API int kl_tier_create(uv_loop_t *loop, const kl_tier_config_t *cfg, kl_metrics_t *metrics, const char *kind,
                          kl_tier_done_fn done, void *arg, kl_tier_t **out, kl_err_t *e);

/* Adds a request to the open round: 0, or nonzero with the KSI status in *status and the
 * reason in e (done is then not called for ctx). */
KL_API int kl_tier_submit(kl_tier_t *t, const kl_imprint_t *hash, unsigned level, const kl_round_identity_t *who,
                          void *ctx, uint64_t *status, kl_err_t *e);

/* Closing by the owner (manual_close): a tier whose requests are themselves roots of rounds
 * closed elsewhere (a multi-loop gateway's workers, gateway/gw_pool.c) should close when those
 * have all come in, not at a guess. With manual_close the timer closes no round (a full one
 * still closes early); it still times rounds out and fails them over, and the owner calls
 * kl_tier_close_now for every scheduled close (kl_tier_next_close), at most its own bound
 * later, so a stuck input cannot hold the round. kl_tier_close_now also works without
 * manual_close (the timer then closes whatever came after).
 *
 * close_now: closes the open round at once (rounds that filled up before it first, in order)
 * and sends its root up; returns the requests it held, 0 when it was empty (nothing is sent)
 * or the tier is closing. done may run before it returns (no parent reachable: 0x0300).
 * next_close: the wall-clock instant (ms since the epoch) of the first scheduled close after
 * wall_ms, at the tier's current lead (the parents' lead plus a hop, tier_clock.h). */
KL_API size_t kl_tier_close_now(kl_tier_t *t);
KL_API uint64_t kl_tier_next_close(const kl_tier_t *t, uint64_t wall_ms);

/* The highest request level accepted (what a config response announces). */
KL_API unsigned kl_tier_max_request_level(const kl_tier_t *t);
/* Parents up now (connected, answering, ready; see Parents above). */
KL_API size_t kl_tier_parents_up(const kl_tier_t *t);
/* NULL while the tier can do its job, else why not (for /healthz; written to buf): no parent is
 * up, or rounds have failed with none answered for unhealthy_after_ms, the last failure less
 * than unhealthy_after_ms ago and no parent come up since, or a round has waited that long. */
KL_API const char *kl_tier_health(const kl_tier_t *t, char *buf, size_t n);
/* Requests held now (open round and rounds waiting for an answer). */
KL_API size_t kl_tier_pending(const kl_tier_t *t);

/* A parent's side: the framed (4-byte length) aggregation.proto Response for a child's request
 * request_id, from a tier answer (its TLVs split into chains, calendar chain and auth record).
 * *out is malloc'd (caller frees). 0 or KL_ENOMEM / KL_EFORMAT. */
KL_API int kl_tier_response_frame(uint64_t request_id, const kl_tier_answer_t *a, uint8_t **out, size_t *len,
                                  kl_err_t *e);

/* The same frames for many children of one round: the round's shared part (the parent's
 * chains, calendar chain, auth record, lead_ms) is encoded once into the cache, and a child's
 * frame is its own fields plus a copy of those bytes (identical to kl_tier_response_frame's).
 * Any answer the fast path does not fit (a status, no tail, own parts other than 0x801s) goes
 * through kl_tier_response_frame. A cache starts zeroed ({0}); the answers' tail must stay
 * valid while they share a round id (a tier's answer does). kl_tier_frame_cache_free releases
 * it (and leaves it zeroed, reusable). */
typedef struct kl_tier_frame_cache {
  bool valid;
  uint64_t round, lead_ms;
  const uint8_t *tail;
  size_t tail_len, n_chains;
  uint8_t *enc;
  size_t enc_len, cap;
} kl_tier_frame_cache_t;
KL_API int kl_tier_response_frame_cached(kl_tier_frame_cache_t *c, uint64_t request_id, const kl_tier_answer_t *a,
                                         uint8_t **out, size_t *len, kl_err_t *e);
KL_API void kl_tier_frame_cache_free(kl_tier_frame_cache_t *c);

/* A parent's side: the framed Pong answering a child's Ping id; not_ready NULL when this node
 * would take a round now, else why not. *out is malloc'd. 0 or KL_ENOMEM. */
KL_API int kl_tier_pong_frame(uint64_t id, const char *not_ready, uint8_t **out, size_t *len, kl_err_t *e);

/* Fails every held request with 0x0300, stops the timers and the parent links; cb (may be
 * NULL) runs once every handle is closed, and t is freed. */
KL_API void kl_tier_close(kl_tier_t *t, void (*cb)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
