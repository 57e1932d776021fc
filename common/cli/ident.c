/* ident.c: made-up identifiers (ident.h). */
#include "common/cli/ident.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int vs_ident_valid(const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

void vs_ident_random(char out[VS_IDENT_RANDOM_CHARS + 1])
{
    uint64_t r[2] = {0, 0};
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
        r[1] = (uint64_t)getpid();
    }
    snprintf(out, VS_IDENT_RANDOM_CHARS + 1, "%016llx%016llx", (unsigned long long)r[0],
             (unsigned long long)r[1]);
}
