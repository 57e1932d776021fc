/* crc32c.h: CRC-32C (Castagnoli), the checksum of vecshard's files (index sections, headers, tables).
 *
 * The value is the standard CRC-32C (iSCSI, ext4, LevelDB): reflected polynomial 0x82F63B78, initial
 * value and final xor 0xFFFFFFFF, so vs_crc32c(0, "123456789", 9) == 0xE3069283. The pre/post
 * inversion is done inside each call, which makes the function chainable:
 *   vs_crc32c(vs_crc32c(0, a, na), b, nb) == vs_crc32c(0, a || b, na + nb).
 * Key choice: the SSE4.2 CRC32 instruction, three interleaved streams recombined with precomputed
 * "advance by L zero bytes" tables, chosen once at run time (one binary runs on any x86-64); elsewhere a
 * portable slicing-by-8 loop. Not here: other polynomials (zlib's CRC-32 is a different checksum),
 * combining two independent CRCs by length (crc32_combine), PCLMUL folding. */
#ifndef VS_COMMON_CRC32C_H
#define VS_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start, or a previous return value) over n bytes at data (borrowed; may be NULL
 * when n == 0) and returns the new CRC. Any alignment. Thread-safe; the first call builds the tables
 * (8 KiB + 8 KiB, once, under pthread_once). Hardware path: several GB/s per core. */
uint32_t vs_crc32c(uint32_t crc, const void *data, size_t n);

/* The same function computed by the portable table loop, whatever the CPU; for tests and benchmarks. */
uint32_t vs_crc32c_portable(uint32_t crc, const void *data, size_t n);

/* Which path vs_crc32c uses on this machine: "sse4.2" or "portable". Never NULL. */
const char *vs_crc32c_impl(void);

#endif
