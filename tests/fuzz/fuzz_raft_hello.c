/* libFuzzer driver: the hello a Raft connection starts with (core/src/raft_guard.c), fed the
 * way the transport feeds it (byte counts from kl_raft_hello_need, never past the buffer), and
 * the peer identity parser of node certificates (kl_peer_parse_uri). Whatever parses must
 * re-encode to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/tls.h"
#include "raft_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t hello[KL_RAFT_HELLO_MAX];
  size_t have = 0, off = 0;
  for (;;) {
    size_t need = kl_raft_hello_need(hello, have);
    if (need > sizeof hello) break; /* the transport refuses it here */
    size_t take = need - have < size - off ? need - have : size - off;
    memcpy(hello + have, data + off, take);
    have += take;
    off += take;
    if (have < need) break; /* more bytes would be needed */
    if (kl_raft_hello_need(hello, have) > have) continue;
    uint64_t id = 0;
    char addr[256];
    const char *why = NULL;
    if (kl_raft_hello_parse(hello, have, &id, addr, &why) == 0) {
      uint8_t again[KL_RAFT_HELLO_MAX];
      size_t n = kl_raft_hello_encode(id, addr, again);
      if (n != have || memcmp(again, hello, n) != 0 || id == 0) abort();
    } else if (why == NULL) {
      abort(); /* a refusal always says why */
    }
    break;
  }
  kl_peer_t p;
  if (kl_peer_parse_uri((const char *)data, size, &p, NULL) == 0) {
    if (p.role == 0 || p.id[0] == '\0' || strlen(p.id) >= sizeof p.id) abort();
    if (kl_role_from_name(kl_role_name(p.role)) != p.role) abort();
  }
  return 0;
}
