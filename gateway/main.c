/* keyless-gateway: KSI aggregation for clients (HTTP and ksi+tcp), rounds sent up to the
 * aggregators or the core. See deploy/gateway.conf. Wiring only. */
#include "gateway.h"
#include "keyless/daemon.h"

static int load(const char *path, void *cfg, kl_err_t *e) { return gw_config_load(path, cfg, e); }
static void free_cfg(void *cfg) { gw_config_free(cfg); }

static int start(uv_loop_t *loop, void *cfg, void **state, kl_err_t *e) {
  return gateway_start(loop, cfg, (gateway_t **)state, e);
}

static void stop(void *state) { gateway_stop(state); }

static int finish(void *state) {
  gateway_free(state);
  return 0;
}

int main(int argc, char **argv) {
  static const kl_daemon_ops_t ops = {
      "keyless-gateway",
      "Sample configuration: deploy/gateway.conf.\n"
      "Signals: TERM/INT stop gracefully (rounds in flight are answered first), HUP reloads the users file.\n",
      sizeof(gw_config_t), load, free_cfg, start, stop, finish};
  return kl_daemon_main(argc, argv, &ops);
}
