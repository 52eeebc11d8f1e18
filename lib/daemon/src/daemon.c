/* The daemons' common main(); see keyless/daemon.h. */
#include "keyless/daemon.h"

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "keyless/log.h"
#include "keyless/metrics.h"
#include "keyless/version.h"

static void usage(FILE *f, const kl_daemon_ops_t *ops) {
  fprintf(f,
          "usage: %s -c CONFIG [--log-level debug|info|warn|error] [--check-config]\n"
          "       %s --version\n"
          "  -c, --config FILE     configuration\n"
          "  --log-level LEVEL     default info; one key=value line per event on stderr\n"
          "  --check-config        validate the configuration and exit\n"
          "  --version             the version and build, then exit\n"
          "exit status: 0 stopped cleanly (or --version, --help, a good --check-config), 1 start-up or\n"
          "  run-time failure, 2 bad usage or a bad configuration\n%s",
          ops->prog,
          ops->prog, ops->help ? ops->help : "");
}

int kl_daemon_main(int argc, char **argv, const kl_daemon_ops_t *ops) {
  enum { O_LEVEL = 256, O_CHECK, O_VERSION };
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"version", no_argument, NULL, O_VERSION},
                                       {"log-level", required_argument, NULL, O_LEVEL},
                                       {"check-config", no_argument, NULL, O_CHECK},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *config = NULL;
  int level = KL_LOG_INFO, c;
  bool check_only = false;
  while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    switch (c) {
      case 'c': config = optarg; break;
      case O_CHECK: check_only = true; break;
      case O_LEVEL:
        if ((level = kl_log_level_parse(optarg)) < 0) {
          fprintf(stderr, "%s: bad --log-level '%s'\n", ops->prog, optarg);
          return 2;
        }
        break;
      case 'h': usage(stdout, ops); return 0;
      case O_VERSION:
        /* the client library's line has no libuv: the daemons' --version adds it */
        printf("%s %s (commit %s, %s, %s, libuv %s)\n", ops->prog, kl_version(), kl_build_commit(), kl_build_compiler(),
               kl_build_openssl(), kl_build_libuv());
        return 0;
      default: usage(stderr, ops); return 2;
    }
  }
  if (config == NULL || optind != argc) {
    usage(stderr, ops);
    return 2;
  }
  kl_log_init(ops->prog, level);
  void *cfg = calloc(1, ops->cfg_size);
  kl_err_t e = {0};
  if (cfg == NULL) return 1;
  if (ops->load(config, cfg, &e)) {
    fprintf(stderr, "%s: %s\n", ops->prog, e.msg);
    ops->free_cfg(cfg);
    free(cfg);
    return 2;
  }
  if (check_only) {
    printf("%s: OK\n", config);
    ops->free_cfg(cfg);
    free(cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN); /* a peer that goes away is a write error, not a death */
  char vq[4][160];
  kl_log(KL_LOG_INFO, "version", "version=%s commit=%s compiler=%s openssl=%s libuv=%s", kl_version(),
         kl_log_q(vq[0], sizeof vq[0], kl_build_commit()), kl_log_q(vq[1], sizeof vq[1], kl_build_compiler()),
         kl_log_q(vq[2], sizeof vq[2], kl_build_openssl()), kl_log_q(vq[3], sizeof vq[3], kl_build_libuv()));
  uv_loop_t loop;
  int status = 0, rc = uv_loop_init(&loop);
  if (rc) {
    fprintf(stderr, "%s: event loop: %s\n", ops->prog, uv_strerror(rc));
    ops->free_cfg(cfg);
    free(cfg);
    return 1;
  }
  void *state = NULL;
  if (ops->start(&loop, cfg, &state, &e)) {
    char q[600];
    kl_log(KL_LOG_ERROR, "start_failed", "error=%s", kl_log_q(q, sizeof q, e.msg));
    status = 1;
    if (state) ops->stop(state);
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* returns when every handle is closed */
  if (ops->finish(state)) status = 1;
  if ((rc = uv_loop_close(&loop)) != 0) {
    kl_log(KL_LOG_ERROR, "loop_close", "error=%s", uv_err_name(rc));
    status = 1;
  }
  ops->free_cfg(cfg);
  free(cfg);
  if (status == 0) kl_log(KL_LOG_INFO, "stopped", NULL);
  return status;
}
