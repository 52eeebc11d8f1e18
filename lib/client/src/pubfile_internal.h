/* Internal: what the parts of the publications file code share. Owners: pubfile.c (parsing,
 * lookups, merging, the unsigned body), pubfile_cms.c (trust: the CMS signers, k of n),
 * pubfile_sign.c (signing: one step, detached parts, assembling them). */
#ifndef KL_PUBFILE_INTERNAL_H
#define KL_PUBFILE_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keyless/pubfile.h"

#define KL_PUBFILE_MAGIC_LEN 8
#define KL_PUBFILE_MAX_SIZE (64u << 20) /* far above any real file (Guardtime's: ~30 kB) */
#define KL_PUBFILE_T_CMS 0x704
#define KL_PUBFILE_MAX_SIGNERS 16 /* SignerInfos in one file; a k-of-n set is a handful */

/* The most recent OpenSSL error as "library: reason" (or the system error behind it) in buf;
 * the queue is cleared. */
const char *kl__pf_ossl_err(char *buf, size_t cap);

/* Reads a PEM certificate (cert), and/or every certificate of the file (chain, at least one). */
int kl__pf_load_pem(const char *path, const char *what, X509 **cert, STACK_OF(X509) **chain, kl_err_t *e);

/* The checks of kl_pubfile_write on a spec, signer fields excepted. */
int kl__pf_check_spec(const kl_pubfile_spec_t *s, kl_err_t *e);

/* One SignerInfo of a CMS SignedData over body: its certificate (a reference, NULL when the CMS
 * does not hold it), and whether its signature over the body holds (why: the reason if not). */
typedef struct kl__pf_signer {
  X509 *cert;
  bool sig_ok;
  char why[300];
  char subject[256];
} kl__pf_signer_t;

/* Decodes a detached CMS SignedData (der) and checks each SignerInfo over body. what names the
 * CMS in errors ("signature (0x704 at offset N)", "part 2"). On 0: *n signers in out[] (caller
 * frees with kl__pf_signers_free) and *certs (every certificate of the CMS, caller frees).
 * KL_EPKI when it is no detached SignedData, has no or too many signers. */
int kl__pf_signers(const uint8_t *body, size_t body_len, const uint8_t *der, size_t der_len, const char *what,
                   kl__pf_signer_t *out, size_t *n, STACK_OF(X509) **certs, kl_err_t *e);
void kl__pf_signers_free(kl__pf_signer_t *s, size_t n, STACK_OF(X509) *certs);

#endif
