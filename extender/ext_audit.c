/* The calendar endpoints for auditors (ext_audit.h).
 *
 * Happy path: on_get (loop) parses the query, a job computes the answer on a worker from one
 * LMDB read snapshot (kl_cal_consistency, kl_cal_head, kl_cal_range), and the loop responds.
 * Failure modes: a query that is not exactly the parameters named, or numbers that are not
 * plain decimals: 400 with the reason, before any work; from > to or a range over the maximum:
 * 400; a second before genesis or not yet committed: 404 (not cached: it may exist later); no
 * calendar, a replica not in step with the core: 503; out of memory: 503. The client gone
 * meanwhile: the response is dropped by the server. */
#include "ext_audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/cal_proof.h"

#define IMMUTABLE "public, max-age=31536000, immutable"

enum { A_HEAD, A_CONSISTENCY, A_RANGE };

typedef struct audit_job {
  ext_job_t job;
  kl_http_req_t *req;
  kl_cal_t *cal;
  int kind;
  uint64_t from, to;
  int status;
  char msg[400];
  kl_buf_t body;
} audit_job_t;

bool ext_audit_path(const char *path) { return strncmp(path, "/calendar/", 10) == 0; }

static void respond_text(kl_http_req_t *req, int status, const char *msg) {
  char line[512];
  int n = snprintf(line, sizeof line, "%s\n", msg);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  kl_http_req_add_header(req, "Cache-Control", "no-store");
  kl_http_respond(req, status, "text/plain", line, (size_t)n);
}

/* "from=123&to=456": exactly the keys wanted (each once), plain decimals below 2^63. */
static bool parse_query(const char *q, uint64_t *from, uint64_t *to, char *why, size_t cap) {
  bool seen[2] = {false, false};
  if (strlen(q) > 200) {
    snprintf(why, cap, "query string too long");
    return false;
  }
  while (*q) {
    const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q), *eq = memchr(q, '=', (size_t)(end - q));
    size_t klen = eq ? (size_t)(eq - q) : (size_t)(end - q);
    int k = klen == 4 && strncmp(q, "from", 4) == 0 ? 0 : klen == 2 && strncmp(q, "to", 2) == 0 ? 1 : -1;
    if (k < 0) {
      snprintf(why, cap, "unknown parameter \"%.*s\" (expected from and to)", (int)(klen > 40 ? 40 : klen), q);
      return false;
    }
    const char *name = k ? "to" : "from";
    if (seen[k]) {
      snprintf(why, cap, "parameter %s given twice", name);
      return false;
    }
    seen[k] = true;
    const char *v = eq ? eq + 1 : end;
    uint64_t x = 0;
    if (v == end || end - v > 19) {
      snprintf(why, cap, "parameter %s: expected a number of seconds (UNIX time)", name);
      return false;
    }
    for (const char *c = v; c < end; c++) {
      if (*c < '0' || *c > '9') {
        snprintf(why, cap, "parameter %s: expected a number of seconds (UNIX time), not \"%.*s\"", name,
                 (int)(end - v > 30 ? 30 : end - v), v);
        return false;
      }
      x = x * 10 + (uint64_t)(*c - '0');
    }
    if (x >= (UINT64_C(1) << 63)) {
      snprintf(why, cap, "parameter %s: %llu is too large", name, (unsigned long long)x);
      return false;
    }
    *(k ? to : from) = x;
    q = amp ? amp + 1 : end;
  }
  if (!seen[0] || !seen[1]) {
    snprintf(why, cap, "parameter %s missing (expected ?from=SECOND&to=SECOND)", seen[0] ? "to" : "from");
    return false;
  }
  if (*from > *to) {
    snprintf(why, cap, "from %llu is after to %llu", (unsigned long long)*from, (unsigned long long)*to);
    return false;
  }
  return true;
}

static int status_for(int code) {
  switch (code) {
  case KL_EINVAL: return 400;
  case KL_ERANGE: /* before genesis */
  case KL_ENOTFOUND: return 404; /* not committed yet, or an empty calendar */
  default: return 503;
  }
}

static void work(ext_job_t *j) {
  audit_job_t *a = (audit_job_t *)j;
  kl_err_t e = {0};
  int r;
  if (a->kind == A_HEAD) {
    kl_calhead_t h;
    if ((r = kl_cal_head(a->cal, &h, &e)) == 0) kl_calhead_encode(&a->body, &h);
  } else if (a->kind == A_CONSISTENCY) {
    kl_calproof_t *p = malloc(sizeof *p);
    r = p ? kl_cal_consistency(a->cal, a->from, a->to, p, &e) : kl_err_set(&e, KL_ENOMEM, "out of memory");
    if (r == 0) kl_calproof_encode(&a->body, p);
    free(p);
  } else {
    kl_calrange_t *g = malloc(sizeof *g);
    r = g ? kl_cal_range(a->cal, a->from, a->to, g, &e) : kl_err_set(&e, KL_ENOMEM, "out of memory");
    if (r == 0) kl_calrange_encode(&a->body, g);
    free(g);
  }
  if (r == 0 && (r = kl_buf_check(&a->body, &e))) kl_err_wrap(&e, "encoding");
  a->status = r ? status_for(r) : 200;
  if (r) snprintf(a->msg, sizeof a->msg, "%.390s", e.msg);
}

static void done(ext_job_t *j) {
  audit_job_t *a = (audit_job_t *)j;
  if (a->status != 200) {
    respond_text(a->req, a->status, a->msg);
  } else {
    size_t len;
    uint8_t *body = kl_buf_steal(&a->body, &len);
    kl_http_req_add_header(a->req, "Cache-Control", a->kind == A_HEAD ? "no-store" : IMMUTABLE);
    kl_http_respond_take(a->req, 200, "application/octet-stream", body, len);
  }
  kl_buf_free(&a->body);
  free(a);
}

void ext_audit_get(kl_http_req_t *req, ext_pool_t *pool, kl_cal_t *cal, const char *unsynced) {
  const char *path = kl_http_req_path(req), *query = kl_http_req_query(req);
  int kind;
  char why[300];
  uint64_t from = 0, to = 0;
  if (strcmp(path, "/calendar/head") == 0) kind = A_HEAD;
  else if (strcmp(path, "/calendar/consistency") == 0) kind = A_CONSISTENCY;
  else if (strcmp(path, "/calendar/range") == 0) kind = A_RANGE;
  else {
    respond_text(req, 404, "no such calendar endpoint (head, consistency, range)");
    return;
  }
  if (kind == A_HEAD && query[0] != '\0') {
    respond_text(req, 400, "/calendar/head takes no parameters");
    return;
  }
  if (kind != A_HEAD && !parse_query(query, &from, &to, why, sizeof why)) {
    respond_text(req, 400, why);
    return;
  }
  if (kind == A_RANGE && to - from >= KL_CALRANGE_MAX) {
    snprintf(why, sizeof why, "range %llu..%llu: at most %d seconds per request", (unsigned long long)from,
             (unsigned long long)to, KL_CALRANGE_MAX);
    respond_text(req, 400, why);
    return;
  }
  if (cal == NULL) {
    respond_text(req, 503, "the calendar is not available");
    return;
  }
  if (unsynced != NULL) {
    snprintf(why, sizeof why, "extender not synchronized: %.250s", unsynced);
    respond_text(req, 503, why);
    return;
  }
  audit_job_t *a = calloc(1, sizeof *a);
  if (a == NULL) {
    respond_text(req, 503, "out of memory");
    return;
  }
  a->job.work = work;
  a->job.done = done;
  a->req = req;
  a->cal = cal;
  a->kind = kind;
  a->from = from;
  a->to = to;
  ext_pool_submit(pool, &a->job);
}
