/* The publications file (KSI-FORMAT.md §6.3): parse it (or an unsigned body), look up, merge
 * publications, and write the unsigned body. Trust (the CMS signers, k of n) is pubfile_cms.c;
 * signing, detached parts and assembling them are pubfile_sign.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keyless/pubfile.h"
#include "keyless/tlv.h"
#include "pubfile_internal.h"

#define MAGIC_LEN KL_PUBFILE_MAGIC_LEN
#define PUBFILE_MAX_SIZE KL_PUBFILE_MAX_SIZE

enum { T_HEADER = 0x701, T_CERT = 0x702, T_PUBREC = 0x703, T_CMS = 0x704 };

/* kl_err_wrap() returns 0 when e is NULL; the public entry points below therefore always
 * pass a real kl_err_t down, and this helper keeps the code explicit anyway. */
#define wrap_r(e, r, ...) (kl_err_wrap((e), __VA_ARGS__), (r))

/* ---- parsing ---- */

static int header_decode(kl_pubfile_t *pf, const kl_tlv_t *t, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_ver = 0, seen_created = 0, seen_uri = 0;
  kl_tlv_iter_children(&it, pf->raw, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_ver++) return kl_tlv_err_dup(&c, "publications file header", e);
        if ((r = kl_tlv_get_uint(&c, &pf->version, e)) != 0) return wrap_r(e, r, "file version");
        break;
      case 0x02:
        if (seen_created++) return kl_tlv_err_dup(&c, "publications file header", e);
        if ((r = kl_tlv_get_uint(&c, &pf->created, e)) != 0) return wrap_r(e, r, "creation time");
        break;
      case 0x03:
        if (seen_uri++) return kl_tlv_err_dup(&c, "publications file header", e);
        if ((r = kl_tlv_get_str(&c, &pf->repo_uri, e)) != 0) return wrap_r(e, r, "repository URI");
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "publications file header", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_ver || !seen_created)
    return kl_err_set(e, KL_EFORMAT, "publications file header at offset %zu lacks its %s",
                      t->offset, !seen_ver ? "version (0x01)" : "creation time (0x02)");
  if (pf->version != 1 && pf->version != 2)
    return kl_err_set(e, KL_EUNSUPPORTED,
                      "publications file version %llu is not supported (1 and 2 are)",
                      (unsigned long long)pf->version);
  return 0;
}

static int cert_decode(const kl_pubfile_t *pf, const kl_tlv_t *t, kl_pubfile_cert_t *out,
                       kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_id = 0, seen_der = 0;
  kl_tlv_iter_children(&it, pf->raw, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_id++) return kl_tlv_err_dup(&c, "certificate record", e);
        out->id = c.value;
        out->id_len = c.len;
        break;
      case 0x02:
        if (seen_der++) return kl_tlv_err_dup(&c, "certificate record", e);
        out->der = c.value;
        out->der_len = c.len;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "certificate record", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_id || !seen_der)
    return kl_err_set(e, KL_EFORMAT, "certificate record at offset %zu lacks its %s", t->offset,
                      !seen_id ? "certificate id (0x01)" : "certificate (0x02)");
  if (out->id_len == 0 || out->der_len == 0)
    return kl_err_set(e, KL_EFORMAT, "certificate record at offset %zu has an empty %s",
                      t->offset, out->id_len == 0 ? "certificate id" : "certificate");
  return 0;
}

/* Order: header first, then certificate records, then publication records, signature last.
 * Unknown non-critical elements may appear anywhere before the signature. */
static int pubfile_decode(kl_pubfile_t *pf, bool body_only, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t t;
  int r;
  size_t n_certs = 0, n_pubs = 0;
  /* Pass 1: structure and counts. */
  enum { S_START, S_HEADER, S_CERTS, S_PUBS, S_SIGNED } st = S_START;
  kl_tlv_iter_init(&it, pf->raw, pf->raw + MAGIC_LEN, pf->raw_len - MAGIC_LEN);
  while ((r = kl_tlv_next(&it, &t, e)) > 0) {
    if (st == S_SIGNED)
      return kl_err_set(e, KL_EFORMAT,
                        "element 0x%02X at offset %zu follows the signature (0x704), which must "
                        "be last", t.type, t.offset);
    switch (t.type) {
      case T_HEADER:
        if (st != S_START)
          return kl_err_set(e, KL_EFORMAT,
                            "publications file header (0x701) at offset %zu is not the first "
                            "element or appears twice", t.offset);
        st = S_HEADER;
        break;
      case T_CERT:
      case T_PUBREC:
      case T_CMS:
        if (st == S_START)
          return kl_err_set(e, KL_EFORMAT,
                            "element 0x%02X at offset %zu comes before the publications file "
                            "header (0x701)", t.type, t.offset);
        if (t.type == T_CERT && st == S_PUBS)
          return kl_err_set(e, KL_EFORMAT,
                            "certificate record (0x702) at offset %zu follows a publication "
                            "record (0x703)", t.offset);
        if (t.type == T_CERT) {
          n_certs++;
          st = S_CERTS;
        } else if (t.type == T_PUBREC) {
          n_pubs++;
          st = S_PUBS;
        } else {
          if (body_only)
            return kl_err_set(e, KL_EFORMAT,
                              "a signature (0x704) at offset %zu: this is a signed publications file, not "
                              "an unsigned body (keyless publish --prepare)", t.offset);
          if (t.len == 0)
            return kl_err_set(e, KL_EFORMAT, "signature (0x704) at offset %zu is empty", t.offset);
          pf->cms = t.value;
          pf->cms_len = t.len;
          pf->signed_len = t.offset;
          st = S_SIGNED;
        }
        break;
      default:
        if (!kl_tlv_is_noncritical(&t)) return kl_tlv_err_unknown(&t, "publications file", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (st == S_START) return kl_err_set(e, KL_EFORMAT, "publications file has no header (0x701)");
  if (body_only) pf->signed_len = pf->raw_len;
  else if (st != S_SIGNED)
    return kl_err_set(e, KL_EFORMAT, "publications file has no signature (0x704) at its end");

  if (n_certs && (pf->certs = kl_arena_alloc(&pf->arena, n_certs * sizeof *pf->certs)) == NULL)
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (n_pubs && (pf->pubs = kl_arena_alloc(&pf->arena, n_pubs * sizeof *pf->pubs)) == NULL)
    return kl_err_set(e, KL_ENOMEM, "out of memory");

  /* Pass 2: contents. */
  kl_tlv_iter_init(&it, pf->raw, pf->raw + MAGIC_LEN, pf->signed_len - MAGIC_LEN);
  while ((r = kl_tlv_next(&it, &t, e)) > 0) {
    if (t.type == T_HEADER) {
      if ((r = header_decode(pf, &t, e)) != 0) return r;
    } else if (t.type == T_CERT) {
      if ((r = cert_decode(pf, &t, &pf->certs[pf->n_certs], e)) != 0)
        return wrap_r(e, r, "certificate record %zu", pf->n_certs + 1);
      pf->n_certs++;
    } else if (t.type == T_PUBREC) {
      if ((r = kl_pub_rec_decode(&t, pf->raw, &pf->arena, &pf->pubs[pf->n_pubs], e)) != 0)
        return wrap_r(e, r, "publication record %zu", pf->n_pubs + 1);
      pf->n_pubs++;
    }
  }
  return r < 0 ? KL_EFORMAT : 0;
}

static int parse(const uint8_t *p, size_t n, bool body_only, kl_pubfile_t **out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local; /* the shared part decoders need one to report failures */
  if (out == NULL) return kl_err_set(e, KL_EINVAL, "publications file: no output given");
  *out = NULL;
  if (p == NULL && n > 0) return kl_err_set(e, KL_EINVAL, "publications file: no input given");
  if (n > PUBFILE_MAX_SIZE)
    return kl_err_set(e, KL_ETOOBIG, "publications file is %zu bytes; at most %u are accepted", n,
                      PUBFILE_MAX_SIZE);
  if (n < MAGIC_LEN || memcmp(p, KL_PUBFILE_MAGIC, MAGIC_LEN) != 0)
    return kl_err_set(e, KL_EFORMAT,
                      "not a publications file: it does not start with \"" KL_PUBFILE_MAGIC "\"");
  kl_pubfile_t *pf = calloc(1, sizeof *pf);
  if (pf == NULL || (pf->raw = malloc(n)) == NULL) {
    free(pf);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  memcpy(pf->raw, p, n);
  pf->raw_len = n;
  int r = pubfile_decode(pf, body_only, e);
  if (r) {
    kl_pubfile_free(pf);
    return r;
  }
  *out = pf;
  return 0;
}

int kl_pubfile_parse(const uint8_t *p, size_t n, kl_pubfile_t **out, kl_err_t *e) {
  return parse(p, n, false, out, e);
}

int kl_pubfile_parse_body(const uint8_t *p, size_t n, kl_pubfile_t **out, kl_err_t *e) {
  return parse(p, n, true, out, e);
}

void kl_pubfile_free(kl_pubfile_t *pf) {
  if (pf == NULL) return;
  kl_arena_free(&pf->arena);
  free(pf->raw);
  free(pf);
}

/* ---- lookups ---- */

const kl_pub_rec_t *kl_pubfile_find_exact(const kl_pubfile_t *pf, uint64_t time) {
  if (pf == NULL) return NULL;
  for (size_t i = 0; i < pf->n_pubs; i++)
    if (pf->pubs[i].data.time == time) return &pf->pubs[i];
  return NULL;
}

const kl_pub_rec_t *kl_pubfile_find_after(const kl_pubfile_t *pf, uint64_t t) {
  const kl_pub_rec_t *best = NULL;
  if (pf == NULL) return NULL;
  /* No assumption that the file is sorted; ties go to the first in file order. */
  for (size_t i = 0; i < pf->n_pubs; i++) {
    const kl_pub_rec_t *r = &pf->pubs[i];
    if (r->data.time >= t && (best == NULL || r->data.time < best->data.time)) best = r;
  }
  return best;
}

const kl_pubfile_cert_t *kl_pubfile_find_cert(const kl_pubfile_t *pf, const uint8_t *id,
                                              size_t id_len) {
  if (pf == NULL || (id == NULL && id_len > 0)) return NULL;
  for (size_t i = 0; i < pf->n_certs; i++) {
    const kl_pubfile_cert_t *c = &pf->certs[i];
    if (c->id_len == id_len && memcmp(c->id, id, id_len) == 0) return c;
  }
  return NULL;
}

/* ---- merging: publications are permanent ---- */

typedef struct tagged {
  kl_pub_data_t d;
  size_t origin; /* position in prev, then add: ties keep prev's first */
} tagged_t;

static int cmp_tagged(const void *a, const void *b) {
  const tagged_t *x = a, *y = b;
  if (x->d.time != y->d.time) return x->d.time < y->d.time ? -1 : 1;
  return x->origin < y->origin ? -1 : x->origin > y->origin;
}

static bool same_imprint(const kl_imprint_t *a, const kl_imprint_t *b) {
  return a->alg == b->alg && a->len == b->len && memcmp(a->digest, b->digest, a->len) == 0;
}

static void imprint_hex(const kl_imprint_t *h, char *buf, size_t n) {
  size_t w = (size_t)snprintf(buf, n, "%02X", h->alg);
  for (size_t i = 0; i < h->len && w + 2 < n; i++) w += (size_t)snprintf(buf + w, n - w, "%02X", h->digest[i]);
}

int kl_pubfile_merge(const kl_pubfile_t *prev, const kl_pub_data_t *add, size_t n_add, size_t max,
                     kl_pub_data_t **out, size_t *n_out, size_t *n_kept, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  size_t n_prev = prev ? prev->n_pubs : 0, total = n_prev + n_add, n = 0, kept = 0, last_origin = 0;
  *out = NULL;
  *n_out = *n_kept = 0;
  if (n_add && add == NULL) return kl_err_set(e, KL_EINVAL, "publications to merge: %zu announced, none given", n_add);
  tagged_t *t = calloc(total + 1, sizeof *t);
  kl_pub_data_t *res = calloc(total + 1, sizeof *res);
  int r = 0;
  if (t == NULL || res == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < total; i++) {
    t[i].d = i < n_prev ? prev->pubs[i].data : add[i - n_prev];
    t[i].d.raw = NULL;
    t[i].d.raw_len = 0;
    t[i].origin = i;
  }
  qsort(t, total, sizeof *t, cmp_tagged);
  for (size_t i = 0; i < total; i++) {
    if (n > 0 && t[i].d.time == res[n - 1].time) {
      if (!same_imprint(&t[i].d.hash, &res[n - 1].hash)) {
        char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
        imprint_hex(&res[n - 1].hash, h1, sizeof h1);
        imprint_hex(&t[i].d.hash, h2, sizeof h2);
        r = kl_err_set(e, KL_ESTATE, "two different publications for second %llu: %s%s and %s%s",
                       (unsigned long long)t[i].d.time, h1, last_origin < n_prev ? " (earlier file)" : " (new)", h2,
                       t[i].origin >= n_prev ? " (new)" : " (earlier file)");
        goto done;
      }
      continue;
    }
    res[n++] = t[i].d;
    last_origin = t[i].origin;
    if (t[i].origin < n_prev) kept++; /* ties sort prev first */
  }
  if (n > max) {
    r = kl_err_set(e, KL_ERANGE, "%zu publications: more than the %zu a file may hold", n, max);
    goto done;
  }
  *out = res;
  *n_out = n;
  *n_kept = kept;
  res = NULL;
done:
  free(t);
  free(res);
  return r;
}

/* ---- the unsigned body (magic, header, certificates, publications) ---- */

static int write_body(const kl_pubfile_spec_t *s, kl_buf_t *b, kl_err_t *e) {
  kl_buf_put(b, KL_PUBFILE_MAGIC, MAGIC_LEN);
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, s->version ? s->version : 2);
  kl_tlv_put_uint(b, 0x02, 0, s->created);
  if (s->repo_uri) kl_tlv_put_str(b, 0x03, 0, s->repo_uri);
  if (kl_tlv_close(b, m, T_HEADER, 0)) return kl_err_set(e, KL_ETOOBIG, "header is too large");
  for (size_t i = 0; i < s->n_certs; i++) {
    uint8_t id[4];
    uint32_t crc = kl_crc32(s->cert_ders[i], s->cert_lens[i]);
    for (int k = 0; k < 4; k++) id[k] = (uint8_t)(crc >> (24 - 8 * k));
    m = kl_tlv_open(b);
    kl_tlv_put_bytes(b, 0x01, 0, id, sizeof id);
    kl_tlv_put_bytes(b, 0x02, 0, s->cert_ders[i], s->cert_lens[i]);
    if (kl_tlv_close(b, m, T_CERT, 0))
      return kl_err_set(e, KL_ETOOBIG, "certificate %zu (%zu bytes) does not fit a record", i + 1,
                        s->cert_lens[i]);
  }
  for (size_t i = 0; i < s->n_pubs; i++) {
    m = kl_tlv_open(b);
    kl_pub_data_encode(b, 0, s->pubs[i].time, &s->pubs[i].hash);
    if (kl_tlv_close(b, m, T_PUBREC, 0)) return kl_buf_check(b, e);
  }
  return kl_buf_check(b, e);
}

int kl__pf_check_spec(const kl_pubfile_spec_t *s, kl_err_t *e) {
  if (s == NULL) return kl_err_set(e, KL_EINVAL, "publications file: no contents given");
  if (s->n_certs && (s->cert_ders == NULL || s->cert_lens == NULL))
    return kl_err_set(e, KL_EINVAL, "publications file: %zu certificates announced, none given",
                      s->n_certs);
  for (size_t i = 0; i < s->n_certs; i++)
    if (s->cert_ders[i] == NULL || s->cert_lens[i] == 0)
      return kl_err_set(e, KL_EINVAL, "publications file: certificate %zu is empty", i + 1);
  if (s->n_pubs && s->pubs == NULL)
    return kl_err_set(e, KL_EINVAL, "publications file: %zu publications announced, none given",
                      s->n_pubs);
  for (size_t i = 0; i < s->n_pubs; i++) {
    const kl_imprint_t *h = &s->pubs[i].hash;
    if (!kl_hash_known(h->alg) || kl_hash_digest_len(h->alg) != h->len)
      return kl_err_set(e, KL_EINVAL, "publications file: publication %zu has an invalid imprint",
                        i + 1);
    if (i > 0 && s->pubs[i].time <= s->pubs[i - 1].time)
      return kl_err_set(e, KL_EINVAL,
                        "publications file: publication %zu (time %llu) is not later than the "
                        "one before it", i + 1, (unsigned long long)s->pubs[i].time);
  }
  return 0;
}

int kl_pubfile_write_body(const kl_pubfile_spec_t *spec, kl_buf_t *out, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  int r;
  if (out == NULL) return kl_err_set(e, KL_EINVAL, "publications file: no output buffer");
  if ((r = kl__pf_check_spec(spec, e)) != 0) return r;
  kl_buf_t b = KL_BUF_INIT;
  if ((r = write_body(spec, &b, e)) == 0 && b.len > PUBFILE_MAX_SIZE)
    r = kl_err_set(e, KL_ETOOBIG, "publications file would be %zu bytes; at most %u are allowed", b.len,
                   PUBFILE_MAX_SIZE);
  if (r == 0) {
    kl_buf_put(out, b.p, b.len);
    r = kl_buf_check(out, e);
  }
  kl_buf_free(&b);
  if (r) kl_err_wrap(e, "writing the publications file body");
  return r;
}
