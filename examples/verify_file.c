/* Example: verify a file's signature with the keyless client library (docs/client.md,
 * examples/README.md). Uses only the installed public API: #include <keyless/...>, -lkeyless.
 *
 *   verify_file [-P PUBFILE -c OID=VALUE [-V ANCHOR.pem]...] FILE SIG
 *
 * Without -P: the internal policy (the signature is consistent and signs FILE's hash).
 * With -P: the publications file is checked first (its CMS signature against the anchors, or
 * the system's store without -V, and the signer's subject against each -c, e.g.
 * -c E=publications@example.org), then the signature under the default (general) policy, which
 * can use the file's certificates and publications.
 * Exit status: 0 verified; 1 verification failed (e.g. GEN-01 wrong document); 3 inconclusive
 * (NA); 2 bad usage or a file that cannot be read, parsed or trusted. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyless/err.h>
#include <keyless/hash.h>
#include <keyless/pubfile.h>
#include <keyless/sig.h>
#include <keyless/verify.h>

#define MAX_TRUST 8
#define MAX_READ (16u << 20) /* signatures and publications files are far smaller */

/* The whole of a small file; *out is malloc'd. */
static int read_small(const char *path, uint8_t **out, size_t *len, kl_err_t *e) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "%s: %s", path, strerror(errno));
  uint8_t *p = malloc(MAX_READ + 1);
  if (p == NULL) {
    fclose(f);
    return kl_err_set(e, KL_ENOMEM, "out of memory");
  }
  size_t n = fread(p, 1, MAX_READ + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > MAX_READ) {
    free(p);
    return kl_err_set(e, bad ? KL_EIO : KL_ETOOBIG, "%s: %s", path, bad ? "read error" : "larger than 16 MiB");
  }
  *out = p;
  *len = n;
  return 0;
}

/* FILE's imprint with the algorithm the signature used. */
static int hash_file(const char *path, int alg, kl_imprint_t *out, kl_err_t *e) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "%s: %s", path, strerror(errno));
  kl_hasher_t h;
  int rc = kl_hasher_init(&h, e);
  if (rc == 0) rc = kl_hasher_start(&h, alg, e);
  unsigned char block[65536];
  size_t n;
  while (rc == 0 && (n = fread(block, 1, sizeof block, f)) > 0) rc = kl_hasher_update(&h, block, n);
  if (rc == 0 && ferror(f)) rc = kl_err_set(e, KL_EIO, "%s: read error", path);
  if (rc == 0) rc = kl_hasher_finish(&h, out);
  kl_hasher_close(&h);
  fclose(f);
  return rc;
}

static int usage(void) {
  fprintf(stderr, "usage: verify_file [-P PUBFILE -c OID=VALUE [-V ANCHOR.pem]...] FILE SIG\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *pubpath = NULL, *anchors[MAX_TRUST];
  kl_cnstr_t cnstr[MAX_TRUST];
  size_t n_anchors = 0, n_cnstr = 0;
  int c, status = 2;
  while ((c = getopt(argc, argv, "P:V:c:")) != -1) {
    if (c == 'P') pubpath = optarg;
    else if (c == 'V' && n_anchors < MAX_TRUST) anchors[n_anchors++] = optarg;
    else if (c == 'c' && n_cnstr < MAX_TRUST && strchr(optarg, '=') != NULL) {
      char *eq = strchr(optarg, '=');
      *eq = '\0'; /* argv is ours to change: "E=x" becomes "E" and "x" */
      cnstr[n_cnstr].oid = optarg;
      cnstr[n_cnstr].value = eq + 1;
      n_cnstr++;
    } else return usage();
  }
  if (optind != argc - 2 || (pubpath != NULL && n_cnstr == 0) || (pubpath == NULL && (n_cnstr || n_anchors)))
    return usage();
  const char *file = argv[optind], *sigpath = argv[optind + 1];

  kl_err_t e = {0};
  uint8_t *raw = NULL, *pubraw = NULL;
  size_t len = 0, publen = 0;
  kl_sig_t *sig = NULL;
  kl_pubfile_t *pf = NULL;
  kl_imprint_t doc;
  if (read_small(sigpath, &raw, &len, &e) || kl_sig_parse(raw, len, &sig, &e)) {
    fprintf(stderr, "verify_file: %s: %s\n", sigpath, e.msg);
    goto done;
  }
  if (hash_file(file, kl_sig_document_hash(sig)->alg, &doc, &e)) {
    fprintf(stderr, "verify_file: %s\n", e.msg);
    goto done;
  }
  if (pubpath != NULL) {
    kl_pubfile_trust_t trust = {n_anchors ? anchors : NULL, n_anchors, cnstr, n_cnstr, 0, 0};
    if (read_small(pubpath, &pubraw, &publen, &e) || kl_pubfile_parse(pubraw, publen, &pf, &e) ||
        kl_pubfile_verify(pf, &trust, &e)) {
      fprintf(stderr, "verify_file: publications file %s: %s\n", pubpath, e.msg);
      goto done;
    }
  }
  kl_verify_opts_t opts = {0};
  opts.doc_hash = &doc;
  opts.pubfile = pf;
  kl_verify_result_t res;
  kl_policy_t policy = pf ? KL_POLICY_GENERAL : KL_POLICY_INTERNAL;
  kl_verify(sig, policy, &opts, &res);
  printf("%s: %s (%s policy%s%s)%s%s\n", file, kl_verdict_str(res.verdict), kl_policy_name(res.policy),
         res.code != KL_VC_NONE ? ", " : "", kl_vcode_str(res.code), res.message[0] ? ": " : "", res.message);
  status = res.verdict == KL_VER_OK ? 0 : res.verdict == KL_VER_FAIL ? 1 : 3;
done:
  kl_pubfile_free(pf);
  kl_sig_free(sig);
  free(pubraw);
  free(raw);
  return status;
}
