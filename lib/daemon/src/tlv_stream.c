/* ksi+tcp: a stream of whole TLVs (KSI PDUs) back to back, answered in order.
 *
 * Happy path: bytes → the TLV header (2 or 4 bytes) gives the frame size → checked against
 * max_body → one allocation of exactly that size → filled → handed to the handler → responses,
 * given in any order, are written in request order.
 * Failure modes: a frame over max_body → nothing more is read, the responses already due are
 * written, then the connection is closed (ksi+tcp has no way to say "too big" and resync);
 * more than max_inflight frames with their handlers → reading stops until one is answered;
 * a respond with close_after → later frames are dropped and the connection ends after the
 * responses up to that one; the peer goes away → pending requests are orphaned, their
 * responses dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "keyless/log.h"
#include "net_internal.h"

typedef struct tconn tconn_t;

/* Who is at the other end of a connection, shared by its requests (reference counted: a
 * request may outlive its connection) instead of a copy per frame. */
typedef struct conn_id {
  unsigned refs;
  bool has_who;
  char peer[64];
  kl_peer_t who; /* TLS: the authenticated peer */
} conn_id_t;

static void id_unref(conn_id_t *id) {
  if (id && --id->refs == 0) free(id);
}

struct kl_tlv_server {
  kl__srv_t srv;
  int framing; /* KL_FRAMING_TLV or KL_FRAMING_U32 */
  kl_tlv_handler_fn fn;
  void *arg;
  kl_tlv_close_fn close_cb;
  void *close_arg;
  /* Connections with responses ready to write: written from the prepare phase, just before the
   * loop polls (so nothing waits for the next event), once per loop iteration, all that are
   * ready on a connection in one writev (a round's answers come in slices of thousands: one
   * write per response cost a system call each). */
  uv_prepare_t flush;
  tconn_t *ready;
  /* Requests freed on a live connection are kept for the next frames (at most SPARE_MAX): a
   * round's answers free thousands at once, and malloc then paid for each again. */
  kl_tlv_req_t *spare;
  unsigned n_spare;
};

#define SPARE_MAX 8192

struct tconn {
  kl__conn_t *c;
  kl_tlv_server_t *s;
  uint8_t hdr[4];
  size_t hdr_have;
  uint8_t *frame; /* being filled */
  size_t frame_len, frame_have;
  kl_tlv_req_t *head, *tail; /* every request not yet written, in arrival order */
  unsigned inflight;         /* with their handlers */
  bool draining;             /* no more frames are taken */
  bool cut;                  /* a close_after answer was written: later answers are dropped */
  bool queued;               /* in the server's ready list */
  conn_id_t *id;             /* made at the first frame */
  tconn_t *ready_prev, *ready_next;
};

struct kl_tlv_req {
  tconn_t *tc; /* NULL once orphaned */
  kl_tlv_req_t *next;
  uint8_t *frame;
  size_t frame_len;
  bool done, close_after;
  uint8_t *resp;
  size_t resp_len;
  conn_id_t *id; /* the connection's, one reference */
};

const char *kl_tlv_req_peer(const kl_tlv_req_t *r) { return r->id->peer; }
const kl_peer_t *kl_tlv_req_peer_id(const kl_tlv_req_t *r) {
  return r->id->has_who && r->id->who.role ? &r->id->who : NULL;
}
bool kl_tlv_req_connected(const kl_tlv_req_t *r) { return r->tc != NULL; }

static void req_free(kl_tlv_req_t *r) {
  id_unref(r->id);
  free(r->frame);
  free(r->resp);
  kl_tlv_server_t *s = r->tc ? r->tc->s : NULL; /* an orphan may outlive its server */
  if (s && s->n_spare < SPARE_MAX) {
    r->next = s->spare;
    s->spare = r;
    s->n_spare++;
    return;
  }
  free(r);
}

static kl_tlv_req_t *req_new(kl_tlv_server_t *s) {
  kl_tlv_req_t *r = s->spare;
  if (r == NULL) return calloc(1, sizeof *r);
  s->spare = r->next;
  s->n_spare--;
  memset(r, 0, sizeof *r);
  return r;
}

#define WRITE_BATCH 64

/* Writes the answered requests at the head of the queue, as one writev per WRITE_BATCH. */
static void flush(tconn_t *tc) {
  kl__conn_t *c = tc->c;
  void *bufs[WRITE_BATCH];
  size_t lens[WRITE_BATCH], n = 0;
  while (tc->head && tc->head->done) {
    kl_tlv_req_t *r = tc->head;
    tc->head = r->next;
    if (tc->head == NULL) tc->tail = NULL;
    if (r->resp_len && c->state == KL__C_OPEN && !tc->cut) { /* frames taken in before a close_after
                                                                  * one (handlers in flight) get no answer */
      c->srv->stats.responses[2]++;
      bufs[n] = r->resp;
      lens[n++] = r->resp_len;
      r->resp = NULL;
    }
    if (r->close_after) {
      tc->cut = true;
      if (!tc->draining) {
        tc->draining = true;
        c->end_when_idle = true;
      }
    }
    req_free(r);
    if (n == WRITE_BATCH || (n && (tc->head == NULL || !tc->head->done))) {
      kl__conn_writev(c, bufs, lens, n); /* may close c, and free tc with it */
      n = 0;
      if (c->state == KL__C_CLOSING) return;
    }
  }
}

static void ready_unlink(tconn_t *tc) {
  if (!tc->queued) return;
  if (tc->ready_prev) tc->ready_prev->ready_next = tc->ready_next;
  else tc->s->ready = tc->ready_next;
  if (tc->ready_next) tc->ready_next->ready_prev = tc->ready_prev;
  tc->ready_prev = tc->ready_next = NULL;
  tc->queued = false;
}

static void on_flush(uv_prepare_t *h) {
  kl_tlv_server_t *s = h->data;
  while (s->ready) {
    tconn_t *tc = s->ready;
    kl__conn_t *c = tc->c;
    ready_unlink(tc);
    flush(tc);
    kl__conn_settle(c); /* nothing when c closed */
  }
  uv_prepare_stop(h);
}

static void ready_queue(tconn_t *tc) {
  if (tc->queued) return;
  tc->queued = true;
  tc->ready_prev = NULL;
  tc->ready_next = tc->s->ready;
  if (tc->ready_next) tc->ready_next->ready_prev = tc;
  tc->s->ready = tc;
  uv_prepare_start(&tc->s->flush, on_flush);
}

static void respond(kl_tlv_req_t *r, void *p, size_t len, bool close_after) {
  tconn_t *tc = r->tc;
  if (tc == NULL || r->done) { /* orphaned (or answered twice: a caller bug we survive) */
    free(p);
    if (tc == NULL) req_free(r);
    return;
  }
  free(r->frame);
  r->frame = NULL;
  r->done = true;
  r->resp = p;
  r->resp_len = p ? len : 0;
  r->close_after = close_after;
  tc->inflight--;
  kl__conn_t *c = tc->c;
  if (close_after && !tc->draining) { /* frames after this one are dropped from now on */
    tc->draining = true;
    c->end_when_idle = true;
  }
  if (tc->head == r) ready_queue(tc); /* written with whatever else is ready this iteration */
  if (c->state == KL__C_OPEN && tc->inflight < c->srv->lim.max_inflight) kl__conn_unpause(c, KL__PAUSE_BUSY);
  else kl__conn_settle(c);
}

void kl_tlv_req_drop_frame(kl_tlv_req_t *r) {
  if (r == NULL) return;
  free(r->frame);
  r->frame = NULL;
}

void kl_tlv_respond_take(kl_tlv_req_t *r, void *p, size_t len, bool close_after) {
  if (r == NULL) {
    free(p);
    return;
  }
  respond(r, p, len, close_after);
}

void kl_tlv_respond(kl_tlv_req_t *r, const void *p, size_t len, bool close_after) {
  void *copy = NULL;
  if (p && len && (copy = malloc(len)) != NULL) memcpy(copy, p, len);
  kl_tlv_respond_take(r, copy, copy ? len : 0, close_after || (len && copy == NULL));
}

/* A whole frame arrived: queue it and hand it over. */
static void deliver(tconn_t *tc) {
  kl__conn_t *c = tc->c;
  if (!kl__conn_rate_ok(c)) { /* over its address's rate: no PDU-level answer fits every protocol */
    kl_log(KL_LOG_DEBUG, "rate_limited", "server=%s peer=%s", c->srv->name, c->peer);
    free(tc->frame);
    tc->frame = NULL;
    kl__conn_close(c);
    return;
  }
  bool authed = c->tls != NULL && c->authed;
  if (tc->id == NULL || (authed && !tc->id->has_who)) { /* once per connection (again if it authenticated since) */
    conn_id_t *id = malloc(sizeof *id);
    if (id != NULL) {
      id->refs = 1;
      id->has_who = authed;
      memcpy(id->peer, c->peer, sizeof id->peer);
      id->peer[sizeof id->peer - 1] = '\0';
      if (authed) id->who = c->who;
      id_unref(tc->id);
      tc->id = id;
    }
  }
  kl_tlv_req_t *r = tc->id ? req_new(tc->s) : NULL;
  if (r == NULL) {
    kl_log(KL_LOG_ERROR, "oom", "server=%s peer=%s what=request", c->srv->name, c->peer);
    free(tc->frame);
    tc->frame = NULL;
    kl__conn_close(c);
    return;
  }
  r->tc = tc;
  r->frame = tc->frame;
  r->frame_len = tc->frame_len;
  r->id = tc->id;
  r->id->refs++;
  tc->frame = NULL;
  tc->hdr_have = tc->frame_have = tc->frame_len = 0;
  if (tc->tail) tc->tail->next = r;
  else tc->head = r;
  tc->tail = r;
  tc->inflight++;
  c->srv->stats.requests++;
  kl__conn_touch(c);
  if (tc->inflight >= c->srv->lim.max_inflight) kl__conn_pause(c, KL__PAUSE_BUSY);
  tc->s->fn(r, r->frame, r->frame_len, tc->s->arg);
}

static size_t tlv_on_data(kl__conn_t *c, const uint8_t *p, size_t n) {
  tconn_t *tc = c->proto;
  size_t off = 0;
  while (off < n && c->state == KL__C_OPEN) {
    if (tc->draining) return n;
    if (tc->inflight >= c->srv->lim.max_inflight || !kl__conn_can_take(c)) return off;
    if (tc->frame == NULL) { /* header */
      if (tc->hdr_have == 0) tc->hdr[tc->hdr_have++] = p[off++];
      bool u32 = tc->s->framing == KL_FRAMING_U32;
      size_t need = u32 || (tc->hdr[0] & 0x80) ? 4 : 2;
      while (tc->hdr_have < need && off < n) tc->hdr[tc->hdr_have++] = p[off++];
      if (tc->hdr_have < need) break;
      size_t vlen = u32 ? (size_t)tc->hdr[0] << 24 | (size_t)tc->hdr[1] << 16 | (size_t)tc->hdr[2] << 8 | tc->hdr[3]
                  : need == 4 ? (size_t)tc->hdr[2] << 8 | tc->hdr[3] : tc->hdr[1];
      if (u32 && vlen > SIZE_MAX / 2) vlen = SIZE_MAX / 2; /* over any limit: refused below */
      size_t total = need + vlen;
      if (total > c->srv->lim.max_body) {
        c->srv->stats.bad_input++;
        kl_log(KL_LOG_INFO, "frame_too_big", "server=%s peer=%s size=%zu max=%zu", c->srv->name, c->peer, total,
               c->srv->lim.max_body);
        tc->draining = true;
        c->end_when_idle = true;
        return n;
      }
      if ((tc->frame = malloc(total)) == NULL) {
        kl_log(KL_LOG_ERROR, "oom", "server=%s peer=%s what=frame", c->srv->name, c->peer);
        kl__conn_close(c);
        return n;
      }
      memcpy(tc->frame, tc->hdr, need);
      tc->frame_len = total;
      tc->frame_have = need;
    }
    size_t k = tc->frame_len - tc->frame_have;
    if (k > n - off) k = n - off;
    memcpy(tc->frame + tc->frame_have, p + off, k);
    tc->frame_have += k;
    off += k;
    if (tc->frame_have == tc->frame_len) deliver(tc);
  }
  return off;
}

static int tlv_on_open(kl__conn_t *c) {
  tconn_t *tc = calloc(1, sizeof *tc);
  if (tc == NULL) return -1;
  tc->c = c;
  tc->s = c->srv->owner;
  c->proto = tc;
  return 0;
}

static bool tlv_idle(const kl__conn_t *c) {
  const tconn_t *tc = c->proto;
  return tc->head == NULL;
}

static void tlv_on_close(kl__conn_t *c) {
  tconn_t *tc = c->proto;
  ready_unlink(tc);
  for (kl_tlv_req_t *r = tc->head, *next; r; r = next) {
    next = r->next;
    if (r->done) req_free(r);
    else r->tc = NULL; /* its handler still owns it */
  }
  free(tc->frame);
  id_unref(tc->id);
  free(tc);
  c->proto = NULL;
}

static void flush_closed(uv_handle_t *h) {
  kl_tlv_server_t *s = h->data;
  if (s->close_cb) s->close_cb(s, s->close_arg);
  for (kl_tlv_req_t *r = s->spare, *next; r; r = next) {
    next = r->next;
    free(r);
  }
  free(s);
}

static void tlv_server_closed(kl__srv_t *srv) {
  kl_tlv_server_t *s = srv->owner;
  uv_close((uv_handle_t *)&s->flush, flush_closed); /* every connection is gone: nothing is ready */
}

/* Framed links under TLS: an empty frame tells the client it was accepted (with TLS 1.3 the
 * client finishes its handshake before the server has judged its certificate), so that
 * kl_frame_client reports the link up only then (docs/formats.md). */
static void tlv_on_authenticated(kl__conn_t *c) {
  tconn_t *tc = c->proto;
  if (tc->s->framing != KL_FRAMING_U32) return;
  uint8_t *z = calloc(1, 4);
  if (z) kl__conn_write(c, z, 4, NULL, 0);
}

static const kl__proto_t tlv_proto = {"ksi+tcp",   tlv_on_open,       tlv_on_data,         tlv_idle,
                                      tlv_on_close, tlv_server_closed, tlv_on_authenticated};

int kl_tlv_server_create(uv_loop_t *loop, const kl_net_limits_t *lim, const char *name, kl_tlv_handler_fn fn, void *arg,
                         kl_tlv_server_t **out, kl_err_t *e) {
  if (loop == NULL || fn == NULL || out == NULL) return kl_err_set(e, KL_EINVAL, "kl_tlv_server_create: NULL argument");
  kl_tlv_server_t *s = calloc(1, sizeof *s);
  if (s == NULL) return kl_err_set(e, KL_ENOMEM, "ksi+tcp server: out of memory");
  int r = kl__srv_init(&s->srv, loop, &tlv_proto, s, lim, name, e);
  if (r) {
    free(s);
    return r;
  }
  uv_prepare_init(loop, &s->flush);
  s->flush.data = s;
  s->fn = fn;
  s->arg = arg;
  *out = s;
  return 0;
}

void kl_tlv_server_set_framing(kl_tlv_server_t *s, int framing) { s->framing = framing; }

void kl_tlv_server_set_tls(kl_tlv_server_t *s, kl_tls_ctx_t *ctx, unsigned roles, kl_peer_check_fn check, void *arg) {
  kl__srv_set_tls(&s->srv, ctx, roles, check, arg);
}

int kl_tlv_server_listen(kl_tlv_server_t *s, const char *addr, kl_err_t *e) { return kl__srv_listen(&s->srv, addr, e); }
int kl_tlv_server_port(const kl_tlv_server_t *s) { return s->srv.port; }
kl__srv_t *kl__tlv_srv(kl_tlv_server_t *s) { return &s->srv; }
const kl_net_stats_t *kl_tlv_server_stats(const kl_tlv_server_t *s) { return &s->srv.stats; }

void kl_tlv_server_close(kl_tlv_server_t *s, kl_tlv_close_fn cb, void *arg) {
  if (s == NULL) return;
  s->close_cb = cb;
  s->close_arg = arg;
  kl__srv_close(&s->srv);
}
