/* test_factory: factory strings and search parameters parse as FAISS users expect; the generic index
 * refuses parameters that do not apply instead of ignoring them. */
#include <string.h>

#include "shard/index/index.h"
#include "tests/testlib.h"

static void test_parse_good(void)
{
    char err[VS_ERR_LEN], buf[64];
    vs_factory_spec_t s;
    const char *good[] = {"Flat",
                          "IVF1024,Flat",
                          "IVF1024,PQ32",
                          "IVF4096,PQ32x4fs",
                          "IVF1024,PQ32,RFlat",
                          "IVF16384,PQ32x4fs,RSQ8",
                          "IVF65536_HNSW32,PQ32x4fs,RSQ8",
                          "HNSW32",
                          "HNSW16,SQ8"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        CHECKF(vs_factory_parse(good[i], &s, err) == VS_OK, "%s: %s", good[i], err);
        vs_factory_format(&s, buf, sizeof buf);
        CHECKF(strcmp(buf, good[i]) == 0, "round trip %s -> %s", good[i], buf);
    }
    CHECK(vs_factory_parse("IVF256,PQ16x4fs,RFlat", &s, err) == VS_OK);
    CHECK(s.type == VS_INDEX_IVF && s.nlist == 256 && s.codec == VS_CODEC_PQ && s.pq_m == 16 &&
          s.pq_nbits == 4 && s.fastscan && s.refine == VS_REFINE_FLAT);
    CHECK(vs_factory_parse("HNSW48", &s, err) == VS_OK && s.type == VS_INDEX_HNSW && s.hnsw_m == 48);
    CHECK(vs_factory_parse("IVF4096_HNSW16,Flat", &s, err) == VS_OK && s.type == VS_INDEX_IVF &&
          s.nlist == 4096 && s.coarse_hnsw_m == 16 && s.hnsw_m == 0);
    CHECK(vs_factory_parse("IVF8,PQ4x8", &s, err) == VS_OK && s.pq_nbits == 8);
    CHECK(vs_factory_parse("IVF8,PQ4np,RFlat", &s, err) == VS_OK && s.pq_m == 4 &&
          s.refine == VS_REFINE_FLAT);
}

static void test_parse_bad(void)
{
    char err[VS_ERR_LEN];
    vs_factory_spec_t s;
    const char *bad[] = {"",
                         "flat",
                         "IVF,Flat",
                         "IVF0,Flat",
                         "IVF1024",
                         "IVF1024,PQ",
                         "IVF1024,PQ32x4",
                         "IVF1024,Flat,RFoo",
                         "HNSW",
                         "HNSW1",
                         "HNSW32,PQ8",
                         "Flat ",
                         "IVF99999999999,Flat",
                         "IVF1024_HNSW1,Flat",
                         "IVF1024_HNSW,Flat",
                         "IVF1024_HNSW32"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECKF(vs_factory_parse(bad[i], &s, err) == VS_ERR_INVALID_ARGUMENT, "'%s' was accepted", bad[i]);
        CHECK(strstr(err, "bad index factory string") != NULL);
    }
}

static void test_search_params(void)
{
    char err[VS_ERR_LEN];
    vs_search_params_t p;
    CHECK(vs_search_params_parse("", &p, err) == VS_OK && p.nprobe == 0 && p.ef_search == 0 &&
          p.k_factor == 0);
    CHECK(vs_search_params_parse("nprobe=8,efSearch=64,k_factor=2.5", &p, err) == VS_OK);
    CHECK(p.nprobe == 8 && p.ef_search == 64 && p.k_factor == 2.5f);
    CHECK(vs_search_params_parse("ef_search=10", &p, err) == VS_OK && p.ef_search == 10);
    CHECK(vs_search_params_parse("nprobe=16,quantizer_efSearch=32", &p, err) == VS_OK && p.nprobe == 16 &&
          p.quantizer_ef_search == 32);
    CHECK(vs_search_params_parse("quantizer_ef_search=48", &p, err) == VS_OK && p.quantizer_ef_search == 48);
    CHECK(vs_search_params_parse("quantizer_efSearch=0", &p, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_search_params_parse("nprobe=0", &p, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_search_params_parse("nprobe=-1", &p, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_search_params_parse("nprobe=4x", &p, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_search_params_parse("k_factor=0.5", &p, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_search_params_parse("nprob=4", &p, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "nprob"));
    CHECK(vs_search_params_parse("nprobe", &p, err) == VS_ERR_INVALID_ARGUMENT);
}

static void test_generic_index(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    CHECK(vs_index_create(4, VS_METRIC_L2, "HNSW16", &idx, err) == VS_OK);
    CHECK(!vs_index_needs_training(idx) && vs_index_impl_hnsw(idx) != NULL && vs_index_impl_ivf(idx) == NULL);
    vs_index_destroy(idx);
    CHECK(vs_index_create(6, VS_METRIC_L2, "IVF16,PQ4", &idx, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "divisible"));
    CHECK(vs_index_create(0, VS_METRIC_L2, "Flat", &idx, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_index_create(4, VS_METRIC_L2, "Flat", &idx, err) == VS_OK);
    float x[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    CHECK(vs_index_add(idx, 2, x, NULL, 1, NULL, err) == VS_OK);
    CHECK(vs_index_count(idx) == 2 && vs_index_dim(idx) == 4 && !vs_index_needs_training(idx));
    CHECK(vs_index_memory_bytes(idx) >= 2 * 4 * sizeof(float));
    float d[2];
    int64_t i[2];
    vs_search_params_t p = {.nprobe = 4};
    CHECK(vs_index_search(idx, 1, x + 4, 2, &p, 1, d, i, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "nprobe"));
    p = (vs_search_params_t){.ef_search = 4};
    CHECK(vs_index_search(idx, 1, x + 4, 2, &p, 1, d, i, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_index_search(idx, 1, x + 4, 2, NULL, 1, d, i, err) == VS_OK && i[0] == 1 && i[1] == 0);
    CHECK(d[0] == 0.0f && d[1] == 4.0f);
    vs_index_destroy(idx);
}

int main(void)
{
    RUN(test_parse_good);
    RUN(test_parse_bad);
    RUN(test_search_params);
    RUN(test_generic_index);
    return vs_test_finish();
}
