/* secret.h (cli): credentials from the environment, the convention of every vecshard process and tool:
 * $NAME_FILE names a file holding the secret (a mounted Kubernetes Secret; one line, the newline
 * dropped), else $NAME holds it. Secrets are never logged. */
#ifndef VS_COMMON_CLI_SECRET_H
#define VS_COMMON_CLI_SECRET_H

#include <stddef.h>

#include "common/status.h"

/* The secret named name into out (n bytes, NUL-terminated): VS_OK with *found 1, or VS_OK with *found 0
 * when neither $name_FILE nor $name is set (out ""); VS_ERR_INVALID_ARGUMENT when the file cannot be read
 * or the secret is empty or longer than n - 1. */
vs_status vs_env_secret(const char *name, char *out, size_t n, int *found, char err[VS_ERR_LEN]);

/* The environment's value of name, NULL when unset or empty. */
const char *vs_env_str(const char *name);

#endif
