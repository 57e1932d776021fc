/* vecshard-synth: writes the synthetic clustered data set of the benchmarks, deterministic from a seed.
 *
 * Real embeddings have a low intrinsic dimension; isotropic Gaussian clusters in 128 dimensions do not
 * (every neighbour is nearly equidistant, which no index handles and no user has). So points are drawn
 * in a latent space of --latent dims (cluster centres N(0,1), points centre + N(0, sigma)), mapped to
 * --d dims by a fixed random linear map, plus a little isotropic noise. Queries come from the same
 * distribution with another point seed. Output: DIR/base.fvecs and DIR/queries.fvecs. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/progress.h"
#include "common/vecio.h"
#include "tests/testlib.h"

typedef struct spec {
    uint32_t d, latent, centers;
    float sigma, noise;
    uint64_t seed;
} spec_t;

static void generate(const spec_t *s, size_t n, uint64_t point_seed, float *out, const char *what, int quiet)
{
    uint64_t st = s->seed;
    float *A = malloc((size_t)s->d * s->latent * sizeof(float));
    float *C = malloc((size_t)s->centers * s->latent * sizeof(float));
    for (size_t i = 0; i < (size_t)s->d * s->latent; i++)
        A[i] = (float)(vs_test_gauss(&st) / sqrt((double)s->latent));
    for (size_t i = 0; i < (size_t)s->centers * s->latent; i++)
        C[i] = (float)vs_test_gauss(&st);
    vs_progress_t p;
    vs_progress_start(&p, what, quiet);
    uint64_t ps = point_seed;
    float z[1024];
    for (size_t i = 0; i < n; i++) {
        const float *c = C + (vs_test_rand(&ps) % s->centers) * s->latent;
        for (uint32_t t = 0; t < s->latent; t++)
            z[t] = c[t] + s->sigma * (float)vs_test_gauss(&ps);
        float *x = out + i * s->d;
        for (uint32_t j = 0; j < s->d; j++) {
            const float *a = A + (size_t)j * s->latent;
            float v = 0.0f;
            for (uint32_t t = 0; t < s->latent; t++)
                v += a[t] * z[t];
            x[j] = v + s->noise * (float)vs_test_gauss(&ps);
        }
        if ((i & 65535) == 0)
            vs_progress_update(&p, i, n);
    }
    vs_progress_finish(&p, n);
    free(A);
    free(C);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vecshard-synth --out DIR [--n 1000000] [--nq 10000] [--d 128] [--latent 32]\n"
               "                      [--centers 4096] [--sigma 0.6] [--noise 0.05] [--seed 42] [--quiet]\n"
               "Writes DIR/base.fvecs and DIR/queries.fvecs: clustered data of low intrinsic dimension,\n"
               "the same bytes for the same arguments on every machine.\n");
}

int main(int argc, char **argv)
{
    spec_t s = {.d = 128, .latent = 32, .centers = 4096, .sigma = 0.6f, .noise = 0.05f, .seed = 42};
    size_t n = 1000000, nq = 10000;
    const char *out = NULL;
    int quiet = 0;
    static const struct option lo[] = {
        {"out", required_argument, 0, 'o'},    {"n", required_argument, 0, 'n'},
        {"nq", required_argument, 0, 'q'},     {"d", required_argument, 0, 'd'},
        {"latent", required_argument, 0, 'l'}, {"centers", required_argument, 0, 'c'},
        {"sigma", required_argument, 0, 's'},  {"noise", required_argument, 0, 'z'},
        {"seed", required_argument, 0, 'S'},   {"quiet", no_argument, 0, 'Q'},
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
        s.centers == 0) {
        usage(stderr);
        return 2;
    }
    float *base = malloc(n * s.d * sizeof(float)), *q = malloc(nq * s.d * sizeof(float));
    if (base == NULL || q == NULL) {
        fprintf(stderr, "vecshard-synth: out of memory for %zu x %u floats\n", n, s.d);
        return 1;
    }
    generate(&s, n, s.seed * 2 + 1, base, "base", quiet);
    generate(&s, nq, s.seed * 2 + 2, q, "queries", quiet);
    char path[4096], err[VS_ERR_LEN];
    snprintf(path, sizeof path, "%s/base.fvecs", out);
    if (vs_vecio_write_fvecs(path, n, s.d, base, err) != VS_OK) {
        fprintf(stderr, "vecshard-synth: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/queries.fvecs", out);
    if (vs_vecio_write_fvecs(path, nq, s.d, q, err) != VS_OK) {
        fprintf(stderr, "vecshard-synth: %s\n", err);
        return 1;
    }
    free(base);
    free(q);
    return 0;
}
