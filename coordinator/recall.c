/* recall.c: see recall.h. The sampling draw is a per-thread xorshift outside any lock, so a query that is not
 * sampled costs one random number; a sampled one takes the lock and is copied into its group's queue. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "coordinator/recall.h"

typedef struct group {
    int used;
    char version[VS_RECALL_KEY_LEN], params[VS_RECALL_KEY_LEN];
    uint32_t dim, k;
    /* sampled, waiting */
    size_t nq, cap;
    float *q;
    int64_t *ids;
    double oldest;
    /* the window of replayed queries' recall */
    double *ring, sum;
    size_t n_ring, pos;
    double last_fed;
} group_t;

struct vs_recall {
    vs_recall_opts_t o;
    pthread_mutex_t mu;
    group_t g[VS_RECALL_MAX_GROUPS];
    size_t waiting; /* queries in every queue */
    double tokens, last_refill;
    vs_recall_totals_t totals;
};

void vs_recall_opts_default(vs_recall_opts_t *o)
{
    *o = (vs_recall_opts_t){.sample_rate = 0.01,
                            .max_qps = 20,
                            .batch = 32,
                            .window = 1000,
                            .queue_max = 4096,
                            .max_wait_s = 5,
                            .budget = 0.05};
}

vs_recall_t *vs_recall_create(const vs_recall_opts_t *o)
{
    if (!(o->sample_rate > 0))
        return NULL;
    vs_recall_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->o = *o;
    if (r->o.batch == 0)
        r->o.batch = 32;
    if (r->o.window == 0)
        r->o.window = 1000;
    if (r->o.queue_max < r->o.batch)
        r->o.queue_max = r->o.batch;
    r->tokens = (double)r->o.batch;
    r->last_refill = -1;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void group_free(group_t *g)
{
    free(g->q);
    free(g->ids);
    free(g->ring);
    memset(g, 0, sizeof *g);
}

void vs_recall_destroy(vs_recall_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < VS_RECALL_MAX_GROUPS; i++)
        group_free(&r->g[i]);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

const vs_recall_opts_t *vs_recall_options(const vs_recall_t *r)
{
    return &r->o;
}

static double uniform01(void)
{
    static _Thread_local uint64_t s;
    if (!s)
        s = (uint64_t)(uintptr_t)&s * 0x9e3779b97f4a7c15ull | 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) * (1.0 / 9007199254740992.0);
}

/* The group of a key, made (or the least recently fed one replaced) when absent; NULL if out of memory. */
static group_t *group_of(vs_recall_t *r, const char *version, const char *params, uint32_t dim, uint32_t k,
                         double now)
{
    group_t *victim = NULL;
    for (size_t i = 0; i < VS_RECALL_MAX_GROUPS; i++) {
        group_t *g = &r->g[i];
        if (g->used && g->k == k && g->dim == dim && strcmp(g->version, version) == 0 &&
            strcmp(g->params, params) == 0)
            return g;
    }
    for (size_t i = 0; i < VS_RECALL_MAX_GROUPS; i++) { /* a free slot, else the least recently fed */
        group_t *g = &r->g[i];
        if (!g->used) {
            victim = g;
            break;
        }
        if (!victim || g->last_fed < victim->last_fed)
            victim = g;
    }
    r->waiting -= victim->nq;
    r->totals.dropped_queue += victim->nq;
    group_free(victim);
    group_t *g = victim;
    g->ring = malloc(r->o.window * sizeof *g->ring);
    if (!g->ring)
        return NULL;
    g->used = 1;
    snprintf(g->version, sizeof g->version, "%s", version);
    snprintf(g->params, sizeof g->params, "%s", params);
    g->dim = dim;
    g->k = k;
    g->last_fed = now;
    return g;
}

size_t vs_recall_offer(vs_recall_t *r, double now, const char *version, const char *params, uint32_t dim,
                       uint32_t k, size_t nq, const float *q, const int64_t *ids)
{
    if (!r)
        return 0;
    size_t taken = 0;
    for (size_t i = 0; i < nq; i++) {
        if (uniform01() >= r->o.sample_rate)
            continue;
        pthread_mutex_lock(&r->mu);
        if (r->last_refill < 0)
            r->last_refill = now;
        r->tokens += (now - r->last_refill) * r->o.max_qps;
        r->last_refill = now;
        if (r->tokens > (double)r->o.batch)
            r->tokens = (double)r->o.batch;
        group_t *g = NULL;
        if (r->tokens < 1) {
            r->totals.dropped_queue++; /* over the rate */
        } else if (r->waiting >= r->o.queue_max) {
            r->totals.dropped_queue++;
        } else if ((g = group_of(r, version, params, dim, k, now)) != NULL) {
            g->last_fed = now;
            if (g->nq == g->cap) {
                size_t cap = g->cap ? 2 * g->cap : r->o.batch;
                float *nqv = realloc(g->q, cap * dim * sizeof *nqv);
                if (nqv)
                    g->q = nqv;
                int64_t *niv = nqv ? realloc(g->ids, cap * k * sizeof *niv) : NULL;
                if (niv)
                    g->ids = niv;
                if (nqv && niv)
                    g->cap = cap;
            }
            if (g->nq < g->cap) {
                memcpy(g->q + g->nq * dim, q + i * dim, dim * sizeof *q);
                memcpy(g->ids + g->nq * k, ids + i * k, k * sizeof *ids);
                if (g->nq == 0)
                    g->oldest = now;
                g->nq++;
                r->waiting++;
                r->tokens -= 1;
                r->totals.sampled++;
                taken++;
            }
        }
        pthread_mutex_unlock(&r->mu);
    }
    return taken;
}

vs_recall_batch_t *vs_recall_next(vs_recall_t *r, double now, int flush)
{
    if (!r)
        return NULL;
    pthread_mutex_lock(&r->mu);
    group_t *pick = NULL;
    for (size_t i = 0; i < VS_RECALL_MAX_GROUPS; i++) {
        group_t *g = &r->g[i];
        if (g->used && g->nq > 0 && (flush || g->nq >= r->o.batch || now - g->oldest >= r->o.max_wait_s) &&
            (!pick || g->oldest < pick->oldest))
            pick = g;
    }
    vs_recall_batch_t *b = pick ? calloc(1, sizeof *b) : NULL;
    if (b) {
        size_t n = pick->nq < r->o.batch ? pick->nq : r->o.batch;
        b->q = malloc(n * pick->dim * sizeof *b->q);
        b->ids = malloc(n * pick->k * sizeof *b->ids);
        if (!b->q || !b->ids) {
            vs_recall_batch_free(b);
            b = NULL;
        } else {
            snprintf(b->version, sizeof b->version, "%s", pick->version);
            snprintf(b->params, sizeof b->params, "%s", pick->params);
            b->dim = pick->dim;
            b->k = pick->k;
            b->nq = n;
            memcpy(b->q, pick->q, n * pick->dim * sizeof *b->q);
            memcpy(b->ids, pick->ids, n * pick->k * sizeof *b->ids);
            memmove(pick->q, pick->q + n * pick->dim, (pick->nq - n) * pick->dim * sizeof *pick->q);
            memmove(pick->ids, pick->ids + n * pick->k, (pick->nq - n) * pick->k * sizeof *pick->ids);
            pick->nq -= n;
            pick->oldest = now; /* the rest: a batch of their own from now on */
            r->waiting -= n;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return b;
}

void vs_recall_batch_free(vs_recall_batch_t *b)
{
    if (!b)
        return;
    free(b->q);
    free(b->ids);
    free(b);
}

void vs_recall_record(vs_recall_t *r, const vs_recall_batch_t *b, const int64_t *exact)
{
    pthread_mutex_lock(&r->mu);
    group_t *g = group_of(r, b->version, b->params, b->dim, b->k, 0);
    for (size_t i = 0; g && i < b->nq; i++) {
        double v = vs_ids_recall(b->ids + i * b->k, exact + i * b->k, b->k);
        if (g->n_ring == r->o.window)
            g->sum -= g->ring[g->pos];
        else
            g->n_ring++;
        g->ring[g->pos] = v;
        g->sum += v;
        g->pos = (g->pos + 1) % r->o.window;
    }
    if (g && g->pos == 0) { /* re-summed once per turn of the ring: no drift from the running sum */
        double s = 0;
        for (size_t i = 0; i < g->n_ring; i++)
            s += g->ring[i];
        g->sum = s;
    }
    r->totals.replayed += b->nq;
    pthread_mutex_unlock(&r->mu);
}

void vs_recall_forget(vs_recall_t *r, const char *version)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < VS_RECALL_MAX_GROUPS; i++) {
        group_t *g = &r->g[i];
        if (g->used && strcmp(g->version, version) == 0) {
            r->waiting -= g->nq;
            r->totals.dropped_queue += g->nq;
            group_free(g);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

void vs_recall_failed(vs_recall_t *r, const vs_recall_batch_t *b)
{
    pthread_mutex_lock(&r->mu);
    r->totals.dropped_failed += b->nq;
    pthread_mutex_unlock(&r->mu);
}

void vs_recall_add_busy(vs_recall_t *r, double seconds)
{
    pthread_mutex_lock(&r->mu);
    r->totals.replay_seconds += seconds;
    pthread_mutex_unlock(&r->mu);
}

size_t vs_recall_snapshot(vs_recall_t *r, vs_recall_stat_t *out, size_t cap, vs_recall_totals_t *totals)
{
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < VS_RECALL_MAX_GROUPS && n < cap; i++) {
        const group_t *g = &r->g[i];
        if (!g->used || g->n_ring == 0)
            continue;
        vs_recall_stat_t *s = &out[n++];
        snprintf(s->version, sizeof s->version, "%s", g->version);
        snprintf(s->params, sizeof s->params, "%s", g->params);
        s->k = g->k;
        s->queries = g->n_ring;
        s->recall = g->sum / (double)g->n_ring;
        s->target = 0;
    }
    if (totals)
        *totals = r->totals;
    pthread_mutex_unlock(&r->mu);
    return n;
}
