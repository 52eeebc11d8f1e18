/* libFuzzer driver: the calendar audit decoders (consistency proof, head, range) and the proof
 * verifier on whatever decodes; what decodes must encode back to the same bytes (canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/calproof.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const kl_buf_t *b, const uint8_t *data, size_t size) {
  if (kl_buf_check(b, NULL) || b->len != size || memcmp(b->p, data, size) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_calproof_t p;
  kl_calhead_t h;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  if (kl_calproof_decode(data, size, &p, &e) == 0) {
    if (p.n != kl_calproof_len(p.from, p.to)) abort();
    if (p.has_roots) (void)kl_calproof_verify(&p, &p.root_from, &p.root_to, &e);
    else if (p.n > 0) (void)kl_calproof_verify(&p, &p.path[0], &p.path[p.n - 1], &e);
    kl_calproof_encode(&b, &p);
    same(&b, data, size);
  }
  kl_buf_reset(&b);
  if (kl_calhead_decode(data, size, &h, &e) == 0) {
    kl_calhead_encode(&b, &h);
    same(&b, data, size);
  }
  kl_buf_reset(&b);
  kl_calrange_t *r = malloc(sizeof *r);
  if (r && kl_calrange_decode(data, size, r, &e) == 0) {
    kl_calrange_encode(&b, r);
    same(&b, data, size);
    kl_hasher_t hs;
    kl_imprint_t root;
    if (kl_hasher_init(&hs, NULL) == 0) {
      for (uint64_t t = r->from; t <= r->to; t++)
        if (kl_calforest_push(&r->before, &hs, &r->leaf[t - r->from], NULL)) break;
      (void)kl_calforest_root(&r->before, &hs, &root, NULL);
      kl_hasher_close(&hs);
    }
  }
  free(r);
  kl_buf_free(&b);
  return 0;
}
