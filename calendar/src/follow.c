/* Following a replication stream into a local calendar; see keyless/follow.h.
 *
 * connected → Subscribe(after = last or from genesis) → Entries: applied (or empty) → Subscribe
 * again. Failure modes: the link drops (the frame client reconnects; on_state(true) subscribes
 * again from the calendar's last second, so nothing is lost or applied twice); an undecodable or
 * inapplicable batch (on_error, stop following). */
#include "keyless/follow.h"

#include <stdlib.h>

#include "keyless/frameclient.h"
#include "keyless/log.h"
#include "keyless/replica.h"

struct kl_follow {
  kl_cal_t *cal;
  kl_frame_client_t *link;
  kl_follow_cbs_t cbs;
  void *arg;
  uint64_t applied;
  bool failed;
  void (*stop_cb)(void *);
  void *stop_arg;
};

static void subscribe(kl_follow_t *f) {
  kl_cal_info_t info;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  if (f->failed || kl_cal_info(f->cal, &info, &e)) return;
  if (kl_repl_encode_subscribe(&b, info.empty ? 0 : info.last, info.empty, &e) == 0)
    kl_frame_client_send(f->link, b.p + KL_FRAME_HDR, b.len - KL_FRAME_HDR, NULL); /* the client frames it */
  kl_buf_free(&b);
}

static void on_state(kl_frame_client_t *c, bool up, void *arg) {
  (void)c;
  if (up) subscribe(arg);
}

static void on_frame(kl_frame_client_t *c, const uint8_t *p, size_t len, void *arg) {
  kl_follow_t *f = arg;
  kl_repl_subscribe_t sub;
  int is_sub;
  size_t applied = 0;
  kl_err_t e = {0};
  (void)c;
  if (f->failed) return;
  if (kl_repl_handle(p, len, f->cal, &sub, &is_sub, &applied, &e) || is_sub) {
    if (is_sub) kl_err_set(&e, KL_EFORMAT, "the upstream sent a Subscribe");
    f->failed = true;
    kl_log(KL_LOG_ERROR, "follow_failed", "error=%s", e.msg);
    if (f->cbs.on_error) f->cbs.on_error(f, &e, f->arg);
    return;
  }
  f->applied += applied;
  if (applied && f->cbs.on_progress) {
    kl_cal_info_t info;
    if (kl_cal_info(f->cal, &info, NULL) == 0) f->cbs.on_progress(f, info.last, f->arg);
  }
  subscribe(f);
}

int kl_follow_start(uv_loop_t *loop, kl_cal_t *cal, const char *addr, const kl_follow_cbs_t *cbs, void *arg,
                    kl_follow_t **out, kl_err_t *e) {
  static const kl_frame_client_cbs_t fcbs = {on_frame, on_state};
  kl_follow_t *f = calloc(1, sizeof *f);
  if (f == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  f->cal = cal;
  if (cbs) f->cbs = *cbs;
  f->arg = arg;
  int r = kl_frame_client_create(loop, "replication", KL_REPL_MAX_FRAME, &fcbs, f, &f->link, e);
  if (r == 0) r = kl_frame_client_connect(f->link, addr, e);
  if (r) {
    if (f->link) kl_frame_client_close(f->link, free, f);
    else free(f);
    return r;
  }
  *out = f;
  return 0;
}

static void on_closed(void *arg) {
  kl_follow_t *f = arg;
  void (*cb)(void *) = f->stop_cb;
  void *a = f->stop_arg;
  free(f);
  if (cb) cb(a);
}

void kl_follow_stop(kl_follow_t *f, void (*cb)(void *), void *arg) {
  if (f == NULL) return;
  f->stop_cb = cb;
  f->stop_arg = arg;
  kl_frame_client_close(f->link, on_closed, f);
}

uint64_t kl_follow_applied(const kl_follow_t *f) { return f->applied; }
bool kl_follow_failed(const kl_follow_t *f) { return f->failed; }
