/* The [round] and [parents] keys of the daemons that run a tier (keyless/tier.h). */
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keyless/config.h"
#include "keyless/frameclient.h"
#include "keyless/log.h"
#include "keyless/hash.h"
#include "keyless/net.h"
#include "keyless/tier.h"

/* A parent's address (kl_frame_check_dial). */
static int check_parent(const void *f, char *msg, size_t n) {
  return kl_frame_check_dial(*(char *const *)f, "a parent's", "parent_unresolved", "parent", msg, n);
}

static int check_mode(const void *f, char *msg, size_t n) {
  const char *s = *(char *const *)f;
  if (strcmp(s, "all") == 0 || strcmp(s, "failover") == 0) return 0;
  snprintf(msg, n, "expected 'all' or 'failover'");
  return -1;
}

static int check_alg(const void *f, char *msg, size_t n) {
  int alg = kl_hash_from_name(*(char *const *)f);
  if (alg >= 0 && kl_hash_trusted(alg)) return 0;
  snprintf(msg, n, "not a trusted hash algorithm (SHA-256, SHA-384, SHA-512, SHA3-256, ...)");
  return -1;
}

#define OFF(field) (at + offsetof(kl_tier_settings_t, field))

void kl_tier_cfg_keys(size_t at, const kl_tier_defaults_t *d, void *out) {
  static const char *const pnames[KL_TIER_MAX_PARENTS] = {"parent1", "parent2", "parent3", "parent4",
                                                          "parent5", "parent6", "parent7", "parent8"};
  kl_cfg_key_t *k = out;
  size_t i = 0;
  k[i++] = (kl_cfg_key_t){"round", "name", KL_CFG_STR, OFF(name), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"round", "algorithm", KL_CFG_STR, OFF(algorithm), "SHA-256", 0, 0, check_alg};
  k[i++] = (kl_cfg_key_t){"round", "period", KL_CFG_DURATION, OFF(period_ms), d->period, 10, 10000, NULL};
  k[i++] = (kl_cfg_key_t){"round", "lead", KL_CFG_DURATION, OFF(lead_ms), "20ms", 0, 500, NULL};
  k[i++] = (kl_cfg_key_t){"round", "max_level", KL_CFG_INT, OFF(max_level), d->max_level, 2, 255, NULL};
  k[i++] = (kl_cfg_key_t){"round", "max_requests", KL_CFG_INT, OFF(max_requests), d->max_requests, 1, 1 << 20, NULL};
  k[i++] = (kl_cfg_key_t){"round", "per_client", KL_CFG_INT, OFF(per_client), "0", 0, 1 << 20, NULL};
  k[i++] = (kl_cfg_key_t){"round", "max_pending", KL_CFG_INT, OFF(max_pending), d->max_pending, 1, 100000000, NULL};
  for (size_t p = 0; p < KL_TIER_MAX_PARENTS; p++)
    k[i++] = (kl_cfg_key_t){"parents", pnames[p], KL_CFG_STR, OFF(parent[p]), "", 0, 0, check_parent};
  k[i++] = (kl_cfg_key_t){"parents", "mode", KL_CFG_STR, OFF(mode), "all", 0, 0, check_mode};
  k[i++] = (kl_cfg_key_t){"parents", "parent_timeout", KL_CFG_DURATION, OFF(parent_timeout_ms), "2s", 10, 600000, NULL};
  k[i++] = (kl_cfg_key_t){"parents", "round_timeout", KL_CFG_DURATION, OFF(round_timeout_ms), "5s", 10, 600000, NULL};
  k[i++] = (kl_cfg_key_t){"parents", "heartbeat_interval", KL_CFG_DURATION, OFF(heartbeat_interval_ms), "500ms", 10, 60000,
                          NULL};
  k[i++] = (kl_cfg_key_t){"parents", "heartbeat_timeout", KL_CFG_DURATION, OFF(heartbeat_timeout_ms), "2s", 50,
                          600000, NULL};
  k[i++] = (kl_cfg_key_t){"parents", "unhealthy_after", KL_CFG_DURATION, OFF(unhealthy_after_ms), "5s", 100, 3600000,
                          NULL};
}

int kl_tier_settings_apply(const kl_tier_settings_t *s, const char **parents, char *name_buf, kl_tier_config_t *tc,
                           kl_err_t *e) {
  memset(tc, 0, sizeof *tc);
  size_t n = 0;
  for (size_t i = 0; i < KL_TIER_MAX_PARENTS; i++)
    if (s->parent[i] && s->parent[i][0]) parents[n++] = s->parent[i];
  if (n == 0) return kl_err_set(e, KL_EINVAL, "[parents] names no parent (parent1 = host:port of an aggregator or core node)");
  if (s->name && s->name[0]) snprintf(name_buf, 128, "%s", s->name);
  else if (gethostname(name_buf, 127) != 0) snprintf(name_buf, 128, "keyless");
  name_buf[127] = '\0';
  tc->round.algorithm = kl_hash_from_name(s->algorithm);
  tc->round.max_level = (unsigned)s->max_level;
  tc->round.max_requests = (size_t)s->max_requests;
  tc->round.per_client = (size_t)s->per_client;
  tc->period_ms = s->period_ms;
  tc->lead_ms = s->lead_ms;
  tc->parents = parents;
  tc->n_parents = n;
  tc->parent_mode = strcmp(s->mode, "failover") == 0 ? KL_TIER_FAILOVER : KL_TIER_ALL;
  tc->parent_timeout_ms = s->parent_timeout_ms;
  tc->round_timeout_ms = s->round_timeout_ms;
  tc->heartbeat_interval_ms = s->heartbeat_interval_ms;
  tc->heartbeat_timeout_ms = s->heartbeat_timeout_ms;
  tc->unhealthy_after_ms = s->unhealthy_after_ms;
  if (s->heartbeat_interval_ms >= s->heartbeat_timeout_ms)
    return kl_err_set(e, KL_EINVAL,
                      "[parents] heartbeat_interval (%llu ms) must be shorter than heartbeat_timeout (%llu ms): a quiet "
                      "parent would be marked down between two heartbeats",
                      (unsigned long long)s->heartbeat_interval_ms, (unsigned long long)s->heartbeat_timeout_ms);
  tc->name = name_buf;
  tc->max_pending = (size_t)s->max_pending;
  if (kl_round_max_request_level(&tc->round) == 0)
    return kl_err_set(e, KL_EINVAL, "[round] max_level %lld leaves no level for requests with max_requests %lld",
                      (long long)s->max_level, (long long)s->max_requests);
  return 0;
}
