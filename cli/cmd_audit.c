/* keyless audit: check the calendar from outside, through extenders' public endpoints
 * (docs/operations.md "Auditing the calendar", docs/formats.md "Calendar auditing").
 *
 * For each extender (-X, repeatable): its head; every publication (-P file or URL, --pub-str)
 * up to its head is linked to the next one and the last to the head by a consistency proof
 * whose roots must be the published hashes, verified here (transitivity covers every pair); one
 * before its genesis is an inconsistency; one after its head, or a head behind the state, is exit 7
 * once everything else holds (a lagging extender, or one hiding them);
 * several extenders: each head is a prefix of the longest one's calendar; --state FILE: the head
 * checked last time is a prefix of every head now (then the file moves to the newest head,
 * atomically); --rehash FROM:TO: the roots of FROM..TO recomputed from the leaves, both ends tied
 * to the verified head. Exit 0 when all holds, 6 at the first inconsistency (named with its
 * seconds and hashes), 5/7 when an extender cannot be asked or answers nonsense. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "keyless/calendar.h"
#include "witness.h"

#define MAX_EXT 16

typedef struct pub {
  uint64_t t;
  kl_imprint_t h;
} pub_t;

typedef struct audit {
  aud_ext_t ext[MAX_EXT];
  size_t n_ext;
  pub_t *pubs;
  size_t n_pubs;
  bool json;
  uint64_t checks;
  uint64_t unchecked; /* publications after a (lagging) extender's head */
  char behind[700];   /* the first extender found behind a publication or the state: exit 7 */
  /* the first inconsistency */
  char why[1400];
  const char *where;
  uint64_t t1, t2;
  kl_imprint_t want, got;
  bool hashes;
  bool unwitnessed; /* the calendar held, a publication lacks the required cosignatures */
} audit_t;

static void say(const audit_t *a, const char *fmt, ...) KL_PRINTF(2, 3);
static void say(const audit_t *a, const char *fmt, ...) {
  if (a->json) return;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

static int inconsistent(audit_t *a, const aud_ext_t *x, uint64_t t1, uint64_t t2, const kl_imprint_t *want,
                        const kl_imprint_t *got, const char *fmt, ...) KL_PRINTF(7, 8);
static int inconsistent(audit_t *a, const aud_ext_t *x, uint64_t t1, uint64_t t2, const kl_imprint_t *want,
                        const kl_imprint_t *got, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->why, sizeof a->why, fmt, ap);
  va_end(ap);
  a->where = x ? x->url : NULL;
  a->t1 = t1;
  a->t2 = t2;
  if ((a->hashes = want && got)) {
    a->want = *want;
    a->got = *got;
  }
  return KL_EXIT_VERIFY;
}

static const char *hex(const kl_imprint_t *h, char *buf) { return kl_imprint_hex(h, buf); }

/* x's proof from..to must carry the roots expected there (what the publications, a head or the
 * state file say; what_from/what_to name them) and link them. */
static int check_span(audit_t *a, aud_ext_t *x, uint64_t from, const kl_imprint_t *rf, const char *what_from,
                      uint64_t to, const kl_imprint_t *rt, const char *what_to, kl_err_t *e) {
  char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
  kl_calproof_t *p = malloc(sizeof *p);
  int st = KL_EXIT_OK;
  if (p == NULL) {
    kl_err_set(e, KL_ENOMEM, "out of memory");
    return KL_EXIT_GENERAL;
  }
  if (from == to) {
    if (!kl_imprint_eq(rf, rt))
      st = inconsistent(a, x, from, to, rf, rt, "second %llu: %s is %s, %s is %s", (unsigned long long)from, what_from,
                        hex(rf, h1), what_to, hex(rt, h2));
  } else if ((st = aud_consistency(x, from, to, p, e)) != KL_EXIT_OK) {
  } else if (!kl_imprint_eq(&p->root_from, rf)) {
    st = inconsistent(a, x, from, to, rf, &p->root_from, "second %llu: extender %s's calendar root is %s, %s is %s",
                      (unsigned long long)from, x->url, hex(&p->root_from, h1), what_from, hex(rf, h2));
  } else if (!kl_imprint_eq(&p->root_to, rt)) {
    st = inconsistent(a, x, from, to, rt, &p->root_to, "second %llu: extender %s's calendar root is %s, %s is %s",
                      (unsigned long long)to, x->url, hex(&p->root_to, h1), what_to, hex(rt, h2));
  } else if (kl_calproof_verify(p, rf, rt, e)) {
    st = inconsistent(a, x, from, to, rt, &p->root_to, "extender %s: %s (root(%llu) %s, root(%llu) %s)", x->url, e->msg,
                      (unsigned long long)from, hex(rf, h1), (unsigned long long)to, hex(rt, h2));
  }
  free(p);
  if (st == KL_EXIT_OK) {
    a->checks++;
    say(a, "ok - %s (%llu) is a prefix of %s (%llu) at %s", what_from, (unsigned long long)from, what_to,
        (unsigned long long)to, x->url);
  }
  return st;
}

/* Every publication within x's calendar, in order, up to x's head. */
static int check_pubs(audit_t *a, aud_ext_t *x, kl_err_t *e) {
  const kl_calhead_t *hd = &x->head;
  const pub_t *prev = NULL;
  char w1[64], w2[64];
  size_t later = 0;
  int st;
  for (size_t i = 0; i < a->n_pubs; i++) {
    const pub_t *p = &a->pubs[i];
    if (p->t < hd->genesis) /* not of this calendar, or an extender hiding them behind its genesis */
      return inconsistent(a, x, p->t, hd->genesis, NULL, NULL,
                          "publication %llu is before extender %s's calendar genesis %llu: not this calendar",
                          (unsigned long long)p->t, x->url, (unsigned long long)hd->genesis);
    if (p->t > hd->last) {
      later++;
      continue;
    }
    if (prev) {
      snprintf(w1, sizeof w1, "publication %llu", (unsigned long long)prev->t);
      snprintf(w2, sizeof w2, "publication %llu", (unsigned long long)p->t);
      if ((st = check_span(a, x, prev->t, &prev->h, w1, p->t, &p->h, w2, e))) return st;
    }
    prev = p;
  }
  if (prev) {
    snprintf(w1, sizeof w1, "publication %llu", (unsigned long long)prev->t);
    if ((st = check_span(a, x, prev->t, &prev->h, w1, hd->last, &hd->root, "the head", e))) return st;
  }
  a->unchecked += later;
  if (later && a->behind[0] == '\0')
    snprintf(a->behind, sizeof a->behind,
             "extender %s's head %llu is before %zu publications (the latest %llu): lagging, or hiding them", x->url,
             (unsigned long long)hd->last, later, (unsigned long long)a->pubs[a->n_pubs - 1].t);
  return KL_EXIT_OK;
}

/* Every head is a prefix of the longest calendar (same genesis, and a proof from the longest). */
static int check_heads(audit_t *a, kl_err_t *e) {
  aud_ext_t *m = &a->ext[0];
  char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
  for (size_t i = 1; i < a->n_ext; i++)
    if (a->ext[i].head.last > m->head.last) m = &a->ext[i];
  for (size_t i = 0; i < a->n_ext; i++) {
    aud_ext_t *x = &a->ext[i];
    if (x == m) continue;
    if (x->head.genesis != m->head.genesis)
      return inconsistent(a, x, x->head.genesis, m->head.genesis, NULL, NULL,
                          "extender %s's calendar starts at %llu, extender %s's at %llu", x->url,
                          (unsigned long long)x->head.genesis, m->url, (unsigned long long)m->head.genesis);
    char what[600];
    snprintf(what, sizeof what, "the head of %s", x->url);
    int st = check_span(a, m, x->head.last, &x->head.root, what, m->head.last, &m->head.root, "the head", e);
    if (st == KL_EXIT_VERIFY && x->head.last == m->head.last)
      snprintf(a->why, sizeof a->why, "second %llu: extenders %s and %s disagree: %s and %s",
               (unsigned long long)x->head.last, x->url, m->url, hex(&x->head.root, h1), hex(&m->head.root, h2));
    if (st) return st;
  }
  return KL_EXIT_OK;
}

/* --state FILE: "second=N" and "root=HEX" lines. *have false when the file does not exist. */
static int state_load(const char *path, bool *have, uint64_t *t, kl_imprint_t *root, kl_err_t *e) {
  FILE *f = fopen(path, "r");
  char line[300];
  bool ht = false, hr = false;
  *have = false;
  if (f == NULL) return KL_EXIT_OK;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0') continue;
    if (strncmp(line, "second=", 7) == 0) ht = cli_parse_u64(line + 7, t);
    else if (strncmp(line, "root=", 5) == 0) hr = kl_imprint_parse_text(root, line + 5, NULL) == 0;
  }
  fclose(f);
  if (!ht || !hr) {
    kl_err_set(e, KL_EFORMAT, "state file %s: expected lines second=UNIXTIME and root=HEX", path);
    return KL_EXIT_FORMAT;
  }
  *have = true;
  return KL_EXIT_OK;
}

static int state_save(const char *path, const kl_calhead_t *h, kl_err_t *e) {
  char buf[400], hx[2 * KL_IMPRINT_MAX + 1];
  int n = snprintf(buf, sizeof buf, "# keyless audit: the last calendar head checked\nsecond=%llu\nroot=%s\n",
                   (unsigned long long)h->last, hex(&h->root, hx));
  int r = cli_write_file_atomic(path, (const uint8_t *)buf, (size_t)n, true, e);
  if (r) {
    kl_err_wrap(e, "state file %s", path);
    return cli_exit_for(r);
  }
  return KL_EXIT_OK;
}

static bool same_forest(const kl_calforest_t *a, const kl_calforest_t *b) {
  if (a->n != b->n || a->m != b->m) return false;
  for (size_t j = 0; j < a->m; j++)
    if (!kl_imprint_eq(&a->tree[j], &b->tree[j])) return false;
  return true;
}

/* --rehash FROM:TO on x: the forest before FROM and the leaves, root(FROM - 1) and root(TO) tied
 * to x's head by proofs, every publication in between compared. */
static int rehash(audit_t *a, aud_ext_t *x, uint64_t from, uint64_t to, kl_err_t *e) {
  const kl_calhead_t *hd = &x->head;
  char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1], w[64];
  if (from < hd->genesis || to > hd->last) {
    kl_err_set(e, KL_ERANGE, "--rehash %llu:%llu: extender %s holds %llu..%llu", (unsigned long long)from,
               (unsigned long long)to, x->url, (unsigned long long)hd->genesis, (unsigned long long)hd->last);
    return KL_EXIT_EXTENDER;
  }
  kl_calrange_t *r = malloc(sizeof *r);
  kl_calproof_t *p = malloc(sizeof *p);
  kl_calforest_t f;
  kl_hasher_t hs;
  kl_imprint_t root;
  int st = KL_EXIT_OK;
  size_t pi = 0;
  if (r == NULL || p == NULL || kl_hasher_init(&hs, e)) {
    free(r);
    free(p);
    return KL_EXIT_GENERAL;
  }
  for (uint64_t lo = from; st == KL_EXIT_OK && lo <= to; lo += KL_CALRANGE_MAX) {
    uint64_t hi = to - lo >= KL_CALRANGE_MAX ? lo + KL_CALRANGE_MAX - 1 : to;
    if ((st = aud_range(x, lo, hi, r, e))) break;
    if (lo == from) {
      f = r->before;
      if (from == hd->genesis) { /* the forest before genesis is the deterministic genesis nodes */
        for (size_t j = 0, b = 64; j < f.m && st == KL_EXIT_OK; j++) {
          while (b-- > 0 && !((from >> b) & 1)) {}
          kl_imprint_t g;
          kl_cal_genesis_node((unsigned)b, (from >> (b + 1)) << 1, &g);
          if (!kl_imprint_eq(&g, &f.tree[j]))
            st = inconsistent(a, x, from, from, &g, &f.tree[j],
                              "extender %s: the perfect tree of height %zu before genesis %llu is %s, not %s", x->url,
                              b, (unsigned long long)from, hex(&f.tree[j], h1), hex(&g, h2));
        }
      } else if ((st = kl_calforest_root(&f, &hs, &root, e) ? KL_EXIT_GENERAL : KL_EXIT_OK) == KL_EXIT_OK) {
        st = check_span(a, x, from - 1, &root, "the root recomputed from the forest", hd->last, &hd->root, "the head", e);
      }
    } else if (!same_forest(&r->before, &f)) {
      st = inconsistent(a, x, lo, lo, NULL, NULL, "extender %s: the forest before %llu differs from the leaves before it",
                        x->url, (unsigned long long)lo);
    }
    for (uint64_t t = lo; st == KL_EXIT_OK && t <= hi; t++) {
      if (kl_calforest_push(&f, &hs, &r->leaf[t - lo], e) || kl_calforest_root(&f, &hs, &root, e)) {
        st = KL_EXIT_GENERAL;
        break;
      }
      while (pi < a->n_pubs && a->pubs[pi].t < t) pi++;
      if (pi < a->n_pubs && a->pubs[pi].t == t && !kl_imprint_eq(&a->pubs[pi].h, &root))
        st = inconsistent(a, x, t, t, &a->pubs[pi].h, &root,
                          "second %llu: the root recomputed from extender %s's leaves is %s, the publication is %s",
                          (unsigned long long)t, x->url, hex(&root, h1), hex(&a->pubs[pi].h, h2));
    }
  }
  if (st == KL_EXIT_OK) {
    snprintf(w, sizeof w, "the root recomputed at %llu", (unsigned long long)to);
    st = check_span(a, x, to, &root, w, hd->last, &hd->root, "the head", e);
  }
  if (st == KL_EXIT_OK) say(a, "ok - rehashed %llu..%llu at %s", (unsigned long long)from, (unsigned long long)to, x->url);
  kl_hasher_close(&hs);
  free(r);
  free(p);
  return st;
}

static int cmp_pub(const void *x, const void *y) {
  const pub_t *p = x, *q = y;
  return p->t < q->t ? -1 : p->t > q->t;
}

/* The publications sorted, duplicates dropped; two different hashes for one second: 6. */
static int pubs_sort(audit_t *a) {
  char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
  size_t n = 0;
  qsort(a->pubs, a->n_pubs, sizeof *a->pubs, cmp_pub);
  for (size_t i = 0; i < a->n_pubs; i++) {
    if (n > 0 && a->pubs[n - 1].t == a->pubs[i].t) {
      if (!kl_imprint_eq(&a->pubs[n - 1].h, &a->pubs[i].h))
        return inconsistent(a, NULL, a->pubs[i].t, a->pubs[i].t, &a->pubs[n - 1].h, &a->pubs[i].h,
                            "second %llu: two publications disagree: %s and %s", (unsigned long long)a->pubs[i].t,
                            hex(&a->pubs[n - 1].h, h1), hex(&a->pubs[i].h, h2));
      continue;
    }
    a->pubs[n++] = a->pubs[i];
  }
  a->n_pubs = n;
  return KL_EXIT_OK;
}

static void usage(FILE *f) {
  fprintf(f, "usage: keyless audit -X URL [-X URL]... [-P PUBFILE [-V ANCHOR.pem]... [--cnstr OID=VALUE]...\n"
             "         [--publications-file-no-verify]] [--pub-str STRING]... [--rehash FROM:TO]\n"
             "         [--state FILE] [--json] [-c S] [--ca FILE]\n"
             "  Checks the calendar through extenders' public endpoints (GET /calendar/head,\n"
             "  /calendar/consistency, /calendar/range): every publication within an extender's calendar\n"
             "  is linked to the next and to the head by a consistency proof verified here.\n"
             "  -X URL: an extender, http(s)://host:port (ksi+http(s):// too; the path and login are\n"
             "          ignored); repeat it to check that all serve the same calendar\n"
             "  -P PUBFILE: a publications file or an http(s):// URL; --pub-str: a publication string\n"
             "  --rehash FROM:TO: recompute the roots of seconds FROM..TO from the leaves (at most\n"
             "          512 per request) and tie both ends to the head\n"
             "  --state FILE: monitor mode: the head checked last time must be a prefix of every head\n"
             "          now; then FILE keeps the newest head (written atomically; created if missing)\n"
             "  --json: one JSON object on standard output\n"
             "  -c S: connect and read timeout in seconds (default 10)\n"
             "  exit 0: all consistent; 6: the first inconsistency, named (seconds, hashes); 7: an\n"
             "  extender's head is behind a publication or the state (lagging, or hiding them)\n"
             CLI_WITNESS_HELP CLI_TLS_HELP);
  cli_exit_table(f);
}

static void report_json(const audit_t *a, int st, const char *err) {
  cli_json_t j;
  json_begin(&j, stdout);
  json_obj(&j, NULL);
  json_str(&j, "result", st == KL_EXIT_OK       ? "consistent"
                         : st != KL_EXIT_VERIFY ? "error"
                         : a->unwitnessed       ? "unwitnessed"
                                                : "inconsistent");
  json_u64(&j, "exit", (uint64_t)st);
  json_u64(&j, "checks", a->checks);
  json_u64(&j, "publications", a->n_pubs);
  json_u64(&j, "publications_after_head", a->unchecked);
  json_arr(&j, "extenders");
  for (size_t i = 0; i < a->n_ext; i++) {
    json_obj(&j, NULL);
    json_str(&j, "url", a->ext[i].url);
    if (a->ext[i].head.last) {
      json_u64(&j, "genesis", a->ext[i].head.genesis);
      json_u64(&j, "head", a->ext[i].head.last);
      json_imprint(&j, "root", &a->ext[i].head.root);
    }
    json_end_obj(&j);
  }
  json_end_arr(&j);
  if (st == KL_EXIT_VERIFY) {
    json_obj(&j, "inconsistency");
    json_str(&j, "message", a->why);
    if (a->where) json_str(&j, "extender", a->where);
    json_u64(&j, "from", a->t1);
    json_u64(&j, "to", a->t2);
    if (a->hashes) {
      json_imprint(&j, "expected", &a->want);
      json_imprint(&j, "found", &a->got);
    }
    json_end_obj(&j);
  } else if (st != KL_EXIT_OK) {
    json_str(&j, "error", err);
  }
  json_end_obj(&j);
  json_finish(&j);
}

static int run(audit_t *a, const char *state, bool rehash_on, uint64_t rh_from, uint64_t rh_to, kl_err_t *e) {
  int st;
  char hx[2 * KL_IMPRINT_MAX + 1];
  if ((st = pubs_sort(a))) return st;
  for (size_t i = 0; i < a->n_ext; i++) {
    if ((st = aud_head(&a->ext[i], e))) return st;
    say(a, "ok - extender %s: calendar %llu..%llu, root %s", a->ext[i].url, (unsigned long long)a->ext[i].head.genesis,
        (unsigned long long)a->ext[i].head.last, hex(&a->ext[i].head.root, hx));
  }
  bool have = false;
  kl_calhead_t old = {0};
  if (state && (st = state_load(state, &have, &old.last, &old.root, e))) return st;
  for (size_t i = 0; have && i < a->n_ext; i++) {
    aud_ext_t *x = &a->ext[i];
    if (x->head.last < old.last) {
      if (a->behind[0] == '\0')
        snprintf(a->behind, sizeof a->behind, "extender %s's head %llu is behind the head checked before (%llu)", x->url,
                 (unsigned long long)x->head.last, (unsigned long long)old.last);
      continue;
    }
    if ((st = check_span(a, x, old.last, &old.root, "the head checked before (state file)", x->head.last, &x->head.root,
                         "the head", e)))
      return st;
  }
  if (a->n_ext > 1 && (st = check_heads(a, e))) return st;
  for (size_t i = 0; i < a->n_ext; i++)
    if ((st = check_pubs(a, &a->ext[i], e))) return st;
  for (size_t i = 0; rehash_on && i < a->n_ext; i++)
    if ((st = rehash(a, &a->ext[i], rh_from, rh_to, e))) return st;
  if (state) {
    const kl_calhead_t *m = &a->ext[0].head;
    for (size_t i = 1; i < a->n_ext; i++)
      if (a->ext[i].head.last > m->last) m = &a->ext[i].head;
    if ((!have || m->last >= old.last) && (st = state_save(state, m, e))) return st;
  }
  if (a->behind[0]) { /* all else holds, but not everything could be checked everywhere */
    kl_err_set(e, KL_ESERVICE, "%s", a->behind);
    return KL_EXIT_EXTENDER;
  }
  return KL_EXIT_OK;
}

int cmd_audit(int argc, char **argv) {
  enum { O_PUBSTR = 256, O_CNSTR, O_NOVERIFY, O_REHASH, O_STATE, O_JSON, O_CA };
  static const struct option opts[] = {
      {"extender", required_argument, NULL, 'X'},      {"publications", required_argument, NULL, 'P'},
      {"trust-anchor", required_argument, NULL, 'V'},  {"cnstr", required_argument, NULL, O_CNSTR},
      {"publications-file-no-verify", no_argument, NULL, O_NOVERIFY},
      {"pub-str", required_argument, NULL, O_PUBSTR},  {"rehash", required_argument, NULL, O_REHASH},
      {"state", required_argument, NULL, O_STATE},     {"json", no_argument, NULL, O_JSON},
      {"ca", required_argument, NULL, O_CA},           {"help", no_argument, NULL, 'h'}, CLI_WITNESS_OPTIONS,
      {NULL, 0, NULL, 0}};
  static audit_t a; /* 16 extenders' URLs and heads: not on the stack */
  const char *urls[MAX_EXT], *pubfile = NULL, *state = NULL, *pubstrs[64];
  size_t n_urls = 0, n_pubstrs = 0;
  uint64_t timeout = 10, rh_from = 0, rh_to = 0;
  bool rehash_on = false;
  cli_trust_t trust = {0};
  cli_tls_t tls = {0};
  cli_witness_t wit = {0}; /* --witness: each publication carries k cosignatures (witness_check.c) */
  kl_err_t e = {0};
  int c, st;
  memset(&a, 0, sizeof a);
  optind = 1;
  while ((c = getopt_long(argc, argv, "X:P:V:c:h", opts, NULL)) != -1) {
    switch (c) {
      case 'X':
        if (n_urls == MAX_EXT) {
          fprintf(stderr, "keyless audit: at most %d extenders (-X)\n", MAX_EXT);
          return KL_EXIT_USAGE;
        }
        urls[n_urls++] = optarg;
        break;
      case 'P': pubfile = optarg; break;
      case 'V':
        if (trust.n_anchors == sizeof trust.anchors / sizeof trust.anchors[0]) {
          fprintf(stderr, "keyless audit: too many -V anchors\n");
          return KL_EXIT_USAGE;
        }
        trust.anchors[trust.n_anchors++] = optarg;
        break;
      case O_CNSTR:
        if (!cli_trust_add_cnstr(&trust, optarg)) {
          fprintf(stderr, "keyless audit: --cnstr wants OID=VALUE, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_NOVERIFY: trust.no_verify = true; break;
      case O_PUBSTR:
        if (n_pubstrs == sizeof pubstrs / sizeof pubstrs[0]) {
          fprintf(stderr, "keyless audit: at most 64 --pub-str\n");
          return KL_EXIT_USAGE;
        }
        pubstrs[n_pubstrs++] = optarg;
        break;
      case O_REHASH: {
        char *colon = strchr(optarg, ':');
        if (colon) *colon = '\0';
        rehash_on = colon && cli_parse_u64(optarg, &rh_from) && cli_parse_u64(colon + 1, &rh_to) && rh_from <= rh_to;
        if (colon) *colon = ':';
        if (!rehash_on) {
          fprintf(stderr, "keyless audit: --rehash wants FROM:TO (UNIX seconds, FROM <= TO), got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      }
      case O_STATE: state = optarg; break;
      case O_JSON: a.json = true; break;
      case O_CA: tls.ca = optarg; break;
      case 'c':
        if (!cli_parse_u64(optarg, &timeout) || timeout == 0 || timeout > 3600) {
          fprintf(stderr, "keyless audit: -c wants seconds, 1..3600, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case CLI_O_WITNESS:
      case CLI_O_WITNESSES_REQUIRED:
      case CLI_O_WITNESS_FILE:
        if ((st = cli_witness_opt(&wit, "audit", c, optarg))) return st;
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if (optind < argc || n_urls == 0) {
    fprintf(stderr, "keyless audit: %s\n", n_urls == 0 ? "give at least one extender (-X URL)" : "unexpected argument");
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  if ((st = cli_tls_setup(&tls, false, &e)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless audit: %s\n", e.msg);
    return st;
  }
  for (size_t i = 0; i < n_urls; i++)
    if ((st = aud_ext_init(&a.ext[a.n_ext++], urls[i], (int)timeout * 1000, &e))) {
      fprintf(stderr, "keyless audit: %s\n", e.msg);
      return st;
    }
  kl_pubfile_t *pf = NULL;
  if (pubfile && (st = cli_load_pubfile(pubfile, &trust, &pf, &e)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless audit: %s\n", e.msg);
    return st;
  }
  a.pubs = calloc((pf ? pf->n_pubs : 0) + n_pubstrs + 1, sizeof *a.pubs);
  if (a.pubs == NULL) {
    kl_pubfile_free(pf);
    fprintf(stderr, "keyless audit: out of memory\n");
    return KL_EXIT_GENERAL;
  }
  for (size_t i = 0; pf && i < pf->n_pubs; i++) {
    a.pubs[a.n_pubs].t = pf->pubs[i].data.time;
    a.pubs[a.n_pubs++].h = pf->pubs[i].data.hash;
  }
  kl_pubfile_free(pf);
  for (size_t i = 0; i < n_pubstrs; i++) {
    if (kl_pubstr_decode(pubstrs[i], &a.pubs[a.n_pubs].t, &a.pubs[a.n_pubs].h, &e)) {
      fprintf(stderr, "keyless audit: --pub-str %s: %s\n", pubstrs[i], e.msg);
      free(a.pubs);
      return KL_EXIT_USAGE;
    }
    a.n_pubs++;
  }
  st = run(&a, state, rehash_on, rh_from, rh_to, &e);
  for (size_t i = 0; st == KL_EXIT_OK && wit.n && i < a.n_pubs; i++)
    if ((st = cli_witness_check_pub(&wit, pubfile, a.pubs[i].t, &a.pubs[i].h, a.why, sizeof a.why)) != KL_EXIT_OK) {
      a.t1 = a.t2 = a.pubs[i].t;
      a.unwitnessed = true;
      snprintf(e.msg, sizeof e.msg, "%.500s", a.why);
    }
  cli_witness_free(&wit);
  if (a.json) {
    report_json(&a, st, e.msg);
  } else if (st == KL_EXIT_OK) {
    printf("OK: consistent (%llu checks, %zu publications, %zu extenders)", (unsigned long long)a.checks, a.n_pubs,
           a.n_ext);
    putchar('\n');
  } else if (st == KL_EXIT_VERIFY) {
    /* A missing cosignature says nothing against the calendar: name it for what it is. */
    printf("%s: %s\n", a.unwitnessed ? "UNWITNESSED (the calendar is consistent)" : "INCONSISTENT", a.why);
  } else {
    fprintf(stderr, "keyless audit: %s\n", e.msg);
  }
  free(a.pubs);
  return st;
}
