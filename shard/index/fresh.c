/* fresh.c: writes since a version was built (fresh.h; layout in fresh_internal.h). */
#include "shard/index/fresh.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/distance.h"
#include "common/topk.h"
#include "shard/index/fastscan.h"
#include "shard/index/fresh_internal.h"
#include "shard/index/hnsw.h"

/* HNSW versions: prev[node] is the map value its id had just before the node became its live copy (0:
 * not in the map), in chunks of this many nodes. */
#define VS_FRESH_PREV_CHUNK 65536u

static void init_counts(vs_fresh_t *f, size_t bytes)
{
    atomic_init(&f->records, 0);
    atomic_init(&f->live, 0);
    atomic_init(&f->deleted, 0);
    atomic_init(&f->compactions, 0);
    atomic_init(&f->epoch, 0);
    atomic_init(&f->readers[0], 0);
    atomic_init(&f->readers[1], 0);
    atomic_init(&f->active, 0);
    atomic_init(&f->nodes, 0);
    atomic_init(&f->bytes, bytes);
}

/* The base index's attribute schema, which every fresh item carries. */
static void copy_schema(vs_fresh_t *f, const vs_index_t *base)
{
    const vs_attrs_t *a = vs_index_attrs(base);
    f->n_fields = a ? vs_attrs_n_fields(a) : 0;
    if (a)
        memcpy(f->fields, vs_attrs_fields(a), f->n_fields * sizeof *f->fields);
}

/* An HNSW version's fresh state: an empty float graph with the base's M, metric and efConstruction, twice. */
static vs_status create_hnsw(const vs_index_t *base, const vs_hnsw_t *h, size_t capacity, vs_fresh_t **out,
                             char *err)
{
    vs_fresh_t *f = calloc(1, sizeof *f);
    if (!f)
        return vs_errf(err, VS_ERR_NOMEM, "no memory for the fresh state");
    f->hnsw = h;
    f->base_n = vs_index_count(base);
    copy_schema(f, base);
    vs_factory_spec_t spec = *vs_index_spec(base);
    spec.codec = VS_CODEC_FLAT; /* float vectors: exact distances, comparable with the base's results */
    uint32_t d, M, efc;
    vs_metric metric;
    vs_hnsw_info(h, &d, &M, &metric, &efc);
    f->d = d;
    vs_status st = vs_idmap_create(capacity, &f->map, err);
    f->n_prev_chunks =
        (2 * capacity + VS_FRESH_PREV_CHUNK - 1) / VS_FRESH_PREV_CHUNK; /* nodes: <= 2x capacity */
    f->prev = st == VS_OK ? calloc(f->n_prev_chunks ? f->n_prev_chunks : 1, sizeof *f->prev) : NULL;
    f->rows = st == VS_OK ? calloc(f->n_prev_chunks ? f->n_prev_chunks : 1, sizeof *f->rows) : NULL;
    if (st == VS_OK && (!f->prev || !f->rows))
        st = vs_errf(err, VS_ERR_NOMEM, "no memory for the fresh state");
    for (size_t c = 0; f->prev && f->rows && c < f->n_prev_chunks; c++) {
        atomic_init(&f->prev[c], NULL);
        atomic_init(&f->rows[c], NULL);
    }
    for (int c = 0; c < 2 && st == VS_OK; c++) {
        st = vs_hnsw_create(d, metric, &spec, &f->g[c], err);
        if (st == VS_OK)
            st = vs_hnsw_set_build(f->g[c], efc, VS_HNSW_DEFAULT_SEED, err);
    }
    if (st != VS_OK) {
        vs_hnsw_destroy(f->g[0]);
        vs_hnsw_destroy(f->g[1]);
        vs_idmap_destroy(f->map);
        free(f->prev);
        free(f->rows);
        free(f);
        return st;
    }
    init_counts(f, 0);
    *out = f;
    return VS_OK;
}

vs_status vs_fresh_create(const vs_index_t *base, size_t capacity, vs_fresh_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    const vs_ivf_t *ivf = vs_index_impl_ivf(base);
    if (ivf == NULL && vs_index_impl_hnsw(base) != NULL)
        return create_hnsw(base, vs_index_impl_hnsw(base), capacity, out, err);
    if (ivf == NULL)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "fresh writes are built for IVF and HNSW indexes (not Flat)");
    if (!ivf->trained)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "fresh writes need a trained index");
    vs_fresh_t *f = calloc(1, sizeof *f);
    if (!f)
        return vs_errf(err, VS_ERR_NOMEM, "no memory for the fresh state");
    f->ivf = ivf;
    f->d = ivf->d;
    copy_schema(f, base);
    switch (ivf->spec.codec) {
    case VS_CODEC_FLAT:
        f->code_bytes = ivf->d * sizeof(float);
        break;
    case VS_CODEC_PQ:
        f->code_bytes = ivf->spec.fastscan ? vs_fs_pairs(ivf->pq.m) : ivf->pq.m;
        break;
    default:
        free(f);
        return vs_errf(err, VS_ERR_UNSUPPORTED, "fresh writes: unknown IVF codec");
    }
    f->refine_bytes = vs_ivf_refine_bytes(ivf);
    vs_status st = vs_idmap_create(capacity, &f->map, err);
    if (st != VS_OK) {
        free(f);
        return st;
    }
    f->lists = calloc(ivf->nlist, sizeof *f->lists);
    if (!f->lists) {
        vs_idmap_destroy(f->map);
        free(f);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for the fresh state's %u lists", ivf->nlist);
    }
    for (uint32_t l = 0; l < ivf->nlist; l++)
        atomic_init(&f->lists[l], NULL);
    init_counts(f, ivf->nlist * sizeof *f->lists);
    *out = f;
    return VS_OK;
}

/* Frees a list object and its chunks (no search may hold it). */
static void free_list(vs_fresh_t *f, vs_fresh_list_t *L)
{
    for (uint32_t c = 0; c < VS_FRESH_MAX_CHUNKS; c++) {
        vs_fresh_chunk_t *ch = atomic_load_explicit(&L->chunks[c], memory_order_relaxed);
        if (!ch)
            break;
        free((void *)ch->dead); /* the block of flags, ids and codes */
        free(ch->refine);
        free(ch->blocks);
        free(ch->attrs);
        free(ch);
    }
    atomic_fetch_sub_explicit(&f->bytes, L->bytes, memory_order_relaxed);
    free(L);
}

static void free_chain(vs_fresh_t *f, vs_fresh_list_t *L)
{
    while (L) {
        vs_fresh_list_t *next = L->retired_next;
        free_list(f, L);
        L = next;
    }
}

void vs_fresh_destroy(vs_fresh_t *f)
{
    if (!f)
        return;
    vs_hnsw_destroy(f->g[0]);
    vs_hnsw_destroy(f->g[1]);
    for (size_t c = 0; c < f->n_prev_chunks; c++) {
        free(atomic_load_explicit(&f->prev[c], memory_order_relaxed));
        free(atomic_load_explicit(&f->rows[c], memory_order_relaxed));
    }
    free(f->prev);
    free(f->rows);
    for (uint32_t l = 0; f->ivf && l < f->ivf->nlist; l++) {
        vs_fresh_list_t *L = atomic_load_explicit(&f->lists[l], memory_order_relaxed);
        if (L)
            free_list(f, L);
    }
    free_chain(f, f->pending);
    free_chain(f, f->retired);
    free(f->lists);
    vs_idmap_destroy(f->map);
    free(f);
}

/* ---- reclamation (fresh_internal.h) ------------------------------------------------------------- */

unsigned vs_fresh_read_begin(const vs_fresh_t *cf)
{
    vs_fresh_t *f = (vs_fresh_t *)cf; /* the counts are the only state a search writes */
    for (;;) {
        uint64_t e = atomic_load(&f->epoch);
        atomic_fetch_add(&f->readers[e & 1], 1);
        if (atomic_load(&f->epoch) == e) /* else the writer flipped meanwhile and may not have seen us */
            return (unsigned)(e & 1);
        atomic_fetch_sub(&f->readers[e & 1], 1);
    }
}

void vs_fresh_read_end(const vs_fresh_t *cf, unsigned token)
{
    atomic_fetch_sub(&((vs_fresh_t *)cf)->readers[token & 1], 1);
}

/* Writer: frees the pending objects once no search registered before their epoch flip remains, then
 * starts the next grace period for the objects retired since. Never waits. */
static void reclaim(vs_fresh_t *f)
{
    for (int round = 0; round < 2; round++) {
        if (f->pending && atomic_load(&f->readers[f->pending_epoch & 1]) == 0) {
            free_chain(f, f->pending);
            f->pending = NULL;
        }
        if (f->pending || !f->retired)
            return;
        f->pending = f->retired;
        f->retired = NULL;
        /* searches that registered under the old epoch may hold them; later ones cannot reach them */
        f->pending_epoch = atomic_fetch_add(&f->epoch, 1);
    }
}

/* ---- writer ------------------------------------------------------------------------------------- */

/* Checks ids (>= 0) and that the distinct ids not yet in the map fit the capacity. */
static vs_status check_ids(const vs_fresh_t *f, size_t n, const int64_t *ids, size_t n_upserts, char *err)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "item %zu has negative id %lld", i,
                           (long long)ids[i]);
    int64_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return vs_errf(err, VS_ERR_NOMEM, "no memory to check %zu ids", n);
    memcpy(sorted, ids, n * sizeof *sorted);
    vs_ids_sort(sorted, n);
    size_t fresh_ids = 0;
    uint64_t v;
    for (size_t i = 0; i < n; i++)
        if ((i == 0 || sorted[i] != sorted[i - 1]) && !vs_idmap_get(f->map, sorted[i], &v))
            fresh_ids++;
    free(sorted);
    size_t have = vs_idmap_count(f->map), cap = vs_idmap_capacity(f->map);
    if (have + fresh_ids > cap)
        return vs_errf(
            err, VS_ERR_RESOURCE_EXHAUSTED,
            "fresh capacity reached: %zu of %zu ids written since the version was built, this write "
            "adds %zu; the next version must fold them in",
            have, cap, fresh_ids);
    size_t nodes = atomic_load_explicit(&f->nodes, memory_order_relaxed);
    if (f->hnsw && n_upserts && nodes + n_upserts > 2 * cap)
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED,
                       "fresh graph full: %zu upserted copies kept (an HNSW version keeps superseded copies "
                       "until the next version), at most twice the capacity of %zu; the next version must "
                       "fold them in",
                       nodes, cap);
    return VS_OK;
}

/* Points id at its new state (ref: record + 1, or 0 for deleted) and keeps the counts. Cannot fail:
 * check_ids made room. Returns the list whose record died (UINT32_MAX: none). */
static uint64_t *prev_at(const vs_fresh_t *f, size_t node);

static uint32_t set_state(vs_fresh_t *f, int64_t id, uint64_t ref)
{
    uint64_t old = 0;
    int had = vs_idmap_get(f->map, id, &old);
    uint64_t old_ref = had ? old & ~VS_FRESH_BASE_DEAD : 0;
    if (had && (old & ~VS_FRESH_BASE_DEAD))
        atomic_fetch_sub_explicit(&f->live, 1, memory_order_relaxed);
    if (had && !(old & ~VS_FRESH_BASE_DEAD))
        atomic_fetch_sub_explicit(&f->deleted, 1, memory_order_relaxed);
    if (ref)
        atomic_fetch_add_explicit(&f->live, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&f->deleted, 1, memory_order_relaxed);
    char err[VS_ERR_LEN];
    if (f->hnsw && ref) /* before the map points at the node: a search on the other copy follows it */
        *prev_at(f, (size_t)(ref - 1)) = had ? old : 0;
    (void)vs_idmap_put(f->map, id, VS_FRESH_BASE_DEAD | ref, err);
    if (old_ref && old_ref != ref && f->ivf) { /* the old copy is dead once the map points elsewhere */
        uint32_t l = (uint32_t)((old_ref - 1) >> 32);
        vs_fresh_list_t *L = atomic_load_explicit(&f->lists[l], memory_order_relaxed);
        size_t pos = (size_t)((old_ref - 1) & 0xffffffffu) - L->first,
               off; /* the map names current objects */
        vs_fresh_chunk_t *ch =
            atomic_load_explicit(&L->chunks[vs_fresh_chunk_of(pos, &off)], memory_order_relaxed);
        atomic_store_explicit(&ch->dead[off], 1, memory_order_release);
        L->dead++;
        return l;
    }
    return UINT32_MAX;
}

/* Makes sure list object L can take `more` records after its current ones (chunks allocated; the
 * published count is not touched). l: its list, for the error. */
static vs_status reserve_in(vs_fresh_t *f, vs_fresh_list_t *L, uint32_t l, size_t more, char *err)
{
    size_t n = atomic_load_explicit(&L->n, memory_order_relaxed);
    if (more == 0)
        return VS_OK;
    size_t off;
    uint32_t last = vs_fresh_chunk_of(n + more - 1, &off);
    if (last >= VS_FRESH_MAX_CHUNKS || L->first + n + more > 0xffffffffu)
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "fresh list %u is full", l);
    for (uint32_t c = 0; c <= last; c++) {
        if (atomic_load_explicit(&L->chunks[c], memory_order_relaxed))
            continue;
        size_t cap = vs_fresh_chunk_cap(c);
        vs_fresh_chunk_t *ch = calloc(1, sizeof *ch);
        /* what every scanned record touches in one block, in scan order (dead flags, ids, codes), so a
         * list's few fresh records are a few sequential cache lines; refine copies (read only for the
         * candidates) apart. cap is a multiple of 16: the ids stay aligned. */
        uint8_t *block = ch ? calloc(1, cap * (1 + sizeof(int64_t) + f->code_bytes)) : NULL;
        const int packs = f->ivf->spec.fastscan && cap % VS_FS_BLOCK == 0;
        const size_t pack_bytes = packs ? vs_fs_code_bytes(cap, f->ivf->pq.m) : 0;
        if (ch && block) {
            ch->dead = (_Atomic uint8_t *)block;
            ch->ids = (int64_t *)(block + cap);
            ch->codes = block + cap * (1 + sizeof(int64_t));
            ch->refine = f->refine_bytes ? malloc(cap * f->refine_bytes) : NULL;
            ch->attrs = f->n_fields ? malloc(cap * f->n_fields * sizeof(int64_t)) : NULL;
            ch->blocks = packs ? aligned_alloc(64, (pack_bytes + 63) / 64 * 64) : NULL;
            if (ch->blocks)
                memset(ch->blocks, 0, pack_bytes);
            atomic_init(&ch->packed, 0);
        }
        if (!ch || !block || (f->refine_bytes && !ch->refine) || (packs && !ch->blocks) ||
            (f->n_fields && !ch->attrs)) {
            if (ch) {
                free(ch->refine);
                free(ch->blocks);
                free(ch->attrs);
            }
            free(block);
            free(ch);
            return vs_errf(err, VS_ERR_NOMEM, "no memory for %zu fresh records", cap);
        }
        size_t bytes =
            cap * (sizeof(int64_t) + 1 + f->code_bytes + f->refine_bytes + f->n_fields * sizeof(int64_t)) +
            pack_bytes;
        L->bytes += bytes;
        atomic_fetch_add_explicit(&f->bytes, bytes, memory_order_relaxed);
        atomic_store_explicit(&L->chunks[c], ch, memory_order_release);
    }
    return VS_OK;
}

static vs_fresh_list_t *new_list(vs_fresh_t *f)
{
    vs_fresh_list_t *L = calloc(1, sizeof *L);
    if (!L)
        return NULL;
    atomic_init(&L->n, 0);
    atomic_init(&L->end, SIZE_MAX);
    for (uint32_t c = 0; c < VS_FRESH_MAX_CHUNKS; c++)
        atomic_init(&L->chunks[c], NULL);
    L->bytes = sizeof *L;
    atomic_fetch_add_explicit(&f->bytes, sizeof *L, memory_order_relaxed);
    return L;
}

/* Writer: packs the complete 32-record blocks among list object L's first n records (written, maybe not
 * yet published) into their chunks' block layout and publishes each chunk's packed count. */
static void pack_blocks(const vs_fresh_t *f, vs_fresh_list_t *L, size_t n)
{
    const uint32_t m = f->ivf->pq.m;
    uint8_t codes[VS_FS_MAX_M];
    for (uint32_t c = 1; c < VS_FRESH_MAX_CHUNKS; c++) {
        const size_t start = (size_t)VS_FRESH_CHUNK0 * (((size_t)1 << c) - 1), cap = vs_fresh_chunk_cap(c);
        if (start >= n)
            break;
        vs_fresh_chunk_t *ch = atomic_load_explicit(&L->chunks[c], memory_order_relaxed);
        if (!ch || !ch->blocks)
            continue;
        size_t have = n - start < cap ? n - start : cap,
               done = atomic_load_explicit(&ch->packed, memory_order_relaxed);
        size_t full = have / VS_FS_BLOCK * VS_FS_BLOCK;
        if (full <= done)
            continue;
        for (size_t off = done; off < full; off++) {
            const uint8_t *row = ch->codes + off * f->code_bytes;
            for (uint32_t j = 0; j < m; j++)
                codes[j] = (uint8_t)((row[j / 2] >> ((j & 1) * 4)) & 15);
            vs_fs_put(ch->blocks, m, off, codes);
        }
        atomic_store_explicit(&ch->packed, full, memory_order_release);
    }
}

/* Writer: when half of list l's records (and at least VS_FRESH_COMPACT_MIN) are dead, replaces its
 * object with one holding the live records only (fresh_internal.h). Out of memory: the list stays as it
 * is (compaction saves scan time and memory; nothing depends on it). */
static void maybe_compact(vs_fresh_t *f, uint32_t l)
{
    vs_fresh_list_t *L = atomic_load_explicit(&f->lists[l], memory_order_relaxed);
    size_t n = atomic_load_explicit(&L->n, memory_order_relaxed);
    if (L->dead < VS_FRESH_COMPACT_MIN || 2 * L->dead < n)
        return;
    const size_t live = n - L->dead;
    char err[VS_ERR_LEN];
    vs_fresh_list_t *N = new_list(f);
    if (!N)
        return;
    if (reserve_in(f, N, l, live, err) != VS_OK) {
        free_list(f, N);
        return;
    }
    size_t w = 0;
    for (size_t pos = 0; pos < n; pos++) {
        size_t off, woff;
        const vs_fresh_chunk_t *ch =
            atomic_load_explicit(&L->chunks[vs_fresh_chunk_of(pos, &off)], memory_order_relaxed);
        if (atomic_load_explicit(&ch->dead[off], memory_order_relaxed))
            continue;
        vs_fresh_chunk_t *wc =
            atomic_load_explicit(&N->chunks[vs_fresh_chunk_of(w, &woff)], memory_order_relaxed);
        wc->ids[woff] = ch->ids[off];
        memcpy(wc->codes + woff * f->code_bytes, ch->codes + off * f->code_bytes, f->code_bytes);
        if (f->refine_bytes)
            memcpy(wc->refine + woff * f->refine_bytes, ch->refine + off * f->refine_bytes, f->refine_bytes);
        if (f->n_fields)
            memcpy(wc->attrs + woff * f->n_fields, ch->attrs + off * f->n_fields,
                   f->n_fields * sizeof(int64_t));
        w++;
    }
    /* publish the copy, then repoint its ids (searches decide liveness without positions) */
    if (f->ivf->spec.fastscan)
        pack_blocks(f, N, w);
    N->first = L->first + n; /* numbers go on: a record of N is never taken for one of L */
    atomic_store_explicit(&N->n, w, memory_order_release);
    atomic_store_explicit(&L->end, L->first + n, memory_order_release); /* before any id names N */
    atomic_store_explicit(&f->lists[l], N, memory_order_release);
    for (size_t i = 0; i < w; i++) {
        size_t off;
        const vs_fresh_chunk_t *ch =
            atomic_load_explicit(&N->chunks[vs_fresh_chunk_of(i, &off)], memory_order_relaxed);
        (void)vs_idmap_put(f->map, ch->ids[off],
                           VS_FRESH_BASE_DEAD | ((((uint64_t)l << 32) | (N->first + i)) + 1), err);
    }
    atomic_fetch_sub_explicit(&f->records, n - w, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->compactions, 1, memory_order_relaxed);
    L->retired_next = f->retired;
    f->retired = L;
    reclaim(f);
}

/* Makes sure list l can take `more` records after its current ones (its object created and published
 * if it had none). */
static vs_status reserve(vs_fresh_t *f, uint32_t l, size_t more, char *err)
{
    vs_fresh_list_t *L = atomic_load_explicit(&f->lists[l], memory_order_relaxed);
    if (!L) {
        L = new_list(f);
        if (!L)
            return vs_errf(err, VS_ERR_NOMEM, "no memory for a fresh list");
        atomic_store_explicit(&f->lists[l], L, memory_order_release);
    }
    return reserve_in(f, L, l, more, err);
}

/* The code of one (normalised, for cosine) vector x in list l, in the fresh record format. pq: m bytes of
 * 8/4-bit codes from vs_pq_encode. */
static void put_code(const vs_fresh_t *f, const float *x, const uint8_t *pq, uint8_t *dst)
{
    const vs_ivf_t *ivf = f->ivf;
    if (ivf->spec.codec == VS_CODEC_FLAT) {
        memcpy(dst, x, ivf->d * sizeof(float));
    } else if (ivf->spec.fastscan) {
        memset(dst, 0, f->code_bytes);
        for (uint32_t j = 0; j < ivf->pq.m; j++)
            dst[j / 2] |= (uint8_t)((pq[j] & 15) << ((j & 1) * 4));
    } else {
        memcpy(dst, pq, ivf->pq.m);
    }
}

/* Points ids[n] at refs[n] (NULL: deleted), then compacts the lists whose records died (after the
 * loop: compaction moves records, and refs name positions). */
static void settle(vs_fresh_t *f, size_t n, const int64_t *ids, const uint64_t *refs)
{
    uint32_t *died = malloc((n ? n : 1) * sizeof *died); /* NULL: no compaction this time */
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = set_state(f, ids[i], refs ? refs[i] : 0);
        if (l != UINT32_MAX && died)
            died[nd++] = l;
    }
    for (size_t j = 0; j < nd; j++)
        maybe_compact(f, died[j]); /* a no-op for a list already compacted */
    free(died);
    if (f->ivf)
        reclaim(f);
}

/* ---- HNSW versions ------------------------------------------------------------------------------ */

/* Writer: brings the copy searches do not use up to the other (the nodes it lacks, from the other's own
 * vectors and ids, in one append: the copies then grow by the same batches and stay identical). */
static vs_status sync_back(vs_fresh_t *f, char *err)
{
    int a = atomic_load_explicit(&f->active, memory_order_relaxed);
    vs_hnsw_t *front = f->g[a], *back = f->g[1 - a];
    size_t have = vs_hnsw_count(back), want = vs_hnsw_count(front);
    if (have >= want)
        return VS_OK;
    size_t n = want - have;
    float *x = malloc(n * f->d * sizeof *x);
    int64_t *ids = malloc(n * sizeof *ids);
    vs_status st = x && ids ? VS_OK : vs_errf(err, VS_ERR_NOMEM, "no memory to copy %zu fresh nodes", n);
    for (size_t i = 0; i < n && st == VS_OK; i++) {
        ids[i] = vs_hnsw_node_id(front, (uint32_t)(have + i));
        memcpy(x + i * f->d, vs_hnsw_node_vector(front, (uint32_t)(have + i)), f->d * sizeof *x);
    }
    if (st == VS_OK)
        st = vs_hnsw_append(back, n, x, ids, err);
    free(x);
    free(ids);
    return st;
}

/* Writer: until no search that may have seen the copy searches used before the swap remains. */
static void wait_readers(vs_fresh_t *f)
{
    uint64_t e = atomic_fetch_add(&f->epoch, 1);
    while (atomic_load(&f->readers[e & 1]) != 0)
        sched_yield();
}

/* prev (fresh_internal.h), allocated by the writer before use, never moved. */

static vs_status prev_reserve(vs_fresh_t *f, size_t nodes, char *err)
{
    for (size_t c = 0; c * VS_FRESH_PREV_CHUNK < nodes; c++) {
        if (c >= f->n_prev_chunks)
            return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "fresh graph full (%zu nodes)", nodes);
        if (f->n_fields && !atomic_load_explicit(&f->rows[c], memory_order_relaxed)) {
            int64_t *r = malloc((size_t)VS_FRESH_PREV_CHUNK * f->n_fields * sizeof *r);
            if (!r)
                return vs_errf(err, VS_ERR_NOMEM, "no memory for fresh attribute rows");
            atomic_fetch_add_explicit(&f->bytes, (size_t)VS_FRESH_PREV_CHUNK * f->n_fields * sizeof *r,
                                      memory_order_relaxed);
            atomic_store_explicit(&f->rows[c], r, memory_order_release);
        }
        if (atomic_load_explicit(&f->prev[c], memory_order_relaxed))
            continue;
        uint64_t *p = calloc(VS_FRESH_PREV_CHUNK, sizeof *p);
        if (!p)
            return vs_errf(err, VS_ERR_NOMEM, "no memory for fresh graph bookkeeping");
        atomic_fetch_add_explicit(&f->bytes, VS_FRESH_PREV_CHUNK * sizeof *p, memory_order_relaxed);
        atomic_store_explicit(&f->prev[c], p, memory_order_release);
    }
    return VS_OK;
}

/* Node's attribute row (n_fields > 0). */
static int64_t *row_at(const vs_fresh_t *f, size_t node)
{
    int64_t *r =
        atomic_load_explicit(&((vs_fresh_t *)f)->rows[node / VS_FRESH_PREV_CHUNK], memory_order_acquire);
    return r + (node % VS_FRESH_PREV_CHUNK) * f->n_fields;
}

static uint64_t *prev_at(const vs_fresh_t *f, size_t node)
{
    uint64_t *p =
        atomic_load_explicit(&((vs_fresh_t *)f)->prev[node / VS_FRESH_PREV_CHUNK], memory_order_acquire);
    return p + node % VS_FRESH_PREV_CHUNK;
}

/* Writes the attribute row of n items (rows NULL: missing values) to dst[i * n_fields]. */
static void put_row(const vs_fresh_t *f, const int64_t *rows, size_t i, int64_t *dst)
{
    if (rows)
        memcpy(dst, rows + i * f->n_fields, f->n_fields * sizeof *dst);
    else
        vs_attrs_null_row(f->fields, f->n_fields, dst);
}

static vs_status upsert_hnsw(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x, const int64_t *rows,
                             char *err)
{
    vs_status st = sync_back(f, err); /* a copy left behind by an earlier out-of-memory */
    int a = atomic_load_explicit(&f->active, memory_order_relaxed);
    vs_hnsw_t *back = f->g[1 - a];
    size_t first = vs_hnsw_count(back);
    uint64_t *refs = malloc(n * sizeof *refs);
    if (st == VS_OK && !refs)
        st = vs_errf(err, VS_ERR_NOMEM, "no memory to apply %zu fresh vectors", n);
    if (st == VS_OK)
        st = prev_reserve(f, first + n, err);
    if (st == VS_OK)
        st = vs_hnsw_append(back, n, x, ids, err);
    if (st != VS_OK) {
        free(refs);
        return st; /* searches still use the other copy, and the map is unchanged */
    }
    for (size_t i = 0; f->n_fields && i < n; i++) /* before the nodes are live: searches check them */
        put_row(f, rows, i, row_at(f, first + i));
    for (size_t i = 0; i < n; i++)
        refs[i] = first + i + 1;
    atomic_store_explicit(&f->active, 1 - a, memory_order_release);
    atomic_store_explicit(&f->nodes, first + n, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->records, n, memory_order_relaxed);
    settle(f, n, ids, refs); /* the new nodes are live, the copies they replace are not (set_state
                              * records each id's previous value in prev first) */
    free(refs);
    wait_readers(f);
    char e2[VS_ERR_LEN];
    (void)sync_back(f, e2); /* on failure the next write retries; searches use the complete copy */
    return VS_OK;
}

/* A search of an HNSW version: the graph copy it uses and that copy's nodes. A map value pointing at a
 * node the copy lacks was written after the copy was swapped out; the search then sees the id as it was
 * before (following prev), so a replaced id is found in its old place, never in neither. */
typedef struct hnsw_view {
    const vs_fresh_t *f;
    size_t nodes;
    const vs_filter_t *filter; /* the request's filter, checked on fresh nodes' rows (NULL: none) */
} hnsw_view_t;

static int view_get(const hnsw_view_t *w, int64_t id, uint64_t *v)
{
    if (!vs_idmap_get(w->f->map, id, v))
        return 0;
    for (int hops = 0; hops < 1 << 20; hops++) {
        uint64_t ref = *v & ~VS_FRESH_BASE_DEAD;
        if (ref == 0 || ref - 1 < w->nodes)
            break;
        *v = *prev_at(w->f, (size_t)(ref - 1));
    }
    return *v != 0;
}

/* Search filters: a base item is skipped once its id was written; a fresh node unless it is its id's
 * live copy. */
static int skip_base(const void *arg, int64_t id, uint32_t node)
{
    (void)node;
    uint64_t v;
    return view_get(arg, id, &v) && (v & VS_FRESH_BASE_DEAD);
}

static int skip_fresh(const void *arg, int64_t id, uint32_t node)
{
    const hnsw_view_t *w = arg;
    uint64_t v;
    if (vs_filter_active(w->filter) &&
        !vs_filter_match_row(w->filter, w->f->n_fields ? row_at(w->f, node) : NULL))
        return 1;
    return !view_get(arg, id, &v) || (v & ~VS_FRESH_BASE_DEAD) != (uint64_t)node + 1;
}

/* 1 / (share of live nodes), at most 10: efSearch scaled so that skipped nodes do not crowd out results. */
static float ef_scale(size_t all, size_t dead)
{
    if (all == 0 || dead == 0)
        return 1.0f;
    double live = (double)(all > dead ? all - dead : 0) / (double)all;
    return live < 0.1 ? 10.0f : (float)(1.0 / live);
}

static vs_status search_hnsw(const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                             const vs_search_params_t *params, size_t n_threads, float *out_dist,
                             int64_t *out_ids, char *err)
{
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%u", k, VS_TOPK_MAX_K);
    if (params->nprobe || params->quantizer_ef_search)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "nprobe and quantizer_efSearch apply to IVF indexes only");
    uint32_t d, M, efc;
    vs_metric metric;
    vs_hnsw_info(f->hnsw, &d, &M, &metric, &efc);
    vs_status st = vs_check_finite(q, nq, d, "query", err);
    if (st != VS_OK || nq == 0)
        return st;
    float *fd = malloc(nq * k * sizeof *fd), *md = malloc(k * sizeof *md);
    int64_t *fi = malloc(nq * k * sizeof *fi), *mi = malloc(k * sizeof *mi);
    if (!fd || !fi || !md || !mi) {
        st = vs_errf(err, VS_ERR_NOMEM, "no memory to merge fresh results");
        goto done;
    }
    /* registered for both searches: the copy and its node count fix what this search sees */
    unsigned token = vs_fresh_read_begin(f);
    const vs_hnsw_t *g = f->g[atomic_load_explicit(&((vs_fresh_t *)f)->active, memory_order_acquire)];
    const hnsw_view_t view = {f, vs_hnsw_count(g), params->filter};
    const size_t ids = vs_idmap_count(f->map), nodes = view.nodes;
    /* the base: every id in the map hides its base copy (ids never in the base count too: a bound) */
    st = vs_hnsw_search_filtered(f->hnsw, nq, q, k, params, n_threads, ids ? skip_base : NULL, &view,
                                 ef_scale(f->base_n, ids < f->base_n ? ids : f->base_n), 0, out_dist, out_ids,
                                 err);
    if (st == VS_OK && nodes) {
        vs_search_params_t fp = *params;
        fp.k_factor = 0;     /* the fresh graph holds float vectors: no re-rank */
        fp.filter = NULL;    /* its nodes' rows are checked by skip_fresh */
        fp.filter_exact = 0; /* small: traversed, with the pool scaled by the base's selectivity */
        size_t live = atomic_load_explicit(&f->live, memory_order_relaxed);
        float fscale = ef_scale(nodes, nodes > live ? nodes - live : 0);
        if (vs_filter_active(params->filter)) /* the share of fresh nodes matching: the base's */
            fscale *= vs_hnsw_filter_ef_scale(params->filter);
        st = vs_hnsw_search_filtered(g, nq, q, k, &fp, n_threads, skip_fresh, &view, fscale, 1, fd, fi, err);
        for (size_t qi = 0; qi < nq && st == VS_OK; qi++) {
            vs_topk_list_t two[2] = {{out_dist + qi * k, out_ids + qi * k, k}, {fd + qi * k, fi + qi * k, k}};
            st = vs_topk_merge(two, 2, metric != VS_METRIC_L2, k, md, mi, err);
            if (st == VS_OK) {
                memcpy(out_dist + qi * k, md, k * sizeof *md);
                memcpy(out_ids + qi * k, mi, k * sizeof *mi);
            }
        }
    }
    vs_fresh_read_end(f, token);
done:
    free(fd);
    free(fi);
    free(md);
    free(mi);
    return st;
}

vs_status vs_fresh_upsert(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x, char err[VS_ERR_LEN])
{
    return vs_fresh_upsert_lists(f, n, ids, x, NULL, err);
}

vs_status vs_fresh_upsert_lists(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x,
                                const int32_t *lists, char err[VS_ERR_LEN])
{
    return vs_fresh_upsert_attrs(f, n, ids, x, lists, NULL, err);
}

const vs_attr_field_t *vs_fresh_fields(const vs_fresh_t *f, size_t *n)
{
    *n = f->n_fields;
    return f->fields;
}

vs_status vs_fresh_upsert_attrs(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x,
                                const int32_t *lists, const int64_t *rows, char err[VS_ERR_LEN])
{
    const vs_ivf_t *ivf = f->ivf;
    const uint32_t d = f->d;
    if (n == 0)
        return VS_OK;
    if (lists && !ivf)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "lists apply to IVF versions only");
    vs_status st = vs_check_finite(x, n, d, "vector", err);
    if (st == VS_OK)
        st = check_ids(f, n, ids, n, err);
    if (st != VS_OK)
        return st;
    if (f->hnsw)
        return upsert_hnsw(f, n, ids, x, rows, err);
    int32_t *lab = malloc(n * sizeof *lab);
    float *xn = malloc(n * d * sizeof *xn);
    float *resid = ivf->spec.codec == VS_CODEC_PQ ? malloc(n * d * sizeof *resid) : NULL;
    uint8_t *pq = ivf->spec.codec == VS_CODEC_PQ ? malloc(n * ivf->pq.m) : NULL;
    size_t *cnt = calloc(ivf->nlist, sizeof *cnt);
    uint64_t *refs = malloc(n * sizeof *refs);
    if (!lab || !xn || !cnt || !refs || (ivf->spec.codec == VS_CODEC_PQ && (!resid || !pq))) {
        st = vs_errf(err, VS_ERR_NOMEM, "no memory to encode %zu fresh vectors", n);
        goto done;
    }
    /* the list and code each vector would get from add (same assignment, same encoder) */
    if (lists) {
        for (size_t i = 0; i < n && st == VS_OK; i++)
            if (lists[i] < 0 || (uint32_t)lists[i] >= ivf->nlist)
                st = vs_errf(err, VS_ERR_OUT_OF_RANGE, "vector %zu: list %d is out of range 0..%u", i,
                             lists[i], ivf->nlist - 1);
        if (st == VS_OK)
            memcpy(lab, lists, n * sizeof *lab);
    } else {
        st = vs_ivf_assign(ivf, n, x, 1, 1, lab, err); /* exact: a write's one vector, no groups to make */
    }
    if (st != VS_OK)
        goto done;
    memcpy(xn, x, n * d * sizeof *xn);
    if (ivf->metric == VS_METRIC_COSINE)
        vs_normalize_rows(xn, n, d);
    if (ivf->spec.codec == VS_CODEC_PQ) {
        for (size_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < d; j++)
                resid[i * d + j] = xn[i * d + j] - ivf->centroids[(size_t)lab[i] * d + j];
        st = vs_pq_encode(&ivf->pq, resid, n, pq, 1, err);
        if (st != VS_OK)
            goto done;
    }
    for (size_t i = 0; i < n; i++)
        cnt[lab[i]]++;
    for (uint32_t l = 0; l < ivf->nlist && st == VS_OK; l++)
        if (cnt[l])
            st = reserve(f, l, cnt[l], err);
    if (st != VS_OK)
        goto done;
    /* write every record past the published counts, then publish, then point the ids at them: a
     * reader sees a record only once complete, and an id's new copy only once its record is visible */
    for (uint32_t l = 0; l < ivf->nlist; l++)
        cnt[l] = 0; /* now: records written into list l by this call */
    for (size_t i = 0; i < n; i++) {
        uint32_t l = (uint32_t)lab[i];
        vs_fresh_list_t *L = atomic_load_explicit(&f->lists[l], memory_order_relaxed);
        size_t pos = atomic_load_explicit(&L->n, memory_order_relaxed) + cnt[l]++;
        size_t off;
        uint32_t c = vs_fresh_chunk_of(pos, &off);
        vs_fresh_chunk_t *ch = atomic_load_explicit(&L->chunks[c], memory_order_relaxed);
        ch->ids[off] = ids[i];
        put_code(f, xn + i * d, pq ? pq + i * ivf->pq.m : NULL, ch->codes + off * f->code_bytes);
        if (ivf->spec.refine == VS_REFINE_FLAT)
            memcpy(ch->refine + off * f->refine_bytes, xn + i * d, d * sizeof(float));
        else if (ivf->spec.refine == VS_REFINE_SQ8)
            vs_sq8_encode(&ivf->sq8, xn + i * d, ch->refine + off * f->refine_bytes);
        if (f->n_fields)
            put_row(f, rows, i, ch->attrs + off * f->n_fields);
        refs[i] = (((uint64_t)l << 32) | (L->first + pos)) + 1;
    }
    for (uint32_t l = 0; l < ivf->nlist; l++)
        if (cnt[l]) {
            vs_fresh_list_t *L = atomic_load_explicit(&f->lists[l], memory_order_relaxed);
            if (ivf->spec.fastscan)
                pack_blocks(f, L, atomic_load_explicit(&L->n, memory_order_relaxed) + cnt[l]);
            atomic_store_explicit(&L->n, atomic_load_explicit(&L->n, memory_order_relaxed) + cnt[l],
                                  memory_order_release);
        }
    atomic_fetch_add_explicit(&f->records, n, memory_order_relaxed);
    settle(f, n, ids, refs);
done:
    free(refs);
    free(lab);
    free(xn);
    free(resid);
    free(pq);
    free(cnt);
    return st;
}

vs_status vs_fresh_check_room(const vs_fresh_t *f, size_t n, const int64_t *ids, size_t n_upserts,
                              char err[VS_ERR_LEN])
{
    return check_ids(f, n, ids, n_upserts, err);
}

vs_status vs_fresh_delete(vs_fresh_t *f, size_t n, const int64_t *ids, char err[VS_ERR_LEN])
{
    vs_status st = check_ids(f, n, ids, 0, err);
    if (st != VS_OK)
        return st;
    settle(f, n, ids, NULL);
    return VS_OK;
}

vs_status vs_fresh_assign(const vs_fresh_t *f, size_t n, const float *x, int32_t *out_lists,
                          char err[VS_ERR_LEN])
{
    if (!f->ivf)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "lists apply to IVF versions only");
    return vs_ivf_assign(f->ivf, n, x, 1, 1, out_lists, err);
}

/* ---- readers ------------------------------------------------------------------------------------ */

vs_status vs_fresh_search(const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                          const vs_search_params_t *params, size_t n_threads, float *out_dist,
                          int64_t *out_ids, char err[VS_ERR_LEN])
{
    vs_search_params_t none = {0};
    if (!params)
        params = &none;
    if (f->hnsw)
        return search_hnsw(f, nq, q, k, params, n_threads, out_dist, out_ids, err);
    if (params->ef_search)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "efSearch applies to HNSW indexes only");
    if (params->k_factor != 0 && f->ivf->spec.refine == VS_REFINE_NONE)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor applies to indexes with a refine stage only");
    unsigned token = vs_fresh_read_begin(f);
    vs_status st = vs_ivf_search_fresh(f->ivf, f, nq, q, k, params->nprobe, params->quantizer_ef_search, NULL,
                                       params->k_factor, params, n_threads, out_dist, out_ids, err);
    vs_fresh_read_end(f, token);
    return st;
}

vs_status vs_fresh_search_lists(const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                                const int32_t *lists, uint32_t n_lists, float k_factor,
                                const vs_search_params_t *sel, size_t n_threads, float *out_dist,
                                int64_t *out_ids, char err[VS_ERR_LEN])
{
    if (!f->ivf)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "searching given lists applies to IVF versions only");
    unsigned token = vs_fresh_read_begin(f);
    vs_status st = vs_ivf_search_fresh(f->ivf, f, nq, q, k, n_lists, 0, lists, k_factor, sel, n_threads,
                                       out_dist, out_ids, err);
    vs_fresh_read_end(f, token);
    return st;
}

vs_status vs_fresh_group_values(const vs_fresh_t *f, const vs_index_t *base, size_t field, size_t n,
                                const int64_t *ids, int64_t *out, char err[VS_ERR_LEN])
{
    vs_status st = vs_index_group_values(base, field, n, ids, out, err);
    if (st != VS_OK || f->n_fields == 0)
        return st;
    unsigned token = vs_fresh_read_begin(f);
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        if (ids[i] < 0 || !vs_idmap_get(f->map, ids[i], &v))
            continue; /* the base's value stands */
        const uint64_t ref = v & ~VS_FRESH_BASE_DEAD;
        out[i] = VS_ATTR_NULL_INT;
        if (ref == 0)
            continue; /* deleted */
        if (f->hnsw) {
            out[i] = row_at(f, (size_t)(ref - 1))[field];
            continue;
        }
        const uint32_t l = (uint32_t)((ref - 1) >> 32);
        const size_t num = (size_t)((ref - 1) & 0xffffffffu);
        const vs_fresh_list_t *L;
        size_t nrec = vs_fresh_list_n(f, l, &L);
        if (L && num >= L->first && num - L->first < nrec)
            out[i] = vs_fresh_record_attrs(f, L, num - L->first)[field];
    }
    vs_fresh_read_end(f, token);
    return VS_OK;
}

void vs_fresh_stats(const vs_fresh_t *f, vs_fresh_stats_t *out)
{
    out->ids = vs_idmap_count(f->map);
    out->capacity = vs_idmap_capacity(f->map);
    out->records = atomic_load_explicit(&f->records, memory_order_relaxed);
    out->live = atomic_load_explicit(&f->live, memory_order_relaxed);
    out->deleted = atomic_load_explicit(&f->deleted, memory_order_relaxed);
    out->compactions = atomic_load_explicit(&f->compactions, memory_order_relaxed);
    out->memory_bytes = atomic_load_explicit(&f->bytes, memory_order_relaxed) + vs_idmap_memory_bytes(f->map);
    out->used = out->ids;
    if (f->hnsw) { /* superseded copies stay in the graph: half of its node room counts */
        size_t nodes = atomic_load_explicit(&f->nodes, memory_order_relaxed);
        if ((nodes + 1) / 2 > out->used)
            out->used = (nodes + 1) / 2;
        uint32_t d, M, efc;
        vs_metric metric;
        vs_hnsw_info(f->hnsw, &d, &M, &metric, &efc);
        /* per node and copy: vector, layer-0 links, id, level index (upper layers ~1/M of that) */
        out->memory_bytes += 2 * nodes * ((size_t)d * 4 + (2 * (size_t)M + 1) * 4 + 12);
    }
}
