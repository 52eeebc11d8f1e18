/* libFuzzer driver: the signing client's side of an aggregation response (signclient.h), what a
 * hostile or broken gateway can send. The input's HMAC is recomputed before the client sees it,
 * so the fuzzer reaches past authentication: response matching, the level correction, the local
 * chain under a batch, signature parsing and the internal policy. Whatever comes back must be a
 * signature that verifies internally; nothing may crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/hash.h"
#include "keyless/pdu.h"
#include "keyless/signclient.h"
#include "keyless/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "anon";

static void check_sig(kl_sig_t *sig) {
  kl_verify_opts_t o;
  kl_verify_result_t res;
  memset(&o, 0, sizeof o);
  kl_verify(sig, KL_POLICY_INTERNAL, &o, &res);
  if (res.verdict != KL_VER_OK) abort(); /* the client returned a signature that does not verify */
  kl_sig_free(sig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_pdu_t *pdu;
  if (kl_pdu_parse(data, size, &pdu, NULL)) return 0;
  size_t len;
  const uint8_t *raw = kl_pdu_bytes(pdu, &len);
  uint8_t *copy = malloc(len ? len : 1);
  if (copy == NULL) abort();
  memcpy(copy, raw, len);
  if (pdu->has_hmac && kl_hash_known(pdu->hmac.alg)) {
    kl_imprint_t mac;
    if (kl_hmac(pdu->hmac.alg, key, sizeof key - 1, copy, pdu->hmac_offset, &mac, NULL) == 0 &&
        pdu->hmac_offset + mac.len == len)
      memcpy(copy + pdu->hmac_offset, mac.digest, mac.len);
  }
  int alg = pdu->has_hmac ? pdu->hmac.alg : KL_HASH_SHA256;
  kl_pdu_free(pdu);
  kl_aggr_auth_t auth = {"anon", key, sizeof key - 1, alg};
  kl_aggr_resp_t *r;
  if (kl_aggr_resp_open(copy, len, &auth, &r, NULL) == 0) {
    kl_aggr_config_t cf;
    kl_aggr_resp_config(r, &cf, NULL);
    /* As single requests with ids 1..3 at levels 0 and 1, and as a batch of three documents. */
    for (uint64_t id = 1; id <= 3; id++) {
      kl_aggr_item_t it = {.request_id = id, .level = (unsigned)(id == 2)};
      kl_hash(KL_HASH_SHA256, &id, sizeof id, &it.hash, NULL);
      kl_sig_t *sig;
      if (kl_aggr_resp_signature(r, &it, &sig, NULL) == 0) check_sig(sig);
    }
    kl_imprint_t docs[3];
    for (int i = 0; i < 3; i++) kl_hash(KL_HASH_SHA256, &i, sizeof i, &docs[i], NULL);
    kl_sign_batch_t *b;
    if (kl_sign_batch_create(docs, 3, 2, KL_HASH_SHA256, 1, &b, NULL) == 0) {
      for (size_t i = 0; i < 3; i++) {
        kl_sig_t *sig;
        if (kl_sign_batch_signature(b, r, i, &sig, NULL) == 0) check_sig(sig);
      }
      kl_sign_batch_free(b);
    }
    kl_aggr_resp_free(r);
  }
  free(copy);
  return 0;
}
