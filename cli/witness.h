/* keyless: witness cosignatures in the CLI (issue 14; docs/formats.md §8, docs/operations.md
 * "Witnesses"). Owner: the witness helper.
 *   witness_check.c: reading and writing cosignature files (a path or an http(s):// URL), and the
 *                    k-of-n requirement `keyless verify` and `keyless audit` take:
 *                    --witness KEY.pem (repeatable), --witnesses-required K, --witness-file FILE.
 *   cmd_witness.c:   `keyless witness init|sign|add|show`.
 */
#ifndef KL_CLI_WITNESS_H
#define KL_CLI_WITNESS_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "keyless/pubfile.h"
#include "keyless/witness.h"

#define CLI_WITNESS_MAX 32

/* getopt_long values of the three options (above every subcommand's own). */
enum { CLI_O_WITNESS = 0x300, CLI_O_WITNESSES_REQUIRED, CLI_O_WITNESS_FILE };
#define CLI_WITNESS_OPTIONS                                                                     \
  {"witness", required_argument, NULL, CLI_O_WITNESS},                                          \
      {"witnesses-required", required_argument, NULL, CLI_O_WITNESSES_REQUIRED},                \
      {"witness-file", required_argument, NULL, CLI_O_WITNESS_FILE}
#define CLI_WITNESS_HELP                                                                           \
  "  --witness KEY.pem: a known witness's public key (or certificate); repeatable. Then the\n"   \
  "      publication used must carry --witnesses-required K (default: all of them) valid\n"      \
  "      cosignatures of distinct known witnesses, read from --witness-file FILE|URL (default:\n" \
  "      the -P file or URL with .witness appended); else exit 6 naming the publication\n"

typedef struct cli_witness {
  const char *paths[CLI_WITNESS_MAX];
  size_t n;          /* --witness given */
  uint64_t k;        /* --witnesses-required; 0: n */
  const char *file;  /* --witness-file */
  /* loaded by cli_witness_check_pub */
  bool loaded;
  kl_witkey_t *keys[CLI_WITNESS_MAX];
  kl_witfile_t wf;
} cli_witness_t;

/* Takes one of the three options; KL_EXIT_USAGE with a message on stderr (cmd names the
 * subcommand). */
int cli_witness_opt(cli_witness_t *w, const char *cmd, int opt, const char *arg);
/* The publication (t, root) must carry the required cosignatures. The keys and the file (file,
 * or pubfile + ".witness") are loaded on the first call. KL_EXIT_OK; KL_EXIT_VERIFY with the
 * reason in why (the publication, how many valid, how many required, what was wrong with the
 * others); another status with the reason in why (usage, an unreadable key or malformed file). */
int cli_witness_check_pub(cli_witness_t *w, const char *pubfile, uint64_t t, const kl_imprint_t *root, char *why,
                          size_t cap);
void cli_witness_free(cli_witness_t *w);

/* keyless verify --witness: the publication of sig (its publication record; else the first of pf
 * at or after its signing time; else the user publication of o), checked as above. On failure
 * prints the verdict (text, or JSON with json) and returns its exit status. */
struct kl_sig;
struct kl_verify_opts;
int cli_witness_check_sig(cli_witness_t *w, const struct kl_sig *sig, const kl_pubfile_t *pf,
                          const struct kl_verify_opts *o, const char *pubfile, bool json);

/* A cosignature file from a path or an http(s):// URL. *missing: it does not exist (no file, or
 * HTTP 404), then f is empty and the status KL_EXIT_OK. Other failures: an exit status and e. */
int cli_witfile_read(const char *where, kl_witfile_t *f, bool *missing, kl_err_t *e);
/* Writes f to path atomically (temporary file, fsync, rename). */
int cli_witfile_write(const char *path, const kl_witfile_t *f, kl_err_t *e);

#endif
