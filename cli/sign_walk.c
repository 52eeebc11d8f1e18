/* keyless sign: the inputs (files, directories with -r), where their signatures go, and the
 * manifest of --manifest. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "keyless/buf.h"
#include "sign.h"

void sign_fail(sign_file_t *f, const char *code, bool retryable, uint64_t gw_status, const char *fmt, ...) {
  char msg[KL_ERR_MSG_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  free(f->error);
  f->error = strdup(msg);
  f->state = SF_FAILED;
  f->code = code;
  f->retryable = retryable;
  f->gw_status = gw_status;
}

static int push(sign_file_t **v, size_t *n, size_t *cap, const char *path, const char *rel) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    sign_file_t *nv = realloc(*v, nc * sizeof *nv);
    if (nv == NULL) return -1;
    *v = nv;
    *cap = nc;
  }
  sign_file_t *f = &(*v)[*n];
  memset(f, 0, sizeof *f);
  if ((f->path = strdup(path)) == NULL || (f->rel = strdup(rel)) == NULL) {
    free(f->path);
    return -1;
  }
  (*n)++;
  return 0;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Our own leftovers are not documents: signatures and the temporary files they are written to. */
static bool skipped_name(const char *name) {
  return ends_with(name, ".ksig") || strstr(name, ".ksig.tmp.") != NULL || strstr(name, ".kltmp.") != NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every regular file under dir (path as given), rel names prefixed with prefix. Symbolic links
 * to files are followed, to directories not (no loops). Bounded depth. */
static int walk(sign_file_t **v, size_t *n, size_t *cap, const char *dir, const char *prefix, int depth) {
  if (depth > 64) {
    fprintf(stderr, "keyless sign: %s: directories nested more than 64 deep\n", dir);
    return KL_EXIT_USAGE;
  }
  DIR *d = opendir(dir);
  if (d == NULL) {
    /* An unreadable directory is reported as one failed input; the rest goes on. */
    if (push(v, n, cap, dir, prefix[0] ? prefix : dir)) return KL_EXIT_GENERAL;
    sign_fail(&(*v)[*n - 1], SE_UNREADABLE, false, 0, "cannot read the directory %s: %s", dir, strerror(errno));
    return KL_EXIT_OK;
  }
  char **names = NULL;
  size_t nn = 0, nc = 0;
  struct dirent *de;
  int st = KL_EXIT_OK;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 || skipped_name(de->d_name)) continue;
    if (nn == nc) {
      nc = nc ? nc * 2 : 64;
      char **nv = realloc(names, nc * sizeof *nv);
      if (nv == NULL) {
        st = KL_EXIT_GENERAL;
        break;
      }
      names = nv;
    }
    if ((names[nn] = strdup(de->d_name)) == NULL) {
      st = KL_EXIT_GENERAL;
      break;
    }
    nn++;
  }
  closedir(d);
  if (nn) qsort(names, nn, sizeof *names, cmp_str);
  size_t dl = strlen(dir), pl = strlen(prefix);
  for (size_t i = 0; i < nn && st == KL_EXIT_OK; i++) {
    size_t l = strlen(names[i]);
    char *p = malloc(dl + l + 2), *r = malloc(pl + l + 2);
    if (p == NULL || r == NULL) {
      free(p);
      free(r);
      st = KL_EXIT_GENERAL;
      break;
    }
    sprintf(p, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", names[i]);
    sprintf(r, "%s%s%s", prefix, pl ? "/" : "", names[i]);
    struct stat ls, fs;
    if (lstat(p, &ls) != 0) {
      /* gone since readdir: report it */
      if (push(v, n, cap, p, r)) st = KL_EXIT_GENERAL;
      else sign_fail(&(*v)[*n - 1], SE_UNREADABLE, false, 0, "%s: %s", p, strerror(errno));
    } else if (S_ISDIR(ls.st_mode)) {
      st = walk(v, n, cap, p, r, depth + 1);
    } else if (S_ISREG(ls.st_mode) || (S_ISLNK(ls.st_mode) && stat(p, &fs) == 0 && S_ISREG(fs.st_mode))) {
      if (push(v, n, cap, p, r)) st = KL_EXIT_GENERAL;
    } /* sockets, fifos, devices, dangling links and links to directories: not documents */
    free(p);
    free(r);
  }
  for (size_t i = 0; i < nn; i++) free(names[i]);
  free(names);
  if (st == KL_EXIT_GENERAL) fprintf(stderr, "keyless sign: out of memory\n");
  return st;
}

/* The name of a command-line file under -o DIR: the path as given when it is relative and stays
 * below the current directory, else its last component. */
static const char *rel_of(const char *p) {
  if (p[0] == '/' || strcmp(p, "..") == 0 || strncmp(p, "../", 3) == 0 || strstr(p, "/../") || ends_with(p, "/.."))
    return strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
  while (p[0] == '.' && p[1] == '/') p += 2;
  return p;
}

int sign_add_input(sign_file_t **v, size_t *n, size_t *cap, const char *path, bool recursive) {
  struct stat st;
  if (strcmp(path, "-") != 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    if (!recursive) {
      fprintf(stderr, "keyless sign: %s is a directory: give -r to sign every file under it\n", path);
      return KL_EXIT_USAGE;
    }
    return walk(v, n, cap, path, "", 0);
  }
  if (push(v, n, cap, path, rel_of(path))) {
    fprintf(stderr, "keyless sign: out of memory\n");
    return KL_EXIT_GENERAL;
  }
  return KL_EXIT_OK;
}

static int by_out_cmp(const void *a, const void *b) {
  return strcmp((*(const sign_file_t *const *)a)->out, (*(const sign_file_t *const *)b)->out);
}

int sign_plan_outputs(sign_file_t *v, size_t n, const char *out_dir, const char *out_file) {
  for (size_t i = 0; i < n; i++) {
    sign_file_t *f = &v[i];
    size_t cap = strlen(f->path) + strlen(f->rel) + (out_dir ? strlen(out_dir) : 0) + (out_file ? strlen(out_file) : 0) + 8;
    if ((f->out = malloc(cap)) == NULL) {
      fprintf(stderr, "keyless sign: out of memory\n");
      return KL_EXIT_GENERAL;
    }
    if (out_dir) {
      if (f->rel[0] == '\0' || ends_with(f->rel, "/")) {
        fprintf(stderr, "keyless sign: %s: no file name to name the signature after\n", f->path);
        return KL_EXIT_USAGE;
      }
      snprintf(f->out, cap, "%s%s%s.ksig", out_dir, ends_with(out_dir, "/") ? "" : "/", f->rel);
    } else if (out_file) {
      snprintf(f->out, cap, "%s", out_file);
    } else {
      snprintf(f->out, cap, "%s.ksig", f->path);
    }
  }
  /* One output path twice (the same file given twice, or two inputs with one name). */
  const sign_file_t **by = malloc((n ? n : 1) * sizeof *by);
  if (by == NULL) return KL_EXIT_GENERAL;
  for (size_t i = 0; i < n; i++) by[i] = &v[i];
  qsort(by, n, sizeof *by, by_out_cmp);
  for (size_t i = 1; i < n; i++)
    if (strcmp(by[i - 1]->out, by[i]->out) == 0) {
      fprintf(stderr, "keyless sign: %s and %s would both be signed into %s\n", by[i - 1]->path, by[i]->path, by[i]->out);
      free(by);
      return KL_EXIT_USAGE;
    }
  free(by);
  return KL_EXIT_OK;
}

int sign_mkdirs_for(const char *path, kl_err_t *e) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return kl_err_set(e, KL_EINVAL, "%s: path too long", path);
  char *slash = strrchr(buf, '/');
  if (slash == NULL || slash == buf) return 0;
  *slash = '\0';
  struct stat st;
  if (stat(buf, &st) == 0) return S_ISDIR(st.st_mode) ? 0 : kl_err_set(e, KL_EIO, "%s is not a directory", buf);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return kl_err_set(e, KL_EIO, "cannot make the directory %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return kl_err_set(e, KL_EIO, "cannot make the directory %s: %s", buf, strerror(errno));
  return 0;
}

int sign_write_manifest(const char *path, const sign_file_t *v, size_t n, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  char hex[2 * KL_IMPRINT_MAX + 2];
  for (size_t i = 0; i < n; i++) {
    if (v[i].hash.len == 0) continue;
    for (const char *c = v[i].rel; *c; c++)
      if (*c == '\n' || *c == '\r') {
        kl_buf_free(&b);
        return kl_err_set(e, KL_EINVAL, "%s: a file name with a line break cannot go into a manifest", v[i].path);
      }
    kl_imprint_hex(&v[i].hash, hex);
    kl_buf_put(&b, hex + 2, strlen(hex + 2));
    kl_buf_put(&b, "  ", 2);
    kl_buf_put(&b, v[i].rel, strlen(v[i].rel));
    kl_buf_put(&b, "\n", 1);
  }
  int r = kl_buf_check(&b, e);
  if (r == 0) r = cli_write_file_atomic(path, b.p ? b.p : (const uint8_t *)"", b.len, true, e);
  kl_buf_free(&b);
  return r;
}
