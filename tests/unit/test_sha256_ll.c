/* sha256_ll.c (SHA-256 and HMAC-SHA-256 without EVP, issue 12) gives EVP's results: kl_hash,
 * kl_hmac (keys of every length, a key changed and changed back, an empty one) and kl_aggr_step
 * (left and right, metadata-sized siblings, the output in place of the input) are compared with
 * OpenSSL's EVP_Digest and HMAC over lengths around the block boundaries. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "keyless/chains.h"
#include "keyless/hash.h"
#include "sha256_ll.h"
#include "testutil.h"

static uint8_t data[4200];

static void fill(void) {
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof data; i++) {
    x = x * 1103515245u + 12345u;
    data[i] = (uint8_t)(x >> 16);
  }
}

static const size_t lens[] = {0, 1, 31, 32, 55, 56, 63, 64, 65, 67, 100, 119, 120, 127, 128, 129, 1800, 4200};

static void test_ll_is_used(void **st) {
  (void)st;
  /* Debian's OpenSSL 3 keeps the deprecated functions: the fast path is the one tested here. */
  assert_true(kl__sha256_ll());
}

static void test_hash(void **st) {
  (void)st;
  fill();
  kl_err_t e;
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint8_t want[32];
    unsigned wl = 0;
    kl_imprint_t got;
    assert_int_equal(EVP_Digest(data, lens[i], want, &wl, EVP_sha256(), NULL), 1);
    assert_int_equal(kl_hash(KL_HASH_SHA256, data, lens[i], &got, &e), 0);
    assert_int_equal(got.alg, KL_HASH_SHA256);
    assert_int_equal(got.len, 32);
    assert_memory_equal(got.digest, want, 32);
  }
}

static void check_hmac(const uint8_t *key, size_t keylen, size_t n) {
  uint8_t want[32];
  unsigned wl = 0;
  kl_imprint_t got;
  kl_err_t e;
  assert_non_null(HMAC(EVP_sha256(), keylen ? key : (const uint8_t *)"", (int)keylen, data, n, want, &wl));
  assert_int_equal(kl_hmac(KL_HASH_SHA256, key, keylen, data, n, &got, &e), 0);
  assert_int_equal(got.alg, KL_HASH_SHA256);
  assert_int_equal(got.len, 32);
  assert_memory_equal(got.digest, want, 32);
}

static void test_hmac(void **st) {
  (void)st;
  fill();
  static const size_t keylens[] = {0, 1, 4, 32, 63, 64, 65, 128, 129, 300};
  for (size_t k = 0; k < sizeof keylens / sizeof keylens[0]; k++)
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
      check_hmac(data + 4000 - keylens[k], keylens[k], lens[i]);
      check_hmac(data + 4000 - keylens[k], keylens[k], lens[i]); /* the same key again: cached */
    }
  /* a key of the same length with other bytes, and back: the cache must notice both */
  check_hmac(data + 10, 4, 100);
  check_hmac(data + 11, 4, 100);
  check_hmac(data + 10, 4, 100);
  check_hmac(NULL, 0, 100);
  kl_hash_thread_end(); /* forgets the key: the next HMAC sets it up again */
  check_hmac(data + 10, 4, 100);
}

static void test_step(void **st) {
  (void)st;
  fill();
  static const size_t siblens[] = {0, 1, 33, 60, 65, 200, 256, 257, 600};
  kl_hasher_t h;
  kl_err_t e;
  assert_int_equal(kl_hasher_init(&h, &e), 0);
  for (size_t s = 0; s < sizeof siblens / sizeof siblens[0]; s++)
    for (int left = 0; left < 2; left++) {
      kl_imprint_t cur = {.alg = KL_HASH_SHA256, .len = 32}, got;
      memcpy(cur.digest, data + 3000, 32);
      uint8_t buf[1024], want[32];
      size_t n = 0;
      unsigned wl = 0;
      if (!left) memcpy(buf, data, siblens[s]), n = siblens[s];
      buf[n++] = cur.alg;
      memcpy(buf + n, cur.digest, 32), n += 32;
      if (left) memcpy(buf + n, data, siblens[s]), n += siblens[s];
      buf[n++] = 7;
      assert_int_equal(EVP_Digest(buf, n, want, &wl, EVP_sha256(), NULL), 1);
      assert_int_equal(kl_aggr_step(&h, KL_HASH_SHA256, left, &cur, data, siblens[s], 7, &got, &e), 0);
      assert_memory_equal(got.digest, want, 32);
      assert_int_equal(got.alg, KL_HASH_SHA256);
      assert_int_equal(got.len, 32);
      /* the output in place of the input, as kl_aggr_chain_compute calls it */
      assert_int_equal(kl_aggr_step(&h, KL_HASH_SHA256, left, &cur, data, siblens[s], 7, &cur, &e), 0);
      assert_memory_equal(cur.digest, want, 32);
    }
  kl_hasher_close(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_ll_is_used), cmocka_unit_test(test_hash),
                                     cmocka_unit_test(test_hmac), cmocka_unit_test(test_step)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
