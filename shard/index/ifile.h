/* ifile.h: the index file container, one file per index partition, shared by every index type.
 *
 * A file is a fixed header, named sections of opaque bytes, and a section table at the end. The
 * container knows nothing about what a section holds (the index defines and checks its own sections and
 * its params blob); it guarantees that what the index reads is exactly what the writer appended.
 * Key choices: the writer streams sections (larger than RAM) into "<path>.tmp" and publishes it with
 * fsync + rename, so a reader sees either the old file or the complete new one; the reader maps the file
 * read-only (processes on one host share the page cache) and validates every byte before returning,
 * so index code never sees a damaged file. Not here: compression, in-place updates, partial loading,
 * big-endian hosts, reading the clock (build_time_unix comes from the caller).
 *
 * Layout, format version 1, all integers little-endian:
 *
 *   offset 0    header, 512 bytes
 *     0   char magic[8] = "VSHIDX01"      120 char model_version[128] (NUL-padded)
 *     8   u32  format_version = 1         248 u8   params[128] (opaque, index-defined)
 *     12  u32  header_size = 512          376 u8   reserved[132] = 0
 *     16  u32  index_type (vs_index_type) 508 u32  header_crc: CRC32C of bytes 0..511 with this
 *     20  u32  metric (vs_metric)                  field read as zero (i.e. of bytes 0..507
 *     24  u32  dim (1..65536)                      followed by four zero bytes)
 *     28  u32  n_sections (0..64)
 *     32  u64  n_vectors
 *     40  u64  build_time_unix (seconds)
 *     48  u64  section_table_offset
 *     56  char factory[64] (NUL-padded FAISS factory string)
 *   offset 512  sections, each at a 64-byte-aligned offset, in table order, not overlapping; the gaps
 *               between them (the writer leaves < 64 bytes) must be zero bytes
 *   table       at section_table_offset (64-aligned, after the last section; gap zero): n_sections
 *               entries of 64 bytes
 *                 0 char tag[16] (1..15 chars of [a-z0-9._], NUL-padded)   32 u32 crc32c of the bytes
 *                 16 u64 offset                                           36 u32 flags = 0
 *                 24 u64 length                                           40 u8  reserved[24] = 0
 *               then one 64-byte block: u32 table_crc (CRC32C of the n_sections*64 entry bytes) and 60
 *               zero bytes. The file ends there.
 *
 * Every byte is therefore covered by a CRC or required to be zero. Readers refuse with
 * VS_ERR_UNSUPPORTED a format_version above 1, an index_type or metric this build does not know, and
 * nonzero section flags (all of which mean "written by a newer vecshard"); everything else that does
 * not match the layout is VS_ERR_CORRUPT. Any change to the layout bumps format_version.
 * Checksums: common/crc32c.h. Section data pointers are 64-byte aligned in memory (the mapping is
 * page aligned), so an index can read float or u64 arrays in place. */
#ifndef VS_SHARD_INDEX_IFILE_H
#define VS_SHARD_INDEX_IFILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/status.h"
#include "shard/index/index.h"

#define VS_IFILE_MAGIC "VSHIDX01"
#define VS_IFILE_FORMAT_VERSION 1u
#define VS_IFILE_HEADER_SIZE 512u
#define VS_IFILE_ALIGN 64u
#define VS_IFILE_MAX_SECTIONS 64u
#define VS_IFILE_TAG_MAX 15u /* characters, without the NUL */
#define VS_IFILE_MAX_DIM 65536u

/* The header fields a writer provides and a reader gets back (caller storage). Strings are
 * NUL-terminated within their arrays. */
typedef struct vs_ifile_header {
    vs_index_type index_type;
    vs_metric metric;
    uint32_t dim;
    uint64_t n_vectors;
    uint64_t build_time_unix; /* seconds since the epoch, from the caller */
    char factory[64];         /* FAISS factory string */
    char model_version[128];  /* embedding model version the vectors came from */
    uint8_t params[128];      /* index-specific fixed parameters; the index defines and checks them */
} vs_ifile_header_t;

/* Zeroes *h and fills type, metric, dim, factory and model_version (NULL = ""). VS_ERR_INVALID_ARGUMENT
 * (h unchanged) for an unknown type or metric, dim outside 1..65536, a NULL factory, factory of 64 or
 * more characters or model_version of 128 or more. The caller then sets n_vectors, build_time_unix and
 * params. */
vs_status vs_ifile_header_init(vs_ifile_header_t *h, vs_index_type type, vs_metric metric, uint32_t dim,
                               const char *factory, const char *model_version, char err[VS_ERR_LEN]);

/* ---- writer -------------------------------------------------------------------------------------
 * Usage: open; for each section either add_section(tag, data, n) or begin_section(tag), append(...)
 * any number of times, end_section; then commit(header), or abort. Writes are buffered (256 KiB);
 * large appends go straight to the file. One writer is used by one thread at a time.
 * A refused call (bad argument, wrong state) leaves the writer as it was. After an I/O error every
 * further call returns VS_ERR_IO again; only abort (or commit, which fails) remains useful. */
typedef struct vs_ifile_writer vs_ifile_writer_t; /* opaque */

/* Creates (truncating) "<path>.tmp" and reserves the header. path is copied. *out is released by
 * commit or abort. VS_ERR_IO (with the OS reason) if the tmp file cannot be created, VS_ERR_NOMEM. */
vs_status vs_ifile_writer_open(const char *path, vs_ifile_writer_t **out, char err[VS_ERR_LEN]);

/* Starts a section named tag (1..15 chars of [a-z0-9._]) at the next 64-byte boundary (zero padding).
 * VS_ERR_INVALID_ARGUMENT for a bad tag or when 64 sections exist; VS_ERR_ALREADY_EXISTS for a tag
 * already used; VS_ERR_FAILED_PRECONDITION if a section is open. */
vs_status vs_ifile_writer_begin_section(vs_ifile_writer_t *w, const char *tag, char err[VS_ERR_LEN]);

/* Appends n bytes (borrowed; NULL allowed when n == 0) to the open section, updating its CRC32C.
 * VS_ERR_FAILED_PRECONDITION when no section is open; VS_ERR_IO when a write fails. */
vs_status vs_ifile_writer_append(vs_ifile_writer_t *w, const void *data, size_t n, char err[VS_ERR_LEN]);

/* Closes the open section (records its length and CRC). VS_ERR_FAILED_PRECONDITION if none is open. */
vs_status vs_ifile_writer_end_section(vs_ifile_writer_t *w, char err[VS_ERR_LEN]);

/* begin_section + append + end_section. On a refused tag nothing is written. */
vs_status vs_ifile_writer_add_section(vs_ifile_writer_t *w, const char *tag, const void *data, size_t n,
                                      char err[VS_ERR_LEN]);

/* Writes the section table and then the header (hdr borrowed; its n_sections and table offset are
 * filled in here), fsyncs the file, renames it over path (replacing any old file) and fsyncs the
 * directory. w is released in every case: on failure the tmp file is removed and path is untouched,
 * except when only the final directory fsync fails (VS_ERR_IO; the new file is at path but the rename
 * may not survive a crash). VS_ERR_INVALID_ARGUMENT for a header that vs_ifile_header_init would refuse
 * (or whose strings are not NUL-terminated); VS_ERR_FAILED_PRECONDITION with a section still open;
 * VS_ERR_IO. */
vs_status vs_ifile_writer_commit(vs_ifile_writer_t *w, const vs_ifile_header_t *hdr, char err[VS_ERR_LEN]);

/* Closes and removes the tmp file and releases w. NULL is a no-op. */
void vs_ifile_writer_abort(vs_ifile_writer_t *w);

/* ---- reader ------------------------------------------------------------------------------------- */
typedef struct vs_ifile vs_ifile_t; /* opaque */

/* Maps path read-only and validates it completely (layout above, every CRC: reads the whole file once,
 * at several GB/s when it is in the page cache). Statuses: VS_ERR_NOT_FOUND (no such file), VS_ERR_IO
 * (other OS errors, not a regular file), VS_ERR_CORRUPT (message names the path and the header, the
 * section table or the section's tag, and byte offsets), VS_ERR_UNSUPPORTED (newer format), VS_ERR_NOMEM.
 * *out is released with vs_ifile_close. The file must not be modified in place while open (writers
 * replace files by rename, which is safe). */
vs_status vs_ifile_open(const char *path, vs_ifile_t **out, char err[VS_ERR_LEN]);

/* vs_ifile_open without reading the sections named in lazy (a NULL-terminated list of tags; NULL = none):
 * their bounds are checked, their CRC32C is not (a refine section kept on disk: reading it all on every
 * start is what the disk tier avoids). vs_ifile_verify_section checks one later. */
vs_status vs_ifile_open_lazy(const char *path, const char *const *lazy, vs_ifile_t **out, char err[VS_ERR_LEN]);

/* Reads section tag from the file (O_DIRECT where the file system allows it: the page cache is left to
 * the sections in use) and checks its CRC32C, at most bytes_per_s on average (<= 0: as fast as it can).
 * *stop (may be NULL) set to nonzero ends it early (VS_ERR_CANCELLED). VS_ERR_CORRUPT names the section and
 * both CRCs; VS_ERR_IO, VS_ERR_NOT_FOUND, VS_ERR_NOMEM. Blocking; safe while f is in use. */
vs_status vs_ifile_verify_section(const vs_ifile_t *f, const char *tag, double bytes_per_s,
                                  const volatile int *stop, char err[VS_ERR_LEN]);

/* Where section tag lies in the file: byte offset and length. VS_ERR_NOT_FOUND. */
vs_status vs_ifile_section_span(const vs_ifile_t *f, const char *tag, uint64_t *out_offset, uint64_t *out_len,
                                char err[VS_ERR_LEN]);

/* Unmaps and releases f; every pointer obtained from f becomes invalid. NULL is a no-op. */
void vs_ifile_close(vs_ifile_t *f);

/* The validated header (borrowed, valid until close). */
const vs_ifile_header_t *vs_ifile_header(const vs_ifile_t *f);

/* The bytes of section tag: *out_data (borrowed from the mapping, read-only, 64-byte aligned, valid
 * until close; non-NULL even for an empty section) and *out_len. VS_ERR_NOT_FOUND naming the tag and
 * the file when there is no such section (outputs untouched). O(n_sections). Thread-safe. */
vs_status vs_ifile_section(const vs_ifile_t *f, const char *tag, const void **out_data, size_t *out_len,
                           char err[VS_ERR_LEN]);

/* vs_ifile_section for a section the index needs with exactly want bytes: VS_ERR_CORRUPT naming path
 * and tag when it is missing or has another length (what index loaders answer). */
vs_status vs_ifile_section_sized(const vs_ifile_t *f, const char *path, const char *tag, size_t want,
                                 const void **out_data, char err[VS_ERR_LEN]);

/* Number of sections, and section i (0-based, in file order) with its tag (borrowed, valid until close);
 * VS_ERR_OUT_OF_RANGE for i >= count. For tools that list a file's contents. */
size_t vs_ifile_section_count(const vs_ifile_t *f);
vs_status vs_ifile_section_at(const vs_ifile_t *f, size_t i, const char **out_tag, const void **out_data,
                              size_t *out_len, char err[VS_ERR_LEN]);

/* The file's content id: 16 hex digits of two CRC32Cs (different seeds) over the 512 header bytes and
 * every section's tag, offset, length and CRC32C. Since open verified every section against its CRC and
 * the header against its own, equal content ids mean byte-equal files, at no extra read: the manifest
 * records it per partition and a shard compares it after open instead of reading the file a second time
 * for a whole-file CRC. out: 17 bytes. */
void vs_ifile_content_id(const vs_ifile_t *f, char out[17]);

/* CRC32C of section tag (as recorded and verified at open). VS_ERR_NOT_FOUND when there is none. */
vs_status vs_ifile_section_crc(const vs_ifile_t *f, const char *tag, uint32_t *out_crc, char err[VS_ERR_LEN]);

/* Size of the mapping (= the file size) in bytes. */
size_t vs_ifile_mapped_bytes(const vs_ifile_t *f);

#endif
