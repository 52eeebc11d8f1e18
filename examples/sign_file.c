/* Example: sign one file with the keyless client library (docs/client.md, examples/README.md).
 * Uses only the installed public API: #include <keyless/...>, link with -lkeyless.
 *
 *   sign_file -S URL [-u USER] [-k KEY] [-o OUT] [-t TIMEOUT_MS] FILE
 *
 * Hashes FILE with SHA-256, asks the gateway at URL (http://, ksi+http://user:key@host/,
 * ksi+tcp://host:port) for a signature and writes it to OUT (default FILE.ksig) through a
 * temporary file in the same directory renamed into place: there is never a half-written .ksig.
 * The HMAC key comes from -k, else $KL_AGGR_KEY, else the URL.
 * Exit status: 0 signed; 1 the gateway or the network failed; 2 bad usage or a file error. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyless/err.h>
#include <keyless/hash.h>
#include <keyless/sig.h>
#include <keyless/signclient.h>

/* The file's SHA-256 imprint, read in blocks (any size of file). */
static int hash_file(const char *path, kl_imprint_t *out, kl_err_t *e) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "%s: %s", path, strerror(errno));
  kl_hasher_t h;
  int rc = kl_hasher_init(&h, e);
  if (rc == 0) rc = kl_hasher_start(&h, KL_HASH_SHA256, e);
  unsigned char block[65536];
  size_t n;
  while (rc == 0 && (n = fread(block, 1, sizeof block, f)) > 0) rc = kl_hasher_update(&h, block, n);
  if (rc == 0 && ferror(f)) rc = kl_err_set(e, KL_EIO, "%s: read error", path);
  if (rc == 0) rc = kl_hasher_finish(&h, out);
  kl_hasher_close(&h);
  fclose(f);
  return rc;
}

/* Writes p[0..n) to path atomically: PATH.tmp.XXXXXX, fsync, rename. */
static int write_atomic(const char *path, const void *p, size_t n, kl_err_t *e) {
  size_t tlen = strlen(path) + sizeof ".tmp.XXXXXX";
  char *tmp = malloc(tlen);
  if (tmp == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  snprintf(tmp, tlen, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    kl_err_set(e, KL_EIO, "%s: %s", tmp, strerror(errno));
    free(tmp);
    return KL_EIO;
  }
  const unsigned char *q = p;
  int rc = 0;
  while (n > 0) {
    ssize_t w = write(fd, q, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      rc = kl_err_set(e, KL_EIO, "%s: %s", tmp, strerror(errno));
      break;
    }
    q += w;
    n -= (size_t)w;
  }
  if (rc == 0 && fchmod(fd, 0644) != 0) rc = kl_err_set(e, KL_EIO, "%s: %s", tmp, strerror(errno));
  if (rc == 0 && fsync(fd) != 0) rc = kl_err_set(e, KL_EIO, "%s: %s", tmp, strerror(errno));
  if (close(fd) != 0 && rc == 0) rc = kl_err_set(e, KL_EIO, "%s: %s", tmp, strerror(errno));
  if (rc == 0 && rename(tmp, path) != 0) rc = kl_err_set(e, KL_EIO, "%s: %s", path, strerror(errno));
  if (rc != 0) unlink(tmp);
  free(tmp);
  return rc;
}

static int usage(void) {
  fprintf(stderr, "usage: sign_file -S URL [-u USER] [-k KEY] [-o OUT] [-t TIMEOUT_MS] FILE\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *url = NULL, *user = NULL, *key = getenv("KL_AGGR_KEY"), *out = NULL;
  int timeout_ms = 10000, c;
  while ((c = getopt(argc, argv, "S:u:k:o:t:")) != -1) {
    switch (c) {
      case 'S': url = optarg; break;
      case 'u': user = optarg; break;
      case 'k': key = optarg; break;
      case 'o': out = optarg; break;
      case 't': timeout_ms = atoi(optarg); break;
      default: return usage();
    }
  }
  if (url == NULL || optind != argc - 1 || timeout_ms <= 0) return usage();
  const char *file = argv[optind];

  kl_err_t e = {0};
  kl_imprint_t hash;
  if (hash_file(file, &hash, &e) != 0) {
    fprintf(stderr, "sign_file: %s\n", e.msg);
    return 2;
  }
  /* One hash, no local tree (max_level 0), the default HMAC algorithm (0: SHA-256). The
   * signature handed back has passed the internal policy with this hash. */
  kl_sig_t *sig = NULL;
  if (kl_sign_hashes(url, user, key, &hash, 1, 0, 0, timeout_ms, &sig, &e) != 0) {
    fprintf(stderr, "sign_file: %s: %s (%s)\n", url, e.msg, kl_errname(e.code));
    return 1;
  }
  size_t len;
  const uint8_t *bytes = kl_sig_bytes(sig, &len);

  char *def = NULL;
  if (out == NULL) {
    size_t dlen = strlen(file) + sizeof ".ksig";
    if ((def = malloc(dlen)) == NULL) {
      kl_sig_free(sig);
      fprintf(stderr, "sign_file: out of memory\n");
      return 2;
    }
    snprintf(def, dlen, "%s.ksig", file);
    out = def;
  }
  int rc = write_atomic(out, bytes, len, &e);
  if (rc != 0) fprintf(stderr, "sign_file: %s\n", e.msg);
  else printf("%s: signed at %llu, %s\n", out, (unsigned long long)kl_sig_signing_time(sig), file);
  kl_sig_free(sig);
  free(def);
  return rc ? 2 : 0;
}
