/* The round engine: requests, limits, the tree, the parent's answer fanned out. */
#include "keyless/round.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/chains.h"
#include "keyless/pdu.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"
#include "keyless/tree.h"
#include "keyless/verify.h"

typedef struct req {
  kl_imprint_t hash;
  unsigned level;
  uint32_t meta_off, meta_len; /* in the round's metas */
} req_t;

/* Requests per client id in this round (open addressing, grown at half full): the per-client
 * limit costs O(1) per request instead of a scan of the round. */
typedef struct client_count {
  char id[64];
  size_t n;
} client_count_t;

struct kl_round {
  kl_round_config_t cfg;
  req_t *reqs;
  size_t n, cap;
  kl_buf_t metas; /* every request's metadata value, back to back (one allocation, not one each) */
  client_count_t *clients;
  size_t n_clients, cap_clients; /* cap: a power of two */
  /* The parent's answer as last accepted (a copy of its parts, back to back) and its first
   * chain's index: a round's answers all continue the same chains, decoded and checked once
   * instead of once per request. */
  uint8_t *top_raw;
  size_t top_len;
  uint64_t top_time;
  uint64_t *top_index;
  size_t top_n_index;
  kl_tree_t *tree;
  bool closed;
};

int kl_metadata_encode(const kl_round_identity_t *id, kl_buf_t *out, kl_err_t *e) {
  if (id == NULL || id->client_id == NULL || id->client_id[0] == '\0')
    return kl_err_set(e, KL_EINVAL, "metadata needs a client id");
  /* 7E 01 01 (3 bytes) or 7E 02 01 01 (4 bytes): whichever makes the whole value even. The
   * children are written after room for the longer padding, then moved down a byte if the
   * shorter one is due (no temporary buffer). */
  static const uint8_t pad1[] = {0x7E, 0x01, 0x01}, pad2[] = {0x7E, 0x02, 0x01, 0x01};
  /* Usual ids (short strings): sized first, then written once in place (issue 12: this runs
   * for every request; the general code below reserves per element and moves half of them). */
  size_t cl = strlen(id->client_id) + 1, ml = id->machine_id ? strlen(id->machine_id) + 1 : 0;
  if (cl <= 0xFF && ml <= 0xFF) {
    uint8_t sq[8], tm[8];
    size_t sl = id->has_seq ? kl_uint_encode(id->seq, sq) : 0, tl = id->has_req_time ? kl_uint_encode(id->req_time_us, tm) : 0;
    size_t kids = 2 + cl + (ml ? 2 + ml : 0) + (id->has_seq ? 2 + sl : 0) + (id->has_req_time ? 2 + tl : 0);
    size_t pad = (kids + 3) % 2 == 0 ? 3 : 4;
    if (!kl_buf_reserve(out, pad + kids)) return kl_buf_check(out, e);
    uint8_t *p = out->p + out->len;
    memcpy(p, pad == 3 ? pad1 : pad2, pad);
    p += pad;
    *p++ = 0x01, *p++ = (uint8_t)cl, memcpy(p, id->client_id, cl), p += cl;
    if (ml) *p++ = 0x02, *p++ = (uint8_t)ml, memcpy(p, id->machine_id, ml), p += ml;
    if (id->has_seq) *p++ = 0x03, *p++ = (uint8_t)sl, memcpy(p, sq, sl), p += sl;
    if (id->has_req_time) *p++ = 0x04, *p++ = (uint8_t)tl, memcpy(p, tm, tl), p += tl;
    out->len += pad + kids;
    return 0;
  }
  size_t start = out->len;
  kl_buf_put(out, pad2, 4);
  kl_tlv_put_str(out, 0x01, 0, id->client_id);
  if (id->machine_id) kl_tlv_put_str(out, 0x02, 0, id->machine_id);
  if (id->has_seq) kl_tlv_put_uint(out, 0x03, 0, id->seq);
  if (id->has_req_time) kl_tlv_put_uint(out, 0x04, 0, id->req_time_us);
  int r = kl_buf_check(out, e);
  if (r == 0) {
    size_t kids = out->len - start - 4;
    if ((kids + 3) % 2 == 0) {
      memcpy(out->p + start, pad1, 3);
      memmove(out->p + start + 3, out->p + start + 4, kids);
      out->len--;
    }
  }
  return r;
}

/* The metadata step adds one level and a full round's tree at most ceil(log2(max_requests)): a
 * request above this could push the round past max_level and fail everyone's signatures. */
unsigned kl_round_max_request_level(const kl_round_config_t *cfg) {
  unsigned depth = 0;
  for (size_t n = 1; n < (cfg->max_requests ? cfg->max_requests : 1); n *= 2) depth++;
  unsigned max = cfg->max_level > 255 ? 255 : cfg->max_level;
  return max >= depth + 1 ? max - depth - 1 : 0;
}

int kl_round_create(const kl_round_config_t *cfg, kl_round_t **out, kl_err_t *e) {
  if (!kl_hash_trusted(cfg->algorithm)) return kl_err_set(e, KL_EHASHALG, "round: algorithm not usable");
  kl_round_t *r = calloc(1, sizeof *r);
  if (r == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  r->cfg = *cfg;
  if (r->cfg.max_level > 255) r->cfg.max_level = 255;
  *out = r;
  return 0;
}

void kl_round_free(kl_round_t *r) {
  if (r == NULL) return;
  kl_buf_free(&r->metas);
  free(r->reqs);
  free(r->clients);
  free(r->top_raw);
  free(r->top_index);
  kl_tree_free(r->tree);
  free(r);
}

size_t kl_round_size(const kl_round_t *r) { return r->n; }

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
  return h;
}

/* The slot of client id (cut to 63 bytes, as stored), created if absent; NULL out of memory. */
static client_count_t *client_slot(kl_round_t *r, const char *id) {
  char key[64];
  size_t klen = strnlen(id, sizeof key - 1); /* what snprintf("%s") did, without its cost per request */
  memcpy(key, id, klen);
  key[klen] = '\0';
  if (2 * (r->n_clients + 1) > r->cap_clients) {
    size_t cap = r->cap_clients ? r->cap_clients * 2 : 16;
    client_count_t *t = calloc(cap, sizeof *t);
    if (t == NULL) return NULL;
    for (size_t i = 0; i < r->cap_clients; i++) {
      if (r->clients[i].id[0] == '\0') continue;
      size_t j = fnv1a(r->clients[i].id) & (cap - 1);
      while (t[j].id[0]) j = (j + 1) & (cap - 1);
      t[j] = r->clients[i];
    }
    free(r->clients);
    r->clients = t;
    r->cap_clients = cap;
  }
  size_t j = fnv1a(key) & (r->cap_clients - 1);
  while (r->clients[j].id[0] && strcmp(r->clients[j].id, key) != 0) j = (j + 1) & (r->cap_clients - 1);
  if (r->clients[j].id[0] == '\0') {
    memcpy(r->clients[j].id, key, klen + 1);
    r->n_clients++;
  }
  return &r->clients[j];
}

int kl_round_add(kl_round_t *r, const kl_imprint_t *hash, unsigned level, const kl_round_identity_t *who, size_t *slot,
                 uint64_t *status, kl_err_t *e) {
  *status = KL_STATUS_INVALID_REQUEST;
  if (r->closed) return kl_err_set(e, KL_ESTATE, "the round is closed");
  if (!kl_hash_known(hash->alg) || hash->len != kl_hash_digest_len(hash->alg)) {
    *status = KL_STATUS_INVALID_PAYLOAD;
    return kl_err_set(e, KL_EINVAL, "request hash is not a valid imprint");
  }
  if (kl_hash_deprecated_at(hash->alg, (uint64_t)time(NULL))) { /* its signature would fail INT-13/15 */
    *status = KL_STATUS_INVALID_REQUEST;
    return kl_err_set(e, KL_EINVAL, "request hash uses %s, which is deprecated for new signatures", kl_hash_name(hash->alg));
  }
  if (level > kl_round_max_request_level(&r->cfg)) {
    *status = KL_STATUS_AGGR_REQUEST_TOO_LARGE;
    return kl_err_set(e, KL_ERANGE, "request level %u exceeds %u: the round's tree needs the levels above it", level,
                      kl_round_max_request_level(&r->cfg));
  }
  if (r->cfg.max_requests && r->n >= r->cfg.max_requests) {
    *status = KL_STATUS_AGGR_TOO_MANY_REQUESTS;
    return kl_err_set(e, KL_ERANGE, "the round is full (%zu requests)", r->n);
  }
  client_count_t *cc = NULL;
  if (r->cfg.per_client && who && who->client_id && who->client_id[0]) {
    if ((cc = client_slot(r, who->client_id)) == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    if (cc->n >= r->cfg.per_client) {
      *status = KL_STATUS_AGGR_OVER_QUOTA;
      return kl_err_set(e, KL_ERANGE, "client %s is over its quota of %zu per round", who->client_id, r->cfg.per_client);
    }
  }
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    req_t *n = realloc(r->reqs, cap * sizeof *n);
    if (n == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
    r->reqs = n;
    r->cap = cap;
  }
  size_t mark = r->metas.len;
  int rc = mark > UINT32_MAX / 2 ? kl_err_set(e, KL_ERANGE, "the round's metadata is too large")
                                 : kl_metadata_encode(who, &r->metas, e);
  if (rc) { /* this request's metadata only (an id over 65,535 bytes): the round's buffer goes on */
    r->metas.len = mark;
    r->metas.oom = false;
    return rc;
  }
  req_t *q = &r->reqs[r->n];
  memset(q, 0, sizeof *q);
  q->hash = *hash;
  q->level = level;
  q->meta_off = (uint32_t)mark;
  q->meta_len = (uint32_t)(r->metas.len - mark);
  if (cc) cc->n++;
  *slot = r->n++;
  *status = 0;
  return 0;
}

int kl_round_close(kl_round_t *r, kl_imprint_t *root, unsigned *level, kl_err_t *e) {
  if (r->closed || r->n == 0) return kl_err_set(e, KL_ESTATE, r->closed ? "the round is already closed" : "the round is empty");
  kl_tree_leaf_t *leaves = calloc(r->n, sizeof *leaves);
  if (leaves == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  for (size_t i = 0; i < r->n; i++) {
    leaves[i].hash = r->reqs[i].hash;
    leaves[i].level = (uint8_t)r->reqs[i].level;
    leaves[i].meta = r->metas.p + r->reqs[i].meta_off;
    leaves[i].meta_len = r->reqs[i].meta_len;
  }
  int rc = kl_tree_build(leaves, r->n, r->cfg.algorithm, r->cfg.max_level, &r->tree, e);
  free(leaves);
  if (rc) return rc;
  r->closed = true;
  /* The tree holds its own copies: the requests as added are not needed while the round waits
   * for its parent (most of a request's time in flight). */
  free(r->reqs);
  r->reqs = NULL;
  r->cap = 0;
  kl_buf_free(&r->metas);
  free(r->clients);
  r->clients = NULL;
  r->n_clients = r->cap_clients = 0;
  *root = *kl_tree_root(r->tree);
  *level = kl_tree_root_level(r->tree);
  return 0;
}

/* Checks the parent's first chain (it starts from this round's root at aggr_time) and keeps
 * its chain index; 0 at once when it is the chain checked last time. */
/* The parent's whole answer (its chains, the calendar chain, the authentication record) must
 * pass the internal policy above this round's root, as the clients' signatures will: a parent
 * that is wrong (a bug, a corrupt calendar, a hostile peer) must not make this tier hand out
 * signatures that fail to verify. Once per round. */
static int check_parent(const kl_round_t *r, const kl_round_parent_t *p, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  kl_sig_t *sig = NULL;
  size_t m = kl_tlv_open(&b);
  for (size_t i = 0; i < p->n; i++) kl_buf_put(&b, p->parts[i], p->lens[i]);
  int rc = kl_tlv_close(&b, m, KL_T_SIGNATURE, 0);
  if (rc == 0) rc = kl_buf_check(&b, e);
  if (rc == 0 && (rc = kl_sig_parse(b.p, b.len, &sig, e)) != 0) kl_err_wrap(e, "the parent's answer");
  kl_buf_free(&b);
  if (rc) return rc;
  kl_verify_opts_t o = {.doc_hash = kl_tree_root(r->tree), .input_level = kl_tree_root_level(r->tree)};
  kl_verify_result_t res;
  kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
  kl_sig_free(sig);
  if (res.verdict != KL_VER_OK)
    return kl_err_set(e, KL_EFORMAT, "the parent's answer fails the internal policy: %s %s", kl_vcode_str(res.code),
                      res.message);
  return 0;
}

static bool seen_parent(const kl_round_t *r, const kl_round_parent_t *p, uint64_t aggr_time) {
  size_t off = 0;
  if (r->top_raw == NULL || r->top_time != aggr_time) return false;
  for (size_t i = 0; i < p->n; off += p->lens[i], i++)
    if (off + p->lens[i] > r->top_len || memcmp(r->top_raw + off, p->parts[i], p->lens[i]) != 0) return false;
  return off == r->top_len;
}

static int accept_parent(kl_round_t *r, const kl_round_parent_t *p, uint64_t aggr_time, kl_err_t *e) {
  const uint8_t *raw = p->parts[0];
  size_t len = 0;
  if (seen_parent(r, p, aggr_time)) return 0;
  for (size_t i = 0; i < p->n; i++) len += p->lens[i];
  kl_tlv_t t;
  kl_arena_t a = KL_ARENA_INIT;
  kl_aggr_chain_t top;
  int rc;
  if ((rc = kl_tlv_parse_one(raw, p->lens[0], &t, e))) return kl_err_wrap(e, "parent's answer");
  if (t.type != KL_T_AGGR_CHAIN) return kl_err_set(e, KL_EFORMAT, "the parent's answer does not start with an 0x801");
  if ((rc = kl_aggr_chain_decode(&t, raw, &a, &top, e))) return kl_err_wrap(e, "parent's chain");
  if (!kl_imprint_eq(&top.input, kl_tree_root(r->tree)) || top.aggr_time != aggr_time) {
    kl_arena_free(&a);
    return kl_err_set(e, KL_EFORMAT, "the parent's chain is not for this round's root and time");
  }
  if ((rc = check_parent(r, p, e))) {
    kl_arena_free(&a);
    return rc;
  }
  uint8_t *copy = malloc(len);
  uint64_t *index = malloc((top.n_index ? top.n_index : 1) * sizeof *index);
  if (copy == NULL || index == NULL) {
    free(copy);
    free(index);
    kl_arena_free(&a);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  for (size_t i = 0, off = 0; i < p->n; off += p->lens[i], i++) memcpy(copy + off, p->parts[i], p->lens[i]);
  if (top.n_index) memcpy(index, top.index, top.n_index * sizeof *index);
  kl_arena_free(&a);
  free(r->top_raw);
  free(r->top_index);
  r->top_raw = copy;
  r->top_len = len;
  r->top_time = aggr_time;
  r->top_index = index;
  r->top_n_index = top.n_index;
  return 0;
}

int kl_round_accept(kl_round_t *r, const kl_round_parent_t *p, uint64_t aggr_time, kl_err_t *e) {
  if (!r->closed) return kl_err_set(e, KL_ESTATE, "the round is not closed");
  if (p->n == 0) return kl_err_set(e, KL_EFORMAT, "the parent's answer has no aggregation chain");
  return accept_parent(r, p, aggr_time, e);
}

int kl_round_answer_head(kl_round_t *r, uint64_t aggr_time, size_t slot, kl_buf_t *out, kl_err_t *e) {
  if (!r->closed || slot >= r->n) return kl_err_set(e, KL_ESTATE, "no such request in a closed round");
  if (r->top_raw == NULL || r->top_time != aggr_time)
    return kl_err_set(e, KL_ESTATE, "no parent's answer accepted for second %llu", (unsigned long long)aggr_time);
  return kl_tree_chain(r->tree, slot, aggr_time, r->top_index, r->top_n_index, out, e);
}

int kl_round_answer(kl_round_t *r, const kl_round_parent_t *p, uint64_t aggr_time, size_t slot, kl_buf_t *out,
                    kl_err_t *e) {
  int rc;
  size_t mark = out->len;
  if ((rc = kl_round_accept(r, p, aggr_time, e)) || (rc = kl_round_answer_head(r, aggr_time, slot, out, e))) return rc;
  for (size_t i = 0; i < p->n; i++) kl_buf_put(out, p->parts[i], p->lens[i]);
  if ((rc = kl_buf_check(out, e))) out->len = mark;
  return rc;
}
