/* A fake parent's answer for the tier tests (tu_parent.h). */
#include "tu_parent.h"

#include "keyless/buf.h"
#include "keyless/hash.h"
#include "keyless/tier.h"
#include "keyless/tree.h"
#include "testutil.h"

void tu_parent_answer(const Keyless__Aggregation__Request *rq, uint64_t second, bool other_root, uint8_t **out,
                      size_t *n) {
  kl_imprint_t root;
  assert_int_equal(kl_imprint_from_bytes(&root, rq->imprint.data, rq->imprint.len, NULL), 0);
  if (other_root) root.digest[0] ^= 1; /* a chain for some other root */
  kl_tree_leaf_t leaves[2] = {{root, (uint8_t)rq->level, NULL, 0}, {root, 0, NULL, 0}};
  leaves[1].hash.digest[1] ^= 0x55;
  kl_tree_t *t;
  kl_buf_t chain = KL_BUF_INIT;
  assert_int_equal(kl_tree_build(leaves, 2, KL_HASH_SHA256, 255, &t, NULL), 0);
  assert_int_equal(kl_tree_chain(t, 0, second, NULL, 0, &chain, NULL), 0);
  kl_tier_answer_t a = {.second = second, .tlvs = chain.p, .len = chain.len};
  assert_int_equal(kl_tier_response_frame(rq->request_id, &a, out, n, NULL), 0);
  kl_buf_free(&chain);
  kl_tree_free(t);
}
