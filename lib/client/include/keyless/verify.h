/* keyless: signature verification policies with libksi's semantics and codes
 * (KSI-FORMAT.md §8).
 *
 * A policy yields a verdict (OK, FAIL, NA) with a code such as "INT-10" and libksi's message.
 * Operational errors (out of memory, extender unreachable) are not verdicts: they are reported
 * as NA with GEN-02 and the cause in the message, since the signature could not be judged.
 * Nothing here reads files or the network; the caller supplies the publications file, the
 * user publication and an extender callback.
 *
 * Threads: kl_verify is thread-safe (it hashes with per-thread contexts); a kl_verifier_t
 * belongs to one thread at a time. The result is a value in the caller's memory; the verifier
 * keeps no pointer to the signature or the options after the call.
 */
#ifndef KEYLESS_VERIFY_H
#define KEYLESS_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/pubfile.h"
#include "keyless/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KL_VER_OK = 0, KL_VER_FAIL = 1, KL_VER_NA = 2 } kl_verdict_t;

#define KL_VCODE_MAP(X)                                                                         \
  X(NONE, "", "OK")                                                                             \
  X(GEN_01, "GEN-01", "Wrong document")                                                         \
  X(GEN_02, "GEN-02", "Verification inconclusive")                                              \
  X(GEN_03, "GEN-03", "Input hash level too large")                                             \
  X(GEN_04, "GEN-04", "Wrong input hash algorithm")                                             \
  X(INT_01, "INT-01", "Inconsistent aggregation hash chains")                                   \
  X(INT_02, "INT-02", "Inconsistent aggregation hash chain aggregation times")                  \
  X(INT_03, "INT-03", "Calendar hash chain input hash mismatch")                                \
  X(INT_04, "INT-04", "Calendar hash chain aggregation time mismatch")                          \
  X(INT_05, "INT-05", "Calendar hash chain shape inconsistent with aggregation time")           \
  X(INT_06, "INT-06", "Calendar hash chain time inconsistent with calendar authentication record time") \
  X(INT_07, "INT-07", "Calendar hash chain time inconsistent with publication time")            \
  X(INT_08, "INT-08", "Calendar hash chain root hash is inconsistent with calendar authentication record input hash") \
  X(INT_09, "INT-09", "Calendar hash chain root hash is inconsistent with published hash value") \
  X(INT_10, "INT-10", "Aggregation hash chain chain index mismatch")                            \
  X(INT_11, "INT-11", "The metadata record in the aggregation hash chain may not be trusted")   \
  X(INT_12, "INT-12", "Inconsistent chain indexes")                                             \
  X(INT_13, "INT-13", "Document hash algorithm deprecated at the time of signing")              \
  X(INT_14, "INT-14", "RFC3161 compatibility record composed of hash algorithms that were deprecated at the time of signing") \
  X(INT_15, "INT-15", "Aggregation hash chain uses hash algorithm that was deprecated at the time of signing") \
  X(INT_16, "INT-16", "Calendar hash chain hash algorithm was obsolete at publication time")    \
  X(INT_17, "INT-17", "The RFC3161 compatibility record output hash algorithm was deprecated at the time of signing") \
  X(PUB_01, "PUB-01", "Extender response calendar root hash mismatch")                         \
  X(PUB_02, "PUB-02", "Extender response inconsistent")                                         \
  X(PUB_03, "PUB-03", "Extender response input hash mismatch")                                  \
  X(PUB_04, "PUB-04", "Publication record hash and user provided publication hash mismatch")    \
  X(PUB_05, "PUB-05", "Publication record hash and publications file publication hash mismatch") \
  X(KEY_02, "KEY-02", "PKI signature not verified with certificate")                           \
  X(KEY_03, "KEY-03", "Signing certificate not valid at aggregation time")                      \
  X(CAL_01, "CAL-01", "Calendar root hash mismatch between signature and calendar database chain") \
  X(CAL_02, "CAL-02", "Aggregation hash chain root hash and calendar database hash chain input hash mismatch") \
  X(CAL_03, "CAL-03", "Aggregation time mismatch")                                              \
  X(CAL_04, "CAL-04", "Calendar hash chain right links are inconsistent")

typedef enum {
#define KL__VC_ENUM(id, code, msg) KL_VC_##id,
  KL_VCODE_MAP(KL__VC_ENUM)
#undef KL__VC_ENUM
  KL_VC_MAX
} kl_vcode_t;

KL_API const char *kl_vcode_str(kl_vcode_t c); /* "INT-10"; "" for NONE */
KL_API const char *kl_vcode_msg(kl_vcode_t c); /* libksi's text */
KL_API const char *kl_verdict_str(kl_verdict_t v); /* "OK", "FAIL", "NA" */

typedef enum {
  KL_POLICY_INTERNAL,
  KL_POLICY_KEY,
  KL_POLICY_CALENDAR,
  KL_POLICY_PUBFILE,
  KL_POLICY_USER_PUB,
  KL_POLICY_GENERAL,
} kl_policy_t;

KL_API const char *kl_policy_name(kl_policy_t p);

/* Asks an extender for the calendar chain from aggr_time to pub_time (0 = the calendar head).
 * Fills *out (allocated in arena); returns 0 or an error code with a message. Only the
 * envelope (HMAC, status, request id) is the callback's business: the policies judge the
 * chain itself, so that a bad chain gets its CAL/PUB code. */
typedef int (*kl_extend_fn)(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena,
                            kl_cal_chain_t *out, kl_err_t *e);

typedef struct kl_verify_opts {
  const kl_imprint_t *doc_hash; /* NULL: not checked */
  uint64_t doc_level;           /* the level the document hash was signed at (0 normally) */
  uint64_t input_level;         /* the level the first chain's input sits at: 0 for a signature;
                                 * a tier checking its parent's answer above its round root
                                 * gives the root's level (the chains' level corrections are
                                 * relative to it) */
  const kl_pubfile_t *pubfile;  /* trusted by the caller (verified or explicitly not) */
  bool has_user_pub;
  uint64_t user_pub_time;
  kl_imprint_t user_pub_hash;
  bool extending_allowed; /* for the publication-based policies, as ksi-tool's -x */
  kl_extend_fn extend;    /* NULL: no extender */
  void *extend_arg;
} kl_verify_opts_t;

/* What an OK verdict rests on (the trust anchor an auditor asks for). */
typedef enum kl_anchor {
  KL_ANCHOR_NONE,        /* not OK, or the internal policy: consistent in itself only */
  KL_ANCHOR_PUBLICATION, /* a publication: anchor_time and anchor_hash (from the publications file,
                          * the user's string or the signature's own record) */
  KL_ANCHOR_CERTIFICATE, /* the calendar-auth record's PKI signature: cert_id */
  KL_ANCHOR_EXTENDER     /* the extender's calendar (calendar-based): anchor_time its publication time */
} kl_anchor_t;

typedef struct kl_verify_result {
  kl_verdict_t verdict;
  kl_vcode_t code;
  kl_policy_t policy; /* the policy that produced the verdict */
  char message[KL_ERR_MSG_MAX];
  /* When verdict is OK (zero otherwise): */
  kl_anchor_t anchor;
  bool anchor_extended;   /* the signature was extended (through the extender) to reach it */
  uint64_t anchor_time;   /* the publication's time (PUBLICATION, EXTENDER) */
  kl_imprint_t anchor_hash; /* the published calendar root (PUBLICATION) */
  uint8_t cert_id[16];    /* the certificate's id (CERTIFICATE), cert_id_len bytes */
  size_t cert_id_len;
} kl_verify_result_t;

KL_API void kl_verify(const kl_sig_t *sig, kl_policy_t policy, const kl_verify_opts_t *opts,
                      kl_verify_result_t *res);

/* Reusable context for bulk verification (keeps one hasher). */
typedef struct kl_verifier kl_verifier_t;
KL_API int kl_verifier_create(kl_verifier_t **out, kl_err_t *e);
KL_API void kl_verifier_destroy(kl_verifier_t *v);
KL_API void kl_verifier_run(kl_verifier_t *v, const kl_sig_t *sig, kl_policy_t policy,
                            const kl_verify_opts_t *opts, kl_verify_result_t *res);

/* A calendar authentication record on its own (kl_cal_auth_decode), checked as the key-based
 * policy checks one, with the caller's trusted certificates (DER) in place of the publications
 * file's: the certificate whose id (CRC-32 of its DER) the record names must be among them,
 * valid at the record's time (KEY-03), and the signature over the record's publication data
 * must verify with it (KEY-02). 0, or KL_EPKI with the reason. The record's time and hash are
 * the caller's to compare. */
KL_API int kl_cal_auth_verify(const kl_cal_auth_t *auth, const uint8_t *const *cert_ders, const size_t *cert_lens,
                              size_t n_certs, kl_err_t *e);

/* The first hash algorithm that a calendar chain's steps use (KSI-FORMAT.md §5.1: each left
 * link's sibling algorithm, and the input's for the right links before the first left link)
 * that is deprecated at the chain's publication time (deprecated true) or obsolete then (false);
 * -1 when none. The policies use it on every chain they trust: obsolete is INT-16; deprecated
 * is GEN-02 under the key-based policy, and under the publication-based ones for a chain from
 * an extender. A caller that extends a signature itself can ask it of the chain it received. */
KL_API int kl_cal_chain_weak_alg(const kl_cal_chain_t *c, bool deprecated);

/* The calendar root of the signature's calendar chain and its aggregation root (the output of
 * the top aggregation chain); used by inspect and tests. */
KL_API int kl_sig_aggregation_root(const kl_sig_t *sig, kl_imprint_t *root, kl_err_t *e);
KL_API int kl_sig_calendar_root(const kl_sig_t *sig, kl_imprint_t *root, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
