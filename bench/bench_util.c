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
