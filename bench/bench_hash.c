/* bench_hash: the aggregation-step hashing rate next to raw SHA-256 of the same input.
 *
 * One aggregation step hashes a 33-byte imprint, a 33-byte sibling imprint and the level byte:
 * 67 bytes of SHA-256 (KSI-FORMAT.md §4.1). Measured four ways in the same run:
 *   (a) kl_aggr_step() with one kl_hasher_t (reused EVP_MD_CTX; what keyless does)
 *   (b) EVP_Digest(..., EVP_sha256(), NULL): a new context and an implicit fetch per call
 *   (c) raw EVP: an EVP_MD fetched once and one reused EVP_MD_CTX (the floor)
 *   (d) kl_hash() one-shot with its per-thread context (informational)
 *   (e) as (c), but fed in the four pieces kl_aggr_step() feeds: algorithm byte, digest,
 *       sibling, level (informational: separates the cost of the split from keyless's own)
 * Each method feeds its digest back into the next input (a hash chain), so no call can be
 * optimised away; before timing, the four chains are run for a fixed count from the same seed
 * and must end on the same digest. The methods are interleaved in rounds so that a noisy
 * neighbour hurts them alike; the ratios (a)/(c) and (b)/(c) of one run are what we record.
 *
 * usage: bench_hash [-t SECONDS] [-n COUNT] [-r ROUNDS]
 *   -t  seconds per method, split over the rounds (default 2)
 *   -n  at most this many hashes per method (default 10^9)
 *   -r  rounds (default 5)
 */
#include <keyless/chains.h>
#include <keyless/hash.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define STEP_LEN 67 /* 33-byte imprint + 33-byte sibling + level byte */
#define BATCH 256   /* hashes between clock reads */
#define CHECK_N 1000
#define MAX_ROUNDS 100
#define LEVEL 0x2A

typedef struct hstate {
  kl_hasher_t h;
  EVP_MD *md;
  EVP_MD_CTX *ctx;
  kl_imprint_t cur;       /* (a): the current imprint */
  uint8_t sib[33];        /* the sibling imprint */
  uint8_t buf[STEP_LEN];  /* (b)-(d): cur || sib || level; digests land in buf[1..32] */
} hstate_t;

typedef void (*batch_fn)(hstate_t *s, unsigned n);

static void fail(const char *what) {
  fprintf(stderr, "bench_hash: %s failed\n", what);
  abort();
}

static void batch_aggr_step(hstate_t *s, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (kl_aggr_step(&s->h, KL_HASH_SHA256, true, &s->cur, s->sib, sizeof s->sib, LEVEL, &s->cur,
                     NULL))
      fail("kl_aggr_step");
}

static void batch_evp_digest(hstate_t *s, unsigned n) {
  unsigned len = 0;
  for (unsigned i = 0; i < n; i++)
    if (EVP_Digest(s->buf, STEP_LEN, s->buf + 1, &len, EVP_sha256(), NULL) != 1 || len != 32)
      fail("EVP_Digest");
}

static void batch_evp_reused(hstate_t *s, unsigned n) {
  unsigned len = 0;
  for (unsigned i = 0; i < n; i++)
    if (EVP_DigestInit_ex(s->ctx, s->md, NULL) != 1 ||
        EVP_DigestUpdate(s->ctx, s->buf, STEP_LEN) != 1 ||
        EVP_DigestFinal_ex(s->ctx, s->buf + 1, &len) != 1 || len != 32)
      fail("EVP_DigestInit_ex/Update/Final_ex");
}

/* (c) fed the way kl_aggr_step feeds it: algorithm byte, digest, sibling, level. */
static void batch_evp_split(hstate_t *s, unsigned n) {
  unsigned len = 0;
  for (unsigned i = 0; i < n; i++)
    if (EVP_DigestInit_ex(s->ctx, s->md, NULL) != 1 || EVP_DigestUpdate(s->ctx, s->buf, 1) != 1 ||
        EVP_DigestUpdate(s->ctx, s->buf + 1, 32) != 1 ||
        EVP_DigestUpdate(s->ctx, s->buf + 33, 33) != 1 ||
        EVP_DigestUpdate(s->ctx, s->buf + 66, 1) != 1 ||
        EVP_DigestFinal_ex(s->ctx, s->buf + 1, &len) != 1 || len != 32)
      fail("EVP_DigestInit_ex/Update x4/Final_ex");
}

static void batch_kl_hash(hstate_t *s, unsigned n) {
  kl_imprint_t out;
  for (unsigned i = 0; i < n; i++) {
    if (kl_hash(KL_HASH_SHA256, s->buf, STEP_LEN, &out, NULL)) fail("kl_hash");
    memcpy(s->buf + 1, out.digest, 32);
  }
}

typedef struct method {
  const char *label;
  batch_fn fn;
  uint64_t ops;
  double wall, cpu;
  double round_rate[MAX_ROUNDS];
} method_t;

/* Sets the chain's start: cur = SHA-256("keyless bench"), sibling = SHA-256("sibling"). */
static void seed(hstate_t *s) {
  kl_imprint_t sib;
  if (kl_hash(KL_HASH_SHA256, "keyless bench", 13, &s->cur, NULL) ||
      kl_hash(KL_HASH_SHA256, "sibling", 7, &sib, NULL))
    fail("seed hash");
  kl_imprint_to_bytes(&sib, s->sib);
  kl_imprint_to_bytes(&s->cur, s->buf);
  memcpy(s->buf + 33, s->sib, 33);
  s->buf[66] = LEVEL;
}

/* The chain's current digest, whichever method advanced it. */
static const uint8_t *digest_of(const hstate_t *s, const method_t *m) {
  return m->fn == batch_aggr_step ? s->cur.digest : s->buf + 1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_hash [-t SECONDS] [-n COUNT] [-r ROUNDS]\n"
          "  -t SECONDS time per method, split over the rounds (default 2)\n"
          "  -n COUNT   at most COUNT hashes per method (default 1000000000)\n"
          "  -r ROUNDS  interleaved rounds (default 5, at most %d)\n",
          MAX_ROUNDS);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  double seconds = 2;
  uint64_t max = 1000000000ull, rounds = 5;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
      if (!kb_parse_seconds(argv[++i], &seconds)) {
        fprintf(stderr, "bench_hash: bad -t value %s\n", argv[i]);
        return 2;
      }
    } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
      if (!kb_parse_count(argv[++i], &max)) {
        fprintf(stderr, "bench_hash: bad -n value %s\n", argv[i]);
        return 2;
      }
    } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
      if (!kb_parse_count(argv[++i], &rounds) || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_hash: bad -r value %s\n", argv[i]);
        return 2;
      }
    } else {
      usage(stderr);
      return 2;
    }
  }

  method_t methods[] = {
      {"(a) kl_aggr_step, kl_hasher_t reused ctx", batch_aggr_step, 0, 0, 0, {0}},
      {"(b) EVP_Digest(EVP_sha256()), implicit fetch", batch_evp_digest, 0, 0, 0, {0}},
      {"(c) EVP, pre-fetched EVP_MD + reused ctx", batch_evp_reused, 0, 0, 0, {0}},
      {"(d) kl_hash() one-shot, per-thread ctx", batch_kl_hash, 0, 0, 0, {0}},
      {"(e) as (c) but 4 updates, like kl_aggr_step", batch_evp_split, 0, 0, 0, {0}},
  };
  enum { N_METHODS = sizeof methods / sizeof methods[0] };

  hstate_t s;
  memset(&s, 0, sizeof s);
  kl_err_t e = {0};
  if (kl_hasher_init(&s.h, &e)) fail("kl_hasher_init");
  s.md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
  s.ctx = EVP_MD_CTX_new();
  if (s.md == NULL || s.ctx == NULL) fail("EVP_MD_fetch/EVP_MD_CTX_new");

  /* Self-check: the same chain of CHECK_N steps from the same seed, every method. */
  uint8_t want[32];
  for (size_t k = 0; k < N_METHODS; k++) {
    seed(&s);
    methods[k].fn(&s, CHECK_N);
    if (k == 0) memcpy(want, digest_of(&s, &methods[k]), 32);
    if (memcmp(want, digest_of(&s, &methods[k]), 32) != 0) {
      fprintf(stderr, "bench_hash: %s computes a different chain than (a)\n", methods[k].label);
      return 1;
    }
  }

  kb_print_header("bench_hash");
  printf("SHA-256 of %d bytes (imprint 33 + sibling 33 + level 1), one thread; %.2f s and at "
         "most %llu hashes per method, in %llu interleaved rounds\n",
         STEP_LEN, seconds, (unsigned long long)max, (unsigned long long)rounds);
  printf("self-check: %d chained steps agree across all methods\n\n", CHECK_N);

  /* Warm-up, then the rounds. (a) advances s.cur, (b)-(d) advance s.buf; the digest values
   * no longer matter, only that each call depends on the previous one. */
  seed(&s);
  for (size_t k = 0; k < N_METHODS; k++) methods[k].fn(&s, 20000);
  double slice = seconds / (double)rounds;
  uint64_t cap = (max + rounds - 1) / rounds;
  for (uint64_t r = 0; r < rounds; r++) {
    for (size_t k = 0; k < N_METHODS; k++) {
      method_t *m = &methods[k];
      uint64_t ops = 0;
      double c0 = kb_cpu(), t0 = kb_now(), t = t0;
      while (ops < cap && t - t0 < slice) {
        unsigned n = cap - ops < BATCH ? (unsigned)(cap - ops) : BATCH;
        m->fn(&s, n);
        ops += n;
        t = kb_now();
      }
      m->ops += ops;
      m->wall += t - t0;
      m->cpu += kb_cpu() - c0;
      m->round_rate[r] = t > t0 ? (double)ops / (t - t0) : 0;
    }
  }

  printf("%-46s %11s %7s %5s %14s %8s %14s %16s\n", "method", "hashes", "wall s", "cpu", "rate",
         "ns/hash", "per cpu-s", "round min-max");
  double rate[N_METHODS], crate[N_METHODS];
  for (size_t k = 0; k < N_METHODS; k++) {
    method_t *m = &methods[k];
    char r0[32], r1[32], lo[32], hi[32];
    rate[k] = m->wall > 0 ? (double)m->ops / m->wall : 0;
    crate[k] = m->cpu > 0 ? (double)m->ops / m->cpu : 0;
    qsort(m->round_rate, (size_t)rounds, sizeof m->round_rate[0], cmp_double);
    printf("%-46s %11llu %7.2f %4.0f%% %12s/s %8.1f %12s/s %8s-%s\n", m->label,
           (unsigned long long)m->ops, m->wall, m->wall > 0 ? 100.0 * m->cpu / m->wall : 0.0,
           kb_fmt_rate(rate[k], r0, sizeof r0), m->ops ? 1e9 * m->wall / (double)m->ops : 0.0,
           kb_fmt_rate(crate[k], r1, sizeof r1), kb_fmt_rate(m->round_rate[0], lo, sizeof lo),
           kb_fmt_rate(m->round_rate[rounds - 1], hi, sizeof hi));
  }
  printf("\nratio of rates (a)/(c) = %.3f   (b)/(c) = %.3f\n", rate[0] / rate[2],
         rate[1] / rate[2]);
  printf("informational  (d)/(c) = %.3f   (e)/(c) = %.3f   (a)/(e) = %.3f\n", rate[3] / rate[2],
         rate[4] / rate[2], rate[0] / rate[4]);
  printf("by CPU time    (a)/(c) = %.3f   (b)/(c) = %.3f\n", crate[0] / crate[2],
         crate[1] / crate[2]);
  printf("(1.000 = as fast as raw EVP with a reused context. rate and ns/hash are by wall time;\n"
         " cpu = CPU time / wall time, below ~95%% the machine took the core away; per cpu-s =\n"
         " hashes per second of CPU time; round min-max = slowest and fastest round by wall time)\n");

  EVP_MD_CTX_free(s.ctx);
  EVP_MD_free(s.md);
  kl_hasher_close(&s.h);
  return 0;
}
