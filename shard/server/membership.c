/* membership.c: the shard's record in etcd (membership.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cluster/keys.h"
#include "common/cluster/records.h"
#include "common/log.h"
#include "common/net/etcd.h"
#include "shard/server/membership.h"

struct vs_membership {
    vs_etcd_t *etcd;
    vs_etcd_session_t *session;
    vs_shard_t *shard;
    char key[VS_KEY_LEN];
    char address[256], replica_id[128];
    uint32_t partition;
    char started_at[32];
    pthread_mutex_t mu; /* one publish at a time */
    atomic_uint_fast64_t put_errors;
};

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
    }
    snprintf(r->started_at, sizeof r->started_at, "%s", m->started_at);
    vs_status st = vs_member_rec_encode(r, out, err);
    free(r);
    return st;
}

static vs_status publish(vs_membership_t *m, char err[VS_ERR_LEN])
{
    pthread_mutex_lock(&m->mu);
    char *json = NULL;
    vs_status st = record_json(m, &json, err);
    if (st == VS_OK)
        st = vs_etcd_session_put(m->session, m->key, strlen(m->key), json, strlen(json), err);
    free(json);
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
