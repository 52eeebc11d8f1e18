/* keyless publish --cosign / --assemble: k of n signers of a publications file (docs/keys.md,
 * "k of n"). `publish --prepare` (cmd_publish.c) writes the unsigned body on the machine with the
 * calendar; each operator checks what it holds and signs it with --cosign on their own machine
 * (their key never leaves it); --assemble joins the parts into one CMS SignedData, refusing a part
 * that does not sign this body, and writes the file (atomically, with its history copy). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "publish.h"

#define MAX_PARTS 16
#define MAX_FILE (64u << 20)

const char *publish_clear_key_hint(int r, const kl_err_t *e) {
  if (r == KL_EPKI && strstr(e->msg, "clear (unencrypted) private key") != NULL)
    return " (keyless publish: --allow-clear-key accepts it, for development only)";
  return "";
}

static int read_body(const char *path, kl_pubfile_t **body, kl_err_t *e) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int r = cli_read_file(path, MAX_FILE, &buf, &len, e);
  if (r == 0) r = kl_pubfile_parse_body(buf, len, body, e);
  free(buf);
  if (r) kl_err_wrap(e, "the unsigned body %s", path);
  return r;
}

/* What the operator signs: enough to compare with what the publisher announced. */
static void describe(const char *path, const kl_pubfile_t *b) {
  char t[64], ps[KL_PUBSTR_MAX];
  kl_err_t e = {0};
  printf("%s: created %s, %zu publications, %zu certificates\n", path, cli_utc(b->created, t, sizeof t), b->n_pubs,
         b->n_certs);
  if (b->n_pubs == 0) return;
  const kl_pub_data_t *p = &b->pubs[b->n_pubs - 1].data;
  if (kl_pubstr_encode(p->time, &p->hash, ps, sizeof ps, &e) == 0)
    printf("  the latest %s:\n  %s\n", cli_utc(p->time, t, sizeof t), ps);
}

int publish_cosign(const char *body_path, const kl_pubfile_signer_t *s, const char *out) {
  kl_err_t e = {0};
  kl_pubfile_t *body = NULL;
  kl_buf_t part = KL_BUF_INIT;
  int r = read_body(body_path, &body, &e);
  if (r == 0) describe(body_path, body);
  if (r == 0 && (r = kl_pubfile_cosign(body, s, &part, &e)) == 0)
    r = cli_write_file_atomic(out, part.p, part.len, true, &e);
  if (r == 0) printf("wrote %s: a signature by %s over %s\n", out, s->cert_pem, body_path);
  else fprintf(stderr, "keyless publish: %s; nothing written%s\n", e.msg, publish_clear_key_hint(r, &e));
  kl_buf_free(&part);
  kl_pubfile_free(body);
  return r ? cli_exit_for(r) : KL_EXIT_OK;
}

/* The file being replaced must not hold a publication the body lacks (another publish since). */
static int check_replaces(const char *out, const kl_pubfile_t *body, kl_err_t *e) {
  struct stat st;
  if (stat(out, &st) != 0 && errno == ENOENT) return 0;
  uint8_t *buf = NULL;
  size_t len = 0, n_all = 0, kept = 0;
  kl_pubfile_t *cur = NULL;
  kl_pub_data_t *add = calloc(body->n_pubs + 1, sizeof *add), *all = NULL;
  int r = add ? 0 : kl_err_set(e, KL_ENOMEM, "out of memory");
  for (size_t i = 0; r == 0 && i < body->n_pubs; i++) add[i] = body->pubs[i].data;
  if (r == 0 && (r = cli_read_file(out, MAX_FILE, &buf, &len, e)) == 0 && (r = kl_pubfile_parse(buf, len, &cur, e)) == 0 &&
      (r = kl_pubfile_merge(cur, add, body->n_pubs, SIZE_MAX, &all, &n_all, &kept, e)) == 0 && n_all != body->n_pubs)
    r = kl_err_set(e, KL_ESTATE, "%s holds %zu publications the body lacks: it changed since --prepare; prepare again", out,
                   n_all - body->n_pubs);
  if (r) kl_err_wrap(e, "the file to replace, %s", out);
  free(all);
  free(add);
  free(buf);
  kl_pubfile_free(cur);
  return r;
}

int publish_assemble(const char *body_path, const char *const *parts, size_t n, const cli_trust_t *trust,
                     const char *out) {
  kl_err_t e = {0};
  kl_pubfile_t *body = NULL, *pf = NULL;
  kl_buf_t file = KL_BUF_INIT;
  uint8_t *bufs[MAX_PARTS] = {0};
  size_t lens[MAX_PARTS];
  char hist[4096] = "";
  int r = 0;
  if (n > MAX_PARTS) r = kl_err_set(&e, KL_ERANGE, "%zu signature parts: at most %d", n, MAX_PARTS);
  if (r == 0) r = read_body(body_path, &body, &e);
  for (size_t i = 0; r == 0 && i < n; i++)
    if ((r = cli_read_file(parts[i], MAX_FILE, &bufs[i], &lens[i], &e))) kl_err_wrap(&e, "signature part %zu", i + 1);
  if (r == 0 && (r = kl_pubfile_assemble(body, (const uint8_t *const *)bufs, lens, n, &file, &e)) != 0) {
    /* Name the file behind "signature part N". */
    const char *at = strstr(e.msg, "signature part ");
    size_t k = at ? strtoul(at + 15, NULL, 10) : 0;
    if (k >= 1 && k <= n) kl_err_wrap(&e, "%s", parts[k - 1]);
  }
  if (r == 0 && trust->n_cnstr > 0) {
    /* The file as clients will check it: K trusted signers (default: every part's). */
    kl_pubfile_trust_t tr = {trust->n_anchors ? trust->anchors : NULL, trust->n_anchors, trust->cnstr, trust->n_cnstr,
                             trust->at, trust->signers_required ? trust->signers_required : n};
    if ((r = kl_pubfile_parse(file.p, file.len, &pf, &e)) == 0) r = kl_pubfile_verify(pf, &tr, &e);
  }
  if (r == 0) r = check_replaces(out, body, &e);
  if (r == 0 && ((r = publish_history_path(out, body->created, hist, sizeof hist, &e)) ||
                 (r = cli_write_file_atomic(hist, file.p, file.len, false, &e)))) hist[0] = '\0';
  if (r == 0 && (r = cli_write_file_atomic(out, file.p, file.len, true, &e))) unlink(hist); /* never issued */
  if (r == 0) {
    printf("wrote %s: %zu publications, signed by %zu part%s\n", out, body->n_pubs, n, n == 1 ? "" : "s");
    printf("history copy: %s\n", hist);
  } else {
    fprintf(stderr, "keyless publish: %s; nothing written\n", e.msg);
  }
  for (size_t i = 0; i < n && i < MAX_PARTS; i++) free(bufs[i]);
  kl_buf_free(&file);
  kl_pubfile_free(pf);
  kl_pubfile_free(body);
  return r ? cli_exit_for(r) : KL_EXIT_OK;
}
