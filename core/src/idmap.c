/* The core's 64-bit key → index map (idmap.h). */
#include "idmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

void idmap_free(idmap_t *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

static bool grow(idmap_t *m) {
  idmap_t n = {0};
  n.cap = m->cap ? m->cap * 2 : 256;
  n.keys = calloc(n.cap, sizeof *n.keys);
  n.vals = calloc(n.cap, sizeof *n.vals);
  if (n.keys == NULL || n.vals == NULL) {
    idmap_free(&n);
    return false;
  }
  for (size_t i = 0; i < m->cap; i++)
    if (m->vals[i]) idmap_put(&n, m->keys[i], m->vals[i] - 1);
  idmap_free(m);
  *m = n;
  return true;
}

bool idmap_put(idmap_t *m, uint64_t key, size_t val) {
  if ((m->n + 1) * 2 > m->cap && !grow(m)) return false;
  for (size_t i = mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->vals[i] == 0 || m->keys[i] == key) {
      if (m->vals[i] == 0) m->n++;
      m->keys[i] = key;
      m->vals[i] = val + 1;
      return true;
    }
  }
}

size_t idmap_get(const idmap_t *m, uint64_t key) {
  if (m->cap == 0) return SIZE_MAX;
  for (size_t i = mix(key) & (m->cap - 1); m->vals[i]; i = (i + 1) & (m->cap - 1))
    if (m->keys[i] == key) return m->vals[i] - 1;
  return SIZE_MAX;
}
