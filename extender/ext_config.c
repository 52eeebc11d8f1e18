/* The extender's configuration keys. deploy/extender.conf is the documented sample; keep the
 * two in step. */
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "extender.h"
#include "keyless/frameclient.h"
#include "keyless/log.h"

static int check_addr(const void *f, char *msg, size_t n, bool may_be_empty) {
  const char *s = *(char *const *)f;
  if (s[0] == '\0') {
    if (may_be_empty) return 0;
    snprintf(msg, n, "must not be empty");
    return -1;
  }
  struct sockaddr_storage ss;
  kl_err_t e;
  if (kl_net_parse_addr(s, &ss, &e) == 0) return 0;
  snprintf(msg, n, "%s", e.msg);
  return -1;
}

static int check_listen_opt(const void *f, char *msg, size_t n) { return check_addr(f, msg, n, true); }

/* A core's replication port, by number or host name (kl_frame_check_dial). */
static int check_upstream(const void *f, char *msg, size_t n) {
  return kl_frame_check_dial(*(char *const *)f, "a core's replication", "upstream_unresolved", "upstream", msg, n);
}

static int check_nonempty(const void *f, char *msg, size_t n) {
  if ((*(char *const *)f)[0] != '\0') return 0;
  snprintf(msg, n, "must not be empty");
  return -1;
}

static int check_readable(const void *f, char *msg, size_t n) {
  const char *path = *(char *const *)f;
  if (path[0] == '\0') return 0; /* "not configured" where that is allowed; required keys use check_nonempty too */
  if (access(path, R_OK) == 0) return 0;
  snprintf(msg, n, "cannot read '%.200s'", path);
  return -1;
}

/* The publications file may appear after the extender starts (a new network publishes its
 * first second only once the calendar has one): until then GET /publications.bin answers 503.
 * What must exist is the directory it will be written to. */
static int check_pubfile(const void *f, char *msg, size_t n) {
  const char *path = *(char *const *)f;
  if (path[0] == '\0' || access(path, R_OK) == 0) return 0;
  if (access(path, F_OK) == 0) return check_readable(f, msg, n);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) return 0;
  if (slash == dir) slash[1] = '\0';
  else *slash = '\0';
  if (access(dir, W_OK | X_OK) == 0 || access(dir, X_OK) == 0) return 0;
  snprintf(msg, n, "'%.200s' does not exist and neither does its directory", path);
  return -1;
}

static int check_users(const void *f, char *msg, size_t n) {
  if (check_nonempty(f, msg, n)) return -1;
  return check_readable(f, msg, n);
}

#define K(sec, name, type, field, def, min, max, check) \
  {sec, name, type, offsetof(ext_config_t, field), def, min, max, check}

static const kl_cfg_key_t keys[] = {
    K("server", "http_listen", KL_CFG_STR, http_listen, "127.0.0.1:8010", 0, 0, check_listen_opt),
    K("server", "tcp_listen", KL_CFG_STR, tcp_listen, "127.0.0.1:8011", 0, 0, check_listen_opt),
    K("server", "admin_listen", KL_CFG_STR, admin_listen, "127.0.0.1:8012", 0, 0, check_listen_opt),
    K("calendar", "dir", KL_CFG_STR, calendar_dir, NULL, 0, 0, check_nonempty),
    K("auth", "users_file", KL_CFG_STR, users_file, NULL, 0, 0, check_users),
    K("publications", "file", KL_CFG_STR, publications_file, "", 0, 0, check_pubfile),
    K("replication", "upstream", KL_CFG_STR, upstream, "", 0, 0, check_upstream),
    K("replication", "upstream1", KL_CFG_STR, upstream_list[0], "", 0, 0, check_upstream),
    K("replication", "upstream2", KL_CFG_STR, upstream_list[1], "", 0, 0, check_upstream),
    K("replication", "upstream3", KL_CFG_STR, upstream_list[2], "", 0, 0, check_upstream),
    K("replication", "upstream4", KL_CFG_STR, upstream_list[3], "", 0, 0, check_upstream),
    K("replication", "upstream5", KL_CFG_STR, upstream_list[4], "", 0, 0, check_upstream),
    K("replication", "upstream6", KL_CFG_STR, upstream_list[5], "", 0, 0, check_upstream),
    K("replication", "upstream7", KL_CFG_STR, upstream_list[6], "", 0, 0, check_upstream),
    K("replication", "upstream8", KL_CFG_STR, upstream_list[7], "", 0, 0, check_upstream),
    K("replication", "silence_timeout", KL_CFG_DURATION, silence_timeout_ms, "3s", 2000, 3600000, NULL),
    K("replication", "genesis", KL_CFG_INT, genesis, "0", 0, (int64_t)1 << 40, NULL),
    K("replication", "calendar_auth_cert", KL_CFG_STR, calendar_auth_cert, "", 0, 0, check_readable),
    K("replication", "insecure", KL_CFG_BOOL, insecure, "no", 0, 0, NULL),
    K("replication", "max_lag", KL_CFG_DURATION, max_lag_ms, "10s", 0, 86400000, NULL),
    K("server", "replica_wait", KL_CFG_DURATION, replica_wait_ms, "2s", 0, 10000, NULL),
    K("server", "replica_wait_max", KL_CFG_INT, replica_wait_max, "1024", 1, 1000000, NULL),
    K("server", "workers", KL_CFG_INT, workers, "0", 0, 256, NULL),
    K("server", "https_listen", KL_CFG_STR, https_listen, "", 0, 0, check_listen_opt),
    K("server", "https_cert", KL_CFG_STR, https_cert, "", 0, 0, NULL),
    K("server", "https_key", KL_CFG_STR, https_key, "", 0, 0, NULL),
    K("limits", "max_connections_per_address", KL_CFG_INT, max_connections_per_address, "256", 0, 1000000, NULL),
    K("limits", "max_requests_per_second_per_address", KL_CFG_INT, rate_per_address, "0", 0, 10000000, NULL),
    K("limits", "max_pdu_size", KL_CFG_SIZE, max_pdu_size, "65539", 64, 65539, NULL),
    K("limits", "max_header_size", KL_CFG_SIZE, max_header_size, "8k", 256, 1 << 20, NULL),
    K("limits", "max_connections", KL_CFG_INT, max_connections, "1024", 1, 1000000, NULL),
    K("limits", "idle_timeout", KL_CFG_DURATION, idle_timeout_ms, "30s", 100, 86400000, NULL),
    K("limits", "write_watermark", KL_CFG_SIZE, write_watermark, "1M", 4096, (int64_t)1 << 32, NULL),
    K("limits", "max_inflight", KL_CFG_INT, max_inflight, "64", 1, 100000, NULL),
    K("limits", "max_requests", KL_CFG_INT, max_requests, "16", 1, 1000, NULL),
    K("limits", "shutdown_timeout", KL_CFG_DURATION, shutdown_timeout_ms, "5s", 0, 3600000, NULL),
};

void ext_config_free_certs(uint8_t **ders, size_t *lens, size_t n) {
  for (size_t k = 0; ders != NULL && k < n; k++) OPENSSL_free(ders[k]);
  free(ders);
  free(lens);
}

static void free_certs(ext_config_t *cfg) {
  ext_config_free_certs(cfg->auth_ders, cfg->auth_lens, cfg->n_auth);
  cfg->auth_ders = NULL;
  cfg->auth_lens = NULL;
  cfg->n_auth = 0;
}

/* Every certificate in the PEM file, as DER. At most 64: a trust list, not a CA bundle. */
static int load_certs(const char *path, const char *file, uint8_t ***ders_out, size_t **lens_out, size_t *n_out,
                      kl_err_t *e) {
  BIO *bio = BIO_new_file(file, "r");
  X509 *x;
  int r = 0;
  size_t n = 0;
  *ders_out = NULL;
  *lens_out = NULL;
  *n_out = 0;
  if (bio == NULL) {
    ERR_clear_error();
    return kl_err_set(e, KL_EINVAL, "%s: [replication] calendar_auth_cert: cannot read '%.200s'", path, file);
  }
  uint8_t **ders = calloc(64, sizeof *ders);
  size_t *lens = calloc(64, sizeof *lens);
  if (ders == NULL || lens == NULL) {
    BIO_free(bio);
    free(ders);
    free(lens);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    X509_free(x);
    if (len <= 0 || n == 64) {
      OPENSSL_free(der);
      r = kl_err_set(e, KL_EINVAL, "%s: [replication] calendar_auth_cert: '%.200s' holds %s", path, file,
                     len <= 0 ? "a certificate that cannot be encoded" : "more than 64 certificates");
      break;
    }
    ders[n] = der;
    lens[n++] = (size_t)len;
  }
  unsigned long err = ERR_peek_last_error();
  ERR_clear_error();
  BIO_free(bio);
  /* The end of the file ends the loop with "no start line"; anything else is a broken PEM block. */
  if (r == 0 && err != 0 && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE))
    r = kl_err_set(e, KL_EINVAL, "%s: [replication] calendar_auth_cert: '%.200s' holds a malformed PEM certificate", path,
                   file);
  if (r == 0 && n == 0)
    r = kl_err_set(e, KL_EINVAL, "%s: [replication] calendar_auth_cert: '%.200s' holds no PEM certificate", path, file);
  if (r) {
    ext_config_free_certs(ders, lens, n);
    return r;
  }
  *ders_out = ders;
  *lens_out = lens;
  *n_out = n;
  return 0;
}

/* upstream, then upstream1..upstream8, the empty ones left out: the cores in the order they are
 * tried. A core named twice is a mistake (a typo, or a list edited in a hurry). */
static int upstream_list(const char *path, ext_config_t *cfg, kl_err_t *e) {
  const char *all[EXT_MAX_UPSTREAMS + 1];
  all[0] = cfg->upstream;
  for (size_t k = 0; k < EXT_MAX_UPSTREAMS; k++) all[k + 1] = cfg->upstream_list[k];
  cfg->n_upstreams = 0;
  for (size_t k = 0; k <= EXT_MAX_UPSTREAMS; k++) {
    if (all[k][0] == '\0') continue;
    for (size_t j = 0; j < cfg->n_upstreams; j++)
      if (strcmp(cfg->upstreams[j], all[k]) == 0)
        return kl_err_set(e, KL_EINVAL, "%s: [replication] names the core '%.100s' twice (upstream, upstream1..8)",
                          path, all[k]);
    cfg->upstreams[cfg->n_upstreams++] = all[k];
  }
  return 0;
}

#define N_BASE (sizeof keys / sizeof keys[0])
#define N_KEYS (N_BASE + KL_TLS_N_KEYS)

/* The table above plus the shared [tls] keys. */
static const kl_cfg_key_t *all_keys(void) {
  static kl_cfg_key_t all[N_KEYS];
  if (all[0].name == NULL) kl_tls_cfg_table(keys, N_BASE, offsetof(ext_config_t, tls), all);
  return all;
}

int ext_config_load(const char *path, ext_config_t *cfg, kl_err_t *e) {
  memset(cfg, 0, sizeof *cfg);
  if ((cfg->path = strdup(path)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  int r = kl_cfg_load(path, all_keys(), N_KEYS, cfg, e);
  if (r) return r;
  if (cfg->http_listen[0] == '\0' && cfg->tcp_listen[0] == '\0')
    return kl_err_set(e, KL_EINVAL, "%s: [server] http_listen and tcp_listen are both empty: nothing to serve", path);
  if ((r = upstream_list(path, cfg, e))) return r;
  if (cfg->n_upstreams > 0 && cfg->calendar_auth_cert[0] == '\0' && !cfg->insecure)
    return kl_err_set(e, KL_EINVAL,
                      "%s: [replication] calendar_auth_cert is required with upstream: the certificate(s) the core's "
                      "batches must be signed with (or [replication] insecure = yes, for tests only)",
                      path);
  if (cfg->calendar_auth_cert[0] != '\0' &&
      (r = load_certs(path, cfg->calendar_auth_cert, &cfg->auth_ders, &cfg->auth_lens, &cfg->n_auth, e)))
    return r;
  return 0;
}

void ext_config_free(ext_config_t *cfg) {
  free_certs(cfg);
  kl_cfg_free(all_keys(), N_KEYS, cfg);
  free(cfg->path);
  cfg->path = NULL;
}

void ext_config_limits(const ext_config_t *cfg, kl_net_limits_t *lim) {
  kl_net_limits_default(lim);
  lim->max_body = cfg->max_pdu_size;
  lim->max_header = cfg->max_header_size;
  lim->max_connections = (unsigned)cfg->max_connections;
  lim->idle_timeout_ms = cfg->idle_timeout_ms;
  lim->write_watermark = cfg->write_watermark;
  lim->max_inflight = (unsigned)cfg->max_inflight;
  lim->shutdown_timeout_ms = cfg->shutdown_timeout_ms;
  lim->max_connections_per_ip = (unsigned)cfg->max_connections_per_address;
  lim->max_rate_per_ip = (double)cfg->rate_per_address;
}
