/* keyless sign: before anything is sent -- every input hashed (an unreadable one fails, the
 * rest goes on), the signatures already there checked (resume), and the --manifest mode. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "keyless/verify.h"
#include "sign.h"

/* Whether the signature file f->out, which exists, verifies for f (internal policy with the
 * file's hash): then f is ALREADY signed; otherwise it FAILED with SE_EXISTS_INVALID. */
static void check_existing(sign_file_t *f, int alg) {
  uint8_t *b = NULL;
  size_t len = 0;
  kl_sig_t *sig = NULL;
  kl_err_t e = {0};
  if (cli_read_file(f->out, 1u << 20, &b, &len, &e) || kl_sig_parse(b, len, &sig, &e)) {
    sign_fail(f, SE_EXISTS_INVALID, false, 0, "%s exists but is not a signature (%s); not replaced (use --force)",
              f->out, e.msg);
    free(b);
    return;
  }
  free(b);
  kl_imprint_t doc = f->hash;
  const kl_imprint_t *want = kl_sig_document_hash(sig);
  if (want->alg != alg && !f->is_hash && strcmp(f->path, "-") != 0 && cli_hash_file(f->path, want->alg, &doc, &e)) {
    sign_fail(f, SE_UNREADABLE, false, 0, "%s", e.msg);
    kl_sig_free(sig);
    return;
  }
  kl_verify_opts_t vo;
  kl_verify_result_t res;
  memset(&vo, 0, sizeof vo);
  vo.doc_hash = &doc;
  kl_verify(sig, KL_POLICY_INTERNAL, &vo, &res);
  if (res.verdict == KL_VER_OK) {
    f->state = SF_ALREADY;
    f->aggr_time = kl_sig_signing_time(sig);
  } else {
    sign_fail(f, SE_EXISTS_INVALID, false, 0, "%s exists but does not verify for this file (%s %s: %s); not replaced (use --force)",
              f->out, kl_verdict_str(res.verdict), kl_vcode_str(res.code), res.message);
  }
  kl_sig_free(sig);
}

/* Hashes every input (unreadable ones fail and the rest goes on) and, unless force, checks the
 * signature files already there (resume). Files decided here are reported at once. */
void sign_prepare(sign_file_t *v, size_t n, int alg, bool force, bool manifest, sign_report_t *rep) {
  for (size_t i = 0; i < n; i++) {
    sign_file_t *f = &v[i];
    kl_err_t e = {0};
    if (f->state == SF_PENDING && !f->is_hash) {
      struct stat st;
      if (strcmp(f->path, "-") != 0 && stat(f->path, &st) == 0 && S_ISDIR(st.st_mode))
        sign_fail(f, SE_UNREADABLE, false, 0, "%s is a directory", f->path);
      else if (cli_hash_file(f->path, alg, &f->hash, &e))
        sign_fail(f, SE_UNREADABLE, false, 0, "%s", e.msg);
      else if (strcmp(f->path, "-") != 0 && stat(f->path, &st) == 0)
        f->size = (uint64_t)st.st_size;
    }
    if (f->state == SF_PENDING && !manifest) {
      struct stat st;
      if (lstat(f->out, &st) == 0) {
        if (force) f->replace = true;
        else check_existing(f, alg);
      }
    }
    if (f->state != SF_PENDING) sign_report_file(rep, f, NULL);
    if ((i + 1) % 256 == 0) {
      pthread_mutex_lock(&rep->mu);
      rep->hashed = i + 1;
      pthread_mutex_unlock(&rep->mu);
      sign_report_progress(rep, "hashing", false);
    }
  }
}

int sign_manifest(sign_file_t *v, size_t n, const char *manifest, const char *out, int alg, bool force,
                  const sign_opts_t *o, sign_report_t *rep) {
  struct stat ms;
  bool have = stat(manifest, &ms) == 0;
  /* The manifest (and its signature) may sit in a tree being walked: not an entry of itself. */
  for (size_t i = 0; have && i < n; i++) {
    struct stat st;
    if (!v[i].is_hash && stat(v[i].path, &st) == 0 && st.st_dev == ms.st_dev && st.st_ino == ms.st_ino)
      v[i].state = SF_ALREADY; /* skipped quietly */
  }
  for (size_t i = 0; i < n; i++)
    if (v[i].state == SF_PENDING && (v[i].is_hash || strcmp(v[i].path, "-") == 0)) {
      fprintf(stderr, "keyless sign: --manifest takes files and directories, not %s\n", v[i].path);
      return KL_EXIT_USAGE;
    }
  sign_prepare(v, n, alg, force, true, rep);
  kl_err_t e = {0};
  size_t mlen = strlen(manifest);
  sign_file_t m;
  memset(&m, 0, sizeof m);
  m.path = (char *)manifest;
  m.rel = (char *)manifest;
  m.out = malloc(mlen + (out ? strlen(out) : 0) + 8);
  if (m.out == NULL) return KL_EXIT_GENERAL;
  if (out) strcpy(m.out, out);
  else snprintf(m.out, mlen + 8, "%s.ksig", manifest);
  /* the entries: hashed files only (an unreadable one was reported and is left out) */
  sign_file_t *in = malloc((n ? n : 1) * sizeof *in);
  size_t k = 0;
  for (size_t i = 0; in && i < n; i++)
    if (v[i].state == SF_PENDING) in[k++] = v[i];
  int r = in ? sign_write_manifest(manifest, in, k, &e) : kl_err_set(&e, KL_ENOMEM, "out of memory");
  free(in);
  if (r) {
    sign_fail(&m, SE_WRITE, false, 0, "manifest %s: %s", manifest, e.msg);
    sign_report_file(rep, &m, NULL);
  } else {
    sign_prepare(&m, 1, alg, force, false, rep);
    bool sent;
    if (m.state == SF_PENDING && sign_run(&m, 1, o, rep, &sent) != KL_EXIT_OK) {
      free(m.out);
      free(m.error);
      return KL_EXIT_GENERAL;
    }
    if (!o->quiet) fprintf(stderr, "keyless sign: manifest %s: %zu file%s\n", manifest, k, k == 1 ? "" : "s");
  }
  /* the summary: the files left out, then the manifest */
  sign_file_t *all = malloc((n + 1) * sizeof *all);
  int st = KL_EXIT_GENERAL;
  if (all) {
    size_t a = 0;
    for (size_t i = 0; i < n; i++)
      if (v[i].state == SF_FAILED) all[a++] = v[i];
    all[a++] = m;
    st = sign_report_finish(rep, all, a, false);
    free(all);
  }
  free(m.out);
  free(m.error);
  return st;
}
