/* manifest.c: read, validate and write manifest.json (manifest.h) with cJSON. Validation is complete at
 * load, so a shard or coordinator never acts on a manifest that contradicts itself (a list owned twice
 * or by nobody would lose or duplicate results silently). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/crc32c.h"
#include "common/factory.h"
#include "common/cluster/keys.h"
#include "common/cluster/manifest.h"
#include "common/hash.h"

#define MAX_MANIFEST_BYTES (16u << 20)
#define MAX_PARTITIONS 65536u

int vs_version_name_valid(const char *s)
{
    return vs_cluster_name_valid(s, 64);
}

static int file_name_ok(const char *f)
{
    return f[0] && f[0] != '/' && !strstr(f, "..") && strlen(f) < PATH_MAX / 2;
}

static int hex16(const char *s)
{
    if (strlen(s) != 16)
        return 0;
    for (int i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static vs_status get_string(const cJSON *o, const char *key, int required, char *dst, size_t cap,
                            const char *path, char err[VS_ERR_LEN])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (required)
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: missing \"%s\"", path, key);
        dst[0] = 0;
        return VS_OK;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"%s\" must be a string of at most %zu bytes", path,
                       key, cap - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return VS_OK;
}

/* Unsigned integer field: a JSON number that is a whole value in [0, max], or a decimal string (for
 * values above 2^53). */
static vs_status get_uint(const cJSON *o, const char *key, uint64_t max, uint64_t *out, const char *path,
                          char err[VS_ERR_LEN])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v && cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= (double)max &&
        v->valuedouble == (double)(uint64_t)v->valuedouble) {
        *out = (uint64_t)v->valuedouble;
        return VS_OK;
    }
    if (v && cJSON_IsString(v) && v->valuestring[0] >= '0' && v->valuestring[0] <= '9') {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v->valuestring, &end, 0);
        if (!*end && errno == 0 && x <= max) {
            *out = x;
            return VS_OK;
        }
    }
    return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"%s\" must be an integer in 0..%llu", path, key,
                   (unsigned long long)max);
}

/* The optional "attributes" array: at most VS_ATTR_MAX_FIELDS {"name", "type"} with valid, distinct names
 * and a known type. Absent or empty: no attributes. */
static vs_status parse_attrs(const cJSON *root, const char *path, vs_manifest_t *m, char err[VS_ERR_LEN])
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "attributes");
    if (!a)
        return VS_OK;
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (n < 0 || n > VS_ATTR_MAX_FIELDS)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "manifest %s: \"attributes\" must be an array of at most %d fields", path,
                       VS_ATTR_MAX_FIELDS);
    const cJSON *f;
    int i = 0;
    cJSON_ArrayForEach(f, a)
    {
        char where[PATH_MAX + 32], type[16];
        snprintf(where, sizeof where, "%s attributes[%d]", path, i);
        vs_attr_field_t *field = &m->attrs[i];
        vs_status st;
        if (!cJSON_IsObject(f))
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: not an object", where);
        if ((st = get_string(f, "name", 1, field->name, sizeof field->name, where, err)) != VS_OK ||
            (st = get_string(f, "type", 1, type, sizeof type, where, err)) != VS_OK)
            return st;
        if (!vs_attr_name_valid(field->name))
            return vs_errf(
                err, VS_ERR_CORRUPT,
                "manifest %s: name \"%s\" is not an attribute name (1..%d characters of [a-z0-9_], "
                "starting with a letter)",
                where, field->name, VS_ATTR_NAME_MAX);
        if (strcmp(type, "int") == 0)
            field->type = VS_ATTR_INT;
        else if (strcmp(type, "float") == 0)
            field->type = VS_ATTR_FLOAT;
        else
            return vs_errf(err, VS_ERR_CORRUPT,
                           "manifest %s: type \"%s\" of \"%s\" is neither \"int\" nor \"float\"", where, type,
                           field->name);
        for (int j = 0; j < i; j++)
            if (strcmp(m->attrs[j].name, field->name) == 0)
                return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: attribute \"%s\" appears twice", where,
                               field->name);
        i++;
    }
    m->n_attrs = (size_t)n;
    return VS_OK;
}

static vs_status parse(const cJSON *root, const char *path, vs_manifest_t *m, char err[VS_ERR_LEN])
{
    if (!cJSON_IsObject(root))
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: not a JSON object", path);
    char fmt[64], metric[32];
    vs_status st;
    uint64_t u;
    if ((st = get_string(root, "format", 1, fmt, sizeof fmt, path, err)) != VS_OK)
        return st;
    if (strcmp(fmt, VS_MANIFEST_FORMAT) != 0)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "manifest %s: format \"%s\" is not %s", path, fmt,
                       VS_MANIFEST_FORMAT);
    if ((st = get_string(root, "version", 1, m->version, sizeof m->version, path, err)) != VS_OK ||
        (st = get_string(root, "model_version", 0, m->model_version, sizeof m->model_version, path, err)) !=
            VS_OK ||
        (st = get_string(root, "metric", 1, metric, sizeof metric, path, err)) != VS_OK ||
        (st = get_string(root, "factory", 1, m->factory, sizeof m->factory, path, err)) != VS_OK ||
        (st = get_string(root, "partitioning", 1, m->partitioning, sizeof m->partitioning, path, err)) !=
            VS_OK ||
        (st = get_string(root, "centroids_file", 0, m->centroids_file, sizeof m->centroids_file, path,
                         err)) != VS_OK)
        return st;
    if (!vs_version_name_valid(m->version))
        return vs_errf(err, VS_ERR_CORRUPT,
                       "manifest %s: version \"%s\" is not a valid name ([A-Za-z0-9._-], 1..64)", path,
                       m->version);
    if (vs_metric_parse(metric, &m->metric, NULL) != VS_OK)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: unknown metric \"%s\"", path, metric);
    if (strcmp(m->partitioning, "hash") != 0 && strcmp(m->partitioning, "cluster") != 0)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "manifest %s: partitioning \"%s\" is neither \"hash\" nor \"cluster\"", path,
                       m->partitioning);
    if (m->centroids_file[0] && !file_name_ok(m->centroids_file))
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: bad centroids_file name", path);
    if ((st = get_uint(root, "dim", 65536, &u, path, err)) != VS_OK)
        return st;
    if (u == 0)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: dim must be at least 1", path);
    m->dim = (uint32_t)u;
    vs_factory_spec_t spec;
    char ferr[VS_ERR_LEN];
    if (vs_factory_parse(m->factory, &spec, ferr) != VS_OK)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: factory: %s", path, ferr);
    const int cluster = strcmp(m->partitioning, "cluster") == 0;
    if (cJSON_GetObjectItemCaseSensitive(root, "nlist")) {
        if ((st = get_uint(root, "nlist", VS_MANIFEST_MAX_NLIST, &u, path, err)) != VS_OK)
            return st;
        if (spec.type != VS_INDEX_IVF || u != spec.nlist)
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: nlist %llu does not match factory \"%s\"", path,
                           (unsigned long long)u, m->factory);
        m->nlist = (uint32_t)u;
    }
    if ((st = get_string(root, "hash", 0, m->hash, sizeof m->hash, path, err)) != VS_OK)
        return st;
    if (cluster) {
        if (spec.type != VS_INDEX_IVF)
            return vs_errf(err, VS_ERR_CORRUPT,
                           "manifest %s: cluster partitioning needs an IVF factory, not \"%s\"", path,
                           m->factory);
        if (m->nlist == 0)
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: cluster partitioning needs \"nlist\"", path);
        if (!m->centroids_file[0])
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: cluster partitioning needs \"centroids_file\"",
                           path);
        if (m->hash[0])
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"hash\" is for hash partitioning only", path);
    } else if (m->hash[0] && strcmp(m->hash, VS_MANIFEST_HASH) != 0) {
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: hash \"%s\" is not \"%s\"", path, m->hash,
                       VS_MANIFEST_HASH);
    }
    if ((st = get_string(root, "trained_state_id", 0, m->trained_state_id, sizeof m->trained_state_id, path,
                         err)) != VS_OK)
        return st;
    if (m->trained_state_id[0] && !hex16(m->trained_state_id))
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"trained_state_id\" must be 16 hex digits", path);
    if (cJSON_GetObjectItemCaseSensitive(root, "centroids_data_crc32c")) {
        if ((st = get_uint(root, "centroids_data_crc32c", UINT32_MAX, &u, path, err)) != VS_OK)
            return st;
        m->centroids_data_crc32c = (uint32_t)u;
        m->has_centroids_data_crc32c = 1;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "centroids_crc32c")) {
        if ((st = get_uint(root, "centroids_crc32c", UINT32_MAX, &u, path, err)) != VS_OK)
            return st;
        m->centroids_crc32c = (uint32_t)u;
        m->has_centroids_crc32c = 1;
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "search_defaults");
    if (sd) {
        char where[PATH_MAX + 24];
        snprintf(where, sizeof where, "%s search_defaults", path);
        vs_search_defaults_t *d = &m->defaults;
        if (!cJSON_IsObject(sd))
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: not an object", where);
        if ((st = get_uint(sd, "nprobe", VS_MANIFEST_MAX_NLIST, &u, where, err)) != VS_OK)
            return st;
        d->nprobe = (uint32_t)u;
        if ((st = get_uint(sd, "ef_search", 1u << 20, &u, where, err)) != VS_OK)
            return st;
        d->ef_search = (uint32_t)u;
        if ((st = get_uint(sd, "k", 100000, &u, where, err)) != VS_OK)
            return st;
        d->k = (uint32_t)u;
        if ((st = get_uint(sd, "queries", 1u << 30, &u, where, err)) != VS_OK)
            return st;
        d->n_queries = (uint32_t)u;
        const cJSON *kf = cJSON_GetObjectItemCaseSensitive(sd, "k_factor");
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(sd, "target_recall");
        const cJSON *mr = cJSON_GetObjectItemCaseSensitive(sd, "measured_recall");
        if (!cJSON_IsNumber(kf) || !(kf->valuedouble >= 0 && kf->valuedouble <= 10000) ||
            !cJSON_IsNumber(tr) || !(tr->valuedouble > 0 && tr->valuedouble <= 1) || !cJSON_IsNumber(mr) ||
            !(mr->valuedouble >= 0 && mr->valuedouble <= 1))
            return vs_errf(
                err, VS_ERR_CORRUPT,
                "manifest %s: k_factor (0..10000), target_recall (0..1] and measured_recall (0..1) "
                "must be numbers",
                where);
        d->k_factor = (float)kf->valuedouble;
        d->target_recall = tr->valuedouble;
        d->measured_recall = mr->valuedouble;
        if ((st = get_string(sd, "source", 0, d->source, sizeof d->source, where, err)) != VS_OK)
            return st;
        if (d->nprobe && (spec.type != VS_INDEX_IVF || d->nprobe > spec.nlist))
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: nprobe %u does not fit factory \"%s\"", where,
                           d->nprobe, m->factory);
        if (d->ef_search && spec.type != VS_INDEX_HNSW)
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: ef_search is for HNSW, not \"%s\"", where,
                           m->factory);
        d->present = 1;
    }
    const cJSON *build = cJSON_GetObjectItemCaseSensitive(root, "build");
    if (build) {
        char where[PATH_MAX + 16];
        snprintf(where, sizeof where, "%s build", path);
        if (!cJSON_IsObject(build))
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: not an object", where);
        if ((st = get_uint(build, "train_sample", UINT64_MAX >> 1, &m->build_train_sample, where, err)) !=
                VS_OK ||
            (st = get_uint(build, "seed", UINT64_MAX, &m->build_seed, where, err)) != VS_OK)
            return st;
        m->has_build = 1;
    }

    if (cJSON_GetObjectItemCaseSensitive(root, "log_upto") &&
        (st = get_uint(root, "log_upto", UINT64_MAX >> 1, &m->log_upto, path, err)) != VS_OK)
        return st;
    if ((st = parse_attrs(root, path, m, err)) != VS_OK)
        return st;

    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(root, "partitions");
    int n = cJSON_IsArray(parts) ? cJSON_GetArraySize(parts) : -1;
    if (n < 1 || (unsigned)n > MAX_PARTITIONS)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"partitions\" must be an array of 1..%u entries",
                       path, MAX_PARTITIONS);
    m->partitions = calloc((size_t)n, sizeof *m->partitions);
    if (!m->partitions)
        return vs_errf(err, VS_ERR_NOMEM, "manifest %s: out of memory", path);
    m->n_partitions = (uint32_t)n;
    unsigned char *seen = calloc((size_t)n, 1);
    uint32_t *owner = cluster ? malloc(m->nlist * sizeof *owner) : NULL; /* list -> partition + 1 */
    if (!seen || (cluster && !owner)) {
        free(seen);
        return vs_errf(err, VS_ERR_NOMEM, "manifest %s: out of memory", path);
    }
    if (cluster) {
        memset(owner, 0, m->nlist * sizeof *owner);
        if ((uint32_t)n > m->nlist) {
            free(seen);
            free(owner);
            return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: %d partitions but only %u lists", path, n,
                           m->nlist);
        }
    }
    int i = 0;
    const cJSON *p;
    st = VS_OK;
    cJSON_ArrayForEach(p, parts)
    {
        vs_manifest_partition_t *mp = &m->partitions[i++];
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s partitions[%d]", path, i - 1);
        if (!cJSON_IsObject(p)) {
            st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: not an object", where);
            break;
        }
        if ((st = get_uint(p, "id", (uint64_t)n - 1, &u, where, err)) != VS_OK)
            break;
        mp->id = (uint32_t)u;
        if (seen[mp->id]) {
            st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: partition id %u appears twice", where, mp->id);
            break;
        }
        seen[mp->id] = 1;
        if ((st = get_string(p, "file", 1, mp->file, sizeof mp->file, where, err)) != VS_OK)
            break;
        if (!file_name_ok(mp->file)) {
            st = vs_errf(err, VS_ERR_CORRUPT,
                         "manifest %s: file \"%s\" must be a relative name without \"..\"", where, mp->file);
            break;
        }
        if ((st = get_uint(p, "size_bytes", UINT64_MAX >> 1, &mp->size_bytes, where, err)) != VS_OK ||
            (st = get_uint(p, "n_vectors", UINT64_MAX >> 1, &mp->n_vectors, where, err)) != VS_OK)
            break;
        if (cJSON_GetObjectItemCaseSensitive(p, "crc32c")) {
            if ((st = get_uint(p, "crc32c", UINT32_MAX, &u, where, err)) != VS_OK)
                break;
            mp->crc32c = (uint32_t)u;
            mp->has_crc32c = 1;
        }
        if ((st = get_string(p, "content_id", 0, mp->content_id, sizeof mp->content_id, where, err)) != VS_OK)
            break;
        if (mp->content_id[0] && !hex16(mp->content_id)) {
            st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"content_id\" must be 16 hex digits", where);
            break;
        }
        const cJSON *lists = cJSON_GetObjectItemCaseSensitive(p, "lists");
        if (!cluster) {
            if (lists) {
                st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"lists\" is for cluster partitioning only",
                             where);
                break;
            }
            continue;
        }
        int nl = cJSON_IsArray(lists) ? cJSON_GetArraySize(lists) : -1;
        if (nl < 0 || (uint32_t)nl > m->nlist) {
            st = vs_errf(err, VS_ERR_CORRUPT,
                         "manifest %s: \"lists\" must be an array of at most %u list ids", where, m->nlist);
            break;
        }
        mp->lists = malloc(((size_t)nl + 1) * sizeof *mp->lists);
        if (!mp->lists) {
            st = vs_errf(err, VS_ERR_NOMEM, "manifest %s: out of memory", path);
            break;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, lists)
        {
            double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
            if (!(v >= 0 && v < m->nlist && v == (double)(uint32_t)v)) {
                st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: \"lists\"[%u] is not a list id in 0..%u",
                             where, mp->n_lists, m->nlist - 1);
                break;
            }
            uint32_t l = (uint32_t)v;
            if (owner[l]) {
                st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: list %u is also owned by partition %u", where,
                             l, owner[l] - 1);
                break;
            }
            owner[l] = mp->id + 1;
            mp->lists[mp->n_lists++] = l;
        }
        if (st != VS_OK)
            break;
    }
    for (uint32_t l = 0; cluster && st == VS_OK && l < m->nlist; l++)
        if (!owner[l])
            st = vs_errf(err, VS_ERR_CORRUPT, "manifest %s: list %u is owned by no partition", path, l);
    free(seen);
    free(owner);
    return st;
}

vs_status vs_manifest_load(const char *path, vs_manifest_t *out, char err[VS_ERR_LEN])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return vs_errf(err, errno == ENOENT ? VS_ERR_NOT_FOUND : VS_ERR_IO, "manifest %s: %s", path,
                       strerror(errno));
    char *buf = malloc(MAX_MANIFEST_BYTES + 1);
    if (!buf) {
        fclose(f);
        return vs_errf(err, VS_ERR_NOMEM, "manifest %s: out of memory", path);
    }
    size_t n = fread(buf, 1, MAX_MANIFEST_BYTES + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > MAX_MANIFEST_BYTES) {
        free(buf);
        return vs_errf(err, rerr ? VS_ERR_IO : VS_ERR_CORRUPT, "manifest %s: %s", path,
                       rerr ? "read error" : "larger than 16 MiB");
    }
    vs_status st = vs_manifest_parse(buf, n, path, out, err);
    free(buf);
    return st;
}

vs_status vs_manifest_parse(const char *text, size_t n, const char *path, vs_manifest_t *out,
                            char err[VS_ERR_LEN])
{
    if (n > MAX_MANIFEST_BYTES)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: larger than 16 MiB", path);
    cJSON *root = cJSON_ParseWithLength(text, n);
    if (!root)
        return vs_errf(err, VS_ERR_CORRUPT, "manifest %s: not valid JSON", path);
    vs_manifest_t m;
    memset(&m, 0, sizeof m);
    vs_status st = parse(root, path, &m, err);
    cJSON_Delete(root);
    if (st != VS_OK) {
        vs_manifest_fini(&m);
        return st;
    }
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(m.dir, sizeof m.dir, "%.*s", (int)(slash - path), path);
    else
        snprintf(m.dir, sizeof m.dir, ".");
    if (slash == path)
        snprintf(m.dir, sizeof m.dir, "/");
    *out = m;
    return VS_OK;
}

void vs_manifest_fini(vs_manifest_t *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; m->partitions && i < m->n_partitions; i++)
        free(m->partitions[i].lists);
    free(m->partitions);
    m->partitions = NULL;
    m->n_partitions = 0;
}

const vs_manifest_partition_t *vs_manifest_partition(const vs_manifest_t *m, uint32_t p)
{
    for (uint32_t i = 0; i < m->n_partitions; i++)
        if (m->partitions[i].id == p)
            return &m->partitions[i];
    return NULL;
}

vs_status vs_manifest_path(const vs_manifest_t *m, const char *file, char buf[PATH_MAX], char err[VS_ERR_LEN])
{
    if (snprintf(buf, PATH_MAX, "%s/%s", m->dir[0] ? m->dir : ".", file) >= PATH_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "path of %s in %s is longer than PATH_MAX", file,
                       m->dir);
    return VS_OK;
}

vs_status vs_manifest_write(const char *path, const vs_manifest_t *m, char err[VS_ERR_LEN])
{
    cJSON *root = cJSON_CreateObject();
    cJSON *parts = cJSON_CreateArray();
    if (!root || !parts) {
        cJSON_Delete(root);
        cJSON_Delete(parts);
        return vs_errf(err, VS_ERR_NOMEM, "manifest %s: out of memory", path);
    }
    char num[32];
    cJSON_AddStringToObject(root, "format", VS_MANIFEST_FORMAT);
    cJSON_AddStringToObject(root, "version", m->version);
    cJSON_AddStringToObject(root, "model_version", m->model_version);
    cJSON_AddStringToObject(root, "metric", vs_metric_name(m->metric));
    cJSON_AddNumberToObject(root, "dim", m->dim);
    cJSON_AddStringToObject(root, "factory", m->factory);
    cJSON_AddStringToObject(root, "partitioning", m->partitioning);
    if (m->hash[0])
        cJSON_AddStringToObject(root, "hash", m->hash);
    if (m->nlist)
        cJSON_AddNumberToObject(root, "nlist", m->nlist);
    if (m->centroids_file[0])
        cJSON_AddStringToObject(root, "centroids_file", m->centroids_file);
    if (m->has_centroids_crc32c) {
        snprintf(num, sizeof num, "0x%08x", m->centroids_crc32c);
        cJSON_AddStringToObject(root, "centroids_crc32c", num);
    }
    if (m->trained_state_id[0])
        cJSON_AddStringToObject(root, "trained_state_id", m->trained_state_id);
    if (m->has_centroids_data_crc32c) {
        snprintf(num, sizeof num, "0x%08x", m->centroids_data_crc32c);
        cJSON_AddStringToObject(root, "centroids_data_crc32c", num);
    }
    if (m->defaults.present) {
        const vs_search_defaults_t *d = &m->defaults;
        cJSON *o = cJSON_AddObjectToObject(root, "search_defaults");
        if (o) {
            cJSON_AddNumberToObject(o, "nprobe", d->nprobe);
            cJSON_AddNumberToObject(o, "ef_search", d->ef_search);
            cJSON_AddNumberToObject(o, "k_factor", d->k_factor);
            cJSON_AddNumberToObject(o, "k", d->k);
            cJSON_AddNumberToObject(o, "target_recall", d->target_recall);
            cJSON_AddNumberToObject(o, "measured_recall", d->measured_recall);
            cJSON_AddNumberToObject(o, "queries", d->n_queries);
            cJSON_AddStringToObject(o, "source", d->source);
        }
    }
    if (m->has_build) {
        cJSON *b = cJSON_AddObjectToObject(root, "build");
        if (b) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)m->build_train_sample);
            cJSON_AddStringToObject(b, "train_sample", num);
            snprintf(num, sizeof num, "%llu", (unsigned long long)m->build_seed);
            cJSON_AddStringToObject(b, "seed", num);
        }
    }
    if (m->log_upto) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)m->log_upto);
        cJSON_AddStringToObject(root, "log_upto", num);
    }
    if (m->n_attrs) {
        cJSON *a = cJSON_AddArrayToObject(root, "attributes");
        for (size_t i = 0; a && i < m->n_attrs; i++) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "name", m->attrs[i].name);
            cJSON_AddStringToObject(f, "type", vs_attr_type_name(m->attrs[i].type));
            cJSON_AddItemToArray(a, f);
        }
    }
    for (uint32_t i = 0; i < m->n_partitions; i++) {
        const vs_manifest_partition_t *p = &m->partitions[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", p->id);
        cJSON_AddStringToObject(o, "file", p->file);
        snprintf(num, sizeof num, "%llu", (unsigned long long)p->size_bytes);
        cJSON_AddStringToObject(o, "size_bytes", num);
        snprintf(num, sizeof num, "%llu", (unsigned long long)p->n_vectors);
        cJSON_AddStringToObject(o, "n_vectors", num);
        if (p->has_crc32c) {
            snprintf(num, sizeof num, "0x%08x", p->crc32c);
            cJSON_AddStringToObject(o, "crc32c", num);
        }
        if (p->content_id[0])
            cJSON_AddStringToObject(o, "content_id", p->content_id);
        if (p->lists) {
            cJSON *l = cJSON_AddArrayToObject(o, "lists");
            for (uint32_t j = 0; l && j < p->n_lists; j++)
                cJSON_AddItemToArray(l, cJSON_CreateNumber(p->lists[j]));
        }
        cJSON_AddItemToArray(parts, o);
    }
    cJSON_AddItemToObject(root, "partitions", parts);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return vs_errf(err, VS_ERR_NOMEM, "manifest %s: out of memory", path);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    vs_status st = VS_OK;
    if (!f) {
        st = vs_errf(err, VS_ERR_IO, "manifest %s: %s", tmp, strerror(errno));
    } else {
        size_t len = strlen(text);
        int ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF && fflush(f) == 0 &&
                 fsync(fileno(f)) == 0;
        ok &= fclose(f) == 0;
        if (!ok || rename(tmp, path) != 0) {
            st = vs_errf(err, VS_ERR_IO, "manifest %s: write failed: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    cJSON_free(text);
    return st;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return vs_fnv1a64(h, b, 8);
}

void vs_manifest_content_id(const vs_manifest_t *m, char out[17])
{
    uint64_t h = VS_FNV1A64_INIT;
    const char *metric = vs_metric_name(m->metric);
    h = vs_fnv1a64(h, metric, strlen(metric) + 1);
    h = vs_fnv1a64(h, m->factory, strlen(m->factory) + 1);
    h = vs_fnv1a64(h, m->partitioning, strlen(m->partitioning) + 1);
    h = fnv_u64(h, m->dim);
    h = fnv_u64(h, m->nlist);
    h = fnv_u64(h, m->has_centroids_crc32c ? (1ull << 32) | m->centroids_crc32c : 0);
    h = vs_fnv1a64(h, m->trained_state_id, strlen(m->trained_state_id) + 1);
    h = fnv_u64(h, m->has_centroids_data_crc32c ? (1ull << 32) | m->centroids_data_crc32c : 0);
    h = fnv_u64(h, m->defaults.present ? ((uint64_t)m->defaults.nprobe << 32) | m->defaults.ef_search : 0);
    h = fnv_u64(h, m->defaults.present ? (uint64_t)(m->defaults.k_factor * 1000.0f) : 0);
    if (m->n_attrs) { /* only then: the content ids of versions without attributes stay what they were */
        h = fnv_u64(h, m->n_attrs);
        for (size_t i = 0; i < m->n_attrs; i++) {
            h = vs_fnv1a64(h, m->attrs[i].name, strlen(m->attrs[i].name) + 1);
            h = fnv_u64(h, (uint64_t)m->attrs[i].type);
        }
    }
    h = fnv_u64(h, m->n_partitions);
    for (uint32_t i = 0; i < m->n_partitions; i++) {
        const vs_manifest_partition_t *p = &m->partitions[i];
        h = fnv_u64(h, p->id);
        h = fnv_u64(h, p->size_bytes);
        h = fnv_u64(h, p->has_crc32c ? (1ull << 32) | p->crc32c : 0);
        h = fnv_u64(h, p->n_vectors);
        h = vs_fnv1a64(h, p->content_id, strlen(p->content_id) + 1);
        h = fnv_u64(h, p->n_lists);
        for (uint32_t j = 0; j < p->n_lists; j++)
            h = fnv_u64(h, p->lists[j]);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

vs_status vs_file_crc32c(const char *path, uint64_t *out_size, uint32_t *out_crc, char err[VS_ERR_LEN])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vs_errf(err, errno == ENOENT ? VS_ERR_NOT_FOUND : VS_ERR_IO, "%s: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    }
    uint32_t crc = 0;
    uint64_t size = 0;
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            vs_status st = vs_errf(err, VS_ERR_IO, "%s: read: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return st;
        }
        if (r == 0)
            break;
        crc = vs_crc32c(crc, buf, (size_t)r);
        size += (uint64_t)r;
    }
    free(buf);
    close(fd);
    *out_size = size;
    *out_crc = crc;
    return VS_OK;
}
