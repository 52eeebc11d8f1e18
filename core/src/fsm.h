/* The core's Raft state machine (docs/core.md). Pure: no uv.h; driven by libraft, whether
 * with its libuv I/O in the daemon or its in-memory fixture in tests.
 *
 * Owns nothing it is given: the calendar stays the caller's. */
#ifndef KL_CORE_FSM_H
#define KL_CORE_FSM_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/calendar.h"
#include "keyless/hash.h"

typedef struct kl_core_leaf {
  kl_imprint_t imprint;
  unsigned level;
  uint64_t origin;
  uint64_t request_id;
} kl_core_leaf_t;

/* A committed second as applied; valid during the on_round callback only. */
typedef struct kl_core_round {
  uint64_t second;
  const kl_core_leaf_t *leaves;
  size_t n_leaves;
  const kl_imprint_t *root; /* NULL for an empty second */
  int algorithm;
} kl_core_round_t;

typedef void (*kl_core_round_cb)(void *arg, const kl_core_round_t *round);

enum { KL_FSM_OK = 0, KL_FSM_CATCHING_UP, KL_FSM_FAILED };

typedef struct kl_core_fsm {
  struct raft_fsm raft; /* give &fsm->raft to libraft; raft.data points back here */
  kl_cal_t *cal;
  kl_core_round_cb on_round;
  void *arg;
  int state;
  char error[KL_ERR_MSG_MAX]; /* why the state is KL_FSM_FAILED */
  /* Catching up after restoring a snapshot beyond the local calendar. */
  uint64_t target;
  kl_imprint_t target_root;
  kl_buf_t queued; /* entries applied while catching up: (u32 length, bytes)* */
  uint64_t applied_entries;
  uint64_t apply_start_ns; /* uv_hrtime() as the entry being applied (or the last one) began:
                            * on the leader, the instant its proposal was known committed */
} kl_core_fsm_t;

void kl_core_fsm_init(kl_core_fsm_t *f, kl_cal_t *cal, kl_core_round_cb on_round, void *arg);
void kl_core_fsm_close(kl_core_fsm_t *f);

/* Encodes a RoundEntry for raft_apply; the buffer is raft_malloc'ed (libraft frees it). */
int kl_core_entry_encode(uint64_t second, uint64_t fill_from, const kl_core_leaf_t *leaves, size_t n,
                         const kl_imprint_t *root, int algorithm, struct raft_buffer *out, kl_err_t *e);
/* The same with an administrative note (who asked for what; NULL: none) that every member
 * logs when it applies the entry (event=admin_request). */
int kl_core_entry_encode_note(uint64_t second, uint64_t fill_from, const kl_core_leaf_t *leaves, size_t n,
                              const kl_imprint_t *root, int algorithm, const char *who, const char *what,
                              struct raft_buffer *out, kl_err_t *e);

/* After catching up (the calendar now reaches the target): checks the target root and applies
 * the queued entries. KL_EFORMAT (and state FAILED) if the calendar disagrees with the snapshot. */
int kl_core_fsm_caught_up(kl_core_fsm_t *f, kl_err_t *e);

#endif
