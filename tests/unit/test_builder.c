/* test_builder: vecshard-build's library (shard/builder/builder.h) end to end on small clustered data
 * (4,000 x 16, 32 centres): hash and cluster partitioning produce partitions whose ids are exactly the
 * input's, each where the routing says, files matching the manifest and loadable by a shard; searching
 * the partitions and merging equals one index with the same trained state (and the flat oracle for
 * IVF-Flat with nprobe = nlist); cluster packing stays within the LPT bound; rebuilding gives the same
 * bytes whatever the chunk size and thread count; --resume keeps what matches and rebuilds what does
 * not; bad input is refused with a clear message and no manifest. Attributes (--attr): every partition
 * (hash and cluster IVF, HNSW) carries each item's input values in its item order, filtered searches on
 * a loaded partition answer only matching items, the manifest names the schema, rebuilds are
 * byte-identical and --resume does not keep partitions built from other attribute files; vecshard-gt
 * --attr --filter writes the exact filtered ground truth. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/filter.h"
#include "common/hash.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "shard/builder/builder.h"
#include "shard/index/attrs.h"
#include "shard/index/ifile.h"
#include "shard/index/index.h"
#include "shard/index/ivf.h"
#include "common/cluster/manifest.h"
#include "shard/server/shard.h"
#include "common/distance.h"
#include "tests/testlib.h"

#define N 4000
#define D 16
#define NQ 30
#define K 10
#define T "builder"

static float base[N * D], queries[NQ * D];
static int64_t ids[N]; /* 1000 + 7 * row, in a shuffled order: ids are not row numbers */
static vs_test_pathbuf_t base_path, ids_path;
/* attributes of the base rows: market (int64 .npy, some missing), price (float64 .npy: a float field, some
 * NaN), cat (int32 .npy; value 9 at rows 100, 200, 300, 400 only) */
static int64_t market[N];
static double price[N];
static int32_t cat[N];
static vs_test_pathbuf_t market_path, price_path, cat_path;
static const vs_builder_attr_t attr3[3] = {
    {"market", market_path.s}, {"price", price_path.s}, {"cat", cat_path.s}};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static vs_builder_opts_t opts(const char *out, const char *factory, uint32_t P, vs_partitioning kind)
{
    vs_builder_opts_t o = {.base_path = base_path.s,
                           .ids_path = ids_path.s,
                           .metric = VS_METRIC_L2,
                           .factory = factory,
                           .n_partitions = P,
                           .partitioning = kind,
                           .out_dir = out,
                           .version = "v1",
                           .model_version = "model-7",
                           .train_sample = 3000,
                           .seed = 5,
                           .n_threads = 1,
                           .chunk_rows = 300, /* rounded to 512: eight chunks, the last one short */
                           .build_time_unix = 1700000000};
    return o;
}

static const char *vpath(const char *out, const char *file)
{
    static char buf[4][1400];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/v1/%s", out, file);
    return buf[slot];
}

/* The ids of a saved IVF partition, list by list: *out_ids[n], *out_off[nlist + 1]. */
static int partition_ids(const char *path, int64_t **out_ids, uint64_t **out_off, size_t *out_n,
                         uint32_t *nlist)
{
    char err[VS_ERR_LEN];
    vs_ifile_t *f;
    if (vs_ifile_open(path, &f, err) != VS_OK)
        return -1;
    const void *ids_s, *off_s;
    size_t ids_len, off_len;
    int rc = -1;
    if (vs_ifile_section(f, "ivf.ids", &ids_s, &ids_len, err) == VS_OK &&
        vs_ifile_section(f, "ivf.offsets", &off_s, &off_len, err) == VS_OK) {
        *out_ids = malloc(ids_len + 8);
        *out_off = malloc(off_len);
        memcpy(*out_ids, ids_s, ids_len);
        memcpy(*out_off, off_s, off_len);
        *out_n = ids_len / 8;
        *nlist = (uint32_t)(off_len / 8 - 1);
        rc = 0;
    }
    vs_ifile_close(f);
    return rc;
}

static size_t row_of(int64_t id)
{
    return id >= 1000 && (id - 1000) % 7 == 0 && (size_t)((id - 1000) / 7) < N ? (size_t)((id - 1000) / 7)
                                                                               : SIZE_MAX;
}

/* Searches every partition of the manifest (all lists: nprobe) and merges. */
static void search_merged(const vs_manifest_t *m, vs_index_t **parts, const vs_search_params_t *sp,
                          float *dist, int64_t *out_ids)
{
    char err[VS_ERR_LEN];
    float *pd = malloc(m->n_partitions * NQ * K * sizeof(float));
    int64_t *pi = malloc(m->n_partitions * NQ * K * sizeof(int64_t));
    vs_topk_list_t *l = malloc(m->n_partitions * sizeof *l);
    for (uint32_t p = 0; p < m->n_partitions; p++)
        CHECKF(vs_index_search(parts[p], NQ, queries, K, sp, 1, pd + p * NQ * K, pi + p * NQ * K, err) ==
                   VS_OK,
               "%s", err);
    for (size_t q = 0; q < NQ; q++) {
        for (uint32_t p = 0; p < m->n_partitions; p++)
            l[p] = (vs_topk_list_t){pd + (p * NQ + q) * K, pi + (p * NQ + q) * K, K};
        CHECK(vs_topk_merge(l, m->n_partitions, m->metric != VS_METRIC_L2, K, dist + q * K, out_ids + q * K,
                            err) == VS_OK);
    }
    free(pd);
    free(pi);
    free(l);
}

/* Checks a built version against its input; returns the loaded partitions (caller destroys). */
static vs_index_t **check_version(const char *out, uint32_t P, vs_manifest_t *m)
{
    char err[VS_ERR_LEN];
    CHECKF(vs_manifest_load(vpath(out, "manifest.json"), m, err) == VS_OK, "%s", err);
    CHECK(m->n_partitions == P && m->dim == D && strcmp(m->model_version, "model-7") == 0);
    CHECK(m->nlist == 16 && strcmp(m->centroids_file, "centroids.fvecs") == 0 && m->has_centroids_crc32c);
    vs_index_t **parts = calloc(P, sizeof *parts);
    unsigned char *seen = calloc(N, 1);
    uint64_t total = 0;
    float *cent = NULL;
    size_t cn = 0;
    uint32_t cd = 0;
    CHECK(vs_vecfile_load_f32(vpath(out, "centroids.fvecs"), &cn, &cd, &cent, err) == VS_OK && cn == 16 &&
          cd == D);
    for (uint32_t p = 0; p < P; p++) {
        const vs_manifest_partition_t *mp = vs_manifest_partition(m, p);
        char path[PATH_MAX];
        CHECK(mp && vs_manifest_path(m, mp->file, path, err) == VS_OK);
        uint64_t size;
        uint32_t crc;
        CHECK(vs_file_crc32c(path, &size, &crc, err) == VS_OK && size == mp->size_bytes && mp->has_crc32c &&
              crc == mp->crc32c);
        CHECKF(vs_index_load(path, &parts[p], err) == VS_OK, "%s", err);
        if (!parts[p])
            continue;
        CHECK(vs_index_count(parts[p]) == mp->n_vectors &&
              strcmp(vs_index_model_version(parts[p]), "model-7") == 0);
        const vs_ivf_t *ivf = vs_index_impl_ivf(parts[p]);
        CHECK(ivf && cent && memcmp(vs_ivf_centroids(ivf), cent, 16 * D * sizeof(float)) == 0);
        int64_t *pid = NULL;
        uint64_t *off = NULL;
        size_t n = 0;
        uint32_t nl = 0;
        CHECK(partition_ids(path, &pid, &off, &n, &nl) == 0 && n == mp->n_vectors && nl == 16);
        for (size_t i = 0; pid && i < n; i++) {
            size_t r = row_of(pid[i]);
            CHECKF(r != SIZE_MAX && !seen[r], "partition %u holds id %lld twice or unknown", p,
                   (long long)pid[i]);
            if (r != SIZE_MAX)
                seen[r] = 1;
            if (strcmp(m->partitioning, "hash") == 0)
                CHECK(vs_hash_partition(pid[i], P) == p);
        }
        if (strcmp(m->partitioning, "cluster") == 0)
            for (uint32_t l = 0; off && l < 16; l++) {
                int owned = 0;
                for (uint32_t j = 0; j < mp->n_lists; j++)
                    owned |= mp->lists[j] == l;
                CHECKF(owned || off[l + 1] == off[l], "partition %u has vectors in list %u it does not own",
                       p, l);
            }
        total += n;
        free(pid);
        free(off);
    }
    size_t missing = 0;
    for (size_t r = 0; r < N; r++)
        missing += !seen[r];
    CHECKF(total == N && missing == 0, "%llu ids stored, %zu input ids missing", (unsigned long long)total,
           missing);
    /* a shard loads every partition (manifest validation, size, CRC, metric, dim, count) */
    for (uint32_t p = 0; p < P; p++) {
        vs_shard_opts_t so = {.cluster = "t", .replica_id = "r", .address = "x"};
        vs_shard_t *sh = NULL;
        CHECK(vs_shard_create(&so, &sh, err) == VS_OK);
        CHECKF(vs_shard_load(sh, vpath(out, "manifest.json"), p, NULL, err) == VS_OK, "partition %u: %s", p,
               err);
        vs_shard_destroy(sh);
    }
    free(seen);
    free(cent);
    return parts;
}

static void destroy_parts(vs_index_t **parts, uint32_t P)
{
    for (uint32_t p = 0; parts && p < P; p++)
        vs_index_destroy(parts[p]);
    free(parts);
}

static void test_hash_function(void)
{
    /* Vigna's splitmix64.c seeded with 0 gives e220a8397b1dcdaf, then 6e789e6aa1b965f4 */
    CHECK(vs_splitmix64(0) == 0xe220a8397b1dcdafull);
    CHECK(vs_splitmix64(0x9e3779b97f4a7c15ull) == 0x6e789e6aa1b965f4ull);
    /* consecutive and strided ids spread evenly: 70,000 ids over 7 partitions, each within 3% of 10,000
     * (a binomial's standard deviation is 93 here: 3% is over 3 sigma) */
    for (int stride = 1; stride <= 7; stride += 6) {
        size_t cnt[7] = {0};
        for (int64_t i = 0; i < 70000; i++)
            cnt[vs_hash_partition(i * stride, 7)]++;
        for (int p = 0; p < 7; p++)
            CHECKF(cnt[p] > 9700 && cnt[p] < 10300, "stride %d partition %d: %zu", stride, p, cnt[p]);
    }
    CHECK(vs_hash_partition(INT64_MAX, 1) == 0);
}

/* Lists whose nearest other list (by centroid) is in the same partition. */
static int nearest_together(const float *cent, int nl, int d, const uint32_t *part)
{
    int together = 0;
    for (int l = 0; l < nl; l++) {
        int nn = -1;
        float bd = INFINITY;
        for (int m = 0; m < nl; m++) {
            float dd = m == l ? INFINITY : vs_l2sqr(cent + l * d, cent + m * d, (size_t)d);
            if (dd < bd) {
                bd = dd;
                nn = m;
            }
        }
        together += part[nn] == part[l];
    }
    return together;
}

static void test_pack_lists(void)
{
    uint64_t sizes[100];
    uint32_t part[100];
    uint64_t st = 3;
    for (uint32_t P = 1; P <= 100; P += 11) {
        uint64_t total = 0, maxs = 0;
        for (int l = 0; l < 100; l++) {
            sizes[l] = vs_test_rand(&st) % (l < 5 ? 5000 : 300); /* a few large lists */
            total += sizes[l];
            maxs = sizes[l] > maxs ? sizes[l] : maxs;
        }
        vs_builder_pack_lists(sizes, 100, P, part);
        uint64_t load[100] = {0};
        uint32_t nl[100] = {0};
        for (int l = 0; l < 100; l++) {
            CHECK(part[l] < P);
            load[part[l] % 100] += sizes[l];
            nl[part[l] % 100]++;
        }
        for (uint32_t p = 0; p < P; p++) {
            /* Graham's LPT bound: the list that made the largest partition went into the least loaded one */
            CHECKF(load[p] <= total / P + maxs, "P %u: partition %u holds %llu > %llu + %llu", P, p,
                   (unsigned long long)load[p], (unsigned long long)(total / P), (unsigned long long)maxs);
            CHECK(nl[p] >= 1);
        }
    }
    /* near packing: same bound, every partition used, and lists of one region stay together */
    {
        enum { NL = 120, DD = 8, PP = 4 };
        float cent[NL * DD];
        vs_test_clustered(cent, NL, DD, PP, 0.05f, 17, 18); /* 4 tight regions of lists */
        uint64_t sz[NL], tot = 0, mx = 0;
        uint32_t pp[NL];
        for (int l = 0; l < NL; l++) {
            sz[l] = 50 + vs_test_rand(&st) % 100;
            tot += sz[l];
            mx = sz[l] > mx ? sz[l] : mx;
        }
        vs_builder_pack_lists_near(sz, cent, NL, DD, PP, 1, pp);
        uint64_t ld[PP] = {0};
        uint32_t cnt[PP] = {0};
        for (int l = 0; l < NL; l++) {
            CHECK(pp[l] < PP);
            ld[pp[l] % PP] += sz[l];
            cnt[pp[l] % PP]++;
        }
        for (int q = 0; q < PP; q++)
            CHECKF(ld[q] <= tot / PP + mx && cnt[q] >= 1, "near packing: partition %d holds %llu", q,
                   (unsigned long long)ld[q]);
        /* locality: a list's nearest other list is in the same partition (LPT by size alone: ~1/P) */
        int together = nearest_together(cent, NL, DD, pp);
        CHECKF(together >= NL * 9 / 10, "near packing keeps only %d of %d nearest neighbours together",
               together, NL);
        uint32_t lpt[NL];
        vs_builder_pack_lists(sz, NL, PP, lpt);
        int lpt_together = nearest_together(cent, NL, DD, lpt);
        printf("  nearest-list pairs in one partition: near packing %d/%d, size-only packing %d/%d\n",
               together, NL, lpt_together, NL);
    }
    /* all empty, P = nlist: one list each (ties go to the partition with fewer lists) */
    memset(sizes, 0, sizeof sizes);
    vs_builder_pack_lists(sizes, 100, 100, part);
    unsigned char used[100] = {0};
    for (int l = 0; l < 100; l++)
        used[part[l]]++;
    for (int p = 0; p < 100; p++)
        CHECK(used[p] == 1);
}

static void test_hash_build(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t out = vs_test_pathcopy(T, "hash");
    vs_builder_opts_t o = opts(out.s, "IVF16,Flat", 3, VS_PARTITION_HASH);
    vs_builder_result_t res;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK, "%s", err);
    CHECK(res.n_vectors == N && res.n_partitions == 3 && res.partitions_built == 3 && res.train_rows == 3000);
    vs_manifest_t m;
    vs_index_t **parts = check_version(out.s, 3, &m);
    CHECK(strcmp(m.partitioning, "hash") == 0 && strcmp(m.hash, VS_MANIFEST_HASH) == 0);
    CHECK(m.has_build && m.build_train_sample == 3000 && m.build_seed == 5);
    /* nprobe = nlist: IVF-Flat is exhaustive, so the merged partitions are the exact answer */
    vs_index_t *flat;
    CHECK(vs_index_create(D, VS_METRIC_L2, "Flat", &flat, err) == VS_OK);
    CHECK(vs_index_add(flat, N, base, ids, 1, NULL, err) == VS_OK);
    float dm[NQ * K], df[NQ * K];
    int64_t im[NQ * K], iff[NQ * K];
    vs_search_params_t all = {.nprobe = 16};
    search_merged(&m, parts, &all, dm, im);
    CHECK(vs_index_search(flat, NQ, queries, K, NULL, 1, df, iff, err) == VS_OK);
    size_t bad = 0;
    for (size_t i = 0; i < NQ * K; i++)
        bad += im[i] != iff[i] || fabsf(dm[i] - df[i]) > 1e-4f * (1.0f + df[i]);
    CHECKF(bad == 0, "%zu of %d results differ from the flat oracle", bad, NQ * K);
    /* nprobe 2: equal to one index holding everything with the same trained state */
    vs_index_t *one;
    CHECK(vs_index_clone_empty(parts[0], &one, err) == VS_OK);
    CHECK(vs_index_add(one, N, base, ids, 1, NULL, err) == VS_OK);
    vs_search_params_t two = {.nprobe = 2};
    search_merged(&m, parts, &two, dm, im);
    CHECK(vs_index_search(one, NQ, queries, K, &two, 1, df, iff, err) == VS_OK);
    bad = 0;
    for (size_t i = 0; i < NQ * K; i++)
        bad += im[i] != iff[i] || dm[i] != df[i];
    CHECKF(bad == 0, "%zu of %d results differ from the unpartitioned index", bad, NQ * K);
    vs_index_destroy(one);
    vs_index_destroy(flat);
    destroy_parts(parts, 3);
    vs_manifest_fini(&m);
}

static void test_cluster_build(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t out = vs_test_pathcopy(T, "cluster");
    const uint32_t P = 4, NPROBE = 3;
    vs_builder_opts_t o = opts(out.s, "IVF16,PQ4", P, VS_PARTITION_CLUSTER);
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    vs_manifest_t m;
    vs_index_t **parts = check_version(out.s, P, &m);
    CHECK(strcmp(m.partitioning, "cluster") == 0 && m.hash[0] == 0);
    /* every list owned once (vs_manifest_load checks it too); balance within the LPT bound */
    uint32_t owner[16];
    memset(owner, 0xff, sizeof owner);
    for (uint32_t p = 0; p < P; p++)
        for (uint32_t j = 0; j < m.partitions[p].n_lists; j++) {
            CHECK(owner[m.partitions[p].lists[j]] == UINT32_MAX);
            owner[m.partitions[p].lists[j]] = m.partitions[p].id;
        }
    uint64_t maxlist = 0, maxpart = 0;
    for (uint32_t l = 0; l < 16; l++) {
        CHECK(owner[l] < P);
        size_t sz = 0;
        for (uint32_t p = 0; p < P; p++)
            sz += parts[p] ? vs_ivf_list_size(vs_index_impl_ivf(parts[p]), l) : 0;
        maxlist = sz > maxlist ? sz : maxlist;
    }
    for (uint32_t p = 0; p < P; p++)
        maxpart = m.partitions[p].n_vectors > maxpart ? m.partitions[p].n_vectors : maxpart;
    CHECKF(maxpart <= N / P + maxlist, "largest partition %llu > %d + largest list %llu",
           (unsigned long long)maxpart, N / P, (unsigned long long)maxlist);
    /* each vector sits in the partition owning its nearest centroid: its list (from the file) is owned by
     * the partition, and is the exact nearest centroid up to float rounding of a near tie */
    const vs_ivf_t *ivf0 = vs_index_impl_ivf(parts[0]);
    const float *cent = vs_ivf_centroids(ivf0);
    size_t far_off = 0;
    for (uint32_t p = 0; p < P; p++) {
        char path[PATH_MAX];
        CHECK(vs_manifest_path(&m, m.partitions[p].file, path, err) == VS_OK);
        int64_t *pid = NULL;
        uint64_t *off = NULL;
        size_t n = 0;
        uint32_t nl = 0;
        CHECK(partition_ids(path, &pid, &off, &n, &nl) == 0);
        for (uint32_t l = 0; off && l < nl; l++)
            for (uint64_t i = off[l]; i < off[l + 1]; i++) {
                const float *x = base + row_of(pid[i]) * D;
                int32_t best;
                CHECK(vs_ivf_probe(ivf0, x, 1, 1, &best, err) == VS_OK);
                CHECK(owner[l] == p);
                float dl = vs_distance(VS_METRIC_L2, x, cent + l * D, D);
                float db = vs_distance(VS_METRIC_L2, x, cent + best * D, D);
                far_off += (uint32_t)best != l && dl > db * (1 + 1e-5f);
            }
        free(pid);
        free(off);
    }
    CHECKF(far_off == 0, "%zu vectors are not in their nearest centroid's list", far_off);
    /* centroid routing: only the partitions owning a query's NPROBE lists, each given those lists, merged,
     * equal one unpartitioned index searched with nprobe = NPROBE */
    vs_index_t *one;
    CHECK(vs_index_clone_empty(parts[0], &one, err) == VS_OK);
    CHECK(vs_index_add(one, N, base, ids, 1, NULL, err) == VS_OK);
    vs_search_params_t sp = {.nprobe = NPROBE};
    float d1[NQ * K], dp[4][K], dm[K];
    int64_t i1[NQ * K], ip[4][K], im[K];
    CHECK(vs_index_search(one, NQ, queries, K, &sp, 1, d1, i1, err) == VS_OK);
    size_t bad = 0, touched = 0;
    for (size_t q = 0; q < NQ; q++) {
        int32_t probe[3];
        CHECK(vs_ivf_probe(ivf0, queries + q * D, NPROBE, 0, probe, err) == VS_OK);
        vs_topk_list_t l[4];
        size_t nl = 0;
        for (uint32_t p = 0; p < P; p++) {
            int32_t mine[3];
            int any = 0;
            for (uint32_t j = 0; j < NPROBE; j++) {
                mine[j] = owner[probe[j]] == p ? probe[j] : -1;
                any |= mine[j] >= 0;
            }
            if (!any)
                continue;
            CHECK(vs_ivf_search_lists(vs_index_impl_ivf(parts[p]), 1, queries + q * D, K, mine, NPROBE, 0,
                                      NULL, 1, dp[nl], ip[nl], err) == VS_OK);
            l[nl] = (vs_topk_list_t){dp[nl], ip[nl], K};
            nl++;
        }
        touched += nl;
        CHECK(vs_topk_merge(l, nl, 0, K, dm, im, err) == VS_OK);
        for (size_t r = 0; r < K; r++)
            bad += im[r] != i1[q * K + r] || dm[r] != d1[q * K + r];
    }
    CHECKF(bad == 0, "%zu of %d routed results differ from the unpartitioned index", bad, NQ * K);
    CHECKF(touched < NQ * P, "routing touched %zu partitions for %d queries: it should skip some", touched,
           NQ);
    vs_index_destroy(one);
    destroy_parts(parts, P);
    vs_manifest_fini(&m);
}

static const char *files[] = {"manifest.json", "centroids.fvecs", "part-0.vsidx", "part-1.vsidx",
                              "part-2.vsidx",  "part-0.done",     "part-1.done",  "part-2.done"};
#define N_FILES (sizeof files / sizeof *files)

/* Same inputs and options: the same bytes, whatever the chunk size, thread count, memory budget
 * (partitions per pass) or whether the directory held a build before. */
static void test_idempotent_and_streaming(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t a = vs_test_pathcopy(T, "idem-a"), b = vs_test_pathcopy(T, "idem-b");
    const char *factory = "IVF16,PQ8x4fs,RSQ8";
    vs_builder_opts_t o = opts(a.s, factory, 3, VS_PARTITION_HASH);
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    unsigned char *first[N_FILES];
    size_t len[N_FILES];
    for (size_t f = 0; f < N_FILES; f++)
        first[f] = vs_test_read_file(vpath(a.s, files[f]), &len[f]);
    /* a built version is immutable: refused without --resume; the same build resumed rewrites the same bytes
     */
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_ALREADY_EXISTS && strstr(err, "immutable"));
    o.resume = 1;
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err); /* again, over the first */
    o.resume = 0;
    for (size_t f = 0; f < N_FILES; f++) {
        size_t n2 = 0;
        unsigned char *again = vs_test_read_file(vpath(a.s, files[f]), &n2);
        CHECKF(first[f] && again && n2 == len[f] && memcmp(first[f], again, n2) == 0,
               "%s changed on a rebuild", files[f]);
        free(again);
        free(first[f]);
    }
    /* one chunk holding everything, two threads, one partition per pass */
    vs_builder_opts_t o2 = opts(b.s, factory, 3, VS_PARTITION_HASH);
    o2.chunk_rows = N;
    o2.n_threads = 2;
    o2.memory_bytes = 1;
    vs_builder_result_t res;
    CHECKF(vs_builder_run(&o2, &res, err) == VS_OK, "%s", err);
    CHECK(res.n_passes == 3);
    for (size_t f = 0; f < 5; f++) /* the markers name their base path: compared above, not here */
        CHECKF(vs_test_same_file(vpath(a.s, files[f]), vpath(b.s, files[f])),
               "%s differs with another chunk size", files[f]);
    rm_tree(b.s);
}

static void test_resume(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t a = vs_test_pathcopy(T, "resume");
    vs_builder_opts_t o = opts(a.s, "IVF16,Flat", 3, VS_PARTITION_CLUSTER); /* no PQ training: fast */
    vs_builder_result_t res;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK, "%s", err);
    unsigned char *p2 = NULL;
    size_t n2 = 0;
    p2 = vs_test_read_file(vpath(a.s, "part-2.vsidx"), &n2);
    o.resume = 1;
    CHECK(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 3 && res.partitions_built == 0);
    /* a damaged partition file: only it is rebuilt, to the same bytes */
    FILE *f = fopen(vpath(a.s, "part-2.vsidx"), "r+b");
    CHECK(f && fseek(f, 100, SEEK_SET) == 0 && fputc(0x42, f) != EOF);
    if (f)
        fclose(f);
    CHECK(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 2 && res.partitions_built == 1);
    size_t n3 = 0;
    unsigned char *p3 = vs_test_read_file(vpath(a.s, "part-2.vsidx"), &n3);
    CHECK(p2 && p3 && n2 == n3 && memcmp(p2, p3, n2) == 0);
    free(p2);
    free(p3);
    /* other options over the finished version: refused (versions are immutable) */
    o.seed = 6;
    CHECK(vs_builder_run(&o, &res, err) == VS_ERR_ALREADY_EXISTS && strstr(err, "same build"));
    /* over an unfinished build (no manifest): nothing matches, everything is rebuilt; fewer partitions: the
     * extra files go */
    CHECK(unlink(vpath(a.s, "manifest.json")) == 0);
    CHECK(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 0 && res.partitions_built == 3);
    CHECK(unlink(vpath(a.s, "manifest.json")) == 0);
    o.n_partitions = 2;
    CHECK(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_built == 2);
    CHECK(!exists(vpath(a.s, "part-2.vsidx")) && !exists(vpath(a.s, "part-2.done")));
    vs_manifest_t m;
    CHECK(vs_manifest_load(vpath(a.s, "manifest.json"), &m, err) == VS_OK && m.n_partitions == 2);
    vs_manifest_fini(&m);
    rm_tree(a.s);
}

/* The same vectors from .fvecs, .bvecs and .npy, and the same ids from .i64 and .npy: the same files. */
static void test_formats(void)
{
    char err[VS_ERR_LEN];
    uint8_t *bytes = malloc(N * D);
    float *ints = malloc(N * D * sizeof(float));
    for (size_t i = 0; i < N * D; i++) {
        float v = 128.0f + 40.0f * base[i];
        bytes[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        ints[i] = bytes[i];
    }
    vs_test_pathbuf_t fv = vs_test_pathcopy(T, "b.fvecs"), bv = vs_test_pathcopy(T, "b.bvecs");
    vs_test_pathbuf_t np = vs_test_pathcopy(T, "b.npy"), idn = vs_test_pathcopy(T, "ids.npy");
    CHECK(vs_vecio_write_fvecs(fv.s, N, D, ints, err) == VS_OK);
    CHECK(vs_vecio_write_bvecs(bv.s, N, D, bytes, err) == VS_OK);
    CHECK(vs_vecio_write_npy(np.s, VS_DTYPE_U8, N, D, bytes, err) == VS_OK);
    /* int64 .npy written by hand: vecio writes f4/u1/i4 only */
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }", N);
    while ((hl + 11) % 64 != 0)
        hdr[hl++] = ' ';
    hdr[hl++] = '\n';
    FILE *f = fopen(idn.s, "wb");
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
    CHECK(f && fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl &&
          fwrite(ids, 8, N, f) == N);
    if (f)
        fclose(f);
    const char *inputs[3] = {fv.s, bv.s, np.s};
    const char *idfiles[3] = {ids_path.s, idn.s, ids_path.s};
    for (int i = 0; i < 3; i++) {
        char out[64];
        snprintf(out, sizeof out, "fmt%d", i);
        vs_test_pathbuf_t o_dir = vs_test_pathcopy(T, out);
        vs_builder_opts_t o = opts(o_dir.s, "IVF16,PQ4x4fs", 2, VS_PARTITION_HASH);
        o.base_path = inputs[i];
        o.ids_path = idfiles[i];
        CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s: %s", inputs[i], err);
    }
    vs_test_pathbuf_t d0 = vs_test_pathcopy(T, "fmt0");
    for (int i = 1; i < 3; i++) {
        char out[64];
        snprintf(out, sizeof out, "fmt%d", i);
        vs_test_pathbuf_t di = vs_test_pathcopy(T, out);
        for (size_t k = 0; k < 4; k++)
            CHECKF(vs_test_same_file(vpath(d0.s, files[k]), vpath(di.s, files[k])), "%s from %s", files[k],
                   inputs[i]);
        rm_tree(di.s);
    }
    rm_tree(d0.s);
    free(bytes);
    free(ints);
}

/* Refused: status, a message naming the problem, and no manifest. expect: substring of the message. */
static void refused(vs_builder_opts_t *o, vs_status want, const char *expect)
{
    char err[VS_ERR_LEN] = "";
    vs_status st = vs_builder_run(o, NULL, err);
    CHECKF(st == want && strstr(err, expect) != NULL, "want %s '%s', got %s '%s'", vs_status_name(want),
           expect, vs_status_name(st), err);
    CHECKF(!exists(vpath(o->out_dir, "manifest.json")) || strcmp(o->out_dir, "keep") == 0,
           "manifest written");
}

static void test_bad_inputs(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t out = vs_test_pathcopy(T, "bad");
    vs_test_pathbuf_t txt = vs_test_pathcopy(T, "x.txt"), nan = vs_test_pathcopy(T, "nan.fvecs");
    vs_test_pathbuf_t short_ids = vs_test_pathcopy(T, "short.i64"), neg = vs_test_pathcopy(T, "neg.i64");
    vs_test_pathbuf_t f32ids = vs_test_pathcopy(T, "ids-f32.npy");
    CHECK(vs_test_write_file(txt.s, "1 2 3\n", 6) == 0);
    CHECK(vs_test_write_file(short_ids.s, ids, 8 * (N - 1)) == 0);
    int64_t *nids = malloc(N * sizeof *nids);
    memcpy(nids, ids, N * sizeof *nids);
    nids[1234] = -5;
    CHECK(vs_test_write_file(neg.s, nids, 8 * N) == 0);
    free(nids);
    CHECK(vs_vecio_write_npy(f32ids.s, VS_DTYPE_F32, N, 1, base, err) == VS_OK);
    float *x = malloc(N * D * sizeof(float));
    memcpy(x, base, N * D * sizeof(float));
    x[3001 * D + 5] = NAN;
    CHECK(vs_vecio_write_fvecs(nan.s, N, D, x, err) == VS_OK);
    free(x);

    vs_builder_opts_t o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.base_path = txt.s;
    refused(&o, VS_ERR_UNSUPPORTED, "x.txt");
    o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.base_path = "/nonexistent/base.fvecs";
    refused(&o, VS_ERR_NOT_FOUND, "/nonexistent/base.fvecs");
    o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.ids_path = short_ids.s;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "3999 ids");
    o.ids_path = neg.s;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "id 1234 is negative");
    o.ids_path = f32ids.s;
    refused(&o, VS_ERR_UNSUPPORTED, "int64");
    o.ids_path = txt.s;
    refused(&o, VS_ERR_UNSUPPORTED, "unknown format");
    o = opts(out.s, "IVF16,Flat", 0, VS_PARTITION_HASH);
    refused(&o, VS_ERR_INVALID_ARGUMENT, "partitions 0 is out of range 1..4096");
    o.n_partitions = 4097;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "partitions 4097 is out of range 1..4096");
    o = opts(out.s, "HNSW32", 2, VS_PARTITION_CLUSTER);
    refused(&o, VS_ERR_INVALID_ARGUMENT, "cluster partitioning needs an IVF factory");
    o = opts(out.s, "IVF16,Flat", 17, VS_PARTITION_CLUSTER);
    refused(&o, VS_ERR_INVALID_ARGUMENT, "17 partitions but only 16 IVF lists");
    o = opts(out.s, "Flat", 2, VS_PARTITION_HASH);
    refused(&o, VS_ERR_UNSUPPORTED, "Flat indexes have no file format");
    o = opts(out.s, "IVF16,PQ5", 2, VS_PARTITION_HASH);
    refused(&o, VS_ERR_INVALID_ARGUMENT, "not divisible");
    o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.version = "a/b";
    refused(&o, VS_ERR_INVALID_ARGUMENT, "not a valid name");
    o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.train_sample = 10;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "smaller than the 16 IVF lists");
    o = opts(out.s, "IVF8000,Flat", 2, VS_PARTITION_HASH);
    refused(&o, VS_ERR_INVALID_ARGUMENT, "fewer than the 8000 IVF lists");
    o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.base_path = nan.s;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "row 3001");
    /* a NaN found in the stream leaves an earlier complete version's manifest alone (IVF: the assignment
     * pass reads every row before the first write) */
    o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    CHECK(vs_builder_run(&o, NULL, err) == VS_OK);
    o.base_path = nan.s;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "row 3001"));
    CHECK(exists(vpath(out.s, "manifest.json")));
    rm_tree(out.s);
}

/* ---- attributes ----------------------------------------------------------------------------------- */

/* 1 when base row r matches "market=3|5&price=..5". */
static int row_matches(size_t r)
{
    return (market[r] == 3 || market[r] == 5) && !isnan(price[r]) && (float)price[r] <= 5.0f;
}

/* Every partition of the version in out: its attributes are the input values at each item's row (through
 * the item order), and a filtered search answers only matching items, as many as the partition holds up to
 * K. Returns the matching items counted over all partitions. */
static size_t check_attrs(const char *out, uint32_t P)
{
    char err[VS_ERR_LEN];
    vs_manifest_t m;
    CHECKF(vs_manifest_load(vpath(out, "manifest.json"), &m, err) == VS_OK, "%s", err);
    CHECK(m.n_attrs == 3 && strcmp(m.attrs[0].name, "market") == 0 && m.attrs[0].type == VS_ATTR_INT &&
          strcmp(m.attrs[1].name, "price") == 0 && m.attrs[1].type == VS_ATTR_FLOAT &&
          strcmp(m.attrs[2].name, "cat") == 0 && m.attrs[2].type == VS_ATTR_INT);
    CHECK(m.n_partitions == P);
    size_t matching = 0, total = 0;
    for (uint32_t p = 0; p < m.n_partitions; p++) {
        char path[PATH_MAX];
        vs_index_t *idx = NULL;
        CHECK(vs_manifest_path(&m, m.partitions[p].file, path, err) == VS_OK);
        CHECKF(vs_index_load(path, &idx, err) == VS_OK, "%s", err);
        if (!idx)
            continue;
        const vs_attrs_t *a = vs_index_attrs(idx);
        size_t n = vs_index_count(idx);
        total += n;
        CHECKF(a && vs_attrs_count(a) == n && vs_attrs_n_fields(a) == 3, "partition %u: no attributes", p);
        if (!a) {
            vs_index_destroy(idx);
            continue;
        }
        int64_t *pid = malloc((n + 1) * sizeof *pid);
        vs_index_ids_in_order(idx, pid);
        const int64_t *cm = vs_attrs_column(a, 0), *cc = vs_attrs_column(a, 2);
        const float *cp = vs_attrs_column(a, 1);
        size_t wrong = 0, here = 0;
        for (size_t j = 0; j < n; j++) {
            size_t r = row_of(pid[j]);
            if (r == SIZE_MAX) {
                wrong++;
                continue;
            }
            float want = (float)price[r];
            wrong += cm[j] != market[r] || cc[j] != cat[r] || (isnan(want) ? !isnan(cp[j]) : cp[j] != want);
            here += row_matches(r);
        }
        CHECKF(wrong == 0, "partition %u: %zu of %zu items carry another row's attributes", p, wrong, n);
        matching += here;
        /* filtered search: only matching items, and never short of min(K, matching items) */
        vs_filter_spec_t spec;
        vs_filter_t cf;
        CHECK(vs_filter_spec_parse("market=3|5&price=..5", &spec, err) == VS_OK);
        CHECKF(vs_filter_compile(&spec, a, &cf, err) == VS_OK, "%s", err);
        vs_search_params_t sp = {.filter = &cf};
        if (vs_index_spec(idx)->type == VS_INDEX_IVF)
            sp.nprobe = 16;
        float dist[NQ * K];
        int64_t got[NQ * K];
        CHECKF(vs_index_search(idx, NQ, queries, K, &sp, 1, dist, got, err) == VS_OK, "%s", err);
        size_t bad = 0, shorts = 0;
        for (size_t i = 0; i < NQ * K; i++) {
            size_t r = got[i] >= 0 ? row_of(got[i]) : SIZE_MAX;
            bad += got[i] >= 0 && (r == SIZE_MAX || !row_matches(r));
            shorts += got[i] < 0 && i % K < here;
        }
        CHECKF(bad == 0 && shorts == 0, "partition %u: %zu results violate the filter, %zu missing", p, bad,
               shorts);
        vs_filter_spec_fini(&spec);
        free(pid);
        vs_index_destroy(idx);
    }
    CHECKF(total == N, "%zu items in the partitions", total);
    vs_manifest_fini(&m);
    return matching;
}

static size_t expected_matches(void)
{
    size_t c = 0;
    for (size_t r = 0; r < N; r++)
        c += row_matches(r);
    return c;
}

static void test_attrs_build(void)
{
    char err[VS_ERR_LEN];
    const size_t want = expected_matches();
    CHECKF(want > 100 && want < N / 4, "%zu matching rows", want);
    /* hash: 2 IVF partitions */
    vs_test_pathbuf_t h = vs_test_pathcopy(T, "attr-hash");
    vs_builder_opts_t o = opts(h.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.attrs = attr3;
    o.n_attrs = 3;
    vs_builder_result_t res;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK, "%s", err);
    vs_manifest_t m;
    destroy_parts(check_version(h.s, 2, &m), 2); /* ids, routing, files; a shard loads each partition */
    vs_manifest_fini(&m);
    CHECK(check_attrs(h.s, 2) == want);
    /* cluster: 3 partitions of whole lists (item order: list by list) */
    vs_test_pathbuf_t c = vs_test_pathcopy(T, "attr-cluster");
    o = opts(c.s, "IVF16,PQ4", 3, VS_PARTITION_CLUSTER);
    o.attrs = attr3;
    o.n_attrs = 3;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK, "%s", err);
    destroy_parts(check_version(c.s, 3, &m), 3);
    vs_manifest_fini(&m);
    CHECK(check_attrs(c.s, 3) == want);
    /* HNSW (item order: add order), two threads, one partition per pass */
    vs_test_pathbuf_t g = vs_test_pathcopy(T, "attr-hnsw");
    o = opts(g.s, "HNSW16", 2, VS_PARTITION_HASH);
    o.attrs = attr3;
    o.n_attrs = 3;
    o.n_threads = 2;
    o.memory_bytes = 1;
    o.target_recall = 0;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK, "%s", err);
    CHECK(res.n_passes == 2);
    CHECK(check_attrs(g.s, 2) == want);
    /* without --attr: no attributes anywhere */
    vs_test_pathbuf_t none = vs_test_pathcopy(T, "attr-none");
    o = opts(none.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    vs_index_t **parts = check_version(none.s, 2, &m);
    CHECK(m.n_attrs == 0 && parts[0] && vs_index_attrs(parts[0]) == NULL);
    destroy_parts(parts, 2);
    vs_manifest_fini(&m);
    rm_tree(h.s);
    rm_tree(c.s);
    rm_tree(g.s);
    rm_tree(none.s);
}

/* Byte-identical rebuilds with attributes (other chunk size, threads, passes); --resume keeps partitions
 * only while the attribute files are the same. */
static void test_attrs_rebuild(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t a = vs_test_pathcopy(T, "attr-idem-a"), b = vs_test_pathcopy(T, "attr-idem-b");
    vs_builder_opts_t o = opts(a.s, "IVF16,PQ8x4fs,RSQ8", 3, VS_PARTITION_HASH);
    o.attrs = attr3;
    o.n_attrs = 3;
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    vs_builder_opts_t o2 = o;
    o2.out_dir = b.s;
    o2.chunk_rows = N;
    o2.n_threads = 2;
    o2.memory_bytes = 1;
    CHECKF(vs_builder_run(&o2, NULL, err) == VS_OK, "%s", err);
    for (size_t f = 0; f < 5; f++)
        CHECKF(vs_test_same_file(vpath(a.s, files[f]), vpath(b.s, files[f])), "%s differs on a rebuild",
               files[f]);
    /* the same build resumed over the finished version: every partition kept, the same bytes */
    size_t len0 = 0, len1 = 0;
    unsigned char *p0 = vs_test_read_file(vpath(a.s, "part-0.vsidx"), &len0);
    vs_builder_result_t res;
    o.resume = 1;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 3, "%s", err);
    unsigned char *p1 = vs_test_read_file(vpath(a.s, "part-0.vsidx"), &len1);
    CHECK(p0 && p1 && len0 == len1 && memcmp(p0, p1, len0) == 0);
    free(p0);
    free(p1);
    /* other attribute content under the same path and name: not this build */
    vs_test_pathbuf_t m2 = vs_test_pathcopy(T, "market2.npy");
    int64_t *mk = malloc(N * sizeof *mk);
    memcpy(mk, market, N * sizeof *mk);
    mk[17] = 12345;
    CHECK(vs_vecio_write_npy(m2.s, VS_DTYPE_I64, N, 1, mk, err) == VS_OK);
    free(mk);
    vs_builder_attr_t other[3] = {{"market", m2.s}, {"price", price_path.s}, {"cat", cat_path.s}};
    o.attrs = other;
    CHECK(vs_builder_run(&o, &res, err) == VS_ERR_ALREADY_EXISTS && strstr(err, "same build"));
    CHECK(unlink(vpath(a.s, "manifest.json")) == 0); /* an unfinished build: nothing of it may be kept */
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 0 && res.partitions_built == 3,
           "%s", err);
    /* and back: the markers now name the other file, so the original attributes rebuild all again */
    CHECK(unlink(vpath(a.s, "manifest.json")) == 0);
    o.attrs = attr3;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 0 && res.partitions_built == 3,
           "%s", err);
    for (size_t f = 0; f < 5; f++)
        CHECKF(vs_test_same_file(vpath(a.s, files[f]), vpath(b.s, files[f])), "%s differs after a resume",
               files[f]);
    rm_tree(a.s);
    rm_tree(b.s);
}

static void test_attrs_refused(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t out = vs_test_pathcopy(T, "attr-bad");
    vs_test_pathbuf_t shortp = vs_test_pathcopy(T, "short.npy"), wide = vs_test_pathcopy(T, "wide.npy");
    vs_test_pathbuf_t u2 = vs_test_pathcopy(T, "u2.npy"), big = vs_test_pathcopy(T, "big.npy");
    CHECK(vs_vecio_write_npy(shortp.s, VS_DTYPE_I64, N - 1, 1, market, err) == VS_OK);
    CHECK(vs_vecio_write_npy(wide.s, VS_DTYPE_I64, N / 2, 2, market, err) == VS_OK);
    double *pd = malloc(N * sizeof *pd);
    memcpy(pd, price, N * sizeof *pd);
    pd[2024] = 1e300;
    CHECK(vs_vecio_write_npy(big.s, VS_DTYPE_F64, N, 1, pd, err) == VS_OK);
    free(pd);
    /* an unsigned 16-bit column (numpy '<u2'), written by hand */
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }", N);
    while ((hl + 11) % 64 != 0)
        hdr[hl++] = ' ';
    hdr[hl++] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
    uint16_t *u = calloc(N, sizeof *u);
    FILE *f = fopen(u2.s, "wb");
    CHECK(f && fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl &&
          fwrite(u, 2, N, f) == N);
    if (f)
        fclose(f);
    free(u);

    vs_builder_attr_t at[VS_ATTR_MAX_FIELDS + 1];
    vs_builder_opts_t o = opts(out.s, "IVF16,Flat", 2, VS_PARTITION_HASH);
    o.attrs = at;
    o.n_attrs = 1;
    at[0] = (vs_builder_attr_t){"market", shortp.s};
    refused(&o, VS_ERR_INVALID_ARGUMENT, "--attr market=");
    refused(&o, VS_ERR_INVALID_ARGUMENT, "holds 3999 values, base");
    at[0] = (vs_builder_attr_t){"market", u2.s};
    refused(&o, VS_ERR_UNSUPPORTED, "u2.npy: npy dtype '<u2' is not supported");
    at[0] = (vs_builder_attr_t){"market", wide.s};
    refused(&o, VS_ERR_INVALID_ARGUMENT, "wide.npy: rows of 2 values");
    at[0] = (vs_builder_attr_t){"price", big.s};
    refused(&o, VS_ERR_INVALID_ARGUMENT, "big.npy: row 2024: 1e+300 does not fit a float32");
    at[0] = (vs_builder_attr_t){"market", "/nonexistent/m.npy"};
    refused(&o, VS_ERR_NOT_FOUND, "--attr market: open /nonexistent/m.npy");
    at[0] = (vs_builder_attr_t){"Market", market_path.s};
    refused(&o, VS_ERR_INVALID_ARGUMENT, "--attr Market: not an attribute name");
    at[0] = (vs_builder_attr_t){"market", market_path.s};
    at[1] = (vs_builder_attr_t){"market", price_path.s};
    o.n_attrs = 2;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "--attr market is given twice");
    for (size_t i = 0; i <= VS_ATTR_MAX_FIELDS; i++)
        at[i] = (vs_builder_attr_t){"market", market_path.s};
    o.n_attrs = VS_ATTR_MAX_FIELDS + 1;
    refused(&o, VS_ERR_INVALID_ARGUMENT, "at most 16 --attr fields");
    rm_tree(out.s);
}

/* The exact filtered neighbours of query q among the base rows matching match(): rows best first (ties by
 * row), padded with -1. */
static void filtered_oracle(const float *q, int (*match)(size_t), int64_t *out)
{
    float bd[K];
    for (size_t j = 0; j < K; j++) {
        bd[j] = INFINITY;
        out[j] = -1;
    }
    for (size_t r = 0; r < N; r++) {
        if (!match(r))
            continue;
        float dd = vs_distance(VS_METRIC_L2, q, base + r * D, D);
        size_t j = K;
        while (j > 0 && (out[j - 1] < 0 || dd < bd[j - 1]))
            j--;
        if (j == K)
            continue;
        memmove(bd + j + 1, bd + j, (K - 1 - j) * sizeof *bd);
        memmove(out + j + 1, out + j, (K - 1 - j) * sizeof *out);
        bd[j] = dd;
        out[j] = (int64_t)r;
    }
}

static int row_cat9(size_t r)
{
    return cat[r] == 9;
}

/* vecshard-gt --attr --filter: the exact filtered ground truth (rows, or the items' ids with --ids), -1
 * past the last matching row; bad attribute files and filters are refused. */
static void test_gt_filtered(void)
{
    const char *bin = getenv("VS_BIN_DIR");
    char gt[1400];
    snprintf(gt, sizeof gt, "%s/vecshard-gt", bin ? bin : "");
    if (!bin || access(gt, X_OK) != 0) {
        fprintf(stderr, "test_gt_filtered: no vecshard-gt in VS_BIN_DIR, skipped\n");
        return;
    }
    char err[VS_ERR_LEN], cmd[16384];
    vs_test_pathbuf_t qp = vs_test_pathcopy(T, "queries.fvecs"), out = vs_test_pathcopy(T, "gt.ivecs");
    vs_test_pathbuf_t outn = vs_test_pathcopy(T, "gt.npy"), idn = vs_test_pathcopy(T, "gt-ids.npy");
    CHECK(vs_vecio_write_fvecs(qp.s, NQ, D, queries, err) == VS_OK);
    CHECK(vs_vecio_write_npy(idn.s, VS_DTYPE_I64, N, 1, ids, err) == VS_OK);
    const char *attrs = "--attr market=%s --attr price=%s --attr cat=%s";
    char aflags[4096];
    snprintf(aflags, sizeof aflags, attrs, market_path.s, price_path.s, cat_path.s);
    int64_t want[NQ * K], want_ids[NQ * K];
    for (size_t q = 0; q < NQ; q++)
        filtered_oracle(queries + q * D, row_matches, want + q * K);
    for (size_t i = 0; i < NQ * K; i++)
        want_ids[i] = want[i] >= 0 ? ids[want[i]] : -1;
    /* rows (.ivecs), checked by the tool itself too */
    snprintf(cmd, sizeof cmd,
             "%s --base %s --queries %s --k %d %s --filter 'market=3|5&price=..5' --check 5 --out %s --quiet "
             ">/dev/null",
             gt, base_path.s, qp.s, K, aflags, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    size_t n = 0;
    uint32_t d = 0;
    int32_t *rows = NULL;
    CHECKF(vs_vecfile_load_i32(out.s, &n, &d, &rows, err) == VS_OK && n == NQ && d == K, "%s", err);
    size_t bad = 0;
    for (size_t i = 0; rows && i < NQ * K; i++)
        bad += rows[i] != want[i];
    CHECKF(bad == 0, "vecshard-gt --filter: %zu of %d positions differ from the filtered oracle", bad,
           NQ * K);
    free(rows);
    /* the items' ids (.npy) */
    snprintf(cmd, sizeof cmd,
             "%s --base %s --queries %s --k %d --ids %s %s --filter 'market=3|5&price=..5' --out %s --quiet",
             gt, base_path.s, qp.s, K, idn.s, aflags, outn.s);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    vs_vecfile_t *vf = NULL;
    int64_t got[NQ * K];
    CHECKF(vs_vecfile_open(outn.s, &vf, err) == VS_OK && vs_vecfile_count(vf) == NQ &&
               vs_vecfile_dim(vf) == K && vs_vecfile_read_i64(vf, 0, NQ, got, err) == VS_OK,
           "%s", err);
    vs_vecfile_close(vf);
    bad = 0;
    for (size_t i = 0; i < NQ * K; i++)
        bad += got[i] != want_ids[i];
    CHECKF(bad == 0, "vecshard-gt --ids --filter: %zu of %d positions differ", bad, NQ * K);
    /* four matching rows: the rest of every answer is -1 */
    for (size_t q = 0; q < NQ; q++)
        filtered_oracle(queries + q * D, row_cat9, want + q * K);
    snprintf(cmd, sizeof cmd,
             "%s --base %s --queries %s --k %d %s --filter cat=9 --check 30 --out %s --quiet >/dev/null", gt,
             base_path.s, qp.s, K, aflags, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    rows = NULL;
    CHECK(vs_vecfile_load_i32(out.s, &n, &d, &rows, err) == VS_OK && n == NQ && d == K);
    bad = 0;
    for (size_t i = 0; rows && i < NQ * K; i++)
        bad += rows[i] != want[i] || (i % K >= 4) != (rows[i] == -1);
    CHECKF(bad == 0, "vecshard-gt --filter cat=9: %zu of %d positions differ", bad, NQ * K);
    free(rows);
    /* refused: a filter without attributes, an unknown field, a short column (exit 2 for flags, 1 for input)
     */
    snprintf(cmd, sizeof cmd, "%s --base %s --queries %s --filter cat=9 --out %s --quiet 2>/dev/null", gt,
             base_path.s, qp.s, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 2);
    snprintf(cmd, sizeof cmd, "%s --base %s --queries %s %s --filter color=1 --out %s --quiet 2>/dev/null",
             gt, base_path.s, qp.s, aflags, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 1);
    vs_test_pathbuf_t shortp = vs_test_pathcopy(T, "gt-short.npy");
    CHECK(vs_vecio_write_npy(shortp.s, VS_DTYPE_I64, N - 1, 1, market, err) == VS_OK);
    snprintf(cmd, sizeof cmd, "%s --base %s --queries %s --attr market=%s --out %s --quiet 2>&1", gt,
             base_path.s, qp.s, shortp.s, out.s);
    FILE *p = popen(cmd, "r");
    char text[2048] = "";
    size_t tn = p ? fread(text, 1, sizeof text - 1, p) : 0;
    text[tn] = 0;
    int rc = p ? pclose(p) : -1;
    CHECKF(WEXITSTATUS(rc) == 1 && strstr(text, "holds 3999 values for 4000 base rows"), "rc %d: %s", rc,
           text);
}

/* The CLI: --help names the FAISS factory strings; bad flags exit 2, a refused build exits 1. */
/* Runs the distributed build's stages in this process: TRAIN, ENCODE of every worker (last one first: the
 * order does not matter), MERGE. 0 when every stage succeeded. */
static int build_staged(vs_builder_opts_t o, uint32_t W, char err[VS_ERR_LEN])
{
    o.stage = VS_BUILD_TRAIN;
    if (vs_builder_run(&o, NULL, err) != VS_OK)
        return -1;
    o.n_workers = W;
    o.stage = VS_BUILD_ENCODE;
    for (uint32_t i = W; i-- > 0;) {
        o.worker = i;
        if (vs_builder_run(&o, NULL, err) != VS_OK)
            return -1;
    }
    o.stage = VS_BUILD_MERGE;
    return vs_builder_run(&o, NULL, err) == VS_OK ? 0 : -1;
}

/* Every file of version v1 in a equals b's (the markers name only the inputs: equal too). */
static size_t same_version_files(const char *a, const char *b, uint32_t P)
{
    size_t same = 0;
    const char *fixed[] = {"manifest.json", "centroids.fvecs", "tune-queries.fvecs", "tune-gt.ivecs"};
    for (size_t f = 0; f < 4; f++)
        same += exists(vpath(a, fixed[f])) ? vs_test_same_file(vpath(a, fixed[f]), vpath(b, fixed[f])) : 1;
    for (uint32_t p = 0; p < P; p++) {
        char file[2][32];
        snprintf(file[0], sizeof file[0], "part-%u.vsidx", p);
        snprintf(file[1], sizeof file[1], "part-%u.done", p);
        same += vs_test_same_file(vpath(a, file[0]), vpath(b, file[0])) &&
                vs_test_same_file(vpath(a, file[1]), vpath(b, file[1]));
    }
    return same;
}

/* The grouped assignment (8,192+ lists, vs_coarse_assign): the distributed build's workers and the one-process
 * build agree byte for byte with it too, --assign exact gives other files (the exact lists), and a worker
 * whose --assign differs from the trained state's is refused. 9,000 x 32-d uniform rows, IVF8192,PQ4x4fs. */
static void test_distributed_grouped(void)
{
    enum { GN = 9000, GD = 32 };
    char err[VS_ERR_LEN];
    float *gx = malloc((size_t)GN * GD * sizeof(float));
    uint64_t st = 21;
    for (size_t i = 0; i < (size_t)GN * GD; i++) /* uniform: many near ties, some vectors in a near list */
        gx[i] = vs_test_randf(&st);
    vs_test_pathbuf_t gbase = vs_test_pathcopy(T, "grouped.fvecs");
    CHECK(vs_vecio_write_fvecs(gbase.s, GN, GD, gx, err) == VS_OK);
    free(gx);
    vs_test_pathbuf_t one = vs_test_pathcopy(T, "g-one"), dist = vs_test_pathcopy(T, "g-dist"),
                      ex = vs_test_pathcopy(T, "g-exact");
    vs_builder_opts_t o = opts(one.s, "IVF8192,PQ4x4fs", 2, VS_PARTITION_HASH);
    o.base_path = gbase.s;
    o.ids_path = NULL;
    o.train_sample = GN;
    o.target_recall = 0;
    o.n_threads = 2;
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    o.out_dir = dist.s;
    o.n_threads = 1;
    CHECKF(build_staged(o, 3, err) == 0, "staged: %s", err);
    CHECKF(same_version_files(one.s, dist.s, 2) == 6, "grouped: %zu of 6 files equal the one-process build's",
           same_version_files(one.s, dist.s, 2));
    o.out_dir = ex.s;
    o.assign_exact = 1;
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    CHECK(!vs_test_same_file(vpath(one.s, "part-0.vsidx"), vpath(ex.s, "part-0.vsidx")));
    rm_tree(ex.s);
    /* a worker with the other --assign than TRAIN's */
    o.stage = VS_BUILD_TRAIN;
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    o.stage = VS_BUILD_ENCODE;
    o.n_workers = 2;
    o.assign_exact = 0;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_FAILED_PRECONDITION && strstr(err, "same flags"));
    rm_tree(one.s);
    rm_tree(dist.s);
    rm_tree(ex.s);
}

/* The distributed build (issue 20): TRAIN once, W workers each ENCODE a slice, MERGE; byte-identical to the
 * one-process build for hash and cluster partitioning, PQ fast-scan, PQ8, Flat codes, RFlat/RSQ8 refine,
 * attributes, L2/IP/cosine, any W (more workers than 256-row blocks: empty slices), any memory budget;
 * the three stages as real processes (vecshard-build --local-workers, and --stage with
 * $JOB_COMPLETION_INDEX); what is refused and what resume redoes. */
static void test_distributed(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t one = vs_test_pathcopy(T, "dist-one"), dist = vs_test_pathcopy(T, "dist");
    struct {
        const char *factory;
        vs_partitioning kind;
        vs_metric metric;
        int attrs;
        uint32_t W;
        size_t memory;
    } cases[] = {
        {"IVF16,PQ8x4fs,RSQ8", VS_PARTITION_HASH, VS_METRIC_L2, 1, 3, 0},
        {"IVF16,PQ8x4fs,RSQ8", VS_PARTITION_HASH, VS_METRIC_L2, 1, 20, 1}, /* empty slices; a pass each */
        {"IVF16,PQ4,RFlat", VS_PARTITION_CLUSTER, VS_METRIC_COSINE, 1, 4, 0},
        {"IVF16,Flat", VS_PARTITION_HASH, VS_METRIC_IP, 0, 1, 0},
        {"IVF32_HNSW8,PQ8x4fs", VS_PARTITION_CLUSTER, VS_METRIC_L2, 0, 5, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        vs_builder_opts_t o = opts(one.s, cases[c].factory, 3, cases[c].kind);
        o.metric = cases[c].metric;
        o.memory_bytes = cases[c].memory;
        o.target_recall = c == 0 ? 0.9 : 0; /* tuned once: search defaults in the manifest */
        if (cases[c].attrs) {
            o.attrs = attr3;
            o.n_attrs = 3;
        }
        CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
        o.out_dir = dist.s;
        CHECKF(build_staged(o, cases[c].W, err) == 0, "%s W=%u: %s", cases[c].factory, cases[c].W, err);
        size_t same = same_version_files(one.s, dist.s, 3);
        CHECKF(same == 7, "%s %s W=%u: %zu of 7 files equal the one-process build's", cases[c].factory,
               cases[c].kind == VS_PARTITION_HASH ? "hash" : "cluster", cases[c].W, same);
        /* the workers' files are gone; train.json stays */
        CHECK(exists(vpath(dist.s, ".build/train.json")) && !exists(vpath(dist.s, ".build/w0.vsidx")) &&
              !exists(vpath(dist.s, ".build/w0.lists")) && !exists(vpath(dist.s, ".build/trained.vsidx")));
        rm_tree(one.s);
        rm_tree(dist.s);
    }

    /* refusals, failures and resume, with the library */
    vs_builder_opts_t o = opts(dist.s, "IVF16,PQ8x4fs,RSQ8", 3, VS_PARTITION_HASH);
    vs_builder_result_t res;
    o.stage = VS_BUILD_ENCODE;
    o.n_workers = 3;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_FAILED_PRECONDITION && strstr(err, "--stage train"));
    o.stage = VS_BUILD_TRAIN;
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    o.stage = VS_BUILD_ENCODE;
    o.seed = 6; /* other options than TRAIN's */
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_FAILED_PRECONDITION && strstr(err, "same flags"));
    o.seed = 5;
    o.worker = 3;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "--worker 3"));
    o.worker = 0;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.rows_encoded == 1280, "%s (%zu rows)", err,
           res.rows_encoded); /* rows [0, 4000/3 rounded down to 256) */
    o.stage = VS_BUILD_MERGE;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_FAILED_PRECONDITION && strstr(err, "worker 1 of 3"));
    CHECK(!exists(vpath(dist.s, "manifest.json")));
    o.stage = VS_BUILD_ENCODE;
    for (o.worker = 1; o.worker < 3; o.worker++)
        CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    /* worker 1's part damaged on the shared storage: the merge refuses it; the resumed workers redo only it */
    FILE *f = fopen(vpath(dist.s, ".build/w1.vsidx"), "r+b");
    CHECK(f && fseek(f, 200, SEEK_SET) == 0 && fputc(0x5a, f) != EOF);
    if (f)
        fclose(f);
    o.stage = VS_BUILD_MERGE;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_CORRUPT && strstr(err, "w1.vsidx"));
    CHECK(!exists(vpath(dist.s, "manifest.json")));
    o.stage = VS_BUILD_ENCODE;
    o.resume = 1;
    size_t redone = 0;
    for (o.worker = 0; o.worker < 3; o.worker++) {
        CHECKF(vs_builder_run(&o, &res, err) == VS_OK, "%s", err);
        redone += res.rows_encoded > 0;
        CHECK((res.rows_encoded > 0) == (o.worker == 1));
    }
    CHECK(redone == 1);
    o.stage = VS_BUILD_MERGE;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_built == 3, "%s", err);
    vs_builder_opts_t a = opts(one.s, "IVF16,PQ8x4fs,RSQ8", 3, VS_PARTITION_HASH);
    CHECKF(vs_builder_run(&a, NULL, err) == VS_OK, "%s", err);
    CHECK(same_version_files(one.s, dist.s, 3) == 7);
    /* a finished version: any stage again is refused, or with --resume and the same inputs does nothing;
     * other inputs are refused even with --resume; the one-process --resume accepts it (same markers) */
    o.worker = 0;
    for (int stage = VS_BUILD_TRAIN; stage <= VS_BUILD_MERGE; stage++) {
        o.stage = (vs_builder_stage)stage;
        o.resume = 0;
        CHECKF(vs_builder_run(&o, NULL, err) == VS_ERR_ALREADY_EXISTS && strstr(err, "immutable"),
               "stage %d: %s", stage, err);
        o.resume = 1;
        CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.nothing_to_do, "stage %d: %s", stage, err);
    }
    o.seed = 6;
    CHECK(vs_builder_run(&o, NULL, err) == VS_ERR_ALREADY_EXISTS);
    o.seed = 5;
    o.stage = VS_BUILD_ALL;
    CHECKF(vs_builder_run(&o, &res, err) == VS_OK && res.partitions_resumed == 3, "%s", err);
    /* HNSW: a graph is built in one process */
    vs_builder_opts_t h = opts(dist.s, "HNSW8", 2, VS_PARTITION_HASH);
    h.version = "h";
    h.stage = VS_BUILD_TRAIN;
    CHECK(vs_builder_run(&h, NULL, err) == VS_ERR_UNSUPPORTED && strstr(err, "IVF"));
    rm_tree(dist.s);

    /* real processes: --local-workers 3, and the stages by hand with the Indexed Job's environment */
    const char *bin = getenv("VS_BIN_DIR");
    if (!bin) {
        fprintf(stderr, "test_distributed: VS_BIN_DIR not set, processes skipped\n");
        rm_tree(one.s);
        return;
    }
    static char cmd[32768], flags[8192];
    snprintf(flags, sizeof flags,
             "--base %s --ids %s --attr market=%s --factory IVF16,PQ8x4fs,RSQ8 --partitions 3 --out %s "
             "--version v1 --model-version model-7 --train-sample 3000 --seed 5 --build-time 1700000000 "
             "--target-recall 0 --quiet",
             base_path.s, ids_path.s, market_path.s, one.s);
    rm_tree(one.s);
    snprintf(cmd, sizeof cmd, "%s/vecshard-build %s >/dev/null", bin, flags);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    snprintf(flags, sizeof flags,
             "--base %s --ids %s --attr market=%s --factory IVF16,PQ8x4fs,RSQ8 --partitions 3 --out %s "
             "--version v1 --model-version model-7 --train-sample 3000 --seed 5 --build-time 1700000000 "
             "--target-recall 0 --quiet",
             base_path.s, ids_path.s, market_path.s, dist.s);
    snprintf(cmd, sizeof cmd, "%s/vecshard-build %s --local-workers 3 >/dev/null", bin, flags);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    CHECK(same_version_files(one.s, dist.s, 3) == 7);
    rm_tree(dist.s);
    /* exit 3 (try again later): a worker before the trained state, a merge before the workers */
    snprintf(cmd, sizeof cmd, "%s/vecshard-build %s --stage encode --worker 0 --workers 2 2>/dev/null", bin, flags);
    CHECK(WEXITSTATUS(system(cmd)) == 3);
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-build %s --stage train && %s/vecshard-build %s --stage merge --workers 2 2>/dev/null", bin,
             flags, bin, flags);
    CHECK(WEXITSTATUS(system(cmd)) == 3);
    snprintf(cmd, sizeof cmd,
             "set -e; b=%s/vecshard-build; $b %s --stage train; "
             "for i in 1 0; do JOB_COMPLETION_INDEX=$i $b %s --stage encode --workers 2; done; "
             "$b %s --stage merge --workers 2 >/dev/null",
             bin, flags, flags, flags);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    CHECK(same_version_files(one.s, dist.s, 3) == 7);
    snprintf(cmd, sizeof cmd, "%s/vecshard-build %s --stage encode 2>/dev/null", bin, flags);
    CHECK(WEXITSTATUS(system(cmd)) == 2); /* no --workers */
    rm_tree(dist.s);
    rm_tree(one.s);
}

static void test_cli(void)
{
    const char *bin = getenv("VS_BIN_DIR");
    if (!bin) {
        fprintf(stderr, "test_cli: VS_BIN_DIR not set, skipped\n");
        return;
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/vecshard-build --help", bin);
    FILE *p = popen(cmd, "r");
    char text[8192] = "";
    size_t n = p ? fread(text, 1, sizeof text - 1, p) : 0;
    text[n] = 0;
    CHECK(p && pclose(p) == 0);
    CHECK(strstr(text, "IVF1024,PQ32x4fs,RSQ8") && strstr(text, "--partitioning") &&
          strstr(text, "splitmix64"));
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-build --base %s --factory IVF16,Flat --out x --version v --partitions "
             "zz 2>/dev/null",
             bin, base_path.s);
    CHECK(WEXITSTATUS(system(cmd)) == 2);
    vs_test_pathbuf_t out = vs_test_pathcopy(T, "cli");
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-build --base %s --factory IVF16,Flat --out %s --version v1 --partitions 5000 --quiet "
        "2>/dev/null",
        bin, base_path.s, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 1);
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-build --base %s --ids %s --factory IVF16,Flat --out %s --version v1 --partitions 2 "
             "--threads 1 --quiet >/dev/null",
             bin, base_path.s, ids_path.s, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 0 && exists(vpath(out.s, "manifest.json")));
    rm_tree(out.s);
    /* --attr NAME=FILE, repeatable: the schema in the manifest; a flag without '=' exits 2 */
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-build --base %s --ids %s --attr market=%s --attr price=%s --factory IVF16,Flat --out "
        "%s --version v1 --partitions 2 --threads 1 --quiet >/dev/null",
        bin, base_path.s, ids_path.s, market_path.s, price_path.s, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 0);
    vs_manifest_t m;
    char err[VS_ERR_LEN];
    CHECKF(vs_manifest_load(vpath(out.s, "manifest.json"), &m, err) == VS_OK, "%s", err);
    CHECK(m.n_attrs == 2 && strcmp(m.attrs[0].name, "market") == 0 && m.attrs[0].type == VS_ATTR_INT &&
          strcmp(m.attrs[1].name, "price") == 0 && m.attrs[1].type == VS_ATTR_FLOAT);
    vs_manifest_fini(&m);
    rm_tree(out.s);
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-build --base %s --attr market --factory IVF16,Flat --out %s --version v1 2>/dev/null",
        bin, base_path.s, out.s);
    CHECK(WEXITSTATUS(system(cmd)) == 2);
}

int main(void)
{
    vs_test_tmpdir(T);
    vs_test_clustered(base, N, D, 32, 0.3f, 11, 12);
    vs_test_clustered(queries, NQ, D, 32, 0.3f, 11, 13);
    /* ids: 1000 + 7 * row; rows in file order, but the ids are a bijection the test can invert */
    for (size_t i = 0; i < N; i++)
        ids[i] = 1000 + 7 * (int64_t)i;
    base_path = vs_test_pathcopy(T, "base.fvecs");
    ids_path = vs_test_pathcopy(T, "ids.i64");
    char err[VS_ERR_LEN];
    for (size_t i = 0; i < N; i++) {
        market[i] = i % 50 == 7 ? VS_ATTR_NULL_INT : (int64_t)((i * 13) % 7);
        price[i] = i % 97 == 3 ? NAN : (double)(i % 101) / 10.0 + 1e-9 * (double)i;
        cat[i] = i % 100 == 0 && i >= 100 && i <= 400 ? 9 : (int32_t)(i % 3);
    }
    market_path = vs_test_pathcopy(T, "market.npy");
    price_path = vs_test_pathcopy(T, "price.npy");
    cat_path = vs_test_pathcopy(T, "cat.npy");
    if (vs_vecio_write_fvecs(base_path.s, N, D, base, err) != VS_OK ||
        vs_test_write_file(ids_path.s, ids, sizeof ids) ||
        vs_vecio_write_npy(market_path.s, VS_DTYPE_I64, N, 1, market, err) != VS_OK ||
        vs_vecio_write_npy(price_path.s, VS_DTYPE_F64, N, 1, price, err) != VS_OK ||
        vs_vecio_write_npy(cat_path.s, VS_DTYPE_I32, N, 1, cat, err) != VS_OK)
        return 1;
    RUN(test_hash_function);
    RUN(test_pack_lists);
    RUN(test_hash_build);
    RUN(test_cluster_build);
    RUN(test_idempotent_and_streaming);
    RUN(test_resume);
    RUN(test_formats);
    RUN(test_bad_inputs);
    RUN(test_attrs_build);
    RUN(test_attrs_rebuild);
    RUN(test_attrs_refused);
    RUN(test_gt_filtered);
    RUN(test_distributed);
    RUN(test_distributed_grouped);
    RUN(test_cli);
    rm_tree(vs_test_tmpdir(T));
    return vs_test_finish();
}
