/* TLS contexts and memory-BIO sessions (keyless/tls.h).
 *
 * Happy path (server): new → feed(ClientHello) → output (ServerHello...) → feed(Finished) →
 * READY: the peer's certificate chained to the CA during the handshake (OpenSSL checks chain,
 * validity and the CRL), and here its URI SAN gives role and id, checked against the link.
 * Failure modes: a handshake error or a refused certificate (feed returns -1 with OpenSSL's
 * reason, e.g. "certificate has expired"), a certificate without a keyless URI or with a role
 * or id the link does not take (-1 naming it), a corrupt record later (read returns -1). */
#include "keyless/tls.h"

#include "ossl.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[] = {"core", "aggregator", "gateway", "extender", "admin"};
#define N_ROLES (sizeof role_names / sizeof role_names[0])

const char *kl_role_name(unsigned role) {
  for (unsigned i = 0; i < N_ROLES; i++)
    if (role == 1u << i) return role_names[i];
  return "?";
}

unsigned kl_role_from_name(const char *name) {
  for (unsigned i = 0; i < N_ROLES; i++)
    if (name && strcmp(name, role_names[i]) == 0) return 1u << i;
  return 0;
}

int kl_peer_parse_uri(const char *uri, size_t len, kl_peer_t *out, kl_err_t *e) {
  static const char prefix[] = "keyless://";
  memset(out, 0, sizeof *out);
  if (len < sizeof prefix || memcmp(uri, prefix, sizeof prefix - 1) != 0)
    return kl_err_set(e, KL_EFORMAT, "certificate URI is not keyless://ROLE/ID");
  const char *p = uri + sizeof prefix - 1, *end = uri + len;
  const char *slash = memchr(p, '/', (size_t)(end - p));
  char role[16];
  if (slash == NULL || slash == p || (size_t)(slash - p) >= sizeof role)
    return kl_err_set(e, KL_EFORMAT, "certificate URI: no ROLE/ID");
  memcpy(role, p, (size_t)(slash - p));
  role[slash - p] = '\0';
  if ((out->role = kl_role_from_name(role)) == 0)
    return kl_err_set(e, KL_EFORMAT, "certificate URI: unknown role '%s'", role);
  size_t idlen = (size_t)(end - slash - 1);
  if (idlen == 0 || idlen >= sizeof out->id) return kl_err_set(e, KL_EFORMAT, "certificate URI: id of %zu bytes", idlen);
  for (size_t i = 0; i < idlen; i++) {
    char ch = slash[1 + i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-';
    if (!ok) return kl_err_set(e, KL_EFORMAT, "certificate URI: bad character in id");
  }
  memcpy(out->id, slash + 1, idlen);
  out->id[idlen] = '\0';
  return 0;
}

/* The one keyless:// URI of a certificate. KL_ENOTFOUND when it has none. */
static int cert_identity_of(X509 *x, kl_peer_t *out, kl_err_t *e) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int found = 0, r = 0;
  memset(out, 0, sizeof *out);
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    const char *s = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
    size_t n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
    if (n < 10 || memcmp(s, "keyless://", 10) != 0) continue;
    if (++found > 1) {
      r = kl_err_set(e, KL_EPKI, "certificate names more than one keyless identity");
      break;
    }
    if ((r = kl_peer_parse_uri(s, n, out, e))) break;
  }
  GENERAL_NAMES_free(names);
  if (r) return r == KL_EFORMAT ? KL_EPKI : r;
  if (!found) return kl_err_set(e, KL_ENOTFOUND, "certificate has no keyless://ROLE/ID name");
  const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
  BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  snprintf(out->serial, sizeof out->serial, "%s", hex ? hex : "?");
  OPENSSL_free(hex);
  BN_free(bn);
  return 0;
}

/* cert_identity_of, leaving nothing on the thread's OpenSSL error queue: a malformed extension
 * makes X509_get_ext_d2i queue errors, and a later SSL_get_error on this thread would read
 * them as its own (found by tests/fuzz/fuzz_cert_identity). */
static int cert_identity(X509 *x, kl_peer_t *out, kl_err_t *e) {
  ERR_set_mark();
  int r = cert_identity_of(x, out, e);
  ERR_pop_to_mark();
  return r;
}

int kl_tls_der_identity(const uint8_t *der, size_t len, kl_peer_t *out, kl_err_t *e) {
  const unsigned char *p = der;
  X509 *x = len <= 65536 ? d2i_X509(NULL, &p, (long)len) : NULL;
  if (x == NULL) {
    ERR_clear_error();
    memset(out, 0, sizeof *out);
    return kl_err_set(e, KL_EPKI, "not a DER certificate");
  }
  int r = cert_identity(x, out, e);
  X509_free(x);
  return r;
}

int kl_tls_cert_identity(const char *pem_path, kl_peer_t *out, kl_err_t *e) {
  FILE *f = fopen(pem_path, "r");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot read %s", pem_path);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (x == NULL) return kl_err_set(e, KL_EPKI, "%s: not a PEM certificate", pem_path);
  int r = cert_identity(x, out, e);
  X509_free(x);
  return r ? kl_err_wrap(e, "%s", pem_path) : 0;
}

/* ---- contexts ---- */

struct kl_tls_ctx {
  int refs;
  kl_tls_kind_t kind;
  char *ca, *cert, *key, *crl;
  SSL_CTX *ssl;
  kl_peer_t self;
};

static int load_crls(SSL_CTX *ctx, const char *path, kl_err_t *e) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot read the CRL file %s", path);
  X509_STORE *st = SSL_CTX_get_cert_store(ctx);
  int n = 0;
  X509_CRL *crl;
  while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
    X509_STORE_add_crl(st, crl);
    X509_CRL_free(crl);
    n++;
  }
  ERR_clear_error();
  fclose(f);
  if (n == 0) return kl_err_set(e, KL_EPKI, "%s: no PEM CRL in it", path);
  X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
  return 0;
}

static int build(kl_tls_ctx_t *t, SSL_CTX **out, kl_peer_t *self, kl_err_t *e) {
  SSL_CTX *c = SSL_CTX_new(TLS_method());
  int r = 0;
  if (c == NULL) return kl_err_set(e, KL_ENOMEM, "TLS: %s", kl__ossl_msg());
  SSL_CTX_set_min_proto_version(c, t->kind == KL_TLS_MUTUAL ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  /* RELEASE_BUFFERS: an idle connection holds no 2 x 16 KiB record buffers (34 KiB a
   * connection at a gateway with 16,000 https clients, bench/run_gateway_bench.sh). */
  SSL_CTX_set_mode(c, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  if (t->kind == KL_TLS_MUTUAL) {
    SSL_CTX_set_num_tickets(c, 0); /* no resumption between nodes: every link authenticates afresh */
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  }
  memset(self, 0, sizeof *self);
  if (t->cert) {
    if (SSL_CTX_use_certificate_chain_file(c, t->cert) != 1) {
      r = kl_err_set(e, KL_EPKI, "certificate %s: %s", t->cert, kl__ossl_msg());
      goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, t->key, SSL_FILETYPE_PEM) != 1) {
      r = kl_err_set(e, KL_EPKI, "private key %s: %s", t->key, kl__ossl_msg());
      goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
      r = kl_err_set(e, KL_EPKI, "private key %s does not match certificate %s", t->key, t->cert);
      goto fail;
    }
    kl_err_t ign = {0};
    if (cert_identity(SSL_CTX_get0_certificate(c), self, &ign) == KL_EPKI) {
      r = kl_err_set(e, KL_EPKI, "certificate %s: %s", t->cert, ign.msg);
      goto fail;
    }
  }
  if (t->ca) {
    if (SSL_CTX_load_verify_locations(c, t->ca, NULL) != 1) {
      r = kl_err_set(e, KL_EPKI, "CA file %s: %s", t->ca, kl__ossl_msg());
      goto fail;
    }
  } else if (t->kind == KL_TLS_CLIENT) {
    SSL_CTX_set_default_verify_paths(c);
  }
  if (t->crl && (r = load_crls(c, t->crl, e))) goto fail;
  if (t->kind == KL_TLS_MUTUAL) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    static const unsigned char sid[] = "keyless";
    SSL_CTX_set_session_id_context(c, sid, sizeof sid - 1);
  } else if (t->kind == KL_TLS_CLIENT) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
  }
  *out = c;
  return 0;
fail:
  SSL_CTX_free(c);
  return r;
}

static char *dup_or_null(const char *s) { return s && s[0] ? strdup(s) : NULL; }

int kl_tls_ctx_create(kl_tls_kind_t kind, const kl_tls_files_t *files, kl_tls_ctx_t **out, kl_err_t *e) {
  *out = NULL;
  if (kind == KL_TLS_MUTUAL && (!files->ca || !files->ca[0] || !files->cert || !files->cert[0] || !files->key ||
                                !files->key[0]))
    return kl_err_set(e, KL_EINVAL, "mutual TLS needs a CA, a certificate and a key");
  if (kind == KL_TLS_HTTPS && (!files->cert || !files->cert[0] || !files->key || !files->key[0]))
    return kl_err_set(e, KL_EINVAL, "https needs a certificate and a key");
  kl_tls_ctx_t *t = calloc(1, sizeof *t);
  if (t == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  t->refs = 1;
  t->kind = kind;
  t->ca = dup_or_null(files->ca);
  t->cert = dup_or_null(files->cert);
  t->key = dup_or_null(files->key);
  t->crl = dup_or_null(files->crl);
  int r = build(t, &t->ssl, &t->self, e);
  if (r) {
    kl_tls_ctx_unref(t);
    return r;
  }
  *out = t;
  return 0;
}

int kl_tls_ctx_reload(kl_tls_ctx_t *t, kl_err_t *e) {
  SSL_CTX *c;
  kl_peer_t self;
  int r = build(t, &c, &self, e);
  if (r) return r;
  if (t->self.role && (self.role != t->self.role || strcmp(self.id, t->self.id) != 0)) {
    SSL_CTX_free(c); /* a node does not change who it is on a reload */
    return kl_err_set(e, KL_EPKI, "certificate %s names %s/%s, not %s/%s as before", t->cert,
                      self.role ? kl_role_name(self.role) : "nothing", self.id, kl_role_name(t->self.role), t->self.id);
  }
  SSL_CTX_free(t->ssl); /* sessions still open hold their own reference */
  t->ssl = c;
  t->self = self;
  return 0;
}

const kl_peer_t *kl_tls_ctx_self(const kl_tls_ctx_t *t) { return &t->self; }

kl_tls_ctx_t *kl_tls_ctx_ref(kl_tls_ctx_t *t) {
  if (t) t->refs++;
  return t;
}

void kl_tls_ctx_unref(kl_tls_ctx_t *t) {
  if (t == NULL || --t->refs > 0) return;
  SSL_CTX_free(t->ssl);
  free(t->ca);
  free(t->cert);
  free(t->key);
  free(t->crl);
  free(t);
}

/* ---- sessions ---- */

struct kl_tls_session {
  SSL *ssl;
  BIO *in, *out; /* network side: we write what was read into `in`, send what is in `out` */
  unsigned roles;
  char expect_id[KL_PEER_ID_MAX];
  bool ready, failed;
  kl_peer_t peer;
};

kl_tls_session_t *kl_tls_session_new(kl_tls_ctx_t *t, bool server, unsigned roles, const char *expect_id) {
  kl_tls_session_t *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->ssl = SSL_new(t->ssl);
  s->in = BIO_new(BIO_s_mem());
  s->out = BIO_new(BIO_s_mem());
  if (s->ssl == NULL || s->in == NULL || s->out == NULL) {
    BIO_free(s->in);
    BIO_free(s->out);
    SSL_free(s->ssl);
    free(s);
    return NULL;
  }
  BIO_set_mem_eof_return(s->in, -1); /* empty: "retry", not EOF */
  SSL_set_bio(s->ssl, s->in, s->out);
  if (server) SSL_set_accept_state(s->ssl);
  else SSL_set_connect_state(s->ssl);
  s->roles = roles;
  if (expect_id) snprintf(s->expect_id, sizeof s->expect_id, "%s", expect_id);
  return s;
}

void kl_tls_session_free(kl_tls_session_t *s) {
  if (s == NULL) return;
  SSL_free(s->ssl); /* frees the BIOs */
  free(s);
}

static int fail(kl_tls_session_t *s, kl_err_t *e, int code, const char *what, const char *detail) {
  s->failed = true;
  kl_err_set(e, code, "%s%s", what, detail);
  return -1;
}

/* The handshake finished: who is the peer, and may it use this link? */
static int check_peer(kl_tls_session_t *s, kl_err_t *e) {
  X509 *x = SSL_get0_peer_certificate(s->ssl);
  if (x == NULL) {
    if (s->roles == 0) {
      s->ready = true; /* an https client */
      return KL_TLS_READY;
    }
    return fail(s, e, KL_EAUTH, "peer presented no certificate", "");
  }
  long v = SSL_get_verify_result(s->ssl);
  if (v != X509_V_OK) return fail(s, e, KL_EPKI, "peer certificate: ", X509_verify_cert_error_string(v));
  kl_err_t why = {0};
  if (cert_identity(x, &s->peer, &why)) {
    if (s->roles == 0) { /* https: any verified certificate will do */
      memset(&s->peer, 0, sizeof s->peer);
      s->ready = true;
      return KL_TLS_READY;
    }
    return fail(s, e, KL_EAUTH, "peer certificate: ", why.msg);
  }
  if (s->roles && (s->peer.role & s->roles) == 0)
    return fail(s, e, KL_EAUTH, "this link does not accept the peer's role: ", kl_role_name(s->peer.role));
  if (s->expect_id[0] && strcmp(s->peer.id, s->expect_id) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s/%s, not %s/%s", kl_role_name(s->peer.role), s->peer.id, kl_role_name(s->peer.role),
             s->expect_id);
    return fail(s, e, KL_EAUTH, "peer certificate names ", msg);
  }
  s->ready = true;
  return KL_TLS_READY;
}

static int advance(kl_tls_session_t *s, kl_err_t *e) {
  if (s->failed) return kl_err_set(e, KL_ESTATE, "TLS session failed earlier"), -1;
  if (s->ready) return KL_TLS_READY;
  int rc = SSL_do_handshake(s->ssl);
  if (rc == 1) return check_peer(s, e);
  int err = SSL_get_error(s->ssl, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return KL_TLS_HANDSHAKING;
  long v = SSL_get_verify_result(s->ssl);
  if (v != X509_V_OK) {
    ERR_clear_error();
    return fail(s, e, KL_EPKI, "TLS handshake: peer certificate: ", X509_verify_cert_error_string(v));
  }
  return fail(s, e, KL_EAUTH, "TLS handshake: ", kl__ossl_msg());
}

int kl_tls_session_start(kl_tls_session_t *s, kl_err_t *e) { return advance(s, e); }

int kl_tls_session_feed(kl_tls_session_t *s, const uint8_t *p, size_t n, kl_err_t *e) {
  if (n > 0 && BIO_write(s->in, p, (int)n) != (int)n) return fail(s, e, KL_ENOMEM, "TLS: ", "out of memory");
  return advance(s, e);
}

long kl_tls_session_read(kl_tls_session_t *s, uint8_t *buf, size_t cap, bool *closed, kl_err_t *e) {
  *closed = false;
  if (!s->ready || s->failed || cap == 0) return 0;
  size_t got = 0;
  int rc = SSL_read_ex(s->ssl, buf, cap, &got);
  if (rc == 1) return (long)got;
  int err = SSL_get_error(s->ssl, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  if (err == SSL_ERROR_ZERO_RETURN) {
    *closed = true;
    return 0;
  }
  fail(s, e, KL_EFORMAT, "TLS record: ", kl__ossl_msg());
  return -1;
}

int kl_tls_session_write(kl_tls_session_t *s, const void *p, size_t n, kl_err_t *e) {
  if (!s->ready || s->failed) return fail(s, e, KL_ESTATE, "TLS: write ", "before the handshake finished");
  size_t done = 0;
  while (done < n) {
    size_t w = 0;
    if (SSL_write_ex(s->ssl, (const uint8_t *)p + done, n - done, &w) != 1)
      return fail(s, e, KL_ECRYPTO, "TLS write: ", kl__ossl_msg());
    done += w;
  }
  return 0;
}

void kl_tls_session_shutdown(kl_tls_session_t *s) {
  if (s->ready && !s->failed) SSL_shutdown(s->ssl);
  ERR_clear_error();
}

uint8_t *kl_tls_session_output(kl_tls_session_t *s, size_t *len) {
  size_t n = BIO_ctrl_pending(s->out);
  *len = 0;
  if (n == 0) return NULL;
  uint8_t *p = malloc(n);
  if (p == NULL) return NULL;
  int got = BIO_read(s->out, p, (int)n);
  if (got <= 0) {
    free(p);
    return NULL;
  }
  *len = (size_t)got;
  return p;
}

bool kl_tls_session_ready(const kl_tls_session_t *s) { return s->ready && !s->failed; }
const kl_peer_t *kl_tls_session_peer(const kl_tls_session_t *s) { return s->ready ? &s->peer : NULL; }
