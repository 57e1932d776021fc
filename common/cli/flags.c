/* flags.c (cli): see flags.h. */
#include <errno.h>
#include <getopt.h>
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

int vs_cli_exact_long_options(int argc, char *const *argv, const struct option *opts, char err[VS_ERR_LEN])
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            return 0;
        if (strncmp(a, "--", 2) != 0)
            continue;
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct option *hit = NULL, *prefix_of = NULL;
        for (const struct option *o = opts; o->name; o++) {
            if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                hit = o;
            else if (!prefix_of && len && strncmp(o->name, name, len) == 0)
                prefix_of = o;
        }
        if (!hit) {
            if (prefix_of)
                vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                        "unknown option '--%.*s' (options are not abbreviated: --%s?)", (int)len, name,
                        prefix_of->name);
            else
                vs_errf(err, VS_ERR_INVALID_ARGUMENT, "unknown option '--%.*s'", (int)len, name);
            return -1;
        }
        if (hit->has_arg == required_argument && !eq)
            i++; /* its value, whatever it looks like */
    }
    return 0;
}
