/* keyless: keys and certificates. The calendar authentication record signer (KSI-FORMAT.md
 * §6.5) and the development PKI that makes a local network work out of the box: the
 * publications CA and signing keys, and the cluster CA that issues node certificates for mutual
 * TLS between nodes (DESIGN.md §3a).
 *
 * Long-term trust never depends on these keys: once a signature is extended to a publication,
 * verification is hashing plus a comparison with the published string.
 *
 * Threads: a kl_calauth_t belongs to one thread at a time; the kl_devpki_* calls lock the PKI
 * directory (flock) and may run in several processes. Memory: kl_calauth_free releases the
 * signer and its certificate DER; signatures go into the caller's kl_buf_t. */
#ifndef KEYLESS_PKI_H
#define KEYLESS_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/buf.h"
#include "keyless/err.h"
#include "keyless/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Signs calendar roots into calendar authentication records (0x805). Holds a private key and
 * its certificate (PEM files). Thread-safe for concurrent kl_calauth_sign calls. */
typedef struct kl_calauth kl_calauth_t;

/* The signing key is named by URI (docs/keys.md): pkcs11:token=...;object=...?module-path=...&
 * pin-source=file:PATH (an HSM), file:PATH?passphrase-source=SRC (a wrapped key: encrypted
 * PKCS#8) or a plain PATH. A clear key file is refused (KL_EPKI) unless flags has
 * KL_KEY_ALLOW_CLEAR (development). A wrong passphrase is KL_EAUTH; KL_EINVAL names a bad URI. */
#define KL_KEY_ALLOW_CLEAR 1u
KL_API int kl_calauth_open(const char *cert_pem, const char *key_uri, unsigned flags, kl_calauth_t **out, kl_err_t *e);
/* kl_calauth_open with KL_KEY_ALLOW_CLEAR (tests and development tools). */
KL_API int kl_calauth_load(const char *cert_pem, const char *key_pem, kl_calauth_t **out, kl_err_t *e);
/* Sets *same when the two certificates (PEM files) hold the same public key: a calendar-auth
 * key must never be a TLS key. */
/* True when two key URIs name the same key location: the same file (device and inode, or the
 * same path when one does not exist) or the same PKCS#11 token object. */
KL_API bool kl_keyuri_same(const char *a, const char *b);
KL_API int kl_cert_same_key(const char *cert_a, const char *cert_b, bool *same, kl_err_t *e);
KL_API void kl_calauth_free(kl_calauth_t *ca);
/* Appends a whole 0x805 TLV for publication data (time, root): the data element as KSI writes
 * it (0x10 with the F flag, canonical), signed with sha256WithRSAEncryption (ECDSA-SHA256 for
 * EC keys, SM2-with-SM3 for SM2 keys: docs/profiles.md), and the certificate id (CRC-32 of the
 * certificate's DER). */
KL_API int kl_calauth_sign(kl_calauth_t *ca, uint64_t time, const kl_imprint_t *root, kl_buf_t *out, kl_err_t *e);
/* The certificate's DER (valid until kl_calauth_free), for listing in a publications file. */
KL_API const uint8_t *kl_calauth_cert_der(const kl_calauth_t *ca, size_t *len);

/* ---- the development PKI (lib/src/devpki.c) ----
 *
 * Two CAs in one directory DIR, both self-signed and marked DEVELOPMENT:
 *   the publications CA ("keyless DEVELOPMENT CA", RSA 2048): the trust anchor of the
 *     publications file; it certifies the two signing keys. Signing keys are never transport
 *     keys: separate keys, separate files.
 *   the cluster CA ("keyless DEVELOPMENT cluster CA", EC P-256, CA:TRUE pathlen 0): what nodes
 *     trust for mutual TLS; it issues node certificates naming one role and id in a single
 *     subjectAltName URI "keyless://ROLE/ID" (ROLE core, aggregator, gateway, extender or admin;
 *     ID [A-Za-z0-9._-]{1,63}, for core the decimal Raft member id), subject CN "keyless ROLE ID"
 *     (cut to 61 characters and "..." past X.520's 64: the URI is the identity), O "keyless
 *     DEVELOPMENT", EC P-256, ecdsa-with-SHA256, CA:FALSE, keyUsage digitalSignature,
 *     extendedKeyUsage serverAuth+clientAuth (admin: clientAuth only); node roles also carry
 *     SAN IP:127.0.0.1, IP:::1 and DNS:localhost so https clients accept them on loopback.
 *
 * Files (certificates 0644, keys 0600):
 *   DIR/ca.crt                              the publications CA (trust anchor for -V)
 *   DIR/publications.crt, .key              signs the publications file; subject E=email
 *   DIR/calendar-auth.crt, .key             signs calendar authentication records
 *   DIR/cluster-ca.crt                      the cluster CA certificate (nodes trust this)
 *   DIR/crl.pem                             the cluster CA's CRL: lastUpdate now, nextUpdate
 *                                           +30 days; rewritten (atomically) on every issue,
 *                                           revoke and kl_devpki_crl
 *   DIR/nodes/NAME.crt, NAME.key            node certificates (kl_devpki_issue)
 *   DIR/offline/ (0700)                     what only the issuer reads, never a daemon:
 *     cluster-ca.key, ca.key                the two CA keys
 *     serial                                the next serial to issue, hex, one line
 *     revoked                               revoked serials, one "HEX UNIXTIME" line each
 * Issue and revoke hold an exclusive lock (flock) on DIR/offline/serial, so concurrent runs
 * on one DIR are serialised. Nothing here ever replaces a certificate or key file (KL_ESTATE).
 * Development only: the keys are not encrypted (but see kl_devpki_create_wrapped). */

/* Writes a new development PKI into dir (created if missing): every file above except
 * DIR/nodes/ contents, an empty CRL, serial 2 (1 is the cluster CA's). CAs and signing
 * certificates valid `days` (1..36500) days from an hour ago. KL_ESTATE naming the file if any
 * file of the layout (or a DIR/ca.key of the older layout) already exists; nothing is written
 * then. */
KL_API int kl_devpki_create(const char *dir, const char *email, int days, kl_err_t *e);
/* kl_devpki_create, but the two signing keys (publications.key, calendar-auth.key) are written
 * wrapped: encrypted PKCS#8 (AES-256-CBC, PBKDF2) under the passphrase in pass_file (an
 * absolute path), which is read if it exists (it must not be readable by others) or else made
 * (0600, 64 random hex digits). Load them as file:KEY?passphrase-source=file:PASS_FILE
 * (docs/keys.md). Keep pass_file away from DIR: the secret never sits next to the key. */
KL_API int kl_devpki_create_wrapped(const char *dir, const char *email, int days, const char *pass_file, kl_err_t *e);
/* kl_devpki_create_wrapped (pass_file may be NULL) in a signature profile: NULL or "default" as
 * above, or "sm2" (docs/profiles.md): the publications CA and both signing keys are SM2 and
 * every certificate they sign is SM2-with-SM3; the cluster CA and node keys stay EC P-256.
 * Another profile name is KL_EINVAL. */
KL_API int kl_devpki_create_profile(const char *dir, const char *email, int days, const char *pass_file,
                                    const char *profile, kl_err_t *e);

/* Options of kl_devpki_issue; all zero gives the defaults. Strings are only read during the
 * call. */
typedef struct kl_devpki_issue_opts {
  int days;           /* validity from not_before; 0: 365. Clamped to the cluster CA's notAfter */
  int64_t not_before; /* unix time; 0: an hour ago */
  int64_t not_after;  /* unix time, used as given (tests make expired certs); 0: from days */
  const char *const *dns; /* extra SAN DNS names (host names: letters, digits, '-', dots) */
  size_t n_dns;
  const char *const *ips; /* extra SAN IP addresses, IPv4 or IPv6 text */
  size_t n_ips;
  const char *name; /* file base name under DIR/nodes ([A-Za-z0-9._-], not starting with '.');
                       NULL: "ROLE-ID" */
} kl_devpki_issue_opts_t;

/* What kl_devpki_issue wrote. */
typedef struct kl_devpki_issued {
  char crt[1024], key[1024]; /* paths */
  char serial[48];           /* hex, as `openssl x509 -serial` prints it */
} kl_devpki_issued_t;

/* Issues a node certificate for ROLE/ID signed by DIR/offline/cluster-ca.key with the next
 * serial, writes DIR/nodes/NAME.crt and NAME.key (key 0600) and rewrites DIR/crl.pem. o and
 * out may be NULL. Errors: KL_EINVAL naming a bad role, id, name, DNS name or address;
 * KL_ERANGE for not_after <= not_before; KL_ESTATE if a file of that name exists (nothing
 * changed then); KL_ENOTFOUND if DIR has no cluster CA (a PKI from before it). */
KL_API int kl_devpki_issue(const char *dir, const char *role, const char *id, const kl_devpki_issue_opts_t *o,
                           kl_devpki_issued_t *out, kl_err_t *e);

/* Checks a node list "ROLE:ID,ROLE:ID,..." (e.g. "core:1,core:2,gateway:1,admin:operator"):
 * at most 256 entries, every role and id valid, no name twice. KL_EINVAL naming the entry. */
KL_API int kl_devpki_check_nodes(const char *list, kl_err_t *e);
/* Checks the whole list and that none of its files exist (KL_EINVAL / KL_ESTATE, nothing
 * issued), then issues each entry with the default name ROLE-ID, valid `days` (0: 365,
 * clamped to the CA) days. Stops at the first failure (entries before it stay). */
KL_API int kl_devpki_issue_nodes(const char *dir, const char *list, int days, kl_err_t *e);

/* Revokes a certificate issued by DIR's cluster CA: adds its serial to DIR/offline/revoked
 * (unless already there: *already is set then; already may be NULL) and rewrites DIR/crl.pem.
 * KL_EPKI if cert_pem was not issued by this cluster CA, KL_EINVAL for the CA itself. */
KL_API int kl_devpki_revoke(const char *dir, const char *cert_pem, bool *already, kl_err_t *e);

/* Rewrites DIR/crl.pem from DIR/offline/revoked (lastUpdate now, nextUpdate +30 days): run it
 * before the CRL of a long-lived development network expires. */
KL_API int kl_devpki_crl(const char *dir, kl_err_t *e);

#ifdef __cplusplus
}
#endif
#endif
