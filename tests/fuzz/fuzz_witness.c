/* libFuzzer driver: the witness cosignature file decoder (keyless/witness.h); what decodes must
 * encode back to the same bytes (canonical), find every record it holds, and merge into a copy of
 * itself without change. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/witness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_witfile_t f, g = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  if (kl_witfile_decode(data, size, &f, &e) != 0) return 0;
  if (kl_witfile_encode(&b, &f, &e) != 0 || b.len != size || memcmp(b.p, data, size) != 0) abort();
  for (size_t i = 0; i < f.n; i++) {
    if (kl_witfile_find(&f, f.pubs[i].time) != &f.pubs[i]) abort();
    for (size_t j = 0; j < f.pubs[i].n; j++) {
      bool added;
      if (kl_witfile_add(&g, f.pubs[i].time, &f.pubs[i].root, &f.pubs[i].cosig[j], &added, &e) || !added) abort();
    }
  }
  kl_buf_reset(&b);
  /* records without cosignatures are not made by add */
  size_t with = 0;
  for (size_t i = 0; i < f.n; i++) with += f.pubs[i].n > 0;
  if (g.n != with) abort();
  kl_witfile_free(&g);
  kl_witfile_free(&f);
  kl_buf_free(&b);
  return 0;
}
