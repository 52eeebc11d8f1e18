/* keyless: calendar replication messages (proto/replication.proto) and applying them to a
 * replica calendar. Pure: framing and decoding of bytes; the sockets live in the daemons.
 *
 * Frame: a 4-byte big-endian length, then one ReplicationMessage.
 *
 * Trust (DESIGN.md §3a): a core signs each batch's last second and the calendar root there into
 * a calendar authentication record (0x805), and a replica appends a batch only when that
 * record verifies under a certificate it trusts and names the root the replica computes with
 * the batch appended (kl_repl_receive). A batch that fails is refused whole: nothing of it is
 * stored. docs/formats.md §3 gives the rules. */
#ifndef KEYLESS_REPLICA_H
#define KEYLESS_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/calendar.h"
#include "keyless/err.h"
#include "keyless/pki.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_FRAME_HDR 4
#define KL_REPL_MAX_FRAME (1u << 20) /* default maximum frame: 1 MiB */

/* Reads a frame header: 1 and the payload length when buf holds a whole frame, 0 when more
 * bytes are needed, -1 (KL_ETOOBIG in e) when the announced length exceeds max. */
KL_API int kl_frame_peek(const uint8_t *buf, size_t len, size_t max, size_t *payload_len, kl_err_t *e);
/* Appends a 4-byte length header then the payload. */
KL_API void kl_frame_put(kl_buf_t *out, const uint8_t *payload, size_t len);

/* Encoders: each appends one framed message. */
KL_API int kl_repl_encode_subscribe(kl_buf_t *out, uint64_t after, int from_genesis, kl_err_t *e);
/* Entries for seconds [from, to] read from cal (the core's calendar), with no authentication
 * record: kl_repl_encode_entries_signed(out, cal, from, to, NULL, e). */
KL_API int kl_repl_encode_entries(kl_buf_t *out, kl_cal_t *cal, uint64_t from, uint64_t to, kl_err_t *e);
/* The same, and with auth (may be NULL: none) a calendar authentication record signed over
 * (to, root(to)) in Entries.auth_record. */
KL_API int kl_repl_encode_entries_signed(kl_buf_t *out, kl_cal_t *cal, uint64_t from, uint64_t to, kl_calauth_t *auth,
                                         kl_err_t *e);

typedef struct kl_repl_subscribe {
  uint64_t after;
  int from_genesis;
} kl_repl_subscribe_t;

/* What a replica trusts. The arrays are the caller's and must stay valid while in use. */
typedef struct kl_repl_trust {
  const uint8_t *const *certs; /* DER of the trusted calendar-auth certificates */
  const size_t *cert_lens;
  size_t n_certs;
  /* Accept batches that carry no authentication record. A record that is present is still
   * checked: its signature when n_certs > 0, its time and root always. Without insecure, a
   * batch needs a record that verifies under one of certs (none configured: every batch with
   * entries is refused). */
  bool insecure;
} kl_repl_trust_t;

typedef struct kl_repl_result {
  int is_subscribe;          /* a Subscribe: in sub */
  kl_repl_subscribe_t sub;
  bool is_entries;           /* an Entries message (applied, empty, or refused) */
  uint64_t genesis, committed_last; /* as the sender wrote them */
  uint64_t first, last;      /* the batch's seconds; an empty batch has first = last + 1 */
  size_t applied;            /* seconds appended (all of the batch, or none) */
  bool authenticated;        /* its record verified under a trusted certificate */
  bool has_roots;            /* computed and signed_root are set (a record was checked) */
  kl_imprint_t computed;     /* the replica's root at `last` with the batch appended */
  kl_imprint_t signed_root;  /* the record's root */
} kl_repl_result_t;

/* Decodes one frame's payload into *res. A Subscribe is returned in res->sub. An Entries
 * message with entries is checked, in this order, and appended to replica only if every check
 * holds:
 *   - genesis equal to the replica's (KL_ESTATE), seconds consecutive from the replica's next
 *     second (KL_EFORMAT), valid imprints (KL_EFORMAT/KL_EHASHALG);
 *   - a record is present, unless trust->insecure (KL_EAUTH); it parses as a 0x805 TLV
 *     (KL_EFORMAT); with certificates, it verifies under one of them (KL_EPKI, kl_cal_auth_verify);
 *   - its time is the batch's last second (KL_EAUTH);
 *   - its root equals the root the replica computes with the batch appended (KL_ESTATE: the
 *     core and this replica have diverged; has_roots tells both roots).
 * The roots are computed from the replica's stored nodes before anything is written, then the
 * batch is appended in one transaction (kl_cal_append): a refused batch stores nothing. An
 * Entries message with no entries changes nothing (a record in it is ignored). An Error message
 * becomes KL_ESERVICE. trust NULL: as { insecure = true, no certificates }. */
KL_API int kl_repl_receive(const uint8_t *payload, size_t len, kl_cal_t *replica, const kl_repl_trust_t *trust,
                           kl_repl_result_t *res, kl_err_t *e);

/* Decodes one frame's payload without applying anything (an extender probing a core it does
 * not follow): res->is_entries with genesis, committed_last and first..last as the sender wrote
 * them (no entries: last = first - 1), or res->is_subscribe. An Error message becomes
 * KL_ESERVICE, anything undecodable KL_EFORMAT. */
KL_API int kl_repl_peek(const uint8_t *payload, size_t len, kl_repl_result_t *res, kl_err_t *e);

/* kl_repl_receive with trust NULL (no record needed; one that is present is checked for its
 * time and root, not its signature): for the core, which only decodes Subscribe with it, and
 * for a core node catching up from its own members. Exactly one of *sub, *applied is set. */
KL_API int kl_repl_handle(const uint8_t *payload, size_t len, kl_cal_t *replica, kl_repl_subscribe_t *sub,
                          int *is_subscribe, size_t *applied, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
