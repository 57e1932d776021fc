/* budget.h: the retry and hedge budget (issue 21). Under saturation, hedges and retries multiply the load
 * that caused it; the budget bounds them: every primary shard call earns `ratio` of an extra call, at most
 * `burst` extra calls are saved up, and a hedge, or a retry after a call that may have cost the shard work,
 * spends one. A retry after UNAVAILABLE (the replica is gone or refused the connection: the shard did no
 * work) is not budgeted: it replaces lost work, it does not add load. Shared by every request of a
 * coordinator; lock-free (tokens in thousandths of a call). */
#ifndef VS_COORDINATOR_BUDGET_H
#define VS_COORDINATOR_BUDGET_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct vs_budget {
    _Atomic int64_t milli; /* saved extra calls x 1000 */
    int64_t cap_milli;     /* burst x 1000 */
    int64_t per_call_milli;
} vs_budget_t;

/* ratio: extra calls per primary call (0.1 = 10 %; 0 = no extra calls beyond the burst); burst: extra
 * calls saved up at most, and the start (a quiet coordinator may hedge and retry at once). */
void vs_budget_init(vs_budget_t *b, double ratio, double burst);

/* A primary call started: earns ratio of an extra call. */
void vs_budget_deposit(vs_budget_t *b);

/* 1 when an extra call (hedge, budgeted retry) may start, spending one; 0 when the budget is empty. */
int vs_budget_withdraw(vs_budget_t *b);

/* Gives back a withdrawn call that could not start (up to the burst). */
void vs_budget_refund(vs_budget_t *b);

#endif
