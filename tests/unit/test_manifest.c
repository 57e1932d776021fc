/* test_manifest: the manifest fields of partitioned versions (docs/protocol.md, "Manifest"): cluster
 * manifests must list every IVF list exactly once and name nlist and a centroids file; hash manifests
 * may name the hash function and nothing else; written manifests read back field for field; the attribute
 * schema ("attributes") round-trips, is optional (older manifests), and a bad name, an unknown type, a
 * repeated name or too many fields are refused naming the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/manifest.h"
#include "tests/testlib.h"

#define T "manifest"

static const char *head_cluster =
    "{\"format\":\"vecshard-manifest/1\",\"version\":\"v1\",\"metric\":\"l2\",\"dim\":8,"
    "\"factory\":\"IVF4,Flat\",\"partitioning\":\"cluster\"";
static const char *head_hash =
    "{\"format\":\"vecshard-manifest/1\",\"version\":\"v1\",\"metric\":\"l2\",\"dim\":8,"
    "\"factory\":\"IVF4,Flat\",\"partitioning\":\"hash\"";

/* Writes head + middle + two partitions with the given extras; loads it. */
static vs_status load(const char *head, const char *middle, const char *p0, const char *p1, vs_manifest_t *m,
                      char *err)
{
    char text[4096];
    snprintf(text, sizeof text,
             "%s%s,\"partitions\":[{\"id\":0,\"file\":\"part-0.vsidx\",\"size_bytes\":1,\"n_vectors\":1%s},"
             "{\"id\":1,\"file\":\"part-1.vsidx\",\"size_bytes\":1,\"n_vectors\":1%s}]}",
             head, middle, p0, p1);
    const char *path = vs_test_path(T, "manifest.json");
    if (vs_test_write_file(path, text, strlen(text)) != 0)
        return VS_ERR_IO;
    return vs_manifest_load(path, m, err);
}

static void refused(const char *head, const char *middle, const char *p0, const char *p1, const char *expect)
{
    char err[VS_ERR_LEN] = "";
    vs_manifest_t m;
    vs_status st = load(head, middle, p0, p1, &m, err);
    CHECKF(st == VS_ERR_CORRUPT && strstr(err, expect), "want CORRUPT '%s', got %s '%s'", expect,
           vs_status_name(st), err);
    if (st == VS_OK)
        vs_manifest_fini(&m);
}

static void test_cluster_fields(void)
{
    char err[VS_ERR_LEN];
    vs_manifest_t m;
    const char *mid = ",\"nlist\":4,\"centroids_file\":\"centroids.fvecs\"";
    CHECKF(load(head_cluster, mid, ",\"lists\":[0,3]", ",\"lists\":[2,1]", &m, err) == VS_OK, "%s", err);
    CHECK(m.nlist == 4 && m.partitions[0].n_lists == 2 && m.partitions[0].lists[1] == 3 &&
          m.partitions[1].n_lists == 2 && m.partitions[1].lists[0] == 2);
    vs_manifest_fini(&m);
    refused(head_cluster, mid, ",\"lists\":[0,3]", ",\"lists\":[2,1,3]",
            "list 3 is also owned by partition 0");
    refused(head_cluster, mid, ",\"lists\":[0,3]", ",\"lists\":[2]", "list 1 is owned by no partition");
    refused(head_cluster, mid, ",\"lists\":[0,3]", ",\"lists\":[2,4]", "is not a list id in 0..3");
    refused(head_cluster, mid, ",\"lists\":[0,3.5]", ",\"lists\":[2,1]", "is not a list id");
    refused(head_cluster, mid, ",\"lists\":[0,3]", "", "\"lists\" must be an array");
    refused(head_cluster, ",\"centroids_file\":\"c.fvecs\"", ",\"lists\":[0,3]", ",\"lists\":[2,1]",
            "needs \"nlist\"");
    refused(head_cluster, ",\"nlist\":4", ",\"lists\":[0,3]", ",\"lists\":[2,1]", "needs \"centroids_file\"");
    refused(head_cluster, ",\"nlist\":5,\"centroids_file\":\"c.fvecs\"", ",\"lists\":[0,3]",
            ",\"lists\":[2,1]", "nlist 5 does not match factory");
    refused(head_cluster, ",\"nlist\":4,\"centroids_file\":\"c.fvecs\",\"hash\":\"splitmix64(id) % P\"",
            ",\"lists\":[0,3]", ",\"lists\":[2,1]", "\"hash\" is for hash partitioning only");
    const char *hnsw = "{\"format\":\"vecshard-manifest/1\",\"version\":\"v1\",\"metric\":\"l2\",\"dim\":8,"
                       "\"factory\":\"HNSW16\",\"partitioning\":\"cluster\"";
    refused(hnsw, ",\"centroids_file\":\"c.fvecs\"", ",\"lists\":[0]", ",\"lists\":[1]",
            "needs an IVF factory");
}

static void test_hash_fields(void)
{
    char err[VS_ERR_LEN];
    vs_manifest_t m;
    CHECK(load(head_hash, ",\"hash\":\"splitmix64(id) % P\",\"nlist\":4", "", "", &m, err) == VS_OK);
    CHECK(strcmp(m.hash, VS_MANIFEST_HASH) == 0 && m.nlist == 4 && m.partitions[0].lists == NULL);
    vs_manifest_fini(&m);
    CHECK(load(head_hash, "", "", "", &m, err) == VS_OK && m.hash[0] == 0 &&
          m.nlist == 0); /* older manifests */
    vs_manifest_fini(&m);
    refused(head_hash, ",\"hash\":\"id % P\"", "", "", "hash \"id % P\" is not");
    refused(head_hash, "", ",\"lists\":[0]", "", "\"lists\" is for cluster partitioning only");
    refused(head_hash, ",\"build\":{\"seed\":\"x\"}", "", "", "build");
}

static void test_round_trip(void)
{
    char err[VS_ERR_LEN];
    uint32_t l0[] = {1, 2}, l1[] = {0, 3};
    vs_manifest_partition_t parts[2] = {
        {.id = 0,
         .file = "part-0.vsidx",
         .size_bytes = 10,
         .crc32c = 0xdeadbeef,
         .has_crc32c = 1,
         .n_vectors = 3,
         .lists = l0,
         .n_lists = 2},
        {.id = 1, .file = "part-1.vsidx", .size_bytes = 11, .n_vectors = 4, .lists = l1, .n_lists = 2}};
    vs_manifest_t m = {.version = "v2",
                       .model_version = "mm",
                       .metric = VS_METRIC_COSINE,
                       .dim = 8,
                       .factory = "IVF4,PQ2",
                       .partitioning = "cluster",
                       .n_partitions = 2,
                       .partitions = parts,
                       .centroids_file = "centroids.fvecs",
                       .centroids_crc32c = 0x1234,
                       .has_centroids_crc32c = 1,
                       .nlist = 4,
                       .has_build = 1,
                       .build_train_sample = 1000,
                       .build_seed = UINT64_MAX};
    const char *path = vs_test_path(T, "rt.json");
    CHECK(vs_manifest_write(path, &m, err) == VS_OK);
    vs_manifest_t r;
    CHECKF(vs_manifest_load(path, &r, err) == VS_OK, "%s", err);
    CHECK(strcmp(r.partitioning, "cluster") == 0 && r.nlist == 4 && r.has_centroids_crc32c &&
          r.centroids_crc32c == 0x1234 && r.has_build && r.build_train_sample == 1000 &&
          r.build_seed == UINT64_MAX);
    CHECK(r.partitions[0].n_lists == 2 && r.partitions[0].lists[1] == 2 && r.partitions[1].lists[0] == 0);
    CHECK(r.partitions[0].has_crc32c && r.partitions[0].crc32c == 0xdeadbeef && !r.partitions[1].has_crc32c);
    vs_manifest_fini(&r);
}

static void test_attributes(void)
{
    char err[VS_ERR_LEN];
    vs_manifest_t m;
    /* absent (older manifests) and empty: no attributes */
    CHECK(load(head_hash, "", "", "", &m, err) == VS_OK && m.n_attrs == 0);
    vs_manifest_fini(&m);
    CHECK(load(head_hash, ",\"attributes\":[]", "", "", &m, err) == VS_OK && m.n_attrs == 0);
    vs_manifest_fini(&m);
    CHECKF(load(head_hash,
                ",\"attributes\":[{\"name\":\"market\",\"type\":\"int\"},{\"name\":\"price\",\"type\":"
                "\"float\"}]",
                "", "", &m, err) == VS_OK,
           "%s", err);
    CHECK(m.n_attrs == 2 && strcmp(m.attrs[0].name, "market") == 0 && m.attrs[0].type == VS_ATTR_INT &&
          strcmp(m.attrs[1].name, "price") == 0 && m.attrs[1].type == VS_ATTR_FLOAT);
    vs_manifest_fini(&m);
    refused(head_hash, ",\"attributes\":{}", "", "", "\"attributes\" must be an array of at most 16");
    refused(head_hash, ",\"attributes\":[3]", "", "", "attributes[0]: not an object");
    refused(head_hash, ",\"attributes\":[{\"type\":\"int\"}]", "", "", "attributes[0]: missing \"name\"");
    refused(head_hash, ",\"attributes\":[{\"name\":\"a\"}]", "", "", "attributes[0]: missing \"type\"");
    refused(head_hash,
            ",\"attributes\":[{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"Price\",\"type\":\"float\"}]", "",
            "", "attributes[1]: name \"Price\" is not an attribute name");
    refused(head_hash, ",\"attributes\":[{\"name\":\"a\",\"type\":\"string\"}]", "", "",
            "attributes[0]: type \"string\" of \"a\" is neither \"int\" nor \"float\"");
    refused(head_hash,
            ",\"attributes\":[{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"a\",\"type\":\"float\"}]", "", "",
            "attributes[1]: attribute \"a\" appears twice");
    char many[2048] = ",\"attributes\":[";
    for (int i = 0; i <= VS_ATTR_MAX_FIELDS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s{\"name\":\"f%d\",\"type\":\"int\"}",
                 i ? "," : "", i);
    strcat(many, "]");
    refused(head_hash, many, "", "", "\"attributes\" must be an array of at most 16 fields");
    /* written and read back; the schema is part of the content id (and only when there is one) */
    vs_manifest_partition_t parts[1] = {{.id = 0, .file = "part-0.vsidx", .size_bytes = 10, .n_vectors = 3}};
    vs_manifest_t w = {.version = "v3",
                       .metric = VS_METRIC_L2,
                       .dim = 8,
                       .factory = "HNSW16",
                       .partitioning = "hash",
                       .n_partitions = 1,
                       .partitions = parts,
                       .attrs = {{"cat", VS_ATTR_INT}, {"score", VS_ATTR_FLOAT}, {"zone_2", VS_ATTR_INT}},
                       .n_attrs = 3};
    const char *path = vs_test_path(T, "attrs.json");
    CHECK(vs_manifest_write(path, &w, err) == VS_OK);
    vs_manifest_t r;
    CHECKF(vs_manifest_load(path, &r, err) == VS_OK, "%s", err);
    CHECK(r.n_attrs == 3 && memcmp(r.attrs, w.attrs, 3 * sizeof *r.attrs) == 0);
    char with[17], without[17], none[17], swapped[17];
    vs_manifest_content_id(&r, with);
    r.attrs[1].type = VS_ATTR_INT;
    vs_manifest_content_id(&r, swapped);
    r.n_attrs = 0;
    vs_manifest_content_id(&r, without);
    vs_manifest_fini(&r);
    CHECK(strcmp(with, without) != 0 && strcmp(with, swapped) != 0);
    w.n_attrs = 0; /* no attributes: no "attributes" written, and the content id it always had */
    CHECK(vs_manifest_write(path, &w, err) == VS_OK);
    size_t len = 0;
    char *text = (char *)vs_test_read_file(path, &len);
    CHECK(text && !strstr(text, "attributes"));
    free(text);
    CHECK(vs_manifest_load(path, &r, err) == VS_OK && r.n_attrs == 0);
    vs_manifest_content_id(&r, none);
    CHECK(strcmp(none, without) == 0);
    vs_manifest_fini(&r);
}

int main(void)
{
    vs_test_tmpdir(T);
    RUN(test_cluster_fields);
    RUN(test_hash_fields);
    RUN(test_round_trip);
    RUN(test_attributes);
    vs_test_cleanup(T);
    return vs_test_finish();
}
