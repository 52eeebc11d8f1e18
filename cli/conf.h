/* The `keyless` command: ksi-tool's configuration files (KSI-FORMAT.md §7.5).
 *
 * A configuration file holds one option per line, written as on ksi-tool's command line:
 * `-S http://host:port/`, `--aggr-user anon`, `--cnstr E=publications@example.org`,
 * `--aggr-key=anon`, `--publications-file-no-verify`. A value may be "double quoted" (\" and \\
 * inside quotes stand for " and \). A line whose first non-blank character is '#' is a comment;
 * blank lines are ignored. Only the options of ksi-tool's configuration files (and keyless's
 * --ca and --timeout) are known; anything else is an error naming FILE:LINE.
 *
 * Priority (highest first): the command line, then `--conf FILE`, then the file named by
 * $KSI_CONF. One file serves every subcommand: an option a subcommand does not take is ignored
 * when it comes from a file (but is an error on the command line). A repeatable option (-V,
 * --cnstr) given at a higher priority replaces the lower ones' values instead of adding to them.
 *
 * Owned by the cli engineer. The parser (cli_conf_parse) is pure and unit-tested
 * (tests/unit/test_cli_conf.c); cli_conf_args does the file I/O and the merging. */
#ifndef KL_CLI_CONF_H
#define KL_CLI_CONF_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "keyless/err.h"

/* An option a configuration file may hold. */
typedef struct cli_conf_opt {
  char shrt;        /* 'S' for -S, 0 if it has no short form */
  const char *lng;  /* "aggr-user" for --aggr-user, NULL if it has no long form */
  bool has_arg;
  bool secret;      /* its value is a key: the file should not be readable by others */
} cli_conf_opt_t;

typedef struct cli_conf_entry {
  const cli_conf_opt_t *opt;
  char *value; /* NULL for a flag */
  unsigned line;
} cli_conf_entry_t;

typedef struct cli_conf {
  char *file; /* as named, for messages */
  cli_conf_entry_t *v;
  size_t n, cap;
  bool has_secret; /* an --aggr-key/--ext-key, or a URL with user:key@ */
} cli_conf_t;

/* Parses the text of a configuration file into c (which must be zeroed or freed before).
 * KL_EFORMAT with "FILE:LINE: what is wrong" on the first bad line (unknown option, missing or
 * extra value, unterminated quote, a NUL byte, --conf inside a file). */
int cli_conf_parse(cli_conf_t *c, const char *file, const char *text, size_t len, kl_err_t *e);
void cli_conf_free(cli_conf_t *c);
/* The option of a configuration file called name ("-S", "--aggr-user"); NULL if unknown. */
const cli_conf_opt_t *cli_conf_lookup(const char *name);

/* Where a subcommand's options came from. */
enum { CLI_SRC_ENV = 0, CLI_SRC_CONF = 1, CLI_SRC_CMDLINE = 2 };

/* Replaces *argc and *argv with: argv[0], the options of $KSI_CONF that this subcommand takes
 * (shorts and longs as given to getopt_long), those of --conf FILE (found on the command line),
 * then the command line as it was. Later ones win for single-valued options, so parsing the
 * result with getopt_long gives the documented priority. Warns on standard error when a file
 * holding a key is readable by group or others. Returns 0 (KL_EXIT_OK), or an exit status after
 * printing "keyless CMD: ..." (a file that cannot be read, a bad line). The subcommand's long
 * options must include {"conf", required_argument} (ignored when seen). */
int cli_conf_args(const char *cmd, int *argc, char ***argv, const char *shorts, const struct option *longs);
/* "FILE:LINE: " when arg (a pointer getopt_long returned as optarg) is a value from a configuration
 * file, else "". For error messages about a bad value. */
const char *cli_where(const char *arg);
/* CLI_SRC_ENV, CLI_SRC_CONF or CLI_SRC_CMDLINE for arg (NULL: CLI_SRC_CMDLINE). */
int cli_source(const char *arg);
/* Releases what cli_conf_args made (main calls it after the subcommand). */
void cli_conf_done(void);

#endif
