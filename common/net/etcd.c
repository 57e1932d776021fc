/* etcd.c: the etcd v3 JSON-gateway client: unary calls over a pool of curl easy handles, the watch thread
 * and the session (keepalive + re-registration) thread.
 *
 * Unary calls: one POST, CURLOPT_TIMEOUT_MS covering every attempt of the call. Endpoints are tried in
 * turn starting from the last one that answered; only failures where the request cannot have reached a
 * server (connection refused, name not resolved, connect timeout) move on to the next endpoint, with up to
 * three passes over the list (50 ms, then 100 ms between passes) while the call's time lasts. A call that
 * may have reached etcd is never repeated here. Watches: one streaming POST without a total timeout (TCP
 * keepalive instead), aborted by shutting its socket down from vs_etcd_watch_stop. */
#include "common/net/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/cli/secret.h"
#include "common/cli/timing.h"
#include "common/net/etcd_codec.h"

#define POOL_MAX 8
#define MAX_ENDPOINT_LEN 900
#define WATCH_BACKOFF_MIN_MS 100
#define WATCH_BACKOFF_MAX_MS 5000
#define TOKEN_MAX 512

struct vs_etcd {
    char **endpoints;
    size_t n_endpoints;
    atomic_size_t current; /* index of the endpoint that answered last */
    int timeout_ms;
    char *ca, *cert, *key, *user, *password; /* TLS and auth (vs_etcd_opts_t); NULL = unused */
    pthread_mutex_t tok_mu;                  /* token, tok_gen */
    char *password_file;                     /* re-read at every authentication (rotation) */
    char token[TOKEN_MAX];                   /* the user's current token; "" = authenticate first */
    uint64_t tok_gen;                        /* bumped by every new token */
    atomic_uint_fast64_t auths;              /* tokens fetched (vs_etcd_authentications) */
    pthread_mutex_t pool_mu;
    CURL *pool[POOL_MAX];
    size_t n_pool;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A condition variable on CLOCK_MONOTONIC, for sleeps that a stop request cuts short. */
static int cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0)
        return -1;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

/* Waits on cv (mu held by the caller) until *flag is set or ms elapsed. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, const int *flag, int64_t ms)
{
    struct timespec ts = vs_timespec_in_ms(CLOCK_MONOTONIC, ms);
    while (!*flag)
        if (pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT)
            break;
}

/* ---- client ---- */

static void free_endpoints(vs_etcd_t *e)
{
    for (size_t i = 0; i < e->n_endpoints; i++)
        free(e->endpoints[i]);
    free(e->endpoints);
}

static vs_status parse_endpoints(vs_etcd_t *e, const char *list, char err[VS_ERR_LEN])
{
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    e->endpoints = calloc(cap, sizeof *e->endpoints);
    if (e->endpoints == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd: out of memory");
    const char *p = list;
    while (1) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = end;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '/'))
            q--;
        size_t n = (size_t)(q - p);
        if (n > 0) {
            if (n > MAX_ENDPOINT_LEN ||
                !((n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0)))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                               "etcd: endpoint \"%.*s\" is not an http:// or https:// URL",
                               (int)(n > 100 ? 100 : n), p);
            char *s = strndup(p, n);
            if (s == NULL)
                return vs_errf(err, VS_ERR_NOMEM, "etcd: out of memory");
            e->endpoints[e->n_endpoints++] = s;
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    if (e->n_endpoints == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd: no endpoint in \"%.100s\"", list);
    return VS_OK;
}

static void free_auth(vs_etcd_t *e)
{
    free(e->ca);
    free(e->cert);
    free(e->key);
    free(e->user);
    free(e->password_file);
    if (e->password)
        memset(e->password, 0, strlen(e->password));
    free(e->password);
}

/* o's value, else the environment's ("" counts as unset); a malloc'd copy or NULL. *nomem on failure. */
static char *opt_or_env(const char *v, const char *var, int *nomem)
{
    if (!v || !*v)
        v = vs_secret_getenv(var);
    if (!v)
        return NULL;
    char *c = strdup(v);
    if (!c)
        *nomem = 1;
    return c;
}

static vs_status read_auth(vs_etcd_t *e, const vs_etcd_opts_t *o, char err[VS_ERR_LEN])
{
    int nomem = 0;
    e->ca = opt_or_env(o->ca_file, "VECSHARD_ETCD_CA", &nomem);
    e->cert = opt_or_env(o->cert_file, "VECSHARD_ETCD_CERT", &nomem);
    e->key = opt_or_env(o->key_file, "VECSHARD_ETCD_KEY", &nomem);
    e->user = opt_or_env(o->user, "VECSHARD_ETCD_USER", &nomem);
    const char *pf = vs_secret_getenv("VECSHARD_ETCD_PASSWORD_FILE");
    if (o->password && *o->password) {
        e->password = strdup(o->password);
        nomem |= !e->password;
    } else if (e->user && pf) { /* kept as a path: read at every authentication, so a rotation is seen */
        char pw[256];
        vs_status st = vs_secret_read_file(pf, pw, sizeof pw, err);
        memset(pw, 0, sizeof pw);
        if (st != VS_OK)
            return st;
        e->password_file = strdup(pf);
        nomem |= !e->password_file;
    } else if (e->user && vs_secret_getenv("VECSHARD_ETCD_PASSWORD")) {
        e->password = strdup(vs_secret_getenv("VECSHARD_ETCD_PASSWORD"));
        nomem |= !e->password;
    }
    if (nomem)
        return vs_errf(err, VS_ERR_NOMEM, "etcd: out of memory");
    if (e->user && !e->password && !e->password_file)
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "etcd: user %s has no password ($VECSHARD_ETCD_PASSWORD_FILE or $VECSHARD_ETCD_PASSWORD)",
            e->user);
    for (size_t i = 0; e->user && i < e->n_endpoints; i++)
        if (strncmp(e->endpoints[i], "https://", 8) != 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "etcd: refusing to send user %s's password to %s in plain text (https:// only)",
                           e->user, e->endpoints[i]);
    if (!e->cert != !e->key)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "etcd: a client certificate needs its key (and a key its "
                       "certificate): $VECSHARD_ETCD_CERT, $VECSHARD_ETCD_KEY");
    return VS_OK;
}

vs_status vs_etcd_create(const vs_etcd_opts_t *o, vs_etcd_t **out, char err[VS_ERR_LEN])
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return vs_errf(err, VS_ERR_INTERNAL, "etcd: curl_global_init: %s", curl_easy_strerror(global_rc));
    if (o == NULL || o->endpoints == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd: no endpoints given");
    vs_etcd_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd: out of memory");
    vs_status st = parse_endpoints(e, o->endpoints, err);
    if (st == VS_OK)
        st = read_auth(e, o, err);
    if (st != VS_OK) {
        free_auth(e);
        free_endpoints(e);
        free(e);
        return st;
    }
    e->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : VS_ETCD_DEFAULT_TIMEOUT_MS;
    if (pthread_mutex_init(&e->pool_mu, NULL) != 0 || pthread_mutex_init(&e->tok_mu, NULL) != 0) {
        free_auth(e);
        free_endpoints(e);
        free(e);
        return vs_errf(err, VS_ERR_NOMEM, "etcd: cannot create a mutex");
    }
    atomic_init(&e->current, 0);
    *out = e;
    return VS_OK;
}

uint64_t vs_etcd_authentications(const vs_etcd_t *e)
{
    return atomic_load(&((vs_etcd_t *)e)->auths);
}

void vs_etcd_destroy(vs_etcd_t *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n_pool; i++)
        curl_easy_cleanup(e->pool[i]);
    pthread_mutex_destroy(&e->pool_mu);
    pthread_mutex_destroy(&e->tok_mu);
    memset(e->token, 0, sizeof e->token);
    free_auth(e);
    free_endpoints(e);
    free(e);
}

static CURL *handle_take(vs_etcd_t *e)
{
    CURL *h = NULL;
    pthread_mutex_lock(&e->pool_mu);
    if (e->n_pool > 0)
        h = e->pool[--e->n_pool];
    pthread_mutex_unlock(&e->pool_mu);
    if (h != NULL)
        curl_easy_reset(h); /* keeps the connection cache: HTTP keep-alive survives */
    else
        h = curl_easy_init();
    return h;
}

static void handle_give(vs_etcd_t *e, CURL *h)
{
    pthread_mutex_lock(&e->pool_mu);
    if (e->n_pool < POOL_MAX) {
        e->pool[e->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&e->pool_mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* A reply body under construction, capped at VS_ETCD_MAX_BODY. */
typedef struct body {
    char *p;
    size_t n, cap;
    int overflow; /* 1: over the cap, 2: out of memory */
} body_t;

static int body_append(body_t *b, const char *data, size_t n)
{
    if (n > VS_ETCD_MAX_BODY - b->n) {
        b->overflow = 1;
        return -1;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->overflow = 2;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    return body_append(ud, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

/* The headers of one request: JSON, no "Expect: 100-continue", and "Authorization: <token>" when token is
 * not "" (raw: etcd refuses "Bearer <token>"). NULL when out of memory; free with curl_slist_free_all. */
static struct curl_slist *request_headers(const char *token)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json"), *t;
    if (h && !(t = curl_slist_append(h, "Expect:"))) {
        curl_slist_free_all(h);
        return NULL;
    }
    char line[TOKEN_MAX + 32] = "";
    if (token[0])
        snprintf(line, sizeof line, "Authorization: %s", token);
    if (h && line[0] && !(t = curl_slist_append(h, line))) {
        curl_slist_free_all(h);
        h = NULL;
    }
    memset(line, 0, sizeof line);
    return h;
}

/* Forgets the token of generation gen (etcd refused it), so the next call authenticates again. */
static void drop_token(vs_etcd_t *e, uint64_t gen)
{
    pthread_mutex_lock(&e->tok_mu);
    if (e->tok_gen == gen)
        memset(e->token, 0, sizeof e->token);
    pthread_mutex_unlock(&e->tok_mu);
}

/* Options every request of this client carries. */
static void common_opts(vs_etcd_t *e, CURL *h, const char *url, const char *json, struct curl_slist *headers,
                        char *errbuf)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (e->ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, e->ca);
    if (e->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, e->key);
    }
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = '\0';
}

/* Maps a failed transfer; *retry says whether the request cannot have reached a server. */
static vs_status map_curl(CURL *h, CURLcode rc, const body_t *b, const char *what, const char *url,
                          const char *errbuf, int *retry, char err[VS_ERR_LEN])
{
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    *retry = 0;
    curl_off_t connect_us = 0;
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        *retry = 1;
        return vs_errf(err, VS_ERR_UNAVAILABLE, "etcd %s: %s: %s", what, url, detail);
    case CURLE_OPERATION_TIMEDOUT:
        if (curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connect_us) == CURLE_OK && connect_us == 0)
            *retry = 1; /* never connected: the next endpoint may answer */
        return vs_errf(err, VS_ERR_DEADLINE_EXCEEDED, "etcd %s: %s: %s", what, url, detail);
    case CURLE_WRITE_ERROR:
        if (b != NULL && b->overflow == 1)
            return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "etcd %s: %s: reply larger than %zu bytes", what,
                           url, VS_ETCD_MAX_BODY);
        if (b != NULL && b->overflow == 2)
            return vs_errf(err, VS_ERR_NOMEM, "etcd %s: out of memory for the reply", what);
        return vs_errf(err, VS_ERR_INTERNAL, "etcd %s: %s: %s", what, url, detail);
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return vs_errf(err, VS_ERR_UNAVAILABLE, "etcd %s: %s: %s", what, url, detail);
    case CURLE_ABORTED_BY_CALLBACK:
        return vs_errf(err, VS_ERR_CANCELLED, "etcd %s: %s: aborted", what, url);
    case CURLE_OUT_OF_MEMORY:
        return vs_errf(err, VS_ERR_NOMEM, "etcd %s: %s", what, detail);
    default:
        return vs_errf(err, VS_ERR_INTERNAL, "etcd %s: %s: %s", what, url, detail);
    }
}

/* POSTs json to path once (over the endpoints, with retries of what cannot have reached a server), with
 * token ("" = none). VS_OK only for an HTTP 200 reply, whose body is left in *resp (caller frees resp->p);
 * any other reply is mapped through its JSON error body, and *unauth says it was HTTP 401 (the token was
 * refused). */
static vs_status post_once(vs_etcd_t *e, const char *what, const char *path, const char *json,
                           const char *token, body_t *resp, int *unauth, char err[VS_ERR_LEN])
{
    memset(resp, 0, sizeof *resp);
    *unauth = 0;
    struct curl_slist *headers = request_headers(token);
    CURL *h = headers ? handle_take(e) : NULL;
    if (h == NULL) {
        curl_slist_free_all(headers);
        return vs_errf(err, VS_ERR_NOMEM, "etcd %s: out of memory", what);
    }
    int64_t deadline = now_ms() + e->timeout_ms;
    size_t first = atomic_load(&e->current) % e->n_endpoints;
    vs_status st = vs_errf(err, VS_ERR_DEADLINE_EXCEEDED, "etcd %s: no time left", what);
    int64_t backoff = 50;
    char url[MAX_ENDPOINT_LEN + 64], errbuf[CURL_ERROR_SIZE];
    for (int pass = 0; pass < 3; pass++) {
        if (pass > 0) {
            if (deadline - now_ms() <= backoff)
                break;
            sleep_ms(backoff);
            backoff *= 2;
        }
        for (size_t k = 0; k < e->n_endpoints; k++) {
            size_t idx = (first + k) % e->n_endpoints;
            int64_t left = deadline - now_ms();
            if (left <= 0)
                goto done;
            snprintf(url, sizeof url, "%s%s", e->endpoints[idx], path);
            common_opts(e, h, url, json, headers, errbuf);
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)left);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
            resp->n = 0;
            resp->overflow = 0;
            CURLcode rc = curl_easy_perform(h);
            if (rc == CURLE_OK) {
                long code = 0;
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
                atomic_store(&e->current, idx);
                handle_give(e, h);
                curl_slist_free_all(headers);
                if (code == 200 && resp->p != NULL)
                    return VS_OK;
                st = vs_etcd_parse_error(what, code, resp->p != NULL ? resp->p : "", resp->n, err);
                /* the token is no good: refused (401: expired, invalidated by a password change), or
                 * issued before the auth store last changed (any user or role edit), which the gateway
                 * answers with HTTP 400; as etcd's Go client does, fetch a new one for both (etcd 3.4.23
                 * here keeps old tokens valid across a password change: test_tls checks both outcomes) */
                *unauth = code == 401 || strstr(err, "revision of auth store is old") != NULL;
                free(resp->p);
                memset(resp, 0, sizeof *resp);
                return st;
            }
            int retry;
            st = map_curl(h, rc, resp, what, url, errbuf, &retry, err);
            if (!retry)
                goto done;
        }
    }
done:
    handle_give(e, h);
    curl_slist_free_all(headers);
    free(resp->p);
    memset(resp, 0, sizeof *resp);
    return st;
}

/* The user's token into tok (TOKEN_MAX bytes) and its generation, fetched first (/v3/auth/authenticate)
 * when there is none; the password file, when there is one, is read again each time (rotation). */
static vs_status ensure_token(vs_etcd_t *e, char tok[TOKEN_MAX], uint64_t *gen, char err[VS_ERR_LEN])
{
    pthread_mutex_lock(&e->tok_mu);
    snprintf(tok, TOKEN_MAX, "%s", e->token);
    *gen = e->tok_gen;
    pthread_mutex_unlock(&e->tok_mu);
    if (tok[0])
        return VS_OK;
    char pw[256];
    if (e->password_file && vs_secret_read_file(e->password_file, pw, sizeof pw, err) != VS_OK)
        return VS_ERR_FAILED_PRECONDITION;
    cJSON *req = cJSON_CreateObject();
    int bad = !req || !cJSON_AddStringToObject(req, "name", e->user) ||
              !cJSON_AddStringToObject(req, "password", e->password_file ? pw : e->password);
    memset(pw, 0, sizeof pw);
    char *json = bad ? NULL : cJSON_PrintUnformatted(req);
    cJSON *pwi = req ? cJSON_GetObjectItemCaseSensitive(req, "password") : NULL;
    if (cJSON_IsString(pwi))
        memset(pwi->valuestring, 0, strlen(pwi->valuestring)); /* cJSON's copy (it has no secure free) */
    cJSON_Delete(req);
    if (!json)
        return vs_errf(err, VS_ERR_NOMEM, "etcd authenticate: out of memory");
    body_t resp;
    int unauth;
    vs_status st = post_once(e, "authenticate", "/v3/auth/authenticate", json, "", &resp, &unauth, err);
    memset(json, 0, strlen(json));
    free(json);
    if (st != VS_OK) {
        /* the server's words ("authentication failed, invalid user ID or password"), with who tried */
        char why[VS_ERR_LEN];
        snprintf(why, sizeof why, "%s", err);
        return vs_errf(err, st == VS_ERR_INVALID_ARGUMENT ? VS_ERR_FAILED_PRECONDITION : st,
                       "%s (user %.64s)", why, e->user);
    }
    cJSON *root = cJSON_ParseWithLength(resp.p, resp.n);
    const cJSON *jt = root ? cJSON_GetObjectItemCaseSensitive(root, "token") : NULL;
    if (!cJSON_IsString(jt) || !jt->valuestring[0] || strlen(jt->valuestring) >= sizeof e->token ||
        strpbrk(jt->valuestring, "\r\n")) {
        cJSON_Delete(root);
        free(resp.p);
        return vs_errf(err, VS_ERR_CORRUPT, "etcd authenticate: the reply holds no usable token");
    }
    pthread_mutex_lock(&e->tok_mu);
    snprintf(e->token, sizeof e->token, "%s", jt->valuestring);
    snprintf(tok, TOKEN_MAX, "%s", e->token);
    *gen = ++e->tok_gen;
    pthread_mutex_unlock(&e->tok_mu);
    atomic_fetch_add(&e->auths, 1);
    cJSON_Delete(root);
    free(resp.p);
    return VS_OK;
}

/* post_once with the user's token (fetched first when there is none); a refused token (HTTP 401: expired
 * after --auth-token-ttl idle, or etcd restarted) is replaced and the call made once more. */
static vs_status post(vs_etcd_t *e, const char *what, const char *path, const char *json, body_t *resp,
                      char err[VS_ERR_LEN])
{
    for (int attempt = 0;; attempt++) {
        char tok[TOKEN_MAX] = "";
        uint64_t gen = 0;
        if (e->user) {
            vs_status st = ensure_token(e, tok, &gen, err);
            if (st != VS_OK) {
                memset(resp, 0, sizeof *resp);
                return st;
            }
        }
        int unauth = 0;
        vs_status st = post_once(e, what, path, json, tok, resp, &unauth, err);
        memset(tok, 0, sizeof tok);
        if (!unauth || !e->user || attempt == 1)
            return st;
        drop_token(e, gen);
    }
}

/* Serialises req (taken; NULL means building it ran out of memory) and POSTs it. */
static vs_status post_json(vs_etcd_t *e, const char *what, const char *path, cJSON *req, int build_failed,
                           body_t *resp, char err[VS_ERR_LEN])
{
    char *json = req != NULL && !build_failed ? cJSON_PrintUnformatted(req) : NULL;
    cJSON_Delete(req);
    if (json == NULL) {
        memset(resp, 0, sizeof *resp);
        return vs_errf(err, VS_ERR_NOMEM, "etcd %s: out of memory building the request", what);
    }
    vs_status st = post(e, what, path, json, resp, err);
    free(json);
    return st;
}

/* Adds key (and range_end when prefix) to obj. Returns nonzero on allocation failure. */
static int add_key_range(cJSON *obj, const void *key, size_t klen, int prefix)
{
    if (!prefix)
        return vs_etcd_json_add_b64(obj, "key", key, klen);
    unsigned char small[256], *end = klen <= sizeof small ? small : malloc(klen);
    if (end == NULL)
        return -1;
    size_t elen = vs_etcd_prefix_end(key, klen, end);
    size_t plen = klen;
    const void *pkey = vs_etcd_prefix_key(key, &plen);
    int bad =
        vs_etcd_json_add_b64(obj, "key", pkey, plen) | vs_etcd_json_add_b64(obj, "range_end", end, elen);
    if (end != small)
        free(end);
    return bad;
}

static vs_status check_bytes(const void *p, size_t n, const char *what, char err[VS_ERR_LEN])
{
    if (p == NULL && n > 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd %s: NULL pointer with length %zu", what, n);
    if (n > VS_ETCD_MAX_BODY / 2)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd %s: %zu bytes is too large", what, n);
    return VS_OK;
}

/* check_bytes on a key and, when with_value, on a value. */
static vs_status check_pair(const void *key, size_t klen, const void *val, size_t vlen, int with_value,
                            const char *what, char err[VS_ERR_LEN])
{
    vs_status st = check_bytes(key, klen, what, err);
    if (st == VS_OK && with_value)
        st = check_bytes(val, vlen, what, err);
    return st;
}

vs_status vs_etcd_put(vs_etcd_t *e, const void *key, size_t klen, const void *val, size_t vlen, int64_t lease,
                      int64_t *out_revision, char err[VS_ERR_LEN])
{
    vs_status st;
    if ((st = check_pair(key, klen, val, vlen, 1, "put", err)) != VS_OK)
        return st;
    cJSON *req = cJSON_CreateObject();
    int bad = req == NULL || vs_etcd_json_add_b64(req, "key", key, klen) != 0 ||
              vs_etcd_json_add_b64(req, "value", val, vlen) != 0 ||
              (lease != 0 && vs_etcd_json_add_i64(req, "lease", lease) != 0);
    body_t r;
    if ((st = post_json(e, "put", "/v3/kv/put", req, bad, &r, err)) != VS_OK)
        return st;
    int64_t rev = 0;
    st = vs_etcd_parse_reply(r.p, r.n, &rev, NULL, NULL, err);
    free(r.p);
    if (st == VS_OK && out_revision != NULL)
        *out_revision = rev;
    return st;
}

static vs_status range(vs_etcd_t *e, const void *key, size_t klen, int prefix, vs_etcd_kvs_t *out,
                       char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    vs_status st = check_bytes(key, klen, "range", err);
    if (st != VS_OK)
        return st;
    cJSON *req = cJSON_CreateObject();
    int bad = req == NULL || add_key_range(req, key, klen, prefix) != 0;
    body_t r;
    if ((st = post_json(e, "range", "/v3/kv/range", req, bad, &r, err)) != VS_OK)
        return st;
    st = vs_etcd_parse_range(r.p, r.n, out, err);
    free(r.p);
    return st;
}

vs_status vs_etcd_get(vs_etcd_t *e, const void *key, size_t klen, vs_etcd_kvs_t *out, char err[VS_ERR_LEN])
{
    return range(e, key, klen, 0, out, err);
}

vs_status vs_etcd_range_prefix(vs_etcd_t *e, const void *prefix, size_t plen, vs_etcd_kvs_t *out,
                               char err[VS_ERR_LEN])
{
    return range(e, prefix, plen, 1, out, err);
}

vs_status vs_etcd_delete(vs_etcd_t *e, const void *key, size_t klen, int prefix, int64_t *out_deleted,
                         char err[VS_ERR_LEN])
{
    vs_status st = check_bytes(key, klen, "delete", err);
    if (st != VS_OK)
        return st;
    cJSON *req = cJSON_CreateObject();
    int bad = req == NULL || add_key_range(req, key, klen, prefix) != 0;
    body_t r;
    if ((st = post_json(e, "delete", "/v3/kv/deleterange", req, bad, &r, err)) != VS_OK)
        return st;
    int64_t deleted = 0;
    st = vs_etcd_parse_reply(r.p, r.n, NULL, "deleted", &deleted, err);
    free(r.p);
    if (st == VS_OK && out_deleted != NULL)
        *out_deleted = deleted;
    return st;
}

/* ---- txn ---- */

/* A new empty object appended to arr (NULL when out of memory). */
static cJSON *append_object(cJSON *arr)
{
    cJSON *o = cJSON_CreateObject();
    if (o != NULL && !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o;
}

static vs_status txn_nomem(char err[VS_ERR_LEN])
{
    return vs_errf(err, VS_ERR_NOMEM, "etcd txn: out of memory building the request");
}

/* Appends one compare object to arr. */
static vs_status add_cmp(cJSON *arr, const vs_etcd_cmp_t *c, char err[VS_ERR_LEN])
{
    static const char *targets[] = {NULL, "VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
    static const char *fields[] = {NULL, "version", "create_revision", "mod_revision", "value", "lease"};
    static const char *results[] = {NULL, "EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
    if ((int)c->target < VS_ETCD_CMP_VERSION || c->target > VS_ETCD_CMP_LEASE ||
        (int)c->result < VS_ETCD_EQUAL || c->result > VS_ETCD_LESS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd txn: bad compare target %d or result %d",
                       (int)c->target, (int)c->result);
    vs_status st = check_pair(c->key, c->key_len, c->value, c->value_len, c->target == VS_ETCD_CMP_VALUE,
                              "txn compare", err);
    if (st != VS_OK)
        return st;
    cJSON *o = append_object(arr);
    if (o == NULL)
        return txn_nomem(err);
    int bad = vs_etcd_json_add_b64(o, "key", c->key, c->key_len) != 0 ||
              cJSON_AddStringToObject(o, "target", targets[c->target]) == NULL ||
              cJSON_AddStringToObject(o, "result", results[c->result]) == NULL ||
              (c->target == VS_ETCD_CMP_VALUE ? vs_etcd_json_add_b64(o, "value", c->value, c->value_len)
                                              : vs_etcd_json_add_i64(o, fields[c->target], c->number)) != 0;
    return bad ? txn_nomem(err) : VS_OK;
}

/* Appends one {"request_put"|"request_delete_range"|"request_range": {...}} object to arr. */
static vs_status add_op(cJSON *arr, const vs_etcd_op_t *op, char err[VS_ERR_LEN])
{
    const char *name = op->kind == VS_ETCD_OP_PUT      ? "request_put"
                       : op->kind == VS_ETCD_OP_DELETE ? "request_delete_range"
                       : op->kind == VS_ETCD_OP_RANGE  ? "request_range"
                                                       : NULL;
    if (name == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd txn: bad op kind %d", (int)op->kind);
    vs_status st =
        check_pair(op->key, op->key_len, op->value, op->value_len, op->kind == VS_ETCD_OP_PUT, "txn op", err);
    if (st != VS_OK)
        return st;
    cJSON *o = append_object(arr);
    cJSON *r = o != NULL ? cJSON_AddObjectToObject(o, name) : NULL;
    if (r == NULL)
        return txn_nomem(err);
    int bad;
    if (op->kind == VS_ETCD_OP_PUT)
        bad = vs_etcd_json_add_b64(r, "key", op->key, op->key_len) != 0 ||
              vs_etcd_json_add_b64(r, "value", op->value, op->value_len) != 0 ||
              (op->lease != 0 && vs_etcd_json_add_i64(r, "lease", op->lease) != 0);
    else
        bad = add_key_range(r, op->key, op->key_len, op->prefix) != 0;
    return bad ? txn_nomem(err) : VS_OK;
}

/* Builds the whole txn request into req. */
static vs_status build_txn(cJSON *req, const vs_etcd_cmp_t *cmp, size_t ncmp, const vs_etcd_op_t *succ,
                           size_t nsucc, const vs_etcd_op_t *fail, size_t nfail, char err[VS_ERR_LEN])
{
    const struct {
        const char *name;
        size_t n;
    } arrays[3] = {{"compare", ncmp}, {"success", nsucc}, {"failure", nfail}};
    for (int a = 0; a < 3; a++) {
        if (arrays[a].n == 0)
            continue;
        cJSON *arr = cJSON_AddArrayToObject(req, arrays[a].name);
        if (arr == NULL)
            return txn_nomem(err);
        for (size_t i = 0; i < arrays[a].n; i++) {
            vs_status st =
                a == 0 ? add_cmp(arr, &cmp[i], err) : add_op(arr, a == 1 ? &succ[i] : &fail[i], err);
            if (st != VS_OK)
                return st;
        }
    }
    return VS_OK;
}

vs_status vs_etcd_txn(vs_etcd_t *e, const vs_etcd_cmp_t *cmp, size_t ncmp, const vs_etcd_op_t *succ,
                      size_t nsucc, const vs_etcd_op_t *fail, size_t nfail, vs_etcd_txn_result_t *out,
                      char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if ((ncmp > 0 && cmp == NULL) || (nsucc > 0 && succ == NULL) || (nfail > 0 && fail == NULL))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd txn: NULL array with a nonzero count");
    cJSON *req = cJSON_CreateObject();
    if (req == NULL)
        return txn_nomem(err);
    vs_status st = build_txn(req, cmp, ncmp, succ, nsucc, fail, nfail, err);
    if (st != VS_OK) {
        cJSON_Delete(req);
        return st;
    }
    body_t r;
    if ((st = post_json(e, "txn", "/v3/kv/txn", req, 0, &r, err)) != VS_OK)
        return st;
    st = vs_etcd_parse_txn(r.p, r.n, out, err);
    free(r.p);
    return st;
}

/* ---- leases, compaction ---- */

static vs_status post_id(vs_etcd_t *e, const char *what, const char *path, const char *name, int64_t v,
                         body_t *r, char err[VS_ERR_LEN])
{
    cJSON *req = cJSON_CreateObject();
    int bad = req == NULL || vs_etcd_json_add_i64(req, name, v) != 0;
    return post_json(e, what, path, req, bad, r, err);
}

vs_status vs_etcd_lease_grant(vs_etcd_t *e, int64_t ttl_s, int64_t *out_id, char err[VS_ERR_LEN])
{
    if (ttl_s < 1)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd lease grant: ttl %" PRId64 " s < 1", ttl_s);
    body_t r;
    vs_status st = post_id(e, "lease grant", "/v3/lease/grant", "TTL", ttl_s, &r, err);
    if (st != VS_OK)
        return st;
    int64_t id = 0;
    st = vs_etcd_parse_reply(r.p, r.n, NULL, "ID", &id, err);
    free(r.p);
    if (st == VS_OK && id == 0)
        st = vs_errf(err, VS_ERR_CORRUPT, "etcd lease grant: reply has no lease ID");
    if (st == VS_OK)
        *out_id = id;
    return st;
}

vs_status vs_etcd_lease_keepalive(vs_etcd_t *e, int64_t id, int64_t *out_ttl, char err[VS_ERR_LEN])
{
    body_t r;
    vs_status st = post_id(e, "lease keepalive", "/v3/lease/keepalive", "ID", id, &r, err);
    if (st != VS_OK)
        return st;
    int64_t ttl = 0;
    st = vs_etcd_parse_keepalive(r.p, r.n, &ttl, err);
    free(r.p);
    if (st == VS_OK && out_ttl != NULL)
        *out_ttl = ttl;
    return st;
}

vs_status vs_etcd_lease_revoke(vs_etcd_t *e, int64_t id, char err[VS_ERR_LEN])
{
    body_t r;
    vs_status st = post_id(e, "lease revoke", "/v3/lease/revoke", "ID", id, &r, err);
    if (st != VS_OK)
        return st;
    st = vs_etcd_parse_reply(r.p, r.n, NULL, NULL, NULL, err);
    free(r.p);
    return st;
}

vs_status vs_etcd_compact(vs_etcd_t *e, int64_t revision, char err[VS_ERR_LEN])
{
    cJSON *req = cJSON_CreateObject();
    int bad = req == NULL || vs_etcd_json_add_i64(req, "revision", revision) != 0 ||
              cJSON_AddTrueToObject(req, "physical") == NULL;
    body_t r;
    vs_status st = post_json(e, "compact", "/v3/kv/compaction", req, bad, &r, err);
    if (st != VS_OK)
        return st;
    st = vs_etcd_parse_reply(r.p, r.n, NULL, NULL, NULL, err);
    free(r.p);
    return st;
}

/* ---- watch ---- */

struct vs_etcd_watch {
    vs_etcd_t *e;
    char *prefix;
    size_t plen;
    vs_etcd_watch_cb cb;
    void *user;
    pthread_t thread;
    CURL *h;
    pthread_mutex_t mu; /* guards stop, sock, stats */
    pthread_cond_t cv;
    int stop;
    curl_socket_t sock; /* the stream's socket while open, so stop can shut it down */
    vs_etcd_watch_stats_t stats;
    /* stream state, watch thread only */
    body_t line;
    int created, canceled, failed;
    int64_t compact_revision;
    char stream_err[VS_ERR_LEN];
};

static int watch_stopping(vs_etcd_watch_t *w)
{
    pthread_mutex_lock(&w->mu);
    int s = w->stop;
    pthread_mutex_unlock(&w->mu);
    return s;
}

static void deliver(vs_etcd_watch_t *w, vs_etcd_watch_kind kind, const vs_etcd_kvs_t *snap,
                    const vs_etcd_kv_t *kv, int64_t rev)
{
    vs_etcd_watch_event_t ev = {kind, snap, kv, rev};
    w->cb(&ev, w->user);
}

/* Reports a connection-state change (state: 1 connected, 0 not) once per transition. */
static void set_connected(vs_etcd_watch_t *w, int state)
{
    pthread_mutex_lock(&w->mu);
    int was = w->stats.connected;
    w->stats.connected = state;
    if (!state)
        w->stats.disconnects++;
    pthread_mutex_unlock(&w->mu);
    if (was != state)
        deliver(w, state ? VS_ETCD_WATCH_CONNECTED : VS_ETCD_WATCH_DISCONNECTED, NULL, NULL, 0);
}

/* Handles one NDJSON line; returns -1 to end the stream. */
static int watch_line(vs_etcd_watch_t *w, const char *line, size_t n)
{
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    vs_etcd_watch_msg_t m;
    vs_status st = vs_etcd_parse_watch_msg(line, n, &m, w->stream_err);
    if (st != VS_OK) {
        w->failed = 1;
        return -1;
    }
    if (m.created)
        w->created = 1;
    for (size_t i = 0; i < m.n_events; i++) {
        deliver(w, m.is_delete[i] ? VS_ETCD_WATCH_DELETE : VS_ETCD_WATCH_PUT, NULL, &m.events[i],
                m.events[i].mod_revision);
        pthread_mutex_lock(&w->mu);
        w->stats.events++;
        pthread_mutex_unlock(&w->mu);
    }
    int end = 0;
    if (m.canceled) {
        w->canceled = 1;
        w->compact_revision = m.compact_revision;
        snprintf(w->stream_err, sizeof w->stream_err,
                 "etcd watch canceled (compact_revision %" PRId64 "): %s", m.compact_revision,
                 m.cancel_reason);
        end = 1;
    }
    vs_etcd_watch_msg_fini(&m);
    return end ? -1 : 0;
}

static size_t watch_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    vs_etcd_watch_t *w = ud;
    size_t n = size * nmemb, off = 0;
    if (watch_stopping(w))
        return 0;
    while (off < n) {
        const char *nl = memchr(ptr + off, '\n', n - off);
        size_t take = nl != NULL ? (size_t)(nl - (ptr + off)) : n - off;
        if (body_append(&w->line, ptr + off, take) != 0) {
            snprintf(w->stream_err, sizeof w->stream_err, "etcd watch: message over %zu bytes",
                     VS_ETCD_MAX_BODY);
            w->failed = 1;
            return 0;
        }
        off += take;
        if (nl == NULL)
            break;
        off++; /* the newline */
        int rc = watch_line(w, w->line.p, w->line.n);
        w->line.n = 0;
        if (rc != 0 || watch_stopping(w))
            return 0;
    }
    return n;
}

static int watch_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return watch_stopping(ud);
}

static curl_socket_t watch_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    vs_etcd_watch_t *w = ud;
    (void)purpose;
    pthread_mutex_lock(&w->mu);
    curl_socket_t s = CURL_SOCKET_BAD;
    if (!w->stop) {
        s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        w->sock = s;
    }
    pthread_mutex_unlock(&w->mu);
    return s;
}

static int watch_close_socket(void *ud, curl_socket_t s)
{
    vs_etcd_watch_t *w = ud;
    pthread_mutex_lock(&w->mu);
    if (w->sock == s)
        w->sock = CURL_SOCKET_BAD;
    int rc = close(s);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Runs one watch stream from start_rev until it ends, fails, is canceled or stop is requested. */
static void watch_stream(vs_etcd_watch_t *w, int64_t start_rev)
{
    w->created = w->canceled = w->failed = 0;
    w->compact_revision = 0;
    w->line.n = 0;
    w->stream_err[0] = '\0';
    cJSON *req = cJSON_CreateObject(), *cr = cJSON_CreateObject();
    int bad = req == NULL || cr == NULL || add_key_range(cr, w->prefix, w->plen, 1) != 0 ||
              vs_etcd_json_add_i64(cr, "start_revision", start_rev) != 0;
    if (!bad && cJSON_AddItemToObject(req, "create_request", cr))
        cr = NULL;
    else
        bad = 1;
    char *json = bad ? NULL : cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    cJSON_Delete(cr);
    if (json == NULL) {
        w->failed = 1;
        snprintf(w->stream_err, sizeof w->stream_err, "etcd watch: out of memory");
        return;
    }
    vs_etcd_t *e = w->e;
    char url[MAX_ENDPOINT_LEN + 64], errbuf[CURL_ERROR_SIZE];
    snprintf(url, sizeof url, "%s/v3/watch", e->endpoints[atomic_load(&e->current) % e->n_endpoints]);
    uint64_t gen = 0;
    char tok[TOKEN_MAX] = "";
    struct curl_slist *headers = NULL;
    if (e->user && ensure_token(e, tok, &gen, w->stream_err) != VS_OK) {
        w->failed = 1;
        free(json);
        return;
    }
    headers = request_headers(tok);
    memset(tok, 0, sizeof tok);
    if (!headers) {
        w->failed = 1;
        snprintf(w->stream_err, sizeof w->stream_err, "etcd watch: out of memory");
        free(json);
        return;
    }
    CURL *h = w->h;
    curl_easy_reset(h);
    common_opts(e, h, url, json, headers, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, watch_xferinfo);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, watch_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, w);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, watch_close_socket);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, w);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (code != 200 && !w->failed) {
            w->failed = 1;
            vs_etcd_parse_error("watch", code, w->line.p != NULL ? w->line.p : "", w->line.n, w->stream_err);
        }
    } else if (!w->canceled && !w->failed) {
        int retry;
        w->failed = 1;
        map_curl(h, rc, NULL, "watch", url, errbuf, &retry, w->stream_err);
    }
    /* The connection is not reused after an aborted stream; curl closes it through watch_close_socket. */
    curl_slist_free_all(headers);
    free(json);
    /* A refused token shows as HTTP 401 or as an error line in the stream; either way the next stream
     * authenticates again (cheap next to the backoff before it). */
    if (w->failed && e->user)
        drop_token(e, gen);
}

static void *watch_main(void *arg)
{
    vs_etcd_watch_t *w = arg;
    int64_t backoff = WATCH_BACKOFF_MIN_MS;
    while (!watch_stopping(w)) {
        vs_etcd_kvs_t snap;
        char err[VS_ERR_LEN];
        vs_status st = vs_etcd_range_prefix(w->e, w->prefix, w->plen, &snap, err);
        if (watch_stopping(w)) {
            vs_etcd_kvs_fini(&snap);
            break;
        }
        if (st == VS_OK) {
            set_connected(w, 1);
            pthread_mutex_lock(&w->mu);
            w->stats.snapshots++;
            pthread_mutex_unlock(&w->mu);
            deliver(w, VS_ETCD_WATCH_SNAPSHOT, &snap, NULL, snap.revision);
            int64_t rev = snap.revision;
            vs_etcd_kvs_fini(&snap);
            watch_stream(w, rev + 1);
            if (watch_stopping(w))
                break;
            if (w->created)
                backoff = WATCH_BACKOFF_MIN_MS; /* the stream worked: start the backoff over */
            if (w->canceled && w->compact_revision > 0) {
                pthread_mutex_lock(&w->mu);
                w->stats.compactions++;
                pthread_mutex_unlock(&w->mu);
                continue; /* resync at once */
            }
        }
        set_connected(w, 0);
        pthread_mutex_lock(&w->mu);
        cond_wait_ms(&w->cv, &w->mu, &w->stop, backoff);
        pthread_mutex_unlock(&w->mu);
        backoff = backoff * 2 > WATCH_BACKOFF_MAX_MS ? WATCH_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

vs_status vs_etcd_watch_start(vs_etcd_t *e, const void *prefix, size_t plen, vs_etcd_watch_cb cb, void *user,
                              vs_etcd_watch_t **out, char err[VS_ERR_LEN])
{
    vs_status st = check_bytes(prefix, plen, "watch", err);
    if (st != VS_OK)
        return st;
    if (cb == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd watch: no callback");
    vs_etcd_watch_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd watch: out of memory");
    w->prefix = malloc(plen + 1);
    w->h = curl_easy_init();
    if (w->prefix == NULL || w->h == NULL) {
        free(w->prefix);
        curl_easy_cleanup(w->h);
        free(w);
        return vs_errf(err, VS_ERR_NOMEM, "etcd watch: out of memory");
    }
    if (plen > 0)
        memcpy(w->prefix, prefix, plen);
    w->plen = plen;
    w->e = e;
    w->cb = cb;
    w->user = user;
    w->sock = CURL_SOCKET_BAD;
    w->stats.connected = -1; /* unknown: the first range reports either state */
    if (pthread_mutex_init(&w->mu, NULL) != 0 || cond_init_monotonic(&w->cv) != 0 ||
        pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        curl_easy_cleanup(w->h);
        free(w->prefix);
        free(w);
        return vs_errf(err, VS_ERR_INTERNAL, "etcd watch: cannot start the thread");
    }
    *out = w;
    return VS_OK;
}

void vs_etcd_watch_stats(const vs_etcd_watch_t *w, vs_etcd_watch_stats_t *out)
{
    vs_etcd_watch_t *m = (vs_etcd_watch_t *)w; /* the mutex is not part of the logical state */
    pthread_mutex_lock(&m->mu);
    *out = w->stats;
    if (out->connected < 0)
        out->connected = 0;
    pthread_mutex_unlock(&m->mu);
}

void vs_etcd_watch_stop(vs_etcd_watch_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    if (w->sock != CURL_SOCKET_BAD)
        shutdown(w->sock, SHUT_RDWR); /* wakes the stream's poll at once; curl still closes the fd */
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    curl_easy_cleanup(w->h);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->line.p);
    free(w->prefix);
    free(w);
}

/* ---- session ---- */

typedef struct sess_entry {
    char *key, *val;
    size_t klen, vlen;
    int synced; /* put under the current lease */
} sess_entry_t;

struct vs_etcd_session {
    vs_etcd_t *e;
    int64_t ttl_s;
    pthread_t thread;
    /* io serialises the session's network work and guards entries and lost; lock order io, then mu */
    pthread_mutex_t io;
    sess_entry_t *entries;
    size_t n_entries, cap_entries;
    int lost; /* the lease is known or presumed gone */
    int64_t last_ok_ms;
    /* mu guards the rest (and the lease id in stats), and the thread's sleep */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, kick;
    vs_etcd_session_stats_t stats;
    vs_etcd_session_cb cb;
    void *cb_user;
};

static int64_t sess_lease(vs_etcd_session_t *s)
{
    pthread_mutex_lock(&s->mu);
    int64_t l = s->stats.lease;
    pthread_mutex_unlock(&s->mu);
    return l;
}

/* Puts every entry not yet written under lease (io held). Returns the first failure's status. */
static vs_status sess_sync(vs_etcd_session_t *s, int64_t lease, char err[VS_ERR_LEN])
{
    vs_status first = VS_OK;
    for (size_t i = 0; i < s->n_entries; i++) {
        sess_entry_t *en = &s->entries[i];
        if (en->synced)
            continue;
        vs_status st = vs_etcd_put(s->e, en->key, en->klen, en->val, en->vlen, lease, NULL, err);
        if (st == VS_OK)
            en->synced = 1;
        else if (first == VS_OK)
            first = st;
        if (st == VS_ERR_NOT_FOUND)
            s->lost = 1;
    }
    return first;
}

/* Grants a new lease and re-puts every entry (io held). Returns 1 when a new lease was taken. */
static int sess_reregister(vs_etcd_session_t *s)
{
    char err[VS_ERR_LEN];
    int64_t id;
    if (vs_etcd_lease_grant(s->e, s->ttl_s, &id, err) != VS_OK)
        return 0;
    pthread_mutex_lock(&s->mu);
    s->stats.lease = id;
    s->stats.reregistrations++;
    pthread_mutex_unlock(&s->mu);
    s->lost = 0;
    s->last_ok_ms = now_ms();
    for (size_t i = 0; i < s->n_entries; i++)
        s->entries[i].synced = 0;
    sess_sync(s, id, err);
    return 1;
}

static void *sess_main(void *arg)
{
    vs_etcd_session_t *s = arg;
    int64_t interval = s->ttl_s * 1000 / 3;
    if (interval < 100)
        interval = 100;
    while (1) {
        pthread_mutex_lock(&s->mu);
        if (!s->kick)
            cond_wait_ms(&s->cv, &s->mu, &s->stop, interval);
        int stop = s->stop;
        s->kick = 0;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        pthread_mutex_lock(&s->io);
        int64_t lease = sess_lease(s);
        char err[VS_ERR_LEN];
        if (!s->lost && lease != 0) {
            vs_status st = vs_etcd_lease_keepalive(s->e, lease, NULL, err);
            pthread_mutex_lock(&s->mu);
            if (st == VS_OK)
                s->stats.keepalives++;
            else
                s->stats.keepalive_failures++;
            pthread_mutex_unlock(&s->mu);
            if (st == VS_OK) {
                s->last_ok_ms = now_ms();
                sess_sync(s, lease, err);
            } else if (st == VS_ERR_NOT_FOUND || now_ms() - s->last_ok_ms > s->ttl_s * 1000) {
                s->lost = 1;
            }
        }
        int renewed = 0;
        int64_t new_lease = 0;
        if (s->lost || lease == 0) {
            renewed = sess_reregister(s);
            new_lease = sess_lease(s);
        }
        pthread_mutex_unlock(&s->io);
        if (renewed) {
            pthread_mutex_lock(&s->mu);
            vs_etcd_session_cb cb = s->cb;
            void *user = s->cb_user;
            pthread_mutex_unlock(&s->mu);
            if (cb != NULL)
                cb(new_lease, user);
        }
    }
    return NULL;
}

vs_status vs_etcd_session_create(vs_etcd_t *e, int64_t ttl_s, vs_etcd_session_t **out, char err[VS_ERR_LEN])
{
    if (ttl_s < 1)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd session: ttl %" PRId64 " s < 1", ttl_s);
    int64_t id;
    vs_status st = vs_etcd_lease_grant(e, ttl_s, &id, err);
    if (st != VS_OK)
        return st;
    vs_etcd_session_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        vs_etcd_lease_revoke(e, id, err);
        return vs_errf(err, VS_ERR_NOMEM, "etcd session: out of memory");
    }
    s->e = e;
    s->ttl_s = ttl_s;
    s->stats.lease = id;
    s->last_ok_ms = now_ms();
    if (pthread_mutex_init(&s->io, NULL) != 0 || pthread_mutex_init(&s->mu, NULL) != 0 ||
        cond_init_monotonic(&s->cv) != 0 || pthread_create(&s->thread, NULL, sess_main, s) != 0) {
        free(s);
        vs_etcd_lease_revoke(e, id, err);
        return vs_errf(err, VS_ERR_INTERNAL, "etcd session: cannot start the thread");
    }
    *out = s;
    return VS_OK;
}

void vs_etcd_session_on_reregister(vs_etcd_session_t *s, vs_etcd_session_cb cb, void *user)
{
    pthread_mutex_lock(&s->mu);
    s->cb = cb;
    s->cb_user = user;
    pthread_mutex_unlock(&s->mu);
}

vs_status vs_etcd_session_put(vs_etcd_session_t *s, const void *key, size_t klen, const void *val,
                              size_t vlen, char err[VS_ERR_LEN])
{
    vs_status st;
    if ((st = check_pair(key, klen, val, vlen, 1, "session put", err)) != VS_OK)
        return st;
    char *v = malloc(vlen + 1);
    if (v == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd session put: out of memory");
    if (vlen > 0)
        memcpy(v, val, vlen);
    pthread_mutex_lock(&s->io);
    sess_entry_t *en = NULL;
    for (size_t i = 0; i < s->n_entries && en == NULL; i++)
        if (s->entries[i].klen == klen && (klen == 0 || memcmp(s->entries[i].key, key, klen) == 0))
            en = &s->entries[i];
    if (en == NULL) {
        char *k = malloc(klen + 1);
        if (k != NULL && s->n_entries == s->cap_entries) {
            size_t cap = s->cap_entries ? s->cap_entries * 2 : 8;
            sess_entry_t *g = realloc(s->entries, cap * sizeof *g);
            if (g != NULL) {
                s->entries = g;
                s->cap_entries = cap;
            }
        }
        if (k == NULL || s->n_entries == s->cap_entries) {
            pthread_mutex_unlock(&s->io);
            free(k);
            free(v);
            return vs_errf(err, VS_ERR_NOMEM, "etcd session put: out of memory");
        }
        if (klen > 0)
            memcpy(k, key, klen);
        en = &s->entries[s->n_entries++];
        *en = (sess_entry_t){k, NULL, klen, 0, 0};
    }
    free(en->val);
    en->val = v;
    en->vlen = vlen;
    en->synced = 0;
    int64_t lease = sess_lease(s);
    if (s->lost || lease == 0) {
        st = vs_errf(err, VS_ERR_UNAVAILABLE,
                     "etcd session put: no live lease; the key is put at re-registration");
    } else {
        st = vs_etcd_put(s->e, key, klen, val, vlen, lease, NULL, err);
        if (st == VS_OK)
            en->synced = 1;
        if (st == VS_ERR_NOT_FOUND)
            s->lost = 1;
    }
    pthread_mutex_unlock(&s->io);
    if (st == VS_ERR_NOT_FOUND) {
        pthread_mutex_lock(&s->mu);
        s->kick = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return st;
}

void vs_etcd_session_stats(const vs_etcd_session_t *s, vs_etcd_session_stats_t *out)
{
    vs_etcd_session_t *m = (vs_etcd_session_t *)s; /* the mutex is not part of the logical state */
    pthread_mutex_lock(&m->mu);
    *out = s->stats;
    pthread_mutex_unlock(&m->mu);
}

void vs_etcd_session_close(vs_etcd_session_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    int64_t lease = sess_lease(s);
    char err[VS_ERR_LEN];
    if (lease != 0)
        vs_etcd_lease_revoke(s->e, lease, err); /* best effort: otherwise the lease expires after ttl */
    for (size_t i = 0; i < s->n_entries; i++) {
        free(s->entries[i].key);
        free(s->entries[i].val);
    }
    free(s->entries);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->io);
    free(s);
}
