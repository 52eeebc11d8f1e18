/* keyless benchmarks: clocks, flag parsing and the header every bench program prints.
 * Timed results are printed, never asserted (DESIGN.md §6). */
#ifndef KL_BENCH_UTIL_H
#define KL_BENCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>

/* Monotonic wall clock and this process's CPU time, in seconds. */
double kb_now(void);
double kb_cpu(void);

/* Strict parsers for flag values: false on junk, trailing characters or out-of-range values.
 * Seconds must be in (0, 3600]; counts in [1, 2^63). */
bool kb_parse_seconds(const char *s, double *out);
bool kb_parse_count(const char *s, uint64_t *out);

/* Prints the program name, OpenSSL version, compiler and build type; warns on a non-Release
 * build. */
void kb_print_header(const char *prog);

struct sockaddr_storage;
/* "127.0.0.1:8010" or "[::1]:8010" into out; benchmarks only ever target loopback, so any other
 * address is refused. NULL on success, else what is wrong. */
const char *kb_parse_loopback(const char *s, struct sockaddr_storage *out);

/* "12.34 M", "567.8 k" style formatting of a rate into buf (at least 32 bytes). */
const char *kb_fmt_rate(double per_sec, char *buf, unsigned long cap);

#endif
