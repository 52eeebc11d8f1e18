/* bench_mkcal: makes a calendar for bench_extender and leaves it behind (bench_calendar builds
 * the same kind of calendar but removes it at exit). Not a benchmark: it prints how long the
 * build took, for the record, and nothing is timed against anything.
 *
 * The calendar has N seconds from genesis G: every 10th second (counting from G) is an empty
 * round (filler leaf), the others get a pseudo-random SHA-256 round root (the same ones as
 * bench_calendar's with the same seed). It is built in appends of B seconds each, with LMDB
 * syncing turned off during the build and one kl_cal_sync at the end (the calendar is a
 * throw-away benchmark input), then reopened read-only and its last second and root(last)
 * printed as a check.
 *
 * usage: bench_mkcal -D DIR [-N SECONDS] [-g GENESIS] [-b BATCH] [-s SEED]
 *   -D  the calendar directory (created; must not hold a calendar already)
 *   -N  seconds (default 10000000, about 116 days)
 *   -g  genesis (default: now - N - 60, so that the whole calendar is in the past, as the
 *       extender refuses times in the future)
 *   -b  seconds per append (default 1000)
 *   -s  seed of the round roots (default 1)
 */
#include <keyless/calendar.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_mkcal -D DIR [-N SECONDS] [-g GENESIS] [-b BATCH] [-s SEED]\n"
          "  -D DIR      calendar directory to create (must not hold a calendar)\n"
          "  -N SECONDS  calendar seconds (default 10000000)\n"
          "  -g GENESIS  genesis second (default: now - N - 60)\n"
          "  -b BATCH    seconds per append (default 1000)\n"
          "  -s SEED     seed of the pseudo-random round roots (default 1)\n");
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_mkcal: %s: %s\n", what, msg);
  exit(1);
}

int main(int argc, char **argv) {
  const char *dir = NULL;
  uint64_t n = 10000000, genesis = 0, batch = 1000, seed = 1;
  bool have_genesis = false;
  int c;
  while ((c = getopt(argc, argv, "D:N:g:b:s:h")) != -1) {
    bool ok = true;
    switch (c) {
      case 'D': dir = optarg; break;
      case 'N': ok = kb_parse_count(optarg, &n); break;
      case 'g': ok = kb_parse_count(optarg, &genesis), have_genesis = true; break;
      case 'b': ok = kb_parse_count(optarg, &batch) && batch <= 1000000; break;
      case 's': ok = kb_parse_count(optarg, &seed); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "bench_mkcal: bad value '%s' for -%c\n", optarg, c);
      return 2;
    }
  }
  if (dir == NULL || optind != argc) {
    usage(stderr);
    return 2;
  }
  uint64_t now = (uint64_t)time(NULL);
  if (!have_genesis) {
    if (n + 60 >= now) die("-N", "too many seconds for a calendar that ends in the past");
    genesis = now - n - 60;
  }

  kl_err_t e = {0};
  kl_cal_opts_t co = {.no_sync = true};
  kl_cal_t *cal = NULL;
  if (kl_cal_create(dir, genesis, &co, &e) || kl_cal_open(dir, &co, &cal, &e)) die(dir, e.msg);
  kl_cal_entry_t *ent = calloc((size_t)batch, sizeof *ent);
  kl_imprint_t *roots = calloc((size_t)batch, sizeof *roots);
  if (ent == NULL || roots == NULL) die("memory", "out of memory");

  double w0 = kb_now(), c0 = kb_cpu();
  for (uint64_t done = 0; done < n;) {
    size_t k = (size_t)(n - done < batch ? n - done : batch);
    for (size_t i = 0; i < k; i++) {
      uint64_t t = genesis + done + i;
      ent[i].time = t;
      if ((t - genesis) % 10 == 9) {
        ent[i].root = NULL;
      } else {
        uint64_t s = seed * 0x100000001B3ull ^ t;
        memset(&roots[i], 0, sizeof roots[i]);
        roots[i].alg = KL_HASH_SHA256;
        roots[i].len = 32;
        for (int q = 0; q < 4; q++) {
          uint64_t v = splitmix(&s);
          memcpy(roots[i].digest + 8 * q, &v, 8);
        }
        ent[i].root = &roots[i];
      }
    }
    if (kl_cal_append(cal, ent, k, &e)) die("kl_cal_append", e.msg);
    done += k;
  }
  if (kl_cal_sync(cal, &e)) die("kl_cal_sync", e.msg);
  double wall = kb_now() - w0, cpu = kb_cpu() - c0;
  kl_cal_close(cal);
  free(ent);
  free(roots);

  /* Reopened read-only, as the extender opens it. */
  kl_cal_opts_t ro = {.read_only = true};
  kl_cal_info_t ci;
  kl_imprint_t root;
  char hex[2 * KL_IMPRINT_MAX + 1];
  if (kl_cal_open(dir, &ro, &cal, &e) || kl_cal_info(cal, &ci, &e) || kl_cal_root(cal, ci.last, &root, &e))
    die(dir, e.msg);
  kl_imprint_hex(&root, hex);
  kl_cal_close(cal);
  if (ci.empty || ci.genesis != genesis || ci.last != genesis + n - 1) die(dir, "the calendar is not what was built");
  printf("bench_mkcal: %s: %llu seconds, genesis %llu, last %llu (%llu rounds, %llu empty), %.1f MiB; built in "
         "%.1f s wall, %.1f s cpu; root(last) %s\n",
         dir, (unsigned long long)n, (unsigned long long)ci.genesis, (unsigned long long)ci.last,
         (unsigned long long)ci.rounds, (unsigned long long)ci.fillers, (double)ci.used_bytes / (1024.0 * 1024.0),
         wall, cpu, hex);
  return 0;
}
