/* keyless devpki: a development CA, publications certificate and calendar-auth key. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "keyless/pki.h"

int cmd_devpki(int argc, char **argv) {
  enum { O_EMAIL = 256, O_DAYS };
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"email", required_argument, NULL, O_EMAIL},
                                       {"days", required_argument, NULL, O_DAYS},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL, *email = "publications@keyless.invalid";
  uint64_t days = 3650;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'o': dir = optarg; break;
      case O_EMAIL: email = optarg; break;
      case O_DAYS:
        if (!cli_parse_u64(optarg, &days) || days == 0 || days > 36500) {
          fprintf(stderr, "keyless devpki: --days wants 1..36500\n");
          return KL_EXIT_USAGE;
        }
        break;
      case 'h':
        printf("usage: keyless devpki -o DIR [--email ADDRESS] [--days N]\n"
               "  writes ca.{crt,key}, publications.{crt,key}, calendar-auth.{crt,key}: for development only\n");
        return KL_EXIT_OK;
      default: return KL_EXIT_USAGE;
    }
  }
  if (dir == NULL || optind != argc) {
    fprintf(stderr, "usage: keyless devpki -o DIR [--email ADDRESS] [--days N]\n");
    return KL_EXIT_USAGE;
  }
  kl_err_t e = {0};
  int r = kl_devpki_create(dir, email, (int)days, &e);
  if (r) {
    fprintf(stderr, "keyless devpki: %s\n", e.msg);
    return r == KL_ESTATE ? KL_EXIT_USAGE : cli_exit_for(r);
  }
  printf("development PKI written to %s (NOT FOR PRODUCTION)\n"
         "  trust anchor: %s/ca.crt   constraint: --cnstr E=%s\n", dir, dir, email);
  return KL_EXIT_OK;
}
