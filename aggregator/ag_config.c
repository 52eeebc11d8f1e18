/* The aggregator's configuration keys: [server], [limits] and the shared [round]/[parents]
 * (tier.h). deploy/aggregator.conf is the documented sample; keep them in step. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator.h"
#include "keyless/config.h"
#include "keyless/net.h"

#define K(sec, name, type, field, def, min, max, check) \
  (kl_cfg_key_t) { sec, name, type, offsetof(ag_config_t, field), def, min, max, check }
#define N_OWN 6
#define N_KEYS (N_OWN + KL_TIER_N_KEYS + KL_TLS_N_KEYS)

static kl_cfg_key_t keys[N_KEYS];

static void init_keys(void) {
  static const kl_tier_defaults_t td = {"100ms", "238", "4096", "1000000"};
  keys[0] = K("server", "listen", KL_CFG_STR, listen, "127.0.0.1:8090", 0, 0, kl_net_cfg_check_listen);
  keys[1] = K("server", "admin_listen", KL_CFG_STR, admin_listen, "127.0.0.1:8092", 0, 0, kl_net_cfg_check_listen);
  keys[2] = K("limits", "max_connections", KL_CFG_INT, max_connections, "4096", 1, 1000000, NULL);
  keys[3] = K("limits", "idle_timeout", KL_CFG_DURATION, idle_timeout_ms, "5m", 100, 86400000, NULL);
  keys[4] = K("limits", "shutdown_timeout", KL_CFG_DURATION, shutdown_timeout_ms, "5s", 0, 3600000, NULL);
  keys[5] = K("limits", "max_connections_per_address", KL_CFG_INT, max_connections_per_address, "256", 0, 1000000, NULL);
  kl_tier_cfg_keys(offsetof(ag_config_t, tier), &td, keys + N_OWN);
  kl_tls_cfg_keys(offsetof(ag_config_t, tls), keys + N_OWN + KL_TIER_N_KEYS);
}

int ag_config_load(const char *path, ag_config_t *cfg, kl_err_t *e) {
  init_keys();
  memset(cfg, 0, sizeof *cfg);
  if ((cfg->path = strdup(path)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  int r = kl_cfg_load(path, keys, N_KEYS, cfg, e);
  if (r) return r;
  if (cfg->listen[0] == '\0') return kl_err_set(e, KL_EINVAL, "%s: [server] listen is empty: nothing to serve", path);
  bool any = false;
  for (int i = 0; i < KL_TIER_MAX_PARENTS; i++) any |= cfg->tier.parent[i][0] != '\0';
  if (!any) return kl_err_set(e, KL_EINVAL, "%s: [parents] names no parent (parent1 = host:port)", path);
  return 0;
}

void ag_config_free(ag_config_t *cfg) {
  init_keys();
  kl_cfg_free(keys, N_KEYS, cfg);
  free(cfg->path);
  cfg->path = NULL;
}
