/* Round bookkeeping: held requests per second, the leader's collection, answers on commit. */
#include "rounds.h"

#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"

typedef struct held {
  uint64_t second, origin, id;
  kl_imprint_t imprint;
  unsigned level;
  void *ctx; /* own requests only */
  uint64_t client_request_id;
  bool own;
} held_t;

/* A map from a 64-bit key to an index, open addressing, for the per-request lookups that would
 * otherwise make a round of n requests cost n^2 (found by the core benchmark). */
typedef struct idmap {
  uint64_t *keys;
  size_t *vals; /* index + 1; 0 = empty */
  size_t cap, n;
} idmap_t;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static void idmap_free(idmap_t *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

static bool idmap_put(idmap_t *m, uint64_t key, size_t val);

static bool idmap_grow(idmap_t *m) {
  idmap_t n = {0};
  n.cap = m->cap ? m->cap * 2 : 256;
  n.keys = calloc(n.cap, sizeof *n.keys);
  n.vals = calloc(n.cap, sizeof *n.vals);
  if (n.keys == NULL || n.vals == NULL) {
    idmap_free(&n);
    return false;
  }
  for (size_t i = 0; i < m->cap; i++)
    if (m->vals[i]) idmap_put(&n, m->keys[i], m->vals[i] - 1);
  idmap_free(m);
  *m = n;
  return true;
}

static bool idmap_put(idmap_t *m, uint64_t key, size_t val) {
  if ((m->n + 1) * 2 > m->cap && !idmap_grow(m)) return false;
  for (size_t i = mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->vals[i] == 0 || m->keys[i] == key) {
      if (m->vals[i] == 0) m->n++;
      m->keys[i] = key;
      m->vals[i] = val + 1;
      return true;
    }
  }
}

static size_t idmap_get(const idmap_t *m, uint64_t key) {
  if (m->cap == 0) return SIZE_MAX;
  for (size_t i = mix(key) & (m->cap - 1); m->vals[i]; i = (i + 1) & (m->cap - 1))
    if (m->keys[i] == key) return m->vals[i] - 1;
  return SIZE_MAX;
}

static uint64_t fwd_key(uint64_t origin, uint64_t id) { return origin * 0x9E3779B97F4A7C15ull ^ id; }

struct kl_core_rounds {
  uint64_t self, next_id;
  uint64_t closed; /* the last second this node collected as leader: later arrivals go after it */
  int alg;
  unsigned max_level;
  kl_core_answer_cb cb;
  void *arg;
  held_t *h;
  size_t n, cap;
  idmap_t forwards; /* (origin, id) of forwards held, for duplicates */
};

int kl_core_rounds_create(uint64_t self, int algorithm, unsigned max_level, kl_core_answer_cb cb, void *arg,
                          kl_core_rounds_t **out, kl_err_t *e) {
  kl_core_rounds_t *r = calloc(1, sizeof *r);
  if (r == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  r->self = self;
  r->alg = algorithm;
  r->max_level = max_level;
  r->cb = cb;
  r->arg = arg;
  r->next_id = 1;
  *out = r;
  return 0;
}

void kl_core_rounds_destroy(kl_core_rounds_t *r) {
  if (r == NULL) return;
  idmap_free(&r->forwards);
  free(r->h);
  free(r);
}

size_t kl_core_rounds_pending(const kl_core_rounds_t *r) { return r->n; }

static held_t *push(kl_core_rounds_t *r, kl_err_t *e) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    held_t *h = realloc(r->h, cap * sizeof *h);
    if (h == NULL) {
      kl_err_set(e, KL_ENOMEM, "out of memory");
      return NULL;
    }
    r->h = h;
    r->cap = cap;
  }
  held_t *x = &r->h[r->n++];
  memset(x, 0, sizeof *x);
  return x;
}

int kl_core_rounds_add(kl_core_rounds_t *r, uint64_t second, const kl_imprint_t *imprint, unsigned level, void *ctx,
                       uint64_t client_request_id, uint64_t *id, kl_err_t *e) {
  if (level > r->max_level) return kl_err_set(e, KL_ERANGE, "request level %u exceeds %u", level, r->max_level);
  held_t *x = push(r, e);
  if (x == NULL) return KL_ENOMEM;
  x->second = second > r->closed ? second : r->closed + 1;
  x->origin = r->self;
  x->id = r->next_id++;
  x->imprint = *imprint;
  x->level = level;
  x->ctx = ctx;
  x->client_request_id = client_request_id;
  x->own = true;
  *id = x->id;
  return 0;
}

int kl_core_rounds_add_forward(kl_core_rounds_t *r, uint64_t second, uint64_t origin, uint64_t id,
                               const kl_imprint_t *imprint, unsigned level, kl_err_t *e) {
  if (level > r->max_level) return kl_err_set(e, KL_ERANGE, "forwarded request level %u exceeds %u", level, r->max_level);
  uint64_t key = fwd_key(origin, id);
  size_t at = idmap_get(&r->forwards, key);
  if (at != SIZE_MAX && at < r->n && r->h[at].origin == origin && r->h[at].id == id) return 0; /* a duplicate */
  held_t *x = push(r, e);
  if (x == NULL) return KL_ENOMEM;
  x->second = second > r->closed ? second : r->closed + 1; /* late: into the next open round */
  x->origin = origin;
  x->id = id;
  x->imprint = *imprint;
  x->level = level;
  idmap_put(&r->forwards, key, r->n - 1); /* on failure duplicates merely go undetected */
  return 0;
}

static int build(kl_core_rounds_t *r, const kl_core_leaf_t *leaves, size_t n, kl_tree_t **t, kl_err_t *e) {
  kl_tree_leaf_t *tl = calloc(n, sizeof *tl);
  if (tl == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    tl[i].hash = leaves[i].imprint;
    tl[i].level = (uint8_t)leaves[i].level;
  }
  int rc = kl_tree_build(tl, n, r->alg, r->max_level, t, e);
  free(tl);
  return rc;
}

int kl_core_rounds_collect(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t **leaves, size_t *n, kl_imprint_t *root,
                           int *root_set, kl_err_t *e) {
  size_t k = 0;
  *leaves = NULL;
  *n = 0;
  *root_set = 0;
  if (second > r->closed) r->closed = second;
  for (size_t i = 0; i < r->n; i++) k += r->h[i].second == second;
  if (k == 0) return 0;
  kl_core_leaf_t *l = calloc(k, sizeof *l);
  if (l == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  k = 0;
  for (size_t i = 0; i < r->n; i++) {
    const held_t *x = &r->h[i];
    if (x->second != second) continue;
    l[k].imprint = x->imprint;
    l[k].level = x->level;
    l[k].origin = x->origin;
    l[k].request_id = x->id;
    k++;
  }
  kl_tree_t *t;
  int rc = build(r, l, k, &t, e);
  if (rc) {
    free(l);
    return rc;
  }
  *root = *kl_tree_root(t);
  *root_set = 1;
  kl_tree_free(t);
  *leaves = l;
  *n = k;
  return 0;
}

static void answer_error(kl_core_rounds_t *r, const held_t *x, uint64_t second, const char *why) {
  kl_core_answer_t a = {second, KL_STATUS_UPSTREAM_ERROR, why, NULL, 0};
  r->cb(r->arg, x->ctx, x->client_request_id, &a);
}

int kl_core_rounds_committed(kl_core_rounds_t *r, const kl_core_round_t *round, kl_err_t *e) {
  kl_tree_t *t = NULL;
  int rc = 0;
  if (round->n_leaves > 0) {
    if ((rc = build(r, round->leaves, round->n_leaves, &t, e))) return rc;
    if (round->root == NULL || !kl_imprint_eq(kl_tree_root(t), round->root)) {
      kl_tree_free(t);
      t = NULL;
      rc = kl_err_set(e, KL_EFORMAT, "second %llu: the committed root is not the root of its leaves",
                      (unsigned long long)round->second);
    }
  }
  /* This node's leaves in the round, by request id. */
  idmap_t mine = {0};
  for (size_t k = 0; k < round->n_leaves; k++)
    if (round->leaves[k].origin == r->self) idmap_put(&mine, round->leaves[k].request_id, k);
  /* Answer and forget everything held for this second and before. */
  size_t keep = 0;
  kl_buf_t chain = KL_BUF_INIT;
  for (size_t i = 0; i < r->n; i++) {
    held_t x = r->h[i];
    size_t found = SIZE_MAX;
    /* The leader may have placed a late request in a later round than the one it was sent for. */
    if (x.own) found = idmap_get(&mine, x.id);
    /* Not in this round: wait one more (the leader moves late arrivals into the next round). */
    if (found == SIZE_MAX && x.second + 1 > round->second) {
      r->h[keep++] = x;
      continue;
    }
    if (!x.own) continue;
    kl_err_t ce = {0};
    kl_buf_reset(&chain);
    if (found == SIZE_MAX) {
      answer_error(r, &x, round->second, "the request's round was not committed with it; retry");
    } else if (t == NULL) {
      answer_error(r, &x, round->second, "the committed round is inconsistent; retry");
    } else if (kl_tree_chain(t, found, round->second, NULL, 0, &chain, &ce)) {
      answer_error(r, &x, round->second, ce.msg);
    } else {
      kl_core_answer_t a = {round->second, 0, NULL, chain.p, chain.len};
      r->cb(r->arg, x.ctx, x.client_request_id, &a);
    }
  }
  r->n = keep;
  /* Indexes moved: rebuild the forwards' map from what is still held. */
  idmap_free(&r->forwards);
  for (size_t i = 0; i < r->n; i++)
    if (!r->h[i].own) idmap_put(&r->forwards, fwd_key(r->h[i].origin, r->h[i].id), i);
  idmap_free(&mine);
  kl_buf_free(&chain);
  kl_tree_free(t);
  return rc;
}
