/* overload.h: what the shard and the coordinator share to shed load (issue 21, docs/reliability.md
 * "Overload control"): request priorities, the queue-time limit of each priority, the retry-after hint, a
 * cheap look at one field of a protobuf message (the priority, read before the whole request is decoded),
 * and the metrics of shedding.
 *
 * Rule: a call that waited in a server's queue longer than its priority's limit is refused with
 * RESOURCE_EXHAUSTED and the hint VS_RPC_MD_RETRY_AFTER (rpc.h) instead of being served late. Online
 * traffic may wait the whole limit; batch, recall replays and canaries only a quarter of it, so under
 * overload they are refused first and online traffic keeps the capacity (the criticality scheme of
 * Google's SRE book, "Handling Overload"). */
#ifndef VS_COMMON_NET_OVERLOAD_H
#define VS_COMMON_NET_OVERLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "common/net/metrics.h"
#include "common/status.h"

/* vecshard.v1.Priority */
typedef enum vs_priority {
    VS_PRIORITY_ONLINE = 0,
    VS_PRIORITY_BATCH = 1,
    VS_PRIORITY_RECALL = 2,
    VS_PRIORITY_CANARY = 3,
    VS_PRIORITY_N
} vs_priority;

/* The share of the online limit the other priorities may wait. */
#define VS_OVERLOAD_SHEDDABLE_SHARE 0.25

/* "online", "batch", "recall", "canary"; a value of a later release counts as "batch". */
const char *vs_priority_name(int p);
/* The priority a value means (unknown values of a later release: VS_PRIORITY_BATCH). */
vs_priority vs_priority_of(uint64_t v);
/* Parses a name (as vs_priority_name gives); -1 when unknown. */
int vs_priority_parse(const char *name);

/* Seconds a call of priority p may wait in a queue whose online limit is max_queue_s; HUGE_VAL when
 * max_queue_s <= 0 (no limit). */
double vs_overload_queue_limit_s(double max_queue_s, vs_priority p);

/* The retry-after hint for a call refused at a queue limit: the limit itself (the time the queue needs to
 * turn over), at least 10 ms. */
int64_t vs_overload_retry_after_ms(double limit_s);

/* The queue-time rule, as shard and coordinator apply it to a call that waited queued_s (>= 0) for a
 * worker: the call's priority is field `field` of its message (msg, len bytes; absent = online, into
 * *prio); when it waited longer than its priority's limit of max_queue_s, returns 1 with the retry-after
 * hint in *retry_after_ms and the refusal's text in why ("<who> overloaded: the call waited ..."); else 0.
 * Counts nothing: the caller does. */
int vs_overload_queued_too_long(double queued_s, double max_queue_s, const uint8_t *msg, size_t len,
                                uint32_t field, const char *who, vs_priority *prio, int64_t *retry_after_ms,
                                char why[VS_ERR_LEN]);

/* The value of varint field `field` at the top level of a protobuf message (the last occurrence, as
 * protobuf reads it) into *out: 1 when present, 0 when absent, -1 when the message is malformed (then
 * the full decode will say so). Skips other fields without decoding them. */
int vs_pb_peek_varint(const uint8_t *msg, size_t len, uint32_t field, uint64_t *out);

/* Shedding metrics of one server: <prefix>_queue_seconds (histogram of the time calls waited before a
 * worker took them, fine buckets) and <prefix>_shed_total{reason, priority}. */
typedef struct vs_overload_metrics {
    vs_histogram_t *queue;
    vs_metric_family_t *shed;
} vs_overload_metrics_t;

vs_status vs_overload_metrics_init(vs_overload_metrics_t *m, vs_metrics_t *reg, const char *prefix,
                                   char err[VS_ERR_LEN]);
/* Counts one refused call (m may be zeroed: then nothing is counted). */
void vs_overload_metrics_shed(vs_overload_metrics_t *m, const char *reason, vs_priority p);

#endif
