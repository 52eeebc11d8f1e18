/* The core's Raft FSM: applying committed seconds to the calendar, thin snapshots.
 *
 * apply: decode the RoundEntry; a second at or before the calendar's last is a replay (after a
 *        restart) and must match what is stored, else the node stops (state FAILED) rather
 *        than fork; a later second is appended (the gap as empty seconds) and announced.
 * snapshot: fsync the calendar (it runs without fsync, the Raft log being the durable copy),
 *        then describe it in a few bytes: genesis, last second, root(last).
 * restore: a calendar already past the snapshot must agree with it; one behind it enters
 *        CATCHING_UP, queues entries, and resumes in kl_core_fsm_caught_up once the node has
 *        fetched the missing seconds from a peer. */
#include "fsm.h"

#include "keyless/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core.pb-c.h"
#include "keyless/log.h"

static void fail(kl_core_fsm_t *f, const char *fmt, ...) KL_PRINTF(2, 3);
static void fail(kl_core_fsm_t *f, const char *fmt, ...) {
  va_list ap;
  f->state = KL_FSM_FAILED;
  va_start(ap, fmt);
  vsnprintf(f->error, sizeof f->error, fmt, ap);
  va_end(ap);
}

/* libraft's segment files keep entry data 8-byte aligned: an entry whose length is not a
 * multiple of 8 is read back misaligned. So every entry and snapshot is padded with zeros to a
 * multiple of 8 and starts with its own 4-byte big-endian length, which also makes trailing
 * padding harmless. */
#define PADDED(n) (((n) + 4 + 7) / 8 * 8)
static bool unframe(const uint8_t **p, size_t *len) {
  if (*len < 4) return false;
  size_t n = (size_t)(*p)[0] << 24 | (size_t)(*p)[1] << 16 | (size_t)(*p)[2] << 8 | (*p)[3];
  if (n > *len - 4) return false;
  *p += 4;
  *len = n;
  return true;
}

static void frame_header(uint8_t *p, size_t n) {
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
}

static int apply_entry(kl_core_fsm_t *f, const uint8_t *p, size_t len) {
  kl_err_t e = {0};

  Keyless__Core__RoundEntry *re = unframe(&p, &len) ? keyless__core__round_entry__unpack(NULL, len, p) : NULL;
  if (re == NULL) {
    fail(f, "Raft entry %llu: undecodable (%zu bytes, starting %02x %02x %02x %02x %02x %02x)",
         (unsigned long long)f->applied_entries, len, len > 0 ? p[0] : 0, len > 1 ? p[1] : 0, len > 2 ? p[2] : 0,
         len > 3 ? p[3] : 0, len > 4 ? p[4] : 0, len > 5 ? p[5] : 0);
    return RAFT_INVALID;
  }
  kl_imprint_t root;
  bool has_root = re->has_root;
  kl_core_leaf_t *leaves = calloc(re->n_leaves ? re->n_leaves : 1, sizeof *leaves);
  int rc = 0;
  if (leaves == NULL) {
    rc = RAFT_NOMEM;
    goto out;
  }
  if (has_root && kl_imprint_from_bytes(&root, re->root.data, re->root.len, &e)) {
    fail(f, "second %llu: bad root in the Raft entry: %s", (unsigned long long)re->second, e.msg);
    goto out;
  }
  for (size_t i = 0; i < re->n_leaves; i++) {
    const Keyless__Core__Leaf *l = re->leaves[i];
    if (kl_imprint_from_bytes(&leaves[i].imprint, l->imprint.data, l->imprint.len, &e)) {
      fail(f, "second %llu: bad leaf in the Raft entry: %s", (unsigned long long)re->second, e.msg);
      goto out;
    }
    leaves[i].level = l->level;
    leaves[i].origin = l->origin;
    leaves[i].request_id = l->request_id;
  }
  kl_cal_info_t info;
  if (kl_cal_info(f->cal, &info, &e)) {
    fail(f, "second %llu: %s", (unsigned long long)re->second, e.msg);
    goto out;
  }
  if (!info.empty && re->second <= info.last) {
    /* A replay: what the log says must be what the calendar holds. */
    kl_imprint_t stored, want;
    if (re->second < info.genesis || kl_cal_leaf(f->cal, re->second, &stored, &e)) {
      fail(f, "replay of second %llu: %s", (unsigned long long)re->second, e.msg[0] ? e.msg : "before genesis");
      goto out;
    }
    if (has_root) want = root;
    else kl_cal_filler_leaf(re->second, &want);
    if (!kl_imprint_eq(&stored, &want)) {
      fail(f, "replay of second %llu: the Raft log and the calendar disagree; refusing to continue", (unsigned long long)re->second);
      goto out;
    }
  } else {
    kl_cal_entry_t ce = {re->second, has_root ? &root : NULL};
    if (kl_cal_append(f->cal, &ce, 1, &e)) {
      fail(f, "second %llu: calendar append failed: %s", (unsigned long long)re->second, e.msg);
      goto out;
    }
  }
  if (re->note) { /* every member records who asked for an administrative change */
    char qw[100], qa[300];
    kl_log(KL_LOG_WARN, "admin_request", "by=%s what=%s second=%llu", kl_log_q(qw, sizeof qw, re->note->who),
           kl_log_q(qa, sizeof qa, re->note->what), (unsigned long long)re->second);
  }
  if (f->on_round) {
    kl_core_round_t round = {re->second, leaves, re->n_leaves, has_root ? &root : NULL, (int)re->algorithm};
    f->on_round(f->arg, &round);
  }
out:
  free(leaves);
  keyless__core__round_entry__free_unpacked(re, NULL);
  f->applied_entries++;
  return rc;
}

static int fsm_apply(struct raft_fsm *raft, const struct raft_buffer *buf, void **result) {
  kl_core_fsm_t *f = raft->data;
  *result = NULL;
  if (f->state == KL_FSM_FAILED) return 0; /* stays failed: the node is stopping */
  if (f->state == KL_FSM_CATCHING_UP) {
    uint8_t n[4] = {(uint8_t)(buf->len >> 24), (uint8_t)(buf->len >> 16), (uint8_t)(buf->len >> 8), (uint8_t)buf->len};
    kl_buf_put(&f->queued, n, 4);
    kl_buf_put(&f->queued, buf->base, buf->len);
    return kl_buf_ok(&f->queued) ? 0 : RAFT_NOMEM;
  }
  f->apply_start_ns = uv_hrtime();
  return apply_entry(f, buf->base, buf->len);
}

static int fsm_snapshot(struct raft_fsm *raft, struct raft_buffer *bufs[], unsigned *n_bufs) {
  kl_core_fsm_t *f = raft->data;
  kl_err_t e = {0};
  kl_cal_info_t info;
  kl_imprint_t root;
  uint8_t rootb[KL_IMPRINT_MAX];
  if (f->state != KL_FSM_OK) return RAFT_BUSY;
  if (kl_cal_sync(f->cal, &e) || kl_cal_info(f->cal, &info, &e)) return RAFT_IOERR;
  Keyless__Core__Snapshot s = KEYLESS__CORE__SNAPSHOT__INIT;
  s.genesis = info.genesis;
  s.empty = info.empty;
  if (!info.empty) {
    if (kl_cal_root(f->cal, info.last, &root, &e)) return RAFT_IOERR;
    s.has_last = 1;
    s.last = info.last;
    s.has_last_root = 1;
    s.last_root.len = kl_imprint_to_bytes(&root, rootb);
    s.last_root.data = rootb;
  }
  size_t n = keyless__core__snapshot__get_packed_size(&s);
  struct raft_buffer *b = raft_malloc(sizeof *b);
  if (b == NULL) return RAFT_NOMEM;
  b->base = raft_calloc(1, PADDED(n));
  if (b->base == NULL) {
    raft_free(b);
    return RAFT_NOMEM;
  }
  frame_header(b->base, n);
  keyless__core__snapshot__pack(&s, (uint8_t *)b->base + 4);
  b->len = PADDED(n);
  *bufs = b;
  *n_bufs = 1;
  return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *raft, struct raft_buffer *bufs[], unsigned *n_bufs) {
  (void)raft;
  for (unsigned i = 0; i < *n_bufs; i++) raft_free((*bufs)[i].base);
  raft_free(*bufs);
  *bufs = NULL;
  *n_bufs = 0;
  return 0;
}

static int fsm_restore(struct raft_fsm *raft, struct raft_buffer *buf) {
  kl_core_fsm_t *f = raft->data;
  kl_err_t e = {0};
  kl_cal_info_t info;
  const uint8_t *sp = buf->base;
  size_t sl = buf->len;
  Keyless__Core__Snapshot *s = unframe(&sp, &sl) ? keyless__core__snapshot__unpack(NULL, sl, sp) : NULL;
  int rc = 0;
  if (s == NULL) {
    fail(f, "snapshot: undecodable");
    rc = RAFT_INVALID;
    goto out;
  }
  if (kl_cal_info(f->cal, &info, &e)) {
    fail(f, "snapshot: %s", e.msg);
    rc = RAFT_IOERR;
    goto out;
  }
  if (s->genesis != info.genesis) {
    fail(f, "snapshot: genesis %llu differs from this calendar's", (unsigned long long)s->genesis);
    rc = RAFT_INVALID;
    goto out;
  }
  if (s->empty || !s->has_last) goto out; /* nothing committed yet */
  kl_imprint_t want;
  if (!s->has_last_root || kl_imprint_from_bytes(&want, s->last_root.data, s->last_root.len, &e)) {
    fail(f, "snapshot at %llu: bad root", (unsigned long long)s->last);
    rc = RAFT_INVALID;
    goto out;
  }
  if (!info.empty && info.last >= s->last) {
    kl_imprint_t root;
    if (kl_cal_root(f->cal, s->last, &root, &e) || !kl_imprint_eq(&root, &want)) {
      fail(f, "snapshot at %llu: this calendar's root differs; refusing to continue", (unsigned long long)s->last);
      rc = RAFT_INVALID;
    }
    goto out;
  }
  f->state = KL_FSM_CATCHING_UP;
  f->target = s->last;
  f->target_root = want;
out:
  if (s) keyless__core__snapshot__free_unpacked(s, NULL);
  raft_free(buf->base);
  return rc;
}

int kl_core_fsm_caught_up(kl_core_fsm_t *f, kl_err_t *e) {
  kl_cal_info_t info;
  kl_imprint_t root;
  int r;
  if (f->state != KL_FSM_CATCHING_UP) return 0;
  if ((r = kl_cal_info(f->cal, &info, e))) return r;
  if (info.empty || info.last < f->target)
    return kl_err_set(e, KL_ESTATE, "still catching up: at %llu of %llu", (unsigned long long)(info.empty ? 0 : info.last),
                      (unsigned long long)f->target);
  if ((r = kl_cal_root(f->cal, f->target, &root, e))) return r;
  if (!kl_imprint_eq(&root, &f->target_root)) {
    fail(f, "caught up to %llu, but the root differs from the snapshot's", (unsigned long long)f->target);
    return kl_err_set(e, KL_EFORMAT, "%s", f->error);
  }
  f->state = KL_FSM_OK;
  size_t off = 0;
  while (off + 4 <= f->queued.len && f->state == KL_FSM_OK) {
    const uint8_t *q = f->queued.p + off;
    size_t n = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
    apply_entry(f, q + 4, n);
    off += 4 + n;
  }
  kl_buf_free(&f->queued);
  return f->state == KL_FSM_OK ? 0 : kl_err_set(e, KL_EFORMAT, "%s", f->error);
}

void kl_core_fsm_init(kl_core_fsm_t *f, kl_cal_t *cal, kl_core_round_cb on_round, void *arg) {
  memset(f, 0, sizeof *f);
  f->cal = cal;
  f->on_round = on_round;
  f->arg = arg;
  f->raft.version = 2;
  f->raft.data = f;
  f->raft.apply = fsm_apply;
  f->raft.snapshot = fsm_snapshot;
  f->raft.snapshot_finalize = fsm_snapshot_finalize;
  f->raft.restore = fsm_restore;
  kl_buf_init(&f->queued);
}

void kl_core_fsm_close(kl_core_fsm_t *f) { kl_buf_free(&f->queued); }

int kl_core_entry_encode(uint64_t second, uint64_t fill_from, const kl_core_leaf_t *leaves, size_t n,
                         const kl_imprint_t *root, int algorithm, struct raft_buffer *out, kl_err_t *e) {
  return kl_core_entry_encode_note(second, fill_from, leaves, n, root, algorithm, NULL, NULL, out, e);
}

int kl_core_entry_encode_note(uint64_t second, uint64_t fill_from, const kl_core_leaf_t *leaves, size_t n,
                              const kl_imprint_t *root, int algorithm, const char *who, const char *what,
                              struct raft_buffer *out, kl_err_t *e) {
  Keyless__Core__RoundEntry re = KEYLESS__CORE__ROUND_ENTRY__INIT;
  Keyless__Core__AdminNote note = KEYLESS__CORE__ADMIN_NOTE__INIT;
  if (who && what) {
    note.who = (char *)who;
    note.what = (char *)what;
    re.note = &note;
  }
  Keyless__Core__Leaf *ls = calloc(n ? n : 1, sizeof *ls);
  Keyless__Core__Leaf **lp = calloc(n ? n : 1, sizeof *lp);
  uint8_t(*imps)[KL_IMPRINT_MAX] = calloc(n ? n : 1, KL_IMPRINT_MAX);
  uint8_t rootb[KL_IMPRINT_MAX];
  int r = 0;
  if (ls == NULL || lp == NULL || imps == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    keyless__core__leaf__init(&ls[i]);
    ls[i].imprint.len = kl_imprint_to_bytes(&leaves[i].imprint, imps[i]);
    ls[i].imprint.data = imps[i];
    ls[i].level = leaves[i].level;
    ls[i].origin = leaves[i].origin;
    ls[i].request_id = leaves[i].request_id;
    lp[i] = &ls[i];
  }
  re.second = second;
  re.n_leaves = n;
  re.leaves = lp;
  re.algorithm = (uint32_t)algorithm;
  if (fill_from) {
    re.has_fill_from = 1;
    re.fill_from = fill_from;
  }
  if (root) {
    re.has_root = 1;
    re.root.len = kl_imprint_to_bytes(root, rootb);
    re.root.data = rootb;
  }
  size_t len = keyless__core__round_entry__get_packed_size(&re);
  out->base = raft_calloc(1, PADDED(len));
  if (out->base == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  frame_header(out->base, len);
  keyless__core__round_entry__pack(&re, (uint8_t *)out->base + 4);
  out->len = PADDED(len);
out:
  free(imps);
  free(lp);
  free(ls);
  return r;
}
