/* keys.h: the etcd key schema of a vecshard cluster, the only place a key string is built or taken
 * apart (docs/protocol.md, "etcd keys").
 *
 *   /vecshard/<cluster>/members/<partition>/<replica-id>   member record, under the replica's lease
 *   /vecshard/<cluster>/versions/<version>                 version record (records.h)
 *   /vecshard/<cluster>/active                             active pointer {version, previous}
 *   /vecshard/<cluster>/audit/<unix-ms>-<seq>              audit record of an operator command
 *
 * Names are checked with vs_cluster_name_valid before they reach a key: cluster and version names are
 * [A-Za-z0-9._-]{1,64}, replica ids the same up to 128 bytes, so every key fits VS_KEY_LEN and no name
 * can forge a key of another kind ("/" is not allowed in a name). Not here: talking to etcd
 * (common/net/etcd.h). */
#ifndef VS_COMMON_CLUSTER_KEYS_H
#define VS_COMMON_CLUSTER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define VS_KEY_LEN 512
#define VS_REPLICA_ID_MAX 128 /* bytes, without the NUL */

/* 1 when name is [A-Za-z0-9._-], 1..max_len bytes, not "." or "..". */
int vs_cluster_name_valid(const char *name, size_t max_len);

/* Each writes the key (NUL-terminated) into out and returns its length. The names must be valid
 * (vs_cluster_name_valid); an invalid one gives an empty key (length 0), which no caller sends. */
size_t vs_key_root(char out[VS_KEY_LEN], const char *cluster); /* "/vecshard/<c>/" */
size_t vs_key_members_prefix(char out[VS_KEY_LEN], const char *cluster);
size_t vs_key_member(char out[VS_KEY_LEN], const char *cluster, uint32_t partition, const char *replica_id);
size_t vs_key_versions_prefix(char out[VS_KEY_LEN], const char *cluster);
size_t vs_key_version(char out[VS_KEY_LEN], const char *cluster, const char *version);
size_t vs_key_active(char out[VS_KEY_LEN], const char *cluster);
size_t vs_key_audit_prefix(char out[VS_KEY_LEN], const char *cluster);
/* Audit keys sort by time: the milliseconds are zero-padded to 15 digits. */
size_t vs_key_audit(char out[VS_KEY_LEN], const char *cluster, uint64_t unix_ms, uint32_t seq);

/* Kind of a key under the cluster's root. */
typedef enum vs_key_kind {
    VS_KEY_OTHER = 0, /* not one of ours (or malformed) */
    VS_KEY_MEMBER,
    VS_KEY_VERSION,
    VS_KEY_ACTIVE,
    VS_KEY_AUDIT,
} vs_key_kind;

/* Takes a key apart (key is klen bytes, not NUL-terminated). For a member key *out_partition and
 * out_name (the replica id) are set; for a version key out_name is the version. Either output may be
 * NULL. A key of the right prefix with a malformed rest is VS_KEY_OTHER. */
vs_key_kind vs_key_parse(const char *cluster, const char *key, size_t klen, uint32_t *out_partition,
                         char out_name[VS_REPLICA_ID_MAX + 1]);

#endif
