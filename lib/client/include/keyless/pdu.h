/* keyless: the KSI PDU v2 wire protocol (KSI-FORMAT.md §7): aggregation 0x220/0x221,
 * extension 0x320/0x321, their header, HMAC and status codes.
 *
 * Decoding. kl_pdu_parse() copies the input into a kl_pdu_t; every pointer in it (strings,
 * raw element bytes, parsed chains) points into that copy or into the object's arena and is
 * valid until kl_pdu_free(). Offsets in error messages count from the first byte of the PDU.
 * The parser checks structure only: framing, one PDU of at most 65,539 bytes, header first,
 * HMAC last, known elements well formed, unknown critical elements rejected (non-critical ones
 * skipped), header and HMAC present unless the PDU carries only an error element (0x03).
 * Authenticity is checked separately with kl_pdu_check_hmac(); request ids and statuses are
 * the caller's business.
 *
 * Encoding. A kl_pdu_writer_t builds one PDU in canonical form:
 *
 *   kl_pdu_writer_t w;
 *   kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr, e);       header first
 *   kl_pdu_add_aggr_req(&w, &req, e);  ...                   payload elements, in call order
 *   kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, keylen, &bytes, &len, e);   HMAC last
 *   ... send bytes ...; free(bytes);
 *
 * Every add copies what it is given, so arguments may be freed as soon as the call returns.
 * The first failure poisons the writer: later calls return KL_ESTATE and finish gives nothing.
 * kl_pdu_writer_free() releases a writer that is abandoned (harmless after finish). The writer
 * refuses to build what the parser would reject (wrong payload for the PDU type, an unsigned
 * PDU that is not error-only, more than 65,539 bytes).
 *
 * Threads: no global state; a kl_pdu_t may be read from several threads, a writer belongs to
 * one. Memory: as above; bytes from kl_pdu_writer_finish are the caller's (free()).
 */
#ifndef KEYLESS_PDU_H
#define KEYLESS_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PDU types (the outer TLV16). */
enum {
  KL_PDU_AGGR_REQ = 0x220,
  KL_PDU_AGGR_RESP = 0x221,
  KL_PDU_EXT_REQ = 0x320,
  KL_PDU_EXT_RESP = 0x321,
};

/* Children of a PDU. KL_PDU_T_PAYLOAD is aggr_req, aggr_resp, ext_req or ext_resp by PDU type. */
enum {
  KL_PDU_T_HEADER = 0x01,
  KL_PDU_T_PAYLOAD = 0x02,
  KL_PDU_T_ERROR = 0x03,  /* responses only */
  KL_PDU_T_CONFIG = 0x04, /* empty in requests: "send me the configuration" */
  KL_PDU_T_ACK = 0x05,    /* aggregation only (async clients); recognised, not interpreted */
  KL_PDU_T_HMAC = 0x1F,
};

#define KL_PDU_MAX_SIZE KL_TLV_MAX_SIZE /* 65,539 bytes: one TLV16 */

/* Status codes (KSI-FORMAT.md §7.4), found in a response payload's or error element's 0x04.
 * 0x104..0x107 and 0x201/0x202 mean different things to an aggregator and an extender. */
enum {
  KL_STATUS_OK = 0x0000,
  KL_STATUS_INVALID_REQUEST = 0x0101,
  KL_STATUS_AUTH_FAILURE = 0x0102,
  KL_STATUS_INVALID_PAYLOAD = 0x0103,
  KL_STATUS_AGGR_REQUEST_TOO_LARGE = 0x0104,
  KL_STATUS_AGGR_OVER_QUOTA = 0x0105,
  KL_STATUS_AGGR_TOO_MANY_REQUESTS = 0x0106,
  KL_STATUS_AGGR_INPUT_TOO_LONG = 0x0107,
  KL_STATUS_EXT_INVALID_TIME_RANGE = 0x0104,
  KL_STATUS_EXT_TIME_TOO_OLD = 0x0105,
  KL_STATUS_EXT_TIME_TOO_NEW = 0x0106,      /* beyond the calendar's last time */
  KL_STATUS_EXT_TIME_IN_FUTURE = 0x0107,
  KL_STATUS_INTERNAL_ERROR = 0x0200,
  KL_STATUS_EXT_DB_MISSING = 0x0201,
  KL_STATUS_EXT_DB_CORRUPT = 0x0202,
  KL_STATUS_UPSTREAM_ERROR = 0x0300,
  KL_STATUS_UPSTREAM_TIMEOUT = 0x0301,
};

/* Whether p starts like a KSI PDU of any version (a TLV16 header of 0x200, 0x220, 0x221, 0x300,
 * 0x320 or 0x321), whatever follows: a service that cannot parse it tells garbage (close the
 * stream) from a broken PDU (answer with an error PDU). */
KL_API bool kl_pdu_looks_like(const uint8_t *p, size_t n);

/* Which service's meaning a status code has. */
enum { KL_PDU_SVC_AGGR = 1, KL_PDU_SVC_EXT = 2 };

/* The KSI status name of a code for KL_PDU_SVC_AGGR or KL_PDU_SVC_EXT, worded as libksi does;
 * never NULL ("Unknown service error" for codes the table does not have). */
KL_API const char *kl_pdu_status_text(int service, uint64_t status);
/* "TEXT: msg" for a status and the message that came with it (msg may be NULL), or just TEXT
 * when msg is absent or only repeats it; written to buf (n bytes), which is returned. */
KL_API const char *kl_pdu_status_msg(int service, uint64_t status, const char *msg, char *buf, size_t n);
/* The keyless error a status maps to: 0 for OK, KL_EAUTH for an authentication failure,
 * KL_ESERVICE for everything else. */
KL_API int kl_pdu_status_err(uint64_t status);
/* KL_PDU_SVC_AGGR for 0x220/0x221, KL_PDU_SVC_EXT for 0x320/0x321, 0 otherwise. */
KL_API int kl_pdu_service(uint16_t pdu_type);

/* ---- parsed (and to-be-encoded) parts ---- */

typedef struct kl_pdu_header {
  const char *login_id; /* mandatory */
  bool has_instance_id, has_message_id;
  uint64_t instance_id, message_id;
} kl_pdu_header_t;

typedef struct kl_pdu_aggr_req {
  uint64_t request_id;
  kl_imprint_t hash;
  bool has_level;
  uint64_t level; /* as sent (UINT64_MAX for a longer integer): the service checks the range */
  size_t offset;  /* parser only */
  /* Parser only. Nonzero: this request is identified (its id parsed) but one of its fields is
   * unusable (missing hash, unknown algorithm, a bad or unknown critical element). The PDU is
   * still valid; the service answers this request alone with this status and `why`. */
  uint64_t refused;
  char why[120];
} kl_pdu_aggr_req_t;

/* One signature part of an aggregation response: a whole 0x801..0x806 TLV, header included.
 * Concatenated in order inside a 0x800 they make the signature (kl_pdu_aggr_resp_sig). */
typedef struct kl_pdu_part {
  uint16_t type; /* set by the parser; the writer reads the type from raw */
  const uint8_t *raw;
  size_t len;
} kl_pdu_part_t;

typedef struct kl_pdu_aggr_resp {
  uint64_t request_id;
  bool has_status;
  uint64_t status;       /* KL_STATUS_OK when absent */
  const char *error_msg; /* NULL if absent */
  kl_pdu_part_t *parts;  /* in the order found / to write */
  size_t n_parts;
  /* Parser only (the writer ignores them): the parts decoded. */
  kl_aggr_chain_t *chains; /* 0x801, in the order found */
  size_t n_chains;
  kl_cal_chain_t *cal; /* 0x802, NULL if absent */
  size_t offset;
} kl_pdu_aggr_resp_t;

typedef struct kl_pdu_ext_req {
  uint64_t request_id;
  uint64_t aggr_time; /* the signing time */
  bool has_pub_time;  /* absent: extend to the calendar head */
  uint64_t pub_time;
  size_t offset; /* parser only */
  uint64_t refused; /* parser only: as in kl_pdu_aggr_req_t */
  char why[120];
} kl_pdu_ext_req_t;

typedef struct kl_pdu_ext_resp {
  uint64_t request_id;
  uint64_t status;       /* mandatory in the PDU */
  const char *error_msg; /* NULL if absent */
  bool has_cal_last;
  uint64_t cal_last;
  /* The calendar chain: cal_raw is the whole 0x802 TLV (NULL/0 if absent). The parser sets
   * both; the writer copies cal_raw if set, else encodes cal (if non-NULL) canonically. */
  const uint8_t *cal_raw;
  size_t cal_raw_len;
  kl_cal_chain_t *cal;
  size_t offset; /* parser only */
} kl_pdu_ext_resp_t;

typedef struct kl_pdu_error {
  uint64_t status;     /* mandatory */
  const char *message; /* NULL if absent */
} kl_pdu_error_t;

/* Configuration (0x04 in a response). Aggregator: max_level, aggr_algo, aggr_period (ms),
 * max_requests, parent URIs. Extender: max_requests, parent URIs, cal_first, cal_last. */
typedef struct kl_pdu_config {
  bool has_max_level, has_aggr_algo, has_aggr_period, has_max_requests, has_cal_first,
      has_cal_last;
  uint64_t max_level, aggr_algo, aggr_period, max_requests, cal_first, cal_last;
  const char **parent_uris;
  size_t n_parent_uris;
} kl_pdu_config_t;

typedef struct kl_pdu {
  kl_arena_t arena;
  uint8_t *raw; /* the whole PDU */
  size_t raw_len;
  uint16_t type; /* KL_PDU_AGGR_REQ ... KL_PDU_EXT_RESP */
  kl_pdu_header_t *header; /* NULL if absent (error-only PDUs) */
  /* Payload: only the array matching the type is used. */
  kl_pdu_aggr_req_t *aggr_reqs;
  size_t n_aggr_reqs;
  kl_pdu_aggr_resp_t *aggr_resps;
  size_t n_aggr_resps;
  kl_pdu_ext_req_t *ext_reqs;
  size_t n_ext_reqs;
  kl_pdu_ext_resp_t *ext_resps;
  size_t n_ext_resps;
  kl_pdu_error_t *error; /* PDU-level error (0x03), NULL if absent */
  /* Requests: non-NULL (all fields absent) when the configuration is asked for.
   * Responses: the configuration sent, NULL if absent. */
  kl_pdu_config_t *config;
  bool has_ack; /* an 0x05 ack (request) element was present; not interpreted */
  bool has_hmac;
  kl_imprint_t hmac;  /* as found in the PDU */
  size_t hmac_offset; /* of the digest (after the algorithm byte); it runs to the end */
} kl_pdu_t;

/* ---- decoding ---- */

/* Parses one PDU (exactly one TLV of at most 65,539 bytes). On failure *out is NULL and e
 * names the element and offset. Caller frees with kl_pdu_free. */
KL_API int kl_pdu_parse(const uint8_t *p, size_t n, kl_pdu_t **out, kl_err_t *e);
KL_API void kl_pdu_free(kl_pdu_t *pdu);
/* The PDU's bytes; valid until kl_pdu_free. */
KL_API const uint8_t *kl_pdu_bytes(const kl_pdu_t *pdu, size_t *len);

/* Checks the HMAC: HMAC_alg(key, bytes[0 : len - digest_len]) with alg from the PDU's HMAC
 * imprint. KL_EHMAC when it differs or the PDU has none (an error-only PDU may lack it: a
 * client decides whether to accept pdu->error unauthenticated); KL_EHASHALG when the
 * algorithm is not trusted for HMAC (SHA-1) or not available. */
KL_API int kl_pdu_check_hmac(const kl_pdu_t *pdu, const void *key, size_t keylen, kl_err_t *e);
/* The same, and the PDU must use algorithm alg (a client expects the one it sent):
 * KL_EHMAC "HMAC algorithm mismatch" otherwise. */
KL_API int kl_pdu_check_hmac_alg(const kl_pdu_t *pdu, int alg, const void *key, size_t keylen,
                                 kl_err_t *e);

/* Writes a signature (one 0x800 TLV) made of the response's parts, in order, to out
 * (appended). The result still has to go through kl_sig_parse and verification. */
KL_API int kl_pdu_aggr_resp_sig(const kl_pdu_aggr_resp_t *r, kl_buf_t *out, kl_err_t *e);

/* ---- encoding ---- */

typedef struct kl_pdu_writer {
  kl_buf_t buf; /* private from here on */
  size_t mark;
  uint16_t type;
  bool has_header, has_error, has_config, failed, done, too_big;
  size_t n_payload;
} kl_pdu_writer_t;

/* Starts a PDU of the given type. hdr (login_id mandatory) is written first; NULL means no
 * header, allowed only for a response that ends up carrying only an error element. */
KL_API int kl_pdu_writer_begin(kl_pdu_writer_t *w, uint16_t type, const kl_pdu_header_t *hdr,
                               kl_err_t *e);
/* The same, with room for cap bytes reserved at once (one allocation for a PDU whose size the
 * caller knows, not a small one grown by realloc). */
KL_API int kl_pdu_writer_begin_sized(kl_pdu_writer_t *w, uint16_t type, const kl_pdu_header_t *hdr,
                                     size_t cap, kl_err_t *e);
/* Payload elements; each must match the PDU type. */
KL_API int kl_pdu_add_aggr_req(kl_pdu_writer_t *w, const kl_pdu_aggr_req_t *r, kl_err_t *e);
KL_API int kl_pdu_add_aggr_resp(kl_pdu_writer_t *w, const kl_pdu_aggr_resp_t *r, kl_err_t *e);
/* The same with the signature parts given as runs of whole TLVs, copied verbatim (e.g. a
 * request's own 0x801, then the parts its round shares with every other request), after a check
 * of each run's framing: whole TLVs of types 0x801..0x806, no element but 0x801 twice. The
 * status is always written. */
KL_API int kl_pdu_add_aggr_resp_runs(kl_pdu_writer_t *w, uint64_t request_id, uint64_t status, const char *error_msg,
                                     const uint8_t *const *runs, const size_t *lens, size_t n_runs, kl_err_t *e);
KL_API int kl_pdu_add_ext_req(kl_pdu_writer_t *w, const kl_pdu_ext_req_t *r, kl_err_t *e);
KL_API int kl_pdu_add_ext_resp(kl_pdu_writer_t *w, const kl_pdu_ext_resp_t *r, kl_err_t *e);
/* PDU-level error (responses; at most one). message may be NULL. */
KL_API int kl_pdu_add_error(kl_pdu_writer_t *w, uint64_t status, const char *message, kl_err_t *e);
/* Empty configuration request (requests; at most one). */
KL_API int kl_pdu_add_config_req(kl_pdu_writer_t *w, kl_err_t *e);
/* Configuration (responses; at most one). Only the fields the service has may be set. */
KL_API int kl_pdu_add_config(kl_pdu_writer_t *w, const kl_pdu_config_t *c, kl_err_t *e);

/* Appends the HMAC (algorithm hmac_alg, trusted ones only), computed over the serialised PDU
 * with a zeroed digest and then patched in. *out gets the bytes (caller frees with free()),
 * *len their count. The writer is released either way. */
KL_API int kl_pdu_writer_finish(kl_pdu_writer_t *w, int hmac_alg, const void *key, size_t keylen,
                                uint8_t **out, size_t *len, kl_err_t *e);
/* Finishes without an HMAC: only for a response that carries only an error element. */
KL_API int kl_pdu_writer_finish_unsigned(kl_pdu_writer_t *w, uint8_t **out, size_t *len,
                                         kl_err_t *e);
KL_API void kl_pdu_writer_free(kl_pdu_writer_t *w);

#ifdef __cplusplus
}
#endif
#endif
