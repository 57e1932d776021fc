/* test_admit: the pure parts of overload control (issue 21), on a virtual clock.
 * - overload.h: priorities and their queue limits, the retry-after hint, the timeouts our clients send
 *   (rounded to what grpc-timeout carries exactly), the protobuf peek (present,
 *   absent, last occurrence wins, other wire types skipped, truncated and malformed input refused).
 * - quotas: a client's bucket refills at its rate and bounds bursts; another client is not affected;
 *   "*" gives each other client its own bucket; a request larger than the burst passes only on a full
 *   bucket; the retry-after hint is the time until the request fits; bad specs are refused.
 * - vs_elimit_t: while it is used, the limit falls by 10 % per window in which more than 10 % of
 *   requests are late and rises when they are on time, never leaving [min, max]; an unused limit moves
 *   neither way; admission follows the limit and the share; an index whose unloaded latency is above the
 *   target is not throttled (3 x its latency); it never falls below the concurrency of the busiest
 *   on-time window of the last minute.
 * - vs_limit_t (per replica, gradient): steady latency lets a used limit grow; latency rising past 2 x
 *   the long-run average makes it fall; drops cut it by 10 %; it stays in [min, max]. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/net/overload.h"
#include "common/net/rpc_ucall.h"
#include "coordinator/admit.h"
#include "tests/testlib.h"

static void test_priorities(void)
{
    CHECK(strcmp(vs_priority_name(VS_PRIORITY_ONLINE), "online") == 0);
    CHECK(strcmp(vs_priority_name(3), "canary") == 0 && strcmp(vs_priority_name(99), "batch") == 0);
    CHECK(vs_priority_parse("recall") == VS_PRIORITY_RECALL && vs_priority_parse("urgent") == -1);
    CHECK(vs_priority_of(7) == VS_PRIORITY_BATCH && vs_priority_of(0) == VS_PRIORITY_ONLINE);
    CHECK(vs_overload_queue_limit_s(0.05, VS_PRIORITY_ONLINE) == 0.05);
    CHECK(fabs(vs_overload_queue_limit_s(0.05, VS_PRIORITY_BATCH) - 0.0125) < 1e-12);
    CHECK(isinf(vs_overload_queue_limit_s(0, VS_PRIORITY_ONLINE)));
    CHECK(vs_overload_retry_after_ms(0.0125) == 13 && vs_overload_retry_after_ms(0.001) == 10);
    CHECK(vs_overload_retry_after_ms(1e6) == 60000);
    /* timeouts as grpc-timeout carries them exactly */
    CHECK(vs_rpc_timeout_exact_ms(999) == 999 && vs_rpc_timeout_exact_ms(1999) == 1990);
    CHECK(vs_rpc_timeout_exact_ms(28497) == 28400 && vs_rpc_timeout_exact_ms(123456) == 123000);
    CHECK(vs_rpc_timeout_exact_ms(1) == 1 && vs_rpc_timeout_exact_ms(5000) == 5000);
}

static void test_peek(void)
{
    /* field 1 varint 150, field 2 bytes "abc", field 5 fixed32, field 14 varint 2, field 3 fixed64 */
    const uint8_t m[] = {0x08, 0x96, 0x01, 0x12, 3, 'a', 'b', 'c', 0x2d, 1, 2, 3, 4, 0x70, 2,
                         0x19, 1, 2, 3, 4, 5, 6, 7, 8};
    uint64_t v = 0;
    CHECK(vs_pb_peek_varint(m, sizeof m, 14, &v) == 1 && v == 2);
    CHECK(vs_pb_peek_varint(m, sizeof m, 1, &v) == 1 && v == 150);
    CHECK(vs_pb_peek_varint(m, sizeof m, 15, &v) == 0);
    CHECK(vs_pb_peek_varint(m, 0, 14, &v) == 0); /* an empty message: every field at its default */
    const uint8_t twice[] = {0x70, 1, 0x70, 3};
    CHECK(vs_pb_peek_varint(twice, sizeof twice, 14, &v) == 1 && v == 3);
    CHECK(vs_pb_peek_varint(m, 6, 14, &v) == -1); /* cut inside the bytes field */
    const uint8_t bad_type[] = {0x0b, 0};         /* wire type 3 (groups): refused */
    CHECK(vs_pb_peek_varint(bad_type, sizeof bad_type, 14, &v) == -1);
    const uint8_t long_varint[] = {0x70, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(vs_pb_peek_varint(long_varint, sizeof long_varint, 14, &v) == -1);
}

static void test_quotas(void)
{
    char err[VS_ERR_LEN];
    vs_quota_spec_t s[3];
    CHECK(vs_quota_parse("alice=10:20", &s[0], err) == VS_OK && s[0].qps == 10 && s[0].burst == 20);
    CHECK(vs_quota_parse("*=5", &s[1], err) == VS_OK && s[1].burst == 5);
    CHECK(vs_quota_parse("a=b=2", &s[2], err) == VS_OK && strcmp(s[2].name, "a=b") == 0);
    CHECK(vs_quota_parse("alice", &s[2], err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "NAME=QPS"));
    CHECK(vs_quota_parse("alice=0", &s[2], err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_quota_parse("alice=x", &s[2], err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_quota_parse("=3", &s[2], err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_quota_parse("alice=3:-1", &s[2], err) == VS_ERR_INVALID_ARGUMENT);

    vs_quotas_t *q = vs_quotas_create(s, 2);
    CHECK(q != NULL);
    int64_t ra;
    double qps;
    int ok = 0;
    for (int i = 0; i < 30; i++) /* at t=0 the burst of 20 passes, the rest waits */
        ok += vs_quotas_take(q, "alice", 1, 0.0, &ra, &qps);
    CHECK(ok == 20);
    CHECK(!vs_quotas_take(q, "alice", 1, 0.0, &ra, &qps) && ra == 100 && qps == 10);
    CHECK(!vs_quotas_take(q, "alice", 1, 0.05, &ra, &qps) && ra == 50); /* half a token refilled */
    CHECK(vs_quotas_take(q, "alice", 1, 0.1, &ra, &qps));
    CHECK(!vs_quotas_take(q, "alice", 1, 0.1, &ra, &qps));
    CHECK(vs_quotas_take(q, "alice", 10, 1.1, &ra, &qps)); /* 1 s later: 10 tokens */
    /* "*": bob and carol each get 5 */
    ok = 0;
    for (int i = 0; i < 8; i++)
        ok += vs_quotas_take(q, "bob", 1, 0.0, &ra, &qps) + vs_quotas_take(q, "carol", 1, 0.0, &ra, &qps);
    CHECK(ok == 10);
    /* a request larger than the burst passes on a full bucket, spending all of it */
    CHECK(vs_quotas_take(q, "dave", 50, 0.0, &ra, &qps));
    CHECK(!vs_quotas_take(q, "dave", 1, 0.0, &ra, &qps) && ra == 200);
    vs_quotas_destroy(q);

    q = vs_quotas_create(s, 1); /* no "*": others are not limited */
    for (int i = 0; i < 1000; i++)
        CHECK(vs_quotas_take(q, "eve", 100, 0.0, &ra, &qps));
    vs_quotas_destroy(q);
    CHECK(vs_quotas_take(NULL, "x", 1, 0, &ra, &qps) == 1);
}

/* n requests ending in [t, t + 0.1) with the given latency, with `used` in flight at an admission */
static void window(vs_elimit_t *l, double t, int n, double latency, double used)
{
    double lim;
    (void)vs_elimit_admit(l, used, 1.0, t, &lim);
    for (int i = 0; i < n; i++)
        vs_elimit_on_done(l, latency, 0, t + 0.1 * i / n);
}

static void test_elimit(void)
{
    vs_elimit_t *l = vs_elimit_create(0.010, 100, 4, 200);
    double lim;
    CHECK(vs_elimit_admit(l, 99, 1.0, 0, &lim) && lim == 100);
    CHECK(!vs_elimit_admit(l, 100, 1.0, 0, &lim));
    CHECK(!vs_elimit_admit(l, 25, 0.25, 0, &lim) && lim == 25); /* a sheddable request's share */
    CHECK(vs_elimit_admit(l, 0, 0.01, 0, &lim));                /* nothing in flight: always */
    /* 2 ms (the base latency), the limit used: it grows, not past 200 */
    double t = 0;
    for (int w = 0; w < 5; w++, t += 0.1)
        window(l, t, 20, 0.002, vs_elimit_get(l));
    double grown = vs_elimit_get(l);
    CHECK(grown > 100 && grown <= 200);
    for (int w = 0; w < 50; w++, t += 0.1)
        window(l, t, 20, 0.002, vs_elimit_get(l));
    CHECK(vs_elimit_get(l) == 200);
    /* 30 % of requests late while the limit is used: falls 10 % per window, not below 4 */
    grown = vs_elimit_get(l);
    for (int w = 0; w < 3; w++, t += 0.1) {
        window(l, t, 14, 0.005, vs_elimit_get(l));
        window(l, t, 6, 0.030, vs_elimit_get(l));
    }
    CHECK(vs_elimit_get(l) < grown * 0.82);
    double before = vs_elimit_get(l);
    for (int w = 0; w < 10; w++, t += 0.1) /* 50 ms, 25x the base of the last windows */
        window(l, t, 20, 0.050, vs_elimit_get(l));
    CHECK(fabs(vs_elimit_get(l) - before * pow(0.9, 10)) < 1e-6);
    for (int w = 0; w < 200; w++, t += 0.1) { /* refused for overload: late whatever their latency */
        double lim2;
        (void)vs_elimit_admit(l, vs_elimit_get(l), 1.0, t, &lim2);
        for (int i = 0; i < 20; i++)
            vs_elimit_on_done(l, 0.001, 1, t + 0.005 * i);
    }
    CHECK(vs_elimit_get(l) == 4);
    /* an index that became slow for good (every request 50 ms for over 32 windows): the threshold follows
     * it (3 x its new unloaded latency) and the limit stops falling */
    for (int w = 0; w < 40; w++, t += 0.1)
        window(l, t, 20, 0.050, vs_elimit_get(l));
    CHECK(vs_elimit_get(l) > 4);
    vs_elimit_destroy(l);
    /* late, but with few in flight (a paused host, not our queue): the limit does not fall; on time and
     * barely used: it does not grow */
    l = vs_elimit_create(0.010, 100, 4, 1000);
    for (int w = 0; w < 20; w++, t += 0.1)
        window(l, t, 20, 0.200, 10);
    CHECK(vs_elimit_get(l) == 100);
    for (int w = 0; w < 20; w++, t += 0.1)
        window(l, t, 20, 0.001, 10);
    CHECK(vs_elimit_get(l) == 100);
    /* lowered by an overload, then calm with little in flight: it climbs back to its initial value, no
     * further */
    for (int w = 0; w < 10; w++, t += 0.1)
        window(l, t, 20, 0.300, vs_elimit_get(l));
    CHECK(vs_elimit_get(l) < 50);
    for (int w = 0; w < 100; w++, t += 0.1)
        window(l, t, 20, 0.001, 2);
    CHECK(vs_elimit_get(l) == 100);
    /* lowered again, then idle for 2 s: the next request starts it afresh at its initial value */
    for (int w = 0; w < 10; w++, t += 0.1)
        window(l, t, 20, 0.300, vs_elimit_get(l));
    CHECK(vs_elimit_get(l) < 50);
    t += 2.0;
    vs_elimit_on_done(l, 0.001, 0, t);
    CHECK(vs_elimit_get(l) == 100);
    /* ... and so does the first admission after a pause, with nothing in flight (a client's connection
     * comes up and its queued calls arrive at once) but not one with requests in flight (a hung shard) */
    for (int w = 0; w < 10; w++, t += 0.1)
        window(l, t, 20, 0.300, vs_elimit_get(l));
    double low = vs_elimit_get(l);
    CHECK(low < 50);
    CHECK(!vs_elimit_admit(l, low + 1, 1.0, t + 2.0, &lim) && vs_elimit_get(l) == low);
    CHECK(vs_elimit_admit(l, 0, 1.0, t + 2.0, &lim) && vs_elimit_get(l) == 100);
    t += 2.0;
    /* failed for overload counts as late whatever its latency */
    for (int i = 0; i < 40; i++) {
        (void)vs_elimit_admit(l, 90, 1.0, t + 0.005 * i, &lim);
        vs_elimit_on_done(l, 0.001, i % 2, t + 0.005 * i);
    }
    CHECK(vs_elimit_get(l) < 100);
    vs_elimit_destroy(l);
    /* the floor: 200 requests per window at 5 ms (on time: a concurrency of 200 x 5 ms / 0.1 s = 10), then
     * every request late (the CPU taken by something else): the limit falls to 10, not below */
    l = vs_elimit_create(0.010, 100, 4, 1000);
    for (int w = 0; w < 5; w++, t += 0.1)
        window(l, t, 200, 0.005, 10);
    for (int w = 0; w < 30; w++, t += 0.1) /* (30 windows: within the base latency's memory) */
        window(l, t, 200, 0.200, vs_elimit_get(l));
    CHECK(vs_elimit_get(l) > 9.5 && vs_elimit_get(l) < 12.5); /* (the window turning late counts 12) */
    vs_elimit_destroy(l);
    /* an index unloaded at 20 ms with a 10 ms target: once its first window is seen, the threshold is
     * 3 x 20 ms, so 25 ms is on time (only that first window counted late: one 10 % step) */
    l = vs_elimit_create(0.010, 100, 4, 1000);
    for (int w = 0; w < 10; w++, t += 0.1)
        window(l, t, 20, w < 2 ? 0.020 : 0.025, 60);
    CHECK(vs_elimit_get(l) >= 90 * 1.04);
    vs_elimit_destroy(l);
}

static void test_replica_limit(void)
{
    vs_limit_t l;
    vs_limit_init(&l, 100, 16, 1000);
    for (int i = 0; i < 100; i++) /* steady 5 ms, in use: grows */
        vs_limit_on_sample(&l, 0.005, l.limit);
    CHECK(l.limit > 150 && l.limit <= 1000);
    double grown = l.limit;
    for (int i = 0; i < 50; i++) /* 4 x slower: falls */
        vs_limit_on_sample(&l, 0.020, l.limit);
    CHECK(l.limit < grown / 2 && l.limit >= 16);
    double before = l.limit;
    for (int i = 0; i < 20; i++) /* steady but barely used: no growth */
        vs_limit_on_sample(&l, l.long_rtt, 1);
    CHECK(l.limit <= before + 1e-9);
    vs_limit_on_drop(&l);
    CHECK(fabs(l.limit - before * 0.9) < 1e-9 || l.limit == 16);
    for (int i = 0; i < 100; i++)
        vs_limit_on_drop(&l);
    CHECK(l.limit == 16);
    for (int i = 0; i < 5000; i++)
        vs_limit_on_sample(&l, 0.001, 1e9);
    CHECK(l.limit == 1000);
}

int main(void)
{
    RUN(test_priorities);
    RUN(test_peek);
    RUN(test_quotas);
    RUN(test_elimit);
    RUN(test_replica_limit);
    return vs_test_finish();
}
