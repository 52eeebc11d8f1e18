/* The publications file (KSI-FORMAT.md §6.3, §6.4): parse, look up, verify its CMS signature
 * against trust anchors and subject constraints, and write a signed one. */
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
#include "keyuri.h"

#define MAGIC_LEN 8
#define PUBFILE_MAX_SIZE (64u << 20) /* far above any real file (Guardtime's: ~30 kB) */

enum { T_HEADER = 0x701, T_CERT = 0x702, T_PUBREC = 0x703, T_CMS = 0x704 };

/* kl_err_wrap() returns 0 when e is NULL; the public entry points below therefore always
 * pass a real kl_err_t down, and this helper keeps the code explicit anyway. */
#define wrap_r(e, r, ...) (kl_err_wrap((e), __VA_ARGS__), (r))

/* ---- parsing ---- */

static int header_decode(kl_pubfile_t *pf, const kl_tlv_t *t, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_ver = 0, seen_created = 0, seen_uri = 0;
  kl_tlv_iter_children(&it, pf->raw, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_ver++) return kl_tlv_err_dup(&c, "publications file header", e);
        if ((r = kl_tlv_get_uint(&c, &pf->version, e)) != 0) return wrap_r(e, r, "file version");
        break;
      case 0x02:
        if (seen_created++) return kl_tlv_err_dup(&c, "publications file header", e);
        if ((r = kl_tlv_get_uint(&c, &pf->created, e)) != 0) return wrap_r(e, r, "creation time");
        break;
      case 0x03:
        if (seen_uri++) return kl_tlv_err_dup(&c, "publications file header", e);
        if ((r = kl_tlv_get_str(&c, &pf->repo_uri, e)) != 0) return wrap_r(e, r, "repository URI");
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "publications file header", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_ver || !seen_created)
    return kl_err_set(e, KL_EFORMAT, "publications file header at offset %zu lacks its %s",
                      t->offset, !seen_ver ? "version (0x01)" : "creation time (0x02)");
  if (pf->version != 1 && pf->version != 2)
    return kl_err_set(e, KL_EUNSUPPORTED,
                      "publications file version %llu is not supported (1 and 2 are)",
                      (unsigned long long)pf->version);
  return 0;
}

static int cert_decode(const kl_pubfile_t *pf, const kl_tlv_t *t, kl_pubfile_cert_t *out,
                       kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_id = 0, seen_der = 0;
  kl_tlv_iter_children(&it, pf->raw, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_id++) return kl_tlv_err_dup(&c, "certificate record", e);
        out->id = c.value;
        out->id_len = c.len;
        break;
      case 0x02:
        if (seen_der++) return kl_tlv_err_dup(&c, "certificate record", e);
        out->der = c.value;
        out->der_len = c.len;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "certificate record", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_id || !seen_der)
    return kl_err_set(e, KL_EFORMAT, "certificate record at offset %zu lacks its %s", t->offset,
                      !seen_id ? "certificate id (0x01)" : "certificate (0x02)");
  if (out->id_len == 0 || out->der_len == 0)
    return kl_err_set(e, KL_EFORMAT, "certificate record at offset %zu has an empty %s",
                      t->offset, out->id_len == 0 ? "certificate id" : "certificate");
  return 0;
}

/* Order: header first, then certificate records, then publication records, signature last.
 * Unknown non-critical elements may appear anywhere before the signature. */
static int pubfile_decode(kl_pubfile_t *pf, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int r;
  size_t n_certs = 0, n_pubs = 0;
  /* Pass 1: structure and counts. */
  enum { S_START, S_HEADER, S_CERTS, S_PUBS, S_SIGNED } st = S_START;
  kl_tlv_iter_init(&it, pf->raw, pf->raw + MAGIC_LEN, pf->raw_len - MAGIC_LEN);
  while ((r = kl_tlv_next(&it, &t, e)) > 0) {
    if (st == S_SIGNED)
      return kl_err_set(e, KL_EFORMAT,
                        "element 0x%02X at offset %zu follows the signature (0x704), which must "
                        "be last", t.type, t.offset);
    switch (t.type) {
      case T_HEADER:
        if (st != S_START)
          return kl_err_set(e, KL_EFORMAT,
                            "publications file header (0x701) at offset %zu is not the first "
                            "element or appears twice", t.offset);
        st = S_HEADER;
        break;
      case T_CERT:
      case T_PUBREC:
      case T_CMS:
        if (st == S_START)
          return kl_err_set(e, KL_EFORMAT,
                            "element 0x%02X at offset %zu comes before the publications file "
                            "header (0x701)", t.type, t.offset);
        if (t.type == T_CERT && st == S_PUBS)
          return kl_err_set(e, KL_EFORMAT,
                            "certificate record (0x702) at offset %zu follows a publication "
                            "record (0x703)", t.offset);
        if (t.type == T_CERT) {
          n_certs++;
          st = S_CERTS;
        } else if (t.type == T_PUBREC) {
          n_pubs++;
          st = S_PUBS;
        } else {
          if (t.len == 0)
            return kl_err_set(e, KL_EFORMAT, "signature (0x704) at offset %zu is empty", t.offset);
          pf->cms = t.value;
          pf->cms_len = t.len;
          pf->signed_len = t.offset;
          st = S_SIGNED;
        }
        break;
      default:
        if (!kl_tlv_is_noncritical(&t)) return kl_tlv_err_unknown(&t, "publications file", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (st == S_START) return kl_err_set(e, KL_EFORMAT, "publications file has no header (0x701)");
  if (st != S_SIGNED)
    return kl_err_set(e, KL_EFORMAT, "publications file has no signature (0x704) at its end");

  if (n_certs && (pf->certs = kl_arena_alloc(&pf->arena, n_certs * sizeof *pf->certs)) == NULL)
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (n_pubs && (pf->pubs = kl_arena_alloc(&pf->arena, n_pubs * sizeof *pf->pubs)) == NULL)
    return kl_err_set(e, KL_ENOMEM, "out of memory");

  /* Pass 2: contents. */
  kl_tlv_iter_init(&it, pf->raw, pf->raw + MAGIC_LEN, pf->signed_len - MAGIC_LEN);
  while ((r = kl_tlv_next(&it, &t, e)) > 0) {
    if (t.type == T_HEADER) {
      if ((r = header_decode(pf, &t, e)) != 0) return r;
    } else if (t.type == T_CERT) {
      if ((r = cert_decode(pf, &t, &pf->certs[pf->n_certs], e)) != 0)
        return wrap_r(e, r, "certificate record %zu", pf->n_certs + 1);
      pf->n_certs++;
    } else if (t.type == T_PUBREC) {
      if ((r = kl_pub_rec_decode(&t, pf->raw, &pf->arena, &pf->pubs[pf->n_pubs], e)) != 0)
        return wrap_r(e, r, "publication record %zu", pf->n_pubs + 1);
      pf->n_pubs++;
    }
  }
  return r < 0 ? KL_EFORMAT : 0;
}

int kl_pubfile_parse(const uint8_t *p, size_t n, kl_pubfile_t **out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local; /* the shared part decoders need one to report failures */
  if (out == NULL) return kl_err_set(e, KL_EINVAL, "publications file: no output given");
  *out = NULL;
  if (p == NULL && n > 0) return kl_err_set(e, KL_EINVAL, "publications file: no input given");
  if (n > PUBFILE_MAX_SIZE)
    return kl_err_set(e, KL_ETOOBIG, "publications file is %zu bytes; at most %u are accepted", n,
                      PUBFILE_MAX_SIZE);
  if (n < MAGIC_LEN || memcmp(p, KL_PUBFILE_MAGIC, MAGIC_LEN) != 0)
    return kl_err_set(e, KL_EFORMAT,
                      "not a publications file: it does not start with \"" KL_PUBFILE_MAGIC "\"");
  kl_pubfile_t *pf = calloc(1, sizeof *pf);
  if (pf == NULL || (pf->raw = malloc(n)) == NULL) {
    free(pf);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  memcpy(pf->raw, p, n);
  pf->raw_len = n;
  int r = pubfile_decode(pf, e);
  if (r) {
    kl_pubfile_free(pf);
    return r;
  }
  *out = pf;
  return 0;
}

void kl_pubfile_free(kl_pubfile_t *pf) {
  if (pf == NULL) return;
  kl_arena_free(&pf->arena);
  free(pf->raw);
  free(pf);
}

/* ---- lookups ---- */

const kl_pub_rec_t *kl_pubfile_find_exact(const kl_pubfile_t *pf, uint64_t time) {
  if (pf == NULL) return NULL;
  for (size_t i = 0; i < pf->n_pubs; i++)
    if (pf->pubs[i].data.time == time) return &pf->pubs[i];
  return NULL;
}

const kl_pub_rec_t *kl_pubfile_find_after(const kl_pubfile_t *pf, uint64_t t) {
  const kl_pub_rec_t *best = NULL;
  if (pf == NULL) return NULL;
  /* No assumption that the file is sorted; ties go to the first in file order. */
  for (size_t i = 0; i < pf->n_pubs; i++) {
    const kl_pub_rec_t *r = &pf->pubs[i];
    if (r->data.time >= t && (best == NULL || r->data.time < best->data.time)) best = r;
  }
  return best;
}

const kl_pubfile_cert_t *kl_pubfile_find_cert(const kl_pubfile_t *pf, const uint8_t *id,
                                              size_t id_len) {
  if (pf == NULL || (id == NULL && id_len > 0)) return NULL;
  for (size_t i = 0; i < pf->n_certs; i++) {
    const kl_pubfile_cert_t *c = &pf->certs[i];
    if (c->id_len == id_len && memcmp(c->id, id, id_len) == 0) return c;
  }
  return NULL;
}

/* ---- OpenSSL helpers ---- */

/* The most recent OpenSSL error as "library: reason", or the system error (errno) behind it.
 * The queue is cleared. */
static const char *ossl_err(char *buf, size_t cap) {
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
                     ossl_err(eb, sizeof eb));
      goto done;
    }
  }
  for (size_t i = 0; i < trust->n_anchor_files; i++) {
    const char *f = trust->anchor_files[i];
    if (f == NULL || X509_STORE_load_file(store, f) != 1) {
      r = kl_err_set(e, KL_EIO, "cannot load trust anchor file %s: %s", f ? f : "(null)",
                     ossl_err(eb, sizeof eb));
      goto done;
    }
  }
  if (X509_STORE_CTX_init(ctx, store, signer, untrusted) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot set up certificate verification: %s",
                   ossl_err(eb, sizeof eb));
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

/* Checks the detached CMS signature over raw[0:signed_len] (signer certificate taken from the
 * CMS); on 0, *signer (a reference) and *certs (the CMS's certificates) for the caller to free. */
static int cms_check(const kl_pubfile_t *pf, X509 **signer_out, STACK_OF(X509) **certs_out, kl_err_t *e) {
  char eb[256];
  int r = 0;
  if (pf->cms == NULL || pf->cms_len > (size_t)KL_TLV_MAX_LEN)
    return kl_err_set(e, KL_EINVAL, "publications file object has no signature");
  ERR_clear_error();
  const unsigned char *q = pf->cms;
  CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)pf->cms_len);
  BIO *content = BIO_new_mem_buf(pf->raw, (int)pf->signed_len);
  STACK_OF(X509) *signers = NULL, *certs = NULL;
  if (content == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto done;
  }
  if (cms == NULL) {
    r = kl_err_set(e, KL_EPKI, "signature (0x704 at offset %zu) is not a CMS structure: %s",
                   pf->signed_len, ossl_err(eb, sizeof eb));
    goto done;
  }
  if (q != pf->cms + pf->cms_len) {
    r = kl_err_set(e, KL_EPKI, "signature (0x704 at offset %zu): %zu trailing bytes after the CMS",
                   pf->signed_len, (size_t)(pf->cms + pf->cms_len - q));
    goto done;
  }
  if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed || CMS_is_detached(cms) != 1) {
    r = kl_err_set(e, KL_EPKI, "signature (0x704 at offset %zu) is not a detached CMS SignedData",
                   pf->signed_len);
    goto done;
  }
  int n_si = sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms));
  if (n_si != 1) {
    r = kl_err_set(e, KL_EPKI, "signature check failed: %d signers in the CMS, expected 1", n_si);
    goto done;
  }
  if (CMS_verify(cms, NULL, NULL, content, NULL, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
    r = kl_err_set(e, KL_EPKI, "signature check failed: %s", ossl_err(eb, sizeof eb));
    goto done;
  }
  signers = CMS_get0_signers(cms);
  if (signers == NULL || sk_X509_num(signers) != 1) {
    r = kl_err_set(e, KL_EPKI, "signature check failed: the signer certificate was not found");
    goto done;
  }
  X509 *signer = sk_X509_value(signers, 0);
  if (X509_up_ref(signer) != 1 || (certs = CMS_get1_certs(cms)) == NULL) {
    if (certs == NULL) X509_free(signer);
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto done;
  }
  *signer_out = signer;
  *certs_out = certs;
done:
  sk_X509_free(signers);
  BIO_free(content);
  CMS_ContentInfo_free(cms);
  ERR_clear_error();
  return r;
}

int kl_pubfile_verify(const kl_pubfile_t *pf, const kl_pubfile_trust_t *trust, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  int r = 0;
  if (pf == NULL || trust == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file verification: no file or trust settings");
  if (trust->n_cnstr == 0 || trust->cnstr == NULL)
    return kl_err_set(e, KL_EINVAL,
                      "publications file verification: no subject constraint configured");
  for (size_t i = 0; i < trust->n_cnstr; i++)
    if (trust->cnstr[i].oid == NULL || trust->cnstr[i].value == NULL)
      return kl_err_set(e, KL_EINVAL, "subject constraint %zu has no attribute or no value", i + 1);
  if (trust->n_anchor_files > 0 && trust->anchor_files == NULL)
    return kl_err_set(e, KL_EINVAL, "%zu trust anchor files announced but none given",
                      trust->n_anchor_files);
  if (trust->at < 0)
    return kl_err_set(e, KL_EINVAL, "verification time %lld is negative", (long long)trust->at);
  X509 *signer = NULL;
  STACK_OF(X509) *certs = NULL;
  /* 1. The signature; 2. the signer's chain to the anchors at the verification time; 3. subject
   * constraints. */
  if ((r = cms_check(pf, &signer, &certs, e)) == 0 && (r = check_chain(signer, certs, trust, e)) == 0)
    r = check_cnstr(signer, trust, e);
  X509_free(signer);
  sk_X509_pop_free(certs, X509_free);
  ERR_clear_error();
  if (r) kl_err_wrap(e, "publications file");
  return r;
}

static int load_pem(const char *path, const char *what, X509 **cert, EVP_PKEY **key,
                    STACK_OF(X509) **chain, kl_err_t *e);

int kl_pubfile_verify_signer(const kl_pubfile_t *pf, const char *signer_cert_pem, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  if (pf == NULL || signer_cert_pem == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file verification: no file or certificate");
  X509 *mine = NULL, *signer = NULL;
  STACK_OF(X509) *certs = NULL;
  int r = load_pem(signer_cert_pem, "signer certificate", &mine, NULL, NULL, e);
  if (r == 0 && (r = cms_check(pf, &signer, &certs, e)) == 0 &&
      EVP_PKEY_eq(X509_get0_pubkey(signer), X509_get0_pubkey(mine)) != 1) {
    char subj[256] = "?";
    X509_NAME_oneline(X509_get_subject_name(signer), subj, sizeof subj);
    r = kl_err_set(e, KL_EPKI, "signed by %s, not with the key of %s", subj, signer_cert_pem);
  }
  X509_free(mine);
  X509_free(signer);
  sk_X509_pop_free(certs, X509_free);
  ERR_clear_error();
  if (r) kl_err_wrap(e, "publications file");
  return r;
}

/* ---- merging: publications are permanent ---- */

typedef struct tagged {
  kl_pub_data_t d;
  size_t origin; /* position in prev, then add: ties keep prev's first */
} tagged_t;

static int cmp_tagged(const void *a, const void *b) {
  const tagged_t *x = a, *y = b;
  if (x->d.time != y->d.time) return x->d.time < y->d.time ? -1 : 1;
  return x->origin < y->origin ? -1 : x->origin > y->origin;
}

static bool same_imprint(const kl_imprint_t *a, const kl_imprint_t *b) {
  return a->alg == b->alg && a->len == b->len && memcmp(a->digest, b->digest, a->len) == 0;
}

static void imprint_hex(const kl_imprint_t *h, char *buf, size_t n) {
  size_t w = (size_t)snprintf(buf, n, "%02X", h->alg);
  for (size_t i = 0; i < h->len && w + 2 < n; i++) w += (size_t)snprintf(buf + w, n - w, "%02X", h->digest[i]);
}

int kl_pubfile_merge(const kl_pubfile_t *prev, const kl_pub_data_t *add, size_t n_add, size_t max,
                     kl_pub_data_t **out, size_t *n_out, size_t *n_kept, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  size_t n_prev = prev ? prev->n_pubs : 0, total = n_prev + n_add, n = 0, kept = 0, last_origin = 0;
  *out = NULL;
  *n_out = *n_kept = 0;
  if (n_add && add == NULL) return kl_err_set(e, KL_EINVAL, "publications to merge: %zu announced, none given", n_add);
  tagged_t *t = calloc(total + 1, sizeof *t);
  kl_pub_data_t *res = calloc(total + 1, sizeof *res);
  int r = 0;
  if (t == NULL || res == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < total; i++) {
    t[i].d = i < n_prev ? prev->pubs[i].data : add[i - n_prev];
    t[i].d.raw = NULL;
    t[i].d.raw_len = 0;
    t[i].origin = i;
  }
  qsort(t, total, sizeof *t, cmp_tagged);
  for (size_t i = 0; i < total; i++) {
    if (n > 0 && t[i].d.time == res[n - 1].time) {
      if (!same_imprint(&t[i].d.hash, &res[n - 1].hash)) {
        char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
        imprint_hex(&res[n - 1].hash, h1, sizeof h1);
        imprint_hex(&t[i].d.hash, h2, sizeof h2);
        r = kl_err_set(e, KL_ESTATE, "two different publications for second %llu: %s%s and %s%s",
                       (unsigned long long)t[i].d.time, h1, last_origin < n_prev ? " (earlier file)" : " (new)", h2,
                       t[i].origin >= n_prev ? " (new)" : " (earlier file)");
        goto done;
      }
      continue;
    }
    res[n++] = t[i].d;
    last_origin = t[i].origin;
    if (t[i].origin < n_prev) kept++; /* ties sort prev first */
  }
  if (n > max) {
    r = kl_err_set(e, KL_ERANGE, "%zu publications: more than the %zu a file may hold", n, max);
    goto done;
  }
  *out = res;
  *n_out = n;
  *n_kept = kept;
  res = NULL;
done:
  free(t);
  free(res);
  return r;
}

/* ---- writing ---- */

static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1; /* encrypted keys are not supported: never prompt */
}

static int load_pem(const char *path, const char *what, X509 **cert, EVP_PKEY **key,
                    STACK_OF(X509) **chain, kl_err_t *e) {
  char eb[256];
  BIO *b = BIO_new_file(path, "r");
  if (b == NULL) return kl_err_set(e, KL_EIO, "cannot open %s %s: %s", what, path, ossl_err(eb, sizeof eb));
  int r = 0;
  if (cert) *cert = PEM_read_bio_X509(b, NULL, no_password, NULL);
  if (key) *key = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
  if ((cert && *cert == NULL) || (key && *key == NULL))
    r = kl_err_set(e, KL_EINVAL, "%s %s: %s", what, path, ossl_err(eb, sizeof eb));
  if (chain) {
    X509 *x;
    if ((*chain = sk_X509_new_null()) == NULL) r = kl_err_set(e, KL_ENOMEM, "out of memory");
    while (r == 0 && (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL)
      if (!sk_X509_push(*chain, x)) {
        X509_free(x);
        r = kl_err_set(e, KL_ENOMEM, "out of memory");
      }
    if (r == 0 && sk_X509_num(*chain) == 0)
      r = kl_err_set(e, KL_EINVAL, "%s %s holds no certificate", what, path);
    ERR_clear_error(); /* the read that ended the loop */
  }
  BIO_free(b);
  return r;
}

static int write_body(const kl_pubfile_spec_t *s, kl_buf_t *b, kl_err_t *e) {
  kl_buf_put(b, KL_PUBFILE_MAGIC, MAGIC_LEN);
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, s->version ? s->version : 2);
  kl_tlv_put_uint(b, 0x02, 0, s->created);
  if (s->repo_uri) kl_tlv_put_str(b, 0x03, 0, s->repo_uri);
  if (kl_tlv_close(b, m, T_HEADER, 0)) return kl_err_set(e, KL_ETOOBIG, "header is too large");
  for (size_t i = 0; i < s->n_certs; i++) {
    uint8_t id[4];
    uint32_t crc = kl_crc32(s->cert_ders[i], s->cert_lens[i]);
    for (int k = 0; k < 4; k++) id[k] = (uint8_t)(crc >> (24 - 8 * k));
    m = kl_tlv_open(b);
    kl_tlv_put_bytes(b, 0x01, 0, id, sizeof id);
    kl_tlv_put_bytes(b, 0x02, 0, s->cert_ders[i], s->cert_lens[i]);
    if (kl_tlv_close(b, m, T_CERT, 0))
      return kl_err_set(e, KL_ETOOBIG, "certificate %zu (%zu bytes) does not fit a record", i + 1,
                        s->cert_lens[i]);
  }
  for (size_t i = 0; i < s->n_pubs; i++) {
    m = kl_tlv_open(b);
    kl_pub_data_encode(b, 0, s->pubs[i].time, &s->pubs[i].hash);
    if (kl_tlv_close(b, m, T_PUBREC, 0)) return kl_buf_check(b, e);
  }
  return kl_buf_check(b, e);
}

static int check_spec(const kl_pubfile_spec_t *s, kl_err_t *e) {
  if (s == NULL || s->signer_cert_pem == NULL || s->signer_key_pem == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file: no signer certificate or key given");
  if (s->n_certs && (s->cert_ders == NULL || s->cert_lens == NULL))
    return kl_err_set(e, KL_EINVAL, "publications file: %zu certificates announced, none given",
                      s->n_certs);
  for (size_t i = 0; i < s->n_certs; i++)
    if (s->cert_ders[i] == NULL || s->cert_lens[i] == 0)
      return kl_err_set(e, KL_EINVAL, "publications file: certificate %zu is empty", i + 1);
  if (s->n_pubs && s->pubs == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file: %zu publications announced, none given",
                      s->n_pubs);
  for (size_t i = 0; i < s->n_pubs; i++) {
    const kl_imprint_t *h = &s->pubs[i].hash;
    if (!kl_hash_known(h->alg) || kl_hash_digest_len(h->alg) != h->len)
      return kl_err_set(e, KL_EINVAL, "publications file: publication %zu has an invalid imprint",
                        i + 1);
    if (i > 0 && s->pubs[i].time <= s->pubs[i - 1].time)
      return kl_err_set(e, KL_EINVAL,
                        "publications file: publication %zu (time %llu) is not later than the "
                        "one before it", i + 1, (unsigned long long)s->pubs[i].time);
  }
  return 0;
}

int kl_pubfile_write(const kl_pubfile_spec_t *spec, kl_buf_t *out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  char eb[256];
  int r;
  if (out == NULL) return kl_err_set(e, KL_EINVAL, "publications file: no output buffer");
  if ((r = check_spec(spec, e)) != 0) return r;
  X509 *cert = NULL;
  EVP_PKEY *key = NULL;
  STACK_OF(X509) *chain = NULL;
  CMS_ContentInfo *cms = NULL;
  BIO *data = NULL;
  unsigned char *der = NULL;
  kl_buf_t b = KL_BUF_INIT;
  ERR_clear_error();
  if ((r = load_pem(spec->signer_cert_pem, "signer certificate", &cert, NULL, NULL, e)) ||
      (r = kl_key_load(spec->signer_key_pem, "signer key", KL_KEY_ALLOW_CLEAR, &key, NULL, e)) ||
      (spec->chain_pem && (r = load_pem(spec->chain_pem, "chain file", NULL, NULL, &chain, e))))
    goto done;
  if (X509_check_private_key(cert, key) != 1) {
    r = kl_err_set(e, KL_EINVAL, "signer key %s does not match certificate %s",
                   spec->signer_key_pem, spec->signer_cert_pem);
    goto done;
  }
  if ((r = write_body(spec, &b, e)) != 0) goto done;
  if (b.len > PUBFILE_MAX_SIZE) {
    r = kl_err_set(e, KL_ETOOBIG, "publications file would be %zu bytes; at most %u are allowed",
                   b.len, PUBFILE_MAX_SIZE);
    goto done;
  }
  const unsigned flags = CMS_DETACHED | CMS_BINARY | CMS_PARTIAL;
  if ((data = BIO_new_mem_buf(b.p, (int)b.len)) == NULL ||
      (cms = CMS_sign(NULL, NULL, chain, NULL, flags)) == NULL ||
      CMS_add1_signer(cms, cert, key, EVP_sha256(), flags) == NULL ||
      CMS_final(cms, data, NULL, flags) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot make the CMS signature: %s", ossl_err(eb, sizeof eb));
    goto done;
  }
  int der_len = i2d_CMS_ContentInfo(cms, &der);
  if (der_len <= 0) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot encode the CMS signature: %s", ossl_err(eb, sizeof eb));
    goto done;
  }
  if ((size_t)der_len > KL_TLV_MAX_LEN) {
    r = kl_err_set(e, KL_ETOOBIG, "CMS signature is %d bytes; a TLV holds at most %d", der_len,
                   KL_TLV_MAX_LEN);
    goto done;
  }
  kl_tlv_put_bytes(&b, T_CMS, 0, der, (size_t)der_len);
  if ((r = kl_buf_check(&b, e)) != 0) goto done;
  kl_buf_put(out, b.p, b.len);
  r = kl_buf_check(out, e);
done:
  OPENSSL_free(der);
  BIO_free(data);
  CMS_ContentInfo_free(cms);
  sk_X509_pop_free(chain, X509_free);
  EVP_PKEY_free(key);
  X509_free(cert);
  kl_buf_free(&b);
  ERR_clear_error();
  if (r) kl_err_wrap(e, "writing publications file");
  return r;
}
