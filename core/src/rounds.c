/* Round bookkeeping: held requests per second, the leader's collection, answers on commit. */
#include "rounds.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/pdu.h"

typedef struct held {
  uint64_t second, origin, id;
  kl_imprint_t imprint;
  unsigned level;
  void *ctx; /* own requests only */
  uint64_t client_request_id;
  bool own;
  bool dropped; /* left out of its round by the leader's collection: its level did not fit */
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
  unsigned max_level;   /* a round root's highest level */
  size_t max_pending;   /* requests held at once */
  int max_req_level;    /* max_level - depth(max_pending), -1: none fits */
  uint64_t n_dropped;
  kl_core_answer_cb cb;
  void *arg;
  held_t *h;
  size_t n, cap;
  idmap_t forwards; /* (origin, id) of forwards held, for duplicates */
};

unsigned kl_core_rounds_depth(size_t n) {
  unsigned d = 0;
  if (n <= 1) return 1;                   /* a lone leaf is paired with a blank sibling */
  for (size_t m = n - 1; m; m >>= 1) d++; /* ceil(log2 n): every row halves, rounding up */
  return d;
}

void kl_core_rounds_set_max_pending(kl_core_rounds_t *r, size_t max_pending) {
  if (max_pending == 0) max_pending = 1;
  if (r->max_pending == max_pending) return; /* the daemon sets it on every request: cheap */
  r->max_pending = max_pending;
  int m = (int)r->max_level - (int)kl_core_rounds_depth(max_pending);
  r->max_req_level = m < 0 ? -1 : m;
}

int kl_core_rounds_max_request_level(const kl_core_rounds_t *r) { return r->max_req_level; }

int kl_core_rounds_create(uint64_t self, int algorithm, unsigned max_level, kl_core_answer_cb cb, void *arg,
                          kl_core_rounds_t **out, kl_err_t *e) {
  kl_core_rounds_t *r = calloc(1, sizeof *r);
  if (r == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  r->self = self;
  r->alg = algorithm;
  r->max_level = max_level > 255 ? 255 : max_level;
  r->cb = cb;
  r->arg = arg;
  /* Ids stay unique across restarts (time in the high bits, room for 2^24 requests a second),
   * so a forward still held for an earlier run of this node never shares an id with a new one. */
  r->next_id = ((uint64_t)time(NULL) << 24) + 1;
  kl_core_rounds_set_max_pending(r, KL_CORE_ROUNDS_DEFAULT_MAX_PENDING);
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
uint64_t kl_core_rounds_dropped(const kl_core_rounds_t *r) { return r->n_dropped; }

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

/* The checks an own request and a forward share: the level fits any round, room is left. */
static int admissible(kl_core_rounds_t *r, unsigned level, const char *what, kl_err_t *e) {
  if (r->max_req_level < 0 || level > (unsigned)r->max_req_level)
    return kl_err_set(e, KL_ERANGE, "%s level %u is above %d: a round of up to %zu requests must stay within level %u",
                      what, level, r->max_req_level, r->max_pending, r->max_level);
  if (r->n >= r->max_pending) return kl_err_set(e, KL_ETOOBIG, "%zu requests held: no room for the %s", r->n, what);
  return 0;
}

int kl_core_rounds_add(kl_core_rounds_t *r, uint64_t second, const kl_imprint_t *imprint, unsigned level, void *ctx,
                       uint64_t client_request_id, uint64_t *id, kl_err_t *e) {
  int rc = admissible(r, level, "request", e);
  if (rc) return rc;
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

int kl_core_rounds_add_forward(kl_core_rounds_t *r, uint64_t sender, uint64_t now, uint64_t second, uint64_t origin,
                               uint64_t id, const kl_imprint_t *imprint, unsigned level, kl_err_t *e) {
  if (sender == 0 || origin != sender || origin == r->self)
    return kl_err_set(e, KL_EAUTH, "forward with origin %llu from member %llu", (unsigned long long)origin,
                      (unsigned long long)sender);
  if (second > now + KL_CORE_FORWARD_WINDOW || (now > KL_CORE_FORWARD_WINDOW && second < now - KL_CORE_FORWARD_WINDOW))
    return kl_err_set(e, KL_ESTATE, "forward for second %llu at %llu: more than %d s away", (unsigned long long)second,
                      (unsigned long long)now, KL_CORE_FORWARD_WINDOW);
  uint64_t key = fwd_key(origin, id);
  size_t at = idmap_get(&r->forwards, key);
  int rc = admissible(r, level, "forwarded request", e);
  if (rc == KL_ERANGE) return rc;
  if (at != SIZE_MAX && at < r->n && !r->h[at].own && r->h[at].origin == origin && r->h[at].id == id)
    return 0; /* a duplicate */
  if (rc) return rc;
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

static int build(const kl_core_leaf_t *leaves, size_t n, int alg, unsigned max_level, kl_tree_t **t, kl_err_t *e) {
  kl_tree_leaf_t *tl = calloc(n, sizeof *tl);
  if (tl == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (leaves[i].level > 255) {
      free(tl);
      return kl_err_set(e, KL_ERANGE, "leaf %zu: level %u", i, leaves[i].level);
    }
    tl[i].hash = leaves[i].imprint;
    tl[i].level = (uint8_t)leaves[i].level;
  }
  int rc = kl_tree_build(tl, n, alg, max_level, t, e);
  free(tl);
  return rc;
}

/* A round of k leaves has depth at most kl_core_rounds_depth(k), so leaving out every leaf
 * above max_level minus that depth makes the rest fit: fewer leaves are never deeper. */
int kl_core_rounds_collect(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t **leaves, size_t *n, kl_imprint_t *root,
                           int *root_set, kl_err_t *e) {
  size_t k = 0;
  *leaves = NULL;
  *n = 0;
  *root_set = 0;
  if (second > r->closed) r->closed = second;
  for (size_t i = 0; i < r->n; i++) k += r->h[i].second == second && !r->h[i].dropped;
  if (k == 0) return 0;
  int fit = (int)r->max_level - (int)kl_core_rounds_depth(k);
  size_t kept = 0;
  for (size_t i = 0; i < r->n; i++) {
    held_t *x = &r->h[i];
    if (x->second != second || x->dropped) continue;
    if ((int64_t)x->level > fit) {
      x->dropped = true;
      r->n_dropped++;
    } else {
      kept++;
    }
  }
  if (kept == 0) return 0;
  kl_core_leaf_t *l = calloc(kept, sizeof *l);
  if (l == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  k = 0;
  for (size_t i = 0; i < r->n; i++) {
    const held_t *x = &r->h[i];
    if (x->second != second || x->dropped) continue;
    l[k].imprint = x->imprint;
    l[k].level = x->level;
    l[k].origin = x->origin;
    l[k].request_id = x->id;
    k++;
  }
  kl_tree_t *t;
  int rc = build(l, k, r->alg, r->max_level, &t, e);
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

static void answer_error(kl_core_rounds_t *r, const held_t *x, uint64_t second, int kind, const char *why) {
  kl_core_answer_t a = {second, kind == KL_CORE_ANSWER_TOO_HIGH ? KL_STATUS_AGGR_REQUEST_TOO_LARGE : KL_STATUS_UPSTREAM_ERROR,
                        why, NULL, 0, kind};
  r->cb(r->arg, x->ctx, x->client_request_id, &a);
}

/* The committed round's tree, or NULL (rc set) when its leaves cannot give its root. The
 * leader's limits decided what is in it: a node rebuilds with the entry's algorithm up to
 * level 255, whatever its own configuration says. */
static kl_tree_t *committed_tree(const kl_core_round_t *round, int *rc, kl_err_t *e) {
  kl_tree_t *t = NULL;
  kl_err_t be = {0};
  if (round->n_leaves == 0) return NULL;
  if (round->root == NULL) {
    *rc = kl_err_set(e, KL_EFORMAT, "second %llu: leaves without a root", (unsigned long long)round->second);
  } else if ((*rc = build(round->leaves, round->n_leaves, round->algorithm, 255, &t, &be))) {
    *rc = kl_err_set(e, *rc == KL_ENOMEM ? KL_ENOMEM : KL_EFORMAT, "second %llu: the committed leaves: %s",
                     (unsigned long long)round->second, be.msg);
  } else if (!kl_imprint_eq(kl_tree_root(t), round->root)) {
    kl_tree_free(t);
    t = NULL;
    *rc = kl_err_set(e, KL_EFORMAT, "second %llu: the committed root is not the root of its leaves",
                     (unsigned long long)round->second);
  }
  return t;
}

int kl_core_rounds_committed(kl_core_rounds_t *r, const kl_core_round_t *round, kl_err_t *e) {
  int rc = 0;
  if (r == NULL) return 0; /* nothing held (a daemon stopping before it made its rounds) */
  kl_tree_t *t = committed_tree(round, &rc, e);
  /* This node's leaves in the round, by request id. */
  idmap_t mine = {0};
  for (size_t k = 0; k < round->n_leaves; k++)
    if (round->leaves[k].origin == r->self) idmap_put(&mine, round->leaves[k].request_id, k);
  /* Answer and forget everything held for this second and before. */
  size_t keep = 0;
  kl_buf_t chain = KL_BUF_INIT;
  for (size_t i = 0; i < r->n; i++) {
    held_t x = r->h[i];
    if (!x.own) { /* a forward: done with once its round is */
      if (x.second > round->second) r->h[keep++] = x;
      continue;
    }
    if (x.dropped && x.second <= round->second) {
      answer_error(r, &x, round->second, KL_CORE_ANSWER_TOO_HIGH,
                   "the request's level does not fit the round's tree; it was left out");
      continue;
    }
    /* The leader may have placed a late request in a later round than the one it was sent for. */
    size_t found = idmap_get(&mine, x.id);
    /* Not in this round: wait one more (the leader moves late arrivals into the next round). */
    if (found == SIZE_MAX && x.second + 1 > round->second) {
      r->h[keep++] = x;
      continue;
    }
    kl_err_t ce = {0};
    kl_buf_reset(&chain);
    if (found == SIZE_MAX) {
      answer_error(r, &x, round->second, KL_CORE_ANSWER_RETRY, "the request's round was not committed with it; retry");
    } else if (!kl_imprint_eq(&round->leaves[found].imprint, &x.imprint) || round->leaves[found].level != x.level) {
      /* Another request under this one's id (a forged or stale forward): never its chain. */
      answer_error(r, &x, round->second, KL_CORE_ANSWER_MISMATCH,
                   "the committed leaf under this request's id is not this request; retry");
    } else if (t == NULL) {
      answer_error(r, &x, round->second, KL_CORE_ANSWER_RETRY, "the committed round is inconsistent; retry");
    } else if (kl_tree_chain(t, found, round->second, NULL, 0, &chain, &ce)) {
      answer_error(r, &x, round->second, KL_CORE_ANSWER_RETRY, ce.msg);
    } else {
      kl_core_answer_t a = {round->second, 0, NULL, chain.p, chain.len, KL_CORE_ANSWER_CHAIN};
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
