/* The core node: start-up, Raft on libuv, the leader's round clock, shutdown.
 *
 * Start: open (or create) the calendar under data_dir/calendar without fsync (the Raft log under
 * data_dir/raft is the durable copy), load the calendar-auth key, bootstrap Raft on first start
 * with the configured members, start the servers and the links to the other members.
 * Every 20 ms (tick): if this node leads and its clock is sane, make sure its predecessors'
 * entries are committed (a barrier, once per term), then close every second whose grace has
 * passed: propose one entry per second with requests (an empty second is filled by the next
 * append), and the newest closable second always, so every second gets an entry.
 * Stop (SIGTERM/SIGINT): stop the tick, answer what is pending with a retryable error, close the
 * servers, the links and Raft; the loop then runs out of handles. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "keyless/follow.h"
#include "keyless/log.h"
#include "node.h"
#include "raft_tls.h"

uint64_t core_now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

uint64_t core_mono_ms(void) {
  return uv_hrtime() / 1000000u;
}

uint64_t core_quorum_now_ms(const core_t *c) {
  kl_qtime_reading_t r[KL_CORE_MAX_MEMBERS];
  for (size_t i = 0; i < c->n_peers; i++) r[i] = c->peers[i].clock;
  return kl_qtime_quorum_ms(core_now_ms(), r, c->n_peers, core_mono_ms(), CORE_CLOCK_MAX_AGE_MS);
}

static void on_barrier(struct raft_barrier *req, int status) {
  core_t *c = req->data;
  c->barrier_pending = false;
  if (status != 0 || raft_state(&c->raft) != RAFT_LEADER) return;
  kl_cal_info_t info;
  kl_err_t e = {0};
  if (kl_cal_info(c->cal, &info, &e)) return;
  c->ready_term = c->raft.current_term;
  c->proposed = info.empty ? info.genesis - 1 : info.last;
  kl_log(KL_LOG_INFO, "leading", "term=%llu last=%llu", (unsigned long long)c->ready_term, (unsigned long long)c->proposed);
}

/* A follower learns that an entry is committed only from the leader's next message, which
 * libraft sends at a heartbeat tick: up to two heartbeat intervals later, and until then the
 * follower cannot answer its requests. So once a round has committed, the leader appends a
 * barrier (an empty entry of libraft's): it goes out at once and carries the new commit index,
 * and the followers apply the round a few ms after the leader. Started from a timer, outside
 * libraft's apply callback; one at a time. */
static void on_nudged(struct raft_barrier *req, int status) {
  core_t *c = req->data;
  (void)status;
  c->nudge_pending = false;
}

static void nudge_followers(uv_timer_t *t) {
  core_t *c = t->data;
  if (c->nudge_pending || c->stopping || c->n_peers == 0 || raft_state(&c->raft) != RAFT_LEADER) return;
  c->nudge.data = c;
  if (raft_barrier(&c->raft, &c->nudge, on_nudged) == 0) c->nudge_pending = true;
}

typedef struct proposal {
  struct raft_apply req;
  core_t *c;
  uint64_t second, start_ns;
  size_t leaves;
  uint64_t requests; /* the leaves stand for these many requests (a batch for many) */
} proposal_t;

static void on_applied(struct raft_apply *req, int status, void *result) {
  proposal_t *p = (proposal_t *)req;
  (void)result;
  p->c->inflight--;
  if (status == 0) { /* libraft applies an entry, then calls its callback: apply_start_ns is this entry's */
    uint64_t now = uv_hrtime(), at = p->c->fsm.apply_start_ns;
    if (at < p->start_ns || at > now) at = now; /* not applied here (cannot happen on the leader) */
    kl_metric_observe(p->c->m_commit_latency, (double)(at - p->start_ns) / 1e9);
    kl_metric_observe(p->c->m_apply_latency, (double)(now - at) / 1e9);
    kl_log(KL_LOG_DEBUG, "committed", "second=%llu leaves=%zu requests=%llu commit_ms=%.2f apply_ms=%.2f",
           (unsigned long long)p->second, p->leaves, (unsigned long long)p->requests, (double)(at - p->start_ns) / 1e6,
           (double)(now - at) / 1e6);
    if (!p->c->stopping && p->c->nudge_timer.loop) uv_timer_start(&p->c->nudge_timer, nudge_followers, 0, 0);
  }
  else kl_log(KL_LOG_WARN, "proposal_failed", "second=%llu error=%s", (unsigned long long)p->second, raft_strerror(status));
  free(p);
}

static void propose(core_t *c, uint64_t second, bool always) {
  kl_core_leaf_t *leaves = NULL;
  size_t n = 0;
  kl_imprint_t root;
  int has_root = 0;
  kl_err_t e = {0};
  if (kl_core_rounds_collect(c->rounds, second, &leaves, &n, &root, &has_root, &e)) {
    kl_log(KL_LOG_ERROR, "round_build", "second=%llu error=%s", (unsigned long long)second, e.msg);
    free(leaves);
    return; /* the requests get their retry answer when a later second commits */
  }
  if (n == 0 && !always) return;
  proposal_t *p = calloc(1, sizeof *p);
  struct raft_buffer buf;
  const char *who = c->note_who[0] ? c->note_who : NULL; /* rides in the log to every member */
  if (p == NULL || kl_core_entry_encode_note(second, 0, leaves, n, has_root ? &root : NULL, c->cfg->alg, who,
                                             c->note_what, &buf, &e)) {
    free(p);
    free(leaves);
    return;
  }
  free(leaves);
  p->c = c;
  p->second = second;
  p->leaves = n;
  uint64_t requests = p->requests = kl_core_rounds_collected_requests(c->rounds);
  p->start_ns = uv_hrtime();
  int rc = raft_apply(&c->raft, &p->req, &buf, 1, on_applied);
  if (rc != 0) {
    raft_free(buf.base);
    free(p);
    kl_log(KL_LOG_WARN, "propose_failed", "second=%llu error=%s", (unsigned long long)second, raft_strerror(rc));
    return;
  }
  c->note_who[0] = c->note_what[0] = '\0';
  c->inflight++;
  c->proposed = second;
  kl_metric_inc(c->m_proposals);
  kl_metric_observe(c->m_round_leaves, (double)requests);
}

/* This node's clock against the quorum time (qtime.h): off by more than [clock] max_skew, it
 * neither leads (a leader hands over) nor takes requests, and says so at error level every
 * 10 s until it agrees again. A node that hears no majority cannot tell: it keeps its state. */
static void check_clock(core_t *c) {
  bool lagging = c->max_lag_ms > 200; /* our own loop was late: receipt times say nothing */
  c->max_lag_ms = 0;
  uint64_t own = core_now_ms(), q = core_quorum_now_ms(c);
  if (lagging || q == 0) return;
  int64_t skew = own >= q ? (int64_t)(own - q) : -(int64_t)(q - own);
  c->clock_skew_ms = skew;
  bool ok = (uint64_t)(skew < 0 ? -skew : skew) <= c->cfg->max_skew_ms;
  if (ok != c->clock_ok || (!ok && own - c->clock_said_ms >= 10000)) {
    kl_log(ok ? KL_LOG_INFO : KL_LOG_ERROR, "clock", "ok=%d skew_ms=%lld max_skew_ms=%llu%s", ok, (long long)skew,
           (unsigned long long)c->cfg->max_skew_ms,
           ok ? "" : " action=\"requests refused and leadership handed over until this clock agrees with the cluster\"");
    c->clock_said_ms = own;
  }
  c->clock_ok = ok;
}

/* A snapshot beyond this node's calendar: fetch the missing seconds from a member's replication
 * stream, then let the FSM apply what it queued meanwhile. */
static void on_catchup_progress(kl_follow_t *f, uint64_t last, void *arg) {
  core_t *c = arg;
  kl_err_t e = {0};
  (void)f;
  if (c->fsm.state != KL_FSM_CATCHING_UP || last < c->fsm.target) return;
  if (kl_core_fsm_caught_up(&c->fsm, &e)) kl_log(KL_LOG_ERROR, "catch_up", "error=%s", e.msg);
  else kl_log(KL_LOG_INFO, "caught_up", "second=%llu", (unsigned long long)last);
  kl_follow_stop(c->catchup, NULL, NULL);
  c->catchup = NULL;
}

static void catch_up(core_t *c) {
  static const kl_follow_cbs_t cbs = {on_catchup_progress, NULL};
  raft_id leader;
  const char *addr;
  kl_err_t e = {0};
  if (c->catchup != NULL) {
    if (!kl_follow_failed(c->catchup)) return;
    kl_follow_stop(c->catchup, NULL, NULL); /* try another member next tick */
    c->catchup = NULL;
    return;
  }
  raft_leader(&c->raft, &leader, &addr);
  const core_member_t *from = NULL;
  for (size_t i = 0; i < c->cfg->n_members && from == NULL; i++) {
    const core_member_t *m = &c->cfg->m[i];
    if (m->id != (uint64_t)c->cfg->id && m->replication_addr[0] && (m->id == leader || leader == 0)) from = m;
  }
  if (from == NULL) return;
  kl_log(KL_LOG_INFO, "catching_up", "target=%llu from=%llu", (unsigned long long)c->fsm.target, (unsigned long long)from->id);
  if (kl_follow_start(c->loop, c->cal, from->replication_addr, c->tls, &cbs, c, &c->catchup, &e))
    kl_log(KL_LOG_WARN, "catch_up", "error=%s", e.msg);
}

static void on_transferred(struct raft_transfer *req) {
  core_t *c = req->data;
  c->transferring = false;
}

static void watch_members(core_t *c);

/* A follower closes each second at its end (by the quorum clock), not up to a tick later: the
 * timer re-arms itself for the next end; the tick only starts it. */
static void arm_close_timer(core_t *c);

static void on_close_timer(uv_timer_t *t) {
  core_t *c = t->data;
  core_close_own(c);
  if (!c->stopping && raft_state(&c->raft) != RAFT_LEADER) arm_close_timer(c);
}

static void arm_close_timer(core_t *c) {
  uint64_t q = core_quorum_now_ms(c);
  if (q) uv_timer_start(&c->close_timer, on_close_timer, 1000 - q % 1000 + 1, 0);
}

static void on_tick(uv_timer_t *t) {
  core_t *c = t->data;
  uint64_t now = core_now_ms();
  if (c->last_tick_ms && now - c->last_tick_ms > 20 && now - c->last_tick_ms - 20 > c->max_lag_ms)
    c->max_lag_ms = now - c->last_tick_ms - 20;
  c->last_tick_ms = now;
  if (now - c->last_heartbeat_ms >= 500) {
    c->last_heartbeat_ms = now;
    core_send_heartbeats(c);
    check_clock(c);
    watch_members(c);
    core_release_waiters(c, false);
  }
  if (c->fsm.state == KL_FSM_FAILED) { /* the calendar and the log disagree: stop, never fork */
    kl_log(KL_LOG_ERROR, "fsm_failed", "error=%s", c->fsm.error);
    core_stop(c);
    return;
  }
  if (c->fsm.state == KL_FSM_CATCHING_UP) {
    catch_up(c);
    return;
  }
  if (raft_state(&c->raft) != RAFT_LEADER) {
    core_close_own(c); /* a quiet second's requests, when no request of the next came to send them */
    if (!uv_is_active((uv_handle_t *)&c->close_timer)) arm_close_timer(c);
    return;
  }
  if (!c->clock_ok) {
    if (c->n_peers > 0 && !c->transferring) { /* let a node with a good clock lead */
      c->transfer.data = c;
      if (raft_transfer(&c->raft, &c->transfer, 0, on_transferred) == 0) c->transferring = true;
    }
    return;
  }
  if (c->ready_term != c->raft.current_term) {
    if (!c->barrier_pending) {
      c->barrier.data = c;
      if (raft_barrier(&c->raft, &c->barrier, on_barrier) == 0) c->barrier_pending = true;
    }
    return;
  }
  core_close_due(c);
}

/* Every other member of the configuration has said it closed `second` (its leaf for it, if any,
 * is here): nothing more can come for it but late requests, which go to the next second anyway. */
static bool all_closed(const core_t *c, uint64_t second) {
  const struct raft_configuration *conf = &c->raft.configuration;
  for (unsigned k = 0; k < conf->n; k++) {
    if (conf->servers[k].id == (raft_id)c->cfg->id) continue;
    const core_peer_t *p = NULL;
    for (size_t i = 0; i < c->n_peers && p == NULL; i++)
      if (c->peers[i].id == conf->servers[k].id) p = &c->peers[i];
    if (p == NULL || p->closed < second) return false;
  }
  return true;
}

void core_close_due(core_t *c) {
  if (c->stopping || raft_state(&c->raft) != RAFT_LEADER || !c->clock_ok || c->ready_term != c->raft.current_term) return;
  /* Seconds close on the quorum time: never before a majority of the members' clocks have passed
   * their end, whatever this node's own clock says; then after the grace, which covers a
   * member's leaf on its way here, or as soon as every member has said it closed the second. */
  uint64_t qnow = core_quorum_now_ms(c), ended = qnow / 1000u; /* seconds before `ended` have ended */
  uint64_t closable = qnow >= c->cfg->grace_ms ? (qnow - c->cfg->grace_ms) / 1000u : 0, at_grace = closable;
  if (closable < ended && ended > 0 && all_closed(c, ended - 1)) closable = ended;
  if (closable == 0) return;
  uint64_t target = closable - 1;
  kl_cal_info_t info;
  kl_err_t e = {0};
  if (kl_cal_info(c->cal, &info, &e)) return;
  if (target < info.genesis) return;
  for (uint64_t s = c->proposed + 1; s <= target && c->inflight < 8; s++) {
    propose(c, s, s == target);
    if (c->proposed == s) kl_metric_inc(s < at_grace ? c->m_closed_grace : c->m_closed_members);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  core_t *c = h->data;
  if (signum == SIGHUP) { /* certificate rotation, a new CRL: new connections use the new files */
    kl_tls_reload_logged(c->tls, "tls");
    core_keys_reload(c); /* [keys]: a next calendar-auth key (node_keys.c) */
    kl_audit_event(c->audit, "config_reload", "signal=HUP what=tls,keys");
    return;
  }
  kl_log(KL_LOG_INFO, "signal", "signal=%s", signum == SIGTERM ? "TERM" : "INT");
  core_stop(c);
}

static int open_calendar(core_t *c, kl_err_t *e) {
  char path[1024];
  struct stat st;
  kl_cal_opts_t o = {.map_size = c->cfg->map_size, .no_sync = true};
  snprintf(path, sizeof path, "%s/calendar", c->cfg->data_dir);
  if (stat(path, &st) != 0) {
    uint64_t g = c->cfg->genesis ? (uint64_t)c->cfg->genesis : core_now_ms() / 1000;
    int r = kl_cal_create(path, g, &o, e);
    if (r) return r;
    kl_log(KL_LOG_INFO, "calendar_created", "dir=%s genesis=%llu", path, (unsigned long long)g);
  }
  return kl_cal_open(path, &o, &c->cal, e);
}

/* Who may open a Raft connection to us: a member of the current configuration (any core
 * certificate while this node has none yet: it is joining and learns it from the leader). */
static bool is_member(void *arg, raft_id id) {
  core_t *c = arg;
  const struct raft_configuration *conf = &c->raft.configuration;
  if (conf->n == 0) return true;
  for (unsigned i = 0; i < conf->n; i++)
    if (conf->servers[i].id == id) return true;
  return false;
}

/* Every node says when the membership it sees changes (the leader also says who asked). */
bool core_in_configuration(const core_t *c) {
  const struct raft_configuration *conf = &c->raft.configuration;
  for (unsigned i = 0; i < conf->n; i++)
    if (conf->servers[i].id == (raft_id)c->cfg->id) return true;
  return conf->n == 0; /* a joiner that was never added yet has no configuration */
}

static void watch_members(core_t *c) {
  const struct raft_configuration *now = &c->raft.configuration;
  bool same = now->n == c->seen_conf.n;
  for (unsigned i = 0; same && i < now->n; i++)
    same = now->servers[i].id == c->seen_conf.servers[i].id && now->servers[i].role == c->seen_conf.servers[i].role;
  if (same) return;
  char list[512] = "";
  size_t off = 0;
  for (unsigned i = 0; i < now->n && off < sizeof list; i++)
    off += (size_t)snprintf(list + off, sizeof list - off, "%s%llu%s", i ? "," : "", (unsigned long long)now->servers[i].id,
                            now->servers[i].role == RAFT_VOTER ? "" : "(non-voter)");
  kl_audit_event(c->audit, "membership", "members=%s", list);
  if (c->seen_conf.n) kl_log(KL_LOG_WARN, "membership_changed", "members=%s", list);
  else kl_log(KL_LOG_INFO, "membership", "members=%s", list);
  if (!core_in_configuration(c))
    kl_log(KL_LOG_ERROR, "removed", "id=%lld members=%s action=\"this node is no longer a member of the cluster: stop it\"",
           (long long)c->cfg->id, list);
  raft_configuration_close(&c->seen_conf);
  raft_configuration_init(&c->seen_conf);
  for (unsigned i = 0; i < now->n; i++)
    raft_configuration_add(&c->seen_conf, now->servers[i].id, now->servers[i].address, now->servers[i].role);
}

static int start_raft(core_t *c, kl_err_t *e) {
  char dir[1024];
  const core_member_t *self = core_member(c->cfg, (uint64_t)c->cfg->id);
  int rc;
  snprintf(dir, sizeof dir, "%s/raft", c->cfg->data_dir);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) return kl_err_set(e, KL_EIO, "cannot create %s: %s", dir, strerror(errno));
  if ((rc = kl_raft_tls_init(&c->transport, c->loop, c->tls, is_member, c)) != 0)
    return kl_err_set(e, KL_EIO, "raft transport: %s", raft_strerror(rc));
  if ((rc = raft_uv_init(&c->io, c->loop, dir, &c->transport)) != 0) return kl_err_set(e, KL_EIO, "raft I/O in %s: %s", dir, raft_strerror(rc));
  kl_raft_guard_init(&c->guard, &c->io);
  if ((rc = raft_init(&c->raft, &c->guard.io, &c->fsm.raft, (raft_id)c->cfg->id, self->raft_addr)) != 0)
    return kl_err_set(e, KL_EIO, "raft: %s", raft_errmsg(&c->raft));
  c->guard.raft = &c->raft;
  raft_set_election_timeout(&c->raft, (unsigned)c->cfg->election_ms);
  raft_set_heartbeat_timeout(&c->raft, (unsigned)c->cfg->heartbeat_ms);
  raft_set_snapshot_threshold(&c->raft, (unsigned)c->cfg->snapshot_threshold);
  raft_set_snapshot_trailing(&c->raft, (unsigned)c->cfg->snapshot_trailing);
  raft_set_pre_vote(&c->raft, true);
  struct raft_configuration conf;
  raft_configuration_init(&conf);
  for (size_t i = 0; i < c->cfg->n_members; i++)
    raft_configuration_add(&conf, c->cfg->m[i].id, c->cfg->m[i].raft_addr, RAFT_VOTER);
  rc = c->cfg->bootstrap ? raft_bootstrap(&c->raft, &conf) : RAFT_CANTBOOTSTRAP; /* a joiner waits to be added */
  raft_configuration_close(&conf);
  if (rc != 0 && rc != RAFT_CANTBOOTSTRAP) return kl_err_set(e, KL_EIO, "raft bootstrap: %s", raft_errmsg(&c->raft));
  if ((rc = raft_start(&c->raft)) != 0) { /* libraft's uv I/O does not pass the transport's message on (a port taken) */
    const char *why = raft_errmsg(&c->raft), *tw = c->transport.errmsg;
    return kl_err_set(e, KL_EIO, "raft start on %s: %s%s%s%s%s", self->raft_addr, raft_strerror(rc), why[0] ? ": " : "", why,
                      tw[0] && strstr(why, tw) == NULL ? ": " : "", tw[0] && strstr(why, tw) == NULL ? tw : "");
  }
  c->raft_started = true;
  return 0;
}

static int start_links(core_t *c, kl_err_t *e) {
  static const kl_frame_client_cbs_t cbs = {core_on_peer_frame, NULL};
  for (size_t i = 0; i < c->cfg->n_members; i++) {
    const core_member_t *m = &c->cfg->m[i];
    if (m->id == (uint64_t)c->cfg->id) continue;
    core_peer_t *p = &c->peers[c->n_peers++];
    char name[32];
    p->id = m->id;
    snprintf(name, sizeof name, "core-%llu", (unsigned long long)m->id);
    int r = kl_frame_client_create(c->loop, name, 1u << 20, &cbs, c, &p->link, e);
    if (r == 0 && c->tls) {
      char id[24];
      snprintf(id, sizeof id, "%llu", (unsigned long long)m->id);
      kl_frame_client_set_tls(p->link, c->tls, KL_ROLE_CORE, id);
    }
    if (r == 0) r = kl_frame_client_connect(p->link, m->internal_addr, e);
    if (r) return r;
  }
  return 0;
}

static int start_servers(core_t *c, kl_err_t *e) {
  kl_net_limits_t lim;
  const core_member_t *self = core_member(c->cfg, (uint64_t)c->cfg->id);
  int r;
  kl_net_limits_default(&lim);
  lim.max_body = 1u << 16;
  lim.max_inflight = 1024;
  lim.max_connections = (unsigned)c->cfg->max_connections;
  lim.max_connections_per_ip = (unsigned)c->cfg->max_connections_per_address;
  lim.idle_timeout_ms = c->cfg->idle_timeout_ms;
  if ((r = kl_tlv_server_create(c->loop, &lim, "internal", core_on_internal, c, &c->internal, e))) return r;
  kl_tlv_server_set_framing(c->internal, KL_FRAMING_U32);
  /* the tier below (aggregators, gateways straight above the core) and the other members */
  if (c->tls) kl_tlv_server_set_tls(c->internal, c->tls, KL_ROLE_CORE | KL_ROLE_AGGREGATOR | KL_ROLE_GATEWAY, NULL, NULL);
  if ((r = kl_tlv_server_listen(c->internal, self->internal_addr, e))) return r;
  if (c->cfg->replication_listen[0]) {
    lim.max_inflight = 4;
    lim.idle_timeout_ms = 120000;
    if ((r = kl_tlv_server_create(c->loop, &lim, "replication", core_on_replication, c, &c->replication, e))) return r;
    kl_tlv_server_set_framing(c->replication, KL_FRAMING_U32);
    if (c->tls) kl_tlv_server_set_tls(c->replication, c->tls, KL_ROLE_EXTENDER | KL_ROLE_CORE, NULL, NULL);
    if ((r = kl_tlv_server_listen(c->replication, c->cfg->replication_listen, e))) return r;
  }
  return core_admin_start(c, e);
}

/* DATA_DIR/audit: the signed log of administrative events (audit.h). */
static int open_audit(core_t *c, kl_err_t *e) {
  char dir[1024];
  const core_config_t *cfg = c->cfg;
  snprintf(dir, sizeof dir, "%s/audit", cfg->data_dir);
  kl_audit_opts_t o = {dir, (uint64_t)cfg->id, cfg->audit_gateway, cfg->audit_user, cfg->audit_key, cfg->audit_timeout_ms,
                       c->metrics};
  int r = kl_audit_open(c->loop, &o, &c->audit, e);
  return r ? kl_err_wrap(e, "%s: [audit]", cfg->path ? cfg->path : "core") : 0;
}

int core_start(uv_loop_t *loop, core_config_t *cfg, core_t **out, kl_err_t *e) {
  core_t *c = calloc(1, sizeof *c);
  int r;
  if (c == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  *out = c;
  c->loop = loop;
  c->cfg = cfg;
  c->clock_ok = true;
  kl_buf_init(&c->cache_chain);
  kl_buf_init(&c->cache_auth);
  if (mkdir(cfg->data_dir, 0755) != 0 && errno != EEXIST)
    return kl_err_set(e, KL_EIO, "cannot create %s: %s", cfg->data_dir, strerror(errno));
  char self_id[24];
  snprintf(self_id, sizeof self_id, "%lld", (long long)cfg->id);
  if ((r = kl_tls_settings_open(&cfg->tls, cfg->path ? cfg->path : "core", KL_ROLE_CORE, self_id, &c->tls, e))) return r;
  c->keys = cfg->authkeys; /* opened by core_config_load */
  cfg->authkeys = NULL;
  if (c->keys == NULL) return kl_err_set(e, KL_ESTATE, "no calendar-auth key loaded");
  if ((r = open_calendar(c, e)) ||
      (r = kl_core_rounds_create((uint64_t)cfg->id, cfg->alg, (unsigned)cfg->max_level, core_on_answer, c, &c->rounds, e)) ||
      (r = kl_metrics_create(&c->metrics, e)) || (r = core_keys_metrics(c, e)) ||
      (cfg->audit_enabled && (r = open_audit(c, e))))
    return r;
  kl_core_rounds_set_max_pending(c->rounds, (size_t)cfg->max_pending);
  kl_core_fsm_init(&c->fsm, c->cal, core_on_round, c);
  if ((r = start_raft(c, e)) || (r = start_servers(c, e)) || (r = start_links(c, e))) return r;
  uv_timer_init(loop, &c->tick);
  c->tick.data = c;
  uv_timer_init(loop, &c->nudge_timer);
  c->nudge_timer.data = c;
  uv_timer_init(loop, &c->close_timer);
  c->close_timer.data = c;
  uv_timer_start(&c->tick, on_tick, 20, 20);
  int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, &c->sig[i]);
    c->sig[i].data = c;
    uv_signal_start(&c->sig[i], on_signal, sigs[i]);
  }
  kl_cal_info_t info;
  if (kl_cal_info(c->cal, &info, e) == 0)
    kl_log(KL_LOG_INFO, "started",
           "id=%lld raft_version=%s internal_port=%d replication_port=%d admin_port=%d genesis=%llu last=%lld",
           (long long)cfg->id, KL_RAFT_VERSION, kl_tlv_server_port(c->internal), c->replication ? kl_tlv_server_port(c->replication) : 0,
           c->admin ? kl_http_server_port(c->admin) : 0, (unsigned long long)info.genesis,
           info.empty ? -1LL : (long long)info.last);
  kl_audit_event(c->audit, "node_start", "id=%lld config=%s", (long long)cfg->id, cfg->path ? cfg->path : "-");
  return 0;
}

static void on_raft_closed(struct raft *r) {
  core_t *c = r->data;
  raft_uv_close(&c->io);
  kl_raft_tls_close(&c->transport);
}

void core_stop(core_t *c) {
  if (c == NULL || c->stopping) return;
  c->stopping = true;
  kl_audit_event(c->audit, "node_stop", "id=%lld", (long long)c->cfg->id);
  kl_audit_close(c->audit); /* a signing in flight finishes before the loop ends; the rest waits for the next start */
  kl_core_round_t none = {UINT64_MAX - 1, NULL, 0, NULL, c->cfg->alg};
  kl_err_t e = {0};
  kl_core_rounds_committed(c->rounds, &none, &e); /* every held request: retry elsewhere */
  core_release_waiters(c, true);
  if (c->tick.loop) uv_close((uv_handle_t *)&c->tick, NULL); /* initialized handles only */
  if (c->nudge_timer.loop) uv_close((uv_handle_t *)&c->nudge_timer, NULL);
  if (c->close_timer.loop) uv_close((uv_handle_t *)&c->close_timer, NULL);
  for (int i = 0; i < 3; i++)
    if (c->sig[i].loop) uv_close((uv_handle_t *)&c->sig[i], NULL);
  for (size_t i = 0; i < c->n_peers; i++) kl_frame_client_close(c->peers[i].link, NULL, NULL);
  kl_follow_stop(c->catchup, NULL, NULL);
  c->catchup = NULL;
  c->nm_internal.stats = c->nm_repl.stats = c->nm_admin.stats = NULL;
  if (c->internal) kl_tlv_server_close(c->internal, NULL, NULL);
  if (c->replication) kl_tlv_server_close(c->replication, NULL, NULL);
  if (c->admin) kl_http_server_close(c->admin, NULL, NULL);
  if (c->metrics_srv) kl_http_server_close(c->metrics_srv, NULL, NULL);
  c->internal = c->replication = NULL;
  c->admin = c->metrics_srv = NULL;
  if (c->raft_started) {
    c->raft.data = c;
    raft_close(&c->raft, on_raft_closed);
  }
}

void core_free(core_t *c) {
  if (c == NULL) return;
  if (c->cal) kl_cal_sync(c->cal, NULL);
  kl_core_fsm_close(&c->fsm);
  kl_core_rounds_destroy(c->rounds);
  core_authkeys_free(c->keys);
  kl_audit_free(c->audit);
  kl_tls_ctx_unref(c->tls);
  raft_configuration_close(&c->seen_conf);
  kl_cal_close(c->cal);
  kl_metrics_destroy(c->metrics);
  kl_buf_free(&c->cache_chain);
  kl_buf_free(&c->cache_auth);
  free(c->waiters);
  free(c);
}
