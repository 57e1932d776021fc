/* factory.c: FAISS index_factory strings -> vs_factory_spec_t, and search parameter strings
 * (factory.h). Parameters that do not apply to an index type are refused where the index is known
 * (shard/index/factory.c), not here. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/factory.h"

/* Reads a decimal number at *p within [lo, hi]; advances *p. */
static int read_uint(const char **p, uint32_t lo, uint32_t hi, uint32_t *out)
{
    if (!isdigit((unsigned char)**p))
        return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(*p, &end, 10);
    if (errno != 0 || v < lo || v > hi)
        return 0;
    *p = end;
    *out = (uint32_t)v;
    return 1;
}

static int eat(const char **p, const char *tok)
{
    size_t n = strlen(tok);
    if (strncmp(*p, tok, n) != 0)
        return 0;
    *p += n;
    return 1;
}

vs_status vs_factory_parse(const char *factory, vs_factory_spec_t *out, char err[VS_ERR_LEN])
{
    vs_factory_spec_t s = {0};
    const char *p = factory;
    if (eat(&p, "Flat")) {
        s.type = VS_INDEX_FLAT;
    } else if (eat(&p, "IVF")) {
        s.type = VS_INDEX_IVF;
        if (!read_uint(&p, 1, 1u << 24, &s.nlist))
            goto bad;
        if (eat(&p, "_HNSW") && !read_uint(&p, 2, 256, &s.coarse_hnsw_m))
            goto bad;
        if (!eat(&p, ","))
            goto bad;
        if (eat(&p, "Flat")) {
            s.codec = VS_CODEC_FLAT;
        } else if (eat(&p, "SQ8")) {
            s.codec = VS_CODEC_SQ8;
        } else if (eat(&p, "PQ")) {
            s.codec = VS_CODEC_PQ;
            s.pq_nbits = 8;
            if (!read_uint(&p, 1, 65536, &s.pq_m))
                goto bad;
            /* "np" (FAISS: no polysemous training) is accepted and changes nothing: we never do it */
            if (eat(&p, "x4fsnp") || eat(&p, "x4fs")) {
                s.pq_nbits = 4;
                s.fastscan = 1;
            } else if (eat(&p, "x8np") || eat(&p, "x8") || eat(&p, "np")) {
                s.pq_nbits = 8;
            } else if (eat(&p, "x4")) {
                goto bad; /* 4-bit codes exist only in the fast-scan layout */
            }
        } else {
            goto bad;
        }
        if (eat(&p, ",RFlat"))
            s.refine = VS_REFINE_FLAT;
        else if (eat(&p, ",RSQ8"))
            s.refine = VS_REFINE_SQ8;
    } else if (eat(&p, "HNSW")) {
        s.type = VS_INDEX_HNSW;
        s.codec = VS_CODEC_FLAT;
        if (!read_uint(&p, 2, 256, &s.hnsw_m))
            goto bad;
        if (eat(&p, ",SQ8"))
            s.codec = VS_CODEC_SQ8;
        else
            eat(&p, ",Flat");
    } else {
        goto bad;
    }
    if (*p != '\0')
        goto bad;
    *out = s;
    return VS_OK;
bad:
    return vs_errf(
        err, VS_ERR_INVALID_ARGUMENT,
        "bad index factory string '%s' near '%s' (supported: Flat, IVF{nlist},Flat, IVF{nlist},PQ{m}, "
        "IVF{nlist},PQ{m}x4fs, each optionally ,RFlat or ,RSQ8, and IVF{nlist}_HNSW{M} for an HNSW coarse "
        "quantizer; HNSW{M}, HNSW{M},SQ8)",
        factory, p);
}

void vs_factory_format(const vs_factory_spec_t *spec, char *buf, size_t n)
{
    switch (spec->type) {
    case VS_INDEX_FLAT:
        snprintf(buf, n, "Flat");
        return;
    case VS_INDEX_HNSW:
        snprintf(buf, n, "HNSW%u%s", spec->hnsw_m, spec->codec == VS_CODEC_SQ8 ? ",SQ8" : "");
        return;
    case VS_INDEX_IVF: {
        char codec[32];
        if (spec->codec == VS_CODEC_PQ)
            snprintf(codec, sizeof codec, "PQ%u%s", spec->pq_m, spec->fastscan ? "x4fs" : "");
        else
            snprintf(codec, sizeof codec, "%s", spec->codec == VS_CODEC_SQ8 ? "SQ8" : "Flat");
        const char *refine = spec->refine == VS_REFINE_FLAT  ? ",RFlat"
                             : spec->refine == VS_REFINE_SQ8 ? ",RSQ8"
                                                             : "";
        char coarse[16] = "";
        if (spec->coarse_hnsw_m)
            snprintf(coarse, sizeof coarse, "_HNSW%u", spec->coarse_hnsw_m);
        snprintf(buf, n, "IVF%u%s,%s%s", spec->nlist, coarse, codec, refine);
        return;
    }
    }
    snprintf(buf, n, "?");
}

vs_status vs_search_params_parse(const char *s, vs_search_params_t *out, char err[VS_ERR_LEN])
{
    vs_search_params_t r = {0};
    const char *p = s;
    while (*p != '\0') {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        if (eq == NULL || eq > end)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "search parameter '%.*s' is not name=value",
                           (int)(end - p), p);
        size_t nlen = (size_t)(eq - p);
        char val[64];
        size_t vlen = (size_t)(end - eq - 1);
        if (vlen == 0 || vlen >= sizeof val)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "search parameter '%.*s' has no usable value",
                           (int)(end - p), p);
        memcpy(val, eq + 1, vlen);
        val[vlen] = '\0';
        char *vend;
        errno = 0;
        if (nlen == 6 && strncmp(p, "nprobe", 6) == 0) {
            unsigned long v = strtoul(val, &vend, 10);
            if (*vend != '\0' || errno || v == 0 || v > (1u << 24))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe '%s' must be an integer in 1..16777216",
                               val);
            r.nprobe = (uint32_t)v;
        } else if ((nlen == 8 && strncmp(p, "efSearch", 8) == 0) ||
                   (nlen == 9 && strncmp(p, "ef_search", 9) == 0)) {
            unsigned long v = strtoul(val, &vend, 10);
            if (*vend != '\0' || errno || v == 0 || v > 1000000)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "efSearch '%s' must be an integer in 1..1000000",
                               val);
            r.ef_search = (uint32_t)v;
        } else if ((nlen == 18 && strncmp(p, "quantizer_efSearch", 18) == 0) ||
                   (nlen == 19 && strncmp(p, "quantizer_ef_search", 19) == 0)) {
            unsigned long v = strtoul(val, &vend, 10);
            if (*vend != '\0' || errno || v == 0 || v > 1000000)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                               "quantizer_efSearch '%s' must be an integer in 1..1000000", val);
            r.quantizer_ef_search = (uint32_t)v;
        } else if (nlen == 22 && strncmp(p, "filter_exact_threshold", 22) == 0) {
            float v = strtof(val, &vend);
            if (*vend != '\0' || errno || !(v > 0.0f && v <= 1.0f))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                               "filter_exact_threshold '%s' must be a number in (0, 1]", val);
            r.filter_exact = v;
        } else if (nlen == 8 && strncmp(p, "k_factor", 8) == 0) {
            float v = strtof(val, &vend);
            if (*vend != '\0' || errno || !(v >= 1.0f && v <= 10000.0f))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor '%s' must be a number in 1..10000",
                               val);
            r.k_factor = v;
        } else {
            return vs_errf(
                err, VS_ERR_INVALID_ARGUMENT,
                "unknown search parameter '%.*s' (known: nprobe, efSearch, k_factor, quantizer_efSearch)",
                (int)nlen, p);
        }
        p = *end ? end + 1 : end;
    }
    *out = r;
    return VS_OK;
}
