/* TLV reader and canonical writer. */
#include "keyless/tlv.h"

#include <string.h>

void kl_tlv_iter_init(kl_tlv_iter_t *it, const uint8_t *base, const uint8_t *p, size_t len) {
  it->base = base;
  it->p = p;
  it->end = p ? p + len : p; /* NULL + 0 is undefined behaviour in C: an empty iteration */
}

void kl_tlv_iter_children(kl_tlv_iter_t *it, const uint8_t *base, const kl_tlv_t *t) {
  kl_tlv_iter_init(it, base, t->value, t->len);
}

int kl_tlv_next(kl_tlv_iter_t *it, kl_tlv_t *out, kl_err_t *e) {
  size_t left = (size_t)(it->end - it->p);
  if (left == 0) return 0;
  const uint8_t *p = it->p;
  size_t off = (size_t)(p - it->base);
  size_t hdr, len;
  uint16_t type;
  if (left < 2) {
    kl_err_set(e, KL_EFORMAT, "truncated TLV header at offset %zu (%zu byte left)", off, left);
    return -1;
  }
  if (p[0] & KL_TLV_FLAG_16) {
    if (left < 4) {
      kl_err_set(e, KL_EFORMAT, "truncated TLV16 header at offset %zu (%zu bytes left)", off, left);
      return -1;
    }
    type = (uint16_t)(((p[0] & 0x1F) << 8) | p[1]);
    len = ((size_t)p[2] << 8) | p[3];
    hdr = 4;
  } else {
    type = p[0] & 0x1F;
    len = p[1];
    hdr = 2;
  }
  if (len > left - hdr) {
    kl_err_set(e, KL_EFORMAT,
               "TLV type 0x%02X at offset %zu claims %zu value bytes but only %zu remain", type,
               off, len, left - hdr);
    return -1;
  }
  out->type = type;
  out->flags = p[0] & 0xE0;
  out->value = p + hdr;
  out->len = len;
  out->raw = p;
  out->raw_len = hdr + len;
  out->offset = off;
  it->p = p + hdr + len;
  return 1;
}

int kl_tlv_parse_one(const uint8_t *p, size_t len, kl_tlv_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_iter_init(&it, p, p, len);
  int r = kl_tlv_next(&it, out, e);
  if (r < 0) return KL_EFORMAT;
  if (r == 0) return kl_err_set(e, KL_EFORMAT, "empty input: expected a TLV element");
  if (it.p != it.end)
    return kl_err_set(e, KL_EFORMAT, "%zu trailing bytes after the TLV element at offset %zu",
                      (size_t)(it.end - it.p), out->raw_len);
  return 0;
}

int kl_tlv_get_uint(const kl_tlv_t *t, uint64_t *out, kl_err_t *e) {
  if (t->len > 8)
    return kl_err_set(e, KL_EFORMAT, "integer element 0x%02X at offset %zu is %zu bytes long (max 8)",
                      t->type, t->offset, t->len);
  if (t->len > 0 && t->value[0] == 0)
    return kl_err_set(e, KL_EFORMAT,
                      "integer element 0x%02X at offset %zu is not minimally encoded (leading zero)",
                      t->type, t->offset);
  uint64_t v = 0;
  for (size_t i = 0; i < t->len; i++) v = (v << 8) | t->value[i];
  *out = v;
  return 0;
}

int kl_tlv_get_str(const kl_tlv_t *t, const char **out, kl_err_t *e) {
  if (t->len == 0 || t->value[t->len - 1] != 0)
    return kl_err_set(e, KL_EFORMAT, "string element 0x%02X at offset %zu is not NUL-terminated",
                      t->type, t->offset);
  if (memchr(t->value, 0, t->len - 1) != NULL)
    return kl_err_set(e, KL_EFORMAT, "string element 0x%02X at offset %zu has an embedded NUL",
                      t->type, t->offset);
  *out = (const char *)t->value;
  return 0;
}

int kl_tlv_err_unknown(const kl_tlv_t *t, const char *where, kl_err_t *e) {
  return kl_err_set(e, KL_ECRITICAL, "unknown critical element 0x%02X at offset %zu in %s",
                    t->type, t->offset, where);
}

int kl_tlv_err_dup(const kl_tlv_t *t, const char *where, kl_err_t *e) {
  return kl_err_set(e, KL_EFORMAT, "element 0x%02X at offset %zu appears more than once in %s",
                    t->type, t->offset, where);
}

/* ---- writer ---- */

size_t kl_uint_encode(uint64_t v, uint8_t out[8]) {
  size_t n = 0;
  for (uint64_t x = v; x != 0; x >>= 8) n++;
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  return n;
}

void kl_tlv_put_header(kl_buf_t *b, uint16_t type, uint8_t flags, size_t len) {
  flags &= KL_TLV_FLAG_N | KL_TLV_FLAG_F;
  if (type > KL_TLV_MAX_TYPE || len > KL_TLV_MAX_LEN) {
    b->oom = true; /* cannot be encoded: poison the buffer */
    return;
  }
  if (type > 0x1F || len > 0xFF) {
    uint8_t h[4] = {(uint8_t)(KL_TLV_FLAG_16 | flags | (type >> 8)), (uint8_t)type,
                    (uint8_t)(len >> 8), (uint8_t)len};
    kl_buf_put(b, h, 4);
  } else {
    uint8_t h[2] = {(uint8_t)(flags | type), (uint8_t)len};
    kl_buf_put(b, h, 2);
  }
}

void kl_tlv_put_bytes(kl_buf_t *b, uint16_t type, uint8_t flags, const void *p, size_t n) {
  kl_tlv_put_header(b, type, flags, n);
  kl_buf_put(b, p, n);
}

void kl_tlv_put_uint(kl_buf_t *b, uint16_t type, uint8_t flags, uint64_t v) {
  uint8_t tmp[8];
  size_t n = kl_uint_encode(v, tmp);
  kl_tlv_put_bytes(b, type, flags, tmp, n);
}

void kl_tlv_put_str(kl_buf_t *b, uint16_t type, uint8_t flags, const char *s) {
  kl_tlv_put_bytes(b, type, flags, s, strlen(s) + 1);
}

size_t kl_tlv_open(kl_buf_t *b) {
  /* Reserve room for the longest header; kl_tlv_close shifts the value down if a short
   * header suffices. */
  size_t mark = b->len;
  static const uint8_t zero[4] = {0};
  kl_buf_put(b, zero, 4);
  return mark;
}

int kl_tlv_close(kl_buf_t *b, size_t mark, uint16_t type, uint8_t flags) {
  if (b->oom) return KL_ENOMEM;
  size_t len = b->len - mark - 4;
  if (len > KL_TLV_MAX_LEN || type > KL_TLV_MAX_TYPE) {
    b->oom = true;
    return KL_ETOOBIG;
  }
  flags &= KL_TLV_FLAG_N | KL_TLV_FLAG_F;
  uint8_t *h = b->p + mark;
  if (type > 0x1F || len > 0xFF) {
    h[0] = (uint8_t)(KL_TLV_FLAG_16 | flags | (type >> 8));
    h[1] = (uint8_t)type;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
  } else {
    h[0] = (uint8_t)(flags | type);
    h[1] = (uint8_t)len;
    memmove(h + 2, h + 4, len);
    b->len -= 2;
  }
  return 0;
}
