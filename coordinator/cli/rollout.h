/* rollout.h: the operator commands that change which index versions a cluster holds and serves
 * (docs/protocol.md, "Rollout"): deploy, activate, rollback, retire, remove. Every key, record and
 * state transition comes from the protocol module (common/cluster/): this file only reads etcd,
 * decides with those pure functions, and writes in one transaction.
 *
 * Safety rules enforced here (issue 13):
 * - deploy refuses a known version name whose content id differs (a rebuild under the same name would
 *   fork the cluster);
 * - activate and rollback refuse a version whose dimension, metric, partitioning, partition count or
 *   embedding model differs from the active one, naming each difference, unless force is set (an
 *   intended model change); they also need min_ready replicas per partition with the version READY;
 * - retire and remove never touch the active version; remove deletes the record so shards free the
 *   slot and the name can be deployed again;
 * - a cluster bootstrapped with --manifest (no active key yet) knows its active version from the
 *   member records, so the first activation records it as previous and rollback works;
 * - every command that changed something leaves an audit record (/vecshard/<c>/audit/...). */
#ifndef VS_COORDINATOR_CLI_ROLLOUT_H
#define VS_COORDINATOR_CLI_ROLLOUT_H

#include <stddef.h>

#include "common/net/etcd.h"
#include "common/status.h"

/* Registers the version a manifest describes as staged (by its absolute path, which shards and
 * coordinators must see too). The same content again is a no-op (a retired version is staged again);
 * other content under a known name is VS_ERR_ALREADY_EXISTS. msg says what happened. */
vs_status vs_rollout_deploy(vs_etcd_t *e, const char *cluster, const char *manifest_path,
                            char msg[VS_ERR_LEN]);

/* Makes version active: refused (VS_ERR_FAILED_PRECONDITION with the reason) when its state does not
 * allow it, when it differs from the active version in dim/metric/partitioning/partitions/model and
 * force is 0, or when a partition has fewer than min_ready (>= 1) replicas with it READY (the counts
 * and the load failures are named). VS_ERR_NOT_FOUND when not deployed. */
vs_status vs_rollout_activate(vs_etcd_t *e, const char *cluster, const char *version, size_t min_ready,
                              int force, char msg[VS_ERR_LEN]);

/* The manifest path a deployed version's record names (PATH_MAX). VS_ERR_NOT_FOUND when not deployed. */
vs_status vs_rollout_version_manifest(vs_etcd_t *e, const char *cluster, const char *version, char *out,
                                      char msg[VS_ERR_LEN]);

/* Switches back to the previous version (the same checks as activate, force 0). */
vs_status vs_rollout_rollback(vs_etcd_t *e, const char *cluster, size_t min_ready, char msg[VS_ERR_LEN]);

/* retire: a staged, failed or previous version stops being held (shards unload it);
 * remove: a staged, failed or retired version's record is deleted. Both refuse the active version
 * (and remove the previous one) with the reason. */
vs_status vs_rollout_retire(vs_etcd_t *e, const char *cluster, const char *version, char msg[VS_ERR_LEN]);
vs_status vs_rollout_remove(vs_etcd_t *e, const char *cluster, const char *version, char msg[VS_ERR_LEN]);

#endif
