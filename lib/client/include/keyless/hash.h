/* keyless: KSI hash algorithms and imprints (KSI-FORMAT.md §3).
 *
 * An imprint is the algorithm id byte followed by the digest. kl_imprint_t holds one by value
 * (no allocation). kl_hasher_t wraps one reusable OpenSSL digest context; the EVP_MD objects
 * are fetched once per process, so hashing many small inputs costs no lookups.
 *
 * Threads: kl_hash, kl_hmac and the table queries are thread-safe (per-thread contexts: call
 * kl_hash_thread_end before a thread ends); a kl_hasher_t belongs to one thread at a time.
 * Memory: imprints are values; kl_imprint_hex writes into the caller's buffer.
 */
#ifndef KEYLESS_HASH_H
#define KEYLESS_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
  KL_HASH_SHA1 = 0x00,
  KL_HASH_SHA256 = 0x01,
  KL_HASH_RIPEMD160 = 0x02,
  KL_HASH_SHA384 = 0x04,
  KL_HASH_SHA512 = 0x05,
  KL_HASH_SHA3_224 = 0x07,
  KL_HASH_SHA3_256 = 0x08,
  KL_HASH_SHA3_384 = 0x09,
  KL_HASH_SHA3_512 = 0x0A,
  KL_HASH_SM3 = 0x0B,
  KL_HASH_DEFAULT = KL_HASH_SHA256,
};

#define KL_HASH_MAX_DIGEST 64
#define KL_IMPRINT_MAX (1 + KL_HASH_MAX_DIGEST)

typedef struct kl_imprint {
  uint8_t alg;
  uint8_t len; /* digest length, without the algorithm byte */
  uint8_t digest[KL_HASH_MAX_DIGEST];
} kl_imprint_t;

/* Algorithm table queries. Unknown ids give false / 0 / NULL. */
KL_API bool kl_hash_known(int alg);
KL_API size_t kl_hash_digest_len(int alg);
KL_API size_t kl_hash_block_len(int alg);
KL_API const char *kl_hash_name(int alg);
/* Accepts "SHA-256", "SHA2-256", "SHA256", "sha-256", "default", "SHA3-512", "RIPEMD-160", "SM3"...
 * Returns the id or -1. */
KL_API int kl_hash_from_name(const char *name);
/* Deprecated: not acceptable for data dated at or after the deprecation time. */
KL_API bool kl_hash_deprecated_at(int alg, uint64_t t);
/* Obsolete: not acceptable at all at or after the obsolete time. */
KL_API bool kl_hash_obsolete_at(int alg, uint64_t t);
/* Trusted for new signatures and HMAC (SHA-1 is not). */
KL_API bool kl_hash_trusted(int alg);
/* Whether this OpenSSL build can compute alg. */
KL_API bool kl_hash_available(int alg);

/* Imprints. */
KL_API size_t kl_imprint_size(const kl_imprint_t *imp); /* 1 + digest */
/* Parses the algorithm byte + digest; the length must match the algorithm. */
KL_API int kl_imprint_from_bytes(kl_imprint_t *imp, const uint8_t *p, size_t n, kl_err_t *e);
/* Writes 1 + len bytes to out (at least KL_IMPRINT_MAX). Returns the count. */
KL_API size_t kl_imprint_to_bytes(const kl_imprint_t *imp, uint8_t *out);
KL_API bool kl_imprint_eq(const kl_imprint_t *a, const kl_imprint_t *b);
/* "ALG:hex" or plain hex of the whole imprint (algorithm byte first). */
KL_API int kl_imprint_parse_text(kl_imprint_t *imp, const char *s, kl_err_t *e);
/* Hex of the whole imprint, lower case; out needs 2*KL_IMPRINT_MAX+1 bytes. */
KL_API char *kl_imprint_hex(const kl_imprint_t *imp, char *out);

/* Hasher: one reusable context. */
typedef struct kl_hasher {
  void *ctx; /* EVP_MD_CTX */
  int alg;
} kl_hasher_t;

KL_API int kl_hasher_init(kl_hasher_t *h, kl_err_t *e);
KL_API void kl_hasher_close(kl_hasher_t *h);
KL_API int kl_hasher_start(kl_hasher_t *h, int alg, kl_err_t *e);
KL_API int kl_hasher_update(kl_hasher_t *h, const void *p, size_t n);
KL_API int kl_hasher_finish(kl_hasher_t *h, kl_imprint_t *out);
/* Feeds a whole imprint (algorithm byte + digest). */
KL_API int kl_hasher_update_imprint(kl_hasher_t *h, const kl_imprint_t *imp);

/* One-shot hashing with a per-thread context. */
KL_API int kl_hash(int alg, const void *p, size_t n, kl_imprint_t *out, kl_err_t *e);

/* HMAC with the algorithm's digest; out gets the digest bytes (no algorithm byte). */
KL_API int kl_hmac(int alg, const void *key, size_t keylen, const void *p, size_t n,
                   kl_imprint_t *out, kl_err_t *e);
/* Frees the calling thread's hashing and HMAC contexts and forgets its cached HMAC keys (kl_hash
 * and kl_hmac keep them per thread). Call it before a thread that used them ends; the thread may
 * use them again after. */
KL_API void kl_hash_thread_end(void);

/* Hex helpers: decode returns the byte count or -1 on a bad digit / odd length / overflow. */
KL_API long kl_hex_decode(const char *s, uint8_t *out, size_t cap);
KL_API void kl_hex_encode(const uint8_t *p, size_t n, char *out); /* out: 2n+1 */

#ifdef __cplusplus
}
#endif
#endif
