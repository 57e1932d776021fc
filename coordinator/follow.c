/* follow.c: see follow.h. Watch callbacks apply records directly: they are cheap (a manifest read and
 * a centroids file for a new cluster-partitioned version) and ordered per watch. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/timing.h"
#include "common/cluster/keys.h"
#include "common/cluster/lifecycle.h"
#include "common/cluster/manifest.h"
#include "common/cluster/records.h"
#include "common/log.h"
#include "common/net/etcd.h"
#include "coordinator/follow.h"

struct vs_coord_follow {
    char cluster[VS_NAME_LEN];
    vs_coord_t *coord;
    vs_view_t *view;
    vs_coord_follow_change_fn on_change;
    void *user;
    vs_etcd_t *etcd;
    vs_etcd_watch_t *w_members, *w_versions, *w_active;
    pthread_mutex_t mu;               /* pending_active */
    char pending_active[VS_NAME_LEN]; /* etcd's active version, until the view can serve it */
    /* versions this follower added (the --manifest ones are the operator's), and the held records of the
     * last snapshot plus puts since: a version it added that is no longer among them is forgotten on tick
     * (also when a first attempt was refused because the version was still active here) */
    char added[VS_COORD_MAX_VERSIONS * 4][VS_NAME_LEN];
    size_t n_added;
    char held[64][VS_NAME_LEN];
    size_t n_held;
    atomic_int etcd_connected; /* the membership watch's stream is up */
    atomic_int etcd_alive;     /* the last heartbeat (a 1 s read of the active key) answered */
    vs_etcd_t *hb_etcd;        /* the heartbeat's own client (1 s timeout) */
    pthread_t hb_thread;
    int hb_started;
    pthread_mutex_t hb_mu;
    pthread_cond_t hb_cv;
    int hb_stop;
    vs_log_limit_t bad_log;
};

/* Heartbeat: a frozen etcd (SIGSTOP, a stuck disk) keeps the watch's TCP stream open, so the watch alone
 * would report "connected" forever. Once a second, read the active key with a 1 s timeout. */
static void *heartbeat_main(void *arg)
{
    vs_coord_follow_t *f = arg;
    char key[VS_KEY_LEN], err[VS_ERR_LEN];
    size_t kl = vs_key_active(key, f->cluster);
    int was_alive = 1;
    pthread_mutex_lock(&f->hb_mu);
    while (!f->hb_stop) {
        pthread_mutex_unlock(&f->hb_mu);
        vs_etcd_kvs_t kvs = {0};
        int alive = vs_etcd_get(f->hb_etcd, key, kl, &kvs, err) == VS_OK;
        vs_etcd_kvs_fini(&kvs);
        atomic_store(&f->etcd_alive, alive);
        if (alive != was_alive)
            vs_log(alive ? VS_LOG_INFO : VS_LOG_WARN,
                   alive ? "etcd: heartbeat answered again"
                         : "etcd: heartbeat failed (%s); serving with the last view",
                   err);
        was_alive = alive;
        pthread_mutex_lock(&f->hb_mu);
        if (!f->hb_stop) {
            struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, 1000);
            pthread_cond_timedwait(&f->hb_cv, &f->hb_mu, &until);
        }
    }
    pthread_mutex_unlock(&f->hb_mu);
    return NULL;
}

static void changed(vs_coord_follow_t *f)
{
    if (f->on_change)
        f->on_change(f->user);
}

static int in_list(char (*list)[VS_NAME_LEN], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static void list_del(char (*list)[VS_NAME_LEN], size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0) {
            memcpy(list[i], list[--*n], VS_NAME_LEN);
            return;
        }
}

static void list_add(char (*list)[VS_NAME_LEN], size_t *n, size_t cap, const char *name)
{
    if (!in_list(list, *n, name) && *n < cap)
        snprintf(list[(*n)++], VS_NAME_LEN, "%s", name);
}

/* Forgets what this follower added that etcd no longer holds (mu held). */
static void reconcile(vs_coord_follow_t *f)
{
    char err[VS_ERR_LEN];
    for (size_t i = 0; i < f->n_added;) {
        const char *v = f->added[i];
        if (!vs_coord_has_version(f->coord, v)) {
            list_del(f->added, &f->n_added, v);
            continue;
        }
        if (in_list(f->held, f->n_held, v)) {
            i++;
            continue;
        }
        if (vs_coord_remove_version(f->coord, v, err) == VS_OK) {
            vs_log(VS_LOG_INFO, "rollout: forgot version %s (no longer held in etcd)", v);
            list_del(f->added, &f->n_added, v);
        } else {
            i++; /* still active here: tried again on the next tick */
        }
    }
}

void vs_coord_follow_tick(vs_coord_follow_t *f)
{
    char err[VS_ERR_LEN];
    pthread_mutex_lock(&f->mu);
    reconcile(f);
    if (f->pending_active[0] && vs_coord_version_ready(f->coord, f->pending_active)) {
        if (vs_coord_activate(f->coord, f->pending_active, err) == VS_OK)
            vs_log(VS_LOG_INFO, "rollout: active version is now %s", f->pending_active);
        f->pending_active[0] = 0;
    }
    pthread_mutex_unlock(&f->mu);
    changed(f);
}

static void on_members(const vs_etcd_watch_event_t *ev, void *user)
{
    vs_coord_follow_t *f = user;
    switch (ev->kind) {
    case VS_ETCD_WATCH_SNAPSHOT:
        vs_view_begin_snapshot(f->view);
        for (size_t i = 0; i < ev->snapshot->n; i++) {
            const vs_etcd_kv_t *kv = &ev->snapshot->kvs[i];
            vs_view_put(f->view, kv->key, kv->key_len, kv->value, kv->value_len);
        }
        vs_view_end_snapshot(f->view);
        vs_log(VS_LOG_INFO, "membership: snapshot of %zu records at revision %lld", ev->snapshot->n,
               (long long)ev->revision);
        break;
    case VS_ETCD_WATCH_PUT:
        vs_view_put(f->view, ev->kv->key, ev->kv->key_len, ev->kv->value, ev->kv->value_len);
        break;
    case VS_ETCD_WATCH_DELETE:
        vs_view_delete(f->view, ev->kv->key, ev->kv->key_len);
        break;
    case VS_ETCD_WATCH_CONNECTED:
        atomic_store(&f->etcd_connected, 1);
        vs_log(VS_LOG_INFO, "etcd: connected");
        break;
    case VS_ETCD_WATCH_DISCONNECTED:
        if (atomic_exchange(&f->etcd_connected, 0))
            vs_log(VS_LOG_WARN, "etcd: unreachable; serving with the last membership view");
        break;
    }
    vs_coord_follow_tick(f); /* a version waiting for its replicas may be ready now */
}

/* Forgets version (not the active one: the coordinator refuses, and it is retried on the next event). */
static void forget(vs_coord_follow_t *f, const char *version, const char *why)
{
    char err[VS_ERR_LEN];
    if (vs_coord_has_version(f->coord, version) && vs_coord_remove_version(f->coord, version, err) == VS_OK)
        vs_log(VS_LOG_INFO, "rollout: forgot %s version %s", why, version);
}

/* Applies one version record: track it (load its manifest) while coordinators hold its state. */
static void apply_version(vs_coord_follow_t *f, const vs_etcd_kv_t *kv)
{
    vs_version_rec_t *r = malloc(sizeof *r);
    char err[VS_ERR_LEN];
    vs_cver_state state;
    if (!r || vs_version_rec_decode(kv->value, kv->value_len, r, err) != VS_OK ||
        vs_cver_state_parse(r->state, &state) != VS_OK) {
        vs_log_limited(&f->bad_log, VS_LOG_WARN, "rollout: ignoring the malformed record %.*s",
                       (int)kv->key_len, kv->key);
        free(r);
        return;
    }
    pthread_mutex_lock(&f->mu);
    if (!vs_cver_coordinators_hold(state)) {
        list_del(f->held, &f->n_held, r->version);
        pthread_mutex_unlock(&f->mu);
        forget(f, r->version, r->state);
        free(r);
        return;
    }
    list_add(f->held, &f->n_held, 64, r->version);
    char known[17];
    if (vs_coord_version_content(f->coord, r->version, known) && r->content_id[0] && known[0] &&
        strcmp(known, r->content_id) != 0) {
        /* the name was removed and deployed again with other content: reload it (never the active one) */
        if (vs_coord_remove_version(f->coord, r->version, err) == VS_OK)
            vs_log(VS_LOG_INFO, "rollout: version %s has new content %s (was %s): reloading", r->version,
                   r->content_id, known);
        else
            vs_log_limited(&f->bad_log, VS_LOG_ERROR, "rollout: version %s changed content but %s",
                           r->version, err);
    }
    if (!vs_coord_has_version(f->coord, r->version)) {
        if (vs_coord_add_manifest(f->coord, r->manifest, err) == VS_OK) {
            vs_log(VS_LOG_INFO, "rollout: version %s (%s) from %s", r->version, r->state, r->manifest);
            list_add(f->added, &f->n_added, sizeof f->added / sizeof *f->added, r->version);
        } else {
            vs_log_limited(&f->bad_log, VS_LOG_ERROR, "rollout: version %s: %s", r->version, err);
        }
    }
    pthread_mutex_unlock(&f->mu);
    free(r);
}

static void on_versions(const vs_etcd_watch_event_t *ev, void *user)
{
    vs_coord_follow_t *f = user;
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT) {
        pthread_mutex_lock(&f->mu);
        f->n_held = 0; /* a fresh view: what is not in it is no longer held */
        pthread_mutex_unlock(&f->mu);
        for (size_t i = 0; i < ev->snapshot->n; i++)
            apply_version(f, &ev->snapshot->kvs[i]);
    } else if (ev->kind == VS_ETCD_WATCH_PUT) {
        apply_version(f, ev->kv);
    } else if (ev->kind == VS_ETCD_WATCH_DELETE) {
        char name[VS_REPLICA_ID_MAX + 1];
        if (vs_key_parse(f->cluster, ev->kv->key, ev->kv->key_len, NULL, name) == VS_KEY_VERSION) {
            pthread_mutex_lock(&f->mu);
            list_del(f->held, &f->n_held, name);
            pthread_mutex_unlock(&f->mu);
            forget(f, name, "removed");
        }
    }
    vs_coord_follow_tick(f);
}

static void on_active(const vs_etcd_watch_event_t *ev, void *user)
{
    vs_coord_follow_t *f = user;
    const vs_etcd_kv_t *kv = NULL;
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT && ev->snapshot->n)
        kv = &ev->snapshot->kvs[0];
    else if (ev->kind == VS_ETCD_WATCH_PUT)
        kv = ev->kv;
    if (!kv)
        return;
    vs_active_rec_t a;
    char err[VS_ERR_LEN];
    if (vs_active_rec_decode(kv->value, kv->value_len, &a, err) != VS_OK) {
        vs_log_limited(&f->bad_log, VS_LOG_WARN, "rollout: ignoring the active record: %s", err);
        return;
    }
    pthread_mutex_lock(&f->mu);
    snprintf(f->pending_active, sizeof f->pending_active, "%s", a.version);
    pthread_mutex_unlock(&f->mu);
    vs_coord_follow_tick(f);
}

vs_status vs_coord_follow_start(const char *endpoints, const char *cluster, vs_coord_t *c, vs_view_t *view,
                                vs_coord_follow_change_fn on_change, void *user, vs_coord_follow_t **out,
                                char err[VS_ERR_LEN])
{
    char mp[VS_KEY_LEN], vp[VS_KEY_LEN], ap[VS_KEY_LEN];
    size_t ml = vs_key_members_prefix(mp, cluster), vl = vs_key_versions_prefix(vp, cluster),
           al = vs_key_active(ap, cluster);
    if (!ml || !vl || !al)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "cluster name '%s' is not valid", cluster);
    vs_coord_follow_t *f = calloc(1, sizeof *f);
    if (!f)
        return vs_errf(err, VS_ERR_NOMEM, "follow: out of memory");
    snprintf(f->cluster, sizeof f->cluster, "%s", cluster);
    f->coord = c;
    f->view = view;
    f->on_change = on_change;
    f->user = user;
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->hb_mu, NULL);
    pthread_cond_init(&f->hb_cv, NULL);
    atomic_init(&f->etcd_alive, 1);
    vs_etcd_opts_t eo = {.endpoints = endpoints}, hbo = {.endpoints = endpoints, .timeout_ms = 1000};
    vs_status st = vs_etcd_create(&eo, &f->etcd, err);
    if (st == VS_OK)
        st = vs_etcd_create(&hbo, &f->hb_etcd, err);
    if (st == VS_OK) {
        if (pthread_create(&f->hb_thread, NULL, heartbeat_main, f) == 0)
            f->hb_started = 1;
        else
            st = vs_errf(err, VS_ERR_INTERNAL, "follow: cannot start the heartbeat thread");
    }
    if (st == VS_OK)
        st = vs_etcd_watch_start(f->etcd, mp, ml, on_members, f, &f->w_members, err);
    if (st == VS_OK)
        st = vs_etcd_watch_start(f->etcd, vp, vl, on_versions, f, &f->w_versions, err);
    if (st == VS_OK)
        st = vs_etcd_watch_start(f->etcd, ap, al, on_active, f, &f->w_active, err);
    if (st != VS_OK) {
        vs_coord_follow_stop(f);
        return st;
    }
    *out = f;
    return VS_OK;
}

int vs_coord_follow_etcd_connected(const vs_coord_follow_t *f)
{
    vs_coord_follow_t *m = (vs_coord_follow_t *)f;
    return f ? atomic_load(&m->etcd_connected) && atomic_load(&m->etcd_alive) : 0;
}

void vs_coord_follow_stop(vs_coord_follow_t *f)
{
    if (!f)
        return;
    if (f->hb_started) {
        pthread_mutex_lock(&f->hb_mu);
        f->hb_stop = 1;
        pthread_cond_signal(&f->hb_cv);
        pthread_mutex_unlock(&f->hb_mu);
        pthread_join(f->hb_thread, NULL);
    }
    vs_etcd_watch_stop(f->w_members);
    vs_etcd_watch_stop(f->w_versions);
    vs_etcd_watch_stop(f->w_active);
    vs_etcd_destroy(f->hb_etcd);
    vs_etcd_destroy(f->etcd);
    pthread_cond_destroy(&f->hb_cv);
    pthread_mutex_destroy(&f->hb_mu);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
