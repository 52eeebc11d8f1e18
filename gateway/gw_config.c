/* The gateway's configuration keys: the shared [server]/[limits] (net.h) and [round]/[parents]
 * (tier.h) sets, and [auth]. deploy/gateway.conf is the documented sample; keep them in step. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_threads.h"

static int check_users(const void *f, char *msg, size_t n) {
  const char *path = *(char *const *)f;
  if (path[0] != '\0' && access(path, R_OK) == 0) return 0;
  snprintf(msg, n, path[0] ? "cannot read '%.200s'" : "must not be empty", path);
  return -1;
}

static int check_json_api(const void *f, char *msg, size_t n) {
  const char *v = *(char *const *)f;
  if (strcmp(v, "off") == 0 || strcmp(v, "https") == 0 || strcmp(v, "any") == 0) return 0;
  snprintf(msg, n, "'%.100s' is none of off, https, any", v);
  return -1;
}

/* [gateway] threads: N worker loops (gw_threads.h); auto: one per CPU, at most AUTO_MAX. */
#define AUTO_MAX 32

static int parse_threads(const char *v, int *out) {
  if (strcmp(v, "auto") == 0) {
    unsigned n = uv_available_parallelism();
    *out = n < 1 ? 1 : n > AUTO_MAX ? AUTO_MAX : (int)n;
    return 0;
  }
  char *end;
  long n = strtol(v, &end, 10);
  if (end == v || *end != '\0' || n < 1 || n > GW_MAX_THREADS) return -1;
  *out = (int)n;
  return 0;
}

static int check_threads(const void *f, char *msg, size_t n) {
  int t;
  if (parse_threads(*(char *const *)f, &t) == 0) return 0;
  snprintf(msg, n, "'%.100s' is neither auto nor a number of threads from 1 to %d", *(char *const *)f, GW_MAX_THREADS);
  return -1;
}

#define N_KEYS (KL_NET_N_KEYS + KL_TIER_N_KEYS + 1 + KL_TLS_N_KEYS + 4)

static kl_cfg_key_t keys[N_KEYS];

static void init_keys(void) {
  static const kl_net_defaults_t nd = {"127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082", "16384", "64"};
  static const kl_tier_defaults_t td = {"100ms", "200", "65536", "1000000"};
  kl_net_cfg_keys(offsetof(gw_config_t, net), &nd, keys);
  kl_tier_cfg_keys(offsetof(gw_config_t, tier), &td, keys + KL_NET_N_KEYS);
  keys[KL_NET_N_KEYS + KL_TIER_N_KEYS] = (kl_cfg_key_t){"auth", "users_file", KL_CFG_STR,
                                                        offsetof(gw_config_t, users_file), NULL, 0, 0, check_users};
  kl_tls_cfg_keys(offsetof(gw_config_t, tls), keys + KL_NET_N_KEYS + KL_TIER_N_KEYS + 1);
  kl_cfg_key_t *c = keys + KL_NET_N_KEYS + KL_TIER_N_KEYS + 1 + KL_TLS_N_KEYS;
  c[0] = (kl_cfg_key_t){"clients", "announce_max_level", KL_CFG_INT, offsetof(gw_config_t, announce_max_level), "20",
                        0, 255, NULL};
  c[1] = (kl_cfg_key_t){"clients", "announce_parents", KL_CFG_BOOL, offsetof(gw_config_t, announce_parents), "no",
                        0, 0, NULL};
  c[2] = (kl_cfg_key_t){"clients", "json_api", KL_CFG_STR, offsetof(gw_config_t, json_api), "https", 0, 0,
                        check_json_api};
  c[3] = (kl_cfg_key_t){"gateway", "threads", KL_CFG_STR, offsetof(gw_config_t, threads), "1", 0, 0, check_threads};
}

int gw_config_load(const char *path, gw_config_t *cfg, kl_err_t *e) {
  init_keys();
  memset(cfg, 0, sizeof *cfg);
  if ((cfg->path = strdup(path)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  int r = kl_cfg_load(path, keys, N_KEYS, cfg, e);
  if (r) return r;
  if (parse_threads(cfg->threads, &cfg->n_threads))
    return kl_err_set(e, KL_EINVAL, "%s: [gateway] threads: '%s' is neither auto nor 1..%d", path, cfg->threads,
                      GW_MAX_THREADS);
  if (cfg->net.http_listen[0] == '\0' && cfg->net.tcp_listen[0] == '\0')
    return kl_err_set(e, KL_EINVAL, "%s: [server] http_listen and tcp_listen are both empty: nothing to serve", path);
  bool any = false;
  for (int i = 0; i < KL_TIER_MAX_PARENTS; i++) any |= cfg->tier.parent[i][0] != '\0';
  if (!any) return kl_err_set(e, KL_EINVAL, "%s: [parents] names no parent (parent1 = host:port)", path);
  return 0;
}

void gw_config_free(gw_config_t *cfg) {
  init_keys();
  kl_cfg_free(keys, N_KEYS, cfg);
  free(cfg->path);
  cfg->path = NULL;
}
