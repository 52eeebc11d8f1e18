/* The one table of exit statuses every `keyless` subcommand uses (the enum in cli.h), printed by
 * every --help and by `keyless --help`, so that a script can rely on one meaning per number. */
#include "cli.h"

static const struct {
  int code;
  const char *meaning;
} exit_table[] = {
    {KL_EXIT_OK, "success: every file signed (or already signed), verified, extended, written"},
    {KL_EXIT_GENERAL, "other failure, e.g. refused by a core node, no leader, internal error"},
    {KL_EXIT_USAGE, "bad usage: unknown option, missing or malformed argument"},
    {KL_EXIT_FORMAT, "malformed input or answer: signature, PDU, publications file, calendar"},
    {KL_EXIT_NETWORK, "network: cannot connect, TLS handshake failed, no answer in time"},
    {KL_EXIT_VERIFY, "verification failed or inconclusive (an existing signature, a calendar)"},
    {KL_EXIT_EXTENDER, "the extender answered with an error status"},
    {KL_EXIT_AGGREGATOR, "the gateway or aggregator answered with an error status"},
    {KL_EXIT_IO, "I/O: a file cannot be read or written"},
    {KL_EXIT_CRYPTO, "cryptography or trust: a certificate or publications file not trusted"},
    {KL_EXIT_HMAC, "an answer's HMAC is wrong (wrong key?)"},
    {KL_EXIT_AUTH, "login refused: unknown user or wrong key"},
    {KL_EXIT_CONFIG, "configuration file (--conf, $KSI_CONF) unreadable or malformed"},
};

void cli_exit_table(FILE *f) {
  fprintf(f, "\nExit status (the same for every keyless command):\n");
  for (size_t i = 0; i < sizeof exit_table / sizeof exit_table[0]; i++)
    fprintf(f, "  %-3d %s\n", exit_table[i].code, exit_table[i].meaning);
}
