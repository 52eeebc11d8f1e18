/* The ksi+tcp server (a stream of whole TLVs) over real loopback sockets: responses in request
 * order whatever order the handler gives them in, 8- and 16-bit headers, frames split across
 * writes, a frame over the limit closing the connection after the answers already due,
 * close_after, frames without an answer, flow control at max_inflight, and a shutdown that
 * still answers a frame in progress; the loop closes clean. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/net.h"
#include "nettest.h"
#include "testutil.h"

static uv_loop_t loop;
static uv_async_t done_async;
static kl_tlv_server_t *srv;
static int port, closed, max_seen_inflight, inflight;
static kl_tlv_req_t *held;
static int got_held;

/* Frame types (TLV8 type field): what the handler does with it. */
enum { T_ECHO = 1, T_DEFER = 2, T_CLOSE = 3, T_SILENT = 4, T_HOLD = 5, T_DEFER_CLOSE = 6 };

typedef struct later {
  uv_timer_t t;
  kl_tlv_req_t *r;
  uint8_t *copy;
  size_t len;
  bool close_after;
} later_t;

static void later_closed(uv_handle_t *h) {
  later_t *l = h->data;
  free(l->copy);
  free(l);
}

static void later_fire(uv_timer_t *t) {
  later_t *l = t->data;
  inflight--;
  kl_tlv_respond(l->r, l->copy, l->len, l->close_after);
  uv_close((uv_handle_t *)t, later_closed);
}

static void handler(kl_tlv_req_t *r, const uint8_t *frame, size_t len, void *arg) {
  (void)arg;
  unsigned type = (frame[0] & 0x80) ? ((unsigned)(frame[0] & 0x1F) << 8 | frame[1]) : frame[0] & 0x1F;
  switch (type) {
    case T_DEFER:
    case T_DEFER_CLOSE: {
      later_t *l = calloc(1, sizeof *l);
      assert_non_null(l);
      l->r = r;
      l->close_after = type == T_DEFER_CLOSE;
      l->copy = malloc(len);
      memcpy(l->copy, frame, len);
      l->len = len;
      uv_timer_init(&loop, &l->t);
      l->t.data = l;
      uv_timer_start(&l->t, later_fire, 10, 0);
      if (++inflight > max_seen_inflight) max_seen_inflight = inflight;
      return;
    }
    case T_HOLD:
      held = r;
      __atomic_store_n(&got_held, 1, __ATOMIC_SEQ_CST);
      return;
    case T_CLOSE: kl_tlv_respond(r, frame, len, true); return;
    case T_SILENT: kl_tlv_respond(r, NULL, 0, false); return;
    default: kl_tlv_respond(r, frame, len, false); return;
  }
}

static void on_closed(kl_tlv_server_t *s, void *arg) {
  (void)s;
  (void)arg;
  closed++;
}

static void on_done(uv_async_t *a) {
  kl_tlv_server_close(srv, on_closed, NULL);
  if (held) {
    uint8_t f[] = {T_HOLD, 1, 'h'};
    kl_tlv_respond(held, f, sizeof f, false);
    held = NULL;
  }
  uv_close((uv_handle_t *)a, NULL);
}

/* ---- client ---- */

static nt_buf_t b;

/* Reads one TLV and compares it with want. */
static void expect_tlv(int fd, const uint8_t *want, size_t n, int line) {
  size_t hl = 2, total = 2;
  for (;;) {
    if (b.len >= 1) hl = (b.data[0] & 0x80) ? 4 : 2;
    if (b.len >= hl)
      total = hl + (hl == 4 ? ((size_t)(uint8_t)b.data[2] << 8 | (uint8_t)b.data[3]) : (uint8_t)b.data[1]);
    if (b.len >= hl && b.len >= total) break;
    if (!nt_fill(fd, &b)) {
      nt_fail(line, "no whole answer (%zu bytes)", b.len);
      return;
    }
  }
  if (total != n || memcmp(b.data, want, n) != 0) nt_fail(line, "unexpected frame (type byte 0x%02x, %zu bytes)",
                                                         (uint8_t)b.data[0], total);
  nt_consume(&b, total);
}
#define EXPECT_TLV(fd, ...)                                \
  do {                                                     \
    const uint8_t w_[] = {__VA_ARGS__};                    \
    expect_tlv(fd, w_, sizeof w_, __LINE__);               \
  } while (0)

static int conn(void) {
  b.len = 0;
  int fd = nt_connect(port);
  NT_CHECK(fd >= 0, "connect");
  return fd;
}

static void *client(void *arg) {
  (void)arg;
  /* order: a deferred answer holds back the later immediate ones */
  int fd = conn();
  const uint8_t three[] = {T_DEFER, 1, 'a', T_ECHO, 1, 'b', T_ECHO, 2, 'c', 'c'};
  nt_send(fd, three, sizeof three);
  EXPECT_TLV(fd, T_DEFER, 1, 'a');
  EXPECT_TLV(fd, T_ECHO, 1, 'b');
  EXPECT_TLV(fd, T_ECHO, 2, 'c', 'c');
  /* a 16-bit header (a KSI PDU type), sent one byte at a time */
  uint8_t pdu[4 + 300];
  pdu[0] = 0x83;
  pdu[1] = 0x20;
  pdu[2] = 300 >> 8;
  pdu[3] = 300 & 0xFF;
  for (int i = 0; i < 300; i++) pdu[4 + i] = (uint8_t)i;
  for (size_t i = 0; i < sizeof pdu; i++) nt_send(fd, pdu + i, 1);
  expect_tlv(fd, pdu, sizeof pdu, __LINE__);
  /* no answer for a silent frame; the next one is answered */
  const uint8_t silent[] = {T_SILENT, 0, T_ECHO, 1, 'z'};
  nt_send(fd, silent, sizeof silent);
  EXPECT_TLV(fd, T_ECHO, 1, 'z');
  /* flow control: 10 deferred frames at once against max_inflight 3, all answered in order */
  uint8_t many[30];
  for (int i = 0; i < 10; i++) many[3 * i] = T_DEFER, many[3 * i + 1] = 1, many[3 * i + 2] = (uint8_t)('0' + i);
  nt_send(fd, many, sizeof many);
  for (int i = 0; i < 10; i++) expect_tlv(fd, many + 3 * i, 3, __LINE__);
  /* close_after: the answer, then the connection ends; later frames are dropped */
  const uint8_t closing[] = {T_CLOSE, 1, 'q', T_ECHO, 1, 'r'};
  nt_send(fd, closing, sizeof closing);
  EXPECT_TLV(fd, T_CLOSE, 1, 'q');
  NT_CHECK(nt_closed(fd, &b), "not closed after close_after");
  close(fd);
  /* close_after answered late, after a later frame's handler already answered (handlers on
   * threads do that): its answer is the last one written, the later frame gets none */
  fd = conn();
  b.len = 0;
  const uint8_t late_close[] = {T_DEFER_CLOSE, 1, 'd', T_ECHO, 1, 'e'};
  nt_send(fd, late_close, sizeof late_close);
  EXPECT_TLV(fd, T_DEFER_CLOSE, 1, 'd');
  NT_CHECK(nt_closed(fd, &b), "an answer after the close_after one was written");
  close(fd);
  /* a frame over max_body (1000): the answer due is written, then the connection closes */
  fd = conn();
  const uint8_t over[] = {T_ECHO, 1, 'x', 0x80 | T_ECHO, 0, 0x07, 0xD0};
  nt_send(fd, over, sizeof over);
  EXPECT_TLV(fd, T_ECHO, 1, 'x');
  NT_CHECK(nt_closed(fd, &b), "not closed after an oversized frame");
  close(fd);
  /* the peer half-closes after its frames: they are still answered */
  fd = conn();
  const uint8_t two[] = {T_DEFER, 1, 'd', T_ECHO, 1, 'e'};
  nt_send(fd, two, sizeof two);
  shutdown(fd, SHUT_WR);
  EXPECT_TLV(fd, T_DEFER, 1, 'd');
  EXPECT_TLV(fd, T_ECHO, 1, 'e');
  NT_CHECK(nt_closed(fd, &b), "not closed after the peer's EOF");
  close(fd);
  /* a reset while a frame is with its handler */
  fd = conn();
  const uint8_t d[] = {T_DEFER, 1, 'r'};
  nt_send(fd, d, sizeof d);
  nt_reset(fd);
  /* shutdown with a frame in progress: it is answered, then the connection closes */
  fd = conn();
  const uint8_t h[] = {T_HOLD, 1, 'h'};
  nt_send(fd, h, sizeof h);
  for (int i = 0; i < 500 && !__atomic_load_n(&got_held, __ATOMIC_SEQ_CST); i++) usleep(10000);
  NT_CHECK(__atomic_load_n(&got_held, __ATOMIC_SEQ_CST), "held frame never reached its handler");
  uv_async_send(&done_async);
  EXPECT_TLV(fd, T_HOLD, 1, 'h');
  NT_CHECK(nt_closed(fd, &b), "not closed after shutdown");
  close(fd);
  return NULL;
}

static void test_tlv_server(void **state) {
  (void)state;
  kl_err_t e;
  kl_net_limits_t lim;
  signal(SIGPIPE, SIG_IGN);
  assert_int_equal(uv_loop_init(&loop), 0);
  kl_net_limits_default(&lim);
  lim.max_body = 1000;
  lim.max_inflight = 3;
  assert_int_equal(kl_tlv_server_create(&loop, &lim, "tlv", handler, NULL, &srv, &e), 0);
  assert_int_equal(kl_tlv_server_listen(srv, "127.0.0.1:0", &e), 0);
  port = kl_tlv_server_port(srv);
  assert_int_equal(uv_async_init(&loop, &done_async, on_done), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(pthread_join(th, NULL), 0);
  if (nt_failure[0]) fail_msg("%s", nt_failure);
  assert_int_equal(closed, 1);
  assert_true(max_seen_inflight <= 3);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_tlv_server)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
