/* Calendar replication messages: framing, encoding from a calendar (signed by the core's
 * calendar-auth key), checking a batch against its signed root and applying it to a replica. */
#include "keyless/replica.h"

#include <stdlib.h>
#include <string.h>

#include "cal_internal.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"
#include "keyless/verify.h"
#include "replication.pb-c.h"

int kl_frame_peek(const uint8_t *buf, size_t len, size_t max, size_t *payload_len, kl_err_t *e) {
  if (len < KL_FRAME_HDR) return 0;
  size_t n = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3];
  if (n > max) {
    kl_err_set(e, KL_ETOOBIG, "frame of %zu bytes exceeds the maximum of %zu", n, max);
    return -1;
  }
  if (len - KL_FRAME_HDR < n) return 0;
  *payload_len = n;
  return 1;
}

void kl_frame_put(kl_buf_t *out, const uint8_t *payload, size_t len) {
  uint8_t h[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
  kl_buf_put(out, h, 4);
  kl_buf_put(out, payload, len);
}

static int put_msg(kl_buf_t *out, const Keyless__Replication__ReplicationMessage *m, kl_err_t *e) {
  size_t n = keyless__replication__replication_message__get_packed_size(m);
  if (n > KL_REPL_MAX_FRAME) return kl_err_set(e, KL_ETOOBIG, "replication message of %zu bytes is too large", n);
  uint8_t *tmp = malloc(n ? n : 1);
  if (tmp == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  keyless__replication__replication_message__pack(m, tmp);
  kl_frame_put(out, tmp, n);
  free(tmp);
  return kl_buf_check(out, e);
}

int kl_repl_encode_subscribe(kl_buf_t *out, uint64_t after, int from_genesis, kl_err_t *e) {
  Keyless__Replication__Subscribe s = KEYLESS__REPLICATION__SUBSCRIBE__INIT;
  Keyless__Replication__ReplicationMessage m = KEYLESS__REPLICATION__REPLICATION_MESSAGE__INIT;
  s.after = after;
  s.has_from_genesis = 1;
  s.from_genesis = from_genesis != 0;
  m.body_case = KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_SUBSCRIBE;
  m.subscribe = &s;
  return put_msg(out, &m, e);
}

int kl_repl_encode_entries(kl_buf_t *out, kl_cal_t *cal, uint64_t from, uint64_t to, kl_err_t *e) {
  return kl_repl_encode_entries_signed(out, cal, from, to, NULL, e);
}

int kl_repl_encode_entries_signed(kl_buf_t *out, kl_cal_t *cal, uint64_t from, uint64_t to, kl_calauth_t *auth,
                                  kl_err_t *e) {
  kl_cal_info_t info;
  kl_buf_t rec = KL_BUF_INIT;
  int r = kl_cal_info(cal, &info, e);
  if (r) return r;
  if (info.empty || from < info.genesis || to > info.last || from > to || to - from >= 65536)
    return kl_err_set(e, KL_ERANGE, "replication: cannot send seconds %llu..%llu", (unsigned long long)from,
                      (unsigned long long)to);
  size_t n = (size_t)(to - from + 1);
  Keyless__Replication__CalendarEntry *ents = calloc(n, sizeof *ents);
  Keyless__Replication__CalendarEntry **ptrs = calloc(n, sizeof *ptrs);
  uint8_t(*roots)[KL_IMPRINT_MAX] = calloc(n, KL_IMPRINT_MAX);
  if (ents == NULL || ptrs == NULL || roots == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < n; k++) {
    kl_imprint_t leaf, filler;
    uint64_t t = from + k;
    keyless__replication__calendar_entry__init(&ents[k]);
    ents[k].time = t;
    if ((r = kl_cal_leaf(cal, t, &leaf, e))) goto out;
    kl_cal_filler_leaf(t, &filler);
    if (!kl_imprint_eq(&leaf, &filler)) { /* a real round; fillers travel as absence */
      ents[k].has_root = 1;
      ents[k].root.len = kl_imprint_to_bytes(&leaf, roots[k]);
      ents[k].root.data = roots[k];
    }
    ptrs[k] = &ents[k];
  }
  Keyless__Replication__Entries en = KEYLESS__REPLICATION__ENTRIES__INIT;
  Keyless__Replication__ReplicationMessage m = KEYLESS__REPLICATION__REPLICATION_MESSAGE__INIT;
  en.genesis = info.genesis;
  en.n_entries = n;
  en.entries = ptrs;
  en.committed_last = info.last;
  if (auth != NULL) { /* the record for the batch's last second: (to, root(to)) */
    kl_imprint_t root;
    if ((r = kl_cal_root(cal, to, &root, e)) || (r = kl_calauth_sign(auth, to, &root, &rec, e))) {
      kl_err_wrap(e, "replication: signing second %llu", (unsigned long long)to);
      goto out;
    }
    en.has_auth_record = 1;
    en.auth_record.len = rec.len;
    en.auth_record.data = rec.p;
  }
  m.body_case = KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ENTRIES;
  m.entries = &en;
  r = put_msg(out, &m, e);
out:
  kl_buf_free(&rec);
  free(roots);
  free(ptrs);
  free(ents);
  return r;
}

/* The calendar root at the batch's last second as it will be once the batch is appended,
 * computed from the replica's stored nodes without writing anything: the forest of the
 * replica's `next` leaves (the perfect subtrees, largest first, as stored or as genesis nodes),
 * each new leaf pushed onto it as in a Merkle mountain range (two subtrees of one height merge
 * into their parent), then the forest folded from the right (docs/formats.md §1.5). */
static int root_after(kl_cal_t *replica, uint64_t next, const kl_cal_entry_t *ce, size_t n, kl_imprint_t *out,
                      kl_err_t *e) {
  struct {
    unsigned h;
    kl_imprint_t v;
  } st[66];
  kl__cal_tree_t forest[64];
  size_t m = kl__cal_forest(next, forest), top = 0;
  kl__cal_rd_t rd;
  int r;
  if ((r = kl__cal_rd_open(replica, &rd, e))) return kl_err_wrap(e, "replication: reading the replica");
  for (size_t k = 0; k < m; k++) {
    st[top].h = forest[k].h;
    if ((r = kl__cal_node(&rd, forest[k].h, forest[k].i, &st[top].v, e))) goto out;
    top++;
  }
  for (size_t k = 0; k < n; k++) {
    st[top].h = 0;
    if (ce[k].root) st[top].v = *ce[k].root;
    else kl_cal_filler_leaf(ce[k].time, &st[top].v);
    top++;
    while (top >= 2 && st[top - 2].h == st[top - 1].h) {
      if ((r = kl_cal_parent(&rd.h, &st[top - 2].v, &st[top - 1].v, &st[top - 2].v, e))) goto out;
      st[top - 2].h++;
      top--;
    }
  }
  if (top == 0) {
    r = kl_err_set(e, KL_ESTATE, "replication: no calendar root to compute");
    goto out;
  }
  kl_imprint_t acc = st[top - 1].v;
  for (size_t k = top - 1; k-- > 0;)
    if ((r = kl_cal_parent(&rd.h, &st[k].v, &acc, &acc, e))) goto out;
  *out = acc;
out:
  kl__cal_rd_close(&rd);
  return r;
}

/* The batch's record: parsed, verified under a trusted certificate, and for the batch's last
 * second. Its root in *signed_root. */
static int check_record(const ProtobufCBinaryData *rec, const kl_repl_trust_t *trust, uint64_t first, uint64_t last,
                        kl_repl_result_t *res, kl_err_t *e) {
  kl_tlv_t t;
  kl_cal_auth_t auth;
  int r = kl_tlv_parse_one(rec->data, rec->len, &t, e);
  if (r == 0 && t.type != KL_T_CAL_AUTH) r = kl_err_set(e, KL_EFORMAT, "element 0x%X, not 0x805", t.type);
  if (r == 0) r = kl_cal_auth_decode(&t, rec->data, &auth, e);
  if (r) {
    kl_err_wrap(e, "replication: seconds %llu..%llu: the authentication record does not parse",
                (unsigned long long)first, (unsigned long long)last);
    return r;
  }
  if (trust->n_certs > 0) {
    if (kl_cal_auth_verify(&auth, trust->certs, trust->cert_lens, trust->n_certs, e))
      return kl_err_wrap(e, "replication: seconds %llu..%llu: the authentication record for second %llu is not trusted",
                         (unsigned long long)first, (unsigned long long)last, (unsigned long long)auth.data.time);
    res->authenticated = true;
  } else if (!trust->insecure) {
    return kl_err_set(e, KL_EPKI, "replication: seconds %llu..%llu: no trusted calendar-auth certificate is configured",
                      (unsigned long long)first, (unsigned long long)last);
  }
  if (auth.data.time != last)
    return kl_err_set(e, KL_EAUTH,
                      "replication: seconds %llu..%llu: the authentication record is for second %llu, not the "
                      "batch's last second %llu",
                      (unsigned long long)first, (unsigned long long)last, (unsigned long long)auth.data.time,
                      (unsigned long long)last);
  res->signed_root = auth.data.hash;
  return 0;
}

static int apply(const Keyless__Replication__Entries *en, kl_cal_t *replica, const kl_repl_trust_t *trust,
                 kl_repl_result_t *res, kl_err_t *e) {
  kl_cal_info_t info;
  int r = kl_cal_info(replica, &info, e);
  if (r) return r;
  res->genesis = en->genesis;
  res->committed_last = en->committed_last;
  uint64_t next = info.empty ? info.genesis : info.last + 1;
  res->first = next;
  res->last = next + en->n_entries - 1;
  if (en->genesis != info.genesis)
    return kl_err_set(e, KL_ESTATE, "replication: the core's genesis %llu differs from this calendar's %llu",
                      (unsigned long long)en->genesis, (unsigned long long)info.genesis);
  if (en->n_entries == 0) return 0;
  kl_cal_entry_t *ce = calloc(en->n_entries, sizeof *ce);
  kl_imprint_t *imps = calloc(en->n_entries, sizeof *imps);
  if (ce == NULL || imps == NULL) {
    r = kl_err_set(e, KL_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < en->n_entries; k++) {
    const Keyless__Replication__CalendarEntry *x = en->entries[k];
    if (x->time != next + k) {
      r = kl_err_set(e, KL_EFORMAT, "replication: got second %llu, expected %llu (no gaps, no repeats)",
                     (unsigned long long)x->time, (unsigned long long)(next + k));
      goto out;
    }
    ce[k].time = x->time;
    if (x->has_root) {
      if ((r = kl_imprint_from_bytes(&imps[k], x->root.data, x->root.len, e))) {
        kl_err_wrap(e, "replication: second %llu", (unsigned long long)x->time);
        goto out;
      }
      ce[k].root = &imps[k];
    }
  }
  uint64_t first = res->first, last = res->last;
  if (!en->has_auth_record) {
    if (!trust->insecure) {
      r = kl_err_set(e, KL_EAUTH, "replication: seconds %llu..%llu carry no calendar authentication record",
                     (unsigned long long)first, (unsigned long long)last);
      goto out;
    }
  } else {
    if ((r = check_record(&en->auth_record, trust, first, last, res, e))) goto out;
    if ((r = root_after(replica, next, ce, en->n_entries, &res->computed, e))) goto out;
    res->has_roots = true;
    if (!kl_imprint_eq(&res->computed, &res->signed_root)) {
      char a[2 * KL_IMPRINT_MAX + 1], b[2 * KL_IMPRINT_MAX + 1];
      r = kl_err_set(e, KL_ESTATE,
                     "replication: seconds %llu..%llu refused: the calendar root at second %llu would be %s here, "
                     "but the core signed %s",
                     (unsigned long long)first, (unsigned long long)last, (unsigned long long)last,
                     kl_imprint_hex(&res->computed, a), kl_imprint_hex(&res->signed_root, b));
      goto out;
    }
  }
  if ((r = kl_cal_append(replica, ce, en->n_entries, e))) goto out;
  res->applied = en->n_entries;
out:
  free(imps);
  free(ce);
  return r;
}

int kl_repl_receive(const uint8_t *payload, size_t len, kl_cal_t *replica, const kl_repl_trust_t *trust,
                    kl_repl_result_t *res, kl_err_t *e) {
  static const kl_repl_trust_t permissive = {NULL, NULL, 0, true};
  memset(res, 0, sizeof *res);
  if (trust == NULL) trust = &permissive;
  Keyless__Replication__ReplicationMessage *m = keyless__replication__replication_message__unpack(NULL, len, payload);
  if (m == NULL) return kl_err_set(e, KL_EFORMAT, "replication: undecodable message of %zu bytes", len);
  int r = 0;
  switch (m->body_case) {
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_SUBSCRIBE:
      res->sub.after = m->subscribe->after;
      res->sub.from_genesis = m->subscribe->has_from_genesis && m->subscribe->from_genesis;
      res->is_subscribe = 1;
      break;
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ENTRIES:
      res->is_entries = true;
      if (replica == NULL) r = kl_err_set(e, KL_ESTATE, "replication: entries received but no replica calendar");
      else r = apply(m->entries, replica, trust, res, e);
      break;
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ERROR:
      r = kl_err_set(e, KL_ESERVICE, "replication: the core says: %s",
                     m->error->message ? m->error->message : "error");
      break;
    default: r = kl_err_set(e, KL_EFORMAT, "replication: empty message");
  }
  keyless__replication__replication_message__free_unpacked(m, NULL);
  return r;
}

int kl_repl_peek(const uint8_t *payload, size_t len, kl_repl_result_t *res, kl_err_t *e) {
  memset(res, 0, sizeof *res);
  Keyless__Replication__ReplicationMessage *m = keyless__replication__replication_message__unpack(NULL, len, payload);
  if (m == NULL) return kl_err_set(e, KL_EFORMAT, "replication: undecodable message of %zu bytes", len);
  int r = 0;
  switch (m->body_case) {
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_SUBSCRIBE:
      res->sub.after = m->subscribe->after;
      res->sub.from_genesis = m->subscribe->has_from_genesis && m->subscribe->from_genesis;
      res->is_subscribe = 1;
      break;
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ENTRIES: {
      const Keyless__Replication__Entries *en = m->entries;
      res->is_entries = true;
      res->genesis = en->genesis;
      res->committed_last = en->committed_last;
      if (en->n_entries > 0) {
        res->first = en->entries[0]->time;
        res->last = en->entries[en->n_entries - 1]->time;
      } else {
        res->first = en->committed_last + 1;
        res->last = en->committed_last;
      }
      break;
    }
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ERROR:
      r = kl_err_set(e, KL_ESERVICE, "replication: the core says: %s", m->error->message ? m->error->message : "error");
      break;
    default: r = kl_err_set(e, KL_EFORMAT, "replication: empty message");
  }
  keyless__replication__replication_message__free_unpacked(m, NULL);
  return r;
}

int kl_repl_handle(const uint8_t *payload, size_t len, kl_cal_t *replica, kl_repl_subscribe_t *sub,
                   int *is_subscribe, size_t *applied, kl_err_t *e) {
  kl_repl_result_t res;
  int r = kl_repl_receive(payload, len, replica, NULL, &res, e);
  *is_subscribe = res.is_subscribe;
  *applied = res.applied;
  if (res.is_subscribe) *sub = res.sub;
  return r;
}
