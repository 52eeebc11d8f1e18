/* A parent's Response frames (lib/daemon/tier/tier_frames.c): the frames written from a
 * round's cache (kl_tier_response_frame_cached: the shared part encoded once) are byte for byte
 * what protobuf-c packs (kl_tier_response_frame), for ids, seconds, leads and TLV sizes across
 * varint boundaries, across rounds that reuse one cache, and for the answers the fast path hands
 * on (a status, no tail, own parts that are not 0x801s); a malformed tail is an error. */
#include <stdlib.h>
#include <string.h>

#include "aggregation.pb-c.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/tier.h"
#include "keyless/tlv.h"
#include "testutil.h"

/* A TLV of type `type` (TLV16: the 0x80x types) with n value bytes of `fill`. */
static void put_tlv(kl_buf_t *b, uint16_t type, size_t n, uint8_t fill) {
  uint8_t *v = malloc(n ? n : 1);
  assert_non_null(v);
  memset(v, fill, n);
  kl_tlv_put_bytes(b, type, 0, v, n);
  free(v);
  assert_int_equal(kl_buf_check(b, NULL), 0);
}

static void same(kl_tier_frame_cache_t *c, uint64_t id, const kl_tier_answer_t *a) {
  uint8_t *want, *got;
  size_t want_len, got_len;
  assert_int_equal(kl_tier_response_frame(id, a, &want, &want_len, NULL), 0);
  assert_int_equal(kl_tier_response_frame_cached(c, id, a, &got, &got_len, NULL), 0);
  assert_int_equal(got_len, want_len);
  assert_memory_equal(got, want, want_len);
  /* and it reads back as the answer it was made from */
  Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, got_len - 4, got + 4);
  assert_non_null(m);
  assert_int_equal(m->body_case, KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE);
  assert_true(m->response->request_id == id);
  assert_true(m->response->status == a->status);
  keyless__aggregation__message__free_unpacked(m, NULL);
  free(want);
  free(got);
}

static void test_cached_equals_packed(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 60, 121, 122, 300, 16380, 20000};
  static const uint64_t ids[] = {0, 1, 127, 128, 16383, 16384, 0xFFFFFFFFull, UINT64_MAX};
  static const uint64_t leads[] = {0, 20, 127, 128, 0x1FFFFFull};
  kl_tier_frame_cache_t c = {0};
  uint64_t round = 7;
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (size_t l = 0; l < sizeof leads / sizeof leads[0]; l++) {
      kl_buf_t own = KL_BUF_INIT, tail = KL_BUF_INIT;
      put_tlv(&own, KL_T_AGGR_CHAIN, 40 + sizes[s] / 2, 0x11);
      put_tlv(&tail, KL_T_AGGR_CHAIN, sizes[s], 0x22);
      put_tlv(&tail, KL_T_AGGR_CHAIN, 90, 0x33);
      put_tlv(&tail, KL_T_CAL_CHAIN, sizes[s] + 3, 0x44);
      put_tlv(&tail, KL_T_CAL_AUTH, 200, 0x55);
      kl_tier_answer_t a = {.second = 1760000000u + s,
                            .tlvs = own.p,
                            .len = own.len,
                            .tail = tail.p,
                            .tail_len = tail.len,
                            .round = round++,
                            .lead_ms = leads[l]};
      for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) same(&c, ids[i], &a);
      assert_true(c.valid && c.round == a.round); /* the round's part was cached */
      a.second = UINT64_MAX; /* per child, not cached */
      same(&c, 5, &a);
      kl_buf_free(&own);
      kl_buf_free(&tail);
    }
  kl_tier_frame_cache_free(&c);
  assert_null(c.enc);
}

/* The same round id but another tail (a new buffer, or a lead that changed): rebuilt. */
static void test_cache_follows_tail(void **state) {
  (void)state;
  kl_tier_frame_cache_t c = {0};
  kl_buf_t own = KL_BUF_INIT, t1 = KL_BUF_INIT, t2 = KL_BUF_INIT;
  put_tlv(&own, KL_T_AGGR_CHAIN, 50, 1);
  put_tlv(&t1, KL_T_AGGR_CHAIN, 70, 2);
  put_tlv(&t1, KL_T_CAL_CHAIN, 30, 3);
  put_tlv(&t2, KL_T_AGGR_CHAIN, 80, 4);
  put_tlv(&t2, KL_T_CAL_AUTH, 30, 5);
  kl_tier_answer_t a = {.second = 9, .tlvs = own.p, .len = own.len, .tail = t1.p, .tail_len = t1.len, .round = 1};
  same(&c, 1, &a);
  a.tail = t2.p;
  a.tail_len = t2.len;
  same(&c, 2, &a);
  a.lead_ms = 30;
  same(&c, 3, &a);
  kl_tier_frame_cache_free(&c);
  kl_buf_free(&own);
  kl_buf_free(&t1);
  kl_buf_free(&t2);
}

/* What the fast path does not take goes the general way, with the same bytes. */
static void test_other_answers(void **state) {
  (void)state;
  kl_tier_frame_cache_t c = {0};
  kl_buf_t own = KL_BUF_INIT, whole = KL_BUF_INIT, tail = KL_BUF_INIT, many = KL_BUF_INIT;
  put_tlv(&own, KL_T_AGGR_CHAIN, 50, 1);
  put_tlv(&whole, KL_T_AGGR_CHAIN, 50, 1);
  put_tlv(&whole, KL_T_CAL_CHAIN, 50, 2);
  put_tlv(&tail, KL_T_AGGR_CHAIN, 60, 3);
  for (int i = 0; i < 70; i++) put_tlv(&many, KL_T_AGGR_CHAIN, 10, (uint8_t)i); /* over the 64 chains kept */
  kl_tier_answer_t err = {.status = KL_STATUS_AGGR_TOO_MANY_REQUESTS, .error = "the round is full"};
  same(&c, 3, &err);
  kl_tier_answer_t no_tail = {.second = 4, .tlvs = whole.p, .len = whole.len, .round = 1};
  same(&c, 4, &no_tail);
  kl_tier_answer_t own_cal = {.second = 4, .tlvs = whole.p, .len = whole.len, .tail = tail.p, .tail_len = tail.len,
                              .round = 2};
  same(&c, 5, &own_cal);
  kl_tier_answer_t big = {.second = 4, .tlvs = own.p, .len = own.len, .tail = many.p, .tail_len = many.len, .round = 3};
  same(&c, 6, &big);
  /* a malformed tail: an error, no frame */
  uint8_t bad[] = {0x88, 0x01, 0x00, 0x40, 0x00};
  kl_tier_answer_t broken = {.second = 4, .tlvs = own.p, .len = own.len, .tail = bad, .tail_len = sizeof bad, .round = 4};
  uint8_t *out = (uint8_t *)&c;
  size_t n;
  assert_int_not_equal(kl_tier_response_frame_cached(&c, 7, &broken, &out, &n, NULL), 0);
  assert_null(out);
  kl_tier_frame_cache_free(&c);
  kl_buf_free(&own);
  kl_buf_free(&whole);
  kl_buf_free(&tail);
  kl_buf_free(&many);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cached_equals_packed),
      cmocka_unit_test(test_cache_follows_tail),
      cmocka_unit_test(test_other_answers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
