/* The key-based policy (KSI-FORMAT.md §6.5): the calendar authentication record's PKI
 * signature, checked with the certificate that the publications file lists under its id. */
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <time.h>

#include "verify_internal.h"

#define FAIL(code, ...) kl__verdict(v, KL_VER_FAIL, KL_VC_##code, __VA_ARGS__)
#define NA(...) kl__verdict(v, KL_VER_NA, KL_VC_GEN_02, __VA_ARGS__)

static bool digest_allowed(const EVP_MD *md) {
  int t = EVP_MD_get_type(md);
  return t == NID_sha1 || t == NID_sha256 || t == NID_ripemd160 || t == NID_sha384 || t == NID_sha512;
}

kl_verdict_t kl__verify_pki(kl__vctx_t *v, const kl_cal_auth_t *auth, const uint8_t *der, size_t der_len) {
  const unsigned char *p = der;
  X509 *cert = d2i_X509(NULL, &p, (long)der_len);
  ASN1_OBJECT *obj = NULL;
  EVP_MD_CTX *ctx = NULL;
  kl_verdict_t r;
  if (cert == NULL) return NA("the publications file's certificate for this record does not parse");
  /* KEY-03: validity at the aggregation time, not now. */
  time_t t = (time_t)kl_sig_signing_time(v->sig);
  if (X509_cmp_time(X509_get0_notBefore(cert), &t) > 0 || X509_cmp_time(X509_get0_notAfter(cert), &t) < 0) {
    r = FAIL(KEY_03, "certificate not valid at aggregation time %llu", (unsigned long long)t);
    goto out;
  }
  obj = OBJ_txt2obj(auth->sig.sig_type, 1);
  const EVP_MD *md = obj ? EVP_get_digestbyobj(obj) : NULL;
  if (md == NULL || !digest_allowed(md)) {
    r = FAIL(KEY_02, "unsupported signature type %s", auth->sig.sig_type);
    goto out;
  }
  EVP_PKEY *pkey = X509_get0_pubkey(cert);
  ctx = EVP_MD_CTX_new();
  if (pkey == NULL || ctx == NULL) {
    r = NA("cannot load the certificate's public key");
    goto out;
  }
  if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) != 1 ||
      EVP_DigestVerify(ctx, auth->sig.value, auth->sig.value_len, auth->data.raw, auth->data.raw_len) != 1) {
    r = FAIL(KEY_02, "the calendar authentication record's %s signature does not verify", auth->sig.sig_type);
    goto out;
  }
  r = kl__verdict(v, KL_VER_OK, KL_VC_NONE, NULL);
out:
  EVP_MD_CTX_free(ctx);
  ASN1_OBJECT_free(obj);
  X509_free(cert);
  return r;
}

kl_verdict_t kl__verify_key(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  if (s->cal == NULL) return NA("key-based verification needs a calendar hash chain; the signature has none");
  uint32_t algs = kl_cal_chain_algs(s->cal);
  for (int a = 0; a < 32; a++)
    if ((algs & (1u << a)) && kl_hash_deprecated_at(a, s->cal->pub_time))
      return NA("calendar chain uses %s, deprecated at publication time %llu", kl_hash_name(a) ? kl_hash_name(a) : "?",
                (unsigned long long)s->cal->pub_time);
  if (s->auth == NULL) return NA("key-based verification needs a calendar authentication record; the signature has none");
  if (v->o->pubfile == NULL) return NA("key-based verification needs a publications file for the certificates");
  const kl_pubfile_cert_t *c = kl_pubfile_find_cert(v->o->pubfile, s->auth->sig.cert_id, s->auth->sig.cert_id_len);
  if (c == NULL) {
    char hex[2 * 16 + 1] = "";
    if (s->auth->sig.cert_id_len <= 16) kl_hex_encode(s->auth->sig.cert_id, s->auth->sig.cert_id_len, hex);
    return NA("certificate %s is not in the publications file", hex);
  }
  return kl__verify_pki(v, s->auth, c->der, c->der_len);
}
