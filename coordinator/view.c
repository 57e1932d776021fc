/* view.c: see view.h. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/timing.h"
#include "common/cluster/records.h"
#include "common/log.h"
#include "vecshard/v1/shard.pb-c.h"
#include "coordinator/view.h"

struct vs_replica {
    char key[512];
    char id[128], address[256], state[16];
    char instance[64]; /* the record's instance id ("" from an older shard) */
    uint32_t partition;
    char versions[VS_VIEW_MAX_VERSIONS][128]; /* READY versions */
    char content[VS_VIEW_MAX_VERSIONS][17];   /* their partition files' content ids ("" = not reported) */
    uint32_t fill[VS_VIEW_MAX_VERSIONS];      /* their fresh fill, percent (record's fresh_fill_pct) */
    size_t n_versions;
    int all_versions; /* static membership */
    char zone[VS_ZONE_MAX + 1]; /* the record's failure zone ("" = not given) */
    int seen;         /* in the current snapshot */
    /* static stability: the record is gone (lease expired, etcd restored, resync) but the replica is kept
     * while its own health says SERVING; it leaves after VS_VIEW_ORPHAN_GRACE_S of failed checks */
    double gone_at;   /* monotonic seconds; 0 = the record is present */
    double last_ok_s; /* last time the replica was known SERVING (record or health check) */
    vs_rpc_channel_t *ch;
    atomic_int refs;
    atomic_ulong outstanding;
    pthread_mutex_t mu; /* latency stats */
    double ewma_ms;
    double ring[VS_VIEW_LAT_RING];
    size_t n_ring, ring_pos;
    double p95_ms; /* cached; recomputed every 16 samples */
    size_t p95_at; /* n_samples when p95_ms was computed */
    size_t n_samples;
    void *ext; /* the caller's per-replica state (vs_replica_ext), freed with ext_free */
    void (*ext_free)(void *);
};

struct vs_view {
    const vs_rpc_tls_t *tls; /* channels to shards (vs_view_set_tls); NULL = plain text */
    char zone[VS_ZONE_MAX + 1]; /* this coordinator's zone (vs_view_set_zone); "" = no preference */
    pthread_mutex_t mu;
    vs_replica_t **r;
    size_t n, cap;
    atomic_ulong bad;
};

static void replica_unref(vs_replica_t *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        if (r->ext)
            r->ext_free(r->ext);
        vs_rpc_channel_destroy(r->ch);
        pthread_mutex_destroy(&r->mu);
        free(r);
    }
}

vs_status vs_view_create(vs_view_t **out, char err[VS_ERR_LEN])
{
    vs_view_t *v = calloc(1, sizeof *v);
    if (!v)
        return vs_errf(err, VS_ERR_NOMEM, "view: out of memory");
    pthread_mutex_init(&v->mu, NULL);
    *out = v;
    return VS_OK;
}

void vs_view_set_tls(vs_view_t *v, const vs_rpc_tls_t *tls)
{
    v->tls = tls;
}

void vs_view_set_zone(vs_view_t *v, const char *zone)
{
    snprintf(v->zone, sizeof v->zone, "%s", zone ? zone : "");
}

void vs_view_destroy(vs_view_t *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++)
        replica_unref(v->r[i]);
    free(v->r);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

/* Index of key in v->r or -1 (mu held). */
static long find(const vs_view_t *v, const char *key)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->r[i]->key, key) == 0)
            return (long)i;
    return -1;
}

/* Replaces or adds r (mu held). A replica whose address is unchanged keeps its channel and stats. */
static void install(vs_view_t *v, vs_replica_t *r)
{
    long i = find(v, r->key);
    if (i >= 0) {
        vs_replica_t *old = v->r[i];
        if (strcmp(old->address, r->address) == 0) {
            /* same process: update in place (state, versions), keep channel, stats and references */
            pthread_mutex_lock(&old->mu);
            memcpy(old->state, r->state, sizeof old->state);
            memcpy(old->versions, r->versions, sizeof old->versions);
            memcpy(old->content, r->content, sizeof old->content);
            memcpy(old->fill, r->fill, sizeof old->fill);
            memcpy(old->instance, r->instance, sizeof old->instance);
            memcpy(old->zone, r->zone, sizeof old->zone); /* read by pick under v->mu, held here */
            old->n_versions = r->n_versions;
            old->partition = r->partition;
            old->seen = 1;
            old->gone_at = 0;
            pthread_mutex_unlock(&old->mu);
            replica_unref(r);
            return;
        }
        v->r[i] = r;
        replica_unref(old);
        return;
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        vs_replica_t **n = realloc(v->r, cap * sizeof *n);
        if (!n) {
            replica_unref(r);
            return;
        }
        v->r = n;
        v->cap = cap;
    }
    v->r[v->n++] = r;
}

static vs_replica_t *replica_new(const vs_view_t *v, const char *key, const char *id, const char *address,
                                 uint32_t partition, char err[VS_ERR_LEN])
{
    vs_replica_t *r = calloc(1, sizeof *r);
    if (!r) {
        vs_errf(err, VS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (vs_rpc_channel_create_tls(address, 0, v->tls, &r->ch, err) != VS_OK) {
        free(r);
        return NULL;
    }
    snprintf(r->key, sizeof r->key, "%s", key);
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->address, sizeof r->address, "%s", address);
    r->partition = partition;
    r->seen = 1;
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void vs_view_put(vs_view_t *v, const char *key, size_t klen, const char *json, size_t jlen)
{
    char k[512];
    if (klen >= sizeof k) {
        atomic_fetch_add(&v->bad, 1);
        return;
    }
    memcpy(k, key, klen);
    k[klen] = 0;
    vs_member_rec_t *rec = malloc(sizeof *rec);
    char err[VS_ERR_LEN];
    if (!rec || vs_member_rec_decode(json, jlen, rec, err) != VS_OK) {
        atomic_fetch_add(&v->bad, 1);
        free(rec);
        return;
    }
    vs_replica_t *r = replica_new(v, k, rec->replica_id, rec->address, rec->partition, err);
    if (!r) {
        vs_log(VS_LOG_ERROR, "member %s at %s: %s", k, rec->address, err);
        atomic_fetch_add(&v->bad, 1);
        free(rec);
        return;
    }
    snprintf(r->state, sizeof r->state, "%s", rec->state);
    snprintf(r->instance, sizeof r->instance, "%s", rec->instance_id);
    snprintf(r->zone, sizeof r->zone, "%s", rec->zone);
    for (size_t i = 0; i < rec->n_versions && r->n_versions < VS_VIEW_MAX_VERSIONS; i++)
        if (strcmp(rec->versions[i].state, "READY") == 0) {
            snprintf(r->content[r->n_versions], 17, "%.16s", rec->versions[i].content_id);
            r->fill[r->n_versions] = rec->versions[i].fresh_fill_pct;
            snprintf(r->versions[r->n_versions++], 128, "%s", rec->versions[i].version);
        }
    free(rec);
    pthread_mutex_lock(&v->mu);
    install(v, r);
    pthread_mutex_unlock(&v->mu);
}

/* The record of v->r[i] is gone (mu held): a replica that was SERVING becomes an orphan, kept while its
 * health answers; any other (DRAINING, LOADING) leaves now. Returns 1 if it was removed. */
static int record_gone(vs_view_t *v, size_t i)
{
    vs_replica_t *r = v->r[i];
    pthread_mutex_lock(&r->mu);
    int serving = strcmp(r->state, "SERVING") == 0;
    pthread_mutex_unlock(&r->mu);
    if (serving) {
        if (r->gone_at == 0) {
            r->gone_at = vs_now_s();
            r->last_ok_s = r->gone_at;
        }
        return 0;
    }
    replica_unref(r);
    v->r[i] = v->r[--v->n];
    return 1;
}

void vs_view_delete(vs_view_t *v, const char *key, size_t klen)
{
    char k[512];
    if (klen >= sizeof k)
        return;
    memcpy(k, key, klen);
    k[klen] = 0;
    pthread_mutex_lock(&v->mu);
    long i = find(v, k);
    if (i >= 0)
        record_gone(v, (size_t)i);
    pthread_mutex_unlock(&v->mu);
}

void vs_view_begin_snapshot(vs_view_t *v)
{
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n; i++)
        if (!v->r[i]->all_versions)
            v->r[i]->seen = 0;
    pthread_mutex_unlock(&v->mu);
}

void vs_view_end_snapshot(vs_view_t *v)
{
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n;) {
        if (v->r[i]->seen || !record_gone(v, i))
            i++;
    }
    pthread_mutex_unlock(&v->mu);
}

vs_status vs_view_add_static(vs_view_t *v, const char *spec, char err[VS_ERR_LEN])
{
    char *copy = strdup(spec), *save = NULL;
    if (!copy)
        return vs_errf(err, VS_ERR_NOMEM, "view: out of memory");
    vs_status st = VS_OK;
    int n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && st == VS_OK; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end;
        long p = eq ? strtol(tok, &end, 10) : -1;
        if (!eq || end != eq || p < 0 || p > 65535 || !eq[1]) {
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--shards entry '%s' is not PARTITION=host:port", tok);
            break;
        }
        char key[512], id[128];
        snprintf(key, sizeof key, "static/%ld/%d", p, n);
        snprintf(id, sizeof id, "static-%ld-%d", p, n);
        char cerr[VS_ERR_LEN];
        vs_replica_t *r = replica_new(v, key, id, eq + 1, (uint32_t)p, cerr);
        if (!r) {
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "cannot open a channel to '%s': %s", eq + 1, cerr);
            break;
        }
        r->all_versions = 1;
        snprintf(r->state, sizeof r->state, "SERVING");
        pthread_mutex_lock(&v->mu);
        install(v, r);
        pthread_mutex_unlock(&v->mu);
        n++;
    }
    free(copy);
    if (st == VS_OK && n == 0)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--shards lists no shard");
    return st;
}

/* Usable for (version, partition)? (v->mu held; r->mu taken for state and versions.) A replica that
 * reports another content id for the version than expected holds other data under the version's name
 * and is never used; one that reports none (a shard of the previous release) is. */
static int usable(vs_replica_t *r, const char *version, uint32_t partition, const char *content)
{
    if (r->partition != partition)
        return 0;
    if (r->gone_at != 0 && vs_now_s() - r->last_ok_s > VS_VIEW_ORPHAN_GRACE_S)
        return 0;
    pthread_mutex_lock(&r->mu);
    int ok = strcmp(r->state, "SERVING") == 0;
    if (ok && !r->all_versions) {
        ok = 0;
        for (size_t i = 0; i < r->n_versions && !ok; i++)
            ok = strcmp(r->versions[i], version) == 0 &&
                 (!content || !content[0] || !r->content[i][0] || strcmp(r->content[i], content) == 0);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static double ewma(vs_replica_t *r)
{
    pthread_mutex_lock(&r->mu);
    double e = r->ewma_ms;
    pthread_mutex_unlock(&r->mu);
    return e;
}

vs_replica_t *vs_view_pick(vs_view_t *v, const char *version, uint32_t partition, const char *content_id,
                           vs_replica_t *const *skip, size_t n_skip)
{
    /* the best replica of this coordinator's zone and the best of the others: fewest calls outstanding,
     * then the lowest latency */
    vs_replica_t *best[2] = {NULL, NULL};
    unsigned long best_out[2] = {0, 0};
    double best_lat[2] = {0, 0};
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n; i++) {
        vs_replica_t *r = v->r[i];
        int skipped = 0;
        for (size_t j = 0; j < n_skip && !skipped; j++)
            skipped = skip[j] == r || strcmp(skip[j]->key, r->key) == 0;
        if (skipped || !usable(r, version, partition, content_id))
            continue;
        int local = v->zone[0] && strcmp(r->zone, v->zone) == 0;
        unsigned long out = atomic_load(&r->outstanding);
        double lat = ewma(r);
        if (!best[local] || out < best_out[local] || (out == best_out[local] && lat < best_lat[local])) {
            best[local] = r;
            best_out[local] = out;
            best_lat[local] = lat;
        }
    }
    /* own zone first (cross-zone traffic is slower and billed), unless its best replica has calls piling
     * up (stalled: hung, blackholed) while another zone's has VS_VIEW_ZONE_SLACK fewer */
    vs_replica_t *pick = best[1];
    if (!pick || (best[0] && best_out[1] > best_out[0] + VS_VIEW_ZONE_SLACK))
        pick = best[0];
    if (pick) {
        atomic_fetch_add(&pick->refs, 1);
        atomic_fetch_add(&pick->outstanding, 1);
    }
    pthread_mutex_unlock(&v->mu);
    return pick;
}

size_t vs_view_live(vs_view_t *v, const char *version, uint32_t partition, const char *content_id)
{
    size_t n = 0;
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n; i++)
        n += usable(v->r[i], version, partition, content_id);
    pthread_mutex_unlock(&v->mu);
    return n;
}

void vs_replica_done(vs_replica_t *r, double seconds, int ok)
{
    atomic_fetch_sub(&r->outstanding, 1);
    if (ok) {
        double ms = seconds * 1e3;
        pthread_mutex_lock(&r->mu);
        r->ewma_ms = r->n_ring ? 0.9 * r->ewma_ms + 0.1 * ms : ms;
        r->ring[r->ring_pos] = ms;
        r->n_samples++;
        r->ring_pos = (r->ring_pos + 1) % VS_VIEW_LAT_RING;
        if (r->n_ring < VS_VIEW_LAT_RING)
            r->n_ring++;
        pthread_mutex_unlock(&r->mu);
    }
    replica_unref(r);
}

void vs_replica_hold(vs_replica_t *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void vs_replica_release(vs_replica_t *r)
{
    replica_unref(r);
}

void *vs_replica_ext(vs_replica_t *r, void *(*create)(void), void (*destroy)(void *))
{
    pthread_mutex_lock(&r->mu);
    if (!r->ext && (r->ext = create()) != NULL)
        r->ext_free = destroy;
    void *e = r->ext;
    pthread_mutex_unlock(&r->mu);
    return e;
}

vs_rpc_channel_t *vs_replica_channel(vs_replica_t *r)
{
    return r->ch;
}

const char *vs_replica_id(const vs_replica_t *r)
{
    return r->id;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double vs_replica_p95_ms(vs_replica_t *r, double default_ms)
{
    double tmp[VS_VIEW_LAT_RING];
    pthread_mutex_lock(&r->mu);
    size_t n = r->n_ring;
    if (n < 16 || r->n_samples - r->p95_at < 16) {
        double v = n < 16 ? default_ms : r->p95_ms;
        pthread_mutex_unlock(&r->mu);
        return v;
    }
    memcpy(tmp, r->ring, n * sizeof(double));
    size_t at = r->n_samples;
    pthread_mutex_unlock(&r->mu);
    qsort(tmp, n, sizeof(double), cmp_double);
    double p95 = tmp[(size_t)(0.95 * (double)(n - 1))];
    pthread_mutex_lock(&r->mu);
    r->p95_ms = p95;
    r->p95_at = at;
    pthread_mutex_unlock(&r->mu);
    return p95;
}

size_t vs_view_members(vs_view_t *v, vs_view_member_t *out, size_t cap)
{
    pthread_mutex_lock(&v->mu);
    size_t n = v->n;
    for (size_t i = 0; i < n && i < cap; i++) {
        vs_replica_t *r = v->r[i];
        vs_view_member_t *m = &out[i];
        memset(m, 0, sizeof *m);
        snprintf(m->replica_id, sizeof m->replica_id, "%s", r->id);
        snprintf(m->address, sizeof m->address, "%s", r->address);
        m->partition = r->partition;
        pthread_mutex_lock(&r->mu);
        snprintf(m->state, sizeof m->state, "%s", r->state);
        m->n_versions = r->all_versions ? 1 : r->n_versions;
        if (r->all_versions)
            snprintf(m->versions[0], 128, "*");
        else
            memcpy(m->versions, r->versions, sizeof m->versions);
        memcpy(m->fresh_fill_pct, r->fill, sizeof m->fresh_fill_pct);
        m->latency_ewma_ms = r->ewma_ms;
        pthread_mutex_unlock(&r->mu);
        snprintf(m->zone, sizeof m->zone, "%s", r->zone);
        m->outstanding = atomic_load(&r->outstanding);
    }
    pthread_mutex_unlock(&v->mu);
    return out && n > cap ? cap : n;
}

/* 1 when the process at r's address is r itself and SERVING: Info answers with r's replica id, the
 * instance id r's record had (when it had one) and state SERVING. Another process now at that address (a
 * reused pod IP) does not keep r alive. */
static int still_serving(vs_replica_t *r, int64_t timeout_ms)
{
    Vecshard__V1__ShardInfoRequest req = VECSHARD__V1__SHARD_INFO_REQUEST__INIT;
    uint8_t buf[16], *body = NULL;
    size_t len = vecshard__v1__shard_info_request__pack(&req, buf), blen = 0;
    int code = -1, ok = 0;
    char msg[VS_ERR_LEN];
    if (vs_rpc_call_unary(r->ch, "/vecshard.v1.Shard/Info", buf, len, timeout_ms, &code, msg, &body, &blen) ==
            VS_OK &&
        code == VS_GRPC_OK) {
        Vecshard__V1__ShardInfoResponse *resp = vecshard__v1__shard_info_response__unpack(NULL, blen, body);
        ok = resp && resp->state == VECSHARD__V1__SHARD_STATE__SHARD_STATE_SERVING && resp->replica_id &&
             strcmp(resp->replica_id, r->id) == 0 &&
             (!r->instance[0] || (resp->instance_id && strcmp(resp->instance_id, r->instance) == 0));
        if (resp)
            vecshard__v1__shard_info_response__free_unpacked(resp, NULL);
    }
    free(body);
    return ok;
}

size_t vs_view_sweep(vs_view_t *v, size_t *out_orphans)
{
    size_t n = 0, removed = 0;
    pthread_mutex_lock(&v->mu);
    vs_replica_t **probe = malloc((v->n ? v->n : 1) * sizeof *probe);
    for (size_t i = 0; probe && i < v->n; i++)
        if (v->r[i]->gone_at != 0) {
            probe[n++] = v->r[i];
            atomic_fetch_add(&v->r[i]->refs, 1);
        }
    pthread_mutex_unlock(&v->mu);
    int *ok = calloc(n ? n : 1, sizeof *ok);
    double *when = calloc(n ? n : 1, sizeof *when);
    for (size_t j = 0; ok && when && j < n; j++) { /* outside the lock: requests keep picking meanwhile */
        ok[j] = still_serving(probe[j], 200);
        when[j] =
            vs_now_s(); /* each answer counts from when it came (a sweep over many hung replicas is slow) */
    }
    double now = vs_now_s();
    pthread_mutex_lock(&v->mu);
    size_t orphans = 0;
    for (size_t j = 0; j < n; j++) {
        vs_replica_t *r = probe[j];
        long i = find(v, r->key);
        if (i < 0 || v->r[i] != r || r->gone_at == 0)
            continue; /* replaced or its record came back meanwhile */
        if (ok && when && ok[j]) {
            r->last_ok_s = when[j];
            orphans++;
        } else if (now - r->last_ok_s > VS_VIEW_ORPHAN_GRACE_S) {
            replica_unref(r);
            v->r[i] = v->r[--v->n];
            removed++;
        } else {
            orphans++;
        }
    }
    pthread_mutex_unlock(&v->mu);
    for (size_t j = 0; j < n; j++)
        replica_unref(probe[j]);
    free(probe);
    free(ok);
    free(when);
    if (out_orphans)
        *out_orphans = orphans;
    return removed;
}

uint64_t vs_view_bad_records(const vs_view_t *v)
{
    return atomic_load(&((vs_view_t *)v)->bad);
}
