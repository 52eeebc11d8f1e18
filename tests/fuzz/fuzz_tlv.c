/* libFuzzer driver: the TLV reader and the canonical writer.
 *
 * Walks the input as a sequence of TLVs, recursing into every value that itself parses as a
 * sequence of TLVs (up to MAX_DEPTH), and on each element:
 *  - checks the reader's bookkeeping (offset, raw/value pointers, flags, lengths);
 *  - runs the INT and STR decoders and checks that what they accept re-encodes to the same value;
 *  - re-encodes the element with kl_tlv_put_bytes and, for each top-level element, the whole
 *    subtree with nested kl_tlv_open/kl_tlv_close; when the input was canonical (TLV8 exactly
 *    when type <= 0x1F and len <= 255, everywhere in the subtree) the output must be the input.
 * Any mismatch aborts.
 *
 * Speed (the reader formats a message for every refusal, and most values are neither integers,
 * strings nor TLV sequences): error messages are checked on the first FULL_CHECKS elements of
 * each input only, deeper ones pass no kl_err_t; the writers reuse one scratch buffer per check.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "keyless/buf.h"
#include "keyless/tlv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DEPTH 24
#define FULL_CHECKS 64

static unsigned elements; /* visited in the current input */
static kl_buf_t scratch;  /* the writers' output, reset before each use */

/* A copy area of n bytes whose end is followed by poisoned memory, as malloc(n) would give
 * under ASan but without an allocation per element; unguard() before the next call. */
#define GUARD 64
static uint8_t guard_area[KL_TLV_MAX_SIZE + 8 + GUARD] __attribute__((aligned(8)));
static uint8_t *guard_at;
static uint8_t *guarded(size_t n) {
  guard_at = guard_area + (n + 7) / 8 * 8; /* 8-aligned end: ASan poisons whole granules */
  ASAN_POISON_MEMORY_REGION(guard_at, GUARD);
  return guard_at - n;
}
static void unguard(void) { ASAN_UNPOISON_MEMORY_REGION(guard_at, GUARD); }

/* e while the current input is within its first FULL_CHECKS elements, else NULL. */
static kl_err_t *errp(kl_err_t *e) { return elements <= FULL_CHECKS ? e : NULL; }

static void check(bool ok) {
  if (!ok) abort();
}

/* Canonical header form for this element (KSI-FORMAT.md §1, writer rule). */
static bool header_canonical(const kl_tlv_t *t) {
  bool want16 = t->type > 0x1F || t->len > 0xFF;
  return kl_tlv_is_16(t) == want16;
}

/* Whether the value is a non-empty sequence of complete TLVs. */
static bool is_composite(const kl_tlv_t *t) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r;
  if (t->len == 0) return false;
  kl_tlv_iter_children(&it, t->value, t);
  while ((r = kl_tlv_next(&it, &c, NULL)) > 0) {
  }
  return r == 0;
}

/* Reader invariants for one element read from an iterator with the given base. */
static void check_element(const kl_tlv_t *t, const uint8_t *base) {
  size_t hdr = kl_tlv_is_16(t) ? 4 : 2;
  check((t->flags & 0x1F) == 0);
  check(t->type <= KL_TLV_MAX_TYPE);
  check(kl_tlv_is_16(t) || t->type <= 0x1F);
  check(t->len <= KL_TLV_MAX_LEN && (kl_tlv_is_16(t) || t->len <= 0xFF));
  check(t->raw_len == hdr + t->len);
  check(t->value == t->raw + hdr);
  check(t->offset == (size_t)(t->raw - base));
  /* The header bytes say what was decoded. */
  check((t->raw[0] & 0xE0) == t->flags);
  if (kl_tlv_is_16(t)) {
    check((((t->raw[0] & 0x1F) << 8) | t->raw[1]) == t->type);
    check((((size_t)t->raw[2] << 8) | t->raw[3]) == t->len);
  } else {
    check((t->raw[0] & 0x1F) == t->type && t->raw[1] == t->len);
  }

  /* The element alone parses as one element with the same fields. */
  kl_tlv_t one;
  check(kl_tlv_parse_one(t->raw, t->raw_len, &one, NULL) == 0);
  check(one.type == t->type && one.flags == t->flags && one.len == t->len &&
        one.value == t->value && one.raw == t->raw && one.raw_len == t->raw_len && one.offset == 0);
  /* With a trailing byte it must not. */
  if (t->raw_len < KL_TLV_MAX_SIZE) {
    uint8_t *tmp = guarded(t->raw_len + 1);
    memcpy(tmp, t->raw, t->raw_len);
    tmp[t->raw_len] = 0;
    kl_err_t e = {0};
    check(kl_tlv_parse_one(tmp, t->raw_len + 1, &one, errp(&e)) == KL_EFORMAT && (!errp(&e) || e.msg[0] != '\0'));
    unguard();
  }
}

static void check_decoders(const kl_tlv_t *t) {
  kl_err_t e = {0};
  uint64_t v = 0;
  const char *s = NULL;
  kl_buf_t *b = &scratch;
  bool full = errp(&e) != NULL;

  kl_buf_reset(b);
  int r = kl_tlv_get_uint(t, &v, errp(&e));
  if (r == 0) {
    /* Accepted integers are minimal: the writer reproduces the value bytes. */
    uint8_t enc[8];
    size_t n = kl_uint_encode(v, enc);
    check(n == t->len && (n == 0 || memcmp(enc, t->value, n) == 0));
    kl_tlv_put_uint(b, t->type, t->flags, v);
    check(kl_buf_ok(b));
    if (header_canonical(t)) check(b->len == t->raw_len && memcmp(b->p, t->raw, b->len) == 0);
    kl_tlv_t back;
    uint64_t v2 = 0;
    check(kl_tlv_parse_one(b->p, b->len, &back, NULL) == 0 && kl_tlv_get_uint(&back, &v2, NULL) == 0 &&
          v2 == v && back.type == t->type && (back.flags & 0x60) == (t->flags & 0x60));
    kl_buf_reset(b);
  } else {
    check(r == KL_EFORMAT && (!full || e.msg[0] != '\0'));
    check(t->len > 8 || (t->len > 0 && t->value[0] == 0));
  }

  kl_err_clear(&e);
  r = kl_tlv_get_str(t, &s, errp(&e));
  if (r == 0) {
    check(s == (const char *)t->value && t->len > 0 && strlen(s) + 1 == t->len);
    kl_tlv_put_str(b, t->type, t->flags, s);
    check(kl_buf_ok(b));
    if (header_canonical(t)) check(b->len == t->raw_len && memcmp(b->p, t->raw, b->len) == 0);
    kl_tlv_t back;
    const char *s2 = NULL;
    check(kl_tlv_parse_one(b->p, b->len, &back, NULL) == 0 && kl_tlv_get_str(&back, &s2, NULL) == 0 &&
          strcmp(s2, s) == 0);
  } else {
    check(r == KL_EFORMAT && (!full || e.msg[0] != '\0'));
    check(t->len == 0 || t->value[t->len - 1] != 0 || memchr(t->value, 0, t->len - 1) != NULL);
  }
}

/* Flat re-encoding: header + value bytes. */
static void check_put_bytes(const kl_tlv_t *t) {
  kl_buf_t *b = &scratch;
  kl_buf_reset(b);
  kl_buf_put_u8(b, 0xA5); /* the writer appends: something before must stay */
  kl_tlv_put_bytes(b, t->type, t->flags, t->value, t->len);
  check(kl_buf_ok(b) && b->p[0] == 0xA5);
  if (header_canonical(t)) check(b->len == 1 + t->raw_len && memcmp(b->p + 1, t->raw, t->raw_len) == 0);
  /* Whatever the input form, the output is canonical and reads back the same. */
  kl_tlv_t back;
  check(kl_tlv_parse_one(b->p + 1, b->len - 1, &back, NULL) == 0);
  check(header_canonical(&back) && back.type == t->type && (back.flags & 0x60) == (t->flags & 0x60) &&
        back.len == t->len && (t->len == 0 || memcmp(back.value, t->value, t->len) == 0));
}

/* Re-encodes t into b with open/close, recursing into composite values. Returns whether the
 * subtree was canonical (then the bytes written must equal t->raw). */
static bool reencode_tree(kl_buf_t *b, const kl_tlv_t *t, int depth) {
  size_t start = b->len;
  bool canon = header_canonical(t);
  size_t m = kl_tlv_open(b);
  check(m == start);
  if (depth < MAX_DEPTH && is_composite(t)) {
    kl_tlv_iter_t it;
    kl_tlv_t c;
    kl_tlv_iter_children(&it, t->value, t);
    while (kl_tlv_next(&it, &c, NULL) > 0) canon &= reencode_tree(b, &c, depth + 1);
  } else {
    kl_buf_put(b, t->value, t->len);
  }
  check(kl_tlv_close(b, m, t->type, t->flags) == 0);
  check(kl_buf_ok(b));
  if (canon) check(b->len - start == t->raw_len && memcmp(b->p + start, t->raw, t->raw_len) == 0);
  else check(b->len - start <= t->raw_len); /* canonical is never longer */
  return canon;
}

static void walk(const uint8_t *base, const uint8_t *p, size_t n, int depth) {
  kl_tlv_iter_t it;
  kl_tlv_t t;
  kl_err_t e = {0};
  int r;
  kl_tlv_iter_init(&it, base, p, n);
  while ((r = kl_tlv_next(&it, &t, errp(&e))) > 0) {
    elements++;
    check(t.raw >= p && t.raw + t.raw_len <= p + n);
    check_element(&t, base);
    check_decoders(&t);
    check_put_bytes(&t);
    if (depth == 0) {
      kl_buf_t b = KL_BUF_INIT;
      kl_buf_put(&b, "xyz", 3);
      reencode_tree(&b, &t, 0);
      check(memcmp(b.p, "xyz", 3) == 0);
      kl_buf_free(&b);
    }
    if (depth < MAX_DEPTH && t.len > 0) walk(base, t.value, t.len, depth + 1);
  }
  if (r < 0 && errp(&e)) check(e.code == KL_EFORMAT && e.msg[0] != '\0');
  /* A failed read does not advance; a finished iterator stays finished. */
  if (r <= 0) {
    const uint8_t *at = it.p;
    kl_tlv_t again;
    check(kl_tlv_next(&it, &again, NULL) == r && it.p == at);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > KL_TLV_MAX_SIZE + 4096) return 0;
  elements = 0;
  walk(data, data, size, 0);

  /* Whole input as exactly one element. */
  kl_tlv_t one;
  kl_err_t e = {0};
  int r = kl_tlv_parse_one(data, size, &one, &e);
  if (r == 0) check(one.raw == data && one.raw_len == size);
  else check(r == KL_EFORMAT && e.msg[0] != '\0');

  /* The input as a value: wrapped with the writer and read back. */
  if (size <= KL_TLV_MAX_LEN) {
    kl_buf_t b = KL_BUF_INIT;
    uint16_t type = size ? (uint16_t)(((data[0] << 8) | (size > 1 ? data[1] : 0)) & KL_TLV_MAX_TYPE) : 0;
    uint8_t flags = size ? (uint8_t)(data[0] & 0x60) : 0;
    size_t m = kl_tlv_open(&b);
    kl_buf_put(&b, data, size);
    check(kl_tlv_close(&b, m, type, flags) == 0 && kl_buf_ok(&b));
    check(kl_tlv_parse_one(b.p, b.len, &one, NULL) == 0);
    check(one.type == type && one.flags == (flags | (kl_tlv_is_16(&one) ? KL_TLV_FLAG_16 : 0)) &&
          one.len == size && header_canonical(&one) && (size == 0 || memcmp(one.value, data, size) == 0));
    kl_buf_free(&b);
  } else {
    kl_buf_t b = KL_BUF_INIT;
    size_t m = kl_tlv_open(&b);
    kl_buf_put(&b, data, size);
    check(kl_tlv_close(&b, m, 0x800, 0) == KL_ETOOBIG && !kl_buf_ok(&b));
    kl_buf_free(&b);
  }
  return 0;
}
