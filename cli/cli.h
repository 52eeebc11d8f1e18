/* The `keyless` command: shared helpers for the subcommands. */
#ifndef KL_CLI_H
#define KL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/pubfile.h"
#include "conf.h"

/* Exit statuses, as ksi-tool's. */
enum {
  KL_EXIT_OK = 0,
  KL_EXIT_GENERAL = 1,
  KL_EXIT_USAGE = 3,
  KL_EXIT_FORMAT = 4,
  KL_EXIT_NETWORK = 5,
  KL_EXIT_VERIFY = 6,
  KL_EXIT_EXTENDER = 7,
  KL_EXIT_AGGREGATOR = 8,
  KL_EXIT_IO = 9,
  KL_EXIT_CRYPTO = 10,
  KL_EXIT_HMAC = 11,
  KL_EXIT_AUTH = 14,
  KL_EXIT_CONFIG = 16,
};

/* Prints the table of exit statuses above, with one line per status (cli/exit.c). */
void cli_exit_table(FILE *f);

int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_pubfile(int argc, char **argv);
int cmd_hash(int argc, char **argv);
int cmd_calendar(int argc, char **argv);
int cmd_extend(int argc, char **argv);
int cmd_devpki(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_core(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_witness(int argc, char **argv);
int cmd_audit_log(int argc, char **argv);

/* keyless verify --manifest (verify_manifest.c): each of files[0..n) (relative to base, NULL:
 * the current directory) must be listed in the manifest with its hash under alg. Prints one
 * line (or JSON object) per file; returns 0, KL_EXIT_VERIFY, or KL_EXIT_IO. */
int cli_verify_manifest(const char *manifest, const char *base, int alg, char *const *files, size_t n, bool json);

/* Maps a library error code to an exit status. */
int cli_exit_for(int kl_code);

/* Reads a whole file ("-" = stdin) of at most max bytes. KL_ETOOBIG if larger. Caller frees. */
int cli_read_file(const char *path, size_t max, uint8_t **buf, size_t *len, kl_err_t *e);
/* Writes a file atomically: a temporary file in the same directory, fsync, rename. Refuses to
 * replace an existing file unless force (KL_ESTATE). */
int cli_write_file_atomic(const char *path, const uint8_t *p, size_t n, bool force, kl_err_t *e);
/* Reads the first certificate of a PEM file as DER (caller frees). */
int cli_read_pem_der(const char *path, uint8_t **der, size_t *len, kl_err_t *e);
/* Strips a file:// prefix. */
const char *cli_file_path(const char *url);
/* Streams a file ("-" = stdin) through alg. */
int cli_hash_file(const char *path, int alg, kl_imprint_t *out, kl_err_t *e);

/* Checks an extender URL for -X before anything is sent: a scheme the client speaks (http://,
 * https://, ksi+http://, ksi+https://, ksi+tcp://) and a login and key, from user/key (NULL:
 * none given) or the URL's userinfo. KL_EINVAL or KL_EUNSUPPORTED with a message: a usage
 * error, not a verdict. */
int cli_check_extender(const char *url, const char *user, const char *key, kl_err_t *e);

/* The https options every subcommand that fetches URLs takes: --ca FILE (trust anchors
 * instead of the system store; default $KL_CA) and, for `keyless core`, --cert FILE --key FILE
 * (the operator's admin certificate; default $KL_ADMIN_CERT, $KL_ADMIN_KEY). The option
 * table entries and help lines below are shared so that every subcommand says the same. */
#define CLI_TLS_HELP                                                                                  \
  "  --ca FILE   trust anchors (PEM) for https:// URLs instead of the system CA store\n"              \
  "              (default $KL_CA); e.g. a keyless network's cluster-ca.crt\n"
#define CLI_ADMIN_TLS_HELP                                                                            \
  "  --cert FILE, --key FILE   the operator's admin certificate and key (PEM), presented to the\n" \
  "              core's admin port (https://); default $KL_ADMIN_CERT, $KL_ADMIN_KEY\n"
typedef struct cli_tls {
  const char *ca, *cert, *key; /* from the options; NULL: not given */
} cli_tls_t;
/* Fills in what the options left out from the environment ($KL_CA; with admin also
 * $KL_ADMIN_CERT and $KL_ADMIN_KEY) and makes it the default of every request
 * (kl_net_set_tls_defaults), loading the files now. KL_EXIT_USAGE with a message naming the
 * file (and the variable it came from) on a bad one, else KL_EXIT_OK. */
int cli_tls_setup(cli_tls_t *t, bool admin, kl_err_t *e);

/* A signature laid out for a person, as `keyless inspect` prints it (name: its file). */
struct kl_sig;
void cli_sig_dump(FILE *f, const char *name, const struct kl_sig *s);

/* "2024-03-14 21:34:00 UTC" */
const char *cli_utc(uint64_t t, char *buf, size_t cap);
/* Parses an unsigned decimal; false on garbage or overflow. */
bool cli_parse_u64(const char *s, uint64_t *out);

/* Publications file from -P with the trust options of verify/pubfile. */
typedef struct cli_trust {
  const char *anchors[16];
  size_t n_anchors;
  kl_cnstr_t cnstr[16];
  size_t n_cnstr;
  int64_t at;
  bool no_verify;
  size_t signers_required; /* --publications-signers K: distinct trusted signers needed; 0 = 1 */
} cli_trust_t;
/* Parses --publications-signers K (1..16) into t; false on a bad number. */
bool cli_trust_set_signers(cli_trust_t *t, const char *arg);
/* Adds "OID=VALUE" to t; false on bad syntax or too many. */
bool cli_trust_add_cnstr(cli_trust_t *t, char *arg);
/* Loads and (unless no_verify) verifies the publications file. Returns an exit status. */
int cli_load_pubfile(const char *url, const cli_trust_t *t, kl_pubfile_t **out, kl_err_t *e);

/* A copy of peer-supplied text safe for a terminal: control characters become \xHH.
 * Returns buf. */
const char *cli_printable(const char *s, char *buf, size_t cap);

/* Minimal JSON writer to a FILE. */
typedef struct cli_json {
  FILE *f;
  int depth;
  bool first[32];
} cli_json_t;
void json_begin(cli_json_t *j, FILE *f);
void json_obj(cli_json_t *j, const char *key); /* key NULL inside arrays / at top */
void json_arr(cli_json_t *j, const char *key);
void json_end_obj(cli_json_t *j);
void json_end_arr(cli_json_t *j);
void json_str(cli_json_t *j, const char *key, const char *v);
void json_u64(cli_json_t *j, const char *key, uint64_t v);
void json_bool(cli_json_t *j, const char *key, bool v);
void json_hex(cli_json_t *j, const char *key, const uint8_t *p, size_t n);
void json_imprint(cli_json_t *j, const char *key, const kl_imprint_t *imp);
void json_finish(cli_json_t *j);

#endif
