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
  fprintf(f, "usage: keyless core [--ca FILE --cert FILE --key FILE] [--json] status ADMIN_URL...\n"
             "       keyless core [--ca FILE --cert FILE --key FILE] add    ADMIN_URLS ID RAFT_ADDR\n"
             "       keyless core [--ca FILE --cert FILE --key FILE] remove ADMIN_URLS ID\n"
             "  status: one line per node (id, role, term, commit index, last calendar second, lag,\n"
             "          state), then the members as the leader (or the first node that answered) sees\n"
             "          them: id, voter/standby/spare, Raft address, replicated index (on the leader)\n"
             "  --json: each node's /status JSON instead, one line per node\n"
             "  add:    a new voter ID at RAFT_ADDR (start it first, with bootstrap = no: it is promoted\n"
             "          once it has caught up; if that fails it stays a standby, and the same add resumes);\n"
             "  remove: member ID. Both are sent to the leader: ADMIN_URLS\n"
             "          may name several nodes (separated by commas or spaces, as $KL_CORE_ADMIN_URLS),\n"
             "          and the one that leads is found and asked\n"
             "  ADMIN_URL: a core node's admin port, e.g. https://127.0.0.1:9104 (a trailing / is fine)\n"
             CLI_TLS_HELP CLI_ADMIN_TLS_HELP
             "  --timeout MS  connect and read timeout (default 5000 for status; 90000 for add and\n"
             "                remove, which are answered once the change has committed, and an add once\n"
             "                the new member has caught up and become a voter)\n"
             "example: keyless core --ca pki/cluster-ca.crt --cert pki/nodes/admin-operator.crt \\\n"
             "           --key pki/nodes/admin-operator.key status https://127.0.0.1:9104\n");
  cli_exit_table(f);
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

/* A top-level field of a node's flat /status JSON (the members array comes last). */
static bool jnum(const char *js, const char *key, long long *v) {
  char k[40];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(js, k);
  return p && sscanf(p + strlen(k), "%lld", v) == 1;
}

static bool jstr(const char *js, const char *key, char *out, size_t n) {
  char k[40];
  snprintf(k, sizeof k, "\"%s\":\"", key);
  const char *p = strstr(js, k);
  if (p == NULL) return false;
  p += strlen(k);
  size_t i = 0;
  while (*p && *p != '"' && i + 1 < n) out[i++] = *p++;
  out[i] = '\0';
  return true;
}

static const char *num_or_dash(bool ok, long long v, char *buf, size_t n) {
  if (ok && v >= 0) snprintf(buf, n, "%lld", v);
  else snprintf(buf, n, "-");
  return buf;
}

/* One line of the status table from a node's JSON. */
static void status_row(const char *url, const char *js) {
  long long id = -1, term = -1, commit = -1, last = -1, lag = -1;
  char role[24] = "?", state[24] = "?", a[24], b[24], c[24], d[24];
  bool hid = jnum(js, "id", &id), ht = jnum(js, "term", &term), hc = jnum(js, "commit_index", &commit);
  bool hl = jnum(js, "calendar_last", &last), hg = jnum(js, "calendar_lag_seconds", &lag);
  jstr(js, "role", role, sizeof role);
  jstr(js, "state", state, sizeof state);
  printf("%-32s %4s  %-11s %6s %9s %12s %5s  %s\n", url, num_or_dash(hid, id, a, sizeof a), role,
         num_or_dash(ht, term, b, sizeof b), num_or_dash(hc, commit, c, sizeof c), num_or_dash(hl, last, d, sizeof d),
         hg && lag >= 0 ? (snprintf(a, sizeof a, "%llds", lag), a) : "-", state);
}

/* The members array of a node's JSON, one line each. */
static void member_lines(const char *js) {
  const char *p = strstr(js, "\"members\":[");
  if (p == NULL) return;
  p += 11;
  while ((p = strchr(p, '{')) != NULL) {
    const char *end = strchr(p, '}');
    if (end == NULL) break;
    char one[512], addr[256] = "", role[24] = "?";
    size_t n = (size_t)(end - p) < sizeof one - 1 ? (size_t)(end - p) : sizeof one - 1;
    memcpy(one, p, n);
    one[n] = '\0';
    long long id = -1, match = -1;
    jnum(one, "id", &id);
    jstr(one, "address", addr, sizeof addr);
    jstr(one, "role", role, sizeof role);
    printf("  member %lld  %-8s %s", id, role, addr);
    if (jnum(one, "match_index", &match)) printf("  (replicated to index %lld)", match);
    printf("\n");
    p = end + 1;
  }
}

/* Fetches url's /status into b (text); 0, or the exit status with the reason printed. */
static int fetch_status(const char *base, int timeout, kl_buf_t *b, const char **js, char *msg, size_t msgn) {
  char url[2048];
  kl_err_t e = {0};
  int status = 0;
  kl_buf_reset(b);
  if (join_url(base, "/status", url, sizeof url, &e) || request(url, NULL, timeout, b, &status, &e)) {
    snprintf(msg, msgn, "%s", e.msg);
    return KL_EXIT_NETWORK;
  }
  *js = text(b);
  if (status != 200) {
    snprintf(msg, msgn, "HTTP status %d: %s", status, *js);
    return KL_EXIT_NETWORK;
  }
  return 0;
}

static int cmd_status(char **urls, int n, bool json, int timeout) {
  kl_buf_t b = KL_BUF_INIT;
  char *view = NULL, msg[KL_ERR_MSG_MAX * 2], pm[KL_ERR_MSG_MAX * 2];
  bool view_is_leader = false;
  int st = KL_EXIT_OK;
  if (!json) printf("%-32s %4s  %-11s %6s %9s %12s %5s  %s\n", "NODE", "ID", "ROLE", "TERM", "COMMIT", "LAST SECOND", "LAG",
                    "STATE");
  for (int i = 0; i < n; i++) {
    const char *js = NULL;
    if (fetch_status(urls[i], timeout, &b, &js, msg, sizeof msg)) {
      printf(json ? "%s: %s\n" : "%-32s unreachable: %s\n", urls[i], cli_printable(msg, pm, sizeof pm));
      st = KL_EXIT_NETWORK;
      continue;
    }
    if (json) {
      printf("%s: %s\n", urls[i], js);
      continue;
    }
    status_row(urls[i], js);
    bool leads = strstr(js, "\"role\":\"leader\"") != NULL;
    if (view == NULL || (leads && !view_is_leader)) {
      free(view);
      view = strdup(js);
      view_is_leader = leads;
    }
  }
  if (view) {
    long long id = -1;
    jnum(view, "id", &id);
    printf("members as node %lld%s sees them:\n", id, view_is_leader ? " (the leader)" : "");
    member_lines(view);
  }
  free(view);
  kl_buf_free(&b);
  return st;
}

/* add/remove on the leader among the URLs (a list separated by commas or blanks). */
static int cmd_change(const char *sub, char *list, const char *body, int timeout) {
  char *urls[32];
  int n = 0;
  for (char *tok = strtok(list, ", \t\n"); tok && n < 32; tok = strtok(NULL, ", \t\n")) urls[n++] = tok;
  kl_buf_t b = KL_BUF_INIT;
  char url[2048], msg[KL_ERR_MSG_MAX * 2], pm[KL_ERR_MSG_MAX * 2];
  int st = KL_EXIT_GENERAL;
  bool asked = false;
  for (int i = 0; i < n && !asked; i++) { /* the node that says it leads; one node: just ask it */
    const char *js = NULL;
    if (n > 1 && (fetch_status(urls[i], timeout, &b, &js, msg, sizeof msg) || strstr(js, "\"role\":\"leader\"") == NULL))
      continue;
    kl_err_t e = {0};
    int status = 0;
    asked = true;
    kl_buf_reset(&b);
    if (join_url(urls[i], strcmp(sub, "add") == 0 ? "/members/add" : "/members/remove", url, sizeof url, &e) ||
        request(url, body, timeout, &b, &status, &e)) {
      fprintf(stderr, "keyless core %s: %s: %s\n", sub, url, cli_printable(e.msg, pm, sizeof pm));
      st = KL_EXIT_NETWORK;
    } else if (status != 200) {
      fprintf(stderr, "keyless core %s: %s: HTTP status %d: %s\n", sub, url, status,
              cli_printable(text(&b), pm, sizeof pm));
    } else {
      printf("%s: %s\n", url, text(&b));
      st = KL_EXIT_OK;
    }
  }
  if (!asked) fprintf(stderr, "keyless core %s: none of the %d nodes named says it is the leader\n", sub, n);
  kl_buf_free(&b);
  return st;
}

int cmd_core(int argc, char **argv) {
  enum { O_CA = 256, O_CERT, O_KEY, O_TIMEOUT, O_JSON };
  static const struct option opts[] = {{"ca", required_argument, NULL, O_CA},
                                       {"cert", required_argument, NULL, O_CERT},
                                       {"key", required_argument, NULL, O_KEY},
                                       {"timeout", required_argument, NULL, O_TIMEOUT},
                                       {"json", no_argument, NULL, O_JSON},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  cli_tls_t tls = {0};
  uint64_t timeout = 0; /* 0: the subcommand's default */
  bool json = false;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case O_CA: tls.ca = optarg; break;
      case O_CERT: tls.cert = optarg; break;
      case O_KEY: tls.key = optarg; break;
      case O_JSON: json = true; break;
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
  if (status_cmd) return cmd_status(args + 1, nargs - 1, json, timeout ? (int)timeout : 5000);
  if (timeout == 0) timeout = 90000;
  char body[600];
  if (add) snprintf(body, sizeof body, "%s/%s", args[2], args[3]);
  else snprintf(body, sizeof body, "%s", args[2]);
  return cmd_change(sub, args[1], body, (int)timeout);
}
