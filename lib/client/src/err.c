/* Error table and message wrapping. */
#include "keyless/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const err_text[] = {
#define KL__ERR_TEXT(name, text) text,
    KL_ERRNO_MAP(KL__ERR_TEXT)
#undef KL__ERR_TEXT
};

static const char *const err_name[] = {
#define KL__ERR_NAME(name, text) #name,
    KL_ERRNO_MAP(KL__ERR_NAME)
#undef KL__ERR_NAME
};

const char *kl_strerror(int code) {
  if (code < 0 || code >= KL_ERR_MAX) return "unknown error";
  return err_text[code];
}

const char *kl_errname(int code) {
  if (code < 0 || code >= KL_ERR_MAX) return "KL_E?";
  return err_name[code];
}

/* With a NULL kl_err_t the message is dropped, but the code must survive the wraps on the way
 * up ("return kl_err_wrap(e, ...)"), so the last code set on this thread is kept here. */
static _Thread_local int last_code;

int kl_err_set(kl_err_t *e, int code, const char *fmt, ...) {
  last_code = code;
  if (e == NULL) return code;
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return code;
}

int kl_err_wrap(kl_err_t *e, const char *fmt, ...) {
  if (e == NULL) return last_code != 0 ? last_code : KL_ESTATE;
  char prefix[KL_ERR_MSG_MAX];
  char old[KL_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  if (e->msg[0] == '\0') snprintf(old, sizeof old, "%s", kl_strerror(e->code));
  else memcpy(old, e->msg, sizeof old);
  /* Truncation is acceptable: the outermost context and the start of the cause survive. */
  size_t n = strnlen(prefix, sizeof prefix - 1);
  size_t cap = sizeof e->msg - 1;
  if (n > cap) n = cap;
  memcpy(e->msg, prefix, n);
  if (n + 2 <= cap) {
    memcpy(e->msg + n, ": ", 2);
    n += 2;
    size_t m = strnlen(old, sizeof old - 1);
    if (m > cap - n) m = cap - n;
    memcpy(e->msg + n, old, m);
    n += m;
  }
  e->msg[n] = '\0';
  return e->code;
}

void kl_err_clear(kl_err_t *e) {
  if (e == NULL) return;
  e->code = 0;
  e->msg[0] = '\0';
}
