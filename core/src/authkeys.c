/* The core's calendar-auth keys: which key signs which second, opening a set, and the rules for
 * replacing a set while the core runs (authkeys.h). */
#include "authkeys.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/pubfile.h"

size_t core_authkeys_index(const uint64_t *from, size_t n, uint64_t s) {
  size_t i = 0;
  while (i + 1 < n && from[i + 1] <= s) i++;
  return i;
}

const core_authkey_t *core_authkeys_at(const core_authkeys_t *ks, uint64_t s) {
  uint64_t from[CORE_AUTHKEYS_MAX];
  for (size_t i = 0; i < ks->n; i++) from[i] = ks->k[i].from;
  return &ks->k[core_authkeys_index(from, ks->n, s)];
}

int core_authkeys_parse_time(const char *text, uint64_t *out, kl_err_t *e) {
  const char *p = text ? text : "";
  size_t len = strlen(p), digits = strspn(p, "0123456789");
  if (len > 0 && digits == len && len <= 12) {
    *out = strtoull(p, NULL, 10);
    return 0;
  }
  struct tm tm = {0};
  int used = 0;
  if (len == 20 && sscanf(p, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                          &tm.tm_sec, &used) == 6 && used == 20 && tm.tm_year >= 1970 && tm.tm_mon >= 1 &&
      tm.tm_mon <= 12 && tm.tm_mday >= 1 && tm.tm_mday <= 31 && tm.tm_hour <= 23 && tm.tm_min <= 59 && tm.tm_sec <= 59) {
    int mday = tm.tm_mday;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t >= 0 && tm.tm_mday == mday) { /* timegm normalises 31 April into 1 May: refuse that */
      *out = (uint64_t)t;
      return 0;
    }
  }
  return kl_err_set(e, KL_EINVAL, "'%.60s' is not a time: want unix seconds (1767225600) or UTC ISO 8601 "
                    "(2026-01-01T00:00:00Z)", p);
}

static int64_t asn1_unix(const ASN1_TIME *t) {
  struct tm tm;
  return ASN1_TIME_to_tm(t, &tm) == 1 ? (int64_t)timegm(&tm) : 0;
}

static void utc(int64_t t, char *out, size_t cap) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (gmtime_r(&tt, &tm) == NULL || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) snprintf(out, cap, "%lld", (long long)t);
}

/* Fills id and validity from the opened signer's certificate; *x is the parsed certificate. */
static int describe_cert(core_authkey_t *k, const char *cert, X509 **x, kl_err_t *e) {
  size_t len;
  const uint8_t *der = kl_calauth_cert_der(k->ca, &len);
  const unsigned char *p = der;
  if ((*x = d2i_X509(NULL, &p, (long)len)) == NULL) {
    ERR_clear_error();
    return kl_err_set(e, KL_ECRYPTO, "calendar-auth certificate %s: cannot parse its DER", cert);
  }
  snprintf(k->id, sizeof k->id, "%08x", (unsigned)kl_crc32(der, len));
  k->not_before = asn1_unix(X509_get0_notBefore(*x));
  k->not_after = asn1_unix(X509_get0_notAfter(*x));
  return 0;
}

int core_authkeys_open(const char *where, const core_authkey_spec_t *spec, size_t n, unsigned flags,
                       core_authkeys_t **out, kl_err_t *e) {
  core_authkeys_t *ks = calloc(1, sizeof *ks);
  X509 *x[CORE_AUTHKEYS_MAX] = {NULL};
  static const char *const name[CORE_AUTHKEYS_MAX] = {"calendar_auth", "next_calendar_auth"};
  int r = 0;
  *out = NULL;
  if (ks == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  if (n < 1 || n > CORE_AUTHKEYS_MAX) {
    r = kl_err_set(e, KL_EINVAL, "%s: %zu calendar-auth keys: 1 to %d", where, n, CORE_AUTHKEYS_MAX);
    goto fail;
  }
  for (size_t i = 0; i < n; i++) {
    core_authkey_t *k = &ks->k[i];
    k->from = i == 0 ? 0 : spec[i].from;
    if (i > 0 && k->from <= ks->k[i - 1].from) {
      r = kl_err_set(e, KL_EINVAL, "%s: [keys] %s_from = %llu: must come after the previous key's first second", where,
                     name[i], (unsigned long long)k->from);
      goto fail;
    }
    if (i > 0 && kl_keyuri_same(spec[i].key, spec[0].key)) {
      r = kl_err_set(e, KL_EINVAL, "%s: [keys] %s_key = %s is the current calendar_auth_key: a rotation needs a new key",
                     where, name[i], spec[i].key);
      goto fail;
    }
    if ((r = kl_calauth_open(spec[i].cert, spec[i].key, flags, &k->ca, e))) {
      kl_err_wrap(e, "%s: [keys] %s", where, name[i]);
      goto fail;
    }
    ks->n = i + 1;
    if ((r = describe_cert(k, spec[i].cert, &x[i], e))) goto fail;
    if (i == 0) continue;
    if (EVP_PKEY_eq(X509_get0_pubkey(x[i]), X509_get0_pubkey(x[0])) == 1) {
      r = kl_err_set(e, KL_EINVAL, "%s: [keys] %s_cert = %s holds the same key as calendar_auth_cert = %s: a rotation "
                     "needs a new key", where, name[i], spec[i].cert, spec[0].cert);
      goto fail;
    }
    if ((int64_t)k->from < k->not_before || (int64_t)k->from > k->not_after) {
      char a[32], b[32], f[32];
      utc(k->not_before, a, sizeof a);
      utc(k->not_after, b, sizeof b);
      utc((int64_t)k->from, f, sizeof f);
      r = kl_err_set(e, KL_EINVAL, "%s: [keys] %s_cert = %s is valid from %s to %s, not at its first second %s (%llu): "
                     "signatures from then on would not verify", where, name[i], spec[i].cert, a, b, f,
                     (unsigned long long)k->from);
      goto fail;
    }
  }
  *out = ks;
  goto done;
fail:
  core_authkeys_free(ks);
done:
  for (size_t i = 0; i < CORE_AUTHKEYS_MAX; i++) X509_free(x[i]);
  return r;
}

void core_authkeys_free(core_authkeys_t *ks) {
  if (ks == NULL) return;
  for (size_t i = 0; i < ks->n; i++) kl_calauth_free(ks->k[i].ca);
  free(ks);
}

int core_authkeys_check_reload(const core_authkeys_t *cur, const core_authkeys_t *next, uint64_t now, kl_err_t *e) {
  const core_authkey_t *a = core_authkeys_at(cur, now), *b = core_authkeys_at(next, now);
  if (strcmp(a->id, b->id) != 0)
    return kl_err_set(e, KL_ESTATE, "the key signing second %llu would change from certificate %s to %s: a new key "
                      "must start at a second still to come (next_calendar_auth_from)", (unsigned long long)now, a->id, b->id);
  for (size_t i = 1; i < next->n; i++) {
    const core_authkey_t *k = &next->k[i];
    bool known = false;
    for (size_t j = 1; j < cur->n; j++) known |= cur->k[j].from == k->from && strcmp(cur->k[j].id, k->id) == 0;
    if (!known && k->from <= now)
      return kl_err_set(e, KL_ESTATE, "the key with certificate %s would start at second %llu, which is not after %llu "
                        "(now, or already signed): a new key must start at a second still to come", k->id,
                        (unsigned long long)k->from, (unsigned long long)now);
  }
  return 0;
}

void core_authkeys_describe(const core_authkeys_t *ks, char *out, size_t cap) {
  size_t off = 0;
  out[0] = '\0';
  for (size_t i = 0; i < ks->n && off < cap; i++)
    off += (size_t)snprintf(out + off, cap - off, "%skey%zu_id=%s key%zu_from=%llu", i ? " " : "", i + 1, ks->k[i].id, i + 1,
                            (unsigned long long)ks->k[i].from);
}
