/* SPDX-License-Identifier: MIT */
/*
 * encode.c — inference benchmark: images/second of every models/<name>.ism (or a
 * synthetic MobileNetV2-shaped graph when none is there) at batch 1 and 16,
 * with 1 and 2 threads, each configuration in a fresh process so that its
 * peak RSS is its own; plus the CPU model, the kernel level in force
 * (IMS_SIMD=ref|avx2|avx512 forces one), the machine's peak FMA rate at
 * that level's width (AVX2 or AVX-512 FMA loop, 12 independent
 * accumulators, 1 and 2 threads) and the fraction of it each model reaches
 * (FLOPs per image from ims_nn_stats).
 *
 *   bench_encode [--models DIR] [--runs N] [--batch 1,16] [--threads 1,2] [--json]
 *   bench_encode --child MODEL.ism|synthetic BATCH THREADS RUNS [TAPS]   (one config)
 * TAPS (newline- or comma-separated layer names): run only what those taps
 * need, without the classifier, as a collection's feature pass does
 * (bench/collection/run.sh compares embed-all with it).
 *
 * "CPU ms/img" is the best run's process CPU time per image: on a shared,
 * loaded machine it shows what a quiet one would give (wall time does not).
 *
 * The classifier output is computed too (as TF.js predict() does), and the
 * input is random in [0,1]; preprocessing is not timed.
 */
#include <dirent.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "imgsim/imgsim.h"
#include "imgsim/nn.h"
#include "nn/nn_int.h"

/* ---- peak FMA rate ---------------------------------------------------------- */

#define FMA_ITERS 50000000L
#define FMA_CHAINS 12 /* a0..a11 in FMA_BODY */

/* 12 independent chains (more than FMA latency x ports: 4 x 2), in
 * registers; `lanes` floats per register. The wall clock can be shared on
 * a loaded machine, so each thread reports its own CPU time too. */
#define FMA_BODY(VEC, SET1, FMA, ADD, STORE, LANES)                                              \
    VEC m = SET1(0.999999f), c = SET1(1e-7f);                                                    \
    VEC a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3), a4 = SET1(4), a5 = SET1(5);      \
    VEC a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9), a10 = SET1(10), a11 = SET1(11);  \
    for (long it = 0; it < FMA_ITERS; it++) {                                                    \
        a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c), a3 = FMA(a3, m, c);          \
        a4 = FMA(a4, m, c), a5 = FMA(a5, m, c), a6 = FMA(a6, m, c), a7 = FMA(a7, m, c);          \
        a8 = FMA(a8, m, c), a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c);      \
        __asm__ volatile(""                                                                      \
                         : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), \
                           "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));                  \
    }                                                                                            \
    VEC s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                   \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                                 \
    float t[LANES];                                                                              \
    STORE(t, s);                                                                                 \
    struct timespec ts;                                                                          \
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);                                                 \
    ((double *)arg)[0] = t[0];                                                                   \
    ((double *)arg)[1] = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;                          \
    return NULL;

__attribute__((target("avx2,fma"))) static void *fma_loop_avx2(void *arg)
{
    FMA_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8)
}

__attribute__((target("avx512f,fma"))) static void *fma_loop_avx512(void *arg)
{
    FMA_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16)
}

/* GFLOP/s of n threads running the FMA loop of `lanes` (8: AVX2, 16:
 * AVX-512) floats (2 FLOPs per lane per FMA): wall-clock rate in *wall, and
 * the rate the threads reach while they are on a CPU (per-thread CPU
 * time; what a quiet machine gives) as result. */
static double peak_gflops(int n, int lanes, double *wall)
{
    pthread_t th[64];
    double out[64][2];
    double t0 = ims_now();
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, lanes == 16 ? fma_loop_avx512 : fma_loop_avx2, out[i]);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    double dt = ims_now() - t0, rate = 0, flops = (double)FMA_ITERS * FMA_CHAINS * lanes * 2;
    for (int i = 0; i < n; i++)
        rate += flops / out[i][1] / 1e9;
    *wall = n * flops / dt / 1e9;
    return rate;
}

/* "model name" of /proc/cpuinfo (the CPUID brand string), or "?". */
static void cpu_model(char *out, size_t n)
{
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && v) {
            v += v[1] == ' ' ? 2 : 1;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, n, "%s", v);
            break;
        }
    }
    if (f)
        fclose(f);
}

/* ---- synthetic MobileNetV2 (1.0, 224), as the Keras application ------------- */

static unsigned long long rng = 42;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

static uint32_t add(ims__graph *g, ims__node p, const char *name, uint32_t in, int64_t nw,
                    int64_t nb)
{
    float *w;
    if (nw) {
        ims__graph_add_weights(g, NULL, (uint64_t)nw, &p.weight, &w);
        for (int64_t i = 0; i < nw; i++)
            w[i] = frand() * 0.2f;
        p.n_weight = nw;
    }
    if (nb) {
        ims__graph_add_weights(g, NULL, (uint64_t)nb, &p.bias, &w);
        for (int64_t i = 0; i < nb; i++)
            w[i] = frand() * 0.1f;
        p.n_bias = nb;
    }
    uint32_t idx;
    ims_error err;
    if (ims__graph_add_node(g, &p, name, &in, in == UINT32_MAX ? 0 : 1, &idx, &err)) {
        fprintf(stderr, "synthetic: %s\n", err.msg);
        exit(1);
    }
    return idx;
}

static ims__node proto(uint32_t op)
{
    ims__node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.kh = n.kw = n.sh = n.sw = n.dh = n.dw = n.mult = 1;
    n.weight = n.bias = -1;
    return n;
}

static ims_nn_model *synthetic_mobilenet_v2(void)
{
    ims_nn_model *m = calloc(1, sizeof *m);
    ims__graph *g = &m->g;
    ims__graph_init(g);
    g->pp.width = g->pp.height = 224;
    ims__graph_add_string(g, "synthetic_mobilenet_v2", &g->model_name);
    uint32_t x = add(g, proto(IMS_OP_INPUT), "input", UINT32_MAX, 0, 0);
    ims__node p = proto(IMS_OP_PAD);
    p.pad_b = p.pad_r = 1;
    x = add(g, p, "Conv1_pad", x, 0, 0);
    ims__node c = proto(IMS_OP_CONV2D);
    c.kh = c.kw = 3, c.sh = c.sw = 2, c.c = 32, c.act = IMS_ACT_RELU, c.act_max = 6;
    x = add(g, c, "Conv1_relu", x, 27 * 32, 32);
    static const int cfg[][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                 {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int b = 0;
    for (int s = 0; s < 7; s++)
        for (int r = 0; r < cfg[s][2]; r++, b++) {
            int stride = r == 0 ? cfg[s][3] : 1, cin = g->nodes[x].c, e = cin * cfg[s][0];
            char name[64];
            uint32_t h = x;
            if (cfg[s][0] != 1) {
                ims__node ex = proto(IMS_OP_CONV2D);
                ex.c = e, ex.act = IMS_ACT_RELU, ex.act_max = 6;
                snprintf(name, sizeof name, "block_%d_expand_relu", b);
                h = add(g, ex, name, h, (int64_t)cin * e, e);
            }
            if (stride == 2) {
                snprintf(name, sizeof name, "block_%d_pad", b);
                h = add(g, p, name, h, 0, 0);
            }
            ims__node d = proto(IMS_OP_DWCONV2D);
            d.kh = d.kw = 3, d.sh = d.sw = stride, d.act = IMS_ACT_RELU, d.act_max = 6;
            if (stride == 1)
                d.pad_t = d.pad_b = d.pad_l = d.pad_r = 1;
            snprintf(name, sizeof name, "block_%d_depthwise_relu", b);
            h = add(g, d, name, h, 9LL * e, e);
            ims__node pr = proto(IMS_OP_CONV2D);
            pr.c = cfg[s][1];
            snprintf(name, sizeof name, "block_%d_project_BN", b);
            h = add(g, pr, name, h, (int64_t)e * pr.c, pr.c);
            if (stride == 1 && cin == pr.c) {
                ims__node a = proto(IMS_OP_ADD);
                uint32_t in[2] = {x, h}, idx;
                snprintf(name, sizeof name, "block_%d_add", b);
                ims_error err;
                ims__graph_add_node(g, &a, name, in, 2, &idx, &err);
                h = idx;
            }
            x = h;
        }
    c = proto(IMS_OP_CONV2D);
    c.c = 1280, c.act = IMS_ACT_RELU, c.act_max = 6;
    x = add(g, c, "out_relu", x, 320 * 1280, 1280);
    x = add(g, proto(IMS_OP_GAP), "global_average_pooling2d", x, 0, 0);
    g->feature = (int32_t)x;
    ims__node d = proto(IMS_OP_DENSE);
    d.c = 5;
    x = add(g, d, "dense", x, 1280 * 5, 5);
    g->output = (int32_t)add(g, proto(IMS_OP_SOFTMAX), "probs", x, 0, 0);
    g->n_classes = 5;
    for (int i = 0; i < 5; i++) {
        uint32_t off;
        ims__graph_add_string(g, "class", &off);
        if (i == 0)
            g->classes = off;
    }
    return m;
}

/* CPU seconds used by this process (all threads). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- one configuration (child process) ------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int child(const char *path, int batch, int threads, int runs, const char *taps)
{
    char tapbuf[4096], *tap[16];
    int n_taps = 0;
    snprintf(tapbuf, sizeof tapbuf, "%s", taps ? taps : "");
    for (char *save = NULL, *t = strtok_r(tapbuf, ",\n", &save); t && n_taps < 16;
         t = strtok_r(NULL, ",\n", &save))
        tap[n_taps++] = t;
    ims_nn_model *m = NULL;
    ims_error err;
    if (!strcmp(path, "synthetic"))
        m = synthetic_mobilenet_v2();
    else if (ims_nn_open(path, &m, &err)) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return 1;
    }
    ims_nn_session_opts o = {n_taps ? (const char *const *)tap : NULL, n_taps,
                             !n_taps && ims_nn_n_classes(m) > 0, batch, threads};
    ims_nn_session *s;
    if (ims_nn_session_new(m, &o, &s, &err)) {
        fprintf(stderr, "session: %s\n", err.msg);
        return 1;
    }
    const ims_preprocess *pp = ims_nn_preprocess(m);
    size_t n_in = (size_t)batch * pp->width * pp->height * 3;
    float *x = ims_aligned_alloc(64, n_in * sizeof(float));
    float *f = malloc((size_t)batch * ims_nn_session_dim(s) * sizeof(float) + 4);
    float *pr = malloc((size_t)batch * (ims_nn_n_classes(m) + 1) * sizeof(float));
    for (size_t i = 0; i < n_in; i++)
        x[i] = frand() + 0.5f;
    double t[64], cpu[64];
    if (runs > 64)
        runs = 64;
    ims_nn_session_run(s, x, batch, f, o.want_probs ? pr : NULL, &err); /* warm-up */
    for (int r = 0; r < runs; r++) {
        double t0 = ims_now(), c0 = cpu_now();
        ims_nn_session_run(s, x, batch, f, o.want_probs ? pr : NULL, &err);
        t[r] = ims_now() - t0;
        cpu[r] = cpu_now() - c0;
    }
    qsort(t, (size_t)runs, sizeof t[0], cmp_double);
    qsort(cpu, (size_t)runs, sizeof cpu[0], cmp_double);
    double flops;
    ims_nn_stats(m, NULL, &flops);
    printf("{\"model\":\"%s\",\"batch\":%d,\"threads\":%d,\"runs\":%d,\"best_img_per_s\":%.2f,"
           "\"median_img_per_s\":%.2f,\"gflop_per_img\":%.4f,\"peak_rss_mb\":%.1f,\"cpu_s_per_img\":%.4f}\n",
           ims_nn_name(m), batch, threads, runs, batch / t[0], batch / t[runs / 2], flops / 1e9,
           (double)ims_peak_rss() / (1 << 20), cpu[0] / batch);
    ims_nn_session_free(s);
    ims_aligned_free(x);
    free(f);
    free(pr);
    if (!strcmp(path, "synthetic")) {
        ims__graph_release(&m->g);
        free(m);
    } else {
        ims_nn_close(m);
    }
    return 0;
}

/* ---- driver ------------------------------------------------------------------ */

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (!s)
            break;
        s++;
    }
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    ims_init();
    if ((argc == 6 || argc == 7) && !strcmp(argv[1], "--child"))
        return child(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
                     argc == 7 ? argv[6] : NULL);
    const char *dir = getenv("IMS_MODELS_DIR") ? getenv("IMS_MODELS_DIR") : "models";
    int batches[8] = {1, 16}, nb = 2, threads[8] = {1, 2}, nt = 2, runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            nb = parse_list(argv[++i], batches, 8);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nt = parse_list(argv[++i], threads, 8);
        else {
            fprintf(stderr,
                    "usage: %s [--models DIR] [--runs N] [--batch 1,16] [--threads 1,2]\n",
                    argv[0]);
            return 2;
        }
    }
    char *models[32];
    int n_models = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n_models < 32) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".ism")) {
            models[n_models] = malloc(strlen(dir) + l + 2);
            sprintf(models[n_models++], "%s/%s", dir, e->d_name);
        }
    }
    if (d)
        closedir(d);
    qsort(models, (size_t)n_models, sizeof models[0], cmp_str);
    if (!n_models)
        models[n_models++] = strdup("synthetic");

    /* the peak of the widest ISA the kernels in force use */
    int level = ims_cpu_level(), lanes = level >= IMS_CPU_AVX512 ? 16 : 8;
    char model[256];
    cpu_model(model, sizeof model);
    double wall[2], peak[2] = {peak_gflops(1, lanes, &wall[0]), peak_gflops(2, lanes, &wall[1])};
    double la[3] = {0};
    if (getloadavg(la, 3) < 0)
        la[0] = -1;
    printf("# cpu: %s; kernel level %s (cpu supports %s); %d online CPUs; OpenBLAS core %s\n",
           model, ims_cpu_level_name(level), ims_cpu_level_name(ims_cpu_detect()), ims_cpu_count(),
           ims_nn_blas_core());
    printf("# peak %s FMA rate (CPU time, %d chains): %.1f GFLOP/s (1 thread), %.1f GFLOP/s "
           "(2 threads); wall clock: %.1f, %.1f; load %.2f\n",
           lanes == 16 ? "AVX-512" : "AVX2", FMA_CHAINS, peak[0], peak[1], wall[0], wall[1], la[0]);
    printf("# %-22s %5s %7s %10s %10s %8s %9s %8s %11s\n", "model", "batch", "threads",
           "best img/s", "med img/s", "GFLOP/img", "%peak", "RSS MB", "CPU ms/img");
    fflush(stdout);
    for (int mi = 0; mi < n_models; mi++)
        for (int bi = 0; bi < nb; bi++)
            for (int ti = 0; ti < nt; ti++) {
                char cmd[1200];
                snprintf(cmd, sizeof cmd, "'/proc/%d/exe' --child '%s' %d %d %d", (int)getpid(),
                         models[mi], batches[bi], threads[ti], runs);
                FILE *p = popen(cmd, "r");
                char line[1024] = "";
                if (!p || !fgets(line, sizeof line, p)) {
                    if (p)
                        pclose(p);
                    printf("# %s: failed\n", models[mi]);
                    continue;
                }
                pclose(p);
                char name[128] = "?";
                int b = 0, th = 0, r = 0;
                double best = 0, med = 0, gf = 0, rss = 0, cpu = 0;
                sscanf(line,
                       "{\"model\":\"%127[^\"]\",\"batch\":%d,\"threads\":%d,\"runs\":%d,"
                       "\"best_img_per_s\":%lf,\"median_img_per_s\":%lf,\"gflop_per_img\":%lf,"
                       "\"peak_rss_mb\":%lf,\"cpu_s_per_img\":%lf}",
                       name, &b, &th, &r, &best, &med, &gf, &rss, &cpu);
                double pk = th >= 2 ? peak[1] : peak[0];
                printf("  %-22s %5d %7d %10.2f %10.2f %8.3f %8.1f%% %8.1f %11.2f\n", name, b, th,
                       best, med, gf, 100 * best * gf / pk, rss, 1e3 * cpu);
                fflush(stdout);
            }
    for (int mi = 0; mi < n_models; mi++)
        free(models[mi]);
    return 0;
}
