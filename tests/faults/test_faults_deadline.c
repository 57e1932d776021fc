/* test_faults_deadline: deadlines kept (issue 14, goal 3) on a real local cluster: etcd, 2 partitions x 1
 * replica, a coordinator. With partition 1's only shard hung (SIGSTOP), every call with a 300 ms deadline
 * must come back before it: a partial answer (coverage 1 of 2, the reason named) when partial answers are
 * allowed, a clear UNAVAILABLE with min_coverage 1, never DEADLINE_EXCEEDED. A batch whose answer cannot
 * fit the 64 MiB message limit is refused at once, before any search. Partial answers are logged with the
 * request id the client gave. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "tests/faults/harness.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define D 16
#define DEADLINE_MS 300

typedef struct answer {
    int code;
    double ms;
    int partial, answered, total;
    char msg[VS_ERR_LEN];
} answer_t;

static answer_t ask(vs_fault_cluster_t *c, const float *q, size_t nq, uint32_t k, float min_coverage,
                    int64_t deadline_ms)
{
    answer_t a = {.code = -1};
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", c->coord.grpc_port);
    vs_rpc_channel_t *ch = NULL;
    if (vs_rpc_channel_create(target, 0, &ch, a.msg) != VS_OK)
        return a;
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    r.dim = D;
    r.queries = (float *)q;
    r.n_queries = nq * D;
    r.k = k;
    r.min_coverage = min_coverage;
    static int n_asked;
    char rid[32];
    snprintf(rid, sizeof rid, "deadline-%d", n_asked++);
    r.request_id = rid;
    size_t len = vecshard__v1__search_request__get_packed_size(&r), blen = 0;
    uint8_t *buf = malloc(len), *body = NULL;
    vecshard__v1__search_request__pack(&r, buf);
    double t0 = vs_now_s();
    if (vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, len, deadline_ms, &a.code, a.msg, &body,
                          &blen) != VS_OK)
        a.code = -1;
    a.ms = (vs_now_s() - t0) * 1e3;
    if (a.code == 0) {
        Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, blen, body);
        if (resp && resp->coverage) {
            a.partial = resp->coverage->partial;
            a.answered = (int)resp->coverage->partitions_answered;
            a.total = (int)resp->coverage->partitions_total;
        }
        if (resp)
            vecshard__v1__search_response__free_unpacked(resp, NULL);
    }
    free(body);
    free(buf);
    vs_rpc_channel_destroy(ch);
    return a;
}

int main(void)
{
    const char *dir = strdup(vs_test_tmpdir("faults_deadline"));
    static vs_test_version_t v1;
    char err[VS_ERR_LEN];
    if (vs_test_version_build(dir, "v1", "IVF16,Flat", VS_METRIC_L2, 4000, D, 2, 30, 21, &v1, err) != VS_OK) {
        fprintf(stderr, "v1: %s\n", err);
        return 1;
    }
    vs_fault_cluster_t c;
    int ok = vs_fault_start(&c, dir, "fd", 2, 1, &v1) == 0;
    CHECK(ok);
    if (!ok) {
        vs_fault_stop(&c, 1);
        return vs_test_finish();
    }
    c.queries_from = &v1;
    CHECK(vs_fault_wait_served_by(&c, "v1", 20));
    /* warm the coordinator's view of both replicas */
    for (int i = 0; i < 20; i++)
        ask(&c, v1.queries, 1, 10, 0, 2000);

    int f0 = vs_test_failures;
    vs_test_proc_signal(&c.shards[1], SIGSTOP); /* partition 1's only replica hangs */
    int n_ok = 0, n_deadline = 0, n_other = 0;
    double worst = 0;
    for (int i = 0; i < 50; i++) {
        answer_t a = ask(&c, v1.queries + (size_t)(i % 30) * D, 1, 10, 0, DEADLINE_MS);
        worst = a.ms > worst ? a.ms : worst;
        if (a.code == 0 && a.partial && a.answered == 1 && a.total == 2)
            n_ok++;
        else if (a.code == VS_GRPC_DEADLINE_EXCEEDED)
            n_deadline++;
        else if (++n_other <= 3)
            printf("  call %d: code %d partial %d answered %d of %d after %.1f ms: %.300s\n", i, a.code,
                   a.partial, a.answered, a.total, a.ms, a.msg);
    }
    printf("  partition 1 hung, 50 calls at a %d ms deadline: %d partial answers, %d DEADLINE_EXCEEDED, %d "
           "other; "
           "slowest %.1f ms\n",
           DEADLINE_MS, n_ok, n_deadline, n_other, worst);
    CHECK(n_ok == 50 && n_deadline == 0 && worst < DEADLINE_MS);
    answer_t u = ask(&c, v1.queries, 1, 10, 1.0f, DEADLINE_MS);
    printf("  min_coverage 1: code %d after %.1f ms: %.200s\n", u.code, u.ms, u.msg);
    CHECK(u.code == VS_GRPC_UNAVAILABLE && strstr(u.msg, "partition 1") && u.ms < DEADLINE_MS);
    /* the coordinator's log names the requests that got partial answers (rate-limited: the first ones) */
    size_t loglen = 0;
    char *log = (char *)vs_test_read_file(c.coord.log, &loglen);
    CHECKF(log && strstr(log, "request deadline-20: partial answer, 1 of 2 partitions"),
           "no log record of the partial answer to request deadline-20");
    free(log);
    vs_test_proc_signal(&c.shards[1], SIGCONT);
    vs_test_case_done("hung_partition", vs_test_failures == f0);

    f0 = vs_test_failures;
    size_t big = 10000;
    float *q = malloc(big * D * sizeof *q);
    for (size_t i = 0; i < big; i++)
        memcpy(q + i * D, v1.queries + (i % 30) * D, D * sizeof *q);
    answer_t b = ask(&c, q, big, 10000, 0, 5000);
    printf("  10,000 queries x k 10,000: code %d after %.1f ms: %.160s\n", b.code, b.ms, b.msg);
    CHECK(b.code == VS_GRPC_INVALID_ARGUMENT && strstr(b.msg, "message limit") && b.ms < 1000);
    free(q);
    vs_test_case_done("answer_too_large", vs_test_failures == f0);

    vs_fault_stop(&c, vs_test_failures > 0);
    vs_test_version_fini(&v1);
    if (vs_test_failures == 0)
        vs_test_cleanup("faults_deadline");
    return vs_test_finish();
}
