/* libFuzzer driver: the readers of k-of-n publications files (docs/keys.md, "k of n"): an
 * unsigned body (kl_pubfile_parse_body) and a detached signature part checked against a fixed
 * body (kl_pubfile_part_check: the CMS decoder and the per-signer checks), then assembling it. The
 * first byte picks the reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pubfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kl_pubfile_t *fixed_body(void) {
  static kl_pubfile_t *body;
  if (body != NULL) return body;
  kl_pub_data_t pub = {.time = 1700000000};
  pub.hash.alg = KL_HASH_SHA256;
  pub.hash.len = 32;
  memset(pub.hash.digest, 0x5a, 32);
  kl_pubfile_spec_t spec = {.created = 1700000100, .pubs = &pub, .n_pubs = 1};
  kl_buf_t b = KL_BUF_INIT;
  if (kl_pubfile_write_body(&spec, &b, NULL) != 0 || kl_pubfile_parse_body(b.p, b.len, &body, NULL) != 0) abort();
  kl_buf_free(&b);
  return body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  kl_err_t e = {0};
  if (data[0] & 1) {
    kl_pubfile_t *b = NULL;
    if (kl_pubfile_parse_body(p, n, &b, &e) == 0) {
      if (b->cms != NULL || b->signed_len != b->raw_len) abort(); /* a body has no signature */
      kl_pubfile_free(b);
    }
    return 0;
  }
  kl_pubfile_t *body = fixed_body();
  size_t signers = 0;
  if (kl_pubfile_part_check(body, p, n, &signers, &e) == 0) {
    if (signers == 0) abort();
    /* A part that signs the body assembles into a file that parses back to the body. */
    kl_buf_t out = KL_BUF_INIT;
    kl_pubfile_t *pf = NULL;
    if (kl_pubfile_assemble(body, &p, &n, 1, &out, &e) == 0) {
      if (kl_pubfile_parse(out.p, out.len, &pf, &e) != 0 || pf->signed_len != body->raw_len) abort();
      kl_pubfile_free(pf);
    }
    kl_buf_free(&out);
  } else if (e.msg[0] == '\0') {
    abort(); /* every refusal says why */
  }
  return 0;
}
