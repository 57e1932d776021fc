/* secret.h (cli): credentials from the environment, the convention of every vecshard process and tool:
 * $NAME_FILE names a file holding the secret (a mounted Kubernetes Secret; its first line, the newline
 * dropped), else $NAME holds it. Secrets are never logged. */
#ifndef VS_COMMON_CLI_SECRET_H
#define VS_COMMON_CLI_SECRET_H

#include <stddef.h>

#include "common/status.h"

/* The secret in file path (first line) into out (n bytes, NUL-terminated). VS_ERR_INVALID_ARGUMENT when
 * the file cannot be read, or the secret is empty or longer than n - 1. */
vs_status vs_secret_read_file(const char *path, char *out, size_t n, char err[VS_ERR_LEN]);

/* The secret named name into out (n bytes): from the file $name_FILE, else $name. VS_OK with *found 1, or
 * VS_OK with *found 0 when neither is set (out ""); the errors of vs_secret_read_file, and
 * VS_ERR_INVALID_ARGUMENT when $name is empty or too long. */
vs_status vs_secret_from_env(const char *name, char *out, size_t n, int *found, char err[VS_ERR_LEN]);

/* An OpenSSL pem_password_cb that refuses: encrypted private keys are not supported, and OpenSSL's default
 * would prompt on the terminal (a server would hang at start). */
int vs_secret_no_passphrase(char *buf, int size, int rwflag, void *user);

/* The environment's value of name, NULL when unset or empty. */
const char *vs_secret_getenv(const char *name);

#endif
