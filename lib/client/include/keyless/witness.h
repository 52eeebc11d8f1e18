/* keyless: witness cosignatures of publications (docs/formats.md §8, "Witness cosignatures").
 *
 * A witness is an independent party with its own key (Ed25519 or ECDSA P-256) that countersigns a
 * publication (second, calendar root) only after checking that it extends the last one it
 * countersigned (`keyless witness`, cli/cmd_witness.c). What it signs is the canonical message
 *   "keyless witness v1" || 0x00 || second (8 bytes, big-endian) || root imprint (alg byte + digest)
 * so a signature can never be taken for anything else. Cosignatures live in a file of their own
 * next to the publications file (publications.bin.witness): the magic "KLWITNS1" then one
 * TLV 0x0C10 per publication, in increasing seconds:
 *   0x0C10 { 0x01 second, 0x02 root IMP, 0x03 cosignature * }
 *   0x03   { 0x01 witness id IMP (SHA-256 of the key's DER SubjectPublicKeyInfo),
 *            0x02 algorithm (1 Ed25519, 2 ECDSA P-256 with SHA-256, DER signature),
 *            0x03 signature bytes }
 * cosignatures in increasing witness id (distinct). KSI clients never read this file.
 *
 * Owner: the witness helper (issue 14). The codec is pure; the key functions use OpenSSL. No
 * global state; objects belong to one thread at a time.
 */
#ifndef KEYLESS_WITNESS_H
#define KEYLESS_WITNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_WITNESS_MAGIC "KLWITNS1" /* 8 bytes, no terminator in the file */
#define KL_WITNESS_DOMAIN "keyless witness v1"
#define KL_TLV_WITNESS_PUB 0x0C10
#define KL_WITNESS_MAX_COSIGS 64  /* per publication */
#define KL_WITNESS_SIG_MAX 80     /* an ECDSA P-256 DER signature is at most 72 bytes */
#define KL_WITNESS_MSG_MAX (sizeof KL_WITNESS_DOMAIN + 8 + KL_IMPRINT_MAX)
#define KL_WITNESS_FILE_MAX (64u << 20)

enum { KL_WITNESS_ED25519 = 1, KL_WITNESS_ECDSA_P256 = 2 };

typedef struct kl_cosig {
  kl_imprint_t id; /* SHA-256 imprint of the witness's DER SubjectPublicKeyInfo */
  uint8_t alg;     /* KL_WITNESS_ED25519 or KL_WITNESS_ECDSA_P256 */
  uint8_t sig_len;
  uint8_t sig[KL_WITNESS_SIG_MAX];
} kl_cosig_t;

typedef struct kl_witpub {
  uint64_t time;
  kl_imprint_t root;
  size_t n;
  kl_cosig_t cosig[KL_WITNESS_MAX_COSIGS]; /* increasing id */
} kl_witpub_t;

typedef struct kl_witfile {
  size_t n, cap;
  kl_witpub_t *pubs; /* increasing time */
} kl_witfile_t;

/* The message a witness signs for (t, root) into out (KL_WITNESS_MSG_MAX bytes); its length. */
KL_API size_t kl_witness_message(uint64_t t, const kl_imprint_t *root, uint8_t *out);

/* The file: strict decoder (the magic, then 0x0C10 elements only, canonical TLV, known children in
 * order, minimal integers, imprints of known algorithms, SHA-256 ids, known signature algorithms,
 * signatures of 1..80 bytes, seconds strictly increasing, ids strictly increasing within one
 * publication). An empty file after the magic is valid. f is emptied first; free with
 * kl_witfile_free. KL_EFORMAT naming the offset and what was wrong. */
KL_API int kl_witfile_decode(const uint8_t *p, size_t len, kl_witfile_t *f, kl_err_t *e);
/* The canonical encoding of f (its records must be in order, as the functions below keep them). */
KL_API int kl_witfile_encode(kl_buf_t *b, const kl_witfile_t *f, kl_err_t *e);
KL_API void kl_witfile_free(kl_witfile_t *f);
/* The record of second t, or NULL. */
KL_API const kl_witpub_t *kl_witfile_find(const kl_witfile_t *f, uint64_t t);
/* Adds c to the record of (t, root), made if missing, kept in order. The same witness id again
 * keeps the cosignature already there (*added false). A record of t with another root: KL_ESTATE
 * naming both hashes (a file must not mix branches); too many cosignatures: KL_ERANGE. */
KL_API int kl_witfile_add(kl_witfile_t *f, uint64_t t, const kl_imprint_t *root, const kl_cosig_t *c, bool *added,
                          kl_err_t *e);

/* ---- keys (OpenSSL) ---- */
typedef struct kl_witkey kl_witkey_t;

/* A new key: alg KL_WITNESS_ED25519 or KL_WITNESS_ECDSA_P256. */
KL_API int kl_witkey_generate(int alg, kl_witkey_t **out, kl_err_t *e);
/* A private key (PEM, PKCS#8 or traditional) from a file: Ed25519 or EC P-256, nothing else. */
KL_API int kl_witkey_load_private(const char *path, kl_witkey_t **out, kl_err_t *e);
/* A public key from a file: a PEM public key, certificate or private key (its public half). */
KL_API int kl_witkey_load_public(const char *path, kl_witkey_t **out, kl_err_t *e);
/* Writes the private key (PKCS#8 PEM, mode 0600) or the public key (PEM) to path, atomically
 * (temporary file, fsync, rename); refuses to replace an existing file. */
KL_API int kl_witkey_save(const kl_witkey_t *k, bool private_part, const char *path, kl_err_t *e);
KL_API void kl_witkey_free(kl_witkey_t *k);
KL_API int kl_witkey_alg(const kl_witkey_t *k);
KL_API const kl_imprint_t *kl_witkey_id(const kl_witkey_t *k);
/* Cosigns (t, root) with a private key. */
KL_API int kl_witkey_sign(const kl_witkey_t *k, uint64_t t, const kl_imprint_t *root, kl_cosig_t *out, kl_err_t *e);
/* Checks that c is k's valid signature of (t, root): 0, or KL_EPKI naming what is wrong (another
 * witness id, another algorithm, a bad signature). */
KL_API int kl_witkey_verify(const kl_witkey_t *k, uint64_t t, const kl_imprint_t *root, const kl_cosig_t *c,
                            kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
