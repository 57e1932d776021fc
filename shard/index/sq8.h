/* sq8.h: 8-bit scalar quantiser, one byte per dimension, used by ",RSQ8" to re-rank candidates when
 * the float vectors do not fit in memory: d bytes a vector instead of 4d. Each dimension i maps
 * [min_i, min_i + 255*step_i] linearly onto 0..255 (min and max learnt on the training set; values
 * outside are clamped). */
#ifndef VS_SHARD_INDEX_SQ8_H
#define VS_SHARD_INDEX_SQ8_H

#include <stddef.h>
#include <stdint.h>

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

#endif
