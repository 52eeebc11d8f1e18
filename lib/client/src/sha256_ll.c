/* SHA-256 and HMAC-SHA-256 on OpenSSL's low-level SHA256_* functions (deprecated in OpenSSL 3,
 * still built by default), owned by lib/client (hash.c, chains.c call it).
 *
 * Why (issue 12, gateway CPU per signature): OpenSSL 3.0's EVP layer frees and allocates its
 * provider context on every EVP_DigestInit_ex (malloc, free and OPENSSL_cleanse per digest),
 * and its HMAC copies two such contexts per message. A gateway hashes two aggregation steps per
 * request and two HMACs per PDU: for a 67-byte step or a 100-byte request's HMAC that overhead
 * is about as large as the hashing itself. Here a digest is a SHA256_CTX on the stack, and an
 * HMAC starts from the inner and outer states of the last key, copied as plain structs. Same
 * results as EVP (test_sha256_ll compares them). When OpenSSL lacks the low-level functions
 * (built with no-deprecated), or runs with FIPS as its default property (the low-level
 * functions would bypass the FIPS provider), kl__sha256_ll() is false and the callers keep EVP.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "sha256_ll.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslconf.h>
#include <stdatomic.h>
#include <string.h>

#if !defined(OPENSSL_NO_DEPRECATED_3_0)
#include <openssl/sha.h>

/* A FIPS setup (the default properties ask for fips=yes, e.g. from openssl.cnf) must have
 * every digest go through its provider: EVP then. Decided once, at the first digest. */
bool kl__sha256_ll(void) {
  static _Atomic int ll = -1;
  int v = atomic_load_explicit(&ll, memory_order_relaxed);
  if (v < 0) {
    v = !EVP_default_properties_is_fips_enabled(NULL);
    atomic_store_explicit(&ll, v, memory_order_relaxed);
  }
  return v != 0;
}

void kl__sha256(const void *p, size_t n, uint8_t out[32]) {
  SHA256_CTX c;
  SHA256_Init(&c);
  SHA256_Update(&c, p, n);
  SHA256_Final(out, &c);
}

#define KEY_CACHE 128 /* longer keys are set up for every message */
static _Thread_local struct {
  bool set;
  size_t len;
  uint8_t key[KEY_CACHE];
  SHA256_CTX inner, outer; /* after the key's ipad and opad blocks */
} tls;

static void set_key(const void *key, size_t keylen) {
  uint8_t k[SHA256_CBLOCK] = {0}, pad[SHA256_CBLOCK];
  if (keylen > SHA256_CBLOCK) kl__sha256(key, keylen, k); /* RFC 2104: a long key is hashed first */
  else if (keylen) memcpy(k, key, keylen);
  for (size_t i = 0; i < sizeof pad; i++) pad[i] = k[i] ^ 0x36;
  SHA256_Init(&tls.inner);
  SHA256_Update(&tls.inner, pad, sizeof pad);
  for (size_t i = 0; i < sizeof pad; i++) pad[i] = k[i] ^ 0x5c;
  SHA256_Init(&tls.outer);
  SHA256_Update(&tls.outer, pad, sizeof pad);
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(pad, sizeof pad);
  tls.set = keylen <= KEY_CACHE;
  tls.len = keylen;
  if (tls.set && keylen) memcpy(tls.key, key, keylen);
}

void kl__hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[32]) {
  if (!tls.set || tls.len != keylen || (keylen && CRYPTO_memcmp(tls.key, key, keylen) != 0)) set_key(key, keylen);
  SHA256_CTX c = tls.inner;
  uint8_t d[32];
  SHA256_Update(&c, p, n);
  SHA256_Final(d, &c);
  c = tls.outer;
  SHA256_Update(&c, d, sizeof d);
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof c);
}

void kl__sha256_thread_end(void) { OPENSSL_cleanse(&tls, sizeof tls); }

#else /* OpenSSL without the deprecated functions: never called (kl__sha256_ll() is false) */

bool kl__sha256_ll(void) { return false; }
void kl__sha256(const void *p, size_t n, uint8_t out[32]) {
  (void)p, (void)n;
  memset(out, 0, 32);
}
void kl__hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[32]) {
  (void)key, (void)keylen, (void)p, (void)n;
  memset(out, 0, 32);
}
void kl__sha256_thread_end(void) {}

#endif
