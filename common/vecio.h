/* vecio.h: reading and writing vector files: .fvecs, .ivecs, .bvecs, .npy (float32/uint8/int32, C
 * order) and the MNIST/Fashion-MNIST idx format (plain or .gz).
 *
 * Design: a file is opened once into a vs_vecfile_t that knows its format, row count, dimension and
 * element type, and rows are then read out as float32 (or int32) in any range, so builders can stream a
 * file larger than RAM and everything downstream sees one contiguous row-major float matrix. Uncompressed
 * files are mapped read-only with mmap (npy rows are served straight from the mapping); .gz idx files are
 * inflated into memory with zlib. Opening validates the whole file before it is used: magic, header,
 * dimension in 1..VS_VECIO_MAX_DIM, every per-row dimension of *vecs files, and the exact file size.
 * Every error names the file and the byte offset where the problem is.
 * Not here: reading over the network, or formats with per-row varying dims (refused as corrupt). */
#ifndef VS_COMMON_VECIO_H
#define VS_COMMON_VECIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define VS_VECIO_MAX_DIM 65536u

typedef enum vs_vecio_format {
    VS_VECIO_FVECS = 1, /* per row: int32 d, then d float32 */
    VS_VECIO_IVECS,     /* per row: int32 d, then d int32 */
    VS_VECIO_BVECS,     /* per row: int32 d, then d uint8 */
    VS_VECIO_NPY,       /* numpy .npy v1/v2/v3, 2-D (or 1-D = one column), C order, little-endian */
    VS_VECIO_IDX,       /* MNIST idx: big-endian header, uint8 data; images flattened to rows */
} vs_vecio_format;

typedef enum vs_vecio_dtype {
    VS_DTYPE_F32 = 1,
    VS_DTYPE_U8,
    VS_DTYPE_I32,
    VS_DTYPE_I64, /* npy <i8: item ids (ground truth by the user's ids) */
    VS_DTYPE_F64, /* npy <f8: only in columns (vs_vecfile_open_column), read as float32 */
} vs_vecio_dtype;

typedef struct vs_vecfile vs_vecfile_t; /* opaque */

/* Opens and validates a vector file. The format comes from the name: *.fvecs, *.ivecs, *.bvecs, *.npy;
 * idx is recognised by "-idx" or ".idx" in the name (e.g. train-images-idx3-ubyte[.gz]); a ".gz" suffix
 * means gzip (idx only). Returns VS_ERR_NOT_FOUND / VS_ERR_IO when the file cannot be opened or mapped,
 * VS_ERR_CORRUPT for a malformed file (truncated, bad magic, inconsistent per-row dimension, trailing
 * bytes), VS_ERR_INVALID_ARGUMENT for a dimension of 0 or over VS_VECIO_MAX_DIM, VS_ERR_UNSUPPORTED for
 * an unknown extension or an npy dtype other than <f4, |u1, <i4, <i8. On success *out_vf owns the mapping;
 * free with vs_vecfile_close. Thread-safety: reads on one vs_vecfile_t may run concurrently. */
vs_status vs_vecfile_open(const char *path, vs_vecfile_t **out_vf, char err[VS_ERR_LEN]);

/* Opens a column: a file of one value per row (item attributes: .npy of shape (n,) or (n, 1)), as
 * vs_vecfile_open does, but also accepting npy <f8 (dtype VS_DTYPE_F64: read_f32 rounds it to the nearest
 * float32 and refuses a finite value beyond float32's range, naming the row; read_i32 and read_i64 refuse
 * it). Rows of more than one value are VS_ERR_INVALID_ARGUMENT; other errors as vs_vecfile_open. */
vs_status vs_vecfile_open_column(const char *path, vs_vecfile_t **out_vf, char err[VS_ERR_LEN]);

/* Releases the mapping or buffer. NULL is a no-op. */
void vs_vecfile_close(vs_vecfile_t *vf);

size_t vs_vecfile_count(const vs_vecfile_t *vf); /* number of rows */
uint32_t vs_vecfile_dim(const vs_vecfile_t *vf); /* elements per row */
vs_vecio_dtype vs_vecfile_dtype(const vs_vecfile_t *vf);
vs_vecio_format vs_vecfile_format(const vs_vecfile_t *vf);
const char *vs_vecfile_path(const vs_vecfile_t *vf); /* borrowed; valid until close */

/* Copies rows [row0, row0+n_rows) into out (n_rows*dim floats, row-major), converting uint8 and int32
 * exactly to float. VS_ERR_OUT_OF_RANGE if the range is outside the file. */
vs_status vs_vecfile_read_f32(const vs_vecfile_t *vf, size_t row0, size_t n_rows, float *out,
                              char err[VS_ERR_LEN]);

/* Same for int32 element files (ivecs, npy <i4) and uint8 files (widened); float and int64 files are
 * refused with VS_ERR_INVALID_ARGUMENT (no silent truncation into ids). read_f32 refuses int64 files. */
vs_status vs_vecfile_read_i32(const vs_vecfile_t *vf, size_t row0, size_t n_rows, int32_t *out,
                              char err[VS_ERR_LEN]);

/* Same for int64 files (npy <i8), and int32 and uint8 files (widened); float files are refused. */
vs_status vs_vecfile_read_i64(const vs_vecfile_t *vf, size_t row0, size_t n_rows, int64_t *out,
                              char err[VS_ERR_LEN]);

/* Returns a pointer to the rows when the file stores them contiguously as float32 (npy <f4), so callers
 * can use the mapping with no copy; NULL otherwise. Borrowed; valid until close. */
const float *vs_vecfile_f32_rows(const vs_vecfile_t *vf);

/* Convenience: open, read every row as float32 into a new malloc'd buffer (*out_data, free() it), close.
 * Outputs are untouched on failure. */
vs_status vs_vecfile_load_f32(const char *path, size_t *out_n, uint32_t *out_dim, float **out_data,
                              char err[VS_ERR_LEN]);
/* Same for int32 files (ground truth). */
vs_status vs_vecfile_load_i32(const char *path, size_t *out_n, uint32_t *out_dim, int32_t **out_data,
                              char err[VS_ERR_LEN]);

/* Writers. Each writes n rows of dim elements from a row-major buffer to path, creating or truncating
 * it; the file is written to path.tmp and renamed, so a reader never sees a half-written file. dim must
 * be 1..VS_VECIO_MAX_DIM. VS_ERR_IO on write failure (message names the path). */
vs_status vs_vecio_write_fvecs(const char *path, size_t n, uint32_t dim, const float *data,
                               char err[VS_ERR_LEN]);
vs_status vs_vecio_write_ivecs(const char *path, size_t n, uint32_t dim, const int32_t *data,
                               char err[VS_ERR_LEN]);
vs_status vs_vecio_write_bvecs(const char *path, size_t n, uint32_t dim, const uint8_t *data,
                               char err[VS_ERR_LEN]);
/* npy v1.0 with header padded so the data starts at a multiple of 64 bytes. dtype F32, U8, I32, I64 or F64
 * (data: doubles). */
vs_status vs_vecio_write_npy(const char *path, vs_vecio_dtype dtype, size_t n, uint32_t dim, const void *data,
                             char err[VS_ERR_LEN]);

/* A streaming npy writer, for rows written in pieces whose count is known only at the end (the folded
 * attribute columns of vecshard-fold). The file is vs_vecio_write_npy's layout (v1.0, shape (n, dim), data
 * at a multiple of 64 bytes; the header padded to the length a count of SIZE_MAX would need), written to
 * path.tmp and renamed by close, so a reader never sees a half-written file.
 * open: dtype F32, U8, I32, I64 or F64 and dim 1..VS_VECIO_MAX_DIM (VS_ERR_INVALID_ARGUMENT), VS_ERR_IO when
 * path.tmp cannot be created, VS_ERR_NOMEM. put: n_rows * dim elements of the dtype (doubles for F64),
 * appended; VS_ERR_IO on a write error. close: writes the header with the count, syncs and renames;
 * VS_ERR_IO (the .tmp removed) when anything failed; frees nw in every case. discard: removes path.tmp and
 * frees nw (NULL is a no-op). One writer per thread. */
typedef struct vs_npy_writer vs_npy_writer_t;
vs_status vs_npy_writer_open(const char *path, vs_vecio_dtype dtype, uint32_t dim, vs_npy_writer_t **out,
                             char err[VS_ERR_LEN]);
vs_status vs_npy_writer_put(vs_npy_writer_t *nw, const void *rows, size_t n_rows, char err[VS_ERR_LEN]);
vs_status vs_npy_writer_close(vs_npy_writer_t *nw, char err[VS_ERR_LEN]);
void vs_npy_writer_discard(vs_npy_writer_t *nw);

#endif
