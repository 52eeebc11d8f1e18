/* The audit log's format (docs/formats.md §9): records, their hash chain, the per-record
 * signatures file, and the checks `keyless audit-log verify` and the core run on them. Pure:
 * no libuv, no network; the core's writer is audit.c, the command cli/cmd_audit_log.c.
 *
 * audit.log   "KLAUDIT1" then records (0x0C20), each naming the hash of the one before it.
 * audit.ksig  "KLAUDSG1" then per-record signatures (0x0C21 {seq, 0x800}), in increasing seq.
 *
 * A record's hash is SHA-256 over its whole TLV (header included); it is the document hash of
 * its signature, and the `prev` of the next record (seq 1 has 32 zero bytes).
 *
 * Memory: a scan's records point into the caller's buffer (valid as long as it is); the arrays
 * are the caller's (kl_audit_scan_free). Threads: no global state. This code may move to
 * lib/daemon once another daemon keeps an audit log; it lives with the core for now. */
#ifndef KL_CORE_AUDITLOG_H
#define KL_CORE_AUDITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#define KL_AUDIT_LOG_MAGIC "KLAUDIT1"
#define KL_AUDIT_SIG_MAGIC "KLAUDSG1"
#define KL_AUDIT_MAGIC_LEN 8
#define KL_AUDIT_T_RECORD 0x0C20
#define KL_AUDIT_T_SIG 0x0C21
#define KL_AUDIT_MAX_TEXT 1000 /* event type, actor and details: at most this many bytes each */

typedef struct kl_audit_rec {
  uint64_t seq;     /* 1, 2, 3 ... */
  uint64_t time_ms; /* UTC, milliseconds since 1970 */
  uint64_t node;    /* the core node's id */
  const char *type, *actor, *details;
  kl_imprint_t prev; /* hash of record seq-1 (zeros for seq 1) */
  /* filled by the decoder */
  const uint8_t *raw; /* the whole element */
  size_t raw_len, offset;
  kl_imprint_t hash; /* SHA-256 of raw */
} kl_audit_rec_t;

/* Appends record r (seq, time_ms, node, type, actor, details, prev) as one canonical element.
 * KL_EINVAL for text with a NUL, control characters other than none, or over KL_AUDIT_MAX_TEXT. */
int kl_audit_rec_encode(kl_buf_t *b, const kl_audit_rec_t *r, kl_err_t *e);
/* Decodes exactly one record element filling p[0..n) and hashes it. KL_EFORMAT naming what is
 * wrong (another type, a missing, repeated, unknown or out-of-order child, a bad imprint). */
int kl_audit_rec_decode(const uint8_t *p, size_t n, kl_audit_rec_t *out, kl_err_t *e);
/* The zero imprint seq 1 names as its prev. */
void kl_audit_zero(kl_imprint_t *out);

/* A log file's bytes, split into records. */
typedef struct kl_audit_scan {
  kl_audit_rec_t *recs;
  size_t n;
  size_t good_len;  /* bytes up to the end of the last whole record (magic included) */
  bool torn;        /* the file ends inside an element: a write that did not finish */
  bool bad;         /* a whole element that does not decode: err says why, at bad_offset */
  size_t bad_offset;
  kl_err_t err;
} kl_audit_scan_t;

/* Splits p[0..n) (a whole audit.log). Returns KL_EFORMAT only for a missing or wrong magic; a
 * torn tail or an undecodable element stops the scan and is reported in out (torn, bad). */
int kl_audit_log_scan(const uint8_t *p, size_t n, kl_audit_scan_t *out, kl_err_t *e);
void kl_audit_scan_free(kl_audit_scan_t *s);

/* One per-record signature as found in audit.ksig. */
typedef struct kl_audit_sigent {
  uint64_t seq;
  const uint8_t *sig; /* the whole 0x800 */
  size_t sig_len;
  size_t offset;
} kl_audit_sigent_t;

typedef struct kl_audit_sigs {
  kl_audit_sigent_t *ents;
  size_t n;
  size_t good_len;
  bool torn, bad;
  size_t bad_offset;
  kl_err_t err;
} kl_audit_sigs_t;

/* Appends one 0x0C21 element for seq with the signature's bytes. */
int kl_audit_sig_encode(kl_buf_t *b, uint64_t seq, const uint8_t *sig, size_t sig_len, kl_err_t *e);
int kl_audit_sig_decode(const uint8_t *p, size_t n, kl_audit_sigent_t *out, kl_err_t *e);
/* As kl_audit_log_scan for audit.ksig; seqs must strictly increase (else bad). */
int kl_audit_sigs_scan(const uint8_t *p, size_t n, kl_audit_sigs_t *out, kl_err_t *e);
void kl_audit_sigs_free(kl_audit_sigs_t *s);
/* The entry for seq, or NULL. */
const kl_audit_sigent_t *kl_audit_sigs_find(const kl_audit_sigs_t *s, uint64_t seq);

/* The chain check of recs[0..n) (a whole log, from seq 1): seqs 1, 2, 3 ... and each prev the
 * hash of the record before. On the first break, returns KL_EFORMAT with *bad_seq the first seq
 * that is wrong and a message saying how: "seq 4 missing (removed): seq 3 is followed by seq 5",
 * "seq 4: out of order (records reordered): seq 3 is followed by seq 5, seq 4 comes later",
 * "seq 4: altered: its hash is not the prev of seq 5". A prev that does not match blames the
 * record before it, unless proven[i - 1] (its hash is its signature's: it is intact), when it
 * blames the record holding the prev. proven may be NULL (nothing proven). */
int kl_audit_chain_check(const kl_audit_rec_t *recs, size_t n, const bool *proven, uint64_t *bad_seq, kl_err_t *e);

#endif
