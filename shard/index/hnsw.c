/* hnsw.c: HNSW build, search, persistence and invariant checks. See hnsw.h for the design.
 *
 * Keys everywhere are "smaller is better": squared L2, or the negated inner product (IP, cosine).
 * The candidate list of a layer search is one array sorted by key, capacity ef, each entry flagged once
 * expanded; the next candidate is the best unexpanded one. This is the best-first search of the paper
 * (Algorithm 2) with its two heaps merged: a candidate worse than the ef-th result is never expanded,
 * so it need not be kept. */
#include "shard/index/exact.h"
#include "shard/index/hnsw.h"
#include "shard/index/attrs.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/cpu.h"
#include "common/distance.h"
#include "common/parallel.h"
#include "common/idset.h"
#include "common/topk.h"
#include "shard/index/arena.h"
#include "shard/index/ifile.h"
#include "shard/index/sq8.h"

#define EXPANDED 0x80000000u
#define NO_NODE 0xffffffffu
#define BUILD_CHUNK 32 /* nodes per build task */

struct vs_hnsw {
    uint32_t d, M, M0;
    vs_metric metric;
    int ip;         /* keys are negated inner products (IP, cosine) */
    int sq8;        /* traversal on codes */
    int bounded_l2; /* L2 with AVX-512: float traversal may stop a distance early (l2_bounded_avx512) */
    int trained;
    uint32_t ef_construction;
    uint64_t seed;
    uint64_t uid; /* tells per-thread visited tags of different indexes apart */
    size_t n, cap;
    size_t repaired_n; /* vs_hnsw_append: nodes at the last reachability repair */
    /* vs_hnsw_append's build state, kept between appends (sized for inc_cap nodes) */
    void *inc_mem;
    _Atomic unsigned char *inc_locks;
    size_t inc_cap;
    struct scratch *inc_scratch; /* one (points into inc_mem) */
    int owned;                   /* 0: vec, codes, links0, upper, ids point into a mapped file */
    float *vec;                  /* cap*d; cosine: normalised */
    uint8_t *codes;              /* SQ8: cap*d */
    uint32_t *links0;            /* cap*(M0+1): count, then M0 slots */
    uint32_t *ublk;  /* cap+1, owned: upper blocks before node i; its level is ublk[i+1] - ublk[i] */
    uint32_t *upper; /* per node, level blocks of (M+1): count, then M slots */
    int64_t *ids;    /* cap; NULL while every id equals its node number (saves 8 bytes a vector) */
    uint32_t entry;  /* NO_NODE when empty */
    uint32_t max_level;
    vs_sq8_t sq;
    float *sqw; /* d: step^2 */
    const vs_distance_kernels_t *kern;
    vs_sq8_l2w_fn l2w;
    vs_sq8_ip_fn ipc;
    vs_sq8_dot_fn dot; /* search on codes: exact integer products with the query quantised to bytes */
    float *cn;         /* SQ8 with L2: cap, owned: sum_i step_i^2 code_i^2 of each node (qprep_t) */
};

static _Atomic uint64_t next_uid = 1;

/* ---- small helpers ------------------------------------------------------------------------------ */

static inline uint32_t *links_at(const vs_hnsw_t *h, uint32_t i, uint32_t l)
{
    return l == 0 ? h->links0 + (size_t)i * (h->M0 + 1)
                  : h->upper + ((size_t)h->ublk[i] + l - 1) * (h->M + 1);
}

static inline uint32_t node_level(const vs_hnsw_t *h, size_t i)
{
    return h->ublk[i + 1] - h->ublk[i];
}

static inline int64_t node_id(const vs_hnsw_t *h, uint32_t i)
{
    return h->ids ? h->ids[i] : (int64_t)i;
}

/* Candidate-list size of a build search: efConstruction, but never fewer than the M links to choose. */
static inline size_t build_ef(const vs_hnsw_t *h)
{
    return h->ef_construction > h->M ? h->ef_construction : h->M;
}

static inline const float *vec_at(const vs_hnsw_t *h, uint32_t i)
{
    return h->vec + (size_t)i * h->d;
}

/* Key between a prepared query and node i on float vectors. */
static inline float key_full(const vs_hnsw_t *h, const float *q, uint32_t i)
{
    return h->ip ? -h->kern->ip(q, vec_at(h, i), h->d) : h->kern->l2sqr(q, vec_at(h, i), h->d);
}

/* Squared L2 distance that gives up once a partial sum (checked every 128 dimensions) reaches bound,
 * returning bound: a far candidate is rejected after reading part of its vector. Partial sums of
 * squares only grow, so a candidate given up on could never have entered the candidate list and
 * results are unchanged. AVX-512 only (h->bounded_l2); other levels use the plain kernel. */
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512dq"))) static float l2_bounded_avx512(const float *a, const float *b,
                                                                           size_t d, float bound)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    while (i + 128 <= d) {
        for (size_t e = i + 128; i < e; i += 32) {
            __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
            __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
            acc0 = _mm512_fmadd_ps(t0, t0, acc0);
            acc1 = _mm512_fmadd_ps(t1, t1, acc1);
        }
        if (_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) >= bound)
            return bound;
    }
    for (; i < d; i += 16) {
        __mmask16 m = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1u);
        __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        acc0 = _mm512_fmadd_ps(t, t, acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#endif

/* Key of node i for the candidate list, which admits only keys below bound. */
static inline float key_full_below(const vs_hnsw_t *h, const float *q, uint32_t i, float bound)
{
#if defined(__x86_64__)
    if (h->bounded_l2)
        return l2_bounded_avx512(q, vec_at(h, i), h->d, bound);
#endif
    (void)bound;
    return key_full(h, q, i);
}

/* Query prepared for code distances (SQ8). With qi8 (searches): the query in code space quantised to
 * signed bytes, so that a key is one exact integer dot product with the code (vs_sq8_dot_fn):
 *   L2: sum_i w_i (a_i - c_i)^2 = sum_i w_i a_i^2 - 2 sum_i (w_i a_i) c_i + sum_i w_i c_i^2, with
 *       w_i = step_i^2 and a_i = (q_i - min_i) / step_i; the first term is the same for every node of
 *       the query and is left out (keys only rank nodes), the last is the node's cn; w_i a_i is quantised.
 *   IP: <q, min> + sum_i (q_i step_i) c_i, with q_i step_i quantised.
 * The quantisation (one scale per query, 127 / max |value|) changes keys by far less than the codes'
 * own error; candidates are re-ranked on float vectors anyway. Without qi8 (the build's traversal, which
 * is on floats, never reaches here): the float kernels. */
typedef struct qprep {
    const float *q; /* float query (normalised for cosine) */
    float *a;       /* d: transformed query for the code kernels */
    float c0;       /* IP: <q, min> */
    int8_t *qi8;    /* d: the quantised query, or NULL */
    float unit;     /* what one unit of the integer product is worth in key space */
} qprep_t;

static inline float key_code(const vs_hnsw_t *h, const qprep_t *p, uint32_t i)
{
    const uint8_t *c = h->codes + (size_t)i * h->d;
    if (p->qi8) {
        float dot = (float)h->dot(c, p->qi8, h->d) * p->unit;
        return h->ip ? -(p->c0 + dot) : h->cn[i] + dot;
    }
    return h->ip ? -(p->c0 + h->ipc(p->a, c, h->d)) : h->l2w(p->a, h->sqw, c, h->d);
}

/* sum_i step_i^2 code_i^2: the node's own term of an L2 key on codes (16 partial sums, so the compiler
 * vectorises it: the load computes it for every node; build and load use this same function). */
static float code_norm(const vs_hnsw_t *h, const uint8_t *c)
{
    float part[16] = {0};
    uint32_t i = 0;
    for (; i + 16 <= h->d; i += 16)
        for (int j = 0; j < 16; j++)
            part[j] += h->sqw[i + j] * (float)c[i + j] * (float)c[i + j];
    float acc = 0.0f;
    for (; i < h->d; i++)
        acc += h->sqw[i] * (float)c[i] * (float)c[i];
    for (int j = 0; j < 16; j++)
        acc += part[j];
    return acc;
}

static void prep_codes(const vs_hnsw_t *h, qprep_t *p)
{
    p->c0 = 0.0f;
    for (uint32_t i = 0; i < h->d; i++) {
        if (h->ip) {
            p->a[i] = p->q[i] * h->sq.step[i];
            p->c0 += p->q[i] * h->sq.vmin[i];
        } else {
            p->a[i] = (p->q[i] - h->sq.vmin[i]) / h->sq.step[i];
        }
    }
    if (p->qi8 == NULL)
        return;
    /* the vector the codes are multiplied by: IP a_i; L2 w_i a_i (its product is counted -2 times) */
    float top = 0.0f;
    for (uint32_t i = 0; i < h->d; i++) {
        float v = h->ip ? p->a[i] : h->sqw[i] * p->a[i];
        p->a[i] = v;
        top = fabsf(v) > top ? fabsf(v) : top;
    }
    const float scale = top > 0.0f && isfinite(top) ? 127.0f / top : 1.0f;
    for (uint32_t i = 0; i < h->d; i++) {
        float r = nearbyintf(p->a[i] * scale);
        r = r == r ? r : 0.0f; /* (a NaN query never gets here: searches refuse non-finite queries) */
        p->qi8[i] = (int8_t)(r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r);
    }
    p->unit = (h->ip ? 1.0f : -2.0f) / scale;
}

static inline void prefetch_lines(const void *p, size_t bytes)
{
    /* every line the bytes touch: a row of d = 100 codes that starts mid-line spans 3 lines, not 2 */
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63);
    size_t lines = ((uintptr_t)p + bytes - (uintptr_t)c + 63) / 64;
    if (lines > 12)
        lines = 12; /* the hardware prefetcher follows the rest */
    for (size_t l = 0; l < lines; l++)
        __builtin_prefetch(c + 64 * l);
}

static inline void spin_lock(_Atomic unsigned char *l)
{
    while (atomic_exchange_explicit(l, 1, memory_order_acquire))
        while (atomic_load_explicit(l, memory_order_relaxed))
            __builtin_ia32_pause();
}

static inline void spin_unlock(_Atomic unsigned char *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

/* splitmix64 */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Level of node i: floor(-ln(U) * 1/ln(M)), U uniform in (0, 1] from (seed, i). */
static uint8_t draw_level(uint64_t seed, uint64_t i, uint32_t M)
{
    double u = ((double)(mix64(seed ^ mix64(i)) >> 11) + 1.0) / 9007199254740992.0;
    double l = floor(-log(u) / log((double)M));
    return (uint8_t)(l > VS_HNSW_MAX_LEVEL ? VS_HNSW_MAX_LEVEL : l);
}

/* ---- scratch ------------------------------------------------------------------------------------ */

typedef struct cand {
    float key;
    uint32_t id; /* | EXPANDED */
} cand_t;

typedef struct scratch {
    uint16_t *tags; /* n: visited when tags[i] == gen */
    uint32_t gen;
    cand_t *pool;   /* ef */
    uint32_t *nbr;  /* M0+1: copy of a link block (build) */
    uint32_t *todo; /* M0 */
    cand_t *sel;    /* M0+1: heuristic input */
    uint32_t *out;  /* M0: heuristic output */
    float *q, *a;   /* d */
    int8_t *qi8;    /* d: the query quantised for code keys (qprep_t) */
    float *tkeys;   /* k */
    int64_t *tids;  /* k */
} scratch_t;

typedef struct shape {
    size_t n, ef, d, M0, k;
} shape_t;

static size_t scratch_layout(const shape_t *sh, void *mem, scratch_t *s)
{
    size_t off = 0;
#define PIECE(field, bytes)                                                                                  \
    do {                                                                                                     \
        if (mem != NULL)                                                                                     \
            s->field = (void *)((char *)mem + off);                                                          \
        off += ((bytes) + 63) / 64 * 64;                                                                     \
    } while (0)
    PIECE(tags, sh->n * sizeof(uint16_t));
    PIECE(pool, (sh->ef + 1) * sizeof(cand_t));
    PIECE(nbr, (sh->M0 + 1) * sizeof(uint32_t));
    PIECE(todo, (sh->M0 + 1) * sizeof(uint32_t));
    PIECE(sel, (sh->M0 + 2) * sizeof(cand_t));
    PIECE(out, (sh->M0 + 1) * sizeof(uint32_t));
    PIECE(q, sh->d * sizeof(float));
    PIECE(a, sh->d * sizeof(float));
    PIECE(qi8, sh->d);
    PIECE(tkeys, sh->k * sizeof(float));
    PIECE(tids, sh->k * sizeof(int64_t));
#undef PIECE
    return off;
}

/* Starts a new visited generation; clears the tags when the 16-bit counter wraps. */
static inline void new_visit(scratch_t *s, size_t n)
{
    if (++s->gen >= 0x10000u) {
        memset(s->tags, 0, n * sizeof(uint16_t));
        s->gen = 1;
    }
}

/* ---- layer search ------------------------------------------------------------------------------- */

/* Inserts (key, id) into the sorted pool of *size entries (capacity ef) unless it is not better than
 * the ef-th; returns its position, or ef when not inserted. */
static inline size_t pool_insert(cand_t *pool, size_t *size, size_t ef, float key, uint32_t id)
{
    size_t n = *size;
    if (n == ef && !(key < pool[n - 1].key))
        return ef;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pool[mid].key <= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t move = (n == ef ? n - 1 : n) - lo;
    memmove(pool + lo + 1, pool + lo, move * sizeof(cand_t));
    pool[lo].key = key;
    pool[lo].id = id;
    if (n < ef)
        *size = n + 1;
    return lo;
}

/* Copies node i's link block on layer l into dst under its lock (build) and returns the count. */
static inline uint32_t read_links(const vs_hnsw_t *h, _Atomic unsigned char *locks, uint32_t i, uint32_t l,
                                  uint32_t *dst)
{
    const uint32_t *b = links_at(h, i, l);
    spin_lock(&locks[i]);
    uint32_t c = b[0];
    memcpy(dst, b + 1, c * sizeof(uint32_t));
    spin_unlock(&locks[i]);
    return c;
}

/* Best-first search on layer l from the pool's *size entries (already marked visited), keeping the ef
 * best in s->pool. locks
 * != NULL during build (links read under the node's lock); p != NULL traverses on codes. always_inline so
 * that each caller gets a copy specialised on those two. */
__attribute__((always_inline)) static inline size_t search_layer(const vs_hnsw_t *h, scratch_t *s,
                                                                 _Atomic unsigned char *locks,
                                                                 const qprep_t *p, const float *q, uint32_t l,
                                                                 size_t size, size_t ef)
{
    cand_t *pool = s->pool;
    const uint16_t gen = (uint16_t)s->gen;
    const size_t vbytes = p ? h->d : h->d * sizeof(float);
    size_t cur = 0;
    while (cur < size) {
        uint32_t c = pool[cur].id;
        pool[cur].id = c | EXPANDED;
        const uint32_t *nb;
        uint32_t cnt;
        if (locks) {
            cnt = read_links(h, locks, c, l, s->nbr);
            nb = s->nbr;
        } else {
            const uint32_t *b = links_at(h, c, l);
            cnt = b[0];
            nb = b + 1;
        }
        uint32_t nt = 0;
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t x = nb[j];
            if (s->tags[x] != gen) {
                s->tags[x] = gen;
                s->todo[nt++] = x;
                __builtin_prefetch(p ? (const void *)(h->codes + (size_t)x * h->d)
                                     : (const void *)vec_at(h, x));
                if (p && h->cn)
                    __builtin_prefetch(h->cn + x);
            }
        }
        size_t best_new = size;
        for (uint32_t t = 0; t < nt; t++) {
            uint32_t x = s->todo[t];
            if (t + 1 < nt) {
                uint32_t y = s->todo[t + 1];
                prefetch_lines(p ? (const void *)(h->codes + (size_t)y * h->d) : (const void *)vec_at(h, y),
                               vbytes);
            }
            float key = p            ? key_code(h, p, x)
                        : size == ef ? key_full_below(h, q, x, pool[size - 1].key)
                                     : key_full(h, q, x);
            if (size < ef || key < pool[size - 1].key) {
                size_t pos = pool_insert(pool, &size, ef, key, x);
                if (pos < best_new)
                    best_new = pos;
                if (l == 0 && !locks) /* the count and about M links: layer 0 holds ~M of its 2M */
                    prefetch_lines(links_at(h, x, 0), (h->M + 1) * sizeof(uint32_t));
            }
        }
        if (best_new < cur + 1)
            cur = best_new;
        else
            cur++;
        while (cur < size && (pool[cur].id & EXPANDED))
            cur++;
    }
    return size;
}

/* Greedy descent (ef = 1) from *cur on layers from..to+1 (from > to). */
__attribute__((always_inline)) static inline void greedy(const vs_hnsw_t *h, scratch_t *s,
                                                         _Atomic unsigned char *locks, const qprep_t *p,
                                                         const float *q, uint32_t from, uint32_t to,
                                                         uint32_t *cur, float *cur_key)
{
    for (uint32_t l = from; l > to; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const uint32_t *nb;
            uint32_t cnt;
            if (locks) {
                cnt = read_links(h, locks, *cur, l, s->nbr);
                nb = s->nbr;
            } else {
                const uint32_t *b = links_at(h, *cur, l);
                cnt = b[0];
                nb = b + 1;
            }
            for (uint32_t j = 0; j < cnt; j++) {
                float k = p ? key_code(h, p, nb[j]) : key_full(h, q, nb[j]);
                if (k < *cur_key) {
                    *cur_key = k;
                    *cur = nb[j];
                    changed = 1;
                }
            }
        }
    }
}

/* ---- build -------------------------------------------------------------------------------------- */

static int cmp_cand(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static inline float key_nodes(const vs_hnsw_t *h, uint32_t a, uint32_t b)
{
    return key_full(h, vec_at(h, a), b);
}

/* The paper's neighbour-selection heuristic (Algorithm 4): candidates c[n] sorted by key to the base
 * node; a candidate is kept when it is closer to the base than to every candidate kept before it.
 * Writes at most max ids to out and returns how many. */
static uint32_t select_heuristic(const vs_hnsw_t *h, const cand_t *c, size_t n, uint32_t max, uint32_t *out)
{
    uint32_t m = 0;
    for (size_t i = 0; i < n && m < max; i++) {
        uint32_t x = c[i].id & ~EXPANDED;
        int good = 1;
        for (uint32_t r = 0; r < m && good; r++)
            if (key_nodes(h, x, out[r]) < c[i].key)
                good = 0;
        if (good)
            out[m++] = x;
    }
    return m;
}

typedef struct build_ctx {
    vs_hnsw_t *h;
    _Atomic unsigned char *locks;
    pthread_mutex_t global;
    scratch_t *scratch; /* per worker */
    size_t first, n_new;
    const vs_progress_cb_t *progress;
    _Atomic size_t done;
} build_ctx_t;

/* Adds node i as a neighbour of node e on layer l (under e's lock), shrinking e's list with the
 * heuristic when full. */
static void link_back(build_ctx_t *c, scratch_t *s, uint32_t e, uint32_t i, uint32_t l)
{
    vs_hnsw_t *h = c->h;
    const uint32_t bound = l == 0 ? h->M0 : h->M;
    uint32_t *b = links_at(h, e, l);
    spin_lock(&c->locks[e]);
    uint32_t cnt = b[0];
    int present = 0;
    for (uint32_t j = 0; j < cnt; j++)
        present |= b[1 + j] == i;
    if (!present) {
        if (cnt < bound) {
            b[1 + cnt] = i;
            b[0] = cnt + 1;
        } else {
            for (uint32_t j = 0; j < cnt; j++)
                s->sel[j] = (cand_t){key_nodes(h, e, b[1 + j]), b[1 + j]};
            s->sel[cnt] = (cand_t){key_nodes(h, e, i), i};
            qsort(s->sel, cnt + 1, sizeof(cand_t), cmp_cand);
            uint32_t m = select_heuristic(h, s->sel, cnt + 1, bound, s->out);
            memcpy(b + 1, s->out, m * sizeof(uint32_t));
            b[0] = m;
        }
    }
    spin_unlock(&c->locks[e]);
}

static void insert_node(build_ctx_t *c, scratch_t *s, uint32_t i)
{
    vs_hnsw_t *h = c->h;
    const uint32_t li = node_level(h, i);
    pthread_mutex_lock(&c->global);
    uint32_t ep = h->entry, maxl = h->max_level;
    int hold = ep == NO_NODE || li > maxl;
    if (!hold)
        pthread_mutex_unlock(&c->global);
    if (ep == NO_NODE) {
        h->entry = i;
        h->max_level = li;
        pthread_mutex_unlock(&c->global);
        return;
    }
    const float *q = vec_at(h, i);
    uint32_t cur = ep;
    float cur_key = key_full(h, q, cur);
    if (maxl > li)
        greedy(h, s, c->locks, NULL, q, maxl, li, &cur, &cur_key);
    for (uint32_t l = li < maxl ? li : maxl;; l--) {
        new_visit(s, h->cap);
        s->tags[i] = (uint16_t)s->gen;
        s->tags[cur] = (uint16_t)s->gen;
        s->pool[0] = (cand_t){cur_key, cur};
        size_t size = search_layer(h, s, c->locks, NULL, q, l, 1, build_ef(h));
        for (size_t j = 0; j < size; j++)
            s->pool[j].id &= ~EXPANDED;
        uint32_t m = select_heuristic(h, s->pool, size, h->M, s->out);
        uint32_t *b = links_at(h, i, l);
        spin_lock(&c->locks[i]);
        memcpy(b + 1, s->out, m * sizeof(uint32_t));
        b[0] = m;
        spin_unlock(&c->locks[i]);
        /* other threads may change i's list from now on: link from a private copy (link_back uses out) */
        memcpy(s->todo, s->out, m * sizeof(uint32_t));
        for (uint32_t j = 0; j < m; j++)
            link_back(c, s, s->todo[j], i, l);
        cur = s->pool[0].id;
        cur_key = s->pool[0].key;
        if (l == 0)
            break;
    }
    if (hold) {
        h->entry = i;
        h->max_level = li;
        pthread_mutex_unlock(&c->global);
    }
}

static void build_task(void *arg, size_t task, size_t worker)
{
    build_ctx_t *c = arg;
    size_t a = c->first + task * BUILD_CHUNK, e = a + BUILD_CHUNK;
    if (e > c->first + c->n_new)
        e = c->first + c->n_new;
    for (size_t i = a; i < e; i++)
        insert_node(c, &c->scratch[worker], (uint32_t)i);
    size_t done = atomic_fetch_add(&c->done, e - a) + (e - a);
    vs_progress_call(c->progress, done, c->n_new);
}

/* Marks in seen every node reachable on layer 0 from start through nodes not yet seen; queue has n
 * slots. Returns how many were newly marked. */
static size_t mark_reachable(const vs_hnsw_t *h, uint32_t start, uint8_t *seen, uint32_t *queue)
{
    if (seen[start])
        return 0;
    size_t head = 0, tail = 0;
    queue[tail++] = start;
    seen[start] = 1;
    while (head < tail) {
        const uint32_t *b = links_at(h, queue[head++], 0);
        for (uint32_t j = 0; j < b[0]; j++)
            if (!seen[b[1 + j]]) {
                seen[b[1 + j]] = 1;
                queue[tail++] = b[1 + j];
            }
    }
    return tail;
}

/* Repair after a build: the heuristic may prune the last in-link of a node on layer 0 (a few nodes
 * in 10^5), leaving it unreachable. Each such node u gets an in-link from the nearest reachable node
 * (found by a layer-0 search for u's vector) that has a free slot; failing that, the nearest one's
 * last (farthest) link is replaced, and the pass runs again. Single-threaded and deterministic.
 * Returns the number of links added, or -1 when out of memory. */
static long repair_reachability(vs_hnsw_t *h, scratch_t *s)
{
    const size_t n = h->n;
    if (n == 0)
        return 0;
    uint8_t *seen = malloc(n);
    uint32_t *queue = malloc(n * sizeof(uint32_t));
    if (seen == NULL || queue == NULL) {
        free(seen);
        free(queue);
        return -1;
    }
    long added = 0;
    for (int round = 0; round < 4; round++) {
        memset(seen, 0, n);
        size_t reached = mark_reachable(h, h->entry, seen, queue);
        if (reached == n)
            break;
        for (size_t u = 0; u < n; u++) {
            if (seen[u])
                continue;
            const float *q = vec_at(h, (uint32_t)u);
            new_visit(s, h->cap);
            s->tags[u] = (uint16_t)s->gen;
            s->tags[h->entry] = (uint16_t)s->gen;
            s->pool[0] = (cand_t){key_full(h, q, h->entry), h->entry};
            size_t size = search_layer(h, s, NULL, NULL, q, 0, 1, build_ef(h));
            uint32_t r = NO_NODE;
            for (size_t j = 0; j < size && r == NO_NODE; j++) {
                uint32_t x = s->pool[j].id & ~EXPANDED;
                if (seen[x] && links_at(h, x, 0)[0] < h->M0)
                    r = x;
            }
            uint32_t *b;
            if (r != NO_NODE) {
                b = links_at(h, r, 0);
                b[1 + b[0]++] = (uint32_t)u;
            } else {
                b = links_at(h, s->pool[0].id & ~EXPANDED, 0);
                b[b[0]] = (uint32_t)u; /* full list: replaces the last link */
            }
            added++;
            mark_reachable(h, (uint32_t)u, seen, queue);
        }
    }
    free(seen);
    free(queue);
    return added;
}

/* ---- create / grow ------------------------------------------------------------------------------ */

vs_status vs_hnsw_create(uint32_t dim, vs_metric metric, const vs_factory_spec_t *spec, vs_hnsw_t **out,
                         char err[VS_ERR_LEN])
{
    if (spec->type != VS_INDEX_HNSW)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "not an HNSW factory string");
    if (spec->hnsw_m < 2 || spec->hnsw_m > 256)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "HNSW M = %u is out of range 2..256", spec->hnsw_m);
    if (dim == 0 || dim > 65536)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "dim %u is out of range 1..65536", dim);
    vs_hnsw_t *h = calloc(1, sizeof *h);
    if (h == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "HNSW: out of memory");
    h->d = dim;
    h->M = spec->hnsw_m;
    h->M0 = 2 * spec->hnsw_m;
    h->metric = metric;
    h->ip = metric != VS_METRIC_L2;
    h->bounded_l2 = !h->ip && vs_cpu_simd_level() == VS_SIMD_AVX512;
    h->sq8 = spec->codec == VS_CODEC_SQ8;
    h->trained = !h->sq8;
    h->ef_construction = VS_HNSW_DEFAULT_EF_CONSTRUCTION;
    h->seed = VS_HNSW_DEFAULT_SEED;
    h->uid = atomic_fetch_add(&next_uid, 1);
    h->owned = 1;
    h->entry = NO_NODE;
    h->kern = vs_distance_kernels();
    h->l2w = vs_sq8_l2w_kernel();
    h->ipc = vs_sq8_ip_kernel();
    h->dot = vs_sq8_dot_kernel();
    h->ublk = calloc(1, sizeof(uint32_t));
    if (h->ublk == NULL) {
        free(h);
        return vs_errf(err, VS_ERR_NOMEM, "HNSW: out of memory");
    }
    *out = h;
    return VS_OK;
}

static void free_arrays(vs_hnsw_t *h)
{
    if (h->owned) {
        free(h->vec);
        free(h->codes);
        free(h->links0);
        free(h->upper);
        free(h->ids);
    }
}

void vs_hnsw_destroy(vs_hnsw_t *h)
{
    if (h == NULL)
        return;
    free_arrays(h);
    free(h->ublk);
    free(h->sqw);
    free(h->cn);
    free(h->inc_mem);
    free((void *)h->inc_locks);
    free(h->inc_scratch);
    vs_sq8_fini(&h->sq);
    free(h);
}

vs_status vs_hnsw_set_build(vs_hnsw_t *h, uint32_t ef_construction, uint64_t seed, char err[VS_ERR_LEN])
{
    if (ef_construction > 100000)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "efConstruction %u is out of range 1..100000",
                       ef_construction);
    if (ef_construction)
        h->ef_construction = ef_construction;
    h->seed = seed;
    return VS_OK;
}

static void *alloc_copy(const void *src, size_t old_bytes, size_t new_bytes, int aligned)
{
    size_t rounded = (new_bytes + 63) / 64 * 64;
    void *p = aligned ? aligned_alloc(64, rounded ? rounded : 64) : malloc(new_bytes ? new_bytes : 1);
    if (p == NULL)
        return NULL;
    if (old_bytes)
        memcpy(p, src, old_bytes);
    memset((char *)p + old_bytes, 0, new_bytes - old_bytes);
    return p;
}

/* Grows every per-node array to hold new_cap (> cap) nodes, drawing the levels of the new slots (owned
 * copies from then on; a mapped index is copied here). The id array is materialised when need_ids. On
 * failure nothing changes. */
static vs_status grow(vs_hnsw_t *h, size_t new_cap, int need_ids, char *err)
{
    const size_t n = h->n, old_cap = h->cap, d = h->d, lb = h->M0 + 1, ub = h->M + 1;
    uint32_t *ublk = alloc_copy(h->ublk, (old_cap + 1) * 4, (new_cap + 1) * 4, 0);
    if (ublk == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "HNSW add: out of memory");
    for (size_t i = old_cap; i < new_cap; i++) {
        uint32_t l = draw_level(h->seed, i, h->M);
        if (ublk[i] > UINT32_MAX - l) {
            free(ublk);
            return vs_errf(err, VS_ERR_OUT_OF_RANGE, "HNSW: too many upper-layer blocks");
        }
        ublk[i + 1] = ublk[i] + l;
    }
    const size_t n_upper = (size_t)ublk[new_cap] * ub;
    float *vec = alloc_copy(h->vec, n * d * 4, new_cap * d * 4, 1);
    uint8_t *codes = h->sq8 ? alloc_copy(h->codes, n * d, new_cap * d, 1) : NULL;
    float *cn = h->sq8 && !h->ip ? alloc_copy(h->cn, n * 4, new_cap * 4, 0) : NULL;
    uint32_t *links0 = alloc_copy(h->links0, n * lb * 4, new_cap * lb * 4, 1);
    uint32_t *upper = alloc_copy(h->upper, (size_t)h->ublk[n] * ub * 4, n_upper * 4, 0);
    int64_t *ids = NULL;
    if (h->ids != NULL || need_ids) {
        ids = alloc_copy(h->ids, h->ids ? n * 8 : 0, new_cap * 8, 0);
        for (size_t i = 0; ids != NULL && h->ids == NULL && i < n; i++)
            ids[i] = (int64_t)i;
    }
    if (vec == NULL || (h->sq8 && codes == NULL) || (h->sq8 && !h->ip && cn == NULL) || links0 == NULL ||
        upper == NULL || ((h->ids != NULL || need_ids) && ids == NULL)) {
        free(ublk);
        free(vec);
        free(codes);
        free(cn);
        free(links0);
        free(upper);
        free(ids);
        return vs_errf(err, VS_ERR_NOMEM, "HNSW add: out of memory for %zu vectors", new_cap);
    }
    free_arrays(h);
    free(h->ublk);
    h->vec = vec;
    h->codes = codes;
    free(h->cn);
    h->cn = cn;
    h->links0 = links0;
    h->ublk = ublk;
    h->upper = upper;
    h->ids = ids;
    h->cap = new_cap;
    h->owned = 1;
    return VS_OK;
}

/* ---- train / add -------------------------------------------------------------------------------- */

static vs_status hnsw_train(void *impl, size_t n, const float *x, size_t n_threads,
                            const vs_progress_cb_t *progress, char *err)
{
    vs_hnsw_t *h = impl;
    (void)n_threads; /* the quantiser's ranges are one pass over the data */
    (void)progress;
    if (!h->sq8)
        return VS_OK;
    if (h->n > 0)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "HNSW,SQ8: cannot retrain an index holding vectors");
    if (n == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "HNSW,SQ8: training needs at least one vector");
    const float *src = x;
    float *norm = NULL;
    if (h->metric == VS_METRIC_COSINE) {
        norm = malloc(n * h->d * sizeof(float));
        if (norm == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "HNSW,SQ8 train: out of memory");
        memcpy(norm, x, n * h->d * sizeof(float));
        vs_normalize_rows(norm, n, h->d);
        src = norm;
    }
    vs_sq8_t sq;
    float *w = malloc(h->d * sizeof(float));
    int rc = w ? vs_sq8_train(&sq, h->d, src, n) : -1;
    free(norm);
    if (rc != 0) {
        free(w);
        return vs_errf(err, VS_ERR_NOMEM, "HNSW,SQ8 train: out of memory");
    }
    for (uint32_t i = 0; i < h->d; i++)
        w[i] = sq.step[i] * sq.step[i];
    vs_sq8_fini(&h->sq);
    free(h->sqw);
    h->sq = sq;
    h->sqw = w;
    h->trained = 1;
    return VS_OK;
}

/* hnsw_add; incremental (vs_hnsw_append): one thread, capacity grows geometrically, the build scratch is
 * kept in h, and the reachability repair (O(N)) runs once the graph grew by an eighth. */
static vs_status add_nodes(vs_hnsw_t *h, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                           const vs_progress_cb_t *progress, int incremental, char *err)
{
    const uint32_t d = h->d;
    if (!h->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                       "HNSW,SQ8 index must be trained before vectors are added");
    vs_status st = vs_check_finite(x, n, d, "vector", err);
    if (st != VS_OK)
        return st;
    for (size_t i = 0; ids && i < n; i++)
        if (ids[i] < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vector %zu has negative id %lld", i,
                           (long long)ids[i]);
    if (n > VS_HNSW_MAX_N - h->n)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "HNSW holds at most %u vectors", VS_HNSW_MAX_N);
    if (n == 0)
        return VS_OK;
    const size_t first = h->n, total = h->n + n;
    int need_ids = 0; /* ids other than the node numbers */
    for (size_t i = 0; ids && i < n && !need_ids; i++)
        need_ids = ids[i] != (int64_t)(first + i);
    size_t n_tasks = (n + BUILD_CHUNK - 1) / BUILD_CHUNK;
    size_t n_workers = n_threads < n_tasks ? n_threads : n_tasks;
    if (n_workers == 0)
        n_workers = 1;
    build_ctx_t c = {.h = h, .first = first, .n_new = n, .progress = progress};
    size_t cap_after = h->cap; /* visited tags cover the capacity (new_visit clears cap of them) */
    if (total > h->cap) {
        cap_after = total;
        if (incremental && cap_after < 2 * h->cap)
            cap_after = 2 * h->cap;
        if (incremental && cap_after < 1024)
            cap_after = 1024;
    }
    shape_t shape = {.n = cap_after, .ef = build_ef(h), .d = d, .M0 = h->M0, .k = 1};
    size_t bytes = scratch_layout(&shape, NULL, NULL);
    void **mem = NULL;
    int ok;
    if (incremental) { /* one thread; locks and scratch kept between appends, sized for the capacity */
        n_workers = 1;
        if (h->inc_cap < cap_after) {
            void *m2 = aligned_alloc(64, (bytes + 63) / 64 * 64);
            _Atomic unsigned char *l2 = calloc(cap_after, 1);
            if (!h->inc_scratch)
                h->inc_scratch = calloc(1, sizeof *h->inc_scratch);
            if (m2 && l2 && h->inc_scratch) {
                memset(m2, 0, bytes);
                free(h->inc_mem);
                free((void *)h->inc_locks);
                h->inc_mem = m2;
                h->inc_locks = l2;
                h->inc_cap = cap_after;
                scratch_layout(&shape, m2, h->inc_scratch);
                h->inc_scratch->gen = 0;
            } else {
                free(m2);
                free((void *)l2);
            }
        }
        ok = h->inc_cap >= cap_after;
        c.locks = h->inc_locks;
        c.scratch = h->inc_scratch;
    } else {
        c.locks = calloc(total, 1);
        c.scratch = calloc(n_workers, sizeof *c.scratch);
        mem = calloc(n_workers, sizeof *mem);
        ok = c.locks && c.scratch && mem;
    }
    for (size_t w = 0; ok && !incremental && w < n_workers; w++) {
        mem[w] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        ok = mem[w] != NULL;
        if (ok) {
            memset(mem[w], 0, bytes);
            scratch_layout(&shape, mem[w], &c.scratch[w]);
        }
    }
    if (!ok)
        st = vs_errf(err, VS_ERR_NOMEM, "HNSW add: out of memory for build scratch");
    if (st == VS_OK && cap_after != h->cap)
        st = grow(h, cap_after, need_ids, err);
    else if (st == VS_OK && need_ids && h->ids == NULL)
        st = grow(h, h->cap, need_ids, err);
    if (st == VS_OK) {
        float *v = h->vec + first * d;
        memcpy(v, x, n * d * sizeof(float));
        if (h->metric == VS_METRIC_COSINE)
            vs_normalize_rows(v, n, d);
        for (size_t i = 0; i < n; i++) {
            if (h->sq8)
                vs_sq8_encode(&h->sq, v + i * d, h->codes + (first + i) * d);
            if (h->cn)
                h->cn[first + i] = code_norm(h, h->codes + (first + i) * d);
            if (h->ids)
                h->ids[first + i] = ids ? ids[i] : (int64_t)(first + i);
        }
        pthread_mutex_init(&c.global, NULL);
        atomic_init(&c.done, 0);
        /* the graph only changes from here on: vs_parallel_for runs every task (the caller's thread
         * alone if need be), so the build always completes */
        if (vs_parallel_for(n_tasks, n_workers, build_task, &c, err) != VS_OK)
            (void)vs_parallel_for(n_tasks, 1, build_task, &c, err); /* inline: cannot fail */
        pthread_mutex_destroy(&c.global);
        h->n = total;
        /* incremental: repair once the graph grew by an eighth (each repair is O(n)) */
        int repair = !incremental || total >= h->repaired_n + h->repaired_n / 8 + 256;
        if (repair)
            h->repaired_n = total;
        if (repair && repair_reachability(h, &c.scratch[0]) < 0) {
            if (incremental)
                h->repaired_n = 0; /* appended all the same: the next append repairs */
            else
                st = vs_errf(err, VS_ERR_NOMEM,
                             "HNSW add: out of memory (the vectors were added; the graph "
                             "may leave a few of them unreachable)");
        }
    }
    if (!incremental) {
        for (size_t w = 0; mem && w < n_workers; w++)
            free(mem[w]);
        free(mem);
        free(c.scratch);
        free((void *)c.locks);
    }
    return st;
}

static vs_status hnsw_add(void *impl, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                          const vs_progress_cb_t *progress, char *err)
{
    return add_nodes(impl, n, x, ids, n_threads, progress, 0, err);
}

vs_status vs_hnsw_append(vs_hnsw_t *h, size_t n, const float *x, const int64_t *ids, char err[VS_ERR_LEN])
{
    return add_nodes(h, n, x, ids, 1, NULL, 1, err);
}

/* ---- search ------------------------------------------------------------------------------------- */

typedef struct search_ctx {
    const vs_hnsw_t *h;
    const float *q;
    size_t k, kp, ef;
    size_t ef_max; /* the pool of a second search when skipped nodes left fewer than k answers */
    float *out_dist;
    int64_t *out_ids;
    scratch_t *scratch; /* per worker, pointed into the worker thread's arena on its first query */
    vs_arena_t **arena;
    vs_arena_slot slot;
    vs_hnsw_skip_fn skip; /* NULL: every node is a result */
    const void *skip_arg;
    const vs_idset_t *excl;    /* the request's excluded ids (NULL: none) */
    const vs_filter_t *filter; /* attribute filter over node positions (NULL: none) */
    const uint32_t *exact;     /* exact filtered search: the matching nodes (NULL: traverse the graph) */
    size_t n_exact;
    shape_t shape;
    _Atomic int failed;
} search_ctx_t;

/* The worker's scratch in its thread's arena; visited tags are reset when the arena last served
 * another index (or this one at another size). NULL when out of memory. */
static scratch_t *worker_scratch(search_ctx_t *c, size_t worker)
{
    scratch_t *s = &c->scratch[worker];
    if (s->tags != NULL)
        return s;
    vs_arena_t *a = vs_arena_thread(c->slot, scratch_layout(&c->shape, NULL, NULL));
    if (a == NULL)
        return NULL;
    scratch_layout(&c->shape, a->mem, s);
    uint64_t owner = c->h->uid << 32 ^ c->h->n;
    if (a->owner != owner) {
        memset(s->tags, 0, c->h->n * sizeof(uint16_t));
        a->owner = owner;
        a->gen = 0;
    }
    s->gen = a->gen;
    c->arena[worker] = a;
    return s;
}

/* 1 when node i (id) is no answer: the caller's skip (deleted, replaced) or the request's exclusions. */
static inline int skipped(const search_ctx_t *c, int64_t id, uint32_t i)
{
    return (c->filter && !vs_filter_match(c->filter, i)) || (c->skip && c->skip(c->skip_arg, id, i)) ||
           vs_idset_has(c->excl, id);
}

/* Exact filtered search of one query (very selective filters): every matching node, by its float
 * vector. */
static void search_exact(const search_ctx_t *c, const uint32_t *nodes, size_t n, vs_topk_t *top,
                         const float *q)
{
    const vs_hnsw_t *h = c->h;
    const size_t ahead = 8;
    for (size_t j = 0; j < n; j++) {
        if (j + ahead < n)
            prefetch_lines(vec_at(h, nodes[j + ahead]), h->d * sizeof(float));
        const uint32_t i = nodes[j];
        const int64_t id = node_id(h, i);
        if ((c->skip && c->skip(c->skip_arg, id, i)) || vs_idset_has(c->excl, id))
            continue;
        float key = key_full(h, q, i);
        if (key <= vs_topk_threshold(top))
            vs_topk_push(top, key, id);
    }
}

static void search_one(void *arg, size_t qi, size_t worker)
{
    search_ctx_t *c = arg;
    const vs_hnsw_t *h = c->h;
    const size_t k = c->k;
    vs_topk_t top;
    scratch_t *s = worker_scratch(c, worker);
    if (s == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    vs_topk_init(&top, k, s->tkeys, s->tids);
    const float *q = c->q + qi * h->d;
    if (h->n > 0 && h->metric == VS_METRIC_COSINE) {
        memcpy(s->q, q, h->d * sizeof(float));
        vs_normalize_rows(s->q, 1, h->d);
        q = s->q;
    }
    if (c->exact) {
        search_exact(c, c->exact, c->n_exact, &top, q);
        vs_topk_emit(&top, h->ip, c->out_dist + qi * k, c->out_ids + qi * k);
        c->arena[worker]->gen = s->gen;
        return;
    }
    /* skipped nodes hold pool slots: when they left fewer than k answers, search once more with the
     * pool grown by up to their number (ef_max), so exclusions near the query do not cost results */
    for (int attempt = 0; h->n > 0 && attempt < 2; attempt++) {
        const size_t ef = attempt ? c->ef_max : c->ef, kp = attempt ? c->kp + (c->ef_max - c->ef) : c->kp;
        size_t n_skipped = 0;
        vs_topk_init(&top, k, s->tkeys, s->tids);
        qprep_t p = {q, s->a, 0.0f, s->qi8, 0.0f};
        new_visit(s, h->n);
        uint32_t ep = h->entry;
        size_t size;
        if (h->sq8) {
            prep_codes(h, &p);
            float key = key_code(h, &p, ep);
            greedy(h, s, NULL, &p, q, h->max_level, 0, &ep, &key);
            s->tags[ep] = (uint16_t)s->gen;
            s->pool[0] = (cand_t){key, ep};
            size = search_layer(h, s, NULL, &p, q, 0, 1, ef);
            /* exact re-rank of the kp best code-distance candidates */
            size_t m = kp < size ? kp : size;
            for (size_t j = 0; j < m; j++) {
                if (j + 1 < m)
                    prefetch_lines(vec_at(h, s->pool[j + 1].id & ~EXPANDED), h->d * sizeof(float));
                uint32_t id = s->pool[j].id & ~EXPANDED;
                if (skipped(c, node_id(h, id), id)) {
                    n_skipped++;
                    continue; /* expanded, never a result (a deleted, replaced or excluded item) */
                }
                float key2 = key_full(h, q, id);
                if (key2 <= vs_topk_threshold(&top))
                    vs_topk_push(&top, key2, node_id(h, id));
            }
        } else {
            float key = key_full(h, q, ep);
            greedy(h, s, NULL, NULL, q, h->max_level, 0, &ep, &key);
            s->tags[ep] = (uint16_t)s->gen;
            s->pool[0] = (cand_t){key, ep};
            size = search_layer(h, s, NULL, NULL, q, 0, 1, ef);
            for (size_t j = 0; j < size && s->pool[j].key <= vs_topk_threshold(&top); j++) {
                uint32_t id = s->pool[j].id & ~EXPANDED;
                if (skipped(c, node_id(h, id), id))
                    n_skipped++;
                else
                    vs_topk_push(&top, s->pool[j].key, node_id(h, id));
            }
        }
        if (c->filter) {
            /* a query left short, or whose region holds far fewer matching nodes than the filter's
             * share (a filter anti-correlated with it: the traversal stays near the query and misses
             * the matching nodes elsewhere), is answered exactly over the matching nodes */
            size_t match = 0;
            for (size_t j = 0; j < size; j++)
                match += vs_filter_match(c->filter, s->pool[j].id & ~EXPANDED);
            const size_t n_match = c->filter->driver_count;
            const int short_answer = top.size < k;
            if ((short_answer ||
                 (double)match < 0.25 * (double)size * c->filter->est_matches / (double)h->n) &&
                n_match <= VS_HNSW_FILTER_FALLBACK_MAX) {
                uint32_t *nodes = malloc((n_match ? n_match : 1) * sizeof *nodes);
                if (nodes) {
                    size_t n = vs_filter_collect(c->filter, nodes, n_match);
                    vs_topk_init(&top, k, s->tkeys, s->tids);
                    search_exact(c, nodes, n < n_match ? n : n_match, &top, q);
                    free(nodes);
                }
            } else if (short_answer && attempt == 0 && c->ef_max > c->ef && size >= ef) {
                continue; /* too many matches to scan: a larger pool (as exclusions get) */
            }
            break;
        }
        if (top.size >= k || n_skipped == 0 || c->ef_max <= c->ef || size < ef)
            break; /* enough answers, none skipped, no room to grow, or the graph is exhausted */
    }
    vs_topk_emit(&top, h->ip, c->out_dist + qi * k, c->out_ids + qi * k);
    c->arena[worker]->gen = s->gen;
}

static vs_status search_impl(const vs_hnsw_t *h, size_t nq, const float *q, size_t k,
                             const vs_search_params_t *params, size_t n_threads, vs_hnsw_skip_fn skip,
                             const void *skip_arg, float ef_scale, vs_arena_slot slot, float *out_dist,
                             int64_t *out_ids, char *err)
{
    if (!h->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "HNSW,SQ8 index is not trained");
    if (params->k_factor != 0 && !h->sq8)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor applies to HNSW{M},SQ8 only");
    if (nq == 0)
        return VS_OK;
    size_t ef = params->ef_search ? params->ef_search : VS_HNSW_DEFAULT_EF_SEARCH;
    if (ef < k)
        ef = k;
    size_t kp = ef;
    if (h->sq8 && params->k_factor > 0) {
        double want = ceil((double)k * params->k_factor);
        kp = want > 1e6 ? 1000000 : (size_t)want;
        if (kp > ef)
            ef = kp;
    }
    const vs_filter_t *filter = vs_filter_active(params->filter) ? params->filter : NULL;
    const size_t ef_asked = ef;
    uint32_t *exact = NULL;
    size_t n_exact = 0;
    if (filter) {
        const double thr_items = params->filter_exact > 0 ? params->filter_exact * (double)h->n
                                                          : (double)VS_HNSW_FILTER_EXACT_ITEMS;
        if (filter->est_matches <= thr_items) {
            exact = malloc((filter->driver_count ? filter->driver_count : 1) * sizeof *exact);
            if (exact == NULL)
                return vs_errf(err, VS_ERR_NOMEM, "HNSW filtered search: out of memory");
            n_exact = vs_filter_collect(filter, exact, filter->driver_count);
            if (n_exact > filter->driver_count)
                n_exact = filter->driver_count;
        } else {
            ef_scale *= vs_hnsw_filter_ef_scale(filter);
        }
    }
    if (ef_scale > 1.0f) { /* skipped nodes take pool slots: keep as many results in reach */
        ef = (size_t)ceil((double)ef * ef_scale);
        kp = (size_t)ceil((double)kp * ef_scale);
    }
    /* with nodes to skip, a query left short of k answers searches again with a pool 4x as large
     * (search_one); the exclusions' own count bounds what they can take */
    if (filter && ef > 65536 && ef > ef_asked) { /* the filter's scaling stops at the largest pool */
        ef = ef_asked > 65536 ? ef_asked : 65536;
        if (kp > ef)
            kp = ef;
    }
    size_t ef_max = ef;
    if (skip || params->exclude || filter) {
        size_t grow = 3 * ef;
        if (!skip && !filter && params->exclude->n < grow)
            grow = params->exclude->n;
        ef_max = ef + grow;
        if (ef_max > 65536) /* never below ef itself */
            ef_max = ef > 65536 ? ef : 65536;
    }
    size_t n_workers = n_threads < nq ? n_threads : nq;
    if (n_workers == 0)
        n_workers = 1;
    search_ctx_t c = {.h = h,
                      .q = q,
                      .k = k,
                      .kp = kp,
                      .ef = ef,
                      .ef_max = ef_max,
                      .out_dist = out_dist,
                      .out_ids = out_ids,
                      .slot = slot,
                      .skip = skip,
                      .skip_arg = skip_arg,
                      .excl = params->exclude,
                      .filter = filter,
                      .exact = exact,
                      .n_exact = n_exact,
                      .shape = {.n = h->n, .ef = ef_max, .d = h->d, .M0 = h->M0, .k = k}};
    atomic_init(&c.failed, 0);
    /* small calls (the ann-benchmarks protocol: one query) keep these on the stack */
    scratch_t s_local[4];
    vs_arena_t *a_local[4];
    c.scratch = n_workers <= 4 ? s_local : calloc(n_workers, sizeof *c.scratch);
    c.arena = n_workers <= 4 ? a_local : calloc(n_workers, sizeof *c.arena);
    if (c.scratch == NULL || c.arena == NULL) {
        if (n_workers > 4) {
            free(c.scratch);
            free(c.arena);
        }
        free(exact);
        return vs_errf(err, VS_ERR_NOMEM, "HNSW search: out of memory");
    }
    memset(c.scratch, 0, n_workers * sizeof *c.scratch);
    vs_status st = vs_parallel_for(nq, n_workers, search_one, &c, err);
    if (st == VS_OK && atomic_load(&c.failed))
        st = vs_errf(err, VS_ERR_NOMEM, "HNSW search: out of memory for per-thread scratch");
    if (n_workers > 4) {
        free(c.scratch);
        free(c.arena);
    }
    free(exact);
    return st;
}

float vs_hnsw_filter_ef_scale(const vs_filter_t *f)
{
    if (!vs_filter_active(f) || f->n_items == 0)
        return 1.0f;
    double share = f->est_matches / (double)f->n_items;
    return share <= 1.0 / VS_HNSW_FILTER_EF_MAX ? (float)VS_HNSW_FILTER_EF_MAX : (float)(1.0 / share);
}

/* ---- invariants --------------------------------------------------------------------------------- */

/* Checks the links of every node (range, layer, self, repeats, degree). Shared by load and check.
 * what names the data in messages (a path and section, or "index"). */
static vs_status check_links(const vs_hnsw_t *h, const char *what, char *err)
{
    for (size_t i = 0; i < h->n; i++) {
        for (uint32_t l = 0; l <= node_level(h, i); l++) {
            const uint32_t *b = links_at(h, (uint32_t)i, l);
            uint32_t bound = l == 0 ? h->M0 : h->M;
            if (b[0] > bound)
                return vs_errf(err, VS_ERR_CORRUPT, "%s: node %zu has %u links on layer %u (at most %u)",
                               what, i, b[0], l, bound);
            for (uint32_t j = 0; j < b[0]; j++) {
                uint32_t x = b[1 + j];
                if (x >= h->n)
                    return vs_errf(err, VS_ERR_CORRUPT,
                                   "%s: node %zu links to %u on layer %u, out of range (%zu nodes)", what, i,
                                   x, l, h->n);
                if (x == i)
                    return vs_errf(err, VS_ERR_CORRUPT, "%s: node %zu links to itself on layer %u", what, i,
                                   l);
                if (node_level(h, x) < l)
                    return vs_errf(err, VS_ERR_CORRUPT,
                                   "%s: node %zu links on layer %u to node %u whose level is %u", what, i, l,
                                   x, node_level(h, x));
                for (uint32_t r = 0; r < j; r++)
                    if (b[1 + r] == x)
                        return vs_errf(err, VS_ERR_CORRUPT, "%s: node %zu links twice to %u on layer %u",
                                       what, i, x, l);
            }
        }
    }
    if (h->n == 0)
        return h->entry == NO_NODE
                   ? VS_OK
                   : vs_errf(err, VS_ERR_CORRUPT, "%s: empty index with an entry point", what);
    if (h->entry >= h->n)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: entry point %u is out of range (%zu nodes)", what, h->entry,
                       h->n);
    if (node_level(h, h->entry) != h->max_level)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: entry point %u has level %u, the top level is %u", what,
                       h->entry, node_level(h, h->entry), h->max_level);
    for (size_t i = 0; i < h->n; i++)
        if (node_level(h, i) > h->max_level)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: node %zu has level %u above the top level %u", what, i,
                           node_level(h, i), h->max_level);
    return VS_OK;
}

vs_status vs_hnsw_check(const vs_hnsw_t *h, char err[VS_ERR_LEN])
{
    vs_status st = check_links(h, "HNSW", err);
    if (st != VS_OK || h->n == 0)
        return st;
    uint32_t *queue = malloc(h->n * sizeof(uint32_t));
    uint8_t *seen = calloc(h->n, 1);
    if (queue == NULL || seen == NULL) {
        free(queue);
        free(seen);
        return vs_errf(err, VS_ERR_NOMEM, "HNSW check: out of memory");
    }
    size_t tail = mark_reachable(h, h->entry, seen, queue);
    size_t first = 0;
    while (first < h->n && seen[first])
        first++;
    free(queue);
    free(seen);
    if (tail != h->n)
        return vs_errf(
            err, VS_ERR_CORRUPT,
            "HNSW: %zu of %zu nodes are not reachable from the entry point on layer 0 (first: %zu)",
            h->n - tail, h->n, first);
    return VS_OK;
}

double vs_hnsw_stats(const vs_hnsw_t *h, size_t *out, size_t n_out)
{
    memset(out, 0, n_out * sizeof *out);
    size_t links = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (node_level(h, i) < n_out)
            out[node_level(h, i)]++;
        links += h->links0[i * (h->M0 + 1)];
    }
    return h->n ? (double)links / (double)h->n : 0.0;
}

static vs_status hnsw_search(const void *impl, size_t nq, const float *q, size_t k,
                             const vs_search_params_t *params, size_t n_threads, float *out_dist,
                             int64_t *out_ids, char *err)
{
    return search_impl(impl, nq, q, k, params, n_threads, NULL, NULL, 1.0f, VS_ARENA_HNSW, out_dist, out_ids,
                       err);
}

vs_status vs_hnsw_search_filtered(const vs_hnsw_t *h, size_t nq, const float *q, size_t k,
                                  const vs_search_params_t *params, size_t n_threads, vs_hnsw_skip_fn skip,
                                  const void *skip_arg, float ef_scale, int own_arena, float *out_dist,
                                  int64_t *out_ids, char err[VS_ERR_LEN])
{
    vs_search_params_t none = {0};
    return search_impl(h, nq, q, k, params ? params : &none, n_threads ? n_threads : vs_parallel_cpus(), skip,
                       skip_arg, ef_scale, own_arena ? VS_ARENA_HNSW_FRESH : VS_ARENA_HNSW, out_dist, out_ids,
                       err);
}

size_t vs_hnsw_count(const vs_hnsw_t *h)
{
    return h->n;
}

int64_t vs_hnsw_node_id(const vs_hnsw_t *h, uint32_t i)
{
    return node_id(h, i);
}

const float *vs_hnsw_node_vector(const vs_hnsw_t *h, uint32_t i)
{
    return vec_at(h, i);
}

void vs_hnsw_info(const vs_hnsw_t *h, uint32_t *d, uint32_t *M, vs_metric *metric, uint32_t *ef_construction)
{
    *d = h->d;
    *M = h->M;
    *metric = h->metric;
    *ef_construction = h->ef_construction;
}

/* ---- persistence -------------------------------------------------------------------------------- */

/* The params blob of the file header (little-endian; the rest of the 128 bytes is zero). */
typedef struct hnsw_params {
    uint32_t M, codec, ef_construction, entry, max_level;
    uint32_t flags; /* PARAM_IDENTITY_IDS: no id section data, ids are node numbers */
    uint64_t seed, n_upper;
} hnsw_params_t;

#define PARAM_IDENTITY_IDS 1u

/* Writes the levels (one byte a node) through a small buffer. */
static vs_status write_levels(const vs_hnsw_t *h, vs_ifile_writer_t *w, char *err)
{
    uint8_t buf[4096];
    vs_status st = vs_ifile_writer_begin_section(w, "hnsw.levels", err);
    for (size_t i0 = 0; st == VS_OK && i0 < h->n; i0 += sizeof buf) {
        size_t m = h->n - i0 < sizeof buf ? h->n - i0 : sizeof buf;
        for (size_t i = 0; i < m; i++)
            buf[i] = (uint8_t)node_level(h, i0 + i);
        st = vs_ifile_writer_append(w, buf, m, err);
    }
    return st == VS_OK ? vs_ifile_writer_end_section(w, err) : st;
}

static vs_status hnsw_save(const void *impl, vs_ifile_writer_t *w, uint8_t params[128], char *err)
{
    const vs_hnsw_t *h = impl;
    const size_t n = h->n, d = h->d;
    hnsw_params_t p = {h->M,
                       (uint32_t)(h->sq8 ? VS_CODEC_SQ8 : VS_CODEC_FLAT),
                       h->ef_construction,
                       h->entry,
                       h->max_level,
                       h->ids ? 0 : PARAM_IDENTITY_IDS,
                       h->seed,
                       (uint64_t)h->ublk[n] * (h->M + 1)};
    memset(params, 0, 128);
    memcpy(params, &p, sizeof p);
    vs_status st = write_levels(h, w, err);
    if (st == VS_OK)
        st =
            vs_ifile_writer_add_section(w, "hnsw.links0", h->links0, n * (h->M0 + 1) * sizeof(uint32_t), err);
    if (st == VS_OK)
        st =
            vs_ifile_writer_add_section(w, "hnsw.upper", h->upper, (size_t)p.n_upper * sizeof(uint32_t), err);
    if (st == VS_OK)
        st = vs_ifile_writer_add_section(w, "hnsw.ids", h->ids, h->ids ? n * sizeof(int64_t) : 0, err);
    if (st == VS_OK)
        st = vs_ifile_writer_add_section(w, "hnsw.vectors", h->vec, n * d * sizeof(float), err);
    if (st == VS_OK && h->sq8) {
        st = vs_ifile_writer_add_section(w, "hnsw.codes", h->codes, n * d, err);
        if (st == VS_OK)
            st = vs_sq8_write_section(&h->sq, w, err);
    }
    return st;
}

vs_status vs_hnsw_load(const vs_ifile_t *f, const char *path, const vs_factory_spec_t *spec, vs_hnsw_t **out,
                       char err[VS_ERR_LEN])
{
    const vs_ifile_header_t *hd = vs_ifile_header(f);
    hnsw_params_t p;
    memcpy(&p, hd->params, sizeof p);
    if (p.M != spec->hnsw_m || p.codec != (uint32_t)spec->codec)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header parameters do not match its factory string '%s'",
                       path, hd->factory);
    if (hd->n_vectors > VS_HNSW_MAX_N || p.max_level > VS_HNSW_MAX_LEVEL || p.ef_construction == 0 ||
        p.ef_construction > 100000 || (p.flags & ~PARAM_IDENTITY_IDS) != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header parameters out of range (n %llu, top level %u)", path,
                       (unsigned long long)hd->n_vectors, p.max_level);
    vs_hnsw_t *h;
    vs_status st = vs_hnsw_create(hd->dim, hd->metric, spec, &h, err);
    if (st != VS_OK)
        return st == VS_ERR_INVALID_ARGUMENT ? vs_errf(err, VS_ERR_CORRUPT, "%s: %s", path, err) : st;
    const size_t n = hd->n_vectors, d = h->d;
    const void *levels, *links0, *upper, *ids, *vec, *codes = NULL;
    char what[VS_ERR_LEN];
    st = vs_ifile_section_sized(f, path, "hnsw.levels", n, &levels, err);
    if (st != VS_OK)
        goto fail;
    uint32_t *ublk = realloc(h->ublk, (n + 1) * sizeof(uint32_t));
    if (ublk == NULL) {
        st = vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    h->ublk = ublk;
    const uint8_t *lv = levels;
    h->ublk[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (lv[i] > p.max_level) {
            st = vs_errf(err, VS_ERR_CORRUPT,
                         "%s: section 'hnsw.levels': node %zu has level %u above the top %u", path, i, lv[i],
                         p.max_level);
            goto fail;
        }
        h->ublk[i + 1] = h->ublk[i] + lv[i]; /* n < 2^31 nodes of level <= 31: no overflow */
    }
    if ((uint64_t)h->ublk[n] * (h->M + 1) != p.n_upper) {
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: section 'hnsw.levels' does not match the upper link count",
                     path);
        goto fail;
    }
    st = vs_ifile_section_sized(f, path, "hnsw.links0", n * (h->M0 + 1) * sizeof(uint32_t), &links0, err);
    if (st == VS_OK)
        st = vs_ifile_section_sized(f, path, "hnsw.upper", (size_t)p.n_upper * sizeof(uint32_t), &upper, err);
    if (st == VS_OK)
        st = vs_ifile_section_sized(f, path, "hnsw.ids",
                                    p.flags & PARAM_IDENTITY_IDS ? 0 : n * sizeof(int64_t), &ids, err);
    if (st == VS_OK)
        st = vs_ifile_section_sized(f, path, "hnsw.vectors", n * d * sizeof(float), &vec, err);
    if (st == VS_OK && h->sq8) {
        st = vs_ifile_section_sized(f, path, "hnsw.codes", n * d, &codes, err);
        if (st == VS_OK)
            st = vs_sq8_read_section(&h->sq, (uint32_t)d, f, path, err);
    }
    if (st != VS_OK)
        goto fail;
    h->owned = 0;
    h->n = h->cap = n;
    h->links0 = (uint32_t *)links0;
    h->upper = (uint32_t *)upper;
    h->ids = p.flags & PARAM_IDENTITY_IDS ? NULL : (int64_t *)ids;
    h->vec = (float *)vec;
    h->codes = (uint8_t *)codes;
    h->entry = p.entry;
    h->max_level = p.max_level;
    h->ef_construction = p.ef_construction;
    h->seed = p.seed;
    snprintf(what, sizeof what, "%s: section 'hnsw.links0'/'hnsw.upper'", path);
    st = check_links(h, what, err);
    if (st != VS_OK)
        goto fail;
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(h->vec[i])) {
            st = vs_errf(err, VS_ERR_CORRUPT, "%s: section 'hnsw.vectors': vector %zu holds NaN or Inf", path,
                         i / d);
            goto fail;
        }
    for (size_t i = 0; h->ids && i < n; i++)
        if (h->ids[i] < 0) {
            st = vs_errf(err, VS_ERR_CORRUPT, "%s: section 'hnsw.ids': entry %zu is negative (%lld)", path, i,
                         (long long)h->ids[i]);
            goto fail;
        }
    if (h->sq8) {
        h->sqw = malloc(d * sizeof(float));
        if (h->sqw == NULL) {
            st = vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        for (size_t i = 0; i < d; i++)
            h->sqw[i] = h->sq.step[i] * h->sq.step[i];
        if (!h->ip) { /* derived, not stored: the nodes' own key terms */
            h->cn = malloc((h->n ? h->n : 1) * sizeof(float));
            if (h->cn == NULL) {
                st = vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
                goto fail;
            }
            for (size_t i = 0; i < h->n; i++)
                h->cn[i] = code_norm(h, h->codes + i * d);
        }
        h->trained = 1;
    }
    *out = h;
    return VS_OK;
fail:
    vs_hnsw_destroy(h);
    return st;
}

/* ---- vs_index_t glue ---------------------------------------------------------------------------- */

static size_t ops_count(const void *impl)
{
    return ((const vs_hnsw_t *)impl)->n;
}

static size_t ops_memory_bytes(const void *impl)
{
    const vs_hnsw_t *h = impl;
    /* per node: vector, layer-0 block, upper-block index, id (unless ids are the node numbers) */
    size_t b = h->n * ((size_t)h->d * sizeof(float) + (h->M0 + 1) * sizeof(uint32_t) + sizeof(uint32_t) +
                       (h->ids ? sizeof(int64_t) : 0));
    b += (size_t)h->ublk[h->n] * (h->M + 1) * sizeof(uint32_t);
    if (h->sq8)
        b += h->n * h->d + 3 * (size_t)h->d * sizeof(float) + (h->cn ? h->n * sizeof(float) : 0);
    return b;
}

static int ops_needs_training(const void *impl)
{
    return !((const vs_hnsw_t *)impl)->trained;
}

static void ops_destroy(void *impl)
{
    vs_hnsw_destroy(impl);
}

static void ops_ids_in_order(const void *impl, int64_t *out)
{
    const vs_hnsw_t *h = impl;
    for (size_t i = 0; i < h->n; i++)
        out[i] = node_id(h, (uint32_t)i);
}

/* Exact vectors: the graph's float vectors (cosine: normalised), one segment. */
static size_t ops_exact_segs(const void *impl, vs_exact_seg_t *out, size_t cap)
{
    const vs_hnsw_t *h = impl;
    if (cap > 0)
        out[0] = (vs_exact_seg_t){.rows = h->vec, .ids = h->ids, .id0 = 0, .n = h->n};
    return 1;
}

const vs_index_ops_t vs_hnsw_ops = {
    hnsw_train,         hnsw_add,    hnsw_search,      ops_count, ops_memory_bytes,
    ops_needs_training, ops_destroy, ops_ids_in_order, NULL,      hnsw_save,
    ops_exact_segs,
};
