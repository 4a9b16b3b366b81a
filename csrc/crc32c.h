/* crc32c.h — CRC-32C (Castagnoli), hardware instruction where the CPU has it. */
#ifndef PRL_CRC32C_H
#define PRL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (the CRC of the bytes before `buf`; 0 for none) over `len`
 * bytes.  prl_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t prl_crc32c(uint32_t crc, const void *buf, uint64_t len);
/* The portable table version, exported so tests can compare both. */
uint32_t prl_crc32c_sw(uint32_t crc, const void *buf, uint64_t len);
/* What prl_crc32c uses: 0 the tables, 1 the SSE4.2 instruction, 2 that and
 * AVX-512 carry-less multiplication (long buffers). */
int prl_crc32c_hw(void);
/* prl_crc32c as done at `level` (at most prl_crc32c_hw()): tests compare them. */
uint32_t prl_crc32c_at(int level, uint32_t crc, const void *buf, uint64_t len);

#endif
