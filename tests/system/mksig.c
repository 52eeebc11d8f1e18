/* Test tool (not part of the product): issues KSI signatures the way the network will, with the
 * library and no daemons, for the end-to-end system test.
 *
 *   mksig -D CALDIR --pki PKIDIR -o OUTDIR [--time T] [--client ID] FILE...
 *
 * Hashes each FILE (SHA-256), builds one round tree over them (a metadata link per leaf with
 * client id ID, default "test"), appends the round root to the calendar at second T (default
 * now; it must be after the calendar's last second), and writes OUTDIR/basename(FILE).ksig:
 * the leaf's 0x801, the 0x802 from T to T, and a 0x805 signed with PKIDIR/calendar-auth.{crt,key}.
 * Prints the round time on success. Exit status 0, 1 on an error, 2 on bad usage.
 */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyless/calendar.h"
#include "keyless/pki.h"
#include "keyless/sig.h"
#include "keyless/tlv.h"
#include "keyless/tree.h"

#define MAX_FILES 64

static int hash_file(const char *path, kl_imprint_t *out, kl_err_t *e) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kl_err_set(e, KL_EIO, "cannot open %s", path);
  kl_hasher_t h;
  uint8_t chunk[1 << 14];
  size_t n;
  int r = kl_hasher_init(&h, e);
  if (r == 0 && (r = kl_hasher_start(&h, KL_HASH_SHA256, e)) == 0) {
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) kl_hasher_update(&h, chunk, n);
    if (ferror(f) || kl_hasher_finish(&h, out)) r = kl_err_set(e, KL_EIO, "cannot hash %s", path);
  }
  if (h.ctx) kl_hasher_close(&h);
  fclose(f);
  return r;
}

static int write_file(const char *path, const uint8_t *p, size_t n, kl_err_t *e) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(p, 1, n, f) != n) {
    if (f) fclose(f);
    return kl_err_set(e, KL_EIO, "cannot write %s", path);
  }
  return fclose(f) ? kl_err_set(e, KL_EIO, "cannot write %s", path) : 0;
}

static int usage(void) {
  fprintf(stderr, "usage: mksig -D CALDIR --pki PKIDIR -o OUTDIR [--time T] [--client ID] FILE...\n");
  return 2;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"pki", required_argument, NULL, 'p'}, {"time", required_argument, NULL, 't'},
                                       {"client", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0}};
  const char *caldir = NULL, *pki = NULL, *outdir = NULL, *client = "test";
  uint64_t T = (uint64_t)time(NULL);
  int c;
  while ((c = getopt_long(argc, argv, "D:o:", opts, NULL)) != -1) {
    switch (c) {
      case 'D': caldir = optarg; break;
      case 'p': pki = optarg; break;
      case 'o': outdir = optarg; break;
      case 'c': client = optarg; break;
      case 't': T = strtoull(optarg, NULL, 10); break;
      default: return usage();
    }
  }
  size_t n = (size_t)(argc - optind);
  if (caldir == NULL || pki == NULL || outdir == NULL || n == 0 || n > MAX_FILES) return usage();

  kl_err_t e = {0};
  kl_tree_leaf_t leaves[MAX_FILES];
  kl_buf_t meta = KL_BUF_INIT, sig = KL_BUF_INIT;
  kl_tree_t *tree = NULL;
  kl_cal_t *cal = NULL;
  kl_calauth_t *ca = NULL;
  kl_imprint_t cal_root;
  char crt[1024], key[1024], out[2048];
  int r = 0;

  /* The identity of the client that submitted (KSI-FORMAT.md §4.4): { 0x01 client id }. */
  kl_tlv_put_str(&meta, 0x01, 0, client);
  if ((r = kl_buf_check(&meta, &e))) goto done;
  for (size_t i = 0; i < n && r == 0; i++) {
    memset(&leaves[i], 0, sizeof leaves[i]);
    leaves[i].meta = meta.p;
    leaves[i].meta_len = meta.len;
    r = hash_file(argv[optind + i], &leaves[i].hash, &e);
  }
  if (r || (r = kl_tree_build(leaves, n, KL_HASH_SHA256, 255, &tree, &e))) goto done;

  /* The round goes into the calendar at second T. */
  kl_cal_entry_t entry = {T, kl_tree_root(tree)};
  if ((r = kl_cal_open(caldir, NULL, &cal, &e)) || (r = kl_cal_append(cal, &entry, 1, &e)) ||
      (r = kl_cal_root(cal, T, &cal_root, &e)))
    goto done;
  snprintf(crt, sizeof crt, "%s/calendar-auth.crt", pki);
  snprintf(key, sizeof key, "%s/calendar-auth.key", pki);
  if ((r = kl_calauth_load(crt, key, &ca, &e))) goto done;

  for (size_t i = 0; i < n && r == 0; i++) {
    kl_buf_reset(&sig);
    size_t m = kl_tlv_open(&sig);
    if ((r = kl_tree_chain(tree, i, T, NULL, 0, &sig, &e)) || (r = kl_cal_chain(cal, T, T, &sig, &e)) ||
        (r = kl_calauth_sign(ca, T, &cal_root, &sig, &e)))
      break;
    if ((r = kl_tlv_close(&sig, m, KL_T_SIGNATURE, 0)) != 0) {
      kl_err_set(&e, r, "signature too large");
      break;
    }
    char *copy = strdup(argv[optind + i]);
    snprintf(out, sizeof out, "%s/%s.ksig", outdir, copy ? basename(copy) : "out");
    free(copy);
    if ((r = kl_buf_check(&sig, &e)) == 0) r = write_file(out, sig.p, sig.len, &e);
  }
  if (r == 0) printf("%llu\n", (unsigned long long)T);

done:
  if (r) fprintf(stderr, "mksig: %s\n", e.msg[0] ? e.msg : kl_strerror(r));
  kl_calauth_free(ca);
  kl_cal_close(cal);
  kl_tree_free(tree);
  kl_buf_free(&meta);
  kl_buf_free(&sig);
  return r ? 1 : 0;
}
