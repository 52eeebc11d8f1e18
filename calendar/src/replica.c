/* Calendar replication messages: framing, encoding from a calendar, applying to a replica. */
#include "keyless/replica.h"

#include <stdlib.h>
#include <string.h>

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
  kl_cal_info_t info;
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
  m.body_case = KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ENTRIES;
  m.entries = &en;
  r = put_msg(out, &m, e);
out:
  free(roots);
  free(ptrs);
  free(ents);
  return r;
}

static int apply(const Keyless__Replication__Entries *en, kl_cal_t *replica, size_t *applied, kl_err_t *e) {
  kl_cal_info_t info;
  int r = kl_cal_info(replica, &info, e);
  if (r) return r;
  if (en->genesis != info.genesis)
    return kl_err_set(e, KL_ESTATE, "replication: the core's genesis %llu differs from this calendar's %llu",
                      (unsigned long long)en->genesis, (unsigned long long)info.genesis);
  uint64_t next = info.empty ? info.genesis : info.last + 1;
  kl_cal_entry_t *ce = calloc(en->n_entries ? en->n_entries : 1, sizeof *ce);
  kl_imprint_t *imps = calloc(en->n_entries ? en->n_entries : 1, sizeof *imps);
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
  if (en->n_entries > 0 && (r = kl_cal_append(replica, ce, en->n_entries, e))) goto out;
  *applied = en->n_entries;
out:
  free(imps);
  free(ce);
  return r;
}

int kl_repl_handle(const uint8_t *payload, size_t len, kl_cal_t *replica, kl_repl_subscribe_t *sub,
                   int *is_subscribe, size_t *applied, kl_err_t *e) {
  *is_subscribe = 0;
  *applied = 0;
  Keyless__Replication__ReplicationMessage *m = keyless__replication__replication_message__unpack(NULL, len, payload);
  if (m == NULL) return kl_err_set(e, KL_EFORMAT, "replication: undecodable message of %zu bytes", len);
  int r = 0;
  switch (m->body_case) {
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_SUBSCRIBE:
      sub->after = m->subscribe->after;
      sub->from_genesis = m->subscribe->has_from_genesis && m->subscribe->from_genesis;
      *is_subscribe = 1;
      break;
    case KEYLESS__REPLICATION__REPLICATION_MESSAGE__BODY_ENTRIES:
      if (replica == NULL) r = kl_err_set(e, KL_ESTATE, "replication: entries received but no replica calendar");
      else r = apply(m->entries, replica, applied, e);
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
