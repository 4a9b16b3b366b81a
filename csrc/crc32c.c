/* crc32c.c — CRC-32C: SSE4.2 `crc32` instruction when the CPU has it (chosen
 * once at load time), otherwise slicing-by-8 tables.  Both are checked against
 * the RFC 3720 vectors in tests/test_crc32c.py. */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];

__attribute__((constructor)) static void crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++)
            table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
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

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf,
                                                             uint64_t len) {
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

static int have_hw(void) {
    __builtin_cpu_init();
    return !!__builtin_cpu_supports("sse4.2");
}
#else
static uint32_t crc32c_hw(uint32_t crc, const void *buf, uint64_t len) {
    return prl_crc32c_sw(crc, buf, len);
}
static int have_hw(void) { return 0; }
#endif

int prl_crc32c_hw(void) {
    static int hw = -1;
    if (hw < 0) hw = have_hw();
    return hw;
}

uint32_t prl_crc32c(uint32_t crc, const void *buf, uint64_t len) {
    return prl_crc32c_hw() ? crc32c_hw(crc, buf, len) : prl_crc32c_sw(crc, buf, len);
}
