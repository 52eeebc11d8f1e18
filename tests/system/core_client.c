/* Test tool (not part of the product): plays an aggregator towards the core. Sends each
 * document hash as a top-level request on one connection (all requests in flight), waits for
 * the answers, and writes each signature (the core's 0x801, the 0x802 and the 0x805) as
 * OUTDIR/NAME.ksig. Retryable answers are sent again, at most --retries times.
 *   core_client -a HOST:PORT -o OUTDIR FILE...        (hashes the files)
 *   core_client -a HOST:PORT -o OUTDIR --random N     (N random document hashes: doc-K.ksig)
 * Prints "signed=N retried=N failed=N" and exits 0 when every document got a signature.
 * With --cert/--key/--ca it speaks mutual TLS 1.3 (what a real aggregator does). For the
 * hostile-peer test it can also send what a misbehaving peer would: --level N (requests at
 * that level), --forward ORIGIN (Forwards claiming that member, for the current second: no
 * answers come back), --heartbeat NODE:OFFSET_MS (a Heartbeat with a skewed clock). */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <time.h>

#include "aggregation.pb-c.h"
#include "keyless/hash.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"

typedef struct doc {
  char name[256];
  kl_imprint_t hash;
  int tries;
  bool done;
} doc_t;

static int dial(const char *addr) {
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || (size_t)(colon - addr) >= sizeof host) return -1;
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

static SSL *g_ssl;
static unsigned g_level;

static ssize_t io_send(int fd, const void *p, size_t n) {
  size_t w = 0;
  if (g_ssl) return SSL_write_ex(g_ssl, p, n, &w) == 1 ? (ssize_t)w : -1;
  return send(fd, p, n, MSG_NOSIGNAL);
}

static ssize_t io_recv(int fd, void *p, size_t n) {
  size_t r = 0;
  if (g_ssl) return SSL_read_ex(g_ssl, p, n, &r) == 1 ? (ssize_t)r : -1;
  return recv(fd, p, n, 0);
}

/* Mutual TLS over the connected socket; the server must be a core or an aggregator. */
static int tls_start(int fd, const char *cert, const char *key, const char *ca) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) return -1;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
    return -1;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  g_ssl = SSL_new(ctx);
  SSL_CTX_free(ctx); /* the SSL keeps its reference */
  if (g_ssl == NULL || SSL_set_fd(g_ssl, fd) != 1 || SSL_connect(g_ssl) != 1) return -1;
  return 0;
}

static int send_msg(int fd, const Keyless__Aggregation__Message *m) {
  uint8_t buf[512];
  size_t n = keyless__aggregation__message__get_packed_size(m);
  if (n + 4 > sizeof buf) return -1;
  keyless__aggregation__message__pack(m, buf + 4);
  buf[0] = 0;
  buf[1] = 0;
  buf[2] = (uint8_t)(n >> 8);
  buf[3] = (uint8_t)n;
  return io_send(fd, buf, n + 4) == (ssize_t)(n + 4) ? 0 : -1;
}

static int send_forward(int fd, uint64_t origin, uint64_t id, const kl_imprint_t *h) {
  Keyless__Aggregation__Forward f = KEYLESS__AGGREGATION__FORWARD__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  uint8_t imp[KL_IMPRINT_MAX];
  f.origin = origin;
  f.request_id = id;
  f.imprint.len = kl_imprint_to_bytes(h, imp);
  f.imprint.data = imp;
  f.level = g_level;
  f.second = (uint64_t)time(NULL);
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_FORWARD;
  m.forward = &f;
  return send_msg(fd, &m);
}

static int send_heartbeat(int fd, uint64_t node, long long offset_ms) {
  Keyless__Aggregation__Heartbeat hb = KEYLESS__AGGREGATION__HEARTBEAT__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  hb.node = node;
  hb.wall_ms = (uint64_t)((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset_ms);
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_HEARTBEAT;
  m.heartbeat = &hb;
  return send_msg(fd, &m);
}

static int send_request(int fd, uint64_t id, const kl_imprint_t *h) {
  Keyless__Aggregation__Request r = KEYLESS__AGGREGATION__REQUEST__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  uint8_t imp[KL_IMPRINT_MAX], buf[256];
  r.request_id = id;
  r.imprint.len = kl_imprint_to_bytes(h, imp);
  r.imprint.data = imp;
  r.level = g_level;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
  m.request = &r;
  (void)buf;
  return send_msg(fd, &m);
}

static int read_full(int fd, uint8_t *p, size_t n, int timeout_ms) {
  while (n > 0) {
    struct pollfd pf = {fd, POLLIN, 0};
    if (!(g_ssl && SSL_pending(g_ssl) > 0) && poll(&pf, 1, timeout_ms) <= 0) return -1;
    ssize_t r = io_recv(fd, p, n);
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_sig(const char *dir, doc_t *d, const Keyless__Aggregation__Response *r) {
  kl_buf_t b = KL_BUF_INIT;
  size_t m = kl_tlv_open(&b);
  for (size_t i = 0; i < r->n_chains; i++) kl_buf_put(&b, r->chains[i].data, r->chains[i].len);
  if (r->has_calendar_chain) kl_buf_put(&b, r->calendar_chain.data, r->calendar_chain.len);
  if (r->has_auth_record) kl_buf_put(&b, r->auth_record.data, r->auth_record.len);
  kl_tlv_close(&b, m, KL_T_SIGNATURE, 0);
  char path[600];
  snprintf(path, sizeof path, "%s/%s.ksig", dir, d->name);
  FILE *f = fopen(path, "wb");
  int ok = f && kl_buf_ok(&b) && fwrite(b.p, 1, b.len, f) == b.len;
  if (f && fclose(f) != 0) ok = 0;
  kl_buf_free(&b);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"addr", required_argument, NULL, 'a'}, {"out", required_argument, NULL, 'o'},
                                       {"random", required_argument, NULL, 'r'}, {"retries", required_argument, NULL, 't'},
                                       {"cert", required_argument, NULL, 'C'}, {"key", required_argument, NULL, 'K'},
                                       {"ca", required_argument, NULL, 'A'}, {"level", required_argument, NULL, 'l'},
                                       {"forward", required_argument, NULL, 'F'},
                                       {"heartbeat", required_argument, NULL, 'H'}, {NULL, 0, NULL, 0}};
  const char *addr = NULL, *out = ".", *cert = NULL, *key = NULL, *ca = NULL, *heartbeat = NULL;
  long long forward_origin = -1;
  int n_random = 0, retries = 5, c;
  while ((c = getopt_long(argc, argv, "a:o:", opts, NULL)) != -1) {
    if (c == 'a') addr = optarg;
    else if (c == 'o') out = optarg;
    else if (c == 'r') n_random = atoi(optarg);
    else if (c == 't') retries = atoi(optarg);
    else if (c == 'C') cert = optarg;
    else if (c == 'K') key = optarg;
    else if (c == 'A') ca = optarg;
    else if (c == 'l') g_level = (unsigned)atoi(optarg);
    else if (c == 'F') forward_origin = atoll(optarg);
    else if (c == 'H') heartbeat = optarg;
    else return 2;
  }
  if (heartbeat && n_random == 0) n_random = 1;
  int n = n_random > 0 ? n_random : argc - optind;
  if (addr == NULL || n <= 0) {
    fprintf(stderr, "usage: core_client -a HOST:PORT -o OUTDIR (FILE... | --random N)\n");
    return 2;
  }
  doc_t *docs = calloc((size_t)n, sizeof *docs);
  for (int i = 0; i < n; i++) {
    if (n_random > 0) {
      uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)i;
      snprintf(docs[i].name, sizeof docs[i].name, "doc-%d-%d", (int)getpid(), i);
      kl_hash(KL_HASH_SHA256, &x, sizeof x, &docs[i].hash, NULL);
    } else {
      const char *path = argv[optind + i], *base = strrchr(path, '/');
      snprintf(docs[i].name, sizeof docs[i].name, "%s", base ? base + 1 : path);
      FILE *f = fopen(path, "rb");
      kl_hasher_t h;
      uint8_t chunk[65536];
      size_t k;
      if (f == NULL || kl_hasher_init(&h, NULL) || kl_hasher_start(&h, KL_HASH_SHA256, NULL)) return 3;
      while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) kl_hasher_update(&h, chunk, k);
      kl_hasher_finish(&h, &docs[i].hash);
      kl_hasher_close(&h);
      fclose(f);
    }
  }
  int fd = dial(addr), signed_ = 0, retried = 0, failed = 0, outstanding = 0;
  if (fd < 0) {
    fprintf(stderr, "core_client: cannot connect to %s\n", addr);
    return 3;
  }
  if (cert && tls_start(fd, cert, key ? key : cert, ca ? ca : cert)) {
    fprintf(stderr, "core_client: TLS to %s failed\n", addr);
    return 3;
  }
  if (forward_origin >= 0 || heartbeat) { /* hostile modes: send, give the peer time to read, go */
    int sent = 0;
    for (int i = 0; i < n; i++) {
      int r = heartbeat ? send_heartbeat(fd, strtoull(heartbeat, NULL, 10), atoll(strchr(heartbeat, ':') ? strchr(heartbeat, ':') + 1 : "0"))
                        : send_forward(fd, (uint64_t)forward_origin, (uint64_t)i + 1, &docs[i].hash);
      if (r == 0) sent++;
    }
    uint8_t b[64];
    struct pollfd pf = {fd, POLLIN, 0};
    bool closed = poll(&pf, 1, 1000) > 0 && io_recv(fd, b, sizeof b) <= 0; /* members answer nothing: EOF = refused */
    printf("sent=%d closed=%d\n", sent, closed ? 1 : 0);
    close(fd);
    free(docs);
    return 0;
  }
  for (int i = 0; i < n; i++)
    if (send_request(fd, (uint64_t)i + 1, &docs[i].hash) == 0) outstanding++;
  while (outstanding > 0) {
    uint8_t hdr[4];
    if (read_full(fd, hdr, 4, 15000)) break;
    size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    if (len == 0) continue; /* the server's "accepted" frame on a TLS link */
    uint8_t *p = malloc(len ? len : 1);
    if (p == NULL || len > (1u << 20) || read_full(fd, p, len, 15000)) break;
    Keyless__Aggregation__Message *m = keyless__aggregation__message__unpack(NULL, len, p);
    free(p);
    if (m == NULL || m->body_case != KEYLESS__AGGREGATION__MESSAGE__BODY_RESPONSE) break;
    const Keyless__Aggregation__Response *r = m->response;
    outstanding--;
    if (r->request_id >= 1 && r->request_id <= (uint64_t)n) {
      doc_t *d = &docs[r->request_id - 1];
      if (r->status == 0 && write_sig(out, d, r) == 0) {
        d->done = true;
        signed_++;
      } else if ((r->status == 0x0300 || r->status == 0x0301) && d->tries++ < retries) {
        retried++;
        usleep(200000);
        if (send_request(fd, r->request_id, &d->hash) == 0) outstanding++;
      } else {
        fprintf(stderr, "core_client: %s: status 0x%X %s\n", d->name, r->status, r->error ? r->error : "");
        failed++;
      }
    }
    keyless__aggregation__message__free_unpacked(m, NULL);
  }
  close(fd);
  failed += n - signed_ - failed;
  printf("signed=%d retried=%d failed=%d\n", signed_, retried, failed);
  free(docs);
  return failed == 0 ? 0 : 1;
}
