/* keyless audit: one extender's calendar endpoints over HTTP(S) (audit.h). */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "cli.h"

#define MAX_BODY (128u << 10) /* a range of 512 SHA-512 leaves is about 40 KiB */

int aud_ext_init(aud_ext_t *x, const char *url, int timeout_ms, kl_err_t *e) {
  memset(x, 0, sizeof *x);
  /* Messages and JSON name the extender without its login and key. */
  const char *sep = strstr(url, "://"), *at = sep ? strchr(sep + 3, '@') : NULL, *slash = sep ? strchr(sep + 3, '/') : NULL;
  if (at && (slash == NULL || at < slash))
    snprintf(x->shown, sizeof x->shown, "%.*s%s", (int)(sep + 3 - url), url, at + 1);
  else
    snprintf(x->shown, sizeof x->shown, "%s", url);
  x->url = x->shown;
  x->timeout_ms = timeout_ms;
  if (kl_url_parse(url, &x->u, e)) {
    kl_err_wrap(e, "-X %s", x->url);
    return KL_EXIT_USAGE;
  }
  if (x->u.kind != KL_URL_HTTP) {
    kl_err_set(e, KL_EINVAL, "-X %s: the calendar endpoints are served over http:// or https://", x->url);
    return KL_EXIT_USAGE;
  }
  x->u.user[0] = x->u.key[0] = '\0';
  return KL_EXIT_OK;
}

/* GET path; the body of a 200 answer in out. */
static int get(aud_ext_t *x, const char *path, kl_buf_t *out, kl_err_t *e) {
  kl_url_t u = x->u;
  int status = 0;
  snprintf(u.path, sizeof u.path, "%s", path);
  if (kl_net_request(&u, NULL, 0, NULL, x->timeout_ms, MAX_BODY, out, &status, e)) {
    kl_err_wrap(e, "extender %s: GET %s", x->url, path);
    return KL_EXIT_NETWORK;
  }
  if (status != 200) {
    char text[200];
    size_t n = out->len < sizeof text - 1 ? out->len : sizeof text - 1;
    memcpy(text, out->p ? (const char *)out->p : "", n);
    text[n] = '\0';
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
    char safe[400];
    kl_err_set(e, KL_ESERVICE, "extender %s: GET %s: HTTP %d: %s", x->url, path, status,
               cli_printable(text, safe, sizeof safe));
    return KL_EXIT_EXTENDER;
  }
  return KL_EXIT_OK;
}

int aud_head(aud_ext_t *x, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  int st = get(x, "/calendar/head", &b, e);
  if (st == KL_EXIT_OK && kl_calhead_decode(b.p, b.len, &x->head, e)) {
    kl_err_wrap(e, "extender %s: /calendar/head", x->url);
    st = KL_EXIT_EXTENDER;
  }
  kl_buf_free(&b);
  return st;
}

int aud_consistency(aud_ext_t *x, uint64_t from, uint64_t to, kl_calproof_t *out, kl_err_t *e) {
  char path[128];
  kl_buf_t b = KL_BUF_INIT;
  snprintf(path, sizeof path, "/calendar/consistency?from=%llu&to=%llu", (unsigned long long)from,
           (unsigned long long)to);
  int st = get(x, path, &b, e);
  if (st == KL_EXIT_OK) {
    if (kl_calproof_decode(b.p, b.len, out, e)) {
      kl_err_wrap(e, "extender %s: %s", x->url, path);
      st = KL_EXIT_EXTENDER;
    } else if (out->from != from || out->to != to || !out->has_roots) {
      kl_err_set(e, KL_EFORMAT, "extender %s: %s: answered %llu..%llu%s", x->url, path, (unsigned long long)out->from,
                 (unsigned long long)out->to, out->has_roots ? "" : " without the roots");
      st = KL_EXIT_EXTENDER;
    }
  }
  kl_buf_free(&b);
  return st;
}

int aud_range(aud_ext_t *x, uint64_t from, uint64_t to, kl_calrange_t *out, kl_err_t *e) {
  char path[128];
  kl_buf_t b = KL_BUF_INIT;
  snprintf(path, sizeof path, "/calendar/range?from=%llu&to=%llu", (unsigned long long)from, (unsigned long long)to);
  int st = get(x, path, &b, e);
  if (st == KL_EXIT_OK) {
    if (kl_calrange_decode(b.p, b.len, out, e)) {
      kl_err_wrap(e, "extender %s: %s", x->url, path);
      st = KL_EXIT_EXTENDER;
    } else if (out->from != from || out->to != to) {
      kl_err_set(e, KL_EFORMAT, "extender %s: %s: answered %llu..%llu", x->url, path, (unsigned long long)out->from,
                 (unsigned long long)out->to);
      st = KL_EXIT_EXTENDER;
    }
  }
  kl_buf_free(&b);
  return st;
}
