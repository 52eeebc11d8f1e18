/* The key-based policy (KSI-FORMAT.md §6.5): the calendar authentication record's PKI
 * signature, checked with the certificate that the publications file lists under its id; and
 * the same check of a record on its own against the caller's trusted certificates
 * (kl_cal_auth_verify: the extenders' check of the core's replication batches). */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sm2.h"
#include "verify_internal.h"

#define NA(...) kl__verdict(v, KL_VER_NA, KL_VC_GEN_02, __VA_ARGS__)

static bool digest_allowed(const EVP_MD *md) {
  int t = EVP_MD_get_type(md);
  return t == NID_sha1 || t == NID_sha256 || t == NID_ripemd160 || t == NID_sha384 || t == NID_sha512;
}

/* The PKI part shared by the key-based policy and kl_cal_auth_verify: the certificate's
 * validity at time `at` (KEY-03) and the signature over the record's publication data (KEY-02).
 * KL_VC_NONE when both hold; otherwise the code, with *verdict FAIL or NA and the reason in msg. */
static kl_vcode_t pki_check(const kl_cal_auth_t *auth, const char *cert_what, const uint8_t *der, size_t der_len,
                            uint64_t at, kl_verdict_t *verdict, char *msg, size_t cap) {
  const unsigned char *p = der;
  X509 *cert = d2i_X509(NULL, &p, (long)der_len);
  ASN1_OBJECT *obj = NULL;
  EVP_MD_CTX *ctx = NULL;
  kl_vcode_t code = KL_VC_NONE;
  *verdict = KL_VER_OK;
  msg[0] = '\0';
  if (cert == NULL) {
    *verdict = KL_VER_NA;
    snprintf(msg, cap, "%s for this record does not parse", cert_what);
    return KL_VC_GEN_02;
  }
  /* KEY-03: validity at the aggregation time, not now. */
  time_t t = (time_t)at;
  if (X509_cmp_time(X509_get0_notBefore(cert), &t) > 0 || X509_cmp_time(X509_get0_notAfter(cert), &t) < 0) {
    *verdict = KL_VER_FAIL;
    code = KL_VC_KEY_03;
    snprintf(msg, cap, "certificate not valid at aggregation time %llu", (unsigned long long)at);
    goto out;
  }
  /* The digest from the signature type: EVP_get_digestbyobj knows sha256WithRSAEncryption but
   * not ecdsa-with-SHA256 or SM2-with-SM3 (the SM2 profile, docs/profiles.md). */
  obj = OBJ_txt2obj(auth->sig.sig_type, 1);
  int nid = obj ? OBJ_obj2nid(obj) : NID_undef, md_nid = NID_undef;
  bool sm2 = nid == NID_SM2_with_SM3;
  const EVP_MD *md = sm2 ? EVP_sm3()
                     : nid != NID_undef && OBJ_find_sigid_algs(nid, &md_nid, NULL) ? EVP_get_digestbynid(md_nid)
                     : obj                                                        ? EVP_get_digestbyobj(obj)
                                                                                  : NULL;
  if (md == NULL || (!sm2 && !digest_allowed(md))) {
    *verdict = KL_VER_FAIL;
    code = KL_VC_KEY_02;
    snprintf(msg, cap, "unsupported signature type %s", auth->sig.sig_type);
    goto out;
  }
  EVP_PKEY *pkey = X509_get0_pubkey(cert);
  ctx = EVP_MD_CTX_new();
  if (pkey == NULL || ctx == NULL) {
    *verdict = KL_VER_NA;
    code = KL_VC_GEN_02;
    snprintf(msg, cap, "cannot load the certificate's public key");
    goto out;
  }
  /* An SM2 key signs only as SM2-with-SM3, and only an SM2 key does. */
  if (sm2 != kl__is_sm2(pkey)) {
    *verdict = KL_VER_FAIL;
    code = KL_VC_KEY_02;
    snprintf(msg, cap, "signature type %s does not match the certificate's %s key", auth->sig.sig_type,
             kl__is_sm2(pkey) ? "SM2" : "non-SM2");
    goto out;
  }
  bool init = sm2 ? kl__sm2_verify_init(ctx, pkey) == 1 : EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1;
  if (!init || EVP_DigestVerify(ctx, auth->sig.value, auth->sig.value_len, auth->data.raw, auth->data.raw_len) != 1) {
    *verdict = KL_VER_FAIL;
    code = KL_VC_KEY_02;
    snprintf(msg, cap, "the calendar authentication record's %s signature does not verify", auth->sig.sig_type);
    goto out;
  }
out:
  ERR_clear_error();
  EVP_MD_CTX_free(ctx);
  ASN1_OBJECT_free(obj);
  X509_free(cert);
  return code;
}

kl_verdict_t kl__verify_pki(kl__vctx_t *v, const kl_cal_auth_t *auth, const uint8_t *der, size_t der_len) {
  char msg[KL_ERR_MSG_MAX];
  kl_verdict_t verdict;
  kl_vcode_t code = pki_check(auth, "the publications file's certificate", der, der_len, kl_sig_signing_time(v->sig),
                              &verdict, msg, sizeof msg);
  if (verdict == KL_VER_OK) {
    kl_verdict_t r = kl__verdict(v, KL_VER_OK, KL_VC_NONE, NULL);
    v->res->anchor = KL_ANCHOR_CERTIFICATE;
    v->res->cert_id_len = auth->sig.cert_id_len <= sizeof v->res->cert_id ? auth->sig.cert_id_len : 0;
    memcpy(v->res->cert_id, auth->sig.cert_id, v->res->cert_id_len);
    return r;
  }
  return kl__verdict(v, verdict, code, "%s", msg);
}

int kl_cal_auth_verify(const kl_cal_auth_t *auth, const uint8_t *const *cert_ders, const size_t *cert_lens,
                       size_t n_certs, kl_err_t *e) {
  char id_hex[2 * 16 + 1] = "?";
  if (auth->sig.cert_id_len <= 16) kl_hex_encode(auth->sig.cert_id, auth->sig.cert_id_len, id_hex);
  for (size_t k = 0; k < n_certs; k++) {
    uint32_t crc = kl_crc32(cert_ders[k], cert_lens[k]);
    uint8_t id[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
    if (auth->sig.cert_id_len != 4 || memcmp(auth->sig.cert_id, id, 4) != 0) continue;
    char msg[KL_ERR_MSG_MAX];
    kl_verdict_t verdict;
    kl_vcode_t code =
        pki_check(auth, "the trusted certificate", cert_ders[k], cert_lens[k], auth->data.time, &verdict, msg, sizeof msg);
    if (verdict == KL_VER_OK) return 0;
    if (code == KL_VC_KEY_03)
      return kl_err_set(e, KL_EPKI, "%s: certificate %s is not valid at second %llu", kl_vcode_str(code), id_hex,
                        (unsigned long long)auth->data.time);
    return kl_err_set(e, KL_EPKI, "%s%s%s", kl_vcode_str(code), kl_vcode_str(code)[0] ? ": " : "", msg);
  }
  return kl_err_set(e, KL_EPKI, "the record is signed with certificate %s, which is not a trusted calendar-auth "
                                "certificate", id_hex);
}

kl_verdict_t kl__verify_key(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  if (s->cal == NULL) return NA("key-based verification needs a calendar hash chain; the signature has none");
  int weak = kl_cal_chain_weak_alg(s->cal, true);
  if (weak >= 0)
    return NA("calendar chain uses %s, deprecated at publication time %llu", kl_hash_name(weak) ? kl_hash_name(weak) : "?",
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
