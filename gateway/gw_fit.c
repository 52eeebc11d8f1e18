/* How many aggregation requests one response PDU surely holds: what the configuration response
 * announces as max_requests and what gw_handle enforces before a request enters a round.
 *
 * A KSI PDU is a TLV16: 65,535 bytes of payload. One request's answer is its aggr_resp (header,
 * id, status) around the signature parts: this gateway's chain, the parents' chains, the
 * calendar chain and the authentication record. Most of that is known from the answers already
 * handed out; what can still grow is bounded here:
 *   - this gateway's own chain, in a round fuller than the ones seen: up to
 *     1 + ceil(log2(round max_requests)) links (chain_slack, from the configuration);
 *   - the calendar chain of a fresh signature: its length follows the bits of the second, up
 *     to bitlen(now) + 1 links (the calendar is a Merkle forest over every second since 0);
 *   - the parents' chains, by an eighth of the shared part (their rounds vary less: they hold
 *     children, not requests).
 * This gateway's own chain is counted once: its fixed part (header, metadata link) as seen, and
 * its round-sized links at their largest (chain_slack). Before the first answer a typical
 * three-tier answer of 2 KiB is assumed. */
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "keyless/tlv.h"

#define PDU_PAYLOAD_MAX 65535u
#define FIRST_GUESS 2048u

void gw_fit_init(gw_service_t *s, int algorithm, size_t round_max_requests) {
  size_t links = 1, imprint = 1 + kl_hash_digest_len(algorithm);
  for (size_t n = 1; n < round_max_requests; n *= 2) links++;
  s->chain_slack = links * (4 + imprint + 3); /* link header, sibling imprint, level correction */
  s->answer_raw_max = 0;
  s->answer_bound = 0;
  s->own_fixed = 0;
  size_t uris = 0;
  for (size_t i = 0; i < s->conf.n_parent_uris; i++) uris += 4 + strlen(s->conf.parent_uris[i]) + 1;
  s->overhead = 4 + 128 /* header: login (64 at most), ids */ + 96 /* config */ + uris + 4 + 1 + 64 /* HMAC */;
}

static unsigned bitlen(uint64_t v) {
  unsigned n = 0;
  while (v) {
    n++;
    v >>= 1;
  }
  return n;
}

/* The first TLV of p (false if p does not start with a whole one). */
static bool first_tlv(const uint8_t *p, size_t len, kl_tlv_t *t) {
  kl_tlv_iter_t it;
  kl_tlv_iter_init(&it, p, p, len);
  return kl_tlv_next(&it, t, NULL) == 1;
}

/* Bytes of the links of an 0x801 whose sibling is an imprint: the part of this gateway's own
 * chain that grows with the round (chain_slack stands for it at its largest). */
static size_t imprint_link_bytes(const uint8_t *head, size_t len) {
  kl_tlv_iter_t it, li, ci;
  kl_tlv_t t, l, c;
  size_t n = 0;
  kl_tlv_iter_init(&it, head, head, len);
  while (kl_tlv_next(&it, &t, NULL) == 1) {
    if (t.type != KL_T_AGGR_CHAIN) continue;
    kl_tlv_iter_children(&li, head, &t);
    while (kl_tlv_next(&li, &l, NULL) == 1) {
      if (l.type != 0x07 && l.type != 0x08) continue;
      bool meta = false;
      kl_tlv_iter_children(&ci, head, &l);
      while (kl_tlv_next(&ci, &c, NULL) == 1) meta |= c.type == 0x04;
      if (!meta) n += l.raw_len;
    }
  }
  return n;
}

void gw_fit_observe(gw_service_t *s, const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len) {
  kl_tlv_iter_t it;
  kl_tlv_t t;
  size_t cal_links = 0, cal_link_bytes = 0;
  s->answer_raw_max = head_len + tail_len;
  /* The first 0x801 is this gateway's own chain; everything after it is the round's shared
   * part. The own chain counts without its round-sized links: chain_slack adds them at their
   * largest. */
  kl_tlv_t first;
  size_t first_len = head && first_tlv(head, head_len, &first) ? first.raw_len : 0;
  size_t own = first_len - imprint_link_bytes(head, first_len);
  if (own > s->own_fixed) s->own_fixed = own;
  for (int half = 0; half < 2; half++) { /* the calendar chain is among the round's shared parts */
    const uint8_t *tlvs = half ? tail : head;
    if (tlvs == NULL) continue;
    kl_tlv_iter_init(&it, tlvs, tlvs, half ? tail_len : head_len);
    while (kl_tlv_next(&it, &t, NULL) == 1) {
      if (t.type != KL_T_CAL_CHAIN) continue;
      kl_tlv_iter_t ci;
      kl_tlv_t c;
      kl_tlv_iter_children(&ci, tlvs, &t);
      while (kl_tlv_next(&ci, &c, NULL) == 1)
        if (c.type == 0x07 || c.type == 0x08) {
          cal_links++;
          if (c.raw_len > cal_link_bytes) cal_link_bytes = c.raw_len;
        }
    }
  }
  size_t most = bitlen((uint64_t)time(NULL)) + 1;
  size_t cal_slack = cal_links < most ? (most - cal_links) * (cal_link_bytes ? cal_link_bytes : 4 + 65) : 0;
  size_t shared = head_len + tail_len - first_len;
  size_t bound = shared + shared / 8 + cal_slack;
  if (bound > s->answer_bound) s->answer_bound = bound;
}

uint64_t gw_fit(const gw_service_t *s) {
  size_t answer = s->answer_bound ? s->answer_bound + s->own_fixed : FIRST_GUESS + FIRST_GUESS / 8;
  size_t one = 32 + answer + s->chain_slack;
  uint64_t fit = (PDU_PAYLOAD_MAX - s->overhead) / one;
  if (fit < 1) fit = 1;
  return fit < s->max_requests ? fit : s->max_requests;
}
