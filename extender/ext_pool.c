/* The worker threads that answer request PDUs ([server] workers).
 *
 * The loop thread keeps the sockets, the metrics, the log and the replica-wait queue; it hands
 * each job to this pool (ext_pool_submit) and gets it back in its done callback, on the loop,
 * once a worker ran its work callback. One mutex guards two FIFO lists: jobs to do and jobs
 * done. A worker waits on a condition variable only when there is nothing to do (the loop
 * signals only when a worker is idle); a worker that finishes a job wakes the loop through one
 * uv_async_t, only when the done list was empty, and the loop then takes the whole list at
 * once, so that a busy pool costs about one wake-up per batch, not per job.
 *
 * Closing (ext_pool_close) lets every job submitted so far, and every one submitted while they
 * finish, run and be done as usual; once none is left the threads are joined and the async
 * handle closed. A job submitted after that runs on the loop thread itself, at once (the
 * daemon's last answers during a stop).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "extender.h"
#include "keyless/hash.h"

static void shutdown_pool(ext_pool_t *p);

static void on_async(uv_async_t *a) {
  ext_pool_t *p = a->data;
  pthread_mutex_lock(&p->mu);
  ext_job_t *j = p->done_head;
  p->done_head = p->done_tail = NULL;
  pthread_mutex_unlock(&p->mu);
  while (j != NULL) {
    ext_job_t *next = j->next;
    j->next = NULL;
    p->pending--;
    j->done(j); /* may submit again, or close the pool */
    j = next;
  }
  if (p->closing && p->pending == 0) shutdown_pool(p);
}

static void *worker(void *arg) {
  ext_pool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->todo_head == NULL && !p->stop) {
      p->idle++;
      pthread_cond_wait(&p->cv, &p->mu);
      p->idle--;
    }
    ext_job_t *j = p->todo_head;
    if (j == NULL) break; /* stopping, and nothing left */
    p->todo_head = j->next;
    if (p->todo_head == NULL) p->todo_tail = NULL;
    j->next = NULL;
    pthread_mutex_unlock(&p->mu);
    j->work(j);
    pthread_mutex_lock(&p->mu);
    bool wake = p->done_head == NULL;
    if (p->done_tail) p->done_tail->next = j;
    else p->done_head = j;
    p->done_tail = j;
    if (wake) uv_async_send(&p->async);
  }
  pthread_mutex_unlock(&p->mu);
  kl_hash_thread_end(); /* this thread's hashing contexts and HMAC keys (keyless/hash.h) */
  return NULL;
}

unsigned ext_pool_default_size(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

int ext_pool_start(ext_pool_t *p, uv_loop_t *loop, unsigned n, kl_err_t *e) {
  memset(p, 0, sizeof *p);
  if (n == 0) n = ext_pool_default_size();
  p->loop = loop;
  p->threads = calloc(n, sizeof *p->threads);
  if (p->threads == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  int rc;
  if ((rc = uv_async_init(loop, &p->async, on_async))) {
    free(p->threads);
    p->threads = NULL;
    return kl_err_set(e, KL_EIO, "worker pool: %s", uv_strerror(rc));
  }
  p->async.data = p;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->running = true;
  /* The workers take no signals: libuv's handlers are the loop thread's business. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (; p->n < n; p->n++)
    if ((rc = pthread_create(&p->threads[p->n], NULL, worker, p)) != 0) break;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (p->n == 0) {
    shutdown_pool(p);
    return kl_err_set(e, KL_EIO, "worker pool: cannot start a thread: %s", strerror(rc));
  }
  return 0; /* fewer threads than asked when the system refused more: still a pool */
}

void ext_pool_submit(ext_pool_t *p, ext_job_t *j) {
  if (!p->running) { /* closed (or never started): the loop does it */
    j->work(j);
    j->done(j);
    return;
  }
  j->next = NULL;
  p->pending++;
  pthread_mutex_lock(&p->mu);
  if (p->todo_tail) p->todo_tail->next = j;
  else p->todo_head = j;
  p->todo_tail = j;
  if (p->idle > 0) pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static void shutdown_pool(ext_pool_t *p) {
  if (!p->running) return;
  p->running = false;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 0; i < p->n; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  p->threads = NULL;
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  uv_close((uv_handle_t *)&p->async, NULL);
}

void ext_pool_close(ext_pool_t *p) {
  p->closing = true;
  if (p->pending == 0) shutdown_pool(p);
}
