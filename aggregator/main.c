/* keyless-aggregator: rounds over the roots of gateways or lower aggregators, sent up to the
 * next aggregators or the core. See deploy/aggregator.conf. Wiring only. */
#include "aggregator.h"
#include "keyless/daemon.h"

static int load(const char *path, void *cfg, kl_err_t *e) { return ag_config_load(path, cfg, e); }
static void free_cfg(void *cfg) { ag_config_free(cfg); }

static int start(uv_loop_t *loop, void *cfg, void **state, kl_err_t *e) {
  return aggregator_start(loop, cfg, (aggregator_t **)state, e);
}

static void stop(void *state) { aggregator_stop(state); }

static int finish(void *state) {
  aggregator_free(state);
  return 0;
}

int main(int argc, char **argv) {
  static const kl_daemon_ops_t ops = {
      "keyless-aggregator",
      "Sample configuration: deploy/aggregator.conf.\n"
      "Signals: TERM/INT stop gracefully (rounds in flight are answered first), HUP is ignored.\n",
      sizeof(ag_config_t), load, free_cfg, start, stop, finish};
  return kl_daemon_main(argc, argv, &ops);
}
