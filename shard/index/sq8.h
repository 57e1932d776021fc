/* sq8.h: 8-bit scalar quantiser, one byte per dimension, used by ",RSQ8" to re-rank candidates when
 * the float vectors do not fit in memory: d bytes a vector instead of 4d. Each dimension i maps
 * [min_i, min_i + 255*step_i] linearly onto 0..255 (min and max learnt on the training set; values
 * outside are clamped). */
#ifndef VS_SHARD_INDEX_SQ8_H
#define VS_SHARD_INDEX_SQ8_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_sq8 {
    uint32_t d;
    float *vmin; /* d, borrowed or owned (see owned) */
    float *step; /* d */
    int owned;
} vs_sq8_t;

/* Learns per-dimension ranges from n vectors; returns 0 on success, -1 when out of memory. */
int vs_sq8_train(vs_sq8_t *sq, uint32_t d, const float *x, size_t n);
void vs_sq8_fini(vs_sq8_t *sq);
void vs_sq8_encode(const vs_sq8_t *sq, const float *x, uint8_t *code);
void vs_sq8_decode(const vs_sq8_t *sq, const uint8_t *code, float *out);

/* The quantiser's section "sq8.params" (d min values then d steps, float32) in an index file.
 * read points sq into the mapping (not owned) after checking the size and that every value is finite
 * and every step positive; VS_ERR_CORRUPT naming path and the section otherwise. */
struct vs_ifile_writer;
struct vs_ifile;
vs_status vs_sq8_write_section(const vs_sq8_t *sq, struct vs_ifile_writer *w, char err[VS_ERR_LEN]);
vs_status vs_sq8_read_section(vs_sq8_t *sq, uint32_t d, const struct vs_ifile *f, const char *path,
                              char err[VS_ERR_LEN]);

/* Asymmetric distance kernels between a prepared float query and one code (d bytes), for traversal on
 * codes (HNSW{M},SQ8). With a_i = (q_i - min_i) / step_i and w_i = step_i^2 the squared L2 distance to
 * the decoded vector is l2w(a, w, code) = sum_i w_i (a_i - code_i)^2; with a_i = q_i step_i the inner
 * product is <q, min> + ip(a, code). Scalar, AVX2 and AVX-512 variants, chosen once at run time
 * (common/cpu.h); never NULL. */
typedef float (*vs_sq8_l2w_fn)(const float *a, const float *w, const uint8_t *code, size_t d);
typedef float (*vs_sq8_ip_fn)(const float *a, const uint8_t *code, size_t d);
vs_sq8_l2w_fn vs_sq8_l2w_kernel(void);
vs_sq8_ip_fn vs_sq8_ip_kernel(void);

/* sum_i code_i * q_i for d unsigned codes and a query quantised to signed bytes: exact integer
 * arithmetic (|sum| < 2^31 for d < 65536), so every variant (AVX-512 VNNI, AVX2, scalar) returns the same
 * value. What HNSW{M},SQ8 traverses with: one VNNI instruction multiplies and adds 64 byte pairs. */
typedef int32_t (*vs_sq8_dot_fn)(const uint8_t *code, const int8_t *q, size_t d);
vs_sq8_dot_fn vs_sq8_dot_kernel(void);
/* The variant of a SIMD level (VS_SIMD_AVX512 means VNNI, NULL without it), for tests. */
vs_sq8_dot_fn vs_sq8_dot_kernel_for(int level);

#endif
