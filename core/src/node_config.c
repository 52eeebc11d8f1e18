/* The core's configuration keys. deploy/core.conf is the documented sample; keep them in step. */
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/config.h"
#include "keyless/frameclient.h"
#include "keyless/log.h"
#include "keyless/net.h"
#include "keyless/pki.h"
#include "keyless/tls.h"
#include "authkeys.h"
#include "node.h"

static int check_nonempty(const void *f, char *msg, size_t n) {
  if ((*(char *const *)f)[0] != '\0') return 0;
  snprintf(msg, n, "must not be empty");
  return -1;
}

#define K(sec, name, type, field, def, min, max, check) \
  {sec, name, type, offsetof(core_config_t, field), def, min, max, check}

static const kl_cfg_key_t keys[] = {
    K("node", "id", KL_CFG_INT, id, NULL, 1, KL_CORE_MAX_MEMBERS, NULL),
    K("node", "data_dir", KL_CFG_STR, data_dir, NULL, 0, 0, check_nonempty),
    K("cluster", "member1", KL_CFG_STR, member[0], "", 0, 0, NULL),
    K("cluster", "member2", KL_CFG_STR, member[1], "", 0, 0, NULL),
    K("cluster", "member3", KL_CFG_STR, member[2], "", 0, 0, NULL),
    K("cluster", "member4", KL_CFG_STR, member[3], "", 0, 0, NULL),
    K("cluster", "member5", KL_CFG_STR, member[4], "", 0, 0, NULL),
    K("cluster", "member6", KL_CFG_STR, member[5], "", 0, 0, NULL),
    K("cluster", "member7", KL_CFG_STR, member[6], "", 0, 0, NULL),
    K("cluster", "bootstrap", KL_CFG_BOOL, bootstrap, "yes", 0, 0, NULL),
    K("server", "replication_listen", KL_CFG_STR, replication_listen, "", 0, 0, NULL),
    K("server", "admin_listen", KL_CFG_STR, admin_listen, "", 0, 0, kl_net_cfg_check_listen),
    K("server", "metrics_listen", KL_CFG_STR, metrics_listen, "", 0, 0, kl_net_cfg_check_listen),
    K("calendar", "genesis", KL_CFG_INT, genesis, "0", 0, (int64_t)1 << 40, NULL),
    K("calendar", "map_size", KL_CFG_SIZE, map_size, "256G", 1 << 20, (int64_t)1 << 42, NULL),
    K("round", "grace", KL_CFG_DURATION, grace_ms, "50ms", 10, 900, NULL),
    K("round", "algorithm", KL_CFG_STR, algorithm, "SHA-256", 0, 0, check_nonempty),
    K("round", "max_level", KL_CFG_INT, max_level, "255", 1, 255, NULL),
    K("round", "max_pending", KL_CFG_INT, max_pending, "100000", 1, 10000000, NULL),
    K("server", "max_connections", KL_CFG_INT, max_connections, "16384", 16, 1000000, NULL),
    K("server", "max_connections_per_address", KL_CFG_INT, max_connections_per_address, "256", 0, 1000000, NULL),
    K("server", "idle_timeout", KL_CFG_DURATION, idle_timeout_ms, "10m", 1000, 86400000, NULL),
    K("keys", "calendar_auth_cert", KL_CFG_STR, auth_cert, NULL, 0, 0, check_nonempty),
    K("keys", "calendar_auth_key", KL_CFG_STR, auth_key, NULL, 0, 0, check_nonempty),
    K("keys", "allow_clear_key", KL_CFG_BOOL, allow_clear_key, "no", 0, 0, NULL),
    K("keys", "next_calendar_auth_cert", KL_CFG_STR, next_auth_cert, "", 0, 0, NULL),
    K("keys", "next_calendar_auth_key", KL_CFG_STR, next_auth_key, "", 0, 0, NULL),
    K("keys", "next_calendar_auth_from", KL_CFG_STR, next_auth_from, "", 0, 0, NULL),
    K("raft", "election_timeout", KL_CFG_DURATION, election_ms, "1s", 100, 60000, NULL),
    K("raft", "heartbeat", KL_CFG_DURATION, heartbeat_ms, "100ms", 10, 10000, NULL),
    K("raft", "snapshot_threshold", KL_CFG_INT, snapshot_threshold, "1024", 8, 10000000, NULL),
    K("raft", "snapshot_trailing", KL_CFG_INT, snapshot_trailing, "256", 2, 10000000, NULL),
    K("clock", "max_skew", KL_CFG_DURATION, max_skew_ms, "500ms", 10, 60000, NULL),
    K("audit", "enabled", KL_CFG_BOOL, audit_enabled, "yes", 0, 0, NULL),
    K("audit", "gateway", KL_CFG_STR, audit_gateway, "", 0, 0, NULL),
    K("audit", "user", KL_CFG_STR, audit_user, "", 0, 0, NULL),
    K("audit", "key", KL_CFG_STR, audit_key, "", 0, 0, NULL),
    K("audit", "timeout", KL_CFG_DURATION, audit_timeout_ms, "5s", 100, 60000, NULL),
};

#define N_BASE (sizeof keys / sizeof keys[0])
#define N_KEYS (N_BASE + KL_TLS_N_KEYS)

/* The table above plus the shared [tls] keys. */
static const kl_cfg_key_t *all_keys(void) {
  static kl_cfg_key_t all[N_KEYS];
  if (all[0].name == NULL) kl_tls_cfg_table(keys, N_BASE, offsetof(core_config_t, tls), all);
  return all;
}

/* A member address: host:port, IPv4:port or [IPv6]:port. A name in an address this node listens
 * on (resolve = true) is resolved once, here, into its first address (listeners take numeric
 * addresses only); failing that is an error, as start would fail. Names in the other members'
 * addresses (Raft, internal, replication) are resolved by their links on every connect
 * (raft_tls.c, frameclient.c), so here a failure is only a warning (DNS may come up later). */
static int member_addr(const char *path, size_t k, const char *what, char *addr, size_t cap, bool resolve, kl_err_t *e) {
  char host[256], port[8], q[300];
  struct sockaddr_storage ss;
  if (kl_frame_addr_split(addr, host, sizeof host, port, sizeof port, e))
    return kl_err_wrap(e, "%s: [cluster] member%zu: %s", path, k + 1, what);
  if (kl_net_parse_addr(addr, &ss, NULL) == 0) return 0; /* numeric already */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0 || res == NULL) {
    if (res) freeaddrinfo(res);
    if (resolve)
      return kl_err_set(e, KL_EINVAL, "%s: [cluster] member%zu: %s '%s': '%s' does not resolve (%s); Raft addresses and "
                        "this node's own addresses are resolved once at start", path, k + 1, what, addr, host, gai_strerror(rc));
    kl_log(KL_LOG_WARN, "member_unresolved", "member=%zu kind=\"%s\" addr=%s error=%s (a warning: resolved again on every connect)",
           k + 1, what, addr, kl_log_q(q, sizeof q, gai_strerror(rc)));
    return 0;
  }
  if (resolve) {
    char ip[INET6_ADDRSTRLEN] = "";
    if (res->ai_family == AF_INET6) {
      uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
      snprintf(addr, cap, "[%s]:%s", ip, port);
    } else {
      uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
      snprintf(addr, cap, "%s:%s", ip, port);
    }
    kl_log(KL_LOG_INFO, "member_resolved", "member=%zu kind=\"%s\" name=%s:%s addr=%s", k + 1, what, host, port, addr);
  }
  freeaddrinfo(res);
  return 0;
}

/* memberN = RAFT_ADDR INTERNAL_ADDR [REPLICATION_ADDR]: member N has Raft id N. */
static int parse_members(const char *path, core_config_t *cfg, kl_err_t *e) {
  for (size_t k = 0; k < KL_CORE_MAX_MEMBERS; k++) {
    const char *v = cfg->member[k];
    if (v == NULL || v[0] == '\0') continue;
    core_member_t *m = &cfg->m[cfg->n_members];
    char extra[8] = "";
    int n = sscanf(v, "%63s %63s %63s %7s", m->raft_addr, m->internal_addr, m->replication_addr, extra);
    if (n < 2 || n > 3)
      return kl_err_set(e, KL_EINVAL, "%s: [cluster] member%zu = \"%s\": want RAFT_ADDR INTERNAL_ADDR [REPLICATION_ADDR]",
                        path, k + 1, v);
    if (n == 2) m->replication_addr[0] = '\0';
    m->id = k + 1;
    bool self = m->id == (uint64_t)cfg->id;
    int r;
    if ((r = member_addr(path, k, "raft address", m->raft_addr, sizeof m->raft_addr, self, e)) ||
        (r = member_addr(path, k, "internal address", m->internal_addr, sizeof m->internal_addr, self, e)) ||
        (n == 3 && (r = member_addr(path, k, "replication address", m->replication_addr, sizeof m->replication_addr, self, e))))
      return r;
    cfg->n_members++;
  }
  if (core_member(cfg, (uint64_t)cfg->id) == NULL)
    return kl_err_set(e, KL_EINVAL, "%s: [node] id %lld has no [cluster] member%lld", path, (long long)cfg->id, (long long)cfg->id);
  return 0;
}

/* [keys]: a calendar-auth key is a signing key, never the node's TLS (transport) key: not the
 * same file or token object, and not the same key in another file. Checked for the current and
 * the next key. */
static int check_tls_key(const char *path, const core_config_t *cfg, const char *name, const char *cert, const char *key,
                         kl_err_t *e) {
  if (cfg->tls.insecure) return 0;
  bool same = cfg->tls.key && cfg->tls.key[0] && kl_keyuri_same(key, cfg->tls.key);
  if (!same && cfg->tls.cert && cfg->tls.cert[0] && kl_cert_same_key(cert, cfg->tls.cert, &same, e) != 0)
    same = false; /* an unreadable certificate is reported when it is opened */
  if (same)
    return kl_err_set(e, KL_EINVAL,
                      "%s: [keys] %s_key = %s and [tls] key = %s are the same key: the calendar-auth (signing) "
                      "key and the TLS (transport) key must be different keys with different custodians (docs/keys.md)",
                      path, name, key, cfg->tls.key ? cfg->tls.key : "");
  return 0;
}

/* The next key's three settings go together; its first second parses. Then every key is opened
 * here, at load, so that --check-config finds a wrong PIN, passphrase or URI (authkeys.h). */
static int open_keys(const char *path, core_config_t *cfg, kl_err_t *e) {
  core_authkey_spec_t spec[CORE_AUTHKEYS_MAX] = {{cfg->auth_cert, cfg->auth_key, 0}};
  size_t n = 1;
  int set = (cfg->next_auth_cert[0] != '\0') + (cfg->next_auth_key[0] != '\0') + (cfg->next_auth_from[0] != '\0');
  int r;
  if ((r = check_tls_key(path, cfg, "calendar_auth", cfg->auth_cert, cfg->auth_key, e))) return r;
  if (set != 0 && set != 3)
    return kl_err_set(e, KL_EINVAL, "%s: [keys] next_calendar_auth_cert, next_calendar_auth_key and "
                      "next_calendar_auth_from go together: set all three or none", path);
  if (set == 3) {
    if ((r = core_authkeys_parse_time(cfg->next_auth_from, &spec[1].from, e)))
      return kl_err_wrap(e, "%s: [keys] next_calendar_auth_from", path);
    if ((r = check_tls_key(path, cfg, "next_calendar_auth", cfg->next_auth_cert, cfg->next_auth_key, e))) return r;
    spec[1].cert = cfg->next_auth_cert;
    spec[1].key = cfg->next_auth_key;
    n = 2;
  }
  return core_authkeys_open(path, spec, n, cfg->allow_clear_key ? KL_KEY_ALLOW_CLEAR : 0, &cfg->authkeys, e);
}

const core_member_t *core_member(const core_config_t *cfg, uint64_t id) {
  for (size_t k = 0; k < cfg->n_members; k++)
    if (cfg->m[k].id == id) return &cfg->m[k];
  return NULL;
}

int core_config_load(const char *path, core_config_t *cfg, kl_err_t *e) {
  memset(cfg, 0, sizeof *cfg);
  if ((cfg->path = strdup(path)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  int r = kl_cfg_load(path, all_keys(), N_KEYS, cfg, e);
  if (r) return r;
  if ((cfg->alg = kl_hash_from_name(cfg->algorithm)) < 0 || !kl_hash_trusted(cfg->alg))
    return kl_err_set(e, KL_EINVAL, "%s: [round] algorithm = \"%s\": not a hash algorithm usable for signing", path,
                      cfg->algorithm);
  unsigned depth = kl_core_rounds_depth((size_t)cfg->max_pending);
  if (cfg->max_level < (int64_t)depth) /* a round of max_pending requests is `depth` levels deep */
    return kl_err_set(e, KL_EINVAL,
                      "%s: [round] max_level = %lld: a round of max_pending = %lld requests is %u levels deep, which "
                      "leaves no level for requests; raise max_level or lower max_pending",
                      path, (long long)cfg->max_level, (long long)cfg->max_pending, depth);
  if (cfg->n_members == 0 && (r = parse_members(path, cfg, e))) return r;
  if (cfg->bootstrap && cfg->n_members != 1 && cfg->n_members != 3 && cfg->n_members != 5)
    return kl_err_set(e, KL_EINVAL, "%s: [cluster] members: %zu members; bootstrap 1, 3 or 5 voters", path, cfg->n_members);
  if ((r = open_keys(path, cfg, e))) return r;
  const core_member_t *self = core_member(cfg, (uint64_t)cfg->id);
  if (cfg->replication_listen[0] == '\0' && self->replication_addr[0]) {
    free(cfg->replication_listen);
    if ((cfg->replication_listen = strdup(self->replication_addr)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  return 0;
}

void core_config_free(core_config_t *cfg) {
  kl_cfg_free(all_keys(), N_KEYS, cfg);
  core_authkeys_free(cfg->authkeys);
  cfg->authkeys = NULL;
  free(cfg->path);
  cfg->path = NULL;
}
