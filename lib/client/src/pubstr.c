/* CRC-32 and publication strings (KSI-FORMAT.md §6.2):
 * base32(uint64_be(time) || imprint || uint32_be(crc32(time || imprint))), a dash after every
 * 6 output characters. */
#include <string.h>

#include "keyless/pubfile.h"

/* ---- CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib's crc32) ---- */

/* Four bits at a time: a 16-entry constant table, no lazy initialization. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t kl_crc32(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    c = (c >> 4) ^ crc_nibble[c & 0x0F];
    c = (c >> 4) ^ crc_nibble[c & 0x0F];
  }
  return c ^ 0xFFFFFFFFu;
}

/* ---- publication strings ---- */

#define PUBSTR_GROUP 6
#define PUBSTR_MAX_BYTES (8 + KL_IMPRINT_MAX + 4)

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static void put_be(uint8_t *out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

int kl_pubstr_encode(uint64_t time, const kl_imprint_t *hash, char *out, size_t cap,
                     kl_err_t *e) {
  if (hash == NULL || out == NULL)
    return kl_err_set(e, KL_EINVAL, "publication string: no hash or output buffer given");
  if (!kl_hash_known(hash->alg) || kl_hash_digest_len(hash->alg) != hash->len)
    return kl_err_set(e, KL_EINVAL,
                      "publication string: imprint with algorithm 0x%02X and %u digest bytes is "
                      "not a valid imprint",
                      hash->alg, (unsigned)hash->len);
  uint8_t bytes[PUBSTR_MAX_BYTES];
  put_be(bytes, time, 8);
  size_t n = 8 + kl_imprint_to_bytes(hash, bytes + 8);
  put_be(bytes + n, kl_crc32(bytes, n), 4);
  n += 4;

  size_t chars = (n * 8 + 4) / 5;         /* significant base32 characters */
  size_t padded = (chars + 7) / 8 * 8;    /* '=' up to a multiple of 8 */
  size_t need = padded + (padded - 1) / PUBSTR_GROUP + 1; /* dashes, NUL */
  if (cap < need)
    return kl_err_set(e, KL_ERANGE,
                      "publication string: output buffer holds %zu bytes, %zu are needed", cap,
                      need);
  size_t o = 0;
  for (size_t i = 0; i < padded; i++) {
    if (i > 0 && i % PUBSTR_GROUP == 0) out[o++] = '-';
    if (i >= chars) {
      out[o++] = '=';
      continue;
    }
    /* Five bits starting at bit 5*i (big-endian bit order). */
    size_t bit = 5 * i, byte = bit / 8, shift = bit % 8;
    unsigned v = (unsigned)bytes[byte] << 8;
    if (byte + 1 < n) v |= bytes[byte + 1];
    out[o++] = b32_alphabet[(v >> (11 - shift)) & 0x1F];
  }
  out[o] = '\0';
  return 0;
}

static int b32_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

int kl_pubstr_decode(const char *s, uint64_t *time, kl_imprint_t *hash, kl_err_t *e) {
  if (s == NULL || time == NULL || hash == NULL)
    return kl_err_set(e, KL_EINVAL, "publication string: no input or output given");
  uint8_t bytes[PUBSTR_MAX_BYTES];
  size_t n = 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; s[i] != '\0' && s[i] != '='; i++) {
    if (s[i] == '-') continue;
    int v = b32_value(s[i]);
    if (v < 0) {
      unsigned char c = (unsigned char)s[i];
      if (c >= 0x21 && c < 0x7F)
        return kl_err_set(e, KL_EFORMAT,
                          "publication string: invalid character '%c' at position %zu", c, i);
      return kl_err_set(e, KL_EFORMAT,
                        "publication string: invalid character 0x%02X at position %zu", c, i);
    }
    acc = (acc << 5) | (uint32_t)v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      if (n == sizeof bytes)
        return kl_err_set(e, KL_EFORMAT,
                          "publication string is too long: more than %zu bytes at position %zu",
                          sizeof bytes, i);
      bytes[n++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (n < 8 + 1 + 4)
    return kl_err_set(e, KL_EFORMAT,
                      "publication string is too short: %zu bytes, at least %d are needed", n,
                      8 + 1 + 4);
  int alg = bytes[8];
  if (!kl_hash_known(alg))
    return kl_err_set(e, KL_EHASHALG, "publication string: unknown hash algorithm 0x%02X", alg);
  size_t want = 8 + 1 + kl_hash_digest_len(alg) + 4;
  if (n != want)
    return kl_err_set(e, KL_EFORMAT,
                      "publication string decodes to %zu bytes; %zu are expected for a %s "
                      "imprint",
                      n, want, kl_hash_name(alg));
  uint32_t crc = kl_crc32(bytes, n - 4);
  uint32_t got = (uint32_t)get_be(bytes + n - 4, 4);
  if (crc != got)
    return kl_err_set(e, KL_EFORMAT,
                      "publication string: CRC-32 mismatch (string has %08X, content gives %08X)",
                      (unsigned)got, (unsigned)crc);
  kl_imprint_t imp;
  int r = kl_imprint_from_bytes(&imp, bytes + 8, n - 12, e);
  if (r) {
    kl_err_wrap(e, "publication string");
    return r;
  }
  *time = get_be(bytes, 8);
  *hash = imp;
  return 0;
}
