/* keyless sign: what a person or a script sees -- one line per file, the progress line, the
 * summary and the exit status. Thread-safe: the engine's workers report as they finish. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sign.h"

double sign_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void sign_report_init(sign_report_t *r, bool json, bool progress, bool dump, size_t total, uint64_t bytes) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  r->json = json;
  r->tty = isatty(STDERR_FILENO) != 0;
  /* by default only on a terminal, for many files, when the lines go elsewhere */
  r->progress_on = progress || (total >= 16 && r->tty && !isatty(STDOUT_FILENO));
  r->dump = dump;
  r->total = total;
  r->total_bytes = bytes;
  r->t0 = sign_now();
}

static void clear_line(sign_report_t *r) {
  if (r->line_shown && r->tty) fputs("\r\033[K", stderr);
  r->line_shown = false;
}

static const char *state_str(int s) {
  switch (s) {
    case SF_SIGNED: return "signed";
    case SF_ALREADY: return "already_signed";
    case SF_FAILED: return "failed";
    default: return "pending";
  }
}

void sign_report_file(sign_report_t *r, const sign_file_t *f, const kl_sig_t *sig) {
  char t[64], hex[2 * KL_IMPRINT_MAX + 2], msg[KL_ERR_MSG_MAX * 2];
  pthread_mutex_lock(&r->mu);
  r->done++;
  r->done_bytes += f->size;
  if (f->state == SF_SIGNED) r->signed_n++;
  else if (f->state == SF_ALREADY) r->already++;
  else r->failed++;
  if (r->json) {
    cli_json_t j;
    json_begin(&j, stdout);
    json_obj(&j, NULL);
    json_str(&j, "file", f->path);
    json_str(&j, "status", state_str(f->state));
    if (f->out) json_str(&j, "signature", f->out);
    if (f->hash.len) json_imprint(&j, "document_hash", &f->hash);
    if (f->aggr_time) {
      json_u64(&j, "aggregation_time", f->aggr_time);
      json_str(&j, "aggregation_time_utc", cli_utc(f->aggr_time, t, sizeof t));
    }
    if (f->state == SF_FAILED) {
      json_str(&j, "error_code", f->code ? f->code : SE_INTERNAL);
      json_bool(&j, "retryable", f->retryable);
      if (f->gw_status) {
        snprintf(t, sizeof t, "0x%llX", (unsigned long long)f->gw_status);
        json_str(&j, "gateway_status", t);
      }
      json_str(&j, "error", f->error ? f->error : "");
    }
    json_end_obj(&j);
    json_finish(&j);
    fflush(stdout);
  } else if (f->state == SF_SIGNED || f->state == SF_ALREADY) {
    clear_line(r);
    printf("%s: %s at %s (%llu), %s:%s -> %s\n", f->path, f->state == SF_SIGNED ? "signed" : "already signed",
           cli_utc(f->aggr_time, t, sizeof t), (unsigned long long)f->aggr_time, kl_hash_name(f->hash.alg),
           kl_imprint_hex(&f->hash, hex) + 2, f->out);
    fflush(stdout);
  } else {
    clear_line(r);
    fprintf(stderr, "keyless sign: %s: %s\n", f->path, cli_printable(f->error ? f->error : "failed", msg, sizeof msg));
  }
  if (r->dump && sig) {
    clear_line(r);
    cli_sig_dump(stderr, f->out, sig);
  }
  pthread_mutex_unlock(&r->mu);
}

static void human_bytes(uint64_t b, char *buf, size_t cap) {
  if (b >= (1ull << 30)) snprintf(buf, cap, "%.1f GiB", (double)b / (double)(1ull << 30));
  else if (b >= (1ull << 20)) snprintf(buf, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
  else if (b >= 1024) snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
  else snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

void sign_report_progress(sign_report_t *r, const char *phase, bool force) {
  if (!r->progress_on) return;
  pthread_mutex_lock(&r->mu);
  double now = sign_now();
  bool changed = phase != r->phase, hashing = strcmp(phase, "hashing") == 0;
  size_t done = hashing ? r->hashed : r->done;
  r->phase = phase;
  if (changed) force = true;
  else if (r->line_shown && done == r->drawn_done && !r->tty) force = false, now = r->last_draw; /* nothing new */
  if (force || now - r->last_draw >= (r->tty ? 0.25 : 1.0)) {
    r->last_draw = now;
    double dt = now - r->t0;
    char by[32], tot[32], eta[32] = "";
    r->drawn_done = done;
    human_bytes(r->done_bytes, by, sizeof by);
    human_bytes(r->total_bytes, tot, sizeof tot);
    double rate = dt > 0.001 ? (double)r->signed_n / dt : 0;
    if (!hashing && done > 0 && done < r->total && dt > 0.5) {
      unsigned long left = (unsigned long)((double)(r->total - done) * dt / (double)done + 0.5);
      snprintf(eta, sizeof eta, ", ETA %lu:%02lu", left / 60, left % 60);
    }
    fprintf(stderr, "%s%s %zu/%zu files (%s of %s), %zu signed, %zu already, %zu failed, %.0f signatures/s%s%s",
            r->tty ? "\r\033[K" : "", hashing ? phase : done < r->total ? "signing" : r->failed ? "done" : "signed", done, r->total, by, tot, r->signed_n, r->already, r->failed, rate, eta,
            r->tty ? "" : "\n");
    fflush(stderr);
    r->line_shown = true;
  }
  pthread_mutex_unlock(&r->mu);
}

int sign_exit_for_code(const char *code) {
  if (code == NULL) return KL_EXIT_GENERAL;
  if (strcmp(code, SE_NETWORK) == 0) return KL_EXIT_NETWORK;
  if (strcmp(code, SE_AUTH) == 0) return KL_EXIT_AUTH;
  if (strcmp(code, SE_HMAC) == 0) return KL_EXIT_HMAC;
  if (strcmp(code, SE_GW_STATUS) == 0) return KL_EXIT_AGGREGATOR;
  if (strcmp(code, SE_BAD_RESPONSE) == 0) return KL_EXIT_FORMAT;
  if (strcmp(code, SE_UNREADABLE) == 0 || strcmp(code, SE_WRITE) == 0) return KL_EXIT_IO;
  if (strcmp(code, SE_EXISTS_INVALID) == 0) return KL_EXIT_VERIFY;
  return KL_EXIT_GENERAL;
}

int sign_report_finish(sign_report_t *r, const sign_file_t *v, size_t n, bool nothing_sent) {
  pthread_mutex_lock(&r->mu);
  clear_line(r);
  int st = KL_EXIT_OK;
  size_t retryable = 0;
  const char *codes[16];
  size_t counts[16], nc = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i].state == SF_SIGNED || v[i].state == SF_ALREADY) continue;
    const char *c = v[i].state == SF_FAILED && v[i].code ? v[i].code : SE_INTERNAL;
    if (st == KL_EXIT_OK) st = sign_exit_for_code(c);
    if (v[i].retryable) retryable++;
    size_t k = 0;
    while (k < nc && strcmp(codes[k], c) != 0) k++;
    if (k == nc && nc < 16) {
      codes[nc] = c;
      counts[nc++] = 0;
    }
    if (k < nc) counts[k]++;
  }
  size_t failed = 0;
  for (size_t k = 0; k < nc; k++) failed += counts[k];
  if (n > 1 || failed) {
    double dt = sign_now() - r->t0;
    fprintf(stderr, "keyless sign: %zu file%s: %zu signed, %zu already signed, %zu not signed", n, n == 1 ? "" : "s",
            r->signed_n, r->already, failed);
    if (failed) {
      fprintf(stderr, " (");
      for (size_t k = 0; k < nc; k++) fprintf(stderr, "%s%s: %zu", k ? ", " : "", codes[k], counts[k]);
      if (retryable) fprintf(stderr, "; %zu retryable", retryable);
      fputc(')', stderr);
    }
    fprintf(stderr, " in %.1f s%s\n", dt, failed && nothing_sent ? "; nothing was sent" : "");
  }
  fflush(stderr);
  pthread_mutex_unlock(&r->mu);
  return st;
}
