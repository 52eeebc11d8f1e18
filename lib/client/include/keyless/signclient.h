/* keyless: the client side of aggregation (KSI-FORMAT.md §7.2): getting hashes signed by a
 * gateway and turning its answers into signatures that verify.
 *
 * Layers, each usable on its own:
 *  - kl_aggr_request_build: a 0x220 request PDU for n items (request id, hash, level), with an
 *    optional configuration request, HMAC'd with the login's key.
 *  - kl_aggr_resp_open: a 0x221 response parsed and authenticated (PDU-level error, HMAC with
 *    the request's algorithm); kl_aggr_resp_signature then gives the signature for one item,
 *    and kl_aggr_resp_config the configuration the gateway sent.
 *  - kl_sign_batch: several document hashes signed through ONE request as a local tree (as
 *    ksi-tool's --max-lvl): each hash gets its own signature, whose bottom chain is its path in
 *    the local tree.
 *  - kl_aggr_exchange / kl_sign_hashes: the round trip over HTTP POST or ksi+tcp.
 *
 * Every signature handed out has been parsed (kl_sig_parse) and has passed the internal
 * verification policy with its document hash and level; anything else is an error naming what
 * was wrong. Levels: a hash sent at request_level R comes back with level corrections relative
 * to R; the client adds R to the first link of the first chain (§4.3) so that a verifier
 * starting at level 0 computes the same thing. When a local tree chain is put underneath, the
 * chain's own output level (the tree root level, which is R) is subtracted again, as libksi's
 * signature builder does: the gateway's first link is then kept as it came.
 *
 * Memory: requests are malloc'd (caller frees with free()); responses and batches are opaque
 * objects owned by the caller (kl_aggr_resp_free, kl_sign_batch_free); signatures are
 * kl_sig_t owned by the caller (kl_sig_free). Inputs are copied; nothing keeps pointers to
 * the caller's memory after a call returns, except where noted (kl_aggr_config_t).
 *
 * Threads: every function may run in several threads at once on different objects (the round
 * trips are blocking; SIGPIPE is masked per thread while writing, nothing process-wide changes).
 */
#ifndef KEYLESS_SIGNCLIENT_H
#define KEYLESS_SIGNCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one aggregation request asks for. */
typedef struct kl_aggr_item {
  uint64_t request_id; /* non-zero, unique within a PDU */
  kl_imprint_t hash;   /* a document hash, or the root of a local tree */
  unsigned level;      /* its level, 0..255: sent as request_level when non-zero */
} kl_aggr_item_t;

/* The login: the header's login id and the HMAC key (raw bytes of the shared secret). */
typedef struct kl_aggr_auth {
  const char *user;
  const void *key;
  size_t keylen;
  int hmac_alg; /* 0: SHA-256, the KSI default; the response must use the same */
} kl_aggr_auth_t;

/* Builds a 0x220 request for items[0..n) (n may be 0 with want_config: a configuration-only
 * request). *out gets the PDU bytes (caller frees with free()), *len their count. KL_EINVAL for
 * a zero or repeated request id, a level above 255, or missing credentials. */
KL_API int kl_aggr_request_build(const kl_aggr_auth_t *auth, const kl_aggr_item_t *items, size_t n,
                                 bool want_config, uint8_t **out, size_t *len, kl_err_t *e);

/* A random non-zero request id that fits in 62 bits. */
KL_API uint64_t kl_aggr_request_id(void);

/* ---- responses ---- */

typedef struct kl_aggr_resp kl_aggr_resp_t;

/* Parses and authenticates a 0x221 response. In order: the PDU parses (KL_EFORMAT,
 * KL_ECRITICAL ...); it is an aggregation response; a PDU-level error element gives KL_EAUTH
 * for status 0x102 and KL_ESERVICE otherwise, with the status text and the gateway's message
 * (error-only PDUs are accepted without HMAC, as libksi does); the HMAC must use
 * auth->hmac_alg and match auth->key (KL_EHMAC). The bytes are copied. */
KL_API int kl_aggr_resp_open(const uint8_t *p, size_t n, const kl_aggr_auth_t *auth,
                             kl_aggr_resp_t **out, kl_err_t *e);
KL_API void kl_aggr_resp_free(kl_aggr_resp_t *r);
/* Number of aggregation responses (0x02 elements) in the PDU. */
KL_API size_t kl_aggr_resp_count(const kl_aggr_resp_t *r);

/* The signature for item, which was sent as is (no local tree): the aggregation response with
 * item->request_id (KL_EFORMAT if there is none or more than one), its status (KL_EAUTH for
 * 0x102, else KL_ESERVICE), the 0x800 made of its parts with item->level added to the first
 * link, parsed, and verified internally with item->hash at item->level (KL_EFORMAT naming the
 * failed check, e.g. "INT-01"). *out is the caller's (kl_sig_free). */
KL_API int kl_aggr_resp_signature(const kl_aggr_resp_t *r, const kl_aggr_item_t *item, kl_sig_t **out,
                                  kl_err_t *e);

/* Aggregator configuration (0x04 in a response). parent_uris point into the response and are
 * valid until kl_aggr_resp_free. */
typedef struct kl_aggr_config {
  bool has_max_level, has_aggr_algo, has_aggr_period, has_max_requests;
  uint64_t max_level;    /* the highest request_level the gateway accepts, <= 255 */
  uint64_t aggr_algo;    /* a known hash algorithm id */
  uint64_t aggr_period;  /* milliseconds */
  uint64_t max_requests; /* per round */
  const char *const *parent_uris;
  size_t n_parent_uris;
} kl_aggr_config_t;

/* KL_ENOTFOUND when the response carries no configuration; KL_EFORMAT when a value is out of
 * range (max_level above 255, an unknown algorithm). */
KL_API int kl_aggr_resp_config(const kl_aggr_resp_t *r, kl_aggr_config_t *out, kl_err_t *e);

/* The gateway status an error from kl_aggr_resp_open, kl_aggr_resp_signature,
 * kl_sign_batch_signature or kl_aggr_exchange was made of (KL_ESERVICE, KL_EAUTH: "aggregator
 * error 0x300: ..." or "aggregator status 0x300 for request id ..."); 0 when it carries none. */
KL_API uint64_t kl_aggr_err_status(const kl_err_t *e);

/* Whether asking again (later, or another gateway) may succeed where status failed: 0x106 too
 * many requests (the gateway asks the client to slow down), 0x200 internal error (this
 * gateway's trouble, e.g. out of memory), 0x300 upstream error and 0x301 upstream timeout (its
 * parents are down or electing a leader). Not: invalid request, payload or input (0x101, 0x103,
 * 0x104, 0x107), authentication (0x102), and 0x105 over quota (an account limit that does not
 * clear in seconds: asking again only adds load). */
KL_API bool kl_aggr_status_retryable(uint64_t status);

/* ---- local aggregation ---- */

typedef struct kl_sign_batch kl_sign_batch_t;

/* How many document hashes one request can carry as a local tree of height max_level:
 * 2^max_level (capped at 2^24). max_level 0 means one hash per request. */
KL_API size_t kl_sign_batch_capacity(unsigned max_level);

/* Prepares one request for hashes[0..n): n == 1 sends the hash itself at level 0; n > 1 builds
 * a local tree with hash algorithm alg (0: hashes[0]'s; id 0 is SHA-1, never usable here) and
 * sends its root at the root's level. KL_ERANGE if n > kl_sign_batch_capacity(max_level);
 * KL_EHASHALG for a malformed imprint or one not trusted for new signatures (SHA-1). The
 * hashes are copied. */
KL_API int kl_sign_batch_create(const kl_imprint_t *hashes, size_t n, unsigned max_level, int alg,
                                uint64_t request_id, kl_sign_batch_t **out, kl_err_t *e);
/* The same with a metadata value (kl_metadata_encode, KSI-FORMAT.md §4.4; NULL: none) for every
 * hash, as ksi-tool's --mdata: each hash's chain then starts with a left link whose sibling is
 * the metadata (its leaf sits at level 1), so at most kl_sign_batch_capacity(max_level - 1)
 * hashes fit and max_level must be at least 1 (KL_ERANGE). Even one hash is sent as a local
 * tree's root, at level 1, and its signature has the local chain underneath. */
KL_API int kl_sign_batch_create_meta(const kl_imprint_t *hashes, size_t n, unsigned max_level, int alg,
                                     const uint8_t *meta, size_t meta_len, uint64_t request_id,
                                     kl_sign_batch_t **out, kl_err_t *e);
KL_API void kl_sign_batch_free(kl_sign_batch_t *b);
KL_API size_t kl_sign_batch_size(const kl_sign_batch_t *b);
/* What to send (valid until kl_sign_batch_free). */
KL_API const kl_aggr_item_t *kl_sign_batch_item(const kl_sign_batch_t *b);
/* The signature of hashes[i]: the response's signature for the batch's item with hash i's local
 * chain put underneath (aggregation time from the response; chain index = the gateway chain's
 * list plus the local shape, §4.5), verified internally with hashes[i] at level 0. */
KL_API int kl_sign_batch_signature(const kl_sign_batch_t *b, const kl_aggr_resp_t *r, size_t i,
                                   kl_sig_t **out, kl_err_t *e);

/* ---- round trips ---- */

/* Builds the request, sends it (HTTP POST with Content-Type application/ksi-request, or one PDU
 * over ksi+tcp) and opens the response. url: http://, ksi+http://user:key@host/path, ksi+tcp://;
 * file:///path reads a canned response from that file instead (libksi's test transport: no
 * network). user/key (NULL: the URL's) override the URL's credentials. KL_EIO for transport
 * failures (and an HTTP error status whose body is not a PDU), otherwise as kl_aggr_resp_open. */
KL_API int kl_aggr_exchange(const char *url, const char *user, const char *key, int hmac_alg,
                            const kl_aggr_item_t *items, size_t n, bool want_config, int timeout_ms,
                            kl_aggr_resp_t **out, kl_err_t *e);

/* Signs hashes[0..n) in one request (a local tree when n > 1; n <= kl_sign_batch_capacity
 * (max_level)), and puts hash i's signature in sigs[i] (caller frees each). All or nothing: on
 * failure every sigs[i] is NULL. With a file:// URL the request id is 1, as in canned responses. */
KL_API int kl_sign_hashes(const char *url, const char *user, const char *key, const kl_imprint_t *hashes,
                          size_t n, unsigned max_level, int hmac_alg, int timeout_ms, kl_sig_t **sigs,
                          kl_err_t *e);

/* kl_sign_hashes with a metadata value for every hash (see kl_sign_batch_create_meta). */
KL_API int kl_sign_hashes_meta(const char *url, const char *user, const char *key, const kl_imprint_t *hashes,
                               size_t n, unsigned max_level, int hmac_alg, int timeout_ms, const uint8_t *meta,
                               size_t meta_len, kl_sig_t **sigs, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
