/* budget.c: the retry and hedge budget (budget.h). */
#include "coordinator/budget.h"

void vs_budget_init(vs_budget_t *b, double ratio, double burst)
{
    b->per_call_milli = (int64_t)(ratio * 1000.0 + 0.5);
    b->cap_milli = (int64_t)(burst * 1000.0 + 0.5);
    atomic_init(&b->milli, b->cap_milli);
}

void vs_budget_deposit(vs_budget_t *b)
{
    int64_t cur = atomic_load(&b->milli);
    while (cur < b->cap_milli) {
        int64_t next = cur + b->per_call_milli > b->cap_milli ? b->cap_milli : cur + b->per_call_milli;
        if (atomic_compare_exchange_weak(&b->milli, &cur, next))
            return;
    }
}

void vs_budget_refund(vs_budget_t *b)
{
    int64_t cur = atomic_load(&b->milli);
    while (cur < b->cap_milli) {
        int64_t next = cur + 1000 > b->cap_milli ? b->cap_milli : cur + 1000;
        if (atomic_compare_exchange_weak(&b->milli, &cur, next))
            return;
    }
}

int vs_budget_withdraw(vs_budget_t *b)
{
    int64_t cur = atomic_load(&b->milli);
    while (cur >= 1000)
        if (atomic_compare_exchange_weak(&b->milli, &cur, cur - 1000))
            return 1;
    return 0;
}
