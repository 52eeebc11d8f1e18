/* keyless: error codes and error messages.
 *
 * Every function that can fail returns 0 or a positive KL_E* code. Functions that take a
 * kl_err_t also leave a human-readable message there, wrapped with context by each layer on
 * the way up ("signature: aggregation chain 2: link 3: sibling: imprint too short"). A NULL
 * kl_err_t is allowed everywhere: the code is still returned, the message is dropped.
 *
 * Threads: thread-safe. A kl_err_t belongs to its caller; the last code for kl_err_wrap(NULL)
 * is kept per thread. kl_strerror/kl_errname return static strings (never free them).
 */
#ifndef KEYLESS_ERR_H
#define KEYLESS_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KL_API __attribute__((visibility("default")))
#define KL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KL_API
#define KL_PRINTF(f, a)
#endif

/* One table: kl_strerror() gives the text, kl_errname() the symbolic name. */
#define KL_ERRNO_MAP(X)                                                         \
  X(KL_OK, "success")                                                           \
  X(KL_EINVAL, "invalid argument")                                              \
  X(KL_ENOMEM, "out of memory")                                                 \
  X(KL_EFORMAT, "malformed input")                                              \
  X(KL_ETOOBIG, "input too large")                                              \
  X(KL_ECRITICAL, "unknown critical element")                                   \
  X(KL_EHASHALG, "unknown or unsupported hash algorithm")                       \
  X(KL_EIO, "input/output error")                                               \
  X(KL_ECRYPTO, "cryptographic operation failed")                               \
  X(KL_EPKI, "certificate or signature not trusted")                            \
  X(KL_EHMAC, "HMAC mismatch")                                                  \
  X(KL_EAUTH, "authentication failure")                                         \
  X(KL_ENOTFOUND, "not found")                                                  \
  X(KL_ESERVICE, "service returned an error status")                            \
  X(KL_EUNSUPPORTED, "not supported")                                           \
  X(KL_ERANGE, "value out of range")                                            \
  X(KL_ESTATE, "invalid state")

enum {
#define KL__ERR_ENUM(name, text) name,
  KL_ERRNO_MAP(KL__ERR_ENUM)
#undef KL__ERR_ENUM
  KL_ERR_MAX
};

#define KL_ERR_MSG_MAX 512

typedef struct kl_err {
  int code;
  char msg[KL_ERR_MSG_MAX];
} kl_err_t;

KL_API const char *kl_strerror(int code);
KL_API const char *kl_errname(int code);

/* Sets code and message (printf-style); returns code. e may be NULL. */
KL_API int kl_err_set(kl_err_t *e, int code, const char *fmt, ...) KL_PRINTF(3, 4);
/* Prefixes the message with context ("ctx: old message"); returns e->code. With a NULL e it
 * returns the code last set on this thread, so "return kl_err_wrap(e, ...)" after a failed
 * call fails with the same code whether or not the caller wanted a message.
 * If no message was set yet, the code's text is used as the old message. */
KL_API int kl_err_wrap(kl_err_t *e, const char *fmt, ...) KL_PRINTF(2, 3);
KL_API void kl_err_clear(kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
