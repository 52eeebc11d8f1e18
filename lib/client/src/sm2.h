/* Internal: the SM2 profile's signatures (docs/profiles.md). SM2 over SM3 with the signer ID of
 * GM/T 0009 and RFC 8998, "1234567812345678", set explicitly on every signature and check:
 * OpenSSL 3.0 would otherwise use an empty ID, which no other SM2 implementation expects.
 * Used by the calendar-auth records (pki.c, verify_pki.c), the development PKI (devpki.c) and
 * the publications file's CMS (pubfile_sign.c, pubfile_cms.c). Stateless; thread-safe. */
#ifndef KL_SM2_H
#define KL_SM2_H

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KL_SM2_ID "1234567812345678"
#define KL_SM2_ID_LEN 16
/* SM2-with-SM3, the signature type of an SM2 calendar-auth record. */
#define KL_SM2_SIG_OID "1.2.156.10197.1.501"

/* An SM2 key (OpenSSL 3 reports SM2 keys as EC by base id: this is the test to use). */
bool kl__is_sm2(const EVP_PKEY *key);
/* Sets the SM2 ID on a signing or verifying context: 1 on success. */
int kl__sm2_set_id(EVP_PKEY_CTX *pctx);
/* EVP_DigestSignInit / EVP_DigestVerifyInit with SM3 and the SM2 ID: 1 on success. */
int kl__sm2_sign_init(EVP_MD_CTX *ctx, EVP_PKEY *key);
int kl__sm2_verify_init(EVP_MD_CTX *ctx, EVP_PKEY *key);
/* Signs x with key: SM2-with-SM3 (and the ID) for SM2 keys, else SHA-256. > 0 on success. */
int kl__x509_sign(X509 *x, EVP_PKEY *key);
/* Marks an SM2-with-SM3-signed certificate with the SM2 ID, so that OpenSSL checks its
 * signature (X509_verify, X509_verify_cert) with it; other certificates are left alone.
 * 1 on success (or nothing to do), 0 out of memory. */
int kl__x509_sm2_id(X509 *x);
/* The SignerInfo signature of an SM2 signer, checked by hand (CMS_SignerInfo_verify cannot set
 * the ID): signature algorithm SM2-with-SM3, digest SM3, signed attributes present, and the
 * signature over their DER good for key. 1 good; 0 with the reason in why. */
int kl__cms_sm2_verify(CMS_SignerInfo *si, EVP_PKEY *key, char *why, size_t cap);
/* Prepares a SignerInfo that CMS_add1_signer made with CMS_KEY_PARAM for an SM2 key: the ID on
 * its signing context and SM2-with-SM3 as its signature algorithm. 1 on success. */
int kl__cms_sm2_signer(CMS_SignerInfo *si);

#endif
