/* vecshard-hnsw-check: opens an HNSW index file (full validation of the container and the graph, as a
 * shard would) and runs the invariant checker (degree bounds, no self-links, levels consistent, every
 * node reachable from the entry point on layer 0); prints the level histogram and mean layer-0 degree.
 * Exit status 0 when the file is sound, 1 otherwise (with the reason), 2 for bad usage. */
#include <stdio.h>
#include <string.h>

#include "common/cli/flags.h"
#include "shard/index/hnsw.h"
#include "shard/index/index.h"

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard-hnsw-check"))
        return 0;
    if (argc != 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc == 2 ? stdout : stderr, "usage: vecshard-hnsw-check FILE\n");
        return argc == 2 ? 0 : 2;
    }
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    if (vs_index_load(argv[1], &idx, err) != VS_OK) {
        fprintf(stderr, "vecshard-hnsw-check: %s\n", err);
        return 1;
    }
    const vs_hnsw_t *h = vs_index_impl_hnsw(idx);
    if (h == NULL) {
        fprintf(stderr, "vecshard-hnsw-check: %s is not an HNSW index\n", argv[1]);
        vs_index_destroy(idx);
        return 1;
    }
    vs_status st = vs_hnsw_check(h, err);
    size_t levels[VS_HNSW_MAX_LEVEL + 1];
    double deg = vs_hnsw_stats(h, levels, VS_HNSW_MAX_LEVEL + 1);
    char factory[64];
    vs_factory_format(vs_index_spec(idx), factory, sizeof factory);
    printf("%s: %s, %zu vectors x %u, mean layer-0 degree %.2f, nodes per level:", argv[1], factory,
           vs_index_count(idx), vs_index_dim(idx), deg);
    for (size_t l = 0; l <= VS_HNSW_MAX_LEVEL && levels[l]; l++)
        printf(" %zu", levels[l]);
    printf("\n%s\n", st == VS_OK ? "ok" : err);
    vs_index_destroy(idx);
    return st == VS_OK ? 0 : 1;
}
