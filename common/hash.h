/* hash.h: the hash that assigns ids to partitions (docs/protocol.md, manifest "hash" field), shared
 * by the builder (which writes the partitions) and anything that routes by id (the coordinator).
 *
 * splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the
 * finaliser as in Vigna's splitmix64.c): the first output of a splitmix64 generator seeded with the id.
 * It is a bijection on 64-bit values that mixes every input bit into every output bit, so consecutive
 * or strided ids (id % P would put ids 0, P, 2P... in one partition) spread evenly. Fixed forever: a
 * change would move every id of every built version. Not here: keyed or cryptographic hashing.
 * Also FNV-1a 64 (vs_fnv1a64), the byte-string hash of content ids and run fingerprints. */
#ifndef VS_COMMON_HASH_H
#define VS_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/* z = x + 0x9e3779b97f4a7c15; z = (z ^ z>>30) * 0xbf58476d1ce4e5b9; z = (z ^ z>>27) * 0x94d049bb133111eb;
 * return z ^ z>>31 (all mod 2^64). vs_splitmix64(0) == 0xe220a8397b1dcdaf. */
static inline uint64_t vs_splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The partition of id among n_partitions (>= 1): splitmix64((uint64_t)id) % n_partitions. */
static inline uint32_t vs_hash_partition(int64_t id, uint32_t n_partitions)
{
    return (uint32_t)(vs_splitmix64((uint64_t)id) % n_partitions);
}

/* FNV-1a 64 over n bytes, continuing from h (start with VS_FNV1A64_INIT): content ids of manifests, the
 * fingerprints of batch runs. Fixed forever: recorded ids would change. */
#define VS_FNV1A64_INIT 0xcbf29ce484222325ull
static inline uint64_t vs_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

#endif
