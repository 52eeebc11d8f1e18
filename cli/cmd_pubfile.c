/* keyless pubfile: check a publications file and show what it holds; -o saves it (as
 * ksi-tool's `pubfile -o`). The trust options may come from a ksi-tool configuration file
 * (--conf FILE, $KSI_CONF; conf.h). */
#include <getopt.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void cert_info(const kl_pubfile_cert_t *c, char *subject, size_t cap, char *from, char *to) {
  const unsigned char *p = c->der;
  X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
  strcpy(from, "?");
  strcpy(to, "?");
  snprintf(subject, cap, "(unparseable certificate)");
  if (x == NULL) return;
  X509_NAME_oneline(X509_get_subject_name(x), subject, (int)cap);
  struct tm tm;
  if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm)) strftime(from, 32, "%Y-%m-%d", &tm);
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) strftime(to, 32, "%Y-%m-%d", &tm);
  X509_free(x);
}

static void show(const kl_pubfile_t *pf, bool verified, bool dump, bool json) {
  char t[64], ps[160], subj[512], from[32], to[32], id[16];
  kl_err_t e = {0};
  if (json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "result", verified ? "OK" : "NOT-VERIFIED");
    json_u64(&j, "version", pf->version);
    json_u64(&j, "created", pf->created);
    if (pf->repo_uri) json_str(&j, "repository_uri", pf->repo_uri);
    json_arr(&j, "certificates");
    for (size_t i = 0; i < pf->n_certs; i++) {
      cert_info(&pf->certs[i], subj, sizeof subj, from, to);
      json_obj(&j, NULL);
      json_hex(&j, "id", pf->certs[i].id, pf->certs[i].id_len);
      json_str(&j, "subject", subj);
      json_str(&j, "not_before", from);
      json_str(&j, "not_after", to);
      json_end_obj(&j);
    }
    json_end_arr(&j);
    json_arr(&j, "publications");
    for (size_t i = 0; i < pf->n_pubs; i++) {
      const kl_pub_rec_t *p = &pf->pubs[i];
      json_obj(&j, NULL);
      json_u64(&j, "time", p->data.time);
      json_imprint(&j, "hash", &p->data.hash);
      if (kl_pubstr_encode(p->data.time, &p->data.hash, ps, sizeof ps, &e) == 0) json_str(&j, "publication_string", ps);
      json_end_obj(&j);
    }
    json_end_arr(&j);
    json_end_obj(&j);
    json_finish(&j);
    return;
  }
  printf("%s: publications file version %llu, created %s, %zu publications, %zu certificates\n",
         verified ? "OK" : "NOT VERIFIED", (unsigned long long)pf->version, cli_utc(pf->created, t, sizeof t),
         pf->n_pubs, pf->n_certs);
  if (pf->n_pubs) {
    printf("  first publication %s\n", cli_utc(pf->pubs[0].data.time, t, sizeof t));
    printf("  last publication  %s\n", cli_utc(pf->pubs[pf->n_pubs - 1].data.time, t, sizeof t));
  }
  if (!dump) return;
  printf("certificates:\n");
  for (size_t i = 0; i < pf->n_certs; i++) {
    cert_info(&pf->certs[i], subj, sizeof subj, from, to);
    if (pf->certs[i].id_len <= 4) kl_hex_encode(pf->certs[i].id, pf->certs[i].id_len, id);
    else strcpy(id, "?");
    printf("  %s  %s .. %s  %s\n", id, from, to, subj);
  }
  printf("publications:\n");
  for (size_t i = 0; i < pf->n_pubs; i++) {
    const kl_pub_rec_t *p = &pf->pubs[i];
    if (kl_pubstr_encode(p->data.time, &p->data.hash, ps, sizeof ps, &e)) strcpy(ps, "?");
    printf("  %s  %s\n", cli_utc(p->data.time, t, sizeof t), ps);
  }
}

static void usage(FILE *f) {
  fprintf(f, "usage: keyless pubfile -P FILE [-V ANCHOR.pem]... [--cnstr OID=VALUE]... [--at UNIXTIME]\n"
             "         [--publications-signers K] [--publications-file-no-verify] [-d | --dump | --json] [-o OUT]\n"
             "         [--ca FILE] [--conf FILE]\n"
             "  -P FILE: a file, or an http:// or https:// URL\n"
             "  --publications-signers K: trust the publications file only when K distinct trusted signers\n"
             "      (keys) signed it, each meeting -V and every --cnstr (default 1; docs/keys.md, k of n)\n"
             "  -d, --dump: list the certificates and every publication\n"
             "  -o OUT: save the publications file (once checked) to OUT, replacing it atomically\n"
             "  --conf FILE: ksi-tool configuration file (-P URL, --cnstr, -V ...; one per line); the\n"
             "      command line wins over it, it over $KSI_CONF's\n" CLI_TLS_HELP);
  cli_exit_table(f);
}

int cmd_pubfile(int argc, char **argv) {
  enum { O_CNSTR = 256, O_AT, O_NOVERIFY, O_JSON, O_DUMP, O_CA, O_CONF, O_PUBSIGNERS };
  static const char shorts[] = "P:V:o:dh";
  static const struct option opts[] = {
      {"publications", required_argument, NULL, 'P'}, {"trust-anchor", required_argument, NULL, 'V'},
      {"cnstr", required_argument, NULL, O_CNSTR},   {"at", required_argument, NULL, O_AT},
      {"publications-file-no-verify", no_argument, NULL, O_NOVERIFY},
      {"json", no_argument, NULL, O_JSON},           {"dump", no_argument, NULL, O_DUMP},
      {"ca", required_argument, NULL, O_CA},         {"help", no_argument, NULL, 'h'},
      {"output", required_argument, NULL, 'o'},      {"conf", required_argument, NULL, O_CONF},
      {"publications-signers", required_argument, NULL, O_PUBSIGNERS},
      {NULL, 0, NULL, 0}};
  cli_tls_t tls = {0};
  const char *in = NULL, *out = NULL;
  cli_trust_t trust = {0};
  bool json = false, dump = false;
  uint64_t at;
  int c, v_src = -1, cnstr_src = -1;
  int conf_st = cli_conf_args("pubfile", &argc, &argv, shorts, opts);
  if (conf_st != KL_EXIT_OK) return conf_st;
  optind = 1;
  while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
    switch (c) {
      case 'P': in = optarg; break;
      case 'o': out = optarg; break;
      case 'V':
        if (cli_source(optarg) > v_src) { /* a higher priority replaces a configuration file's list */
          trust.n_anchors = 0;
          v_src = cli_source(optarg);
        }
        if (trust.n_anchors == sizeof trust.anchors / sizeof trust.anchors[0]) {
          fprintf(stderr, "keyless pubfile: %stoo many -V anchors\n", cli_where(optarg));
          return KL_EXIT_USAGE;
        }
        trust.anchors[trust.n_anchors++] = optarg;
        break;
      case O_PUBSIGNERS:
        if (!cli_trust_set_signers(&trust, optarg)) {
          fprintf(stderr, "keyless pubfile: %s--publications-signers wants a number from 1 to 16, got '%s'\n", cli_where(optarg),
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
          fprintf(stderr, "keyless pubfile: %s--cnstr wants OID=VALUE, got '%s'\n", cli_where(optarg), optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_AT:
        if (!cli_parse_u64(optarg, &at) || at > INT64_MAX) {
          fprintf(stderr, "keyless pubfile: --at wants UNIX seconds\n");
          return KL_EXIT_USAGE;
        }
        trust.at = (int64_t)at;
        break;
      case O_NOVERIFY: trust.no_verify = true; break;
      case O_JSON: json = true; break;
      case 'd':
      case O_DUMP: dump = true; break;
      case O_CA: tls.ca = optarg; break;
      case O_CONF: break; /* read by cli_conf_args */
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if (in == NULL || optind != argc) {
    fprintf(stderr, "keyless pubfile: %s\n", in ? "unexpected argument" : "give -P FILE (or in --conf FILE)");
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  kl_pubfile_t *pf = NULL;
  kl_err_t e = {0};
  int st = cli_tls_setup(&tls, false, &e);
  if (st == KL_EXIT_OK) st = cli_load_pubfile(in, &trust, &pf, &e);
  if (st != KL_EXIT_OK) {
    if (json) {
      cli_json_t j;
      json_begin(&j, stdout);
      json_obj(&j, NULL);
      json_str(&j, "result", "FAIL");
      json_str(&j, "message", e.msg);
      json_u64(&j, "exit_status", (uint64_t)st);
      json_end_obj(&j);
      json_finish(&j);
    }
    fprintf(stderr, "keyless pubfile: %s%s\n", cli_where(in), e.msg);
    return st;
  }
  if (out) {
    int r = cli_write_file_atomic(out, pf->raw, pf->raw_len, true, &e);
    if (r) {
      fprintf(stderr, "keyless pubfile: %s\n", e.msg);
      kl_pubfile_free(pf);
      return cli_exit_for(r);
    }
  }
  show(pf, !trust.no_verify, dump, json);
  if (out && !json) printf("saved to %s\n", out);
  kl_pubfile_free(pf);
  return KL_EXIT_OK;
}
