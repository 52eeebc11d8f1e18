/* Blocking HTTP/1.1 (plain or TLS) and ksi+tcp client for the command-line tools.
 *
 * One non-blocking socket driven with poll(), so that every wait has the caller's timeout: the
 * connect, the TLS handshake (as a whole), and each read and write. TLS is OpenSSL on the same
 * socket (SSL_set_fd); SIGPIPE is blocked in the calling thread while a request runs, since
 * OpenSSL writes to the socket without MSG_NOSIGNAL. */
#include "keyless/netclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "keyless/tlv.h"

/* ---- URLs ---- */

int kl_url_parse(const char *url, kl_url_t *u, kl_err_t *e) {
  static const struct {
    const char *prefix;
    int kind;
    bool tls;
  } schemes[] = {{"http://", KL_URL_HTTP, false},     {"https://", KL_URL_HTTP, true},
                 {"ksi+http://", KL_URL_HTTP, false}, {"ksi+https://", KL_URL_HTTP, true},
                 {"ksi://", KL_URL_HTTP, false},      {"ksi+tcp://", KL_URL_TCP, false}};
  const char *p = NULL;
  memset(u, 0, sizeof *u);
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && p == NULL; i++)
    if (strncmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) == 0) {
      u->kind = schemes[i].kind;
      u->tls = schemes[i].tls;
      p = url + strlen(schemes[i].prefix);
    }
  if (p == NULL)
    return kl_err_set(e, KL_EINVAL, "%s: unsupported URL (http://, https://, ksi+http://, ksi+https://, ksi+tcp://)", url);
  const char *slash = strchr(p, '/');
  const char *hostend = slash ? slash : p + strlen(p);
  const char *at = memchr(p, '@', (size_t)(hostend - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    size_t ul = colon ? (size_t)(colon - p) : (size_t)(at - p);
    size_t kl = colon ? (size_t)(at - colon - 1) : 0;
    if (ul >= sizeof u->user || kl >= sizeof u->key) return kl_err_set(e, KL_EINVAL, "%s: credentials too long", url);
    memcpy(u->user, p, ul);
    if (colon) memcpy(u->key, colon + 1, kl);
    p = at + 1;
  }
  const char *hs = p, *he, *colon;
  if (*p == '[') { /* [IPv6]:port */
    const char *rb = memchr(p, ']', (size_t)(hostend - p));
    if (rb == NULL || (rb + 1 < hostend && rb[1] != ':')) return kl_err_set(e, KL_EINVAL, "%s: bad host", url);
    hs = p + 1;
    he = rb;
    colon = rb + 1 < hostend ? rb + 1 : NULL;
  } else {
    colon = memchr(p, ':', (size_t)(hostend - p));
    he = colon ? colon : hostend;
  }
  size_t hl = (size_t)(he - hs);
  if (hl == 0 || hl >= sizeof u->host) return kl_err_set(e, KL_EINVAL, "%s: bad host", url);
  memcpy(u->host, hs, hl);
  if (colon) {
    size_t pl = (size_t)(hostend - colon - 1);
    if (pl == 0 || pl >= sizeof u->port || strspn(colon + 1, "0123456789") < pl)
      return kl_err_set(e, KL_EINVAL, "%s: bad port", url);
    memcpy(u->port, colon + 1, pl);
  } else if (u->kind == KL_URL_TCP) {
    return kl_err_set(e, KL_EINVAL, "%s: ksi+tcp needs a port", url);
  } else {
    strcpy(u->port, u->tls ? "443" : "80");
  }
  snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
  return 0;
}

/* ---- the socket ---- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short ev, int timeout_ms) {
  struct pollfd pfd = {fd, ev, 0};
  int r;
  do r = poll(&pfd, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  return r;
}

static int connect_to(const kl_url_t *u, int timeout_ms, kl_err_t *e) {
  struct addrinfo hints = {0}, *res, *ai;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(u->host, u->port, &hints, &res);
  if (rc) return -kl_err_set(e, KL_EIO, "%s:%s: %s", u->host, u->port, gai_strerror(rc));
  int fd = -1, err = 0;
  for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      err = errno;
      close(fd);
      fd = -1;
      continue;
    }
    socklen_t sl = sizeof err;
    if (wait_fd(fd, POLLOUT, timeout_ms) <= 0) err = ETIMEDOUT;
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) err = errno;
    if (err) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return -kl_err_set(e, KL_EIO, "cannot connect to %s:%s: %s", u->host, u->port, strerror(err ? err : ECONNREFUSED));
  return fd;
}

/* ---- TLS ---- */

typedef struct conn {
  int fd;
  SSL *ssl;            /* NULL: plain */
  int timeout_ms;
  const char *host;    /* for messages */
  const char *trusted; /* "the system CA store" or the CA file, for messages */
  bool have_cert;      /* a client certificate is configured */
  bool asked_cert;     /* the server sent a CertificateRequest */
  bool insecure;
} conn_t;

/* The first OpenSSL error's reason (for files: "no start line" rather than "PEM lib"). */
static const char *ssl_first_reason(const char *fallback) {
  unsigned long err = ERR_peek_error();
  const char *s = err ? ERR_reason_error_string(err) : NULL;
  return s ? s : fallback;
}

/* The last OpenSSL error's reason ("wrong version number"), or fallback. */
static const char *ssl_reason(const char *fallback) {
  unsigned long err = ERR_peek_last_error();
  const char *s = err ? ERR_reason_error_string(err) : NULL;
  return s ? s : fallback;
}

static bool is_ip_literal(const char *host) {
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* Loads the options into a new client context: TLS 1.2+, peer verification against ca_file
 * or the system store, and the client certificate. Errors name the file. */
static int tls_ctx_new(const kl_net_tls_opts_t *o, SSL_CTX **out, kl_err_t *e) {
  static const kl_net_tls_opts_t none = {0};
  struct stat st;
  int r = 0;
  if (o == NULL) o = &none;
  *out = NULL;
  if (o->key != NULL && o->cert == NULL)
    return kl_err_set(e, KL_EINVAL, "a client key (%s) needs its certificate too", o->key);
  if (o->cert != NULL && o->key == NULL)
    return kl_err_set(e, KL_EINVAL, "the client certificate %s needs its key too", o->cert);
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) return kl_err_set(e, KL_ENOMEM, "cannot create a TLS context: %s", ssl_reason("out of memory"));
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
    r = kl_err_set(e, KL_ECRYPTO, "cannot require TLS 1.2: %s", ssl_reason("unknown error"));
    goto out;
  }
  SSL_CTX_set_verify(ctx, o->insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  if (o->ca_file != NULL) {
    if (stat(o->ca_file, &st) != 0) {
      r = kl_err_set(e, KL_EIO, "CA file %s: %s", o->ca_file, strerror(errno));
      goto out;
    }
    bool dir = S_ISDIR(st.st_mode);
    if (!SSL_CTX_load_verify_locations(ctx, dir ? NULL : o->ca_file, dir ? o->ca_file : NULL)) {
      r = kl_err_set(e, KL_EIO, "CA file %s: %s", o->ca_file, ssl_first_reason("no certificates"));
      goto out;
    }
  } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
    r = kl_err_set(e, KL_EIO, "cannot load the system CA store: %s", ssl_reason("unknown error"));
    goto out;
  }
  if (o->cert != NULL) {
    if (access(o->cert, R_OK) != 0) {
      r = kl_err_set(e, KL_EIO, "client certificate %s: %s", o->cert, strerror(errno));
      goto out;
    }
    if (access(o->key, R_OK) != 0) {
      r = kl_err_set(e, KL_EIO, "client key %s: %s", o->key, strerror(errno));
      goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
      r = kl_err_set(e, KL_EIO, "client certificate %s: no PEM certificate read (%s)", o->cert, ssl_first_reason("?"));
      goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
      unsigned long err = ERR_peek_last_error();
      if (ERR_GET_LIB(err) == ERR_LIB_X509 && ERR_GET_REASON(err) == X509_R_KEY_VALUES_MISMATCH)
        r = kl_err_set(e, KL_EINVAL, "client key %s does not match the certificate %s", o->key, o->cert);
      else
        r = kl_err_set(e, KL_EIO, "client key %s: no PEM private key read (%s)", o->key, ssl_first_reason("?"));
      goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      r = kl_err_set(e, KL_EINVAL, "client key %s does not match the certificate %s", o->key, o->cert);
      goto out;
    }
  }
out:
  ERR_clear_error();
  if (r) SSL_CTX_free(ctx);
  else *out = ctx;
  return r;
}

/* Called when the server asks for a client certificate (whether or not we have one). */
static int cert_requested(SSL *ssl, void *arg) {
  (void)ssl;
  ((conn_t *)arg)->asked_cert = true;
  return 1;
}

static bool alert_about_our_cert(unsigned long err) {
  if (ERR_GET_LIB(err) != ERR_LIB_SSL) return false;
  switch (ERR_GET_REASON(err)) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE: return true;
    default: return false;
  }
}

/* The message for a failed TLS operation (what = "TLS handshake", "receive", "send"), from
 * the verification result, what the server asked and the error queue. */
static int tls_fail(conn_t *c, const char *what, int ssl_err, int sys_err, kl_err_t *e) {
  unsigned long err = ERR_peek_last_error();
  long vr = SSL_get_verify_result(c->ssl);
  int r;
  if (!c->insecure && vr != X509_V_OK && strcmp(what, "TLS handshake") == 0) {
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
      r = kl_err_set(e, KL_EIO, "host name mismatch: the server's certificate does not name %s (no subjectAltName %s:%s)",
                     c->host, vr == X509_V_ERR_IP_ADDRESS_MISMATCH ? "IP" : "DNS", c->host);
    else
      r = kl_err_set(e, KL_EIO, "certificate verify failed: %s (trusting %s)", X509_verify_cert_error_string(vr),
                     c->trusted);
  } else if (c->asked_cert && !c->have_cert &&
             (strcmp(what, "TLS handshake") == 0 || err == 0 || alert_about_our_cert(err))) {
    r = kl_err_set(e, KL_EIO, "the server asked for a client certificate (use --cert/--key)%s%s",
                   err ? ": " : "", err ? ssl_reason("") : "");
  } else if (c->asked_cert && err && alert_about_our_cert(err)) {
    r = kl_err_set(e, KL_EIO, "the server refused our client certificate: %s", ssl_reason(""));
  } else if (err && ERR_GET_LIB(err) == ERR_LIB_SSL &&
             (ERR_GET_REASON(err) == SSL_R_WRONG_VERSION_NUMBER || ERR_GET_REASON(err) == SSL_R_PACKET_LENGTH_TOO_LONG)) {
    r = kl_err_set(e, KL_EIO, "%s failed: %s (is it an https port?)", what, ssl_reason(""));
  } else if (ssl_err == SSL_ERROR_SYSCALL || (ssl_err == SSL_ERROR_SSL && err == 0)) {
    r = kl_err_set(e, KL_EIO, "%s failed: %s", what, sys_err ? strerror(sys_err) : "the connection was closed");
  } else {
    r = kl_err_set(e, KL_EIO, "%s failed: %s", what, ssl_reason("unknown TLS error"));
  }
  ERR_clear_error();
  return r;
}

/* Waits as SSL_get_error says; false on a timeout or a fatal error. */
static bool ssl_wait(conn_t *c, int ssl_err, int timeout_ms) {
  if (ssl_err == SSL_ERROR_WANT_READ) return wait_fd(c->fd, POLLIN, timeout_ms) > 0;
  if (ssl_err == SSL_ERROR_WANT_WRITE) return wait_fd(c->fd, POLLOUT, timeout_ms) > 0;
  return false;
}

static int tls_handshake(conn_t *c, SSL_CTX *ctx, kl_err_t *e) {
  if ((c->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(c->ssl, c->fd))
    return kl_err_set(e, KL_ENOMEM, "cannot create a TLS session: %s", ssl_reason("out of memory"));
  SSL_set_cert_cb(c->ssl, cert_requested, c);
  if (!c->insecure) {
    SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = is_ip_literal(c->host) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host)
                                    : SSL_set1_host(c->ssl, c->host);
    if (!ok) return kl_err_set(e, KL_EINVAL, "cannot check the server's name %s: %s", c->host, ssl_reason("bad name"));
  }
  if (!is_ip_literal(c->host) && !SSL_set_tlsext_host_name(c->ssl, c->host))
    return kl_err_set(e, KL_EINVAL, "cannot send the server name %s: %s", c->host, ssl_reason("bad name"));
  int64_t deadline = now_ms() + c->timeout_ms;
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(c->ssl);
    if (rc == 1) return 0;
    int se = SSL_get_error(c->ssl, rc), sys = errno;
    if (se != SSL_ERROR_WANT_READ && se != SSL_ERROR_WANT_WRITE) return tls_fail(c, "TLS handshake", se, sys, e);
    int64_t left = deadline - now_ms();
    if (left <= 0 || !ssl_wait(c, se, (int)left))
      return kl_err_set(e, KL_EIO, "TLS handshake with %s: timed out after %d ms", c->host, c->timeout_ms);
  }
}

/* ---- I/O on a plain or TLS connection ---- */

static int conn_send(conn_t *c, const uint8_t *p, size_t n, kl_err_t *e) {
  while (n > 0) {
    size_t w = 0;
    if (c->ssl) {
      ERR_clear_error();
      errno = 0;
      if (SSL_write_ex(c->ssl, p, n, &w) != 1) {
        int se = SSL_get_error(c->ssl, 0), sys = errno;
        if (se != SSL_ERROR_WANT_READ && se != SSL_ERROR_WANT_WRITE) {
          /* With TLS 1.3 the server judges our certificate after our handshake is done: its
           * alert may be waiting to be read while the write already failed. */
          if (c->asked_cert && c->have_cert && (sys == ECONNRESET || sys == EPIPE || se == SSL_ERROR_SYSCALL)) {
            uint8_t tmp[64];
            size_t got = 0;
            ERR_clear_error();
            if (SSL_read_ex(c->ssl, tmp, sizeof tmp, &got) != 1 && ERR_peek_last_error() != 0)
              return tls_fail(c, "receive", SSL_get_error(c->ssl, 0), errno, e);
            ERR_clear_error();
            return kl_err_set(e, KL_EIO,
                              "send failed: %s: the server closed the connection after the handshake (does it accept "
                              "our client certificate: its CA, its role?)",
                              strerror(sys ? sys : ECONNRESET));
          }
          return tls_fail(c, "send", se, sys, e);
        }
        if (!ssl_wait(c, se, c->timeout_ms)) return kl_err_set(e, KL_EIO, "send: timed out");
        continue;
      }
    } else {
      if (wait_fd(c->fd, POLLOUT, c->timeout_ms) <= 0) return kl_err_set(e, KL_EIO, "send: timed out");
      ssize_t s = send(c->fd, p, n, MSG_NOSIGNAL);
      if (s < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (s <= 0) return kl_err_set(e, KL_EIO, "send: %s", strerror(errno));
      w = (size_t)s;
    }
    p += w;
    n -= w;
  }
  return 0;
}

/* Reads some bytes into buf; *got = 0 at the end of the stream (*clean: a TLS close_notify or
 * a plain EOF, not a TLS connection cut short). */
static int conn_recv(conn_t *c, uint8_t *buf, size_t cap, size_t *got, bool *clean, kl_err_t *e) {
  *got = 0;
  *clean = true;
  for (;;) {
    if (c->ssl) {
      ERR_clear_error();
      errno = 0;
      if (SSL_read_ex(c->ssl, buf, cap, got) == 1) return 0;
      int se = SSL_get_error(c->ssl, 0), sys = errno;
      if (se == SSL_ERROR_ZERO_RETURN) return 0;
      unsigned long err = ERR_peek_last_error();
      if (se == SSL_ERROR_SSL && ERR_GET_LIB(err) == ERR_LIB_SSL &&
          ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING && !(c->asked_cert && !c->have_cert)) {
        ERR_clear_error();
        *clean = false;
        return 0;
      }
      if (se != SSL_ERROR_WANT_READ && se != SSL_ERROR_WANT_WRITE) return tls_fail(c, "receive", se, sys, e);
      if (!ssl_wait(c, se, c->timeout_ms))
        return kl_err_set(e, KL_EIO, "receive: timed out after %d ms", c->timeout_ms);
    } else {
      if (wait_fd(c->fd, POLLIN, c->timeout_ms) <= 0)
        return kl_err_set(e, KL_EIO, "receive: timed out after %d ms", c->timeout_ms);
      ssize_t r = recv(c->fd, buf, cap, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r < 0) return kl_err_set(e, KL_EIO, "receive: %s", strerror(errno));
      *got = (size_t)r;
      return 0;
    }
  }
}

/* ---- messages ---- */

/* done(buf, &need, eof): 1 when the message is complete (its length in *need), 0 for more,
 * -1 when malformed. */
typedef int done_fn(const kl_buf_t *, size_t *, bool);

/* Reads until done says the message is complete, EOF, or max bytes. */
static int recv_until(conn_t *c, kl_buf_t *b, size_t max, done_fn *done, size_t *need, kl_err_t *e) {
  uint8_t tmp[16384];
  for (;;) {
    int d = done(b, need, false);
    if (d != 0) return d < 0 ? kl_err_set(e, KL_EFORMAT, "malformed response") : 0;
    if (b->len > max) return kl_err_set(e, KL_ETOOBIG, "response larger than %zu bytes", max);
    size_t got;
    bool clean;
    int r = conn_recv(c, tmp, sizeof tmp, &got, &clean, e);
    if (r) return r;
    if (got == 0) {
      if (done(b, need, clean) > 0) return 0;
      if (b->len == 0 && c->ssl && c->asked_cert)
        return kl_err_set(e, KL_EIO, "the server closed the connection without answering: does it accept our client "
                                     "certificate (its role)?");
      if (b->len == 0)
        return kl_err_set(e, KL_EIO, "the server closed the connection without answering%s",
                          c->ssl ? "" : " (is it an https port?)");
      return kl_err_set(e, KL_EIO, "connection closed before the response was complete%s",
                        clean ? "" : " (no TLS close_notify)");
    }
    kl_buf_put(b, tmp, got);
    if (!kl_buf_ok(b)) return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
}

static int tlv_done(const kl_buf_t *b, size_t *need, bool eof) {
  (void)eof;
  if (b->len < 2) return 0;
  size_t total = (b->p[0] & 0x80) ? (b->len < 4 ? 0 : 4 + ((size_t)b->p[2] << 8 | b->p[3])) : 2 + (size_t)b->p[1];
  if (total == 0 || b->len < total) return 0;
  *need = total;
  return 1;
}

/* HTTP: headers end, then Content-Length bytes, or everything until a clean close when there
 * is no Content-Length. */
static int http_done(const kl_buf_t *b, size_t *need, bool eof) {
  const uint8_t *end = NULL;
  for (size_t i = 3; i < b->len; i++)
    if (memcmp(b->p + i - 3, "\r\n\r\n", 4) == 0) {
      end = b->p + i + 1;
      break;
    }
  if (end == NULL) return 0;
  size_t hlen = (size_t)(end - b->p);
  const char *cl = NULL;
  for (size_t i = 0; i + 15 < hlen; i++)
    if (strncasecmp((const char *)b->p + i, "\r\nContent-Length:", 17) == 0) {
      cl = (const char *)b->p + i + 17;
      break;
    }
  if (cl == NULL) {
    if (!eof) return 0;
    *need = b->len;
    return 1;
  }
  char *stop;
  unsigned long long n = strtoull(cl, &stop, 10);
  if (stop == cl || n > (1ull << 30)) return -1;
  if (b->len < hlen + n) return 0;
  *need = hlen + (size_t)n;
  return 1;
}

static int exchange(conn_t *c, const kl_url_t *u, const uint8_t *body, size_t len, const char *content_type,
                    size_t max_body, kl_buf_t *out, int *status, kl_err_t *e) {
  kl_buf_t resp = KL_BUF_INIT, req = KL_BUF_INIT;
  size_t need = 0;
  int r;
  if (u->kind == KL_URL_TCP) {
    if (body == NULL) return kl_err_set(e, KL_EINVAL, "ksi+tcp needs a PDU to send");
    if ((r = conn_send(c, body, len, e)) || (r = recv_until(c, &resp, max_body, tlv_done, &need, e))) goto out;
    kl_buf_put(out, resp.p, need);
    *status = 200;
    r = kl_buf_check(out, e);
    goto out;
  }
  char hdr[2048];
  bool v6 = strchr(u->host, ':') != NULL;
  int hl = snprintf(hdr, sizeof hdr,
                    "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: keyless\r\nConnection: close\r\n",
                    body ? "POST" : "GET", u->path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
  kl_buf_put(&req, hdr, (size_t)hl);
  if (body) {
    hl = snprintf(hdr, sizeof hdr, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                  content_type ? content_type : "application/octet-stream", len);
    kl_buf_put(&req, hdr, (size_t)hl);
  }
  kl_buf_put(&req, "\r\n", 2);
  if (body) kl_buf_put(&req, body, len);
  if ((r = kl_buf_check(&req, e)) || (r = conn_send(c, req.p, req.len, e)) ||
      (r = recv_until(c, &resp, max_body + 8192, http_done, &need, e)))
    goto out;
  int major, minor, code;
  if (resp.len < 12 || sscanf((const char *)resp.p, "HTTP/%d.%d %d", &major, &minor, &code) != 3) {
    r = kl_err_set(e, KL_EFORMAT, "%s:%s: not an HTTP response", u->host, u->port);
    goto out;
  }
  const uint8_t *bstart = NULL;
  for (size_t i = 3; i < resp.len; i++)
    if (memcmp(resp.p + i - 3, "\r\n\r\n", 4) == 0) {
      bstart = resp.p + i + 1;
      break;
    }
  size_t blen = need - (size_t)(bstart - resp.p);
  if (blen > max_body) {
    r = kl_err_set(e, KL_ETOOBIG, "response body of %zu bytes exceeds %zu", blen, max_body);
    goto out;
  }
  *status = code;
  kl_buf_put(out, bstart, blen);
  r = kl_buf_check(out, e);
out:
  kl_buf_free(&resp);
  kl_buf_free(&req);
  return r;
}

int kl_net_request_tls(const kl_url_t *u, const kl_net_tls_opts_t *tls, const uint8_t *body, size_t len,
                       const char *content_type, int timeout_ms, size_t max_body, kl_buf_t *out, int *status,
                       kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  SSL_CTX *ctx = NULL;
  int r;
  if (u->tls && (r = tls_ctx_new(tls, &ctx, e))) return r;
  conn_t c = {-1, NULL, timeout_ms, u->host, "the system CA store", false, false, false};
  if (tls) {
    c.have_cert = tls->cert != NULL;
    c.insecure = tls->insecure_skip_verify != 0;
    if (tls->ca_file) c.trusted = tls->ca_file;
  }
  /* OpenSSL writes with write(2): a peer gone away must be an error, not SIGPIPE. */
  sigset_t pipe_set, old_set, pending;
  bool pipe_was_pending = false;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  if (u->tls) {
    sigpending(&pending);
    pipe_was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  }
  if ((c.fd = connect_to(u, timeout_ms, e)) < 0) {
    r = -c.fd;
    goto out;
  }
  if (u->tls && (r = tls_handshake(&c, ctx, e))) goto out;
  r = exchange(&c, u, body, len, content_type, max_body, out, status, e);
  if (c.ssl && r == 0) SSL_shutdown(c.ssl); /* one close_notify, not waiting for the answer */
out:
  ERR_clear_error();
  if (c.ssl) SSL_free(c.ssl);
  if (c.fd >= 0) close(c.fd);
  SSL_CTX_free(ctx);
  if (u->tls) {
    struct timespec zero = {0, 0};
    sigpending(&pending);
    if (!pipe_was_pending && sigismember(&pending, SIGPIPE))
      while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
      }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
  }
  return r;
}

/* ---- process-wide defaults for kl_net_request ---- */

static pthread_mutex_t defaults_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char ca_file[4096], cert[4096], key[4096];
  int insecure;
} defaults;

static int copy_name(char *dst, size_t cap, const char *src, const char *what, kl_err_t *e) {
  if (src == NULL) {
    dst[0] = '\0';
    return 0;
  }
  if (src[0] == '\0') return kl_err_set(e, KL_EINVAL, "empty %s file name", what);
  if (strlen(src) >= cap) return kl_err_set(e, KL_EINVAL, "%s file name too long", what);
  strcpy(dst, src);
  return 0;
}

int kl_net_set_tls_defaults(const kl_net_tls_opts_t *tls, kl_err_t *e) {
  char ca[sizeof defaults.ca_file], cert[sizeof defaults.cert], key[sizeof defaults.key];
  SSL_CTX *ctx = NULL;
  int r;
  if (tls == NULL) {
    pthread_mutex_lock(&defaults_mu);
    memset(&defaults, 0, sizeof defaults);
    pthread_mutex_unlock(&defaults_mu);
    return 0;
  }
  if ((r = copy_name(ca, sizeof ca, tls->ca_file, "CA", e)) || (r = copy_name(cert, sizeof cert, tls->cert, "certificate", e)) ||
      (r = copy_name(key, sizeof key, tls->key, "key", e)) || (r = tls_ctx_new(tls, &ctx, e)))
    return r;
  SSL_CTX_free(ctx);
  pthread_mutex_lock(&defaults_mu);
  memcpy(defaults.ca_file, ca, sizeof ca);
  memcpy(defaults.cert, cert, sizeof cert);
  memcpy(defaults.key, key, sizeof key);
  defaults.insecure = tls->insecure_skip_verify;
  pthread_mutex_unlock(&defaults_mu);
  return 0;
}

int kl_net_request(const kl_url_t *u, const uint8_t *body, size_t len, const char *content_type, int timeout_ms,
                   size_t max_body, kl_buf_t *out, int *status, kl_err_t *e) {
  if (!u->tls) return kl_net_request_tls(u, NULL, body, len, content_type, timeout_ms, max_body, out, status, e);
  char *names = malloc(3 * sizeof defaults.ca_file);
  if (names == NULL) return kl_err_set(e, KL_ENOMEM, "out of memory");
  char *ca = names, *cert = names + sizeof defaults.ca_file, *key = cert + sizeof defaults.cert;
  kl_net_tls_opts_t o;
  pthread_mutex_lock(&defaults_mu);
  memcpy(ca, defaults.ca_file, sizeof defaults.ca_file);
  memcpy(cert, defaults.cert, sizeof defaults.cert);
  memcpy(key, defaults.key, sizeof defaults.key);
  o.insecure_skip_verify = defaults.insecure;
  pthread_mutex_unlock(&defaults_mu);
  o.ca_file = ca[0] ? ca : NULL;
  o.cert = cert[0] ? cert : NULL;
  o.key = key[0] ? key : NULL;
  int r = kl_net_request_tls(u, &o, body, len, content_type, timeout_ms, max_body, out, status, e);
  free(names);
  return r;
}
