/* Calendar audit: every block decoded and in its place, every complete block's root recomputed
 * from its leaves and every stored node above it from its children, the metadata's counts, and
 * published roots compared with a publications file. (Format 1: calendar_legacy.c.) */
#include <string.h>

#include "cal_internal.h"

#define B KL__CAL_BLOCK_BITS

static int mismatch(unsigned ht, uint64_t i, const kl_imprint_t *have, const kl_imprint_t *want, kl_err_t *e) {
  char x[2 * KL_IMPRINT_MAX + 1], y[2 * KL_IMPRINT_MAX + 1];
  return kl_err_set(e, KL_EFORMAT, "calendar audit: node (height %u, index %llu) holds %s, %s give %s", ht,
                    (unsigned long long)i, kl_imprint_hex(have, x), ht <= B ? "its seconds" : "its children",
                    kl_imprint_hex(want, y));
}

/* Block k: its seconds, its middle nodes and root from them, the nodes above from their children. */
static int audit_block(kl__cal_rd_t *rd, uint64_t k, const kl__cal_block_t *b, kl_cal_audit_t *rep, uint64_t *fillers,
                       kl_err_t *e) {
  int r;
  for (unsigned j = 0; j < b->count; j++)
    if (b->p[b->leaf[j]] == KL__CAL_FILLER) (*fillers)++;
  rep->leaves += b->count;
  rep->nodes_checked += b->count;
  kl_imprint_t want, have;
  for (unsigned j = 0; j < b->n_mid; j++) { /* each middle node from its 32 seconds */
    uint64_t i = (k << (B - KL__CAL_MID_BITS)) + b->mid0 + j;
    const uint8_t *q = b->p + b->mid[j];
    if ((r = kl__cal_block_subtree(b, k, rd->m.genesis, false, &rd->h, KL__CAL_MID_BITS, i, &want, e)) ||
        (r = kl_imprint_from_bytes(&have, q, 1 + kl_hash_digest_len(*q), e)))
      return r;
    rep->nodes_checked++;
    if (!kl_imprint_eq(&have, &want)) return mismatch(KL__CAL_MID_BITS, i, &have, &want, e);
  }
  if (b->n_upper == 0) return 0; /* the last block, not complete: nothing stored above its seconds */
  if ((r = kl__cal_block_subtree(b, k, rd->m.genesis, true, &rd->h, B, k, &want, e))) return r;
  for (unsigned j = 0; j < b->n_upper; j++) {
    unsigned ht = B + j;
    uint64_t i = ((k + 1) >> j) - 1;
    const uint8_t *q = b->p + b->upper[j];
    if ((r = kl_imprint_from_bytes(&have, q, 1 + kl_hash_digest_len(*q), e))) return r;
    rep->nodes_checked++;
    if (!kl_imprint_eq(&have, &want)) return mismatch(ht, i, &have, &want, e);
    if (j + 1 < b->n_upper) {
      kl_imprint_t left;
      if ((r = kl__cal_node(rd, ht, 2 * (((k + 1) >> (j + 1)) - 1), &left, e)) ||
          (r = kl_cal_parent(&rd->h, &left, &have, &want, e)))
        return r;
    }
  }
  return 0;
}

static int audit_blocks(kl__cal_rd_t *rd, kl_cal_audit_t *rep, kl_err_t *e) {
  const kl__cal_meta_t *m = &rd->m;
  MDB_cursor *cur;
  MDB_val key, val;
  uint64_t fillers = 0, next = m->genesis >> B, end = m->empty ? next : (m->last >> B) + 1;
  int r = 0, rc = mdb_cursor_open(rd->txn, rd->cal->blocks, &cur);
  if (rc) return kl__cal_mdb_err(e, rc, "calendar audit");
  for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0 && r == 0;
       rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
    uint64_t k = 0;
    for (size_t q = 0; q < key.mv_size && q < 8; q++) k = k << 8 | ((const uint8_t *)key.mv_data)[q];
    if (key.mv_size != 8 || k != next || k >= end) {
      if (next < end)
        r = kl_err_set(e, KL_EFORMAT, "calendar audit: block %llu (seconds from %llu) is missing: the next key is %llu",
                       (unsigned long long)next, (unsigned long long)(next << B), (unsigned long long)k);
      else
        r = kl_err_set(e, KL_EFORMAT, "calendar audit: a block with key %llu after the last second", (unsigned long long)k);
      break;
    }
    const kl__cal_block_t *b = NULL;
    if ((r = kl__cal_block_get(rd, k, true, &b, e)) == 0) {
      kl__cal_block_t copy = *b; /* audit_block reads other blocks through rd */
      r = audit_block(rd, k, &copy, rep, &fillers, e);
    }
    if (r) kl_err_wrap(e, "calendar audit: block %llu (seconds %llu..%llu)", (unsigned long long)k,
                       (unsigned long long)(k << B), (unsigned long long)((k << B) + KL__CAL_BLOCK - 1));
    next++;
  }
  mdb_cursor_close(cur);
  if (r) return r;
  if (rc != MDB_NOTFOUND) return kl__cal_mdb_err(e, rc, "calendar audit");
  if (next != end)
    return kl_err_set(e, KL_EFORMAT, "calendar audit: block %llu (seconds from %llu) is missing", (unsigned long long)next,
                      (unsigned long long)(next << B));
  if (fillers != m->fillers || rep->leaves - fillers != m->rounds)
    return kl_err_set(e, KL_EFORMAT,
                      "calendar audit: the metadata counts %llu rounds and %llu empty seconds, the blocks hold %llu and %llu",
                      (unsigned long long)m->rounds, (unsigned long long)m->fillers,
                      (unsigned long long)(rep->leaves - fillers), (unsigned long long)fillers);
  return 0;
}

int kl_cal_audit(kl_cal_t *cal, const kl_pubfile_t *pf, kl_cal_audit_t *rep, kl_err_t *e) {
  kl_err_t local = {0};
  kl__cal_rd_t rd;
  int r;
  if (e == NULL) e = &local;
  memset(rep, 0, sizeof *rep);
  if ((r = kl__cal_rd_open(cal, &rd, e))) return r;
  uint64_t n = rd.m.empty ? 0 : rd.m.last - rd.m.genesis + 1;
  if (rd.m.version == 1) r = kl__cal_v1_audit(&rd, rep, e);
  else r = audit_blocks(&rd, rep, e);
  if (r == 0 && (rep->leaves != n || rep->leaves != rd.m.rounds + rd.m.fillers))
    r = kl_err_set(e, KL_EFORMAT, "calendar audit: metadata counts %llu rounds and %llu fillers for %llu seconds",
                   (unsigned long long)rd.m.rounds, (unsigned long long)rd.m.fillers, (unsigned long long)rep->leaves);
  kl__cal_meta_t m = rd.m;
  kl__cal_rd_close(&rd);
  if (r || pf == NULL) return r;
  for (size_t p = 0; p < pf->n_pubs; p++) {
    const kl_pub_data_t *pd = &pf->pubs[p].data;
    kl_imprint_t root;
    if (m.empty || pd->time < m.genesis || pd->time > m.last) {
      rep->publications_outside++;
      continue;
    }
    if ((r = kl_cal_root(cal, pd->time, &root, e))) return r;
    if (!kl_imprint_eq(&root, &pd->hash))
      return kl_err_set(e, KL_EFORMAT, "calendar audit: the publication of %llu does not match the calendar root",
                        (unsigned long long)pd->time);
    rep->publications_checked++;
  }
  return 0;
}
