/* libFuzzer driver: a node's identity from its certificate (lib/src/tls.c): whatever DER comes
 * in, either one valid keyless://ROLE/ID comes out or an error saying why, and nothing is left
 * on the thread's OpenSSL error queue (a later SSL_get_error would read it as its own). Seeds:
 * the node certificates of a development PKI (tests/fuzz/corpus/cert_identity).
 *
 * A stale OpenSSL error also made this driver slow: each one allocates, so libFuzzer saw more
 * mallocs than frees and ran a full leak check after the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "keyless/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_peer_t p;
  kl_err_t e = {0};
  int r = kl_tls_der_identity(data, size, &p, &e);
  if (ERR_peek_error() != 0) abort();
  if (r == 0) {
    if (p.role == 0 || kl_role_from_name(kl_role_name(p.role)) != p.role) abort();
    size_t n = strlen(p.id);
    if (n == 0 || n >= sizeof p.id) abort();
    char uri[128];
    snprintf(uri, sizeof uri, "keyless://%s/%s", kl_role_name(p.role), p.id);
    kl_peer_t q;
    if (kl_peer_parse_uri(uri, strlen(uri), &q, NULL) != 0 || q.role != p.role || strcmp(q.id, p.id) != 0) abort();
  } else if (e.msg[0] == '\0') {
    abort();
  }
  return 0;
}
