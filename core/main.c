/* keyless-core: one node of the core cluster. A page of wiring; see src/node.c. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <uv.h>

#include "keyless/log.h"
#include "node.h"

static void usage(FILE *f) {
  fprintf(f, "usage: keyless-core -c CONFIG [--log-level debug|info|warn|error] [--check-config]\n"
             "  one node of the core cluster: Raft over the members in the config, one calendar\n"
             "  entry per second, aggregation requests on the internal port.\n"
             "Signals: TERM/INT stop gracefully.\n");
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
          fprintf(stderr, "keyless-core: bad --log-level '%s'\n", optarg);
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
  kl_log_init("keyless-core", level);
  core_config_t cfg;
  kl_err_t e = {0};
  if (core_config_load(config, &cfg, &e)) {
    fprintf(stderr, "keyless-core: %s\n", e.msg);
    core_config_free(&cfg);
    return 2;
  }
  if (check_only) {
    printf("%s: OK\n", config);
    core_config_free(&cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  int status = 0, rc = uv_loop_init(&loop);
  if (rc) {
    fprintf(stderr, "keyless-core: event loop: %s\n", uv_strerror(rc));
    return 1;
  }
  core_t *core = NULL;
  if (core_start(&loop, &cfg, &core, &e)) {
    char q[600];
    kl_log(KL_LOG_ERROR, "start_failed", "error=%s", kl_log_q(q, sizeof q, e.msg));
    status = 1;
    core_stop(core);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (core && core->fsm.state == KL_FSM_FAILED) {
    kl_log(KL_LOG_ERROR, "fsm_failed", "error=%s", core->fsm.error);
    status = 1;
  }
  core_free(core);
  if ((rc = uv_loop_close(&loop)) != 0) {
    kl_log(KL_LOG_ERROR, "loop_close", "error=%s", uv_err_name(rc));
    status = 1;
  }
  core_config_free(&cfg);
  if (status == 0) kl_log(KL_LOG_INFO, "stopped", NULL);
  return status;
}
