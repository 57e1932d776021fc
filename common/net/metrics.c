/* metrics.c: the metrics registry, lock-free child updates, the 0.0.4 text formatter, and the /proc
 * process collector.
 *
 * The registry mutex guards the family list (kept sorted by name) and each family's child list; the
 * children themselves are individually allocated and only ever updated with relaxed atomics, so a cached
 * child pointer needs no lock. Doubles (gauges, histogram sums) live as their bit pattern in an
 * _Atomic uint64_t and change by compare-and-swap. Histogram buckets are stored non-cumulative (one
 * atomic add per observation) and summed at scrape time, which also makes _count equal the +Inf bucket.
 * Not here: sockets (common/net/http.c), summaries (quantiles), exemplars, OpenMetrics. */
#include "common/net/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_NAME_LEN 200
#define MAX_HELP_LEN 4096

const double vs_metrics_grpc_buckets[VS_METRICS_GRPC_BUCKETS_N] = {.005, .01, .025, .05, .1, .25,
                                                                   .5,   1,   2.5,  5,   10};
const double vs_metrics_fine_buckets[VS_METRICS_FINE_BUCKETS_N] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_COUNTER_FN, KIND_GAUGE_FN };

struct vs_counter {
    _Atomic uint64_t v;
};

struct vs_gauge {
    _Atomic uint64_t bits; /* a double's bit pattern */
};

struct vs_histogram {
    const double *bounds; /* the family's, nbounds finite upper bounds */
    size_t nbounds;
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t buckets[]; /* nbounds + 1, non-cumulative; the last is +Inf */
};

typedef struct child {
    uint64_t hash;
    char *values[VS_METRICS_MAX_LABELS];
    struct vs_counter counter;
    struct vs_gauge gauge;
    struct vs_histogram *hist; /* histogram families only */
} child_t;

struct vs_metric_family {
    vs_metrics_t *reg;
    enum kind kind;
    char *name, *help;
    size_t nlabels;
    char *label_names[VS_METRICS_MAX_LABELS];
    double *bounds;
    size_t nbounds;
    double (*fn)(void *);
    void *user;
    child_t **children;
    size_t nchildren, cap;
};

struct vs_metrics {
    pthread_mutex_t mu;
    vs_metric_family_t **fams; /* sorted by name */
    size_t n, cap;
    char err[VS_ERR_LEN];
    vs_status last_status; /* of the last registration */
};

/* ---- doubles in atomics ---- */

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* ---- registry ---- */

vs_metrics_t *vs_metrics_create(void)
{
    vs_metrics_t *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

static void child_free(child_t *c)
{
    for (size_t i = 0; i < VS_METRICS_MAX_LABELS; i++)
        free(c->values[i]);
    free(c->hist);
    free(c);
}

static void family_free(vs_metric_family_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nchildren; i++)
        child_free(f->children[i]);
    free(f->children);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->label_names[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void vs_metrics_destroy(vs_metrics_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        family_free(reg->fams[i]);
    free(reg->fams);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

const char *vs_metrics_last_error(const vs_metrics_t *reg)
{
    return reg ? reg->err : "";
}

/* ---- validation ---- */

static int valid_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int valid_label_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME_LEN || strncmp(s, "__", 2) == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Series-name suffixes a family produces. */
static const char *const hist_suffixes[] = {"_bucket", "_sum", "_count"};
static const char *const plain_suffixes[] = {""};

static size_t family_suffixes(enum kind k, const char *const **out)
{
    if (k == KIND_HISTOGRAM) {
        *out = hist_suffixes;
        return 3;
    }
    *out = plain_suffixes;
    return 1;
}

/* a + sa == b + sb, without building either string. */
static int concat_equal(const char *a, const char *sa, const char *b, const char *sb)
{
    size_t la = strlen(a), lsa = strlen(sa), lb = strlen(b), lsb = strlen(sb);
    if (la + lsa != lb + lsb)
        return 0;
    for (size_t i = 0; i < la + lsa; i++) {
        char ca = i < la ? a[i] : sa[i - la];
        char cb = i < lb ? b[i] : sb[i - lb];
        if (ca != cb)
            return 0;
    }
    return 1;
}

/* The existing family whose name or series collide with (kind, name), or NULL. Caller holds mu. */
static const vs_metric_family_t *find_collision(const vs_metrics_t *reg, enum kind k, const char *name)
{
    const char *const *snew, *const *sold;
    size_t nnew = family_suffixes(k, &snew);
    for (size_t i = 0; i < reg->n; i++) {
        const vs_metric_family_t *f = reg->fams[i];
        if (strcmp(f->name, name) == 0)
            return f;
        size_t nold = family_suffixes(f->kind, &sold);
        for (size_t a = 0; a < nnew; a++)
            for (size_t b = 0; b < nold; b++)
                if (concat_equal(name, snew[a], f->name, sold[b]))
                    return f;
    }
    return NULL;
}

static const char *kind_name(enum kind k)
{
    switch (k) {
    case KIND_COUNTER:
    case KIND_COUNTER_FN:
        return "counter";
    case KIND_GAUGE:
    case KIND_GAUGE_FN:
        return "gauge";
    case KIND_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

/* ---- registration ---- */

static vs_metric_family_t *reg_fail(vs_metrics_t *reg, vs_metric_family_t *f, vs_status s, const char *fmt,
                                    const char *arg)
{
    family_free(f);
    reg->last_status = vs_errf(reg->err, s, fmt, arg);
    pthread_mutex_unlock(&reg->mu);
    return NULL;
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static vs_metric_family_t *register_family(vs_metrics_t *reg, enum kind k, const char *name, const char *help,
                                           size_t nlabels, const char *const *label_names,
                                           const double *bounds, size_t nbounds, double (*fn)(void *),
                                           void *user)
{
    if (!reg)
        return NULL;
    pthread_mutex_lock(&reg->mu);
    reg->err[0] = '\0';
    reg->last_status = VS_OK;
    if ((k == KIND_GAUGE_FN || k == KIND_COUNTER_FN) && !fn)
        return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "no callback for '%s'", name ? name : "(null)");
    if (!name || !valid_metric_name(name))
        return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "invalid metric name '%s'",
                        name ? name : "(null)");
    if ((k == KIND_COUNTER || k == KIND_COUNTER_FN) && !ends_with(name, "_total"))
        return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "counter name '%s' must end in _total", name);
    if (help && strlen(help) > MAX_HELP_LEN)
        return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "help text of '%s' too long", name);
    if (nlabels > VS_METRICS_MAX_LABELS)
        return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "too many label names for '%s'", name);
    if (nlabels > 0 && !label_names)
        return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "label names missing for '%s'", name);
    for (size_t i = 0; i < nlabels; i++) {
        const char *l = label_names[i];
        if (!l || !valid_label_name(l))
            return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "invalid label name '%s'", l ? l : "(null)");
        if (k == KIND_HISTOGRAM && strcmp(l, "le") == 0)
            return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "histogram '%s' may not use the label 'le'",
                            name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(label_names[j], l) == 0)
                return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "label name '%s' repeated", l);
    }
    if (k == KIND_HISTOGRAM) {
        if (nbounds > 0 && !bounds)
            return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "bounds missing for '%s'", name);
        if (nbounds > 0 && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0)
            nbounds--; /* +Inf is implicit */
        if (nbounds > VS_METRICS_MAX_BUCKETS)
            return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT, "too many buckets for '%s'", name);
        for (size_t i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return reg_fail(reg, NULL, VS_ERR_INVALID_ARGUMENT,
                                "bucket bounds of '%s' must be finite and strictly increasing", name);
        }
    }
    const vs_metric_family_t *other = find_collision(reg, k, name);
    if (other) {
        reg->last_status = vs_errf(reg->err, VS_ERR_ALREADY_EXISTS,
                                   "metric '%s' collides with registered '%s'", name, other->name);
        pthread_mutex_unlock(&reg->mu);
        return NULL;
    }

    vs_metric_family_t *f = calloc(1, sizeof *f);
    if (!f)
        return reg_fail(reg, NULL, VS_ERR_NOMEM, "out of memory registering '%s'", name);
    f->reg = reg;
    f->kind = k;
    f->name = dup_str(name);
    f->help = dup_str(help);
    f->nlabels = nlabels;
    f->fn = fn;
    f->user = user;
    int oom = !f->name || !f->help;
    for (size_t i = 0; i < nlabels; i++) {
        f->label_names[i] = dup_str(label_names[i]);
        oom |= !f->label_names[i];
    }
    if (k == KIND_HISTOGRAM && nbounds > 0) {
        f->bounds = malloc(nbounds * sizeof *f->bounds);
        oom |= !f->bounds;
        if (f->bounds)
            memcpy(f->bounds, bounds, nbounds * sizeof *f->bounds);
    }
    f->nbounds = nbounds;
    if (!oom && reg->n == reg->cap) {
        size_t ncap = reg->cap ? 2 * reg->cap : 16;
        vs_metric_family_t **nf = realloc(reg->fams, ncap * sizeof *nf);
        if (nf) {
            reg->fams = nf;
            reg->cap = ncap;
        } else {
            oom = 1;
        }
    }
    if (oom)
        return reg_fail(reg, f, VS_ERR_NOMEM, "out of memory registering '%s'", name);
    size_t pos = 0;
    while (pos < reg->n && strcmp(reg->fams[pos]->name, name) < 0)
        pos++;
    memmove(reg->fams + pos + 1, reg->fams + pos, (reg->n - pos) * sizeof *reg->fams);
    reg->fams[pos] = f;
    reg->n++;
    pthread_mutex_unlock(&reg->mu);
    return f;
}

vs_metric_family_t *vs_metrics_counter(vs_metrics_t *reg, const char *name, const char *help, size_t nlabels,
                                       const char *const *label_names)
{
    return register_family(reg, KIND_COUNTER, name, help, nlabels, label_names, NULL, 0, NULL, NULL);
}

vs_metric_family_t *vs_metrics_gauge(vs_metrics_t *reg, const char *name, const char *help, size_t nlabels,
                                     const char *const *label_names)
{
    return register_family(reg, KIND_GAUGE, name, help, nlabels, label_names, NULL, 0, NULL, NULL);
}

vs_metric_family_t *vs_metrics_histogram(vs_metrics_t *reg, const char *name, const char *help,
                                         size_t nlabels, const char *const *label_names, const double *bounds,
                                         size_t nbounds)
{
    return register_family(reg, KIND_HISTOGRAM, name, help, nlabels, label_names, bounds, nbounds, NULL,
                           NULL);
}

vs_metric_family_t *vs_metrics_gauge_fn(vs_metrics_t *reg, const char *name, const char *help,
                                        double (*fn)(void *user), void *user)
{
    return register_family(reg, KIND_GAUGE_FN, name, help, 0, NULL, NULL, 0, fn, user);
}

vs_metric_family_t *vs_metrics_counter_fn(vs_metrics_t *reg, const char *name, const char *help,
                                          double (*fn)(void *user), void *user)
{
    return register_family(reg, KIND_COUNTER_FN, name, help, 0, NULL, NULL, 0, fn, user);
}

/* ---- children ---- */

static uint64_t hash_values(size_t n, const char *const *values)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a; the separator keeps ("ab","c") apart from ("a","bc") */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xffu) * 1099511628211ull;
    }
    return h;
}

static child_t *child_get(vs_metric_family_t *fam, enum kind k, size_t n, const char *const *values)
{
    if (!fam || fam->kind != k || n != fam->nlabels || (n > 0 && !values))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!values[i] || strlen(values[i]) > VS_METRICS_MAX_VALUE_LEN)
            return NULL;
    uint64_t h = hash_values(n, values);
    vs_metrics_t *reg = fam->reg;
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < fam->nchildren; i++) {
        child_t *c = fam->children[i];
        if (c->hash != h)
            continue;
        size_t j = 0;
        while (j < n && strcmp(c->values[j], values[j]) == 0)
            j++;
        if (j == n) {
            pthread_mutex_unlock(&reg->mu);
            return c;
        }
    }
    child_t *c = NULL;
    if (fam->nchildren >= VS_METRICS_MAX_CHILDREN)
        goto out;
    if (fam->nchildren == fam->cap) {
        size_t ncap = fam->cap ? 2 * fam->cap : 4;
        child_t **nc = realloc(fam->children, ncap * sizeof *nc);
        if (!nc)
            goto out;
        fam->children = nc;
        fam->cap = ncap;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    c->hash = h;
    int oom = 0;
    for (size_t i = 0; i < n; i++) {
        c->values[i] = strdup(values[i]);
        oom |= !c->values[i];
    }
    if (k == KIND_HISTOGRAM) {
        c->hist = calloc(1, sizeof *c->hist + (fam->nbounds + 1) * sizeof c->hist->buckets[0]);
        if (c->hist) {
            c->hist->bounds = fam->bounds;
            c->hist->nbounds = fam->nbounds;
            atomic_init(&c->hist->sum_bits, dbits(0.0));
            for (size_t i = 0; i <= fam->nbounds; i++)
                atomic_init(&c->hist->buckets[i], 0);
        } else {
            oom = 1;
        }
    }
    atomic_init(&c->counter.v, 0);
    atomic_init(&c->gauge.bits, dbits(0.0));
    if (oom) {
        child_free(c);
        c = NULL;
        goto out;
    }
    fam->children[fam->nchildren++] = c;
out:
    pthread_mutex_unlock(&reg->mu);
    return c;
}

vs_counter_t *vs_counter_get_n(vs_metric_family_t *fam, size_t n, const char *const *label_values)
{
    child_t *c = child_get(fam, KIND_COUNTER, n, label_values);
    return c ? &c->counter : NULL;
}

vs_gauge_t *vs_gauge_get_n(vs_metric_family_t *fam, size_t n, const char *const *label_values)
{
    child_t *c = child_get(fam, KIND_GAUGE, n, label_values);
    return c ? &c->gauge : NULL;
}

vs_histogram_t *vs_histogram_get_n(vs_metric_family_t *fam, size_t n, const char *const *label_values)
{
    child_t *c = child_get(fam, KIND_HISTOGRAM, n, label_values);
    return c ? c->hist : NULL;
}

vs_counter_t *vs_counter_get(vs_metric_family_t *fam, const char *const *label_values)
{
    return fam ? vs_counter_get_n(fam, fam->nlabels, label_values) : NULL;
}

vs_gauge_t *vs_gauge_get(vs_metric_family_t *fam, const char *const *label_values)
{
    return fam ? vs_gauge_get_n(fam, fam->nlabels, label_values) : NULL;
}

vs_histogram_t *vs_histogram_get(vs_metric_family_t *fam, const char *const *label_values)
{
    return fam ? vs_histogram_get_n(fam, fam->nlabels, label_values) : NULL;
}

vs_counter_t *vs_metrics_counter_single(vs_metrics_t *reg, const char *name, const char *help)
{
    return vs_counter_get(vs_metrics_counter(reg, name, help, 0, NULL), NULL);
}

vs_gauge_t *vs_metrics_gauge_single(vs_metrics_t *reg, const char *name, const char *help)
{
    return vs_gauge_get(vs_metrics_gauge(reg, name, help, 0, NULL), NULL);
}

vs_histogram_t *vs_metrics_histogram_single(vs_metrics_t *reg, const char *name, const char *help,
                                            const double *bounds, size_t nbounds)
{
    return vs_histogram_get(vs_metrics_histogram(reg, name, help, 0, NULL, bounds, nbounds), NULL);
}

int vs_metrics_histogram_each(vs_metrics_t *reg, const char *name, const char *help, const char *label,
                              const char *const *values, size_t n, const double *bounds, size_t nbounds,
                              vs_histogram_t **out)
{
    vs_metric_family_t *f = vs_metrics_histogram(reg, name, help, 1, &label, bounds, nbounds);
    for (size_t i = 0; f && i < n; i++)
        if (!(out[i] = vs_histogram_get(f, &values[i])))
            return -1;
    return f ? 0 : -1;
}

/* ---- updates ---- */

void vs_counter_add(vs_counter_t *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void vs_counter_inc(vs_counter_t *c)
{
    vs_counter_add(c, 1);
}

uint64_t vs_counter_value(const vs_counter_t *c)
{
    return c ? atomic_load_explicit(&((vs_counter_t *)c)->v, memory_order_relaxed) : 0;
}

void vs_gauge_set(vs_gauge_t *g, double v)
{
    if (g)
        atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

void vs_gauge_add(vs_gauge_t *g, double v)
{
    if (g)
        atomic_add_double(&g->bits, v);
}

void vs_gauge_sub(vs_gauge_t *g, double v)
{
    vs_gauge_add(g, -v);
}

double vs_gauge_value(const vs_gauge_t *g)
{
    return g ? bitsd(atomic_load_explicit(&((vs_gauge_t *)g)->bits, memory_order_relaxed)) : 0.0;
}

void vs_histogram_observe(vs_histogram_t *h, double value)
{
    if (!h)
        return;
    size_t lo = 0, hi = h->nbounds; /* first bound >= value; NaN compares false and lands in +Inf */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (value <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&h->sum_bits, value);
}

uint64_t vs_histogram_count(const vs_histogram_t *h)
{
    if (!h)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i <= h->nbounds; i++)
        n += atomic_load_explicit(&((vs_histogram_t *)h)->buckets[i], memory_order_relaxed);
    return n;
}

double vs_histogram_sum(const vs_histogram_t *h)
{
    return h ? bitsd(atomic_load_explicit(&((vs_histogram_t *)h)->sum_bits, memory_order_relaxed)) : 0.0;
}

/* ---- formatting ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > ncap)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* The shortest decimal that reads back to the same double, in the manner of JavaScript's Number#toString:
 * fixed notation for decimal exponents -7..20 ("0.00005", "1000000"), else C's exponent form ("1e+21",
 * "1.5e-08"); Prometheus spellings for the specials. */
static void fmt_double(double v, char out[40])
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(out, 40, "%.*e", prec - 1, v);
        if (strtod(out, NULL) == v)
            break;
    }
    snprintf(out, 40, "%.*e", prec - 1, v);
    int exp10 = atoi(strchr(out, 'e') + 1);
    if (exp10 >= -7 && exp10 < 21) {
        int decimals = prec - 1 - exp10;
        snprintf(out, 40, "%.*f", decimals > 0 ? decimals : 0, v);
    }
}

static void buf_double(buf_t *b, double v)
{
    char s[40];
    fmt_double(v, s);
    buf_str(b, s);
}

static void buf_u64(buf_t *b, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    buf_str(b, s);
}

/* Escapes \ and newline, and " too when quote is set (label values). */
static void buf_escaped(buf_t *b, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep) {
            buf_put(b, run, (size_t)(s - run));
            buf_str(b, rep);
            run = s + 1;
        }
    }
    buf_put(b, run, (size_t)(s - run));
}

/* name{l1="v1",...[,le="x"]} */
static void buf_series(buf_t *b, const vs_metric_family_t *f, const char *suffix, const child_t *c,
                       const char *le)
{
    buf_str(b, f->name);
    buf_str(b, suffix);
    if (f->nlabels == 0 && !le)
        return;
    buf_put(b, "{", 1);
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0)
            buf_put(b, ",", 1);
        buf_str(b, f->label_names[i]);
        buf_put(b, "=\"", 2);
        buf_escaped(b, c->values[i], 1);
        buf_put(b, "\"", 1);
    }
    if (le) {
        if (f->nlabels > 0)
            buf_put(b, ",", 1);
        buf_str(b, "le=\"");
        buf_str(b, le);
        buf_put(b, "\"", 1);
    }
    buf_put(b, "}", 1);
}

static int cmp_child(const void *pa, const void *pb, void *ctx)
{
    const child_t *a = *(const child_t *const *)pa, *b = *(const child_t *const *)pb;
    size_t nlabels = *(const size_t *)ctx;
    for (size_t i = 0; i < nlabels; i++) {
        int r = strcmp(a->values[i], b->values[i]);
        if (r)
            return r;
    }
    return 0;
}

static void format_family(buf_t *b, const vs_metric_family_t *f, child_t **sorted)
{
    buf_str(b, "# HELP ");
    buf_str(b, f->name);
    buf_put(b, " ", 1);
    buf_escaped(b, f->help, 0);
    buf_str(b, "\n# TYPE ");
    buf_str(b, f->name);
    buf_put(b, " ", 1);
    buf_str(b, kind_name(f->kind));
    buf_put(b, "\n", 1);

    if (f->kind == KIND_GAUGE_FN || f->kind == KIND_COUNTER_FN) {
        buf_str(b, f->name);
        buf_put(b, " ", 1);
        buf_double(b, f->fn(f->user));
        buf_put(b, "\n", 1);
        return;
    }
    if (f->nchildren == 0)
        return;
    memcpy(sorted, f->children, f->nchildren * sizeof *sorted);
    size_t nlabels = f->nlabels;
    if (f->nchildren > 1)
        qsort_r(sorted, f->nchildren, sizeof *sorted, cmp_child, &nlabels);
    for (size_t i = 0; i < f->nchildren; i++) {
        const child_t *c = sorted[i];
        if (f->kind == KIND_COUNTER) {
            buf_series(b, f, "", c, NULL);
            buf_put(b, " ", 1);
            buf_u64(b, vs_counter_value(&c->counter));
            buf_put(b, "\n", 1);
        } else if (f->kind == KIND_GAUGE) {
            buf_series(b, f, "", c, NULL);
            buf_put(b, " ", 1);
            buf_double(b, vs_gauge_value(&c->gauge));
            buf_put(b, "\n", 1);
        } else {
            const vs_histogram_t *h = c->hist;
            uint64_t cum = 0;
            for (size_t j = 0; j <= h->nbounds; j++) {
                char le[40];
                if (j < h->nbounds)
                    fmt_double(h->bounds[j], le);
                else
                    strcpy(le, "+Inf");
                cum += atomic_load_explicit(&((vs_histogram_t *)h)->buckets[j], memory_order_relaxed);
                buf_series(b, f, "_bucket", c, le);
                buf_put(b, " ", 1);
                buf_u64(b, cum);
                buf_put(b, "\n", 1);
            }
            buf_series(b, f, "_sum", c, NULL);
            buf_put(b, " ", 1);
            buf_double(b, vs_histogram_sum(h));
            buf_put(b, "\n", 1);
            buf_series(b, f, "_count", c, NULL);
            buf_put(b, " ", 1);
            buf_u64(b, cum);
            buf_put(b, "\n", 1);
        }
    }
}

vs_status vs_metrics_format(const vs_metrics_t *creg, char **out_text, size_t *out_len)
{
    vs_metrics_t *reg = (vs_metrics_t *)creg; /* the mutex changes; the metrics do not */
    if (!reg || !out_text || !out_len)
        return VS_ERR_INVALID_ARGUMENT;
    buf_t b = {0};
    buf_put(&b, "", 0); /* an empty registry still yields "" */
    pthread_mutex_lock(&reg->mu);
    size_t maxc = 1;
    for (size_t i = 0; i < reg->n; i++)
        if (reg->fams[i]->nchildren > maxc)
            maxc = reg->fams[i]->nchildren;
    child_t **sorted = malloc(maxc * sizeof *sorted);
    if (!sorted)
        b.oom = 1;
    for (size_t i = 0; i < reg->n && !b.oom; i++)
        format_family(&b, reg->fams[i], sorted);
    pthread_mutex_unlock(&reg->mu);
    free(sorted);
    if (b.oom) {
        free(b.p);
        return VS_ERR_NOMEM;
    }
    *out_text = b.p;
    *out_len = b.len;
    return VS_OK;
}

/* ---- process metrics (Linux /proc) ---- */

/* Fields 3.. of /proc/self/stat (after the parenthesised command name); field k is out[k - 3]. */
static int read_self_stat(unsigned long long out[24])
{
    char s[1024];
    FILE *fp = fopen("/proc/self/stat", "r");
    if (!fp)
        return -1;
    size_t n = fread(s, 1, sizeof s - 1, fp);
    fclose(fp);
    s[n] = '\0';
    char *p = strrchr(s, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2; /* ") " then the state letter, field 3 */
    out[0] = 0;
    if (*p)
        p++;
    for (int k = 1; k < 24; k++) {
        char *end;
        out[k] = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
    }
    return 0;
}

static double proc_rss(void *u)
{
    (void)u;
    unsigned long long f[24];
    long page = sysconf(_SC_PAGESIZE);
    return read_self_stat(f) == 0 && page > 0 ? (double)f[24 - 3] * (double)page : NAN;
}

static double proc_vsize(void *u)
{
    (void)u;
    unsigned long long f[24];
    return read_self_stat(f) == 0 ? (double)f[23 - 3] : NAN;
}

static double proc_cpu(void *u)
{
    (void)u;
    unsigned long long f[24];
    long tck = sysconf(_SC_CLK_TCK);
    return read_self_stat(f) == 0 && tck > 0 ? (double)(f[14 - 3] + f[15 - 3]) / (double)tck : NAN;
}

static double proc_start_time(void *u)
{
    (void)u;
    unsigned long long f[24], btime = 0;
    long tck = sysconf(_SC_CLK_TCK);
    if (read_self_stat(f) != 0 || tck <= 0)
        return NAN;
    FILE *fp = fopen("/proc/stat", "r");
    if (!fp)
        return NAN;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "btime %llu", &btime) == 1) {
            found = 1;
            break;
        }
    fclose(fp);
    return found ? (double)btime + (double)f[22 - 3] / (double)tck : NAN;
}

static double proc_open_fds(void *u)
{
    (void)u;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return NAN;
    int self = dirfd(d);
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        n++;
    }
    closedir(d);
    return n;
}

static double proc_max_fds(void *u)
{
    (void)u;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

vs_status vs_metrics_add_process(vs_metrics_t *reg, char *err)
{
    static const struct {
        const char *name, *help;
        int counter;
        double (*fn)(void *);
    } defs[] = {
        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", 1, proc_cpu},
        {"process_max_fds", "Maximum number of open file descriptors.", 0, proc_max_fds},
        {"process_open_fds", "Number of open file descriptors.", 0, proc_open_fds},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", 0, proc_rss},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", 0,
         proc_start_time},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", 0, proc_vsize},
    };
    if (!reg)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "no registry");
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        vs_metric_family_t *f = defs[i].counter
                                    ? vs_metrics_counter_fn(reg, defs[i].name, defs[i].help, defs[i].fn, NULL)
                                    : vs_metrics_gauge_fn(reg, defs[i].name, defs[i].help, defs[i].fn, NULL);
        if (!f)
            return vs_errf(err, reg->last_status, "%s", reg->err);
    }
    return VS_OK;
}

vs_metric_family_t *vs_metrics_add_build_info(vs_metrics_t *reg, const char *name, const char *help,
                                              const char *version)
{
    static const char *const labels[] = {"version"};
    vs_metric_family_t *f = vs_metrics_gauge(reg, name, help, 1, labels);
    const char *values[] = {version ? version : ""};
    vs_gauge_set(vs_gauge_get(f, values), 1.0);
    return f;
}
