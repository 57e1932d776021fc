/* idmap.c: single-writer, lock-free-reader id map (idmap.h). */
#include "shard/index/idmap.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "common/hash.h"

#define EMPTY ((int64_t)-1)

typedef struct slot {
    _Atomic int64_t key; /* EMPTY or an id; set once */
    _Atomic uint64_t value;
} slot_t;

/* A one-hash filter over the ids in the map (bit set: maybe there; clear: not there), small enough to stay
 * in cache while the table is not: most lookups of a search are of ids never written (base candidates),
 * and they end here instead of at a cache-missing slot. It grows 4x when the map holds more than one id
 * per FILTER_BITS_PER_ID bits (false positives stay under 1/16); an outgrown filter is kept until the map
 * is destroyed (a reader may still hold it). */
typedef struct filter {
    size_t mask; /* bits - 1 */
    struct filter *older;
    _Atomic uint64_t words[];
} filter_t;

#define FILTER_MIN_BITS ((size_t)1 << 16)
#define FILTER_BITS_PER_ID 16

struct vs_idmap {
    slot_t *slots;
    size_t mask, capacity;
    _Atomic size_t count;
    _Atomic(filter_t *) filter;
    size_t filter_max_bits;
    _Atomic size_t filter_bytes; /* read by any thread (metrics) */
};

static filter_t *filter_new(size_t bits)
{
    filter_t *f = calloc(1, sizeof *f + bits / 64 * sizeof(uint64_t));
    if (f)
        f->mask = bits - 1;
    return f;
}

/* Not splitmix64(id)'s low bits: hash partitioning takes splitmix64(id) % P, so with P a power of two
 * every id of one partition would land on 1/P of the slots (long probes; found in review). A second
 * round on a salted id is independent of the partition hash. */
static uint64_t hash_id(int64_t id)
{
    return vs_splitmix64((uint64_t)id ^ 0x5bd1e9955bd1e995ull);
}

static size_t filter_bit(const filter_t *f, uint64_t h)
{
    return (size_t)(h >> 24) & f->mask; /* other bits than the slot's, for tables up to 2^24 slots */
}

static void filter_set(filter_t *f, uint64_t h)
{
    size_t b = filter_bit(f, h);
    atomic_fetch_or_explicit(&f->words[b / 64], 1ull << (b % 64), memory_order_release);
}

vs_status vs_idmap_create(size_t capacity, vs_idmap_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    if (capacity == 0 || capacity > ((size_t)1 << 32))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "id map capacity %zu is out of range 1..2^32", capacity);
    size_t size = 16;
    while (size < 2 * capacity)
        size <<= 1;
    vs_idmap_t *m = calloc(1, sizeof *m);
    slot_t *s = m ? malloc(size * sizeof *s) : NULL;
    if (!s) {
        free(m);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for an id map of %zu ids (%zu bytes)", capacity,
                       size * sizeof *s);
    }
    for (size_t i = 0; i < size; i++) {
        atomic_init(&s[i].key, EMPTY);
        atomic_init(&s[i].value, 0);
    }
    size_t max_bits = FILTER_MIN_BITS;
    while (max_bits < FILTER_BITS_PER_ID * capacity)
        max_bits <<= 1;
    filter_t *f = filter_new(FILTER_MIN_BITS);
    if (!f) {
        free(s);
        free(m);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for an id map's filter");
    }
    m->slots = s;
    m->mask = size - 1;
    m->capacity = capacity;
    atomic_init(&m->count, 0);
    atomic_init(&m->filter, f);
    m->filter_max_bits = max_bits;
    atomic_init(&m->filter_bytes, sizeof *f + FILTER_MIN_BITS / 8);
    *out = m;
    return VS_OK;
}

void vs_idmap_destroy(vs_idmap_t *m)
{
    if (!m)
        return;
    filter_t *f = atomic_load_explicit(&m->filter, memory_order_relaxed);
    while (f) {
        filter_t *older = f->older;
        free(f);
        f = older;
    }
    free(m->slots);
    free(m);
}

/* Before a new id is added: a filter 4x larger when the current one holds enough ids, filled from the
 * table and published (readers switch at their next lookup). Without memory the old one stays (more
 * false positives, never a wrong answer). */
static void filter_grow(vs_idmap_t *m, size_t ids_after)
{
    filter_t *cur = atomic_load_explicit(&m->filter, memory_order_relaxed);
    size_t bits = cur->mask + 1;
    if (ids_after * FILTER_BITS_PER_ID <= bits || bits >= m->filter_max_bits)
        return;
    size_t nbits = bits * 4 < m->filter_max_bits ? bits * 4 : m->filter_max_bits;
    filter_t *f = filter_new(nbits);
    if (!f)
        return;
    for (size_t i = 0; i <= m->mask; i++) {
        int64_t k = atomic_load_explicit(&m->slots[i].key, memory_order_relaxed);
        if (k != EMPTY)
            filter_set(f, hash_id(k));
    }
    f->older = cur;
    atomic_fetch_add_explicit(&m->filter_bytes, sizeof *f + nbits / 8, memory_order_relaxed);
    atomic_store_explicit(&m->filter, f, memory_order_release);
}

vs_status vs_idmap_put(vs_idmap_t *m, int64_t id, uint64_t value, char err[VS_ERR_LEN])
{
    if (id < 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "id %lld is negative", (long long)id);
    uint64_t h = hash_id(id);
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        int64_t k = atomic_load_explicit(&m->slots[i].key, memory_order_relaxed); /* only we write keys */
        if (k == id) {
            atomic_store_explicit(&m->slots[i].value, value, memory_order_release);
            return VS_OK;
        }
        if (k == EMPTY) {
            size_t n = atomic_load_explicit(&m->count, memory_order_relaxed);
            if (n >= m->capacity)
                return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "the id map is full (%zu ids)", m->capacity);
            filter_grow(m, n + 1);
            /* the filter's bit before the key: a reader past the filter finds the key or an older state */
            filter_set(atomic_load_explicit(&m->filter, memory_order_relaxed), h);
            atomic_store_explicit(&m->slots[i].value, value, memory_order_relaxed);
            atomic_store_explicit(&m->slots[i].key, id, memory_order_release);
            atomic_store_explicit(&m->count, n + 1, memory_order_relaxed);
            return VS_OK;
        }
    }
}

int vs_idmap_get(const vs_idmap_t *m, int64_t id, uint64_t *value)
{
    if (id < 0)
        return 0;
    uint64_t h = hash_id(id);
    const filter_t *f = atomic_load_explicit(&m->filter, memory_order_acquire);
    size_t b = filter_bit(f, h);
    if (!(atomic_load_explicit(&((filter_t *)f)->words[b / 64], memory_order_acquire) & (1ull << (b % 64))))
        return 0;
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        int64_t k = atomic_load_explicit(&m->slots[i].key, memory_order_acquire);
        if (k == id) {
            *value = atomic_load_explicit(&m->slots[i].value, memory_order_acquire);
            return 1;
        }
        if (k == EMPTY)
            return 0; /* the table is at most half full: every probe ends */
    }
}

size_t vs_idmap_count(const vs_idmap_t *m)
{
    return atomic_load_explicit(&m->count, memory_order_relaxed);
}

size_t vs_idmap_capacity(const vs_idmap_t *m)
{
    return m->capacity;
}

size_t vs_idmap_memory_bytes(const vs_idmap_t *m)
{
    return sizeof *m + (m->mask + 1) * sizeof(slot_t) +
           atomic_load_explicit(&((vs_idmap_t *)m)->filter_bytes, memory_order_relaxed);
}
