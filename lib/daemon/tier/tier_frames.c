/* The tier's frames for the parent's side of a link (keyless/tier.h): a round's Response and
 * a heartbeat's Pong, each with its 4-byte length. */
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
