/* keyless: publication strings and the publications file (KSI-FORMAT.md §6).
 *
 * kl_pubfile_parse() copies the input; every pointer in the parsed object is valid until
 * kl_pubfile_free(). Parsing does not establish trust: kl_pubfile_verify() checks the CMS
 * signatures against the caller's trust anchors and subject constraints at a given time, and
 * wants k distinct trusted signers (default 1; docs/keys.md, "k of n").
 * Owners: pubfile.c (parse, lookups, merge, the unsigned body), pubfile_cms.c (verification),
 * pubfile_sign.c (signing in one step, detached parts, assembling them).
 *
 * Threads: a parsed file is immutable and may be read (looked up, verified) from several threads
 * at once; kl_pubfile_parse/free/verify keep no global state. Memory: the caller frees the
 * object with kl_pubfile_free; kl_pubfile_write's output is the caller's kl_buf_t.
 */
#ifndef KEYLESS_PUBFILE_H
#define KEYLESS_PUBFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_PUBFILE_MAGIC "KSIPUBLF"

/* ---- publication strings: base32(uint64 time || imprint || crc32), dashes every 6 ---- */
/* out needs room for the string and its NUL: 84 bytes for SHA-256 (72 characters, 11 dashes),
 * at most KL_PUBSTR_MAX for a 64-byte digest (128 characters with "=" padding, 21 dashes). */
#define KL_PUBSTR_MAX 150
KL_API int kl_pubstr_encode(uint64_t time, const kl_imprint_t *hash, char *out, size_t cap,
                            kl_err_t *e);
KL_API int kl_pubstr_decode(const char *s, uint64_t *time, kl_imprint_t *hash, kl_err_t *e);

/* ---- the publications file ---- */
typedef struct kl_pubfile_cert {
  const uint8_t *id; /* 4 bytes: CRC-32 of the DER */
  size_t id_len;
  const uint8_t *der;
  size_t der_len;
} kl_pubfile_cert_t;

typedef struct kl_pubfile {
  kl_arena_t arena;
  uint8_t *raw;
  size_t raw_len;
  uint64_t version;
  uint64_t created;
  const char *repo_uri; /* NULL if absent */
  kl_pubfile_cert_t *certs;
  size_t n_certs;
  kl_pub_rec_t *pubs; /* in file order */
  size_t n_pubs;
  const uint8_t *cms; /* the 0x704 value: DER CMS SignedData, detached */
  size_t cms_len;
  size_t signed_len; /* bytes [0, signed_len) are covered by the CMS signature */
} kl_pubfile_t;

KL_API int kl_pubfile_parse(const uint8_t *p, size_t n, kl_pubfile_t **out, kl_err_t *e);
/* An unsigned body (`keyless publish --prepare`): the same layout without the signature (0x704);
 * one is KL_EFORMAT. cms is NULL and signed_len == raw_len: every byte is to be signed. */
KL_API int kl_pubfile_parse_body(const uint8_t *p, size_t n, kl_pubfile_t **out, kl_err_t *e);
KL_API void kl_pubfile_free(kl_pubfile_t *pf);

/* Subject constraint: OID in dotted form or an alias (E, email, CN, C, O), and the exact value. */
typedef struct kl_cnstr {
  const char *oid;
  const char *value;
} kl_cnstr_t;

typedef struct kl_pubfile_trust {
  const char *const *anchor_files; /* PEM files; NULL/0 = OpenSSL's default system store */
  size_t n_anchor_files;
  const kl_cnstr_t *cnstr; /* at least one is required */
  size_t n_cnstr;
  int64_t at; /* verification time (UNIX seconds); 0 = now */
  /* k of n: how many distinct signers (different public keys) must each have a good signature,
   * a chain to an anchor and a subject meeting every constraint. 0 = 1 (as libksi, which reads
   * one signer); at most 16. */
  size_t signers_required;
} kl_pubfile_trust_t;

/* 0, or KL_EPKI with a message saying which check failed (signature, chain, constraint): with
 * one signer as before, otherwise "N of the K required distinct trusted signers (the CMS has M);
 * rejected: signer I (CN=...): why; ...". KL_EINVAL when no constraint is configured. */
KL_API int kl_pubfile_verify(const kl_pubfile_t *pf, const kl_pubfile_trust_t *trust, kl_err_t *e);

/* The signature check of kl_pubfile_verify without a chain or constraint: a signer with a good
 * signature holds the key of the certificate in signer_cert_pem (the publisher's own earlier
 * file). 0, KL_EPKI (a bad signature, or other signers: the message names their subjects), or
 * KL_EIO when the certificate cannot be read. */
KL_API int kl_pubfile_verify_signer(const kl_pubfile_t *pf, const char *signer_cert_pem, kl_err_t *e);

/* Lookups. NULL when not found. */
KL_API const kl_pub_rec_t *kl_pubfile_find_exact(const kl_pubfile_t *pf, uint64_t time);
/* The earliest publication with time >= t. */
KL_API const kl_pub_rec_t *kl_pubfile_find_after(const kl_pubfile_t *pf, uint64_t t);
KL_API const kl_pubfile_cert_t *kl_pubfile_find_cert(const kl_pubfile_t *pf, const uint8_t *id,
                                                     size_t id_len);

/* ---- writing a publications file (`keyless publish`) ---- */
typedef struct kl_pubfile_spec {
  uint64_t version; /* 0 = 2 */
  uint64_t created;
  const char *repo_uri;
  const uint8_t *const *cert_ders; /* certificates to list; ids are computed */
  const size_t *cert_lens;
  size_t n_certs;
  const kl_pub_data_t *pubs; /* in increasing time; refs/uris not written */
  size_t n_pubs;
  const char *signer_cert_pem; /* file paths */
  const char *signer_key_pem;
  const char *chain_pem; /* optional intermediates to embed, may be NULL */
  bool refuse_clear_key;  /* a clear (unencrypted) key file is KL_EPKI (keyless publish's default) */
} kl_pubfile_spec_t;

KL_API int kl_pubfile_write(const kl_pubfile_spec_t *spec, kl_buf_t *out, kl_err_t *e);
/* The unsigned body of that file (magic, header, certificates, publications); the signer fields
 * are not used. Appended to out. */
KL_API int kl_pubfile_write_body(const kl_pubfile_spec_t *spec, kl_buf_t *out, kl_err_t *e);

/* ---- k of n: signing on separate machines ---- */
typedef struct kl_pubfile_signer {
  const char *cert_pem;  /* the signer's certificate (PEM file) */
  const char *key_uri;   /* its key: a file, file:...?passphrase-source=..., pkcs11:... (docs/keys.md) */
  const char *chain_pem; /* intermediates to embed, may be NULL */
  bool allow_clear_key;  /* accept a clear key file (development) */
} kl_pubfile_signer_t;

/* A detached CMS SignedData (DER, SHA-256, one SignerInfo; what `openssl cms -sign -binary
 * -outform DER` makes; SM3 and SM2-with-SM3 for an SM2 key, docs/profiles.md) over body (from
 * kl_pubfile_parse_body), appended to out. */
KL_API int kl_pubfile_cosign(const kl_pubfile_t *body, const kl_pubfile_signer_t *s, kl_buf_t *out, kl_err_t *e);
/* 0 when every signer of part (a detached CMS SignedData, DER) has a good signature over body
 * (*n_signers of them, may be NULL); KL_EPKI naming the signer and why not. No trust check. */
KL_API int kl_pubfile_part_check(const kl_pubfile_t *body, const uint8_t *part, size_t len, size_t *n_signers,
                                 kl_err_t *e);
/* The signed file: body, then one SignedData with the SignerInfos and certificates of every part,
 * appended to out. A part that does not sign this body (KL_EPKI), or a key that signs twice
 * (KL_EINVAL), is refused naming the part; nothing is written then. */
KL_API int kl_pubfile_assemble(const kl_pubfile_t *body, const uint8_t *const *parts, const size_t *lens, size_t n,
                               kl_buf_t *out, kl_err_t *e);

/* Publications are permanent: the union of an earlier file's publications (prev, may be NULL)
 * and new ones (add, any order), sorted by time, one per time, in *out (caller frees; raw
 * pointers cleared). The same time with two different hashes, in prev, in add or between them,
 * is KL_ESTATE with a message naming the time and both hashes; more than max in all,
 * KL_ERANGE. *n_kept: how many of the result came from prev. */
KL_API int kl_pubfile_merge(const kl_pubfile_t *prev, const kl_pub_data_t *add, size_t n_add, size_t max,
                            kl_pub_data_t **out, size_t *n_out, size_t *n_kept, kl_err_t *e);

/* CRC-32 (IEEE, reflected, as zlib). */
KL_API uint32_t kl_crc32(const uint8_t *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
