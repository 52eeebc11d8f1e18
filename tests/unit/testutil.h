/* Shared helpers for the unit tests: reading vector files, hex. */
#ifndef KL_TESTUTIL_H
#define KL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Reads a whole file; fails the test if it cannot. Caller frees. path is relative to the
 * vectors directory unless it starts with '/'. */
uint8_t *tu_read_vector(const char *path, size_t *len);
/* Decodes hex (no spaces) into a new buffer; fails the test on bad hex. Caller frees. */
uint8_t *tu_hex(const char *hex, size_t *len);

/* A fresh directory /tmp/kl-NAME-XXXXXX in buf (at least 64 bytes); fails the test if it cannot. */
void tu_mkdtemp(const char *name, char *buf, size_t cap);
/* Removes a directory tree made by tu_mkdtemp; 0 on success. */
int tu_rmrf(const char *dir);

#endif
