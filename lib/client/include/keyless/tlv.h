/* keyless: the KSI TLV codec (KSI-FORMAT.md §1).
 *
 * Reader: kl_tlv_next() reads one element from a byte range without copying; the returned
 * kl_tlv_t points into the caller's buffer and is valid as long as that buffer is. All
 * offsets in error messages are relative to the `base` given to kl_tlv_iter_init, so they
 * name a position in the file the user gave.
 *
 * Writer: canonical encoding only (TLV16 only when type > 0x1F or length > 255; minimal
 * integers; NUL-terminated strings). kl_tlv_open()/kl_tlv_close() wrap whatever was written
 * in between into one element, so composites nest without precomputing lengths.
 *
 * Threads: no global state; an iterator or writer buffer belongs to one thread at a time.
 */
#ifndef KEYLESS_TLV_H
#define KEYLESS_TLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_TLV_FLAG_16 0x80
#define KL_TLV_FLAG_N 0x40 /* non-critical */
#define KL_TLV_FLAG_F 0x20 /* forward */
#define KL_TLV_MAX_TYPE 0x1FFF
#define KL_TLV_MAX_LEN 0xFFFF
#define KL_TLV_MAX_SIZE (KL_TLV_MAX_LEN + 4) /* largest encoded element: 65,539 bytes */

typedef struct kl_tlv {
  uint16_t type;
  uint8_t flags;        /* KL_TLV_FLAG_* bits as found in the header */
  const uint8_t *value; /* points into the input */
  size_t len;
  const uint8_t *raw; /* header + value */
  size_t raw_len;
  size_t offset; /* of the header, relative to the iterator's base */
} kl_tlv_t;

static inline bool kl_tlv_is_noncritical(const kl_tlv_t *t) { return (t->flags & KL_TLV_FLAG_N) != 0; }
static inline bool kl_tlv_is_forward(const kl_tlv_t *t) { return (t->flags & KL_TLV_FLAG_F) != 0; }
static inline bool kl_tlv_is_16(const kl_tlv_t *t) { return (t->flags & KL_TLV_FLAG_16) != 0; }

typedef struct kl_tlv_iter {
  const uint8_t *base; /* for offsets in messages */
  const uint8_t *p;
  const uint8_t *end;
} kl_tlv_iter_t;

/* Iterate over the elements in [p, p+len). base is where offsets count from (often p). */
KL_API void kl_tlv_iter_init(kl_tlv_iter_t *it, const uint8_t *base, const uint8_t *p, size_t len);
/* Iterate over the children of t. */
KL_API void kl_tlv_iter_children(kl_tlv_iter_t *it, const uint8_t *base, const kl_tlv_t *t);
/* 1 and fills *out when an element was read, 0 at the end, -1 on malformed input (message in e,
 * code KL_EFORMAT). */
KL_API int kl_tlv_next(kl_tlv_iter_t *it, kl_tlv_t *out, kl_err_t *e);

/* Parse exactly one element filling the whole buffer (trailing bytes are an error). */
KL_API int kl_tlv_parse_one(const uint8_t *p, size_t len, kl_tlv_t *out, kl_err_t *e);

/* Value decoders. Each checks the KSI rules and names the element in its message. */
KL_API int kl_tlv_get_uint(const kl_tlv_t *t, uint64_t *out, kl_err_t *e);
/* STR: value must end with 0x00 and hold no other 0x00. *out points into the input. */
KL_API int kl_tlv_get_str(const kl_tlv_t *t, const char **out, kl_err_t *e);

/* Helpers for composite decoders. */
KL_API int kl_tlv_err_unknown(const kl_tlv_t *t, const char *where, kl_err_t *e);
KL_API int kl_tlv_err_dup(const kl_tlv_t *t, const char *where, kl_err_t *e);

/* ---- writer ---- */
KL_API void kl_tlv_put_header(kl_buf_t *b, uint16_t type, uint8_t flags, size_t len);
KL_API void kl_tlv_put_bytes(kl_buf_t *b, uint16_t type, uint8_t flags, const void *p, size_t n);
KL_API void kl_tlv_put_uint(kl_buf_t *b, uint16_t type, uint8_t flags, uint64_t v);
KL_API void kl_tlv_put_str(kl_buf_t *b, uint16_t type, uint8_t flags, const char *s);
/* Composite: mark = kl_tlv_open(b); ...children...; kl_tlv_close(b, mark, type, flags).
 * A value longer than 65,535 bytes sets the buffer's oom flag (KL_ETOOBIG is reported by
 * kl_tlv_close's return value, 0 on success). */
KL_API size_t kl_tlv_open(kl_buf_t *b);
KL_API int kl_tlv_close(kl_buf_t *b, size_t mark, uint16_t type, uint8_t flags);

/* Minimal big-endian encoding of v into out[8]; returns the length (0 for v == 0). */
KL_API size_t kl_uint_encode(uint64_t v, uint8_t out[8]);

#ifdef __cplusplus
}
#endif
#endif
