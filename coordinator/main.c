/* main.c: vecshard-coordinator, the process clients talk to. Parses flags and wires the modules: the
 * membership view (view.h, fed by an etcd watch or a static list), the request engine (coord.h), gRPC
 * (rpc.h, health.h) and /metrics. SIGTERM/SIGINT: health NOT_SERVING, in-flight calls finish within
 * --grace-ms, exit 0. */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/flags.h"
#include "common/version.h"
#include "common/log.h"
#include "common/net/health.h"
#include "common/net/http.h"
#include "common/net/metrics.h"
#include "common/net/rpc.h"
#include "common/net/wlog.h"
#include "common/net/serve.h"
#include "coordinator/auth.h"
#include "coordinator/coord.h"
#include "coordinator/follow.h"
#include "coordinator/writes.h"
#include "common/cluster/manifest.h"

#define MAX_MANIFESTS VS_COORD_MAX_VERSIONS

typedef struct config {
    const char *listen, *cluster, *etcd, *shards, *active, *metrics_listen, *port_file;
    const char *nats_url; /* the write log: Upsert and Delete (NULL: writes answer UNIMPLEMENTED) */
    const char *manifests[MAX_MANIFESTS];
    size_t n_manifests;
    long threads, grace_ms, timeout_ms, max_conn_age_ms;
    double hedge_delay_ms, min_coverage, partition_k_probability, slow_request_ms;
    int coarse_at_shard;
    long shard_window, batch_max_queries;
    long log_replicas; /* --log-replicas: the write log stream's replicas when the coordinator creates it */
    vs_recall_opts_t recall; /* --recall-* */
    const char *auth_tokens; /* --auth-tokens FILE: bearer tokens (auth.h); NULL = no authentication */
    vs_rpc_tls_t tls;        /* --tls-*: clients to this coordinator; cert_file set = TLS on */
    vs_rpc_tls_t shard_tls;  /* --shard-tls-*: this coordinator to its shards; ca_file set = TLS on */
    const char *zone;        /* --zone: replicas of this zone first */
    double retry_budget, retry_burst; /* --retry-budget, --retry-budget-burst */
    double max_queue_ms;              /* --max-queue-ms (0 = default, < 0 = never) */
    long max_in_flight;               /* --max-in-flight */
    double target_latency_ms;         /* --target-latency-ms (0 = default, < 0 = off) */
    vs_quota_spec_t *quotas;          /* --client-quota (repeatable) */
    size_t n_quotas;
    int adaptive_limit;               /* --adaptive-limit on|off */
} config_t;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-coordinator --manifest FILE (--etcd URLS | --shards P=host:port,...) [options]\n"
        "Answers vecshard.v1.Coordinator/Search by fanning out to the shards of an index version (every\n"
        "partition for hash partitioning; only the partitions owning each query's nprobe nearest lists for\n"
        "cluster partitioning), hedging slow replicas, retrying failed ones, and merging the top-k.\n"
        "\n"
        "  --listen ADDR         gRPC address (default 0.0.0.0:50050; port 0 = ephemeral)\n"
        "  --manifest FILE       an index version's manifest.json (repeatable, up to %d)\n"
        "  --active VERSION      version for requests that name none (default: the last manifest's)\n"
        "  --etcd URLS           watch /vecshard/<cluster>/members/ in etcd (comma-separated URLs)\n"
        "  --shards SPEC         static membership instead: P=host:port,P=host:port (replicas repeat P)\n"
        "  --cluster NAME        cluster name in etcd keys (default 'default')\n"
        "  --zone NAME           this coordinator's failure zone: replicas whose record names it are sent to\n"
        "                        first, the others only when none of them can answer (default: none)\n"
        "  --nats-url URL        the cluster's write log (NATS JetStream, stream VS_<cluster>): serve "
        "Upsert\n"
        "                        and Delete (default: off, they answer UNIMPLEMENTED)\n"
        "  --log-replicas N      replicas of the write log's stream when this coordinator creates it: 1, 3\n"
        "                        or 5 (default 1; production runs 3 NATS servers and 3; docs/operations.md)\n"
        "  --hedge-delay-ms MS   send a hedged copy after MS (default 0 = each replica's observed p95)\n"
        "  --retry-budget F      hedges and retries (after a call that may have cost the shard work) may\n"
        "                        add at most F of the primary calls (default 0.1; -1 = unbounded); a retry\n"
        "                        after UNAVAILABLE (no work done) is not counted\n"
        "  --retry-budget-burst N  extra calls saved up at most (default 20)\n"
        "  --max-queue-ms MS     overload: a request that waited longer than MS for a worker, or a partition\n"
        "                        call that waited longer for its replica, is refused with RESOURCE_EXHAUSTED\n"
        "                        and trailing metadata vs-retry-after-ms; batch, recall and canary requests\n"
        "                        after MS/4 (default %d; -1 = never; docs/reliability.md)\n"
        "  --max-in-flight N     at most N queries being answered at once; more are refused (default %d;\n"
        "                        priorities other than online get N/4)\n"
        "  --target-latency-ms MS  the adaptive concurrency limit: queries in flight are held where at\n"
        "                        most 10 %% of requests take longer than MS; requests beyond it are refused\n"
        "                        at once (RESOURCE_EXHAUSTED) (default %d; -1 = off)\n"
        "  --client-quota NAME=QPS[:BURST]  queries per second for client NAME (its token's name under\n"
        "                        --auth-tokens, else its TLS certificate's name, else 'anonymous'); '*' =\n"
        "                        every other client, each on its own (repeatable; default: no quotas)\n"
        "  --adaptive-limit on|off  hold partition calls back while a replica's queries in flight reach its\n"
        "                        concurrency limit, learned from its latency (default on)\n"
        "  --min-coverage F      fraction of partitions that must answer when a request gives 0 (default 0)\n"
        "  --coarse-at WHERE     hash-partitioned IVF versions: 'coordinator' (default) ranks each query's\n"
        "                        nprobe lists once and sends them to every partition; 'shard' lets each\n"
        "                        shard rank all nlist centroids itself (P times the work; for comparison)\n"
        "  --timeout-ms MS       deadline for requests that carry none (default 1000)\n"
        "  --threads N           gRPC worker threads (default: one per CPU; requests never block a worker)\n"
        "  --shard-window N      shard calls in flight per replica before partition calls wait and leave\n"
        "                        together in one batched call (default 2; 0 = 2)\n"
        "  --batch-max-queries N queries per batched shard call (default 1024)\n"
        "  --partition-k-probability Q\n"
        "                        hash partitions return only the k' <= k results that hold the true top-k\n"
        "                        with probability Q (e.g. 0.9999: k 100 over 8 partitions asks 28 of each);\n"
        "                        default 0 = every partition returns k (answers equal to one index)\n"
        "  --slow-request-ms MS  log requests answered more than MS after arrival, with their request id\n"
        "                        (at most 5 records per 10 s; default 0 = off). Partial and refused answers\n"
        "                        are always logged with their request id (same limit)\n"
        "  --metrics-listen A    HTTP address for /metrics and /healthz (default 0.0.0.0:9101; 'none' = "
        "off)\n"
        "  --grace-ms MS         on SIGTERM, time in-flight calls get to finish (default 10000)\n"
        "  --max-connection-age-ms MS  close client connections after MS (+10 s grace) so clients behind a\n"
        "                        Kubernetes ClusterIP reconnect and spread over coordinators (default 0: "
        "never)\n"
        "  --port-file FILE      write the bound ports (\"grpc=P\\nmetrics=Q\\n\") once listening\n"
        "  --log-format F        log records as text (default) or json (one JSON object per line)\n"
        "  --auth-tokens FILE    require \"authorization: Bearer <token>\" on every call but health checks:\n"
        "                        lines \"search|write|admin <sha256 hex> [name]\" (vecshard token new);\n"
        "                        missing or wrong: UNAUTHENTICATED, too weak: PERMISSION_DENIED\n"
        "  --tls-cert FILE       serve clients over TLS with this PEM certificate chain (with --tls-key)\n"
        "  --tls-key FILE        its private key\n"
        "  --tls-client-ca FILE  require client certificates signed by this CA (mutual TLS)\n"
        "  --shard-tls-ca FILE   reach shards over TLS, trusting this CA for their certificates\n"
        "  --shard-tls-cert FILE the client certificate shown to shards (mutual TLS; its name must be in\n"
        "                        the shards' --tls-allowed-clients), with --shard-tls-key FILE\n"
        "  --tls-refresh-s S     re-read every TLS file every S seconds: rotate certificates by replacing\n"
        "                        the files; new connections use them (default %d)\n"
        "  --recall-sample F     recall monitoring: fraction of answered queries (full coverage, no filter,\n"
        "                        exclusions or group_by) replayed as exact searches on the shards (default\n"
        "                        0.01; 0 = off). Estimates: vecshard_coordinator_recall{version,params,k}\n"
        "  --recall-max-qps R    sampled queries per second at most (default 20)\n"
        "  --recall-window N     replayed queries per estimate (default 1000: within +-0.02)\n"
        "  --recall-budget F     share of one core each shard may spend on exact replays (default 0.05)\n"
        "  -h, --help            this help\n"
        "\n"
        "Health: \"\" and \"vecshard.v1.Coordinator\" are SERVING while the coordinator can answer at its\n"
        "--min-coverage (at least one partition of the active version with a live replica, and at least "
        "that\n"
        "fraction of them); \"full-coverage\" while every partition has one (what tools wait for before\n"
        "measuring); \"liveness\" while the process runs.\n",
        MAX_MANIFESTS, VS_COORD_DEFAULT_MAX_QUEUE_MS, VS_COORD_DEFAULT_MAX_IN_FLIGHT,
        VS_COORD_DEFAULT_TARGET_LATENCY_MS, VS_RPC_TLS_DEFAULT_REFRESH_S);
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out)
{
    char err[VS_ERR_LEN];
    if (vs_cli_parse_double(flag, s, lo, hi, out, err) != VS_OK) {
        fprintf(stderr, "vecshard-coordinator: %s\n", err);
        return -1;
    }
    return 0;
}

/* A duration in ms that is either > 0 or -1 (what_off: "never", "off"). */
static int parse_ms_or_off(const char *flag, const char *s, const char *what_off, double *out)
{
    if (parse_num(flag, s, -1, 600000, out))
        return -1;
    if (*out == 0 || (*out < 0 && *out != -1)) {
        fprintf(stderr, "vecshard-coordinator: %s must be > 0 or -1 (%s)\n", flag, what_off);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, config_t *c)
{
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"manifest", required_argument, 0, 'm'},
                                         {"active", required_argument, 0, 'a'},
                                         {"etcd", required_argument, 0, 'e'},
                                         {"shards", required_argument, 0, 's'},
                                         {"cluster", required_argument, 0, 'c'},
                                         {"hedge-delay-ms", required_argument, 0, 'H'},
                                         {"min-coverage", required_argument, 0, 'C'},
                                         {"coarse-at", required_argument, 0, 'Q'},
                                         {"shard-window", required_argument, 0, 'W'},
                                         {"batch-max-queries", required_argument, 0, 'B'},
                                         {"partition-k-probability", required_argument, 0, 'K'},
                                         {"slow-request-ms", required_argument, 0, 'R'},
                                         {"timeout-ms", required_argument, 0, 'T'},
                                         {"threads", required_argument, 0, 't'},
                                         {"metrics-listen", required_argument, 0, 'M'},
                                         {"grace-ms", required_argument, 0, 'g'},
                                         {"port-file", required_argument, 0, 'P'},
                                         {"log-format", required_argument, 0, 'L'},
                                         {"max-connection-age-ms", required_argument, 0, 'A'},
                                         {"nats-url", required_argument, 0, 'N'},
                                         {"log-replicas", required_argument, 0, 'Y'},
                                         {"recall-sample", required_argument, 0, 256},
                                         {"recall-max-qps", required_argument, 0, 257},
                                         {"recall-window", required_argument, 0, 258},
                                         {"recall-budget", required_argument, 0, 259},
                                         {"auth-tokens", required_argument, 0, 260},
                                         {"tls-cert", required_argument, 0, 261},
                                         {"tls-key", required_argument, 0, 262},
                                         {"tls-client-ca", required_argument, 0, 263},
                                         {"shard-tls-ca", required_argument, 0, 264},
                                         {"shard-tls-cert", required_argument, 0, 265},
                                         {"shard-tls-key", required_argument, 0, 266},
                                         {"tls-refresh-s", required_argument, 0, 267},
                                         {"zone", required_argument, 0, 268},
                                         {"retry-budget", required_argument, 0, 269},
                                         {"retry-budget-burst", required_argument, 0, 270},
                                         {"max-queue-ms", required_argument, 0, 271},
                                         {"max-in-flight", required_argument, 0, 272},
                                         {"client-quota", required_argument, 0, 273},
                                         {"adaptive-limit", required_argument, 0, 274},
                                         {"target-latency-ms", required_argument, 0, 275},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    *c = (config_t){.listen = "0.0.0.0:50050",
                    .cluster = "default",
                    .metrics_listen = "0.0.0.0:9101",
                    .grace_ms = 10000,
                    .timeout_ms = 1000,
                    .adaptive_limit = 1};
    int o;
    double v;
    vs_recall_opts_default(&c->recall);
    char xerr[VS_ERR_LEN];
    if (vs_cli_exact_long_options(argc, argv, opts, xerr) != 0) {
        fprintf(stderr, "vecshard-coordinator: %s\n", xerr);
        return 2;
    }
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 256:
            if (parse_num("--recall-sample", optarg, 0, 1, &c->recall.sample_rate))
                return 2;
            break;
        case 257:
            if (parse_num("--recall-max-qps", optarg, 0.001, 1e6, &c->recall.max_qps))
                return 2;
            break;
        case 258:
            if (parse_num("--recall-window", optarg, 10, 1e6, &v))
                return 2;
            c->recall.window = (size_t)v;
            break;
        case 259:
            if (parse_num("--recall-budget", optarg, 0.001, 1, &c->recall.budget))
                return 2;
            break;
        case 260:
            c->auth_tokens = optarg;
            break;
        case 261:
            c->tls.cert_file = optarg;
            break;
        case 262:
            c->tls.key_file = optarg;
            break;
        case 263:
            c->tls.ca_file = optarg;
            break;
        case 264:
            c->shard_tls.ca_file = optarg;
            break;
        case 265:
            c->shard_tls.cert_file = optarg;
            break;
        case 266:
            c->shard_tls.key_file = optarg;
            break;
        case 268:
            c->zone = optarg;
            break;
        case 269:
            if (parse_num("--retry-budget", optarg, -1, 10, &c->retry_budget))
                return 2;
            if (c->retry_budget < 0 && c->retry_budget != -1) {
                fprintf(stderr, "vecshard-coordinator: --retry-budget must be in (0, 10] or -1 (unbounded)\n");
                return 2;
            }
            if (c->retry_budget == 0) {
                fprintf(stderr, "vecshard-coordinator: --retry-budget 0 would forbid every hedge and retry after "
                                "the burst; give a small fraction (e.g. 0.01)\n");
                return 2;
            }
            break;
        case 270:
            if (parse_num("--retry-budget-burst", optarg, 1, 1e6, &c->retry_burst))
                return 2;
            break;
        case 271:
            if (parse_ms_or_off("--max-queue-ms", optarg, "never", &c->max_queue_ms))
                return 2;
            break;
        case 272:
            if (parse_num("--max-in-flight", optarg, 1, 1e9, &v))
                return 2;
            c->max_in_flight = (long)v;
            break;
        case 273: {
            vs_quota_spec_t *qs = realloc(c->quotas, (c->n_quotas + 1) * sizeof *qs);
            char e[VS_ERR_LEN];
            if (!qs) {
                fprintf(stderr, "vecshard-coordinator: out of memory\n");
                return 1;
            }
            c->quotas = qs;
            if (vs_quota_parse(optarg, &qs[c->n_quotas], e) != VS_OK) {
                fprintf(stderr, "vecshard-coordinator: %s\n", e);
                return 2;
            }
            c->n_quotas++;
            break;
        }
        case 275:
            if (parse_ms_or_off("--target-latency-ms", optarg, "off", &c->target_latency_ms))
                return 2;
            break;
        case 274:
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
                fprintf(stderr, "vecshard-coordinator: --adaptive-limit must be on or off, not '%s'\n", optarg);
                return 2;
            }
            c->adaptive_limit = strcmp(optarg, "on") == 0;
            break;
        case 267:
            if (parse_num("--tls-refresh-s", optarg, 1, 86400, &v))
                return 2;
            c->tls.refresh_s = c->shard_tls.refresh_s = (unsigned)v;
            break;
        case 'l':
            c->listen = optarg;
            break;
        case 'm':
            if (c->n_manifests == MAX_MANIFESTS) {
                fprintf(stderr, "vecshard-coordinator: at most %d --manifest\n", MAX_MANIFESTS);
                return 2;
            }
            c->manifests[c->n_manifests++] = optarg;
            break;
        case 'a':
            c->active = optarg;
            break;
        case 'e':
            c->etcd = optarg;
            break;
        case 's':
            c->shards = optarg;
            break;
        case 'N':
            c->nats_url = optarg;
            break;
        case 'c':
            c->cluster = optarg;
            break;
        case 'H':
            if (parse_num("--hedge-delay-ms", optarg, 0, 600000, &c->hedge_delay_ms))
                return 2;
            break;
        case 'C':
            if (parse_num("--min-coverage", optarg, 0, 1, &c->min_coverage))
                return 2;
            break;
        case 'Q':
            if (strcmp(optarg, "coordinator") != 0 && strcmp(optarg, "shard") != 0) {
                fprintf(stderr, "vecshard-coordinator: --coarse-at is 'coordinator' or 'shard', not '%s'\n",
                        optarg);
                return 2;
            }
            c->coarse_at_shard = strcmp(optarg, "shard") == 0;
            break;
        case 'W':
            if (parse_num("--shard-window", optarg, 0, 1024, &v))
                return 2;
            c->shard_window = (long)v;
            break;
        case 'B':
            if (parse_num("--batch-max-queries", optarg, 1, 10000, &v))
                return 2;
            c->batch_max_queries = (long)v;
            break;
        case 'K':
            if (parse_num("--partition-k-probability", optarg, 0, 1, &c->partition_k_probability))
                return 2;
            break;
        case 'R':
            if (parse_num("--slow-request-ms", optarg, 0, 3600000, &c->slow_request_ms))
                return 2;
            break;
        case 'T':
            if (parse_num("--timeout-ms", optarg, 1, 3600000, &v))
                return 2;
            c->timeout_ms = (long)v;
            break;
        case 't':
            if (parse_num("--threads", optarg, 1, 1024, &v))
                return 2;
            c->threads = (long)v;
            break;
        case 'M':
            c->metrics_listen = optarg;
            break;
        case 'g':
            if (parse_num("--grace-ms", optarg, 0, 3600000, &v))
                return 2;
            c->grace_ms = (long)v;
            break;
        case 'Y':
            if (parse_num("--log-replicas", optarg, 1, 5, &v))
                return 2;
            c->log_replicas = (long)v;
            break;
        case 'A':
            if (parse_num("--max-connection-age-ms", optarg, 0, 86400000, &v))
                return 2;
            c->max_conn_age_ms = (long)v;
            break;
        case 'P':
            c->port_file = optarg;
            break;
        case 'L': {
            vs_log_format f;
            if (vs_log_parse_format(optarg, &f) != 0) {
                fprintf(stderr, "vecshard-coordinator: --log-format must be text or json, not '%s'\n",
                        optarg);
                return 2;
            }
            vs_log_set_format(f);
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vecshard-coordinator: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if ((c->n_manifests == 0 && !c->etcd) || (!c->etcd == !c->shards)) {
        fprintf(stderr, "vecshard-coordinator: exactly one of --etcd, --shards is required (--shards needs "
                        "--manifest)\n");
        return 2;
    }
    if ((c->tls.key_file || c->tls.ca_file) && !c->tls.cert_file) {
        fprintf(stderr, "vecshard-coordinator: --tls-key and --tls-client-ca need --tls-cert\n");
        return 2;
    }
    if ((c->shard_tls.cert_file || c->shard_tls.key_file) && !c->shard_tls.ca_file) {
        fprintf(stderr, "vecshard-coordinator: --shard-tls-cert and --shard-tls-key need --shard-tls-ca\n");
        return 2;
    }
    if (!vs_version_name_valid(c->cluster)) {
        fprintf(stderr, "vecshard-coordinator: --cluster '%s' must match [A-Za-z0-9._-]{1,64}\n", c->cluster);
        return 2;
    }
    if (c->zone && (strlen(c->zone) > VS_ZONE_MAX || !vs_version_name_valid(c->zone))) {
        fprintf(stderr, "vecshard-coordinator: --zone '%s' must match [A-Za-z0-9._-]{1,64}\n", c->zone);
        return 2;
    }
    if (c->nats_url && !vs_wlog_cluster_valid(c->cluster)) {
        fprintf(stderr,
                "vecshard-coordinator: --nats-url needs a --cluster name without '.' (it names the NATS "
                "stream), not '%s'\n",
                c->cluster);
        return 2;
    }
    return 0;
}

typedef struct app {
    config_t cfg;
    vs_view_t *view;
    vs_coord_t *coord;
    vs_health_t *health;
    vs_coord_follow_t *follow; /* --etcd: membership, versions and the active one from etcd */
    atomic_int ready;
    vs_metrics_t *reg;
    vs_rpc_metrics_t rpcm;
    vs_histogram_t *stage[VS_COORD_STAGE_N];       /* vecshard_coordinator_stage_seconds{stage} */
    vs_metric_family_t *recall_fam, *recall_n_fam; /* vecshard_coordinator_recall{,_window_queries} */
    vs_metric_family_t *recall_target_fam;         /* vecshard_coordinator_recall_target{version} */
    vs_writes_t *writes;                           /* --nats-url */
    vs_auth_t *auth;                               /* --auth-tokens */
    vs_counter_t *auth_refused[4];                 /* vecshard_coordinator_auth_refused_total{reason} */
    vs_overload_metrics_t overload; /* vecshard_coordinator_queue_seconds, vecshard_coordinator_shed_total */
} app_t;

static void on_stage(void *user, vs_coord_stage stage, double seconds)
{
    app_t *a = user;
    if (stage < VS_COORD_STAGE_N && a->stage[stage]) /* set once, before the server starts */
        vs_histogram_observe(a->stage[stage], seconds);
}

/* An updated recall estimate (the recall worker's thread): its two gauges. */
static void on_recall(void *user, const vs_recall_stat_t *s)
{
    app_t *a = user;
    char k[16];
    snprintf(k, sizeof k, "%u", s->k);
    vs_gauge_set(VS_GAUGE_WITH(a->recall_fam, s->version, s->params[0] ? s->params : "none", k), s->recall);
    vs_gauge_set(VS_GAUGE_WITH(a->recall_n_fam, s->version, s->params[0] ? s->params : "none", k),
                 (double)s->queries);
    if (s->target > 0)
        vs_gauge_set(VS_GAUGE_WITH(a->recall_target_fam, s->version), s->target);
}

/* The server's authorize hook: the call's bearer token against the tokens file (auth.h). */
static int authorize(void *user, const char *path, const vs_rpc_call_t *call, char msg[VS_ERR_LEN])
{
    app_t *a = user;
    char value[1024];
    long n = vs_rpc_call_metadata(call, "authorization", value, sizeof value);
    vs_auth_outcome o = vs_auth_check(a->auth, n >= 0 ? value : NULL, vs_auth_required(path), msg);
    if (o == VS_AUTH_OK)
        return 0;
    vs_counter_inc(a->auth_refused[o]);
    return o == VS_AUTH_DENIED ? VS_GRPC_PERMISSION_DENIED : VS_GRPC_UNAUTHENTICATED;
}

static void update_health(app_t *a)
{
    int ready = vs_coord_ready(a->coord);
    atomic_store(&a->ready, ready);
    vs_health_status st = ready ? VS_HEALTH_SERVING : VS_HEALTH_NOT_SERVING;
    vs_health_set(a->health, "", st); /* notifies watchers only on a change */
    vs_health_set(a->health, "vecshard.v1.Coordinator", st);
    uint32_t total, n = vs_coord_coverage(a->coord, &total);
    vs_health_set(a->health, "full-coverage",
                  total && n == total ? VS_HEALTH_SERVING : VS_HEALTH_NOT_SERVING);
}

static void on_follow_change(void *user)
{
    update_health(user);
}

static void reply_status(vs_rpc_reply_t *reply, vs_status st, const char *err)
{
    reply->code = vs_status_grpc_code(st);
    snprintf(reply->message, sizeof reply->message, "%s", err);
}

static void search_done(void *user, vs_status st, const char *err, int64_t retry_after_ms, uint8_t *body,
                        size_t len)
{
    vs_rpc_reply_t reply = {.code = VS_GRPC_OK, .body = body, .body_len = len};
    if (st != VS_OK) {
        reply_status(&reply, st, err);
        reply.retry_after_ms = retry_after_ms;
    }
    vs_rpc_call_reply(user, &reply);
}

static void on_search(void *user, vs_rpc_call_t *call, const uint8_t *req, size_t len)
{
    app_t *a = user;
    int64_t remaining = vs_rpc_call_remaining_ms(call);
    vs_coord_call_t cc = {.timeout_ms = remaining == INT64_MAX ? a->cfg.timeout_ms : remaining,
                          .queued_s = vs_rpc_call_queued_s(call)};
    char value[1024], peer[256];
    if (a->cfg.n_quotas) { /* the client's identity: its token's name, else its certificate's */
        long n = a->auth ? vs_rpc_call_metadata(call, "authorization", value, sizeof value) : -1;
        cc.client = n >= 0 ? vs_auth_name(a->auth, value) : NULL;
        if (!cc.client && vs_rpc_call_peer_name(call, peer, sizeof peer) >= 0)
            cc.client = peer;
    }
    vs_coord_search_async(a->coord, vs_rpc_call_server(call), req, len, &cc, search_done, call);
}

static void write_done(void *user, vs_status st, const char *err, uint8_t *body, size_t len)
{
    search_done(user, st, err, 0, body, len);
}

/* Upsert and Delete: checked here and handed to the log; the log's acknowledgement answers them (it never
 * holds a worker). */
static void on_write(app_t *a, int is_delete, vs_rpc_call_t *call, const uint8_t *req, size_t len)
{
    char err[VS_ERR_LEN] = "";
    vs_status st = a->writes ? vs_writes_submit(a->writes, is_delete, req, len, write_done, call, err)
                             : vs_errf(err, VS_ERR_UNSUPPORTED,
                                       "this coordinator takes no writes (start it with --nats-url)");
    if (st != VS_OK) {
        vs_rpc_reply_t reply = {.code = VS_GRPC_OK};
        reply_status(&reply, st, err);
        vs_rpc_call_reply(call, &reply);
    }
}

static void on_upsert(void *user, vs_rpc_call_t *call, const uint8_t *req, size_t len)
{
    on_write(user, 0, call, req, len);
}

static void on_delete(void *user, vs_rpc_call_t *call, const uint8_t *req, size_t len)
{
    on_write(user, 1, call, req, len);
}

static double on_tick(void *user, double now)
{
    return vs_coord_tick(((app_t *)user)->coord, now);
}

static void on_status(void *user, const vs_rpc_call_t *call, const uint8_t *req, size_t len,
                      vs_rpc_reply_t *reply)
{
    (void)call;
    (void)req;
    (void)len;
    app_t *a = user;
    char err[VS_ERR_LEN] = "";
    vs_status st = vs_coord_status_pb(a->coord, vs_coord_follow_etcd_connected(a->follow), a->cfg.cluster,
                                      &reply->body, &reply->body_len, err);
    if (st != VS_OK)
        reply_status(reply, st, err);
}

#define STAT_FN2(name, field)                                                                                \
    static double stat_##name(void *u)                                                                       \
    {                                                                                                        \
        return (double)atomic_load(&vs_coord_stats(((app_t *)u)->coord)->field);                             \
    }
#define STAT_FN(field) STAT_FN2(field, field)
#define RECALL_FN(name, expr)                                                                                \
    static double recall_##name(void *u)                                                                     \
    {                                                                                                        \
        vs_recall_totals_t t;                                                                                \
        vs_coord_recall_snapshot(((app_t *)u)->coord, NULL, 0, &t);                                          \
        return (double)(expr);                                                                               \
    }
RECALL_FN(sampled, t.sampled)
RECALL_FN(replayed, t.replayed)
RECALL_FN(dropped, t.dropped_queue + t.dropped_failed)
RECALL_FN(seconds, t.replay_seconds)
STAT_FN(requests)
STAT_FN2(batch_limited, batch.limited)
STAT_FN2(in_flight_queries, in_flight_queries)
STAT_FN2(in_flight_requests, in_flight_requests)

static double g_concurrency_limit(void *u)
{
    return vs_coord_concurrency_limit(((app_t *)u)->coord);
}
STAT_FN(partial)
STAT_FN(unavailable)
STAT_FN2(hedges_sent, fanout.hedges_sent)
STAT_FN2(hedges_won, fanout.hedges_won)
STAT_FN2(retries, fanout.retries)
STAT_FN2(hedges_suppressed, fanout.hedges_suppressed)
STAT_FN2(retries_suppressed, fanout.retries_suppressed)
STAT_FN2(shard_calls, fanout.shard_calls)
STAT_FN2(shard_failures, fanout.shard_failures)
STAT_FN2(late_answers, fanout.late_answers)
STAT_FN(fanout_sum)
STAT_FN(coarse_ranked)
STAT_FN2(batch_calls, batch.calls)
STAT_FN2(batch_items, batch.items)
STAT_FN2(batch_queries, batch.queries)
STAT_FN2(batch_expired, batch.expired)
STAT_FN(fanout_count)

static double write_count(void *u, int which)
{
    uint64_t v[3] = {0, 0, 0};
    if (((app_t *)u)->writes)
        vs_writes_counts(((app_t *)u)->writes, &v[0], &v[1], &v[2]);
    return (double)v[which];
}
static double c_writes_ok(void *u)
{
    return write_count(u, 0);
}
static double c_writes_refused(void *u)
{
    return write_count(u, 1);
}
static double c_writes_failed(void *u)
{
    return write_count(u, 2);
}

static double g_write_log_connected(void *u)
{
    return ((app_t *)u)->writes && vs_writes_connected(((app_t *)u)->writes);
}

static double g_etcd_connected(void *u)
{
    return vs_coord_follow_etcd_connected(((app_t *)u)->follow);
}

static double g_ready(void *u)
{
    return vs_coord_ready(((app_t *)u)->coord);
}

static double g_coverage(void *u)
{
    uint32_t total, n = vs_coord_coverage(((app_t *)u)->coord, &total);
    return total ? (double)n / total : 0.0;
}

static vs_status setup_metrics(app_t *a, char err[VS_ERR_LEN])
{
    a->reg = vs_metrics_create();
    if (!a->reg)
        return vs_errf(err, VS_ERR_NOMEM, "metrics: out of memory");
    vs_status st = vs_rpc_metrics_init(&a->rpcm, a->reg, err);
    if (st == VS_OK)
        st = vs_overload_metrics_init(&a->overload, a->reg, "vecshard_coordinator", err);
    if (st != VS_OK)
        return st;
    struct {
        const char *name, *help;
        double (*fn)(void *);
        int counter;
    } fns[] = {
        {"vecshard_coordinator_searches_total", "Search requests received.", stat_requests, 1},
        {"vecshard_coordinator_partial_responses_total", "Responses missing some partitions (coverage < 1).",
         stat_partial, 1},
        {"vecshard_coordinator_unavailable_total", "Requests refused because too few partitions answered.",
         stat_unavailable, 1},
        {"vecshard_coordinator_hedges_sent_total", "Hedged copies sent to a second replica.",
         stat_hedges_sent, 1},
        {"vecshard_coordinator_hedges_won_total", "Hedged copies that answered first.", stat_hedges_won, 1},
        {"vecshard_coordinator_writes_acknowledged_total",
         "Upsert and Delete requests the write log acknowledged.", c_writes_ok, 1},
        {"vecshard_coordinator_writes_refused_total",
         "Upsert and Delete requests refused as invalid (nothing logged).", c_writes_refused, 1},
        {"vecshard_coordinator_writes_failed_total",
         "Upsert and Delete requests the log did not acknowledge (unavailable or full; outcome unknown).",
         c_writes_failed, 1},
        {"vecshard_coordinator_write_log_connected",
         "1 once the coordinator reached the write log (--nats-url) and takes writes; 0 before, or without "
         "it.",
         g_write_log_connected, 0},
        {"vecshard_coordinator_retries_total", "Calls retried on another replica after a failure.",
         stat_retries, 1},
        {"vecshard_coordinator_hedges_suppressed_total",
         "Hedges not sent because the retry and hedge budget was spent (--retry-budget).", stat_hedges_suppressed,
         1},
        {"vecshard_coordinator_retries_suppressed_total",
         "Retries not made because the retry and hedge budget was spent (--retry-budget).",
         stat_retries_suppressed, 1},
        {"vecshard_coordinator_shard_calls_total", "Calls made to shards (primary, hedges, retries).",
         stat_shard_calls, 1},
        {"vecshard_coordinator_shard_failures_total", "Shard calls that failed.", stat_shard_failures, 1},
        {"vecshard_coordinator_late_answers_total",
         "Shard answers dropped because their partition had already ended (hedge losers, answers after the "
         "deadline).",
         stat_late_answers, 1},
        {"vecshard_coordinator_fanout_partitions_total", "Partitions called, summed over requests.",
         stat_fanout_sum, 1},
        {"vecshard_coordinator_fanout_requests_total",
         "Requests fanned out (divide fanout_partitions by it).", stat_fanout_count, 1},
        {"vecshard_coordinator_coarse_ranked_queries_total",
         "Queries whose IVF lists the coordinator ranked once for every partition (cluster routing, or hash "
         "partitions sharing one quantizer).",
         stat_coarse_ranked, 1},
        {"vecshard_coordinator_shard_rpcs_total",
         "Search RPCs sent to shards; one carries one or more partition calls (batching).", stat_batch_calls,
         1},
        {"vecshard_coordinator_shard_rpc_calls_total",
         "Partition calls carried by shard RPCs (divide by shard_rpcs_total: the mean batch).",
         stat_batch_items, 1},
        {"vecshard_coordinator_shard_rpc_queries_total", "Queries carried by shard RPCs.", stat_batch_queries,
         1},
        {"vecshard_coordinator_limited_total",
         "Times a replica's adaptive concurrency limit held waiting partition calls back (--adaptive-limit).",
         stat_batch_limited, 1},
        {"vecshard_coordinator_concurrency_limit",
         "The adaptive concurrency limit: requests in flight beyond it are refused (--target-latency-ms; 0 = "
         "off).",
         g_concurrency_limit, 0},
        {"vecshard_coordinator_in_flight_requests", "Requests being answered (held below the concurrency limit).",
         stat_in_flight_requests, 0},
        {"vecshard_coordinator_in_flight_queries",
         "Queries of the requests being answered (refused beyond --max-in-flight).", stat_in_flight_queries,
         0},
        {"vecshard_coordinator_batch_expired_total",
         "Partition calls whose deadline passed while they waited for a batch (never sent).",
         stat_batch_expired, 1},
        {"vecshard_coordinator_etcd_connected", "1 while the membership watch is connected to etcd.",
         g_etcd_connected, 0},
        {"vecshard_coordinator_ready",
         "1 while the coordinator can answer at its --min-coverage (readiness of the Kubernetes probe).",
         g_ready, 0},
        {"vecshard_coordinator_recall_sampled_queries_total",
         "Answered queries sampled for recall monitoring (--recall-sample).", recall_sampled, 1},
        {"vecshard_coordinator_recall_replayed_queries_total",
         "Sampled queries replayed as exact searches on the shards.", recall_replayed, 1},
        {"vecshard_coordinator_recall_dropped_queries_total",
         "Sampled queries dropped: over --recall-max-qps, queue full, or their replay failed.",
         recall_dropped, 1},
        {"vecshard_coordinator_recall_replay_seconds_total",
         "Time spent replaying sampled queries (exact searches, all partitions in turn).", recall_seconds, 1},
        {"vecshard_coordinator_coverage_ratio",
         "Fraction of the active version's partitions with a usable replica (1 = full answers).", g_coverage,
         0},
    };
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
        vs_metric_family_t *f = fns[i].counter
                                    ? vs_metrics_counter_fn(a->reg, fns[i].name, fns[i].help, fns[i].fn, a)
                                    : vs_metrics_gauge_fn(a->reg, fns[i].name, fns[i].help, fns[i].fn, a);
        if (!f)
            return vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(a->reg));
    }
    static const char *const recall_labels[] = {"version", "params", "k"};
    a->recall_fam =
        vs_metrics_gauge(a->reg, "vecshard_coordinator_recall",
                         "Recall@k of served answers against exact search on the shards, mean over the "
                         "last --recall-window replayed queries of each version and parameter set.",
                         3, recall_labels);
    a->recall_n_fam =
        vs_metrics_gauge(a->reg, "vecshard_coordinator_recall_window_queries",
                         "Replayed queries behind vecshard_coordinator_recall (alerts should require "
                         "a full window).",
                         3, recall_labels);
    static const char *const version_label[] = {"version"};
    a->recall_target_fam = vs_metrics_gauge(a->reg, "vecshard_coordinator_recall_target",
                                            "The recall@k target recorded in a monitored version's manifest "
                                            "(search_defaults): VecshardRecallBelowTarget compares with it.",
                                            1, version_label);
    static const char *const reason_label[] = {"reason"};
    vs_metric_family_t *auth_fam = vs_metrics_counter(
        a->reg, "vecshard_coordinator_auth_refused_total",
        "Calls refused by --auth-tokens: missing credentials, invalid token, or a token without the "
        "permission.",
        1, reason_label);
    if (auth_fam) {
        a->auth_refused[VS_AUTH_MISSING] = VS_COUNTER_WITH(auth_fam, "missing");
        a->auth_refused[VS_AUTH_INVALID] = VS_COUNTER_WITH(auth_fam, "invalid");
        a->auth_refused[VS_AUTH_DENIED] = VS_COUNTER_WITH(auth_fam, "permission");
    }
    if (!a->recall_fam || !a->recall_n_fam || !a->recall_target_fam || !auth_fam)
        return vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(a->reg));
    if (vs_metrics_histogram_each(
            a->reg, "vecshard_coordinator_stage_seconds",
            "Time of each stage of a request at the coordinator: route (decode, version, coarse ranking), "
            "batch_wait (a partition call waiting for its replica's window), shard_rpc (one shard RPC, sent "
            "to "
            "answered), merge (coverage, merge, encode).",
            "stage", vs_coord_stage_names, VS_COORD_STAGE_N, vs_metrics_fine_buckets,
            VS_METRICS_FINE_BUCKETS_N, a->stage) != 0)
        return vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(a->reg));
    st = vs_metrics_add_process(a->reg, err);
    if (st == VS_OK &&
        !vs_metrics_add_build_info(a->reg, "vecshard_build_info", "vecshard version.", VS_VERSION))
        st = vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(a->reg));
    return st;
}

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard-coordinator"))
        return 0;
    app_t a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a.cfg);
    if (rc)
        return rc;
    vs_log_set_component("coordinator");
    sigset_t sigs;
    vs_serve_block_signals(&sigs);
    vs_serve_raise_fd_limit();

    char err[VS_ERR_LEN];
    vs_coord_opts_t co = {.hedge_delay_ms = a.cfg.hedge_delay_ms,
                          .default_timeout_ms = a.cfg.timeout_ms,
                          .min_coverage = (float)a.cfg.min_coverage,
                          .coarse_at_shard = a.cfg.coarse_at_shard,
                          .shard_window = (size_t)a.cfg.shard_window,
                          .batch_max_queries = (size_t)a.cfg.batch_max_queries,
                          .partition_k_probability = a.cfg.partition_k_probability,
                          .slow_request_ms = a.cfg.slow_request_ms,
                          .retry_budget = a.cfg.retry_budget,
                          .retry_budget_burst = a.cfg.retry_burst,
                          .max_queue_ms = a.cfg.max_queue_ms,
                          .max_in_flight = (size_t)a.cfg.max_in_flight,
                          .target_latency_ms = a.cfg.target_latency_ms,
                          .quotas = a.cfg.quotas,
                          .n_quotas = a.cfg.n_quotas,
                          .adaptive_limit = a.cfg.adaptive_limit,
                          .overload = &a.overload,
                          .on_stage = on_stage,
                          .stage_user = &a,
                          .recall = a.cfg.recall,
                          .on_recall = on_recall,
                          .recall_user = &a};
    vs_status st = vs_view_create(&a.view, err);
    if (st == VS_OK && a.cfg.shard_tls.ca_file && (st = vs_rpc_tls_check(&a.cfg.shard_tls, 0, err)) == VS_OK)
        vs_view_set_tls(a.view, &a.cfg.shard_tls);
    if (st == VS_OK)
        vs_view_set_zone(a.view, a.cfg.zone);
    if (st == VS_OK)
        st = vs_coord_create(&co, a.view, &a.coord, err);
    if (st == VS_OK)
        st = vs_health_create(&a.health, err);
    char last[VS_NAME_LEN] = "";
    for (size_t i = 0; st == VS_OK && i < a.cfg.n_manifests; i++) {
        vs_manifest_t m;
        st = vs_manifest_load(a.cfg.manifests[i], &m, err);
        if (st != VS_OK)
            break;
        st = vs_coord_add_loaded(a.coord, &m, a.cfg.manifests[i], err);
        if (st == VS_OK) {
            snprintf(last, sizeof last, "%s", m.version);
            vs_log(VS_LOG_INFO, "version %s: %u partitions (%s), metric %s, dim %u, model \"%s\"", m.version,
                   m.n_partitions, m.partitioning, vs_metric_name(m.metric), m.dim, m.model_version);
        }
        vs_manifest_fini(&m);
    }
    if (st == VS_OK)
        st = a.cfg.n_manifests ? vs_coord_activate(a.coord, a.cfg.active ? a.cfg.active : last, err) : VS_OK;
    if (st == VS_OK)
        st = setup_metrics(&a, err);
    if (st == VS_OK && a.cfg.auth_tokens && (st = vs_auth_load(a.cfg.auth_tokens, &a.auth, err)) == VS_OK)
        vs_log(VS_LOG_INFO, "authentication: %zu tokens from %s", vs_auth_count(a.auth), a.cfg.auth_tokens);
    if (st == VS_OK && a.cfg.tls.ca_file && !a.cfg.auth_tokens)
        vs_log(VS_LOG_WARN, "authentication by client certificate only (no --auth-tokens): every certificate "
                            "of --tls-client-ca may search, write and administer");
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-coordinator: %s\n", err);
        return 1;
    }
    vs_health_set(a.health, "liveness", VS_HEALTH_SERVING);
    update_health(&a);

    if (a.cfg.shards) {
        st = vs_view_add_static(a.view, a.cfg.shards, err);
    } else {
        st = vs_coord_follow_start(a.cfg.etcd, a.cfg.cluster, a.coord, a.view, on_follow_change, &a,
                                   &a.follow, err);
    }
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-coordinator: %s\n", err);
        return 1;
    }
    update_health(&a);

    if (a.cfg.nats_url && (st = vs_writes_create(a.cfg.nats_url, a.cfg.cluster, (int)a.cfg.log_replicas,
                                                 a.coord, &a.writes, err)) != VS_OK) {
        fprintf(stderr, "vecshard-coordinator: %s\n", err);
        return 1;
    }
    vs_rpc_method_t methods[6];
    methods[0] = (vs_rpc_method_t){.path = "/vecshard.v1.Coordinator/Search", .async = on_search, .user = &a};
    methods[1] = (vs_rpc_method_t){.path = "/vecshard.v1.Coordinator/Status", .unary = on_status, .user = &a};
    methods[2] = (vs_rpc_method_t){.path = "/vecshard.v1.Coordinator/Upsert", .async = on_upsert, .user = &a};
    methods[3] = (vs_rpc_method_t){.path = "/vecshard.v1.Coordinator/Delete", .async = on_delete, .user = &a};
    vs_health_methods(a.health, &methods[4]);
    long threads = a.cfg.threads ? a.cfg.threads : sysconf(_SC_NPROCESSORS_ONLN);
    vs_rpc_server_opts_t so = {.tls = a.cfg.tls.cert_file ? &a.cfg.tls : NULL,
                               .max_connection_age_ms = a.cfg.max_conn_age_ms,
                               .address = a.cfg.listen,
                               .n_threads = (size_t)(threads > 0 ? threads : 2),
                               .on_done = vs_rpc_metrics_on_done,
                               .on_done_user = &a.rpcm,
                               .tick = on_tick,
                               .tick_user = &a,
                               .authorize = a.auth ? authorize : NULL,
                               .authorize_user = &a};
    vs_rpc_server_t *server;
    int port = 0, metrics_port = 0;
    st = vs_rpc_server_start(&so, methods, 6, &server, &port, err);
    vs_http_t *http = NULL;
    if (st == VS_OK)
        st = vs_serve_http(a.cfg.metrics_listen, a.reg, a.health, &http, &metrics_port, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-coordinator: %s\n", err);
        return 1;
    }
    vs_log(VS_LOG_INFO, "listening on %s (port %d); metrics on port %d; membership from %s", a.cfg.listen,
           port, metrics_port, a.cfg.shards ? "--shards" : "etcd");
    if (a.cfg.port_file && vs_serve_write_port_file(a.cfg.port_file, port, metrics_port) != 0)
        vs_log(VS_LOG_WARN, "cannot write --port-file %s", a.cfg.port_file);

    /* health follows the view; re-evaluated twice a second (membership changes also update it) */
    int sig = 0;
    struct timespec tick = {0, 500 * 1000 * 1000};
    for (;;) {
        sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (a.follow) {
            size_t orphans = 0, removed = vs_view_sweep(a.view, &orphans);
            if (removed)
                vs_log(VS_LOG_INFO,
                       "membership: %zu replica(s) without a record stopped answering health; removed",
                       removed);
            vs_coord_follow_tick(a.follow);
        }
        update_health(&a);
    }
    vs_log(VS_LOG_INFO, "%s: draining (grace %ld ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT", a.cfg.grace_ms);
    vs_health_set(a.health, "", VS_HEALTH_NOT_SERVING);
    vs_health_set(a.health, "vecshard.v1.Coordinator", VS_HEALTH_NOT_SERVING);
    vs_health_set(a.health, "full-coverage", VS_HEALTH_NOT_SERVING);
    vs_health_close_watchers(a.health);
    vs_writes_stop(a.writes); /* writes in flight are answered while their calls exist */
    vs_rpc_server_stop(server, a.cfg.grace_ms);
    vs_coord_stop_recall(a.coord); /* its worker updates gauges of the registry destroyed below */
    vs_coord_follow_stop(a.follow);
    vs_http_stop(http);
    vs_writes_destroy(a.writes); /* after /metrics: scrapes read its counts */
    vs_metrics_destroy(a.reg);
    vs_auth_destroy(a.auth);
    vs_coord_destroy(a.coord);
    vs_view_destroy(a.view);
    vs_health_destroy(a.health);
    vs_log(VS_LOG_INFO, "stopped");
    return 0;
}
