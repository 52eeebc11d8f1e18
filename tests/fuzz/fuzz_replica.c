/* libFuzzer driver for the replication decoder: frame headers, then the message decoded and,
 * for Entries, checked and applied to a replica calendar (genesis 1000, reset when it grows).
 * Seeds: tests/fuzz/corpus/replica. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyless/replica.h"

static char dir[64];
static kl_cal_t *cal;
static int appended;

static void reset(void) {
  char cmd[128];
  if (cal) kl_cal_close(cal);
  cal = NULL;
  if (dir[0]) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) abort();
  }
  snprintf(dir, sizeof dir, "/tmp/kl-fuzz-rep-XXXXXX");
  if (mkdtemp(dir) == NULL) abort();
  kl_cal_opts_t o = {.map_size = 64u << 20, .no_sync = true};
  if (kl_cal_create(dir, 1000, &o, NULL) || kl_cal_open(dir, &o, &cal, NULL)) abort();
  appended = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (cal == NULL || appended > 100000) reset();
  size_t n;
  kl_err_t e = {0};
  int r = kl_frame_peek(data, size, KL_REPL_MAX_FRAME, &n, &e);
  if (r == 1 && n + KL_FRAME_HDR > size) abort(); /* must never claim more than it has */
  const uint8_t *payload = r == 1 ? data + KL_FRAME_HDR : data;
  size_t len = r == 1 ? n : size;
  kl_repl_subscribe_t sub;
  int is_sub;
  size_t applied = 0;
  kl_cal_info_t before, after;
  if (kl_cal_info(cal, &before, NULL)) abort();
  kl_repl_result_t peek;
  if (kl_repl_peek(payload, len, &peek, &e) == 0 && !peek.is_entries && !peek.is_subscribe) abort(); /* one or the other */
  r = kl_repl_handle(payload, len, cal, &sub, &is_sub, &applied, &e);
  if (kl_cal_info(cal, &after, NULL)) abort();
  uint64_t b = before.empty ? 0 : before.last - before.genesis + 1, a = after.empty ? 0 : after.last - after.genesis + 1;
  if (r != 0 && a != b) abort();       /* a refused message changes nothing */
  if (r == 0 && a != b + applied) abort(); /* an accepted one appends exactly its entries */
  appended += (int)applied;
  return 0;
}
