/* PDU v2 encoder: canonical TLVs in the order libksi writes them, header first, HMAC last
 * (computed over the serialised PDU with a zeroed digest, then patched in).
 *
 * The writer checks what the parser would reject, so that whatever it produces parses:
 * payload kinds match the PDU type, single elements appear once, an unsigned PDU carries only
 * an error, and the whole PDU fits one TLV16. Raw parts (signature parts, calendar chains) are
 * copied verbatim after a framing and type check; their content is the caller's. */
#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"

/* kl_err_wrap that returns the failing call's own code, whatever e holds. */
#define WRAP(rc, e, ...) (kl_err_wrap((e), __VA_ARGS__), (rc))

static bool is_request(uint16_t type) { return type == KL_PDU_AGGR_REQ || type == KL_PDU_EXT_REQ; }

static bool error_only(const kl_pdu_writer_t *w) {
  return w->has_error && w->n_payload == 0 && !w->has_config;
}

static int fail(kl_pdu_writer_t *w, int code) {
  w->failed = true;
  return code;
}

/* Common entry check of every add/finish. */
static int ready(kl_pdu_writer_t *w, const char *what, kl_err_t *e) {
  if (w == NULL) return kl_err_set(e, KL_EINVAL, "%s: NULL writer", what);
  if (w->done) return kl_err_set(e, KL_ESTATE, "%s: the PDU writer is already finished", what);
  if (w->failed)
    return kl_err_set(e, KL_ESTATE, "%s: the PDU writer failed earlier and cannot be used", what);
  return 0;
}

static int need_type(kl_pdu_writer_t *w, uint16_t want, const char *what, kl_err_t *e) {
  if (w->type == want) return 0;
  return fail(w, kl_err_set(e, KL_EINVAL, "%s does not belong in a PDU of type 0x%X", what, w->type));
}

/* Writers that remember when an element would not fit in a TLV. */
static void put_str(kl_pdu_writer_t *w, uint16_t type, const char *s) {
  if (strlen(s) >= KL_TLV_MAX_LEN) {
    w->too_big = true;
    w->buf.oom = true;
    return;
  }
  kl_tlv_put_str(&w->buf, type, 0, s);
}

static void put_raw(kl_pdu_writer_t *w, const uint8_t *p, size_t n) {
  if (n > KL_TLV_MAX_SIZE) {
    w->too_big = true;
    w->buf.oom = true;
    return;
  }
  kl_buf_put(&w->buf, p, n);
}

static void close_el(kl_pdu_writer_t *w, size_t mark, uint16_t type) {
  if (kl_tlv_close(&w->buf, mark, type, 0) == KL_ETOOBIG) w->too_big = true;
}

/* After an element: the buffer is healthy and the PDU's value still fits 65,535 bytes. */
static int check(kl_pdu_writer_t *w, const char *what, kl_err_t *e) {
  if (!w->buf.oom && !w->too_big && w->buf.len - w->mark - 4 <= KL_TLV_MAX_LEN) return 0;
  if (w->buf.oom && !w->too_big) return fail(w, kl_err_set(e, KL_ENOMEM, "%s: out of memory", what));
  return fail(w, kl_err_set(e, KL_ETOOBIG, "%s: the PDU would exceed %d bytes", what, KL_PDU_MAX_SIZE));
}

/* Checks that [p, p+n) is one whole TLV of a type in [lo, hi]; *type gets the type. */
static int raw_type(const uint8_t *p, size_t n, uint16_t lo, uint16_t hi, const char *what,
                    uint16_t *type, kl_err_t *e) {
  int rc;
  kl_tlv_t t;
  if (p == NULL) return kl_err_set(e, KL_EINVAL, "%s: NULL bytes", what);
  if (n > KL_TLV_MAX_SIZE) return kl_err_set(e, KL_ETOOBIG, "%s: %zu bytes is more than one TLV", what, n);
  if ((rc = kl_tlv_parse_one(p, n, &t, e))) return WRAP(rc, e, "%s", what);
  if (t.type < lo || t.type > hi)
    return kl_err_set(e, KL_EINVAL, "%s: element type 0x%X, expected 0x%X..0x%X", what, t.type, lo, hi);
  *type = t.type;
  return 0;
}

int kl_pdu_writer_begin(kl_pdu_writer_t *w, uint16_t type, const kl_pdu_header_t *hdr, kl_err_t *e) {
  return kl_pdu_writer_begin_sized(w, type, hdr, 0, e);
}

int kl_pdu_writer_begin_sized(kl_pdu_writer_t *w, uint16_t type, const kl_pdu_header_t *hdr, size_t cap,
                              kl_err_t *e) {
  if (w == NULL) return kl_err_set(e, KL_EINVAL, "kl_pdu_writer_begin: NULL writer");
  memset(w, 0, sizeof *w);
  kl_buf_init(&w->buf);
  if (cap) kl_buf_reserve(&w->buf, cap); /* a failure poisons the buffer: check() reports it */
  w->type = type;
  if (kl_pdu_service(type) == 0)
    return fail(w, kl_err_set(e, KL_EINVAL, "PDU type 0x%X is not 0x220, 0x221, 0x320 or 0x321", type));
  if (hdr == NULL && is_request(type))
    return fail(w, kl_err_set(e, KL_EINVAL, "a request PDU needs a header"));
  if (hdr != NULL && hdr->login_id == NULL)
    return fail(w, kl_err_set(e, KL_EINVAL, "PDU header: login id is mandatory"));
  w->mark = kl_tlv_open(&w->buf);
  if (hdr != NULL) {
    size_t m = kl_tlv_open(&w->buf);
    put_str(w, 0x01, hdr->login_id);
    if (hdr->has_instance_id) kl_tlv_put_uint(&w->buf, 0x02, 0, hdr->instance_id);
    if (hdr->has_message_id) kl_tlv_put_uint(&w->buf, 0x03, 0, hdr->message_id);
    close_el(w, m, KL_PDU_T_HEADER);
    w->has_header = true;
  }
  return check(w, "PDU header", e);
}

int kl_pdu_add_aggr_req(kl_pdu_writer_t *w, const kl_pdu_aggr_req_t *r, kl_err_t *e) {
  static const char what[] = "aggregation request";
  int rc;
  if ((rc = ready(w, what, e)) || (rc = need_type(w, KL_PDU_AGGR_REQ, what, e))) return rc;
  if (r == NULL) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL", what));
  if (!kl_hash_known(r->hash.alg) || r->hash.len != kl_hash_digest_len(r->hash.alg))
    return fail(w, kl_err_set(e, KL_EHASHALG, "%s %llu: request hash has algorithm 0x%02X and %u digest bytes",
                              what, (unsigned long long)r->request_id, r->hash.alg, r->hash.len));
  if (r->has_level && r->level > 255)
    return fail(w, kl_err_set(e, KL_ERANGE, "%s %llu: level %llu is over 255", what,
                              (unsigned long long)r->request_id, (unsigned long long)r->level));
  size_t m = kl_tlv_open(&w->buf);
  kl_tlv_put_uint(&w->buf, 0x01, 0, r->request_id);
  kl_imprint_encode(&w->buf, 0x02, &r->hash);
  if (r->has_level) kl_tlv_put_uint(&w->buf, 0x03, 0, r->level);
  close_el(w, m, KL_PDU_T_PAYLOAD);
  w->n_payload++;
  return check(w, what, e);
}

int kl_pdu_add_aggr_resp(kl_pdu_writer_t *w, const kl_pdu_aggr_resp_t *r, kl_err_t *e) {
  static const char what[] = "aggregation response";
  int rc;
  unsigned seen = 0;
  if ((rc = ready(w, what, e)) || (rc = need_type(w, KL_PDU_AGGR_RESP, what, e))) return rc;
  if (r == NULL || (r->parts == NULL && r->n_parts != 0)) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL", what));
  for (size_t i = 0; i < r->n_parts; i++) {
    uint16_t t = 0;
    if ((rc = raw_type(r->parts[i].raw, r->parts[i].len, KL_T_AGGR_CHAIN, KL_T_RFC3161, "signature part", &t, e)))
      return fail(w, WRAP(rc, e, "%s %llu: part %zu", what, (unsigned long long)r->request_id, i + 1));
    if (t == KL_T_AGGR_CHAIN) continue;
    if (seen & (1u << (t - 0x800)))
      return fail(w, kl_err_set(e, KL_EINVAL, "%s %llu: part %zu repeats element 0x%X", what,
                                (unsigned long long)r->request_id, i + 1, t));
    seen |= 1u << (t - 0x800);
  }
  size_t m = kl_tlv_open(&w->buf);
  kl_tlv_put_uint(&w->buf, 0x01, 0, r->request_id);
  if (r->has_status) kl_tlv_put_uint(&w->buf, 0x04, 0, r->status);
  if (r->error_msg != NULL) put_str(w, 0x05, r->error_msg);
  for (size_t i = 0; i < r->n_parts; i++) put_raw(w, r->parts[i].raw, r->parts[i].len);
  close_el(w, m, KL_PDU_T_PAYLOAD);
  w->n_payload++;
  return check(w, what, e);
}

int kl_pdu_add_aggr_resp_runs(kl_pdu_writer_t *w, uint64_t request_id, uint64_t status, const char *error_msg,
                              const uint8_t *const *runs, const size_t *lens, size_t n_runs, kl_err_t *e) {
  static const char what[] = "aggregation response";
  int rc;
  unsigned seen = 0;
  size_t total = 0;
  if ((rc = ready(w, what, e)) || (rc = need_type(w, KL_PDU_AGGR_RESP, what, e))) return rc;
  if (runs == NULL && n_runs != 0) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL", what));
  for (size_t i = 0; i < n_runs; i++) { /* whole TLVs, signature parts, no element but 0x801 twice */
    kl_tlv_iter_t it;
    kl_tlv_t t;
    if (runs[i] == NULL && lens[i] != 0) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL run", what));
    kl_tlv_iter_init(&it, runs[i], runs[i], lens[i]);
    while ((rc = kl_tlv_next(&it, &t, e)) == 1) {
      if (t.type < KL_T_AGGR_CHAIN || t.type > KL_T_RFC3161)
        return fail(w, kl_err_set(e, KL_EINVAL, "%s %llu: element type 0x%X is not a signature part", what,
                                  (unsigned long long)request_id, t.type));
      if (t.type == KL_T_AGGR_CHAIN) continue;
      if (seen & (1u << (t.type - 0x800)))
        return fail(w, kl_err_set(e, KL_EINVAL, "%s %llu: element 0x%X repeats", what, (unsigned long long)request_id,
                                  t.type));
      seen |= 1u << (t.type - 0x800);
    }
    if (rc < 0) return fail(w, WRAP(rc, e, "%s %llu: signature parts", what, (unsigned long long)request_id));
    total += lens[i];
  }
  if (total > KL_TLV_MAX_LEN) {
    w->too_big = true;
    return check(w, what, e);
  }
  size_t m = kl_tlv_open(&w->buf);
  kl_tlv_put_uint(&w->buf, 0x01, 0, request_id);
  kl_tlv_put_uint(&w->buf, 0x04, 0, status);
  if (error_msg != NULL) put_str(w, 0x05, error_msg);
  for (size_t i = 0; i < n_runs; i++) kl_buf_put(&w->buf, runs[i], lens[i]);
  close_el(w, m, KL_PDU_T_PAYLOAD);
  w->n_payload++;
  return check(w, what, e);
}

int kl_pdu_add_ext_req(kl_pdu_writer_t *w, const kl_pdu_ext_req_t *r, kl_err_t *e) {
  static const char what[] = "extension request";
  int rc;
  if ((rc = ready(w, what, e)) || (rc = need_type(w, KL_PDU_EXT_REQ, what, e))) return rc;
  if (r == NULL) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL", what));
  size_t m = kl_tlv_open(&w->buf);
  kl_tlv_put_uint(&w->buf, 0x01, 0, r->request_id);
  kl_tlv_put_uint(&w->buf, 0x02, 0, r->aggr_time);
  if (r->has_pub_time) kl_tlv_put_uint(&w->buf, 0x03, 0, r->pub_time);
  close_el(w, m, KL_PDU_T_PAYLOAD);
  w->n_payload++;
  return check(w, what, e);
}

int kl_pdu_add_ext_resp(kl_pdu_writer_t *w, const kl_pdu_ext_resp_t *r, kl_err_t *e) {
  static const char what[] = "extension response";
  int rc;
  if ((rc = ready(w, what, e)) || (rc = need_type(w, KL_PDU_EXT_RESP, what, e))) return rc;
  if (r == NULL) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL", what));
  uint16_t t;
  if (r->cal_raw != NULL &&
      (rc = raw_type(r->cal_raw, r->cal_raw_len, KL_T_CAL_CHAIN, KL_T_CAL_CHAIN, "calendar chain", &t, e)))
    return fail(w, WRAP(rc, e, "%s %llu", what, (unsigned long long)r->request_id));
  size_t m = kl_tlv_open(&w->buf);
  kl_tlv_put_uint(&w->buf, 0x01, 0, r->request_id);
  kl_tlv_put_uint(&w->buf, 0x04, 0, r->status);
  if (r->error_msg != NULL) put_str(w, 0x05, r->error_msg);
  if (r->has_cal_last) kl_tlv_put_uint(&w->buf, 0x12, 0, r->cal_last);
  if (r->cal_raw != NULL) put_raw(w, r->cal_raw, r->cal_raw_len);
  else if (r->cal != NULL) kl_cal_chain_encode(&w->buf, r->cal);
  close_el(w, m, KL_PDU_T_PAYLOAD);
  w->n_payload++;
  return check(w, what, e);
}

int kl_pdu_add_error(kl_pdu_writer_t *w, uint64_t status, const char *message, kl_err_t *e) {
  static const char what[] = "PDU error element";
  int rc;
  if ((rc = ready(w, what, e))) return rc;
  if (is_request(w->type)) return fail(w, kl_err_set(e, KL_EINVAL, "%s does not belong in a request PDU", what));
  if (w->has_error) return fail(w, kl_err_set(e, KL_EINVAL, "%s: a PDU carries at most one", what));
  size_t m = kl_tlv_open(&w->buf);
  kl_tlv_put_uint(&w->buf, 0x04, 0, status);
  if (message != NULL) put_str(w, 0x05, message);
  close_el(w, m, KL_PDU_T_ERROR);
  w->has_error = true;
  return check(w, what, e);
}

int kl_pdu_add_config_req(kl_pdu_writer_t *w, kl_err_t *e) {
  static const char what[] = "configuration request";
  int rc;
  if ((rc = ready(w, what, e))) return rc;
  if (!is_request(w->type)) return fail(w, kl_err_set(e, KL_EINVAL, "%s does not belong in a response PDU", what));
  if (w->has_config) return fail(w, kl_err_set(e, KL_EINVAL, "%s: a PDU carries at most one", what));
  kl_tlv_put_header(&w->buf, KL_PDU_T_CONFIG, 0, 0);
  w->has_config = true;
  return check(w, what, e);
}

int kl_pdu_add_config(kl_pdu_writer_t *w, const kl_pdu_config_t *c, kl_err_t *e) {
  static const char what[] = "configuration";
  int rc;
  if ((rc = ready(w, what, e))) return rc;
  if (is_request(w->type)) return fail(w, kl_err_set(e, KL_EINVAL, "%s does not belong in a request PDU (use kl_pdu_add_config_req)", what));
  if (w->has_config) return fail(w, kl_err_set(e, KL_EINVAL, "%s: a PDU carries at most one", what));
  if (c == NULL || (c->parent_uris == NULL && c->n_parent_uris != 0)) return fail(w, kl_err_set(e, KL_EINVAL, "%s: NULL", what));
  const bool aggr = kl_pdu_service(w->type) == KL_PDU_SVC_AGGR;
  if (aggr && (c->has_cal_first || c->has_cal_last))
    return fail(w, kl_err_set(e, KL_EINVAL, "%s: calendar first/last times belong to the extender", what));
  if (!aggr && (c->has_max_level || c->has_aggr_algo || c->has_aggr_period))
    return fail(w, kl_err_set(e, KL_EINVAL, "%s: level, algorithm and period belong to the aggregator", what));
  for (size_t i = 0; i < c->n_parent_uris; i++)
    if (c->parent_uris[i] == NULL) return fail(w, kl_err_set(e, KL_EINVAL, "%s: parent URI %zu is NULL", what, i + 1));
  size_t m = kl_tlv_open(&w->buf);
  if (c->has_max_level) kl_tlv_put_uint(&w->buf, 0x01, 0, c->max_level);
  if (c->has_aggr_algo) kl_tlv_put_uint(&w->buf, 0x02, 0, c->aggr_algo);
  if (c->has_aggr_period) kl_tlv_put_uint(&w->buf, 0x03, 0, c->aggr_period);
  if (c->has_max_requests) kl_tlv_put_uint(&w->buf, 0x04, 0, c->max_requests);
  for (size_t i = 0; i < c->n_parent_uris; i++) put_str(w, 0x10, c->parent_uris[i]);
  if (c->has_cal_first) kl_tlv_put_uint(&w->buf, 0x11, 0, c->cal_first);
  if (c->has_cal_last) kl_tlv_put_uint(&w->buf, 0x12, 0, c->cal_last);
  close_el(w, m, KL_PDU_T_CONFIG);
  w->has_config = true;
  return check(w, what, e);
}


/* Appends the HMAC element with a zeroed digest, closes the PDU, computes and patches. */
static int sign(kl_pdu_writer_t *w, int alg, const void *key, size_t keylen, uint8_t **out,
                size_t *len, kl_err_t *e) {
  static const uint8_t zero[KL_HASH_MAX_DIGEST];
  int rc;
  if (!w->has_header && !error_only(w))
    return fail(w, kl_err_set(e, KL_EINVAL, "PDU has no header: only an error-only response may lack it"));
  if (!kl_hash_trusted(alg))
    return fail(w, kl_err_set(e, KL_EHASHALG, "HMAC algorithm 0x%02X is unknown or not trusted", (unsigned)alg));
  const size_t dlen = kl_hash_digest_len(alg);
  kl_tlv_put_header(&w->buf, KL_PDU_T_HMAC, 0, 1 + dlen);
  kl_buf_put_u8(&w->buf, (uint8_t)alg);
  kl_buf_put(&w->buf, zero, dlen);
  close_el(w, w->mark, w->type);
  if ((rc = check(w, "PDU", e))) return rc;
  kl_imprint_t mac;
  if ((rc = kl_hmac(alg, key, keylen, w->buf.p, w->buf.len - dlen, &mac, e)))
    return fail(w, WRAP(rc, e, "PDU HMAC"));
  memcpy(w->buf.p + w->buf.len - dlen, mac.digest, dlen);
  w->done = true;
  *out = kl_buf_steal(&w->buf, len);
  return 0;
}

int kl_pdu_writer_finish(kl_pdu_writer_t *w, int hmac_alg, const void *key, size_t keylen,
                         uint8_t **out, size_t *len, kl_err_t *e) {
  int rc;
  if (out == NULL || len == NULL || (key == NULL && keylen != 0)) {
    rc = kl_err_set(e, KL_EINVAL, "kl_pdu_writer_finish: NULL argument");
  } else {
    *out = NULL;
    *len = 0;
    if ((rc = ready(w, "PDU", e)) == 0) rc = sign(w, hmac_alg, key, keylen, out, len, e);
  }
  kl_pdu_writer_free(w);
  return rc;
}

int kl_pdu_writer_finish_unsigned(kl_pdu_writer_t *w, uint8_t **out, size_t *len, kl_err_t *e) {
  int rc;
  if (out == NULL || len == NULL) {
    kl_pdu_writer_free(w);
    return kl_err_set(e, KL_EINVAL, "kl_pdu_writer_finish_unsigned: NULL argument");
  }
  *out = NULL;
  *len = 0;
  if ((rc = ready(w, "PDU", e)) == 0) {
    if (!error_only(w))
      rc = kl_err_set(e, KL_EINVAL, "PDU without an HMAC may carry only an error element");
    else {
      close_el(w, w->mark, w->type);
      if ((rc = check(w, "PDU", e)) == 0) {
        w->done = true;
        *out = kl_buf_steal(&w->buf, len);
      }
    }
  }
  kl_pdu_writer_free(w);
  return rc;
}

void kl_pdu_writer_free(kl_pdu_writer_t *w) {
  if (w == NULL) return;
  kl_buf_free(&w->buf);
  w->failed = !w->done;
}
