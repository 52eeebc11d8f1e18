/* libFuzzer driver for the core's Raft entries and snapshots: whatever the bytes, applying
 * them either appends a well-formed second or marks the FSM failed; never a crash, and never
 * a calendar that no longer audits. Seeds: tests/fuzz/corpus/core_entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm.h"

static char dir[64];
static kl_cal_t *cal;
static kl_core_fsm_t fsm;
static int runs;

static void reset(void) {
  char cmd[128];
  if (cal) {
    kl_core_fsm_close(&fsm);
    kl_cal_close(cal);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) abort();
  }
  snprintf(dir, sizeof dir, "/tmp/kl-fuzz-fsm-XXXXXX");
  if (mkdtemp(dir) == NULL) abort();
  kl_cal_opts_t o = {.map_size = 64u << 20, .no_sync = true};
  if (kl_cal_create(dir, 1000, &o, NULL) || kl_cal_open(dir, &o, &cal, NULL)) abort();
  kl_core_fsm_init(&fsm, cal, NULL, NULL);
  runs = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (cal == NULL || ++runs > 2000) reset();
  void *result;
  for (int pass = 0; pass < 2; pass++) { /* the bytes as an entry, then as a snapshot */
    struct raft_buffer buf = {raft_malloc(size ? size : 1), size};
    if (buf.base == NULL) return 0;
    memcpy(buf.base, data, size);
    fsm.state = KL_FSM_OK;
    if (pass == 1) {
      fsm.raft.restore(&fsm.raft, &buf); /* restore takes ownership of the buffer */
    } else {
      fsm.raft.apply(&fsm.raft, &buf, &result);
      raft_free(buf.base);
    }
  }
  if (runs % 64 == 0) {
    kl_cal_audit_t rep;
    if (kl_cal_audit(cal, NULL, &rep, NULL)) abort();
  }
  fsm.state = KL_FSM_OK;
  kl_buf_free(&fsm.queued);
  return 0;
}
