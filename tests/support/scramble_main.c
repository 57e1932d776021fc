/* vecshard-test-scramble: makes the corrupt version of issue 16's example for tests: a copy of an IVF version
 * (RFlat refine: its exact vectors are re-added) whose coarse centroids are rotated by one list (list l's
 * centroid is list l+1's), every item kept in its list, and every file, CRC and content id consistent, so
 * no load-time check can tell: the shards serve it READY, and queries probe the wrong lists (recall drops
 * with zero errors). The canary gate (`vecshard activate --canary`) must refuse it.
 * usage: vecshard-test-scramble SRC_MANIFEST OUT_DIR VERSION   (writes OUT_DIR/VERSION/manifest.json) */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cluster/manifest.h"
#include "common/crc32c.h"
#include "common/vecio.h"
#include "shard/index/index.h"
#include "shard/index/ivf_internal.h"
#include "shard/server/shard.h"

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "vecshard-test-scramble: %s: %s\n", what, err);
    return 1;
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    int ok = a && b;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0)
        ok = fwrite(buf, 1, n, b) == n;
    if (a)
        fclose(a);
    if (b)
        ok = fclose(b) == 0 && ok;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s SRC_MANIFEST OUT_DIR VERSION\n", argv[0]);
        return 2;
    }
    char err[VS_ERR_LEN] = "", dir[PATH_MAX], path[PATH_MAX + 64];
    vs_manifest_t m;
    if (vs_manifest_load(argv[1], &m, err) != VS_OK)
        return fail(argv[1], err);
    snprintf(dir, sizeof dir, "%s/%s", argv[2], argv[3]);
    mkdir(argv[2], 0755);
    mkdir(dir, 0755);
    float *cent = NULL;
    char trained[17] = "";
    for (uint32_t p = 0; p < m.n_partitions; p++) {
        vs_index_t *src = NULL, *dst = NULL;
        if (vs_shard_open_partition(&m, p, 0, 0, &src, err) != VS_OK)
            return fail("open", err);
        const vs_ivf_t *ivf = vs_index_impl_ivf(src);
        if (!ivf || ivf->spec.refine != VS_REFINE_FLAT)
            return fail("source", "an IVF version with an RFlat refine is needed");
        if (vs_index_clone_empty(src, &dst, err) != VS_OK)
            return fail("clone", err);
        vs_ivf_t *out = (vs_ivf_t *)vs_index_impl_ivf(dst);
        const uint32_t d = ivf->d, nl = ivf->nlist;
        for (uint32_t l = 0; l < nl; l++) /* the rotation */
            memcpy(out->centroids + (size_t)l * d, ivf->centroids + (size_t)((l + 1) % nl) * d,
                   d * sizeof(float));
        if (!cent && (cent = malloc((size_t)nl * d * sizeof *cent)))
            memcpy(cent, out->centroids, (size_t)nl * d * sizeof *cent);
        for (uint32_t l = 0; l < nl; l++) { /* every item back into its own list */
            const ivf_list_t *L = &ivf->lists[l];
            if (!L->n)
                continue;
            int32_t *lists = malloc(L->n * sizeof *lists);
            for (size_t i = 0; lists && i < L->n; i++)
                lists[i] = (int32_t)l;
            vs_status st =
                lists ? vs_index_add_lists(dst, L->n, (const float *)L->refine, L->ids, lists, 1, NULL, err)
                      : VS_ERR_NOMEM;
            free(lists);
            if (st != VS_OK)
                return fail("add", err);
        }
        snprintf(path, sizeof path, "%s/part-%u.vsidx", dir, p);
        if (vs_index_save(dst, path, m.model_version, 1700000000, err) != VS_OK)
            return fail("save", err);
        vs_index_destroy(dst);
        vs_index_destroy(src);
        /* the manifest entry of the new file: name, size, CRC32C, content id */
        vs_manifest_partition_t *mp = &m.partitions[p];
        snprintf(mp->file, sizeof mp->file, "part-%u.vsidx", p);
        if (vs_file_crc32c(path, &mp->size_bytes, &mp->crc32c, err) != VS_OK)
            return fail("crc", err);
        mp->has_crc32c = 1;
        vs_index_t *back = NULL;
        if (vs_index_load(path, &back, err) != VS_OK)
            return fail("reload", err);
        vs_index_ids(back, mp->content_id, trained, NULL); /* the manifest's, once every source is read */
        vs_index_destroy(back);
    }
    if (!cent)
        return fail("centroids", "out of memory");
    memcpy(m.trained_state_id, trained, sizeof trained);
    snprintf(path, sizeof path, "%s/centroids.fvecs", dir);
    if (vs_vecio_write_fvecs(path, m.nlist, m.dim, cent, err) != VS_OK)
        return fail("centroids", err);
    snprintf(m.centroids_file, sizeof m.centroids_file, "centroids.fvecs");
    uint64_t size;
    if (vs_file_crc32c(path, &size, &m.centroids_crc32c, err) != VS_OK)
        return fail("crc", err);
    m.has_centroids_crc32c = 1;
    m.centroids_data_crc32c = vs_crc32c(0, cent, (size_t)m.nlist * m.dim * sizeof(float));
    m.has_centroids_data_crc32c = 1;
    free(cent);
    static const char *const keep[] = {"tune-queries.fvecs", "tune-gt.ivecs"};
    for (size_t i = 0; i < 2; i++) { /* the version's stored query set, as the builder left it */
        char from[PATH_MAX], to[PATH_MAX + 64];
        if (vs_manifest_path(&m, keep[i], from, err) == VS_OK) {
            snprintf(to, sizeof to, "%s/%s", dir, keep[i]);
            (void)copy_file(from, to);
        }
    }
    snprintf(m.version, sizeof m.version, "%s", argv[3]);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (vs_manifest_write(path, &m, err) != VS_OK)
        return fail("manifest", err);
    vs_manifest_fini(&m);
    printf("%s\n", path);
    return 0;
}
