/* Decoders and encoders for the parts of a signature that other objects share: imprints,
 * publication data and records, aggregation and calendar hash chains. */
#include <stdlib.h>
#include <string.h>

#include "keyless/sig.h"

int kl_imprint_decode(const kl_tlv_t *t, kl_imprint_t *out, kl_err_t *e) {
  int r = kl_imprint_from_bytes(out, t->value, t->len, e);
  if (r) kl_err_wrap(e, "imprint element 0x%02X at offset %zu", t->type, t->offset);
  return r;
}

void kl_imprint_encode(kl_buf_t *b, uint16_t type, const kl_imprint_t *imp) {
  uint8_t tmp[KL_IMPRINT_MAX];
  size_t n = kl_imprint_to_bytes(imp, tmp);
  kl_tlv_put_bytes(b, type, 0, tmp, n);
}

/* ---- publication data / record ---- */

int kl_pub_data_decode(const kl_tlv_t *t, const uint8_t *base, kl_pub_data_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_time = 0, seen_hash = 0;
  memset(out, 0, sizeof *out);
  out->raw = t->raw;
  out->raw_len = t->raw_len;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x02:
        if (seen_time++) return kl_tlv_err_dup(&c, "publication data", e);
        if (kl_tlv_get_uint(&c, &out->time, e)) return kl_err_wrap(e, "publication time");
        break;
      case 0x04:
        if (seen_hash++) return kl_tlv_err_dup(&c, "publication data", e);
        if (kl_imprint_decode(&c, &out->hash, e)) return kl_err_wrap(e, "published hash");
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "publication data", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_time || !seen_hash)
    return kl_err_set(e, KL_EFORMAT, "publication data at offset %zu lacks its %s", t->offset,
                      seen_time ? "published hash (0x04)" : "publication time (0x02)");
  return 0;
}

void kl_pub_data_encode(kl_buf_t *b, uint8_t flags, uint64_t time, const kl_imprint_t *h) {
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x02, 0, time);
  kl_imprint_encode(b, 0x04, h);
  kl_tlv_close(b, m, KL_T_PUB_DATA, flags);
}

static int push_str(kl_arena_t *a, const char ***arr, size_t *n, const char *s, kl_err_t *e) {
  const char **na = kl_arena_alloc(a, (*n + 1) * sizeof *na);
  if (na == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (*n) memcpy(na, *arr, *n * sizeof *na);
  na[(*n)++] = s;
  *arr = na;
  return 0;
}

int kl_pub_rec_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                      kl_pub_rec_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_data = 0;
  const char *s;
  memset(out, 0, sizeof *out);
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case KL_T_PUB_DATA:
        if (seen_data++) return kl_tlv_err_dup(&c, "publication record", e);
        if (kl_pub_data_decode(&c, base, &out->data, e)) return KL_EFORMAT;
        break;
      case 0x09:
        if (kl_tlv_get_str(&c, &s, e) || push_str(arena, &out->refs, &out->n_refs, s, e))
          return kl_err_wrap(e, "publication reference");
        break;
      case 0x0A:
        if (kl_tlv_get_str(&c, &s, e) || push_str(arena, &out->uris, &out->n_uris, s, e))
          return kl_err_wrap(e, "publication repository URI");
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "publication record", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_data)
    return kl_err_set(e, KL_EFORMAT, "publication record at offset %zu lacks publication data",
                      t->offset);
  return 0;
}

/* ---- calendar hash chain ---- */

int kl_cal_chain_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                        kl_cal_chain_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_pub = 0, seen_aggr = 0, seen_input = 0;
  size_t cap = 0;
  memset(out, 0, sizeof *out);
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_pub++) return kl_tlv_err_dup(&c, "calendar hash chain", e);
        if (kl_tlv_get_uint(&c, &out->pub_time, e)) return kl_err_wrap(e, "calendar chain publication time");
        break;
      case 0x02:
        if (seen_aggr++) return kl_tlv_err_dup(&c, "calendar hash chain", e);
        if (kl_tlv_get_uint(&c, &out->aggr_time, e)) return kl_err_wrap(e, "calendar chain aggregation time");
        out->has_aggr_time = true;
        break;
      case 0x05:
        if (seen_input++) return kl_tlv_err_dup(&c, "calendar hash chain", e);
        if (kl_imprint_decode(&c, &out->input, e)) return kl_err_wrap(e, "calendar chain input hash");
        break;
      case KL_LINK_LEFT:
      case KL_LINK_RIGHT:
        if (out->n_links == cap) {
          size_t ncap = cap ? cap * 2 : 32;
          kl_cal_link_t *nl = kl_arena_alloc(arena, ncap * sizeof *nl);
          if (nl == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
          if (out->n_links) memcpy(nl, out->links, out->n_links * sizeof *nl);
          out->links = nl;
          cap = ncap;
        }
        out->links[out->n_links].dir = (uint8_t)c.type;
        if (kl_imprint_decode(&c, &out->links[out->n_links].sibling, e))
          return kl_err_wrap(e, "calendar chain link %zu", out->n_links + 1);
        out->n_links++;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "calendar hash chain", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_pub) return kl_err_set(e, KL_EFORMAT, "calendar hash chain at offset %zu lacks its publication time (0x01)", t->offset);
  if (!seen_input) return kl_err_set(e, KL_EFORMAT, "calendar hash chain at offset %zu lacks its input hash (0x05)", t->offset);
  if (out->n_links == 0) return kl_err_set(e, KL_EFORMAT, "calendar hash chain at offset %zu has no links", t->offset);
  if (!out->has_aggr_time) out->aggr_time = out->pub_time;
  return 0;
}

void kl_cal_chain_encode(kl_buf_t *b, const kl_cal_chain_t *c) {
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, c->pub_time);
  kl_tlv_put_uint(b, 0x02, 0, c->aggr_time);
  kl_imprint_encode(b, 0x05, &c->input);
  for (size_t i = 0; i < c->n_links; i++) kl_imprint_encode(b, c->links[i].dir, &c->links[i].sibling);
  kl_tlv_close(b, m, KL_T_CAL_CHAIN, 0);
}

/* ---- aggregation hash chain ---- */

/* INT-11 (KSI-FORMAT.md §4.4): one padding element, first, TLV8 with N and F, value 01 or
 * 01 01, even total; without padding the value must not look like an imprint. NULL when the
 * rules hold, else the rule that is broken. These are verification rules, not structure: the
 * metadata still parses, and the internal policy reports INT-11 (as libksi does). */
static const char *metadata_untrusted_why(const kl_tlv_t *t, const kl_tlv_t *pad, int n_pad, int pad_pos) {
  if (n_pad > 1) return "more than one padding element (0x1E)";
  if (pad != NULL) {
    if (pad_pos != 1) return "the padding element (0x1E) is not the first element";
    if (pad->flags & KL_TLV_FLAG_16) return "the padding element (0x1E) is in TLV16 form";
    if ((pad->flags & (KL_TLV_FLAG_N | KL_TLV_FLAG_F)) != (KL_TLV_FLAG_N | KL_TLV_FLAG_F))
      return "the padding element (0x1E) lacks the N and F flags";
    if (!((pad->len == 1 && pad->value[0] == 1) || (pad->len == 2 && pad->value[0] == 1 && pad->value[1] == 1)))
      return "the padding value is not 01 or 01 01";
    if (t->len % 2 != 0) return "the padded metadata has an odd length";
    return NULL;
  }
  if (t->len > 0 && kl_hash_known(t->value[0]) && t->len == kl_hash_digest_len(t->value[0]) + 1)
    return "without padding, the metadata value reads as an imprint";
  return NULL;
}

static int metadata_decode(const kl_tlv_t *t, const uint8_t *base, kl_metadata_t *m, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c, pad = {0};
  int r, n = 0, n_pad = 0, pad_pos = 0, seen_client = 0, seen_machine = 0;
  memset(m, 0, sizeof *m);
  m->value = t->value;
  m->len = t->len;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    n++;
    switch (c.type) {
      case 0x1E: /* judged after the loop: a misplaced or repeated padding is INT-11, not malformed */
        if (n_pad++ == 0) {
          pad = c;
          pad_pos = n;
        }
        m->has_padding = true;
        break;
      case 0x01:
        if (seen_client++) return kl_tlv_err_dup(&c, "metadata", e);
        if (kl_tlv_get_str(&c, &m->client_id, e)) return kl_err_wrap(e, "metadata client id");
        break;
      case 0x02:
        if (seen_machine++) return kl_tlv_err_dup(&c, "metadata", e);
        if (kl_tlv_get_str(&c, &m->machine_id, e)) return kl_err_wrap(e, "metadata machine id");
        break;
      case 0x03:
        if (m->has_seq) return kl_tlv_err_dup(&c, "metadata", e);
        if (kl_tlv_get_uint(&c, &m->seq, e)) return kl_err_wrap(e, "metadata sequence number");
        m->has_seq = true;
        break;
      case 0x04:
        if (m->has_req_time) return kl_tlv_err_dup(&c, "metadata", e);
        if (kl_tlv_get_uint(&c, &m->req_time, e)) return kl_err_wrap(e, "metadata request time");
        m->has_req_time = true;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "metadata", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_client)
    return kl_err_set(e, KL_EFORMAT, "metadata at offset %zu lacks its client id (0x01)", t->offset);
  m->untrusted_why = metadata_untrusted_why(t, n_pad ? &pad : NULL, n_pad, pad_pos);
  m->trusted = m->untrusted_why == NULL;
  return 0;
}

static int legacy_id_decode(const kl_tlv_t *t, kl_aggr_link_t *l, kl_err_t *e) {
  const uint8_t *v = t->value;
  if (t->len != KL_LEGACY_ID_LEN)
    return kl_err_set(e, KL_EFORMAT, "legacy id at offset %zu is %zu bytes, expected %d", t->offset, t->len, KL_LEGACY_ID_LEN);
  if (v[0] != 0x03 || v[1] != 0x00)
    return kl_err_set(e, KL_EFORMAT, "legacy id at offset %zu has a bad prefix %02X %02X (expected 03 00)", t->offset, v[0], v[1]);
  size_t n = v[2];
  if (n > 25)
    return kl_err_set(e, KL_EFORMAT, "legacy id at offset %zu claims a %zu-byte name (max 25)", t->offset, n);
  for (size_t i = 3 + n; i < KL_LEGACY_ID_LEN; i++)
    if (v[i] != 0) return kl_err_set(e, KL_EFORMAT, "legacy id at offset %zu has non-zero padding", t->offset);
  if (memchr(v + 3, 0, n) != NULL)
    return kl_err_set(e, KL_EFORMAT, "legacy id at offset %zu has a NUL inside its name", t->offset);
  memcpy(l->legacy_id, v + 3, n);
  l->legacy_id[n] = '\0';
  return 0;
}

static int aggr_link_decode(const kl_tlv_t *t, const uint8_t *base, kl_aggr_link_t *l, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_lc = 0, seen_sib = 0;
  memset(l, 0, sizeof *l);
  l->dir = (uint8_t)t->type;
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_lc++) return kl_tlv_err_dup(&c, "aggregation link", e);
        if (kl_tlv_get_uint(&c, &l->level_corr, e)) return kl_err_wrap(e, "level correction");
        break;
      case KL_SIB_IMPRINT:
      case KL_SIB_LEGACY_ID:
      case KL_SIB_METADATA:
        if (seen_sib++)
          return kl_err_set(e, KL_EFORMAT, "aggregation link at offset %zu has more than one sibling", t->offset);
        l->kind = (uint8_t)c.type;
        l->sib_bytes = c.value;
        l->sib_len = c.len;
        if (c.type == KL_SIB_IMPRINT) {
          if (kl_imprint_decode(&c, &l->sibling, e)) return kl_err_wrap(e, "sibling hash");
        } else if (c.type == KL_SIB_LEGACY_ID) {
          if (legacy_id_decode(&c, l, e)) return KL_EFORMAT;
        } else if (metadata_decode(&c, base, &l->meta, e)) {
          return KL_EFORMAT;
        }
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "aggregation link", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_sib)
    return kl_err_set(e, KL_EFORMAT, "aggregation link at offset %zu has no sibling (0x02, 0x03 or 0x04)", t->offset);
  return 0;
}

int kl_aggr_chain_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                         kl_aggr_chain_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_time = 0, seen_input = 0, seen_algo = 0;
  size_t n_links = 0, n_index = 0;
  memset(out, 0, sizeof *out);
  out->offset = t->offset;
  /* First pass: count, so the arrays are allocated once. */
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    if (c.type == KL_LINK_LEFT || c.type == KL_LINK_RIGHT) n_links++;
    else if (c.type == 0x03) n_index++;
  }
  if (r < 0) return kl_err_wrap(e, "aggregation hash chain at offset %zu", t->offset);
  out->links = kl_arena_alloc(arena, (n_links ? n_links : 1) * sizeof *out->links);
  out->index = kl_arena_alloc(arena, (n_index ? n_index : 1) * sizeof *out->index);
  if (out->links == NULL || out->index == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x02:
        if (seen_time++) return kl_tlv_err_dup(&c, "aggregation hash chain", e);
        if (kl_tlv_get_uint(&c, &out->aggr_time, e)) return kl_err_wrap(e, "aggregation time");
        break;
      case 0x03:
        if (kl_tlv_get_uint(&c, &out->index[out->n_index++], e)) return kl_err_wrap(e, "chain index");
        break;
      case 0x04:
        if (out->has_input_data) return kl_tlv_err_dup(&c, "aggregation hash chain", e);
        out->has_input_data = true;
        out->input_data = c.value;
        out->input_data_len = c.len;
        break;
      case 0x05:
        if (seen_input++) return kl_tlv_err_dup(&c, "aggregation hash chain", e);
        if (kl_imprint_decode(&c, &out->input, e)) return kl_err_wrap(e, "aggregation chain input hash");
        break;
      case 0x06:
        if (seen_algo++) return kl_tlv_err_dup(&c, "aggregation hash chain", e);
        if (kl_tlv_get_uint(&c, &out->algo, e)) return kl_err_wrap(e, "aggregation algorithm");
        if (!kl_hash_known((int)(out->algo > 255 ? 255 : out->algo)))
          return kl_err_set(e, KL_EHASHALG, "aggregation algorithm at offset %zu: unknown hash algorithm id %llu", c.offset, (unsigned long long)out->algo);
        break;
      case KL_LINK_LEFT:
      case KL_LINK_RIGHT:
        if (aggr_link_decode(&c, base, &out->links[out->n_links], e))
          return kl_err_wrap(e, "aggregation chain link %zu", out->n_links + 1);
        out->n_links++;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "aggregation hash chain", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  const char *missing = !seen_time ? "aggregation time (0x02)"
                        : out->n_index == 0 ? "chain index (0x03)"
                        : !seen_input ? "input hash (0x05)"
                        : !seen_algo ? "aggregation algorithm (0x06)"
                        : out->n_links == 0 ? "links (0x07/0x08)" : NULL;
  if (missing)
    return kl_err_set(e, KL_EFORMAT, "aggregation hash chain at offset %zu lacks its %s", t->offset, missing);
  if (out->n_links > KL_MAX_CHAIN_LINKS)
    return kl_err_set(e, KL_EFORMAT, "aggregation hash chain at offset %zu has %zu links (max %d)", t->offset, out->n_links, KL_MAX_CHAIN_LINKS);
  return 0;
}

void kl_aggr_chain_encode(kl_buf_t *b, const kl_aggr_chain_t *c) {
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x02, 0, c->aggr_time);
  for (size_t i = 0; i < c->n_index; i++) kl_tlv_put_uint(b, 0x03, 0, c->index[i]);
  if (c->has_input_data) kl_tlv_put_bytes(b, 0x04, 0, c->input_data, c->input_data_len);
  kl_imprint_encode(b, 0x05, &c->input);
  kl_tlv_put_uint(b, 0x06, 0, c->algo);
  for (size_t i = 0; i < c->n_links; i++) {
    const kl_aggr_link_t *l = &c->links[i];
    size_t lm = kl_tlv_open(b);
    if (l->level_corr) kl_tlv_put_uint(b, 0x01, 0, l->level_corr);
    kl_tlv_put_bytes(b, l->kind, 0, l->sib_bytes, l->sib_len);
    kl_tlv_close(b, lm, l->dir, 0);
  }
  kl_tlv_close(b, m, KL_T_AGGR_CHAIN, 0);
}
