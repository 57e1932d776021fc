/* vecshard-scanbw: how close the 4-bit fast-scan kernel comes to the memory bandwidth of one core.
 * Measures (1) the single-core streaming read bandwidth (AVX-512 or AVX2 loads summed, the same memory
 * the kernel will read), (2) the fast-scan kernel over the same bytes of codes (one long list, a
 * threshold that admits nothing, as in a scan whose heap is full), and prints both in GB/s with the
 * ratio. The buffer is much larger than the caches, so both are DRAM-bound. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/cli/timing.h"
#include "common/cpu.h"
#include "shard/index/fastscan.h"

static uint16_t never(void *ctx, size_t pos, uint16_t sum)
{
    (void)ctx, (void)pos, (void)sum;
    return 0;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw"))) static uint64_t read_avx512(const uint8_t *p, size_t n)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        _mm_prefetch((const char *)(p + i + 4096), _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 192));
    }
    return (uint64_t)_mm512_reduce_add_epi64(
        _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}
#endif

static uint64_t read_scalar(const uint8_t *p, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return s;
}

int main(int argc, char **argv)
{
    size_t mib = 1024;
    uint32_t m = 32;
    int reps = 3, c;
    static const struct option lo[] = {{"mib", required_argument, 0, 'b'},
                                       {"m", required_argument, 0, 'm'},
                                       {"reps", required_argument, 0, 'r'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'b')
            mib = strtoul(optarg, NULL, 10);
        else if (c == 'm')
            m = (uint32_t)strtoul(optarg, NULL, 10);
        else if (c == 'r')
            reps = atoi(optarg);
        else {
            printf("usage: vecshard-scanbw [--mib 1024] [--m 32] [--reps 3]\n"
                   "Fast-scan kernel throughput on codes in DRAM vs the streaming read bandwidth of one "
                   "core.\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (m == 0 || m > VS_FS_MAX_M || mib == 0 || reps <= 0) {
        fprintf(stderr, "vecshard-scanbw: need 1 <= m <= %u, --mib >= 1, --reps >= 1\n", VS_FS_MAX_M);
        return 2;
    }
    size_t block = (size_t)vs_fs_pairs(m) * VS_FS_BLOCK;
    size_t n_vec = mib * 1024 * 1024 / block * VS_FS_BLOCK, bytes = vs_fs_code_bytes(n_vec, m);
    uint8_t *codes = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (codes == NULL) {
        fprintf(stderr, "vecshard-scanbw: out of memory for %zu bytes\n", bytes);
        return 1;
    }
    for (size_t i = 0; i < bytes; i++)
        codes[i] = (uint8_t)(i * 2654435761u >> 13);
    float lut[VS_FS_MAX_M * 16];
    for (uint32_t i = 0; i < m * 16; i++)
        lut[i] = (float)((i * 7919u) % 97);
    uint8_t qlut[VS_FS_MAX_M / 2 * 64 + 64];
    float bias, scale;
    vs_fs_quantize_lut(lut, m, qlut, &bias, &scale);
    vs_fs_scan_fn scan = vs_fs_scan();
    double best_read = 0, best_scan = 0;
    uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = vs_now_ns();
#if defined(__x86_64__)
        sink += vs_cpu_simd_level() >= VS_SIMD_AVX512 ? read_avx512(codes, bytes) : read_scalar(codes, bytes);
#else
        sink += read_scalar(codes, bytes);
#endif
        double gbs = (double)bytes / (double)(vs_now_ns() - t0);
        best_read = gbs > best_read ? gbs : best_read;
        t0 = vs_now_ns();
        sink += scan(codes, n_vec, m, qlut, 0, never, NULL);
        gbs = (double)bytes / (double)(vs_now_ns() - t0);
        best_scan = gbs > best_scan ? gbs : best_scan;
    }
    printf(
        "{\"bench\":\"scanbw\",\"simd\":\"%s\",\"m\":%u,\"code_bytes_per_vector\":%u,\"buffer_mib\":%zu,"
        "\"read_gbs\":%.2f,\"scan_gbs\":%.2f,\"scan_gvec_s\":%.3f,\"scan_over_read\":%.3f,\"sink\":%llu}\n",
        vs_simd_level_name(vs_cpu_simd_level()), m, (m + 1) / 2, mib, best_read, best_scan,
        best_scan / ((double)block / VS_FS_BLOCK), best_scan / best_read, (unsigned long long)(sink & 1));
    free(codes);
    return 0;
}
