/* Test tool (not part of the product): plays an aggregator towards the core. Sends each
 * document hash as a top-level request on one connection (all requests in flight), waits for
 * the answers, and writes each signature (the core's 0x801, the 0x802 and the 0x805) as
 * OUTDIR/NAME.ksig. Retryable answers are sent again, at most --retries times.
 *   core_client -a HOST:PORT -o OUTDIR FILE...        (hashes the files)
 *   core_client -a HOST:PORT -o OUTDIR --random N     (N random document hashes: doc-K.ksig)
 * Prints "signed=N retried=N failed=N" and exits 0 when every document got a signature. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

static int send_request(int fd, uint64_t id, const kl_imprint_t *h) {
  Keyless__Aggregation__Request r = KEYLESS__AGGREGATION__REQUEST__INIT;
  Keyless__Aggregation__Message m = KEYLESS__AGGREGATION__MESSAGE__INIT;
  uint8_t imp[KL_IMPRINT_MAX], buf[256];
  r.request_id = id;
  r.imprint.len = kl_imprint_to_bytes(h, imp);
  r.imprint.data = imp;
  r.level = 0;
  m.body_case = KEYLESS__AGGREGATION__MESSAGE__BODY_REQUEST;
  m.request = &r;
  size_t n = keyless__aggregation__message__pack(&m, buf + 4);
  buf[0] = 0;
  buf[1] = 0;
  buf[2] = (uint8_t)(n >> 8);
  buf[3] = (uint8_t)n;
  return send(fd, buf, n + 4, MSG_NOSIGNAL) == (ssize_t)(n + 4) ? 0 : -1;
}

static int read_full(int fd, uint8_t *p, size_t n, int timeout_ms) {
  while (n > 0) {
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, timeout_ms) <= 0) return -1;
    ssize_t r = recv(fd, p, n, 0);
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
                                       {NULL, 0, NULL, 0}};
  const char *addr = NULL, *out = ".";
  int n_random = 0, retries = 5, c;
  while ((c = getopt_long(argc, argv, "a:o:", opts, NULL)) != -1) {
    if (c == 'a') addr = optarg;
    else if (c == 'o') out = optarg;
    else if (c == 'r') n_random = atoi(optarg);
    else if (c == 't') retries = atoi(optarg);
    else return 2;
  }
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
  for (int i = 0; i < n; i++)
    if (send_request(fd, (uint64_t)i + 1, &docs[i].hash) == 0) outstanding++;
  while (outstanding > 0) {
    uint8_t hdr[4];
    if (read_full(fd, hdr, 4, 15000)) break;
    size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
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
      } else if (r->status == 0x0300 && d->tries++ < retries) {
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
