/* redis.c: see redis.h. A thin layer over hiredis's blocking API: timeouts on every socket operation
 * (redisSetTimeout), error replies mapped to statuses, a connection marked dead after any I/O error. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "common/net/redis.h"

struct vs_redis {
    redisContext *c;
    char addr[300];
    size_t pending;
    vs_status dead; /* VS_OK while usable */
    char dead_msg[VS_ERR_LEN];
};

static vs_status io_error(vs_redis_t *r, char err[VS_ERR_LEN])
{
    if (r->dead == VS_OK) {
        r->dead = VS_ERR_UNAVAILABLE;
        const char *what = r->c->err == REDIS_ERR_EOF ? "connection closed by the server"
                           : r->c->errstr[0]          ? r->c->errstr
                                                      : "I/O error";
        snprintf(r->dead_msg, sizeof r->dead_msg, "redis %s: %s", r->addr, what);
    }
    return vs_errf(err, r->dead, "%s", r->dead_msg);
}

static vs_status reply_error(const vs_redis_t *r, const redisReply *rep, char err[VS_ERR_LEN])
{
    const char *s = rep->str ? rep->str : "";
    vs_status st = VS_ERR_INTERNAL;
    if (strncmp(s, "OOM", 3) == 0)
        st = VS_ERR_RESOURCE_EXHAUSTED;
    else if (strncmp(s, "NOPERM", 6) == 0 || strncmp(s, "NOAUTH", 6) == 0 ||
             strncmp(s, "WRONGPASS", 9) == 0 || strncmp(s, "READONLY", 8) == 0)
        st = VS_ERR_FAILED_PRECONDITION;
    else if (strncmp(s, "VSFENCE", 7) == 0)
        st = VS_ERR_FAILED_PRECONDITION;
    else if (strncmp(s, "LOADING", 7) == 0 || strncmp(s, "MISCONF", 7) == 0 || strncmp(s, "BUSY", 4) == 0)
        st = VS_ERR_UNAVAILABLE;
    return vs_errf(err, st, "redis %s: %s", r->addr, s);
}

vs_status vs_redis_open(const char *addr, int timeout_ms, const char *user, const char *password,
                        vs_redis_t **out, char err[VS_ERR_LEN])
{
    char host[256];
    int port = 6379;
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
    if (hl == 0 || hl >= sizeof host)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis address '%s': expected host:port", addr);
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis address '%s': bad port", addr);
        port = (int)p;
    }
    vs_redis_t *r = calloc(1, sizeof *r);
    if (!r)
        return vs_errf(err, VS_ERR_NOMEM, "redis: out of memory");
    snprintf(r->addr, sizeof r->addr, "%s:%d", host, port);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    r->c = timeout_ms > 0 ? redisConnectWithTimeout(host, port, tv) : redisConnect(host, port);
    if (!r->c || r->c->err) {
        vs_status st = vs_errf(err, VS_ERR_UNAVAILABLE, "redis %s: cannot connect: %s", r->addr,
                               r->c ? r->c->errstr : "out of memory");
        vs_redis_close(r);
        return st;
    }
    if (timeout_ms > 0 && redisSetTimeout(r->c, tv) != REDIS_OK) {
        vs_status st = io_error(r, err);
        vs_redis_close(r);
        return st;
    }
    if (password) {
        vs_status st = user ? vs_redis_commandl(r, NULL, err, "AUTH", user, password, (char *)NULL)
                            : vs_redis_commandl(r, NULL, err, "AUTH", password, (char *)NULL);
        if (st != VS_OK) {
            vs_redis_close(r);
            return st;
        }
    }
    *out = r;
    return VS_OK;
}

void vs_redis_close(vs_redis_t *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    free(r);
}

const char *vs_redis_addr(const vs_redis_t *r)
{
    return r->addr;
}

void vs_redis_reply_free(struct redisReply *reply)
{
    if (reply)
        freeReplyObject(reply);
}

vs_status vs_redis_append(vs_redis_t *r, int argc, const char *const *argv, const size_t *lens,
                          char err[VS_ERR_LEN])
{
    if (r->dead != VS_OK)
        return vs_errf(err, r->dead, "%s", r->dead_msg);
    if (r->pending >= VS_REDIS_PIPELINE_MAX)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "redis: more than %d commands queued",
                       VS_REDIS_PIPELINE_MAX);
    if (redisAppendCommandArgv(r->c, argc, (const char **)argv, lens) != REDIS_OK)
        return io_error(r, err);
    r->pending++;
    return VS_OK;
}

/* Reads one reply; VS_OK with *out set, or the connection's error. */
static vs_status read_reply(vs_redis_t *r, redisReply **out, char err[VS_ERR_LEN])
{
    void *rep = NULL;
    if (redisGetReply(r->c, &rep) != REDIS_OK || !rep)
        return io_error(r, err);
    *out = rep;
    return VS_OK;
}

vs_status vs_redis_collect(vs_redis_t *r, char err[VS_ERR_LEN])
{
    vs_status first = VS_OK;
    while (r->pending > 0) {
        if (r->dead != VS_OK)
            return vs_errf(err, r->dead, "%s", r->dead_msg);
        redisReply *rep = NULL;
        vs_status st = read_reply(r, &rep, first == VS_OK ? err : NULL);
        if (st != VS_OK)
            return first != VS_OK ? first : st;
        r->pending--;
        if (rep->type == REDIS_REPLY_ERROR && first == VS_OK)
            first = reply_error(r, rep, err);
        freeReplyObject(rep);
    }
    return first;
}

size_t vs_redis_pending(const vs_redis_t *r)
{
    return r->pending;
}

vs_status vs_redis_flush(vs_redis_t *r, char err[VS_ERR_LEN])
{
    if (r->dead != VS_OK)
        return vs_errf(err, r->dead, "%s", r->dead_msg);
    int done = 0;
    while (!done)
        if (redisBufferWrite(r->c, &done) != REDIS_OK)
            return io_error(r, err);
    return VS_OK;
}

vs_status vs_redis_command(vs_redis_t *r, int argc, const char *const *argv, const size_t *lens,
                           struct redisReply **out_reply, char err[VS_ERR_LEN])
{
    vs_status st = vs_redis_collect(r, err); /* a command is never read before what was queued ahead */
    if (st != VS_OK)
        return st;
    if ((st = vs_redis_append(r, argc, argv, lens, err)) != VS_OK)
        return st;
    redisReply *rep = NULL;
    if ((st = read_reply(r, &rep, err)) != VS_OK)
        return st;
    r->pending--;
    if (rep->type == REDIS_REPLY_ERROR) {
        st = reply_error(r, rep, err);
        freeReplyObject(rep);
        return st;
    }
    if (out_reply)
        *out_reply = rep;
    else
        freeReplyObject(rep);
    return VS_OK;
}

vs_status vs_redis_commandl(vs_redis_t *r, struct redisReply **out_reply, char err[VS_ERR_LEN], ...)
{
    const char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        if (argc == 16) {
            va_end(ap);
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis: more than 16 arguments");
        }
        argv[argc++] = a;
    }
    va_end(ap);
    return vs_redis_command(r, argc, argv, NULL, out_reply, err);
}

vs_status vs_redis_info_str(vs_redis_t *r, const char *section, const char *field, char *buf, size_t n,
                            char err[VS_ERR_LEN])
{
    redisReply *rep = NULL;
    vs_status st = vs_redis_commandl(r, &rep, err, "INFO", section, (char *)NULL);
    if (st != VS_OK)
        return st;
    st = vs_errf(err, VS_ERR_NOT_FOUND, "redis %s: INFO %s has no field %s", r->addr, section, field);
    size_t fl = strlen(field);
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
        for (const char *p = rep->str; p && *p;) {
            const char *nl = strchr(p, '\n');
            if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
                size_t vl = nl ? (size_t)(nl - p) - fl - 1 : strlen(p + fl + 1);
                while (vl > 0 && (p[fl + 1 + vl - 1] == '\r'))
                    vl--;
                snprintf(buf, n, "%.*s", (int)vl, p + fl + 1);
                st = VS_OK;
                break;
            }
            p = nl ? nl + 1 : NULL;
        }
    freeReplyObject(rep);
    return st;
}

vs_status vs_redis_info_u64(vs_redis_t *r, const char *section, const char *field, uint64_t *out,
                            char err[VS_ERR_LEN])
{
    char buf[32];
    vs_status st = vs_redis_info_str(r, section, field, buf, sizeof buf, err);
    if (st == VS_OK)
        *out = strtoull(buf, NULL, 10);
    return st;
}
