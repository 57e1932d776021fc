/* metrics.c (shard): see metrics.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "common/net/http.h"
#include "common/net/metrics.h"
#include "common/net/serve.h"
#include "shard/index/refine_disk.h"
#include "shard/server/metrics.h"

struct vs_shard_metrics {
    vs_metrics_t *reg;
    vs_http_t *http;
    vs_shard_t *shard;
    vs_rpc_metrics_t rpcm;
    pthread_mutex_t mu; /* membership */
    vs_membership_t *membership;
    uint64_t etcd_errors, etcd_rereg, etcd_writes, etcd_auths; /* last values read from membership */
    vs_histogram_t *stage[VS_SHARD_STAGE_N];       /* vecshard_shard_stage_seconds{stage} */
    vs_overload_metrics_t overload;                /* vecshard_shard_queue_seconds, _shed_total */
};

vs_overload_metrics_t *vs_shard_metrics_overload(vs_shard_metrics_t *m)
{
    return &m->overload;
}

void vs_shard_metrics_on_stage(void *user, vs_shard_stage stage, double seconds)
{
    vs_shard_metrics_t *m = user;
    if (stage < VS_SHARD_STAGE_N)
        vs_histogram_observe(m->stage[stage], seconds);
}

void vs_shard_metrics_on_call(void *user, const char *path, int code, double seconds)
{
    vs_rpc_metrics_on_done(&((vs_shard_metrics_t *)user)->rpcm, path, code, seconds);
}

/* Scrape-time values read from the shard. */
static double versions_sum(vs_shard_t *sh, int what)
{
    vs_shard_version_info_t vi[VS_SHARD_MAX_VERSIONS];
    size_t n = vs_shard_versions(sh, vi, VS_SHARD_MAX_VERSIONS, NULL);
    double s = 0;
    for (size_t i = 0; i < n && i < VS_SHARD_MAX_VERSIONS; i++) {
        if (what == 0)
            s += vi[i].state == VS_VERSION_READY;
        else if (what == 1)
            s += (double)vi[i].mapped_bytes;
        else if (what == 2)
            s += (double)vi[i].memory_bytes;
        else if (what == 3)
            s += (double)vi[i].n_vectors;
        else if (what == 9)
            s += vi[i].refine_on_disk && !vi[i].refine_verified && vi[i].state == VS_VERSION_READY;
        else
            s += vi[i].state == VS_VERSION_FAILED;
    }
    return s;
}

/* Refine reads from disk, cumulative over the process (counters). */
static double disk_total(void *u, int which)
{
    vs_refine_disk_stats_t t;
    vs_shard_refine_disk_totals(((vs_shard_metrics_t *)u)->shard, &t);
    return which == 0   ? (double)t.reads
           : which == 1 ? (double)t.bytes
           : which == 2 ? (double)t.fetches
           : which == 3 ? t.read_seconds
                        : (double)t.errors;
}

static double c_disk_reads(void *u)
{
    return disk_total(u, 0);
}

static double c_disk_bytes(void *u)
{
    return disk_total(u, 1);
}

static double c_disk_fetches(void *u)
{
    return disk_total(u, 2);
}

static double c_disk_seconds(void *u)
{
    return disk_total(u, 3);
}

static double g_unverified(void *u)
{
    return versions_sum(((vs_shard_metrics_t *)u)->shard, 9);
}

static double c_disk_errors(void *u)
{
    return disk_total(u, 4);
}

static double c_scrub(void *u, int which)
{
    uint64_t v[3];
    vs_shard_scrub_counts(((vs_shard_metrics_t *)u)->shard, &v[0], &v[1], &v[2]);
    return (double)v[which];
}

static double c_scrub_failed(void *u)
{
    return c_scrub(u, 0);
}

static double c_scrub_errors(void *u)
{
    return c_scrub(u, 1);
}

static double c_scrub_verified(void *u)
{
    return c_scrub(u, 2);
}

static double g_ready(void *u)
{
    return versions_sum(((vs_shard_metrics_t *)u)->shard, 0);
}
static double g_mapped(void *u)
{
    return versions_sum(((vs_shard_metrics_t *)u)->shard, 1);
}
static double g_memory(void *u)
{
    return versions_sum(((vs_shard_metrics_t *)u)->shard, 2);
}
static double g_vectors(void *u)
{
    return versions_sum(((vs_shard_metrics_t *)u)->shard, 3);
}
static double g_failed(void *u)
{
    return versions_sum(((vs_shard_metrics_t *)u)->shard, 4);
}
static double g_in_flight(void *u)
{
    return (double)vs_shard_in_flight(((vs_shard_metrics_t *)u)->shard);
}
static double g_serving(void *u)
{
    return vs_shard_get_state(((vs_shard_metrics_t *)u)->shard) == VS_SHARD_SERVING;
}

static double etcd_counter(vs_shard_metrics_t *m, int which)
{
    uint64_t errors = 0, rereg = 0;
    pthread_mutex_lock(&m->mu);
    if (m->membership) {
        vs_membership_counters(m->membership, &errors, &rereg);
        m->etcd_errors = errors;
        m->etcd_rereg = rereg;
        m->etcd_writes = vs_membership_writes(m->membership);
        m->etcd_auths = vs_membership_etcd_authentications(m->membership);
    }
    /* counters never go down: after the membership stopped, its last values stay */
    double v = (double)(which == 3   ? m->etcd_auths
                        : which == 2 ? m->etcd_writes
                        : which      ? m->etcd_rereg
                                     : m->etcd_errors);
    pthread_mutex_unlock(&m->mu);
    return v;
}
static double c_etcd_errors(void *u)
{
    return etcd_counter(u, 0);
}
static double c_etcd_rereg(void *u)
{
    return etcd_counter(u, 1);
}
static double c_etcd_writes(void *u)
{
    return etcd_counter(u, 2);
}
static double c_etcd_auths(void *u)
{
    return etcd_counter(u, 3);
}

/* the active version's fresh writes (0 when it takes none) */
static double fresh_value(void *u, int which)
{
    vs_shard_fresh_info_t fi;
    char err[VS_ERR_LEN];
    if (vs_shard_active_fresh_info(((vs_shard_metrics_t *)u)->shard, &fi, err) != VS_OK)
        return 0;
    switch (which) {
    case 0:
        return (double)fi.fresh.ids;
    case 1:
        return (double)fi.fresh.capacity;
    case 2:
        return (double)fi.fresh.live;
    case 3:
        return (double)fi.fresh.memory_bytes;
    case 5:
        return (double)fi.fresh.deleted;
    case 6:
        return (double)fi.log_pending;
    case 7:
        return (double)fi.fresh.records;
    case 8:
        return (double)fi.fresh.compactions;
    default:
        return fi.log_next ? (double)(fi.log_next - 1) : 0;
    }
}
static double g_fresh_ids(void *u)
{
    return fresh_value(u, 0);
}
static double g_fresh_capacity(void *u)
{
    return fresh_value(u, 1);
}
static double g_fresh_live(void *u)
{
    return fresh_value(u, 2);
}
static double g_fresh_bytes(void *u)
{
    return fresh_value(u, 3);
}
static double g_log_position(void *u)
{
    return fresh_value(u, 4);
}
static double g_fresh_deleted(void *u)
{
    return fresh_value(u, 5);
}
static double g_log_lag(void *u)
{
    return fresh_value(u, 6);
}
static double g_fresh_records(void *u)
{
    return fresh_value(u, 7);
}
static double c_fresh_compactions(void *u)
{
    return fresh_value(u, 8);
}
static double c_log_applied(void *u)
{
    uint64_t a, r;
    vs_shard_log_totals(((vs_shard_metrics_t *)u)->shard, &a, &r);
    return (double)a;
}
static double c_log_rejected(void *u)
{
    uint64_t a, r;
    vs_shard_log_totals(((vs_shard_metrics_t *)u)->shard, &a, &r);
    return (double)r;
}

vs_status vs_shard_metrics_create(vs_shard_metrics_t **out, char err[VS_ERR_LEN])
{
    vs_shard_metrics_t *m = calloc(1, sizeof *m);
    if (!m || !(m->reg = vs_metrics_create())) {
        free(m);
        return vs_errf(err, VS_ERR_NOMEM, "metrics: out of memory");
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    vs_status st = vs_rpc_metrics_init(&m->rpcm, m->reg, err);
    if (st == VS_OK &&
        vs_metrics_histogram_each(m->reg, "vecshard_shard_stage_seconds",
                                  "Time of each stage of a Search on the shard: decode (unpack, version, "
                                  "validation), search (the index), encode (the response).",
                                  "stage", vs_shard_stage_names, VS_SHARD_STAGE_N, vs_metrics_fine_buckets,
                                  VS_METRICS_FINE_BUCKETS_N, m->stage) != 0)
        st = vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(m->reg));
    if (st == VS_OK)
        st = vs_overload_metrics_init(&m->overload, m->reg, "vecshard_shard", err);
    if (st != VS_OK) {
        vs_shard_metrics_stop(m);
        *out = NULL;
        return st;
    }
    return VS_OK;
}

vs_status vs_shard_metrics_start(vs_shard_metrics_t *m, vs_shard_t *sh, vs_health_t *health,
                                 const char *listen, int *out_port, char err[VS_ERR_LEN])
{
    m->shard = sh;
    *out_port = 0;
    struct {
        const char *name, *help;
        double (*fn)(void *);
        int counter;
    } fns[] = {
        {"vecshard_shard_versions_ready", "Index versions loaded and READY on this shard.", g_ready, 0},
        {"vecshard_shard_versions_failed", "Index versions that failed to load (the reason is in Info).",
         g_failed, 0},
        {"vecshard_shard_index_mapped_bytes", "Bytes of memory-mapped index files, all versions.", g_mapped,
         0},
        {"vecshard_shard_index_memory_bytes",
         "Bytes of index data (vectors, codes, ids, graph), all versions.", g_memory, 0},
        {"vecshard_shard_vectors", "Vectors held, all versions.", g_vectors, 0},
        {"vecshard_shard_searches_in_flight", "Search requests being executed now.", g_in_flight, 0},
        {"vecshard_shard_serving", "1 when the active version is loaded and the shard is not draining.",
         g_serving, 0},
        {"vecshard_etcd_errors_total", "Failed etcd requests (registration, keepalive).", c_etcd_errors, 1},
        {"vecshard_etcd_reregistrations_total",
         "Times the membership record was re-created after a lost lease.", c_etcd_rereg, 1},
        {"vecshard_etcd_record_writes_total",
         "Member-record writes (bounded per version by the load-retry backoff).", c_etcd_writes, 1},
        {"vecshard_etcd_authentications_total",
         "Tokens the membership's etcd client fetched for the shard's user: the first, then one per expiry, "
         "password change or auth-store change.",
         c_etcd_auths, 1},
        {"vecshard_shard_fresh_ids",
         "Ids written (upserted or deleted) since the active version was built; writes stop at the capacity.",
         g_fresh_ids, 0},
        {"vecshard_shard_fresh_capacity", "Ids the active version may take from the write log.",
         g_fresh_capacity, 0},
        {"vecshard_shard_fresh_live", "Fresh vectors searches return (the active version).", g_fresh_live, 0},
        {"vecshard_shard_fresh_records",
         "Fresh vectors stored, live or superseded (a list half superseded is compacted).", g_fresh_records,
         0},
        {"vecshard_shard_fresh_compactions_total",
         "Fresh lists rewritten without their superseded and deleted records (the active version; restarts "
         "at a version switch).",
         c_fresh_compactions, 1},
        {"vecshard_shard_fresh_memory_bytes", "Bytes of the active version's fresh writes.", g_fresh_bytes,
         0},
        {"vecshard_shard_log_position", "Last write-log sequence applied to the active version.",
         g_log_position, 0},
        {"vecshard_shard_fresh_deleted",
         "Ids the write log deleted since the active version was built "
         "(tombstones).",
         g_fresh_deleted, 0},
        {"vecshard_shard_log_lag_messages",
         "Write-log messages after the active version's position, as the stream said at the last fetch.",
         g_log_lag, 0},
        {"vecshard_shard_log_messages_applied_total", "Write-log messages applied, all versions.",
         c_log_applied, 1},
        {"vecshard_shard_refine_disk_reads_total",
         "Disk reads of refine vectors (--refine-on-disk; candidates sharing a 4 KiB block share a read), "
         "every version since the process started, unloaded ones included.",
         c_disk_reads, 1},
        {"vecshard_shard_refine_disk_bytes_total", "Bytes read for refine vectors (--refine-on-disk).",
         c_disk_bytes, 1},
        {"vecshard_shard_refine_disk_fetches_total",
         "Queries whose candidates were read from disk in one batch (--refine-on-disk).", c_disk_fetches, 1},
        {"vecshard_shard_refine_disk_read_seconds_total",
         "Seconds queries waited for their refine reads (--refine-on-disk).", c_disk_seconds, 1},
        {"vecshard_shard_refine_disk_errors_total",
         "Batches of refine reads that failed (answered from the mapping instead).", c_disk_errors, 1},
        {"vecshard_shard_refine_unverified_versions",
         "READY versions whose on-disk refine section the scrub has not yet checked.", g_unverified, 0},
        {"vecshard_shard_scrub_verified_total", "Refine sections the scrub read and found intact.",
         c_scrub_verified, 1},
        {"vecshard_shard_scrub_failures_total",
         "Refine sections that failed their CRC32C (the version went FAILED).", c_scrub_failed, 1},
        {"vecshard_shard_scrub_errors_total", "Scrub reads that failed with an I/O error (retried).",
         c_scrub_errors, 1},
        {"vecshard_shard_log_messages_rejected_total",
         "Write-log messages rejected as malformed (never applicable; each is logged).", c_log_rejected, 1},
    };
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
        vs_metric_family_t *f = fns[i].counter
                                    ? vs_metrics_counter_fn(m->reg, fns[i].name, fns[i].help, fns[i].fn, m)
                                    : vs_metrics_gauge_fn(m->reg, fns[i].name, fns[i].help, fns[i].fn, m);
        if (!f)
            return vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(m->reg));
    }
    vs_status st = vs_metrics_add_process(m->reg, err);
    if (st != VS_OK)
        return st;
    if (!vs_metrics_add_build_info(m->reg, "vecshard_build_info", "vecshard version of this binary.",
                                   VS_VERSION))
        return vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(m->reg));
    return vs_serve_http(listen, m->reg, health, &m->http, out_port, err);
}

void vs_shard_metrics_set_membership(vs_shard_metrics_t *m, vs_membership_t *mem)
{
    pthread_mutex_lock(&m->mu);
    m->membership = mem;
    pthread_mutex_unlock(&m->mu);
}

void vs_shard_metrics_stop(vs_shard_metrics_t *m)
{
    if (!m)
        return;
    vs_http_stop(m->http);
    vs_metrics_destroy(m->reg);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
