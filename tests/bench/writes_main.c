/* vecshard-bench-writes: fresh writes through a running cluster (issue 15). Sends Upserts to the coordinator
 * at --rate ids per second, --batch ids per request (default 1), vectors from --vectors (the base the version
 * was built from, ids = row numbers): a plain id re-writes row r under its own id r (the data stay the same,
 * so the query load's recall still compares with the base's ground truth, while the replicas do all the work
 * of a replacement: a tombstone and a fresh record); every --probe-every-th request puts its first row under
 * a new id
 * (--id-base + n) and, after its acknowledgement, searches with that vector (k 10) every --poll-ms (5) until
 * the new id is among the answers (insert -> searchable), then deletes it and searches until it is gone
 * (delete -> hidden). Prints the achieved write rate, the acknowledgement latency and both probe
 * latencies (p50, p99, max; from the acknowledgement and from the send), and the failures. One thread,
 * asynchronous calls (common/net/rpc.h vs_rpc_queue). Run the query load beside it
 * (tests/bench/run_writes.sh). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/flags.h"
#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/vecio.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define MAX_PROBES 100000

enum { K_WRITE, K_PROBE_IN, K_DELETE, K_PROBE_OUT };

typedef struct probe {
    int64_t id;
    const float *v;
    double sent, acked, found, del_sent, del_acked, gone;
    int state; /* 0 waiting ack, 1 probing in, 2 deleting, 3 probing out, 4 done, -1 failed */
    double next_poll;
} probe_t;

typedef struct tag {
    int kind;
    probe_t *p; /* probes; NULL for plain writes */
    double sent;
} tag_t;

static uint32_t g_dim;
static size_t g_k = 10;
static double g_poll_s = 0.005; /* --poll-ms */
static size_t g_probe_searches;

static uint8_t *pack_upsert(int64_t *ids, const float *v, size_t n, size_t *len)
{
    Vecshard__V1__UpsertRequest r = VECSHARD__V1__UPSERT_REQUEST__INIT;
    r.ids = ids;
    r.n_ids = n;
    r.dim = g_dim;
    r.vectors = (float *)v;
    r.n_vectors = n * g_dim;
    *len = vecshard__v1__upsert_request__get_packed_size(&r);
    uint8_t *b = malloc(*len);
    vecshard__v1__upsert_request__pack(&r, b);
    return b;
}

static uint8_t *pack_delete(int64_t id, size_t *len)
{
    Vecshard__V1__DeleteRequest r = VECSHARD__V1__DELETE_REQUEST__INIT;
    r.ids = &id;
    r.n_ids = 1;
    *len = vecshard__v1__delete_request__get_packed_size(&r);
    uint8_t *b = malloc(*len);
    vecshard__v1__delete_request__pack(&r, b);
    return b;
}

static uint8_t *pack_search(const float *v, size_t *len)
{
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    r.dim = g_dim;
    r.queries = (float *)v;
    r.n_queries = g_dim;
    r.k = (uint32_t)g_k;
    *len = vecshard__v1__search_request__get_packed_size(&r);
    uint8_t *b = malloc(*len);
    vecshard__v1__search_request__pack(&r, b);
    return b;
}

static int has_id(const uint8_t *body, size_t len, int64_t id)
{
    Vecshard__V1__SearchResponse *r = vecshard__v1__search_response__unpack(NULL, len, body);
    int found = 0;
    for (size_t i = 0; r && i < r->n_ids && !found; i++)
        found = r->ids[i] == id;
    if (r)
        vecshard__v1__search_response__free_unpacked(r, NULL);
    return found;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, size_t n)
{
    if (n == 0) {
        printf("%-34s none\n", what);
        return;
    }
    qsort(v, n, sizeof *v, cmp_d);
    printf("%-34s n %zu  p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", what, n, v[n / 2] * 1e3,
           v[(size_t)((double)(n - 1) * 0.99)] * 1e3, v[n - 1] * 1e3);
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: vecshard-bench-writes --coordinator ADDR --vectors FILE [--rate 1000] [--seconds 30]\n"
           "                             [--batch 1] [--probe-every 20] [--id-base 1000000000] [--k 10]\n"
           "                             [--poll-ms 5] [--offset F]\n"
           "Upserts --rate ids per second, --batch ids per request, through the coordinator for --seconds\n"
           "and measures, for every --probe-every-th request, searching every --poll-ms, how long until a "
           "search finds it and, after "
           "deleting it, until a\n"
           "search no longer does. --offset F is added to every vector (keeps the writes away from the\n"
           "data, so that the query load's recall against the base's ground truth still means something).\n");
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *vpath = NULL;
    long long rate = 1000, seconds = 30, every = 20, id_base = 1000000000, k = 10, batch = 1, poll_ms = 5;
    double offset = 0;
    static const struct option lo[] = {
        {"coordinator", 1, 0, 'c'}, {"vectors", 1, 0, 'v'}, {"rate", 1, 0, 'r'}, {"seconds", 1, 0, 's'},
        {"probe-every", 1, 0, 'p'}, {"id-base", 1, 0, 'i'}, {"k", 1, 0, 'k'},    {"offset", 1, 0, 'o'},
        {"batch", 1, 0, 'b'},       {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    char err[VS_ERR_LEN];
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        long long *dst = o == 'r'   ? &rate
                         : o == 's' ? &seconds
                         : o == 'p' ? &every
                         : o == 'i' ? &id_base
                         : o == 'b' ? &batch
                         : o == 'P' ? &poll_ms
                                    : &k;
        switch (o) {
        case 'c':
            addr = optarg;
            break;
        case 'v':
            vpath = optarg;
            break;
        case 'r':
        case 's':
        case 'p':
        case 'i':
        case 'k':
        case 'b':
        case 'P':
            if (vs_cli_parse_int(o == 'r'   ? "--rate"
                                 : o == 's' ? "--seconds"
                                 : o == 'p' ? "--probe-every"
                                 : o == 'i' ? "--id-base"
                                 : o == 'b' ? "--batch"
                                 : o == 'P' ? "--poll-ms"
                                            : "--k",
                                 optarg, 1, 1ll << 60, dst, err) != VS_OK) {
                fprintf(stderr, "vecshard-bench-writes: %s\n", err);
                return 2;
            }
            break;
        case 'o':
            if (vs_cli_parse_double("--offset", optarg, -1e6, 1e6, &offset, err) != VS_OK) {
                fprintf(stderr, "vecshard-bench-writes: %s\n", err);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!addr || !vpath) {
        usage(stderr);
        return 2;
    }
    g_k = (size_t)k;
    g_poll_s = (double)poll_ms / 1000.0;
    size_t nv;
    float *vecs;
    if (vs_vecfile_load_f32(vpath, &nv, &g_dim, &vecs, err) != VS_OK || nv == 0) {
        fprintf(stderr, "vecshard-bench-writes: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < nv * g_dim; i++) /* away from the data, so queries never meet the writes */
        vecs[i] += (float)offset;
    vs_rpc_channel_t *ch = NULL;
    vs_rpc_queue_t *q = NULL;
    if (vs_rpc_channel_create(addr, 0, &ch, err) != VS_OK || vs_rpc_queue_create(&q, err) != VS_OK) {
        fprintf(stderr, "vecshard-bench-writes: %s\n", err);
        return 1;
    }
    size_t total = (size_t)(rate * seconds), n_probes = 0, nb = (size_t)batch, requests = 0;
    int64_t *ids = malloc(nb * sizeof *ids);
    float *bv = malloc(nb * g_dim * sizeof *bv);
    probe_t *probes = calloc(total / (size_t)every + 1, sizeof *probes);
    double *ack = malloc(total * sizeof *ack);
    size_t n_ack = 0, sent = 0, failed = 0, probe_failed = 0;
    double t0 = vs_now_s(), end_probe = 0;
    size_t len;
    uint8_t *b;
    while (sent < total || vs_rpc_queue_in_flight(q) > 0) {
        double now = vs_now_s();
        while (sent < total && t0 + (double)sent / (double)rate <= now) { /* the open-loop schedule */
            tag_t *t = calloc(1, sizeof *t);
            t->kind = K_WRITE;
            t->sent = now;
            /* a plain id re-writes base row r under its own id (r = its row number): the data do not
             * change, the replicas do all the work of a replacement; a probe writes row r under a new id */
            size_t n = total - sent < nb ? total - sent : nb;
            int probe = requests % (size_t)every == 0;
            for (size_t i = 0; i < n; i++) {
                size_t row = (sent + i) % nv;
                ids[i] = probe && i == 0 ? id_base + (int64_t)sent : (int64_t)row;
                memcpy(bv + i * g_dim, vecs + row * g_dim, g_dim * sizeof *bv);
            }
            if (probe) {
                probe_t *p = &probes[n_probes++];
                p->id = ids[0];
                p->v = vecs + (sent % nv) * g_dim;
                p->sent = now;
                t->p = p;
            }
            b = pack_upsert(ids, bv, n, &len);
            if (vs_rpc_queue_call(q, ch, "/vecshard.v1.Coordinator/Upsert", b, len, 10000, t, err) != VS_OK) {
                failed++;
                free(t);
            }
            free(b);
            sent += n;
            requests++;
        }
        /* probes due for another search */
        for (size_t i = 0; i < n_probes; i++) {
            probe_t *p = &probes[i];
            if ((p->state != 1 && p->state != 3) || p->next_poll > now || p->next_poll < 0)
                continue;
            tag_t *t = calloc(1, sizeof *t);
            t->kind = p->state == 1 ? K_PROBE_IN : K_PROBE_OUT;
            t->p = p;
            t->sent = now;
            p->next_poll = -1; /* one search in flight per probe */
            g_probe_searches++;
            b = pack_search(p->v, &len);
            if (vs_rpc_queue_call(q, ch, "/vecshard.v1.Coordinator/Search", b, len, 5000, t, err) != VS_OK) {
                p->state = -1;
                free(t);
            }
            free(b);
        }
        vs_rpc_result_t res;
        double next = sent < total ? t0 + (double)sent / (double)rate : now + 0.002;
        if (!vs_rpc_queue_next(q, next < now + 0.002 ? next : now + 0.002, &res))
            continue;
        tag_t *t = res.user;
        probe_t *p = t->p;
        double done = vs_now_s();
        if (t->kind == K_WRITE) {
            if (res.code == 0)
                ack[n_ack++] = done - t->sent;
            else
                failed++; /* requests */
            if (p && res.code == 0) {
                p->acked = done;
                p->state = 1;
                p->next_poll = done;
            } else if (p) {
                p->state = -1;
            }
        } else if (t->kind == K_PROBE_IN || t->kind == K_PROBE_OUT) {
            int in = res.code == 0 && has_id(res.body, res.body_len, p->id);
            if (t->kind == K_PROBE_IN && in) {
                p->found = done;
                p->state = 2;
                tag_t *d = calloc(1, sizeof *d);
                d->kind = K_DELETE;
                d->p = p;
                d->sent = done;
                p->del_sent = done;
                b = pack_delete(p->id, &len);
                if (vs_rpc_queue_call(q, ch, "/vecshard.v1.Coordinator/Delete", b, len, 10000, d, err) !=
                    VS_OK) {
                    p->state = -1;
                    free(d);
                }
                free(b);
            } else if (t->kind == K_PROBE_OUT && res.code == 0 && !in) {
                p->gone = done;
                p->state = 4;
            } else if (done - (t->kind == K_PROBE_IN ? p->acked : p->del_acked) > 10.0) {
                p->state = -1; /* not seen within 10 s */
                probe_failed++;
            } else {
                p->next_poll = done + g_poll_s;
            }
        } else { /* K_DELETE */
            if (res.code == 0) {
                p->del_acked = done;
                p->state = 3;
                p->next_poll = done;
            } else {
                p->state = -1;
                probe_failed++;
            }
        }
        end_probe = done;
        free(res.body);
        free(t);
    }
    double wall = vs_now_s() - t0;
    (void)end_probe;
    double *a = malloc((n_probes + 1) * sizeof *a), *bb = malloc((n_probes + 1) * sizeof *bb),
           *c = malloc((n_probes + 1) * sizeof *c);
    size_t na = 0, nd = 0;
    for (size_t i = 0; i < n_probes; i++) {
        if (probes[i].found > 0) {
            a[na] = probes[i].found - probes[i].acked;
            bb[na++] = probes[i].found - probes[i].sent;
        }
        if (probes[i].gone > 0)
            c[nd++] = probes[i].gone - probes[i].del_acked;
    }
    printf(
        "writes sent %zu ids in %zu requests in %.1f s (%.0f ids/s), requests acknowledged %zu, failed %zu; "
        "probes %zu, failed %zu\n",
        sent, requests, wall, (double)sent / wall, n_ack, failed, n_probes, probe_failed);
    report("upsert acknowledged (from send)", ack, n_ack);
    report("insert -> searchable (from ack)", a, na);
    report("insert -> searchable (from send)", bb, na);
    report("delete -> hidden (from ack)", c, nd);
    printf("{\"writes\":%zu,\"rate\":%.1f,\"failed\":%zu,\"probes\":%zu,\"probe_failed\":%zu}\n", sent,
           (double)sent / wall, failed, n_probes, probe_failed);
    vs_rpc_queue_destroy(q);
    vs_rpc_channel_destroy(ch);
    free(vecs);
    free(probes);
    free(ids);
    free(bv);
    free(ack);
    free(a);
    free(bb);
    free(c);
    return failed || probe_failed ? 1 : 0;
}
