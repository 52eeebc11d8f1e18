/* libFuzzer driver: a node's identity from its certificate (lib/src/tls.c): whatever DER comes
 * in, either one valid keyless://ROLE/ID comes out or an error saying why. Seeds: the node
 * certificates of a development PKI (tests/fuzz/corpus/cert_identity). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_peer_t p;
  kl_err_t e = {0};
  int r = kl_tls_der_identity(data, size, &p, &e);
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
