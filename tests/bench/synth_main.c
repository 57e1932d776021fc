/* vecshard-synth: writes the synthetic clustered data set of the benchmarks, deterministic from a seed.
 *
 * Real embeddings have a low intrinsic dimension; isotropic Gaussian clusters in 128 dimensions do not
 * (every neighbour is nearly equidistant, which no index handles and no user has). So points are drawn
 * in a latent space of --latent dims (cluster centres N(0,1), points centre + N(0, sigma)), mapped to
 * --d dims by a fixed random linear map, plus a little isotropic noise. Queries come from the same
 * distribution with another point seed. Output: DIR/base.fvecs and DIR/queries.fvecs, or with
 * --bvecs-scale the same values as bytes in .bvecs files (for sets larger than memory). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/progress.h"
#include "common/parallel.h"
#include "common/vecio.h"
#include "tests/testlib.h"

typedef struct spec {
    uint32_t d, latent, centers;
    float sigma, noise;
    uint64_t seed;
} spec_t;

/* The generator's state: the fixed map A (d x latent), the cluster centres C and the point seed. Rows come
 * out in order, chunk by chunk, so a file of any size streams through a small buffer. */
typedef struct gen {
    const spec_t *s;
    float *At, *C; /* At: latent x d, the map transposed */
    uint64_t ps;
} gen_t;

static int gen_init(gen_t *g, const spec_t *s, uint64_t point_seed)
{
    uint64_t st = s->seed;
    g->s = s;
    g->ps = point_seed;
    g->At = malloc((size_t)s->d * s->latent * sizeof(float));
    g->C = malloc((size_t)s->centers * s->latent * sizeof(float));
    if (g->At == NULL || g->C == NULL)
        return -1;
    for (size_t j = 0; j < s->d; j++) /* drawn row by row of A (d x latent) */
        for (size_t t = 0; t < s->latent; t++)
            g->At[t * s->d + j] = (float)(vs_test_gauss(&st) / sqrt((double)s->latent));
    for (size_t i = 0; i < (size_t)s->centers * s->latent; i++)
        g->C[i] = (float)vs_test_gauss(&st);
    return 0;
}

/* Rows [row, row + n) into out. A row draws 1 + 2 * (latent + d) numbers of vs_test_rand, a splitmix64
 * whose state moves by a constant per draw, so any row's state is known without the rows before it and
 * threads may make rows of one stream in any order. */
static void gen_rows(const gen_t *g, size_t row, size_t n, float *out)
{
    const spec_t *s = g->s;
    const uint64_t per_row = 1 + 2 * ((uint64_t)s->latent + s->d);
    uint64_t ps = g->ps + (uint64_t)row * per_row * 0x9e3779b97f4a7c15ull;
    float z[1024];
    for (size_t i = 0; i < n; i++) {
        const float *c = g->C + (vs_test_rand(&ps) % s->centers) * s->latent;
        for (uint32_t t = 0; t < s->latent; t++)
            z[t] = c[t] + s->sigma * (float)vs_test_gauss(&ps);
        /* x[j] = sum over t in order of A[j][t] * z[t]: accumulated t by t across all j at once (At is A
         * transposed), which vectorises and adds in the same order, so the bytes are those of the plain
         * per-j loop */
        float *x = out + i * s->d;
        for (uint32_t j = 0; j < s->d; j++)
            x[j] = 0.0f;
        for (uint32_t t = 0; t < s->latent; t++) {
            const float *at = g->At + (size_t)t * s->d;
            const float zt = z[t];
            for (uint32_t j = 0; j < s->d; j++)
                x[j] += at[j] * zt;
        }
        for (uint32_t j = 0; j < s->d; j++)
            x[j] += s->noise * (float)vs_test_gauss(&ps);
    }
}

typedef struct gen_task {
    const gen_t *g;
    size_t row, n, per_task;
    float *out;
} gen_task_t;

static void gen_task(void *ctx, size_t task, size_t worker)
{
    (void)worker;
    const gen_task_t *t = ctx;
    size_t lo = task * t->per_task, hi = lo + t->per_task < t->n ? lo + t->per_task : t->n;
    gen_rows(t->g, t->row + lo, hi - lo, t->out + lo * t->g->s->d);
}

static void gen_free(gen_t *g)
{
    free(g->At);
    free(g->C);
}

/* uint8 of a float: round(x * scale + 128), clamped to 0..255 (SIFT-like bytes; docs/benchmarks.md). */
static uint8_t to_byte(float x, float scale)
{
    float q = rintf(x * scale + 128.0f);
    return (uint8_t)(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
}

/* Writes n rows of the stream with point seed point_seed to DIR/NAME.fvecs (bscale 0) or, as bytes,
 * DIR/NAME.bvecs, through NAME.tmp renamed at the end. 0, or -1 after a message. */
static int write_set(const spec_t *s, size_t n, uint64_t point_seed, const char *dir, const char *name,
                     float bscale, int quiet)
{
    enum { CHUNK = 65536 };
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, bscale > 0 ? "bvecs" : "fvecs");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    gen_t g;
    float *buf = malloc((size_t)CHUNK * s->d * sizeof(float));
    uint8_t *row = malloc(4 + (size_t)s->d * sizeof(float));
    FILE *f = fopen(tmp, "wb");
    if (gen_init(&g, s, point_seed) != 0 || buf == NULL || row == NULL || f == NULL) {
        fprintf(stderr, "vecshard-synth: %s: %s\n", tmp, f == NULL ? "cannot create" : "out of memory");
        return -1;
    }
    int32_t dim = (int32_t)s->d;
    memcpy(row, &dim, 4);
    vs_progress_t p;
    vs_progress_start(&p, name, quiet);
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        gen_task_t t = {.g = &g, .row = i, .n = m, .per_task = 4096, .out = buf};
        char err[VS_ERR_LEN];
        if (vs_parallel_for((m + t.per_task - 1) / t.per_task, vs_parallel_cpus(), gen_task, &t, err) != VS_OK) {
            fprintf(stderr, "vecshard-synth: %s\n", err);
            bad = 1;
            break;
        }
        for (size_t r = 0; r < m && !bad; r++) {
            const float *x = buf + r * s->d;
            size_t len = 4;
            if (bscale > 0) {
                for (uint32_t j = 0; j < s->d; j++)
                    row[4 + j] = to_byte(x[j], bscale);
                len += s->d;
            } else {
                memcpy(row + 4, x, (size_t)s->d * sizeof(float));
                len += (size_t)s->d * sizeof(float);
            }
            bad = fwrite(row, 1, len, f) != len;
        }
        vs_progress_update(&p, i + m, n);
    }
    vs_progress_finish(&p, n);
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) != 0)
        bad = 1;
    if (bad)
        fprintf(stderr, "vecshard-synth: writing %s failed (disk full?)\n", path);
    gen_free(&g);
    free(buf);
    free(row);
    return bad ? -1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vecshard-synth --out DIR [--n 1000000] [--nq 10000] [--d 128] [--latent 32]\n"
               "                      [--centers 4096] [--sigma 0.6] [--noise 0.05] [--seed 42]\n"
               "                      [--bvecs-scale S] [--quiet]\n"
               "Writes DIR/base.fvecs and DIR/queries.fvecs: clustered data of low intrinsic dimension,\n"
               "the same bytes for the same arguments on every machine. Streams: any --n fits in memory.\n"
               "  --bvecs-scale S   write DIR/base.bvecs and DIR/queries.bvecs instead: each value x as the\n"
               "                    byte round(x * S + 128) clamped to 0..255 (S 16 for the hard set: values\n"
               "                    beyond +-7.9, ~5 standard deviations, clamp; a 100M x 128 base is 13 GB)\n");
}

int main(int argc, char **argv)
{
    spec_t s = {.d = 128, .latent = 32, .centers = 4096, .sigma = 0.6f, .noise = 0.05f, .seed = 42};
    size_t n = 1000000, nq = 10000;
    const char *out = NULL;
    int quiet = 0;
    float bscale = 0.0f;
    static const struct option lo[] = {
        {"out", required_argument, 0, 'o'},    {"n", required_argument, 0, 'n'},
        {"nq", required_argument, 0, 'q'},     {"d", required_argument, 0, 'd'},
        {"latent", required_argument, 0, 'l'}, {"centers", required_argument, 0, 'c'},
        {"sigma", required_argument, 0, 's'},  {"noise", required_argument, 0, 'z'},
        {"seed", required_argument, 0, 'S'},   {"quiet", no_argument, 0, 'Q'},
        {"bvecs-scale", required_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 'q':
            nq = strtoul(optarg, NULL, 10);
            break;
        case 'd':
            s.d = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'l':
            s.latent = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            s.centers = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 's':
            s.sigma = strtof(optarg, NULL);
            break;
        case 'z':
            s.noise = strtof(optarg, NULL);
            break;
        case 'S':
            s.seed = strtoull(optarg, NULL, 10);
            break;
        case 'B':
            bscale = strtof(optarg, NULL);
            break;
        case 'Q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (out == NULL || n == 0 || nq == 0 || s.d == 0 || s.d > 65536 || s.latent == 0 || s.latent > 1024 ||
        s.centers == 0 || !(bscale >= 0.0f)) {
        usage(stderr);
        return 2;
    }
    if (write_set(&s, n, s.seed * 2 + 1, out, "base", bscale, quiet) != 0 ||
        write_set(&s, nq, s.seed * 2 + 2, out, "queries", bscale, quiet) != 0)
        return 1;
    return 0;
}
