/* INI configuration with declared keys: defaults, conversion, ranges, checks, messages that
 * name the file, the line and the key. inih does the tokenizing; our own line reader feeds it
 * so that we know line numbers, can strip indentation (inih would take an indented line for a
 * continuation of the previous value) and can refuse over-long lines instead of splitting them. */
#include "keyless/config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FILE (1u << 20)

typedef struct loader {
  const char *name; /* the file, for messages */
  const kl_cfg_key_t *keys;
  size_t n_keys;
  void *out;
  bool *seen;
  /* line reader over the text */
  const char *p, *end;
  int lineno;
  /* problems */
  kl_err_t *e;
  int code;
  unsigned n_problems;
  unsigned n_told; /* problems written into e->msg (the rest are counted at the end) */
} loader_t;

static void problem(loader_t *L, int code, int line, const char *fmt, ...) KL_PRINTF(4, 5);
/* Every problem is told: the first sets the error, the next are appended ("; line 9: ...") as
 * long as they fit, and the count of any left over closes the message. */
static void problem(loader_t *L, int code, int line, const char *fmt, ...) {
  char msg[KL_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (L->n_problems++ == 0) {
    L->code = code;
    L->n_told = 1;
    if (line > 0) kl_err_set(L->e, code, "%s:%d: %s", L->name, line, msg);
    else kl_err_set(L->e, code, "%s: %s", L->name, msg);
    return;
  }
  if (L->e == NULL) return;
  char more[KL_ERR_MSG_MAX];
  int n = line > 0 ? snprintf(more, sizeof more, "; line %d: %s", line, msg) : snprintf(more, sizeof more, "; %s", msg);
  size_t have = strlen(L->e->msg);
  const size_t reserve = 40; /* room for " (and N more problems)" */
  if (n > 0 && have + (size_t)n + reserve < sizeof L->e->msg) {
    memcpy(L->e->msg + have, more, (size_t)n + 1);
    L->n_told++;
  }
}

static void *field(const loader_t *L, const kl_cfg_key_t *k) { return (char *)L->out + k->offset; }

/* ---- converters ---- */

static int parse_u64(const char *s, const char **rest, uint64_t *out) {
  if (*s < '0' || *s > '9') return KL_EFORMAT;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno == ERANGE) return KL_ERANGE;
  *out = v;
  *rest = end;
  return 0;
}

int kl_cfg_parse_size(const char *s, uint64_t *out) {
  const char *rest;
  uint64_t v, mul = 1;
  int r = parse_u64(s, &rest, &v);
  if (r) return r;
  switch (*rest) {
    case 'k': case 'K': mul = 1024; rest++; break;
    case 'm': case 'M': mul = 1024 * 1024; rest++; break;
    case 'g': case 'G': mul = 1024 * 1024 * 1024; rest++; break;
    default: break;
  }
  if (mul > 1 && (strcmp(rest, "iB") == 0 || strcmp(rest, "B") == 0)) rest += strlen(rest);
  else if (mul == 1 && strcmp(rest, "B") == 0) rest++;
  if (*rest != '\0') return KL_EFORMAT;
  if (v > UINT64_MAX / mul) return KL_ERANGE;
  *out = v * mul;
  return 0;
}

int kl_cfg_parse_duration_ms(const char *s, uint64_t *out) {
  const char *rest;
  uint64_t v, mul;
  int r = parse_u64(s, &rest, &v);
  if (r) return r;
  if (*rest == '\0' || strcmp(rest, "s") == 0) mul = 1000;
  else if (strcmp(rest, "ms") == 0) mul = 1;
  else if (strcmp(rest, "m") == 0 || strcmp(rest, "min") == 0) mul = 60 * 1000;
  else if (strcmp(rest, "h") == 0) mul = 3600 * 1000;
  else return KL_EFORMAT;
  if (v > UINT64_MAX / mul) return KL_ERANGE;
  *out = v * mul;
  return 0;
}

int kl_cfg_parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
    if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
  }
  return KL_EFORMAT;
}

static const char *type_text(kl_cfg_type_t t) {
  switch (t) {
    case KL_CFG_INT: return "an integer";
    case KL_CFG_BOOL: return "yes or no";
    case KL_CFG_SIZE: return "a size in bytes (like 65539, 64k, 16M)";
    case KL_CFG_DURATION: return "a duration (like 250ms, 30s, 5m)";
    default: return "a string";
  }
}

static bool in_range(const kl_cfg_key_t *k, int64_t v, char *msg, size_t n) {
  if (k->min == 0 && k->max == 0) return true;
  if (v < k->min) snprintf(msg, n, "%" PRId64 " is below the minimum %" PRId64, v, k->min);
  else if (v > k->max) snprintf(msg, n, "%" PRId64 " is above the maximum %" PRId64, v, k->max);
  else return true;
  return false;
}

/* Converts value into the key's field; 0, or nonzero with a reason in msg. */
static int convert(loader_t *L, const kl_cfg_key_t *k, const char *value, char *msg, size_t n) {
  void *f = field(L, k);
  uint64_t u;
  int r = 0;
  switch (k->type) {
    case KL_CFG_STR: {
      char *copy = strdup(value);
      if (copy == NULL) return snprintf(msg, n, "out of memory"), KL_ENOMEM;
      free(*(char **)f);
      *(char **)f = copy;
      return 0;
    }
    case KL_CFG_BOOL:
      r = kl_cfg_parse_bool(value, (bool *)f);
      break;
    case KL_CFG_INT: {
      errno = 0;
      char *end;
      long long v = strtoll(value, &end, 10);
      if (end == value || *end != '\0') r = KL_EFORMAT;
      else if (errno == ERANGE) r = KL_ERANGE;
      else if (!in_range(k, v, msg, n)) return KL_ERANGE;
      else *(int64_t *)f = v;
      break;
    }
    case KL_CFG_SIZE:
    case KL_CFG_DURATION:
      r = k->type == KL_CFG_SIZE ? kl_cfg_parse_size(value, &u) : kl_cfg_parse_duration_ms(value, &u);
      if (r == 0 && u > INT64_MAX) r = KL_ERANGE;
      if (r == 0 && !in_range(k, (int64_t)u, msg, n)) return KL_ERANGE;
      if (r == 0) *(uint64_t *)f = u;
      break;
  }
  if (r == KL_ERANGE) snprintf(msg, n, "out of range");
  else if (r) snprintf(msg, n, "expected %s", type_text(k->type));
  return r;
}

static const char *sec_open(const kl_cfg_key_t *k) { return k->section[0] ? "[" : ""; }
static const char *sec_close(const kl_cfg_key_t *k) { return k->section[0] ? "] " : ""; }

/* ---- inih glue ---- */

static int on_pair(void *user, const char *section, const char *name, const char *value) {
  loader_t *L = user;
  const kl_cfg_key_t *k = NULL;
  bool section_known = false;
  for (size_t i = 0; i < L->n_keys; i++) {
    if (strcmp(L->keys[i].section, section) != 0) continue;
    section_known = true;
    if (strcmp(L->keys[i].name, name) == 0) {
      k = &L->keys[i];
      break;
    }
  }
  if (k == NULL) {
    if (!section_known) problem(L, KL_EINVAL, L->lineno, "unknown section [%s] (key %s)", section, name);
    else problem(L, KL_EINVAL, L->lineno, "%s%s%sunknown key %s", section[0] ? "[" : "", section,
                 section[0] ? "] " : "", name);
    return 1;
  }
  bool *seen = &L->seen[k - L->keys];
  if (*seen) {
    problem(L, KL_EINVAL, L->lineno, "%s%s%s%s is given twice", sec_open(k), k->section, sec_close(k), k->name);
    return 1;
  }
  *seen = true;
  char msg[256] = "";
  int r = convert(L, k, value, msg, sizeof msg);
  if (r) problem(L, r == KL_ENOMEM ? KL_ENOMEM : KL_EINVAL, L->lineno, "%s%s%s%s = \"%.80s\": %s", sec_open(k),
                 k->section, sec_close(k), k->name, value, msg);
  return 1;
}

/* fgets over the text, one line per call, indentation removed. */
static char *read_line(char *str, int num, void *stream) {
  loader_t *L = stream;
  if (L->p >= L->end || num < 2) return NULL;
  const char *nl = memchr(L->p, '\n', (size_t)(L->end - L->p));
  const char *eol = nl ? nl + 1 : L->end;
  L->lineno++;
  const char *s = L->p;
  while (s < eol && (*s == ' ' || *s == '\t')) s++;
  size_t len = (size_t)(eol - s);
  if (len > (size_t)num - 1) {
    problem(L, KL_EINVAL, L->lineno, "line is longer than %d characters", num - 2);
    len = 0; /* inih gets an empty line instead of a split one */
  }
  memcpy(str, s, len);
  str[len] = '\0';
  L->p = eol;
  return str;
}

static int load(loader_t *L, const char *text, size_t len) {
  const kl_cfg_key_t *keys = L->keys;
  char msg[256];
  for (size_t i = 0; i < L->n_keys; i++) {
    if (keys[i].def == NULL) continue;
    msg[0] = '\0';
    if (convert(L, &keys[i], keys[i].def, msg, sizeof msg))
      problem(L, KL_EINVAL, 0, "%s%s%s%s: the built-in default \"%s\" is invalid: %s", sec_open(&keys[i]),
              keys[i].section, sec_close(&keys[i]), keys[i].name, keys[i].def, msg);
  }
  L->p = text;
  L->end = text + len;
  int r = ini_parse_stream(read_line, L, on_pair, L);
  if (r > 0)
    problem(L, KL_EINVAL, r, "syntax error: expected \"name = value\", \"[section]\" or a comment");
  else if (r < 0)
    problem(L, KL_ENOMEM, 0, "out of memory while parsing");
  for (size_t i = 0; i < L->n_keys; i++) {
    const kl_cfg_key_t *k = &keys[i];
    if (!L->seen[i] && k->def == NULL) {
      problem(L, KL_EINVAL, 0, "%s%s%s%s is required", sec_open(k), k->section, sec_close(k), k->name);
      continue;
    }
    msg[0] = '\0';
    if (L->n_problems == 0 && k->check && k->check(field(L, k), msg, sizeof msg))
      problem(L, KL_EINVAL, 0, "%s%s%s%s: %s", sec_open(k), k->section, sec_close(k), k->name,
              msg[0] ? msg : "invalid value");
  }
  if (L->n_problems > L->n_told && L->e) {
    char more[64];
    unsigned left = L->n_problems - L->n_told;
    snprintf(more, sizeof more, " (and %u more problem%s)", left, left > 1 ? "s" : "");
    size_t have = strlen(L->e->msg);
    if (have + strlen(more) < sizeof L->e->msg) memcpy(L->e->msg + have, more, strlen(more) + 1);
  }
  return L->n_problems ? L->code : 0;
}

int kl_cfg_load_string(const char *name, const char *text, const kl_cfg_key_t *keys, size_t n_keys, void *out,
                       kl_err_t *e) {
  if (name == NULL || text == NULL || keys == NULL || out == NULL)
    return kl_err_set(e, KL_EINVAL, "kl_cfg_load: NULL argument");
  loader_t L = {.name = name, .keys = keys, .n_keys = n_keys, .out = out, .e = e};
  L.seen = calloc(n_keys ? n_keys : 1, sizeof *L.seen);
  if (L.seen == NULL) return kl_err_set(e, KL_ENOMEM, "%s: out of memory", name);
  int r = load(&L, text, strlen(text));
  free(L.seen);
  return r;
}

int kl_cfg_load(const char *path, const kl_cfg_key_t *keys, size_t n_keys, void *out, kl_err_t *e) {
  if (path == NULL) return kl_err_set(e, KL_EINVAL, "kl_cfg_load: NULL argument");
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
  char *text = malloc(MAX_FILE + 1);
  if (text == NULL) {
    fclose(f);
    return kl_err_set(e, KL_ENOMEM, "%s: out of memory", path);
  }
  size_t n = fread(text, 1, MAX_FILE + 1, f);
  int err = ferror(f);
  fclose(f);
  int r;
  if (err) r = kl_err_set(e, KL_EIO, "%s: read error", path);
  else if (n > MAX_FILE) r = kl_err_set(e, KL_ETOOBIG, "%s: larger than %u bytes: not a configuration file", path, MAX_FILE);
  else if (memchr(text, '\0', n) != NULL) r = kl_err_set(e, KL_EINVAL, "%s: holds a NUL byte: not a text file", path);
  else {
    text[n] = '\0';
    r = kl_cfg_load_string(path, text, keys, n_keys, out, e);
  }
  free(text);
  return r;
}

void kl_cfg_free(const kl_cfg_key_t *keys, size_t n_keys, void *out) {
  if (keys == NULL || out == NULL) return;
  for (size_t i = 0; i < n_keys; i++) {
    if (keys[i].type != KL_CFG_STR) continue;
    char **p = (char **)((char *)out + keys[i].offset);
    free(*p);
    *p = NULL;
  }
}
