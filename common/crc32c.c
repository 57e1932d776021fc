/* crc32c.c: CRC-32C with a run-time choice between the SSE4.2 instruction and a portable table loop.
 *
 * Notation: raw(s, data) is the bare reflected shift register (no inversion): for each byte d,
 * s = T[(s ^ d) & 0xff] ^ (s >> 8), T[b] being b shifted through 8 steps of the polynomial. The CRC is
 * ~raw(~crc, data). raw is affine in s: raw(s, D) = raw(s, zeros(|D|)) ^ raw(0, D), and
 * raw(s, zeros(L)) is linear in s, so it is four 256-entry lookups ("advance" tables built from the 32
 * images of the basis vectors). That lets the hardware path cut a block into three equal parts A, B, C
 * of L bytes, run three independent CRC32 chains (the instruction has latency 3 and throughput 1, so
 * three chains keep it busy) and join them: raw(s, ABC) = adv(adv(sA) ^ sB) ^ sC with sA = raw(s, A),
 * sB = raw(0, B), sC = raw(0, C).
 * The portable path is slicing-by-8: Tk[b] is byte b followed by k zero bytes, so eight lookups consume
 * eight bytes. Tables are computed once (pthread_once); nothing here is copied from other code.
 * Not here: non-x86 hardware CRC (ARMv8 crc32c* would slot in as another raw function). */
#include "common/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define VS_CRC_HAVE_X86 1
#endif

#define POLY 0x82F63B78u /* x^32 + x^28 + x^27 + ... + 1 (Castagnoli), bit-reflected */

/* Bytes per stream of the three-way hardware blocks: big blocks for the bulk, small ones for the
 * middle of short buffers. Multiples of 8. */
#define BIG_L 2048
#define SMALL_L 256

typedef uint32_t (*raw_fn)(uint32_t s, const unsigned char *p, size_t n);

static uint32_t slice8[8][256];  /* slice8[k][b]: raw(0, {b, 0 x k}) */
static uint32_t adv_big[4][256]; /* adv_big[k][b]: raw(b << 8k, zeros(BIG_L)) */
static uint32_t adv_small[4][256];
static raw_fn raw_impl;
static const char *impl_name;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* ---- tables ------------------------------------------------------------------------------------ */

static uint32_t zeros_advance_slow(uint32_t s, size_t n_bytes)
{
    for (size_t i = 0; i < n_bytes; i++)
        s = slice8[0][s & 0xff] ^ (s >> 8);
    return s;
}

static void build_advance(uint32_t tab[4][256], size_t n_bytes)
{
    uint32_t basis[32];
    for (int i = 0; i < 32; i++)
        basis[i] = zeros_advance_slow(1u << i, n_bytes);
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if (b & (1 << j))
                    v ^= basis[8 * k + j];
            tab[k][b] = v;
        }
}

static inline uint32_t advance(const uint32_t tab[4][256], uint32_t s)
{
    return tab[0][s & 0xff] ^ tab[1][(s >> 8) & 0xff] ^ tab[2][(s >> 16) & 0xff] ^ tab[3][s >> 24];
}

/* ---- portable: slicing-by-8 -------------------------------------------------------------------- */

static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t raw_portable(uint32_t s, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = le32(p) ^ s, hi = le32(p + 4);
        s = slice8[7][lo & 0xff] ^ slice8[6][(lo >> 8) & 0xff] ^ slice8[5][(lo >> 16) & 0xff] ^
            slice8[4][lo >> 24] ^ slice8[3][hi & 0xff] ^ slice8[2][(hi >> 8) & 0xff] ^
            slice8[1][(hi >> 16) & 0xff] ^ slice8[0][hi >> 24];
    }
    for (; n > 0; p++, n--)
        s = slice8[0][(s ^ *p) & 0xff] ^ (s >> 8);
    return s;
}

/* ---- SSE4.2 ------------------------------------------------------------------------------------ */

#ifdef VS_CRC_HAVE_X86

#define VS_SSE42 __attribute__((target("sse4.2")))

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian host: the instruction consumes the low byte first */
    return v;
}

/* Three chains over [p, p+L), [p+L, p+2L), [p+2L, p+3L); returns raw(s, those 3L bytes). */
VS_SSE42 __attribute__((always_inline)) static inline uint32_t
three_way(uint32_t s, const unsigned char *p, size_t len, const uint32_t tab[4][256])
{
    uint64_t a = s, b = 0, c = 0;
    const unsigned char *pb = p + len, *pc = p + 2 * len;
    for (size_t i = 0; i < len; i += 8) {
        a = _mm_crc32_u64(a, load64(p + i));
        b = _mm_crc32_u64(b, load64(pb + i));
        c = _mm_crc32_u64(c, load64(pc + i));
    }
    return advance(tab, advance(tab, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
}

VS_SSE42 static uint32_t raw_sse42(uint32_t s, const unsigned char *p, size_t n)
{
    for (; n > 0 && ((uintptr_t)p & 7) != 0; p++, n--)
        s = _mm_crc32_u8(s, *p);
    for (; n >= 3 * BIG_L; p += 3 * BIG_L, n -= 3 * BIG_L)
        s = three_way(s, p, BIG_L, adv_big);
    for (; n >= 3 * SMALL_L; p += 3 * SMALL_L, n -= 3 * SMALL_L)
        s = three_way(s, p, SMALL_L, adv_small);
    uint64_t s64 = s;
    for (; n >= 8; p += 8, n -= 8)
        s64 = _mm_crc32_u64(s64, load64(p));
    s = (uint32_t)s64;
    for (; n > 0; p++, n--)
        s = _mm_crc32_u8(s, *p);
    return s;
}

#endif /* VS_CRC_HAVE_X86 */

/* ---- dispatch ---------------------------------------------------------------------------------- */

static void init_tables(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = (c >> 1) ^ ((c & 1u) ? POLY : 0u);
        slice8[0][b] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int b = 0; b < 256; b++) {
            uint32_t prev = slice8[k - 1][b];
            slice8[k][b] = (prev >> 8) ^ slice8[0][prev & 0xff];
        }
    build_advance(adv_big, BIG_L);
    build_advance(adv_small, SMALL_L);
    raw_impl = raw_portable;
    impl_name = "portable";
#ifdef VS_CRC_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        raw_impl = raw_sse42;
        impl_name = "sse4.2";
    }
#endif
}

uint32_t vs_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&tables_once, init_tables);
    return ~raw_impl(~crc, data, n);
}

uint32_t vs_crc32c_portable(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&tables_once, init_tables);
    return ~raw_portable(~crc, data, n);
}

const char *vs_crc32c_impl(void)
{
    pthread_once(&tables_once, init_tables);
    return impl_name;
}
