/* kl_metadata_encode (round.c) writes short ids in one pass (issue 12) and long ones the general
 * way: both must give the bytes KSI-FORMAT.md 4.4 describes, built here element by element with
 * the TLV writers, for every combination of the optional fields, values 0 (no value bytes) and
 * large, and id lengths around the 255-byte edge of a TLV8, appended after existing bytes. */
#include <stdlib.h>
#include <string.h>

#include "keyless/round.h"
#include "keyless/tlv.h"
#include "testutil.h"

static void reference(const kl_round_identity_t *who, kl_buf_t *want) {
  kl_buf_t kids = KL_BUF_INIT;
  kl_tlv_put_str(&kids, 0x01, 0, who->client_id);
  if (who->machine_id) kl_tlv_put_str(&kids, 0x02, 0, who->machine_id);
  if (who->has_seq) kl_tlv_put_uint(&kids, 0x03, 0, who->seq);
  if (who->has_req_time) kl_tlv_put_uint(&kids, 0x04, 0, who->req_time_us);
  static const uint8_t pad1[] = {0x7E, 0x01, 0x01}, pad2[] = {0x7E, 0x02, 0x01, 0x01};
  if ((kids.len + 3) % 2 == 0) kl_buf_put(want, pad1, 3);
  else kl_buf_put(want, pad2, 4);
  kl_buf_put(want, kids.p, kids.len);
  kl_buf_free(&kids);
}

static void test_every_shape(void **state) {
  (void)state;
  static const size_t idlens[] = {1, 2, 3, 4, 63, 64, 253, 254, 255, 256, 300};
  static const uint64_t values[] = {0, 1, 255, 256, 1700000000000001ull, UINT64_MAX};
  char *client = malloc(400), *machine = malloc(400);
  assert_non_null(client);
  assert_non_null(machine);
  size_t checked = 0;
  for (size_t c = 0; c < sizeof idlens / sizeof idlens[0]; c++)
    for (size_t m = 0; m < 3; m++)
      for (unsigned opt = 0; opt < 4; opt++)
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
          memset(client, 'a' + (int)(c % 20), idlens[c]);
          client[idlens[c]] = '\0';
          size_t ml = m == 0 ? 0 : m == 1 ? 1 : idlens[(c + 3) % (sizeof idlens / sizeof idlens[0])];
          memset(machine, 'M', ml);
          machine[ml] = '\0';
          kl_round_identity_t who = {client, m ? machine : NULL, (opt & 1) != 0, (opt & 2) != 0, values[v],
                                     values[(v + 2) % (sizeof values / sizeof values[0])]};
          kl_buf_t want = KL_BUF_INIT, got = KL_BUF_INIT;
          kl_buf_put(&got, "xyz", 3);
          reference(&who, &want);
          assert_int_equal(kl_metadata_encode(&who, &got, NULL), 0);
          assert_int_equal(got.len, 3 + want.len);
          assert_int_equal(got.len % 2, 1);
          assert_memory_equal(got.p, "xyz", 3);
          assert_memory_equal(got.p + 3, want.p, want.len);
          kl_buf_free(&want);
          kl_buf_free(&got);
          checked++;
        }
  assert_int_equal(checked, 11 * 3 * 4 * 6);
  free(client);
  free(machine);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_shape)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
