/* The users file: "login:key" lines, sorted once and looked up by binary search. */
#include "keyless/users.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (1u << 20)

typedef struct user {
  char *login; /* both point into the object's text copy, NUL-terminated */
  char *key;
  size_t keylen;
} user_t;

struct kl_users {
  char *text;
  user_t *v;
  size_t n;
};

static int cmp_user(const void *a, const void *b) {
  return strcmp(((const user_t *)a)->login, ((const user_t *)b)->login);
}

void kl_users_free(kl_users_t *u) {
  if (u == NULL) return;
  free(u->text);
  free(u->v);
  free(u);
}

static bool has_ctl(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 && *s != '\t') return true;
  return false;
}

/* Splits the copy into lines in place and fills u->v. */
static int parse_lines(const char *name, kl_users_t *u, size_t len, kl_err_t *e) {
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += u->text[i] == '\n';
  if ((u->v = calloc(lines, sizeof *u->v)) == NULL) return kl_err_set(e, KL_ENOMEM, "%s: out of memory", name);
  char *p = u->text, *end = u->text + len;
  for (size_t lineno = 1; p < end; lineno++) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *eol = nl ? nl : end;
    *eol = '\0';
    char *line = p;
    p = eol + 1;
    while (*line == ' ' || *line == '\t') line++;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = '\0';
    if (n == 0 || line[0] == '#') continue;
    char *colon = strchr(line, ':');
    if (colon == NULL)
      return kl_err_set(e, KL_EFORMAT, "%s:%zu: expected \"login:key\"", name, lineno);
    *colon = '\0';
    user_t *x = &u->v[u->n];
    x->login = line;
    x->key = colon + 1;
    x->keylen = strlen(x->key);
    size_t loginlen = (size_t)(colon - line);
    if (loginlen == 0) return kl_err_set(e, KL_EFORMAT, "%s:%zu: empty login", name, lineno);
    if (x->keylen == 0) return kl_err_set(e, KL_EFORMAT, "%s:%zu: empty key for login '%s'", name, lineno, x->login);
    if (loginlen > KL_USERS_MAX_FIELD || x->keylen > KL_USERS_MAX_FIELD)
      return kl_err_set(e, KL_EFORMAT, "%s:%zu: login or key longer than %d bytes", name, lineno, KL_USERS_MAX_FIELD);
    if (has_ctl(x->login) || has_ctl(x->key))
      return kl_err_set(e, KL_EFORMAT, "%s:%zu: control character in login or key", name, lineno);
    u->n++;
  }
  qsort(u->v, u->n, sizeof *u->v, cmp_user);
  for (size_t i = 1; i < u->n; i++)
    if (strcmp(u->v[i - 1].login, u->v[i].login) == 0)
      return kl_err_set(e, KL_EFORMAT, "%s: login '%s' is given twice", name, u->v[i].login);
  return 0;
}

int kl_users_parse(const char *name, const char *text, size_t len, kl_users_t **out, kl_err_t *e) {
  if (name == NULL || (text == NULL && len) || out == NULL)
    return kl_err_set(e, KL_EINVAL, "kl_users_parse: NULL argument");
  *out = NULL;
  if (len > MAX_FILE) return kl_err_set(e, KL_ETOOBIG, "%s: larger than %u bytes", name, MAX_FILE);
  if (len && memchr(text, '\0', len) != NULL) return kl_err_set(e, KL_EFORMAT, "%s: holds a NUL byte", name);
  kl_users_t *u = calloc(1, sizeof *u);
  if (u == NULL || (u->text = malloc(len + 1)) == NULL) {
    kl_users_free(u);
    return kl_err_set(e, KL_ENOMEM, "%s: out of memory", name);
  }
  if (len) memcpy(u->text, text, len);
  u->text[len] = '\0';
  int r = parse_lines(name, u, len, e);
  if (r) {
    kl_users_free(u);
    return r;
  }
  *out = u;
  return 0;
}

int kl_users_load(const char *path, kl_users_t **out, kl_err_t *e) {
  if (path == NULL || out == NULL) return kl_err_set(e, KL_EINVAL, "kl_users_load: NULL argument");
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
  char *buf = malloc(MAX_FILE + 1);
  if (buf == NULL) {
    fclose(f);
    return kl_err_set(e, KL_ENOMEM, "%s: out of memory", path);
  }
  size_t n = fread(buf, 1, MAX_FILE + 1, f);
  int r = ferror(f) ? kl_err_set(e, KL_EIO, "%s: read error", path) : kl_users_parse(path, buf, n, out, e);
  fclose(f);
  free(buf);
  return r;
}

size_t kl_users_count(const kl_users_t *u) { return u ? u->n : 0; }

const char *kl_users_key(const kl_users_t *u, const char *login, size_t *keylen) {
  if (u == NULL || login == NULL) return NULL;
  user_t k = {.login = (char *)login};
  const user_t *x = bsearch(&k, u->v, u->n, sizeof *u->v, cmp_user);
  if (x == NULL) return NULL;
  if (keylen) *keylen = x->keylen;
  return x->key;
}
