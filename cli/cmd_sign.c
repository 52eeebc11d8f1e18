/* keyless sign: hash files (streamed), get them signed by one of several gateways, verify each
 * signature internally and write it atomically next to the file (FILE.ksig) or under -o DIR.
 *
 * Made for collections as well as for one file (docs/client.md): directories with -r (the
 * relative paths kept under -o DIR), a resumable batch (a signature that is already there and
 * verifies for its file is kept; one that does not is reported and left alone without
 * --force), every failure reported with a stable code while the rest goes on, retries with
 * backoff within --retry-for, several gateways (-S repeatable; --ha failover|all), local trees
 * and PDUs sized from the gateway's configuration, several PDUs in flight, and --manifest: one
 * signature over a BagIt-style manifest of the files' hashes. The parts: sign.h.
 *
 * ksi-tool's options work too: the service options may come from a configuration file
 * (--conf FILE, $KSI_CONF; conf.h), -d dumps each new signature to standard error, -C/-c set
 * the timeout in seconds, --show-progress forces the progress line, and --mdata with
 * --mdata-cli-id etc. puts a metadata link under every document hash (KSI-FORMAT.md §4.4). */
#include <errno.h>
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
#include "keyless/verify.h"
#include "sign.h"

#define MAX_GWS 16
#define KEY_FILE_MAX 4096

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless sign [-r] -i FILE|DIR... [-o OUT] -S URL [-S URL...] [--aggr-user U --aggr-key K] [options]\n"
          "       keyless sign --manifest MANIFEST [-r] -i FILE|DIR... -S URL ...\n"
          "       keyless sign --dump-conf -S URL [--aggr-user U --aggr-key K]\n"
          "  -i FILE     a file to sign (repeatable; further FILEs may follow the options);\n"
          "              '-' is standard input; ALG:HEX (e.g. SHA-256:4f2a...) signs that hash\n"
          "              (write ./NAME for a file whose name looks like a hash)\n"
          "  -r          sign every file under a directory input (not *.ksig; symbolic links to\n"
          "              directories are not followed)\n"
          "  -o OUT      the signature file of a single input, or a directory: DIR/PATH.ksig with the\n"
          "              input's relative path (subdirectories are made); default FILE.ksig\n"
          "  --manifest MANIFEST  write the files' hashes as \"HEX  PATH\" lines (BagIt's\n"
          "              manifest-sha256.txt) to MANIFEST and sign only it (MANIFEST.ksig or -o);\n"
          "              check a file with keyless verify --manifest MANIFEST -i MANIFEST.ksig FILE\n"
          "  -S URL      a gateway (repeatable: several gateways, see --ha): http://host:port/path,\n"
          "              https://..., ksi+http(s)://U:K@host/path, ksi+tcp://host:port,\n"
          "              or file://RESPONSE (a canned response, for tests; request id 1)\n"
          "  --ha MODE   failover (default): each request to one gateway, the next on failure;\n"
          "              all: to every gateway at once, the first valid answer wins\n"
          "  --retry-for DURATION  retry a request that failed retryably (network, gateway status\n"
          "              0x106, 0x200, 0x300, 0x301) with backoff for this long (default 60s;\n"
          "              e.g. 500ms, 30s, 5m; 0: no retries)\n"
          "  --max-in-flight N  requests (PDUs) in flight at once (default 4)\n"
          "  --aggr-user U, --aggr-key K   login and HMAC key (override the URL's)\n"
          "  --aggr-key-file FILE  read the key from FILE (its first line); default key:\n"
          "              $KL_AGGR_KEY or $KSI_AGGR_KEY when neither the options nor the URL give one\n"
          "  --aggr-hmac-alg ALG           HMAC algorithm (default SHA-256)\n"
          "  -H ALG      document hash algorithm (default SHA-256)\n"
          "  --max-lvl N the highest local tree, 0..255: up to 2^N files per request (default: the\n"
          "              gateway's announced max level; trees are only as big as needed)\n"
          "  --force     replace existing signature files (by default one that verifies for its\n"
          "              file is kept, one that does not is reported)\n"
          "  --json      one JSON line per file on standard output (docs/client.md)\n"
          "  -d          dump each new signature to standard error (as keyless inspect)\n"
          "  --show-progress  the progress line (files, bytes, signatures/s, ETA) on standard error;\n"
          "              by default shown for 16 or more files when standard error is a terminal\n"
          "  --timeout MS  connect and read timeout (default 10000); -C S, -c S: the same in seconds\n"
          "  --mdata --mdata-cli-id NAME [--mdata-mac-id ID] [--mdata-sqn-nr N] [--mdata-req-tm]\n"
          "              put a metadata link (client id, machine id, sequence number, the request\n"
          "              time in microseconds from this machine's clock) under every document hash;\n"
          "              it takes one level of the local tree (--max-lvl 1 or more)\n"
          "  --conf FILE ksi-tool configuration file (one option per line: -S URL, --aggr-user U,\n"
          "              --aggr-key K, ...); the command line wins over it, it over $KSI_CONF's file\n"
          CLI_TLS_HELP
          "  --dump-conf print the gateway's configuration and exit\n"
          "With several files the status is that of the first failure.\n");
  cli_exit_table(f);
}

static int sign_exit(int r) {
  switch (r) {
    case KL_EIO: return KL_EXIT_NETWORK;
    case KL_ESERVICE: return KL_EXIT_AGGREGATOR;
    default: return cli_exit_for(r);
  }
}

/* "60", "60s", "500ms", "5m", "1h" -> seconds; false on garbage. */
static bool parse_duration(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v < 0 || v != v) return false;
  if (*end == '\0' || strcmp(end, "s") == 0) *out = v;
  else if (strcmp(end, "ms") == 0) *out = v / 1000;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) *out = v * 60;
  else if (strcmp(end, "h") == 0) *out = v * 3600;
  else return false;
  return *out <= 7 * 86400.0;
}

/* The key from --aggr-key-file: its first line, without the line break. */
static int read_key_file(const char *path, char **out) {
  uint8_t *b = NULL;
  size_t len = 0;
  kl_err_t e = {0};
  struct stat st;
  if (cli_read_file(path, KEY_FILE_MAX, &b, &len, &e)) {
    fprintf(stderr, "keyless sign: --aggr-key-file: %s\n", e.msg);
    return KL_EXIT_USAGE;
  }
  size_t n = 0;
  while (n < len && b[n] != '\n' && b[n] != '\r') n++;
  if (n == 0 || memchr(b, '\0', n)) {
    free(b);
    fprintf(stderr, "keyless sign: --aggr-key-file %s: no key on its first line\n", path);
    return KL_EXIT_USAGE;
  }
  b[n] = '\0';
  if (stat(path, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
    fprintf(stderr, "keyless sign: warning: %s holds a key and can be read by others (chmod 600 it)\n", path);
  *out = (char *)b;
  return KL_EXIT_OK;
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
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
         O_MDATA, O_CLIID, O_MACID, O_SQN, O_REQTM, O_HA, O_RETRY, O_INFLIGHT, O_MANIFEST, O_KEYFILE };
  static const char shorts[] = "i:o:S:H:C:c:drh";
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
      {"recursive", no_argument, NULL, 'r'}, {"ha", required_argument, NULL, O_HA},
      {"retry-for", required_argument, NULL, O_RETRY}, {"max-in-flight", required_argument, NULL, O_INFLIGHT},
      {"manifest", required_argument, NULL, O_MANIFEST}, {"aggr-key-file", required_argument, NULL, O_KEYFILE},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *out = NULL, *user = NULL, *key = NULL, *cli_id = NULL, *mac_id = NULL, *sqn = NULL, *manifest = NULL,
             *key_file = NULL;
  const char *urls[MAX_GWS];
  size_t n_urls = 0;
  int url_src = -1;
  cli_tls_t tls = {0};
  int alg = KL_HASH_DEFAULT, hmac_alg = KL_HASH_SHA256, c;
  bool alg_given = false, force = false, json = false, conf = false, dump = false, show_prog = false, mdata = false,
       req_tm = false, recursive = false, ha_all = false, lvl_given = false;
  uint64_t max_lvl = 8, timeout = 10000, in_flight = 0;
  double retry_for = 60;
  char **raw = NULL, *key_buf = NULL;
  size_t n_raw = 0, n = 0, cap = 0;
  sign_file_t *v = NULL;
  sign_gw_t gws[MAX_GWS];
  kl_buf_t meta = KL_BUF_INIT;
  int st = cli_conf_args("sign", &argc, &argv, shorts, opts);
  if (st != KL_EXIT_OK) return st;
  if ((raw = calloc((size_t)argc + 1, sizeof *raw)) == NULL) return KL_EXIT_GENERAL;
  st = KL_EXIT_USAGE;
  optind = 1;
  while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
    switch (c) {
      case 'i': raw[n_raw++] = optarg; break;
      case 'o': out = optarg; break;
      case 'S': { /* repeatable; a higher-priority source replaces the lower ones' list (conf.h) */
        int src = cli_source(optarg);
        if (src > url_src) {
          n_urls = 0;
          url_src = src;
        }
        if (n_urls == MAX_GWS) {
          fprintf(stderr, "keyless sign: %sat most %d gateways (-S)\n", cli_where(optarg), MAX_GWS);
          goto out;
        }
        urls[n_urls++] = optarg;
        break;
      }
      case O_USER: user = optarg; break;
      case O_KEY: key = optarg; break;
      case O_KEYFILE: key_file = optarg; break;
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
        lvl_given = true;
        break;
      case O_INFLIGHT:
        if (!cli_parse_u64(optarg, &in_flight) || in_flight == 0 || in_flight > 64) {
          fprintf(stderr, "keyless sign: %s--max-in-flight wants 1..64, got '%s'\n", cli_where(optarg), optarg);
          goto out;
        }
        break;
      case O_HA:
        if (strcmp(optarg, "all") != 0 && strcmp(optarg, "failover") != 0) {
          fprintf(stderr, "keyless sign: %s--ha wants all or failover, got '%s'\n", cli_where(optarg), optarg);
          goto out;
        }
        ha_all = strcmp(optarg, "all") == 0;
        break;
      case O_RETRY:
        if (!parse_duration(optarg, &retry_for)) {
          fprintf(stderr, "keyless sign: %s--retry-for wants a duration such as 60s, 500ms or 5m (at most 7 days), got '%s'\n",
                  cli_where(optarg), optarg);
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
      case O_MANIFEST: manifest = optarg; break;
      case 'r': recursive = true; break;
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
  while (optind < argc) raw[n_raw++] = argv[optind++];
  if (n_urls == 0 || (n_raw == 0) != conf) {
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
    if (lvl_given && max_lvl == 0) {
      fprintf(stderr, "keyless sign: the metadata link takes one level of the local tree: --max-lvl 0 leaves none\n");
      goto out;
    }
  }
  /* The key: --aggr-key, else --aggr-key-file, else the URL's, else $KL_AGGR_KEY / $KSI_AGGR_KEY. */
  if (key == NULL && key_file) {
    if ((st = read_key_file(key_file, &key_buf)) != KL_EXIT_OK) goto out;
    st = KL_EXIT_USAGE;
    key = key_buf;
  }
  const char *env_key = getenv("KL_AGGR_KEY");
  if (env_key == NULL || *env_key == '\0') env_key = getenv("KSI_AGGR_KEY");
  if (env_key && *env_key == '\0') env_key = NULL;
  kl_err_t e = {0};
  for (size_t g = 0; g < n_urls; g++) {
    const char *url = urls[g];
    kl_url_t u;
    memset(&u, 0, sizeof u);
    if (strncmp(url, "file://", 7) != 0 && kl_url_parse(url, &u, &e)) {
      fprintf(stderr, "keyless sign: %s-S %s\n", cli_where(url), e.msg);
      goto out;
    }
    gws[g] = (sign_gw_t){url, user, key};
    if (key == NULL && u.key[0] == '\0') gws[g].key = env_key;
    if ((user == NULL && u.user[0] == '\0') || (key == NULL && u.key[0] == '\0' && env_key == NULL)) {
      fprintf(stderr,
              "keyless sign: gateway %s: give the login and key (--aggr-user U --aggr-key K, --aggr-key-file FILE,"
              " $KL_AGGR_KEY, or ksi+http://U:K@host/; best in a --conf file)\n",
              url);
      goto out;
    }
    if (n_urls > 1 && strncmp(url, "file://", 7) == 0) {
      fprintf(stderr, "keyless sign: a canned response (file://) cannot be one of several gateways\n");
      goto out;
    }
  }
  if ((st = cli_tls_setup(&tls, false, &e)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless sign: %s%s\n", cli_where(tls.ca), e.msg);
    goto out;
  }
  st = KL_EXIT_USAGE;
  if (conf) {
    st = dump_conf(gws[0].url, gws[0].user, gws[0].key, hmac_alg, (int)timeout, json);
    goto out;
  }
  /* The inputs. */
  for (size_t i = 0; i < n_raw; i++) {
    const char *p = raw[i];
    kl_imprint_t h;
    bool is_hash = strchr(p, ':') != NULL && kl_imprint_parse_text(&h, p, NULL) == 0;
    if (is_hash || strcmp(p, "-") == 0) {
      if (n_raw > 1 || out == NULL || is_dir(out) || manifest) {
        fprintf(stderr, "keyless sign: %s: signing %s needs a single input and -o OUT (a file)\n", p,
                is_hash ? "a hash" : "standard input");
        goto out;
      }
      if (is_hash && alg_given && h.alg != alg) {
        fprintf(stderr, "keyless sign: %s is not a %s hash (-H)\n", p, kl_hash_name(alg));
        goto out;
      }
      if (is_hash && !kl_hash_trusted(h.alg)) {
        fprintf(stderr, "keyless sign: %s: %s is not accepted for new signatures\n", p, kl_hash_name(h.alg));
        goto out;
      }
    }
    size_t before = n;
    if ((st = sign_add_input(&v, &n, &cap, p, recursive)) != KL_EXIT_OK) goto out;
    st = KL_EXIT_USAGE;
    if (is_hash && n == before + 1) {
      v[before].is_hash = true;
      v[before].hash = h;
    }
  }
  /* Where the signatures go. */
  const char *out_dir = NULL, *out_file = NULL;
  if (manifest) {
    if (out && is_dir(out)) {
      fprintf(stderr, "keyless sign: with --manifest, -o names the manifest's signature file (%s is a directory)\n", out);
      goto out;
    }
  } else if (out && (is_dir(out) || recursive)) {
    out_dir = out;
    kl_err_t me = {0};
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/x", out);
    if (!is_dir(out) && sign_mkdirs_for(probe, &me)) {
      fprintf(stderr, "keyless sign: -o %s: %s\n", out, me.msg);
      st = KL_EXIT_IO;
      goto out;
    }
  } else if (out) {
    if (n != 1) {
      fprintf(stderr, "keyless sign: with several inputs, -o must name an existing directory (%s is not one)\n", out);
      goto out;
    }
    out_file = out;
  }
  if ((st = sign_plan_outputs(v, n, out_dir, out_file)) != KL_EXIT_OK) goto out;
  sign_report_t rep;
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    struct stat sst;
    if (!v[i].is_hash && strcmp(v[i].path, "-") != 0 && stat(v[i].path, &sst) == 0) bytes += (uint64_t)sst.st_size;
  }
  sign_report_init(&rep, json, show_prog, dump, n, bytes);
  sign_opts_t so = {gws, n_urls, ha_all, hmac_alg, (int)timeout, retry_for, (unsigned)max_lvl, lvl_given,
                    (unsigned)in_flight, mdata ? meta.p : NULL, meta.len, json};
  bool sent = false;
  if (manifest) {
    st = sign_manifest(v, n, manifest, out, alg, force, &so, &rep);
    goto out;
  }
  sign_prepare(v, n, alg, force, false, &rep);
  if ((st = sign_run(v, n, &so, &rep, &sent)) != KL_EXIT_OK) {
    fprintf(stderr, "keyless sign: out of memory\n");
    goto out;
  }
  st = sign_report_finish(&rep, v, n, !sent);
out:
  kl_buf_free(&meta);
  for (size_t i = 0; i < n; i++) {
    free(v[i].path);
    free(v[i].rel);
    free(v[i].out);
    free(v[i].error);
  }
  free(v);
  free(raw);
  free(key_buf);
  return st;
}
