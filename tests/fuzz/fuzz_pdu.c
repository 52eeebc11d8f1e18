/* libFuzzer driver: the PDU v2 parser, HMAC check, signature building from aggregation
 * responses, and the writer. Everything that parses must re-encode, the re-encoding must parse
 * to the same values with a valid HMAC, and encoding that again must give the same bytes
 * (except requests refused for their own fields, which the writer cannot express). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pdu.h"
#include "keyless/sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "anon";

#define CHECK(x) \
  do {           \
    if (!(x)) abort(); \
  } while (0)

static bool str_eq(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool bytes_eq(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
  return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Encodes pdu again; returns the writer's code. hmac_alg < 0: unsigned. */
static int reencode(const kl_pdu_t *pdu, int hmac_alg, uint8_t **out, size_t *len) {
  kl_pdu_writer_t w;
  kl_err_t e;
  int rc = kl_pdu_writer_begin(&w, pdu->type, pdu->header, &e);
  for (size_t i = 0; rc == 0 && i < pdu->n_aggr_reqs; i++) rc = kl_pdu_add_aggr_req(&w, &pdu->aggr_reqs[i], &e);
  for (size_t i = 0; rc == 0 && i < pdu->n_aggr_resps; i++) rc = kl_pdu_add_aggr_resp(&w, &pdu->aggr_resps[i], &e);
  for (size_t i = 0; rc == 0 && i < pdu->n_ext_reqs; i++) rc = kl_pdu_add_ext_req(&w, &pdu->ext_reqs[i], &e);
  for (size_t i = 0; rc == 0 && i < pdu->n_ext_resps; i++) rc = kl_pdu_add_ext_resp(&w, &pdu->ext_resps[i], &e);
  if (rc == 0 && pdu->error != NULL) rc = kl_pdu_add_error(&w, pdu->error->status, pdu->error->message, &e);
  if (rc == 0 && pdu->config != NULL) {
    if (pdu->type == KL_PDU_AGGR_REQ || pdu->type == KL_PDU_EXT_REQ) rc = kl_pdu_add_config_req(&w, &e);
    else rc = kl_pdu_add_config(&w, pdu->config, &e);
  }
  if (rc != 0) {
    kl_pdu_writer_free(&w);
    return rc;
  }
  if (hmac_alg < 0) return kl_pdu_writer_finish_unsigned(&w, out, len, &e);
  return kl_pdu_writer_finish(&w, hmac_alg, key, sizeof key - 1, out, len, &e);
}

static void same(const kl_pdu_t *a, const kl_pdu_t *b) {
  CHECK(a->type == b->type);
  CHECK((a->header == NULL) == (b->header == NULL));
  if (a->header != NULL) {
    CHECK(str_eq(a->header->login_id, b->header->login_id));
    CHECK(a->header->has_instance_id == b->header->has_instance_id && a->header->instance_id == b->header->instance_id);
    CHECK(a->header->has_message_id == b->header->has_message_id && a->header->message_id == b->header->message_id);
  }
  CHECK(a->n_aggr_reqs == b->n_aggr_reqs && a->n_aggr_resps == b->n_aggr_resps);
  CHECK(a->n_ext_reqs == b->n_ext_reqs && a->n_ext_resps == b->n_ext_resps);
  for (size_t i = 0; i < a->n_aggr_reqs; i++) {
    const kl_pdu_aggr_req_t *x = &a->aggr_reqs[i], *y = &b->aggr_reqs[i];
    CHECK(x->request_id == y->request_id && kl_imprint_eq(&x->hash, &y->hash));
    CHECK(x->has_level == y->has_level && x->level == y->level);
  }
  for (size_t i = 0; i < a->n_aggr_resps; i++) {
    const kl_pdu_aggr_resp_t *x = &a->aggr_resps[i], *y = &b->aggr_resps[i];
    CHECK(x->request_id == y->request_id && x->has_status == y->has_status && x->status == y->status);
    CHECK(str_eq(x->error_msg, y->error_msg));
    CHECK(x->n_parts == y->n_parts && x->n_chains == y->n_chains && (x->cal == NULL) == (y->cal == NULL));
    for (size_t k = 0; k < x->n_parts; k++) {
      CHECK(x->parts[k].type == y->parts[k].type);
      CHECK(bytes_eq(x->parts[k].raw, x->parts[k].len, y->parts[k].raw, y->parts[k].len));
    }
  }
  for (size_t i = 0; i < a->n_ext_reqs; i++) {
    const kl_pdu_ext_req_t *x = &a->ext_reqs[i], *y = &b->ext_reqs[i];
    CHECK(x->request_id == y->request_id && x->aggr_time == y->aggr_time);
    CHECK(x->has_pub_time == y->has_pub_time && x->pub_time == y->pub_time);
  }
  for (size_t i = 0; i < a->n_ext_resps; i++) {
    const kl_pdu_ext_resp_t *x = &a->ext_resps[i], *y = &b->ext_resps[i];
    CHECK(x->request_id == y->request_id && x->status == y->status && str_eq(x->error_msg, y->error_msg));
    CHECK(x->has_cal_last == y->has_cal_last && x->cal_last == y->cal_last);
    CHECK(bytes_eq(x->cal_raw, x->cal_raw_len, y->cal_raw, y->cal_raw_len));
    CHECK((x->cal == NULL) == (y->cal == NULL));
  }
  CHECK((a->error == NULL) == (b->error == NULL));
  if (a->error != NULL) CHECK(a->error->status == b->error->status && str_eq(a->error->message, b->error->message));
  CHECK((a->config == NULL) == (b->config == NULL));
  if (a->config != NULL) {
    const kl_pdu_config_t *x = a->config, *y = b->config;
    CHECK(x->has_max_level == y->has_max_level && x->max_level == y->max_level);
    CHECK(x->has_aggr_algo == y->has_aggr_algo && x->aggr_algo == y->aggr_algo);
    CHECK(x->has_aggr_period == y->has_aggr_period && x->aggr_period == y->aggr_period);
    CHECK(x->has_max_requests == y->has_max_requests && x->max_requests == y->max_requests);
    CHECK(x->has_cal_first == y->has_cal_first && x->cal_first == y->cal_first);
    CHECK(x->has_cal_last == y->has_cal_last && x->cal_last == y->cal_last);
    CHECK(x->n_parent_uris == y->n_parent_uris);
    for (size_t k = 0; k < x->n_parent_uris; k++) CHECK(str_eq(x->parent_uris[k], y->parent_uris[k]));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_pdu_t *pdu = (kl_pdu_t *)1, *quiet = (kl_pdu_t *)1;
  kl_err_t e;
  kl_err_clear(&e);
  int rc = kl_pdu_parse(data, size, &pdu, &e);
  /* Without an error object the verdict is the same. */
  int rc2 = kl_pdu_parse(data, size, &quiet, NULL);
  CHECK(rc == rc2);
  kl_pdu_free(quiet);
  if (rc != 0) {
    CHECK(pdu == NULL && e.code == rc && e.msg[0] != '\0');
    return 0;
  }
  CHECK(pdu != NULL && pdu->raw_len == size);

  /* HMAC: whatever the verdict, no crash; a PDU without HMAC is refused. */
  rc = kl_pdu_check_hmac(pdu, key, sizeof key - 1, &e);
  CHECK(pdu->has_hmac || rc == KL_EHMAC);
  (void)kl_pdu_check_hmac_alg(pdu, KL_HASH_SHA256, key, sizeof key - 1, &e);
  if (pdu->error != NULL) CHECK(kl_pdu_status_text(kl_pdu_service(pdu->type), pdu->error->status) != NULL);

  for (size_t i = 0; i < pdu->n_aggr_resps; i++) {
    kl_buf_t b = KL_BUF_INIT;
    if (kl_pdu_aggr_resp_sig(&pdu->aggr_resps[i], &b, &e) == 0) {
      kl_sig_t *sig = NULL;
      if (kl_sig_parse(b.p, b.len, &sig, &e) == 0) kl_sig_free(sig);
    }
    kl_buf_free(&b);
  }

  /* A request refused for one of its own fields, or with a level no tree has, is kept for the
   * service to answer alone; the writer (rightly) cannot express it, so such PDUs are not
   * re-encoded. */
  bool expressible = true;
  for (size_t i = 0; i < pdu->n_aggr_reqs; i++) {
    const kl_pdu_aggr_req_t *q = &pdu->aggr_reqs[i];
    CHECK(q->refused == 0 || (q->refused == KL_STATUS_INVALID_REQUEST && q->why[0] != '\0'));
    if (q->refused || (q->has_level && q->level > 255)) expressible = false;
  }
  for (size_t i = 0; i < pdu->n_ext_reqs; i++) {
    const kl_pdu_ext_req_t *q = &pdu->ext_reqs[i];
    CHECK(q->refused == 0 || (q->refused == KL_STATUS_INVALID_REQUEST && q->why[0] != '\0'));
    if (q->refused) expressible = false;
  }
  if (!expressible) {
    kl_pdu_free(pdu);
    return 0;
  }

  /* Re-encode with the same HMAC algorithm where the writer accepts it. */
  int alg = -1;
  if (pdu->has_hmac) {
    alg = pdu->hmac.alg;
    if (!kl_hash_trusted(alg) || !kl_hash_available(alg)) alg = KL_HASH_SHA256;
  }
  uint8_t *q1 = NULL, *q2 = NULL;
  size_t n1 = 0, n2 = 0;
  rc = reencode(pdu, alg, &q1, &n1);
  if (rc == KL_ETOOBIG) CHECK(pdu->has_hmac && alg != pdu->hmac.alg); /* only a longer HMAC grows it */
  else CHECK(rc == 0);
  if (rc == 0) {
    CHECK(n1 <= KL_PDU_MAX_SIZE);
    kl_pdu_t *again = NULL;
    CHECK(kl_pdu_parse(q1, n1, &again, &e) == 0);
    same(pdu, again);
    if (alg >= 0) CHECK(kl_pdu_check_hmac_alg(again, alg, key, sizeof key - 1, &e) == 0);
    CHECK(reencode(again, alg, &q2, &n2) == 0);
    CHECK(bytes_eq(q1, n1, q2, n2));
    kl_pdu_free(again);
  }
  free(q1);
  free(q2);
  kl_pdu_free(pdu);
  return 0;
}
