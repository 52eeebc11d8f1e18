/* A tier's parents: heartbeats, silence, up/down and what /healthz says (keyless/tier.h; the
 * state machine is tier_link.c). */
#include <stdio.h>

#include "aggregation.pb-c.h"
#include "keyless/log.h"
#include "tier_internal.h"

/* The metric and the log follow kl_link_usable; a warning only when an up parent goes down. */
void kl__tier_report(kl_tier_t *t, parent_t *p) {
  bool up = kl_link_usable(&p->link);
  if (up == p->up) return;
  p->up = up;
  kl_metric_set(p->m_up, up ? 1 : 0);
  if (up) {
    t->last_parent_up = uv_now(t->loop);
    kl_log(KL_LOG_INFO, "parent_up", "tier=%s parent=%s", t->kind, p->addr);
    return;
  }
  char q[200];
  kl_log(KL_LOG_WARN, "parent_down", "tier=%s parent=%s state=\"%s\" reason=%s", t->kind, p->addr,
         kl_link_state(&p->link), kl_log_q(q, sizeof q, p->link.connected && !p->link.ready ? p->why : ""));
}

void kl__tier_send_ping(kl_tier_t *t, parent_t *p) {
  Keyless__Aggregation__Ping pg = KEYLESS__AGGREGATION__PING__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  uint8_t buf[32];
  pg.id = ++t->ping_id;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_PING;
  m.ping = &pg;
  size_t n = keyless__aggregation__message__pack(&m, buf);
  if (kl_frame_client_send(p->fc, buf, n, NULL) == 0) kl_link_sent(&p->link, uv_now(t->loop), true);
}

size_t kl_tier_parents_up(const kl_tier_t *t) {
  size_t n = 0;
  for (size_t i = 0; i < t->n_parents; i++) n += kl_link_usable(&t->parents[i].link);
  return n;
}

const char *kl_tier_health(const kl_tier_t *t, char *buf, size_t n) {
  uint64_t now = uv_now(t->loop), bound = t->cfg.unhealthy_after_ms;
  if (kl_tier_parents_up(t) == 0) {
    size_t off = (size_t)snprintf(buf, n, "no parent is up:");
    for (size_t i = 0; i < t->n_parents && off < n; i++) {
      const parent_t *p = &t->parents[i];
      bool why = p->link.connected && p->link.verified && !p->link.ready && p->why[0];
      off += (size_t)snprintf(buf + off, n - off, "%s %s (%s%s%s)", i ? "," : "", p->addr, kl_link_state(&p->link),
                              why ? ": " : "", why ? p->why : "");
    }
    return buf;
  }
  if (t->flights && now - t->flights->closed_at >= bound) {
    snprintf(buf, n, "a round has waited %llu ms for its parents", (unsigned long long)(now - t->flights->closed_at));
    return buf;
  }
  /* Failures expire after the bound too: a child that stopped sending because this tier said
   * "not ready" must not keep it red for ever (the next round tells again). */
  if (t->last_fail > t->last_ok && now - t->last_ok >= bound && now - t->last_fail < bound &&
      t->last_parent_up <= t->last_fail) {
    snprintf(buf, n, "no round answered for %llu ms; the last failed: %s", (unsigned long long)(now - t->last_ok),
             t->last_why);
    return buf;
  }
  return NULL;
}

/* Heartbeats and silence, for every parent (tier_link.h). */
void kl__tier_on_link_timer(uv_timer_t *h) {
  kl_tier_t *t = h->data;
  uint64_t now = uv_now(t->loop);
  for (size_t i = 0; i < t->n_parents; i++) {
    parent_t *p = &t->parents[i];
    switch (kl_link_poll(&p->link, now)) {
      case KL_LINK_PING: kl__tier_send_ping(t, p); break;
      case KL_LINK_SILENT:
        if (p->link.connected) {
          kl_metric_inc(p->m_silent);
          kl_log(p->up ? KL_LOG_WARN : KL_LOG_INFO, "parent_silent", "tier=%s parent=%s waiting=%u silent_ms=%llu", t->kind,
                 p->addr, p->link.outstanding, (unsigned long long)(now - p->link.heard_at));
        }
        p->link.down_since = now; /* a hung attempt gets a fresh allowance after the reset */
        kl_frame_client_reset(p->fc, "no answer within heartbeat_timeout"); /* on_state(false) fails its rounds over */
        break;
      default: break;
    }
    kl__tier_report(t, p);
  }
}
