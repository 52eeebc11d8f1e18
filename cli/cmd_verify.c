/* keyless verify: verify a signature under a policy; flags follow ksi-tool's. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "keyless/extclient.h"
#include "keyless/sig.h"
#include "keyless/verify.h"
#include "witness.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless verify -i SIG [-f FILE | -d ALG:HEX] [--policy POLICY]\n"
          "         [-P PUBFILE] [-V ANCHOR.pem]... [--cnstr OID=VALUE]... [--at UNIXTIME]\n"
          "         [--publications-signers K] [--publications-file-no-verify] [--pub-str STRING]\n"
          "         [-X URL [--ext-user USER] [--ext-key KEY]] [-x] [--json] [--ca FILE]\n"
          "       keyless verify --manifest MANIFEST -i MANIFEST.ksig [--base DIR] [options] FILE...\n"
          "  --manifest: the signature is of MANIFEST (lines \"HEX  PATH\", as keyless sign --manifest\n"
          "      writes); each FILE (its PATH in the manifest; read under --base DIR, default .) must\n"
          "      have the hash its line gives\n"
          "  POLICY: auto (default), internal, key, calendar, publication\n"
          "          (ksi-tool's --ver-int, --ver-key, --ver-cal, --ver-pub also work)\n"
          "  -P: a file, or an http:// or https:// URL\n"
          "  --publications-signers K: trust the publications file only when K distinct trusted signers\n"
          "      (keys) signed it, each meeting -V and every --cnstr (default 1; docs/keys.md, k of n)\n"
          "  -X: a live extender (http(s)://, ksi+http(s)://USER:KEY@HOST/, ksi+tcp://HOST:PORT), or\n"
          "      file://RESPONSE, a saved 0x321 response (its HMAC checked with --ext-key, default anon)\n"
          "  -C S, -c S: the extender's connect and read timeout in seconds (default 10)\n"
          "  --conf FILE: ksi-tool configuration file (-X URL, --ext-user U, --ext-key K, -P URL,\n"
          "      --cnstr, -V ...; one per line); the command line wins over it, it over $KSI_CONF's\n"
          CLI_WITNESS_HELP CLI_TLS_HELP);
  cli_exit_table(f);
}

/* -X file://PDU: a canned 0x321 response. */
typedef struct canned {
  uint8_t *pdu;
  size_t len;
  const char *key;
} canned_t;

static int canned_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena,
                         kl_cal_chain_t *out, kl_err_t *e) {
  canned_t *c = arg;
  (void)aggr_time;
  (void)pub_time;
  return kl_ext_resp_chain_from_pdu(c->pdu, c->len, c->key, 0, arena, out, e);
}

/* -X http://, ksi+http://, ksi+tcp://: a live extender. */
typedef struct live {
  const char *url, *user, *key;
  int timeout_ms;
} live_t;

static int live_extend(void *arg, uint64_t aggr_time, uint64_t pub_time, kl_arena_t *arena, kl_cal_chain_t *out,
                       kl_err_t *e) {
  live_t *l = arg;
  return kl_ext_fetch(l->url, l->user, l->key, aggr_time, pub_time, l->timeout_ms, arena, out, NULL, NULL, e);
}

typedef struct vargs {
  const char *sig, *file, *digest, *pubfile, *pub_str, *ext_url;
  const char *ext_key, *ext_user;
  int policy;
  bool json, extend_ok, have_level;
  uint64_t level, timeout;
  cli_trust_t trust;
  cli_tls_t tls;
  const char *manifest, *base; /* --manifest, --base */
  char **files;                /* the FILEs checked against the manifest */
  size_t n_files;
  cli_witness_t wit;           /* --witness, --witnesses-required, --witness-file */
} vargs_t;

static int parse_policy(const char *s) {
  if (strcmp(s, "auto") == 0 || strcmp(s, "general") == 0) return KL_POLICY_GENERAL;
  if (strcmp(s, "internal") == 0) return KL_POLICY_INTERNAL;
  if (strcmp(s, "key") == 0) return KL_POLICY_KEY;
  if (strcmp(s, "calendar") == 0) return KL_POLICY_CALENDAR;
  if (strcmp(s, "publication") == 0) return KL_POLICY_PUBFILE;
  return -1;
}

static int parse_args(int argc, char **argv, vargs_t *a) {
  enum { O_POLICY = 256, O_CNSTR, O_PUBSTR, O_AT, O_NOVERIFY, O_JSON, O_EXTKEY, O_EXTUSER,
         O_VERINT, O_VERKEY, O_VERCAL, O_VERPUB, O_LEVEL, O_CA, O_CONF, O_HMAC, O_MANIFEST, O_BASE, O_PUBSIGNERS };
  static const char shorts[] = "i:f:d:P:V:X:C:c:xh";
  static const struct option opts[] = {
      {"input", required_argument, NULL, 'i'},  {"file", required_argument, NULL, 'f'},
      {"digest", required_argument, NULL, 'd'}, {"policy", required_argument, NULL, O_POLICY},
      {"publications", required_argument, NULL, 'P'}, {"trust-anchor", required_argument, NULL, 'V'},
      {"cnstr", required_argument, NULL, O_CNSTR}, {"pub-str", required_argument, NULL, O_PUBSTR},
      {"extender", required_argument, NULL, 'X'}, {"ext-key", required_argument, NULL, O_EXTKEY},
      {"ext-user", required_argument, NULL, O_EXTUSER}, {"at", required_argument, NULL, O_AT},
      {"publications-file-no-verify", no_argument, NULL, O_NOVERIFY}, {"json", no_argument, NULL, O_JSON},
      {"ver-int", no_argument, NULL, O_VERINT}, {"ver-key", no_argument, NULL, O_VERKEY},
      {"ver-cal", no_argument, NULL, O_VERCAL}, {"ver-pub", no_argument, NULL, O_VERPUB},
      {"input-level", required_argument, NULL, O_LEVEL}, {"ca", required_argument, NULL, O_CA},
      {"conf", required_argument, NULL, O_CONF}, {"ext-hmac-alg", required_argument, NULL, O_HMAC},
      {"manifest", required_argument, NULL, O_MANIFEST}, {"base", required_argument, NULL, O_BASE},
      {"publications-signers", required_argument, NULL, O_PUBSIGNERS},
      CLI_WITNESS_OPTIONS, {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c, v_src = -1, cnstr_src = -1;
  uint64_t at;
  a->policy = KL_POLICY_GENERAL;
  a->timeout = 10;
  int st = cli_conf_args("verify", &argc, &argv, shorts, opts);
  if (st != KL_EXIT_OK) return st;
  optind = 1;
  while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
    switch (c) {
      case 'i': a->sig = optarg; break;
      case 'f': a->file = optarg; break;
      case 'd': a->digest = optarg; break;
      case 'P': a->pubfile = optarg; break;
      case 'V':
        if (cli_source(optarg) > v_src) { /* a higher priority replaces a configuration file's list */
          a->trust.n_anchors = 0;
          v_src = cli_source(optarg);
        }
        if (a->trust.n_anchors == sizeof a->trust.anchors / sizeof a->trust.anchors[0]) {
          fprintf(stderr, "keyless verify: %stoo many -V anchors\n", cli_where(optarg));
          return KL_EXIT_USAGE;
        }
        a->trust.anchors[a->trust.n_anchors++] = optarg;
        break;
      case 'X': a->ext_url = optarg; break;
      case 'x': a->extend_ok = true; break;
      case O_POLICY:
        if ((a->policy = parse_policy(optarg)) < 0) {
          fprintf(stderr, "keyless verify: unknown --policy '%s' (auto, internal, key, calendar, publication)\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_VERINT: a->policy = KL_POLICY_INTERNAL; break;
      case O_VERKEY: a->policy = KL_POLICY_KEY; break;
      case O_VERCAL: a->policy = KL_POLICY_CALENDAR; break;
      case O_VERPUB: a->policy = KL_POLICY_PUBFILE; break;
      case O_CNSTR:
        if (cli_source(optarg) > cnstr_src) {
          a->trust.n_cnstr = 0;
          cnstr_src = cli_source(optarg);
        }
        if (!cli_trust_add_cnstr(&a->trust, optarg)) {
          fprintf(stderr, "keyless verify: %s--cnstr wants OID=VALUE (e.g. E=publications@example.org), got '%s'\n",
                  cli_where(optarg), optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_PUBSTR: a->pub_str = optarg; break;
      case O_PUBSIGNERS:
        if (!cli_trust_set_signers(&a->trust, optarg)) {
          fprintf(stderr, "keyless verify: %s--publications-signers wants a number from 1 to 16, got '%s'\n",
                  cli_where(optarg), optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_EXTKEY: a->ext_key = optarg; break;
      case O_EXTUSER: a->ext_user = optarg; break;
      case O_AT:
        if (!cli_parse_u64(optarg, &at) || at > INT64_MAX) {
          fprintf(stderr, "keyless verify: --at wants UNIX seconds, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        a->trust.at = (int64_t)at;
        break;
      case O_NOVERIFY: a->trust.no_verify = true; break;
      case O_JSON: a->json = true; break;
      case O_CA: a->tls.ca = optarg; break;
      case O_CONF: break; /* read by cli_conf_args */
      case O_MANIFEST: a->manifest = optarg; break;
      case O_BASE: a->base = optarg; break;
      case 'C':
      case 'c':
        if (!cli_parse_u64(optarg, &a->timeout) || a->timeout == 0 || a->timeout > 3600) {
          fprintf(stderr, "keyless verify: %s-%c wants seconds, 1..3600, got '%s'\n", cli_where(optarg), c, optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_HMAC:
        if (kl_hash_from_name(optarg) != KL_HASH_SHA256) {
          fprintf(stderr, "keyless verify: %s--ext-hmac-alg %s: only SHA-256 is supported\n", cli_where(optarg), optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_LEVEL:
        if (!cli_parse_u64(optarg, &a->level) || a->level > 255) {
          fprintf(stderr, "keyless verify: --input-level wants 0..255\n");
          return KL_EXIT_USAGE;
        }
        break;
      case CLI_O_WITNESS:
      case CLI_O_WITNESSES_REQUIRED:
      case CLI_O_WITNESS_FILE:
        if ((st = cli_witness_opt(&a->wit, "verify", c, optarg))) return st;
        break;
      case 'h': usage(stdout); return -1;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if (a->manifest) {
    if (a->file || a->digest || optind == argc) {
      fprintf(stderr, "keyless verify: --manifest takes FILE... to check, and no -f or -d (the document is the manifest)\n");
      return KL_EXIT_USAGE;
    }
    a->file = a->manifest;
    a->files = argv + optind;
    a->n_files = (size_t)(argc - optind);
    optind = argc;
  }
  if (a->sig == NULL || optind != argc) {
    fprintf(stderr, "keyless verify: %s\n", a->sig ? "unexpected argument" : "give the signature with -i SIG");
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  if (a->file && a->digest) {
    fprintf(stderr, "keyless verify: give either -f FILE or -d ALG:HEX, not both\n");
    return KL_EXIT_USAGE;
  }
  if (a->pub_str && a->policy == KL_POLICY_PUBFILE) a->policy = KL_POLICY_USER_PUB;
  return 0;
}

/* What an OK verdict rests on, for people (a second line: the first stays what scripts match). */
static const char *anchor_text(const kl_verify_result_t *res, char *buf, size_t cap) {
  char t[40], ps[KL_PUBSTR_MAX], id[2 * 16 + 1];
  kl_err_t e;
  buf[0] = '\0';
  switch (res->anchor) {
    case KL_ANCHOR_PUBLICATION:
      if (kl_pubstr_encode(res->anchor_time, &res->anchor_hash, ps, sizeof ps, &e)) snprintf(ps, sizeof ps, "?");
      snprintf(buf, cap, "  anchor: the publication of %s%s: %s\n", cli_utc(res->anchor_time, t, sizeof t),
               res->anchor_extended ? " (extended to it)" : "", ps);
      break;
    case KL_ANCHOR_CERTIFICATE:
      kl_hex_encode(res->cert_id, res->cert_id_len, id);
      snprintf(buf, cap, "  anchor: calendar-auth certificate %s of the publications file\n", id);
      break;
    case KL_ANCHOR_EXTENDER:
      snprintf(buf, cap, "  anchor: the extender's calendar at %s\n", cli_utc(res->anchor_time, t, sizeof t));
      break;
    default: break;
  }
  return buf;
}

static int report(const vargs_t *a, const kl_sig_t *sig, const kl_verify_result_t *res) {
  const char *verdict = kl_verdict_str(res->verdict);
  static const char *const anchor_kind[] = {"none", "publication", "certificate", "extender"};
  if (a->json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "result", verdict);
    json_str(&j, "code", kl_vcode_str(res->code));
    json_str(&j, "message", res->verdict == KL_VER_OK ? "Verification succeeded" : kl_vcode_msg(res->code));
    json_str(&j, "detail", res->message);
    json_str(&j, "policy", kl_policy_name(res->policy));
    if (sig != NULL) {
      json_u64(&j, "signing_time", kl_sig_signing_time(sig));
      json_imprint(&j, "document_hash", kl_sig_document_hash(sig));
    }
    if (res->verdict == KL_VER_OK && res->anchor != KL_ANCHOR_NONE) { /* what the verdict rests on */
      json_obj(&j, "anchor");
      json_str(&j, "kind", anchor_kind[res->anchor]);
      if (res->anchor != KL_ANCHOR_CERTIFICATE) json_u64(&j, "time", res->anchor_time);
      if (res->anchor == KL_ANCHOR_PUBLICATION) {
        char ps[KL_PUBSTR_MAX];
        kl_err_t e;
        json_imprint(&j, "hash", &res->anchor_hash);
        if (kl_pubstr_encode(res->anchor_time, &res->anchor_hash, ps, sizeof ps, &e) == 0) json_str(&j, "publication_string", ps);
      }
      if (res->anchor == KL_ANCHOR_CERTIFICATE) {
        char id[2 * 16 + 1];
        kl_hex_encode(res->cert_id, res->cert_id_len, id);
        json_str(&j, "cert_id", id);
      }
      json_bool(&j, "extended", res->anchor_extended);
      json_end_obj(&j);
    }
    json_end_obj(&j);
    json_finish(&j);
  } else if (res->verdict == KL_VER_OK) {
    char why[400];
    printf("OK: signature verified (%s policy)\n%s", kl_policy_name(res->policy), anchor_text(res, why, sizeof why));
  } else {
    printf("%s %s: %s%s%s%s\n", verdict, kl_vcode_str(res->code), kl_vcode_msg(res->code),
           res->message[0] ? " (" : "", res->message, res->message[0] ? ")" : "");
  }
  return res->verdict == KL_VER_OK ? KL_EXIT_OK : KL_EXIT_VERIFY;
}

/* Prints an error that stops verification before a verdict, in the chosen format. */
static int fail_early(const vargs_t *a, int status, const char *msg) {
  if (a->json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "result", "ERROR");
    json_str(&j, "code", "");
    json_str(&j, "message", msg);
    json_u64(&j, "exit_status", (uint64_t)status);
    json_end_obj(&j);
    json_finish(&j);
  }
  fprintf(stderr, "keyless verify: %s\n", msg);
  return status;
}

int cmd_verify(int argc, char **argv) {
  vargs_t a = {0};
  int st = parse_args(argc, argv, &a);
  if (st != 0) return st < 0 ? KL_EXIT_OK : st;
  kl_err_t e = {0};
  uint8_t *buf = NULL;
  size_t len = 0;
  kl_sig_t *sig = NULL;
  kl_pubfile_t *pf = NULL;
  canned_t canned = {NULL, 0, a.ext_key ? a.ext_key : "anon"};
  live_t live = {a.ext_url, a.ext_user, a.ext_key, (int)a.timeout * 1000};
  kl_verify_opts_t o = {0};
  kl_imprint_t doc;
  int r;

  if ((st = cli_tls_setup(&a.tls, false, &e)) != KL_EXIT_OK) {
    st = fail_early(&a, st, e.msg);
    goto out;
  }
  if ((r = cli_read_file(a.sig, KL_TLV_MAX_SIZE, &buf, &len, &e))) {
    st = fail_early(&a, cli_exit_for(r), e.msg);
    goto out;
  }
  if ((r = kl_sig_parse(buf, len, &sig, &e))) {
    kl_err_wrap(&e, "%s", a.sig);
    st = fail_early(&a, KL_EXIT_FORMAT, e.msg);
    goto out;
  }
  if (a.digest || a.file) {
    struct stat sb;
    const char *imp_text = a.digest;
    if (a.file && stat(a.file, &sb) != 0 && strchr(a.file, ':')) imp_text = a.file; /* ksi-tool's -f ALG:HEX */
    if (imp_text) r = kl_imprint_parse_text(&doc, imp_text, &e);
    else r = cli_hash_file(a.file, kl_sig_document_hash(sig)->alg, &doc, &e);
    if (r) {
      st = fail_early(&a, imp_text ? KL_EXIT_USAGE : cli_exit_for(r), e.msg);
      goto out;
    }
    o.doc_hash = &doc;
  }
  o.doc_level = a.level;
  if (a.pub_str) {
    if ((r = kl_pubstr_decode(a.pub_str, &o.user_pub_time, &o.user_pub_hash, &e))) {
      kl_err_wrap(&e, "--pub-str");
      st = fail_early(&a, KL_EXIT_USAGE, e.msg);
      goto out;
    }
    o.has_user_pub = true;
  }
  if (a.pubfile && (st = cli_load_pubfile(a.pubfile, &a.trust, &pf, &e)) != KL_EXIT_OK) {
    if (*cli_where(a.pubfile)) kl_err_wrap(&e, "%.*s", (int)strlen(cli_where(a.pubfile)) - 2, cli_where(a.pubfile));
    st = fail_early(&a, st, e.msg);
    goto out;
  }
  o.pubfile = pf;
  if (a.ext_url) {
    if (strncmp(a.ext_url, "file://", 7) == 0) {
      /* A saved 0x321 response, as ksi-tool's tests use (HMAC key: --ext-key, default "anon"). */
      if ((r = cli_read_file(a.ext_url + 7, KL_TLV_MAX_SIZE, &canned.pdu, &canned.len, &e))) {
        st = fail_early(&a, cli_exit_for(r), e.msg);
        goto out;
      }
      o.extend = canned_extend;
      o.extend_arg = &canned;
    } else {
      if ((r = cli_check_extender(a.ext_url, a.ext_user, a.ext_key, &e))) {
        if (*cli_where(a.ext_url)) kl_err_wrap(&e, "%.*s", (int)strlen(cli_where(a.ext_url)) - 2, cli_where(a.ext_url));
        st = fail_early(&a, KL_EXIT_USAGE, e.msg);
        goto out;
      }
      o.extend = live_extend;
      o.extend_arg = &live;
    }
  }
  /* -x permits extending for the publication-based policies; calendar-based always extends. */
  o.extending_allowed = a.extend_ok;
  if (a.policy == KL_POLICY_USER_PUB && !a.pub_str) {
    st = fail_early(&a, KL_EXIT_USAGE, "user publication policy needs --pub-str");
    goto out;
  }
  kl_verify_result_t res;
  kl_verify(sig, (kl_policy_t)a.policy, &o, &res);
  if (res.verdict == KL_VER_OK && a.wit.n &&
      (st = cli_witness_check_sig(&a.wit, sig, pf, &o, a.pubfile, a.json)) != KL_EXIT_OK)
    goto out;
  st = report(&a, sig, &res);
  if (st == KL_EXIT_OK && a.manifest)
    st = cli_verify_manifest(a.manifest, a.base, kl_sig_document_hash(sig)->alg, a.files, a.n_files, a.json);
out:
  free(canned.pdu);
  cli_witness_free(&a.wit);
  kl_pubfile_free(pf);
  kl_sig_free(sig);
  free(buf);
  return st;
}
