/* keyless: cosignature files and the k-of-n witness requirement of verify and audit (witness.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "keyless/netclient.h"
#include "keyless/sig.h"
#include "keyless/verify.h"
#include "witness.h"

#define READ_MAX (16u << 20)

int cli_witness_opt(cli_witness_t *w, const char *cmd, int opt, const char *arg) {
  switch (opt) {
    case CLI_O_WITNESS:
      if (w->n == CLI_WITNESS_MAX) {
        fprintf(stderr, "keyless %s: at most %d --witness keys\n", cmd, CLI_WITNESS_MAX);
        return KL_EXIT_USAGE;
      }
      w->paths[w->n++] = arg;
      return KL_EXIT_OK;
    case CLI_O_WITNESSES_REQUIRED:
      if (!cli_parse_u64(arg, &w->k) || w->k == 0 || w->k > CLI_WITNESS_MAX) {
        fprintf(stderr, "keyless %s: --witnesses-required wants 1..%d, got '%s'\n", cmd, CLI_WITNESS_MAX, arg);
        return KL_EXIT_USAGE;
      }
      return KL_EXIT_OK;
    case CLI_O_WITNESS_FILE: w->file = arg; return KL_EXIT_OK;
    default: return KL_EXIT_USAGE;
  }
}

void cli_witness_free(cli_witness_t *w) {
  for (size_t i = 0; i < w->n; i++) kl_witkey_free(w->keys[i]);
  kl_witfile_free(&w->wf);
  memset(w->keys, 0, sizeof w->keys);
  w->loaded = false;
}

int cli_witfile_read(const char *where, kl_witfile_t *f, bool *missing, kl_err_t *e) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int r;
  memset(f, 0, sizeof *f);
  *missing = false;
  if (strncmp(where, "http://", 7) == 0 || strncmp(where, "https://", 8) == 0) {
    kl_url_t u;
    kl_buf_t body = KL_BUF_INIT;
    int status = 0;
    if (kl_url_parse(where, &u, e) || kl_net_request(&u, NULL, 0, NULL, 10000, READ_MAX, &body, &status, e)) {
      kl_buf_free(&body);
      kl_err_wrap(e, "cosignature file %s", where);
      return KL_EXIT_NETWORK;
    }
    if (status == 404) *missing = true;
    else if (status != 200) kl_err_set(e, KL_ESERVICE, "cosignature file %s: HTTP status %d", where, status);
    buf = kl_buf_steal(&body, &len);
    kl_buf_free(&body);
    if (*missing || status != 200) {
      free(buf);
      return *missing ? KL_EXIT_OK : KL_EXIT_NETWORK;
    }
  } else {
    const char *path = cli_file_path(where);
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) {
      *missing = true;
      return KL_EXIT_OK;
    }
    if ((r = cli_read_file(path, READ_MAX, &buf, &len, e))) return cli_exit_for(r);
  }
  r = kl_witfile_decode(buf, len, f, e);
  free(buf);
  if (r) {
    kl_err_wrap(e, "%s", where);
    return cli_exit_for(r);
  }
  return KL_EXIT_OK;
}

int cli_witfile_write(const char *path, const kl_witfile_t *f, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  int r = kl_witfile_encode(&b, f, e);
  if (r == 0) r = cli_write_file_atomic(path, b.p, b.len, true, e);
  kl_buf_free(&b);
  if (r) {
    kl_err_wrap(e, "cosignature file %s", path);
    return cli_exit_for(r);
  }
  return KL_EXIT_OK;
}

static int load(cli_witness_t *w, const char *pubfile, char *why, size_t cap) {
  kl_err_t e = {0};
  char h1[2 * KL_IMPRINT_MAX + 1];
  char where[4096];
  bool missing;
  if (w->k > w->n) {
    snprintf(why, cap, "--witnesses-required %llu, but only %zu --witness keys given", (unsigned long long)w->k, w->n);
    return KL_EXIT_USAGE;
  }
  for (size_t i = 0; i < w->n; i++) {
    if (kl_witkey_load_public(w->paths[i], &w->keys[i], &e)) {
      snprintf(why, cap, "--witness %s", e.msg);
      return KL_EXIT_USAGE;
    }
    for (size_t j = 0; j < i; j++)
      if (kl_imprint_eq(kl_witkey_id(w->keys[i]), kl_witkey_id(w->keys[j]))) {
        snprintf(why, cap, "--witness %s and %s are the same witness (%s)", w->paths[j], w->paths[i],
                 kl_imprint_hex(kl_witkey_id(w->keys[i]), h1));
        return KL_EXIT_USAGE;
      }
  }
  if (w->file) snprintf(where, sizeof where, "%s", w->file);
  else if (pubfile) snprintf(where, sizeof where, "%s.witness", pubfile);
  else {
    snprintf(why, cap, "--witness: give the cosignature file with --witness-file (or -P, next to which it is)");
    return KL_EXIT_USAGE;
  }
  int st = cli_witfile_read(where, &w->wf, &missing, &e);
  if (st != KL_EXIT_OK) {
    snprintf(why, cap, "%s", e.msg);
    return st;
  }
  w->loaded = true;
  if (missing) {
    snprintf(why, cap, "no cosignature file %s", where);
    return KL_EXIT_VERIFY;
  }
  return KL_EXIT_OK;
}

int cli_witness_check_pub(cli_witness_t *w, const char *pubfile, uint64_t t, const kl_imprint_t *root, char *why,
                          size_t cap) {
  char hx[2 * KL_IMPRINT_MAX + 1], others[1024] = "";
  size_t k = w->k ? w->k : w->n, good = 0, ol = 0;
  int st;
  if (!w->loaded && (st = load(w, pubfile, why, cap)) != KL_EXIT_OK) return st;
  const kl_witpub_t *p = kl_witfile_find(&w->wf, t);
  for (size_t i = 0; p && i < w->n; i++) {
    kl_err_t e = {0};
    const kl_cosig_t *c = NULL;
    for (size_t j = 0; j < p->n && c == NULL; j++)
      if (kl_imprint_eq(&p->cosig[j].id, kl_witkey_id(w->keys[i]))) c = &p->cosig[j];
    if (c == NULL) continue;
    if (!kl_imprint_eq(&p->root, root)) {
      snprintf(e.msg, sizeof e.msg, "witness %s cosigned root %s", w->paths[i], kl_imprint_hex(&p->root, hx));
    } else if (kl_witkey_verify(w->keys[i], t, root, c, &e) == 0) {
      good++;
      continue;
    }
    if (ol < sizeof others)
      ol += (size_t)snprintf(others + ol, sizeof others - ol, "; %s (%s)", e.msg, w->paths[i]);
  }
  if (good >= k) return KL_EXIT_OK;
  snprintf(why, cap, "publication %llu (root %s): %zu valid cosignature%s of the %zu known witnesses, %zu required%s%s",
           (unsigned long long)t, kl_imprint_hex(root, hx), good, good == 1 ? "" : "s", w->n, k,
           p ? "" : " (none in the cosignature file)", others);
  return KL_EXIT_VERIFY;
}

int cli_witness_check_sig(cli_witness_t *w, const struct kl_sig *sig, const kl_pubfile_t *pf,
                          const struct kl_verify_opts *o, const char *pubfile, bool json) {
  char why[1600];
  const kl_pub_data_t *pub = NULL;
  kl_pub_data_t user = {0};
  uint64_t ts = kl_sig_signing_time(sig);
  int st;
  if (sig->pub) pub = &sig->pub->data;
  for (size_t i = 0; pub == NULL && pf && i < pf->n_pubs; i++) /* the first one at or after signing */
    if (pf->pubs[i].data.time >= ts) {
      const kl_pub_data_t *d = &pf->pubs[i].data;
      for (size_t j = i + 1; j < pf->n_pubs; j++)
        if (pf->pubs[j].data.time >= ts && pf->pubs[j].data.time < d->time) d = &pf->pubs[j].data;
      pub = d;
    }
  if (pub == NULL && o->has_user_pub) {
    user.time = o->user_pub_time;
    user.hash = o->user_pub_hash;
    pub = &user;
  }
  if (pub == NULL) {
    snprintf(why, sizeof why, "no publication to require witnesses of: the signature holds none, and no later one "
                              "was given (-P or --pub-str)");
    st = KL_EXIT_VERIFY;
  } else {
    st = cli_witness_check_pub(w, pubfile, pub->time, &pub->hash, why, sizeof why);
  }
  if (st == KL_EXIT_OK) return st;
  if (json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "result", st == KL_EXIT_VERIFY ? "FAIL" : "ERROR");
    json_str(&j, "code", "WITNESS");
    json_str(&j, "message", "Publication not cosigned by the required witnesses");
    json_str(&j, "detail", why);
    json_u64(&j, "exit_status", (uint64_t)st);
    json_end_obj(&j);
    json_finish(&j);
  } else if (st == KL_EXIT_VERIFY) {
    printf("FAIL WITNESS: signature verified, but %s\n", why);
  } else {
    fprintf(stderr, "keyless verify: %s\n", why);
  }
  return st;
}
