/* Witness cosignatures: the signed message and the cosignature file's codec (keyless/witness.h,
 * docs/formats.md §8). Pure: no OpenSSL, no I/O. */
#include <stdlib.h>
#include <string.h>

#include "keyless/tlv.h"
#include "keyless/witness.h"

size_t kl_witness_message(uint64_t t, const kl_imprint_t *root, uint8_t *out) {
  size_t n = sizeof KL_WITNESS_DOMAIN; /* the domain and its terminating 0x00 */
  memcpy(out, KL_WITNESS_DOMAIN, n);
  for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)(t >> (8 * i));
  return n + kl_imprint_to_bytes(root, out + n);
}

static void put_imprint(kl_buf_t *b, uint16_t type, const kl_imprint_t *imp) {
  uint8_t raw[KL_IMPRINT_MAX];
  kl_tlv_put_bytes(b, type, 0, raw, kl_imprint_to_bytes(imp, raw));
}

static int encode_pub(kl_buf_t *b, const kl_witpub_t *w) {
  size_t mark = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, w->time);
  put_imprint(b, 0x02, &w->root);
  for (size_t i = 0; i < w->n; i++) {
    const kl_cosig_t *c = &w->cosig[i];
    size_t m = kl_tlv_open(b);
    put_imprint(b, 0x01, &c->id);
    kl_tlv_put_uint(b, 0x02, 0, c->alg);
    kl_tlv_put_bytes(b, 0x03, 0, c->sig, c->sig_len);
    kl_tlv_close(b, m, 0x03, 0);
  }
  return kl_tlv_close(b, mark, KL_TLV_WITNESS_PUB, 0);
}

int kl_witfile_encode(kl_buf_t *b, const kl_witfile_t *f, kl_err_t *e) {
  kl_buf_put(b, KL_WITNESS_MAGIC, 8);
  for (size_t i = 0; i < f->n; i++)
    if (encode_pub(b, &f->pubs[i]))
      return kl_err_set(e, KL_ETOOBIG, "cosignatures of second %llu: too large for one element",
                        (unsigned long long)f->pubs[i].time);
  return kl_buf_check(b, e);
}

void kl_witfile_free(kl_witfile_t *f) {
  free(f->pubs);
  memset(f, 0, sizeof *f);
}

/* The next child of it, which must have type want (what names the element for messages). */
static int child(kl_tlv_iter_t *it, unsigned want, const char *what, kl_tlv_t *t, kl_err_t *e) {
  int got = kl_tlv_next(it, t, e);
  if (got < 0) return kl_err_wrap(e, "%s", what);
  if (got == 0) return kl_err_set(e, KL_EFORMAT, "%s: element 0x%02X missing", what, want);
  if (t->type != want) return kl_tlv_err_unknown(t, what, e);
  return 0;
}

static int get_imprint(const kl_tlv_t *t, const char *what, kl_imprint_t *out, kl_err_t *e) {
  if (kl_imprint_from_bytes(out, t->value, t->len, e)) return kl_err_wrap(e, "%s at offset %zu", what, t->offset);
  return 0;
}

static int decode_cosig(const uint8_t *base, const kl_tlv_t *top, kl_cosig_t *c, kl_err_t *e) {
  static const char W[] = "witness cosignature";
  kl_tlv_iter_t it;
  kl_tlv_t t;
  uint64_t alg;
  int r;
  memset(c, 0, sizeof *c);
  kl_tlv_iter_children(&it, base, top);
  if ((r = child(&it, 0x01, W, &t, e)) || (r = get_imprint(&t, "witness cosignature: id", &c->id, e))) return r;
  if (c->id.alg != KL_HASH_SHA256)
    return kl_err_set(e, KL_EFORMAT, "%s at offset %zu: the witness id is not a SHA-256 imprint", W, t.offset);
  if ((r = child(&it, 0x02, W, &t, e)) || (r = kl_tlv_get_uint(&t, &alg, e))) return r;
  if (alg != KL_WITNESS_ED25519 && alg != KL_WITNESS_ECDSA_P256)
    return kl_err_set(e, KL_EFORMAT, "%s at offset %zu: unknown signature algorithm %llu (1 Ed25519, 2 ECDSA P-256)",
                      W, t.offset, (unsigned long long)alg);
  c->alg = (uint8_t)alg;
  if ((r = child(&it, 0x03, W, &t, e))) return r;
  if (t.len == 0 || t.len > KL_WITNESS_SIG_MAX || (alg == KL_WITNESS_ED25519 && t.len != 64))
    return kl_err_set(e, KL_EFORMAT, "%s at offset %zu: a signature of %zu bytes", W, t.offset, t.len);
  memcpy(c->sig, t.value, t.len);
  c->sig_len = (uint8_t)t.len;
  r = kl_tlv_next(&it, &t, e);
  if (r < 0) return kl_err_wrap(e, "%s", W);
  if (r > 0) return kl_tlv_err_unknown(&t, W, e);
  return 0;
}

static int cmp_id(const kl_imprint_t *a, const kl_imprint_t *b) {
  uint8_t x[KL_IMPRINT_MAX], y[KL_IMPRINT_MAX];
  size_t nx = kl_imprint_to_bytes(a, x), ny = kl_imprint_to_bytes(b, y);
  int c = memcmp(x, y, nx < ny ? nx : ny);
  return c ? c : (nx > ny) - (nx < ny);
}

static int decode_pub(const uint8_t *base, const kl_tlv_t *top, kl_witpub_t *w, kl_err_t *e) {
  static const char W[] = "witnessed publication";
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int r, got;
  w->n = 0;
  kl_tlv_iter_children(&it, base, top);
  if ((r = child(&it, 0x01, W, &t, e)) || (r = kl_tlv_get_uint(&t, &w->time, e))) return r;
  if ((r = child(&it, 0x02, W, &t, e)) || (r = get_imprint(&t, "witnessed publication: root", &w->root, e))) return r;
  while ((got = kl_tlv_next(&it, &t, e)) == 1) {
    if (t.type != 0x03) return kl_tlv_err_unknown(&t, W, e);
    if (w->n == KL_WITNESS_MAX_COSIGS)
      return kl_err_set(e, KL_EFORMAT, "%s %llu: more than %d cosignatures", W, (unsigned long long)w->time,
                        KL_WITNESS_MAX_COSIGS);
    if ((r = decode_cosig(base, &t, &w->cosig[w->n], e))) return r;
    if (w->n > 0 && cmp_id(&w->cosig[w->n - 1].id, &w->cosig[w->n].id) >= 0)
      return kl_err_set(e, KL_EFORMAT, "%s %llu: cosignature at offset %zu: witness ids not in increasing order "
                        "(or repeated)", W, (unsigned long long)w->time, t.offset);
    w->n++;
  }
  if (got < 0) return kl_err_wrap(e, "%s", W);
  return 0;
}

int kl_witfile_decode(const uint8_t *p, size_t len, kl_witfile_t *f, kl_err_t *e) {
  static const char W[] = "cosignature file";
  kl_tlv_iter_t it;
  kl_tlv_t t;
  kl_buf_t b = KL_BUF_INIT;
  int r = 0, got;
  memset(f, 0, sizeof *f);
  if (len < 8 || memcmp(p, KL_WITNESS_MAGIC, 8) != 0)
    return kl_err_set(e, KL_EFORMAT, "%s: does not start with \"%s\"", W, KL_WITNESS_MAGIC);
  if (len > KL_WITNESS_FILE_MAX) return kl_err_set(e, KL_ETOOBIG, "%s: larger than %u bytes", W, KL_WITNESS_FILE_MAX);
  kl_tlv_iter_init(&it, p, p + 8, len - 8);
  while (r == 0 && (got = kl_tlv_next(&it, &t, e)) != 0) {
    if (got < 0) {
      r = kl_err_wrap(e, "%s", W);
      break;
    }
    if (t.type != KL_TLV_WITNESS_PUB) {
      r = kl_tlv_err_unknown(&t, W, e);
      break;
    }
    if (f->n == f->cap) {
      size_t cap = f->cap ? 2 * f->cap : 8;
      kl_witpub_t *np = realloc(f->pubs, cap * sizeof *np);
      if (np == NULL) {
        r = kl_err_set(e, KL_ENOMEM, "out of memory");
        break;
      }
      f->pubs = np;
      f->cap = cap;
    }
    kl_witpub_t *w = &f->pubs[f->n];
    if ((r = decode_pub(p, &t, w, e))) break;
    if (f->n > 0 && f->pubs[f->n - 1].time >= w->time) {
      r = kl_err_set(e, KL_EFORMAT, "%s: publication %llu at offset %zu: seconds not in increasing order (or repeated)",
                     W, (unsigned long long)w->time, t.offset);
      break;
    }
    kl_buf_reset(&b);
    if (encode_pub(&b, w) || kl_buf_check(&b, NULL) || b.len != t.raw_len || memcmp(b.p, t.raw, b.len) != 0) {
      r = kl_err_set(e, KL_EFORMAT, "%s: publication %llu at offset %zu: not in the canonical encoding", W,
                     (unsigned long long)w->time, t.offset);
      break;
    }
    f->n++;
  }
  kl_buf_free(&b);
  if (r) kl_witfile_free(f);
  return r;
}

const kl_witpub_t *kl_witfile_find(const kl_witfile_t *f, uint64_t t) {
  size_t lo = 0, hi = f->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (f->pubs[mid].time < t) lo = mid + 1;
    else hi = mid;
  }
  return lo < f->n && f->pubs[lo].time == t ? &f->pubs[lo] : NULL;
}

int kl_witfile_add(kl_witfile_t *f, uint64_t t, const kl_imprint_t *root, const kl_cosig_t *c, bool *added,
                   kl_err_t *e) {
  size_t i = 0;
  if (added) *added = false;
  while (i < f->n && f->pubs[i].time < t) i++;
  if (i == f->n || f->pubs[i].time != t) {
    if (f->n == f->cap) {
      size_t cap = f->cap ? 2 * f->cap : 8;
      kl_witpub_t *np = realloc(f->pubs, cap * sizeof *np);
      if (np == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
      f->pubs = np;
      f->cap = cap;
    }
    memmove(&f->pubs[i + 1], &f->pubs[i], (f->n - i) * sizeof *f->pubs);
    f->n++;
    memset(&f->pubs[i], 0, sizeof f->pubs[i]);
    f->pubs[i].time = t;
    f->pubs[i].root = *root;
  }
  kl_witpub_t *w = &f->pubs[i];
  if (!kl_imprint_eq(&w->root, root)) {
    char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
    return kl_err_set(e, KL_ESTATE, "second %llu: the file holds cosignatures of root %s, not %s",
                      (unsigned long long)t, kl_imprint_hex(&w->root, h1), kl_imprint_hex(root, h2));
  }
  size_t j = 0;
  while (j < w->n && cmp_id(&w->cosig[j].id, &c->id) < 0) j++;
  if (j < w->n && cmp_id(&w->cosig[j].id, &c->id) == 0) return 0;
  if (w->n == KL_WITNESS_MAX_COSIGS)
    return kl_err_set(e, KL_ERANGE, "second %llu: already %d cosignatures", (unsigned long long)t, KL_WITNESS_MAX_COSIGS);
  memmove(&w->cosig[j + 1], &w->cosig[j], (w->n - j) * sizeof *w->cosig);
  w->cosig[j] = *c;
  w->n++;
  if (added) *added = true;
  return 0;
}
