/* One parent link's liveness and readiness (tier_link.h). */
#include "tier_link.h"

void kl_link_init(kl_link_t *l, uint64_t interval_ms, uint64_t timeout_ms, uint64_t now) {
  *l = (kl_link_t){.interval_ms = interval_ms, .timeout_ms = timeout_ms, .ready = true, .down_since = now};
}

void kl_link_connected(kl_link_t *l, uint64_t now) {
  l->connected = true;
  l->verified = false;
  l->suspect = false;
  l->outstanding = 0;
  l->heard_at = now;
  l->ping_at = 0;
}

void kl_link_disconnected(kl_link_t *l, uint64_t now) {
  l->connected = false;
  l->verified = false;
  l->outstanding = 0;
  l->down_since = now;
}

void kl_link_sent(kl_link_t *l, uint64_t now, bool ping) {
  if (!l->connected) return;
  if (l->outstanding++ == 0) l->busy_since = now;
  if (ping) l->ping_at = now;
}

void kl_link_heard(kl_link_t *l, uint64_t now, bool ready) {
  if (!l->connected) return;
  if (l->outstanding > 0) l->outstanding--;
  if (l->outstanding > 0) l->busy_since = now; /* the next answer's wait starts now */
  l->heard_at = now;
  l->verified = true;
  l->suspect = false;
  l->ready = ready;
}

void kl_link_suspect(kl_link_t *l) { l->suspect = true; }

static uint64_t later(uint64_t a, uint64_t b) { return a > b ? a : b; }

int kl_link_poll(kl_link_t *l, uint64_t now) {
  if (!l->connected) return now - l->down_since >= 2 * l->timeout_ms ? KL_LINK_SILENT : KL_LINK_NOTHING;
  if (l->outstanding > 0) return now - later(l->heard_at, l->busy_since) >= l->timeout_ms ? KL_LINK_SILENT : KL_LINK_NOTHING;
  if (!l->verified) return KL_LINK_PING;
  return now - later(l->heard_at, l->ping_at) >= l->interval_ms ? KL_LINK_PING : KL_LINK_NOTHING;
}

bool kl_link_usable(const kl_link_t *l) { return l->connected && l->verified && l->ready && !l->suspect; }

const char *kl_link_state(const kl_link_t *l) {
  if (!l->connected) return "down";
  if (!l->verified) return "unverified";
  if (!l->ready) return "not ready";
  if (l->suspect) return "suspect";
  return "up";
}
