/* Blocking HTTP/1.1 and ksi+tcp client for the command-line tools. */
#include "keyless/netclient.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyless/tlv.h"

int kl_url_parse(const char *url, kl_url_t *u, kl_err_t *e) {
  const char *p;
  memset(u, 0, sizeof *u);
  if (strncmp(url, "http://", 7) == 0) {
    u->kind = KL_URL_HTTP;
    p = url + 7;
  } else if (strncmp(url, "ksi+http://", 11) == 0 || strncmp(url, "ksi://", 6) == 0) {
    u->kind = KL_URL_HTTP;
    p = strstr(url, "//") + 2;
  } else if (strncmp(url, "ksi+tcp://", 10) == 0) {
    u->kind = KL_URL_TCP;
    p = url + 10;
  } else if (strncmp(url, "https://", 8) == 0 || strncmp(url, "ksi+https://", 12) == 0) {
    return kl_err_set(e, KL_EUNSUPPORTED, "%s: https is not supported yet (use http behind a TLS proxy)", url);
  } else {
    return kl_err_set(e, KL_EINVAL, "%s: unsupported URL (http://, ksi+http://, ksi+tcp://)", url);
  }
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
  const char *colon = memchr(p, ':', (size_t)(hostend - p));
  size_t hl = colon ? (size_t)(colon - p) : (size_t)(hostend - p);
  if (hl == 0 || hl >= sizeof u->host) return kl_err_set(e, KL_EINVAL, "%s: bad host", url);
  memcpy(u->host, p, hl);
  if (colon) {
    size_t pl = (size_t)(hostend - colon - 1);
    if (pl == 0 || pl >= sizeof u->port || strspn(colon + 1, "0123456789") < pl)
      return kl_err_set(e, KL_EINVAL, "%s: bad port", url);
    memcpy(u->port, colon + 1, pl);
  } else if (u->kind == KL_URL_TCP) {
    return kl_err_set(e, KL_EINVAL, "%s: ksi+tcp needs a port", url);
  } else {
    strcpy(u->port, "80");
  }
  snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
  return 0;
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

static int send_all(int fd, const uint8_t *p, size_t n, int timeout_ms, kl_err_t *e) {
  while (n > 0) {
    if (wait_fd(fd, POLLOUT, timeout_ms) <= 0) return kl_err_set(e, KL_EIO, "send: timed out");
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (w <= 0) return kl_err_set(e, KL_EIO, "send: %s", strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads until done(buf) says the message is complete, EOF, or max bytes. */
static int recv_until(int fd, kl_buf_t *b, size_t max, int timeout_ms, int (*done)(const kl_buf_t *, size_t *),
                      size_t *need, kl_err_t *e) {
  uint8_t tmp[16384];
  for (;;) {
    int d = done(b, need);
    if (d != 0) return d < 0 ? kl_err_set(e, KL_EFORMAT, "malformed response") : 0;
    if (b->len > max) return kl_err_set(e, KL_ETOOBIG, "response larger than %zu bytes", max);
    if (wait_fd(fd, POLLIN, timeout_ms) <= 0) return kl_err_set(e, KL_EIO, "receive: timed out after %d ms", timeout_ms);
    ssize_t r = recv(fd, tmp, sizeof tmp, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r < 0) return kl_err_set(e, KL_EIO, "receive: %s", strerror(errno));
    if (r == 0) return done(b, need) > 0 ? 0 : kl_err_set(e, KL_EIO, "connection closed before the response was complete");
    kl_buf_put(b, tmp, (size_t)r);
    if (!kl_buf_ok(b)) return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
}

static int tlv_done(const kl_buf_t *b, size_t *need) {
  if (b->len < 2) return 0;
  size_t total = (b->p[0] & 0x80) ? (b->len < 4 ? 0 : 4 + ((size_t)b->p[2] << 8 | b->p[3])) : 2 + (size_t)b->p[1];
  if (total == 0 || b->len < total) return 0;
  *need = total;
  return 1;
}

/* HTTP: headers end, then Content-Length bytes (or until close when absent). */
static int http_done(const kl_buf_t *b, size_t *need) {
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
  if (cl == NULL) return 0; /* read to EOF */
  char *stop;
  unsigned long long n = strtoull(cl, &stop, 10);
  if (stop == cl || n > (1ull << 30)) return -1;
  if (b->len < hlen + n) return 0;
  *need = hlen + (size_t)n;
  return 1;
}

int kl_net_request(const kl_url_t *u, const uint8_t *body, size_t len, const char *content_type, int timeout_ms,
                   size_t max_body, kl_buf_t *out, int *status, kl_err_t *e) {
  kl_err_t local = {0};
  if (e == NULL) e = &local;
  kl_buf_t resp = KL_BUF_INIT, req = KL_BUF_INIT;
  size_t need = 0;
  int r, fd = connect_to(u, timeout_ms, e);
  if (fd < 0) return -fd;
  if (u->kind == KL_URL_TCP) {
    if (body == NULL) {
      r = kl_err_set(e, KL_EINVAL, "ksi+tcp needs a PDU to send");
      goto out;
    }
    if ((r = send_all(fd, body, len, timeout_ms, e)) || (r = recv_until(fd, &resp, max_body, timeout_ms, tlv_done, &need, e)))
      goto out;
    kl_buf_put(out, resp.p, need);
    *status = 200;
    r = kl_buf_check(out, e);
    goto out;
  }
  char hdr[2048];
  int hl = snprintf(hdr, sizeof hdr,
                    "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: keyless\r\nConnection: close\r\n", body ? "POST" : "GET",
                    u->path, u->host, u->port);
  kl_buf_put(&req, hdr, (size_t)hl);
  if (body) {
    hl = snprintf(hdr, sizeof hdr, "Content-Type: %s\r\nContent-Length: %zu\r\n", content_type ? content_type : "application/octet-stream", len);
    kl_buf_put(&req, hdr, (size_t)hl);
  }
  kl_buf_put(&req, "\r\n", 2);
  if (body) kl_buf_put(&req, body, len);
  if ((r = kl_buf_check(&req, e)) || (r = send_all(fd, req.p, req.len, timeout_ms, e)) ||
      (r = recv_until(fd, &resp, max_body + 8192, timeout_ms, http_done, &need, e)))
    goto out;
  if (need == 0) need = resp.len;
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
  close(fd);
  kl_buf_free(&resp);
  kl_buf_free(&req);
  return r;
}
