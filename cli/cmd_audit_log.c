/* keyless audit-log verify: checks a core's audit log offline (core/src/auditlog.h, docs/formats.md
 * §9): the hash chain (a record altered, removed, reordered, repeated, or a torn tail: the first
 * bad seq is named) and every record's own signature (its document hash is the record's hash;
 * internal policy, or key/publication-based with -P like `keyless verify`). --record N checks one
 * record with its signature and prints only it; --export writes it and its signature as two
 * files that `keyless verify -i X.ksig -f X` checks without the rest of the log. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auditlog.h"
#include "cli.h"
#include "keyless/sig.h"
#include "keyless/verify.h"

#define MAX_FILE (256u << 20)

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless audit-log verify DIR|FILE [--record N [--export PREFIX]] [--all-signed]\n"
          "         [--policy POLICY] [-P PUBFILE [-V ANCHOR.pem]... [--cnstr OID=VALUE]...] [--json]\n"
          "  DIR: a core's DATA_DIR/audit (audit.log and audit.ksig); FILE: an audit.log, its signatures\n"
          "      in audit.ksig next to it (or --signatures FILE)\n"
          "  checks the hash chain (a record altered, removed, reordered or cut off is reported with the\n"
          "      first bad seq) and each record's own signature (the record's hash is its document hash)\n"
          "  --record N: check record N and its signature only, and print that record (nothing of the others)\n"
          "  --export PREFIX: with --record, write PREFIX (the record's bytes) and PREFIX.ksig (its\n"
          "      signature): keyless verify -i PREFIX.ksig -f PREFIX checks them without the log\n"
          "  --all-signed: records not signed yet (the newest, pending) fail the check\n"
          "  POLICY: internal (default without -P), auto (default with -P), key, publication\n" CLI_TLS_HELP);
  cli_exit_table(f);
}

typedef struct args {
  const char *path, *sigs, *export_to, *pubfile;
  uint64_t record;
  bool has_record, json, all_signed;
  int policy;
  cli_trust_t trust;
  cli_tls_t tls;
} args_t;

typedef struct result {
  uint64_t bad_seq; /* 0: none */
  int status;
  char msg[KL_ERR_MSG_MAX + 64];
  size_t records, signed_ok, pending;
} result_t;

static int parse_args(int argc, char **argv, args_t *a) {
  enum { O_RECORD = 256, O_EXPORT, O_JSON, O_ALL, O_POLICY, O_CNSTR, O_SIGS, O_CA };
  static const struct option opts[] = {
      {"record", required_argument, NULL, O_RECORD}, {"export", required_argument, NULL, O_EXPORT},
      {"json", no_argument, NULL, O_JSON}, {"all-signed", no_argument, NULL, O_ALL},
      {"policy", required_argument, NULL, O_POLICY}, {"publications", required_argument, NULL, 'P'},
      {"trust-anchor", required_argument, NULL, 'V'}, {"cnstr", required_argument, NULL, O_CNSTR},
      {"signatures", required_argument, NULL, O_SIGS}, {"ca", required_argument, NULL, O_CA},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c;
  a->policy = -1;
  optind = 1;
  while ((c = getopt_long(argc, argv, "P:V:h", opts, NULL)) != -1) {
    switch (c) {
      case O_RECORD:
        if (!cli_parse_u64(optarg, &a->record) || a->record == 0) {
          fprintf(stderr, "keyless audit-log: --record wants a seq (1, 2, ...), got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        a->has_record = true;
        break;
      case O_EXPORT: a->export_to = optarg; break;
      case O_JSON: a->json = true; break;
      case O_ALL: a->all_signed = true; break;
      case O_SIGS: a->sigs = optarg; break;
      case O_CA: a->tls.ca = optarg; break;
      case 'P': a->pubfile = optarg; break;
      case 'V':
        if (a->trust.n_anchors == sizeof a->trust.anchors / sizeof a->trust.anchors[0]) {
          fprintf(stderr, "keyless audit-log: too many -V anchors\n");
          return KL_EXIT_USAGE;
        }
        a->trust.anchors[a->trust.n_anchors++] = optarg;
        break;
      case O_CNSTR:
        if (!cli_trust_add_cnstr(&a->trust, optarg)) {
          fprintf(stderr, "keyless audit-log: --cnstr wants OID=VALUE (e.g. E=publications@example.org), got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_POLICY:
        if (strcmp(optarg, "internal") == 0) a->policy = KL_POLICY_INTERNAL;
        else if (strcmp(optarg, "auto") == 0) a->policy = KL_POLICY_GENERAL;
        else if (strcmp(optarg, "key") == 0) a->policy = KL_POLICY_KEY;
        else if (strcmp(optarg, "publication") == 0) a->policy = KL_POLICY_PUBFILE;
        else {
          fprintf(stderr, "keyless audit-log: unknown --policy '%s' (internal, auto, key, publication)\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return -1;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if (optind + 2 != argc || strcmp(argv[optind], "verify") != 0) {
    fprintf(stderr, "keyless audit-log: want 'verify DIR|FILE'\n");
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  a->path = argv[optind + 1];
  if (a->export_to && !a->has_record) {
    fprintf(stderr, "keyless audit-log: --export needs --record N\n");
    return KL_EXIT_USAGE;
  }
  if (a->policy < 0) a->policy = a->pubfile ? KL_POLICY_GENERAL : KL_POLICY_INTERNAL;
  if (a->policy != KL_POLICY_INTERNAL && a->pubfile == NULL) {
    fprintf(stderr, "keyless audit-log: --policy %s needs -P PUBFILE\n", kl_policy_name((kl_policy_t)a->policy));
    return KL_EXIT_USAGE;
  }
  return 0;
}

/* Keeps the failure with the lowest seq (the first bad record); the first one found on a tie. */
static void fail(result_t *r, uint64_t seq, int status, const char *fmt, ...) KL_PRINTF(4, 5);
static void fail(result_t *r, uint64_t seq, int status, const char *fmt, ...) {
  if (r->status && r->bad_seq <= seq) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof r->msg, fmt, ap);
  va_end(ap);
  r->bad_seq = seq;
  r->status = status;
}

/* Record rec's signature under the chosen policy: 0 when it verifies, else a message. */
static int check_sig(const args_t *a, const kl_pubfile_t *pf, const kl_audit_rec_t *rec, const kl_audit_sigent_t *ent,
                     char *why, size_t cap) {
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (kl_sig_parse(ent->sig, ent->sig_len, &sig, &e)) {
    snprintf(why, cap, "its signature does not parse: %.300s", e.msg);
    return KL_EXIT_FORMAT;
  }
  kl_verify_opts_t o = {0};
  kl_verify_result_t res;
  o.doc_hash = &rec->hash;
  o.pubfile = pf;
  kl_verify(sig, (kl_policy_t)a->policy, &o, &res);
  kl_sig_free(sig);
  if (res.verdict == KL_VER_OK) return 0;
  if (res.code == KL_VC_GEN_01)
    snprintf(why, cap, "altered: its hash is not its signature's document hash (GEN-01)");
  else
    snprintf(why, cap, "its signature %s: %s %s%s%.300s", res.verdict == KL_VER_NA ? "is inconclusive" : "fails",
             kl_vcode_str(res.code), kl_vcode_msg(res.code), res.message[0] ? ": " : "", res.message);
  return KL_EXIT_VERIFY;
}

static void print_record(const args_t *a, const kl_audit_rec_t *rec, const result_t *r) {
  char t[40], ty[300], ac[300], de[KL_AUDIT_MAX_TEXT * 4 + 1];
  if (a->json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "result", r->status ? "FAIL" : "OK");
    json_u64(&j, "seq", rec->seq);
    json_u64(&j, "time_ms", rec->time_ms);
    json_u64(&j, "node", rec->node);
    json_str(&j, "type", rec->type);
    json_str(&j, "actor", rec->actor);
    json_str(&j, "details", rec->details);
    json_imprint(&j, "hash", &rec->hash);
    json_imprint(&j, "prev", &rec->prev);
    if (r->status) json_str(&j, "message", r->msg);
    json_end_obj(&j);
    json_finish(&j);
    return;
  }
  printf("seq %llu  %s  node %llu  %s  by %s\n  %s\n", (unsigned long long)rec->seq, cli_utc(rec->time_ms / 1000, t, sizeof t),
         (unsigned long long)rec->node, cli_printable(rec->type, ty, sizeof ty), cli_printable(rec->actor, ac, sizeof ac),
         cli_printable(rec->details, de, sizeof de));
  if (r->status) printf("FAIL: %s\n", r->msg);
  else printf("OK: record %llu verified alone with its own signature\n", (unsigned long long)rec->seq);
}

static int export_record(const args_t *a, const kl_audit_rec_t *rec, const kl_audit_sigent_t *ent, kl_err_t *e) {
  char p[1100];
  int r = cli_write_file_atomic(a->export_to, rec->raw, rec->raw_len, false, e);
  snprintf(p, sizeof p, "%s.ksig", a->export_to);
  if (r == 0) r = cli_write_file_atomic(p, ent->sig, ent->sig_len, false, e);
  return r;
}

/* The whole log: every record's signature, then the chain with what the signatures proved. */
static void verify_all(const args_t *a, const kl_pubfile_t *pf, const kl_audit_scan_t *s, const kl_audit_sigs_t *g,
                       result_t *r) {
  bool *proven = calloc(s->n ? s->n : 1, sizeof *proven);
  char why[KL_ERR_MSG_MAX + 32];
  kl_err_t e = {0};
  uint64_t bad = 0, last_signed = 0;
  r->records = s->n;
  if (proven == NULL) {
    fail(r, 0, KL_EXIT_GENERAL, "out of memory");
    return;
  }
  for (size_t i = 0; i < s->n; i++) {
    const kl_audit_sigent_t *ent = kl_audit_sigs_find(g, s->recs[i].seq);
    if (ent == NULL) {
      r->pending++;
      continue;
    }
    if (s->recs[i].seq > last_signed) last_signed = s->recs[i].seq;
    int st = check_sig(a, pf, &s->recs[i], ent, why, sizeof why);
    if (st) fail(r, s->recs[i].seq, st, "seq %llu: %s", (unsigned long long)s->recs[i].seq, why);
    else proven[i] = true, r->signed_ok++;
  }
  if (kl_audit_chain_check(s->recs, s->n, proven, &bad, &e)) fail(r, bad, KL_EXIT_VERIFY, "%s", e.msg);
  if (s->torn || s->bad) {
    uint64_t next = s->n ? s->recs[s->n - 1].seq + 1 : 1;
    fail(r, next, KL_EXIT_FORMAT, "seq %llu: %s", (unsigned long long)next, s->err.msg);
  }
  uint64_t end = s->n ? s->recs[s->n - 1].seq : 0;
  if (g->n && g->ents[g->n - 1].seq > end && !s->torn && !s->bad) /* signed records that are gone */
    fail(r, end + 1, KL_EXIT_VERIFY, "seq %llu missing (removed, or the log cut short): audit.ksig holds signatures of "
         "records up to seq %llu", (unsigned long long)end + 1, (unsigned long long)g->ents[g->n - 1].seq);
  for (size_t i = 0; i < s->n; i++) /* signed records after an unsigned one: its signature was removed */
    if (!proven[i] && kl_audit_sigs_find(g, s->recs[i].seq) == NULL && s->recs[i].seq < last_signed)
      fail(r, s->recs[i].seq, KL_EXIT_VERIFY, "seq %llu: no signature, but later records are signed (its signature was "
           "removed from audit.ksig)", (unsigned long long)s->recs[i].seq);
  if (a->all_signed && r->pending && !r->status)
    fail(r, last_signed + 1, KL_EXIT_VERIFY, "seq %llu: not signed yet (--all-signed)", (unsigned long long)last_signed + 1);
  if (g->torn || g->bad) fail(r, UINT64_MAX, KL_EXIT_FORMAT, "audit.ksig: %s", g->err.msg);
  free(proven);
}

static void report(const args_t *a, const result_t *r, const kl_audit_scan_t *s) {
  if (a->json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "result", r->status ? "FAIL" : "OK");
    json_u64(&j, "records", r->records);
    json_u64(&j, "signed", r->signed_ok);
    json_u64(&j, "pending", r->pending);
    if (r->status) {
      if (r->bad_seq != UINT64_MAX) json_u64(&j, "bad_seq", r->bad_seq);
      json_str(&j, "message", r->msg);
    }
    json_end_obj(&j);
    json_finish(&j);
  } else if (r->status) {
    printf("FAIL: %s\n", r->msg);
  } else {
    printf("OK: %zu records (seq 1..%llu), chain intact; %zu signed and verified (%s policy)%s%zu pending (not signed yet)\n",
           r->records, s->n ? (unsigned long long)s->recs[s->n - 1].seq : 0ULL, r->signed_ok,
           kl_policy_name((kl_policy_t)a->policy), r->pending ? "; " : ", ", r->pending);
  }
}

int cmd_audit_log(int argc, char **argv) {
  args_t a = {0};
  int st = parse_args(argc, argv, &a);
  if (st != 0) return st < 0 ? KL_EXIT_OK : st;
  char logp[1100], sigp[1100];
  struct stat sb;
  uint8_t *lb = NULL, *sgb = NULL;
  size_t ll = 0, sl = 0;
  kl_err_t e = {0};
  kl_audit_scan_t s = {0};
  kl_audit_sigs_t g = {0};
  kl_pubfile_t *pf = NULL;
  result_t r = {0};
  int rc;
  if (stat(a.path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    snprintf(logp, sizeof logp, "%s/audit.log", a.path);
    snprintf(sigp, sizeof sigp, "%s/audit.ksig", a.path);
  } else {
    const char *slash = strrchr(a.path, '/');
    snprintf(logp, sizeof logp, "%s", a.path);
    snprintf(sigp, sizeof sigp, "%.*saudit.ksig", slash ? (int)(slash - a.path + 1) : 0, a.path);
  }
  if (a.sigs) snprintf(sigp, sizeof sigp, "%s", a.sigs);
  if ((st = cli_tls_setup(&a.tls, false, &e)) != KL_EXIT_OK) goto err;
  if ((rc = cli_read_file(logp, MAX_FILE, &lb, &ll, &e))) {
    st = cli_exit_for(rc);
    goto err;
  }
  if ((rc = cli_read_file(sigp, MAX_FILE, &sgb, &sl, &e))) {
    st = cli_exit_for(rc);
    goto err;
  }
  if (kl_audit_log_scan(lb, ll, &s, &e) || kl_audit_sigs_scan(sgb, sl, &g, &e)) {
    st = KL_EXIT_FORMAT;
    goto err;
  }
  if (a.pubfile && (st = cli_load_pubfile(a.pubfile, &a.trust, &pf, &e)) != KL_EXIT_OK) goto err;
  if (a.has_record) {
    const kl_audit_rec_t *rec = NULL;
    for (size_t i = 0; i < s.n && rec == NULL; i++) rec = s.recs[i].seq == a.record ? &s.recs[i] : NULL;
    const kl_audit_sigent_t *ent = kl_audit_sigs_find(&g, a.record);
    char why[KL_ERR_MSG_MAX + 32];
    if (rec == NULL) {
      snprintf(e.msg, sizeof e.msg, "%.300s: no record with seq %llu%s%.150s", logp, (unsigned long long)a.record,
               s.torn || s.bad ? " (the log is damaged: " : "", s.torn || s.bad ? s.err.msg : "");
      if (s.torn || s.bad) strncat(e.msg, ")", sizeof e.msg - strlen(e.msg) - 1);
      st = KL_EXIT_VERIFY;
      goto err;
    }
    if (ent == NULL)
      fail(&r, a.record, KL_EXIT_VERIFY, "seq %llu: not signed (yet): no signature in audit.ksig", (unsigned long long)a.record);
    else if ((st = check_sig(&a, pf, rec, ent, why, sizeof why)))
      fail(&r, a.record, st, "seq %llu: %s", (unsigned long long)a.record, why);
    print_record(&a, rec, &r);
    if (r.status == 0 && a.export_to && (rc = export_record(&a, rec, ent, &e))) {
      fprintf(stderr, "keyless audit-log: %s\n", e.msg);
      st = cli_exit_for(rc);
      goto out;
    }
    st = r.status;
    goto out;
  }
  verify_all(&a, pf, &s, &g, &r);
  report(&a, &r, &s);
  st = r.status;
  goto out;
err:
  if (a.json) printf("{\"result\":\"ERROR\",\"exit_status\":%d}\n", st);
  fprintf(stderr, "keyless audit-log: %s\n", e.msg);
out:
  kl_pubfile_free(pf);
  kl_audit_scan_free(&s);
  kl_audit_sigs_free(&g);
  free(lb);
  free(sgb);
  return st;
}
