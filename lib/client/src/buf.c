/* Growable buffer and bump arena. */
#include "keyless/buf.h"

#include <stdlib.h>
#include <string.h>

#include "arena_internal.h"

void kl_buf_init(kl_buf_t *b) {
  b->p = NULL;
  b->len = b->cap = 0;
  b->oom = false;
}

void kl_buf_free(kl_buf_t *b) {
  free(b->p);
  kl_buf_init(b);
}

void kl_buf_reset(kl_buf_t *b) {
  b->len = 0;
  b->oom = false;
}

bool kl_buf_reserve(kl_buf_t *b, size_t extra) {
  if (b->oom) return false;
  if (extra <= b->cap - b->len) return true;
  if (extra > SIZE_MAX / 2 - b->len) {
    b->oom = true;
    return false;
  }
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (p == NULL) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

void kl_buf_put(kl_buf_t *b, const void *p, size_t n) {
  if (n == 0 || !kl_buf_reserve(b, n)) return;
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

void kl_buf_put_u8(kl_buf_t *b, uint8_t v) { kl_buf_put(b, &v, 1); }

int kl_buf_check(const kl_buf_t *b, kl_err_t *e) {
  if (b->oom) return kl_err_set(e, KL_ENOMEM, "encoding failed: out of memory or an element over 65,535 bytes");
  return 0;
}

uint8_t *kl_buf_steal(kl_buf_t *b, size_t *len) {
  uint8_t *p = b->p;
  if (len) *len = b->len;
  kl_buf_init(b);
  return p;
}

/* ---- arena ---- */

struct kl__arena_blk {
  struct kl__arena_blk *next;
  size_t used, cap;
  bool borrowed; /* in memory the arena's owner allocated (kl__arena_seed): not freed here */
  max_align_t data[];
};

size_t kl__arena_seed_size(size_t cap) { return sizeof(struct kl__arena_blk) + cap; }

void kl__arena_seed(kl_arena_t *a, void *mem, size_t cap) {
  struct kl__arena_blk *blk = mem;
  blk->next = NULL;
  blk->used = 0;
  blk->cap = cap;
  blk->borrowed = true;
  a->head = blk;
}

#define ARENA_BLOCK 4096u

void *kl_arena_alloc(kl_arena_t *a, size_t n) {
  const size_t align = sizeof(max_align_t);
  if (n > SIZE_MAX - align) return NULL;
  n = (n + align - 1) / align * align;
  if (n == 0) n = align;
  struct kl__arena_blk *blk = a->head;
  if (blk == NULL || blk->cap - blk->used < n) {
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    blk = malloc(sizeof *blk + cap);
    if (blk == NULL) return NULL;
    blk->used = 0;
    blk->cap = cap;
    blk->borrowed = false;
    if (a->head != NULL && n > ARENA_BLOCK) {
      /* A big one-off: keep the current block at the head for small allocations. */
      blk->next = a->head->next;
      a->head->next = blk;
    } else {
      blk->next = a->head;
      a->head = blk;
    }
  }
  void *p = (char *)blk->data + blk->used;
  blk->used += n;
  memset(p, 0, n);
  return p;
}

void *kl_arena_memdup(kl_arena_t *a, const void *p, size_t n) {
  void *q = kl_arena_alloc(a, n);
  if (q != NULL && n > 0) memcpy(q, p, n);
  return q;
}

void kl_arena_free(kl_arena_t *a) {
  struct kl__arena_blk *blk = a->head;
  while (blk != NULL) {
    struct kl__arena_blk *next = blk->next;
    if (!blk->borrowed) free(blk);
    blk = next;
  }
  a->head = NULL;
}
