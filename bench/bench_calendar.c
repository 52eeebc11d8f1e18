/* bench_calendar: the LMDB calendar's append rates, size per second, and root/chain times.
 *
 * Everything happens in a fresh directory made with mkdtemp (under /tmp by default) that is
 * removed at exit. In order:
 *   1. Appends on small fresh calendars: one second per kl_cal_append (each call is one durable
 *      LMDB commit that waits for the disk: the real cost of committing every round on its
 *      own), then batches of -b seconds per call. Both bounded by -a seconds and -A calls.
 *   2. A calendar of -N seconds from genesis -g (every 10th second empty, the others with a
 *      pseudo-random SHA-256 round root), built in batches of -b seconds; the build is bounded
 *      by -B seconds (if it runs out, the rest of the program uses what was built and says so).
 *      Then its size: kl_cal_info used_bytes and data.mdb on disk, per calendar second.
 *   3. Warm reads at the realistic publication time P = the last second: root(P), and
 *      chain(t, P) for random t (uniform over the calendar; t = P as in a sign response; the
 *      last hour; the oldest 1%). Each call is timed on its own: median and p99 per call.
 *      Every -v'th chain is checked outside the timed region: decoded, its root recomputed and
 *      compared with kl_cal_root(P), its publication and aggregation times, the time its shape
 *      encodes, and its input against the leaf the build appended (or the filler of an empty
 *      second). Any mismatch aborts, so the figures cannot time garbage.
 *   4. The calendar is closed; its database ("blocks", or "nodes" in format 1) is described (mdb_stat) and a compacted
 *      copy made (mdb_env_copy2 with MDB_CP_COMPACT) for its size; data.mdb is evicted from
 *      the page cache (posix_fadvise DONTNEED, this file only) and the calendar reopened: a
 *      cold-ish root(P) and pass of uniform chains, reported for its first 1000 calls apart.
 *
 * usage: bench_calendar [-N SECONDS] [-g GENESIS] [-b BATCH] [-t SECONDS] [-n COUNT]
 *                       [-a SECONDS] [-A COUNT] [-B SECONDS] [-v EVERY] [-m MIB] [-s SEED]
 *                       [-d PARENT] [-C]
 *   -N  calendar seconds to build (default 10000000)
 *   -g  genesis second (default 1700000000, November 2023)
 *   -b  seconds per kl_cal_append in the batched appends and the build (default 1000)
 *   -t  seconds per read measurement (default 5)
 *   -n  at most this many calls per read measurement (default 100000)
 *   -a  seconds for each append measurement (default 5)
 *   -A  at most this many kl_cal_append calls per append measurement (default 100000)
 *   -B  at most this many seconds for the build (default 1200)
 *   -v  check every EVERY'th chain (default 8; 1 checks all)
 *   -m  LMDB map size in MiB (default max(1024, N * 512 bytes))
 *   -s  random seed (default 1)
 *   -d  parent of the temporary directory (default /tmp)
 *   -C  skip the compacted copy
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <keyless/calendar.h>
#include <keyless/chains.h>
#include <keyless/sig.h>
#include <keyless/tlv.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"

#define FIRST_COLD 1000 /* cold pass: the first calls reported apart */

typedef struct opts {
  uint64_t n_seconds, genesis, batch, max_reads, max_appends, verify_every, seed;
  double read_secs, append_secs, build_secs;
  size_t map_size;
  const char *parent;
  bool compact;
} opts_t;

static char tmpdir[512];
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* Removes a directory tree (the only things in it are our calendars). */
static void rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (d != NULL) {
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      if (snprintf(p, sizeof p, "%s/%s", path, de->d_name) >= (int)sizeof p) continue;
      struct stat st;
      if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
      else unlink(p);
    }
    closedir(d);
  }
  rmdir(path);
}

static void cleanup(void) {
  if (tmpdir[0] != '\0') {
    rm_tree(tmpdir);
    tmpdir[0] = '\0';
  }
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_calendar: %s: %s\n", what, msg);
  exit(1); /* atexit removes the directory */
}

/* A wrong result: remove the directory and abort (a core dump is more use than figures). */
static void wrong(const char *what, uint64_t t, uint64_t P, const char *msg) {
  fprintf(stderr, "bench_calendar: WRONG RESULT: %s (t %llu, P %llu)%s%s\n", what, (unsigned long long)t,
          (unsigned long long)P, msg ? ": " : "", msg ? msg : "");
  cleanup();
  abort();
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_calendar [-N SECONDS] [-g GENESIS] [-b BATCH] [-t SECONDS] [-n COUNT]\n"
          "                      [-a SECONDS] [-A COUNT] [-B SECONDS] [-v EVERY] [-m MIB] [-s SEED]\n"
          "                      [-d PARENT] [-C]\n"
          "  -N SECONDS  calendar seconds to build (default 10000000)\n"
          "  -g GENESIS  genesis second (default 1700000000)\n"
          "  -b BATCH    seconds per append in the batched appends and the build (default 1000)\n"
          "  -t SECONDS  time per read measurement (default 5)\n"
          "  -n COUNT    at most COUNT calls per read measurement (default 100000)\n"
          "  -a SECONDS  time per append measurement (default 5)\n"
          "  -A COUNT    at most COUNT appends per append measurement (default 100000)\n"
          "  -B SECONDS  time limit of the build (default 1200)\n"
          "  -v EVERY    check every EVERY'th chain (default 8)\n"
          "  -m MIB      LMDB map size in MiB (default max(1024, N * 512 bytes))\n"
          "  -s SEED     random seed (default 1)\n"
          "  -d PARENT   where the temporary directory goes (default /tmp)\n"
          "  -C          skip the compacted copy\n");
}

/* ---- random numbers and round roots ---- */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t rand_in(uint64_t *s, uint64_t lo, uint64_t hi) { /* uniform enough in [lo, hi] */
  return lo + splitmix(s) % (hi - lo + 1);
}

/* Every 10th second (counting from genesis) is empty. */
static bool is_empty(const opts_t *o, uint64_t t) { return (t - o->genesis) % 10 == 9; }

/* The round root appended for a non-empty second t: a SHA-256 imprint of pseudo-random bytes. */
static void round_root(const opts_t *o, uint64_t t, kl_imprint_t *out) {
  uint64_t s = o->seed * 0x100000001B3ull ^ t;
  memset(out, 0, sizeof *out);
  out->alg = KL_HASH_SHA256;
  out->len = 32;
  for (int k = 0; k < 4; k++) {
    uint64_t v = splitmix(&s);
    memcpy(out->digest + 8 * k, &v, 8);
  }
}

/* ---- latency samples ---- */

typedef struct lat {
  double *v;
  size_t n, cap;
  double wall, cpu; /* whole measurement, verification included */
} lat_t;

static void lat_init(lat_t *l, size_t cap) {
  l->v = malloc((cap ? cap : 1) * sizeof *l->v);
  if (l->v == NULL) die("latencies", "out of memory");
  l->n = 0;
  l->cap = cap;
  l->wall = l->cpu = 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct stats {
  size_t n;
  double median, p99, max, mean;
} stats_t;

/* Sorts v[0..n) in place. */
static stats_t stats_of(double *v, size_t n) {
  stats_t s = {n, 0, 0, 0, 0};
  if (n == 0) return s;
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  qsort(v, n, sizeof *v, cmp_double);
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  size_t k = (size_t)((double)n * 0.99 + 0.999999);
  s.p99 = v[(k ? k : 1) - 1];
  s.max = v[n - 1];
  s.mean = sum / (double)n;
  return s;
}

static void print_lat(const char *label, const lat_t *l, double *v, size_t n, const char *extra) {
  stats_t s = stats_of(v, n);
  printf("%-44s %8zu %9.2f %9.2f %9.2f %9.1f %5.0f%%  %s\n", label, s.n, s.median * 1e6, s.p99 * 1e6,
         s.mean * 1e6, s.max * 1e6, l->wall > 0 ? 100.0 * l->cpu / l->wall : 0.0, extra ? extra : "");
}

#define LAT_HEAD "%-44s %8s %9s %9s %9s %9s %6s\n"

/* ---- files ---- */

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
  if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap) die(dir, "path too long");
}

typedef struct fsize {
  uint64_t size, allocated;
} fsize_t;

static fsize_t file_size(const char *path) {
  struct stat st;
  fsize_t f = {0, 0};
  if (stat(path, &st) == 0) {
    f.size = (uint64_t)st.st_size;
    f.allocated = (uint64_t)st.st_blocks * 512u;
  }
  return f;
}

/* Fraction of the file's pages in the page cache (mincore); -1 if unknown. */
static double resident(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  struct stat st;
  double r = -1;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)st.st_size, pages = (len + (size_t)pg - 1) / (size_t)pg;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char *vec = malloc(pages);
    if (m != MAP_FAILED && vec != NULL && mincore(m, len, vec) == 0) {
      size_t in = 0;
      for (size_t i = 0; i < pages; i++) in += vec[i] & 1;
      r = (double)in / (double)pages;
    }
    free(vec);
    if (m != MAP_FAILED) munmap(m, len);
  }
  close(fd);
  return r;
}

static void evict(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die(path, strerror(errno));
  fdatasync(fd);
  int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
  if (rc != 0) die("posix_fadvise", strerror(rc));
}

static const char *mb(uint64_t bytes, char *buf, size_t cap) {
  snprintf(buf, cap, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
  return buf;
}

/* ---- calendars ---- */

static kl_cal_t *cal_new(const opts_t *o, const char *name, char *dir, size_t cap) {
  kl_cal_opts_t co = {.map_size = o->map_size};
  kl_err_t e = {0};
  kl_cal_t *cal = NULL;
  path_in(dir, cap, tmpdir, name);
  if (kl_cal_create(dir, o->genesis, &co, &e) || kl_cal_open(dir, &co, &cal, &e)) die(dir, e.msg);
  return cal;
}

/* Appends seconds [from, from + n) in one call. */
static void append_range(const opts_t *o, kl_cal_t *cal, uint64_t from, size_t n, kl_cal_entry_t *ent,
                         kl_imprint_t *roots) {
  kl_err_t e = {0};
  for (size_t k = 0; k < n; k++) {
    uint64_t t = from + k;
    ent[k].time = t;
    if (is_empty(o, t)) {
      ent[k].root = NULL;
    } else {
      round_root(o, t, &roots[k]);
      ent[k].root = &roots[k];
    }
  }
  if (kl_cal_append(cal, ent, n, &e)) die("kl_cal_append", e.msg);
}

static void bench_appends(const opts_t *o, kl_cal_entry_t *ent, kl_imprint_t *roots) {
  char dir[600], extra[160];
  lat_t l;
  printf("\n== appends on a fresh calendar (each kl_cal_append is one durable commit) ==\n");
  printf(LAT_HEAD, "measurement (per kl_cal_append call)", "calls", "median us", "p99 us", "mean us",
         "max us", "cpu");

  /* One second per call. */
  kl_cal_t *cal = cal_new(o, "append-one", dir, sizeof dir);
  lat_init(&l, (size_t)o->max_appends);
  uint64_t t = o->genesis;
  double c0 = kb_cpu(), w0 = kb_now(), now = w0;
  while (!stop && l.n < l.cap && now - w0 < o->append_secs) {
    double a = kb_now();
    append_range(o, cal, t++, 1, ent, roots);
    now = kb_now();
    l.v[l.n++] = now - a;
  }
  l.wall = now - w0;
  l.cpu = kb_cpu() - c0;
  double one_rate = l.wall > 0 ? (double)l.n / l.wall : 0;
  snprintf(extra, sizeof extra, "%.1f seconds/s", one_rate);
  print_lat("1 second per append", &l, l.v, l.n, extra);
  kl_cal_close(cal);
  rm_tree(dir);

  /* o->batch seconds per call. */
  cal = cal_new(o, "append-batch", dir, sizeof dir);
  l.n = 0;
  t = o->genesis;
  c0 = kb_cpu();
  w0 = now = kb_now();
  while (!stop && l.n < l.cap && now - w0 < o->append_secs) {
    double a = kb_now();
    append_range(o, cal, t, (size_t)o->batch, ent, roots);
    t += o->batch;
    now = kb_now();
    l.v[l.n++] = now - a;
  }
  l.wall = now - w0;
  l.cpu = kb_cpu() - c0;
  double batch_rate = l.wall > 0 ? (double)(t - o->genesis) / l.wall : 0;
  char label[80], rate[32];
  snprintf(label, sizeof label, "%llu seconds per append", (unsigned long long)o->batch);
  snprintf(extra, sizeof extra, "%sseconds/s", kb_fmt_rate(batch_rate, rate, sizeof rate));
  print_lat(label, &l, l.v, l.n, extra);
  printf("ratio batched / one per append (seconds appended per second of wall time): %.1f\n",
         one_rate > 0 ? batch_rate / one_rate : 0.0);
  free(l.v);
  kl_cal_close(cal);
  rm_tree(dir);
}

/* Builds the big calendar; returns the number of seconds built. */
static uint64_t build(const opts_t *o, kl_cal_t *cal, kl_cal_entry_t *ent, kl_imprint_t *roots) {
  uint64_t done = 0;
  double tenth[11];
  int next_tenth = 1;
  bool tenths = o->n_seconds >= 10 * o->batch; /* progress by tenth only when each has a batch */
  printf("\n== build: %llu seconds from %llu in appends of %llu seconds ==\n", (unsigned long long)o->n_seconds,
         (unsigned long long)o->genesis, (unsigned long long)o->batch);
  fflush(stdout);
  double c0 = kb_cpu(), w0 = kb_now(), now = w0;
  tenth[0] = w0;
  while (!stop && done < o->n_seconds && now - w0 < o->build_secs) {
    uint64_t n = o->n_seconds - done < o->batch ? o->n_seconds - done : o->batch;
    append_range(o, cal, o->genesis + done, (size_t)n, ent, roots);
    done += n;
    now = kb_now();
    while (tenths && next_tenth <= 10 && done * 10 >= o->n_seconds * (uint64_t)next_tenth) {
      tenth[next_tenth] = now;
      fprintf(stderr, "bench_calendar: built %d%% (%llu seconds) in %.1f s\n", 10 * next_tenth,
              (unsigned long long)done, now - w0);
      next_tenth++;
    }
  }
  double wall = now - w0, cpu = kb_cpu() - c0;
  char rate[32];
  printf("built %llu seconds in %llu appends: %.1f s wall, %.1f s cpu (%.0f%%), %sseconds/s\n",
         (unsigned long long)done, (unsigned long long)((done + o->batch - 1) / o->batch), wall, cpu,
         wall > 0 ? 100 * cpu / wall : 0.0, kb_fmt_rate(wall > 0 ? (double)done / wall : 0, rate, sizeof rate));
  if (done < o->n_seconds)
    printf("NOTE: stopped at the -B limit of %.0f s (or a signal): %llu of %llu seconds built; the figures "
           "below are for this calendar\n",
           o->build_secs, (unsigned long long)done, (unsigned long long)o->n_seconds);
  if (next_tenth > 1) {
    printf("seconds/s by tenth of the build:");
    for (int k = 1; k < next_tenth; k++)
      printf(" %s", kb_fmt_rate((double)o->n_seconds / 10 / (tenth[k] - tenth[k - 1]), rate, sizeof rate));
    printf("\n");
  }
  return done;
}

/* ---- reads ---- */

typedef struct reader {
  const opts_t *o;
  uint64_t P;
  kl_imprint_t rootP;
  kl_hasher_t h;
  kl_buf_t buf;
  uint64_t checked, links, bytes;
} reader_t;

/* Decodes one chain and checks it against the calendar; any mismatch aborts. */
static void check_chain(reader_t *rd, kl_cal_t *cal, uint64_t t) {
  kl_err_t e = {0};
  kl_tlv_t tlv;
  kl_arena_t arena = KL_ARENA_INIT;
  kl_cal_chain_t c;
  kl_imprint_t root, leaf, want;
  uint64_t tt;
  if (kl_tlv_parse_one(rd->buf.p, rd->buf.len, &tlv, &e)) wrong("the chain does not parse", t, rd->P, e.msg);
  if (tlv.type != 0x802) wrong("the chain is not a 0x802 element", t, rd->P, NULL);
  if (kl_cal_chain_decode(&tlv, rd->buf.p, &arena, &c, &e)) wrong("the chain does not decode", t, rd->P, e.msg);
  if (kl_cal_chain_root(&rd->h, &c, &root, &e)) wrong("the chain gives no root", t, rd->P, e.msg);
  if (!kl_imprint_eq(&root, &rd->rootP)) wrong("the chain gives a root other than kl_cal_root(P)", t, rd->P, NULL);
  if (c.pub_time != rd->P || !c.has_aggr_time || c.aggr_time != t)
    wrong("the chain carries other times", t, rd->P, NULL);
  if (!kl_cal_chain_time(&c, &tt) || tt != t) wrong("the chain's shape encodes another time", t, rd->P, NULL);
  if (is_empty(rd->o, t)) kl_cal_filler_leaf(t, &want);
  else round_root(rd->o, t, &want);
  if (kl_cal_leaf(cal, t, &leaf, &e)) wrong("kl_cal_leaf(t)", t, rd->P, e.msg);
  if (!kl_imprint_eq(&c.input, &want) || !kl_imprint_eq(&leaf, &want))
    wrong("the chain's input or kl_cal_leaf(t) is not the appended leaf", t, rd->P, NULL);
  rd->checked++;
  rd->links += c.n_links;
  rd->bytes += rd->buf.len;
  kl_arena_free(&arena);
}

typedef enum { R_ROOT, R_CHAIN } read_kind_t;

/* Times max calls (bounded by the time limit), each on its own. t (or P for roots) is drawn
 * uniformly from [lo, hi]. */
static void run_reads(reader_t *rd, kl_cal_t *cal, read_kind_t kind, uint64_t lo, uint64_t hi, uint64_t *rng,
                      lat_t *l) {
  kl_err_t e = {0};
  kl_imprint_t r;
  l->n = 0;
  double c0 = kb_cpu(), w0 = kb_now(), now = w0;
  while (!stop && l->n < l->cap && now - w0 < rd->o->read_secs) {
    uint64_t x = lo == hi ? lo : rand_in(rng, lo, hi);
    double a, b;
    if (kind == R_ROOT) {
      a = kb_now();
      int rc = kl_cal_root(cal, x, &r, &e);
      b = kb_now();
      if (rc) wrong("kl_cal_root (t = P')", x, rd->P, e.msg);
      if (x == rd->P && !kl_imprint_eq(&r, &rd->rootP)) wrong("kl_cal_root(P) changed", x, rd->P, NULL);
    } else {
      kl_buf_reset(&rd->buf);
      a = kb_now();
      int rc = kl_cal_chain(cal, x, rd->P, &rd->buf, &e);
      b = kb_now();
      if (rc) wrong("kl_cal_chain", x, rd->P, e.msg);
      if (l->n % rd->o->verify_every == 0) check_chain(rd, cal, x);
    }
    l->v[l->n++] = b - a;
    now = kb_now();
  }
  l->wall = now - w0;
  l->cpu = kb_cpu() - c0;
}

static void chain_row(reader_t *rd, const char *label, lat_t *l) {
  char extra[160];
  snprintf(extra, sizeof extra, "%.1f links, %.0f bytes (%llu checked)",
           rd->checked ? (double)rd->links / (double)rd->checked : 0.0,
           rd->checked ? (double)rd->bytes / (double)rd->checked : 0.0, (unsigned long long)rd->checked);
  print_lat(label, l, l->v, l->n, extra);
  rd->checked = rd->links = rd->bytes = 0;
}

static void bench_reads_warm(reader_t *rd, kl_cal_t *cal, uint64_t last, uint64_t *rng, lat_t *l) {
  const opts_t *o = rd->o;
  uint64_t n = last - o->genesis + 1;
  char label[120];
  printf("\n== reads, warm (the build's environment, P = last second %llu) ==\n", (unsigned long long)last);
  /* Warm-up: 0.25 s of uniform chains, checked like the rest. */
  opts_t wo = *o;
  wo.read_secs = o->read_secs < 0.5 ? o->read_secs / 2 : 0.25;
  rd->o = &wo;
  run_reads(rd, cal, R_CHAIN, o->genesis, last, rng, l);
  rd->o = o;
  rd->checked = rd->links = rd->bytes = 0;

  printf(LAT_HEAD, "measurement (per call)", "calls", "median us", "p99 us", "mean us", "max us", "cpu");
  run_reads(rd, cal, R_ROOT, last, last, rng, l);
  print_lat("root(P)", l, l->v, l->n, NULL);
  run_reads(rd, cal, R_ROOT, o->genesis, last, rng, l);
  print_lat("root(P'), P' uniform in [genesis, P]", l, l->v, l->n, NULL);
  run_reads(rd, cal, R_CHAIN, o->genesis, last, rng, l);
  chain_row(rd, "chain(t, P), t uniform in [genesis, P]", l);
  run_reads(rd, cal, R_CHAIN, last, last, rng, l);
  chain_row(rd, "chain(P, P) (a sign response)", l);
  uint64_t hour = n < 3600 ? n : 3600;
  snprintf(label, sizeof label, "chain(t, P), t in the last %llu s", (unsigned long long)hour);
  run_reads(rd, cal, R_CHAIN, last - hour + 1, last, rng, l);
  chain_row(rd, label, l);
  uint64_t old = n / 100 ? n / 100 : 1;
  snprintf(label, sizeof label, "chain(t, P), t in the first %llu s (oldest 1%%)", (unsigned long long)old);
  run_reads(rd, cal, R_CHAIN, o->genesis, o->genesis + old - 1, rng, l);
  chain_row(rd, label, l);
}

/* ---- the closed calendar: mdb_stat, a compacted copy ---- */

static void describe_closed(const opts_t *o, const char *dir, uint64_t seconds) {
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  MDB_dbi dbi;
  MDB_stat st;
  char buf[64], cdir[600], cfile[700];
  int rc;
  if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 4)) ||
      (rc = mdb_env_set_mapsize(env, o->map_size)) || (rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0644)))
    die("mdb_env_open", mdb_strerror(rc));
  /* Storage format 2 keeps the calendar in "blocks", format 1 (before issue 12) in "nodes". */
  const char *db = "blocks";
  if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) == 0 && (rc = mdb_dbi_open(txn, db, 0, &dbi)) == MDB_NOTFOUND)
    rc = mdb_dbi_open(txn, db = "nodes", 0, &dbi);
  if (rc || (rc = mdb_stat(txn, dbi, &st))) die("mdb_stat", mdb_strerror(rc));
  mdb_txn_abort(txn);
  uint64_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
  printf("%s database: %llu entries (%.3f per second), depth %u, %llu leaf + %llu branch + %llu overflow "
         "pages of %u bytes: %.1f bytes per entry, %.1f bytes per second\n",
         db, (unsigned long long)st.ms_entries, seconds ? (double)st.ms_entries / (double)seconds : 0.0, st.ms_depth,
         (unsigned long long)st.ms_leaf_pages, (unsigned long long)st.ms_branch_pages,
         (unsigned long long)st.ms_overflow_pages, st.ms_psize,
         st.ms_entries ? (double)pages * st.ms_psize / (double)st.ms_entries : 0.0,
         seconds ? (double)pages * st.ms_psize / (double)seconds : 0.0);
  if (o->compact && !stop) {
    path_in(cdir, sizeof cdir, tmpdir, "compact");
    if (mkdir(cdir, 0755) != 0) die(cdir, strerror(errno));
    double w0 = kb_now();
    if ((rc = mdb_env_copy2(env, cdir, MDB_CP_COMPACT))) die("mdb_env_copy2", mdb_strerror(rc));
    double w = kb_now() - w0;
    path_in(cfile, sizeof cfile, cdir, "data.mdb");
    fsize_t f = file_size(cfile);
    printf("compacted copy (mdb_env_copy2 MDB_CP_COMPACT, %.1f s): %s, %.1f bytes per second\n", w,
           mb(f.size, buf, sizeof buf), seconds ? (double)f.size / (double)seconds : 0.0);
    rm_tree(cdir);
  }
  mdb_env_close(env);
}

static void bench_reads_cold(reader_t *rd, const char *dir, uint64_t last, uint64_t *rng, lat_t *l) {
  const opts_t *o = rd->o;
  char file[700], extra[120];
  kl_err_t e = {0};
  kl_cal_t *cal = NULL;
  kl_cal_opts_t co = {.map_size = o->map_size};
  kl_imprint_t r;
  path_in(file, sizeof file, dir, "data.mdb");
  double before = resident(file);
  evict(file);
  double after = resident(file);
  printf("\n== reads after close, eviction of data.mdb from the page cache and reopen ==\n");
  printf("data.mdb resident in the page cache: %.1f%% before eviction, %.1f%% after\n", 100 * before, 100 * after);
  double a = kb_now();
  if (kl_cal_open(dir, &co, &cal, &e)) die(dir, e.msg);
  double b = kb_now();
  if (kl_cal_root(cal, last, &r, &e)) wrong("kl_cal_root(P) after reopen", last, last, e.msg);
  double c = kb_now();
  if (!kl_imprint_eq(&r, &rd->rootP)) wrong("kl_cal_root(P) differs after reopen", last, last, NULL);
  printf("kl_cal_open %.1f us; first root(P) %.1f us\n", (b - a) * 1e6, (c - b) * 1e6);
  printf(LAT_HEAD, "measurement (per call)", "calls", "median us", "p99 us", "mean us", "max us", "cpu");
  run_reads(rd, cal, R_CHAIN, o->genesis, last, rng, l);
  snprintf(extra, sizeof extra, "first call %.1f us", l->n ? l->v[0] * 1e6 : 0.0);
  size_t first = l->n < FIRST_COLD ? l->n : FIRST_COLD;
  double *copy = malloc((first ? first : 1) * sizeof *copy);
  if (copy == NULL) die("latencies", "out of memory");
  memcpy(copy, l->v, first * sizeof *copy);
  char label[80];
  snprintf(label, sizeof label, "cold chain(t, P), t uniform: first %zu", first);
  print_lat(label, l, copy, first, extra);
  free(copy);
  chain_row(rd, "cold chain(t, P), t uniform: whole pass", l);
  printf("data.mdb resident after the pass: %.1f%%\n", 100 * resident(file));
  kl_cal_close(cal);
}

/* ---- main ---- */

static bool flag_count(const char *s, uint64_t *out) { return kb_parse_count(s, out); }

int main(int argc, char **argv) {
  opts_t o = {10000000, 1700000000, 1000, 100000, 100000, 8, 1, 5, 5, 1200, 0, "/tmp", true};
  uint64_t map_mib = 0;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = true;
    if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(f, "-C") == 0) {
      o.compact = false;
      continue;
    } else if (v == NULL) {
      usage(stderr);
      return 2;
    } else if (strcmp(f, "-N") == 0) ok = flag_count(v, &o.n_seconds);
    else if (strcmp(f, "-g") == 0) ok = flag_count(v, &o.genesis) && o.genesis < ((uint64_t)1 << 40);
    else if (strcmp(f, "-b") == 0) ok = flag_count(v, &o.batch) && o.batch <= 1000000;
    else if (strcmp(f, "-t") == 0) ok = kb_parse_seconds(v, &o.read_secs);
    else if (strcmp(f, "-n") == 0) ok = flag_count(v, &o.max_reads) && o.max_reads <= 100000000;
    else if (strcmp(f, "-a") == 0) ok = kb_parse_seconds(v, &o.append_secs);
    else if (strcmp(f, "-A") == 0) ok = flag_count(v, &o.max_appends) && o.max_appends <= 100000000;
    else if (strcmp(f, "-B") == 0) ok = kb_parse_seconds(v, &o.build_secs);
    else if (strcmp(f, "-v") == 0) ok = flag_count(v, &o.verify_every);
    else if (strcmp(f, "-m") == 0) ok = flag_count(v, &map_mib) && map_mib <= ((uint64_t)1 << 24);
    else if (strcmp(f, "-s") == 0) ok = flag_count(v, &o.seed);
    else if (strcmp(f, "-d") == 0) o.parent = v;
    else {
      usage(stderr);
      return 2;
    }
    if (!ok) die(f, "bad value (see -h)");
    i++;
  }
  if (o.n_seconds > ((uint64_t)1 << 40)) die("-N", "too large");
  uint64_t map = map_mib ? map_mib << 20 : o.n_seconds * 512;
  if (map < ((uint64_t)1 << 30)) map = (uint64_t)1 << 30;
  o.map_size = (size_t)map;

  if (snprintf(tmpdir, sizeof tmpdir, "%s/kl-calbench-XXXXXX", o.parent) >= (int)sizeof tmpdir) die(o.parent, "path too long");
  if (mkdtemp(tmpdir) == NULL) {
    int err = errno;
    tmpdir[0] = '\0';
    die("mkdtemp", strerror(err));
  }
  atexit(cleanup);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  kb_print_header("bench_calendar");
  char buf[64], buf2[64];
  printf("directory %s; N = %llu seconds from genesis %llu, every 10th second empty; appends of %llu seconds; "
         "map %s\n",
         tmpdir, (unsigned long long)o.n_seconds, (unsigned long long)o.genesis, (unsigned long long)o.batch,
         mb(o.map_size, buf, sizeof buf));
  printf("reads: %.2f s or %llu calls per measurement, every %llu'th chain checked; appends: %.2f s or %llu calls\n",
         o.read_secs, (unsigned long long)o.max_reads, (unsigned long long)o.verify_every, o.append_secs,
         (unsigned long long)o.max_appends);

  kl_cal_entry_t *ent = calloc((size_t)o.batch, sizeof *ent);
  kl_imprint_t *roots = calloc((size_t)o.batch, sizeof *roots);
  if (ent == NULL || roots == NULL) die("entries", "out of memory");

  bench_appends(&o, ent, roots);
  if (stop) return 1;

  char dir[600], file[700];
  kl_cal_t *cal = cal_new(&o, "calendar", dir, sizeof dir);
  uint64_t built = build(&o, cal, ent, roots);
  free(ent);
  free(roots);
  if (stop || built == 0) return 1;

  kl_err_t e = {0};
  kl_cal_info_t info;
  if (kl_cal_info(cal, &info, &e)) die("kl_cal_info", e.msg);
  if (info.empty || info.last != o.genesis + built - 1 || info.rounds + info.fillers != built)
    wrong("kl_cal_info disagrees with the build (t = seconds built, P = genesis)", built, o.genesis, NULL);
  path_in(file, sizeof file, dir, "data.mdb");
  fsize_t fs = file_size(file);
  printf("kl_cal_info: last %llu, %llu rounds + %llu empty seconds; used_bytes %s = %.1f bytes per second\n",
         (unsigned long long)info.last, (unsigned long long)info.rounds, (unsigned long long)info.fillers,
         mb(info.used_bytes, buf, sizeof buf), (double)info.used_bytes / (double)built);
  printf("data.mdb: size %s (%.1f bytes per second), allocated on disk %s (%.1f bytes per second)\n",
         mb(fs.size, buf, sizeof buf), (double)fs.size / (double)built, mb(fs.allocated, buf2, sizeof buf2),
         (double)fs.allocated / (double)built);

  reader_t rd;
  memset(&rd, 0, sizeof rd);
  rd.o = &o;
  rd.P = info.last;
  kl_buf_init(&rd.buf);
  if (kl_hasher_init(&rd.h, &e)) die("hasher", e.msg);
  if (kl_cal_root(cal, rd.P, &rd.rootP, &e)) wrong("kl_cal_root(P)", rd.P, rd.P, e.msg);
  char hex[2 * KL_IMPRINT_MAX + 1];
  printf("root(P = %llu) = %s\n", (unsigned long long)rd.P, kl_imprint_hex(&rd.rootP, hex));

  uint64_t rng = o.seed * 0x9E3779B97F4A7C15ull + 12345;
  lat_t l;
  lat_init(&l, (size_t)o.max_reads);
  bench_reads_warm(&rd, cal, info.last, &rng, &l);
  kl_cal_close(cal);
  if (!stop) {
    printf("\n== the closed calendar ==\n");
    describe_closed(&o, dir, built);
  }
  if (!stop) bench_reads_cold(&rd, dir, info.last, &rng, &l);
  printf("\nus = microseconds per call, each call timed on its own (wall clock); cpu = process CPU time / wall\n"
         "time over the whole measurement, checks included. Chains checked: decoded, root recomputed and\n"
         "compared with kl_cal_root(P), times, shape and input leaf; any mismatch aborts.\n");
  free(l.v);
  kl_buf_free(&rd.buf);
  kl_hasher_close(&rd.h);
  return stop ? 1 : 0;
}
