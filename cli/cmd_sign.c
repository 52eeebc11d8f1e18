/* keyless sign: hash files (streamed), get them signed by a gateway, verify each signature
 * internally and write it atomically next to the file (FILE.ksig) or where -o says.
 *
 * Several inputs go into one request as a local tree of height at most --max-lvl (as
 * ksi-tool's local aggregation); more than 2^max-lvl inputs are split evenly over several
 * requests, made one after the other. With several inputs, -o must name an existing directory
 * (DIR/NAME.ksig); with one input, -o DIR does the same. Every output is checked before
 * anything is hashed or sent: an existing file is refused without --force, as is one output
 * path given twice. A failed request stops the run: later inputs are reported as skipped.
 *
 * ksi-tool's options work too: the service options may come from a configuration file
 * (--conf FILE, $KSI_CONF; conf.h), -d dumps each new signature to standard error, -C/-c set
 * the timeout in seconds, --show-progress forces the progress line, and --mdata with
 * --mdata-cli-id etc. puts a metadata link under every document hash (KSI-FORMAT.md §4.4). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keyless/netclient.h"
#include "keyless/round.h"
#include "keyless/signclient.h"

#define DEFAULT_MAX_LVL 8 /* 256 files per request */

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless sign -i FILE... [-o OUT] -S URL [--aggr-user U --aggr-key K] [options]\n"
          "       keyless sign --dump-conf -S URL [--aggr-user U --aggr-key K]\n"
          "  -i FILE     a file to sign (repeatable; further FILEs may follow the options);\n"
          "              '-' is standard input; ALG:HEX (e.g. SHA-256:4f2a...) signs that hash\n"
          "              (write ./NAME for a file whose name looks like a hash)\n"
          "  -o OUT      the signature file (default FILE.ksig), or an existing directory\n"
          "              (DIR/NAME.ksig; required form with several inputs); needed for '-' and a hash\n"
          "  -S URL      the gateway: http://host:port/path, https://host:port/path,\n"
          "              ksi+http(s)://U:K@host/path, ksi+tcp://host:port,\n"
          "              or file://RESPONSE (a canned response, for tests; request id 1)\n"
          "  --aggr-user U, --aggr-key K   login and HMAC key (override the URL's)\n"
          "  --aggr-hmac-alg ALG           HMAC algorithm (default SHA-256)\n"
          "  -H ALG      document hash algorithm (default SHA-256)\n"
          "  --max-lvl N local tree height, 0..255 (default %d): up to 2^N files per request;\n"
          "              0 sends one request per file; N must not exceed the max level the\n"
          "              gateway announces (--dump-conf)\n"
          "  --force     replace existing signature files\n"
          "  --json      one JSON object per input on standard output\n"
          "  -d          dump each new signature to standard error (as keyless inspect)\n"
          "  --show-progress  a progress line (done/total, rate) on standard error; by default\n"
          "              shown for 16 or more files when standard error is a terminal\n"
          "  --timeout MS  connect and read timeout (default 10000); -C S, -c S: the same in seconds\n"
          "  --mdata --mdata-cli-id NAME [--mdata-mac-id ID] [--mdata-sqn-nr N] [--mdata-req-tm]\n"
          "              put a metadata link (client id, machine id, sequence number, the request\n"
          "              time in microseconds from this machine's clock) under every document hash;\n"
          "              it takes one level of the local tree (--max-lvl 1 or more)\n"
          "  --conf FILE ksi-tool configuration file (one option per line: -S URL, --aggr-user U,\n"
          "              --aggr-key K, ...); the command line wins over it, it over $KSI_CONF's file\n"
          CLI_TLS_HELP
          "  --dump-conf print the gateway's configuration and exit\n"
          "exit: 0 ok, 3 usage, 4 bad response, 5 network, 8 gateway error, 9 I/O, 11 HMAC, 14 login,\n"
          "      16 configuration file\n",
          DEFAULT_MAX_LVL);
}

typedef struct input {
  const char *path;
  char *out;
  bool is_hash;
  kl_imprint_t hash;
  const char *status; /* "ok", "error", "skipped" */
  char *error;
  bool batch_error; /* the whole request failed */
  uint64_t aggr_time;
} input_t;

static int sign_exit(int r) {
  switch (r) {
    case KL_EIO: return KL_EXIT_NETWORK;
    case KL_ESERVICE: return KL_EXIT_AGGREGATOR;
    default: return cli_exit_for(r);
  }
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int by_out_cmp(const void *a, const void *b) {
  return strcmp((*(const input_t *const *)a)->out, (*(const input_t *const *)b)->out);
}

/* Decides every input's kind and output path; 0 or a usage error printed. */
static int plan(input_t *in, size_t n, const char *out, int alg, bool alg_given, bool force) {
  bool out_dir = out != NULL && is_dir(out);
  if (n > 1 && out != NULL && !out_dir) {
    fprintf(stderr, "keyless sign: with several inputs, -o must name an existing directory (%s is not one)\n", out);
    return KL_EXIT_USAGE;
  }
  for (size_t i = 0; i < n; i++) {
    const char *p = in[i].path;
    in[i].status = "skipped";
    in[i].is_hash = strchr(p, ':') != NULL && kl_imprint_parse_text(&in[i].hash, p, NULL) == 0;
    if (in[i].is_hash && alg_given && in[i].hash.alg != alg) {
      fprintf(stderr, "keyless sign: %s is not a %s hash (-H)\n", p, kl_hash_name(alg));
      return KL_EXIT_USAGE;
    }
    if (in[i].is_hash && !kl_hash_trusted(in[i].hash.alg)) {
      fprintf(stderr, "keyless sign: %s: %s is not accepted for new signatures\n", p, kl_hash_name(in[i].hash.alg));
      return KL_EXIT_USAGE;
    }
    if (in[i].is_hash || strcmp(p, "-") == 0) {
      if (n > 1 || out == NULL || out_dir) {
        fprintf(stderr, "keyless sign: %s: signing %s needs a single input and -o OUT (a file)\n", p,
                in[i].is_hash ? "a hash" : "standard input");
        return KL_EXIT_USAGE;
      }
    }
    const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
    size_t cap = strlen(p) + (out ? strlen(out) : 0) + 8;
    if ((in[i].out = malloc(cap)) == NULL) return KL_EXIT_GENERAL;
    if (out_dir) snprintf(in[i].out, cap, "%s/%s.ksig", out, base);
    else if (out) snprintf(in[i].out, cap, "%s", out);
    else snprintf(in[i].out, cap, "%s.ksig", p);
    if (out_dir && *base == '\0') {
      fprintf(stderr, "keyless sign: %s: no file name to name the signature after\n", p);
      return KL_EXIT_USAGE;
    }
    struct stat st;
    if (!force && stat(in[i].out, &st) == 0) {
      fprintf(stderr, "keyless sign: %s already exists (use --force to replace it); nothing was sent\n", in[i].out);
      return KL_EXIT_USAGE;
    }
  }
  /* One output path twice (the same file given twice, or two NAMEs in one -o DIR). */
  const input_t **by_out = malloc(n * sizeof *by_out);
  if (by_out == NULL) return KL_EXIT_GENERAL;
  for (size_t i = 0; i < n; i++) by_out[i] = &in[i];
  qsort(by_out, n, sizeof *by_out, by_out_cmp);
  for (size_t i = 1; i < n; i++)
    if (strcmp(by_out[i - 1]->out, by_out[i]->out) == 0) {
      fprintf(stderr, "keyless sign: %s and %s would both be signed into %s\n", by_out[i - 1]->path, by_out[i]->path,
              by_out[i]->out);
      free(by_out);
      return KL_EXIT_USAGE;
    }
  free(by_out);
  return KL_EXIT_OK;
}

/* The progress line: on a terminal rewritten in place and cleared with done == 0; elsewhere
 * (--show-progress) one line per update. The rate counts from the first update of a phase. */
typedef struct prog {
  bool on, tty;
  const char *what;
  struct timespec t0;
} prog_t;

static double since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void progress(prog_t *p, const char *what, size_t done, size_t n) {
  if (!p->on) return;
  if (done == 0) {
    if (p->tty) fputs("\r\033[K", stderr);
  } else {
    if (p->what != what) {
      p->what = what;
      clock_gettime(CLOCK_MONOTONIC, &p->t0);
    }
    double dt = since(&p->t0);
    char rate[48] = "";
    if (dt > 0.001) snprintf(rate, sizeof rate, ", %.1f/s", (double)done / dt);
    fprintf(stderr, "%s%s %zu/%zu files%s%s", p->tty ? "\r" : "", what, done, n, rate, p->tty ? "" : "\n");
  }
  fflush(stderr);
}

static void report(const input_t *x, bool json) {
  char t[64], hex[2 * KL_IMPRINT_MAX + 1], msg[KL_ERR_MSG_MAX * 2];
  if (json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "path", x->path);
    json_str(&j, "signature", x->out);
    json_str(&j, "status", x->status);
    if (x->hash.len) json_imprint(&j, "document_hash", &x->hash);
    if (x->aggr_time) {
      json_u64(&j, "aggregation_time", x->aggr_time);
      json_str(&j, "aggregation_time_utc", cli_utc(x->aggr_time, t, sizeof t));
    }
    if (x->error) json_str(&j, "error", x->error);
    json_end_obj(&j);
    json_finish(&j);
  } else if (strcmp(x->status, "ok") == 0) {
    printf("%s: signed at %s (%llu), %s:%s -> %s\n", x->path, cli_utc(x->aggr_time, t, sizeof t),
           (unsigned long long)x->aggr_time, kl_hash_name(x->hash.alg), kl_imprint_hex(&x->hash, hex) + 2, x->out);
  } else if (x->error && !x->batch_error) { /* batch errors are reported once by sign_all */
    fprintf(stderr, "keyless sign: %s: %s\n", x->path, cli_printable(x->error, msg, sizeof msg));
  }
  fflush(stdout);
}

static int dump_conf(const char *url, const char *user, const char *key, int hmac_alg, int timeout, bool json) {
  kl_aggr_resp_t *resp = NULL;
  kl_aggr_config_t c;
  kl_err_t e = {0};
  char buf[1024];
  int r = kl_aggr_exchange(url, user, key, hmac_alg, NULL, 0, true, timeout, &resp, &e);
  if (r == 0) r = kl_aggr_resp_config(resp, &c, &e);
  if (r) {
    fprintf(stderr, "keyless sign: %s\n", cli_printable(e.msg, buf, sizeof buf));
    kl_aggr_resp_free(resp);
    return r == KL_ENOTFOUND ? KL_EXIT_AGGREGATOR : sign_exit(r);
  }
  if (json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    if (c.has_max_level) json_u64(&j, "max_level", c.max_level);
    if (c.has_aggr_algo) json_str(&j, "aggr_algo", kl_hash_name((int)c.aggr_algo));
    if (c.has_aggr_period) json_u64(&j, "aggr_period_ms", c.aggr_period);
    if (c.has_max_requests) json_u64(&j, "max_requests", c.max_requests);
    json_arr(&j, "parent_uris");
    for (size_t i = 0; i < c.n_parent_uris; i++) json_str(&j, NULL, c.parent_uris[i]);
    json_end_arr(&j);
    json_end_obj(&j);
    json_finish(&j);
  } else {
    if (c.has_max_level) printf("max level:        %llu\n", (unsigned long long)c.max_level);
    if (c.has_aggr_algo) printf("aggregation alg:  %s\n", kl_hash_name((int)c.aggr_algo));
    if (c.has_aggr_period) printf("aggregation period: %llu ms\n", (unsigned long long)c.aggr_period);
    if (c.has_max_requests) printf("max requests:     %llu\n", (unsigned long long)c.max_requests);
    for (size_t i = 0; i < c.n_parent_uris; i++) printf("parent URI:       %s\n", cli_printable(c.parent_uris[i], buf, sizeof buf));
  }
  kl_aggr_resp_free(resp);
  return KL_EXIT_OK;
}

/* How to sign. */
typedef struct sopts {
  const char *url, *user, *key;
  unsigned max_lvl;
  int hmac_alg, timeout;
  bool force, json, dump;
  const uint8_t *meta; /* metadata value, NULL: none */
  size_t meta_len;
} sopts_t;

/* Signs in[0..n) in requests of at most `cap` hashes; returns the exit status. */
static int sign_all(input_t *in, size_t n, const sopts_t *o, prog_t *prog) {
  bool json = o->json;
  size_t cap = kl_sign_batch_capacity(o->meta ? o->max_lvl - 1 : o->max_lvl), nb = (n + cap - 1) / cap, done = 0;
  int st = KL_EXIT_OK;
  kl_imprint_t *hashes = malloc(n * sizeof *hashes);
  kl_sig_t **sigs = calloc(n, sizeof *sigs);
  if (hashes == NULL || sigs == NULL) {
    free(hashes);
    free(sigs);
    fprintf(stderr, "keyless sign: out of memory\n");
    return KL_EXIT_GENERAL;
  }
  for (size_t i = 0; i < n; i++) hashes[i] = in[i].hash;
  for (size_t b = 0, off = 0; b < nb && st == KL_EXIT_OK; b++) {
    size_t k = (n - off) / (nb - b) + ((n - off) % (nb - b) != 0); /* spread evenly */
    kl_err_t e = {0};
    int r = kl_sign_hashes_meta(o->url, o->user, o->key, hashes + off, k, o->max_lvl, o->hmac_alg, o->timeout, o->meta,
                                o->meta_len, sigs + off, &e);
    for (size_t i = off; i < off + k; i++) {
      input_t *x = &in[i];
      if (r) {
        x->status = "error";
        x->error = strdup(e.msg);
        x->batch_error = true;
      } else {
        size_t len;
        const uint8_t *bytes = kl_sig_bytes(sigs[i], &len);
        kl_err_t we = {0};
        x->aggr_time = kl_sig_signing_time(sigs[i]);
        if (cli_write_file_atomic(x->out, bytes, len, o->force, &we)) {
          x->status = "error";
          x->error = strdup(we.msg);
          if (st == KL_EXIT_OK) st = KL_EXIT_IO;
        } else {
          x->status = "ok";
          if (o->dump) {
            progress(prog, NULL, 0, n);
            cli_sig_dump(stderr, x->out, sigs[i]);
          }
        }
        kl_sig_free(sigs[i]);
        sigs[i] = NULL;
      }
      if (x->error && !x->batch_error && !json) progress(prog, NULL, 0, n); /* report() writes to stderr */
      report(x, json);
    }
    if (r) {
      char msg[KL_ERR_MSG_MAX * 2];
      st = sign_exit(r);
      progress(prog, NULL, 0, n);
      if (!json && k > 1)
        fprintf(stderr, "keyless sign: %s and %zu more in the same request: %s\n", in[off].path, k - 1,
                cli_printable(e.msg, msg, sizeof msg));
      else if (!json)
        fprintf(stderr, "keyless sign: %s: %s\n", in[off].path, cli_printable(e.msg, msg, sizeof msg));
    }
    off += k;
    done = off;
    if (st == KL_EXIT_OK) progress(prog, "signed", done, n);
  }
  progress(prog, NULL, 0, n);
  for (size_t i = done; i < n; i++) report(&in[i], json); /* skipped after a failure */
  if (st != KL_EXIT_OK && done < n)
    fprintf(stderr, "keyless sign: %zu of %zu inputs were not signed after that error\n", n - done, n);
  free(hashes);
  free(sigs);
  return st;
}

/* The metadata value for --mdata (KSI-FORMAT.md §4.4); an exit status. */
static int make_meta(const char *cli_id, const char *mac_id, const char *sqn, bool req_tm, kl_buf_t *out) {
  kl_round_identity_t id = {cli_id, mac_id, false, false, 0, 0};
  kl_err_t e = {0};
  if (cli_id == NULL || *cli_id == '\0') {
    fprintf(stderr, "keyless sign: --mdata needs the client id: --mdata-cli-id NAME\n");
    return KL_EXIT_USAGE;
  }
  if (sqn && !(id.has_seq = cli_parse_u64(sqn, &id.seq))) {
    fprintf(stderr, "keyless sign: %s--mdata-sqn-nr wants a non-negative integer, got '%s'\n", cli_where(sqn), sqn);
    return KL_EXIT_USAGE;
  }
  if (req_tm) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    id.has_req_time = true;
    id.req_time_us = (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
  }
  if (kl_metadata_encode(&id, out, &e)) {
    fprintf(stderr, "keyless sign: --mdata: %s\n", e.msg);
    return KL_EXIT_USAGE;
  }
  return KL_EXIT_OK;
}

int cmd_sign(int argc, char **argv) {
  enum { O_USER = 256, O_KEY, O_HMAC, O_MAXLVL, O_FORCE, O_JSON, O_TIMEOUT, O_DUMPCONF, O_CA, O_CONF, O_PROGRESS,
         O_MDATA, O_CLIID, O_MACID, O_SQN, O_REQTM };
  static const char shorts[] = "i:o:S:H:C:c:dh";
  static const struct option opts[] = {
      {"input", required_argument, NULL, 'i'}, {"output", required_argument, NULL, 'o'},
      {"aggregator", required_argument, NULL, 'S'}, {"aggr-user", required_argument, NULL, O_USER},
      {"aggr-key", required_argument, NULL, O_KEY}, {"aggr-hmac-alg", required_argument, NULL, O_HMAC},
      {"hash-alg", required_argument, NULL, 'H'}, {"max-lvl", required_argument, NULL, O_MAXLVL},
      {"force", no_argument, NULL, O_FORCE}, {"json", no_argument, NULL, O_JSON},
      {"timeout", required_argument, NULL, O_TIMEOUT}, {"dump-conf", no_argument, NULL, O_DUMPCONF},
      {"ca", required_argument, NULL, O_CA}, {"conf", required_argument, NULL, O_CONF},
      {"show-progress", no_argument, NULL, O_PROGRESS}, {"mdata", no_argument, NULL, O_MDATA},
      {"mdata-cli-id", required_argument, NULL, O_CLIID}, {"mdata-mac-id", required_argument, NULL, O_MACID},
      {"mdata-sqn-nr", required_argument, NULL, O_SQN}, {"mdata-req-tm", no_argument, NULL, O_REQTM},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *out = NULL, *url = NULL, *user = NULL, *key = NULL, *cli_id = NULL, *mac_id = NULL, *sqn = NULL;
  cli_tls_t tls = {0};
  int alg = KL_HASH_DEFAULT, hmac_alg = KL_HASH_SHA256, c;
  bool alg_given = false, force = false, json = false, conf = false, dump = false, show_prog = false, mdata = false,
       req_tm = false;
  uint64_t max_lvl = DEFAULT_MAX_LVL, timeout = 10000;
  size_t n = 0;
  kl_buf_t meta = KL_BUF_INIT;
  int st = cli_conf_args("sign", &argc, &argv, shorts, opts);
  if (st != KL_EXIT_OK) return st;
  input_t *in = calloc((size_t)argc + 1, sizeof *in);
  if (in == NULL) return KL_EXIT_GENERAL;
  st = KL_EXIT_USAGE;
  optind = 1;
  while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
    switch (c) {
      case 'i': in[n++].path = optarg; break;
      case 'o': out = optarg; break;
      case 'S': url = optarg; break;
      case O_USER: user = optarg; break;
      case O_KEY: key = optarg; break;
      case 'H':
      case O_HMAC: {
        int a = kl_hash_from_name(optarg);
        if (a < 0 || !kl_hash_trusted(a) || !kl_hash_available(a)) {
          fprintf(stderr, "keyless sign: %s%s: '%s' is not a usable hash algorithm\n", cli_where(optarg),
                  c == 'H' ? "-H" : "--aggr-hmac-alg", optarg);
          goto out;
        }
        if (c == 'H') {
          alg = a;
          alg_given = true;
        } else {
          hmac_alg = a;
        }
        break;
      }
      case O_MAXLVL:
        if (!cli_parse_u64(optarg, &max_lvl) || max_lvl > 255) {
          fprintf(stderr, "keyless sign: %s--max-lvl wants 0..255, got '%s'\n", cli_where(optarg), optarg);
          goto out;
        }
        break;
      case O_TIMEOUT:
      case 'C':
      case 'c': {
        uint64_t scale = c == O_TIMEOUT ? 1 : 1000, limit = 3600000 / scale;
        if (!cli_parse_u64(optarg, &timeout) || timeout == 0 || timeout > limit) {
          fprintf(stderr, "keyless sign: %s%s wants %s, 1..%llu, got '%s'\n", cli_where(optarg),
                  c == O_TIMEOUT ? "--timeout" : c == 'C' ? "-C" : "-c", scale == 1 ? "milliseconds" : "seconds",
                  (unsigned long long)limit, optarg);
          goto out;
        }
        timeout *= scale;
        break;
      }
      case O_FORCE: force = true; break;
      case O_JSON: json = true; break;
      case O_DUMPCONF: conf = true; break;
      case O_CA: tls.ca = optarg; break;
      case O_CONF: break; /* read by cli_conf_args */
      case 'd': dump = true; break;
      case O_PROGRESS: show_prog = true; break;
      case O_MDATA: mdata = true; break;
      case O_CLIID: cli_id = optarg; break;
      case O_MACID: mac_id = optarg; break;
      case O_SQN: sqn = optarg; break;
      case O_REQTM: req_tm = true; break;
      case 'h': usage(stdout); st = KL_EXIT_OK; goto out;
      default: usage(stderr); goto out;
    }
  }
  while (optind < argc) in[n++].path = argv[optind++];
  if (url == NULL || (n == 0) != conf) {
    fprintf(stderr, "keyless sign: give -S URL (or in --conf FILE) and %s\n",
            conf ? "no inputs with --dump-conf" : "at least one -i FILE");
    usage(stderr);
    goto out;
  }
  /* The metadata fields of a configuration file wait for --mdata; on the command line they
   * mean the user forgot it. */
  const char *stray = cli_source(cli_id) == CLI_SRC_CMDLINE && cli_id ? "--mdata-cli-id"
                      : cli_source(mac_id) == CLI_SRC_CMDLINE && mac_id ? "--mdata-mac-id"
                      : cli_source(sqn) == CLI_SRC_CMDLINE && sqn ? "--mdata-sqn-nr"
                                                                   : NULL;
  if (!mdata && stray) {
    fprintf(stderr, "keyless sign: %s is only used with --mdata\n", stray);
    goto out;
  }
  if (mdata) {
    if ((st = make_meta(cli_id, mac_id, sqn, req_tm, &meta)) != KL_EXIT_OK) goto out;
    st = KL_EXIT_USAGE;
    if (max_lvl == 0) {
      fprintf(stderr, "keyless sign: the metadata link takes one level of the local tree: --max-lvl 0 leaves none\n");
      goto out;
    }
  }
  kl_err_t e = {0};
  kl_url_t u;
  memset(&u, 0, sizeof u);
  if (strncmp(url, "file://", 7) != 0 && kl_url_parse(url, &u, &e)) {
    fprintf(stderr, "keyless sign: %s-S %s\n", cli_where(url), e.msg);
    goto out;
  }
  if ((user == NULL && u.user[0] == '\0') || (key == NULL && u.key[0] == '\0')) {
    fprintf(stderr,
            "keyless sign: gateway %s: give the login and key (--aggr-user U --aggr-key K, or ksi+http://U:K@host/;"
            " best in a --conf file)\n",
            url);
    goto out;
  }
  if ((st = cli_tls_setup(&tls, false, &e)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless sign: %s%s\n", cli_where(tls.ca), e.msg);
    goto out;
  }
  st = KL_EXIT_USAGE;
  if (conf) {
    st = dump_conf(url, user, key, hmac_alg, (int)timeout, json);
    goto out;
  }
  if ((st = plan(in, n, out, alg, alg_given, force)) != KL_EXIT_OK) goto out;
  prog_t prog = {false, isatty(STDERR_FILENO) != 0, NULL, {0, 0}};
  prog.on = show_prog || (n >= 16 && prog.tty && !isatty(STDOUT_FILENO));
  for (size_t i = 0; i < n; i++) {
    int r;
    if (!in[i].is_hash && (r = cli_hash_file(in[i].path, alg, &in[i].hash, &e))) {
      progress(&prog, NULL, 0, n);
      fprintf(stderr, "keyless sign: %s; nothing was sent\n", e.msg);
      st = cli_exit_for(r);
      goto out;
    }
    if ((i + 1) % 64 == 0 || i + 1 == n) progress(&prog, "hashed", i + 1, n);
  }
  sopts_t so = {url, user, key, (unsigned)max_lvl, hmac_alg, (int)timeout, force, json, dump, meta.p, meta.len};
  st = sign_all(in, n, &so, &prog);
out:
  kl_buf_free(&meta);
  for (size_t i = 0; i < n; i++) {
    free(in[i].out);
    free(in[i].error);
  }
  free(in);
  return st;
}
