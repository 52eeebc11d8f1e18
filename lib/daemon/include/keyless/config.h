/* keyless: INI configuration files with declared, validated keys (DESIGN.md §5).
 *
 * A daemon declares its keys in a table (section, name, type, default, range, optional check)
 * that maps each key to a field of its own config struct; kl_cfg_load() fills the struct from
 * the defaults and the file, and validates every value, default or given. Every problem is
 * reported with the file, the line and the key:
 *
 *   extender.conf:7: [limits] max_body = "1T": 1099511627776 is above the maximum 65539
 *
 * Rules: unknown sections and keys are errors (a typo must not silently fall back to a
 * default); a key given twice is an error; a key with a NULL default is required. Lines may be
 * indented; comments start with '#' or ';' at the start of a line, or " ;" after a value.
 * Parsing is done by inih (Debian's libinih), lines at most about 200 characters.
 *
 * Ownership: the struct must start zeroed. KL_CFG_STR fields become malloc'd strings owned by
 * the struct; release them with kl_cfg_free() (also after a failed load: fields are always left
 * freeable). The key table must outlive the calls.
 */
#ifndef KEYLESS_CONFIG_H
#define KEYLESS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kl_cfg_type {
  KL_CFG_STR,      /* char *: the value as written ("" allowed unless a check refuses it) */
  KL_CFG_INT,      /* int64_t */
  KL_CFG_BOOL,     /* bool: yes/no, true/false, on/off, 1/0 */
  KL_CFG_SIZE,     /* uint64_t bytes: 65539, 64k, 16M, 1G (k, M, G are powers of 1024) */
  KL_CFG_DURATION, /* uint64_t milliseconds: 250ms, 30s, 5m, 1h; a bare number is seconds */
} kl_cfg_type_t;

/* A check runs after conversion, on every value (default or given). field points at the
 * converted value in the struct. Returns 0, or nonzero after writing a short reason to msg. */
typedef int (*kl_cfg_check_fn)(const void *field, char *msg, size_t msg_size);

typedef struct kl_cfg_key {
  const char *section; /* "" for keys before any [section] */
  const char *name;
  kl_cfg_type_t type;
  size_t offset;         /* of the field in the daemon's struct (offsetof) */
  const char *def;       /* default, written as in a file; NULL: the key is required */
  int64_t min, max;      /* INT, SIZE, DURATION: inclusive range; min == max == 0: any */
  kl_cfg_check_fn check; /* NULL: none */
} kl_cfg_key_t;

/* Loads path (at most 1 MiB) into out. On failure e holds the first problem and, when there
 * are more, "(and N more problems)"; out's fields are left freeable. */
KL_API int kl_cfg_load(const char *path, const kl_cfg_key_t *keys, size_t n_keys, void *out,
                       kl_err_t *e);
/* The same from text in memory; name stands for the file in messages. */
KL_API int kl_cfg_load_string(const char *name, const char *text, const kl_cfg_key_t *keys,
                              size_t n_keys, void *out, kl_err_t *e);
/* Frees the KL_CFG_STR fields and sets them to NULL. */
KL_API void kl_cfg_free(const kl_cfg_key_t *keys, size_t n_keys, void *out);

/* Converters (also used for command-line values). 0 or KL_EFORMAT / KL_ERANGE. */
KL_API int kl_cfg_parse_size(const char *s, uint64_t *out);
KL_API int kl_cfg_parse_duration_ms(const char *s, uint64_t *out);
KL_API int kl_cfg_parse_bool(const char *s, bool *out);

#ifdef __cplusplus
}
#endif
#endif
