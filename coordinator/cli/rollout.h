/* rollout.h: the rollout protocol's writes (docs/protocol.md, "Rollout"): deploy (stage a version),
 * activate (switch the active version when every partition has enough replicas with it READY, by an etcd
 * transaction comparing the revision it read), rollback (switch back to the previous version).
 *
 * Keys: /vecshard/<cluster>/versions/<version> = {"version","manifest","model_version","partitions",
 * "state":"staged|active|previous|retired","staged_at"}; /vecshard/<cluster>/active =
 * {"version","previous","activated_at"}. Shards load staged/active/previous versions and unload retired
 * ones; coordinators serve the active one. At most two versions stay loaded after an activation (the new
 * active and the previous one, for an instant rollback); the one before is retired. */
#ifndef VS_COORDINATOR_CLI_ROLLOUT_H
#define VS_COORDINATOR_CLI_ROLLOUT_H

#include <stddef.h>

#include "common/net/etcd.h"
#include "common/status.h"

/* Registers the version a manifest describes as staged. The manifest is validated and recorded by its
 * absolute path (shards and coordinators must see the same path). Deploying the same manifest again is a
 * no-op; another manifest under an existing version name is VS_ERR_ALREADY_EXISTS. msg says what happened. */
vs_status vs_rollout_deploy(vs_etcd_t *e, const char *cluster, const char *manifest_path,
                            char msg[VS_ERR_LEN]);

/* Makes version active if every partition has at least min_ready (>= 1) member replicas (not draining)
 * holding it READY; otherwise refuses with the count per partition and any load failures reported.
 * VS_ERR_NOT_FOUND (not deployed), VS_ERR_FAILED_PRECONDITION (retired, not ready, or etcd changed
 * meanwhile: retry). */
vs_status vs_rollout_activate(vs_etcd_t *e, const char *cluster, const char *version, size_t min_ready,
                              char msg[VS_ERR_LEN]);

/* Switches back to the previous version (which must still be READY on min_ready replicas per partition). */
vs_status vs_rollout_rollback(vs_etcd_t *e, const char *cluster, size_t min_ready, char msg[VS_ERR_LEN]);

#endif
