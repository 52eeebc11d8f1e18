/* keyless sign: the engine that gets many files signed.
 *
 * 1. The configuration first (a configuration-only request, answered at once): the gateway's
 *    max_level bounds the local trees and max_requests says how many requests fit one PDU.
 * 2. The pending files are cut into jobs, each one local tree of up to 2^k leaves (one request
 *    item); k is the smallest that lets every job go out in one wave of PDUs, at most the
 *    gateway's max_level (or --max-lvl). A PDU carries up to 3/4 of max_requests jobs (fewer
 *    after a refusal for too many: the gateway's bound follows its answers); --max-in-flight
 *    worker threads (default 4) each keep one PDU in flight.
 * 3. A PDU goes to the gateways in failover order (the one that answered last first, then the
 *    next on any failure) or, with --ha all, to every gateway at once: the first answer that
 *    opens (HMAC checked) wins.
 * 4. A job that failed retryably (network, 0x106, 0x200, 0x300, 0x301: kl_aggr_status_retryable)
 *    goes back to the queue with exponential backoff (0.25 s doubling to 8 s, jittered) until
 *    --retry-for has passed since its first failure. An authentication or HMAC failure stops
 *    the run: the jobs not yet answered fail with the same reason without being sent.
 * 5. Signatures are written as temporary files in the target directory, made durable with one
 *    syncfs() per job (fsync per file for small jobs), then renamed into place (never over an
 *    existing file unless it may be replaced): a reader or a rerun never sees half a file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syncfs, renameat2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keyless/pdu.h"
#include "keyless/signclient.h"
#include "sign.h"

#define DEFAULT_LVL 8
#define DEFAULT_IN_FLIGHT 4
#define MAX_PER_PDU 256
#define SMALL_JOB 16 /* up to this many files: fsync each instead of one syncfs */

typedef struct job {
  size_t off, n; /* a range of the engine's pending list */
  unsigned attempts;
  double first_fail, next_try;
} job_t;

/* What one exchange came to. */
typedef struct outcome {
  int rc;
  const char *code;
  bool retryable;
  uint64_t status;
  int gw; /* the gateway that answered (or failed last) */
  kl_err_t err;
} outcome_t;

typedef struct engine {
  const sign_opts_t *o;
  sign_file_t *v;
  size_t *pend, npend;
  sign_report_t *rep;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t *jobs, **queue;
  size_t njobs, nq, active;
  unsigned lvl;
  size_t per_pdu;
  bool canned, sent;
  int preferred;
  bool fatal;
  outcome_t fatal_why;
  unsigned seed;
  int fans; /* --ha all exchanges still running */
} engine_t;

/* ---- outcomes ---- */

static void classify(int rc, outcome_t *x) {
  x->rc = rc;
  x->status = kl_aggr_err_status(&x->err);
  switch (rc) {
    case 0: x->code = NULL; x->retryable = false; break;
    case KL_EIO: x->code = SE_NETWORK; x->retryable = true; break;
    case KL_EAUTH: x->code = SE_AUTH; x->retryable = false; break;
    case KL_EHMAC: x->code = SE_HMAC; x->retryable = false; break;
    case KL_ESERVICE:
      x->code = SE_GW_STATUS;
      x->retryable = kl_aggr_status_retryable(x->status);
      break;
    case KL_ENOMEM: x->code = SE_INTERNAL; x->retryable = false; break;
    default: x->code = SE_BAD_RESPONSE; x->retryable = false; break;
  }
}

/* An answer that says the login or key is wrong: asking again with it only adds load. */
static bool login_refused(const char *code) {
  return code && (strcmp(code, SE_AUTH) == 0 || strcmp(code, SE_HMAC) == 0);
}

/* ---- exchanges ---- */

static int one_gw(const engine_t *en, int g, const kl_aggr_item_t *items, size_t k, bool want_config,
                  kl_aggr_resp_t **resp, kl_err_t *err) {
  const sign_gw_t *gw = &en->o->gws[g];
  return kl_aggr_exchange(gw->url, gw->user, gw->key, en->o->hmac_alg, items, k, want_config, en->o->timeout_ms,
                          resp, err);
}

/* --ha all: one thread per gateway; the first to open a response wins, the rest finish alone. */
typedef struct fan {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  engine_t *en; /* only for its fans counter: en lives until every fan is released */
  sign_gw_t *gws; /* copies: a thread may outlive the command's arguments */
  size_t n_gws;
  int hmac_alg, timeout_ms;
  kl_aggr_item_t *items;
  size_t k;
  bool want_config, taken;
  int refs, pending;
  kl_aggr_resp_t *win;
  int win_gw;
  outcome_t *outs;
} fan_t;

typedef struct fan_arg {
  fan_t *f;
  int g;
} fan_arg_t;

static void fan_release(fan_t *f) { /* with f->mu held; unlocks */
  bool last = --f->refs == 0;
  pthread_mutex_unlock(&f->mu);
  if (!last) return;
  engine_t *en = f->en;
  kl_aggr_resp_free(f->win);
  for (size_t i = 0; f->gws && i < f->n_gws; i++) {
    free((char *)f->gws[i].url);
    free((char *)f->gws[i].user);
    free((char *)f->gws[i].key);
  }
  free(f->gws);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
  free(f->items);
  free(f->outs);
  free(f);
  pthread_mutex_lock(&en->mu);
  en->fans--;
  pthread_cond_broadcast(&en->cv);
  pthread_mutex_unlock(&en->mu);
}

static void *fan_thread(void *p) {
  fan_arg_t a = *(fan_arg_t *)p;
  free(p);
  fan_t *f = a.f;
  kl_aggr_resp_t *resp = NULL;
  outcome_t x;
  memset(&x, 0, sizeof x);
  x.gw = a.g;
  const sign_gw_t *gw = &f->gws[a.g];
  classify(kl_aggr_exchange(gw->url, gw->user, gw->key, f->hmac_alg, f->items, f->k, f->want_config, f->timeout_ms,
                            &resp, &x.err),
           &x);
  pthread_mutex_lock(&f->mu);
  f->outs[a.g] = x;
  if (resp && f->win == NULL && !f->taken) {
    f->win = resp;
    f->win_gw = a.g;
  } else {
    kl_aggr_resp_free(resp);
  }
  f->pending--;
  pthread_cond_broadcast(&f->cv);
  fan_release(f);
  kl_hash_thread_end();
  OPENSSL_thread_stop();
  return NULL;
}

/* Picks the outcome to report when every gateway failed: retryable only if all were. */
static void merge_failures(const engine_t *en, outcome_t *outs, size_t n, outcome_t *x) {
  size_t pick = 0;
  bool all_retry = true;
  for (size_t i = 0; i < n; i++) all_retry = all_retry && outs[i].retryable;
  for (size_t i = 0; i < n; i++)
    if (!outs[i].retryable) {
      pick = i;
      break;
    }
  *x = outs[pick];
  x->retryable = all_retry;
  if (en->o->n_gws > 1) {
    char m[KL_ERR_MSG_MAX];
    snprintf(m, sizeof m, "%.440s (all %zu gateways failed)", x->err.msg, en->o->n_gws);
    snprintf(x->err.msg, sizeof x->err.msg, "%s", m);
  }
}

static int exchange(engine_t *en, const kl_aggr_item_t *items, size_t k, bool want_config, kl_aggr_resp_t **resp,
                    outcome_t *x) {
  size_t n = en->o->n_gws;
  memset(x, 0, sizeof *x);
  *resp = NULL;
  pthread_mutex_lock(&en->mu);
  en->sent = true;
  int start = en->preferred;
  pthread_mutex_unlock(&en->mu);
  outcome_t *outs = calloc(n, sizeof *outs);
  if (outs == NULL) {
    classify(kl_err_set(&x->err, KL_ENOMEM, "out of memory"), x);
    return x->rc;
  }
  if (en->o->ha_all && n > 1) {
    fan_t *f = calloc(1, sizeof *f);
    if (f == NULL || (f->items = malloc((k ? k : 1) * sizeof *items)) == NULL || (f->outs = calloc(n, sizeof *outs)) == NULL) {
      if (f) free(f->items);
      free(f);
      free(outs);
      classify(kl_err_set(&x->err, KL_ENOMEM, "out of memory"), x);
      return x->rc;
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->en = en;
    f->hmac_alg = en->o->hmac_alg;
    f->timeout_ms = en->o->timeout_ms;
    if ((f->gws = calloc(n, sizeof *f->gws)) != NULL) {
      f->n_gws = n;
      for (size_t g = 0; g < n; g++) {
        const sign_gw_t *src = &en->o->gws[g];
        f->gws[g].url = strdup(src->url);
        f->gws[g].user = src->user ? strdup(src->user) : NULL;
        f->gws[g].key = src->key ? strdup(src->key) : NULL;
        if (f->gws[g].url == NULL) n = g; /* out of memory: ask fewer */
      }
    }
    if (k) memcpy(f->items, items, k * sizeof *items);
    f->k = k;
    f->want_config = want_config;
    f->refs = 1;
    pthread_mutex_lock(&en->mu);
    en->fans++; /* one per fan: its last release counts it down */
    pthread_mutex_unlock(&en->mu);
    for (size_t g = 0; f->gws && g < n; g++) {
      fan_arg_t *a = malloc(sizeof *a);
      pthread_t t;
      pthread_attr_t at;
      if (a == NULL) break;
      *a = (fan_arg_t){f, (int)g};
      pthread_mutex_lock(&f->mu);
      f->refs++;
      f->pending++;
      pthread_mutex_unlock(&f->mu);
      pthread_attr_init(&at);
      pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
      if (pthread_create(&t, &at, fan_thread, a) != 0) { /* ask this one ourselves */
        free(a);
        pthread_mutex_lock(&f->mu);
        f->refs--;
        f->pending--;
        pthread_mutex_unlock(&f->mu);
        f->outs[g].gw = (int)g;
        classify(kl_err_set(&f->outs[g].err, KL_EIO, "cannot start a thread"), &f->outs[g]);
        f->outs[g].retryable = true;
      }
      pthread_attr_destroy(&at);
    }
    pthread_mutex_lock(&f->mu);
    while (f->win == NULL && f->pending > 0) pthread_cond_wait(&f->cv, &f->mu);
    f->taken = true;
    if (f->win) {
      *resp = f->win;
      x->gw = f->win_gw;
      f->win = NULL;
    } else {
      memcpy(outs, f->outs, n * sizeof *outs);
    }
    fan_release(f);
    if (*resp) {
      free(outs);
      return 0;
    }
    merge_failures(en, outs, n, x);
    free(outs);
    return x->rc;
  }
  for (size_t i = 0; i < n; i++) {
    int g = (int)((size_t)start + i) % (int)n;
    outs[i].gw = g;
    classify(one_gw(en, g, items, k, want_config, resp, &outs[i].err), &outs[i]);
    if (outs[i].rc == 0) {
      pthread_mutex_lock(&en->mu);
      en->preferred = g;
      pthread_mutex_unlock(&en->mu);
      x->gw = g;
      free(outs);
      return 0;
    }
  }
  merge_failures(en, outs, n, x);
  /* next time start past the one that failed first */
  pthread_mutex_lock(&en->mu);
  if (en->preferred == start) en->preferred = (start + 1) % (int)n;
  pthread_mutex_unlock(&en->mu);
  free(outs);
  return x->rc;
}

/* ---- writing ---- */

/* The signatures of one job: temporary files, made durable, then renamed into place. */
static void write_job(engine_t *en, const job_t *j, kl_sig_t **sigs) {
  char **tmps = calloc(j->n, sizeof *tmps);
  char lastdir[4096] = "";
  int syncfd = -1;
  bool small = j->n <= SMALL_JOB;
  for (size_t i = 0; i < j->n; i++) {
    sign_file_t *f = &en->v[en->pend[j->off + i]];
    kl_err_t e = {0};
    if (sigs[i] == NULL) continue;
    if (tmps == NULL) {
      sign_fail(f, SE_INTERNAL, false, 0, "out of memory");
      continue;
    }
    const char *slash = strrchr(f->out, '/');
    size_t dl = slash ? (size_t)(slash - f->out) : 0;
    if (dl && (dl >= sizeof lastdir || strncmp(lastdir, f->out, dl) != 0 || lastdir[dl] != '\0')) {
      if (sign_mkdirs_for(f->out, &e)) {
        sign_fail(f, SE_WRITE, false, 0, "%s", e.msg);
        continue;
      }
      if (dl < sizeof lastdir) {
        memcpy(lastdir, f->out, dl);
        lastdir[dl] = '\0';
      }
    }
    size_t len;
    const uint8_t *bytes = kl_sig_bytes(sigs[i], &len);
    size_t cap = strlen(f->out) + 16;
    char *tmp = malloc(cap);
    if (tmp == NULL) {
      sign_fail(f, SE_INTERNAL, false, 0, "out of memory");
      continue;
    }
    snprintf(tmp, cap, "%s.tmp.XXXXXX", f->out);
    int fd = mkstemp(tmp);
    if (fd < 0) {
      sign_fail(f, SE_WRITE, false, 0, "cannot create a temporary file next to %s: %s", f->out, strerror(errno));
      free(tmp);
      continue;
    }
    size_t done = 0;
    while (done < len) {
      ssize_t w = write(fd, bytes + done, len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      done += (size_t)w;
    }
    int err = 0;
    if (done != len || fchmod(fd, 0644) != 0 || (small && fsync(fd) != 0)) err = errno ? errno : EIO;
    if (!err && !small && syncfd < 0) syncfd = dup(fd);
    if (close(fd) != 0 && !err) err = errno;
    if (err) {
      unlink(tmp);
      free(tmp);
      sign_fail(f, SE_WRITE, false, 0, "cannot write %s: %s", f->out, strerror(err));
      continue;
    }
    tmps[i] = tmp;
  }
  if (syncfd >= 0) {
    if (syncfs(syncfd) != 0) { /* then each file on its own */
      for (size_t i = 0; i < j->n; i++) {
        if (tmps == NULL || tmps[i] == NULL) continue;
        int fd = open(tmps[i], O_RDONLY);
        if (fd >= 0) {
          (void)fsync(fd);
          close(fd);
        }
      }
    }
    close(syncfd);
  }
  for (size_t i = 0; tmps && i < j->n; i++) {
    if (tmps[i] == NULL) continue;
    sign_file_t *f = &en->v[en->pend[j->off + i]];
    int rc = f->replace ? rename(tmps[i], f->out) : renameat2(AT_FDCWD, tmps[i], AT_FDCWD, f->out, RENAME_NOREPLACE);
    if (rc != 0 && !f->replace && errno == EINVAL) { /* a file system without RENAME_NOREPLACE */
      rc = link(tmps[i], f->out);
      if (rc == 0) unlink(tmps[i]);
    }
    if (rc != 0) {
      int err = errno;
      unlink(tmps[i]);
      if (err == EEXIST)
        sign_fail(f, SE_WRITE, false, 0, "%s appeared while signing; not replaced (use --force)", f->out);
      else
        sign_fail(f, SE_WRITE, false, 0, "cannot write %s: %s", f->out, strerror(err));
    } else {
      f->state = SF_SIGNED;
    }
    free(tmps[i]);
  }
  free(tmps);
}

/* ---- jobs ---- */

static void fail_job(engine_t *en, const job_t *j, const outcome_t *x, const char *prefix) {
  for (size_t i = 0; i < j->n; i++) {
    sign_file_t *f = &en->v[en->pend[j->off + i]];
    if (j->attempts > 1)
      sign_fail(f, x->code, x->retryable, x->status, "%s%s (after %u attempts)", prefix, x->err.msg, j->attempts);
    else
      sign_fail(f, x->code, x->retryable, x->status, "%s%s", prefix, x->err.msg);
    sign_report_file(en->rep, f, NULL);
  }
}

static double backoff(engine_t *en, unsigned attempts) {
  double b = 0.25;
  for (unsigned i = 1; i < attempts && b < 8; i++) b *= 2;
  if (b > 8) b = 8;
  return b * (0.75 + 0.5 * (double)(rand_r(&en->seed) % 1000) / 1000.0);
}

/* A job failed: back to the queue, or reported. */
static void job_failed(engine_t *en, job_t *j, const outcome_t *x) {
  double now = sign_now();
  pthread_mutex_lock(&en->mu);
  if (j->first_fail == 0) j->first_fail = now;
  double deadline = j->first_fail + en->o->retry_for;
  if (x->retryable && !en->fatal && now < deadline) {
    j->next_try = now + backoff(en, j->attempts);
    if (j->next_try > deadline) j->next_try = deadline;
    en->queue[en->nq++] = j;
    pthread_cond_broadcast(&en->cv);
    pthread_mutex_unlock(&en->mu);
    return;
  }
  if (login_refused(x->code)) {
    if (!en->fatal) en->fatal_why = *x;
    en->fatal = true;
  }
  pthread_mutex_unlock(&en->mu);
  fail_job(en, j, x, "");
}

/* Sends jobs js[0..k) in one PDU and handles every answer. */
static void run_pdu(engine_t *en, job_t **js, size_t k) {
  kl_sign_batch_t **b = calloc(k, sizeof *b);
  kl_aggr_item_t *items = calloc(k, sizeof *items);
  kl_imprint_t *hashes = NULL;
  outcome_t x;
  memset(&x, 0, sizeof x);
  size_t most = 0;
  for (size_t i = 0; i < k; i++)
    if (js[i]->n > most) most = js[i]->n;
  if (b == NULL || items == NULL || (hashes = malloc(most * sizeof *hashes)) == NULL) {
    classify(kl_err_set(&x.err, KL_ENOMEM, "out of memory"), &x);
    for (size_t i = 0; i < k; i++) job_failed(en, js[i], &x);
    goto out;
  }
  for (size_t i = 0; i < k; i++) {
    job_t *j = js[i];
    j->attempts++;
    for (size_t m = 0; m < j->n; m++) hashes[m] = en->v[en->pend[j->off + m]].hash;
    uint64_t id = en->canned ? 1 : kl_aggr_request_id();
    for (size_t m = 0; m < i && !en->canned; m++)
      if (items[m].request_id == id) id = kl_aggr_request_id();
    int rc = kl_sign_batch_create_meta(hashes, j->n, en->lvl, 0, en->o->meta, en->o->meta_len, id, &b[i], &x.err);
    if (rc) {
      classify(rc, &x);
      x.code = SE_INTERNAL;
      x.retryable = false;
      job_failed(en, j, &x);
      goto out; /* cannot happen with the hashes made here */
    }
    items[i] = *kl_sign_batch_item(b[i]);
  }
  kl_aggr_resp_t *resp = NULL;
  if (exchange(en, items, k, false, &resp, &x)) {
    if (k > 1 && (x.status == KL_STATUS_INVALID_REQUEST || x.status == KL_STATUS_AGGR_REQUEST_TOO_LARGE)) {
      /* The gateway's max_requests follows the answers it gives (gateway/gw_fit.c) and may have
       * shrunk since we asked: fewer per PDU, and the same jobs again at once. */
      pthread_mutex_lock(&en->mu);
      size_t fewer = k * 3 / 4 ? k * 3 / 4 : 1;
      if (fewer < en->per_pdu) en->per_pdu = fewer;
      for (size_t i = 0; i < k; i++) {
        js[i]->attempts--;
        js[i]->next_try = 0;
        en->queue[en->nq++] = js[i];
      }
      pthread_cond_broadcast(&en->cv);
      pthread_mutex_unlock(&en->mu);
      goto out;
    }
    for (size_t i = 0; i < k; i++) job_failed(en, js[i], &x);
    goto out;
  }
  for (size_t i = 0; i < k; i++) {
    job_t *j = js[i];
    kl_sig_t **sigs = calloc(j->n, sizeof *sigs);
    outcome_t y;
    memset(&y, 0, sizeof y);
    y.gw = x.gw;
    int rc = sigs ? 0 : kl_err_set(&y.err, KL_ENOMEM, "out of memory");
    for (size_t m = 0; m < j->n && rc == 0; m++) rc = kl_sign_batch_signature(b[i], resp, m, &sigs[m], &y.err);
    if (rc) {
      classify(rc, &y);
      if (y.retryable && en->o->n_gws > 1 && !en->o->ha_all) { /* this gateway's upstream is in trouble */
        pthread_mutex_lock(&en->mu);
        if (en->preferred == x.gw) en->preferred = (x.gw + 1) % (int)en->o->n_gws;
        pthread_mutex_unlock(&en->mu);
      }
      for (size_t m = 0; sigs && m < j->n; m++) kl_sig_free(sigs[m]);
      free(sigs);
      job_failed(en, j, &y);
      continue;
    }
    write_job(en, j, sigs);
    for (size_t m = 0; m < j->n; m++) {
      sign_file_t *f = &en->v[en->pend[j->off + m]];
      if (f->state == SF_SIGNED) f->aggr_time = kl_sig_signing_time(sigs[m]);
      sign_report_file(en->rep, f, f->state == SF_SIGNED ? sigs[m] : NULL);
      kl_sig_free(sigs[m]);
    }
    free(sigs);
  }
  kl_aggr_resp_free(resp);
out:
  for (size_t i = 0; b && i < k; i++) kl_sign_batch_free(b[i]);
  free(b);
  free(items);
  free(hashes);
}

static void *worker(void *p) {
  engine_t *en = p;
  job_t **mine = malloc(en->per_pdu * sizeof *mine);
  pthread_mutex_lock(&en->mu);
  while (mine) {
    if (en->fatal && en->nq) { /* fail what waits, without sending it */
      job_t *j = en->queue[--en->nq];
      outcome_t x = en->fatal_why;
      pthread_mutex_unlock(&en->mu);
      fail_job(en, j, &x, "not sent after: ");
      pthread_mutex_lock(&en->mu);
      continue;
    }
    if (en->nq == 0) {
      if (en->active == 0) break;
      pthread_cond_wait(&en->cv, &en->mu);
      continue;
    }
    double now = sign_now(), soonest = 1e300;
    size_t k = 0;
    for (size_t i = 0; i < en->nq && k < en->per_pdu;) {
      if (en->queue[i]->next_try <= now) {
        mine[k++] = en->queue[i];
        en->queue[i] = en->queue[--en->nq];
      } else {
        if (en->queue[i]->next_try < soonest) soonest = en->queue[i]->next_try;
        i++;
      }
    }
    if (k == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double wait = soonest - now;
      if (wait > 1) wait = 1;
      ts.tv_sec += (time_t)wait;
      ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&en->cv, &en->mu, &ts);
      continue;
    }
    en->active += k;
    pthread_mutex_unlock(&en->mu);
    run_pdu(en, mine, k);
    pthread_mutex_lock(&en->mu);
    en->active -= k;
    pthread_cond_broadcast(&en->cv);
  }
  pthread_cond_broadcast(&en->cv);
  pthread_mutex_unlock(&en->mu);
  free(mine);
  kl_hash_thread_end(); /* this thread's hashing and HMAC contexts */
  OPENSSL_thread_stop(); /* its random generator and error queue */
  return NULL;
}

/* ---- the run ---- */

/* Asks for the configuration; sets en->lvl and en->per_pdu. false when the run cannot go on
 * (the login was refused: every pending file has failed). */
static bool configure(engine_t *en) {
  const sign_opts_t *o = en->o;
  unsigned ann = DEFAULT_LVL;
  en->per_pdu = 1;
  if (en->canned) {
    en->lvl = o->max_lvl_given ? o->max_lvl : DEFAULT_LVL;
    return true;
  }
  kl_aggr_resp_t *resp = NULL;
  kl_aggr_config_t c;
  outcome_t x;
  if (exchange(en, NULL, 0, true, &resp, &x) == 0 && kl_aggr_resp_config(resp, &c, &x.err) == 0) {
    if (c.has_max_level) ann = (unsigned)c.max_level;
    /* a quarter below what it announces: the bound shrinks as the gateway sees longer answers */
    uint64_t mr = c.has_max_requests ? c.max_requests - c.max_requests / 4 : 1;
    if (mr > 0) en->per_pdu = mr < MAX_PER_PDU ? (size_t)mr : MAX_PER_PDU;
  } else if (login_refused(x.code)) {
    job_t j = {0, en->npend, 1, 0, 0};
    fail_job(en, &j, &x, "");
    kl_aggr_resp_free(resp);
    return false;
  } else if (!o->quiet) {
    char m[KL_ERR_MSG_MAX * 2];
    fprintf(stderr, "keyless sign: note: no configuration from the gateway (%s); one request per PDU\n",
            cli_printable(x.err.msg, m, sizeof m));
  }
  kl_aggr_resp_free(resp);
  en->lvl = ann;
  if (o->max_lvl_given) {
    if (o->max_lvl > ann && !o->quiet)
      fprintf(stderr, "keyless sign: note: --max-lvl %u exceeds the gateway's max level %u: using %u\n", o->max_lvl,
              ann, ann);
    if (o->max_lvl < ann) en->lvl = o->max_lvl;
  }
  return true;
}

int sign_run(sign_file_t *v, size_t n, const sign_opts_t *o, sign_report_t *rep, bool *sent) {
  engine_t *en = calloc(1, sizeof *en);
  if (en == NULL) return KL_EXIT_GENERAL;
  en->o = o;
  en->v = v;
  en->rep = rep;
  en->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  en->canned = o->n_gws == 1 && strncmp(o->gws[0].url, "file://", 7) == 0;
  pthread_mutex_init(&en->mu, NULL);
  pthread_cond_init(&en->cv, NULL);
  *sent = false;
  int st = KL_EXIT_OK;
  if ((en->pend = malloc((n ? n : 1) * sizeof *en->pend)) == NULL) {
    st = KL_EXIT_GENERAL;
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    if (v[i].state == SF_PENDING) en->pend[en->npend++] = i;
  if (en->npend == 0) goto out;
  if (!configure(en)) goto out;
  unsigned in_flight = en->canned ? 1 : o->in_flight ? o->in_flight : DEFAULT_IN_FLIGHT;
  /* The smallest tree that sends everything in one wave of PDUs, within the gateway's level. */
  unsigned low = o->meta ? 1 : 0, k = low;
  size_t wave = en->per_pdu * in_flight, need = (en->npend + wave - 1) / wave;
  while (k < en->lvl && kl_sign_batch_capacity(o->meta ? k - 1 : k) < need) k++;
  if (k < low) k = low;
  en->lvl = en->canned ? en->lvl : k;
  size_t cap = kl_sign_batch_capacity(o->meta ? en->lvl - 1 : en->lvl);
  size_t nb = (en->npend + cap - 1) / cap;
  if ((en->jobs = calloc(nb, sizeof *en->jobs)) == NULL || (en->queue = calloc(nb, sizeof *en->queue)) == NULL) {
    st = KL_EXIT_GENERAL;
    goto out;
  }
  for (size_t b = 0, off = 0; b < nb; b++) {
    size_t m = (en->npend - off) / (nb - b) + ((en->npend - off) % (nb - b) != 0); /* spread evenly */
    en->jobs[b] = (job_t){off, m, 0, 0, 0};
    en->queue[nb - 1 - b] = &en->jobs[b]; /* taken from the end: in file order */
    off += m;
  }
  en->njobs = en->nq = nb;
  if (in_flight > nb) in_flight = (unsigned)nb;
  pthread_t *th = calloc(in_flight, sizeof *th);
  unsigned started = 0;
  for (unsigned i = 0; th && i < in_flight; i++)
    if (pthread_create(&th[i], NULL, worker, en) == 0) started++;
    else break;
  if (started == 0) worker(en); /* no threads: do it here */
  /* The progress line while the workers work. */
  pthread_mutex_lock(&en->mu);
  while (started && (en->nq || en->active)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&en->cv, &en->mu, &ts);
    pthread_mutex_unlock(&en->mu);
    sign_report_progress(rep, "signing", false);
    pthread_mutex_lock(&en->mu);
  }
  pthread_mutex_unlock(&en->mu);
  for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
  free(th);
  sign_report_progress(rep, "signing", true);
out:
  /* --ha all: the slower gateways' answers are not needed; wait a little for them to let go */
  for (int i = 0; i < 100; i++) {
    pthread_mutex_lock(&en->mu);
    int left = en->fans;
    pthread_mutex_unlock(&en->mu);
    if (left == 0) break;
    struct timespec ts = {0, 20000000L};
    nanosleep(&ts, NULL);
  }
  *sent = en->sent;
  free(en->pend);
  free(en->jobs);
  free(en->queue);
  pthread_mutex_lock(&en->mu);
  int left = en->fans;
  pthread_mutex_unlock(&en->mu);
  if (left == 0) { /* else a slow gateway's thread still holds it: left to the exit */
    pthread_mutex_destroy(&en->mu);
    pthread_cond_destroy(&en->cv);
    free(en);
  }
  return st;
}
