/* flags.h (cli): number-valued command-line flags, checked the same way by every tool: the whole string
 * is one decimal number (no trailing text, no overflow) inside the flag's range. */
#ifndef VS_COMMON_CLI_FLAGS_H
#define VS_COMMON_CLI_FLAGS_H

#include "common/status.h"

/* s as a whole integer in lo..hi into *out; else VS_ERR_INVALID_ARGUMENT with err
 * "FLAG 'S' must be an integer in LO..HI" (flag as given, e.g. "--threads"). */
vs_status vs_cli_parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out,
                           char err[VS_ERR_LEN]);

/* s as a finite number in lo..hi; else "FLAG 'S' must be a number in LO..HI". */
vs_status vs_cli_parse_double(const char *flag, const char *s, double lo, double hi, double *out,
                              char err[VS_ERR_LEN]);

/* When "--version" is the only argument: prints "<prog> <version> (<formats>)" on stdout and returns 1
 * (main then exits 0); else 0. Every binary calls it first. Only alone, because vecshard-build's
 * "--version NAME" names the index version it builds. */
int vs_cli_version_flag(int argc, char **argv, const char *prog);

struct option;

/* getopt_long takes any unambiguous prefix of a long option (`--n 5` is `--nprobe 5` when no other option
 * starts with n), so a misspelt or half-remembered flag silently sets another one. Called before the
 * getopt loop: every "--name" or "--name=value" in argv[1..] (up to a lone "--") must be an option of opts
 * spelt out in full; the value of an option that takes one is skipped. 0, or -1 with err "unknown option
 * '--n' (options are not abbreviated: --nprobe?)". */
int vs_cli_exact_long_options(int argc, char *const *argv, const struct option *opts, char err[VS_ERR_LEN]);

#endif
