/* test_topk: the bounded heap and the k-way merge against a sort-based reference, with many ties. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "tests/testlib.h"

typedef struct kv {
    float key;
    int64_t id;
} kv_t;

static int kv_cmp(const void *a, const void *b)
{
    const kv_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void test_heap_matches_sort(void)
{
    uint64_t st = 1;
    for (int rep = 0; rep < 300; rep++) {
        size_t n = 1 + vs_test_rand(&st) % 500, k = 1 + vs_test_rand(&st) % 60;
        int larger = (int)(vs_test_rand(&st) & 1);
        kv_t *all = malloc(n * sizeof *all);
        float keys[64], dist[64];
        int64_t ids[64], out_ids[64];
        vs_topk_t h;
        vs_topk_init(&h, k, keys, ids);
        for (size_t i = 0; i < n; i++) {
            float d = (float)(vs_test_rand(&st) % 20); /* many ties */
            int64_t id = (int64_t)((i * 7919) % 100003);
            all[i] = (kv_t){vs_topk_key(d, larger), id};
            vs_topk_push(&h, vs_topk_key(d, larger), id);
        }
        qsort(all, n, sizeof *all, kv_cmp);
        vs_topk_emit(&h, larger, dist, out_ids);
        for (size_t i = 0; i < k; i++) {
            if (i < n) {
                CHECKF(out_ids[i] == all[i].id && dist[i] == (larger ? -all[i].key : all[i].key),
                       "rep %d rank %zu: got %lld want %lld", rep, i, (long long)out_ids[i],
                       (long long)all[i].id);
            } else {
                CHECK(out_ids[i] == -1 && dist[i] == vs_topk_pad_distance(larger));
            }
        }
        free(all);
    }
}

static void test_threshold(void)
{
    float keys[2];
    int64_t ids[2];
    vs_topk_t h;
    vs_topk_init(&h, 2, keys, ids);
    CHECK(vs_topk_threshold(&h) == INFINITY);
    vs_topk_push(&h, 5, 1);
    CHECK(vs_topk_threshold(&h) == INFINITY);
    vs_topk_push(&h, 3, 2);
    CHECK(vs_topk_threshold(&h) == 5);
    vs_topk_push(&h, 5, 0); /* same key, smaller id: replaces id 1 */
    CHECK(vs_topk_threshold(&h) == 5 && ids[0] == 0);
    vs_topk_push(&h, 9, 3); /* worse: ignored */
    CHECK(h.size == 2);
}

static void test_merge(void)
{
    /* L2: three partitions; id 7 appears twice (replica overlap), padding ends list 2 */
    float d0[] = {1, 4, 6}, d1[] = {1, 2, 4}, d2[] = {3, INFINITY, INFINITY};
    int64_t i0[] = {9, 7, 11}, i1[] = {5, 7, 12}, i2[] = {3, -1, -1};
    vs_topk_list_t lists[] = {{d0, i0, 3}, {d1, i1, 3}, {d2, i2, 3}};
    float od[6];
    int64_t oi[6];
    char err[VS_ERR_LEN];
    CHECK(vs_topk_merge(lists, 3, 0, 6, od, oi, err) == VS_OK);
    /* order: (1,5) (1,9) (2,7) (3,3) (4,7 dup dropped) (4,12) (6,11) */
    int64_t expect[] = {5, 9, 7, 3, 12, 11};
    for (int i = 0; i < 6; i++)
        CHECKF(oi[i] == expect[i], "rank %d got %lld want %lld", i, (long long)oi[i], (long long)expect[i]);
    CHECK(od[2] == 2.0f); /* the better occurrence of id 7 was kept */
    /* more k than results: padding */
    float pd[10];
    int64_t pi[10];
    CHECK(vs_topk_merge(lists, 3, 0, 10, pd, pi, err) == VS_OK);
    CHECK(pi[6] == -1 && pi[9] == -1 && pd[9] == INFINITY);
    /* similarity: larger first */
    float s0[] = {0.9f, 0.5f}, s1[] = {0.95f, 0.1f};
    int64_t j0[] = {1, 2}, j1[] = {3, 4};
    vs_topk_list_t sl[] = {{s0, j0, 2}, {s1, j1, 2}};
    CHECK(vs_topk_merge(sl, 2, 1, 3, od, oi, err) == VS_OK);
    CHECK(oi[0] == 3 && oi[1] == 1 && oi[2] == 2 && od[0] == 0.95f);
    /* errors */
    CHECK(vs_topk_merge(lists, 3, 0, 0, od, oi, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_topk_merge(lists, 3, 0, VS_TOPK_MAX_K + 1, od, oi, err) == VS_ERR_INVALID_ARGUMENT);
    float bad[] = {3, 1};
    vs_topk_list_t bl = {bad, j0, 2};
    CHECK(vs_topk_merge(&bl, 1, 0, 2, od, oi, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "not sorted"));
    CHECK(vs_topk_merge(NULL, 0, 0, 2, od, oi, err) == VS_OK && oi[0] == -1 && oi[1] == -1);
}

static void test_merge_random_against_reference(void)
{
    uint64_t st = 99;
    for (int rep = 0; rep < 100; rep++) {
        size_t nl = 1 + vs_test_rand(&st) % 6, len = 1 + vs_test_rand(&st) % 30,
               k = 1 + vs_test_rand(&st) % 40;
        float *d = malloc(nl * len * sizeof(float));
        int64_t *id = malloc(nl * len * sizeof(int64_t));
        vs_topk_list_t *ls = malloc(nl * sizeof *ls);
        kv_t *all = malloc(nl * len * sizeof *all);
        size_t na = 0;
        for (size_t l = 0; l < nl; l++) {
            /* each list: distinct ids within the list (as an index emits), sorted by (key, id) */
            kv_t *tmp = all + na;
            for (size_t i = 0; i < len; i++)
                tmp[i] = (kv_t){(float)(vs_test_rand(&st) % 10), (int64_t)(l * 1000 + i)};
            qsort(tmp, len, sizeof *tmp, kv_cmp);
            for (size_t i = 0; i < len; i++) {
                d[l * len + i] = tmp[i].key;
                id[l * len + i] = tmp[i].id;
            }
            ls[l] = (vs_topk_list_t){d + l * len, id + l * len, len};
            na += len;
        }
        qsort(all, na, sizeof *all, kv_cmp);
        float od[40];
        int64_t oi[40];
        char err[VS_ERR_LEN];
        CHECK(vs_topk_merge(ls, nl, 0, k, od, oi, err) == VS_OK);
        for (size_t i = 0; i < k; i++)
            CHECKF(oi[i] == (i < na ? all[i].id : -1), "rep %d rank %zu", rep, i);
        free(d);
        free(id);
        free(ls);
        free(all);
    }
}

/* The reservoir keeps exactly the set the heap keeps, for any arrival order, with many ties. */
static void test_reservoir_matches_heap(void)
{
    uint64_t st = 17;
    for (int rep = 0; rep < 300; rep++) {
        size_t k = 1 + vs_test_rand(&st) % 50, n = vs_test_rand(&st) % 2000;
        float rk[200], hk[64], out_d[64];
        int64_t ri[200], hi[64], out_i[64];
        vs_reservoir_t r;
        vs_reservoir_init(&r, k, 2 * k + (vs_test_rand(&st) % 8), rk, ri);
        vs_topk_t h;
        vs_topk_init(&h, k, hk, hi);
        /* every third repetition draws ids from 20 values: the same (key, id) is offered several times,
         * as an id is when a list is given twice */
        const uint64_t ids_range = rep % 3 == 2 ? 20 : 100000;
        for (size_t i = 0; i < n; i++) {
            float key = (float)(vs_test_rand(&st) % 30);
            int64_t id = (int64_t)(vs_test_rand(&st) % ids_range);
            if (key <= r.threshold)
                vs_reservoir_push(&r, key, id);
            vs_topk_push(&h, key, id);
        }
        size_t got = vs_reservoir_finish(&r);
        CHECK(got == (n < k ? n : k));
        /* sort the reservoir through a heap and compare with the heap's own result */
        float k2[64];
        int64_t i2[64];
        vs_topk_t h2;
        vs_topk_init(&h2, k, k2, i2);
        for (size_t i = 0; i < got; i++)
            vs_topk_push(&h2, rk[i], ri[i]);
        float d2[64];
        int64_t o2[64];
        vs_topk_emit(&h, 0, out_d, out_i);
        vs_topk_emit(&h2, 0, d2, o2);
        CHECKF(memcmp(out_i, o2, k * sizeof(int64_t)) == 0 && memcmp(out_d, d2, k * sizeof(float)) == 0,
               "rep %d: reservoir and heap keep different sets", rep);
    }
}

/* vs_topk_best_of: the same entries in the same order as a k-heap fed every key and sorted, with many
 * ties (keys 0..29), keys in rising and falling order, below and above the selection's size limit (4,096),
 * with and without a partial last row of the group-minimum threshold (n = 2000, 3001), k from 1 to past n. */
static void test_best_of_matches_heap(void)
{
    uint64_t st = 23;
    static float keys[5000], hk[5000], ok[5000];
    static int64_t hi[5000], oi[5000];
    static const size_t ns[] = {1, 5, 100, 1024, 2000, 3001, 4096, 5000};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (int rep = 0; rep < 20; rep++) {
            const size_t n = ns[ni],
                         k = rep < 4 ? (size_t[]){1, 10, 48, n + 3}[rep] : 1 + vs_test_rand(&st) % n;
            for (size_t i = 0; i < n; i++)
                keys[i] = rep % 2 ? (float)(vs_test_rand(&st) % 30) : vs_test_randf(&st);
            if (rep >= 16) /* ordered: the best keys all in one place */
                for (size_t i = 0; i < n; i++)
                    keys[i] = rep % 2 ? (float)i : (float)(n - i) * 0.5f;
            vs_topk_t h;
            vs_topk_init(&h, k, hk, hi);
            for (size_t i = 0; i < n; i++)
                vs_topk_push(&h, keys[i], (int64_t)i);
            size_t want = vs_topk_sort(&h), got = vs_topk_best_of(keys, n, k, ok, oi);
            CHECKF(got == want && memcmp(hi, oi, got * sizeof(int64_t)) == 0 &&
                       memcmp(hk, ok, got * sizeof(float)) == 0,
                   "n=%zu k=%zu rep %d: %zu vs %zu entries, or different ones", n, k, rep, got, want);
        }
}

/* Per-partition k (Vespa's top-k probability): the documented example, the identities, and a simulation
 * of the true top-k thrown uniformly over the partitions: a partition holding more than k' of them must
 * be at most as frequent as the bound says, while k' - 1 would be exceeded more often. */
/* vs_ids_recall: served ids found among the exact ones over the exact ones present; padding ignored. */
static void test_ids_recall(void)
{
    const int64_t exact[4] = {5, 9, 2, -1}, served[4] = {9, 7, 5, -1}, none[4] = {-1, -1, -1, -1};
    CHECK(fabs(vs_ids_recall(served, exact, 4) - 2.0 / 3.0) < 1e-12);
    CHECK(vs_ids_recall(exact, exact, 4) == 1.0 && vs_ids_recall(none, exact, 4) == 0.0);
    CHECK(vs_ids_recall(served, none, 4) == 1.0);
}

static void test_ids_repeated(void)
{
    int64_t none[4] = {9, 3, 7, 1}, some[6] = {9, 3, 7, 3, 1, 9};
    CHECK(vs_ids_repeated(none, 4) == -1 && vs_ids_repeated(none, 0) == -1);
    CHECK(vs_ids_repeated(some, 6) == 3); /* the smallest repeated id */
    CHECK(none[0] == 9 && some[3] == 3);  /* the input is not reordered */
    vs_ids_sort(none, 4);
    CHECK(none[0] == 1 && none[1] == 3 && none[2] == 7 && none[3] == 9);
}

static void test_drop_duplicates(void)
{
    int64_t tmp[8];
    float d0[6] = {1, 2, 3, 4, 5, 6};
    int64_t i0[6] = {7, 8, 9, 10, 11, 12};
    CHECK(vs_topk_drop_duplicates(d0, i0, 6, tmp, 0) == 0); /* nothing repeated: untouched */
    CHECK(i0[0] == 7 && i0[5] == 12 && d0[5] == 6);
    float d[7] = {1, 2, 3, 4, 5, 6, 7};
    int64_t ids[7] = {40, 41, 40, 42, 41, -1, -1}; /* 40 and 41 twice, then padding */
    CHECK(vs_topk_drop_duplicates(d, ids, 7, tmp, 0) == 2);
    CHECK(ids[0] == 40 && ids[1] == 41 && ids[2] == 42 && ids[3] == -1 && ids[6] == -1);
    CHECK(d[0] == 1 && d[1] == 2 && d[2] == 4); /* each id keeps its first (better) entry */
    CHECK(d[3] == vs_topk_pad_distance(0));
    float s[3] = {0.9f, 0.8f, 0.7f}; /* similarities: padding is the worst similarity */
    int64_t si[3] = {5, 5, 5};
    CHECK(vs_topk_drop_duplicates(s, si, 3, tmp, 1) == 2);
    CHECK(si[0] == 5 && si[1] == -1 && si[2] == -1 && s[0] == 0.9f && s[2] == vs_topk_pad_distance(1));
}

static void test_partition_k(void)
{
    CHECK(vs_topk_partition_k(100, 8, 0.9999) == 28);
    CHECK(vs_topk_partition_k(100, 8, 1.0) == 100 && vs_topk_partition_k(100, 8, 0) == 100);
    CHECK(vs_topk_partition_k(100, 1, 0.9999) == 100);
    CHECK(vs_topk_partition_k(10, 2, 0.9999) == 10);
    CHECK(vs_topk_partition_k(10, 2, 0.99) == 9);
    CHECK(vs_topk_partition_k(1, 4, 0.9999) == 1);
    size_t prev = 0;
    for (uint32_t p = 16; p >= 2; p /= 2) { /* fewer partitions: each needs more */
        size_t kp = vs_topk_partition_k(1000, p, 0.9999);
        CHECKF(kp >= prev && kp <= 1000 && kp > 1000 / p, "k' %zu at %u partitions", kp, p);
        prev = kp;
    }
    const size_t k = 100, trials = 100000;
    const uint32_t P = 8;
    const double q = 0.99;
    size_t kp = vs_topk_partition_k(k, P, q), over = 0, over_less = 0;
    uint64_t rng = 12345;
    for (size_t t = 0; t < trials; t++) {
        size_t load[8] = {0}, mx = 0;
        for (size_t i = 0; i < k; i++)
            load[vs_test_rand(&rng) % P]++;
        for (uint32_t p = 0; p < P; p++)
            mx = load[p] > mx ? load[p] : mx;
        over += mx > kp;
        over_less += mx > kp - 1;
    }
    CHECKF((double)over / trials <= 1 - q, "k' %zu: a partition held more in %zu of %zu trials", kp, over,
           trials);
    CHECKF((double)over_less / trials > (1 - q) / 2, "k' - 1 = %zu was exceeded only %zu times", kp - 1,
           over_less);
}

int main(void)
{
    RUN(test_reservoir_matches_heap);
    RUN(test_best_of_matches_heap);
    RUN(test_ids_recall);
    RUN(test_heap_matches_sort);
    RUN(test_threshold);
    RUN(test_merge);
    RUN(test_merge_random_against_reference);
    RUN(test_partition_k);
    RUN(test_drop_duplicates);
    RUN(test_ids_repeated);
    return vs_test_finish();
}
