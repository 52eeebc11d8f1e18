/* The LMDB calendar against a reference tree: roots and chains for every (t, P) on small
 * calendars, realistic genesis times, fillers, persistence; storage format 2 (blocks of 256
 * seconds: every chain of a few thousand seconds, block boundaries, reopen, the audit finding
 * each kind of damage, the conversion of format 1 (also killed midway), a newer format refused,
 * bytes per second);
 * a full map, and appends killed with SIGKILL at random moments. */
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keyless/calendar.h"
#include "keyless/chains.h"
#include "keyless/log.h"
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

/* ---- storage format 2: blocks of 256 seconds (docs/formats.md §2.3) ---- */

/* Raw LMDB access behind the calendar's back. */
typedef struct raw {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi meta, dbi;
} raw_t;

static void raw_open(raw_t *w, const char *db, unsigned flags) {
  assert_int_equal(mdb_env_create(&w->env), 0);
  mdb_env_set_maxdbs(w->env, 4);
  mdb_env_set_mapsize(w->env, (size_t)1 << 30);
  assert_int_equal(mdb_env_open(w->env, dir, 0, 0644), 0);
  assert_int_equal(mdb_txn_begin(w->env, NULL, 0, &w->txn), 0);
  assert_int_equal(mdb_dbi_open(w->txn, "meta", flags, &w->meta), 0);
  assert_int_equal(mdb_dbi_open(w->txn, db, flags, &w->dbi), 0);
}

static void raw_close(raw_t *w) {
  assert_int_equal(mdb_txn_commit(w->txn), 0);
  mdb_env_close(w->env);
}

static void be64(uint8_t *p, uint64_t v) {
  for (int k = 7; k >= 0; k--, v >>= 8) p[k] = (uint8_t)v;
}

static void raw_put_u64(raw_t *w, MDB_dbi dbi, const char *key, uint64_t v) {
  uint8_t b[8];
  be64(b, v);
  MDB_val k = {strlen(key), (void *)key}, d = {8, b};
  assert_int_equal(mdb_put(w->txn, dbi, &k, &d, 0), 0);
}

/* The value of block k (copied to buf), or 0 if it is missing. */
static size_t raw_block(raw_t *w, uint64_t k, uint8_t *buf) {
  uint8_t key[8];
  be64(key, k);
  MDB_val kv = {8, key}, d;
  if (mdb_get(w->txn, w->dbi, &kv, &d)) return 0;
  memcpy(buf, d.mv_data, d.mv_size);
  return d.mv_size;
}

static void raw_set_block(raw_t *w, uint64_t k, const uint8_t *buf, size_t n) {
  uint8_t key[8];
  be64(key, k);
  MDB_val kv = {8, key}, d = {n, (void *)buf};
  if (n == 0) assert_int_equal(mdb_del(w->txn, w->dbi, &kv, NULL), 0);
  else assert_int_equal(mdb_put(w->txn, w->dbi, &kv, &d, 0), 0);
}

/* Appends the reference's seconds [from, to] in calls of the sizes in `sizes` (cycled), empty
 * seconds skipped or sent as NULL in turn. */
static void append_range(kl_cal_t *cal, const ref_t *rf, uint64_t from, uint64_t to, const size_t *sizes, size_t ns) {
  kl_cal_entry_t en[600];
  kl_imprint_t filler;
  kl_err_t e = {0};
  size_t q = 0;
  for (uint64_t t = from; t <= to;) {
    size_t n = 0, want = sizes[q++ % ns];
    for (; t <= to && n < want; t++) {
      kl_cal_filler_leaf(t, &filler);
      bool empty = kl_imprint_eq(&filler, &rf->leaf[t - rf->genesis]);
      if (empty && t != to && t % 2 == 0) continue; /* skipped: a gap the next entry fills */
      en[n].time = t;
      en[n++].root = empty ? NULL : &rf->leaf[t - rf->genesis];
    }
    if (n && kl_cal_append(cal, en, n, &e)) fail_msg("append up to %llu: %s", (unsigned long long)t, e.msg);
  }
}

static void ref_init(ref_t *rf, uint64_t genesis, uint64_t n) {
  rf->genesis = genesis;
  rf->last = genesis + n - 1;
  rf->leaf = calloc(n, sizeof *rf->leaf);
  for (uint64_t t = genesis; t < genesis + n; t++) {
    if ((t * 2654435761u) % 11 < 2 || (t >= genesis + 700 && t < genesis + 1000)) /* empty, and one long gap */
      kl_cal_filler_leaf(t, &rf->leaf[t - genesis]);
    else random_imprint(&rf->leaf[t - genesis], t);
  }
}

/* chain(t, P) for every t in [genesis, P] against the reference root of P (computed once). */
static void check_all_chains(kl_cal_t *cal, const ref_t *rf, uint64_t P, uint64_t step) {
  kl_imprint_t want = ref_root(rf, 0, P + 1), root;
  kl_hasher_t h;
  kl_err_t e = {0};
  assert_int_equal(kl_cal_root(cal, P, &root, &e), 0);
  assert_true(kl_imprint_eq(&root, &want));
  assert_int_equal(kl_hasher_init(&h, NULL), 0);
  for (uint64_t t = rf->genesis; t <= P; t += step) {
    kl_buf_t b = KL_BUF_INIT;
    kl_tlv_t tlv;
    kl_cal_chain_t c;
    kl_arena_t a = KL_ARENA_INIT;
    uint64_t tt;
    if (kl_cal_chain(cal, t, P, &b, &e)) fail_msg("chain %llu..%llu: %s", (unsigned long long)t, (unsigned long long)P, e.msg);
    assert_int_equal(kl_tlv_parse_one(b.p, b.len, &tlv, NULL), 0);
    assert_int_equal(kl_cal_chain_decode(&tlv, b.p, &a, &c, &e), 0);
    assert_true(c.pub_time == P && c.aggr_time == t);
    assert_true(kl_imprint_eq(&c.input, &rf->leaf[t - rf->genesis]));
    assert_int_equal(kl_cal_chain_root(&h, &c, &root, NULL), 0);
    if (!kl_imprint_eq(&root, &want)) fail_msg("chain %llu..%llu: wrong root", (unsigned long long)t, (unsigned long long)P);
    assert_true(kl_cal_chain_time(&c, &tt) && tt == t);
    kl_imprint_t leaf;
    assert_int_equal(kl_cal_leaf(cal, t, &leaf, &e), 0);
    assert_true(kl_imprint_eq(&leaf, &rf->leaf[t - rf->genesis]));
    kl_arena_free(&a);
    kl_buf_free(&b);
  }
  kl_hasher_close(&h);
}

/* A few thousand seconds from a genesis in the middle of a block, appended in calls of every
 * size around a block (1, 255, 256, 257, 600, ...), with empty seconds and a long gap: every
 * chain to the last second and to publication times at and around block boundaries, after a
 * reopen too; appends then go on one second at a time across a boundary. */
static void test_blocks(void **state) {
  (void)state;
  const uint64_t G = 1700000000 + 77; /* 1700000000 = 256 * 6640625: G is 77 into its block */
  ref_t rf;
  kl_err_t e = {0};
  kl_cal_t *cal;
  kl_cal_audit_t rep;
  ref_init(&rf, G, 3000);
  assert_int_equal(kl_cal_create(dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  static const size_t sizes[] = {1, 255, 256, 257, 3, 600, 1, 1, 179, 2};
  append_range(cal, &rf, G, G + 2899, sizes, sizeof sizes / sizeof *sizes);
  check_all_chains(cal, &rf, G + 2899, 1);
  uint64_t Ps[] = {G, G + 178, G + 179, G + 180, G + 434, G + 435, G + 436, G + 1459, G + 1460, G + 1461, G + 2226};
  for (size_t k = 0; k < sizeof Ps / sizeof *Ps; k++) check_all_chains(cal, &rf, Ps[k], 1 + k % 3);
  for (uint64_t P = G; P <= G + 2899; P += 97) check_all_chains(cal, &rf, P, 13);
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), 0);
  assert_int_equal(rep.leaves, 2900);
  kl_cal_close(cal);
  /* Reopened: the same answers; appends one at a time across the boundary at G + 2995. */
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  check_all_chains(cal, &rf, G + 2899, 7);
  static const size_t one[] = {1};
  append_range(cal, &rf, G + 2900, G + 2999, one, 1);
  for (uint64_t P = G + 2990; P <= G + 2999; P++) check_all_chains(cal, &rf, P, 11);
  if (kl_cal_audit(cal, NULL, &rep, &e)) fail_msg("audit: %s", e.msg);
  assert_int_equal(rep.leaves, 3000);
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(cal, &info, &e), 0);
  assert_true(info.last == G + 2999 && info.rounds + info.fillers == 3000);
  kl_cal_close(cal);
  /* What is stored: blocks G >> 8 .. (G + 2999) >> 8, the first from second 77 of its block. */
  raw_t w;
  uint8_t v[32768];
  raw_open(&w, "blocks", 0);
  assert_int_equal(raw_block(&w, (G >> 8) - 1, v), 0);
  assert_true(raw_block(&w, G >> 8, v) > 3);
  assert_true(v[0] == 77 && v[1] == 255 - 77 && v[2] == 1 + __builtin_ctzll((G >> 8) + 1));
  size_t n = raw_block(&w, (G + 2999) >> 8, v);
  assert_true(n > 3 && v[0] == 0 && v[1] == (G + 2999) % 256 && v[2] == 0);
  assert_int_equal(raw_block(&w, ((G + 2999) >> 8) + 1, v), 0);
  MDB_dbi nodes;
  assert_int_equal(mdb_dbi_open(w.txn, "nodes", 0, &nodes), MDB_NOTFOUND);
  raw_close(&w);
  free(rf.leaf);
}

/* The offset of the record after the one at v[off]: an imprint or the one-byte filler. */
static size_t rec_skip(const uint8_t *v, size_t off) {
  return off + (v[off] == 0xFF ? 1 : 1 + kl_hash_digest_len(v[off]));
}

/* Each kind of damage to the blocks is found by the audit, naming where. */
static void test_audit_finds_corruption(void **state) {
  (void)state;
  const uint64_t G = 77;
  ref_t rf;
  kl_err_t e = {0};
  kl_cal_audit_t rep;
  kl_cal_t *cal;
  ref_init(&rf, G, 1200);
  assert_int_equal(kl_cal_create(dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  static const size_t sizes[] = {100};
  append_range(cal, &rf, G, rf.last, sizes, 1);
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), 0);
  kl_cal_close(cal);
  struct {
    const char *what, *expect;
  } cases[] = {
      {"a leaf of block 2", "(height 5, index 16)"},  {"the root of block 1", "(height 8, index 1)"},
      {"the node above blocks 2 and 3", "(height 9, index 1)"},
      {"block 2 cut short", "block 2"},               {"block 3 deleted", "block 3 (seconds from 768) is missing"},
      {"a block after the last", "after the last second"}, {"the fillers count", "empty seconds"},
      {"an unknown algorithm", "unknown algorithm"},  {"a middle node of block 2", "(height 5, index 17)"},
  };
  uint8_t save[32768], v[32768];
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    raw_t w;
    raw_open(&w, "blocks", 0);
    size_t n2 = raw_block(&w, 2, save), n = n2;
    memcpy(v, save, n);
    size_t mid1 = 3; /* after the upper nodes, 8 middle nodes, then the leaves */
    for (unsigned q = 0; q < v[2]; q++) mid1 = rec_skip(v, mid1);
    size_t leaf0 = mid1;
    for (unsigned q = 0; q < 8; q++) leaf0 = rec_skip(v, leaf0);
    mid1 = rec_skip(v, mid1);
    uint64_t k = 2;
    switch (c) {
      case 0: v[leaf0 + (v[leaf0] == 0xFF ? 2 : 5)] ^= 1; break;
      case 1: k = 1, n = raw_block(&w, 1, v), v[3 + 7] ^= 1; break;
      case 2: k = 3, n = raw_block(&w, 3, v), v[rec_skip(v, 3) + 7] ^= 1; break;
      case 3: n -= 5; break;
      case 4: k = 3, n = 0; break;
      case 5: k = 99, v[0] = 0, v[1] = 0, v[2] = 0, v[3] = 0xFF, n = 4; break;
      case 6: raw_put_u64(&w, w.meta, "fillers", rf.last); break;
      case 7: v[leaf0 + (v[leaf0] == 0xFF ? 1 : 0)] = 0x42; break;
      case 8: v[mid1 + 7] ^= 1; break;
    }
    uint8_t keep[32768];
    size_t kn = raw_block(&w, k, keep);
    raw_set_block(&w, k, v, n);
    raw_close(&w);
    assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
    int r = kl_cal_audit(cal, NULL, &rep, &e);
    if (r != KL_EFORMAT || strstr(e.msg, cases[c].expect) == NULL)
      fail_msg("%s: audit gave %d: %s", cases[c].what, r, e.msg);
    kl_cal_close(cal);
    /* Undone: the audit passes again. */
    raw_open(&w, "blocks", 0);
    if (kn) raw_set_block(&w, k, keep, kn);
    else if (k == 99) raw_set_block(&w, k, NULL, 0);
    if (c == 6) raw_put_u64(&w, w.meta, "fillers", 0), raw_close(&w), raw_open(&w, "blocks", 0);
    raw_close(&w);
    (void)n2;
  }
  free(rf.leaf);
}

/* Format 1 as the code before blocks wrote it: every node under its post-order position in
 * "nodes" (G's forest nodes, the leaves, every perfect node they complete). */
static uint64_t v1_pos(unsigned h, uint64_t i) {
  uint64_t L = ((i + 1) << h) - 1;
  return 2 * L - (uint64_t)__builtin_popcountll(L) + h;
}

static void v1_put(raw_t *w, unsigned h, uint64_t i, const kl_imprint_t *v) {
  uint8_t key[8], val[KL_IMPRINT_MAX];
  be64(key, v1_pos(h, i));
  MDB_val k = {8, key}, d = {kl_imprint_to_bytes(v, val), val};
  assert_int_equal(mdb_put(w->txn, w->dbi, &k, &d, MDB_APPEND), 0);
}

static void v1_build(const ref_t *rf, uint64_t flip_leaf) {
  raw_t w;
  kl_imprint_t v, filler;
  uint64_t rounds = 0, fillers = 0;
  raw_open(&w, "nodes", MDB_CREATE);
  uint64_t G = rf->genesis, lo = 0;
  for (int h = 63; h >= 0; h--)
    if (G >> h & 1) {
      kl_cal_genesis_node((unsigned)h, lo >> h, &v);
      v1_put(&w, (unsigned)h, lo >> h, &v);
      lo += (uint64_t)1 << h;
    }
  for (uint64_t t = G; t <= rf->last; t++) {
    v = rf->leaf[t - G];
    kl_cal_filler_leaf(t, &filler);
    if (kl_imprint_eq(&v, &filler)) fillers++;
    else rounds++;
    if (t == flip_leaf) v.digest[0] ^= 1; /* a leaf that no longer hashes to its parents */
    v1_put(&w, 0, t, &v);
    for (unsigned h = 1; ((t + 1) & (((uint64_t)1 << h) - 1)) == 0; h++) {
      uint64_t i = ((t + 1) >> h) - 1;
      v = ref_root(rf, i << h, (uint64_t)1 << h);
      v1_put(&w, h, i, &v);
    }
  }
  raw_put_u64(&w, w.meta, "version", 1);
  raw_put_u64(&w, w.meta, "genesis", G);
  raw_put_u64(&w, w.meta, "count", rf->last - G + 1);
  raw_put_u64(&w, w.meta, "rounds", rounds);
  raw_put_u64(&w, w.meta, "fillers", fillers);
  raw_close(&w);
}

static uint64_t meta_version(void) {
  raw_t w;
  raw_open(&w, "meta", 0);
  MDB_val k = {7, "version"}, d;
  assert_int_equal(mdb_get(w.txn, w.meta, &k, &d), 0);
  uint64_t v = 0;
  for (size_t q = 0; q < 8; q++) v = v << 8 | ((uint8_t *)d.mv_data)[q];
  raw_close(&w);
  return v;
}

/* A format-1 calendar is read as it is when opened read-only, and converted (checked against its
 * stored nodes, in one transaction) when opened for writing; a damaged one is not converted. */
static void test_migration(void **state) {
  (void)state;
  const uint64_t G = 1700000000 + 201;
  ref_t rf;
  kl_err_t e = {0};
  kl_cal_t *cal;
  kl_cal_audit_t rep;
  kl_imprint_t a, b;
  ref_init(&rf, G, 1900);
  v1_build(&rf, 0);
  kl_cal_opts_t ro = {.read_only = true};
  assert_int_equal(kl_cal_open(dir, &ro, &cal, &e), 0);
  check_all_chains(cal, &rf, rf.last, 5);
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), 0);
  assert_int_equal(rep.leaves, 1900);
  assert_int_equal(kl_cal_root(cal, G + 1000, &a, &e), 0);
  kl_cal_close(cal);
  assert_int_equal(meta_version(), 1);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0); /* converts */
  assert_int_equal(meta_version(), 2);
  check_all_chains(cal, &rf, rf.last, 1);
  check_all_chains(cal, &rf, G + 1000, 3);
  assert_int_equal(kl_cal_root(cal, G + 1000, &b, &e), 0);
  assert_true(kl_imprint_eq(&a, &b));
  if (kl_cal_audit(cal, NULL, &rep, &e)) fail_msg("audit after conversion: %s", e.msg);
  assert_int_equal(rep.leaves, 1900);
  kl_cal_info_t info;
  assert_int_equal(kl_cal_info(cal, &info, &e), 0);
  kl_imprint_t x;
  random_imprint(&x, 5);
  kl_cal_entry_t next = {rf.last + 1, &x};
  assert_int_equal(kl_cal_append(cal, &next, 1, &e), 0);
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), 0);
  kl_cal_close(cal);
  raw_t w;
  raw_open(&w, "meta", 0);
  MDB_dbi nodes;
  assert_int_equal(mdb_dbi_open(w.txn, "nodes", 0, &nodes), MDB_NOTFOUND); /* format 1's nodes are gone */
  raw_close(&w);
  assert_int_equal(tu_rmrf(dir), 0);
  /* A damaged format-1 calendar: refused, and left as it was. */
  tu_mkdtemp("cal", dir, sizeof dir);
  v1_build(&rf, G + 600);
  assert_int_not_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  assert_non_null(strstr(e.msg, "storage format 2"));
  assert_non_null(strstr(e.msg, "audit"));
  assert_int_equal(meta_version(), 1);
  assert_int_equal(kl_cal_open(dir, &ro, &cal, &e), 0);
  assert_int_equal(kl_cal_audit(cal, NULL, &rep, &e), KL_EFORMAT);
  kl_cal_close(cal);
  assert_int_equal(tu_rmrf(dir), 0);
  /* An empty format-1 calendar (as 'keyless calendar init' left it): converted, then appended to. */
  tu_mkdtemp("cal", dir, sizeof dir);
  ref_t none = {G, G - 1, NULL};
  v1_build(&none, 0);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  assert_int_equal(meta_version(), 2);
  assert_int_equal(kl_cal_info(cal, &info, &e), 0);
  assert_true(info.empty && info.genesis == G);
  kl_cal_entry_t first = {G + 3, &x};
  assert_int_equal(kl_cal_append(cal, &first, 1, &e), 0);
  if (kl_cal_audit(cal, NULL, &rep, &e)) fail_msg("audit of the converted empty calendar: %s", e.msg);
  assert_int_equal(rep.leaves, 4);
  kl_cal_close(cal);
  free(rf.leaf);
}

/* A conversion killed with SIGKILL at a random moment leaves format 1 or format 2, whole: the
 * audit passes, the roots are the reference's, and the next open for writing finishes the job.
 * Bounded: 4 rounds. */
static void test_kill_during_conversion(void **state) {
  (void)state;
  const uint64_t G = 1700000000 + 5;
  ref_t rf;
  kl_err_t e = {0};
  kl_cal_audit_t rep;
  kl_cal_t *cal;
  ref_init(&rf, G, 12000);
  kl_imprint_t want = ref_root(&rf, 0, rf.last + 1), root;
  uint64_t seen[3] = {0};
  srand(11);
  for (int round = 0; round < 4; round++) {
    if (round) {
      assert_int_equal(tu_rmrf(dir), 0);
      tu_mkdtemp("cal", dir, sizeof dir);
    }
    v1_build(&rf, 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      kl_log_set_level(KL_LOG_OFF);
      _exit(kl_cal_open(dir, NULL, &cal, NULL) ? 3 : 0);
    }
    usleep((useconds_t)(rand() % 40000));
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 0));
    uint64_t v = meta_version();
    assert_true(v == 1 || v == 2);
    seen[v]++;
    kl_cal_opts_t ro = {.read_only = true};
    assert_int_equal(kl_cal_open(dir, &ro, &cal, &e), 0);
    if (kl_cal_audit(cal, NULL, &rep, &e)) fail_msg("round %d, format %llu: %s", round, (unsigned long long)v, e.msg);
    assert_int_equal(kl_cal_root(cal, rf.last, &root, &e), 0);
    assert_true(kl_imprint_eq(&root, &want));
    kl_cal_close(cal);
    assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
    assert_int_equal(meta_version(), 2);
    if (kl_cal_audit(cal, NULL, &rep, &e)) fail_msg("round %d after conversion: %s", round, e.msg);
    assert_int_equal(kl_cal_root(cal, rf.last, &root, &e), 0);
    assert_true(kl_imprint_eq(&root, &want));
    kl_cal_close(cal);
  }
  fprintf(stderr, "conversions killed: %llu left format 1, %llu finished\n", (unsigned long long)seen[1],
          (unsigned long long)seen[2]);
  free(rf.leaf);
}

/* A calendar of a newer storage format is refused, saying so. */
static void test_newer_format_refused(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_cal_t *cal;
  assert_int_equal(kl_cal_create(dir, 1000, NULL, &e), 0);
  raw_t w;
  raw_open(&w, "meta", 0);
  raw_put_u64(&w, w.meta, "version", 3);
  raw_close(&w);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "storage format 3"));
  assert_non_null(strstr(e.msg, "upgrade"));
  kl_cal_opts_t ro = {.read_only = true};
  assert_int_equal(kl_cal_open(dir, &ro, &cal, &e), KL_EFORMAT);
}

/* The size this is all about: at most 64 bytes of LMDB pages per calendar second. */
static void test_bytes_per_second(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_cal_t *cal;
  const uint64_t G = 1700000000, N = 60000;
  kl_cal_entry_t *en = calloc(1000, sizeof *en);
  kl_imprint_t *x = calloc(1000, sizeof *x);
  assert_int_equal(kl_cal_create(dir, G, NULL, &e), 0);
  assert_int_equal(kl_cal_open(dir, NULL, &cal, &e), 0);
  for (uint64_t t = G; t < G + N; t += 1000) {
    for (size_t k = 0; k < 1000; k++) {
      x[k].alg = KL_HASH_SHA256;
      x[k].len = 32;
      memset(x[k].digest, (int)(t + k), 32);
      en[k].time = t + k;
      en[k].root = &x[k]; /* no empty seconds: the largest blocks */
    }
    assert_int_equal(kl_cal_append(cal, en, 1000, &e), 0);
  }
  kl_cal_close(cal);
  raw_t w;
  MDB_stat st;
  raw_open(&w, "blocks", 0);
  assert_int_equal(mdb_stat(w.txn, w.dbi, &st), 0);
  raw_close(&w);
  uint64_t bytes = (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
  assert_int_equal(st.ms_entries, (G + N - 1) / 256 - G / 256 + 1);
  if (bytes > 64 * N) fail_msg("%llu bytes for %llu seconds", (unsigned long long)bytes, (unsigned long long)N);
  free(en);
  free(x);
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
      cmocka_unit_test_setup_teardown(test_blocks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audit_finds_corruption, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill_during_conversion, setup, teardown),
      cmocka_unit_test_setup_teardown(test_newer_format_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bytes_per_second, setup, teardown),
      cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill_during_appends, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
