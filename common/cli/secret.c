/* secret.c: credentials from the environment (secret.h). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/secret.h"

const char *vs_secret_getenv(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

vs_status vs_secret_read_file(const char *path, char *out, size_t n, char err[VS_ERR_LEN])
{
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "cannot read the secret file %s", path);
    /* read(2), not stdio: no library buffer keeps a copy of the secret after close */
    size_t len = 0;
    char extra = 0;
    ssize_t r;
    while (len < n - 1 && (r = read(fd, out + len, n - 1 - len)) > 0)
        len += (size_t)r;
    int more = len == n - 1 && read(fd, &extra, 1) == 1;
    close(fd);
    out[len] = 0;
    size_t line = strcspn(out, "\r\n");
    if (more && line == n - 1 && extra != '\n' && extra != '\r') {
        memset(out, 0, n);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "the secret in %s is longer than %zu bytes", path, n - 1);
    }
    memset(out + line, 0, n - line); /* what followed the first line */
    if (line == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "the secret file %s is empty", path);
    return VS_OK;
}

vs_status vs_secret_from_env(const char *name, char *out, size_t n, int *found, char err[VS_ERR_LEN])
{
    char fvar[128];
    snprintf(fvar, sizeof fvar, "%s_FILE", name);
    const char *path = vs_secret_getenv(fvar), *val = vs_secret_getenv(name);
    out[0] = 0;
    *found = 0;
    if (!path && !val)
        return VS_OK;
    if (path) {
        vs_status st = vs_secret_read_file(path, out, n, err);
        if (st != VS_OK)
            return st;
    } else {
        size_t len = strlen(val);
        if (len > n - 1)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "$%s is longer than %zu bytes", name, n - 1);
        memcpy(out, val, len + 1);
    }
    *found = 1;
    return VS_OK;
}

int vs_secret_no_passphrase(char *buf, int size, int rwflag, void *user)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)user;
    return -1;
}
