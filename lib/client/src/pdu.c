/* PDU v2 pieces shared by clients and servers: status codes, HMAC check, building a signature
 * from an aggregation response. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "keyless/pdu.h"

/* kl_err_wrap that returns the failing call's own code, whatever e holds. */
#define WRAP(rc, e, ...) (kl_err_wrap((e), __VA_ARGS__), (rc))

bool kl_pdu_looks_like(const uint8_t *p, size_t n) {
  if (n < 4 || !(p[0] & 0x80)) return false;
  unsigned type = (unsigned)(p[0] & 0x1F) << 8 | p[1];
  return type == 0x200 || type == 0x220 || type == 0x221 || type == 0x300 || type == 0x320 || type == 0x321;
}

int kl_pdu_service(uint16_t pdu_type) {
  switch (pdu_type) {
    case KL_PDU_AGGR_REQ:
    case KL_PDU_AGGR_RESP: return KL_PDU_SVC_AGGR;
    case KL_PDU_EXT_REQ:
    case KL_PDU_EXT_RESP: return KL_PDU_SVC_EXT;
    default: return 0;
  }
}

/* KSI-FORMAT.md §7.4 (libksi net.c). The texts are the KSI status names as libksi and Guardtime's
 * servers word them, so that a client's "status: message" reads right. NULL: the code has no
 * meaning for that service. */
static const struct {
  uint16_t code;
  const char *aggr, *ext;
} status_table[] = {
    {KL_STATUS_OK, "OK", "OK"},
    {KL_STATUS_INVALID_REQUEST, "The request had invalid format", "The request had invalid format"},
    {KL_STATUS_AUTH_FAILURE, "The request could not be authenticated", "The request could not be authenticated"},
    {KL_STATUS_INVALID_PAYLOAD, "The request contained invalid payload", "The request contained invalid payload"},
    {0x0104, "The request indicated client-side aggregation tree larger than allowed",
     "The request asked for a hash chain going backwards in time"},
    {0x0105,
     "The request combined with other requests from the same client in the same round would create an "
     "aggregation sub-tree larger than allowed",
     "The request asked for hash values older than the oldest round in the server's database"},
    {0x0106, "The request could not be processed: too many requests in the same round",
     "The request asked for hash values newer than the newest round in the server's database"},
    {0x0107, "Input hash value in the client request is longer than the server allows",
     "The request asked for hash values newer than the current real time"},
    {KL_STATUS_INTERNAL_ERROR, "The server encountered an unspecified internal error",
     "The server encountered an unspecified internal error"},
    {KL_STATUS_EXT_DB_MISSING, NULL, "The server misses the internal database needed to service the request"},
    {KL_STATUS_EXT_DB_CORRUPT, NULL, "The server's internal database is in an inconsistent state"},
    {KL_STATUS_UPSTREAM_ERROR, "The server encountered unspecified critical errors connecting to upstream servers",
     "The server encountered unspecified critical errors connecting to upstream servers"},
    {KL_STATUS_UPSTREAM_TIMEOUT, "No response from upstream servers", "No response from upstream servers"},
};

const char *kl_pdu_status_text(int service, uint64_t status) {
  for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++) {
    if (status_table[i].code != status) continue;
    const char *t = service == KL_PDU_SVC_AGGR ? status_table[i].aggr
                    : service == KL_PDU_SVC_EXT ? status_table[i].ext
                                                : NULL;
    return t != NULL ? t : "Unknown service error";
  }
  return "Unknown service error";
}

/* True when msg only repeats text (Guardtime's servers send the status name as the message). */
static bool same_text(const char *msg, const char *text) {
  size_t a = strlen(msg), b = strlen(text);
  while (a > 0 && (msg[a - 1] == '.' || msg[a - 1] == ' ')) a--;
  return a == b && strncasecmp(msg, text, a) == 0;
}

const char *kl_pdu_status_msg(int service, uint64_t status, const char *msg, char *buf, size_t n) {
  const char *text = kl_pdu_status_text(service, status);
  if (msg == NULL || msg[0] == '\0' || same_text(msg, text)) snprintf(buf, n, "%s", text);
  else snprintf(buf, n, "%s: %s", text, msg);
  return buf;
}

int kl_pdu_status_err(uint64_t status) {
  if (status == KL_STATUS_OK) return 0;
  return status == KL_STATUS_AUTH_FAILURE ? KL_EAUTH : KL_ESERVICE;
}

static const char *alg_name(int alg) {
  const char *n = kl_hash_name(alg);
  return n != NULL ? n : "an unknown algorithm";
}

int kl_pdu_check_hmac_alg(const kl_pdu_t *pdu, int alg, const void *key, size_t keylen,
                          kl_err_t *e) {
  int rc;
  if (pdu == NULL || (key == NULL && keylen != 0))
    return kl_err_set(e, KL_EINVAL, "kl_pdu_check_hmac: NULL argument");
  if (!pdu->has_hmac) return kl_err_set(e, KL_EHMAC, "PDU has no HMAC (0x1F)");
  const int have = pdu->hmac.alg;
  if (alg >= 0 && have != alg)
    return kl_err_set(e, KL_EHMAC, "HMAC algorithm mismatch: expected %s, the PDU uses %s (id 0x%02X)",
                      alg_name(alg), alg_name(have), (unsigned)have);
  if (!kl_hash_trusted(have))
    return kl_err_set(e, KL_EHASHALG, "PDU HMAC uses %s, which is not trusted for HMAC", alg_name(have));
  /* The parser guarantees the digest is the last pdu->hmac.len bytes of the PDU. */
  if (pdu->hmac_offset + pdu->hmac.len != pdu->raw_len)
    return kl_err_set(e, KL_ESTATE, "PDU object is inconsistent: HMAC digest is not at the end");
  kl_imprint_t mac;
  if ((rc = kl_hmac(have, key, keylen, pdu->raw, pdu->hmac_offset, &mac, e))) return WRAP(rc, e, "PDU HMAC");
  if (mac.len != pdu->hmac.len || CRYPTO_memcmp(mac.digest, pdu->raw + pdu->hmac_offset, mac.len) != 0)
    return kl_err_set(e, KL_EHMAC, "HMAC mismatch (%s digest at offset %zu): wrong key, or the PDU was altered",
                      alg_name(have), pdu->hmac_offset);
  return 0;
}

int kl_pdu_check_hmac(const kl_pdu_t *pdu, const void *key, size_t keylen, kl_err_t *e) {
  return kl_pdu_check_hmac_alg(pdu, -1, key, keylen, e);
}

int kl_pdu_aggr_resp_sig(const kl_pdu_aggr_resp_t *r, kl_buf_t *out, kl_err_t *e) {
  if (r == NULL || out == NULL) return kl_err_set(e, KL_EINVAL, "kl_pdu_aggr_resp_sig: NULL argument");
  if (r->n_parts == 0)
    return kl_err_set(e, KL_EFORMAT, "aggregation response (request id %llu) carries no signature parts",
                      (unsigned long long)r->request_id);
  size_t total = 0;
  for (size_t i = 0; i < r->n_parts; i++) {
    if (r->parts[i].raw == NULL || r->parts[i].len > KL_TLV_MAX_SIZE)
      return kl_err_set(e, KL_EINVAL, "aggregation response part %zu is missing or too large", i + 1);
    total += r->parts[i].len;
    if (total > KL_TLV_MAX_LEN) break;
  }
  if (total > KL_TLV_MAX_LEN)
    return kl_err_set(e, KL_ETOOBIG, "signature from the aggregation response would exceed 65,539 bytes");
  size_t m = kl_tlv_open(out);
  for (size_t i = 0; i < r->n_parts; i++) kl_buf_put(out, r->parts[i].raw, r->parts[i].len);
  kl_tlv_close(out, m, KL_T_SIGNATURE, 0);
  return kl_buf_check(out, e);
}
