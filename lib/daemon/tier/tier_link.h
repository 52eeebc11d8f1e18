/* keyless: what a tier knows about one parent link, as a pure state machine (no I/O, times are
 * the caller's loop milliseconds); lib/daemon/tier/tier.c and tier_parents.c feed it events
 * and act on its verdicts. Owned by the tier; tests/unit/test_tier_links.c drives it directly.
 *
 * A parent is usable for a round when its transport is connected, it has answered something
 * since (a Pong or a Response: an accepted TCP connection alone proves nothing, a stopped
 * process's kernel accepts too), its last Pong said it would take a round, and it has not let a
 * failover round wait parent_timeout since it was last heard (suspect).
 *
 * Verdicts of kl_link_poll:
 *   KL_LINK_PING     nothing is waiting for an answer and nothing was heard or sent for
 *                    interval_ms (or the link is new): send a Ping.
 *   KL_LINK_SILENT   something has waited timeout_ms with nothing heard (answers come in order,
 *                    so any frame is progress), or a connection attempt has not come up within
 *                    2 x timeout_ms: close the connection and re-dial.
 *   KL_LINK_NOTHING  otherwise.
 */
#ifndef KEYLESS_TIER_LINK_H
#define KEYLESS_TIER_LINK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kl_link {
  uint64_t interval_ms, timeout_ms;
  bool connected;       /* the transport is up */
  bool verified;        /* heard from since it connected */
  bool ready;           /* its last Pong said it would take a round (a valid answer says so too) */
  bool suspect;         /* failover: it let a round wait parent_timeout; until it is heard again */
  uint32_t outstanding; /* frames sent whose answers have not come */
  uint64_t heard_at;    /* its last frame, or the connection's start */
  uint64_t busy_since;  /* when outstanding last went from 0 to 1 */
  uint64_t ping_at;     /* the last Ping sent */
  uint64_t down_since;  /* not connected since (attempts in progress included) */
} kl_link_t;

enum { KL_LINK_NOTHING = 0, KL_LINK_PING = 1, KL_LINK_SILENT = 2 };

void kl_link_init(kl_link_t *l, uint64_t interval_ms, uint64_t timeout_ms, uint64_t now);
void kl_link_connected(kl_link_t *l, uint64_t now);
void kl_link_disconnected(kl_link_t *l, uint64_t now);
/* A frame that will be answered (Request or Ping) went out. */
void kl_link_sent(kl_link_t *l, uint64_t now, bool ping);
/* A frame came in; ready: what it says about the parent's readiness (a Pong's flag; true for a
 * Response with status 0; an error Response leaves it as it was: pass l->ready). */
void kl_link_heard(kl_link_t *l, uint64_t now, bool ready);
void kl_link_suspect(kl_link_t *l);
int kl_link_poll(kl_link_t *l, uint64_t now);
bool kl_link_usable(const kl_link_t *l);
/* "up", or why not: "down", "unverified", "not ready", "suspect". */
const char *kl_link_state(const kl_link_t *l);

#endif
