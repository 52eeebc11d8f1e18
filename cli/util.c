/* Shared helpers of the `keyless` subcommands: files, hashing, times, publications files. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "keyless/netclient.h"

int cli_exit_for(int code) {
  switch (code) {
    case KL_OK: return KL_EXIT_OK;
    case KL_EINVAL: return KL_EXIT_USAGE;
    case KL_EFORMAT:
    case KL_ETOOBIG:
    case KL_ECRITICAL:
    case KL_EHASHALG: return KL_EXIT_FORMAT;
    case KL_EIO:
    case KL_ENOTFOUND: return KL_EXIT_IO;
    case KL_ECRYPTO:
    case KL_EPKI: return KL_EXIT_CRYPTO;
    case KL_EHMAC: return KL_EXIT_HMAC;
    case KL_EAUTH: return KL_EXIT_AUTH;
    case KL_ESERVICE: return KL_EXIT_EXTENDER;
    default: return KL_EXIT_GENERAL;
  }
}

const char *cli_file_path(const char *url) {
  return strncmp(url, "file://", 7) == 0 ? url + 7 : url;
}

int cli_read_file(const char *path, size_t max, uint8_t **buf, size_t *len, kl_err_t *e) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  uint8_t *b = malloc(max + 1);
  if (b == NULL) {
    if (f != stdin) fclose(f);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  size_t n = fread(b, 1, max + 1, f);
  int err = ferror(f);
  if (f != stdin) fclose(f);
  if (err) {
    free(b);
    return kl_err_set(e, KL_EIO, "cannot read %s", path);
  }
  if (n > max) {
    free(b);
    return kl_err_set(e, KL_ETOOBIG, "%s: input file too long (more than %zu bytes)", path, max);
  }
  *buf = b;
  *len = n;
  return 0;
}

int cli_write_file_atomic(const char *path, const uint8_t *p, size_t n, bool force, kl_err_t *e) {
  struct stat st;
  char tmp[4096];
  if (!force && stat(path, &st) == 0)
    return kl_err_set(e, KL_ESTATE, "%s already exists (use --force to replace it)", path);
  if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
    return kl_err_set(e, KL_EINVAL, "%s: path too long", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return kl_err_set(e, KL_EIO, "cannot create a temporary file next to %s: %s", path, strerror(errno));
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += (size_t)w;
  }
  int ok = done == n && fchmod(fd, 0644) == 0 && fsync(fd) == 0;
  int err = errno;
  if (close(fd) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    if (ok) err = errno;
    unlink(tmp);
    return kl_err_set(e, KL_EIO, "cannot write %s: %s", path, strerror(err));
  }
  return 0;
}

int cli_hash_file(const char *path, int alg, kl_imprint_t *out, kl_err_t *e) {
  kl_hasher_t h;
  static uint8_t chunk[1 << 16];
  int r;
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  if ((r = kl_hasher_init(&h, e)) == 0 && (r = kl_hasher_start(&h, alg, e)) == 0) {
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) kl_hasher_update(&h, chunk, n);
    if (ferror(f)) r = kl_err_set(e, KL_EIO, "cannot read %s: %s", path, strerror(errno));
    else if (kl_hasher_finish(&h, out)) r = kl_err_set(e, KL_ECRYPTO, "hashing %s failed", path);
  }
  if (h.ctx) kl_hasher_close(&h);
  if (f != stdin) fclose(f);
  return r;
}

int cli_check_extender(const char *url, const char *user, const char *key, kl_err_t *e) {
  kl_url_t u;
  if (strncmp(url, "file://", 7) == 0) return 0; /* a saved response: its key defaults to anon */
  int r = kl_url_parse(url, &u, e);
  if (r) return r;
  if ((user == NULL && u.user[0] == '\0') || (key == NULL && u.key[0] == '\0'))
    return kl_err_set(e, KL_EINVAL,
                      "extender %s: give the login and key (--ext-user U --ext-key K, or ksi+http://U:K@host/)", url);
  return 0;
}

/* An environment variable's value, NULL when unset or empty. */
static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

int cli_tls_setup(cli_tls_t *t, bool admin, kl_err_t *e) {
  char from[64] = "";
  if (t->ca == NULL && (t->ca = env("KL_CA")) != NULL) strcat(from, " $KL_CA");
  if (admin && t->cert == NULL && (t->cert = env("KL_ADMIN_CERT")) != NULL) strcat(from, " $KL_ADMIN_CERT");
  if (admin && t->key == NULL && (t->key = env("KL_ADMIN_KEY")) != NULL) strcat(from, " $KL_ADMIN_KEY");
  if (t->ca == NULL && t->cert == NULL && t->key == NULL) return KL_EXIT_OK;
  kl_net_tls_opts_t o = {t->ca, t->cert, t->key, 0};
  if (kl_net_set_tls_defaults(&o, e)) {
    if (from[0]) kl_err_wrap(e, "%s", from + 1);
    return KL_EXIT_USAGE;
  }
  return KL_EXIT_OK;
}

const char *cli_utc(uint64_t t, char *buf, size_t cap) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (t > (uint64_t)253402300799ull || gmtime_r(&tt, &tm) == NULL) {
    snprintf(buf, cap, "(time %llu out of range)", (unsigned long long)t);
    return buf;
  }
  strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool cli_parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9') return false;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool cli_trust_add_cnstr(cli_trust_t *t, char *arg) {
  char *eq = strchr(arg, '=');
  if (eq == NULL || eq == arg || t->n_cnstr >= sizeof t->cnstr / sizeof t->cnstr[0]) return false;
  *eq = '\0';
  t->cnstr[t->n_cnstr].oid = arg;
  t->cnstr[t->n_cnstr].value = eq + 1;
  t->n_cnstr++;
  return true;
}

bool cli_trust_set_signers(cli_trust_t *t, const char *arg) {
  uint64_t k;
  if (!cli_parse_u64(arg, &k) || k < 1 || k > 16) return false;
  t->signers_required = (size_t)k;
  return true;
}

int cli_load_pubfile(const char *url, const cli_trust_t *t, kl_pubfile_t **out, kl_err_t *e) {
  uint8_t *buf;
  size_t len;
  int r;
  *out = NULL;
  const char *path = url;
  if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
    kl_url_t u;
    kl_buf_t body = KL_BUF_INIT;
    int status = 0;
    if ((r = kl_url_parse(url, &u, e)) ||
        (r = kl_net_request(&u, NULL, 0, NULL, 10000, 16u << 20, &body, &status, e))) {
      kl_buf_free(&body);
      kl_err_wrap(e, "publications file %s", url);
      return KL_EXIT_NETWORK;
    }
    if (status != 200) {
      kl_buf_free(&body);
      kl_err_set(e, KL_ESERVICE, "publications file %s: HTTP status %d", url, status);
      return KL_EXIT_NETWORK;
    }
    buf = kl_buf_steal(&body, &len);
  } else {
    path = cli_file_path(url);
    if ((r = cli_read_file(path, 16u << 20, &buf, &len, e))) return cli_exit_for(r);
  }
  r = kl_pubfile_parse(buf, len, out, e);
  free(buf);
  if (r) {
    kl_err_wrap(e, "publications file %s", path);
    return cli_exit_for(r);
  }
  if (t->no_verify) return KL_EXIT_OK;
  if (t->n_cnstr == 0) {
    kl_pubfile_free(*out);
    *out = NULL;
    kl_err_set(e, KL_EINVAL, "publications file %s: give at least one --cnstr OID=VALUE (e.g. --cnstr E=publications@example.org) to check its signer, or --publications-file-no-verify", path);
    return KL_EXIT_USAGE;
  }
  kl_pubfile_trust_t tr = {t->n_anchors ? t->anchors : NULL, t->n_anchors, t->cnstr, t->n_cnstr, t->at,
                           t->signers_required};
  if ((r = kl_pubfile_verify(*out, &tr, e))) {
    kl_pubfile_free(*out);
    *out = NULL;
    kl_err_wrap(e, "publications file %s not trusted", path);
    return cli_exit_for(r);
  }
  return KL_EXIT_OK;
}

int cli_read_pem_der(const char *path, uint8_t **der, size_t *len, kl_err_t *e) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (x == NULL) return kl_err_set(e, KL_EFORMAT, "%s is not a PEM certificate", path);
  unsigned char *p = NULL;
  int n = i2d_X509(x, &p);
  X509_free(x);
  if (n <= 0) return kl_err_set(e, KL_ECRYPTO, "%s: cannot encode the certificate", path);
  *der = malloc((size_t)n);
  if (*der == NULL) {
    OPENSSL_free(p);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  memcpy(*der, p, (size_t)n);
  *len = (size_t)n;
  OPENSSL_free(p);
  return 0;
}

const char *cli_printable(const char *s, char *buf, size_t cap) {
  size_t n = 0;
  if (cap == 0) return buf;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && n + 5 < cap; p++) {
    if (*p < 0x20 || *p == 0x7F) n += (size_t)snprintf(buf + n, cap - n, "\\x%02X", *p);
    else buf[n++] = (char)*p;
  }
  buf[n] = '\0';
  return buf;
}
