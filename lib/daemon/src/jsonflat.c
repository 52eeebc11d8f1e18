/* Strict flat JSON objects (jsonflat.h). */
#include "keyless/jsonflat.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const uint8_t *p;
  size_t n, i;
  kl_err_t *e;
} rd_t;

static int bad(rd_t *r, const char *what) {
  return kl_err_set(r->e, KL_EFORMAT, "JSON body: %s at byte %zu", what, r->i);
}

static void ws(rd_t *r) {
  while (r->i < r->n && (r->p[r->i] == ' ' || r->p[r->i] == '\t' || r->p[r->i] == '\n' || r->p[r->i] == '\r')) r->i++;
}

static int hex4(rd_t *r, unsigned *out) {
  unsigned v = 0;
  if (r->n - r->i < 4) return bad(r, "a truncated \\u escape");
  for (int k = 0; k < 4; k++) {
    uint8_t c = r->p[r->i++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return bad(r, "a bad hex digit in a \\u escape");
  }
  *out = v;
  return 0;
}

static int put(rd_t *r, char *out, size_t *len, const uint8_t *s, size_t k) {
  if (*len + k > KL_JSONFLAT_MAX) return bad(r, "a string longer than 256 bytes");
  memcpy(out + *len, s, k);
  *len += k;
  return 0;
}

/* The length of the UTF-8 sequence at p[0..n), or 0 if it is not one (overlongs, surrogates
 * and values above U+10FFFF refused). */
static size_t utf8_len(const uint8_t *p, size_t n) {
  if (p[0] < 0x80) return 1;
  size_t k = (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
  if (k == 0 || k > n) return 0;
  for (size_t j = 1; j < k; j++)
    if ((p[j] & 0xC0) != 0x80) return 0;
  uint32_t c = k == 2 ? (uint32_t)(p[0] & 0x1F) : k == 3 ? (uint32_t)(p[0] & 0x0F) : (uint32_t)(p[0] & 0x07);
  for (size_t j = 1; j < k; j++) c = (c << 6) | (p[j] & 0x3F);
  if ((k == 2 && c < 0x80) || (k == 3 && c < 0x800) || (k == 4 && c < 0x10000) || c > 0x10FFFF ||
      (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  return k;
}

static int str(rd_t *r, char *out) {
  size_t len = 0;
  if (r->i >= r->n || r->p[r->i] != '"') return bad(r, "a string expected");
  r->i++;
  for (;;) {
    if (r->i >= r->n) return bad(r, "an unterminated string");
    uint8_t c = r->p[r->i];
    if (c == '"') break;
    if (c < 0x20) return bad(r, "a control character in a string");
    if (c != '\\') {
      size_t k = utf8_len(r->p + r->i, r->n - r->i);
      if (k == 0) return bad(r, "invalid UTF-8");
      if (put(r, out, &len, r->p + r->i, k)) return KL_EFORMAT;
      r->i += k;
      continue;
    }
    if (++r->i >= r->n) return bad(r, "a truncated escape");
    uint8_t x = r->p[r->i++], b[4];
    const char *simple = strchr("\"\\/bfnrt", x);
    if (x != 'u') {
      if (simple == NULL || x == 0) return bad(r, "an unknown escape");
      b[0] = (uint8_t)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      if (put(r, out, &len, b, 1)) return KL_EFORMAT;
      continue;
    }
    unsigned u, lo;
    if (hex4(r, &u)) return KL_EFORMAT;
    if (u >= 0xDC00 && u <= 0xDFFF) return bad(r, "a lone low surrogate");
    if (u >= 0xD800 && u <= 0xDBFF) {
      if (r->n - r->i < 2 || r->p[r->i] != '\\' || r->p[r->i + 1] != 'u') return bad(r, "a lone high surrogate");
      r->i += 2;
      if (hex4(r, &lo)) return KL_EFORMAT;
      if (lo < 0xDC00 || lo > 0xDFFF) return bad(r, "a high surrogate without its low half");
      u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (u == 0) return bad(r, "\\u0000");
    size_t k;
    if (u < 0x80) b[0] = (uint8_t)u, k = 1;
    else if (u < 0x800) b[0] = (uint8_t)(0xC0 | (u >> 6)), b[1] = (uint8_t)(0x80 | (u & 0x3F)), k = 2;
    else if (u < 0x10000)
      b[0] = (uint8_t)(0xE0 | (u >> 12)), b[1] = (uint8_t)(0x80 | ((u >> 6) & 0x3F)), b[2] = (uint8_t)(0x80 | (u & 0x3F)),
      k = 3;
    else
      b[0] = (uint8_t)(0xF0 | (u >> 18)), b[1] = (uint8_t)(0x80 | ((u >> 12) & 0x3F)),
      b[2] = (uint8_t)(0x80 | ((u >> 6) & 0x3F)), b[3] = (uint8_t)(0x80 | (u & 0x3F)), k = 4;
    if (put(r, out, &len, b, k)) return KL_EFORMAT;
  }
  r->i++;
  out[len] = '\0';
  return 0;
}

int kl_jsonflat_parse(const uint8_t *p, size_t n, kl_jsonflat_kv_t *out, size_t max, size_t *n_out, kl_err_t *e) {
  rd_t r = {p, n, 0, e};
  size_t m = 0;
  *n_out = 0;
  if (p == NULL && n) return kl_err_set(e, KL_EINVAL, "kl_jsonflat_parse: NULL input");
  ws(&r);
  if (r.i >= n || p[r.i] != '{') return bad(&r, "an object expected");
  r.i++;
  ws(&r);
  if (r.i < n && p[r.i] == '}') {
    r.i++;
  } else {
    for (;;) {
      if (m == max) return bad(&r, "too many members");
      ws(&r);
      if (str(&r, out[m].key)) return KL_EFORMAT;
      for (size_t j = 0; j < m; j++)
        if (strcmp(out[j].key, out[m].key) == 0) return bad(&r, "a repeated key");
      ws(&r);
      if (r.i >= n || p[r.i] != ':') return bad(&r, "':' expected");
      r.i++;
      ws(&r);
      if (str(&r, out[m].value)) return KL_EFORMAT;
      m++;
      ws(&r);
      if (r.i < n && p[r.i] == ',') {
        r.i++;
        continue;
      }
      if (r.i < n && p[r.i] == '}') {
        r.i++;
        break;
      }
      return bad(&r, "',' or '}' expected");
    }
  }
  ws(&r);
  if (r.i != n) return bad(&r, "bytes after the object");
  *n_out = m;
  return 0;
}

const char *kl_jsonflat_get(const kl_jsonflat_kv_t *kv, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i].key, key) == 0) return kv[i].value;
  return NULL;
}

void kl_json_quote(const char *s, char *out, size_t cap) {
  size_t o = 0;
  if (cap < 3) {
    if (cap) out[0] = '\0';
    return;
  }
  out[o++] = '"';
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char tmp[8];
    size_t k;
    if (*c == '"' || *c == '\\') tmp[0] = '\\', tmp[1] = (char)*c, k = 2;
    else if (*c < 0x20) k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *c);
    else tmp[0] = (char)*c, k = 1;
    if (o + k + 2 > cap) {
      out[0] = '\0';
      return;
    }
    memcpy(out + o, tmp, k);
    o += k;
  }
  out[o++] = '"';
  out[o] = '\0';
}
