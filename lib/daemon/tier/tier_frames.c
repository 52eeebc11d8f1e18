/* The tier's frames for the parent's side of a link (keyless/tier.h): a round's Response and
 * a heartbeat's Pong, each with its 4-byte length.
 *
 * A round's Responses differ only in request_id and the child's own chain: with a
 * kl_tier_frame_cache_t the round's shared part (the parent's chains, the calendar chain, the
 * auth record, lead_ms) is encoded once per round, and each child's frame is written by hand
 * from its own fields and a copy of those bytes (what protobuf-c would pack: fields in number
 * order, tests/unit/test_tier_frames.c compares the two). */
#include <stdlib.h>
#include <string.h>

#include "aggregation.pb-c.h"
#include "keyless/pdu.h"
#include "keyless/tier.h"
#include "keyless/tlv.h"

static int frame(const Keyless__Aggregation__Message *m, uint8_t **out, size_t *len, kl_err_t *e) {
  size_t n = keyless__aggregation__message__get_packed_size(m);
  uint8_t *buf = malloc(n + 4);
  if (buf == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  buf[0] = (uint8_t)(n >> 24);
  buf[1] = (uint8_t)(n >> 16);
  buf[2] = (uint8_t)(n >> 8);
  buf[3] = (uint8_t)n;
  keyless__aggregation__message__pack(m, buf + 4);
  *out = buf;
  *len = n + 4;
  return 0;
}

int kl_tier_pong_frame(uint64_t id, const char *not_ready, uint8_t **out, size_t *len, kl_err_t *e) {
  Keyless__Aggregation__Pong p = KEYLESS__AGGREGATION__PONG__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  p.id = id;
  p.ready = not_ready == NULL;
  p.reason = (char *)not_ready;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_PONG;
  m.pong = &p;
  *out = NULL;
  return frame(&m, out, len, e);
}

int kl_tier_response_frame(uint64_t request_id, const kl_tier_answer_t *a, uint8_t **out, size_t *len, kl_err_t *e) {
  Keyless__Aggregation__Response r = KEYLESS__AGGREGATION__RESPONSE__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  ProtobufCBinaryData chains[64];
  *out = NULL;
  r.request_id = request_id;
  r.status = (uint32_t)a->status;
  r.error = (char *)(a->status ? a->error : NULL);
  r.second = a->second;
  r.has_lead_ms = a->lead_ms > 0;
  r.lead_ms = (uint32_t)a->lead_ms;
  r.chains = chains;
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int rc = 0;
  for (int half = 0; half < 2 && rc >= 0; half++) { /* the request's own chain, then the round's tail */
    const uint8_t *p = half ? a->tail : a->tlvs;
    size_t n = a->status != 0 || p == NULL ? 0 : half ? a->tail_len : a->len;
    kl_tlv_iter_init(&it, p, p, n);
    while ((rc = kl_tlv_next(&it, &t, e)) == 1) {
      ProtobufCBinaryData d = {t.raw_len, (uint8_t *)t.raw};
      if (t.type == KL_T_AGGR_CHAIN && r.n_chains < 64) chains[r.n_chains++] = d;
      else if (t.type == KL_T_CAL_CHAIN) r.has_calendar_chain = 1, r.calendar_chain = d;
      else if (t.type == KL_T_CAL_AUTH) r.has_auth_record = 1, r.auth_record = d;
    }
  }
  if (rc < 0) return kl_err_wrap(e, "answer");
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE;
  m.response = &r;
  return frame(&m, out, len, e);
}

/* ---- a round's Responses with the shared part encoded once ---- */

enum { F_CHAINS = 5, F_CAL = 6, F_AUTH = 7, F_LEAD = 8, WT_VARINT = 0, WT_LEN = 2 };

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) *p++ = (uint8_t)(v | 0x80), v >>= 7;
  *p++ = (uint8_t)v;
  return p;
}

static uint8_t *put_bytes(uint8_t *p, unsigned field, const uint8_t *d, size_t n) {
  *p++ = (uint8_t)(field << 3 | WT_LEN);
  p = put_varint(p, n);
  memcpy(p, d, n);
  return p + n;
}

static size_t bytes_len(size_t n) { return 1 + varint_len(n) + n; }

void kl_tier_frame_cache_free(kl_tier_frame_cache_t *c) {
  if (c == NULL) return;
  free(c->enc);
  memset(c, 0, sizeof *c);
}

/* Encodes the shared part of a's round into c; 0, -1 when the fast path does not apply (64
 * chains or more), or KL_EFORMAT / KL_ENOMEM. */
static int cache_build(kl_tier_frame_cache_t *c, const kl_tier_answer_t *a, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int rc;
  const uint8_t *cal = NULL, *auth = NULL;
  size_t cal_len = 0, auth_len = 0, need = 0, chains = 0;
  c->valid = false;
  kl_tlv_iter_init(&it, a->tail, a->tail, a->tail_len);
  while ((rc = kl_tlv_next(&it, &t, e)) == 1) { /* what kl_tier_response_frame keeps: the last 0x802, 0x805 */
    if (t.type == KL_T_AGGR_CHAIN) need += bytes_len(t.raw_len), chains++;
    else if (t.type == KL_T_CAL_CHAIN) cal = t.raw, cal_len = t.raw_len;
    else if (t.type == KL_T_CAL_AUTH) auth = t.raw, auth_len = t.raw_len;
  }
  if (rc < 0) return kl_err_wrap(e, "answer");
  if (chains >= 64) return -1;
  if (cal) need += bytes_len(cal_len);
  if (auth) need += bytes_len(auth_len);
  if (a->lead_ms > 0) need += 1 + varint_len((uint32_t)a->lead_ms);
  if (need > c->cap) {
    uint8_t *p = realloc(c->enc, need);
    if (p == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    c->enc = p;
    c->cap = need;
  }
  uint8_t *p = c->enc;
  kl_tlv_iter_init(&it, a->tail, a->tail, a->tail_len);
  while (kl_tlv_next(&it, &t, NULL) == 1)
    if (t.type == KL_T_AGGR_CHAIN) p = put_bytes(p, F_CHAINS, t.raw, t.raw_len);
  if (cal) p = put_bytes(p, F_CAL, cal, cal_len);
  if (auth) p = put_bytes(p, F_AUTH, auth, auth_len);
  if (a->lead_ms > 0) *p++ = F_LEAD << 3 | WT_VARINT, p = put_varint(p, (uint32_t)a->lead_ms);
  c->enc_len = (size_t)(p - c->enc);
  c->n_chains = chains;
  c->round = a->round;
  c->tail = a->tail;
  c->tail_len = a->tail_len;
  c->lead_ms = a->lead_ms;
  c->valid = true;
  return 0;
}

int kl_tier_response_frame_cached(kl_tier_frame_cache_t *c, uint64_t request_id, const kl_tier_answer_t *a,
                                  uint8_t **out, size_t *len, kl_err_t *e) {
  *out = NULL;
  if (c == NULL || a->status != 0 || a->tail == NULL) return kl_tier_response_frame(request_id, a, out, len, e);
  if (!c->valid || c->round != a->round || c->tail != a->tail || c->tail_len != a->tail_len || c->lead_ms != a->lead_ms) {
    int rc = cache_build(c, a, e);
    if (rc > 0) return rc;
    if (rc < 0) return kl_tier_response_frame(request_id, a, out, len, e);
  }
  /* The child's own part: normally one 0x801; anything else goes the general way. */
  const uint8_t *own[2];
  size_t own_len[2], n_own = 0, head = 0;
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int rc;
  kl_tlv_iter_init(&it, a->tlvs, a->tlvs, a->tlvs ? a->len : 0);
  while ((rc = kl_tlv_next(&it, &t, NULL)) == 1) {
    if (t.type != KL_T_AGGR_CHAIN || n_own == 2) return kl_tier_response_frame(request_id, a, out, len, e);
    own[n_own] = t.raw;
    own_len[n_own++] = t.raw_len;
    head += bytes_len(t.raw_len);
  }
  if (rc < 0 || c->n_chains + n_own > 64) return kl_tier_response_frame(request_id, a, out, len, e);
  head += 1 + varint_len(request_id) + 2 /* status 0 */ + 1 + varint_len(a->second);
  size_t r = head + c->enc_len, m = 1 + varint_len(r) + r;
  if (m > UINT32_MAX) return kl_err_set(e, KL_EFORMAT, "answer too large");
  uint8_t *buf = malloc(4 + m);
  if (buf == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  buf[0] = (uint8_t)(m >> 24);
  buf[1] = (uint8_t)(m >> 16);
  buf[2] = (uint8_t)(m >> 8);
  buf[3] = (uint8_t)m;
  uint8_t *p = buf + 4;
  *p++ = KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE << 3 | WT_LEN;
  p = put_varint(p, r);
  *p++ = 1 << 3 | WT_VARINT;
  p = put_varint(p, request_id);
  *p++ = 2 << 3 | WT_VARINT;
  *p++ = 0;
  *p++ = 4 << 3 | WT_VARINT;
  p = put_varint(p, a->second);
  for (size_t i = 0; i < n_own; i++) p = put_bytes(p, F_CHAINS, own[i], own_len[i]);
  memcpy(p, c->enc, c->enc_len);
  *out = buf;
  *len = 4 + m;
  return 0;
}
