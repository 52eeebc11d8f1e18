/* HTTP/1.1 server on the connection layer, parsing with Debian's http-parser.
 *
 * Happy path: bytes → parser → on_message_complete pauses the parser → the request is routed
 * and handed to its handler → kl_http_respond writes the response → the parser resumes on the
 * rest of the input (pipelined requests) or waits for more.
 * Failure modes: unparseable input → 400 and close; request line + headers over max_header →
 * 431 and close; a declared or accumulated body over max_body → 413 and close, before the body
 * is buffered; unknown path → 404; known path, other method → 405 with Allow (both close the
 * connection only if a body was coming, which is then not read); the peer goes away while a
 * request is with its handler → the request is orphaned and its response dropped.
 */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keyless/buf.h"
#include "keyless/log.h"
#include "net_internal.h"

typedef struct route {
  char *method; /* NULL: any */
  char *path;   /* "*": any */
  kl_http_handler_fn fn;
  void *arg;
} route_t;

struct kl_http_server {
  kl__srv_t srv;
  route_t *routes;
  size_t n_routes;
  kl_http_close_fn close_cb;
  void *close_arg;
};

typedef struct hconn hconn_t;

struct kl_http_req {
  hconn_t *hc; /* NULL once orphaned */
  char method[16];
  char *path;
  kl_buf_t url, body, extra;
  const route_t *route;
  int error_status; /* 404/405 found at the headers, answered at the end of the message */
  bool keep_alive, http10;
  char peer[64];
  bool authed;
  kl_peer_t who;
  char authorization[512]; /* the Authorization header ("" if none or longer than this) */
  size_t authorization_len;  /* may exceed the buffer: then it is dropped */
};

struct hconn {
  kl__conn_t *c;
  kl_http_server_t *s;
  http_parser parser;
  kl_http_req_t *cur;    /* being parsed */
  kl_http_req_t *active; /* with its handler */
  size_t header_bytes;
  char field[16], value[32];
  size_t field_len, value_len;
  bool in_value, expect_continue, message_done;
  int fail_status; /* set by a callback that stops the parser */
};

static const http_parser_settings settings;

/* ---- requests ---- */

static void req_free(kl_http_req_t *r) {
  if (r == NULL) return;
  kl_buf_free(&r->url);
  kl_buf_free(&r->body);
  kl_buf_free(&r->extra);
  free(r->path);
  free(r);
}

const char *kl_http_req_method(const kl_http_req_t *r) { return r->method; }
const char *kl_http_req_path(const kl_http_req_t *r) { return r->path ? r->path : "/"; }
const char *kl_http_req_authorization(const kl_http_req_t *r) {
  return r->authorization_len < sizeof r->authorization ? r->authorization : "";
}

const char *kl_http_req_query(const kl_http_req_t *r) {
  const char *q = r->url.p ? memchr(r->url.p, '?', r->url.len) : NULL; /* url ends with a NUL */
  return q ? q + 1 : "";
}
const char *kl_http_req_peer(const kl_http_req_t *r) { return r->peer; }
const kl_peer_t *kl_http_req_peer_id(const kl_http_req_t *r) { return r->authed && r->who.role ? &r->who : NULL; }
bool kl_http_req_connected(const kl_http_req_t *r) { return r->hc != NULL; }

const uint8_t *kl_http_req_body(const kl_http_req_t *r, size_t *len) {
  if (len) *len = r->body.len;
  return r->body.p ? r->body.p : (const uint8_t *)"";
}

static bool header_safe(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n') return false;
  return true;
}

void kl_http_req_add_header(kl_http_req_t *r, const char *name, const char *value) {
  if (name == NULL || value == NULL || !header_safe(name) || !header_safe(value) || strchr(name, ':')) return;
  kl_buf_put(&r->extra, name, strlen(name));
  kl_buf_put(&r->extra, ": ", 2);
  kl_buf_put(&r->extra, value, strlen(value));
  kl_buf_put(&r->extra, "\r\n", 2);
}

/* ---- responses ---- */

static const char *reason(int status) {
  const char *s = http_status_str((enum http_status)status);
  return s && strcmp(s, "<unknown>") != 0 ? s : "Status";
}

/* Writes a response; takes body. close: add "Connection: close" and end the connection. */
static void send_response(hconn_t *hc, int status, const char *ctype, const kl_buf_t *extra, bool http10,
                          bool close, void *body, size_t len) {
  kl_buf_t h = KL_BUF_INIT;
  char line[256];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n", status, reason(status), len);
  kl_buf_put(&h, line, (size_t)n);
  if (ctype && header_safe(ctype)) {
    n = snprintf(line, sizeof line, "Content-Type: %.200s\r\n", ctype);
    kl_buf_put(&h, line, (size_t)n);
  }
  if (close) kl_buf_put(&h, "Connection: close\r\n", 19);
  else if (http10) kl_buf_put(&h, "Connection: keep-alive\r\n", 24);
  if (extra && extra->len) kl_buf_put(&h, extra->p, extra->len);
  kl_buf_put(&h, "\r\n", 2);
  kl__srv_t *srv = &hc->s->srv;
  if (status >= 100 && status < 600) srv->stats.responses[status / 100]++;
  if (!kl_buf_ok(&h)) {
    kl_buf_free(&h);
    free(body);
    kl__conn_close(hc->c);
    return;
  }
  size_t hlen;
  uint8_t *head = kl_buf_steal(&h, &hlen);
  kl__conn_write(hc->c, head, hlen, body, len);
  if (close) kl__conn_end(hc->c);
}

static void respond(kl_http_req_t *r, int status, const char *ctype, void *body, size_t len) {
  hconn_t *hc = r->hc;
  if (hc == NULL) { /* orphaned: the connection is gone */
    free(body);
    req_free(r);
    return;
  }
  kl__conn_t *c = hc->c;
  bool close = !r->keep_alive || c->srv->closing;
  if (kl_log_enabled(KL_LOG_DEBUG)) {
    char path[128];
    kl_log(KL_LOG_DEBUG, "http", "server=%s peer=%s method=%s path=%s status=%d bytes=%zu", c->srv->name, r->peer,
           r->method, kl_log_q(path, sizeof path, kl_http_req_path(r)), status, len);
  }
  send_response(hc, status, ctype, &r->extra, r->http10, close, body, len);
  if (hc->active == r) hc->active = NULL;
  req_free(r);
  if (c->state == KL__C_OPEN) kl__conn_unpause(c, KL__PAUSE_BUSY);
}

void kl_http_respond_take(kl_http_req_t *r, int status, const char *content_type, void *body, size_t len) {
  if (r == NULL) {
    free(body);
    return;
  }
  if (body == NULL) len = 0;
  respond(r, status, content_type, body, len);
}

void kl_http_respond(kl_http_req_t *r, int status, const char *content_type, const void *body, size_t len) {
  void *copy = NULL;
  if (len && body) {
    if ((copy = malloc(len)) == NULL) {
      status = 500;
      len = 0;
    } else {
      memcpy(copy, body, len);
    }
  }
  kl_http_respond_take(r, status, content_type, copy, copy ? len : 0);
}

/* Error before or instead of a handler; close unless the whole message was read. */
static void respond_error(hconn_t *hc, int status, bool close) {
  const char *text = reason(status);
  size_t len = strlen(text);
  char *body = malloc(len + 1);
  if (body) {
    memcpy(body, text, len);
    body[len] = '\n';
  }
  if (status == 400 || status == 413 || status == 431) hc->s->srv.stats.bad_input++;
  kl_buf_t extra = KL_BUF_INIT;
  const kl_http_req_t *r = hc->cur;
  if (status == 405 && r && r->path) {
    char allow[128] = "";
    for (size_t i = 0; i < hc->s->n_routes; i++) {
      const route_t *rt = &hc->s->routes[i];
      if (strcmp(rt->path, "*") != 0 && strcmp(rt->path, r->path) != 0) continue;
      if (rt->method && strstr(allow, rt->method) == NULL && strlen(allow) + strlen(rt->method) + 3 < sizeof allow) {
        if (allow[0]) strcat(allow, ", ");
        strcat(allow, rt->method);
      }
    }
    kl_buf_put(&extra, "Allow: ", 7);
    kl_buf_put(&extra, allow, strlen(allow));
    kl_buf_put(&extra, "\r\n", 2);
  }
  kl_log(KL_LOG_DEBUG, "http_error", "server=%s peer=%s status=%d", hc->s->srv.name, hc->c->peer, status);
  send_response(hc, status, "text/plain; charset=utf-8", &extra, r && r->http10, close || !r || !r->keep_alive,
                body, body ? len + 1 : 0);
  kl_buf_free(&extra);
}

/* ---- parser callbacks ---- */

static int limit(hconn_t *hc, size_t n) {
  hc->header_bytes += n;
  if (hc->header_bytes <= hc->s->srv.lim.max_header) return 0;
  hc->fail_status = 431;
  return -1;
}

static int on_message_begin(http_parser *p) {
  hconn_t *hc = p->data;
  req_free(hc->cur);
  if ((hc->cur = calloc(1, sizeof *hc->cur)) == NULL) {
    hc->fail_status = 503;
    return -1;
  }
  snprintf(hc->cur->peer, sizeof hc->cur->peer, "%s", hc->c->peer);
  hc->cur->authed = hc->c->tls != NULL && hc->c->authed;
  if (hc->cur->authed) hc->cur->who = hc->c->who;
  hc->header_bytes = 0;
  hc->field_len = hc->value_len = 0;
  hc->in_value = hc->expect_continue = false;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  hconn_t *hc = p->data;
  if (limit(hc, n)) return -1;
  kl_buf_put(&hc->cur->url, at, n);
  return 0;
}

static void header_done(hconn_t *hc) {
  if (hc->in_value && hc->field_len == 6 && strncasecmp(hc->field, "expect", 6) == 0 && hc->value_len == 12 &&
      strncasecmp(hc->value, "100-continue", 12) == 0)
    hc->expect_continue = true;
  hc->field_len = hc->value_len = 0;
  hc->in_value = false;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  hconn_t *hc = p->data;
  if (limit(hc, n)) return -1;
  if (hc->in_value) header_done(hc);
  size_t k = n < sizeof hc->field - hc->field_len ? n : sizeof hc->field - hc->field_len;
  memcpy(hc->field + hc->field_len, at, k);
  hc->field_len += n; /* may exceed the buffer: then it is no field we look at */
  if (hc->field_len > sizeof hc->field) hc->field_len = sizeof hc->field;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  hconn_t *hc = p->data;
  if (limit(hc, n)) return -1;
  hc->in_value = true;
  if (hc->cur && hc->field_len == 13 && strncasecmp(hc->field, "authorization", 13) == 0) {
    kl_http_req_t *r = hc->cur; /* kept whole for kl_http_req_authorization, or not at all */
    if (r->authorization_len + n < sizeof r->authorization) memcpy(r->authorization + r->authorization_len, at, n);
    r->authorization_len += n;
    r->authorization[r->authorization_len < sizeof r->authorization ? r->authorization_len : 0] = '\0';
  }
  size_t k = n < sizeof hc->value - hc->value_len ? n : sizeof hc->value - hc->value_len;
  memcpy(hc->value + hc->value_len, at, k);
  hc->value_len += n;
  if (hc->value_len > sizeof hc->value) hc->value_len = sizeof hc->value;
  return 0;
}

static const route_t *route_find(const kl_http_server_t *s, const char *method, const char *path, int *status) {
  bool path_known = false;
  for (size_t i = 0; i < s->n_routes; i++) {
    const route_t *rt = &s->routes[i];
    if (strcmp(rt->path, "*") != 0 && strcmp(rt->path, path) != 0) continue;
    path_known = true;
    if (rt->method == NULL || strcmp(rt->method, method) == 0) return rt;
  }
  *status = path_known ? 405 : 404;
  return NULL;
}

static int on_headers_complete(http_parser *p) {
  hconn_t *hc = p->data;
  kl_http_req_t *r = hc->cur;
  header_done(hc);
  struct http_parser_url u;
  http_parser_url_init(&u);
  kl_buf_put_u8(&r->url, '\0');
  if (!kl_buf_ok(&r->url) || http_parser_parse_url((const char *)r->url.p, r->url.len - 1, p->method == HTTP_CONNECT, &u)) {
    hc->fail_status = 400;
    return -1;
  }
  if (u.field_set & (1 << UF_PATH))
    r->path = strndup((const char *)r->url.p + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
  else
    r->path = strdup("/");
  if (r->path == NULL) {
    hc->fail_status = 503;
    return -1;
  }
  snprintf(r->method, sizeof r->method, "%s", http_method_str((enum http_method)p->method));
  r->http10 = p->http_major == 1 && p->http_minor == 0;
  r->route = route_find(hc->s, r->method, r->path, &r->error_status);
  size_t max = hc->s->srv.lim.max_body;
  bool chunked = (p->flags & F_CHUNKED) != 0;
  bool has_len = p->content_length != ULLONG_MAX;
  bool body_coming = chunked || (has_len && p->content_length > 0);
  if (has_len && p->content_length > max) {
    hc->fail_status = 413;
    return -1;
  }
  if (r->error_status && body_coming) { /* answer now; the body is not read */
    hc->fail_status = r->error_status;
    return -1;
  }
  if (has_len && p->content_length > 0 && !kl_buf_reserve(&r->body, (size_t)p->content_length)) {
    hc->fail_status = 503;
    return -1;
  }
  if (body_coming && hc->expect_continue) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    char *m = malloc(sizeof cont - 1);
    if (m) memcpy(m, cont, sizeof cont - 1);
    kl__conn_write(hc->c, m, m ? sizeof cont - 1 : 0, NULL, 0);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  hconn_t *hc = p->data;
  kl_http_req_t *r = hc->cur;
  if (n > hc->s->srv.lim.max_body - r->body.len) {
    hc->fail_status = 413;
    return -1;
  }
  kl_buf_put(&r->body, at, n);
  if (!kl_buf_ok(&r->body)) {
    hc->fail_status = 503;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  hconn_t *hc = p->data;
  hc->cur->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  hc->message_done = true;
  http_parser_pause(p, 1); /* one request at a time: execute returns after this message */
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- protocol glue ---- */

static void dispatch(hconn_t *hc) {
  kl_http_req_t *r = hc->cur;
  hc->cur = NULL;
  if (!r->error_status && !kl__conn_rate_ok(hc->c)) r->error_status = 429; /* its address is over its rate */
  if (r->error_status) {
    hc->cur = r; /* respond_error reads the path and keep-alive from it */
    respond_error(hc, r->error_status, false);
    hc->cur = NULL;
    req_free(r);
    return;
  }
  r->hc = hc;
  hc->active = r;
  hc->s->srv.stats.requests++;
  kl__conn_pause(hc->c, KL__PAUSE_BUSY);
  r->route->fn(r, r->route->arg); /* may respond at once or later */
}

static size_t http_on_data(kl__conn_t *c, const uint8_t *p, size_t n) {
  hconn_t *hc = c->proto;
  size_t off = 0;
  while (off < n && c->state == KL__C_OPEN) {
    if (hc->active || !kl__conn_can_take(c)) return off; /* the rest waits in the backlog */
    size_t k = http_parser_execute(&hc->parser, &settings, (const char *)p + off, n - off);
    off += k;
    enum http_errno err = HTTP_PARSER_ERRNO(&hc->parser);
    if (hc->message_done) {
      hc->message_done = false;
      if (err == HPE_PAUSED) http_parser_pause(&hc->parser, 0);
      bool upgrade = hc->parser.upgrade;
      dispatch(hc);
      if (upgrade) { /* we speak no other protocol: the rest of the input is not HTTP, and the
                      * response (keep_alive is false) closes the connection */
        c->end_when_idle = true;
        return n;
      }
      continue;
    }
    if (err != HPE_OK) {
      respond_error(hc, hc->fail_status ? hc->fail_status : 400, true);
      return n;
    }
    if (k == 0) break; /* cannot happen without an error; never spin */
  }
  return n;
}

static int http_on_open(kl__conn_t *c) {
  hconn_t *hc = calloc(1, sizeof *hc);
  if (hc == NULL) return -1;
  hc->c = c;
  hc->s = c->srv->owner;
  http_parser_init(&hc->parser, HTTP_REQUEST);
  hc->parser.data = hc;
  c->proto = hc;
  return 0;
}

static bool http_idle(const kl__conn_t *c) {
  const hconn_t *hc = c->proto;
  return hc->active == NULL;
}

static void http_on_close(kl__conn_t *c) {
  hconn_t *hc = c->proto;
  if (hc->active) hc->active->hc = NULL; /* the handler still owns it */
  req_free(hc->cur);
  free(hc);
  c->proto = NULL;
}

static void http_server_closed(kl__srv_t *srv) {
  kl_http_server_t *s = srv->owner;
  kl_http_close_fn cb = s->close_cb;
  void *arg = s->close_arg;
  for (size_t i = 0; i < s->n_routes; i++) {
    free(s->routes[i].method);
    free(s->routes[i].path);
  }
  if (cb) cb(s, arg);
  free(s->routes);
  free(s);
}

static const kl__proto_t http_proto = {"http", http_on_open, http_on_data, http_idle, http_on_close, http_server_closed, NULL};

/* ---- public ---- */

int kl_http_server_create(uv_loop_t *loop, const kl_net_limits_t *lim, const char *name, kl_http_server_t **out,
                          kl_err_t *e) {
  if (loop == NULL || out == NULL) return kl_err_set(e, KL_EINVAL, "kl_http_server_create: NULL argument");
  kl_http_server_t *s = calloc(1, sizeof *s);
  if (s == NULL) return kl_err_set(e, KL_ENOMEM, "http server: out of memory");
  int r = kl__srv_init(&s->srv, loop, &http_proto, s, lim, name, e);
  if (r) {
    free(s);
    return r;
  }
  *out = s;
  return 0;
}

int kl_http_route(kl_http_server_t *s, const char *method, const char *path, kl_http_handler_fn fn, void *arg,
                  kl_err_t *e) {
  if (s == NULL || path == NULL || fn == NULL) return kl_err_set(e, KL_EINVAL, "kl_http_route: NULL argument");
  route_t *v = realloc(s->routes, (s->n_routes + 1) * sizeof *v);
  if (v == NULL) return kl_err_set(e, KL_ENOMEM, "http route: out of memory");
  s->routes = v;
  route_t *rt = &v[s->n_routes];
  rt->method = method ? strdup(method) : NULL;
  rt->path = strdup(path);
  rt->fn = fn;
  rt->arg = arg;
  if (rt->path == NULL || (method && rt->method == NULL)) {
    free(rt->method);
    free(rt->path);
    return kl_err_set(e, KL_ENOMEM, "http route: out of memory");
  }
  s->n_routes++;
  return 0;
}

void kl_http_server_set_tls(kl_http_server_t *s, kl_tls_ctx_t *ctx, unsigned roles, kl_peer_check_fn check, void *arg) {
  kl__srv_set_tls(&s->srv, ctx, roles, check, arg);
}

int kl_http_server_listen(kl_http_server_t *s, const char *addr, kl_err_t *e) { return kl__srv_listen(&s->srv, addr, e); }
int kl_http_server_port(const kl_http_server_t *s) { return s->srv.port; }
void kl_http_server_share(kl_http_server_t *http, kl_tlv_server_t *tlv) { kl__srv_share(&http->srv, kl__tlv_srv(tlv)); }
const kl_net_stats_t *kl_http_server_stats(const kl_http_server_t *s) { return &s->srv.stats; }

void kl_http_server_close(kl_http_server_t *s, kl_http_close_fn cb, void *arg) {
  if (s == NULL) return;
  s->close_cb = cb;
  s->close_arg = arg;
  kl__srv_close(&s->srv);
}
