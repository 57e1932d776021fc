/* membership.c: the shard's record in etcd (membership.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/cluster/keys.h"
#include "common/cluster/records.h"
#include "common/log.h"
#include "common/net/etcd.h"
#include "common/net/rpc.h"
#include "shard/server/membership.h"
#include "vecshard/v1/shard.pb-c.h"

struct vs_membership {
    vs_etcd_t *etcd;
    vs_etcd_session_t *session;
    vs_shard_t *shard;
    char key[VS_KEY_LEN];
    char address[256], replica_id[128], instance_id[64], zone[VS_ZONE_MAX + 1];
    uint64_t memory_limit_bytes;
    const vs_rpc_tls_t *tls;
    int64_t ttl_s;
    uint32_t partition;
    char started_at[32];
    pthread_mutex_t mu; /* one publish at a time */
    atomic_uint_fast64_t put_errors;
    atomic_uint_fast64_t writes; /* record writes (publish), for vecshard_etcd_record_writes_total */
};

/* What this process may use: the cgroup v2 limit (Kubernetes), else the machine's RAM. */
static uint64_t detect_memory_limit(void)
{
    unsigned long long v = 0;
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0; /* "max": no limit */
        fclose(f);
    }
    if (v)
        return v;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

/* Resident bytes of this process (mapped index pages it touched included). */
static uint64_t rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096);
}

/* The record (common/cluster/records.h) for the shard's current state. */
static vs_status record_json(vs_membership_t *m, char **out, char err[VS_ERR_LEN])
{
    vs_shard_version_info_t vi[VS_SHARD_MAX_VERSIONS];
    vs_member_rec_t *r = calloc(1, sizeof *r);
    if (!r)
        return vs_errf(err, VS_ERR_NOMEM, "membership: out of memory");
    size_t n = vs_shard_versions(m->shard, vi, VS_SHARD_MAX_VERSIONS, r->active_version);
    if (n > VS_SHARD_MAX_VERSIONS)
        n = VS_SHARD_MAX_VERSIONS;
    snprintf(r->address, sizeof r->address, "%s", m->address);
    r->partition = m->partition;
    snprintf(r->replica_id, sizeof r->replica_id, "%s", m->replica_id);
    snprintf(r->instance_id, sizeof r->instance_id, "%s", m->instance_id);
    snprintf(r->zone, sizeof r->zone, "%s", m->zone);
    snprintf(r->state, sizeof r->state, "%s", vs_shard_state_name(vs_shard_get_state(m->shard)));
    for (size_t i = 0; i < n && r->n_versions < VS_MEMBER_MAX_VERSIONS; i++) {
        vs_member_version_t *v = &r->versions[r->n_versions++];
        snprintf(v->version, sizeof v->version, "%.127s", vi[i].version);
        snprintf(v->state, sizeof v->state, "%.15s", vs_version_state_name(vi[i].state));
        snprintf(v->error, sizeof v->error, "%.255s", vi[i].error);
        v->n_vectors = vi[i].n_vectors;
        v->dim = vi[i].dim;
        snprintf(v->metric, sizeof v->metric, "%.15s", vi[i].metric);
        snprintf(v->model_version, sizeof v->model_version, "%.127s", vi[i].model_version);
        snprintf(v->partitioning, sizeof v->partitioning, "%.15s", vi[i].partitioning);
        v->partitions = vi[i].partitions_total;
        snprintf(v->content_id, sizeof v->content_id, "%.16s", vi[i].content_id);
        v->fresh_fill_pct = vi[i].fresh_fill_pct;
    }
    snprintf(r->started_at, sizeof r->started_at, "%s", m->started_at);
    r->memory_limit_bytes = m->memory_limit_bytes;
    r->rss_bytes = rss_bytes();
    r->free_slots = n < VS_SHARD_MAX_VERSIONS ? (uint32_t)(VS_SHARD_MAX_VERSIONS - n) : 0;
    r->has_free_slots = 1;
    vs_status st = vs_member_rec_encode(r, out, err);
    free(r);
    return st;
}

static vs_status publish(vs_membership_t *m, char err[VS_ERR_LEN])
{
    pthread_mutex_lock(&m->mu);
    char *json = NULL;
    vs_status st = record_json(m, &json, err);
    if (st == VS_OK) {
        atomic_fetch_add(&m->writes, 1);
        st = vs_etcd_session_put(m->session, m->key, strlen(m->key), json, strlen(json), err);
    }
    free(json);
    pthread_mutex_unlock(&m->mu);
    if (st != VS_OK)
        atomic_fetch_add(&m->put_errors, 1);
    return st;
}

/* Asks the holder at address for Info: 1 when it answered (*out_instance: its instance id). */
static int holder_answers(const vs_rpc_tls_t *tls, const char *address, char out_instance[64])
{
    vs_rpc_channel_t *ch = NULL;
    char msg[VS_ERR_LEN];
    if (vs_rpc_channel_create_tls(address, 0, tls, &ch, msg) != VS_OK)
        return 0;
    Vecshard__V1__ShardInfoRequest req = VECSHARD__V1__SHARD_INFO_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = vecshard__v1__shard_info_request__pack(&req, buf);
    int code = -1;
    uint8_t *body = NULL;
    size_t blen = 0;
    int ok =
        vs_rpc_call_unary(ch, "/vecshard.v1.Shard/Info", buf, len, 1000, &code, msg, &body, &blen) == VS_OK &&
        code == VS_GRPC_OK;
    vs_rpc_channel_destroy(ch);
    Vecshard__V1__ShardInfoResponse *resp =
        ok ? vecshard__v1__shard_info_response__unpack(NULL, blen, body) : NULL;
    snprintf(out_instance, 64, "%s", resp && resp->instance_id ? resp->instance_id : "");
    if (resp)
        vecshard__v1__shard_info_response__free_unpacked(resp, NULL);
    free(body);
    return resp != NULL;
}

/* Create-if-absent registration (vs_membership_start's contract). */
static vs_status claim(vs_membership_t *m, char err[VS_ERR_LEN])
{
    uint64_t deadline = vs_now_ns() + (uint64_t)(m->ttl_s + 2) * 1000000000ull;
    int waited = 0;
    for (;;) {
        vs_etcd_session_stats_t ss;
        vs_etcd_session_stats(m->session, &ss);
        char *json = NULL;
        vs_status st = record_json(m, &json, err);
        if (st != VS_OK)
            return st;
        vs_etcd_cmp_t cmp = {
            .key = m->key, .key_len = strlen(m->key), .target = VS_ETCD_CMP_CREATE, .result = VS_ETCD_EQUAL};
        vs_etcd_op_t put = {.kind = VS_ETCD_OP_PUT,
                            .key = m->key,
                            .key_len = strlen(m->key),
                            .value = json,
                            .value_len = strlen(json),
                            .lease = ss.lease};
        vs_etcd_op_t get = {.kind = VS_ETCD_OP_RANGE, .key = m->key, .key_len = strlen(m->key)};
        vs_etcd_txn_result_t res = {0};
        st = vs_etcd_txn(m->etcd, &cmp, 1, &put, 1, &get, 1, &res, err);
        free(json);
        if (st != VS_OK)
            return st;
        if (res.succeeded) {
            vs_etcd_txn_result_fini(&res);
            if (waited)
                vs_log(VS_LOG_INFO, "etcd: %s claimed after the previous holder's lease expired", m->key);
            return VS_OK;
        }
        vs_member_rec_t *h = malloc(sizeof *h);
        char derr[VS_ERR_LEN], inst[64] = "";
        int decoded = h && res.kvs.n == 1 &&
                      vs_member_rec_decode(res.kvs.kvs[0].value, res.kvs.kvs[0].value_len, h, derr) == VS_OK;
        vs_etcd_txn_result_fini(&res);
        /* live = the process the record names answers at its address: its instance id when the record has
         * one (another process may have that address now), else any other instance than ours */
        int live = decoded && holder_answers(m->tls, h->address, inst) && strcmp(inst, m->instance_id) != 0 &&
                   (!h->instance_id[0] || strcmp(inst, h->instance_id) == 0);
        if (live) {
            st = vs_errf(
                err, VS_ERR_ALREADY_EXISTS,
                "replica id %s of partition %u is held by a live shard at %s (instance %s, started %s): "
                "two replicas must not share an id; start this one with another --replica-id",
                m->replica_id, m->partition, h->address, inst[0] ? inst : "of an older release",
                h->started_at);
            free(h);
            return st;
        }
        if (!waited)
            vs_log(VS_LOG_WARN,
                   "etcd: %s is held by %s, which does not answer (a previous incarnation?); waiting up to "
                   "%lld s "
                   "for its lease to expire",
                   m->key, decoded ? h->address : "an unreadable record", (long long)m->ttl_s + 2);
        free(h);
        waited = 1;
        if (vs_now_ns() > deadline)
            return vs_errf(err, VS_ERR_ALREADY_EXISTS,
                           "%s is still held %lld s later by a holder that does not answer Info: refusing to "
                           "take it over",
                           m->key, (long long)m->ttl_s + 2);
        usleep(250 * 1000);
    }
}

vs_status vs_membership_start(const vs_membership_opts_t *o, vs_shard_t *sh, vs_membership_t **out,
                              char err[VS_ERR_LEN])
{
    vs_membership_t *m = calloc(1, sizeof *m);
    if (!m)
        return vs_errf(err, VS_ERR_NOMEM, "membership: out of memory");
    m->shard = sh;
    m->partition = o->partition;
    snprintf(m->address, sizeof m->address, "%s", o->address);
    snprintf(m->replica_id, sizeof m->replica_id, "%s", o->replica_id);
    snprintf(m->instance_id, sizeof m->instance_id, "%s", o->instance_id ? o->instance_id : "");
    m->tls = o->tls;
    snprintf(m->zone, sizeof m->zone, "%s", o->zone ? o->zone : "");
    m->ttl_s = o->ttl_s ? o->ttl_s : 10;
    m->memory_limit_bytes = o->memory_limit_bytes ? o->memory_limit_bytes : detect_memory_limit();
    if (vs_key_member(m->key, o->cluster, o->partition, o->replica_id) == 0) {
        free(m);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "membership: cluster '%s' or replica id '%s' is not a valid name ([A-Za-z0-9._-])",
                       o->cluster, o->replica_id);
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m->started_at, sizeof m->started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_init(&m->mu, NULL);
    vs_etcd_opts_t eo = {.endpoints = o->endpoints, .timeout_ms = o->timeout_ms ? o->timeout_ms : 2000};
    vs_status st = vs_etcd_create(&eo, &m->etcd, err);
    if (st == VS_OK)
        st = vs_etcd_session_create(m->etcd, o->ttl_s ? o->ttl_s : 10, &m->session, err);
    if (st == VS_OK)
        st = claim(m, err);
    if (st == VS_OK)
        st = publish(m, err);
    if (st != VS_OK) {
        vs_membership_stop(m);
        return st;
    }
    *out = m;
    return VS_OK;
}

void vs_membership_update(vs_membership_t *m)
{
    if (!m)
        return;
    char err[VS_ERR_LEN];
    if (publish(m, err) != VS_OK)
        vs_log(VS_LOG_WARN, "etcd: publishing %s: %s (the session retries)", m->key, err);
}

const char *vs_membership_key(const vs_membership_t *m)
{
    return m->key;
}

uint64_t vs_membership_etcd_authentications(const vs_membership_t *m)
{
    return vs_etcd_authentications(m->etcd);
}

uint64_t vs_membership_writes(const vs_membership_t *m)
{
    return atomic_load(&((vs_membership_t *)m)->writes);
}

void vs_membership_counters(const vs_membership_t *m, uint64_t *out_etcd_errors,
                            uint64_t *out_reregistrations)
{
    vs_etcd_session_stats_t s = {0};
    if (m->session)
        vs_etcd_session_stats(m->session, &s);
    *out_etcd_errors = s.keepalive_failures + atomic_load(&((vs_membership_t *)m)->put_errors);
    *out_reregistrations = s.reregistrations;
}

void vs_membership_stop(vs_membership_t *m)
{
    if (!m)
        return;
    vs_etcd_session_close(m->session); /* revokes the lease: the record disappears now */
    vs_etcd_destroy(m->etcd);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
