/* grow.h: growing an array by doubling, for buffers reused across calls (per-thread scratch, the write log
 * fold's entries). Header-only. */
#ifndef VS_COMMON_GROW_H
#define VS_COMMON_GROW_H

#include <stdlib.h>

/* Grows *p, an array of *cap elements of elem bytes, to at least need elements: the capacity doubles from
 * first (or from *cap when non-zero) until it covers need; contents are kept. 0 on success, -1 when out
 * of memory or when the size overflows (*p and *cap then unchanged). */
static inline int vs_grow(void **p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c < need) {
        if (c > ((size_t)-1) / 2)
            return -1;
        c *= 2;
    }
    if (elem && c > ((size_t)-1) / elem)
        return -1;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

#endif
