/* test_lifecycle: both version state machines against hand-written tables covering every (state, event)
 * pair, so a state or event added to the enums without a decision here fails the test; names, parsing,
 * the hold/serve predicates, a full rollout walked through the machine, and the retry backoff. */
#include <stdint.h>
#include <string.h>

#include "common/cluster/lifecycle.h"
#include "tests/testlib.h"

/* Expected outcome of one (state, event) pair: st == VS_OK with next state `to`, or the refusing st. */
typedef struct cver_case {
    vs_cver_state from;
    vs_cver_event ev;
    vs_status st;
    vs_cver_state to;
} cver_case_t;

typedef struct rver_case {
    vs_rver_state from;
    vs_rver_event ev;
    vs_status st;
    vs_rver_state to;
} rver_case_t;

#define C_OK(f, e, t)                                                                                        \
    {                                                                                                        \
        VS_CVER_##f, VS_CVER_##e, VS_OK, VS_CVER_##t                                                         \
    }
#define C_NO(f, e, s)                                                                                        \
    {                                                                                                        \
        VS_CVER_##f, VS_CVER_##e, VS_ERR_##s, VS_CVER_NONE                                                   \
    }
#define R_OK(f, e, t)                                                                                        \
    {                                                                                                        \
        VS_RVER_##f, VS_RVER_##e, VS_OK, VS_RVER_##t                                                         \
    }
#define R_NO(f, e, s)                                                                                        \
    {                                                                                                        \
        VS_RVER_##f, VS_RVER_##e, VS_ERR_##s, VS_RVER_ABSENT                                                 \
    }

static const cver_case_t cver_cases[] = {
    C_OK(NONE, DEPLOY, STAGED),
    C_NO(NONE, ACTIVATE, NOT_FOUND),
    C_NO(NONE, DEMOTE, NOT_FOUND),
    C_NO(NONE, SUPERSEDE, NOT_FOUND),
    C_NO(NONE, FAIL, NOT_FOUND),
    C_NO(NONE, RETIRE, NOT_FOUND),
    C_NO(NONE, REMOVE, NOT_FOUND),

    C_NO(STAGED, DEPLOY, ALREADY_EXISTS),
    C_OK(STAGED, ACTIVATE, ACTIVE),
    C_NO(STAGED, DEMOTE, FAILED_PRECONDITION),
    C_NO(STAGED, SUPERSEDE, FAILED_PRECONDITION),
    C_OK(STAGED, FAIL, FAILED),
    C_OK(STAGED, RETIRE, RETIRED),
    C_OK(STAGED, REMOVE, REMOVED),

    C_NO(ACTIVE, DEPLOY, ALREADY_EXISTS),
    C_OK(ACTIVE, ACTIVATE, ACTIVE), /* no-op */
    C_OK(ACTIVE, DEMOTE, PREVIOUS),
    C_NO(ACTIVE, SUPERSEDE, FAILED_PRECONDITION),
    C_NO(ACTIVE, FAIL, FAILED_PRECONDITION),
    C_NO(ACTIVE, RETIRE, FAILED_PRECONDITION),
    C_NO(ACTIVE, REMOVE, FAILED_PRECONDITION),

    C_NO(PREVIOUS, DEPLOY, ALREADY_EXISTS),
    C_OK(PREVIOUS, ACTIVATE, ACTIVE), /* rollback */
    C_NO(PREVIOUS, DEMOTE, FAILED_PRECONDITION),
    C_OK(PREVIOUS, SUPERSEDE, RETIRED),
    C_NO(PREVIOUS, FAIL, FAILED_PRECONDITION),
    C_OK(PREVIOUS, RETIRE, RETIRED),
    C_NO(PREVIOUS, REMOVE, FAILED_PRECONDITION),

    C_OK(RETIRED, DEPLOY, STAGED),
    C_NO(RETIRED, ACTIVATE, FAILED_PRECONDITION),
    C_NO(RETIRED, DEMOTE, FAILED_PRECONDITION),
    C_NO(RETIRED, SUPERSEDE, FAILED_PRECONDITION),
    C_NO(RETIRED, FAIL, FAILED_PRECONDITION),
    C_OK(RETIRED, RETIRE, RETIRED), /* no-op */
    C_OK(RETIRED, REMOVE, REMOVED),

    C_NO(FAILED, DEPLOY, ALREADY_EXISTS),
    C_NO(FAILED, ACTIVATE, FAILED_PRECONDITION),
    C_NO(FAILED, DEMOTE, FAILED_PRECONDITION),
    C_NO(FAILED, SUPERSEDE, FAILED_PRECONDITION),
    C_NO(FAILED, FAIL, FAILED_PRECONDITION),
    C_OK(FAILED, RETIRE, RETIRED),
    C_OK(FAILED, REMOVE, REMOVED),

    C_OK(REMOVED, DEPLOY, STAGED),
    C_NO(REMOVED, ACTIVATE, NOT_FOUND),
    C_NO(REMOVED, DEMOTE, NOT_FOUND),
    C_NO(REMOVED, SUPERSEDE, NOT_FOUND),
    C_NO(REMOVED, FAIL, NOT_FOUND),
    C_NO(REMOVED, RETIRE, NOT_FOUND),
    C_NO(REMOVED, REMOVE, NOT_FOUND),
};

static const rver_case_t rver_cases[] = {
    R_OK(ABSENT, LOAD, LOADING),
    R_NO(ABSENT, OPENED, NOT_FOUND),
    R_NO(ABSENT, VERIFIED, NOT_FOUND),
    R_NO(ABSENT, FAIL, NOT_FOUND),
    R_NO(ABSENT, UNLOAD, NOT_FOUND),
    R_NO(ABSENT, GONE, NOT_FOUND),

    R_NO(LOADING, LOAD, ALREADY_EXISTS),
    R_OK(LOADING, OPENED, VERIFYING),
    R_NO(LOADING, VERIFIED, FAILED_PRECONDITION),
    R_OK(LOADING, FAIL, FAILED),
    R_NO(LOADING, UNLOAD, FAILED_PRECONDITION),
    R_NO(LOADING, GONE, FAILED_PRECONDITION),

    R_NO(VERIFYING, LOAD, ALREADY_EXISTS),
    R_NO(VERIFYING, OPENED, FAILED_PRECONDITION),
    R_OK(VERIFYING, VERIFIED, READY),
    R_OK(VERIFYING, FAIL, FAILED),
    R_NO(VERIFYING, UNLOAD, FAILED_PRECONDITION),
    R_NO(VERIFYING, GONE, FAILED_PRECONDITION),

    R_NO(READY, LOAD, ALREADY_EXISTS),
    R_NO(READY, OPENED, FAILED_PRECONDITION),
    R_NO(READY, VERIFIED, FAILED_PRECONDITION),
    R_NO(READY, FAIL, FAILED_PRECONDITION),
    R_OK(READY, UNLOAD, UNLOADING),
    R_NO(READY, GONE, FAILED_PRECONDITION),

    R_OK(FAILED, LOAD, LOADING), /* retry */
    R_NO(FAILED, OPENED, FAILED_PRECONDITION),
    R_NO(FAILED, VERIFIED, FAILED_PRECONDITION),
    R_NO(FAILED, FAIL, FAILED_PRECONDITION),
    R_OK(FAILED, UNLOAD, UNLOADING),
    R_NO(FAILED, GONE, FAILED_PRECONDITION),

    R_NO(UNLOADING, LOAD, FAILED_PRECONDITION),
    R_NO(UNLOADING, OPENED, FAILED_PRECONDITION),
    R_NO(UNLOADING, VERIFIED, FAILED_PRECONDITION),
    R_NO(UNLOADING, FAIL, FAILED_PRECONDITION),
    R_NO(UNLOADING, UNLOAD, FAILED_PRECONDITION),
    R_OK(UNLOADING, GONE, ABSENT),
};

#define N_CVER_CASES (sizeof cver_cases / sizeof cver_cases[0])
#define N_RVER_CASES (sizeof rver_cases / sizeof rver_cases[0])

static void test_cver_table_exhaustive(void)
{
    int seen[VS_CVER_STATE_COUNT_][VS_CVER_EVENT_COUNT_] = {{0}};
    CHECKF(N_CVER_CASES == (size_t)VS_CVER_STATE_COUNT_ * VS_CVER_EVENT_COUNT_,
           "table has %zu cases, machine has %d x %d pairs", N_CVER_CASES, (int)VS_CVER_STATE_COUNT_,
           (int)VS_CVER_EVENT_COUNT_);
    for (size_t i = 0; i < N_CVER_CASES; i++) {
        const cver_case_t *c = &cver_cases[i];
        const char *sn = vs_cver_state_name(c->from), *en = vs_cver_event_name(c->ev);
        if ((int)c->from < VS_CVER_STATE_COUNT_ && (int)c->ev < VS_CVER_EVENT_COUNT_)
            seen[c->from][c->ev]++;
        char err[VS_ERR_LEN] = "";
        vs_cver_state out = (vs_cver_state)99; /* sentinel: must be untouched on refusal */
        vs_status st = vs_cver_next(c->from, c->ev, &out, err);
        CHECKF(st == c->st, "%s on %s: got %s want %s (%s)", en, sn, vs_status_name(st),
               vs_status_name(c->st), err);
        if (c->st == VS_OK) {
            CHECKF(st != VS_OK || out == c->to, "%s on %s: got %s want %s", en, sn, vs_cver_state_name(out),
                   vs_cver_state_name(c->to));
        } else {
            CHECKF(out == (vs_cver_state)99, "%s on %s: *out written on refusal", en, sn);
            CHECKF(err[0] != '\0', "%s on %s: empty err", en, sn);
            CHECKF(strstr(err, sn) != NULL, "%s on %s: err lacks the state name: %s", en, sn, err);
            CHECKF(strncmp(err, "cannot ", 7) == 0 && strstr(err, en) != NULL && strstr(err, " version: "),
                   "%s on %s: err not \"cannot <event> a <state> version: <why>\": %s", en, sn, err);
            /* the same refusal without an err buffer */
            CHECK(vs_cver_next(c->from, c->ev, &out, NULL) == c->st && out == (vs_cver_state)99);
        }
    }
    for (int s = 0; s < VS_CVER_STATE_COUNT_; s++)
        for (int e = 0; e < VS_CVER_EVENT_COUNT_; e++)
            CHECKF(seen[s][e] == 1, "pair (%s, %s) listed %d times, want once",
                   vs_cver_state_name((vs_cver_state)s), vs_cver_event_name((vs_cver_event)e), seen[s][e]);
}

static void test_rver_table_exhaustive(void)
{
    int seen[VS_RVER_STATE_COUNT_][VS_RVER_EVENT_COUNT_] = {{0}};
    CHECKF(N_RVER_CASES == (size_t)VS_RVER_STATE_COUNT_ * VS_RVER_EVENT_COUNT_,
           "table has %zu cases, machine has %d x %d pairs", N_RVER_CASES, (int)VS_RVER_STATE_COUNT_,
           (int)VS_RVER_EVENT_COUNT_);
    for (size_t i = 0; i < N_RVER_CASES; i++) {
        const rver_case_t *c = &rver_cases[i];
        const char *sn = vs_rver_state_name(c->from), *en = vs_rver_event_name(c->ev);
        if ((int)c->from < VS_RVER_STATE_COUNT_ && (int)c->ev < VS_RVER_EVENT_COUNT_)
            seen[c->from][c->ev]++;
        char err[VS_ERR_LEN] = "";
        vs_rver_state out = (vs_rver_state)99;
        vs_status st = vs_rver_next(c->from, c->ev, &out, err);
        CHECKF(st == c->st, "%s on %s: got %s want %s (%s)", en, sn, vs_status_name(st),
               vs_status_name(c->st), err);
        if (c->st == VS_OK) {
            CHECKF(st != VS_OK || out == c->to, "%s on %s: got %s want %s", en, sn, vs_rver_state_name(out),
                   vs_rver_state_name(c->to));
        } else {
            CHECKF(out == (vs_rver_state)99, "%s on %s: *out written on refusal", en, sn);
            CHECKF(err[0] != '\0', "%s on %s: empty err", en, sn);
            CHECKF(strstr(err, sn) != NULL, "%s on %s: err lacks the state name: %s", en, sn, err);
            CHECKF(strstr(err, en) != NULL, "%s on %s: err lacks the event name: %s", en, sn, err);
            CHECK(vs_rver_next(c->from, c->ev, &out, NULL) == c->st && out == (vs_rver_state)99);
        }
    }
    for (int s = 0; s < VS_RVER_STATE_COUNT_; s++)
        for (int e = 0; e < VS_RVER_EVENT_COUNT_; e++)
            CHECKF(seen[s][e] == 1, "pair (%s, %s) listed %d times, want once",
                   vs_rver_state_name((vs_rver_state)s), vs_rver_event_name((vs_rver_event)e), seen[s][e]);
}

/* The messages the brief names, which operators read through the admin CLI. */
static void test_refusal_messages(void)
{
    char err[VS_ERR_LEN];
    vs_cver_state c;
    vs_rver_state r;
    CHECK(vs_cver_next(VS_CVER_STAGED, VS_CVER_DEPLOY, &c, err) == VS_ERR_ALREADY_EXISTS &&
          strstr(err, "already deployed (state staged)"));
    CHECK(vs_cver_next(VS_CVER_RETIRED, VS_CVER_ACTIVATE, &c, err) == VS_ERR_FAILED_PRECONDITION &&
          strstr(err, "cannot activate a retired version: ") == err && strstr(err, "deploy it again"));
    CHECK(vs_cver_next(VS_CVER_ACTIVE, VS_CVER_RETIRE, &c, err) == VS_ERR_FAILED_PRECONDITION &&
          strstr(err, "cannot retire an active version: ") == err &&
          strstr(err, "activate or roll back to another version first"));
    CHECK(vs_cver_next(VS_CVER_PREVIOUS, VS_CVER_REMOVE, &c, err) == VS_ERR_FAILED_PRECONDITION &&
          strstr(err, "retire it first"));
    CHECK(vs_cver_next(VS_CVER_ACTIVE, VS_CVER_REMOVE, &c, err) == VS_ERR_FAILED_PRECONDITION &&
          strstr(err, "activate another version"));
    CHECK(vs_rver_next(VS_RVER_LOADING, VS_RVER_UNLOAD, &r, err) == VS_ERR_FAILED_PRECONDITION &&
          strstr(err, "wait for the load to end"));
    CHECK(vs_rver_next(VS_RVER_VERIFYING, VS_RVER_UNLOAD, &r, err) == VS_ERR_FAILED_PRECONDITION &&
          strstr(err, "wait for the load to end"));
}

static void test_out_of_range(void)
{
    char err[VS_ERR_LEN] = "";
    vs_cver_state c = VS_CVER_STAGED;
    vs_rver_state r = VS_RVER_READY;
    CHECK(vs_cver_next(VS_CVER_STATE_COUNT_, VS_CVER_DEPLOY, &c, err) == VS_ERR_INVALID_ARGUMENT &&
          c == VS_CVER_STAGED && strstr(err, "unknown"));
    CHECK(vs_cver_next(VS_CVER_STAGED, VS_CVER_EVENT_COUNT_, &c, err) == VS_ERR_INVALID_ARGUMENT &&
          c == VS_CVER_STAGED && strstr(err, "staged"));
    CHECK(vs_cver_next((vs_cver_state)-1, VS_CVER_DEPLOY, &c, NULL) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_rver_next(VS_RVER_STATE_COUNT_, VS_RVER_LOAD, &r, err) == VS_ERR_INVALID_ARGUMENT &&
          r == VS_RVER_READY && strstr(err, "UNKNOWN"));
    CHECK(vs_rver_next(VS_RVER_READY, VS_RVER_EVENT_COUNT_, &r, err) == VS_ERR_INVALID_ARGUMENT &&
          r == VS_RVER_READY && strstr(err, "READY"));
    CHECK(vs_rver_next((vs_rver_state)-1, VS_RVER_LOAD, &r, NULL) == VS_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(vs_cver_state_name(VS_CVER_STATE_COUNT_), "unknown") == 0);
    CHECK(strcmp(vs_cver_event_name(VS_CVER_EVENT_COUNT_), "unknown") == 0);
    CHECK(strcmp(vs_rver_state_name(VS_RVER_STATE_COUNT_), "UNKNOWN") == 0);
    CHECK(strcmp(vs_rver_event_name((vs_rver_event)-1), "unknown") == 0);
    CHECK(vs_cver_shards_hold(VS_CVER_STATE_COUNT_) == 0 &&
          vs_cver_coordinators_hold((vs_cver_state)-1) == 0);
    CHECK(vs_rver_may_serve(VS_RVER_STATE_COUNT_) == 0);
}

static void test_names(void)
{
    static const char *const cver[] = {"none",    "staged", "active", "previous",
                                       "retired", "failed", "removed"};
    static const char *const rver[] = {"ABSENT", "LOADING", "VERIFYING", "READY", "FAILED", "UNLOADING"};
    CHECK(sizeof cver / sizeof cver[0] == VS_CVER_STATE_COUNT_);
    CHECK(sizeof rver / sizeof rver[0] == VS_RVER_STATE_COUNT_);
    for (int s = 0; s < VS_CVER_STATE_COUNT_; s++) {
        const char *n = vs_cver_state_name((vs_cver_state)s);
        vs_cver_state back = (vs_cver_state)99;
        CHECKF(strcmp(n, cver[s]) == 0, "state %d named %s want %s", s, n, cver[s]);
        CHECKF(vs_cver_state_parse(n, &back) == VS_OK && back == (vs_cver_state)s, "round trip of %s", n);
        for (int t = 0; t < s; t++)
            CHECK(strcmp(n, vs_cver_state_name((vs_cver_state)t)) != 0);
    }
    for (int s = 0; s < VS_RVER_STATE_COUNT_; s++) {
        const char *n = vs_rver_state_name((vs_rver_state)s);
        vs_rver_state back = (vs_rver_state)99;
        CHECKF(strcmp(n, rver[s]) == 0, "state %d named %s want %s", s, n, rver[s]);
        CHECKF(vs_rver_state_parse(n, &back) == VS_OK && back == (vs_rver_state)s, "round trip of %s", n);
        for (int t = 0; t < s; t++)
            CHECK(strcmp(n, vs_rver_state_name((vs_rver_state)t)) != 0);
    }
    for (int e = 0; e < VS_CVER_EVENT_COUNT_; e++) {
        const char *n = vs_cver_event_name((vs_cver_event)e);
        CHECK(n[0] != '\0' && strcmp(n, "unknown") != 0);
        for (int t = 0; t < e; t++)
            CHECK(strcmp(n, vs_cver_event_name((vs_cver_event)t)) != 0);
    }
    for (int e = 0; e < VS_RVER_EVENT_COUNT_; e++) {
        const char *n = vs_rver_event_name((vs_rver_event)e);
        CHECK(n[0] != '\0' && strcmp(n, "unknown") != 0);
        for (int t = 0; t < e; t++)
            CHECK(strcmp(n, vs_rver_event_name((vs_rver_event)t)) != 0);
    }
    /* unknown names, wrong case, NULL: CORRUPT, *out untouched */
    static const char *const bad[] = {"",        "bogus", "STAGED",  "Active",
                                      "staged ", "ready", "unknown", "UNKNOWN"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vs_cver_state c = VS_CVER_ACTIVE;
        vs_rver_state r = VS_RVER_READY;
        vs_status cs = vs_cver_state_parse(bad[i], &c), rs = vs_rver_state_parse(bad[i], &r);
        CHECKF(cs == VS_ERR_CORRUPT && c == VS_CVER_ACTIVE, "cver parse of \"%s\"", bad[i]);
        CHECKF(rs == VS_ERR_CORRUPT && r == VS_RVER_READY, "rver parse of \"%s\"", bad[i]);
    }
    vs_cver_state c = VS_CVER_ACTIVE;
    vs_rver_state r = VS_RVER_READY;
    CHECK(vs_cver_state_parse(NULL, &c) == VS_ERR_CORRUPT && c == VS_CVER_ACTIVE);
    CHECK(vs_rver_state_parse(NULL, &r) == VS_ERR_CORRUPT && r == VS_RVER_READY);
}

static void test_predicates(void)
{
    static const struct {
        vs_cver_state s;
        int hold;
    } ch[] = {{VS_CVER_NONE, 0},    {VS_CVER_STAGED, 1}, {VS_CVER_ACTIVE, 1}, {VS_CVER_PREVIOUS, 1},
              {VS_CVER_RETIRED, 0}, {VS_CVER_FAILED, 0}, {VS_CVER_REMOVED, 0}};
    CHECK(sizeof ch / sizeof ch[0] == VS_CVER_STATE_COUNT_);
    for (size_t i = 0; i < sizeof ch / sizeof ch[0]; i++) {
        CHECKF(vs_cver_shards_hold(ch[i].s) == ch[i].hold, "shards hold %s", vs_cver_state_name(ch[i].s));
        CHECKF(vs_cver_coordinators_hold(ch[i].s) == ch[i].hold, "coordinators hold %s",
               vs_cver_state_name(ch[i].s));
    }
    for (int s = 0; s < VS_RVER_STATE_COUNT_; s++)
        CHECKF(vs_rver_may_serve((vs_rver_state)s) == (s == VS_RVER_READY), "may serve %s",
               vs_rver_state_name((vs_rver_state)s));
}

/* Applies ev to *s, which must be allowed. */
static void cver_step(vs_cver_state *s, vs_cver_event ev)
{
    char err[VS_ERR_LEN] = "";
    vs_status st = vs_cver_next(*s, ev, s, err);
    CHECKF(st == VS_OK, "%s: %s", vs_cver_event_name(ev), err);
}

/* The rollout of docs/protocol.md composed from the events: deploy and activate v1, v2, v3 (each
 * activation demotes the active one and supersedes the previous one), then roll back to v2. */
static void test_rollout_walk(void)
{
    vs_cver_state v1 = VS_CVER_NONE, v2 = VS_CVER_NONE, v3 = VS_CVER_NONE;
    cver_step(&v1, VS_CVER_DEPLOY);
    cver_step(&v1, VS_CVER_ACTIVATE);
    cver_step(&v2, VS_CVER_DEPLOY);
    CHECK(vs_cver_shards_hold(v1) && vs_cver_shards_hold(v2));
    cver_step(&v2, VS_CVER_ACTIVATE);
    cver_step(&v1, VS_CVER_DEMOTE);
    CHECK(v1 == VS_CVER_PREVIOUS && v2 == VS_CVER_ACTIVE);
    cver_step(&v3, VS_CVER_DEPLOY);
    cver_step(&v3, VS_CVER_ACTIVATE);
    cver_step(&v2, VS_CVER_DEMOTE);
    cver_step(&v1, VS_CVER_SUPERSEDE);
    CHECK(v1 == VS_CVER_RETIRED && v2 == VS_CVER_PREVIOUS && v3 == VS_CVER_ACTIVE);
    CHECK(!vs_cver_shards_hold(v1) && vs_cver_shards_hold(v2) && vs_cver_shards_hold(v3));
    /* rollback: v2 becomes active again, v3 previous; nothing is superseded */
    cver_step(&v2, VS_CVER_ACTIVATE);
    cver_step(&v3, VS_CVER_DEMOTE);
    CHECK(v2 == VS_CVER_ACTIVE && v3 == VS_CVER_PREVIOUS);
    /* v1 comes back by a re-deploy, and goes for good by remove */
    vs_cver_state out = VS_CVER_NONE;
    CHECK(vs_cver_next(v1, VS_CVER_ACTIVATE, &out, NULL) == VS_ERR_FAILED_PRECONDITION);
    cver_step(&v1, VS_CVER_DEPLOY);
    cver_step(&v1, VS_CVER_FAIL);
    cver_step(&v1, VS_CVER_REMOVE);
    CHECK(v1 == VS_CVER_REMOVED && !vs_cver_shards_hold(v1));

    /* a replica's copy: fails once, retried, served, unloaded */
    vs_rver_state r = VS_RVER_ABSENT;
    static const vs_rver_event path[] = {VS_RVER_LOAD,   VS_RVER_OPENED,   VS_RVER_FAIL,   VS_RVER_LOAD,
                                         VS_RVER_OPENED, VS_RVER_VERIFIED, VS_RVER_UNLOAD, VS_RVER_GONE};
    static const vs_rver_state want[] = {VS_RVER_LOADING,   VS_RVER_VERIFYING, VS_RVER_FAILED,
                                         VS_RVER_LOADING,   VS_RVER_VERIFYING, VS_RVER_READY,
                                         VS_RVER_UNLOADING, VS_RVER_ABSENT};
    for (size_t i = 0; i < sizeof path / sizeof path[0]; i++) {
        char err[VS_ERR_LEN] = "";
        CHECKF(vs_rver_next(r, path[i], &r, err) == VS_OK && r == want[i], "step %zu: %s", i, err);
    }
}

static void test_backoff(void)
{
    CHECK(vs_lifecycle_backoff_ms(0, 100, 60000) == 0);
    CHECK(vs_lifecycle_backoff_ms(1, 100, 60000) == 100);
    CHECK(vs_lifecycle_backoff_ms(2, 100, 60000) == 200);
    CHECK(vs_lifecycle_backoff_ms(3, 100, 60000) == 400);
    CHECK(vs_lifecycle_backoff_ms(10, 100, 60000) == 51200);
    CHECK(vs_lifecycle_backoff_ms(11, 100, 60000) == 60000); /* 102400 capped */
    CHECK(vs_lifecycle_backoff_ms(1, 5000, 1000) == 1000);   /* base above cap */
    CHECK(vs_lifecycle_backoff_ms(7, 0, 1000) == 0);
    CHECK(vs_lifecycle_backoff_ms(7, 100, 0) == 0);
    CHECK(vs_lifecycle_backoff_ms(4, 250, 2000) == 2000); /* exactly the cap */
    CHECK(vs_lifecycle_backoff_ms(5, 250, 2000) == 2000);
    /* at the edge of 64 bits */
    CHECK(vs_lifecycle_backoff_ms(64, 1, UINT64_MAX) == (UINT64_C(1) << 63));
    CHECK(vs_lifecycle_backoff_ms(65, 1, UINT64_MAX) == UINT64_MAX);
    CHECK(vs_lifecycle_backoff_ms(64, 3, UINT64_MAX) == UINT64_MAX);
    CHECK(vs_lifecycle_backoff_ms(63, 3, UINT64_MAX) == (UINT64_C(3) << 62));
    CHECK(vs_lifecycle_backoff_ms(2, UINT64_MAX, UINT64_MAX) == UINT64_MAX);
    CHECK(vs_lifecycle_backoff_ms(UINT32_MAX, 100, 60000) == 60000);
    CHECK(vs_lifecycle_backoff_ms(UINT32_MAX, UINT64_MAX, UINT64_MAX) == UINT64_MAX);
    CHECK(vs_lifecycle_backoff_ms(1000, 1, 7) == 7);
    /* non-decreasing in failures, never above the cap */
    uint64_t prev = 0;
    for (uint32_t f = 0; f < 300; f++) {
        uint64_t d = vs_lifecycle_backoff_ms(f, 37, 1000000);
        CHECKF(d >= prev && d <= 1000000, "failures %u: %llu after %llu", f, (unsigned long long)d,
               (unsigned long long)prev);
        prev = d;
    }
}

int main(void)
{
    RUN(test_cver_table_exhaustive);
    RUN(test_rver_table_exhaustive);
    RUN(test_refusal_messages);
    RUN(test_out_of_range);
    RUN(test_names);
    RUN(test_predicates);
    RUN(test_rollout_walk);
    RUN(test_backoff);
    return vs_test_finish();
}
