/* timing.c: see timing.h. */
#include "common/cli/timing.h"

#include <time.h>

uint64_t vs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double vs_now_s(void)
{
    return (double)vs_now_ns() * 1e-9;
}
