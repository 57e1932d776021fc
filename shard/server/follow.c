/* follow.c: see follow.h. The watch callbacks only record etcd's state and wake the reconcile thread,
 * which does the slow work (loading an index) outside the watch. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/net/etcd.h"
#include "shard/server/follow.h"
#include "shard/server/manifest.h"

#define MAX_WANTED 32

typedef struct wanted {
    char version[VS_NAME_LEN];
    char manifest[PATH_MAX];
    char state[16];
    int64_t mod_revision; /* a changed record is retried after a failure */
    int64_t tried_revision;
} wanted_t;

struct vs_follow {
    vs_etcd_t *etcd;
    vs_etcd_watch_t *w_versions, *w_active;
    vs_shard_t *sh;
    uint32_t partition;
    vs_follow_change_fn on_change;
    void *user;
    char prefix[256];
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
};

/* Records one version record (mu held). */
static void put_version(vs_follow_t *f, const vs_etcd_kv_t *kv)
{
    cJSON *o = cJSON_ParseWithLength(kv->value, kv->value_len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "manifest");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "state");
    if (!cJSON_IsString(v) || !cJSON_IsString(m) || !cJSON_IsString(s) ||
        !vs_version_name_valid(v->valuestring) || strlen(m->valuestring) >= PATH_MAX) {
        vs_log(VS_LOG_WARN, "rollout: ignoring a malformed version record %.*s", (int)kv->key_len, kv->key);
        cJSON_Delete(o);
        return;
    }
    wanted_t *w = NULL;
    for (size_t i = 0; i < f->n_wanted && !w; i++)
        if (strcmp(f->wanted[i].version, v->valuestring) == 0)
            w = &f->wanted[i];
    if (!w && f->n_wanted < MAX_WANTED) {
        w = &f->wanted[f->n_wanted++];
        memset(w, 0, sizeof *w);
    }
    if (w) {
        snprintf(w->version, sizeof w->version, "%s", v->valuestring);
        snprintf(w->manifest, sizeof w->manifest, "%s", m->valuestring);
        snprintf(w->state, sizeof w->state, "%s", s->valuestring);
        w->mod_revision = kv->mod_revision;
    }
    cJSON_Delete(o);
}

static void delete_version(vs_follow_t *f, const vs_etcd_kv_t *kv)
{
    const char *name = kv->key + strlen(f->prefix) + strlen("versions/");
    if (kv->key_len <= strlen(f->prefix) + strlen("versions/"))
        return;
    for (size_t i = 0; i < f->n_wanted; i++)
        if (strlen(f->wanted[i].version) == kv->key_len - (size_t)(name - kv->key) &&
            memcmp(f->wanted[i].version, name, strlen(f->wanted[i].version)) == 0) {
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
    cJSON *o = kv ? cJSON_ParseWithLength(kv->value, kv->value_len) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
    snprintf(f->active, sizeof f->active, "%s", cJSON_IsString(v) ? v->valuestring : "");
    cJSON_Delete(o);
}

static void on_active(const vs_etcd_watch_event_t *ev, void *user)
{
    vs_follow_t *f = user;
    char key[300];
    snprintf(key, sizeof key, "%sactive", f->prefix);
    pthread_mutex_lock(&f->mu);
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT) {
        const vs_etcd_kv_t *kv = NULL;
        for (size_t i = 0; i < ev->snapshot->n; i++)
            if (ev->snapshot->kvs[i].key_len == strlen(key) &&
                memcmp(ev->snapshot->kvs[i].key, key, strlen(key)) == 0)
                kv = &ev->snapshot->kvs[i];
        set_active(f, kv);
    } else if ((ev->kind == VS_ETCD_WATCH_PUT || ev->kind == VS_ETCD_WATCH_DELETE) &&
               ev->kv->key_len == strlen(key) && memcmp(ev->kv->key, key, strlen(key)) == 0) {
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
    /* 1. load */
    for (size_t i = 0; i < nw; i++) {
        wanted_t *w = &want[i];
        if (strcmp(w->state, "retired") == 0)
            continue;
        int st = held_state(vi, nh, w->version);
        int retry = st == VS_VERSION_FAILED && w->mod_revision != w->tried_revision;
        if (st && !retry)
            continue;
        pthread_mutex_lock(&f->mu);
        for (size_t j = 0; j < f->n_wanted; j++)
            if (strcmp(f->wanted[j].version, w->version) == 0)
                f->wanted[j].tried_revision = w->mod_revision;
        pthread_mutex_unlock(&f->mu);
        if (retry)
            vs_shard_unload(f->sh, w->version, err);
        vs_log(VS_LOG_INFO, "rollout: loading %s partition %u (%s) from %s", w->version, f->partition,
               w->state, w->manifest);
        int known = 0;
        for (size_t j = 0; j < f->n_owned && !known; j++)
            known = strcmp(f->owned[j], w->version) == 0;
        if (!known && f->n_owned < MAX_WANTED)
            snprintf(f->owned[f->n_owned++], VS_NAME_LEN, "%s", w->version);
        if (vs_shard_load(f->sh, w->manifest, f->partition, NULL, err) != VS_OK)
            vs_log(VS_LOG_ERROR, "rollout: %s failed: %s", w->version, err);
        else
            vs_log(VS_LOG_INFO, "rollout: %s partition %u READY", w->version, f->partition);
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
            keep = strcmp(want[j].version, vi[i].version) == 0 && strcmp(want[j].state, "retired") != 0;
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
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
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
    snprintf(f->prefix, sizeof f->prefix, "/vecshard/%.128s/", cluster);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    vs_etcd_opts_t eo = {.endpoints = endpoints};
    char vp[300], ap[300];
    snprintf(vp, sizeof vp, "%sversions/", f->prefix);
    snprintf(ap, sizeof ap, "%sactive", f->prefix);
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
