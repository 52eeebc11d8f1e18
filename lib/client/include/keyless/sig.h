/* keyless: the KSI signature object (TLV 0x800, KSI-FORMAT.md §2) and its parts.
 *
 * kl_sig_parse() copies the input into the signature object; every pointer in the parsed
 * structures points into that copy or into the object's arena, and is valid until
 * kl_sig_free(). The object is immutable: operations that change a signature (extending)
 * build new bytes and parse them into a new object, so the parsed view and the bytes never
 * disagree, and kl_sig_bytes() of a parsed signature is byte-identical to its input
 * (unknown non-critical elements and non-canonical encodings included).
 *
 * Threads: a parsed signature is immutable and may be read and verified from several threads
 * at once; nothing here keeps global state. Memory: the caller frees it with kl_sig_free.
 */
#ifndef KEYLESS_SIG_H
#define KEYLESS_SIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/tlv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. */
enum {
  KL_T_SIGNATURE = 0x800,
  KL_T_AGGR_CHAIN = 0x801,
  KL_T_CAL_CHAIN = 0x802,
  KL_T_PUB_REC = 0x803,
  KL_T_AGGR_AUTH = 0x804,
  KL_T_CAL_AUTH = 0x805,
  KL_T_RFC3161 = 0x806,
  KL_T_PUB_DATA = 0x10,
};

enum { KL_LINK_LEFT = 0x07, KL_LINK_RIGHT = 0x08 };
enum { KL_SIB_IMPRINT = 0x02, KL_SIB_LEGACY_ID = 0x03, KL_SIB_METADATA = 0x04 };

#define KL_MAX_CHAIN_LINKS 64 /* a chain index is at most 8 bytes: 63 direction bits */
#define KL_LEGACY_ID_LEN 29

typedef struct kl_metadata {
  const char *client_id; /* mandatory */
  const char *machine_id;
  bool has_seq, has_req_time, has_padding;
  uint64_t seq;
  uint64_t req_time; /* microseconds */
  /* INT-11 (KSI-FORMAT.md §4.4): a metadata value that breaks the padding rules still parses
   * (the verifier, not the parser, rejects it), with trusted false and the broken rule in
   * untrusted_why (a static string; NULL when trusted). */
  bool trusted;
  const char *untrusted_why;
  const uint8_t *value; /* the metadata TLV's value: these bytes are hashed */
  size_t len;
} kl_metadata_t;

typedef struct kl_aggr_link {
  uint8_t dir;  /* KL_LINK_LEFT: the current node is the left child */
  uint8_t kind; /* KL_SIB_* */
  uint64_t level_corr;
  kl_imprint_t sibling;      /* KL_SIB_IMPRINT */
  char legacy_id[26];        /* KL_SIB_LEGACY_ID: the decoded name */
  kl_metadata_t meta;        /* KL_SIB_METADATA */
  const uint8_t *sib_bytes;  /* what is fed to the hash for this sibling */
  size_t sib_len;
} kl_aggr_link_t;

typedef struct kl_aggr_chain {
  uint64_t aggr_time;
  uint64_t *index;
  size_t n_index;
  kl_imprint_t input;
  const uint8_t *input_data;
  size_t input_data_len;
  bool has_input_data;
  uint64_t algo;
  kl_aggr_link_t *links;
  size_t n_links;
  size_t offset; /* of the element in the signature */
} kl_aggr_chain_t;

typedef struct kl_cal_link {
  uint8_t dir; /* KL_LINK_LEFT: sibling is the right child */
  kl_imprint_t sibling;
} kl_cal_link_t;

typedef struct kl_cal_chain {
  uint64_t pub_time;
  uint64_t aggr_time; /* = pub_time when absent */
  bool has_aggr_time;
  kl_imprint_t input;
  kl_cal_link_t *links;
  size_t n_links;
} kl_cal_chain_t;

typedef struct kl_pub_data {
  uint64_t time;
  kl_imprint_t hash;
  const uint8_t *raw; /* the whole 0x10 element as found (header included) */
  size_t raw_len;
} kl_pub_data_t;

typedef struct kl_pub_rec {
  kl_pub_data_t data;
  const char **refs;
  size_t n_refs;
  const char **uris;
  size_t n_uris;
} kl_pub_rec_t;

typedef struct kl_pki_sig {
  const char *sig_type; /* OID text, e.g. "1.2.840.113549.1.1.11" */
  const uint8_t *value;
  size_t value_len;
  const uint8_t *cert_id;
  size_t cert_id_len;
  const char *cert_repo_uri;
} kl_pki_sig_t;

typedef struct kl_cal_auth {
  kl_pub_data_t data;
  kl_pki_sig_t sig;
} kl_cal_auth_t;

typedef struct kl_rfc3161 {
  uint64_t aggr_time;
  uint64_t *index;
  size_t n_index;
  kl_imprint_t input;
  const uint8_t *tst_prefix, *tst_suffix, *sig_prefix, *sig_suffix;
  size_t tst_prefix_len, tst_suffix_len, sig_prefix_len, sig_suffix_len;
  uint64_t tst_alg, sig_alg;
} kl_rfc3161_t;

typedef struct kl_sig {
  kl_arena_t arena;
  uint8_t *raw; /* the whole 0x800 element */
  size_t raw_len;
  kl_aggr_chain_t *chains; /* sorted bottom-up (longest chain index first) */
  size_t n_chains;
  kl_cal_chain_t *cal;     /* NULL if absent */
  kl_pub_rec_t *pub;       /* NULL if absent */
  kl_cal_auth_t *auth;     /* NULL if absent */
  kl_rfc3161_t *rfc3161;   /* NULL if absent */
  bool has_aggr_auth;
} kl_sig_t;

/* Parses a signature file's bytes (one 0x800 TLV, at most 65,539 bytes). On failure *out is
 * NULL and e names the element and offset. Caller frees with kl_sig_free. */
KL_API int kl_sig_parse(const uint8_t *p, size_t n, kl_sig_t **out, kl_err_t *e);
KL_API void kl_sig_free(kl_sig_t *sig);
/* The signature's bytes; valid until kl_sig_free. */
KL_API const uint8_t *kl_sig_bytes(const kl_sig_t *sig, size_t *len);

/* Document hash (first chain's input, or the RFC 3161 record's input) and signing time. */
KL_API const kl_imprint_t *kl_sig_document_hash(const kl_sig_t *sig);
KL_API uint64_t kl_sig_signing_time(const kl_sig_t *sig);

/* Builds a new signature: sig's aggregation chains (and RFC 3161 record and unknown
 * non-critical elements), with the calendar chain replaced by cal_raw (a whole 0x802 TLV) and
 * the trust anchor replaced by anchor_raw (a whole 0x803 or 0x805 TLV, or NULL for none). */
KL_API int kl_sig_rebuild(const kl_sig_t *sig, const uint8_t *cal_raw, size_t cal_len,
                          const uint8_t *anchor_raw, size_t anchor_len, kl_sig_t **out,
                          kl_err_t *e);

/* Part decoders, shared with the PDU and publications-file codecs. `base` is where offsets
 * in messages count from. The parsed objects live in `arena` and point into t's bytes. */
KL_API int kl_aggr_chain_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                                kl_aggr_chain_t *out, kl_err_t *e);
KL_API int kl_cal_chain_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                               kl_cal_chain_t *out, kl_err_t *e);
KL_API int kl_pub_data_decode(const kl_tlv_t *t, const uint8_t *base, kl_pub_data_t *out,
                              kl_err_t *e);
KL_API int kl_pub_rec_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                             kl_pub_rec_t *out, kl_err_t *e);
KL_API int kl_imprint_decode(const kl_tlv_t *t, kl_imprint_t *out, kl_err_t *e);
/* A calendar authentication record (0x805), also found on its own in the core's replication
 * batches (docs/formats.md §3). Structure only: kl_cal_auth_verify (verify.h) checks it. */
KL_API int kl_cal_auth_decode(const kl_tlv_t *t, const uint8_t *base, kl_cal_auth_t *out, kl_err_t *e);

/* Encoders (canonical). */
KL_API void kl_pub_data_encode(kl_buf_t *b, uint8_t flags, uint64_t time, const kl_imprint_t *h);
KL_API void kl_imprint_encode(kl_buf_t *b, uint16_t type, const kl_imprint_t *imp);
KL_API void kl_cal_chain_encode(kl_buf_t *b, const kl_cal_chain_t *c);
/* Each link's sibling is written from sib_bytes as element `kind` (0x02 imprint, 0x03 legacy
 * id, 0x04 metadata value), so a decoded chain re-encodes to equivalent bytes. */
KL_API void kl_aggr_chain_encode(kl_buf_t *b, const kl_aggr_chain_t *c);

#ifdef __cplusplus
}
#endif
#endif
