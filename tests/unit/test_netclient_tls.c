/* https in the blocking client (netclient.h) against a small OpenSSL server in a thread on
 * 127.0.0.1 with certificates of a development PKI (pki.h): success with the right CA (by IP
 * and by name), "certificate verify failed" with another PKI's CA or the system store, "host
 * name mismatch" for a certificate that names neither the address nor the name, a client
 * certificate presented when the server requires one, the error when it is missing (TLS 1.3
 * and 1.2) or from another CA, a plain-HTTP port, a handshake that times out, the URL forms,
 * and the process-wide defaults of kl_net_request. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "keyless/netclient.h"
#include "keyless/pki.h"
#include "testutil.h"

static char tmp[256], pki[300], other[300];
static char odd_crt[400], odd_key[400]; /* cluster-CA-issued, SAN DNS:other.invalid only */

static const char *at(const char *dir, const char *rel) {
  static char buf[8][512];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
  return buf[k];
}

/* A server certificate of pki's cluster CA whose only name is DNS:other.invalid (devpki node
 * certificates always carry 127.0.0.1 and localhost, so a mismatch needs one made here). */
static int make_odd_cert(void) {
  FILE *f = fopen(at(pki, "offline/cluster-ca.key"), "r");
  EVP_PKEY *cakey = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
  if (f) fclose(f);
  f = fopen(at(pki, "cluster-ca.crt"), "r");
  X509 *ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  if (f) fclose(f);
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  int ok = cakey && ca && key && x;
  if (ok) {
    X509V3_CTX v3;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0x7777);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"odd", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    const char *exts[][2] = {{"subjectAltName", "DNS:other.invalid"},
                             {"extendedKeyUsage", "serverAuth"},
                             {"basicConstraints", "critical,CA:FALSE"}};
    for (size_t i = 0; i < 3 && ok; i++) {
      X509_EXTENSION *ex = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
      ok = ex != NULL && X509_add_ext(x, ex, -1);
      X509_EXTENSION_free(ex);
    }
    ok = ok && X509_sign(x, cakey, EVP_sha256()) > 0;
  }
  snprintf(odd_crt, sizeof odd_crt, "%s/odd.crt", tmp);
  snprintf(odd_key, sizeof odd_key, "%s/odd.key", tmp);
  FILE *fc = ok ? fopen(odd_crt, "w") : NULL, *fk = ok ? fopen(odd_key, "w") : NULL;
  ok = fc && fk && PEM_write_X509(fc, x) && PEM_write_PrivateKey(fk, key, NULL, NULL, 0, NULL, NULL);
  if (fc) fclose(fc);
  if (fk) fclose(fk);
  X509_free(x);
  X509_free(ca);
  EVP_PKEY_free(key);
  EVP_PKEY_free(cakey);
  return ok ? 0 : -1;
}

static int group_setup(void **state) {
  (void)state;
  kl_err_t e = {0};
  tu_mkdtemp("nctls", tmp, sizeof tmp);
  snprintf(pki, sizeof pki, "%s/pki", tmp);
  snprintf(other, sizeof other, "%s/other", tmp);
  if (kl_devpki_create(pki, "publications@keyless.test", 30, &e) || kl_devpki_issue_nodes(pki, "core:1,admin:operator", 0, &e) ||
      kl_devpki_create(other, "publications@keyless.test", 30, &e) || kl_devpki_issue_nodes(other, "core:1,admin:operator", 0, &e)) {
    fprintf(stderr, "setup: %s\n", e.msg);
    return -1;
  }
  if (make_odd_cert()) {
    fprintf(stderr, "setup: cannot make the odd certificate\n");
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  kl_net_set_tls_defaults(NULL, NULL);
  return tu_rmrf(tmp);
}

/* ---- the server: one connection, one HTTP request, answered "hello PEER" ---- */

typedef struct srv {
  const char *crt, *key; /* NULL: plain TCP (answers HTTP without TLS) */
  const char *client_ca; /* non-NULL: require a client certificate chaining to it */
  int max_proto;         /* 0 or TLS1_2_VERSION */
  bool eager;            /* plain: answer at once, without reading a request */
  int lfd, port;
  pthread_t th;
  /* results, read after join */
  bool handshake_ok, answered;
  char peer[256]; /* the client certificate's SAN URI, or "" */
  char request[512];
} srv_t;

static void peer_uri(SSL *ssl, char *out, size_t cap) {
  X509 *x = SSL_get0_peer_certificate(ssl);
  out[0] = '\0';
  if (x == NULL) return;
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_URI)
      snprintf(out, cap, "%.*s", ASN1_STRING_length(g->d.uniformResourceIdentifier),
               (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier));
  }
  GENERAL_NAMES_free(names);
}

static void *serve(void *arg) {
  srv_t *s = arg;
  struct pollfd p = {s->lfd, POLLIN, 0};
  if (poll(&p, 1, 10000) != 1) return NULL;
  int fd = accept(s->lfd, NULL, NULL);
  if (fd < 0) return NULL;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL_CTX *ctx = NULL;
  SSL *ssl = NULL;
  if (s->crt) {
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, s->crt) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1)
      goto out;
    if (s->max_proto) SSL_CTX_set_max_proto_version(ctx, s->max_proto);
    if (s->client_ca) {
      if (SSL_CTX_load_verify_locations(ctx, s->client_ca, NULL) != 1) goto out;
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) goto out;
    s->handshake_ok = true;
    peer_uri(ssl, s->peer, sizeof s->peer);
  }
  size_t n = 0;
  while (!s->eager && n + 1 < sizeof s->request && strstr(s->request, "\r\n\r\n") == NULL) {
    size_t got = 0;
    if (ssl) {
      if (SSL_read_ex(ssl, s->request + n, sizeof s->request - 1 - n, &got) != 1) goto out;
    } else {
      ssize_t r = recv(fd, s->request + n, sizeof s->request - 1 - n, 0);
      if (r <= 0) goto out;
      got = (size_t)r;
    }
    n += got;
    s->request[n] = '\0';
  }
  char body[300], resp[512];
  snprintf(body, sizeof body, "hello %s", s->peer[0] ? s->peer : "anonymous");
  int len = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     strlen(body), body);
  size_t w;
  if (ssl ? SSL_write_ex(ssl, resp, (size_t)len, &w) == 1 : send(fd, resp, (size_t)len, MSG_NOSIGNAL) == len)
    s->answered = true;
  if (ssl) SSL_shutdown(ssl);
out:
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return NULL;
}

static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  socklen_t al = sizeof a;
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static void srv_start(srv_t *s) {
  s->lfd = listen_loopback(&s->port);
  assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void srv_join(srv_t *s) {
  pthread_join(s->th, NULL);
  close(s->lfd);
}

/* GET https://HOST:PORT/status with opts; returns the code, body in out. */
static int get(const char *scheme, const char *host, int port, const kl_net_tls_opts_t *o, kl_buf_t *out, kl_err_t *e) {
  char url[300];
  kl_url_t u;
  int status = 0;
  snprintf(url, sizeof url, "%s://%s:%d/status", scheme, host, port);
  assert_int_equal(kl_url_parse(url, &u, e), 0);
  int r = kl_net_request_tls(&u, o, NULL, 0, NULL, 5000, 1 << 16, out, &status, e);
  if (r == 0) {
    assert_int_equal(status, 200);
    kl_buf_put_u8(out, 0);
  }
  return r;
}

#define assert_has(hay, needle)                                                      \
  do {                                                                               \
    if (getenv("KL_TEST_VERBOSE")) fprintf(stderr, "  msg: %s\n", (hay));           \
    if (strstr((hay), (needle)) == NULL) fail_msg("'%s' lacks '%s'", (hay), (needle)); \
  } while (0)

/* ---- tests ---- */

static void test_right_ca(void **state) {
  (void)state;
  const char *hosts[] = {"127.0.0.1", "localhost"};
  for (size_t i = 0; i < 2; i++) {
    srv_t s = {.crt = at(pki, "nodes/core-1.crt"), .key = at(pki, "nodes/core-1.key")};
    kl_net_tls_opts_t o = {.ca_file = at(pki, "cluster-ca.crt")};
    kl_buf_t b = KL_BUF_INIT;
    kl_err_t e = {0};
    srv_start(&s);
    int r = get("https", hosts[i], s.port, &o, &b, &e);
    srv_join(&s);
    if (r) fail_msg("%s: %s", hosts[i], e.msg);
    assert_string_equal((const char *)b.p, "hello anonymous");
    assert_true(s.handshake_ok);
    assert_has(s.request, "GET /status HTTP/1.1\r\n");
    kl_buf_free(&b);
  }
}

static void test_wrong_ca(void **state) {
  (void)state;
  const char *cas[] = {at(other, "cluster-ca.crt"), NULL /* the system store */};
  for (size_t i = 0; i < 2; i++) {
    srv_t s = {.crt = at(pki, "nodes/core-1.crt"), .key = at(pki, "nodes/core-1.key")};
    char ca[512] = "";
    if (cas[i]) snprintf(ca, sizeof ca, "%s", cas[i]);
    kl_net_tls_opts_t o = {.ca_file = cas[i] ? ca : NULL};
    kl_buf_t b = KL_BUF_INIT;
    kl_err_t e = {0};
    srv_start(&s);
    int r = get("https", "127.0.0.1", s.port, &o, &b, &e);
    srv_join(&s);
    assert_int_equal(r, KL_EIO);
    assert_has(e.msg, "certificate verify failed: unable to get local issuer certificate");
    assert_has(e.msg, cas[i] ? ca : "the system CA store");
    assert_false(s.handshake_ok);
    assert_int_equal(b.len, 0);
    kl_buf_free(&b);
  }
  /* insecure_skip_verify gets through (encrypted, not authenticated). */
  srv_t s = {.crt = at(pki, "nodes/core-1.crt"), .key = at(pki, "nodes/core-1.key")};
  kl_net_tls_opts_t o = {.insecure_skip_verify = 1};
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  srv_start(&s);
  int r = get("https", "127.0.0.1", s.port, &o, &b, &e);
  srv_join(&s);
  if (r) fail_msg("%s", e.msg);
  assert_string_equal((const char *)b.p, "hello anonymous");
  kl_buf_free(&b);
}

static void test_host_mismatch(void **state) {
  (void)state;
  const char *hosts[] = {"127.0.0.1", "localhost"};
  for (size_t i = 0; i < 2; i++) {
    srv_t s = {.crt = odd_crt, .key = odd_key};
    kl_net_tls_opts_t o = {.ca_file = at(pki, "cluster-ca.crt")};
    kl_buf_t b = KL_BUF_INIT;
    kl_err_t e = {0};
    srv_start(&s);
    int r = get("https", hosts[i], s.port, &o, &b, &e);
    srv_join(&s);
    assert_int_equal(r, KL_EIO);
    assert_has(e.msg, "host name mismatch");
    assert_has(e.msg, hosts[i]);
    assert_false(s.handshake_ok);
    kl_buf_free(&b);
  }
}

static void test_client_cert(void **state) {
  (void)state;
  srv_t s = {.crt = at(pki, "nodes/core-1.crt"), .key = at(pki, "nodes/core-1.key"), .client_ca = at(pki, "cluster-ca.crt")};
  char crt[512], key[512];
  snprintf(crt, sizeof crt, "%s", at(pki, "nodes/admin-operator.crt"));
  snprintf(key, sizeof key, "%s", at(pki, "nodes/admin-operator.key"));
  kl_net_tls_opts_t o = {.ca_file = at(pki, "cluster-ca.crt"), .cert = crt, .key = key};
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  srv_start(&s);
  int r = get("ksi+https", "user:secret@127.0.0.1", s.port, &o, &b, &e);
  srv_join(&s);
  if (r) fail_msg("%s", e.msg);
  assert_true(s.handshake_ok);
  assert_string_equal(s.peer, "keyless://admin/operator");
  assert_string_equal((const char *)b.p, "hello keyless://admin/operator");
  assert_null(strstr(s.request, "secret")); /* the userinfo is not sent */
  kl_buf_free(&b);
}

static void test_client_cert_missing(void **state) {
  (void)state;
  int protos[] = {0 /* TLS 1.3: the refusal comes after the client's handshake */, TLS1_2_VERSION};
  for (size_t i = 0; i < 2; i++) {
    srv_t s = {.crt = at(pki, "nodes/core-1.crt"),
               .key = at(pki, "nodes/core-1.key"),
               .client_ca = at(pki, "cluster-ca.crt"),
               .max_proto = protos[i]};
    kl_net_tls_opts_t o = {.ca_file = at(pki, "cluster-ca.crt")};
    kl_buf_t b = KL_BUF_INIT;
    kl_err_t e = {0};
    srv_start(&s);
    int r = get("https", "127.0.0.1", s.port, &o, &b, &e);
    srv_join(&s);
    assert_int_equal(r, KL_EIO);
    assert_has(e.msg, "the server asked for a client certificate (use --cert/--key)");
    assert_false(s.handshake_ok);
    assert_false(s.answered);
    kl_buf_free(&b);
  }
}

static void test_client_cert_other_ca(void **state) {
  (void)state;
  srv_t s = {.crt = at(pki, "nodes/core-1.crt"), .key = at(pki, "nodes/core-1.key"), .client_ca = at(pki, "cluster-ca.crt")};
  char crt[512], key[512];
  snprintf(crt, sizeof crt, "%s", at(other, "nodes/admin-operator.crt"));
  snprintf(key, sizeof key, "%s", at(other, "nodes/admin-operator.key"));
  kl_net_tls_opts_t o = {.ca_file = at(pki, "cluster-ca.crt"), .cert = crt, .key = key};
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  srv_start(&s);
  int r = get("https", "127.0.0.1", s.port, &o, &b, &e);
  srv_join(&s);
  assert_int_equal(r, KL_EIO);
  /* The server's alert, or (when it closed before we read the alert) the close after our
   * handshake: either way the message points at our certificate. */
  if (strstr(e.msg, "the server refused our client certificate") == NULL)
    assert_has(e.msg, "does it accept our client certificate");
  assert_false(s.handshake_ok);
  kl_buf_free(&b);
}

static void test_bad_options(void **state) {
  (void)state;
  kl_err_t e = {0};
  char crt[512], key[512], ca[512];
  snprintf(crt, sizeof crt, "%s", at(pki, "nodes/admin-operator.crt"));
  snprintf(key, sizeof key, "%s", at(other, "nodes/admin-operator.key"));
  snprintf(ca, sizeof ca, "%s", at(pki, "no-such-ca.crt"));
  kl_net_tls_opts_t mismatch = {.cert = crt, .key = key}, nokey = {.cert = crt}, noca = {.ca_file = ca};
  assert_int_equal(kl_net_set_tls_defaults(&mismatch, &e), KL_EINVAL);
  assert_has(e.msg, "does not match the certificate");
  assert_int_equal(kl_net_set_tls_defaults(&nokey, &e), KL_EINVAL);
  assert_has(e.msg, "needs its key");
  assert_int_equal(kl_net_set_tls_defaults(&noca, &e), KL_EIO);
  assert_has(e.msg, "CA file");
  assert_has(e.msg, "no-such-ca.crt");
  /* A key file that is a certificate. */
  kl_net_tls_opts_t notkey = {.cert = crt, .key = crt};
  assert_int_not_equal(kl_net_set_tls_defaults(&notkey, &e), 0);
  assert_has(e.msg, "client key");
}

/* kl_net_request (what signclient and extclient call) uses the defaults. */
static void test_defaults(void **state) {
  (void)state;
  char crt[512], key[512], ca[512];
  snprintf(crt, sizeof crt, "%s", at(pki, "nodes/admin-operator.crt"));
  snprintf(key, sizeof key, "%s", at(pki, "nodes/admin-operator.key"));
  snprintf(ca, sizeof ca, "%s", at(pki, "cluster-ca.crt"));
  kl_net_tls_opts_t o = {.ca_file = ca, .cert = crt, .key = key};
  kl_err_t e = {0};
  kl_url_t u;
  int status = 0;
  char url[100];
  for (int round = 0; round < 2; round++) {
    srv_t s = {.crt = at(pki, "nodes/core-1.crt"), .key = at(pki, "nodes/core-1.key"), .client_ca = ca};
    kl_buf_t b = KL_BUF_INIT;
    if (round == 0) assert_int_equal(kl_net_set_tls_defaults(&o, &e), 0);
    else assert_int_equal(kl_net_set_tls_defaults(NULL, &e), 0);
    memset(crt, 'x', 8); /* the defaults hold copies */
    srv_start(&s);
    snprintf(url, sizeof url, "https://localhost:%d/members/add", s.port);
    assert_int_equal(kl_url_parse(url, &u, &e), 0);
    int r = kl_net_request(&u, (const uint8_t *)"4/x", 3, "text/plain", 5000, 1 << 16, &b, &status, &e);
    srv_join(&s);
    if (round == 0) {
      if (r) fail_msg("%s", e.msg);
      assert_int_equal(status, 200);
      assert_string_equal(s.peer, "keyless://admin/operator");
      assert_has(s.request, "POST /members/add HTTP/1.1\r\n");
    } else {
      assert_int_equal(r, KL_EIO); /* back to the system store */
      assert_has(e.msg, "certificate verify failed");
    }
    kl_buf_free(&b);
  }
}

static void test_plain_port(void **state) {
  (void)state;
  srv_t s = {.eager = true};
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  srv_start(&s);
  int r = get("https", "127.0.0.1", s.port, NULL, &b, &e);
  srv_join(&s);
  assert_int_equal(r, KL_EIO);
  assert_has(e.msg, "is it an https port?");
  kl_buf_free(&b);
  /* and http to the same kind of server works */
  srv_t p = {0};
  srv_start(&p);
  r = get("http", "127.0.0.1", p.port, NULL, &b, &e);
  srv_join(&p);
  if (r) fail_msg("%s", e.msg);
  assert_string_equal((const char *)b.p, "hello anonymous");
  kl_buf_free(&b);
}

static void test_handshake_timeout(void **state) {
  (void)state;
  int port, fd = listen_loopback(&port); /* never accepted: the kernel completes the connect */
  char url[100];
  kl_url_t u;
  kl_buf_t b = KL_BUF_INIT;
  kl_err_t e = {0};
  int status;
  snprintf(url, sizeof url, "https://127.0.0.1:%d/", port);
  assert_int_equal(kl_url_parse(url, &u, &e), 0);
  struct timeval t0, t1;
  gettimeofday(&t0, NULL);
  int r = kl_net_request_tls(&u, NULL, NULL, 0, NULL, 300, 1024, &b, &status, &e);
  gettimeofday(&t1, NULL);
  close(fd);
  assert_int_equal(r, KL_EIO);
  assert_has(e.msg, "TLS handshake with 127.0.0.1: timed out after 300 ms");
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
  assert_true(ms >= 250 && ms < 5000);
  kl_buf_free(&b);
}

static void test_url_forms(void **state) {
  (void)state;
  kl_url_t u;
  kl_err_t e = {0};
  assert_int_equal(kl_url_parse("https://gw.example.org/gw", &u, &e), 0);
  assert_true(u.tls);
  assert_int_equal(u.kind, KL_URL_HTTP);
  assert_string_equal(u.host, "gw.example.org");
  assert_string_equal(u.port, "443");
  assert_string_equal(u.path, "/gw");
  assert_int_equal(kl_url_parse("ksi+https://anon:s3cr3t@ext.example.org:8443/", &u, &e), 0);
  assert_true(u.tls);
  assert_string_equal(u.user, "anon");
  assert_string_equal(u.key, "s3cr3t");
  assert_string_equal(u.port, "8443");
  assert_int_equal(kl_url_parse("http://[::1]:9104/status", &u, &e), 0);
  assert_false(u.tls);
  assert_string_equal(u.host, "::1");
  assert_string_equal(u.port, "9104");
  assert_int_equal(kl_url_parse("https://[::1]/", &u, &e), 0);
  assert_string_equal(u.port, "443");
  assert_int_equal(kl_url_parse("http://example.org", &u, &e), 0);
  assert_false(u.tls);
  assert_string_equal(u.port, "80");
  assert_string_equal(u.path, "/");
  assert_int_equal(kl_url_parse("https://[::1/", &u, &e), KL_EINVAL);
  assert_int_equal(kl_url_parse("https://[::1]x/", &u, &e), KL_EINVAL);
  assert_int_equal(kl_url_parse("ftp://example.org/", &u, &e), KL_EINVAL);
  assert_has(e.msg, "https://");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_forms),         cmocka_unit_test(test_right_ca),
      cmocka_unit_test(test_wrong_ca),          cmocka_unit_test(test_host_mismatch),
      cmocka_unit_test(test_client_cert),       cmocka_unit_test(test_client_cert_missing),
      cmocka_unit_test(test_client_cert_other_ca), cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_defaults),          cmocka_unit_test(test_plain_port),
      cmocka_unit_test(test_handshake_timeout),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
