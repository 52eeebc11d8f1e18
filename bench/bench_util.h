/* keyless benchmarks: clocks, flag parsing and the header every bench program prints.
 * Timed results are printed, never asserted (DESIGN.md §6). */
#ifndef KL_BENCH_UTIL_H
#define KL_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
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

/* ---- other processes, for benchmarks that share the machine with the daemons they load ---- */

/* CPU time (utime + stime) of process pid from /proc/PID/stat, in seconds; -1 if unreadable. */
double kb_proc_cpu(long pid);
/* Resident set size now (VmRSS) and its peak (VmHWM) of process pid, in KiB, from
 * /proc/PID/status; false if unreadable. */
bool kb_proc_rss(long pid, uint64_t *rss_kib, uint64_t *peak_kib);
/* Idle time (idle + iowait) of the whole machine, all cores, from /proc/stat, in seconds; -1 if
 * unreadable. The kernel counts idle time exactly on a tickless kernel, so cores x wall time
 * minus this is the busy time, interrupt and softirq work charged to no process included. */
double kb_machine_idle(void);

/* ---- a growable receive buffer for stream reads (libuv's alloc callback) ----
 * Bytes arrive at the end (kb_rx_space, then len += n); whole messages are taken from the start
 * (kb_rx_consume). No uv.h here: the caller wraps the space in a uv_buf_t. */
typedef struct kb_rxbuf {
  uint8_t *p;
  size_t len, cap;
} kb_rxbuf_t;

/* Makes room for at least min_free more bytes (the first allocation is first_cap, then the
 * capacity doubles) and returns where they go, with the room in *avail; NULL when out of
 * memory. */
uint8_t *kb_rx_space(kb_rxbuf_t *b, size_t min_free, size_t first_cap, size_t *avail);
/* Drops the first n bytes (n <= len), keeping the rest at the start. */
void kb_rx_consume(kb_rxbuf_t *b, size_t n);
void kb_rx_free(kb_rxbuf_t *b);

#endif
