/* keyless extend: replace a signature's calendar part with a chain to a publication (or to the
 * calendar head) fetched from an extender, check it as a KSI client must, verify the result,
 * and write it atomically. The service and trust options may come from a ksi-tool
 * configuration file (--conf FILE, $KSI_CONF; conf.h); -d dumps the result to standard error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keyless/chains.h"
#include "keyless/extclient.h"
#include "keyless/sig.h"
#include "keyless/verify.h"

static void usage(FILE *f) {
  fprintf(f, "usage: keyless extend -i SIG -o OUT -X URL [--ext-user U --ext-key K]\n"
             "         (-P PUBFILE [-V ANCHOR.pem]... [--cnstr OID=VALUE]... | --pub-str STRING | --to-head | -T TIME)\n"
             "         [--publications-signers K] [--publications-file-no-verify] [--force] [--ca FILE]\n"
             "  -X URL: the extender, http(s)://host:port/path, ksi+http(s)://U:K@host/path or ksi+tcp://host:port,\n"
             "          or file://RESPONSE, a saved 0x321 response (its HMAC checked with --ext-key, default anon)\n"
             "  -P PUBFILE: a file, or an http:// or https:// URL\n"
             "  --publications-signers K: trust the publications file only when K distinct trusted signers\n"
             "      (keys) signed it, each meeting -V and every --cnstr (default 1; docs/keys.md, k of n)\n"
             "  -P: to the earliest publication in the file after the signing time (as ksi-tool)\n"
             "  --pub-str: to that publication;  --to-head: to the extender's latest second;  -T: to TIME\n"
             "  -d: dump the extended signature to standard error (as keyless inspect)\n"
             "  -C S, -c S: connect and read timeout in seconds (default 10)\n"
             "  --ext-hmac-alg ALG: the extender's HMAC algorithm (SHA-256, the only one supported)\n"
             "  --show-progress: a line on standard error when the signature is extended\n"
             "  --conf FILE: ksi-tool configuration file (-X URL, --ext-user U, --ext-key K, -P URL,\n"
             "      --cnstr, -V ...; one per line); the command line wins over it, it over $KSI_CONF's\n"
             CLI_TLS_HELP);
  cli_exit_table(f);
}

/* The client checks of KSI-FORMAT.md §7.3, with the reason. */
static int check_chain(const kl_sig_t *sig, const kl_cal_chain_t *c, uint64_t want_pub, const kl_imprint_t *aggr_root,
                       kl_err_t *e) {
  uint64_t t;
  if (!c->has_aggr_time || c->aggr_time != kl_sig_signing_time(sig))
    return kl_err_set(e, KL_EFORMAT, "the extender's chain is not for the signing time %llu",
                      (unsigned long long)kl_sig_signing_time(sig));
  if (want_pub && c->pub_time != want_pub)
    return kl_err_set(e, KL_EFORMAT, "the extender's chain ends at %llu, asked for %llu", (unsigned long long)c->pub_time,
                      (unsigned long long)want_pub);
  if (!kl_cal_chain_time(c, &t) || t != c->aggr_time)
    return kl_err_set(e, KL_EFORMAT, "the extender's chain shape does not encode the signing time");
  if (!kl_imprint_eq(&c->input, aggr_root))
    return kl_err_set(e, KL_EFORMAT, "the extender's chain does not start from this signature's aggregation root");
  if (sig->cal && !kl_cal_chain_compatible(sig->cal, c))
    return kl_err_set(e, KL_EFORMAT, "the extender's chain is not compatible with the signature's (right links differ)");
  return 0;
}

static void put_pub_rec(kl_buf_t *b, uint64_t time, const kl_imprint_t *hash, const kl_pub_rec_t *from) {
  size_t m = kl_tlv_open(b);
  if (from) kl_buf_put(b, from->data.raw, from->data.raw_len);
  else kl_pub_data_encode(b, KL_TLV_FLAG_F, time, hash);
  for (size_t i = 0; from && i < from->n_refs; i++) kl_tlv_put_str(b, 0x09, 0, from->refs[i]);
  for (size_t i = 0; from && i < from->n_uris; i++) kl_tlv_put_str(b, 0x0A, 0, from->uris[i]);
  kl_tlv_close(b, m, KL_T_PUB_REC, 0);
}

int cmd_extend(int argc, char **argv) {
  enum { O_USER = 256, O_KEY, O_PUBSTR, O_HEAD, O_CNSTR, O_NOVERIFY, O_FORCE, O_CA, O_CONF, O_HMAC, O_PROGRESS, O_PUBSIGNERS };
  static const char shorts[] = "i:o:X:P:V:T:C:c:dh";
  static const struct option opts[] = {
      {"input", required_argument, NULL, 'i'}, {"output", required_argument, NULL, 'o'},
      {"extender", required_argument, NULL, 'X'}, {"ext-user", required_argument, NULL, O_USER},
      {"ext-key", required_argument, NULL, O_KEY}, {"publications", required_argument, NULL, 'P'},
      {"trust-anchor", required_argument, NULL, 'V'}, {"cnstr", required_argument, NULL, O_CNSTR},
      {"pub-str", required_argument, NULL, O_PUBSTR}, {"to-head", no_argument, NULL, O_HEAD},
      {"time", required_argument, NULL, 'T'}, {"publications-file-no-verify", no_argument, NULL, O_NOVERIFY},
      {"force", no_argument, NULL, O_FORCE}, {"ca", required_argument, NULL, O_CA},
      {"conf", required_argument, NULL, O_CONF}, {"ext-hmac-alg", required_argument, NULL, O_HMAC},
      {"show-progress", no_argument, NULL, O_PROGRESS}, {"publications-signers", required_argument, NULL, O_PUBSIGNERS},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  cli_tls_t tls = {0};
  const char *in = NULL, *out = NULL, *url = NULL, *user = NULL, *key = NULL, *pubfile = NULL, *pubstr = NULL;
  bool to_head = false, force = false, have_T = false, dump = false, show_prog = false;
  uint64_t T = 0, timeout = 10;
  cli_trust_t trust = {0};
  int c, v_src = -1, cnstr_src = -1;
  int conf_st = cli_conf_args("extend", &argc, &argv, shorts, opts);
  if (conf_st != KL_EXIT_OK) return conf_st;
  optind = 1;
  while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
    switch (c) {
      case 'i': in = optarg; break;
      case 'o': out = optarg; break;
      case 'X': url = optarg; break;
      case 'P': pubfile = optarg; break;
      case 'V':
        if (cli_source(optarg) > v_src) { /* a higher priority replaces a configuration file's list */
          trust.n_anchors = 0;
          v_src = cli_source(optarg);
        }
        if (trust.n_anchors == sizeof trust.anchors / sizeof trust.anchors[0]) {
          fprintf(stderr, "keyless extend: %stoo many -V anchors\n", cli_where(optarg));
          return KL_EXIT_USAGE;
        }
        trust.anchors[trust.n_anchors++] = optarg;
        break;
      case 'T':
        if (!(have_T = cli_parse_u64(optarg, &T))) {
          fprintf(stderr, "keyless extend: -T wants UNIX seconds\n");
          return KL_EXIT_USAGE;
        }
        break;
      case 'C':
      case 'c':
        if (!cli_parse_u64(optarg, &timeout) || timeout == 0 || timeout > 3600) {
          fprintf(stderr, "keyless extend: %s-%c wants seconds, 1..3600, got '%s'\n", cli_where(optarg), c, optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_HMAC:
        if (kl_hash_from_name(optarg) != KL_HASH_SHA256) {
          fprintf(stderr, "keyless extend: %s--ext-hmac-alg %s: only SHA-256 is supported\n", cli_where(optarg), optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'd': dump = true; break;
      case O_PROGRESS: show_prog = true; break;
      case O_CONF: break; /* read by cli_conf_args */
      case O_USER: user = optarg; break;
      case O_KEY: key = optarg; break;
      case O_PUBSTR: pubstr = optarg; break;
      case O_HEAD: to_head = true; break;
      case O_NOVERIFY: trust.no_verify = true; break;
      case O_FORCE: force = true; break;
      case O_CA: tls.ca = optarg; break;
      case O_PUBSIGNERS:
        if (!cli_trust_set_signers(&trust, optarg)) {
          fprintf(stderr, "keyless extend: %s--publications-signers wants a number from 1 to 16, got '%s'\n", cli_where(optarg),
                  optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_CNSTR:
        if (cli_source(optarg) > cnstr_src) {
          trust.n_cnstr = 0;
          cnstr_src = cli_source(optarg);
        }
        if (!cli_trust_add_cnstr(&trust, optarg)) {
          fprintf(stderr, "keyless extend: %s--cnstr wants OID=VALUE, got '%s'\n", cli_where(optarg), optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  /* A configuration file's -P is the default target: another one on the command line wins. */
  if (pubfile && cli_source(pubfile) != CLI_SRC_CMDLINE && (pubstr || to_head || have_T)) pubfile = NULL;
  int targets = (pubfile != NULL) + (pubstr != NULL) + to_head + have_T;
  if (in == NULL || out == NULL || url == NULL || targets != 1 || optind != argc) {
    fprintf(stderr, "keyless extend: give -i SIG, -o OUT, -X URL and exactly one of -P, --pub-str, --to-head, -T\n");
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  kl_err_t e = {0};
  if (cli_check_extender(url, user, key, &e)) {
    fprintf(stderr, "keyless extend: %s%s\n", cli_where(url), e.msg);
    return KL_EXIT_USAGE;
  }
  int tls_st = cli_tls_setup(&tls, false, &e);
  if (tls_st != KL_EXIT_OK) {
    fprintf(stderr, "keyless extend: %s\n", e.msg);
    return tls_st;
  }
  uint8_t *buf = NULL;
  size_t len;
  kl_sig_t *sig = NULL, *ext = NULL;
  kl_pubfile_t *pf = NULL;
  kl_arena_t arena = KL_ARENA_INIT;
  kl_buf_t anchor = KL_BUF_INIT;
  kl_verify_opts_t vo = {0};
  kl_policy_t pol = KL_POLICY_INTERNAL;
  const kl_pub_rec_t *target = NULL;
  uint64_t pub_time = have_T ? T : 0;
  int r, st = KL_EXIT_OK;
  if ((r = cli_read_file(in, KL_TLV_MAX_SIZE, &buf, &len, &e)) || (r = kl_sig_parse(buf, len, &sig, &e))) {
    fprintf(stderr, "keyless extend: %s: %s\n", in, e.msg);
    st = cli_exit_for(r);
    goto out;
  }
  if (pubfile) {
    if ((st = cli_load_pubfile(pubfile, &trust, &pf, &e)) != KL_EXIT_OK) {
      fprintf(stderr, "keyless extend: %s%s\n", cli_where(pubfile), e.msg);
      goto out;
    }
    if ((target = kl_pubfile_find_after(pf, kl_sig_signing_time(sig))) == NULL) {
      fprintf(stderr, "keyless extend: the publications file has no publication after the signing time yet; try later or use --to-head\n");
      st = KL_EXIT_VERIFY;
      goto out;
    }
    pub_time = target->data.time;
    vo.pubfile = pf;
    pol = KL_POLICY_PUBFILE;
  } else if (pubstr) {
    if ((r = kl_pubstr_decode(pubstr, &vo.user_pub_time, &vo.user_pub_hash, &e))) {
      fprintf(stderr, "keyless extend: --pub-str: %s\n", e.msg);
      st = KL_EXIT_USAGE;
      goto out;
    }
    vo.has_user_pub = true;
    pub_time = vo.user_pub_time;
    pol = KL_POLICY_USER_PUB;
  }
  if (pub_time != 0 && pub_time < kl_sig_signing_time(sig)) {
    fprintf(stderr, "keyless extend: the publication time %llu is before the signing time %llu\n",
            (unsigned long long)pub_time, (unsigned long long)kl_sig_signing_time(sig));
    st = KL_EXIT_USAGE;
    goto out;
  }
  kl_cal_chain_t chain;
  const uint8_t *raw;
  size_t raw_len;
  kl_imprint_t aggr_root;
  if ((r = kl_sig_aggregation_root(sig, &aggr_root, &e)) ||
      (r = kl_ext_fetch(url, user, key, kl_sig_signing_time(sig), pub_time, (int)timeout * 1000, &arena, &chain, &raw,
                        &raw_len, &e))) {
    fprintf(stderr, "keyless extend: %s\n", e.msg);
    bool canned = strncmp(url, "file://", 7) == 0; /* a saved response: reading it is local I/O */
    st = r == KL_EIO ? (canned ? KL_EXIT_IO : KL_EXIT_NETWORK)
         : r == KL_EHMAC ? KL_EXIT_HMAC
         : r == KL_EAUTH ? KL_EXIT_AUTH
                         : KL_EXIT_EXTENDER;
    goto out;
  }
  if ((r = check_chain(sig, &chain, pub_time, &aggr_root, &e))) {
    fprintf(stderr, "keyless extend: refused: %s\n", e.msg);
    st = KL_EXIT_EXTENDER;
    goto out;
  }
  /* A chain that uses a hash algorithm obsolete at its publication time (INT-16), or, to be
   * anchored in a publication, deprecated then (GEN-02): the extended signature would be
   * written and then not verify, as libksi judges it. */
  int weak = kl_cal_chain_weak_alg(&chain, false);
  const char *code = "INT-16", *state = "obsolete";
  if (weak < 0 && (pol == KL_POLICY_PUBFILE || pol == KL_POLICY_USER_PUB)) {
    weak = kl_cal_chain_weak_alg(&chain, true);
    code = "GEN-02";
    state = "deprecated";
  }
  if (weak >= 0) {
    fprintf(stderr, "keyless extend: refused: %s: the extender's calendar chain uses %s, %s at publication time %llu\n",
            code, kl_hash_name(weak) ? kl_hash_name(weak) : "an unknown algorithm", state,
            (unsigned long long)chain.pub_time);
    st = KL_EXIT_VERIFY;
    goto out;
  }
  if (pol == KL_POLICY_PUBFILE) put_pub_rec(&anchor, 0, NULL, target);
  else if (pol == KL_POLICY_USER_PUB) put_pub_rec(&anchor, vo.user_pub_time, &vo.user_pub_hash, NULL);
  if ((r = kl_buf_check(&anchor, &e)) ||
      (r = kl_sig_rebuild(sig, raw, raw_len, anchor.len ? anchor.p : NULL, anchor.len, &ext, &e))) {
    fprintf(stderr, "keyless extend: %s\n", e.msg);
    st = cli_exit_for(r);
    goto out;
  }
  kl_verify_result_t res;
  kl_verify(ext, pol, &vo, &res);
  if (res.verdict != KL_VER_OK) {
    fprintf(stderr, "keyless extend: the extended signature does not verify: %s %s: %s\n", kl_verdict_str(res.verdict),
            kl_vcode_str(res.code), res.message);
    st = KL_EXIT_VERIFY;
    goto out;
  }
  size_t n;
  const uint8_t *bytes = kl_sig_bytes(ext, &n);
  if ((r = cli_write_file_atomic(out, bytes, n, force, &e))) {
    fprintf(stderr, "keyless extend: %s\n", e.msg);
    st = r == KL_ESTATE ? KL_EXIT_USAGE : KL_EXIT_IO;
    goto out;
  }
  char t[64];
  printf("extended to %llu (%s): %s\n", (unsigned long long)chain.pub_time, cli_utc(chain.pub_time, t, sizeof t), out);
  if (show_prog) fprintf(stderr, "extended 1/1 files\n");
  if (dump) cli_sig_dump(stderr, out, ext);
out:
  kl_buf_free(&anchor);
  kl_arena_free(&arena);
  kl_sig_free(ext);
  kl_sig_free(sig);
  kl_pubfile_free(pf);
  free(buf);
  return st;
}
