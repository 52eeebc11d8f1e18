/* Structured key=value log lines on stderr. */
#include "keyless/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog;
static int log_level = KL_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void kl_log_init(const char *prog, int level) {
  log_prog = prog;
  kl_log_set_level(level);
}

void kl_log_set_level(int level) {
  if (level < KL_LOG_DEBUG) level = KL_LOG_DEBUG;
  if (level > KL_LOG_OFF) level = KL_LOG_OFF;
  log_level = level;
}

int kl_log_get_level(void) { return log_level; }

int kl_log_enabled(int level) { return level >= log_level && level < KL_LOG_OFF; }

int kl_log_level_parse(const char *name) {
  if (name == NULL) return -1;
  for (int i = 0; i <= KL_LOG_OFF; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  if (strcmp(name, "warning") == 0) return KL_LOG_WARN;
  return -1;
}

const char *kl_log_level_name(int level) {
  return level >= 0 && level <= KL_LOG_OFF ? level_names[level] : "?";
}

static int safe_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         strchr("._:/@+,-", c) != NULL;
}

const char *kl_log_q(char *buf, size_t n, const char *s) {
  if (n < 8) {
    if (n) buf[0] = '\0';
    return buf;
  }
  if (s == NULL) s = "";
  size_t len = strlen(s);
  bool plain = len > 0;
  for (size_t i = 0; plain && i < len; i++) plain = safe_char((unsigned char)s[i]);
  if (plain && len < n) {
    memcpy(buf, s, len + 1);
    return buf;
  }
  /* Quoted: reserve the closing quote, "..." for a cut, and the NUL. */
  size_t o = 0, lim = n - 5;
  buf[o++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[5];
    size_t k;
    if (c == '"' || c == '\\') k = (size_t)snprintf(esc, sizeof esc, "\\%c", c);
    else if (c == '\n') k = (size_t)snprintf(esc, sizeof esc, "\\n");
    else if (c == '\t') k = (size_t)snprintf(esc, sizeof esc, "\\t");
    else if (c < 0x20 || c == 0x7f) k = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
    else {
      esc[0] = (char)c;
      k = 1;
    }
    if (o + k > lim) {
      memcpy(buf + o, "...", 3);
      o += 3;
      break;
    }
    memcpy(buf + o, esc, k);
    o += k;
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}

void kl_log(int level, const char *event, const char *fmt, ...) {
  if (!kl_log_enabled(level)) return;
  int saved = errno;
  char line[KL_LOG_LINE_MAX];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  time_t secs = tv.tv_sec;
  gmtime_r(&secs, &tm);
  int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s%s%s event=%s",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (long)(tv.tv_usec / 1000), level_names[level], log_prog ? " prog=" : "",
                   log_prog ? log_prog : "", event ? event : "-");
  size_t len = n < 0 ? 0 : (size_t)n >= sizeof line ? sizeof line - 1 : (size_t)n;
  if (fmt != NULL && fmt[0] != '\0' && len + 1 < sizeof line) {
    line[len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof line - len, fmt, ap);
    va_end(ap);
    if (n > 0) len = len + (size_t)n >= sizeof line ? sizeof line - 1 : len + (size_t)n;
  }
  if (len >= sizeof line - 1) { /* cut: end with "..." and still fit the newline */
    memcpy(line + sizeof line - 5, "...", 3);
    len = sizeof line - 2;
  }
  line[len++] = '\n';
  /* One write per line; a short write on a pipe is retried. */
  for (size_t off = 0; off < len;) {
    ssize_t w = write(STDERR_FILENO, line + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  errno = saved;
}
