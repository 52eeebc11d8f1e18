/* libFuzzer driver for the calendar's block decoder (storage format 2, docs/formats.md §2.3):
 * 8 bytes of block number, then a block value as LMDB would hand it over. A value that decodes
 * is then used as the readers use it: every leaf, every middle node from the leaves and from
 * the stored nodes, and the block root. Nothing may crash, read outside the value or accept
 * bytes after the last leaf. Seeds: tests/fuzz/corpus/cal_block. */
#include <stdlib.h>
#include <string.h>

#include "../../calendar/src/cal_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  uint64_t k = 0;
  for (int q = 0; q < 8; q++) k = k << 8 | data[q];
  k &= ((uint64_t)1 << 40) - 1; /* seconds stay below 2^48 */
  size_t len = size - 8;
  uint8_t *v = malloc(len ? len : 1); /* its own allocation, so ASan sees reads past the end */
  if (v == NULL) abort();
  memcpy(v, data + 8, len);
  kl__cal_block_t b;
  kl_err_t e = {0};
  kl_hasher_t h;
  if (kl__cal_block_decode(v, len, k, &b, &e) == 0) {
    if (b.first + b.count > KL__CAL_BLOCK || b.n_mid > KL__CAL_MIDS) abort();
    if (b.n_upper != (b.first + b.count == KL__CAL_BLOCK ? 1u + (unsigned)__builtin_ctzll(k + 1) : 0u)) abort();
    for (unsigned j = 0; j < b.count; j++)
      if (b.leaf[j] >= len) abort();
    if (kl_hasher_init(&h, NULL)) abort();
    uint64_t genesis = (k << KL__CAL_BLOCK_BITS) + b.first;
    kl_imprint_t x, y;
    for (unsigned j = 0; j < b.n_mid; j++) {
      uint64_t i = (k << (KL__CAL_BLOCK_BITS - KL__CAL_MID_BITS)) + b.mid0 + j;
      int r1 = kl__cal_block_subtree(&b, k, genesis, false, &h, KL__CAL_MID_BITS, i, &x, NULL);
      int r2 = kl__cal_block_subtree(&b, k, genesis, true, &h, KL__CAL_MID_BITS, i, &y, NULL);
      if (r2 != 0) abort(); /* a stored node was decoded: reading it cannot fail */
      (void)r1;
    }
    if (b.n_upper) (void)kl__cal_block_subtree(&b, k, genesis, true, &h, KL__CAL_BLOCK_BITS, k, &x, NULL);
    kl_hasher_close(&h);
  }
  free(v);
  return 0;
}
