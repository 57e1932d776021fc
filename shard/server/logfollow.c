/* logfollow.c: the shard's write-log follower (logfollow.h). */
#include "shard/server/logfollow.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/net/wlog.h"

#define MAX_FOLLOWED VS_SHARD_MAX_VERSIONS
#define COALESCE_MS 20 /* added to a write's visibility at most; docs/decisions.md "Latency against CPU" */

typedef struct followed {
    char version[128];
    vs_wlog_reader_t *reader; /* NULL: to be opened at the version's position */
    int failed;               /* the log had a gap: the version was stopped */
    double hold_until;        /* full fresh state: try again after */
    int fill_step;            /* fresh fill / VS_LOGFOLLOW_FILL_STEP last reported */
} followed_t;

struct vs_logfollow {
    vs_shard_t *sh;
    char url[512], cluster[128];
    pthread_t thread;
    atomic_int stop;
    vs_wlog_t *log;
    followed_t f[MAX_FOLLOWED];
    size_t n;
    vs_log_limit_t lim_conn, lim_apply;
    void (*on_fill)(void *user);
    void *user;
};

typedef struct apply_ctx {
    vs_logfollow_t *lf;
    followed_t *f;
    vs_status last;
} apply_ctx_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static vs_status apply_one(void *user, uint64_t seq, const uint8_t *msg, size_t len, char err[VS_ERR_LEN])
{
    apply_ctx_t *a = user;
    vs_status st = vs_shard_apply_log(a->lf->sh, a->f->version, seq, msg, len, err);
    a->last = st;
    if (st == VS_ERR_CORRUPT) { /* passed by the shard: counted, never applicable */
        vs_log_limited(&a->lf->lim_apply, VS_LOG_ERROR, "version %s: write log message %llu rejected: %s",
                       a->f->version, (unsigned long long)seq, err);
        return VS_OK;
    }
    return st;
}

static void drop(followed_t *f)
{
    vs_wlog_reader_close(f->reader);
    f->reader = NULL;
}

/* Follows exactly the READY versions that take writes. */
static void refresh_versions(vs_logfollow_t *lf)
{
    vs_shard_version_info_t info[VS_SHARD_MAX_VERSIONS];
    char active[128];
    size_t n = vs_shard_versions(lf->sh, info, VS_SHARD_MAX_VERSIONS, active);
    if (n > VS_SHARD_MAX_VERSIONS)
        n = VS_SHARD_MAX_VERSIONS;
    for (size_t i = 0; i < lf->n;) {
        /* keep a version while it is READY and takes writes; a failed one only while the shard still
         * shows it FAILED (a version loaded again under the same name is followed afresh) */
        int keep = 0;
        for (size_t j = 0; j < n && !keep; j++)
            if (strcmp(info[j].version, lf->f[i].version) == 0)
                keep =
                    lf->f[i].failed ? info[j].state == VS_VERSION_FAILED : info[j].state == VS_VERSION_READY;
        if (keep && !lf->f[i].failed && vs_shard_log_next(lf->sh, lf->f[i].version) == 0)
            keep = 0;
        if (keep) {
            i++;
            continue;
        }
        drop(&lf->f[i]);
        lf->f[i] = lf->f[--lf->n];
    }
    for (size_t j = 0; j < n; j++) {
        if (info[j].state != VS_VERSION_READY || vs_shard_log_next(lf->sh, info[j].version) == 0)
            continue;
        int have = 0;
        for (size_t i = 0; i < lf->n && !have; i++)
            have = strcmp(lf->f[i].version, info[j].version) == 0;
        if (!have && lf->n < MAX_FOLLOWED) {
            memset(&lf->f[lf->n], 0, sizeof lf->f[lf->n]);
            snprintf(lf->f[lf->n].version, sizeof lf->f[lf->n].version, "%.127s", info[j].version);
            lf->n++;
        } else if (!have) {
            vs_log_limited(&lf->lim_apply, VS_LOG_ERROR, "write log: %d versions followed already; %s is not",
                           MAX_FOLLOWED, info[j].version);
        }
    }
}

static void follow_one(vs_logfollow_t *lf, followed_t *f, int64_t wait_ms)
{
    char err[VS_ERR_LEN];
    if (f->failed || now_s() < f->hold_until)
        return;
    uint64_t next = vs_shard_log_next(lf->sh, f->version);
    if (next == 0)
        return;
    if (f->reader && vs_wlog_reader_position(f->reader) != next)
        drop(f); /* the shard's place is the truth */
    if (!f->reader) {
        vs_status st = vs_wlog_reader_open(lf->log, next, &f->reader, err);
        if (st == VS_ERR_FAILED_PRECONDITION) {
            f->failed = 1;
            vs_log(VS_LOG_ERROR, "version %s stops serving: %s", f->version, err);
            vs_shard_log_failed(lf->sh, f->version, err);
            return;
        }
        if (st != VS_OK) {
            vs_log_limited(&lf->lim_conn, VS_LOG_WARN, "write log: version %s: %s", f->version, err);
            return;
        }
    }
    apply_ctx_t a = {lf, f, VS_OK};
    size_t n = 0;
    vs_status st = vs_wlog_reader_next(f->reader, 256, wait_ms, apply_one, &a, &n, err);
    if (f->reader) /* (a failed fetch keeps the reader; a gap drops it below) */
        vs_shard_set_log_pending(lf->sh, f->version, vs_wlog_reader_pending(f->reader));
    if (n > 0 && lf->on_fill) {
        vs_shard_fresh_info_t fi;
        char e2[VS_ERR_LEN];
        if (vs_shard_fresh_info(lf->sh, f->version, &fi, e2) == VS_OK && fi.fresh.capacity) {
            int step = (int)(fi.fresh.used * 100 / fi.fresh.capacity / VS_LOGFOLLOW_FILL_STEP);
            if (step != f->fill_step) {
                f->fill_step = step;
                lf->on_fill(lf->user);
            }
        }
    }
    if (st == VS_OK) {
        /* a steady trickle (a fetch that got a few messages): let the next ones gather for a moment, so
         * that one fetch carries many instead of one round trip and two wake-ups per write */
        if (n > 0 && n < 64) {
            struct timespec ts = {0, COALESCE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        return;
    }
    if (st == VS_ERR_FAILED_PRECONDITION && a.last == VS_OK) { /* the stream's gap, not the shard's */
        f->failed = 1;
        drop(f);
        vs_log(VS_LOG_ERROR, "version %s stops serving: %s", f->version, err);
        vs_shard_log_failed(lf->sh, f->version, err);
    } else if (st == VS_ERR_RESOURCE_EXHAUSTED) {
        f->hold_until = now_s() + 1.0;
        vs_log_limited(&lf->lim_apply, VS_LOG_ERROR,
                       "version %s holds at log message %llu: %s (a version folding the log must replace it)",
                       f->version, (unsigned long long)vs_wlog_reader_position(f->reader), err);
    } else {
        drop(f);
        vs_log_limited(&lf->lim_conn, VS_LOG_WARN, "write log: version %s: %s", f->version, err);
    }
}

static void *follower_main(void *arg)
{
    vs_logfollow_t *lf = arg;
    char err[VS_ERR_LEN];
    while (!atomic_load(&lf->stop)) {
        if (!lf->log) {
            vs_wlog_opts_t o = {.url = lf->url, .cluster = lf->cluster, .timeout_ms = 2000};
            /* the coordinator creates the stream (with its replicas): a shard never makes an R1 one */
            if (vs_wlog_open(&o, 0, &lf->log, err) != VS_OK) {
                vs_log_limited(&lf->lim_conn, VS_LOG_WARN, "write log: %s (retrying)", err);
                struct timespec ts = {0, 500 * 1000000L};
                nanosleep(&ts, NULL);
                continue;
            }
            vs_log(VS_LOG_INFO, "write log: following %s on %s", lf->cluster, lf->url);
        }
        refresh_versions(lf);
        /* a fetch returns at its time limit unless a full batch came (libnats 3.4): the limit bounds how
         * long an applied write waits to be seen; 20-40 requests a second per shard cost nothing */
        int64_t wait_ms = lf->n <= 1 ? 50 : 25;
        for (size_t i = 0; i < lf->n && !atomic_load(&lf->stop); i++)
            follow_one(lf, &lf->f[i], wait_ms);
        if (lf->n == 0) {
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    for (size_t i = 0; i < lf->n; i++)
        drop(&lf->f[i]);
    vs_wlog_close(lf->log);
    return NULL;
}

vs_status vs_logfollow_start(const vs_logfollow_opts_t *o, vs_shard_t *sh, vs_logfollow_t **out,
                             char err[VS_ERR_LEN])
{
    *out = NULL;
    vs_logfollow_t *lf = calloc(1, sizeof *lf);
    if (!lf)
        return vs_errf(err, VS_ERR_NOMEM, "write log follower: out of memory");
    lf->sh = sh;
    lf->on_fill = o->on_fill;
    lf->user = o->user;
    snprintf(lf->url, sizeof lf->url, "%s", o->url);
    snprintf(lf->cluster, sizeof lf->cluster, "%s", o->cluster);
    atomic_init(&lf->stop, 0);
    if (pthread_create(&lf->thread, NULL, follower_main, lf) != 0) {
        free(lf);
        return vs_errf(err, VS_ERR_INTERNAL, "write log follower: cannot start its thread");
    }
    *out = lf;
    return VS_OK;
}

void vs_logfollow_stop(vs_logfollow_t *lf)
{
    if (!lf)
        return;
    atomic_store(&lf->stop, 1);
    pthread_join(lf->thread, NULL);
    free(lf);
}
