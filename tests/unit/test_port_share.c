/* One port for HTTP and ksi+tcp (kl_http_server_share), over real loopback sockets: a
 * connection that opens with a KSI PDU (first byte with the TLV16 flag) is served by the TLV
 * server, several PDUs on it too; one that opens with HTTP stays with the HTTP server; bytes
 * that are neither stay HTTP and get its 400. A moved connection counts against the ksi+tcp
 * server's per-address cap. Closing the TLV server first leaves the HTTP
 * server working (the share is undone): a PDU is then HTTP's 400. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/net.h"
#include "nettest.h"
#include "testutil.h"

static uv_loop_t loop;
static uv_async_t step_async, done_async;
static kl_http_server_t *http;
static kl_tlv_server_t *tlv;
static int port, closed;

static void h_echo(kl_http_req_t *r, void *arg) {
  (void)arg;
  size_t n;
  const uint8_t *b = kl_http_req_body(r, &n);
  kl_http_respond(r, 200, "text/plain", b, n);
}

static void t_echo(kl_tlv_req_t *r, const uint8_t *frame, size_t len, void *arg) {
  (void)arg;
  kl_tlv_respond(r, frame, len, false);
}

static void http_closed(kl_http_server_t *s, void *arg) {
  (void)s;
  (void)arg;
  closed++;
}

static void tlv_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  (void)arg;
  closed++;
}

static void on_step(uv_async_t *a) { /* the TLV server goes first */
  (void)a;
  kl_tlv_server_close(tlv, tlv_closed, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void on_done(uv_async_t *a) {
  kl_http_server_close(http, http_closed, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static const uint8_t pdu1[] = {0x82, 0x20, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04};
static const uint8_t pdu2[] = {0x83, 0x21, 0x00, 0x02, 0xAA, 0xBB};

/* Reads exactly n bytes. */
static bool read_n(int fd, uint8_t *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = recv(fd, p + got, n - got, 0);
    if (k <= 0) return false;
    got += (size_t)k;
  }
  return true;
}

static void *client(void *arg) {
  (void)arg;
  nt_buf_t *b = calloc(1, sizeof *b);
  nt_resp_t *r = calloc(1, sizeof *r);
  uint8_t got[64];
  /* HTTP, keep-alive: two requests. */
  int fd = nt_connect(port);
  NT_CHECK(fd >= 0, "connect");
  for (int i = 0; i < 2; i++) {
    nt_sends(fd, "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    NT_CHECK(nt_read_response(fd, b, r) && r->status == 200 && r->body_len == 5 && memcmp(r->body, "hello", 5) == 0,
             "HTTP echo %d", i);
  }
  close(fd);
  /* ksi+tcp on the same port: two PDUs back to back, answered in order. */
  fd = nt_connect(port);
  uint8_t both[sizeof pdu1 + sizeof pdu2];
  memcpy(both, pdu1, sizeof pdu1);
  memcpy(both + sizeof pdu1, pdu2, sizeof pdu2);
  NT_CHECK(nt_send(fd, both, sizeof both), "send PDUs");
  NT_CHECK(read_n(fd, got, sizeof pdu1) && memcmp(got, pdu1, sizeof pdu1) == 0, "first PDU echoed");
  NT_CHECK(read_n(fd, got, sizeof pdu2) && memcmp(got, pdu2, sizeof pdu2) == 0, "second PDU echoed");
  close(fd);
  /* The ksi+tcp server's per-address cap (1 here) counts connections that came by the shared
   * port: while one is open, a second from the same address is closed at once, although the
   * HTTP server (no cap) took it; HTTP connections are not counted against it. */
  int held = nt_connect(port);
  NT_CHECK(nt_send(held, pdu1, sizeof pdu1) && read_n(held, got, sizeof pdu1), "first ksi+tcp connection served");
  int web = nt_connect(port);
  b->len = 0;
  nt_sends(web, "POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz");
  NT_CHECK(nt_read_response(web, b, r) && r->status == 200, "HTTP beside it: served");
  close(web);
  fd = nt_connect(port);
  nt_send(fd, pdu1, sizeof pdu1);
  b->len = 0;
  NT_CHECK(nt_closed(fd, b), "a second ksi+tcp connection from the address: closed (per-address cap)");
  close(fd);
  close(held);
  usleep(100000); /* the server sees the close before the next connection */
  /* One byte at a time: the first byte alone decides. */
  fd = nt_connect(port);
  for (size_t i = 0; i < sizeof pdu1; i++) NT_CHECK(nt_send(fd, pdu1 + i, 1), "send byte");
  NT_CHECK(read_n(fd, got, sizeof pdu1) && memcmp(got, pdu1, sizeof pdu1) == 0, "PDU sent bytewise echoed");
  close(fd);
  /* Neither: a TLV8 (no flag) is not a PDU, so it is HTTP's, which answers 400. */
  fd = nt_connect(port);
  b->len = 0;
  NT_CHECK(nt_sends(fd, "\x07\x03" "abc\r\n\r\n"), "send junk");
  NT_CHECK(nt_read_response(fd, b, r) && r->status == 400, "junk: HTTP 400 (got %d)", r->status);
  close(fd);
  /* The TLV server closes first; the shared port keeps serving HTTP, and a PDU is then HTTP's. */
  uv_async_send(&step_async);
  usleep(200000);
  fd = nt_connect(port);
  b->len = 0;
  nt_sends(fd, "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
  NT_CHECK(nt_read_response(fd, b, r) && r->status == 200, "HTTP after the TLV server closed");
  close(fd);
  fd = nt_connect(port);
  b->len = 0;
  nt_send(fd, pdu1, sizeof pdu1);
  NT_CHECK(nt_read_response(fd, b, r) && r->status == 400, "a PDU after the TLV server closed: HTTP 400");
  close(fd);
  free(b);
  free(r);
  uv_async_send(&done_async);
  return NULL;
}

static void test_port_share(void **state) {
  (void)state;
  kl_err_t e;
  signal(SIGPIPE, SIG_IGN);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(kl_http_server_create(&loop, NULL, "http", &http, &e), 0);
  assert_int_equal(kl_http_route(http, "POST", "*", h_echo, NULL, &e), 0);
  assert_int_equal(kl_http_server_listen(http, "127.0.0.1:0", &e), 0);
  kl_net_limits_t tl;
  kl_net_limits_default(&tl);
  tl.max_connections_per_ip = 1; /* a connection moved here is held to this server's own limits */
  assert_int_equal(kl_tlv_server_create(&loop, &tl, "tcp", t_echo, NULL, &tlv, &e), 0);
  kl_http_server_share(http, tlv);
  port = kl_http_server_port(http);
  assert_true(port > 0);
  assert_int_equal(kl_tlv_server_port(tlv), port);
  assert_int_equal(uv_async_init(&loop, &step_async, on_step), 0);
  assert_int_equal(uv_async_init(&loop, &done_async, on_done), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(pthread_join(th, NULL), 0);
  if (nt_failure[0]) fail_msg("%s", nt_failure);
  assert_int_equal(closed, 2);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_port_share)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
