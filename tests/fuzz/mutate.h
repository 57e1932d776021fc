/* mutate.h: the deterministic mutation step the fuzz drivers share when they are built without libFuzzer
 * (bit flips, truncations, byte bumps, splices of another seed, large varints), so every decoder gets the
 * same treatment in every build, sanitizers included. */
#ifndef VS_TESTS_FUZZ_MUTATE_H
#define VS_TESTS_FUZZ_MUTATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static inline uint64_t vs_fuzz_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s;
}

/* Fills buf (cap bytes) with a mutation of a seed picked by *s; returns its length. */
static inline size_t vs_fuzz_mutate(uint8_t *buf, size_t cap, uint8_t *const *seeds, const size_t *lens,
                                    size_t ns, uint64_t *s)
{
    uint64_t r = vs_fuzz_next(s);
    size_t a = (size_t)(r >> 33) % ns, b = (size_t)(r >> 17) % ns;
    size_t len = lens[a] < cap ? lens[a] : cap;
    memcpy(buf, seeds[a], len);
    int n_mut = 1 + (int)((r >> 50) % 4);
    for (int m = 0; m < n_mut; m++) {
        r = vs_fuzz_next(s);
        size_t pos = len ? (size_t)(r >> 20) % len : 0;
        switch ((r >> 60) % 5) {
        case 0: /* flip a bit */
            if (len)
                buf[pos] ^= (uint8_t)(1u << ((r >> 8) % 8));
            break;
        case 1: /* truncate */
            len = pos;
            break;
        case 2: /* bump a byte (often a length, a tag or a quote) */
            if (len)
                buf[pos] = (uint8_t)(buf[pos] + 1 + (r >> 12) % 200);
            break;
        case 3: /* splice the tail of another seed */
        {
            size_t off = lens[b] ? (size_t)(r >> 24) % lens[b] : 0;
            size_t add = lens[b] - off;
            if (pos + add > cap)
                add = cap - pos;
            memcpy(buf + pos, seeds[b] + off, add);
            len = pos + add;
            break;
        }
        default: /* large varint / long digit run */
            if (len > pos + 5) {
                memset(buf + pos, 0xff, 4);
                buf[pos + 4] = 0x0f;
            }
        }
    }
    return len;
}

/* Writes the seeds into dir as a libFuzzer corpus (seed-NN.<ext>); 0, or 1 after saying what failed. */
static inline int vs_fuzz_write_seeds(const char *dir, uint8_t *const *seeds, const size_t *lens, size_t ns,
                                      const char *ext)
{
    mkdir(dir, 0755);
    for (size_t i = 0; i < ns; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/seed-%02zu.%s", dir, i, ext);
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(seeds[i], 1, lens[i], f) != lens[i] || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", p);
            return 1;
        }
    }
    printf("%zu seeds written to %s\n", ns, dir);
    return 0;
}

#endif
