/* libFuzzer driver: the core's audit log decoders (core/src/auditlog.h). Whatever the bytes, the
 * scans never crash; a record that decodes encodes back to the same bytes (canonical), the scan
 * stops at the first bad or torn element and accounts for every byte before it, and the chain
 * check names a seq within the records (or none). The input is tried both as audit.log and as
 * audit.ksig (the first byte picks the magic, the rest is the body). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auditlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  uint8_t *b = malloc(size - 1 + KL_AUDIT_MAGIC_LEN);
  if (b == NULL) return 0;
  bool sigs = data[0] & 1;
  memcpy(b, sigs ? KL_AUDIT_SIG_MAGIC : KL_AUDIT_LOG_MAGIC, KL_AUDIT_MAGIC_LEN);
  memcpy(b + KL_AUDIT_MAGIC_LEN, data + 1, size - 1);
  size_t n = size - 1 + KL_AUDIT_MAGIC_LEN;
  kl_err_t e = {0};
  if (sigs) {
    kl_audit_sigs_t s;
    if (kl_audit_sigs_scan(b, n, &s, &e) != 0) abort();
    if (s.good_len > n || (!s.torn && !s.bad && s.good_len != n)) abort();
    for (size_t i = 0; i < s.n; i++)
      if (kl_audit_sigs_find(&s, s.ents[i].seq) != &s.ents[i]) abort();
    kl_audit_sigs_free(&s);
  } else {
    kl_audit_scan_t s;
    uint64_t bad = 0;
    if (kl_audit_log_scan(b, n, &s, &e) != 0) abort();
    if (s.good_len > n || (!s.torn && !s.bad && s.good_len != n)) abort();
    for (size_t i = 0; i < s.n; i++) {
      kl_buf_t out = KL_BUF_INIT;
      if (kl_audit_rec_encode(&out, &s.recs[i], &e) != 0 || out.len != s.recs[i].raw_len ||
          memcmp(out.p, s.recs[i].raw, out.len) != 0)
        abort();
      kl_buf_free(&out);
    }
    if (kl_audit_chain_check(s.recs, s.n, NULL, &bad, &e) != 0 && (bad == 0 || bad > s.n + 1)) abort();
    kl_audit_scan_free(&s);
  }
  free(b);
  return 0;
}
