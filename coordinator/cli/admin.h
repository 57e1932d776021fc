/* admin.h: the logic behind the `vecshard` admin CLI (coordinator/cli/main.c only dispatches and exits).
 *
 * What it does: parses and validates each subcommand's flags; runs the query load generator (each row of a
 * query file sent once, or the first --limit rows, in batches of B on C threads, each thread with its own
 * channel and a blocking call at a time, so the load is bounded and closed-loop); turns the per-call
 * outcomes into a report (failed calls by gRPC status, partial responses, recall@k against ground truth,
 * QPS, per-call latency percentiles, index versions seen); reads the cluster view from the coordinator's
 * Status or from the member records in etcd; prints all of it for people or as JSON for scripts.
 * What it does not: decide exit codes or print usage errors (main), retry calls (a failed call is counted,
 * never hidden), open-loop load at a fixed rate.
 * Key design choice: the network-free halves (parsing, statistics, decoding, rendering) are separate
 * functions that take plain data, so tests/unit/test_cli.c checks them without a coordinator. */
#ifndef VS_COORDINATOR_CLI_ADMIN_H
#define VS_COORDINATOR_CLI_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/filter.h"
#include "common/status.h"

#define VS_ADMIN_NAME_LEN 65  /* version, replica and cluster names: 1..64 bytes + NUL */
#define VS_ADMIN_ADDR_LEN 256 /* host:port */
#define VS_ADMIN_MSG_LEN 160  /* kept status messages */
#define VS_ADMIN_MAX_CONCURRENCY 8192 /* calls in flight (one thread, one completion queue) */
#define VS_ADMIN_MAX_BATCH 10000
#define VS_ADMIN_MAX_K 10000
#define VS_ADMIN_MAX_VERSIONS 16 /* distinct versions tallied per run / held per member; more are "other" */

/* ---- flags ---- */

typedef enum vs_admin_cmd {
    VS_ADMIN_QUERY = 1,
    VS_ADMIN_STATUS,
    VS_ADMIN_VERSIONS,
    VS_ADMIN_HEALTH,
} vs_admin_cmd;

/* Every subcommand's options; which flags a command accepts is in admin.c (one table). Strings are
 * borrowed from argv. */
typedef struct vs_admin_opts {
    vs_admin_cmd cmd;
    int help; /* --help was given: print vs_admin_usage(cmd) and exit 0; nothing else was checked */
    int json;
    const char *coordinator; /* host:port */
    const char *etcd;        /* etcd client URLs, comma-separated */
    const char *cluster;     /* default "default" */
    int cluster_given;       /* --cluster was on the command line (else versions finds the one in etcd) */
    const char *queries_path, *gt_path;
    const char *index_version, *model_version;
    const char *service; /* health: service name, default "" */
    uint32_t k;          /* default 10 */
    uint32_t nprobe, ef_search, quantizer_ef_search;
    float k_factor;
    size_t batch;       /* default 1 */
    size_t concurrency; /* default 1 */
    size_t limit;       /* 0 = every row of the query file */
    float min_coverage;
    int priority;       /* query: vs_priority (overload.h), default online */
    int64_t timeout_ms; /* per call; default 1000 (query), 5000 (others) */
    int64_t wait_ms;    /* health: keep polling until SERVING for this long; 0 = one check */
    double rate;        /* query: open loop at this many calls/s (Poisson arrivals); 0 = closed loop */
    const char *filter; /* query: attribute filter, common/filter.h text form (NULL = none; checked) */
    char group_by[VS_ATTR_NAME_MAX + 1]; /* query: group_by field ("" = none) */
    uint32_t group_size;                 /* at most this many results per value (1..k) */
} vs_admin_opts_t;

/* Open-loop schedule: n arrival times in seconds from the start, Poisson at rate calls/s (exponential
 * gaps), the same for the same seed; increasing. Latency of call i is measured from its arrival time, so a
 * saturated server cannot hide its queueing (no coordinated omission). */
void vs_admin_arrivals(size_t n, double rate, uint64_t seed, double *out);

/* Looks up a subcommand name ("query", "status", "versions", "health"); 0 when unknown. */
vs_admin_cmd vs_admin_cmd_parse(const char *name);

/* Parses argv (argv[0] is the subcommand name, as getopt expects) into *out with the defaults above and
 * checks it: numbers in range (k 1..10000, batch 1..10000, concurrency 1..256, limit >= 0, k_factor 0 or
 * 1..1000, nprobe and ef_search 0..65536, min_coverage 0..1, timeout_ms 1..3600000, wait_ms 0..3600000),
 * flags the command does not take, positional arguments, and the required ones (query: --coordinator and
 * --queries; status and health: --coordinator; versions: exactly one of --etcd and --coordinator).
 * VS_ERR_INVALID_ARGUMENT with a one-line reason in err. With --help, returns VS_OK at once with
 * out->help set. Not thread-safe (getopt). */
vs_status vs_admin_parse(vs_admin_cmd cmd, int argc, char **argv, vs_admin_opts_t *out, char err[VS_ERR_LEN]);

/* The help text of the tool (cmd 0) or of one subcommand. */
void vs_admin_usage(FILE *f, vs_admin_cmd cmd);

/* ---- statistics (pure) ---- */

/* Mean over nq queries of |ids[:at] & gt[:at]| / at: rows of ids have stride k_ids, rows of gt stride k_gt
 * (both >= at); negative ids never count; a gt id counts at most once. 0 when nq == 0 or at == 0. */
double vs_admin_recall(const int64_t *ids, size_t k_ids, const int64_t *gt, size_t k_gt, size_t nq,
                       size_t at);

/* Nearest-rank percentile of n ascending values: the smallest value with at least p% of the values at or
 * below it (p in 0..100; p = 0 gives the minimum). NAN when n == 0. */
double vs_admin_percentile(const double *sorted, size_t n, double p);

/* Outcome of one call: a gRPC status code 0..16, or one of these. */
enum {
    VS_ADMIN_OUTCOME_BAD_RESPONSE = 17, /* OK, but the response did not decode or did not match the request */
    VS_ADMIN_OUTCOME_CLIENT_ERROR = 18, /* the call could not be started */
    VS_ADMIN_N_OUTCOMES = 19,
};

/* "OK", "DEADLINE_EXCEEDED", ..., "BAD_RESPONSE", "CLIENT_ERROR"; "UNKNOWN" out of range. */
const char *vs_admin_outcome_name(int outcome);

/* What one call did (the load generator fills one per batch). */
typedef struct vs_admin_call {
    size_t row0;       /* first query row of the batch */
    uint32_t nq;       /* rows in the batch */
    int outcome;       /* see above */
    int partial;       /* response said coverage.partial */
    double latency_ms; /* call start to response, wall clock */
    char version[VS_ADMIN_NAME_LEN];
    char message[VS_ADMIN_MSG_LEN]; /* status details when not OK */
} vs_admin_call_t;

typedef struct vs_admin_version_count {
    char name[VS_ADMIN_NAME_LEN];
    size_t calls;
} vs_admin_version_count_t;

/* The report of a query run. */
typedef struct vs_admin_report {
    size_t calls, calls_failed;
    size_t queries_sent, queries_answered;
    size_t by_outcome[VS_ADMIN_N_OUTCOMES];                    /* failed calls by outcome ([0] = OK calls) */
    char first_message[VS_ADMIN_N_OUTCOMES][VS_ADMIN_MSG_LEN]; /* first failure message per outcome */
    size_t partial_responses;                                  /* OK calls with coverage.partial */
    int has_recall;                                            /* ground truth was given */
    uint32_t recall_at;                                        /* k */
    double recall;                                             /* over queries_answered */
    size_t ids_returned; /* with ground truth: ids answered (>= 0) over the rows recall counts */
    double seconds, qps; /* qps = queries_answered / seconds */
    double lat_mean_ms, lat_p50_ms, lat_p95_ms, lat_p99_ms, lat_max_ms; /* every call; NAN if none */
    size_t calls_shed;                   /* failed calls refused for overload (RESOURCE_EXHAUSTED) */
    double ok_lat_p50_ms, ok_lat_p99_ms; /* answered calls only (the latency an SLO counts); NAN if none */
    vs_admin_version_count_t versions[VS_ADMIN_MAX_VERSIONS]; /* answering versions, first seen first */
    size_t n_versions, calls_other_versions;
} vs_admin_report_t;

/* Builds the report from n_calls outcomes. ids: n_rows*k ids filled for answered rows; gt: n_rows rows of
 * gt_dim ids (NULL = no recall; gt_dim >= k); seconds: wall time of the run. Recall is over the rows of
 * OK calls only. VS_ERR_NOMEM, else VS_OK. */
vs_status vs_admin_report_build(const vs_admin_call_t *calls, size_t n_calls, const int64_t *ids,
                                size_t n_rows, uint32_t k, const int64_t *gt, uint32_t gt_dim, double seconds,
                                vs_admin_report_t *out, char err[VS_ERR_LEN]);

/* Prints the report (human lines, or one JSON object and a newline). o gives the run's parameters. */
void vs_admin_report_print(FILE *f, const vs_admin_opts_t *o, const vs_admin_report_t *r, int json);

/* Prints a cJSON object as one line (taken: deleted after), or {"error":"out of memory"}. */
struct cJSON;
void vs_admin_print_json(FILE *f, struct cJSON *o);

/* ---- the load generator (network) ---- */

/* Runs `vecshard query`: reads the query file (and --gt), sends the rows as described above to
 * vecshard.v1.Coordinator/Search with the options' k, params, versions, min_coverage and per-call
 * deadline, and fills *out. The ground truth is .ivecs (base rows, vecshard-gt) or .npy int64 (the items'
 * own ids, vecshard-gt --ids). Call failures are counted in the report, not returned: the status is
 * VS_ERR_NOT_FOUND / VS_ERR_IO / VS_ERR_CORRUPT for unreadable files, VS_ERR_INVALID_ARGUMENT when the
 * ground truth has fewer rows than the queries sent or fewer than k columns, VS_ERR_FAILED_PRECONDITION
 * when the ground truth and the answers share no id at all over 10 or more answered queries (ids of
 * another kind: base rows against the items' own ids; *out is filled all the same), VS_ERR_NOMEM, or a
 * channel error. */
vs_status vs_admin_query_run(const vs_admin_opts_t *o, vs_admin_report_t *out, char err[VS_ERR_LEN]);

/* ---- cluster view ---- */

typedef struct vs_admin_held {
    char name[VS_ADMIN_NAME_LEN];
    char state[16];    /* READY, LOADING, FAILED; "" when the source does not say (coordinator Status) */
    int64_t n_vectors; /* -1 unknown */
    char error[VS_ADMIN_MSG_LEN];
    int64_t partitions; /* the version's partition count as the replica reports it; -1 unknown */
} vs_admin_held_t;

typedef struct vs_admin_member {
    uint32_t partition;
    char replica_id[VS_ADMIN_NAME_LEN];
    char address[VS_ADMIN_ADDR_LEN];
    char state[16]; /* LOADING, SERVING, DRAINING (or what the coordinator says) */
    char active_version[VS_ADMIN_NAME_LEN];
    vs_admin_held_t held[VS_ADMIN_MAX_VERSIONS];
    size_t n_held;
    int has_load; /* latency_ewma_ms and outstanding are known (coordinator Status) */
    double latency_ewma_ms;
    uint64_t outstanding;
    char zone[VS_ADMIN_NAME_LEN]; /* "" = not given */
} vs_admin_member_t;

typedef struct vs_admin_cluster {
    char source[16]; /* "coordinator" or "etcd" */
    char cluster[VS_ADMIN_NAME_LEN];
    char active_version[VS_ADMIN_NAME_LEN]; /* coordinator only */
    int etcd_connected;                     /* coordinator only */
    vs_admin_member_t *members;             /* owned; sorted by partition, then replica id */
    size_t n_members;
} vs_admin_cluster_t;

/* Frees members and zeroes *c. Safe on a zeroed struct. */
void vs_admin_cluster_fini(vs_admin_cluster_t *c);

/* Decodes a vecshard.v1.StatusResponse. VS_ERR_CORRUPT for bytes that do not decode. */
vs_status vs_admin_status_decode(const uint8_t *body, size_t len, vs_admin_cluster_t *out,
                                 char err[VS_ERR_LEN]);

/* Parses one member record (docs/protocol.md: etcd key /vecshard/<cluster>/members/<p>/<id>). Fields
 * missing from the record keep what *out held (callers preset partition and replica id from the key).
 * VS_ERR_CORRUPT for text that is not a JSON object. */
vs_status vs_admin_member_parse(const char *json, size_t len, vs_admin_member_t *out, char err[VS_ERR_LEN]);

/* Calls Coordinator/Status (deadline timeout_ms). Non-OK gRPC status -> VS_ERR_UNAVAILABLE with the code
 * name and message in err. */
vs_status vs_admin_status_fetch(const char *coordinator, int64_t timeout_ms, vs_admin_cluster_t *out,
                                char err[VS_ERR_LEN]);

/* Reads every member record of cluster from etcd (endpoints: comma-separated URLs). Records that do not
 * parse are skipped with a warning on stderr. */
/* The cluster names under /vecshard/ in etcd: when exactly one exists it is written to out (65 bytes);
 * none -> "default"; several -> VS_ERR_INVALID_ARGUMENT naming them ("give --cluster"). */
vs_status vs_admin_find_cluster(const char *endpoints, int64_t timeout_ms, char out[65],
                                char err[VS_ERR_LEN]);

vs_status vs_admin_members_from_etcd(const char *endpoints, const char *cluster, int64_t timeout_ms,
                                     vs_admin_cluster_t *out, char err[VS_ERR_LEN]);

/* One version across the members that hold it. */
typedef struct vs_admin_version_summary {
    char name[VS_ADMIN_NAME_LEN];
    size_t replicas, ready, loading, failed;  /* members holding it, by state ("" counts as ready) */
    size_t active_on;                         /* members whose active version it is */
    size_t partitions_ready, partitions_seen; /* partitions with a ready replica / the version's partition
                                                 count (as replicas report it; else partitions in the view) */
    int64_t n_vectors;                        /* sum over partitions of a ready replica's count; -1 unknown */
} vs_admin_version_summary_t;

/* Summarises the versions of a view, in name order; at most cap are written, *out_n gets how many
 * versions exist. */
void vs_admin_versions_summarise(const vs_admin_cluster_t *c, vs_admin_version_summary_t *out, size_t cap,
                                 size_t *out_n);

/* Printers for `status` and `versions`. */
void vs_admin_status_print(FILE *f, const vs_admin_cluster_t *c, int json);
void vs_admin_versions_print(FILE *f, const vs_admin_cluster_t *c, int json);

/* grpc.health.v1.Health/Check of service on target: *out_status gets the health status (1 SERVING,
 * 2 NOT_SERVING, ...), or -code for a call that ended with gRPC status code (e.g. -14 UNAVAILABLE). */
vs_status vs_admin_health_check(const char *target, const char *service, int64_t timeout_ms, int *out_status,
                                char err[VS_ERR_LEN]);

/* Prints a health result: "SERVING", or "NOT_SERVING: detail"; JSON {target, service, status, detail}. */
void vs_admin_health_print(FILE *f, const char *target, const char *service, const char *status,
                           const char *detail, int json);

#endif
