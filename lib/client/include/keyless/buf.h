/* keyless: growable byte buffer and a bump arena.
 *
 * kl_buf_t owns its bytes (free with kl_buf_free). Appends never fail loudly: on allocation
 * failure the buffer sets `oom` and ignores further writes, so an encoder can write a whole
 * object and check once at the end (kl_buf_ok).
 *
 * kl_arena_t hands out memory that lives until kl_arena_free; decoders put their parsed
 * objects there so one call frees everything.
 *
 * Threads: a buffer or arena belongs to one thread at a time; no global state.
 * Memory: kl_buf_steal hands the bytes to the caller (free()); arena memory ends with the arena.
 */
#ifndef KEYLESS_BUF_H
#define KEYLESS_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_buf {
  uint8_t *p;
  size_t len;
  size_t cap;
  bool oom;
} kl_buf_t;

#define KL_BUF_INIT {NULL, 0, 0, false}

KL_API void kl_buf_init(kl_buf_t *b);
KL_API void kl_buf_free(kl_buf_t *b);
KL_API void kl_buf_reset(kl_buf_t *b); /* keeps the allocation */
KL_API bool kl_buf_reserve(kl_buf_t *b, size_t extra);
KL_API void kl_buf_put(kl_buf_t *b, const void *p, size_t n);
KL_API void kl_buf_put_u8(kl_buf_t *b, uint8_t v);
/* 0 or KL_ENOMEM, with a message in e. */
KL_API int kl_buf_check(const kl_buf_t *b, kl_err_t *e);
static inline bool kl_buf_ok(const kl_buf_t *b) { return !b->oom; }
/* Hands the bytes to the caller (caller frees with free()); the buffer is left empty. */
KL_API uint8_t *kl_buf_steal(kl_buf_t *b, size_t *len);

typedef struct kl_arena {
  struct kl__arena_blk *head;
} kl_arena_t;

#define KL_ARENA_INIT {NULL}

/* Zeroed memory, aligned for any type; NULL on allocation failure. */
KL_API void *kl_arena_alloc(kl_arena_t *a, size_t n);
KL_API void *kl_arena_memdup(kl_arena_t *a, const void *p, size_t n);
KL_API void kl_arena_free(kl_arena_t *a);

#ifdef __cplusplus
}
#endif
#endif
