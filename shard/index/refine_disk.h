/* refine_disk.h: an IVF index's refine copies read from its file at query time (issue 20, the disk tier).
 *
 * A shard serving a partition larger than its RAM keeps the codes, ids and lists in memory and leaves the
 * refine section (the exact or SQ8 vectors that re-rank candidates) on disk: a query's candidates are read
 * with O_DIRECT (the page cache stays with the codes) through one io_uring per search thread, all of a
 * query's reads in flight at once, the candidates sorted by file offset so that candidates sharing a 4 KiB
 * block cost one read. Where io_uring or O_DIRECT is unavailable (a seccomp profile, tmpfs), plain pread
 * takes over. Not here: caching blocks across queries (the page cache is what the disk tier avoids), the
 * section's checksum (vs_ifile_verify_section, the shard's scrub). */
#ifndef VS_SHARD_INDEX_REFINE_DISK_H
#define VS_SHARD_INDEX_REFINE_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_refine_disk vs_refine_disk_t;

/* Reads of the section [section_off, section_off + section_len) of path, items of item_bytes each.
 * VS_ERR_IO naming the path; VS_ERR_NOMEM. Close with vs_refine_disk_close. */
vs_status vs_refine_disk_open(const char *path, uint64_t section_off, uint64_t section_len, size_t item_bytes,
                              vs_refine_disk_t **out, char err[VS_ERR_LEN]);

void vs_refine_disk_close(vs_refine_disk_t *d);

/* The bytes of items[0..n) (positions in the section, each below section_len / item_bytes): out[i] points
 * to item i's item_bytes, in this thread's buffer, valid until this thread's next fetch. 0 on success, -1
 * when a read failed (out untouched; counted in errors). Thread-safe (each thread has its own ring and
 * buffer, freed when the thread ends). */
int vs_refine_disk_fetch(vs_refine_disk_t *d, const uint64_t *items, size_t n, const uint8_t **out);

/* Scratch memory of at least bytes for the calling thread (kept and grown; valid until its next call and
 * independent of fetch's buffer), or NULL when out of memory. */
void *vs_refine_disk_scratch(size_t bytes);

typedef struct vs_refine_disk_stats {
    uint64_t fetches; /* vs_refine_disk_fetch calls */
    uint64_t items;   /* items asked for */
    uint64_t reads;   /* disk reads issued (items sharing a block share a read) */
    uint64_t bytes;   /* bytes read */
    uint64_t errors;  /* failed fetches */
    double read_seconds; /* summed over fetches: first submission to last completion */
    int uring;        /* 1 when io_uring is in use (else pread) */
    int direct;       /* 1 when the file is read with O_DIRECT */
} vs_refine_disk_stats_t;

void vs_refine_disk_get_stats(const vs_refine_disk_t *d, vs_refine_disk_stats_t *out);

#endif
