/* The core's audit log writer (audit.h).
 *
 * Happy path: kl_audit_event encodes record seq+1 naming the last record's hash, write()s it to
 * audit.log (O_APPEND) and fdatasyncs; its (seq, hash) joins the pending list. Every second the
 * timer hands up to MAX_BATCH pending hashes to a thread-pool job: kl_sign_hashes through the
 * gateway (one request, a local tree: each record gets its own signature), then the entries are
 * appended to audit.ksig and synced; back on the loop the signed records leave the list.
 * Failures: a failed write is cut back (ftruncate to the last whole record) and reported; a
 * failed signing or ksig append leaves the records pending, counts, logs, and backs off. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auditlog.h"
#include "keyuri.h" /* kl_key_secret_read: lib/client/src */
#include "keyless/log.h"
#include "keyless/signclient.h"

#define MAX_BATCH 1024   /* records per signing request: a local tree of height 10 */
#define MAX_FILE (256u << 20)

typedef struct pend {
  uint64_t seq;
  kl_imprint_t hash;
} pend_t;

typedef struct job {
  uv_work_t w;
  kl_audit_t *a;
  size_t n;
  pend_t items[MAX_BATCH];
  kl_imprint_t hashes[MAX_BATCH];
  kl_sig_t *sigs[MAX_BATCH];
  int rc;
  kl_err_t err;
} job_t;

struct kl_audit {
  uv_loop_t *loop;
  uv_timer_t timer;
  bool timer_on, closing;
  char log_path[1024], sig_path[1024];
  int fd;
  size_t log_len;
  uint64_t node, last_seq;
  kl_imprint_t last_hash;
  pend_t *pend;
  size_t n_pend, cap_pend;
  char gateway[512], user[128], key[256];
  uint64_t timeout_ms;
  job_t *job; /* in flight */
  uint64_t next_try_ms, backoff_ms;
  kl_metric_t *m_records, *m_signed, *m_sign_failed, *m_write_failed;
};

static uint64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static int read_all(const char *path, uint8_t **buf, size_t *len, kl_err_t *e) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return errno == ENOENT ? KL_ENOTFOUND : kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size > MAX_FILE) {
    fclose(f);
    return kl_err_set(e, KL_ETOOBIG, "%s: larger than %u bytes, or unreadable", path, MAX_FILE);
  }
  *buf = malloc((size_t)st.st_size + 1);
  if (*buf == NULL) {
    fclose(f);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  *len = fread(*buf, 1, (size_t)st.st_size, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || *len != (size_t)st.st_size) return kl_err_set(e, KL_EIO, "cannot read %s", path);
  return 0;
}

/* A new file holding only the magic: written to a temporary name, synced, renamed. */
static int create_file(const char *path, const char *magic, kl_err_t *e) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return kl_err_set(e, KL_EIO, "cannot create %s: %s", tmp, strerror(errno));
  bool ok = write(fd, magic, KL_AUDIT_MAGIC_LEN) == KL_AUDIT_MAGIC_LEN && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return kl_err_set(e, KL_EIO, "cannot create %s: %s", path, strerror(errno));
  }
  return 0;
}

/* Moves a torn tail aside (for the record) and cuts the file back to its last whole element. */
static int cut_tail(const char *path, const uint8_t *p, size_t good, size_t len, kl_err_t *e) {
  char aside[1100];
  snprintf(aside, sizeof aside, "%s.torn-%zu", path, good);
  FILE *f = fopen(aside, "wb");
  bool ok = f && fwrite(p + good, 1, len - good, f) == len - good;
  if (f && fclose(f) != 0) ok = false;
  if (!ok) return kl_err_set(e, KL_EIO, "cannot save the torn tail of %s to %s", path, aside);
  int fd = open(path, O_WRONLY);
  ok = fd >= 0 && ftruncate(fd, (off_t)good) == 0 && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  if (!ok) return kl_err_set(e, KL_EIO, "cannot cut the torn tail of %s: %s", path, strerror(errno));
  kl_log(KL_LOG_ERROR, "audit_torn_tail", "file=%s offset=%zu bytes=%zu saved=%s", path, good, len - good, aside);
  return 0;
}

#define DAMAGED "; keep a copy for the auditors (keyless audit-log verify names the first bad record), move the audit " \
                "directory aside, and start the node again: a new log begins at seq 1"

/* Reads and checks the log; fills last_seq, last_hash, log_len and the pending list (records
 * after last_signed). *torn_at is the offset of a torn tail cut off, else 0. */
static int load_log(kl_audit_t *a, uint64_t *last_signed, size_t *torn_at, kl_err_t *e) {
  uint8_t *buf;
  size_t len;
  int r = read_all(a->log_path, &buf, &len, e);
  if (r == KL_ENOTFOUND) {
    free(buf);
    if ((r = create_file(a->log_path, KL_AUDIT_LOG_MAGIC, e))) return r;
    buf = NULL;
    len = KL_AUDIT_MAGIC_LEN;
  } else if (r) {
    free(buf);
    return r;
  }
  kl_audit_scan_t s;
  uint64_t bad = 0;
  kl_audit_zero(&a->last_hash);
  if (buf == NULL) memset(&s, 0, sizeof s), s.good_len = len;
  else if ((r = kl_audit_log_scan(buf, len, &s, e))) r = kl_err_wrap(e, "%s", a->log_path);
  if (r == 0 && s.bad) r = kl_err_set(e, KL_EFORMAT, "audit log %s is damaged: %s" DAMAGED, a->log_path, s.err.msg);
  if (r == 0 && kl_audit_chain_check(s.recs, s.n, NULL, &bad, &s.err))
    r = kl_err_set(e, KL_EFORMAT, "audit log %s: its chain is broken: %s" DAMAGED, a->log_path, s.err.msg);
  if (r == 0 && s.n && *last_signed > s.recs[s.n - 1].seq)
    r = kl_err_set(e, KL_EFORMAT, "audit log %s ends at seq %llu, but its signatures go up to seq %llu: records were removed" DAMAGED,
                   a->log_path, (unsigned long long)s.recs[s.n - 1].seq, (unsigned long long)*last_signed);
  if (r == 0 && s.torn && (r = cut_tail(a->log_path, buf, s.good_len, len, e)) == 0) *torn_at = s.good_len;
  for (size_t i = 0; r == 0 && i < s.n; i++) {
    if (s.recs[i].seq <= *last_signed) continue;
    if (a->n_pend == a->cap_pend) {
      size_t nc = a->cap_pend ? a->cap_pend * 2 : 64;
      pend_t *p = realloc(a->pend, nc * sizeof *p);
      if (p == NULL) r = kl_err_set(e, KL_ENOMEM, "out of memory");
      else a->pend = p, a->cap_pend = nc;
      if (r) break;
    }
    a->pend[a->n_pend++] = (pend_t){s.recs[i].seq, s.recs[i].hash};
  }
  if (r == 0 && s.n) {
    a->last_seq = s.recs[s.n - 1].seq;
    a->last_hash = s.recs[s.n - 1].hash;
  }
  a->log_len = s.good_len;
  kl_audit_scan_free(&s);
  free(buf);
  return r;
}

/* Reads audit.ksig (creating it): *last_signed is its highest seq. */
static int load_sigs(kl_audit_t *a, uint64_t *last_signed, kl_err_t *e) {
  uint8_t *buf;
  size_t len;
  kl_audit_sigs_t s;
  int r = read_all(a->sig_path, &buf, &len, e);
  *last_signed = 0;
  if (r == KL_ENOTFOUND) {
    free(buf);
    return create_file(a->sig_path, KL_AUDIT_SIG_MAGIC, e);
  }
  if (r == 0 && (r = kl_audit_sigs_scan(buf, len, &s, e)) == 0) {
    if (s.bad) r = kl_err_set(e, KL_EFORMAT, "audit signatures %s are damaged: %s" DAMAGED, a->sig_path, s.err.msg);
    else if (s.torn) r = cut_tail(a->sig_path, buf, s.good_len, len, e);
    if (s.n) *last_signed = s.ents[s.n - 1].seq;
    kl_audit_sigs_free(&s);
  } else if (r == KL_EFORMAT) {
    kl_err_wrap(e, "%s", a->sig_path);
  }
  free(buf);
  return r;
}

static void on_timer(uv_timer_t *t);

int kl_audit_open(uv_loop_t *loop, const kl_audit_opts_t *o, kl_audit_t **out, kl_err_t *e) {
  kl_audit_t *a = calloc(1, sizeof *a);
  uint64_t last_signed = 0;
  size_t torn_at = 0;
  int r;
  *out = NULL;
  if (a == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  a->loop = loop;
  a->fd = -1;
  a->node = o->node;
  a->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
  snprintf(a->log_path, sizeof a->log_path, "%s/audit.log", o->dir);
  snprintf(a->sig_path, sizeof a->sig_path, "%s/audit.ksig", o->dir);
  if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
    r = kl_err_set(e, KL_EIO, "cannot create %s: %s", o->dir, strerror(errno));
    goto fail;
  }
  if (o->gateway && o->gateway[0]) {
    snprintf(a->gateway, sizeof a->gateway, "%s", o->gateway);
    snprintf(a->user, sizeof a->user, "%s", o->user ? o->user : "");
    if (o->key_source == NULL || o->key_source[0] == '\0' || a->user[0] == '\0') {
      r = kl_err_set(e, KL_EINVAL, "[audit] gateway is set: user and key (a secret source, docs/keys.md) are required");
      goto fail;
    }
    if ((r = kl_key_secret_read(o->key_source, a->key, sizeof a->key, e))) {
      kl_err_wrap(e, "[audit] key");
      goto fail;
    }
  }
  if ((r = load_sigs(a, &last_signed, e)) || (r = load_log(a, &last_signed, &torn_at, e))) goto fail;
  if ((a->fd = open(a->log_path, O_WRONLY | O_APPEND)) < 0) {
    r = kl_err_set(e, KL_EIO, "cannot open %s: %s", a->log_path, strerror(errno));
    goto fail;
  }
  if (o->metrics) {
    a->m_records = kl_metrics_counter(o->metrics, "keyless_core_audit_records_total", "audit log records written", NULL);
    a->m_signed = kl_metrics_counter(o->metrics, "keyless_core_audit_signed_total", "audit log records signed", NULL);
    a->m_sign_failed = kl_metrics_counter(o->metrics, "keyless_core_audit_sign_failures_total",
                                          "audit signing requests that failed (the records stay pending and are retried)", NULL);
    a->m_write_failed = kl_metrics_counter(o->metrics, "keyless_core_audit_write_failures_total",
                                           "audit records that could not be written (the event happened unrecorded)", NULL);
  }
  if (a->gateway[0]) {
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_timer, 1000, 1000);
    a->timer_on = true;
  } else {
    kl_log(KL_LOG_WARN, "audit_unsigned", "log=%s action=\"set [audit] gateway: the records are chained but not signed\"",
           a->log_path);
  }
  kl_log(KL_LOG_INFO, "audit_open", "log=%s last_seq=%llu pending=%zu", a->log_path, (unsigned long long)a->last_seq, a->n_pend);
  *out = a;
  if (torn_at) kl_audit_event(a, "audit_torn_tail", "offset=%zu saved=audit.log.torn-%zu", torn_at, torn_at);
  return 0;
fail:
  kl_audit_free(a);
  return r;
}

KL_PRINTF(4, 0) static int append(kl_audit_t *a, const char *actor, const char *type, const char *fmt, va_list ap) {
  char details[KL_AUDIT_MAX_TEXT + 1], q[200];
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  vsnprintf(details, sizeof details, fmt, ap);
  for (char *p = details; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?'; /* one record, one line of text */
  kl_audit_rec_t rec = {.seq = a->last_seq + 1, .time_ms = now_ms(), .node = a->node, .type = type, .actor = actor,
                        .details = details, .prev = a->last_hash};
  int r = kl_audit_rec_encode(&b, &rec, &e);
  if (r == 0) r = kl_hash(KL_HASH_SHA256, b.p, b.len, &rec.hash, &e);
  if (r == 0 && a->n_pend == a->cap_pend) {
    size_t nc = a->cap_pend ? a->cap_pend * 2 : 64;
    pend_t *p = realloc(a->pend, nc * sizeof *p);
    if (p == NULL) r = kl_err_set(&e, KL_ENOMEM, "out of memory");
    else a->pend = p, a->cap_pend = nc;
  }
  if (r == 0) {
    ssize_t w = write(a->fd, b.p, b.len);
    if (w != (ssize_t)b.len || fdatasync(a->fd) != 0) {
      r = kl_err_set(&e, KL_EIO, "%s: %s", a->log_path, w < 0 ? strerror(errno) : "short write or sync failed");
      if (ftruncate(a->fd, (off_t)a->log_len) != 0) /* never leave half a record */
        kl_log(KL_LOG_ERROR, "audit_truncate_failed", "log=%s error=%s", a->log_path, strerror(errno));
    }
  }
  if (r) {
    kl_metric_inc(a->m_write_failed);
    kl_log(KL_LOG_ERROR, "audit_write_failed", "type=%s error=%s", type, kl_log_q(q, sizeof q, e.msg));
  } else {
    a->log_len += b.len;
    a->last_seq = rec.seq;
    a->last_hash = rec.hash;
    a->pend[a->n_pend++] = (pend_t){rec.seq, rec.hash};
    kl_metric_inc(a->m_records);
  }
  kl_buf_free(&b);
  return r;
}

int kl_audit_event(kl_audit_t *a, const char *type, const char *fmt, ...) {
  if (a == NULL) return 0;
  char actor[32];
  snprintf(actor, sizeof actor, "node/%llu", (unsigned long long)a->node);
  va_list ap;
  va_start(ap, fmt);
  int r = append(a, actor, type, fmt, ap);
  va_end(ap);
  return r;
}

int kl_audit_event_by(kl_audit_t *a, const char *actor, const char *type, const char *fmt, ...) {
  if (a == NULL) return 0;
  va_list ap;
  va_start(ap, fmt);
  int r = append(a, actor, type, fmt, ap);
  va_end(ap);
  return r;
}

size_t kl_audit_pending(const kl_audit_t *a) { return a ? a->n_pend : 0; }

/* Thread pool: sign, then append and sync the signatures. Reads only the job and the immutable
 * gateway settings. */
static void sign_work(uv_work_t *w) {
  job_t *j = w->data;
  kl_audit_t *a = j->a;
  kl_imprint_t *hashes = j->hashes;
  kl_sig_t **sigs = j->sigs;
  kl_buf_t b = KL_BUF_INIT;
  unsigned level = 0;
  while (((size_t)1 << level) < j->n) level++;
  for (size_t i = 0; i < j->n; i++) hashes[i] = j->items[i].hash;
  j->rc = kl_sign_hashes(a->gateway, a->user, a->key, hashes, j->n, level, 0, (int)a->timeout_ms, sigs, &j->err);
  for (size_t i = 0; i < j->n; i++) {
    size_t len;
    const uint8_t *p = sigs[i] ? kl_sig_bytes(sigs[i], &len) : NULL;
    if (j->rc == 0) j->rc = kl_audit_sig_encode(&b, j->items[i].seq, p, len, &j->err);
    kl_sig_free(sigs[i]);
  }
  if (j->rc == 0) {
    int fd = open(a->sig_path, O_WRONLY | O_APPEND);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
      j->rc = kl_err_set(&j->err, KL_EIO, "cannot open %s: %s", a->sig_path, strerror(errno));
    } else if (write(fd, b.p, b.len) != (ssize_t)b.len || fdatasync(fd) != 0) {
      j->rc = kl_err_set(&j->err, KL_EIO, "cannot append to %s: %s", a->sig_path, strerror(errno));
      if (ftruncate(fd, st.st_size) != 0) /* else the next start cuts it off as a torn tail */
        kl_err_wrap(&j->err, "and cannot cut the partial entry off");
    }
    if (fd >= 0) close(fd);
  }
  kl_buf_free(&b);
}

static void sign_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  kl_audit_t *a = j->a;
  char q[300];
  a->job = NULL;
  if (status != 0 && j->rc == 0) j->rc = kl_err_set(&j->err, KL_ESTATE, "cancelled");
  if (j->rc == 0) {
    size_t k = 0; /* the signed records are the first j->n of the list, in order */
    while (k < a->n_pend && k < j->n && a->pend[k].seq == j->items[k].seq) k++;
    memmove(a->pend, a->pend + k, (a->n_pend - k) * sizeof *a->pend);
    a->n_pend -= k;
    a->backoff_ms = 0;
    kl_metric_add(a->m_signed, (double)j->n);
    kl_log(KL_LOG_INFO, "audit_signed", "first=%llu last=%llu pending=%zu", (unsigned long long)j->items[0].seq,
           (unsigned long long)j->items[j->n - 1].seq, a->n_pend);
  } else {
    a->backoff_ms = a->backoff_ms ? (a->backoff_ms * 2 > 60000 ? 60000 : a->backoff_ms * 2) : 1000;
    a->next_try_ms = now_ms() + a->backoff_ms;
    kl_metric_inc(a->m_sign_failed);
    kl_log(KL_LOG_WARN, "audit_sign_failed", "first=%llu records=%zu retry_in_ms=%llu error=%s",
           (unsigned long long)j->items[0].seq, j->n, (unsigned long long)a->backoff_ms, kl_log_q(q, sizeof q, j->err.msg));
  }
  free(j);
}

static void on_timer(uv_timer_t *t) {
  kl_audit_t *a = t->data;
  if (a->closing || a->job || a->n_pend == 0 || now_ms() < a->next_try_ms) return;
  job_t *j = calloc(1, sizeof *j);
  if (j == NULL) return;
  j->a = a;
  j->n = a->n_pend < MAX_BATCH ? a->n_pend : MAX_BATCH;
  memcpy(j->items, a->pend, j->n * sizeof *j->items);
  j->w.data = j;
  if (uv_queue_work(a->loop, &j->w, sign_work, sign_done) != 0) {
    free(j);
    return;
  }
  a->job = j;
}

void kl_audit_close(kl_audit_t *a) {
  if (a == NULL || a->closing) return;
  a->closing = true;
  if (a->timer_on) uv_close((uv_handle_t *)&a->timer, NULL);
}

void kl_audit_free(kl_audit_t *a) {
  if (a == NULL) return;
  if (a->fd >= 0) close(a->fd);
  OPENSSL_cleanse(a->key, sizeof a->key);
  free(a->pend);
  free(a);
}
