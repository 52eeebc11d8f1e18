/* ksi-tool configuration files for the `keyless` command: parsing, and merging with the command
 * line (see conf.h for the syntax and the priority rules). */
#include "conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONF_MAX_SIZE (1u << 20)

/* Exit statuses (cli.h has the full list; conf.c stays free of the rest of the CLI). */
enum { EXIT_USAGE = 3, EXIT_CONFIG = 16 };

/* The options of ksi-tool's configuration files, and keyless's own --ca and --timeout. Those a
 * subcommand does not take (e.g. -W, --max-in-flight, --inst-id for every keyless command) are
 * ignored. */
static const cli_conf_opt_t known[] = {
    {'S', NULL, true, false},                        /* aggregator URL */
    {0, "aggr-user", true, false},
    {0, "aggr-key", true, true},
    {0, "aggr-hmac-alg", true, false},
    {0, "aggr-pdu-v", true, false},
    {'X', NULL, true, false},                        /* extender URL */
    {0, "ext-user", true, false},
    {0, "ext-key", true, true},
    {0, "ext-hmac-alg", true, false},
    {0, "ext-pdu-v", true, false},
    {'P', NULL, true, false},                        /* publications file URL */
    {0, "cnstr", true, false},
    {'V', NULL, true, false},
    {'W', NULL, true, false},
    {0, "publications-file-no-verify", false, false},
    {'H', NULL, true, false},
    {'C', NULL, true, false},                        /* connect timeout, seconds */
    {'c', NULL, true, false},                        /* transfer timeout, seconds */
    {0, "max-in-flight", true, false},
    {0, "max-lvl", true, false},
    {0, "max-aggr-rounds", true, false},
    {0, "mdata", false, false},
    {0, "mdata-cli-id", true, false},
    {0, "mdata-mac-id", true, false},
    {0, "mdata-sqn-nr", true, false},
    {0, "mdata-req-tm", false, false},
    {0, "show-progress", false, false},
    {0, "inst-id", true, false},
    {0, "msg-id", true, false},
    {0, "apply-remote-conf", false, false},
    {0, "log", true, false},
    {0, "ca", true, false},                          /* keyless: trust anchors for https:// */
    {0, "timeout", true, false},                     /* keyless: milliseconds */
    {0, "ha", true, false},                          /* keyless sign: failover or all */
    {0, "retry-for", true, false},                   /* keyless sign: a duration */
    {0, "aggr-key-file", true, false},               /* keyless sign: the key in a file */
};

const cli_conf_opt_t *cli_conf_lookup(const char *name) {
  if (name[0] != '-') return NULL;
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    const cli_conf_opt_t *o = &known[i];
    if (name[1] == '-' ? o->lng && strcmp(name + 2, o->lng) == 0 : o->shrt && name[1] == o->shrt && name[2] == '\0')
      return o;
  }
  return NULL;
}

void cli_conf_free(cli_conf_t *c) {
  for (size_t i = 0; i < c->n; i++) free(c->v[i].value);
  free(c->v);
  free(c->file);
  memset(c, 0, sizeof *c);
}

/* A URL with a KSI login and key in it (ksi+http://user:key@host/). */
static bool url_has_key(const char *v) {
  const char *p = strstr(v, "://");
  if (p == NULL) return false;
  p += 3;
  size_t auth = strcspn(p, "/?#");
  const char *at = memchr(p, '@', auth);
  return at != NULL && memchr(p, ':', (size_t)(at - p)) != NULL;
}

/* Splits one line into at most 2 tokens (a 3rd one is an error), handling "quotes". Tokens are
 * written into buf (NUL-separated, as long as the line plus one). 0 or an error message. */
static const char *tokenize(const char *line, size_t len, char *buf, char **tok, size_t *n) {
  size_t i = 0, o = 0;
  *n = 0;
  for (;;) {
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i >= len) return NULL;
    if (*n == 2) return "more than one value (quote a value that has spaces)";
    tok[(*n)++] = buf + o;
    bool quoted = false;
    while (i < len && (quoted || (line[i] != ' ' && line[i] != '\t'))) {
      char ch = line[i++];
      if (ch == '"') {
        quoted = !quoted;
      } else if (quoted && ch == '\\' && i < len && (line[i] == '"' || line[i] == '\\')) {
        buf[o++] = line[i++];
      } else {
        buf[o++] = ch;
      }
    }
    if (quoted) return "unterminated quote";
    buf[o++] = '\0';
  }
}

static int add(cli_conf_t *c, const cli_conf_opt_t *opt, const char *value, unsigned line, kl_err_t *e) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    cli_conf_entry_t *v = realloc(c->v, cap * sizeof *v);
    if (v == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    c->v = v;
    c->cap = cap;
  }
  char *copy = NULL;
  if (value && (copy = strdup(value)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  c->v[c->n++] = (cli_conf_entry_t){opt, copy, line};
  if (opt->secret || (value && (opt->shrt == 'S' || opt->shrt == 'X') && url_has_key(value))) c->has_secret = true;
  return 0;
}

/* One line (without its end of line). */
static int parse_line(cli_conf_t *c, const char *file, unsigned ln, const char *line, size_t len, char *buf,
                      kl_err_t *e) {
  char *tok[3], name[64];
  size_t n;
  if (line[strspn(line, " \t")] == '#') return 0; /* a comment */
  const char *why = tokenize(line, len, buf, tok, &n);
  if (n == 0 && why == NULL) return 0;
  if (why) return kl_err_set(e, KL_EFORMAT, "%s:%u: %s", file, ln, why);
  char *opt_name = tok[0], *value = n > 1 ? tok[1] : NULL;
  if (opt_name[0] != '-' || opt_name[1] == '\0')
    return kl_err_set(e, KL_EFORMAT, "%s:%u: expected an option (e.g. -S URL or --aggr-user NAME), got '%.40s'", file, ln,
                      opt_name);
  char *eq = opt_name[1] == '-' ? strchr(opt_name, '=') : NULL;
  if (eq) { /* --name=value */
    if (value) return kl_err_set(e, KL_EFORMAT, "%s:%u: more than one value for %.*s", file, ln, (int)(eq - opt_name), opt_name);
    *eq = '\0';
    value = eq + 1;
  }
  const cli_conf_opt_t *o = cli_conf_lookup(opt_name);
  if (o == NULL && opt_name[1] != '-' && opt_name[2] != '\0' && value == NULL) { /* -Svalue */
    char s[3] = {'-', opt_name[1], '\0'};
    if ((o = cli_conf_lookup(s)) != NULL && o->has_arg) {
      value = opt_name + 2;
      snprintf(name, sizeof name, "%s", s);
    } else {
      o = NULL;
    }
  }
  if (value != opt_name + 2 || opt_name[1] == '-') snprintf(name, sizeof name, "%.40s", opt_name);
  if (strcmp(name, "--conf") == 0)
    return kl_err_set(e, KL_EFORMAT, "%s:%u: --conf cannot be used inside a configuration file", file, ln);
  if (o == NULL) return kl_err_set(e, KL_EFORMAT, "%s:%u: unknown option %s", file, ln, name);
  if (o->has_arg && value == NULL) return kl_err_set(e, KL_EFORMAT, "%s:%u: %s needs a value", file, ln, name);
  if (!o->has_arg && value != NULL) return kl_err_set(e, KL_EFORMAT, "%s:%u: %s takes no value", file, ln, name);
  return add(c, o, value, ln, e);
}

int cli_conf_parse(cli_conf_t *c, const char *file, const char *text, size_t len, kl_err_t *e) {
  memset(c, 0, sizeof *c);
  if ((c->file = strdup(file)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  char *buf = malloc(len + 1);
  if (buf == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  const char *nul = memchr(text, '\0', len);
  int r = 0;
  if (nul) {
    unsigned ln = 1;
    for (const char *p = text; p < nul; p++) ln += *p == '\n';
    r = kl_err_set(e, KL_EFORMAT, "%s:%u: a NUL byte (not a text file?)", file, ln);
  }
  unsigned ln = 0;
  for (size_t i = 0; r == 0 && i < len;) {
    const char *nl = memchr(text + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - text) : len, l = end - i;
    if (l > 0 && text[i + l - 1] == '\r') l--;
    ln++;
    /* parse_line wants a NUL-terminated line. */
    char *line = malloc(l + 1);
    if (line == NULL) {
      r = kl_err_set(e, KL_ENOMEM, "out of memory");
      break;
    }
    memcpy(line, text + i, l);
    line[l] = '\0';
    r = parse_line(c, file, ln, line, l, buf, e);
    free(line);
    i = end + 1;
  }
  free(buf);
  if (r) {
    char *f = c->file;
    c->file = NULL;
    cli_conf_free(c);
    c->file = f;
  }
  return r;
}

/* ---- merging with the command line ---- */

static struct {
  cli_conf_t env, conf;
  char **argv;
  char names[sizeof known / sizeof known[0]][40]; /* "-S", "--aggr-user": the tokens of argv */
  char where[600];
} g;

void cli_conf_done(void) {
  cli_conf_free(&g.env);
  cli_conf_free(&g.conf);
  free(g.argv);
  g.argv = NULL;
}

/* Reads and parses a file; via says how it was named ("--conf", "$KSI_CONF"). */
static int load(cli_conf_t *c, const char *cmd, const char *path, const char *via) {
  kl_err_t e = {0};
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "keyless %s: %s %s: cannot open: %s\n", cmd, via, path, strerror(errno));
    return EXIT_CONFIG;
  }
  struct stat st;
  char *text = malloc(CONF_MAX_SIZE + 1);
  size_t n = text ? fread(text, 1, CONF_MAX_SIZE + 1, f) : 0;
  int bad = text == NULL || ferror(f), perm = fstat(fileno(f), &st) == 0 ? (int)st.st_mode : 0;
  fclose(f);
  if (bad || n > CONF_MAX_SIZE) {
    fprintf(stderr, "keyless %s: %s %s: %s\n", cmd, via, path, bad ? "cannot read it" : "larger than 1 MiB");
    free(text);
    return EXIT_CONFIG;
  }
  int r = cli_conf_parse(c, path, text, n, &e);
  free(text);
  if (r) {
    fprintf(stderr, "keyless %s: %s\n", cmd, e.msg);
    return EXIT_CONFIG;
  }
  if (c->has_secret && (perm & (S_IRGRP | S_IROTH)))
    fprintf(stderr, "keyless %s: warning: %s holds a key and is readable by others (chmod 600 %s)\n", cmd, path, path);
  return 0;
}

/* The token under which the subcommand takes o ("-S", "--aggr-user"), or NULL if it does not. */
static const char *taken_as(const cli_conf_opt_t *o, const char *shorts, const struct option *longs, char *buf,
                            size_t cap) {
  if (o->lng)
    for (const struct option *l = longs; l->name; l++)
      if (strcmp(l->name, o->lng) == 0 && (l->has_arg != no_argument) == o->has_arg) {
        snprintf(buf, cap, "--%s", o->lng);
        return buf;
      }
  if (o->shrt) {
    const char *p = strchr(shorts, o->shrt);
    if (p && (p[1] == ':') == o->has_arg) {
      snprintf(buf, cap, "-%c", o->shrt);
      return buf;
    }
  }
  return NULL;
}

int cli_conf_args(const char *cmd, int *argc, char ***argv, const char *shorts, const struct option *longs) {
  const char *conf = NULL, *env = getenv("KSI_CONF");
  int st;
  for (int i = 1; i < *argc; i++) {
    const char *a = (*argv)[i], *p;
    if (strcmp(a, "--") == 0) break;
    if (strcmp(a, "--conf") == 0) {
      if (i + 1 >= *argc) {
        fprintf(stderr, "keyless %s: --conf needs a file\n", cmd);
        return EXIT_USAGE;
      }
      p = (*argv)[++i];
    } else if (strncmp(a, "--conf=", 7) == 0) {
      p = a + 7;
    } else {
      continue;
    }
    if (conf) {
      fprintf(stderr, "keyless %s: give --conf once\n", cmd);
      return EXIT_USAGE;
    }
    conf = p;
  }
  if (env && *env && (st = load(&g.env, cmd, env, "$KSI_CONF"))) return st;
  if (conf && (st = load(&g.conf, cmd, conf, "--conf"))) return st;
  size_t cap = 2 + 2 * (g.env.n + g.conf.n) + (size_t)*argc, n = 0;
  char tok[40];
  if ((g.argv = calloc(cap, sizeof *g.argv)) == NULL) {
    fprintf(stderr, "keyless %s: out of memory\n", cmd);
    return 1;
  }
  g.argv[n++] = (*argv)[0];
  const cli_conf_t *files[2] = {&g.env, &g.conf};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < files[k]->n; i++) {
      const cli_conf_entry_t *x = &files[k]->v[i];
      const char *t = taken_as(x->opt, shorts, longs, tok, sizeof tok);
      if (t == NULL) continue;
      size_t j = (size_t)(x->opt - known); /* one spelling per option: one subcommand per run */
      snprintf(g.names[j], sizeof g.names[j], "%s", t);
      g.argv[n++] = g.names[j];
      if (x->value) g.argv[n++] = x->value;
    }
  for (int i = 1; i < *argc; i++) g.argv[n++] = (*argv)[i];
  g.argv[n] = NULL;
  *argc = (int)n;
  *argv = g.argv;
  return 0;
}

static const cli_conf_entry_t *find(const char *arg, const cli_conf_t **file) {
  const cli_conf_t *files[2] = {&g.env, &g.conf};
  if (arg == NULL) return NULL;
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < files[k]->n; i++)
      if (files[k]->v[i].value == arg) {
        if (file) *file = files[k];
        return &files[k]->v[i];
      }
  return NULL;
}

const char *cli_where(const char *arg) {
  const cli_conf_t *f;
  const cli_conf_entry_t *x = find(arg, &f);
  if (x == NULL) return "";
  snprintf(g.where, sizeof g.where, "%s:%u: ", f->file, x->line);
  return g.where;
}

int cli_source(const char *arg) {
  const cli_conf_t *f;
  if (find(arg, &f) == NULL) return CLI_SRC_CMDLINE;
  return f == &g.conf ? CLI_SRC_CONF : CLI_SRC_ENV;
}
