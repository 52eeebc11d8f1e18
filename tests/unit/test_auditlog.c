/* The audit log's format and chain (core/src/auditlog.h): records round-trip canonically, a
 * whole log scans and its chain holds; a record altered, removed, reordered, repeated, or a log
 * cut inside a record (torn tail) is found, naming the first bad seq; the signatures file's
 * entries scan in increasing seq order; non-canonical and unknown elements are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditlog.h"
#include "keyless/tlv.h"
#include "testutil.h"

#define N 6

typedef struct logbuf {
  kl_buf_t b;
  size_t off[N + 1]; /* where record i+1 starts; off[N] = the end */
} logbuf_t;

/* N chained records after the magic. */
static void make_log(logbuf_t *l) {
  char details[64];
  kl_imprint_t prev;
  kl_err_t e = {0};
  kl_buf_init(&l->b);
  kl_buf_put(&l->b, KL_AUDIT_LOG_MAGIC, KL_AUDIT_MAGIC_LEN);
  kl_audit_zero(&prev);
  for (int i = 0; i < N; i++) {
    snprintf(details, sizeof details, "id=%d addr=127.0.0.1:%d", i + 1, 9000 + i);
    kl_audit_rec_t r = {.seq = (uint64_t)i + 1, .time_ms = 1700000000000ull + (uint64_t)i, .node = 2,
                        .type = i % 2 ? "membership_add" : "config_reload", .actor = "admin/operator",
                        .details = details, .prev = prev};
    l->off[i] = l->b.len;
    assert_int_equal(kl_audit_rec_encode(&l->b, &r, &e), 0);
    assert_int_equal(kl_hash(KL_HASH_SHA256, l->b.p + l->off[i], l->b.len - l->off[i], &prev, &e), 0);
  }
  l->off[N] = l->b.len;
}

/* Scans p[0..n) and runs the chain check: 0 or the first bad seq (with msg). */
static uint64_t check(const uint8_t *p, size_t n, const bool *proven, char *msg) {
  kl_audit_scan_t s;
  kl_err_t e = {0};
  uint64_t bad = 0;
  assert_int_equal(kl_audit_log_scan(p, n, &s, &e), 0);
  assert_false(s.torn);
  assert_false(s.bad);
  int r = kl_audit_chain_check(s.recs, s.n, proven, &bad, &e);
  snprintf(msg, KL_ERR_MSG_MAX, "%s", r ? e.msg : "");
  kl_audit_scan_free(&s);
  return r ? bad : 0;
}

static void test_roundtrip(void **state) {
  (void)state;
  logbuf_t l;
  char msg[KL_ERR_MSG_MAX];
  make_log(&l);
  kl_audit_scan_t s;
  kl_err_t e = {0};
  assert_int_equal(kl_audit_log_scan(l.b.p, l.b.len, &s, &e), 0);
  assert_int_equal(s.n, N);
  assert_int_equal(s.good_len, l.b.len);
  assert_int_equal(s.recs[2].seq, 3);
  assert_int_equal(s.recs[2].node, 2);
  assert_string_equal(s.recs[2].type, "config_reload");
  assert_string_equal(s.recs[1].actor, "admin/operator");
  assert_string_equal(s.recs[0].details, "id=1 addr=127.0.0.1:9000");
  assert_int_equal(s.recs[3].offset, l.off[3]);
  assert_true(kl_imprint_eq(&s.recs[3].prev, &s.recs[2].hash));
  kl_audit_scan_free(&s);
  assert_int_equal(check(l.b.p, l.b.len, NULL, msg), 0);
  /* the bare magic is an empty log; another magic is not a log */
  assert_int_equal(check(l.b.p, KL_AUDIT_MAGIC_LEN, NULL, msg), 0);
  assert_int_equal(kl_audit_log_scan((const uint8_t *)"KLAUDSG1", 8, &s, &e), KL_EFORMAT);
  kl_buf_free(&l.b);
}

static void test_altered(void **state) {
  (void)state;
  logbuf_t l;
  char msg[KL_ERR_MSG_MAX];
  make_log(&l);
  /* record 3 ends at off[3] with its prev imprint: alter seq 3's prev. Without proof the check
   * blames the record before (2); with seq 2 proven intact by its signature, seq 3 */
  l.b.p[l.off[3] - 5] ^= 0x01;
  assert_int_equal(check(l.b.p, l.b.len, NULL, msg), 2);
  assert_non_null(strstr(msg, "altered"));
  bool proven[N] = {true, true, true, true, true, true};
  assert_int_equal(check(l.b.p, l.b.len, proven, msg), 3);
  assert_non_null(strstr(msg, "seq 3: altered"));
  l.b.p[l.off[3] - 5] ^= 0x01;
  /* a byte of record 4's details (a printable letter changed): seq 5's prev no longer matches */
  uint8_t *d = NULL;
  for (size_t i = l.off[3]; i + 5 <= l.off[4] && d == NULL; i++)
    if (memcmp(l.b.p + i, "addr=", 5) == 0) d = l.b.p + i;
  assert_non_null(d);
  d[0] = 'A';
  assert_int_equal(check(l.b.p, l.b.len, NULL, msg), 4);
  assert_non_null(strstr(msg, "seq 4: altered"));
  kl_buf_free(&l.b);
}

static void test_removed_reordered(void **state) {
  (void)state;
  logbuf_t l;
  char msg[KL_ERR_MSG_MAX];
  make_log(&l);
  /* remove record 3 */
  kl_buf_t b = KL_BUF_INIT;
  kl_buf_put(&b, l.b.p, l.off[2]);
  kl_buf_put(&b, l.b.p + l.off[3], l.off[N] - l.off[3]);
  assert_int_equal(check(b.p, b.len, NULL, msg), 3);
  assert_non_null(strstr(msg, "seq 3 missing (removed)"));
  /* remove record 1 */
  kl_buf_reset(&b);
  kl_buf_put(&b, KL_AUDIT_LOG_MAGIC, KL_AUDIT_MAGIC_LEN);
  kl_buf_put(&b, l.b.p + l.off[1], l.off[N] - l.off[1]);
  assert_int_equal(check(b.p, b.len, NULL, msg), 1);
  /* swap records 3 and 4 */
  kl_buf_reset(&b);
  kl_buf_put(&b, l.b.p, l.off[2]);
  kl_buf_put(&b, l.b.p + l.off[3], l.off[4] - l.off[3]);
  kl_buf_put(&b, l.b.p + l.off[2], l.off[3] - l.off[2]);
  kl_buf_put(&b, l.b.p + l.off[4], l.off[N] - l.off[4]);
  assert_int_equal(check(b.p, b.len, NULL, msg), 3);
  assert_non_null(strstr(msg, "out of order"));
  /* record 2 repeated */
  kl_buf_reset(&b);
  kl_buf_put(&b, l.b.p, l.off[2]);
  kl_buf_put(&b, l.b.p + l.off[1], l.off[2] - l.off[1]);
  kl_buf_put(&b, l.b.p + l.off[2], l.off[N] - l.off[2]);
  assert_int_equal(check(b.p, b.len, NULL, msg), 3);
  kl_buf_free(&b);
  kl_buf_free(&l.b);
}

static void test_torn_and_bad(void **state) {
  (void)state;
  logbuf_t l;
  kl_audit_scan_t s;
  kl_err_t e = {0};
  make_log(&l);
  /* cut anywhere inside the last record: a torn tail after seq N-1 */
  for (size_t cut = l.off[N - 1] + 1; cut < l.off[N]; cut++) {
    assert_int_equal(kl_audit_log_scan(l.b.p, cut, &s, &e), 0);
    assert_true(s.torn);
    assert_false(s.bad);
    assert_int_equal(s.n, N - 1);
    assert_int_equal(s.good_len, l.off[N - 1]);
    assert_non_null(strstr(s.err.msg, "after seq 5"));
    kl_audit_scan_free(&s);
  }
  /* a whole element that is not a record (the type byte of record 3 changed) */
  l.b.p[l.off[2] + 1] ^= 0x01;
  assert_int_equal(kl_audit_log_scan(l.b.p, l.b.len, &s, &e), 0);
  assert_true(s.bad);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.bad_offset, l.off[2]);
  assert_non_null(strstr(s.err.msg, "after seq 2"));
  kl_audit_scan_free(&s);
  kl_buf_free(&l.b);
}

static void test_strict(void **state) {
  (void)state;
  kl_audit_rec_t r = {.seq = 1, .time_ms = 5, .node = 1, .type = "x", .actor = "a", .details = ""}, out;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_audit_zero(&r.prev);
  assert_int_equal(kl_audit_rec_encode(&b, &r, &e), 0);
  assert_int_equal(kl_audit_rec_decode(b.p, b.len, &out, &e), 0);
  assert_string_equal(out.details, "");
  /* the non-critical flag set: not canonical */
  b.p[0] |= KL_TLV_FLAG_N;
  assert_int_not_equal(kl_audit_rec_decode(b.p, b.len, &out, &e), 0);
  /* control characters and empty types are refused by the encoder */
  kl_buf_reset(&b);
  r.details = "a\nb";
  assert_int_equal(kl_audit_rec_encode(&b, &r, &e), KL_EINVAL);
  r.details = "";
  r.type = "";
  assert_int_equal(kl_audit_rec_encode(&b, &r, &e), KL_EINVAL);
  /* a child missing: seq, time, node only */
  kl_buf_reset(&b);
  size_t m = kl_tlv_open(&b);
  kl_tlv_put_uint(&b, 1, 0, 1);
  kl_tlv_put_uint(&b, 2, 0, 1);
  kl_tlv_put_uint(&b, 3, 0, 1);
  kl_tlv_close(&b, m, KL_AUDIT_T_RECORD, 0);
  assert_int_equal(kl_audit_rec_decode(b.p, b.len, &out, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "0x04 missing"));
  kl_buf_free(&b);
}

static void test_sigs(void **state) {
  (void)state;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  kl_audit_sigs_t s;
  uint8_t fake[] = {0x88, 0x00, 0x00, 0x00}; /* an empty 0x800: the scan does not parse signatures */
  kl_buf_put(&b, KL_AUDIT_SIG_MAGIC, KL_AUDIT_MAGIC_LEN);
  for (uint64_t q = 1; q <= 3; q++) assert_int_equal(kl_audit_sig_encode(&b, q * 2, fake, sizeof fake, &e), 0);
  assert_int_equal(kl_audit_sigs_scan(b.p, b.len, &s, &e), 0);
  assert_false(s.bad || s.torn);
  assert_int_equal(s.n, 3);
  assert_non_null(kl_audit_sigs_find(&s, 4));
  assert_null(kl_audit_sigs_find(&s, 3));
  assert_int_equal(kl_audit_sigs_find(&s, 6)->sig_len, sizeof fake);
  kl_audit_sigs_free(&s);
  /* out of order */
  assert_int_equal(kl_audit_sig_encode(&b, 5, fake, sizeof fake, &e), 0);
  assert_int_equal(kl_audit_sigs_scan(b.p, b.len, &s, &e), 0);
  assert_true(s.bad);
  assert_int_equal(s.n, 3);
  kl_audit_sigs_free(&s);
  /* torn */
  assert_int_equal(kl_audit_sigs_scan(b.p, b.len - 2, &s, &e), 0);
  assert_true(s.torn);
  kl_audit_sigs_free(&s);
  kl_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_altered), cmocka_unit_test(test_removed_reordered),
      cmocka_unit_test(test_torn_and_bad), cmocka_unit_test(test_strict), cmocka_unit_test(test_sigs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
