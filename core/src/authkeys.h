/* The core's calendar-auth keys (docs/keys.md "Rotating the calendar-auth key"): the key of
 * [keys] calendar_auth_cert/_key, active from the beginning, and optionally the next key of
 * [keys] next_calendar_auth_cert/_key, active from the second next_calendar_auth_from on.
 * Every member signs second s (the 0x805 of an answer for s, a replication batch ending at s)
 * with the key active at s, so members agree whatever order they were reconfigured in.
 *
 * Owner: node_config.c opens a set at load (so --check-config finds a wrong PIN, passphrase or
 * URI) and stores it in core_config_t; core_start takes it over; a SIGHUP (node.c) loads a new
 * set and swaps it in only if core_authkeys_check_reload accepts it, so no second up to now
 * changes key. Sets are immutable once opened; one thread (the loop) uses them. */
#ifndef KL_CORE_AUTHKEYS_H
#define KL_CORE_AUTHKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"
#include "keyless/pki.h"

#define CORE_AUTHKEYS_MAX 2

typedef struct core_authkey {
  kl_calauth_t *ca;
  uint64_t from;       /* the first second it signs; 0 for the first key */
  char id[9];          /* the certificate id (CRC-32 of the DER), 8 hex digits as 0x805 carries it */
  int64_t not_before, not_after; /* the certificate's validity, unix seconds */
} core_authkey_t;

typedef struct core_authkeys {
  core_authkey_t k[CORE_AUTHKEYS_MAX]; /* in order of from, strictly increasing */
  size_t n;
} core_authkeys_t;

/* What the configuration names: cert PEM path, key URI, first second (0 for the first key). */
typedef struct core_authkey_spec {
  const char *cert, *key;
  uint64_t from;
} core_authkey_spec_t;

/* Index of the key that signs second s among n keys whose firsts seconds are `from` (strictly
 * increasing, from[0] = 0): the last one with from <= s. */
size_t core_authkeys_index(const uint64_t *from, size_t n, uint64_t s);
/* The key (and its id) that signs second s. */
const core_authkey_t *core_authkeys_at(const core_authkeys_t *ks, uint64_t s);

/* Parses an activation second: decimal unix seconds or ISO 8601 UTC "YYYY-MM-DDTHH:MM:SSZ".
 * KL_EINVAL naming the text. */
int core_authkeys_parse_time(const char *text, uint64_t *out, kl_err_t *e);

/* Opens n (1..CORE_AUTHKEYS_MAX) keys. Refused (KL_EINVAL, naming `where` and the key): a from
 * not after the previous key's, the same key or certificate twice, a next key's certificate not
 * valid at its first second. flags as kl_calauth_open. *out is the caller's (core_authkeys_free). */
int core_authkeys_open(const char *where, const core_authkey_spec_t *spec, size_t n, unsigned flags,
                       core_authkeys_t **out, kl_err_t *e);
void core_authkeys_free(core_authkeys_t *ks);

/* Whether `next` may replace `cur` when `now` is the newest second this node may already have
 * signed (or be signing): the key at `now` stays the same certificate, and every key of `next`
 * that starts after the first second and is not in `cur` with the same start starts after now.
 * KL_ESTATE with the reason. */
int core_authkeys_check_reload(const core_authkeys_t *cur, const core_authkeys_t *next, uint64_t now, kl_err_t *e);

/* One line for the log: "id=... from=..." per key. */
void core_authkeys_describe(const core_authkeys_t *ks, char *out, size_t cap);

#endif
