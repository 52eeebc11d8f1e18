/* keyless witness: an independent party that countersigns a publication only once it has checked,
 * through an extender's consistency proofs, that it extends the last publication it countersigned
 * (docs/operations.md "Witnesses", docs/formats.md §8). A forked calendar then cannot get its
 * cosignature for both branches.
 *
 * STATE_DIR holds witness.key (its private key, 0600), witness.pub (the public key others give to
 * `--witness`) and state ("second=N", "root=HEX": the last publication countersigned, replaced
 * atomically once the cosignatures are written). Subcommands: init, sign, add, show. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit.h"
#include "cli.h"
#include "witness.h"

typedef struct wpub {
  uint64_t t;
  kl_imprint_t h;
} wpub_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyless witness init -d STATE_DIR [--alg ed25519|p256] [--key PRIVATE.pem]\n"
          "       keyless witness sign -d STATE_DIR -X URL (-P PUBFILE [-V ANCHOR.pem]... [--cnstr OID=VALUE]...\n"
          "                 [--publications-file-no-verify] | --pub-str STRING...) [-o COSIGFILE] [-c S] [--ca FILE]\n"
          "       keyless witness add -o COSIGFILE [--witness KEY.pem]... FILE...\n"
          "       keyless witness show [--witness KEY.pem]... COSIGFILE\n"
          "  init: makes STATE_DIR (0700) with a new witness key (Ed25519 by default), or a copy of\n"
          "      --key (Ed25519 or ECDSA P-256), as witness.key, and its public key witness.pub; prints\n"
          "      the witness id (SHA-256 of the public key)\n"
          "  sign: for each publication after the last one countersigned (STATE_DIR/state), in order:\n"
          "      the extender's consistency proof from that one is fetched (-X, its /calendar endpoints)\n"
          "      and verified here, its roots being the two publications' hashes; the last is also\n"
          "      linked to the extender's head. The first run accepts its first publication once it\n"
          "      is the extender's root at that second. Then each is countersigned into COSIGFILE\n"
          "      (default PUBFILE.witness; merged with what it holds, written atomically) and the\n"
          "      state moves on. A publication that does not extend the state: exit 6 naming seconds\n"
          "      and hashes, nothing written. The publication of the state itself is signed again\n"
          "      (to start a new COSIGFILE); older ones are skipped. With nothing new, the extender's\n"
          "      head must still extend the state (else exit 6).\n"
          "  add: merges the cosignatures of each FILE into COSIGFILE (created if missing); with\n"
          "      --witness, only cosignatures of those keys, each checked (a bad one: exit 6)\n"
          "  show: prints each publication's cosignatures (checked against --witness keys)\n"
          CLI_TLS_HELP);
  cli_exit_table(f);
}

static void path_in(char *out, size_t cap, const char *dir, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static int cmd_init(int argc, char **argv) {
  static const struct option opts[] = {{"dir", required_argument, NULL, 'd'}, {"alg", required_argument, NULL, 'a'},
                                       {"key", required_argument, NULL, 'k'}, {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL, *keyfile = NULL;
  int alg = KL_WITNESS_ED25519, c;
  kl_err_t e = {0};
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
    switch (c) {
      case 'd': dir = optarg; break;
      case 'k': keyfile = optarg; break;
      case 'a':
        if (strcmp(optarg, "ed25519") == 0) alg = KL_WITNESS_ED25519;
        else if (strcmp(optarg, "p256") == 0 || strcmp(optarg, "P-256") == 0) alg = KL_WITNESS_ECDSA_P256;
        else {
          fprintf(stderr, "keyless witness init: --alg wants ed25519 or p256, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  if (dir == NULL || optind != argc) {
    fprintf(stderr, "keyless witness init: %s\n", dir ? "unexpected argument" : "give the state directory with -d");
    return KL_EXIT_USAGE;
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "keyless witness init: cannot create %s: %s\n", dir, strerror(errno));
    return KL_EXIT_IO;
  }
  char kp[4096], pp[4096], hx[2 * KL_IMPRINT_MAX + 1];
  path_in(kp, sizeof kp, dir, "witness.key");
  path_in(pp, sizeof pp, dir, "witness.pub");
  kl_witkey_t *k = NULL;
  int r = keyfile ? kl_witkey_load_private(keyfile, &k, &e) : kl_witkey_generate(alg, &k, &e);
  if (r == 0 && (r = kl_witkey_save(k, true, kp, &e)) == 0 && (r = kl_witkey_save(k, false, pp, &e)) != 0)
    remove(kp); /* never a key without its public half */
  if (r) {
    fprintf(stderr, "keyless witness init: %s\n", e.msg);
    kl_witkey_free(k);
    return r == KL_ESTATE ? KL_EXIT_GENERAL : r == KL_EUNSUPPORTED ? KL_EXIT_USAGE : cli_exit_for(r);
  }
  printf("witness %s (%s)\nprivate key %s\npublic key %s (give it to verifiers: --witness)\n",
         kl_imprint_hex(kl_witkey_id(k), hx), kl_witkey_alg(k) == KL_WITNESS_ED25519 ? "Ed25519" : "ECDSA P-256", kp,
         pp);
  kl_witkey_free(k);
  return KL_EXIT_OK;
}

/* STATE_DIR/state; *have false when there is none yet. */
static int state_load(const char *path, bool *have, wpub_t *s, kl_err_t *e) {
  FILE *f = fopen(path, "r");
  char line[300];
  bool ht = false, hr = false;
  *have = false;
  if (f == NULL) {
    if (errno == ENOENT) return KL_EXIT_OK;
    kl_err_set(e, KL_EIO, "cannot open %s: %s", path, strerror(errno));
    return KL_EXIT_IO;
  }
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "second=", 7) == 0) ht = cli_parse_u64(line + 7, &s->t);
    else if (strncmp(line, "root=", 5) == 0) hr = kl_imprint_parse_text(&s->h, line + 5, NULL) == 0;
  }
  fclose(f);
  if (!ht || !hr) {
    kl_err_set(e, KL_EFORMAT, "witness state %s: expected lines second=UNIXTIME and root=HEX", path);
    return KL_EXIT_FORMAT;
  }
  *have = true;
  return KL_EXIT_OK;
}

static int cmp_pub(const void *x, const void *y) {
  const wpub_t *p = x, *q = y;
  return p->t < q->t ? -1 : p->t > q->t;
}

/* The proof from..to at x must carry rf and rt and link them; KL_EXIT_VERIFY naming both. */
static int linked(aud_ext_t *x, uint64_t from, const kl_imprint_t *rf, const char *wf, uint64_t to,
                  const kl_imprint_t *rt, const char *wt, kl_err_t *e) {
  char h1[2 * KL_IMPRINT_MAX + 1], h2[2 * KL_IMPRINT_MAX + 1];
  kl_calproof_t *p;
  int st;
  if (from == to) {
    if (kl_imprint_eq(rf, rt)) return KL_EXIT_OK;
    kl_err_set(e, KL_EFORMAT, "second %llu: %s is %s, %s is %s", (unsigned long long)from, wf, kl_imprint_hex(rf, h1),
               wt, kl_imprint_hex(rt, h2));
    return KL_EXIT_VERIFY;
  }
  if ((p = malloc(sizeof *p)) == NULL) {
    kl_err_set(e, KL_ENOMEM, "out of memory");
    return KL_EXIT_GENERAL;
  }
  if ((st = aud_consistency(x, from, to, p, e)) != KL_EXIT_OK) {
  } else if (!kl_imprint_eq(&p->root_from, rf)) {
    kl_err_set(e, KL_EFORMAT, "second %llu: extender %s's calendar root is %s, %s is %s", (unsigned long long)from,
               x->url, kl_imprint_hex(&p->root_from, h1), wf, kl_imprint_hex(rf, h2));
    st = KL_EXIT_VERIFY;
  } else if (!kl_imprint_eq(&p->root_to, rt)) {
    kl_err_set(e, KL_EFORMAT, "second %llu: extender %s's calendar root is %s, %s is %s", (unsigned long long)to,
               x->url, kl_imprint_hex(&p->root_to, h1), wt, kl_imprint_hex(rt, h2));
    st = KL_EXIT_VERIFY;
  } else if (kl_calproof_verify(p, rf, rt, e)) {
    kl_err_wrap(e, "extender %s: %s (%llu) to %s (%llu)", x->url, wf, (unsigned long long)from, wt,
                (unsigned long long)to);
    st = KL_EXIT_VERIFY;
  }
  free(p);
  return st;
}

static int do_sign(const char *dir, aud_ext_t *x, wpub_t *pubs, size_t n, const char *out, kl_err_t *e) {
  char kp[4096], sp[4096], w1[64], w2[64], hx[2 * KL_IMPRINT_MAX + 1];
  wpub_t s = {0};
  bool have;
  kl_witkey_t *k = NULL;
  kl_witfile_t wf = {0};
  struct signed_now { /* what this run countersigns, before anything is written */
    uint64_t time;
    kl_imprint_t root;
    kl_cosig_t cosig;
  } *signed_now = NULL;
  int st, r;
  path_in(kp, sizeof kp, dir, "witness.key");
  path_in(sp, sizeof sp, dir, "state");
  if ((r = kl_witkey_load_private(kp, &k, e))) return r == KL_EUNSUPPORTED ? KL_EXIT_USAGE : cli_exit_for(r);
  if ((st = state_load(sp, &have, &s, e)) || (st = aud_head(x, e))) goto done;
  /* Sorted, duplicates dropped; two hashes for one second is a fork in the input itself. */
  qsort(pubs, n, sizeof *pubs, cmp_pub);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (m > 0 && pubs[m - 1].t == pubs[i].t) {
      if (kl_imprint_eq(&pubs[m - 1].h, &pubs[i].h)) continue;
      snprintf(w1, sizeof w1, "one publication of %llu", (unsigned long long)pubs[i].t);
      st = linked(x, pubs[i].t, &pubs[m - 1].h, w1, pubs[i].t, &pubs[i].h, "another", e);
      goto done;
    }
    pubs[m++] = pubs[i];
  }
  size_t ns = 0;
  if ((signed_now = calloc(m + 1, sizeof *signed_now)) == NULL) {
    kl_err_set(e, KL_ENOMEM, "out of memory");
    st = KL_EXIT_GENERAL;
    goto done;
  }
  const wpub_t *prev = have ? &s : NULL;
  for (size_t i = 0; i < m; i++) {
    const wpub_t *p = &pubs[i];
    if (have && p->t < s.t) continue;
    if (p->t > x->head.last) {
      kl_err_set(e, KL_ESERVICE, "extender %s's head %llu is before publication %llu: lagging, or hiding it", x->url,
                 (unsigned long long)x->head.last, (unsigned long long)p->t);
      st = KL_EXIT_EXTENDER;
      goto done;
    }
    snprintf(w2, sizeof w2, "publication %llu", (unsigned long long)p->t);
    if (prev) {
      snprintf(w1, sizeof w1, "%s %llu", prev == &s ? "the publication countersigned last," : "publication",
               (unsigned long long)prev->t);
      if ((st = linked(x, prev->t, &prev->h, w1, p->t, &p->h, w2, e))) goto done;
    }
    signed_now[ns].time = p->t;
    signed_now[ns].root = p->h;
    if ((r = kl_witkey_sign(k, p->t, &p->h, &signed_now[ns].cosig, e))) {
      st = cli_exit_for(r);
      goto done;
    }
    ns++;
    prev = p;
  }
  if (ns == 0) { /* still a monitor: the extender's head must extend what was countersigned */
    if (have && (st = linked(x, s.t, &s.h, "the publication countersigned last,", x->head.last, &x->head.root,
                             "the extender's head", e)))
      goto done;
    printf("nothing to countersign: no publication at or after %llu%s\n", (unsigned long long)(have ? s.t : 0),
           have ? "; the extender's head extends it" : "");
    st = KL_EXIT_OK;
    goto done;
  }
  /* The last one is in the extender's calendar now (the first run: the only check it gets). */
  snprintf(w1, sizeof w1, "publication %llu", (unsigned long long)prev->t);
  if ((st = linked(x, prev->t, &prev->h, w1, x->head.last, &x->head.root, "the extender's head", e))) goto done;
  bool missing;
  if ((st = cli_witfile_read(out, &wf, &missing, e))) goto done;
  for (size_t i = 0; i < ns; i++)
    if ((r = kl_witfile_add(&wf, signed_now[i].time, &signed_now[i].root, &signed_now[i].cosig, NULL, e))) {
      kl_err_wrap(e, "cosignature file %s", out);
      st = r == KL_ESTATE ? KL_EXIT_VERIFY : cli_exit_for(r);
      goto done;
    }
  if ((st = cli_witfile_write(out, &wf, e))) goto done;
  char buf[400];
  int len = snprintf(buf, sizeof buf, "# keyless witness: the last publication countersigned\nsecond=%llu\nroot=%s\n",
                     (unsigned long long)prev->t, kl_imprint_hex(&prev->h, hx));
  if ((r = cli_write_file_atomic(sp, (const uint8_t *)buf, (size_t)len, true, e))) {
    kl_err_wrap(e, "witness state %s (the cosignatures are written)", sp);
    st = cli_exit_for(r);
    goto done;
  }
  for (size_t i = 0; i < ns; i++)
    printf("countersigned publication %llu %s\n", (unsigned long long)signed_now[i].time,
           kl_imprint_hex(&signed_now[i].root, hx));
  printf("wrote %s; witness %s\n", out, kl_imprint_hex(kl_witkey_id(k), hx));
done:
  free(signed_now);
  kl_witfile_free(&wf);
  kl_witkey_free(k);
  return st;
}

static int cmd_sign_pubs(int argc, char **argv) {
  enum { O_PUBSTR = 256, O_CNSTR, O_NOVERIFY, O_CA };
  static const struct option opts[] = {
      {"dir", required_argument, NULL, 'd'},          {"extender", required_argument, NULL, 'X'},
      {"publications", required_argument, NULL, 'P'}, {"trust-anchor", required_argument, NULL, 'V'},
      {"cnstr", required_argument, NULL, O_CNSTR},    {"publications-file-no-verify", no_argument, NULL, O_NOVERIFY},
      {"pub-str", required_argument, NULL, O_PUBSTR}, {"output", required_argument, NULL, 'o'},
      {"ca", required_argument, NULL, O_CA},          {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *dir = NULL, *url = NULL, *pubfile = NULL, *out = NULL, *pubstrs[64];
  size_t n_pubstrs = 0;
  uint64_t timeout = 10;
  cli_trust_t trust = {0};
  cli_tls_t tls = {0};
  kl_err_t e = {0};
  int c, st;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:X:P:V:o:c:h", opts, NULL)) != -1) {
    switch (c) {
      case 'd': dir = optarg; break;
      case 'X': url = optarg; break;
      case 'P': pubfile = optarg; break;
      case 'o': out = optarg; break;
      case 'V':
        if (trust.n_anchors == sizeof trust.anchors / sizeof trust.anchors[0]) {
          fprintf(stderr, "keyless witness sign: too many -V anchors\n");
          return KL_EXIT_USAGE;
        }
        trust.anchors[trust.n_anchors++] = optarg;
        break;
      case O_CNSTR:
        if (!cli_trust_add_cnstr(&trust, optarg)) {
          fprintf(stderr, "keyless witness sign: --cnstr wants OID=VALUE, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case O_NOVERIFY: trust.no_verify = true; break;
      case O_PUBSTR:
        if (n_pubstrs == sizeof pubstrs / sizeof pubstrs[0]) {
          fprintf(stderr, "keyless witness sign: at most 64 --pub-str\n");
          return KL_EXIT_USAGE;
        }
        pubstrs[n_pubstrs++] = optarg;
        break;
      case O_CA: tls.ca = optarg; break;
      case 'c':
        if (!cli_parse_u64(optarg, &timeout) || timeout == 0 || timeout > 3600) {
          fprintf(stderr, "keyless witness sign: -c wants seconds, 1..3600, got '%s'\n", optarg);
          return KL_EXIT_USAGE;
        }
        break;
      case 'h': usage(stdout); return KL_EXIT_OK;
      default: usage(stderr); return KL_EXIT_USAGE;
    }
  }
  const char *missing = dir == NULL ? "give the state directory with -d" : url == NULL ? "give the extender with -X URL"
                        : pubfile == NULL && n_pubstrs == 0 ? "give the publications with -P or --pub-str"
                        : out == NULL && (pubfile == NULL || strstr(pubfile, "://"))
                            ? "give the cosignature file with -o (no local -P to put it next to)"
                        : optind != argc ? "unexpected argument" : NULL;
  if (missing) {
    fprintf(stderr, "keyless witness sign: %s\n", missing);
    return KL_EXIT_USAGE;
  }
  char outbuf[4096];
  if (out == NULL) {
    snprintf(outbuf, sizeof outbuf, "%s.witness", pubfile);
    out = outbuf;
  }
  static aud_ext_t x;
  kl_pubfile_t *pf = NULL;
  if ((st = cli_tls_setup(&tls, false, &e)) || (st = aud_ext_init(&x, url, (int)timeout * 1000, &e)) ||
      (pubfile && (st = cli_load_pubfile(pubfile, &trust, &pf, &e)))) {
    fprintf(stderr, "keyless witness sign: %s\n", e.msg);
    return st;
  }
  size_t n = 0;
  wpub_t *pubs = calloc((pf ? pf->n_pubs : 0) + n_pubstrs + 1, sizeof *pubs);
  if (pubs == NULL) {
    kl_pubfile_free(pf);
    fprintf(stderr, "keyless witness sign: out of memory\n");
    return KL_EXIT_GENERAL;
  }
  for (size_t i = 0; pf && i < pf->n_pubs; i++, n++) {
    pubs[n].t = pf->pubs[i].data.time;
    pubs[n].h = pf->pubs[i].data.hash;
  }
  kl_pubfile_free(pf);
  for (size_t i = 0; i < n_pubstrs; i++, n++)
    if (kl_pubstr_decode(pubstrs[i], &pubs[n].t, &pubs[n].h, &e)) {
      fprintf(stderr, "keyless witness sign: --pub-str %s: %s\n", pubstrs[i], e.msg);
      free(pubs);
      return KL_EXIT_USAGE;
    }
  st = do_sign(dir, &x, pubs, n, out, &e);
  free(pubs);
  if (st == KL_EXIT_VERIFY) printf("REFUSED: %s\n", e.msg);
  else if (st != KL_EXIT_OK) fprintf(stderr, "keyless witness sign: %s\n", e.msg);
  return st;
}

/* --witness keys for add and show. */
static int load_keys(const cli_witness_t *w, kl_witkey_t **keys, const char *cmd) {
  kl_err_t e = {0};
  for (size_t i = 0; i < w->n; i++)
    if (kl_witkey_load_public(w->paths[i], &keys[i], &e)) {
      fprintf(stderr, "keyless witness %s: --witness %s\n", cmd, e.msg);
      while (i-- > 0) kl_witkey_free(keys[i]);
      return KL_EXIT_USAGE;
    }
  return KL_EXIT_OK;
}

/* The key of c's witness among keys[0..n), or NULL. */
static kl_witkey_t *key_of(kl_witkey_t **keys, size_t n, const kl_cosig_t *c) {
  for (size_t i = 0; i < n; i++)
    if (kl_imprint_eq(kl_witkey_id(keys[i]), &c->id)) return keys[i];
  return NULL;
}

static int cmd_add_show(int argc, char **argv, bool add) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'}, CLI_WITNESS_OPTIONS,
                                       {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *cmd = add ? "add" : "show", *out = NULL;
  cli_witness_t w = {0};
  kl_witkey_t *keys[CLI_WITNESS_MAX] = {0};
  kl_witfile_t acc = {0};
  kl_err_t e = {0};
  char hx[2 * KL_IMPRINT_MAX + 1];
  int c, st = KL_EXIT_OK;
  bool missing;
  optind = 1;
  while ((c = getopt_long(argc, argv, add ? "o:h" : "h", opts, NULL)) != -1) {
    if (c == 'o') out = optarg;
    else if (c == CLI_O_WITNESS) st = cli_witness_opt(&w, cmd, c, optarg);
    else if (c == 'h') {
      usage(stdout);
      return KL_EXIT_OK;
    } else {
      usage(stderr);
      return KL_EXIT_USAGE;
    }
    if (st) return st;
  }
  if ((add && (out == NULL || optind == argc)) || (!add && optind + 1 != argc)) {
    fprintf(stderr, "keyless witness %s: %s\n", cmd, add ? "give -o COSIGFILE and the files to merge" : "give one COSIGFILE");
    return KL_EXIT_USAGE;
  }
  if ((st = load_keys(&w, keys, cmd))) return st;
  if (add && (st = cli_witfile_read(out, &acc, &missing, &e))) goto done;
  for (int i = optind; i < argc && st == KL_EXIT_OK; i++) {
    kl_witfile_t f;
    if ((st = cli_witfile_read(argv[i], &f, &missing, &e)) == KL_EXIT_OK && missing) {
      kl_err_set(&e, KL_ENOTFOUND, "%s: no such file", argv[i]);
      st = KL_EXIT_IO;
    }
    for (size_t j = 0; st == KL_EXIT_OK && j < f.n; j++) {
      const kl_witpub_t *p = &f.pubs[j];
      if (!add) printf("publication %llu %s: %zu cosignatures\n", (unsigned long long)p->time,
                       kl_imprint_hex(&p->root, hx), p->n);
      for (size_t q = 0; st == KL_EXIT_OK && q < p->n; q++) {
        const kl_cosig_t *cs = &p->cosig[q];
        kl_witkey_t *k = key_of(keys, w.n, cs);
        int bad = k ? kl_witkey_verify(k, p->time, &p->root, cs, &e) : 0;
        if (!add) {
          printf("  witness %s %s: %s\n", kl_imprint_hex(&cs->id, hx),
                 cs->alg == KL_WITNESS_ED25519 ? "Ed25519" : "ECDSA-P256",
                 k == NULL ? "unchecked (no --witness key)" : bad ? "INVALID" : "valid");
          if (bad) st = KL_EXIT_VERIFY;
          continue;
        }
        if (w.n && k == NULL) continue; /* only the given witnesses' */
        if (bad) {
          kl_err_wrap(&e, "%s", argv[i]);
          st = KL_EXIT_VERIFY;
        } else if ((bad = kl_witfile_add(&acc, p->time, &p->root, cs, NULL, &e))) {
          kl_err_wrap(&e, "merging %s", argv[i]);
          st = bad == KL_ESTATE ? KL_EXIT_VERIFY : cli_exit_for(bad);
        }
      }
    }
    kl_witfile_free(&f);
  }
  if (add && st == KL_EXIT_OK && (st = cli_witfile_write(out, &acc, &e)) == KL_EXIT_OK)
    printf("wrote %s: %zu publications\n", out, acc.n);
done:
  if (st != KL_EXIT_OK && e.msg[0]) fprintf(stderr, "keyless witness %s: %s\n", cmd, e.msg);
  for (size_t i = 0; i < w.n; i++) kl_witkey_free(keys[i]);
  kl_witfile_free(&acc);
  return st;
}

int cmd_witness(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "init") == 0) return cmd_init(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "sign") == 0) return cmd_sign_pubs(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "add") == 0) return cmd_add_show(argc - 1, argv + 1, true);
  if (argc >= 2 && strcmp(argv[1], "show") == 0) return cmd_add_show(argc - 1, argv + 1, false);
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return KL_EXIT_OK;
  }
  fprintf(stderr, "keyless witness: %s\n", argc < 2 ? "give a subcommand: init, sign, add or show" : "unknown subcommand");
  usage(stderr);
  return KL_EXIT_USAGE;
}
