/* ids.h: item-id files (the builder, the fold tool, vecshard-gt): .npy (int64 '<i8', C order, shape (n,)
 * or (n, 1)) or .i64 (raw little-endian int64), mapped read-only. */
#ifndef VS_COMMON_IDS_H
#define VS_COMMON_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* A mapped file of n little-endian int64 ids. */
typedef struct vs_ids_file {
    void *map;
    size_t map_len;
    const unsigned char *data; /* n * 8 bytes, any alignment */
    size_t n;
} vs_ids_file_t;

/* VS_ERR_UNSUPPORTED (another suffix), VS_ERR_NOT_FOUND, VS_ERR_IO, VS_ERR_CORRUPT (a bad header or size). */
vs_status vs_ids_file_open(const char *path, vs_ids_file_t *f, char err[VS_ERR_LEN]);
void vs_ids_file_close(vs_ids_file_t *f);
int64_t vs_ids_file_get(const vs_ids_file_t *f, size_t i);

#endif
