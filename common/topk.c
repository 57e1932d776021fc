/* topk.c: binary max-heap on (key, id) and the k-way merge (a heap of list cursors plus an
 * open-addressing set of emitted ids for de-duplication). */
#include "common/topk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define VS_HAVE_X86 1
#endif

static void sift_down(float *keys, int64_t *ids, size_t n, size_t i, float key, int64_t id)
{
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t r = l + 1, c = l;
        if (r < n && vs_topk_worse(keys[r], ids[r], keys[l], ids[l]))
            c = r;
        if (!vs_topk_worse(keys[c], ids[c], key, id))
            break;
        keys[i] = keys[c];
        ids[i] = ids[c];
        i = c;
    }
    keys[i] = key;
    ids[i] = id;
}

void vs_topk_push(vs_topk_t *h, float key, int64_t id)
{
    if (h->size < h->k) {
        size_t i = h->size++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!vs_topk_worse(key, id, h->keys[p], h->ids[p]))
                break;
            h->keys[i] = h->keys[p];
            h->ids[i] = h->ids[p];
            i = p;
        }
        h->keys[i] = key;
        h->ids[i] = id;
        return;
    }
    if (h->k == 0 || !vs_topk_worse(h->keys[0], h->ids[0], key, id))
        return;
    sift_down(h->keys, h->ids, h->size, 0, key, id);
}

size_t vs_topk_sort(vs_topk_t *h)
{
    /* heap sort: repeatedly move the worst to the end */
    size_t n = h->size;
    for (size_t end = n; end > 1; end--) {
        float k = h->keys[end - 1];
        int64_t id = h->ids[end - 1];
        h->keys[end - 1] = h->keys[0];
        h->ids[end - 1] = h->ids[0];
        sift_down(h->keys, h->ids, end - 1, 0, k, id);
    }
    return n;
}

void vs_topk_emit(vs_topk_t *h, int larger_is_better, float *out_dist, int64_t *out_ids)
{
    size_t n = vs_topk_sort(h);
    for (size_t i = 0; i < n; i++) {
        out_dist[i] = larger_is_better ? -h->keys[i] : h->keys[i];
        out_ids[i] = h->ids[i];
    }
    for (size_t i = n; i < h->k; i++) {
        out_dist[i] = vs_topk_pad_distance(larger_is_better);
        out_ids[i] = -1;
    }
    /* the heap is now sorted, not a heap: leave it empty so misuse is harmless */
    h->size = 0;
}

static void push_below_scalar(vs_topk_t *h, const float *keys, size_t n, int64_t id0)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i] <= vs_topk_threshold(h))
            vs_topk_push(h, keys[i], id0 + (int64_t)i);
}

#ifdef VS_HAVE_X86
/* Once the heap is full few keys pass: a 16-key compare finds them (NaN never passes, as in the loop). */
__attribute__((target("avx512f"))) static void push_below_avx512(vs_topk_t *h, const float *keys, size_t n,
                                                                 int64_t id0)
{
    size_t i = 0;
    for (; i < n && h->size < h->k; i++) /* filling: every finite key goes in */
        if (keys[i] <= vs_topk_threshold(h))
            vs_topk_push(h, keys[i], id0 + (int64_t)i);
    for (; i + 16 <= n; i += 16) {
        __mmask16 m =
            _mm512_cmp_ps_mask(_mm512_loadu_ps(keys + i), _mm512_set1_ps(vs_topk_threshold(h)), _CMP_LE_OQ);
        while (m) {
            unsigned j = (unsigned)__builtin_ctz(m);
            m &= (__mmask16)(m - 1);
            if (keys[i + j] <= vs_topk_threshold(h)) /* the threshold may have dropped since the compare */
                vs_topk_push(h, keys[i + j], id0 + (int64_t)(i + j));
        }
    }
    push_below_scalar(h, keys + i, n - i, id0 + (int64_t)i);
}
#endif

void vs_topk_push_below(vs_topk_t *h, const float *keys, size_t n, int64_t id0)
{
#ifdef VS_HAVE_X86
    if (h->k > 0 && vs_cpu_simd_level() >= VS_SIMD_AVX512) {
        push_below_avx512(h, keys, n, id0);
        return;
    }
#endif
    push_below_scalar(h, keys, n, id0);
}

/* ---- reservoir --------------------------------------------------------------------------------- */

static void swap_entry(float *k, int64_t *id, size_t a, size_t b)
{
    float tk = k[a];
    k[a] = k[b];
    k[b] = tk;
    int64_t ti = id[a];
    id[a] = id[b];
    id[b] = ti;
}

/* Reorders [lo, hi) so that the entry of rank kth by (key, id) is at kth, better ones before it and
 * worse ones after (quickselect with a three-way partition: the "equal" part holds the pivot, so every
 * round shrinks the range). */
static void select_best(float *keys, int64_t *ids, size_t lo, size_t hi, size_t kth)
{
    while (hi - lo > 1) {
        size_t a = lo, m = lo + (hi - lo) / 2, z = hi - 1, p = m;
        /* median of three by (key, id) */
        if (vs_topk_worse(keys[a], ids[a], keys[m], ids[m]) !=
            vs_topk_worse(keys[a], ids[a], keys[z], ids[z]))
            p = a;
        else if (vs_topk_worse(keys[z], ids[z], keys[a], ids[a]) !=
                 vs_topk_worse(keys[z], ids[z], keys[m], ids[m]))
            p = z;
        float pk = keys[p];
        int64_t pi = ids[p];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (vs_topk_worse(pk, pi, keys[i], ids[i]))
                swap_entry(keys, ids, lt++, i++);
            else if (vs_topk_worse(keys[i], ids[i], pk, pi))
                swap_entry(keys, ids, i, --gt);
            else
                i++;
        }
        if (kth < lt)
            hi = lt;
        else if (kth >= gt)
            lo = gt;
        else
            return;
    }
}

/* Reservoirs up to this many entries are cut by cut_by_key (stack buffers); larger ones by select_best. */
#define CUT_FAST_MAX 4096u

/* Per-thread work space of the selections (not the stack: 176 KB, where a server's or a BLAS thread's
 * stack may be small): kth_key's three partitions, the reservoir's tie ids, best_of's selection, group minima
 * and candidate keys. */
typedef struct sel_entry {
    float key;
    int64_t id;
} sel_entry_t;
static _Thread_local float tl_part[3][CUT_FAST_MAX];
static _Thread_local int64_t tl_ties[CUT_FAST_MAX];
static _Thread_local sel_entry_t tl_sel[CUT_FAST_MAX];
static _Thread_local float tl_gmin[CUT_FAST_MAX], tl_ckeys[CUT_FAST_MAX];

/* The key of rank kth (0-based) among keys[0..n), n <= CUT_FAST_MAX, none NaN: quickselect on a copy
 * with out-of-place three-way partitions written without branches (each value is stored to both sides
 * and the side's count advances by the comparison), so the partitions cost no mispredictions. */
static float kth_key(const float *keys, size_t n, size_t kth)
{
    float(*buf)[CUT_FAST_MAX] = tl_part;
    memcpy(buf[0], keys, n * sizeof(float));
    int src = 0;
    while (n > 8) {
        const float *x = buf[src];
        float a = x[0], b = x[n / 2], c = x[n - 1]; /* median of three */
        float p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        float *lt = buf[(src + 1) % 3], *gt = buf[(src + 2) % 3];
        size_t nl = 0, ng = 0;
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            lt[nl] = v;
            gt[ng] = v;
            nl += v < p;
            ng += v > p;
        }
        if (kth < nl) {
            n = nl;
            src = (src + 1) % 3;
        } else if (kth >= n - ng) {
            kth -= n - ng;
            n = ng;
            src = (src + 2) % 3;
        } else {
            return p;
        }
    }
    /* a few left: insertion sort */
    float *x = buf[src];
    for (size_t i = 1; i < n; i++) {
        float v = x[i];
        size_t j = i;
        for (; j > 0 && x[j - 1] > v; j--)
            x[j] = x[j - 1];
        x[j] = v;
    }
    return x[kth];
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* vs_reservoir_cut for size <= CUT_FAST_MAX: the k-th key v by kth_key, then among the entries keyed v
 * the ones with the smallest ids that complete k (so the same k entries as select_best by (key, id)),
 * kept by one in-place pass. */
static void cut_by_key(vs_reservoir_t *r)
{
    const size_t n = r->size, k = r->k;
    const float v = kth_key(r->keys, n, k - 1);
    size_t less = 0, eq = 0;
    for (size_t i = 0; i < n; i++) {
        less += r->keys[i] < v;
        eq += r->keys[i] == v;
    }
    /* no more entries keyed v than places left: all of them; else among them every one with an id below
     * id_max, then copies of id_max (an id can be offered twice, e.g. from a list given twice) up to k */
    const int all_ties = less + eq <= k;
    int64_t id_max = INT64_MAX;
    size_t at_max = 0;
    if (!all_ties) {
        int64_t *ties = tl_ties;
        size_t t = 0;
        for (size_t i = 0; i < n; i++)
            if (r->keys[i] == v)
                ties[t++] = r->ids[i];
        qsort(ties, t, sizeof *ties, cmp_id);
        id_max = ties[k - less - 1];
        size_t below = k - less - 1; /* the ties sorted before the first copy of id_max */
        while (below > 0 && ties[below - 1] == id_max)
            below--;
        at_max = k - less - below;
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        float key = r->keys[i];
        int64_t id = r->ids[i];
        int keep = key < v || (key == v && (all_ties || id < id_max));
        if (!all_ties && key == v && id == id_max && at_max > 0) {
            keep = 1;
            at_max--;
        }
        r->keys[w] = key;
        r->ids[w] = id;
        w += (size_t)keep;
    }
    r->size = w; /* k */
    r->threshold = v;
}

static int cmp_key_id(const void *a, const void *b)
{
    const float ka = ((const float *)a)[0], kb = ((const float *)b)[0];
    if (ka != kb)
        return ka < kb ? -1 : 1;
    const int64_t ia = *(const int64_t *)((const char *)a + 8), ib = *(const int64_t *)((const char *)b + 8);
    return (ia > ib) - (ia < ib);
}

/* A threshold T with at least `want` keys <= T, found cheaply when want is small against n: the minima of
 * the S residue classes i mod S (a vertical minimum over rows of S keys: n compares, vectorised) and T the
 * want-th smallest of them (want classes have a key <= T). Every one of the want best keys is <= T, so the
 * selection only needs the few keys <= T. Returns 0 when not worth it (n small against want). */
static int group_threshold(const float *keys, size_t n, size_t want, float *out_t)
{
    size_t s = ((n / 16 + 15) / 16) * 16;
    if (s < 4 * want)
        s = ((4 * want + 15) / 16) * 16;
    if (s * 4 > n || s > CUT_FAST_MAX)
        return 0;
    float *g = tl_gmin;
    memcpy(g, keys, s * sizeof(float));
    for (size_t r = s; r < n; r += s) {
        const float *x = keys + r;
        const size_t m = n - r < s ? n - r : s;
        for (size_t j = 0; j < m; j++)
            g[j] = x[j] < g[j] ? x[j] : g[j];
    }
    *out_t = kth_key(g, s, want - 1);
    return 1;
}

/* The keys <= t (none NaN) into ck and their indices into sel[].id, in index order; returns how many. */
static size_t keys_at_most_scalar(const float *keys, size_t n, float t, float *ck, sel_entry_t *sel)
{
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) { /* few pass: written always, kept by the count (no branch) */
        ck[nc] = keys[i];
        sel[nc].id = (int64_t)i;
        nc += keys[i] <= t;
    }
    return nc;
}

#ifdef VS_HAVE_X86
__attribute__((target("avx512f"))) static size_t keys_at_most_avx512(const float *keys, size_t n, float t,
                                                                     float *ck, sel_entry_t *sel)
{
    size_t nc = 0, i = 0;
    const __m512 vt = _mm512_set1_ps(t);
    for (; i + 16 <= n; i += 16) {
        __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(keys + i), vt, _CMP_LE_OQ);
        while (m) {
            unsigned j = (unsigned)__builtin_ctz(m);
            m &= (__mmask16)(m - 1);
            ck[nc] = keys[i + j];
            sel[nc].id = (int64_t)(i + j);
            nc++;
        }
    }
    for (; i < n; i++)
        if (keys[i] <= t) {
            ck[nc] = keys[i];
            sel[nc].id = (int64_t)i;
            nc++;
        }
    return nc;
}
#endif

static size_t keys_at_most(const float *keys, size_t n, float t, float *ck, sel_entry_t *sel)
{
#ifdef VS_HAVE_X86
    if (vs_cpu_simd_level() >= VS_SIMD_AVX512)
        return keys_at_most_avx512(keys, n, t, ck, sel);
#endif
    return keys_at_most_scalar(keys, n, t, ck, sel);
}

size_t vs_topk_best_of(const float *keys, size_t n, size_t k, float *okeys, int64_t *oids)
{
    int nan = 0;
    for (size_t i = 0; i < n; i++)
        nan |= keys[i] != keys[i];
    if (k == 0 || n == 0 || n > CUT_FAST_MAX || nan) { /* the heap (which never keeps a NaN) */
        vs_topk_t h;
        vs_topk_init(&h, k, okeys, oids);
        vs_topk_push_below(&h, keys, n, 0);
        return vs_topk_sort(&h);
    }
    const size_t want = k < n ? k : n;
    /* the candidates, in index order: every key, or only those <= a group threshold */
    sel_entry_t *sel = tl_sel;
    float *ck = tl_ckeys;
    size_t nc = 0;
    float t;
    if (group_threshold(keys, n, want, &t)) {
        nc = keys_at_most(keys, n, t, ck, sel);
    } else {
        memcpy(ck, keys, n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            sel[i].id = (int64_t)i;
        nc = n;
    }
    const float v = kth_key(ck, nc, want - 1);
    size_t less = 0;
    for (size_t i = 0; i < nc; i++)
        less += ck[i] < v;
    /* entries below v, then those equal to v in index order (the smallest ids) until want */
    size_t got = 0, ties = want - less;
    for (size_t i = 0; i < nc; i++) {
        if (ck[i] < v || (ck[i] == v && ties > 0)) {
            ties -= ck[i] == v;
            sel[got].key = ck[i];
            sel[got].id = sel[i].id; /* got <= i: entries ahead are not yet read */
            got++;
        }
    }
    if (got <= 32) { /* insertion sort by (key, id) */
        for (size_t i = 1; i < got; i++) {
            sel_entry_t x = sel[i];
            size_t j = i;
            for (; j > 0 && (sel[j - 1].key > x.key || (sel[j - 1].key == x.key && sel[j - 1].id > x.id));
                 j--)
                sel[j] = sel[j - 1];
            sel[j] = x;
        }
    } else {
        qsort(sel, got, sizeof sel[0], cmp_key_id);
    }
    for (size_t i = 0; i < got; i++) {
        okeys[i] = sel[i].key;
        oids[i] = sel[i].id;
    }
    return got;
}

void vs_reservoir_cut(vs_reservoir_t *r)
{
    if (r->size <= r->k || r->k == 0) {
        if (r->k == 0)
            r->size = 0;
        return;
    }
    if (r->size <= CUT_FAST_MAX) {
        cut_by_key(r);
        return;
    }
    select_best(r->keys, r->ids, 0, r->size, r->k - 1);
    r->size = r->k;
    /* the worst kept entry is the threshold */
    float worst = r->keys[0];
    for (size_t i = 1; i < r->k; i++)
        if (r->keys[i] > worst)
            worst = r->keys[i];
    r->threshold = worst;
}

size_t vs_reservoir_finish(vs_reservoir_t *r)
{
    vs_reservoir_cut(r);
    return r->size;
}

/* ---- k-way merge -------------------------------------------------------------------------------- */

typedef struct cursor {
    float key;
    int64_t id;
    size_t list;
    size_t pos;
} cursor_t;

static int cursor_better(const cursor_t *a, const cursor_t *b)
{
    if (a->key != b->key)
        return a->key < b->key;
    if (a->id != b->id)
        return a->id < b->id;
    return a->list < b->list;
}

static void cursor_sift_down(cursor_t *c, size_t n, size_t i)
{
    cursor_t x = c[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t best = l;
        if (l + 1 < n && cursor_better(&c[l + 1], &c[l]))
            best = l + 1;
        if (!cursor_better(&c[best], &x))
            break;
        c[i] = c[best];
        i = best;
    }
    c[i] = x;
}

static size_t list_len(const vs_topk_list_t *l)
{
    size_t n = 0;
    while (n < l->len && l->ids[n] >= 0)
        n++;
    return n;
}

static uint64_t hash_id(int64_t id)
{
    uint64_t z = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    return z ^ (z >> 29);
}

/* Inserts id into the set; returns 0 when it was already there. */
static int set_insert(int64_t *slots, size_t mask, int64_t id)
{
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        if (slots[i] == -1) {
            slots[i] = id;
            return 1;
        }
        if (slots[i] == id)
            return 0;
    }
}

vs_status vs_topk_merge(const vs_topk_list_t *lists, size_t n_lists, int larger_is_better, size_t k,
                        float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN])
{
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%u", k, VS_TOPK_MAX_K);
    for (size_t l = 0; l < n_lists; l++) {
        size_t n = list_len(&lists[l]);
        for (size_t i = 1; i < n; i++) {
            float a = vs_topk_key(lists[l].dist[i - 1], larger_is_better);
            float b = vs_topk_key(lists[l].dist[i], larger_is_better);
            if (!(a <= b))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "list %zu is not sorted at position %zu", l, i);
        }
    }
    size_t cap = 16;
    while (cap < 2 * k)
        cap *= 2;
    cursor_t *heap = malloc((n_lists ? n_lists : 1) * sizeof *heap);
    int64_t *seen = malloc(cap * sizeof *seen);
    if (heap == NULL || seen == NULL) {
        free(heap);
        free(seen);
        return vs_errf(err, VS_ERR_NOMEM, "k-way merge: out of memory");
    }
    memset(seen, 0xff, cap * sizeof *seen); /* every slot -1 */

    size_t n_heap = 0;
    for (size_t l = 0; l < n_lists; l++) {
        if (list_len(&lists[l]) == 0)
            continue;
        heap[n_heap++] = (cursor_t){vs_topk_key(lists[l].dist[0], larger_is_better), lists[l].ids[0], l, 0};
    }
    for (size_t i = n_heap; i-- > 0;)
        cursor_sift_down(heap, n_heap, i);

    size_t out = 0;
    while (out < k && n_heap > 0) {
        cursor_t *top = &heap[0];
        if (set_insert(seen, cap - 1, top->id)) {
            out_dist[out] = lists[top->list].dist[top->pos];
            out_ids[out] = top->id;
            out++;
        }
        const vs_topk_list_t *l = &lists[top->list];
        size_t next = top->pos + 1;
        if (next < l->len && l->ids[next] >= 0) {
            top->pos = next;
            top->key = vs_topk_key(l->dist[next], larger_is_better);
            top->id = l->ids[next];
        } else {
            heap[0] = heap[--n_heap];
        }
        if (n_heap > 0)
            cursor_sift_down(heap, n_heap, 0);
    }
    for (; out < k; out++) {
        out_dist[out] = vs_topk_pad_distance(larger_is_better);
        out_ids[out] = -1;
    }
    free(heap);
    free(seen);
    return VS_OK;
}

size_t vs_topk_partition_k(size_t k, uint32_t n_partitions, double q)
{
    if (!(q > 0 && q < 1) || n_partitions <= 1 || k == 0)
        return k;
    const double p = 1.0 / n_partitions, lp = log(p), lq = log1p(-p), budget = (1 - q) / n_partitions;
    const double lk = lgamma((double)k + 1);
    /* tail = P(X > kp), accumulated from the top (X = k) down, in log space for the pmf */
    double tail = 0;
    for (size_t kp = k; kp > 0; kp--) {
        double x = (double)kp; /* tail += P(X = kp) makes it P(X > kp - 1) */
        tail += exp(lk - lgamma(x + 1) - lgamma((double)(k - kp) + 1) + x * lp + (double)(k - kp) * lq);
        if (tail > budget)
            return kp; /* P(X > kp - 1) is too large: kp is the smallest that holds */
    }
    return 1;
}

vs_status vs_ids_check_write(const int64_t *ids, size_t n, char err[VS_ERR_LEN])
{
    if (n == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "a write needs at least one id");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "id %zu is negative (%lld)", i, (long long)ids[i]);
    int64_t dup = vs_ids_repeated(ids, n);
    if (dup == -2)
        return vs_errf(err, VS_ERR_NOMEM, "no memory to check %zu ids", n);
    if (dup >= 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "id %lld appears twice in one write", (long long)dup);
    return VS_OK;
}

/* ---- duplicates --------------------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

void vs_ids_sort(int64_t *ids, size_t n)
{
    qsort(ids, n, sizeof *ids, cmp_i64);
}

double vs_ids_recall(const int64_t *served, const int64_t *exact, size_t k)
{
    size_t want = 0, hit = 0;
    for (size_t i = 0; i < k; i++) {
        if (exact[i] < 0)
            continue;
        want++;
        for (size_t j = 0; j < k; j++)
            if (served[j] == exact[i]) {
                hit++;
                break;
            }
    }
    return want ? (double)hit / (double)want : 1.0;
}

int64_t vs_ids_repeated(const int64_t *ids, size_t n)
{
    if (n < 2)
        return -1;
    int64_t *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return -2;
    memcpy(s, ids, n * sizeof *s);
    vs_ids_sort(s, n);
    int64_t dup = -1;
    for (size_t i = 1; i < n && dup == -1; i++)
        if (s[i] == s[i - 1])
            dup = s[i];
    free(s);
    return dup;
}

size_t vs_topk_drop_duplicates(float *dist, int64_t *ids, size_t n, int64_t *tmp, int larger_is_better)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0)
            tmp[m++] = ids[i];
    vs_ids_sort(tmp, m);
    int dup = 0;
    for (size_t i = 1; i < m && !dup; i++)
        dup = tmp[i] == tmp[i - 1];
    if (!dup)
        return 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0)
            continue;
        int seen = 0;
        for (size_t j = 0; j < w && !seen; j++)
            seen = ids[j] == ids[i];
        if (seen)
            continue;
        dist[w] = dist[i];
        ids[w++] = ids[i];
    }
    size_t dropped = m - w;
    for (; w < n; w++) {
        ids[w] = -1;
        dist[w] = vs_topk_pad_distance(larger_is_better);
    }
    return dropped;
}
