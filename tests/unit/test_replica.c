/* Calendar replication: frames, Subscribe, Entries from a core calendar applied to a replica
 * that then agrees root for root (also in signed batches of every size around a block of 256
 * seconds); wrong genesis, gaps and garbage are refused. Signed batches
 * (kl_repl_receive): a batch applies only with a record that verifies under a trusted
 * calendar-auth certificate, for its last second, naming the root the replica computes; every
 * refusal leaves the replica as it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/pki.h"
#include "keyless/replica.h"
#include "testutil.h"

static char core_dir[256], rep_dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("core", core_dir, sizeof core_dir);
  tu_mkdtemp("rep", rep_dir, sizeof rep_dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(core_dir) | tu_rmrf(rep_dir);
}

static void test_frames(void **state) {
  (void)state;
  kl_buf_t b = KL_BUF_INIT;
  size_t n;
  kl_err_t e = {0};
  kl_frame_put(&b, (const uint8_t *)"hello", 5);
  assert_int_equal(b.len, 9);
  assert_int_equal(kl_frame_peek(b.p, 3, 100, &n, &e), 0);
  assert_int_equal(kl_frame_peek(b.p, 8, 100, &n, &e), 0);
  assert_int_equal(kl_frame_peek(b.p, 9, 100, &n, &e), 1);
  assert_int_equal(n, 5);
  assert_int_equal(kl_frame_peek(b.p, 9, 4, &n, &e), -1);
  assert_int_equal(e.code, KL_ETOOBIG);
  kl_buf_free(&b);
}

static void fill_core(kl_cal_t **core, uint64_t G, int n) {
  kl_err_t e = {0};
  assert_int_equal(kl_cal_create(core_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(core_dir, NULL, core, &e), 0);
  for (int k = 0; k < n; k++) {
    kl_imprint_t x;
    uint64_t t = G + (uint64_t)k;
    if (k % 5 == 2) continue; /* empty seconds */
    kl_hash(KL_HASH_SHA256, &t, sizeof t, &x, NULL);
    kl_cal_entry_t en = {t, &x};
    assert_int_equal(kl_cal_append(*core, &en, 1, &e), 0);
  }
}

static void test_replicate(void **state) {
  (void)state;
  const uint64_t G = 1800000000;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  fill_core(&core, G, 50);
  assert_int_equal(kl_cal_create(rep_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(rep_dir, NULL, &rep, &e), 0);
  /* The replica subscribes; the core answers in two batches. */
  assert_int_equal(kl_repl_encode_subscribe(&b, 0, 1, &e), 0);
  size_t n, applied;
  int is_sub;
  kl_repl_subscribe_t sub;
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  assert_int_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, NULL, &sub, &is_sub, &applied, &e), 0);
  assert_true(is_sub && sub.from_genesis);
  uint64_t cuts[3][2] = {{G, G + 20}, {G + 21, G + 49}};
  for (int k = 0; k < 2; k++) {
    kl_buf_reset(&b);
    assert_int_equal(kl_repl_encode_entries(&b, core, cuts[k][0], cuts[k][1], &e), 0);
    assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
    if (kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e)) fail_msg("%s", e.msg);
    assert_false(is_sub);
    assert_int_equal(applied, cuts[k][1] - cuts[k][0] + 1);
  }
  for (uint64_t P = G; P < G + 50; P++) {
    kl_imprint_t a, c;
    assert_int_equal(kl_cal_root(core, P, &a, &e), 0);
    assert_int_equal(kl_cal_root(rep, P, &c, &e), 0);
    assert_true(kl_imprint_eq(&a, &c));
  }
  /* The same batch again: a repeat, refused, nothing changes. */
  assert_int_not_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e), 0);
  assert_non_null(strstr(e.msg, "expected"));
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(rep, &info, &e), 0);
  assert_true(info.last == G + 49);
  /* Garbage. */
  const uint8_t junk[] = {0xFF, 0xFF, 0xFF, 0x01, 0x02};
  assert_int_equal(kl_repl_handle(junk, sizeof junk, rep, &sub, &is_sub, &applied, &e), KL_EFORMAT);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

static void test_wrong_genesis(void **state) {
  (void)state;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  size_t n, applied;
  int is_sub;
  kl_repl_subscribe_t sub;
  fill_core(&core, 1000, 10);
  assert_int_equal(kl_cal_create(rep_dir, 999, NULL, &e), 0);
  assert_int_equal(kl_cal_open(rep_dir, NULL, &rep, &e), 0);
  assert_int_equal(kl_repl_encode_entries(&b, core, 1000, 1009, &e), 0);
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  assert_int_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "genesis"));
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

/* ---- signed batches ---- */

static char pki_dir[2][256];
static kl_calauth_t *auth[2]; /* two keys: the trusted one and another */
static const uint8_t *der[2];
static size_t der_len[2];
static uint64_t G0; /* an even second of the last hour: the certificates are valid from an hour ago */

static int pki_setup(void **state) {
  (void)state;
  kl_err_t e = {0};
  G0 = ((uint64_t)time(NULL) - 1200) & ~(uint64_t)1;
  for (int k = 0; k < 2; k++) {
    char crt[600], key[600]; /* pki_dir (256; gcc with ASan counts the whole array, 512) and a file name */
    tu_mkdtemp(k ? "pki-other" : "pki", pki_dir[k], sizeof pki_dir[k]);
    if (kl_devpki_create(pki_dir[k], "replica-test@keyless.invalid", 30, &e)) {
      fprintf(stderr, "devpki: %s\n", e.msg);
      return -1;
    }
    snprintf(crt, sizeof crt, "%s/calendar-auth.crt", pki_dir[k]);
    snprintf(key, sizeof key, "%s/calendar-auth.key", pki_dir[k]);
    if (kl_calauth_load(crt, key, &auth[k], &e)) {
      fprintf(stderr, "calauth: %s\n", e.msg);
      return -1;
    }
    der[k] = kl_calauth_cert_der(auth[k], &der_len[k]);
  }
  return 0;
}

static int pki_teardown(void **state) {
  (void)state;
  int r = 0;
  for (int k = 0; k < 2; k++) {
    kl_calauth_free(auth[k]);
    r |= tu_rmrf(pki_dir[k]);
  }
  return r;
}

/* Trusts the first key only. */
static kl_repl_trust_t trust_first(bool insecure) {
  return (kl_repl_trust_t){&der[0], &der_len[0], 1, insecure};
}

static int receive(const kl_buf_t *b, kl_cal_t *rep, const kl_repl_trust_t *t, kl_repl_result_t *res, kl_err_t *e) {
  size_t n;
  assert_int_equal(kl_frame_peek(b->p, b->len, KL_REPL_MAX_FRAME, &n, e), 1);
  return kl_repl_receive(b->p + KL_FRAME_HDR, n, rep, t, res, e);
}

typedef struct snap {
  uint64_t last;
  kl_imprint_t root;
} snap_t;

static snap_t snap(kl_cal_t *cal) {
  snap_t s = {0};
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(cal, &info, NULL), 0);
  assert_false(info.empty);
  s.last = info.last;
  assert_int_equal(kl_cal_root(cal, info.last, &s.root, NULL), 0);
  return s;
}

static void assert_unchanged(kl_cal_t *cal, const snap_t *before) {
  snap_t now = snap(cal);
  assert_true(now.last == before->last);
  assert_true(kl_imprint_eq(&now.root, &before->root));
}

static void open_replica(kl_cal_t **rep, uint64_t G) {
  assert_int_equal(kl_cal_create(rep_dir, G, NULL, NULL), 0);
  assert_int_equal(kl_cal_open(rep_dir, NULL, rep, NULL), 0);
}

static void test_signed_applies(void **state) {
  (void)state;
  const uint64_t G = G0 + 1; /* odd: the first leaf pairs with a genesis node */
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  fill_core(&core, G, 60);
  open_replica(&rep, G);
  /* One second at a time, then in batches of 7 and one of the rest: every forest shape. */
  uint64_t from = G;
  while (from < G + 60) {
    uint64_t to = from < G + 20 ? from : from + 6 < G + 45 ? from + 6 : G + 59;
    kl_buf_reset(&b);
    assert_int_equal(kl_repl_encode_entries_signed(&b, core, from, to, auth[0], &e), 0);
    if (receive(&b, rep, &t, &res, &e)) fail_msg("%llu..%llu: %s", (unsigned long long)from, (unsigned long long)to, e.msg);
    assert_true(res.is_entries && res.authenticated && res.has_roots);
    assert_int_equal(res.applied, to - from + 1);
    assert_true(res.first == from && res.last == to && res.committed_last == G + 59);
    assert_true(kl_imprint_eq(&res.computed, &res.signed_root));
    kl_imprint_t a;
    assert_int_equal(kl_cal_root(rep, to, &a, &e), 0);
    assert_true(kl_imprint_eq(&a, &res.signed_root));
    from = to + 1;
  }
  for (uint64_t P = G; P < G + 60; P++) {
    kl_imprint_t a, c;
    assert_int_equal(kl_cal_root(core, P, &a, &e), 0);
    assert_int_equal(kl_cal_root(rep, P, &c, &e), 0);
    assert_true(kl_imprint_eq(&a, &c));
  }
  kl_cal_audit_t report;
  if (kl_cal_audit(rep, NULL, &report, &e)) fail_msg("audit: %s", e.msg);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

/* Signed batches of every size around a block of 256 seconds (storage format 2): the replica
 * computes each signed root from its blocks, including the partial last one, and ends equal. */
static void test_signed_across_blocks(void **state) {
  (void)state;
  const uint64_t G = G0 + 1;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  kl_cal_entry_t en[300];
  kl_imprint_t x[300];
  assert_int_equal(kl_cal_create(core_dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(core_dir, NULL, &core, &e), 0);
  for (uint64_t from = G; from < G + 1500; from += 300) { /* every 5th second empty */
    for (size_t k = 0; k < 300; k++) {
      uint64_t s = from + k;
      kl_hash(KL_HASH_SHA256, &s, sizeof s, &x[k], NULL);
      en[k].time = s;
      en[k].root = s % 5 == 2 ? NULL : &x[k];
    }
    assert_int_equal(kl_cal_append(core, en, 300, &e), 0);
  }
  open_replica(&rep, G);
  static const uint64_t sizes[] = {1, 255, 256, 2, 257, 31, 33, 1, 300};
  uint64_t from = G;
  for (size_t q = 0; from < G + 1500; q++) {
    uint64_t to = from + sizes[q % (sizeof sizes / sizeof *sizes)] - 1;
    if (to > G + 1499) to = G + 1499;
    kl_buf_reset(&b);
    assert_int_equal(kl_repl_encode_entries_signed(&b, core, from, to, auth[0], &e), 0);
    if (receive(&b, rep, &t, &res, &e)) fail_msg("%llu..%llu: %s", (unsigned long long)from, (unsigned long long)to, e.msg);
    assert_true(res.has_roots && kl_imprint_eq(&res.computed, &res.signed_root));
    assert_int_equal(res.applied, to - from + 1);
    from = to + 1;
  }
  for (uint64_t P = G; P < G + 1500; P += 7) {
    kl_imprint_t a, c;
    assert_int_equal(kl_cal_root(core, P, &a, &e), 0);
    assert_int_equal(kl_cal_root(rep, P, &c, &e), 0);
    assert_true(kl_imprint_eq(&a, &c));
  }
  kl_cal_audit_t report;
  if (kl_cal_audit(rep, NULL, &report, &e)) fail_msg("audit: %s", e.msg);
  assert_int_equal(report.leaves, 1500);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

/* A hand-made Entries frame (protobuf wire format, docs/formats.md §3.2): seconds from..from+n-1
 * with roots[k] (NULL: empty), and an optional record. */
static void pb_varint(kl_buf_t *b, uint64_t v) {
  for (; v >= 0x80; v >>= 7) kl_buf_put_u8(b, (uint8_t)(v | 0x80));
  kl_buf_put_u8(b, (uint8_t)v);
}
static void pb_len(kl_buf_t *b, unsigned field, const uint8_t *p, size_t n) {
  pb_varint(b, (uint64_t)field << 3 | 2);
  pb_varint(b, n);
  kl_buf_put(b, p, n);
}
static void entries_frame(kl_buf_t *out, uint64_t G, uint64_t from, size_t n, const kl_imprint_t *const *roots,
                          const kl_buf_t *rec) {
  kl_buf_t en = KL_BUF_INIT, msg = KL_BUF_INIT;
  pb_varint(&en, 1 << 3);
  pb_varint(&en, G);
  for (size_t k = 0; k < n; k++) {
    kl_buf_t ce = KL_BUF_INIT;
    uint8_t imp[KL_IMPRINT_MAX];
    pb_varint(&ce, 1 << 3);
    pb_varint(&ce, from + k);
    if (roots[k]) pb_len(&ce, 2, imp, kl_imprint_to_bytes(roots[k], imp));
    pb_len(&en, 2, ce.p, ce.len);
    kl_buf_free(&ce);
  }
  pb_varint(&en, 3 << 3);
  pb_varint(&en, from + n - 1);
  if (rec) pb_len(&en, 4, rec->p, rec->len);
  pb_len(&msg, 2, en.p, en.len);
  kl_frame_put(out, msg.p, msg.len);
  assert_true(kl_buf_ok(out));
  kl_buf_free(&en);
  kl_buf_free(&msg);
}

static void round_root(uint64_t t, const char *tag, kl_imprint_t *out) {
  char s[64];
  int n = snprintf(s, sizeof s, "%s %llu", tag, (unsigned long long)t);
  kl_hash(KL_HASH_SHA256, s, (size_t)n, out, NULL);
}

/* The replica's rounds G..G+9 as the core has them; then the batch G+10..G+14 as given. */
static void refusal_setup(kl_cal_t **core, kl_cal_t **rep, uint64_t G) {
  fill_core(core, G, 15);
  open_replica(rep, G);
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_err_t e = {0};
  kl_repl_trust_t t = trust_first(false);
  assert_int_equal(kl_repl_encode_entries_signed(&b, *core, G, G + 9, auth[0], &e), 0);
  if (receive(&b, *rep, &t, &res, &e)) fail_msg("%s", e.msg);
  kl_buf_free(&b);
}

static void test_forged_root_refused(void **state) {
  (void)state;
  const uint64_t G = G0;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT, rec = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  refusal_setup(&core, &rep, G);
  snap_t before = snap(rep);
  /* The batch as the core has it, but second G+12's round replaced by a forged one; the record
   * is the core's genuine one for G+14. */
  kl_imprint_t leaves[5], forged, root;
  const kl_imprint_t *roots[5];
  for (int k = 0; k < 5; k++) {
    assert_int_equal(kl_cal_leaf(core, G + 10 + (uint64_t)k, &leaves[k], &e), 0);
    roots[k] = &leaves[k];
  }
  round_root(G + 12, "forged", &forged);
  roots[2] = &forged;
  assert_int_equal(kl_cal_root(core, G + 14, &root, &e), 0);
  assert_int_equal(kl_calauth_sign(auth[0], G + 14, &root, &rec, &e), 0);
  entries_frame(&b, G, G + 10, 5, roots, &rec);
  assert_int_equal(receive(&b, rep, &t, &res, &e), KL_ESTATE);
  assert_true(res.is_entries && res.authenticated && res.has_roots);
  assert_true(res.last == G + 14 && res.applied == 0);
  assert_true(kl_imprint_eq(&res.signed_root, &root));
  assert_false(kl_imprint_eq(&res.computed, &root));
  char hex[2 * KL_IMPRINT_MAX + 1];
  assert_non_null(strstr(e.msg, kl_imprint_hex(&root, hex)));        /* the signed root */
  assert_non_null(strstr(e.msg, kl_imprint_hex(&res.computed, hex))); /* and the computed one */
  char sec[32];
  snprintf(sec, sizeof sec, "second %llu", (unsigned long long)(G + 14));
  assert_non_null(strstr(e.msg, sec));
  assert_unchanged(rep, &before);
  /* The same seconds as the core has them, with the same record: applied. */
  roots[2] = &leaves[2];
  kl_buf_reset(&b);
  entries_frame(&b, G, G + 10, 5, roots, &rec);
  if (receive(&b, rep, &t, &res, &e)) fail_msg("%s", e.msg);
  assert_int_equal(res.applied, 5);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
  kl_buf_free(&rec);
}

/* The replica's own history differs from the core's (a forged second it took earlier): the
 * core's genuinely signed batch does not lead to the core's root here, and is refused. */
static void test_diverged_history_refused(void **state) {
  (void)state;
  const uint64_t G = G0;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  fill_core(&core, G, 30);
  open_replica(&rep, G);
  for (uint64_t s = G; s < G + 10; s++) {
    kl_imprint_t x, *p = NULL;
    if (s == G + 4) {
      round_root(s, "forged", &x);
      p = &x;
    } else if (kl_cal_leaf(core, s, &x, &e) == 0) {
      p = &x;
    }
    kl_cal_entry_t en = {s, p};
    assert_int_equal(kl_cal_append(rep, &en, 1, &e), 0);
  }
  snap_t before = snap(rep);
  assert_int_equal(kl_repl_encode_entries_signed(&b, core, G + 10, G + 29, auth[0], &e), 0);
  assert_int_equal(receive(&b, rep, &t, &res, &e), KL_ESTATE);
  assert_true(res.has_roots && !kl_imprint_eq(&res.computed, &res.signed_root));
  assert_unchanged(rep, &before);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

static void test_other_key_refused(void **state) {
  (void)state;
  const uint64_t G = G0;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  refusal_setup(&core, &rep, G);
  snap_t before = snap(rep);
  /* The right seconds and root, signed with a key this replica does not trust. */
  assert_int_equal(kl_repl_encode_entries_signed(&b, core, G + 10, G + 14, auth[1], &e), 0);
  assert_int_equal(receive(&b, rep, &t, &res, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "not a trusted"));
  assert_false(res.authenticated);
  assert_unchanged(rep, &before);
  /* Trusting both keys, the same batch applies. */
  kl_repl_trust_t both = {der, der_len, 2, false};
  if (receive(&b, rep, &both, &res, &e)) fail_msg("%s", e.msg);
  assert_int_equal(res.applied, 5);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
}

/* The record is genuine but for another second than the batch's last. */
static void test_wrong_second_refused(void **state) {
  (void)state;
  const uint64_t G = G0;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT, rec = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  refusal_setup(&core, &rep, G);
  snap_t before = snap(rep);
  kl_imprint_t leaves[5], root;
  const kl_imprint_t *roots[5];
  for (int k = 0; k < 5; k++) {
    assert_int_equal(kl_cal_leaf(core, G + 10 + (uint64_t)k, &leaves[k], &e), 0);
    roots[k] = &leaves[k];
  }
  assert_int_equal(kl_cal_root(core, G + 13, &root, &e), 0);
  assert_int_equal(kl_calauth_sign(auth[0], G + 13, &root, &rec, &e), 0);
  entries_frame(&b, G, G + 10, 5, roots, &rec);
  assert_int_equal(receive(&b, rep, &t, &res, &e), KL_EAUTH);
  char sec[40];
  snprintf(sec, sizeof sec, "for second %llu", (unsigned long long)(G + 13));
  assert_non_null(strstr(e.msg, sec));
  assert_unchanged(rep, &before);
  /* A batch that ends at that second takes the same record. */
  kl_buf_reset(&b);
  entries_frame(&b, G, G + 10, 4, roots, &rec);
  if (receive(&b, rep, &t, &res, &e)) fail_msg("%s", e.msg);
  assert_int_equal(res.applied, 4);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
  kl_buf_free(&rec);
}

static void test_no_record(void **state) {
  (void)state;
  const uint64_t G = G0;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT, junk = KL_BUF_INIT;
  kl_repl_result_t res;
  kl_repl_trust_t t = trust_first(false);
  refusal_setup(&core, &rep, G);
  snap_t before = snap(rep);
  assert_int_equal(kl_repl_encode_entries(&b, core, G + 10, G + 12, &e), 0);
  assert_int_equal(receive(&b, rep, &t, &res, &e), KL_EAUTH);
  assert_non_null(strstr(e.msg, "no calendar authentication record"));
  assert_unchanged(rep, &before);
  /* Certificates but no insecure, and no certificates and no insecure: refused too. */
  kl_repl_trust_t none = {NULL, NULL, 0, false};
  kl_buf_t sb = KL_BUF_INIT;
  assert_int_equal(kl_repl_encode_entries_signed(&sb, core, G + 10, G + 12, auth[0], &e), 0);
  assert_int_equal(receive(&sb, rep, &none, &res, &e), KL_EPKI);
  assert_unchanged(rep, &before);
  /* A record that is not a 0x805 TLV. */
  kl_imprint_t leaves[3];
  const kl_imprint_t *roots[3];
  for (int k = 0; k < 3; k++) {
    assert_int_equal(kl_cal_leaf(core, G + 10 + (uint64_t)k, &leaves[k], &e), 0);
    roots[k] = &leaves[k];
  }
  kl_buf_put(&junk, (const uint8_t[]){0x88, 0x05, 0x00, 0x03, 0x61, 0x62, 0x63}, 7);
  kl_buf_t jb = KL_BUF_INIT;
  entries_frame(&jb, G, G + 10, 3, roots, &junk);
  assert_int_equal(receive(&jb, rep, &t, &res, &e), KL_EFORMAT);
  assert_unchanged(rep, &before);
  /* insecure: the unsigned batch applies. */
  kl_repl_trust_t lax = trust_first(true);
  if (receive(&b, rep, &lax, &res, &e)) fail_msg("%s", e.msg);
  assert_int_equal(res.applied, 3);
  assert_false(res.authenticated);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
  kl_buf_free(&sb);
  kl_buf_free(&jb);
  kl_buf_free(&junk);
}

/* kl_repl_handle (no trust: the core's catch-up) takes a signed batch, and still checks the
 * record's root: a forged second is refused there too. An empty batch changes nothing. */
static void test_permissive(void **state) {
  (void)state;
  const uint64_t G = G0;
  kl_cal_t *core, *rep;
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT, rec = KL_BUF_INIT;
  kl_repl_result_t res;
  refusal_setup(&core, &rep, G);
  snap_t before = snap(rep);
  kl_imprint_t leaves[5], forged, root;
  const kl_imprint_t *roots[5];
  for (int k = 0; k < 5; k++) {
    assert_int_equal(kl_cal_leaf(core, G + 10 + (uint64_t)k, &leaves[k], &e), 0);
    roots[k] = &leaves[k];
  }
  round_root(G + 11, "forged", &forged);
  roots[1] = &forged;
  assert_int_equal(kl_cal_root(core, G + 14, &root, &e), 0);
  assert_int_equal(kl_calauth_sign(auth[1], G + 14, &root, &rec, &e), 0); /* any key: not checked here */
  entries_frame(&b, G, G + 10, 5, roots, &rec);
  size_t n, applied;
  int is_sub;
  kl_repl_subscribe_t sub;
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  assert_int_equal(kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e), KL_ESTATE);
  assert_unchanged(rep, &before);
  kl_buf_reset(&b);
  entries_frame(&b, G, G + 10, 0, roots, &rec); /* no entries: the record is ignored */
  kl_repl_trust_t t = trust_first(false);
  if (receive(&b, rep, &t, &res, &e)) fail_msg("%s", e.msg);
  assert_true(res.is_entries && res.applied == 0 && !res.authenticated);
  assert_unchanged(rep, &before);
  kl_buf_reset(&b);
  assert_int_equal(kl_repl_encode_entries_signed(&b, core, G + 10, G + 14, auth[0], &e), 0);
  assert_int_equal(kl_frame_peek(b.p, b.len, KL_REPL_MAX_FRAME, &n, &e), 1);
  if (kl_repl_handle(b.p + KL_FRAME_HDR, n, rep, &sub, &is_sub, &applied, &e)) fail_msg("%s", e.msg);
  assert_int_equal(applied, 5);
  kl_cal_close(rep);
  kl_cal_close(core);
  kl_buf_free(&b);
  kl_buf_free(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frames),
      cmocka_unit_test_setup_teardown(test_replicate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_genesis, setup, teardown),
      cmocka_unit_test_setup_teardown(test_signed_applies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_signed_across_blocks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forged_root_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diverged_history_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_key_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_second_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_permissive, setup, teardown),
  };
  return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
