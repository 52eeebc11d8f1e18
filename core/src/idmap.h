/* A map from a 64-bit key to an index (open addressing), for the core's per-request lookups
 * that would otherwise make a round of n requests cost n^2 (found by the core benchmark).
 * Pure; the map owns its arrays; a zeroed idmap_t is an empty map. */
#ifndef KL_CORE_IDMAP_H
#define KL_CORE_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idmap {
  uint64_t *keys;
  size_t *vals; /* index + 1; 0 = empty */
  size_t cap, n;
} idmap_t;

void idmap_free(idmap_t *m);
/* false: out of memory (the map is unchanged). */
bool idmap_put(idmap_t *m, uint64_t key, size_t val);
/* SIZE_MAX when absent. */
size_t idmap_get(const idmap_t *m, uint64_t key);

#endif
