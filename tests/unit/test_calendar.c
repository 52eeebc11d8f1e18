/* The LMDB calendar against a reference tree: roots and chains for every (t, P) on small
 * calendars, realistic genesis times, fillers, persistence, audit, corruption, a full map, and
 * appends killed with SIGKILL at random moments. */
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keyless/calendar.h"
#include "keyless/chains.h"
#include "keyless/sig.h"
#include "testutil.h"

static char dir[256];

static int setup(void **state) {
  (void)state;
  tu_mkdtemp("cal", dir, sizeof dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmrf(dir);
}

/* ---- reference ---- */
typedef struct ref {
  uint64_t genesis, last;
  kl_imprint_t *leaf; /* index t - genesis */
} ref_t;

static kl_imprint_t ref_root(const ref_t *rf, uint64_t lo, uint64_t n) {
  kl_hasher_t h;
  kl_imprint_t out;
  bool pow2 = (n & (n - 1)) == 0;
  if (pow2 && lo % n == 0 && lo + n <= rf->genesis) {
    unsigned hh = 0;
    while (((uint64_t)1 << hh) < n) hh++;
    kl_cal_genesis_node(hh, lo >> hh, &out);
    return out;
  }
  if (n == 1) return rf->leaf[lo - rf->genesis];
  uint64_t k = 1;
  while (k * 2 < n) k *= 2;
  kl_imprint_t l = ref_root(rf, lo, k), r = ref_root(rf, lo + k, n - k);
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  assert_int_equal(kl_cal_parent(&h, &l, &r, &out, NULL), 0);
  kl_hasher_close(&h);
  return out;
}

static void random_imprint(kl_imprint_t *x, uint64_t seed) {
  assert_int_equal(kl_hash(seed % 5 == 4 ? KL_HASH_SHA512 : KL_HASH_SHA256, &seed, sizeof seed, x, NULL), 0);
}

/* Builds a calendar and the reference side by side; every 7th second is left empty. */
static kl_cal_t *build(ref_t *rf, uint64_t genesis, uint64_t n) {
  kl_cal_t *cal;
  kl_err_t e = {0};
  assert_int_equal(kl_cal_create(dir, genesis, NULL, &e), 0);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  rf->genesis = genesis;
  rf->last = genesis + n - 1;
  rf->leaf = calloc(n, sizeof *rf->leaf);
  for (uint64_t t = genesis; t < genesis + n; t++) {
    if ((t - genesis) % 7 == 3 && t != genesis + n - 1) {
      kl_cal_filler_leaf(t, &rf->leaf[t - genesis]);
      continue; /* skipped: the next append fills it */
    }
    random_imprint(&rf->leaf[t - genesis], t);
    kl_cal_entry_t en = {t, &rf->leaf[t - genesis]};
    if (kl_cal_append(cal, &en, 1, &e)) fail_msg("append %llu: %s", (unsigned long long)t, e.msg);
  }
  return cal;
}

static void check_chain(kl_cal_t *cal, const ref_t *rf, uint64_t t, uint64_t P, kl_cal_chain_t *prev) {
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  kl_tlv_t tlv;
  kl_cal_chain_t c;
  kl_arena_t a = KL_ARENA_INIT;
  kl_hasher_t h;
  kl_imprint_t root;
  uint64_t tt;
  if (kl_cal_chain(cal, t, P, &b, &e)) fail_msg("chain %llu..%llu: %s", (unsigned long long)t, (unsigned long long)P, e.msg);
  assert_int_equal(kl_tlv_parse_one(b.p, b.len, &tlv, NULL), 0);
  assert_int_equal(tlv.type, KL_T_CAL_CHAIN);
  assert_int_equal(kl_cal_chain_decode(&tlv, b.p, &a, &c, &e), 0);
  assert_true(c.pub_time == P && c.aggr_time == t && c.has_aggr_time);
  assert_true(kl_imprint_eq(&c.input, &rf->leaf[t - rf->genesis]));
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  assert_int_equal(kl_cal_chain_root(&h, &c, &root, NULL), 0);
  kl_hasher_close(&h);
  kl_imprint_t want = ref_root(rf, 0, P + 1);
  assert_true(kl_imprint_eq(&root, &want));
  assert_true(kl_cal_chain_time(&c, &tt));
  assert_true(tt == t);
  if (prev != NULL) assert_true(kl_cal_chain_compatible(prev, &c));
  kl_arena_free(&a);
  kl_buf_free(&b);
}

static void test_small_all_pairs(void **state) {
  (void)state;
  ref_t rf;
  kl_cal_t *cal = build(&rf, 5, 60);
  kl_err_t e = {0};
  for (uint64_t P = rf.genesis; P <= rf.last; P++) {
    kl_imprint_t root, want = ref_root(&rf, 0, P + 1);
    assert_int_equal(kl_cal_root(cal, P, &root, &e), 0);
    assert_true(kl_imprint_eq(&root, &want));
    for (uint64_t t = rf.genesis; t <= P; t++) check_chain(cal, &rf, t, P, NULL);
  }
  kl_imprint_t leaf;
  assert_int_equal(kl_cal_leaf(cal, 5 + 3, &leaf, &e), 0);
  kl_imprint_t filler;
  kl_cal_filler_leaf(8, &filler);
  assert_true(kl_imprint_eq(&leaf, &filler));
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(cal, &info, &e), 0);
  assert_true(info.genesis == 5 && info.last == 64 && info.rounds + info.fillers == 60 && info.fillers == 8);
  kl_cal_audit_t rep;
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), 0);
  assert_int_equal(rep.leaves, 60);
  assert_int_equal(kl_cal_check_consistent(cal, 20, 64, &e), 0);
  kl_cal_close(cal);
  free(rf.leaf);
}

static void test_realistic_times(void **state) {
  (void)state;
  ref_t rf;
  const uint64_t G = 1710452040; /* 2024-03-14 */
  kl_cal_t *cal = build(&rf, G, 300);
  uint64_t seed = 42;
  for (int k = 0; k < 300; k++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t P = G + (seed >> 33) % 300;
    uint64_t t = G + (seed >> 13) % (P - G + 1);
    kl_buf_t b = KL_BUF_INIT;
    check_chain(cal, &rf, t, P, NULL);
    /* The CAL-04 rule: t's right links stay as P grows. */
    kl_cal_chain_t first;
    kl_arena_t a = KL_ARENA_INIT;
    kl_tlv_t tlv;
    assert_int_equal(kl_cal_chain(cal, t, P, &b, NULL), 0);
    assert_int_equal(kl_tlv_parse_one(b.p, b.len, &tlv, NULL), 0);
    assert_int_equal(kl_cal_chain_decode(&tlv, b.p, &a, &first, NULL), 0);
    for (uint64_t P2 = P; P2 <= rf.last; P2 += 37) check_chain(cal, &rf, t, P2, &first);
    kl_arena_free(&a);
    kl_buf_free(&b);
  }
  kl_cal_close(cal);
  free(rf.leaf);
}

static void test_errors_and_persistence(void **state) {
  (void)state;
  ref_t rf;
  kl_err_t e = {0};
  kl_cal_t *cal = build(&rf, 1000, 20);
  kl_imprint_t x, y;
  kl_buf_t b = KL_BUF_INIT;
  random_imprint(&x, 1);
  kl_cal_entry_t past = {1010, &x};
  assert_int_equal(kl_cal_append(cal, &past, 1, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "not after the last second"));
  assert_int_equal(kl_cal_chain(cal, 999, 1010, &b, &e), KL_ERANGE);
  assert_non_null(strstr(e.msg, "before the calendar's genesis"));
  assert_int_equal(kl_cal_chain(cal, 1005, 1020, &b, &e), KL_ENOTFOUND);
  assert_non_null(strstr(e.msg, "not yet committed"));
  assert_int_equal(kl_cal_chain(cal, 1010, 1005, &b, &e), KL_EINVAL);
  kl_cal_entry_t batch[2] = {{1030, &x}, {1025, &x}}; /* out of order: nothing written */
  assert_int_equal(kl_cal_append(cal, batch, 2, &e), KL_EINVAL);
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(cal, &info, &e), 0);
  assert_true(info.last == 1019);
  assert_int_equal(kl_cal_root(cal, 1019, &y, &e), 0);
  kl_cal_close(cal);
  assert_int_equal(kl_cal_create(dir, 5, NULL, &e), KL_ESTATE); /* already a calendar */
  kl_cal_opts_t ro = {.read_only = true};
  assert_int_equal(kl_cal_open(dir, &ro, &cal, &e), 0);
  assert_int_equal(kl_cal_root(cal, 1019, &x, &e), 0);
  assert_true(kl_imprint_eq(&x, &y));
  kl_cal_entry_t next = {1020, &x};
  assert_int_equal(kl_cal_append(cal, &next, 1, &e), KL_ESTATE);
  kl_cal_close(cal);
  kl_buf_free(&b);
  free(rf.leaf);
  char missing[300];
  snprintf(missing, sizeof missing, "%s/nothing-here", dir);
  assert_int_not_equal(kl_cal_open(missing, NULL, &cal, &e), 0);
}

static void test_audit_finds_corruption(void **state) {
  (void)state;
  ref_t rf;
  kl_err_t e = {0};
  kl_cal_audit_t rep;
  kl_cal_t *cal = build(&rf, 77, 40);
  kl_cal_close(cal);
  /* Change one interior node behind the calendar's back. */
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 4);
  assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "nodes", 0, &dbi), 0);
  /* Node (2, 21) covers seconds 84..87; its key is its post-order position (docs/formats.md):
   * completed by leaf 87, 2 * 87 - popcount(87) + 2 = 171. */
  uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 171};
  MDB_val k = {8, key}, d;
  assert_int_equal(mdb_get(txn, dbi, &k, &d), 0);
  uint8_t val[KL_IMPRINT_MAX];
  memcpy(val, d.mv_data, d.mv_size);
  val[5] ^= 1;
  d.mv_data = val;
  assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "height"));
  kl_cal_close(cal);
  free(rf.leaf);
}

static void test_map_full(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_cal_t *cal;
  kl_cal_opts_t small = {.map_size = 256 * 1024};
  kl_imprint_t x;
  kl_cal_audit_t rep;
  assert_int_equal(kl_cal_create(dir, 100, &small, &e), 0);
  assert_int_equal(kl_cal_open(dir, &small, &cal, &e), 0);
  random_imprint(&x, 9);
  uint64_t t = 100;
  int r = 0;
  for (; t < 100 + 100000 && r == 0; t++) {
    kl_cal_entry_t en = {t, &x};
    r = kl_cal_append(cal, &en, 1, &e);
  }
  assert_int_equal(r, KL_ERANGE);
  assert_non_null(strstr(e.msg, "map size"));
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(cal, &info, &e), 0);
  assert_true(info.last == t - 2); /* the failed append left nothing behind */
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), 0);
  kl_cal_close(cal);
}

/* A child appends as fast as it can and reports each committed second; the parent kills it
 * with SIGKILL at a random moment, then reopens and audits. Bounded: 8 rounds, 5000 appends. */
static void test_kill_during_appends(void **state) {
  (void)state;
  kl_err_t e = {0};
  assert_int_equal(kl_cal_create(dir, 500, NULL, &e), 0);
  uint64_t acknowledged = 0;
  srand(7);
  for (int round = 0; round < 8; round++) {
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(fd[0]);
      kl_cal_t *c;
      kl_cal_info_t in;
      if (kl_cal_open(dir, NULL, &c, NULL) || kl_cal_info(c, &in, NULL)) _exit(2);
      uint64_t t = in.empty ? in.genesis : in.last + 1;
      for (int k = 0; k < 5000; k++, t++) {
        kl_imprint_t x;
        random_imprint(&x, t);
        kl_cal_entry_t en[2] = {{t, &x}, {t + 1, NULL}};
        if (kl_cal_append(c, en, (t % 3) ? 1 : 2, NULL)) _exit(3);
        if (t % 3 == 0) t++;
        if (write(fd[1], &t, sizeof t) != sizeof t) _exit(4);
      }
      _exit(0);
    }
    close(fd[1]);
    usleep((useconds_t)(1000 + rand() % 30000));
    kill(pid, SIGKILL);
    uint64_t t;
    while (read(fd[0], &t, sizeof t) == sizeof t) acknowledged = t;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 0));
    kl_cal_t *cal;
    kl_cal_info_t info;
    kl_cal_audit_t rep;
    assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
    assert_int_equal(kl_cal_info(cal, &info, &e), 0);
    if (acknowledged) assert_true(!info.empty && info.last >= acknowledged);
    if (kl_cal_audit(cal, NULL, &rep, &e)) fail_msg("round %d: %s", round, e.msg);
    kl_cal_close(cal);
  }
  assert_true(acknowledged > 500);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_small_all_pairs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_realistic_times, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_and_persistence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audit_finds_corruption, setup, teardown),
      cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill_during_appends, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
