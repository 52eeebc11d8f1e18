/* The [tls] keys every daemon has (keyless/tls.h), and opening the daemon's mutual context. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "keyless/config.h"
#include "keyless/log.h"
#include "keyless/tls.h"

#define OFF(field) (at + offsetof(kl_tls_settings_t, field))

void kl_tls_cfg_keys(size_t at, void *out) {
  kl_cfg_key_t *k = out;
  size_t i = 0;
  k[i++] = (kl_cfg_key_t){"tls", "ca", KL_CFG_STR, OFF(ca), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"tls", "cert", KL_CFG_STR, OFF(cert), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"tls", "key", KL_CFG_STR, OFF(key), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"tls", "crl", KL_CFG_STR, OFF(crl), "", 0, 0, NULL};
  k[i++] = (kl_cfg_key_t){"tls", "insecure", KL_CFG_BOOL, OFF(insecure), "no", 0, 0, NULL};
}

int kl_tls_https_open(const char *listen, const char *cert, const char *key, const kl_tls_settings_t *tls,
                      const char *file, kl_tls_ctx_t **out, kl_err_t *e) {
  *out = NULL;
  if (listen[0] == '\0') return 0;
  kl_tls_files_t f = {NULL, cert[0] ? cert : tls->cert, key[0] ? key : tls->key, NULL};
  if (!f.cert[0] || !f.key[0])
    return kl_err_set(e, KL_EINVAL, "%s: [server] https_listen needs https_cert and https_key (or a [tls] cert and key)",
                      file);
  if (kl_tls_ctx_create(KL_TLS_HTTPS, &f, out, e)) return kl_err_wrap(e, "%s: [server] https", file);
  return 0;
}

void kl_tls_cfg_table(const void *base, size_t n_base, size_t tls_at, void *out) {
  memcpy(out, base, n_base * sizeof(kl_cfg_key_t));
  kl_tls_cfg_keys(tls_at, (kl_cfg_key_t *)out + n_base);
}

int kl_tls_settings_open(const kl_tls_settings_t *s, const char *file, unsigned role, const char *id, kl_tls_ctx_t **out,
                         kl_err_t *e) {
  *out = NULL;
  if (s->insecure) {
    if (s->cert[0] || s->key[0])
      return kl_err_set(e, KL_EINVAL, "%s: [tls] insecure = yes with a certificate: choose one", file);
    kl_log(KL_LOG_WARN, "INSECURE",
           "tls=off file=%s msg=\"node links are plain TCP: anyone who reaches a port can impersonate a node "
           "(tests only; never in production)\"",
           file);
    return 0;
  }
  const char *missing = !s->ca[0] ? "ca" : !s->cert[0] ? "cert" : !s->key[0] ? "key" : NULL;
  if (missing)
    return kl_err_set(e, KL_EINVAL, "%s: [tls] %s is required (mutual TLS on every node link; insecure = yes for tests only)",
                      file, missing);
  kl_tls_files_t f = {s->ca, s->cert, s->key, s->crl[0] ? s->crl : NULL};
  int r = kl_tls_ctx_create(KL_TLS_MUTUAL, &f, out, e);
  if (r) return kl_err_wrap(e, "%s: [tls]", file);
  const kl_peer_t *self = kl_tls_ctx_self(*out);
  if (self->role != role || (id && strcmp(self->id, id) != 0)) {
    char want[96];
    snprintf(want, sizeof want, "%s/%s", kl_role_name(role), id ? id : "*");
    r = kl_err_set(e, KL_EPKI, "%s: [tls] cert = %s names %s/%s, but this node is %s", file, s->cert,
                   self->role ? kl_role_name(self->role) : "nothing", self->id, want);
    kl_tls_ctx_unref(*out);
    *out = NULL;
    return r;
  }
  kl_log(KL_LOG_INFO, "tls", "role=%s id=%s serial=%s", kl_role_name(self->role), self->id, self->serial);
  return 0;
}

void kl_tls_reload_logged(kl_tls_ctx_t *t, const char *what) {
  kl_err_t e = {0};
  char q[600];
  if (t == NULL) return;
  if (kl_tls_ctx_reload(t, &e)) {
    kl_log(KL_LOG_ERROR, "tls_reload_failed", "what=%s error=%s (the previous certificate stays in use)", what,
           kl_log_q(q, sizeof q, e.msg));
    return;
  }
  const kl_peer_t *self = kl_tls_ctx_self(t);
  kl_log(KL_LOG_INFO, "tls_reloaded", "what=%s role=%s id=%s serial=%s", what, self->role ? kl_role_name(self->role) : "-",
         self->id[0] ? self->id : "-", self->serial[0] ? self->serial : "-");
}
