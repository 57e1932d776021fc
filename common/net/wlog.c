/* wlog.c: the write log on NATS JetStream (wlog.h). Traps of libnats 3.4 / nats-server 2.9 handled here
 * (../shared/research/wave2-brief.md): jsOptions.Wait, jsPubOptions.MaxWait and the fetch timeout are
 * milliseconds while the stream's MaxAge and Duplicates are nanoseconds; a fetch on a drained stream
 * answers NATS_TIMEOUT; a consumer asked to start at a sequence the stream no longer holds starts at its
 * first one without a word (checked here); an ephemeral consumer may vanish with a server restart, and a
 * fetch on it then only times out (so a reader that times out while the stream holds more than it has
 * applied makes a new consumer from where it is). */
#include "common/net/wlog.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nats/nats.h>

#include "common/cli/ident.h"
#include "common/cli/secret.h"
#include "common/cli/timing.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_MAX_BYTES (8ll << 30)
#define DEFAULT_MAX_AGE_S (7ll * 24 * 3600)
#define DEFAULT_DEDUP_MS 120000
#define NS_PER_MS 1000000ll

/* An asynchronous append waiting for its acknowledgement, found by its message (the pointer the ack
 * handler gets back). */
typedef struct pending {
    natsMsg *msg;
    vs_wlog_acked_fn fn;
    void *user;
    struct pending *next;
} pending_t;

#define PENDING_BUCKETS 1024 /* a power of 2 */

struct vs_wlog {
    natsConnection *nc;
    jsCtx *js;
    jsOptions jo;
    char stream[80], subject[96];
    int64_t timeout_ms;
    pthread_mutex_t pmu; /* pending */
    pending_t *pending[PENDING_BUCKETS];
    size_t npending;
};

struct vs_wlog_reader {
    vs_wlog_t *w;
    natsSubscription *sub; /* NULL: to be made at the next call */
    uint64_t next;         /* sequence of the next message to apply */
    double last_check;     /* when a timed-out reader last compared its place with the stream's */
    uint64_t pending;      /* the stream's messages after the last applied (JetStream's NumPending) */
};

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

/* A message for a failed libnats call: its status text, the JetStream error code when there is one, and
 * the thread's last error detail. */
static vs_status nats_err_detail(char *err, vs_status code, const char *what, natsStatus s, jsErrCode jerr,
                                 const char *detail)
{
    return vs_errf(err, code, "%s: %s%s%s (JetStream error %d)", what, natsStatus_GetText(s),
                   detail && detail[0] ? ": " : "", detail ? detail : "", (int)jerr);
}

static vs_status nats_err(char *err, vs_status code, const char *what, natsStatus s, jsErrCode jerr)
{
    return nats_err_detail(err, code, what, s, jerr, nats_GetLastError(NULL));
}

int vs_wlog_cluster_valid(const char *c)
{
    size_t n = c ? strlen(c) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)c[i]) && c[i] != '_' && c[i] != '-')
            return 0;
    return 1;
}

static vs_status ensure_stream(vs_wlog_t *w, const vs_wlog_opts_t *o, int create, char *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, w->js, w->stream, &w->jo, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return VS_OK;
    }
    if (s != NATS_NOT_FOUND)
        return nats_err(err, VS_ERR_UNAVAILABLE, "write log: stream info", s, jerr);
    if (!create)
        return vs_errf(err, VS_ERR_NOT_FOUND, "write log: no stream %s on %s", w->stream, o->url);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[1] = {w->subject};
    sc.Name = w->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.Discard = js_DiscardNew;
    sc.MaxBytes = o->max_bytes > 0 ? o->max_bytes : DEFAULT_MAX_BYTES;
    int64_t age_s = o->max_age_s > 0 ? o->max_age_s : DEFAULT_MAX_AGE_S;
    sc.MaxAge = age_s * 1000 * NS_PER_MS; /* nanoseconds */
    int64_t dedup_ms = o->dedup_window_ms > 0 ? o->dedup_window_ms : DEFAULT_DEDUP_MS;
    if (dedup_ms > age_s * 1000)
        dedup_ms = age_s * 1000;
    sc.Duplicates = dedup_ms * NS_PER_MS; /* nanoseconds */
    sc.Replicas = o->replicas > 0 ? o->replicas : 1;
    s = js_AddStream(&si, w->js, &sc, &w->jo, &jerr);
    if (s != NATS_OK) {
        /* another process may have created it meanwhile */
        jsErrCode j2 = 0;
        if (js_GetStreamInfo(&si, w->js, w->stream, &w->jo, &j2) == NATS_OK) {
            jsStreamInfo_Destroy(si);
            return VS_OK;
        }
        return nats_err(err, VS_ERR_UNAVAILABLE, "write log: create stream", s, jerr);
    }
    jsStreamInfo_Destroy(si);
    return VS_OK;
}

/* 1 when every URL of the comma-separated list is tls://. */
static int all_tls(const char *urls)
{
    for (const char *p = urls; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        if (strncasecmp(p, "tls://", 6) != 0)
            return 0;
        p += strcspn(p, ",");
    }
    return 1;
}

/* TLS and credentials (vs_wlog_opts_t, else the environment) onto no. */
static vs_status secure_options(natsOptions *no, const vs_wlog_opts_t *o, char err[VS_ERR_LEN])
{
    const char *ca = o->ca_file ? o->ca_file : vs_secret_getenv("VECSHARD_NATS_CA");
    const char *cert = o->cert_file ? o->cert_file : vs_secret_getenv("VECSHARD_NATS_CERT");
    const char *key = o->key_file ? o->key_file : vs_secret_getenv("VECSHARD_NATS_KEY");
    const char *user = o->user ? o->user : vs_secret_getenv("VECSHARD_NATS_USER");
    natsStatus s = NATS_OK;
    if (!cert != !key)
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "write log: a client certificate needs its key: $VECSHARD_NATS_CERT, $VECSHARD_NATS_KEY");
    if (ca) {
        /* the server's name: $VECSHARD_NATS_SERVER_NAME, else the first URL's host */
        char host[256] = "";
        const char *name = vs_secret_getenv("VECSHARD_NATS_SERVER_NAME");
        if (!name) {
            const char *p = strstr(o->url, "://");
            p = p ? p + 3 : o->url;
            size_t n = strcspn(p, ":,/");
            snprintf(host, sizeof host, "%.*s", (int)(n < sizeof host ? n : sizeof host - 1), p);
            name = host;
        }
        s = natsOptions_SetSecure(no, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(no, ca);
        if (s == NATS_OK && name[0])
            s = natsOptions_SetExpectedHostname(no, name);
        if (s == NATS_OK && cert)
            s = natsOptions_LoadCertificatesChain(no, cert, key);
        if (s != NATS_OK)
            return nats_err(err, VS_ERR_INVALID_ARGUMENT, "write log: TLS files", s, 0);
    }
    if (user && !ca && !all_tls(o->url))
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "write log: refusing to send user %s's password in plain text (set $VECSHARD_NATS_CA or use "
            "tls:// URLs)",
            user);
    if (user) {
        char pw[256];
        int found = 0;
        if (o->password) {
            snprintf(pw, sizeof pw, "%s", o->password);
            found = 1;
        } else if (vs_secret_from_env("VECSHARD_NATS_PASSWORD", pw, sizeof pw, &found, err) != VS_OK)
            return VS_ERR_INVALID_ARGUMENT;
        if (!found)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "write log: user %s has no password ($VECSHARD_NATS_PASSWORD_FILE or "
                           "$VECSHARD_NATS_PASSWORD)", user);
        s = natsOptions_SetUserInfo(no, user, pw);
        memset(pw, 0, sizeof pw);
        if (s != NATS_OK)
            return nats_err(err, VS_ERR_NOMEM, "write log: credentials", s, 0);
    }
    return VS_OK;
}

vs_status vs_wlog_open(const vs_wlog_opts_t *o, int create, vs_wlog_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    if (!o->url || !o->url[0])
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "write log: no NATS URL");
    if (!vs_wlog_cluster_valid(o->cluster))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "write log: cluster name '%s' must be 1-64 characters of [A-Za-z0-9_-]",
                       o->cluster ? o->cluster : "");
    vs_wlog_t *w = calloc(1, sizeof *w);
    if (!w)
        return vs_errf(err, VS_ERR_NOMEM, "write log: out of memory");
    w->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&w->pmu, NULL);
    snprintf(w->stream, sizeof w->stream, "VS_%s", o->cluster);
    snprintf(w->subject, sizeof w->subject, "vs.%s.writes", o->cluster);
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, o->url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, w->timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetName(no, "vecshard");
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(no, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(no, -1); /* forever: the log is a dependency, not an option */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(no, 100);
    /* no publish buffered while reconnecting: a write attempted while the connection is known to be down
     * fails at once (NATS_INSUFFICIENT_BUFFER) instead of waiting for its timeout. One sent just before
     * the connection broke may still be delivered after the reconnect (outcome unknown): the write id
     * makes the caller's retry safe. */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(no, 1);
    /* a publish (or a fetch request) goes out on the caller's thread instead of waking libnats's
     * flusher thread: one thread wake-up less per message, which is most of a small write's cost */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(no, true);
    vs_status cst = s == NATS_OK ? secure_options(no, o, err) : VS_OK;
    if (cst != VS_OK) {
        natsOptions_Destroy(no);
        pthread_mutex_destroy(&w->pmu);
        free(w);
        return cst;
    }
    if (s == NATS_OK)
        s = natsConnection_Connect(&w->nc, no);
    natsOptions_Destroy(no);
    if (s != NATS_OK) {
        vs_status st =
            nats_err(err, s == NATS_CONNECTION_AUTH_FAILED ? VS_ERR_FAILED_PRECONDITION : VS_ERR_UNAVAILABLE,
                     "write log: connect", s, 0);
        pthread_mutex_destroy(&w->pmu);
        free(w);
        return st;
    }
    jsOptions_Init(&w->jo);
    w->jo.Wait = w->timeout_ms; /* milliseconds */
    w->jo.PublishAsync.AckHandler = on_ack;
    w->jo.PublishAsync.AckHandlerClosure = w;
    w->jo.PublishAsync.MaxPending = VS_WLOG_MAX_IN_FLIGHT;
    w->jo.PublishAsync.StallWait = w->timeout_ms;
    s = natsConnection_JetStream(&w->js, w->nc, &w->jo);
    vs_status st = s == NATS_OK ? ensure_stream(w, o, create, err)
                                : nats_err(err, VS_ERR_UNAVAILABLE, "write log: JetStream context", s, 0);
    if (st != VS_OK) {
        vs_wlog_close(w);
        return st;
    }
    *out = w;
    return VS_OK;
}

void vs_wlog_close(vs_wlog_t *w)
{
    if (!w)
        return;
    vs_wlog_drain(w, w->timeout_ms);
    if (w->js)
        jsCtx_Destroy(w->js);
    if (w->nc) {
        natsConnection_Close(w->nc);
        natsConnection_Destroy(w->nc);
    }
    pthread_mutex_destroy(&w->pmu);
    free(w);
}

/* The status of a failed publish: too large, log full, not connected, or no acknowledgement. */
static vs_status publish_err(char *err, natsStatus s, jsErrCode jerr, const char *detail)
{
    const char *d = detail ? detail : "";
    vs_status code = VS_ERR_UNAVAILABLE;
    const char *what = "write log: no acknowledgement (outcome unknown; retry with the same write id)";
    if (s == NATS_MAX_PAYLOAD || jerr == JSStreamMessageExceedsMaximumErr) {
        code = VS_ERR_INVALID_ARGUMENT;
        what = "write log: message too large";
    } else if (jerr == JSStreamStoreFailedErr || strstr(d, "maximum")) {
        code = VS_ERR_RESOURCE_EXHAUSTED;
        what = "write log: the log is full";
    } else if (s == NATS_INSUFFICIENT_BUFFER || s == NATS_CONNECTION_CLOSED) {
        what = "write log: not connected to NATS (not written; retry with the same write id)";
    }
    return nats_err_detail(err, code, what, s, jerr, d);
}

/* The checks every append makes before publishing. */
static vs_status check_append(vs_wlog_t *w, size_t len, const char *write_id, char *err)
{
    if (!vs_ident_valid(write_id, VS_WLOG_WRITE_ID_MAX))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "write log: a write id is 1-128 printable ASCII characters");
    int64_t max = natsConnection_GetMaxPayload(w->nc);
    if (max > 0 && (int64_t)len > max - 512) /* headers (the message id) travel in the same payload */
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "write log: a %zu-byte write exceeds the log's message limit (%lld bytes with headers)", len,
            (long long)(max - 512));
    return VS_OK;
}

vs_status vs_wlog_append(vs_wlog_t *w, const void *msg, size_t len, const char *write_id, uint64_t *seq,
                         int *duplicate, char err[VS_ERR_LEN])
{
    *seq = 0;
    *duplicate = 0;
    vs_status st = check_append(w, len, write_id, err);
    if (st != VS_OK)
        return st;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = write_id;
    po.MaxWait = w->timeout_ms; /* milliseconds */
    po.ExpectStream = w->stream;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&pa, w->js, w->subject, msg, (int)len, &po, &jerr);
    if (s == NATS_OK) {
        *seq = pa->Sequence;
        *duplicate = pa->Duplicate ? 1 : 0;
        jsPubAck_Destroy(pa);
        return VS_OK;
    }
    return publish_err(err, s, jerr, nats_GetLastError(NULL));
}

/* ---- asynchronous appends ---------------------------------------------------------------------- */

static size_t pending_bucket(const natsMsg *m)
{
    return (size_t)(((uintptr_t)m >> 4) * 0x9E3779B97F4A7C15ull >> 40) & (PENDING_BUCKETS - 1);
}

/* Removes and returns the entry of m (NULL when another path answered it already). */
static pending_t *pending_take(vs_wlog_t *w, const natsMsg *m)
{
    pthread_mutex_lock(&w->pmu);
    pending_t **pp = &w->pending[pending_bucket(m)];
    while (*pp && (*pp)->msg != m)
        pp = &(*pp)->next;
    pending_t *p = *pp;
    if (p)
        *pp = p->next; /* still counted in npending until its callback has returned (answered) */
    pthread_mutex_unlock(&w->pmu);
    return p;
}

/* An append taken by pending_take has been answered. */
static void pending_done(vs_wlog_t *w)
{
    pthread_mutex_lock(&w->pmu);
    w->npending--;
    pthread_mutex_unlock(&w->pmu);
}

/* libnats's acknowledgement handler (its reply subscription's thread): answers the append of msg. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    vs_wlog_t *w = closure;
    pending_t *p = pending_take(w, msg);
    if (p) {
        char err[VS_ERR_LEN] = "";
        if (pa)
            p->fn(p->user, VS_OK, pa->Sequence, pa->Duplicate ? 1 : 0, err);
        else {
            vs_status st =
                publish_err(err, pae ? pae->Err : NATS_ERR, pae ? pae->ErrCode : 0, pae ? pae->ErrText : "");
            p->fn(p->user, st, 0, 0, err);
        }
        free(p);
        pending_done(w);
    }
    natsMsg_Destroy(msg); /* ours once handed back */
}

vs_status vs_wlog_append_async(vs_wlog_t *w, const void *msg, size_t len, const char *write_id,
                               vs_wlog_acked_fn fn, void *user, char err[VS_ERR_LEN])
{
    vs_status st = check_append(w, len, write_id, err);
    if (st != VS_OK)
        return st;
    pending_t *p = calloc(1, sizeof *p);
    natsMsg *m = NULL;
    natsStatus s = p ? natsMsg_Create(&m, w->subject, NULL, msg, (int)len) : NATS_NO_MEMORY;
    if (s != NATS_OK) {
        free(p);
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "write log: no memory for a %zu-byte write", len);
    }
    *p = (pending_t){.msg = m, .fn = fn, .user = user};
    /* registered before the publish: the acknowledgement may arrive before js_PublishMsgAsync returns */
    pthread_mutex_lock(&w->pmu);
    size_t b = pending_bucket(m);
    p->next = w->pending[b];
    w->pending[b] = p;
    w->npending++;
    pthread_mutex_unlock(&w->pmu);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = write_id;
    po.MaxWait = w->timeout_ms; /* milliseconds: the handler then gets a timeout */
    po.ExpectStream = w->stream;
    natsMsg *owned = m;
    s = js_PublishMsgAsync(w->js, &owned, &po);
    if (s == NATS_OK)
        return VS_OK; /* libnats owns m until it hands it to on_ack */
    /* not sent (or not registered): the handler will never see m, so our entry is still there */
    pending_t *again = pending_take(w, m);
    if (again)
        pending_done(w);
    free(again);
    natsMsg_Destroy(owned);
    return publish_err(err, s, 0, nats_GetLastError(NULL));
}

void vs_wlog_drain(vs_wlog_t *w, int64_t wait_ms)
{
    if (!w || !w->js)
        return;
    double until = vs_now_s() + (double)wait_ms / 1000.0;
    for (;;) {
        pthread_mutex_lock(&w->pmu);
        size_t n = w->npending;
        pthread_mutex_unlock(&w->pmu);
        if (n == 0 || vs_now_s() >= until)
            break;
        /* libnats's own count may already be 0 (an acknowledgement whose callback still runs): sleep
         * rather than spin */
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 50;
        double t0 = vs_now_s();
        js_PublishAsyncComplete(w->js, &po);
        if (vs_now_s() - t0 < 0.001) {
            struct timespec ts = {0, 2 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* what is still unanswered is answered "unknown" here; libnats gives its messages back and drops
     * acknowledgements that arrive later */
    size_t swept = 0;
    for (size_t b = 0; b < PENDING_BUCKETS; b++) {
        for (;;) {
            pthread_mutex_lock(&w->pmu);
            pending_t *p = w->pending[b];
            if (p)
                w->pending[b] = p->next;
            pthread_mutex_unlock(&w->pmu);
            if (!p)
                break;
            char err[VS_ERR_LEN];
            vs_errf(err, VS_ERR_UNAVAILABLE,
                    "write log: no acknowledgement before shutdown (outcome unknown; retry with the same "
                    "write id)");
            p->fn(p->user, VS_ERR_UNAVAILABLE, 0, 0, err);
            free(p);
            pending_done(w);
            swept++;
        }
    }
    natsMsgList left; /* (only after an asynchronous append: libnats 3.4 crashes here before one) */
    if (swept && js_PublishAsyncGetPendingList(&left, w->js) == NATS_OK)
        natsMsgList_Destroy(&left);
    /* callbacks already running (their acknowledgement came just before): until they have returned */
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&w->pmu);
        size_t n = w->npending;
        pthread_mutex_unlock(&w->pmu);
        if (n == 0)
            break;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
}

vs_status vs_wlog_state(vs_wlog_t *w, vs_wlog_state_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, w->js, w->stream, &w->jo, &jerr);
    if (s == NATS_NOT_FOUND)
        return vs_errf(err, VS_ERR_NOT_FOUND, "write log: stream %s is gone", w->stream);
    if (s != NATS_OK)
        return nats_err(err, VS_ERR_UNAVAILABLE, "write log: stream info", s, jerr);
    out->first_seq = si->State.FirstSeq;
    out->last_seq = si->State.LastSeq;
    out->msgs = si->State.Msgs;
    out->bytes = si->State.Bytes;
    out->created_ns = si->Created;
    out->max_payload = natsConnection_GetMaxPayload(w->nc);
    jsStreamInfo_Destroy(si);
    return VS_OK;
}

/* ---- readers ------------------------------------------------------------------------------------ */

/* The stream must hold r->next (or be exactly caught up to it). */
static vs_status check_place(vs_wlog_reader_t *r, char *err)
{
    vs_wlog_state_t st;
    vs_status s = vs_wlog_state(r->w, &st, err);
    if (s != VS_OK)
        return s;
    if (st.last_seq + 1 < r->next)
        return vs_errf(
            err, VS_ERR_FAILED_PRECONDITION,
            "write log: the stream ends at %llu but %llu was applied already: it lost messages (recreated "
            "or restored); rebuild from a version that folded the log",
            (unsigned long long)st.last_seq, (unsigned long long)(r->next - 1));
    if (st.first_seq > r->next) /* 0 for a stream that never held a message */
        return vs_errf(
            err, VS_ERR_FAILED_PRECONDITION,
            "write log: the stream no longer holds %llu (its first message is %llu): writes are missing; "
            "rebuild from a version that folded the log",
            (unsigned long long)r->next, (unsigned long long)st.first_seq);
    return VS_OK;
}

static vs_status subscribe(vs_wlog_reader_t *r, char *err)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = r->w->stream;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = r->next;
    so.Config.AckPolicy = js_AckNone;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&r->sub, r->w->js, r->w->subject, NULL, &r->w->jo, &so, &jerr);
    if (s != NATS_OK) {
        r->sub = NULL;
        return nats_err(err, VS_ERR_UNAVAILABLE, "write log: subscribe", s, jerr);
    }
    return VS_OK;
}

vs_status vs_wlog_reader_open(vs_wlog_t *w, uint64_t from, vs_wlog_reader_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    if (from == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "write log: sequences start at 1");
    vs_wlog_reader_t *r = calloc(1, sizeof *r);
    if (!r)
        return vs_errf(err, VS_ERR_NOMEM, "write log: out of memory");
    r->w = w;
    r->next = from;
    r->last_check = vs_now_s();
    vs_status st = check_place(r, err);
    if (st == VS_OK)
        st = subscribe(r, err);
    if (st != VS_OK) {
        free(r);
        return st;
    }
    *out = r;
    return VS_OK;
}

void vs_wlog_reader_close(vs_wlog_reader_t *r)
{
    if (!r)
        return;
    if (r->sub) {
        natsSubscription_Unsubscribe(r->sub);
        natsSubscription_Destroy(r->sub);
    }
    free(r);
}

uint64_t vs_wlog_reader_pending(const vs_wlog_reader_t *r)
{
    return r->pending;
}

uint64_t vs_wlog_reader_position(const vs_wlog_reader_t *r)
{
    return r->next;
}

static void drop_sub(vs_wlog_reader_t *r)
{
    if (r->sub) {
        natsSubscription_Unsubscribe(r->sub);
        natsSubscription_Destroy(r->sub);
        r->sub = NULL;
    }
}

vs_status vs_wlog_reader_next(vs_wlog_reader_t *r, size_t max, int64_t wait_ms, vs_wlog_apply_fn apply,
                              void *user, size_t *n, char err[VS_ERR_LEN])
{
    *n = 0;
    if (max == 0)
        return VS_OK;
    if (!r->sub) {
        vs_status st = check_place(r, err);
        if (st == VS_OK)
            st = subscribe(r, err);
        if (st != VS_OK)
            return st;
    }
    natsMsgList list = {0};
    jsErrCode jerr = 0;
    natsStatus s =
        natsSubscription_Fetch(&list, r->sub, max > 1024 ? 1024 : (int)max, wait_ms > 0 ? wait_ms : 1, &jerr);
    if (s == NATS_TIMEOUT) {
        r->pending = 0; /* nothing came: caught up (or the consumer vanished, checked below) */
        /* caught up, or the consumer vanished (server restart): once a second, compare with the stream */
        double now = vs_now_s();
        if (now - r->last_check >= 1.0) {
            r->last_check = now;
            vs_wlog_state_t st;
            if (vs_wlog_state(r->w, &st, err) == VS_OK && st.last_seq >= r->next)
                drop_sub(r); /* the next call makes a new consumer from r->next */
        }
        return VS_OK;
    }
    if (s != NATS_OK) {
        drop_sub(r);
        return nats_err(err, VS_ERR_UNAVAILABLE, "write log: fetch", s, jerr);
    }
    vs_status st = VS_OK;
    for (int i = 0; i < list.Count && st == VS_OK; i++) {
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) {
            st = vs_errf(err, VS_ERR_CORRUPT, "write log: a message without JetStream metadata");
            drop_sub(r); /* the next call starts a new consumer from the same place */
            break;
        }
        uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
        if (seq < r->next)
            continue; /* delivered again by a new consumer */
        if (seq > r->next) {
            st = vs_errf(
                err, VS_ERR_FAILED_PRECONDITION,
                "write log: expected message %llu, got %llu: the stream no longer holds the writes between; "
                "rebuild from a version that folded the log",
                (unsigned long long)r->next, (unsigned long long)seq);
            drop_sub(r);
            break;
        }
        st = apply(user, seq, (const uint8_t *)natsMsg_GetData(list.Msgs[i]),
                   (size_t)natsMsg_GetDataLength(list.Msgs[i]), err);
        if (st == VS_OK) {
            r->next++;
            r->pending = pending;
            (*n)++;
        } else {
            drop_sub(r); /* the refused message is delivered again from a new consumer */
        }
    }
    natsMsgList_Destroy(&list);
    return st;
}
