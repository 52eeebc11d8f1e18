/* keyless publish, shared between cmd_publish.c (the one-step publish and --prepare) and
 * publish_parts.c (k of n: --cosign and --assemble). docs/keys.md, "k of n". */
#ifndef KL_CLI_PUBLISH_H
#define KL_CLI_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "keyless/pubfile.h"

/* The dated copy's path: DIR/history/STEM-YYYYMMDDTHHMMSSZ[-N].bin, not yet existing (DIR made). */
int publish_history_path(const char *out, uint64_t created, char *buf, size_t n, kl_err_t *e);

/* " (keyless publish: --allow-clear-key ...)" after a refused clear key, else "". */
const char *publish_clear_key_hint(int r, const kl_err_t *e);

/* --cosign BODY: shows what the body holds and writes a detached signature over it to out. */
int publish_cosign(const char *body_path, const kl_pubfile_signer_t *s, const char *out);

/* --assemble BODY PART...: one file from the parts, checked (with trust->n_cnstr: k of n trusted
 * signers, default every part's), written to out and its history copy. */
int publish_assemble(const char *body_path, const char *const *parts, size_t n, const cli_trust_t *trust,
                     const char *out);

#endif
