/* shard.h: what a shard process does, without the network: hold index versions (one partition each),
 * switch the active one, and answer vecshard.v1.Shard requests given as protobuf bytes.
 *
 * The RPC server (shard/server/main.c) is a thin wrapper: it hands request bytes to vs_shard_search_pb
 * and sends back the bytes or the status. Everything a request can get wrong is decided here, so the
 * unit tests, the fuzz target and the server see the same behaviour.
 *
 * Versions: a shard holds up to VS_SHARD_MAX_VERSIONS versions at once (a rolling deploy needs the old
 * and the new). Each is LOADING, READY or FAILED (with the reason); searches hold a reference, so
 * unloading a version waits for nobody: its memory goes when the last search using it returns.
 * Lifecycle (docs/protocol.md): LOADING (no active version yet) -> SERVING -> DRAINING.
 * Threads: searches split a batch over threads only when the batch is large and few calls are in
 * flight, so request threads times search threads stay near the CPU count; OpenBLAS runs single-threaded. */
#ifndef VS_SHARD_SERVER_SHARD_H
#define VS_SHARD_SERVER_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "shard/index/index.h"
#include "common/cluster/manifest.h"
#include "shard/index/fresh.h"
#include "shard/server/applier.h"

#define VS_SHARD_MAX_VERSIONS 8
#define VS_SHARD_DEFAULT_MAX_BATCH 10000u
#define VS_SHARD_MAX_EF_SEARCH 65536u
#define VS_SHARD_MAX_K_FACTOR 1000.0f

typedef enum vs_shard_state {
    VS_SHARD_LOADING = 1,
    VS_SHARD_SERVING = 2,
    VS_SHARD_DRAINING = 3,
} vs_shard_state;

typedef enum vs_version_state {
    VS_VERSION_LOADING = 1,
    VS_VERSION_READY = 2,
    VS_VERSION_FAILED = 3,
} vs_version_state;

/* Stages of a Search, timed for vecshard_shard_stage_seconds{stage}. */
typedef enum vs_shard_stage {
    VS_SHARD_STAGE_DECODE, /* unpack, version lookup, validation */
    VS_SHARD_STAGE_SEARCH, /* the index search */
    VS_SHARD_STAGE_ENCODE, /* the response */
    VS_SHARD_STAGE_N
} vs_shard_stage;

extern const char *const vs_shard_stage_names[VS_SHARD_STAGE_N]; /* "decode", "search", "encode" */

typedef struct vs_shard_opts {
    const char *cluster;     /* copied; "" allowed */
    const char *replica_id;  /* copied */
    const char *address;     /* copied: the address clients use (for Info) */
    size_t n_cpus;           /* cores searches may use; 0 = all online */
    size_t max_batch;        /* queries per request; 0 = VS_SHARD_DEFAULT_MAX_BATCH */
    int skip_crc;            /* 1 = do not check the partition file's CRC32C against the manifest */
    const char *instance_id; /* copied: unique per process start (Info, the member record); NULL = "" */
    double slow_request_ms;  /* > 0: log searches slower than this, with the request ids they carry */
    /* Called with each stage's duration of every search that got that far (any thread); NULL = none. */
    void (*on_stage)(void *user, vs_shard_stage stage, double seconds);
    void *stage_user;
    size_t fresh_capacity; /* > 0: IVF versions take writes from the log (ids per version); 0 = off */
    int refine_on_disk;    /* 1: IVF refine copies stay in the file, read per query (vs_index_load_opts) */
} vs_shard_opts_t;

typedef struct vs_shard vs_shard_t;

vs_status vs_shard_create(const vs_shard_opts_t *opts, vs_shard_t **out, char err[VS_ERR_LEN]);
/* Frees every version. No search may be running (stop the server first). NULL is a no-op. */
void vs_shard_destroy(vs_shard_t *sh);

/* Loads partition `partition` of the version described by the manifest at manifest_path: checks the
 * file's size and CRC32C against the manifest, opens it (mmap, validated), and checks metric and dim
 * against the manifest. Blocking; the version shows as LOADING meanwhile and as FAILED with the reason
 * afterwards if anything is wrong (the other versions are untouched and keep serving). Loading a version
 * that is READY again is VS_ERR_ALREADY_EXISTS. out_version (may be NULL) receives the version's name
 * once the manifest is read, also when the load then fails. Thread-safe. */
vs_status vs_shard_load(vs_shard_t *sh, const char *manifest_path, uint32_t partition,
                        char out_version[VS_NAME_LEN], char err[VS_ERR_LEN]);

/* What vs_shard_load checks and opens, with no shard: partition p of the loaded manifest m, its file's
 * size and content id (or whole-file CRC32C for older manifests; skip_crc = 1 skips that pass) checked
 * against the manifest, then the index (mmap, every section verified) against its trained state, factory,
 * metric, dim and vector count. *out (vs_index_destroy) on success; VS_ERR_NOT_FOUND / VS_ERR_IO /
 * VS_ERR_CORRUPT naming the file otherwise. Used by the batch-neighbours run (coordinator/nbrs/). */
vs_status vs_shard_open_partition(const vs_manifest_t *m, uint32_t p, int skip_crc, int refine_on_disk,
                                  vs_index_t **out, char err[VS_ERR_LEN]);

/* One pass of the disk tier's scrub: every READY version whose refine section was left on disk and was not
 * verified in the last every_s seconds has it read and checked against its CRC32C (vs_index_verify_lazy,
 * at most bytes_per_s). A version whose section fails is marked FAILED (it stops answering; the reason is
 * in Info), never served with wrong vectors; an I/O error is counted and retried at the next pass. *stop
 * ends it early. Returns the versions verified by this pass. Blocking: run it on a thread of its own. */
size_t vs_shard_scrub(vs_shard_t *sh, double bytes_per_s, double every_s, const volatile int *stop);

/* Refine reads from disk so far, every version loaded since the start (unloaded ones included). */
struct vs_refine_disk_stats;
void vs_shard_refine_disk_totals(vs_shard_t *sh, struct vs_refine_disk_stats *out);

/* The scrub's counts so far: passes that found a section bad, I/O errors, sections verified. */
void vs_shard_scrub_counts(vs_shard_t *sh, uint64_t *failed, uint64_t *errors, uint64_t *verified);

/* Adds an index built in memory as READY version `version`, partition `partition` (tests, fuzzing).
 * Takes idx (destroyed with the version, also on failure). */
vs_status vs_shard_add_index(vs_shard_t *sh, const char *version, uint32_t partition, vs_index_t *idx,
                             char err[VS_ERR_LEN]);

/* Drops a version (searches running on it finish first). VS_ERR_NOT_FOUND; VS_ERR_FAILED_PRECONDITION
 * for the active version. */
vs_status vs_shard_unload(vs_shard_t *sh, const char *version, char err[VS_ERR_LEN]);

/* Makes a READY version the one answering requests that name no version. The shard becomes SERVING
 * (unless draining). VS_ERR_NOT_FOUND, VS_ERR_FAILED_PRECONDITION (not READY). */
vs_status vs_shard_activate(vs_shard_t *sh, const char *version, char err[VS_ERR_LEN]);

/* Sets the address Info reports (known once the server has bound its port); copied. */
void vs_shard_set_address(vs_shard_t *sh, const char *address);

vs_shard_state vs_shard_get_state(const vs_shard_t *sh);
/* Enters DRAINING (irreversible). Health and the membership record say so, so that coordinators stop
 * sending; requests that still arrive are answered normally: a rolling restart fails no query. */
void vs_shard_drain(vs_shard_t *sh);
const char *vs_shard_state_name(vs_shard_state s); /* "LOADING", "SERVING", "DRAINING" */
const char *vs_version_state_name(vs_version_state s);

/* Default --max-queue-ms: a Search that waited longer for a worker is refused (docs/reliability.md). */
#define VS_SHARD_DEFAULT_MAX_QUEUE_MS 50
/* ShardSearchRequest.priority's field number (read before the request is decoded). */
#define VS_SHARD_SEARCH_PRIORITY_FIELD 15

/* Answers a vecshard.v1.ShardSearchRequest (req, len bytes): on VS_OK *out (malloc'd) holds a
 * ShardSearchResponse. Otherwise err says what is wrong and the status maps to the gRPC code
 * (vs_status_grpc_code): INVALID_ARGUMENT (malformed message, wrong dim, NaN/Inf, k or params out of
 * range, empty or oversized batch), OUT_OF_RANGE (list ids), NOT_FOUND (version or partition not held),
 * UNAVAILABLE (no active version yet), FAILED_PRECONDITION (version failed to load). Thread-safe. */
vs_status vs_shard_search_pb(vs_shard_t *sh, const uint8_t *req, size_t len, uint8_t **out, size_t *out_len,
                             char err[VS_ERR_LEN]);
/* The same, waiting for a request's min_log_seq at most max_wait_ms (the call's remaining deadline;
 * vs_shard_search_pb waits up to VS_SHARD_RYW_WAIT_MS). */
vs_status vs_shard_search_pb_within(vs_shard_t *sh, const uint8_t *req, size_t len, int64_t max_wait_ms,
                                    uint8_t **out, size_t *out_len, char err[VS_ERR_LEN]);

/* Answers vecshard.v1.Shard/Info (the request has no fields; any bytes that parse are accepted). */
vs_status vs_shard_info_pb(vs_shard_t *sh, const uint8_t *req, size_t len, uint8_t **out, size_t *out_len,
                           char err[VS_ERR_LEN]);

/* One loaded version, as the membership record and metrics show it. */
typedef struct vs_shard_version_info {
    char version[128];
    uint32_t partition;
    vs_version_state state;
    char error[VS_ERR_LEN];
    uint64_t n_vectors;
    uint64_t mapped_bytes;
    uint64_t memory_bytes;
    /* what the version is (READY only; 0 / "" otherwise): a coordinator or the admin CLI compares it
     * with another version before switching (activation guards) */
    uint32_t dim;
    char metric[16];
    char model_version[128];
    char partitioning[16];
    uint32_t partitions_total;
    char content_id[17];     /* of the loaded partition file (vs_index_ids; "" when built in memory) */
    uint32_t fresh_fill_pct; /* ids written since the version / fresh capacity, percent rounded down */
    /* refine on disk (READY IVF versions loaded so): 1, and whether the scrub verified it */
    int refine_on_disk, refine_verified;
} vs_shard_version_info_t;

/* Copies up to cap version records into out; returns how many there are. *active gets the active
 * version name ("" if none; 128 bytes). */
size_t vs_shard_versions(vs_shard_t *sh, vs_shard_version_info_t *out, size_t cap, char active[128]);

/* Read-your-writes (ShardSearchRequest.min_log_seq): how long a search waits for the write log. */
#define VS_SHARD_RYW_WAIT_MS 1000

/* ---- fresh writes (opts.fresh_capacity > 0; shard/index/fresh.h, shard/server/applier.h) ---- */

/* The next write-log sequence version expects: the one after its manifest's log_upto, then one more per
 * message applied. 0 when the version takes no writes (not READY, not IVF, writes off, or unknown). */
uint64_t vs_shard_log_next(vs_shard_t *sh, const char *version);

/* Applies log message seq (msg, len bytes) to version. seq must be vs_shard_log_next's (an older one is
 * ignored: VS_OK; a later one is VS_ERR_FAILED_PRECONDITION, a gap). A malformed message is counted,
 * skipped (the position moves on) and reported as VS_ERR_CORRUPT; VS_ERR_RESOURCE_EXHAUSTED when the
 * fresh state is full (the position stays: a version folding the log must replace this one);
 * VS_ERR_NOT_FOUND. One applier per version at a time; searches run meanwhile. */
vs_status vs_shard_apply_log(vs_shard_t *sh, const char *version, uint64_t seq, const uint8_t *msg,
                             size_t len, char err[VS_ERR_LEN]);

/* A version whose log cannot be followed (a gap: writes it needs are gone) stops serving: FAILED with
 * the reason, so coordinators route around it instead of serving a partition with writes missing. */
void vs_shard_log_failed(vs_shard_t *sh, const char *version, const char *reason);

/* The follower's latest word on how many log messages wait after the version's position (its lag). */
void vs_shard_set_log_pending(vs_shard_t *sh, const char *version, uint64_t pending);

typedef struct vs_shard_fresh_info {
    uint64_t log_next;
    uint64_t log_pending; /* messages after it in the stream, as the follower last heard */
    vs_fresh_stats_t fresh;
    vs_applier_counts_t counts;
} vs_shard_fresh_info_t;

/* The version's write counts (VS_ERR_NOT_FOUND, VS_ERR_FAILED_PRECONDITION when it takes no writes). */
vs_status vs_shard_fresh_info(vs_shard_t *sh, const char *version, vs_shard_fresh_info_t *out,
                              char err[VS_ERR_LEN]);

/* The active version's write counts; VS_ERR_FAILED_PRECONDITION when there is no active version taking
 * writes. */
vs_status vs_shard_active_fresh_info(vs_shard_t *sh, vs_shard_fresh_info_t *out, char err[VS_ERR_LEN]);

/* Log messages applied and rejected (malformed) since the process started, all versions. */
void vs_shard_log_totals(vs_shard_t *sh, uint64_t *applied, uint64_t *rejected);

/* Searches currently running. */
size_t vs_shard_in_flight(const vs_shard_t *sh);

#endif
