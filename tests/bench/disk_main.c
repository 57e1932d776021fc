/* vecshard-bench-disk: the disk tier against memory (issue 20). Loads one IVF index file twice, once with
 * its refine section in memory (mapped, as shards load by default) and once with refine_on_disk (the
 * codes, ids and lists in memory, refine vectors read per query with O_DIRECT), and runs the same queries
 * through both, one query per call on --threads threads, interleaved (memory, disk, memory, disk, ...;
 * each side's best round), at each k_factor. Reports QPS, CPU per query (getrusage of this process),
 * recall@k against the ground truth, and for the disk side the reads, bytes and read wait per query; and
 * the bytes per vector each side keeps in memory. Results as a table and JSON lines (docs/benchmarks.md). */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "common/cli/timing.h"
#include "common/vecio.h"
#include "shard/index/ifile.h"
#include "shard/index/index.h"
#include "shard/index/refine_disk.h"

typedef struct run {
    const vs_index_t *idx;
    const float *q;
    size_t nq, k, next;
    uint32_t d;
    vs_search_params_t p;
    int64_t *ids;
    pthread_mutex_t mu;
    int failed;
} run_t;

static void *worker(void *arg)
{
    run_t *r = arg;
    char err[VS_ERR_LEN];
    float dist[1024];
    for (;;) {
        pthread_mutex_lock(&r->mu);
        size_t i = r->next++;
        pthread_mutex_unlock(&r->mu);
        if (i >= r->nq)
            return NULL;
        if (vs_index_search(r->idx, 1, r->q + i * r->d, r->k, &r->p, 1, dist, r->ids + i * r->k, err) != VS_OK) {
            fprintf(stderr, "vecshard-bench-disk: %s\n", err);
            r->failed = 1;
            return NULL;
        }
    }
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
           ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec) * 1e-6;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vecshard-bench-disk --index FILE --queries FILE --gt FILE [--k 10] [--nprobe 32]\n"
               "                           [--k-factor 2,4,8] [--threads 2] [--rounds 2] [--disk-only]\n"
               "One IVF index file with a refine section, searched from memory and with refine on disk.\n"
               "  --disk-only   only the disk side (the file is not loaded whole: for a run under a memory\n"
               "                limit below the file's size, where the memory side would page)\n");
}

int main(int argc, char **argv)
{
    const char *index = NULL, *qpath = NULL, *gtpath = NULL, *kfs = "2,4,8";
    long k = 10, nprobe = 32, threads = 2, rounds = 2;
    int disk_only = 0;
    static const struct option opts[] = {{"index", required_argument, 0, 'i'},   {"queries", required_argument, 0, 'q'},
                                         {"gt", required_argument, 0, 'g'},      {"k", required_argument, 0, 'k'},
                                         {"nprobe", required_argument, 0, 'n'},  {"k-factor", required_argument, 0, 'f'},
                                         {"threads", required_argument, 0, 't'}, {"rounds", required_argument, 0, 'r'},
                                         {"disk-only", no_argument, 0, 'D'},
                                         {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': index = optarg; break;
        case 'q': qpath = optarg; break;
        case 'g': gtpath = optarg; break;
        case 'k': k = atol(optarg); break;
        case 'n': nprobe = atol(optarg); break;
        case 'f': kfs = optarg; break;
        case 't': threads = atol(optarg); break;
        case 'r': rounds = atol(optarg); break;
        case 'D': disk_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!index || !qpath || !gtpath || k < 1 || k > 1024 || threads < 1 || threads > 256 || rounds < 1) {
        usage(stderr);
        return 2;
    }
    char err[VS_ERR_LEN];
    size_t nq, ngt;
    uint32_t d, gk;
    float *q;
    int32_t *gt;
    vs_index_t *mem = NULL, *disk = NULL;
    vs_index_load_opts_t lo = {.refine_on_disk = 1};
    if (vs_vecfile_load_f32(qpath, &nq, &d, &q, err) != VS_OK || vs_vecfile_load_i32(gtpath, &ngt, &gk, &gt, err) != VS_OK ||
        (!disk_only && vs_index_load(index, &mem, err) != VS_OK) || vs_index_load_opts(index, &lo, &disk, err) != VS_OK) {
        fprintf(stderr, "vecshard-bench-disk: %s\n", err);
        return 1;
    }
    if (ngt < nq || gk < (uint32_t)k || d != vs_index_dim(disk)) {
        fprintf(stderr, "vecshard-bench-disk: queries, ground truth and index do not agree\n");
        return 1;
    }
    vs_refine_disk_stats_t s0, s1;
    if (!vs_index_refine_disk_stats(disk, &s0)) {
        fprintf(stderr, "vecshard-bench-disk: %s has no refine section to keep on disk\n", index);
        return 1;
    }
    /* bytes per vector in memory: the whole file mapped, or all but the refine section */
    struct stat sb;
    stat(index, &sb);
    vs_ifile_t *f;
    uint64_t roff = 0, rlen = 0;
    if (vs_ifile_open(index, &f, err) == VS_OK) {
        if (vs_ifile_section_span(f, "refine.flat", &roff, &rlen, err) != VS_OK)
            vs_ifile_section_span(f, "refine.sq8", &roff, &rlen, err);
        vs_ifile_close(f);
    }
    const double n = (double)vs_index_count(disk);
    printf("index %s: %.0f vectors, %.1f bytes per vector in memory, %.1f with refine on disk (%.1f on disk)\n",
           index, n, (double)sb.st_size / n, (double)(sb.st_size - (off_t)rlen) / n, (double)rlen / n);
    printf("%-8s %6s %10s %10s %8s %10s %10s %10s\n", "side", "kf", "QPS", "CPU us/q", "recall", "reads/q",
           "KiB/q", "wait us/q");
    int64_t *ids = malloc(nq * (size_t)k * sizeof *ids);
    for (const char *p = kfs; *p;) {
        float kf = strtof(p, (char **)&p);
        if (*p == ',')
            p++;
        double best[2][3] = {{0}}; /* qps, cpu per query, recall */
        double dreads = 0, dkib = 0, dwait = 0;
        for (long r = 0; r < rounds; r++)
            for (int side = disk_only; side < 2; side++) {
                run_t run = {.idx = side ? disk : mem, .q = q, .nq = nq, .k = (size_t)k, .d = d,
                             .p = {.nprobe = (uint32_t)nprobe, .k_factor = kf}, .ids = ids};
                pthread_mutex_init(&run.mu, NULL);
                if (side)
                    vs_index_refine_disk_stats(disk, &s0);
                pthread_t th[256];
                double c0 = cpu_s(), t0 = vs_now_s();
                for (long t = 0; t < threads; t++)
                    pthread_create(&th[t], NULL, worker, &run);
                for (long t = 0; t < threads; t++)
                    pthread_join(th[t], NULL);
                double wall = vs_now_s() - t0, cpu = cpu_s() - c0;
                if (run.failed)
                    return 1;
                size_t hit = 0;
                for (size_t i = 0; i < nq; i++)
                    for (long a = 0; a < k; a++)
                        for (long b = 0; b < k; b++)
                            hit += ids[i * (size_t)k + (size_t)a] == gt[i * gk + (size_t)b];
                double qps = (double)nq / wall;
                if (qps > best[side][0]) {
                    best[side][0] = qps;
                    best[side][1] = cpu / (double)nq * 1e6;
                    best[side][2] = (double)hit / (double)(nq * (size_t)k);
                    if (side) {
                        vs_index_refine_disk_stats(disk, &s1);
                        dreads = (double)(s1.reads - s0.reads) / (double)nq;
                        dkib = (double)(s1.bytes - s0.bytes) / 1024.0 / (double)nq;
                        dwait = (s1.read_seconds - s0.read_seconds) / (double)nq * 1e6;
                    }
                }
                pthread_mutex_destroy(&run.mu);
            }
        if (!disk_only)
            printf("%-8s %6.1f %10.0f %10.1f %8.4f %10s %10s %10s\n", "memory", kf, best[0][0], best[0][1],
                   best[0][2], "-", "-", "-");
        printf("%-8s %6.1f %10.0f %10.1f %8.4f %10.1f %10.1f %10.1f\n", "disk", kf, best[1][0], best[1][1],
               best[1][2], dreads, dkib, dwait);
        char memj[128] = "null";
        if (!disk_only)
            snprintf(memj, sizeof memj, "{\"qps\":%.1f,\"cpu_us\":%.2f,\"recall\":%.4f}", best[0][0], best[0][1],
                     best[0][2]);
        printf("{\"k_factor\":%g,\"nprobe\":%ld,\"threads\":%ld,\"memory\":%s,"
               "\"disk\":{\"qps\":%.1f,\"cpu_us\":%.2f,\"recall\":%.4f,\"reads\":%.2f,\"kib\":%.2f,\"wait_us\":%.1f}}\n",
               kf, nprobe, threads, memj, best[1][0], best[1][1], best[1][2], dreads, dkib, dwait);
    }
    free(ids);
    vs_index_destroy(mem);
    vs_index_destroy(disk);
    free(q);
    free(gt);
    return 0;
}
