/* keyless-extender: serves calendar hash chains (KSI extension), the publications file, and
 * its own health and metrics. See deploy/extender.conf. Wiring only. */
#include "extender.h"
#include "keyless/daemon.h"

static int load(const char *path, void *cfg, kl_err_t *e) { return ext_config_load(path, cfg, e); }
static void free_cfg(void *cfg) { ext_config_free(cfg); }

static int start(uv_loop_t *loop, void *cfg, void **state, kl_err_t *e) {
  return extender_start(loop, cfg, (extender_t **)state, e);
}

static void stop(void *state) { extender_stop(state); }

static int finish(void *state) {
  extender_free(state);
  return 0;
}

int main(int argc, char **argv) {
  static const kl_daemon_ops_t ops = {
      "keyless-extender",
      "Sample configuration: deploy/extender.conf.\n"
      "Signals: TERM/INT stop gracefully, HUP reloads the users file.\n",
      sizeof(ext_config_t), load, free_cfg, start, stop, finish};
  return kl_daemon_main(argc, argv, &ops);
}
