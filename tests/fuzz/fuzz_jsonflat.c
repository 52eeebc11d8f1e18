/* libFuzzer driver for the strict flat-JSON reader (lib/daemon/src/jsonflat.c, the gateway's
 * JSON API bodies): any bytes either fail with a message naming a byte offset, or parse into at
 * most 8 members with distinct keys of at most 256 bytes, which written back with kl_json_quote
 * and read again give the same members (a round trip). Never a crash or a leak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/jsonflat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kl_jsonflat_kv_t kv[8], again[8];
  static char out[8 * 2 * (6 * KL_JSONFLAT_MAX + 8) + 8];
  size_t n = 0, m = 0, o = 0;
  kl_err_t e = {0};
  if (kl_jsonflat_parse(data, size, kv, 8, &n, &e) != 0) {
    if (strstr(e.msg, "at byte ") == NULL) abort();
    return 0;
  }
  out[o++] = '{';
  for (size_t i = 0; i < n; i++) {
    char q[6 * KL_JSONFLAT_MAX + 8];
    if (strlen(kv[i].key) > KL_JSONFLAT_MAX || strlen(kv[i].value) > KL_JSONFLAT_MAX) abort();
    for (size_t j = 0; j < i; j++)
      if (strcmp(kv[i].key, kv[j].key) == 0) abort();
    kl_json_quote(kv[i].key, q, sizeof q);
    o += (size_t)snprintf(out + o, sizeof out - o, "%s%s:", i ? "," : "", q);
    kl_json_quote(kv[i].value, q, sizeof q);
    o += (size_t)snprintf(out + o, sizeof out - o, "%s", q);
  }
  out[o++] = '}';
  if (kl_jsonflat_parse((const uint8_t *)out, o, again, 8, &m, &e) != 0 || m != n) abort();
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i].key, again[i].key) != 0 || strcmp(kv[i].value, again[i].value) != 0) abort();
  return 0;
}
