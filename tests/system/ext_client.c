/* Test helper for the extender system test: builds extension request PDUs, decodes responses,
 * and talks ksi+tcp (several PDUs on one connection). HTTP is done with curl by the script.
 *
 *   ext_client make -u USER -k KEY [-a ALG] [--config] [-r ID:AGGR[:PUB]]... -o FILE
 *   ext_client decode [-k KEY] FILE [-o CHAIN.bin]
 *       prints one line per element:  error status=0x0102 message=...
 *                                     resp id=1 status=0x0000 cal_last=L pub=P aggr=t root=HEX
 *                                     config first=G last=L max_requests=N
 *       and hmac=ok|bad|none; exit 0 if the PDU parsed, 1 otherwise
 *   ext_client tcp HOST:PORT OUT_PREFIX IN...
 *       sends every IN back to back on one connection, then reads one TLV per IN into
 *       OUT_PREFIX1.bin, OUT_PREFIX2.bin...; prints "received N"; exit 0 if all arrived, 3 if
 *       the server closed the connection first (5 s timeout per read).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "keyless/chains.h"
#include "keyless/pdu.h"

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  uint8_t *buf = malloc(1 << 20);
  size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
  fclose(f);
  *len = n;
  return buf;
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(p, 1, n, f) != n) {
    if (f) fclose(f);
    return -1;
  }
  return fclose(f);
}

static int cmd_make(int argc, char **argv) {
  const char *user = NULL, *key = NULL, *out = NULL;
  int alg = KL_HASH_SHA256;
  bool config = false;
  kl_pdu_ext_req_t reqs[64];
  size_t n = 0;
  static const struct option opts[] = {{"config", no_argument, NULL, 'C'}, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "u:k:a:r:o:", opts, NULL)) != -1) {
    switch (c) {
      case 'u': user = optarg; break;
      case 'k': key = optarg; break;
      case 'a': alg = kl_hash_from_name(optarg); break;
      case 'o': out = optarg; break;
      case 'C': config = true; break;
      case 'r': {
        if (n == 64) return 2;
        unsigned long long id, t, p;
        kl_pdu_ext_req_t *q = &reqs[n++];
        memset(q, 0, sizeof *q);
        int k = sscanf(optarg, "%llu:%llu:%llu", &id, &t, &p);
        if (k < 2) return 2;
        q->request_id = id;
        q->aggr_time = t;
        if (k == 3) q->has_pub_time = true, q->pub_time = p;
        break;
      }
      default: return 2;
    }
  }
  if (user == NULL || key == NULL || out == NULL || alg < 0) return 2;
  kl_pdu_writer_t w;
  kl_err_t e;
  kl_pdu_header_t h = {.login_id = user};
  uint8_t *bytes;
  size_t len;
  int r = kl_pdu_writer_begin(&w, KL_PDU_EXT_REQ, &h, &e);
  for (size_t i = 0; r == 0 && i < n; i++) r = kl_pdu_add_ext_req(&w, &reqs[i], &e);
  if (r == 0 && config) r = kl_pdu_add_config_req(&w, &e);
  if (r == 0) r = kl_pdu_writer_finish(&w, alg, key, strlen(key), &bytes, &len, &e);
  else kl_pdu_writer_free(&w);
  if (r) {
    fprintf(stderr, "ext_client make: %s\n", e.msg);
    return 1;
  }
  r = write_file(out, bytes, len);
  free(bytes);
  return r ? 1 : 0;
}

static int cmd_decode(int argc, char **argv) {
  const char *key = NULL, *chain_out = NULL;
  int c;
  while ((c = getopt(argc, argv, "k:o:")) != -1) {
    if (c == 'k') key = optarg;
    else if (c == 'o') chain_out = optarg;
    else return 2;
  }
  if (optind != argc - 1) return 2;
  size_t len;
  uint8_t *data = read_file(argv[optind], &len);
  if (data == NULL) return 2;
  kl_pdu_t *pdu;
  kl_err_t e;
  if (kl_pdu_parse(data, len, &pdu, &e)) {
    printf("unparseable: %s\n", e.msg);
    free(data);
    return 1;
  }
  free(data);
  if (pdu->error)
    printf("error status=0x%04llX message=%s\n", (unsigned long long)pdu->error->status,
           pdu->error->message ? pdu->error->message : "");
  kl_hasher_t h;
  kl_hasher_init(&h, NULL);
  for (size_t i = 0; i < pdu->n_ext_resps; i++) {
    const kl_pdu_ext_resp_t *x = &pdu->ext_resps[i];
    printf("resp id=%llu status=0x%04llX cal_last=%llu", (unsigned long long)x->request_id,
           (unsigned long long)x->status, (unsigned long long)x->cal_last);
    if (x->cal) {
      kl_imprint_t root;
      char hex[2 * KL_IMPRINT_MAX + 1] = "?";
      uint64_t shape_t = 0;
      if (kl_cal_chain_root(&h, x->cal, &root, NULL) == 0) kl_imprint_hex(&root, hex);
      bool shape_ok = kl_cal_chain_time(x->cal, &shape_t);
      printf(" pub=%llu aggr=%llu shape=%llu%s root=%s", (unsigned long long)x->cal->pub_time,
             (unsigned long long)x->cal->aggr_time, (unsigned long long)shape_t, shape_ok ? "" : "(bad)", hex);
      if (chain_out && i == 0 && write_file(chain_out, x->cal_raw, x->cal_raw_len)) return 2;
    }
    if (x->error_msg) printf(" message=%s", x->error_msg);
    printf("\n");
  }
  if (pdu->config)
    printf("config first=%llu last=%llu max_requests=%llu\n", (unsigned long long)pdu->config->cal_first,
           (unsigned long long)pdu->config->cal_last, (unsigned long long)pdu->config->max_requests);
  if (!pdu->has_hmac) printf("hmac=none\n");
  else if (key)
    printf("hmac=%s hmac_alg=%s\n", kl_pdu_check_hmac(pdu, key, strlen(key), NULL) == 0 ? "ok" : "bad",
           kl_hash_name(pdu->hmac.alg));
  kl_hasher_close(&h);
  kl_pdu_free(pdu);
  return 0;
}

static int read_full(int fd, uint8_t *p, size_t n) {
  for (size_t off = 0; off < n;) {
    ssize_t k = read(fd, p + off, n - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    off += (size_t)k;
  }
  return 0;
}

static int cmd_tcp(int argc, char **argv) {
  if (argc < 4) return 2;
  char host[64];
  const char *colon = strrchr(argv[1], ':');
  if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) return 2;
  memcpy(host, argv[1], (size_t)(colon - argv[1]));
  host[colon - argv[1]] = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return 2;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
    perror("ext_client tcp: connect");
    return 1;
  }
  int n_in = argc - 3;
  for (int i = 0; i < n_in; i++) {
    size_t len;
    uint8_t *p = read_file(argv[3 + i], &len);
    if (p == NULL) return 2;
    ssize_t w = write(fd, p, len);
    free(p);
    if (w != (ssize_t)len) break; /* the server may already have closed: count what arrives */
  }
  int got = 0;
  for (; got < n_in; got++) {
    uint8_t hdr[4], *buf;
    if (read_full(fd, hdr, 2)) break;
    size_t hl = (hdr[0] & 0x80) ? 4 : 2;
    if (hl == 4 && read_full(fd, hdr + 2, 2)) break;
    size_t vl = hl == 4 ? (size_t)hdr[2] << 8 | hdr[3] : hdr[1];
    if ((buf = malloc(hl + vl)) == NULL) break;
    memcpy(buf, hdr, hl);
    if (read_full(fd, buf + hl, vl)) {
      free(buf);
      break;
    }
    char name[512];
    snprintf(name, sizeof name, "%s%d.bin", argv[2], got + 1);
    int r = write_file(name, buf, hl + vl);
    free(buf);
    if (r) return 2;
  }
  close(fd);
  printf("received %d\n", got);
  return got == n_in ? 0 : 3;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* a server that closes while we write: count what came back */
  if (argc < 2) {
    fprintf(stderr, "usage: ext_client make|decode|tcp ...\n");
    return 2;
  }
  if (strcmp(argv[1], "make") == 0) return cmd_make(argc - 1, argv + 1);
  if (strcmp(argv[1], "decode") == 0) return cmd_decode(argc - 1, argv + 1);
  if (strcmp(argv[1], "tcp") == 0) return cmd_tcp(argc - 1, argv + 1);
  fprintf(stderr, "ext_client: unknown command %s\n", argv[1]);
  return 2;
}
