/* The core's Raft guard: what libraft receives from the network, checked first (issue 10).
 *
 * raft_tls.c authenticates every Raft connection by its certificate (role core, id = the
 * member id the connection claims); this guard sits between libraft's I/O and libraft itself
 * (a raft_io that forwards every call to the real one, and checks each received message
 * before libraft's recv callback sees it): a message from a server that is not a member of
 * the current configuration, or with a term or index no sane peer sends, is dropped (its
 * memory released) and counted. Pure: no uv.h; the checks are tested on their own. */
#ifndef KL_CORE_RAFT_GUARD_H
#define KL_CORE_RAFT_GUARD_H

#include <raft.h>
#include <stdint.h>

/* A term may run at most this far ahead of ours, and never reach KL_GUARD_MAX. */
#define KL_GUARD_TERM_JUMP ((raft_term)1 << 24)
#define KL_GUARD_MAX ((uint64_t)1 << 48)
#define KL_GUARD_MAX_ENTRIES 65536u

typedef struct kl_raft_guard {
  struct raft_io io;    /* give this to raft_init */
  struct raft_io *real; /* the libuv I/O underneath */
  struct raft *raft;    /* set before raft_start */
  raft_io_tick_cb tick;
  raft_io_recv_cb recv;
  raft_io_close_cb close_cb;
  uint64_t dropped[4];  /* by reason: KL_GUARD_* below */
} kl_raft_guard_t;

enum { KL_GUARD_NOT_MEMBER, KL_GUARD_BAD_TERM, KL_GUARD_BAD_INDEX, KL_GUARD_BAD_SHAPE };

void kl_raft_guard_init(kl_raft_guard_t *g, struct raft_io *real);

/* NULL when m may go to libraft, else why not (one of the reasons in *reason). Pure. */
const char *kl_raft_guard_check(const struct raft *r, const struct raft_message *m, int *reason);
/* Releases what a received message owns (entries, snapshot data), as libraft would. */
void kl_raft_guard_free_message(struct raft_message *m);

/* ---- the hello a connecting member sends after TLS (docs/formats.md §3a) ---- */
#define KL_RAFT_HELLO_MAX (8 + 8 + 2 + 255)
/* How many bytes the hello that starts with buf[0..len) has in all: 18 until its header is
 * there, then 18 + the address length. */
size_t kl_raft_hello_need(const uint8_t *buf, size_t len);
/* Parses a whole hello (len == kl_raft_hello_need(buf, len)): *id and addr (NUL-terminated,
 * at least 256 bytes). 0, or -1 with *why naming what is wrong. */
int kl_raft_hello_parse(const uint8_t *buf, size_t len, uint64_t *id, char *addr, const char **why);
/* Writes the hello for (id, addr) into out (KL_RAFT_HELLO_MAX bytes); returns its length, or 0
 * if addr is empty or longer than 255 bytes. */
size_t kl_raft_hello_encode(uint64_t id, const char *addr, uint8_t *out);

#endif
