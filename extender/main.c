/* keyless-extender: serves calendar hash chains (KSI extension), the publications file, and
 * its own health and metrics. See deploy/extender.conf. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extender.h"
#include "keyless/log.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless-extender -c CONFIG [--log-level debug|info|warn|error] [--check-config]\n"
          "  -c, --config FILE     configuration (see deploy/extender.conf)\n"
          "  --log-level LEVEL     default info; one key=value line per event on stderr\n"
          "  --check-config        validate the configuration and exit\n"
          "Signals: TERM/INT stop gracefully, HUP reloads the users file.\n");
}

int main(int argc, char **argv) {
  enum { O_LEVEL = 256, O_CHECK };
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
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
          fprintf(stderr, "keyless-extender: bad --log-level '%s'\n", optarg);
          return 2;
        }
        break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (config == NULL || optind != argc) {
    usage(stderr);
    return 2;
  }
  kl_log_init("keyless-extender", level);

  ext_config_t cfg;
  kl_err_t e;
  if (ext_config_load(config, &cfg, &e)) {
    fprintf(stderr, "keyless-extender: %s\n", e.msg);
    ext_config_free(&cfg);
    return 2;
  }
  if (check_only) {
    printf("%s: OK\n", config);
    ext_config_free(&cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN); /* a peer that goes away is a write error, not a death */

  uv_loop_t loop;
  int rc = uv_loop_init(&loop), status = 0;
  if (rc) {
    fprintf(stderr, "keyless-extender: event loop: %s\n", uv_strerror(rc));
    ext_config_free(&cfg);
    return 1;
  }
  extender_t *x = NULL;
  if (extender_start(&loop, &cfg, &x, &e)) {
    char q[600];
    kl_log(KL_LOG_ERROR, "start_failed", "error=%s", kl_log_q(q, sizeof q, e.msg));
    status = 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* returns when every handle is closed */
  extender_free(x);
  if ((rc = uv_loop_close(&loop)) != 0) {
    kl_log(KL_LOG_ERROR, "loop_close", "error=%s", uv_err_name(rc));
    status = 1;
  }
  ext_config_free(&cfg);
  if (status == 0) kl_log(KL_LOG_INFO, "stopped", NULL);
  return status;
}
