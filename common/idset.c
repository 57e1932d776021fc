/* idset.c: the exclusion set (idset.h). */
#include "common/idset.h"

#include <stdlib.h>
#include <string.h>

vs_status vs_idset_create(const int64_t *ids, size_t n, vs_idset_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "excluded id %zu is negative (%lld)", i,
                           (long long)ids[i]);
    size_t cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    vs_idset_t *s = calloc(1, sizeof *s);
    int64_t *slots = s ? malloc(cap * sizeof *slots) : NULL;
    uint64_t *bits = slots ? calloc(cap / 64, sizeof *bits) : NULL;
    if (!bits) {
        free(slots);
        free(s);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for a set of %zu excluded ids", n);
    }
    memset(slots, 0xff, cap * sizeof *slots); /* -1 everywhere: empty */
    s->mask = cap - 1;
    s->slots = slots;
    s->bits = bits;
    for (size_t j = 0; j < n; j++) {
        uint64_t h = vs_idset_hash(ids[j]) & s->mask, i = h;
        while (slots[i] >= 0 && slots[i] != ids[j])
            i = (i + 1) & s->mask;
        if (slots[i] < 0) {
            slots[i] = ids[j];
            bits[h >> 6] |= 1ull << (h & 63);
            s->n++;
        }
    }
    *out = s;
    return VS_OK;
}

void vs_idset_destroy(vs_idset_t *s)
{
    if (!s)
        return;
    free(s->slots);
    free(s->bits);
    free(s);
}
