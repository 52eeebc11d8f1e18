/* The core daemon (docs/core.md): one Raft node with its calendar, serving aggregation
 * requests from the tier below, forwarding to the leader, replicating to extenders, with
 * metrics on an admin port. Everything runs on one libuv loop; Raft's own I/O uses its thread
 * pool. The pure parts are fsm.c and rounds.c. */
#ifndef KL_CORE_NODE_H
#define KL_CORE_NODE_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "authkeys.h"
#include "audit.h"
#include "fsm.h"
#include "keyless/frameclient.h"
#include "keyless/metrics.h"
#include "keyless/net.h"
#include "keyless/pki.h"
#include "keyless/tls.h"
#include "raft_guard.h"
#include "qtime.h"
#include "rounds.h"

#define KL_CORE_MAX_MEMBERS 7

typedef struct core_member {
  uint64_t id;
  char raft_addr[64];     /* Raft transport */
  char internal_addr[64]; /* aggregation requests and forwarding */
  char replication_addr[64]; /* optional: where a lagging member catches up from */
} core_member_t;

typedef struct core_config {
  int64_t id;
  char *data_dir;
  char *member[KL_CORE_MAX_MEMBERS]; /* [cluster] memberN = RAFT_ADDR INTERNAL_ADDR [REPLICATION_ADDR] */
  bool bootstrap; /* false: this node joins an existing cluster (keyless core add) */
  char *replication_listen, *admin_listen, *metrics_listen;
  kl_tls_settings_t tls; /* [tls]: this node's certificate (core/ID) and the cluster CA */
  int64_t genesis; /* 0: now, when the calendar is created */
  uint64_t map_size;
  uint64_t grace_ms;
  char *algorithm;
  int64_t max_level;
  char *auth_cert, *auth_key; /* [keys]: auth_key is a key URI (docs/keys.md) */
  char *next_auth_cert, *next_auth_key, *next_auth_from; /* [keys] next_calendar_auth_*: "" none */
  bool allow_clear_key;       /* [keys] allow_clear_key: a clear key file is accepted (development) */
  uint64_t election_ms, heartbeat_ms;
  int64_t snapshot_threshold, snapshot_trailing;
  uint64_t max_skew_ms;
  int64_t max_pending;
  int64_t max_connections, max_connections_per_address;
  uint64_t idle_timeout_ms; /* internal port: a quiet aggregator or member link stays open this long */
  bool audit_enabled;       /* [audit]: the signed audit log of administrative events (audit.h) */
  char *audit_gateway, *audit_user, *audit_key; /* audit_key: a secret source (docs/keys.md) */
  uint64_t audit_timeout_ms;
  /* derived */
  core_member_t m[KL_CORE_MAX_MEMBERS];
  size_t n_members;
  int alg;
  char *path; /* the file, for messages */
  core_authkeys_t *authkeys; /* opened at load (authkeys.h); core_start takes them over */
} core_config_t;

int core_config_load(const char *path, core_config_t *cfg, kl_err_t *e);
void core_config_free(core_config_t *cfg);
const core_member_t *core_member(const core_config_t *cfg, uint64_t id);

typedef struct core_peer {
  uint64_t id;
  kl_frame_client_t *link;
  /* Its last clock reading and our monotonic time at receipt (qtime.h), recorded only from a
   * heartbeat that came from this member itself (its `node` is the member the connection
   * authenticated as). */
  kl_qtime_reading_t clock;
  uint64_t closed; /* the last second it said it closed (Heartbeat.closed): its leaf for it came before */
} core_peer_t;

/* The reason in the Pong a member answers a non-member's heartbeat with (node_serve.c). */
#define CORE_NOT_MEMBER "not a member of this cluster's configuration"

/* A peer's clock reading older than this is not counted in the quorum time: heartbeats come
 * every 500 ms, so this is several missed in a row. */
#define CORE_CLOCK_MAX_AGE_MS 3000

/* Why a forward was refused: keyless_core_forwards_refused_total{reason=...}. */
enum { CORE_FWD_NOT_LEADER, CORE_FWD_ORIGIN, CORE_FWD_SECOND, CORE_FWD_LEVEL, CORE_FWD_LIMIT, CORE_FWD_MALFORMED, CORE_FWD_N };

/* One series of keyless_core_calendar_auth_key_info (node_keys.c): a certificate id and a state. */
#define CORE_KEY_SERIES_MAX 16
typedef struct core_key_series {
  struct core *c;
  char id[9];
  bool next; /* state="next" (starts later), else state="active" (signs now) */
} core_key_series_t;

typedef struct core_waiter { /* a replica waiting for seconds after `after` */
  kl_tlv_req_t *req;
  uint64_t after;
  uint64_t since_ms;
} core_waiter_t;

typedef struct core {
  uv_loop_t *loop;
  core_config_t *cfg;
  kl_cal_t *cal;
  core_authkeys_t *keys; /* the calendar-auth keys (authkeys.h): core_authkeys_at(keys, s)->ca signs s */
  core_key_series_t key_series[CORE_KEY_SERIES_MAX]; /* node_keys.c: the key info metric's series */
  size_t n_key_series;
  kl_core_fsm_t fsm;
  kl_core_rounds_t *rounds;
  struct raft raft;
  struct raft_io io;
  struct raft_uv_transport transport; /* raft_tls.c: mutual TLS between members */
  kl_raft_guard_t guard;              /* what libraft receives, checked first */
  kl_tls_ctx_t *tls;                  /* NULL only with [tls] insecure = yes */
  struct raft_configuration seen_conf; /* the membership last logged */
  char note_who[80], note_what[600];   /* membership requests for the next proposal to carry */
  bool raft_started, stopping;
  /* leader state */
  raft_term ready_term;   /* term whose barrier completed */
  bool barrier_pending;
  struct raft_barrier barrier;
  uv_timer_t nudge_timer;  /* after a round commits: a barrier that tells the followers (node.c) */
  uv_timer_t close_timer;  /* a follower: at the end of each second, to close it at once */
  struct raft_barrier nudge;
  bool nudge_pending;
  uint64_t proposed;      /* last second proposed in ready_term */
  unsigned inflight;      /* proposals not yet applied */
  bool clock_ok, transferring;
  int64_t clock_skew_ms;   /* this clock minus the quorum time, at the last check */
  uint64_t not_member_ms, not_member_said_ms; /* monotonic: a member last said we are none; logged */
  uint64_t clock_said_ms;  /* when check_clock last logged */
  struct raft_transfer transfer;
  uint64_t last_heartbeat_ms, last_tick_ms, max_lag_ms; /* loop lag since the last clock check */
  /* round cache for answers */
  uint64_t cache_second;
  kl_buf_t cache_chain, cache_auth;
  /* servers and links */
  kl_tlv_server_t *internal, *replication;
  kl_http_server_t *admin;     /* mutual TLS, admin certificates: /status, membership changes */
  kl_http_server_t *metrics_srv; /* plain: /healthz and /metrics only */
  kl_net_metrics_t nm_internal, nm_repl, nm_admin; /* connection counters, refusals included */
  kl_admin_t adm;             /* the admin port's /healthz and /metrics */
  kl_audit_t *audit;          /* NULL with [audit] enabled = no: kl_audit_event is then a no-op */
  core_peer_t peers[KL_CORE_MAX_MEMBERS];
  size_t n_peers;
  struct kl_follow *catchup; /* following a member's replication stream after a snapshot */
  core_waiter_t *waiters;
  size_t n_waiters, cap_waiters;
  uv_timer_t tick;
  uv_signal_t sig[3]; /* TERM, INT: stop; HUP: re-read the TLS files */
  int closing_handles;
  /* metrics */
  kl_metrics_t *metrics;
  kl_metric_t *m_requests, *m_answered_ok, *m_answered_retry, *m_rejected, *m_rounds, *m_round_leaves,
      *m_commit_latency, *m_apply_latency, *m_forwards, *m_forwards_failed, *m_proposals;
  kl_metric_t *m_closed_members, *m_closed_grace; /* proposals_closed_total{when=...} */
  kl_metric_t *m_answered_mismatch; /* answers_total{result="mismatch"}: the committed leaf was not the request */
  kl_metric_t *m_fwd_refused[CORE_FWD_N]; /* forwards_refused_total{reason=...} */
  kl_metric_t *m_heartbeats_refused;
} core_t;

int core_start(uv_loop_t *loop, core_config_t *cfg, core_t **out, kl_err_t *e);
void core_stop(core_t *c);
void core_free(core_t *c);

/* node_serve.c */
void core_on_internal(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg);
void core_on_replication(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg);
void core_on_answer(void *arg, void *ctx, uint64_t client_request_id, const kl_core_answer_t *a);
void core_on_round(void *arg, const kl_core_round_t *round);
void core_send_heartbeats(core_t *c);
/* A follower: puts its own requests of every ended second into their leaf, forwards it to the
 * leader, and tells every member up to which second it has closed (the leader's collection does
 * this itself). */
void core_close_own(core_t *c);
/* The leader: proposes every second that can close now, at its grace or as soon as every other
 * member has said it closed the second (node.c). */
void core_close_due(core_t *c);
void core_on_peer_frame(kl_frame_client_t *fc, const uint8_t *p, size_t len, void *arg);
void core_release_waiters(core_t *c, bool all);
/* node_keys.c: the key that signs second s; SIGHUP's reload of [keys] (the old keys stay on any
 * error, logged); the key metrics (after the registry exists). */
kl_calauth_t *core_key_at(const core_t *c, uint64_t s);
void core_keys_reload(core_t *c);
int core_keys_metrics(core_t *c, kl_err_t *e);
/* node_admin.c */
int core_admin_start(core_t *c, kl_err_t *e);
/* node.c: this node's wall clock; its monotonic clock; the cluster's quorum time (qtime.h), 0
 * when fewer than a majority of the members' clocks are known. */
uint64_t core_now_ms(void);
uint64_t core_mono_ms(void);
uint64_t core_quorum_now_ms(const core_t *c);
/* Whether this node is in the Raft configuration it knows (false once it applied its removal). */
bool core_in_configuration(const core_t *c);

#endif
