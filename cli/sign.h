/* keyless sign: what the parts of the command share (owned by the cli engineer).
 *
 *   cmd_sign.c    options, the plan (inputs, outputs, resume checks), the run
 *   sign_walk.c   inputs: files, directories (-r), output paths under -o DIR, the manifest
 *   sign_plan.c   hashing, the resume checks, --manifest
 *   sign_batch.c  the engine: gateways (failover or all), the configuration, local trees, PDUs
 *                 in flight on worker threads, retries with backoff, writing signatures
 *   sign_report.c one line per file (text or --json), the progress line, the final summary
 *
 * A file goes PENDING -> SIGNED, or is ALREADY signed (its signature verifies: kept), or
 * FAILED with a stable error code (docs/client.md lists them). */
#ifndef KL_CLI_SIGN_H
#define KL_CLI_SIGN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "keyless/err.h"
#include "keyless/hash.h"
#include "keyless/sig.h"

enum { SF_PENDING, SF_SIGNED, SF_ALREADY, SF_FAILED };

/* Stable error codes of the --json lines and the summary. */
#define SE_NETWORK "network"               /* no gateway could be reached / answered in time */
#define SE_AUTH "auth"                     /* the gateway refused the login (0x102) */
#define SE_HMAC "hmac"                     /* the answer's HMAC does not match the key */
#define SE_GW_STATUS "gateway_status"      /* the gateway answered with an error status */
#define SE_BAD_RESPONSE "bad_response"     /* the answer or its signature does not check */
#define SE_UNREADABLE "unreadable"         /* the input is missing or cannot be read */
#define SE_EXISTS_INVALID "exists_invalid" /* a signature file is there but does not verify */
#define SE_WRITE "write"                   /* the signature file cannot be written */
#define SE_INTERNAL "internal"             /* out of memory and the like */

typedef struct sign_file {
  char *path;        /* as given or found under a directory ("-" = standard input) */
  char *rel;         /* the name under -o DIR and in a manifest */
  char *out;         /* the signature file */
  bool is_hash;      /* ALG:HEX given on the command line */
  bool replace;      /* an existing signature file may be replaced (--force) */
  kl_imprint_t hash; /* the document hash */
  uint64_t size;     /* bytes hashed */
  int state;         /* SF_* */
  const char *code;  /* SE_* when FAILED */
  char *error;       /* the reason, for a person */
  bool retryable;    /* a later run may succeed (network, busy gateway) */
  uint64_t gw_status;   /* the gateway's status when code is SE_GW_STATUS, else 0 */
  uint64_t aggr_time;   /* signing time when SIGNED or ALREADY */
} sign_file_t;

/* Marks f FAILED (the message is copied). */
void sign_fail(sign_file_t *f, const char *code, bool retryable, uint64_t gw_status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- sign_walk.c ---- */

/* Adds an input: a file, '-' or ALG:HEX as is; a directory with recursive (every regular file
 * under it except *.ksig and our temporary files, in name order; rel relative to it), else an
 * error. Missing inputs are added too (they fail later, and the batch goes on). 0 or an exit
 * status after a message. */
int sign_add_input(sign_file_t **v, size_t *n, size_t *cap, const char *path, bool recursive);
/* Sets every out: DIR/REL.ksig under an existing directory out_dir (subdirectories are made
 * when written), out_file for a single input, else PATH.ksig. Refuses (usage) two inputs with
 * one output. 0 or an exit status after a message. */
int sign_plan_outputs(sign_file_t *v, size_t n, const char *out_dir, const char *out_file);
/* Writes the manifest (lines "HEX  REL", BagIt style, of the SIGNED-or-hashed files in v)
 * atomically to path. 0 or KL_E* with e set. */
int sign_write_manifest(const char *path, const sign_file_t *v, size_t n, kl_err_t *e);
/* mkdir -p of the directory part of path. */
int sign_mkdirs_for(const char *path, kl_err_t *e);

/* ---- sign_report.c ---- */

typedef struct sign_report {
  pthread_mutex_t mu;
  bool json, tty, progress_on, dump;
  size_t total, done, signed_n, already, failed;
  uint64_t total_bytes, done_bytes;
  double t0, last_draw;
  size_t hashed;     /* inputs hashed so far */
  const char *phase; /* "hashing", "signing" */
  bool line_shown;   /* a progress line is on the terminal */
  size_t drawn_done; /* what the last progress line said */
} sign_report_t;

double sign_now(void);
void sign_report_init(sign_report_t *r, bool json, bool progress, bool dump, size_t total, uint64_t bytes);
/* Reports one finished file (thread-safe): a text line (signed: stdout; failed: stderr) or a
 * JSON line on stdout; sig (may be NULL) is dumped with -d. */
void sign_report_file(sign_report_t *r, const sign_file_t *f, const kl_sig_t *sig);
/* Redraws the progress line if due (force: now). Thread-safe. */
void sign_report_progress(sign_report_t *r, const char *phase, bool force);
/* Clears the progress line and prints the summary on standard error (unless json: then a
 * final {"summary": ...} line on stdout). Returns the exit status: 0 when every file is
 * signed or already signed, else that of the first failure's kind. */
int sign_report_finish(sign_report_t *r, const sign_file_t *v, size_t n, bool nothing_sent);
/* The exit status for an error code. */
int sign_exit_for_code(const char *code);

/* ---- sign_plan.c (needs sign_opts_t below) ---- */
struct sign_opts;

/* Hashes every PENDING input with alg (one that cannot be read FAILS as SE_UNREADABLE) and,
 * unless manifest, looks at its signature file: with force it may be replaced; else one that
 * verifies for the file (internal policy) makes it ALREADY signed and one that does not makes
 * it FAIL as SE_EXISTS_INVALID. Every file decided here is reported. */
void sign_prepare(sign_file_t *v, size_t n, int alg, bool force, bool manifest, sign_report_t *rep);
/* --manifest: hashes v, writes the manifest and signs it (to out, or MANIFEST.ksig); the
 * summary; returns the exit status. */
int sign_manifest(sign_file_t *v, size_t n, const char *manifest, const char *out, int alg, bool force,
                  const struct sign_opts *o, sign_report_t *rep);

/* ---- sign_batch.c ---- */

typedef struct sign_gw {
  const char *url, *user, *key;
} sign_gw_t;

typedef struct sign_opts {
  sign_gw_t *gws;
  size_t n_gws;
  bool ha_all;          /* --ha all: every gateway at once, first valid answer wins */
  int hmac_alg, timeout_ms;
  double retry_for;     /* seconds a request is retried after its first failure */
  unsigned max_lvl;     /* the highest local tree (from --max-lvl, or the gateway's) */
  bool max_lvl_given;
  unsigned in_flight;   /* PDUs at once, 0: automatic */
  const uint8_t *meta;  /* --mdata value, NULL: none */
  size_t meta_len;
  bool quiet;           /* --json: notes go only into the lines */
} sign_opts_t;

/* Signs every PENDING file of v[0..n) and reports each (sign_report_file). Sets *sent when at
 * least one request went out. Returns 0, or an exit status for a failure before anything could
 * be done (out of memory). */
int sign_run(sign_file_t *v, size_t n, const sign_opts_t *o, sign_report_t *rep, bool *sent);

#endif
