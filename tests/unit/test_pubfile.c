/* Publication strings, CRC-32 and the publications file: parse, look up, verify, write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyless/pubfile.h"
#include "keyless/tlv.h"
#include "testutil.h"

#define V_PUBFILE "publications/ksi-publications.bin"
#define V_MOCK_CRT KL_VECTORS "/publications/mock.crt"
#define V_RES "policy-verification-signatures/resources/"
#define V_GT_FILE V_RES "publications-file.bin"
#define V_RESIGNED V_RES "publications-file-resigned.bin"
#define V_RESIGNED_CRT KL_VECTORS "/" V_RES "cert-file-for-deprecated-algorithm-in-calendar-chain.pem"

#define T_2024 1718409600 /* 2024-06-15 */
#define T_2050 2524608000 /* 2050-01-01 */
#define T_2019 1546300800 /* 2019-01-01 */

static kl_pubfile_t *parse_vector(const char *path) {
  size_t n;
  uint8_t *p = tu_read_vector(path, &n);
  kl_pubfile_t *pf = NULL;
  kl_err_t e = {0};
  int r = kl_pubfile_parse(p, n, &pf, &e);
  free(p);
  if (r) fail_msg("%s: %s", path, e.msg);
  return pf;
}

static kl_imprint_t imprint_hex(const char *hex) {
  kl_imprint_t imp;
  kl_err_t e = {0};
  if (kl_imprint_parse_text(&imp, hex, &e)) fail_msg("bad imprint in test: %s", e.msg);
  return imp;
}

/* ---- CRC-32 and publication strings ---- */

static void test_crc32(void **state) {
  (void)state;
  assert_int_equal(kl_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
  assert_int_equal(kl_crc32(NULL, 0), 0);
  assert_int_equal(kl_crc32((const uint8_t *)"a", 1), 0xE8B7BE43u);
}

static const char *ex_str =
    "AAAAAA-DF6NWU-QAI2RL-2V3JBJ-KPXGJE-M323ZF-IHJDLN-OXYON2-IYQND4-ROQTV4-VZBCXB-446L2D";
static const char *ex_root = "011A8AF55DA42953EE64919BD6F2541D235B5D7C39BA4620D1F22E84EBCAE422B8";

static void test_pubstr_example(void **state) {
  (void)state;
  kl_imprint_t root = imprint_hex(ex_root), got;
  char s[KL_PUBSTR_MAX];
  kl_err_t e = {0};
  assert_int_equal(kl_pubstr_encode(1710452040, &root, s, sizeof s, &e), 0);
  assert_string_equal(s, ex_str);
  uint64_t t = 0;
  assert_int_equal(kl_pubstr_decode(ex_str, &t, &got, &e), 0);
  assert_int_equal(t, 1710452040);
  assert_true(kl_imprint_eq(&got, &root));
  /* Lower case, no dashes, trailing padding: all the same string. */
  char alt[128];
  size_t k = 0;
  for (const char *c = ex_str; *c; c++)
    if (*c != '-') alt[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
  memcpy(alt + k, "====", 5);
  assert_int_equal(kl_pubstr_decode(alt, &t, &got, &e), 0);
  assert_int_equal(t, 1710452040);
  assert_true(kl_imprint_eq(&got, &root));
  /* The exact buffer size works, one less does not. */
  assert_int_equal(kl_pubstr_encode(1710452040, &root, s, strlen(ex_str) + 1, &e), 0);
  assert_int_equal(kl_pubstr_encode(1710452040, &root, s, strlen(ex_str), &e), KL_ERANGE);
}

/* Every publication string in the vector CSVs decodes to (PubTime, chcOutput) and re-encodes. */
static void check_csv(const char *path, int *n_checked) {
  size_t n;
  char *csv = (char *)tu_read_vector(path, &n);
  csv = realloc(csv, n + 1);
  assert_non_null(csv);
  csv[n] = '\0';
  char *save = NULL;
  for (char *line = strtok_r(csv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#') continue;
    const char *f[16] = {0};
    int nf = 0;
    for (char *p = line; nf < 16;) {
      f[nf++] = p;
      char *q = strchr(p, ';');
      if (q == NULL) break;
      *q = '\0';
      p = q + 1;
    }
    if (nf < 11 || f[10][0] == '\0') continue;
    uint64_t t;
    kl_imprint_t h;
    kl_err_t e = {0};
    if (kl_pubstr_decode(f[10], &t, &h, &e)) fail_msg("%s: %s: %s", path, f[0], e.msg);
    if (f[9][0]) assert_int_equal(t, strtoull(f[9], NULL, 10));
    if (f[7][0]) {
      kl_imprint_t want = imprint_hex(f[7]);
      assert_true(kl_imprint_eq(&h, &want));
    }
    char s[KL_PUBSTR_MAX];
    assert_int_equal(kl_pubstr_encode(t, &h, s, sizeof s, &e), 0);
    assert_string_equal(s, f[10]);
    (*n_checked)++;
  }
  free(csv);
}

static void test_pubstr_vectors(void **state) {
  (void)state;
  int n = 0;
  check_csv("valid-signatures/signature-results.csv", &n);
  check_csv("policy-verification-signatures/policy-verification-results.csv", &n);
  assert_true(n >= 25);
}

static void test_pubstr_other_algs(void **state) {
  (void)state;
  static const int algs[] = {KL_HASH_SHA1, KL_HASH_RIPEMD160, KL_HASH_SHA384, KL_HASH_SHA512,
                             KL_HASH_SHA3_224, KL_HASH_SM3};
  for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
    kl_imprint_t h = {.alg = (uint8_t)algs[i], .len = (uint8_t)kl_hash_digest_len(algs[i])}, g;
    for (size_t k = 0; k < h.len; k++) h.digest[k] = (uint8_t)(k * 37 + i);
    char s[KL_PUBSTR_MAX];
    uint64_t t;
    kl_err_t e = {0};
    assert_int_equal(kl_pubstr_encode(0xFEDCBA9876543210ull, &h, s, sizeof s, &e), 0);
    assert_int_equal(kl_pubstr_decode(s, &t, &g, &e), 0);
    assert_int_equal(t, 0xFEDCBA9876543210ull);
    assert_true(kl_imprint_eq(&g, &h));
    if (algs[i] == KL_HASH_SHA512) {
      assert_int_equal(strlen(s) + 1, KL_PUBSTR_MAX); /* the largest string */
      assert_int_equal(kl_pubstr_encode(1, &h, s, KL_PUBSTR_MAX - 1, &e), KL_ERANGE);
    }
  }
  kl_imprint_t bad = {.alg = 0x03, .len = 32};
  char s[KL_PUBSTR_MAX];
  assert_int_equal(kl_pubstr_encode(1, &bad, s, sizeof s, NULL), KL_EINVAL);
  bad.alg = KL_HASH_SHA256;
  bad.len = 20;
  assert_int_equal(kl_pubstr_encode(1, &bad, s, sizeof s, NULL), KL_EINVAL);
}

/* Plain RFC 4648 base32 without dashes or padding, for hand-made strings. */
static void b32(const uint8_t *p, size_t n, char *out) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  uint32_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 8) | p[i];
    for (bits += 8; bits >= 5; bits -= 5) *out++ = al[(acc >> (bits - 5)) & 31];
  }
  if (bits) *out++ = al[(acc << (5 - bits)) & 31];
  *out = '\0';
}

static void test_pubstr_errors(void **state) {
  (void)state;
  uint64_t t = 7;
  kl_imprint_t h;
  kl_err_t e = {0};
  char s[128];
  /* One changed character: the CRC no longer matches. */
  snprintf(s, sizeof s, "%s", ex_str);
  s[20] = s[20] == 'A' ? 'B' : 'A';
  assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "CRC"));
  assert_int_equal(t, 7); /* outputs untouched on failure */
  /* A group removed or added: wrong length. */
  snprintf(s, sizeof s, "%s", ex_str);
  s[strlen(s) - 7] = '\0';
  assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "bytes"));
  snprintf(s, sizeof s, "%s-AAAAAAAA", ex_str);
  assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "bytes"));
  /* Characters outside the alphabet. */
  static const char badc[] = {'1', '0', '8', '9', '!', ' ', '+', '/', (char)0xC3};
  for (size_t i = 0; i < sizeof badc; i++) {
    snprintf(s, sizeof s, "%s", ex_str);
    s[9] = badc[i];
    assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), KL_EFORMAT);
    assert_non_null(strstr(e.msg, "invalid character"));
    assert_non_null(strstr(e.msg, "position 9"));
  }
  /* Too short, empty, too long. */
  assert_int_equal(kl_pubstr_decode("", &t, &h, &e), KL_EFORMAT);
  assert_int_equal(kl_pubstr_decode("AAAAAA-AAAA", &t, &h, &e), KL_EFORMAT);
  char lng[400];
  memset(lng, 'A', sizeof lng - 1);
  lng[sizeof lng - 1] = '\0';
  assert_int_equal(kl_pubstr_decode(lng, &t, &h, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "too long"));
  /* Unknown algorithm byte (0x03) with a correct CRC. */
  uint8_t bytes[45] = {0};
  bytes[8] = 0x03;
  uint32_t crc = kl_crc32(bytes, 41);
  for (int k = 0; k < 4; k++) bytes[41 + k] = (uint8_t)(crc >> (24 - 8 * k));
  b32(bytes, sizeof bytes, s);
  assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), KL_EHASHALG);
  assert_non_null(strstr(e.msg, "0x03"));
  /* SHA-1 id with a SHA-256 length, CRC correct: a length error. */
  bytes[8] = KL_HASH_SHA1;
  crc = kl_crc32(bytes, 41);
  for (int k = 0; k < 4; k++) bytes[41 + k] = (uint8_t)(crc >> (24 - 8 * k));
  b32(bytes, sizeof bytes, s);
  assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "45 bytes"));
  /* Same length, different algorithm id: still a valid string (the CRC covers the id). */
  kl_imprint_t sha = imprint_hex(ex_root);
  sha.alg = KL_HASH_SHA3_256;
  assert_int_equal(kl_pubstr_encode(5, &sha, s, sizeof s, &e), 0);
  assert_int_equal(kl_pubstr_decode(s, &t, &h, &e), 0);
  assert_int_equal(h.alg, KL_HASH_SHA3_256);
  assert_int_equal(kl_pubstr_decode(NULL, &t, &h, &e), KL_EINVAL);
}

/* ---- parsing ---- */

static void test_parse_vectors(void **state) {
  (void)state;
  kl_pubfile_t *pf = parse_vector(V_PUBFILE);
  assert_int_equal(pf->version, 1);
  assert_int_equal(pf->created, 0x571661df);
  assert_null(pf->repo_uri);
  assert_int_equal(pf->n_certs, 10);
  assert_int_equal(pf->n_pubs, 21);
  assert_int_equal(pf->signed_len, 11194);
  assert_int_equal(pf->cms_len, 1429);
  assert_int_equal(pf->raw_len, 12627);
  for (size_t i = 0; i < pf->n_certs; i++) {
    const kl_pubfile_cert_t *c = &pf->certs[i];
    assert_int_equal(c->id_len, 4);
    uint32_t id = (uint32_t)c->id[0] << 24 | (uint32_t)c->id[1] << 16 | (uint32_t)c->id[2] << 8 | c->id[3];
    assert_int_equal(id, kl_crc32(c->der, c->der_len));
  }
  for (size_t i = 1; i < pf->n_pubs; i++) assert_true(pf->pubs[i].data.time > pf->pubs[i - 1].data.time);
  kl_pubfile_free(pf);

  static const struct { const char *path; size_t certs, pubs, signed_len; } files[] = {
      {V_GT_FILE, 4, 116, 25327},
      {V_RESIGNED, 4, 116, 25327},
      {V_RES "publications-file-for-deprecated-algorithm-in-calendar-chain.bin", 2, 4, 1691},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    pf = parse_vector(files[i].path);
    assert_int_equal(pf->n_certs, files[i].certs);
    assert_int_equal(pf->n_pubs, files[i].pubs);
    assert_int_equal(pf->signed_len, files[i].signed_len);
    assert_int_equal(pf->version, 1);
    for (size_t k = 0; k < pf->n_certs; k++) {
      const kl_pubfile_cert_t *c = kl_pubfile_find_cert(pf, pf->certs[k].id, pf->certs[k].id_len);
      assert_ptr_equal(c, &pf->certs[k]);
    }
    kl_pubfile_free(pf);
  }
  kl_pubfile_free(NULL);
}

static void test_find(void **state) {
  (void)state;
  kl_pubfile_t *pf = parse_vector(V_PUBFILE);
  const kl_pub_rec_t *r = kl_pubfile_find_exact(pf, 1408060800);
  assert_non_null(r);
  kl_imprint_t want = imprint_hex("01f41157b228426c657ef81740cabae530572c313dc4da916306e67bd9b7742865");
  assert_true(kl_imprint_eq(&r->data.hash, &want));
  assert_null(kl_pubfile_find_exact(pf, 1408060801));
  assert_null(kl_pubfile_find_exact(pf, 0));
  assert_ptr_equal(kl_pubfile_find_after(pf, 0), r);
  assert_ptr_equal(kl_pubfile_find_after(pf, 1408060800), r);
  r = kl_pubfile_find_after(pf, 1408060801);
  assert_non_null(r);
  assert_int_equal(r->data.time, 1410739200);
  r = kl_pubfile_find_after(pf, 1420408803); /* a 2015-01-04 signature: 2015-01-15 */
  assert_int_equal(r->data.time, 1421280000);
  want = imprint_hex("019e363329e04954ee5d30090f635b12f399f64b4e10bc68df215f9de8dbf9e3af");
  assert_true(kl_imprint_eq(&r->data.hash, &want));
  assert_ptr_equal(kl_pubfile_find_exact(pf, 1421280000), r);
  r = kl_pubfile_find_after(pf, 1460678400);
  assert_non_null(r);
  assert_ptr_equal(r, &pf->pubs[pf->n_pubs - 1]);
  assert_null(kl_pubfile_find_after(pf, 1460678401));
  assert_null(kl_pubfile_find_after(pf, UINT64_MAX));
  const uint8_t id[4] = {0xa4, 0x2c, 0x61, 0xad}, other[4] = {1, 2, 3, 4};
  const kl_pubfile_cert_t *c = kl_pubfile_find_cert(pf, id, 4);
  assert_non_null(c);
  assert_int_equal(c->der_len, 698);
  assert_null(kl_pubfile_find_cert(pf, other, 4));
  assert_null(kl_pubfile_find_cert(pf, id, 3));
  kl_pubfile_free(pf);
}

static void test_parse_truncated_and_garbage(void **state) {
  (void)state;
  size_t n;
  uint8_t *p = tu_read_vector(V_PUBFILE, &n);
  kl_pubfile_t *pf = NULL;
  kl_err_t e = {0};
  for (size_t k = 0; k < n; k++) {
    pf = (kl_pubfile_t *)1;
    int r = kl_pubfile_parse(p, k, &pf, &e);
    if (r != KL_EFORMAT) fail_msg("truncated to %zu bytes: got %d (%s)", k, r, e.msg);
    assert_null(pf);
  }
  assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), 0);
  kl_pubfile_free(pf);
  /* Trailing bytes after the signature. */
  uint8_t *q = malloc(n + 2);
  assert_non_null(q);
  memcpy(q, p, n);
  q[n] = 0x41; /* non-critical type 1, empty */
  q[n + 1] = 0x00;
  assert_int_equal(kl_pubfile_parse(q, n + 2, &pf, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "must be last"));
  free(q);
  /* Wrong magic and garbage. */
  p[0] = 'X';
  assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "KSIPUBLF"));
  uint8_t garbage[512];
  for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (uint8_t)(i * 131 + 7);
  assert_int_equal(kl_pubfile_parse(garbage, sizeof garbage, &pf, &e), KL_EFORMAT);
  memcpy(garbage, "KSIPUBLF", 8);
  garbage[8] = 0x87; /* TLV16 0x701 claiming more than is there */
  garbage[9] = 0x01;
  garbage[10] = 0xFF;
  garbage[11] = 0xFF;
  assert_int_equal(kl_pubfile_parse(garbage, sizeof garbage, &pf, &e), KL_EFORMAT);
  assert_int_equal(kl_pubfile_parse(NULL, 0, &pf, &e), KL_EFORMAT);
  free(p);
}

static void put_header(kl_buf_t *b, uint64_t version) {
  size_t m = kl_tlv_open(b);
  kl_tlv_put_uint(b, 0x01, 0, version);
  kl_tlv_put_uint(b, 0x02, 0, 1700000000);
  kl_tlv_close(b, m, 0x701, 0);
}

static void put_cert(kl_buf_t *b) {
  static const uint8_t der[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  uint8_t id[4];
  uint32_t crc = kl_crc32(der, sizeof der);
  for (int k = 0; k < 4; k++) id[k] = (uint8_t)(crc >> (24 - 8 * k));
  size_t m = kl_tlv_open(b);
  kl_tlv_put_bytes(b, 0x01, 0, id, 4);
  kl_tlv_put_bytes(b, 0x02, 0, der, sizeof der);
  kl_tlv_close(b, m, 0x702, 0);
}

static void put_pub(kl_buf_t *b, uint64_t t) {
  kl_imprint_t h = imprint_hex(ex_root);
  size_t m = kl_tlv_open(b);
  kl_pub_data_encode(b, 0, t, &h);
  kl_tlv_put_str(b, 0x09, 0, "ref");
  kl_tlv_close(b, m, 0x703, 0);
}

/* Parses "KSIPUBLF" + elements given by letters: H header, 3 version-3 header, C certificate
 * record, P publication record, b bad publication record, S signature (0x704), n/u unknown
 * non-critical/critical element. */
static int parse_built(const char *layout, kl_err_t *e) {
  kl_buf_t b = KL_BUF_INIT;
  kl_buf_put(&b, "KSIPUBLF", 8);
  uint64_t t = 1000;
  for (const char *c = layout; *c; c++) {
    switch (*c) {
      case 'H': put_header(&b, 1); break;
      case '3': put_header(&b, 3); break;
      case 'C': put_cert(&b); break;
      case 'P': put_pub(&b, t += 10); break;
      case 'S': kl_tlv_put_bytes(&b, 0x704, 0, "\x30\x00", 2); break;
      case 'b': /* publication record whose time has a leading zero byte */
        kl_tlv_put_bytes(&b, 0x703, 0, "\x10\x05\x02\x03\x00\x01\x02", 7);
        break;
      case 'n': kl_tlv_put_bytes(&b, 0x705, KL_TLV_FLAG_N, "x", 1); break;
      case 'u': kl_tlv_put_bytes(&b, 0x705, 0, "x", 1); break;
      default: fail_msg("bad layout %c", *c);
    }
  }
  assert_true(kl_buf_ok(&b));
  kl_pubfile_t *pf = NULL;
  int r = kl_pubfile_parse(b.p, b.len, &pf, e);
  if (r == 0) {
    size_t nc = 0, np = 0;
    for (const char *c = layout; *c; c++) nc += *c == 'C', np += *c == 'P';
    assert_int_equal(pf->n_certs, nc);
    assert_int_equal(pf->n_pubs, np);
    assert_int_equal(pf->cms_len, 2);
    assert_int_equal(pf->signed_len, b.len - 6);
    for (size_t i = 0; i < pf->n_pubs; i++) {
      assert_int_equal(pf->pubs[i].n_refs, 1);
      assert_string_equal(pf->pubs[i].refs[0], "ref");
    }
  }
  kl_pubfile_free(pf);
  kl_buf_free(&b);
  return r;
}

static void test_parse_order(void **state) {
  (void)state;
  kl_err_t e = {0};
  assert_int_equal(parse_built("HS", &e), 0);
  assert_int_equal(parse_built("HCCPPPS", &e), 0);
  assert_int_equal(parse_built("nHnCnPnS", &e), 0); /* non-critical unknowns skipped */
  assert_int_equal(parse_built("HPPS", &e), 0);
  assert_int_equal(parse_built("HCPCS", &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "follows a publication record"));
  assert_int_equal(parse_built("CHS", &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "before the publications file header"));
  assert_int_equal(parse_built("HHS", &e), KL_EFORMAT);
  assert_int_equal(parse_built("HCP", &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "no signature"));
  assert_int_equal(parse_built("", &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "no header"));
  assert_int_equal(parse_built("HSP", &e), KL_EFORMAT);
  assert_int_equal(parse_built("HSS", &e), KL_EFORMAT);
  assert_int_equal(parse_built("HCuPS", &e), KL_ECRITICAL);
  assert_non_null(strstr(e.msg, "0x705"));
  assert_int_equal(parse_built("3S", &e), KL_EUNSUPPORTED);
  assert_int_equal(parse_built("HPbS", &e), KL_EFORMAT);
  assert_non_null(strstr(e.msg, "publication record 2"));
  assert_non_null(strstr(e.msg, "leading zero"));
  /* Without an error object the codes are the same (nested decoders still fail). */
  assert_int_equal(parse_built("HPbS", NULL), KL_EFORMAT);
  assert_int_equal(parse_built("HCPCS", NULL), KL_EFORMAT);
  assert_int_equal(parse_built("HCuPS", NULL), KL_ECRITICAL);
  assert_int_equal(parse_built("HCPPS", NULL), 0);
}

/* ---- verification ---- */

static int verify_file(const char *path, const char *anchor, const char *oid, const char *value,
                       int64_t at, kl_err_t *e) {
  kl_pubfile_t *pf = parse_vector(path);
  const char *anchors[1] = {anchor};
  kl_cnstr_t c = {oid, value};
  kl_pubfile_trust_t tr = {anchors, anchor ? 1 : 0, &c, oid ? 1 : 0, at, 0};
  kl_err_clear(e);
  int r = kl_pubfile_verify(pf, &tr, e);
  kl_pubfile_free(pf);
  return r;
}

#define GT_EMAIL "publications@guardtime.com"

static void test_verify_mock(void **state) {
  (void)state;
  kl_err_t e = {0};
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", GT_EMAIL, T_2024, &e), 0);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", GT_EMAIL, 0, &e), 0);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "email", GT_EMAIL, 0, &e), 0);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "1.2.840.113549.1.9.1", GT_EMAIL, 0, &e), 0);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "O", "Guardtime AS", 0, &e), 0);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "C", "EE", 0, &e), 0);
  /* Constraint failures. */
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", "publications@example.com", 0, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "subject constraint"));
  assert_non_null(strstr(e.msg, GT_EMAIL));
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", "publications@guardtime.co", 0, &e), KL_EPKI);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "CN", "GuardTime", 0, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "has no CN"));
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "XY", "z", 0, &e), KL_EINVAL);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, NULL, NULL, 0, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "no subject constraint configured"));
  /* Outside mock.crt's validity (2020-2040). */
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", GT_EMAIL, T_2050, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "certificate has expired"));
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", GT_EMAIL, T_2019, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "not yet valid"));
  /* mock.crt is not in the system store; a missing anchor file is an I/O error. */
  assert_int_equal(verify_file(V_PUBFILE, NULL, "E", GT_EMAIL, 0, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "chain"));
  assert_int_equal(verify_file(V_PUBFILE, "/nonexistent/anchor.pem", "E", GT_EMAIL, 0, &e), KL_EIO);
  assert_int_equal(verify_file(V_PUBFILE, V_MOCK_CRT, "E", GT_EMAIL, -5, &e), KL_EINVAL);
}

static void test_verify_other_files(void **state) {
  (void)state;
  kl_err_t e = {0};
  /* The real 2024 Guardtime file: its signature holds, but mock.crt is not its root. */
  assert_int_equal(verify_file(V_GT_FILE, V_MOCK_CRT, "E", GT_EMAIL, T_2024, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "unable to get local issuer certificate"));
  /* The re-signed copy and its 2016-2026 test certificate. */
  assert_int_equal(verify_file(V_RESIGNED, V_RESIGNED_CRT, "E", GT_EMAIL, T_2024, &e), 0);
  assert_int_equal(verify_file(V_RESIGNED, V_RESIGNED_CRT, "E", GT_EMAIL, T_2050, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "certificate has expired"));
  assert_int_equal(verify_file(V_RESIGNED, V_MOCK_CRT, "E", GT_EMAIL, T_2024, &e), KL_EPKI);
}

static void test_verify_tampered(void **state) {
  (void)state;
  size_t n;
  uint8_t *p = tu_read_vector(V_PUBFILE, &n);
  kl_pubfile_t *pf = NULL;
  kl_err_t e = {0};
  const char *anchors[1] = {V_MOCK_CRT};
  kl_cnstr_t c = {"E", GT_EMAIL};
  kl_pubfile_trust_t tr = {anchors, 1, &c, 1, T_2024, 0};
  assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), 0);
  /* Last byte of the last published hash, the created time, and a certificate byte. */
  const kl_pub_rec_t *last = &pf->pubs[pf->n_pubs - 1];
  size_t offs[] = {(size_t)(last->data.raw + last->data.raw_len - 1 - pf->raw), 20,
                   (size_t)(pf->certs[3].der + 100 - pf->raw)};
  kl_pubfile_free(pf);
  for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
    p[offs[i]] ^= 0x01;
    assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), 0);
    assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
    assert_non_null(strstr(e.msg, "signature check failed"));
    kl_pubfile_free(pf);
    p[offs[i]] ^= 0x01;
  }
  /* The CMS's last byte (in the signature value) and its first (garbage CMS). */
  p[n - 1] ^= 0x01;
  assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), 0);
  assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
  kl_pubfile_free(pf);
  p[n - 1] ^= 0x01;
  p[n - 1429] = 0x05;
  assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), 0);
  assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "CMS"));
  kl_pubfile_free(pf);
  free(p);
}

/* ---- writing ---- */

static X509 *make_cert(EVP_PKEY **key, const char *cn, const char *email) {
  *key = EVP_EC_gen("P-256");
  assert_non_null(*key);
  X509 *x = X509_new();
  assert_non_null(x);
  assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
  assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
  assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365));
  X509_NAME *nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"EE", -1, -1, 0);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_NAME_add_entry_by_txt(nm, "emailAddress", MBSTRING_ASC, (const unsigned char *)email, -1,
                             -1, 0);
  assert_int_equal(X509_set_issuer_name(x, nm), 1);
  assert_int_equal(X509_set_pubkey(x, *key), 1);
  assert_true(X509_sign(x, *key, EVP_sha256()) > 0);
  return x;
}

static void write_pem(const char *path, X509 *x, EVP_PKEY *k) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  if (x) assert_int_equal(PEM_write_X509(f, x), 1);
  if (k) assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
}

static void test_write_roundtrip(void **state) {
  (void)state;
  char dir[] = "/tmp/kl-pubfile-XXXXXX", crt[64], keyf[64], crt2[64];
  assert_non_null(mkdtemp(dir));
  snprintf(crt, sizeof crt, "%s/signer.crt", dir);
  snprintf(keyf, sizeof keyf, "%s/signer.key", dir);
  snprintf(crt2, sizeof crt2, "%s/other.crt", dir);
  EVP_PKEY *key, *key2;
  X509 *x = make_cert(&key, "keyless test publisher", "pub@example.org");
  X509 *x2 = make_cert(&key2, "keyless other", "other@example.org");
  write_pem(crt, x, NULL);
  write_pem(keyf, NULL, key);
  write_pem(crt2, x2, NULL);

  uint8_t *der1 = NULL, *der2 = NULL;
  int l1 = i2d_X509(x, &der1), l2 = i2d_X509(x2, &der2);
  assert_true(l1 > 0 && l2 > 0);
  const uint8_t *ders[2] = {der1, der2};
  const size_t lens[2] = {(size_t)l1, (size_t)l2};
  kl_pub_data_t pubs[3];
  memset(pubs, 0, sizeof pubs);
  for (int i = 0; i < 3; i++) {
    pubs[i].time = 1700000000 + 86400u * (unsigned)i;
    pubs[i].hash = imprint_hex(ex_root);
    pubs[i].hash.digest[0] = (uint8_t)i;
  }
  pubs[2].hash = imprint_hex("04" "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"
                             "00112233445566778899AABBCCDDEEFF");
  kl_pubfile_spec_t spec = {0, 1700300000, "https://example.org/pubs", ders, lens, 2, pubs, 3,
                            crt, keyf, NULL, false};
  kl_buf_t out = KL_BUF_INIT;
  kl_err_t e = {0};
  for (int pass = 0; pass < 2; pass++) {
    spec.chain_pem = pass ? crt2 : NULL;
    kl_buf_reset(&out);
    if (kl_pubfile_write(&spec, &out, &e)) fail_msg("%s", e.msg);
    kl_pubfile_t *pf = NULL;
    if (kl_pubfile_parse(out.p, out.len, &pf, &e)) fail_msg("%s", e.msg);
    assert_int_equal(pf->version, 2);
    assert_int_equal(pf->created, 1700300000);
    assert_string_equal(pf->repo_uri, "https://example.org/pubs");
    assert_int_equal(pf->n_certs, 2);
    for (size_t i = 0; i < 2; i++) {
      assert_int_equal(pf->certs[i].der_len, lens[i]);
      assert_memory_equal(pf->certs[i].der, ders[i], lens[i]);
      uint32_t crc = kl_crc32(ders[i], lens[i]);
      const uint8_t id[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
      assert_int_equal(pf->certs[i].id_len, 4);
      assert_memory_equal(pf->certs[i].id, id, 4);
      assert_ptr_equal(kl_pubfile_find_cert(pf, id, 4), &pf->certs[i]);
    }
    assert_int_equal(pf->n_pubs, 3);
    for (size_t i = 0; i < 3; i++) {
      assert_int_equal(pf->pubs[i].data.time, pubs[i].time);
      assert_true(kl_imprint_eq(&pf->pubs[i].data.hash, &pubs[i].hash));
    }
    assert_int_equal(kl_pubfile_find_after(pf, 1700000001)->data.time, 1700086400);
    const char *anchors[1] = {crt};
    kl_cnstr_t cn[2] = {{"email", "pub@example.org"}, {"CN", "keyless test publisher"}};
    kl_pubfile_trust_t tr = {anchors, 1, cn, 2, 0, 0};
    if (kl_pubfile_verify(pf, &tr, &e)) fail_msg("%s", e.msg);
    cn[1].value = "keyless other";
    assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
    anchors[0] = crt2; /* the other certificate is no anchor for this signer */
    cn[1].value = "keyless test publisher";
    assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
    anchors[0] = V_MOCK_CRT;
    assert_int_equal(kl_pubfile_verify(pf, &tr, &e), KL_EPKI);
    kl_pubfile_free(pf);
  }
  size_t keep = out.len;
  /* Bad specs: unsorted publications, wrong key, missing files. Output is left alone. */
  pubs[1].time = pubs[0].time;
  assert_int_equal(kl_pubfile_write(&spec, &out, &e), KL_EINVAL);
  pubs[1].time = 1700086400;
  spec.signer_key_pem = crt;
  assert_int_equal(kl_pubfile_write(&spec, &out, &e), KL_EINVAL);
  write_pem(keyf, NULL, key2);
  spec.signer_key_pem = keyf;
  assert_int_equal(kl_pubfile_write(&spec, &out, &e), KL_EINVAL);
  assert_non_null(strstr(e.msg, "does not match"));
  spec.signer_cert_pem = "/nonexistent/signer.crt";
  assert_int_equal(kl_pubfile_write(&spec, &out, &e), KL_EIO);
  assert_int_equal(out.len, keep);

  kl_buf_free(&out);
  OPENSSL_free(der1);
  OPENSSL_free(der2);
  X509_free(x);
  X509_free(x2);
  EVP_PKEY_free(key);
  EVP_PKEY_free(key2);
  assert_int_equal(unlink(crt), 0);
  assert_int_equal(unlink(keyf), 0);
  assert_int_equal(unlink(crt2), 0);
  assert_int_equal(rmdir(dir), 0);
}

/* ---- the signer check and the merge of `keyless publish` ---- */

static void test_verify_signer(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_pubfile_t *pf = parse_vector(V_PUBFILE);
  /* mock.crt is the (self-signed) certificate whose key signed the mock file. */
  assert_int_equal(kl_pubfile_verify_signer(pf, V_MOCK_CRT, &e), 0);
  /* Another key: refused, naming the signer. */
  assert_int_equal(kl_pubfile_verify_signer(pf, V_RESIGNED_CRT, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "not with the key of"));
  assert_non_null(strstr(e.msg, "signed by"));
  assert_int_equal(kl_pubfile_verify_signer(pf, "/nonexistent/signer.crt", &e), KL_EIO);
  assert_int_equal(kl_pubfile_verify_signer(NULL, V_MOCK_CRT, &e), KL_EINVAL);
  kl_pubfile_free(pf);
  /* A changed byte of the signed part: the signature check fails. */
  size_t n;
  uint8_t *p = tu_read_vector(V_PUBFILE, &n);
  pf = parse_vector(V_PUBFILE);
  size_t at = pf->signed_len - 3; /* inside the last publication's imprint */
  kl_pubfile_free(pf);
  p[at] ^= 1;
  pf = NULL;
  assert_int_equal(kl_pubfile_parse(p, n, &pf, &e), 0);
  assert_int_equal(kl_pubfile_verify_signer(pf, V_MOCK_CRT, &e), KL_EPKI);
  assert_non_null(strstr(e.msg, "signature check failed"));
  kl_pubfile_free(pf);
  free(p);
}

static kl_pub_data_t pub(uint64_t t, uint8_t b) {
  kl_pub_data_t d = {.time = t};
  d.hash.alg = KL_HASH_SHA256;
  d.hash.len = 32;
  memset(d.hash.digest, b, 32);
  return d;
}

static void test_merge(void **state) {
  (void)state;
  kl_err_t e = {0};
  kl_pub_data_t *out = NULL;
  size_t n = 0, kept = 9;
  /* No earlier file: the new ones, sorted, one per time. */
  kl_pub_data_t add[4] = {pub(30, 3), pub(10, 1), pub(20, 2), pub(10, 1)};
  assert_int_equal(kl_pubfile_merge(NULL, add, 4, 100, &out, &n, &kept, &e), 0);
  assert_int_equal(n, 3);
  assert_int_equal(kept, 0);
  assert_int_equal(out[0].time, 10);
  assert_int_equal(out[1].time, 20);
  assert_int_equal(out[2].time, 30);
  assert_int_equal(out[2].hash.digest[0], 3);
  free(out);
  /* An earlier file with 5 (not in the new list) and 20: both kept, in order, counted. */
  kl_pub_rec_t recs[2] = {{.data = pub(20, 2)}, {.data = pub(5, 7)}};
  kl_pubfile_t prev = {.pubs = recs, .n_pubs = 2};
  assert_int_equal(kl_pubfile_merge(&prev, add, 3, 100, &out, &n, &kept, &e), 0);
  assert_int_equal(n, 4);
  assert_int_equal(kept, 2);
  assert_int_equal(out[0].time, 5);
  assert_int_equal(out[0].hash.digest[0], 7);
  assert_null(out[0].raw);
  assert_int_equal(out[3].time, 30);
  free(out);
  /* Only the earlier file: it is the result. */
  assert_int_equal(kl_pubfile_merge(&prev, NULL, 0, 100, &out, &n, &kept, &e), 0);
  assert_int_equal(n, 2);
  assert_int_equal(kept, 2);
  free(out);
  /* A changed hash for 20 is refused loudly, naming the second and both hashes. */
  add[2] = pub(20, 0xEE);
  out = (kl_pub_data_t *)1;
  assert_int_equal(kl_pubfile_merge(&prev, add, 3, 100, &out, &n, &kept, &e), KL_ESTATE);
  assert_null(out);
  assert_int_equal(n, 0);
  assert_non_null(strstr(e.msg, "second 20"));
  assert_non_null(strstr(e.msg, "earlier file"));
  assert_non_null(strstr(e.msg, "01EEEE"));
  /* Two hashes for one second within the new ones, too. */
  kl_pub_data_t twice[2] = {pub(8, 1), pub(8, 2)};
  assert_int_equal(kl_pubfile_merge(NULL, twice, 2, 100, &out, &n, &kept, &e), KL_ESTATE);
  /* Over the maximum. */
  add[2] = pub(20, 2);
  assert_int_equal(kl_pubfile_merge(&prev, add, 3, 3, &out, &n, &kept, &e), KL_ERANGE);
  assert_int_equal(kl_pubfile_merge(NULL, NULL, 2, 3, &out, &n, &kept, &e), KL_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32),
      cmocka_unit_test(test_pubstr_example),
      cmocka_unit_test(test_pubstr_vectors),
      cmocka_unit_test(test_pubstr_other_algs),
      cmocka_unit_test(test_pubstr_errors),
      cmocka_unit_test(test_parse_vectors),
      cmocka_unit_test(test_find),
      cmocka_unit_test(test_parse_truncated_and_garbage),
      cmocka_unit_test(test_parse_order),
      cmocka_unit_test(test_verify_mock),
      cmocka_unit_test(test_verify_other_files),
      cmocka_unit_test(test_verify_tampered),
      cmocka_unit_test(test_write_roundtrip),
      cmocka_unit_test(test_verify_signer),
      cmocka_unit_test(test_merge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
