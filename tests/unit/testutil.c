#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/hash.h"

uint8_t *tu_read_vector(const char *path, size_t *len) {
  char full[1024];
  if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
  else snprintf(full, sizeof full, "%s/%s", KL_VECTORS, path);
  FILE *f = fopen(full, "rb");
  if (f == NULL) fail_msg("cannot open %s", full);
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    size_t k = fread(buf + n, 1, cap - n, f);
    if (k == 0) break;
    n += k;
  }
  fclose(f);
  *len = n;
  return buf;
}

uint8_t *tu_hex(const char *hex, size_t *len) {
  size_t cap = strlen(hex) / 2 + 1;
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  long n = kl_hex_decode(hex, out, cap);
  if (n < 0) fail_msg("bad hex in test: %s", hex);
  *len = (size_t)n;
  return out;
}

void tu_mkdtemp(const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, "/tmp/kl-%s-XXXXXX", name);
  if (mkdtemp(buf) == NULL) fail_msg("mkdtemp %s failed", buf);
}

int tu_rmrf(const char *dir) {
  char cmd[600];
  if (strncmp(dir, "/tmp/kl-", 8) != 0 || strchr(dir, '\'') != NULL) return -1; /* only our own */
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}
