/* keyless benchmarks: shared helpers (see bench_util.h). */
#include "bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef KL_BENCH_BUILD_TYPE
#define KL_BENCH_BUILD_TYPE "unknown"
#endif

static double ts_sec(clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0) {
    perror("clock_gettime");
    abort();
  }
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double kb_now(void) { return ts_sec(CLOCK_MONOTONIC); }

double kb_cpu(void) { return ts_sec(CLOCK_PROCESS_CPUTIME_ID); }

bool kb_parse_seconds(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v <= 0 || v > 3600) return false;
  *out = v;
  return true;
}

bool kb_parse_count(const char *s, uint64_t *out) {
  char *end = NULL;
  if (*s < '0' || *s > '9') return false; /* strtoull accepts "-1" */
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v == 0 || v >= (1ull << 63)) return false;
  *out = (uint64_t)v;
  return true;
}

void kb_print_header(const char *prog) {
  const char *bt = KL_BENCH_BUILD_TYPE;
#if defined(__VERSION__)
  const char *cc = __VERSION__;
#else
  const char *cc = "unknown";
#endif
  printf("%s: %s; compiler %s; build %s\n", prog, OpenSSL_version(OPENSSL_VERSION), cc, bt);
  if (strcmp(bt, "Release") != 0)
    printf("WARNING: not a Release build; figures are not comparable with BENCHMARKS.md\n");
}

const char *kb_fmt_rate(double v, char *buf, unsigned long cap) {
  if (v >= 1e6)
    snprintf(buf, cap, "%.3f M", v / 1e6);
  else if (v >= 1e3)
    snprintf(buf, cap, "%.2f k", v / 1e3);
  else
    snprintf(buf, cap, "%.1f ", v);
  return buf;
}

const char *kb_parse_loopback(const char *s, struct sockaddr_storage *out) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof host) return "expected HOST:PORT";
  size_t hl = (size_t)(colon - s);
  memcpy(host, s, hl);
  host[hl] = '\0';
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) return "bad port";
  memset(out, 0, sizeof *out);
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1) return "bad IPv6 address";
    if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return "not a loopback address (only ::1 and 127.0.0.0/8)";
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return "bad IPv4 address (names are not resolved)";
    if ((ntohl(a->sin_addr.s_addr) >> 24) != 127) return "not a loopback address (only ::1 and 127.0.0.0/8)";
  }
  return NULL;
}

double kb_proc_cpu(long pid) {
  char path[64], buf[1024];
  if (pid <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long long ut = 0, st = 0;
  /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

bool kb_proc_rss(long pid, uint64_t *rss_kib, uint64_t *peak_kib) {
  char path[64], line[256];
  bool have_rss = false, have_peak = false;
  if (pid <= 0) return false;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return false;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long long v = 0;
    if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
      *rss_kib = (uint64_t)v;
      have_rss = true;
    } else if (sscanf(line, "VmHWM: %llu kB", &v) == 1) {
      *peak_kib = (uint64_t)v;
      have_peak = true;
    }
  }
  fclose(f);
  return have_rss && have_peak;
}

double kb_machine_idle(void) {
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[5] = {0};
  if (f == NULL) return -1;
  int k = fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]);
  fclose(f);
  if (k < 5) return -1;
  return (double)(v[3] + v[4]) / (double)sysconf(_SC_CLK_TCK);
}

uint8_t *kb_rx_space(kb_rxbuf_t *b, size_t min_free, size_t first_cap, size_t *avail) {
  if (b->cap - b->len < min_free) {
    size_t cap = b->cap ? 2 * b->cap : first_cap > min_free ? first_cap : min_free;
    while (cap - b->len < min_free) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) return NULL;
    b->p = p;
    b->cap = cap;
  }
  *avail = b->cap - b->len;
  return b->p + b->len;
}

void kb_rx_consume(kb_rxbuf_t *b, size_t n) {
  if (n == 0) return;
  if (n < b->len) memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

void kb_rx_free(kb_rxbuf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
