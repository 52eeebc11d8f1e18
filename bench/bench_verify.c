/* bench_verify: signatures verified per second with the internal policy, on one thread.
 *
 * Loads a few real signatures from the KSI test vectors, parses each once, then verifies them
 * round-robin with one kl_verifier_t for a bounded time. Every verdict is checked: a verification
 * that is not OK aborts the program, so the figures cannot silently measure failures. Also
 * measures parsing alone and parse+verify (parsing included, as a caller holding only the bytes
 * would see it), and verification of each signature on its own.
 *
 * usage: bench_verify [-t SECONDS] [-n COUNT] [DIR | FILE.ksig...]
 *   DIR       the ksi-vectors folder or its valid-signatures folder (default: KL_VECTORS,
 *             i.e. ../shared/ksi-vectors next to the repository); the default set is loaded
 *   FILE.ksig these signature files instead of the default set
 *   -t        seconds per measurement (default 2)
 *   -n        at most this many operations per measurement (default 10^9)
 */
#include <keyless/sig.h>
#include <keyless/verify.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_util.h"

#ifndef KL_VECTORS
#define KL_VECTORS "../shared/ksi-vectors"
#endif

#define MAX_SAMPLES 64
#define MAX_SIG_FILE 65540 /* one 0x800 TLV is at most 65,539 bytes */
#define BATCH 16           /* operations between clock reads */

/* The default set: a publication-record signature, one with a calendar authentication record
 * and reordered elements, an RFC 3161 legacy signature and one with a bare calendar chain. */
static const char *const default_set[] = {
    "signature-extended.ksig",
    "signature-element-order-is-changed.ksig",
    "rfc3161-signature-extended.ksig",
    "signature-no-calendar-auth-and-publication-record.ksig",
};
#define N_DEFAULT (sizeof default_set / sizeof default_set[0])

typedef struct sample {
  char path[1024];
  const char *name; /* base name, points into path */
  uint8_t *raw;
  size_t len;
  kl_sig_t *sig;
  size_t aggr_links, cal_links;
} sample_t;

typedef enum { M_VERIFY, M_PARSE, M_PARSE_VERIFY } bench_mode_t;

typedef struct measure {
  uint64_t ops;
  double wall, cpu;
} measure_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_verify [-t SECONDS] [-n COUNT] [DIR | FILE.ksig...]\n"
          "  DIR        ksi-vectors or its valid-signatures folder (default %s)\n"
          "  FILE.ksig  signature files to use instead of the default set\n"
          "  -t SECONDS time per measurement (default 2)\n"
          "  -n COUNT   at most COUNT operations per measurement (default 1000000000)\n",
          KL_VECTORS);
}

static void die(const char *what, const char *path, const char *msg) {
  fprintf(stderr, "bench_verify: %s %s: %s\n", what, path, msg);
  exit(1);
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void load(sample_t *s, const char *path) {
  if (snprintf(s->path, sizeof s->path, "%s", path) >= (int)sizeof s->path)
    die("path too long:", path, "");
  const char *slash = strrchr(s->path, '/');
  s->name = slash ? slash + 1 : s->path;
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("cannot open", path, "no such file or not readable");
  s->raw = malloc(MAX_SIG_FILE);
  if (s->raw == NULL) die("out of memory reading", path, "");
  s->len = fread(s->raw, 1, MAX_SIG_FILE, f);
  bool bad = ferror(f) != 0;
  fclose(f);
  if (bad) die("cannot read", path, "read error");
  if (s->len == MAX_SIG_FILE) die("cannot use", path, "larger than one signature");

  kl_err_t e = {0};
  if (kl_sig_parse(s->raw, s->len, &s->sig, &e)) die("cannot parse", path, e.msg);
  for (size_t i = 0; i < s->sig->n_chains; i++) s->aggr_links += s->sig->chains[i].n_links;
  s->cal_links = s->sig->cal ? s->sig->cal->n_links : 0;
}

/* One internal-policy verification; anything but OK aborts. */
static void verify_ok(kl_verifier_t *v, const sample_t *s) {
  kl_verify_result_t res;
  kl_verifier_run(v, s->sig, KL_POLICY_INTERNAL, NULL, &res);
  if (res.verdict != KL_VER_OK) {
    fprintf(stderr, "bench_verify: %s: verification gave %s %s: %s\n", s->name,
            kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
    abort();
  }
}

/* Parses the sample's bytes into a fresh object (aborting on failure); verifies it if asked. */
static void parse_ok(kl_verifier_t *v, const sample_t *s, bool verify) {
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (kl_sig_parse(s->raw, s->len, &sig, &e)) {
    fprintf(stderr, "bench_verify: %s: parse failed: %s\n", s->name, e.msg);
    abort();
  }
  if (verify) {
    sample_t tmp = *s;
    tmp.sig = sig;
    verify_ok(v, &tmp);
  }
  kl_sig_free(sig);
}

/* Runs mode round-robin over samples[0..n) until `seconds` have passed or `max` operations
 * are done (checked every BATCH operations). */
static measure_t run(bench_mode_t mode, kl_verifier_t *v, const sample_t *samples, size_t n,
                     double seconds, uint64_t max) {
  measure_t m = {0, 0, 0};
  size_t next = 0;
  double c0 = kb_cpu(), t0 = kb_now(), t = t0;
  while (m.ops < max && t - t0 < seconds) {
    for (int b = 0; b < BATCH && m.ops < max; b++, m.ops++) {
      const sample_t *s = &samples[next];
      next = next + 1 == n ? 0 : next + 1;
      switch (mode) {
        case M_VERIFY: verify_ok(v, s); break;
        case M_PARSE: parse_ok(v, s, false); break;
        case M_PARSE_VERIFY: parse_ok(v, s, true); break;
      }
    }
    t = kb_now();
  }
  m.wall = t - t0;
  m.cpu = kb_cpu() - c0;
  return m;
}

static void print_row(const char *label, measure_t m) {
  char rate[32], crate[32];
  double per_sec = m.wall > 0 ? (double)m.ops / m.wall : 0;
  double per_cpu = m.cpu > 0 ? (double)m.ops / m.cpu : 0;
  printf("%-66s %11llu %7.2f %5.0f%% %12s/s %9.2f %12s/s\n", label, (unsigned long long)m.ops,
         m.wall, m.wall > 0 ? 100.0 * m.cpu / m.wall : 0.0,
         kb_fmt_rate(per_sec, rate, sizeof rate), m.ops ? 1e6 * m.wall / (double)m.ops : 0.0,
         kb_fmt_rate(per_cpu, crate, sizeof crate));
}

int main(int argc, char **argv) {
  double seconds = 2;
  uint64_t max = 1000000000ull;
  int i = 1;
  for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
      if (!kb_parse_seconds(argv[++i], &seconds)) die("bad -t value", argv[i], "want 0 < s <= 3600");
    } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
      if (!kb_parse_count(argv[++i], &max)) die("bad -n value", argv[i], "want a positive count");
    } else {
      usage(stderr);
      return 2;
    }
  }

  static sample_t samples[MAX_SAMPLES];
  size_t n = 0;
  char path[1024];
  if (i >= argc || (i + 1 == argc && is_dir(argv[i]))) {
    const char *dir = i < argc ? argv[i] : KL_VECTORS;
    snprintf(path, sizeof path, "%s/valid-signatures", dir);
    if (is_dir(path)) dir = path;
    char base[1024];
    snprintf(base, sizeof base, "%s", dir);
    for (; n < N_DEFAULT; n++) {
      if (snprintf(path, sizeof path, "%s/%s", base, default_set[n]) >= (int)sizeof path)
        die("path too long:", base, "");
      load(&samples[n], path);
    }
  } else {
    for (; i < argc; i++) {
      if (n == MAX_SAMPLES) die("too many signatures:", argv[i], "at most 64");
      load(&samples[n++], argv[i]);
    }
  }

  kl_verifier_t *v = NULL;
  kl_err_t e = {0};
  if (kl_verifier_create(&v, &e)) die("cannot create", "verifier", e.msg);

  kb_print_header("bench_verify");
  printf("policy internal, one thread, %.2f s per measurement (at most %llu operations)\n\n",
         seconds, (unsigned long long)max);
  printf("%-56s %6s %6s %10s %9s\n", "signature", "bytes", "chains", "aggr links", "cal links");
  for (size_t k = 0; k < n; k++) {
    verify_ok(v, &samples[k]); /* each must verify before anything is timed */
    printf("%-56s %6zu %6zu %10zu %9zu\n", samples[k].name, samples[k].len,
           samples[k].sig->n_chains, samples[k].aggr_links, samples[k].cal_links);
  }

  /* Warm-up: caches, branch predictors, CPU frequency. */
  run(M_PARSE_VERIFY, v, samples, n, seconds < 0.5 ? seconds / 2 : 0.25, max);

  printf("\n%-66s %11s %7s %6s %14s %9s %14s\n", "measurement", "ops", "wall s", "cpu", "rate",
         "us/op", "per cpu-s");
  char label[160];
  snprintf(label, sizeof label, "verify (round-robin, %zu sigs)", n);
  print_row(label, run(M_VERIFY, v, samples, n, seconds, max));
  snprintf(label, sizeof label, "parse (round-robin, %zu sigs)", n);
  print_row(label, run(M_PARSE, v, samples, n, seconds, max));
  snprintf(label, sizeof label, "parse+verify (round-robin, %zu sigs)", n);
  print_row(label, run(M_PARSE_VERIFY, v, samples, n, seconds, max));
  double each = seconds / (double)n < 0.2 ? 0.2 : seconds / (double)n;
  for (size_t k = 0; k < n; k++) {
    snprintf(label, sizeof label, "verify %s", samples[k].name);
    print_row(label, run(M_VERIFY, v, &samples[k], 1, each, max));
  }
  printf("\nrate and us/op are by wall time; cpu = process CPU time / wall time (below ~95%% the\n"
         "machine took the core away); per cpu-s = operations per second of CPU time.\n");

  kl_verifier_destroy(v);
  for (size_t k = 0; k < n; k++) {
    kl_sig_free(samples[k].sig);
    free(samples[k].raw);
  }
  return 0;
}
