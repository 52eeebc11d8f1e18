/* keyless publish: make the publications file from a calendar: one publication per interval
 * (default daily at 00:00:00 UTC) from genesis to the last second, the calendar-auth
 * certificates, and a CMS signature by the publications certificate.
 *
 * Publications are permanent (a signature extended to one must keep verifying against every
 * later file), so a new file holds every publication of the previous one: the existing output
 * file, or --previous FILE. That file is verified first (its CMS signature with the key of
 * --cert, or with -V/--cnstr when another certificate signed it), each of its publications
 * within the calendar must be the calendar's root at that second, and the new file keeps them
 * all, with its certificates and repository URI; a publication the calendar disagrees with, or
 * two hashes for one second, is an error and nothing is written. Every file written is also
 * kept as DIR/history/NAME-YYYYMMDDTHHMMSSZ.bin (the output's directory and name, the file's
 * creation time in UTC) for auditors; the extender serves that directory. Both files are
 * written to a temporary file and renamed. docs/operations.md, "Publishing".
 *
 * k of n (docs/keys.md): --prepare writes the unsigned body instead of signing it; --cosign and
 * --assemble (publish_parts.c) sign it on each operator's machine and join the parts. A clear
 * (unencrypted) key is refused unless --allow-clear-key. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keyless/calendar.h"
#include "publish.h"

#define MAX_PUBS 200000
#define MAX_CERTS 16
#define MAX_ALL_CERTS 64

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless publish -D CALDIR -o FILE --cert PUB.crt --key KEY [--chain CA.pem] [--allow-clear-key]\n"
          "         [--auth-cert CALENDAR-AUTH.crt]... [--interval SECONDS] [--latest] [--repo-uri URI]\n"
          "         [--previous FILE] [-V ANCHOR.pem]... [--cnstr OID=VALUE]... [--publications-signers K]\n"
          "       keyless publish -D CALDIR -o FILE --prepare BODY [--cert PUB.crt | -V ... --cnstr ...] [options]\n"
          "       keyless publish --cosign BODY --cert OPERATOR.crt --key KEY [--chain CA.pem] -o PART.sig\n"
          "       keyless publish --assemble BODY -o FILE [-V ANCHOR.pem --cnstr OID=VALUE [--publications-signers K]]\n"
          "         PART.sig...\n"
          "  publications at every multiple of --interval (default 86400: daily at 00:00:00 UTC) within the\n"
          "  calendar, and with --latest also at its last second, plus every publication of the previous\n"
          "  file (FILE itself, or --previous), which must verify: signed with the key of --cert, or, with\n"
          "  --cnstr, by a certificate of the anchors (-V; default: the system's). FILE is replaced\n"
          "  atomically and a copy kept as DIR/history/NAME-YYYYMMDDTHHMMSSZ.bin.\n"
          "  KEY: a key file, file:PATH?passphrase-source=file:PASSFILE (a wrapped key) or\n"
          "  pkcs11:token=T;object=O?pin-source=file:PINFILE (an HSM); docs/keys.md. A clear (unencrypted)\n"
          "  key file is refused unless --allow-clear-key (development).\n"
          "  k of n signers (docs/keys.md): --prepare writes the unsigned body of FILE to BODY (nothing is\n"
          "  signed; the previous file must verify with --cert, one of its signers, or -V/--cnstr and\n"
          "  --publications-signers); --cosign shows what BODY holds and writes PART.sig, a detached CMS\n"
          "  signature over it (openssl cms -sign -binary -outform DER makes the same); --assemble checks\n"
          "  that every part signs BODY (and with -V/--cnstr that K distinct trusted signers did, default:\n"
          "  one per part), then writes FILE and its history copy as above.\n");
  cli_exit_table(f);
}

/* The previous file: read, parsed, verified, and every publication within the calendar equal
 * to its root. Sets *prev (NULL when there is none to read). */
static int load_previous(const char *path, bool must_exist, const char *cert, const cli_trust_t *trust,
                         kl_cal_t *cal, const kl_cal_info_t *info, kl_pubfile_t **prev, size_t *unchecked,
                         kl_err_t *e) {
  struct stat st;
  uint8_t *buf = NULL;
  size_t len = 0;
  int r;
  *prev = NULL;
  *unchecked = 0;
  if (!must_exist && stat(path, &st) != 0 && errno == ENOENT) return 0;
  if ((r = cli_read_file(path, 64u << 20, &buf, &len, e)) || (r = kl_pubfile_parse(buf, len, prev, e))) {
    free(buf);
    return kl_err_wrap(e, "the previous publications file %s", path);
  }
  free(buf);
  if (trust->n_cnstr > 0) {
    /* At its creation time: it was trusted when issued (its certificate may have expired since). */
    kl_pubfile_trust_t tr = {trust->n_anchors ? trust->anchors : NULL, trust->n_anchors, trust->cnstr,
                             trust->n_cnstr, (int64_t)(*prev)->created, trust->signers_required};
    r = kl_pubfile_verify(*prev, &tr, e);
  } else if (cert == NULL) {
    r = kl_err_set(e, KL_EINVAL, "give --cert (a certificate of one of its signers) or -V/--cnstr to check it");
  } else {
    r = kl_pubfile_verify_signer(*prev, cert, e);
  }
  if (r) {
    kl_err_wrap(e, "the previous publications file %s cannot be trusted", path);
    if (trust->n_cnstr == 0 && strstr(e->msg, ", not with the key of ") != NULL) {
      size_t l = strlen(e->msg);
      snprintf(e->msg + l, sizeof e->msg - l, " (to accept a file another certificate signed: -V ANCHOR.pem --cnstr OID=VALUE)");
    }
    return r;
  }
  for (size_t i = 0; i < (*prev)->n_pubs; i++) {
    const kl_pub_data_t *p = &(*prev)->pubs[i].data;
    char t[64];
    if (p->time < info->genesis)
      return kl_err_set(e, KL_ESTATE,
                        "the previous publications file %s has a publication at %s (%llu), before this calendar's "
                        "genesis %llu: it belongs to another calendar",
                        path, cli_utc(p->time, t, sizeof t), (unsigned long long)p->time,
                        (unsigned long long)info->genesis);
    if (info->empty || p->time > info->last) { /* a replica behind the publisher: kept as it is */
      (*unchecked)++;
      continue;
    }
    kl_imprint_t root;
    if ((r = kl_cal_root(cal, p->time, &root, e))) return r;
    if (root.alg != p->hash.alg || root.len != p->hash.len || memcmp(root.digest, p->hash.digest, root.len) != 0) {
      char ps[KL_PUBSTR_MAX] = "?";
      kl_err_t pe;
      kl_pubstr_encode(p->time, &p->hash, ps, sizeof ps, &pe);
      return kl_err_set(e, KL_ESTATE,
                        "the previous publications file %s publishes %s (%llu) as %s, but the calendar's root "
                        "for that second differs: refusing to change an earlier publication (is -D the "
                        "right calendar?)",
                        path, cli_utc(p->time, t, sizeof t), (unsigned long long)p->time, ps);
    }
  }
  return 0;
}

/* The dated copy's path: DIR/history/STEM-YYYYMMDDTHHMMSSZ[-N].bin, not yet existing. */
int publish_history_path(const char *out, uint64_t created, char *buf, size_t n, kl_err_t *e) {
  char dir[2048], stem[512], stamp[32];
  const char *slash = strrchr(out, '/');
  const char *base = slash ? slash + 1 : out;
  if (slash == NULL) snprintf(dir, sizeof dir, "history");
  else snprintf(dir, sizeof dir, "%.*s/history", slash == out ? 0 : (int)(slash - out), out);
  size_t bl = strlen(base);
  if (bl > 4 && strcmp(base + bl - 4, ".bin") == 0) bl -= 4;
  snprintf(stem, sizeof stem, "%.*s", (int)(bl > 200 ? 200 : bl), base);
  time_t tt = (time_t)created;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return kl_err_set(e, KL_EIO, "cannot create the history directory %s: %s", dir, strerror(errno));
  struct stat st;
  for (int k = 0; k < 100; k++) {
    int w = k == 0 ? snprintf(buf, n, "%s/%s-%s.bin", dir, stem, stamp)
                   : snprintf(buf, n, "%s/%s-%s-%d.bin", dir, stem, stamp, k);
    if (w < 0 || (size_t)w >= n) return kl_err_set(e, KL_EINVAL, "%s: path too long", dir);
    if (lstat(buf, &st) != 0 && errno == ENOENT) return 0;
  }
  return kl_err_set(e, KL_ESTATE, "%s: 100 files for second %s already", dir, stamp);
}

int cmd_publish(int argc, char **argv) {
  enum { O_CERT = 256, O_KEY, O_CHAIN, O_AUTH, O_INTERVAL, O_LATEST, O_REPO, O_PREV, O_CNSTR, O_CLEAR, O_PREPARE,
         O_COSIGN, O_ASSEMBLE, O_SIGNERS };
  static const struct option opts[] = {
      {"dir", required_argument, NULL, 'D'},      {"output", required_argument, NULL, 'o'},
      {"cert", required_argument, NULL, O_CERT},  {"key", required_argument, NULL, O_KEY},
      {"chain", required_argument, NULL, O_CHAIN}, {"auth-cert", required_argument, NULL, O_AUTH},
      {"interval", required_argument, NULL, O_INTERVAL}, {"latest", no_argument, NULL, O_LATEST},
      {"repo-uri", required_argument, NULL, O_REPO}, {"previous", required_argument, NULL, O_PREV},
      {"trust-anchor", required_argument, NULL, 'V'}, {"cnstr", required_argument, NULL, O_CNSTR},
      {"allow-clear-key", no_argument, NULL, O_CLEAR}, {"prepare", required_argument, NULL, O_PREPARE},
      {"cosign", required_argument, NULL, O_COSIGN}, {"assemble", required_argument, NULL, O_ASSEMBLE},
      {"publications-signers", required_argument, NULL, O_SIGNERS},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *dir = NULL, *out = NULL, *cert = NULL, *key = NULL, *chain = NULL, *repo = NULL, *previous = NULL;
  const char *prepare = NULL, *cosign = NULL, *assemble = NULL;
  bool allow_clear = false;
  const char *auth[MAX_CERTS];
  cli_trust_t trust = {0};
  size_t n_auth = 0;
  uint64_t interval = 86400;
  bool latest = false;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "D:o:V:h", opts, NULL)) != -1) {
    switch (c) {
      case 'D': dir = optarg; break;
      case 'o': out = optarg; break;
      case O_CERT: cert = optarg; break;
      case O_KEY: key = optarg; break;
      case O_CHAIN: chain = optarg; break;
      case O_REPO: repo = optarg; break;
      case O_PREV: previous = optarg; break;
      case O_LATEST: latest = true; break;
      case O_CLEAR: allow_clear = true; break;
      case O_PREPARE: prepare = optarg; break;
      case O_COSIGN: cosign = optarg; break;
      case O_ASSEMBLE: assemble = optarg; break;
      case O_SIGNERS:
        if (!cli_trust_set_signers(&trust, optarg)) {
          fprintf(stderr, "keyless publish: --publications-signers wants a number from 1 to 16, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'V':
        if (trust.n_anchors == sizeof trust.anchors / sizeof trust.anchors[0]) {
          fprintf(stderr, "keyless publish: too many -V\n");
          return KL_EXIT_USAGE;
        }
        trust.anchors[trust.n_anchors++] = optarg;
        break;
      case O_CNSTR:
        if (!cli_trust_add_cnstr(&trust, optarg)) {
          fprintf(stderr, "keyless publish: --cnstr wants OID=VALUE\n");
          return KL_EXIT_USAGE;
        }
        break;
      case O_AUTH:
        if (n_auth == MAX_CERTS) {
          fprintf(stderr, "keyless publish: at most %d --auth-cert\n", MAX_CERTS);
          return KL_EXIT_USAGE;
        }
        auth[n_auth++] = optarg;
        break;
      case O_INTERVAL:
        if (!cli_parse_u64(optarg, &interval) || interval == 0) {
          fprintf(stderr, "keyless publish: --interval wants a positive number of seconds\n");
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if ((prepare != NULL) + (cosign != NULL) + (assemble != NULL) > 1) {
    fprintf(stderr, "keyless publish: --prepare, --cosign and --assemble are separate steps: give one\n");
    return KL_EXIT_USAGE;
  }
  if (trust.n_anchors > 0 && trust.n_cnstr == 0) {
    fprintf(stderr, "keyless publish: -V needs at least one --cnstr OID=VALUE (the previous file's signer)\n");
    return KL_EXIT_USAGE;
  }
  if (trust.signers_required > 0 && trust.n_cnstr == 0) {
    fprintf(stderr, "keyless publish: --publications-signers counts trusted signers: give -V ANCHOR.pem and --cnstr OID=VALUE too\n");
    return KL_EXIT_USAGE;
  }
  if (cosign) {
    if (cert == NULL || key == NULL || out == NULL || optind != argc) {
      usage(stderr);
      return KL_EXIT_USAGE;
    }
    kl_pubfile_signer_t s = {cert, key, chain, allow_clear};
    return publish_cosign(cosign, &s, out);
  }
  if (assemble) {
    if (out == NULL || optind == argc) {
      usage(stderr);
      return KL_EXIT_USAGE;
    }
    return publish_assemble(assemble, (const char *const *)argv + optind, (size_t)(argc - optind), &trust, out);
  }
  if (dir == NULL || out == NULL || (prepare == NULL && (cert == NULL || key == NULL)) || optind != argc) {
    usage(stderr);
    return KL_EXIT_USAGE;
  }
  kl_err_t e = {0};
  kl_cal_t *cal = NULL;
  kl_cal_info_t info;
  kl_pub_data_t *pubs = NULL, *all = NULL;
  kl_pubfile_t *prev = NULL;
  uint8_t *ders[MAX_CERTS] = {0};
  size_t lens[MAX_CERTS];
  const uint8_t *all_ders[MAX_ALL_CERTS];
  size_t all_lens[MAX_ALL_CERTS], n_all_certs = 0, n_all = 0, kept = 0, unchecked = 0;
  kl_buf_t file = KL_BUF_INIT;
  char hist[4096] = "";
  bool hist_written = false;
  int r, st = KL_EXIT_OK;
  kl_cal_opts_t ro = {.read_only = true};
  if ((r = kl_cal_open(dir, &ro, &cal, &e)) || (r = kl_cal_info(cal, &info, &e))) goto fail;
  if (info.empty) {
    r = kl_err_set(&e, KL_ENOTFOUND, "the calendar in %s is empty: nothing to publish", dir);
    goto fail;
  }
  for (size_t k = 0; k < n_auth; k++)
    if ((r = cli_read_pem_der(auth[k], &ders[k], &lens[k], &e))) goto fail;
  uint64_t first = (info.genesis + interval - 1) / interval * interval;
  size_t n = first <= info.last ? (size_t)((info.last - first) / interval + 1) : 0;
  if (n + 1 > MAX_PUBS) {
    r = kl_err_set(&e, KL_ERANGE, "%zu publications at interval %llu: too many (max %d)", n, (unsigned long long)interval, MAX_PUBS);
    goto fail;
  }
  pubs = calloc(n + 1, sizeof *pubs);
  if (pubs == NULL) {
    r = kl_err_set(&e, KL_ENOMEM, "out of memory");
    goto fail;
  }
  size_t np = 0;
  for (uint64_t t = first; np < n; t += interval, np++) {
    pubs[np].time = t;
    if ((r = kl_cal_root(cal, t, &pubs[np].hash, &e))) goto fail;
  }
  if (latest && (np == 0 || pubs[np - 1].time != info.last)) {
    pubs[np].time = info.last;
    if ((r = kl_cal_root(cal, info.last, &pubs[np].hash, &e))) goto fail;
    np++;
  }
  const char *prev_path = previous ? previous : out;
  if ((r = load_previous(prev_path, previous != NULL, cert, &trust, cal, &info, &prev, &unchecked, &e)) ||
      (r = kl_pubfile_merge(prev, pubs, np, MAX_PUBS, &all, &n_all, &kept, &e)))
    goto fail;
  /* The certificates: the previous file's (old signatures may name a retired key), then the new. */
  for (size_t k = 0; prev && k < prev->n_certs + n_auth; k++) {
    const uint8_t *d = k < prev->n_certs ? prev->certs[k].der : ders[k - prev->n_certs];
    size_t l = k < prev->n_certs ? prev->certs[k].der_len : lens[k - prev->n_certs];
    bool dup = false;
    for (size_t j = 0; j < n_all_certs && !dup; j++) dup = all_lens[j] == l && memcmp(all_ders[j], d, l) == 0;
    if (dup) continue;
    if (n_all_certs == MAX_ALL_CERTS) {
      r = kl_err_set(&e, KL_ERANGE, "more than %d calendar-auth certificates in all", MAX_ALL_CERTS);
      goto fail;
    }
    all_ders[n_all_certs] = d;
    all_lens[n_all_certs++] = l;
  }
  for (size_t k = 0; prev == NULL && k < n_auth; k++) {
    all_ders[n_all_certs] = ders[k];
    all_lens[n_all_certs++] = lens[k];
  }
  kl_pubfile_spec_t spec = {2, (uint64_t)time(NULL), repo ? repo : prev ? prev->repo_uri : NULL, all_ders,
                            all_lens, n_all_certs, all, n_all, cert, key, chain, !allow_clear};
  if (prepare) {
    if ((r = kl_pubfile_write_body(&spec, &file, &e)) || (r = cli_write_file_atomic(prepare, file.p, file.len, true, &e)))
      goto fail;
    printf("wrote %s: the unsigned body of %s, %zu publications", prepare, out, n_all);
    if (np) {
      char t[64], ps[KL_PUBSTR_MAX];
      if (kl_pubstr_encode(pubs[np - 1].time, &pubs[np - 1].hash, ps, sizeof ps, &e) == 0)
        printf(", the latest %s:\n  %s", cli_utc(pubs[np - 1].time, t, sizeof t), ps);
    }
    printf("\nnext: keyless publish --cosign %s on each signer's machine, then --assemble\n", prepare);
    goto out;
  }
  if ((r = kl_pubfile_write(&spec, &file, &e)) || (r = publish_history_path(out, spec.created, hist, sizeof hist, &e)) ||
      (r = cli_write_file_atomic(hist, file.p, file.len, false, &e)))
    goto fail;
  hist_written = true;
  if ((r = cli_write_file_atomic(out, file.p, file.len, true, &e))) goto fail;
  printf("wrote %s: %zu publications", out, n_all);
  if (np) {
    char t[64], ps[KL_PUBSTR_MAX];
    if (kl_pubstr_encode(pubs[np - 1].time, &pubs[np - 1].hash, ps, sizeof ps, &e) == 0)
      printf(", the latest %s:\n  %s", cli_utc(pubs[np - 1].time, t, sizeof t), ps);
  }
  printf("\n");
  if (prev) printf("kept the %zu publications of %s\n", kept, prev_path);
  if (unchecked)
    printf("note: %zu of them are after the calendar's last second and were kept unchecked\n", unchecked);
  printf("history copy: %s\n", hist);
  goto out;
fail:
  if (hist_written) unlink(hist); /* never issued */
  fprintf(stderr, "keyless publish: %s; nothing written%s\n", e.msg, publish_clear_key_hint(r, &e));
  st = cli_exit_for(r);
out:
  for (size_t k = 0; k < n_auth; k++) free(ders[k]);
  free(pubs);
  free(all);
  kl_pubfile_free(prev);
  kl_buf_free(&file);
  kl_cal_close(cal);
  return st;
}
