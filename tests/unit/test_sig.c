/* The signature object: byte-exact round trips of every valid vector, structural rules,
 * hostile input (every truncation, oversize, unknown critical elements), rebuild. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/sig.h"
#include "keyless/verify.h"
#include "testutil.h"

static void test_round_trip_all_valid(void **state) {
  (void)state;
  DIR *d = opendir(KL_VECTORS "/valid-signatures");
  assert_non_null(d);
  struct dirent *de;
  int count = 0;
  while ((de = readdir(d)) != NULL) {
    size_t n = strlen(de->d_name);
    if (n < 5 || strcmp(de->d_name + n - 5, ".ksig") != 0) continue;
    char path[512];
    size_t len, out_len;
    kl_err_t e = {0};
    kl_sig_t *sig;
    snprintf(path, sizeof path, "valid-signatures/%s", de->d_name);
    uint8_t *buf = tu_read_vector(path, &len);
    if (kl_sig_parse(buf, len, &sig, &e) != 0) fail_msg("%s: %s", path, e.msg);
    const uint8_t *out = kl_sig_bytes(sig, &out_len);
    assert_int_equal(out_len, len);
    assert_memory_equal(out, buf, len);
    kl_sig_free(sig);
    free(buf);
    count++;
  }
  closedir(d);
  assert_true(count >= 40);
}

static void test_every_truncation_fails_cleanly(void **state) {
  (void)state;
  size_t len;
  uint8_t *buf = tu_read_vector("valid-signatures/signature-extended.ksig", &len);
  for (size_t n = 0; n < len; n++) {
    kl_sig_t *sig = (kl_sig_t *)1;
    kl_err_t e = {0};
    uint8_t *copy = malloc(n ? n : 1); /* exact-size copy so ASan sees any overread */
    assert_non_null(copy);
    memcpy(copy, buf, n);
    assert_int_not_equal(kl_sig_parse(copy, n, &sig, &e), 0);
    assert_null(sig);
    assert_true(e.msg[0] != '\0');
    free(copy);
  }
  free(buf);
}

static void test_oversize(void **state) {
  (void)state;
  size_t n = KL_TLV_MAX_SIZE + 1;
  uint8_t *big = calloc(1, n);
  kl_sig_t *sig;
  kl_err_t e = {0};
  assert_int_equal(kl_sig_parse(big, n, &sig, &e), KL_ETOOBIG);
  assert_non_null(strstr(e.msg, "65539"));
  free(big);
}

/* Wraps extra bytes into a copy of a signature's top-level element. */
static uint8_t *with_extra(const char *vector, const uint8_t *extra, size_t extra_len, size_t *out_len) {
  size_t len;
  uint8_t *buf = tu_read_vector(vector, &len);
  kl_tlv_t top;
  assert_int_equal(kl_tlv_parse_one(buf, len, &top, NULL), 0);
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  kl_buf_put(&b, top.value, top.len);
  kl_buf_put(&b, extra, extra_len);
  assert_int_equal(kl_tlv_close(&b, m, KL_T_SIGNATURE, 0), 0);
  free(buf);
  return kl_buf_steal(&b, out_len);
}

static void test_unknown_elements(void **state) {
  (void)state;
  size_t len;
  kl_sig_t *sig;
  kl_err_t e = {0};
  kl_verify_result_t res;
  const uint8_t critical[] = {0x1D, 0x01, 0xAB};
  uint8_t *buf = with_extra("valid-signatures/signature-extended.ksig", critical, sizeof critical, &len);
  assert_int_equal(kl_sig_parse(buf, len, &sig, &e), KL_ECRITICAL);
  assert_non_null(strstr(e.msg, "unknown critical element 0x1D"));
  assert_non_null(strstr(e.msg, "offset"));
  free(buf);
  const uint8_t noncritical[] = {0x5D, 0x02, 0xAB, 0xCD};
  buf = with_extra("valid-signatures/signature-extended.ksig", noncritical, sizeof noncritical, &len);
  assert_int_equal(kl_sig_parse(buf, len, &sig, &e), 0);
  size_t out_len;
  const uint8_t *out = kl_sig_bytes(sig, &out_len);
  assert_int_equal(out_len, len);
  assert_memory_equal(out, buf, len); /* kept and re-emitted unchanged */
  kl_verify(sig, KL_POLICY_INTERNAL, NULL, &res);
  assert_int_equal(res.verdict, KL_VER_OK);
  kl_sig_free(sig);
  free(buf);
}

static void test_two_anchors_rejected(void **state) {
  (void)state;
  size_t len, alen;
  kl_sig_t *sig, *auth;
  kl_err_t e = {0};
  uint8_t *a = tu_read_vector("valid-signatures/signature-element-order-is-changed.ksig", &alen);
  assert_int_equal(kl_sig_parse(a, alen, &auth, &e), 0);
  /* Take its 0x805 and add it to an extended signature that has a 0x803. */
  kl_tlv_t top, c;
  kl_tlv_iter_t it;
  assert_int_equal(kl_tlv_parse_one(auth->raw, auth->raw_len, &top, NULL), 0);
  kl_tlv_iter_children(&it, auth->raw, &top);
  const uint8_t *rec = NULL;
  size_t rec_len = 0;
  while (kl_tlv_next(&it, &c, NULL) > 0)
    if (c.type == KL_T_CAL_AUTH) rec = c.raw, rec_len = c.raw_len;
  assert_non_null(rec);
  uint8_t *buf = with_extra("valid-signatures/signature-extended.ksig", rec, rec_len, &len);
  assert_int_equal(kl_sig_parse(buf, len, &sig, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "both a publication record and a calendar authentication record"));
  free(buf);
  kl_sig_free(auth);
  free(a);
}

static void test_rebuild(void **state) {
  (void)state;
  size_t len, out_len;
  kl_sig_t *sig, *again, *bare;
  kl_err_t e = {0};
  kl_verify_result_t res;
  uint8_t *buf = tu_read_vector("valid-signatures/signature-extended.ksig", &len);
  assert_int_equal(kl_sig_parse(buf, len, &sig, &e), 0);
  kl_tlv_t top, c, cal = {0}, pub = {0};
  kl_tlv_iter_t it;
  assert_int_equal(kl_tlv_parse_one(sig->raw, sig->raw_len, &top, NULL), 0);
  kl_tlv_iter_children(&it, sig->raw, &top);
  while (kl_tlv_next(&it, &c, NULL) > 0) {
    if (c.type == KL_T_CAL_CHAIN) cal = c;
    if (c.type == KL_T_PUB_REC) pub = c;
  }
  /* Same parts back: the same bytes (chains first, then calendar chain, then the record). */
  assert_int_equal(kl_sig_rebuild(sig, cal.raw, cal.raw_len, pub.raw, pub.raw_len, &again, &e), 0);
  const uint8_t *out = kl_sig_bytes(again, &out_len);
  assert_int_equal(out_len, len);
  assert_memory_equal(out, buf, len);
  /* Without the calendar part: only the aggregation chains remain, internally valid. */
  assert_int_equal(kl_sig_rebuild(sig, NULL, 0, NULL, 0, &bare, &e), 0);
  assert_null(bare->cal);
  assert_null(bare->pub);
  kl_verify(bare, KL_POLICY_INTERNAL, NULL, &res);
  assert_int_equal(res.verdict, KL_VER_OK);
  /* An anchor without a calendar chain is refused. */
  kl_sig_t *bad = NULL;
  assert_int_equal(kl_sig_rebuild(sig, NULL, 0, pub.raw, pub.raw_len, &bad, &e), KL_EFORMAT);
  assert_null(bad);
  kl_sig_free(bare);
  kl_sig_free(again);
  kl_sig_free(sig);
  free(buf);
}

/* Failures are failures whether or not the caller asks for a message. */
static void test_errors_without_message(void **state) {
  (void)state;
  size_t len;
  kl_sig_t *sig = NULL;
  uint8_t *buf = tu_read_vector("internal-policy-signatures/../invalid-signatures/aggregation-chain/"
                                "invalid-signature-aggr-chain-aggr-time-datahash-value.tlv", &len);
  assert_int_equal(kl_sig_parse(buf, len, &sig, NULL), KL_EFORMAT);
  assert_null(sig);
  free(buf);
  /* A publication record whose time has a leading zero byte. */
  const uint8_t rec[] = {0x08, 0x29, 0x10, 0x27, 0x02, 0x02, 0x00, 0x01, 0x04, 0x21, 0x01,
                         1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                         17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
  kl_tlv_t t;
  kl_pub_rec_t pr;
  kl_arena_t a = KL_ARENA_INIT;
  assert_int_equal(kl_tlv_parse_one(rec, sizeof rec, &t, NULL), 0);
  assert_int_equal(kl_pub_rec_decode(&t, rec, &a, &pr, NULL), KL_EFORMAT);
  kl_arena_free(&a);
}

static void test_accessors(void **state) {
  (void)state;
  size_t len;
  kl_sig_t *sig;
  uint8_t *buf = tu_read_vector("valid-signatures/signature-extended.ksig", &len);
  assert_int_equal(kl_sig_parse(buf, len, &sig, NULL), 0);
  assert_int_equal(kl_sig_signing_time(sig), 1710452040);
  kl_imprint_t want;
  assert_int_equal(kl_imprint_parse_text(&want, "0111A700B0C8066C47ECBA05ED37BC14DCADB238552D86C659342D1D7E87B8772D", NULL), 0);
  assert_true(kl_imprint_eq(kl_sig_document_hash(sig), &want));
  assert_int_equal(sig->n_chains, 5);
  /* Sorted bottom-up: chain index lists get shorter. */
  for (size_t i = 1; i < sig->n_chains; i++) assert_int_equal(sig->chains[i].n_index + 1, sig->chains[i - 1].n_index);
  assert_string_equal(sig->chains[0].links[0].meta.client_id, "anon");
  assert_string_equal(sig->chains[0].links[0].meta.machine_id, "ksigw-testuser:1");
  assert_true(sig->chains[0].links[0].meta.trusted);
  kl_sig_free(sig);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_all_valid), cmocka_unit_test(test_every_truncation_fails_cleanly),
      cmocka_unit_test(test_oversize),             cmocka_unit_test(test_unknown_elements),
      cmocka_unit_test(test_two_anchors_rejected), cmocka_unit_test(test_rebuild),
      cmocka_unit_test(test_accessors),            cmocka_unit_test(test_errors_without_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
