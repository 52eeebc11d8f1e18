/* The aggregation tree of a round: balanced pairing with KSI levels. */
#include "keyless/tree.h"

#include <stdlib.h>
#include <string.h>

#include "keyless/chains.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"

typedef struct node {
  kl_imprint_t hash;
  unsigned level;
  size_t parent; /* SIZE_MAX for the root */
  size_t sibling; /* the other child of parent */
  bool left;      /* this node is its parent's left child */
} node_t;

struct kl_tree {
  int alg;
  size_t n_leaves, n_alloc, n_nodes; /* n_alloc: leaves built (a blank one included) */
  node_t *nodes;      /* leaves first (after their metadata step), then parents */
  uint8_t **meta;     /* per leaf, into metablock (NULL: no metadata) */
  uint8_t *metablock; /* the copies of every leaf's metadata, back to back: one allocation */
  size_t *meta_len;
  kl_imprint_t *input; /* per leaf: the hash the client gave */
  unsigned *in_level;
  size_t root;
};

void kl_tree_free(kl_tree_t *t) {
  if (t == NULL) return;
  free(t->metablock);
  free(t->meta);
  free(t->meta_len);
  free(t->input);
  free(t->in_level);
  free(t->nodes);
  free(t);
}

static int build(const kl_tree_leaf_t *leaves, size_t n, int alg, unsigned max_level, kl_tree_t **out, kl_err_t *e);

/* A lone leaf without identity would have no link at all, which KSI cannot express: it is
 * paired with a blank sibling (the all-zero imprint of the algorithm) at its own level. */
int kl_tree_build(const kl_tree_leaf_t *leaves, size_t n, int alg, unsigned max_level, kl_tree_t **out, kl_err_t *e) {
  *out = NULL;
  if (n == 0) return kl_err_set(e, KL_EINVAL, "a tree needs at least one leaf");
  if (n == 1 && leaves[0].meta == NULL) {
    kl_tree_leaf_t two[2] = {leaves[0], leaves[0]};
    memset(&two[1].hash, 0, sizeof two[1].hash);
    two[1].hash.alg = (uint8_t)alg;
    two[1].hash.len = (uint8_t)kl_hash_digest_len(alg);
    int r = build(two, 2, alg, max_level, out, e);
    if (r == 0) (*out)->n_leaves = 1;
    return r;
  }
  return build(leaves, n, alg, max_level, out, e);
}

static int build(const kl_tree_leaf_t *leaves, size_t n, int alg, unsigned max_level, kl_tree_t **out, kl_err_t *e) {
  kl_hasher_t h;
  int r;
  if (max_level > 255) max_level = 255;
  if (!kl_hash_trusted(alg)) return kl_err_set(e, KL_EHASHALG, "aggregation algorithm 0x%02X is not usable", (unsigned)alg);
  kl_tree_t *t = calloc(1, sizeof *t);
  if (t == NULL || n > SIZE_MAX / 4 / sizeof(node_t)) goto oom;
  t->alg = alg;
  t->n_leaves = t->n_alloc = n;
  t->nodes = calloc(2 * n + 64, sizeof *t->nodes); /* leaves, parents, and a promoted copy per row */
  t->meta = calloc(n, sizeof *t->meta);
  t->meta_len = calloc(n, sizeof *t->meta_len);
  t->input = calloc(n, sizeof *t->input);
  t->in_level = calloc(n, sizeof *t->in_level);
  if (!t->nodes || !t->meta || !t->meta_len || !t->input || !t->in_level) goto oom;
  size_t metas = 0, off = 0;
  for (size_t i = 0; i < n; i++)
    if (leaves[i].meta != NULL) metas += leaves[i].meta_len;
  if ((t->metablock = malloc(metas ? metas : 1)) == NULL) goto oom;
  if ((r = kl_hasher_init(&h, e))) {
    kl_tree_free(t);
    return r;
  }
  /* Leaves: the hash, or H(hash || meta || level + 1) when the leaf has an identity. */
  for (size_t i = 0; i < n; i++) {
    node_t *nd = &t->nodes[i];
    t->input[i] = leaves[i].hash;
    t->in_level[i] = leaves[i].level;
    nd->hash = leaves[i].hash;
    nd->level = leaves[i].level;
    nd->parent = SIZE_MAX;
    if (leaves[i].meta != NULL) {
      t->meta[i] = t->metablock + off;
      if (leaves[i].meta_len) memcpy(t->meta[i], leaves[i].meta, leaves[i].meta_len);
      off += leaves[i].meta_len;
      t->meta_len[i] = leaves[i].meta_len;
      if (nd->level + 1 > max_level) goto range;
      nd->level++;
      if ((r = kl_aggr_step(&h, alg, true, &leaves[i].hash, t->meta[i], t->meta_len[i], (uint8_t)nd->level, &nd->hash, e)))
        goto fail;
    }
  }
  /* Pair neighbours level by level; an odd last node moves up as it is. */
  size_t lo = 0, hi = n, next = n;
  while (hi - lo > 1) {
    size_t start = next;
    for (size_t k = lo; k < hi; k += 2) {
      if (k + 1 == hi) { /* promoted: becomes a member of the next row without a new node */
        t->nodes[next] = t->nodes[k];
        t->nodes[next].parent = SIZE_MAX;
        t->nodes[k].parent = next; /* alias: same hash; marked by sibling == SIZE_MAX */
        t->nodes[k].sibling = SIZE_MAX;
        next++;
        continue;
      }
      node_t *l = &t->nodes[k], *rr = &t->nodes[k + 1], *p = &t->nodes[next];
      p->level = (l->level > rr->level ? l->level : rr->level) + 1;
      if (p->level > max_level) goto range;
      uint8_t sib[KL_IMPRINT_MAX];
      size_t sl = kl_imprint_to_bytes(&rr->hash, sib);
      if ((r = kl_aggr_step(&h, alg, true, &l->hash, sib, sl, (uint8_t)p->level, &p->hash, e))) goto fail;
      p->parent = SIZE_MAX;
      l->parent = rr->parent = next;
      l->sibling = k + 1;
      rr->sibling = k;
      l->left = true;
      rr->left = false;
      next++;
    }
    lo = start;
    hi = next;
  }
  t->n_nodes = next;
  t->root = lo;
  kl_hasher_close(&h);
  *out = t;
  return 0;
range:
  r = kl_err_set(e, KL_ERANGE, "the round's tree would exceed level %u", max_level);
  goto fail;
fail:
  kl_hasher_close(&h);
  kl_tree_free(t);
  return r;
oom:
  kl_tree_free(t);
  return kl_err_set(e, KL_ENOMEM, "out of memory");
}

const kl_imprint_t *kl_tree_root(const kl_tree_t *t) { return &t->nodes[t->root].hash; }
unsigned kl_tree_root_level(const kl_tree_t *t) { return t->nodes[t->root].level; }
size_t kl_tree_size(const kl_tree_t *t) { return t->n_leaves; }

/* A TLV8 (type at most 0x1F, value at most 255 bytes) at p; returns the end. */
static uint8_t *put8(uint8_t *p, uint8_t type, const void *v, size_t n) {
  p[0] = type;
  p[1] = (uint8_t)n;
  memcpy(p + 2, v, n);
  return p + 2 + n;
}

static uint8_t *put8_uint(uint8_t *p, uint8_t type, uint64_t v) {
  uint8_t tmp[8];
  return put8(p, type, tmp, kl_uint_encode(v, tmp));
}

/* The chain of leaf i, written straight from the tree: the bytes kl_aggr_chain_encode writes
 * (test_tree compares them), without building the link structures and without moving every
 * element down when its header turns out short. This is done for every request of a round, so
 * the chain is written in place in out (room for the longest is reserved first; 0x801 always has
 * a 4-byte header) and each sibling's imprint straight into its link, not copied through a
 * buffer on the stack (issue 12: each copy was a visible share of the gateway's CPU).
 * Returns 1 when the chain does not fit the TLV8 shortcuts (a long metadata value): the caller
 * takes the general path. */
#define FAST_BODY (64 + 9 * 64 + 2 + KL_IMPRINT_MAX + 16 + 2 + 255 + KL_MAX_CHAIN_LINKS * (2 + 11 + 2 + KL_IMPRINT_MAX))
static int chain_fast(const kl_tree_t *t, size_t i, uint64_t aggr_time, const uint64_t *parent_index, size_t n_parent,
                      kl_buf_t *out) {
  size_t path[KL_MAX_CHAIN_LINKS];
  size_t n = 0;
  bool meta = t->meta[i] != NULL;
  if (meta && t->meta_len[i] > 251) return 1;
  uint64_t shape = 1; /* built below: the direction bits, top link first, under a leading 1 */
  for (size_t k = i; t->nodes[k].parent != SIZE_MAX; k = t->nodes[k].parent) {
    if (t->nodes[k].sibling == SIZE_MAX) continue;
    if (n == KL_MAX_CHAIN_LINKS - 1) return 1;
    path[n++] = k;
  }
  if (n + meta == 0 || n + meta > 63 || n_parent >= 63) return 1;
  if (!kl_buf_reserve(out, 4 + FAST_BODY)) return 0; /* out is poisoned: kl_buf_check reports it */
  uint8_t *head = out->p + out->len, *body = head + 4, *p = body;
  for (size_t j = n; j-- > 0;) shape = shape << 1 | (t->nodes[path[j]].left ? 1u : 0u);
  if (meta) shape = shape << 1 | 1u; /* the metadata link is a left link, the first */
  p = put8_uint(p, 0x02, aggr_time);
  for (size_t j = 0; j < n_parent; j++) p = put8_uint(p, 0x03, parent_index[j]);
  p = put8_uint(p, 0x03, shape);
  p[0] = 0x05;
  p[1] = (uint8_t)kl_imprint_to_bytes(&t->input[i], p + 2);
  p += 2 + p[1];
  p = put8_uint(p, 0x06, (uint64_t)t->alg);
  unsigned level = t->in_level[i];
  if (meta) {
    p[0] = KL_LINK_LEFT;
    p[1] = (uint8_t)(2 + t->meta_len[i]);
    p = put8(p + 2, KL_SIB_METADATA, t->meta[i], t->meta_len[i]);
    level++;
  }
  for (size_t j = 0; j < n; j++) {
    const node_t *nd = &t->nodes[path[j]], *par = &t->nodes[nd->parent];
    uint8_t *link = p;
    unsigned corr = par->level - level - 1;
    p += 2;
    if (corr) p = put8_uint(p, 0x01, corr);
    p[0] = KL_SIB_IMPRINT;
    p[1] = (uint8_t)kl_imprint_to_bytes(&t->nodes[nd->sibling].hash, p + 2);
    p += 2 + p[1];
    link[0] = nd->left ? KL_LINK_LEFT : KL_LINK_RIGHT;
    link[1] = (uint8_t)(p - link - 2);
    level = par->level;
  }
  size_t len = (size_t)(p - body);
  head[0] = (uint8_t)(KL_TLV_FLAG_16 | (KL_T_AGGR_CHAIN >> 8));
  head[1] = (uint8_t)(KL_T_AGGR_CHAIN & 0xFF);
  head[2] = (uint8_t)(len >> 8);
  head[3] = (uint8_t)len;
  out->len += 4 + len;
  return 0;
}

int kl_tree_chain(const kl_tree_t *t, size_t i, uint64_t aggr_time, const uint64_t *parent_index, size_t n_parent,
                  kl_buf_t *out, kl_err_t *e) {
  if (i >= t->n_leaves) return kl_err_set(e, KL_EINVAL, "leaf %zu of %zu", i, t->n_leaves);
  if (chain_fast(t, i, aggr_time, parent_index, n_parent, out) == 0) return kl_buf_check(out, e);
  return kl_tree_chain_general(t, i, aggr_time, parent_index, n_parent, out, e);
}

int kl_tree_chain_general(const kl_tree_t *t, size_t i, uint64_t aggr_time, const uint64_t *parent_index,
                          size_t n_parent, kl_buf_t *out, kl_err_t *e) {
  if (i >= t->n_leaves) return kl_err_set(e, KL_EINVAL, "leaf %zu of %zu", i, t->n_leaves);
  kl_aggr_link_t links[KL_MAX_CHAIN_LINKS + 1];
  uint8_t sibs[KL_MAX_CHAIN_LINKS + 1][KL_IMPRINT_MAX];
  size_t n = 0;
  unsigned level = t->in_level[i];
  if (t->meta[i] != NULL) {
    memset(&links[n], 0, sizeof links[n]);
    links[n].dir = KL_LINK_LEFT;
    links[n].kind = KL_SIB_METADATA;
    links[n].sib_bytes = t->meta[i];
    links[n].sib_len = t->meta_len[i];
    n++;
    level++;
  }
  for (size_t k = i; t->nodes[k].parent != SIZE_MAX; k = t->nodes[k].parent) {
    const node_t *nd = &t->nodes[k];
    if (nd->sibling == SIZE_MAX) continue; /* promoted without a parent node */
    const node_t *p = &t->nodes[nd->parent];
    if (n == KL_MAX_CHAIN_LINKS) return kl_err_set(e, KL_ERANGE, "chain longer than %d links", KL_MAX_CHAIN_LINKS);
    memset(&links[n], 0, sizeof links[n]);
    links[n].dir = nd->left ? KL_LINK_LEFT : KL_LINK_RIGHT;
    links[n].kind = KL_SIB_IMPRINT;
    links[n].level_corr = p->level - level - 1;
    links[n].sibling = t->nodes[nd->sibling].hash;
    links[n].sib_len = kl_imprint_to_bytes(&links[n].sibling, sibs[n]);
    links[n].sib_bytes = sibs[n];
    level = p->level;
    n++;
  }
  if (n == 0) return kl_err_set(e, KL_ESTATE, "leaf %zu has no links", i); /* cannot happen: see kl_tree_build */
  kl_aggr_chain_t c;
  memset(&c, 0, sizeof c);
  c.aggr_time = aggr_time;
  c.input = t->input[i];
  c.algo = (uint64_t)t->alg;
  c.links = links;
  c.n_links = n;
  uint64_t shape;
  if (!kl_aggr_chain_shape(&c, &shape)) return kl_err_set(e, KL_ERANGE, "chain too long");
  uint64_t idx[64];
  if (n_parent >= 63) return kl_err_set(e, KL_ERANGE, "chain index list too long");
  if (n_parent) memcpy(idx, parent_index, n_parent * sizeof *idx);
  idx[n_parent] = shape;
  c.index = idx;
  c.n_index = n_parent + 1;
  kl_aggr_chain_encode(out, &c);
  return kl_buf_check(out, e);
}
