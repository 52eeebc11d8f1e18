/* keyless sign: hash files (streamed), get them signed by a gateway, verify each signature
 * internally and write it atomically next to the file (FILE.ksig) or where -o says.
 *
 * Several inputs go into one request as a local tree of height at most --max-lvl (as
 * ksi-tool's local aggregation); more than 2^max-lvl inputs are split evenly over several
 * requests, made one after the other. With several inputs, -o must name an existing directory
 * (DIR/NAME.ksig); with one input, -o DIR does the same. Every output is checked before
 * anything is hashed or sent: an existing file is refused without --force, as is one output
 * path given twice. A failed request stops the run: later inputs are reported as skipped. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "keyless/netclient.h"
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
          "  --timeout MS  connect and read timeout (default 10000)\n"
          CLI_TLS_HELP
          "  --dump-conf print the gateway's configuration and exit\n"
          "exit: 0 ok, 3 usage, 4 bad response, 5 network, 8 gateway error, 9 I/O, 11 HMAC, 14 login\n",
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

/* The progress line: rewritten in place, cleared with done == 0. */
static void progress(bool on, const char *what, size_t done, size_t n) {
  if (!on) return;
  if (done == 0) fputs("\r\033[K", stderr);
  else fprintf(stderr, "\r%s %zu/%zu files", what, done, n);
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

/* Signs in[0..n) in requests of at most `cap` hashes; returns the exit status. */
static int sign_all(input_t *in, size_t n, const char *url, const char *user, const char *key, unsigned max_lvl,
                    int hmac_alg, int timeout, bool force, bool json, bool prog) {
  size_t cap = kl_sign_batch_capacity(max_lvl), nb = (n + cap - 1) / cap, done = 0;
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
    int r = kl_sign_hashes(url, user, key, hashes + off, k, max_lvl, hmac_alg, timeout, sigs + off, &e);
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
        if (cli_write_file_atomic(x->out, bytes, len, force, &we)) {
          x->status = "error";
          x->error = strdup(we.msg);
          if (st == KL_EXIT_OK) st = KL_EXIT_IO;
        } else {
          x->status = "ok";
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
    progress(prog && st == KL_EXIT_OK, "signed", done, n);
  }
  progress(prog, NULL, 0, n);
  for (size_t i = done; i < n; i++) report(&in[i], json); /* skipped after a failure */
  if (st != KL_EXIT_OK && done < n)
    fprintf(stderr, "keyless sign: %zu of %zu inputs were not signed after that error\n", n - done, n);
  free(hashes);
  free(sigs);
  return st;
}

int cmd_sign(int argc, char **argv) {
  enum { O_USER = 256, O_KEY, O_HMAC, O_MAXLVL, O_FORCE, O_JSON, O_TIMEOUT, O_DUMPCONF, O_CA };
  static const struct option opts[] = {
      {"input", required_argument, NULL, 'i'}, {"output", required_argument, NULL, 'o'},
      {"aggregator", required_argument, NULL, 'S'}, {"aggr-user", required_argument, NULL, O_USER},
      {"aggr-key", required_argument, NULL, O_KEY}, {"aggr-hmac-alg", required_argument, NULL, O_HMAC},
      {"hash-alg", required_argument, NULL, 'H'}, {"max-lvl", required_argument, NULL, O_MAXLVL},
      {"force", no_argument, NULL, O_FORCE}, {"json", no_argument, NULL, O_JSON},
      {"timeout", required_argument, NULL, O_TIMEOUT}, {"dump-conf", no_argument, NULL, O_DUMPCONF},
      {"ca", required_argument, NULL, O_CA}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *out = NULL, *url = NULL, *user = NULL, *key = NULL;
  cli_tls_t tls = {0};
  int alg = KL_HASH_DEFAULT, hmac_alg = KL_HASH_SHA256, c;
  bool alg_given = false, force = false, json = false, conf = false;
  uint64_t max_lvl = DEFAULT_MAX_LVL, timeout = 10000;
  size_t n = 0;
  input_t *in = calloc((size_t)argc + 1, sizeof *in);
  if (in == NULL) return KL_EXIT_GENERAL;
  int st = KL_EXIT_USAGE;
  optind = 1;
  while ((c = getopt_long(argc, argv, "i:o:S:H:h", opts, NULL)) != -1) {
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
          fprintf(stderr, "keyless sign: %s: '%s' is not a usable hash algorithm\n", c == 'H' ? "-H" : "--aggr-hmac-alg", optarg);
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
          fprintf(stderr, "keyless sign: --max-lvl wants 0..255\n");
          goto out;
        }
        break;
      case O_TIMEOUT:
        if (!cli_parse_u64(optarg, &timeout) || timeout == 0 || timeout > 3600000) {
          fprintf(stderr, "keyless sign: --timeout wants milliseconds, 1..3600000\n");
          goto out;
        }
        break;
      case O_FORCE: force = true; break;
      case O_JSON: json = true; break;
      case O_DUMPCONF: conf = true; break;
      case O_CA: tls.ca = optarg; break;
      case 'h': usage(stdout); st = KL_EXIT_OK; goto out;
      default: usage(stderr); goto out;
    }
  }
  while (optind < argc) in[n++].path = argv[optind++];
  if (url == NULL || (n == 0) != conf) {
    fprintf(stderr, "keyless sign: give -S URL and %s\n", conf ? "no inputs with --dump-conf" : "at least one -i FILE");
    usage(stderr);
    goto out;
  }
  kl_err_t e = {0};
  kl_url_t u;
  memset(&u, 0, sizeof u);
  if (strncmp(url, "file://", 7) != 0 && kl_url_parse(url, &u, &e)) {
    fprintf(stderr, "keyless sign: -S %s\n", e.msg);
    goto out;
  }
  if ((user == NULL && u.user[0] == '\0') || (key == NULL && u.key[0] == '\0')) {
    fprintf(stderr, "keyless sign: gateway %s: give the login and key (--aggr-user U --aggr-key K, or ksi+http://U:K@host/)\n", url);
    goto out;
  }
  if ((st = cli_tls_setup(&tls, false, &e)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless sign: %s\n", e.msg);
    goto out;
  }
  st = KL_EXIT_USAGE;
  if (conf) {
    st = dump_conf(url, user, key, hmac_alg, (int)timeout, json);
    goto out;
  }
  if ((st = plan(in, n, out, alg, alg_given, force)) != KL_EXIT_OK) goto out;
  bool prog = n >= 16 && isatty(STDERR_FILENO) && !isatty(STDOUT_FILENO);
  for (size_t i = 0; i < n; i++) {
    int r;
    if (!in[i].is_hash && (r = cli_hash_file(in[i].path, alg, &in[i].hash, &e))) {
      progress(prog, NULL, 0, n);
      fprintf(stderr, "keyless sign: %s; nothing was sent\n", e.msg);
      st = cli_exit_for(r);
      goto out;
    }
    progress(prog && ((i + 1) % 64 == 0 || i + 1 == n), "hashed", i + 1, n);
  }
  st = sign_all(in, n, url, user, key, (unsigned)max_lvl, hmac_alg, (int)timeout, force, json, prog);
out:
  for (size_t i = 0; i < n; i++) {
    free(in[i].out);
    free(in[i].error);
  }
  free(in);
  return st;
}
