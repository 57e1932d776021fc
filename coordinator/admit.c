/* admit.c: see admit.h. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/admit.h"

vs_status vs_quota_parse(const char *arg, vs_quota_spec_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof out->name)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "--client-quota '%s': expected NAME=QPS[:BURST] (NAME at most %d characters)", arg,
                       VS_QUOTA_NAME_MAX - 1);
    memcpy(out->name, arg, (size_t)(eq - arg));
    char *end;
    out->qps = strtod(eq + 1, &end);
    out->burst = 0;
    if (*end == ':')
        out->burst = strtod(end + 1, &end);
    if (*end || !(out->qps > 0) || !isfinite(out->qps) || out->burst < 0 || !isfinite(out->burst))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "--client-quota '%s': QPS must be a number > 0 and BURST a number >= 0", arg);
    if (out->burst == 0)
        out->burst = out->qps > 1 ? out->qps : 1;
    return VS_OK;
}

typedef struct bucket {
    char name[VS_QUOTA_NAME_MAX];
    double qps, burst, tokens, t;
} bucket_t;

struct vs_quotas {
    pthread_mutex_t mu;
    bucket_t *named; /* explicit lines */
    size_t n_named;
    int has_default;
    vs_quota_spec_t def;
    bucket_t *clients; /* "*" clients, first come first served */
    size_t n_clients;
    bucket_t overflow; /* "*" clients beyond VS_QUOTA_MAX_CLIENTS */
};

vs_quotas_t *vs_quotas_create(const vs_quota_spec_t *specs, size_t n)
{
    vs_quotas_t *q = calloc(1, sizeof *q);
    if (!q || !(q->named = calloc(n ? n : 1, sizeof *q->named)) ||
        !(q->clients = calloc(VS_QUOTA_MAX_CLIENTS, sizeof *q->clients))) {
        if (q)
            free(q->named);
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->mu, NULL);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(specs[i].name, "*") == 0) {
            q->has_default = 1;
            q->def = specs[i];
            continue;
        }
        size_t j = 0;
        while (j < q->n_named && strcmp(q->named[j].name, specs[i].name) != 0)
            j++;
        if (j == q->n_named)
            q->n_named++;
        bucket_t *b = &q->named[j];
        snprintf(b->name, sizeof b->name, "%s", specs[i].name);
        b->qps = specs[i].qps;
        b->burst = b->tokens = specs[i].burst;
        b->t = -1;
    }
    q->overflow = (bucket_t){"*", q->def.qps, q->def.burst, q->def.burst, -1};
    return q;
}

void vs_quotas_destroy(vs_quotas_t *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    free(q->named);
    free(q->clients);
    free(q);
}

static bucket_t *find(vs_quotas_t *q, const char *id)
{
    for (size_t i = 0; i < q->n_named; i++)
        if (strcmp(q->named[i].name, id) == 0)
            return &q->named[i];
    if (!q->has_default)
        return NULL;
    for (size_t i = 0; i < q->n_clients; i++)
        if (strcmp(q->clients[i].name, id) == 0)
            return &q->clients[i];
    if (q->n_clients == VS_QUOTA_MAX_CLIENTS || strlen(id) >= VS_QUOTA_NAME_MAX)
        return &q->overflow;
    bucket_t *b = &q->clients[q->n_clients++];
    snprintf(b->name, sizeof b->name, "%s", id);
    b->qps = q->def.qps;
    b->burst = b->tokens = q->def.burst;
    b->t = -1;
    return b;
}

int vs_quotas_take(vs_quotas_t *q, const char *identity, double queries, double now, int64_t *retry_after_ms,
                   double *qps)
{
    *retry_after_ms = 0;
    *qps = 0;
    if (!q)
        return 1;
    pthread_mutex_lock(&q->mu);
    bucket_t *b = find(q, identity);
    int ok = 1;
    if (b) {
        if (b->t >= 0 && now > b->t)
            b->tokens = fmin(b->burst, b->tokens + (now - b->t) * b->qps);
        b->t = now > b->t ? now : b->t;
        double cost = queries < b->burst ? queries : b->burst; /* a large request waits for a full bucket */
        if (b->tokens + 1e-9 >= cost) {
            b->tokens -= cost;
        } else {
            ok = 0;
            *qps = b->qps;
            *retry_after_ms = (int64_t)ceil((cost - b->tokens) / b->qps * 1e3);
            if (*retry_after_ms < 1)
                *retry_after_ms = 1;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return ok;
}

void vs_limit_init(vs_limit_t *l, double initial, double min_limit, double max_limit)
{
    *l = (vs_limit_t){.limit = initial, .min_limit = min_limit, .max_limit = max_limit,
                      .tolerance = VS_LIMIT_TOLERANCE};
}

void vs_limit_on_sample(vs_limit_t *l, double rtt_s, double in_flight)
{
    if (!(rtt_s > 0))
        return;
    /* the long-run latency: a plain mean over the first samples, then an exponential average (~600) */
    l->samples++;
    double w = l->samples < 600 ? 1.0 / (double)l->samples : 2.0 / 601.0;
    l->long_rtt = l->long_rtt * (1 - w) + rtt_s * w;
    if (l->long_rtt / rtt_s > 2) /* recovering from a slow spell: let the average come down faster */
        l->long_rtt *= 0.95;
    if (l->samples < 16)
        return;
    double gradient = l->tolerance * l->long_rtt / rtt_s;
    gradient = gradient < 0.5 ? 0.5 : gradient > 1.0 ? 1.0 : gradient;
    if (gradient >= 1.0 && in_flight < l->limit / 2)
        return; /* not using the limit: no evidence it may grow */
    double grown = l->limit * gradient + sqrt(l->limit); /* room for a queue of sqrt(limit) */
    double next = l->limit * 0.8 + grown * 0.2;
    l->limit = next < l->min_limit ? l->min_limit : next > l->max_limit ? l->max_limit : next;
}

void vs_limit_on_drop(vs_limit_t *l)
{
    l->limit = l->limit * 0.9 < l->min_limit ? l->min_limit : l->limit * 0.9;
}

struct vs_elimit {
    pthread_mutex_t mu;
    double limit, min_limit, max_limit, target_s, initial;
    double window_end;  /* the current window ends then (0: not started) */
    size_t done, late;  /* requests ended in the window, and those over the target */
    double used;        /* the most in flight seen at an admission in the window */
    double win_min;     /* the lowest latency of the window */
    double win_start, lat_sum; /* the window's start and its requests' summed latency */
    double last_done;          /* when the last request ended */
    double conc[VS_ELIMIT_FLOOR_WINDOWS]; /* per past window: its concurrency if on time, else 0 */
    size_t n_windows;
    double mins[VS_ELIMIT_BASE_WINDOWS]; /* of the last windows (0: none yet) */
    size_t n_mins;
};

vs_elimit_t *vs_elimit_create(double target_s, double initial, double min_limit, double max_limit)
{
    vs_elimit_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    l->target_s = target_s;
    l->min_limit = min_limit;
    l->max_limit = max_limit;
    l->limit = initial < min_limit ? min_limit : initial > max_limit ? max_limit : initial;
    l->initial = l->limit;
    return l;
}

void vs_elimit_destroy(vs_elimit_t *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Idle for a while (l->mu held): what the last windows said is stale; start afresh (the floor's memory
 * stays). */
static void idle_reset(vs_elimit_t *l, double now)
{
    if (l->limit < l->initial)
        l->limit = l->initial;
    l->window_end = 0;
    l->done = l->late = 0;
    l->lat_sum = l->used = l->win_min = 0;
    l->last_done = now;
}

int vs_elimit_admit(vs_elimit_t *l, double in_flight, double share, double now, double *limit)
{
    pthread_mutex_lock(&l->mu);
    /* the first request after a pause (the burst a client sends as its connection comes up) is judged by
     * a fresh limit, not by the one the last overload left */
    if (in_flight <= 0 && l->last_done > 0 && now - l->last_done > VS_ELIMIT_IDLE_S)
        idle_reset(l, now);
    if (in_flight > l->used)
        l->used = in_flight;
    *limit = l->limit * share;
    int ok = in_flight <= 0 || in_flight < l->limit * share;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

void vs_elimit_on_done(vs_elimit_t *l, double latency_s, int slow, double now)
{
    pthread_mutex_lock(&l->mu);
    if (l->last_done > 0 && now - l->last_done > VS_ELIMIT_IDLE_S)
        idle_reset(l, now);
    l->last_done = now;
    if (l->window_end == 0) {
        l->window_end = now + VS_ELIMIT_WINDOW_S;
        l->win_start = now;
    }
    double base = 0;
    for (size_t i = 0; i < VS_ELIMIT_BASE_WINDOWS && i < l->n_mins; i++)
        if (base == 0 || l->mins[i] < base)
            base = l->mins[i];
    double threshold = l->target_s > VS_ELIMIT_BASE_FACTOR * base ? l->target_s : VS_ELIMIT_BASE_FACTOR * base;
    l->done++;
    l->late += slow || latency_s > threshold;
    l->lat_sum += latency_s;
    if (!slow && (l->win_min == 0 || latency_s < l->win_min))
        l->win_min = latency_s;
    if (now >= l->window_end && l->done >= 10) {
        if (l->win_min > 0)
            l->mins[l->n_mins++ % VS_ELIMIT_BASE_WINDOWS] = l->win_min;
        l->win_min = 0;
        const int late = (double)l->late > VS_ELIMIT_SLOW_SHARE * (double)l->done;
        const double span = now - l->win_start;
        l->conc[l->n_windows++ % VS_ELIMIT_FLOOR_WINDOWS] = !late && span > 0 ? l->lat_sum / span : 0;
        double floor = 0;
        for (size_t i = 0; i < VS_ELIMIT_FLOOR_WINDOWS && i < l->n_windows; i++)
            floor = l->conc[i] > floor ? l->conc[i] : floor;
        /* only a window that used the limit says anything about it: late requests with few in flight are
         * slow for another reason (a paused host, a slow index), and fewer admitted would not help */
        if (l->used >= 0.5 * l->limit)
            l->limit *= late ? 0.9 : 1.05;
        else if (!late && l->limit < l->initial) /* calm again after an overload: back to the start */
            l->limit = l->limit * 1.05 < l->initial ? l->limit * 1.05 : l->initial;
        if (l->limit < floor)
            l->limit = floor;
        l->limit = l->limit < l->min_limit ? l->min_limit : l->limit > l->max_limit ? l->max_limit : l->limit;
        l->window_end = now + VS_ELIMIT_WINDOW_S;
        l->win_start = now;
        l->lat_sum = 0;
        l->done = l->late = 0;
        l->used = 0;
    }
    pthread_mutex_unlock(&l->mu);
}

double vs_elimit_get(vs_elimit_t *l)
{
    pthread_mutex_lock(&l->mu);
    double v = l->limit;
    pthread_mutex_unlock(&l->mu);
    return v;
}
