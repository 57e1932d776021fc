/* builder.c: see builder.h. One build is a build_t that each step fills in; every step returns a
 * vs_status and vs_builder_run frees everything at one exit. */
#include "shard/builder/builder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/crc32c.h"
#include "common/topk.h"
#include "shard/index/flat.h"
#include "common/ids.h"
#include "shard/builder/tune.h"
#include "common/kmeans.h"
#include "common/hash.h"
#include "common/parallel.h"
#include "common/vecio.h"
#include "shard/index/attrs.h"
#include "shard/index/coarse.h"
#include "shard/index/index.h"
#include "shard/index/ivf.h"
#include "common/cluster/manifest.h"

#define MARKER_FORMAT "vecshard-build-done/1"
#define TRAIN_FORMAT "vecshard-build-trained/1"
#define WORKER_FORMAT "vecshard-build-worker/1"
#define WORK_DIR ".build"

/* ---- list packing -------------------------------------------------------------------------------- */

size_t vs_builder_default_train_sample(uint32_t nlist, size_t n)
{
    size_t want = (size_t)256 * nlist > 100000 ? (size_t)256 * nlist : 100000;
    return want < n ? want : n;
}

static const uint64_t *sort_sizes;

static int by_size_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (sort_sizes[x] != sort_sizes[y])
        return sort_sizes[x] > sort_sizes[y] ? -1 : 1;
    return (x > y) - (x < y);
}

void vs_builder_pack_lists(const uint64_t *sizes, uint32_t nlist, uint32_t n_partitions,
                           uint32_t *out_partition)
{
    uint32_t *order = malloc(nlist * sizeof *order);
    uint64_t *load = calloc(n_partitions, sizeof *load);
    uint32_t *count = calloc(n_partitions, sizeof *count);
    if (!order || !load || !count) { /* degrade to round robin rather than fail: still a valid packing */
        for (uint32_t l = 0; l < nlist; l++)
            out_partition[l] = l % n_partitions;
        free(order);
        free(load);
        free(count);
        return;
    }
    for (uint32_t l = 0; l < nlist; l++)
        order[l] = l;
    sort_sizes = sizes; /* qsort has no context argument in C11 */
    qsort(order, nlist, sizeof *order, by_size_desc);
    sort_sizes = NULL;
    /* O(nlist * P): at most 2^20 * 4096 in theory; P is small next to nlist in practice */
    for (uint32_t i = 0; i < nlist; i++) {
        uint32_t best = 0;
        for (uint32_t p = 1; p < n_partitions; p++)
            if (load[p] < load[best] || (load[p] == load[best] && count[p] < count[best]))
                best = p;
        out_partition[order[i]] = best;
        load[best] += sizes[order[i]];
        count[best]++;
    }
    free(order);
    free(load);
    free(count);
}

static const double *sort_keys; /* regret, for by_regret_desc */

static int by_regret_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (sort_keys[x] != sort_keys[y])
        return sort_keys[x] > sort_keys[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Why a list of size s always fits under cap = floor(n/P) + maxsize: if it fitted nowhere, every region
 * would hold at least cap - s + 1 vectors, P (floor(n/P) + maxsize - s + 1) > n - s in all, more than
 * everything placed before it. */
void vs_builder_pack_lists_near(const uint64_t *sizes, const float *centroids, uint32_t nlist, uint32_t d,
                                uint32_t n_partitions, uint64_t seed, uint32_t *out_partition)
{
    const uint32_t P = n_partitions;
    float *regions = malloc((size_t)P * d * sizeof(float));
    float *dist = malloc((size_t)nlist * P * sizeof(float));
    double *regret = malloc(nlist * sizeof(double));
    uint32_t *order = malloc(nlist * sizeof(uint32_t));
    uint64_t *load = calloc(P, sizeof(uint64_t));
    uint32_t *count = calloc(P, sizeof(uint32_t));
    vs_kmeans_params_t kp = {
        .k = P, .n_iter = 25, .max_points_per_centroid = 1u << 20, .seed = seed, .n_threads = 1};
    char err[VS_ERR_LEN];
    if (P < 2 || !regions || !dist || !regret || !order || !load || !count ||
        vs_kmeans_train(centroids, nlist, d, &kp, regions, NULL, NULL, err) != VS_OK) {
        vs_builder_pack_lists(sizes, nlist, P, out_partition);
        goto done;
    }
    uint64_t total = 0, maxsize = 0;
    for (uint32_t l = 0; l < nlist; l++) {
        total += sizes[l];
        maxsize = sizes[l] > maxsize ? sizes[l] : maxsize;
        vs_distance_batch(VS_METRIC_L2, centroids + (size_t)l * d, regions, P, d, dist + (size_t)l * P);
        float b1 = INFINITY, b2 = INFINITY;
        for (uint32_t p = 0; p < P; p++) {
            float x = dist[(size_t)l * P + p];
            if (x < b1) {
                b2 = b1;
                b1 = x;
            } else if (x < b2) {
                b2 = x;
            }
        }
        regret[l] = (double)b2 - (double)b1;
        order[l] = l;
    }
    sort_keys = regret;
    qsort(order, nlist, sizeof *order, by_regret_desc);
    sort_keys = NULL;
    const uint64_t cap = total / P + maxsize;
    for (uint32_t i = 0; i < nlist; i++) {
        uint32_t l = order[i], best = UINT32_MAX;
        for (uint32_t p = 0; p < P; p++)
            if (load[p] + sizes[l] <= cap &&
                (best == UINT32_MAX || dist[(size_t)l * P + p] < dist[(size_t)l * P + best]))
                best = p;
        if (best == UINT32_MAX) /* cannot happen (see above); stay correct anyway */
            for (uint32_t p = best = 0; p < P; p++)
                if (load[p] < load[best])
                    best = p;
        out_partition[l] = best;
        load[best] += sizes[l];
        count[best]++;
    }
    /* a region that got no list takes the smallest list of the partition with the most lists */
    for (uint32_t p = 0; p < P; p++) {
        if (count[p])
            continue;
        uint32_t from = 0;
        for (uint32_t q = 1; q < P; q++)
            if (count[q] > count[from])
                from = q;
        uint32_t pick = UINT32_MAX;
        for (uint32_t l = 0; l < nlist; l++)
            if (out_partition[l] == from && (pick == UINT32_MAX || sizes[l] < sizes[pick]))
                pick = l;
        out_partition[pick] = p;
        load[from] -= sizes[pick];
        load[p] += sizes[pick];
        count[from]--;
        count[p]++;
    }
done:
    free(regions);
    free(dist);
    free(regret);
    free(order);
    free(load);
    free(count);
}

/* ---- the build ----------------------------------------------------------------------------------- */

typedef struct partition {
    uint64_t n_vectors;  /* routed here */
    uint64_t size_bytes; /* of the saved file */
    uint32_t crc32c;
    int done; /* saved (this run or resumed) */
    vs_index_t *idx;
    size_t *rows; /* with attributes, while encoded: the base row of every vector added, in add order */
    size_t n_rows;
} partition_t;

typedef struct build {
    const vs_builder_opts_t *o;
    const vs_builder_progress_t *pr;
    vs_factory_spec_t spec;
    char factory[64]; /* canonical */
    vs_vecfile_t *vf;
    vs_ids_file_t ids;
    int has_ids;
    size_t n, chunk, n_threads, n_train; /* n_train: rows to sample (0 = no training) */
    uint32_t d, P;
    char dir[PATH_MAX];
    vs_index_t *trained;
    float *sample;
    size_t n_sample;
    int32_t *lists;       /* IVF: n list ids */
    uint32_t *list_part;  /* cluster: nlist partitions */
    uint64_t *list_sizes; /* IVF: nlist */
    partition_t *parts;   /* P */
    vs_attrs_t *attrs;    /* the attribute columns in base row order, or NULL */
    vs_attr_field_t attr_fields[VS_ATTR_MAX_FIELDS];
    size_t n_attr_fields;
    /* what a done marker must match */
    char fingerprint[2 * PATH_MAX + 1024 + VS_ATTR_MAX_FIELDS * (VS_ATTR_NAME_MAX + 64)];
    uint32_t trained_crc;
    uint32_t passes, built, resumed;
    size_t rows_encoded; /* ENCODE */
    int nothing_to_do;   /* a distributed stage on a finished version (resume) */
} build_t;

static void note(const build_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const build_t *b, const char *fmt, ...)
{
    if (!b->pr || !b->pr->note)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    b->pr->note(b->pr->ctx, line);
}

static void stage_begin(const build_t *b, const char *what, size_t total)
{
    if (b->pr && b->pr->begin)
        b->pr->begin(b->pr->ctx, what, total);
}

static void stage_update(const build_t *b, size_t done, size_t total)
{
    if (b->pr && b->pr->update)
        b->pr->update(b->pr->ctx, done, total);
}

static void stage_end(const build_t *b, size_t total)
{
    if (b->pr && b->pr->end)
        b->pr->end(b->pr->ctx, total);
}

static int64_t row_id(const build_t *b, size_t row)
{
    return b->has_ids ? vs_ids_file_get(&b->ids, row) : (int64_t)row;
}

static uint32_t row_partition(const build_t *b, size_t row)
{
    if (b->o->partitioning == VS_PARTITION_CLUSTER)
        return b->list_part[b->lists[row]];
    return vs_hash_partition(row_id(b, row), b->P);
}

/* Checks rows [row0, row0 + m) of x: finite, norms in range. */
static vs_status check_rows(const build_t *b, const float *x, size_t row0, size_t m, char *err)
{
    char e[VS_ERR_LEN];
    for (size_t i = 0; i < m; i++)
        if (vs_check_finite(x + i * b->d, 1, b->d, "row", e) != VS_OK) /* "row 0 has ..." */
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s row %zu%s", b->o->base_path, row0 + i,
                           strncmp(e, "row 0", 5) == 0 ? e + 5 : e);
    return VS_OK;
}

static vs_status path_in_dir(const build_t *b, const char *name, char out[PATH_MAX], char *err)
{
    if (snprintf(out, PATH_MAX, "%s/%s", b->dir, name) >= PATH_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s/%s: path too long", b->dir, name);
    return VS_OK;
}

static vs_status make_dir(const char *path, char *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return vs_errf(err, VS_ERR_IO, "mkdir %s: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return vs_errf(err, VS_ERR_IO, "%s is not a directory", path);
    return VS_OK;
}

/* Step 1, attributes: names checked, every column opened and checked (one value per base row), then
 * read whole into b->attrs in row order. */
static vs_status load_attrs(build_t *b, char *err)
{
    const vs_builder_opts_t *o = b->o;
    if (o->n_attrs == 0)
        return VS_OK;
    if (!o->attrs)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu attributes but no attrs[]", o->n_attrs);
    if (o->n_attrs > VS_ATTR_MAX_FIELDS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu attributes: at most %d --attr fields", o->n_attrs,
                       VS_ATTR_MAX_FIELDS);
    vs_vecfile_t *vf[VS_ATTR_MAX_FIELDS] = {0};
    vs_status st = VS_OK;
    for (size_t i = 0; i < o->n_attrs && st == VS_OK; i++) {
        const vs_builder_attr_t *a = &o->attrs[i];
        char e[VS_ERR_LEN];
        if (!a->name || !a->path || !vs_attr_name_valid(a->name)) {
            st =
                vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                        "--attr %.64s: not an attribute name (1..%d characters of [a-z0-9_], starting with a "
                        "letter)",
                        a->name ? a->name : "(null)", VS_ATTR_NAME_MAX);
            break;
        }
        for (size_t j = 0; j < i && st == VS_OK; j++)
            if (strcmp(o->attrs[j].name, a->name) == 0)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--attr %s is given twice", a->name);
        if (st == VS_OK && (st = vs_vecfile_open_column(a->path, &vf[i], e)) != VS_OK)
            vs_errf(err, st, "--attr %s: %s", a->name, e);
        if (st != VS_OK)
            break;
        vs_vecio_dtype t = vs_vecfile_dtype(vf[i]);
        snprintf(b->attr_fields[i].name, sizeof b->attr_fields[i].name, "%s", a->name);
        b->attr_fields[i].type = t == VS_DTYPE_F32 || t == VS_DTYPE_F64 ? VS_ATTR_FLOAT : VS_ATTR_INT;
        if (vs_vecfile_count(vf[i]) != b->n)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                         "--attr %s=%s holds %zu values, base %s has %zu vectors", a->name, a->path,
                         vs_vecfile_count(vf[i]), o->base_path, b->n);
    }
    if (st == VS_OK)
        st = vs_attrs_create(b->attr_fields, o->n_attrs, b->n, &b->attrs, err);
    for (size_t j = 0; st == VS_OK && j < o->n_attrs; j++) {
        char e[VS_ERR_LEN];
        void *col = vs_attrs_column_mut(b->attrs, j);
        st = b->attr_fields[j].type == VS_ATTR_INT ? vs_vecfile_read_i64(vf[j], 0, b->n, col, e)
                                                   : vs_vecfile_read_f32(vf[j], 0, b->n, col, e);
        if (st != VS_OK)
            vs_errf(err, st, "--attr %s: %s", o->attrs[j].name, e);
    }
    for (size_t j = 0; j < o->n_attrs; j++)
        vs_vecfile_close(vf[j]);
    if (st == VS_OK)
        b->n_attr_fields = o->n_attrs;
    return st;
}

/* Step 1: everything checkable before any write. */
static vs_status validate(build_t *b, char *err)
{
    const vs_builder_opts_t *o = b->o;
    if (!o->base_path || !o->factory || !o->out_dir || !o->version)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--base, --factory, --out and --version are required");
    if (!vs_version_name_valid(o->version))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "version \"%s\" is not a valid name ([A-Za-z0-9._-], 1..64 bytes)", o->version);
    if (o->model_version && strlen(o->model_version) > 127)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "model version is longer than 127 bytes");
    if (o->n_partitions < 1 || o->n_partitions > VS_BUILDER_MAX_PARTITIONS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "partitions %u is out of range 1..%u", o->n_partitions,
                       VS_BUILDER_MAX_PARTITIONS);
    if (o->partitioning != VS_PARTITION_HASH && o->partitioning != VS_PARTITION_CLUSTER)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "partitioning must be hash or cluster");
    vs_status st = vs_factory_parse(o->factory, &b->spec, err);
    if (st != VS_OK)
        return st;
    vs_factory_format(&b->spec, b->factory, sizeof b->factory);
    if (b->spec.type == VS_INDEX_FLAT)
        return vs_errf(
            err, VS_ERR_UNSUPPORTED,
            "factory \"%s\": Flat indexes have no file format; use IVF{nlist},Flat (exact with nprobe = "
            "nlist) or HNSW{M}",
            o->factory);
    if (o->partitioning == VS_PARTITION_CLUSTER) {
        if (b->spec.type != VS_INDEX_IVF)
            return vs_errf(
                err, VS_ERR_INVALID_ARGUMENT,
                "cluster partitioning needs an IVF factory (it packs IVF lists), not \"%s\"; use hash",
                o->factory);
        if (o->n_partitions > b->spec.nlist)
            return vs_errf(
                err, VS_ERR_INVALID_ARGUMENT,
                "cluster partitioning: %u partitions but only %u IVF lists (each partition owns whole "
                "lists)",
                o->n_partitions, b->spec.nlist);
        if (b->spec.nlist > VS_MANIFEST_MAX_NLIST)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "cluster partitioning: nlist %u is above %u",
                           b->spec.nlist, VS_MANIFEST_MAX_NLIST);
    }
    b->P = o->n_partitions;
    st = vs_vecfile_open(o->base_path, &b->vf, err);
    if (st != VS_OK)
        return st;
    b->n = vs_vecfile_count(b->vf);
    b->d = vs_vecfile_dim(b->vf);
    if (b->n == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s holds no vectors", o->base_path);
    if (b->spec.type == VS_INDEX_IVF && b->n < b->spec.nlist)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s has %zu vectors, fewer than the %u IVF lists",
                       o->base_path, b->n, b->spec.nlist);
    if (o->ids_path) {
        st = vs_ids_file_open(o->ids_path, &b->ids, err);
        if (st != VS_OK)
            return st;
        b->has_ids = 1;
        if (b->ids.n != b->n)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "ids file %s has %zu ids, base %s has %zu vectors",
                           o->ids_path, b->ids.n, o->base_path, b->n);
        for (size_t i = 0; i < b->n; i++)
            if (vs_ids_file_get(&b->ids, i) < 0)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "ids file %s: id %zu is negative (%lld)",
                               o->ids_path, i, (long long)vs_ids_file_get(&b->ids, i));
    }
    st = load_attrs(b, err);
    if (st != VS_OK)
        return st;
    /* the factory against the dimension (PQ m must divide d, ...) and the index type being built */
    st = vs_index_create(b->d, o->metric, o->factory, &b->trained, err);
    if (st != VS_OK)
        return st;
    size_t chunk = o->chunk_rows ? o->chunk_rows : VS_BUILDER_DEFAULT_CHUNK;
    if (chunk > ((size_t)1 << 30) / b->d)
        chunk = ((size_t)1 << 30) / b->d; /* at most 4 GiB of floats per chunk */
    b->chunk = (chunk + VS_BUILDER_CHUNK_ALIGN - 1) / VS_BUILDER_CHUNK_ALIGN * VS_BUILDER_CHUNK_ALIGN;
    b->n_threads = o->n_threads ? o->n_threads : vs_parallel_cpus();
    if (vs_index_needs_training(b->trained)) {
        size_t ns =
            o->train_sample
                ? o->train_sample
                : vs_builder_default_train_sample(b->spec.type == VS_INDEX_IVF ? b->spec.nlist : 0, b->n);
        b->n_train = ns < b->n ? ns : b->n;
        if (b->spec.type == VS_INDEX_IVF && b->n_train < b->spec.nlist)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "training sample of %zu is smaller than the %u IVF lists", b->n_train,
                           b->spec.nlist);
    }
    b->parts = calloc(b->P, sizeof *b->parts);
    if (!b->parts)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    if (snprintf(b->dir, sizeof b->dir, "%s/%s", o->out_dir, o->version) >= (int)sizeof b->dir - 32)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s/%s: path too long", o->out_dir, o->version);
    return VS_OK;
}

/* Step 2: the training sample (selection sampling, Knuth TAOCP 3.4.2 Algorithm S: rows in file order,
 * each subset of the size equally likely) and training. */
static vs_status train(build_t *b, char *err)
{
    const size_t ns = b->n_train;
    if (ns == 0)
        return VS_OK;
    b->sample = malloc(ns * b->d * sizeof(float));
    if (!b->sample)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory for a training sample of %zu x %u", ns, b->d);
    uint64_t state = b->o->seed;
    size_t got = 0;
    vs_status st = VS_OK;
    stage_begin(b, "sample", b->n);
    for (size_t i = 0; i < b->n && got < ns && st == VS_OK; i++) {
        state += 0x9e3779b97f4a7c15ull;
        double u = (double)(vs_splitmix64(state) >> 11) * 0x1.0p-53; /* [0, 1) */
        if ((double)(b->n - i) * u >= (double)(ns - got))
            continue;
        st = vs_vecfile_read_f32(b->vf, i, 1, b->sample + got * b->d, err);
        if (st == VS_OK)
            st = check_rows(b, b->sample + got * b->d, i, 1, err);
        got++;
        if ((got & 4095) == 0)
            stage_update(b, i, b->n);
    }
    stage_end(b, b->n);
    if (st != VS_OK)
        return st;
    b->n_sample = got;
    /* updates come from k-means as (iteration, iterations); the closing line counts training rows */
    stage_begin(b, "train", got);
    vs_progress_cb_t cb = {b->pr ? b->pr->update : NULL, b->pr ? b->pr->ctx : NULL};
    st = vs_index_train(b->trained, got, b->sample, b->n_threads, &cb, err);
    stage_end(b, got);
    return st;
}

/* CRC32C of the trained state: the file of an empty clone (resume markers compare it). */
static vs_status trained_crc(build_t *b, char *err)
{
    if (b->n_sample == 0)
        return VS_OK;
    /* a unique name: distributed workers on several hosts share the directory (and are all pid 1 in their
     * containers); mkstemp's O_EXCL reserves it */
    char path[PATH_MAX];
    vs_status st = path_in_dir(b, ".trained-state.XXXXXX", path, err);
    int fd = st == VS_OK ? mkstemp(path) : -1;
    if (st == VS_OK && fd < 0)
        st = vs_errf(err, VS_ERR_IO, "%s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    vs_index_t *c = NULL;
    if (st == VS_OK)
        st = vs_index_clone_empty(b->trained, &c, err);
    if (st == VS_OK && vs_index_needs_training(c))
        st = vs_index_train(c, b->n_sample, b->sample, b->n_threads, NULL, err);
    if (st == VS_OK)
        st = vs_index_save(c, path, "", 0, err);
    uint64_t size;
    if (st == VS_OK)
        st = vs_file_crc32c(path, &size, &b->trained_crc, err);
    if (fd >= 0)
        unlink(path);
    vs_index_destroy(c);
    return st;
}

/* Step 3: IVF list of every row (streaming), list sizes; NaN/Inf rows are refused here. */
static vs_status assign(build_t *b, char *err)
{
    if (b->spec.type != VS_INDEX_IVF)
        return VS_OK;
    const vs_ivf_t *ivf = vs_index_impl_ivf(b->trained);
    b->lists = malloc(b->n * sizeof *b->lists);
    b->list_sizes = calloc(b->spec.nlist, sizeof *b->list_sizes);
    float *x = malloc(b->chunk * b->d * sizeof(float));
    vs_status st = VS_OK;
    if (!b->lists || !b->list_sizes || !x)
        st = vs_errf(err, VS_ERR_NOMEM, "out of memory for the list ids of %zu vectors", b->n);
    stage_begin(b, "assign", b->n);
    for (size_t r0 = 0; r0 < b->n && st == VS_OK; r0 += b->chunk) {
        size_t m = b->n - r0 < b->chunk ? b->n - r0 : b->chunk;
        st = vs_vecfile_read_f32(b->vf, r0, m, x, err);
        if (st == VS_OK)
            st = check_rows(b, x, r0, m, err);
        if (st == VS_OK)
            st = vs_ivf_assign(ivf, m, x, b->n_threads, b->o->assign_exact, b->lists + r0, err);
        stage_update(b, r0 + m, b->n);
    }
    stage_end(b, b->n);
    free(x);
    for (size_t i = 0; st == VS_OK && i < b->n; i++)
        b->list_sizes[b->lists[i]]++;
    return st;
}

/* Step 4: partition of every row; per-partition counts. */
static vs_status route(build_t *b, char *err)
{
    if (b->o->partitioning == VS_PARTITION_CLUSTER) {
        b->list_part = malloc(b->spec.nlist * sizeof *b->list_part);
        if (!b->list_part)
            return vs_errf(err, VS_ERR_NOMEM, "out of memory");
        vs_builder_pack_lists_near(b->list_sizes, vs_ivf_centroids(vs_index_impl_ivf(b->trained)),
                                   b->spec.nlist, b->d, b->P, b->o->seed, b->list_part);
    }
    for (size_t i = 0; i < b->n; i++)
        b->parts[row_partition(b, i)].n_vectors++;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint32_t p = 0; p < b->P; p++) {
        lo = b->parts[p].n_vectors < lo ? b->parts[p].n_vectors : lo;
        hi = b->parts[p].n_vectors > hi ? b->parts[p].n_vectors : hi;
    }
    note(b, "%zu vectors of dim %u into %u %s partitions of %llu..%llu vectors", b->n, b->d, b->P,
         b->o->partitioning == VS_PARTITION_CLUSTER ? "cluster" : "hash", (unsigned long long)lo,
         (unsigned long long)hi);
    return VS_OK;
}

/* What a done marker must match: the inputs (path, size, mtime), every option that changes a file,
 * the trained state and the routing, and the attribute columns (name, type, size and CRC32C of the file's
 * content; absent without attributes, so a build without them matches markers written before they
 * existed). Not the thread count, chunk size or memory budget. */
/* " assign=grouped" where the grouped assignment makes the lists (IVF at 8,192+ lists, L2 or cosine, not
 * --assign exact), else "": the exact lists, as every build before the grouped mode (whose fingerprints
 * stay the same). */
static const char *assign_mode(const build_t *b)
{
    int grouped = b->spec.type == VS_INDEX_IVF && vs_coarse_grouped_applies(b->o->metric, b->spec.nlist);
    return grouped && !b->o->assign_exact ? " assign=grouped" : "";
}

static vs_status make_fingerprint(build_t *b, char *err)
{
    const vs_builder_opts_t *o = b->o;
    char id[2][PATH_MAX + 96];
    const char *paths[2] = {o->base_path, o->ids_path};
    for (int k = 0; k < 2; k++) {
        struct stat st;
        char real[PATH_MAX];
        if (!paths[k]) {
            snprintf(id[k], sizeof id[k], "-");
            continue;
        }
        if (!realpath(paths[k], real) || stat(real, &st) != 0)
            return vs_errf(err, VS_ERR_IO, "%s: %s", paths[k], strerror(errno));
        snprintf(id[k], sizeof id[k], "%s:%lld:%lld.%09ld", real, (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    }
    uint32_t routing = 0;
    if (b->list_part)
        routing = vs_crc32c(0, b->list_part, b->spec.nlist * sizeof *b->list_part);
    snprintf(b->fingerprint, sizeof b->fingerprint,
             "base=%s ids=%s n=%zu dim=%u metric=%s factory=%s partitions=%u partitioning=%s seed=%llu "
             "train_sample=%zu model_version=%s trained=0x%08x routing=0x%08x%s",
             id[0], id[1], b->n, b->d, vs_metric_name(o->metric), b->factory, b->P,
             o->partitioning == VS_PARTITION_CLUSTER ? "cluster" : "hash", (unsigned long long)o->seed,
             b->n_sample, o->model_version ? o->model_version : "", b->trained_crc, routing,
             assign_mode(b));
    for (size_t i = 0; i < b->n_attr_fields; i++) {
        uint64_t size;
        uint32_t crc;
        char e[VS_ERR_LEN];
        vs_status st = vs_file_crc32c(o->attrs[i].path, &size, &crc, e);
        if (st != VS_OK)
            return vs_errf(err, st, "--attr %s: %s", o->attrs[i].name, e);
        size_t len = strlen(b->fingerprint);
        snprintf(b->fingerprint + len, sizeof b->fingerprint - len, "%s%s:%s:%llu:0x%08x",
                 i ? "," : " attrs=", b->attr_fields[i].name, vs_attr_type_name(b->attr_fields[i].type),
                 (unsigned long long)size, crc);
    }
    return VS_OK;
}

static void part_names(uint32_t p, char file[64], char marker[64])
{
    snprintf(file, 64, "part-%u.vsidx", p);
    snprintf(marker, 64, "part-%u.done", p);
}

/* 1 when partition p's done marker matches this build and its file has the recorded size and CRC. */
/* Partition p's marker (part-<p>.done), parsed; NULL when absent or unreadable. Free with cJSON_Delete. */
static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = malloc(65536);
    size_t len = text ? fread(text, 1, 65535, f) : 0;
    fclose(f);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

static cJSON *read_marker(build_t *b, uint32_t p)
{
    char file[64], marker[64], path[PATH_MAX], err[VS_ERR_LEN];
    part_names(p, file, marker);
    if (path_in_dir(b, marker, path, err) != VS_OK)
        return NULL;
    return read_json(path);
}

/* Writes j (deleted here) to path atomically: a temporary file, then rename. */
static vs_status write_json(const char *path, cJSON *j, char *err)
{
    char tmp[PATH_MAX + 8];
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = f && (fclose(f) == 0) && ok;
    cJSON_free(text);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return vs_errf(err, VS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return VS_OK;
}

/* 1 when partition p's marker names this build's fingerprint (the same inputs and options). */
static int marker_is_ours(build_t *b, uint32_t p)
{
    cJSON *j = read_marker(b, p);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint");
    int ours = cJSON_IsString(fp) && strcmp(fp->valuestring, b->fingerprint) == 0;
    cJSON_Delete(j);
    return ours;
}

/* Versions are immutable: a directory that holds a complete version (its manifest) is not rebuilt, except
 * with --resume by the same build (every partition's marker names this build's fingerprint), which
 * rewrites the same bytes. */
static vs_status check_immutable(build_t *b, const char *manifest, char *err)
{
    if (access(manifest, F_OK) != 0)
        return VS_OK;
    vs_manifest_t m;
    char merr[VS_ERR_LEN];
    int same = b->o->resume && vs_manifest_load(manifest, &m, merr) == VS_OK;
    if (same) {
        /* the tuning options decide search_defaults, which are part of the version's content id */
        const vs_builder_opts_t *o = b->o;
        uint32_t k = o->tune_k ? o->tune_k : 10;
        const char *source = o->tune_queries_path ? "file" : "base-sample";
        int tuned = o->target_recall > 0;
        same = m.n_partitions == b->P && m.defaults.present == tuned &&
               (!tuned || (m.defaults.target_recall == o->target_recall && m.defaults.k == k &&
                           strcmp(m.defaults.source, source) == 0 &&
                           (o->tune_queries_path || m.defaults.n_queries == (o->tune_n ? o->tune_n : 500) ||
                            m.defaults.n_queries == b->n)));
        vs_manifest_fini(&m);
    }
    for (uint32_t p = 0; same && p < b->P; p++)
        same = marker_is_ours(b, p);
    if (same)
        return VS_OK;
    return vs_errf(
        err, VS_ERR_ALREADY_EXISTS,
        "%s holds a built version %s, and versions are immutable: build under a new version name%s", b->dir,
        b->o->version,
        b->o->resume ? " (--resume continues only the same build: these inputs or options differ)"
                     : " (--resume continues an interrupted build of the same inputs)");
}

static int resumable(build_t *b, uint32_t p)
{
    char file[64], marker[64], path[PATH_MAX], err[VS_ERR_LEN];
    part_names(p, file, marker);
    cJSON *j = read_marker(b, p);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint");
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(j, "size_bytes");
    const cJSON *crc = cJSON_GetObjectItemCaseSensitive(j, "crc32c");
    const cJSON *nv = cJSON_GetObjectItemCaseSensitive(j, "n_vectors");
    int ok = cJSON_IsString(fmt) && strcmp(fmt->valuestring, MARKER_FORMAT) == 0 && cJSON_IsString(fp) &&
             strcmp(fp->valuestring, b->fingerprint) == 0 && cJSON_IsString(sz) && cJSON_IsString(crc) &&
             cJSON_IsString(nv) && strtoull(nv->valuestring, NULL, 10) == b->parts[p].n_vectors;
    uint64_t want_size = ok ? strtoull(sz->valuestring, NULL, 10) : 0;
    uint32_t want_crc = ok ? (uint32_t)strtoul(crc->valuestring, NULL, 16) : 0;
    cJSON_Delete(j);
    uint64_t size;
    uint32_t got_crc;
    if (!ok || path_in_dir(b, file, path, err) != VS_OK ||
        vs_file_crc32c(path, &size, &got_crc, err) != VS_OK || size != want_size || got_crc != want_crc)
        return 0;
    b->parts[p].size_bytes = size;
    b->parts[p].crc32c = got_crc;
    return 1;
}

static vs_status write_marker(build_t *b, uint32_t p, char *err)
{
    char file[64], marker[64], path[PATH_MAX], num[32];
    part_names(p, file, marker);
    vs_status st = path_in_dir(b, marker, path, err);
    if (st != VS_OK)
        return st;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(j, "format", MARKER_FORMAT);
    cJSON_AddStringToObject(j, "file", file);
    snprintf(num, sizeof num, "%llu", (unsigned long long)b->parts[p].size_bytes);
    cJSON_AddStringToObject(j, "size_bytes", num);
    snprintf(num, sizeof num, "0x%08x", b->parts[p].crc32c);
    cJSON_AddStringToObject(j, "crc32c", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)b->parts[p].n_vectors);
    cJSON_AddStringToObject(j, "n_vectors", num);
    cJSON_AddStringToObject(j, "fingerprint", b->fingerprint);
    return write_json(path, j, err);
}

/* Bytes one stored vector takes in memory while building (codes, id, refine copy; HNSW links). */
static size_t bytes_per_vector(const build_t *b)
{
    const vs_factory_spec_t *s = &b->spec;
    size_t d = b->d, v = 8;
    if (s->type == VS_INDEX_IVF) {
        v += s->codec == VS_CODEC_FLAT ? 4 * d : s->fastscan ? (s->pq_m + 1) / 2 : s->pq_m;
        v += s->refine == VS_REFINE_FLAT ? 4 * d : s->refine == VS_REFINE_SQ8 ? d : 0;
    } else {
        v += (s->codec == VS_CODEC_SQ8 ? d : 4 * d) + (size_t)s->hnsw_m * 2 * 4 * 3 / 2;
    }
    /* lists grow by doubling: a quarter to a half of the capacity is slack; attributes: a row index each */
    return v * 3 / 2 + (b->attrs ? sizeof(size_t) : 0);
}

/* Removes partition files and markers of an earlier build with more partitions. */
static void remove_stale(const build_t *b)
{
    DIR *dir = opendir(b->dir);
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        unsigned p;
        char tail[16], path[PATH_MAX];
        if (sscanf(e->d_name, "part-%u.%15s", &p, tail) == 2 && p >= b->P &&
            (strcmp(tail, "vsidx") == 0 || strcmp(tail, "done") == 0) &&
            snprintf(path, sizeof path, "%s/%s", b->dir, e->d_name) < (int)sizeof path)
            unlink(path);
    }
    closedir(dir);
}

typedef struct list_row {
    int32_t list;
    size_t added; /* position in add order */
} list_row_t;

static int by_list_then_added(const void *x, const void *y)
{
    const list_row_t *a = x, *c = y;
    if (a->list != c->list)
        return a->list < c->list ? -1 : 1;
    return (a->added > c->added) - (a->added < c->added);
}

/* Attributes of partition p in its index's item order: item j is the vector added from base row
 * rows[order[j]], where order is the add order (HNSW: node order) or, for IVF, the add order sorted
 * stably by list (the index keeps its lists one after the other, each in add order; attrs.h). Before the
 * columns are gathered the order is checked against the index, so a change of its layout fails the build
 * (INTERNAL) instead of misplacing attributes: IVF list sizes, and the index's own id at every position
 * (vs_index_ids_in_order). The tests check the values of every item of loaded partitions of both kinds. */
static vs_status attach_attrs(build_t *b, uint32_t p, char *err)
{
    partition_t *pt = &b->parts[p];
    const size_t n = pt->n_rows;
    if (!b->attrs)
        return VS_OK;
    if (n != vs_index_count(pt->idx))
        return vs_errf(err, VS_ERR_INTERNAL, "partition %u: %zu rows recorded for %zu vectors", p, n,
                       vs_index_count(pt->idx));
    size_t *item_rows = malloc((n ? n : 1) * sizeof *item_rows);
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    list_row_t *lr = b->lists ? malloc((n ? n : 1) * sizeof *lr) : NULL;
    vs_status st = item_rows && ids && (lr || !b->lists)
                       ? VS_OK
                       : vs_errf(err, VS_ERR_NOMEM, "partition %u: out of memory for its attributes", p);
    if (st == VS_OK && lr) {
        for (size_t j = 0; j < n; j++)
            lr[j] = (list_row_t){b->lists[pt->rows[j]], j};
        qsort(lr, n, sizeof *lr, by_list_then_added);
        for (size_t j = 0; j < n; j++)
            item_rows[j] = pt->rows[lr[j].added];
        /* each list of the partition as large as the rows routed to it (then every other list is empty) */
        const vs_ivf_t *ivf = vs_index_impl_ivf(pt->idx);
        for (size_t j = 0; ivf && st == VS_OK && j < n;) {
            size_t e = j;
            while (e < n && lr[e].list == lr[j].list)
                e++;
            if (vs_ivf_list_size(ivf, (uint32_t)lr[j].list) != e - j)
                st = vs_errf(err, VS_ERR_INTERNAL, "partition %u: list %d holds %zu vectors, %zu were added",
                             p, lr[j].list, vs_ivf_list_size(ivf, (uint32_t)lr[j].list), e - j);
            j = e;
        }
        if (st == VS_OK && !ivf)
            st = vs_errf(err, VS_ERR_INTERNAL, "partition %u: not an IVF index", p);
    } else if (st == VS_OK) {
        memcpy(item_rows, pt->rows, n * sizeof *item_rows);
    }
    if (st == VS_OK) {
        vs_index_ids_in_order(pt->idx, ids);
        for (size_t j = 0; j < n; j++)
            if (ids[j] != row_id(b, item_rows[j])) {
                st = vs_errf(err, VS_ERR_INTERNAL,
                             "partition %u: item %zu holds id %lld, expected base row %zu's id %lld (the "
                             "index's item order is not the one attributes are gathered in)",
                             p, j, (long long)ids[j], item_rows[j], (long long)row_id(b, item_rows[j]));
                break;
            }
    }
    vs_attrs_t *a = NULL;
    if (st == VS_OK)
        st = vs_attrs_gather(b->attrs, item_rows, n, &a, err);
    if (st == VS_OK && (st = vs_attrs_prepare(a, err)) != VS_OK)
        vs_attrs_destroy(a);
    if (st == VS_OK)
        st = vs_index_set_attrs(pt->idx, a, err); /* takes a, also on failure */
    free(item_rows);
    free(ids);
    free(lr);
    return st;
}

/* Saves partition p (with its attributes), records size and CRC, writes its marker, frees its index. */
static vs_status save_partition(build_t *b, uint32_t p, char *err)
{
    char file[64], marker[64], path[PATH_MAX];
    part_names(p, file, marker);
    vs_status st = attach_attrs(b, p, err);
    if (st == VS_OK)
        st = path_in_dir(b, file, path, err);
    if (st == VS_OK)
        st = vs_index_save(b->parts[p].idx, path, b->o->model_version ? b->o->model_version : "",
                           b->o->build_time_unix, err);
    if (st == VS_OK)
        st = vs_file_crc32c(path, &b->parts[p].size_bytes, &b->parts[p].crc32c, err);
    if (st == VS_OK)
        st = write_marker(b, p, err);
    vs_index_destroy(b->parts[p].idx);
    b->parts[p].idx = NULL;
    free(b->parts[p].rows);
    b->parts[p].rows = NULL;
    if (st == VS_OK) {
        b->parts[p].done = 1;
        b->built++;
    }
    return st;
}

/* Records partition p's content id in mp, and the version's trained-state id and centroid-data CRC32C
 * in m (the first partition sets them; every other must agree, or the build is broken: INTERNAL). Opens
 * the saved file, which validates it once more; the loaded index goes to *out_idx (the caller destroys
 * it) so that tuning searches it without opening the file again. */
static vs_status record_ids(build_t *b, uint32_t p, vs_manifest_t *m, vs_manifest_partition_t *mp,
                            vs_index_t **out_idx, char *err)
{
    char file[64], marker[64], path[PATH_MAX], trained[17];
    part_names(p, file, marker);
    vs_index_t *idx = NULL;
    uint32_t ccrc = 0;
    vs_status st = path_in_dir(b, file, path, err);
    if (st == VS_OK)
        st = vs_index_load(path, &idx, err);
    if (st != VS_OK)
        return st;
    vs_index_ids(idx, mp->content_id, trained, &ccrc);
    *out_idx = idx; /* kept for tuning: each partition file is opened (and verified) once here */
    const vs_attrs_t *la = vs_index_attrs(idx);
    int same = (la ? vs_attrs_n_fields(la) : 0) == b->n_attr_fields;
    for (size_t i = 0; same && i < b->n_attr_fields; i++)
        same = strcmp(vs_attrs_fields(la)[i].name, b->attr_fields[i].name) == 0 &&
               vs_attrs_fields(la)[i].type == b->attr_fields[i].type;
    if (!same)
        return vs_errf(err, VS_ERR_INTERNAL, "%s: its attribute schema is not this build's", path);
    if (p == 0) {
        snprintf(m->trained_state_id, sizeof m->trained_state_id, "%s", trained);
        m->centroids_data_crc32c = ccrc;
        m->has_centroids_data_crc32c = b->spec.type == VS_INDEX_IVF;
    } else if (strcmp(m->trained_state_id, trained) != 0 ||
               (m->has_centroids_data_crc32c && ccrc != m->centroids_data_crc32c)) {
        return vs_errf(err, VS_ERR_INTERNAL, "%s: trained state %s differs from partition 0's %s", path,
                       trained, m->trained_state_id);
    }
    return VS_OK;
}

/* Opens empty partitions [p0, p1) not yet done (clones of the trained state, with room for their rows
 * when attributes are built); *total receives their vectors. */
static vs_status open_group(build_t *b, uint32_t p0, uint32_t p1, uint64_t *total, char *err)
{
    vs_status st = VS_OK;
    *total = 0;
    for (uint32_t p = p0; p < p1 && st == VS_OK; p++) {
        if (b->parts[p].done)
            continue;
        *total += b->parts[p].n_vectors;
        b->parts[p].n_rows = 0;
        if (b->attrs) {
            b->parts[p].rows = malloc((b->parts[p].n_vectors ? b->parts[p].n_vectors : 1) * sizeof(size_t));
            if (!b->parts[p].rows)
                return vs_errf(err, VS_ERR_NOMEM, "out of memory for the rows of partition %u", p);
        }
        st = vs_index_clone_empty(b->trained, &b->parts[p].idx, err);
        if (st == VS_OK &&
            vs_index_needs_training(b->parts[p].idx)) /* e.g. HNSW,SQ8: same sample, same state */
            st = vs_index_train(b->parts[p].idx, b->n_sample, b->sample, b->n_threads, NULL, err);
    }
    return st;
}

/* The end of a pass over partitions [p0, p1): when st is VS_OK each one not yet done is saved (with its
 * marker); then every one is freed. Returns the first error. */
static vs_status save_group(build_t *b, uint32_t p0, uint32_t p1, vs_status st, char *err)
{
    const uint32_t g = p1 - p0;
    if (st == VS_OK) {
        stage_begin(b, "save", g);
        for (uint32_t p = p0; p < p1 && st == VS_OK; p++) {
            if (!b->parts[p].done)
                st = save_partition(b, p, err);
            stage_update(b, p - p0 + 1, g);
        }
        stage_end(b, g);
    }
    for (uint32_t p = p0; p < p1; p++) {
        vs_index_destroy(b->parts[p].idx);
        b->parts[p].idx = NULL;
        free(b->parts[p].rows);
        b->parts[p].rows = NULL;
    }
    b->passes++;
    return st;
}

/* One add pass: partitions [p0, p1) not yet done are encoded from one stream over the base. */
static vs_status add_pass(build_t *b, uint32_t p0, uint32_t p1, char *err)
{
    const uint32_t g = p1 - p0;
    const size_t d = b->d, chunk = b->chunk;
    float *x = malloc(chunk * d * sizeof(float)), *gx = malloc(chunk * d * sizeof(float));
    int64_t *gid = malloc(chunk * sizeof(int64_t));
    int32_t *glist = malloc(chunk * sizeof(int32_t));
    size_t *order = malloc(chunk * sizeof(size_t)), *start = calloc((size_t)g + 1, sizeof(size_t));
    size_t *fill = calloc((size_t)g + 1, sizeof(size_t));
    vs_status st = VS_OK;
    if (!x || !gx || !gid || !glist || !order || !start || !fill)
        st = vs_errf(err, VS_ERR_NOMEM, "out of memory for chunks of %zu rows", chunk);
    uint64_t total = 0;
    if (st == VS_OK)
        st = open_group(b, p0, p1, &total, err);
    char what[64] = "add";
    if (p1 - p0 < b->P)
        snprintf(what, sizeof what, "add p%u-%u", p0, p1 - 1);
    stage_begin(b, what, total);
    size_t added = 0;
    for (size_t r0 = 0; r0 < b->n && st == VS_OK; r0 += chunk) {
        size_t m = b->n - r0 < chunk ? b->n - r0 : chunk;
        /* counting sort of the chunk's rows by partition (stable: file order within a partition) */
        memset(start, 0, ((size_t)g + 1) * sizeof(size_t));
        int any = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t p = row_partition(b, r0 + i);
            if (p >= p0 && p < p1 && !b->parts[p].done) {
                start[p - p0 + 1]++;
                any = 1;
            }
        }
        if (!any)
            continue;
        for (uint32_t k = 0; k < g; k++)
            start[k + 1] += start[k];
        memcpy(fill, start, ((size_t)g + 1) * sizeof(size_t));
        for (size_t i = 0; i < m; i++) {
            uint32_t p = row_partition(b, r0 + i);
            if (p >= p0 && p < p1 && !b->parts[p].done)
                order[fill[p - p0]++] = i;
        }
        st = vs_vecfile_read_f32(b->vf, r0, m, x, err);
        if (st == VS_OK && !b->lists) /* IVF rows were checked by the assignment pass */
            st = check_rows(b, x, r0, m, err);
        for (uint32_t k = 0; k < g && st == VS_OK; k++) {
            size_t cnt = start[k + 1] - start[k];
            if (cnt == 0)
                continue;
            for (size_t j = 0; j < cnt; j++) {
                size_t i = order[start[k] + j];
                memcpy(gx + j * d, x + i * d, d * sizeof(float));
                gid[j] = row_id(b, r0 + i);
                if (b->lists)
                    glist[j] = b->lists[r0 + i];
            }
            partition_t *pt = &b->parts[p0 + k];
            for (size_t j = 0; pt->rows && j < cnt; j++) /* the rows in add order, for the attributes */
                pt->rows[pt->n_rows + j] = r0 + order[start[k] + j];
            pt->n_rows += cnt;
            vs_index_t *idx = pt->idx;
            st = b->lists ? vs_index_add_lists(idx, cnt, gx, gid, glist, b->n_threads, NULL, err)
                          : vs_index_add(idx, cnt, gx, gid, b->n_threads, NULL, err);
            added += cnt;
        }
        stage_update(b, added, total);
    }
    stage_end(b, total);
    st = save_group(b, p0, p1, st, err);
    free(x);
    free(gx);
    free(gid);
    free(glist);
    free(order);
    free(start);
    free(fill);
    return st;
}

typedef vs_status (*pass_fn)(build_t *b, uint32_t p0, uint32_t p1, char *err);

/* Step 5: resume what can be, then passes over the rest within the memory budget: add passes over the
 * base (one process), or merge passes over the workers' parts (the distributed build's MERGE). */
static vs_status encode(build_t *b, pass_fn pass, char *err)
{
    char file[64], marker[64], path[PATH_MAX];
    for (uint32_t p = 0; p < b->P; p++) {
        if (b->o->resume && resumable(b, p)) {
            b->parts[p].done = 1;
            b->resumed++;
            note(b, "partition %u: kept (its done marker matches this build)", p);
            continue;
        }
        part_names(p, file, marker);
        if (path_in_dir(b, marker, path, err) == VS_OK)
            unlink(path); /* the file is about to change: an old marker must not vouch for it */
    }
    size_t fixed = vs_index_memory_bytes(b->trained) + 4096, per = bytes_per_vector(b);
    uint32_t p0 = 0;
    while (p0 < b->P) {
        /* the longest run of partitions from p0 whose estimated memory fits (at least one) */
        uint32_t p1 = p0;
        size_t used = 0;
        while (p1 < b->P) {
            size_t need = b->parts[p1].done ? 0 : fixed + (size_t)b->parts[p1].n_vectors * per;
            if (p1 > p0 && b->o->memory_bytes && used + need > b->o->memory_bytes)
                break;
            used += need;
            p1++;
        }
        int todo = 0;
        for (uint32_t p = p0; p < p1; p++)
            todo |= !b->parts[p].done;
        if (todo) {
            vs_status st = pass(b, p0, p1, err);
            if (st != VS_OK)
                return st;
        }
        p0 = p1;
    }
    return VS_OK;
}

/* Exact k nearest neighbours (by this build's ids) of nq queries over the whole base: one streaming pass,
 * each chunk searched exactly (flat, sgemm) and merged into the running best. out_ids: nq x k. */
static vs_status ground_truth(build_t *b, const float *q, size_t nq, uint32_t k, int64_t *out_ids, char *err)
{
    const int larger = b->o->metric != VS_METRIC_L2;
    const size_t nqk = nq * k;
    float *best_d = malloc(nqk * sizeof *best_d), *cd = malloc(nqk * sizeof *cd),
          *md = malloc(k * sizeof *md);
    int64_t *ci = malloc(nqk * sizeof *ci), *mi = malloc(k * sizeof *mi);
    float *x = malloc(b->chunk * b->d * sizeof *x);
    int64_t *ids = malloc(b->chunk * sizeof *ids);
    vs_status st = best_d && cd && md && ci && mi && x && ids
                       ? VS_OK
                       : vs_errf(err, VS_ERR_NOMEM, "tune: out of memory");
    for (size_t i = 0; st == VS_OK && i < nqk; i++) {
        best_d[i] = larger ? -INFINITY : INFINITY;
        out_ids[i] = -1;
    }
    stage_begin(b, "tune: exact neighbours", b->n);
    for (size_t r0 = 0; st == VS_OK && r0 < b->n; r0 += b->chunk) {
        size_t m = b->n - r0 < b->chunk ? b->n - r0 : b->chunk;
        vs_flat_t *f = NULL;
        st = vs_vecfile_read_f32(b->vf, r0, m, x, err);
        for (size_t i = 0; i < m; i++)
            ids[i] = row_id(b, r0 + i);
        if (st == VS_OK)
            st = vs_flat_create(b->d, b->o->metric, &f, err);
        if (st == VS_OK)
            st = vs_flat_add(f, m, x, ids, err);
        if (st == VS_OK)
            st = vs_flat_search(f, nq, q, k, b->n_threads, -1, cd, ci, err);
        vs_flat_destroy(f);
        for (size_t j = 0; st == VS_OK && j < nq; j++) {
            vs_topk_list_t l[2] = {{best_d + j * k, out_ids + j * k, k}, {cd + j * k, ci + j * k, k}};
            st = vs_topk_merge(l, 2, larger, k, md, mi, err);
            memcpy(best_d + j * k, md, k * sizeof *md);
            memcpy(out_ids + j * k, mi, k * sizeof *mi);
        }
        stage_update(b, r0 + m, b->n);
    }
    stage_end(b, b->n);
    free(best_d);
    free(cd);
    free(md);
    free(ci);
    free(mi);
    free(x);
    free(ids);
    return st;
}

/* Per-version search defaults (tune.h) into m: tune queries, their exact neighbours (kept in the version
 * directory), then the sweep. */
static vs_status tune(build_t *b, vs_manifest_t *m, vs_index_t *const *parts, char *err)
{
    const vs_builder_opts_t *o = b->o;
    uint32_t k = o->tune_k ? o->tune_k : 10;
    size_t nq = 0;
    float *q = NULL;
    vs_status st = VS_OK;
    if (o->tune_queries_path) {
        uint32_t qd;
        st = vs_vecfile_load_f32(o->tune_queries_path, &nq, &qd, &q, err);
        if (st == VS_OK && qd != b->d)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--tune-queries %s: dimension %u, the base has %u",
                         o->tune_queries_path, qd, b->d);
        if (st == VS_OK && nq == 0)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--tune-queries %s: no rows", o->tune_queries_path);
    } else {
        nq = o->tune_n ? o->tune_n : 500;
        if (nq > b->n)
            nq = b->n;
        q = malloc(nq * b->d * sizeof *q);
        if (!q)
            st = vs_errf(err, VS_ERR_NOMEM, "tune: out of memory");
        uint64_t s = o->seed ^ 0x7475u; /* "tu": another stream than the training sample's */
        for (size_t i = 0; st == VS_OK && i < nq; i++) {
            s += 0x9e3779b97f4a7c15ull;
            uint64_t z = s;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            st = vs_vecfile_read_f32(b->vf, (size_t)(z % b->n), 1, q + i * b->d, err);
        }
    }
    if (st == VS_OK && k > b->n)
        k = (uint32_t)b->n;
    int64_t *gt = st == VS_OK ? malloc(nq * k * sizeof *gt) : NULL;
    if (st == VS_OK && !gt)
        st = vs_errf(err, VS_ERR_NOMEM, "tune: out of memory");
    if (st == VS_OK)
        st = ground_truth(b, q, nq, k, gt, err);
    char path[PATH_MAX];
    if (st == VS_OK && (st = path_in_dir(b, "tune-queries.fvecs", path, err)) == VS_OK)
        st = vs_vecio_write_fvecs(path, nq, b->d, q, err);
    int fits = 1;
    for (size_t i = 0; st == VS_OK && i < nq * k; i++)
        fits &= gt[i] >= -1 && gt[i] <= INT32_MAX;
    if (st == VS_OK && fits && (st = path_in_dir(b, "tune-gt.ivecs", path, err)) == VS_OK) {
        int32_t *g32 = malloc(nq * k * sizeof *g32);
        for (size_t i = 0; g32 && i < nq * k; i++)
            g32[i] = (int32_t)gt[i];
        st = g32 ? vs_vecio_write_ivecs(path, nq, k, g32, err)
                 : vs_errf(err, VS_ERR_NOMEM, "tune: out of memory");
        free(g32);
    }
    vs_tune_opts_t to = {.target_recall = o->target_recall,
                         .k = k,
                         .queries = q,
                         .nq = nq,
                         .gt_ids = gt,
                         .source = o->tune_queries_path ? "file" : "base-sample"};
    if (st == VS_OK)
        st = vs_tune_version(m, parts, &to, err);
    if (st == VS_OK && m->defaults.present)
        note(b,
             "search defaults: nprobe %u, efSearch %u, k_factor %g: recall@%u %.4f on %zu %s queries (target "
             "%.3f)%s",
             m->defaults.nprobe, m->defaults.ef_search, m->defaults.k_factor, k, m->defaults.measured_recall,
             nq, m->defaults.source, o->target_recall,
             m->defaults.measured_recall < o->target_recall
                 ? " - TARGET NOT REACHED even at the largest parameters"
                 : "");
    free(q);
    free(gt);
    return st;
}

/* Step 6: centroids file, then the manifest, read back and validated. */
static vs_status finish(build_t *b, vs_builder_result_t *res, char *err)
{
    const vs_builder_opts_t *o = b->o;
    vs_manifest_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.version, sizeof m.version, "%s", o->version);
    snprintf(m.model_version, sizeof m.model_version, "%s", o->model_version ? o->model_version : "");
    m.log_upto = o->log_upto;
    m.metric = o->metric;
    m.dim = b->d;
    snprintf(m.factory, sizeof m.factory, "%s", b->factory);
    snprintf(m.partitioning, sizeof m.partitioning, "%s",
             o->partitioning == VS_PARTITION_CLUSTER ? "cluster" : "hash");
    if (o->partitioning == VS_PARTITION_HASH)
        snprintf(m.hash, sizeof m.hash, "%s", VS_MANIFEST_HASH);
    m.n_attrs = b->n_attr_fields;
    memcpy(m.attrs, b->attr_fields, b->n_attr_fields * sizeof *m.attrs);
    m.has_build = b->n_sample > 0;
    m.build_train_sample = b->n_sample;
    m.build_seed = o->seed;
    vs_status st = VS_OK;
    char path[PATH_MAX];
    if (b->spec.type == VS_INDEX_IVF) {
        m.nlist = b->spec.nlist;
        snprintf(m.centroids_file, sizeof m.centroids_file, "centroids.fvecs");
        uint64_t size;
        st = path_in_dir(b, m.centroids_file, path, err);
        if (st == VS_OK)
            st = vs_vecio_write_fvecs(path, b->spec.nlist, b->d,
                                      vs_ivf_centroids(vs_index_impl_ivf(b->trained)), err);
        if (st == VS_OK)
            st = vs_file_crc32c(path, &size, &m.centroids_crc32c, err);
        m.has_centroids_crc32c = 1;
    }
    m.n_partitions = b->P;
    m.partitions = calloc(b->P, sizeof *m.partitions);
    uint32_t *lists = o->partitioning == VS_PARTITION_CLUSTER ? malloc(b->spec.nlist * sizeof *lists) : NULL;
    vs_index_t **loaded = calloc(b->P, sizeof *loaded);
    if (!m.partitions || !loaded || (o->partitioning == VS_PARTITION_CLUSTER && !lists)) {
        free(m.partitions);
        free(lists);
        free(loaded);
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    }
    uint32_t at = 0;
    for (uint32_t p = 0; p < b->P; p++) {
        vs_manifest_partition_t *mp = &m.partitions[p];
        char marker[64];
        mp->id = p;
        part_names(p, mp->file, marker);
        mp->size_bytes = b->parts[p].size_bytes;
        mp->crc32c = b->parts[p].crc32c;
        mp->has_crc32c = 1;
        mp->n_vectors = b->parts[p].n_vectors;
        if (st == VS_OK)
            st = record_ids(b, p, &m, mp, &loaded[p], err);
        if (lists) { /* list ids ascending within each partition */
            mp->lists = lists + at;
            for (uint32_t l = 0; l < b->spec.nlist; l++)
                if (b->list_part[l] == p)
                    lists[at++] = l;
            mp->n_lists = (uint32_t)(lists + at - mp->lists);
        }
    }
    snprintf(m.dir, sizeof m.dir, "%s", b->dir);
    if (st == VS_OK && o->target_recall > 0)
        st = tune(b, &m, loaded, err);
    for (uint32_t p = 0; p < b->P; p++)
        vs_index_destroy(loaded[p]);
    free(loaded);
    if (st == VS_OK)
        st = path_in_dir(b, "manifest.json", res->manifest_path, err);
    if (st == VS_OK)
        st = vs_manifest_write(res->manifest_path, &m, err);
    free(lists);
    free(m.partitions);
    vs_manifest_t back;
    if (st == VS_OK && (st = vs_manifest_load(res->manifest_path, &back, err)) == VS_OK)
        vs_manifest_fini(&back);
    else if (st != VS_OK)
        unlink(res->manifest_path);
    return st;
}

/* ---- the distributed build (builder.h: TRAIN, ENCODE, MERGE) ------------------------------------- */

static vs_status work_path(const build_t *b, const char *name, char out[PATH_MAX], char *err)
{
    if (snprintf(out, PATH_MAX, "%s/" WORK_DIR "/%s", b->dir, name) >= PATH_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s/" WORK_DIR "/%s: path too long", b->dir, name);
    return VS_OK;
}

/* First row of worker i's slice of n rows among W: i*n/W rounded down to a multiple of the assignment's
 * block (VS_BUILDER_CHUNK_ALIGN), so a slice assigns its rows in the blocks a one-process build uses; n for
 * i = W. */
static size_t slice_begin(size_t n, uint32_t W, uint32_t i)
{
    if (i >= W)
        return n;
    size_t r = (size_t)((unsigned __int128)n * i / W);
    return r / VS_BUILDER_CHUNK_ALIGN * VS_BUILDER_CHUNK_ALIGN;
}

static const char *json_str(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The fingerprint without the trained state: what a finished version's train.json is compared with.
 * Leaves b->fingerprint so: call make_fingerprint afterwards for the full one. */
static vs_status inputs_fingerprint(build_t *b, char *out, size_t n, char *err)
{
    uint32_t keep = b->trained_crc;
    size_t keep_rows = b->n_sample;
    b->trained_crc = 0;
    b->n_sample = b->n_train; /* selection sampling takes exactly n_train rows */
    vs_status st = make_fingerprint(b, err);
    b->trained_crc = keep;
    b->n_sample = keep_rows;
    /* and what decides the manifest's search defaults, as check_immutable compares them */
    const vs_builder_opts_t *o = b->o;
    if (st == VS_OK &&
        snprintf(out, n, "%s tune=%g/%u/%zu/%s", b->fingerprint, o->target_recall, o->tune_k ? o->tune_k : 10,
                 o->tune_n ? o->tune_n : 500, o->tune_queries_path ? o->tune_queries_path : "base-sample") >=
            (int)n)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "the build's inputs and options are too long to record");
    return st;
}

/* A distributed stage on a directory holding a finished version: with resume and train.json naming
 * these inputs, nothing to do (1); else VS_ERR_ALREADY_EXISTS. 0 when there is no manifest. */
static void remove_work(const build_t *b);

static vs_status finished_version(build_t *b, const char *manifest, int *done, char *err)
{
    *done = 0;
    if (access(manifest, F_OK) != 0)
        return VS_OK;
    char path[PATH_MAX], inputs[sizeof b->fingerprint + PATH_MAX + 64];
    vs_status st = work_path(b, "train.json", path, err);
    if (st == VS_OK)
        st = inputs_fingerprint(b, inputs, sizeof inputs, err);
    if (st != VS_OK)
        return st;
    cJSON *j = b->o->resume ? read_json(path) : NULL;
    const char *got = json_str(j, "inputs");
    *done = got && strcmp(got, inputs) == 0;
    cJSON_Delete(j);
    if (*done) {
        note(b, "version %s is built (its manifest exists) from these inputs: nothing to do", b->o->version);
        b->nothing_to_do = 1;
        if (b->o->stage == VS_BUILD_MERGE)
            remove_work(b); /* a merge that stopped between the manifest and the clean-up */
        return VS_OK;
    }
    return vs_errf(err, VS_ERR_ALREADY_EXISTS,
                   "%s holds a built version %s, and versions are immutable: build under a new version name%s",
                   b->dir, b->o->version,
                   b->o->resume ? " (--resume: these inputs or options are not the ones it was built from)" : "");
}

static vs_status load_trained(build_t *b, char *err);

/* TRAIN: the trained state and train.json (written last); with resume, one this build made is kept. */
static vs_status stage_train(build_t *b, char *err)
{
    char path[PATH_MAX], json[PATH_MAX], num[32], inputs[sizeof b->fingerprint + PATH_MAX + 64];
    vs_status st = work_path(b, "trained.vsidx", path, err);
    if (st == VS_OK)
        st = work_path(b, "train.json", json, err);
    if (st != VS_OK)
        return st;
    if (b->o->resume) {
        char e2[VS_ERR_LEN];
        if (load_trained(b, e2) == VS_OK) { /* the checks a worker makes: this build's trained state */
            note(b, "trained state kept (%s matches this build)", json);
            return VS_OK;
        }
        /* not this build's (or none): train afresh, from an untrained index */
        vs_index_destroy(b->trained);
        b->trained = NULL;
        b->n_sample = 0;
        b->trained_crc = 0;
        st = vs_index_create(b->d, b->o->metric, b->o->factory, &b->trained, err);
        if (st != VS_OK)
            return st;
    }
    if (unlink(json) != 0 && errno != ENOENT)
        return vs_errf(err, VS_ERR_IO, "%s: %s", json, strerror(errno));
    st = train(b, err);
    if (st == VS_OK)
        st = trained_crc(b, err);
    if (st == VS_OK)
        st = inputs_fingerprint(b, inputs, sizeof inputs, err);
    if (st == VS_OK)
        st = make_fingerprint(b, err);
    if (st == VS_OK)
        st = vs_index_save(b->trained, path, b->o->model_version ? b->o->model_version : "",
                           b->o->build_time_unix, err);
    if (st != VS_OK)
        return st;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(j, "format", TRAIN_FORMAT);
    snprintf(num, sizeof num, "%zu", b->n_sample);
    cJSON_AddStringToObject(j, "train_rows", num);
    snprintf(num, sizeof num, "0x%08x", b->trained_crc);
    cJSON_AddStringToObject(j, "trained_crc32c", num);
    cJSON_AddStringToObject(j, "fingerprint", b->fingerprint);
    cJSON_AddStringToObject(j, "inputs", inputs);
    return write_json(json, j, err);
}

/* ENCODE and MERGE: the trained state TRAIN wrote, checked against this build's inputs and options. */
static vs_status load_trained(build_t *b, char *err)
{
    char path[PATH_MAX], json[PATH_MAX];
    vs_status st = work_path(b, "trained.vsidx", path, err);
    if (st == VS_OK)
        st = work_path(b, "train.json", json, err);
    if (st != VS_OK)
        return st;
    cJSON *j = read_json(json);
    const char *fmt = json_str(j, "format"), *rows = json_str(j, "train_rows"), *crc = json_str(j, "trained_crc32c");
    const char *fp = json_str(j, "fingerprint");
    if (!fmt || strcmp(fmt, TRAIN_FORMAT) != 0 || !rows || !crc || !fp) {
        cJSON_Delete(j);
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                       "%s: no trained state (run --stage train first, and wait for it to finish)", json);
    }
    vs_index_t *t = NULL;
    st = vs_index_load(path, &t, err);
    if (st == VS_OK) {
        vs_index_destroy(b->trained);
        b->trained = t;
        b->n_sample = (size_t)strtoull(rows, NULL, 10);
        st = trained_crc(b, err);
    }
    if (st == VS_OK && b->trained_crc != (uint32_t)strtoul(crc, NULL, 16))
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: trained state CRC 0x%08x, %s says %s", path, b->trained_crc, json, crc);
    if (st == VS_OK)
        st = make_fingerprint(b, err);
    if (st == VS_OK && strcmp(fp, b->fingerprint) != 0)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                     "%s was trained for other inputs or options than these (every stage takes the same "
                     "flags): %s",
                     json, fp);
    cJSON_Delete(j);
    return st;
}

static void worker_names(uint32_t i, char part[64], char lists[64], char marker[64])
{
    snprintf(part, 64, "w%u.vsidx", i);
    snprintf(lists, 64, "w%u.lists", i);
    snprintf(marker, 64, "w%u.done", i);
}

/* Worker i's marker, checked: same build, same W, same slice, and (check_files) its two files with the
 * recorded sizes and CRCs. 1 when it holds. */
static int worker_done(build_t *b, uint32_t i, int check_files)
{
    char part[64], lists[64], marker[64], path[PATH_MAX], e[VS_ERR_LEN], want[96];
    worker_names(i, part, lists, marker);
    if (work_path(b, marker, path, e) != VS_OK)
        return 0;
    cJSON *j = read_json(path);
    const char *fmt = json_str(j, "format"), *fp = json_str(j, "fingerprint");
    snprintf(want, sizeof want, "%u/%u %zu-%zu", i, b->o->n_workers, slice_begin(b->n, b->o->n_workers, i),
             slice_begin(b->n, b->o->n_workers, i + 1));
    int ok = fmt && strcmp(fmt, WORKER_FORMAT) == 0 && fp && strcmp(fp, b->fingerprint) == 0 &&
             json_str(j, "slice") && strcmp(json_str(j, "slice"), want) == 0;
    const char *names[2] = {part, lists}, *keys[2] = {"part_crc32c", "lists_crc32c"};
    for (int k = 0; ok && check_files && k < 2; k++) {
        uint64_t size;
        uint32_t crc;
        char got[16];
        ok = json_str(j, keys[k]) && work_path(b, names[k], path, e) == VS_OK &&
             vs_file_crc32c(path, &size, &crc, e) == VS_OK;
        snprintf(got, sizeof got, "0x%08x", crc);
        ok = ok && strcmp(got, json_str(j, keys[k])) == 0;
    }
    cJSON_Delete(j);
    return ok;
}

/* ENCODE: worker i's slice into w<i>.vsidx and w<i>.lists, then its marker. */
static vs_status stage_encode(build_t *b, char *err)
{
    const uint32_t W = b->o->n_workers, i = b->o->worker;
    char part[64], lists[64], marker[64], ppath[PATH_MAX], lpath[PATH_MAX], mpath[PATH_MAX], num[32];
    worker_names(i, part, lists, marker);
    vs_status st = work_path(b, part, ppath, err);
    if (st == VS_OK)
        st = work_path(b, lists, lpath, err);
    if (st == VS_OK)
        st = work_path(b, marker, mpath, err);
    if (st == VS_OK)
        st = load_trained(b, err);
    if (st != VS_OK)
        return st;
    if (b->o->resume && worker_done(b, i, 1)) {
        note(b, "worker %u of %u: kept (its marker matches this build)", i, W);
        return VS_OK;
    }
    if (unlink(mpath) != 0 && errno != ENOENT)
        return vs_errf(err, VS_ERR_IO, "%s: %s", mpath, strerror(errno));
    const size_t r0 = slice_begin(b->n, W, i), r1 = slice_begin(b->n, W, i + 1), ns = r1 - r0;
    const vs_ivf_t *ivf = vs_index_impl_ivf(b->trained);
    float *x = malloc(b->chunk * b->d * sizeof(float));
    int64_t *ids = malloc(b->chunk * sizeof(int64_t));
    int32_t *lab = malloc((ns ? ns : 1) * sizeof(int32_t));
    vs_index_t *frag = NULL;
    if (!x || !ids || !lab)
        st = vs_errf(err, VS_ERR_NOMEM, "out of memory for the list ids of %zu rows", ns);
    if (st == VS_OK)
        st = vs_index_clone_empty(b->trained, &frag, err);
    stage_begin(b, "encode", ns);
    for (size_t r = r0; r < r1 && st == VS_OK; r += b->chunk) {
        size_t m = r1 - r < b->chunk ? r1 - r : b->chunk;
        st = vs_vecfile_read_f32(b->vf, r, m, x, err);
        if (st == VS_OK)
            st = check_rows(b, x, r, m, err);
        if (st == VS_OK)
            st = vs_ivf_assign(ivf, m, x, b->n_threads, b->o->assign_exact, lab + (r - r0), err);
        for (size_t k = 0; k < m; k++)
            ids[k] = row_id(b, r + k);
        if (st == VS_OK)
            st = vs_index_add_lists(frag, m, x, ids, lab + (r - r0), b->n_threads, NULL, err);
        stage_update(b, r + m - r0, ns);
    }
    stage_end(b, ns);
    if (st == VS_OK)
        st = vs_index_save(frag, ppath, "", 0, err);
    if (st == VS_OK) {
        FILE *f = fopen(lpath, "wb");
        int ok = f && fwrite(lab, sizeof *lab, ns, f) == ns;
        ok = f && fclose(f) == 0 && ok;
        if (!ok)
            st = vs_errf(err, VS_ERR_IO, "%s: write failed: %s", lpath, strerror(errno));
    }
    vs_index_destroy(frag);
    free(x);
    free(ids);
    free(lab);
    uint64_t size;
    uint32_t pcrc = 0, lcrc = 0;
    if (st == VS_OK)
        st = vs_file_crc32c(ppath, &size, &pcrc, err);
    if (st == VS_OK)
        st = vs_file_crc32c(lpath, &size, &lcrc, err);
    if (st != VS_OK)
        return st;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(j, "format", WORKER_FORMAT);
    char slice[96];
    snprintf(slice, sizeof slice, "%u/%u %zu-%zu", i, W, r0, r1);
    cJSON_AddStringToObject(j, "slice", slice);
    snprintf(num, sizeof num, "0x%08x", pcrc);
    cJSON_AddStringToObject(j, "part_crc32c", num);
    snprintf(num, sizeof num, "0x%08x", lcrc);
    cJSON_AddStringToObject(j, "lists_crc32c", num);
    cJSON_AddStringToObject(j, "fingerprint", b->fingerprint);
    b->rows_encoded = ns;
    return write_json(mpath, j, err);
}

/* MERGE, before routing: every worker's marker, and each row's list from the workers' list files. */
static vs_status gather_lists(build_t *b, char *err)
{
    const uint32_t W = b->o->n_workers;
    b->lists = malloc(b->n * sizeof *b->lists);
    b->list_sizes = calloc(b->spec.nlist, sizeof *b->list_sizes);
    if (!b->lists || !b->list_sizes)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory for the list ids of %zu vectors", b->n);
    for (uint32_t i = 0; i < W; i++) {
        char part[64], lists[64], marker[64], path[PATH_MAX];
        worker_names(i, part, lists, marker);
        if (!worker_done(b, i, 0))
            return vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                           "worker %u of %u has not finished this build (no matching " WORK_DIR "/%s): run "
                           "--stage encode --worker %u first",
                           i, W, marker, i);
        const size_t r0 = slice_begin(b->n, W, i), r1 = slice_begin(b->n, W, i + 1);
        vs_status st = work_path(b, lists, path, err);
        if (st != VS_OK)
            return st;
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(b->lists + r0, sizeof *b->lists, r1 - r0, f) : 0;
        int extra = f && fgetc(f) != EOF;
        if (f)
            fclose(f);
        if (!f || got != r1 - r0 || extra)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: expected %zu list ids", path, r1 - r0);
        cJSON *j = NULL;
        char mpath[PATH_MAX], want[16];
        uint32_t crc = vs_crc32c(0, b->lists + r0, (r1 - r0) * sizeof *b->lists);
        snprintf(want, sizeof want, "0x%08x", crc);
        if (work_path(b, marker, mpath, err) == VS_OK)
            j = read_json(mpath);
        int same = json_str(j, "lists_crc32c") && strcmp(json_str(j, "lists_crc32c"), want) == 0;
        cJSON_Delete(j);
        if (!same)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: its CRC32C %s is not the one its worker recorded", path, want);
    }
    for (size_t r = 0; r < b->n; r++) {
        if (b->lists[r] < 0 || (uint32_t)b->lists[r] >= b->spec.nlist)
            return vs_errf(err, VS_ERR_CORRUPT, "row %zu: list %d out of range", r, b->lists[r]);
        b->list_sizes[b->lists[r]]++;
    }
    return VS_OK;
}

/* One merge pass: partitions [p0, p1) not yet done take, worker by worker (row order), list by list, the
 * entries routed to them from the workers' parts; the same content an add pass stores. */
static vs_status merge_pass(build_t *b, uint32_t p0, uint32_t p1, char *err)
{
    const uint32_t g = p1 - p0, W = b->o->n_workers;
    uint64_t total = 0;
    vs_status st = open_group(b, p0, p1, &total, err);
    size_t cap = 0, *start = calloc((size_t)g + 1, sizeof(size_t)), *fill = calloc((size_t)g + 1, sizeof(size_t));
    uint32_t *pos = NULL, *pp = NULL;
    if (!start || !fill)
        st = vs_errf(err, VS_ERR_NOMEM, "out of memory");
    char what[64] = "merge";
    if (g < b->P)
        snprintf(what, sizeof what, "merge p%u-%u", p0, p1 - 1);
    stage_begin(b, what, total);
    uint64_t merged = 0;
    for (uint32_t i = 0; i < W && st == VS_OK; i++) {
        char part[64], lists[64], marker[64], path[PATH_MAX];
        worker_names(i, part, lists, marker);
        vs_index_t *f = NULL;
        st = work_path(b, part, path, err);
        if (st == VS_OK)
            st = vs_index_load(path, &f, err);
        if (st != VS_OK)
            break;
        const size_t rows = slice_begin(b->n, W, i + 1) - slice_begin(b->n, W, i);
        const vs_ivf_t *fi = vs_index_impl_ivf(f);
        if (!fi || vs_index_count(f) != rows)
            st = vs_errf(err, VS_ERR_CORRUPT, "%s: %zu vectors, its slice has %zu rows", path, vs_index_count(f), rows);
        for (uint32_t l = 0; st == VS_OK && l < b->spec.nlist; l++) {
            const size_t nl = vs_ivf_list_size(fi, l);
            if (nl == 0)
                continue;
            if (b->list_part) { /* cluster: whole lists */
                uint32_t p = b->list_part[l];
                if (p >= p0 && p < p1 && !b->parts[p].done) {
                    st = vs_index_append_list(b->parts[p].idx, f, l, NULL, 0, err);
                    merged += nl;
                }
                continue;
            }
            if (nl > cap) {
                free(pos);
                free(pp);
                cap = nl;
                pos = malloc(cap * sizeof *pos);
                pp = malloc(cap * sizeof *pp);
                if (!pos || !pp) {
                    st = vs_errf(err, VS_ERR_NOMEM, "out of memory for a list of %zu", nl);
                    cap = 0;
                    break;
                }
            }
            /* hash: a counting sort of the list's entries by partition, stable (row order) */
            const int64_t *ids = vs_ivf_list_ids(fi, l);
            memset(start, 0, ((size_t)g + 1) * sizeof(size_t));
            for (size_t e = 0; e < nl; e++) {
                uint32_t p = vs_hash_partition(ids[e], b->P);
                pp[e] = p >= p0 && p < p1 && !b->parts[p].done ? p - p0 : UINT32_MAX;
                if (pp[e] != UINT32_MAX)
                    start[pp[e] + 1]++;
            }
            for (uint32_t k = 0; k < g; k++)
                start[k + 1] += start[k];
            memcpy(fill, start, ((size_t)g + 1) * sizeof(size_t));
            for (size_t e = 0; e < nl; e++)
                if (pp[e] != UINT32_MAX)
                    pos[fill[pp[e]]++] = (uint32_t)e;
            for (uint32_t k = 0; k < g && st == VS_OK; k++)
                if (start[k + 1] > start[k])
                    st = vs_index_append_list(b->parts[p0 + k].idx, f, l, pos + start[k], start[k + 1] - start[k],
                                              err);
            merged += start[g];
        }
        vs_index_destroy(f);
        stage_update(b, merged, total);
    }
    stage_end(b, total);
    /* with attributes: each partition's rows in row order (its add order in a one-process build) */
    for (size_t r = 0; st == VS_OK && b->attrs && r < b->n; r++) {
        uint32_t p = row_partition(b, r);
        if (p >= p0 && p < p1 && !b->parts[p].done)
            b->parts[p].rows[b->parts[p].n_rows++] = r;
    }
    for (uint32_t p = p0; p < p1; p++)
        if (b->parts[p].idx)
            vs_index_append_done(b->parts[p].idx);
    for (uint32_t p = p0; st == VS_OK && p < p1; p++)
        if (!b->parts[p].done && vs_index_count(b->parts[p].idx) != b->parts[p].n_vectors)
            st = vs_errf(err, VS_ERR_CORRUPT, "partition %u: %zu vectors merged, %llu routed to it", p,
                         vs_index_count(b->parts[p].idx), (unsigned long long)b->parts[p].n_vectors);
    free(pos);
    free(pp);
    free(start);
    free(fill);
    return save_group(b, p0, p1, st, err);
}

/* After MERGE wrote the manifest: the workers' files and the trained state go; train.json stays. */
static void remove_work(const build_t *b)
{
    char path[PATH_MAX], e[VS_ERR_LEN];
    for (uint32_t i = 0; i < b->o->n_workers; i++) {
        char names[3][64];
        worker_names(i, names[0], names[1], names[2]);
        for (int k = 0; k < 3; k++)
            if (work_path(b, names[k], path, e) == VS_OK)
                unlink(path);
    }
    if (work_path(b, "trained.vsidx", path, e) == VS_OK)
        unlink(path);
}

/* The distributed stages, after validate: each checks the finished-version rule first. */
static vs_status run_stage(build_t *b, vs_builder_result_t *res, const char *manifest, char *err)
{
    const vs_builder_opts_t *o = b->o;
    if (b->spec.type != VS_INDEX_IVF)
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "the distributed build splits IVF indexes only, not \"%s\" (an HNSW graph is built in one "
                       "process: leave out --stage)",
                       o->factory);
    if (o->stage != VS_BUILD_TRAIN && (o->n_workers < 1 || o->n_workers > 65536))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--workers %u is out of range 1..65536", o->n_workers);
    if (o->stage == VS_BUILD_ENCODE && o->worker >= o->n_workers)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--worker %u is out of range 0..%u", o->worker,
                       o->n_workers - 1);
    char wdir[PATH_MAX];
    int done = 0;
    vs_status st = finished_version(b, manifest, &done, err);
    if (st != VS_OK || done)
        return st;
    if (snprintf(wdir, sizeof wdir, "%s/" WORK_DIR, b->dir) >= (int)sizeof wdir)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: path too long", b->dir);
    st = make_dir(wdir, err);
    if (st != VS_OK)
        return st;
    if (o->stage == VS_BUILD_TRAIN)
        return stage_train(b, err);
    if (o->stage == VS_BUILD_ENCODE)
        return stage_encode(b, err);
    st = load_trained(b, err);
    if (st == VS_OK)
        st = gather_lists(b, err);
    if (st == VS_OK)
        st = route(b, err);
    if (st == VS_OK)
        st = make_fingerprint(b, err);
    if (st == VS_OK && unlink(manifest) != 0 && errno != ENOENT)
        st = vs_errf(err, VS_ERR_IO, "%s: %s", manifest, strerror(errno));
    if (st == VS_OK) {
        remove_stale(b);
        st = encode(b, merge_pass, err);
    }
    if (st == VS_OK)
        st = finish(b, res, err);
    if (st == VS_OK)
        remove_work(b);
    return st;
}

vs_status vs_builder_run(const vs_builder_opts_t *opts, vs_builder_result_t *out, char err[VS_ERR_LEN])
{
    build_t b;
    memset(&b, 0, sizeof b);
    b.o = opts;
    b.pr = opts->progress;
    vs_builder_result_t res;
    memset(&res, 0, sizeof res);
    char manifest[PATH_MAX] = "";
    vs_status st = validate(&b, err);
    if (st == VS_OK)
        st = make_dir(opts->out_dir, err);
    if (st == VS_OK)
        st = make_dir(b.dir, err);
    if (st == VS_OK)
        st = path_in_dir(&b, "manifest.json", manifest, err);
    if (st == VS_OK && opts->stage != VS_BUILD_ALL) {
        st = run_stage(&b, &res, manifest, err);
        goto out;
    }
    if (st == VS_OK)
        st = train(&b, err);
    if (st == VS_OK)
        st = trained_crc(&b, err);
    if (st == VS_OK)
        st = assign(&b, err);
    if (st == VS_OK)
        st = route(&b, err);
    if (st == VS_OK)
        st = make_fingerprint(&b, err);
    if (st == VS_OK)
        st = check_immutable(&b, manifest, err);
    /* the first write to the version: from here on it has no manifest until it is complete (for IVF every
     * row has been read and checked by now, so bad input never costs an earlier version its manifest) */
    if (st == VS_OK && unlink(manifest) != 0 && errno != ENOENT)
        st = vs_errf(err, VS_ERR_IO, "%s: %s", manifest, strerror(errno));
    if (st == VS_OK) {
        remove_stale(&b);
        st = encode(&b, add_pass, err);
    }
    if (st == VS_OK)
        st = finish(&b, &res, err);
out:
    if (st == VS_OK) {
        res.rows_encoded = b.rows_encoded;
        res.nothing_to_do = b.nothing_to_do;
        res.n_vectors = b.n;
        res.dim = b.d;
        res.n_partitions = b.P;
        res.partitions_built = b.built;
        res.partitions_resumed = b.resumed;
        res.n_passes = b.passes;
        res.train_rows = b.n_sample;
        if (out)
            *out = res;
    }
    for (uint32_t p = 0; b.parts && p < b.P; p++) {
        vs_index_destroy(b.parts[p].idx);
        free(b.parts[p].rows);
    }
    free(b.parts);
    vs_attrs_destroy(b.attrs);
    vs_index_destroy(b.trained);
    vs_vecfile_close(b.vf);
    vs_ids_file_close(&b.ids);
    free(b.sample);
    free(b.lists);
    free(b.list_part);
    free(b.list_sizes);
    return st;
}
