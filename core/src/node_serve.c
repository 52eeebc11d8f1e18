/* The core's connections: aggregation requests and forwards on the internal port, answers when
 * a second commits, heartbeats between members, and the replication stream to extenders.
 *
 * Internal port frames (proto/aggregation.proto Message, 4-byte length framing):
 *   Request   from the tier below: held for the current second; once the second has ended, a
 *             follower forwards one leaf for all its requests of that second to the leader
 *             (rounds.h: a batch's root, or a lone request); answered when a second commits
 *             (chain) or with 0x0300 (retry). Answers
 *             go to the request frame they belong to (its connection): the tier below's
 *             request_id is only echoed, never used to find a request.
 *   Forward   from a member, a leaf standing for its requests of one second: the leader holds it
 *             for its round (no answer frame), if it comes
 *             from the member it names, for a second near the leader's clock, and there is room
 *             (rounds.h); refusals are counted by reason.
 *   Heartbeat from a member: its clock (no answer frame), counted only from the member it names,
 *             and the last second it closed (its leaf for it came first on the same link): once
 *             every other member has closed a second, the leader closes it without its grace.
 *   Ping      from the tier below on a quiet link: a Pong at once (in order with the link's other
 *             answers) saying whether this node would take a round now (a leader is known and the
 *             state machine is in step); nothing else changes. It keeps the link from idling out
 *             and lets the child notice a silent core (proto/aggregation.proto).
 * Replication port: Subscribe{after} → Entries for the seconds after `after` (at most 1000), or,
 * when there are none yet, the request waits (long poll) until a second commits or 1 s passes
 * (then an empty Entries: the heartbeat by which an extender tells a live core from a silent
 * one, proto/replication.proto). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregation.pb-c.h"
#include "keyless/log.h"
#include "keyless/pdu.h"
#include "keyless/replica.h"
#include "node.h"
#include "replication.pb-c.h"

#define WAIT_MS 1000
#define BATCH 1000

static void respond_msg(kl_tlv_req_t *req, const Keyless__Aggregation__Message *m) {
  size_t n = keyless__aggregation__message__get_packed_size(m);
  uint8_t *buf = malloc(n + 4);
  if (buf == NULL) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  buf[0] = (uint8_t)(n >> 24);
  buf[1] = (uint8_t)(n >> 16);
  buf[2] = (uint8_t)(n >> 8);
  buf[3] = (uint8_t)n;
  keyless__aggregation__message__pack(m, buf + 4);
  kl_tlv_respond_take(req, buf, n + 4, false);
}

static void respond_error(kl_tlv_req_t *req, uint64_t request_id, uint32_t status, const char *msg, uint64_t second) {
  Keyless__Aggregation__Response r = KEYLESS__AGGREGATION__RESPONSE__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  r.request_id = request_id;
  r.status = status;
  r.error = (char *)msg;
  r.second = second;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE;
  m.response = &r;
  respond_msg(req, &m);
}

/* The calendar chain (s, s) and the authentication record for s, made once per round. */
static int round_parts(core_t *c, uint64_t s, kl_err_t *e) {
  if (c->cache_second == s && c->cache_chain.len) return 0;
  kl_imprint_t root;
  int r;
  kl_buf_reset(&c->cache_chain);
  kl_buf_reset(&c->cache_auth);
  c->cache_second = 0;
  if ((r = kl_cal_chain(c->cal, s, s, &c->cache_chain, e)) || (r = kl_cal_root(c->cal, s, &root, e)) ||
      (r = kl_calauth_sign(core_key_at(c, s), s, &root, &c->cache_auth, e)))
    return r;
  c->cache_second = s;
  return 0;
}

void core_on_answer(void *arg, void *ctx, uint64_t client_request_id, const kl_core_answer_t *a) {
  core_t *c = arg;
  kl_tlv_req_t *req = ctx;
  kl_err_t e = {0};
  if (a->status != 0 || c->stopping) {
    if (a->kind == KL_CORE_ANSWER_MISMATCH) {
      kl_metric_inc(c->m_answered_mismatch);
      kl_log(KL_LOG_WARN, "answer_mismatch", "second=%llu request_id=%llu peer=%s why=%s", (unsigned long long)a->second,
             (unsigned long long)client_request_id, kl_tlv_req_peer(req), a->error ? a->error : "");
    } else if (a->kind == KL_CORE_ANSWER_TOO_HIGH) {
      kl_metric_inc(c->m_rejected);
    } else {
      kl_metric_inc(c->m_answered_retry);
    }
    respond_error(req, client_request_id, a->status ? (uint32_t)a->status : KL_STATUS_UPSTREAM_ERROR,
                  a->error ? a->error : "the core is stopping; retry", a->second);
    return;
  }
  if (round_parts(c, a->second, &e)) {
    kl_log(KL_LOG_ERROR, "round_parts", "second=%llu error=%s", (unsigned long long)a->second, e.msg);
    kl_metric_inc(c->m_answered_retry);
    respond_error(req, client_request_id, KL_STATUS_INTERNAL_ERROR, "cannot make the calendar part", a->second);
    return;
  }
  Keyless__Aggregation__Response r = KEYLESS__AGGREGATION__RESPONSE__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  ProtobufCBinaryData chain = {a->chain_len, (uint8_t *)a->chain};
  r.request_id = client_request_id;
  r.status = 0;
  r.second = a->second;
  r.n_chains = 1;
  r.chains = &chain;
  r.has_calendar_chain = r.has_auth_record = 1;
  r.calendar_chain.len = c->cache_chain.len;
  r.calendar_chain.data = c->cache_chain.p;
  r.auth_record.len = c->cache_auth.len;
  r.auth_record.data = c->cache_auth.p;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE;
  m.response = &r;
  kl_metric_inc(c->m_answered_ok);
  respond_msg(req, &m);
}

void core_on_round(void *arg, const kl_core_round_t *round) {
  core_t *c = arg;
  kl_err_t e = {0};
  kl_metric_inc(c->m_rounds);
  if (kl_core_rounds_committed(c->rounds, round, &e))
    kl_log(KL_LOG_ERROR, "round_inconsistent", "second=%llu error=%s", (unsigned long long)round->second, e.msg);
  core_release_waiters(c, false);
}

/* Sends a leaf (a batch root or a lone request) on to the leader. If the link is down the
 * requests stay held and are answered "retry" when their round commits without them; the
 * counter shows how often that happens. */
static void forward(core_t *c, uint64_t second, const kl_core_leaf_t *leaf, uint32_t requests) {
  raft_id leader;
  const char *addr;
  uint8_t imp[KL_IMPRINT_MAX];
  raft_leader(&c->raft, &leader, &addr);
  for (size_t i = 0; i < c->n_peers; i++) {
    if (c->peers[i].id != leader) continue;
    Keyless__Aggregation__Forward f = KEYLESS__AGGREGATION__FORWARD__INIT;
    Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
    f.origin = (uint64_t)c->cfg->id;
    f.request_id = leaf->request_id;
    f.imprint.len = kl_imprint_to_bytes(&leaf->imprint, imp);
    f.imprint.data = imp;
    f.level = leaf->level;
    f.second = second;
    if (requests != 1) {
      f.has_requests = 1;
      f.requests = requests;
    }
    m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_FORWARD;
    m.forward = &f;
    uint8_t buf[512];
    size_t n = keyless__aggregation__message__get_packed_size(&m);
    if (n <= sizeof buf) {
      keyless__aggregation__message__pack(&m, buf);
      if (kl_frame_client_send(c->peers[i].link, buf, n, NULL) == 0) {
        kl_metric_inc(c->m_forwards);
        return;
      }
    }
    break;
  }
  kl_metric_inc(c->m_forwards_failed);
}

void core_close_own(core_t *c) {
  uint64_t now_s = core_quorum_now_ms(c) / 1000;
  kl_core_leaf_t leaf;
  uint64_t second;
  uint32_t requests;
  int have = 1;
  kl_err_t e = {0};
  if (now_s == 0 || raft_state(&c->raft) == RAFT_LEADER || kl_core_rounds_closed(c->rounds) + 1 >= now_s) return;
  while (have) {
    if (kl_core_rounds_close_own(c->rounds, now_s - 1, &leaf, &second, &requests, &have, &e)) {
      kl_log(KL_LOG_ERROR, "batch", "second=%llu error=%s", (unsigned long long)(now_s - 1), e.msg);
      return; /* tried again at the next tick */
    }
    if (have) forward(c, second, &leaf, requests);
  }
  core_send_heartbeats(c); /* after the leaves on the same links: "closed up to now_s - 1" */
}

/* The member a connection authenticated as: the id of its core certificate (raft_tls and the
 * internal port share the member ids of [cluster]), 0 for any other peer (an aggregator, a
 * gateway). With [tls] insecure = yes nothing is authenticated and the claim is taken as it
 * is (tests only: the daemon said so loudly at start). */
static uint64_t peer_member_id(const core_t *c, kl_tlv_req_t *req, uint64_t claimed) {
  if (c->tls == NULL) return claimed;
  const kl_peer_t *p = kl_tlv_req_peer_id(req);
  if (p == NULL || p->role != KL_ROLE_CORE) return 0;
  char *end;
  unsigned long long id = strtoull(p->id, &end, 10);
  return *end == '\0' ? (uint64_t)id : 0;
}

/* The rounds, with the configured limits (node.c creates them without max_pending). */
static kl_core_rounds_t *rounds(core_t *c) { return c->rounds; } /* max_pending set once at start */

/* A warning for the 1st, 2nd, 4th, 8th... occurrence: a flood shows without flooding the log. */
static bool log_now(const kl_metric_t *counter) {
  uint64_t v = (uint64_t)kl_metric_value(counter);
  return v != 0 && (v & (v - 1)) == 0;
}

static void on_request(core_t *c, kl_tlv_req_t *req, const Keyless__Aggregation__Request *rq) {
  kl_imprint_t imp;
  kl_err_t e = {0};
  uint64_t id, now_s = core_quorum_now_ms(c) / 1000; /* the cluster's second, not this node's */
  kl_core_rounds_t *r = rounds(c);
  int top = kl_core_rounds_max_request_level(r);
  kl_metric_inc(c->m_requests);
  const kl_peer_t *who = kl_tlv_req_peer_id(req);
  if (c->tls && (who == NULL || (who->role & (KL_ROLE_AGGREGATOR | KL_ROLE_GATEWAY)) == 0)) {
    kl_metric_inc(c->m_rejected); /* members forward, they do not request */
    respond_error(req, rq->request_id, KL_STATUS_AUTH_FAILURE, "aggregation requests come from aggregators and gateways", 0);
    return;
  }
  if (kl_imprint_from_bytes(&imp, rq->imprint.data, rq->imprint.len, &e)) {
    kl_metric_inc(c->m_rejected);
    respond_error(req, rq->request_id, KL_STATUS_INVALID_PAYLOAD, e.msg, 0);
    return;
  }
  if (top < 0 || rq->level > (uint32_t)top) { /* would not fit a full round's tree (rounds.h) */
    char msg[96];
    snprintf(msg, sizeof msg, "level %u is too high: this core accepts levels up to %d", (unsigned)rq->level, top);
    kl_metric_inc(c->m_rejected);
    respond_error(req, rq->request_id, KL_STATUS_AGGR_REQUEST_TOO_LARGE, msg, 0);
    return;
  }
  raft_id leader;
  const char *addr;
  raft_leader(&c->raft, &leader, &addr);
  if (c->stopping || leader == 0 || c->fsm.state != KL_FSM_OK) {
    kl_metric_inc(c->m_rejected);
    respond_error(req, rq->request_id, KL_STATUS_UPSTREAM_ERROR, "no leader right now; retry", 0);
    return;
  }
  if (!c->clock_ok || now_s == 0) { /* node.c check_clock: a wrong clock must not date a signature */
    kl_metric_inc(c->m_rejected);
    respond_error(req, rq->request_id, KL_STATUS_UPSTREAM_ERROR,
                  now_s == 0 ? "this core node hears no majority of clocks; retry"
                             : "this core node's clock disagrees with the cluster's; retry",
                  0);
    return;
  }
  if (kl_core_rounds_closed(r) + 1 < now_s) core_close_own(c); /* the first request of a second sends the last one's leaf */
  int rc = kl_core_rounds_add(r, now_s, &imp, rq->level, req, rq->request_id, &id, &e);
  if (rc) {
    kl_metric_inc(c->m_rejected);
    respond_error(req, rq->request_id,
                  rc == KL_ERANGE    ? KL_STATUS_AGGR_REQUEST_TOO_LARGE
                  : rc == KL_ETOOBIG ? KL_STATUS_AGGR_TOO_MANY_REQUESTS
                                     : KL_STATUS_INTERNAL_ERROR,
                  rc == KL_ETOOBIG ? "too many requests pending" : e.msg, 0);
    return;
  }
}

static bool is_member(const core_t *c, uint64_t id) {
  for (unsigned i = 0; i < c->raft.configuration.n; i++)
    if (c->raft.configuration.servers[i].id == id) return true;
  return false;
}

/* A follower's request for the leader's round; refusals are counted by reason (the follower
 * answers its request "retry" when the round commits without it). */
static void on_forward(core_t *c, kl_tlv_req_t *req, const Keyless__Aggregation__Forward *f) {
  kl_imprint_t imp;
  kl_err_t e = {0};
  int why;
  uint64_t sender = peer_member_id(c, req, f->origin);
  if (raft_state(&c->raft) != RAFT_LEADER) {
    why = CORE_FWD_NOT_LEADER;
  } else if (sender == 0 || sender == (uint64_t)c->cfg->id || !is_member(c, sender)) {
    why = CORE_FWD_ORIGIN;
    snprintf(e.msg, sizeof e.msg, "forward from %llu, not another member", (unsigned long long)sender);
  } else if (kl_imprint_from_bytes(&imp, f->imprint.data, f->imprint.len, &e)) {
    why = CORE_FWD_MALFORMED;
  } else {
    switch (kl_core_rounds_add_forward_n(rounds(c), sender, core_quorum_now_ms(c) / 1000, f->second, f->origin,
                                         f->request_id, &imp, f->level, f->has_requests ? f->requests : 1, &e)) {
      case 0: return;
      case KL_EAUTH: why = CORE_FWD_ORIGIN; break;
      case KL_ESTATE: why = CORE_FWD_SECOND; break;
      case KL_ERANGE: why = CORE_FWD_LEVEL; break;
      default: why = CORE_FWD_LIMIT; break; /* KL_ETOOBIG, KL_ENOMEM */
    }
  }
  kl_metric_inc(c->m_fwd_refused[why]);
  if (why != CORE_FWD_NOT_LEADER && log_now(c->m_fwd_refused[why]))
    kl_log(KL_LOG_WARN, "forward_refused", "peer=%s sender=%llu origin=%llu second=%llu count=%.0f error=%s",
           kl_tlv_req_peer(req), (unsigned long long)sender, (unsigned long long)f->origin,
           (unsigned long long)f->second, kl_metric_value(c->m_fwd_refused[why]), e.msg);
}

/* A member's clock reading, with our monotonic time at receipt (qtime.h). A core that proves its
 * id (its certificate) but is not in the configuration this node knows is told so with a
 * not-ready Pong (id 0), so that a removed node learns it even though nobody replicates to it
 * any more (core_on_peer_frame); true then. */
static bool on_heartbeat(core_t *c, kl_tlv_req_t *req, const Keyless__Aggregation__Heartbeat *h) {
  uint64_t sender = peer_member_id(c, req, h->node);
  core_peer_t *p = NULL;
  for (size_t i = 0; i < c->n_peers && sender == h->node; i++)
    if (c->peers[i].id == sender) p = &c->peers[i];
  if (p == NULL) {
    kl_metric_inc(c->m_heartbeats_refused);
    if (log_now(c->m_heartbeats_refused))
      kl_log(KL_LOG_WARN, "heartbeat_refused", "peer=%s sender=%llu node=%llu count=%.0f", kl_tlv_req_peer(req),
             (unsigned long long)sender, (unsigned long long)h->node, kl_metric_value(c->m_heartbeats_refused));
    return sender != 0 && sender == h->node && sender != (uint64_t)c->cfg->id && !is_member(c, sender);
  }
  p->clock = (kl_qtime_reading_t){h->wall_ms, core_mono_ms()};
  if (h->has_closed && h->closed > p->closed) {
    p->closed = h->closed;
    core_close_due(c); /* the leader may close the second now rather than at its grace */
  }
  return false;
}

/* A child's heartbeat: ready exactly when on_request would not refuse with "retry" at once. */
static void on_ping(core_t *c, kl_tlv_req_t *req, const Keyless__Aggregation__Ping *p) {
  Keyless__Aggregation__Pong pong = KEYLESS__AGGREGATION__PONG__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  raft_id leader;
  const char *addr;
  raft_leader(&c->raft, &leader, &addr);
  pong.id = p->id;
  pong.ready = !c->stopping && leader != 0 && c->fsm.state == KL_FSM_OK && c->clock_ok;
  if (!pong.ready)
    pong.reason = c->stopping                   ? "stopping"
                  : leader == 0                 ? "no leader right now"
                  : c->fsm.state != KL_FSM_OK ? "catching up"
                                                : "this node's clock disagrees with the cluster's";
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_PONG;
  m.pong = &pong;
  respond_msg(req, &m);
}

void core_on_internal(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  core_t *c = arg;
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, len - 4, frame + 4);
  if (m == NULL) {
    kl_tlv_respond(req, NULL, 0, true); /* not our protocol: drop the connection */
    return;
  }
  switch (m->body_case) {
    case KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST: on_request(c, req, m->request); break;
    case KEYLESS__AGGREGATION__MESSAGE__BODY_FORWARD:
      on_forward(c, req, m->forward);
      kl_tlv_respond(req, NULL, 0, false);
      break;
    case KEYLESS__AGGREGATION__MESSAGE__BODY_HEARTBEAT:
      if (on_heartbeat(c, req, m->heartbeat)) {
        Keyless__Aggregation__Pong pong = KEYLESS__AGGREGATION__PONG__INIT;
        Keyless__Aggregation__Message out = KEYLESS__AGGREGATION__MESSAGE__INIT;
        pong.reason = CORE_NOT_MEMBER;
        out.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_PONG;
        out.pong = &pong;
        respond_msg(req, &out);
      } else {
        kl_tlv_respond(req, NULL, 0, false);
      }
      break;
    case KEYLESS__AGGREGATION__MESSAGE__BODY_PING: on_ping(c, req, m->ping); break;
    default: kl_tlv_respond(req, NULL, 0, true);
  }
  keyless__aggregation__message__free_unpacked(m, NULL);
}

/* Members answer a heartbeat only to say this node is not in their configuration. */
void core_on_peer_frame(kl_frame_client_t *fc, const uint8_t *p, size_t len, void *arg) {
  core_t *c = arg;
  (void)fc;
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, len, p);
  if (m == NULL) return;
  if (m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PONG && !m->pong->ready && m->pong->reason &&
      strcmp(m->pong->reason, CORE_NOT_MEMBER) == 0) {
    uint64_t now = core_mono_ms();
    if (c->not_member_ms == 0 || now - c->not_member_said_ms >= 60000) {
      kl_log(KL_LOG_ERROR, "not_a_member", "id=%lld action=\"the cluster's members say this node is not in their "
             "configuration (removed, or not added yet): stop it, or add it with keyless core add\"",
             (long long)c->cfg->id);
      c->not_member_said_ms = now;
    }
    c->not_member_ms = now;
  }
  keyless__aggregation__message__free_unpacked(m, NULL);
}

void core_send_heartbeats(core_t *c) {
  Keyless__Aggregation__Heartbeat h = KEYLESS__AGGREGATION__HEARTBEAT__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  uint8_t buf[64];
  h.node = (uint64_t)c->cfg->id;
  h.wall_ms = core_now_ms();
  if (c->rounds && raft_state(&c->raft) != RAFT_LEADER) { /* the leader's collection is its own business */
    h.has_closed = 1;
    h.closed = kl_core_rounds_closed(c->rounds);
  }
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_HEARTBEAT;
  m.heartbeat = &h;
  size_t n = keyless__aggregation__message__pack(&m, buf);
  for (size_t i = 0; i < c->n_peers; i++)
    if (kl_frame_client_connected(c->peers[i].link)) kl_frame_client_send(c->peers[i].link, buf, n, NULL);
}

/* ---- replication ---- */

static void send_entries(core_t *c, kl_tlv_req_t *req, uint64_t after) {
  kl_cal_info_t info;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  if (kl_cal_info(c->cal, &info, &e)) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  uint64_t from = after + 1 < info.genesis ? info.genesis : after + 1;
  if (info.empty || from > info.last) { /* nothing new: an empty batch tells the replica to ask again */
    Keyless__Replication__Entries en = KEYLESS__REPLICATION__ENTRIES__INIT;
    Keyless__Replication__ReplicationMessage m = KEYLESS__REPLICATION__REPLICATION_MESSAGE__INIT;
    en.genesis = info.genesis;
    en.committed_last = info.empty ? 0 : info.last;
    m.body_case = KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ENTRIES;
    m.entries = &en;
    size_t n = keyless__replication__replication_message__get_packed_size(&m);
    uint8_t *tmp = malloc(n + 1);
    if (tmp) {
      keyless__replication__replication_message__pack(&m, tmp);
      kl_frame_put(&b, tmp, n);
      free(tmp);
    }
  } else {
    /* Signed (with the key for `to`): the replica appends the batch only if it computes the root
     * signed for `to`. */
    uint64_t to = info.last - from >= BATCH ? from + BATCH - 1 : info.last;
    if (kl_repl_encode_entries_signed(&b, c->cal, from, to, core_key_at(c, to), &e)) {
      char q[600];
      kl_log(KL_LOG_ERROR, "replication_batch", "from=%llu to=%llu error=%s", (unsigned long long)from,
             (unsigned long long)to, kl_log_q(q, sizeof q, e.msg));
      kl_buf_free(&b); /* the replica's link is closed below; it reconnects and asks again */
    }
  }
  if (!kl_buf_ok(&b) || b.len == 0) {
    kl_buf_free(&b);
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  size_t n;
  uint8_t *p = kl_buf_steal(&b, &n);
  kl_tlv_respond_take(req, p, n, false);
}

void core_release_waiters(core_t *c, bool all) {
  kl_cal_info_t info;
  uint64_t now = core_now_ms();
  if (kl_cal_info(c->cal, &info, NULL)) return;
  size_t keep = 0;
  for (size_t i = 0; i < c->n_waiters; i++) {
    core_waiter_t w = c->waiters[i];
    if (all || (!info.empty && info.last > w.after) || now - w.since_ms >= WAIT_MS) send_entries(c, w.req, w.after);
    else c->waiters[keep++] = w;
  }
  c->n_waiters = keep;
}

void core_on_replication(kl_tlv_req_t *req, const uint8_t *frame, size_t len, void *arg) {
  core_t *c = arg;
  kl_repl_subscribe_t sub;
  int is_sub = 0;
  size_t applied;
  kl_cal_info_t info;
  if (kl_repl_handle(frame + 4, len - 4, NULL, &sub, &is_sub, &applied, NULL) || !is_sub ||
      kl_cal_info(c->cal, &info, NULL)) {
    kl_tlv_respond(req, NULL, 0, true);
    return;
  }
  uint64_t after = sub.from_genesis ? (info.genesis ? info.genesis - 1 : 0) : sub.after;
  if ((!info.empty && info.last > after) || c->stopping) {
    send_entries(c, req, after);
    return;
  }
  if (c->n_waiters == c->cap_waiters) {
    size_t cap = c->cap_waiters ? c->cap_waiters * 2 : 16;
    core_waiter_t *w = cap <= 4096 ? realloc(c->waiters, cap * sizeof *w) : NULL;
    if (w == NULL) {
      send_entries(c, req, after);
      return;
    }
    c->waiters = w;
    c->cap_waiters = cap;
  }
  c->waiters[c->n_waiters++] = (core_waiter_t){req, after, core_now_ms()};
}
