/* The signature object: parse (0x800), structural rules, rebuild. */
#include <stdlib.h>
#include <string.h>

#include "keyless/sig.h"

static int pki_sig_decode(const kl_tlv_t *t, const uint8_t *base, kl_pki_sig_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_type = 0, seen_val = 0, seen_id = 0, seen_uri = 0;
  memset(out, 0, sizeof *out);
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case 0x01:
        if (seen_type++) return kl_tlv_err_dup(&c, "signed data", e);
        if (kl_tlv_get_str(&c, &out->sig_type, e)) return kl_err_wrap(e, "signature type");
        break;
      case 0x02:
        if (seen_val++) return kl_tlv_err_dup(&c, "signed data", e);
        out->value = c.value;
        out->value_len = c.len;
        break;
      case 0x03:
        if (seen_id++) return kl_tlv_err_dup(&c, "signed data", e);
        out->cert_id = c.value;
        out->cert_id_len = c.len;
        break;
      case 0x04:
        if (seen_uri++) return kl_tlv_err_dup(&c, "signed data", e);
        if (kl_tlv_get_str(&c, &out->cert_repo_uri, e)) return kl_err_wrap(e, "certificate repository URI");
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "signed data", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_type || !seen_val || !seen_id)
    return kl_err_set(e, KL_EFORMAT, "signed data at offset %zu lacks its %s", t->offset,
                      !seen_type ? "signature type (0x01)" : !seen_val ? "signature value (0x02)" : "certificate id (0x03)");
  if (out->value_len == 0)
    return kl_err_set(e, KL_EFORMAT, "signed data at offset %zu has an empty signature value", t->offset);
  return 0;
}

int kl_cal_auth_decode(const kl_tlv_t *t, const uint8_t *base, kl_cal_auth_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r, seen_data = 0, seen_sig = 0;
  memset(out, 0, sizeof *out);
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case KL_T_PUB_DATA:
        if (seen_data++) return kl_tlv_err_dup(&c, "calendar authentication record", e);
        if (kl_pub_data_decode(&c, base, &out->data, e)) return KL_EFORMAT;
        break;
      case 0x0B:
        if (seen_sig++) return kl_tlv_err_dup(&c, "calendar authentication record", e);
        if (pki_sig_decode(&c, base, &out->sig, e)) return KL_EFORMAT;
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "calendar authentication record", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (!seen_data || !seen_sig)
    return kl_err_set(e, KL_EFORMAT, "calendar authentication record at offset %zu lacks its %s",
                      t->offset, !seen_data ? "publication data (0x10)" : "signed data (0x0B)");
  return 0;
}

static int rfc3161_decode(const kl_tlv_t *t, const uint8_t *base, kl_arena_t *arena,
                          kl_rfc3161_t *out, kl_err_t *e) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  int r;
  unsigned seen = 0; /* bit per field type */
  size_t n_index = 0;
  memset(out, 0, sizeof *out);
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0)
    if (c.type == 0x03) n_index++;
  if (r < 0) return KL_EFORMAT;
  out->index = kl_arena_alloc(arena, (n_index ? n_index : 1) * sizeof *out->index);
  if (out->index == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  kl_tlv_iter_children(&it, base, t);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    const uint8_t **span = NULL;
    size_t *span_len = NULL;
    uint64_t *num = NULL;
    switch (c.type) {
      case 0x02: num = &out->aggr_time; break;
      case 0x03:
        if (kl_tlv_get_uint(&c, &out->index[out->n_index++], e)) return kl_err_wrap(e, "RFC 3161 chain index");
        continue;
      case 0x05:
        if (seen & (1u << 5)) return kl_tlv_err_dup(&c, "RFC 3161 record", e);
        seen |= 1u << 5;
        if (kl_imprint_decode(&c, &out->input, e)) return kl_err_wrap(e, "RFC 3161 input hash");
        continue;
      case 0x10: span = &out->tst_prefix; span_len = &out->tst_prefix_len; break;
      case 0x11: span = &out->tst_suffix; span_len = &out->tst_suffix_len; break;
      case 0x12: num = &out->tst_alg; break;
      case 0x13: span = &out->sig_prefix; span_len = &out->sig_prefix_len; break;
      case 0x14: span = &out->sig_suffix; span_len = &out->sig_suffix_len; break;
      case 0x15: num = &out->sig_alg; break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "RFC 3161 record", e);
        continue;
    }
    if (seen & (1u << (c.type & 0x1F))) return kl_tlv_err_dup(&c, "RFC 3161 record", e);
    seen |= 1u << (c.type & 0x1F);
    if (num != NULL) {
      if (kl_tlv_get_uint(&c, num, e)) return kl_err_wrap(e, "RFC 3161 record");
      if ((num == &out->tst_alg || num == &out->sig_alg) && !kl_hash_known((int)(*num > 255 ? 255 : *num)))
        return kl_err_set(e, KL_EHASHALG, "RFC 3161 record: unknown hash algorithm id %llu at offset %zu",
                          (unsigned long long)*num, c.offset);
    } else {
      *span = c.value;
      *span_len = c.len;
    }
  }
  if (r < 0) return KL_EFORMAT;
  static const struct { uint8_t type; const char *name; } need[] = {
      {0x02, "aggregation time (0x02)"}, {0x05, "input hash (0x05)"},
      {0x10, "tstInfo prefix (0x10)"},   {0x11, "tstInfo suffix (0x11)"},
      {0x12, "tstInfo algorithm (0x12)"}, {0x13, "signed attributes prefix (0x13)"},
      {0x14, "signed attributes suffix (0x14)"}, {0x15, "signed attributes algorithm (0x15)"}};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
    if (!(seen & (1u << need[i].type)))
      return kl_err_set(e, KL_EFORMAT, "RFC 3161 record at offset %zu lacks its %s", t->offset, need[i].name);
  if (out->n_index == 0)
    return kl_err_set(e, KL_EFORMAT, "RFC 3161 record at offset %zu lacks its chain index (0x03)", t->offset);
  return 0;
}

static int cmp_chain(const void *a, const void *b) {
  const kl_aggr_chain_t *x = a, *y = b;
  if (x->n_index != y->n_index) return x->n_index > y->n_index ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset; /* stable: file order */
}

static int sig_decode(kl_sig_t *s, kl_err_t *e) {
  kl_tlv_t top, c;
  kl_tlv_iter_t it;
  int r;
  size_t n_chains = 0;
  const uint8_t *base = s->raw;
  if (kl_tlv_parse_one(s->raw, s->raw_len, &top, e)) return KL_EFORMAT;
  if (top.type != KL_T_SIGNATURE)
    return kl_err_set(e, KL_EFORMAT, "not a KSI signature: top-level element is 0x%02X, expected 0x800", top.type);
  kl_tlv_iter_children(&it, base, &top);
  while ((r = kl_tlv_next(&it, &c, e)) > 0)
    if (c.type == KL_T_AGGR_CHAIN) n_chains++;
  if (r < 0) return KL_EFORMAT;
  if (n_chains == 0) return kl_err_set(e, KL_EFORMAT, "signature has no aggregation hash chain (0x801)");
  s->chains = kl_arena_alloc(&s->arena, n_chains * sizeof *s->chains);
  if (s->chains == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  kl_tlv_iter_children(&it, base, &top);
  while ((r = kl_tlv_next(&it, &c, e)) > 0) {
    switch (c.type) {
      case KL_T_AGGR_CHAIN:
        if (kl_aggr_chain_decode(&c, base, &s->arena, &s->chains[s->n_chains], e))
          return kl_err_wrap(e, "aggregation hash chain %zu", s->n_chains + 1);
        s->n_chains++;
        break;
      case KL_T_CAL_CHAIN:
        if (s->cal) return kl_tlv_err_dup(&c, "signature", e);
        if ((s->cal = kl_arena_alloc(&s->arena, sizeof *s->cal)) == NULL) return KL_ENOMEM;
        if (kl_cal_chain_decode(&c, base, &s->arena, s->cal, e)) return KL_EFORMAT == e->code ? e->code : kl_err_wrap(e, "calendar hash chain");
        break;
      case KL_T_PUB_REC:
        if (s->pub) return kl_tlv_err_dup(&c, "signature", e);
        if ((s->pub = kl_arena_alloc(&s->arena, sizeof *s->pub)) == NULL) return KL_ENOMEM;
        if (kl_pub_rec_decode(&c, base, &s->arena, s->pub, e)) return kl_err_wrap(e, "publication record");
        break;
      case KL_T_AGGR_AUTH:
        if (s->has_aggr_auth) return kl_tlv_err_dup(&c, "signature", e);
        s->has_aggr_auth = true; /* never produced in practice; kept, not verified */
        break;
      case KL_T_CAL_AUTH:
        if (s->auth) return kl_tlv_err_dup(&c, "signature", e);
        if ((s->auth = kl_arena_alloc(&s->arena, sizeof *s->auth)) == NULL) return KL_ENOMEM;
        if (kl_cal_auth_decode(&c, base, s->auth, e)) return kl_err_wrap(e, "calendar authentication record");
        break;
      case KL_T_RFC3161:
        if (s->rfc3161) return kl_tlv_err_dup(&c, "signature", e);
        if ((s->rfc3161 = kl_arena_alloc(&s->arena, sizeof *s->rfc3161)) == NULL) return KL_ENOMEM;
        if (rfc3161_decode(&c, base, &s->arena, s->rfc3161, e)) return kl_err_wrap(e, "RFC 3161 record");
        break;
      default:
        if (!kl_tlv_is_noncritical(&c)) return kl_tlv_err_unknown(&c, "signature", e);
    }
  }
  if (r < 0) return KL_EFORMAT;
  if (s->cal == NULL && (s->pub != NULL || s->auth != NULL))
    return kl_err_set(e, KL_EFORMAT, "signature has a %s but no calendar hash chain",
                      s->pub ? "publication record" : "calendar authentication record");
  if (s->pub != NULL && s->auth != NULL)
    return kl_err_set(e, KL_EFORMAT, "signature has both a publication record and a calendar authentication record");
  qsort(s->chains, s->n_chains, sizeof *s->chains, cmp_chain);
  return 0;
}

int kl_sig_parse(const uint8_t *p, size_t n, kl_sig_t **out, kl_err_t *e) {
  *out = NULL;
  if (n > KL_TLV_MAX_SIZE)
    return kl_err_set(e, KL_ETOOBIG, "signature is %zu bytes; a KSI signature is at most %d bytes", n, KL_TLV_MAX_SIZE);
  kl_sig_t *s = calloc(1, sizeof *s);
  if (s == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  s->raw = malloc(n ? n : 1);
  if (s->raw == NULL) {
    free(s);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  if (n) memcpy(s->raw, p, n);
  s->raw_len = n;
  int r = sig_decode(s, e);
  if (r) {
    kl_sig_free(s);
    return r;
  }
  *out = s;
  return 0;
}

void kl_sig_free(kl_sig_t *s) {
  if (s == NULL) return;
  kl_arena_free(&s->arena);
  free(s->raw);
  free(s);
}

const uint8_t *kl_sig_bytes(const kl_sig_t *s, size_t *len) {
  *len = s->raw_len;
  return s->raw;
}

const kl_imprint_t *kl_sig_document_hash(const kl_sig_t *s) {
  return s->rfc3161 ? &s->rfc3161->input : &s->chains[0].input;
}

uint64_t kl_sig_signing_time(const kl_sig_t *s) { return s->chains[0].aggr_time; }

int kl_sig_rebuild(const kl_sig_t *sig, const uint8_t *cal_raw, size_t cal_len,
                   const uint8_t *anchor_raw, size_t anchor_len, kl_sig_t **out, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  kl_tlv_t top, c;
  kl_tlv_iter_t it;
  int r;
  *out = NULL;
  if (kl_tlv_parse_one(sig->raw, sig->raw_len, &top, e)) return KL_EFORMAT;
  size_t m = kl_tlv_open(&b);
  kl_tlv_iter_children(&it, sig->raw, &top);
  /* Keep everything but the calendar part, in its original order and bytes. */
  while ((r = kl_tlv_next(&it, &c, e)) > 0)
    if (c.type != KL_T_CAL_CHAIN && c.type != KL_T_PUB_REC && c.type != KL_T_CAL_AUTH)
      kl_buf_put(&b, c.raw, c.raw_len);
  if (r < 0) {
    kl_buf_free(&b);
    return KL_EFORMAT;
  }
  if (cal_raw) kl_buf_put(&b, cal_raw, cal_len);
  if (anchor_raw) kl_buf_put(&b, anchor_raw, anchor_len);
  if (kl_tlv_close(&b, m, KL_T_SIGNATURE, 0) || kl_buf_check(&b, e)) {
    kl_buf_free(&b);
    return kl_err_set(e, KL_ETOOBIG, "rebuilt signature does not fit in one TLV");
  }
  r = kl_sig_parse(b.p, b.len, out, e);
  kl_buf_free(&b);
  return r;
}
