/* fuzz_shard_request: the shard's request decoder and validation (vs_shard_search_pb, vs_shard_info_pb)
 * on arbitrary bytes. Built two ways:
 *  - with clang -fsanitize=fuzzer (VS_FUZZ=ON): a libFuzzer target; tests/run.sh runs it for a bounded
 *    time from the seeds below;
 *  - otherwise: a driver (label fuzz, also under ASan) that runs the seeds and a fixed number of
 *    deterministic mutations of them (bit flips, truncations, splices, length-field bumps), and with
 *    --write-seeds DIR writes the seeds as a libFuzzer corpus.
 * Any crash, leak or sanitizer report fails the run; every input must get VS_OK or an error status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard/server/shard.h"
#include "tests/fuzz/mutate.h"
#include "vecshard/v1/shard.pb-c.h"

#define D 8
#define N 300

static vs_shard_t *shard;

static void setup(void)
{
    if (shard)
        return;
    char err[VS_ERR_LEN];
    vs_shard_opts_t o = {.replica_id = "fuzz", .max_batch = 64};
    if (vs_shard_create(&o, &shard, err) != VS_OK)
        abort();
    static float x[N * D];
    uint64_t s = 1;
    for (size_t i = 0; i < N * D; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) % 1000) / 1000.0f;
    }
    const char *factories[] = {"IVF4,Flat", "IVF4,PQ4x4fs,RFlat"};
    const char *names[] = {"v1", "v2"};
    for (int i = 0; i < 2; i++) {
        vs_index_t *idx;
        if (vs_index_create(D, i ? VS_METRIC_IP : VS_METRIC_L2, factories[i], &idx, err) != VS_OK ||
            vs_index_train(idx, N, x, 1, NULL, err) != VS_OK ||
            vs_index_add(idx, N, x, NULL, 1, NULL, err) != VS_OK ||
            vs_shard_add_index(shard, names[i], 0, idx, err) != VS_OK) {
            fprintf(stderr, "fuzz setup: %s\n", err);
            abort();
        }
    }
    if (vs_shard_activate(shard, "v1", err) != VS_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    char err[VS_ERR_LEN];
    uint8_t *out = NULL;
    size_t len = 0;
    vs_status st = vs_shard_search_pb(shard, data, size, &out, &len, err);
    if (st == VS_OK) {
        /* a response we produced must decode */
        Vecshard__V1__ShardSearchResponse *r = vecshard__v1__shard_search_response__unpack(NULL, len, out);
        if (!r || r->n_ids != (size_t)r->nq * r->k)
            abort();
        vecshard__v1__shard_search_response__free_unpacked(r, NULL);
    } else if (!err[0]) {
        abort(); /* every refusal says why */
    }
    free(out);
    out = NULL;
    if (vs_shard_info_pb(shard, data, size, &out, &len, err) == VS_OK)
        free(out);
    return 0;
}

#ifndef VS_LIBFUZZER
/* Valid requests that reach every branch of validation: the starting points for mutation. */
static size_t make_seeds(uint8_t **seeds, size_t *lens, size_t cap)
{
    float q[3 * D];
    for (size_t i = 0; i < 3 * D; i++)
        q[i] = (float)i / 10.0f;
    int32_t lists[6] = {0, 1, 2, 3, -1, 1};
    size_t n = 0;
    for (int v = 0; v < 12 && n < cap; v++) {
        Vecshard__V1__ShardSearchRequest r = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
        Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
        Vecshard__V1__PartitionRef pr = VECSHARD__V1__PARTITION_REF__INIT;
        r.dim = D;
        r.queries = q;
        r.n_queries = (size_t)(1 + v % 3) * D;
        r.k = (uint32_t)(1 + v * 3);
        r.index_version = v % 4 == 1 ? "v2" : v % 4 == 2 ? "v1" : "";
        if (v % 2) {
            sp.nprobe = (uint32_t)(v % 5);
            sp.k_factor = v % 4 == 1 ? 2.0f : 0.0f;
            r.params = &sp;
        }
        if (v % 3 == 2) {
            pr.id = 0;
            r.partition = &pr;
        }
        if (v >= 8) {
            r.lists_per_query = 2;
            r.lists = lists;
            r.n_lists = r.n_queries / D * 2;
            r.params = NULL;
        }
        lens[n] = vecshard__v1__shard_search_request__get_packed_size(&r);
        seeds[n] = malloc(lens[n] + 1);
        vecshard__v1__shard_search_request__pack(&r, seeds[n]);
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    uint8_t *seeds[16];
    size_t lens[16];
    size_t ns = make_seeds(seeds, lens, 16);
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return vs_fuzz_write_seeds(argv[2], seeds, lens, ns, "bin");
    long iters = argc == 2 ? strtol(argv[1], NULL, 10) : 20000;
    size_t ok = 0, refused = 0;
    uint64_t s = 12345;
    uint8_t buf[4096];
    for (size_t i = 0; i < ns; i++)
        LLVMFuzzerTestOneInput(seeds[i], lens[i]);
    for (long it = 0; it < iters; it++) {
        size_t len = vs_fuzz_mutate(buf, sizeof buf, seeds, lens, ns, &s);
        char err[VS_ERR_LEN];
        uint8_t *out = NULL;
        size_t olen;
        setup();
        if (vs_shard_search_pb(shard, buf, len, &out, &olen, err) == VS_OK)
            ok++;
        else
            refused++;
        free(out);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("%ld mutated requests: %zu answered, %zu refused with a status; no crash\n", iters, ok, refused);
    for (size_t i = 0; i < ns; i++)
        free(seeds[i]);
    vs_shard_destroy(shard);
    return ok + refused == (size_t)iters ? 0 : 1;
}
#endif
