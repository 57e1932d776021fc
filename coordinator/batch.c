/* batch.c: per-replica batching of shard calls (batch.h). Each replica's queue lives in its view entry
 * (vs_replica_ext); a call in flight holds the replica. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/timing.h"
#include "coordinator/admit.h"
#include "coordinator/batch.h"
#include "vecshard/v1/shard.pb-c.h"

const char *const vs_coord_stage_names[VS_COORD_STAGE_N] = {"route", "batch_wait", "shard_rpc", "merge"};

typedef struct batchq {
    pthread_mutex_t mu;
    size_t in_flight;   /* calls */
    size_t in_flight_q; /* queries */
    vs_limit_t lim;     /* adaptive limit on in_flight_q */
    vs_batch_item_t *head, *tail;
} batchq_t;

static void *q_create(void)
{
    batchq_t *q = calloc(1, sizeof *q);
    if (q) {
        pthread_mutex_init(&q->mu, NULL);
        vs_limit_init(&q->lim, VS_LIMIT_INITIAL, VS_LIMIT_MIN, VS_LIMIT_MAX);
    }
    return q;
}

static void *no_create(void)
{
    return NULL;
}

int vs_batch_replica_limit(vs_replica_t *r, double *limit, size_t *in_flight_queries)
{
    batchq_t *q = vs_replica_ext(r, no_create, NULL);
    if (!q)
        return 0;
    pthread_mutex_lock(&q->mu);
    *limit = q->lim.limit;
    *in_flight_queries = q->in_flight_q;
    pthread_mutex_unlock(&q->mu);
    return 1;
}

/* 1 when another call may leave for the replica now (q->mu held). */
static int may_send(const batchq_t *q, const vs_batch_opts_t *o)
{
    return q->in_flight < o->window &&
           (!o->adaptive_limit || q->in_flight == 0 || (double)q->in_flight_q < q->lim.limit);
}

static void q_destroy(void *p)
{
    batchq_t *q = p;
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* One shard call in flight: its items (a list through next) and what it needs on completion. */
typedef struct bcall {
    vs_rpc_server_t *srv;
    vs_replica_t *r; /* held */
    batchq_t *q;
    vs_batch_opts_t o;
    vs_batch_stats_t *stats;
    vs_batch_item_t *items;
    size_t n_items, nq;
    size_t in_flight_q; /* the replica's queries in flight once this call left (its own included) */
} bcall_t;

static int same_key(const vs_batch_key_t *a, const vs_batch_key_t *b)
{
    if (a->n_exclude || b->n_exclude || a->filter || b->filter || a->group_by || b->group_by)
        return 0; /* exclusions, filters and group_by belong to one request */
    return a->dim == b->dim && a->k == b->k && a->nprobe == b->nprobe && a->ef_search == b->ef_search &&
           a->quantizer_ef_search == b->quantizer_ef_search && a->k_factor == b->k_factor &&
           a->lists_per_query == b->lists_per_query && a->partition_ref == b->partition_ref &&
           a->partition == b->partition && a->min_log_seq == b->min_log_seq && a->exact == b->exact &&
           a->priority == b->priority && strcmp(a->version, b->version) == 0;
}

/* Takes from q (mu held) the items that leave together: the oldest item of the most urgent priority
 * present, and every later one with its key, within the limits (room: queries the adaptive limit leaves;
 * the first item goes whatever its size). Expired items move to *expired, items that waited past their
 * queue limit to *shed. */
static vs_batch_item_t *take_batch(batchq_t *q, const vs_batch_opts_t *o, double now, double room,
                                   vs_batch_item_t **expired, vs_batch_item_t **shed, size_t *out_n,
                                   size_t *out_nq)
{
    vs_batch_item_t *batch = NULL, *btail = NULL, *keep = NULL, *ktail = NULL, *lead = NULL;
    size_t n = 0, nq = 0, bytes = 0;
    double max_q = room < (double)o->max_queries ? room : (double)o->max_queries;
    for (vs_batch_item_t *it = q->head; it; it = it->next)
        if (it->deadline > now &&
            now - it->t_submit <= vs_overload_queue_limit_s(o->max_queue_s, it->key.priority) &&
            (!lead || it->key.priority < lead->key.priority))
            lead = it;
    for (vs_batch_item_t *it = q->head, *next; it; it = next) {
        next = it->next;
        it->next = NULL;
        size_t ib = it->nq * it->key.dim * sizeof(float);
        if (it->deadline <= now) {
            it->next = *expired;
            *expired = it;
        } else if (now - it->t_submit > vs_overload_queue_limit_s(o->max_queue_s, it->key.priority)) {
            it->next = *shed;
            *shed = it;
        } else if (it == lead || (batch && same_key(&lead->key, &it->key) &&
                                  (double)(nq + it->nq) <= max_q && bytes + ib <= o->max_bytes)) {
            if (btail)
                btail->next = it;
            else
                batch = it;
            btail = it;
            n++;
            nq += it->nq;
            bytes += ib;
        } else {
            if (ktail)
                ktail->next = it;
            else
                keep = it;
            ktail = it;
        }
    }
    q->head = keep;
    q->tail = ktail;
    *out_n = n;
    *out_nq = nq;
    return batch;
}

static void deliver_all(vs_batch_item_t *items, const vs_fanout_result_t *res)
{
    for (vs_batch_item_t *it = items, *next; it; it = next) {
        next = it->next; /* deliver may free the item */
        it->deliver(it->user, it->call_id, res);
    }
}

static void on_done(void *user, vs_rpc_result_t *res);

/* Encodes bc's items as one ShardSearchRequest and starts the call. VS_OK or an error (nothing sent). */
static vs_status send_call(bcall_t *bc, char err[VS_ERR_LEN])
{
    const vs_batch_item_t *first = bc->items;
    const vs_batch_key_t *key = &first->key;
    Vecshard__V1__ShardSearchRequest s = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    Vecshard__V1__PartitionRef pr = VECSHARD__V1__PARTITION_REF__INIT;
    s.dim = key->dim;
    s.k = key->k;
    s.index_version = (char *)key->version;
    s.min_log_seq = key->min_log_seq;
    s.exclude_ids = (int64_t *)key->exclude;
    s.n_exclude_ids = key->n_exclude;
    s.filter = (Vecshard__V1__Filter *)key->filter;
    s.group_by = (Vecshard__V1__GroupBy *)key->group_by;
    sp.filter_exact_threshold = key->filter_exact;
    sp.nprobe = key->nprobe;
    sp.ef_search = key->ef_search;
    sp.k_factor = key->k_factor;
    sp.quantizer_ef_search = key->quantizer_ef_search;
    if (!key->exact &&
        (sp.nprobe || sp.ef_search || sp.k_factor || sp.quantizer_ef_search || sp.filter_exact_threshold))
        s.params = &sp;
    s.exact = key->exact;
    s.priority = (Vecshard__V1__Priority)key->priority;
    if (key->partition_ref) {
        pr.id = key->partition;
        s.partition = &pr;
    }
    float *q = NULL;
    int32_t *l = NULL;
    if (bc->n_items == 1) { /* the common case at low load: no copy */
        s.queries = (float *)first->queries;
        s.lists = (int32_t *)first->lists;
    } else {
        q = malloc(bc->nq * key->dim * sizeof(float));
        l = key->lists_per_query ? malloc(bc->nq * key->lists_per_query * sizeof(int32_t)) : NULL;
        if (!q || (key->lists_per_query && !l)) {
            free(q);
            free(l);
            return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory for a batch of %zu queries",
                           bc->nq);
        }
        size_t off = 0;
        for (const vs_batch_item_t *it = bc->items; it; it = it->next) {
            memcpy(q + off * key->dim, it->queries, it->nq * key->dim * sizeof(float));
            if (l)
                memcpy(l + off * key->lists_per_query, it->lists,
                       it->nq * key->lists_per_query * sizeof(int32_t));
            off += it->nq;
        }
        s.queries = q;
        s.lists = l;
    }
    char *one_rid = (char *)first->request_id, **rids = bc->n_items == 1 ? &one_rid : NULL;
    if (bc->n_items > 1 && (rids = malloc(bc->n_items * sizeof *rids)) != NULL) {
        size_t i = 0;
        for (const vs_batch_item_t *it = bc->items; it; it = it->next)
            if (it->request_id)
                rids[i++] = (char *)it->request_id;
        s.n_request_ids = i;
    } else if (one_rid) {
        s.n_request_ids = 1;
    }
    s.request_ids = rids; /* ids are for the shard's logs: a batch without them is still sent */
    s.n_queries = bc->nq * key->dim;
    s.lists_per_query = key->lists_per_query;
    s.n_lists = key->lists_per_query ? bc->nq * key->lists_per_query : 0;
    double deadline = 0;
    for (const vs_batch_item_t *it = bc->items; it; it = it->next)
        if (it->deadline > deadline)
            deadline = it->deadline;
    const double now = vs_now_s();
    int64_t timeout_ms = (int64_t)((deadline - now) * 1e3);
    size_t len = vecshard__v1__shard_search_request__get_packed_size(&s);
    uint8_t *buf = malloc(len ? len : 1);
    vs_status st = VS_OK;
    /* once started, the call may complete (and bc be freed) on another worker: count first */
    vs_batch_stats_t *stats = bc->stats;
    size_t n_items = bc->n_items, nq = bc->nq;
    for (const vs_batch_item_t *it = bc->items; bc->o.on_stage && it; it = it->next)
        bc->o.on_stage(bc->o.stage_user, VS_COORD_STAGE_BATCH_WAIT, now - it->t_submit); /* as it leaves */
    if (!buf) {
        st = vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory for a shard request");
    } else {
        vecshard__v1__shard_search_request__pack(&s, buf);
        if (!vs_rpc_server_call(bc->srv, vs_replica_channel(bc->r), "/vecshard.v1.Shard/Search", buf, len,
                                timeout_ms < 1 ? 1 : timeout_ms, on_done, bc, err))
            st = VS_ERR_UNAVAILABLE;
    }
    free(buf);
    free(q);
    free(l);
    if (rids != &one_rid)
        free(rids);
    if (st == VS_OK) {
        atomic_fetch_add(&stats->calls, 1);
        atomic_fetch_add(&stats->items, n_items);
        atomic_fetch_add(&stats->queries, nq);
    }
    return st;
}

static bcall_t *bcall_new(vs_rpc_server_t *srv, vs_replica_t *r, batchq_t *q, const vs_batch_opts_t *o,
                          vs_batch_stats_t *stats)
{
    bcall_t *bc = calloc(1, sizeof *bc);
    if (bc) {
        *bc = (bcall_t){srv, r, q, *o, stats, NULL, 0, 0, 0};
        vs_replica_hold(r);
    }
    return bc;
}

static void bcall_free(bcall_t *bc)
{
    vs_replica_release(bc->r);
    free(bc);
}

/* Starts one shard call carrying items (n of them, nq queries) on a slot already counted in q->in_flight;
 * on failure gives the slot back. */
static vs_status start(vs_rpc_server_t *srv, vs_replica_t *r, batchq_t *q, const vs_batch_opts_t *o,
                       vs_batch_stats_t *stats, vs_batch_item_t *items, size_t n, size_t nq,
                       size_t in_flight_q, char err[VS_ERR_LEN])
{
    bcall_t *bc = bcall_new(srv, r, q, o, stats);
    vs_status st = VS_ERR_NOMEM;
    if (!bc) {
        vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    } else {
        bc->items = items;
        bc->n_items = n;
        bc->nq = nq;
        bc->in_flight_q = in_flight_q;
        st = send_call(bc, err);
    }
    if (st != VS_OK) {
        if (bc)
            bcall_free(bc);
        pthread_mutex_lock(&q->mu);
        q->in_flight--;
        q->in_flight_q -= nq;
        pthread_mutex_unlock(&q->mu);
    }
    return st;
}

/* Sends what waits on q while fewer than window calls are in flight; delivers what expired or could not
 * be sent. Called with no lock held. */
static void flush(vs_rpc_server_t *srv, vs_replica_t *r, batchq_t *q, const vs_batch_opts_t *o,
                  vs_batch_stats_t *stats)
{
    for (;;) {
        vs_batch_item_t *expired = NULL, *shed = NULL, *batch = NULL;
        size_t n = 0, nq = 0, ifq = 0;
        pthread_mutex_lock(&q->mu);
        if (q->head && may_send(q, o)) {
            double room =
                o->adaptive_limit && q->in_flight ? q->lim.limit - (double)q->in_flight_q : HUGE_VAL;
            batch = take_batch(q, o, vs_now_s(), room, &expired, &shed, &n, &nq);
            if (batch) {
                q->in_flight++;
                q->in_flight_q += nq;
                ifq = q->in_flight_q;
            }
        } else if (q->head && q->in_flight < o->window) {
            atomic_fetch_add(&stats->limited, 1);
        }
        pthread_mutex_unlock(&q->mu);
        if (expired) {
            for (vs_batch_item_t *it = expired; it; it = it->next)
                atomic_fetch_add(&stats->expired, 1);
            vs_fanout_result_t res = {VS_GRPC_DEADLINE_EXCEEDED, "deadline passed while waiting for a batch",
                                      NULL, 0, 0};
            deliver_all(expired, &res);
        }
        for (vs_batch_item_t *it = shed, *next; it; it = next) {
            next = it->next; /* deliver may free the item */
            vs_priority prio = it->key.priority;
            double limit = vs_overload_queue_limit_s(o->max_queue_s, prio);
            atomic_fetch_add(&stats->shed[prio], 1);
            vs_overload_metrics_shed(o->overload, "replica_queue", prio);
            char msg[VS_ERR_LEN];
            snprintf(msg, sizeof msg,
                     "coordinator overloaded: waited more than %.0f ms for replica %.100s (its calls are "
                     "not keeping up)",
                     limit * 1e3, vs_replica_id(r));
            vs_fanout_result_t res = {VS_GRPC_RESOURCE_EXHAUSTED, msg, NULL, 0, vs_overload_retry_after_ms(limit)};
            it->deliver(it->user, it->call_id, &res);
        }
        if (!batch) {
            if (!expired && !shed)
                return;
            continue; /* the queue may still hold items */
        }
        char err[VS_ERR_LEN];
        if (start(srv, r, q, o, stats, batch, n, nq, ifq, err) != VS_OK) {
            vs_fanout_result_t res = {VS_GRPC_UNAVAILABLE, err, NULL, 0, 0};
            deliver_all(batch, &res);
        }
    }
}

static void on_done(void *user, vs_rpc_result_t *res)
{
    bcall_t *bc = user;
    const vs_batch_key_t *key = &bc->items->key;
    vs_fanout_result_t out = {res->code, res->message, NULL, res->seconds, res->retry_after_ms};
    if (bc->o.on_stage && res->code == VS_GRPC_OK)
        bc->o.on_stage(bc->o.stage_user, VS_COORD_STAGE_SHARD_RPC, res->seconds);
    char why[VS_ERR_LEN];
    Vecshard__V1__ShardSearchResponse *sr = NULL;
    if (res->code == VS_GRPC_OK) {
        sr = vecshard__v1__shard_search_response__unpack(NULL, res->body_len, res->body);
        if (!sr || strcmp(sr->index_version, key->version) != 0 || sr->partition != key->partition) {
            snprintf(why, sizeof why, "answer from version %.100s partition %u, expected %.100s/%u",
                     sr ? sr->index_version : "?", sr ? sr->partition : 0, key->version, key->partition);
            out.code = VS_GRPC_INTERNAL;
            out.message = why;
        } else if (sr->k != key->k || sr->n_ids != bc->nq * key->k || sr->n_distances != sr->n_ids) {
            snprintf(why, sizeof why, "answered %zu results for %zu queries x k %u", sr->n_ids, bc->nq,
                     key->k);
            out.code = VS_GRPC_INTERNAL;
            out.message = why;
        } else if (key->exact && !sr->exact) {
            snprintf(why, sizeof why, "answered an exact request approximately (a release before 0.8?)");
            out.code = VS_GRPC_UNIMPLEMENTED;
            out.message = why;
        } else if (key->filter && !sr->filtered) {
            snprintf(why, sizeof why, "answered without applying the filter (a release before filters?)");
            out.code = VS_GRPC_UNIMPLEMENTED;
            out.message = why;
        } else if (key->group_by && sr->n_group_values != sr->n_ids) {
            snprintf(why, sizeof why,
                     "answered %zu group values for %zu results (a release before group_by?)",
                     sr->n_group_values, sr->n_ids);
            out.code = VS_GRPC_UNIMPLEMENTED;
            out.message = why;
        }
    }
    if (out.code != VS_GRPC_OK) {
        deliver_all(bc->items, &out);
    } else {
        size_t off = 0, k = key->k; /* items (and key, inside the first) may be freed by deliver */
        const int grouped = key->group_by != NULL;
        for (vs_batch_item_t *it = bc->items, *next; it; it = next) {
            next = it->next;
            vs_fanout_answer_t a = {sr->index_version,
                                    sr->partition,
                                    sr->k,
                                    it->nq,
                                    sr->distances + off * k,
                                    sr->ids + off * k,
                                    grouped ? sr->group_values + off * k : NULL};
            out.answer = &a;
            off += it->nq;
            it->deliver(it->user, it->call_id, &out);
        }
    }
    if (sr)
        vecshard__v1__shard_search_response__free_unpacked(sr, NULL);
    free(res->body);
    batchq_t *q = bc->q;
    vs_replica_t *r = bc->r;
    vs_rpc_server_t *srv = bc->srv;
    vs_batch_opts_t o = bc->o;
    vs_batch_stats_t *stats = bc->stats;
    size_t nq = bc->nq, sent_with = bc->in_flight_q;
    int code = res->code;
    double seconds = res->seconds;
    vs_replica_hold(r); /* q lives in r */
    bcall_free(bc);
    pthread_mutex_lock(&q->mu);
    q->in_flight--;
    q->in_flight_q -= nq;
    if (code == VS_GRPC_OK)
        vs_limit_on_sample(&q->lim, seconds, (double)sent_with);
    else if (code == VS_GRPC_RESOURCE_EXHAUSTED || code == VS_GRPC_DEADLINE_EXCEEDED)
        vs_limit_on_drop(&q->lim);
    pthread_mutex_unlock(&q->mu);
    flush(srv, r, q, &o, stats);
    vs_replica_release(r);
}

vs_status vs_batch_submit(vs_rpc_server_t *srv, vs_replica_t *r, vs_batch_item_t *item,
                          const vs_batch_opts_t *o, vs_batch_stats_t *stats, char err[VS_ERR_LEN])
{
    batchq_t *q = vs_replica_ext(r, q_create, q_destroy);
    if (!q)
        return vs_errf(err, VS_ERR_NOMEM, "coordinator: out of memory");
    item->next = NULL;
    item->t_submit = vs_now_s();
    pthread_mutex_lock(&q->mu);
    if (!may_send(q, o)) { /* waits for the next call to complete */
        if (q->tail)
            q->tail->next = item;
        else
            q->head = item;
        q->tail = item;
        pthread_mutex_unlock(&q->mu);
        return VS_OK;
    }
    q->in_flight++;
    q->in_flight_q += item->nq;
    size_t ifq = q->in_flight_q;
    pthread_mutex_unlock(&q->mu);
    return start(srv, r, q, o, stats, item, 1, item->nq, ifq, err);
}
