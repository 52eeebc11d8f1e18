/* The extender daemon's state, shared by its own files (not a public interface):
 * ext_daemon.c (the loop: servers, handlers, signals, lifecycle) and ext_metrics.c (the
 * registry). Everything here belongs to the loop thread, except what ext_daemon.c hands to a
 * worker by copy (a job's snapshot). */
#ifndef KL_EXT_DAEMON_H
#define KL_EXT_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "extender.h"
#include "keyless/metrics.h"

/* The users file, shared with the workers answering requests: freed with its last user (loop
 * thread only). */
typedef struct users_ref {
  kl_users_t *u;
  unsigned refs;
} users_ref_t;

struct extender {
  uv_loop_t *loop;
  const ext_config_t *cfg;
  kl_cal_t *cal;
  ext_follow_t *follow;  /* with [replication] upstream */
  kl_repl_trust_t trust; /* what the follower checks batches against */
  /* The certificates of a SIGHUP reload of [replication] calendar_auth_cert (NULL: still the
   * configuration's); trust points into them. */
  uint8_t **auth_ders;
  size_t *auth_lens, n_auth;
  kl_metric_t *m_refused;
  uv_timer_t sync_timer;
  bool sync_timer_on;
  uint64_t cal_next_try; /* loop time, ms */
  bool cal_failed_logged;
  users_ref_t *users;   /* the current users file */
  ext_pool_t pool;       /* the workers answering requests ([server] workers) */
  ext_pubfile_t pub;
  ext_waitq_t waitq;     /* request PDUs held for the replica ([server] replica_wait) */
  uint64_t wait_bound;   /* ext_wait_bound(replica_wait) */
  kl_metrics_t *m;
  kl_http_server_t *http, *https, *admin;
  kl_tlv_server_t *tcp;
  kl_tls_ctx_t *tls, *https_tls; /* towards the core; for https clients */
  uv_signal_t sig[3];
  int n_sig;
  bool stopping;
  kl_metric_t *duration[2];
  kl_net_metrics_t nm_http, nm_https, nm_tcp, nm_admin;
  kl_admin_t adm;
};

enum { EXT_WAKE_FULL = EXT_WAKE_STOP + 1 }; /* not held: too many waiting (a wait's outcome) */

extern const char *const ext__transport_name[2]; /* "http", "tcp": label values */
extern const char *const ext__wake_name[5];      /* how a wait ended, by EXT_WAKE_* */

/* The calendar, opened on first use and retried at most once a second; NULL while it cannot be. */
kl_cal_t *ext__cal_get(extender_t *x);
/* NULL when the replica may be served; else why not (logs a change of state). */
const char *ext__sync_check(extender_t *x);

int ext__metrics_init(extender_t *x, kl_err_t *e);
void ext__status_label(char *buf, size_t n, uint64_t status);
void ext__count_status(void *arg, uint64_t status);
void ext__count_wait(extender_t *x, int why);

#endif
