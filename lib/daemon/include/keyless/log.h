/* keyless: structured logging for the daemons (DESIGN.md §5).
 *
 * One line per event on stderr, key=value, journald-friendly:
 *
 *   ts=2026-11-22T03:04:05.123Z level=info prog=keyless-extender event=listen proto=http addr=127.0.0.1:8010
 *
 * The caller gives the event name and the rest of the pairs as a printf format. Values that may
 * hold spaces, quotes or control characters (peer addresses are safe; error messages and paths
 * are not) go through kl_log_q(), which quotes and escapes them into a caller buffer.
 *
 * The level and program name are process-wide; set them once at start, before any thread logs.
 * Each line is written with one write(2), so lines from several threads do not interleave.
 */
#ifndef KEYLESS_LOG_H
#define KEYLESS_LOG_H

#include <stddef.h>

#include "keyless/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { KL_LOG_DEBUG = 0, KL_LOG_INFO = 1, KL_LOG_WARN = 2, KL_LOG_ERROR = 3, KL_LOG_OFF = 4 };

#define KL_LOG_LINE_MAX 2048 /* longer lines are cut and end with "..." */

/* prog may be NULL (no prog= pair); the string must outlive all logging. */
KL_API void kl_log_init(const char *prog, int level);
KL_API void kl_log_set_level(int level);
KL_API int kl_log_get_level(void);
/* "debug", "info", "warn"/"warning", "error", "off" -> level, or -1. */
KL_API int kl_log_level_parse(const char *name);
KL_API const char *kl_log_level_name(int level);
KL_API int kl_log_enabled(int level);

/* Writes one line if level is enabled. fmt (may be NULL) gives the pairs after event=. */
KL_API void kl_log(int level, const char *event, const char *fmt, ...) KL_PRINTF(3, 4);

/* s as a log value: unchanged if it is non-empty and holds only [A-Za-z0-9._:/@+,-], otherwise
 * in double quotes with \" \\ \n \t and \xNN escapes; cut to fit buf (at least 8 bytes).
 * Returns buf. NULL prints as "". */
KL_API const char *kl_log_q(char *buf, size_t n, const char *s);

#ifdef __cplusplus
}
#endif
#endif
