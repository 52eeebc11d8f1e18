/* Private signing keys named by URI: PKCS#11 tokens (through libp11's OpenSSL engine) and PEM
 * files, clear or wrapped (encrypted PKCS#8). keyuri.h has the syntax; docs/keys.md the why. */
#define OPENSSL_SUPPRESS_DEPRECATED 1 /* the ENGINE API: Debian 12's only packaged PKCS#11 path */
#include "keyuri.h"

#include <errno.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ossl.h"

#define MAX_KEY_FILE (1u << 20)

static int copy(char *dst, size_t cap, const char *src, size_t n, const char *what, kl_err_t *e) {
  if (n >= cap) return kl_err_set(e, KL_EINVAL, "key URI: %s is too long (at most %zu bytes)", what, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
  return 0;
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes [s, s+n) into dst (RFC 3986). */
static int pct_decode(char *dst, size_t cap, const char *s, size_t n, const char *what, kl_err_t *e) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      int h = -1, l = -1;
      if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0) return kl_err_set(e, KL_EINVAL, "key URI: %s: a '%%' not followed by two hex digits", what);
      c = h * 16 + l;
      i += 2;
    }
    if (c == 0) return kl_err_set(e, KL_EINVAL, "key URI: %s holds a NUL byte", what);
    if (o + 1 >= cap) return kl_err_set(e, KL_EINVAL, "key URI: %s is too long (at most %zu bytes)", what, cap - 1);
    dst[o++] = (char)c;
  }
  dst[o] = '\0';
  return 0;
}

static int parse_pkcs11(const char *uri, kl_keyuri_t *k, kl_err_t *e) {
  const char *p = uri + 7, *q = strchr(p, '?');
  size_t plen = q ? (size_t)(q - p) : strlen(p);
  bool typed = false;
  k->kind = KL_KEYURI_PKCS11;
  for (const char *a = p; a < p + plen;) {
    const char *end = memchr(a, ';', (size_t)(p + plen - a));
    if (end == NULL) end = p + plen;
    const char *eq = memchr(a, '=', (size_t)(end - a));
    if (eq == NULL) return kl_err_set(e, KL_EINVAL, "key URI %s: path attribute '%.*s' has no '='", uri, (int)(end - a), a);
    size_t nl = (size_t)(eq - a);
    const char *v = eq + 1;
    size_t vl = (size_t)(end - v);
    int r = 0;
    if (nl == 5 && memcmp(a, "token", 5) == 0) r = pct_decode(k->token, sizeof k->token, v, vl, "token", e);
    else if (nl == 6 && memcmp(a, "object", 6) == 0) r = pct_decode(k->object, sizeof k->object, v, vl, "object", e);
    else if (nl == 2 && memcmp(a, "id", 2) == 0) r = copy(k->id, sizeof k->id, v, vl, "id", e); /* kept encoded: may hold %00 */
    else if (nl == 4 && memcmp(a, "type", 4) == 0) {
      if (vl != 7 || memcmp(v, "private", 7) != 0)
        return kl_err_set(e, KL_EINVAL, "key URI %s: type=%.*s: a signing key is type=private", uri, (int)vl, v);
      typed = true;
    } else if (!((nl == 12 && memcmp(a, "manufacturer", 12) == 0) || (nl == 6 && memcmp(a, "serial", 6) == 0) ||
                 (nl == 5 && memcmp(a, "model", 5) == 0)))
      return kl_err_set(e, KL_EINVAL, "key URI %s: unknown path attribute '%.*s' (known: token, object, id, type, "
                        "manufacturer, serial, model)", uri, (int)nl, a);
    if (r) return r;
    a = end < p + plen ? end + 1 : end;
  }
  if (k->token[0] == '\0' && k->object[0] == '\0' && k->id[0] == '\0')
    return kl_err_set(e, KL_EINVAL, "key URI %s names no key: give token= and object= (or id=)", uri);
  for (const char *a = q ? q + 1 : NULL; a && *a;) {
    const char *end = strchr(a, '&');
    if (end == NULL) end = a + strlen(a);
    const char *eq = memchr(a, '=', (size_t)(end - a));
    if (eq == NULL) return kl_err_set(e, KL_EINVAL, "key URI %s: query attribute '%.*s' has no '='", uri, (int)(end - a), a);
    size_t nl = (size_t)(eq - a), vl = (size_t)(end - eq - 1);
    int r;
    if (nl == 10 && memcmp(a, "pin-source", 10) == 0) r = pct_decode(k->secret, sizeof k->secret, eq + 1, vl, "pin-source", e);
    else if (nl == 11 && memcmp(a, "module-path", 11) == 0) r = pct_decode(k->module, sizeof k->module, eq + 1, vl, "module-path", e);
    else if (nl == 9 && memcmp(a, "pin-value", 9) == 0)
      return kl_err_set(e, KL_EINVAL, "key URI: pin-value is refused: a PIN never sits in a configuration or on a command "
                        "line; use pin-source=file:PATH (or $KEYLESS_PKCS11_PIN)");
    else
      return kl_err_set(e, KL_EINVAL, "key URI %s: unknown query attribute '%.*s' (known: pin-source, module-path)", uri,
                        (int)nl, a);
    if (r) return r;
    a = *end ? end + 1 : end;
  }
  int n = snprintf(k->engine_uri, sizeof k->engine_uri, "pkcs11:%.*s%s", (int)plen, p, typed ? "" : ";type=private");
  if (n < 0 || (size_t)n >= sizeof k->engine_uri) return kl_err_set(e, KL_EINVAL, "key URI %s is too long", uri);
  return 0;
}

int kl_keyuri_parse(const char *uri, kl_keyuri_t *k, kl_err_t *e) {
  memset(k, 0, sizeof *k);
  if (uri == NULL || uri[0] == '\0') return kl_err_set(e, KL_EINVAL, "key URI: empty");
  if (strncmp(uri, "pkcs11:", 7) == 0) return parse_pkcs11(uri, k, e);
  k->kind = KL_KEYURI_FILE;
  if (strncmp(uri, "file:", 5) != 0) return copy(k->path, sizeof k->path, uri, strlen(uri), "the path", e);
  const char *p = uri + 5, *q = strchr(p, '?');
  if (strncmp(p, "//", 2) == 0) { /* file:///PATH or file://localhost/PATH */
    p += 2;
    if (strncmp(p, "localhost/", 10) == 0) p += 9;
    if (*p != '/') return kl_err_set(e, KL_EINVAL, "key URI %s: only local files (file:///PATH or file:PATH)", uri);
  }
  size_t n = q ? (size_t)(q - p) : strlen(p);
  if (n == 0) return kl_err_set(e, KL_EINVAL, "key URI %s: no path", uri);
  int r = pct_decode(k->path, sizeof k->path, p, n, "the path", e);
  if (r || q == NULL) return r;
  if (strncmp(q + 1, "passphrase-source=", 18) != 0 || strchr(q + 1, '&') != NULL)
    return kl_err_set(e, KL_EINVAL, "key URI %s: the only query attribute of a file key is passphrase-source=SRC", uri);
  if ((r = pct_decode(k->secret, sizeof k->secret, q + 19, strlen(q + 19), "passphrase-source", e))) return r;
  if (k->secret[0] == '\0') return kl_err_set(e, KL_EINVAL, "key URI %s: empty passphrase-source", uri);
  return 0;
}

static int read_file(const char *path, const char *what, size_t max, bool private, char *buf, size_t *len, kl_err_t *e) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return kl_err_set(e, errno == ENOENT ? KL_ENOTFOUND : KL_EIO, "cannot open %s %s: %s", what, path, strerror(errno));
  struct stat st;
  if (private && fstat(fileno(f), &st) == 0 && (st.st_mode & 0007) != 0) {
    fclose(f);
    return kl_err_set(e, KL_EPKI, "%s %s may be read by every user (mode %03o): chmod o-rwx it", what, path,
                      (unsigned)(st.st_mode & 0777));
  }
  size_t n = fread(buf, 1, max, f);
  bool more = n == max && fgetc(f) != EOF, err = ferror(f) != 0;
  fclose(f);
  if (err) return kl_err_set(e, KL_EIO, "cannot read %s %s", what, path);
  if (more) return kl_err_set(e, KL_ETOOBIG, "%s %s is larger than %zu bytes", what, path, max);
  *len = n;
  return 0;
}

int kl_key_secret_read(const char *src, char *buf, size_t cap, kl_err_t *e) {
  size_t n = 0;
  int r = 0;
  if (cap < 2) return kl_err_set(e, KL_EINVAL, "secret buffer too small");
  if (strncmp(src, "env:", 4) == 0) {
    const char *v = getenv(src + 4);
    if (src[4] == '\0' || v == NULL) return kl_err_set(e, KL_ENOTFOUND, "secret source %s: the variable is not set", src);
    n = strlen(v);
    if (n >= cap) return kl_err_set(e, KL_ETOOBIG, "secret source %s: longer than %zu bytes", src, cap - 1);
    memcpy(buf, v, n);
  } else if (strncmp(src, "credential:", 11) == 0) {
    const char *dir = getenv("CREDENTIALS_DIRECTORY"), *name = src + 11;
    char path[2048];
    if (name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, "..") == 0)
      return kl_err_set(e, KL_EINVAL, "secret source %s: a credential name has no '/'", src);
    if (dir == NULL || dir[0] == '\0')
      return kl_err_set(e, KL_ENOTFOUND, "secret source %s: $CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)", src);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    r = read_file(path, "credential", cap - 1, true, buf, &n, e);
  } else if (strncmp(src, "file:", 5) == 0 || src[0] == '/') {
    const char *path = src[0] == '/' ? src : src + 5;
    if (strncmp(path, "//", 2) == 0) path += 2; /* file:///PATH */
    r = read_file(path, "secret file", cap - 1, true, buf, &n, e);
  } else {
    return kl_err_set(e, KL_EINVAL, "secret source '%s': want file:PATH, env:NAME or credential:NAME", src);
  }
  if (r) return r;
  if (n > 0 && buf[n - 1] == '\n') n--;
  if (n > 0 && buf[n - 1] == '\r') n--;
  buf[n] = '\0';
  if (n == 0 || memchr(buf, '\0', n) != NULL) {
    OPENSSL_cleanse(buf, cap);
    return kl_err_set(e, KL_EINVAL, "secret source %s: empty or holds a NUL byte", src);
  }
  return 0;
}

/* ---- PEM files ---- */

typedef struct {
  const char *src;
  bool asked, read_ok;
  kl_err_t err;
} pass_ctx_t;

static int pass_cb(char *buf, int size, int rwflag, void *u) {
  pass_ctx_t *c = u;
  char secret[1024];
  (void)rwflag;
  c->asked = true;
  if (c->src == NULL || c->src[0] == '\0') return -1;
  if (kl_key_secret_read(c->src, secret, sizeof secret, &c->err)) return -1;
  size_t n = strlen(secret);
  if (n > (size_t)size) n = (size_t)size;
  memcpy(buf, secret, n);
  OPENSSL_cleanse(secret, sizeof secret);
  c->read_ok = true;
  return (int)n;
}

static int load_file(const kl_keyuri_t *k, const char *what, unsigned flags, EVP_PKEY **out, bool *wrapped, kl_err_t *e) {
  char *pem = malloc(MAX_KEY_FILE);
  size_t n = 0;
  int r;
  if (pem == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if ((r = read_file(k->path, what, MAX_KEY_FILE, false, pem, &n, e))) {
    free(pem);
    return r;
  }
  pass_ctx_t pc = {k->secret, false, false, {0}};
  BIO *b = BIO_new_mem_buf(pem, (int)n);
  ERR_clear_error();
  EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, pass_cb, &pc) : NULL;
  BIO_free(b);
  OPENSSL_cleanse(pem, n);
  free(pem);
  if (key == NULL) {
    if (pc.asked && (k->secret[0] == '\0'))
      r = kl_err_set(e, KL_EINVAL, "%s %s is wrapped (encrypted) but no passphrase source is given: name it "
                     "file:%s?passphrase-source=file:PASSFILE (docs/keys.md)", what, k->path, k->path);
    else if (pc.asked && !pc.read_ok)
      r = kl_err_set(e, pc.err.code ? pc.err.code : KL_EIO, "%s %s: %s", what, k->path, pc.err.msg);
    else if (pc.asked)
      r = kl_err_set(e, KL_EAUTH, "%s %s: cannot unwrap it with the passphrase from %s (wrong passphrase, or a damaged file)",
                     what, k->path, k->secret);
    else
      r = kl_err_set(e, KL_EINVAL, "%s %s: not a PEM private key: %s", what, k->path, kl__ossl_msg());
    ERR_clear_error();
    return r;
  }
  if (!pc.asked && !(flags & KL_KEY_ALLOW_CLEAR)) {
    EVP_PKEY_free(key);
    return kl_err_set(e, KL_EPKI, "%s %s is a clear (unencrypted) private key: refused; wrap it or put it in an HSM "
                      "(docs/keys.md), or allow clear keys for development (allow_clear_key)", what, k->path);
  }
  if (wrapped) *wrapped = pc.asked;
  *out = key;
  return 0;
}

/* ---- PKCS#11 through libp11's engine ---- */

static pthread_mutex_t engine_mu = PTHREAD_MUTEX_INITIALIZER;
static ENGINE *engine;          /* initialised once, kept for the process: keys refer to it */
static char engine_module[1024];

static int load_pkcs11(const kl_keyuri_t *k, const char *what, EVP_PKEY **out, kl_err_t *e) {
  const char *module = k->module[0] ? k->module : getenv("KEYLESS_PKCS11_MODULE");
  char pin[256];
  int r = 0;
  if (module == NULL || module[0] == '\0')
    return kl_err_set(e, KL_EINVAL, "%s %s: no PKCS#11 module: add ?module-path=/path/module.so (SoftHSM2: "
                      "/usr/lib/softhsm/libsofthsm2.so) or set $KEYLESS_PKCS11_MODULE", what, k->engine_uri);
  if (k->secret[0]) r = kl_key_secret_read(k->secret, pin, sizeof pin, e);
  else if (getenv("KEYLESS_PKCS11_PIN")) r = kl_key_secret_read("env:KEYLESS_PKCS11_PIN", pin, sizeof pin, e);
  else r = kl_err_set(e, KL_EINVAL, "%s %s: no PIN source: add pin-source=file:PATH or set $KEYLESS_PKCS11_PIN", what, k->engine_uri);
  if (r) return kl_err_wrap(e, "%s %s", what, k->engine_uri);
  pthread_mutex_lock(&engine_mu);
  ERR_clear_error();
  if (engine == NULL) {
    ENGINE *en = ENGINE_by_id("pkcs11");
    if (en == NULL) {
      r = kl_err_set(e, KL_EUNSUPPORTED, "%s %s: OpenSSL's pkcs11 engine is not installed (Debian: "
                     "libengine-pkcs11-openssl): %s", what, k->engine_uri, kl__ossl_msg());
    } else if (ENGINE_ctrl_cmd_string(en, "MODULE_PATH", module, 0) != 1 || ENGINE_init(en) != 1) {
      r = kl_err_set(e, KL_EIO, "%s: cannot load the PKCS#11 module %s: %s", what, module, kl__ossl_msg());
      ENGINE_free(en);
    } else {
      engine = en; /* its structural and functional references stay for the process */
      snprintf(engine_module, sizeof engine_module, "%s", module);
    }
  } else if (strcmp(engine_module, module) != 0) {
    r = kl_err_set(e, KL_EUNSUPPORTED, "%s: PKCS#11 module %s, but this process already uses %s (one module per process)",
                   what, module, engine_module);
  }
  EVP_PKEY *key = NULL;
  if (r == 0 && ENGINE_ctrl_cmd_string(engine, "PIN", pin, 0) != 1)
    r = kl_err_set(e, KL_EIO, "%s: cannot hand the PIN to the pkcs11 engine: %s", what, kl__ossl_msg());
  if (r == 0 && (key = ENGINE_load_private_key(engine, k->engine_uri, NULL, NULL)) == NULL)
    r = kl_err_set(e, KL_ENOTFOUND, "%s %s: no such private key in the token, or a wrong PIN (module %s): %s", what,
                   k->engine_uri, module, kl__ossl_msg());
  ERR_clear_error();
  pthread_mutex_unlock(&engine_mu);
  OPENSSL_cleanse(pin, sizeof pin);
  if (r == 0) *out = key;
  return r;
}

int kl_key_load(const char *uri, const char *what, unsigned flags, EVP_PKEY **out, bool *wrapped, kl_err_t *e) {
  kl_keyuri_t k;
  int r;
  *out = NULL;
  if ((r = kl_keyuri_parse(uri, &k, e))) return kl_err_wrap(e, "%s", what);
  if (k.kind == KL_KEYURI_FILE) return load_file(&k, what, flags, out, wrapped, e);
  if (wrapped) *wrapped = true;
  return load_pkcs11(&k, what, out, e);
}

bool kl_keyuri_same(const char *a, const char *b) {
  kl_keyuri_t x, y;
  kl_err_t e = {0};
  if (kl_keyuri_parse(a, &x, &e) || kl_keyuri_parse(b, &y, &e) || x.kind != y.kind) return false;
  if (x.kind == KL_KEYURI_PKCS11)
    return strcmp(x.token, y.token) == 0 && strcmp(x.object, y.object) == 0 && strcmp(x.id, y.id) == 0;
  struct stat sx, sy;
  if (stat(x.path, &sx) == 0 && stat(y.path, &sy) == 0) return sx.st_dev == sy.st_dev && sx.st_ino == sy.st_ino;
  return strcmp(x.path, y.path) == 0;
}
