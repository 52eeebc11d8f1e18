/* The SM2 profile's signatures (sm2.h). OpenSSL 3.0 signs and checks SM2 with SM3 through
 * EVP_DigestSign/Verify, but its CMS code has no SM2 support of its own (no signature
 * algorithm, no way to set the ID), so the SignerInfo parts are done here. */
#include "sm2.h"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool kl__is_sm2(const EVP_PKEY *key) { return key != NULL && EVP_PKEY_is_a(key, "SM2"); }

int kl__sm2_set_id(EVP_PKEY_CTX *pctx) {
  return pctx != NULL && EVP_PKEY_CTX_set1_id(pctx, KL_SM2_ID, KL_SM2_ID_LEN) == 1;
}

int kl__sm2_sign_init(EVP_MD_CTX *ctx, EVP_PKEY *key) {
  EVP_PKEY_CTX *pctx = NULL;
  return EVP_DigestSignInit(ctx, &pctx, EVP_sm3(), NULL, key) == 1 && kl__sm2_set_id(pctx);
}

int kl__sm2_verify_init(EVP_MD_CTX *ctx, EVP_PKEY *key) {
  EVP_PKEY_CTX *pctx = NULL;
  return EVP_DigestVerifyInit(ctx, &pctx, EVP_sm3(), NULL, key) == 1 && kl__sm2_set_id(pctx);
}

int kl__x509_sign(X509 *x, EVP_PKEY *key) {
  if (!kl__is_sm2(key)) return X509_sign(x, key, EVP_sha256());
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int r = ctx != NULL && kl__sm2_sign_init(ctx, key) ? X509_sign_ctx(x, ctx) : 0;
  EVP_MD_CTX_free(ctx);
  return r;
}

int kl__x509_sm2_id(X509 *x) {
  if (X509_get_signature_nid(x) != NID_SM2_with_SM3) return 1;
  ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
  if (id == NULL || ASN1_OCTET_STRING_set(id, (const unsigned char *)KL_SM2_ID, KL_SM2_ID_LEN) != 1) {
    ASN1_OCTET_STRING_free(id);
    return 0;
  }
  X509_set0_distinguishing_id(x, id); /* x owns id */
  return 1;
}

int kl__cms_sm2_signer(CMS_SignerInfo *si) {
  X509_ALGOR *sig_alg = NULL;
  CMS_SignerInfo_get0_algs(si, NULL, NULL, NULL, &sig_alg);
  return sig_alg != NULL && kl__sm2_set_id(CMS_SignerInfo_get0_pkey_ctx(si)) &&
         X509_ALGOR_set0(sig_alg, OBJ_nid2obj(NID_SM2_with_SM3), V_ASN1_UNDEF, NULL) == 1;
}

/* DER length octets of n into p (at most 5); their count. */
static size_t der_len(size_t n, unsigned char *p) {
  if (n < 0x80) {
    p[0] = (unsigned char)n;
    return 1;
  }
  size_t k = 0;
  for (size_t m = n; m > 0; m >>= 8) k++;
  p[0] = (unsigned char)(0x80 | k);
  for (size_t i = 0; i < k; i++) p[1 + i] = (unsigned char)(n >> (8 * (k - 1 - i)));
  return 1 + k;
}

/* What the signature covers: the signed attributes as a SET (tag 0x31, RFC 5652 §5.4), in the
 * order received (as OpenSSL's own check does). *out is malloc'ed. */
static int signed_attrs_der(CMS_SignerInfo *si, unsigned char **out, size_t *out_len) {
  int n = CMS_signed_get_attr_count(si);
  size_t total = 0;
  *out = NULL;
  for (int i = 0; i < n; i++) {
    int l = i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), NULL);
    if (l <= 0) return 0;
    total += (size_t)l;
  }
  unsigned char hdr[6] = {0x31};
  size_t h = 1 + der_len(total, hdr + 1);
  unsigned char *buf = malloc(h + total), *p = buf + h;
  if (buf == NULL) return 0;
  memcpy(buf, hdr, h);
  for (int i = 0; i < n; i++) {
    int l = i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), &p);
    if (l <= 0) {
      free(buf);
      return 0;
    }
  }
  *out = buf;
  *out_len = h + total;
  return 1;
}

int kl__cms_sm2_verify(CMS_SignerInfo *si, EVP_PKEY *key, char *why, size_t cap) {
  X509_ALGOR *dig = NULL, *sig = NULL;
  const ASN1_OBJECT *dig_obj = NULL, *sig_obj = NULL;
  CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
  if (dig) X509_ALGOR_get0(&dig_obj, NULL, NULL, dig);
  if (sig) X509_ALGOR_get0(&sig_obj, NULL, NULL, sig);
  if (OBJ_obj2nid(sig_obj) != NID_SM2_with_SM3 || OBJ_obj2nid(dig_obj) != NID_sm3) {
    snprintf(why, cap, "signature check failed: an SM2 signer must use SM2-with-SM3 (" KL_SM2_SIG_OID ") over SM3");
    return 0;
  }
  if (CMS_signed_get_attr_count(si) <= 0) {
    snprintf(why, cap, "signature check failed: an SM2 signer must have signed attributes");
    return 0;
  }
  unsigned char *der = NULL;
  size_t der_n = 0;
  ASN1_OCTET_STRING *value = CMS_SignerInfo_get0_signature(si);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx != NULL && value != NULL && signed_attrs_der(si, &der, &der_n) && kl__sm2_verify_init(ctx, key) &&
           EVP_DigestVerify(ctx, ASN1_STRING_get0_data(value), (size_t)ASN1_STRING_length(value), der, der_n) == 1;
  if (!ok) snprintf(why, cap, "signature check failed: the SM2 signature does not verify");
  free(der);
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}
