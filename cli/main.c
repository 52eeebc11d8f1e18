/* keyless: the command-line tool. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keyless/version.h"

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} cmds[] = {
    {"sign", cmd_sign, "get files signed by a gateway (one request, local tree for several files)"},
    {"verify", cmd_verify, "verify a signature (internal, key, calendar, publication policies)"},
    {"inspect", cmd_inspect, "show a signature's chains, times and publication"},
    {"pubfile", cmd_pubfile, "check and show a publications file"},
    {"hash", cmd_hash, "print the imprint of a file"},
    {"extend", cmd_extend, "extend a signature to a publication through an extender"},
    {"calendar", cmd_calendar, "create, append to, read and audit a calendar (LMDB)"},
    {"publish", cmd_publish, "make the publications file from a calendar"},
    {"audit", cmd_audit, "check through extenders that the calendar is append-only and matches the publications"},
    {"audit-log", cmd_audit_log, "check a core's signed audit log offline: its chain and each record's signature"},
    {"witness", cmd_witness, "countersign publications that extend the last one seen (a witness); merge cosignatures"},
    {"core", cmd_core, "show the core cluster's nodes; add or remove a member"},
    {"devpki", cmd_devpki, "development PKI: publications and calendar-auth keys, cluster CA, node certificates"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: keyless COMMAND [OPTIONS]\n       keyless --version\n\ncommands:\n");
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
  fprintf(f, "\n'keyless COMMAND --help' shows a command's options. sign, extend, verify and pubfile\n"
             "also read ksi-tool's configuration files: --conf FILE, then the file named by $KSI_CONF.\n\n");
  cli_exit_table(f);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return KL_EXIT_OK;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("keyless %s\n", kl_version_line());
    return KL_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp(argv[1], cmds[i].name) == 0) {
      int st = cmds[i].fn(argc - 1, argv + 1);
      cli_conf_done(); /* what sign, extend, verify and pubfile read from configuration files */
      return st;
    }
  fprintf(stderr, "keyless: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return KL_EXIT_USAGE;
}
