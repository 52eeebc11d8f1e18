/* TLS contexts and memory-BIO sessions (keyless/tls.h) without sockets: a server and a client
 * session handshake by shuttling kl_tls_session_output() between them.
 *
 * Covered: a mutual handshake that shows each side the other's role, id and serial; every
 * refusal with a message naming why (a client certificate from another CA, expired,
 * not yet valid, revoked by the CRL given to the server, a role the link does not take, a
 * server with another id than the one expected, a certificate without a keyless URI or with
 * two, no client certificate on a mutual link); https (KL_TLS_HTTPS, roles 0) taking a client
 * without a certificate; plaintext both ways up to 1 MiB in pieces, close_notify and a
 * corrupted record; kl_tls_ctx_reload picking up a new certificate and CRL and keeping the old
 * material when the new files are broken; kl_peer_parse_uri; kl_tls_cert_identity;
 * kl_tls_ctx_create's refusals; kl_tls_settings_open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "keyless/log.h"
#include "keyless/tls.h"
#include "tlstest.h"

#define DAY 86400

static char tmp[256], pki[300], other[300];

static int group_setup(void **state) {
  (void)state;
  tu_mkdtemp("tls", tmp, sizeof tmp);
  snprintf(pki, sizeof pki, "%s/pki", tmp);
  snprintf(other, sizeof other, "%s/other", tmp);
  tt_pki(pki, "core:1,core:2,core:3,aggregator:1,gateway:1");
  tt_pki(other, "core:1");
  kl_log_set_level(KL_LOG_ERROR);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return tu_rmrf(tmp);
}

static const char *ca_of(const char *dir) { return tt_at(dir, "cluster-ca.crt"); }

/* Fails the test unless the message contains every needle. */
static void expect_msg(const kl_err_t *e, const char *const *needles, size_t n, int line) {
  for (size_t i = 0; i < n; i++)
    if (strstr(e->msg, needles[i]) == NULL)
      fail_msg("line %d: message \"%s\" does not name \"%s\"", line, e->msg, needles[i]);
}
#define EXPECT_MSG(e, ...)                                                \
  do {                                                                    \
    const char *const n_[] = {__VA_ARGS__};                               \
    expect_msg((e), n_, sizeof n_ / sizeof n_[0], __LINE__);              \
  } while (0)

/* One handshake between fresh sessions of two contexts. */
typedef struct pair {
  kl_tls_session_t *s, *c;
  tt_hs_t h;
} pair_t;

static void pair_run(pair_t *p, kl_tls_ctx_t *sctx, unsigned sroles, const char *sid, kl_tls_ctx_t *cctx,
                     unsigned croles, const char *cid) {
  p->s = kl_tls_session_new(sctx, true, sroles, sid);
  p->c = kl_tls_session_new(cctx, false, croles, cid);
  assert_non_null(p->s);
  assert_non_null(p->c);
  tt_handshake(p->s, p->c, &p->h);
}

static void pair_free(pair_t *p) {
  kl_tls_session_free(p->s);
  kl_tls_session_free(p->c);
}

/* The server refused the client: -1, not ready, no peer, a message naming the reason. */
static void expect_server_refused(pair_t *p, int code) {
  if (p->h.srv != -1) fail_msg("the server took the client (state %d, client %d: %s)", p->h.srv, p->h.cli, p->h.ce.msg);
  assert_int_equal(p->h.se.code, code);
  assert_false(kl_tls_session_ready(p->s));
  assert_null(kl_tls_session_peer(p->s));
  /* A failed session stays failed. */
  kl_err_t e = {0};
  assert_int_equal(kl_tls_session_feed(p->s, NULL, 0, &e), -1);
  assert_int_equal(e.code, KL_ESTATE);
}

static void expect_client_refused(pair_t *p, int code) {
  if (p->h.cli != -1) fail_msg("the client took the server (state %d, server %d: %s)", p->h.cli, p->h.srv, p->h.se.msg);
  assert_int_equal(p->h.ce.code, code);
  assert_false(kl_tls_session_ready(p->c));
  assert_null(kl_tls_session_peer(p->c));
  /* The server never saw the client's Finished: it is not ready either. */
  assert_false(kl_tls_session_ready(p->s));
}

/* ---- the happy path ---- */

static void test_handshake_ok(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *cctx = tt_node_ctx(pki, "core-2", NULL);
  const kl_peer_t *self = kl_tls_ctx_self(sctx);
  assert_int_equal(self->role, KL_ROLE_CORE);
  assert_string_equal(self->id, "1");
  kl_peer_t want_s, want_c;
  kl_err_t e = {0};
  assert_int_equal(kl_tls_cert_identity(tt_at(pki, "nodes/core-1.crt"), &want_s, &e), 0);
  assert_int_equal(kl_tls_cert_identity(tt_at(pki, "nodes/core-2.crt"), &want_c, &e), 0);
  assert_string_equal(self->serial, want_s.serial);
  assert_string_not_equal(want_s.serial, want_c.serial);

  pair_t p;
  p.s = kl_tls_session_new(sctx, true, KL_ROLE_CORE, NULL);
  p.c = kl_tls_session_new(cctx, false, KL_ROLE_CORE, "1");
  assert_non_null(p.s);
  assert_non_null(p.c);
  /* Nothing is ready or authenticated before the handshake. */
  assert_false(kl_tls_session_ready(p.s));
  assert_null(kl_tls_session_peer(p.c));
  assert_int_equal(kl_tls_session_write(p.c, "x", 1, &e), -1);
  assert_int_equal(e.code, KL_ESTATE);
  kl_tls_session_free(p.c); /* a failed write poisons the session: start over */
  p.c = kl_tls_session_new(cctx, false, KL_ROLE_CORE, "1");
  /* The sessions outlive their contexts' last references. */
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
  tt_handshake(p.s, p.c, &p.h);
  if (p.h.srv != KL_TLS_READY || p.h.cli != KL_TLS_READY)
    fail_msg("handshake: server %d (%s), client %d (%s)", p.h.srv, p.h.se.msg, p.h.cli, p.h.ce.msg);
  assert_true(kl_tls_session_ready(p.s));
  assert_true(kl_tls_session_ready(p.c));
  const kl_peer_t *ps = kl_tls_session_peer(p.s), *pc = kl_tls_session_peer(p.c);
  assert_non_null(ps);
  assert_non_null(pc);
  assert_int_equal(ps->role, KL_ROLE_CORE);
  assert_string_equal(ps->id, "2");
  assert_string_equal(ps->serial, want_c.serial);
  assert_int_equal(pc->role, KL_ROLE_CORE);
  assert_string_equal(pc->id, "1");
  assert_string_equal(pc->serial, want_s.serial);
  /* A little data, after the contexts are gone. */
  assert_int_equal(kl_tls_session_write(p.c, "ping", 4, &e), 0);
  uint8_t buf[16];
  bool closed = true;
  assert_true(tt_move(p.c, p.s, &p.h.srv, &e));
  assert_int_equal(kl_tls_session_read(p.s, buf, sizeof buf, &closed, &e), 4);
  assert_false(closed);
  assert_memory_equal(buf, "ping", 4);
  pair_free(&p);
}

/* A role mask takes any of its roles, and a server's expected id is checked too. */
static void test_role_mask(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *agg = tt_node_ctx(pki, "aggregator-1", NULL),
               *gw = tt_node_ctx(pki, "gateway-1", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE | KL_ROLE_AGGREGATOR, NULL, agg, KL_ROLE_CORE, NULL);
  assert_int_equal(p.h.srv, KL_TLS_READY);
  assert_int_equal(kl_tls_session_peer(p.s)->role, KL_ROLE_AGGREGATOR);
  assert_string_equal(kl_tls_session_peer(p.s)->id, "1");
  pair_free(&p);
  /* the same mask refuses a gateway */
  pair_run(&p, sctx, KL_ROLE_CORE | KL_ROLE_AGGREGATOR, NULL, gw, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.se, "role", "gateway");
  pair_free(&p);
  /* a server-side expected id */
  pair_run(&p, sctx, KL_ROLE_AGGREGATOR, "1", agg, KL_ROLE_CORE, NULL);
  assert_int_equal(p.h.srv, KL_TLS_READY);
  pair_free(&p);
  pair_run(&p, sctx, KL_ROLE_AGGREGATOR, "2", agg, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.se, "aggregator/1", "aggregator/2");
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(agg);
  kl_tls_ctx_unref(gw);
}

/* ---- refusals ---- */

static void test_refuse_other_ca(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL);
  /* the client's certificate is from another CA (it trusts ours, so it takes the server) */
  kl_tls_ctx_t *cctx =
      tt_ctx(KL_TLS_MUTUAL, ca_of(pki), tt_at(other, "nodes/core-1.crt"), tt_at(other, "nodes/core-1.key"), NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.se, "peer certificate", "issuer");
  pair_free(&p);
  kl_tls_ctx_unref(cctx);
  /* the other way round: a server from another CA, refused by the client */
  cctx = tt_node_ctx(pki, "core-2", NULL);
  kl_tls_ctx_t *octx =
      tt_ctx(KL_TLS_MUTUAL, ca_of(pki), tt_at(other, "nodes/core-1.crt"), tt_at(other, "nodes/core-1.key"), NULL);
  pair_run(&p, octx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "1");
  expect_client_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.ce, "peer certificate", "issuer");
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
  kl_tls_ctx_unref(octx);
}

static void test_refuse_expired(void **state) {
  (void)state;
  int64_t now = (int64_t)time(NULL);
  tt_issue(pki, "core", "4", "expired", now - 3 * DAY, now - DAY, NULL);
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *old = tt_node_ctx(pki, "expired", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, old, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.se, "expired");
  pair_free(&p);
  /* an expired server certificate, refused by the client */
  kl_tls_ctx_t *cctx = tt_node_ctx(pki, "core-2", NULL);
  pair_run(&p, old, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "4");
  expect_client_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.ce, "expired");
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
  kl_tls_ctx_unref(old);
}

static void test_refuse_not_yet_valid(void **state) {
  (void)state;
  int64_t now = (int64_t)time(NULL);
  tt_issue(pki, "core", "5", "future", now + DAY, now + 2 * DAY, NULL);
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *fut = tt_node_ctx(pki, "future", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, fut, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.se, "not yet valid");
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(fut);
}

static void test_refuse_revoked(void **state) {
  (void)state;
  char crl[600];
  kl_err_t e = {0};
  tt_issue(pki, "core", "6", "revoked", 0, 0, NULL);
  snprintf(crl, sizeof crl, "%s/crl.pem", pki);
  /* Before the revocation the CRL check passes: the refusal below is the revocation's. */
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", crl), *rev = tt_node_ctx(pki, "revoked", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, rev, KL_ROLE_CORE, NULL);
  if (p.h.srv != KL_TLS_READY) fail_msg("with the CRL, before revocation: %s", p.h.se.msg);
  pair_free(&p);
  if (kl_devpki_revoke(pki, tt_at(pki, "nodes/revoked.crt"), NULL, &e)) fail_msg("revoke: %s", e.msg);
  /* the open context still has the old CRL; a new one (and the old one reloaded) refuse */
  kl_tls_ctx_t *s2 = tt_node_ctx(pki, "core-1", crl);
  pair_run(&p, s2, KL_ROLE_CORE, NULL, rev, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.se, "revoked");
  pair_free(&p);
  assert_int_equal(kl_tls_ctx_reload(sctx, &e), 0);
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, rev, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EPKI);
  EXPECT_MSG(&p.h.se, "revoked");
  pair_free(&p);
  /* a certificate that is not revoked still passes the same CRL */
  kl_tls_ctx_t *ok = tt_node_ctx(pki, "core-3", NULL);
  pair_run(&p, s2, KL_ROLE_CORE, NULL, ok, KL_ROLE_CORE, NULL);
  if (p.h.srv != KL_TLS_READY) fail_msg("a valid certificate with the CRL: %s", p.h.se.msg);
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(s2);
  kl_tls_ctx_unref(rev);
  kl_tls_ctx_unref(ok);
}

static void test_refuse_role(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *agg = tt_node_ctx(pki, "aggregator-1", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, agg, KL_ROLE_CORE, "1");
  expect_server_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.se, "does not accept", "aggregator");
  pair_free(&p);
  /* a client expecting an aggregator refuses a core server */
  kl_tls_ctx_t *core2 = tt_node_ctx(pki, "core-2", NULL);
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, core2, KL_ROLE_AGGREGATOR, NULL);
  expect_client_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.ce, "does not accept", "core");
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(agg);
  kl_tls_ctx_unref(core2);
}

static void test_refuse_wrong_id(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-2", NULL), *cctx = tt_node_ctx(pki, "core-1", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "3");
  expect_client_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.ce, "core/2", "core/3");
  pair_free(&p);
  /* a prefix of the id is not the id */
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "22");
  expect_client_refused(&p, KL_EAUTH);
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
}

static void test_refuse_no_uri(void **state) {
  (void)state;
  char crt[600], key[600];
  kl_err_t e = {0};
  snprintf(crt, sizeof crt, "%s/nouri.crt", tmp);
  snprintf(key, sizeof key, "%s/nouri.key", tmp);
  /* other names, and a URI of another scheme, but no keyless:// one */
  tt_make_cert(pki, "DNS:localhost,IP:127.0.0.1,URI:https://keyless.test/core/1", 0x7001, crt, key);
  kl_peer_t who;
  assert_int_equal(kl_tls_cert_identity(crt, &who, &e), KL_ENOTFOUND);
  EXPECT_MSG(&e, "nouri.crt", "keyless://");
  /* a context may hold it (an https certificate needs none): its own identity is empty */
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *nouri = tt_ctx(KL_TLS_MUTUAL, ca_of(pki), crt, key, NULL);
  assert_int_equal(kl_tls_ctx_self(nouri)->role, 0);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, nouri, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.se, "no keyless://ROLE/ID");
  pair_free(&p);
  /* also a certificate without any subjectAltName */
  snprintf(crt, sizeof crt, "%s/nosan.crt", tmp);
  snprintf(key, sizeof key, "%s/nosan.key", tmp);
  tt_make_cert(pki, NULL, 0x7002, crt, key);
  kl_tls_ctx_t *nosan = tt_ctx(KL_TLS_MUTUAL, ca_of(pki), crt, key, NULL);
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, nosan, KL_ROLE_CORE, NULL);
  expect_server_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.se, "no keyless://ROLE/ID");
  pair_free(&p);
  /* two identities in one certificate: which one is it? refused */
  snprintf(crt, sizeof crt, "%s/two.crt", tmp);
  snprintf(key, sizeof key, "%s/two.key", tmp);
  tt_make_cert(pki, "URI:keyless://core/1,URI:keyless://core/2", 0x7003, crt, key);
  assert_int_equal(kl_tls_cert_identity(crt, &who, &e), KL_EPKI);
  EXPECT_MSG(&e, "more than one");
  kl_tls_files_t f = {ca_of(pki), crt, key, NULL};
  kl_tls_ctx_t *bad = NULL;
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &bad, &e), KL_EPKI);
  assert_null(bad);
  EXPECT_MSG(&e, "two.crt", "more than one");
  /* a malformed keyless URI in a context's own certificate is refused, naming the file */
  snprintf(crt, sizeof crt, "%s/king.crt", tmp);
  snprintf(key, sizeof key, "%s/king.key", tmp);
  tt_make_cert(pki, "URI:keyless://king/1", 0x7004, crt, key);
  f.cert = crt;
  f.key = key;
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &bad, &e), KL_EPKI);
  assert_null(bad);
  EXPECT_MSG(&e, "king.crt", "unknown role 'king'");
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(nouri);
  kl_tls_ctx_unref(nosan);
}

/* A mutual server refuses a client without a certificate. */
static void test_refuse_no_client_cert(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *anon = tt_ctx(KL_TLS_CLIENT, ca_of(pki), NULL, NULL, NULL);
  assert_int_equal(kl_tls_ctx_self(anon)->role, 0);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, anon, 0, NULL);
  expect_server_refused(&p, KL_EAUTH);
  EXPECT_MSG(&p.h.se, "certificate");
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(anon);
}

/* https: no client certificate is asked; the client still checks the server. */
static void test_https_anonymous_client(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx =
      tt_ctx(KL_TLS_HTTPS, NULL, tt_at(pki, "nodes/gateway-1.crt"), tt_at(pki, "nodes/gateway-1.key"), NULL);
  kl_tls_ctx_t *anon = tt_ctx(KL_TLS_CLIENT, ca_of(pki), NULL, NULL, NULL);
  pair_t p;
  pair_run(&p, sctx, 0, NULL, anon, 0, NULL);
  if (p.h.srv != KL_TLS_READY || p.h.cli != KL_TLS_READY)
    fail_msg("https: server %d (%s), client %d (%s)", p.h.srv, p.h.se.msg, p.h.cli, p.h.ce.msg);
  const kl_peer_t *ps = kl_tls_session_peer(p.s), *pc = kl_tls_session_peer(p.c);
  assert_non_null(ps);
  assert_int_equal(ps->role, 0);
  assert_string_equal(ps->id, "");
  assert_int_equal(pc->role, KL_ROLE_GATEWAY);
  assert_string_equal(pc->id, "1");
  /* plaintext works both ways (the server's session tickets are in the client's input) */
  kl_err_t e = {0};
  uint8_t buf[64];
  bool closed;
  assert_int_equal(kl_tls_session_write(p.c, "GET / HTTP/1.1\r\n\r\n", 18, &e), 0);
  assert_true(tt_move(p.c, p.s, &p.h.srv, &e));
  assert_int_equal(kl_tls_session_read(p.s, buf, sizeof buf, &closed, &e), 18);
  assert_int_equal(kl_tls_session_write(p.s, "HTTP/1.1 200 OK\r\n", 17, &e), 0);
  assert_true(tt_move(p.s, p.c, &p.h.cli, &e));
  assert_int_equal(kl_tls_session_read(p.c, buf, sizeof buf, &closed, &e), 17);
  assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
  pair_free(&p);
  /* a client that presents a certificate anyway is not asked for it: no identity */
  kl_tls_ctx_t *node = tt_node_ctx(pki, "core-2", NULL);
  pair_run(&p, sctx, 0, NULL, node, KL_ROLE_GATEWAY, "1");
  assert_int_equal(p.h.srv, KL_TLS_READY);
  assert_int_equal(kl_tls_session_peer(p.s)->role, 0);
  pair_free(&p);
  /* an https client that does not trust the server's CA refuses it */
  kl_tls_ctx_t *stranger = tt_ctx(KL_TLS_CLIENT, ca_of(other), NULL, NULL, NULL);
  pair_run(&p, sctx, 0, NULL, stranger, 0, NULL);
  expect_client_refused(&p, KL_EPKI);
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(anon);
  kl_tls_ctx_unref(node);
  kl_tls_ctx_unref(stranger);
}

/* ---- plaintext ---- */

static uint8_t pattern(size_t i, unsigned salt) { return (uint8_t)(i * 31u + (i >> 9) + salt); }

/* Sends n bytes from a to b: written in pieces of varying size, the ciphertext fed in chunks
 * of `chunk` bytes, the plaintext read in reads of at most `rcap`. Returns what b read. */
static uint8_t *transfer(kl_tls_session_t *a, kl_tls_session_t *b, size_t n, unsigned salt, size_t chunk, size_t rcap) {
  kl_err_t e = {0};
  uint8_t *src = malloc(n), *dst = malloc(n + 1), *rbuf = malloc(rcap);
  assert_non_null(src);
  assert_non_null(dst);
  assert_non_null(rbuf);
  for (size_t i = 0; i < n; i++) src[i] = pattern(i, salt);
  size_t sent = 0, got = 0, piece = 1;
  while (sent < n || got < n) {
    if (sent < n) {
      size_t k = piece < n - sent ? piece : n - sent;
      if (kl_tls_session_write(a, src + sent, k, &e)) fail_msg("write: %s", e.msg);
      sent += k;
      piece = piece * 3 + 7;
      if (piece > 100000) piece = 1;
    }
    size_t clen = 0;
    uint8_t *c = kl_tls_session_output(a, &clen);
    for (size_t off = 0; off < clen; off += chunk) {
      size_t k = chunk < clen - off ? chunk : clen - off;
      if (kl_tls_session_feed(b, c + off, k, &e) != KL_TLS_READY) fail_msg("feed: %s", e.msg);
      for (;;) {
        bool closed = true;
        long r = kl_tls_session_read(b, rbuf, rcap, &closed, &e);
        if (r < 0) fail_msg("read: %s", e.msg);
        assert_false(closed);
        if (r == 0) break;
        if (got + (size_t)r > n) fail_msg("read %zu bytes more than were sent", got + (size_t)r - n);
        memcpy(dst + got, rbuf, (size_t)r);
        got += (size_t)r;
      }
    }
    free(c);
    if (sent == n && clen == 0 && got < n) fail_msg("only %zu of %zu bytes arrived", got, n);
  }
  assert_memory_equal(dst, src, n);
  free(src);
  free(rbuf);
  return dst;
}

static void test_plaintext(void **state) {
  (void)state;
  kl_tls_ctx_t *sctx = tt_node_ctx(pki, "core-1", NULL), *cctx = tt_node_ctx(pki, "core-2", NULL);
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "1");
  assert_int_equal(p.h.srv, KL_TLS_READY);
  assert_int_equal(p.h.cli, KL_TLS_READY);
  /* small, both ways */
  free(transfer(p.c, p.s, 5, 1, 4096, 4096));
  free(transfer(p.s, p.c, 7, 2, 4096, 4096));
  /* 1 MiB each way: ciphertext in odd-sized chunks (records split across feeds), small reads */
  free(transfer(p.c, p.s, 1u << 20, 3, 1000, 4096));
  free(transfer(p.s, p.c, 1u << 20, 4, 16411, 777));
  /* a one-byte read buffer, a one-byte feed */
  free(transfer(p.c, p.s, 300, 5, 1, 1));
  /* nothing buffered: 0, not an error */
  kl_err_t e = {0};
  uint8_t b[8];
  bool closed = true;
  assert_int_equal(kl_tls_session_read(p.s, b, sizeof b, &closed, &e), 0);
  assert_false(closed);
  assert_null(kl_tls_session_output(p.s, &(size_t){0}));
  /* close_notify: the peer reads "closed" */
  kl_tls_session_shutdown(p.c);
  assert_true(tt_move(p.c, p.s, &p.h.srv, &e));
  assert_int_equal(kl_tls_session_read(p.s, b, sizeof b, &closed, &e), 0);
  assert_true(closed);
  pair_free(&p);

  /* a corrupted record is a fatal read error */
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "1");
  assert_int_equal(p.h.srv, KL_TLS_READY);
  assert_int_equal(kl_tls_session_write(p.c, "attack at dawn", 14, &e), 0);
  size_t n = 0;
  uint8_t *c = kl_tls_session_output(p.c, &n);
  assert_non_null(c);
  assert_true(n > 20);
  c[n - 3] ^= 0x40;
  assert_int_equal(kl_tls_session_feed(p.s, c, n, &e), KL_TLS_READY);
  free(c);
  kl_err_clear(&e);
  assert_int_equal(kl_tls_session_read(p.s, b, sizeof b, &closed, &e), -1);
  assert_true(e.code != 0);
  assert_true(e.msg[0] != 0);
  assert_false(kl_tls_session_ready(p.s));
  /* and so is garbage in place of a handshake */
  kl_tls_session_t *s = kl_tls_session_new(sctx, true, KL_ROLE_CORE, NULL);
  static const uint8_t junk[] = "\0\0\0\x05hello, this is not TLS";
  kl_err_clear(&e);
  assert_int_equal(kl_tls_session_feed(s, junk, sizeof junk, &e), -1);
  assert_true(e.msg[0] != 0);
  kl_tls_session_free(s);
  pair_free(&p);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
}

/* ---- reload ---- */

/* The serial the client sees from a fresh session on sctx. */
static void served_serial(kl_tls_ctx_t *sctx, kl_tls_ctx_t *cctx, char *out, size_t cap) {
  pair_t p;
  pair_run(&p, sctx, KL_ROLE_CORE, NULL, cctx, KL_ROLE_CORE, "1");
  if (p.h.cli != KL_TLS_READY || p.h.srv != KL_TLS_READY)
    fail_msg("handshake: server %d (%s), client %d (%s)", p.h.srv, p.h.se.msg, p.h.cli, p.h.ce.msg);
  snprintf(out, cap, "%s", kl_tls_session_peer(p.c)->serial);
  pair_free(&p);
}

static void test_reload(void **state) {
  (void)state;
  char dir[400], crt[500], key[500], serial[48];
  kl_devpki_issued_t a, b;
  kl_err_t e = {0};
  snprintf(dir, sizeof dir, "%s/reload", tmp);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(crt, sizeof crt, "%s/node.crt", dir);
  snprintf(key, sizeof key, "%s/node.key", dir);
  tt_issue(pki, "core", "1", "reload-a", 0, 0, &a);
  tt_issue(pki, "core", "1", "reload-b", 0, 0, &b);
  assert_string_not_equal(a.serial, b.serial);
  tt_copy(a.crt, crt);
  tt_copy(a.key, key);
  kl_tls_ctx_t *sctx = tt_ctx(KL_TLS_MUTUAL, ca_of(pki), crt, key, NULL), *cctx = tt_node_ctx(pki, "core-2", NULL);
  served_serial(sctx, cctx, serial, sizeof serial);
  assert_string_equal(serial, a.serial);
  assert_string_equal(kl_tls_ctx_self(sctx)->serial, a.serial);
  /* a session opened before the reload keeps the old certificate */
  kl_tls_session_t *before = kl_tls_session_new(sctx, true, KL_ROLE_CORE, NULL);
  assert_non_null(before);

  /* new files at the same paths: a new session presents the new serial */
  tt_copy(b.crt, crt);
  tt_copy(b.key, key);
  if (kl_tls_ctx_reload(sctx, &e)) fail_msg("reload: %s", e.msg);
  assert_string_equal(kl_tls_ctx_self(sctx)->serial, b.serial);
  served_serial(sctx, cctx, serial, sizeof serial);
  assert_string_equal(serial, b.serial);
  kl_tls_session_t *c = kl_tls_session_new(cctx, false, KL_ROLE_CORE, "1");
  tt_hs_t h;
  tt_handshake(before, c, &h);
  assert_int_equal(h.cli, KL_TLS_READY);
  assert_string_equal(kl_tls_session_peer(c)->serial, a.serial);
  kl_tls_session_free(before);
  kl_tls_session_free(c);

  /* a broken certificate: the reload fails naming the file, the new material stays */
  tt_write(crt, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  kl_err_clear(&e);
  assert_int_equal(kl_tls_ctx_reload(sctx, &e), KL_EPKI);
  EXPECT_MSG(&e, "node.crt");
  assert_string_equal(kl_tls_ctx_self(sctx)->serial, b.serial);
  served_serial(sctx, cctx, serial, sizeof serial);
  assert_string_equal(serial, b.serial);
  /* a certificate that does not match the key: refused too */
  tt_copy(a.crt, crt);
  kl_err_clear(&e);
  assert_int_equal(kl_tls_ctx_reload(sctx, &e), KL_EPKI);
  EXPECT_MSG(&e, "node.key");
  served_serial(sctx, cctx, serial, sizeof serial);
  assert_string_equal(serial, b.serial);
  /* a missing key */
  tt_copy(b.crt, crt);
  assert_int_equal(remove(key), 0);
  kl_err_clear(&e);
  assert_true(kl_tls_ctx_reload(sctx, &e) != 0);
  EXPECT_MSG(&e, "node.key");
  served_serial(sctx, cctx, serial, sizeof serial);
  assert_string_equal(serial, b.serial);
  /* fixed files: the reload works again */
  tt_copy(a.key, key);
  tt_copy(a.crt, crt);
  assert_int_equal(kl_tls_ctx_reload(sctx, &e), 0);
  served_serial(sctx, cctx, serial, sizeof serial);
  assert_string_equal(serial, a.serial);
  kl_tls_ctx_unref(sctx);
  kl_tls_ctx_unref(cctx);
}

/* ---- identities ---- */

static void test_peer_parse_uri(void **state) {
  (void)state;
  kl_peer_t p;
  kl_err_t e = {0};
#define PARSE(s) kl_peer_parse_uri((s), strlen(s), &p, &e)
  assert_int_equal(PARSE("keyless://core/1"), 0);
  assert_int_equal(p.role, KL_ROLE_CORE);
  assert_string_equal(p.id, "1");
  static const struct {
    const char *name;
    unsigned bit;
  } roles[] = {{"core", KL_ROLE_CORE},
               {"aggregator", KL_ROLE_AGGREGATOR},
               {"gateway", KL_ROLE_GATEWAY},
               {"extender", KL_ROLE_EXTENDER},
               {"admin", KL_ROLE_ADMIN}};
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
    char uri[64];
    snprintf(uri, sizeof uri, "keyless://%s/node-%zu", roles[i].name, i);
    assert_int_equal(PARSE(uri), 0);
    assert_int_equal(p.role, roles[i].bit);
    assert_string_equal(kl_role_name(roles[i].bit), roles[i].name);
    assert_int_equal(kl_role_from_name(roles[i].name), roles[i].bit);
  }
  assert_string_equal(kl_role_name(0), "?");
  assert_string_equal(kl_role_name(KL_ROLE_CORE | KL_ROLE_GATEWAY), "?");
  assert_int_equal(kl_role_from_name("Core"), 0);
  assert_int_equal(kl_role_from_name(NULL), 0);
  /* every allowed character, and the longest id (63) */
  assert_int_equal(PARSE("keyless://admin/Op.er_at-or9"), 0);
  assert_string_equal(p.id, "Op.er_at-or9");
  char uri[128];
  char id63[64];
  memset(id63, 'a', 63);
  id63[63] = 0;
  snprintf(uri, sizeof uri, "keyless://gateway/%s", id63);
  assert_int_equal(PARSE(uri), 0);
  assert_string_equal(p.id, id63);
  /* only len bytes are read: a URI inside a larger buffer */
  assert_int_equal(kl_peer_parse_uri("keyless://core/12345", 16, &p, &e), 0);
  assert_string_equal(p.id, "1");

  struct {
    const char *uri;
    const char *why;
  } bad[] = {
      {"keyless://core", "ROLE/ID"},               /* no id at all */
      {"keyless:///1", "ROLE/ID"},                 /* no role */
      {"keyless://", "keyless://ROLE/ID"},         /* nothing */
      {"http://core/1", "keyless://ROLE/ID"},      /* another scheme */
      {"KEYLESS://core/1", "keyless://ROLE/ID"},   /* the scheme is exact */
      {"keyless:/core/1", "keyless://ROLE/ID"},
      {"keyless://king/1", "unknown role 'king'"}, /* unknown role */
      {"keyless://Core/1", "unknown role 'Core'"},
      {"keyless://aggregatoraggregator/1", "ROLE/ID"}, /* a role longer than any */
      {"keyless://core/", "id of 0 bytes"},            /* empty id */
      {"keyless://core/a b", "bad character"},
      {"keyless://core/1/2", "bad character"},
      {"keyless://core/a%2f", "bad character"},
      {"keyless://core/caf\xc3\xa9", "bad character"},
      {"keyless://core/1\n", "bad character"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kl_err_clear(&e);
    memset(&p, 0x55, sizeof p);
    if (PARSE(bad[i].uri) != KL_EFORMAT) fail_msg("'%s' was taken", bad[i].uri);
    if (strstr(e.msg, bad[i].why) == NULL)
      fail_msg("'%s': message \"%s\" does not say \"%s\"", bad[i].uri, e.msg, bad[i].why);
    assert_string_equal(p.id, ""); /* nothing half-filled is left to use */
  }
  /* 64 bytes of id: one too many */
  char id64[65];
  memset(id64, 'b', 64);
  id64[64] = 0;
  snprintf(uri, sizeof uri, "keyless://core/%s", id64);
  assert_int_equal(PARSE(uri), KL_EFORMAT);
  EXPECT_MSG(&e, "64 bytes");
  /* a NUL inside the id (an IA5String may carry one) */
  static const char nul[] = "keyless://core/1\0evil";
  assert_int_equal(kl_peer_parse_uri(nul, sizeof nul - 1, &p, &e), KL_EFORMAT);
  EXPECT_MSG(&e, "bad character");
#undef PARSE
}

static void test_cert_identity(void **state) {
  (void)state;
  kl_peer_t p;
  kl_err_t e = {0};
  kl_devpki_issued_t out;
  tt_issue(pki, "extender", "ext.9_x-1", "ident", 0, 0, &out);
  assert_int_equal(kl_tls_cert_identity(out.crt, &p, &e), 0);
  assert_int_equal(p.role, KL_ROLE_EXTENDER);
  assert_string_equal(p.id, "ext.9_x-1");
  assert_string_equal(p.serial, out.serial);
  /* missing file, not a certificate */
  char path[600];
  snprintf(path, sizeof path, "%s/missing.crt", tmp);
  assert_int_equal(kl_tls_cert_identity(path, &p, &e), KL_EIO);
  EXPECT_MSG(&e, "missing.crt");
  assert_int_equal(kl_tls_cert_identity(out.key, &p, &e), KL_EPKI);
  EXPECT_MSG(&e, "ident.key");
}

/* kl_tls_ctx_create: what a context needs, and messages naming the file. */
static void test_ctx_create_errors(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_tls_ctx_t *t = (kl_tls_ctx_t *)1;
  const char *ca = ca_of(pki), *crt = tt_at(pki, "nodes/core-1.crt"), *key = tt_at(pki, "nodes/core-1.key");
  kl_tls_files_t f;
  /* mutual needs ca, cert and key */
  f = (kl_tls_files_t){NULL, crt, key, NULL};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), KL_EINVAL);
  assert_null(t);
  f = (kl_tls_files_t){ca, "", key, NULL};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), KL_EINVAL);
  f = (kl_tls_files_t){ca, crt, NULL, NULL};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), KL_EINVAL);
  /* https needs cert and key */
  f = (kl_tls_files_t){NULL, NULL, key, NULL};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_HTTPS, &f, &t, &e), KL_EINVAL);
  /* missing files are named */
  char missing[600];
  snprintf(missing, sizeof missing, "%s/nope.pem", tmp);
  f = (kl_tls_files_t){ca, missing, key, NULL};
  assert_true(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e) != 0);
  EXPECT_MSG(&e, "nope.pem");
  f = (kl_tls_files_t){ca, crt, missing, NULL};
  assert_true(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e) != 0);
  EXPECT_MSG(&e, "nope.pem");
  f = (kl_tls_files_t){missing, crt, key, NULL};
  assert_true(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e) != 0);
  EXPECT_MSG(&e, "nope.pem");
  f = (kl_tls_files_t){ca, crt, key, missing};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), KL_EIO);
  EXPECT_MSG(&e, "nope.pem");
  assert_null(t);
  /* a CRL file with no CRL in it */
  f = (kl_tls_files_t){ca, crt, key, ca};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), KL_EPKI);
  EXPECT_MSG(&e, "cluster-ca.crt", "CRL");
  /* a key of another certificate */
  f = (kl_tls_files_t){ca, crt, tt_at(pki, "nodes/core-2.key"), NULL};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), KL_EPKI);
  EXPECT_MSG(&e, "core-2.key", "mismatch");
  assert_null(t);
  /* references: two unrefs after one ref free it once (ASan checks) */
  f = (kl_tls_files_t){ca, crt, key, NULL};
  assert_int_equal(kl_tls_ctx_create(KL_TLS_MUTUAL, &f, &t, &e), 0);
  assert_ptr_equal(kl_tls_ctx_ref(t), t);
  kl_tls_ctx_unref(t);
  assert_int_equal(kl_tls_ctx_self(t)->role, KL_ROLE_CORE);
  kl_tls_ctx_unref(t);
  assert_null(kl_tls_ctx_ref(NULL));
  kl_tls_ctx_unref(NULL);
}

/* ---- kl_tls_settings_open ---- */

static void test_settings_open(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_tls_ctx_t *t = (kl_tls_ctx_t *)1;
  char ca[600], crt[600], key[600], crl[600], empty[1] = "";
  snprintf(ca, sizeof ca, "%s", ca_of(pki));
  snprintf(crt, sizeof crt, "%s/nodes/core-1.crt", pki);
  snprintf(key, sizeof key, "%s/nodes/core-1.key", pki);
  snprintf(crl, sizeof crl, "%s/crl.pem", pki);
  kl_tls_settings_t s = {ca, crt, key, empty, false};
  /* the node it names */
  assert_int_equal(kl_tls_settings_open(&s, "core.conf", KL_ROLE_CORE, "1", &t, &e), 0);
  assert_non_null(t);
  assert_int_equal(kl_tls_ctx_self(t)->role, KL_ROLE_CORE);
  assert_string_equal(kl_tls_ctx_self(t)->id, "1");
  kl_tls_ctx_unref(t);
  /* any id when the node does not say which */
  s.crl = crl;
  assert_int_equal(kl_tls_settings_open(&s, "core.conf", KL_ROLE_CORE, NULL, &t, &e), 0);
  assert_non_null(t);
  kl_tls_ctx_unref(t);
  s.crl = empty;
  /* insecure: no context, no error */
  kl_tls_settings_t ins = {empty, empty, empty, empty, true};
  t = (kl_tls_ctx_t *)1;
  assert_int_equal(kl_tls_settings_open(&ins, "core.conf", KL_ROLE_CORE, "1", &t, &e), 0);
  assert_null(t);
  /* insecure together with a certificate: which is meant? refused */
  ins.cert = crt;
  ins.key = key;
  assert_int_equal(kl_tls_settings_open(&ins, "core.conf", KL_ROLE_CORE, "1", &t, &e), KL_EINVAL);
  assert_null(t);
  EXPECT_MSG(&e, "core.conf", "insecure");
  /* each missing file is named, with the configuration file */
  static const char *const names[] = {"ca", "cert", "key"};
  for (int i = 0; i < 3; i++) {
    kl_tls_settings_t m = s;
    char **field = i == 0 ? &m.ca : i == 1 ? &m.cert : &m.key;
    *field = empty;
    t = (kl_tls_ctx_t *)1;
    kl_err_clear(&e);
    assert_int_equal(kl_tls_settings_open(&m, "node.conf", KL_ROLE_CORE, "1", &t, &e), KL_EINVAL);
    assert_null(t);
    char want[32];
    snprintf(want, sizeof want, "[tls] %s is required", names[i]);
    EXPECT_MSG(&e, "node.conf", want);
  }
  /* a file that is not there: named */
  char missing[600];
  snprintf(missing, sizeof missing, "%s/absent.crt", tmp);
  kl_tls_settings_t m = s;
  m.cert = missing;
  assert_true(kl_tls_settings_open(&m, "node.conf", KL_ROLE_CORE, "1", &t, &e) != 0);
  assert_null(t);
  EXPECT_MSG(&e, "node.conf", "absent.crt");
  /* a certificate of another node: both identities named */
  kl_err_clear(&e);
  assert_int_equal(kl_tls_settings_open(&s, "core.conf", KL_ROLE_CORE, "2", &t, &e), KL_EPKI);
  assert_null(t);
  EXPECT_MSG(&e, "core.conf", "core/1", "core/2");
  kl_err_clear(&e);
  assert_int_equal(kl_tls_settings_open(&s, "agg.conf", KL_ROLE_AGGREGATOR, "1", &t, &e), KL_EPKI);
  assert_null(t);
  EXPECT_MSG(&e, "agg.conf", "core/1", "aggregator/1");
  /* a certificate without an identity: named as such */
  char nouri_crt[600], nouri_key[600];
  snprintf(nouri_crt, sizeof nouri_crt, "%s/settings-nouri.crt", tmp);
  snprintf(nouri_key, sizeof nouri_key, "%s/settings-nouri.key", tmp);
  tt_make_cert(pki, "DNS:localhost", 0x7010, nouri_crt, nouri_key);
  m = s;
  m.cert = nouri_crt;
  m.key = nouri_key;
  kl_err_clear(&e);
  assert_int_equal(kl_tls_settings_open(&m, "gw.conf", KL_ROLE_GATEWAY, NULL, &t, &e), KL_EPKI);
  assert_null(t);
  EXPECT_MSG(&e, "gw.conf", "gateway/");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_ok),       cmocka_unit_test(test_role_mask),
      cmocka_unit_test(test_refuse_other_ca),    cmocka_unit_test(test_refuse_expired),
      cmocka_unit_test(test_refuse_not_yet_valid), cmocka_unit_test(test_refuse_revoked),
      cmocka_unit_test(test_refuse_role),        cmocka_unit_test(test_refuse_wrong_id),
      cmocka_unit_test(test_refuse_no_uri),      cmocka_unit_test(test_refuse_no_client_cert),
      cmocka_unit_test(test_https_anonymous_client), cmocka_unit_test(test_plaintext),
      cmocka_unit_test(test_reload),             cmocka_unit_test(test_peer_parse_uri),
      cmocka_unit_test(test_cert_identity),      cmocka_unit_test(test_ctx_create_errors),
      cmocka_unit_test(test_settings_open),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
