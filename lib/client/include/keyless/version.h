/* keyless: the version of this library and of the build (for --version, the start-up log line
 * and the keyless_build_info metric).
 *
 * Threads: thread-safe. Memory: every string is static (never free it). */
#ifndef KEYLESS_VERSION_H
#define KEYLESS_VERSION_H

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "0.1.0" */
KL_API const char *kl_version(void);
/* The commit built ("a1b2c3d4e5f6", "...-dirty" for a modified tree, "unknown" outside git). */
KL_API const char *kl_build_commit(void);
/* "gcc 12.2.0", "clang 14.0.6" */
KL_API const char *kl_build_compiler(void);
/* The OpenSSL the process runs with (not only built against). The libuv version is the daemon
 * toolkit's (kl_build_libuv in keyless/metrics.h): the client library does not link libuv. */
KL_API const char *kl_build_openssl(void);
/* One line: "0.1.0 (commit a1b2c3d4e5f6, gcc 12.2.0, OpenSSL 3.0.x)" */
KL_API const char *kl_version_line(void);

#ifdef __cplusplus
}
#endif
#endif
