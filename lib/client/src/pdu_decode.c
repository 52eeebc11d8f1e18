/* PDU v2 decoder (KSI-FORMAT.md §7): envelope rules, header, the four payload kinds, error,
 * configuration, HMAC position. Authenticity is checked in pdu.c. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"

#include "arena_internal.h"

/* kl_err_wrap that returns the failing call's own code, whatever e holds. */
#define WRAP(rc, e, ...) (kl_err_wrap((e), __VA_ARGS__), (rc))

/* Reads an INT child that may appear once. */
static int uint_once(const kl_tlv_t *c, bool *seen, uint64_t *out, const char *where,
                     const char *what, kl_err_t *e) {
  int rc;
  if (*seen) return kl_tlv_err_dup(c, where, e);
  *seen = true;
  if ((rc = kl_tlv_get_uint(c, out, e))) return WRAP(rc, e, "%s", what);
  return 0;
}

static int str_once(const kl_tlv_t *c, const char **out, const char *where, const char *what,
                    kl_err_t *e) {
  int rc;
  if (*out != NULL) return kl_tlv_err_dup(c, where, e);
  if ((rc = kl_tlv_get_str(c, out, e))) return WRAP(rc, e, "%s", what);
  return 0;
}

static int oom(kl_err_t *e) { return kl_err_set(e, KL_ENOMEM, "out of memory"); }

/* An empty error for a request's own field problems, without clearing its 512-byte message for
 * every request (= {0} did: a rep stos per request, issue 12). */
static void err_clear(kl_err_t *e) {
  e->code = 0;
  e->msg[0] = '\0';
}

static int missing(const kl_tlv_t *t, const char *where, const char *what, kl_err_t *e) {
  return kl_err_set(e, KL_EFORMAT, "%s at offset %zu lacks its %s", where, t->offset, what);
}

static int header_decode(const kl_tlv_t *t, const uint8_t *base, kl_pdu_header_t *h, kl_err_t *e) {
  static const char where[] = "PDU header";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, rc;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if ((rc = str_once(&c, &h->login_id, where, "login id", e))) return rc;
        break;
      case 0x02:
        if ((rc = uint_once(&c, &h->has_instance_id, &h->instance_id, where, "instance id", e))) return rc;
        break;
      case 0x03:
        if ((rc = uint_once(&c, &h->has_message_id, &h->message_id, where, "message id", e))) return rc;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, where, e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (h->login_id == NULL) return missing(t, where, "login id (0x01)", e);
  return 0;
}

/* A request's own field problem: the first one is kept and the request refused alone, so that
 * one bad field does not make the whole PDU malformed (KSI clients expect a per-request status). */
static void refuse_req(uint64_t *refused, char *why, size_t whylen, uint64_t status, const kl_err_t *e) {
  if (*refused) return;
  size_t n = strlen(e->msg);
  *refused = status;
  if (n >= whylen) n = whylen - 1; /* cut: the offsets and element numbers come first */
  memcpy(why, e->msg, n);
  why[n] = '\0';
}

/* An INT child of a request that may appear once; a repeat or a bad encoding refuses the
 * request (not the PDU). Returns false when the value could not be read. */
static bool req_uint(const kl_tlv_t *c, bool *seen, uint64_t *out, const char *where, const char *what,
                     uint64_t *refused, char *why, size_t whylen) {
  kl_err_t e;
  err_clear(&e);
  if (uint_once(c, seen, out, where, what, &e) == 0) return true;
  refuse_req(refused, why, whylen, KL_STATUS_INVALID_REQUEST, &e);
  return false;
}

static int aggr_req_decode(const kl_tlv_t *t, const uint8_t *base, kl_pdu_aggr_req_t *q, kl_err_t *e) {
  static const char where[] = "aggregation request";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  kl_err_t fe;
  int r, rc;
  bool seen_id = false, seen_hash = false;
  err_clear(&fe);
  q->offset = t->offset;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01: /* without a usable id the request cannot be answered: the PDU is malformed */
        if ((rc = uint_once(&c, &seen_id, &q->request_id, where, "request id", e))) return rc;
        break;
      case 0x02:
        if (seen_hash) {
          kl_tlv_err_dup(&c, where, &fe);
          refuse_req(&q->refused, q->why, sizeof q->why, KL_STATUS_INVALID_REQUEST, &fe);
          break;
        }
        seen_hash = true;
        if (kl_imprint_decode(&c, &q->hash, &fe)) {
          kl_err_wrap(&fe, "request hash");
          refuse_req(&q->refused, q->why, sizeof q->why, KL_STATUS_INVALID_REQUEST, &fe);
        }
        break;
      case 0x03:
        if (q->has_level == false && c.len > 8 && c.value[0] != 0) { /* a level no tree can have */
          q->has_level = true;
          q->level = UINT64_MAX;
          break;
        }
        req_uint(&c, &q->has_level, &q->level, where, "request level", &q->refused, q->why, sizeof q->why);
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) {
          kl_tlv_err_unknown(&c, where, &fe);
          refuse_req(&q->refused, q->why, sizeof q->why, KL_STATUS_INVALID_REQUEST, &fe);
        }
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_id) return missing(t, where, "request id (0x01)", e);
  if (!seen_hash) {
    missing(t, where, "request hash (0x02)", &fe);
    refuse_req(&q->refused, q->why, sizeof q->why, KL_STATUS_INVALID_REQUEST, &fe);
  }
  return 0;
}

/* A signature part (0x801..0x806) of an aggregation response: kept raw, chains also decoded. */
static int part_decode(const kl_tlv_t *c, const uint8_t *base, kl_arena_t *a, kl_pdu_aggr_resp_t *s,
                       unsigned *seen, kl_err_t *e) {
  int rc;
  static const char where[] = "aggregation response";
  if (c->type == KL_T_AGGR_CHAIN) {
    if ((rc = kl_aggr_chain_decode(c, base, a, &s->chains[s->n_chains], e)))
      return WRAP(rc, e, "aggregation hash chain %zu", s->n_chains + 1);
    s->n_chains++;
  } else {
    unsigned bit = 1u << (c->type - 0x800);
    if (*seen & bit) return kl_tlv_err_dup(c, where, e);
    *seen |= bit;
  }
  if (c->type == KL_T_CAL_CHAIN) {
    if ((s->cal = kl_arena_alloc(a, sizeof *s->cal)) == NULL) return oom(e);
    if ((rc = kl_cal_chain_decode(c, base, a, s->cal, e))) return WRAP(rc, e, "calendar hash chain");
  }
  s->parts[s->n_parts].type = c->type;
  s->parts[s->n_parts].raw = c->raw;
  s->parts[s->n_parts].len = c->raw_len;
  s->n_parts++;
  return 0;
}

static int aggr_resp_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *a,
                            kl_pdu_aggr_resp_t *s, kl_err_t *e) {
  static const char where[] = "aggregation response";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, rc;
  bool seen_id = false;
  unsigned seen_part = 0; /* bit (type - 0x800) for the parts that may appear once */
  size_t n_parts = 0, n_chains = 0;
  s->offset = t->offset;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    if (c.type >= KL_T_AGGR_CHAIN && c.type <= KL_T_RFC3161) n_parts++;
    if (c.type == KL_T_AGGR_CHAIN) n_chains++;
  }
  if (r < 0) return KL_EFORMAT;
  s->parts = kl_arena_alloc(a, (n_parts ? n_parts : 1) * sizeof *s->parts);
  s->chains = kl_arena_alloc(a, (n_chains ? n_chains : 1) * sizeof *s->chains);
  if (s->parts == NULL || s->chains == NULL) return oom(e);
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    if (c.type >= KL_T_AGGR_CHAIN && c.type <= KL_T_RFC3161) {
      if ((rc = part_decode(&c, base, a, s, &seen_part, e))) return rc;
      continue;
    }
    switch (c.type) {
      case 0x01:
        if ((rc = uint_once(&c, &seen_id, &s->request_id, where, "request id", e))) return rc;
        break;
      case 0x04:
        if ((rc = uint_once(&c, &s->has_status, &s->status, where, "status", e))) return rc;
        break;
      case 0x05:
        if ((rc = str_once(&c, &s->error_msg, where, "error message", e))) return rc;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, where, e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_id) return missing(t, where, "request id (0x01)", e);
  return 0;
}

static int ext_req_decode(const kl_tlv_t *t, const uint8_t *base, kl_pdu_ext_req_t *q, kl_err_t *e) {
  static const char where[] = "extension request";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  kl_err_t fe;
  int r, rc;
  bool seen_id = false, seen_time = false;
  err_clear(&fe);
  q->offset = t->offset;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if ((rc = uint_once(&c, &seen_id, &q->request_id, where, "request id", e))) return rc;
        break;
      case 0x02:
        req_uint(&c, &seen_time, &q->aggr_time, where, "aggregation time", &q->refused, q->why, sizeof q->why);
        break;
      case 0x03:
        req_uint(&c, &q->has_pub_time, &q->pub_time, where, "publication time", &q->refused, q->why,
                 sizeof q->why);
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) {
          kl_tlv_err_unknown(&c, where, &fe);
          refuse_req(&q->refused, q->why, sizeof q->why, KL_STATUS_INVALID_REQUEST, &fe);
        }
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_id) return missing(t, where, "request id (0x01)", e);
  if (!seen_time) {
    missing(t, where, "aggregation time (0x02)", &fe);
    refuse_req(&q->refused, q->why, sizeof q->why, KL_STATUS_INVALID_REQUEST, &fe);
  }
  return 0;
}

static int ext_resp_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *a,
                           kl_pdu_ext_resp_t *s, kl_err_t *e) {
  static const char where[] = "extension response";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, rc;
  bool seen_id = false, seen_status = false;
  s->offset = t->offset;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if ((rc = uint_once(&c, &seen_id, &s->request_id, where, "request id", e))) return rc;
        break;
      case 0x04:
        if ((rc = uint_once(&c, &seen_status, &s->status, where, "status", e))) return rc;
        break;
      case 0x05:
        if ((rc = str_once(&c, &s->error_msg, where, "error message", e))) return rc;
        break;
      case 0x12:
        if ((rc = uint_once(&c, &s->has_cal_last, &s->cal_last, where, "calendar last time", e))) return rc;
        break;
      case KL_T_CAL_CHAIN:
        if (s->cal != NULL) return kl_tlv_err_dup(&c, where, e);
        if ((s->cal = kl_arena_alloc(a, sizeof *s->cal)) == NULL) return oom(e);
        if ((rc = kl_cal_chain_decode(&c, base, a, s->cal, e))) return WRAP(rc, e, "calendar hash chain");
        s->cal_raw = c.raw;
        s->cal_raw_len = c.raw_len;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, where, e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_id) return missing(t, where, "request id (0x01)", e);
  if (!seen_status) return missing(t, where, "status (0x04)", e);
  return 0;
}

static int error_decode(const kl_tlv_t *t, const uint8_t *base, kl_pdu_error_t *er, kl_err_t *e) {
  static const char where[] = "PDU error element";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, rc;
  bool seen_status = false;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    if (c.type == 0x04) {
      if ((rc = uint_once(&c, &seen_status, &er->status, where, "status", e))) return rc;
    } else if (c.type == 0x05) {
      if ((rc = str_once(&c, &er->message, where, "error message", e))) return rc;
    } else if (!kl_tlv_is_noncritical(&c)) {
      return kl_tlv_err_unknown(&c, where, e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_status) return missing(t, where, "status (0x04)", e);
  return 0;
}

static int push_uri(kl_arena_t *a, kl_pdu_config_t *cf, const char *s) {
  const char **n = kl_arena_alloc(a, (cf->n_parent_uris + 1) * sizeof *n);
  if (n == NULL) return KL_ENOMEM;
  if (cf->n_parent_uris) memcpy(n, cf->parent_uris, cf->n_parent_uris * sizeof *n);
  n[cf->n_parent_uris++] = s;
  cf->parent_uris = n;
  return 0;
}

/* A request's 0x04 is empty (only non-critical extras are tolerated); a response's carries
 * the fields of its service. */
static int config_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *a, uint16_t type,
                         kl_pdu_config_t *cf, kl_err_t *e) {
  const bool req = type == KL_PDU_AGGR_REQ || type == KL_PDU_EXT_REQ;
  const bool aggr = kl_pdu_service(type) == KL_PDU_SVC_AGGR;
  const char *where = req ? "configuration request" : "configuration";
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, rc;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    bool *has = NULL;
    uint64_t *v = NULL;
    const char *what = NULL;
    if (req) {
      if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, where, e);
      continue;
    }
    switch (c.type) {
      case 0x01: if (aggr) { has = &cf->has_max_level; v = &cf->max_level; what = "maximum level"; } break;
      case 0x02: if (aggr) { has = &cf->has_aggr_algo; v = &cf->aggr_algo; what = "aggregation algorithm"; } break;
      case 0x03: if (aggr) { has = &cf->has_aggr_period; v = &cf->aggr_period; what = "aggregation period"; } break;
      case 0x04: has = &cf->has_max_requests; v = &cf->max_requests; what = "maximum requests"; break;
      case 0x11: if (!aggr) { has = &cf->has_cal_first; v = &cf->cal_first; what = "calendar first time"; } break;
      case 0x12: if (!aggr) { has = &cf->has_cal_last; v = &cf->cal_last; what = "calendar last time"; } break;
      case 0x10: {
        const char *s;
        if ((rc = kl_tlv_get_str(&c, &s, e))) return WRAP(rc, e, "parent URI");
        if (push_uri(a, cf, s)) return oom(e);
        continue;
      }
      default: break;
    }
    if (has != NULL) {
      if ((rc = uint_once(&c, has, v, where, what, e))) return rc;
    } else if (!kl_tlv_is_noncritical(&c)) {
      return kl_tlv_err_unknown(&c, where, e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  return 0;
}

static const char *pdu_name(uint16_t type) {
  switch (type) {
    case KL_PDU_AGGR_REQ: return "aggregation request PDU";
    case KL_PDU_AGGR_RESP: return "aggregation response PDU";
    case KL_PDU_EXT_REQ: return "extension request PDU";
    default: return "extension response PDU";
  }
}

/* Decodes one payload element (0x02) into the array of the PDU's type. */
static int payload_decode(kl_pdu_t *pdu, const kl_tlv_t *c, kl_err_t *e) {
  const uint8_t *base = pdu->raw;
  int r;
  switch (pdu->type) {
    case KL_PDU_AGGR_REQ:
      r = aggr_req_decode(c, base, &pdu->aggr_reqs[pdu->n_aggr_reqs], e);
      if (r) return WRAP(r, e, "aggregation request %zu", pdu->n_aggr_reqs + 1);
      pdu->n_aggr_reqs++;
      return 0;
    case KL_PDU_AGGR_RESP:
      r = aggr_resp_decode(c, base, &pdu->arena, &pdu->aggr_resps[pdu->n_aggr_resps], e);
      if (r) return WRAP(r, e, "aggregation response %zu", pdu->n_aggr_resps + 1);
      pdu->n_aggr_resps++;
      return 0;
    case KL_PDU_EXT_REQ:
      r = ext_req_decode(c, base, &pdu->ext_reqs[pdu->n_ext_reqs], e);
      if (r) return WRAP(r, e, "extension request %zu", pdu->n_ext_reqs + 1);
      pdu->n_ext_reqs++;
      return 0;
    default:
      r = ext_resp_decode(c, base, &pdu->arena, &pdu->ext_resps[pdu->n_ext_resps], e);
      if (r) return WRAP(r, e, "extension response %zu", pdu->n_ext_resps + 1);
      pdu->n_ext_resps++;
      return 0;
  }
}

static int alloc_payloads(kl_pdu_t *pdu, size_t n, kl_err_t *e) {
  size_t m = n ? n : 1;
  void *p;
  switch (pdu->type) {
    case KL_PDU_AGGR_REQ: p = pdu->aggr_reqs = kl_arena_alloc(&pdu->arena, m * sizeof *pdu->aggr_reqs); break;
    case KL_PDU_AGGR_RESP: p = pdu->aggr_resps = kl_arena_alloc(&pdu->arena, m * sizeof *pdu->aggr_resps); break;
    case KL_PDU_EXT_REQ: p = pdu->ext_reqs = kl_arena_alloc(&pdu->arena, m * sizeof *pdu->ext_reqs); break;
    default: p = pdu->ext_resps = kl_arena_alloc(&pdu->arena, m * sizeof *pdu->ext_resps); break;
  }
  return p == NULL ? oom(e) : 0;
}

static int pdu_decode(kl_pdu_t *pdu, kl_err_t *e) {
  const uint8_t *base = pdu->raw;
  kl_tlv_t top, c;
  kl_tlv_iter_t it;
  int r, rc;
  size_t n_payload = 0, idx = 0;
  if ((rc = kl_tlv_parse_one(pdu->raw, pdu->raw_len, &top, e))) return WRAP(rc, e, "PDU");
  if (top.type == 0x200 || top.type == 0x300)
    return kl_err_set(e, KL_EUNSUPPORTED, "PDU type 0x%X is protocol version 1, which is not supported", top.type);
  if (top.type != KL_PDU_AGGR_REQ && top.type != KL_PDU_AGGR_RESP && top.type != KL_PDU_EXT_REQ &&
      top.type != KL_PDU_EXT_RESP)
    return kl_err_set(e, KL_EFORMAT,
                      "not a KSI PDU: top-level element is 0x%X, expected 0x220, 0x221, 0x320 or 0x321", top.type);
  pdu->type = top.type;
  const bool resp = top.type == KL_PDU_AGGR_RESP || top.type == KL_PDU_EXT_RESP;
  const bool aggr = kl_pdu_service(top.type) == KL_PDU_SVC_AGGR;
  const char *name = pdu_name(top.type);

  kl_tlv_iter_children(&it, base, &top);
  while ((r = kl_tlv_next(&it, &c, e)) > 0)
    if (c.type == KL_PDU_T_PAYLOAD) n_payload++;
  if (r < 0) return WRAP(KL_EFORMAT, e, "%s", name);
  if (alloc_payloads(pdu, n_payload, e)) return KL_ENOMEM;

  kl_tlv_iter_children(&it, base, &top);
  for (; (r = kl_tlv_next(&it, &c, e)) > 0; idx++) {
    if (pdu->has_hmac)
      return kl_err_set(e, KL_EFORMAT, "%s: element 0x%02X at offset %zu follows the HMAC (0x1F), which must be last",
                        name, c.type, c.offset);
    if ((c.type == KL_PDU_T_ERROR && !resp) || (c.type == KL_PDU_T_ACK && !aggr)) {
      if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, name, e);
      continue;
    }
    switch (c.type) {
      case KL_PDU_T_HEADER:
        if (pdu->header != NULL) return kl_tlv_err_dup(&c, name, e);
        if (idx != 0)
          return kl_err_set(e, KL_EFORMAT, "%s: header (0x01) at offset %zu is not the first element", name, c.offset);
        if ((pdu->header = kl_arena_alloc(&pdu->arena, sizeof *pdu->header)) == NULL) return oom(e);
        if ((rc = header_decode(&c, base, pdu->header, e))) return WRAP(rc, e, "%s: header", name);
        break;
      case KL_PDU_T_PAYLOAD:
        if ((rc = payload_decode(pdu, &c, e))) return WRAP(rc, e, "%s", name);
        break;
      case KL_PDU_T_ERROR:
        if (pdu->error != NULL) return kl_tlv_err_dup(&c, name, e);
        if ((pdu->error = kl_arena_alloc(&pdu->arena, sizeof *pdu->error)) == NULL) return oom(e);
        if ((rc = error_decode(&c, base, pdu->error, e))) return WRAP(rc, e, "%s: error element", name);
        break;
      case KL_PDU_T_CONFIG:
        if (pdu->config != NULL) return kl_tlv_err_dup(&c, name, e);
        if ((pdu->config = kl_arena_alloc(&pdu->arena, sizeof *pdu->config)) == NULL) return oom(e);
        if ((rc = config_decode(&c, base, &pdu->arena, pdu->type, pdu->config, e)))
          return WRAP(rc, e, "%s: configuration", name);
        break;
      case KL_PDU_T_ACK:
        if (pdu->has_ack) return kl_tlv_err_dup(&c, name, e);
        pdu->has_ack = true;
        break;
      case KL_PDU_T_HMAC:
        if ((rc = kl_imprint_decode(&c, &pdu->hmac, e))) return WRAP(rc, e, "%s: HMAC", name);
        pdu->has_hmac = true;
        pdu->hmac_offset = c.offset + (c.raw_len - c.len) + 1;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, name, e);
    }
  }
  if (r < 0) return WRAP(KL_EFORMAT, e, "%s", name);
  /* libksi accepts a PDU that carries only an error without header or HMAC; nothing else. */
  const bool error_only = pdu->error != NULL && n_payload == 0 && pdu->config == NULL && !pdu->has_ack;
  if (!error_only && pdu->header == NULL)
    return kl_err_set(e, KL_EFORMAT, "%s has no header (0x01)", name);
  if (!error_only && !pdu->has_hmac)
    return kl_err_set(e, KL_EFORMAT, "%s has no HMAC (0x1F)", name);
  return 0;
}

int kl_pdu_parse(const uint8_t *p, size_t n, kl_pdu_t **out, kl_err_t *e) {
  if (out == NULL || (p == NULL && n != 0)) return kl_err_set(e, KL_EINVAL, "kl_pdu_parse: NULL argument");
  *out = NULL;
  if (n > KL_PDU_MAX_SIZE)
    return kl_err_set(e, KL_ETOOBIG, "PDU is %zu bytes; the maximum is %d (one TLV16)", n, KL_PDU_MAX_SIZE);
  /* The PDU, its first arena block and its copy of the bytes in one allocation, not three
   * (issue 12: malloc was a tenth of a gateway's CPU with one request per PDU). The block is
   * sized for a request PDU's parsed form: a request of at least 41 bytes on the wire takes 224
   * parsed, so 5.5 bytes per byte, and a one-request PDU (about 100 bytes) then stays under 1 KiB,
   * which glibc serves from its per-thread cache. What does not fit gets blocks of its own. */
  const size_t align = sizeof(max_align_t), head = (sizeof(kl_pdu_t) + align - 1) / align * align;
  const size_t seed = n < (4096 - 64) * 2 / 11 ? 64 + 11 * n / 2 : 4096;
  kl_pdu_t *pdu = malloc(head + kl__arena_seed_size(seed) + n);
  if (pdu == NULL) return oom(e);
  memset(pdu, 0, sizeof *pdu);
  kl__arena_seed(&pdu->arena, (char *)pdu + head, seed);
  pdu->raw = (uint8_t *)pdu + head + kl__arena_seed_size(seed);
  if (n) memcpy(pdu->raw, p, n);
  pdu->raw_len = n;
  int r = pdu_decode(pdu, e);
  if (r) {
    kl_pdu_free(pdu);
    return r;
  }
  *out = pdu;
  return 0;
}

void kl_pdu_free(kl_pdu_t *pdu) {
  if (pdu == NULL) return;
  kl_arena_free(&pdu->arena);
  free(pdu); /* raw and the arena's first block are in the same allocation */
}

const uint8_t *kl_pdu_bytes(const kl_pdu_t *pdu, size_t *len) {
  if (len) *len = pdu->raw_len;
  return pdu->raw;
}
