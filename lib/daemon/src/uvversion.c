/* The libuv version of the daemon toolkit (keyless/metrics.h): apart from keyless/version.h so
 * the client library does not link libuv. */
#include <uv.h>

#include "keyless/metrics.h"

const char *kl_build_libuv(void) { return uv_version_string(); }
