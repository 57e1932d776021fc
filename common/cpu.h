/* cpu.h: which SIMD level this CPU (and its OS) supports, decided once at run time so that one
 * binary runs on any x86-64 and uses AVX-512 where present. The environment variable VS_SIMD
 * (scalar | avx2 | avx512) caps the level, for tests and for benchmarking one path against another. */
#ifndef VS_COMMON_CPU_H
#define VS_COMMON_CPU_H

typedef enum vs_simd_level {
    VS_SIMD_SCALAR = 0,
    VS_SIMD_AVX2 = 1,   /* AVX2 + FMA */
    VS_SIMD_AVX512 = 2, /* AVX-512 F, BW, DQ, VL */
    VS_SIMD_LEVELS_
} vs_simd_level;

/* Highest level the CPU supports (ignores VS_SIMD). Thread-safe. */
vs_simd_level vs_cpu_simd_supported(void);

/* Level in use: the supported level, capped by VS_SIMD when it is set. Thread-safe, cached. */
vs_simd_level vs_cpu_simd_level(void);

/* "scalar", "avx2", "avx512". */
const char *vs_simd_level_name(vs_simd_level level);

#endif
