/* keyless: the common main() of the daemons: options (-c CONFIG, --log-level, --check-config),
 * logging, the libuv loop, and the exit status. Each daemon supplies its configuration loader
 * and its start/stop; its main.c stays a page of wiring.
 *
 * Options also: --version (the version line of keyless/version.h). At start the daemon logs
 * event=version with the version, commit, compiler, OpenSSL and libuv.
 *
 * Exit status: 0 after a clean stop, 1 when start-up fails or the daemon reports a failure
 * (finish returns nonzero) or the loop does not close cleanly, 2 for bad usage or a bad
 * configuration. */
#ifndef KEYLESS_DAEMON_H
#define KEYLESS_DAEMON_H

#include <uv.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_daemon_ops {
  const char *prog;        /* "keyless-extender" */
  const char *help;        /* extra lines for --help (signals, sample config) */
  size_t cfg_size;         /* the daemon's config struct, allocated zeroed */
  int (*load)(const char *path, void *cfg, kl_err_t *e);
  void (*free_cfg)(void *cfg);
  /* Starts on loop; *state may be set even on failure (then stop and finish run too). */
  int (*start)(uv_loop_t *loop, void *cfg, void **state, kl_err_t *e);
  void (*stop)(void *state);   /* begin a graceful stop (after a failed start) */
  int (*finish)(void *state);  /* after the loop ran out: free; nonzero = the daemon failed */
} kl_daemon_ops_t;

KL_API int kl_daemon_main(int argc, char **argv, const kl_daemon_ops_t *ops);

#ifdef __cplusplus
}
#endif
#endif
