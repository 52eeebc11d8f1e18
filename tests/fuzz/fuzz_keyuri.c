/* libFuzzer driver: key URIs (lib/client/src/keyuri.c, docs/keys.md). Whatever text comes in,
 * kl_keyuri_parse either fills a key location of one kind, every field NUL-terminated, or says
 * why not; a PKCS#11 URI always names a token, object or id and its engine URI keeps the scheme.
 * Seeds: tests/fuzz/corpus/keyuri (a path, a wrapped file key, a PKCS#11 URI). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/client/src/keyuri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char uri[4096];
  if (size >= sizeof uri) return 0;
  memcpy(uri, data, size);
  uri[size] = '\0';
  kl_keyuri_t k;
  kl_err_t e = {0};
  int r = kl_keyuri_parse(uri, &k, &e);
  if (r != 0) {
    if (e.msg[0] == '\0') abort();
    return 0;
  }
  if (memchr(k.path, 0, sizeof k.path) == NULL || memchr(k.secret, 0, sizeof k.secret) == NULL ||
      memchr(k.module, 0, sizeof k.module) == NULL || memchr(k.engine_uri, 0, sizeof k.engine_uri) == NULL)
    abort();
  if (k.kind == KL_KEYURI_FILE && k.path[0] == '\0') abort();
  if (k.kind == KL_KEYURI_PKCS11 && ((k.token[0] == 0 && k.object[0] == 0 && k.id[0] == 0) ||
                                     strncmp(k.engine_uri, "pkcs11:", 7) != 0))
    abort();
  if (k.kind != KL_KEYURI_FILE && k.kind != KL_KEYURI_PKCS11) abort();
  (void)kl_keyuri_same(uri, uri);
  return 0;
}
