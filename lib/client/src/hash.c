/* Hash algorithm table, imprints, hashing and HMAC on OpenSSL 3.
 *
 * The EVP_MD objects are fetched once per process (pthread_once) and kept for its lifetime;
 * kl_hasher_t reuses one EVP_MD_CTX across digests. SHA-256 one-shot digests and HMACs skip
 * EVP (sha256_ll.c: OpenSSL 3.0's EVP allocates a context per digest).
 */
#include "keyless/hash.h"

#include <ctype.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sha256_ll.h"

typedef struct {
  const char *name;     /* KSI name */
  const char *ossl;     /* OpenSSL fetch name */
  uint8_t digest, block;
  uint64_t deprecated;  /* 0 = never */
  uint64_t obsolete;    /* 0 = never */
  bool trusted;
} alg_info;

#define SHA1_DEPRECATED 1467331200u /* 2016-07-01T00:00:00Z */

static const alg_info algs[KL_HASH_SM3 + 1] = {
    [KL_HASH_SHA1] = {"SHA-1", "SHA1", 20, 64, SHA1_DEPRECATED, 0, false},
    [KL_HASH_SHA256] = {"SHA-256", "SHA2-256", 32, 64, 0, 0, true},
    [KL_HASH_RIPEMD160] = {"RIPEMD-160", "RIPEMD-160", 20, 64, 0, 0, true},
    [KL_HASH_SHA384] = {"SHA-384", "SHA2-384", 48, 128, 0, 0, true},
    [KL_HASH_SHA512] = {"SHA-512", "SHA2-512", 64, 128, 0, 0, true},
    [KL_HASH_SHA3_224] = {"SHA3-224", "SHA3-224", 28, 144, 0, 0, true},
    [KL_HASH_SHA3_256] = {"SHA3-256", "SHA3-256", 32, 136, 0, 0, true},
    [KL_HASH_SHA3_384] = {"SHA3-384", "SHA3-384", 48, 104, 0, 0, true},
    [KL_HASH_SHA3_512] = {"SHA3-512", "SHA3-512", 64, 72, 0, 0, true},
    [KL_HASH_SM3] = {"SM3", "SM3", 32, 64, 0, 0, true},
};

static const alg_info *info(int alg) {
  if (alg < 0 || alg > KL_HASH_SM3 || algs[alg].name == NULL) return NULL;
  return &algs[alg];
}

bool kl_hash_known(int alg) { return info(alg) != NULL; }
size_t kl_hash_digest_len(int alg) { return info(alg) ? info(alg)->digest : 0; }
size_t kl_hash_block_len(int alg) { return info(alg) ? info(alg)->block : 0; }
const char *kl_hash_name(int alg) { return info(alg) ? info(alg)->name : NULL; }
bool kl_hash_trusted(int alg) { return info(alg) ? info(alg)->trusted : false; }

bool kl_hash_deprecated_at(int alg, uint64_t t) {
  const alg_info *a = info(alg);
  return a == NULL || (a->deprecated != 0 && t >= a->deprecated);
}

bool kl_hash_obsolete_at(int alg, uint64_t t) {
  const alg_info *a = info(alg);
  return a == NULL || (a->obsolete != 0 && t >= a->obsolete);
}

int kl_hash_from_name(const char *name) {
  static const struct {
    const char *n;
    int id;
  } aliases[] = {
      {"default", KL_HASH_SHA256}, {"SHA-1", KL_HASH_SHA1},       {"SHA1", KL_HASH_SHA1},
      {"SHA-256", KL_HASH_SHA256}, {"SHA2-256", KL_HASH_SHA256},  {"SHA256", KL_HASH_SHA256},
      {"SHA-384", KL_HASH_SHA384}, {"SHA2-384", KL_HASH_SHA384},  {"SHA384", KL_HASH_SHA384},
      {"SHA-512", KL_HASH_SHA512}, {"SHA2-512", KL_HASH_SHA512},  {"SHA512", KL_HASH_SHA512},
      {"RIPEMD-160", KL_HASH_RIPEMD160}, {"RIPEMD160", KL_HASH_RIPEMD160},
      {"SHA3-224", KL_HASH_SHA3_224}, {"SHA3-256", KL_HASH_SHA3_256},
      {"SHA3-384", KL_HASH_SHA3_384}, {"SHA3-512", KL_HASH_SHA3_512}, {"SM3", KL_HASH_SM3},
      {"SM-3", KL_HASH_SM3},
  };
  if (name == NULL) return -1;
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcasecmp(name, aliases[i].n) == 0) return aliases[i].id;
  return -1;
}

/* ---- EVP_MD cache ---- */

static EVP_MD *mds[KL_HASH_SM3 + 1];
static EVP_MAC *hmac_mac;
static pthread_once_t mds_once = PTHREAD_ONCE_INIT;

static void fetch_mds(void) {
  for (int i = 0; i <= KL_HASH_SM3; i++)
    if (algs[i].name != NULL) mds[i] = EVP_MD_fetch(NULL, algs[i].ossl, NULL);
  hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static const EVP_MD *md_for(int alg) {
  pthread_once(&mds_once, fetch_mds);
  return info(alg) ? mds[alg] : NULL;
}

bool kl_hash_available(int alg) { return md_for(alg) != NULL; }

/* ---- imprints ---- */

size_t kl_imprint_size(const kl_imprint_t *imp) { return 1u + imp->len; }

int kl_imprint_from_bytes(kl_imprint_t *imp, const uint8_t *p, size_t n, kl_err_t *e) {
  if (n == 0) return kl_err_set(e, KL_EFORMAT, "empty imprint");
  const alg_info *a = info(p[0]);
  if (a == NULL) return kl_err_set(e, KL_EHASHALG, "unknown hash algorithm id 0x%02X", p[0]);
  if (n - 1 != a->digest)
    return kl_err_set(e, KL_EFORMAT, "%s imprint has %zu digest bytes, expected %u", a->name,
                      n - 1, a->digest);
  imp->alg = p[0];
  imp->len = a->digest;
  if (a->digest == 32) memcpy(imp->digest, p + 1, 32); /* as in kl_imprint_to_bytes: no rep movsq */
  else memcpy(imp->digest, p + 1, a->digest);
  return 0;
}

size_t kl_imprint_to_bytes(const kl_imprint_t *imp, uint8_t *out) {
  out[0] = imp->alg;
  /* SHA-256 nearly always: a copy of a fixed size is a few moves, where the variable one was
   * compiled to rep movsq, which cost a tenth of a gateway's CPU in kl_tree_chain (issue 12). */
  if (imp->len == 32) memcpy(out + 1, imp->digest, 32);
  else memcpy(out + 1, imp->digest, imp->len);
  return 1u + imp->len;
}

bool kl_imprint_eq(const kl_imprint_t *a, const kl_imprint_t *b) {
  return a->alg == b->alg && a->len == b->len && memcmp(a->digest, b->digest, a->len) == 0;
}

long kl_hex_decode(const char *s, uint8_t *out, size_t cap) {
  size_t n = strlen(s);
  if (n % 2 != 0 || n / 2 > cap) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      int c = (unsigned char)s[2 * i + (size_t)k], d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return -1;
      v = v * 16 + d;
    }
    out[i] = (uint8_t)v;
  }
  return (long)(n / 2);
}

void kl_hex_encode(const uint8_t *p, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hx[p[i] >> 4];
    out[2 * i + 1] = hx[p[i] & 15];
  }
  out[2 * n] = '\0';
}

char *kl_imprint_hex(const kl_imprint_t *imp, char *out) {
  uint8_t tmp[KL_IMPRINT_MAX];
  size_t n = kl_imprint_to_bytes(imp, tmp);
  kl_hex_encode(tmp, n, out);
  return out;
}

int kl_imprint_parse_text(kl_imprint_t *imp, const char *s, kl_err_t *e) {
  uint8_t tmp[KL_IMPRINT_MAX];
  const char *colon = strchr(s, ':');
  if (colon != NULL) {
    char name[32];
    size_t nl = (size_t)(colon - s);
    if (nl == 0 || nl >= sizeof name)
      return kl_err_set(e, KL_EINVAL, "bad hash algorithm name in '%s'", s);
    memcpy(name, s, nl);
    name[nl] = '\0';
    int alg = kl_hash_from_name(name);
    if (alg < 0) return kl_err_set(e, KL_EHASHALG, "unknown hash algorithm '%s'", name);
    long n = kl_hex_decode(colon + 1, tmp + 1, sizeof tmp - 1);
    if (n < 0) return kl_err_set(e, KL_EINVAL, "bad hex digest in '%s'", s);
    if ((size_t)n != kl_hash_digest_len(alg))
      return kl_err_set(e, KL_EINVAL, "%s digest must be %zu bytes, got %ld", kl_hash_name(alg),
                        kl_hash_digest_len(alg), n);
    tmp[0] = (uint8_t)alg;
    return kl_imprint_from_bytes(imp, tmp, (size_t)n + 1, e);
  }
  long n = kl_hex_decode(s, tmp, sizeof tmp);
  if (n <= 0) return kl_err_set(e, KL_EINVAL, "bad imprint hex '%s'", s);
  int r = kl_imprint_from_bytes(imp, tmp, (size_t)n, e);
  if (r) kl_err_wrap(e, "imprint '%s'", s);
  return r;
}

/* ---- hashing ---- */

int kl_hasher_init(kl_hasher_t *h, kl_err_t *e) {
  h->alg = -1;
  h->ctx = EVP_MD_CTX_new();
  if (h->ctx == NULL) return kl_err_set(e, KL_ENOMEM, "cannot allocate a digest context");
  return 0;
}

void kl_hasher_close(kl_hasher_t *h) {
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
}

int kl_hasher_start(kl_hasher_t *h, int alg, kl_err_t *e) {
  const EVP_MD *md = md_for(alg);
  if (md == NULL) {
    if (!kl_hash_known(alg))
      return kl_err_set(e, KL_EHASHALG, "unknown hash algorithm id 0x%02X", (unsigned)alg);
    return kl_err_set(e, KL_EHASHALG, "hash algorithm %s is not available in this OpenSSL",
                      kl_hash_name(alg));
  }
  if (EVP_DigestInit_ex(h->ctx, md, NULL) != 1)
    return kl_err_set(e, KL_ECRYPTO, "cannot start %s digest", kl_hash_name(alg));
  h->alg = alg;
  return 0;
}

int kl_hasher_update(kl_hasher_t *h, const void *p, size_t n) {
  if (n == 0) return 0;
  return EVP_DigestUpdate(h->ctx, p, n) == 1 ? 0 : KL_ECRYPTO;
}

int kl_hasher_update_imprint(kl_hasher_t *h, const kl_imprint_t *imp) {
  if (EVP_DigestUpdate(h->ctx, &imp->alg, 1) != 1) return KL_ECRYPTO;
  return kl_hasher_update(h, imp->digest, imp->len);
}

int kl_hasher_finish(kl_hasher_t *h, kl_imprint_t *out) {
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(h->ctx, out->digest, &n) != 1) return KL_ECRYPTO;
  out->alg = (uint8_t)h->alg;
  out->len = (uint8_t)n;
  return 0;
}

static _Thread_local kl_hasher_t tls_hasher;

int kl_hash(int alg, const void *p, size_t n, kl_imprint_t *out, kl_err_t *e) {
  if (alg == KL_HASH_SHA256 && kl__sha256_ll()) { /* no EVP context per digest: sha256_ll.c */
    kl__sha256(p, n, out->digest);
    out->alg = KL_HASH_SHA256;
    out->len = 32;
    return 0;
  }
  kl_hasher_t *h = &tls_hasher;
  if (h->ctx == NULL && kl_hasher_init(h, e)) return KL_ENOMEM;
  int r = kl_hasher_start(h, alg, e);
  if (r) return r;
  if (kl_hasher_update(h, p, n) || kl_hasher_finish(h, out))
    return kl_err_set(e, KL_ECRYPTO, "%s digest failed", kl_hash_name(alg));
  return 0;
}

/* One HMAC context per algorithm and thread, its digest set once: a daemon checks and signs
 * two HMACs per PDU, and building a context (with a digest lookup by name) cost more than the
 * hashing. EVP_MAC_init with a key and no parameters re-keys it for the next message. */
static _Thread_local EVP_MAC_CTX *tls_mac[KL_HASH_SM3 + 1];
/* The key each context holds: the same key again (a gateway's login checks and signs one PDU
 * after another) re-initialises the context without keying it anew (EVP_MAC_init with a NULL
 * key keeps the key's inner and outer pads), which saves two compressions and the key setup. */
#define HMAC_KEY_CACHE 128
static _Thread_local struct {
  size_t len;
  bool set;
  uint8_t key[HMAC_KEY_CACHE];
} tls_mac_key[KL_HASH_SM3 + 1];

void kl_hash_thread_end(void) {
  for (size_t a = 0; a < sizeof tls_mac / sizeof tls_mac[0]; a++) {
    EVP_MAC_CTX_free(tls_mac[a]);
    tls_mac[a] = NULL;
  }
  OPENSSL_cleanse(tls_mac_key, sizeof tls_mac_key);
  kl_hasher_close(&tls_hasher);
  memset(&tls_hasher, 0, sizeof tls_hasher);
  kl__sha256_thread_end();
}

int kl_hmac(int alg, const void *key, size_t keylen, const void *p, size_t n, kl_imprint_t *out,
            kl_err_t *e) {
  if (alg == KL_HASH_SHA256 && kl__sha256_ll()) { /* the PDU HMAC, two per PDU: sha256_ll.c */
    kl__hmac_sha256(key ? key : (const void *)"", keylen, p, n, out->digest);
    out->alg = KL_HASH_SHA256;
    out->len = 32;
    return 0;
  }
  if (md_for(alg) == NULL || hmac_mac == NULL)
    return kl_err_set(e, KL_EHASHALG, "HMAC algorithm 0x%02X not available", (unsigned)alg);
  EVP_MAC_CTX *ctx = tls_mac[alg];
  if (ctx == NULL) {
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)algs[alg].ossl, 0);
    params[1] = OSSL_PARAM_construct_end();
    if ((ctx = EVP_MAC_CTX_new(hmac_mac)) == NULL) return kl_err_set(e, KL_ENOMEM, "cannot allocate an HMAC context");
    if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
      EVP_MAC_CTX_free(ctx);
      return kl_err_set(e, KL_ECRYPTO, "HMAC-%s: cannot set the digest", kl_hash_name(alg));
    }
    tls_mac[alg] = ctx;
  }
  size_t outl = 0;
  const void *k = key ? key : (const void *)"";
  bool same = tls_mac_key[alg].set && tls_mac_key[alg].len == keylen && CRYPTO_memcmp(tls_mac_key[alg].key, k, keylen) == 0;
  int ok = EVP_MAC_init(ctx, same ? NULL : k, same ? 0 : keylen, NULL) == 1;
  if (ok && !same) {
    tls_mac_key[alg].set = keylen <= HMAC_KEY_CACHE;
    tls_mac_key[alg].len = keylen;
    if (tls_mac_key[alg].set) memcpy(tls_mac_key[alg].key, k, keylen);
  }
  ok = ok && EVP_MAC_update(ctx, p, n) == 1 && EVP_MAC_final(ctx, out->digest, &outl, sizeof out->digest) == 1;
  if (!ok) {
    OPENSSL_cleanse(&tls_mac_key[alg], sizeof tls_mac_key[alg]);
    EVP_MAC_CTX_free(ctx); /* a context in an unknown state is not kept */
    tls_mac[alg] = NULL;
    return kl_err_set(e, KL_ECRYPTO, "HMAC-%s failed", kl_hash_name(alg));
  }
  out->alg = (uint8_t)alg;
  out->len = (uint8_t)outl;
  return 0;
}
