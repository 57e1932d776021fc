/* timing.h: monotonic clock for tools and servers (common/ and shard/index/ never read clocks). */
#ifndef VS_COMMON_CLI_TIMING_H
#define VS_COMMON_CLI_TIMING_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds / seconds. */
uint64_t vs_now_ns(void);
double vs_now_s(void);

#endif
