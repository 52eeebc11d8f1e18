/* keyless-aggregator: internal interfaces of the daemon.
 *
 *   ag_config.c  the configuration keys (deploy/aggregator.conf documents them)
 *   ag_daemon.c  the downstream port (framed protobuf from gateways or lower aggregators), the
 *                tier (rounds and parents), the admin port, signals
 *   main.c       arguments and wiring
 */
#ifndef KL_AGGREGATOR_H
#define KL_AGGREGATOR_H

#include <stdint.h>
#include <uv.h>

#include "keyless/err.h"
#include "keyless/tier.h"
#include "keyless/tls.h"

typedef struct ag_config {
  char *listen;        /* [server] listen: the children's port */
  char *admin_listen;  /* [server] admin_listen */
  int64_t max_connections;
  uint64_t idle_timeout_ms, shutdown_timeout_ms;
  int64_t max_connections_per_address;
  kl_tier_settings_t tier; /* [round], [parents] */
  kl_tls_settings_t tls;   /* [tls]: this aggregator's certificate, both towards children and parents */
  char *path;
} ag_config_t;

int ag_config_load(const char *path, ag_config_t *cfg, kl_err_t *e);
void ag_config_free(ag_config_t *cfg);

typedef struct aggregator aggregator_t;

int aggregator_start(uv_loop_t *loop, const ag_config_t *cfg, aggregator_t **out, kl_err_t *e);
void aggregator_stop(aggregator_t *a);
void aggregator_free(aggregator_t *a);

#endif
