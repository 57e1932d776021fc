/* overload.c: see overload.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/net/overload.h"

static const char *const names[VS_PRIORITY_N] = {"online", "batch", "recall", "canary"};

vs_priority vs_priority_of(uint64_t v)
{
    return v < VS_PRIORITY_N ? (vs_priority)v : VS_PRIORITY_BATCH;
}

const char *vs_priority_name(int p)
{
    return names[vs_priority_of(p < 0 ? VS_PRIORITY_N : (uint64_t)p)];
}

int vs_priority_parse(const char *name)
{
    for (int i = 0; i < VS_PRIORITY_N; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

double vs_overload_queue_limit_s(double max_queue_s, vs_priority p)
{
    if (!(max_queue_s > 0))
        return HUGE_VAL;
    return p == VS_PRIORITY_ONLINE ? max_queue_s : max_queue_s * VS_OVERLOAD_SHEDDABLE_SHARE;
}

int64_t vs_overload_retry_after_ms(double limit_s)
{
    double ms = ceil(limit_s * 1e3);
    return ms < 10 ? 10 : ms > 60e3 ? 60000 : (int64_t)ms;
}

/* Reads a varint at *pos; 0 or -1 (truncated, or longer than 10 bytes). */
static int varint(const uint8_t *m, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t b = m[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int vs_pb_peek_varint(const uint8_t *msg, size_t len, uint32_t field, uint64_t *out)
{
    int found = 0;
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, v;
        if (varint(msg, len, &pos, &key) != 0)
            return -1;
        switch (key & 7) {
        case 0:
            if (varint(msg, len, &pos, &v) != 0)
                return -1;
            if ((key >> 3) == field) {
                *out = v;
                found = 1;
            }
            break;
        case 1: /* fixed64 */
        case 5: /* fixed32 */
            if (len - pos < ((key & 7) == 1 ? 8u : 4u))
                return -1;
            pos += (key & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (varint(msg, len, &pos, &v) != 0 || v > len - pos)
                return -1;
            pos += (size_t)v;
            break;
        default:
            return -1;
        }
    }
    return found;
}

int vs_overload_queued_too_long(double queued_s, double max_queue_s, const uint8_t *msg, size_t len,
                                uint32_t field, const char *who, vs_priority *prio, int64_t *retry_after_ms,
                                char why[VS_ERR_LEN])
{
    uint64_t pv = 0;
    (void)vs_pb_peek_varint(msg, len, field, &pv); /* malformed: the full decode says so, if it gets there */
    *prio = vs_priority_of(pv);
    double limit = vs_overload_queue_limit_s(max_queue_s, *prio);
    if (!(queued_s > limit))
        return 0;
    *retry_after_ms = vs_overload_retry_after_ms(limit);
    snprintf(why, VS_ERR_LEN,
             "%s overloaded: the call waited %.1f ms for a worker (limit %.0f ms for %s calls); retry after "
             "%lld ms",
             who, queued_s * 1e3, limit * 1e3, vs_priority_name(*prio), (long long)*retry_after_ms);
    return 1;
}

vs_status vs_overload_metrics_init(vs_overload_metrics_t *m, vs_metrics_t *reg, const char *prefix,
                                   char err[VS_ERR_LEN])
{
    char name[128];
    snprintf(name, sizeof name, "%s_queue_seconds", prefix);
    m->queue = vs_metrics_histogram_single(
        reg, name, "Time calls waited in the server's queue before a worker took them (clients that send "
                   "vs-timeout-us only).",
        vs_metrics_fine_buckets, VS_METRICS_FINE_BUCKETS_N);
    snprintf(name, sizeof name, "%s_shed_total", prefix);
    static const char *const labels[] = {"reason", "priority"};
    m->shed = vs_metrics_counter(reg, name,
                                 "Calls refused with RESOURCE_EXHAUSTED to shed load, by reason and priority.",
                                 2, labels);
    if (!m->queue || !m->shed)
        return vs_errf(err, VS_ERR_INTERNAL, "overload metrics: %s", vs_metrics_last_error(reg));
    return VS_OK;
}

void vs_overload_metrics_shed(vs_overload_metrics_t *m, const char *reason, vs_priority p)
{
    if (m && m->shed)
        vs_counter_inc(VS_COUNTER_WITH(m->shed, reason, vs_priority_name(p)));
}
