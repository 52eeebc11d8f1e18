/* OpenSSL's error queue as one message (ossl.h). */
#include "ossl.h"

#include <openssl/err.h>

const char *kl__ossl_msg(void) {
  unsigned long code = ERR_get_error();
  static _Thread_local char buf[256];
  if (code == 0) return "no detail from OpenSSL";
  ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}
