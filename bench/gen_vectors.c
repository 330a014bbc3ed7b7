/* SPDX-License-Identifier: MIT */
/*
 * gen_vectors.c — synthetic ANN benchmark sets with exact ground truth.
 *
 * Writes DIR/base.fvecs, DIR/query.fvecs, DIR/truth.ivecs (TEXMEX formats:
 * each .fvecs record is an int32 dim then dim float32; each .ivecs record an
 * int32 k then k int32 ids, nearest first) and DIR/meta.txt (set, metric,
 * sizes, generator parameters).
 *
 * Model. Every vector belongs to one of C clusters (sizes Zipf-like) and is
 *
 *     x = relu(mu_c + s_c * A_c z + sigma * e)        z ~ N(0, I_L), e ~ N(0, I_d)
 *
 * mu_c a non-negative centre, A_c a d x L random basis whose column j has
 * scale j^-1/2 (a few strong directions, a tail of weak ones), s_c a
 * per-cluster spread (log-normal), sigma a small isotropic noise. L, the
 * latent dimension, sets the intrinsic dimensionality and hence how hard
 * the set is for a graph index; real CNN features and SIFT sit around
 * 10-40. Two presets:
 *
 *   embed-like  200,000 x 1280, 300 clusters, L=24, centres = a shared
 *               "global mean" (as GAP features share) + a sparse cluster
 *               part, ReLU sparsity, then L2-normalised; metric cosine.
 *   sift-like   1,000,000 x 128, 1000 clusters, L=16, values rounded to
 *               integers and clipped to 0..150; metric L2.
 *
 * Queries come from the same model with their own random streams (never
 * copies of base vectors). Each vector draws from its own RNG stream keyed
 * by (seed, set, index), so output does not depend on thread count.
 *
 * Ground truth: blocked sgemm Q * X^T (OpenBLAS), distance
 * |q|^2 + |x|^2 - 2 q.x for L2 and -q.x for cosine/ip, top-k per query
 * kept in a max-heap ordered by (distance, id). For the sift-like set every
 * product is an exact integer below 2^24, so its distances are exact. A few
 * queries are then re-checked against a scalar double-precision loop.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "imgsim/vecs.h"

typedef struct params {
    const char *set;      /* preset name */
    const char *out;      /* output directory */
    const char *metric;   /* "l2", "cosine" or "ip" */
    long n_base;          /* base vectors */
    long n_query;         /* query vectors */
    int n_dims;           /* dimension d */
    int n_clusters;       /* C */
    int n_latent;         /* L */
    float spread;         /* scale of A_c z */
    float sigma;          /* isotropic noise */
    int k;                /* neighbours kept in truth.ivecs */
    int n_check;          /* queries re-checked with the scalar loop */
    int n_threads;        /* generator threads */
    uint64_t seed;
} params;

typedef struct model {
    const params *p;
    float *mu;            /* C x d centres */
    float *basis;         /* C x d x L, column-scaled */
    float *scale;         /* C spreads */
    double *cum;          /* C cumulative cluster weights */
} model;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *msg, const char *arg)
{
    fprintf(stderr, "gen_vectors: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory", NULL);
    return p;
}

/* ---- RNG: splitmix64 seeding, xoshiro256** stream, polar Gaussians ---- */

typedef struct rng {
    uint64_t s[4];
    int have_spare;
    double spare;
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull) ^ (index * 0x8CB92BA72F3D8DD7ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
    r->have_spare = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_u64(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double rng_unif(rng *r) { return (rng_u64(r) >> 11) * 0x1.0p-53; }

static double rng_gauss(rng *r)
{
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2 * rng_unif(r) - 1;
        v = 2 * rng_unif(r) - 1;
        s = u * u + v * v;
    } while (s >= 1 || s == 0);
    double f = sqrt(-2 * log(s) / s);
    r->spare = v * f;
    r->have_spare = 1;
    return u * f;
}

/* ---- the cluster model ---- */

enum { STREAM_MODEL = 1, STREAM_BASE = 2, STREAM_QUERY = 3 };

static int is_embed(const params *p) { return strcmp(p->set, "embed-like") == 0; }

static void model_init(model *m, const params *p)
{
    int C = p->n_clusters, d = p->n_dims, L = p->n_latent;
    rng r;
    rng_seed(&r, p->seed, STREAM_MODEL, 0);
    m->p = p;
    m->mu = xmalloc(sizeof(float) * C * d);
    m->basis = xmalloc(sizeof(float) * (size_t)C * d * L);
    m->scale = xmalloc(sizeof(float) * C);
    m->cum = xmalloc(sizeof(double) * C);

    float *global = xmalloc(sizeof(float) * d);
    for (int i = 0; i < d; i++) /* exponential: few large, many small */
        global[i] = (float)(-log(1 - rng_unif(&r)));
    for (int c = 0; c < C; c++) {
        float *mu = m->mu + (size_t)c * d;
        for (int i = 0; i < d; i++) {
            if (is_embed(p)) {
                /* shared mean + sparse cluster-specific bumps */
                double bump = rng_unif(&r) < 0.15 ? 2.5 * -log(1 - rng_unif(&r)) : 0;
                mu[i] = (float)(0.6 * global[i] + bump - 0.4);
            } else {
                /* SIFT-ish: half the bins near zero, the rest exponential */
                mu[i] = rng_unif(&r) < 0.5 ? 0.f : (float)(30 * -log(1 - rng_unif(&r)));
            }
        }
        float *A = m->basis + (size_t)c * d * L;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < L; j++)
                A[(size_t)i * L + j] = (float)(rng_gauss(&r) / sqrt(j + 1.0));
        m->scale[c] = (float)exp(0.35 * rng_gauss(&r));
        double w = 1.0 / pow(c + 1, 0.5); /* Zipf-like cluster sizes */
        m->cum[c] = (c ? m->cum[c - 1] : 0) + w;
    }
    for (int c = 0; c < C; c++)
        m->cum[c] /= m->cum[C - 1];
    free(global);
}

static void model_free(model *m)
{
    free(m->mu);
    free(m->basis);
    free(m->scale);
    free(m->cum);
}

/* Draws vector `index` of `stream` into x (d floats). */
static void model_draw(const model *m, int stream, long index, float *x, float *z)
{
    const params *p = m->p;
    int d = p->n_dims, L = p->n_latent;
    rng r;
    rng_seed(&r, p->seed, stream, (uint64_t)index);
    double u = rng_unif(&r);
    int lo = 0, hi = p->n_clusters - 1;
    while (lo < hi) { /* first c with cum[c] > u */
        int mid = (lo + hi) / 2;
        if (m->cum[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    int c = lo;
    for (int j = 0; j < L; j++)
        z[j] = (float)rng_gauss(&r) * m->scale[c] * p->spread;
    const float *mu = m->mu + (size_t)c * d, *A = m->basis + (size_t)c * d * L;
    for (int i = 0; i < d; i++) {
        const float *a = A + (size_t)i * L;
        float v = mu[i];
        for (int j = 0; j < L; j++)
            v += a[j] * z[j];
        v += p->sigma * (float)rng_gauss(&r);
        x[i] = v > 0 ? v : 0;
    }
    if (is_embed(p)) {
        double nn = 0;
        for (int i = 0; i < d; i++)
            nn += (double)x[i] * x[i];
        if (nn == 0) { /* all-zero after ReLU: fall back to the centre */
            for (int i = 0; i < d; i++)
                x[i] = mu[i] > 0 ? mu[i] : 1e-3f;
            for (int i = 0; i < d; i++)
                nn += (double)x[i] * x[i];
        }
        float inv = (float)(1 / sqrt(nn));
        for (int i = 0; i < d; i++)
            x[i] *= inv;
    } else {
        for (int i = 0; i < d; i++) {
            float v = roundf(x[i]);
            x[i] = v > 150 ? 150 : v;
        }
    }
}

typedef struct draw_job {
    const model *m;
    int stream;
    long begin, end;
    float *out;
} draw_job;

static void *draw_range(void *arg)
{
    draw_job *j = arg;
    int d = j->m->p->n_dims;
    float *z = xmalloc(sizeof(float) * j->m->p->n_latent);
    for (long i = j->begin; i < j->end; i++)
        model_draw(j->m, j->stream, i, j->out + (size_t)i * d, z);
    free(z);
    return NULL;
}

static float *draw_all(const model *m, int stream, long n)
{
    int T = m->p->n_threads;
    float *x = xmalloc(sizeof(float) * (size_t)n * m->p->n_dims);
    pthread_t th[64];
    draw_job jobs[64];
    for (int t = 0; t < T; t++) {
        jobs[t] = (draw_job){m, stream, n * t / T, n * (t + 1) / T, x};
        if (pthread_create(&th[t], NULL, draw_range, &jobs[t]))
            die("pthread_create failed", NULL);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    return x;
}

/* ---- ground truth ---- */

typedef struct hitem {
    float dist;
    int32_t id;
} hitem;

/* a precedes b in result order: smaller distance, then smaller id. */
static inline int before(hitem a, hitem b)
{
    return a.dist < b.dist || (a.dist == b.dist && a.id < b.id);
}

/* Max-heap of the k best so far; h[0] is the worst kept. */
static void heap_push(hitem *h, int *n, int k, hitem x)
{
    if (*n < k) {
        int i = (*n)++;
        while (i > 0) {
            int parent = (i - 1) / 2;
            if (!before(h[parent], x))
                break;
            h[i] = h[parent];
            i = parent;
        }
        h[i] = x;
        return;
    }
    if (!before(x, h[0]))
        return;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, big = i;
        hitem hb = x;
        if (l < k && before(hb, h[l]))
            big = l, hb = h[l];
        if (r < k && before(hb, h[r]))
            big = r, hb = h[r];
        if (big == i)
            break;
        h[i] = h[big];
        i = big;
    }
    h[i] = x;
}

static int cmp_hitem(const void *a, const void *b)
{
    hitem x = *(const hitem *)a, y = *(const hitem *)b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

typedef struct topk_job {
    const float *dots;    /* nq x nb block */
    const float *qn, *xn; /* squared norms */
    long q_begin, q_end, nb, base0;
    int l2, k;
    hitem *heaps;         /* nq x k */
    int *fill;
} topk_job;

static void *topk_range(void *arg)
{
    topk_job *j = arg;
    for (long q = j->q_begin; q < j->q_end; q++) {
        const float *row = j->dots + (size_t)q * j->nb;
        hitem *h = j->heaps + (size_t)q * j->k;
        int *n = &j->fill[q];
        for (long b = 0; b < j->nb; b++) {
            float dist = j->l2 ? j->qn[q] + j->xn[j->base0 + b] - 2 * row[b] : -row[b];
            if (*n == j->k && dist > h[0].dist)
                continue; /* fast reject */
            heap_push(h, n, j->k, (hitem){dist, (int32_t)(j->base0 + b)});
        }
    }
    return NULL;
}

static hitem *ground_truth(const params *p, const float *X, const float *Q)
{
    long nb = p->n_base, nq = p->n_query;
    int d = p->n_dims, k = p->k, l2 = strcmp(p->metric, "l2") == 0, T = p->n_threads;
    const long block = 8192;
    float *xn = xmalloc(sizeof(float) * nb), *qn = xmalloc(sizeof(float) * nq);
    for (long i = 0; i < nb; i++)
        xn[i] = cblas_sdot(d, X + (size_t)i * d, 1, X + (size_t)i * d, 1);
    for (long i = 0; i < nq; i++)
        qn[i] = cblas_sdot(d, Q + (size_t)i * d, 1, Q + (size_t)i * d, 1);
    hitem *heaps = xmalloc(sizeof(hitem) * nq * k);
    int *fill = calloc(nq, sizeof(int));
    float *dots = xmalloc(sizeof(float) * nq * block);
    double t_gemm = 0, t_sel = 0;
    for (long b0 = 0; b0 < nb; b0 += block) {
        long n = nb - b0 < block ? nb - b0 : block;
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)n, d, 1.f, Q, d,
                    X + (size_t)b0 * d, d, 0.f, dots, (int)n);
        double t1 = now();
        pthread_t th[64];
        topk_job jobs[64];
        for (int t = 0; t < T; t++) {
            jobs[t] = (topk_job){dots, qn, xn, nq * t / T, nq * (t + 1) / T, n, b0, l2, k, heaps, fill};
            pthread_create(&th[t], NULL, topk_range, &jobs[t]);
        }
        for (int t = 0; t < T; t++)
            pthread_join(th[t], NULL);
        t_gemm += t1 - t0;
        t_sel += now() - t1;
    }
    for (long q = 0; q < nq; q++)
        qsort(heaps + (size_t)q * k, fill[q], sizeof(hitem), cmp_hitem);
    printf("truth: sgemm %.1f s, top-%d selection %.1f s\n", t_gemm, k, t_sel);
    free(dots);
    free(fill);
    free(xn);
    free(qn);
    return heaps;
}

/* Re-checks query q against a scalar double loop; returns id mismatches. */
static int check_query(const params *p, const float *X, const float *Q, long q, const hitem *gt)
{
    long nb = p->n_base;
    int d = p->n_dims, k = p->k, l2 = strcmp(p->metric, "l2") == 0;
    hitem *h = xmalloc(sizeof(hitem) * k);
    int n = 0;
    const float *qv = Q + (size_t)q * d;
    for (long b = 0; b < nb; b++) {
        const float *x = X + (size_t)b * d;
        double s = 0;
        for (int i = 0; i < d; i++)
            s += l2 ? ((double)qv[i] - x[i]) * ((double)qv[i] - x[i]) : (double)qv[i] * x[i];
        heap_push(h, &n, k, (hitem){(float)(l2 ? s : -s), (int32_t)b});
    }
    qsort(h, n, sizeof(hitem), cmp_hitem);
    int mism = 0;
    double maxdiff = 0;
    for (int r = 0; r < k; r++) {
        mism += h[r].id != gt[r].id;
        double diff = fabs((double)h[r].dist - gt[r].dist);
        if (diff > maxdiff)
            maxdiff = diff;
    }
    printf("check: query %ld: %d/%d ids differ (ties or rounding), max |dist diff| at equal rank %.3g\n",
           q, mism, k, maxdiff);
    free(h);
    return mism;
}

/* ---- output ---- */

static void write_fvecs(const char *path, const float *x, long n, int d)
{
    ims_error err = {0};
    if (ims_vecs_write(path, x, (size_t)n, (uint32_t)d, &err))
        die(err.msg, NULL);
}

static void write_ivecs(const char *path, const hitem *h, long n, int k)
{
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)n * k);
    for (size_t i = 0; i < (size_t)n * k; i++)
        ids[i] = h[i].id;
    ims_error err = {0};
    if (ims_vecs_write(path, ids, (size_t)n, (uint32_t)k, &err))
        die(err.msg, NULL);
    free(ids);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_gen_vectors --set embed-like|sift-like --out DIR\n"
            "         [--n N] [--nq N] [--clusters C] [--latent L] [--spread S] [--sigma S]\n"
            "         [--k 100] [--check 5] [--threads 2] [--seed 42]\n"
            "Writes DIR/base.fvecs, query.fvecs, truth.ivecs (exact top-k) and meta.txt.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    params p = {0};
    p.n_query = 1000;
    p.k = 100;
    p.n_check = 5;
    p.n_threads = 2;
    p.seed = 42;
    long n = -1, nq = -1;
    int clusters = -1, latent = -1;
    float spread = -1, sigma = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--set")) p.set = v;
        else if (!strcmp(a, "--out")) p.out = v;
        else if (!strcmp(a, "--n")) n = atol(v);
        else if (!strcmp(a, "--nq")) nq = atol(v);
        else if (!strcmp(a, "--clusters")) clusters = atoi(v);
        else if (!strcmp(a, "--latent")) latent = atoi(v);
        else if (!strcmp(a, "--spread")) spread = (float)atof(v);
        else if (!strcmp(a, "--sigma")) sigma = (float)atof(v);
        else if (!strcmp(a, "--k")) p.k = atoi(v);
        else if (!strcmp(a, "--check")) p.n_check = atoi(v);
        else if (!strcmp(a, "--threads")) p.n_threads = atoi(v);
        else if (!strcmp(a, "--seed")) p.seed = strtoull(v, NULL, 10);
        else usage();
    }
    if (!p.set || !p.out)
        usage();
    if (!strcmp(p.set, "embed-like")) {
        p.metric = "cosine";
        p.n_base = 200000, p.n_dims = 1280, p.n_clusters = 300, p.n_latent = 24;
        p.spread = 0.8f, p.sigma = 0.08f;
    } else if (!strcmp(p.set, "sift-like")) {
        p.metric = "l2";
        p.n_base = 1000000, p.n_dims = 128, p.n_clusters = 1000, p.n_latent = 16;
        p.spread = 16.f, p.sigma = 3.f;
    } else {
        die("unknown --set", p.set);
    }
    if (n > 0) p.n_base = n;
    if (nq > 0) p.n_query = nq;
    if (clusters > 0) p.n_clusters = clusters;
    if (latent > 0) p.n_latent = latent;
    if (spread >= 0) p.spread = spread;
    if (sigma >= 0) p.sigma = sigma;
    if (p.n_threads < 1 || p.n_threads > 64 || p.k < 1 || p.k > p.n_base || p.n_base > INT32_MAX)
        usage();
    if (mkdir(p.out, 0755) && errno != EEXIST)
        die(strerror(errno), p.out);

    printf("set=%s n=%ld nq=%ld d=%d metric=%s clusters=%d latent=%d spread=%g sigma=%g seed=%llu\n",
           p.set, p.n_base, p.n_query, p.n_dims, p.metric, p.n_clusters, p.n_latent, p.spread,
           p.sigma, (unsigned long long)p.seed);
    double t0 = now();
    model m;
    model_init(&m, &p);
    float *X = draw_all(&m, STREAM_BASE, p.n_base);
    float *Q = draw_all(&m, STREAM_QUERY, p.n_query);
    double t1 = now();
    printf("generate: %.1f s\n", t1 - t0);
    fflush(stdout);

    hitem *gt = ground_truth(&p, X, Q);
    double t2 = now();
    printf("truth: %.1f s total\n", t2 - t1);
    fflush(stdout);

    int bad = 0;
    for (int i = 0; i < p.n_check && i < p.n_query; i++)
        bad += check_query(&p, X, Q, (long)i * p.n_query / p.n_check, gt + (size_t)i * p.n_query / p.n_check * p.k) > p.k / 10;
    double t3 = now();
    printf("check: %.1f s\n", t3 - t2);

    char path[4096];
    snprintf(path, sizeof path, "%s/base.fvecs", p.out);
    write_fvecs(path, X, p.n_base, p.n_dims);
    snprintf(path, sizeof path, "%s/query.fvecs", p.out);
    write_fvecs(path, Q, p.n_query, p.n_dims);
    snprintf(path, sizeof path, "%s/truth.ivecs", p.out);
    write_ivecs(path, gt, p.n_query, p.k);
    snprintf(path, sizeof path, "%s/meta.txt", p.out);
    FILE *f = fopen(path, "w");
    if (!f)
        die(strerror(errno), path);
    fprintf(f, "set=%s\nmetric=%s\nn=%ld\nnq=%ld\nd=%d\nk=%d\nclusters=%d\nlatent=%d\nspread=%g\nsigma=%g\nseed=%llu\n",
            p.set, p.metric, p.n_base, p.n_query, p.n_dims, p.k, p.n_clusters, p.n_latent, p.spread,
            p.sigma, (unsigned long long)p.seed);
    fclose(f);
    printf("write: %.1f s; total %.1f s\n", now() - t3, now() - t0);

    model_free(&m);
    free(X);
    free(Q);
    free(gt);
    if (bad) {
        fprintf(stderr, "gen_vectors: %d checked queries disagree with the scalar loop\n", bad);
        return 1;
    }
    return 0;
}
