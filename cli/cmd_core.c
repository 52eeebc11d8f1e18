/* keyless core status|add|remove: look at and change the core cluster through the nodes' admin
 * ports (GET /status, POST /members/add, POST /members/remove on the leader). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keyless/netclient.h"

static void usage(FILE *f) {
  fprintf(f, "usage: keyless core status ADMIN_URL...            (e.g. http://127.0.0.1:9104)\n"
             "       keyless core add    ADMIN_URL ID RAFT_ADDR     (on the leader: a new voter)\n"
             "       keyless core remove ADMIN_URL ID               (on the leader)\n");
}

static int request(const char *base, const char *path, const char *body, kl_buf_t *out, int *status, kl_err_t *e) {
  char url[512];
  kl_url_t u;
  snprintf(url, sizeof url, "%s%s", base, path);
  int r = kl_url_parse(url, &u, e);
  if (r) return r;
  return kl_net_request(&u, (const uint8_t *)body, body ? strlen(body) : 0, "text/plain", 5000, 1 << 16, out, status, e);
}

int cmd_core(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[1], "--help") == 0) {
    usage(argc < 3 ? stderr : stdout);
    return argc < 3 ? KL_EXIT_USAGE : KL_EXIT_OK;
  }
  kl_err_t e = {0};
  kl_buf_t b = KL_BUF_INIT;
  int status = 0, st = KL_EXIT_OK;
  if (strcmp(argv[1], "status") == 0) {
    for (int i = 2; i < argc; i++) {
      kl_buf_reset(&b);
      if (request(argv[i], "/status", NULL, &b, &status, &e) || status != 200) {
        printf("%s: unreachable (%s)\n", argv[i], e.msg[0] ? e.msg : "bad status");
        st = KL_EXIT_NETWORK;
        continue;
      }
      kl_buf_put_u8(&b, 0);
      printf("%s: %s", argv[i], (const char *)b.p);
    }
  } else if ((strcmp(argv[1], "add") == 0 && argc == 5) || (strcmp(argv[1], "remove") == 0 && argc == 4)) {
    char body[200];
    bool add = argv[1][0] == 'a';
    if (add) snprintf(body, sizeof body, "%s/%s", argv[3], argv[4]);
    else snprintf(body, sizeof body, "%s", argv[3]);
    if (request(argv[2], add ? "/members/add" : "/members/remove", body, &b, &status, &e)) {
      fprintf(stderr, "keyless core %s: %s\n", argv[1], e.msg);
      st = KL_EXIT_NETWORK;
    } else {
      kl_buf_put_u8(&b, 0);
      printf("%s", (const char *)b.p);
      st = status == 200 ? KL_EXIT_OK : KL_EXIT_GENERAL;
    }
  } else {
    usage(stderr);
    st = KL_EXIT_USAGE;
  }
  kl_buf_free(&b);
  return st;
}
