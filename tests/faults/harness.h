/* harness.h: the fault-scenario harness (tests/faults/): a real local cluster - etcd, P partitions x R
 * shard replicas, one coordinator - under steady query load, and the probes a fault test asserts with:
 * the `vecshard` CLI's exit status and message, counts of failed and wrong answers per version, etcd keys,
 * leases and revisions. Every wait is on a condition with a timeout, never a fixed sleep. Later fault work
 * (frozen etcd, full disk, overload) extends this file rather than copying it.
 *
 * Answers are checked against the in-process oracle of each version registered with vs_fault_expect: a
 * response is "wrong" when its ids differ from what its own version gives in process (so a replica serving
 * other data under a version's name is caught by the recall, not only by an error). */
#ifndef VS_TESTS_FAULTS_HARNESS_H
#define VS_TESTS_FAULTS_HARNESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/integration/etcd_fixture.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"

#define VS_FAULT_MAX_SHARDS 8
#define VS_FAULT_MAX_EXPECT 6
#define VS_FAULT_K 10
#define VS_FAULT_NPROBE 4

typedef struct vs_fault_cluster {
    const char *dir;     /* the test's scratch directory */
    const char *cluster; /* cluster name in etcd */
    vs_etcd_fixture_t *etcd;
    uint32_t partitions, replicas;
    vs_test_proc_t shards[VS_FAULT_MAX_SHARDS]; /* partition p replica r at p * replicas + r */
    vs_test_proc_t coord;
    const vs_test_version_t *queries_from; /* the load's queries (dim of every expected version) */
    /* versions whose answers the load checks: name and its oracle ids (nq x K) */
    char expect_name[VS_FAULT_MAX_EXPECT][64];
    int64_t *expect_ids[VS_FAULT_MAX_EXPECT];
    size_t n_expect;
    /* load counters */
    atomic_int stop;
    atomic_ulong sent, failed, wrong, by_version[VS_FAULT_MAX_EXPECT];
    int n_threads;
    void *threads; /* pthread_t[n_threads] */
    char last_error[256];
} vs_fault_cluster_t;

/* Starts etcd, partitions x replicas shards (replica ids "s<p>-<r>") and the coordinator, all following
 * etcd. bootstrap (nullable): a version every process also gets with --manifest (a cluster set up as
 * deploy/local/cluster.sh does), so it serves before anything is deployed. 0 on success. */
int vs_fault_start(vs_fault_cluster_t *c, const char *dir, const char *cluster, uint32_t partitions,
                   uint32_t replicas, const vs_test_version_t *bootstrap);

/* Starts one more shard process (partition, replica id) following the cluster; 0 when it started
 * listening. extra_args: NULL-terminated, appended (nullable). */
int vs_fault_start_shard(vs_fault_cluster_t *c, vs_test_proc_t *p, uint32_t partition, const char *replica_id,
                         const char *const *extra_args);

/* vs_fault_start_shard with the vecshard-shard binary from bin_dir (another release's build). */
int vs_fault_start_shard_from(vs_fault_cluster_t *c, vs_test_proc_t *p, uint32_t partition,
                              const char *replica_id, const char *bin_dir, const char *const *extra_args);

/* Registers version v's oracle (its in-process answers to the load's queries). */
void vs_fault_expect(vs_fault_cluster_t *c, const char *name, const vs_test_version_t *v);

/* Replaces the oracle of name (after `remove` and a new deploy under the name). Call with the load stopped.
 */
void vs_fault_expect_replace(vs_fault_cluster_t *c, const char *name, const vs_test_version_t *v);

/* Starts / stops n_threads closed-loop query threads through the coordinator. */
void vs_fault_load_start(vs_fault_cluster_t *c, int n_threads);
void vs_fault_load_stop(vs_fault_cluster_t *c);

/* CHECKs that the load so far had no failed and no wrong answer; when names the case in the message. */
void vs_fault_check_load(vs_fault_cluster_t *c, const char *when);

/* Runs `vecshard <args> --etcd ... --cluster ...`; returns the exit status, output (stdout+stderr) in out. */
int vs_fault_cli(vs_fault_cluster_t *c, const char *args, char *out, size_t cap);

/* Runs the CLI until it exits 0 or timeout_s passes (shards still loading); returns the last status. */
int vs_fault_cli_until_ok(vs_fault_cluster_t *c, const char *args, double timeout_s, char *out, size_t cap);

/* Runs the CLI until its output contains needle or timeout_s passes; returns 1 when it did. */
int vs_fault_cli_until_says(vs_fault_cluster_t *c, const char *args, const char *needle, double timeout_s,
                            char *out, size_t cap);

/* Waits until a query through the coordinator is answered by version; 1 when it was. */
int vs_fault_wait_served_by(vs_fault_cluster_t *c, const char *version, double timeout_s);

/* One query through the coordinator (query index q): gRPC code; version that answered into version[64];
 * *correct = its ids equal that version's oracle (0 for a version not registered). */
int vs_fault_query(vs_fault_cluster_t *c, size_t q, char version[64], int *correct);

/* One query with nprobe: gRPC code; the version that answered; *clipped = the coordinator clipped nprobe. */
int vs_fault_query_nprobe(vs_fault_cluster_t *c, size_t q, uint32_t nprobe, char version[64], int *clipped);

/* Keys under /vecshard/<cluster>/<sub> (sub "" = all), -1 on error; etcd's current revision into *rev
 * (nullable). */
long vs_fault_count_keys(vs_fault_cluster_t *c, const char *sub, int64_t *rev);

/* Member records created after revision rev (re-registered since), -1 on error. */
long vs_fault_members_created_after(vs_fault_cluster_t *c, int64_t rev);

/* The coordinator's view of one replica from Status: 1 and *out_latency_ms (its latency EWMA: 0 while it
 * was never called) when it is listed, 0 when not, -1 no answer. */
int vs_fault_coord_member(vs_fault_cluster_t *c, const char *replica_id, double *out_latency_ms);

/* The coordinator's Status: 1 when it reports etcd connected, 0 when not, -1 no answer. */
int vs_fault_coord_etcd_connected(vs_fault_cluster_t *c);

/* Leases etcd holds, -1 on error. */
long vs_fault_count_leases(vs_fault_cluster_t *c);

/* Versions a shard reports holding (its member record's "versions"), -1 when the record is absent. */
long vs_fault_shard_versions(vs_fault_cluster_t *c, uint32_t partition, const char *replica_id);

/* Stops everything it started (SIGTERM, then SIGKILL), checking each process exits 0, and frees; prints
 * the logs' tails when failed. */
void vs_fault_stop(vs_fault_cluster_t *c, int failed);

#endif
