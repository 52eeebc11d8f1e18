/* The version and build of this tree (keyless/version.h); kl_build.h is made at build time. */
#include "keyless/version.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>

#include "kl_build.h"

#define KL_STR2(x) #x
#define KL_STR(x) KL_STR2(x)
#if defined(__clang__)
#define KL_COMPILER "clang " KL_STR(__clang_major__) "." KL_STR(__clang_minor__) "." KL_STR(__clang_patchlevel__)
#elif defined(__GNUC__)
#define KL_COMPILER "gcc " KL_STR(__GNUC__) "." KL_STR(__GNUC_MINOR__) "." KL_STR(__GNUC_PATCHLEVEL__)
#else
#define KL_COMPILER "unknown compiler"
#endif

const char *kl_version(void) { return KL_BUILD_VERSION; }
const char *kl_build_commit(void) { return KL_BUILD_COMMIT; }
const char *kl_build_compiler(void) { return KL_COMPILER; }
const char *kl_build_openssl(void) { return OpenSSL_version(OPENSSL_VERSION); }

static char line[256];
static pthread_once_t line_once = PTHREAD_ONCE_INIT;

static void make_line(void) {
  snprintf(line, sizeof line, "%s (commit %s, %s, %s)", kl_version(), kl_build_commit(), kl_build_compiler(),
           kl_build_openssl());
}

const char *kl_version_line(void) {
  pthread_once(&line_once, make_line);
  return line;
}
