/* Blocking loopback client helpers for the server tests (test_http_server.c,
 * test_tlv_server.c). The server runs on the test's uv loop in the main thread; the client
 * runs in a second thread with these helpers. Client-side checks record the first failure in
 * nt_failure (cmocka asserts must stay on the main thread); every read has a 5 s timeout, so a
 * hung server fails the test instead of hanging it. */
#ifndef KL_NETTEST_H
#define KL_NETTEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static char nt_failure[512];

static inline void nt_fail(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void nt_fail(int line, const char *fmt, ...) {
  if (nt_failure[0]) return;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(nt_failure, sizeof nt_failure, "client line %d: %s", line, msg);
}
#define NT_CHECK(cond, ...)                  \
  do {                                       \
    if (!(cond)) nt_fail(__LINE__, __VA_ARGS__); \
  } while (0)

static inline int nt_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static inline bool nt_send(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= (size_t)w;
  }
  return true;
}

static inline bool nt_sends(int fd, const char *s) { return nt_send(fd, s, strlen(s)); }

/* Closes with a reset (SO_LINGER 0), so the server sees ECONNRESET rather than EOF. */
static inline void nt_reset(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

/* Bytes received but not yet consumed, per connection. */
typedef struct nt_buf {
  char data[1 << 20];
  size_t len;
} nt_buf_t;

/* Reads more; false on EOF, error or timeout. */
static inline bool nt_fill(int fd, nt_buf_t *b) {
  if (b->len == sizeof b->data) return false;
  for (;;) {
    ssize_t k = recv(fd, b->data + b->len, sizeof b->data - b->len, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    b->len += (size_t)k;
    return true;
  }
}

static inline void nt_consume(nt_buf_t *b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

/* True when the server closed the connection (EOF or reset) with nothing more to read. */
static inline bool nt_closed(int fd, nt_buf_t *b) {
  if (b->len) return false;
  char c;
  ssize_t k;
  do k = recv(fd, &c, 1, 0);
  while (k < 0 && errno == EINTR);
  return k == 0 || (k < 0 && (errno == ECONNRESET || errno == EPIPE));
}

static inline const char *nt_find(const char *h, size_t hn, const char *needle, bool nocase) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= hn && i <= hn - n; i++)
    if ((nocase ? strncasecmp(h + i, needle, n) : strncmp(h + i, needle, n)) == 0) return h + i;
  return NULL;
}

typedef struct nt_resp {
  int status;
  char headers[4096];
  char body[1 << 17];
  size_t body_len;
} nt_resp_t;

/* Reads one HTTP response (Content-Length bodies only, as our server sends). */
static inline bool nt_read_response(int fd, nt_buf_t *b, nt_resp_t *r) {
  const char *end;
  for (;;) {
    end = nt_find(b->data, b->len, "\r\n\r\n", false);
    if (end) break;
    if (!nt_fill(fd, b)) return false;
  }
  size_t hlen = (size_t)(end - b->data) + 4;
  if (hlen >= sizeof r->headers) return false;
  memcpy(r->headers, b->data, hlen);
  r->headers[hlen] = '\0';
  if (sscanf(r->headers, "HTTP/1.1 %d", &r->status) != 1) return false;
  size_t cl = 0;
  const char *p = nt_find(r->headers, hlen, "\r\ncontent-length:", true);
  if (p) cl = strtoul(p + 17, NULL, 10);
  if (cl > sizeof r->body) return false;
  while (b->len < hlen + cl)
    if (!nt_fill(fd, b)) return false;
  memcpy(r->body, b->data + hlen, cl);
  r->body_len = cl;
  if (cl < sizeof r->body) r->body[cl] = '\0';
  nt_consume(b, hlen + cl);
  return true;
}

#endif
