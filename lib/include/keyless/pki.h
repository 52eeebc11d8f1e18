/* keyless: keys and certificates. The calendar authentication record signer (KSI-FORMAT.md
 * §6.5) and the development PKI that makes a local network work out of the box.
 *
 * Long-term trust never depends on these keys: once a signature is extended to a publication,
 * verification is hashing plus a comparison with the published string. */
#ifndef KEYLESS_PKI_H
#define KEYLESS_PKI_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Signs calendar roots into calendar authentication records (0x805). Holds a private key and
 * its certificate (PEM files). Thread-safe for concurrent kl_calauth_sign calls. */
typedef struct kl_calauth kl_calauth_t;

KL_API int kl_calauth_load(const char *cert_pem, const char *key_pem, kl_calauth_t **out, kl_err_t *e);
KL_API void kl_calauth_free(kl_calauth_t *ca);
/* Appends a whole 0x805 TLV for publication data (time, root): the data element as KSI writes
 * it (0x10 with the F flag, canonical), signed with sha256WithRSAEncryption (or ECDSA-SHA256
 * for EC keys), and the certificate id (CRC-32 of the certificate's DER). */
KL_API int kl_calauth_sign(kl_calauth_t *ca, uint64_t time, const kl_imprint_t *root, kl_buf_t *out, kl_err_t *e);
/* The certificate's DER (valid until kl_calauth_free), for listing in a publications file. */
KL_API const uint8_t *kl_calauth_cert_der(const kl_calauth_t *ca, size_t *len);

/* Writes a development PKI into dir (created if missing; existing files are not replaced):
 *   ca.crt, ca.key                          a self-signed CA, "keyless DEVELOPMENT CA"
 *   publications.crt, publications.key      signs the publications file; subject E=email
 *   calendar-auth.crt, calendar-auth.key    signs calendar authentication records
 * Every subject says DEVELOPMENT / NOT FOR PRODUCTION. RSA 2048, SHA-256, valid `days` days. */
KL_API int kl_devpki_create(const char *dir, const char *email, int days, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
