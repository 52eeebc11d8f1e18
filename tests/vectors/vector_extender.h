/* Test doubles for the KSI vector runner: an extender that answers from canned 0x321
 * responses in the vectors, and the publications file a row names. */
#ifndef KL_VECTOR_EXTENDER_H
#define KL_VECTOR_EXTENDER_H

#include "keyless/pubfile.h"
#include "keyless/verify.h"

typedef struct vx vx_t;

/* Marker in the extend error of a row that only Guardtime's live extender could answer. */
#define VX_NEEDS_LIVE "needs Guardtime's live extender"

/* Collects the real calendar chains of the pack's valid signatures (once per run). When a row
 * names no canned response, vx_extend answers from these: the chain with the same aggregation
 * and publication time, or for "extend to head" the latest one. */
void vx_harvest(const char *vectors);
void vx_harvest_free(void);

/* response: the CSV's response-file column (relative to dir), may be empty. */
int vx_create(const char *dir, const char *response, vx_t **out, kl_err_t *e);
void vx_destroy(vx_t *vx);
int vx_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena,
              kl_cal_chain_t *out, kl_err_t *e);

/* The publications file for a row: the named one (verified against `cert` as of its creation
 * time), or, when the column is empty ("live"), the 2024 Guardtime copy without CMS check. */
int vx_load_pubfile(const char *dir, const char *pubfile, const char *cert, kl_pubfile_t **out,
                    kl_err_t *e);

#endif
