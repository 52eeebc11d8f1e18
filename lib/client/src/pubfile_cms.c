/* The trust in a publications file (KSI-FORMAT.md §6.4): its CMS SignedData may carry several
 * SignerInfos; a file is trusted when at least k distinct signers (different public keys) have a
 * good signature over the body, a certificate chaining to the anchors at the verification time,
 * and a subject meeting every constraint. k = 1 by default, as libksi. docs/keys.md, "k of n". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "keyless/pubfile.h"
#include "keyless/tlv.h"
#include "pubfile_internal.h"
#include "sm2.h"

/* ---- OpenSSL helpers ---- */

/* The most recent OpenSSL error as "library: reason", or the system error (errno) behind it.
 * The queue is cleared. */
const char *kl__pf_ossl_err(char *buf, size_t cap) {
  unsigned long code, last = 0, sys = 0;
  while ((code = ERR_get_error()) != 0) {
    if (ERR_SYSTEM_ERROR(code)) sys = code;
    last = code;
  }
  const char *lib = ERR_lib_error_string(last), *reason = ERR_reason_error_string(last);
  if (sys != 0) snprintf(buf, cap, "%s", strerror(ERR_GET_REASON(sys)));
  else if (last == 0) snprintf(buf, cap, "no details from OpenSSL");
  else if (reason != NULL) snprintf(buf, cap, "%s%s%s", lib ? lib : "", lib ? ": " : "", reason);
  else ERR_error_string_n(last, buf, cap);
  return buf;
}

/* ---- verification ---- */

static ASN1_OBJECT *cnstr_obj(const char *oid) {
  static const struct { const char *alias, *oid; } aliases[] = {
      {"E", "1.2.840.113549.1.9.1"}, {"email", "1.2.840.113549.1.9.1"},
      {"CN", "2.5.4.3"}, {"C", "2.5.4.6"}, {"O", "2.5.4.10"},
  };
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcasecmp(oid, aliases[i].alias) == 0) oid = aliases[i].oid;
  return OBJ_txt2obj(oid, 1); /* dotted form only */
}

/* Every constraint must equal the first matching entry of the signer's subject exactly
 * (what X509_NAME_get_text_by_OBJ reads, without its truncation). */
static int check_cnstr(X509 *signer, const kl_pubfile_trust_t *trust, kl_err_t *e) {
  const X509_NAME *subj = X509_get_subject_name(signer);
  for (size_t i = 0; i < trust->n_cnstr; i++) {
    const kl_cnstr_t *c = &trust->cnstr[i];
    ASN1_OBJECT *obj = cnstr_obj(c->oid);
    if (obj == NULL) {
      ERR_clear_error();
      return kl_err_set(e, KL_EINVAL, "subject constraint %zu: unknown attribute \"%s\"", i + 1,
                        c->oid);
    }
    int idx = X509_NAME_get_index_by_OBJ(subj, obj, -1);
    ASN1_OBJECT_free(obj);
    if (idx < 0)
      return kl_err_set(e, KL_EPKI,
                        "subject constraint failed: the signer's subject has no %s (expected "
                        "\"%s\")", c->oid, c->value);
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    size_t vlen = (size_t)ASN1_STRING_length(v);
    if (vlen != strlen(c->value) || memcmp(ASN1_STRING_get0_data(v), c->value, vlen) != 0)
      return kl_err_set(e, KL_EPKI,
                        "subject constraint failed: the signer's %s is \"%.*s\", expected \"%s\"",
                        c->oid, (int)(vlen > 200 ? 200 : vlen),
                        (const char *)ASN1_STRING_get0_data(v), c->value);
  }
  return 0;
}

static int check_chain(X509 *signer, STACK_OF(X509) *untrusted, const kl_pubfile_trust_t *trust,
                       kl_err_t *e) {
  char eb[256];
  int r = 0;
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  if (store == NULL || ctx == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto done;
  }
  if (trust->n_anchor_files == 0) {
    if (X509_STORE_set_default_paths(store) != 1) {
      r = kl_err_set(e, KL_EPKI, "cannot load OpenSSL's default trust store: %s",
                     kl__pf_ossl_err(eb, sizeof eb));
      goto done;
    }
  }
  for (size_t i = 0; i < trust->n_anchor_files; i++) {
    const char *f = trust->anchor_files[i];
    if (f == NULL || X509_STORE_load_file(store, f) != 1) {
      r = kl_err_set(e, KL_EIO, "cannot load trust anchor file %s: %s", f ? f : "(null)",
                     kl__pf_ossl_err(eb, sizeof eb));
      goto done;
    }
  }
  /* SM2-signed certificates (the SM2 profile) are checked with the SM2 ID. */
  STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
  for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
    X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
    if (x != NULL && kl__x509_sm2_id(x) != 1) {
      r = kl_err_set(e, KL_ENOMEM, "out of memory");
      goto done;
    }
  }
  if (X509_STORE_CTX_init(ctx, store, signer, untrusted) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot set up certificate verification: %s",
                   kl__pf_ossl_err(eb, sizeof eb));
    goto done;
  }
  if (trust->at != 0) X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)trust->at);
  if (X509_verify_cert(ctx) != 1) {
    int err = X509_STORE_CTX_get_error(ctx);
    char subj[256] = "?";
    X509 *bad = X509_STORE_CTX_get_current_cert(ctx);
    if (bad != NULL) X509_NAME_oneline(X509_get_subject_name(bad), subj, sizeof subj);
    r = kl_err_set(e, KL_EPKI,
                   "certificate chain check failed: %s (certificate at depth %d, subject %s)",
                   X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(ctx), subj);
    ERR_clear_error();
  }
done:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return r;
}

/* ---- the signers of one CMS SignedData ---- */

/* The signer's CN, or its whole subject when it has none (for messages). */
static void short_subject(X509 *x, char *buf, size_t cap) {
  const X509_NAME *n = X509_get_subject_name(x);
  int idx = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
  if (idx >= 0) {
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx));
    int l = ASN1_STRING_length(v);
    snprintf(buf, cap, "CN=%.*s", l > 80 ? 80 : l, (const char *)ASN1_STRING_get0_data(v));
  } else {
    X509_NAME_oneline(n, buf, (int)cap);
  }
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
}

void kl__pf_signers_free(kl__pf_signer_t *s, size_t n, STACK_OF(X509) *certs) {
  for (size_t i = 0; s != NULL && i < n; i++) {
    X509_free(s[i].cert);
    s[i].cert = NULL;
  }
  sk_X509_pop_free(certs, X509_free);
}

/* Runs the body through the CMS's digests; each signer not yet rejected is then checked. */
static int check_content(CMS_ContentInfo *cms, const uint8_t *body, size_t body_len, const char *what,
                         kl__pf_signer_t *out, size_t n, kl_err_t *e) {
  char eb[256];
  BIO *content = BIO_new_mem_buf(body, (int)body_len);
  if (content == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  BIO *chain = CMS_dataInit(cms, content);
  if (chain == NULL) {
    BIO_free(content);
    return kl_err_set(e, KL_EPKI, "%s: cannot digest the signed bytes: %s", what, kl__pf_ossl_err(eb, sizeof eb));
  }
  uint8_t buf[4096];
  size_t total = 0;
  int got;
  while (total <= body_len && (got = BIO_read(chain, buf, sizeof buf)) > 0) total += (size_t)got;
  STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
  for (size_t i = 0; i < n; i++) {
    if (out[i].cert == NULL || out[i].why[0] != '\0') continue;
    if (CMS_SignerInfo_verify_content(sk_CMS_SignerInfo_value(sis, (int)i), chain) == 1)
      out[i].sig_ok = true;
    else
      snprintf(out[i].why, sizeof out[i].why, "signature check failed: %s", kl__pf_ossl_err(eb, sizeof eb));
  }
  BIO_free_all(chain); /* the digest BIOs and the content */
  return 0;
}

int kl__pf_signers(const uint8_t *body, size_t body_len, const uint8_t *der, size_t der_len, const char *what,
                   kl__pf_signer_t *out, size_t *n, STACK_OF(X509) **certs_out, kl_err_t *e) {
  char eb[256];
  int r = 0;
  *n = 0;
  *certs_out = NULL;
  if (der == NULL || der_len == 0 || der_len > KL_PUBFILE_MAX_SIZE || body == NULL || body_len > KL_PUBFILE_MAX_SIZE)
    return kl_err_set(e, KL_EINVAL, "%s: no signature or no signed bytes", what);
  ERR_clear_error();
  const unsigned char *q = der;
  CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)der_len);
  STACK_OF(X509) *certs = NULL;
  if (cms == NULL) {
    r = kl_err_set(e, KL_EPKI, "%s is not a CMS structure: %s", what, kl__pf_ossl_err(eb, sizeof eb));
    goto done;
  }
  if (q != der + der_len) {
    r = kl_err_set(e, KL_EPKI, "%s: %zu trailing bytes after the CMS", what, (size_t)(der + der_len - q));
    goto done;
  }
  if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed || CMS_is_detached(cms) != 1) {
    r = kl_err_set(e, KL_EPKI, "%s is not a detached CMS SignedData", what);
    goto done;
  }
  STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
  int n_si = sis ? sk_CMS_SignerInfo_num(sis) : 0;
  if (n_si <= 0 || n_si > KL_PUBFILE_MAX_SIGNERS) {
    r = kl_err_set(e, KL_EPKI, "signature check failed: %s has %d signers; 1 to %d are accepted", what, n_si < 0 ? 0 : n_si,
                   KL_PUBFILE_MAX_SIGNERS);
    goto done;
  }
  if ((certs = CMS_get1_certs(cms)) == NULL && (certs = sk_X509_new_null()) == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < sk_X509_num(certs); i++)
    if (kl__x509_sm2_id(sk_X509_value(certs, i)) != 1) {
      r = kl_err_set(e, KL_ENOMEM, "out of memory");
      goto done;
    }
  if (CMS_set1_signers_certs(cms, NULL, 0) < 0) ERR_clear_error(); /* a signer without one is reported below */
  for (int i = 0; i < n_si; i++) {
    kl__pf_signer_t *s = &out[i];
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, i);
    memset(s, 0, sizeof *s);
    X509 *x = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, &x, NULL, NULL);
    (*n)++;
    if (x == NULL || X509_up_ref(x) != 1) {
      snprintf(s->subject, sizeof s->subject, "?");
      snprintf(s->why, sizeof s->why, "signature check failed: its certificate is not in the CMS");
      continue;
    }
    s->cert = x;
    short_subject(x, s->subject, sizeof s->subject);
    /* Signed attributes: their signature first (CMS_verify's order); the digest comes later.
     * An SM2 signer's by hand (sm2.h): OpenSSL's check cannot use the SM2 ID. */
    if (kl__is_sm2(X509_get0_pubkey(x)))
      kl__cms_sm2_verify(si, X509_get0_pubkey(x), s->why, sizeof s->why);
    else if (CMS_signed_get_attr_count(si) >= 0 && CMS_SignerInfo_verify(si) != 1)
      snprintf(s->why, sizeof s->why, "signature check failed: %s", kl__pf_ossl_err(eb, sizeof eb));
  }
  r = check_content(cms, body, body_len, what, out, *n, e);
done:
  if (r) {
    kl__pf_signers_free(out, *n, certs);
    *n = 0;
    certs = NULL;
  }
  *certs_out = certs;
  CMS_ContentInfo_free(cms);
  ERR_clear_error();
  return r;
}

/* ---- k of n ---- */

static int check_trust_args(const kl_pubfile_t *pf, const kl_pubfile_trust_t *trust, kl_err_t *e) {
  if (pf == NULL || trust == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file verification: no file or trust settings");
  if (pf->cms == NULL) return kl_err_set(e, KL_EINVAL, "publications file object has no signature");
  if (trust->n_cnstr == 0 || trust->cnstr == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file verification: no subject constraint configured");
  for (size_t i = 0; i < trust->n_cnstr; i++)
    if (trust->cnstr[i].oid == NULL || trust->cnstr[i].value == NULL)
      return kl_err_set(e, KL_EINVAL, "subject constraint %zu has no attribute or no value", i + 1);
  if (trust->n_anchor_files > 0 && trust->anchor_files == NULL)
    return kl_err_set(e, KL_EINVAL, "%zu trust anchor files announced but none given", trust->n_anchor_files);
  if (trust->at < 0) return kl_err_set(e, KL_EINVAL, "verification time %lld is negative", (long long)trust->at);
  if (trust->signers_required > KL_PUBFILE_MAX_SIGNERS)
    return kl_err_set(e, KL_EINVAL, "%zu signers required: a file holds at most %d", trust->signers_required,
                      KL_PUBFILE_MAX_SIGNERS);
  return 0;
}

/* "N of the K required ...; rejected: signer I (SUBJECT): WHY; ..." in e. */
static int kofn_error(const kl__pf_signer_t *s, size_t n, size_t good, size_t k, kl_err_t *e) {
  if (n == 1 && k == 1) return kl_err_set(e, KL_EPKI, "%s", s[0].why); /* the one-signer messages */
  char msg[KL_ERR_MSG_MAX];
  size_t w = (size_t)snprintf(msg, sizeof msg, "%zu of the %zu required distinct trusted signers (the CMS has %zu)", good,
                              k, n);
  const char *sep = "; rejected: ";
  for (size_t i = 0; i < n && w < sizeof msg; i++) {
    if (s[i].why[0] == '\0') continue;
    w += (size_t)snprintf(msg + w, sizeof msg - w, "%ssigner %zu (%s): %s", sep, i + 1, s[i].subject, s[i].why);
    sep = "; ";
  }
  return kl_err_set(e, KL_EPKI, "%s", msg);
}

int kl_pubfile_verify(const kl_pubfile_t *pf, const kl_pubfile_trust_t *trust, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  int r = check_trust_args(pf, trust, e);
  if (r) return r;
  size_t k = trust->signers_required ? trust->signers_required : 1, n = 0, good = 0;
  size_t counted[KL_PUBFILE_MAX_SIGNERS];
  kl__pf_signer_t s[KL_PUBFILE_MAX_SIGNERS];
  STACK_OF(X509) *certs = NULL;
  char what[64];
  snprintf(what, sizeof what, "signature (0x704 at offset %zu)", pf->signed_len);
  if ((r = kl__pf_signers(pf->raw, pf->signed_len, pf->cms, pf->cms_len, what, s, &n, &certs, e)) != 0) goto done;
  /* 1. each signature (above); 2. the signer's chain to the anchors at the verification time;
   * 3. subject constraints; 4. one vote per key. */
  for (size_t i = 0; i < n; i++) {
    if (!s[i].sig_ok) continue;
    kl_err_t se = {0};
    int cr = check_chain(s[i].cert, certs, trust, &se);
    if (cr == 0) cr = check_cnstr(s[i].cert, trust, &se);
    if (cr != 0 && cr != KL_EPKI) { /* a bad anchor file or constraint: no signer can pass */
      r = kl_err_set(e, cr, "%s", se.msg);
      goto done;
    }
    if (cr != 0) {
      size_t l = strnlen(se.msg, sizeof s[i].why - 1);
      memcpy(s[i].why, se.msg, l);
      s[i].why[l] = '\0';
      continue;
    }
    for (size_t j = 0; j < good && s[i].why[0] == '\0'; j++)
      if (EVP_PKEY_eq(X509_get0_pubkey(s[i].cert), X509_get0_pubkey(s[counted[j]].cert)) == 1)
        snprintf(s[i].why, sizeof s[i].why, "the same key as signer %zu: counted once", counted[j] + 1);
    if (s[i].why[0] == '\0') counted[good++] = i;
  }
  if (good < k) r = kofn_error(s, n, good, k, e);
done:
  kl__pf_signers_free(s, n, certs);
  ERR_clear_error();
  if (r) kl_err_wrap(e, "publications file");
  return r;
}

int kl_pubfile_verify_signer(const kl_pubfile_t *pf, const char *signer_cert_pem, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  if (pf == NULL || signer_cert_pem == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file verification: no file or certificate");
  if (pf->cms == NULL) return kl_err_set(e, KL_EINVAL, "publications file object has no signature");
  X509 *mine = NULL;
  kl__pf_signer_t s[KL_PUBFILE_MAX_SIGNERS];
  size_t n = 0;
  STACK_OF(X509) *certs = NULL;
  char what[64];
  snprintf(what, sizeof what, "signature (0x704 at offset %zu)", pf->signed_len);
  int r = kl__pf_load_pem(signer_cert_pem, "signer certificate", &mine, NULL, e);
  if (r == 0) r = kl__pf_signers(pf->raw, pf->signed_len, pf->cms, pf->cms_len, what, s, &n, &certs, e);
  if (r == 0) {
    /* Any good signature with this key will do; else name who signed (or why none holds). */
    bool found = false;
    char who[300] = "";
    size_t w = 0, good = 0;
    for (size_t i = 0; i < n && !found; i++) {
      if (!s[i].sig_ok) continue;
      found = EVP_PKEY_eq(X509_get0_pubkey(s[i].cert), X509_get0_pubkey(mine)) == 1;
      if (w < sizeof who) w += (size_t)snprintf(who + w, sizeof who - w, "%s%s", good++ ? ", " : "", s[i].subject);
    }
    if (!found && good == 0) r = kofn_error(s, n, 0, 1, e);
    else if (!found) r = kl_err_set(e, KL_EPKI, "signed by %s, not with the key of %s", who, signer_cert_pem);
  }
  X509_free(mine);
  kl__pf_signers_free(s, n, certs);
  ERR_clear_error();
  if (r) kl_err_wrap(e, "publications file");
  return r;
}
