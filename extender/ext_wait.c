/* Request PDUs held until the replica holds the second they ask for ([server] replica_wait).
 *
 * A fresh signature names a second the core has committed but this extender's replica may not
 * have appended yet (the follower gets it a moment later). Instead of answering 0x106 "too
 * new", the daemon parks such a PDU here (ext_handle said which second it needs) and answers it
 * when the calendar's last second reaches that second (ext_waitq_progress, called from the
 * follower's on_progress hook, and from a 100 ms poll of the calendar while anything waits,
 * which also covers a calendar fed by another process), when its wait runs out, when its
 * client is gone, or when the daemon stops: in each case the PDU is simply answered again,
 * as it would have been without waiting.
 *
 * Every PDU waits the same time, so arrival order is deadline order: a FIFO list. At most max
 * PDUs wait at once (the request bytes stay with the server until answered); more are
 * answered at once. Loop thread only.
 */
#include <stdlib.h>

#include "extender.h"

#define POLL_MS 100

void ext_waitq_init(ext_waitq_t *q, uv_loop_t *loop, uint64_t wait_ms, size_t max, ext_wait_answer_fn answer,
                    ext_wait_last_fn last, void *arg) {
  *q = (ext_waitq_t){.loop = loop, .wait_ms = wait_ms, .max = max, .answer = answer, .last = last, .arg = arg};
  uv_timer_init(loop, &q->timer);
  q->timer.data = q;
  q->timer_on = true;
}

static void unlink_w(ext_waitq_t *q, ext_waiter_t *w) {
  if (w->prev) w->prev->next = w->next;
  else q->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else q->tail = w->prev;
  w->prev = w->next = NULL;
  q->n--;
}

static void release(ext_waitq_t *q, ext_waiter_t *w, int why) {
  unlink_w(q, w);
  q->answer(w, why, q->arg); /* frees w */
}

static void on_tick(uv_timer_t *t);

static void arm(ext_waitq_t *q) {
  if (!q->timer_on) return;
  if (q->head == NULL) {
    uv_timer_stop(&q->timer);
    return;
  }
  uint64_t now = uv_now(q->loop), due = q->head->deadline > now ? q->head->deadline - now : 0;
  uv_timer_start(&q->timer, on_tick, due < POLL_MS ? due : POLL_MS, 0);
}

bool ext_waitq_add(ext_waitq_t *q, ext_waiter_t *w) {
  if (!q->timer_on || q->n >= q->max) return false;
  w->deadline = uv_now(q->loop) + q->wait_ms;
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  q->n++;
  if (q->n == 1) arm(q);
  return true;
}

void ext_waitq_progress(ext_waitq_t *q, uint64_t last) {
  ext_waiter_t *w = q->head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->second <= last) release(q, w, EXT_WAKE_CAUGHT_UP);
  }
  arm(q);
}

static void on_tick(uv_timer_t *t) {
  ext_waitq_t *q = t->data;
  uint64_t last;
  if (q->head != NULL && q->last(q->arg, &last)) ext_waitq_progress(q, last);
  uint64_t now = uv_now(q->loop);
  ext_waiter_t *w = q->head, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->deadline <= now) release(q, w, EXT_WAKE_TIMEOUT);
    else if (!w->connected(w)) release(q, w, EXT_WAKE_GONE);
  }
  arm(q);
}

void ext_waitq_flush(ext_waitq_t *q) {
  while (q->head != NULL) release(q, q->head, EXT_WAKE_STOP);
}

void ext_waitq_close(ext_waitq_t *q) {
  ext_waitq_flush(q);
  if (q->timer_on) uv_close((uv_handle_t *)&q->timer, NULL);
  q->timer_on = false;
}
