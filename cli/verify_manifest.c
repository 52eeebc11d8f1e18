/* keyless verify --manifest: files checked against a signed BagIt-style manifest (lines
 * "HEX  PATH", as keyless sign --manifest writes them). The caller has verified the manifest's
 * signature with the manifest as the document; here each file's hash must be its line's. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

#define MANIFEST_MAX (256u << 20)

/* The hex of path's line in the manifest text, or NULL. */
static const char *find_line(const char *text, size_t len, const char *path, size_t *hexlen) {
  size_t pl = strlen(path);
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    const char *sp = memchr(p, ' ', (size_t)(le - p));
    if (sp && le - sp >= 2 && sp[1] == ' ' && (size_t)(le - (sp + 2)) == pl && memcmp(sp + 2, path, pl) == 0) {
      *hexlen = (size_t)(sp - p);
      return p;
    }
    p = le + 1;
  }
  return NULL;
}

int cli_verify_manifest(const char *manifest, const char *base, int alg, char *const *files, size_t n, bool json) {
  uint8_t *text = NULL;
  size_t len = 0;
  kl_err_t e = {0};
  int st = KL_EXIT_OK;
  if (cli_read_file(manifest, MANIFEST_MAX, &text, &len, &e)) {
    fprintf(stderr, "keyless verify: %s\n", e.msg);
    return KL_EXIT_IO;
  }
  for (size_t i = 0; i < n; i++) {
    const char *rel = files[i];
    while (rel[0] == '.' && rel[1] == '/') rel += 2;
    size_t hl = 0;
    const char *hex = find_line((const char *)text, len, rel, &hl);
    char path[4096], got[2 * KL_IMPRINT_MAX + 2];
    const char *verdict = "OK", *why = "in the signed manifest";
    int fst = KL_EXIT_OK;
    kl_imprint_t h;
    snprintf(path, sizeof path, "%s%s%s", base ? base : "", base ? "/" : "", rel);
    if (hex == NULL) {
      verdict = "FAIL", why = "not in the manifest", fst = KL_EXIT_VERIFY;
    } else if (cli_hash_file(path, alg, &h, &e)) {
      verdict = "ERROR", why = e.msg, fst = KL_EXIT_IO;
    } else {
      kl_imprint_hex(&h, got);
      if (hl != strlen(got + 2) || strncasecmp(hex, got + 2, hl) != 0)
        verdict = "FAIL", why = "its hash differs from the manifest's", fst = KL_EXIT_VERIFY;
    }
    if (json) {
      cli_json_t j;
      json_begin(&j, stdout);
      json_obj(&j, NULL);
      json_str(&j, "file", files[i]);
      json_str(&j, "manifest_result", verdict);
      json_str(&j, "message", why);
      json_end_obj(&j);
      json_finish(&j);
    } else {
      printf("%s: %s (%s)\n", files[i], verdict, why);
    }
    if (st == KL_EXIT_OK) st = fst;
  }
  free(text);
  return st;
}
