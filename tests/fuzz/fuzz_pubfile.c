/* libFuzzer driver: the publications file parser, its lookups, and publication strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/pubfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const kl_pubfile_t *pf) {
  char s[KL_PUBSTR_MAX];
  volatile uint64_t sink = pf->version + pf->created + pf->cms_len + pf->signed_len;
  if (pf->repo_uri) sink += strlen(pf->repo_uri);
  for (size_t i = 0; i < pf->n_certs; i++) {
    const kl_pubfile_cert_t *c = &pf->certs[i];
    if (kl_pubfile_find_cert(pf, c->id, c->id_len) == NULL) abort(); /* it is in the file */
    sink += kl_crc32(c->der, c->der_len);
  }
  for (size_t i = 0; i < pf->n_pubs; i++) {
    const kl_pub_rec_t *r = &pf->pubs[i];
    const kl_pub_rec_t *x = kl_pubfile_find_exact(pf, r->data.time);
    const kl_pub_rec_t *a = kl_pubfile_find_after(pf, r->data.time);
    if (x == NULL || x->data.time != r->data.time || a == NULL || a->data.time != r->data.time)
      abort();
    if (r->data.time < UINT64_MAX) {
      a = kl_pubfile_find_after(pf, r->data.time + 1);
      if (a != NULL && a->data.time <= r->data.time) abort();
    }
    for (size_t k = 0; k < r->n_refs; k++) sink += strlen(r->refs[k]);
    for (size_t k = 0; k < r->n_uris; k++) sink += strlen(r->uris[k]);
    /* Encoding must succeed for every parsed imprint, and decode back to the same values. */
    uint64_t t;
    kl_imprint_t h;
    if (kl_pubstr_encode(r->data.time, &r->data.hash, s, sizeof s, NULL) != 0) abort();
    if (kl_pubstr_decode(s, &t, &h, NULL) != 0 || t != r->data.time ||
        !kl_imprint_eq(&h, &r->data.hash))
      abort();
  }
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kl_pubfile_t *pf = NULL;
  kl_err_t e = {0};
  if (kl_pubfile_parse(data, size, &pf, &e) == 0) {
    exercise(pf);
    kl_pubfile_free(pf);
  }
  /* The same bytes as a publication string. */
  char *str = malloc(size + 1);
  if (str == NULL) return 0;
  if (size) memcpy(str, data, size);
  str[size] = '\0';
  uint64_t t;
  kl_imprint_t h;
  if (kl_pubstr_decode(str, &t, &h, &e) == 0) {
    char s[KL_PUBSTR_MAX];
    if (kl_pubstr_encode(t, &h, s, sizeof s, NULL) != 0) abort();
  }
  free(str);
  return 0;
}
