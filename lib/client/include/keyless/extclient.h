/* keyless: the client side of extension (KSI-FORMAT.md §7.3) that verification needs.
 *
 * Threads: both calls may run in several threads at once (blocking I/O, no global state beyond
 * netclient.h's TLS defaults). Memory: the chain (and *raw) are allocated in the caller's
 * arena and live until kl_arena_free. */
#ifndef KEYLESS_EXTCLIENT_H
#define KEYLESS_EXTCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/sig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Takes a 0x321 extension response PDU and decodes its calendar chain into arena (the chain
 * does not point into p). Checks, in order: the PDU parses; a PDU-level error element
 * (KL_ESERVICE with the status text); the HMAC with key (skipped when key is NULL; KL_EHMAC);
 * exactly one extension response; its request id (skipped when request_id is 0); its status
 * (KL_ESERVICE); the presence of a calendar chain. The chain itself is not judged here:
 * verification policies do that and report CAL/PUB codes. */
KL_API int kl_ext_resp_chain_from_pdu(const uint8_t *p, size_t n, const char *key,
                                      uint64_t request_id, kl_arena_t *arena,
                                      kl_cal_chain_t *out, kl_err_t *e);

/* Asks a live extender (http://, ksi+http://user:key@, ksi+tcp://) for the calendar chain from
 * aggr_time to pub_time (0 = the calendar head), or reads a saved 0x321 from file://PATH as KSI
 * clients' test suites do (its HMAC checked with key, default "anon"; any request id). user/key
 * override the URL's credentials (NULL: use the URL's). The request's HMAC is SHA-256 and the response must use the same. *raw
 * (optional) gets the chain's 0x802 bytes in arena; *cal_last the extender's last second (0 if
 * it did not say). */
KL_API int kl_ext_fetch(const char *url, const char *user, const char *key, uint64_t aggr_time,
                        uint64_t pub_time, int timeout_ms, kl_arena_t *arena, kl_cal_chain_t *out,
                        const uint8_t **raw, size_t *raw_len, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
