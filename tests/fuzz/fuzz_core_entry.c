/* libFuzzer driver for the core's Raft entries and snapshots: whatever the bytes, applying
 * them either appends a well-formed second or marks the FSM failed; never a crash, and never
 * a calendar that no longer audits. Seeds: tests/fuzz/corpus/core_entry.
 *
 * Each input is applied as an entry, then restored as a snapshot (and, if that snapshot puts
 * the FSM in CATCHING_UP, applied again as a queued entry). The driver decodes the bytes itself
 * as the FSM does (4-byte length, then the protobuf) and checks the FSM against it:
 *  - an undecodable entry fails the FSM and leaves the calendar as it was;
 *  - an accepted entry after the last second appends exactly [next, second] (fillers before
 *    it), stores its root (or the filler) at `second`, and is announced once with the same
 *    second, root and leaves; an accepted replay changes nothing and matches what is stored;
 *  - a refused entry changes nothing and announces nothing;
 *  - what was announced re-encodes (kl_core_entry_encode) to an entry that decodes the same;
 *  - a snapshot never changes the calendar; CATCHING_UP only targets a second beyond it, and
 *    kl_core_fsm_caught_up then refuses (the calendar has not caught up).
 *
 * Speed: one calendar per process on tmpfs (/dev/shm when present), grown by the inputs and
 * recreated when it passes RESET_SECONDS. Appending a gap of G empty seconds costs O(G) LMDB
 * writes, and the calendar accepts up to 2^22 of them per append, so an input whose second lies
 * more than MAX_FUZZ_GAP seconds past the calendar's end (but within what the calendar would
 * accept) is only decoded, not applied; beyond 2^22 it is applied (the calendar refuses it
 * cheaply). Gap filling itself is tested by the calendar's unit tests. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.pb-c.h"
#include "fsm.h"

#define GENESIS 1000
#define RESET_SECONDS 4096
#define MAX_FUZZ_GAP 64
#define CAL_MAX_GAP (1u << 22) /* calendar.c MAX_GAP */

static char dir[64];
static kl_cal_t *cal;
static kl_core_fsm_t fsm;
static unsigned runs;

/* What on_round saw for the current input. */
static struct {
  int calls;
  uint64_t second;
  bool has_root;
  kl_imprint_t root;
  size_t n_leaves;
  kl_core_leaf_t leaves[64];
  bool leaves_checked; /* n_leaves <= 64: leaves copied */
  int algorithm;
} seen;

static void check(bool ok) {
  if (!ok) abort();
}

static void on_round(void *arg, const kl_core_round_t *r) {
  (void)arg;
  seen.calls++;
  seen.second = r->second;
  seen.has_root = r->root != NULL;
  if (r->root) seen.root = *r->root;
  seen.n_leaves = r->n_leaves;
  seen.leaves_checked = r->n_leaves <= sizeof seen.leaves / sizeof seen.leaves[0];
  if (seen.leaves_checked && r->n_leaves) memcpy(seen.leaves, r->leaves, r->n_leaves * sizeof *r->leaves);
  seen.algorithm = r->algorithm;
}

static void remove_dir(const char *d) {
  DIR *dh = opendir(d);
  if (dh == NULL) return;
  struct dirent *de;
  char path[256];
  while ((de = readdir(dh)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", d, de->d_name);
    if (unlink(path) != 0) abort();
  }
  closedir(dh);
  if (rmdir(d) != 0) abort();
}

static void cleanup(void) {
  if (cal == NULL) return;
  kl_core_fsm_close(&fsm);
  kl_cal_close(cal);
  cal = NULL;
  remove_dir(dir);
}

static void reset(void) {
  static bool registered;
  cleanup();
  if (!registered) {
    atexit(cleanup);
    registered = true;
  }
  snprintf(dir, sizeof dir, "%s/kl-fuzz-fsm-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (mkdtemp(dir) == NULL) abort();
  kl_cal_opts_t o = {.map_size = 64u << 20, .no_sync = true};
  if (kl_cal_create(dir, GENESIS, &o, NULL) || kl_cal_open(dir, &o, &cal, NULL)) abort();
  kl_core_fsm_init(&fsm, cal, on_round, NULL);
}

/* The FSM's framing: 4-byte big-endian length, then that many bytes (the rest is padding). */
static Keyless__Core__RoundEntry *decode_entry(const uint8_t *p, size_t len) {
  if (len < 4) return NULL;
  size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
  if (n > len - 4) return NULL;
  return keyless__core__round_entry__unpack(NULL, n, p + 4);
}

static uint64_t count(const kl_cal_info_t *i) { return i->empty ? 0 : i->last - i->genesis + 1; }

static bool same_info(const kl_cal_info_t *a, const kl_cal_info_t *b) {
  return a->empty == b->empty && a->last == b->last && a->genesis == b->genesis && a->rounds == b->rounds &&
         a->fillers == b->fillers;
}

static void apply(const uint8_t *data, size_t size) {
  struct raft_buffer buf = {raft_malloc(size ? size : 1), size};
  void *result;
  if (buf.base == NULL) abort();
  memcpy(buf.base, data, size);
  fsm.raft.apply(&fsm.raft, &buf, &result);
  raft_free(buf.base);
}

/* Whether the entry's imprints are what kl_imprint_from_bytes accepts (as the FSM requires). */
static bool imprint_ok(ProtobufCBinaryData b, kl_imprint_t *out) {
  return kl_imprint_from_bytes(out, b.data, b.len, NULL) == 0;
}

/* The announcement re-encodes to an entry that decodes to the same fields. */
static void check_reencode(void) {
  if (!seen.leaves_checked) return;
  struct raft_buffer out;
  kl_err_t e = {0};
  check(kl_core_entry_encode(seen.second, 0, seen.leaves, seen.n_leaves, seen.has_root ? &seen.root : NULL,
                             seen.algorithm, &out, &e) == 0);
  check(out.len % 8 == 0);
  Keyless__Core__RoundEntry *re = decode_entry(out.base, out.len);
  check(re != NULL && re->second == seen.second && re->n_leaves == seen.n_leaves &&
        (int)re->algorithm == seen.algorithm && !re->has_fill_from && (bool)re->has_root == seen.has_root);
  kl_imprint_t imp;
  if (seen.has_root) check(imprint_ok(re->root, &imp) && kl_imprint_eq(&imp, &seen.root));
  for (size_t i = 0; i < re->n_leaves; i++) {
    const Keyless__Core__Leaf *l = re->leaves[i];
    check(imprint_ok(l->imprint, &imp) && kl_imprint_eq(&imp, &seen.leaves[i].imprint));
    check(l->level == seen.leaves[i].level && l->origin == seen.leaves[i].origin &&
          l->request_id == seen.leaves[i].request_id);
  }
  keyless__core__round_entry__free_unpacked(re, NULL);
  raft_free(out.base);
}

/* The input as an entry, with the FSM in state OK. */
static void fuzz_entry(const uint8_t *data, size_t size, const kl_cal_info_t *before) {
  Keyless__Core__RoundEntry *re = decode_entry(data, size);
  uint64_t next = before->empty ? before->genesis : before->last + 1;
  if (re && re->second > next && re->second - next > MAX_FUZZ_GAP && re->second - next <= CAL_MAX_GAP) {
    keyless__core__round_entry__free_unpacked(re, NULL); /* too slow to apply (see above) */
    return;
  }
  memset(&seen, 0, sizeof seen);
  fsm.state = KL_FSM_OK;
  apply(data, size);
  kl_cal_info_t after;
  check(kl_cal_info(cal, &after, NULL) == 0);
  if (re == NULL) check(fsm.state == KL_FSM_FAILED); /* undecodable */
  if (fsm.state != KL_FSM_OK) {
    check(fsm.state == KL_FSM_FAILED && fsm.error[0] != '\0');
    check(same_info(before, &after) && seen.calls == 0);
  } else {
    check(re != NULL && seen.calls == 1 && seen.second == re->second && seen.n_leaves == re->n_leaves &&
          seen.algorithm == (int)re->algorithm && seen.has_root == (bool)re->has_root);
    kl_imprint_t want, stored, imp;
    if (re->has_root) {
      check(imprint_ok(re->root, &want) && kl_imprint_eq(&want, &seen.root));
    } else {
      kl_cal_filler_leaf(re->second, &want);
    }
    if (seen.leaves_checked)
      for (size_t i = 0; i < re->n_leaves; i++)
        check(imprint_ok(re->leaves[i]->imprint, &imp) && kl_imprint_eq(&imp, &seen.leaves[i].imprint) &&
              re->leaves[i]->level == seen.leaves[i].level && re->leaves[i]->origin == seen.leaves[i].origin &&
              re->leaves[i]->request_id == seen.leaves[i].request_id);
    check(kl_cal_leaf(cal, re->second, &stored, NULL) == 0 && kl_imprint_eq(&stored, &want));
    if (re->second < next) {
      check(same_info(before, &after)); /* a replay */
    } else {
      check(!after.empty && after.last == re->second && count(&after) == count(before) + (re->second - next + 1));
      check(after.rounds == before->rounds + (re->has_root ? 1 : 0));
      check(after.fillers == before->fillers + (re->second - next) + (re->has_root ? 0 : 1));
      for (uint64_t t = next; t < re->second; t++) {
        kl_cal_filler_leaf(t, &want);
        check(kl_cal_leaf(cal, t, &stored, NULL) == 0 && kl_imprint_eq(&stored, &want));
      }
    }
    check_reencode();
  }
  if (re) keyless__core__round_entry__free_unpacked(re, NULL);
}

/* The input as a snapshot; then, if it made the FSM catch up, as an entry queued meanwhile. */
static void fuzz_snapshot(const uint8_t *data, size_t size) {
  kl_cal_info_t before, after;
  check(kl_cal_info(cal, &before, NULL) == 0);
  fsm.state = KL_FSM_OK;
  struct raft_buffer buf = {raft_malloc(size ? size : 1), size};
  if (buf.base == NULL) abort();
  memcpy(buf.base, data, size);
  fsm.raft.restore(&fsm.raft, &buf); /* takes ownership of the buffer */
  check(kl_cal_info(cal, &after, NULL) == 0 && same_info(&before, &after));
  if (fsm.state == KL_FSM_FAILED) check(fsm.error[0] != '\0');
  if (fsm.state == KL_FSM_CATCHING_UP) {
    check(before.empty || fsm.target > before.last);
    memset(&seen, 0, sizeof seen);
    apply(data, size);
    check(fsm.state == KL_FSM_CATCHING_UP && seen.calls == 0 && fsm.queued.len == size + 4);
    kl_err_t e = {0};
    check(kl_core_fsm_caught_up(&fsm, &e) != 0 && e.msg[0] != '\0' && fsm.state == KL_FSM_CATCHING_UP);
    check(kl_cal_info(cal, &after, NULL) == 0 && same_info(&before, &after) && seen.calls == 0);
  }
  fsm.state = KL_FSM_OK;
  kl_buf_free(&fsm.queued);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_cal_info_t info;
  if (cal == NULL) reset();
  check(kl_cal_info(cal, &info, NULL) == 0);
  if (count(&info) > RESET_SECONDS) {
    reset();
    check(kl_cal_info(cal, &info, NULL) == 0);
  }
  fuzz_entry(data, size, &info);
  fuzz_snapshot(data, size);
  if (++runs % 256 == 0) {
    kl_cal_audit_t rep;
    if (kl_cal_audit(cal, NULL, &rep, NULL)) abort();
  }
  return 0;
}
