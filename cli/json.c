/* A small streaming JSON writer for --json output. */
#include <inttypes.h>

#include "cli.h"

void json_begin(cli_json_t *j, FILE *f) {
  j->f = f;
  j->depth = 0;
  j->first[0] = true;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid UTF-8. */
static size_t utf8_len(const unsigned char *p) {
  if (p[0] < 0x80) return 1;
  size_t n = p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 && p[0] < 0xE0 ? 2 : 0;
  if (n == 0) return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  if (n == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0; /* overlong, surrogate */
  if (n == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;
  return n;
}

/* Strings from signatures are peer data: invalid UTF-8 becomes U+FFFD, so the output is
 * always valid JSON. */
static void put_string(FILE *f, const char *v) {
  if (v == NULL) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p >= 0x80) {
      size_t n = utf8_len(p);
      if (n == 0) {
        fputs("\\ufffd", f);
      } else {
        fwrite(p, 1, n, f);
        p += n - 1;
      }
      continue;
    }
    switch (*p) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      default:
        if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
  }
  fputc('"', f);
}

/* Writes the comma before a member or element, and the member's key. */
static void sep(cli_json_t *j, const char *key) {
  if (!j->first[j->depth]) fputc(',', j->f);
  j->first[j->depth] = false;
  if (key != NULL) {
    put_string(j->f, key);
    fputc(':', j->f);
  }
}

static void open(cli_json_t *j, const char *key, char c) {
  sep(j, key);
  fputc(c, j->f);
  if (j->depth < 31) j->depth++;
  j->first[j->depth] = true;
}

void json_obj(cli_json_t *j, const char *key) { open(j, key, '{'); }
void json_arr(cli_json_t *j, const char *key) { open(j, key, '['); }

void json_end_obj(cli_json_t *j) {
  if (j->depth > 0) j->depth--;
  fputc('}', j->f);
}

void json_end_arr(cli_json_t *j) {
  if (j->depth > 0) j->depth--;
  fputc(']', j->f);
}

void json_str(cli_json_t *j, const char *key, const char *v) {
  sep(j, key);
  put_string(j->f, v);
}

void json_u64(cli_json_t *j, const char *key, uint64_t v) {
  sep(j, key);
  fprintf(j->f, "%" PRIu64, v);
}

void json_bool(cli_json_t *j, const char *key, bool v) {
  sep(j, key);
  fputs(v ? "true" : "false", j->f);
}

void json_hex(cli_json_t *j, const char *key, const uint8_t *p, size_t n) {
  sep(j, key);
  fputc('"', j->f);
  for (size_t i = 0; i < n; i++) fprintf(j->f, "%02x", p[i]);
  fputc('"', j->f);
}

void json_imprint(cli_json_t *j, const char *key, const kl_imprint_t *imp) {
  char hex[2 * KL_IMPRINT_MAX + 1];
  sep(j, key);
  fprintf(j->f, "\"%s:%s\"", kl_hash_name(imp->alg) ? kl_hash_name(imp->alg) : "?",
          kl_imprint_hex(imp, hex) + 2);
}

void json_finish(cli_json_t *j) { fputc('\n', j->f); }
