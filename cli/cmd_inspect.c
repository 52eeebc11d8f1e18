/* keyless inspect: a signature laid out for a person, or as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keyless/chains.h"
#include "keyless/sig.h"
#include "keyless/verify.h"

static const char *imp_text(const kl_imprint_t *imp, char *buf) {
  char hex[2 * KL_IMPRINT_MAX + 1];
  sprintf(buf, "%s:%s", kl_hash_name(imp->alg) ? kl_hash_name(imp->alg) : "?", kl_imprint_hex(imp, hex) + 2);
  return buf;
}

static void print_link_text(FILE *f, size_t k, const kl_aggr_link_t *l, uint64_t level) {
  char b[160];
  fprintf(f, "      link %2zu: %-5s level %3llu", k + 1, l->dir == KL_LINK_LEFT ? "left" : "right", (unsigned long long)level);
  if (l->level_corr) fprintf(f, " (correction %llu)", (unsigned long long)l->level_corr);
  if (l->kind == KL_SIB_IMPRINT) {
    fprintf(f, "  sibling %s\n", imp_text(&l->sibling, b));
  } else if (l->kind == KL_SIB_LEGACY_ID) {
    fprintf(f, "  legacy id \"%s\"\n", cli_printable(l->legacy_id, b, sizeof b));
  } else {
    const kl_metadata_t *m = &l->meta;
    fprintf(f, "  identity client=\"%s\"", cli_printable(m->client_id, b, sizeof b));
    if (m->machine_id) fprintf(f, " machine=\"%s\"", cli_printable(m->machine_id, b, sizeof b));
    if (m->has_seq) fprintf(f, " seq=%llu", (unsigned long long)m->seq);
    if (m->has_req_time) {
      cli_utc(m->req_time / 1000000, b, sizeof b);
      char *utc = strstr(b, " UTC");
      if (utc) *utc = '\0';
      fprintf(f, " request_time=%s.%06llu UTC", b, (unsigned long long)(m->req_time % 1000000));
    }
    fprintf(f, "\n");
  }
}

void cli_sig_dump(FILE *f, const char *name, const kl_sig_t *s) {
  char b[200], t[64];
  kl_hasher_t h;
  kl_err_t e = {0};
  uint64_t level = 0;
  kl_imprint_t cur;
  kl_hasher_init(&h, &e);
  fprintf(f, "Signature %s (%zu bytes)\n", name, s->raw_len);
  fprintf(f, "  document hash:  %s\n", imp_text(kl_sig_document_hash(s), b));
  fprintf(f, "  signing time:   %llu (%s)\n", (unsigned long long)kl_sig_signing_time(s), cli_utc(kl_sig_signing_time(s), t, sizeof t));
  if (s->rfc3161)
    fprintf(f, "  RFC 3161 record: input %s, tstInfo %s, signed attributes %s\n", imp_text(&s->rfc3161->input, b),
           kl_hash_name((int)s->rfc3161->tst_alg), kl_hash_name((int)s->rfc3161->sig_alg));
  fprintf(f, "  aggregation hash chains: %zu (bottom up)\n", s->n_chains);
  for (size_t i = 0; i < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i];
    fprintf(f, "    chain %zu: %s, %zu link%s, chain index [", i + 1, kl_hash_name((int)c->algo) ? kl_hash_name((int)c->algo) : "?",
           c->n_links, c->n_links == 1 ? "" : "s");
    for (size_t k = 0; k < c->n_index; k++) fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)c->index[k]);
    fprintf(f, "]\n      input %s\n", imp_text(&c->input, b));
    uint64_t lv = level;
    for (size_t k = 0; k < c->n_links; k++) {
      lv += c->links[k].level_corr + 1;
      print_link_text(f, k, &c->links[k], lv);
    }
    if (kl_aggr_chain_compute(&h, c, level, &cur, &level, &e) == 0)
      fprintf(f, "      output %s at level %llu\n", imp_text(&cur, b), (unsigned long long)level);
    else
      fprintf(f, "      output: cannot compute: %s\n", e.msg);
  }
  if (s->cal) {
    size_t right = 0;
    for (size_t k = 0; k < s->cal->n_links; k++) right += s->cal->links[k].dir == KL_LINK_RIGHT;
    fprintf(f, "  calendar hash chain: publication time %llu (%s), %zu links (%zu right, %zu left)\n",
           (unsigned long long)s->cal->pub_time, cli_utc(s->cal->pub_time, t, sizeof t), s->cal->n_links, right,
           s->cal->n_links - right);
    fprintf(f, "    input (aggregation root) %s\n", imp_text(&s->cal->input, b));
    if (kl_cal_chain_root(&h, s->cal, &cur, &e) == 0) {
      char ps[160];
      fprintf(f, "    calendar root %s\n", imp_text(&cur, b));
      if (kl_pubstr_encode(s->cal->pub_time, &cur, ps, sizeof ps, &e) == 0) fprintf(f, "    as publication string: %s\n", ps);
    }
  } else {
    fprintf(f, "  calendar hash chain: none (extend the signature to get one)\n");
  }
  if (s->pub) {
    char ps[160];
    fprintf(f, "  publication record: %llu (%s)\n", (unsigned long long)s->pub->data.time, cli_utc(s->pub->data.time, t, sizeof t));
    fprintf(f, "    published hash %s\n", imp_text(&s->pub->data.hash, b));
    if (kl_pubstr_encode(s->pub->data.time, &s->pub->data.hash, ps, sizeof ps, &e) == 0) fprintf(f, "    publication string %s\n", ps);
    for (size_t k = 0; k < s->pub->n_refs; k++) fprintf(f, "    reference: %s\n", cli_printable(s->pub->refs[k], b, sizeof b));
    for (size_t k = 0; k < s->pub->n_uris; k++) fprintf(f, "    repository: %s\n", cli_printable(s->pub->uris[k], b, sizeof b));
  }
  if (s->auth) {
    char id[40] = "";
    if (s->auth->sig.cert_id_len <= 16) kl_hex_encode(s->auth->sig.cert_id, s->auth->sig.cert_id_len, id);
    fprintf(f, "  calendar authentication record: %llu (%s)\n", (unsigned long long)s->auth->data.time, cli_utc(s->auth->data.time, t, sizeof t));
    fprintf(f, "    signed hash %s\n    signature %s, %zu bytes, certificate id %s\n", imp_text(&s->auth->data.hash, b),
           cli_printable(s->auth->sig.sig_type, t, sizeof t), s->auth->sig.value_len, id);
  }
  if (!s->pub && !s->auth) fprintf(f, "  trust anchor: none (verify with the calendar-based policy or extend)\n");
  kl_hasher_close(&h);
}

static void print_json(const kl_sig_t *s) {
  cli_json_t j;
  kl_hasher_t h;
  kl_err_t e = {0};
  kl_imprint_t cur;
  uint64_t level = 0;
  kl_hasher_init(&h, &e);
  json_begin(&j, stdout);
  json_obj(&j, NULL);
  json_u64(&j, "size", s->raw_len);
  json_imprint(&j, "document_hash", kl_sig_document_hash(s));
  json_u64(&j, "signing_time", kl_sig_signing_time(s));
  json_arr(&j, "aggregation_chains");
  for (size_t i = 0; i < s->n_chains; i++) {
    const kl_aggr_chain_t *c = &s->chains[i];
    json_obj(&j, NULL);
    json_u64(&j, "aggregation_time", c->aggr_time);
    json_arr(&j, "chain_index");
    for (size_t k = 0; k < c->n_index; k++) json_u64(&j, NULL, c->index[k]);
    json_end_arr(&j);
    json_str(&j, "algorithm", kl_hash_name((int)c->algo));
    json_imprint(&j, "input_hash", &c->input);
    json_arr(&j, "links");
    for (size_t k = 0; k < c->n_links; k++) {
      const kl_aggr_link_t *l = &c->links[k];
      json_obj(&j, NULL);
      json_str(&j, "direction", l->dir == KL_LINK_LEFT ? "left" : "right");
      json_u64(&j, "level_correction", l->level_corr);
      if (l->kind == KL_SIB_IMPRINT) json_imprint(&j, "sibling", &l->sibling);
      else if (l->kind == KL_SIB_LEGACY_ID) json_str(&j, "legacy_id", l->legacy_id);
      else {
        json_obj(&j, "metadata");
        json_str(&j, "client_id", l->meta.client_id);
        if (l->meta.machine_id) json_str(&j, "machine_id", l->meta.machine_id);
        if (l->meta.has_seq) json_u64(&j, "sequence_number", l->meta.seq);
        if (l->meta.has_req_time) json_u64(&j, "request_time_us", l->meta.req_time);
        json_end_obj(&j);
      }
      json_end_obj(&j);
    }
    json_end_arr(&j);
    if (kl_aggr_chain_compute(&h, c, level, &cur, &level, &e) == 0) {
      json_imprint(&j, "output_hash", &cur);
      json_u64(&j, "output_level", level);
    }
    json_end_obj(&j);
  }
  json_end_arr(&j);
  if (s->cal) {
    json_obj(&j, "calendar_chain");
    json_u64(&j, "publication_time", s->cal->pub_time);
    json_u64(&j, "aggregation_time", s->cal->aggr_time);
    json_imprint(&j, "input_hash", &s->cal->input);
    json_arr(&j, "links");
    for (size_t k = 0; k < s->cal->n_links; k++) {
      json_obj(&j, NULL);
      json_str(&j, "direction", s->cal->links[k].dir == KL_LINK_LEFT ? "left" : "right");
      json_imprint(&j, "sibling", &s->cal->links[k].sibling);
      json_end_obj(&j);
    }
    json_end_arr(&j);
    if (kl_cal_chain_root(&h, s->cal, &cur, &e) == 0) {
      char ps[160];
      json_imprint(&j, "calendar_root", &cur);
      if (kl_pubstr_encode(s->cal->pub_time, &cur, ps, sizeof ps, &e) == 0) json_str(&j, "publication_string", ps);
    }
    json_end_obj(&j);
  }
  if (s->pub) {
    json_obj(&j, "publication_record");
    json_u64(&j, "publication_time", s->pub->data.time);
    json_imprint(&j, "published_hash", &s->pub->data.hash);
    json_arr(&j, "references");
    for (size_t k = 0; k < s->pub->n_refs; k++) json_str(&j, NULL, s->pub->refs[k]);
    json_end_arr(&j);
    json_arr(&j, "repository_uris");
    for (size_t k = 0; k < s->pub->n_uris; k++) json_str(&j, NULL, s->pub->uris[k]);
    json_end_arr(&j);
    json_end_obj(&j);
  }
  if (s->auth) {
    json_obj(&j, "calendar_auth_record");
    json_u64(&j, "publication_time", s->auth->data.time);
    json_imprint(&j, "published_hash", &s->auth->data.hash);
    json_str(&j, "signature_type", s->auth->sig.sig_type);
    json_hex(&j, "certificate_id", s->auth->sig.cert_id, s->auth->sig.cert_id_len);
    json_end_obj(&j);
  }
  if (s->rfc3161) {
    json_obj(&j, "rfc3161_record");
    json_imprint(&j, "input_hash", &s->rfc3161->input);
    json_u64(&j, "aggregation_time", s->rfc3161->aggr_time);
    json_end_obj(&j);
  }
  json_end_obj(&j);
  json_finish(&j);
  kl_hasher_close(&h);
}

int cmd_inspect(int argc, char **argv) {
  static const struct option opts[] = {{"input", required_argument, NULL, 'i'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *in = NULL;
  bool json = false;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "i:h", opts, NULL)) != -1) {
    switch (c) {
      case 'i': in = optarg; break;
      case 'j': json = true; break;
      case 'h':
        printf("usage: keyless inspect -i SIG [--json]\n");
        cli_exit_table(stdout);
        return KL_EXIT_OK;
      default: return KL_EXIT_USAGE;
    }
  }
  if (in == NULL || optind != argc) {
    fprintf(stderr, "usage: keyless inspect -i SIG [--json]\n");
    return KL_EXIT_USAGE;
  }
  uint8_t *buf;
  size_t len;
  kl_err_t e = {0};
  kl_sig_t *sig;
  int r = cli_read_file(in, KL_TLV_MAX_SIZE, &buf, &len, &e);
  if (r == 0) {
    r = kl_sig_parse(buf, len, &sig, &e);
    free(buf);
    if (r) kl_err_wrap(&e, "%s", in);
  }
  if (r) {
    fprintf(stderr, "keyless inspect: %s\n", e.msg);
    return cli_exit_for(r);
  }
  if (json) print_json(sig);
  else cli_sig_dump(stdout, in, sig);
  kl_sig_free(sig);
  return KL_EXIT_OK;
}
