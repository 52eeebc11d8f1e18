/* keyless devpki: the development PKI (pki.h): a publications CA with the publications and
 * calendar-auth signing certificates, and the cluster CA that issues and revokes node
 * certificates for mutual TLS. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keyless/pki.h"

#define MAX_NAMES 32

static const char usage_text[] =
    "usage: keyless devpki -o DIR [--email ADDRESS] [--days N] [--nodes ROLE:ID,...] [--wrap-keys PASSFILE]\n"
    "                      [--profile default|sm2]\n"
    "       keyless devpki issue -o DIR ROLE ID [--days N] [--not-before UNIXTIME] [--not-after UNIXTIME]\n"
    "                            [--dns NAME]... [--ip ADDR]... [--name BASENAME]\n"
    "       keyless devpki revoke -o DIR CERT.pem\n"
    "       keyless devpki crl -o DIR\n";

static const char help_text[] =
    "\nFor development only: no CA or node key is encrypted, and nothing here ever replaces a file.\n"
    "\n"
    "keyless devpki -o DIR   makes a new PKI in DIR:\n"
    "  DIR/ca.crt                   publications trust anchor (-V of verify and pubfile)\n"
    "  DIR/publications.{crt,key}   signs the publications file (subject E=ADDRESS)\n"
    "  DIR/calendar-auth.{crt,key}  signs calendar authentication records (the core's [calendar])\n"
    "  DIR/cluster-ca.crt           the cluster CA: what nodes trust for mutual TLS\n"
    "  DIR/crl.pem                  the cluster CA's CRL, valid 30 days\n"
    "  DIR/nodes/                   node certificates and keys\n"
    "  DIR/offline/ (0700)          the CA keys, serial and revoked list: never give them to a node\n"
    "  --email ADDRESS   the publications signer's address (default publications@keyless.invalid)\n"
    "  --days N          validity of the CAs and signing certificates, 1..36500 (default 3650)\n"
    "  --nodes LIST      also issues node certificates (valid as long as the CA), e.g.\n"
    "                    core:1,core:2,core:3,aggregator:1,gateway:1,extender:1,admin:operator\n"
    "  --wrap-keys PASSFILE  writes the two signing keys wrapped (encrypted PKCS#8) under the passphrase\n"
    "                    in PASSFILE (an absolute path, away from DIR), made 0600 with a random one if\n"
    "                    missing; the core loads file:DIR/calendar-auth.key?passphrase-source=file:PASSFILE\n"
    "                    (docs/keys.md). Without it they are clear (the core needs allow_clear_key = yes)\n"
    "  --profile P       default: the publications CA and signing keys are RSA 2048 (SHA-256), what\n"
    "                    every KSI client verifies; sm2: they are SM2 and sign SM2-with-SM3 (China's\n"
    "                    national algorithms; KSI clients may not follow: docs/profiles.md). Node\n"
    "                    certificates are EC P-256 in both\n"
    "\n"
    "keyless devpki issue -o DIR ROLE ID   writes DIR/nodes/ROLE-ID.{crt,key} (key 0600), signed by\n"
    "  the cluster CA, naming keyless://ROLE/ID in its subjectAltName:\n"
    "  ROLE              core, aggregator, gateway, extender (server and client) or admin (client)\n"
    "  ID                1 to 63 of A-Z a-z 0-9 . _ -; for core the Raft member id (1, 2, ...)\n"
    "  --days N          validity, 1..36500 (default 365; never past the cluster CA's)\n"
    "  --not-before T    start of validity, unix time (default an hour ago)\n"
    "  --not-after T     end of validity, unix time, as given (tests: expired or future certs)\n"
    "  --dns NAME        an extra DNS subjectAltName (repeatable; nodes always have localhost)\n"
    "  --ip ADDR         an extra IP subjectAltName (repeatable; nodes always have 127.0.0.1, ::1)\n"
    "  --name BASENAME   writes DIR/nodes/BASENAME.{crt,key} instead\n"
    "\n"
    "keyless devpki revoke -o DIR CERT.pem   adds CERT's serial to DIR/offline/revoked and\n"
    "  rewrites DIR/crl.pem (nodes read it again on SIGHUP)\n"
    "keyless devpki crl -o DIR   rewrites DIR/crl.pem for another 30 days\n";

static int fail(int r, const kl_err_t *e) {
  fprintf(stderr, "keyless devpki: %s\n", e->msg);
  return r == KL_ESTATE || r == KL_EINVAL || r == KL_ERANGE ? KL_EXIT_USAGE : cli_exit_for(r);
}

static int usage(bool help) {
  fputs(usage_text, help ? stdout : stderr);
  if (help) {
    fputs(help_text, stdout);
    cli_exit_table(stdout);
  }
  return help ? KL_EXIT_OK : KL_EXIT_USAGE;
}

static bool parse_days(const char *s, int *out) {
  uint64_t v;
  if (!cli_parse_u64(s, &v) || v == 0 || v > 36500) {
    fprintf(stderr, "keyless devpki: --days wants 1..36500\n");
    return false;
  }
  *out = (int)v;
  return true;
}

static bool parse_time(const char *opt, const char *s, int64_t *out) {
  uint64_t v;
  if (!cli_parse_u64(s, &v) || v == 0 || v > (uint64_t)253402300799) { /* 9999-12-31 */
    fprintf(stderr, "keyless devpki: %s wants a unix time (seconds since 1970)\n", opt);
    return false;
  }
  *out = (int64_t)v;
  return true;
}

static int cmd_create(int argc, char **argv) {
  enum { O_EMAIL = 256, O_DAYS, O_NODES, O_WRAP, O_PROFILE };
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"email", required_argument, NULL, O_EMAIL},
                                       {"days", required_argument, NULL, O_DAYS},
                                       {"nodes", required_argument, NULL, O_NODES},
                                       {"wrap-keys", required_argument, NULL, O_WRAP},
                                       {"profile", required_argument, NULL, O_PROFILE},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL, *email = "publications@keyless.invalid", *nodes = NULL, *wrap = NULL, *profile = NULL;
  int days = 3650, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'o': dir = optarg; break;
      case O_EMAIL: email = optarg; break;
      case O_DAYS:
        if (!parse_days(optarg, &days)) return KL_EXIT_USAGE;
        break;
      case O_NODES: nodes = optarg; break;
      case O_WRAP: wrap = optarg; break;
      case O_PROFILE:
        if (strcmp(optarg, "default") != 0 && strcmp(optarg, "sm2") != 0) {
          fprintf(stderr, "keyless devpki: --profile wants default or sm2\n");
          return KL_EXIT_USAGE;
        }
        profile = optarg;
        break;
      case 'h': return usage(true);
      default: return KL_EXIT_USAGE;
    }
  }
  if (dir == NULL || optind != argc) return usage(false);
  kl_err_t e = {0};
  int r;
  if (nodes && (r = kl_devpki_check_nodes(nodes, &e))) return fail(r, &e); /* before anything is written */
  if ((r = kl_devpki_create_profile(dir, email, days, wrap, profile, &e)) || (nodes && (r = kl_devpki_issue_nodes(dir, nodes, days, &e))))
    return fail(r, &e);
  printf("development PKI written to %s (NOT FOR PRODUCTION)\n"
         "  trust anchor: %s/ca.crt   constraint: --cnstr E=%s\n"
         "  cluster CA: %s/cluster-ca.crt   CRL: %s/crl.pem   CA keys: %s/offline/ (never on a node)\n",
         dir, dir, email, dir, dir, dir);
  if (nodes) printf("  node certificates for %s in %s/nodes/\n", nodes, dir);
  if (wrap) printf("  signing keys wrapped under the passphrase in %s\n", wrap);
  return KL_EXIT_OK;
}

static int cmd_issue(int argc, char **argv) {
  enum { O_DAYS = 256, O_NB, O_NA, O_DNS, O_IP, O_NAME };
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"days", required_argument, NULL, O_DAYS},
                                       {"not-before", required_argument, NULL, O_NB},
                                       {"not-after", required_argument, NULL, O_NA},
                                       {"dns", required_argument, NULL, O_DNS},
                                       {"ip", required_argument, NULL, O_IP},
                                       {"name", required_argument, NULL, O_NAME},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL, *dns[MAX_NAMES], *ips[MAX_NAMES];
  kl_devpki_issue_opts_t o = {0};
  int c;
  o.dns = dns;
  o.ips = ips;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'o': dir = optarg; break;
      case O_DAYS:
        if (!parse_days(optarg, &o.days)) return KL_EXIT_USAGE;
        break;
      case O_NB:
        if (!parse_time("--not-before", optarg, &o.not_before)) return KL_EXIT_USAGE;
        break;
      case O_NA:
        if (!parse_time("--not-after", optarg, &o.not_after)) return KL_EXIT_USAGE;
        break;
      case O_DNS:
      case O_IP:
        if ((c == O_DNS ? o.n_dns : o.n_ips) == MAX_NAMES) {
          fprintf(stderr, "keyless devpki: at most %d --dns and %d --ip\n", MAX_NAMES, MAX_NAMES);
          return KL_EXIT_USAGE;
        }
        if (c == O_DNS) dns[o.n_dns++] = optarg;
        else ips[o.n_ips++] = optarg;
        break;
      case O_NAME: o.name = optarg; break;
      case 'h': return usage(true);
      default: return KL_EXIT_USAGE;
    }
  }
  if (dir == NULL || argc - optind != 2) return usage(false);
  kl_err_t e = {0};
  kl_devpki_issued_t out;
  int r = kl_devpki_issue(dir, argv[optind], argv[optind + 1], &o, &out, &e);
  if (r) return fail(r, &e);
  printf("issued %s (key %s): keyless://%s/%s, serial %s\n", out.crt, out.key, argv[optind], argv[optind + 1], out.serial);
  return KL_EXIT_OK;
}

static int cmd_revoke_or_crl(int argc, char **argv, bool revoke) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'o': dir = optarg; break;
      case 'h': return usage(true);
      default: return KL_EXIT_USAGE;
    }
  }
  if (dir == NULL || argc - optind != (revoke ? 1 : 0)) return usage(false);
  kl_err_t e = {0};
  bool already = false;
  int r = revoke ? kl_devpki_revoke(dir, argv[optind], &already, &e) : kl_devpki_crl(dir, &e);
  if (r) return fail(r, &e);
  if (revoke) printf("%s %s; %s/crl.pem rewritten\n", argv[optind], already ? "was already revoked" : "revoked", dir);
  else printf("%s/crl.pem rewritten, valid 30 days\n", dir);
  return KL_EXIT_OK;
}

int cmd_devpki(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "issue") == 0) return cmd_issue(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "revoke") == 0) return cmd_revoke_or_crl(argc - 1, argv + 1, true);
  if (argc >= 2 && strcmp(argv[1], "crl") == 0) return cmd_revoke_or_crl(argc - 1, argv + 1, false);
  return cmd_create(argc, argv);
}
