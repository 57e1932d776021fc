/* timing.h: monotonic clock for tools and servers (common/ and shard/index/ never read clocks). */
#ifndef VS_COMMON_CLI_TIMING_H
#define VS_COMMON_CLI_TIMING_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds / seconds. */
uint64_t vs_now_ns(void);
double vs_now_s(void);
/* CPU seconds (user + system) this process has used so far, all threads. */
double vs_process_cpu_s(void);

/* The time ms (>= 0) milliseconds from now on clock, as an absolute deadline for pthread_cond_timedwait
 * (CLOCK_REALTIME for a default condition variable, CLOCK_MONOTONIC for one set to it). */
struct timespec vs_timespec_in_ms(clockid_t clock, int64_t ms);

#endif
