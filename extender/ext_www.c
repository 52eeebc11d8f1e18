/* The verification page (ext_www.h): static files embedded at build time.
 * Happy path: a GET of one of the four paths gets the file with its content type, the CSP and
 * one hour of caching. Failure modes: another path under /verify/: 404 (not cached). The
 * request's query string is ignored (the page reads only its own URL fragment, in the browser). */
#include "ext_www.h"

#include <stddef.h>
#include <string.h>

extern const unsigned char ext_www_verify_html[], ext_www_verify_css[], ext_www_verify_js[], ext_www_ksi_js[];
extern const size_t ext_www_verify_html_len, ext_www_verify_css_len, ext_www_verify_js_len, ext_www_ksi_js_len;

#define CSP                                                                                             \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'none'; " \
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

typedef struct www_file {
  const char *path, *type;
  const unsigned char *data;
  const size_t *len;
} www_file_t;

static const www_file_t files[] = {
    {"/verify", "text/html; charset=utf-8", ext_www_verify_html, &ext_www_verify_html_len},
    {"/verify/verify.css", "text/css; charset=utf-8", ext_www_verify_css, &ext_www_verify_css_len},
    {"/verify/verify.js", "text/javascript; charset=utf-8", ext_www_verify_js, &ext_www_verify_js_len},
    {"/verify/ksi.js", "text/javascript; charset=utf-8", ext_www_ksi_js, &ext_www_ksi_js_len},
};

bool ext_www_path(const char *path) { return strcmp(path, "/verify") == 0 || strncmp(path, "/verify/", 8) == 0; }

void ext_www_get(kl_http_req_t *req, const char *path) {
  kl_http_req_add_header(req, "X-Content-Type-Options", "nosniff");
  kl_http_req_add_header(req, "Referrer-Policy", "no-referrer");
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    if (strcmp(path, files[i].path) != 0) continue;
    kl_http_req_add_header(req, "Content-Security-Policy", CSP);
    kl_http_req_add_header(req, "Cache-Control", "public, max-age=3600");
    kl_http_respond(req, 200, files[i].type, files[i].data, *files[i].len);
    return;
  }
  kl_http_req_add_header(req, "Cache-Control", "no-store");
  kl_http_respond(req, 404, "text/plain", "no such file (the verification page is /verify)\n", 48);
}
