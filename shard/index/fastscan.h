/* fastscan.h: 4-bit PQ "fast scan": codes packed so that SIMD byte shuffles do the table lookups, in the
 * spirit of André, Kermarrec, Le Scouarnec, "Cache locality is not enough: high-performance nearest
 * neighbor search with product quantization fast scan" (VLDB 2015) and "Quicker ADC" (TPAMI 2019).
 *
 * Layout (ours): a list's codes are cut in blocks of 32 vectors. A block holds P = ceil(m/2) pairs of
 * sub-quantizers; pair p is 32 bytes, byte v = code[2p](v) | code[2p+1](v) << 4 for vector v of the
 * block (a missing sub-quantizer when m is odd, and missing vectors in the last block, are code 0).
 * So a block is 16*P*2 = 32*P bytes, and 2 pairs are one 64-byte AVX-512 load.
 *
 * Tables: per (query, list) the float ADC table (m x 16) is quantised to bytes in [0, 127] with one
 * scale for all sub-quantizers and a per-sub-quantizer minimum (summed into a bias), so an estimate is
 * bias + sum / scale. Bytes stay <= 127 so that the two lookups of a pair add in 8 bits without
 * overflow; sums accumulate in 16 bits (m <= 512 keeps them below 65536).
 * The quantised table is laid out as P*32 bytes of "low" tables (sub-quantizer 2p, 16 bytes twice)
 * followed by P*32 bytes of "high" tables (sub-quantizer 2p+1, twice): one load per pair and ISA. */
#ifndef VS_SHARD_INDEX_FASTSCAN_H
#define VS_SHARD_INDEX_FASTSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/cpu.h"

#define VS_FS_BLOCK 32u
#define VS_FS_MAX_M 512u

static inline uint32_t vs_fs_pairs(uint32_t m)
{
    return (m + 1) / 2;
}

/* Bytes of codes for n vectors with m sub-quantizers (whole blocks). */
static inline size_t vs_fs_code_bytes(size_t n, uint32_t m)
{
    return (n + VS_FS_BLOCK - 1) / VS_FS_BLOCK * (size_t)vs_fs_pairs(m) * VS_FS_BLOCK;
}

/* Writes the m codes (one byte each, values < 16) of the vector at position pos of a list into its
 * blocks. The target nibbles must be zero (fresh blocks are zeroed). */
void vs_fs_put(uint8_t *blocks, uint32_t m, size_t pos, const uint8_t *codes);

/* Zeroes every code of the vector at position pos (undoes vs_fs_put). */
void vs_fs_clear(uint8_t *blocks, uint32_t m, size_t pos);

/* Reads back code j of the vector at position pos. */
uint8_t vs_fs_get(const uint8_t *blocks, uint32_t m, size_t pos, uint32_t j);

/* Quantises a float ADC table lut[m*16] into qlut[P*64] (layout above); returns bias and scale. */
void vs_fs_quantize_lut(const float *lut, uint32_t m, uint8_t *qlut, float *out_bias, float *out_scale);

/* Codebook of a 4-bit PQ transposed for table building: for sub-quantizer j and dimension t of its
 * sub-space, the 16 centroid coordinates are contiguous: cbt[(j*dsub + t)*16 + c]. */
void vs_fs_transpose_codebook(const float *centroids, uint32_t m, uint32_t dsub, float *cbt);

/* ADC table in key space from a transposed codebook: table[j*16+c] = |r_j - p_jc|^2 (l2 = 1) or
 * -<r_j, p_jc> (l2 = 0, for inner-product keys). d = m*dsub floats of r. */
void vs_fs_table(const float *cbt, uint32_t m, uint32_t dsub, const float *r, int l2, float *table);

/* Encodes one vector x (m*dsub floats) into m 4-bit codes (one byte each): the nearest of the 16
 * centroids of each sub-space, smallest index on ties. table: m*16 floats of scratch. */
void vs_fs_encode(const float *cbt, uint32_t m, uint32_t dsub, const float *x, uint8_t *codes, float *table);

/* The portable version of vs_fs_quantize_lut (tests check the SIMD one gives the same bytes). */
void vs_fs_quantize_lut_scalar(const float *lut, uint32_t m, uint8_t *qlut, float *out_bias,
                               float *out_scale);

/* Called for a vector whose 16-bit sum is <= the current threshold; returns the new threshold. */
typedef uint16_t (*vs_fs_offer_fn)(void *ctx, size_t pos, uint16_t sum);

/* Scans n vectors of one list: for every vector whose quantised sum is <= threshold, calls offer
 * (which may lower the threshold). Returns the final threshold. */
typedef uint16_t (*vs_fs_scan_fn)(const uint8_t *blocks, size_t n, uint32_t m, const uint8_t *qlut,
                                  uint16_t threshold, vs_fs_offer_fn offer, void *ctx);

/* Queries one multi-query scan serves at once. */
#define VS_FS_MULTI 4u

/* Scans n vectors of one list for nq (1..VS_FS_MULTI) queries: query j with table qluts[j], threshold
 * thr[j] (updated in place) and offers to offer(ctx[j], ...). The codes are loaded once per block for all
 * of them; each query's sums and offers are exactly those vs_fs_scan_fn would give it alone. */
typedef void (*vs_fs_scan_multi_fn)(const uint8_t *blocks, size_t n, uint32_t m, uint32_t nq,
                                    const uint8_t *const *qluts, uint16_t *thr, vs_fs_offer_fn offer,
                                    void *const *ctx);

/* The multi-query kernel in use (AVX-512; else the single-query kernel in a loop). */
vs_fs_scan_multi_fn vs_fs_scan_multi(void);

/* The scan kernel of a SIMD level (NULL if the CPU lacks it), and the one in use. */
vs_fs_scan_fn vs_fs_scan_for(vs_simd_level level);
vs_fs_scan_fn vs_fs_scan(void);

#endif
