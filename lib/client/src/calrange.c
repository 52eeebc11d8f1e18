/* The calendar head and leaf-range TLVs the extender serves for auditors (keyless/calproof.h,
 * docs/formats.md "Calendar auditing"). Strict decoders: one element filling the input, known
 * children in order, minimal integers, imprints of known algorithms. */
#include <stdbool.h>
#include <string.h>

#include "keyless/calproof.h"
#include "keyless/tlv.h"

static void put_imprint(kl_buf_t *b, uint16_t type, const kl_imprint_t *imp) {
  uint8_t raw[KL_IMPRINT_MAX];
  kl_tlv_put_bytes(b, type, 0, raw, kl_imprint_to_bytes(imp, raw));
}

static int get_imprint(const kl_tlv_t *t, const char *what, kl_imprint_t *out, kl_err_t *e) {
  if (kl_imprint_from_bytes(out, t->value, t->len, e)) return kl_err_wrap(e, "%s at offset %zu", what, t->offset);
  return 0;
}

void kl_calhead_encode(kl_buf_t *b, const kl_calhead_t *h) {
  size_t mark = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, h->genesis);
  kl_tlv_put_uint(b, 0x02, 0, h->last);
  put_imprint(b, 0x03, &h->root);
  kl_tlv_close(b, mark, KL_TLV_CAL_HEAD, 0);
}

/* Opens the one element of p as type want and its children in it. */
static int open_top(const uint8_t *p, size_t len, uint16_t want, const char *what, kl_tlv_iter_t *it, kl_err_t *e) {
  kl_tlv_t top;
  if (kl_tlv_parse_one(p, len, &top, e)) return kl_err_wrap(e, "%s", what);
  if (top.type != want) return kl_err_set(e, KL_EFORMAT, "%s: element 0x%X, expected 0x%X", what, top.type, want);
  kl_tlv_iter_children(it, p, &top);
  return 0;
}

/* The next child, which must have type want. */
static int child(kl_tlv_iter_t *it, unsigned want, const char *what, kl_tlv_t *t, kl_err_t *e) {
  int got = kl_tlv_next(it, t, e);
  if (got < 0) return kl_err_wrap(e, "%s", what);
  if (got == 0) return kl_err_set(e, KL_EFORMAT, "%s: element 0x%02X missing", what, want);
  if (t->type != want) return kl_tlv_err_unknown(t, what, e);
  return 0;
}

/* Only the canonical encoding: what was decoded encodes back to the same bytes. */
static int canonical(const kl_buf_t *b, const uint8_t *p, size_t len, const char *what, kl_err_t *e) {
  bool same = kl_buf_check(b, NULL) == 0 && b->len == len && memcmp(b->p, p, len) == 0;
  if (!same) return kl_err_set(e, KL_EFORMAT, "%s: not in the canonical encoding (flags or long headers)", what);
  return 0;
}

static int end(kl_tlv_iter_t *it, const char *what, kl_err_t *e) {
  kl_tlv_t t;
  int got = kl_tlv_next(it, &t, e);
  if (got < 0) return kl_err_wrap(e, "%s", what);
  if (got > 0) return kl_tlv_err_unknown(&t, what, e);
  return 0;
}

int kl_calhead_decode(const uint8_t *p, size_t len, kl_calhead_t *out, kl_err_t *e) {
  static const char W[] = "calendar head";
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int r;
  memset(out, 0, sizeof *out);
  if ((r = open_top(p, len, KL_TLV_CAL_HEAD, W, &it, e))) return r;
  if ((r = child(&it, 0x01, W, &t, e)) || (r = kl_tlv_get_uint(&t, &out->genesis, e))) return r;
  if ((r = child(&it, 0x02, W, &t, e)) || (r = kl_tlv_get_uint(&t, &out->last, e))) return r;
  if ((r = child(&it, 0x03, W, &t, e)) || (r = get_imprint(&t, "calendar head: root", &out->root, e))) return r;
  if ((r = end(&it, W, e))) return r;
  if (out->last < out->genesis || out->last >= (UINT64_C(1) << 63))
    return kl_err_set(e, KL_EFORMAT, "%s: last second %llu before genesis %llu or too large", W,
                      (unsigned long long)out->last, (unsigned long long)out->genesis);
  kl_buf_t b = KL_BUF_INIT;
  kl_calhead_encode(&b, out);
  r = canonical(&b, p, len, W, e);
  kl_buf_free(&b);
  return r;
}

void kl_calrange_encode(kl_buf_t *b, const kl_calrange_t *r) {
  size_t mark = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, r->from);
  kl_tlv_put_uint(b, 0x02, 0, r->to);
  for (size_t j = 0; j < r->before.m; j++) put_imprint(b, 0x03, &r->before.tree[j]);
  for (uint64_t t = r->from; t <= r->to && t - r->from < KL_CALRANGE_MAX; t++) put_imprint(b, 0x04, &r->leaf[t - r->from]);
  kl_tlv_close(b, mark, KL_TLV_CAL_RANGE, 0);
}

int kl_calrange_decode(const uint8_t *p, size_t len, kl_calrange_t *out, kl_err_t *e) {
  static const char W[] = "calendar range";
  kl_tlv_iter_t it;
  kl_tlv_t t;
  kl_imprint_t trees[64];
  size_t m = 0, n = 0;
  int r, got;
  memset(&out->before, 0, sizeof out->before);
  out->from = out->to = 0;
  if ((r = open_top(p, len, KL_TLV_CAL_RANGE, W, &it, e))) return r;
  if ((r = child(&it, 0x01, W, &t, e)) || (r = kl_tlv_get_uint(&t, &out->from, e))) return r;
  if ((r = child(&it, 0x02, W, &t, e)) || (r = kl_tlv_get_uint(&t, &out->to, e))) return r;
  if (out->to < out->from || out->to - out->from >= KL_CALRANGE_MAX || out->to >= (UINT64_C(1) << 63))
    return kl_err_set(e, KL_EFORMAT, "%s: from %llu to %llu: not a range of 1..%d seconds", W,
                      (unsigned long long)out->from, (unsigned long long)out->to, KL_CALRANGE_MAX);
  unsigned last_type = 0x02;
  while ((got = kl_tlv_next(&it, &t, e)) == 1) {
    if (t.type == 0x03 && last_type <= 0x03) {
      if (m >= 64) return kl_err_set(e, KL_EFORMAT, "%s: more than 64 trees", W);
      if ((r = get_imprint(&t, "calendar range: tree", &trees[m++], e))) return r;
    } else if (t.type == 0x04) {
      if (n > out->to - out->from)
        return kl_err_set(e, KL_EFORMAT, "%s: more leaves than the %llu seconds %llu..%llu", W,
                          (unsigned long long)(out->to - out->from + 1), (unsigned long long)out->from,
                          (unsigned long long)out->to);
      if ((r = get_imprint(&t, "calendar range: leaf", &out->leaf[n++], e))) return r;
    } else {
      return kl_tlv_err_unknown(&t, W, e);
    }
    last_type = t.type;
  }
  if (got < 0) return kl_err_wrap(e, "%s", W);
  if (n != out->to - out->from + 1)
    return kl_err_set(e, KL_EFORMAT, "%s: %zu leaves for the %llu seconds %llu..%llu", W, n,
                      (unsigned long long)(out->to - out->from + 1), (unsigned long long)out->from,
                      (unsigned long long)out->to);
  if ((r = kl_calforest_set(&out->before, out->from, trees, m, e))) return kl_err_wrap(e, "%s", W);
  kl_buf_t b = KL_BUF_INIT;
  kl_calrange_encode(&b, out);
  r = canonical(&b, p, len, W, e);
  kl_buf_free(&b);
  return r;
}
