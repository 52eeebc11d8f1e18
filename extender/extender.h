/* keyless-extender: internal interfaces of the daemon.
 *
 *   ext_config.c   the configuration keys and their checks
 *   ext_service.c  one request PDU in, one response PDU out (calendar + users; no sockets)
 *   ext_pubfile.c  the publications file, re-read when it changes
 *   ext_daemon.c   the servers, handlers, metrics and signals on a libuv loop
 *   main.c         arguments and wiring
 */
#ifndef KL_EXTENDER_H
#define KL_EXTENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "keyless/calendar.h"
#include "keyless/config.h"
#include "keyless/err.h"
#include "keyless/metrics.h"
#include "keyless/net.h"
#include "keyless/tls.h"
#include "keyless/users.h"

/* ---- configuration (deploy/extender.conf documents every key) ---- */

typedef struct ext_config {
  char *http_listen, *tcp_listen, *admin_listen;
  char *calendar_dir;
  char *users_file;
  char *publications_file;
  char *upstream;       /* a core node's replication port; "" = fed by another process */
  int64_t genesis;      /* with upstream: the genesis of a calendar created here (0: none) */
  char *calendar_auth_cert; /* PEM file of the trusted calendar-auth certificates ("" = none) */
  bool insecure;        /* accept batches without an authentication record */
  uint64_t max_lag_ms;  /* stop serving when the replica lags more than this (0: never) */
  /* derived: the certificates of calendar_auth_cert, DER */
  uint8_t **auth_ders;
  size_t *auth_lens;
  size_t n_auth;
  uint64_t max_pdu_size, max_header_size, idle_timeout_ms, write_watermark, shutdown_timeout_ms;
  int64_t max_connections, max_inflight, max_requests;
  int64_t max_connections_per_address, rate_per_address;
  char *https_listen, *https_cert, *https_key; /* https for clients ("" = off; cert/key: the [tls] ones) */
  kl_tls_settings_t tls; /* [tls]: this extender's certificate towards the core (with upstream) */
  char *path;
} ext_config_t;

/* Loads and validates path into cfg (zeroed first); free with ext_config_free. */
int ext_config_load(const char *path, ext_config_t *cfg, kl_err_t *e);
void ext_config_free(ext_config_t *cfg);
void ext_config_limits(const ext_config_t *cfg, kl_net_limits_t *lim);

/* ---- the service: PDU in, PDU out ---- */

typedef struct ext_ctx {
  kl_cal_t *cal;            /* NULL: the calendar cannot be opened (status 0x201) */
  const char *unsynced;     /* non-NULL: the replica cannot be trusted now, why (status 0x200) */
  const kl_users_t *users;
  uint64_t max_requests;    /* extension requests in one PDU */
  uint64_t now;             /* UNIX seconds, for "in the future" */
} ext_ctx_t;

typedef struct ext_outcome {
  uint64_t status;     /* 0, or the PDU-level error status sent */
  size_t n_requests;   /* extension requests answered (each with its own status) */
  bool config;         /* the configuration was sent */
  bool not_a_pdu;      /* the input is not a KSI PDU at all: a stream should be closed */
  char login[64];      /* as sent (cut), "" if unknown */
  char message[256];   /* why the PDU or the first failed request was refused */
} ext_outcome_t;

/* Called once per extension request with its status (for metrics). */
typedef void (*ext_status_fn)(void *arg, uint64_t status);

/* Answers one request PDU. *resp (caller frees) is always set on return 0: a signed 0x321, or
 * an unsigned error-only 0x321 when the request cannot be authenticated or parsed. Nonzero only
 * when not even an error PDU could be built (out of memory). */
int ext_handle(const ext_ctx_t *ctx, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
               ext_outcome_t *out, ext_status_fn count, void *count_arg);

/* ---- the publications file ---- */

typedef struct ext_pubfile {
  char *path;            /* NULL: not configured */
  uint8_t *data;         /* the last good copy, or NULL */
  size_t len;
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime; /* of the copy we hold */
  bool failed;           /* the last attempt failed (logged once) */
} ext_pubfile_t;

int ext_pubfile_init(ext_pubfile_t *pf, const char *path, kl_err_t *e);
void ext_pubfile_free(ext_pubfile_t *pf);
/* The current file (re-read if it changed). *data valid until the next call. KL_ENOTFOUND
 * when not configured; another code when no good copy could be read. */
int ext_pubfile_get(ext_pubfile_t *pf, const uint8_t **data, size_t *len, kl_err_t *e);

/* ---- the daemon ---- */

typedef struct extender extender_t;

/* Opens the calendar (or keeps trying), loads the users, starts the servers and signal
 * handlers on loop. On failure everything started is being closed: run the loop to let it
 * finish, then extender_free. */
int extender_start(uv_loop_t *loop, const ext_config_t *cfg, extender_t **out, kl_err_t *e);
/* Graceful stop (what SIGTERM does): the loop returns once every handle is closed. */
void extender_stop(extender_t *x);
/* After the loop has returned. */
void extender_free(extender_t *x);

#endif
