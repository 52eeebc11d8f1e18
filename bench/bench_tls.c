/* TLS for the load generators' connections (bench_tls.h).
 *
 * Happy path: kb_tls_start (ClientHello out) -> kb_tls_read (ServerHello ... Finished in, the
 * client's Finished out, READY: returns 1) -> kb_tls_write / kb_tls_read for the records.
 * Failures: the server refuses the certificate or sends an alert (kl_tls_session_feed -1), a
 * corrupt record (kl_tls_session_read -1), out of memory: all -1 with the reason in e; the
 * caller treats the connection as lost (or dies, during the connect phase). */
#include "bench_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH (64 * 1024)

kl_tls_ctx_t *kb_tls_client_ctx(const char *prog, const char *ca, const char *cert, const char *key) {
  kl_err_t e = {0};
  kl_tls_ctx_t *t = NULL;
  if ((cert == NULL) != (key == NULL)) {
    fprintf(stderr, "%s: --cert and --key go together\n", prog);
    exit(2);
  }
  kl_tls_files_t f = {ca, cert, key, NULL};
  if (kl_tls_ctx_create(cert ? KL_TLS_MUTUAL : KL_TLS_CLIENT, &f, &t, &e)) {
    fprintf(stderr, "%s: TLS: %s\n", prog, e.msg);
    exit(1);
  }
  return t;
}

uv_buf_t kb_tls_scratch(void) {
  static char buf[SCRATCH];
  return uv_buf_init(buf, sizeof buf);
}

typedef struct twreq {
  uv_write_t w;
  uint8_t *p;
} twreq_t;

static void on_written(uv_write_t *w, int status) {
  (void)status; /* a failed write shows up as a closed connection on the read side */
  twreq_t *q = (twreq_t *)w;
  free(q->p);
  free(q);
}

/* Sends what the session has for the network. */
static int flush(kb_tls_t *t, kl_err_t *e) {
  size_t n;
  uint8_t *p;
  while ((p = kl_tls_session_output(t->s, &n)) != NULL) {
    twreq_t *q = malloc(sizeof *q);
    if (q == NULL) {
      free(p);
      return kl_err_set(e, KL_ENOMEM, "TLS: out of memory"), -1;
    }
    q->p = p;
    t->wire_out += n;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_write(&q->w, t->stream, &b, 1, on_written);
    if (rc) {
      free(p);
      free(q);
      return kl_err_set(e, KL_EIO, "uv_write: %s", uv_strerror(rc)), -1;
    }
  }
  return 0;
}

int kb_tls_start(kb_tls_t *t, kl_tls_ctx_t *ctx, uv_stream_t *stream, unsigned roles, kl_err_t *e) {
  memset(t, 0, sizeof *t);
  t->stream = stream;
  t->s = kl_tls_session_new(ctx, false, roles, NULL);
  if (t->s == NULL) return kl_err_set(e, KL_ENOMEM, "TLS: out of memory"), -1;
  if (kl_tls_session_start(t->s, e) < 0) return -1;
  return flush(t, e);
}

int kb_tls_read(kb_tls_t *t, const uint8_t *p, size_t n, kb_rxbuf_t *rx, bool *closed, kl_err_t *e) {
  *closed = false;
  t->wire_in += n;
  int st = kl_tls_session_feed(t->s, p, n, e);
  if (st < 0) {
    flush(t, e); /* the alert, if any */
    return -1;
  }
  int done = st == KL_TLS_READY && !t->ready;
  if (done) t->ready = true;
  if (t->ready)
    for (;;) {
      size_t avail = 0;
      uint8_t *dst = kb_rx_space(rx, 16384, 65536, &avail);
      if (dst == NULL) return kl_err_set(e, KL_ENOMEM, "TLS: out of memory"), -1;
      long got = kl_tls_session_read(t->s, dst, avail, closed, e);
      if (got < 0) return -1;
      rx->len += (size_t)got;
      if (got == 0 || *closed) break;
    }
  if (flush(t, e)) return -1;
  return done;
}

/* The buffers go into one record when they fit (an HTTP head and its body are one write of
 * the plain transport too); larger messages are split into records by OpenSSL. */
int kb_tls_write(kb_tls_t *t, const uv_buf_t *bufs, unsigned nbufs, kl_err_t *e) {
  static uint8_t joined[16384];
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++) total += bufs[i].len;
  if (nbufs > 1 && total <= sizeof joined) {
    size_t at = 0;
    for (unsigned i = 0; i < nbufs; i++) {
      memcpy(joined + at, bufs[i].base, bufs[i].len);
      at += bufs[i].len;
    }
    if (kl_tls_session_write(t->s, joined, total, e)) return -1;
  } else {
    for (unsigned i = 0; i < nbufs; i++)
      if (kl_tls_session_write(t->s, bufs[i].base, bufs[i].len, e)) return -1;
  }
  return flush(t, e);
}

void kb_tls_free(kb_tls_t *t) {
  kl_tls_session_free(t->s);
  t->s = NULL;
}
