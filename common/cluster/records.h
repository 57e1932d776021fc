/* records.h: the JSON records of the cluster protocol in etcd, one encoder and one decoder each
 * (docs/protocol.md): the member record a shard keeps under its lease, the version record the admin
 * CLI writes per deployed version, the active pointer, and the audit record of an operator command.
 *
 * Decoders are strict where acting on a wrong value would be a bug (names, partition numbers, states
 * are checked and a malformed record is VS_ERR_CORRUPT naming the field) and lenient where the protocol
 * grew (a field added later may be missing: it reads as 0 or ""). Fields are only ever added, never
 * renamed or reused (the compatibility rule, docs/protocol.md). Records are small: decoders refuse
 * more than VS_RECORD_MAX_BYTES. Not here: the keys (keys.h) or talking to etcd. */
#ifndef VS_COMMON_CLUSTER_RECORDS_H
#define VS_COMMON_CLUSTER_RECORDS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster/keys.h"
#include "common/status.h"

#define VS_RECORD_MAX_BYTES (64u << 10)
#define VS_MEMBER_MAX_VERSIONS 16
#define VS_RECORD_NAME_LEN 128
#define VS_RECORD_ERROR_LEN 256
#define VS_CONTENT_ID_LEN 24 /* "crc32c:xxxxxxxx:xxxxxxxx" fits; 64-bit hex ids are 16 */

/* One version as a replica holds it. state: "LOADING", "VERIFYING", "READY", "FAILED", "UNLOADING". */
typedef struct vs_member_version {
    char version[VS_RECORD_NAME_LEN];
    char state[16];
    char error[VS_RECORD_ERROR_LEN]; /* FAILED: why */
    uint64_t n_vectors;
    char content_id[VS_CONTENT_ID_LEN + 1]; /* of the partition file it loaded ("" = not reported) */
    /* what the version is, once READY (0 / "" when not reported): the admin CLI's activation guards
     * compare a bootstrapped version (one with no version record) through these */
    uint32_t dim;
    char metric[16];
    char model_version[VS_RECORD_NAME_LEN];
    char partitioning[16];
    uint32_t partitions;
    /* since 0.5: ids written since the version was built, in percent of the replica's fresh capacity
     * (rounded down; 0 = none or not reported): the coordinator refuses writes near full */
    uint32_t fresh_fill_pct;
} vs_member_version_t;

/* /vecshard/<c>/members/<p>/<replica>: what a replica is and holds. state: "LOADING", "SERVING",
 * "DRAINING". instance_id is new per process start (unique-replica-id registration). */
/* A failure zone's name (shard --zone, coordinator --zone): 1-64 of [A-Za-z0-9._-]. */
#define VS_ZONE_MAX 64

typedef struct vs_member_rec {
    char address[256];
    uint32_t partition;
    char replica_id[VS_REPLICA_ID_MAX + 1];
    char instance_id[64];
    char state[16];
    char active_version[VS_RECORD_NAME_LEN];
    vs_member_version_t versions[VS_MEMBER_MAX_VERSIONS];
    size_t n_versions;
    char started_at[32];
    /* since 0.2, for admission by bytes (0 = not reported): what the process may use, what it uses now,
     * and the version slots it has left */
    uint64_t memory_limit_bytes, rss_bytes;
    uint32_t free_slots;
    int has_free_slots;
    char zone[VS_ZONE_MAX + 1]; /* since 0.9: the replica's failure zone ("" = not given) */
} vs_member_rec_t;

/* /vecshard/<c>/versions/<v>: a deployed version. state: lifecycle.h's vs_cver names ("staged",
 * "active", "previous", "retired", "failed"). dim, metric, partitioning and content_id are copied from
 * the manifest at deploy (0 / "" in records written before they existed). */
typedef struct vs_version_rec {
    char version[VS_RECORD_NAME_LEN];
    char manifest[PATH_MAX]; /* absolute path, as every shard and coordinator sees it */
    char model_version[VS_RECORD_NAME_LEN];
    uint32_t partitions;
    char state[16];
    char staged_at[32];
    uint32_t dim;
    char metric[16];
    char partitioning[16];
    char content_id[VS_CONTENT_ID_LEN + 1];
    char reason[VS_RECORD_ERROR_LEN]; /* failed: why */
} vs_version_rec_t;

/* /vecshard/<c>/active. */
typedef struct vs_active_rec {
    char version[VS_RECORD_NAME_LEN];
    char previous[VS_RECORD_NAME_LEN]; /* "" = none */
    char activated_at[32];
} vs_active_rec_t;

/* /vecshard/<c>/audit/<ms>-<seq>: who did what, when. */
typedef struct vs_audit_rec {
    char who[128];    /* user@host of the command */
    char at[32];      /* ISO 8601 UTC */
    char command[32]; /* deploy, activate, rollback, retire, remove */
    char version[VS_RECORD_NAME_LEN];
    char detail[VS_RECORD_ERROR_LEN]; /* the command's outcome */
} vs_audit_rec_t;

/* Encoders: a malloc'd NUL-terminated compact JSON text in *out (free with free()); VS_ERR_NOMEM. */
vs_status vs_member_rec_encode(const vs_member_rec_t *r, char **out, char err[VS_ERR_LEN]);
vs_status vs_version_rec_encode(const vs_version_rec_t *r, char **out, char err[VS_ERR_LEN]);
vs_status vs_active_rec_encode(const vs_active_rec_t *r, char **out, char err[VS_ERR_LEN]);
vs_status vs_audit_rec_encode(const vs_audit_rec_t *r, char **out, char err[VS_ERR_LEN]);

/* Decoders: json is len bytes (not NUL-terminated); *out is filled only on VS_OK. VS_ERR_CORRUPT names
 * the first bad field. A member record needs address, partition (0..65535), replica_id and a known
 * state; a version record needs a valid version name, manifest and a known state; the active pointer a
 * valid version name (previous may be ""). */
vs_status vs_member_rec_decode(const char *json, size_t len, vs_member_rec_t *out, char err[VS_ERR_LEN]);
vs_status vs_version_rec_decode(const char *json, size_t len, vs_version_rec_t *out, char err[VS_ERR_LEN]);
vs_status vs_active_rec_decode(const char *json, size_t len, vs_active_rec_t *out, char err[VS_ERR_LEN]);
vs_status vs_audit_rec_decode(const char *json, size_t len, vs_audit_rec_t *out, char err[VS_ERR_LEN]);

/* The member's copy of version, or NULL. */
const vs_member_version_t *vs_member_rec_find(const vs_member_rec_t *r, const char *version);

/* The rule "which replicas may serve version V of partition p": the member is in partition p, SERVING
 * (not LOADING, not DRAINING), holds V READY, and - when expected_content_id is non-empty and the
 * member reports one - reports that content id. 1 or 0. */
int vs_member_may_serve(const vs_member_rec_t *r, const char *version, uint32_t partition,
                        const char *expected_content_id);

/* The rule activation counts replicas by: as vs_member_may_serve, but a replica that is still LOADING
 * (serves no version yet: a new cluster's first activation) counts too; DRAINING never does. */
int vs_member_holds_ready(const vs_member_rec_t *r, const char *version, uint32_t partition,
                          const char *expected_content_id);

#endif
