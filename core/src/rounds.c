/* Round bookkeeping: held requests per second, batches of a node's own requests, the leader's
 * collection, answers on commit. */
#include "rounds.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idmap.h"
#include "joinchain.h"
#include "keyless/pdu.h"

enum { OWN, FORWARD, BATCH };

/* An outcome besides the KL_CORE_ANSWER_* ones: the leaf is in the round, but the round's leaves
 * do not give its root (answered as KL_CORE_ANSWER_RETRY). */
#define OUT_INCONSISTENT 100

typedef struct held {
  uint64_t second, origin, id;
  kl_imprint_t imprint;
  unsigned level;
  uint8_t kind;  /* OWN: a request to answer; FORWARD: another member's leaf (leader); BATCH: the
                  * leaf standing for own requests closed together (batch.h below) */
  bool closed;   /* OWN: put into its second's leaf (a batch, or as itself) */
  bool dropped;  /* left out of its round by the leader's collection: its level did not fit */
  uint32_t requests; /* FORWARD, BATCH: how many requests the leaf stands for */
  uint64_t batch;    /* OWN: the id of the batch it is in, 0: none */
  size_t slot;       /* OWN in a batch: its leaf in the batch tree */
  void *ctx;         /* OWN */
  uint64_t client_request_id;
} held_t;

/* A batch's tree, held with its BATCH leaf until the round with that leaf commits. */
typedef struct batch {
  uint64_t id;
  kl_tree_t *tree;
  /* While a committed round is answered: what became of the batch. */
  int outcome; /* -1: wait for a later round; else a KL_CORE_ANSWER_* */
  kl_core_upper_t up; /* KL_CORE_ANSWER_CHAIN: the round tree's chain for the batch's leaf */
} batch_t;

static uint64_t fwd_key(uint64_t origin, uint64_t id) { return origin * 0x9E3779B97F4A7C15ull ^ id; }

struct kl_core_rounds {
  uint64_t self, next_id;
  uint64_t closed; /* the last second this node closed (its own leaf, or the leader's collection):
                    * later arrivals go after it */
  int alg;
  unsigned max_level;   /* a round root's highest level */
  size_t max_pending;   /* requests held at once */
  int max_req_level;    /* max_level - depth(max_pending), -1: none fits */
  int max_batch_level;  /* max_req_level - KL_CORE_ROUND_RESERVE: above it a request goes alone */
  int max_fwd_level;    /* a forward's highest level: a request's, or a batch root's */
  uint64_t n_dropped, collected_requests;
  kl_core_answer_cb cb;
  void *arg;
  held_t *h;
  size_t n, cap;
  idmap_t forwards; /* (origin, id) of forwards held, for duplicates */
  batch_t *b;
  size_t nb, capb;
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
  r->max_batch_level = m - KL_CORE_ROUND_RESERVE; /* a batch's root stays within max_level - the reserve */
  r->max_fwd_level = (int)r->max_level - KL_CORE_ROUND_RESERVE;
  if (r->max_fwd_level < r->max_req_level) r->max_fwd_level = r->max_req_level;
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

static void batch_free(batch_t *b) {
  kl_tree_free(b->tree);
  kl_core_upper_free(&b->up);
}

void kl_core_rounds_destroy(kl_core_rounds_t *r) {
  if (r == NULL) return;
  idmap_free(&r->forwards);
  for (size_t i = 0; i < r->nb; i++) batch_free(&r->b[i]);
  free(r->b);
  free(r->h);
  free(r);
}

size_t kl_core_rounds_pending(const kl_core_rounds_t *r) { return r->n; }
uint64_t kl_core_rounds_dropped(const kl_core_rounds_t *r) { return r->n_dropped; }
uint64_t kl_core_rounds_collected_requests(const kl_core_rounds_t *r) { return r->collected_requests; }
uint64_t kl_core_rounds_closed(const kl_core_rounds_t *r) { return r->closed; }

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

/* The checks an own request and a forward share: the level fits, room is left. */
static int admissible(kl_core_rounds_t *r, unsigned level, int top, const char *what, kl_err_t *e) {
  if (top < 0 || level > (unsigned)top)
    return kl_err_set(e, KL_ERANGE, "%s level %u is above %d: a round of up to %zu requests must stay within level %u",
                      what, level, top, r->max_pending, r->max_level);
  if (r->n >= r->max_pending) return kl_err_set(e, KL_ETOOBIG, "%zu requests held: no room for the %s", r->n, what);
  return 0;
}

int kl_core_rounds_add(kl_core_rounds_t *r, uint64_t second, const kl_imprint_t *imprint, unsigned level, void *ctx,
                       uint64_t client_request_id, uint64_t *id, kl_err_t *e) {
  int rc = admissible(r, level, r->max_req_level, "request", e);
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
  x->kind = OWN;
  *id = x->id;
  return 0;
}

int kl_core_rounds_add_forward(kl_core_rounds_t *r, uint64_t sender, uint64_t now, uint64_t second, uint64_t origin,
                               uint64_t id, const kl_imprint_t *imprint, unsigned level, kl_err_t *e) {
  return kl_core_rounds_add_forward_n(r, sender, now, second, origin, id, imprint, level, 1, e);
}

int kl_core_rounds_add_forward_n(kl_core_rounds_t *r, uint64_t sender, uint64_t now, uint64_t second, uint64_t origin,
                                 uint64_t id, const kl_imprint_t *imprint, unsigned level, uint32_t requests,
                                 kl_err_t *e) {
  if (sender == 0 || origin != sender || origin == r->self)
    return kl_err_set(e, KL_EAUTH, "forward with origin %llu from member %llu", (unsigned long long)origin,
                      (unsigned long long)sender);
  if (second > now + KL_CORE_FORWARD_WINDOW || (now > KL_CORE_FORWARD_WINDOW && second < now - KL_CORE_FORWARD_WINDOW))
    return kl_err_set(e, KL_ESTATE, "forward for second %llu at %llu: more than %d s away", (unsigned long long)second,
                      (unsigned long long)now, KL_CORE_FORWARD_WINDOW);
  uint64_t key = fwd_key(origin, id);
  size_t at = idmap_get(&r->forwards, key);
  int rc = admissible(r, level, r->max_fwd_level, "forwarded leaf", e);
  if (rc == KL_ERANGE) return rc;
  if (at != SIZE_MAX && at < r->n && r->h[at].kind == FORWARD && r->h[at].origin == origin && r->h[at].id == id)
    return 0; /* a duplicate */
  if (rc) return rc;
  held_t *x = push(r, e);
  if (x == NULL) return KL_ENOMEM;
  x->second = second > r->closed ? second : r->closed + 1; /* late: into the next open round */
  x->origin = origin;
  x->id = id;
  x->imprint = *imprint;
  x->level = level;
  x->kind = FORWARD;
  x->requests = requests ? requests : 1;
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

static batch_t *find_batch(kl_core_rounds_t *r, uint64_t id) {
  for (size_t i = 0; i < r->nb; i++)
    if (r->b[i].id == id) return &r->b[i];
  return NULL;
}

/* Two or more own requests of `second` (their indexes in at[]) become a batch: its tree, and a
 * BATCH leaf held for its round. The tree is built up to level 255: requests up to
 * max_batch_level make a root within max_level - KL_CORE_ROUND_RESERVE, and a root above that
 * (the limits changed meanwhile) is the leader's to leave out, like any leaf too high. */
static int make_batch(kl_core_rounds_t *r, uint64_t second, const size_t *at, size_t k, kl_core_leaf_t *leaf,
                      kl_err_t *e) {
  if (r->nb == r->capb) {
    size_t cap = r->capb ? r->capb * 2 : 8;
    batch_t *b = realloc(r->b, cap * sizeof *b);
    if (b == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    r->b = b;
    r->capb = cap;
  }
  kl_tree_leaf_t *l = calloc(k, sizeof *l);
  if (l == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  for (size_t j = 0; j < k; j++) { /* levels are at most max_level (add checks them): one byte */
    l[j].hash = r->h[at[j]].imprint;
    l[j].level = (uint8_t)r->h[at[j]].level;
  }
  kl_tree_t *t;
  int rc = kl_tree_build(l, k, r->alg, 255, &t, e);
  free(l);
  if (rc) return rc;
  held_t *x = push(r, e); /* may move r->h: at[] are indexes */
  if (x == NULL) {
    kl_tree_free(t);
    return KL_ENOMEM;
  }
  batch_t *b = &r->b[r->nb++];
  memset(b, 0, sizeof *b);
  b->id = r->next_id++;
  b->tree = t;
  b->outcome = -1;
  kl_core_upper_init(&b->up);
  x->second = second;
  x->origin = r->self;
  x->id = b->id;
  x->imprint = *kl_tree_root(t);
  x->level = kl_tree_root_level(t);
  x->kind = BATCH;
  x->requests = (uint32_t)k;
  for (size_t j = 0; j < k; j++) {
    held_t *m = &r->h[at[j]];
    m->closed = true;
    m->batch = b->id;
    m->slot = j;
  }
  *leaf = (kl_core_leaf_t){x->imprint, x->level, r->self, x->id};
  return 0;
}

int kl_core_rounds_close_own(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t *leaf, uint64_t *leaf_second,
                             uint32_t *requests, int *have, kl_err_t *e) {
  uint64_t s = UINT64_MAX;
  size_t k = 0;
  *have = 0;
  for (size_t i = 0; i < r->n; i++) {
    const held_t *x = &r->h[i];
    if (x->kind == OWN && !x->closed && x->second <= second && x->second < s) s = x->second;
  }
  if (s == UINT64_MAX) {
    if (second > r->closed) r->closed = second;
    return 0;
  }
  size_t *at = malloc(r->n * sizeof *at);
  if (at == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  size_t lone = SIZE_MAX; /* a request too high for a batch goes alone, one per call */
  for (size_t i = 0; i < r->n && lone == SIZE_MAX; i++) {
    const held_t *x = &r->h[i];
    if (x->kind != OWN || x->closed || x->second != s) continue;
    if ((int64_t)x->level > r->max_batch_level) lone = i;
    else at[k++] = i;
  }
  if (lone == SIZE_MAX && k == 1) lone = at[0]; /* no tree of one */
  int rc = 0;
  if (lone != SIZE_MAX) {
    held_t *x = &r->h[lone];
    x->closed = true;
    *leaf = (kl_core_leaf_t){x->imprint, x->level, r->self, x->id};
    k = 1;
  } else {
    rc = make_batch(r, s, at, k, leaf, e);
  }
  free(at);
  if (rc) return rc;
  if (s > r->closed) r->closed = s;
  *leaf_second = s;
  *requests = (uint32_t)k;
  *have = 1;
  return 0;
}

/* The leaves of a round: forwards, batches and lone own requests (a request in a batch is in
 * the round through its batch's leaf). */
static bool is_leaf(const held_t *x) { return x->kind != OWN || (x->closed && x->batch == 0); }

/* A round of k leaves has depth at most kl_core_rounds_depth(k), so leaving out every leaf
 * above max_level minus that depth makes the rest fit: fewer leaves are never deeper. */
int kl_core_rounds_collect(kl_core_rounds_t *r, uint64_t second, kl_core_leaf_t **leaves, size_t *n, kl_imprint_t *root,
                           int *root_set, kl_err_t *e) {
  size_t k = 0;
  kl_core_leaf_t own;
  uint64_t own_second;
  uint32_t own_n;
  int have, rc;
  *leaves = NULL;
  *n = 0;
  *root_set = 0;
  r->collected_requests = 0;
  do { /* this node's own leaf for `second` (and for any earlier second left open: late for it) */
    if ((rc = kl_core_rounds_close_own(r, second, &own, &own_second, &own_n, &have, e))) return rc;
  } while (have);
  for (size_t i = 0; i < r->n; i++) k += r->h[i].second == second && is_leaf(&r->h[i]) && !r->h[i].dropped;
  if (k == 0) return 0;
  int fit = (int)r->max_level - (int)kl_core_rounds_depth(k);
  size_t kept = 0;
  for (size_t i = 0; i < r->n; i++) {
    held_t *x = &r->h[i];
    if (x->second != second || !is_leaf(x) || x->dropped) continue;
    if ((int64_t)x->level > fit) {
      x->dropped = true;
      r->n_dropped += x->kind == OWN ? 1 : x->requests;
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
    if (x->second != second || !is_leaf(x) || x->dropped) continue;
    l[k] = (kl_core_leaf_t){x->imprint, x->level, x->origin, x->id};
    r->collected_requests += x->kind == OWN ? 1 : x->requests;
    k++;
  }
  kl_tree_t *t;
  rc = build(l, k, r->alg, r->max_level, &t, e);
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

static void answer_error(kl_core_rounds_t *r, const held_t *x, uint64_t second, int kind, const char *msg) {
  if (kind == OUT_INCONSISTENT) kind = KL_CORE_ANSWER_RETRY;
  kl_core_answer_t a = {.second = second,
                        .status = kind == KL_CORE_ANSWER_TOO_HIGH ? KL_STATUS_AGGR_REQUEST_TOO_LARGE : KL_STATUS_UPSTREAM_ERROR,
                        .error = msg,
                        .kind = kind};
  r->cb(r->arg, x->ctx, x->client_request_id, &a);
}

static const char *why(int kind) {
  switch (kind) {
    case OUT_INCONSISTENT: return "the committed round is inconsistent; retry";
    case KL_CORE_ANSWER_TOO_HIGH: return "the request's level does not fit the round's tree; it was left out";
    case KL_CORE_ANSWER_MISMATCH: return "the committed leaf under this request's id is not this request; retry";
    default: return "the request's round was not committed with it; retry";
  }
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

/* What a committed round means for one of this node's leaves (a lone request or a batch): -1
 * to wait for a later round, else a KL_CORE_ANSWER_*; *found is the leaf's index in the round. */
static int leaf_outcome(const held_t *x, const kl_core_round_t *round, const idmap_t *mine, const kl_tree_t *t,
                        size_t *found) {
  if (x->dropped && x->second <= round->second) return KL_CORE_ANSWER_TOO_HIGH;
  *found = idmap_get(mine, x->id);
  /* Not in this round: wait one more (the leader moves late arrivals into the next round). */
  if (*found == SIZE_MAX) return x->second + 1 > round->second ? -1 : KL_CORE_ANSWER_RETRY;
  const kl_core_leaf_t *l = &round->leaves[*found];
  /* Another leaf under this one's id (a forged or stale forward): never its chain. */
  if (!kl_imprint_eq(&l->imprint, &x->imprint) || l->level != x->level) return KL_CORE_ANSWER_MISMATCH;
  return t == NULL ? OUT_INCONSISTENT : KL_CORE_ANSWER_CHAIN;
}

/* A batch whose leaf is in the committed round: the round tree's chain for that leaf, once. */
static int batch_upper(batch_t *b, const kl_tree_t *t, size_t found, uint64_t second) {
  kl_err_t e = {0};
  return kl_core_upper_set(&b->up, t, found, second, &e) ? KL_CORE_ANSWER_RETRY : KL_CORE_ANSWER_CHAIN;
}

static void answer_chain(kl_core_rounds_t *r, const held_t *x, uint64_t second, const kl_buf_t *chain) {
  kl_core_answer_t a = {.second = second, .chain = chain->p, .chain_len = chain->len, .kind = KL_CORE_ANSWER_CHAIN};
  r->cb(r->arg, x->ctx, x->client_request_id, &a);
}

/* One own request of a committed round; false to keep holding it. */
static bool answer_own(kl_core_rounds_t *r, const held_t *x, const kl_core_round_t *round, const idmap_t *mine,
                       const kl_tree_t *t, kl_buf_t *chain, kl_buf_t *scratch) {
  kl_err_t ce = {0};
  size_t found = SIZE_MAX;
  kl_buf_reset(chain);
  if (x->batch) {
    const batch_t *b = find_batch(r, x->batch);
    int out = b ? b->outcome : KL_CORE_ANSWER_RETRY;
    if (out < 0) return false;
    if (out != KL_CORE_ANSWER_CHAIN) answer_error(r, x, round->second, out, why(out));
    else if (kl_core_chain_join(&b->up, b->tree, x->slot, round->second, scratch, chain, &ce))
      answer_error(r, x, round->second, KL_CORE_ANSWER_RETRY, ce.msg);
    else answer_chain(r, x, round->second, chain);
    return true;
  }
  int out = leaf_outcome(x, round, mine, t, &found);
  if (out < 0) return false;
  if (out != KL_CORE_ANSWER_CHAIN) answer_error(r, x, round->second, out, why(out));
  else if (kl_tree_chain(t, found, round->second, NULL, 0, chain, &ce))
    answer_error(r, x, round->second, KL_CORE_ANSWER_RETRY, ce.msg);
  else answer_chain(r, x, round->second, chain);
  return true;
}

int kl_core_rounds_committed(kl_core_rounds_t *r, const kl_core_round_t *round, kl_err_t *e) {
  int rc = 0;
  if (r == NULL) return 0; /* nothing held (a daemon stopping before it made its rounds) */
  kl_tree_t *t = committed_tree(round, &rc, e);
  /* This node's leaves in the round, by request (or batch) id. */
  idmap_t mine = {0};
  for (size_t k = 0; k < round->n_leaves; k++)
    if (round->leaves[k].origin == r->self) idmap_put(&mine, round->leaves[k].request_id, k);
  /* What became of each batch: its members follow it. */
  for (size_t i = 0; i < r->n; i++) {
    const held_t *x = &r->h[i];
    batch_t *b = x->kind == BATCH ? find_batch(r, x->id) : NULL;
    if (b == NULL) continue;
    size_t found = SIZE_MAX;
    b->outcome = leaf_outcome(x, round, &mine, t, &found);
    if (b->outcome == KL_CORE_ANSWER_CHAIN) b->outcome = batch_upper(b, t, found, round->second);
  }
  /* Answer and forget everything held for this second and before. */
  size_t keep = 0;
  kl_buf_t chain = KL_BUF_INIT, scratch = KL_BUF_INIT;
  for (size_t i = 0; i < r->n; i++) {
    const held_t *x = &r->h[i];
    bool done;
    if (x->kind == FORWARD) done = x->second <= round->second; /* done with once its round is */
    else if (x->kind == BATCH) {
      const batch_t *b = find_batch(r, x->id);
      done = b == NULL || b->outcome >= 0;
    }
    else done = answer_own(r, x, round, &mine, t, &chain, &scratch);
    if (!done) r->h[keep++] = r->h[i];
  }
  r->n = keep;
  /* Batches done with go; indexes moved: rebuild the forwards' map from what is still held. */
  size_t kb = 0;
  for (size_t i = 0; i < r->nb; i++) {
    if (r->b[i].outcome >= 0) batch_free(&r->b[i]);
    else r->b[kb++] = r->b[i];
  }
  r->nb = kb;
  idmap_free(&r->forwards);
  for (size_t i = 0; i < r->n; i++)
    if (r->h[i].kind == FORWARD) idmap_put(&r->forwards, fwd_key(r->h[i].origin, r->h[i].id), i);
  idmap_free(&mine);
  kl_buf_free(&chain);
  kl_buf_free(&scratch);
  kl_tree_free(t);
  return rc;
}
