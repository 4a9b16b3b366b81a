/* crc32c.c — CRC-32C: SSE4.2 `crc32` instruction when the CPU has it (chosen
 * once at load time), otherwise slicing-by-8 tables.  Every level
 * (prl_crc32c_at) is checked against the RFC 3720 vectors and the others in
 * tests/test_crc32c.py.
 *
 * The instruction has a latency of 3 cycles but a throughput of 1 per cycle,
 * so one stream of it runs at a third of what the core can do.  Long buffers
 * are cut into three blocks that are checksummed side by side, and the three
 * CRCs are combined by "shifting" the first over the length of the next
 * block (multiplying by x^(8 * block) modulo the polynomial: a linear map on
 * 32 bits, applied with four 256-entry tables built at load time) — Mark
 * Adler's crc32c.c (zlib license), the same idea as Intel's paper "Fast CRC
 * Computation for iSCSI Polynomial Using CRC32 Instruction".  Recovery
 * verifies every byte of the log, so this is most of its CPU time.
 *
 * Where the CPU has AVX-512 carry-less multiplication (VPCLMULQDQ), long
 * buffers are folded 256 bytes at a time instead (fold512, below), which
 * is about as fast as the memory delivers them. */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

/* Block sizes of the three-way loops, longest first: each round of a loop
 * costs two shifts (~30 cycles) besides its 3 * block / 8 instructions, so
 * long blocks take the bulk of a batch and shorter ones what is left (a
 * batch of 100 entries of 256 bytes is 28.8 KB: 24 KiB, 3 KiB, 3 x 384 B
 * and 32 bytes one at a time).  Each is a power of two (zeros_op) and a
 * multiple of 8. */
#define LONG_BLOCK 8192u
#define MID_BLOCK 1024u
#define SHORT_BLOCK 128u

static uint32_t table[8][256];
static uint32_t shift_long[4][256];  /* x^(8 * LONG_BLOCK) mod P, by byte */
static uint32_t shift_mid[4][256];   /* x^(8 * MID_BLOCK) mod P, by byte */
static uint32_t shift_short[4][256]; /* x^(8 * SHORT_BLOCK) mod P, by byte */

/* ---- GF(2) 32x32 matrices (a column per bit) for the shift operators */

static uint32_t matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1) sum ^= *mat;
    return sum;
}

static void matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = matrix_times(mat, mat[n]);
}

/* The operator that feeds `len` zero bytes (a power of two) to a CRC register. */
static void zeros_op(uint32_t *even, uint64_t len) {
    uint32_t odd[32];
    odd[0] = POLY; /* one zero bit */
    for (int n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
    matrix_square(even, odd); /* two zero bits */
    matrix_square(odd, even); /* four */
    /* squaring doubles: the first square below gives one byte, then two, ... */
    for (;;) {
        matrix_square(even, odd);
        len >>= 1;
        if (!len) return;
        matrix_square(odd, even);
        len >>= 1;
        if (!len) break;
    }
    memcpy(even, odd, sizeof odd);
}

static void shift_tables(uint32_t t[4][256], uint64_t len) {
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 0; k < 4; k++) t[k][n] = matrix_times(op, n << (8 * k));
}

/* x^n mod P, reflected (bit i is the coefficient of x^(31 - i)). */
static uint32_t xpow(uint64_t n) {
    uint32_t v = 0x80000000u;
    while (n--) v = (v >> 1) ^ (v & 1 ? POLY : 0);
    return v;
}

/* Folding a 16-byte lane forward by `bytes`: its first 8 bytes (the high
 * 64 degrees) are multiplied by x^(8 * bytes + 64), its last 8 by
 * x^(8 * bytes), both modulo P.  The data is reflected, so a carry-less
 * product of two 64-bit halves comes out one degree short: the constants
 * are x^(n - 1), placed in the high 32 bits of their 64-bit half. */
static uint64_t fold256[2], fold192[2], fold128[2], fold64[2], fold48[2], fold32[2], fold16[2];

static void fold_consts(uint64_t k[2], uint64_t bytes) {
    k[0] = (uint64_t)xpow(8 * bytes + 63) << 32;
    k[1] = (uint64_t)xpow(8 * bytes - 1) << 32;
}

__attribute__((constructor)) static void crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++)
            table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
    shift_tables(shift_long, LONG_BLOCK);
    shift_tables(shift_mid, MID_BLOCK);
    shift_tables(shift_short, SHORT_BLOCK);
    fold_consts(fold256, 256);
    fold_consts(fold192, 192);
    fold_consts(fold128, 128);
    fold_consts(fold64, 64);
    fold_consts(fold48, 48);
    fold_consts(fold32, 32);
    fold_consts(fold16, 16);
}

uint32_t prl_crc32c_sw(uint32_t crc, const void *buf, uint64_t len) {
    const uint8_t *p = buf;
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^
              table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* The register `crc` followed by a block of zeros of the table's length. */
static uint32_t shift(uint32_t t[4][256], uint32_t crc) {
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^
           t[3][crc >> 24];
}

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>

#define FOLD_TARGET "avx512f,vpclmulqdq,pclmul,sse4.2"
#define FOLD_MIN 512u /* shorter buffers: the three-way loops */

__attribute__((target(FOLD_TARGET))) static inline __m512i fold(__m512i x, __m512i k,
                                                                __m512i next) {
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), next, 0x96);
}

__attribute__((target(FOLD_TARGET))) static inline __m512i lanes(const uint64_t k[2]) {
    return _mm512_broadcast_i32x4(_mm_set_epi64x((long long)k[1], (long long)k[0]));
}

/* The register c over whole 256-byte blocks of the buffer (at least two):
 * four 64-byte accumulators (sixteen 16-byte lanes) are each folded
 * forward over the next 256 bytes and the data there added; at the end
 * the lanes are folded into the last one, whose 16 bytes, checksummed
 * from 0 with the crc32 instruction, give the register. */
__attribute__((target(FOLD_TARGET))) static uint64_t fold512(uint64_t c, const uint8_t **pp,
                                                             uint64_t *lenp) {
    const uint8_t *p = *pp;
    uint64_t len = *lenp;
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64);
    __m512i x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
    /* the register so far is the same as that much xored into the first bytes */
    x0 = _mm512_xor_si512(x0, _mm512_castsi128_si512(_mm_cvtsi32_si128((int)(uint32_t)c)));
    p += 256;
    len -= 256;
    const __m512i k = lanes(fold256);
    while (len >= 256) {
        x0 = fold(x0, k, _mm512_loadu_si512(p));
        x1 = fold(x1, k, _mm512_loadu_si512(p + 64));
        x2 = fold(x2, k, _mm512_loadu_si512(p + 128));
        x3 = fold(x3, k, _mm512_loadu_si512(p + 192));
        p += 256;
        len -= 256;
    }
    x3 = fold(x0, lanes(fold192), x3);
    x3 = fold(x1, lanes(fold128), x3);
    x3 = fold(x2, lanes(fold64), x3);
    const __m512i last = _mm512_set_epi64(0, 0, (long long)fold16[1], (long long)fold16[0],
                                          (long long)fold32[1], (long long)fold32[0],
                                          (long long)fold48[1], (long long)fold48[0]);
    __m512i y = _mm512_xor_si512(_mm512_clmulepi64_epi128(x3, last, 0x00),
                                 _mm512_clmulepi64_epi128(x3, last, 0x11));
    __m128i f = _mm_xor_si128(_mm_xor_si128(_mm512_castsi512_si128(y),
                                            _mm512_extracti32x4_epi32(y, 1)),
                              _mm_xor_si128(_mm512_extracti32x4_epi32(y, 2),
                                            _mm512_extracti32x4_epi32(x3, 3)));
    c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(f));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(f, 1));
    *pp = p;
    *lenp = len;
    return c;
}

__attribute__((target("sse4.2"))) static inline uint64_t word(uint64_t c, const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return _mm_crc32_u64(c, w);
}

/* Three blocks of `block` bytes side by side, as long as 3 blocks are left. */
__attribute__((target("sse4.2"))) static uint64_t three_way(uint64_t c0, const uint8_t **pp,
                                                            uint64_t *lenp, uint64_t block,
                                                            uint32_t t[4][256]) {
    const uint8_t *p = *pp;
    uint64_t len = *lenp;
    while (len >= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + block;
        do {
            c0 = word(c0, p);
            c1 = word(c1, p + block);
            c2 = word(c2, p + 2 * block);
            p += 8;
        } while (p < end);
        c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * block;
        len -= 3 * block;
    }
    *pp = p;
    *lenp = len;
    return c0;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf,
                                                             uint64_t len, int folds) {
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    if (folds && len >= FOLD_MIN) c = fold512(c, &p, &len);
    c = three_way(c, &p, &len, LONG_BLOCK, shift_long);
    c = three_way(c, &p, &len, MID_BLOCK, shift_mid);
    c = three_way(c, &p, &len, SHORT_BLOCK, shift_short);
    while (len >= 8) {
        c = word(c, p);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

static int have_hw(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("sse4.2")) return 0;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") &&
                   __builtin_cpu_supports("pclmul")
               ? 2
               : 1;
}
#else
static uint32_t crc32c_hw(uint32_t crc, const void *buf, uint64_t len, int folds) {
    (void)folds;
    return prl_crc32c_sw(crc, buf, len);
}
static int have_hw(void) { return 0; }
#endif

int prl_crc32c_hw(void) {
    static int hw = -1;
    if (hw < 0) hw = have_hw();
    return hw;
}

uint32_t prl_crc32c_at(int level, uint32_t crc, const void *buf, uint64_t len) {
    if (level > prl_crc32c_hw()) level = prl_crc32c_hw();
    return level ? crc32c_hw(crc, buf, len, level > 1) : prl_crc32c_sw(crc, buf, len);
}

uint32_t prl_crc32c(uint32_t crc, const void *buf, uint64_t len) {
    return prl_crc32c_at(2, crc, buf, len);
}
