/* test_refine_disk: the disk tier's refine reads (issue 20; shard/index/refine_disk.h). An IVF index with a
 * refine section, saved and loaded with refine_on_disk, answers every query exactly as the same file
 * loaded into memory (RFlat and RSQ8, L2 and inner product, 16-d items sharing 4 KiB blocks and 256-d
 * items straddling them, one thread and two), reading each query's candidates in one batch: one fetch per
 * query, fewer reads than candidates where they share blocks, none when there is nothing to refine. The
 * load does not read the refine section: a flipped byte in it is found by vs_index_verify_lazy (the
 * scrub), not at load, while one in another section still fails the load. Filtered searches over the
 * matching items (exact, and the nearest lists holding one) read them with fetches too, with the same
 * answers. vs_refine_disk_fetch itself:
 * items in any order and repeated give their own bytes; an item past the section is refused. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/filter.h"
#include "shard/index/attrs.h"
#include "shard/index/ifile.h"
#include "shard/index/index.h"
#include "shard/index/refine_disk.h"
#include "tests/testlib.h"

#define N 6000
#define NQ 50
#define K 10
#define T "refine_disk"

static float base[N * 256], queries[NQ * 256];

static vs_index_t *build(uint32_t d, const char *factory, vs_metric metric)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    if (vs_index_create(d, metric, factory, &idx, err) != VS_OK)
        return NULL;
    CHECK(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK);
    CHECKF(vs_index_add(idx, N, base, NULL, 1, NULL, err) == VS_OK, "%s", err);
    return idx;
}

static void search(const vs_index_t *idx, size_t threads, float *dist, int64_t *ids)
{
    char err[VS_ERR_LEN];
    vs_search_params_t p = {.nprobe = 8, .k_factor = 4};
    CHECKF(vs_index_search(idx, NQ, queries, K, &p, threads, dist, ids, err) == VS_OK, "%s", err);
}

/* Flips one byte of path at offset. */
static void flip(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b = 0;
    CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1);
    b ^= 0x40;
    CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
    if (fd >= 0)
        close(fd);
}

/* An attribute "cat" = id % 97 for the items of idx (ids are the rows), attached to it. */
static void attach_cat(vs_index_t *idx)
{
    static const vs_attr_field_t fields[1] = {{"cat", VS_ATTR_INT}};
    char err[VS_ERR_LEN];
    size_t n = vs_index_count(idx);
    int64_t *ids = malloc(n * sizeof *ids);
    vs_attrs_t *a = NULL;
    vs_index_ids_in_order(idx, ids);
    CHECK(vs_attrs_create(fields, 1, n, &a, err) == VS_OK);
    int64_t *cat = vs_attrs_column_mut(a, 0);
    for (size_t j = 0; j < n; j++)
        cat[j] = ids[j] % 97;
    CHECK(vs_attrs_prepare(a, err) == VS_OK);
    CHECKF(vs_index_set_attrs(idx, a, err) == VS_OK, "%s", err);
    free(ids);
}

/* Filtered searches (matching items only: exact over them, and the nearest lists holding one) give the
 * same answers from disk as from memory, and read the matching items' refine copies with fetches, not
 * through the mapping. */
static void filtered(vs_index_t *mem, vs_index_t *disk, const char *factory)
{
    char err[VS_ERR_LEN];
    attach_cat(mem);
    attach_cat(disk);
    /* exact: 62 and ~2,470 matching items (several batches of 512); the nearest lists: 62 and 124 items,
     * both within VS_FILTER_SELECTIVE_SHARE (3 %), so the search visits matching items only */
    static const char *const texts[2][2] = {{"cat=3", "cat=1|2"}, {"cat=3", "cat=1..40"}};
    static const int64_t lo[2][2] = {{3, 1}, {3, 1}}, hi[2][2] = {{3, 2}, {3, 40}};
    for (int exact = 0; exact < 2; exact++)
        for (size_t t = 0; t < 2; t++) {
            vs_filter_spec_t spec;
            vs_filter_t fm, fd;
            CHECK(vs_filter_spec_parse(texts[exact][t], &spec, err) == VS_OK);
            CHECK(vs_filter_compile(&spec, vs_index_attrs(mem), &fm, err) == VS_OK);
            CHECK(vs_filter_compile(&spec, vs_index_attrs(disk), &fd, err) == VS_OK);
            /* filter_exact_threshold: every matching item (exact) or a tiny share (the nearest lists) */
            vs_search_params_t pm = {.nprobe = 8, .k_factor = 4, .filter = &fm, .filter_exact = exact ? 1.0f : 1e-6f};
            vs_search_params_t pd = pm;
            pd.filter = &fd;
            static float dm[NQ * K], dd[NQ * K];
            static int64_t im[NQ * K], id[NQ * K];
            vs_refine_disk_stats_t s0, s1;
            vs_index_refine_disk_stats(disk, &s0);
            CHECKF(vs_index_search(mem, NQ, queries, K, &pm, 1, dm, im, err) == VS_OK, "%s", err);
            CHECKF(vs_index_search(disk, NQ, queries, K, &pd, 1, dd, id, err) == VS_OK, "%s", err);
            vs_index_refine_disk_stats(disk, &s1);
            CHECKF(memcmp(im, id, sizeof im) == 0 && memcmp(dm, dd, sizeof dm) == 0,
                   "%s filter %s (%s): answers from disk differ from memory", factory, texts[exact][t],
                   exact ? "exact" : "nearest lists");
            size_t answered = 0;
            for (size_t i = 0; i < NQ * K; i++)
                answered += id[i] >= 0 && id[i] % 97 >= lo[exact][t] && id[i] % 97 <= hi[exact][t];
            CHECKF(answered == NQ * K, "%zu of %d answers match %s", answered, NQ * K, texts[exact][t]);
            CHECKF(s1.fetches >= s0.fetches + NQ && s1.items > s0.items && s1.errors == s0.errors,
                   "%s filter %s: %llu fetches", factory, texts[exact][t],
                   (unsigned long long)(s1.fetches - s0.fetches));
            /* exact: every matching item of every query came through the disk reader (>= 61 per query) */
            CHECKF(!exact || s1.items - s0.items >= (uint64_t)NQ * 61, "%s filter %s: %llu items read", factory,
                   texts[exact][t], (unsigned long long)(s1.items - s0.items));
            vs_filter_spec_fini(&spec);
        }
}

static void one_case(uint32_t d, const char *factory, vs_metric metric, const char *tag)
{
    char err[VS_ERR_LEN];
    vs_test_clustered(base, N, d, 40, 0.3f, 7, 8);
    vs_test_clustered(queries, NQ, d, 40, 0.3f, 7, 9);
    vs_index_t *built = build(d, factory, metric);
    CHECK(built != NULL);
    if (!built)
        return;
    vs_test_pathbuf_t path = vs_test_pathcopy(T, "part.vsidx");
    CHECKF(vs_index_save(built, path.s, "", 1, err) == VS_OK, "%s", err);
    vs_index_destroy(built);

    vs_index_t *mem = NULL, *disk = NULL;
    vs_index_load_opts_t o = {.refine_on_disk = 1};
    CHECKF(vs_index_load(path.s, &mem, err) == VS_OK, "%s", err);
    CHECKF(vs_index_load_opts(path.s, &o, &disk, err) == VS_OK, "%s", err);
    if (!mem || !disk) {
        vs_index_destroy(mem);
        vs_index_destroy(disk);
        return;
    }
    static float dm[NQ * K], dd[NQ * K], dd2[NQ * K];
    static int64_t im[NQ * K], id[NQ * K], id2[NQ * K];
    search(mem, 1, dm, im);
    search(disk, 1, dd, id);
    search(disk, 2, dd2, id2);
    CHECKF(memcmp(im, id, sizeof im) == 0 && memcmp(dm, dd, sizeof dm) == 0,
           "%s d=%u: answers from disk differ from memory", factory, d);
    CHECKF(memcmp(im, id2, sizeof im) == 0 && memcmp(dm, dd2, sizeof dm) == 0,
           "%s d=%u: answers from disk on 2 threads differ", factory, d);
    vs_refine_disk_stats_t st;
    CHECK(!vs_index_refine_disk_stats(mem, &st));
    CHECK(vs_index_refine_disk_stats(disk, &st) == 1);
    printf("  %s %u-d: %llu fetches, %llu candidates, %llu reads (%llu KiB), %s, %s, %.2f ms per fetch\n",
           factory, d, (unsigned long long)st.fetches, (unsigned long long)st.items,
           (unsigned long long)st.reads, (unsigned long long)(st.bytes >> 10), st.uring ? "io_uring" : "pread",
           st.direct ? "O_DIRECT" : "page cache", st.fetches ? 1e3 * st.read_seconds / (double)st.fetches : 0.0);
    CHECK(st.fetches == 2 * NQ && st.errors == 0);
    /* the test directory is on the build's file system (ext4 here): io_uring and O_DIRECT are in use, not
     * their fallbacks */
    CHECK(st.uring && st.direct);
    /* an index whose refine vectors are on disk takes no added vectors (items are located by position) */
    CHECK(vs_index_add(disk, 1, queries, NULL, 1, NULL, err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(st.items >= 2 * NQ * K && st.items <= 2 * NQ * K * 4);
    CHECK(st.reads > 0 && st.reads <= st.items);
    if (d * 4 <= 64) /* 16 floats: 64 items per 4 KiB block, candidates of a list share blocks */
        CHECKF(st.reads < st.items, "%llu reads for %llu items", (unsigned long long)st.reads,
               (unsigned long long)st.items);
    filtered(mem, disk, factory);
    /* the whole file verifies; the lazy section was not needed to load */
    CHECKF(vs_index_verify_lazy(disk, 0, NULL, err) == VS_OK, "%s", err);
    vs_index_destroy(mem);
    vs_index_destroy(disk);

    /* a flipped byte in the refine section: the memory load refuses the file, the disk load does not read
     * it, its scrub finds it */
    vs_ifile_t *f = NULL;
    uint64_t off = 0, len = 0;
    CHECK(vs_ifile_open(path.s, &f, err) == VS_OK && vs_ifile_section_span(f, tag, &off, &len, err) == VS_OK);
    vs_ifile_close(f);
    flip(path.s, off + len / 2);
    CHECK(vs_index_load(path.s, &mem, err) == VS_ERR_CORRUPT && strstr(err, tag));
    CHECKF(vs_index_load_opts(path.s, &o, &disk, err) == VS_OK, "%s", err);
    if (disk) {
        CHECKF(vs_index_verify_lazy(disk, 0, NULL, err) == VS_ERR_CORRUPT && strstr(err, tag), "%s", err);
        volatile int stop = 1;
        CHECK(vs_index_verify_lazy(disk, 0, &stop, err) == VS_ERR_CANCELLED);
        vs_index_destroy(disk);
    }
    flip(path.s, off + len / 2); /* back */
    /* a flipped byte elsewhere (the ids) still fails a disk load */
    CHECK(vs_ifile_open(path.s, &f, err) == VS_OK && vs_ifile_section_span(f, "ivf.ids", &off, &len, err) == VS_OK);
    vs_ifile_close(f);
    flip(path.s, off + 3);
    CHECK(vs_index_load_opts(path.s, &o, &disk, err) == VS_ERR_CORRUPT && strstr(err, "ivf.ids"));
    unlink(path.s);
}

/* The reader alone: items in any order and repeated, against the bytes of the file. */
static void test_fetch(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t path = vs_test_pathcopy(T, "raw.bin");
    enum { ITEMS = 5000, IB = 100, OFF = 1000 };
    unsigned char *data = malloc(OFF + (size_t)ITEMS * IB);
    for (size_t i = 0; i < OFF + (size_t)ITEMS * IB; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK(vs_test_write_file(path.s, data, OFF + (size_t)ITEMS * IB) == 0);
    vs_refine_disk_t *r = NULL;
    CHECKF(vs_refine_disk_open(path.s, OFF, (uint64_t)ITEMS * IB, IB, &r, err) == VS_OK, "%s", err);
    uint64_t items[300];
    const uint8_t *got[300];
    for (size_t i = 0; i < 300; i++)
        items[i] = (i * 7919u + (i % 3 ? 0 : 11)) % ITEMS; /* scattered, some repeated */
    items[5] = items[4];
    items[299] = ITEMS - 1; /* the last item: its block runs past the end of the file */
    CHECK(r && vs_refine_disk_fetch(r, items, 300, got) == 0);
    size_t same = 0;
    for (size_t i = 0; r && i < 300; i++)
        same += memcmp(got[i], data + OFF + items[i] * IB, IB) == 0;
    CHECKF(same == 300, "%zu of 300 items read back", same);
    items[0] = ITEMS; /* past the section */
    CHECK(r && vs_refine_disk_fetch(r, items, 1, got) == -1);
    vs_refine_disk_stats_t st;
    if (r) {
        vs_refine_disk_get_stats(r, &st);
        CHECK(st.errors == 1 && st.fetches == 2);
    }
    vs_refine_disk_close(r);
    free(data);
    unlink(path.s);
}

static void test_indexes(void)
{
    one_case(16, "IVF32,PQ8x4fs,RFlat", VS_METRIC_L2, "refine.flat");
    one_case(16, "IVF32,PQ4,RSQ8", VS_METRIC_IP, "refine.sq8");
    one_case(256, "IVF32,PQ32x4fs,RFlat", VS_METRIC_L2, "refine.flat");
}

int main(void)
{
    vs_test_tmpdir(T);
    RUN(test_fetch);
    RUN(test_indexes);
    return vs_test_finish();
}
