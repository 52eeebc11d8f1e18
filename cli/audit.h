/* keyless audit: what cmd_audit.c shares with audit_net.c, which asks one extender's calendar
 * endpoints (docs/formats.md "Calendar auditing") and checks each answer's form. */
#ifndef KL_CLI_AUDIT_H
#define KL_CLI_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "keyless/calproof.h"
#include "keyless/netclient.h"

typedef struct aud_ext {
  const char *url; /* as given with -X, without a login:key (points to shown) */
  char shown[600];
  kl_url_t u;      /* its scheme, host and port (the path is replaced) */
  kl_calhead_t head;
  int timeout_ms;
} aud_ext_t;

/* Parses url (http(s):// or ksi+http(s)://, any path, the userinfo ignored) into x.
 * KL_EXIT_USAGE with a message otherwise. */
int aud_ext_init(aud_ext_t *x, const char *url, int timeout_ms, kl_err_t *e);

/* Each returns an exit status: KL_EXIT_OK; KL_EXIT_NETWORK (no answer); KL_EXIT_EXTENDER (an
 * HTTP error status, or an answer that is not what was asked: another span, a malformed TLV).
 * Messages name the extender. */
int aud_head(aud_ext_t *x, kl_err_t *e);
/* The proof from..to with both roots, checked to be for that span; not verified. */
int aud_consistency(aud_ext_t *x, uint64_t from, uint64_t to, kl_calproof_t *out, kl_err_t *e);
/* Leaves from..to (at most KL_CALRANGE_MAX) with the forest before from. */
int aud_range(aud_ext_t *x, uint64_t from, uint64_t to, kl_calrange_t *out, kl_err_t *e);

#endif
