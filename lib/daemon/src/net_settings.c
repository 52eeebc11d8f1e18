/* The [server] and [limits] keys shared by the KSI-facing daemons (keyless/net.h). */
#include <stddef.h>
#include <stdio.h>

#include <string.h>

#include "keyless/config.h"
#include "keyless/net.h"

int kl_net_cfg_check_listen(const void *f, char *msg, size_t n) {
  const char *s = *(char *const *)f;
  struct sockaddr_storage ss;
  kl_err_t e;
  if (s[0] == '\0' || kl_net_parse_addr(s, &ss, &e) == 0) return 0;
  snprintf(msg, n, "%s", e.msg);
  return -1;
}

#define OFF(field) (at + offsetof(kl_net_settings_t, field))

void kl_net_cfg_keys(size_t at, const kl_net_defaults_t *d, void *out) {
  kl_cfg_key_t *k = out;
  size_t i = 0;
  k[i++] = (kl_cfg_key_t){"server", "http_listen", KL_CFG_STR, OFF(http_listen), d->http, 0, 0, kl_net_cfg_check_listen};
  k[i++] = (kl_cfg_key_t){"server", "tcp_listen", KL_CFG_STR, OFF(tcp_listen), d->tcp, 0, 0, kl_net_cfg_check_listen};
  k[i++] = (kl_cfg_key_t){"server", "admin_listen", KL_CFG_STR, OFF(admin_listen), d->admin, 0, 0, kl_net_cfg_check_listen};
  k[i++] = (kl_cfg_key_t){"limits", "max_pdu_size", KL_CFG_SIZE, OFF(max_pdu_size), "65539", 64, 65539, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "max_header_size", KL_CFG_SIZE, OFF(max_header_size), "8k", 256, 1 << 20, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "max_connections", KL_CFG_INT, OFF(max_connections), d->max_connections, 1,
                          1000000, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "idle_timeout", KL_CFG_DURATION, OFF(idle_timeout_ms), "30s", 100, 86400000, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "write_watermark", KL_CFG_SIZE, OFF(write_watermark), "1M", 4096,
                          (int64_t)1 << 32, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "max_inflight", KL_CFG_INT, OFF(max_inflight), "64", 1, 100000, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "max_requests", KL_CFG_INT, OFF(max_requests), d->max_requests, 1, 10000, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "shutdown_timeout", KL_CFG_DURATION, OFF(shutdown_timeout_ms), "5s", 0, 3600000,
                          NULL};
  k[i++] = (kl_cfg_key_t){"server", "https_listen", KL_CFG_STR, OFF(https_listen), "", 0, 0, kl_net_cfg_check_listen};
  k[i++] = (kl_cfg_key_t){"server", "https_cert", KL_CFG_STR, OFF(https_cert), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"server", "https_key", KL_CFG_STR, OFF(https_key), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "max_connections_per_address", KL_CFG_INT, OFF(max_connections_per_address), "256",
                          0, 1000000, NULL};
  k[i++] = (kl_cfg_key_t){"limits", "max_requests_per_second_per_address", KL_CFG_INT, OFF(rate_key), "0", 0, 10000000,
                          NULL};
}

void kl_net_settings_limits(const kl_net_settings_t *s, kl_net_limits_t *lim) {
  kl_net_limits_default(lim);
  lim->max_body = s->max_pdu_size;
  lim->max_header = s->max_header_size;
  lim->max_connections = (unsigned)s->max_connections;
  lim->idle_timeout_ms = s->idle_timeout_ms;
  lim->write_watermark = s->write_watermark;
  lim->max_inflight = (unsigned)s->max_inflight;
  lim->shutdown_timeout_ms = s->shutdown_timeout_ms;
  lim->max_connections_per_ip = (unsigned)s->max_connections_per_address;
  lim->max_rate_per_ip = (double)s->rate_key;
}

int kl_net_settings_https(const kl_net_settings_t *s, const kl_tls_settings_t *tls, const char *file, kl_tls_ctx_t **out,
                          kl_err_t *e) {
  return kl_tls_https_open(s->https_listen, s->https_cert, s->https_key, tls, file, out, e);
}

bool kl_net_listen_shared(const char *http_listen, const char *tcp_listen) {
  size_t n = strlen(tcp_listen);
  return n > 0 && strcmp(http_listen, tcp_listen) == 0 && !(n >= 2 && strcmp(tcp_listen + n - 2, ":0") == 0);
}
