/* Shared helpers for the TLS tests (test_tls.c, test_tls_server.c): a development PKI in a
 * temporary directory, node certificates issued with kl_devpki_issue, certificates the issue
 * API cannot make (no keyless URI, two of them, a malformed one) signed with OpenSSL by the
 * same cluster CA, and an in-memory handshake between two sessions. Everything fails the test
 * on error, so it must be called from the main (cmocka) thread. */
#ifndef KL_TLSTEST_H
#define KL_TLSTEST_H

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/pki.h"
#include "keyless/tls.h"
#include "testutil.h"

/* Path of a file in a directory, in one of 16 rotating buffers. */
static inline const char *tt_at(const char *dir, const char *rel) {
  static char buf[16][600];
  static int k;
  k = (k + 1) % 16;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
  return buf[k];
}

/* A new development PKI in dir with the given node list ("core:1,core:2"; NULL: none). */
static inline void tt_pki(const char *dir, const char *nodes) {
  kl_err_t e = {0};
  if (kl_devpki_create(dir, "publications@keyless.test", 30, &e)) fail_msg("devpki create %s: %s", dir, e.msg);
  if (nodes && kl_devpki_issue_nodes(dir, nodes, 0, &e)) fail_msg("devpki issue %s: %s", nodes, e.msg);
}

/* Issues ROLE/ID as DIR/nodes/NAME.{crt,key}, valid [nb, na] (0, 0: the defaults). */
static inline void tt_issue(const char *dir, const char *role, const char *id, const char *name, int64_t nb,
                            int64_t na, kl_devpki_issued_t *out) {
  kl_err_t e = {0};
  kl_devpki_issue_opts_t o = {0};
  o.name = name;
  o.not_before = nb;
  o.not_after = na;
  if (kl_devpki_issue(dir, role, id, &o, out, &e)) fail_msg("devpki issue %s/%s: %s", role, id, e.msg);
}

static inline void tt_copy(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  if (in == NULL || out == NULL) fail_msg("cannot copy %s to %s", from, to);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n) fail_msg("cannot write %s", to);
  fclose(in);
  if (fclose(out) != 0) fail_msg("cannot write %s", to);
}

static inline void tt_write(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) fail_msg("cannot write %s", path);
}

/* A certificate signed by DIR's cluster CA (read from DIR/offline/cluster-ca.key) whose
 * subjectAltName is `san` (OpenSSL config syntax, e.g. "DNS:localhost,URI:https://x"; NULL:
 * no SAN at all), with the given serial, written to crt and key. For what kl_devpki_issue
 * refuses to make. */
static inline void tt_make_cert(const char *dir, const char *san, long serial, const char *crt, const char *key) {
  FILE *f = fopen(tt_at(dir, "cluster-ca.crt"), "r");
  if (f == NULL) fail_msg("no cluster CA in %s", dir);
  X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  f = fopen(tt_at(dir, "offline/cluster-ca.key"), "r");
  if (f == NULL) fail_msg("no cluster CA key in %s", dir);
  EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  assert_non_null(ca);
  assert_non_null(cakey);
  assert_non_null(k);
  assert_non_null(x);
  assert_int_equal(X509_set_version(x, 2), 1);
  assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
  assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
  assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
  assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
  assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                              (const unsigned char *)"keyless test without identity", -1, -1, 0),
                   1);
  assert_int_equal(X509_set_pubkey(x, k), 1);
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
  const struct {
    int nid;
    const char *value;
  } exts[] = {{NID_basic_constraints, "CA:FALSE"},
              {NID_key_usage, "critical,digitalSignature"},
              {NID_ext_key_usage, "serverAuth,clientAuth"},
              {NID_subject_alt_name, san}};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    if (exts[i].value == NULL) continue;
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);
    if (ex == NULL) fail_msg("extension %s", exts[i].value);
    assert_int_equal(X509_add_ext(x, ex, -1), 1);
    X509_EXTENSION_free(ex);
  }
  assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);
  f = fopen(crt, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_X509(f, x), 1);
  fclose(f);
  f = fopen(key, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
  X509_free(x);
  X509_free(ca);
  EVP_PKEY_free(k);
  EVP_PKEY_free(cakey);
}

/* A context or a failed test. ca/cert/key/crl may be NULL. */
static inline kl_tls_ctx_t *tt_ctx(kl_tls_kind_t kind, const char *ca, const char *cert, const char *key,
                                   const char *crl) {
  kl_err_t e = {0};
  kl_tls_ctx_t *t = NULL;
  kl_tls_files_t f = {ca, cert, key, crl};
  if (kl_tls_ctx_create(kind, &f, &t, &e)) fail_msg("context for %s: %s", cert ? cert : "(no cert)", e.msg);
  assert_non_null(t);
  return t;
}

/* A mutual context for the node certificate DIR/nodes/NAME.{crt,key} under DIR's cluster CA. */
static inline kl_tls_ctx_t *tt_node_ctx(const char *dir, const char *name, const char *crl) {
  char crt[600], key[600], ca[600];
  snprintf(crt, sizeof crt, "%s/nodes/%s.crt", dir, name);
  snprintf(key, sizeof key, "%s/nodes/%s.key", dir, name);
  snprintf(ca, sizeof ca, "%s/cluster-ca.crt", dir);
  return tt_ctx(KL_TLS_MUTUAL, ca, crt, key, crl);
}

/* ---- in-memory handshake ---- */

typedef struct tt_hs {
  int srv, cli;     /* last result of each side: KL_TLS_HANDSHAKING, KL_TLS_READY or -1 */
  kl_err_t se, ce;  /* why a side failed */
  int rounds;       /* flights moved */
} tt_hs_t;

/* Moves what `from` has to send into `to`; false when there was nothing. */
static inline bool tt_move(kl_tls_session_t *from, kl_tls_session_t *to, int *to_st, kl_err_t *e) {
  size_t n = 0;
  uint8_t *p = kl_tls_session_output(from, &n);
  if (p == NULL) return false;
  *to_st = kl_tls_session_feed(to, p, n, e);
  free(p);
  return true;
}

/* Runs a handshake between a server and a client session by shuttling their output until
 * neither has anything to send or one side fails (the pump stops there, as an owner closes
 * the connection). */
static inline void tt_handshake(kl_tls_session_t *srv, kl_tls_session_t *cli, tt_hs_t *h) {
  memset(h, 0, sizeof *h);
  h->srv = kl_tls_session_start(srv, &h->se); /* harmless on a server */
  h->cli = kl_tls_session_start(cli, &h->ce);
  for (int i = 0; i < 32 && h->srv >= 0 && h->cli >= 0; i++) {
    bool moved = tt_move(cli, srv, &h->srv, &h->se);
    if (h->srv < 0) break;
    moved |= tt_move(srv, cli, &h->cli, &h->ce);
    if (!moved) break;
    h->rounds++;
  }
}

#endif
