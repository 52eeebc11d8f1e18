/* Witness keys: Ed25519 or ECDSA P-256 with OpenSSL 3, the cosignature over the canonical
 * message (keyless/witness.h, docs/formats.md §8). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyless/witness.h"
#include "ossl.h"

struct kl_witkey {
  EVP_PKEY *pkey;
  int alg;
  kl_imprint_t id;
};

void kl_witkey_free(kl_witkey_t *k) {
  if (k == NULL) return;
  EVP_PKEY_free(k->pkey);
  free(k);
}

int kl_witkey_alg(const kl_witkey_t *k) { return k->alg; }
const kl_imprint_t *kl_witkey_id(const kl_witkey_t *k) { return &k->id; }

/* Takes pkey (freed on failure): Ed25519 or P-256 only; computes the id. */
static int wrap(EVP_PKEY *pkey, const char *what, kl_witkey_t **out, kl_err_t *e) {
  int alg = 0;
  if (EVP_PKEY_is_a(pkey, "ED25519")) {
    alg = KL_WITNESS_ED25519;
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = "";
    size_t gl = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof group, &gl) == 1 &&
        (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
      alg = KL_WITNESS_ECDSA_P256;
  }
  if (alg == 0) {
    char type[64];
    const char *nm = EVP_PKEY_get0_type_name(pkey);
    snprintf(type, sizeof type, "%s", nm ? nm : "an unknown type");
    EVP_PKEY_free(pkey);
    return kl_err_set(e, KL_EUNSUPPORTED, "%s: a witness key is Ed25519 or ECDSA P-256, not %s (or another curve)",
                      what, type);
  }
  unsigned char *der = NULL;
  int n = i2d_PUBKEY(pkey, &der);
  kl_witkey_t *k = calloc(1, sizeof *k);
  int r = 0;
  if (n <= 0 || k == NULL) r = kl_err_set(e, KL_ECRYPTO, "%s: cannot encode the public key: %s", what, kl__ossl_msg());
  else if (kl_hash(KL_HASH_SHA256, der, (size_t)n, &k->id, e)) r = kl_err_wrap(e, "%s", what);
  OPENSSL_free(der);
  if (r) {
    free(k);
    EVP_PKEY_free(pkey);
    return r;
  }
  k->pkey = pkey;
  k->alg = alg;
  *out = k;
  return 0;
}

int kl_witkey_generate(int alg, kl_witkey_t **out, kl_err_t *e) {
  EVP_PKEY *pkey = NULL;
  if (alg == KL_WITNESS_ED25519) pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  else if (alg == KL_WITNESS_ECDSA_P256) pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  else return kl_err_set(e, KL_EINVAL, "unknown witness key algorithm %d", alg);
  if (pkey == NULL) return kl_err_set(e, KL_ECRYPTO, "key generation failed: %s", kl__ossl_msg());
  return wrap(pkey, "new key", out, e);
}

static int open_pem(const char *path, FILE **f, kl_err_t *e) {
  if ((*f = fopen(path, "r")) == NULL)
    return kl_err_set(e, errno == ENOENT ? KL_ENOTFOUND : KL_EIO, "cannot open %s: %s", path, strerror(errno));
  return 0;
}

int kl_witkey_load_private(const char *path, kl_witkey_t **out, kl_err_t *e) {
  FILE *f;
  int r = open_pem(path, &f, e);
  if (r) return r;
  EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
  fclose(f);
  if (pkey == NULL) return kl_err_set(e, KL_EFORMAT, "%s: not a PEM private key: %s", path, kl__ossl_msg());
  return wrap(pkey, path, out, e);
}

int kl_witkey_load_public(const char *path, kl_witkey_t **out, kl_err_t *e) {
  FILE *f;
  int r = open_pem(path, &f, e);
  if (r) return r;
  EVP_PKEY *pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
  if (pkey == NULL) {
    rewind(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    if (x) {
      pkey = X509_get_pubkey(x);
      X509_free(x);
    }
  }
  if (pkey == NULL) {
    rewind(f);
    pkey = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
  }
  fclose(f);
  if (pkey == NULL)
    return kl_err_set(e, KL_EFORMAT, "%s: not a PEM public key, certificate or private key: %s", path, kl__ossl_msg());
  (void)kl__ossl_msg(); /* the failed attempts' errors */
  return wrap(pkey, path, out, e);
}

int kl_witkey_save(const kl_witkey_t *k, bool private_part, const char *path, kl_err_t *e) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL, tmp[4096];
  int r = 0;
  if (b == NULL || (private_part ? PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL)
                                 : PEM_write_bio_PUBKEY(b, k->pkey)) != 1) {
    BIO_free(b);
    return kl_err_set(e, KL_ECRYPTO, "%s: cannot encode the key: %s", path, kl__ossl_msg());
  }
  long n = BIO_get_mem_data(b, &p);
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    BIO_free(b);
    return kl_err_set(e, KL_EINVAL, "%s: path too long", path);
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, private_part ? 0600 : 0644);
  if (fd < 0) {
    r = kl_err_set(e, KL_EIO, "cannot create %s: %s", tmp, strerror(errno));
  } else {
    bool ok = write(fd, p, (size_t)n) == (ssize_t)n && fsync(fd) == 0;
    int err = errno;
    if (close(fd) != 0 && ok) ok = false, err = errno;
    if (!ok) r = kl_err_set(e, KL_EIO, "cannot write %s: %s", tmp, strerror(err));
    else if (link(tmp, path) != 0) /* never replaces an existing key */
      r = kl_err_set(e, errno == EEXIST ? KL_ESTATE : KL_EIO, "cannot create %s: %s", path, strerror(errno));
    unlink(tmp);
  }
  if (private_part) OPENSSL_cleanse(p, (size_t)n);
  BIO_free(b);
  return r;
}

static const char *md_for(int alg) { return alg == KL_WITNESS_ECDSA_P256 ? "SHA256" : NULL; }

int kl_witkey_sign(const kl_witkey_t *k, uint64_t t, const kl_imprint_t *root, kl_cosig_t *out, kl_err_t *e) {
  uint8_t msg[KL_WITNESS_MSG_MAX];
  size_t n = kl_witness_message(t, root, msg), sl = KL_WITNESS_SIG_MAX;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  memset(out, 0, sizeof *out);
  int ok = ctx && EVP_DigestSignInit_ex(ctx, NULL, md_for(k->alg), NULL, NULL, k->pkey, NULL) == 1 &&
           EVP_DigestSign(ctx, out->sig, &sl, msg, n) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return kl_err_set(e, KL_ECRYPTO, "cannot sign second %llu: %s", (unsigned long long)t, kl__ossl_msg());
  out->sig_len = (uint8_t)sl;
  out->alg = (uint8_t)k->alg;
  out->id = k->id;
  return 0;
}

int kl_witkey_verify(const kl_witkey_t *k, uint64_t t, const kl_imprint_t *root, const kl_cosig_t *c, kl_err_t *e) {
  char hx[2 * KL_IMPRINT_MAX + 1];
  if (!kl_imprint_eq(&c->id, &k->id))
    return kl_err_set(e, KL_EPKI, "cosignature of witness %s, not of this key", kl_imprint_hex(&c->id, hx));
  if (c->alg != k->alg)
    return kl_err_set(e, KL_EPKI, "witness %s: cosignature algorithm %u, the key's is %d", kl_imprint_hex(&c->id, hx),
                      c->alg, k->alg);
  uint8_t msg[KL_WITNESS_MSG_MAX];
  size_t n = kl_witness_message(t, root, msg);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestVerifyInit_ex(ctx, NULL, md_for(k->alg), NULL, NULL, k->pkey, NULL) == 1 &&
           EVP_DigestVerify(ctx, c->sig, c->sig_len, msg, n) == 1;
  EVP_MD_CTX_free(ctx);
  (void)kl__ossl_msg();
  if (!ok)
    return kl_err_set(e, KL_EPKI, "witness %s: the cosignature of second %llu is not valid", kl_imprint_hex(&c->id, hx),
                      (unsigned long long)t);
  return 0;
}
