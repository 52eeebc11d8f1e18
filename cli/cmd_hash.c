/* keyless hash [-H ALG] FILE: the imprint of a file, streamed. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

int cmd_hash(int argc, char **argv) {
  static const struct option opts[] = {{"hash-alg", required_argument, NULL, 'H'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int alg = KL_HASH_DEFAULT, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "H:h", opts, NULL)) != -1) {
    switch (c) {
      case 'H':
        if ((alg = kl_hash_from_name(optarg)) < 0) {
          fprintf(stderr, "keyless hash: unknown hash algorithm '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'h':
        printf("usage: keyless hash [-H ALG] FILE|-\n  prints ALG:hex of the file's digest (default SHA-256)\n");
        cli_exit_table(stdout);
        return KL_EXIT_OK;
      default: return KL_EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "keyless hash: give exactly one FILE (or - for standard input)\n");
    return KL_EXIT_USAGE;
  }
  kl_imprint_t imp;
  kl_err_t e = {0};
  char hex[2 * KL_IMPRINT_MAX + 1];
  if (!kl_hash_available(alg)) {
    fprintf(stderr, "keyless hash: %s is not available in this OpenSSL build\n", kl_hash_name(alg));
    return KL_EXIT_CRYPTO;
  }
  int r = cli_hash_file(argv[optind], alg, &imp, &e);
  if (r) {
    fprintf(stderr, "keyless hash: %s\n", e.msg);
    return cli_exit_for(r);
  }
  printf("%s:%s\n", kl_hash_name(alg), kl_imprint_hex(&imp, hex) + 2);
  return KL_EXIT_OK;
}
