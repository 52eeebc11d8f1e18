/* The development PKI's cluster CA (pki.h): the layout of `keyless devpki -o DIR`, node
 * certificates read back with OpenSSL (one keyless://ROLE/ID URI, EKU per role, loopback
 * names), chains verified with X509_verify_cert against cluster-ca.crt (and not against
 * another PKI's), revocation through the CRL, validity from --not-before/--not-after, and
 * refusals: bad roles, ids and names, and files that already exist. */
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keyless/pki.h"
#include "testutil.h"

#define NODES "core:1,core:2,core:3,aggregator:1,gateway:1,extender:1,admin:operator"

static char tmp[256], pki[300], other[300];

static int group_setup(void **state) {
  (void)state;
  kl_err_t e = {0};
  tu_mkdtemp("devpki", tmp, sizeof tmp);
  snprintf(pki, sizeof pki, "%s/pki", tmp);
  snprintf(other, sizeof other, "%s/other", tmp);
  if (kl_devpki_create(pki, "publications@keyless.test", 30, &e) || kl_devpki_issue_nodes(pki, NODES, 0, &e) ||
      kl_devpki_create(other, "publications@keyless.test", 30, &e) || kl_devpki_issue_nodes(other, "core:1", 0, &e)) {
    fprintf(stderr, "setup: %s\n", e.msg);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return tu_rmrf(tmp);
}

/* ---- helpers ---- */

/* dir/rel in one of 8 rotating buffers: keep a copy (keep()) of anything used longer. */
static const char *at(const char *dir, const char *rel) {
  static char buf[8][512];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
  return buf[k];
}

#define keep(name, dir, rel)   \
  char name[512];              \
  snprintf(name, sizeof name, "%s/%s", dir, rel)

static X509 *load_cert(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) fail_msg("cannot open %s", path);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (x == NULL) fail_msg("%s is not a PEM certificate", path);
  return x;
}

static X509_CRL *load_crl(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) fail_msg("cannot open %s", path);
  X509_CRL *c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
  fclose(f);
  if (c == NULL) fail_msg("%s is not a PEM CRL", path);
  return c;
}

static EVP_PKEY *load_key(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) fail_msg("cannot open %s", path);
  EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (k == NULL) fail_msg("%s is not a PEM key", path);
  return k;
}

static int mode_of(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) fail_msg("%s does not exist", path);
  return (int)(st.st_mode & 07777);
}

static bool present(const char *path) { return access(path, F_OK) == 0; }

/* X509_V_OK or the verification error of cert against ca (and crl when not NULL, with
 * X509_V_FLAG_CRL_CHECK), for a TLS purpose. */
static int verify(const char *ca, const char *cert, const char *crl, int purpose) {
  X509_STORE *st = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  X509 *x = load_cert(cert);
  assert_non_null(st);
  assert_non_null(ctx);
  assert_int_equal(X509_STORE_load_file(st, ca), 1);
  if (crl) {
    X509_CRL *c = load_crl(crl);
    assert_int_equal(X509_STORE_add_crl(st, c), 1);
    X509_CRL_free(c);
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
  }
  assert_int_equal(X509_STORE_CTX_init(ctx, st, x, NULL), 1);
  assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
  int ok = X509_verify_cert(ctx), err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(st);
  X509_free(x);
  if (ok == 1) return X509_V_OK;
  return err == X509_V_OK ? -1 : err;
}

/* The keyless:// URIs of x's subjectAltName (count; the first in uri). */
static int keyless_uris(X509 *x, char *uri, size_t cap) {
  GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int n = 0;
  uri[0] = 0;
  for (int i = 0; g && i < sk_GENERAL_NAME_num(g); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, i);
    if (gn->type != GEN_URI) continue;
    const char *s = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
    int len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
    if (len >= 10 && strncmp(s, "keyless://", 10) == 0 && n++ == 0) snprintf(uri, cap, "%.*s", len, s);
  }
  GENERAL_NAMES_free(g);
  return n;
}

static const char *subject_entry(X509 *x, int nid, char *buf, size_t cap) {
  buf[0] = 0;
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), nid, buf, (int)cap);
  return buf;
}

static long days_between(const ASN1_TIME *from, const ASN1_TIME *to) {
  int d = 0, s = 0;
  assert_int_equal(ASN1_TIME_diff(&d, &s, from, to), 1);
  return d;
}

/* ---- tests ---- */

static void test_layout(void **state) {
  (void)state;
  static const char *const files[] = {"ca.crt",          "publications.crt",       "publications.key", "calendar-auth.crt",
                                      "calendar-auth.key", "cluster-ca.crt",       "crl.pem",          "offline/ca.key",
                                      "offline/cluster-ca.key", "offline/serial",  "offline/revoked",  "nodes/core-1.crt"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    if (!present(at(pki, files[i]))) fail_msg("%s missing", files[i]);
  /* The CA keys only under offline/, which only the owner can enter. */
  assert_false(present(at(pki, "ca.key")));
  assert_false(present(at(pki, "cluster-ca.key")));
  assert_int_equal(mode_of(at(pki, "offline")), 0700);
  assert_int_equal(mode_of(at(pki, "offline/cluster-ca.key")), 0600);
  assert_int_equal(mode_of(at(pki, "offline/ca.key")), 0600);
  assert_int_equal(mode_of(at(pki, "calendar-auth.key")), 0600);
  /* The keys in offline/ are the two CAs' keys; the signing keys are not transport keys. */
  X509 *cca = load_cert(at(pki, "cluster-ca.crt")), *pca = load_cert(at(pki, "ca.crt"));
  EVP_PKEY *ck = load_key(at(pki, "offline/cluster-ca.key")), *pk = load_key(at(pki, "offline/ca.key"));
  EVP_PKEY *cal = load_key(at(pki, "calendar-auth.key"));
  assert_int_equal(X509_check_private_key(cca, ck), 1);
  assert_int_equal(X509_check_private_key(pca, pk), 1);
  assert_int_not_equal(EVP_PKEY_eq(cal, ck), 1);
  /* The cluster CA: EC P-256, critical CA:TRUE pathlen 0, keyCertSign + cRLSign. */
  char buf[128];
  size_t len;
  assert_int_equal(EVP_PKEY_get_base_id(ck), EVP_PKEY_EC);
  assert_int_equal(EVP_PKEY_get_group_name(ck, buf, sizeof buf, &len), 1);
  assert_string_equal(buf, "prime256v1");
  assert_int_equal(X509_check_ca(cca), 1);
  assert_int_equal(X509_get_pathlen(cca), 0);
  int crit = -1;
  BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cca, NID_basic_constraints, &crit, NULL);
  assert_non_null(bc);
  assert_int_equal(crit, 1);
  BASIC_CONSTRAINTS_free(bc);
  assert_int_equal(X509_get_key_usage(cca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
  assert_string_equal(subject_entry(cca, NID_commonName, buf, sizeof buf), "keyless DEVELOPMENT cluster CA");
  assert_int_equal(X509_get_signature_nid(cca), NID_ecdsa_with_SHA256);
  /* The CRL: signed by the cluster CA, valid 30 days from now. */
  X509_CRL *crl = load_crl(at(pki, "crl.pem"));
  assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(cca)), 1);
  assert_int_not_equal(X509_CRL_verify(crl, X509_get0_pubkey(pca)), 1);
  time_t now = time(NULL);
  ASN1_TIME *t = ASN1_TIME_set(NULL, now);
  assert_true(labs(days_between(t, X509_CRL_get0_lastUpdate(crl))) <= 1);
  assert_int_equal(days_between(X509_CRL_get0_lastUpdate(crl), X509_CRL_get0_nextUpdate(crl)), 30);
  ASN1_TIME_free(t);
  X509_CRL_free(crl);
  /* A second create in the same place refuses and replaces nothing. */
  kl_err_t e = {0};
  assert_int_equal(kl_devpki_create(pki, "x@keyless.test", 30, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "already exists"));
  EVP_PKEY *again = load_key(at(pki, "offline/cluster-ca.key"));
  assert_int_equal(EVP_PKEY_eq(again, ck), 1);
  EVP_PKEY_free(again);
  X509_free(cca);
  X509_free(pca);
  EVP_PKEY_free(ck);
  EVP_PKEY_free(pk);
  EVP_PKEY_free(cal);
}

static void check_node(const char *role, const char *id) {
  char base[128], path[160], uri[160], want[160], buf[128];
  size_t len;
  snprintf(base, sizeof base, "nodes/%s-%s", role, id);
  snprintf(path, sizeof path, "%s.crt", base);
  X509 *x = load_cert(at(pki, path));
  snprintf(path, sizeof path, "%s.key", base);
  EVP_PKEY *k = load_key(at(pki, path));
  assert_int_equal(mode_of(at(pki, path)), 0600);
  assert_int_equal(X509_check_private_key(x, k), 1);
  /* Exactly one keyless:// URI, naming this role and id. */
  assert_int_equal(keyless_uris(x, uri, sizeof uri), 1);
  snprintf(want, sizeof want, "keyless://%s/%s", role, id);
  assert_string_equal(uri, want);
  snprintf(want, sizeof want, "keyless %s %s", role, id);
  assert_string_equal(subject_entry(x, NID_commonName, buf, sizeof buf), want);
  assert_string_equal(subject_entry(x, NID_organizationName, buf, sizeof buf), "keyless DEVELOPMENT");
  /* EC P-256, SHA-256, not a CA, digitalSignature only; EKU by role. */
  assert_int_equal(EVP_PKEY_get_group_name(k, buf, sizeof buf, &len), 1);
  assert_string_equal(buf, "prime256v1");
  assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
  assert_int_equal(X509_check_ca(x), 0);
  assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
  bool admin = strcmp(role, "admin") == 0;
  assert_int_equal(X509_get_extended_key_usage(x), admin ? XKU_SSL_CLIENT : (XKU_SSL_SERVER | XKU_SSL_CLIENT));
  /* Node roles answer on loopback for https clients that check host names. */
  assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL) == 1, !admin);
  assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0) == 1, !admin);
  assert_int_equal(X509_check_ip_asc(x, "::1", 0) == 1, !admin);
  assert_int_not_equal(X509_check_host(x, "example.org", 0, 0, NULL), 1);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void test_identity(void **state) {
  (void)state;
  check_node("core", "1");
  check_node("core", "2");
  check_node("core", "3");
  check_node("aggregator", "1");
  check_node("gateway", "1");
  check_node("extender", "1");
  check_node("admin", "operator");
  /* Serials differ and the next one is on record. */
  X509 *a = load_cert(at(pki, "nodes/core-1.crt")), *b = load_cert(at(pki, "nodes/core-2.crt"));
  assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
  X509_free(a);
  X509_free(b);
}

static void test_chain(void **state) {
  (void)state;
  keep(ca, pki, "cluster-ca.crt");
  keep(crl, pki, "crl.pem");
  assert_int_equal(verify(ca, at(pki, "nodes/core-1.crt"), NULL, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  assert_int_equal(verify(ca, at(pki, "nodes/core-1.crt"), NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  assert_int_equal(verify(ca, at(pki, "nodes/gateway-1.crt"), crl, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  /* admin: a client, never a server. */
  assert_int_equal(verify(ca, at(pki, "nodes/admin-operator.crt"), crl, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  assert_int_equal(verify(ca, at(pki, "nodes/admin-operator.crt"), NULL, X509_PURPOSE_SSL_SERVER),
                   X509_V_ERR_INVALID_PURPOSE);
  /* Another PKI's cluster CA, and the publications CA, do not vouch for these nodes. */
  assert_int_not_equal(verify(at(other, "cluster-ca.crt"), at(pki, "nodes/core-1.crt"), NULL, X509_PURPOSE_SSL_CLIENT),
                       X509_V_OK);
  assert_int_not_equal(verify(ca, at(other, "nodes/core-1.crt"), NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  assert_int_not_equal(verify(at(pki, "ca.crt"), at(pki, "nodes/core-1.crt"), NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  /* The signing certificates are not node certificates. */
  assert_int_not_equal(verify(ca, at(pki, "calendar-auth.crt"), NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
}

static void test_extra_names(void **state) {
  (void)state;
  kl_err_t e = {0};
  const char *dns[] = {"node7.example.test"}, *ips[] = {"10.1.2.3", "fe80::7"};
  kl_devpki_issue_opts_t o = {0};
  o.dns = dns;
  o.n_dns = 1;
  o.ips = ips;
  o.n_ips = 2;
  o.name = "gw7";
  kl_devpki_issued_t out;
  if (kl_devpki_issue(pki, "gateway", "7", &o, &out, &e)) fail_msg("%s", e.msg);
  assert_string_equal(out.crt, at(pki, "nodes/gw7.crt"));
  assert_string_equal(out.key, at(pki, "nodes/gw7.key"));
  assert_false(present(at(pki, "nodes/gateway-7.crt")));
  X509 *x = load_cert(out.crt);
  char uri[128], hex[64];
  assert_int_equal(keyless_uris(x, uri, sizeof uri), 1);
  assert_string_equal(uri, "keyless://gateway/7");
  assert_int_equal(X509_check_host(x, "node7.example.test", 0, 0, NULL), 1);
  assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
  assert_int_equal(X509_check_ip_asc(x, "10.1.2.3", 0), 1);
  assert_int_equal(X509_check_ip_asc(x, "fe80::7", 0), 1);
  assert_int_not_equal(X509_check_ip_asc(x, "10.1.2.4", 0), 1);
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *h = BN_bn2hex(bn);
  snprintf(hex, sizeof hex, "%s", h);
  assert_string_equal(out.serial, hex);
  OPENSSL_free(h);
  BN_free(bn);
  X509_free(x);
  /* A comma cannot smuggle in another name (another URI: another identity). */
  const char *bad_dns[] = {"a.test,URI:keyless://admin/root"};
  o.dns = bad_dns;
  o.n_dns = 1;
  o.n_ips = 0;
  o.name = NULL;
  assert_int_equal(kl_devpki_issue(pki, "gateway", "8", &o, NULL, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "a.test,URI"));
  const char *bad_ip[] = {"300.1.2.3"};
  o.n_dns = 0;
  o.ips = bad_ip;
  o.n_ips = 1;
  assert_int_equal(kl_devpki_issue(pki, "gateway", "8", &o, NULL, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "300.1.2.3"));
  assert_false(present(at(pki, "nodes/gateway-8.crt")));
}

static void test_revoke(void **state) {
  (void)state;
  kl_err_t e = {0};
  bool already = true;
  keep(ca, pki, "cluster-ca.crt");
  keep(crl, pki, "crl.pem");
  if (kl_devpki_issue_nodes(pki, "extender:r1,extender:r2", 0, &e)) fail_msg("%s", e.msg);
  keep(r1, pki, "nodes/extender-r1.crt");
  keep(r2, pki, "nodes/extender-r2.crt");
  assert_int_equal(verify(ca, r1, crl, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  if (kl_devpki_revoke(pki, r1, &already, &e)) fail_msg("%s", e.msg);
  assert_false(already);
  /* Revoked through the CRL; without CRL checking the chain alone still holds. */
  assert_int_equal(verify(ca, r1, crl, X509_PURPOSE_SSL_SERVER), X509_V_ERR_CERT_REVOKED);
  assert_int_equal(verify(ca, r1, NULL, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  assert_int_equal(verify(ca, r2, crl, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  X509_CRL *c = load_crl(crl);
  X509 *x = load_cert(r1);
  X509_REVOKED *rv = NULL;
  assert_int_equal(X509_CRL_get0_by_serial(c, &rv, X509_get0_serialNumber(x)), 1);
  assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c)), 1);
  assert_int_equal(days_between(X509_CRL_get0_lastUpdate(c), X509_CRL_get0_nextUpdate(c)), 30);
  X509_CRL_free(c);
  X509_free(x);
  /* Again: nothing added, the CRL still names it once. */
  if (kl_devpki_revoke(pki, r1, &already, &e)) fail_msg("%s", e.msg);
  assert_true(already);
  c = load_crl(crl);
  assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c)), 1);
  X509_CRL_free(c);
  /* Issuing rewrites the CRL and keeps the revoked serial in it. */
  if (kl_devpki_issue(pki, "extender", "r3", NULL, NULL, &e)) fail_msg("%s", e.msg);
  assert_int_equal(verify(ca, r1, crl, X509_PURPOSE_SSL_SERVER), X509_V_ERR_CERT_REVOKED);
  /* Not from this CA, or the CA itself: refused, and the list is unchanged. */
  assert_int_equal(kl_devpki_revoke(pki, at(other, "nodes/core-1.crt"), NULL, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "not issued by the cluster CA"));
  assert_int_equal(kl_devpki_revoke(pki, at(pki, "calendar-auth.crt"), NULL, &e), KL_EPKI);
  assert_int_equal(kl_devpki_revoke(pki, ca, NULL, &e), KL_EINVAL);
  c = load_crl(crl);
  assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c)), 1);
  X509_CRL_free(c);
  /* Another PKI's CRL is not our CA's: with CRL checking it leaves nothing verifiable. */
  assert_int_equal(kl_devpki_crl(other, &e), 0);
  assert_int_not_equal(verify(ca, r2, at(other, "crl.pem"), X509_PURPOSE_SSL_SERVER), X509_V_OK);
}

static void test_validity(void **state) {
  (void)state;
  kl_err_t e = {0};
  int64_t now = (int64_t)time(NULL);
  keep(ca, pki, "cluster-ca.crt");
  kl_devpki_issue_opts_t o = {0};
  o.not_before = now - 3 * 86400;
  o.not_after = now - 86400;
  if (kl_devpki_issue(pki, "aggregator", "expired", &o, NULL, &e)) fail_msg("%s", e.msg);
  assert_int_equal(verify(ca, at(pki, "nodes/aggregator-expired.crt"), NULL, X509_PURPOSE_SSL_CLIENT),
                   X509_V_ERR_CERT_HAS_EXPIRED);
  o.not_before = now + 86400;
  o.not_after = now + 2 * 86400;
  if (kl_devpki_issue(pki, "aggregator", "future", &o, NULL, &e)) fail_msg("%s", e.msg);
  assert_int_equal(verify(ca, at(pki, "nodes/aggregator-future.crt"), NULL, X509_PURPOSE_SSL_CLIENT),
                   X509_V_ERR_CERT_NOT_YET_VALID);
  o.not_before = now;
  o.not_after = now - 1;
  assert_int_equal(kl_devpki_issue(pki, "aggregator", "backwards", &o, NULL, &e), KL_ERANGE);
  assert_false(present(at(pki, "nodes/aggregator-backwards.crt")));
  /* --days: counted in days, never past the CA (30 days here). */
  o = (kl_devpki_issue_opts_t){0};
  o.days = 10;
  if (kl_devpki_issue(pki, "aggregator", "d10", &o, NULL, &e)) fail_msg("%s", e.msg);
  o.days = 365;
  if (kl_devpki_issue(pki, "aggregator", "d365", &o, NULL, &e)) fail_msg("%s", e.msg);
  X509 *x = load_cert(at(pki, "nodes/aggregator-d10.crt")), *y = load_cert(at(pki, "nodes/aggregator-d365.crt"));
  X509 *c = load_cert(ca);
  assert_int_equal(days_between(X509_get0_notBefore(x), X509_get0_notAfter(x)), 10);
  assert_true(ASN1_TIME_compare(X509_get0_notAfter(y), X509_get0_notAfter(c)) <= 0);
  assert_true(days_between(X509_get0_notBefore(y), X509_get0_notAfter(y)) >= 29);
  X509_free(x);
  X509_free(y);
  X509_free(c);
}

static void test_refusals(void **state) {
  (void)state;
  kl_err_t e = {0};
  struct {
    const char *role, *id, *needle;
  } bad[] = {
      {"router", "1", "router"},   {"Core", "1", "Core"},         {"core", "one", "one"},   {"core", "01", "01"},
      {"core", "0", "'0'"},        {"gateway", "a/b", "a/b"},     {"gateway", "", "gateway id ''"},
      {"gateway", "a b", "a b"},   {"admin", "x:y", "x:y"},
      {"gateway", "0123456789012345678901234567890123456789012345678901234567890123", "1 to 63"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kl_err_clear(&e);
    if (kl_devpki_issue(pki, bad[i].role, bad[i].id, NULL, NULL, &e) != KL_EINVAL)
      fail_msg("%s/%s was not refused", bad[i].role, bad[i].id);
    if (strstr(e.msg, bad[i].needle) == NULL) fail_msg("%s/%s: message '%s' does not name it", bad[i].role, bad[i].id, e.msg);
  }
  /* 63 characters is fine: the URI names it whole, the CN is cut to X.520's 64. */
  const char *longid = "012345678901234567890123456789012345678901234567890123456789012";
  char uri[128], cn[128];
  if (kl_devpki_issue(pki, "aggregator", longid, NULL, NULL, &e)) fail_msg("%s", e.msg);
  X509 *x = load_cert(at(pki, "nodes/aggregator-012345678901234567890123456789012345678901234567890123456789012.crt"));
  assert_int_equal(keyless_uris(x, uri, sizeof uri), 1);
  assert_string_equal(uri, "keyless://aggregator/012345678901234567890123456789012345678901234567890123456789012");
  assert_string_equal(subject_entry(x, NID_commonName, cn, sizeof cn),
                      "keyless aggregator 012345678901234567890123456789012345678901...");
  assert_int_equal(strlen(cn), 64);
  X509_free(x);
  /* File names stay inside DIR/nodes. */
  kl_devpki_issue_opts_t o = {0};
  o.name = "../escape";
  assert_int_equal(kl_devpki_issue(pki, "gateway", "9", &o, NULL, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "../escape"));
  assert_false(present(at(pki, "escape.crt")));
  /* Node lists are checked whole before anything is issued. */
  assert_int_equal(kl_devpki_check_nodes("core:1,gateway:2", &e), 0);
  assert_int_equal(kl_devpki_issue_nodes(pki, "gateway:n1,bogus:2", 0, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "bogus"));
  assert_false(present(at(pki, "nodes/gateway-n1.crt")));
  assert_int_equal(kl_devpki_check_nodes("core:1,core:1", &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "twice"));
  assert_int_equal(kl_devpki_check_nodes("core:1,", &e), KL_EINVAL);
  assert_int_equal(kl_devpki_check_nodes("core", &e), KL_EINVAL);
  /* A directory without a cluster CA (an older PKI, or none) says so. */
  assert_int_equal(kl_devpki_issue(tmp, "core", "1", NULL, NULL, &e), KL_ENOTFOUND);
  assert_non_null(strstr(e.msg, "no cluster CA"));
}

static void test_never_replaces(void **state) {
  (void)state;
  kl_err_t e = {0};
  size_t n1, n2, k1, k2, s1, s2;
  uint8_t *crt = tu_read_vector(at(pki, "nodes/core-1.crt"), &n1), *key = tu_read_vector(at(pki, "nodes/core-1.key"), &k1);
  uint8_t *ser = tu_read_vector(at(pki, "offline/serial"), &s1);
  assert_int_equal(kl_devpki_issue(pki, "core", "1", NULL, NULL, &e), KL_ESTATE);
  assert_non_null(strstr(e.msg, "core-1.crt"));
  assert_int_equal(kl_devpki_issue_nodes(pki, "core:9,core:1", 0, &e), KL_ESTATE);
  assert_false(present(at(pki, "nodes/core-9.crt")));
  /* Only a key left behind also blocks the name. */
  FILE *f = fopen(at(pki, "nodes/orphan.key"), "w");
  assert_non_null(f);
  fclose(f);
  kl_devpki_issue_opts_t o = {0};
  o.name = "orphan";
  assert_int_equal(kl_devpki_issue(pki, "core", "4", &o, NULL, &e), KL_ESTATE);
  assert_false(present(at(pki, "nodes/orphan.crt")));
  uint8_t *crt2 = tu_read_vector(at(pki, "nodes/core-1.crt"), &n2), *key2 = tu_read_vector(at(pki, "nodes/core-1.key"), &k2);
  uint8_t *ser2 = tu_read_vector(at(pki, "offline/serial"), &s2);
  assert_memory_equal(crt, crt2, n1 < n2 ? n1 : n2);
  assert_int_equal(n1, n2);
  assert_int_equal(k1, k2);
  assert_memory_equal(key, key2, k1);
  assert_int_equal(s1, s2); /* no serial spent on a refusal */
  assert_memory_equal(ser, ser2, s1);
  free(crt);
  free(crt2);
  free(key);
  free(key2);
  free(ser);
  free(ser2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout),   cmocka_unit_test(test_identity), cmocka_unit_test(test_chain),
      cmocka_unit_test(test_extra_names), cmocka_unit_test(test_revoke), cmocka_unit_test(test_validity),
      cmocka_unit_test(test_refusals), cmocka_unit_test(test_never_replaces),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
