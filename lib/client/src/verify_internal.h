/* Internal to the verification policies: the shared context and verdict helpers. */
#ifndef KL_VERIFY_INTERNAL_H
#define KL_VERIFY_INTERNAL_H

#include "keyless/chains.h"
#include "keyless/verify.h"

typedef struct kl__vctx {
  kl_hasher_t *h;
  const kl_sig_t *sig;
  const kl_verify_opts_t *o;
  kl_verify_result_t *res;
  kl_imprint_t aggr_root; /* output of the top aggregation chain, once computed */
  bool have_aggr_root;
} kl__vctx_t;

kl_verdict_t kl__verdict(kl__vctx_t *v, kl_verdict_t verdict, kl_vcode_t code, const char *fmt, ...)
    KL_PRINTF(4, 5);
kl_verdict_t kl__verify_internal(kl__vctx_t *v);
/* The hash algorithms that a calendar chain's steps use, bit a for algorithm a (KSI-FORMAT.md
 * §5.1): each left link's sibling algorithm, and the input's algorithm for the right links met
 * before the first left link. A right link's sibling is an older node hashed as bytes; its own
 * algorithm is not used by this chain (so a SHA-1 right sibling is no reason to distrust it). */
uint32_t kl__cal_step_algs(const kl_cal_chain_t *c);
/* The checks on a calendar chain that an extender sent (the rules that the internal policy
 * applies to a signature's own chain, applied to the chain the signature would get): INT-16 if
 * an algorithm was obsolete at its publication time; with pub_based, GEN-02 if one was
 * deprecated then (the publication-based policies, as libksi). OK when neither. */
kl_verdict_t kl__check_extended_algs(kl__vctx_t *v, const kl_cal_chain_t *ext, bool pub_based);
kl_verdict_t kl__verify_key(kl__vctx_t *v);
/* The PKI part of the key-based policy: KEY-03 and KEY-02 against a DER certificate. */
kl_verdict_t kl__verify_pki(kl__vctx_t *v, const kl_cal_auth_t *auth, const uint8_t *der,
                            size_t der_len);

#endif
