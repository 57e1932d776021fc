/* coord.c: request handling of the coordinator (coord.h). */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/ident.h"
#include "common/cli/timing.h"
#include "common/crc32c.h"
#include "common/factory.h"
#include "common/hash.h"
#include "common/filter.h"
#include "common/idset.h"
#include "common/net/pbfilter.h"
#include "common/log.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "coordinator/batch.h"
#include "coordinator/coord.h"
#include "coordinator/fanout.h"
#include "common/cluster/manifest.h"
#include "vecshard/v1/coordinator.pb-c.h"
#include "vecshard/v1/shard.pb-c.h"

typedef struct version_entry {
    char name[VS_NAME_LEN];
    char model[VS_NAME_LEN];
    char (*content)[17];    /* per partition id: the file's content id from the manifest (NULL: unknown) */
    uint32_t nlist;         /* IVF lists (nprobe is clipped to it); 0 = not IVF or unknown */
    uint32_t coarse_hnsw_m; /* IVF{n}_HNSW{M}: M (quantizer_efSearch applies); 0 = none */
    int writable;           /* IVF or HNSW: takes fresh writes (Flat and unknown factories do not) */
    Vecshard__V1__SearchParams defaults; /* the manifest's search_defaults (0 fields: the shards' own) */
    char content_id[17];                 /* the manifest's (vs_manifest_content_id); "" when added by hand */
    double target_recall;                /* the manifest's search_defaults target_recall (0: none) */
    vs_attr_field_t attrs[VS_ATTR_MAX_FIELDS]; /* the manifest's attribute schema (n_attrs 0: none) */
    size_t n_attrs;
    vs_router_t router;
    atomic_int refs; /* the coordinator's + one per request using it */
} version_entry_t;

static void version_unref(version_entry_t *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1) {
        vs_router_fini(&e->router);
        free(e->content);
        free(e);
    }
}

struct vs_coord {
    vs_coord_opts_t o;
    vs_view_t *view;
    vs_budget_t budget; /* hedges and retries (o.retry_budget >= 0) */
    vs_quotas_t *quotas; /* per-client quotas (NULL: none) */
    vs_elimit_t *elimit; /* the adaptive concurrency limit (NULL: off) */
    pthread_mutex_t mu; /* versions, active */
    version_entry_t *versions[VS_COORD_MAX_VERSIONS];
    size_t n_versions;
    version_entry_t *active;
    vs_coord_stats_t stats;
    vs_batch_opts_t bo;
    /* requests being answered, for the timer (hedges, deadlines): under active_mu */
    pthread_mutex_t active_mu;
    struct request *requests;
    atomic_llong next_wake_us;  /* the earliest time a request needs its timer (vs_now_s() in us) */
    atomic_ullong next_request; /* request ids made for requests without one */
    uint64_t request_seed;
    pthread_mutex_t log_mu; /* the rate limits of per-request log records */
    vs_log_limit_t partial_log, slow_log;
    /* recall monitoring: the sampler and its replay worker (NULL / not started when off) */
    vs_recall_t *recall;
    pthread_t recall_th;
    int recall_started, recall_stop; /* recall_stop under recall_mu */
    pthread_mutex_t recall_mu;
    pthread_cond_t recall_cv;
};

static void *recall_worker(void *arg);

vs_status vs_coord_create(const vs_coord_opts_t *o, vs_view_t *view, vs_coord_t **out, char err[VS_ERR_LEN])
{
    vs_coord_t *c = calloc(1, sizeof *c);
    if (!c)
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    if (o)
        c->o = *o;
    if (c->o.min_hedge_delay_ms <= 0)
        c->o.min_hedge_delay_ms = 1;
    if (c->o.default_timeout_ms <= 0)
        c->o.default_timeout_ms = 1000;
    if (c->o.max_batch == 0)
        c->o.max_batch = 10000;
    if (c->o.max_queue_ms == 0)
        c->o.max_queue_ms = VS_COORD_DEFAULT_MAX_QUEUE_MS;
    if (c->o.max_in_flight == 0)
        c->o.max_in_flight = VS_COORD_DEFAULT_MAX_IN_FLIGHT;
    if (c->o.n_quotas && !(c->quotas = vs_quotas_create(c->o.quotas, c->o.n_quotas))) {
        free(c);
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    }
    c->o.quotas = NULL; /* copied into c->quotas */
    if (c->o.target_latency_ms == 0)
        c->o.target_latency_ms = VS_COORD_DEFAULT_TARGET_LATENCY_MS;
    if (c->o.target_latency_ms > 0 &&
        !(c->elimit = vs_elimit_create(c->o.target_latency_ms * 1e-3, 256, 4, 1e6))) {
        vs_quotas_destroy(c->quotas);
        free(c);
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    }
    if (c->o.retry_budget >= 0)
        vs_budget_init(&c->budget, c->o.retry_budget > 0 ? c->o.retry_budget : VS_COORD_DEFAULT_RETRY_BUDGET,
                       c->o.retry_budget_burst > 0 ? c->o.retry_budget_burst : VS_COORD_DEFAULT_RETRY_BURST);
    c->view = view;
    pthread_mutex_init(&c->log_mu, NULL);
    c->request_seed = (uint64_t)(vs_now_s() * 1e9) ^ ((uint64_t)getpid() << 32);
    c->bo = (vs_batch_opts_t){.window = c->o.shard_window ? c->o.shard_window : 2,
                              .max_queries = c->o.batch_max_queries ? c->o.batch_max_queries : 1024,
                              .max_bytes = 8u << 20,
                              .max_queue_s = c->o.max_queue_ms > 0 ? c->o.max_queue_ms * 1e-3 : 0,
                              .adaptive_limit = c->o.adaptive_limit,
                              .overload = c->o.overload,
                              .on_stage = c->o.on_stage,
                              .stage_user = c->o.stage_user};
    atomic_init(&c->next_wake_us, LLONG_MAX);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->active_mu, NULL);
    pthread_mutex_init(&c->recall_mu, NULL);
    pthread_cond_init(&c->recall_cv, NULL);
    if (c->o.recall.sample_rate > 0) {
        if (!(c->recall = vs_recall_create(&c->o.recall)) ||
            pthread_create(&c->recall_th, NULL, recall_worker, c) != 0) {
            vs_recall_destroy(c->recall);
            c->recall = NULL;
            vs_coord_destroy(c);
            return vs_errf(err, VS_ERR_NOMEM, "coordinator: cannot start the recall monitor");
        }
        c->recall_started = 1;
    }
    *out = c;
    return VS_OK;
}

void vs_coord_destroy(vs_coord_t *c)
{
    if (!c)
        return;
    vs_coord_stop_recall(c);
    vs_recall_destroy(c->recall);
    vs_quotas_destroy(c->quotas);
    vs_elimit_destroy(c->elimit);
    pthread_cond_destroy(&c->recall_cv);
    pthread_mutex_destroy(&c->recall_mu);
    for (size_t i = 0; i < c->n_versions; i++)
        version_unref(c->versions[i]);
    pthread_mutex_destroy(&c->log_mu);
    pthread_mutex_destroy(&c->active_mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

vs_coord_stats_t *vs_coord_stats(vs_coord_t *c)
{
    return &c->stats;
}

/* The content id the replicas of partition p must report for e ("" = any). */
static const char *expect_content(const version_entry_t *e, uint32_t p)
{
    return e->content && p < e->router.n_partitions ? e->content[p] : "";
}

/* vs_coord_add_version with the partitions' content ids (content: n_partitions entries, taken; NULL) and
 * the manifest (nullable) whose search defaults, nlist and content id the entry gets before it is visible. */
static void set_defaults(version_entry_t *e, const vs_manifest_t *m);
static vs_status add_version(vs_coord_t *c, const char *version, const char *model_version,
                             vs_router_t *router, char (*content)[17], const vs_manifest_t *m,
                             char err[VS_ERR_LEN])
{
    if (!vs_version_name_valid(version)) {
        vs_router_fini(router);
        free(content);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "version name \"%s\" is not valid", version);
    }
    version_entry_t *e = calloc(1, sizeof *e);
    if (!e) {
        vs_router_fini(router);
        free(content);
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    }
    e->content = content;
    vecshard__v1__search_params__init(&e->defaults);
    if (m)
        set_defaults(e, m);
    snprintf(e->name, sizeof e->name, "%s", version);
    snprintf(e->model, sizeof e->model, "%s", model_version ? model_version : "");
    e->router = *router;
    atomic_init(&e->refs, 1);
    memset(router, 0, sizeof *router);
    vs_status st = VS_OK;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions; i++)
        if (strcmp(c->versions[i]->name, version) == 0)
            st = vs_errf(err, VS_ERR_ALREADY_EXISTS, "version %s is already known", version);
    if (st == VS_OK && c->n_versions == VS_COORD_MAX_VERSIONS)
        st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "at most %d versions", VS_COORD_MAX_VERSIONS);
    if (st == VS_OK) {
        c->versions[c->n_versions++] = e;
        if (!c->active)
            c->active = e;
    }
    pthread_mutex_unlock(&c->mu);
    if (st != VS_OK)
        version_unref(e);
    return st;
}

vs_status vs_coord_add_version(vs_coord_t *c, const char *version, const char *model_version,
                               vs_router_t *router, char err[VS_ERR_LEN])
{
    return add_version(c, version, model_version, router, NULL, NULL, err);
}

int vs_coord_version_content(vs_coord_t *c, const char *version, char out[17])
{
    int found = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions && !found; i++)
        if (strcmp(c->versions[i]->name, version) == 0) {
            found = 1;
            memcpy(out, c->versions[i]->content_id, 17);
        }
    pthread_mutex_unlock(&c->mu);
    return found;
}

int vs_coord_model_dim(vs_coord_t *c, const char *model, char resolved[128], uint32_t *dim, int *writable)
{
    int found = 0;
    pthread_mutex_lock(&c->mu);
    if (!model || !model[0]) {
        if (c->active) {
            snprintf(resolved, 128, "%s", c->active->model);
            *dim = c->active->router.dim;
            *writable = c->active->writable;
            found = 1;
        }
    } else {
        for (size_t i = 0; i < c->n_versions && !found; i++)
            if (strcmp(c->versions[i]->model, model) == 0) {
                snprintf(resolved, 128, "%s", model);
                *dim = c->versions[i]->router.dim;
                *writable = c->versions[i]->writable;
                found = 1;
            }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

size_t vs_coord_model_attrs(vs_coord_t *c, const char *model, vs_attr_field_t out[VS_ATTR_MAX_FIELDS])
{
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    const version_entry_t *e = NULL;
    if (!model || !model[0])
        e = c->active;
    for (size_t i = 0; !e && model && model[0] && i < c->n_versions; i++)
        if (strcmp(c->versions[i]->model, model) == 0)
            e = c->versions[i];
    if (e) {
        n = e->n_attrs;
        memcpy(out, e->attrs, n * sizeof *out);
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

uint32_t vs_coord_fresh_fill(vs_coord_t *c, const char *model, char replica[128])
{
    char active[128] = "";
    pthread_mutex_lock(&c->mu);
    if (c->active && (!model || !model[0] || strcmp(c->active->model, model) == 0))
        snprintf(active, sizeof active, "%s", c->active->name);
    pthread_mutex_unlock(&c->mu);
    if (replica)
        replica[0] = 0;
    if (!active[0] || !c->view)
        return 0;
    size_t n = vs_view_members(c->view, NULL, 0);
    vs_view_member_t *mem = n ? malloc(n * sizeof *mem) : NULL;
    if (mem)
        n = vs_view_members(c->view, mem, n);
    uint32_t fill = 0;
    for (size_t i = 0; mem && i < n; i++)
        for (size_t j = 0; j < mem[i].n_versions; j++)
            if (strcmp(mem[i].versions[j], active) == 0 && mem[i].fresh_fill_pct[j] > fill) {
                fill = mem[i].fresh_fill_pct[j];
                if (replica)
                    snprintf(replica, 128, "%s", mem[i].replica_id);
            }
    free(mem);
    return fill;
}

int vs_coord_has_version(vs_coord_t *c, const char *version)
{
    int found = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions && !found; i++)
        found = strcmp(c->versions[i]->name, version) == 0;
    pthread_mutex_unlock(&c->mu);
    return found;
}

vs_status vs_coord_remove_version(vs_coord_t *c, const char *version, char err[VS_ERR_LEN])
{
    vs_status st = vs_errf(err, VS_ERR_NOT_FOUND, "version %s is not known to this coordinator", version);
    version_entry_t *gone = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions; i++)
        if (strcmp(c->versions[i]->name, version) == 0) {
            if (c->versions[i] == c->active) {
                st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "version %s is active", version);
            } else {
                gone = c->versions[i];
                c->versions[i] = c->versions[--c->n_versions];
                st = VS_OK;
            }
            break;
        }
    pthread_mutex_unlock(&c->mu);
    version_unref(gone); /* requests still using it hold their own reference */
    return st;
}

size_t vs_coord_versions(vs_coord_t *c, char (*out)[128], size_t cap, char active[128])
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n_versions;
    for (size_t i = 0; i < n && i < cap; i++)
        snprintf(out[i], 128, "%s", c->versions[i]->name);
    if (active)
        snprintf(active, 128, "%s", c->active ? c->active->name : "");
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* The version's search defaults, nlist and content id from its manifest (before the entry is visible). */
static void set_defaults(version_entry_t *e, const vs_manifest_t *m)
{
    vs_factory_spec_t spec;
    int ivf = vs_factory_parse(m->factory, &spec, NULL) == VS_OK && spec.type == VS_INDEX_IVF;
    e->nlist = ivf ? spec.nlist : 0;
    e->writable = vs_factory_parse(m->factory, &spec, NULL) == VS_OK &&
                  (spec.type == VS_INDEX_IVF || spec.type == VS_INDEX_HNSW);
    e->coarse_hnsw_m = ivf ? spec.coarse_hnsw_m : 0;
    if (m->defaults.present) {
        e->defaults.nprobe = m->defaults.nprobe;
        e->defaults.ef_search = m->defaults.ef_search;
        e->defaults.k_factor = m->defaults.k_factor;
    }
    vs_manifest_content_id(m, e->content_id);
    e->target_recall = m->defaults.present ? m->defaults.target_recall : 0;
    e->n_attrs = m->n_attrs;
    memcpy(e->attrs, m->attrs, m->n_attrs * sizeof *e->attrs);
}

/* The parameters a request is served with: the client's, 0 fields from the version's defaults, nprobe
 * clipped to nlist (*clipped = 1). Every shard call then carries explicit values, so shards of an older
 * release (no defaults of their own) answer the same. */
static void resolve_params(const version_entry_t *e, const Vecshard__V1__SearchParams *given,
                           Vecshard__V1__SearchParams *out, int *clipped)
{
    vecshard__v1__search_params__init(out);
    *clipped = 0;
    if (given) {
        out->nprobe = given->nprobe;
        out->ef_search = given->ef_search;
        out->k_factor = given->k_factor;
        out->quantizer_ef_search = given->quantizer_ef_search;
        out->filter_exact_threshold = given->filter_exact_threshold;
    }
    if (!out->nprobe)
        out->nprobe = e->defaults.nprobe;
    if (!out->ef_search)
        out->ef_search = e->defaults.ef_search;
    if (!out->k_factor)
        out->k_factor = e->defaults.k_factor;
    if (e->nlist && out->nprobe > e->nlist) {
        out->nprobe = e->nlist;
        *clipped = 1;
    }
}

vs_status vs_coord_add_loaded(vs_coord_t *c, const vs_manifest_t *m, const char *path, char err[VS_ERR_LEN])
{
    (void)path;
    vs_router_t r;
    vs_status st = vs_router_init_manifest(&r, m, !c->o.coarse_at_shard, err);
    if (st != VS_OK)
        return st;
    char(*content)[17] = calloc(m->n_partitions, sizeof *content);
    if (!content) {
        vs_router_fini(&r);
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    }
    for (uint32_t i = 0; i < m->n_partitions; i++)
        if (m->partitions[i].id < m->n_partitions)
            memcpy(content[m->partitions[i].id], m->partitions[i].content_id, 17);
    return add_version(c, m->version, m->model_version, &r, content, m, err);
}

vs_status vs_coord_add_manifest(vs_coord_t *c, const char *path, char err[VS_ERR_LEN])
{
    vs_manifest_t m;
    vs_status st = vs_manifest_load(path, &m, err);
    if (st != VS_OK)
        return st;
    st = vs_coord_add_loaded(c, &m, path, err);
    vs_manifest_fini(&m);
    return st;
}

vs_status vs_coord_activate(vs_coord_t *c, const char *version, char err[VS_ERR_LEN])
{
    vs_status st = vs_errf(err, VS_ERR_NOT_FOUND, "version %s is not known to this coordinator", version);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions; i++)
        if (strcmp(c->versions[i]->name, version) == 0) {
            c->active = c->versions[i];
            st = VS_OK;
        }
    pthread_mutex_unlock(&c->mu);
    return st;
}

/* Partitions of e with a usable replica. */
static uint32_t n_covered(vs_coord_t *c, const version_entry_t *e)
{
    uint32_t n = 0;
    for (uint32_t p = 0; p < e->router.n_partitions; p++)
        n += vs_view_live(c->view, e->name, p, expect_content(e, p)) > 0;
    return n;
}

/* 1 when every partition of e has a usable replica. */
static int covered(vs_coord_t *c, const version_entry_t *e)
{
    return n_covered(c, e) == e->router.n_partitions;
}

int vs_coord_version_ready(vs_coord_t *c, const char *version)
{
    version_entry_t *e = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions && !e; i++)
        if (strcmp(c->versions[i]->name, version) == 0)
            e = c->versions[i];
    if (e)
        atomic_fetch_add(&e->refs, 1);
    pthread_mutex_unlock(&c->mu);
    int ok = e && covered(c, e);
    version_unref(e);
    return ok;
}

uint32_t vs_coord_coverage(vs_coord_t *c, uint32_t *out_total)
{
    pthread_mutex_lock(&c->mu);
    version_entry_t *a = c->active;
    if (a)
        atomic_fetch_add(&a->refs, 1);
    pthread_mutex_unlock(&c->mu);
    uint32_t n = a ? n_covered(c, a) : 0;
    if (out_total)
        *out_total = a ? a->router.n_partitions : 0;
    version_unref(a);
    return n;
}

int vs_coord_ready(vs_coord_t *c)
{
    uint32_t total, n = vs_coord_coverage(c, &total);
    /* the same rule a request without min_coverage is answered by: at least one partition, and at least
     * the configured fraction (--min-coverage) */
    return total > 0 && n > 0 && (double)n >= (double)c->o.min_coverage * (double)total - 1e-9;
}

/* The version a request is served by, with a reference the request gives back (version_unref). */
static vs_status choose_version(vs_coord_t *c, const char *pinned, const char *model, version_entry_t **out,
                                char err[VS_ERR_LEN])
{
    vs_status st = VS_OK;
    char names[VS_ERR_LEN / 2] = "";
    size_t off = 0;
    pthread_mutex_lock(&c->mu);
    *out = NULL;
    if (pinned && *pinned) {
        for (size_t i = 0; i < c->n_versions; i++)
            if (strcmp(c->versions[i]->name, pinned) == 0)
                *out = c->versions[i];
        if (!*out) {
            for (size_t i = 0; i < c->n_versions && off < sizeof names - 1; i++)
                off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "",
                                        c->versions[i]->name);
            st = vs_errf(err, VS_ERR_NOT_FOUND, "index version \"%.100s\" is not served (served: %s)", pinned,
                         off ? names : "none");
        } else if (model && *model && strcmp((*out)->model, model) != 0) {
            st = vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                         "index version %s was built from embedding model \"%s\", not \"%.100s\"",
                         (*out)->name, (*out)->model, model);
        }
    } else if (model && *model) {
        if (c->active && strcmp(c->active->model, model) == 0)
            *out = c->active;
        for (size_t i = 0; i < c->n_versions && !*out; i++)
            if (strcmp(c->versions[i]->model, model) == 0)
                *out = c->versions[i];
        if (!*out) {
            for (size_t i = 0; i < c->n_versions && off < sizeof names - 1; i++)
                off += (size_t)snprintf(names + off, sizeof names - off, "%s%s (model %s)", i ? ", " : "",
                                        c->versions[i]->name, c->versions[i]->model);
            st = vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                         "no index version is built from embedding model \"%.100s\" (versions: %s)", model,
                         off ? names : "none");
        }
    } else {
        *out = c->active;
        if (!*out)
            st = vs_errf(err, VS_ERR_UNAVAILABLE, "no active index version");
    }
    if (st == VS_OK)
        atomic_fetch_add(&(*out)->refs, 1);
    else
        *out = NULL;
    pthread_mutex_unlock(&c->mu);
    return st;
}

size_t vs_coord_answer_bytes(size_t nq, uint32_t k)
{
    /* ids (int64 varints: at most 10 bytes, 8 on average for real ids) + distances (4 bytes), packed, plus
     * the fields and the coverage reasons */
    return nq * (size_t)k * (10 + 4) + 4096;
}

/* ---- one request: decode -> plan -> fan-out -> merge -> encode, driven by events ----
 *
 * A request lives from vs_coord_search_async until its last shard call came back: the handler's (and
 * active list's) reference plus one per call in flight. Its engine is driven under its mutex by the
 * events of its calls (batch.h delivers them on server workers) and by the coordinator's timer
 * (vs_coord_tick: due hedges, the deadline); the answer leaves as soon as the engine is finished, even if
 * calls (hedge losers, calls past the deadline) are still out. Lock order: request -> active list ->
 * batch queue; nothing is delivered under a batch queue's lock. */

typedef struct request {
    vs_coord_t *c;
    pthread_mutex_t mu;
    atomic_int refs;
    Vecshard__V1__SearchRequest *r; /* decoded (owned) */
    size_t nq;
    version_entry_t *ver; /* a reference */
    Vecshard__V1__SearchParams eff;
    int clipped;
    vs_route_plan_t plan;
    uint32_t k_part; /* results asked of each partition (k, or fewer: --partition-k-probability) */
    float **pq;      /* per part: its queries (cluster routing, owned) or NULL = all of r's */
    int64_t **pex;   /* per part: the excluded ids it owns (hash partitioning, owned) or NULL = all of r's */
    size_t *n_pex;
    int filtered;        /* the request has a filter with conditions */
    uint32_t group_size; /* group_by: at most this many results per value (0 = no group_by) */
    float **pdist;       /* per part: the accepted answer (owned), NULL until then */
    int64_t **pids;
    int64_t **pgroups; /* group_by: per part, the answer's group values (owned) */
    vs_fanout_part_t *fparts;
    vs_batch_item_t *items; /* n_parts * VS_FANOUT_MAX_TRIES, indexed by the engine's call id */
    vs_fanout_t *f;
    vs_rpc_server_t *srv;
    double deadline;
    double t_entry;                  /* arrival (vs_now_s()) */
    char rid[VS_REQUEST_ID_MAX + 1]; /* the request id (the client's or one made here) */
    int done;                        /* the answer has been built (under mu) */
    vs_status st;
    char err[VS_ERR_LEN];
    uint8_t *out;
    size_t out_len;
    vs_coord_reply_fn reply;
    void *reply_user;
    int64_t retry_after_ms; /* st RESOURCE_EXHAUSTED: the hint */
    int admitted;           /* counted in c->stats.in_flight_queries (nq) and _requests (release) */
    vs_priority prio;
    struct request *prev, *next; /* c->requests (under c->active_mu) */
    int listed;
} request_t;

static void request_unref(request_t *q)
{
    if (atomic_fetch_sub(&q->refs, 1) != 1)
        return;
    vs_fanout_destroy(q->f);
    for (size_t t = 0; t < q->plan.n_parts; t++) {
        if (q->pq)
            free(q->pq[t]);
        if (q->pex)
            free(q->pex[t]);
        if (q->pdist)
            free(q->pdist[t]);
        if (q->pids)
            free(q->pids[t]);
        if (q->pgroups)
            free(q->pgroups[t]);
    }
    free(q->pgroups);
    free(q->pq);
    free(q->pex);
    free(q->n_pex);
    free(q->pdist);
    free(q->pids);
    free(q->fparts);
    free(q->items);
    free(q->out);
    vs_route_plan_fini(&q->plan);
    version_unref(q->ver);
    if (q->r)
        vecshard__v1__search_request__free_unpacked(q->r, NULL);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* The request's filter and group_by against its version's attribute schema (the manifest's): a bad or
 * unknown field is INVALID_ARGUMENT here, before any shard is called. */
static vs_status check_attributes(request_t *q, char *err)
{
    const Vecshard__V1__SearchRequest *r = q->r;
    vs_filter_spec_t spec;
    vs_status st = vs_filter_spec_from_pb(r->filter, &spec, err);
    if (st != VS_OK)
        return st;
    q->filtered = spec.n_terms > 0;
    if (q->filtered)
        st = vs_filter_spec_check(&spec, q->ver->attrs, q->ver->n_attrs, err);
    vs_filter_spec_fini(&spec);
    if (st == VS_OK && r->group_by) {
        size_t field;
        st = vs_group_by_from_pb(r->group_by, q->ver->attrs, q->ver->n_attrs, r->k, &field, &q->group_size,
                                 err);
    }
    if (st != VS_OK && q->ver->n_attrs == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "index version %s has no attributes (built without --attr)", q->ver->name);
    return st;
}

/* Decodes and validates the request, chooses its version and resolves its parameters. */
static vs_status decode(vs_coord_t *c, const uint8_t *reqb, size_t reqlen, request_t *q, char err[VS_ERR_LEN])
{
    Vecshard__V1__SearchRequest *r = q->r = vecshard__v1__search_request__unpack(NULL, reqlen, reqb);
    if (!r)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "malformed vecshard.v1.SearchRequest (%zu bytes)",
                       reqlen);
    if (r->dim == 0 || r->n_queries == 0 || r->n_queries % r->dim != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu floats is not a non-empty batch of %u-dim queries",
                       r->n_queries, r->dim);
    size_t rl = strlen(r->request_id);
    if (rl && !vs_ident_valid(r->request_id, VS_REQUEST_ID_MAX))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "request_id must be 1..%d printable ASCII characters without spaces",
                       VS_REQUEST_ID_MAX);
    if (rl)
        memcpy(q->rid, r->request_id, rl + 1);
    else /* one made here: 16 hex digits, unique per coordinator process */
        snprintf(q->rid, sizeof q->rid, "%016llx",
                 (unsigned long long)vs_splitmix64(c->request_seed + atomic_fetch_add(&c->next_request, 1)));
    size_t nq = q->nq = r->n_queries / r->dim;
    if (nq > c->o.max_batch)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "batch of %zu queries is above the limit of %zu", nq,
                       c->o.max_batch);
    if (r->k == 0 || r->k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %u is out of range 1..%u", r->k, VS_TOPK_MAX_K);
    if (vs_coord_answer_bytes(nq, r->k) > VS_RPC_DEFAULT_MAX_MESSAGE_BYTES)
        /* refused before any search: the answer could not be sent */
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "%zu queries x k %u = %.0f MiB of results, above the %u MiB message limit: split the batch "
            "(at most %zu queries at this k)",
            nq, r->k, (double)vs_coord_answer_bytes(nq, r->k) / 1048576.0,
            VS_RPC_DEFAULT_MAX_MESSAGE_BYTES >> 20,
            (size_t)((VS_RPC_DEFAULT_MAX_MESSAGE_BYTES - 4096) / ((size_t)r->k * 14)));
    if (!(r->min_coverage >= 0 && r->min_coverage <= 1))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "min_coverage = %g is out of range 0..1",
                       r->min_coverage);
    if (r->n_exclude_ids > VS_EXCLUDE_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu excluded ids is above the limit of %u per request",
                       r->n_exclude_ids, VS_EXCLUDE_MAX);
    for (size_t i = 0; i < r->n_exclude_ids; i++)
        if (r->exclude_ids[i] < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "excluded id %zu is negative (%lld)", i,
                           (long long)r->exclude_ids[i]);
    if (r->exact && nq > VS_EXACT_MAX_QUERIES)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "an exact search takes at most %u queries per request (%zu)", VS_EXACT_MAX_QUERIES,
                       nq);
    if (r->exact && (r->params || r->n_exclude_ids || r->filter || r->group_by || r->min_log_seq))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "an exact search takes no params, exclude_ids, filter, group_by or min_log_seq");
    vs_status st = vs_check_finite(r->queries, nq, r->dim, "query", err);
    if (st == VS_OK)
        st = choose_version(c, r->index_version, r->model_version, &q->ver, err);
    if (st != VS_OK)
        return st;
    if (r->dim != q->ver->router.dim)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "dim = %u, but index version %s has dim %u", r->dim,
                       q->ver->name, q->ver->router.dim);
    if (q->ver->router.nlist && r->params && r->params->ef_search)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "efSearch applies to HNSW indexes only");
    if (r->params && r->params->quantizer_ef_search &&
        (!q->ver->coarse_hnsw_m || r->params->quantizer_ef_search > VS_MAX_QUANTIZER_EF))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       q->ver->coarse_hnsw_m
                           ? "quantizer_efSearch = %u is above %u"
                           : "quantizer_efSearch applies to IVF{n}_HNSW{M} indexes only (%u, %u)",
                       r->params->quantizer_ef_search, VS_MAX_QUANTIZER_EF);
    if (r->params && !(r->params->filter_exact_threshold >= 0 && r->params->filter_exact_threshold <= 1))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter_exact_threshold = %g is out of range (0, 1]",
                       (double)r->params->filter_exact_threshold);
    if ((st = check_attributes(q, err)) != VS_OK)
        return st;
    resolve_params(q->ver, r->params, &q->eff, &q->clipped);
    if (q->clipped)
        atomic_fetch_add(&c->stats.params_clipped, 1);
    return VS_OK;
}

/* Coverage, merge and the encoded answer. */

/* A shard of an older release ignores ShardSearchRequest.exclude_ids: the merged answer loses any excluded
 * id it still holds (that query then has fewer results, padded), so none ever reaches the client. */
static vs_status drop_excluded(const request_t *q, size_t nq, size_t k, float *dist, int64_t *ids,
                               int64_t *groups, char *err)
{
    vs_idset_t *set;
    vs_status st = vs_idset_create(q->r->exclude_ids, q->r->n_exclude_ids, &set, err);
    if (st != VS_OK)
        return st;
    const float pad = vs_topk_pad_distance(vs_metric_larger_is_better(q->ver->router.metric));
    for (size_t i = 0; i < nq; i++) {
        size_t w = i * k;
        for (size_t j = i * k; j < (i + 1) * k; j++)
            if (ids[j] < 0 || !vs_idset_has(set, ids[j])) {
                dist[w] = dist[j];
                if (groups)
                    groups[w] = groups[j];
                ids[w++] = ids[j];
            }
        for (; w < (i + 1) * k; w++) {
            dist[w] = pad;
            ids[w] = -1;
            if (groups)
                groups[w] = VS_ATTR_NULL_INT;
        }
    }
    vs_idset_destroy(set);
    return VS_OK;
}

/* group_by: per query, the partitions' answers (each already at most size per value) pooled, sorted best
 * first (ties by id, duplicates dropped) and selected again with the same rule: the global answer. */
static vs_status merge_grouped(const request_t *q, const int *ok, float *dist, int64_t *ids, int64_t *groups,
                               char *err)
{
    const size_t T = q->plan.n_parts, k = q->r->k, nq = q->nq, cap = (T ? T : 1) * k;
    const int larger = vs_metric_larger_is_better(q->ver->router.metric);
    const float pad = vs_topk_pad_distance(larger);
    /* one query's pool (what the partitions answered) and the same sorted, without repeats */
    float *pool_d = malloc(cap * sizeof *pool_d), *sd = malloc(cap * sizeof *sd);
    int64_t *pool_i = malloc(cap * sizeof *pool_i), *pool_g = malloc(cap * sizeof *pool_g),
            *si = malloc(cap * sizeof *si), *sg = malloc(cap * sizeof *sg),
            *scratch = malloc(4 * (k + 1) * sizeof *scratch);
    size_t *order = malloc(cap * sizeof *order);
    vs_status st = VS_OK;
    if (!pool_d || !sd || !pool_i || !pool_g || !si || !sg || !scratch || !order)
        st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    for (size_t i = 0; st == VS_OK && i < nq; i++) {
        size_t n = 0;
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; ok[t] && j < k && q->pids[t][i * k + j] >= 0; j++) {
                pool_d[n] = q->pdist[t][i * k + j];
                pool_i[n] = q->pids[t][i * k + j];
                pool_g[n] = q->pgroups[t][i * k + j];
                order[n] = n;
                n++;
            }
        /* best first, ties by id (insertion sort: at most partitions x k entries, in sorted runs) */
        for (size_t a = 1; a < n; a++) {
            size_t x = order[a], b = a;
            const float kx = vs_topk_key(pool_d[x], larger);
            for (; b > 0; b--) {
                size_t y = order[b - 1];
                float ky = vs_topk_key(pool_d[y], larger);
                if (ky < kx || (ky == kx && pool_i[y] <= pool_i[x]))
                    break;
                order[b] = y;
            }
            order[b] = x;
        }
        size_t m = 0;
        for (size_t a = 0; a < n; a++) {
            size_t x = order[a];
            if (m && si[m - 1] == pool_i[x])
                continue; /* the same id from two partitions (a move between them) */
            sd[m] = pool_d[x];
            si[m] = pool_i[x];
            sg[m++] = pool_g[x];
        }
        vs_group_select(m, sd, si, sg, k, q->group_size, pad, dist + i * k, ids + i * k, groups + i * k,
                        scratch);
    }
    free(pool_d);
    free(sd);
    free(pool_i);
    free(pool_g);
    free(si);
    free(sg);
    free(scratch);
    free(order);
    return st;
}

/* The applied parameters as the recall estimates' label: FAISS names, zero fields left out. */
static void params_key(const Vecshard__V1__SearchParams *p, char *buf, size_t n)
{
    int off = 0;
    buf[0] = 0;
    if (p->nprobe)
        off += snprintf(buf + off, n - (size_t)off, "nprobe=%u", p->nprobe);
    if (p->ef_search && (size_t)off < n)
        off += snprintf(buf + off, n - (size_t)off, "%sefSearch=%u", off ? "," : "", p->ef_search);
    if (p->k_factor != 0 && (size_t)off < n)
        off += snprintf(buf + off, n - (size_t)off, "%sk_factor=%g", off ? "," : "", (double)p->k_factor);
    if (p->quantizer_ef_search && (size_t)off < n)
        snprintf(buf + off, n - (size_t)off, "%squantizer_efSearch=%u", off ? "," : "",
                 p->quantizer_ef_search);
}

static vs_status answer(vs_coord_t *c, request_t *q, vs_fanout_t *f, uint8_t **out, size_t *out_len,
                        char err[VS_ERR_LEN])
{
    const size_t T = q->plan.n_parts, k = q->r->k, nq = q->nq;
    const uint32_t total = q->ver->router.n_partitions;
    size_t answered = 0;
    for (size_t t = 0; t < T; t++)
        answered += vs_fanout_part_outcome(f, t, NULL) == VS_FANOUT_ANSWERED;
    /* partitions the router did not call (no query routed there) count as answered: nothing was lost */
    size_t covered = answered + (total - T);
    float min_cov = q->r->min_coverage > 0 ? q->r->min_coverage : c->o.min_coverage;
    const char **reasons = calloc(T ? T : 1, sizeof *reasons);
    if (!reasons)
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    size_t nr = 0;
    for (size_t t = 0; t < T; t++)
        if (vs_fanout_part_outcome(f, t, &reasons[nr]) != VS_FANOUT_ANSWERED)
            nr++;
    char list[VS_ERR_LEN / 2]; /* the reasons on one line, for the status and the log */
    list[0] = '\0';
    for (size_t i = 0, off = 0; i < nr && off < sizeof list - 1; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? "; " : "", reasons[i]);
    if (answered == 0 || (double)covered < (double)min_cov * total - 1e-9) {
        free(reasons);
        atomic_fetch_add(&c->stats.unavailable, 1);
        pthread_mutex_lock(&c->log_mu);
        vs_log_limited(&c->partial_log, VS_LOG_WARN,
                       "request %s: UNAVAILABLE, %zu of %u partitions of %s answered (min_coverage %.2f): %s",
                       q->rid, covered, total, q->ver->name, (double)min_cov, list);
        pthread_mutex_unlock(&c->log_mu);
        return vs_errf(err, VS_ERR_UNAVAILABLE, "%zu of %u partitions answered (min_coverage %.2f): %s",
                       covered, total, (double)min_cov, list);
    }
    float *dist = malloc(nq * k * sizeof(float));
    int64_t *ids = malloc(nq * k * sizeof(int64_t));
    const float **pd = calloc(T ? T : 1, sizeof *pd);
    const int64_t **pi = calloc(T ? T : 1, sizeof *pi);
    int *ok = calloc(T ? T : 1, sizeof *ok);
    vs_status st = VS_OK;
    if (!dist || !ids || !pd || !pi || !ok)
        st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    for (size_t t = 0; st == VS_OK && t < T; t++) {
        ok[t] = q->pdist[t] != NULL;
        pd[t] = q->pdist[t];
        pi[t] = q->pids[t];
    }
    int64_t *groups = q->group_size ? malloc(nq * k * sizeof *groups) : NULL;
    if (st == VS_OK && q->group_size && !groups)
        st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    if (st == VS_OK && q->group_size)
        st = merge_grouped(q, ok, dist, ids, groups, err);
    else if (st == VS_OK)
        st = vs_route_merge(&q->plan, k, vs_metric_larger_is_better(q->ver->router.metric), pd, pi, ok, dist,
                            ids, err);
    if (st == VS_OK && q->r->n_exclude_ids)
        st = drop_excluded(q, nq, k, dist, ids, groups, err);
    /* sampled: plain answers (no filter, exclusions, group_by; not exact). Answers at the version's own
     * parameters are labelled params="defaults": its target was tuned for them, and the alert looks at them
     * only; other parameters get their own series */
    if (st == VS_OK && c->recall && covered == total && !q->r->n_exclude_ids && !q->filtered &&
        !q->group_size && !q->r->exact) {
        char key[VS_RECALL_KEY_LEN];
        const Vecshard__V1__SearchParams *dp = &q->ver->defaults;
        if (q->eff.nprobe == dp->nprobe && q->eff.ef_search == dp->ef_search &&
            q->eff.k_factor == dp->k_factor && q->eff.quantizer_ef_search == dp->quantizer_ef_search)
            snprintf(key, sizeof key, "defaults");
        else
            params_key(&q->eff, key, sizeof key);
        vs_recall_offer(c->recall, vs_now_s(), q->ver->name, key, q->ver->router.dim, (uint32_t)k, nq,
                        q->r->queries, ids);
    }
    if (st == VS_OK) {
        Vecshard__V1__SearchResponse resp = VECSHARD__V1__SEARCH_RESPONSE__INIT;
        Vecshard__V1__Coverage cov = VECSHARD__V1__COVERAGE__INIT;
        cov.partitions_total = total;
        cov.partitions_answered = (uint32_t)covered;
        cov.partial = covered < total;
        cov.n_reasons = nr;
        cov.reasons = (char **)reasons;
        resp.nq = (uint32_t)nq;
        resp.k = (uint32_t)k;
        resp.n_ids = resp.n_distances = nq * k;
        resp.ids = ids;
        resp.distances = dist;
        resp.index_version = q->ver->name;
        resp.coverage = &cov;
        resp.applied_params = &q->eff;
        resp.params_clipped = q->clipped;
        resp.request_id = q->rid;
        resp.exact = q->r->exact;
        resp.metric = q->ver->router.metric == VS_METRIC_L2   ? VECSHARD__V1__METRIC__METRIC_L2
                      : q->ver->router.metric == VS_METRIC_IP ? VECSHARD__V1__METRIC__METRIC_INNER_PRODUCT
                                                              : VECSHARD__V1__METRIC__METRIC_COSINE;
        if (groups) {
            resp.group_values = groups;
            resp.n_group_values = nq * k;
        }
        if (cov.partial) {
            atomic_fetch_add(&c->stats.partial, 1);
            pthread_mutex_lock(&c->log_mu);
            vs_log_limited(&c->partial_log, VS_LOG_WARN,
                           "request %s: partial answer, %zu of %u partitions of %s: %s", q->rid, covered,
                           total, q->ver->name, list);
            pthread_mutex_unlock(&c->log_mu);
        }
        size_t n = vecshard__v1__search_response__get_packed_size(&resp);
        if (!(*out = malloc(n ? n : 1)))
            st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
        else
            *out_len = vecshard__v1__search_response__pack(&resp, *out);
    }
    free(dist);
    free(ids);
    free(groups);
    free(pd);
    free(pi);
    free(ok);
    free(reasons);
    return st;
}

/* Routes the queries and prepares each partition's call (its queries, lists and batch key). */

/* Under hash partitioning each excluded id goes only to the partition that owns it (q->pex[t]); a
 * cluster-partitioned version's items may be in any partition, so every part gets them all (pex NULL). */
static vs_status split_exclusions(request_t *q, char *err)
{
    const Vecshard__V1__SearchRequest *r = q->r;
    const vs_router_t *ro = &q->ver->router;
    if (r->n_exclude_ids == 0 || ro->list_partition || ro->n_partitions <= 1)
        return VS_OK;
    for (size_t t = 0; t < q->plan.n_parts; t++) {
        uint32_t p = q->plan.parts[t].partition;
        size_t n = 0;
        for (size_t i = 0; i < r->n_exclude_ids; i++)
            n += vs_hash_partition(r->exclude_ids[i], ro->n_partitions) == p;
        if (!(q->pex[t] = malloc((n ? n : 1) * sizeof *q->pex[t])))
            return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
        for (size_t i = 0; i < r->n_exclude_ids; i++)
            if (vs_hash_partition(r->exclude_ids[i], ro->n_partitions) == p)
                q->pex[t][q->n_pex[t]++] = r->exclude_ids[i];
    }
    return VS_OK;
}

static vs_status plan(vs_coord_t *c, request_t *q, char err[VS_ERR_LEN])
{
    /* a filtered or grouped request goes to every partition, which ranks its own lists (only the shards
     * know which lists may hold matching items and how far to probe for the filter) */
    vs_status st = q->filtered || q->group_size || q->r->exact
                       ? vs_router_plan_all(&q->ver->router, q->nq, &q->plan, err)
                       : vs_router_plan_ef(&q->ver->router, q->nq, q->r->queries, q->eff.nprobe,
                                           q->eff.quantizer_ef_search, &q->plan, err);
    if (st != VS_OK)
        return st;
    if (q->plan.lists_per_query)
        atomic_fetch_add(&c->stats.coarse_ranked, q->nq);
    size_t T = q->plan.n_parts, n = T ? T : 1;
    /* hash partitions hold the true top-k uniformly at random: each may return fewer (cluster routing
     * sends a query where its lists are, so no such bound holds there) */
    q->k_part = q->r->k;
    if (!q->ver->router.list_partition && T > 1 && !q->group_size && !q->r->exact)
        q->k_part = (uint32_t)vs_topk_partition_k(q->r->k, (uint32_t)T, c->o.partition_k_probability);
    q->pq = calloc(n, sizeof *q->pq);
    q->pdist = calloc(n, sizeof *q->pdist);
    q->pids = calloc(n, sizeof *q->pids);
    q->pgroups = calloc(n, sizeof *q->pgroups);
    q->fparts = calloc(n, sizeof *q->fparts);
    q->items = calloc(n * VS_FANOUT_MAX_TRIES, sizeof *q->items);
    q->pex = calloc(n, sizeof *q->pex);
    q->n_pex = calloc(n, sizeof *q->n_pex);
    if (!q->pq || !q->pdist || !q->pids || !q->pgroups || !q->fparts || !q->items || !q->pex || !q->n_pex)
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    if ((st = split_exclusions(q, err)) != VS_OK)
        return st;
    const uint32_t d = q->r->dim;
    for (size_t t = 0; t < T; t++) {
        const vs_route_part_t *part = &q->plan.parts[t];
        if (part->query_idx) { /* cluster routing: this partition's queries */
            if (!(q->pq[t] = malloc(part->nq * d * sizeof(float))))
                return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
            for (size_t j = 0; j < part->nq; j++)
                memcpy(q->pq[t] + j * d, q->r->queries + (size_t)part->query_idx[j] * d, d * sizeof(float));
        }
        q->fparts[t] = (vs_fanout_part_t){part->partition, expect_content(q->ver, part->partition)};
    }
    return VS_OK;
}

static void on_item(void *user, uint32_t call_id, const vs_fanout_result_t *res);

/* The engine's transport: part t's call becomes a batch item for replica r. */
static uint64_t io_start(void *u, vs_replica_t *r, size_t t, double deadline, uint32_t call_id)
{
    request_t *q = u;
    const vs_route_part_t *part = &q->plan.parts[t];
    const uint32_t lpq = q->plan.lists_per_query;
    vs_batch_item_t *it = &q->items[call_id];
    *it = (vs_batch_item_t){.key = {.version = q->ver->name,
                                    .dim = q->r->dim,
                                    .k = q->k_part,
                                    .nprobe = lpq ? 0 : q->eff.nprobe,
                                    .ef_search = q->eff.ef_search,
                                    .quantizer_ef_search = lpq ? 0 : q->eff.quantizer_ef_search,
                                    .k_factor = q->eff.k_factor,
                                    .lists_per_query = lpq,
                                    .partition_ref = part->query_idx != NULL,
                                    .partition = part->partition,
                                    .min_log_seq = q->r->min_log_seq,
                                    .exclude = q->pex[t] ? q->pex[t] : q->r->exclude_ids,
                                    .n_exclude = q->pex[t] ? q->n_pex[t] : q->r->n_exclude_ids,
                                    .filter = q->filtered ? q->r->filter : NULL,
                                    .group_by = q->group_size ? q->r->group_by : NULL,
                                    .filter_exact = q->eff.filter_exact_threshold,
                                    .exact = q->r->exact,
                                    .priority = q->prio},
                            .nq = part->nq,
                            .queries = q->pq[t] ? q->pq[t] : q->r->queries,
                            .lists = part->lists ? part->lists : q->plan.lists,
                            .deadline = deadline,
                            .request_id = q->rid,
                            .deliver = on_item,
                            .user = q,
                            .call_id = call_id};
    atomic_fetch_add(&q->refs, 1);
    char err[VS_ERR_LEN];
    if (vs_batch_submit(q->srv, r, it, &q->c->bo, &q->c->stats.batch, err) != VS_OK) {
        atomic_fetch_sub(&q->refs, 1); /* the handler's reference remains */
        return 0;
    }
    return (uint64_t)call_id + 1;
}

/* An answer is acceptable when it has the part's nq x k_part results (the batcher checked version,
 * partition and the call's shape); it is copied (the shard's message is freed after this), each query's
 * list padded to k with id -1 when partitions were asked for fewer. */
static int io_accept(void *u, size_t t, const vs_fanout_answer_t *a, char why[VS_FANOUT_REASON_LEN])
{
    request_t *q = u;
    size_t nq = q->plan.parts[t].nq, k = q->r->k, kp = q->k_part;
    if (a->nq != nq || a->k != kp) {
        snprintf(why, VS_FANOUT_REASON_LEN, "answered %zu queries x k %u, expected %zu x %zu", a->nq, a->k,
                 nq, kp);
        return 0;
    }
    if (q->group_size && !a->groups) {
        snprintf(why, VS_FANOUT_REASON_LEN, "answered without group values");
        return 0;
    }
    q->pdist[t] = malloc(nq * k * sizeof(float));
    q->pids[t] = malloc(nq * k * sizeof(int64_t));
    q->pgroups[t] = q->group_size ? malloc(nq * k * sizeof(int64_t)) : NULL;
    if (!q->pdist[t] || !q->pids[t] || (q->group_size && !q->pgroups[t])) {
        free(q->pdist[t]);
        free(q->pids[t]);
        free(q->pgroups[t]);
        q->pdist[t] = NULL;
        q->pids[t] = NULL;
        q->pgroups[t] = NULL;
        snprintf(why, VS_FANOUT_REASON_LEN, "coordinator: out of memory for the answer");
        return 0;
    }
    for (size_t i = 0; i < nq; i++) {
        memcpy(q->pdist[t] + i * k, a->dist + i * kp, kp * sizeof(float));
        memcpy(q->pids[t] + i * k, a->ids + i * kp, kp * sizeof(int64_t));
        if (q->group_size)
            memcpy(q->pgroups[t] + i * k, a->groups + i * kp, kp * sizeof(int64_t));
        for (size_t j = kp; j < k; j++) {
            q->pdist[t][i * k + j] = 0;
            q->pids[t][i * k + j] = -1; /* ends the list for the merge */
        }
    }
    return 1;
}

/* Lowers the coordinator's next timer to t. */
static void wake_at(vs_coord_t *c, double t)
{
    long long us = t > 9e12 ? LLONG_MAX : (long long)(t * 1e6);
    long long cur = atomic_load(&c->next_wake_us);
    while (us < cur && !atomic_compare_exchange_weak(&c->next_wake_us, &cur, us)) {
    }
}

/* After an event (q->mu held): builds the answer once the engine is finished (returns 1: the caller
 * completes the request after unlocking), else keeps the timer. */
static int settle(request_t *q)
{
    if (q->done)
        return 0;
    if (!vs_fanout_finished(q->f)) {
        wake_at(q->c, vs_fanout_wake(q->f));
        return 0;
    }
    q->done = 1;
    q->st = vs_fanout_status(q->f, q->err);
    if (q->st == VS_OK && vs_fanout_overloaded(q->f, &q->retry_after_ms)) {
        /* a partition's replicas shed its call: refuse the request rather than answer without it */
        char list[VS_ERR_LEN / 2] = "";
        for (size_t t = 0, off = 0; t < q->plan.n_parts && off < sizeof list - 1; t++) {
            const char *why;
            if (vs_fanout_part_outcome(q->f, t, &why) == VS_FANOUT_FAILED)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? "; " : "", why);
        }
        if (q->retry_after_ms <= 0)
            q->retry_after_ms = vs_overload_retry_after_ms(q->c->o.max_queue_ms * 1e-3);
        q->st = vs_errf(q->err, VS_ERR_RESOURCE_EXHAUSTED, "overloaded: %s; retry after %lld ms", list,
                        (long long)q->retry_after_ms);
        vs_overload_metrics_shed(q->c->o.overload, "partition", q->prio);
        atomic_fetch_add(&q->c->stats.overloaded, 1);
    } else if (q->st == VS_OK) {
        double t0 = q->c->o.on_stage ? vs_now_s() : 0;
        q->st = answer(q->c, q, q->f, &q->out, &q->out_len, q->err);
        if (q->c->o.on_stage && q->st == VS_OK)
            q->c->o.on_stage(q->c->o.stage_user, VS_COORD_STAGE_MERGE, vs_now_s() - t0);
    }
    return 1;
}

/* Gives back what admit() counted for q (its queries and the request in flight); idempotent. */
static void release(vs_coord_t *c, request_t *q)
{
    if (!q->admitted)
        return;
    atomic_fetch_sub(&c->stats.in_flight_queries, (long)q->nq);
    atomic_fetch_sub(&c->stats.in_flight_requests, 1);
    q->admitted = 0;
}

/* Sends the answer and drops the handler's reference (no lock held). */
static void complete(request_t *q)
{
    vs_coord_t *c = q->c;
    pthread_mutex_lock(&c->active_mu);
    if (q->listed) {
        if (q->prev)
            q->prev->next = q->next;
        else
            c->requests = q->next;
        if (q->next)
            q->next->prev = q->prev;
        q->listed = 0;
    }
    pthread_mutex_unlock(&c->active_mu);
    uint8_t *out = q->out;
    q->out = NULL;
    double ms = (vs_now_s() - q->t_entry) * 1e3;
    if (c->o.slow_request_ms > 0 && ms > c->o.slow_request_ms) {
        pthread_mutex_lock(&c->log_mu);
        vs_log_limited(&c->slow_log, VS_LOG_WARN,
                       "request %s: slow, answered after %.1f ms (%s, %zu queries, k %u, %s)", q->rid, ms,
                       q->ver ? q->ver->name : "?", q->nq, q->r ? q->r->k : 0, vs_status_name(q->st));
        pthread_mutex_unlock(&c->log_mu);
    }
    if (q->admitted && c->elimit && q->nq <= VS_COORD_ELIMIT_MAX_NQ) {
        double now = vs_now_s();
        vs_elimit_on_done(c->elimit, now - q->t_entry, q->st == VS_ERR_RESOURCE_EXHAUSTED, now);
    }
    release(c, q);
    q->reply(q->reply_user, q->st, q->err, q->retry_after_ms, out, q->out_len);
    request_unref(q);
}

static void on_item(void *user, uint32_t call_id, const vs_fanout_result_t *res)
{
    request_t *q = user;
    pthread_mutex_lock(&q->mu);
    vs_fanout_on_result(q->f, call_id, res, vs_now_s());
    int finished = settle(q);
    pthread_mutex_unlock(&q->mu);
    if (finished)
        complete(q);
    request_unref(q); /* the call's reference */
}

double vs_coord_concurrency_limit(vs_coord_t *c)
{
    return c->elimit ? vs_elimit_get(c->elimit) : 0;
}

double vs_coord_tick(vs_coord_t *c, double now)
{
    long long due = atomic_load(&c->next_wake_us);
    if ((double)due > now * 1e6)
        return (double)due * 1e-6;
    /* claim the scan: every active request lowers the timer again as it is looked at */
    atomic_store(&c->next_wake_us, LLONG_MAX);
    pthread_mutex_lock(&c->active_mu);
    size_t n = 0;
    for (request_t *q = c->requests; q; q = q->next)
        n++;
    request_t **all = malloc((n ? n : 1) * sizeof *all);
    if (!all) { /* try again soon */
        pthread_mutex_unlock(&c->active_mu);
        wake_at(c, now + 1e-3);
        return now + 1e-3;
    }
    n = 0;
    for (request_t *q = c->requests; q; q = q->next) {
        atomic_fetch_add(&q->refs, 1);
        all[n++] = q;
    }
    pthread_mutex_unlock(&c->active_mu);
    for (size_t i = 0; i < n; i++) {
        request_t *q = all[i];
        pthread_mutex_lock(&q->mu);
        if (!q->done && vs_fanout_wake(q->f) <= now)
            vs_fanout_on_time(q->f, now);
        int finished = settle(q);
        pthread_mutex_unlock(&q->mu);
        if (finished)
            complete(q);
        request_unref(q);
    }
    free(all);
    return (double)atomic_load(&c->next_wake_us) * 1e-6;
}

/* Refuses a request for overload (reason: the shed metric's label). */
static void shed(vs_coord_t *c, vs_coord_reply_fn reply, void *user, const char *reason, vs_priority prio,
                 int64_t retry_after_ms, const char *msg)
{
    vs_overload_metrics_shed(c->o.overload, reason, prio);
    atomic_fetch_add(&c->stats.overloaded, 1);
    reply(user, VS_ERR_RESOURCE_EXHAUSTED, msg, retry_after_ms, NULL, 0);
}

/* Admission at arrival (docs/reliability.md, "Overload control"): 1 = admitted (its queries are counted
 * in flight), 0 = refused (answered). */
static int admit(vs_coord_t *c, request_t *q, const vs_coord_call_t *call, vs_coord_reply_fn reply,
                 void *user)
{
    char msg[VS_ERR_LEN];
    const char *client = call && call->client ? call->client : "anonymous";
    int64_t ra = 0;
    double qps = 0;
    const double share = q->prio == VS_PRIORITY_ONLINE ? 1.0 : VS_OVERLOAD_SHEDDABLE_SHARE;
    double cap = (double)c->o.max_in_flight * share, lim = 0;
    long before = atomic_fetch_add(&c->stats.in_flight_queries, (long)q->nq);
    long reqs = atomic_fetch_add(&c->stats.in_flight_requests, 1);
    q->admitted = 1;
    if (c->elimit && !vs_elimit_admit(c->elimit, (double)reqs, share, vs_now_s(), &lim)) {
        release(c, q);
        ra = vs_overload_retry_after_ms(c->o.target_latency_ms * 1e-3);
        snprintf(msg, sizeof msg,
                 "coordinator overloaded: %ld requests in flight, its concurrency limit for %s requests is "
                 "%.0f (held for a latency of %.0f ms); retry after %lld ms",
                 reqs, vs_priority_name(q->prio), lim, c->o.target_latency_ms, (long long)ra);
        shed(c, reply, user, "limit", q->prio, ra, msg);
        return 0;
    }
    if (before > 0 && (double)before + (double)q->nq > cap) {
        release(c, q);
        ra = vs_overload_retry_after_ms(c->o.max_queue_ms > 0 ? c->o.max_queue_ms * 1e-3 : 0.1);
        snprintf(msg, sizeof msg,
                 "coordinator overloaded: %ld queries in flight, %s requests may have %.0f; retry after %lld "
                 "ms",
                 before, vs_priority_name(q->prio), cap, (long long)ra);
        shed(c, reply, user, "in_flight", q->prio, ra, msg);
        return 0;
    }
    /* last: a request the cluster refuses anyway does not spend the client's quota */
    if (!vs_quotas_take(c->quotas, client, (double)q->nq, vs_now_s(), &ra, &qps)) {
        release(c, q);
        snprintf(msg, sizeof msg,
                 "client %.100s is over its quota of %.0f queries/s (this request: %zu); retry after %lld ms",
                 client, qps, q->nq, (long long)ra);
        shed(c, reply, user, "quota", q->prio, ra, msg);
        return 0;
    }
    return 1;
}

void vs_coord_search_async(vs_coord_t *c, vs_rpc_server_t *srv, const uint8_t *reqb, size_t reqlen,
                           const vs_coord_call_t *call, vs_coord_reply_fn reply, void *user)
{
    atomic_fetch_add(&c->stats.requests, 1);
    const int64_t timeout_ms = call ? call->timeout_ms : 0;
    /* waited too long for a worker: refuse before decoding (the cheapest refusal) */
    if (call && call->queued_s >= 0) {
        if (c->o.overload)
            vs_histogram_observe(c->o.overload->queue, call->queued_s);
        vs_priority prio;
        int64_t ra;
        char msg[VS_ERR_LEN];
        if (vs_overload_queued_too_long(call->queued_s, c->o.max_queue_ms * 1e-3, reqb, reqlen,
                                        VS_COORD_SEARCH_PRIORITY_FIELD, "coordinator", &prio, &ra, msg)) {
            shed(c, reply, user, "queue", prio, ra, msg);
            return;
        }
    }
    /* The answer must leave before the client's deadline: keep max(1 ms, 5 %) of it for merging, encoding
     * and the way back, so a hung partition gives a partial answer in time, not DEADLINE_EXCEEDED. */
    const double t_entry = vs_now_s();
    const double budget_s = (double)(timeout_ms > 0 ? timeout_ms : c->o.default_timeout_ms) * 1e-3;
    const double reserve_s = budget_s * 0.05 > 1e-3 ? budget_s * 0.05 : 1e-3;
    char err[VS_ERR_LEN] = "";
    request_t *q = calloc(1, sizeof *q);
    if (!q) {
        reply(user, vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory"), err, 0, NULL, 0);
        return;
    }
    q->c = c;
    q->srv = srv;
    q->reply = reply;
    q->reply_user = user;
    q->deadline = t_entry + budget_s - reserve_s;
    q->t_entry = t_entry;
    atomic_init(&q->refs, 1);
    pthread_mutex_init(&q->mu, NULL);
    vs_status st = decode(c, reqb, reqlen, q, err);
    if (st == VS_OK) {
        q->prio = vs_priority_of((uint64_t)q->r->priority);
        if (!admit(c, q, call, reply, user)) {
            request_unref(q);
            return;
        }
        st = plan(c, q, err);
    }
    if (st != VS_OK) {
        release(c, q);
        reply(user, st, err, 0, NULL, 0);
        request_unref(q);
        return;
    }
    if (c->o.on_stage)
        c->o.on_stage(c->o.stage_user, VS_COORD_STAGE_ROUTE, vs_now_s() - t_entry);
    atomic_fetch_add(&c->stats.fanout_sum, q->plan.n_parts);
    atomic_fetch_add(&c->stats.fanout_count, 1);
    vs_fanout_io_t io = {io_start, NULL, io_accept, q};
    vs_fanout_opts_t fo = {c->o.hedge_delay_ms, c->o.min_hedge_delay_ms, q->r->exact,
                           c->o.retry_budget >= 0 ? &c->budget : NULL};
    pthread_mutex_lock(&q->mu); /* answers may arrive on other workers before the engine is set up */
    pthread_mutex_lock(&c->active_mu);
    q->next = c->requests;
    if (c->requests)
        c->requests->prev = q;
    c->requests = q;
    q->listed = 1;
    pthread_mutex_unlock(&c->active_mu);
    st = vs_fanout_create(c->view, &fo, &io, &c->stats.fanout, q->ver->name, q->fparts, q->plan.n_parts,
                          q->deadline, vs_now_s(), &q->f, q->err);
    int finished = 1;
    if (st == VS_OK) {
        finished = settle(q);
    } else {
        q->done = 1;
        q->st = st;
    }
    pthread_mutex_unlock(&q->mu);
    if (finished)
        complete(q);
}

vs_status vs_coord_status_pb(vs_coord_t *c, int etcd_connected, const char *cluster, uint8_t **out,
                             size_t *out_len, char err[VS_ERR_LEN])
{
    size_t n = vs_view_members(c->view, NULL, 0);
    vs_view_member_t *mem = calloc(n ? n : 1, sizeof *mem);
    Vecshard__V1__MemberStatus *ms = calloc(n ? n : 1, sizeof *ms);
    Vecshard__V1__MemberStatus **mp = calloc(n ? n : 1, sizeof *mp);
    char **vers = calloc((n ? n : 1) * VS_VIEW_MAX_VERSIONS, sizeof *vers);
    vs_status st = VS_OK;
    if (!mem || !ms || !mp || !vers)
        st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    if (st == VS_OK) {
        n = vs_view_members(c->view, mem, n);
        Vecshard__V1__StatusResponse resp = VECSHARD__V1__STATUS_RESPONSE__INIT;
        char active[VS_NAME_LEN] = "";
        pthread_mutex_lock(&c->mu);
        if (c->active)
            snprintf(active, sizeof active, "%s", c->active->name);
        pthread_mutex_unlock(&c->mu);
        for (size_t i = 0; i < n; i++) {
            vecshard__v1__member_status__init(&ms[i]);
            ms[i].replica_id = mem[i].replica_id;
            ms[i].address = mem[i].address;
            ms[i].partition = mem[i].partition;
            ms[i].state = mem[i].state;
            for (size_t j = 0; j < mem[i].n_versions; j++)
                vers[i * VS_VIEW_MAX_VERSIONS + j] = mem[i].versions[j];
            ms[i].versions = &vers[i * VS_VIEW_MAX_VERSIONS];
            ms[i].n_versions = mem[i].n_versions;
            ms[i].latency_ewma_ms = mem[i].latency_ewma_ms;
            ms[i].outstanding = mem[i].outstanding;
            ms[i].zone = mem[i].zone;
            mp[i] = &ms[i];
        }
        resp.cluster = (char *)cluster;
        resp.active_version = active;
        resp.members = mp;
        resp.n_members = n;
        resp.etcd_connected = etcd_connected;
        size_t sz = vecshard__v1__status_response__get_packed_size(&resp);
        *out = malloc(sz ? sz : 1);
        if (!*out)
            st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
        else
            *out_len = vecshard__v1__status_response__pack(&resp, *out);
    }
    free(mem);
    free(ms);
    free(mp);
    free(vers);
    return st;
}

/* ---- recall monitoring: the replay worker ---------------------------------------------------------- */

/* The exact answer of a sampled batch: one exact ShardSearchRequest per partition of its version, to a
 * replica picked as for a search (its latency is not recorded: these calls are slow by design), merged
 * per query. VS_ERR_NOT_FOUND when the version is gone, VS_ERR_UNAVAILABLE when a partition has no live
 * replica or its call failed, VS_ERR_UNSUPPORTED when the version keeps no exact vectors. */
static vs_status recall_replay(vs_coord_t *c, const vs_recall_batch_t *b, int64_t *exact, char *err)
{
    version_entry_t *e = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_versions && !e; i++)
        if (strcmp(c->versions[i]->name, b->version) == 0) {
            e = c->versions[i];
            atomic_fetch_add(&e->refs, 1);
        }
    pthread_mutex_unlock(&c->mu);
    if (!e)
        return vs_errf(err, VS_ERR_NOT_FOUND, "version %s is no longer known", b->version);
    const uint32_t P = e->router.n_partitions, k = b->k;
    vs_route_plan_t plan;
    vs_status st = vs_router_plan_all(&e->router, b->nq, &plan, err);
    float **pd = calloc(P, sizeof *pd);
    int64_t **pi = calloc(P, sizeof *pi);
    int *ok = calloc(P, sizeof *ok);
    float *dist = malloc(b->nq * k * sizeof *dist);
    if (st == VS_OK && (!pd || !pi || !ok || !dist))
        st = vs_errf(err, VS_ERR_NOMEM, "recall: out of memory");
    Vecshard__V1__ShardSearchRequest req = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
    req.dim = b->dim;
    req.queries = b->q;
    req.n_queries = b->nq * b->dim;
    req.k = k;
    req.index_version = (char *)b->version;
    req.exact = 1;
    req.priority = VECSHARD__V1__PRIORITY__PRIORITY_RECALL;
    Vecshard__V1__PartitionRef pref = VECSHARD__V1__PARTITION_REF__INIT;
    req.partition = &pref;
    for (uint32_t p = 0; st == VS_OK && p < P; p++) {
        pthread_mutex_lock(&c->recall_mu);
        int stopping = c->recall_stop;
        pthread_mutex_unlock(&c->recall_mu);
        if (stopping) {
            st = vs_errf(err, VS_ERR_CANCELLED, "recall: the coordinator is stopping");
            break;
        }
        pref.id = p;
        vs_replica_t *r = vs_view_pick(c->view, b->version, p, expect_content(e, p), NULL, 0);
        if (!r) {
            st = vs_errf(err, VS_ERR_UNAVAILABLE, "partition %u of %s has no live replica", p, b->version);
            break;
        }
        size_t len = vecshard__v1__shard_search_request__get_packed_size(&req);
        uint8_t *buf = malloc(len ? len : 1), *body = NULL;
        size_t blen = 0;
        int code = 0;
        char msg[VS_ERR_LEN] = "";
        if (!buf) {
            st = vs_errf(err, VS_ERR_NOMEM, "recall: out of memory");
        } else {
            vecshard__v1__shard_search_request__pack(&req, buf);
            st = vs_rpc_call_unary(vs_replica_channel(r), "/vecshard.v1.Shard/Search", buf, len, 60000, &code,
                                   msg, &body, &blen);
            if (st == VS_OK && code != 0)
                st = vs_errf(err, vs_status_from_grpc(code), "partition %u (%s): %s: %s", p, vs_replica_id(r),
                             vs_grpc_code_label(code), msg);
        }
        vs_replica_done(r, 0, 0); /* no latency sample: exact calls would skew the hedging delay */
        Vecshard__V1__ShardSearchResponse *resp =
            st == VS_OK ? vecshard__v1__shard_search_response__unpack(NULL, blen, body) : NULL;
        if (st == VS_OK && (!resp || !resp->exact || resp->nq != b->nq || resp->k != k ||
                            resp->n_ids != b->nq * k || resp->n_distances != b->nq * k))
            st = vs_errf(err, VS_ERR_UNAVAILABLE,
                         "partition %u: not an exact answer of %zu x %u (a shard of an older release?)", p,
                         b->nq, k);
        if (st == VS_OK) {
            pd[p] = malloc(b->nq * k * sizeof **pd);
            pi[p] = malloc(b->nq * k * sizeof **pi);
            if (!pd[p] || !pi[p])
                st = vs_errf(err, VS_ERR_NOMEM, "recall: out of memory");
            else {
                memcpy(pd[p], resp->distances, b->nq * k * sizeof **pd);
                memcpy(pi[p], resp->ids, b->nq * k * sizeof **pi);
                ok[p] = 1;
            }
        }
        if (resp)
            vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
        free(body);
        free(buf);
    }
    if (st == VS_OK)
        st = vs_route_merge(&plan, k, vs_metric_larger_is_better(e->router.metric), (const float *const *)pd,
                            (const int64_t *const *)pi, ok, dist, exact, err);
    for (uint32_t p = 0; pd && pi && p < P; p++) {
        free(pd[p]);
        free(pi[p]);
    }
    free(pd);
    free(pi);
    free(ok);
    free(dist);
    vs_route_plan_fini(&plan);
    version_unref(e);
    return st;
}

/* Forgets the estimates of versions this coordinator no longer knows, and tells on_recall (queries 0,
 * recall NaN: the gauges stop counting as a full window). */
static void recall_sweep(vs_coord_t *c)
{
    vs_recall_stat_t stats[VS_RECALL_MAX_GROUPS];
    size_t n = vs_recall_snapshot(c->recall, stats, VS_RECALL_MAX_GROUPS, NULL);
    for (size_t i = 0; i < n; i++) {
        int known = 0;
        pthread_mutex_lock(&c->mu);
        for (size_t v = 0; v < c->n_versions && !known; v++)
            known = strcmp(c->versions[v]->name, stats[i].version) == 0;
        pthread_mutex_unlock(&c->mu);
        if (known)
            continue;
        vs_recall_forget(c->recall, stats[i].version);
        stats[i].queries = 0;
        stats[i].recall = NAN;
        if (c->o.on_recall)
            c->o.on_recall(c->o.recall_user, &stats[i]);
    }
}

/* Replays ready batches within the CPU budget: after a replay of t seconds it rests t (1 - budget) /
 * budget, so the shards spend at most `budget` of one core each on exact searches. */
static void *recall_worker(void *arg)
{
    vs_coord_t *c = arg;
    const vs_recall_opts_t *o = vs_recall_options(c->recall);
    double rest_until = 0, next_sweep = 0;
    pthread_mutex_lock(&c->recall_mu);
    while (!c->recall_stop) {
        double now = vs_now_s();
        if (now >= next_sweep) { /* estimates of versions gone (retired, removed): dropped, gauges cleared */
            pthread_mutex_unlock(&c->recall_mu);
            recall_sweep(c);
            pthread_mutex_lock(&c->recall_mu);
            next_sweep = now + 5;
        }
        vs_recall_batch_t *b = now >= rest_until ? vs_recall_next(c->recall, now, 0) : NULL;
        if (!b) {
            double wait_s = rest_until > now ? rest_until - now : 0.1;
            struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, (int64_t)(wait_s * 1e3) + 1);
            pthread_cond_timedwait(&c->recall_cv, &c->recall_mu, &until);
            continue;
        }
        pthread_mutex_unlock(&c->recall_mu);
        int64_t *exact = malloc(b->nq * b->k * sizeof *exact);
        char err[VS_ERR_LEN] = "";
        double t0 = vs_now_s();
        vs_status st =
            exact ? recall_replay(c, b, exact, err) : vs_errf(err, VS_ERR_NOMEM, "recall: out of memory");
        double busy = vs_now_s() - t0;
        vs_recall_add_busy(c->recall, busy);
        if (st == VS_OK) {
            vs_recall_record(c->recall, b, exact);
            if (c->o.on_recall) {
                vs_recall_stat_t stats[VS_RECALL_MAX_GROUPS];
                size_t n = vs_recall_snapshot(c->recall, stats, VS_RECALL_MAX_GROUPS, NULL);
                for (size_t i = 0; i < n; i++) {
                    pthread_mutex_lock(&c->mu); /* the version's recorded target, for the alert */
                    for (size_t v = 0; v < c->n_versions; v++)
                        if (strcmp(c->versions[v]->name, stats[i].version) == 0)
                            stats[i].target = c->versions[v]->target_recall;
                    pthread_mutex_unlock(&c->mu);
                    c->o.on_recall(c->o.recall_user, &stats[i]);
                }
            }
        } else {
            vs_recall_failed(c->recall, b);
            pthread_mutex_lock(&c->log_mu);
            vs_log_limited(&c->partial_log, VS_LOG_WARN, "recall: %zu sampled queries of %s not replayed: %s",
                           b->nq, b->version, err);
            pthread_mutex_unlock(&c->log_mu);
        }
        free(exact);
        vs_recall_batch_free(b);
        rest_until = vs_now_s() + busy * (1.0 - o->budget) / (o->budget > 0 ? o->budget : 1.0);
        pthread_mutex_lock(&c->recall_mu);
    }
    pthread_mutex_unlock(&c->recall_mu);
    return NULL;
}

void vs_coord_stop_recall(vs_coord_t *c)
{
    if (!c || !c->recall_started)
        return;
    pthread_mutex_lock(&c->recall_mu);
    c->recall_stop = 1;
    pthread_cond_broadcast(&c->recall_cv);
    pthread_mutex_unlock(&c->recall_mu);
    pthread_join(c->recall_th, NULL);
    c->recall_started = 0;
}

size_t vs_coord_recall_snapshot(vs_coord_t *c, vs_recall_stat_t *out, size_t cap, vs_recall_totals_t *totals)
{
    if (!c->recall) {
        if (totals)
            memset(totals, 0, sizeof *totals);
        return 0;
    }
    return vs_recall_snapshot(c->recall, out, cap, totals);
}
