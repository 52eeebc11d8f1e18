/* The internal verification policy (KSI-FORMAT.md §8): everything that can be checked from the
 * signature alone. Rules run in libksi's order, and the first failure is the verdict. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "verify_internal.h"

kl_verdict_t kl__verdict(kl__vctx_t *v, kl_verdict_t verdict, kl_vcode_t code, const char *fmt, ...) {
  v->res->verdict = verdict;
  v->res->code = code;
  v->res->anchor = KL_ANCHOR_NONE; /* set by the caller after an OK that rests on something */
  v->res->anchor_extended = false;
  v->res->anchor_time = 0;
  memset(&v->res->anchor_hash, 0, sizeof v->res->anchor_hash);
  v->res->cert_id_len = 0;
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->res->message, sizeof v->res->message, fmt, ap);
    va_end(ap);
  } else {
    v->res->message[0] = '\0';
  }
  return verdict;
}

#define FAIL(code, ...) kl__verdict(v, KL_VER_FAIL, KL_VC_##code, __VA_ARGS__)
#define NA(...) kl__verdict(v, KL_VER_NA, KL_VC_GEN_02, __VA_ARGS__)

static kl_verdict_t check_document(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  const kl_imprint_t *doc = kl_sig_document_hash(s);
  const kl_verify_opts_t *o = v->o;
  char a[2 * KL_IMPRINT_MAX + 1], b[2 * KL_IMPRINT_MAX + 1];
  if (o->doc_hash != NULL) {
    if (o->doc_hash->alg != doc->alg)
      return FAIL(GEN_04, "document hash uses %s, the signature's input hash uses %s",
                  kl_hash_name(o->doc_hash->alg), kl_hash_name(doc->alg));
    if (!kl_imprint_eq(o->doc_hash, doc))
      return FAIL(GEN_01, "document hash %s differs from the signature's input hash %s",
                  kl_imprint_hex(o->doc_hash, a), kl_imprint_hex(doc, b));
  }
  if (o->doc_level > 0) {
    if (s->rfc3161 != NULL)
      return FAIL(GEN_03, "input level %llu is not allowed with an RFC 3161 record",
                  (unsigned long long)o->doc_level);
    uint64_t lc = s->chains[0].links[0].level_corr;
    if (lc < o->doc_level)
      return FAIL(GEN_03, "input level %llu exceeds the first link's level correction %llu",
                  (unsigned long long)o->doc_level, (unsigned long long)lc);
  }
  uint64_t t = s->rfc3161 ? s->rfc3161->aggr_time : kl_sig_signing_time(s);
  if (kl_hash_deprecated_at(doc->alg, t))
    return FAIL(INT_13, "document hash algorithm %s was deprecated at signing time %llu",
                kl_hash_name(doc->alg), (unsigned long long)t);
  return KL_VER_OK;
}

static kl_verdict_t check_rfc3161(kl__vctx_t *v) {
  const kl_rfc3161_t *r = v->sig->rfc3161;
  const kl_aggr_chain_t *first = &v->sig->chains[0];
  kl_imprint_t out;
  kl_err_t e = {0};
  if (r == NULL) return KL_VER_OK;
  if (kl_hash_deprecated_at((int)r->tst_alg, r->aggr_time) || kl_hash_deprecated_at((int)r->sig_alg, r->aggr_time))
    return FAIL(INT_14, "RFC 3161 record uses %s/%s, deprecated at %llu", kl_hash_name((int)r->tst_alg),
                kl_hash_name((int)r->sig_alg), (unsigned long long)r->aggr_time);
  if (kl_hash_deprecated_at(first->input.alg, r->aggr_time))
    return FAIL(INT_17, "RFC 3161 output hash algorithm %s was deprecated at %llu",
                kl_hash_name(first->input.alg), (unsigned long long)r->aggr_time);
  if (kl_rfc3161_compute(v->h, r, first->input.alg, &out, &e))
    return FAIL(INT_01, "RFC 3161 record: %s", e.msg);
  if (!kl_imprint_eq(&out, &first->input))
    return FAIL(INT_01, "RFC 3161 record output differs from the first aggregation chain's input hash");
  if (r->aggr_time != first->aggr_time)
    return FAIL(INT_02, "RFC 3161 record time %llu differs from the aggregation time %llu",
                (unsigned long long)r->aggr_time, (unsigned long long)first->aggr_time);
  if (r->n_index != first->n_index || memcmp(r->index, first->index, r->n_index * sizeof *r->index) != 0)
    return FAIL(INT_12, "RFC 3161 record chain index differs from the first aggregation chain's");
  return KL_VER_OK;
}

static kl_verdict_t check_aggr_chains(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  kl_err_t e = {0};
  for (size_t i = 0; i < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i];
    for (size_t k = 0; k < c->n_links; k++)
      if (c->links[k].kind == KL_SIB_METADATA && !c->links[k].meta.trusted)
        return FAIL(INT_11, "aggregation chain %zu, link %zu: %s", i + 1, k + 1,
                    c->links[k].meta.untrusted_why ? c->links[k].meta.untrusted_why : "metadata padding rules violated");
  }
  for (size_t i = 0; i < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i];
    if (kl_hash_deprecated_at((int)c->algo, c->aggr_time))
      return FAIL(INT_15, "aggregation chain %zu uses %s, deprecated at %llu", i + 1,
                  kl_hash_name((int)c->algo), (unsigned long long)c->aggr_time);
  }
  for (size_t i = 0; i + 1 < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i], *n = &s->chains[i + 1];
    if (n->n_index + 1 != c->n_index || memcmp(n->index, c->index, n->n_index * sizeof *n->index) != 0)
      return FAIL(INT_12, "chain index of aggregation chain %zu is not a prefix of chain %zu's", i + 2, i + 1);
  }
  for (size_t i = 1; i < s->n_chains; i++)
    if (s->chains[i].aggr_time != s->chains[0].aggr_time)
      return FAIL(INT_02, "aggregation chain %zu has time %llu, chain 1 has %llu", i + 1,
                  (unsigned long long)s->chains[i].aggr_time, (unsigned long long)s->chains[0].aggr_time);
  for (size_t i = 0; i < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i];
    uint64_t shape;
    if (!kl_aggr_chain_shape(c, &shape) || shape != c->index[c->n_index - 1])
      return FAIL(INT_10, "aggregation chain %zu: chain index %llu does not match the chain's shape",
                  i + 1, (unsigned long long)c->index[c->n_index - 1]);
  }
  kl_imprint_t cur;
  uint64_t level = v->o->input_level;
  for (size_t i = 0; i < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i];
    if (i > 0 && !kl_imprint_eq(&cur, &c->input))
      return FAIL(INT_01, "aggregation chain %zu's input hash differs from chain %zu's output", i + 1, i);
    if (kl_aggr_chain_compute(v->h, c, level, &cur, &level, &e))
      return FAIL(INT_01, "aggregation chain %zu: %s", i + 1, e.msg);
  }
  v->aggr_root = cur;
  v->have_aggr_root = true;
  return KL_VER_OK;
}

static kl_verdict_t check_calendar(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  const kl_cal_chain_t *cal = s->cal;
  kl_imprint_t root;
  kl_err_t e = {0};
  uint64_t t;
  if (cal == NULL) return KL_VER_OK;
  if (!kl_imprint_eq(&cal->input, &v->aggr_root))
    return FAIL(INT_03, "calendar chain input differs from the aggregation root");
  if (cal->aggr_time != kl_sig_signing_time(s))
    return FAIL(INT_04, "calendar chain aggregation time %llu differs from the signing time %llu",
                (unsigned long long)cal->aggr_time, (unsigned long long)kl_sig_signing_time(s));
  if (!kl_cal_chain_time(cal, &t) || t != cal->aggr_time)
    return FAIL(INT_05, "calendar chain shape does not encode aggregation time %llu for publication time %llu",
                (unsigned long long)cal->aggr_time, (unsigned long long)cal->pub_time);
  int weak = kl_cal_chain_weak_alg(cal, false);
  if (weak >= 0)
    return FAIL(INT_16, "calendar chain uses %s, obsolete at %llu", kl_hash_name(weak) ? kl_hash_name(weak) : "?",
                (unsigned long long)cal->pub_time);
  if (kl_cal_chain_root(v->h, cal, &root, &e)) return FAIL(INT_16, "calendar chain: %s", e.msg);
  if (s->auth != NULL) {
    if (s->auth->data.time != cal->pub_time)
      return FAIL(INT_06, "calendar authentication record time %llu differs from the calendar chain's %llu",
                  (unsigned long long)s->auth->data.time, (unsigned long long)cal->pub_time);
    if (!kl_imprint_eq(&s->auth->data.hash, &root))
      return FAIL(INT_08, "calendar root differs from the calendar authentication record's hash");
  }
  if (s->pub != NULL) {
    if (s->pub->data.time != cal->pub_time)
      return FAIL(INT_07, "publication record time %llu differs from the calendar chain's %llu",
                  (unsigned long long)s->pub->data.time, (unsigned long long)cal->pub_time);
    if (!kl_imprint_eq(&s->pub->data.hash, &root))
      return FAIL(INT_09, "calendar root differs from the published hash");
  }
  return KL_VER_OK;
}

uint32_t kl__cal_step_algs(const kl_cal_chain_t *c) {
  uint32_t set = 0;
  int a = c->input.alg;
  for (size_t i = 0; i < c->n_links; i++) {
    if (c->links[i].dir == KL_LINK_LEFT) a = c->links[i].sibling.alg;
    set |= 1u << (a & 31);
  }
  return set;
}

int kl_cal_chain_weak_alg(const kl_cal_chain_t *c, bool deprecated) {
  uint32_t algs = kl__cal_step_algs(c);
  for (int a = 0; a < 32; a++)
    if ((algs & (1u << a)) && (deprecated ? kl_hash_deprecated_at(a, c->pub_time) : kl_hash_obsolete_at(a, c->pub_time)))
      return a;
  return -1;
}

kl_verdict_t kl__check_extended_algs(kl__vctx_t *v, const kl_cal_chain_t *ext, bool pub_based) {
  int weak = kl_cal_chain_weak_alg(ext, false);
  if (weak >= 0)
    return FAIL(INT_16, "the extender's calendar chain uses %s, obsolete at publication time %llu",
                kl_hash_name(weak) ? kl_hash_name(weak) : "?", (unsigned long long)ext->pub_time);
  if (pub_based && (weak = kl_cal_chain_weak_alg(ext, true)) >= 0)
    return NA("the extender's calendar chain uses %s, deprecated at publication time %llu",
              kl_hash_name(weak) ? kl_hash_name(weak) : "?", (unsigned long long)ext->pub_time);
  return KL_VER_OK;
}

kl_verdict_t kl__verify_internal(kl__vctx_t *v) {
  kl_verdict_t r;
  if ((r = check_document(v)) != KL_VER_OK) return r;
  if ((r = check_rfc3161(v)) != KL_VER_OK) return r;
  if ((r = check_aggr_chains(v)) != KL_VER_OK) return r;
  if ((r = check_calendar(v)) != KL_VER_OK) return r;
  return kl__verdict(v, KL_VER_OK, KL_VC_NONE, NULL);
}
