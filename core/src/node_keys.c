/* The core's calendar-auth keys at run time (authkeys.h; docs/keys.md "Rotating the
 * calendar-auth key"): which key signs a second, SIGHUP's reload of [keys], and the metrics
 *   keyless_core_calendar_auth_key_info{cert_id="…",state="active|next"} 1 (0 once it is not)
 *   keyless_core_calendar_auth_next_seconds  seconds until the next key starts, -1 for none.
 *
 * Reload: the configuration file is read again whole (only its [keys] are used) and the keys it
 * names are opened; the new set replaces the old one only if no second this node may already
 * have signed, or is signing, changes key (core_authkeys_check_reload with now = the newest of
 * this node's clock, the quorum time and the last committed second, plus one second of margin
 * for the other members' clocks). Otherwise the old keys stay and an error line says why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/log.h"
#include "node.h"

kl_calauth_t *core_key_at(const core_t *c, uint64_t s) {
  return core_authkeys_at(c->keys, s)->ca;
}

static uint64_t now_second(const core_t *c) {
  return core_now_ms() / 1000u;
}

static double g_info(void *arg) {
  const core_key_series_t *ks = arg;
  const core_authkeys_t *keys = ks->c->keys;
  uint64_t now = now_second(ks->c);
  if (!ks->next) return strcmp(core_authkeys_at(keys, now)->id, ks->id) == 0 ? 1 : 0;
  for (size_t i = 1; i < keys->n; i++)
    if (keys->k[i].from > now && strcmp(keys->k[i].id, ks->id) == 0) return 1;
  return 0;
}

static double g_next(void *arg) {
  const core_t *c = arg;
  uint64_t now = now_second(c);
  for (size_t i = 1; i < c->keys->n; i++)
    if (c->keys->k[i].from > now) return (double)(c->keys->k[i].from - now);
  return -1;
}

/* Series for every key of the current set (a series once made stays: 0 when no longer true). */
static void add_series(core_t *c) {
  static const char *const help = "the calendar-auth keys by certificate id: state active signs now, next starts later";
  for (size_t i = 0; i < c->keys->n; i++) {
    for (int next = 0; next < 2; next++) {
      bool have = false;
      for (size_t j = 0; j < c->n_key_series; j++)
        have |= c->key_series[j].next == next && strcmp(c->key_series[j].id, c->keys->k[i].id) == 0;
      if (have || c->n_key_series == CORE_KEY_SERIES_MAX) continue;
      core_key_series_t *s = &c->key_series[c->n_key_series++];
      s->c = c;
      s->next = next;
      snprintf(s->id, sizeof s->id, "%s", c->keys->k[i].id);
      const char *labels[] = {"cert_id", s->id, "state", next ? "next" : "active", NULL};
      kl_metrics_gauge_fn(c->metrics, "keyless_core_calendar_auth_key_info", help, labels, g_info, s);
    }
  }
}

/* At start: the metrics, and a log line with the keys (an error line if the certificate of the
 * key signing now is not valid now). */
int core_keys_metrics(core_t *c, kl_err_t *e) {
  if (kl_metrics_gauge_fn(c->metrics, "keyless_core_calendar_auth_next_seconds",
                          "seconds until the next calendar-auth key starts signing, -1 when none is configured", NULL,
                          g_next, c) == NULL)
    return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  add_series(c);
  char d[200];
  uint64_t now = now_second(c);
  const core_authkey_t *k = core_authkeys_at(c->keys, now);
  core_authkeys_describe(c->keys, d, sizeof d);
  kl_log(KL_LOG_INFO, "keys", "%s active=%s", d, k->id);
  if ((int64_t)now < k->not_before || (int64_t)now > k->not_after) /* signatures would fail KEY-03 */
    kl_log(KL_LOG_ERROR, "key_not_valid", "cert_id=%s not_before=%lld not_after=%lld action=\"the certificate of the "
           "calendar-auth key signing now is not valid now: signatures will not verify key-based; rotate the key\"",
           k->id, (long long)k->not_before, (long long)k->not_after);
  return 0;
}

void core_keys_reload(core_t *c) {
  core_config_t *fresh = calloc(1, sizeof *fresh);
  kl_err_t e = {0};
  char q[700], d[200];
  kl_cal_info_t info;
  uint64_t now = now_second(c), qs = core_quorum_now_ms(c) / 1000u;
  if (qs > now) now = qs;
  if (kl_cal_info(c->cal, &info, NULL) == 0 && !info.empty && info.last > now) now = info.last;
  now += 1; /* the other members' clocks may be up to max_skew ahead: a new key starts later still */
  if (fresh == NULL) {
    kl_log(KL_LOG_ERROR, "keys_reload_failed", "error=\"out of memory\" (the previous keys stay in use)");
    return;
  }
  if (core_config_load(c->cfg->path, fresh, &e) == 0 && core_authkeys_check_reload(c->keys, fresh->authkeys, now, &e) == 0) {
    core_authkeys_t *old = c->keys;
    char before[200];
    core_authkeys_describe(old, before, sizeof before);
    c->keys = fresh->authkeys;
    fresh->authkeys = old; /* freed with the fresh config below */
    add_series(c);
    core_authkeys_describe(c->keys, d, sizeof d);
    kl_log(KL_LOG_INFO, "keys_reloaded", "%s active=%s", d, core_authkeys_at(c->keys, now_second(c))->id);
    if (strcmp(before, d) != 0) /* a new, moved or dropped key: the audit log's key_switch */
      kl_audit_event(c->audit, "key_switch", "key=calendar_auth %s active=%s was=\"%s\"", d,
                     core_authkeys_at(c->keys, now_second(c))->id, before);
  } else {
    kl_log(KL_LOG_ERROR, "keys_reload_failed", "error=%s (the previous keys stay in use)", kl_log_q(q, sizeof q, e.msg));
    kl_audit_event(c->audit, "key_reload_refused", "key=calendar_auth error=%s", kl_log_q(q, sizeof q, e.msg));
  }
  core_config_free(fresh);
  free(fresh);
}
