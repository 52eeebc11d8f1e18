/* keyless: the users file, the HMAC keys of the KSI logins a service accepts
 * (KSI-FORMAT.md §7.1: the key is the raw bytes of the shared secret).
 *
 * One login per line, "login:key". The login ends at the first ':'; the key is the rest of the
 * line, taken as it is (it may hold ':' and inner spaces; a trailing '\r' and trailing spaces
 * or tabs are dropped). Blank lines and lines starting with '#' (after optional indentation)
 * are ignored. Errors name the file and line: a line without ':', an empty login or key, a
 * login or key over 255 bytes, a login given twice, a control character. At most 1 MiB.
 *
 * kl_users_t is immutable once loaded: lookups may run from any thread. Keys returned by
 * kl_users_key() point into the object and are valid until kl_users_free(). To reload, load a
 * new object and swap it in, then free the old one.
 */
#ifndef KEYLESS_USERS_H
#define KEYLESS_USERS_H

#include <stddef.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_USERS_MAX_FIELD 255

typedef struct kl_users kl_users_t;

/* Caller frees with kl_users_free. */
KL_API int kl_users_load(const char *path, kl_users_t **out, kl_err_t *e);
/* The same from text in memory (len bytes, may hold no NUL); name is used in messages. */
KL_API int kl_users_parse(const char *name, const char *text, size_t len, kl_users_t **out, kl_err_t *e);
KL_API void kl_users_free(kl_users_t *u);

KL_API size_t kl_users_count(const kl_users_t *u);
/* The key of login, or NULL if the login is unknown (or login is NULL). *keylen gets its length. */
KL_API const char *kl_users_key(const kl_users_t *u, const char *login, size_t *keylen);

#ifdef __cplusplus
}
#endif
#endif
