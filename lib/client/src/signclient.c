/* Client side of aggregation: request PDUs, responses to verified signatures, local trees. */
#include "keyless/signclient.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/netclient.h"
#include "keyless/pdu.h"
#include "keyless/tree.h"
#include "keyless/verify.h"

#define MAX_BATCH_LEVEL 24 /* 16M hashes in one local tree is plenty */

struct kl_aggr_resp {
  kl_pdu_t *pdu;
};

struct kl_sign_batch {
  kl_aggr_item_t item;
  size_t n;
  kl_imprint_t *hashes;
  kl_tree_t *tree; /* NULL when the one hash is sent as is */
};

static int hmac_alg_of(const kl_aggr_auth_t *auth) { return auth->hmac_alg ? auth->hmac_alg : KL_HASH_SHA256; }

uint64_t kl_aggr_request_id(void) {
  uint64_t id = 0;
  if (RAND_bytes((unsigned char *)&id, sizeof id) != 1) id = (uint64_t)(uintptr_t)&id ^ 0x9e3779b97f4a7c15ull;
  return (id >> 2) | 1;
}

int kl_aggr_request_build(const kl_aggr_auth_t *auth, const kl_aggr_item_t *items, size_t n, bool want_config,
                          uint8_t **out, size_t *len, kl_err_t *e) {
  *out = NULL;
  *len = 0;
  if (auth == NULL || auth->user == NULL || auth->user[0] == '\0' || auth->key == NULL)
    return kl_err_set(e, KL_EINVAL, "aggregation request: give the login and key");
  if (n == 0 && !want_config) return kl_err_set(e, KL_EINVAL, "aggregation request: nothing to ask for");
  for (size_t i = 0; i < n; i++) {
    if (items[i].request_id == 0) return kl_err_set(e, KL_EINVAL, "aggregation request %zu: request id 0", i + 1);
    if (items[i].level > 255)
      return kl_err_set(e, KL_EINVAL, "aggregation request %zu: level %u exceeds 255", i + 1, items[i].level);
    for (size_t k = 0; k < i; k++)
      if (items[k].request_id == items[i].request_id)
        return kl_err_set(e, KL_EINVAL, "aggregation request: request id %llu used twice",
                          (unsigned long long)items[i].request_id);
  }
  kl_pdu_writer_t w;
  kl_pdu_header_t hdr = {auth->user, false, false, 0, 0};
  int r = kl_pdu_writer_begin(&w, KL_PDU_AGGR_REQ, &hdr, e);
  for (size_t i = 0; r == 0 && i < n; i++) {
    kl_pdu_aggr_req_t q = {.request_id = items[i].request_id, .hash = items[i].hash, .has_level = items[i].level != 0, .level = items[i].level};
    r = kl_pdu_add_aggr_req(&w, &q, e);
  }
  if (r == 0 && want_config) r = kl_pdu_add_config_req(&w, e);
  if (r == 0) r = kl_pdu_writer_finish(&w, hmac_alg_of(auth), auth->key, auth->keylen, out, len, e);
  kl_pdu_writer_free(&w);
  return r ? kl_err_wrap(e, "aggregation request") : 0;
}

/* ---- responses ---- */

static int status_err(uint64_t status) { return status == KL_STATUS_AUTH_FAILURE ? KL_EAUTH : KL_ESERVICE; }

int kl_aggr_resp_open(const uint8_t *p, size_t n, const kl_aggr_auth_t *auth, kl_aggr_resp_t **out, kl_err_t *e) {
  kl_pdu_t *pdu = NULL;
  int r;
  *out = NULL;
  if (auth == NULL || auth->key == NULL) return kl_err_set(e, KL_EINVAL, "aggregation response: no HMAC key to check it with");
  if ((r = kl_pdu_parse(p, n, &pdu, e))) return kl_err_wrap(e, "aggregation response");
  if (pdu->type != KL_PDU_AGGR_RESP) {
    r = kl_err_set(e, KL_EFORMAT, "expected an aggregation response (0x221), got PDU type 0x%X", pdu->type);
  } else if (pdu->error != NULL) {
    const kl_pdu_error_t *x = pdu->error;
    char text[400];
    r = kl_err_set(e, status_err(x->status), "aggregator error 0x%llX: %s", (unsigned long long)x->status,
                   kl_pdu_status_msg(KL_PDU_SVC_AGGR, x->status, x->message, text, sizeof text));
  } else if ((r = kl_pdu_check_hmac_alg(pdu, hmac_alg_of(auth), auth->key, auth->keylen, e))) {
    kl_err_wrap(e, "aggregation response");
  }
  if (r) {
    kl_pdu_free(pdu);
    return r;
  }
  if ((*out = calloc(1, sizeof **out)) == NULL) {
    kl_pdu_free(pdu);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  (*out)->pdu = pdu;
  return 0;
}

void kl_aggr_resp_free(kl_aggr_resp_t *r) {
  if (r == NULL) return;
  kl_pdu_free(r->pdu);
  free(r);
}

size_t kl_aggr_resp_count(const kl_aggr_resp_t *r) { return r->pdu->n_aggr_resps; }

int kl_aggr_resp_config(const kl_aggr_resp_t *r, kl_aggr_config_t *out, kl_err_t *e) {
  const kl_pdu_config_t *c = r->pdu->config;
  memset(out, 0, sizeof *out);
  if (c == NULL) return kl_err_set(e, KL_ENOTFOUND, "the aggregation response carries no configuration");
  if (c->has_max_level && c->max_level > 255)
    return kl_err_set(e, KL_EFORMAT, "aggregator configuration: max_level %llu exceeds 255", (unsigned long long)c->max_level);
  if (c->has_aggr_algo && (c->aggr_algo > 255 || !kl_hash_known((int)c->aggr_algo)))
    return kl_err_set(e, KL_EFORMAT, "aggregator configuration: unknown aggregation algorithm 0x%llX",
                      (unsigned long long)c->aggr_algo);
  out->has_max_level = c->has_max_level;
  out->has_aggr_algo = c->has_aggr_algo;
  out->has_aggr_period = c->has_aggr_period;
  out->has_max_requests = c->has_max_requests;
  out->max_level = c->max_level;
  out->aggr_algo = c->aggr_algo;
  out->aggr_period = c->aggr_period;
  out->max_requests = c->max_requests;
  out->parent_uris = (const char *const *)c->parent_uris;
  out->n_parent_uris = c->n_parent_uris;
  return 0;
}

uint64_t kl_aggr_err_status(const kl_err_t *e) {
  static const char *const marks[] = {"aggregator error 0x", "aggregator status 0x"};
  if (e == NULL || (e->code != KL_ESERVICE && e->code != KL_EAUTH)) return 0;
  for (size_t i = 0; i < 2; i++) {
    const char *p = strstr(e->msg, marks[i]);
    if (p) return strtoull(p + strlen(marks[i]), NULL, 16);
  }
  return 0;
}

bool kl_aggr_status_retryable(uint64_t status) {
  return status == KL_STATUS_AGGR_TOO_MANY_REQUESTS || status == KL_STATUS_INTERNAL_ERROR ||
         status == KL_STATUS_UPSTREAM_ERROR || status == KL_STATUS_UPSTREAM_TIMEOUT;
}

/* The aggregation response for request id, with its status checked. */
static int find_resp(const kl_aggr_resp_t *r, uint64_t id, const kl_pdu_aggr_resp_t **out, kl_err_t *e) {
  const kl_pdu_t *pdu = r->pdu;
  size_t found = 0;
  *out = NULL;
  for (size_t i = 0; i < pdu->n_aggr_resps; i++)
    if (pdu->aggr_resps[i].request_id == id) {
      if (found++ == 0) *out = &pdu->aggr_resps[i];
    }
  if (found > 1)
    return kl_err_set(e, KL_EFORMAT, "the aggregation response answers request id %llu %zu times", (unsigned long long)id, found);
  if (found == 0) {
    if (pdu->n_aggr_resps == 0)
      return kl_err_set(e, KL_EFORMAT, "the aggregation response has no answer for request id %llu (it has none at all)",
                        (unsigned long long)id);
    return kl_err_set(e, KL_EFORMAT, "the aggregation response has no answer for request id %llu (it answers request id %llu)",
                      (unsigned long long)id, (unsigned long long)pdu->aggr_resps[0].request_id);
  }
  const kl_pdu_aggr_resp_t *x = *out;
  if (x->status != KL_STATUS_OK) {
    char text[400];
    return kl_err_set(e, status_err(x->status), "aggregator status 0x%llX for request id %llu: %s",
                      (unsigned long long)x->status, (unsigned long long)id,
                      kl_pdu_status_msg(KL_PDU_SVC_AGGR, x->status, x->error_msg, text, sizeof text));
  }
  if (x->n_chains == 0)
    return kl_err_set(e, KL_EFORMAT, "the aggregation response for request id %llu has no aggregation hash chain",
                      (unsigned long long)id);
  return 0;
}

/* Builds, parses and verifies the signature: [local chain of leaf `leaf` of `tree`] followed by
 * the response's parts, the first (bottom) gateway chain's first link corrected by
 * item->level minus the local chain's output level. doc/doc_level are what is verified. */
static int make_sig(const kl_aggr_resp_t *r, const kl_aggr_item_t *item, const kl_tree_t *tree, size_t leaf,
                    const kl_imprint_t *doc, unsigned doc_level, kl_sig_t **out, kl_err_t *e) {
  const kl_pdu_aggr_resp_t *x;
  kl_buf_t b = KL_BUF_INIT;
  kl_sig_t *sig = NULL;
  int rc;
  *out = NULL;
  if ((rc = find_resp(r, item->request_id, &x, e))) return rc;
  /* The bottom chain is the one with the longest chain index list. */
  size_t first = 0;
  for (size_t k = 1; k < x->n_chains; k++)
    if (x->chains[k].n_index > x->chains[first].n_index) first = k;
  const kl_aggr_chain_t *gw = &x->chains[first];
  if (gw->n_links == 0) return kl_err_set(e, KL_EFORMAT, "the gateway's aggregation chain has no links");
  unsigned below = tree ? kl_tree_root_level(tree) : 0; /* level the local chain ends at */
  uint64_t lc = gw->links[0].level_corr;
  if (lc > 255 || lc + item->level < below)
    return kl_err_set(e, KL_EFORMAT, "the gateway's first level correction %llu does not fit request level %u",
                      (unsigned long long)lc, item->level);
  uint64_t new_lc = lc + item->level - below;
  size_t m = kl_tlv_open(&b);
  if (tree && (rc = kl_tree_chain(tree, leaf, gw->aggr_time, gw->index, gw->n_index, &b, e))) {
    kl_err_wrap(e, "local aggregation chain %zu", leaf + 1);
    goto out;
  }
  for (size_t i = 0, k = 0; i < x->n_parts; i++) {
    bool is_chain = x->parts[i].type == KL_T_AGGR_CHAIN;
    if (is_chain && k++ == first && new_lc != lc) {
      kl_aggr_link_t links[KL_MAX_CHAIN_LINKS + 1];
      kl_aggr_chain_t c = *gw;
      if (c.n_links > KL_MAX_CHAIN_LINKS + 1) {
        rc = kl_err_set(e, KL_EFORMAT, "the gateway's aggregation chain has %zu links", c.n_links);
        goto out;
      }
      memcpy(links, gw->links, c.n_links * sizeof *links);
      links[0].level_corr = new_lc;
      c.links = links;
      kl_aggr_chain_encode(&b, &c);
    } else {
      kl_buf_put(&b, x->parts[i].raw, x->parts[i].len);
    }
  }
  if ((rc = kl_tlv_close(&b, m, KL_T_SIGNATURE, 0)) || (rc = kl_buf_check(&b, e))) {
    if (rc == KL_ETOOBIG) kl_err_set(e, rc, "the signature would exceed 65,539 bytes");
    goto out;
  }
  if ((rc = kl_sig_parse(b.p, b.len, &sig, e))) {
    kl_err_wrap(e, "signature for request id %llu", (unsigned long long)item->request_id);
    goto out;
  }
  kl_verify_opts_t vo;
  kl_verify_result_t res;
  memset(&vo, 0, sizeof vo);
  vo.doc_hash = doc;
  vo.doc_level = doc_level;
  kl_verify(sig, KL_POLICY_INTERNAL, &vo, &res);
  if (res.verdict != KL_VER_OK) {
    rc = kl_err_set(e, KL_EFORMAT, "the signature for request id %llu does not verify internally: %s %s: %s",
                    (unsigned long long)item->request_id, kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
    kl_sig_free(sig);
    goto out;
  }
  *out = sig;
out:
  kl_buf_free(&b);
  return rc;
}

int kl_aggr_resp_signature(const kl_aggr_resp_t *r, const kl_aggr_item_t *item, kl_sig_t **out, kl_err_t *e) {
  return make_sig(r, item, NULL, 0, &item->hash, item->level, out, e);
}

/* ---- local aggregation ---- */

size_t kl_sign_batch_capacity(unsigned max_level) {
  return (size_t)1 << (max_level < MAX_BATCH_LEVEL ? max_level : MAX_BATCH_LEVEL);
}

int kl_sign_batch_create(const kl_imprint_t *hashes, size_t n, unsigned max_level, int alg, uint64_t request_id,
                         kl_sign_batch_t **out, kl_err_t *e) {
  return kl_sign_batch_create_meta(hashes, n, max_level, alg, NULL, 0, request_id, out, e);
}

int kl_sign_batch_create_meta(const kl_imprint_t *hashes, size_t n, unsigned max_level, int alg, const uint8_t *meta,
                              size_t meta_len, uint64_t request_id, kl_sign_batch_t **out, kl_err_t *e) {
  *out = NULL;
  if (n == 0) return kl_err_set(e, KL_EINVAL, "nothing to sign");
  if (request_id == 0) return kl_err_set(e, KL_EINVAL, "request id 0");
  if (meta && max_level == 0)
    return kl_err_set(e, KL_ERANGE, "the metadata link takes one level: the local tree needs a height of 1 or more");
  size_t cap = kl_sign_batch_capacity(meta ? max_level - 1 : max_level);
  if (n > cap)
    return kl_err_set(e, KL_ERANGE, "%zu hashes do not fit a local tree of height %u%s (at most %zu)", n, max_level,
                      meta ? " with metadata" : "", cap);
  for (size_t i = 0; i < n; i++)
    if (!kl_hash_known(hashes[i].alg) || hashes[i].len != kl_hash_digest_len(hashes[i].alg))
      return kl_err_set(e, KL_EHASHALG, "hash %zu: not a valid imprint (algorithm 0x%02X, %u bytes)", i + 1,
                        hashes[i].alg, hashes[i].len);
    else if (!kl_hash_trusted(hashes[i].alg))
      return kl_err_set(e, KL_EHASHALG, "hash %zu: %s is not accepted for new signatures", i + 1, kl_hash_name(hashes[i].alg));
  kl_sign_batch_t *b = calloc(1, sizeof *b);
  if (b == NULL || (b->hashes = malloc(n * sizeof *b->hashes)) == NULL) {
    free(b);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  memcpy(b->hashes, hashes, n * sizeof *hashes);
  b->n = n;
  b->item.request_id = request_id;
  b->item.hash = hashes[0];
  if (n > 1 || meta) { /* with metadata even one hash gets a tree: hash and metadata under a root */
    kl_tree_leaf_t *leaves = calloc(n, sizeof *leaves);
    int r;
    if (leaves == NULL) {
      kl_sign_batch_free(b);
      return kl_err_set(e, KL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
      leaves[i].hash = hashes[i];
      leaves[i].meta = meta;
      leaves[i].meta_len = meta_len;
    }
    r = kl_tree_build(leaves, n, alg ? alg : hashes[0].alg, max_level, &b->tree, e);
    free(leaves);
    if (r) {
      kl_sign_batch_free(b);
      return kl_err_wrap(e, "local aggregation tree");
    }
    b->item.hash = *kl_tree_root(b->tree);
    b->item.level = kl_tree_root_level(b->tree);
  }
  *out = b;
  return 0;
}

void kl_sign_batch_free(kl_sign_batch_t *b) {
  if (b == NULL) return;
  kl_tree_free(b->tree);
  free(b->hashes);
  free(b);
}

size_t kl_sign_batch_size(const kl_sign_batch_t *b) { return b->n; }
const kl_aggr_item_t *kl_sign_batch_item(const kl_sign_batch_t *b) { return &b->item; }

int kl_sign_batch_signature(const kl_sign_batch_t *b, const kl_aggr_resp_t *r, size_t i, kl_sig_t **out, kl_err_t *e) {
  *out = NULL;
  if (i >= b->n) return kl_err_set(e, KL_EINVAL, "hash %zu of a batch of %zu", i + 1, b->n);
  return make_sig(r, &b->item, b->tree, i, &b->hashes[i], 0, out, e);
}

/* ---- round trips ---- */

int kl_aggr_exchange(const char *url, const char *user, const char *key, int hmac_alg, const kl_aggr_item_t *items,
                     size_t n, bool want_config, int timeout_ms, kl_aggr_resp_t **out, kl_err_t *e) {
  kl_err_t local = {0};
  kl_url_t u;
  kl_buf_t resp = KL_BUF_INIT;
  uint8_t *req = NULL;
  size_t req_len = 0;
  int r, status = 200;
  bool canned = strncmp(url, "file://", 7) == 0;
  *out = NULL;
  if (e == NULL) e = &local;
  memset(&u, 0, sizeof u);
  if (!canned && (r = kl_url_parse(url, &u, e))) return r;
  if (user == NULL && u.user[0]) user = u.user;
  if (key == NULL && u.key[0]) key = u.key;
  if (user == NULL || key == NULL)
    return kl_err_set(e, KL_EINVAL, "aggregator %s: give the login and key (--aggr-user U --aggr-key K, or ksi+http://U:K@host/)",
                      url);
  kl_aggr_auth_t auth = {user, key, strlen(key), hmac_alg};
  if ((r = kl_aggr_request_build(&auth, items, n, want_config, &req, &req_len, e))) return r;
  if (canned) {
    FILE *f = fopen(url + 7, "rb");
    if (f == NULL) {
      r = kl_err_set(e, KL_EIO, "cannot open the canned response %s", url + 7);
    } else {
      uint8_t chunk[4096];
      size_t got;
      while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && resp.len <= KL_PDU_MAX_SIZE) kl_buf_put(&resp, chunk, got);
      r = ferror(f) ? kl_err_set(e, KL_EIO, "cannot read the canned response %s", url + 7) : kl_buf_check(&resp, e);
      fclose(f);
    }
  } else if ((r = kl_net_request(&u, req, req_len, "application/ksi-request", timeout_ms, KL_PDU_MAX_SIZE, &resp, &status, e))) {
    if (r != KL_ENOMEM && r != KL_EINVAL) e->code = r = KL_EIO;
    kl_err_wrap(e, "aggregator %s", url);
  }
  free(req);
  if (r == 0 && (r = kl_aggr_resp_open(resp.p, resp.len, &auth, out, e))) {
    if (status >= 400 && (r == KL_EFORMAT || r == KL_ECRITICAL || r == KL_ETOOBIG))
      r = kl_err_set(e, KL_EIO, "aggregator %s: HTTP status %d (the body is not an aggregation response)", url, status);
    else
      kl_err_wrap(e, "aggregator %s", url);
  }
  kl_buf_free(&resp);
  return r;
}

int kl_sign_hashes(const char *url, const char *user, const char *key, const kl_imprint_t *hashes, size_t n,
                   unsigned max_level, int hmac_alg, int timeout_ms, kl_sig_t **sigs, kl_err_t *e) {
  return kl_sign_hashes_meta(url, user, key, hashes, n, max_level, hmac_alg, timeout_ms, NULL, 0, sigs, e);
}

int kl_sign_hashes_meta(const char *url, const char *user, const char *key, const kl_imprint_t *hashes, size_t n,
                        unsigned max_level, int hmac_alg, int timeout_ms, const uint8_t *meta, size_t meta_len,
                        kl_sig_t **sigs, kl_err_t *e) {
  kl_sign_batch_t *b = NULL;
  kl_aggr_resp_t *resp = NULL;
  uint64_t id = strncmp(url, "file://", 7) == 0 ? 1 : kl_aggr_request_id();
  int r;
  for (size_t i = 0; i < n; i++) sigs[i] = NULL;
  if ((r = kl_sign_batch_create_meta(hashes, n, max_level, 0, meta, meta_len, id, &b, e)) ||
      (r = kl_aggr_exchange(url, user, key, hmac_alg, kl_sign_batch_item(b), 1, false, timeout_ms, &resp, e)))
    goto out;
  for (size_t i = 0; i < n && r == 0; i++) r = kl_sign_batch_signature(b, resp, i, &sigs[i], e);
  if (r)
    for (size_t i = 0; i < n; i++) {
      kl_sig_free(sigs[i]);
      sigs[i] = NULL;
    }
out:
  kl_aggr_resp_free(resp);
  kl_sign_batch_free(b);
  return r;
}
