/* parallel.h: a minimal parallel-for for the indexes' batched work (search, build). Threads are
 * created per call and joined before it returns, so no thread outlives a call and nothing runs in the
 * background; tasks are handed out through an atomic counter (dynamic scheduling). With n_threads <= 1
 * or a single task everything runs inline on the caller's thread.
 *
 * OpenBLAS: indexes do their own threading, so vs_parallel_blas_single() puts OpenBLAS in
 * single-threaded mode once per process; threads and BLAS threads then never oversubscribe cores. */
#ifndef VS_COMMON_PARALLEL_H
#define VS_COMMON_PARALLEL_H

#include <stddef.h>

#include "common/status.h"

/* fn(ctx, task, worker) for every task in [0, n_tasks); worker in [0, n_threads) identifies the
 * thread, for per-thread scratch. The caller's thread is worker 0 and always takes part, so when the
 * OS refuses extra threads the ones started (at least the caller) do all the work. VS_ERR_NOMEM only. */
vs_status vs_parallel_for(size_t n_tasks, size_t n_threads, void (*fn)(void *ctx, size_t task, size_t worker),
                          void *ctx, char err[VS_ERR_LEN]);

/* Number of online CPUs (>= 1). */
size_t vs_parallel_cpus(void);

/* Sets OpenBLAS to one thread (idempotent, thread-safe). */
void vs_parallel_blas_single(void);

#endif
