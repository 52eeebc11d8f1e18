/* The admin port's two routes, /healthz and /metrics (keyless/net.h). */
#include <stdio.h>
#include <string.h>

#include "keyless/metrics.h"
#include "keyless/net.h"

/* 200 {"status":"ok"} or 503 {"status":"unhealthy","reason":"..."}: the daemon's own words for
 * why it cannot do its job now. */
static void on_healthz(kl_http_req_t *req, void *arg) {
  const kl_admin_t *a = arg;
  const char *why = a->health ? a->health(a->arg) : NULL;
  if (why == NULL) {
    kl_http_respond(req, 200, "application/json", "{\"status\":\"ok\"}\n", 16);
    return;
  }
  char body[600];
  size_t n = (size_t)snprintf(body, sizeof body, "{\"status\":\"unhealthy\",\"reason\":\"");
  for (const char *p = why; *p && n + 12 < sizeof body; p++) { /* room for an escape and the end */
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\') {
      body[n++] = '\\';
      body[n++] = (char)ch;
    } else if (ch < 0x20) {
      n += (size_t)snprintf(body + n, sizeof body - n, "\\u%04x", ch);
    } else {
      body[n++] = (char)ch;
    }
  }
  n += (size_t)snprintf(body + n, sizeof body - n, "\"}\n");
  kl_http_respond(req, 503, "application/json", body, n < sizeof body ? n : sizeof body - 1);
}

static void on_metrics(kl_http_req_t *req, void *arg) {
  const kl_admin_t *a = arg;
  kl_buf_t b = KL_BUF_INIT;
  if (kl_metrics_render(a->metrics, &b, NULL)) {
    kl_buf_free(&b);
    kl_http_respond(req, 500, "text/plain", "out of memory\n", 14);
    return;
  }
  size_t len;
  uint8_t *p = kl_buf_steal(&b, &len);
  kl_http_respond_take(req, 200, KL_METRICS_CONTENT_TYPE, p, len);
}

int kl_admin_server_create(uv_loop_t *loop, const kl_net_limits_t *base, kl_admin_t *a, kl_http_server_t **out,
                           kl_err_t *e) {
  kl_net_limits_t lim;
  if (base) lim = *base;
  else kl_net_limits_default(&lim);
  lim.max_body = 1024; /* the admin routes take no bodies worth more */
  lim.max_connections = 64;
  lim.max_connections_per_ip = 16; /* one scraper or operator cannot take all 64 */
  int r;
  *out = NULL;
  if ((r = kl_http_server_create(loop, &lim, "admin", out, e))) return r;
  if ((r = kl_http_route(*out, "GET", "/healthz", on_healthz, a, e)) ||
      (r = kl_http_route(*out, "GET", "/metrics", on_metrics, a, e)))
    return r; /* the caller closes *out */
  return 0;
}
