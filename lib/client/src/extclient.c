/* Client side of extension for verification: a 0x321 response to a calendar chain. */
#include "keyless/extclient.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/netclient.h"
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
    char text[400];
    r = kl_err_set(e, kl_pdu_status_err(pdu->error->status) ? kl_pdu_status_err(pdu->error->status) : KL_ESERVICE,
                   "extender error 0x%llX: %s", (unsigned long long)pdu->error->status,
                   kl_pdu_status_msg(KL_PDU_SVC_EXT, pdu->error->status, pdu->error->message, text, sizeof text));
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
    char text[400];
    r = kl_err_set(e, KL_ESERVICE, "extender status 0x%llX: %s", (unsigned long long)x->status,
                   kl_pdu_status_msg(KL_PDU_SVC_EXT, x->status, x->error_msg, text, sizeof text));
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

/* A file of at most one PDU. */
static int read_canned(const char *path, kl_buf_t *b, kl_err_t *e) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
  uint8_t chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b->len <= KL_PDU_MAX_SIZE) kl_buf_put(b, chunk, n);
  int bad = ferror(f);
  fclose(f);
  if (bad) return kl_err_set(e, KL_EIO, "cannot read %s", path);
  if (b->len > KL_PDU_MAX_SIZE) return kl_err_set(e, KL_ETOOBIG, "%s is larger than one PDU", path);
  return kl_buf_check(b, e);
}

int kl_ext_fetch(const char *url, const char *user, const char *key, uint64_t aggr_time, uint64_t pub_time,
                 int timeout_ms, kl_arena_t *arena, kl_cal_chain_t *out, const uint8_t **raw, size_t *raw_len,
                 kl_err_t *e) {
  kl_err_t local = {0};
  kl_url_t u;
  kl_pdu_writer_t w;
  kl_buf_t resp = KL_BUF_INIT;
  uint8_t *req = NULL;
  size_t req_len = 0;
  uint64_t id = 0;
  int r, status = 0;
  if (e == NULL) e = &local;
  if (strncmp(url, "file://", 7) == 0) { /* a canned 0x321, as KSI clients' test suites use */
    if ((r = read_canned(url + 7, &resp, e))) return kl_err_wrap(e, "extender %s", url);
    r = kl_ext_resp_chain_from_pdu(resp.p, resp.len, key ? key : "anon", 0, arena, out, e);
    if (r) kl_err_wrap(e, "extender %s", url);
    goto chain;
  }
  if ((r = kl_url_parse(url, &u, e))) return r;
  if (user == NULL) user = u.user[0] ? u.user : NULL;
  if (key == NULL) key = u.key[0] ? u.key : NULL;
  if (user == NULL || key == NULL)
    return kl_err_set(e, KL_EINVAL, "extender %s: give the login and key (--ext-user, --ext-key)", url);
  if (RAND_bytes((unsigned char *)&id, sizeof id) != 1) id = (uint64_t)aggr_time ^ 0x5bd1e995u;
  id = (id >> 2) | 1; /* non-zero, fits in 62 bits */
  kl_pdu_header_t hdr = {user, false, false, 0, 0};
  kl_pdu_ext_req_t xr = {.request_id = id, .aggr_time = aggr_time, .has_pub_time = pub_time != 0, .pub_time = pub_time};
  if ((r = kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &hdr, e)) || (r = kl_pdu_add_ext_req(&w, &xr, e)) ||
      (r = kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, strlen(key), &req, &req_len, e))) {
    kl_pdu_writer_free(&w);
    return r;
  }
  r = kl_net_request(&u, req, req_len, "application/ksi-request", timeout_ms, KL_PDU_MAX_SIZE, &resp, &status, e);
  free(req);
  if (r) {
    kl_err_wrap(e, "extender %s", url);
    goto out;
  }
  if (status >= 400 && resp.len == 0) {
    r = kl_err_set(e, KL_ESERVICE, "extender %s: HTTP status %d", url, status);
    goto out;
  }
  if ((r = kl_ext_resp_chain_from_pdu(resp.p, resp.len, key, id, arena, out, e))) {
    kl_err_wrap(e, "extender %s", url);
    goto out;
  }
chain:
  if (r == 0 && raw != NULL) {
    kl_buf_t enc = KL_BUF_INIT;
    kl_cal_chain_encode(&enc, out);
    *raw = kl_arena_memdup(arena, enc.p, enc.len);
    *raw_len = enc.len;
    r = kl_buf_ok(&enc) && *raw != NULL ? 0 : kl_err_set(e, KL_ENOMEM, "out of memory");
    kl_buf_free(&enc);
  }
out:
  kl_buf_free(&resp);
  return r;
}
