/* The Raft guard (raft_guard.h): a raft_io in front of the real one that checks what arrives. */
#include "raft_guard.h"

#include <string.h>

#include "keyless/log.h"

static kl_raft_guard_t *G(struct raft_io *io) { return (kl_raft_guard_t *)io->impl; }

static bool is_member(const struct raft *r, raft_id id) {
  if (r->configuration.n == 0) return true; /* joining: we do not know the members yet */
  for (unsigned i = 0; i < r->configuration.n; i++)
    if (r->configuration.servers[i].id == id) return true;
  return false;
}

static bool term_ok(const struct raft *r, raft_term t) {
  return t < KL_GUARD_MAX && t <= r->current_term + KL_GUARD_TERM_JUMP;
}

const char *kl_raft_guard_check(const struct raft *r, const struct raft_message *m, int *reason) {
  *reason = KL_GUARD_BAD_SHAPE;
  if (m->server_id == 0) return "no sender id";
  if (!is_member(r, m->server_id)) {
    *reason = KL_GUARD_NOT_MEMBER;
    return "sender is not a member of the configuration";
  }
  raft_term term;
  uint64_t idx[3] = {0, 0, 0};
  switch (m->type) {
    case RAFT_IO_APPEND_ENTRIES: {
      const struct raft_append_entries *a = &m->append_entries;
      term = a->term;
      idx[0] = a->prev_log_index;
      idx[1] = a->leader_commit;
      idx[2] = a->prev_log_term;
      if (a->n_entries > KL_GUARD_MAX_ENTRIES) return "too many entries";
      for (unsigned i = 0; i < a->n_entries; i++)
        if (a->entries[i].term > a->term) {
          *reason = KL_GUARD_BAD_TERM;
          return "an entry's term is after the message's";
        }
      if (a->prev_log_term > a->term) {
        *reason = KL_GUARD_BAD_TERM;
        return "prev_log_term after the term";
      }
      break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
      term = m->append_entries_result.term;
      idx[0] = m->append_entries_result.rejected;
      idx[1] = m->append_entries_result.last_log_index;
      break;
    case RAFT_IO_REQUEST_VOTE:
      term = m->request_vote.term;
      idx[0] = m->request_vote.last_log_index;
      idx[1] = m->request_vote.last_log_term;
      if (m->request_vote.candidate_id != m->server_id) return "candidate id is not the sender";
      break;
    case RAFT_IO_REQUEST_VOTE_RESULT: term = m->request_vote_result.term; break;
    case RAFT_IO_INSTALL_SNAPSHOT:
      term = m->install_snapshot.term;
      idx[0] = m->install_snapshot.last_index;
      idx[1] = m->install_snapshot.conf_index;
      idx[2] = m->install_snapshot.last_term;
      break;
    case RAFT_IO_TIMEOUT_NOW:
      term = m->timeout_now.term;
      idx[0] = m->timeout_now.last_log_index;
      idx[1] = m->timeout_now.last_log_term;
      break;
    default: return "unknown message type";
  }
  if (!term_ok(r, term)) {
    *reason = KL_GUARD_BAD_TERM;
    return "term out of range";
  }
  for (int i = 0; i < 3; i++)
    if (idx[i] >= KL_GUARD_MAX) {
      *reason = KL_GUARD_BAD_INDEX;
      return "index out of range";
    }
  return NULL;
}

void kl_raft_guard_free_message(struct raft_message *m) {
  if (m->type == RAFT_IO_APPEND_ENTRIES) {
    struct raft_entry *e = m->append_entries.entries;
    void *last = NULL;
    for (unsigned i = 0; e && i < m->append_entries.n_entries; i++) {
      if (e[i].batch != last && e[i].batch != NULL) raft_free(e[i].batch);
      last = e[i].batch;
    }
    if (e) raft_free(e);
  } else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
    raft_configuration_close(&m->install_snapshot.conf);
    raft_free(m->install_snapshot.data.base);
  }
}

/* ---- the forwarding raft_io ---- */

static void on_tick(struct raft_io *real) {
  kl_raft_guard_t *g = real->data;
  g->tick(&g->io);
}

static void on_recv(struct raft_io *real, struct raft_message *m) {
  kl_raft_guard_t *g = real->data;
  int reason;
  const char *why = g->raft ? kl_raft_guard_check(g->raft, m, &reason) : NULL;
  if (why) {
    g->dropped[reason]++;
    kl_log(KL_LOG_WARN, "raft_dropped", "from=%llu type=%u reason=\"%s\"", (unsigned long long)m->server_id,
           (unsigned)m->type, why);
    kl_raft_guard_free_message(m);
    return;
  }
  g->recv(&g->io, m);
}

/* The real I/O's error message, where libraft looks for it (raft_errmsg). */
static int keep_msg(struct raft_io *io, int rv) {
  if (rv != 0) memcpy(io->errmsg, G(io)->real->errmsg, sizeof io->errmsg);
  return rv;
}

static int f_init(struct raft_io *io, raft_id id, const char *address) {
  struct raft_io *real = G(io)->real;
  real->data = G(io);
  return keep_msg(io, real->init(real, id, address));
}
/* libraft's callbacks that take the I/O must get this one (its data is the raft). */
static void on_closed(struct raft_io *real) {
  kl_raft_guard_t *g = real->data;
  if (g->close_cb) g->close_cb(&g->io);
}

static void f_close(struct raft_io *io, raft_io_close_cb cb) {
  G(io)->close_cb = cb;
  G(io)->real->data = G(io);
  G(io)->real->close(G(io)->real, on_closed);
}
static int f_load(struct raft_io *io, raft_term *term, raft_id *voted_for, struct raft_snapshot **snapshot,
                  raft_index *start_index, struct raft_entry *entries[], size_t *n_entries) {
  return keep_msg(io, G(io)->real->load(G(io)->real, term, voted_for, snapshot, start_index, entries, n_entries));
}
static int f_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  kl_raft_guard_t *g = G(io);
  g->tick = tick;
  g->recv = recv;
  g->real->data = g;
  return keep_msg(io, g->real->start(g->real, msecs, on_tick, on_recv));
}
static int f_bootstrap(struct raft_io *io, const struct raft_configuration *conf) {
  return keep_msg(io, G(io)->real->bootstrap(G(io)->real, conf));
}
static int f_recover(struct raft_io *io, const struct raft_configuration *conf) {
  return G(io)->real->recover(G(io)->real, conf);
}
static int f_set_term(struct raft_io *io, raft_term term) { return G(io)->real->set_term(G(io)->real, term); }
static int f_set_vote(struct raft_io *io, raft_id id) { return G(io)->real->set_vote(G(io)->real, id); }
static int f_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m, raft_io_send_cb cb) {
  return G(io)->real->send(G(io)->real, req, m, cb);
}
static int f_append(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[], unsigned n,
                    raft_io_append_cb cb) {
  return G(io)->real->append(G(io)->real, req, entries, n, cb);
}
static int f_truncate(struct raft_io *io, raft_index index) { return G(io)->real->truncate(G(io)->real, index); }
static int f_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                          const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb) {
  return G(io)->real->snapshot_put(G(io)->real, trailing, req, snapshot, cb);
}
static int f_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req, raft_io_snapshot_get_cb cb) {
  return G(io)->real->snapshot_get(G(io)->real, req, cb);
}
static raft_time f_time(struct raft_io *io) { return G(io)->real->time(G(io)->real); }
static int f_random(struct raft_io *io, int min, int max) { return G(io)->real->random(G(io)->real, min, max); }
static int f_async_work(struct raft_io *io, struct raft_io_async_work *req, raft_io_async_work_cb cb) {
  return G(io)->real->async_work(G(io)->real, req, cb);
}

void kl_raft_guard_init(kl_raft_guard_t *g, struct raft_io *real) {
  memset(g, 0, sizeof *g);
  g->real = real;
  g->io.version = real->version;
  g->io.impl = g;
  g->io.init = f_init;
  g->io.close = f_close;
  g->io.load = f_load;
  g->io.start = f_start;
  g->io.bootstrap = f_bootstrap;
  g->io.recover = f_recover;
  g->io.set_term = f_set_term;
  g->io.set_vote = f_set_vote;
  g->io.send = f_send;
  g->io.append = f_append;
  g->io.truncate = f_truncate;
  g->io.snapshot_put = f_snapshot_put;
  g->io.snapshot_get = f_snapshot_get;
  g->io.time = f_time;
  g->io.random = f_random;
  g->io.async_work = real->version >= 2 ? f_async_work : NULL;
}

/* ---- the hello ---- */

static const char hello_magic[8] = {'K', 'L', 'R', 'A', 'F', 'T', '0', '1'};

size_t kl_raft_hello_need(const uint8_t *buf, size_t len) {
  if (len < 18) return 18;
  return 18 + ((size_t)buf[16] << 8 | buf[17]);
}

int kl_raft_hello_parse(const uint8_t *buf, size_t len, uint64_t *id, char *addr, const char **why) {
  if (len < 18 || len != kl_raft_hello_need(buf, len)) {
    *why = "hello: truncated";
    return -1;
  }
  if (memcmp(buf, hello_magic, sizeof hello_magic) != 0) {
    *why = "not a keyless Raft hello";
    return -1;
  }
  size_t alen = len - 18;
  if (alen == 0 || alen > 255) {
    *why = "hello: bad address length";
    return -1;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | buf[8 + i];
  if (v == 0) {
    *why = "hello: member id 0";
    return -1;
  }
  for (size_t i = 0; i < alen; i++)
    if (buf[18 + i] < 0x21 || buf[18 + i] > 0x7e) {
      *why = "hello: the address is not printable";
      return -1;
    }
  memcpy(addr, buf + 18, alen);
  addr[alen] = '\0';
  *id = v;
  return 0;
}

size_t kl_raft_hello_encode(uint64_t id, const char *addr, uint8_t *out) {
  size_t alen = strlen(addr);
  if (alen == 0 || alen > 255) return 0;
  memcpy(out, hello_magic, sizeof hello_magic);
  for (int i = 0; i < 8; i++) out[8 + i] = (uint8_t)(id >> (56 - 8 * i));
  out[16] = (uint8_t)(alen >> 8);
  out[17] = (uint8_t)alen;
  memcpy(out + 18, addr, alen);
  return 18 + alen;
}
