/* Unit-test helper (owner: the tier tests, test_tier*.c): what a fake parent answers an
 * aggregation request with. Not a test itself; linked into the tests that use it. */
#ifndef KL_TU_PARENT_H
#define KL_TU_PARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aggregation.pb-c.h"

/* A response frame for `rq` (its request id echoed): an 0x801 for aggregation time `second`
 * that starts from the request's root at its level (paired with a made-up sibling), or, with
 * other_root, from a root that is not the request's (a parent that is wrong). The frame is
 * malloc'ed into *out (*n bytes); the test's cmocka asserts fail on any error. */
void tu_parent_answer(const Keyless__Aggregation__Request *rq, uint64_t second, bool other_root, uint8_t **out,
                      size_t *n);

#endif
