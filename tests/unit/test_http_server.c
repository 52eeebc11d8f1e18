/* The HTTP server over real loopback sockets, in one process: the server on a uv loop in the
 * main thread, a blocking client in a second thread. Keep-alive, pipelining, 404/405, bodies
 * over the limit (declared and chunked), garbage, oversized headers, 100-continue, deferred
 * and orphaned responses, HTTP/1.0, the write watermark, the connection cap, the idle timeout
 * (also for a request that never completes), and a graceful shutdown that still answers a
 * request in progress and cuts one that is not answered in time; the loop closes clean. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/net.h"
#include "nettest.h"
#include "testutil.h"

static uv_loop_t loop;
static uv_async_t done_async;
static kl_http_server_t *srv, *cap_srv, *short_srv, *slow_srv;
static int port, cap_port, short_port, slow_port;
static int closed_servers;
static kl_http_req_t *held;      /* a request kept until shutdown */
static kl_http_req_t *held_slow; /* one kept until its connection was cut by the shutdown timeout */
static int hold_next, got_held, got_held_slow; /* shared with the client thread (atomics) */
static char big_body[65536];

/* ---- handlers (loop thread) ---- */

static void h_echo(kl_http_req_t *r, void *arg) {
  (void)arg;
  size_t n;
  const uint8_t *b = kl_http_req_body(r, &n);
  kl_http_req_add_header(r, "X-Test", "echo");
  kl_http_req_add_header(r, "Bad\r\nHeader", "ignored");
  kl_http_respond(r, 200, "text/plain", b, n);
}

static void h_hello(kl_http_req_t *r, void *arg) {
  (void)arg;
  kl_http_respond(r, 200, "text/plain", "hello", 5);
}

static void h_big(kl_http_req_t *r, void *arg) {
  (void)arg;
  kl_http_respond(r, 200, "application/octet-stream", big_body, sizeof big_body);
}

typedef struct later {
  uv_timer_t t;
  kl_http_req_t *r;
} later_t;

static void later_closed(uv_handle_t *h) { free(h->data); }

static void later_fire(uv_timer_t *t) {
  later_t *l = t->data;
  kl_http_respond(l->r, 200, "text/plain", "later", 5); /* maybe orphaned by now: dropped */
  uv_close((uv_handle_t *)t, later_closed);
}

static void h_later(kl_http_req_t *r, void *arg) {
  (void)arg;
  if (__atomic_load_n(&hold_next, __ATOMIC_SEQ_CST)) {
    held = r;
    __atomic_store_n(&got_held, 1, __ATOMIC_SEQ_CST);
    return;
  }
  later_t *l = calloc(1, sizeof *l);
  assert_non_null(l);
  l->r = r;
  uv_timer_init(&loop, &l->t);
  l->t.data = l;
  uv_timer_start(&l->t, later_fire, 20, 0);
}

static void h_hold(kl_http_req_t *r, void *arg) {
  (void)arg;
  held_slow = r;
  __atomic_store_n(&got_held_slow, 1, __ATOMIC_SEQ_CST);
}

static void on_closed(kl_http_server_t *s, void *arg) {
  (void)arg;
  closed_servers++;
  if (s == slow_srv && held_slow) { /* its connection is gone: the response is dropped, r freed */
    assert_false(kl_http_req_connected(held_slow));
    kl_http_respond(held_slow, 200, "text/plain", "too late", 8);
    held_slow = NULL;
  }
}

static void on_done(uv_async_t *a) {
  kl_http_server_close(srv, on_closed, NULL);
  kl_http_server_close(cap_srv, on_closed, NULL);
  kl_http_server_close(short_srv, on_closed, NULL);
  kl_http_server_close(slow_srv, on_closed, NULL);
  if (held) { /* answered after the shutdown began: still delivered, then the connection closes */
    kl_http_respond(held, 200, "text/plain", "held", 4);
    held = NULL;
  }
  uv_close((uv_handle_t *)a, NULL);
}

/* ---- client (second thread) ---- */

static nt_buf_t b1, b2;
static nt_resp_t resp;

static void expect(int fd, nt_buf_t *b, int status, const char *body, int line) {
  if (!nt_read_response(fd, b, &resp)) {
    nt_fail(line, "no response (expected %d)", status);
    return;
  }
  if (resp.status != status) nt_fail(line, "status %d, expected %d", resp.status, status);
  else if (body && (resp.body_len != strlen(body) || memcmp(resp.body, body, resp.body_len) != 0))
    nt_fail(line, "body '%.*s', expected '%s'", (int)resp.body_len, resp.body, body);
}
#define EXPECT(fd, b, status, body) expect(fd, b, status, body, __LINE__)

static void scenario_keepalive(void) {
  int fd = nt_connect(port);
  b1.len = 0;
  NT_CHECK(fd >= 0, "connect");
  nt_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT(fd, &b1, 200, "abc");
  NT_CHECK(strstr(resp.headers, "X-Test: echo\r\n") != NULL, "extra header missing");
  NT_CHECK(strstr(resp.headers, "Bad") == NULL, "header with CRLF was not refused");
  NT_CHECK(strstr(resp.headers, "Content-Type: text/plain\r\n") != NULL, "content type");
  nt_sends(fd, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT(fd, &b1, 200, "hello");
  /* pipelined: three requests in one write, answered in order */
  nt_sends(fd, "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nx1GET /hello HTTP/1.1\r\n\r\n"
               "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nx2");
  EXPECT(fd, &b1, 200, "x1");
  EXPECT(fd, &b1, 200, "hello");
  EXPECT(fd, &b1, 200, "x2");
  /* 404 and 405 keep the connection */
  nt_sends(fd, "GET /nope HTTP/1.1\r\n\r\n");
  EXPECT(fd, &b1, 404, NULL);
  nt_sends(fd, "DELETE /hello HTTP/1.1\r\n\r\n");
  EXPECT(fd, &b1, 405, NULL);
  NT_CHECK(strstr(resp.headers, "Allow: GET\r\n") != NULL, "405 without Allow: %s", resp.headers);
  /* a chunked body within the limit */
  nt_sends(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n");
  EXPECT(fd, &b1, 200, "abcd");
  /* a deferred response */
  nt_sends(fd, "GET /later HTTP/1.1\r\n\r\n");
  EXPECT(fd, &b1, 200, "later");
  /* 100-continue: the interim response, then the body */
  nt_sends(fd, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  EXPECT(fd, &b1, 100, NULL);
  nt_sends(fd, "hello");
  EXPECT(fd, &b1, 200, "hello");
  close(fd);
}

/* Sends req on a new connection; expects status and then the connection closed. */
static void expect_close(const char *req, size_t len, int status, int line) {
  int fd = nt_connect(port);
  b2.len = 0;
  if (fd < 0) {
    nt_fail(line, "connect");
    return;
  }
  nt_send(fd, req, len);
  expect(fd, &b2, status, NULL, line);
  if (!nt_closed(fd, &b2)) nt_fail(line, "connection not closed after %d", status);
  close(fd);
}
#define EXPECT_CLOSE(req, status) expect_close(req, sizeof req - 1, status, __LINE__)

static void scenario_bad_input(void) {
  EXPECT_CLOSE("POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 413);
  EXPECT_CLOSE("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n"
               "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
               "\r\n40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n0\r\n\r\n",
               413);
  EXPECT_CLOSE("\x16\x03\x01\x02\x00garbage\r\n\r\n", 400);
  EXPECT_CLOSE("GET /hello HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400);
  EXPECT_CLOSE("POST /nope HTTP/1.1\r\nContent-Length: 10\r\n\r\n", 404);
  char huge[1200];
  int n = snprintf(huge, sizeof huge, "GET /hello HTTP/1.1\r\nX-Big: %0900d\r\n\r\n", 7);
  expect_close(huge, (size_t)n, 431, __LINE__);
  /* HTTP/1.0 without keep-alive: answered, then closed */
  EXPECT_CLOSE("GET /hello HTTP/1.0\r\n\r\n", 200);
  /* HTTP/1.0 with keep-alive stays open */
  int fd = nt_connect(port);
  b2.len = 0;
  nt_sends(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT(fd, &b2, 200, "hello");
  NT_CHECK(strstr(resp.headers, "Connection: keep-alive") != NULL, "1.0 keep-alive header");
  nt_sends(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT(fd, &b2, 200, "hello");
  close(fd);
}

static void scenario_orphan_and_watermark(void) {
  /* the client resets while its request is with a deferred handler (reading is paused while a
   * request is in progress, so the reset is seen when the response is written) */
  int fd = nt_connect(port);
  nt_sends(fd, "GET /later HTTP/1.1\r\n\r\n");
  nt_reset(fd);
  /* 20 pipelined 64 KiB responses against a 16 KiB watermark, read only after all were sent */
  fd = nt_connect(port);
  b1.len = 0;
  char reqs[20 * 32];
  size_t n = 0;
  for (int i = 0; i < 20; i++) n += (size_t)snprintf(reqs + n, sizeof reqs - n, "GET /big HTTP/1.1\r\n\r\n");
  nt_send(fd, reqs, n);
  for (int i = 0; i < 20; i++) {
    EXPECT(fd, &b1, 200, NULL);
    NT_CHECK(resp.body_len == sizeof big_body, "big response %d has %zu bytes", i, resp.body_len);
  }
  close(fd);
}

static void scenario_cap_and_idle(void) {
  int a = nt_connect(cap_port);
  b1.len = 0;
  nt_sends(a, "GET /hello HTTP/1.1\r\n\r\n");
  EXPECT(a, &b1, 200, "hello"); /* a is accepted: the server is now at its cap of 1 */
  int b = nt_connect(cap_port);
  b2.len = 0;
  nt_sends(b, "GET /hello HTTP/1.1\r\n\r\n"); /* never answered: b is closed on accept */
  NT_CHECK(b >= 0 && nt_closed(b, &b2), "connection over the cap not closed");
  close(b);
  nt_sends(a, "GET /hello HTTP/1.1\r\n\r\n");
  EXPECT(a, &b1, 200, "hello"); /* a was not disturbed */
  close(a);
  /* an idle connection: the idle timeout (200 ms) closes it well before the 5 s read timeout */
  a = nt_connect(short_port);
  b1.len = 0;
  nt_sends(a, "GET /hello HTTP/1.1\r\n\r\n");
  EXPECT(a, &b1, 200, "hello");
  NT_CHECK(nt_closed(a, &b1), "idle connection not closed");
  close(a);
  /* a request that never completes is cut by the same timer */
  a = nt_connect(short_port);
  b1.len = 0;
  nt_sends(a, "GET /hello HTTP/1.1\r\nHost: x\r\n");
  NT_CHECK(nt_closed(a, &b1), "incomplete request not cut");
  close(a);
}

static void scenario_shutdown(void) {
  int slow = nt_connect(slow_port);
  nt_sends(slow, "GET /hold HTTP/1.1\r\n\r\n");
  for (int i = 0; i < 500 && !__atomic_load_n(&got_held_slow, __ATOMIC_SEQ_CST); i++) usleep(10000);
  NT_CHECK(__atomic_load_n(&got_held_slow, __ATOMIC_SEQ_CST), "slow request never reached its handler");
  int fd = nt_connect(port);
  b1.len = 0;
  __atomic_store_n(&hold_next, 1, __ATOMIC_SEQ_CST);
  nt_sends(fd, "GET /later HTTP/1.1\r\n\r\n");
  for (int i = 0; i < 500 && !__atomic_load_n(&got_held, __ATOMIC_SEQ_CST); i++) usleep(10000);
  NT_CHECK(__atomic_load_n(&got_held, __ATOMIC_SEQ_CST), "held request never reached its handler");
  uv_async_send(&done_async); /* the loop starts closing with this request in progress */
  EXPECT(fd, &b1, 200, "held");
  NT_CHECK(strstr(resp.headers, "Connection: close") != NULL, "no Connection: close during shutdown");
  NT_CHECK(nt_closed(fd, &b1), "connection not closed after shutdown");
  close(fd);
  b2.len = 0;
  NT_CHECK(nt_closed(slow, &b2), "unanswered connection not cut by the shutdown timeout");
  close(slow);
}

static void *client(void *arg) {
  (void)arg;
  scenario_keepalive();
  scenario_bad_input();
  scenario_orphan_and_watermark();
  scenario_cap_and_idle();
  scenario_shutdown(); /* last: it stops the servers */
  return NULL;
}

/* ---- the test ---- */

static void test_http_server(void **state) {
  (void)state;
  kl_err_t e;
  kl_net_limits_t lim;
  signal(SIGPIPE, SIG_IGN);
  memset(big_body, 'b', sizeof big_body);
  assert_int_equal(uv_loop_init(&loop), 0);
  kl_net_limits_default(&lim);
  lim.max_body = 100;
  lim.max_header = 512;
  lim.write_watermark = 16384;
  assert_int_equal(kl_http_server_create(&loop, &lim, "test", &srv, &e), 0);
  assert_int_equal(kl_http_route(srv, "POST", "/echo", h_echo, NULL, &e), 0);
  assert_int_equal(kl_http_route(srv, "GET", "/hello", h_hello, NULL, &e), 0);
  assert_int_equal(kl_http_route(srv, "GET", "/big", h_big, NULL, &e), 0);
  assert_int_equal(kl_http_route(srv, "GET", "/later", h_later, NULL, &e), 0);
  assert_int_not_equal(kl_http_server_listen(srv, "127.0.0.1:99999", &e), 0);
  assert_non_null(strstr(e.msg, "port"));
  assert_int_equal(kl_http_server_listen(srv, "127.0.0.1:0", &e), 0);
  port = kl_http_server_port(srv);
  assert_true(port > 0);
  lim.max_connections = 1;
  assert_int_equal(kl_http_server_create(&loop, &lim, "cap", &cap_srv, &e), 0);
  assert_int_equal(kl_http_route(cap_srv, "GET", "/hello", h_hello, NULL, &e), 0);
  assert_int_equal(kl_http_server_listen(cap_srv, "127.0.0.1:0", &e), 0);
  cap_port = kl_http_server_port(cap_srv);
  lim.max_connections = 16;
  lim.idle_timeout_ms = 200;
  assert_int_equal(kl_http_server_create(&loop, &lim, "short", &short_srv, &e), 0);
  assert_int_equal(kl_http_route(short_srv, "GET", "/hello", h_hello, NULL, &e), 0);
  assert_int_equal(kl_http_server_listen(short_srv, "127.0.0.1:0", &e), 0);
  short_port = kl_http_server_port(short_srv);
  lim.idle_timeout_ms = 30000;
  lim.shutdown_timeout_ms = 100;
  assert_int_equal(kl_http_server_create(&loop, &lim, "slow", &slow_srv, &e), 0);
  assert_int_equal(kl_http_route(slow_srv, "GET", "/hold", h_hold, NULL, &e), 0);
  assert_int_equal(kl_http_server_listen(slow_srv, "127.0.0.1:0", &e), 0);
  slow_port = kl_http_server_port(slow_srv);
  assert_int_equal(uv_async_init(&loop, &done_async, on_done), 0);

  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns when the servers and every handle are closed */
  assert_int_equal(pthread_join(th, NULL), 0);
  if (nt_failure[0]) fail_msg("%s", nt_failure);
  assert_int_equal(closed_servers, 4);
  assert_null(held_slow);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_parse_addr(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  kl_err_t e;
  assert_int_equal(kl_net_parse_addr("127.0.0.1:80", &ss, &e), 0);
  assert_int_equal(ss.ss_family, AF_INET);
  assert_int_equal(kl_net_parse_addr("[::1]:0", &ss, &e), 0);
  assert_int_equal(ss.ss_family, AF_INET6);
  assert_int_equal(kl_net_parse_addr("localhost:8080", &ss, &e), 0);
  assert_int_not_equal(kl_net_parse_addr("127.0.0.1", &ss, &e), 0);
  assert_int_not_equal(kl_net_parse_addr("127.0.0.1:65536", &ss, &e), 0);
  assert_int_not_equal(kl_net_parse_addr("127.0.0.1:-1", &ss, &e), 0);
  assert_int_not_equal(kl_net_parse_addr("example.org:80", &ss, &e), 0);
  assert_non_null(strstr(e.msg, "not a numeric IP address"));
  assert_int_not_equal(kl_net_parse_addr("::1:80", &ss, &e), 0);
  assert_int_not_equal(kl_net_parse_addr("[::1]80", &ss, &e), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_addr),
      cmocka_unit_test(test_http_server),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
