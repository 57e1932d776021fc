/* ivf.c: IVF-Flat, IVF-PQ (8-bit ADC) and IVF-PQ fast-scan (4-bit), with optional refine. See ivf.h.
 *
 * Search of one query: (1) distances to the nlist centroids, keep the nprobe best; (2) for each probed
 * list build the ADC table in "key" space (smaller is better: squared L2, or negated inner product),
 * scan the list and keep the K' = k*k_factor (refine) or k best estimates in a heap; (3) with refine,
 * recompute those K' candidates exactly (float32 or SQ8) and keep the k best. Batches of queries run
 * one query per task across threads, each worker with its own scratch: nothing is allocated per query. */
#include "shard/index/exact.h"
#include "shard/index/ivf.h"

#include <math.h>

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "common/distance.h"
#include "common/kmeans.h"
#include "common/parallel.h"
#include "common/idset.h"
#include "common/topk.h"
#include "shard/index/arena.h"
#include "shard/index/coarse.h"
#include "shard/index/fastscan.h"
#include "shard/index/ifile.h"
#include "shard/index/fresh_internal.h"
#include "shard/index/ivf_internal.h"
#include "shard/index/pq.h"
#include "shard/index/refine_disk.h"
#include "shard/index/sq8.h"

/* ---- helpers ------------------------------------------------------------------------------------ */

/* Recomputes max_list after lists changed (add, load): O(nlist), never on the search path. */
/* Keeps max_list and each list's first item position (attributes are kept in list order). */
static void update_max_list(vs_ivf_t *ivf)
{
    size_t m = 0, first = 0;
    for (uint32_t l = 0; l < ivf->nlist; l++) {
        ivf->lists[l].first = first;
        first += ivf->lists[l].n;
        if (ivf->lists[l].n > m)
            m = ivf->lists[l].n;
    }
    ivf->max_list = m;
}

static size_t code_bytes(const vs_ivf_t *ivf, size_t n)
{
    switch (ivf->spec.codec) {
    case VS_CODEC_FLAT:
        return n * ivf->d * sizeof(float);
    case VS_CODEC_PQ:
        return ivf->spec.fastscan ? vs_fs_code_bytes(n, ivf->pq.m) : n * ivf->pq.m;
    default:
        return 0;
    }
}

/* The coarse metric: L2 for L2 data, inner product for IP and (normalised) cosine data. */
static vs_metric coarse_metric(const vs_ivf_t *ivf)
{
    return ivf->metric == VS_METRIC_L2 ? VS_METRIC_L2 : VS_METRIC_IP;
}

uint32_t vs_ivf_nlist(const vs_ivf_t *ivf)
{
    return ivf->nlist;
}

const float *vs_ivf_centroids(const vs_ivf_t *ivf)
{
    return ivf->trained ? ivf->centroids : NULL;
}

size_t vs_ivf_list_size(const vs_ivf_t *ivf, uint32_t list)
{
    return list < ivf->nlist ? ivf->lists[list].n : 0;
}

vs_status vs_ivf_create(uint32_t dim, vs_metric metric, const vs_factory_spec_t *spec, vs_ivf_t **out,
                        char err[VS_ERR_LEN])
{
    if (spec->type != VS_INDEX_IVF)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "not an IVF factory string");
    if (spec->codec == VS_CODEC_SQ8)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "IVF{n},SQ8 is not built; use PQ{m}x4fs,RSQ8 or IVF{n},Flat");
    vs_ivf_t *ivf = calloc(1, sizeof *ivf);
    if (ivf == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory");
    ivf->d = dim;
    ivf->metric = metric;
    ivf->spec = *spec;
    ivf->nlist = spec->nlist;
    ivf->seed = 1234;
    if (spec->codec == VS_CODEC_PQ) {
        vs_status st = vs_pq_init(&ivf->pq, dim, spec->pq_m, spec->pq_nbits, err);
        if (st == VS_OK && spec->fastscan && spec->pq_m > VS_FS_MAX_M)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fast-scan PQ supports m <= %u, not %u", VS_FS_MAX_M,
                         spec->pq_m);
        if (st != VS_OK) {
            free(ivf);
            return st;
        }
    }
    ivf->lists = calloc(ivf->nlist, sizeof *ivf->lists);
    if (ivf->lists == NULL) {
        free(ivf);
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for %u lists", spec->nlist);
    }
    for (uint32_t l = 0; l < ivf->nlist; l++)
        ivf->lists[l].owned = 1;
    *out = ivf;
    return VS_OK;
}

void vs_ivf_destroy(vs_ivf_t *ivf)
{
    if (ivf == NULL)
        return;
    for (uint32_t l = 0; l < ivf->nlist; l++) {
        if (ivf->lists[l].owned) {
            free(ivf->lists[l].codes);
            free(ivf->lists[l].ids);
            free(ivf->lists[l].refine);
        }
    }
    free(ivf->lists);
    vs_attrs_summary_destroy(ivf->summary);
    free(ivf->pos_list);
    free(ivf->centroids);
    free(ivf->term2);
    free(ivf->cbt);
    vs_coarse_fini(&ivf->coarse);
    vs_pq_fini(&ivf->pq);
    vs_sq8_fini(&ivf->sq8);
    vs_refine_disk_close(ivf->rdisk);
    free(ivf);
}

/* A malloc'd copy of n bytes of src, or NULL when src is NULL; *fail is set when malloc fails. */
static void *dup_bytes(const void *src, size_t n, int *fail)
{
    if (src == NULL)
        return NULL;
    void *d = malloc(n ? n : 1);
    if (d == NULL)
        *fail = 1;
    else
        memcpy(d, src, n);
    return d;
}

vs_status vs_ivf_clone_empty(const vs_ivf_t *src, vs_ivf_t **out, char err[VS_ERR_LEN])
{
    if (!src->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "IVF index must be trained before it is cloned");
    vs_ivf_t *ivf = NULL;
    vs_status st = vs_ivf_create(src->d, src->metric, &src->spec, &ivf, err);
    if (st != VS_OK)
        return st;
    const uint32_t d = src->d, nl = src->nlist;
    int fail = 0;
    ivf->seed = src->seed;
    ivf->centroids = dup_bytes(src->centroids, (size_t)nl * d * sizeof(float), &fail);
    if (src->spec.codec == VS_CODEC_PQ) {
        ivf->pq.centroids = dup_bytes(src->pq.centroids,
                                      (size_t)src->pq.m * src->pq.ksub * src->pq.dsub * sizeof(float), &fail);
        ivf->pq.owned = 1;
    }
    if (src->spec.refine == VS_REFINE_SQ8) {
        ivf->sq8.d = d;
        ivf->sq8.vmin = dup_bytes(src->sq8.vmin, d * sizeof(float), &fail);
        ivf->sq8.step = dup_bytes(src->sq8.step, d * sizeof(float), &fail);
        ivf->sq8.owned = 1;
    }
    /* derived tables are copied, not recomputed: bit-identical by construction, and the PCA costs
     * sgemms per clone */
    ivf->term2 =
        dup_bytes(src->term2, src->term2 ? (size_t)nl * src->pq.m * src->pq.ksub * sizeof(float) : 0, &fail);
    ivf->cbt =
        dup_bytes(src->cbt, src->cbt ? (size_t)src->pq.m * src->pq.dsub * 16 * sizeof(float) : 0, &fail);
    if (!fail && ivf->centroids && vs_coarse_copy(&ivf->coarse, &src->coarse, ivf->centroids, err) != VS_OK)
        fail = 1;
    if (fail) {
        vs_ivf_destroy(ivf);
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory cloning the trained state");
    }
    ivf->trained = 1;
    *out = ivf;
    return VS_OK;
}

/* term2[l][j][c] = |p_jc|^2 + 2 <c_l,j , p_jc> for L2 with PQ (see ivf.h). */
/* The coarse quantizer's tables (coarse.h) over the current centroids. */
static vs_status compute_cnorm(vs_ivf_t *ivf, char *err)
{
    vs_coarse_fini(&ivf->coarse);
    return vs_coarse_init(&ivf->coarse, ivf->metric, ivf->d, ivf->nlist, ivf->centroids,
                          ivf->spec.coarse_hnsw_m, err);
}

static vs_status compute_term2(vs_ivf_t *ivf, char *err)
{
    vs_status hs = compute_cnorm(ivf, err);
    if (hs != VS_OK)
        return hs;
    if (ivf->spec.codec == VS_CODEC_PQ && ivf->spec.fastscan) {
        /* 4-bit tables are cheaper to compute from the residual (d FMAs per list with a codebook that
         * stays in cache) than to read from a precomputed nlist*m*16 table in DRAM */
        float *cbt = malloc((size_t)ivf->pq.m * ivf->pq.dsub * 16 * sizeof(float));
        if (cbt == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for the codebook");
        vs_fs_transpose_codebook(ivf->pq.centroids, ivf->pq.m, ivf->pq.dsub, cbt);
        free(ivf->cbt);
        ivf->cbt = cbt;
        return VS_OK;
    }
    if (ivf->spec.codec != VS_CODEC_PQ || ivf->metric != VS_METRIC_L2)
        return VS_OK;
    const vs_pq_t *pq = &ivf->pq;
    size_t per_list = (size_t)pq->m * pq->ksub;
    float *t = malloc(ivf->nlist * per_list * sizeof(float));
    float *norms = malloc(per_list * sizeof(float));
    if (t == NULL || norms == NULL) {
        free(t);
        free(norms);
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for precomputed tables");
    }
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    for (size_t jc = 0; jc < per_list; jc++)
        norms[jc] = kern->norm_sqr(pq->centroids + jc * pq->dsub, pq->dsub);
    for (uint32_t l = 0; l < ivf->nlist; l++) {
        float *tl = t + l * per_list;
        vs_pq_lut_ip(pq, ivf->centroids + (size_t)l * ivf->d, tl);
        for (size_t jc = 0; jc < per_list; jc++)
            tl[jc] = norms[jc] + 2.0f * tl[jc];
    }
    free(norms);
    free(ivf->term2);
    ivf->term2 = t;
    return VS_OK;
}

/* A copy of x, normalised for cosine; or x itself. *owned tells whether to free it. */
static const float *prepared(const vs_ivf_t *ivf, const float *x, size_t n, float **owned, char *err,
                             vs_status *st)
{
    *owned = NULL;
    *st = VS_OK;
    if (ivf->metric != VS_METRIC_COSINE)
        return x;
    float *c = malloc(n * ivf->d * sizeof(float));
    if (c == NULL) {
        *st = vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for %zu vectors", n);
        return NULL;
    }
    memcpy(c, x, n * ivf->d * sizeof(float));
    vs_normalize_rows(c, n, ivf->d);
    *owned = c;
    return c;
}

/* ---- train -------------------------------------------------------------------------------------- */

static vs_status ivf_train(vs_ivf_t *ivf, size_t n, const float *x_in, size_t n_threads,
                           const vs_progress_cb_t *progress, char *err)
{
    const uint32_t d = ivf->d;
    if (n < ivf->nlist)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "IVF%u needs at least %u training vectors, got %zu",
                       ivf->nlist, ivf->nlist, n);
    float *owned;
    vs_status st;
    const float *x = prepared(ivf, x_in, n, &owned, err, &st);
    if (x == NULL)
        return st;
    float *cent = malloc((size_t)ivf->nlist * d * sizeof(float));
    if (cent == NULL) {
        free(owned);
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for centroids");
    }
    /* 10 Lloyd iterations from random seeds, as FAISS's IVF coarse quantizer (Level1Quantizer sets
     * cp.niter = 10): large clusterings gain little from more or from k-means++, whose sequential seeding
     * would cost a sixth of the build here; and recall comparisons stay like for like */
    vs_kmeans_params_t kp = {.k = ivf->nlist,
                             .n_iter = 10,
                             .random_init = 1,
                             .max_points_per_centroid = 256,
                             .seed = ivf->seed,
                             .spherical = ivf->metric == VS_METRIC_COSINE,
                             .n_threads = n_threads};
    st = vs_kmeans_train(x, n, d, &kp, cent, NULL, progress, err);
    if (st != VS_OK) {
        free(owned);
        free(cent);
        return st;
    }
    free(ivf->centroids);
    ivf->centroids = cent;

    /* codec and refine training on a sample of residuals */
    size_t ns = n < 65536 ? n : 65536;
    if (ivf->spec.codec == VS_CODEC_PQ || ivf->spec.refine == VS_REFINE_SQ8) {
        float *sample = malloc(ns * d * sizeof(float));
        int32_t *lab = malloc(ns * sizeof(int32_t));
        if (sample == NULL || lab == NULL) {
            free(sample);
            free(lab);
            free(owned);
            return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for the training sample");
        }
        double stride = (double)n / (double)ns;
        for (size_t i = 0; i < ns; i++)
            memcpy(sample + i * d, x + (size_t)((double)i * stride) * d, d * sizeof(float));
        if (ivf->spec.refine == VS_REFINE_SQ8) {
            vs_sq8_fini(&ivf->sq8);
            if (vs_sq8_train(&ivf->sq8, d, sample, ns) != 0)
                st = vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory for SQ8");
        }
        if (st == VS_OK && ivf->spec.codec == VS_CODEC_PQ) {
            /* PQ training reads at most 256 * ksub points: residuals of those only (an assignment pass
             * over the whole sample would cost as much as a k-means iteration) */
            size_t npq = ns < (size_t)ivf->pq.ksub * 256 ? ns : (size_t)ivf->pq.ksub * 256;
            double pstride = (double)ns / (double)npq;
            for (size_t i = 0; i < npq; i++) /* source rows are at or after i: forward copy is safe */
                memmove(sample + i * d, sample + (size_t)((double)i * pstride) * d, d * sizeof(float));
            st = vs_kmeans_nearest(sample, npq, cent, ivf->nlist, d, coarse_metric(ivf), 1, n_threads, lab,
                                   NULL, err);
            for (size_t i = 0; st == VS_OK && i < npq; i++)
                for (uint32_t j = 0; j < d; j++)
                    sample[i * d + j] -= cent[(size_t)lab[i] * d + j];
            if (st == VS_OK)
                st = vs_pq_train(&ivf->pq, sample, npq, ivf->seed + 1, n_threads, NULL, err);
        }
        free(sample);
        free(lab);
    }
    free(owned);
    if (st == VS_OK)
        st = compute_term2(ivf, err);
    if (st == VS_OK)
        ivf->trained = 1;
    return st;
}

/* ---- add ---------------------------------------------------------------------------------------- */

/* A list of a loaded index points into the read-only mapping: the first add copies it to the heap. */
static vs_status list_own(const vs_ivf_t *ivf, ivf_list_t *L, char *err)
{
    size_t cap = L->n ? L->n : 1, cb = code_bytes(ivf, cap), rb = vs_ivf_refine_bytes(ivf);
    uint8_t *codes = malloc(cb ? cb : 1);
    int64_t *ids = malloc(cap * sizeof(int64_t));
    uint8_t *refine = rb ? malloc(cap * rb) : NULL;
    if (codes == NULL || ids == NULL || (rb && refine == NULL)) {
        free(codes);
        free(ids);
        free(refine);
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory copying a list of %zu", L->n);
    }
    memcpy(codes, L->codes, code_bytes(ivf, L->n));
    memset(codes + code_bytes(ivf, L->n), 0, cb - code_bytes(ivf, L->n));
    memcpy(ids, L->ids, L->n * sizeof(int64_t));
    if (rb)
        memcpy(refine, L->refine, L->n * rb);
    L->codes = codes;
    L->ids = ids;
    L->refine = refine;
    L->cap = cap;
    L->owned = 1;
    return VS_OK;
}

static vs_status list_reserve(const vs_ivf_t *ivf, ivf_list_t *L, size_t need, char *err)
{
    if (!L->owned) {
        vs_status st = list_own(ivf, L, err);
        if (st != VS_OK)
            return st;
    }
    if (need <= L->cap)
        return VS_OK;
    size_t cap = L->cap ? L->cap : 32;
    while (cap < need)
        cap *= 2;
    size_t old_cb = code_bytes(ivf, L->cap), new_cb = code_bytes(ivf, cap);
    size_t rb = vs_ivf_refine_bytes(ivf);
    uint8_t *codes = realloc(L->codes, new_cb ? new_cb : 1);
    if (codes == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory growing a list to %zu", cap);
    memset(codes + old_cb, 0, new_cb - old_cb); /* fast-scan packing ORs nibbles into zeroed blocks */
    L->codes = codes;
    int64_t *ids = realloc(L->ids, cap * sizeof(int64_t));
    if (ids == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory growing a list to %zu", cap);
    L->ids = ids;
    if (rb) {
        uint8_t *r = realloc(L->refine, cap * rb);
        if (r == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "IVF: out of memory growing a list to %zu", cap);
        L->refine = r;
    }
    L->cap = cap;
    return VS_OK;
}

#define ADD_CHUNK 65536

vs_status vs_ivf_assign(const vs_ivf_t *ivf, size_t n, const float *x, size_t n_threads, int exact,
                        int32_t *out_lists, char err[VS_ERR_LEN])
{
    if (!ivf->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "IVF index is not trained");
    vs_status st = vs_check_finite(x, n, ivf->d, "vector", err);
    if (st != VS_OK || n == 0)
        return st;
    /* the same blocks and the same call as ivf_add's first pass, so the lists are the ones add picks */
    return vs_coarse_assign(&ivf->coarse, n, x, ADD_CHUNK, n_threads, exact, out_lists, err);
}

/* lists: NULL = assign each vector to its nearest centroid; else the list of each vector (builders
 * that routed vectors by list pass what vs_ivf_assign gave them, so routing and storage agree). */
static vs_status ivf_add(vs_ivf_t *ivf, size_t n, const float *x_in, const int64_t *ids, const int32_t *lists,
                         size_t n_threads, const vs_progress_cb_t *progress, char *err)
{
    const uint32_t d = ivf->d;
    if (!ivf->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "IVF index must be trained before vectors are added");
    if (ivf->rdisk) /* its reads locate items by list positions in the file, which an add would shift */
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                       "IVF index with its refine vectors on disk takes no added vectors (writes go to the "
                       "fresh index)");
    vs_status st = vs_check_finite(x_in, n, d, "vector", err);
    if (st != VS_OK)
        return st;
    for (size_t i = 0; ids && i < n; i++)
        if (ids[i] < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vector %zu has negative id %lld", i,
                           (long long)ids[i]);
    for (size_t i = 0; lists && i < n; i++)
        if (lists[i] < 0 || (uint32_t)lists[i] >= ivf->nlist)
            return vs_errf(err, VS_ERR_OUT_OF_RANGE, "vector %zu: list %d is out of range 0..%u", i, lists[i],
                           ivf->nlist - 1);
    size_t chunk = n < ADD_CHUNK ? n : ADD_CHUNK;
    float *xc = malloc(chunk * d * sizeof(float));
    float *resid = ivf->spec.codec == VS_CODEC_PQ ? malloc(chunk * d * sizeof(float)) : NULL;
    uint8_t *codes = ivf->spec.codec == VS_CODEC_PQ ? malloc(chunk * ivf->pq.m) : NULL;
    int32_t *all_lab = malloc((n ? n : 1) * sizeof(int32_t)), *lab = all_lab;
    size_t *old_n = malloc(ivf->nlist * sizeof(size_t)); /* for the roll-back on failure */
    if (xc == NULL || all_lab == NULL || old_n == NULL ||
        (ivf->spec.codec == VS_CODEC_PQ && (!resid || !codes))) {
        st = vs_errf(err, VS_ERR_NOMEM, "IVF add: out of memory");
        goto done;
    }
    for (uint32_t l = 0; l < ivf->nlist; l++)
        old_n[l] = ivf->lists[l].n;
    const size_t rb = vs_ivf_refine_bytes(ivf);
    /* pass 1: the list of every vector; then each list grows once to its final size (growing by
     * doubling while appending would zero and copy about twice the final bytes) */
    if (lists != NULL)
        memcpy(all_lab, lists, n * sizeof(int32_t));
    else
        st = vs_coarse_assign(&ivf->coarse, n, x_in, ADD_CHUNK, n_threads, 0, all_lab, err);
    if (st == VS_OK) {
        size_t *cnt = calloc(ivf->nlist, sizeof(size_t));
        if (cnt == NULL)
            st = vs_errf(err, VS_ERR_NOMEM, "IVF add: out of memory");
        for (size_t i = 0; st == VS_OK && i < n; i++)
            cnt[all_lab[i]]++;
        for (uint32_t l = 0; st == VS_OK && l < ivf->nlist; l++)
            if (cnt[l])
                st = list_reserve(ivf, &ivf->lists[l], old_n[l] + cnt[l], err);
        free(cnt);
    }
    /* pass 2: encode and append */
    for (size_t i0 = 0; i0 < n && st == VS_OK; i0 += chunk) {
        size_t m = n - i0 < chunk ? n - i0 : chunk;
        lab = all_lab + i0;
        memcpy(xc, x_in + i0 * d, m * d * sizeof(float));
        if (ivf->metric == VS_METRIC_COSINE)
            vs_normalize_rows(xc, m, d);
        if (ivf->spec.codec == VS_CODEC_PQ) {
            for (size_t i = 0; i < m; i++)
                for (uint32_t j = 0; j < d; j++)
                    resid[i * d + j] = xc[i * d + j] - ivf->centroids[(size_t)lab[i] * d + j];
            st = vs_pq_encode(&ivf->pq, resid, m, codes, n_threads, err);
            if (st != VS_OK)
                break;
        }
        for (size_t i = 0; i < m && st == VS_OK; i++) {
            ivf_list_t *L = &ivf->lists[lab[i]];
            st = list_reserve(ivf, L, L->n + 1, err);
            if (st != VS_OK)
                break;
            size_t pos = L->n;
            const float *v = xc + i * d;
            if (ivf->spec.codec == VS_CODEC_FLAT)
                memcpy(L->codes + pos * d * sizeof(float), v, d * sizeof(float));
            else if (ivf->spec.fastscan)
                vs_fs_put(L->codes, ivf->pq.m, pos, codes + i * ivf->pq.m);
            else
                memcpy(L->codes + pos * ivf->pq.m, codes + i * ivf->pq.m, ivf->pq.m);
            if (ivf->spec.refine == VS_REFINE_FLAT)
                memcpy(L->refine + pos * rb, v, rb);
            else if (ivf->spec.refine == VS_REFINE_SQ8)
                vs_sq8_encode(&ivf->sq8, v, L->refine + pos * rb);
            L->ids[pos] = ids ? ids[i0 + i] : (int64_t)(ivf->ntotal + i0 + i);
            L->n++;
        }
        vs_progress_call(progress, i0 + m, n);
    }
    if (st == VS_OK) {
        ivf->ntotal += n;
    } else {
        /* roll back: the index is as it was before the call */
        for (uint32_t l = 0; l < ivf->nlist; l++) {
            ivf_list_t *L = &ivf->lists[l];
            if (ivf->spec.fastscan)
                for (size_t pos = old_n[l]; pos < L->n; pos++)
                    vs_fs_clear(L->codes, ivf->pq.m, pos);
            L->n = old_n[l];
        }
    }
    update_max_list(ivf);
done:
    free(xc);
    free(resid);
    free(codes);
    free(all_lab);
    free(old_n);
    return st;
}

const int64_t *vs_ivf_list_ids(const vs_ivf_t *ivf, uint32_t list)
{
    return list < ivf->nlist ? ivf->lists[list].ids : NULL;
}

vs_status vs_ivf_append_list(vs_ivf_t *dst, const vs_ivf_t *src, uint32_t list, const uint32_t *pos, size_t n,
                             char err[VS_ERR_LEN])
{
    if (dst->d != src->d || dst->nlist != src->nlist || dst->metric != src->metric ||
        dst->spec.codec != src->spec.codec || dst->spec.pq_m != src->spec.pq_m ||
        dst->spec.pq_nbits != src->spec.pq_nbits || dst->spec.fastscan != src->spec.fastscan ||
        dst->spec.refine != src->spec.refine)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "IVF append: the two indexes are not of one factory");
    if (!dst->trained || list >= dst->nlist)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "IVF append: list %u (of %u) of an untrained or other index",
                       list, dst->nlist);
    const ivf_list_t *S = &src->lists[list];
    for (size_t i = 0; pos && i < n; i++)
        if (pos[i] >= S->n)
            return vs_errf(err, VS_ERR_OUT_OF_RANGE, "IVF append: position %u of list %u (of %zu)", pos[i],
                           list, S->n);
    if (!pos)
        n = S->n;
    ivf_list_t *L = &dst->lists[list];
    vs_status st = list_reserve(dst, L, L->n + n, err);
    if (st != VS_OK)
        return st;
    const size_t rb = vs_ivf_refine_bytes(dst), m = dst->pq.m;
    uint8_t code[VS_FS_MAX_M];
    for (size_t i = 0; i < n; i++) {
        size_t from = pos ? pos[i] : i, to = L->n + i;
        if (dst->spec.codec == VS_CODEC_FLAT) {
            memcpy(L->codes + to * dst->d * sizeof(float), S->codes + from * dst->d * sizeof(float),
                   dst->d * sizeof(float));
        } else if (dst->spec.fastscan) {
            for (uint32_t j = 0; j < m; j++)
                code[j] = vs_fs_get(S->codes, (uint32_t)m, from, j);
            vs_fs_put(L->codes, (uint32_t)m, to, code);
        } else {
            memcpy(L->codes + to * m, S->codes + from * m, m);
        }
        if (rb)
            memcpy(L->refine + to * rb, S->refine + from * rb, rb);
        L->ids[to] = S->ids[from];
    }
    L->n += n;
    dst->ntotal += n;
    return VS_OK;
}

int vs_ivf_refine_disk_stats(const vs_ivf_t *ivf, struct vs_refine_disk_stats *out)
{
    if (!ivf->rdisk)
        return 0;
    vs_refine_disk_get_stats(ivf->rdisk, out);
    return 1;
}

void vs_ivf_append_done(vs_ivf_t *ivf)
{
    update_max_list(ivf);
}

/* ---- search ------------------------------------------------------------------------------------- */

typedef struct scratch {
    float *q;                   /* d: prepared query */
    float *cdist;               /* nlist: coarse distances */
    int32_t *probe;             /* nprobe */
    float *pkey;                /* coarse pool: nprobe + max(nprobe, 16) */
    float *proj;                /* pdim: the query projected */
    float *ipq;                 /* m*ksub: <q_j, p_jc> */
    float *table;               /* m*ksub: per-list table in key space */
    uint8_t *qlut;              /* P*64 */
    float *dbuf;                /* max list size for IVF-Flat distances, or d for decode */
    float *hkeys;               /* K' */
    int64_t *hids;              /* K' */
    float *fkeys;               /* k */
    int64_t *fids;              /* k */
    const vs_fresh_list_t **fl; /* nprobe: the fresh list object scanned for each probe */
} scratch_t;

typedef struct search_ctx {
    const vs_ivf_t *ivf;
    const float *q;
    size_t nq, k, kp; /* kp: heap size before refine */
    uint32_t nprobe;
    /* filtered search: probe_max lists are ranked and the nearest nprobe of them that may hold a
     * matching item (bit set in may) are scanned; the others only for their fresh records */
    uint32_t probe_max;
    const uint64_t *may;
    uint32_t qef;                 /* quantizer_efSearch (HNSW coarse; 0 = default) */
    const int32_t *lists;         /* precomputed probes (nq*nprobe) or NULL */
    const vs_fresh_t *fresh;      /* writes since the version (NULL: none) */
    const vs_idset_t *excl;       /* ids never returned (NULL: none) */
    const vs_filter_t *filter;    /* attribute filter (NULL: none) */
    const struct matching *m;     /* selective filters: the matching base items by list (NULL: scan lists) */
    const vs_filter_runs_t *runs; /* selective filters with a set driver term: its runs (m NULL then) */
    int larger;
    float *out_dist;
    int64_t *out_ids;
    scratch_t *scratch;
    size_t max_list;
    struct batch *batch; /* list-major search of query chunks (search_chunk): one per worker, or NULL */
    size_t chunk;        /* queries per chunk */
} search_ctx_t;

/* The candidates of one query before refine: a heap for the final k (no refine) or a reservoir for the
 * k*k_factor estimates that refine re-ranks (amortised O(1) per candidate). */
typedef struct cands {
    vs_topk_t h;
    vs_reservoir_t r;
    int use_r;
} cands_t;

static inline float cands_threshold(const cands_t *c)
{
    return c->use_r ? c->r.threshold : vs_topk_threshold(&c->h);
}

static inline void cands_push(cands_t *c, float key, int64_t id)
{
    if (c->use_r)
        vs_reservoir_push(&c->r, key, id);
    else
        vs_topk_push(&c->h, key, id);
}

/* Empty candidates of one query: the k*k_factor reservoir with refine, else the heap (plus the fresh
 * slack), over keys/ids of hsz slots. */
static void cands_init(cands_t *h, const search_ctx_t *c, float *keys, int64_t *ids)
{
    h->use_r = c->ivf->spec.refine != VS_REFINE_NONE;
    if (h->use_r)
        vs_reservoir_init(&h->r, c->kp, 2 * c->kp, keys, ids);
    else
        vs_topk_init(&h->h, c->kp + (vs_fresh_empty(c->fresh) ? 0 : VS_FRESH_SLACK), keys, ids);
}

/* The quantised fast-scan table of query q (prepared) for list l into qlut, with the key's base and
 * scale (key = base + sum / scale). L2 tables depend on the list (the residual q - c_l; table is m*16
 * floats of scratch, res d floats); an inner-product table does not: ip_qlut (built once per query by
 * fs_ip_table) is returned instead, with the centroid's product in the base. */
static const uint8_t *fs_list_table(const vs_ivf_t *ivf, const float *q, uint32_t l, float *res, float *table,
                                    uint8_t *qlut, const uint8_t *ip_qlut, float ip_bias, float ip_scale,
                                    float *base, float *scale)
{
    const float *cl = ivf->centroids + (size_t)l * ivf->d;
    if (ivf->metric != VS_METRIC_L2) {
        *base = -vs_distance_kernels()->ip(q, cl, ivf->d) + ip_bias;
        *scale = ip_scale;
        return ip_qlut;
    }
    for (uint32_t j = 0; j < ivf->d; j++)
        res[j] = q[j] - cl[j];
    vs_fs_table(ivf->cbt, ivf->pq.m, ivf->pq.dsub, res, 1, table);
    vs_fs_quantize_lut(table, ivf->pq.m, qlut, base, scale);
    return qlut;
}

/* An inner-product query's fast-scan table (the same for every list): qlut, bias and scale. */
static void fs_ip_table(const vs_ivf_t *ivf, const float *q, float *table, uint8_t *qlut, float *bias,
                        float *scale)
{
    vs_fs_table(ivf->cbt, ivf->pq.m, ivf->pq.dsub, q, 0, table);
    vs_fs_quantize_lut(table, ivf->pq.m, qlut, bias, scale);
}

/* The fast-scan offer callback's state for one list. */
typedef struct fs_state {
    cands_t *h;
    const ivf_list_t *L;
    uint32_t list;
    int by_slot;
    float base, scale;         /* key = base + sum / scale */
    const vs_fresh_t *fresh;   /* non-NULL: skip ids whose copy here is hidden */
    const vs_idset_t *excl;    /* non-NULL: skip these ids */
    const vs_filter_t *filter; /* non-NULL: skip items failing it */
} fs_state_t;

/* 1 when base item pos of list L must not be a candidate: failing the filter, hidden by a write, or
 * excluded by the request. */
static inline int skip_base(const vs_fresh_t *fresh, const vs_idset_t *excl, const vs_filter_t *filter,
                            const ivf_list_t *L, size_t pos)
{
    if (filter && !vs_filter_match(filter, L->first + pos))
        return 1;
    if (!fresh && !excl) /* the common case: the id (a likely cache miss) is not read */
        return 0;
    const int64_t id = L->ids[pos];
    return (fresh && vs_fresh_base_dead(fresh, id)) || vs_idset_has(excl, id);
}

static uint16_t key_to_threshold(float thr_key, float base, float scale)
{
    if (isinf(thr_key))
        return 65535;
    float t = (thr_key - base) * scale;
    if (t >= 65535.0f || isnan(t)) /* NaN: no usable bound, keep every candidate */
        return 65535;
    if (t < 0.0f)
        return 0;
    /* the largest sum whose key computed as the offer computes it (base + sum / scale, in float) is
     * <= thr_key: floor(t) can be a unit or more off either way, and a candidate whose key equals the
     * threshold must reach the offer (ties go to the smaller id there), or answers would depend on the
     * order lists are scanned in. Where no exact bound is found quickly, a higher one: the offer decides. */
    uint32_t sum = (uint32_t)t;
    for (int i = 0; i < 16 && sum > 0 && base + (float)sum / scale > thr_key; i++)
        sum--;
    for (int i = 0; i < 16 && sum < 65535 && base + (float)(sum + 1) / scale <= thr_key; i++)
        sum++;
    if (sum < 65535 && base + (float)(sum + 1) / scale <= thr_key)
        return 65535;
    return (uint16_t)sum;
}

static uint16_t fs_offer(void *arg, size_t pos, uint16_t sum)
{
    fs_state_t *s = arg;
    float key = s->base + (float)sum / s->scale;
    int64_t id = s->by_slot ? (int64_t)(((uint64_t)s->list << 32) | pos) : s->L->ids[pos];
    if (key <= cands_threshold(s->h) && !skip_base(s->fresh, s->excl, s->filter, s->L, pos))
        cands_push(s->h, key, id);
    return key_to_threshold(cands_threshold(s->h), s->base, s->scale);
}

static void probe_lists(const search_ctx_t *c, scratch_t *s, const float *q, size_t qi)
{
    if (c->lists != NULL) {
        memcpy(s->probe, c->lists + qi * c->nprobe, c->nprobe * sizeof(int32_t));
        return;
    }
    vs_coarse_probe(&c->ivf->coarse, q, c->probe_max, c->qef, 0, s->cdist, s->pkey, s->hids, s->proj,
                    s->probe);
}

vs_status vs_ivf_probe(const vs_ivf_t *ivf, const float *q, uint32_t nprobe, int exact, int32_t *out_lists,
                       char err[VS_ERR_LEN])
{
    if (!ivf->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "IVF index is not trained");
    return vs_coarse_probe_n(&ivf->coarse, 1, q, nprobe, 0, exact, out_lists, err);
}

static void prefetch_refine(const vs_ivf_t *ivf, uint64_t slot, size_t rb)
{
    if (slot >> 63)
        return; /* a fresh record: few, and not in the mapped section */
    const ivf_list_t *L = &ivf->lists[slot >> 32];
    const char *p = (const char *)L->refine + (size_t)(slot & 0xffffffffu) * rb;
    for (size_t off = 0; off < rb; off += 64)
        __builtin_prefetch(p + off);
}

/* Fresh record references in the candidate heap: bit 63 set, then probe << 32 | position in the list
 * object that probe scanned (scratch fl). */
#define FRESH_SLOT (1ull << 63)

/* The fast-scan sum of a fresh record (codes packed two per byte), as the block scan computes it. */
static uint32_t fresh_fs_sum(const uint8_t *code, uint32_t P, const uint8_t *qlut)
{
    const uint8_t *lo = qlut, *hi = qlut + (size_t)P * 32;
    uint32_t sum = 0;
    for (uint32_t p = 0; p < P; p++)
        sum += lo[p * 32 + (code[p] & 15)] + hi[p * 32 + (code[p] >> 4)];
    return sum;
}

/* The fast-scan offer callback's state for a fresh chunk's packed blocks. */
/* Offers fresh record pos (id, key below h's threshold, dead flag clear) of object FL of list l to h
 * unless the request excludes it or the map says it is not live; with refine as probe pi's slot (the
 * refine stage reads it through s->fl[pi]). 1 when offered. */
static inline int offer_fresh(const search_ctx_t *c, cands_t *h, const vs_fresh_list_t *FL, uint32_t l,
                              uint32_t pi, int64_t id, size_t pos, float key)
{
    if ((c->filter && !vs_filter_match_row(c->filter, vs_fresh_record_attrs(c->fresh, FL, pos))) ||
        vs_idset_has(c->excl, id) || !vs_fresh_live(c->fresh, FL, l, id, pos))
        return 0;
    cands_push(h, key,
               c->ivf->spec.refine != VS_REFINE_NONE ? (int64_t)(FRESH_SLOT | ((uint64_t)pi << 32) | pos)
                                                     : id);
    return 1;
}

typedef struct fresh_fs_state {
    const search_ctx_t *c;
    cands_t *h;
    const vs_fresh_list_t *L; /* the list object scanned, list its list */
    uint32_t list;
    const vs_fresh_chunk_t *ch;
    size_t start; /* the chunk's first position in its list object */
    uint32_t pi;
    float base, scale;
    size_t offered;
} fresh_fs_state_t;

static uint16_t fresh_fs_offer(void *arg, size_t off, uint16_t sum)
{
    fresh_fs_state_t *s = arg;
    float key = s->base + (float)sum / s->scale;
    if (key <= cands_threshold(s->h) && !atomic_load_explicit(&s->ch->dead[off], memory_order_acquire))
        s->offered += offer_fresh(s->c, s->h, s->L, s->list, s->pi, s->ch->ids[off], s->start + off, key);
    return key_to_threshold(cands_threshold(s->h), s->base, s->scale);
}

/* Scans the n published records of list l's fresh object FL with the table the main scan used, offering
 * live ones to h (with refine, as probe pi's slot: s->fl[pi] keeps the object for the refine stage, which
 * a compaction may have replaced since). Key of a record: fast scan base + sum / scale (exactly the main
 * scan's), 8-bit PQ base + ADC, Flat the distance. */
static size_t scan_fresh(const search_ctx_t *c, scratch_t *s, const float *q, uint32_t l,
                         const vs_fresh_list_t *FL, size_t n, uint32_t pi, cands_t *h, float base,
                         float scale)
{
    const vs_ivf_t *ivf = c->ivf;
    size_t offered = 0;
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    const uint32_t P = vs_fs_pairs(ivf->pq.m ? ivf->pq.m : 1);
    s->fl[pi] = FL;
    /* chunk by chunk: each is one block of dead flags, ids and codes, read in order */
    size_t start = 0;
    for (uint32_t ci = 0; start < n; ci++) {
        const size_t cap = vs_fresh_chunk_cap(ci), m = n - start < cap ? n - start : cap;
        const vs_fresh_chunk_t *ch =
            atomic_load_explicit(&((vs_fresh_list_t *)FL)->chunks[ci], memory_order_acquire);
        size_t off0 = 0;
        if (ch->blocks) { /* whole blocks of 32: the base's SIMD kernel, then the rest one by one */
            size_t packed = atomic_load_explicit(&((vs_fresh_chunk_t *)ch)->packed, memory_order_acquire);
            if (packed > m)
                packed = m / VS_FS_BLOCK * VS_FS_BLOCK;
            if (packed) {
                fresh_fs_state_t st = {c, h, FL, l, ch, start, pi, base, scale, 0};
                vs_fs_scan()(ch->blocks, packed, ivf->pq.m, s->qlut,
                             key_to_threshold(cands_threshold(h), base, scale), fresh_fs_offer, &st);
                offered += st.offered;
                off0 = packed;
            }
        }
        for (size_t off = off0; off < m; off++) {
            if (atomic_load_explicit(&ch->dead[off], memory_order_acquire))
                continue; /* superseded or deleted (most replaced records): no key, no lookup */
            const int64_t id = ch->ids[off];
            const uint8_t *code = ch->codes + off * c->fresh->code_bytes;
            const size_t pos = start + off;
            float key;
            if (ivf->spec.codec == VS_CODEC_FLAT) {
                const float *v = (const float *)code;
                key = vs_topk_key(ivf->metric == VS_METRIC_L2 ? kern->l2sqr(q, v, ivf->d)
                                                              : kern->ip(q, v, ivf->d),
                                  c->larger);
            } else if (ivf->spec.fastscan) {
                key = base + (float)fresh_fs_sum(code, P, s->qlut) / scale;
            } else {
                key = base + vs_pq_adc(s->table, code, ivf->pq.m, ivf->pq.ksub);
            }
            /* the map is the truth for the few that pass (a record dies just after its id moved on) */
            if (key <= cands_threshold(h))
                offered += offer_fresh(c, h, FL, l, pi, id, pos, key);
        }
        start += cap;
    }
    return offered;
}

/* Refine on disk: the refine copies of the base candidates among slots[0..n) (reservoir slots: list << 32 |
 * position), read from the file in one batch; out[i] is NULL for the others (fresh records, lists copied
 * into memory by a write) and for all when the read failed. Thread-local memory (refine_disk.h), valid
 * until this thread's next call; NULL when there is none. */
static const uint8_t **refine_from_disk(const vs_ivf_t *ivf, const int64_t *slots, size_t n)
{
    uint8_t *scr = vs_refine_disk_scratch(n * (sizeof(uint64_t) + 2 * sizeof(const uint8_t *) + sizeof(uint32_t)));
    if (!scr)
        return NULL;
    const uint8_t **rv_of = (const uint8_t **)scr, **got = rv_of + n;
    uint64_t *items = (uint64_t *)(got + n);
    uint32_t *which = (uint32_t *)(items + n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        rv_of[i] = NULL;
        uint64_t slot = (uint64_t)slots[i];
        if (slot & FRESH_SLOT)
            continue;
        const ivf_list_t *L = &ivf->lists[slot >> 32];
        if (L->owned)
            continue;
        items[m] = (uint64_t)(L->first + (size_t)(slot & 0xffffffffu));
        which[m++] = (uint32_t)i;
    }
    if (m && vs_refine_disk_fetch(ivf->rdisk, items, m, got) == 0)
        for (size_t j = 0; j < m; j++)
            rv_of[which[j]] = got[j];
    return rv_of;
}

/* The refine copy (or, for IVF-Flat, the stored vector) of item pos of list L, decoded into buf for SQ8. */
static const float *item_vector(const vs_ivf_t *ivf, const uint8_t *refine, const uint8_t *code, float *buf)
{
    if (ivf->spec.refine == VS_REFINE_FLAT)
        return (const float *)refine;
    if (ivf->spec.refine == VS_REFINE_SQ8) {
        vs_sq8_decode(&ivf->sq8, refine, buf);
        return buf;
    }
    return (const float *)code; /* IVF-Flat */
}

/* Emits the final heap fin (k + slack slots when the search has fresh writes) into query qi's k slots:
 * through the slack with duplicates dropped when fresh candidates were seen, else the plain k best. */
static void emit_final(const search_ctx_t *c, scratch_t *s, size_t qi, vs_topk_t *fin, size_t kk,
                       int saw_fresh)
{
    float *od = c->out_dist + qi * c->k;
    int64_t *oi = c->out_ids + qi * c->k;
    if (saw_fresh) {
        float *ed = s->fkeys + kk;
        int64_t *ei = s->fids + kk;
        vs_topk_emit(fin, c->larger, ed, ei);
        vs_topk_drop_duplicates(ed, ei, kk, s->hids, c->larger);
        memcpy(od, ed, c->k * sizeof *od);
        memcpy(oi, ei, c->k * sizeof *oi);
        return;
    }
    if (kk == c->k) {
        vs_topk_emit(fin, c->larger, od, oi);
        return;
    }
    vs_topk_t k_best; /* the heap's keys live in s->fkeys[0..kk): keep the k best in the slots past it */
    vs_topk_init(&k_best, c->k, s->fkeys + kk, s->fids + kk);
    for (size_t i = 0; i < fin->size; i++)
        vs_topk_push(&k_best, fin->keys[i], fin->ids[i]);
    vs_topk_emit(&k_best, c->larger, od, oi);
}

/* The matching base items of a selective filter, grouped by list (a counting sort): list l's are the
 * positions pos[off[l] .. off[l + 1]) of that list, ascending within each value of the driver term. */
typedef struct matching {
    uint32_t *off; /* nlist + 1 */
    uint32_t *pos;
    size_t n;
    uint32_t lists; /* lists holding at least one */
    uint32_t *with; /* those lists, ascending */
    int exact;      /* 1: every list is visited (exact search); 0: the nearest nprobe lists holding one */
} matching_t;

/* 1 unless a write hid base item id or the request excludes it. */
static inline int base_item_live(const search_ctx_t *c, int64_t id)
{
    const vs_fresh_t *fresh = vs_fresh_empty(c->fresh) ? NULL : c->fresh;
    return !((fresh && vs_fresh_base_dead(fresh, id)) || vs_idset_has(c->excl, id));
}

/* Offers base item pos of list L to fin, ranked by its refine copy (rv, or NULL: the list's own; IVF-Flat:
 * its vector). The caller checked the filter and base_item_live. */
static inline void offer_base_item(const search_ctx_t *c, scratch_t *s, const float *q, const ivf_list_t *L,
                                   size_t pos, const uint8_t *rv, vs_topk_t *fin)
{
    const vs_ivf_t *ivf = c->ivf;
    const int64_t id = L->ids[pos];
    const size_t rb = vs_ivf_refine_bytes(ivf);
    const float *vec = item_vector(ivf, rv ? rv : rb ? L->refine + pos * rb : NULL,
                                   L->codes + pos * (rb ? 0 : ivf->d * sizeof(float)), s->dbuf);
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    float key = vs_topk_key(
        ivf->metric == VS_METRIC_L2 ? kern->l2sqr(q, vec, ivf->d) : kern->ip(q, vec, ivf->d), c->larger);
    if (key <= vs_topk_threshold(fin))
        vs_topk_push(fin, key, id);
}

/* Matching items of a filtered search waiting for their refine copies from disk (refine on disk): read in
 * batches of DISK_BATCH through refine_from_disk, like a query's candidates, never through the mapping
 * (whose page faults would block and, on a failing disk, raise SIGBUS). */
#define DISK_BATCH 512
typedef struct disk_batch {
    size_t n;
    int64_t slot[DISK_BATCH]; /* list << 32 | position */
} disk_batch_t;

static void disk_batch_flush(const search_ctx_t *c, scratch_t *s, const float *q, disk_batch_t *b,
                             vs_topk_t *fin)
{
    const uint8_t **rv = b->n ? refine_from_disk(c->ivf, b->slot, b->n) : NULL;
    for (size_t i = 0; i < b->n; i++) {
        const uint64_t slot = (uint64_t)b->slot[i];
        offer_base_item(c, s, q, &c->ivf->lists[slot >> 32], slot & 0xffffffffu, rv ? rv[i] : NULL, fin);
    }
    b->n = 0;
}

/* Offers matching base item pos of list l (filter checked): at once from memory, or queued in b when its
 * refine copy is on disk. */
static inline void offer_matching_item(const search_ctx_t *c, scratch_t *s, const float *q, uint32_t l, size_t pos,
                                       disk_batch_t *b, vs_topk_t *fin)
{
    const ivf_list_t *L = &c->ivf->lists[l];
    if (!base_item_live(c, L->ids[pos]))
        return;
    if (!c->ivf->rdisk || L->owned) {
        offer_base_item(c, s, q, L, pos, NULL, fin);
        return;
    }
    b->slot[b->n++] = (int64_t)(((uint64_t)l << 32) | pos);
    if (b->n == DISK_BATCH)
        disk_batch_flush(c, s, q, b, fin);
}

/* Offers to fin the matching base items of lists visit[nv] (each holding at least one), ranked by their
 * refine copies (IVF-Flat: vectors). Items are few per list and scattered, so their vectors and ids are
 * prefetched a fixed distance ahead across list boundaries. */
static void offer_matching_base(const search_ctx_t *c, scratch_t *s, const float *q, const uint32_t *visit,
                                size_t nv, vs_topk_t *fin)
{
    const vs_ivf_t *ivf = c->ivf;
    const uint32_t d = ivf->d;
    const matching_t *m = c->m;
    const size_t rb = vs_ivf_refine_bytes(ivf), vb = rb ? rb : d * sizeof(float);
    size_t av = 0; /* the prefetch cursor: item aj of list visit[av] */
    uint32_t aj = nv ? m->off[visit[0]] : 0;
#define PREFETCH_NEXT()                                                                                      \
    do {                                                                                                     \
        const ivf_list_t *PL = &ivf->lists[visit[av]];                                                       \
        const uint8_t *pv = (rb ? PL->refine : PL->codes) + (size_t)m->pos[aj] * vb;                         \
        for (size_t o = 0; o < vb; o += 64)                                                                  \
            __builtin_prefetch(pv + o);                                                                      \
        __builtin_prefetch(PL->ids + m->pos[aj]);                                                            \
        if (++aj >= m->off[visit[av] + 1] && ++av < nv)                                                      \
            aj = m->off[visit[av]];                                                                          \
    } while (0)
    disk_batch_t b;
    b.n = 0;
    for (int a = 0; a < 8 && av < nv && !ivf->rdisk; a++)
        PREFETCH_NEXT();
    for (size_t v = 0; v < nv; v++) {
        for (uint32_t j = m->off[visit[v]]; j < m->off[visit[v] + 1]; j++) {
            if (av < nv && !ivf->rdisk)
                PREFETCH_NEXT();
            offer_matching_item(c, s, q, visit[v], m->pos[j], &b, fin);
        }
    }
    disk_batch_flush(c, s, q, &b, fin);
#undef PREFETCH_NEXT
}

/* Offers to fin list l's live fresh records whose rows match. Returns 1 when one was offered. */
static int offer_matching_fresh(const search_ctx_t *c, scratch_t *s, const float *q, uint32_t l,
                                vs_topk_t *fin)
{
    const vs_ivf_t *ivf = c->ivf;
    const uint32_t d = ivf->d;
    const vs_fresh_t *fresh = c->fresh;
    const size_t rb = vs_ivf_refine_bytes(ivf);
    const int is_l2 = ivf->metric == VS_METRIC_L2;
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    int saw_fresh = 0;
    const vs_fresh_list_t *FL;
    const size_t n = vs_fresh_list_n(fresh, l, &FL);
    for (size_t pos = 0; pos < n; pos++) {
        size_t off;
        const vs_fresh_chunk_t *ch = atomic_load_explicit(
            &((vs_fresh_list_t *)FL)->chunks[vs_fresh_chunk_of(pos, &off)], memory_order_acquire);
        if (atomic_load_explicit(&ch->dead[off], memory_order_acquire) ||
            !vs_filter_match_row(c->filter, vs_fresh_record_attrs(fresh, FL, pos)))
            continue;
        const int64_t id = ch->ids[off];
        if (vs_idset_has(c->excl, id) || !vs_fresh_live(fresh, FL, l, id, pos))
            continue;
        const float *v =
            item_vector(ivf, rb ? ch->refine + off * rb : NULL, ch->codes + off * fresh->code_bytes, s->dbuf);
        float key = vs_topk_key(is_l2 ? kern->l2sqr(q, v, d) : kern->ip(q, v, d), c->larger);
        if (key <= vs_topk_threshold(fin)) {
            vs_topk_push(fin, key, id);
            saw_fresh = 1;
        }
    }
    return saw_fresh;
}

/* Offers to fin list l's base items matching the filter, found in each run of the driver term by binary
 * search (positions ascend within a run, and a list's items are consecutive positions), the other terms
 * checked by column; ranked by refine copy (IVF-Flat: vector). Returns how many matched. */
static size_t offer_runs_list(const search_ctx_t *c, scratch_t *s, const float *q, uint32_t l, vs_topk_t *fin)
{
    const vs_ivf_t *ivf = c->ivf;
    const uint32_t d = ivf->d;
    const vs_filter_runs_t *r = c->runs;
    const size_t rb = vs_ivf_refine_bytes(ivf), vb = rb ? rb : d * sizeof(float);
    const ivf_list_t *L = &ivf->lists[l];
    const uint8_t *vecs = rb ? L->refine : L->codes;
    const uint32_t lo = (uint32_t)L->first, hi = (uint32_t)(L->first + L->n);
    const int all_match = r->rest.n_terms == 0;
    size_t found = 0;
    disk_batch_t pend;
    pend.n = 0;
    for (size_t ri = 0; ri < r->n_runs && L->n; ri++) {
        const uint32_t *run = r->pos[ri];
        size_t b = 0, e = r->len[ri];
        while (b < e) { /* first position >= lo */
            size_t mid = (b + e) / 2;
            if (run[mid] < lo)
                b = mid + 1;
            else
                e = mid;
        }
        for (size_t j = b; j < r->len[ri] && run[j] < hi; j++) {
            if (all_match && j + 4 < r->len[ri] && run[j + 4] < hi && !ivf->rdisk)
                for (size_t o = 0; o < vb; o += 64)
                    __builtin_prefetch(vecs + (size_t)(run[j + 4] - lo) * vb + o);
            if (!all_match && !vs_filter_match(&r->rest, run[j]))
                continue;
            found++;
            offer_matching_item(c, s, q, l, run[j] - lo, &pend, fin);
        }
    }
    disk_batch_flush(c, s, q, &pend, fin);
    return found;
}

/* Filtered search of query qi over the matching items only (selective filters): exact (every list, as
 * Vespa's exact fallback: recall 1 up to the refine codec), or the nearest nprobe lists that hold a
 * matching item (ranked among probe_max), each giving only its matching items - no code of a
 * non-matching item is read. Fresh records: of every list (exact), or of the lists ranked up to the last
 * one visited. */
static void search_matching(const search_ctx_t *c, scratch_t *s, size_t qi)
{
    const vs_ivf_t *ivf = c->ivf;
    const uint32_t d = ivf->d;
    const vs_fresh_t *fresh = vs_fresh_empty(c->fresh) ? NULL : c->fresh;
    const size_t kk = c->k + (fresh ? VS_FRESH_SLACK : 0);
    memcpy(s->q, c->q + qi * d, d * sizeof(float));
    if (ivf->metric == VS_METRIC_COSINE)
        vs_normalize_rows(s->q, 1, d);
    const float *q = s->q;
    vs_topk_t fin;
    vs_topk_init(&fin, kk, s->fkeys, s->fids);
    int saw_fresh = 0;
    if (c->runs) { /* the nearest nprobe lists holding a match (of those that may), found by binary search */
        probe_lists(c, s, q, qi);
        for (uint32_t pi = 0, visited = 0; pi < c->probe_max && visited < c->nprobe; pi++) {
            const int32_t l = s->probe[pi];
            if (l < 0 || (uint32_t)l >= ivf->nlist)
                continue;
            if (!c->may || (c->may[l / 64] >> (l % 64) & 1))
                visited += offer_runs_list(c, s, q, (uint32_t)l, &fin) > 0;
            if (fresh)
                saw_fresh |= offer_matching_fresh(c, s, q, (uint32_t)l, &fin);
        }
    } else if (c->m->exact) {
        offer_matching_base(c, s, q, c->m->with, c->m->lists, &fin);
        for (uint32_t l = 0; fresh && l < ivf->nlist; l++)
            saw_fresh |= offer_matching_fresh(c, s, q, l, &fin);
    } else {
        probe_lists(c, s, q, qi);
        /* the probed lists holding a matching item, nearest first, up to nprobe of them (in place) */
        uint32_t *visit = (uint32_t *)s->probe, nv = 0, pi = 0;
        for (; pi < c->probe_max && nv < c->nprobe; pi++) {
            const int32_t l = s->probe[pi];
            if (l >= 0 && (uint32_t)l < ivf->nlist && c->m->off[l + 1] > c->m->off[l])
                visit[nv++] = (uint32_t)l;
        }
        offer_matching_base(c, s, q, visit, nv, &fin);
        if (fresh) { /* the fresh records of the lists ranked up to the last one visited */
            probe_lists(c, s, q, qi);
            for (uint32_t i = 0; i < pi; i++)
                if (s->probe[i] >= 0 && (uint32_t)s->probe[i] < ivf->nlist)
                    saw_fresh |= offer_matching_fresh(c, s, q, (uint32_t)s->probe[i], &fin);
        }
    }
    emit_final(c, s, qi, &fin, kk, saw_fresh);
}

/* The end of query qi's search (q: its prepared vector): the candidates in h re-ranked by their refine
 * copies (or emitted as they are), the answer written to the output. fl: the fresh list object of each
 * probe (for fresh candidates' refine copies); spare_ids: room for k + slack ids (h's own, now free). */
static void finish_query(const search_ctx_t *c, scratch_t *s, size_t qi, const float *q, cands_t *h,
                         size_t n_fresh, const vs_fresh_list_t *const *fl, int64_t *spare_ids)
{
    const vs_ivf_t *ivf = c->ivf;
    const uint32_t d = ivf->d;
    const int refine = ivf->spec.refine != VS_REFINE_NONE;
    const int larger = c->larger;
    const vs_fresh_t *fresh = vs_fresh_empty(c->fresh) ? NULL : c->fresh;
    const size_t slack = fresh ? VS_FRESH_SLACK : 0;
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    float *od = c->out_dist + qi * c->k;
    int64_t *oi = c->out_ids + qi * c->k;
    /* with fresh candidates, results go through the slack slots and lose any duplicate id */
    const size_t kk = n_fresh ? c->k + slack : c->k;
    float *ed = n_fresh ? s->fkeys + c->k + slack : od;
    int64_t *ei = n_fresh ? s->fids + c->k + slack : oi;
    if (!refine) {
        if (!n_fresh && slack) {
            /* no fresh candidate, but the heap has k + slack slots: the plain k best (emitting the heap
             * itself would write k + slack results into a k-slot answer) */
            vs_topk_t fin;
            vs_topk_init(&fin, c->k, s->fkeys, s->fids);
            for (size_t i = 0; i < h->h.size; i++)
                vs_topk_push(&fin, h->h.keys[i], h->h.ids[i]);
            vs_topk_emit(&fin, larger, od, oi);
            return;
        }
        vs_topk_emit(&h->h, larger, ed, ei);
    } else {
        size_t n_cand = vs_reservoir_finish(&h->r);
        vs_topk_t fin;
        vs_topk_init(&fin, kk, s->fkeys, s->fids);
        const size_t rb = vs_ivf_refine_bytes(ivf);
        /* refine on disk: the base candidates' copies read from the file in one batch (a failed read
         * falls back to the mapping, as do fresh candidates and lists copied into memory) */
        const uint8_t **disk_rv = ivf->rdisk && n_cand ? refine_from_disk(ivf, h->r.ids, n_cand) : NULL;
        /* in memory, candidates are scattered over the refine section: prefetch a few ahead so that their
         * DRAM latencies overlap instead of adding up */
        const size_t ahead = ivf->rdisk ? 0 : 8;
        for (size_t i = 0; i < n_cand && i < ahead; i++)
            prefetch_refine(ivf, (uint64_t)h->r.ids[i], rb);
        for (size_t i = 0; i < n_cand; i++) {
            if (i + ahead < n_cand && ahead)
                prefetch_refine(ivf, (uint64_t)h->r.ids[i + ahead], rb);
            uint64_t slot = (uint64_t)h->r.ids[i];
            size_t pos = (size_t)(slot & 0xffffffffu);
            const uint8_t *rv;
            int64_t id;
            if (slot & FRESH_SLOT) {
                const uint8_t *code;
                vs_fresh_record(fresh, fl[(slot >> 32) & 0x7fffffffu], pos, &id, &code, &rv);
            } else {
                const ivf_list_t *L = &ivf->lists[slot >> 32];
                rv = disk_rv && disk_rv[i] ? disk_rv[i] : L->refine + pos * rb;
                id = L->ids[pos];
            }
            const float *v;
            if (ivf->spec.refine == VS_REFINE_FLAT) {
                v = (const float *)rv;
            } else {
                vs_sq8_decode(&ivf->sq8, rv, s->dbuf);
                v = s->dbuf;
            }
            float dist = ivf->metric == VS_METRIC_L2 ? kern->l2sqr(q, v, d) : kern->ip(q, v, d);
            vs_topk_push(&fin, vs_topk_key(dist, larger), id);
        }
        vs_topk_emit(&fin, larger, ed, ei);
    }
    if (n_fresh) {
        vs_topk_drop_duplicates(ed, ei, kk, spare_ids, larger); /* the heap's ids are free again */
        memcpy(od, ed, c->k * sizeof *od);
        memcpy(oi, ei, c->k * sizeof *oi);
    }
}

static void search_one(void *arg, size_t qi, size_t worker)
{
    search_ctx_t *c = arg;
    if (c->m || c->runs) {
        search_matching(c, &c->scratch[worker], qi);
        return;
    }
    const vs_ivf_t *ivf = c->ivf;
    scratch_t *s = &c->scratch[worker];
    const uint32_t d = ivf->d;
    const int refine = ivf->spec.refine != VS_REFINE_NONE;
    const int larger = ivf->metric != VS_METRIC_L2;
    const vs_fresh_t *fresh = vs_fresh_empty(c->fresh) ? NULL : c->fresh;
    size_t n_fresh = 0; /* fresh candidates offered */

    memcpy(s->q, c->q + qi * d, d * sizeof(float));
    if (ivf->metric == VS_METRIC_COSINE)
        vs_normalize_rows(s->q, 1, d);
    const float *q = s->q;
    probe_lists(c, s, q, qi);

    cands_t h;
    cands_init(&h, c, s->hkeys, s->hids);
    const vs_pq_t *pq = &ivf->pq;
    const size_t mk = ivf->spec.codec == VS_CODEC_PQ ? (size_t)pq->m * pq->ksub : 0;
    const int fs = ivf->spec.fastscan;
    float ip_bias = 0.0f, ip_scale = 1.0f;
    if (fs && ivf->metric != VS_METRIC_L2) {
        /* inner product: the table does not depend on the list; build and quantise it once */
        fs_ip_table(ivf, q, s->table, s->qlut, &ip_bias, &ip_scale);
    } else if (mk && !fs) {
        vs_pq_lut_ip(pq, q, s->ipq);
    }
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    vs_fs_scan_fn scan = vs_fs_scan();
    uint32_t scanned = 0; /* lists whose items were scanned (with a filter: those that may match) */
    for (uint32_t pi = 0; pi < c->probe_max && scanned < c->nprobe; pi++) {
        int32_t l = s->probe[pi];
        if (l < 0 || (uint32_t)l >= ivf->nlist)
            continue;
        const ivf_list_t *L = &ivf->lists[l];
        ivf_list_t none;
        if (c->may && !(c->may[l / 64] >> (l % 64) & 1)) { /* no matching item: its fresh records only */
            none = *L;
            none.n = 0;
            L = &none;
        } else {
            scanned++;
        }
        const vs_fresh_list_t *FL = NULL;
        const size_t fn = fresh ? vs_fresh_list_n(fresh, (uint32_t)l, &FL) : 0;
        if (L->n == 0 && fn == 0)
            continue;
        const float *cl = ivf->centroids + (size_t)l * d;
        if (ivf->spec.codec == VS_CODEC_FLAT) {
            vs_distance_batch(ivf->metric == VS_METRIC_L2 ? VS_METRIC_L2 : VS_METRIC_IP, q,
                              (const float *)L->codes, L->n, d, s->dbuf);
            float thr = cands_threshold(&h);
            for (size_t i = 0; i < L->n; i++) {
                float key = vs_topk_key(s->dbuf[i], larger);
                if (key <= thr && !skip_base(fresh, c->excl, c->filter, L, i)) {
                    cands_push(&h, key, refine ? (int64_t)(((uint64_t)l << 32) | i) : L->ids[i]);
                    thr = cands_threshold(&h);
                }
            }
            if (fn)
                n_fresh += scan_fresh(c, s, q, (uint32_t)l, FL, fn, pi, &h, 0.0f, 1.0f);
            continue;
        }
        if (fs) {
            float base, scale;
            fs_list_table(ivf, q, (uint32_t)l, s->dbuf, s->table, s->qlut, s->qlut, ip_bias, ip_scale, &base,
                          &scale);
            fs_state_t st = {&h, L, (uint32_t)l, refine, base, scale, fresh, c->excl, c->filter};
            if (L->n)
                scan(L->codes, L->n, pq->m, s->qlut, key_to_threshold(cands_threshold(&h), base, scale),
                     fs_offer, &st);
            if (fn)
                n_fresh += scan_fresh(c, s, q, (uint32_t)l, FL, fn, pi, &h, base, scale);
            continue;
        }
        /* 8-bit ADC table in key space: key = base + sum_j table[j][code_j] */
        float base;
        if (ivf->metric == VS_METRIC_L2) {
            base = kern->l2sqr(q, cl, d);
            const float *t2 = ivf->term2 + (size_t)l * mk;
            for (size_t jc = 0; jc < mk; jc++)
                s->table[jc] = t2[jc] - 2.0f * s->ipq[jc];
        } else {
            base = -kern->ip(q, cl, d);
            for (size_t jc = 0; jc < mk; jc++)
                s->table[jc] = -s->ipq[jc];
        }
        {
            float thr = cands_threshold(&h);
            for (size_t i = 0; i < L->n; i++) {
                float key = base + vs_pq_adc(s->table, L->codes + i * pq->m, pq->m, pq->ksub);
                if (key <= thr && !skip_base(fresh, c->excl, c->filter, L, i)) {
                    cands_push(&h, key, refine ? (int64_t)(((uint64_t)l << 32) | i) : L->ids[i]);
                    thr = cands_threshold(&h);
                }
            }
        }
        if (fn)
            n_fresh += scan_fresh(c, s, q, (uint32_t)l, FL, fn, pi, &h, base, 1.0f);
    }
    finish_query(c, s, qi, q, &h, n_fresh, s->fl, s->hids);
}

/* ---- list-major search of a batch of queries ------------------------------------------------------
 *
 * A call with at least VS_IVF_BATCH_MIN queries on a fast-scan index (no filter that is served by its
 * matching items, no per-list filter bitmap) searches them in chunks: the chunk's lists are ranked with the
 * multi-query coarse kernel, its (query, list) pairs are grouped by list, and each probed list is scanned
 * once per VS_FS_MULTI of the queries probing it (codes loaded once for all of them), its codes staying
 * in cache across the chunk's queries. Each query keeps its own candidates; as they hold the best
 * estimates by (key, id) whatever the order of the lists, answers are those of the query-by-query path. */

#define VS_IVF_BATCH_MIN 8u /* fewer queries: one at a time */
#define VS_IVF_CHUNK 2048u  /* queries per chunk at most */
#define VS_IVF_COARSE_Q 8u  /* queries per multi-query coarse call (its distance rows stay in cache) */
#define VS_IVF_CHUNK_BYTES (4u << 20) /* candidate memory per chunk that sets its size */

typedef struct batch {
    float *qs;                  /* chunk*d: the chunk's prepared queries */
    float *cdist;               /* VS_IVF_COARSE_Q*nlist coarse products */
    int32_t *probe;             /* chunk*probe_max */
    uint32_t *start;            /* 2*nlist+1: pairs by round and list (search_chunk) */
    uint64_t *pair;             /* chunk*probe_max: query << 32 | probe rank */
    cands_t *h;                 /* chunk */
    float *hkeys;               /* chunk*hsz */
    int64_t *hids;              /* chunk*hsz */
    size_t *n_fresh;            /* chunk */
    const vs_fresh_list_t **fl; /* chunk*probe_max */
    uint8_t *qlut;              /* L2: VS_FS_MULTI tables; IP: chunk tables (one per query) */
    float *ip_bias, *ip_scale;  /* chunk (IP) */
    size_t hsz, qlut_bytes;
} batch_t;

static void batch_free(batch_t *b)
{
    if (!b)
        return;
    free(b->qs);
    free(b->cdist);
    free(b->probe);
    free(b->start);
    free(b->pair);
    free(b->h);
    free(b->hkeys);
    free(b->hids);
    free(b->n_fresh);
    free(b->fl);
    free(b->qlut);
    free(b->ip_bias);
    free(b->ip_scale);
}

static int batch_alloc(batch_t *b, const vs_ivf_t *ivf, size_t chunk, uint32_t probe_max, size_t hsz)
{
    memset(b, 0, sizeof *b);
    const size_t P = vs_fs_pairs(ivf->pq.m), ql = (size_t)P * 64;
    const int ip = ivf->metric != VS_METRIC_L2;
    b->hsz = hsz;
    b->qlut_bytes = ql;
    b->qs = malloc(chunk * ivf->d * sizeof(float));
    b->cdist = malloc((size_t)VS_IVF_COARSE_Q * ivf->nlist * sizeof(float));
    b->probe = malloc(chunk * probe_max * sizeof(int32_t));
    b->start = malloc((2 * (size_t)ivf->nlist + 1) * sizeof(uint32_t));
    b->pair = malloc(chunk * probe_max * sizeof(uint64_t));
    b->h = malloc(chunk * sizeof(cands_t));
    b->hkeys = malloc(chunk * hsz * sizeof(float));
    b->hids = malloc(chunk * hsz * sizeof(int64_t));
    b->n_fresh = malloc(chunk * sizeof(size_t));
    b->fl = calloc(chunk * probe_max, sizeof(*b->fl));
    b->qlut = aligned_alloc(64, (ip ? chunk : VS_FS_MULTI) * ql);
    b->ip_bias = malloc(chunk * sizeof(float));
    b->ip_scale = malloc(chunk * sizeof(float));
    if (!b->qs || !b->cdist || !b->probe || !b->start || !b->pair || !b->h || !b->hkeys || !b->hids ||
        !b->n_fresh || !b->fl || !b->qlut || !b->ip_bias || !b->ip_scale) {
        batch_free(b);
        memset(b, 0, sizeof *b);
        return 0;
    }
    return 1;
}

/* Searches queries [q0, q0 + n) of the call list by list (worker's scratch and batch state). */
static void search_chunk(void *arg, size_t task, size_t worker)
{
    const search_ctx_t *c = arg;
    const vs_ivf_t *ivf = c->ivf;
    scratch_t *s = &c->scratch[worker];
    batch_t *b = &c->batch[worker];
    const size_t q0 = task * c->chunk, n = c->nq - q0 < c->chunk ? c->nq - q0 : c->chunk;
    const uint32_t d = ivf->d, np = c->probe_max, m = ivf->pq.m;
    const int refine = ivf->spec.refine != VS_REFINE_NONE, l2 = ivf->metric == VS_METRIC_L2;
    const vs_fresh_t *fresh = vs_fresh_empty(c->fresh) ? NULL : c->fresh;
    const size_t ql = b->qlut_bytes;

    memcpy(b->qs, c->q + q0 * d, n * d * sizeof(float));
    if (ivf->metric == VS_METRIC_COSINE)
        vs_normalize_rows(b->qs, n, d);
    if (c->lists != NULL) {
        memcpy(b->probe, c->lists + q0 * np, n * np * sizeof(int32_t));
    } else {
        for (size_t i = 0; i < n; i += VS_IVF_COARSE_Q) {
            size_t nb = n - i < VS_IVF_COARSE_Q ? n - i : VS_IVF_COARSE_Q;
            vs_coarse_probe_multi(&ivf->coarse, nb, b->qs + i * d, np, c->qef, b->cdist, s->pkey, s->hids,
                                  s->proj, b->probe + i * np);
        }
    }
    for (size_t i = 0; i < n; i++) {
        cands_init(&b->h[i], c, b->hkeys + i * b->hsz, b->hids + i * b->hsz);
        b->n_fresh[i] = 0;
        if (!l2) /* inner product: one table per query, whatever the list */
            fs_ip_table(ivf, b->qs + i * d, s->table, b->qlut + i * ql, &b->ip_bias[i], &b->ip_scale[i]);
    }
    /* group the (query, probe) pairs by list: a counting sort, queries ascending within a list. Two
     * rounds: first each query's nearest `near` lists (about enough items to fill its candidates, so its
     * threshold is as tight as the query-by-query path's when the other lists are scanned), then the rest */
    const uint32_t nl = ivf->nlist;
    const double avg = ivf->ntotal ? (double)ivf->ntotal / nl : 1.0;
    double want = ceil(2.0 * (double)c->kp / (avg > 1.0 ? avg : 1.0));
    const uint32_t near = want >= np ? np : want < 1 ? 1 : (uint32_t)want;
    memset(b->start, 0, (2 * (size_t)nl + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n * np; i++) {
        int32_t l = b->probe[i];
        if (l >= 0 && (uint32_t)l < nl)
            b->start[(i % np >= near ? nl : 0) + (uint32_t)l + 1]++;
    }
    for (uint32_t r = 0; r < 2 * nl; r++)
        b->start[r + 1] += b->start[r];
    for (size_t i = 0; i < n; i++)
        for (uint32_t pi = 0; pi < np; pi++) {
            int32_t l = b->probe[i * np + pi];
            if (l >= 0 && (uint32_t)l < nl)
                b->pair[b->start[(pi >= near ? nl : 0) + (uint32_t)l]++] = (uint64_t)i << 32 | pi;
        }
    /* start[r] now points past row r's pairs: row r's are [start[r-1], start[r]), row r = round*nlist+l */
    vs_fs_scan_multi_fn scan = vs_fs_scan_multi();
    uint32_t lo = 0;
    for (uint32_t row = 0; row < 2 * nl; row++) {
        const uint32_t hi = b->start[row], l = row % nl;
        if (hi == lo)
            continue;
        const ivf_list_t *L = &ivf->lists[l];
        const vs_fresh_list_t *FL = NULL;
        const size_t fn = fresh ? vs_fresh_list_n(fresh, l, &FL) : 0;
        if (L->n == 0 && fn == 0) {
            lo = hi;
            continue;
        }
        for (uint32_t g0 = lo; g0 < hi; g0 += VS_FS_MULTI) {
            const uint32_t g = hi - g0 < VS_FS_MULTI ? hi - g0 : VS_FS_MULTI;
            fs_state_t st[VS_FS_MULTI];
            void *ctx[VS_FS_MULTI];
            const uint8_t *qluts[VS_FS_MULTI];
            uint16_t thr[VS_FS_MULTI];
            for (uint32_t j = 0; j < g; j++) {
                const size_t i = (size_t)(b->pair[g0 + j] >> 32);
                float base, scale;
                /* L2: the group's j-th table slot; IP: the query's own table */
                qluts[j] = fs_list_table(ivf, b->qs + i * d, l, s->dbuf, s->table, b->qlut + j * ql,
                                         b->qlut + i * ql, l2 ? 0.0f : b->ip_bias[i],
                                         l2 ? 1.0f : b->ip_scale[i], &base, &scale);
                st[j] = (fs_state_t){&b->h[i], L, l, refine, base, scale, fresh, c->excl, c->filter};
                ctx[j] = &st[j];
                thr[j] = key_to_threshold(cands_threshold(&b->h[i]), base, scale);
            }
            if (L->n)
                scan(L->codes, L->n, m, g, qluts, thr, fs_offer, ctx);
            for (uint32_t j = 0; fn && j < g; j++) {
                const size_t i = (size_t)(b->pair[g0 + j] >> 32);
                const uint32_t pi = (uint32_t)b->pair[g0 + j];
                scratch_t qs = *s; /* the query's table and its probes' fresh objects */
                qs.qlut = (uint8_t *)qluts[j];
                qs.fl = b->fl + i * np;
                b->n_fresh[i] +=
                    scan_fresh(c, &qs, b->qs + i * d, l, FL, fn, pi, &b->h[i], st[j].base, st[j].scale);
            }
        }
        lo = hi;
    }
    for (size_t i = 0; i < n; i++)
        finish_query(c, s, q0 + i, b->qs + i * d, &b->h[i], b->n_fresh[i], b->fl + i * np,
                     b->hids + i * b->hsz);
}

/* Sizes of one worker's scratch, and its layout in a single arena (every piece 64-byte aligned). */
typedef struct scratch_shape {
    size_t d, nlist, nprobe, mk, qlut, dbuf, hsz, fk, pdim;
} scratch_shape_t;

/* Returns the arena size; when mem is non-NULL also points the pieces of *s into it. */
static size_t scratch_layout(const scratch_shape_t *sh, void *mem, scratch_t *s)
{
    size_t off = 0;
#define PIECE(field, bytes)                                                                                  \
    do {                                                                                                     \
        if (mem != NULL)                                                                                     \
            s->field = (void *)((char *)mem + off);                                                          \
        off += ((bytes) + 63) / 64 * 64;                                                                     \
    } while (0)
    PIECE(q, sh->d * sizeof(float));
    PIECE(cdist, sh->nlist * sizeof(float));
    PIECE(probe, sh->nprobe * sizeof(int32_t));
    PIECE(pkey, (sh->nprobe + (sh->nprobe > 16 ? sh->nprobe : 16)) * sizeof(float));
    PIECE(proj, (sh->pdim + 1) * sizeof(float));
    PIECE(ipq, sh->mk * sizeof(float));
    PIECE(table, sh->mk * sizeof(float));
    PIECE(qlut, sh->qlut);
    PIECE(dbuf, sh->dbuf * sizeof(float) + 4);
    PIECE(hkeys, sh->hsz * sizeof(float));
    PIECE(hids, sh->hsz * sizeof(int64_t));
    PIECE(fkeys, sh->fk * sizeof(float));
    PIECE(fids, sh->fk * sizeof(int64_t));
    PIECE(fl, sh->nprobe * sizeof(void *));
#undef PIECE
    return off;
}

static void matching_free(matching_t *m)
{
    if (m) {
        free(m->off);
        free(m->pos);
        free(m->with);
        free(m);
    }
}

/* The matching base items grouped by list (*out, NULL when the search scans lists instead): exact when the
 * filter's estimated matches are at most filter_exact_threshold of the items (default: VS_FILTER_EXACT_ITEMS
 * items), the nearest lists' matching items when at most VS_FILTER_SELECTIVE_SHARE of them match (and
 * the lists are ranked here), else NULL; NULL too for an index with no vectors to rank by (PQ without
 * refine). */
static vs_status matching_items(const vs_ivf_t *ivf, const vs_search_params_t *sel, int selective_ok,
                                matching_t **out, char *err)
{
    *out = NULL;
    const vs_filter_t *f = sel ? sel->filter : NULL;
    if (!vs_filter_active(f) || !ivf->pos_list ||
        (ivf->spec.refine == VS_REFINE_NONE && ivf->spec.codec != VS_CODEC_FLAT))
        return VS_OK;
    const double exact_items =
        sel->filter_exact > 0 ? sel->filter_exact * (double)ivf->ntotal : (double)VS_FILTER_EXACT_ITEMS;
    const int exact = f->est_matches <= exact_items;
    if (!exact && (!selective_ok || f->est_matches > VS_FILTER_SELECTIVE_SHARE * (double)ivf->ntotal))
        return VS_OK;
    const size_t cap = f->driver_count ? f->driver_count : 1;
    matching_t *m = calloc(1, sizeof *m);
    uint32_t *pos = malloc(cap * sizeof *pos), *lab = malloc(cap * sizeof *lab);
    if (m) {
        m->off = calloc((size_t)ivf->nlist + 1, sizeof *m->off);
        m->pos = malloc(cap * sizeof *m->pos);
    }
    if (!m || !pos || !lab || !m->off || !m->pos) {
        free(pos);
        free(lab);
        matching_free(m);
        return vs_errf(err, VS_ERR_NOMEM, "IVF filtered search: out of memory for %zu items",
                       f->driver_count);
    }
    size_t n = vs_filter_collect(f, pos, cap);
    if (n > cap)
        n = cap;
    /* position -> list: the table's list for the position's block of 64, then on past the lists ending
     * before it (empty lists share a first position) */
    for (size_t i = 0; i < n; i++) {
        const size_t p = pos[i];
        uint32_t l = ivf->pos_list[p >> VS_IVF_POS_SHIFT];
        while (l + 1 < ivf->nlist && ivf->lists[l].first + ivf->lists[l].n <= p)
            l++;
        lab[i] = l;
        m->off[l + 1]++;
    }
    for (uint32_t j = 0; j < ivf->nlist; j++)
        m->lists += m->off[j + 1] > 0;
    m->with = malloc((m->lists ? m->lists : 1) * sizeof *m->with);
    if (!m->with) {
        free(pos);
        free(lab);
        matching_free(m);
        return vs_errf(err, VS_ERR_NOMEM, "IVF filtered search: out of memory for %zu items",
                       f->driver_count);
    }
    for (uint32_t j = 0, w = 0; j < ivf->nlist; j++) {
        if (m->off[j + 1] > 0)
            m->with[w++] = j;
        m->off[j + 1] += m->off[j];
    }
    for (size_t i = n; i-- > 0;) /* back to front: each list's positions keep their order */
        m->pos[--m->off[lab[i] + 1]] = (uint32_t)(pos[i] - ivf->lists[lab[i]].first);
    /* off[l + 1] now holds list l's start: shift back into place */
    for (uint32_t j = 0; j < ivf->nlist; j++)
        m->off[j] = m->off[j + 1];
    m->off[ivf->nlist] = (uint32_t)n;
    m->n = n;
    m->exact = exact;
    free(pos);
    free(lab);
    *out = m;
    return VS_OK;
}

/* nprobe for a filter scanned in the lists: when a share s of the items in the lists that may match
 * does (est of items), each scanned list gives about s of its candidates, so more lists are probed, by
 * sqrt(1/s) (at most 16x, at most nlist): the filtered nearest items are near the unfiltered ones but
 * sparser. */
static uint32_t filtered_nprobe(const vs_ivf_t *ivf, double est, double items, uint32_t nprobe)
{
    if (items <= 0)
        return nprobe;
    double share = est / items;
    double scale = share > 0 ? sqrt(1.0 / share) : 16.0;
    if (scale > 16.0)
        scale = 16.0;
    double want = ceil((double)nprobe * scale);
    return want >= (double)ivf->nlist ? ivf->nlist : (uint32_t)want;
}

static vs_status run_search(const vs_ivf_t *ivf, const vs_fresh_t *fresh, const vs_search_params_t *sel,
                            size_t nq, const float *q, size_t k, uint32_t nprobe, uint32_t qef,
                            const int32_t *lists, float k_factor, size_t n_threads, float *out_dist,
                            int64_t *out_ids, char *err)
{
    if (!ivf->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "IVF index is not trained");
    if (nq == 0)
        return VS_OK;
    const vs_filter_t *filter = sel && vs_filter_active(sel->filter) ? sel->filter : NULL;
    /* a selective filter with a set driver term: the lists' matches found in its runs per query (no
     * enumeration of the match set per call); a range driver: the matches grouped by list per call */
    vs_filter_runs_t *runs = NULL;
    const int ranks = !lists && filter && ivf->pos_list && ivf->summary &&
                      (ivf->spec.refine != VS_REFINE_NONE || ivf->spec.codec == VS_CODEC_FLAT) &&
                      filter->est_matches <= VS_FILTER_SELECTIVE_SHARE * (double)ivf->ntotal;
    if (ranks && vs_filter_collect_cost(filter) > VS_FILTER_RUNS_MIN && !(runs = malloc(sizeof *runs)))
        return vs_errf(err, VS_ERR_NOMEM, "IVF filtered search: out of memory");
    if (runs && !vs_filter_driver_runs(filter, runs)) {
        free(runs);
        runs = NULL;
    }
    matching_t *m = NULL;
    vs_status mst = matching_items(ivf, sel, ranks && !runs, &m, err);
    if (mst != VS_OK) {
        free(runs);
        return mst;
    }
    if (m) { /* exact, or grouped: the runs are not used */
        free(runs);
        runs = NULL;
    }
    uint32_t probe_max = nprobe;
    uint64_t *may = NULL;
    if (m && !m->exact) {
        /* the lists holding matching items hold m->n of them: more of those lists are visited, by
         * sqrt(1/share) of the items in them (filtered_nprobe), ranking enough lists to find them */
        size_t items = 0;
        for (uint32_t l = 0; l < ivf->nlist; l++)
            items += m->off[l + 1] > m->off[l] ? ivf->lists[l].n : 0;
        nprobe = filtered_nprobe(ivf, (double)m->n, (double)items, nprobe);
        double ranked = ceil(2.0 * (double)nprobe * (double)ivf->nlist / (double)(m->lists ? m->lists : 1));
        probe_max = ranked >= (double)ivf->nlist ? ivf->nlist : (uint32_t)ranked;
        if (probe_max < nprobe)
            probe_max = nprobe;
    }
    if (filter && !m && ivf->summary) {
        may = malloc((ivf->nlist + 63) / 64 * sizeof *may);
        if (!may) {
            free(runs);
            return vs_errf(err, VS_ERR_NOMEM, "IVF filtered search: out of memory");
        }
        size_t n_may = vs_filter_groups(filter, ivf->summary, may), items = 0;
        for (uint32_t l = 0; l < ivf->nlist; l++)
            if (may[l / 64] >> (l % 64) & 1)
                items += ivf->lists[l].n;
        if (!lists) {
            /* within the lists that may match, a share est/items of the items match: probe more of
             * them by sqrt(items/est), ranking enough lists that nprobe of them may match */
            nprobe = filtered_nprobe(ivf, filter->est_matches, (double)items, nprobe);
            if (n_may == 0)
                n_may = 1;
            double ranked = ceil(2.0 * (double)nprobe * (double)ivf->nlist / (double)n_may);
            probe_max = ranked >= (double)ivf->nlist ? ivf->nlist : (uint32_t)ranked;
            if (probe_max < nprobe)
                probe_max = nprobe;
        }
    }
    size_t kp = k;
    if (ivf->spec.refine != VS_REFINE_NONE) {
        double f = k_factor > 0 ? k_factor : VS_IVF_DEFAULT_K_FACTOR;
        double want = ceil((double)k * f);
        kp = want > 1e7 ? 10000000 : (size_t)want;
        if (kp < k)
            kp = k;
    }
    search_ctx_t c = {.ivf = ivf,
                      .q = q,
                      .nq = nq,
                      .k = k,
                      .kp = kp,
                      .nprobe = nprobe,
                      .probe_max = probe_max,
                      .may = may,
                      .qef = qef,
                      .lists = lists,
                      .fresh = fresh,
                      .excl = sel ? sel->exclude : NULL,
                      .filter = filter,
                      .m = m,
                      .runs = runs,
                      .larger = ivf->metric != VS_METRIC_L2,
                      .out_dist = out_dist,
                      .out_ids = out_ids};
    const size_t max_list = ivf->max_list;
    size_t n_workers = n_threads < nq ? n_threads : nq;
    if (n_workers == 0)
        n_workers = 1;
    /* small worker counts (a single query: one) use the stack: no allocation per call */
    enum { STACK_WORKERS = 16 };
    scratch_t stack_scratch[STACK_WORKERS];
    void *stack_owned[STACK_WORKERS];
    int heap = n_workers > STACK_WORKERS;
    c.scratch = heap ? calloc(n_workers, sizeof *c.scratch) : stack_scratch;
    void **owned = heap ? calloc(n_workers, sizeof *owned) : stack_owned;
    if (c.scratch == NULL || owned == NULL) {
        if (heap) {
            free(c.scratch);
            free(owned);
        }
        matching_free(m);
        free(runs);
        free(may);
        return vs_errf(err, VS_ERR_NOMEM, "IVF search: out of memory");
    }
    if (!heap) {
        memset(stack_scratch, 0, n_workers * sizeof *stack_scratch);
        memset(stack_owned, 0, n_workers * sizeof *stack_owned);
    }
    scratch_shape_t shape = {
        .d = ivf->d,
        .nlist = ivf->nlist,
        .nprobe = probe_max,
        .mk = ivf->spec.codec == VS_CODEC_PQ ? (size_t)ivf->pq.m * ivf->pq.ksub : 1,
        .qlut = (size_t)vs_fs_pairs(ivf->pq.m ? ivf->pq.m : 1) * 64,
        .dbuf = max_list > ivf->d ? max_list : ivf->d,
        /* reservoir: twice the pool; also holds the coarse pool's ids; with fresh
         * writes the heap without refine has VS_FRESH_SLACK more slots */
        /* (the coarse pool of the probe_max lists ranked, a filter's more than nprobe) */
        .hsz = (2 * kp > 2 * (size_t)probe_max + 16 ? 2 * kp : 2 * (size_t)probe_max + 16) +
               (fresh ? VS_FRESH_SLACK : 0),
        .pdim = ivf->coarse.pdim,
        /* the final k; with fresh writes k + slack twice (heap, then emission) */
        .fk = fresh ? 2 * (k + VS_FRESH_SLACK) : k};
    size_t bytes = scratch_layout(&shape, NULL, NULL);
    vs_status st = VS_OK;
    for (size_t w = 0; w < n_workers && st == VS_OK; w++) {
        /* the calling thread (worker 0) reuses its arena across calls: no allocation per query */
        vs_arena_t *a = w == 0 ? vs_arena_thread(VS_ARENA_IVF, bytes) : NULL;
        void *mem = w == 0 ? (a ? a->mem : NULL) : (owned[w] = aligned_alloc(64, (bytes + 63) / 64 * 64));
        if (mem == NULL)
            st = vs_errf(err, VS_ERR_NOMEM, "IVF search: out of memory for %zu bytes of scratch", bytes);
        else
            scratch_layout(&shape, mem, &c.scratch[w]);
    }
    /* list-major in chunks (search_chunk), or query by query */
    /* the chunk: as many queries as VS_IVF_CHUNK_BYTES of candidates hold (large k * k_factor: fewer; under
     * VS_FS_MULTI, or out of memory for the chunk state, the query-by-query path, which needs none) */
    size_t chunk = VS_IVF_CHUNK_BYTES / (shape.hsz * (sizeof(float) + sizeof(int64_t)));
    const int batched = st == VS_OK && nq >= VS_IVF_BATCH_MIN && ivf->spec.codec == VS_CODEC_PQ &&
                        ivf->spec.fastscan && !m && !runs && !may && chunk >= VS_FS_MULTI;
    batch_t *batch = NULL;
    if (batched) {
        /* the fewest chunks that fit, rounded up to a multiple of the workers so that each takes as many
         * (10,000 queries on 2 threads: 6 chunks of 1,667, not 3 + 2 of 2,048) */
        chunk = chunk > VS_IVF_CHUNK ? VS_IVF_CHUNK : chunk;
        size_t n_chunks = (nq + chunk - 1) / chunk;
        n_chunks = (n_chunks + n_workers - 1) / n_workers * n_workers;
        c.chunk = (nq + n_chunks - 1) / n_chunks;
        batch = calloc(n_workers, sizeof *batch);
        for (size_t w = 0; batch && w < n_workers; w++)
            if (!batch_alloc(&batch[w], ivf, c.chunk, probe_max, shape.hsz)) {
                for (size_t v = 0; v < w; v++)
                    batch_free(&batch[v]);
                free(batch);
                batch = NULL;
            }
        c.batch = batch;
    }
    if (st == VS_OK && batch)
        st = vs_parallel_for((nq + c.chunk - 1) / c.chunk, n_workers, search_chunk, &c, err);
    else if (st == VS_OK)
        st = vs_parallel_for(nq, n_workers, search_one, &c, err);
    for (size_t w = 0; batch && w < n_workers; w++)
        batch_free(&batch[w]);
    free(batch);
    for (size_t w = 0; w < n_workers; w++)
        free(owned[w]);
    if (heap) {
        free(owned);
        free(c.scratch);
    }
    matching_free(m);
    free(runs);
    free(may);
    return st;
}

/* Checks the parameters (the lists when given, else nprobe and quantizer_efSearch) as vs_index_search and
 * vs_ivf_search_lists promise, then searches. */
static vs_status checked_search(const vs_ivf_t *ivf, const vs_fresh_t *fresh, const vs_search_params_t *sel,
                                size_t nq, const float *q, size_t k, uint32_t nprobe, uint32_t qef,
                                const int32_t *lists, float k_factor, size_t n_threads, float *out_dist,
                                int64_t *out_ids, char *err)
{
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%u", k, VS_TOPK_MAX_K);
    if (lists != NULL) {
        if (nprobe == 0 || nprobe > ivf->nlist)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%u lists per query is out of range 1..%u", nprobe,
                           ivf->nlist);
        for (size_t i = 0; i < nq * nprobe; i++)
            if (lists[i] < -1 || lists[i] >= (int32_t)ivf->nlist)
                return vs_errf(err, VS_ERR_OUT_OF_RANGE, "list id %d (query %zu) is out of range 0..%u",
                               lists[i], i / nprobe, ivf->nlist - 1);
    } else {
        if (nprobe == 0)
            nprobe = VS_IVF_DEFAULT_NPROBE;
        if (nprobe > ivf->nlist)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe %u exceeds nlist %u", nprobe, ivf->nlist);
        if (qef && !ivf->coarse.hnsw)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "quantizer_efSearch applies to IVF indexes with an HNSW coarse quantizer "
                           "(IVF{n}_HNSW{M}) only");
    }
    vs_status st = vs_check_finite(q, nq, ivf->d, "query", err);
    if (st != VS_OK)
        return st;
    return run_search(ivf, fresh, sel, nq, q, k, nprobe, qef, lists, k_factor,
                      n_threads ? n_threads : vs_parallel_cpus(), out_dist, out_ids, err);
}

vs_status vs_ivf_search_lists(const vs_ivf_t *ivf, size_t nq, const float *q, size_t k, const int32_t *lists,
                              uint32_t n_lists, float k_factor, const vs_search_params_t *sel,
                              size_t n_threads, float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN])
{
    return checked_search(ivf, NULL, sel, nq, q, k, n_lists, 0, lists, k_factor, n_threads, out_dist, out_ids,
                          err);
}

vs_status vs_ivf_search_fresh(const vs_ivf_t *ivf, const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                              uint32_t nprobe, uint32_t qef, const int32_t *lists, float k_factor,
                              const vs_search_params_t *sel, size_t n_threads, float *out_dist,
                              int64_t *out_ids, char *err)
{
    return checked_search(ivf, f, sel, nq, q, k, nprobe, qef, lists, k_factor, n_threads, out_dist, out_ids,
                          err);
}

/* ---- persistence -------------------------------------------------------------------------------- */

/* The params blob of the file header (little-endian u32s; the rest of the 128 bytes is zero). */
typedef struct ivf_params {
    uint32_t nlist, codec, pq_m, pq_nbits, fastscan, refine;
} ivf_params_t;

static vs_status ivf_save(const void *impl, vs_ifile_writer_t *w, uint8_t params[128], char *err)
{
    const vs_ivf_t *ivf = impl;
    const uint32_t d = ivf->d;
    ivf_params_t p = {ivf->nlist,         (uint32_t)ivf->spec.codec,    ivf->spec.pq_m,
                      ivf->spec.pq_nbits, (uint32_t)ivf->spec.fastscan, (uint32_t)ivf->spec.refine};
    memset(params, 0, 128);
    memcpy(params, &p, sizeof p);
    vs_status st = vs_ifile_writer_add_section(w, "ivf.centroids", ivf->centroids,
                                               (size_t)ivf->nlist * d * sizeof(float), err);
    if (st == VS_OK && ivf->spec.codec == VS_CODEC_PQ)
        st =
            vs_ifile_writer_add_section(w, "pq.codebooks", ivf->pq.centroids,
                                        (size_t)ivf->pq.m * ivf->pq.ksub * ivf->pq.dsub * sizeof(float), err);
    if (st == VS_OK && ivf->spec.refine == VS_REFINE_SQ8)
        st = vs_sq8_write_section(&ivf->sq8, w, err);
    if (st == VS_OK)
        st = vs_ifile_writer_begin_section(w, "ivf.offsets", err);
    uint64_t off = 0;
    for (uint32_t l = 0; st == VS_OK && l <= ivf->nlist; l++) {
        st = vs_ifile_writer_append(w, &off, sizeof off, err);
        if (l < ivf->nlist)
            off += ivf->lists[l].n;
    }
    if (st == VS_OK)
        st = vs_ifile_writer_end_section(w, err);
    /* the per-list arrays, concatenated in list order */
    const char *tags[3] = {"ivf.ids", "ivf.codes",
                           ivf->spec.refine == VS_REFINE_FLAT ? "refine.flat" : "refine.sq8"};
    int n_arrays = ivf->spec.refine != VS_REFINE_NONE ? 3 : 2;
    for (int a = 0; st == VS_OK && a < n_arrays; a++) {
        st = vs_ifile_writer_begin_section(w, tags[a], err);
        for (uint32_t l = 0; st == VS_OK && l < ivf->nlist; l++) {
            const ivf_list_t *L = &ivf->lists[l];
            if (a == 0)
                st = vs_ifile_writer_append(w, L->ids, L->n * sizeof(int64_t), err);
            else if (a == 1)
                st = vs_ifile_writer_append(w, L->codes, code_bytes(ivf, L->n), err);
            else
                st = vs_ifile_writer_append(w, L->refine, L->n * vs_ivf_refine_bytes(ivf), err);
        }
        if (st == VS_OK)
            st = vs_ifile_writer_end_section(w, err);
    }
    return st;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

vs_status vs_ivf_load(const vs_ifile_t *f, const char *path, const vs_factory_spec_t *spec, int refine_on_disk,
                      vs_ivf_t **out, char err[VS_ERR_LEN])
{
    const vs_ifile_header_t *h = vs_ifile_header(f);
    ivf_params_t p;
    memcpy(&p, h->params, sizeof p);
    if (p.nlist != spec->nlist || p.codec != (uint32_t)spec->codec || p.pq_m != spec->pq_m ||
        p.pq_nbits != spec->pq_nbits || p.fastscan != (uint32_t)spec->fastscan ||
        p.refine != (uint32_t)spec->refine)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header parameters do not match its factory string '%s'",
                       path, h->factory);
    vs_ivf_t *ivf;
    vs_status st = vs_ivf_create(h->dim, h->metric, spec, &ivf, err);
    if (st != VS_OK)
        return st == VS_ERR_INVALID_ARGUMENT ? vs_errf(err, VS_ERR_CORRUPT, "%s: %s", path, err) : st;
    const uint32_t d = ivf->d, nlist = ivf->nlist;
    const size_t n = h->n_vectors;
    const void *cent, *offs, *ids, *codes, *refine = NULL, *cb = NULL;
    st = vs_ifile_section_sized(f, path, "ivf.centroids", (size_t)nlist * d * sizeof(float), &cent, err);
    if (st == VS_OK)
        st = vs_ifile_section_sized(f, path, "ivf.offsets", ((size_t)nlist + 1) * sizeof(uint64_t), &offs,
                                    err);
    if (st != VS_OK)
        goto fail;
    const uint64_t *off = offs;
    if (off[0] != 0 || off[nlist] != n) {
        st = vs_errf(err, VS_ERR_CORRUPT,
                     "%s: section 'ivf.offsets' does not span the %zu vectors of the header", path, n);
        goto fail;
    }
    size_t total_code = 0;
    for (uint32_t l = 0; l < nlist; l++) {
        if (off[l + 1] < off[l] || off[l + 1] - off[l] > 0xffffffffu) {
            st = vs_errf(err, VS_ERR_CORRUPT, "%s: section 'ivf.offsets': list %u has a bad size", path, l);
            goto fail;
        }
        total_code += code_bytes(ivf, (size_t)(off[l + 1] - off[l]));
    }
    if (n > SIZE_MAX / 8 / (d ? d : 1)) {
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: %zu vectors is not a plausible count", path, n);
        goto fail;
    }
    st = vs_ifile_section_sized(f, path, "ivf.ids", n * sizeof(int64_t), &ids, err);
    if (st == VS_OK)
        st = vs_ifile_section_sized(f, path, "ivf.codes", total_code, &codes, err);
    if (st == VS_OK && spec->codec == VS_CODEC_PQ)
        st =
            vs_ifile_section_sized(f, path, "pq.codebooks",
                                   (size_t)ivf->pq.m * ivf->pq.ksub * ivf->pq.dsub * sizeof(float), &cb, err);
    if (st == VS_OK && spec->refine == VS_REFINE_FLAT)
        st = vs_ifile_section_sized(f, path, "refine.flat", n * d * sizeof(float), &refine, err);
    if (st == VS_OK && spec->refine == VS_REFINE_SQ8) {
        st = vs_ifile_section_sized(f, path, "refine.sq8", n * d, &refine, err);
        if (st == VS_OK)
            st = vs_sq8_read_section(&ivf->sq8, d, f, path, err);
    }
    if (st != VS_OK)
        goto fail;
    if (!all_finite(cent, (size_t)nlist * d) ||
        (cb && !all_finite(cb, (size_t)ivf->pq.m * ivf->pq.ksub * ivf->pq.dsub)) ||
        (spec->codec == VS_CODEC_FLAT && !all_finite(codes, n * d)) ||
        (spec->refine == VS_REFINE_FLAT && !refine_on_disk && !all_finite(refine, n * d))) {
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: a float section holds NaN or Inf", path);
        goto fail;
    }
    const int64_t *idv = ids;
    for (size_t i = 0; i < n; i++)
        if (idv[i] < 0) {
            st = vs_errf(err, VS_ERR_CORRUPT, "%s: section 'ivf.ids': entry %zu is negative (%lld)", path, i,
                         (long long)idv[i]);
            goto fail;
        }
    ivf->centroids = malloc((size_t)nlist * d * sizeof(float)); /* small; owned so destroy stays uniform */
    if (ivf->centroids == NULL) {
        st = vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    memcpy(ivf->centroids, cent, (size_t)nlist * d * sizeof(float));
    if (cb) {
        ivf->pq.centroids = (float *)cb;
        ivf->pq.owned = 0;
    }
    size_t code_at = 0, rb = vs_ivf_refine_bytes(ivf);
    for (uint32_t l = 0; l < nlist; l++) {
        ivf_list_t *L = &ivf->lists[l];
        size_t ln = (size_t)(off[l + 1] - off[l]);
        L->n = L->cap = ln;
        L->owned = 0;
        L->ids = (int64_t *)idv + off[l];
        L->codes = (uint8_t *)codes + code_at;
        L->refine = refine ? (uint8_t *)refine + off[l] * rb : NULL;
        code_at += code_bytes(ivf, ln);
    }
    update_max_list(ivf);
    ivf->ntotal = n;
    ivf->trained = 1;
    st = compute_term2(ivf, err);
    if (st != VS_OK)
        goto fail;
    if (refine_on_disk && rb) {
        const char *tag = spec->refine == VS_REFINE_FLAT ? "refine.flat" : "refine.sq8";
        uint64_t soff, slen;
        st = vs_ifile_section_span(f, tag, &soff, &slen, err);
        if (st == VS_OK)
            st = vs_refine_disk_open(path, soff, slen, rb, &ivf->rdisk, err);
        if (st != VS_OK)
            goto fail;
    }
    *out = ivf;
    return VS_OK;
fail:
    vs_ivf_destroy(ivf);
    return st;
}

/* ---- vs_index_t glue ---------------------------------------------------------------------------- */

static vs_status ops_search(const void *impl, size_t nq, const float *q, size_t k,
                            const vs_search_params_t *params, size_t n_threads, float *out_dist,
                            int64_t *out_ids, char *err)
{
    const vs_ivf_t *ivf = impl;
    uint32_t nprobe = params->nprobe ? params->nprobe : VS_IVF_DEFAULT_NPROBE;
    if (nprobe > ivf->nlist)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe %u exceeds nlist %u", nprobe, ivf->nlist);
    if (params->quantizer_ef_search && !ivf->coarse.hnsw)
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "quantizer_efSearch applies to IVF indexes with an HNSW coarse quantizer (IVF{n}_HNSW{M}) only");
    return run_search(ivf, NULL, params, nq, q, k, nprobe, params->quantizer_ef_search, NULL,
                      params->k_factor, n_threads, out_dist, out_ids, err);
}

static vs_status ops_train(void *impl, size_t n, const float *x, size_t n_threads,
                           const vs_progress_cb_t *progress, char *err)
{
    return ivf_train(impl, n, x, n_threads, progress, err);
}

static vs_status ops_add(void *impl, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                         const vs_progress_cb_t *progress, char *err)
{
    return ivf_add(impl, n, x, ids, NULL, n_threads, progress, err);
}

vs_status vs_ivf_add_lists(vs_ivf_t *ivf, size_t n, const float *x, const int64_t *ids, const int32_t *lists,
                           size_t n_threads, const vs_progress_cb_t *progress, char err[VS_ERR_LEN])
{
    return ivf_add(ivf, n, x, ids, lists, n_threads, progress, err);
}

static size_t ops_count(const void *impl)
{
    return ((const vs_ivf_t *)impl)->ntotal;
}

static size_t ops_memory_bytes(const void *impl)
{
    const vs_ivf_t *ivf = impl;
    size_t b = (size_t)ivf->nlist * ivf->d * sizeof(float);
    if (ivf->spec.codec == VS_CODEC_PQ)
        b += (size_t)ivf->pq.m * ivf->pq.ksub * ivf->pq.dsub * sizeof(float);
    if (ivf->term2)
        b += (size_t)ivf->nlist * ivf->pq.m * ivf->pq.ksub * sizeof(float);
    if (ivf->cbt)
        b += (size_t)ivf->pq.m * ivf->pq.dsub * 16 * sizeof(float);
    b += vs_coarse_memory_bytes(&ivf->coarse);

    for (uint32_t l = 0; l < ivf->nlist; l++) {
        const ivf_list_t *L = &ivf->lists[l];
        b += code_bytes(ivf, L->n) + L->n * (sizeof(int64_t) + vs_ivf_refine_bytes(ivf));
    }
    return b;
}

static int ops_needs_training(const void *impl)
{
    return !((const vs_ivf_t *)impl)->trained;
}

static void ops_destroy(void *impl)
{
    vs_ivf_destroy(impl);
}

static void ops_ids_in_order(const void *impl, int64_t *out)
{
    const vs_ivf_t *ivf = impl;
    for (uint32_t l = 0; l < ivf->nlist; l++)
        if (ivf->lists[l].n) /* an empty list may have no ids array */
            memcpy(out + ivf->lists[l].first, ivf->lists[l].ids, ivf->lists[l].n * sizeof *out);
}

static vs_status ops_attach_attrs(void *impl, const vs_attrs_t *a, char *err)
{
    vs_ivf_t *ivf = impl;
    vs_attrs_summary_t *s = NULL;
    if (a) {
        size_t *first = malloc((ivf->nlist ? ivf->nlist : 1) * sizeof *first),
               *count = malloc((ivf->nlist ? ivf->nlist : 1) * sizeof *count);
        vs_status st = first && count ? VS_OK : vs_errf(err, VS_ERR_NOMEM, "IVF attributes: out of memory");
        for (uint32_t l = 0; st == VS_OK && l < ivf->nlist; l++) {
            first[l] = ivf->lists[l].first;
            count[l] = ivf->lists[l].n;
        }
        if (st == VS_OK)
            st = vs_attrs_summarize(a, first, count, ivf->nlist, &s, err);
        free(first);
        free(count);
        if (st != VS_OK)
            return st;
    }
    uint32_t *pl = NULL;
    if (a) { /* position -> list, one entry per 64 positions (the filtered paths map matching items) */
        const size_t nb = (ivf->ntotal >> VS_IVF_POS_SHIFT) + 1;
        pl = malloc(nb * sizeof *pl);
        if (!pl) {
            vs_attrs_summary_destroy(s);
            return vs_errf(err, VS_ERR_NOMEM, "IVF attributes: out of memory");
        }
        uint32_t l = 0;
        for (size_t b = 0; b < nb; b++) {
            const size_t p = b << VS_IVF_POS_SHIFT;
            while (l + 1 < ivf->nlist && ivf->lists[l].first + ivf->lists[l].n <= p)
                l++;
            pl[b] = l;
        }
    }
    vs_attrs_summary_destroy(ivf->summary);
    ivf->summary = s;
    free(ivf->pos_list);
    ivf->pos_list = pl;
    return VS_OK;
}

/* Exact vectors: IVF,Flat's codes or the RFlat refine vectors, one segment per non-empty list. */
static size_t ops_exact_segs(const void *impl, vs_exact_seg_t *out, size_t cap)
{
    const vs_ivf_t *ivf = impl;
    const int flat_codes = ivf->spec.codec == VS_CODEC_FLAT, rflat = ivf->spec.refine == VS_REFINE_FLAT;
    if (!flat_codes && !rflat)
        return 0;
    size_t n = 0;
    for (uint32_t l = 0; l < ivf->nlist; l++) {
        const ivf_list_t *L = &ivf->lists[l];
        if (!L->n)
            continue;
        if (n < cap)
            out[n] = (vs_exact_seg_t){
                .rows = (const float *)(flat_codes ? L->codes : L->refine), .ids = L->ids, .n = L->n};
        n++;
    }
    if (n == 0 && cap > 0) /* an empty index still keeps exact vectors: one empty segment */
        out[0] = (vs_exact_seg_t){0};
    return n ? n : 1;
}

const vs_index_ops_t vs_ivf_ops = {
    ops_train,   ops_add,          ops_search,       ops_count, ops_memory_bytes, ops_needs_training,
    ops_destroy, ops_ids_in_order, ops_attach_attrs, ivf_save,  ops_exact_segs,
};
