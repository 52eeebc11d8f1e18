/* Test doubles for the vector runner; see vector_extender.h. */
#include "vector_extender.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/extclient.h"

struct vx {
  uint8_t *resp;
  size_t resp_len;
};

/* Real calendar chains found in the pack's valid signatures: an offline stand-in for
 * Guardtime's extender, which serves only data that Guardtime's calendar produced. */
typedef struct harvested {
  uint64_t aggr_time, pub_time;
  uint8_t *raw;
  size_t len;
} harvested_t;

static harvested_t harvest[256];
static size_t n_harvest;

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  uint8_t *buf = malloc(70000);
  *len = buf ? fread(buf, 1, 70000, f) : 0;
  fclose(f);
  return buf;
}

int vx_create(const char *dir, const char *response, vx_t **out, kl_err_t *e) {
  vx_t *vx = calloc(1, sizeof *vx);
  if (vx == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (response[0]) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, response);
    vx->resp = slurp(path, &vx->resp_len);
    if (vx->resp == NULL) {
      free(vx);
      return kl_err_set(e, KL_EIO, "cannot read %s", path);
    }
  }
  *out = vx;
  return 0;
}

void vx_destroy(vx_t *vx) {
  if (vx == NULL) return;
  free(vx->resp);
  free(vx);
}

static void harvest_file(const char *path) {
  size_t len;
  uint8_t *buf = slurp(path, &len);
  kl_sig_t *sig = NULL;
  kl_verify_result_t res;
  if (buf == NULL) return;
  if (kl_sig_parse(buf, len, &sig, NULL) == 0 && sig->cal != NULL && n_harvest < 256) {
    kl_verify(sig, KL_POLICY_INTERNAL, NULL, &res);
    kl_tlv_t top, c;
    kl_tlv_iter_t it;
    if (res.verdict == KL_VER_OK && kl_tlv_parse_one(sig->raw, sig->raw_len, &top, NULL) == 0) {
      kl_tlv_iter_children(&it, sig->raw, &top);
      while (kl_tlv_next(&it, &c, NULL) > 0) {
        if (c.type != KL_T_CAL_CHAIN) continue;
        harvested_t *h = &harvest[n_harvest++];
        h->aggr_time = sig->cal->aggr_time;
        h->pub_time = sig->cal->pub_time;
        h->len = c.raw_len;
        h->raw = malloc(c.raw_len);
        if (h->raw) memcpy(h->raw, c.raw, c.raw_len);
      }
    }
  }
  kl_sig_free(sig);
  free(buf);
}

void vx_harvest(const char *vectors) {
  char path[1024];
  static const char *const dirs[] = {"valid-signatures", "pdu"};
  for (size_t d = 0; d < 2; d++) {
    snprintf(path, sizeof path, "%s/%s", vectors, dirs[d]);
    DIR *dp = opendir(path);
    struct dirent *de;
    if (dp == NULL) continue;
    while ((de = readdir(dp)) != NULL) {
      size_t n = strlen(de->d_name);
      if (n < 5 || strcmp(de->d_name + n - 5, ".ksig") != 0) continue;
      char file[2048];
      snprintf(file, sizeof file, "%s/%s", path, de->d_name);
      harvest_file(file);
    }
    closedir(dp);
  }
}

void vx_harvest_free(void) {
  for (size_t i = 0; i < n_harvest; i++) free(harvest[i].raw);
  n_harvest = 0;
}

int vx_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena,
              kl_cal_chain_t *out, kl_err_t *e) {
  vx_t *vx = arg;
  if (vx->resp != NULL) return kl_ext_resp_chain_from_pdu(vx->resp, vx->resp_len, "anon", 1, arena, out, e);
  const harvested_t *best = NULL;
  for (size_t i = 0; i < n_harvest; i++) {
    const harvested_t *h = &harvest[i];
    if (h->aggr_time != aggr_time || h->raw == NULL) continue;
    if (pub_time != 0 ? h->pub_time == pub_time : (best == NULL || h->pub_time > best->pub_time)) best = h;
  }
  if (best == NULL)
    return kl_err_set(e, KL_ENOTFOUND, VX_NEEDS_LIVE " (no calendar chain %llu..%llu in the pack)",
                      (unsigned long long)aggr_time, (unsigned long long)pub_time);
  uint8_t *copy = kl_arena_memdup(arena, best->raw, best->len);
  kl_tlv_t t;
  if (copy == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (kl_tlv_parse_one(copy, best->len, &t, e)) return KL_EFORMAT;
  return kl_cal_chain_decode(&t, copy, arena, out, e);
}

int vx_load_pubfile(const char *dir, const char *pubfile, const char *cert, kl_pubfile_t **out,
                    kl_err_t *e) {
  char path[1024], certpath[1024];
  size_t len;
  if (pubfile[0]) snprintf(path, sizeof path, "%s/%s", dir, pubfile);
  else snprintf(path, sizeof path, "%s/../policy-verification-signatures/resources/publications-file.bin", dir);
  uint8_t *buf = slurp(path, &len);
  if (buf == NULL) return kl_err_set(e, KL_EIO, "cannot read %s", path);
  int r = kl_pubfile_parse(buf, len, out, e);
  free(buf);
  if (r || !pubfile[0]) return r;
  if (!cert[0]) return kl_err_set(e, KL_EINVAL, "row names a publications file but no certificate");
  snprintf(certpath, sizeof certpath, "%s/%s", dir, cert);
  const char *anchors[] = {certpath};
  const kl_cnstr_t cn[] = {{"E", "publications@guardtime.com"}};
  kl_pubfile_trust_t trust = {anchors, 1, cn, 1, (int64_t)(*out)->created, 0};
  r = kl_pubfile_verify(*out, &trust, e);
  if (r) {
    kl_pubfile_free(*out);
    *out = NULL;
  }
  return r;
}
