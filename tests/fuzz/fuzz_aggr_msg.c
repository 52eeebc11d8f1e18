/* libFuzzer driver: what a parent (or a hostile peer on the internal network) can send a tier:
 * an aggregation.proto Message. A Ping or Pong goes back through kl_tier_pong_frame. A Response
 * is checked the way lib/tier does it (its chains must continue a fixed closed round at its
 * second, kl_round_answer), every request's answer is built, and the answer goes back through
 * kl_tier_response_frame and must unpack again. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aggregation.pb-c.h"
#include "keyless/round.h"
#include "keyless/tier.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kl_round_t *round_;

static void setup(void) {
  kl_round_config_t cfg = {KL_HASH_SHA256, 255, 64, 0};
  if (kl_round_create(&cfg, &round_, NULL)) abort();
  for (int i = 0; i < 5; i++) {
    kl_imprint_t h;
    size_t slot;
    uint64_t st;
    kl_round_identity_t who = {"fuzz", "gw", true, false, (uint64_t)i, 0};
    kl_hash(KL_HASH_SHA256, &i, sizeof i, &h, NULL);
    if (kl_round_add(round_, &h, (unsigned)i, &who, &slot, &st, NULL)) abort();
  }
  kl_imprint_t root;
  unsigned level;
  if (kl_round_close(round_, &root, &level, NULL)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (round_ == NULL) setup();
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, size, data);
  if (m == NULL) return 0;
  if (m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE) {
    const Keyless__Aggregation__Response *r = m->response;
    const uint8_t *parts[66];
    size_t lens[66], n = 0;
    for (size_t i = 0; i < r->n_chains && n < 64; i++, n++) parts[n] = r->chains[i].data, lens[n] = r->chains[i].len;
    if (r->has_calendar_chain) parts[n] = r->calendar_chain.data, lens[n++] = r->calendar_chain.len;
    if (r->has_auth_record) parts[n] = r->auth_record.data, lens[n++] = r->auth_record.len;
    kl_round_parent_t parent = {parts, lens, n};
    kl_buf_t out = KL_BUF_INIT;
    for (size_t slot = 0; slot < kl_round_size(round_); slot++) {
      kl_buf_reset(&out);
      if (kl_round_answer(round_, &parent, r->second, slot, &out, NULL)) continue;
      kl_tier_answer_t a = {.second = r->second, .tlvs = out.p, .len = out.len};
      uint8_t *frame;
      size_t len;
      if (kl_tier_response_frame(r->request_id, &a, &frame, &len, NULL) == 0) {
        Keyless__Aggregation__Message *back = keyless__aggregation__message__unpack(NULL, len - 4, frame + 4);
        if (back == NULL || back->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE) abort();
        keyless__aggregation__message__free_unpacked(back, NULL);
        free(frame);
      }
    }
    kl_buf_free(&out);
  } else if (m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PING ||
             m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PONG) {
    /* a heartbeat: the Pong a parent builds (with any reason a peer sent) must unpack again */
    bool pong = m->body_case == KEYLESS__AGGREGATION__MESSAGE__BODY_PONG;
    const char *why = pong && !m->pong->ready ? (m->pong->reason ? m->pong->reason : "not ready") : NULL;
    uint8_t *frame;
    size_t len;
    if (kl_tier_pong_frame(pong ? m->pong->id : m->ping->id, why, &frame, &len, NULL) == 0) {
      Keyless__Aggregation__Message *back = keyless__aggregation__message__unpack(NULL, len - 4, frame + 4);
      if (back == NULL || back->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_PONG || back->pong->ready != (why == NULL))
        abort();
      keyless__aggregation__message__free_unpacked(back, NULL);
      free(frame);
    }
  }
  keyless__aggregation__message__free_unpacked(m, NULL);
  return 0;
}
