/* Test tool for the hierarchy system test (test_hierarchy.sh), not part of the product: a
 * client of keyless-gateway that misbehaves on purpose, signs continuously while daemons are
 * killed, and captures raw responses. It speaks HTTP and ksi+tcp itself (plain blocking
 * sockets, loopback only) so that it can send what no real client would, and it builds and
 * reads PDUs with the library (kl_aggr_request_build, kl_pdu_parse, kl_aggr_resp_open,
 * kl_aggr_resp_signature).
 *
 *   gw_badclient send URL USER KEY CASE [ARG]
 *       one request; CASE is
 *         ok            one good request; its signature is checked (internal policy)
 *         wrongkey      the HMAC made with another key
 *         unknownlogin  a login the gateway does not have (USER is ignored)
 *         truncated     a good PDU cut short by 10 bytes, its outer length fixed to match
 *         garbage       a TLV that is not a PDU at all
 *         cut           ksi+tcp: the first half of a good PDU, then the write side closed
 *         oversize N    a PDU header announcing N bytes in all, then that many bytes
 *         level [MAX]   asks the configuration, then two requests: at MAX (default: the
 *                       announced max_level; must be signed) and at MAX + 1 (must be refused)
 *       prints one line of key=value: http=STATUS (HTTP only), closed=1 (no response),
 *       error=0xSSSS (PDU-level error), id=N status=0xSSSS [sig=ok|bad] per request,
 *       max_level=N, hmac=ok|bad|none; exit 0 if the exchange happened, 1 on a local failure
 *   gw_badclient stream URL USER KEY DIR THREADS MAX_MS STOP_FILE [EVENT_FILE]
 *       THREADS clients each sign a fresh random document, one request per PDU and per
 *       connection, then wait 0..700 ms, until STOP_FILE exists or MAX_MS passed. Every
 *       signature is checked (internal policy with the document) and written as DIR/sN.doc
 *       and DIR/sN.doc.ksig. EVENT_FILE (read at the end) holds a UNIX time in ms, e.g. when
 *       a daemon was killed. Prints one summary line:
 *         sent= ok= ok_after= failed= io= bad= nonretryable= statuses=0x0300:N,... outage_ms=
 *         failed_span_ms= gap_before_ms= gap_after_ms= max_latency_ms=
 *       failed: answered with a KSI status; io: no answer; bad: an answer that is not a valid
 *       signature of the document (a wrong chain); outage_ms: from the first failed request
 *       to the first later one that was signed (the longest such stretch); ok_after: signed
 *       requests sent after the event; gap_*: the longest time between two successive signed
 *       answers before / after the event.
 *   gw_badclient slow HOST:PORT USER KEY PDUS REQS DEADLINE_MS
 *       ksi+tcp with a small receive buffer: sends PDUS PDUs of REQS requests each as fast as
 *       the gateway takes them and never reads an answer; then waits (up to DEADLINE_MS in all)
 *       for the gateway to close its end of the connection, seen in /proc/net/tcp. Last line:
 *         slow pdus_taken=N pdus=M sending=all|stalled|closed|deadline server_closed=0|1 close_ms=T
 *       sending: how sending ended (stalled: the gateway took nothing for 2.5 s, longer than a
 *       round trip; closed: it closed or reset the connection); T counts from the last byte the
 *       gateway took.
 *   gw_badclient capture URL USER KEY FILE OUT
 *       signs FILE's SHA-256 with request id 1 (as canned responses have it) and writes the
 *       raw response to OUT
 *   gw_badclient shape FILE
 *       the element layout of an aggregation response: "0221 01[01..] 02[01 04 0801+ ...] 1f"
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "keyless/netclient.h"
#include "keyless/pdu.h"
#include "keyless/signclient.h"
#include "keyless/tlv.h"

#define TIMEOUT_MS 15000
#define MAX_RESP (4u << 20)

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

static uint64_t rnd64(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint64_t)now_ms() * 2654435761u;
  return v;
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  if (fwrite(p, 1, n, f) != n) {
    fclose(f);
    return -1;
  }
  return fclose(f);
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  uint8_t *buf = malloc(MAX_RESP);
  size_t n = buf ? fread(buf, 1, MAX_RESP, f) : 0;
  fclose(f);
  *len = n;
  return buf;
}

/* ---- transport ---- */

typedef struct xres {
  int http;      /* HTTP status, 0 for ksi+tcp */
  bool closed;   /* the server closed without a (whole) response */
  uint8_t *body; /* the response PDU (malloc'd) */
  size_t len;
  char err[160]; /* a local failure: nothing could be said about the server */
} xres_t;

static void xres_free(xres_t *r) {
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* A connected socket with send and receive timeouts, or -1 (message in err). rcvbuf/sndbuf,
 * when non-zero, are set before connecting. */
static int dial(const char *host, const char *port, int timeout_ms, int rcvbuf, int sndbuf, char *err, size_t errn) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc) {
    snprintf(err, errn, "%s:%s: %s", host, port, gai_strerror(rc));
    return -1;
  }
  int fd = socket(ai->ai_family, ai->ai_socktype, 0);
  if (fd < 0) {
    snprintf(err, errn, "socket: %s", strerror(errno));
    freeaddrinfo(ai);
    return -1;
  }
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (sndbuf) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (connect(fd, ai->ai_addr, ai->ai_addrlen)) {
    snprintf(err, errn, "connect %s:%s: %s", host, port, strerror(errno));
    close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  return fd;
}

/* 0 when everything was sent; -1 when the peer refused more (closed, reset, timeout). */
static int send_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Reads exactly n bytes: 0, 1 on EOF or reset, -1 on timeout. */
static int recv_exact(int fd, uint8_t *p, size_t n) {
  while (n) {
    ssize_t k = recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0 || (k < 0 && (errno == ECONNRESET || errno == EPIPE))) return 1;
    if (k < 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* ksi+tcp: sends req (half-closing afterwards with shut_wr) and reads one TLV back. */
static void xfer_tcp(const kl_url_t *u, const uint8_t *req, size_t n, bool shut_wr, xres_t *r) {
  int fd = dial(u->host, u->port, TIMEOUT_MS, 0, 0, r->err, sizeof r->err);
  if (fd < 0) return;
  (void)send_all(fd, req, n); /* the server may close early: what comes back tells */
  if (shut_wr) shutdown(fd, SHUT_WR);
  uint8_t hdr[4];
  int rc = recv_exact(fd, hdr, 2);
  size_t hl = 2, vl = 0;
  if (rc == 0) {
    hl = (hdr[0] & 0x80) ? 4 : 2;
    if (hl == 4) rc = recv_exact(fd, hdr + 2, 2);
    vl = hl == 4 ? (size_t)hdr[2] << 8 | hdr[3] : hdr[1];
  }
  if (rc == 0 && (r->body = malloc(hl + vl)) != NULL) {
    memcpy(r->body, hdr, hl);
    rc = recv_exact(fd, r->body + hl, vl);
    r->len = hl + vl;
  }
  if (rc == 1) r->closed = true;
  else if (rc < 0) snprintf(r->err, sizeof r->err, "timeout waiting for the response");
  if (rc) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
  }
  close(fd);
}

static const char *find_header(const char *head, const char *name) {
  size_t n = strlen(name);
  for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n"))
    if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') return p + 3 + n;
  return NULL;
}

/* HTTP POST of req; reads the status and the body (Content-Length). */
static void xfer_http(const kl_url_t *u, const uint8_t *req, size_t n, xres_t *r) {
  int fd = dial(u->host, u->port, TIMEOUT_MS, 0, 0, r->err, sizeof r->err);
  if (fd < 0) return;
  char head[1024];
  int hn = snprintf(head, sizeof head,
                    "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: gw_badclient\r\n"
                    "Content-Type: application/ksi-request\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                    u->path[0] ? u->path : "/", u->host, u->port, n);
  if (send_all(fd, (const uint8_t *)head, (size_t)hn) == 0) (void)send_all(fd, req, n);
  size_t cap = 1 << 16, have = 0;
  char *buf = malloc(cap + 1);
  long long need = -1; /* bytes of the whole response, once the headers are in */
  size_t body_off = 0;
  while (buf) {
    if (need >= 0 && have >= (size_t)need) break;
    if (have == cap) {
      if (cap >= MAX_RESP) break;
      char *nb = realloc(buf, cap * 2 + 1);
      if (nb == NULL) break;
      buf = nb;
      cap *= 2;
    }
    ssize_t k = recv(fd, buf + have, cap - have, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno != ECONNRESET) {
      snprintf(r->err, sizeof r->err, "timeout waiting for the HTTP response");
      break;
    }
    if (k <= 0) break;
    have += (size_t)k;
    buf[have] = '\0';
    char *end = need < 0 ? strstr(buf, "\r\n\r\n") : NULL;
    if (end) {
      body_off = (size_t)(end + 4 - buf);
      *end = '\0';
      const char *cl = find_header(buf, "Content-Length");
      need = (long long)body_off + (cl ? atoll(cl) : 0);
      *end = '\r';
    }
  }
  close(fd);
  if (buf == NULL) {
    snprintf(r->err, sizeof r->err, "out of memory");
    return;
  }
  buf[have] = '\0';
  if (have == 0 || need < 0) {
    if (r->err[0] == '\0') r->closed = true;
    free(buf);
    return;
  }
  if (sscanf(buf, "HTTP/1.%*d %d", &r->http) != 1) snprintf(r->err, sizeof r->err, "not an HTTP response");
  size_t blen = have < (size_t)need ? have - body_off : (size_t)need - body_off;
  if (blen && (r->body = malloc(blen)) != NULL) {
    memcpy(r->body, buf + body_off, blen);
    r->len = blen;
  }
  free(buf);
}

static void xfer(const kl_url_t *u, const uint8_t *req, size_t n, bool shut_wr, xres_t *r) {
  memset(r, 0, sizeof *r);
  if (u->kind == KL_URL_TCP) xfer_tcp(u, req, n, shut_wr, r);
  else xfer_http(u, req, n, r);
}

/* ---- requests and answers ---- */

static int build(const char *user, const char *key, const kl_aggr_item_t *items, size_t n, bool config, uint8_t **out,
                 size_t *len) {
  kl_aggr_auth_t auth = {user, key, strlen(key), 0};
  kl_err_t e = {0};
  if (kl_aggr_request_build(&auth, items, n, config, out, len, &e)) {
    fprintf(stderr, "gw_badclient: building a request: %s\n", e.msg);
    return -1;
  }
  return 0;
}

static void random_hash(kl_imprint_t *h) {
  uint8_t b[32];
  for (size_t i = 0; i < sizeof b; i += 8) {
    uint64_t v = rnd64();
    memcpy(b + i, &v, 8);
  }
  kl_hash(KL_HASH_SHA256, b, sizeof b, h, NULL);
}

/* The KSI status of request id in a parsed response: the PDU-level error's, the request's, or
 * -1 when the response has no answer for it. */
static long long status_of(const kl_pdu_t *pdu, uint64_t id) {
  if (pdu->error) return (long long)pdu->error->status;
  for (size_t i = 0; i < pdu->n_aggr_resps; i++)
    if (pdu->aggr_resps[i].request_id == id) return (long long)pdu->aggr_resps[i].status;
  return -1;
}

/* Checks the signature of item in the response: 0 and *out (if out), or -1 with why. */
static int signature(const uint8_t *p, size_t n, const char *key, const kl_aggr_item_t *item, kl_sig_t **out,
                     char *why, size_t whyn) {
  kl_aggr_auth_t auth = {"", key, strlen(key), 0};
  kl_aggr_resp_t *r = NULL;
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  int rc = kl_aggr_resp_open(p, n, &auth, &r, &e);
  if (rc == 0) rc = kl_aggr_resp_signature(r, item, &sig, &e);
  kl_aggr_resp_free(r);
  if (rc) {
    snprintf(why, whyn, "%s", e.msg);
    return -1;
  }
  if (out) *out = sig;
  else kl_sig_free(sig);
  return 0;
}

/* Prints what came back: http=, closed=, error=, id= status= [sig=], max_level=, hmac=. */
static void describe(const xres_t *r, const char *key, const kl_aggr_item_t *items, size_t n_items) {
  if (r->err[0]) {
    printf("local_error=\"%s\"\n", r->err);
    return;
  }
  if (r->http) printf("http=%d ", r->http);
  if (r->closed) {
    printf("closed=1\n");
    return;
  }
  kl_pdu_t *pdu = NULL;
  kl_err_t e = {0};
  if (r->len == 0) {
    printf("body=empty\n");
    return;
  }
  if (kl_pdu_parse(r->body, r->len, &pdu, &e)) {
    printf("unparseable=\"%s\"\n", e.msg);
    return;
  }
  if (pdu->error) printf("error=0x%04llX ", (unsigned long long)pdu->error->status);
  for (size_t i = 0; i < pdu->n_aggr_resps; i++) {
    const kl_pdu_aggr_resp_t *x = &pdu->aggr_resps[i];
    printf("id=%llu status=0x%04llX ", (unsigned long long)x->request_id, (unsigned long long)x->status);
    for (size_t k = 0; k < n_items; k++) {
      char why[KL_ERR_MSG_MAX];
      if (items[k].request_id != x->request_id || x->status != 0) continue;
      if (signature(r->body, r->len, key, &items[k], NULL, why, sizeof why)) printf("sig=bad(%s) ", why);
      else printf("sig=ok ");
    }
  }
  if (pdu->config && pdu->config->has_max_level)
    printf("max_level=%llu ", (unsigned long long)pdu->config->max_level);
  if (!pdu->has_hmac) printf("hmac=none\n");
  else printf("hmac=%s\n", kl_pdu_check_hmac(pdu, key, strlen(key), NULL) == 0 ? "ok" : "bad");
  kl_pdu_free(pdu);
}

static int parse_url(const char *s, kl_url_t *u) {
  kl_err_t e = {0};
  if (kl_url_parse(s, u, &e)) {
    fprintf(stderr, "gw_badclient: %s: %s\n", s, e.msg);
    return -1;
  }
  return 0;
}

/* ---- send ---- */

static int cmd_send(int argc, char **argv) {
  if (argc < 5) return 2;
  kl_url_t u;
  if (parse_url(argv[1], &u)) return 2;
  const char *user = argv[2], *key = argv[3], *what = argv[4];
  kl_aggr_item_t items[2];
  size_t n_items = 1;
  uint8_t *req = NULL;
  size_t len = 0;
  bool shut_wr = false;
  memset(items, 0, sizeof items);
  items[0].request_id = kl_aggr_request_id();
  random_hash(&items[0].hash);
  xres_t r;
  if (strcmp(what, "ok") == 0 || strcmp(what, "truncated") == 0 || strcmp(what, "cut") == 0) {
    if (build(user, key, items, 1, false, &req, &len)) return 1;
    if (strcmp(what, "truncated") == 0) { /* a TLV16 PDU: fix the outer length */
      len -= 10;
      req[2] = (uint8_t)((len - 4) >> 8);
      req[3] = (uint8_t)(len - 4);
    } else if (strcmp(what, "cut") == 0) {
      len /= 2;
      shut_wr = true;
    }
  } else if (strcmp(what, "wrongkey") == 0) {
    if (build(user, "not the key", items, 1, false, &req, &len)) return 1;
  } else if (strcmp(what, "unknownlogin") == 0) {
    if (build("mallory", key, items, 1, false, &req, &len)) return 1;
  } else if (strcmp(what, "garbage") == 0) {
    static const char text[] = "this is not a KSI PDU, just some text";
    len = 2 + sizeof text - 1;
    if ((req = malloc(len)) == NULL) return 1;
    req[0] = 0x07; /* a TLV8 of type 7: framed like a PDU, but no PDU */
    req[1] = (uint8_t)(sizeof text - 1);
    memcpy(req + 2, text, sizeof text - 1);
    n_items = 0;
  } else if (strcmp(what, "oversize") == 0 && argc > 5) {
    len = (size_t)atol(argv[5]);
    if (len < 4 || len > 65539 || (req = calloc(1, len)) == NULL) return 2;
    req[0] = 0x82; /* TLV16, type 0x220 */
    req[1] = 0x20;
    req[2] = (uint8_t)((len - 4) >> 8);
    req[3] = (uint8_t)(len - 4);
    n_items = 0;
  } else if (strcmp(what, "level") == 0) {
    /* The configuration first: the level announced. */
    if (build(user, key, NULL, 0, true, &req, &len)) return 1;
    xfer(&u, req, len, false, &r);
    free(req);
    req = NULL;
    kl_aggr_auth_t auth = {user, key, strlen(key), 0};
    kl_aggr_resp_t *resp = NULL;
    kl_aggr_config_t conf;
    kl_err_t e = {0};
    if (r.body == NULL || kl_aggr_resp_open(r.body, r.len, &auth, &resp, &e) ||
        kl_aggr_resp_config(resp, &conf, &e) || !conf.has_max_level) {
      printf("config_error=\"%s\"\n", r.body ? e.msg : "no response");
      kl_aggr_resp_free(resp);
      xres_free(&r);
      return 1;
    }
    unsigned max = (unsigned)conf.max_level;
    kl_aggr_resp_free(resp);
    xres_free(&r);
    printf("max_level=%u ", max);
    if (argc > 5) max = (unsigned)atoi(argv[5]); /* the limit enforced, above the one announced */
    items[0].level = max;
    items[1].request_id = items[0].request_id + 1;
    items[1].level = max + 1;
    random_hash(&items[1].hash);
    n_items = 2;
    if (build(user, key, items, 2, false, &req, &len)) return 1;
  } else {
    fprintf(stderr, "gw_badclient send: unknown case %s\n", what);
    return 2;
  }
  xfer(&u, req, len, shut_wr, &r);
  free(req);
  describe(&r, key, items, n_items);
  int rc = r.err[0] ? 1 : 0;
  xres_free(&r);
  return rc;
}

/* ---- stream ---- */

typedef struct rec {
  long long t_send, t_recv;
  int outcome; /* 0 ok, 1 KSI status, 2 no answer, 3 bad signature */
  long long status;
} rec_t;

typedef struct stream {
  kl_url_t u;
  const char *user, *key, *dir, *stop_file;
  long long deadline;
  atomic_uint_fast64_t seq;
  pthread_mutex_t mu;
  rec_t *recs;
  size_t n, cap;
  char first_bad[KL_ERR_MSG_MAX];
} stream_t;

static bool stopped(const stream_t *s) {
  struct stat st;
  return now_ms() >= s->deadline || stat(s->stop_file, &st) == 0;
}

static void stream_one(stream_t *s) {
  uint64_t seq = atomic_fetch_add(&s->seq, 1) + 1;
  char doc[160], hex[33], path[4200], why[KL_ERR_MSG_MAX] = "";
  uint64_t a = rnd64(), b = rnd64();
  snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
  int dn = snprintf(doc, sizeof doc, "stream document %llu %s\n", (unsigned long long)seq, hex);
  kl_aggr_item_t it = {.request_id = seq};
  kl_hash(KL_HASH_SHA256, doc, (size_t)dn, &it.hash, NULL);
  uint8_t *req;
  size_t len;
  rec_t rec = {.t_send = now_ms(), .status = -1};
  if (build(s->user, s->key, &it, 1, false, &req, &len)) {
    rec.outcome = 2;
  } else {
    xres_t r;
    xfer(&s->u, req, len, false, &r);
    free(req);
    rec.t_recv = now_ms();
    kl_pdu_t *pdu = NULL;
    if (r.body == NULL) {
      rec.outcome = 2;
      snprintf(why, sizeof why, "no answer: %s", r.err[0] ? r.err : "closed");
    } else if (kl_pdu_parse(r.body, r.len, &pdu, NULL)) {
      rec.outcome = 3;
      snprintf(why, sizeof why, "unparseable response");
    } else if ((rec.status = status_of(pdu, seq)) != 0) {
      rec.outcome = rec.status < 0 ? 3 : 1;
      if (rec.status < 0) snprintf(why, sizeof why, "no answer for the request id");
    } else {
      kl_sig_t *sig = NULL;
      if (signature(r.body, r.len, s->key, &it, &sig, why, sizeof why)) {
        rec.outcome = 3;
      } else {
        size_t sl;
        const uint8_t *sb = kl_sig_bytes(sig, &sl);
        snprintf(path, sizeof path, "%s/s%05llu.doc", s->dir, (unsigned long long)seq);
        int w = write_file(path, doc, (size_t)dn);
        snprintf(path, sizeof path, "%s/s%05llu.doc.ksig", s->dir, (unsigned long long)seq);
        if (w || write_file(path, sb, sl)) fprintf(stderr, "gw_badclient: cannot write %s\n", path);
        kl_sig_free(sig);
      }
    }
    kl_pdu_free(pdu);
    xres_free(&r);
  }
  pthread_mutex_lock(&s->mu);
  if (rec.outcome == 3 && s->first_bad[0] == '\0') snprintf(s->first_bad, sizeof s->first_bad, "%s", why);
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    rec_t *p = realloc(s->recs, cap * sizeof *p);
    if (p) s->recs = p, s->cap = cap;
  }
  if (s->n < s->cap) s->recs[s->n++] = rec;
  pthread_mutex_unlock(&s->mu);
}

static void *stream_thread(void *arg) {
  stream_t *s = arg;
  sleep_ms((long)(rnd64() % 500)); /* spread the clients over the gateway's rounds */
  while (!stopped(s)) {
    stream_one(s);
    for (long pause = (long)(rnd64() % 700); pause > 0 && !stopped(s); pause -= 50) sleep_ms(pause < 50 ? pause : 50);
  }
  return NULL;
}

static int by_send(const void *a, const void *b) {
  const rec_t *x = a, *y = b;
  return (x->t_send > y->t_send) - (x->t_send < y->t_send);
}
static int by_recv(const void *a, const void *b) {
  const rec_t *x = a, *y = b;
  return (x->t_recv > y->t_recv) - (x->t_recv < y->t_recv);
}

static int cmd_stream(int argc, char **argv) {
  if (argc < 8) return 2;
  static stream_t s; /* large; shared with the threads */
  if (parse_url(argv[1], &s.u)) return 2;
  s.user = argv[2];
  s.key = argv[3];
  s.dir = argv[4];
  int threads = atoi(argv[5]);
  s.deadline = now_ms() + atoll(argv[6]);
  s.stop_file = argv[7];
  const char *event_file = argc > 8 ? argv[8] : NULL;
  if (threads < 1 || threads > 64) return 2;
  pthread_mutex_init(&s.mu, NULL);
  pthread_t th[64];
  int started = 0;
  for (int i = 0; i < threads; i++)
    if (pthread_create(&th[i], NULL, stream_thread, &s) == 0) started++;
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  long long event = 0;
  if (event_file) {
    FILE *f = fopen(event_file, "r");
    if (f) {
      if (fscanf(f, "%lld", &event) != 1) event = 0;
      fclose(f);
    }
  }
  size_t ok = 0, ok_after = 0, failed = 0, io = 0, bad = 0, nonretry = 0;
  long long st_count[8] = {0}, st_code[8] = {0};
  long long max_lat = 0, fail_first = -1, fail_last = -1;
  for (size_t i = 0; i < s.n; i++) {
    rec_t *r = &s.recs[i];
    if (r->outcome == 0) {
      ok++;
      if (event && r->t_send >= event) ok_after++;
      if (r->t_recv - r->t_send > max_lat) max_lat = r->t_recv - r->t_send;
      continue;
    }
    if (fail_first < 0 || r->t_send < fail_first) fail_first = r->t_send;
    if (r->t_send > fail_last) fail_last = r->t_send;
    if (r->outcome == 2) io++;
    if (r->outcome == 3) bad++;
    if (r->outcome != 1) continue;
    failed++;
    if (r->status != KL_STATUS_UPSTREAM_ERROR && r->status != KL_STATUS_UPSTREAM_TIMEOUT) nonretry++;
    for (int k = 0; k < 8; k++)
      if (st_count[k] == 0 || st_code[k] == r->status) {
        st_code[k] = r->status;
        st_count[k]++;
        break;
      }
  }
  /* The longest stretch (by send time) from a failed request to the next signed one. */
  qsort(s.recs, s.n, sizeof *s.recs, by_send);
  long long outage = 0, since = -1;
  for (size_t i = 0; i < s.n; i++) {
    if (s.recs[i].outcome != 0) {
      if (since < 0) since = s.recs[i].t_send;
    } else if (since >= 0) {
      if (s.recs[i].t_send - since > outage) outage = s.recs[i].t_send - since;
      since = -1;
    }
  }
  if (since >= 0 && s.n && s.recs[s.n - 1].t_send - since > outage) outage = s.recs[s.n - 1].t_send - since;
  /* The longest time between two successive signed answers, before and after the event. */
  qsort(s.recs, s.n, sizeof *s.recs, by_recv);
  long long gap_before = 0, gap_after = 0, prev = -1;
  for (size_t i = 0; i < s.n; i++) {
    if (s.recs[i].outcome != 0) continue;
    if (prev >= 0) {
      long long g = s.recs[i].t_recv - prev;
      if (event == 0 || s.recs[i].t_recv < event) {
        if (g > gap_before) gap_before = g;
      } else if (g > gap_after) {
        gap_after = g;
      }
    }
    prev = s.recs[i].t_recv;
  }
  printf("sent=%zu ok=%zu ok_after=%zu failed=%zu io=%zu bad=%zu nonretryable=%zu statuses=", s.n, ok, ok_after, failed,
         io, bad, nonretry);
  int any = 0;
  for (int k = 0; k < 8 && st_count[k]; k++) printf("%s0x%04llX:%lld", any++ ? "," : "", st_code[k], st_count[k]);
  printf("%s outage_ms=%lld failed_span_ms=%lld gap_before_ms=%lld gap_after_ms=%lld max_latency_ms=%lld\n",
         any ? "" : "none", outage, fail_first < 0 ? 0 : fail_last - fail_first, gap_before, gap_after, max_lat);
  if (s.first_bad[0]) printf("first bad answer: %s\n", s.first_bad);
  free(s.recs);
  return 0;
}

/* ---- slow ---- */

/* Whether the server's end of our connection (local port lport on the server, remote port
 * rport) is still ESTABLISHED, from /proc/net/tcp: a server that closes a connection whose
 * peer does not read leaves its data and FIN queued behind a zero window, so the client
 * cannot see the close; the kernel's table can. */
static bool server_side_open(unsigned lport, unsigned rport) {
  FILE *f = fopen("/proc/net/tcp", "r");
  char line[512];
  bool open = false;
  if (f == NULL) return true; /* cannot tell: say open, the caller reports not closed */
  while (fgets(line, sizeof line, f)) {
    unsigned la, lp, ra, rp, st;
    if (sscanf(line, " %*d: %x:%x %x:%x %x", &la, &lp, &ra, &rp, &st) == 5 && lp == lport && rp == rport &&
        st == 0x01)
      open = true;
  }
  fclose(f);
  return open;
}

static int cmd_slow(int argc, char **argv) {
  if (argc < 7) return 2;
  char host[64], err[160];
  const char *colon = strrchr(argv[1], ':');
  if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) return 2;
  memcpy(host, argv[1], (size_t)(colon - argv[1]));
  host[colon - argv[1]] = '\0';
  const char *user = argv[2], *key = argv[3];
  size_t pdus = (size_t)atol(argv[4]), reqs = (size_t)atol(argv[5]);
  long long deadline = now_ms() + atoll(argv[6]);
  if (pdus == 0 || reqs == 0 || reqs > 64) return 2;
  /* Every PDU first, so that sending goes as fast as the gateway takes them. */
  uint8_t **pdu = calloc(pdus, sizeof *pdu);
  size_t *plen = calloc(pdus, sizeof *plen);
  kl_aggr_item_t items[64];
  uint64_t id = kl_aggr_request_id();
  if (pdu == NULL || plen == NULL) return 1;
  for (size_t i = 0; i < pdus; i++) {
    for (size_t k = 0; k < reqs; k++) {
      items[k] = (kl_aggr_item_t){.request_id = id++};
      random_hash(&items[k].hash);
    }
    if (build(user, key, items, reqs, false, &pdu[i], &plen[i])) return 1;
  }
  int fd = dial(host, colon + 1, TIMEOUT_MS, 4096, 16384, err, sizeof err);
  if (fd < 0) {
    printf("local_error=\"%s\"\n", err);
    return 1;
  }
  struct sockaddr_in me;
  socklen_t mlen = sizeof me;
  getsockname(fd, (struct sockaddr *)&me, &mlen);
  unsigned myport = ntohs(me.sin_port), gwport = (unsigned)atoi(colon + 1);
  size_t taken = 0, off = 0;
  long long last = now_ms();
  const char *ended = "all";
  while (taken < pdus) {
    if (now_ms() >= deadline) {
      ended = "deadline";
      break;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    int k = poll(&p, 1, 100);
    if (k > 0 && (p.revents & (POLLERR | POLLHUP))) {
      ended = "closed";
      break;
    }
    if (k > 0 && (p.revents & POLLOUT)) {
      ssize_t w = send(fd, pdu[taken] + off, plen[taken] - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        ended = "closed";
        break;
      }
      if (w > 0) {
        last = now_ms();
        off += (size_t)w;
        if (off == plen[taken]) taken++, off = 0;
      }
    }
    if (now_ms() - last >= 2500) { /* nothing taken for longer than a round trip: it stopped */
      ended = "stalled";
      break;
    }
  }
  printf("taken pdus=%zu of %zu\n", taken, pdus);
  bool closed = false;
  long long closed_at = 0;
  while (now_ms() < deadline) { /* never reading, until the gateway closes its end */
    if (!server_side_open(gwport, myport)) {
      closed = true;
      closed_at = now_ms();
      break;
    }
    sleep_ms(20);
  }
  close(fd);
  printf("slow pdus_taken=%zu pdus=%zu sending=%s server_closed=%d close_ms=%lld\n", taken, pdus, ended, closed,
         closed ? closed_at - last : -1);
  for (size_t i = 0; i < pdus; i++) free(pdu[i]);
  free(pdu);
  free(plen);
  return 0;
}

/* ---- capture and shape ---- */

static int cmd_capture(int argc, char **argv) {
  if (argc < 6) return 2;
  kl_url_t u;
  if (parse_url(argv[1], &u)) return 2;
  size_t n;
  uint8_t *data = read_file(argv[4], &n);
  if (data == NULL) return 2;
  kl_aggr_item_t it = {.request_id = 1};
  kl_hash(KL_HASH_SHA256, data, n, &it.hash, NULL);
  free(data);
  uint8_t *req;
  size_t len;
  if (build(argv[2], argv[3], &it, 1, false, &req, &len)) return 1;
  xres_t r;
  xfer(&u, req, len, false, &r);
  free(req);
  int rc = r.body && write_file(argv[5], r.body, r.len) == 0 ? 0 : 1;
  describe(&r, argv[3], &it, 1);
  xres_free(&r);
  return rc;
}

/* The types of t's children (and of the header's, payload's and error's), a run of 0x801
 * chains written once as "801+". */
static void children(const uint8_t *base, const kl_tlv_t *t, int depth) {
  kl_tlv_iter_t it;
  kl_tlv_t c;
  unsigned prev = 0;
  bool first = true;
  kl_tlv_iter_children(&it, base, t);
  printf("[");
  while (kl_tlv_next(&it, &c, NULL) == 1) {
    if (c.type == prev && c.type == 0x801) continue;
    printf("%s%02X", first ? "" : " ", c.type);
    if (c.type == 0x801) printf("+");
    if (depth == 0 && (c.type == 0x01 || c.type == 0x02 || c.type == 0x03)) children(base, &c, 1);
    if (c.type == 0x1F && c.len > 0) printf("(%s)", kl_hash_name(c.value[0]));
    prev = c.type;
    first = false;
  }
  printf("]");
}

static int cmd_shape(int argc, char **argv) {
  if (argc < 2) return 2;
  size_t n;
  uint8_t *data = read_file(argv[1], &n);
  kl_tlv_t t;
  if (data == NULL || kl_tlv_parse_one(data, n, &t, NULL)) {
    free(data);
    printf("unparseable\n");
    return 1;
  }
  printf("%04X", t.type);
  children(data, &t, 0);
  printf("\n");
  free(data);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: gw_badclient send|stream|slow|capture|shape ...\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(argv[1], "send") == 0) return cmd_send(argc - 1, argv + 1);
  if (strcmp(argv[1], "stream") == 0) return cmd_stream(argc - 1, argv + 1);
  if (strcmp(argv[1], "slow") == 0) return cmd_slow(argc - 1, argv + 1);
  if (strcmp(argv[1], "capture") == 0) return cmd_capture(argc - 1, argv + 1);
  if (strcmp(argv[1], "shape") == 0) return cmd_shape(argc - 1, argv + 1);
  fprintf(stderr, "gw_badclient: unknown command %s\n", argv[1]);
  return 2;
}
