/* Storage format 2 (docs/formats.md §2.3): the leaves of 256 aligned seconds packed in one LMDB
 * value, keyed by the block number k = t >> 8 (be64, appended in order), with the nodes of
 * height 5 complete in it; the other nodes of height < 8 are computed when read (at most 30
 * hashes for a chain's siblings in one block), and the nodes of height >= 8 are stored in the
 * block whose last second completes them. Also node and leaf access for both formats.
 *
 * Block value: u8 first, u8 count - 1, u8 n_upper, then n_upper imprints (heights 8, 9, ...),
 * then the middle nodes (height 5) of the groups of 32 seconds complete in the block, then
 * count leaf records (an imprint, or the one byte 0xFF for an empty second). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cal_internal.h"

#define B KL__CAL_BLOCK_BITS
#define M KL__CAL_MID_BITS
#define MAX_VALUE (3 + (KL__CAL_MAX_UPPER + KL__CAL_MIDS + KL__CAL_BLOCK) * KL_IMPRINT_MAX)

static unsigned upper_count(uint64_t k) { return 1u + (unsigned)__builtin_ctzll(k + 1); }
/* The groups of 32 seconds complete in a block of leaves first .. first + count - 1. */
static unsigned mid_first(unsigned first) { return first >> M; }
static unsigned mid_count(unsigned first, unsigned count) { return ((first + count) >> M) - (first >> M); }

/* Bytes of a record by its first byte: 1 + digest length for a known algorithm, else 0. */
static uint8_t rec_len[256];
static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

static void rec_init(void) {
  for (int a = 0; a < 256; a++) rec_len[a] = kl_hash_known(a) ? (uint8_t)(1 + kl_hash_digest_len(a)) : 0;
}

/* One record at p[*off]: an imprint of a known algorithm, or (if filler_ok) the filler byte. */
static int record(const uint8_t *p, size_t len, size_t *off, bool filler_ok, kl_err_t *e) {
  if (*off >= len) return kl_err_set(e, KL_EFORMAT, "ends early at byte %zu", *off);
  uint8_t alg = p[*off];
  if (alg == KL__CAL_FILLER && filler_ok) {
    *off += 1;
    return 0;
  }
  size_t n = rec_len[alg];
  if (n == 0) return kl_err_set(e, KL_EFORMAT, "unknown algorithm 0x%02X at byte %zu", alg, *off);
  if (len - *off < n) return kl_err_set(e, KL_EFORMAT, "imprint at byte %zu is cut short", *off);
  *off += n;
  return 0;
}

/* The header, upper and middle nodes; the leaves only when asked (a read of an upper node needs
 * none of them). */
static int decode(const uint8_t *p, size_t len, uint64_t k, bool leaves, kl__cal_block_t *b, kl_err_t *e) {
  size_t off = 3;
  int r;
  pthread_once(&rec_once, rec_init);
  if (len < 3 || len > MAX_VALUE)
    return kl_err_set(e, KL_EFORMAT, "calendar block %llu: value of %zu bytes", (unsigned long long)k, len);
  b->p = p;
  b->len = len;
  b->first = p[0];
  b->count = (unsigned)p[1] + 1;
  b->n_upper = p[2];
  b->have_leaves = false;
  if (b->first + b->count > KL__CAL_BLOCK)
    return kl_err_set(e, KL_EFORMAT, "calendar block %llu: %u leaves from %u overrun the block", (unsigned long long)k,
                      b->count, b->first);
  unsigned want = b->first + b->count == KL__CAL_BLOCK ? upper_count(k) : 0;
  if (b->n_upper != want)
    return kl_err_set(e, KL_EFORMAT, "calendar block %llu: %u upper nodes, %u expected", (unsigned long long)k,
                      b->n_upper, want);
  for (unsigned j = 0; j < b->n_upper; j++) {
    b->upper[j] = (uint16_t)off;
    if ((r = record(p, len, &off, false, e))) return kl_err_wrap(e, "calendar block %llu: upper node %u", (unsigned long long)k, j);
  }
  b->mid0 = mid_first(b->first);
  b->n_mid = mid_count(b->first, b->count);
  for (unsigned j = 0; j < b->n_mid; j++) {
    b->mid[j] = (uint16_t)off;
    if ((r = record(p, len, &off, false, e))) return kl_err_wrap(e, "calendar block %llu: middle node %u", (unsigned long long)k, j);
  }
  b->leaves_at = (uint16_t)off;
  return leaves ? kl__cal_block_leaves(b, k, e) : 0;
}

int kl__cal_block_leaves(kl__cal_block_t *b, uint64_t k, kl_err_t *e) {
  size_t off = b->leaves_at;
  int r;
  if (b->have_leaves) return 0;
  for (unsigned j = 0; j < b->count; j++) {
    b->leaf[j] = (uint16_t)off;
    if ((r = record(b->p, b->len, &off, true, e)))
      return kl_err_wrap(e, "calendar block %llu: leaf of second %llu", (unsigned long long)k,
                         (unsigned long long)((k << B) + b->first + j));
  }
  if (off != b->len)
    return kl_err_set(e, KL_EFORMAT, "calendar block %llu: %zu bytes after the last leaf", (unsigned long long)k,
                      b->len - off);
  b->have_leaves = true;
  return 0;
}

int kl__cal_block_decode(const uint8_t *p, size_t len, uint64_t k, kl__cal_block_t *b, kl_err_t *e) {
  return decode(p, len, k, true, b, e);
}

int kl__cal_filler(kl_hasher_t *h, uint64_t t, kl_imprint_t *out, kl_err_t *e) {
  static const char tag[] = "keyless calendar empty second v1";
  uint8_t b[8];
  kl__cal_be64(b, t);
  int r = kl_hasher_start(h, KL_HASH_SHA256, e);
  if (r) return r;
  kl_hasher_update(h, tag, sizeof tag - 1);
  kl_hasher_update(h, b, 8);
  if (kl_hasher_finish(h, out)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  return 0;
}

/* Leaf j (block-relative, first <= j < first + count) of block k. */
static int block_leaf(const kl__cal_block_t *b, uint64_t k, unsigned j, kl_hasher_t *h, kl_imprint_t *out,
                      kl_err_t *e) {
  uint64_t t = (k << B) + j;
  if (j < b->first || j >= b->first + b->count)
    return kl_err_set(e, KL_EFORMAT, "calendar block %llu lacks second %llu", (unsigned long long)k, (unsigned long long)t);
  const uint8_t *q = b->p + b->leaf[j - b->first];
  if (*q == KL__CAL_FILLER) return kl__cal_filler(h, t, out, e);
  return kl_imprint_from_bytes(out, q, 1 + kl_hash_digest_len(*q), e);
}

static int stored_imprint(const uint8_t *q, kl_imprint_t *out, kl_err_t *e) {
  return kl_imprint_from_bytes(out, q, 1 + kl_hash_digest_len(*q), e);
}

int kl__cal_block_subtree(const kl__cal_block_t *b, uint64_t k, uint64_t genesis, bool stored, kl_hasher_t *h,
                          unsigned ht, uint64_t i, kl_imprint_t *out, kl_err_t *e) {
  if (((i + 1) << ht) <= genesis) {
    kl_cal_genesis_node(ht, i, out);
    return 0;
  }
  if (ht == 0) return block_leaf(b, k, (unsigned)(i & (KL__CAL_BLOCK - 1)), h, out, e);
  if (ht == M && stored) {
    unsigned j = (unsigned)(i & (KL__CAL_MIDS - 1));
    if (j >= b->mid0 && j < b->mid0 + b->n_mid) return stored_imprint(b->p + b->mid[j - b->mid0], out, e);
  }
  kl_imprint_t l, r;
  int rc;
  if ((rc = kl__cal_block_subtree(b, k, genesis, stored, h, ht - 1, 2 * i, &l, e)) ||
      (rc = kl__cal_block_subtree(b, k, genesis, stored, h, ht - 1, 2 * i + 1, &r, e)))
    return rc;
  return kl_cal_parent(h, &l, &r, out, e);
}

static int block_value(kl__cal_rd_t *rd, uint64_t k, MDB_val *d, kl_err_t *e) {
  uint8_t key[8];
  kl__cal_be64(key, k);
  MDB_val kv = {8, key};
  int rc = mdb_get(rd->txn, rd->cal->blocks, &kv, d);
  if (rc == MDB_NOTFOUND) return kl_err_set(e, KL_EFORMAT, "calendar block %llu is missing", (unsigned long long)k);
  return rc ? kl__cal_mdb_err(e, rc, "calendar block") : 0;
}

int kl__cal_block_get(kl__cal_rd_t *rd, uint64_t k, bool leaves, const kl__cal_block_t **out, kl_err_t *e) {
  MDB_val d;
  int r;
  kl__cal_block_t *b = &rd->blk;
  if (rd->have_blk && rd->blk_k == k) {
    if (leaves && (r = kl__cal_block_leaves(b, k, e))) return r;
    *out = b;
    return 0;
  }
  rd->have_blk = false;
  if (!rd->cal->has_blocks)
    return kl_err_set(e, KL_ESTATE, "calendar %s was converted to storage format 2 after it was opened here: reopen it",
                      rd->cal->dir);
  if ((r = block_value(rd, k, &d, e)) || (r = decode(d.mv_data, d.mv_size, k, leaves, b, e))) return r;
  uint64_t g = rd->m.genesis, lo = k << B;
  unsigned first = k == g >> B ? (unsigned)(g & (KL__CAL_BLOCK - 1)) : 0;
  unsigned count = k == rd->m.last >> B ? (unsigned)(rd->m.last - lo) + 1 - first : KL__CAL_BLOCK - first;
  if (rd->m.empty || k < g >> B || k > rd->m.last >> B || b->first != first || b->count != count)
    return kl_err_set(e, KL_EFORMAT, "calendar block %llu holds seconds %llu..%llu, the metadata says %llu..%llu",
                      (unsigned long long)k, (unsigned long long)(lo + b->first),
                      (unsigned long long)(lo + b->first + b->count - 1), (unsigned long long)(lo + first),
                      (unsigned long long)(lo + first + count - 1));
  rd->have_blk = true;
  rd->blk_k = k;
  *out = b;
  return 0;
}

int kl__cal_node(kl__cal_rd_t *rd, unsigned h, uint64_t i, kl_imprint_t *out, kl_err_t *e) {
  if (h > 62 || i >= ((uint64_t)1 << (62 - h)))
    return kl_err_set(e, KL_ERANGE, "calendar node (height %u, index %llu) is out of range", h, (unsigned long long)i);
  uint64_t end = (i + 1) << h; /* one past its last leaf */
  if (end <= rd->m.genesis) {
    kl_cal_genesis_node(h, i, out);
    return 0;
  }
  if (rd->m.empty || end - 1 > rd->m.last)
    return kl_err_set(e, KL_ENOTFOUND, "calendar node (height %u, index %llu) is not complete at second %llu", h,
                      (unsigned long long)i, (unsigned long long)rd->m.last);
  if (rd->m.version == 1) return kl__cal_v1_node(rd, h, i, out, e);
  const kl__cal_block_t *b = NULL;
  int r;
  if (h < B) {
    uint64_t k = i >> (B - h);
    if ((r = kl__cal_block_get(rd, k, true, &b, e))) return r;
    return kl__cal_block_subtree(b, k, rd->m.genesis, true, &rd->h, h, i, out, e);
  }
  uint64_t k = (end >> B) - 1;
  if ((r = kl__cal_block_get(rd, k, false, &b, e))) return r;
  if (stored_imprint(b->p + b->upper[h - B], out, e))
    return kl_err_wrap(e, "calendar node (height %u, index %llu)", h, (unsigned long long)i);
  return 0;
}

int kl__cal_leaf(kl__cal_rd_t *rd, uint64_t t, kl_imprint_t *out, kl_err_t *e) {
  if (rd->m.version == 1) return kl__cal_v1_node(rd, 0, t, out, e);
  const kl__cal_block_t *b = NULL;
  int r = kl__cal_block_get(rd, t >> B, true, &b, e);
  return r ? r : block_leaf(b, t >> B, (unsigned)(t & (KL__CAL_BLOCK - 1)), &rd->h, out, e);
}

/* ---- appends ---- */

struct kl__cal_writer {
  kl__cal_rd_t *rd;
  kl__cal_block_t b;      /* the block being filled: its leaves in `leaves`, no stored nodes */
  uint64_t k;
  bool exists, dirty;     /* already stored (then replaced, else appended); changed here */
  size_t len;             /* bytes of leaf records */
  kl_imprint_t mid[KL__CAL_MIDS]; /* its complete middle nodes, b.n_mid of them */
  uint8_t leaves[KL__CAL_BLOCK * KL_IMPRINT_MAX];
  uint8_t val[MAX_VALUE];
};

static void start_block(kl__cal_writer_t *w, uint64_t k) {
  uint64_t g = w->rd->m.genesis;
  memset(&w->b, 0, sizeof w->b);
  w->k = k;
  w->b.p = w->leaves;
  w->b.first = k == g >> B ? (unsigned)(g & (KL__CAL_BLOCK - 1)) : 0;
  w->b.mid0 = mid_first(w->b.first);
  w->b.have_leaves = true; /* leaf[] is kept up to date by kl__cal_writer_add */
  w->len = 0;
  w->exists = w->dirty = false;
}

int kl__cal_writer_open(kl__cal_rd_t *rd, kl__cal_writer_t **out, kl_err_t *e) {
  kl__cal_writer_t *w = malloc(sizeof *w);
  if (w == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  w->rd = rd;
  uint64_t next = rd->m.empty ? rd->m.genesis : rd->m.last + 1;
  start_block(w, next >> B);
  if (!rd->m.empty && rd->m.last >> B == w->k) { /* continue the stored partial block */
    const kl__cal_block_t *b = NULL;
    int r = kl__cal_block_get(rd, w->k, true, &b, e);
    for (unsigned j = 0; r == 0 && j < b->n_mid; j++) r = stored_imprint(b->p + b->mid[j], &w->mid[j], e);
    if (r) {
      free(w);
      return r;
    }
    size_t at = b->leaf[0];
    w->len = b->len - at;
    memcpy(w->leaves, b->p + at, w->len);
    for (unsigned j = 0; j < b->count; j++) w->b.leaf[j] = (uint16_t)(b->leaf[j] - at);
    w->b.count = b->count;
    w->b.n_mid = b->n_mid;
    w->exists = true;
  }
  *out = w;
  return 0;
}

void kl__cal_writer_free(kl__cal_writer_t *w) { free(w); }

static int put_block(kl__cal_writer_t *w, const kl_imprint_t *upper, unsigned n_upper, kl_err_t *e) {
  size_t n = 3;
  w->val[0] = (uint8_t)w->b.first;
  w->val[1] = (uint8_t)(w->b.count - 1);
  w->val[2] = (uint8_t)n_upper;
  for (unsigned j = 0; j < n_upper; j++) n += kl_imprint_to_bytes(&upper[j], w->val + n);
  for (unsigned j = 0; j < w->b.n_mid; j++) n += kl_imprint_to_bytes(&w->mid[j], w->val + n);
  memcpy(w->val + n, w->leaves, w->len);
  n += w->len;
  uint8_t key[8];
  kl__cal_be64(key, w->k);
  MDB_val kv = {8, key}, d = {n, w->val};
  w->rd->have_blk = false; /* values read in a write transaction move when it writes */
  int rc = mdb_put(w->rd->txn, w->rd->cal->blocks, &kv, &d, w->exists ? 0 : MDB_APPEND);
  if (rc == MDB_KEYEXIST)
    return kl_err_set(e, KL_ESTATE, "calendar block %llu is not after every stored block", (unsigned long long)w->k);
  return rc ? kl__cal_mdb_err(e, rc, "calendar append") : 0;
}

/* Block k is full: its root and the nodes above it that it completes, then the block itself. */
static int complete(kl__cal_writer_t *w, kl_err_t *e) {
  kl__cal_rd_t *rd = w->rd;
  kl_imprint_t up[KL__CAL_MAX_UPPER];
  unsigned n = upper_count(w->k);
  int r;
  if ((r = kl__cal_block_subtree(&w->b, w->k, rd->m.genesis, false, &rd->h, B, w->k, &up[0], e))) return r;
  kl__cal_meta_t saved = rd->m;
  rd->m.empty = false;
  rd->m.version = 2;
  rd->m.last = (w->k << B) + KL__CAL_BLOCK - 1;
  for (unsigned j = 1; j < n && r == 0; j++) {
    uint64_t i = ((w->k + 1) >> j) - 1; /* node (8 + j, i); its left child ends before this block */
    kl_imprint_t left;
    if ((r = kl__cal_node(rd, B + j - 1, 2 * i, &left, e)) == 0) r = kl_cal_parent(&rd->h, &left, &up[j - 1], &up[j], e);
  }
  rd->m = saved;
  rd->have_blk = false; /* decoded under the borrowed metadata */
  if (r || (r = put_block(w, up, n, e))) return r;
  start_block(w, w->k + 1);
  return 0;
}

int kl__cal_writer_add(kl__cal_writer_t *w, uint64_t t, const kl_imprint_t *leaf, kl_err_t *e) {
  kl__cal_block_t *b = &w->b;
  if (t != (w->k << B) + b->first + b->count)
    return kl_err_set(e, KL_ESTATE, "calendar append: second %llu is not the next one", (unsigned long long)t);
  b->leaf[b->count++] = (uint16_t)w->len;
  if (leaf == NULL) w->leaves[w->len++] = KL__CAL_FILLER;
  else w->len += kl_imprint_to_bytes(leaf, w->leaves + w->len);
  w->dirty = true;
  unsigned end = b->first + b->count;
  if (end % (1u << M) == 0) { /* a group of 32 complete: its node, from the leaves */
    int r = kl__cal_block_subtree(b, w->k, w->rd->m.genesis, false, &w->rd->h, M, (w->k << (B - M)) + (end >> M) - 1,
                                  &w->mid[b->n_mid], e);
    if (r) return r;
    b->n_mid++;
  }
  return end == KL__CAL_BLOCK ? complete(w, e) : 0;
}

int kl__cal_writer_finish(kl__cal_writer_t *w, kl_err_t *e) {
  int r = w->dirty && w->b.count > 0 ? put_block(w, NULL, 0, e) : 0;
  free(w);
  return r;
}
