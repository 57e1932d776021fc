/* parallel.c: see parallel.h. */
#include "common/parallel.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

typedef struct pool {
    size_t n_tasks;
    size_t next; /* atomic */
    void (*fn)(void *ctx, size_t task, size_t worker);
    void *ctx;
} pool_t;

typedef struct worker {
    pool_t *pool;
    size_t id;
} worker_t;

static void run_tasks(pool_t *p, size_t worker)
{
    for (;;) {
        size_t t = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (t >= p->n_tasks)
            return;
        p->fn(p->ctx, t, worker);
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    run_tasks(w->pool, w->id);
    return NULL;
}

vs_status vs_parallel_for(size_t n_tasks, size_t n_threads, void (*fn)(void *ctx, size_t task, size_t worker),
                          void *ctx, char err[VS_ERR_LEN])
{
    pool_t pool = {n_tasks, 0, fn, ctx};
    if (n_threads > n_tasks)
        n_threads = n_tasks;
    if (n_threads <= 1) {
        run_tasks(&pool, 0);
        return VS_OK;
    }
    pthread_t *th = malloc((n_threads - 1) * sizeof *th);
    worker_t *ws = malloc((n_threads - 1) * sizeof *ws);
    if (th == NULL || ws == NULL) {
        free(th);
        free(ws);
        return vs_errf(err, VS_ERR_NOMEM, "parallel_for: out of memory");
    }
    size_t started = 0;
    for (size_t i = 0; i + 1 < n_threads; i++) {
        ws[i] = (worker_t){&pool, i + 1};
        if (pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0)
            break;
        started++;
    }
    run_tasks(&pool, 0);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(ws);
    return VS_OK;
}

size_t vs_parallel_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

void vs_parallel_blas_single(void)
{
    /* cheap and idempotent; calling it on every search keeps it right even if something changed it */
    openblas_set_num_threads(1);
}
