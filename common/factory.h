/* factory.h: FAISS index_factory strings and search-parameter strings, parsed into plain structs.
 *
 * Pure string handling, shared by every side: the index (shard/index/) builds from a spec, the cluster
 * protocol (common/cluster/) validates a manifest's factory string, tools print one. Not here: building
 * an index (shard/index/index.h). */
#ifndef VS_COMMON_FACTORY_H
#define VS_COMMON_FACTORY_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef enum vs_index_type {
    VS_INDEX_FLAT = 1,
    VS_INDEX_IVF,
    VS_INDEX_HNSW,
} vs_index_type;

typedef enum vs_ivf_codec {
    VS_CODEC_FLAT = 1, /* float32 vectors in the lists */
    VS_CODEC_PQ,       /* product quantizer codes */
    VS_CODEC_SQ8,
} vs_ivf_codec;

typedef enum vs_refine {
    VS_REFINE_NONE = 0,
    VS_REFINE_FLAT, /* ,RFlat: exact float32 re-rank of k*k_factor candidates */
    VS_REFINE_SQ8,  /* ,RSQ8: re-rank with 8-bit scalar-quantised vectors */
} vs_refine;

/* A parsed factory string. */
typedef struct vs_factory_spec {
    vs_index_type type;
    uint32_t nlist;     /* IVF{nlist} */
    vs_ivf_codec codec; /* IVF codec, or HNSW storage (FLAT or SQ8) */
    uint32_t pq_m;      /* PQ{m} */
    uint32_t pq_nbits;  /* PQ{m}x{nbits}: 8 (default) or 4 */
    int fastscan;       /* PQ{m}x4fs */
    vs_refine refine;
    uint32_t hnsw_m; /* HNSW{M} */
    uint32_t
        coarse_hnsw_m; /* IVF{nlist}_HNSW{M}: lists found through an HNSW over the centroids; 0 = exact */
} vs_factory_spec_t;

/* Parses FAISS index_factory grammar for what vecshard supports: "Flat", "IVF{n},Flat",
 * "IVF{n},PQ{m}[x8|x4fs]", any IVF form followed by ",RFlat" or ",RSQ8", "HNSW{M}", "HNSW{M},SQ8"; the
 * IVF prefix may be "IVF{n}_HNSW{M}" (FAISS's HNSW coarse quantizer).
 * Numbers must be in range (nlist 1..2^24, m 1..dim, M 2..256). VS_ERR_INVALID_ARGUMENT with the
 * offending part otherwise. Does not check dim divisibility (vs_index_create does). */
vs_status vs_factory_parse(const char *factory, vs_factory_spec_t *out, char err[VS_ERR_LEN]);

/* Canonical factory string of a spec into buf (n bytes). */
void vs_factory_format(const vs_factory_spec_t *spec, char *buf, size_t n);

/* Search-time parameters; 0 = index default. */
typedef struct vs_search_params {
    uint32_t nprobe;                /* IVF lists scanned per query */
    uint32_t ef_search;             /* HNSW candidate list size */
    float k_factor;                 /* refine: re-rank k*k_factor candidates */
    uint32_t quantizer_ef_search;   /* IVF{n}_HNSW{M}: candidate list of the centroid search (FAISS
                                       quantizer_efSearch); 0 = max(64, 2 nprobe) */
    const struct vs_idset *exclude; /* ids never returned (common/idset.h), skipped inside the scan or
                                       traversal before they take a result slot; NULL = none */
    const struct vs_filter *filter; /* attribute filter compiled against the searched index's attributes
                                       (shard/index/attrs.h): no result violates it; NULL = none */
    float filter_exact;             /* "filter_exact_threshold": when the filter's estimated matches are at
                                       most this fraction of the items, the search is exact over the
                                       matching items only (as Vespa's approximate-threshold); 0 = default
                                       (VS_FILTER_EXACT_ITEMS items), up to 1 */
} vs_search_params_t;

/* Filtered search strategy (docs/benchmarks.md, filtered search): without filter_exact_threshold a filter
 * estimated to match at most VS_FILTER_EXACT_ITEMS items is searched exactly over them (their cost grows
 * with their number, an ANN search's hardly does); an IVF filter matching at most VS_FILTER_SELECTIVE_SHARE
 * of the items visits only the matching items of the nearest lists holding one. */
#define VS_FILTER_EXACT_ITEMS 4096u
#define VS_FILTER_SELECTIVE_SHARE 0.03
/* ... and when enumerating the matches would walk more than this many positions (vs_filter_collect_cost;
 * the most selective term a set of values or an integer range) finds each visited list's matches in that
 * term's runs instead of enumerating them all per call. */
#define VS_FILTER_RUNS_MIN 32768u

/* The most queries one exact search request may carry (every partition scans all its items per query). */
#define VS_EXACT_MAX_QUERIES 1024u

/* The largest quantizer_efSearch a request may ask for. */
#define VS_MAX_QUANTIZER_EF 65536u

/* Parses "nprobe=8,efSearch=64,k_factor=4,quantizer_efSearch=32" (FAISS names; "ef_search" and
 * "quantizer_ef_search" are accepted too) into *out,
 * starting from zeros. Empty string = all defaults. VS_ERR_INVALID_ARGUMENT names the bad item. */
vs_status vs_search_params_parse(const char *s, vs_search_params_t *out, char err[VS_ERR_LEN]);

#endif
