/* Following a replication stream into a local calendar; see keyless/follow.h.
 *
 * connected → Subscribe(after = last or from genesis) → Entries: checked and applied (or empty)
 * → Subscribe again. Failure modes: the link drops (the frame client reconnects; on_state(true)
 * subscribes again from the calendar's last second, so nothing is lost or applied twice); an
 * undecodable, refused or inapplicable batch (logged, on_error, the link closed: following
 * stops until the owner starts a new follower). */
#include "keyless/follow.h"

#include <stdlib.h>

#include "keyless/frameclient.h"
#include "keyless/log.h"

struct kl_follow {
  uv_loop_t *loop;
  kl_cal_t *cal;
  kl_frame_client_t *link; /* NULL once closed */
  bool link_closing;
  kl_follow_cbs_t cbs;
  void *arg;
  bool checked; /* trust below is in force (else kl_repl_handle's checks) */
  kl_repl_trust_t trust;
  uint64_t applied, refused;
  bool failed, have_upstream;
  uint64_t upstream_last;
  uint64_t heard_ms; /* loop time of the last frame (0: none yet) */
  uint64_t drops;    /* times the link went down after being up */
  bool up;
  bool stopping;
  void (*stop_cb)(void *);
  void *stop_arg;
};

static void subscribe(kl_follow_t *f) {
  kl_cal_info_t info;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  if (f->failed || f->link == NULL || kl_cal_info(f->cal, &info, &e)) return;
  if (kl_repl_encode_subscribe(&b, info.empty ? 0 : info.last, info.empty, &e) == 0)
    kl_frame_client_send(f->link, b.p + KL_FRAME_HDR, b.len - KL_FRAME_HDR, NULL); /* the client frames it */
  kl_buf_free(&b);
}

static void on_state(kl_frame_client_t *c, bool up, void *arg) {
  kl_follow_t *f = arg;
  (void)c;
  if (!up && f->up) f->drops++;
  f->up = up;
  if (up) subscribe(f);
}

static void finish(kl_follow_t *f) {
  void (*cb)(void *) = f->stop_cb;
  void *a = f->stop_arg;
  free(f);
  if (cb) cb(a);
}

static void on_link_closed(void *arg) {
  kl_follow_t *f = arg;
  f->link = NULL;
  f->link_closing = false;
  if (f->stopping) finish(f);
}

static void close_link(kl_follow_t *f) {
  if (f->link == NULL || f->link_closing) return;
  f->link_closing = true;
  kl_frame_client_close(f->link, on_link_closed, f); /* safe inside on_frame: freed on a later turn */
}

/* The one line an operator needs: which seconds, and the two roots when they differ. */
static void log_refusal(const kl_repl_result_t *res, const kl_err_t *e) {
  char m[600], a[2 * KL_IMPRINT_MAX + 1], b[2 * KL_IMPRINT_MAX + 1];
  if (res->is_entries && res->has_roots && !kl_imprint_eq(&res->computed, &res->signed_root))
    kl_log(KL_LOG_ERROR, "replication_refused", "second=%llu first=%llu expected=%s signed=%s error=%s",
           (unsigned long long)res->last, (unsigned long long)res->first, kl_imprint_hex(&res->computed, a),
           kl_imprint_hex(&res->signed_root, b), kl_log_q(m, sizeof m, e->msg));
  else if (res->is_entries)
    kl_log(KL_LOG_ERROR, "replication_refused", "second=%llu first=%llu error=%s", (unsigned long long)res->last,
           (unsigned long long)res->first, kl_log_q(m, sizeof m, e->msg));
  else
    kl_log(KL_LOG_ERROR, "follow_failed", "error=%s", kl_log_q(m, sizeof m, e->msg));
}

static void on_frame(kl_frame_client_t *c, const uint8_t *p, size_t len, void *arg) {
  kl_follow_t *f = arg;
  kl_repl_result_t res;
  kl_err_t e = {0};
  (void)c;
  if (f->failed || f->stopping) return;
  f->heard_ms = uv_now(f->loop);
  int r = kl_repl_receive(p, len, f->cal, f->checked ? &f->trust : NULL, &res, &e);
  if (r == 0 && res.is_subscribe) r = kl_err_set(&e, KL_EFORMAT, "the upstream sent a Subscribe");
  if (res.is_entries) {
    f->have_upstream = true;
    f->upstream_last = res.committed_last;
  }
  if (r) {
    f->failed = true;
    if (res.is_entries) f->refused++;
    log_refusal(&res, &e);
    close_link(f); /* no retry loop against the core: the owner decides what comes next */
    if (f->cbs.on_error) f->cbs.on_error(f, &e, f->arg);
    return;
  }
  f->applied += res.applied;
  if (res.applied && f->cbs.on_progress) {
    kl_cal_info_t info;
    if (kl_cal_info(f->cal, &info, NULL) == 0) f->cbs.on_progress(f, info.last, f->arg);
  }
  subscribe(f);
}

int kl_follow_start_trusted(uv_loop_t *loop, kl_cal_t *cal, const char *addr, const kl_repl_trust_t *trust,
                            kl_tls_ctx_t *tls, const kl_follow_cbs_t *cbs, void *arg, kl_follow_t **out,
                            kl_err_t *e) {
  static const kl_frame_client_cbs_t fcbs = {on_frame, on_state};
  kl_follow_t *f = calloc(1, sizeof *f);
  if (f == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  f->loop = loop;
  f->cal = cal;
  if (cbs) f->cbs = *cbs;
  f->arg = arg;
  if (trust) {
    f->checked = true;
    f->trust = *trust;
  }
  int r = kl_frame_client_create(loop, "replication", KL_REPL_MAX_FRAME, &fcbs, f, &f->link, e);
  if (r == 0 && tls) kl_frame_client_set_tls(f->link, tls, KL_ROLE_CORE, NULL);
  if (r == 0) r = kl_frame_client_connect(f->link, addr, e);
  if (r) {
    if (f->link) kl_frame_client_close(f->link, free, f);
    else free(f);
    return r;
  }
  *out = f;
  return 0;
}

void kl_follow_set_trust(kl_follow_t *f, const kl_repl_trust_t *trust) {
  if (f != NULL && f->checked && trust != NULL) f->trust = *trust;
}

int kl_follow_start(uv_loop_t *loop, kl_cal_t *cal, const char *addr, kl_tls_ctx_t *tls, const kl_follow_cbs_t *cbs,
                    void *arg, kl_follow_t **out, kl_err_t *e) {
  return kl_follow_start_trusted(loop, cal, addr, NULL, tls, cbs, arg, out, e);
}

void kl_follow_stop(kl_follow_t *f, void (*cb)(void *), void *arg) {
  if (f == NULL) return;
  f->stop_cb = cb;
  f->stop_arg = arg;
  f->stopping = true;
  if (f->link_closing) return; /* on_link_closed finishes */
  if (f->link == NULL) {
    finish(f);
    return;
  }
  close_link(f);
}

uint64_t kl_follow_applied(const kl_follow_t *f) { return f->applied; }
bool kl_follow_failed(const kl_follow_t *f) { return f->failed; }
uint64_t kl_follow_refused(const kl_follow_t *f) { return f->refused; }

bool kl_follow_upstream_last(const kl_follow_t *f, uint64_t *committed_last) {
  if (f->have_upstream) *committed_last = f->upstream_last;
  return f->have_upstream;
}

uint64_t kl_follow_heard_ms(const kl_follow_t *f) { return f->heard_ms; }
uint64_t kl_follow_drops(const kl_follow_t *f) { return f->drops; }
bool kl_follow_connected(const kl_follow_t *f) { return f->up && !f->link_closing; }
