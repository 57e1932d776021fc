/* secret.c: credentials from the environment (secret.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/secret.h"

const char *vs_env_str(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

vs_status vs_env_secret(const char *name, char *out, size_t n, int *found, char err[VS_ERR_LEN])
{
    char fvar[128];
    snprintf(fvar, sizeof fvar, "%s_FILE", name);
    const char *path = vs_env_str(fvar), *val = vs_env_str(name);
    out[0] = 0;
    *found = 0;
    if (!path && !val)
        return VS_OK;
    size_t len;
    if (path) {
        FILE *f = fopen(path, "r");
        if (!f)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "cannot read $%s %s", fvar, path);
        len = fread(out, 1, n - 1, f);
        int more = fgetc(f) != EOF;
        fclose(f);
        out[len] = 0;
        out[strcspn(out, "\r\n")] = 0;
        len = strlen(out);
        if (more && len == n - 1) {
            memset(out, 0, n);
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "$%s: the secret in %s is longer than %zu bytes", fvar,
                           path, n - 1);
        }
    } else {
        len = strlen(val);
        if (len > n - 1)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "$%s is longer than %zu bytes", name, n - 1);
        memcpy(out, val, len + 1);
    }
    if (len == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "$%s%s is empty", path ? fvar : name, path ? "'s file" : "");
    *found = 1;
    return VS_OK;
}
