/* Test tool for test_ksi_compat.sh, not part of the product: sends the requests that KSI
 * clients' own test suites send to a gateway or an extender, including ones no keyless client
 * would build, and prints what came back as one line of key=value.
 *
 *   ksi_probe URL USER KEY CASE [ARG]
 *     config        a configuration request: max_level= max_requests= parents=N
 *     rawlevel HEX  two requests in one PDU: id 1 whose level element holds the bytes HEX (e.g.
 *                   ffffff), id 2 a plain good one
 *     level N       one request at level N (0..255)
 *     many N        N requests in one PDU; ok=K counts those answered with a signature that
 *                   opens and checks (internal policy with the request's hash)
 *     ext           an extension request PDU (0x320) for a gateway
 *     aggr          an aggregation request PDU (0x220), for an extender
 *     extconfig     an extender's configuration: max_requests=
 *     rawext HEX    two extension requests: id 1 whose aggregation time element holds the bytes
 *                   HEX, id 2 a good one (3 s ago); per request id= status=
 *   Output: http=STATUS (HTTP only), closed=1, error=0xSSSS (PDU-level), id=N status=0xSSSS per
 *   request (not for many), ok=K, hmac=ok|bad|none. URL: http://host:port/path or
 *   ksi+tcp://host:port (plain only). Exit 0 when an exchange happened, 1 on a local failure.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "keyless/netclient.h"
#include "keyless/pdu.h"
#include "keyless/signclient.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"

#define MAX_RESP (1u << 20)

static int dial(const kl_url_t *u) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  if (getaddrinfo(u->host, u->port, &hints, &ai) != 0) return -1;
  int fd = socket(ai->ai_family, SOCK_STREAM, 0);
  struct timeval tv = {15, 0};
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  return fd;
}

static int send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads until EOF or max bytes; returns the count. */
static size_t read_all(int fd, uint8_t *buf, size_t max) {
  size_t n = 0;
  ssize_t r;
  while (n < max && (r = recv(fd, buf + n, max - n, 0)) > 0) n += (size_t)r;
  return n;
}

/* One exchange: *http is the HTTP status (0 for ksi+tcp); the response PDU in *body. */
static int exchange(const kl_url_t *u, const uint8_t *req, size_t n, int *http, uint8_t **body, size_t *len) {
  int fd = dial(u);
  *http = 0;
  *body = NULL;
  *len = 0;
  if (fd < 0) return -1;
  uint8_t *buf = malloc(MAX_RESP);
  size_t got = 0;
  if (buf == NULL) goto out;
  if (u->kind == KL_URL_TCP) {
    if (send_all(fd, req, n) == 0) got = read_all(fd, buf, 4);
    if (got == 4) { /* TLV16 header: the rest of one PDU */
      size_t want = 4 + ((size_t)buf[2] << 8 | buf[3]);
      size_t r = 4;
      while (r < want) {
        ssize_t k = recv(fd, buf + r, want - r, 0);
        if (k <= 0) break;
        r += (size_t)k;
      }
      if (r == want) {
        *body = buf;
        *len = want;
        buf = NULL;
      }
    }
  } else {
    char head[1400];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ksi-request\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      u->path[0] ? u->path : "/", u->host, n);
    if (send_all(fd, head, (size_t)hn) == 0 && send_all(fd, req, n) == 0) got = read_all(fd, buf, MAX_RESP - 1);
    buf[got] = 0;
    const char *sep = got > 12 ? strstr((char *)buf, "\r\n\r\n") : NULL;
    if (sep) {
      *http = atoi((char *)buf + 9);
      size_t off = (size_t)(sep + 4 - (char *)buf);
      if ((*body = malloc(got - off + 1)) != NULL) {
        memcpy(*body, buf + off, got - off);
        *len = got - off;
      }
    }
  }
out:
  free(buf);
  close(fd);
  return 0;
}

static void random_hash(kl_imprint_t *h) {
  uint8_t b[32];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) memset(b, 0x5a, sizeof b);
  kl_hash(KL_HASH_SHA256, b, sizeof b, h, NULL);
}

/* A 0x220 or 0x320 PDU from raw request payloads (bytes of whole 0x02 elements), HMAC SHA-256. */
static uint8_t *raw_pdu(uint16_t type, const char *user, const char *key, const kl_buf_t *payload, size_t *len) {
  kl_buf_t b = KL_BUF_INIT;
  size_t outer = kl_tlv_open(&b);
  size_t h = kl_tlv_open(&b);
  kl_tlv_put_str(&b, 0x01, 0, user);
  kl_tlv_close(&b, h, 0x01, 0);
  kl_buf_put(&b, payload->p, payload->len);
  uint8_t zero[33] = {KL_HASH_SHA256};
  kl_tlv_put_bytes(&b, 0x1F, 0, zero, sizeof zero);
  if (kl_tlv_close(&b, outer, type, 0)) {
    kl_buf_free(&b);
    return NULL;
  }
  kl_imprint_t mac;
  if (kl_hmac(KL_HASH_SHA256, key, strlen(key), b.p, b.len - 32, &mac, NULL)) {
    kl_buf_free(&b);
    return NULL;
  }
  memcpy(b.p + b.len - 32, mac.digest, 32);
  return kl_buf_steal(&b, len);
}

static void put_request(kl_buf_t *b, uint64_t id, const uint8_t *level, size_t level_len) {
  kl_imprint_t h;
  random_hash(&h);
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, id);
  kl_imprint_encode(b, 0x02, &h);
  if (level) kl_tlv_put_bytes(b, 0x03, 0, level, level_len);
  kl_tlv_close(b, m, 0x02, 0);
}

static int hex_bytes(const char *s, uint8_t *out, size_t max) {
  size_t n = strlen(s) / 2;
  if (n == 0 || n > max || strlen(s) % 2) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (uint8_t)v;
  }
  return (int)n;
}

static void describe(int http, const uint8_t *body, size_t len, const char *user, const char *key,
                     const kl_aggr_item_t *items, size_t n_items, bool per_request) {
  if (http) printf("http=%d ", http);
  kl_pdu_t *pdu = NULL;
  kl_err_t e = {0};
  if (body == NULL || len == 0) {
    printf("closed=1\n");
    return;
  }
  if (kl_pdu_parse(body, len, &pdu, &e)) {
    printf("unparseable=\"%s\"\n", e.msg);
    return;
  }
  if (pdu->error) printf("error=0x%04llX ", (unsigned long long)pdu->error->status);
  size_t ok = 0;
  for (size_t i = 0; i < pdu->n_aggr_resps; i++) {
    const kl_pdu_aggr_resp_t *x = &pdu->aggr_resps[i];
    if (per_request) printf("id=%llu status=0x%04llX ", (unsigned long long)x->request_id, (unsigned long long)x->status);
    for (size_t k = 0; k < n_items && x->status == 0; k++) {
      if (items[k].request_id != x->request_id) continue;
      kl_aggr_auth_t auth = {user, key, strlen(key), 0};
      kl_aggr_resp_t *r = NULL;
      kl_sig_t *sig = NULL;
      if (kl_aggr_resp_open(body, len, &auth, &r, NULL) == 0 && kl_aggr_resp_signature(r, &items[k], &sig, NULL) == 0)
        ok++;
      kl_sig_free(sig);
      kl_aggr_resp_free(r);
    }
  }
  for (size_t i = 0; i < pdu->n_ext_resps; i++)
    printf("id=%llu status=0x%04llX ", (unsigned long long)pdu->ext_resps[i].request_id,
           (unsigned long long)pdu->ext_resps[i].status);
  if (n_items) printf("ok=%zu ", ok);
  if (pdu->config) {
    const kl_pdu_config_t *c = pdu->config;
    if (c->has_max_level) printf("max_level=%llu ", (unsigned long long)c->max_level);
    if (c->has_max_requests) printf("max_requests=%llu ", (unsigned long long)c->max_requests);
    printf("parents=%zu ", c->n_parent_uris);
  }
  if (!pdu->has_hmac) printf("hmac=none\n");
  else printf("hmac=%s\n", kl_pdu_check_hmac(pdu, key, strlen(key), NULL) == 0 ? "ok" : "bad");
  kl_pdu_free(pdu);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: ksi_probe URL USER KEY config|rawlevel HEX|level N|many N|ext|aggr|extconfig|rawext HEX\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  kl_url_t u;
  kl_err_t e = {0};
  if (kl_url_parse(argv[1], &u, &e) || u.tls) {
    fprintf(stderr, "ksi_probe: %s: %s\n", argv[1], u.tls ? "plain URLs only" : e.msg);
    return 2;
  }
  const char *user = argv[2], *key = argv[3], *what = argv[4], *arg = argc > 5 ? argv[5] : "";
  kl_aggr_auth_t auth = {user, key, strlen(key), 0};
  kl_aggr_item_t *items = NULL;
  size_t n_items = 0, len = 0;
  uint8_t *req = NULL;
  bool per_request = true;
  if (strcmp(what, "config") == 0) {
    if (kl_aggr_request_build(&auth, NULL, 0, true, &req, &len, &e)) goto local;
  } else if (strcmp(what, "rawlevel") == 0) {
    uint8_t lv[32];
    int n = hex_bytes(arg, lv, sizeof lv);
    if (n < 0) return 2;
    kl_buf_t b = KL_BUF_INIT;
    put_request(&b, 1, lv, (size_t)n);
    put_request(&b, 2, NULL, 0);
    req = raw_pdu(KL_PDU_AGGR_REQ, user, key, &b, &len);
    kl_buf_free(&b);
  } else if (strcmp(what, "level") == 0 || strcmp(what, "many") == 0) {
    long v = atol(arg);
    n_items = strcmp(what, "many") == 0 ? (size_t)(v > 0 && v < 5000 ? v : 1) : 1;
    per_request = n_items == 1;
    if ((items = calloc(n_items, sizeof *items)) == NULL) return 1;
    for (size_t i = 0; i < n_items; i++) {
      items[i].request_id = i + 1;
      random_hash(&items[i].hash);
      if (n_items == 1) items[i].level = (unsigned)v;
    }
    if (kl_aggr_request_build(&auth, items, n_items, false, &req, &len, &e)) goto local;
  } else if (strcmp(what, "rawext") == 0) {
    uint8_t tb[32];
    int n = hex_bytes(arg, tb, sizeof tb);
    if (n < 0) return 2;
    kl_buf_t b = KL_BUF_INIT;
    size_t m = kl_tlv_open(&b);
    kl_tlv_put_uint(&b, 0x01, 0, 1);
    kl_tlv_put_bytes(&b, 0x02, 0, tb, (size_t)n);
    kl_tlv_close(&b, m, 0x02, 0);
    m = kl_tlv_open(&b);
    kl_tlv_put_uint(&b, 0x01, 0, 2);
    kl_tlv_put_uint(&b, 0x02, 0, (uint64_t)time(NULL) - 3);
    kl_tlv_close(&b, m, 0x02, 0);
    req = raw_pdu(KL_PDU_EXT_REQ, user, key, &b, &len);
    kl_buf_free(&b);
  } else if (strcmp(what, "extconfig") == 0) {
    kl_pdu_writer_t w;
    kl_pdu_header_t hdr = {.login_id = user};
    if (kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &hdr, &e) || kl_pdu_add_config_req(&w, &e) ||
        kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, strlen(key), &req, &len, &e))
      goto local;
  } else if (strcmp(what, "ext") == 0) {
    kl_pdu_writer_t w;
    kl_pdu_header_t hdr = {.login_id = user};
    kl_pdu_ext_req_t x = {.request_id = 1, .aggr_time = 1700000000};
    if (kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &hdr, &e) || kl_pdu_add_ext_req(&w, &x, &e) ||
        kl_pdu_writer_finish(&w, KL_HASH_SHA256, key, strlen(key), &req, &len, &e))
      goto local;
  } else if (strcmp(what, "aggr") == 0) {
    kl_aggr_item_t it = {.request_id = 1};
    random_hash(&it.hash);
    if (kl_aggr_request_build(&auth, &it, 1, false, &req, &len, &e)) goto local;
  } else {
    fprintf(stderr, "ksi_probe: unknown case %s\n", what);
    return 2;
  }
  if (req == NULL) return 1;
  int http;
  uint8_t *body;
  size_t blen;
  if (exchange(&u, req, len, &http, &body, &blen)) {
    fprintf(stderr, "ksi_probe: cannot connect to %s\n", argv[1]);
    free(req);
    free(items);
    return 1;
  }
  describe(http, body, blen, user, key, items, n_items, per_request);
  free(body);
  free(req);
  free(items);
  return 0;
local:
  fprintf(stderr, "ksi_probe: %s\n", e.msg);
  free(items);
  return 1;
}
