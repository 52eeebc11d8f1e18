/* libFuzzer driver for the configuration and users-file parsers (inih underneath): any text
 * either loads into a table covering every key type or fails with a message naming where;
 * never a crash, a leak, or a value outside its declared range. Seeds: tests/fuzz/corpus/config. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "keyless/config.h"
#include "keyless/users.h"

typedef struct conf {
  char *name, *path;
  int64_t count;
  bool flag;
  uint64_t size, wait_ms;
} conf_t;

static const kl_cfg_key_t keys[] = {
    {"", "name", KL_CFG_STR, offsetof(conf_t, name), "x", 0, 0, NULL},
    {"server", "path", KL_CFG_STR, offsetof(conf_t, path), NULL, 0, 0, NULL},
    {"server", "count", KL_CFG_INT, offsetof(conf_t, count), "5", 1, 100, NULL},
    {"server", "flag", KL_CFG_BOOL, offsetof(conf_t, flag), "no", 0, 0, NULL},
    {"limits", "size", KL_CFG_SIZE, offsetof(conf_t, size), "64k", 16, 1 << 20, NULL},
    {"limits", "wait", KL_CFG_DURATION, offsetof(conf_t, wait_ms), "1s", 10, 60000, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  conf_t c;
  memset(&c, 0, sizeof c);
  kl_err_t e = {0};
  size_t n = sizeof keys / sizeof keys[0];
  if (kl_cfg_load_string("fuzz.conf", text, keys, n, &c, &e) == 0) {
    if (c.count < 1 || c.count > 100 || c.size < 16 || c.size > (1 << 20) || c.wait_ms < 10 || c.wait_ms > 60000 ||
        c.path == NULL || c.name == NULL)
      abort(); /* a loaded value outside its declared range */
  } else if (e.msg[0] == '\0') {
    abort(); /* a failure must say why */
  }
  kl_cfg_free(keys, n, &c);
  kl_users_t *u = NULL;
  if (kl_users_parse("fuzz.users", text, size, &u, &e) == 0) {
    size_t keylen;
    kl_users_key(u, "anon", &keylen);
    kl_users_free(u);
  }
  free(text);
  return 0;
}
