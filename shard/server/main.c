/* main.c: vecshard-shard, the shard server process. Parses flags and wires the modules together:
 * shard.h (versions, requests), rpc.h + health.h (gRPC), membership.h (etcd), metrics (HTTP /metrics).
 *
 * Start-up: the gRPC server and /metrics come up first (health NOT_SERVING, state LOADING, registered
 * in etcd as LOADING), the versions load on a loader thread, then the active one is switched on and
 * health flips to SERVING. SIGTERM/SIGINT: DRAINING (health NOT_SERVING, record updated), the lease is
 * revoked (the record disappears), watchers are closed, in-flight calls finish within --grace-ms, exit 0.
 * Signals are taken synchronously by sigwait in the main thread, never in a handler. */
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
#include "common/cli/ident.h"
#include "common/cli/timing.h"
#include "common/log.h"
#include "common/net/health.h"
#include "common/net/rpc.h"
#include "common/net/wlog.h"
#include "common/net/serve.h"
#include "shard/server/follow.h"
#include "shard/server/logfollow.h"
#include "common/cluster/manifest.h"
#include "common/cluster/records.h"
#include "shard/server/membership.h"
#include "shard/server/metrics.h"
#include "shard/server/shard.h"

#define MAX_MANIFESTS VS_SHARD_MAX_VERSIONS

typedef struct config {
    const char *listen, *advertise, *metrics_listen, *cluster, *replica_id, *etcd, *active, *port_file;
    const char *nats_url; /* the write log (fresh writes); NULL = the shard serves built versions only */
    long fresh_capacity;
    const char *manifests[MAX_MANIFESTS];
    size_t n_manifests;
    long partition;
    long lease_ttl_s, threads, max_batch, grace_ms, debug_delay_ms, memory_limit_mb, max_queue_ms;
    double slow_request_ms;
    int skip_crc;
    int refine_on_disk;                  /* --refine-on-disk */
    double scrub_mb_per_s, scrub_interval_h; /* its scrub */
    vs_rpc_tls_t tls;         /* --tls-*: tls.cert_file set = TLS on */
    const char *tls_clients;  /* --tls-allowed-clients: certificate names that may Search */
    const char *zone;         /* --zone: published in the record; coordinators prefer their own zone */
    int tls_clients_set;
} config_t;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-shard (--manifest FILE | --etcd URLS) --partition N [options]\n"
        "Serves partition N of one or more index versions over gRPC (vecshard.v1.Shard, grpc.health.v1).\n"
        "\n"
        "  --listen ADDR        gRPC address (default 0.0.0.0:50051; port 0 = ephemeral)\n"
        "  --advertise ADDR     address published in etcd (default: the listen address with its port,\n"
        "                       the host name when listening on 0.0.0.0)\n"
        "  --metrics-listen A   HTTP address for /metrics and /healthz (default 0.0.0.0:9100; 'none' = off)\n"
        "  --manifest FILE      an index version's manifest.json (repeatable, up to %d)\n"
        "  --partition N        the partition of every version this shard serves\n"
        "  --active VERSION     version answering requests that name none (default: the last manifest's)\n"
        "  --cluster NAME       cluster name in etcd keys (default 'default')\n"
        "  --replica-id ID      this replica's id (default: the host name)\n"
        "  --etcd URLS          etcd client URLs, comma-separated: publishes membership and follows the\n"
        "                       versions etcd says to hold (vecshard deploy/activate/rollback)\n"
        "  --lease-ttl S        etcd lease TTL in seconds (default 10; kept alive every TTL/3)\n"
        "  --zone NAME          this replica's failure zone, published in its record: coordinators started\n"
        "                       with the same --zone send to it first (default: none)\n"
        "  --nats-url URL       the cluster's write log (NATS JetStream, stream VS_<cluster>): IVF versions\n"
        "                       apply upserts and deletes from it, searchable at once (default: off)\n"
        "  --fresh-capacity N   ids each version may take from the log before a version folding the log\n"
        "                       replaces it (default 1000000; with --nats-url)\n"
        "  --memory-limit-mb N  memory this shard may use, reported in its record so that `vecshard deploy`\n"
        "                       refuses a version that does not fit (default: the cgroup limit, else RAM)\n"
        "  --threads N          gRPC worker threads (default: CPUs)\n"
        "  --max-batch N        queries per request (default %u)\n"
        "  --grace-ms MS        on SIGTERM, time in-flight calls get to finish (default 10000)\n"
        "  --max-queue-ms MS    a Search that waited longer than MS for a worker is refused with\n"
        "                       RESOURCE_EXHAUSTED instead of served late; batch, recall and canary calls\n"
        "                       after MS/4 (default %d; 0 = never; docs/reliability.md)\n"
        "  --skip-crc           do not check partition files' CRC32C against the manifest at load\n"
        "  --refine-on-disk     the disk tier: IVF refine vectors stay in the index file and are read per\n"
        "                       query with O_DIRECT (io_uring), not loaded; codes, ids and lists stay in\n"
        "                       memory. The refine section is checked in the background (the scrub); a\n"
        "                       version whose check fails goes FAILED (docs/operations.md, \"Disk tier\")\n"
        "  --scrub-mb-per-s N   the scrub's read rate (default 64)\n"
        "  --scrub-interval-h H read each refine section again every H hours (default 24)\n"
        "  --port-file FILE     write the bound ports (\"grpc=P\\nmetrics=Q\\n\") once listening\n"
        "  --log-format F       log records as text (default) or json (one JSON object per line)\n"
        "  --tls-cert FILE      serve mutual TLS with this PEM certificate chain (with --tls-key and\n"
        "                       --tls-client-ca); default: plain text\n"
        "  --tls-key FILE       its private key\n"
        "  --tls-client-ca FILE clients must present a certificate this CA signs. Search is answered\n"
        "                       only for the names of --tls-allowed-clients; Info and\n"
        "                       health for any certificate of the CA. Also the roots this shard trusts when\n"
        "                       it asks another replica whether it holds its membership key\n"
        "  --tls-allowed-clients NAMES  comma-separated certificate names (CN, else first SAN) allowed\n"
        "                       to Search (default vecshard-coordinator)\n"
        "  --tls-refresh-s S    re-read the TLS files every S seconds: rotate certificates by replacing\n"
        "                       the files (default %d)\n"
        "  --slow-request-ms MS log searches slower than MS with the request ids they carry (at most 5\n"
        "                       records per 10 s; default 0 = off)\n"
        "  --debug-delay-ms MS  fault tests only: every Search waits MS before running\n"
        "  -h, --help           this help\n"
        "\n"
        "Health (grpc.health.v1.Health/Check): \"\" and \"vecshard.v1.Shard\" are SERVING once the active\n"
        "version is loaded and until draining; \"liveness\" is SERVING while the process runs.\n",
        MAX_MANIFESTS, VS_SHARD_DEFAULT_MAX_BATCH, VS_SHARD_DEFAULT_MAX_QUEUE_MS, VS_RPC_TLS_DEFAULT_REFRESH_S);
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char err[VS_ERR_LEN];
    long long v;
    if (vs_cli_parse_int(flag, s, lo, hi, &v, err) != VS_OK) {
        fprintf(stderr, "vecshard-shard: %s\n", err);
        return -1;
    }
    *out = (long)v;
    return 0;
}

static int parse_args(int argc, char **argv, config_t *c)
{
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"advertise", required_argument, 0, 'A'},
                                         {"metrics-listen", required_argument, 0, 'M'},
                                         {"manifest", required_argument, 0, 'm'},
                                         {"partition", required_argument, 0, 'p'},
                                         {"active", required_argument, 0, 'a'},
                                         {"cluster", required_argument, 0, 'c'},
                                         {"replica-id", required_argument, 0, 'r'},
                                         {"etcd", required_argument, 0, 'e'},
                                         {"lease-ttl", required_argument, 0, 'T'},
                                         {"threads", required_argument, 0, 't'},
                                         {"max-batch", required_argument, 0, 'B'},
                                         {"grace-ms", required_argument, 0, 'g'},
                                         {"skip-crc", no_argument, 0, 'S'},
                                         {"port-file", required_argument, 0, 'P'},
                                         {"log-format", required_argument, 0, 'L'},
                                         {"slow-request-ms", required_argument, 0, 'R'},
                                         {"debug-delay-ms", required_argument, 0, 'D'},
                                         {"max-queue-ms", required_argument, 0, 'Q'},
                                         {"memory-limit-mb", required_argument, 0, 'X'},
                                         {"nats-url", required_argument, 0, 'N'},
                                         {"fresh-capacity", required_argument, 0, 'F'},
                                         {"tls-cert", required_argument, 0, 256},
                                         {"tls-key", required_argument, 0, 257},
                                         {"tls-client-ca", required_argument, 0, 258},
                                         {"tls-allowed-clients", required_argument, 0, 259},
                                         {"tls-refresh-s", required_argument, 0, 260},
                                         {"zone", required_argument, 0, 261},
                                         {"refine-on-disk", no_argument, 0, 262},
                                         {"scrub-mb-per-s", required_argument, 0, 263},
                                         {"scrub-interval-h", required_argument, 0, 264},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    *c = (config_t){.listen = "0.0.0.0:50051",
                    .metrics_listen = "0.0.0.0:9100",
                    .cluster = "default",
                    .partition = -1,
                    .lease_ttl_s = 10,
                    .grace_ms = 10000,
                    .max_queue_ms = VS_SHARD_DEFAULT_MAX_QUEUE_MS,
                    .fresh_capacity = 1000000,
                    .scrub_mb_per_s = 64,
                    .scrub_interval_h = 24,
                    .tls_clients = "vecshard-coordinator"};
    int o;
    char xerr[VS_ERR_LEN];
    if (vs_cli_exact_long_options(argc, argv, opts, xerr) != 0) {
        fprintf(stderr, "vecshard-shard: %s\n", xerr);
        return 2;
    }
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            c->listen = optarg;
            break;
        case 'A':
            c->advertise = optarg;
            break;
        case 'M':
            c->metrics_listen = optarg;
            break;
        case 'm':
            if (c->n_manifests == MAX_MANIFESTS) {
                fprintf(stderr, "vecshard-shard: at most %d --manifest\n", MAX_MANIFESTS);
                return 2;
            }
            c->manifests[c->n_manifests++] = optarg;
            break;
        case 'p':
            if (parse_long("--partition", optarg, 0, 65535, &c->partition))
                return 2;
            break;
        case 'a':
            c->active = optarg;
            break;
        case 'c':
            c->cluster = optarg;
            break;
        case 'r':
            c->replica_id = optarg;
            break;
        case 'e':
            c->etcd = optarg;
            break;
        case 'T':
            if (parse_long("--lease-ttl", optarg, 1, 3600, &c->lease_ttl_s))
                return 2;
            break;
        case 'X':
            if (parse_long("--memory-limit-mb", optarg, 1, 1L << 30, &c->memory_limit_mb))
                return 2;
            break;
        case 't':
            if (parse_long("--threads", optarg, 1, 256, &c->threads))
                return 2;
            break;
        case 'B':
            if (parse_long("--max-batch", optarg, 1, 1000000, &c->max_batch))
                return 2;
            break;
        case 'g':
            if (parse_long("--grace-ms", optarg, 0, 3600000, &c->grace_ms))
                return 2;
            break;
        case 'S':
            c->skip_crc = 1;
            break;
        case 262:
            c->refine_on_disk = 1;
            break;
        case 263:
        case 264: {
            char *end;
            double v = strtod(optarg, &end);
            if (*end || !(v > 0 && v <= 1e6)) {
                fprintf(stderr, "vecshard-shard: %s '%s' must be a number above 0\n",
                        o == 263 ? "--scrub-mb-per-s" : "--scrub-interval-h", optarg);
                return 2;
            }
            *(o == 263 ? &c->scrub_mb_per_s : &c->scrub_interval_h) = v;
            break;
        }
        case 'P':
            c->port_file = optarg;
            break;
        case 'L': {
            vs_log_format f;
            if (vs_log_parse_format(optarg, &f) != 0) {
                fprintf(stderr, "vecshard-shard: --log-format must be text or json, not '%s'\n", optarg);
                return 2;
            }
            vs_log_set_format(f);
            break;
        }
        case 'D':
            if (parse_long("--debug-delay-ms", optarg, 0, 600000, &c->debug_delay_ms))
                return 2;
            break;
        case 'Q':
            if (parse_long("--max-queue-ms", optarg, 0, 600000, &c->max_queue_ms))
                return 2;
            break;
        case 'N':
            c->nats_url = optarg;
            break;
        case 'F':
            if (parse_long("--fresh-capacity", optarg, 1, 1L << 32, &c->fresh_capacity))
                return 2;
            break;
        case 'R': {
            char e[VS_ERR_LEN];
            if (vs_cli_parse_double("--slow-request-ms", optarg, 0, 3600000, &c->slow_request_ms, e) !=
                VS_OK) {
                fprintf(stderr, "vecshard-shard: %s\n", e);
                return 2;
            }
            break;
        }
        case 256:
            c->tls.cert_file = optarg;
            break;
        case 257:
            c->tls.key_file = optarg;
            break;
        case 258:
            c->tls.ca_file = optarg;
            break;
        case 261:
            c->zone = optarg;
            break;
        case 259:
            c->tls_clients = optarg;
            c->tls_clients_set = 1;
            break;
        case 260: {
            long v;
            if (parse_long("--tls-refresh-s", optarg, 1, 86400, &v))
                return 2;
            c->tls.refresh_s = (unsigned)v;
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
        fprintf(stderr, "vecshard-shard: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if ((c->n_manifests == 0 && !c->etcd) || c->partition < 0) {
        fprintf(stderr, "vecshard-shard: --partition and --manifest or --etcd are required (see --help)\n");
        return 2;
    }
    if ((c->tls.cert_file || c->tls.key_file || c->tls.ca_file) &&
        !(c->tls.cert_file && c->tls.key_file && c->tls.ca_file)) {
        /* TLS without client certificates would let anyone search around the coordinator's tokens */
        fprintf(stderr, "vecshard-shard: TLS needs --tls-cert, --tls-key and --tls-client-ca together\n");
        return 2;
    }
    if (c->tls_clients_set && !c->tls.ca_file) {
        fprintf(stderr, "vecshard-shard: --tls-allowed-clients needs --tls-client-ca (mutual TLS)\n");
        return 2;
    }
    if (c->zone && (strlen(c->zone) > VS_ZONE_MAX || !vs_version_name_valid(c->zone))) {
        fprintf(stderr, "vecshard-shard: --zone '%s' must match [A-Za-z0-9._-]{1,64}\n", c->zone);
        return 2;
    }
    if (!vs_version_name_valid(c->cluster)) {
        fprintf(stderr, "vecshard-shard: --cluster '%s' must match [A-Za-z0-9._-]{1,64}\n", c->cluster);
        return 2;
    }
    if (c->nats_url && !vs_wlog_cluster_valid(c->cluster)) {
        fprintf(stderr,
                "vecshard-shard: --nats-url needs a --cluster name without '.' (it names the NATS stream), "
                "not '%s'\n",
                c->cluster);
        return 2;
    }
    return 0;
}

typedef struct app {
    config_t cfg;
    vs_shard_t *shard;
    vs_health_t *health;
    vs_membership_t *members;
    vs_follow_t *follow;       /* started by the loader once the --manifest versions are loaded */
    pthread_mutex_t follow_mu; /* follow, stopping */
    int stopping;
    vs_shard_metrics_t *metrics;
    pthread_mutex_t members_mu; /* members is stopped by main while the loader may publish */
    atomic_int loader_done;
    int load_failed;
    atomic_int fatal; /* a --manifest failed to load: the process exits 1 (main, after draining) */
    volatile int scrub_stop; /* set by main at shutdown: the scrub thread ends */
} app_t;

static void publish(app_t *a)
{
    pthread_mutex_lock(&a->members_mu);
    if (a->members)
        vs_membership_update(a->members);
    pthread_mutex_unlock(&a->members_mu);
}

static void set_health(app_t *a);

/* --refine-on-disk: checks the refine sections left on disk, one pass a second (each version once after it
 * loads, then every --scrub-interval-h); a version that fails goes FAILED, and the member record says so
 * (coordinators stop routing to it). */
static void *scrub_main(void *arg)
{
    app_t *a = arg;
    while (!a->scrub_stop) {
        uint64_t f0, f1, e, v;
        vs_shard_scrub_counts(a->shard, &f0, &e, &v);
        vs_shard_scrub(a->shard, a->cfg.scrub_mb_per_s * 1048576.0, a->cfg.scrub_interval_h * 3600.0,
                       &a->scrub_stop);
        vs_shard_scrub_counts(a->shard, &f1, &e, &v);
        if (f1 != f0) {
            set_health(a);
            publish(a);
        }
        for (int i = 0; i < 10 && !a->scrub_stop; i++)
            usleep(100000);
    }
    return NULL;
}

/* A version's fresh fill crossed a step: the member record says so. */
static void on_fill(void *user)
{
    publish(user);
}

/* The follower changed what the shard holds or serves. */
static void on_follow_change(void *user)
{
    app_t *a = user;
    set_health(a);
    publish(a);
}

static void set_health(app_t *a)
{
    vs_health_status st =
        vs_shard_get_state(a->shard) == VS_SHARD_SERVING ? VS_HEALTH_SERVING : VS_HEALTH_NOT_SERVING;
    vs_health_set(a->health, "", st);
    vs_health_set(a->health, "vecshard.v1.Shard", st);
}

static void *loader_main(void *arg)
{
    app_t *a = arg;
    char err[VS_ERR_LEN];
    char last[VS_NAME_LEN] = "";
    for (size_t i = 0; i < a->cfg.n_manifests; i++) {
        vs_log(VS_LOG_INFO, "loading partition %ld from %s", a->cfg.partition, a->cfg.manifests[i]);
        char name[VS_NAME_LEN];
        vs_status st = vs_shard_load(a->shard, a->cfg.manifests[i], (uint32_t)a->cfg.partition, name, err);
        if (st != VS_OK) {
            /* a --manifest is the operator's explicit instruction: failing it is failing to start, said
             * once with the reason, not a shard that stays LOADING (NOT_SERVING) forever */
            vs_log(VS_LOG_ERROR, "load %s: %s (%s); exiting", a->cfg.manifests[i], err, vs_status_name(st));
            a->load_failed = 1;
            atomic_store(&a->fatal, 1);
            publish(a);
            atomic_store(&a->loader_done, 1);
            kill(getpid(), SIGTERM);
            return NULL;
        } else {
            snprintf(last, sizeof last, "%s", name);
            vs_log(VS_LOG_INFO, "version %s partition %ld is READY", last, a->cfg.partition);
        }
        publish(a);
    }
    const char *active = a->cfg.active ? a->cfg.active : last;
    if (*active) {
        vs_status st = vs_shard_activate(a->shard, active, err);
        if (st != VS_OK)
            vs_log(VS_LOG_ERROR, "activate %s: %s", active, err);
        else
            vs_log(VS_LOG_INFO, "serving version %s partition %ld", active, a->cfg.partition);
    } else if (!a->cfg.etcd) {
        vs_log(VS_LOG_ERROR, "no version could be loaded; staying LOADING (health NOT_SERVING)");
    }
    set_health(a);
    publish(a);
    /* only now follow etcd: the operator's --manifest versions are loaded first, so a version of the same
     * name in etcd never races them (the follower sees it held) */
    pthread_mutex_lock(&a->follow_mu);
    vs_status fst = VS_OK;
    if (a->cfg.etcd && !a->stopping)
        fst = vs_follow_start(a->cfg.etcd, a->cfg.cluster, (uint32_t)a->cfg.partition, a->shard,
                              on_follow_change, a, &a->follow, err);
    pthread_mutex_unlock(&a->follow_mu);
    if (fst != VS_OK) {
        vs_log(VS_LOG_ERROR, "etcd: following versions: %s; exiting", err);
        atomic_store(&a->fatal, 1);
        kill(getpid(), SIGTERM);
    }
    atomic_store(&a->loader_done, 1);
    return NULL;
}

/* ---- RPC handlers: bytes in, bytes out; everything else is in shard.c ---- */

static void reply_status(vs_rpc_reply_t *reply, vs_status st, const char *err)
{
    reply->code = vs_status_grpc_code(st);
    snprintf(reply->message, sizeof reply->message, "%s", err);
}

static void on_search(void *user, const vs_rpc_call_t *call, const uint8_t *req, size_t len,
                      vs_rpc_reply_t *reply)
{
    app_t *a = user;
    char err[VS_ERR_LEN] = "";
    double queued = vs_rpc_call_queued_s(call);
    if (queued >= 0) {
        vs_overload_metrics_t *om = vs_shard_metrics_overload(a->metrics);
        vs_histogram_observe(om->queue, queued);
        vs_priority prio;
        if (vs_overload_queued_too_long(queued, (double)a->cfg.max_queue_ms * 1e-3, req, len,
                                        VS_SHARD_SEARCH_PRIORITY_FIELD, "shard", &prio, &reply->retry_after_ms,
                                        reply->message)) {
            vs_overload_metrics_shed(om, "queue", prio);
            reply->code = VS_GRPC_RESOURCE_EXHAUSTED;
            return;
        }
    }
    if (a->cfg.debug_delay_ms)
        usleep((useconds_t)a->cfg.debug_delay_ms * 1000);
    /* a read-your-writes wait ends with the call's deadline (less a little to answer in time) */
    int64_t left = vs_rpc_call_remaining_ms(call);
    vs_status st = vs_shard_search_pb_within(a->shard, req, len, left == INT64_MAX ? INT64_MAX : left - 5,
                                             &reply->body, &reply->body_len, err);
    if (st != VS_OK)
        reply_status(reply, st, err);
}

/* 1 when name is one of the comma-separated names in list. */
static int name_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

/* The server's authorize hook under mutual TLS: gRPC has already verified the client's certificate
 * against --tls-client-ca; Search is for the names of --tls-allowed-clients (the cluster's coordinators),
 * Info and health for any certificate of the CA (another replica's membership check, tools). */
static int authorize(void *user, const char *path, const vs_rpc_call_t *call, char msg[VS_ERR_LEN])
{
    const app_t *a = user;
    if (strcmp(path, "/vecshard.v1.Shard/Search") != 0)
        return 0;
    char name[256];
    if (vs_rpc_call_peer_name(call, name, sizeof name) < 0) {
        snprintf(msg, VS_ERR_LEN, "a client certificate is required");
        return VS_GRPC_UNAUTHENTICATED;
    }
    if (!name_listed(a->cfg.tls_clients, name)) {
        snprintf(msg, VS_ERR_LEN, "certificate '%.64s' may not search this shard (--tls-allowed-clients)",
                 name);
        return VS_GRPC_PERMISSION_DENIED;
    }
    return 0;
}

static void on_info(void *user, const vs_rpc_call_t *call, const uint8_t *req, size_t len,
                    vs_rpc_reply_t *reply)
{
    (void)call;
    app_t *a = user;
    char err[VS_ERR_LEN] = "";
    vs_status st = vs_shard_info_pb(a->shard, req, len, &reply->body, &reply->body_len, err);
    if (st != VS_OK)
        reply_status(reply, st, err);
}

/* The address coordinators dial: --advertise, else the listen host (the host name for 0.0.0.0). */
static void advertise_address(const config_t *c, int port, char *buf, size_t n)
{
    if (c->advertise) {
        snprintf(buf, n, "%s", c->advertise);
        return;
    }
    char host[256] = "localhost";
    const char *colon = strrchr(c->listen, ':');
    size_t hl = colon ? (size_t)(colon - c->listen) : strlen(c->listen);
    if (hl == 0 || (hl == 7 && strncmp(c->listen, "0.0.0.0", 7) == 0) ||
        (hl == 4 && strncmp(c->listen, "[::]", 4) == 0)) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
    } else {
        snprintf(host, sizeof host, "%.*s", (int)hl, c->listen);
    }
    snprintf(buf, n, "%s:%d", host, port);
}

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard-shard"))
        return 0;
    app_t a;
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.members_mu, NULL);
    pthread_mutex_init(&a.follow_mu, NULL);
    int rc = parse_args(argc, argv, &a.cfg);
    if (rc)
        return rc;
    vs_log_set_component("shard");

    /* Every thread created from here on inherits the blocked set; main takes them with sigwait. */
    sigset_t sigs;
    vs_serve_block_signals(&sigs);
    vs_serve_raise_fd_limit();

    char err[VS_ERR_LEN];
    char host[256];
    const char *replica = a.cfg.replica_id;
    if (!replica) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "shard");
        host[sizeof host - 1] = 0;
        replica = host;
    }
    if (!vs_version_name_valid(replica)) {
        fprintf(stderr, "vecshard-shard: replica id '%s' must match [A-Za-z0-9._-]{1,64}\n", replica);
        return 2;
    }

    /* manifests are read (and validated) before anything listens: a bad one is a configuration error */
    for (size_t i = 0; i < a.cfg.n_manifests; i++) {
        vs_manifest_t m;
        if (vs_manifest_load(a.cfg.manifests[i], &m, err) != VS_OK) {
            fprintf(stderr, "vecshard-shard: --manifest: %s\n", err);
            return 2;
        }
        int has = vs_manifest_partition(&m, (uint32_t)a.cfg.partition) != NULL;
        uint32_t np = m.n_partitions;
        vs_manifest_fini(&m);
        if (!has) {
            fprintf(stderr, "vecshard-shard: --manifest %s has no partition %ld (it has %u)\n",
                    a.cfg.manifests[i], a.cfg.partition, np);
            return 2;
        }
    }

    vs_status st = vs_health_create(&a.health, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-shard: %s\n", err);
        return 1;
    }
    vs_health_set(a.health, "liveness", VS_HEALTH_SERVING);
    vs_health_set(a.health, "", VS_HEALTH_NOT_SERVING);
    vs_health_set(a.health, "vecshard.v1.Shard", VS_HEALTH_NOT_SERVING);

    st = vs_shard_metrics_create(&a.metrics, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-shard: %s\n", err);
        return 1;
    }

    /* new per process start: a live holder of this replica id is told from a restarted one by it */
    char instance[VS_IDENT_RANDOM_CHARS + 1];
    vs_ident_random(instance);
    vs_shard_opts_t sho = {.cluster = a.cfg.cluster,
                           .instance_id = instance,
                           .replica_id = replica,
                           .max_batch = (size_t)a.cfg.max_batch,
                           .skip_crc = a.cfg.skip_crc,
                           .refine_on_disk = a.cfg.refine_on_disk,
                           .slow_request_ms = a.cfg.slow_request_ms,
                           .on_stage = vs_shard_metrics_on_stage,
                           .stage_user = a.metrics,
                           .fresh_capacity = a.cfg.nats_url ? (size_t)a.cfg.fresh_capacity : 0};
    st = vs_shard_create(&sho, &a.shard, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-shard: %s\n", err);
        return 1;
    }

    vs_rpc_method_t methods[4];
    methods[0] = (vs_rpc_method_t){.path = "/vecshard.v1.Shard/Search", .unary = on_search, .user = &a};
    methods[1] = (vs_rpc_method_t){.path = "/vecshard.v1.Shard/Info", .unary = on_info, .user = &a};
    vs_health_methods(a.health, &methods[2]);
    vs_rpc_server_opts_t so = {.address = a.cfg.listen,
                               .tls = a.cfg.tls.cert_file ? &a.cfg.tls : NULL,
                               .n_threads = (size_t)a.cfg.threads,
                               .on_done = vs_shard_metrics_on_call,
                               .on_done_user = a.metrics,
                               .authorize = a.cfg.tls.ca_file ? authorize : NULL,
                               .authorize_user = &a};
    vs_rpc_server_t *server = NULL;
    int port = 0;
    st = vs_rpc_server_start(&so, methods, 4, &server, &port, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-shard: %s\n", err);
        return 1;
    }
    char address[300];
    advertise_address(&a.cfg, port, address, sizeof address);

    vs_shard_set_address(a.shard, address);
    int metrics_port = 0;
    st = vs_shard_metrics_start(a.metrics, a.shard, a.health, a.cfg.metrics_listen, &metrics_port, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-shard: %s\n", err);
        return 1;
    }
    vs_log(VS_LOG_INFO, "listening on %s (port %d), advertised as %s; metrics on port %d", a.cfg.listen, port,
           address, metrics_port);

    if (a.cfg.etcd) {
        vs_membership_opts_t mo = {.endpoints = a.cfg.etcd,
                                   .cluster = a.cfg.cluster,
                                   .partition = (uint32_t)a.cfg.partition,
                                   .replica_id = replica,
                                   .instance_id = instance,
                                   .memory_limit_bytes = (uint64_t)a.cfg.memory_limit_mb << 20,
                                   .address = address,
                                   .tls = a.cfg.tls.cert_file ? &a.cfg.tls : NULL,
                                   .zone = a.cfg.zone,
                                   .ttl_s = a.cfg.lease_ttl_s};
        st = vs_membership_start(&mo, a.shard, &a.members, err);
        if (st != VS_OK) {
            vs_log(VS_LOG_ERROR, "etcd: %s", err);
            vs_rpc_server_stop(server, 0);
            return 1;
        }
        vs_shard_metrics_set_membership(a.metrics, a.members);
        vs_log(VS_LOG_INFO, "registered as %s (lease TTL %ld s)", vs_membership_key(a.members),
               a.cfg.lease_ttl_s);
    }
    if (a.cfg.port_file && vs_serve_write_port_file(a.cfg.port_file, port, metrics_port) != 0)
        vs_log(VS_LOG_WARN, "cannot write --port-file %s", a.cfg.port_file);

    pthread_t loader, scrubber;
    if (pthread_create(&loader, NULL, loader_main, &a) != 0) {
        vs_log(VS_LOG_ERROR, "cannot start the loader thread");
        return 1;
    }
    int scrubbing = a.cfg.refine_on_disk && pthread_create(&scrubber, NULL, scrub_main, &a) == 0;
    if (a.cfg.refine_on_disk && !scrubbing) {
        vs_log(VS_LOG_ERROR, "cannot start the scrub thread");
        return 1;
    }
    vs_logfollow_t *logf = NULL;
    if (a.cfg.nats_url) {
        vs_logfollow_opts_t lo = {
            .url = a.cfg.nats_url, .cluster = a.cfg.cluster, .on_fill = on_fill, .user = &a};
        st = vs_logfollow_start(&lo, a.shard, &logf, err);
        if (st != VS_OK) {
            vs_log(VS_LOG_ERROR, "%s", err);
            return 1;
        }
    }

    int sig = 0;
    sigwait(&sigs, &sig);
    vs_log(VS_LOG_INFO, "%s: draining (grace %ld ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT", a.cfg.grace_ms);
    int loaded = atomic_load(&a.loader_done);
    pthread_mutex_lock(&a.follow_mu);
    a.stopping = 1;
    vs_follow_t *follow = a.follow;
    a.follow = NULL;
    pthread_mutex_unlock(&a.follow_mu);
    vs_follow_stop(follow); /* a load in progress finishes first */
    vs_logfollow_stop(logf);
    a.scrub_stop = 1;
    if (scrubbing)
        pthread_join(scrubber, NULL);
    vs_shard_drain(a.shard);
    set_health(&a);
    publish(&a);
    pthread_mutex_lock(&a.members_mu);
    vs_shard_metrics_set_membership(a.metrics, NULL);
    vs_membership_stop(a.members); /* revoke: the record disappears now */
    a.members = NULL;
    pthread_mutex_unlock(&a.members_mu);
    vs_health_close_watchers(a.health);
    vs_rpc_server_stop(server, a.cfg.grace_ms);
    vs_shard_metrics_stop(a.metrics);
    if (loaded) {
        pthread_join(loader, NULL);
        vs_shard_destroy(a.shard);
    } /* else: a load is running; the process exits without waiting for it. */
    vs_health_destroy(a.health);
    vs_log(VS_LOG_INFO, "stopped");
    return atomic_load(&a.fatal) ? 1 : 0;
}
