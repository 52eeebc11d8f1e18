/* Calendar authentication record signing, on OpenSSL 3. The development PKI is in devpki.c. */
#include "ossl.h"
#include "keyless/pki.h"
#include "keyuri.h"
#include "sm2.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pubfile.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"

struct kl_calauth {
  EVP_PKEY *key;
  X509 *cert;
  uint8_t *der;
  size_t der_len;
  uint8_t id[4];
  const char *sig_type;
  bool sm2; /* SM2-with-SM3 (the SM2 profile), else SHA-256 */
};


static int read_pem(const char *path, const char *what, X509 **cert, EVP_PKEY **key, kl_err_t *e) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s %s: %s", what, path, strerror(errno));
  if (cert) *cert = PEM_read_X509(f, NULL, NULL, NULL);
  if (key) *key = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
  fclose(f);
  if ((cert && *cert == NULL) || (key && *key == NULL))
    return kl_err_set(e, KL_ECRYPTO, "%s %s: not a PEM %s: %s", what, path, cert ? "certificate" : "private key", kl__ossl_msg());
  return 0;
}

int kl_cert_same_key(const char *cert_a, const char *cert_b, bool *same, kl_err_t *e) {
  X509 *a = NULL, *b = NULL;
  int r;
  if ((r = read_pem(cert_a, "certificate", &a, NULL, e)) == 0 && (r = read_pem(cert_b, "certificate", &b, NULL, e)) == 0)
    *same = EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)) == 1;
  X509_free(a);
  X509_free(b);
  ERR_clear_error();
  return r;
}

int kl_calauth_load(const char *cert_pem, const char *key_pem, kl_calauth_t **out, kl_err_t *e) {
  return kl_calauth_open(cert_pem, key_pem, KL_KEY_ALLOW_CLEAR, out, e);
}

int kl_calauth_open(const char *cert_pem, const char *key_pem, unsigned flags, kl_calauth_t **out, kl_err_t *e) {
  kl_calauth_t *ca = calloc(1, sizeof *ca);
  int r;
  if (ca == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if ((r = read_pem(cert_pem, "calendar-auth certificate", &ca->cert, NULL, e)) ||
      (r = kl_key_load(key_pem, "calendar-auth key", flags, &ca->key, NULL, e)))
    goto fail;
  if (X509_check_private_key(ca->cert, ca->key) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "calendar-auth key %s does not belong to certificate %s", key_pem, cert_pem);
    goto fail;
  }
  int n = i2d_X509(ca->cert, &ca->der);
  if (n <= 0) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot encode certificate %s", cert_pem);
    goto fail;
  }
  ca->der_len = (size_t)n;
  uint32_t crc = kl_crc32(ca->der, ca->der_len);
  for (int k = 0; k < 4; k++) ca->id[k] = (uint8_t)(crc >> (24 - 8 * k));
  /* SM2 first: OpenSSL 3 gives an SM2 key the EC base id. */
  int base = EVP_PKEY_get_base_id(ca->key);
  ca->sm2 = kl__is_sm2(ca->key);
  ca->sig_type = ca->sm2                  ? KL_SM2_SIG_OID
                 : base == EVP_PKEY_RSA   ? "1.2.840.113549.1.1.11"
                 : base == EVP_PKEY_EC    ? "1.2.840.10045.4.3.2"
                                          : NULL;
  if (ca->sig_type == NULL) {
    r = kl_err_set(e, KL_EUNSUPPORTED, "calendar-auth key %s: only RSA, EC and SM2 keys are supported", key_pem);
    goto fail;
  }
  *out = ca;
  return 0;
fail:
  kl_calauth_free(ca);
  return r;
}

void kl_calauth_free(kl_calauth_t *ca) {
  if (ca == NULL) return;
  EVP_PKEY_free(ca->key);
  X509_free(ca->cert);
  OPENSSL_free(ca->der);
  free(ca);
}

const uint8_t *kl_calauth_cert_der(const kl_calauth_t *ca, size_t *len) {
  *len = ca->der_len;
  return ca->der;
}

int kl_calauth_sign(kl_calauth_t *ca, uint64_t time, const kl_imprint_t *root, kl_buf_t *out, kl_err_t *e) {
  kl_buf_t data = KL_BUF_INIT;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char *sig = NULL;
  size_t sig_len = 0;
  int r = 0;
  kl_pub_data_encode(&data, KL_TLV_FLAG_F, time, root);
  if (ctx == NULL || !kl_buf_ok(&data)) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  bool init = ca->sm2 ? kl__sm2_sign_init(ctx, ca->key) == 1 : EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ca->key) == 1;
  if (!init ||
      EVP_DigestSign(ctx, NULL, &sig_len, data.p, data.len) != 1 || (sig = OPENSSL_malloc(sig_len)) == NULL ||
      EVP_DigestSign(ctx, sig, &sig_len, data.p, data.len) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "signing the calendar root for %llu failed: %s", (unsigned long long)time, kl__ossl_msg());
    goto out;
  }
  size_t m = kl_tlv_open(out);
  kl_buf_put(out, data.p, data.len);
  size_t s = kl_tlv_open(out);
  kl_tlv_put_str(out, 0x01, 0, ca->sig_type);
  kl_tlv_put_bytes(out, 0x02, 0, sig, sig_len);
  kl_tlv_put_bytes(out, 0x03, 0, ca->id, 4);
  kl_tlv_close(out, s, 0x0B, 0);
  kl_tlv_close(out, m, KL_T_CAL_AUTH, 0);
  r = kl_buf_check(out, e);
out:
  OPENSSL_free(sig);
  EVP_MD_CTX_free(ctx);
  kl_buf_free(&data);
  return r;
}
