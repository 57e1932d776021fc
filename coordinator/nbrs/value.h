/* value.h: what a batch-neighbours run writes into Redis: key names and the value of one key (its top-K
 * ids and scores), binary or JSON. Pure: no network. The layout is the contract readers code against
 * (docs/protocol.md, "Batch neighbours in Redis"):
 *
 *   <prefix>/<set>:<key>     one query's neighbours in result set <set>
 *   <prefix>:#current        the name of the current set (switched atomically when a run completes)
 *   <prefix>:#sets           the completed sets, newest first (a list)
 *   <prefix>:#meta:<set>     a hash: the run that writes <set> (fingerprint, progress, state, ...)
 *
 * Prefixes are [A-Za-z0-9._:-] (no '/') and set names [A-Za-z0-9._-] (1..64 bytes): the first '/' of a data
 * key ends its prefix and the next ':' its set, so the keys of one (prefix, set) are exactly those matching
 * "<prefix>/<set>:*", and no data key is a "#" key of any prefix.
 *
 * Binary value ("vsnb1"), little-endian, 16 + 12 n bytes:
 *   0  char[4]  "VSN1"
 *   4  uint32   n: neighbours stored (<= K: fewer when the search found fewer candidates; never padding)
 *   8  uint32   set tag: CRC32C of the set name (a reader checks every value it got is of one set)
 *   12 uint32   flags: bit 0 = scores are similarities (larger is better: ip, cosine); else distances
 *                (squared L2)
 *   16 int64[n] ids, best first
 *   16+8n float32[n] scores
 * JSON value: {"set":"<set>","ids":[...],"scores":[...]} (scores printed with 9 significant digits, so
 * they read back as the same float32; a non-finite score as null). */
#ifndef VS_COORDINATOR_NBRS_VALUE_H
#define VS_COORDINATOR_NBRS_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define VS_NBRS_MAGIC "VSN1"
#define VS_NBRS_HEADER_BYTES 16u
#define VS_NBRS_FLAG_SIMILARITY 1u
#define VS_NBRS_MAX_KEY 1024u /* bytes of a user key */
#define VS_NBRS_MAX_NAME 64u  /* bytes of a set name */
#define VS_NBRS_MAX_PREFIX 128u

typedef enum vs_nbrs_format { VS_NBRS_BINARY = 0, VS_NBRS_JSON = 1 } vs_nbrs_format;

/* 1 when name is a valid set name ([A-Za-z0-9._-], 1..64 bytes). */
int vs_nbrs_set_name_valid(const char *name);
/* 1 when prefix is valid: 1..128 bytes of [A-Za-z0-9._:-]. */
int vs_nbrs_prefix_valid(const char *prefix);
/* The set tag of a set name (CRC32C of its bytes). */
uint32_t vs_nbrs_set_tag(const char *set);

/* Bytes of the value of n neighbours in format f (JSON: an upper bound). */
size_t vs_nbrs_value_max_bytes(vs_nbrs_format f, size_t n, size_t set_len);

/* Encodes one query's answer: ids[k] and scores[k] best first, padded with id -1 (padding is dropped),
 * into buf (at least vs_nbrs_value_max_bytes(f, k, strlen(set)) bytes). Returns the bytes written. */
size_t vs_nbrs_value_encode(vs_nbrs_format f, const char *set, int similarity, const int64_t *ids,
                            const float *scores, size_t k, uint8_t *buf);

/* A decoded binary value; ids and scores point into the decoded bytes (unaligned: read with memcpy,
 * or through vs_nbrs_value_id / _score). */
typedef struct vs_nbrs_value {
    uint32_t n, set_tag, flags;
    const uint8_t *ids, *scores;
} vs_nbrs_value_t;

/* Checks and decodes a binary value of len bytes: VS_ERR_CORRUPT (magic, size) with detail in err. */
vs_status vs_nbrs_value_decode(const uint8_t *buf, size_t len, vs_nbrs_value_t *out, char err[VS_ERR_LEN]);
int64_t vs_nbrs_value_id(const vs_nbrs_value_t *v, size_t i);
float vs_nbrs_value_score(const vs_nbrs_value_t *v, size_t i);

/* Key names (see above) into buf of n bytes; return the length, or 0 when it does not fit. */
size_t vs_nbrs_key_data(char *buf, size_t n, const char *prefix, const char *set, const char *key,
                        size_t key_len);
size_t vs_nbrs_key_current(char *buf, size_t n, const char *prefix);
size_t vs_nbrs_key_sets(char *buf, size_t n, const char *prefix);
size_t vs_nbrs_key_meta(char *buf, size_t n, const char *prefix, const char *set);

#endif
