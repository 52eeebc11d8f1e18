/* The gateway's JSON API (docs/client.md, "JSON over HTTP"), for systems that cannot speak
 * KSI PDUs: POST /v1/sign with HTTP Basic credentials (a login and key of the users file, the
 * same as the KSI HMAC users) and the body {"hash": "ALG:HEX"}; the answer is JSON with the
 * signature (the .ksig bytes in base64) or an error saying whether to retry.
 *
 * It takes the KSI path, not a side door: the handler makes the request PDU a KSI client would
 * send with the user's key, gw_handle answers it as any other (rounds, limits, metrics, the
 * log line), and the response PDU is opened and turned into the signature exactly as the
 * client library does (kl_aggr_resp_signature: HMAC checked, signature verified internally).
 * The extra HMAC and parse cost microseconds; a convenience endpoint does not need its own
 * copy of the request logic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "gateway.h"
#include "keyless/jsonflat.h"
#include "keyless/hash.h"
#include "keyless/sig.h"
#include "keyless/signclient.h"

typedef struct {
  kl_http_req_t *req;
  char login[64];
  uint8_t key[256];
  size_t keylen;
  kl_aggr_item_t item;
  gw_account_fn account;
} json_call_t;

static void answer(kl_http_req_t *req, int http, const char *code, bool retryable, const char *msg) {
  char q[600], body[800];
  kl_json_quote(msg, q, sizeof q);
  int n = snprintf(body, sizeof body, "{\"error\":%s,\"code\":\"%s\",\"retryable\":%s}\n", q[0] ? q : "\"\"", code,
                   retryable ? "true" : "false");
  if (http == 401) kl_http_req_add_header(req, "WWW-Authenticate", "Basic realm=\"keyless\"");
  if (retryable) kl_http_req_add_header(req, "Retry-After", "1");
  kl_http_respond(req, http, "application/json", body, (size_t)n);
}

/* "Basic base64(login:key)" into login and key; false if it is not one. */
static bool basic_auth(const char *h, char *login, size_t login_cap, uint8_t *key, size_t *keylen) {
  unsigned char dec[400];
  if (strncasecmp(h, "Basic ", 6) != 0) return false;
  h += 6;
  size_t n = strlen(h);
  if (n == 0 || n % 4 != 0 || n / 4 * 3 >= sizeof dec) return false;
  int len = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)n);
  if (len < 0) return false;
  len -= (h[n - 1] == '=') + (n > 1 && h[n - 2] == '='); /* DecodeBlock counts the padding */
  const unsigned char *colon = memchr(dec, ':', (size_t)len);
  if (colon == NULL || colon == dec || (size_t)(colon - dec) >= login_cap) return false;
  size_t ln = (size_t)(colon - dec), kn = (size_t)len - ln - 1;
  if (kn == 0 || kn > 255) return false;
  memcpy(login, dec, ln);
  login[ln] = '\0';
  memcpy(key, colon + 1, kn);
  *keylen = kn;
  OPENSSL_cleanse(dec, sizeof dec);
  return memchr(login, '\0', ln) == NULL;
}

static void on_pdu(gateway_t *gw, int transport, void *ctx, uint8_t *resp, size_t len, const gw_outcome_t *out,
                   uint64_t t0) {
  json_call_t *j = ctx;
  kl_aggr_auth_t auth = {j->login, j->key, j->keylen, 0};
  kl_aggr_resp_t *r = NULL;
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  j->account(gw, transport, out, t0);
  if (resp == NULL) {
    answer(j->req, 500, "internal", true, "the gateway could not build an answer");
  } else if (kl_aggr_resp_open(resp, len, &auth, &r, &e) || kl_aggr_resp_signature(r, &j->item, &sig, &e)) {
    uint64_t st = kl_aggr_err_status(&e);
    if (st == KL_STATUS_AUTH_FAILURE) answer(j->req, 401, "unauthorized", false, e.msg);
    else if (st && kl_aggr_status_retryable(st)) answer(j->req, 503, "unavailable", true, e.msg);
    else if (st) answer(j->req, 400, "refused", false, e.msg);
    else answer(j->req, 500, "internal", false, e.msg);
  } else {
    size_t n;
    const uint8_t *raw = kl_sig_bytes(sig, &n);
    size_t cap = 4 * ((n + 2) / 3) + 300;
    char *body = malloc(cap), hash[2 * KL_HASH_MAX_DIGEST + 32];
    if (body == NULL) {
      answer(j->req, 500, "internal", true, "out of memory");
    } else {
      size_t hn = 0;
      for (size_t i = 0; i < j->item.hash.len; i++) hn += (size_t)snprintf(hash + hn, 3, "%02x", j->item.hash.digest[i]);
      int k = snprintf(body, cap, "{\"hash\":\"%s:%s\",\"signing_time\":%llu,\"signature\":\"",
                       kl_hash_name(j->item.hash.alg), hash, (unsigned long long)kl_sig_signing_time(sig));
      k += EVP_EncodeBlock((unsigned char *)body + k, raw, (int)n);
      k += snprintf(body + k, cap - (size_t)k, "\"}\n");
      kl_http_respond(j->req, 200, "application/json", body, (size_t)k);
      free(body);
    }
  }
  kl_sig_free(sig);
  kl_aggr_resp_free(r);
  free(resp);
  OPENSSL_cleanse(j->key, sizeof j->key);
  free(j);
}

void gw_json_sign(gateway_t *gw, gw_service_t *s, kl_http_req_t *req, gw_account_fn account) {
  kl_jsonflat_kv_t kv[4];
  size_t n, nkv, stored_len;
  kl_err_t e = {0};
  const uint8_t *body = kl_http_req_body(req, &n);
  json_call_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    answer(req, 503, "unavailable", true, "out of memory");
    return;
  }
  j->req = req;
  j->account = account;
  const uint8_t *stored;
  if (!basic_auth(kl_http_req_authorization(req), j->login, sizeof j->login, j->key, &j->keylen) ||
      (stored = (const uint8_t *)kl_users_key(s->users, j->login, &stored_len)) == NULL || stored_len != j->keylen ||
      CRYPTO_memcmp(stored, j->key, j->keylen) != 0) {
    answer(req, 401, "unauthorized", false, "HTTP Basic credentials of a known user are required (curl -u LOGIN:KEY)");
    goto done;
  }
  if (kl_jsonflat_parse(body, n, kv, sizeof kv / sizeof kv[0], &nkv, &e)) {
    answer(req, 400, "bad_request", false, e.msg);
    goto done;
  }
  const char *h = kl_jsonflat_get(kv, nkv, "hash");
  for (size_t i = 0; i < nkv; i++)
    if (strcmp(kv[i].key, "hash") != 0) {
      char msg[400];
      snprintf(msg, sizeof msg, "unknown member \"%.256s\" (the body is {\"hash\": \"ALG:HEX\"})", kv[i].key);
      answer(req, 400, "bad_request", false, msg);
      goto done;
    }
  if (h == NULL) {
    answer(req, 400, "bad_request", false, "no \"hash\" member (the body is {\"hash\": \"ALG:HEX\"})");
    goto done;
  }
  if (kl_imprint_parse_text(&j->item.hash, h, &e)) {
    answer(req, 400, "bad_request", false, e.msg);
    goto done;
  }
  j->item.request_id = kl_aggr_request_id();
  kl_aggr_auth_t auth = {j->login, j->key, j->keylen, 0};
  uint8_t *pdu = NULL;
  size_t len = 0;
  if (kl_aggr_request_build(&auth, &j->item, 1, false, &pdu, &len, &e)) {
    answer(req, 500, "internal", false, e.msg);
    goto done;
  }
  gw_handle(s, gw, GW_HTTP, j, pdu, len, on_pdu); /* on_pdu answers and frees j */
  free(pdu);
  return;
done:
  OPENSSL_cleanse(j->key, sizeof j->key);
  free(j);
}
