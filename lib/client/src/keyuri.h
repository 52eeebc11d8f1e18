/* Internal: private signing keys named by URI (docs/keys.md). Owner: keyuri.c; used by pki.c
 * (the core's calendar-auth key) and pubfile.c (the publications key).
 *
 *   pkcs11:token=T;object=O[;id=%01][;type=private]?module-path=/path/module.so&pin-source=SRC
 *       a key in a PKCS#11 token (RFC 7512), used through OpenSSL's pkcs11 engine (libp11,
 *       Debian's libengine-pkcs11-openssl). module-path may instead come from
 *       $KEYLESS_PKCS11_MODULE; the PIN from pin-source or $KEYLESS_PKCS11_PIN. pin-value is
 *       refused: a PIN never sits in a configuration file or on a command line.
 *   file:PATH[?passphrase-source=SRC]  or a plain PATH (no query)
 *       a PEM private key; a wrapped (encrypted PKCS#8) key is unwrapped with the passphrase of
 *       SRC. A clear key is refused unless the caller allows it (KL_KEY_ALLOW_CLEAR).
 *   SRC (a secret's source): file:PATH or an absolute PATH (not readable by others),
 *       env:NAME (an environment variable), credential:NAME ($CREDENTIALS_DIRECTORY/NAME,
 *       systemd's LoadCredential=/LoadCredentialEncrypted=).
 *
 * Threads: kl_key_load may be called from several threads (the engine is set up once under a
 * lock). Memory: the EVP_PKEY is the caller's (EVP_PKEY_free); secrets are cleansed. */
#ifndef KL_KEYURI_H
#define KL_KEYURI_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#include "keyless/err.h"
#include "keyless/pki.h"

enum { KL_KEYURI_FILE = 1, KL_KEYURI_PKCS11 = 2 };

typedef struct kl_keyuri {
  int kind;
  char path[1024];   /* FILE: the key file */
  char secret[1024]; /* FILE: passphrase-source; PKCS11: pin-source; "" when none given */
  char module[1024]; /* PKCS11: module-path ("" when none given) */
  char token[256], object[256]; /* PKCS11, percent-decoded ("" when absent) */
  char id[256];                  /* PKCS11, as written (percent-encoded: an id may hold 0x00) */
  char engine_uri[1024]; /* PKCS11: the path part as libp11 takes it, with type=private */
} kl_keyuri_t;

/* Parses a key URI. KL_EINVAL naming what was wrong. */
int kl_keyuri_parse(const char *uri, kl_keyuri_t *out, kl_err_t *e);

/* Reads a secret from SRC (see above) into buf (NUL-terminated, one trailing newline
 * dropped). KL_EINVAL for a bad SRC or an empty secret, KL_EIO/KL_ENOTFOUND naming the file,
 * KL_EPKI for a secret file that others may read. */
int kl_key_secret_read(const char *src, char *buf, size_t cap, kl_err_t *e);

/* Loads the private key named by uri; what names it in errors ("calendar-auth key").
 * flags: KL_KEY_ALLOW_CLEAR accepts a clear key file. *wrapped (may be NULL) tells whether the
 * key was protected (wrapped or in a token). */
int kl_key_load(const char *uri, const char *what, unsigned flags, EVP_PKEY **out, bool *wrapped, kl_err_t *e);

/* kl_keyuri_same is declared in keyless/pki.h. */

#endif
