/* ivf_internal.h (private to shard/index): the IVF index's layout, shared by ivf.c (build, search,
 * persistence) and fresh.c (writes since the version was built, searched with the lists). */
#ifndef VS_SHARD_INDEX_IVF_INTERNAL_H
#define VS_SHARD_INDEX_IVF_INTERNAL_H

#include "shard/index/attrs.h"
#include "shard/index/coarse.h"
#include "shard/index/ivf.h"
#include "shard/index/pq.h"
#include "shard/index/sq8.h"

typedef struct ivf_list {
    size_t n, cap;
    uint8_t *codes;  /* FLAT: n*d floats; PQ8: n*m bytes; PQ4fs: blocks of 32 */
    int64_t *ids;    /* n */
    uint8_t *refine; /* RFlat: n*d floats; RSQ8: n*d bytes */
    int owned;       /* 1 while building; 0 when pointing into a mapped file */
    size_t first;    /* position of item 0 in the index's item order (lists in order; attributes) */
} ivf_list_t;

struct vs_ivf {
    uint32_t d, nlist;
    vs_metric metric;
    vs_factory_spec_t spec;
    int trained;
    float *centroids; /* nlist*d */
    vs_pq_t pq;
    float *term2;       /* L2 + 8-bit PQ: nlist*m*ksub, |p_jc|^2 + 2<c_l,j, p_jc> */
    float *cbt;         /* 4-bit fast-scan PQ: the codebook transposed (fastscan.h) */
    vs_coarse_t coarse; /* the lists a query probes (coarse.h), over centroids */
    vs_sq8_t sq8;
    ivf_list_t *lists;
    size_t ntotal;
    vs_attrs_summary_t *summary; /* per-list attribute summaries (attrs.h), NULL without attributes */
    uint32_t *pos_list;          /* with attributes: the list holding position i << VS_IVF_POS_SHIFT */
    size_t max_list; /* longest list (sizes the scan scratch; kept by add and load, so search is O(nprobe)) */
    uint64_t seed;
    struct vs_refine_disk *rdisk; /* refine copies read from the file (refine_disk.h), or NULL */
};

#define VS_IVF_POS_SHIFT 6u

/* Bytes of one vector's refine copy (0 without refine). */
static inline size_t vs_ivf_refine_bytes(const vs_ivf_t *ivf)
{
    switch (ivf->spec.refine) {
    case VS_REFINE_FLAT:
        return ivf->d * sizeof(float);
    case VS_REFINE_SQ8:
        return ivf->d;
    default:
        return 0;
    }
}

#endif
