/* keyless-core: one node of the core cluster (docs/core.md, deploy/core.conf). Wiring only. */
#include "keyless/daemon.h"
#include "keyless/log.h"
#include "node.h"

static int load(const char *path, void *cfg, kl_err_t *e) { return core_config_load(path, cfg, e); }
static void free_cfg(void *cfg) { core_config_free(cfg); }

static int start(uv_loop_t *loop, void *cfg, void **state, kl_err_t *e) {
  return core_start(loop, cfg, (core_t **)state, e);
}

static void stop(void *state) { core_stop(state); }

static int finish(void *state) {
  core_t *c = state;
  int failed = c && c->fsm.state == KL_FSM_FAILED;
  if (failed) kl_log(KL_LOG_ERROR, "fsm_failed", "error=%s", c->fsm.error);
  core_free(c);
  return failed;
}

int main(int argc, char **argv) {
  static const kl_daemon_ops_t ops = {
      "keyless-core",
      "One node of the core cluster: Raft over the [cluster] members, one calendar entry per\n"
      "second. Sample configuration: deploy/core.conf. Signals: TERM/INT stop gracefully, HUP reloads\n"
      "the TLS files and [keys] (a next calendar-auth key, docs/keys.md).\n",
      sizeof(core_config_t), load, free_cfg, start, stop, finish};
  return kl_daemon_main(argc, argv, &ops);
}
