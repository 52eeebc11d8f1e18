/* Our own issuance pipeline without daemons, shared by test_pki.c and test_sm2.c (owned here;
 * each test adds its own checks around it): a one-link aggregation chain, a calendar, a fresh
 * signature authenticated by the PKI's calendar-auth key, a publications file signed by its
 * publications key; then the signature verified key-based, extended and verified
 * publication-based. Any failure fails the calling test. */
#ifndef KL_TU_PIPELINE_H
#define KL_TU_PIPELINE_H

#include <stdint.h>

#include "keyless/calendar.h"
#include "keyless/chains.h"
#include "keyless/pki.h"
#include "keyless/pubfile.h"
#include "keyless/verify.h"

typedef struct {
  uint64_t T;     /* the document's round; the calendar holds T + 5 too, the publication's */
  int alg;        /* the hash algorithm of the chain (KL_HASH_SHA256, KL_HASH_SM3) */
  kl_imprint_t doc, root, pub_root; /* the document, the chain's root, the calendar root of T + 5 */
  kl_imprint_t sib;
  uint8_t sib_bytes[KL_IMPRINT_MAX];
  kl_aggr_link_t link;
  uint64_t index;
  kl_aggr_chain_t ch;
  kl_cal_t *cal;
  kl_calauth_t *ca;
  kl_buf_t sigb, pfb; /* the signature's and the publications file's bytes */
  kl_sig_t *sig;
  kl_pubfile_t *pf;
  char pcert[400], pkey[400], anchor[400]; /* pki's publications certificate and key, its CA */
} tu_pipeline_t;

/* Builds it all from the development PKI in pki (kl_devpki_create or _profile, for
 * publications@keyless.test), with the calendar in cal_dir, T a minute ago, the document
 * "document" with the sibling "neighbour" hashed with alg; the publications file is checked
 * against pki's CA and E=publications@keyless.test. p must stay where it is (it points into
 * itself) until tu_pipeline_free. */
void tu_pipeline_build(tu_pipeline_t *p, const char *pki, const char *cal_dir, int alg);
/* The signature verifies key-based; extended to T + 5 (*ext, for the caller to free) it verifies
 * publication-based; for another document the fresh one fails with GEN-01. */
void tu_pipeline_verify(tu_pipeline_t *p, kl_sig_t **ext);
void tu_pipeline_free(tu_pipeline_t *p);

#endif
