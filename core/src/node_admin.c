/* The core's admin port: /healthz, /metrics (Prometheus text) and /status (JSON), on HTTP. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/log.h"
#include "node.h"

static double g_role(void *arg) { return (double)raft_state(&((core_t *)arg)->raft); }
static double g_term(void *arg) { return (double)((core_t *)arg)->raft.current_term; }
static double g_commit(void *arg) { return (double)((core_t *)arg)->raft.commit_index; }
static double g_applied(void *arg) { return (double)raft_last_applied(&((core_t *)arg)->raft); }
static double g_pending(void *arg) { return (double)kl_core_rounds_pending(((core_t *)arg)->rounds); }
static double g_clock(void *arg) { return ((core_t *)arg)->clock_ok ? 1 : 0; }
static double g_skew(void *arg) { return (double)((core_t *)arg)->clock_skew_ms / 1000.0; }
static double g_dropped(void *arg) { return (double)kl_core_rounds_dropped(((core_t *)arg)->rounds); }
static double g_fsm(void *arg) { return (double)((core_t *)arg)->fsm.state; }
#include "raft_tls.h"
static double g_raft_refused(void *arg) { return (double)kl_raft_tls_refused(&((core_t *)arg)->transport); }
static double g_raft_accepted(void *arg) { return (double)kl_raft_tls_accepted(&((core_t *)arg)->transport); }
static double g_drop_member(void *arg) { return (double)((core_t *)arg)->guard.dropped[KL_GUARD_NOT_MEMBER]; }
static double g_drop_term(void *arg) { return (double)((core_t *)arg)->guard.dropped[KL_GUARD_BAD_TERM]; }
static double g_drop_index(void *arg) { return (double)((core_t *)arg)->guard.dropped[KL_GUARD_BAD_INDEX]; }
static double g_drop_shape(void *arg) { return (double)((core_t *)arg)->guard.dropped[KL_GUARD_BAD_SHAPE]; }

static double g_last(void *arg) {
  kl_cal_info_t info;
  if (kl_cal_info(((core_t *)arg)->cal, &info, NULL) || info.empty) return 0;
  return (double)info.last;
}

static double g_lag(void *arg) {
  double last = g_last(arg);
  return last > 0 ? (double)(core_now_ms() / 1000) - last : -1;
}

/* Healthy: this node can do its part of the job now. It is running and in step with the log
 * (FSM ok), it has a leader (or leads with a majority of voters heard from within an election
 * timeout), and the calendar advances: its last second is at most CALENDAR_STALL_S behind the
 * clock. Otherwise the reason, for /healthz's body. */
#define CALENDAR_STALL_S 10
static const char *health(void *arg) {
  static char why[200]; /* the loop thread's only */
  core_t *c = arg;
  int st = raft_state(&c->raft);
  if (c->stopping) return "stopping";
  if (c->fsm.state != KL_FSM_OK)
    return c->fsm.state == KL_FSM_CATCHING_UP ? "catching up with the cluster's log" : "the state machine failed";
  if (!core_in_configuration(c)) return "removed: this node is not in the cluster's configuration (stop it)";
  if (c->not_member_ms && core_mono_ms() - c->not_member_ms < 5000)
    return "the cluster's members say this node is not in their configuration (removed, or not added yet)";
  if (!c->clock_ok) {
    snprintf(why, sizeof why,
             "this node's clock is %lld ms off the cluster's quorum time (max_skew %llu ms): requests refused",
             (long long)c->clock_skew_ms, (unsigned long long)c->cfg->max_skew_ms);
    return why;
  }
  if (st == RAFT_CANDIDATE) return "no leader: this node is a candidate (an election is running)";
  if (st != RAFT_LEADER && st != RAFT_FOLLOWER) return "raft is not running";
  if (st == RAFT_FOLLOWER) {
    raft_id leader;
    const char *addr;
    raft_leader(&c->raft, &leader, &addr);
    if (leader == 0) return "no leader known";
  } else {
    const struct raft_configuration *conf = &c->raft.configuration;
    unsigned voters = 0, heard = 0;
    for (unsigned i = 0; i < conf->n; i++) {
      if (conf->servers[i].role != RAFT_VOTER) continue;
      voters++;
      if (conf->servers[i].id == (raft_id)c->cfg->id ||
          (c->raft.leader_state.progress != NULL && c->raft.leader_state.progress[i].recent_recv))
        heard++;
    }
    if (heard * 2 <= voters) {
      snprintf(why, sizeof why, "leader without a quorum: %u of %u voters heard from", heard, voters);
      return why;
    }
  }
  kl_cal_info_t info;
  uint64_t now = core_now_ms() / 1000;
  if (kl_cal_info(c->cal, &info, NULL) == 0 && now > info.genesis + CALENDAR_STALL_S) {
    uint64_t last = info.empty ? info.genesis : info.last;
    if (now > last + CALENDAR_STALL_S) {
      snprintf(why, sizeof why, "the calendar does not advance: its last second %llu is %llu s behind the clock",
               (unsigned long long)last, (unsigned long long)(now - last));
      return why;
    }
  }
  return NULL;
}

/* JSON string value (addresses and ids are plain ASCII; anything else is replaced). */
static void json_str(kl_buf_t *b, const char *s) {
  kl_buf_put_u8(b, '"');
  for (; s && *s; s++) kl_buf_put_u8(b, (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') ? (uint8_t)*s : '?');
  kl_buf_put_u8(b, '"');
}

static void json_kv(kl_buf_t *b, const char *fmt, ...) KL_PRINTF(2, 3);
static void json_kv(kl_buf_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) kl_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* GET /status: this node's view: its role, term, indexes, calendar and lag, the leader (id and
 * Raft address), and every member of the configuration it knows with its role (voter, standby,
 * spare) and, on the leader, how far each has replicated. */
static void status(kl_http_req_t *req, void *arg) {
  core_t *c = arg;
  static const char *const roles[] = {"unavailable", "follower", "candidate", "leader"};
  static const char *const kinds[] = {"standby", "voter", "spare"};
  raft_id leader;
  const char *laddr;
  kl_cal_info_t info = {0};
  raft_leader(&c->raft, &leader, &laddr);
  kl_cal_info(c->cal, &info, NULL);
  int st = raft_state(&c->raft);
  uint64_t now = core_now_ms() / 1000;
  kl_buf_t b = KL_BUF_INIT;
  json_kv(&b, "{\"id\":%lld,\"role\":\"%s\",\"term\":%llu,\"leader\":%llu,\"leader_address\":", (long long)c->cfg->id,
          st >= 0 && st <= 3 ? roles[st] : "?", (unsigned long long)c->raft.current_term, (unsigned long long)leader);
  json_str(&b, laddr ? laddr : "");
  json_kv(&b, ",\"commit_index\":%llu,\"applied_index\":%llu,\"calendar_genesis\":%llu,\"calendar_last\":%lld,",
          (unsigned long long)c->raft.commit_index, (unsigned long long)raft_last_applied(&c->raft),
          (unsigned long long)info.genesis, info.empty ? -1LL : (long long)info.last);
  json_kv(&b, "\"calendar_lag_seconds\":%lld,\"clock_ok\":%s,\"state\":\"%s\",\"members\":[",
          info.empty ? -1LL : (long long)(now > info.last ? now - info.last : 0), c->clock_ok ? "true" : "false",
          c->fsm.state == KL_FSM_OK ? "ok" : c->fsm.state == KL_FSM_CATCHING_UP ? "catching_up" : "failed");
  const struct raft_configuration *conf = &c->raft.configuration;
  for (unsigned i = 0; i < conf->n; i++) {
    const struct raft_server *sv = &conf->servers[i];
    json_kv(&b, "%s{\"id\":%llu,\"address\":", i ? "," : "", (unsigned long long)sv->id);
    json_str(&b, sv->address);
    json_kv(&b, ",\"role\":\"%s\"", sv->role >= 0 && sv->role <= 2 ? kinds[sv->role] : "?");
    if (st == RAFT_LEADER && c->raft.leader_state.progress != NULL)
      json_kv(&b, ",\"match_index\":%llu", (unsigned long long)c->raft.leader_state.progress[i].match_index);
    kl_buf_put_u8(&b, '}');
  }
  json_kv(&b, "]}\n");
  if (!kl_buf_ok(&b)) {
    kl_buf_free(&b);
    kl_http_respond(req, 500, "text/plain", "out of memory\n", 14);
    return;
  }
  size_t n;
  uint8_t *body = kl_buf_steal(&b, &n);
  kl_http_respond_take(req, 200, "application/json", body, n);
}

/* Membership changes (keyless core add|remove): on the leader only; answered when Raft has
 * committed the new configuration. Body: "ID/RAFT_ADDR" to add (as a voter), "ID" to remove.
 * An add walks the member up one role at a time: raft_add makes it a spare (no log), then a
 * standby (the leader replicates the log to it, it does not vote), then a voter once libraft's
 * catch-up rounds find it current. A node not yet started or slow to catch up thus stays a
 * standby that keeps receiving the log, and the same add, run again, resumes from its role. */
typedef struct change {
  struct raft_change req;
  core_t *c;
  kl_http_req_t *http;
  raft_id id;
  int next_role; /* -1: done when this change commits; else raft_assign to it */
  char addr[80];
} change_t;

static void change_done(change_t *ch, int status) {
  char buf[512];
  int n;
  if (status == 0)
    n = snprintf(buf, sizeof buf, "ok\n");
  else if (ch->next_role == -1 && ch->addr[0] && status == RAFT_NOCONNECTION) /* the promotion gave up */
    n = snprintf(buf, sizeof buf,
                 "failed: member %llu did not catch up with the leader's log in time (libraft's catch-up rounds): it "
                 "stays a standby, which receives the log but does not vote; check that it runs with bootstrap = no "
                 "and reaches the leader at %s, then run the same add again\n",
                 (unsigned long long)ch->id, ch->addr);
  else
    n = snprintf(buf, sizeof buf, "failed: %s\n", raft_strerror(status));
  kl_log(status == 0 ? KL_LOG_INFO : KL_LOG_WARN, "membership_result", "member=%llu status=%s",
         (unsigned long long)ch->id, status == 0 ? "ok" : raft_strerror(status));
  kl_http_respond(ch->http, status == 0 ? 200 : 409, "text/plain", buf, n > 0 && (size_t)n < sizeof buf ? (size_t)n : strlen(buf));
  free(ch);
}

static void on_change(struct raft_change *req, int status) {
  change_t *ch = req->data;
  if (status == 0 && ch->next_role >= 0) {
    int role = ch->next_role;
    ch->next_role = role == RAFT_STANDBY ? RAFT_VOTER : -1;
    ch->req.data = ch;
    int rc = raft_assign(&ch->c->raft, &ch->req, ch->id, role, on_change);
    if (rc == 0) return;
    status = rc;
  }
  change_done(ch, status);
}

/* An add for an id already in the configuration (*known): 0 with *done set when there is
 * nothing to do (a voter at that address), 0 with ch->next_role set to resume its promotion, or
 * the HTTP status of a refusal with the reason in text. Not known: 0, nothing set. */
static int add_existing(core_t *c, change_t *ch, const char *addr, bool *known, bool *done, char *text, size_t cap) {
  const struct raft_server *s = NULL;
  for (unsigned i = 0; i < c->raft.configuration.n; i++)
    if (c->raft.configuration.servers[i].id == ch->id) s = &c->raft.configuration.servers[i];
  *done = false;
  *known = s != NULL;
  if (s == NULL) return 0;
  if (strcmp(s->address, addr) != 0) {
    snprintf(text, cap, "member %llu is already in the configuration at %.80s: remove it first to change its address\n",
             (unsigned long long)ch->id, s->address);
    return 409;
  }
  if (s->role == RAFT_VOTER) *done = true;
  ch->next_role = s->role == RAFT_SPARE ? RAFT_STANDBY : RAFT_VOTER;
  return 0;
}

static void members(kl_http_req_t *req, void *arg) {
  core_t *c = arg;
  size_t len;
  const uint8_t *body = kl_http_req_body(req, &len);
  char text[160], *slash;
  bool add = strcmp(kl_http_req_path(req), "/members/add") == 0;
  const kl_peer_t *who = kl_http_req_peer_id(req);
  if (who == NULL && c->tls) { /* cannot happen: the admin listener takes admin certificates only */
    kl_http_respond(req, 403, "text/plain", "an admin certificate is required\n", 33);
    return;
  }
  if (raft_state(&c->raft) != RAFT_LEADER) {
    raft_id leader;
    const char *addr;
    raft_leader(&c->raft, &leader, &addr);
    int n = snprintf(text, sizeof text, "not the leader; the leader is %llu at %.80s\n", (unsigned long long)leader,
                     leader && addr ? addr : "(none known)");
    kl_http_respond(req, 409, "text/plain", text, (size_t)n);
    return;
  }
  if (len == 0 || len >= sizeof text) {
    kl_http_respond(req, 400, "text/plain", "body: ID/RAFT_ADDR (add) or ID (remove)\n", 40);
    return;
  }
  memcpy(text, body, len);
  text[len] = '\0';
  text[strcspn(text, "\r\n")] = '\0';
  char q[200];
  kl_log(KL_LOG_WARN, "membership_request", "op=%s by=%s%s peer=%s what=%s", add ? "add" : "remove", who ? "admin/" : "",
         who ? who->id : "unauthenticated(insecure)", kl_http_req_peer(req), kl_log_q(q, sizeof q, text));
  change_t *ch = calloc(1, sizeof *ch);
  if (ch == NULL) {
    kl_http_respond(req, 500, "text/plain", "out of memory\n", 14);
    return;
  }
  ch->c = c;
  ch->http = req;
  ch->req.data = ch;
  ch->id = strtoull(text, &slash, 10);
  int rc;
  if (ch->id == 0 || (add && *slash != '/') || (!add && *slash != '\0')) {
    free(ch);
    kl_http_respond(req, 400, "text/plain", "body: ID/RAFT_ADDR (add) or ID (remove)\n", 40);
    return;
  }
  if (add) {
    snprintf(ch->addr, sizeof ch->addr, "%.79s", slash + 1);
    bool done, known;
    char why[256];
    int refuse = add_existing(c, ch, ch->addr, &known, &done, why, sizeof why);
    if (refuse || done) {
      const char *say = refuse ? why : "ok: already a voter\n";
      kl_http_respond(req, refuse ? refuse : 200, "text/plain", say, strlen(say));
      free(ch);
      return;
    }
    if (known) { /* a standby or spare from an earlier add: resume its promotion */
      int role = ch->next_role;
      ch->next_role = role == RAFT_STANDBY ? RAFT_VOTER : -1;
      rc = raft_assign(&c->raft, &ch->req, ch->id, role, on_change);
    } else {
      ch->next_role = RAFT_STANDBY;
      rc = raft_add(&c->raft, &ch->req, ch->id, ch->addr, on_change);
    }
  } else {
    ch->next_role = -1;
    rc = raft_remove(&c->raft, &ch->req, ch->id, on_change);
  }
  if (rc != 0) {
    change_done(ch, rc);
    return;
  }
  /* Accepted: the next round entry carries who asked into every member's log (requests within
   * one second are joined: "add 4/ADDR by admin/a; remove 3 by admin/b"). */
  char one[200];
  snprintf(one, sizeof one, "%s %.120s by %s%.60s", add ? "add" : "remove", text, who ? "admin/" : "",
           who ? who->id : "unauthenticated(insecure)");
  size_t used = strlen(c->note_what);
  snprintf(c->note_what + used, sizeof c->note_what - used, "%s%s", used ? "; " : "", one);
  if (c->note_who[0] == '\0') snprintf(c->note_who, sizeof c->note_who, "%s%s", who ? "admin/" : "", who ? who->id : "-");
  else if (strstr(c->note_who, "several") == NULL && strcmp(c->note_who + (strncmp(c->note_who, "admin/", 6) ? 0 : 6),
                                                             who ? who->id : "-") != 0)
    snprintf(c->note_who, sizeof c->note_who, "several");
  snprintf(one, sizeof one, "%s%.60s", who ? "admin/" : "", who ? who->id : "unauthenticated(insecure)"); /* the actor */
  kl_audit_event_by(c->audit, one, add ? "membership_add" : "membership_remove", "what=%s peer=%s", text, kl_http_req_peer(req));
}

int core_admin_start(core_t *c, kl_err_t *e) {
  kl_metrics_t *m = c->metrics;
  kl_metrics_gauge_fn(m, "keyless_core_raft_role", "0 unavailable, 1 follower, 2 candidate, 3 leader", NULL, g_role, c);
  kl_metrics_gauge_fn(m, "keyless_core_raft_term", "Raft term", NULL, g_term, c);
  kl_metrics_gauge_fn(m, "keyless_core_raft_commit_index", "Raft commit index", NULL, g_commit, c);
  kl_metrics_gauge_fn(m, "keyless_core_raft_applied_index", "Raft entries applied", NULL, g_applied, c);
  kl_metrics_gauge_fn(m, "keyless_core_calendar_last", "last committed second", NULL, g_last, c);
  kl_metrics_gauge_fn(m, "keyless_core_commit_lag_seconds", "now minus the last committed second", NULL, g_lag, c);
  kl_metrics_gauge_fn(m, "keyless_core_requests_pending", "requests held for rounds", NULL, g_pending, c);
  kl_metrics_gauge_fn(m, "keyless_core_clock_ok", "1 when this node's clock agrees with the cluster's quorum time",
                      NULL, g_clock, c);
  kl_metrics_gauge_fn(m, "keyless_core_clock_skew_seconds", "this node's clock minus the cluster's quorum time", NULL,
                      g_skew, c);
  kl_metrics_gauge_fn(m, "keyless_core_fsm_state", "0 ok, 1 catching up, 2 failed", NULL, g_fsm, c);
  kl_metrics_counter_fn(m, "keyless_core_raft_peers_refused_total",
                        "Raft connections refused: no or a bad certificate, not a core, not the member it claims, "
                        "not a member, no hello",
                        NULL, g_raft_refused, c);
  kl_metrics_counter_fn(m, "keyless_core_raft_links_total", "Raft connections authenticated and opened", NULL,
                        g_raft_accepted, c);
  static const char *const dr[4][3] = {{"reason", "not_member", NULL}, {"reason", "term", NULL}, {"reason", "index", NULL},
                                       {"reason", "shape", NULL}};
  static const char *const drop_help = "Raft messages dropped before libraft saw them";
  kl_metrics_counter_fn(m, "keyless_core_raft_messages_dropped_total", drop_help, dr[0], g_drop_member, c);
  kl_metrics_counter_fn(m, "keyless_core_raft_messages_dropped_total", drop_help, dr[1], g_drop_term, c);
  kl_metrics_counter_fn(m, "keyless_core_raft_messages_dropped_total", drop_help, dr[2], g_drop_index, c);
  kl_metrics_counter_fn(m, "keyless_core_raft_messages_dropped_total", drop_help, dr[3], g_drop_shape, c);
  c->m_requests = kl_metrics_counter(m, "keyless_core_requests_total", "aggregation requests received", NULL);
  static const char *const ok[] = {"result", "ok", NULL}, *const retry[] = {"result", "retry", NULL},
                           *const rej[] = {"result", "rejected", NULL};
  c->m_answered_ok = kl_metrics_counter(m, "keyless_core_answers_total", "answers sent", ok);
  c->m_answered_retry = kl_metrics_counter(m, "keyless_core_answers_total", "answers sent", retry);
  c->m_rejected = kl_metrics_counter(m, "keyless_core_answers_total", "answers sent", rej);
  static const char *const mismatch[] = {"result", "mismatch", NULL};
  /* retry answers because the committed leaf under the request's id was another request */
  c->m_answered_mismatch = kl_metrics_counter(m, "keyless_core_answers_total", "answers sent", mismatch);
  static const char *const fwd_reasons[CORE_FWD_N] = {"not_leader", "origin", "second", "level", "limit", "malformed"};
  for (int i = 0; i < CORE_FWD_N; i++) {
    const char *labels[] = {"reason", fwd_reasons[i], NULL};
    c->m_fwd_refused[i] = kl_metrics_counter(m, "keyless_core_forwards_refused_total",
                                             "forwards not held: not the leader, origin not the sending member, second "
                                             "outside the window, level too high, max_pending reached, malformed",
                                             labels);
    if (c->m_fwd_refused[i] == NULL) return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  }
  c->m_heartbeats_refused = kl_metrics_counter(
      m, "keyless_core_heartbeats_refused_total", "heartbeats not counted: not from the member they name", NULL);
  kl_metrics_counter_fn(m, "keyless_core_round_leaves_dropped_total",
                        "requests the leader left out of a round: their level did not fit the tree (answered 0x104)",
                        NULL, g_dropped, c);
  c->m_rounds = kl_metrics_counter(m, "keyless_core_rounds_total", "seconds committed and applied", NULL);
  c->m_forwards = kl_metrics_counter(m, "keyless_core_forwards_total",
                                    "leaves forwarded to the leader: a second's requests of this node (a batch), or one",
                                    NULL);
  c->m_forwards_failed = kl_metrics_counter(m, "keyless_core_forwards_failed_total",
                                            "leaves not forwarded: no link to the leader (their requests get a retry answer)",
                                            NULL);
  c->m_proposals = kl_metrics_counter(m, "keyless_core_proposals_total", "round entries proposed as leader", NULL);
  static const char *const when_members[] = {"when", "members", NULL}, *const when_grace[] = {"when", "grace", NULL};
  static const char help_closed[] = "seconds the leader closed once every other member had said it closed them (members), "
                                    "or at its grace (grace: a member silent, slow or older)";
  c->m_closed_members = kl_metrics_counter(m, "keyless_core_seconds_closed_total", help_closed, when_members);
  c->m_closed_grace = kl_metrics_counter(m, "keyless_core_seconds_closed_total", help_closed, when_grace);
  static const double leaves_b[] = {0, 1, 10, 100, 1000, 10000, 100000};
  c->m_round_leaves = kl_metrics_histogram(m, "keyless_core_round_requests",
                                           "requests per proposed round (a batch's leaf counts its requests)", NULL, leaves_b,
                                           sizeof leaves_b / sizeof leaves_b[0]);
  c->m_commit_latency = kl_metrics_histogram(m, "keyless_core_commit_seconds",
                                             "a round's proposal to its commit on the leader: the Raft entry durable on a "
                                             "quorum (fsync included) until the leader starts applying it",
                                             NULL, kl_metrics_latency_buckets, kl_metrics_latency_n);
  c->m_apply_latency = kl_metrics_histogram(m, "keyless_core_apply_seconds",
                                            "the leader applying a committed round: calendar append, the round's tree, "
                                            "the answers to its own requests",
                                            NULL, kl_metrics_latency_buckets, kl_metrics_latency_n);
  if (!c->m_requests || !c->m_forwards_failed || !c->m_answered_ok || !c->m_answered_retry || !c->m_rejected || !c->m_rounds || !c->m_forwards ||
      !c->m_proposals || !c->m_closed_members || !c->m_closed_grace || !c->m_round_leaves || !c->m_commit_latency || !c->m_apply_latency || !c->m_answered_mismatch || !c->m_heartbeats_refused)
    return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  if (kl_net_metrics_register(m, &c->nm_internal, "internal", false) ||
      kl_net_metrics_register(m, &c->nm_repl, "replication", false) || kl_net_metrics_register(m, &c->nm_admin, "admin", true))
    return kl_err_set(e, KL_ENOMEM, "metrics: out of memory");
  c->nm_internal.stats = c->internal ? kl_tlv_server_stats(c->internal) : NULL;
  c->nm_repl.stats = c->replication ? kl_tlv_server_stats(c->replication) : NULL;
  int r;
  c->adm = (kl_admin_t){c->metrics, health, c};
  if (c->cfg->metrics_listen[0] &&
      ((r = kl_admin_server_create(c->loop, NULL, &c->adm, &c->metrics_srv, e)) ||
       (r = kl_http_server_listen(c->metrics_srv, c->cfg->metrics_listen, e))))
    return r;
  /* State-changing calls only from an operator holding an admin certificate of the cluster CA. */
  if (c->cfg->admin_listen[0] == '\0') return 0;
  if ((r = kl_admin_server_create(c->loop, NULL, &c->adm, &c->admin, e)) ||
      (r = kl_http_route(c->admin, "GET", "/status", status, c, e)) ||
      (r = kl_http_route(c->admin, "POST", "/members/add", members, c, e)) ||
      (r = kl_http_route(c->admin, "POST", "/members/remove", members, c, e)))
    return r;
  if (c->tls) kl_http_server_set_tls(c->admin, c->tls, KL_ROLE_ADMIN, NULL, NULL);
  c->nm_admin.stats = kl_http_server_stats(c->admin);
  return kl_http_server_listen(c->admin, c->cfg->admin_listen, e);
}
