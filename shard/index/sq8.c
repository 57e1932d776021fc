/* sq8.c: see sq8.h. */
#include "shard/index/sq8.h"

#include <math.h>
#include <stdlib.h>

int vs_sq8_train(vs_sq8_t *sq, uint32_t d, const float *x, size_t n)
{
    float *vmin = malloc(d * sizeof(float)), *step = malloc(d * sizeof(float));
    if (vmin == NULL || step == NULL) {
        free(vmin);
        free(step);
        return -1;
    }
    for (uint32_t i = 0; i < d; i++) {
        float lo = n ? x[i] : 0.0f, hi = lo;
        for (size_t r = 1; r < n; r++) {
            lo = fminf(lo, x[r * d + i]);
            hi = fmaxf(hi, x[r * d + i]);
        }
        vmin[i] = lo;
        step[i] = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    }
    sq->d = d;
    sq->vmin = vmin;
    sq->step = step;
    sq->owned = 1;
    return 0;
}

void vs_sq8_fini(vs_sq8_t *sq)
{
    if (sq->owned) {
        free(sq->vmin);
        free(sq->step);
    }
    sq->vmin = sq->step = NULL;
    sq->owned = 0;
}

void vs_sq8_encode(const vs_sq8_t *sq, const float *x, uint8_t *code)
{
    for (uint32_t i = 0; i < sq->d; i++) {
        long c = lrintf((x[i] - sq->vmin[i]) / sq->step[i]);
        code[i] = (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : c);
    }
}

void vs_sq8_decode(const vs_sq8_t *sq, const uint8_t *code, float *out)
{
    for (uint32_t i = 0; i < sq->d; i++)
        out[i] = sq->vmin[i] + (float)code[i] * sq->step[i];
}
