/* A strict reader for the small JSON bodies the daemons accept (the gateway's JSON API): one
 * object whose values are strings, e.g. {"hash": "SHA-256:4f2a..."}. Nothing else is JSON the
 * daemons need to read, so this is deliberately not a general parser.
 *
 * Accepted: whitespace, one object, members "key": "value" separated by commas, the escapes
 * \" \\ \/ \b \f \n \r \t and \uXXXX (surrogate pairs joined; a lone surrogate or \u0000 is
 * refused), UTF-8 checked. Refused with a reason naming the byte offset: anything else (numbers,
 * nesting, trailing bytes, a repeated key, control characters, more than max members, a key or
 * value longer than KL_JSONFLAT_MAX). Thread-safe: no state. */
#ifndef KL_JSONFLAT_H
#define KL_JSONFLAT_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"

#define KL_JSONFLAT_MAX 256 /* bytes of a decoded key or value, without the terminating NUL */

typedef struct kl_jsonflat_kv {
  char key[KL_JSONFLAT_MAX + 1];
  char value[KL_JSONFLAT_MAX + 1];
} kl_jsonflat_kv_t;

/* Reads p[0..n) into out[0..*n_out), at most max members. 0, or KL_EFORMAT with e->msg. */
KL_API int kl_jsonflat_parse(const uint8_t *p, size_t n, kl_jsonflat_kv_t *out, size_t max, size_t *n_out,
                             kl_err_t *e);

/* The value of key among kv[0..n), or NULL. */
KL_API const char *kl_jsonflat_get(const kl_jsonflat_kv_t *kv, size_t n, const char *key);

/* Writes s as a JSON string (with quotes) into out[0..cap); "" if it does not fit. */
KL_API void kl_json_quote(const char *s, char *out, size_t cap);

#endif
