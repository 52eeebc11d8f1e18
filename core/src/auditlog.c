/* The audit log's format and checks (auditlog.h, docs/formats.md §9). */
#include "auditlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/sig.h"
#include "keyless/tlv.h"

void kl_audit_zero(kl_imprint_t *out) {
  memset(out, 0, sizeof *out);
  out->alg = KL_HASH_SHA256;
  out->len = 32;
}

static int check_text(const char *what, const char *s, kl_err_t *e) {
  size_t n = s ? strlen(s) : 0;
  if (s == NULL) return kl_err_set(e, KL_EINVAL, "audit record: %s missing", what);
  if (n > KL_AUDIT_MAX_TEXT) return kl_err_set(e, KL_EINVAL, "audit record: %s longer than %d bytes", what, KL_AUDIT_MAX_TEXT);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return kl_err_set(e, KL_EINVAL, "audit record: %s holds a control character at byte %zu", what, i);
  return 0;
}

int kl_audit_rec_encode(kl_buf_t *b, const kl_audit_rec_t *r, kl_err_t *e) {
  int rc;
  if ((rc = check_text("event type", r->type, e)) || (rc = check_text("actor", r->actor, e)) ||
      (rc = check_text("details", r->details, e)))
    return rc;
  if (r->type[0] == '\0') return kl_err_set(e, KL_EINVAL, "audit record: empty event type");
  if (r->prev.alg != KL_HASH_SHA256 || r->prev.len != 32) return kl_err_set(e, KL_EINVAL, "audit record: prev is not SHA-256");
  size_t mark = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, r->seq);
  kl_tlv_put_uint(b, 0x02, 0, r->time_ms);
  kl_tlv_put_uint(b, 0x03, 0, r->node);
  kl_tlv_put_str(b, 0x04, 0, r->type);
  kl_tlv_put_str(b, 0x05, 0, r->actor);
  kl_tlv_put_str(b, 0x06, 0, r->details);
  kl_imprint_encode(b, 0x07, &r->prev);
  if (kl_tlv_close(b, mark, KL_AUDIT_T_RECORD, 0)) return kl_err_set(e, KL_ETOOBIG, "audit record: too large");
  return kl_buf_check(b, e);
}

/* The element must be written canonically: re-encoding gives the same bytes. */
static int canonical(const uint8_t *p, size_t n, const char *what, int (*enc)(const void *, kl_buf_t *, kl_err_t *),
                     const void *obj, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  int rc = enc(obj, &b, e);
  if (rc == 0 && (b.len != n || memcmp(b.p, p, n) != 0))
    rc = kl_err_set(e, KL_EFORMAT, "%s: not canonical (flags, long header, non-minimal integer)", what);
  kl_buf_free(&b);
  return rc;
}

static int enc_rec(const void *o, kl_buf_t *b, kl_err_t *e) { return kl_audit_rec_encode(b, o, e); }

int kl_audit_rec_decode(const uint8_t *p, size_t n, kl_audit_rec_t *out, kl_err_t *e) {
  kl_tlv_t t, c;
  kl_tlv_iter_t it;
  int rc;
  memset(out, 0, sizeof *out);
  if ((rc = kl_tlv_parse_one(p, n, &t, e))) return kl_err_wrap(e, "audit record");
  if (t.type != KL_AUDIT_T_RECORD)
    return kl_err_set(e, KL_EFORMAT, "audit record: element 0x%X, want 0x%X", t.type, KL_AUDIT_T_RECORD);
  kl_tlv_iter_children(&it, p, &t);
  unsigned want = 1;
  while ((rc = kl_tlv_next(&it, &c, e)) == 1) {
    if (c.type != want)
      return kl_err_set(e, KL_EFORMAT, "audit record: child 0x%02X at offset %zu, want 0x%02X (unknown, repeated or out of order)",
                        c.type, c.offset, want);
    switch (want++) {
      case 1: rc = kl_tlv_get_uint(&c, &out->seq, e); break;
      case 2: rc = kl_tlv_get_uint(&c, &out->time_ms, e); break;
      case 3: rc = kl_tlv_get_uint(&c, &out->node, e); break;
      case 4: rc = kl_tlv_get_str(&c, &out->type, e); break;
      case 5: rc = kl_tlv_get_str(&c, &out->actor, e); break;
      case 6: rc = kl_tlv_get_str(&c, &out->details, e); break;
      default: rc = kl_imprint_decode(&c, &out->prev, e); break;
    }
    if (rc) return kl_err_wrap(e, "audit record");
    if (want == 8) break;
  }
  if (rc < 0) return kl_err_wrap(e, "audit record");
  if (want != 8) return kl_err_set(e, KL_EFORMAT, "audit record: child 0x%02X missing", want);
  if (kl_tlv_next(&it, &c, e) != 0) return kl_err_set(e, KL_EFORMAT, "audit record: a child after the prev hash");
  if (out->seq == 0) return kl_err_set(e, KL_EFORMAT, "audit record: seq 0 (records count from 1)");
  if ((rc = canonical(p, n, "audit record", enc_rec, out, e))) return rc;
  out->raw = p;
  out->raw_len = n;
  return kl_hash(KL_HASH_SHA256, p, n, &out->hash, e);
}

/* The length of the element at p[0..n): 0 when the file ends inside it (a torn tail). */
static size_t element_len(const uint8_t *p, size_t n) {
  if (n < 2) return 0;
  size_t hdr = (p[0] & KL_TLV_FLAG_16) ? 4 : 2;
  if (n < hdr) return 0;
  size_t len = hdr == 4 ? ((size_t)p[2] << 8 | p[3]) : p[1];
  return n < hdr + len ? 0 : hdr + len;
}

static int check_magic(const uint8_t *p, size_t n, const char *magic, const char *what, kl_err_t *e) {
  if (n < KL_AUDIT_MAGIC_LEN || memcmp(p, magic, KL_AUDIT_MAGIC_LEN) != 0)
    return kl_err_set(e, KL_EFORMAT, "%s: does not start with %s (not an audit file, or damaged)", what, magic);
  return 0;
}

int kl_audit_log_scan(const uint8_t *p, size_t n, kl_audit_scan_t *out, kl_err_t *e) {
  memset(out, 0, sizeof *out);
  int rc = check_magic(p, n, KL_AUDIT_LOG_MAGIC, "audit log", e);
  if (rc) return rc;
  size_t off = KL_AUDIT_MAGIC_LEN, cap = 0;
  out->good_len = off;
  while (off < n) {
    size_t len = element_len(p + off, n - off);
    if (len == 0) {
      out->torn = true;
      kl_err_set(&out->err, KL_EFORMAT, "torn tail: %zu bytes at offset %zu after seq %llu are not a whole record", n - off,
                 off, (unsigned long long)(out->n ? out->recs[out->n - 1].seq : 0));
      break;
    }
    if (out->n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      kl_audit_rec_t *r = realloc(out->recs, nc * sizeof *r);
      if (r == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
      out->recs = r;
      cap = nc;
    }
    kl_audit_rec_t *r = &out->recs[out->n];
    if (kl_audit_rec_decode(p + off, len, r, &out->err)) {
      out->bad = true;
      out->bad_offset = off;
      kl_err_wrap(&out->err, "offset %zu (after seq %llu)", off, (unsigned long long)(out->n ? out->recs[out->n - 1].seq : 0));
      break;
    }
    r->offset = off;
    out->n++;
    off += len;
    out->good_len = off;
  }
  return 0;
}

void kl_audit_scan_free(kl_audit_scan_t *s) {
  free(s->recs);
  s->recs = NULL;
  s->n = 0;
}

int kl_audit_sig_encode(kl_buf_t *b, uint64_t seq, const uint8_t *sig, size_t sig_len, kl_err_t *e) {
  size_t mark = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, seq);
  kl_buf_put(b, sig, sig_len);
  if (kl_tlv_close(b, mark, KL_AUDIT_T_SIG, 0)) return kl_err_set(e, KL_ETOOBIG, "audit signature of seq %llu: too large", (unsigned long long)seq);
  return kl_buf_check(b, e);
}

static int enc_sig(const void *o, kl_buf_t *b, kl_err_t *e) {
  const kl_audit_sigent_t *s = o;
  return kl_audit_sig_encode(b, s->seq, s->sig, s->sig_len, e);
}

int kl_audit_sig_decode(const uint8_t *p, size_t n, kl_audit_sigent_t *out, kl_err_t *e) {
  kl_tlv_t t, c;
  kl_tlv_iter_t it;
  int rc;
  memset(out, 0, sizeof *out);
  if ((rc = kl_tlv_parse_one(p, n, &t, e))) return kl_err_wrap(e, "audit signature");
  if (t.type != KL_AUDIT_T_SIG)
    return kl_err_set(e, KL_EFORMAT, "audit signature: element 0x%X, want 0x%X", t.type, KL_AUDIT_T_SIG);
  kl_tlv_iter_children(&it, p, &t);
  if (kl_tlv_next(&it, &c, e) != 1 || c.type != 0x01 || kl_tlv_get_uint(&c, &out->seq, e) || out->seq == 0)
    return kl_err_set(e, KL_EFORMAT, "audit signature: want a non-zero seq (0x01) first");
  if (kl_tlv_next(&it, &c, e) != 1 || c.type != KL_T_SIGNATURE)
    return kl_err_set(e, KL_EFORMAT, "audit signature of seq %llu: want a signature (0x800) after the seq",
                      (unsigned long long)out->seq);
  out->sig = c.raw;
  out->sig_len = c.raw_len;
  if (kl_tlv_next(&it, &c, e) != 0)
    return kl_err_set(e, KL_EFORMAT, "audit signature of seq %llu: an element after the signature", (unsigned long long)out->seq);
  return canonical(p, n, "audit signature", enc_sig, out, e);
}

int kl_audit_sigs_scan(const uint8_t *p, size_t n, kl_audit_sigs_t *out, kl_err_t *e) {
  memset(out, 0, sizeof *out);
  int rc = check_magic(p, n, KL_AUDIT_SIG_MAGIC, "audit signatures", e);
  if (rc) return rc;
  size_t off = KL_AUDIT_MAGIC_LEN, cap = 0;
  out->good_len = off;
  while (off < n) {
    size_t len = element_len(p + off, n - off);
    if (len == 0) {
      out->torn = true;
      kl_err_set(&out->err, KL_EFORMAT, "torn tail: %zu bytes at offset %zu are not a whole signature entry", n - off, off);
      break;
    }
    if (out->n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      kl_audit_sigent_t *s = realloc(out->ents, nc * sizeof *s);
      if (s == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
      out->ents = s;
      cap = nc;
    }
    kl_audit_sigent_t *s = &out->ents[out->n];
    if (kl_audit_sig_decode(p + off, len, s, &out->err) ||
        (out->n && s->seq <= out->ents[out->n - 1].seq &&
         kl_err_set(&out->err, KL_EFORMAT, "seq %llu after seq %llu: not in increasing order", (unsigned long long)s->seq,
                    (unsigned long long)out->ents[out->n - 1].seq))) {
      out->bad = true;
      out->bad_offset = off;
      kl_err_wrap(&out->err, "offset %zu", off);
      break;
    }
    s->offset = off;
    out->n++;
    off += len;
    out->good_len = off;
  }
  return 0;
}

void kl_audit_sigs_free(kl_audit_sigs_t *s) {
  free(s->ents);
  s->ents = NULL;
  s->n = 0;
}

const kl_audit_sigent_t *kl_audit_sigs_find(const kl_audit_sigs_t *s, uint64_t seq) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->ents[mid].seq == seq) return &s->ents[mid];
    if (s->ents[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

int kl_audit_chain_check(const kl_audit_rec_t *recs, size_t n, const bool *proven, uint64_t *bad_seq, kl_err_t *e) {
  kl_imprint_t zero;
  kl_audit_zero(&zero);
  for (size_t i = 0; i < n; i++) {
    uint64_t want = (uint64_t)i + 1, got = recs[i].seq;
    *bad_seq = want;
    if (got != want) {
      bool later = false;
      for (size_t j = i + 1; j < n && !later; j++) later = recs[j].seq == want;
      if (later)
        return kl_err_set(e, KL_EFORMAT, "seq %llu: out of order (records reordered): %s%llu is followed by seq %llu, "
                          "seq %llu comes later", (unsigned long long)want, i ? "seq " : "the start of the log (seq 0)",
                          i ? (unsigned long long)recs[i - 1].seq : 0ULL, (unsigned long long)got, (unsigned long long)want);
      if (got > want)
        return kl_err_set(e, KL_EFORMAT, "seq %llu missing (removed): %s%llu is followed by seq %llu",
                          (unsigned long long)want, i ? "seq " : "the start of the log (seq 0)",
                          i ? (unsigned long long)recs[i - 1].seq : 0ULL, (unsigned long long)got);
      return kl_err_set(e, KL_EFORMAT, "seq %llu: seq %llu found again where seq %llu belongs (a record repeated or moved)",
                        (unsigned long long)want, (unsigned long long)got, (unsigned long long)want);
    }
    const kl_imprint_t *expect = i ? &recs[i - 1].hash : &zero;
    if (kl_imprint_eq(&recs[i].prev, expect)) continue;
    if (i == 0 || (proven && proven[i - 1]))
      return kl_err_set(e, KL_EFORMAT, "seq %llu: altered: its prev is not the hash of %s", (unsigned long long)want,
                        i ? "seq before it (which its signature proves intact)" : "nothing (seq 1 names zeros)");
    *bad_seq = want - 1;
    return kl_err_set(e, KL_EFORMAT, "seq %llu: altered: its hash is not the prev of seq %llu (or that prev was altered)",
                      (unsigned long long)(want - 1), (unsigned long long)want);
  }
  return 0;
}
