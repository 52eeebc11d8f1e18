/* The development PKI (pki.h): the publications CA with its two signing certificates, and the
 * cluster CA that issues node certificates naming keyless://ROLE/ID. OpenSSL 3 only. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ossl.h"
#include "keyless/pki.h"
#include "keyuri.h"
#include "sm2.h"

#define PATH_CAP 1024
#define DAY 86400
#define CRL_DAYS 30
#define NODE_DAYS 365
#define MAX_DAYS 36500
#define MAX_NODES 256
#define ORG_PUB "keyless DEVELOPMENT - NOT FOR PRODUCTION"
#define ORG_CLUSTER "keyless DEVELOPMENT"
#define CLUSTER_CN "keyless DEVELOPMENT cluster CA"
#define ROLES "core, aggregator, gateway, extender, admin"

static const char *const roles[] = {"core", "aggregator", "gateway", "extender", "admin"};


/* ---- names ---- */

/* Operator text shown in a message: at most 80 characters, non-printables as '?'. */
static const char *shown(const char *s, char *buf, size_t cap) {
  size_t n = 0;
  for (; *s && n + 1 < cap && n < 80; s++) buf[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
  buf[n] = 0;
  return buf;
}

static bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

static int check_role_id(const char *role, const char *id, kl_err_t *e) {
  char b1[96], b2[96];
  bool known = false;
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) known |= strcmp(role, roles[i]) == 0;
  if (!known) return kl_err_set(e, KL_EINVAL, "role '%s' is not one of " ROLES, shown(role, b1, sizeof b1));
  size_t n = strlen(id);
  if (n == 0 || n > 63)
    return kl_err_set(e, KL_EINVAL, "%s id '%s' must be 1 to 63 characters", role, shown(id, b2, sizeof b2));
  for (size_t i = 0; i < n; i++)
    if (!name_char(id[i]))
      return kl_err_set(e, KL_EINVAL, "%s id '%s': only letters, digits, '.', '_' and '-' are allowed", role,
                        shown(id, b2, sizeof b2));
  if (strcmp(role, "core") == 0) {
    bool digits = id[0] != '0' && n <= 20;
    for (size_t i = 0; i < n; i++) digits &= id[i] >= '0' && id[i] <= '9';
    errno = 0;
    if (!digits || (strtoull(id, NULL, 10) == UINT64_MAX && errno == ERANGE))
      return kl_err_set(e, KL_EINVAL, "core id '%s' must be the decimal Raft member id (1, 2, ...)", id);
  }
  return 0;
}

/* A file base name under DIR/nodes: no '/', no leading '.'. */
static int check_name(const char *name, kl_err_t *e) {
  char b[96];
  size_t n = strlen(name);
  bool ok = n > 0 && n <= 100 && name[0] != '.';
  for (size_t i = 0; ok && i < n; i++) ok = name_char(name[i]);
  return ok ? 0
            : kl_err_set(e, KL_EINVAL, "name '%s': want 1 to 100 letters, digits, '.', '_' or '-', not starting with '.'",
                         shown(name, b, sizeof b));
}

static int check_dns(const char *s, kl_err_t *e) {
  char b[96];
  size_t n = strlen(s), label = 0;
  bool ok = n > 0 && n <= 253 && s[0] != '.' && s[n - 1] != '.';
  for (size_t i = 0; ok && i <= n; i++) {
    if (s[i] == '.' || s[i] == 0) {
      ok = label > 0 && label <= 63 && s[i - 1] != '-' && s[i - label] != '-';
      label = 0;
    } else {
      ok = name_char(s[i]) && s[i] != '.' && s[i] != '_';
      label++;
    }
  }
  return ok ? 0 : kl_err_set(e, KL_EINVAL, "DNS name '%s' is not a host name (letters, digits, '-', dots)", shown(s, b, sizeof b));
}

/* ---- files ---- */

static int mkpath(char *out, kl_err_t *e, const char *fmt, ...) KL_PRINTF(3, 4);
static int mkpath(char *out, kl_err_t *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, PATH_CAP, fmt, ap);
  va_end(ap);
  if (n < 0 || n >= PATH_CAP) return kl_err_set(e, KL_EINVAL, "path too long: %.100s...", out);
  return 0;
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static int make_dir(const char *path, mode_t mode, kl_err_t *e) {
  struct stat st;
  if (mkdir(path, mode) == 0) return chmod(path, mode) == 0 ? 0 : kl_err_set(e, KL_EIO, "chmod %s: %s", path, strerror(errno));
  if (errno != EEXIST) return kl_err_set(e, KL_EIO, "cannot create %s: %s", path, strerror(errno));
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return kl_err_set(e, KL_ESTATE, "%s exists and is not a directory", path);
  return 0;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Writes a new file (O_EXCL: KL_ESTATE if it exists) or, with replace, path.tmp renamed over
 * path. fsynced either way; nothing left behind on failure. */
static int write_file(const char *path, const void *p, size_t n, mode_t mode, bool replace, kl_err_t *e) {
  char tmp[PATH_CAP + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  const char *target = replace ? tmp : path;
  int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | (replace ? O_TRUNC : O_EXCL), mode);
  if (fd < 0 && errno == EEXIST) return kl_err_set(e, KL_ESTATE, "%s already exists; not replacing it", path);
  if (fd < 0) return kl_err_set(e, KL_EIO, "cannot create %s: %s", target, strerror(errno));
  bool ok = write_all(fd, p, n) == 0 && fsync(fd) == 0;
  int err = errno;
  ok &= close(fd) == 0;
  if (ok && replace && rename(tmp, path) != 0) ok = false, err = errno;
  if (!ok) {
    unlink(target);
    return kl_err_set(e, KL_EIO, "cannot write %s: %s", path, strerror(err));
  }
  return 0;
}

enum { PEM_CERT, PEM_KEY, PEM_CRL, PEM_KEY_WRAPPED };

/* The passphrase signing keys are wrapped under (kl_devpki_create_wrapped), NULL: clear. */
static _Thread_local const char *wrap_pass;

static int write_pem(const char *path, int kind, void *obj, kl_err_t *e) {
  BIO *b = BIO_new(BIO_s_mem());
  bool ok = b != NULL;
  if (ok && kind == PEM_CERT) ok = PEM_write_bio_X509(b, obj) == 1;
  if (ok && kind == PEM_KEY) ok = PEM_write_bio_PrivateKey(b, obj, NULL, NULL, 0, NULL, NULL) == 1;
  if (ok && kind == PEM_KEY_WRAPPED) /* encrypted PKCS#8: AES-256-CBC under a PBKDF2 key */
    ok = PEM_write_bio_PKCS8PrivateKey(b, obj, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)wrap_pass) == 1;
  if (ok && kind == PEM_CRL) ok = PEM_write_bio_X509_CRL(b, obj) == 1;
  if (!ok) {
    BIO_free(b);
    return kl_err_set(e, KL_ECRYPTO, "cannot encode %s: %s", path, kl__ossl_msg());
  }
  char *p;
  long n = BIO_get_mem_data(b, &p);
  bool key = kind == PEM_KEY || kind == PEM_KEY_WRAPPED;
  int r = write_file(path, p, (size_t)n, key ? 0600 : 0644, kind == PEM_CRL, e);
  if (key) OPENSSL_cleanse(p, (size_t)n);
  BIO_free(b);
  return r;
}

/* The key first: a certificate is never on disk without its key. */
static int write_pair(const char *crt, const char *key, X509 *x, EVP_PKEY *k, kl_err_t *e) {
  int r = write_pem(key, wrap_pass ? PEM_KEY_WRAPPED : PEM_KEY, k, e);
  if (r == 0 && (r = write_pem(crt, PEM_CERT, x, e)) != 0) unlink(key);
  return r;
}

static int read_pem(const char *path, const char *what, X509 **cert, EVP_PKEY **key, kl_err_t *e) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return kl_err_set(e, errno == ENOENT ? KL_ENOTFOUND : KL_EIO, "cannot open %s %s: %s", what, path, strerror(errno));
  if (cert) *cert = PEM_read_X509(f, NULL, NULL, NULL);
  if (key) *key = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
  fclose(f);
  if ((cert && *cert == NULL) || (key && *key == NULL))
    return kl_err_set(e, KL_EFORMAT, "%s %s: not a PEM %s: %s", what, path, cert ? "certificate" : "private key", kl__ossl_msg());
  return 0;
}

/* ---- certificates ---- */

typedef struct spec {
  EVP_PKEY *key;
  const char *org, *cn, *email;
  X509 *issuer; /* NULL: self-signed */
  EVP_PKEY *issuer_key;
  int64_t not_before, not_after;
  uint64_t serial;
  const char *bc, *ku, *eku; /* extension values; eku may be NULL */
  GENERAL_NAMES *san;        /* may be NULL */
} spec_t;

static bool add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
  bool ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

static X509 *make_cert(const spec_t *s) {
  X509 *x = X509_new();
  if (x == NULL) return NULL;
  X509_NAME *n = X509_get_subject_name(x);
  bool ok = X509_set_version(x, X509_VERSION_3) == 1 && ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), s->serial) == 1 &&
            ASN1_TIME_set(X509_getm_notBefore(x), (time_t)s->not_before) != NULL &&
            ASN1_TIME_set(X509_getm_notAfter(x), (time_t)s->not_after) != NULL && X509_set_pubkey(x, s->key) == 1 &&
            X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)s->org, -1, -1, 0) == 1 &&
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)s->cn, -1, -1, 0) == 1;
  if (ok && s->email)
    ok = X509_NAME_add_entry_by_txt(n, "emailAddress", MBSTRING_UTF8, (const unsigned char *)s->email, -1, -1, 0) == 1;
  ok = ok && X509_set_issuer_name(x, s->issuer ? X509_get_subject_name(s->issuer) : n) == 1;
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, s->issuer ? s->issuer : x, x, NULL, NULL, 0);
  ok = ok && add_ext(x, &v3, NID_basic_constraints, s->bc) && add_ext(x, &v3, NID_key_usage, s->ku) &&
       add_ext(x, &v3, NID_subject_key_identifier, "hash") && add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
  if (ok && s->eku) ok = add_ext(x, &v3, NID_ext_key_usage, s->eku);
  if (ok && s->san) ok = X509_add1_ext_i2d(x, NID_subject_alt_name, s->san, 0, X509V3_ADD_DEFAULT) == 1;
  ok = ok && kl__x509_sign(x, s->issuer_key) > 0; /* SM2-with-SM3 for an SM2 issuer, else SHA-256 */
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static bool san_push(GENERAL_NAMES *g, int type, const char *v) {
  GENERAL_NAME *gn = GENERAL_NAME_new();
  if (gn == NULL) return false;
  if (type == GEN_IPADD) {
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(v);
    if (ip == NULL) goto fail;
    GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
  } else {
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (s == NULL || ASN1_STRING_set(s, v, (int)strlen(v)) != 1) {
      ASN1_IA5STRING_free(s);
      goto fail;
    }
    GENERAL_NAME_set0_value(gn, type, s);
  }
  if (sk_GENERAL_NAME_push(g, gn) > 0) return true;
fail:
  GENERAL_NAME_free(gn);
  return false;
}

/* The subjectAltName of a node certificate: the one keyless:// URI, loopback names for node
 * roles, the extra names. Checks the extra names first (KL_EINVAL naming the bad one). */
static int node_san(const char *role, const char *id, const kl_devpki_issue_opts_t *o, GENERAL_NAMES **out, kl_err_t *e) {
  char uri[128], b[96];
  int r;
  for (size_t i = 0; i < o->n_dns; i++)
    if ((r = check_dns(o->dns[i], e))) return r;
  for (size_t i = 0; i < o->n_ips; i++) {
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(o->ips[i]);
    if (ip == NULL) return kl_err_set(e, KL_EINVAL, "'%s' is not an IPv4 or IPv6 address", shown(o->ips[i], b, sizeof b));
    ASN1_OCTET_STRING_free(ip);
  }
  GENERAL_NAMES *g = GENERAL_NAMES_new();
  snprintf(uri, sizeof uri, "keyless://%s/%s", role, id);
  bool ok = g != NULL && san_push(g, GEN_URI, uri);
  if (ok && strcmp(role, "admin") != 0)
    ok = san_push(g, GEN_IPADD, "127.0.0.1") && san_push(g, GEN_IPADD, "::1") && san_push(g, GEN_DNS, "localhost");
  for (size_t i = 0; ok && i < o->n_dns; i++) ok = san_push(g, GEN_DNS, o->dns[i]);
  for (size_t i = 0; ok && i < o->n_ips; i++) ok = san_push(g, GEN_IPADD, o->ips[i]);
  if (!ok) {
    GENERAL_NAMES_free(g);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  *out = g;
  return 0;
}

static int cert_serial_hex(const X509 *x, char *out, size_t cap) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  if (hex) snprintf(out, cap, "%s", hex);
  OPENSSL_free(hex);
  BN_free(bn);
  return hex ? 0 : -1;
}

/* ---- the cluster CA on disk ---- */

typedef struct ca {
  X509 *cert;
  EVP_PKEY *key;
  int lock_fd; /* DIR/offline/serial, flock'ed; -1 in kl_devpki_create */
} ca_t;

static void ca_close(ca_t *ca) {
  X509_free(ca->cert);
  EVP_PKEY_free(ca->key);
  if (ca->lock_fd >= 0) close(ca->lock_fd); /* releases the lock */
}

static int ca_open(const char *dir, ca_t *ca, kl_err_t *e) {
  char path[PATH_CAP];
  int r;
  memset(ca, 0, sizeof *ca);
  ca->lock_fd = -1;
  if ((r = mkpath(path, e, "%s/offline/serial", dir))) return r;
  if ((ca->lock_fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
    if (errno == ENOENT)
      return kl_err_set(e, KL_ENOTFOUND, "%s not found: %s has no cluster CA (a PKI made before it? make a new one with keyless devpki -o NEWDIR)",
                        path, dir);
    return kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  }
  while ((r = flock(ca->lock_fd, LOCK_EX)) != 0 && errno == EINTR) {
  }
  if (r != 0) return kl_err_set(e, KL_EIO, "cannot lock %s: %s", path, strerror(errno));
  if ((r = mkpath(path, e, "%s/cluster-ca.crt", dir)) || (r = read_pem(path, "cluster CA certificate", &ca->cert, NULL, e)))
    return r;
  if ((r = mkpath(path, e, "%s/offline/cluster-ca.key", dir)) || (r = read_pem(path, "cluster CA key", NULL, &ca->key, e)))
    return r;
  if (X509_check_private_key(ca->cert, ca->key) != 1)
    return kl_err_set(e, KL_EPKI, "%s does not belong to %s/cluster-ca.crt", path, dir);
  return 0;
}

/* Takes the next serial from DIR/offline/serial (locked) and stores the one after it. */
static int serial_take(const char *dir, ca_t *ca, uint64_t *out, kl_err_t *e) {
  char buf[64], *end;
  ssize_t n = pread(ca->lock_fd, buf, sizeof buf - 1, 0);
  if (n < 0) return kl_err_set(e, KL_EIO, "cannot read %s/offline/serial: %s", dir, strerror(errno));
  buf[n] = 0;
  errno = 0;
  uint64_t s = strtoull(buf, &end, 16);
  if (n == 0 || end == buf || (*end != '\n' && *end != 0) || errno != 0 || s == 0 || s == UINT64_MAX)
    return kl_err_set(e, KL_EFORMAT, "%s/offline/serial: want one hex serial number", dir);
  int k = snprintf(buf, sizeof buf, "%02" PRIX64 "\n", s + 1);
  if (ftruncate(ca->lock_fd, 0) != 0 || pwrite(ca->lock_fd, buf, (size_t)k, 0) != k || fsync(ca->lock_fd) != 0)
    return kl_err_set(e, KL_EIO, "cannot update %s/offline/serial: %s", dir, strerror(errno));
  *out = s;
  return 0;
}

typedef struct revoked {
  BIGNUM *serial;
  int64_t when;
} revoked_t;

static void revoked_free(revoked_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) BN_free(v[i].serial);
  free(v);
}

/* DIR/offline/revoked: "HEX [UNIXTIME]" lines; blank lines and # comments are skipped. */
static int revoked_read(const char *dir, revoked_t **out, size_t *count, kl_err_t *e) {
  char path[PATH_CAP], line[256];
  int r = 0, ln = 0;
  size_t n = 0, cap = 0;
  revoked_t *v = NULL;
  if ((r = mkpath(path, e, "%s/offline/revoked", dir))) return r;
  FILE *f = fopen(path, "r");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  while (fgets(line, sizeof line, f)) {
    char hex[80];
    long long when = 0;
    ln++;
    int k = sscanf(line, "%79s %lld", hex, &when);
    if (k <= 0 || hex[0] == '#') continue;
    BIGNUM *bn = NULL;
    if (hex[0] == '-' || (size_t)BN_hex2bn(&bn, hex) != strlen(hex) || when < 0) {
      BN_free(bn);
      r = kl_err_set(e, KL_EFORMAT, "%s line %d: want a hex serial and a unix time", path, ln);
      break;
    }
    if (n == cap) {
      revoked_t *nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
      if (nv == NULL) {
        BN_free(bn);
        r = kl_err_set(e, KL_ENOMEM, "out of memory");
        break;
      }
      v = nv;
    }
    v[n].serial = bn;
    v[n++].when = when;
  }
  fclose(f);
  if (r) {
    revoked_free(v, n);
    return r;
  }
  *out = v;
  *count = n;
  return 0;
}

/* Rewrites DIR/crl.pem: every revoked serial, lastUpdate now, nextUpdate +30 days. */
static int write_crl(const char *dir, const ca_t *ca, kl_err_t *e) {
  char path[PATH_CAP];
  revoked_t *v = NULL;
  size_t n = 0;
  int r;
  if ((r = mkpath(path, e, "%s/crl.pem", dir)) || (r = revoked_read(dir, &v, &n, e))) return r;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  X509_CRL *crl = X509_CRL_new();
  ASN1_TIME *last = ASN1_TIME_set(NULL, tv.tv_sec), *next = ASN1_TIME_set(NULL, tv.tv_sec + CRL_DAYS * DAY);
  ASN1_INTEGER *num = ASN1_INTEGER_new();
  bool ok = crl && last && next && num && X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1 &&
            X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) == 1 && X509_CRL_set1_lastUpdate(crl, last) == 1 &&
            X509_CRL_set1_nextUpdate(crl, next) == 1;
  for (size_t i = 0; ok && i < n; i++) {
    X509_REVOKED *rv = X509_REVOKED_new();
    ASN1_INTEGER *sn = BN_to_ASN1_INTEGER(v[i].serial, NULL);
    ASN1_TIME *when = ASN1_TIME_set(NULL, (time_t)v[i].when);
    ok = rv && sn && when && X509_REVOKED_set_serialNumber(rv, sn) == 1 && X509_REVOKED_set_revocationDate(rv, when) == 1 &&
         X509_CRL_add0_revoked(crl, rv) == 1;
    if (!ok) X509_REVOKED_free(rv);
    ASN1_INTEGER_free(sn);
    ASN1_TIME_free(when);
  }
  /* CRL numbers only grow: microseconds since 1970. */
  ok = ok && X509_CRL_sort(crl) == 1 &&
       ASN1_INTEGER_set_uint64(num, (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec) == 1 &&
       X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_DEFAULT) == 1;
  if (ok) {
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca->cert, NULL, NULL, crl, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
    ok = ext != NULL && X509_CRL_add_ext(crl, ext, -1) == 1 && X509_CRL_sign(crl, ca->key, EVP_sha256()) > 0;
    X509_EXTENSION_free(ext);
  }
  r = ok ? write_pem(path, PEM_CRL, crl, e) : kl_err_set(e, KL_ECRYPTO, "cannot make the CRL %s: %s", path, kl__ossl_msg());
  ASN1_INTEGER_free(num);
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  X509_CRL_free(crl);
  revoked_free(v, n);
  return r;
}

/* ---- create ---- */

/* The passphrase file: read when it exists (not readable by others), else made (0600) with
 * 32 random bytes in hex. */
static int wrap_passphrase(const char *pass_file, char *pass, size_t cap, bool *made, kl_err_t *e) {
  struct stat st;
  if (stat(pass_file, &st) == 0) return kl_key_secret_read(pass_file, pass, cap, e) ? kl_err_wrap(e, "devpki") : 0;
  *made = true;
  uint8_t rnd[32];
  char hex[2 * sizeof rnd + 2];
  if (RAND_bytes(rnd, sizeof rnd) != 1) return kl_err_set(e, KL_ECRYPTO, "no random bytes: %s", kl__ossl_msg());
  for (size_t i = 0; i < sizeof rnd; i++) snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
  hex[2 * sizeof rnd] = '\n';
  int r = write_file(pass_file, hex, 2 * sizeof rnd + 1, 0600, false, e);
  if (r == 0) snprintf(pass, cap, "%.*s", (int)(2 * sizeof rnd), hex);
  OPENSSL_cleanse(rnd, sizeof rnd);
  OPENSSL_cleanse(hex, sizeof hex);
  return r;
}

static int create(const char *dir, const char *email, int days, bool sm2, kl_err_t *e);

int kl_devpki_create_wrapped(const char *dir, const char *email, int days, const char *pass_file, kl_err_t *e) {
  return kl_devpki_create_profile(dir, email, days, pass_file, NULL, e);
}

int kl_devpki_create_profile(const char *dir, const char *email, int days, const char *pass_file, const char *profile,
                             kl_err_t *e) {
  char pass[1024], b[96];
  int r;
  bool sm2 = profile != NULL && strcmp(profile, "sm2") == 0;
  if (profile != NULL && !sm2 && strcmp(profile, "default") != 0)
    return kl_err_set(e, KL_EINVAL, "devpki: profile '%s' is not one of default, sm2", shown(profile, b, sizeof b));
  if (pass_file == NULL) return create(dir, email, days, sm2, e);
  if (pass_file[0] != '/') return kl_err_set(e, KL_EINVAL, "devpki: the passphrase file %s: want an absolute path", pass_file);
  bool made = false;
  if ((r = wrap_passphrase(pass_file, pass, sizeof pass, &made, e))) return r;
  wrap_pass = pass;
  r = create(dir, email, days, sm2, e);
  wrap_pass = NULL;
  if (r && made) unlink(pass_file); /* nothing half-made is left */
  OPENSSL_cleanse(pass, sizeof pass);
  return r;
}

int kl_devpki_create(const char *dir, const char *email, int days, kl_err_t *e) { return create(dir, email, days, false, e); }

/* The publications CA and the two signing keys: RSA 2048 (SHA-256), or SM2 (SM2-with-SM3) in
 * the SM2 profile. The cluster CA and node keys are EC P-256 in both (docs/profiles.md). */
static EVP_PKEY *signing_key(bool sm2) { return sm2 ? EVP_PKEY_Q_keygen(NULL, NULL, "SM2") : EVP_RSA_gen(2048); }

static int create(const char *dir, const char *email, int days, bool sm2, kl_err_t *e) {
  static const char *const files[] = {"ca.crt", "ca.key", "publications.crt", "publications.key", "calendar-auth.crt",
                                      "calendar-auth.key", "cluster-ca.crt", "crl.pem", "offline/ca.key",
                                      "offline/cluster-ca.key", "offline/serial", "offline/revoked"};
  char path[PATH_CAP], p2[PATH_CAP];
  EVP_PKEY *ca_key = NULL, *pub_key = NULL, *cal_key = NULL;
  X509 *pca = NULL, *pub = NULL, *cal = NULL;
  ca_t cl = {NULL, NULL, -1};
  int r;
  if (dir == NULL || dir[0] == 0 || email == NULL) return kl_err_set(e, KL_EINVAL, "devpki: a directory and an email address are needed");
  if (days < 1 || days > MAX_DAYS) return kl_err_set(e, KL_ERANGE, "devpki: %d days: want 1..%d", days, MAX_DAYS);
  if ((r = make_dir(dir, 0755, e))) return r;
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    if ((r = mkpath(path, e, "%s/%s", dir, files[i]))) return r;
    if (exists(path)) return kl_err_set(e, KL_ESTATE, "%s already exists; not replacing it (make a new PKI in another directory)", path);
  }
  if ((r = mkpath(path, e, "%s/offline", dir)) || (r = make_dir(path, 0700, e)) || (r = mkpath(path, e, "%s/nodes", dir)) ||
      (r = make_dir(path, 0755, e)))
    return r;
  if ((ca_key = signing_key(sm2)) == NULL || (pub_key = signing_key(sm2)) == NULL || (cal_key = signing_key(sm2)) == NULL ||
      (cl.key = EVP_EC_gen("P-256")) == NULL) {
    r = kl_err_set(e, KL_ECRYPTO, "key generation failed: %s", kl__ossl_msg());
    goto out;
  }
  int64_t now = (int64_t)time(NULL), nb = now - 3600, na = now + (int64_t)days * DAY;
  /* Serial numbers start at a random base (RFC 5280 wants them unique per issuer name; every
   * development PKI has the same names): a signer is found by issuer and serial, so two PKIs
   * counting from 1 would confuse a file signed by operators of both. */
  uint8_t rb[8];
  if (RAND_bytes(rb, sizeof rb) != 1) {
    r = kl_err_set(e, KL_ECRYPTO, "no random bytes: %s", kl__ossl_msg());
    goto out;
  }
  uint64_t base = 0;
  for (size_t i = 0; i < sizeof rb; i++) base = base << 8 | rb[i];
  base = (base & 0x3fffffffffffffffu) | 0x100000u; /* positive, never tiny, room to count up */
  char next_serial[32];
  int next_len = snprintf(next_serial, sizeof next_serial, "%llx\n", (unsigned long long)(base + 5));
  spec_t s = {ca_key, ORG_PUB, "keyless DEVELOPMENT CA", NULL, NULL, ca_key, nb, na, base + 1, "critical,CA:TRUE",
              "critical,keyCertSign,cRLSign", NULL, NULL};
  pca = make_cert(&s);
  s = (spec_t){pub_key, ORG_PUB, "keyless DEVELOPMENT publications", email, pca, ca_key, nb, na, base + 2, "CA:FALSE",
               "critical,digitalSignature", NULL, NULL};
  pub = pca ? make_cert(&s) : NULL;
  s = (spec_t){cal_key, ORG_PUB, "keyless DEVELOPMENT calendar authentication", NULL, pca, ca_key, nb, na, base + 3, "CA:FALSE",
               "critical,digitalSignature", NULL, NULL};
  cal = pca ? make_cert(&s) : NULL;
  s = (spec_t){cl.key, ORG_CLUSTER, CLUSTER_CN, NULL, NULL, cl.key, nb, na, base + 4, "critical,CA:TRUE,pathlen:0",
               "critical,keyCertSign,cRLSign", NULL, NULL};
  cl.cert = make_cert(&s);
  if (pca == NULL || pub == NULL || cal == NULL || cl.cert == NULL) {
    r = kl_err_set(e, KL_ECRYPTO, "certificate creation failed: %s", kl__ossl_msg());
    goto out;
  }
  if ((r = mkpath(path, e, "%s/offline/ca.key", dir)) || (r = write_pem(path, PEM_KEY, ca_key, e)) ||
      (r = mkpath(path, e, "%s/offline/cluster-ca.key", dir)) || (r = write_pem(path, PEM_KEY, cl.key, e)) ||
      (r = mkpath(path, e, "%s/ca.crt", dir)) || (r = write_pem(path, PEM_CERT, pca, e)) ||
      (r = mkpath(path, e, "%s/cluster-ca.crt", dir)) || (r = write_pem(path, PEM_CERT, cl.cert, e)) ||
      (r = mkpath(path, e, "%s/publications.crt", dir)) || (r = mkpath(p2, e, "%s/publications.key", dir)) ||
      (r = write_pair(path, p2, pub, pub_key, e)) || (r = mkpath(path, e, "%s/calendar-auth.crt", dir)) ||
      (r = mkpath(p2, e, "%s/calendar-auth.key", dir)) || (r = write_pair(path, p2, cal, cal_key, e)) ||
      (r = mkpath(path, e, "%s/offline/serial", dir)) || (r = write_file(path, next_serial, (size_t)next_len, 0600, false, e)) ||
      (r = mkpath(path, e, "%s/offline/revoked", dir)) || (r = write_file(path, "", 0, 0600, false, e)))
    goto out;
  r = write_crl(dir, &cl, e);
out:
  X509_free(pca);
  X509_free(pub);
  X509_free(cal);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(pub_key);
  EVP_PKEY_free(cal_key);
  ca_close(&cl);
  return r;
}

/* ---- issue, revoke ---- */

static int64_t asn1_unix(const ASN1_TIME *t) {
  struct tm tm;
  return ASN1_TIME_to_tm(t, &tm) == 1 ? (int64_t)timegm(&tm) : 0;
}

int kl_devpki_issue(const char *dir, const char *role, const char *id, const kl_devpki_issue_opts_t *o,
                    kl_devpki_issued_t *out, kl_err_t *e) {
  static const kl_devpki_issue_opts_t defaults;
  char name[160], crt[PATH_CAP], key[PATH_CAP], cn[160];
  GENERAL_NAMES *san = NULL;
  EVP_PKEY *k = NULL;
  X509 *x = NULL;
  ca_t ca = {NULL, NULL, -1};
  uint64_t serial = 0;
  int r;
  if (o == NULL) o = &defaults;
  if (dir == NULL || role == NULL || id == NULL) return kl_err_set(e, KL_EINVAL, "devpki issue: a directory, role and id are needed");
  if ((r = check_role_id(role, id, e))) return r;
  snprintf(name, sizeof name, "%s-%s", role, id);
  if (o->name) snprintf(name, sizeof name, "%.150s", o->name);
  if ((r = check_name(o->name ? o->name : name, e))) goto out;
  if (o->days < 0 || o->days > MAX_DAYS) {
    r = kl_err_set(e, KL_ERANGE, "%d days: want 1..%d", o->days, MAX_DAYS);
    goto out;
  }
  if ((r = node_san(role, id, o, &san, e)) || (r = ca_open(dir, &ca, e)) || (r = mkpath(crt, e, "%s/nodes", dir)) ||
      (r = make_dir(crt, 0755, e)) || (r = mkpath(crt, e, "%s/nodes/%s.crt", dir, name)) ||
      (r = mkpath(key, e, "%s/nodes/%s.key", dir, name)))
    goto out;
  if (exists(crt) || exists(key)) {
    r = kl_err_set(e, KL_ESTATE, "%s already exists; not replacing it", exists(crt) ? crt : key);
    goto out;
  }
  int64_t now = (int64_t)time(NULL), nb = o->not_before ? o->not_before : now - 3600, na = o->not_after;
  if (na == 0) {
    int64_t ca_end = asn1_unix(X509_get0_notAfter(ca.cert));
    na = nb + (int64_t)(o->days ? o->days : NODE_DAYS) * DAY;
    if (na > ca_end) na = ca_end;
  }
  if (na <= nb) {
    r = kl_err_set(e, KL_ERANGE, "not-after %lld is not after not-before %lld", (long long)na, (long long)nb);
    goto out;
  }
  if ((r = serial_take(dir, &ca, &serial, e))) goto out;
  if ((k = EVP_EC_gen("P-256")) == NULL) {
    r = kl_err_set(e, KL_ECRYPTO, "key generation failed: %s", kl__ossl_msg());
    goto out;
  }
  /* X.520 bounds a CN to 64 characters: a long id is cut there (the URI names it whole). */
  if (snprintf(cn, sizeof cn, "keyless %s %s", role, id) > 64) memcpy(cn + 61, "...", 4);
  bool admin = strcmp(role, "admin") == 0;
  spec_t s = {k, ORG_CLUSTER, cn, NULL, ca.cert, ca.key, nb, na, serial, "CA:FALSE", "critical,digitalSignature",
              admin ? "clientAuth" : "serverAuth,clientAuth", san};
  if ((x = make_cert(&s)) == NULL) {
    r = kl_err_set(e, KL_ECRYPTO, "certificate creation failed: %s", kl__ossl_msg());
    goto out;
  }
  if ((r = write_pair(crt, key, x, k, e)) || (r = write_crl(dir, &ca, e))) goto out;
  if (out) {
    snprintf(out->crt, sizeof out->crt, "%s", crt);
    snprintf(out->key, sizeof out->key, "%s", key);
    if (cert_serial_hex(x, out->serial, sizeof out->serial)) out->serial[0] = 0;
  }
out:
  if (r) kl_err_wrap(e, "issuing %s/%s", role, id);
  ca_close(&ca);
  GENERAL_NAMES_free(san);
  X509_free(x);
  EVP_PKEY_free(k);
  return r;
}

typedef struct node_ent {
  char role[16], id[64];
} node_ent_t;

/* Parses and checks "ROLE:ID,...". Caller frees *out. */
static int parse_nodes(const char *list, node_ent_t **out, size_t *count, kl_err_t *e) {
  char b[96];
  size_t n = 0;
  node_ent_t *v = calloc(MAX_NODES, sizeof *v);
  if (v == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  for (const char *p = list;; p++) {
    const char *end = strchr(p, ','), *colon;
    size_t len = end ? (size_t)(end - p) : strlen(p), rl;
    char ent[128];
    snprintf(ent, sizeof ent, "%.*s", (int)(len < 100 ? len : 100), p);
    int r = 0;
    if (n == MAX_NODES) r = kl_err_set(e, KL_EINVAL, "node list: more than %d entries", MAX_NODES);
    else if ((colon = memchr(p, ':', len)) == NULL || (rl = (size_t)(colon - p)) >= sizeof v[n].role ||
             len - rl - 1 >= sizeof v[n].id)
      r = kl_err_set(e, KL_EINVAL, "node list entry '%s': want ROLE:ID (e.g. core:1)", shown(ent, b, sizeof b));
    else {
      memcpy(v[n].role, p, rl);
      memcpy(v[n].id, colon + 1, len - rl - 1);
      if ((r = check_role_id(v[n].role, v[n].id, e))) kl_err_wrap(e, "node list entry '%s'", shown(ent, b, sizeof b));
      for (size_t i = 0; r == 0 && i < n; i++)
        if (strcmp(v[i].role, v[n].role) == 0 && strcmp(v[i].id, v[n].id) == 0)
          r = kl_err_set(e, KL_EINVAL, "node list: %s appears twice", ent);
    }
    if (r) {
      free(v);
      return r;
    }
    n++;
    if (end == NULL) break;
    p = end;
  }
  *out = v;
  *count = n;
  return 0;
}

int kl_devpki_check_nodes(const char *list, kl_err_t *e) {
  node_ent_t *v;
  size_t n;
  if (list == NULL) return kl_err_set(e, KL_EINVAL, "node list: none given");
  int r = parse_nodes(list, &v, &n, e);
  if (r == 0) free(v);
  return r;
}

int kl_devpki_issue_nodes(const char *dir, const char *list, int days, kl_err_t *e) {
  char path[PATH_CAP];
  node_ent_t *v;
  size_t n;
  int r;
  if (dir == NULL || list == NULL) return kl_err_set(e, KL_EINVAL, "devpki: a directory and a node list are needed");
  if ((r = parse_nodes(list, &v, &n, e))) return r;
  for (size_t i = 0; r == 0 && i < n; i++)
    for (int k = 0; r == 0 && k < 2; k++)
      if ((r = mkpath(path, e, "%s/nodes/%s-%s.%s", dir, v[i].role, v[i].id, k ? "key" : "crt")) == 0 && exists(path))
        r = kl_err_set(e, KL_ESTATE, "%s already exists; not replacing it", path);
  kl_devpki_issue_opts_t o = {0};
  o.days = days;
  for (size_t i = 0; r == 0 && i < n; i++) r = kl_devpki_issue(dir, v[i].role, v[i].id, &o, NULL, e);
  free(v);
  return r;
}

int kl_devpki_revoke(const char *dir, const char *cert_pem, bool *already, kl_err_t *e) {
  char path[PATH_CAP], hex[96], line[128];
  X509 *x = NULL;
  ca_t ca = {NULL, NULL, -1};
  revoked_t *v = NULL;
  size_t n = 0;
  bool found = false;
  int r;
  if (dir == NULL || cert_pem == NULL) return kl_err_set(e, KL_EINVAL, "devpki revoke: a directory and a certificate are needed");
  if ((r = read_pem(cert_pem, "certificate", &x, NULL, e)) || (r = ca_open(dir, &ca, e))) goto out;
  if (X509_cmp(x, ca.cert) == 0) {
    r = kl_err_set(e, KL_EINVAL, "%s is the cluster CA itself: make a new PKI instead of revoking it", cert_pem);
    goto out;
  }
  if (X509_check_issued(ca.cert, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(ca.cert)) != 1) {
    ERR_clear_error();
    r = kl_err_set(e, KL_EPKI, "%s was not issued by the cluster CA of %s", cert_pem, dir);
    goto out;
  }
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  if (bn == NULL || cert_serial_hex(x, hex, sizeof hex)) {
    BN_free(bn);
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  if ((r = revoked_read(dir, &v, &n, e)) == 0)
    for (size_t i = 0; i < n; i++) found |= BN_cmp(v[i].serial, bn) == 0;
  BN_free(bn);
  if (r) goto out;
  if (!found) {
    int k = snprintf(line, sizeof line, "%s %lld\n", hex, (long long)time(NULL));
    int fd = -1;
    if ((r = mkpath(path, e, "%s/offline/revoked", dir))) goto out;
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0 || write_all(fd, line, (size_t)k) != 0 || fsync(fd) != 0) {
      r = kl_err_set(e, KL_EIO, "cannot append to %s: %s", path, strerror(errno));
      if (fd >= 0) close(fd);
      goto out;
    }
    close(fd);
  }
  if (already) *already = found;
  r = write_crl(dir, &ca, e);
out:
  if (r) kl_err_wrap(e, "revoking %s", cert_pem);
  revoked_free(v, n);
  ca_close(&ca);
  X509_free(x);
  return r;
}

int kl_devpki_crl(const char *dir, kl_err_t *e) {
  ca_t ca;
  if (dir == NULL) return kl_err_set(e, KL_EINVAL, "devpki crl: a directory is needed");
  int r = ca_open(dir, &ca, e);
  if (r == 0) r = write_crl(dir, &ca, e);
  ca_close(&ca);
  return r;
}
