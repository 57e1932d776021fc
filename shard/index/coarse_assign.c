/* coarse_assign.c: the builder's assignment of vectors to lists at large nlist (coarse.h), by groups of
 * centroids searched with one matrix product per group.
 *
 * Exact assignment costs 2 * nlist * d flops per vector: at nlist 16,384 and d 128 it caps a build near
 * 19k vectors per CPU-second on this box (docs/benchmarks.md). Here the centroids are grouped by k-means
 * into nlist / GROUP_SIZE groups; a vector ranks the group centres (one sgemm per block of vectors), and
 * its list is the nearest centroid among the members of its `probe` nearest groups. A vector-by-vector
 * scan of those members runs at matrix-vector speed and lost to the exact sgemm (measured); so the
 * vectors of a block are gathered per group and each group's members are matched against its vectors
 * by one sgemm, and every vector keeps the best of each of its groups. The cost is
 * 2 * d * (ng + probe * nlist / ng) flops per vector at sgemm speed, about 1/6 of the exact cost at
 * 16,384 lists; a vector lands outside its exact nearest list only when that list's group is not among
 * its probed ones (the figures and the recall cost are in docs/benchmarks.md).
 *
 * Deterministic: the groups are a function of the centroids alone (k-means with a fixed seed, whose
 * result does not depend on threads), and a vector's list is a function of the vector and the groups:
 * not of the block it came in, its position in it, or the threads. So a distributed build's workers and
 * the one-process build agree byte for byte (the same argument as the exact path's: a product of sgemm
 * is the same whichever rows share its call). */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/distance.h"
#include "common/kmeans.h"
#include "common/parallel.h"
#include "common/topk.h"
#include "shard/index/coarse.h"

enum {
    GROUP_SIZE = 128,    /* centroids per group on average: ng = nlist / GROUP_SIZE */
    PROBE_DIV = 8,       /* groups probed per vector: ng / PROBE_DIV */
    ROWS = 256,          /* vectors per group-ranking task */
    GATHER = 1024,       /* vectors per sgemm against one group's members */
    GROUPS_SEED = 20260, /* the grouping's k-means seed (fixed: part of the assignment rule) */
};

struct vs_coarse_groups {
    pthread_mutex_t mu; /* guards the lazy build below (first assignment) */
    int ready;
    uint32_t ng, probe, max_size;
    float *gc, *gcn;  /* ng x d group centres and their squared norms */
    uint32_t *start;  /* ng + 1: group g's members are member[start[g] .. start[g + 1]) */
    int32_t *member;  /* nlist centroid ids, by group, ascending within one */
    float *mc, *mcn;  /* nlist x d: the members' centroids in that order, their squared norms */
};

int vs_coarse_grouped_applies(vs_metric metric, uint32_t nlist)
{
    return nlist >= VS_COARSE_GROUPED_MIN_NLIST && (metric == VS_METRIC_L2 || metric == VS_METRIC_COSINE);
}

struct vs_coarse_groups *vs_coarse_groups_new(void)
{
    struct vs_coarse_groups *g = calloc(1, sizeof *g);
    if (g != NULL && pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        g = NULL;
    }
    return g;
}

void vs_coarse_groups_free(struct vs_coarse_groups *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g->gc);
    free(g->gcn);
    free(g->start);
    free(g->member);
    free(g->mc);
    free(g->mcn);
    free(g);
}

/* The groups of c's centroids into g (g->mu held). */
static vs_status build_groups(const vs_coarse_t *c, struct vs_coarse_groups *g, size_t n_threads, char *err)
{
    const uint32_t d = c->d, nl = c->nlist, ng = nl / GROUP_SIZE;
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    int32_t *lab = malloc((size_t)nl * sizeof(int32_t));
    free(g->gc); /* what an earlier failed attempt left */
    free(g->gcn);
    free(g->start);
    free(g->member);
    free(g->mc);
    free(g->mcn);
    g->max_size = 0;
    g->gc = malloc((size_t)ng * d * sizeof(float));
    g->gcn = malloc((size_t)ng * sizeof(float));
    g->start = calloc((size_t)ng + 1, sizeof(uint32_t));
    g->member = malloc((size_t)nl * sizeof(int32_t));
    g->mc = malloc((size_t)nl * d * sizeof(float));
    g->mcn = malloc((size_t)nl * sizeof(float));
    vs_status st = VS_OK;
    if (!lab || !g->gc || !g->gcn || !g->start || !g->member || !g->mc || !g->mcn)
        st = vs_errf(err, VS_ERR_NOMEM, "coarse assign: out of memory for the centroid groups");
    vs_kmeans_params_t kp = {.k = ng, .seed = GROUPS_SEED, .n_threads = n_threads};
    if (st == VS_OK)
        st = vs_kmeans_train(c->centroids, nl, d, &kp, g->gc, NULL, NULL, err);
    if (st == VS_OK)
        st = vs_kmeans_assign(c->centroids, nl, g->gc, ng, d, n_threads, lab, NULL, err);
    if (st == VS_OK) {
        for (uint32_t l = 0; l < nl; l++)
            g->start[lab[l] + 1]++;
        for (uint32_t k = 0; k < ng; k++) {
            uint32_t size = g->start[k + 1];
            g->max_size = size > g->max_size ? size : g->max_size;
            g->start[k + 1] += g->start[k];
            g->gcn[k] = kern->norm_sqr(g->gc + (size_t)k * d, d);
        }
        uint32_t *fill = lab == NULL ? NULL : malloc((size_t)ng * sizeof(uint32_t));
        if (fill == NULL)
            st = vs_errf(err, VS_ERR_NOMEM, "coarse assign: out of memory for the centroid groups");
        else {
            memcpy(fill, g->start, (size_t)ng * sizeof(uint32_t));
            for (uint32_t l = 0; l < nl; l++) { /* ascending l: members ascending within a group */
                uint32_t at = fill[lab[l]]++;
                g->member[at] = (int32_t)l;
                memcpy(g->mc + (size_t)at * d, c->centroids + (size_t)l * d, d * sizeof(float));
                g->mcn[at] = kern->norm_sqr(c->centroids + (size_t)l * d, d);
            }
            free(fill);
        }
    }
    uint32_t nonempty = 0;
    for (uint32_t k = 0; st == VS_OK && k < ng; k++)
        nonempty += g->start[k + 1] > g->start[k];
    free(lab);
    g->ng = ng;
    g->probe = ng / PROBE_DIV < nonempty ? ng / PROBE_DIV : nonempty; /* empty groups are never probed */
    g->probe = g->probe > VS_COARSE_GROUPED_MAX_PROBE ? VS_COARSE_GROUPED_MAX_PROBE : g->probe;
    g->ready = st == VS_OK;
    return st;
}

typedef struct assign_ctx {
    const vs_coarse_t *c;
    const struct vs_coarse_groups *g;
    const float *x;
    size_t m;
    int32_t *probe;    /* m x g->probe: each vector's groups */
    uint32_t *gstart;  /* ng + 1 offsets into pairs */
    uint32_t *pairs;   /* m x probe: (row * probe + slot), by group, rows ascending within one */
    float *best_key;   /* m x probe: the best key of each slot's group */
    int32_t *best_id;  /* m x probe: its centroid */
    float **scratch;   /* per worker: GATHER x d gathered vectors, then GATHER x max(ng, max_size) */
} assign_ctx_t;

/* One block of ROWS vectors: their probe nearest group centres (key |g|^2 - 2 x.g; ties to the smaller
 * group), by vs_topk_best_of. */
static void rank_task(void *ctx, size_t task, size_t worker)
{
    assign_ctx_t *a = ctx;
    const struct vs_coarse_groups *g = a->g;
    const uint32_t d = a->c->d, ng = g->ng, probe = g->probe;
    size_t r0 = task * ROWS, rows = a->m - r0 < ROWS ? a->m - r0 : ROWS;
    float *prod = a->scratch[worker] + (size_t)GATHER * d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)ng, (int)d, 1.0f, a->x + r0 * d, (int)d,
                g->gc, (int)d, 0.0f, prod, (int)ng);
    float okeys[VS_COARSE_GROUPED_MAX_PROBE];
    int64_t oids[VS_COARSE_GROUPED_MAX_PROBE];
    for (size_t r = 0; r < rows; r++) {
        float *key = prod + r * ng; /* the products become the keys in place; empty groups never win */
        for (uint32_t k = 0; k < ng; k++)
            key[k] = g->start[k + 1] == g->start[k] ? INFINITY : g->gcn[k] - 2.0f * key[k];
        size_t got = vs_topk_best_of(key, ng, probe, okeys, oids); /* probe <= the non-empty groups */
        int32_t *out = a->probe + (r0 + r) * probe;
        for (size_t t = 0; t < got; t++)
            out[t] = (int32_t)oids[t];
    }
}

/* One group: its vectors, GATHER at a time, against its members by one sgemm; each (vector, slot) keeps
 * its best member (key |c|^2 - 2 x.c; ties to the smaller centroid, the first member). */
static void group_task(void *ctx, size_t task, size_t worker)
{
    assign_ctx_t *a = ctx;
    const struct vs_coarse_groups *g = a->g;
    const uint32_t d = a->c->d, probe = g->probe;
    const uint32_t m0 = g->start[task], size = g->start[task + 1] - m0;
    const uint32_t *pairs = a->pairs + a->gstart[task];
    const size_t cnt = a->gstart[task + 1] - a->gstart[task];
    float *xg = a->scratch[worker], *prod = xg + (size_t)GATHER * d;
    for (size_t i0 = 0; i0 < cnt; i0 += GATHER) {
        size_t rows = cnt - i0 < GATHER ? cnt - i0 : GATHER;
        for (size_t r = 0; r < rows; r++)
            memcpy(xg + r * d, a->x + (size_t)(pairs[i0 + r] / probe) * d, d * sizeof(float));
        if (size > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)size, (int)d, 1.0f, xg, (int)d,
                        g->mc + (size_t)m0 * d, (int)d, 0.0f, prod, (int)size);
        for (size_t r = 0; r < rows; r++) {
            const float *p = prod + r * size;
            float best = INFINITY;
            uint32_t bj = 0;
            for (uint32_t j = 0; j < size; j++) {
                float key = g->mcn[m0 + j] - 2.0f * p[j];
                if (key < best) {
                    best = key;
                    bj = j;
                }
            }
            a->best_key[pairs[i0 + r]] = best;
            a->best_id[pairs[i0 + r]] = size > 0 ? g->member[m0 + bj] : -1;
        }
    }
}

vs_status vs_coarse_assign_grouped(const vs_coarse_t *c, size_t n, const float *x, size_t n_threads,
                                   int32_t *lists, char err[VS_ERR_LEN])
{
    struct vs_coarse_groups *g = c->groups;
    if (n_threads == 0)
        n_threads = vs_parallel_cpus();
    vs_status st = vs_check_finite(x, n, c->d, "vector", err);
    if (st != VS_OK || n == 0)
        return st;
    pthread_mutex_lock(&g->mu);
    if (!g->ready)
        st = build_groups(c, g, n_threads, err);
    pthread_mutex_unlock(&g->mu);
    if (st != VS_OK)
        return st;
    vs_parallel_blas_single();
    const uint32_t d = c->d, ng = g->ng, probe = g->probe;
    const size_t block = ((size_t)1 << 20) / probe < n ? ((size_t)1 << 20) / probe : n, width = ng > g->max_size ? ng : g->max_size;
    assign_ctx_t a = {.c = c, .g = g};
    a.probe = malloc(block * probe * sizeof(int32_t));
    a.gstart = malloc(((size_t)ng + 1) * sizeof(uint32_t));
    a.pairs = malloc(block * probe * sizeof(uint32_t));
    a.best_key = malloc(block * probe * sizeof(float));
    a.best_id = malloc(block * probe * sizeof(int32_t));
    a.scratch = calloc(n_threads, sizeof(float *));
    int ok = a.probe && a.gstart && a.pairs && a.best_key && a.best_id && a.scratch;
    for (size_t w = 0; ok && w < n_threads; w++)
        ok = (a.scratch[w] = malloc((size_t)GATHER * (d + width) * sizeof(float))) != NULL;
    if (!ok)
        st = vs_errf(err, VS_ERR_NOMEM, "coarse assign: out of memory");
    for (size_t i0 = 0; st == VS_OK && i0 < n; i0 += block) {
        a.x = x + i0 * d;
        a.m = n - i0 < block ? n - i0 : block;
        st = vs_parallel_for((a.m + ROWS - 1) / ROWS, n_threads, rank_task, &a, err);
        if (st != VS_OK)
            break;
        memset(a.gstart, 0, ((size_t)ng + 1) * sizeof(uint32_t));
        for (size_t s = 0; s < a.m * probe; s++)
            a.gstart[a.probe[s] + 1]++;
        for (uint32_t k = 0; k < ng; k++)
            a.gstart[k + 1] += a.gstart[k];
        for (size_t s = 0; s < a.m * probe; s++) /* gstart[k] serves as group k's fill cursor */
            a.pairs[a.gstart[a.probe[s]]++] = (uint32_t)s;
        for (uint32_t k = ng; k > 0; k--) /* each cursor ended at the next group's start: shift back */
            a.gstart[k] = a.gstart[k - 1];
        a.gstart[0] = 0;
        st = vs_parallel_for(ng, n_threads, group_task, &a, err);
        for (size_t r = 0; st == VS_OK && r < a.m; r++) {
            const float *bk = a.best_key + r * probe;
            const int32_t *bi = a.best_id + r * probe;
            float best = INFINITY;
            int32_t id = -1;
            for (uint32_t s = 0; s < probe; s++)
                if (bi[s] >= 0 && (bk[s] < best || (bk[s] == best && bi[s] < id) || id < 0)) {
                    best = bk[s];
                    id = bi[s];
                }
            lists[i0 + r] = id;
        }
    }
    for (size_t w = 0; a.scratch && w < n_threads; w++)
        free(a.scratch[w]);
    free(a.scratch);
    free(a.probe);
    free(a.gstart);
    free(a.pairs);
    free(a.best_key);
    free(a.best_id);
    return st;
}
