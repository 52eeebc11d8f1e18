/* libFuzzer driver for the `keyless` command's ksi-tool configuration-file parser
 * (cli/conf.c): any bytes either parse into known options (a value exactly for those that take
 * one, lines counted from 1) or fail with a message naming "FILE:LINE:"; never a crash or a leak.
 * cli/conf.c is not in a library, so it is compiled into this driver. Seeds: tests/fuzz/corpus/cli_conf. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../cli/conf.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cli_conf_t c;
  kl_err_t e = {0};
  int r = cli_conf_parse(&c, "f.conf", (const char *)data, size, &e);
  if (r == 0) {
    unsigned lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    for (size_t i = 0; i < c.n; i++) {
      const cli_conf_entry_t *x = &c.v[i];
      if (x->opt == NULL || (x->value != NULL) != x->opt->has_arg || x->line == 0 || x->line > lines) abort();
      if (x->value && strlen(x->value) > size) abort();
    }
  } else if (strncmp(e.msg, "f.conf:", 7) != 0) {
    abort();
  }
  cli_conf_free(&c);
  return 0;
}
