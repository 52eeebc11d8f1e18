/* Client side of extension for verification: a 0x321 response to a calendar chain. */
#include "keyless/extclient.h"

#include <string.h>

#include "keyless/pdu.h"

int kl_ext_resp_chain_from_pdu(const uint8_t *p, size_t n, const char *key, uint64_t request_id,
                               kl_arena_t *arena, kl_cal_chain_t *out, kl_err_t *e) {
  kl_pdu_t *pdu = NULL;
  int r = kl_pdu_parse(p, n, &pdu, e);
  if (r) return kl_err_wrap(e, "extension response");
  if (pdu->type != KL_PDU_EXT_RESP) {
    r = kl_err_set(e, KL_EFORMAT, "expected an extension response (0x321), got PDU type 0x%X", pdu->type);
    goto out;
  }
  if (pdu->error != NULL) {
    r = kl_err_set(e, kl_pdu_status_err(pdu->error->status) ? kl_pdu_status_err(pdu->error->status) : KL_ESERVICE,
                   "extender error 0x%llX: %s%s%s", (unsigned long long)pdu->error->status,
                   kl_pdu_status_text(KL_PDU_SVC_EXT, pdu->error->status), pdu->error->message ? ": " : "",
                   pdu->error->message ? pdu->error->message : "");
    goto out;
  }
  if (key != NULL && (r = kl_pdu_check_hmac(pdu, key, strlen(key), e))) {
    kl_err_wrap(e, "extension response");
    goto out;
  }
  if (pdu->n_ext_resps != 1) {
    r = kl_err_set(e, KL_EFORMAT, "extension response holds %zu responses, expected 1", pdu->n_ext_resps);
    goto out;
  }
  const kl_pdu_ext_resp_t *x = &pdu->ext_resps[0];
  if (request_id != 0 && x->request_id != request_id) {
    r = kl_err_set(e, KL_EFORMAT, "extension response is for request %llu, expected %llu",
                   (unsigned long long)x->request_id, (unsigned long long)request_id);
    goto out;
  }
  if (x->status != 0) {
    r = kl_err_set(e, KL_ESERVICE, "extender status 0x%llX: %s%s%s", (unsigned long long)x->status,
                   kl_pdu_status_text(KL_PDU_SVC_EXT, x->status), x->error_msg ? ": " : "",
                   x->error_msg ? x->error_msg : "");
    goto out;
  }
  if (x->cal_raw == NULL) {
    r = kl_err_set(e, KL_EFORMAT, "extension response has no calendar hash chain");
    goto out;
  }
  uint8_t *copy = kl_arena_memdup(arena, x->cal_raw, x->cal_raw_len);
  kl_tlv_t t;
  if (copy == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  if ((r = kl_tlv_parse_one(copy, x->cal_raw_len, &t, e)) || (r = kl_cal_chain_decode(&t, copy, arena, out, e)))
    kl_err_wrap(e, "extension response calendar chain");
out:
  kl_pdu_free(pdu);
  return r;
}
