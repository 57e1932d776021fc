/* flags.c (cli): see flags.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/version.h"

vs_status vs_cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out,
                           char err[VS_ERR_LEN])
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s '%s' must be an integer in %lld..%lld", flag, s, lo,
                       hi);
    *out = v;
    return VS_OK;
}

vs_status vs_cli_parse_double(const char *flag, const char *s, double lo, double hi, double *out,
                              char err[VS_ERR_LEN])
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || !(v >= lo && v <= hi))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s '%s' must be a number in %g..%g", flag, s, lo, hi);
    *out = v;
    return VS_OK;
}

int vs_cli_version_flag(int argc, char **argv, const char *prog)
{
    /* only alone: vecshard-build has a --version NAME option (the index version) */
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s %s (%s)\n", prog, VS_VERSION, VS_VERSION_DETAIL);
        return 1;
    }
    return 0;
}
