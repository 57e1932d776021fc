/* run.h: `vecshard batch`, offline batch neighbours into Redis (issue 16; docs/operations.md, "Batch
 * neighbours"). Reads keyed query embeddings, searches an index version for each query's top-K (in process
 * over the version's partition files, multi-query kernels on every core), writes `key -> top-K` into Redis
 * as result set <set> under a prefix (value.h), block by block with the progress recorded in Redis after
 * each block, and when every key is written makes the set current in one transaction and deletes the sets
 * beyond the newest `keep`. Or through a running cluster (remote.h): Search calls to a coordinator, pinned to
 * one version, full coverage required.
 *
 * A run is named by its set; the set records a fingerprint of the run's inputs (the version's content id,
 * the queries' and keys' bytes, k, parameters, format). Rerunning the same command after a crash resumes
 * after the last recorded block and writes exactly what an uninterrupted run writes (searches are
 * deterministic and independent of block boundaries and threads); rerunning a finished run changes nothing
 * (or makes its set current again if another took its place). Any Redis failure stops the run with Redis's
 * error; the current set is only ever changed by the final switch script (store.h). */
#ifndef VS_COORDINATOR_NBRS_RUN_H
#define VS_COORDINATOR_NBRS_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/factory.h"
#include "common/status.h"
#include "coordinator/nbrs/value.h"

typedef struct vs_nbrs_opts {
    const char *manifest;             /* the version, searched in process; or */
    const char *coordinator;          /* a coordinator to search through (one of the two) */
    const char *index_version;        /* with coordinator: the version (NULL = the active one) */
    size_t concurrency, call_queries; /* with coordinator: calls in flight, queries per call */
    const char *queries;              /* .fvecs / .npy float32 (required) */
    const char *keys;                 /* text (one key per line) or .npy int64/int32; NULL = row numbers */
    const char *redis;                /* host:port */
    const char *redis_user, *redis_password; /* password: from the environment, never a flag */
    const char *prefix;
    const char *set;  /* NULL = <version>.<fingerprint, 8 hex digits> */
    const char *drop; /* drop this set and exit */
    size_t k, keep, block, threads;
    int timeout_ms;
    vs_search_params_t params; /* non-zero fields override the version's defaults */
    vs_nbrs_format format;
    int json, quiet, force;   /* force: --drop a set still being written */
    size_t stop_after_blocks; /* test hook (VS_NBRS_TEST_STOP_AFTER): SIGSTOP before the replies of the
                                 block after this many; 0 = off */
} vs_nbrs_opts_t;

/* What a run did (printed by vs_nbrs_report). */
typedef struct vs_nbrs_result {
    char set[VS_NBRS_MAX_NAME + 1], version[128], fingerprint[17];
    uint64_t n_keys, resumed_from, written;
    int already_complete, switched;
    size_t expired_sets, expired_keys;
    double seconds, cpu_seconds, search_seconds, write_seconds;
    uint64_t key_bytes_estimate, redis_used_before, redis_used_after, redis_max;
    vs_search_params_t params;
} vs_nbrs_result_t;

/* Sets the defaults: redis 127.0.0.1:6379, prefix "vs:nbrs", k 100, keep 2, block 4096, timeout 30 s,
 * concurrency 4, 256 queries per call. */
void vs_nbrs_opts_init(vs_nbrs_opts_t *o);

/* Parses argv (after "batch") into o. 0 = go, 1 = --help printed, 2 = usage error (printed). */
int vs_nbrs_parse_args(int argc, char **argv, vs_nbrs_opts_t *o);

/* The run (or the drop). Statuses: the inputs' (VS_ERR_INVALID_ARGUMENT / NOT_FOUND / CORRUPT naming the
 * file and row), Redis's (UNAVAILABLE when unreachable or lost, RESOURCE_EXHAUSTED when full or when the
 * set would not fit under maxmemory, ALREADY_EXISTS when another run holds the set name). */
vs_status vs_nbrs_run(const vs_nbrs_opts_t *o, vs_nbrs_result_t *out, char err[VS_ERR_LEN]);

void vs_nbrs_report(FILE *f, const vs_nbrs_result_t *r, int json);

/* `vecshard batch` as a whole: parse, run, report; the exit status (0 ok, 1 failed, 2 usage). */
int vs_nbrs_main(int argc, char **argv);

#endif
