/* keyless calendar init|append|root|chain|stat|audit: operate a calendar directory. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "keyless/calendar.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless calendar init   -D DIR [--genesis UNIXTIME] [--map-size BYTES]\n"
          "       keyless calendar append -D DIR --time T (--root ALG:HEX | --empty)\n"
          "       keyless calendar root   -D DIR --time P\n"
          "       keyless calendar chain  -D DIR --from t --to P -o FILE\n"
          "       keyless calendar stat   -D DIR [--json]\n"
          "       keyless calendar audit  -D DIR [-P PUBFILE [-V ANCHOR.pem]... [--cnstr OID=VALUE]...\n"
          "                               [--publications-file-no-verify]]\n");
  cli_exit_table(f);
}

typedef struct cargs {
  const char *dir, *root, *out, *pubfile;
  uint64_t time, from, to, genesis, map_size;
  bool have_time, have_from, have_to, have_genesis, empty, json;
  cli_trust_t trust;
} cargs_t;

static int parse(int argc, char **argv, cargs_t *a) {
  enum { O_GENESIS = 256, O_TIME, O_ROOT, O_EMPTY, O_FROM, O_TO, O_JSON, O_CNSTR, O_NOVERIFY, O_MAP };
  static const struct option opts[] = {
      {"dir", required_argument, NULL, 'D'},      {"genesis", required_argument, NULL, O_GENESIS},
      {"time", required_argument, NULL, O_TIME},  {"root", required_argument, NULL, O_ROOT},
      {"empty", no_argument, NULL, O_EMPTY},      {"from", required_argument, NULL, O_FROM},
      {"to", required_argument, NULL, O_TO},      {"output", required_argument, NULL, 'o'},
      {"json", no_argument, NULL, O_JSON},        {"publications", required_argument, NULL, 'P'},
      {"trust-anchor", required_argument, NULL, 'V'}, {"cnstr", required_argument, NULL, O_CNSTR},
      {"publications-file-no-verify", no_argument, NULL, O_NOVERIFY},
      {"map-size", required_argument, NULL, O_MAP}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c, li = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "D:o:P:V:h", opts, &li)) != -1) {
    bool ok = true;
    switch (c) {
      case 'D': a->dir = optarg; break;
      case 'o': a->out = optarg; break;
      case 'P': a->pubfile = optarg; break;
      case 'V':
        if (a->trust.n_anchors == sizeof a->trust.anchors / sizeof a->trust.anchors[0]) return KL_EXIT_USAGE;
        a->trust.anchors[a->trust.n_anchors++] = optarg;
        break;
      case O_CNSTR: ok = cli_trust_add_cnstr(&a->trust, optarg); break;
      case O_NOVERIFY: a->trust.no_verify = true; break;
      case O_GENESIS: ok = a->have_genesis = cli_parse_u64(optarg, &a->genesis); break;
      case O_TIME: ok = a->have_time = cli_parse_u64(optarg, &a->time); break;
      case O_FROM: ok = a->have_from = cli_parse_u64(optarg, &a->from); break;
      case O_TO: ok = a->have_to = cli_parse_u64(optarg, &a->to); break;
      case O_MAP: ok = cli_parse_u64(optarg, &a->map_size); break;
      case O_ROOT: a->root = optarg; break;
      case O_EMPTY: a->empty = true; break;
      case O_JSON: a->json = true; break;
      case 'h': usage(stdout); return -1;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
    if (!ok) {
      fprintf(stderr, "keyless calendar: bad value '%s' for --%s\n", optarg, opts[li].name);
      return KL_EXIT_USAGE;
    }
  }
  if (a->dir == NULL) {
    fprintf(stderr, "keyless calendar: give the calendar directory with -D DIR\n");
    return KL_EXIT_USAGE;
  }
  return 0;
}

static int fail(const char *sub, int code, const kl_err_t *e) {
  fprintf(stderr, "keyless calendar %s: %s\n", sub, e->msg);
  return cli_exit_for(code);
}

static int open_cal(const cargs_t *a, bool ro, kl_cal_t **cal, kl_err_t *e) {
  kl_cal_opts_t o = {.map_size = (size_t)a->map_size, .read_only = ro};
  return kl_cal_open(a->dir, &o, cal, e);
}

static int do_init(const cargs_t *a) {
  kl_err_t e = {0};
  uint64_t g = a->have_genesis ? a->genesis : (uint64_t)time(NULL);
  kl_cal_opts_t o = {.map_size = (size_t)a->map_size};
  int r = kl_cal_create(a->dir, g, &o, &e);
  if (r) return fail("init", r, &e);
  char t[64];
  printf("created calendar in %s with genesis %llu (%s)\n", a->dir, (unsigned long long)g, cli_utc(g, t, sizeof t));
  return KL_EXIT_OK;
}

static int do_append(const cargs_t *a) {
  kl_err_t e = {0};
  kl_imprint_t root;
  kl_cal_t *cal;
  int r;
  if (!a->have_time || (a->root == NULL) == !a->empty) {
    fprintf(stderr, "keyless calendar append: give --time T and either --root ALG:HEX or --empty\n");
    return KL_EXIT_USAGE;
  }
  if (a->root && (r = kl_imprint_parse_text(&root, a->root, &e))) return fail("append", r, &e);
  if ((r = open_cal(a, false, &cal, &e))) return fail("append", r, &e);
  kl_cal_entry_t en = {a->time, a->root ? &root : NULL};
  r = kl_cal_append(cal, &en, 1, &e);
  kl_cal_close(cal);
  return r ? fail("append", r, &e) : KL_EXIT_OK;
}

static int do_root(const cargs_t *a) {
  kl_err_t e = {0};
  kl_imprint_t root;
  kl_cal_t *cal;
  char hex[2 * KL_IMPRINT_MAX + 1];
  int r;
  if (!a->have_time) {
    fprintf(stderr, "keyless calendar root: give --time P\n");
    return KL_EXIT_USAGE;
  }
  if ((r = open_cal(a, true, &cal, &e))) return fail("root", r, &e);
  r = kl_cal_root(cal, a->time, &root, &e);
  kl_cal_close(cal);
  if (r) return fail("root", r, &e);
  printf("%s\n", kl_imprint_hex(&root, hex));
  return KL_EXIT_OK;
}

static int do_chain(const cargs_t *a) {
  kl_err_t e = {0};
  kl_cal_t *cal;
  kl_buf_t b = KL_BUF_INIT;
  int r;
  if (!a->have_from || !a->have_to || a->out == NULL) {
    fprintf(stderr, "keyless calendar chain: give --from t --to P -o FILE\n");
    return KL_EXIT_USAGE;
  }
  if ((r = open_cal(a, true, &cal, &e))) return fail("chain", r, &e);
  r = kl_cal_chain(cal, a->from, a->to, &b, &e);
  kl_cal_close(cal);
  if (r == 0 && (r = cli_write_file_atomic(a->out, b.p, b.len, true, &e)) == 0)
    printf("wrote the calendar chain %llu..%llu (%zu bytes) to %s\n", (unsigned long long)a->from,
           (unsigned long long)a->to, b.len, a->out);
  kl_buf_free(&b);
  return r ? fail("chain", r, &e) : KL_EXIT_OK;
}

static int do_stat(const cargs_t *a) {
  kl_err_t e = {0};
  kl_cal_t *cal;
  kl_cal_info_t in;
  char t1[64], t2[64];
  int r;
  if ((r = open_cal(a, true, &cal, &e))) return fail("stat", r, &e);
  r = kl_cal_info(cal, &in, &e);
  kl_cal_close(cal);
  if (r) return fail("stat", r, &e);
  if (a->json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_u64(&j, "genesis", in.genesis);
    json_bool(&j, "empty", in.empty);
    if (!in.empty) json_u64(&j, "last", in.last);
    json_u64(&j, "rounds", in.rounds);
    json_u64(&j, "empty_seconds", in.fillers);
    json_u64(&j, "used_bytes", in.used_bytes);
    json_u64(&j, "map_size", in.map_size);
    json_end_obj(&j);
    json_finish(&j);
    return KL_EXIT_OK;
  }
  printf("genesis   %llu (%s)\n", (unsigned long long)in.genesis, cli_utc(in.genesis, t1, sizeof t1));
  if (in.empty) printf("last      (empty)\n");
  else printf("last      %llu (%s)\n", (unsigned long long)in.last, cli_utc(in.last, t2, sizeof t2));
  printf("seconds   %llu with a round, %llu empty\n", (unsigned long long)in.rounds, (unsigned long long)in.fillers);
  printf("storage   %zu bytes used of a %zu-byte map (%.1f%%)\n", in.used_bytes, in.map_size,
         in.map_size ? 100.0 * (double)in.used_bytes / (double)in.map_size : 0.0);
  return KL_EXIT_OK;
}

static int do_audit(const cargs_t *a) {
  kl_err_t e = {0};
  kl_cal_t *cal;
  kl_pubfile_t *pf = NULL;
  kl_cal_audit_t rep;
  int r, st;
  if (a->pubfile && (st = cli_load_pubfile(a->pubfile, &a->trust, &pf, &e)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless calendar audit: %s\n", e.msg);
    return st;
  }
  if ((r = open_cal(a, true, &cal, &e))) {
    kl_pubfile_free(pf);
    return fail("audit", r, &e);
  }
  r = kl_cal_audit(cal, pf, &rep, &e);
  kl_cal_close(cal);
  kl_pubfile_free(pf);
  if (r) {
    printf("FAIL: %s\n", e.msg);
    return r == KL_EFORMAT ? KL_EXIT_VERIFY : cli_exit_for(r);
  }
  printf("OK: %llu nodes recomputed, %llu seconds present", (unsigned long long)rep.nodes_checked,
         (unsigned long long)rep.leaves);
  if (a->pubfile)
    printf(", %llu publications match (%llu outside the calendar's range)", (unsigned long long)rep.publications_checked,
           (unsigned long long)rep.publications_outside);
  printf("\n");
  return KL_EXIT_OK;
}

int cmd_calendar(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? KL_EXIT_USAGE : KL_EXIT_OK;
  }
  const char *sub = argv[1];
  cargs_t a = {0};
  int st = parse(argc - 1, argv + 1, &a);
  if (st) return st < 0 ? KL_EXIT_OK : st;
  if (strcmp(sub, "init") == 0) return do_init(&a);
  if (strcmp(sub, "append") == 0) return do_append(&a);
  if (strcmp(sub, "root") == 0) return do_root(&a);
  if (strcmp(sub, "chain") == 0) return do_chain(&a);
  if (strcmp(sub, "stat") == 0) return do_stat(&a);
  if (strcmp(sub, "audit") == 0) return do_audit(&a);
  fprintf(stderr, "keyless calendar: unknown subcommand '%s'\n", sub);
  usage(stderr);
  return KL_EXIT_USAGE;
}
