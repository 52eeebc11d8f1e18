/* keyless core status|add|remove: look at and change the core cluster through the nodes' admin
 * ports (GET /status, POST /members/add, POST /members/remove on the leader). The admin port
 * speaks https with mutual TLS: the operator presents an admin-role certificate of the cluster
 * CA (--cert/--key) and checks the node's against that CA (--ca). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keyless/netclient.h"

static void usage(FILE *f) {
  fprintf(f, "usage: keyless core [--ca FILE --cert FILE --key FILE] status ADMIN_URL...\n"
             "       keyless core [--ca FILE --cert FILE --key FILE] add    ADMIN_URL ID RAFT_ADDR\n"
             "       keyless core [--ca FILE --cert FILE --key FILE] remove ADMIN_URL ID\n"
             "  status: each node's view, as the node's JSON (role, term, leader, calendar)\n"
             "  add:    on the leader, a new voter ID at RAFT_ADDR;  remove: on the leader\n"
             "  ADMIN_URL: a core node's admin port, e.g. https://127.0.0.1:9104\n"
             CLI_TLS_HELP CLI_ADMIN_TLS_HELP
             "  --timeout MS  connect and read timeout (default 5000)\n"
             "example: keyless core --ca pki/cluster-ca.crt --cert pki/nodes/admin-operator.crt \\\n"
             "           --key pki/nodes/admin-operator.key status https://127.0.0.1:9104\n"
             "exit: 0 ok, 1 refused by the node, 3 usage, 5 network or TLS\n");
}

/* BASE (without its trailing '/') + path into url. */
static int join_url(const char *base, const char *path, char *url, size_t cap, kl_err_t *e) {
  size_t n = strlen(base);
  while (n > 0 && base[n - 1] == '/') n--;
  if (snprintf(url, cap, "%.*s%s", (int)n, base, path) >= (int)cap) return kl_err_set(e, KL_EINVAL, "URL too long");
  return 0;
}

static int request(const char *url, const char *body, int timeout_ms, kl_buf_t *out, int *status, kl_err_t *e) {
  kl_url_t u;
  int r = kl_url_parse(url, &u, e);
  if (r) return r;
  return kl_net_request(&u, (const uint8_t *)body, body ? strlen(body) : 0, "text/plain", timeout_ms, 1 << 16, out,
                        status, e);
}

/* The response body as text (NUL-terminated in b), without a trailing newline. */
static const char *text(kl_buf_t *b) {
  while (b->len > 0 && (b->p[b->len - 1] == '\n' || b->p[b->len - 1] == '\r')) b->len--;
  kl_buf_put_u8(b, 0);
  return kl_buf_ok(b) ? (const char *)b->p : "";
}

int cmd_core(int argc, char **argv) {
  enum { O_CA = 256, O_CERT, O_KEY, O_TIMEOUT };
  static const struct option opts[] = {{"ca", required_argument, NULL, O_CA},
                                       {"cert", required_argument, NULL, O_CERT},
                                       {"key", required_argument, NULL, O_KEY},
                                       {"timeout", required_argument, NULL, O_TIMEOUT},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  cli_tls_t tls = {0};
  uint64_t timeout = 5000;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case O_CA: tls.ca = optarg; break;
      case O_CERT: tls.cert = optarg; break;
      case O_KEY: tls.key = optarg; break;
      case O_TIMEOUT:
        if (!cli_parse_u64(optarg, &timeout) || timeout == 0 || timeout > 3600000) {
          fprintf(stderr, "keyless core: --timeout wants milliseconds, 1..3600000\n");
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  char **args = argv + optind;
  int nargs = argc - optind;
  if (nargs < 2) {
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  const char *sub = args[0];
  bool status_cmd = strcmp(sub, "status") == 0, add = strcmp(sub, "add") == 0, remove = strcmp(sub, "remove") == 0;
  if (!(status_cmd || (add && nargs == 4) || (remove && nargs == 3))) {
    fprintf(stderr, "keyless core: %s\n",
            status_cmd || add || remove ? "wrong number of arguments" : "unknown subcommand (status, add, remove)");
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  kl_err_t te = {0};
  int st = cli_tls_setup(&tls, true, &te);
  if (st != KL_EXIT_OK) {
    fprintf(stderr, "keyless core: %s\n", te.msg);
    return st;
  }
  kl_buf_t b = KL_BUF_INIT;
  char url[2048] = "", msg[KL_ERR_MSG_MAX * 2];
  int status = 0;
  if (status_cmd) {
    for (int i = 1; i < nargs; i++) {
      kl_err_t e = {0};
      kl_buf_reset(&b);
      status = 0;
      if (join_url(args[i], "/status", url, sizeof url, &e) || request(url, NULL, (int)timeout, &b, &status, &e)) {
        printf("%s: %s\n", url[0] ? url : args[i], cli_printable(e.msg, msg, sizeof msg));
        st = KL_EXIT_NETWORK;
      } else if (status != 200) {
        printf("%s: HTTP status %d: %s\n", url, status, cli_printable(text(&b), msg, sizeof msg));
        st = KL_EXIT_NETWORK;
      } else {
        printf("%s: %s\n", args[i], text(&b));
      }
      url[0] = '\0';
    }
  } else {
    char body[600];
    kl_err_t e = {0};
    if (add) snprintf(body, sizeof body, "%s/%s", args[2], args[3]);
    else snprintf(body, sizeof body, "%s", args[2]);
    if (join_url(args[1], add ? "/members/add" : "/members/remove", url, sizeof url, &e) ||
        request(url, body, (int)timeout, &b, &status, &e)) {
      fprintf(stderr, "keyless core %s: %s: %s\n", sub, url, cli_printable(e.msg, msg, sizeof msg));
      st = KL_EXIT_NETWORK;
    } else if (status != 200) {
      fprintf(stderr, "keyless core %s: %s: HTTP status %d: %s\n", sub, url, status, cli_printable(text(&b), msg, sizeof msg));
      st = KL_EXIT_GENERAL;
    } else {
      printf("%s\n", text(&b));
    }
  }
  kl_buf_free(&b);
  return st;
}
