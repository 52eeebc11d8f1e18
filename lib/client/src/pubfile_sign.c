/* Signing publications files (KSI-FORMAT.md §6.3): in one step (kl_pubfile_write), or k of n on
 * separate machines: the unsigned body (kl_pubfile_write_body), a detached CMS signature over it
 * per operator (kl_pubfile_cosign), and one SignedData with every part's SignerInfos and
 * certificates appended to the body (kl_pubfile_assemble). docs/keys.md, "k of n". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "keyless/pubfile.h"
#include "keyless/tlv.h"
#include "keyuri.h"
#include "pubfile_internal.h"
#include "sm2.h"

static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1; /* certificates are never encrypted: never prompt */
}

int kl__pf_load_pem(const char *path, const char *what, X509 **cert, STACK_OF(X509) **chain, kl_err_t *e) {
  char eb[256];
  BIO *b = BIO_new_file(path, "r");
  if (b == NULL) return kl_err_set(e, KL_EIO, "cannot open %s %s: %s", what, path, kl__pf_ossl_err(eb, sizeof eb));
  int r = 0;
  if (cert && (*cert = PEM_read_bio_X509(b, NULL, no_password, NULL)) == NULL)
    r = kl_err_set(e, KL_EINVAL, "%s %s: %s", what, path, kl__pf_ossl_err(eb, sizeof eb));
  if (chain) {
    X509 *x;
    if ((*chain = sk_X509_new_null()) == NULL) r = kl_err_set(e, KL_ENOMEM, "out of memory");
    while (r == 0 && (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL)
      if (!sk_X509_push(*chain, x)) {
        X509_free(x);
        r = kl_err_set(e, KL_ENOMEM, "out of memory");
      }
    if (r == 0 && sk_X509_num(*chain) == 0) r = kl_err_set(e, KL_EINVAL, "%s %s holds no certificate", what, path);
    ERR_clear_error(); /* the read that ended the loop */
  }
  BIO_free(b);
  return r;
}

/* A detached CMS SignedData (DER) over body by one signer, in *der (OPENSSL_free): SHA-256, or
 * for an SM2 key SM3 and SM2-with-SM3 with the SM2 ID. OpenSSL 3.0's CMS cannot set up an SM2
 * signer itself (no CMS ctrl for SM2 keys): CMS_KEY_PARAM skips that step, and the ID and the
 * signature algorithm are set by kl__cms_sm2_signer before CMS_final signs. */
static int sign_detached(const uint8_t *body, size_t len, const kl_pubfile_signer_t *s, unsigned char **der,
                         int *der_len, kl_err_t *e) {
  char eb[256];
  int r;
  X509 *cert = NULL;
  EVP_PKEY *key = NULL;
  STACK_OF(X509) *chain = NULL;
  CMS_ContentInfo *cms = NULL;
  BIO *data = NULL;
  *der = NULL;
  ERR_clear_error();
  if ((r = kl__pf_load_pem(s->cert_pem, "signer certificate", &cert, NULL, e)) ||
      (r = kl_key_load(s->key_uri, "signer key", s->allow_clear_key ? KL_KEY_ALLOW_CLEAR : 0, &key, NULL, e)) ||
      (s->chain_pem && (r = kl__pf_load_pem(s->chain_pem, "chain file", NULL, &chain, e))))
    goto done;
  if (X509_check_private_key(cert, key) != 1) {
    r = kl_err_set(e, KL_EINVAL, "signer key %s does not match certificate %s", s->key_uri, s->cert_pem);
    goto done;
  }
  const unsigned flags = CMS_DETACHED | CMS_BINARY | CMS_PARTIAL;
  bool sm2 = kl__is_sm2(key);
  CMS_SignerInfo *si = NULL;
  if ((data = BIO_new_mem_buf(body, (int)len)) == NULL || (cms = CMS_sign(NULL, NULL, chain, NULL, flags)) == NULL ||
      (si = CMS_add1_signer(cms, cert, key, sm2 ? EVP_sm3() : EVP_sha256(), flags | (sm2 ? CMS_KEY_PARAM : 0))) == NULL ||
      (sm2 && kl__cms_sm2_signer(si) != 1) || CMS_final(cms, data, NULL, flags) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot make the CMS signature: %s", kl__pf_ossl_err(eb, sizeof eb));
    goto done;
  }
  if ((*der_len = i2d_CMS_ContentInfo(cms, der)) <= 0) {
    *der = NULL;
    r = kl_err_set(e, KL_ECRYPTO, "cannot encode the CMS signature: %s", kl__pf_ossl_err(eb, sizeof eb));
  }
done:
  BIO_free(data);
  CMS_ContentInfo_free(cms);
  sk_X509_pop_free(chain, X509_free);
  EVP_PKEY_free(key);
  X509_free(cert);
  ERR_clear_error();
  return r;
}

/* out += body || 0x704(der). */
static int append_signed(const uint8_t *body, size_t len, const unsigned char *der, size_t der_len, kl_buf_t *out,
                         kl_err_t *e) {
  if (der_len > KL_TLV_MAX_LEN)
    return kl_err_set(e, KL_ETOOBIG, "CMS signature is %zu bytes; a TLV holds at most %d", der_len, KL_TLV_MAX_LEN);
  kl_buf_t b = KL_BUF_INIT;
  kl_buf_put(&b, body, len);
  kl_tlv_put_bytes(&b, KL_PUBFILE_T_CMS, 0, der, der_len);
  int r = kl_buf_check(&b, e);
  if (r == 0) {
    kl_buf_put(out, b.p, b.len);
    r = kl_buf_check(out, e);
  }
  kl_buf_free(&b);
  return r;
}

int kl_pubfile_write(const kl_pubfile_spec_t *spec, kl_buf_t *out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  if (out == NULL) return kl_err_set(e, KL_EINVAL, "publications file: no output buffer");
  if (spec == NULL || spec->signer_cert_pem == NULL || spec->signer_key_pem == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file: no signer certificate or key given");
  kl_buf_t body = KL_BUF_INIT;
  unsigned char *der = NULL;
  int der_len = 0, r;
  kl_pubfile_signer_t s = {spec->signer_cert_pem, spec->signer_key_pem, spec->chain_pem, !spec->refuse_clear_key};
  if ((r = kl_pubfile_write_body(spec, &body, e)) == 0 && (r = sign_detached(body.p, body.len, &s, &der, &der_len, e)) == 0)
    r = append_signed(body.p, body.len, der, (size_t)der_len, out, e);
  OPENSSL_free(der);
  kl_buf_free(&body);
  if (r) kl_err_wrap(e, "writing publications file");
  return r;
}

/* ---- k of n: detached parts, made apart, assembled into one file ---- */

static int check_body(const kl_pubfile_t *body, kl_err_t *e) {
  if (body == NULL || body->raw == NULL || body->cms != NULL || body->signed_len != body->raw_len)
    return kl_err_set(e, KL_EINVAL, "not an unsigned publications file body (kl_pubfile_parse_body)");
  return 0;
}

int kl_pubfile_cosign(const kl_pubfile_t *body, const kl_pubfile_signer_t *s, kl_buf_t *out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  int r = check_body(body, e), der_len = 0;
  if (r) return r;
  if (out == NULL || s == NULL || s->cert_pem == NULL || s->key_uri == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file part: no signer certificate, key or output given");
  unsigned char *der = NULL;
  if ((r = sign_detached(body->raw, body->raw_len, s, &der, &der_len, e)) == 0) {
    kl_buf_put(out, der, (size_t)der_len);
    r = kl_buf_check(out, e);
  }
  OPENSSL_free(der);
  if (r) kl_err_wrap(e, "signing the publications file body");
  return r;
}

/* Every signer of the part has a good signature over body; their certificates in keys[] (refs). */
static int part_signers(const kl_pubfile_t *body, const uint8_t *part, size_t len, const char *what, X509 **keys,
                        size_t *n_keys, size_t max, kl_err_t *e) {
  kl__pf_signer_t s[KL_PUBFILE_MAX_SIGNERS];
  size_t n = 0;
  STACK_OF(X509) *certs = NULL;
  int r = kl__pf_signers(body->raw, body->raw_len, part, len, what, s, &n, &certs, e);
  for (size_t i = 0; r == 0 && i < n; i++) {
    if (!s[i].sig_ok) {
      r = kl_err_set(e, KL_EPKI, "%s does not sign this body: signer %zu (%s): %s", what, i + 1, s[i].subject, s[i].why);
    } else if (*n_keys == max) {
      r = kl_err_set(e, KL_ERANGE, "%s: more than %d signers in all", what, KL_PUBFILE_MAX_SIGNERS);
    } else {
      for (size_t j = 0; r == 0 && j < *n_keys; j++)
        if (EVP_PKEY_eq(X509_get0_pubkey(s[i].cert), X509_get0_pubkey(keys[j])) == 1)
          r = kl_err_set(e, KL_EINVAL, "%s: signer %s signed with the same key as an earlier part: each key signs once",
                         what, s[i].subject);
      if (r == 0 && X509_up_ref(s[i].cert) == 1) keys[(*n_keys)++] = s[i].cert;
    }
  }
  kl__pf_signers_free(s, n, certs);
  return r;
}

int kl_pubfile_part_check(const kl_pubfile_t *body, const uint8_t *part, size_t len, size_t *n_signers, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  X509 *keys[KL_PUBFILE_MAX_SIGNERS];
  size_t n = 0;
  int r = check_body(body, e);
  if (r == 0) r = part_signers(body, part, len, "the signature part", keys, &n, KL_PUBFILE_MAX_SIGNERS, e);
  for (size_t i = 0; i < n; i++) X509_free(keys[i]);
  if (n_signers) *n_signers = r ? 0 : n;
  return r;
}

static bool has_cert(const STACK_OF(X509) *sk, const X509 *x) {
  for (int i = 0; sk != NULL && i < sk_X509_num(sk); i++)
    if (X509_cmp(sk_X509_value(sk, i), x) == 0) return true;
  return false;
}

/* Moves p7's SignerInfos and the certificates base lacks into base. */
static int merge_into(PKCS7 *base, PKCS7 *p7, const char *what, kl_err_t *e) {
  STACK_OF(PKCS7_SIGNER_INFO) *sis = PKCS7_get_signer_info(p7);
  PKCS7_SIGNER_INFO *si;
  while (sis != NULL && (si = sk_PKCS7_SIGNER_INFO_shift(sis)) != NULL)
    if (PKCS7_add_signer(base, si) != 1) {
      PKCS7_SIGNER_INFO_free(si);
      return kl_err_set(e, KL_ECRYPTO, "%s: cannot add its signer", what);
    }
  STACK_OF(X509) *certs = p7->d.sign->cert;
  for (int i = 0; certs != NULL && i < sk_X509_num(certs); i++) {
    X509 *x = sk_X509_value(certs, i);
    if (!has_cert(base->d.sign->cert, x) && PKCS7_add_certificate(base, x) != 1)
      return kl_err_set(e, KL_ECRYPTO, "%s: cannot add its certificates", what);
  }
  return 0;
}

int kl_pubfile_assemble(const kl_pubfile_t *body, const uint8_t *const *parts, const size_t *lens, size_t n,
                        kl_buf_t *out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  int r = check_body(body, e);
  if (r) return r;
  if (out == NULL || n == 0 || parts == NULL || lens == NULL)
    return kl_err_set(e, KL_EINVAL, "assembling a publications file: no signature parts or no output given");
  X509 *keys[KL_PUBFILE_MAX_SIGNERS];
  size_t n_keys = 0;
  PKCS7 *base = NULL;
  unsigned char *der = NULL;
  int der_len = 0;
  char what[64];
  for (size_t i = 0; r == 0 && i < n; i++) {
    snprintf(what, sizeof what, "signature part %zu", i + 1);
    if ((r = part_signers(body, parts[i], lens[i], what, keys, &n_keys, KL_PUBFILE_MAX_SIGNERS, e))) break;
    const unsigned char *q = parts[i];
    PKCS7 *p7 = d2i_PKCS7(NULL, &q, (long)lens[i]);
    if (p7 == NULL || !PKCS7_type_is_signed(p7) || p7->d.sign == NULL) {
      r = kl_err_set(e, KL_EPKI, "%s: not a PKCS#7 SignedData", what);
    } else if (base == NULL) {
      base = p7;
      p7 = NULL;
    } else {
      r = merge_into(base, p7, what, e);
    }
    PKCS7_free(p7);
  }
  if (r == 0 && (der_len = i2d_PKCS7(base, &der)) <= 0) {
    der = NULL;
    r = kl_err_set(e, KL_ECRYPTO, "cannot encode the assembled signature");
  }
  /* The result must hold every part's signature over the body, as a verifier will read it. */
  size_t n_all = 0;
  X509 *all[KL_PUBFILE_MAX_SIGNERS];
  if (r == 0 && (r = part_signers(body, der, (size_t)der_len, "the assembled signature", all, &n_all,
                                  KL_PUBFILE_MAX_SIGNERS, e)) == 0 && n_all != n_keys)
    r = kl_err_set(e, KL_ESTATE, "the assembled signature has %zu signers, the parts %zu", n_all, n_keys);
  if (r == 0) r = append_signed(body->raw, body->raw_len, der, (size_t)der_len, out, e);
  for (size_t i = 0; i < n_all; i++) X509_free(all[i]);
  for (size_t i = 0; i < n_keys; i++) X509_free(keys[i]);
  OPENSSL_free(der);
  PKCS7_free(base);
  ERR_clear_error();
  if (r) kl_err_wrap(e, "assembling the publications file");
  return r;
}
