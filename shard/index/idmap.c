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

struct vs_idmap {
    slot_t *slots;
    size_t mask, capacity;
    _Atomic size_t count;
};

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
    m->slots = s;
    m->mask = size - 1;
    m->capacity = capacity;
    atomic_init(&m->count, 0);
    *out = m;
    return VS_OK;
}

void vs_idmap_destroy(vs_idmap_t *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

/* Not splitmix64(id)'s low bits: hash partitioning takes splitmix64(id) % P, so with P a power of two
 * every id of one partition would land on 1/P of the slots (long probes; found in review). A second
 * round on a salted id is independent of the partition hash. */
static size_t home(const vs_idmap_t *m, int64_t id)
{
    return (size_t)vs_splitmix64((uint64_t)id ^ 0x5bd1e9955bd1e995ull) & m->mask;
}

vs_status vs_idmap_put(vs_idmap_t *m, int64_t id, uint64_t value, char err[VS_ERR_LEN])
{
    if (id < 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "id %lld is negative", (long long)id);
    for (size_t i = home(m, id);; i = (i + 1) & m->mask) {
        int64_t k = atomic_load_explicit(&m->slots[i].key, memory_order_relaxed); /* only we write keys */
        if (k == id) {
            atomic_store_explicit(&m->slots[i].value, value, memory_order_release);
            return VS_OK;
        }
        if (k == EMPTY) {
            size_t n = atomic_load_explicit(&m->count, memory_order_relaxed);
            if (n >= m->capacity)
                return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "the id map is full (%zu ids)", m->capacity);
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
    for (size_t i = home(m, id);; i = (i + 1) & m->mask) {
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
    return sizeof *m + (m->mask + 1) * sizeof(slot_t);
}
