/* The publications file served at GET /publications.bin: read once, re-read when its
 * modification time, size or inode changes (an operator or a cron job replaces it), and kept
 * as it was when the new one cannot be read or does not look like a publications file (a file
 * caught half-written), so clients keep getting the last good copy.
 *
 * The file is small (kilobytes to a few megabytes) and changes rarely: one stat(2) per GET on
 * the loop thread, and a read only after a change.
 *
 * The history directory next to it (DIR/history, where `keyless publish` keeps a dated copy of
 * every file it issued) is served as it is on disk: a listing of the names, and each file (a
 * regular file, not a symbolic link, whose name is letters, digits, '-', '_', '.' ending in
 * .bin), read on every request (audits are rare). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "extender.h"
#include "keyless/log.h"

#define MAX_PUBFILE (64u << 20)
#define MAGIC "KSIPUBLF"

int ext_pubfile_init(ext_pubfile_t *pf, const char *path, kl_err_t *e) {
  memset(pf, 0, sizeof *pf);
  if (path == NULL || path[0] == '\0') return 0;
  if ((pf->path = strdup(path)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  return 0;
}

void ext_pubfile_free(ext_pubfile_t *pf) {
  free(pf->path);
  free(pf->data);
  memset(pf, 0, sizeof *pf);
}

static bool same(const ext_pubfile_t *pf, const struct stat *st) {
  return pf->data != NULL && pf->dev == st->st_dev && pf->ino == st->st_ino && pf->size == st->st_size &&
         pf->mtime.tv_sec == st->st_mtim.tv_sec && pf->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* Reads the file, which must start with magic; 0 and a new buffer, or a code with a message. */
static int load(const char *path, const struct stat *st, const char *magic, uint8_t **data, size_t *len,
                kl_err_t *e) {
  if (!S_ISREG(st->st_mode)) return kl_err_set(e, KL_EIO, "not a regular file");
  if (st->st_size > (off_t)MAX_PUBFILE) return kl_err_set(e, KL_ETOOBIG, "larger than %u bytes", MAX_PUBFILE);
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open: %s", strerror(errno));
  size_t cap = (size_t)st->st_size + 1; /* one more byte tells us it grew meanwhile */
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    fclose(f);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  size_t n = fread(buf, 1, cap, f);
  int err = ferror(f);
  fclose(f);
  int r = 0;
  if (err) r = kl_err_set(e, KL_EIO, "read error");
  else if (n != (size_t)st->st_size) r = kl_err_set(e, KL_EIO, "changed while being read");
  else if (n < strlen(magic) || memcmp(buf, magic, strlen(magic)) != 0)
    r = kl_err_set(e, KL_EFORMAT, "does not start with %s: not a %s file", magic,
                   strcmp(magic, MAGIC) == 0 ? "publications" : "cosignature");
  if (r) {
    free(buf);
    return r;
  }
  *data = buf;
  *len = n;
  return 0;
}

int ext_pubfile_get(ext_pubfile_t *pf, const uint8_t **data, size_t *len, kl_err_t *e) {
  if (pf->path == NULL) return kl_err_set(e, KL_ENOTFOUND, "no publications file is configured");
  struct stat st;
  int r;
  char q[256];
  if (stat(pf->path, &st) != 0) {
    r = kl_err_set(e, KL_EIO, "%s: %s", pf->path, strerror(errno));
  } else if (same(pf, &st)) {
    r = 0;
  } else {
    uint8_t *buf = NULL;
    size_t n = 0;
    r = load(pf->path, &st, MAGIC, &buf, &n, e);
    if (r == 0) {
      free(pf->data);
      pf->data = buf;
      pf->len = n;
      pf->dev = st.st_dev;
      pf->ino = st.st_ino;
      pf->size = st.st_size;
      pf->mtime = st.st_mtim;
      pf->failed = false;
      kl_log(KL_LOG_INFO, "publications_loaded", "path=%s bytes=%zu", kl_log_q(q, sizeof q, pf->path), n);
    } else {
      kl_err_wrap(e, "%s", pf->path);
    }
  }
  if (r == 0) pf->failed = false;
  if (r && !pf->failed) { /* logged once per failure spell */
    pf->failed = true;
    char m[300];
    kl_log(KL_LOG_WARN, "publications_unreadable", "error=%s keeping_old=%s", kl_log_q(m, sizeof m, e ? e->msg : ""),
           pf->data ? "yes" : "no");
  }
  if (pf->data == NULL) return r ? r : KL_EIO;
  *data = pf->data;
  *len = pf->len;
  return 0;
}

/* ---- the history directory: every file `keyless publish` issued (docs/operations.md) ---- */

/* DIR/history next to the publications file, in buf; false when not configured. */
static bool history_dir(const ext_pubfile_t *pf, char *buf, size_t n) {
  if (pf->path == NULL) return false;
  const char *slash = strrchr(pf->path, '/');
  int len = slash ? (int)(slash - pf->path) : 0;
  int w = slash ? snprintf(buf, n, "%.*s/history", len, pf->path) : snprintf(buf, n, "history");
  return w > 0 && (size_t)w < n;
}

/* The names the history serves: what `keyless publish` writes, nothing that could leave the
 * directory or name a temporary file. */
static bool good_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 200 || s[0] == '.' || n < 5 || strcmp(s + n - 4, ".bin") != 0) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.'))
      return false;
  }
  return true;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ext_pubfile_history_list(const ext_pubfile_t *pf, kl_buf_t *out, kl_err_t *e) {
  char dir[1100];
  if (!history_dir(pf, dir, sizeof dir)) return kl_err_set(e, KL_ENOTFOUND, "no publications file is configured");
  DIR *d = opendir(dir);
  if (d == NULL) return kl_err_set(e, KL_ENOTFOUND, "%s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  int r = 0;
  while (r == 0 && (de = readdir(d)) != NULL) {
    if (!good_name(de->d_name)) continue;
    if (n == cap) {
      char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *nn);
      if (nn == NULL) r = kl_err_set(e, KL_ENOMEM, "out of memory");
      else names = nn;
    }
    if (r == 0 && (names[n] = strdup(de->d_name)) == NULL) r = kl_err_set(e, KL_ENOMEM, "out of memory");
    if (r == 0) n++;
  }
  closedir(d);
  if (r == 0) qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n; i++) {
    if (r == 0) {
      kl_buf_put(out, names[i], strlen(names[i]));
      kl_buf_put(out, "\n", 1);
    }
    free(names[i]);
  }
  free(names);
  return r ? r : kl_buf_check(out, e);
}

int ext_pubfile_history_get(const ext_pubfile_t *pf, const char *name, uint8_t **data, size_t *len, kl_err_t *e) {
  char dir[1100], path[1400];
  if (!history_dir(pf, dir, sizeof dir)) return kl_err_set(e, KL_ENOTFOUND, "no publications file is configured");
  if (!good_name(name)) return kl_err_set(e, KL_ENOTFOUND, "no such file");
  snprintf(path, sizeof path, "%s/%s", dir, name);
  struct stat st;
  if (lstat(path, &st) != 0) return kl_err_set(e, KL_ENOTFOUND, "%s: %s", path, strerror(errno));
  return load(path, &st, MAGIC, data, len, e);
}

/* ---- the witnesses' cosignatures next to the file (docs/formats.md §8) ---- */

int ext_pubfile_witness_get(const ext_pubfile_t *pf, uint8_t **data, size_t *len, kl_err_t *e) {
  char path[4200];
  struct stat st;
  if (pf->path == NULL) return kl_err_set(e, KL_ENOTFOUND, "no publications file is configured");
  snprintf(path, sizeof path, "%s.witness", pf->path);
  if (stat(path, &st) != 0)
    return kl_err_set(e, errno == ENOENT ? KL_ENOTFOUND : KL_EIO, "%s: %s", path, strerror(errno));
  int r = load(path, &st, "KLWITNS1", data, len, e);
  return r ? kl_err_wrap(e, "%s", path) : 0;
}
