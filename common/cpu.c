/* cpu.c: run-time SIMD detection. __builtin_cpu_supports also checks that the OS saves the wide
 * registers (XCR0), so a level reported here is usable. */
#include "common/cpu.h"

#include <stdlib.h>
#include <string.h>

vs_simd_level vs_cpu_simd_supported(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return VS_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return VS_SIMD_AVX2;
#endif
    return VS_SIMD_SCALAR;
}

vs_simd_level vs_cpu_simd_level(void)
{
    static int cached = -1; /* benign race: every thread computes the same value */
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level >= 0)
        return (vs_simd_level)level;
    level = (int)vs_cpu_simd_supported();
    const char *cap = getenv("VS_SIMD");
    if (cap != NULL) {
        int want = level;
        if (strcmp(cap, "scalar") == 0)
            want = VS_SIMD_SCALAR;
        else if (strcmp(cap, "avx2") == 0)
            want = VS_SIMD_AVX2;
        else if (strcmp(cap, "avx512") == 0)
            want = VS_SIMD_AVX512;
        if (want < level)
            level = want;
    }
    __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    return (vs_simd_level)level;
}

const char *vs_simd_level_name(vs_simd_level level)
{
    switch (level) {
    case VS_SIMD_SCALAR:
        return "scalar";
    case VS_SIMD_AVX2:
        return "avx2";
    case VS_SIMD_AVX512:
        return "avx512";
    default:
        return "unknown";
    }
}
