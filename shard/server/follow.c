/* follow.c: see follow.h. The watch callbacks only record etcd's state and wake the reconcile thread,
 * which does the slow work (loading an index) outside the watch. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/timing.h"
#include "common/cluster/keys.h"
#include "common/cluster/lifecycle.h"
#include "common/cluster/records.h"
#include "common/log.h"
#include "common/net/etcd.h"
#include "shard/server/follow.h"
#include "common/cluster/manifest.h"

#define MAX_WANTED 64

/* Retry of a failed load: 1 s, 2 s, 4 s ... capped at 60 s (lifecycle.h), reset when the record changes. */
#define RETRY_BASE_MS 1000
#define RETRY_CAP_MS 60000

typedef struct wanted {
    char version[VS_NAME_LEN];
    char manifest[PATH_MAX];
    vs_cver_state state;
    int64_t mod_revision;
    uint32_t failures;    /* loads that failed since the record last changed */
    uint64_t next_try_ns; /* monotonic; 0 = now */
} wanted_t;

struct vs_follow {
    vs_etcd_t *etcd;
    vs_etcd_watch_t *w_versions, *w_active;
    vs_shard_t *sh;
    uint32_t partition;
    vs_follow_change_fn on_change;
    void *user;
    char cluster[VS_NAME_LEN];
    vs_log_limit_t bad_record_log;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int dirty, stop;
    wanted_t wanted[MAX_WANTED];
    size_t n_wanted;
    /* versions this follower loaded: the only ones it unloads (--manifest versions are the operator's) */
    char owned[MAX_WANTED][VS_NAME_LEN];
    size_t n_owned;
    char active[VS_NAME_LEN];
    uint64_t loads_failed;
};

/* Records one version record (mu held). */
static void put_version(vs_follow_t *f, const vs_etcd_kv_t *kv)
{
    vs_version_rec_t *r = malloc(sizeof *r);
    char err[VS_ERR_LEN];
    vs_cver_state state;
    if (!r || vs_version_rec_decode(kv->value, kv->value_len, r, err) != VS_OK ||
        vs_cver_state_parse(r->state, &state) != VS_OK) {
        vs_log_limited(&f->bad_record_log, VS_LOG_WARN, "rollout: ignoring a malformed version record %.*s",
                       (int)kv->key_len, kv->key);
        free(r);
        return;
    }
    wanted_t *w = NULL;
    size_t at = 0;
    for (size_t i = 0; i < f->n_wanted && !w; i++)
        if (strcmp(f->wanted[i].version, r->version) == 0) {
            w = &f->wanted[i];
            at = i;
        }
    if (!vs_cver_shards_hold(state)) { /* retired, failed: not held; forget it (it is unloaded) */
        if (w)
            f->wanted[at] = f->wanted[--f->n_wanted];
        free(r);
        return;
    }
    if (!w && f->n_wanted < MAX_WANTED) {
        w = &f->wanted[f->n_wanted++];
        memset(w, 0, sizeof *w);
    }
    if (!w)
        vs_log_limited(&f->bad_record_log, VS_LOG_ERROR, "rollout: more than %d versions to hold; %s ignored",
                       MAX_WANTED, r->version);
    if (w) {
        if (w->mod_revision != kv->mod_revision) { /* a changed record: try again at once */
            w->failures = 0;
            w->next_try_ns = 0;
        }
        snprintf(w->version, sizeof w->version, "%s", r->version);
        snprintf(w->manifest, sizeof w->manifest, "%s", r->manifest);
        w->state = state;
        w->mod_revision = kv->mod_revision;
    }
    free(r);
}

static void delete_version(vs_follow_t *f, const vs_etcd_kv_t *kv)
{
    char name[VS_REPLICA_ID_MAX + 1];
    if (vs_key_parse(f->cluster, kv->key, kv->key_len, NULL, name) != VS_KEY_VERSION)
        return;
    for (size_t i = 0; i < f->n_wanted; i++)
        if (strcmp(f->wanted[i].version, name) == 0) {
            f->wanted[i] = f->wanted[--f->n_wanted];
            return;
        }
}

static void on_versions(const vs_etcd_watch_event_t *ev, void *user)
{
    vs_follow_t *f = user;
    pthread_mutex_lock(&f->mu);
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT) {
        f->n_wanted = 0;
        for (size_t i = 0; i < ev->snapshot->n; i++)
            put_version(f, &ev->snapshot->kvs[i]);
    } else if (ev->kind == VS_ETCD_WATCH_PUT) {
        put_version(f, ev->kv);
    } else if (ev->kind == VS_ETCD_WATCH_DELETE) {
        delete_version(f, ev->kv);
    }
    f->dirty = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void set_active(vs_follow_t *f, const vs_etcd_kv_t *kv)
{
    vs_active_rec_t a;
    char err[VS_ERR_LEN];
    if (kv && vs_active_rec_decode(kv->value, kv->value_len, &a, err) != VS_OK) {
        vs_log_limited(&f->bad_record_log, VS_LOG_WARN, "rollout: ignoring a malformed active record: %s",
                       err);
        return;
    }
    snprintf(f->active, sizeof f->active, "%s", kv ? a.version : "");
}

static void on_active(const vs_etcd_watch_event_t *ev, void *user)
{
    vs_follow_t *f = user;
    pthread_mutex_lock(&f->mu);
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT) {
        const vs_etcd_kv_t *kv = NULL;
        for (size_t i = 0; i < ev->snapshot->n; i++)
            if (vs_key_parse(f->cluster, ev->snapshot->kvs[i].key, ev->snapshot->kvs[i].key_len, NULL,
                             NULL) == VS_KEY_ACTIVE)
                kv = &ev->snapshot->kvs[i];
        set_active(f, kv);
    } else if ((ev->kind == VS_ETCD_WATCH_PUT || ev->kind == VS_ETCD_WATCH_DELETE) &&
               vs_key_parse(f->cluster, ev->kv->key, ev->kv->key_len, NULL, NULL) == VS_KEY_ACTIVE) {
        set_active(f, ev->kind == VS_ETCD_WATCH_PUT ? ev->kv : NULL);
    }
    f->dirty = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int held_state(const vs_shard_version_info_t *vi, size_t n, const char *version)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(vi[i].version, version) == 0)
            return (int)vi[i].state;
    return 0;
}

/* One pass: load what is wanted and missing (one at a time, so the rest of the pass is re-evaluated
 * after a long load), switch the active version, unload what is retired. Returns 1 if it changed
 * something. */
static int reconcile(vs_follow_t *f)
{
    wanted_t want[MAX_WANTED];
    char active[VS_NAME_LEN];
    pthread_mutex_lock(&f->mu);
    size_t nw = f->n_wanted;
    memcpy(want, f->wanted, nw * sizeof *want);
    snprintf(active, sizeof active, "%s", f->active);
    pthread_mutex_unlock(&f->mu);
    vs_shard_version_info_t vi[VS_SHARD_MAX_VERSIONS];
    char shard_active[128];
    size_t nh = vs_shard_versions(f->sh, vi, VS_SHARD_MAX_VERSIONS, shard_active);
    if (nh > VS_SHARD_MAX_VERSIONS)
        nh = VS_SHARD_MAX_VERSIONS;
    char err[VS_ERR_LEN];
    /* 1. load (a failed load is retried after a capped exponential backoff, so a version that cannot
     * load costs one attempt, one log line and one record write per backoff step, not a storm) */
    uint64_t now = vs_now_ns();
    for (size_t i = 0; i < nw; i++) {
        wanted_t *w = &want[i];
        if (!vs_cver_shards_hold(w->state))
            continue;
        int st = held_state(vi, nh, w->version);
        if ((st && st != VS_VERSION_FAILED) || now < w->next_try_ns)
            continue;
        int known = 0;
        for (size_t j = 0; j < f->n_owned && !known; j++)
            known = strcmp(f->owned[j], w->version) == 0;
        if (st == VS_VERSION_FAILED && !known)
            continue; /* an operator's --manifest version that failed: not this follower's to retry */
        if (st == VS_VERSION_FAILED)
            vs_shard_unload(f->sh, w->version, err);
        vs_log(VS_LOG_INFO, "rollout: loading %s partition %u (%s%s) from %s", w->version, f->partition,
               vs_cver_state_name(w->state), st ? ", retry" : "", w->manifest);
        if (!known && f->n_owned < MAX_WANTED)
            snprintf(f->owned[f->n_owned++], VS_NAME_LEN, "%.127s", w->version);
        int ok = vs_shard_load(f->sh, w->manifest, f->partition, NULL, err) == VS_OK;
        uint32_t failures = ok ? 0 : w->failures + 1;
        uint64_t delay_ms = ok ? 0 : vs_lifecycle_backoff_ms(failures, RETRY_BASE_MS, RETRY_CAP_MS);
        if (ok)
            vs_log(VS_LOG_INFO, "rollout: %s partition %u READY", w->version, f->partition);
        else
            vs_log(VS_LOG_ERROR, "rollout: %s failed (attempt %u, next in %llu ms): %s", w->version, failures,
                   (unsigned long long)delay_ms, err);
        pthread_mutex_lock(&f->mu);
        for (size_t j = 0; j < f->n_wanted; j++)
            if (strcmp(f->wanted[j].version, w->version) == 0 &&
                f->wanted[j].mod_revision == w->mod_revision) {
                f->wanted[j].failures = failures;
                f->wanted[j].next_try_ns = ok ? 0 : vs_now_ns() + delay_ms * 1000000ull;
            }
        f->loads_failed += !ok;
        pthread_mutex_unlock(&f->mu);
        return 1;
    }
    /* 2. activate */
    int changed = 0;
    if (active[0] && strcmp(active, shard_active) != 0 && held_state(vi, nh, active) == VS_VERSION_READY) {
        if (vs_shard_activate(f->sh, active, err) == VS_OK) {
            vs_log(VS_LOG_INFO, "rollout: active version is now %s", active);
            snprintf(shard_active, sizeof shard_active, "%s", active);
            changed = 1;
        }
    }
    /* 3. unload what etcd no longer lists or has retired (not the active one) */
    for (size_t i = 0; i < nh; i++) {
        int keep = 0;
        for (size_t j = 0; j < nw && !keep; j++)
            keep = strcmp(want[j].version, vi[i].version) == 0 && vs_cver_shards_hold(want[j].state);
        int owned = 0;
        for (size_t j = 0; j < f->n_owned && !owned; j++)
            owned = strcmp(f->owned[j], vi[i].version) == 0;
        if (keep || !owned || strcmp(vi[i].version, shard_active) == 0 || vi[i].state == VS_VERSION_LOADING)
            continue;
        if (vs_shard_unload(f->sh, vi[i].version, err) == VS_OK) {
            vs_log(VS_LOG_INFO, "rollout: unloaded %s", vi[i].version);
            for (size_t j = 0; j < f->n_owned; j++)
                if (strcmp(f->owned[j], vi[i].version) == 0) {
                    memmove(f->owned[j], f->owned[--f->n_owned], VS_NAME_LEN);
                    break;
                }
            changed = 1;
        }
    }
    return changed;
}

static void *follow_main(void *arg)
{
    vs_follow_t *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (!f->dirty && !f->stop) {
            struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, 1000);
            if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0)
                break;
        }
        int stop = f->stop;
        f->dirty = 0;
        pthread_mutex_unlock(&f->mu);
        if (stop)
            break;
        while (reconcile(f)) {
            if (f->on_change)
                f->on_change(f->user);
            pthread_mutex_lock(&f->mu);
            stop = f->stop;
            pthread_mutex_unlock(&f->mu);
            if (stop)
                return NULL;
        }
    }
    return NULL;
}

vs_status vs_follow_start(const char *endpoints, const char *cluster, uint32_t partition, vs_shard_t *sh,
                          vs_follow_change_fn on_change, void *user, vs_follow_t **out, char err[VS_ERR_LEN])
{
    vs_follow_t *f = calloc(1, sizeof *f);
    if (!f)
        return vs_errf(err, VS_ERR_NOMEM, "rollout: out of memory");
    f->sh = sh;
    f->partition = partition;
    f->on_change = on_change;
    f->user = user;
    snprintf(f->cluster, sizeof f->cluster, "%s", cluster);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    vs_etcd_opts_t eo = {.endpoints = endpoints};
    char vp[VS_KEY_LEN], ap[VS_KEY_LEN];
    if (vs_key_versions_prefix(vp, cluster) == 0 || vs_key_active(ap, cluster) == 0) {
        free(f);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rollout: cluster name '%s' is not valid", cluster);
    }
    vs_status st = vs_etcd_create(&eo, &f->etcd, err);
    if (st == VS_OK && pthread_create(&f->thread, NULL, follow_main, f) != 0)
        st = vs_errf(err, VS_ERR_INTERNAL, "rollout: cannot start a thread");
    if (st != VS_OK) {
        vs_etcd_destroy(f->etcd);
        free(f);
        return st;
    }
    st = vs_etcd_watch_start(f->etcd, vp, strlen(vp), on_versions, f, &f->w_versions, err);
    if (st == VS_OK)
        st = vs_etcd_watch_start(f->etcd, ap, strlen(ap), on_active, f, &f->w_active, err);
    if (st != VS_OK) {
        vs_follow_stop(f);
        return st;
    }
    *out = f;
    return VS_OK;
}

void vs_follow_stop(vs_follow_t *f)
{
    if (!f)
        return;
    vs_etcd_watch_stop(f->w_versions);
    vs_etcd_watch_stop(f->w_active);
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    vs_etcd_destroy(f->etcd);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
