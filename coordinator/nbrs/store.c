/* store.c: see store.h. The progress of a set lives in Redis beside its values (the #meta hash), so a run
 * resumed from another machine, or after Redis restarted from its own persistence, finds exactly what
 * Redis holds. It is advanced only after every SET of the block was acknowledged. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "coordinator/nbrs/store.h"

#define PIPELINE_CHUNK 1024 /* SETs queued before their replies are read: bounds the output buffer */
#define KEY_MAX (VS_NBRS_MAX_PREFIX + VS_NBRS_MAX_NAME + VS_NBRS_MAX_KEY + 16)

/* Progress, fenced: recorded only while the meta is still this run's (same fingerprint, state writing), so
 * a set dropped or taken over while a run wrote it is never advanced or recreated. 1, or 0 when fenced. */
static const char PROGRESS_LUA[] = "if redis.call('HGET', KEYS[1], 'fingerprint') ~= ARGV[1] or "
                                   "redis.call('HGET', KEYS[1], 'state') ~= 'writing' "
                                   "then return 0 end redis.call('HSET', KEYS[1], 'done', ARGV[2]) return 1";

/* The switch, one atomic script: checks that the meta is this run's (fingerprint), writing or complete, every
 * key recorded, and the #current / #sets keys of the right types (so no command below can fail halfway),
 * then updates #sets, the meta, and #current last. An error reply starting VSFENCE changes nothing. */
static const char SWITCH_LUA[] =
    "local fp = redis.call('HGET', KEYS[1], 'fingerprint') "
    "if fp ~= ARGV[1] then return redis.error_reply('VSFENCE set ' .. ARGV[2] .. ' is no longer held by this "
    "run "
    "(dropped, or written by another run)') end "
    "local st = redis.call('HGET', KEYS[1], 'state') "
    "if st ~= 'writing' and st ~= 'complete' then return redis.error_reply('VSFENCE set ' .. ARGV[2] .. ' is "
    "' .. "
    "tostring(st)) end "
    "if redis.call('HGET', KEYS[1], 'done') ~= ARGV[3] then return redis.error_reply('VSFENCE set ' .. "
    "ARGV[2] .. "
    "' has not every key recorded') end "
    "local t = redis.call('TYPE', KEYS[3])['ok'] "
    "if t ~= 'list' and t ~= 'none' then return redis.error_reply('VSFENCE ' .. KEYS[3] .. ' holds a ' .. t) "
    "end "
    "t = redis.call('TYPE', KEYS[2])['ok'] "
    "if t ~= 'string' and t ~= 'none' then return redis.error_reply('VSFENCE ' .. KEYS[2] .. ' holds a ' .. "
    "t) end "
    "redis.call('LREM', KEYS[3], 0, ARGV[2]) redis.call('LPUSH', KEYS[3], ARGV[2]) "
    "redis.call('HSET', KEYS[1], 'state', 'complete', 'switched', ARGV[4]) "
    "redis.call('SET', KEYS[2], ARGV[2]) return 1";

/* Marks a set being deleted (only when its meta exists), before its keys go: a run of that set started
 * later restarts it instead of taking a half-deleted set for complete. */
static const char DELETING_LUA[] = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], "
                                   "'state', 'deleting') end return 1";

static vs_status eval(vs_redis_t *r, const char *script, int nkeys, const char *const *args, int nargs,
                      long long *out, char err[VS_ERR_LEN])
{
    const char *argv[12];
    char nk[8];
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nk;
    for (int i = 0; i < nargs; i++)
        argv[3 + i] = args[i];
    redisReply *rep = NULL;
    vs_status st = vs_redis_command(r, 3 + nargs, argv, NULL, &rep, err);
    if (st == VS_OK && out)
        *out = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    vs_redis_reply_free(rep);
    return st;
}

static vs_status drop_set(vs_redis_t *r, const char *prefix, const char *set, size_t *removed,
                          char err[VS_ERR_LEN]);

static const char *format_name(vs_nbrs_format f)
{
    return f == VS_NBRS_JSON ? "json" : "binary";
}

/* The field `name` of an HGETALL reply, or NULL. */
static const char *hash_field(const redisReply *rep, const char *name)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        if (rep->element[i]->type == REDIS_REPLY_STRING && strcmp(rep->element[i]->str, name) == 0 &&
            rep->element[i + 1]->type == REDIS_REPLY_STRING)
            return rep->element[i + 1]->str;
    return NULL;
}

vs_status vs_nbrs_store_current(vs_redis_t *r, const char *prefix, char *buf, char err[VS_ERR_LEN])
{
    char key[KEY_MAX];
    vs_nbrs_key_current(key, sizeof key, prefix);
    redisReply *rep = NULL;
    vs_status st = vs_redis_commandl(r, &rep, err, "GET", key, (char *)NULL);
    if (st != VS_OK)
        return st;
    buf[0] = 0;
    if (rep->type == REDIS_REPLY_STRING)
        snprintf(buf, VS_NBRS_MAX_NAME + 1, "%s", rep->str);
    vs_redis_reply_free(rep);
    return VS_OK;
}

vs_status vs_nbrs_store_begin(const vs_nbrs_store_t *s, const char *fingerprint, uint64_t n_keys,
                              const char *version, vs_nbrs_progress_t *out, char err[VS_ERR_LEN])
{
    char meta[KEY_MAX], nk[24], k[24], now[24];
    vs_nbrs_key_meta(meta, sizeof meta, s->prefix, s->set);
    snprintf(nk, sizeof nk, "%llu", (unsigned long long)n_keys);
    snprintf(k, sizeof k, "%zu", s->k);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    /* claim the name: only the first run of a set writes its fingerprint */
    vs_status st =
        vs_redis_commandl(s->redis, NULL, err, "HSETNX", meta, "fingerprint", fingerprint, (char *)NULL);
    redisReply *rep = NULL;
    if (st == VS_OK)
        st = vs_redis_commandl(s->redis, &rep, err, "HGETALL", meta, (char *)NULL);
    if (st != VS_OK)
        return st;
    const char *fp = hash_field(rep, "fingerprint"), *state = hash_field(rep, "state");
    const char *done = hash_field(rep, "done"), *n = hash_field(rep, "n_keys");
    if (!fp || strcmp(fp, fingerprint) != 0) {
        st = vs_errf(err, VS_ERR_ALREADY_EXISTS,
                     "set %s in %s was written by another run (fingerprint %s, this run's %s: other queries, "
                     "keys, version, k, parameters or format); name another --set, or --drop %s first",
                     s->set, vs_redis_addr(s->redis), fp ? fp : "(none)", fingerprint, s->set);
        vs_redis_reply_free(rep);
        return st;
    }
    vs_nbrs_progress_t p = {0};
    if (state &&
        strcmp(state, "deleting") == 0) { /* an expire or a drop stopped halfway: finish it, restart */
        vs_redis_reply_free(rep);
        size_t removed = 0;
        if ((st = drop_set(s->redis, s->prefix, s->set, &removed, err)) != VS_OK)
            return st;
        return vs_nbrs_store_begin(s, fingerprint, n_keys, version, out, err);
    }
    if (state) { /* an earlier attempt of this run */
        if (!n || strtoull(n, NULL, 10) != n_keys) {
            vs_redis_reply_free(rep);
            return vs_errf(err, VS_ERR_CORRUPT, "set %s: its meta records %s keys, this run has %llu", s->set,
                           n ? n : "no count of", (unsigned long long)n_keys);
        }
        p.done = done ? strtoull(done, NULL, 10) : 0;
        p.complete = strcmp(state, "complete") == 0;
        if (p.done > n_keys)
            p.done = n_keys;
        vs_redis_reply_free(rep);
        char cur[VS_NBRS_MAX_NAME + 1];
        if ((st = vs_nbrs_store_current(s->redis, s->prefix, cur, err)) != VS_OK)
            return st;
        p.is_current = strcmp(cur, s->set) == 0;
        *out = p;
        return VS_OK;
    }
    vs_redis_reply_free(rep);
    st = vs_redis_commandl(s->redis, NULL, err, "HSET", meta, "n_keys", nk, "k", k, "format",
                           format_name(s->format), "version", version, "done", "0", "created", now, "state",
                           "writing", (char *)NULL);
    if (st == VS_OK)
        *out = p;
    return st;
}

vs_status vs_nbrs_store_put(const vs_nbrs_store_t *s, size_t n, const char *const *keys,
                            const size_t *key_lens, const int64_t *ids, const float *dist,
                            uint64_t done_after, int stop_before_replies, char err[VS_ERR_LEN])
{
    size_t vcap = vs_nbrs_value_max_bytes(s->format, s->k, strlen(s->set));
    uint8_t *val = malloc(vcap);
    char *key = malloc(KEY_MAX);
    vs_status st = val && key ? VS_OK : vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    for (size_t i = 0; i < n && st == VS_OK; i++) {
        size_t kl = vs_nbrs_key_data(key, KEY_MAX, s->prefix, s->set, keys[i], key_lens[i]);
        size_t vl = vs_nbrs_value_encode(s->format, s->set, s->similarity, ids + i * s->k, dist + i * s->k,
                                         s->k, val);
        const char *argv[3] = {"SET", key, (const char *)val};
        const size_t lens[3] = {3, kl, vl};
        st = vs_redis_append(s->redis, 3, argv, lens, err);
        if (st == VS_OK && vs_redis_pending(s->redis) >= PIPELINE_CHUNK)
            st = vs_redis_collect(s->redis, err);
    }
    if (st == VS_OK && stop_before_replies && vs_redis_pending(s->redis) > 0 &&
        (st = vs_redis_flush(s->redis, err)) == VS_OK)
        raise(SIGSTOP); /* the test hook: the last SETs are sent, their replies not read */
    if (st == VS_OK)
        st = vs_redis_collect(s->redis, err);
    free(val);
    free(key);
    if (st != VS_OK)
        return st;
    char meta[KEY_MAX], d[24];
    vs_nbrs_key_meta(meta, sizeof meta, s->prefix, s->set);
    snprintf(d, sizeof d, "%llu", (unsigned long long)done_after);
    long long ok = 0;
    const char *args[3] = {meta, s->fingerprint, d};
    if ((st = eval(s->redis, PROGRESS_LUA, 1, args, 3, &ok, err)) != VS_OK)
        return st;
    return ok == 1
               ? VS_OK
               : vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                         "set %s was dropped or taken over by another run while this run wrote it", s->set);
}

vs_status vs_nbrs_store_switch(const vs_nbrs_store_t *s, uint64_t n_keys, char err[VS_ERR_LEN])
{
    char meta[KEY_MAX], cur[KEY_MAX], sets[KEY_MAX], now[24], nk[24];
    vs_nbrs_key_meta(meta, sizeof meta, s->prefix, s->set);
    vs_nbrs_key_current(cur, sizeof cur, s->prefix);
    vs_nbrs_key_sets(sets, sizeof sets, s->prefix);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    snprintf(nk, sizeof nk, "%llu", (unsigned long long)n_keys);
    const char *args[7] = {meta, cur, sets, s->fingerprint, s->set, nk, now};
    vs_status st = eval(s->redis, SWITCH_LUA, 3, args, 7, NULL, err);
    if (st != VS_OK) {
        char why[VS_ERR_LEN];
        snprintf(why, sizeof why, "%s", err);
        st = vs_errf(err, st, "switch to set %s refused, the current set is unchanged: %s", s->set, why);
    }
    return st;
}

/* SCAN + UNLINK of <prefix>:<set>:*; adds the keys removed to *removed. */
static vs_status unlink_set_keys(vs_redis_t *r, const char *prefix, const char *set, size_t *removed,
                                 char err[VS_ERR_LEN])
{
    char pattern[KEY_MAX], cursor[32] = "0";
    snprintf(pattern, sizeof pattern, "%s/%s:*", prefix, set); /* prefix and set hold no glob characters */
    vs_status st = VS_OK;
    do {
        redisReply *rep = NULL;
        st = vs_redis_commandl(r, &rep, err, "SCAN", cursor, "MATCH", pattern, "COUNT", "1000", (char *)NULL);
        if (st != VS_OK)
            return st;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
            vs_redis_reply_free(rep);
            return vs_errf(err, VS_ERR_INTERNAL, "redis %s: unexpected SCAN reply", vs_redis_addr(r));
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        const redisReply *keys = rep->element[1];
        if (keys->elements > 0) {
            const char **argv = malloc((keys->elements + 1) * sizeof *argv);
            size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
            if (!argv || !lens)
                st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
            else {
                argv[0] = "UNLINK";
                lens[0] = 6;
                for (size_t i = 0; i < keys->elements; i++) {
                    argv[i + 1] = keys->element[i]->str;
                    lens[i + 1] = keys->element[i]->len;
                }
                st = vs_redis_command(r, (int)keys->elements + 1, argv, lens, NULL, err);
                *removed += keys->elements;
            }
            free(argv);
            free(lens);
        }
        vs_redis_reply_free(rep);
    } while (st == VS_OK && strcmp(cursor, "0") != 0);
    return st;
}

static vs_status drop_set(vs_redis_t *r, const char *prefix, const char *set, size_t *removed,
                          char err[VS_ERR_LEN])
{
    char meta[KEY_MAX], sets[KEY_MAX];
    vs_nbrs_key_meta(meta, sizeof meta, prefix, set);
    vs_nbrs_key_sets(sets, sizeof sets, prefix);
    const char *args[1] = {meta};
    vs_status st = eval(r, DELETING_LUA, 1, args, 1, NULL, err);
    if (st == VS_OK)
        st = unlink_set_keys(r, prefix, set, removed, err);
    if (st == VS_OK)
        st = vs_redis_commandl(r, NULL, err, "DEL", meta, (char *)NULL);
    if (st == VS_OK)
        st = vs_redis_commandl(r, NULL, err, "LREM", sets, "0", set, (char *)NULL);
    return st;
}

vs_status vs_nbrs_store_drop(vs_redis_t *r, const char *prefix, const char *set, int force, size_t *out_keys,
                             char err[VS_ERR_LEN])
{
    char cur[VS_NBRS_MAX_NAME + 1], meta[KEY_MAX];
    vs_status st = vs_nbrs_store_current(r, prefix, cur, err);
    if (st != VS_OK)
        return st;
    if (strcmp(cur, set) == 0)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                       "set %s is the current set of %s; switch to another first", set, prefix);
    vs_nbrs_key_meta(meta, sizeof meta, prefix, set);
    redisReply *rep = NULL;
    if ((st = vs_redis_commandl(r, &rep, err, "HGET", meta, "state", (char *)NULL)) != VS_OK)
        return st;
    int writing = rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "writing") == 0;
    vs_redis_reply_free(rep);
    if (writing && !force)
        return vs_errf(
            err, VS_ERR_FAILED_PRECONDITION,
            "set %s is being written (or its run was abandoned): --force drops it; a run still writing "
            "it then stops with an error",
            set);
    size_t removed = 0;
    st = drop_set(r, prefix, set, &removed, err);
    if (out_keys)
        *out_keys = removed;
    return st;
}

vs_status vs_nbrs_store_expire(vs_redis_t *r, const char *prefix, size_t keep, size_t *out_sets,
                               size_t *out_keys, char err[VS_ERR_LEN])
{
    char sets[KEY_MAX], from[24], cur[VS_NBRS_MAX_NAME + 1];
    vs_nbrs_key_sets(sets, sizeof sets, prefix);
    snprintf(from, sizeof from, "%zu", keep < 1 ? 1 : keep);
    vs_status st = vs_nbrs_store_current(r, prefix, cur, err);
    redisReply *rep = NULL;
    if (st == VS_OK)
        st = vs_redis_commandl(r, &rep, err, "LRANGE", sets, from, "-1", (char *)NULL);
    if (st != VS_OK)
        return st;
    size_t n_sets = 0, n_keys = 0;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements && st == VS_OK; i++) {
        const char *name = rep->element[i]->str;
        if (rep->element[i]->type != REDIS_REPLY_STRING || !vs_nbrs_set_name_valid(name) ||
            strcmp(name, cur) == 0)
            continue; /* never the current set, nor a name this layout cannot hold */
        st = drop_set(r, prefix, name, &n_keys, err);
        n_sets += st == VS_OK;
    }
    vs_redis_reply_free(rep);
    if (out_sets)
        *out_sets = n_sets;
    if (out_keys)
        *out_keys = n_keys;
    return st;
}

vs_status vs_nbrs_store_memory(vs_redis_t *r, vs_nbrs_memory_t *out, char err[VS_ERR_LEN])
{
    vs_nbrs_memory_t m = {0};
    vs_status st = vs_redis_info_u64(r, "memory", "used_memory", &m.used, err);
    if (st == VS_OK)
        st = vs_redis_info_u64(r, "memory", "maxmemory", &m.max, err);
    if (st != VS_OK)
        return st;
    if ((st = vs_redis_info_str(r, "memory", "maxmemory_policy", m.policy, sizeof m.policy, err)) != VS_OK)
        return st;
    *out = m;
    return VS_OK;
}

/* jemalloc's size class of an allocation of n bytes (4 classes per doubling above 128 bytes). */
static uint64_t je_class(uint64_t n)
{
    if (n <= 8)
        return 8;
    if (n <= 128)
        return (n + 15) & ~(uint64_t)15;
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    uint64_t g = p / 8; /* (p/2, p] has 4 classes spaced p/8 */
    return (n + g - 1) / g * g;
}

uint64_t vs_nbrs_key_bytes_estimate(const vs_nbrs_store_t *s, size_t key_len)
{
    size_t klen = strlen(s->prefix) + strlen(s->set) + 2 + key_len;
    size_t vlen = s->format == VS_NBRS_BINARY
                      ? vs_nbrs_value_max_bytes(s->format, s->k, 0)
                      : vs_nbrs_value_max_bytes(s->format, s->k, strlen(s->set)) * 2 / 3;
    /* dict entry + value object + key sds (3-byte header) + value sds (5-byte header) + bucket slot */
    return je_class(24) + je_class(16) + je_class(klen + 4) + je_class(vlen + 6) + 8;
}
