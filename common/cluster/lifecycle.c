/* lifecycle.c: the version state machines of lifecycle.h as two constant tables.
 *
 * Each (state, event) cell is written out, allowed or not, so reading a row shows everything a state
 * accepts; a cell left out by mistake reads as all-zero and is answered VS_ERR_INTERNAL, never taken as a
 * transition. Not here: anything with side effects (the callers apply the result to etcd or a shard). */
#include "common/cluster/lifecycle.h"

#include <string.h>

typedef struct cell {
    unsigned char allowed; /* 1: move to next; 0: refuse with status and why */
    unsigned char next;
    vs_status status;
    const char *why;
} cell_t;

#define GO(to)                                                                                               \
    {                                                                                                        \
        1, (unsigned char)(to), VS_OK, NULL                                                                  \
    }
#define NO(st, text)                                                                                         \
    {                                                                                                        \
        0, 0, (st), (text)                                                                                   \
    }
#define NF VS_ERR_NOT_FOUND
#define AE VS_ERR_ALREADY_EXISTS
#define FP VS_ERR_FAILED_PRECONDITION

/* ---- Machine 1 ---- */

static const char *const cver_state_names[VS_CVER_STATE_COUNT_] = {
    [VS_CVER_NONE] = "none",         [VS_CVER_STAGED] = "staged",   [VS_CVER_ACTIVE] = "active",
    [VS_CVER_PREVIOUS] = "previous", [VS_CVER_RETIRED] = "retired", [VS_CVER_FAILED] = "failed",
    [VS_CVER_REMOVED] = "removed",
};

static const char *const cver_event_names[VS_CVER_EVENT_COUNT_] = {
    [VS_CVER_DEPLOY] = "deploy",       [VS_CVER_ACTIVATE] = "activate", [VS_CVER_DEMOTE] = "demote",
    [VS_CVER_SUPERSEDE] = "supersede", [VS_CVER_FAIL] = "fail",         [VS_CVER_RETIRE] = "retire",
    [VS_CVER_REMOVE] = "remove",
};

#define NOT_ACTIVE "not active: only the active version is demoted when another one is activated"
#define NOT_PREVIOUS "not previous: only the previous version is superseded when another one is activated"
#define ONLY_STAGED_FAILS "only a staged version is marked failed"

static const cell_t cver_table[VS_CVER_STATE_COUNT_][VS_CVER_EVENT_COUNT_] = {
    [VS_CVER_NONE] =
        {
            [VS_CVER_DEPLOY] = GO(VS_CVER_STAGED),
            [VS_CVER_ACTIVATE] = NO(NF, "no such version: deploy it first"),
            [VS_CVER_DEMOTE] = NO(NF, "no such version"),
            [VS_CVER_SUPERSEDE] = NO(NF, "no such version"),
            [VS_CVER_FAIL] = NO(NF, "no such version"),
            [VS_CVER_RETIRE] = NO(NF, "no such version"),
            [VS_CVER_REMOVE] = NO(NF, "no such version"),
        },
    [VS_CVER_STAGED] =
        {
            [VS_CVER_DEPLOY] = NO(AE, "already deployed (state staged)"),
            [VS_CVER_ACTIVATE] = GO(VS_CVER_ACTIVE),
            [VS_CVER_DEMOTE] = NO(FP, NOT_ACTIVE),
            [VS_CVER_SUPERSEDE] = NO(FP, NOT_PREVIOUS),
            [VS_CVER_FAIL] = GO(VS_CVER_FAILED),
            [VS_CVER_RETIRE] = GO(VS_CVER_RETIRED),
            [VS_CVER_REMOVE] = GO(VS_CVER_REMOVED),
        },
    [VS_CVER_ACTIVE] =
        {
            [VS_CVER_DEPLOY] = NO(AE, "already deployed (state active)"),
            [VS_CVER_ACTIVATE] = GO(VS_CVER_ACTIVE),
            [VS_CVER_DEMOTE] = GO(VS_CVER_PREVIOUS),
            [VS_CVER_SUPERSEDE] = NO(FP, NOT_PREVIOUS),
            [VS_CVER_FAIL] = NO(FP, "the active version is never marked failed (replicas report their own "
                                    "load failures)"),
            [VS_CVER_RETIRE] = NO(FP, "is active: activate or roll back to another version first"),
            [VS_CVER_REMOVE] = NO(FP, "is active: activate another version, then retire this one, first"),
        },
    [VS_CVER_PREVIOUS] =
        {
            [VS_CVER_DEPLOY] = NO(AE, "already deployed (state previous)"),
            [VS_CVER_ACTIVATE] = GO(VS_CVER_ACTIVE),
            [VS_CVER_DEMOTE] = NO(FP, NOT_ACTIVE),
            [VS_CVER_SUPERSEDE] = GO(VS_CVER_RETIRED),
            [VS_CVER_FAIL] = NO(FP, "the previous version is never marked failed (replicas report their own "
                                    "load failures)"),
            [VS_CVER_RETIRE] = GO(VS_CVER_RETIRED),
            [VS_CVER_REMOVE] = NO(FP, "is the previous version (the rollback target): retire it first"),
        },
    [VS_CVER_RETIRED] =
        {
            [VS_CVER_DEPLOY] = GO(VS_CVER_STAGED),
            [VS_CVER_ACTIVATE] = NO(FP, "retired: deploy it again"),
            [VS_CVER_DEMOTE] = NO(FP, NOT_ACTIVE),
            [VS_CVER_SUPERSEDE] = NO(FP, NOT_PREVIOUS),
            [VS_CVER_FAIL] = NO(FP, ONLY_STAGED_FAILS),
            [VS_CVER_RETIRE] = GO(VS_CVER_RETIRED),
            [VS_CVER_REMOVE] = GO(VS_CVER_REMOVED),
        },
    [VS_CVER_FAILED] =
        {
            [VS_CVER_DEPLOY] = NO(AE, "already deployed (state failed): retire or remove it, then deploy it "
                                      "again"),
            [VS_CVER_ACTIVATE] = NO(FP, "every replica of some partition failed to load it: fix the files, "
                                        "retire it and deploy it again"),
            [VS_CVER_DEMOTE] = NO(FP, NOT_ACTIVE),
            [VS_CVER_SUPERSEDE] = NO(FP, NOT_PREVIOUS),
            [VS_CVER_FAIL] = NO(FP, "already failed"),
            [VS_CVER_RETIRE] = GO(VS_CVER_RETIRED),
            [VS_CVER_REMOVE] = GO(VS_CVER_REMOVED),
        },
    [VS_CVER_REMOVED] =
        {
            [VS_CVER_DEPLOY] = GO(VS_CVER_STAGED),
            [VS_CVER_ACTIVATE] = NO(NF, "no such version (removed): deploy it again"),
            [VS_CVER_DEMOTE] = NO(NF, "no such version (removed)"),
            [VS_CVER_SUPERSEDE] = NO(NF, "no such version (removed)"),
            [VS_CVER_FAIL] = NO(NF, "no such version (removed)"),
            [VS_CVER_RETIRE] = NO(NF, "no such version (removed)"),
            [VS_CVER_REMOVE] = NO(NF, "no such version (removed)"),
        },
};

/* ---- Machine 2 ---- */

static const char *const rver_state_names[VS_RVER_STATE_COUNT_] = {
    [VS_RVER_ABSENT] = "ABSENT", [VS_RVER_LOADING] = "LOADING", [VS_RVER_VERIFYING] = "VERIFYING",
    [VS_RVER_READY] = "READY",   [VS_RVER_FAILED] = "FAILED",   [VS_RVER_UNLOADING] = "UNLOADING",
};

static const char *const rver_event_names[VS_RVER_EVENT_COUNT_] = {
    [VS_RVER_LOAD] = "load", [VS_RVER_OPENED] = "opened", [VS_RVER_VERIFIED] = "verified",
    [VS_RVER_FAIL] = "fail", [VS_RVER_UNLOAD] = "unload", [VS_RVER_GONE] = "gone",
};

#define WAIT_LOAD "a load is running: wait for the load to end"
#define NOT_UNLOADING "not unloading: unload it first"

static const cell_t rver_table[VS_RVER_STATE_COUNT_][VS_RVER_EVENT_COUNT_] = {
    [VS_RVER_ABSENT] =
        {
            [VS_RVER_LOAD] = GO(VS_RVER_LOADING),
            [VS_RVER_OPENED] = NO(NF, "not held: load it first"),
            [VS_RVER_VERIFIED] = NO(NF, "not held: load it first"),
            [VS_RVER_FAIL] = NO(NF, "not held: load it first"),
            [VS_RVER_UNLOAD] = NO(NF, "not held"),
            [VS_RVER_GONE] = NO(NF, "not held"),
        },
    [VS_RVER_LOADING] =
        {
            [VS_RVER_LOAD] = NO(AE, "already loading"),
            [VS_RVER_OPENED] = GO(VS_RVER_VERIFYING),
            [VS_RVER_VERIFIED] = NO(FP, "not opened yet: the file is mapped and its sections checked first"),
            [VS_RVER_FAIL] = GO(VS_RVER_FAILED),
            [VS_RVER_UNLOAD] = NO(FP, WAIT_LOAD),
            [VS_RVER_GONE] = NO(FP, NOT_UNLOADING),
        },
    [VS_RVER_VERIFYING] =
        {
            [VS_RVER_LOAD] = NO(AE, "already loading (verifying)"),
            [VS_RVER_OPENED] = NO(FP, "already opened"),
            [VS_RVER_VERIFIED] = GO(VS_RVER_READY),
            [VS_RVER_FAIL] = GO(VS_RVER_FAILED),
            [VS_RVER_UNLOAD] = NO(FP, WAIT_LOAD),
            [VS_RVER_GONE] = NO(FP, NOT_UNLOADING),
        },
    [VS_RVER_READY] =
        {
            [VS_RVER_LOAD] = NO(AE, "already loaded"),
            [VS_RVER_OPENED] = NO(FP, "already loaded and verified"),
            [VS_RVER_VERIFIED] = NO(FP, "already verified"),
            [VS_RVER_FAIL] = NO(FP, "the load ended successfully: a ready copy does not fail; unload it"),
            [VS_RVER_UNLOAD] = GO(VS_RVER_UNLOADING),
            [VS_RVER_GONE] = NO(FP, NOT_UNLOADING),
        },
    [VS_RVER_FAILED] =
        {
            [VS_RVER_LOAD] = GO(VS_RVER_LOADING),
            [VS_RVER_OPENED] = NO(FP, "not loading: load it again first"),
            [VS_RVER_VERIFIED] = NO(FP, "not loading: load it again first"),
            [VS_RVER_FAIL] = NO(FP, "already failed"),
            [VS_RVER_UNLOAD] = GO(VS_RVER_UNLOADING),
            [VS_RVER_GONE] = NO(FP, NOT_UNLOADING),
        },
    [VS_RVER_UNLOADING] =
        {
            [VS_RVER_LOAD] = NO(FP, "being unloaded: load it again once the last search has released it"),
            [VS_RVER_OPENED] = NO(FP, "being unloaded"),
            [VS_RVER_VERIFIED] = NO(FP, "being unloaded"),
            [VS_RVER_FAIL] = NO(FP, "being unloaded"),
            [VS_RVER_UNLOAD] = NO(FP, "already unloading"),
            [VS_RVER_GONE] = GO(VS_RVER_ABSENT),
        },
};

/* ---- shared helpers ---- */

static const char *name_of(const char *const *names, int count, int v, const char *unknown)
{
    return v >= 0 && v < count && names[v] != NULL ? names[v] : unknown;
}

static int index_of(const char *const *names, int count, const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < count; i++)
        if (names[i] != NULL && strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static const char *article(const char *word)
{
    return word[0] != '\0' && strchr("aeiouAEIOU", word[0]) != NULL ? "an" : "a";
}

/* ---- Machine 1 API ---- */

const char *vs_cver_state_name(vs_cver_state s)
{
    return name_of(cver_state_names, VS_CVER_STATE_COUNT_, (int)s, "unknown");
}

vs_status vs_cver_state_parse(const char *name, vs_cver_state *out)
{
    int i = index_of(cver_state_names, VS_CVER_STATE_COUNT_, name);
    if (i < 0)
        return VS_ERR_CORRUPT;
    *out = (vs_cver_state)i;
    return VS_OK;
}

const char *vs_cver_event_name(vs_cver_event e)
{
    return name_of(cver_event_names, VS_CVER_EVENT_COUNT_, (int)e, "unknown");
}

vs_status vs_cver_next(vs_cver_state from, vs_cver_event ev, vs_cver_state *out, char err[VS_ERR_LEN])
{
    const char *sn = vs_cver_state_name(from), *en = vs_cver_event_name(ev);
    if ((int)from < 0 || from >= VS_CVER_STATE_COUNT_ || (int)ev < 0 || ev >= VS_CVER_EVENT_COUNT_)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "cannot %s %s %s version: state %d or event %d out of range", en, article(sn), sn,
                       (int)from, (int)ev);
    const cell_t *c = &cver_table[from][ev];
    if (c->allowed) {
        *out = (vs_cver_state)c->next;
        return VS_OK;
    }
    if (c->why == NULL)
        return vs_errf(err, VS_ERR_INTERNAL, "cannot %s %s %s version: no transition defined", en,
                       article(sn), sn);
    return vs_errf(err, c->status, "cannot %s %s %s version: %s", en, article(sn), sn, c->why);
}

int vs_cver_shards_hold(vs_cver_state s)
{
    return s == VS_CVER_STAGED || s == VS_CVER_ACTIVE || s == VS_CVER_PREVIOUS;
}

int vs_cver_coordinators_hold(vs_cver_state s)
{
    return vs_cver_shards_hold(s);
}

/* ---- Machine 2 API ---- */

const char *vs_rver_state_name(vs_rver_state s)
{
    return name_of(rver_state_names, VS_RVER_STATE_COUNT_, (int)s, "UNKNOWN");
}

vs_status vs_rver_state_parse(const char *name, vs_rver_state *out)
{
    int i = index_of(rver_state_names, VS_RVER_STATE_COUNT_, name);
    if (i < 0)
        return VS_ERR_CORRUPT;
    *out = (vs_rver_state)i;
    return VS_OK;
}

const char *vs_rver_event_name(vs_rver_event e)
{
    return name_of(rver_event_names, VS_RVER_EVENT_COUNT_, (int)e, "unknown");
}

vs_status vs_rver_next(vs_rver_state from, vs_rver_event ev, vs_rver_state *out, char err[VS_ERR_LEN])
{
    const char *sn = vs_rver_state_name(from), *en = vs_rver_event_name(ev);
    if ((int)from < 0 || from >= VS_RVER_STATE_COUNT_ || (int)ev < 0 || ev >= VS_RVER_EVENT_COUNT_)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "event %s refused for %s %s copy: state %d or event %d out of range", en, article(sn),
                       sn, (int)from, (int)ev);
    const cell_t *c = &rver_table[from][ev];
    if (c->allowed) {
        *out = (vs_rver_state)c->next;
        return VS_OK;
    }
    if (c->why == NULL)
        return vs_errf(err, VS_ERR_INTERNAL, "event %s refused for %s %s copy: no transition defined", en,
                       article(sn), sn);
    return vs_errf(err, c->status, "event %s refused for %s %s copy: %s", en, article(sn), sn, c->why);
}

int vs_rver_may_serve(vs_rver_state s)
{
    return s == VS_RVER_READY;
}

/* ---- Retry policy ---- */

uint64_t vs_lifecycle_backoff_ms(uint32_t failures, uint64_t base_ms, uint64_t cap_ms)
{
    if (failures == 0 || base_ms == 0)
        return 0;
    uint32_t shift = failures - 1;
    /* base << shift <= cap exactly when base <= cap >> shift; shifts of 64 or more would be undefined */
    if (shift >= 64 || base_ms > (cap_ms >> shift))
        return cap_ms;
    return base_ms << shift;
}
