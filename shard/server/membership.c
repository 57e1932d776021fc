/* membership.c: the shard's record in etcd (membership.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/net/etcd.h"
#include "shard/server/membership.h"

struct vs_membership {
    vs_etcd_t *etcd;
    vs_etcd_session_t *session;
    vs_shard_t *shard;
    char key[512];
    char address[256], replica_id[128];
    uint32_t partition;
    char started_at[32];
    pthread_mutex_t mu; /* one publish at a time */
    atomic_uint_fast64_t put_errors;
};

/* The record: {"address","partition","replica_id","state","active_version","versions":[{version,state,
 * error?,n_vectors}],"started_at"}. */
static char *record_json(vs_membership_t *m)
{
    vs_shard_version_info_t vi[VS_SHARD_MAX_VERSIONS];
    char active[128];
    size_t n = vs_shard_versions(m->shard, vi, VS_SHARD_MAX_VERSIONS, active);
    if (n > VS_SHARD_MAX_VERSIONS)
        n = VS_SHARD_MAX_VERSIONS;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "address", m->address);
    cJSON_AddNumberToObject(o, "partition", m->partition);
    cJSON_AddStringToObject(o, "replica_id", m->replica_id);
    cJSON_AddStringToObject(o, "state", vs_shard_state_name(vs_shard_get_state(m->shard)));
    cJSON_AddStringToObject(o, "active_version", active);
    cJSON *arr = cJSON_AddArrayToObject(o, "versions");
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *v = cJSON_CreateObject();
        if (!v)
            break;
        cJSON_AddStringToObject(v, "version", vi[i].version);
        cJSON_AddStringToObject(v, "state", vs_version_state_name(vi[i].state));
        if (vi[i].error[0])
            cJSON_AddStringToObject(v, "error", vi[i].error);
        cJSON_AddNumberToObject(v, "n_vectors", (double)vi[i].n_vectors);
        cJSON_AddItemToArray(arr, v);
    }
    cJSON_AddStringToObject(o, "started_at", m->started_at);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static vs_status publish(vs_membership_t *m, char err[VS_ERR_LEN])
{
    pthread_mutex_lock(&m->mu);
    char *json = record_json(m);
    vs_status st = json ? vs_etcd_session_put(m->session, m->key, strlen(m->key), json, strlen(json), err)
                        : vs_errf(err, VS_ERR_NOMEM, "membership: out of memory");
    cJSON_free(json);
    pthread_mutex_unlock(&m->mu);
    if (st != VS_OK)
        atomic_fetch_add(&m->put_errors, 1);
    return st;
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
    snprintf(m->key, sizeof m->key, "/vecshard/%.128s/members/%u/%.128s", o->cluster, o->partition,
             o->replica_id);
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
