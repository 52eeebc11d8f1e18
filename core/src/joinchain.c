/* The core's joined chains (joinchain.h). */
#include "joinchain.h"

#include <string.h>

#include "keyless/sig.h"
#include "keyless/tlv.h"

/* An 0x801 as kl_tree_chain writes it with no parent index (time, index, input, algorithm, then
 * the links): its one chain index element (the chain's shape), where its links start, how many. */
typedef struct chain_parts {
  uint64_t shape;
  size_t links_at, n_links;
} chain_parts_t;

static int chain_split(const uint8_t *p, size_t len, kl_tlv_t *top, chain_parts_t *cp, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int rc, n_index = 0;
  if ((rc = kl_tlv_parse_one(p, len, top, e))) return rc;
  cp->links_at = 0;
  cp->n_links = 0;
  kl_tlv_iter_children(&it, p, top);
  while ((rc = kl_tlv_next(&it, &c, e)) == 1) {
    if (c.type == KL_LINK_LEFT || c.type == KL_LINK_RIGHT) {
      if (cp->n_links++ == 0) cp->links_at = c.offset;
      continue;
    }
    if (cp->n_links) return kl_err_set(e, KL_EFORMAT, "element 0x%02X after the links", c.type);
    if (c.type == 0x03) {
      if (kl_tlv_get_uint(&c, &cp->shape, e)) return KL_EFORMAT;
      n_index++;
    }
  }
  if (rc < 0) return KL_EFORMAT;
  if (n_index != 1 || cp->n_links == 0 || cp->n_links > 63 || cp->shape >> cp->n_links != 1)
    return kl_err_set(e, KL_EFORMAT, "not a one-index chain of its own shape");
  return 0;
}

void kl_core_upper_init(kl_core_upper_t *u) {
  memset(u, 0, sizeof *u);
  kl_buf_init(&u->chain);
}

void kl_core_upper_free(kl_core_upper_t *u) { kl_buf_free(&u->chain); }

int kl_core_upper_set(kl_core_upper_t *u, const kl_tree_t *round, size_t leaf, uint64_t second, kl_err_t *e) {
  kl_tlv_t top;
  chain_parts_t cp;
  int rc;
  kl_buf_reset(&u->chain);
  if ((rc = kl_tree_chain(round, leaf, second, NULL, 0, &u->chain, e)) ||
      (rc = chain_split(u->chain.p, u->chain.len, &top, &cp, e)))
    return rc;
  u->links_at = cp.links_at;
  u->n_links = cp.n_links;
  u->shape = cp.shape;
  return 0;
}

/* The batch tree's 0x801 with the round's links after its own and the shape of the whole path
 * as its chain index (the first link least significant: the round's links above the batch's). */
int kl_core_chain_join(const kl_core_upper_t *u, const kl_tree_t *batch, size_t slot, uint64_t second, kl_buf_t *scratch,
                       kl_buf_t *out, kl_err_t *e) {
  kl_tlv_t top, c;
  kl_tlv_iter_t it;
  chain_parts_t cp;
  int rc;
  kl_buf_reset(scratch);
  if ((rc = kl_tree_chain(batch, slot, second, NULL, 0, scratch, e)) ||
      (rc = chain_split(scratch->p, scratch->len, &top, &cp, e)))
    return rc;
  if (cp.n_links + u->n_links > 63) return kl_err_set(e, KL_ERANGE, "a chain of %zu links", cp.n_links + u->n_links);
  uint64_t shape = u->shape << cp.n_links | (cp.shape ^ (uint64_t)1 << cp.n_links);
  size_t m = kl_tlv_open(out);
  kl_tlv_iter_children(&it, scratch->p, &top);
  while (kl_tlv_next(&it, &c, NULL) == 1 && c.offset < cp.links_at) {
    if (c.type == 0x03) kl_tlv_put_uint(out, 0x03, c.flags & (KL_TLV_FLAG_N | KL_TLV_FLAG_F), shape);
    else kl_buf_put(out, c.raw, c.raw_len);
  }
  kl_buf_put(out, scratch->p + cp.links_at, scratch->len - cp.links_at);
  kl_buf_put(out, u->chain.p + u->links_at, u->chain.len - u->links_at);
  if ((rc = kl_tlv_close(out, m, top.type, top.flags & (KL_TLV_FLAG_N | KL_TLV_FLAG_F)))) return kl_err_set(e, rc, "chain too long");
  return kl_buf_check(out, e);
}

