/* Aggregation and calendar hash chain computations. */
#include "keyless/chains.h"

#include <string.h>

#include "sha256_ll.h"

int kl_aggr_step(kl_hasher_t *h, int alg, bool left, const kl_imprint_t *cur, const uint8_t *sib,
                 size_t sib_len, uint8_t level, kl_imprint_t *out, kl_err_t *e) {
  /* SHA-256 with a sibling of usual size: one digest of the step's bytes, without EVP
   * (sha256_ll.c; a round's tree does two steps per request: issue 12). */
  if (alg == KL_HASH_SHA256 && sib_len <= 256 && cur->len <= KL_HASH_MAX_DIGEST && kl__sha256_ll()) {
    uint8_t buf[KL_IMPRINT_MAX + 256 + 1];
    size_t n = 0;
    if (!left && sib_len) memcpy(buf, sib, sib_len), n = sib_len;
    n += kl_imprint_to_bytes(cur, buf + n);
    if (left && sib_len) memcpy(buf + n, sib, sib_len), n += sib_len;
    buf[n++] = level;
    kl__sha256(buf, n, out->digest);
    out->alg = KL_HASH_SHA256;
    out->len = 32;
    return 0;
  }
  int r = kl_hasher_start(h, alg, e);
  if (r) return r;
  if (left) {
    kl_hasher_update_imprint(h, cur);
    kl_hasher_update(h, sib, sib_len);
  } else {
    kl_hasher_update(h, sib, sib_len);
    kl_hasher_update_imprint(h, cur);
  }
  kl_hasher_update(h, &level, 1);
  if (kl_hasher_finish(h, out)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  return 0;
}

int kl_aggr_chain_compute(kl_hasher_t *h, const kl_aggr_chain_t *c, uint64_t level_in,
                          kl_imprint_t *out, uint64_t *level_out, kl_err_t *e) {
  kl_imprint_t cur = c->input;
  uint64_t level = level_in;
  if (c->algo > 255 || !kl_hash_known((int)c->algo))
    return kl_err_set(e, KL_EHASHALG, "unknown aggregation algorithm %llu", (unsigned long long)c->algo);
  for (size_t i = 0; i < c->n_links; i++) {
    const kl_aggr_link_t *l = &c->links[i];
    if (l->level_corr > KL_MAX_LEVEL || level + l->level_corr + 1 > KL_MAX_LEVEL)
      return kl_err_set(e, KL_ERANGE, "link %zu: level %llu + correction %llu exceeds 255", i + 1,
                        (unsigned long long)level, (unsigned long long)l->level_corr);
    level += l->level_corr + 1;
    int r = kl_aggr_step(h, (int)c->algo, l->dir == KL_LINK_LEFT, &cur, l->sib_bytes, l->sib_len,
                         (uint8_t)level, &cur, e);
    if (r) return r;
  }
  *out = cur;
  if (level_out) *level_out = level;
  return 0;
}

bool kl_aggr_chain_shape(const kl_aggr_chain_t *c, uint64_t *shape) {
  if (c->n_links > 63) return false;
  uint64_t v = 1;
  for (size_t i = c->n_links; i-- > 0;) v = (v << 1) | (c->links[i].dir == KL_LINK_LEFT ? 1u : 0u);
  *shape = v;
  return true;
}

int kl_cal_chain_root(kl_hasher_t *h, const kl_cal_chain_t *c, kl_imprint_t *out, kl_err_t *e) {
  static const uint8_t ff = 0xFF;
  kl_imprint_t cur = c->input;
  int alg = c->input.alg;
  for (size_t i = 0; i < c->n_links; i++) {
    const kl_cal_link_t *l = &c->links[i];
    if (l->dir == KL_LINK_LEFT) alg = l->sibling.alg; /* sibling is the right child */
    int r = kl_hasher_start(h, alg, e);
    if (r) return kl_err_wrap(e, "calendar chain link %zu", i + 1);
    if (l->dir == KL_LINK_LEFT) {
      kl_hasher_update_imprint(h, &cur);
      kl_hasher_update_imprint(h, &l->sibling);
    } else {
      kl_hasher_update_imprint(h, &l->sibling);
      kl_hasher_update_imprint(h, &cur);
    }
    kl_hasher_update(h, &ff, 1);
    if (kl_hasher_finish(h, &cur)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  }
  *out = cur;
  return 0;
}

uint32_t kl_cal_chain_algs(const kl_cal_chain_t *c) {
  uint32_t set = 1u << (c->input.alg & 31);
  for (size_t i = 0; i < c->n_links; i++)
    if (c->links[i].dir == KL_LINK_LEFT) set |= 1u << (c->links[i].sibling.alg & 31);
  return set;
}

static uint64_t highest_pow2_le(uint64_t r) {
  uint64_t hb = 1;
  while (hb <= r / 2) hb <<= 1;
  return hb;
}

bool kl_cal_chain_time(const kl_cal_chain_t *c, uint64_t *t_out) {
  uint64_t r = c->pub_time, t = 0;
  for (size_t i = c->n_links; i-- > 0;) {
    if (r == 0) return false;
    uint64_t hb = highest_pow2_le(r);
    if (c->links[i].dir == KL_LINK_LEFT) {
      r = hb - 1;
    } else {
      t += hb;
      r -= hb;
    }
  }
  if (r != 0) return false;
  *t_out = t;
  return true;
}

bool kl_cal_chain_compatible(const kl_cal_chain_t *a, const kl_cal_chain_t *b) {
  if (!kl_imprint_eq(&a->input, &b->input)) return false;
  size_t i = 0, j = 0;
  for (;;) {
    while (i < a->n_links && a->links[i].dir != KL_LINK_RIGHT) i++;
    while (j < b->n_links && b->links[j].dir != KL_LINK_RIGHT) j++;
    if (i == a->n_links || j == b->n_links) return i == a->n_links && j == b->n_links;
    if (!kl_imprint_eq(&a->links[i].sibling, &b->links[j].sibling)) return false;
    i++;
    j++;
  }
}

int kl_rfc3161_compute(kl_hasher_t *h, const kl_rfc3161_t *rec, int out_alg, kl_imprint_t *out,
                       kl_err_t *e) {
  kl_imprint_t t, s;
  int r;
  if ((r = kl_hasher_start(h, (int)rec->tst_alg, e))) return kl_err_wrap(e, "RFC 3161 tstInfo");
  kl_hasher_update(h, rec->tst_prefix, rec->tst_prefix_len);
  kl_hasher_update(h, rec->input.digest, rec->input.len);
  kl_hasher_update(h, rec->tst_suffix, rec->tst_suffix_len);
  if (kl_hasher_finish(h, &t)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  if ((r = kl_hasher_start(h, (int)rec->sig_alg, e))) return kl_err_wrap(e, "RFC 3161 signed attributes");
  kl_hasher_update(h, rec->sig_prefix, rec->sig_prefix_len);
  kl_hasher_update(h, t.digest, t.len);
  kl_hasher_update(h, rec->sig_suffix, rec->sig_suffix_len);
  if (kl_hasher_finish(h, &s)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  if ((r = kl_hasher_start(h, out_alg, e))) return kl_err_wrap(e, "RFC 3161 output");
  kl_hasher_update_imprint(h, &s);
  if (kl_hasher_finish(h, out)) return kl_err_set(e, KL_ECRYPTO, "digest failed");
  return 0;
}
