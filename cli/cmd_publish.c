/* keyless publish: make the publications file from a calendar: one publication per interval
 * (default daily at 00:00:00 UTC) from genesis to the last second, the calendar-auth
 * certificates, and a CMS signature by the publications certificate. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "keyless/calendar.h"

#define MAX_PUBS 200000
#define MAX_CERTS 16

static void usage(FILE *f) {
  fprintf(f, "usage: keyless publish -D CALDIR -o FILE --cert PUB.crt --key PUB.key [--chain CA.pem]\n"
             "         [--auth-cert CALENDAR-AUTH.crt]... [--interval SECONDS] [--latest] [--repo-uri URI]\n"
             "  publications at every multiple of --interval (default 86400: daily at 00:00:00 UTC) within the\n"
             "  calendar, and with --latest also at its last second. The file is replaced atomically.\n");
}

int cmd_publish(int argc, char **argv) {
  enum { O_CERT = 256, O_KEY, O_CHAIN, O_AUTH, O_INTERVAL, O_LATEST, O_REPO };
  static const struct option opts[] = {
      {"dir", required_argument, NULL, 'D'},      {"output", required_argument, NULL, 'o'},
      {"cert", required_argument, NULL, O_CERT},  {"key", required_argument, NULL, O_KEY},
      {"chain", required_argument, NULL, O_CHAIN}, {"auth-cert", required_argument, NULL, O_AUTH},
      {"interval", required_argument, NULL, O_INTERVAL}, {"latest", no_argument, NULL, O_LATEST},
      {"repo-uri", required_argument, NULL, O_REPO}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *dir = NULL, *out = NULL, *cert = NULL, *key = NULL, *chain = NULL, *repo = NULL;
  const char *auth[MAX_CERTS];
  size_t n_auth = 0;
  uint64_t interval = 86400;
  bool latest = false;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "D:o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'D': dir = optarg; break;
      case 'o': out = optarg; break;
      case O_CERT: cert = optarg; break;
      case O_KEY: key = optarg; break;
      case O_CHAIN: chain = optarg; break;
      case O_REPO: repo = optarg; break;
      case O_LATEST: latest = true; break;
      case O_AUTH:
        if (n_auth == MAX_CERTS) {
          fprintf(stderr, "keyless publish: at most %d --auth-cert\n", MAX_CERTS);
          return KL_EXIT_USAGE;
        }
        auth[n_auth++] = optarg;
        break;
      case O_INTERVAL:
        if (!cli_parse_u64(optarg, &interval) || interval == 0) {
          fprintf(stderr, "keyless publish: --interval wants a positive number of seconds\n");
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if (dir == NULL || out == NULL || cert == NULL || key == NULL || optind != argc) {
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  kl_err_t e = {0};
  kl_cal_t *cal = NULL;
  kl_cal_info_t info;
  kl_pub_data_t *pubs = NULL;
  uint8_t *ders[MAX_CERTS] = {0};
  size_t lens[MAX_CERTS];
  kl_buf_t file = KL_BUF_INIT;
  int r, st = KL_EXIT_OK;
  kl_cal_opts_t ro = {.read_only = true};
  if ((r = kl_cal_open(dir, &ro, &cal, &e)) || (r = kl_cal_info(cal, &info, &e))) goto fail;
  if (info.empty) {
    r = kl_err_set(&e, KL_ENOTFOUND, "the calendar in %s is empty: nothing to publish", dir);
    goto fail;
  }
  for (size_t k = 0; k < n_auth; k++)
    if ((r = cli_read_pem_der(auth[k], &ders[k], &lens[k], &e))) goto fail;
  uint64_t first = (info.genesis + interval - 1) / interval * interval;
  size_t n = first <= info.last ? (size_t)((info.last - first) / interval + 1) : 0;
  if (n + 1 > MAX_PUBS) {
    r = kl_err_set(&e, KL_ERANGE, "%zu publications at interval %llu: too many (max %d)", n, (unsigned long long)interval, MAX_PUBS);
    goto fail;
  }
  pubs = calloc(n + 1, sizeof *pubs);
  if (pubs == NULL) {
    r = kl_err_set(&e, KL_ENOMEM, "out of memory");
    goto fail;
  }
  size_t np = 0;
  for (uint64_t t = first; np < n; t += interval, np++) {
    pubs[np].time = t;
    if ((r = kl_cal_root(cal, t, &pubs[np].hash, &e))) goto fail;
  }
  if (latest && (np == 0 || pubs[np - 1].time != info.last)) {
    pubs[np].time = info.last;
    if ((r = kl_cal_root(cal, info.last, &pubs[np].hash, &e))) goto fail;
    np++;
  }
  kl_pubfile_spec_t spec = {2, (uint64_t)time(NULL), repo, (const uint8_t *const *)ders, lens, n_auth, pubs, np,
                            cert, key, chain};
  if ((r = kl_pubfile_write(&spec, &file, &e)) || (r = cli_write_file_atomic(out, file.p, file.len, true, &e))) goto fail;
  printf("wrote %s: %zu publications", out, np);
  if (np) {
    char t[64], ps[KL_PUBSTR_MAX];
    if (kl_pubstr_encode(pubs[np - 1].time, &pubs[np - 1].hash, ps, sizeof ps, &e) == 0)
      printf(", the latest %s:\n  %s", cli_utc(pubs[np - 1].time, t, sizeof t), ps);
  }
  printf("\n");
  goto out;
fail:
  fprintf(stderr, "keyless publish: %s\n", e.msg);
  st = cli_exit_for(r);
out:
  for (size_t k = 0; k < n_auth; k++) free(ders[k]);
  free(pubs);
  kl_buf_free(&file);
  kl_cal_close(cal);
  return st;
}
