/* Verification policies built on the internal one (KSI-FORMAT.md §8): calendar-based,
 * publications-file-based, user-publication-based and the general policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify_internal.h"

#define FAIL(code, ...) kl__verdict(v, KL_VER_FAIL, KL_VC_##code, __VA_ARGS__)
#define NA(...) kl__verdict(v, KL_VER_NA, KL_VC_GEN_02, __VA_ARGS__)

static const char *const vc_str[] = {
#define KL__VC_STR(id, code, msg) code,
    KL_VCODE_MAP(KL__VC_STR)
#undef KL__VC_STR
};
static const char *const vc_msg[] = {
#define KL__VC_MSG(id, code, msg) msg,
    KL_VCODE_MAP(KL__VC_MSG)
#undef KL__VC_MSG
};

const char *kl_vcode_str(kl_vcode_t c) { return (unsigned)c < KL_VC_MAX ? vc_str[c] : "?"; }
const char *kl_vcode_msg(kl_vcode_t c) { return (unsigned)c < KL_VC_MAX ? vc_msg[c] : "?"; }
const char *kl_verdict_str(kl_verdict_t r) {
  return r == KL_VER_OK ? "OK" : r == KL_VER_FAIL ? "FAIL" : "NA";
}
const char *kl_policy_name(kl_policy_t p) {
  static const char *const n[] = {"internal", "key-based", "calendar-based",
                                  "publications-file-based", "user-publication-based", "general"};
  return (unsigned)p <= KL_POLICY_GENERAL ? n[p] : "?";
}

/* Asks the extender; on failure the verdict is NA with the cause. */
static bool extend(kl__vctx_t *v, uint64_t pub_time, kl_arena_t *arena, kl_cal_chain_t *out) {
  kl_err_t e = {0};
  if (v->o->extend == NULL) {
    NA("no extender configured");
    return false;
  }
  if (v->o->extend(v->o->extend_arg, kl_sig_signing_time(v->sig), pub_time, arena, out, &e)) {
    NA("extending failed: %s", e.msg[0] ? e.msg : kl_strerror(e.code));
    return false;
  }
  return true;
}

static kl_verdict_t verify_calendar(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  kl_arena_t arena = KL_ARENA_INIT;
  kl_cal_chain_t ext;
  kl_imprint_t a, b;
  kl_err_t e = {0};
  kl_verdict_t r;
  if (!extend(v, s->cal ? s->cal->pub_time : 0, &arena, &ext)) {
    r = v->res->verdict;
    goto out;
  }
  /* The chain a calendar-based check trusts must not use a hash function that was obsolete at
   * its publication time (INT-16). A deprecated one is not judged here, as libksi (see the
   * vector signature-has-deprecated-function-in-calendar-hash-chain). */
  if ((r = kl__check_extended_algs(v, &ext, false)) != KL_VER_OK) goto out;
  if (s->cal != NULL) {
    if (s->pub != NULL) {
      if (kl_cal_chain_root(v->h, &ext, &a, &e) || kl_cal_chain_root(v->h, s->cal, &b, &e)) {
        r = NA("calendar chain: %s", e.msg);
        goto out;
      }
      if (!kl_imprint_eq(&a, &b)) {
        r = FAIL(CAL_01, "the extender's calendar root for %llu differs from the signature's",
                 (unsigned long long)s->cal->pub_time);
        goto out;
      }
    } else {
      kl_cal_chain_t x = ext;
      x.input = s->cal->input; /* compare right links only; the input is CAL-02's business */
      if (!kl_cal_chain_compatible(&x, s->cal)) {
        r = FAIL(CAL_04, "the signature's calendar chain right links differ from the extender's");
        goto out;
      }
    }
  }
  if (!kl_imprint_eq(&ext.input, &v->aggr_root)) {
    r = FAIL(CAL_02, "the extender's chain input differs from the aggregation root");
    goto out;
  }
  uint64_t shape_time;
  if (ext.aggr_time != kl_sig_signing_time(s) || !kl_cal_chain_time(&ext, &shape_time) || shape_time != ext.aggr_time) {
    r = FAIL(CAL_03, "the extender's chain is for %llu (its shape for %llu), the signature for %llu",
             (unsigned long long)ext.aggr_time,
             (unsigned long long)(kl_cal_chain_time(&ext, &shape_time) ? shape_time : 0),
             (unsigned long long)kl_sig_signing_time(s));
    goto out;
  }
  r = kl__verdict(v, KL_VER_OK, KL_VC_NONE, NULL);
  v->res->anchor = KL_ANCHOR_EXTENDER;
  v->res->anchor_extended = true;
  v->res->anchor_time = ext.pub_time;
out:
  kl_arena_free(&arena);
  return r;
}

/* An OK verdict resting on the publication (t, hash), reached by extending or not. */
static kl_verdict_t ok_pub(kl__vctx_t *v, uint64_t t, const kl_imprint_t *hash, bool extended) {
  kl_verdict_t r = kl__verdict(v, KL_VER_OK, KL_VC_NONE, NULL);
  v->res->anchor = KL_ANCHOR_PUBLICATION;
  v->res->anchor_extended = extended;
  v->res->anchor_time = t;
  v->res->anchor_hash = *hash;
  return r;
}

/* Extends to (pub_time, hash) and checks PUB-01/02/03. */
static kl_verdict_t verify_extended_to(kl__vctx_t *v, uint64_t pub_time, const kl_imprint_t *hash) {
  kl_arena_t arena = KL_ARENA_INIT;
  kl_cal_chain_t ext;
  kl_imprint_t root;
  kl_err_t e = {0};
  kl_verdict_t r;
  if (!extend(v, pub_time, &arena, &ext)) {
    r = v->res->verdict;
    goto out;
  }
  /* Judged before anything is computed with it: an obsolete algorithm fails (INT-16, as on a
   * signature's own chain); one deprecated at the publication time makes the publication-based
   * verdict inconclusive (GEN-02, as libksi and as the key-based policy). */
  if ((r = kl__check_extended_algs(v, &ext, true)) != KL_VER_OK) goto out;
  if (kl_cal_chain_root(v->h, &ext, &root, &e)) {
    r = NA("extender's calendar chain: %s", e.msg);
    goto out;
  }
  if (!kl_imprint_eq(&root, hash)) {
    r = FAIL(PUB_01, "the extender's calendar root for %llu differs from the published hash", (unsigned long long)pub_time);
    goto out;
  }
  uint64_t t;
  if (ext.pub_time != pub_time || ext.aggr_time != kl_sig_signing_time(v->sig) || !kl_cal_chain_time(&ext, &t) ||
      t != ext.aggr_time) {
    r = FAIL(PUB_02, "the extender's chain is for %llu..%llu, asked for %llu..%llu", (unsigned long long)ext.aggr_time,
             (unsigned long long)ext.pub_time, (unsigned long long)kl_sig_signing_time(v->sig), (unsigned long long)pub_time);
    goto out;
  }
  if (!kl_imprint_eq(&ext.input, &v->aggr_root)) {
    r = FAIL(PUB_03, "the extender's chain input differs from the aggregation root");
    goto out;
  }
  r = ok_pub(v, pub_time, hash, true);
out:
  kl_arena_free(&arena);
  return r;
}

static kl_verdict_t verify_pubfile(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  const kl_pubfile_t *pf = v->o->pubfile;
  if (pf == NULL) return NA("no publications file");
  if (s->pub != NULL) {
    const kl_pub_rec_t *p = kl_pubfile_find_exact(pf, s->pub->data.time);
    if (p != NULL) {
      if (!kl_imprint_eq(&p->data.hash, &s->pub->data.hash))
        return FAIL(PUB_05, "the publications file's hash for %llu differs from the signature's publication record",
                    (unsigned long long)p->data.time);
      return ok_pub(v, p->data.time, &p->data.hash, false);
    }
  }
  if (!v->o->extending_allowed)
    return NA("%s, and extending is not allowed",
              s->pub ? "the signature's publication is not in the publications file" : "the signature is not extended");
  const kl_pub_rec_t *p = kl_pubfile_find_after(pf, kl_sig_signing_time(s));
  if (p == NULL) return NA("the publications file has no publication after the signing time");
  return verify_extended_to(v, p->data.time, &p->data.hash);
}

static kl_verdict_t verify_user_pub(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  const kl_verify_opts_t *o = v->o;
  if (!o->has_user_pub) return NA("no user publication given");
  if (s->pub != NULL && s->pub->data.time == o->user_pub_time) {
    if (!kl_imprint_eq(&s->pub->data.hash, &o->user_pub_hash))
      return FAIL(PUB_04, "the signature's publication record hash differs from the user publication");
    return ok_pub(v, o->user_pub_time, &o->user_pub_hash, false);
  }
  if (o->user_pub_time < kl_sig_signing_time(s))
    return NA("the user publication (%llu) is older than the signature (%llu)", (unsigned long long)o->user_pub_time,
              (unsigned long long)kl_sig_signing_time(s));
  if (!o->extending_allowed) return NA("the signature is not extended to the user publication, and extending is not allowed");
  return verify_extended_to(v, o->user_pub_time, &o->user_pub_hash);
}

static kl_verdict_t verify_general(kl__vctx_t *v) {
  const kl_sig_t *s = v->sig;
  const kl_verify_opts_t *o = v->o;
  kl_verdict_t r = KL_VER_NA;
  if (o->has_user_pub) {
    v->res->policy = KL_POLICY_USER_PUB;
    return verify_user_pub(v);
  }
  if (o->pubfile != NULL && (s->pub != NULL || o->extending_allowed)) {
    v->res->policy = KL_POLICY_PUBFILE;
    if ((r = verify_pubfile(v)) != KL_VER_NA) return r;
  }
  if (s->auth != NULL && o->pubfile != NULL) {
    v->res->policy = KL_POLICY_KEY;
    if ((r = kl__verify_key(v)) != KL_VER_NA) return r;
  }
  if (o->extend != NULL) {
    v->res->policy = KL_POLICY_CALENDAR;
    if ((r = verify_calendar(v)) != KL_VER_NA) return r;
  }
  if (r == KL_VER_NA && v->res->message[0] == '\0')
    NA("no trust anchor: give a publications file (-P), a publication string or an extender");
  return v->res->verdict;
}

struct kl_verifier {
  kl_hasher_t h;
};

int kl_verifier_create(kl_verifier_t **out, kl_err_t *e) {
  kl_verifier_t *v = calloc(1, sizeof *v);
  if (v == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (kl_hasher_init(&v->h, e)) {
    free(v);
    return KL_ENOMEM;
  }
  *out = v;
  return 0;
}

void kl_verifier_destroy(kl_verifier_t *v) {
  if (v == NULL) return;
  kl_hasher_close(&v->h);
  free(v);
}

void kl_verifier_run(kl_verifier_t *ver, const kl_sig_t *sig, kl_policy_t policy,
                     const kl_verify_opts_t *opts, kl_verify_result_t *res) {
  static const kl_verify_opts_t none = {0};
  kl__vctx_t ctx = {&ver->h, sig, opts ? opts : &none, res, {0}, false};
  kl__vctx_t *v = &ctx;
  memset(res, 0, sizeof *res);
  res->policy = KL_POLICY_INTERNAL;
  if (kl__verify_internal(v) != KL_VER_OK || policy == KL_POLICY_INTERNAL) return;
  res->policy = policy;
  switch (policy) {
    case KL_POLICY_KEY: kl__verify_key(v); break;
    case KL_POLICY_CALENDAR: verify_calendar(v); break;
    case KL_POLICY_PUBFILE: verify_pubfile(v); break;
    case KL_POLICY_USER_PUB: verify_user_pub(v); break;
    case KL_POLICY_GENERAL: verify_general(v); break;
    default: NA("unknown policy %d", (int)policy);
  }
}

void kl_verify(const kl_sig_t *sig, kl_policy_t policy, const kl_verify_opts_t *opts, kl_verify_result_t *res) {
  kl_verifier_t *v;
  kl_err_t e = {0};
  if (kl_verifier_create(&v, &e)) {
    memset(res, 0, sizeof *res);
    res->verdict = KL_VER_NA;
    res->code = KL_VC_GEN_02;
    snprintf(res->message, sizeof res->message, "%s", e.msg);
    return;
  }
  kl_verifier_run(v, sig, policy, opts, res);
  kl_verifier_destroy(v);
}

int kl_sig_aggregation_root(const kl_sig_t *s, kl_imprint_t *root, kl_err_t *e) {
  kl_hasher_t h;
  uint64_t level = 0;
  int r = kl_hasher_init(&h, e);
  if (r) return r;
  *root = s->chains[0].input;
  for (size_t i = 0; i < s->n_chains && r == 0; i++) r = kl_aggr_chain_compute(&h, &s->chains[i], level, root, &level, e);
  kl_hasher_close(&h);
  return r;
}

int kl_sig_calendar_root(const kl_sig_t *s, kl_imprint_t *root, kl_err_t *e) {
  if (s->cal == NULL) return kl_err_set(e, KL_ENOTFOUND, "signature has no calendar hash chain");
  kl_hasher_t h;
  int r = kl_hasher_init(&h, e);
  if (r) return r;
  r = kl_cal_chain_root(&h, s->cal, root, e);
  kl_hasher_close(&h);
  return r;
}
