/* Library-internal: SHA-256 and HMAC-SHA-256 without the EVP layer (lib/client/src/sha256_ll.c,
 * used by hash.c and chains.c for the aggregation algorithm and the PDU HMAC; issue 12). */
#ifndef KL_SHA256_LL_H
#define KL_SHA256_LL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* false when OpenSSL was built without its deprecated low-level functions: use EVP then. */
bool kl__sha256_ll(void);
void kl__sha256(const void *p, size_t n, uint8_t out[32]);
/* key (any length) and its pads are kept per thread: the same key again is not set up anew. */
void kl__hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[32]);
void kl__sha256_thread_end(void);

#endif
