/* shard.c: versions held by a shard and the Search/Info request handling (shard.h). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/idset.h"
#include "common/net/pbfilter.h"
#include "shard/index/attrs.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "shard/index/ivf.h"
#include "shard/index/refine_disk.h"
#include "common/cluster/manifest.h"
#include "shard/server/shard.h"
#include "vecshard/v1/shard.pb-c.h"

/* What names a file on its volume: size, mtime (ns), inode, device. */
typedef struct file_ident {
    unsigned long long size, ino, dev;
    long long mtime_ns;
} file_ident_t;

typedef struct version {
    char name[VS_NAME_LEN];
    uint32_t partition;
    uint32_t partitions_total;
    char partitioning[16];
    vs_version_state state;
    char error[VS_ERR_LEN];
    vs_index_t *idx;             /* READY only */
    vs_search_params_t defaults; /* the manifest's search_defaults (0 = the index's own default) */
    atomic_int refs;             /* the registry's + one per search */
    /* fresh writes (opts.fresh_capacity > 0, IVF): the writes applied since the version was built */
    vs_fresh_t *fresh;        /* set before READY, NULL when the version takes no writes */
    uint32_t *list_partition; /* cluster partitioning: the owner of each IVF list */
    char model_version[VS_NAME_LEN];
    uint64_t log_from;        /* the first log sequence not folded into the version */
    pthread_mutex_t apply_mu; /* one applier at a time; guards log_next, counts */
    pthread_cond_t applied;   /* broadcast when log_next moves (read-your-writes waits on it) */
    uint64_t log_next;        /* the next sequence to apply */
    uint64_t log_pending;     /* the stream's messages after log_next - 1 (the follower's last word) */
    vs_applier_counts_t counts;
    int refine_verified;       /* refine on disk: the scrub checked the section (under the shard's mu) */
    double verified_at;        /* vs_now_s() of that check */
    double scrub_retry_at;     /* after an I/O error: not before then (vs_now_s()) */
    char index_path[PATH_MAX]; /* refine on disk: the index file, the scrub's record beside it (else "") */
    char content_id[17];       /* the index file's content id, which the record names */
    file_ident_t loaded;       /* the index file as it was loaded, which the record names */
} version_t;

struct vs_shard {
    char cluster[VS_NAME_LEN], replica_id[VS_NAME_LEN], address[VS_NAME_LEN], instance_id[64];
    size_t n_cpus, max_batch;
    int skip_crc, refine_on_disk;
    atomic_ullong scrub_failed, scrub_errors, scrub_verified;
    vs_refine_disk_stats_t disk_gone; /* refine reads of versions unloaded since (under mu) */
    int64_t started_at_ms;
    pthread_mutex_t mu; /* versions[], active, state */
    version_t *versions[VS_SHARD_MAX_VERSIONS];
    version_t *active;
    vs_shard_state state;
    atomic_size_t in_flight;
    double slow_s; /* opts.slow_request_ms in seconds; 0 = off */
    void (*on_stage)(void *, vs_shard_stage, double);
    void *stage_user;
    size_t fresh_capacity;
    atomic_ullong log_applied, log_rejected;
    pthread_mutex_t log_mu; /* the rate limit of per-search log records */
    vs_log_limit_t search_log;
};

static void version_unref(version_t *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) {
        vs_fresh_destroy(v->fresh); /* borrows idx */
        vs_index_destroy(v->idx);
        free(v->list_partition);
        pthread_mutex_destroy(&v->apply_mu);
        pthread_cond_destroy(&v->applied);
        free(v);
    }
}

vs_status vs_shard_create(const vs_shard_opts_t *o, vs_shard_t **out, char err[VS_ERR_LEN])
{
    vs_shard_t *sh = calloc(1, sizeof *sh);
    if (!sh)
        return vs_errf(err, VS_ERR_NOMEM, "shard: out of memory");
    snprintf(sh->cluster, sizeof sh->cluster, "%s", o && o->cluster ? o->cluster : "");
    sh->slow_s = o && o->slow_request_ms > 0 ? o->slow_request_ms * 1e-3 : 0;
    sh->on_stage = o ? o->on_stage : NULL;
    sh->stage_user = o ? o->stage_user : NULL;
    pthread_mutex_init(&sh->log_mu, NULL);
    snprintf(sh->replica_id, sizeof sh->replica_id, "%s", o && o->replica_id ? o->replica_id : "");
    snprintf(sh->instance_id, sizeof sh->instance_id, "%s", o && o->instance_id ? o->instance_id : "");
    snprintf(sh->address, sizeof sh->address, "%s", o && o->address ? o->address : "");
    sh->n_cpus = o && o->n_cpus ? o->n_cpus : vs_parallel_cpus();
    sh->max_batch = o && o->max_batch ? o->max_batch : VS_SHARD_DEFAULT_MAX_BATCH;
    sh->skip_crc = o ? o->skip_crc : 0;
    sh->refine_on_disk = o ? o->refine_on_disk : 0;
    sh->fresh_capacity = o ? o->fresh_capacity : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sh->started_at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    sh->state = VS_SHARD_LOADING;
    pthread_mutex_init(&sh->mu, NULL);
    vs_parallel_blas_single();
    *out = sh;
    return VS_OK;
}

void vs_shard_destroy(vs_shard_t *sh)
{
    if (!sh)
        return;
    for (size_t i = 0; i < VS_SHARD_MAX_VERSIONS; i++)
        version_unref(sh->versions[i]);
    pthread_mutex_destroy(&sh->log_mu);
    pthread_mutex_destroy(&sh->mu);
    free(sh);
}

const char *vs_shard_state_name(vs_shard_state s)
{
    return s == VS_SHARD_LOADING ? "LOADING" : s == VS_SHARD_SERVING ? "SERVING" : "DRAINING";
}

const char *vs_version_state_name(vs_version_state s)
{
    return s == VS_VERSION_LOADING ? "LOADING" : s == VS_VERSION_READY ? "READY" : "FAILED";
}

/* Index of version name in sh->versions or -1 (mu held). */
static int find_version(const vs_shard_t *sh, const char *name)
{
    for (int i = 0; i < VS_SHARD_MAX_VERSIONS; i++)
        if (sh->versions[i] && strcmp(sh->versions[i]->name, name) == 0)
            return i;
    return -1;
}

/* Puts v into a free slot or replaces a FAILED entry of the same name (mu held). Takes v. */
static vs_status install(vs_shard_t *sh, version_t *v, char err[VS_ERR_LEN])
{
    int i = find_version(sh, v->name);
    if (i >= 0) {
        if (sh->versions[i]->state != VS_VERSION_FAILED) {
            vs_status st = vs_errf(err, VS_ERR_ALREADY_EXISTS, "version %s is already %s on this shard",
                                   v->name, vs_version_state_name(sh->versions[i]->state));
            version_unref(v);
            return st;
        }
        version_unref(sh->versions[i]);
        sh->versions[i] = v;
        return VS_OK;
    }
    for (i = 0; i < VS_SHARD_MAX_VERSIONS; i++)
        if (!sh->versions[i]) {
            sh->versions[i] = v;
            return VS_OK;
        }
    version_unref(v);
    return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "shard holds %d versions already; unload one first",
                   VS_SHARD_MAX_VERSIONS);
}

static version_t *version_new(const char *name, uint32_t partition)
{
    version_t *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    snprintf(v->name, sizeof v->name, "%s", name);
    v->partition = partition;
    v->partitions_total = 1;
    snprintf(v->partitioning, sizeof v->partitioning, "hash");
    atomic_init(&v->refs, 1);
    pthread_mutex_init(&v->apply_mu, NULL);
    pthread_cond_init(&v->applied, NULL);
    v->log_from = v->log_next = 1;
    return v;
}

/* The scrub's record beside an index file whose refine section it verified (".verified"): one line naming
 * the file as the shard loaded it (content id, size, mtime, inode, device) and when it was verified. A shard
 * that loads the same file again takes the section as verified at that time, so a restart does not read the
 * whole section from disk again; the next scrub is due --scrub-interval-h after the recorded time. Any
 * change to the file (a rewrite, a copy, a touch) changes what the record names and the section is read
 * again; a file changed after the load is never recorded. Bit rot leaves the record matching: the periodic
 * scrub is what finds it. */
#define MARKER_FORMAT                                                                                        \
    "vecshard-refine-verified/1 content=%16s size=%llu mtime_ns=%lld ino=%llu dev=%llu at=%lld"
#define MARKER_SUFFIX ".verified"
#define MARKER_PATH_MAX (PATH_MAX + sizeof MARKER_SUFFIX)

/* The record's path: index_path (shorter than PATH_MAX) and MARKER_SUFFIX, into out. */
static void marker_path(const char *index_path, char out[MARKER_PATH_MAX])
{
    size_t n = strlen(index_path);
    memcpy(out, index_path, n);
    memcpy(out + n, MARKER_SUFFIX, sizeof MARKER_SUFFIX);
}

/* The identity of index_path now; 0, or -1 when it cannot be read. */
static int file_ident(const char *index_path, file_ident_t *out)
{
    struct stat sb;
    if (stat(index_path, &sb) != 0)
        return -1;
    *out = (file_ident_t){.size = (unsigned long long)sb.st_size,
                          .mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec,
                          .ino = (unsigned long long)sb.st_ino,
                          .dev = (unsigned long long)sb.st_dev};
    return 0;
}

static int same_ident(const file_ident_t *a, const file_ident_t *b)
{
    return a->size == b->size && a->mtime_ns == b->mtime_ns && a->ino == b->ino && a->dev == b->dev;
}

/* Writes the record for v (verified at unix time `at`), naming the file as loaded, unless it changed since
 * (then what was read may not be what is there). Best effort: a read-only volume only costs a re-read after
 * the next restart. */
static void marker_write(const version_t *v, time_t at)
{
    char marker[MARKER_PATH_MAX], tmp[MARKER_PATH_MAX + 32];
    file_ident_t now;
    if (file_ident(v->index_path, &now) != 0 || !same_ident(&now, &v->loaded)) {
        vs_log(VS_LOG_WARN,
               "shard: %s changed since it was loaded: its refine section is not recorded as verified",
               v->index_path);
        return;
    }
    marker_path(v->index_path, marker);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", marker, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        vs_log(VS_LOG_WARN, "shard: cannot record the verified refine section in %s: %s", marker,
               strerror(errno));
        return;
    }
    int bad = fprintf(f, MARKER_FORMAT "\n", v->content_id, v->loaded.size, v->loaded.mtime_ns, v->loaded.ino,
                      v->loaded.dev, (long long)at) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, marker) != 0) {
        vs_log(VS_LOG_WARN, "shard: cannot record the verified refine section in %s", marker);
        unlink(tmp);
    }
}

/* The age in seconds of the record beside index_path when it matches the file as loaded (ident) and its
 * content id; -1 without one. */
static double marker_age(const char *index_path, const file_ident_t *ident, const char *content)
{
    char marker[MARKER_PATH_MAX];
    marker_path(index_path, marker);
    FILE *f = fopen(marker, "r");
    if (!f)
        return -1;
    char cid[17] = "";
    file_ident_t rec;
    long long at;
    int got = fscanf(f, MARKER_FORMAT, cid, &rec.size, &rec.mtime_ns, &rec.ino, &rec.dev, &at);
    fclose(f);
    if (got != 6 || strcmp(cid, content) != 0 || !same_ident(&rec, ident))
        return -1;
    double age = difftime(time(NULL), (time_t)at);
    return age < 0 ? 0 : age;
}

/* Gives a version about to be READY its fresh state when the shard takes writes and the index is IVF or HNSW
 * (m: its manifest, or NULL for an index built in memory: hash partitioning, any model). */
static vs_status attach_fresh(const vs_shard_t *sh, version_t *v, vs_index_t *idx, const vs_manifest_t *m,
                              char *err)
{
    if (sh->fresh_capacity == 0 || (vs_index_impl_ivf(idx) == NULL && vs_index_impl_hnsw(idx) == NULL))
        return VS_OK;
    if (m && strcmp(m->partitioning, "cluster") == 0) {
        v->list_partition = malloc((m->nlist ? m->nlist : 1) * sizeof *v->list_partition);
        if (!v->list_partition)
            return vs_errf(err, VS_ERR_NOMEM, "no memory for the list owners of %u lists", m->nlist);
        for (uint32_t p = 0; p < m->n_partitions; p++)
            for (uint32_t i = 0; i < m->partitions[p].n_lists; i++)
                v->list_partition[m->partitions[p].lists[i]] = m->partitions[p].id;
    }
    snprintf(v->model_version, sizeof v->model_version, "%s", m ? m->model_version : "");
    pthread_mutex_lock(&v->apply_mu);
    v->log_from = v->log_next = (m ? m->log_upto : 0) + 1;
    pthread_mutex_unlock(&v->apply_mu);
    return vs_fresh_create(idx, sh->fresh_capacity, &v->fresh, err);
}

vs_status vs_shard_add_index(vs_shard_t *sh, const char *version, uint32_t partition, vs_index_t *idx,
                             char err[VS_ERR_LEN])
{
    if (!vs_version_name_valid(version)) {
        vs_index_destroy(idx);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "version name \"%s\" is not valid ([A-Za-z0-9._-], 1..64)", version);
    }
    version_t *v = version_new(version, partition);
    if (!v) {
        vs_index_destroy(idx);
        return vs_errf(err, VS_ERR_NOMEM, "shard: out of memory");
    }
    v->idx = idx;
    v->state = VS_VERSION_READY;
    vs_status st = attach_fresh(sh, v, idx, NULL, err);
    if (st != VS_OK) {
        version_unref(v);
        return st;
    }
    pthread_mutex_lock(&sh->mu);
    st = install(sh, v, err);
    pthread_mutex_unlock(&sh->mu);
    return st;
}

vs_status vs_shard_open_partition(const vs_manifest_t *m, uint32_t p, int skip_crc, int refine_on_disk,
                                  vs_index_t **out, char err[VS_ERR_LEN])
{
    const vs_manifest_partition_t *mp = vs_manifest_partition(m, p);
    if (!mp)
        return vs_errf(err, VS_ERR_NOT_FOUND, "version %s has no partition %u (it has %u)", m->version, p,
                       m->n_partitions);
    char path[PATH_MAX];
    vs_status pst = vs_manifest_path(m, mp->file, path, err);
    if (pst != VS_OK)
        return pst;
    if (mp->content_id[0]) {
        /* read once: vs_index_load verifies every section's CRC and the content id below binds them to
         * the manifest, so the whole-file CRC pass (a second read of the file) is not needed */
        struct stat sb;
        if (stat(path, &sb) != 0)
            return vs_errf(err, errno == ENOENT ? VS_ERR_NOT_FOUND : VS_ERR_IO, "%s: %s", path,
                           strerror(errno));
        if ((uint64_t)sb.st_size != mp->size_bytes)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: %llu bytes, the manifest says %llu", path,
                           (unsigned long long)sb.st_size, (unsigned long long)mp->size_bytes);
    } else if (!mp->has_crc32c && !skip_crc) {
        return vs_errf(err, VS_ERR_CORRUPT,
                       "manifest of %s records neither a content id nor a CRC32C for partition %u: nothing "
                       "ties %s to the version; rebuild it with this release's vecshard-build",
                       m->version, p, path);
    } else if (!skip_crc) {
        uint64_t size;
        uint32_t crc;
        vs_status st = vs_file_crc32c(path, &size, &crc, err);
        if (st != VS_OK)
            return st;
        if (size != mp->size_bytes)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: %llu bytes, the manifest says %llu", path,
                           (unsigned long long)size, (unsigned long long)mp->size_bytes);
        if (crc != mp->crc32c)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: CRC32C 0x%08x, the manifest says 0x%08x", path, crc,
                           mp->crc32c);
    }
    vs_index_t *idx;
    vs_index_load_opts_t lo = {.refine_on_disk = refine_on_disk};
    vs_status st = vs_index_load_opts(path, &lo, &idx, err);
    if (st != VS_OK)
        return st;
    char fac[VS_NAME_LEN], mfac[VS_NAME_LEN], content[17], trained[17];
    vs_factory_format(vs_index_spec(idx), fac, sizeof fac);
    vs_factory_spec_t mspec;
    if (vs_factory_parse(m->factory, &mspec, NULL) == VS_OK)
        vs_factory_format(&mspec, mfac, sizeof mfac);
    else
        snprintf(mfac, sizeof mfac, "%s", m->factory);
    vs_index_ids(idx, content, trained, NULL);
    if (mp->content_id[0] && strcmp(content, mp->content_id) != 0) {
        st = vs_errf(
            err, VS_ERR_CORRUPT,
            "%s: content id %s, the manifest of %s says %s for partition %u (another file than the one "
            "built for this version)",
            path, content, m->version, mp->content_id, p);
    } else if (m->trained_state_id[0] && strcmp(trained, m->trained_state_id) != 0) {
        st = vs_errf(
            err, VS_ERR_CORRUPT,
            "%s: trained state %s, the manifest of %s says %s (centroids or codebooks of another build)",
            path, trained, m->version, m->trained_state_id);
    } else if (strcmp(fac, mfac) != 0) {
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: index is %s, the manifest says %s", path, fac, mfac);
    } else if (vs_index_metric(idx) != m->metric || vs_index_dim(idx) != m->dim) {
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: index is %s dim %u, the manifest says %s dim %u", path,
                     vs_metric_name(vs_index_metric(idx)), vs_index_dim(idx), vs_metric_name(m->metric),
                     m->dim);
    } else if (vs_index_count(idx) != mp->n_vectors) {
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: %zu vectors, the manifest says %llu", path,
                     vs_index_count(idx), (unsigned long long)mp->n_vectors);
    }
    if (st != VS_OK) {
        vs_index_destroy(idx);
        return st;
    }
    *out = idx;
    return VS_OK;
}

/* Warm-up before READY: the version's stored tune queries (tune-queries.fvecs beside the manifest, at most
 * 64) are searched with its defaults, so the first client queries do not pay for cold scratch arenas and
 * first-touch page faults of the lists they scan. Best effort: a version without tune queries is READY
 * as soon as it is verified. */
static void warm_up(const vs_manifest_t *m, vs_index_t *idx, const vs_search_params_t *defaults)
{
    char path[PATH_MAX];
    if (vs_manifest_path(m, "tune-queries.fvecs", path, NULL) != VS_OK || access(path, R_OK) != 0)
        return;
    size_t n = 0;
    uint32_t d = 0;
    float *q = NULL;
    char err[VS_ERR_LEN];
    if (vs_vecfile_load_f32(path, &n, &d, &q, err) == VS_OK && d == vs_index_dim(idx) && n > 0) {
        size_t nq = n < 64 ? n : 64, k = 10;
        float *dist = malloc(nq * k * sizeof *dist);
        int64_t *ids = malloc(nq * k * sizeof *ids);
        if (dist && ids)
            (void)vs_index_search(idx, nq, q, k, defaults, 1, dist, ids, err);
        free(dist);
        free(ids);
    }
    free(q);
}

vs_status vs_shard_load(vs_shard_t *sh, const char *manifest_path, uint32_t partition,
                        char out_version[VS_NAME_LEN], char err[VS_ERR_LEN])
{
    vs_manifest_t m;
    vs_status st = vs_manifest_load(manifest_path, &m, err);
    if (st != VS_OK)
        return st;
    if (out_version)
        snprintf(out_version, VS_NAME_LEN, "%s", m.version);
    version_t *v = version_new(m.version, partition);
    if (!v) {
        vs_manifest_fini(&m);
        return vs_errf(err, VS_ERR_NOMEM, "shard: out of memory");
    }
    v->partitions_total = m.n_partitions;
    snprintf(v->partitioning, sizeof v->partitioning, "%s", m.partitioning);
    if (m.defaults.present)
        v->defaults = (vs_search_params_t){
            .nprobe = m.defaults.nprobe, .ef_search = m.defaults.ef_search, .k_factor = m.defaults.k_factor};
    v->state = VS_VERSION_LOADING;
    atomic_fetch_add(&v->refs, 1); /* ours while loading */
    pthread_mutex_lock(&sh->mu);
    st = install(sh, v, err);
    pthread_mutex_unlock(&sh->mu);
    if (st != VS_OK) {
        version_unref(v);
        vs_manifest_fini(&m);
        return st;
    }
    vs_index_t *idx = NULL;
    char lerr[VS_ERR_LEN] = "";
    st = vs_shard_open_partition(&m, partition, sh->skip_crc, sh->refine_on_disk, &idx, lerr);
    if (st == VS_OK)
        warm_up(&m, idx, &v->defaults);
    if (st == VS_OK && (st = attach_fresh(sh, v, idx, &m, lerr)) != VS_OK) {
        vs_index_destroy(idx);
        idx = NULL;
    }
    vs_refine_disk_stats_t ds;
    double age = -1;
    if (st == VS_OK && vs_index_refine_disk_stats(idx, &ds)) { /* the scrub's record, if it matches */
        const vs_manifest_partition_t *mp = vs_manifest_partition(&m, partition);
        char perr[VS_ERR_LEN], trained[17];
        if (mp && vs_manifest_path(&m, mp->file, v->index_path, perr) == VS_OK &&
            file_ident(v->index_path, &v->loaded) == 0) {
            vs_index_ids(idx, v->content_id, trained, NULL);
            age = marker_age(v->index_path, &v->loaded, v->content_id);
        } else {
            v->index_path[0] = '\0';
        }
    }
    vs_manifest_fini(&m);
    pthread_mutex_lock(&sh->mu);
    if (st == VS_OK) {
        v->idx = idx;
        v->state = VS_VERSION_READY;
        if (age >= 0) {
            v->refine_verified = 1;
            v->verified_at = vs_now_s() - age;
        }
    } else {
        v->state = VS_VERSION_FAILED;
        snprintf(v->error, sizeof v->error, "%s", lerr);
        vs_errf(err, st, "%s", lerr);
    }
    pthread_mutex_unlock(&sh->mu);
    if (age >= 0)
        vs_log(VS_LOG_INFO,
               "shard: version %s partition %u: refine section verified %.1f h ago (%s" MARKER_SUFFIX
               "); the scrub reads it again when that is --scrub-interval-h old",
               v->name, partition, age / 3600.0, v->index_path);
    version_unref(v);
    return st;
}

/* to += what; the uring and direct flags are not counts and stay as they are. */
static void add_disk_stats(vs_refine_disk_stats_t *to, const vs_refine_disk_stats_t *what)
{
    to->fetches += what->fetches;
    to->items += what->items;
    to->reads += what->reads;
    to->bytes += what->bytes;
    to->errors += what->errors;
    to->read_seconds += what->read_seconds;
}

vs_status vs_shard_unload(vs_shard_t *sh, const char *version, char err[VS_ERR_LEN])
{
    pthread_mutex_lock(&sh->mu);
    int i = find_version(sh, version);
    vs_status st = VS_OK;
    if (i < 0)
        st = vs_errf(err, VS_ERR_NOT_FOUND, "version %s is not held by this shard", version);
    else if (sh->versions[i] == sh->active)
        st =
            vs_errf(err, VS_ERR_FAILED_PRECONDITION, "version %s is active; activate another first", version);
    else if (sh->versions[i]->state == VS_VERSION_LOADING)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "version %s is still loading", version);
    version_t *v = NULL;
    vs_refine_disk_stats_t ds;
    if (st == VS_OK) {
        v = sh->versions[i];
        sh->versions[i] = NULL;
        if (v->idx && vs_index_refine_disk_stats(v->idx, &ds)) /* its reads stay counted */
            add_disk_stats(&sh->disk_gone, &ds);
    }
    pthread_mutex_unlock(&sh->mu);
    version_unref(v);
    return st;
}

void vs_shard_refine_disk_totals(vs_shard_t *sh, vs_refine_disk_stats_t *out)
{
    pthread_mutex_lock(&sh->mu);
    *out = sh->disk_gone;
    for (size_t i = 0; i < VS_SHARD_MAX_VERSIONS; i++) {
        vs_refine_disk_stats_t ds;
        const version_t *v = sh->versions[i];
        if (v && v->idx && vs_index_refine_disk_stats(v->idx, &ds))
            add_disk_stats(out, &ds);
    }
    pthread_mutex_unlock(&sh->mu);
}

vs_status vs_shard_activate(vs_shard_t *sh, const char *version, char err[VS_ERR_LEN])
{
    pthread_mutex_lock(&sh->mu);
    int i = find_version(sh, version);
    vs_status st = VS_OK;
    if (i < 0)
        st = vs_errf(err, VS_ERR_NOT_FOUND, "version %s is not held by this shard", version);
    else if (sh->versions[i]->state != VS_VERSION_READY)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "version %s is %s, not READY%s%s", version,
                     vs_version_state_name(sh->versions[i]->state), sh->versions[i]->error[0] ? ": " : "",
                     sh->versions[i]->error);
    if (st == VS_OK) {
        sh->active = sh->versions[i];
        if (sh->state == VS_SHARD_LOADING)
            sh->state = VS_SHARD_SERVING;
    }
    pthread_mutex_unlock(&sh->mu);
    return st;
}

void vs_shard_set_address(vs_shard_t *sh, const char *address)
{
    pthread_mutex_lock(&sh->mu);
    snprintf(sh->address, sizeof sh->address, "%s", address);
    pthread_mutex_unlock(&sh->mu);
}

vs_shard_state vs_shard_get_state(const vs_shard_t *sh)
{
    pthread_mutex_lock((pthread_mutex_t *)&sh->mu);
    vs_shard_state s = sh->state;
    pthread_mutex_unlock((pthread_mutex_t *)&sh->mu);
    return s;
}

void vs_shard_drain(vs_shard_t *sh)
{
    pthread_mutex_lock(&sh->mu);
    sh->state = VS_SHARD_DRAINING;
    pthread_mutex_unlock(&sh->mu);
}

size_t vs_shard_in_flight(const vs_shard_t *sh)
{
    return atomic_load(&((vs_shard_t *)sh)->in_flight);
}

/* Takes a reference on the version a request names ("" = active), or explains why not. */
static vs_status acquire(vs_shard_t *sh, const char *name, version_t **out, char err[VS_ERR_LEN])
{
    vs_status st = VS_OK;
    pthread_mutex_lock(&sh->mu);
    version_t *v = NULL;
    if (!name || !*name) {
        v = sh->active;
        if (!v)
            st = vs_errf(err, VS_ERR_UNAVAILABLE, "shard %s has no active version yet (loading)",
                         sh->replica_id);
    } else {
        int i = find_version(sh, name);
        if (i < 0) {
            char held[VS_ERR_LEN / 2] = "";
            size_t off = 0;
            for (int j = 0; j < VS_SHARD_MAX_VERSIONS; j++)
                if (sh->versions[j] && off < sizeof held - 1)
                    off += (size_t)snprintf(held + off, sizeof held - off, "%s%s", off ? ", " : "",
                                            sh->versions[j]->name);
            st = vs_errf(err, VS_ERR_NOT_FOUND,
                         "index version \"%.100s\" is not held by this shard (held: %s)", name,
                         off ? held : "none");
        } else {
            v = sh->versions[i];
        }
    }
    if (st == VS_OK && v->state == VS_VERSION_LOADING)
        st = vs_errf(err, VS_ERR_UNAVAILABLE, "index version %s is still loading", v->name);
    else if (st == VS_OK && v->state == VS_VERSION_FAILED)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "index version %s failed to load: %s", v->name,
                     v->error);
    if (st == VS_OK)
        atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&sh->mu);
    *out = st == VS_OK ? v : NULL;
    return st;
}

static Vecshard__V1__Metric metric_pb(vs_metric m)
{
    return m == VS_METRIC_L2   ? VECSHARD__V1__METRIC__METRIC_L2
           : m == VS_METRIC_IP ? VECSHARD__V1__METRIC__METRIC_INNER_PRODUCT
                               : VECSHARD__V1__METRIC__METRIC_COSINE;
}

/* Checks a decoded request against the version's index; fills params: the request's, with 0 fields from
 * the version's search defaults and nprobe clipped to nlist (*clipped = 1 then). */
static vs_status validate(const vs_shard_t *sh, const Vecshard__V1__ShardSearchRequest *r, const version_t *v,
                          vs_search_params_t *params, int *clipped, size_t *out_nq, char err[VS_ERR_LEN])
{
    const vs_index_t *idx = v->idx;
    uint32_t dim = vs_index_dim(idx);
    if (r->partition && r->partition->id != v->partition)
        return vs_errf(err, VS_ERR_NOT_FOUND,
                       "partition %u of version %s is not held here (this shard holds %u)", r->partition->id,
                       v->name, v->partition);
    if (r->dim != dim)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "dim = %u, but index version %s has dim %u", r->dim,
                       v->name, dim);
    if (r->n_queries == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "empty batch: no query vectors");
    if (r->n_queries % dim != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu floats is not a whole number of %u-dim queries",
                       r->n_queries, dim);
    size_t nq = r->n_queries / dim;
    if (nq > sh->max_batch)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "batch of %zu queries is above the limit of %zu", nq,
                       sh->max_batch);
    if (r->k == 0 || r->k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %u is out of range 1..%u", r->k, VS_TOPK_MAX_K);
    if (r->n_exclude_ids > VS_EXCLUDE_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu excluded ids is above the limit of %u",
                       r->n_exclude_ids, VS_EXCLUDE_MAX);
    memset(params, 0, sizeof *params);
    *clipped = 0;
    if (r->exact &&
        (r->params || r->lists_per_query || r->n_lists || r->n_exclude_ids || r->filter || r->group_by))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "an exact search takes no params, lists, exclude_ids, filter or group_by");
    if (r->params) {
        const vs_ivf_t *ivf = vs_index_impl_ivf(idx);
        float kf = r->params->k_factor;
        if (r->params->ef_search > VS_SHARD_MAX_EF_SEARCH)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "ef_search = %u is above %u", r->params->ef_search,
                           VS_SHARD_MAX_EF_SEARCH);
        if (r->params->quantizer_ef_search > VS_MAX_QUANTIZER_EF)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "quantizer_ef_search = %u is above %u",
                           r->params->quantizer_ef_search, VS_MAX_QUANTIZER_EF);
        if (!(kf == 0 || (kf >= 1 && kf <= VS_SHARD_MAX_K_FACTOR)))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor = %g is out of range 1..%g (0 = default)",
                           kf, VS_SHARD_MAX_K_FACTOR);
        const float fe = r->params->filter_exact_threshold;
        if (!(fe == 0 || (fe > 0 && fe <= 1)))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter_exact_threshold = %g is out of range (0, 1]",
                           (double)fe);
        params->filter_exact = fe;
        params->nprobe = r->params->nprobe;
        params->ef_search = r->params->ef_search;
        params->k_factor = kf;
        params->quantizer_ef_search = r->params->quantizer_ef_search;
        /* a client value larger than this version allows (a rollback to a smaller nlist) is clipped and
         * reported in the response, not an error on every query */
        if (ivf && params->nprobe > vs_ivf_nlist(ivf)) {
            params->nprobe = vs_ivf_nlist(ivf);
            *clipped = 1;
        }
    }
    const int with_lists = r->lists_per_query || r->n_lists;
    if (!with_lists && !params->nprobe)
        params->nprobe = v->defaults.nprobe;
    if (!params->ef_search)
        params->ef_search = v->defaults.ef_search;
    if (!params->k_factor)
        params->k_factor = v->defaults.k_factor;
    if (with_lists) {
        if (!vs_index_impl_ivf(idx))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "list ids given, but index version %s is not IVF",
                           v->name);
        if (r->params && (r->params->nprobe || r->params->quantizer_ef_search))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "give either lists or nprobe/quantizer_ef_search, not both");
        if (r->lists_per_query == 0 || r->n_lists != nq * r->lists_per_query)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu list ids for %zu queries x %u lists per query",
                           r->n_lists, nq, r->lists_per_query);
    }
    *out_nq = nq;
    return VS_OK;
}

const char *const vs_shard_stage_names[VS_SHARD_STAGE_N] = {"decode", "search", "encode"};

/* One log record about a search (rate-limited): slow, or failed on our side; names the request ids. */
static void log_search(vs_shard_t *sh, const Vecshard__V1__ShardSearchRequest *r, size_t nq, double ms,
                       vs_status st, const char *err)
{
    char ids[512] = "";
    size_t off = 0;
    for (size_t i = 0; i < r->n_request_ids && off < sizeof ids - 1; i++)
        off += (size_t)snprintf(ids + off, sizeof ids - off, "%s%s", i ? "," : "", r->request_ids[i]);
    pthread_mutex_lock(&sh->log_mu);
    if (st == VS_OK)
        vs_log_limited(&sh->search_log, VS_LOG_WARN, "search of %zu queries (%s) took %.1f ms; requests: %s",
                       nq, r->index_version[0] ? r->index_version : "active version", ms, ids[0] ? ids : "-");
    else
        vs_log_limited(&sh->search_log, VS_LOG_ERROR, "search of %zu queries failed (%s: %s); requests: %s",
                       nq, vs_status_name(st), err, ids[0] ? ids : "-");
    pthread_mutex_unlock(&sh->log_mu);
}

/* Read-your-writes: waits (up to wait_ms) until v has applied the log through seq. */
static vs_status wait_applied(version_t *v, uint64_t seq, int64_t wait_ms, char *err)
{
    if (!v->fresh)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                       "min_log_seq %llu: version %s takes no writes on this replica",
                       (unsigned long long)seq, v->name);
    struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, wait_ms);
    pthread_mutex_lock(&v->apply_mu);
    while (v->log_next <= seq && pthread_cond_timedwait(&v->applied, &v->apply_mu, &until) == 0) {
    }
    uint64_t next = v->log_next;
    pthread_mutex_unlock(&v->apply_mu);
    if (next > seq)
        return VS_OK;
    return vs_errf(
        err, VS_ERR_UNAVAILABLE,
        "version %s has applied the write log through %llu, not yet %llu (min_log_seq) after %lld ms",
        v->name, (unsigned long long)(next - 1), (unsigned long long)seq, (long long)wait_ms);
}

/* The search of a validated call with k results per query, through the version's fresh state when it
 * takes writes, on the lists the coordinator chose when it gave them. */
static vs_status search_version(const version_t *v, const Vecshard__V1__ShardSearchRequest *r, size_t nq,
                                size_t k, const vs_search_params_t *params, size_t threads, float *dist,
                                int64_t *ids, char *err)
{
    if (v->fresh && r->lists_per_query)
        return vs_fresh_search_lists(v->fresh, nq, r->queries, k, r->lists, r->lists_per_query,
                                     params->k_factor, params, threads, dist, ids, err);
    if (v->fresh)
        return vs_fresh_search(v->fresh, nq, r->queries, k, params, threads, dist, ids, err);
    if (r->lists_per_query)
        return vs_ivf_search_lists(vs_index_impl_ivf(v->idx), nq, r->queries, k, r->lists, r->lists_per_query,
                                   params->k_factor, params, threads, dist, ids, err);
    return vs_index_search(v->idx, nq, r->queries, k, params, threads, dist, ids, err);
}

/* group_by: searches for more candidates than k (4k, doubled while a query kept fewer than k and its
 * candidates ran out before the list did, up to VS_TOPK_MAX_K), looks up each candidate's group value (the
 * live copy's: fresh record or base item) and keeps, best first, at most size per value. */
static vs_status search_grouped(const version_t *v, const Vecshard__V1__ShardSearchRequest *r, size_t nq,
                                const vs_search_params_t *params, size_t threads, size_t field, uint32_t size,
                                float *out_dist, int64_t *out_ids, int64_t *out_groups, char *err)
{
    const size_t k = r->k;
    const float pad = vs_topk_pad_distance(vs_metric_larger_is_better(vs_index_metric(v->idx)));
    size_t kf = 4 * k < VS_TOPK_MAX_K ? 4 * k : VS_TOPK_MAX_K;
    vs_status st = VS_OK;
    for (;;) {
        float *d = malloc(nq * kf * sizeof *d);
        int64_t *ids = malloc(nq * kf * sizeof *ids), *g = malloc(nq * kf * sizeof *g),
                *scratch = malloc(4 * (k + 1) * sizeof *scratch);
        if (!d || !ids || !g || !scratch)
            st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for %zu x %zu group_by candidates", nq,
                         kf);
        if (st == VS_OK)
            st = search_version(v, r, nq, kf, params, threads, d, ids, err);
        if (st == VS_OK)
            st = v->fresh ? vs_fresh_group_values(v->fresh, v->idx, field, nq * kf, ids, g, err)
                          : vs_index_group_values(v->idx, field, nq * kf, ids, g, err);
        int again = 0;
        for (size_t i = 0; st == VS_OK && i < nq; i++) {
            size_t kept = vs_group_select(kf, d + i * kf, ids + i * kf, g + i * kf, k, size, pad,
                                          out_dist + i * k, out_ids + i * k, out_groups + i * k, scratch);
            again |= kept < k && ids[i * kf + kf - 1] >= 0; /* short, and more candidates exist */
        }
        free(d);
        free(ids);
        free(g);
        free(scratch);
        if (st != VS_OK || !again || kf >= VS_TOPK_MAX_K)
            return st;
        kf = 2 * kf < VS_TOPK_MAX_K ? 2 * kf : VS_TOPK_MAX_K;
    }
}

vs_status vs_shard_search_pb(vs_shard_t *sh, const uint8_t *req, size_t len, uint8_t **out, size_t *out_len,
                             char err[VS_ERR_LEN])
{
    return vs_shard_search_pb_within(sh, req, len, VS_SHARD_RYW_WAIT_MS, out, out_len, err);
}

vs_status vs_shard_search_pb_within(vs_shard_t *sh, const uint8_t *req, size_t len, int64_t max_wait_ms,
                                    uint8_t **out, size_t *out_len, char err[VS_ERR_LEN])
{
    const double t0 = vs_now_s();
    Vecshard__V1__ShardSearchRequest *r = vecshard__v1__shard_search_request__unpack(NULL, len, req);
    if (!r)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "malformed vecshard.v1.ShardSearchRequest (%zu bytes)",
                       len);
    version_t *v = NULL;
    vs_status st = acquire(sh, r->index_version, &v, err);
    if (st != VS_OK) {
        vecshard__v1__shard_search_request__free_unpacked(r, NULL);
        return st;
    }
    if (r->min_log_seq)
        st = wait_applied(v, r->min_log_seq,
                          max_wait_ms < 0                      ? 0
                          : max_wait_ms > VS_SHARD_RYW_WAIT_MS ? VS_SHARD_RYW_WAIT_MS
                                                               : max_wait_ms,
                          err);
    if (st != VS_OK) {
        version_unref(v);
        vecshard__v1__shard_search_request__free_unpacked(r, NULL);
        return st;
    }
    size_t in_flight = atomic_fetch_add(&sh->in_flight, 1) + 1;
    vs_search_params_t params;
    int clipped = 0;
    size_t nq = 0;
    float *dist = NULL;
    int64_t *ids = NULL;
    vs_idset_t *excl = NULL;
    int64_t *groups = NULL;
    vs_filter_spec_t spec;
    vs_filter_t filter;
    vs_filter_spec_init(&spec);
    size_t group_field = 0;
    uint32_t group_size = 0;
    st = validate(sh, r, v, &params, &clipped, &nq, err);
    if (st == VS_OK && r->n_exclude_ids) /* one set for every query of the call */
        st = vs_idset_create(r->exclude_ids, r->n_exclude_ids, &excl, err);
    params.exclude = excl;
    if (st == VS_OK && r->filter) { /* compiled once against this partition's attributes */
        st = vs_filter_spec_from_pb(r->filter, &spec, err);
        if (st == VS_OK)
            st = vs_filter_compile(&spec, vs_index_attrs(v->idx), &filter, err);
        if (st == VS_OK && filter.n_terms)
            params.filter = &filter;
    }
    if (st == VS_OK && r->group_by) {
        const vs_attrs_t *a = vs_index_attrs(v->idx);
        st = a ? vs_group_by_from_pb(r->group_by, vs_attrs_fields(a), vs_attrs_n_fields(a), r->k,
                                     &group_field, &group_size, err)
               : vs_errf(err, VS_ERR_INVALID_ARGUMENT, "group_by '%.64s': version %s has no attributes",
                         r->group_by->field, v->name);
    }
    if (st == VS_OK) {
        size_t k = r->k;
        dist = malloc(nq * k * sizeof *dist);
        ids = malloc(nq * k * sizeof *ids);
        groups = group_size ? malloc(nq * k * sizeof *groups) : NULL;
        if (!dist || !ids || (group_size && !groups))
            st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for %zu x %zu results", nq, k);
    }
    double t_search = vs_now_s();
    if (st == VS_OK && sh->on_stage)
        sh->on_stage(sh->stage_user, VS_SHARD_STAGE_DECODE, t_search - t0);
    if (st == VS_OK) {
        /* Split large batches over the cores that other calls leave free. */
        size_t threads = 1;
        if (nq >= 32) {
            threads = sh->n_cpus / in_flight;
            if (threads < 1)
                threads = 1;
            if (threads > nq / 16)
                threads = nq / 16;
        }
        if (r->exact) /* the recall monitor's reference: one thread, the version as built */
            st = vs_index_search_exact(v->idx, nq, r->queries, r->k, 1, dist, ids, err);
        else if (group_size)
            st = search_grouped(v, r, nq, &params, threads, group_field, group_size, dist, ids, groups, err);
        else
            st = search_version(v, r, nq, r->k, &params, threads, dist, ids, err);
    }
    vs_idset_destroy(excl);
    params.exclude = NULL;
    params.filter = NULL;
    vs_filter_spec_fini(&spec);
    double t_encode = vs_now_s();
    if (st == VS_OK && sh->on_stage)
        sh->on_stage(sh->stage_user, VS_SHARD_STAGE_SEARCH, t_encode - t_search);
    if (st == VS_OK) {
        Vecshard__V1__ShardSearchResponse resp = VECSHARD__V1__SHARD_SEARCH_RESPONSE__INIT;
        resp.nq = (uint32_t)nq;
        resp.k = r->k;
        resp.n_ids = resp.n_distances = nq * r->k;
        resp.ids = ids;
        resp.distances = dist;
        resp.index_version = v->name;
        resp.partition = v->partition;
        resp.metric = metric_pb(vs_index_metric(v->idx));
        Vecshard__V1__SearchParams applied = VECSHARD__V1__SEARCH_PARAMS__INIT;
        applied.nprobe = params.nprobe;
        applied.ef_search = params.ef_search;
        applied.k_factor = params.k_factor;
        applied.quantizer_ef_search = params.quantizer_ef_search;
        resp.applied_params = &applied;
        resp.params_clipped = clipped;
        if (groups) {
            resp.group_values = groups;
            resp.n_group_values = nq * r->k;
        }
        resp.filtered =
            r->filter != NULL; /* compiled and applied above (an empty filter: nothing to apply) */
        resp.exact = r->exact;
        size_t n = vecshard__v1__shard_search_response__get_packed_size(&resp);
        *out = malloc(n ? n : 1);
        if (!*out) {
            st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for a %zu-byte response", n);
        } else {
            *out_len = vecshard__v1__shard_search_response__pack(&resp, *out);
            if (sh->on_stage)
                sh->on_stage(sh->stage_user, VS_SHARD_STAGE_ENCODE, vs_now_s() - t_encode);
        }
    }
    free(dist);
    free(ids);
    free(groups);
    atomic_fetch_sub(&sh->in_flight, 1);
    version_unref(v);
    double el = vs_now_s() - t0;
    if (st == VS_ERR_RESOURCE_EXHAUSTED || st == VS_ERR_INTERNAL || st == VS_ERR_NOMEM ||
        (st == VS_OK && sh->slow_s > 0 && el > sh->slow_s))
        log_search(sh, r, nq, el * 1e3, st, err);
    vecshard__v1__shard_search_request__free_unpacked(r, NULL);
    return st;
}

size_t vs_shard_versions(vs_shard_t *sh, vs_shard_version_info_t *out, size_t cap, char active[128])
{
    size_t n = 0;
    char trained[17];
    pthread_mutex_lock(&sh->mu);
    if (active)
        snprintf(active, 128, "%s", sh->active ? sh->active->name : "");
    for (size_t i = 0; i < VS_SHARD_MAX_VERSIONS; i++) {
        const version_t *v = sh->versions[i];
        if (!v)
            continue;
        if (n < cap) {
            vs_shard_version_info_t *o = &out[n];
            memset(o, 0, sizeof *o);
            snprintf(o->version, sizeof o->version, "%s", v->name);
            o->partition = v->partition;
            o->state = v->state;
            snprintf(o->error, sizeof o->error, "%s", v->error);
            if (v->idx) {
                o->n_vectors = vs_index_count(v->idx);
                o->mapped_bytes = vs_index_mapped_bytes(v->idx);
                o->memory_bytes = vs_index_memory_bytes(v->idx);
                o->dim = vs_index_dim(v->idx);
                snprintf(o->metric, sizeof o->metric, "%s", vs_metric_name(vs_index_metric(v->idx)));
                snprintf(o->model_version, sizeof o->model_version, "%.127s", vs_index_model_version(v->idx));
                snprintf(o->partitioning, sizeof o->partitioning, "%s", v->partitioning);
                o->partitions_total = v->partitions_total;
                vs_index_ids(v->idx, o->content_id, trained, NULL);
                vs_refine_disk_stats_t ds;
                if (vs_index_refine_disk_stats(v->idx, &ds)) {
                    o->refine_on_disk = 1;
                    o->refine_verified = v->refine_verified;
                }
            }
            if (v->state == VS_VERSION_READY && v->fresh) { /* set before READY, without mu */
                vs_fresh_stats_t fs;
                vs_fresh_stats(v->fresh, &fs);
                o->fresh_fill_pct = fs.capacity ? (uint32_t)(fs.used * 100 / fs.capacity) : 0;
            }
        }
        n++;
    }
    pthread_mutex_unlock(&sh->mu);
    return n;
}

vs_status vs_shard_info_pb(vs_shard_t *sh, const uint8_t *req, size_t len, uint8_t **out, size_t *out_len,
                           char err[VS_ERR_LEN])
{
    Vecshard__V1__ShardInfoRequest *r = vecshard__v1__shard_info_request__unpack(NULL, len, req);
    if (!r)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "malformed vecshard.v1.ShardInfoRequest");
    vecshard__v1__shard_info_request__free_unpacked(r, NULL);

    Vecshard__V1__ShardInfoResponse resp = VECSHARD__V1__SHARD_INFO_RESPONSE__INIT;
    Vecshard__V1__VersionInfo vi[VS_SHARD_MAX_VERSIONS];
    Vecshard__V1__VersionInfo *vp[VS_SHARD_MAX_VERSIONS];
    char facs[VS_SHARD_MAX_VERSIONS][VS_NAME_LEN];
    char model[VS_SHARD_MAX_VERSIONS][VS_NAME_LEN];
    version_t *held[VS_SHARD_MAX_VERSIONS];
    vs_version_state vstate[VS_SHARD_MAX_VERSIONS];
    char verr[VS_SHARD_MAX_VERSIONS][VS_ERR_LEN];
    size_t n = 0;
    char active[VS_NAME_LEN] = "";
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < VS_SHARD_MAX_VERSIONS; i++)
        if (sh->versions[i]) {
            held[n] = sh->versions[i];
            vstate[n] = held[n]->state; /* state, error and idx change under mu only */
            snprintf(verr[n], VS_ERR_LEN, "%s", held[n]->error);
            atomic_fetch_add(&held[n]->refs, 1);
            n++;
        }
    if (sh->active)
        snprintf(active, sizeof active, "%s", sh->active->name);
    vs_shard_state state = sh->state;
    char address[VS_NAME_LEN];
    snprintf(address, sizeof address, "%s", sh->address);
    pthread_mutex_unlock(&sh->mu);

    for (size_t i = 0; i < n; i++) {
        const version_t *v = held[i];
        Vecshard__V1__VersionInfo *o = &vi[i];
        vecshard__v1__version_info__init(o);
        o->version = (char *)v->name;
        o->partition = v->partition;
        o->state = (Vecshard__V1__VersionState)vstate[i];
        o->error = verr[i];
        o->partitioning = (char *)v->partitioning;
        o->partitions_total = v->partitions_total;
        facs[i][0] = model[i][0] = 0;
        if (vstate[i] == VS_VERSION_READY) {
            const vs_index_t *idx = v->idx;
            vs_factory_format(vs_index_spec(idx), facs[i], VS_NAME_LEN);
            snprintf(model[i], VS_NAME_LEN, "%s", vs_index_model_version(idx));
            o->metric = metric_pb(vs_index_metric(idx));
            o->dim = vs_index_dim(idx);
            o->n_vectors = vs_index_count(idx);
            o->mapped_bytes = vs_index_mapped_bytes(idx);
            o->memory_bytes = vs_index_memory_bytes(idx);
            const vs_ivf_t *ivf = vs_index_impl_ivf(idx);
            o->nlist = ivf ? vs_ivf_nlist(ivf) : 0;
        }
        o->factory = facs[i];
        o->model_version = model[i];
        vp[i] = o;
    }
    resp.cluster = sh->cluster;
    resp.replica_id = sh->replica_id;
    resp.address = address;
    resp.state = (Vecshard__V1__ShardState)state;
    resp.active_version = active;
    resp.n_versions = n;
    resp.versions = vp;
    resp.started_at_unix_ms = sh->started_at_ms;
    resp.instance_id = sh->instance_id;
    resp.queries_in_flight = atomic_load(&sh->in_flight);
    size_t sz = vecshard__v1__shard_info_response__get_packed_size(&resp);
    vs_status st = VS_OK;
    *out = malloc(sz ? sz : 1);
    if (!*out)
        st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for the Info response");
    else
        *out_len = vecshard__v1__shard_info_response__pack(&resp, *out);
    for (size_t i = 0; i < n; i++)
        version_unref(held[i]);
    return st;
}

/* ---- fresh writes ------------------------------------------------------------------------------- */

/* The version named, with a reference (release with version_unref), or NULL; *ready: whether it is READY. */
static version_t *hold_version(vs_shard_t *sh, const char *version, int *ready)
{
    pthread_mutex_lock(&sh->mu);
    int i = find_version(sh, version);
    version_t *v = i >= 0 ? sh->versions[i] : NULL;
    if (v)
        atomic_fetch_add(&v->refs, 1);
    if (ready)
        *ready = v && v->state == VS_VERSION_READY;
    pthread_mutex_unlock(&sh->mu);
    return v;
}

uint64_t vs_shard_log_next(vs_shard_t *sh, const char *version)
{
    int ready = 0;
    version_t *v = hold_version(sh, version, &ready);
    uint64_t next = 0;
    if (v && v->fresh && ready) {
        pthread_mutex_lock(&v->apply_mu);
        next = v->log_next;
        pthread_mutex_unlock(&v->apply_mu);
    }
    version_unref(v);
    return next;
}

vs_status vs_shard_apply_log(vs_shard_t *sh, const char *version, uint64_t seq, const uint8_t *msg,
                             size_t len, char err[VS_ERR_LEN])
{
    int ready = 0;
    version_t *v = hold_version(sh, version, &ready);
    if (!v)
        return vs_errf(err, VS_ERR_NOT_FOUND, "version %s is not on this shard", version);
    vs_status st = VS_OK;
    if (!ready || !v->fresh) { /* not READY: its fresh state may still be being made (a reload) */
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "version %s takes no writes", version);
        version_unref(v);
        return st;
    }
    pthread_mutex_lock(&v->apply_mu);
    if (seq < v->log_next) {
        st = VS_OK; /* applied already (a reader started again from an older place) */
    } else if (seq > v->log_next) {
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                     "version %s: log message %llu arrived while %llu was expected", version,
                     (unsigned long long)seq, (unsigned long long)v->log_next);
    } else {
        vs_applier_scope_t scope = {.partition = v->partition,
                                    .n_partitions = v->partitions_total,
                                    .list_partition = v->list_partition,
                                    .nlist = v->list_partition ? vs_ivf_nlist(vs_index_impl_ivf(v->idx)) : 0,
                                    .model_version = v->model_version,
                                    .dim = vs_index_dim(v->idx)};
        st = vs_applier_apply(v->fresh, &scope, msg, len, &v->counts, err);
        if (st == VS_OK || st == VS_ERR_CORRUPT) {
            v->log_next++; /* a malformed message can never apply: counted and passed */
            pthread_cond_broadcast(&v->applied);
        }
        if (st == VS_OK)
            atomic_fetch_add(&sh->log_applied, 1);
        else if (st == VS_ERR_CORRUPT)
            atomic_fetch_add(&sh->log_rejected, 1);
    }
    pthread_mutex_unlock(&v->apply_mu);
    version_unref(v);
    return st;
}

void vs_shard_set_log_pending(vs_shard_t *sh, const char *version, uint64_t pending)
{
    version_t *v = hold_version(sh, version, NULL);
    if (!v)
        return;
    pthread_mutex_lock(&v->apply_mu);
    v->log_pending = pending;
    pthread_mutex_unlock(&v->apply_mu);
    version_unref(v);
}

size_t vs_shard_scrub(vs_shard_t *sh, double bytes_per_s, double every_s, const volatile int *stop)
{
    size_t done = 0;
    for (size_t i = 0; i < VS_SHARD_MAX_VERSIONS && !(stop && *stop); i++) {
        /* hold the version (a reference keeps it alive while it is read; unload may drop it meanwhile) */
        vs_refine_disk_stats_t ds;
        pthread_mutex_lock(&sh->mu);
        version_t *v = sh->versions[i];
        int due = v && v->state == VS_VERSION_READY && v->idx && vs_index_refine_disk_stats(v->idx, &ds) &&
                  (!v->refine_verified || vs_now_s() - v->verified_at >= every_s) &&
                  vs_now_s() >= v->scrub_retry_at;
        if (due)
            atomic_fetch_add(&v->refs, 1);
        pthread_mutex_unlock(&sh->mu);
        if (!due)
            continue;
        char err[VS_ERR_LEN];
        vs_status st = vs_index_verify_lazy(v->idx, bytes_per_s, stop, err);
        pthread_mutex_lock(&sh->mu);
        if (st == VS_OK) {
            v->refine_verified = 1;
            v->verified_at = vs_now_s();
            atomic_fetch_add(&sh->scrub_verified, 1);
            done++;
        } else if (st == VS_ERR_CORRUPT && v->state == VS_VERSION_READY) {
            v->state = VS_VERSION_FAILED;
            snprintf(v->error, sizeof v->error, "scrub: %.500s", err);
            if (sh->active == v)
                sh->active = NULL; /* requests naming no version get UNAVAILABLE, not wrong distances */
            atomic_fetch_add(&sh->scrub_failed, 1);
        } else if (st != VS_ERR_CANCELLED) {
            atomic_fetch_add(&sh->scrub_errors, 1);
            v->scrub_retry_at = vs_now_s() + 60; /* an I/O error: again in a minute, not at every pass */
        }
        pthread_mutex_unlock(&sh->mu);
        if (st == VS_ERR_CORRUPT && v->index_path[0]) { /* never taken as verified again, by any shard */
            char marker[MARKER_PATH_MAX];
            marker_path(v->index_path, marker);
            unlink(marker);
        }
        if (st != VS_OK && st != VS_ERR_CANCELLED)
            vs_log(VS_LOG_ERROR, "shard: version %s partition %u: %s", v->name, v->partition, err);
        else if (st == VS_OK) {
            vs_log(VS_LOG_INFO, "shard: version %s partition %u: refine section verified", v->name,
                   v->partition);
            if (v->index_path[0])
                marker_write(v, time(NULL));
        }
        version_unref(v);
    }
    return done;
}

void vs_shard_scrub_counts(vs_shard_t *sh, uint64_t *failed, uint64_t *errors, uint64_t *verified)
{
    *failed = atomic_load(&sh->scrub_failed);
    *errors = atomic_load(&sh->scrub_errors);
    *verified = atomic_load(&sh->scrub_verified);
}

void vs_shard_log_failed(vs_shard_t *sh, const char *version, const char *reason)
{
    pthread_mutex_lock(&sh->mu);
    int i = find_version(sh, version);
    if (i >= 0 && sh->versions[i]->state == VS_VERSION_READY) {
        version_t *v = sh->versions[i];
        v->state = VS_VERSION_FAILED;
        snprintf(v->error, sizeof v->error, "write log: %s", reason);
        if (sh->active == v)
            sh->active =
                NULL; /* requests naming no version get UNAVAILABLE, not a partition missing writes */
    }
    pthread_mutex_unlock(&sh->mu);
}

vs_status vs_shard_fresh_info(vs_shard_t *sh, const char *version, vs_shard_fresh_info_t *out,
                              char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    int ready = 0;
    version_t *v = hold_version(sh, version, &ready);
    if (!v)
        return vs_errf(err, VS_ERR_NOT_FOUND, "version %s is not on this shard", version);
    vs_status st = VS_OK;
    if (!ready || !v->fresh) { /* not READY: its fresh state may still be being made (a reload) */
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "version %s takes no writes", version);
    } else {
        pthread_mutex_lock(&v->apply_mu);
        out->log_next = v->log_next;
        out->log_pending = v->log_pending;
        out->counts = v->counts;
        pthread_mutex_unlock(&v->apply_mu);
        vs_fresh_stats(v->fresh, &out->fresh);
    }
    version_unref(v);
    return st;
}

vs_status vs_shard_active_fresh_info(vs_shard_t *sh, vs_shard_fresh_info_t *out, char err[VS_ERR_LEN])
{
    char name[VS_NAME_LEN] = "";
    pthread_mutex_lock(&sh->mu);
    if (sh->active)
        snprintf(name, sizeof name, "%s", sh->active->name);
    pthread_mutex_unlock(&sh->mu);
    if (!name[0]) {
        memset(out, 0, sizeof *out);
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "no active version");
    }
    return vs_shard_fresh_info(sh, name, out, err);
}

void vs_shard_log_totals(vs_shard_t *sh, uint64_t *applied, uint64_t *rejected)
{
    *applied = atomic_load(&sh->log_applied);
    *rejected = atomic_load(&sh->log_rejected);
}
