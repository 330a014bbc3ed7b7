/* SPDX-License-Identifier: MIT */
/*
 * finetune_eval.c — held-out evaluation of raw taps, the seed method and
 * the trained heads (issue 7), from cached backbone features.
 *
 *   bench_finetune_eval --model M.ism --taps TAPS.txt --list FILES.txt
 *                       --orig ORIG.fvecs --dist DIST.fvecs [--seeds N]
 *                       [--raw] [--use I,J,..] [--seed-tap I]
 * TAPS.txt: the tap names (one a line) in the order the .fvecs rows
 * concatenate them (`imgsim embed --layer A --layer B ...`); FILES.txt the
 * images (already deduplicated), label = parent folder; DIST.fvecs the
 * features of one distorted copy per image (bench_distort_copies).
 *
 * Protocol, per split seed (1..N, averaged): stratified 20% validation
 * split (ims_train_split); heads train on the training items only (the
 * FUSION+aug head also sees the training items' distorted copies); every
 * item is embedded; each validation item queries all other items (hit =
 * same category): P@1/5/10, mAP@10; each validation item's distorted copy
 * queries all items: instance recall@1/@10 of its original.
 * --raw: every single tap and every pair of taps, raw (unit taps only).
 * Otherwise, on the taps of --use: raw, seed MLP (on --seed-tap), LDA,
 * FUSION (w capped, no copies) and FUSION+aug (w guarded by copies).
 *
 * Experiments (environment; bench/RESULTS-finetune.md lists the outcomes):
 *   BENCH_ONLY=raw,lda,...   run only these methods (raw, rawseed, seed, lda,
 *                            fusion, fusion+aug, lda+aug)
 *   BENCH_W=w, BENCH_DIM=k   fixed fusion weight / LDA dims
 *   BENCH_WHITEN=a           shrunk PCA whitening of the unit taps (learned
 *                            on the training items, shrinkage a,
 *                            ims__whiten_fit) before everything, the head's
 *                            own whitening off; BENCH_WRANK=r keeps r
 *                            components
 *   BENCH_WRAW=a             the head's whitening of the fusion's raw part
 *                            (ims_train_opts.whiten: the LDA still sees the
 *                            unit taps) with shrinkage a; 0 = off. Unset:
 *                            the library's default (on, a = .3)
 *   BENCH_RERANK=alpha,tau   two-part score z.z' + alpha u.u', items with
 *                            u.u' > tau first (near-duplicate guard)
 *   BENCH_PRIOR=g,tau,log    fused cosine + g p(item's category | query)
 *                            from the head's classifier (log=1: log p),
 *                            with the same guard
 *   BENCH_GALLERY=train      category queries search the training items
 *                            only (imgsim eval's protocol)
 *   BENCH_SQRT=1, BENCH_LEAK=1  signed square root; train on all items
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imgsim/nn.h"
#include "imgsim/train.h"
#include "train/train_int.h"

#define MAX_TAPS 16

static float *read_fvecs(const char *path, int *n, int *dim)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int d;
    if (fread(&d, 4, 1, f) != 1) {
        fclose(f);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    int m = (int)(len / (4 + 4L * d));
    float *x = malloc((size_t)m * d * sizeof *x);
    for (int i = 0; i < m; i++) {
        int dd;
        if (fread(&dd, 4, 1, f) != 1 || dd != d ||
            fread(x + (size_t)i * d, 4, (size_t)d, f) != (size_t)d) {
            fclose(f);
            free(x);
            return NULL;
        }
    }
    fclose(f);
    *n = m, *dim = d;
    return x;
}

typedef struct bench {
    int n, D, n_taps, tap_dim[MAX_TAPS], tap_off[MAX_TAPS];
    char tap_name[MAX_TAPS][256];
    float *orig, *dist;
    int *labels, n_classes;
    int n_seeds;
} bench;

/* Columns of the chosen taps from a full row matrix (n x D) into out. */
static float *select_taps(const bench *b, const float *x, const int *use, int n_use, int *d)
{
    int dd = 0;
    for (int t = 0; t < n_use; t++)
        dd += b->tap_dim[use[t]];
    float *o = malloc((size_t)b->n * dd * sizeof *o);
    for (int i = 0; i < b->n; i++) {
        int off = 0;
        for (int t = 0; t < n_use; t++) {
            memcpy(o + (size_t)i * dd + off, x + (size_t)i * b->D + b->tap_off[use[t]],
                   (size_t)b->tap_dim[use[t]] * sizeof *o);
            off += b->tap_dim[use[t]];
        }
    }
    *d = dd;
    return o;
}

typedef struct result {
    double p1, p5, p10, map, r1, r10, w, shrink, acc, secs;
} result;

/* Category scores of S (nq x n, rows = validation items q[]): against all
 * other items, or with BENCH_GALLERY=train against the training items only
 * (imgsim eval's protocol: the gallery the head was trained on). */
static void cat_scores(const bench *b, const float *S, const int *q, int nq,
                       const unsigned char *is_val, double *p1, double *p5, double *p10,
                       double *map)
{
    const char *g = getenv("BENCH_GALLERY");
    if (!g || strcmp(g, "train")) {
        ims__retrieval(S, nq, b->n, q, b->labels, p1, p5, p10, map);
        return;
    }
    int ng = 0, *lab = malloc((size_t)(b->n + nq) * sizeof *lab),
        *qi = malloc((size_t)nq * sizeof *qi);
    float *T = malloc((size_t)nq * b->n * sizeof *T);
    for (int j = 0; j < b->n; j++)
        if (!is_val[j])
            lab[ng++] = b->labels[j];
    for (int a = 0; a < nq; a++) {
        lab[ng + a] = b->labels[q[a]], qi[a] = ng + a;
        int c = 0;
        for (int j = 0; j < b->n; j++)
            if (!is_val[j])
                T[(size_t)a * ng + c++] = S[(size_t)a * b->n + j];
    }
    ims__retrieval(T, nq, ng, qi, lab, p1, p5, p10, map);
    free(lab), free(qi), free(T);
}

/* Evaluate embeddings e (of originals) and ea (of copies), dim each. */
static void score(const bench *b, const float *e, const float *ea, int dim,
                  const unsigned char *is_val, result *r)
{
    int *q = malloc((size_t)b->n * sizeof *q), nq = 0;
    for (int i = 0; i < b->n; i++)
        if (is_val[i])
            q[nq++] = i;
    float *S = malloc((size_t)nq * b->n * sizeof *S);
    double p1, p5, p10, map, r1, r10;
    ims__sim(e, q, nq, e, b->n, dim, S);
    cat_scores(b, S, q, nq, is_val, &p1, &p5, &p10, &map);
    ims__sim(ea, q, nq, e, b->n, dim, S);
    ims__instance_recall(S, nq, b->n, q, &r1, &r10);
    r->p1 += p1, r->p5 += p5, r->p10 += p10, r->map += map, r->r1 += r1, r->r10 += r10;
    free(S);
    free(q);
}

static void print_row(const char *method, const char *taps, const result *r, int n_seeds)
{
    double k = 1.0 / n_seeds;
    printf("%-10s %-28s P@1 %.3f P@5 %.3f P@10 %.3f mAP@10 %.3f | inst r@1 %.3f r@10 %.3f", method,
           taps, r->p1 * k, r->p5 * k, r->p10 * k, r->map * k, r->r1 * k, r->r10 * k);
    if (r->w > 0 || r->shrink > 0 || r->acc > 0)
        printf(" | w %.2f shrink %.2f acc %.3f", r->w * k, r->shrink * k, r->acc * k);
    printf(" | %.2fs\n", r->secs * k);
    fflush(stdout);
}

/* Two-part re-rank of a FUSION embedding (first d values: u/sqrt(1+w^2),
 * then w z/sqrt(1+w^2)): score = z.z' + alpha u.u', and items whose u.u'
 * exceeds tau come first (near-duplicate guard). */
static void score_rerank(const bench *b, const float *e, const float *ea, int dim, int d, float w,
                         double alpha, double tau, const unsigned char *is_val, result *r)
{
    int *q = malloc((size_t)b->n * sizeof *q), nq = 0;
    for (int i = 0; i < b->n; i++)
        if (is_val[i])
            q[nq++] = i;
    float *Su = malloc((size_t)nq * b->n * sizeof *Su),
          *Sz = malloc((size_t)nq * b->n * sizeof *Sz);
    double p1, p5, p10, map, r1, r10;
    double cu = 1 + (double)w * w, cz = cu / ((double)w * w);
    for (int pass = 0; pass < 2; pass++) {
        const float *qe = pass ? ea : e;
        for (int a = 0; a < nq; a++)
            for (int j = 0; j < b->n; j++) {
                const float *x = qe + (size_t)q[a] * dim, *y = e + (size_t)j * dim;
                double su = 0, sz = 0;
                for (int t = 0; t < d; t++)
                    su += x[t] * y[t];
                for (int t = d; t < dim; t++)
                    sz += x[t] * y[t];
                su *= cu, sz *= cz;
                Su[(size_t)a * b->n + j] = (float)(sz + alpha * su + (su > tau ? 10 : 0));
            }
        if (!pass)
            cat_scores(b, Su, q, nq, is_val, &p1, &p5, &p10, &map);
        else
            ims__instance_recall(Su, nq, b->n, q, &r1, &r10);
    }
    r->p1 += p1, r->p5 += p5, r->p10 += p10, r->map += map, r->r1 += r1, r->r10 += r10;
    free(Su), free(Sz), free(q);
}

/* Label-aware score: fused cosine + gamma p(category of item | query), the
 * query's probabilities from the head's classifier (pq for originals, pa
 * for copies, n x C); items whose raw-part similarity exceeds tau first. */
static void score_prior(const bench *b, const float *e, const float *ea, int dim, int d, float w,
                        const float *pq, const float *pa, double gamma, double tau, int use_log,
                        const unsigned char *is_val, result *r)
{
    int *q = malloc((size_t)b->n * sizeof *q), nq = 0, C = b->n_classes;
    for (int i = 0; i < b->n; i++)
        if (is_val[i])
            q[nq++] = i;
    float *S = malloc((size_t)nq * b->n * sizeof *S);
    double p1, p5, p10, map, r1, r10;
    double cu = 1 + (double)w * w;
    for (int pass = 0; pass < 2; pass++) {
        const float *qe = pass ? ea : e, *pp = pass ? pa : pq;
        for (int a = 0; a < nq; a++)
            for (int j = 0; j < b->n; j++) {
                const float *x = qe + (size_t)q[a] * dim, *y = e + (size_t)j * dim;
                double su = 0, s = 0;
                for (int t = 0; t < d; t++)
                    su += x[t] * y[t];
                for (int t = 0; t < dim; t++)
                    s += x[t] * y[t];
                su *= cu;
                double p = pp[(size_t)q[a] * C + b->labels[j]];
                double pr = use_log ? log(p + 1e-6) : p;
                S[(size_t)a * b->n + j] = (float)(s + gamma * pr + (su > tau ? 10 : 0));
            }
        if (!pass)
            cat_scores(b, S, q, nq, is_val, &p1, &p5, &p10, &map);
        else
            ims__instance_recall(S, nq, b->n, q, &r1, &r10);
    }
    r->p1 += p1, r->p5 += p5, r->p10 += p10, r->map += map, r->r1 += r1, r->r10 += r10;
    free(S), free(q);
}

/* kind < 0: raw unit taps; else a head of that kind (aug: give copies). */
static void run_method(const bench *b, const char *method, const int *use, int n_use0, int kind,
                       int with_aug)
{
    int d;
    float *x0 = select_taps(b, b->orig, use, n_use0, &d);
    float *xa0 = select_taps(b, b->dist, use, n_use0, &d);
    int dims0[MAX_TAPS];
    char taps[256] = "";
    for (int t = 0; t < n_use0; t++) {
        dims0[t] = b->tap_dim[use[t]];
        snprintf(taps + strlen(taps), sizeof taps - strlen(taps), "%s%d", t ? "+" : "", use[t]);
    }
    result r = {0};
    unsigned char *is_val = malloc((size_t)b->n);
    float *xt = malloc((size_t)b->n * d * sizeof *xt), *at = malloc((size_t)b->n * d * sizeof *at);
    int *lt = malloc((size_t)b->n * sizeof *lt);
    double wsum_prev = 0;
    int prior_done = 0;
    for (int s = 1; s <= b->n_seeds; s++) {
        ims_train_split(b->labels, b->n, 0.2f, (uint64_t)s, is_val);
        float *e, *ea;
        int dim;
        clock_t t0 = clock();
        const float *x = x0, *xa = xa0;
        const int *dims = dims0;
        int n_use = n_use0, d1 = d;
        float *xw = NULL, *xaw = NULL;
        const char *wenv = getenv("BENCH_WHITEN");
        if (wenv) {
            double wa = atof(wenv);
            int wr = getenv("BENCH_WRANK") ? atoi(getenv("BENCH_WRANK")) : 0;
            float *u = malloc((size_t)b->n * d * sizeof *u),
                  *ua = malloc((size_t)b->n * d * sizeof *ua);
            ims_train_head *h = ims__head_alloc(IMS_TRAIN_LDA, d, dims0, n_use0, 1, 1, 0);
            for (int i = 0; i < b->n; i++) {
                ims__head_unit(h, x0 + (size_t)i * d, u + (size_t)i * d);
                ims__head_unit(h, xa0 + (size_t)i * d, ua + (size_t)i * d);
            }
            ims_train_head_free(h);
            int *rows = malloc((size_t)b->n * sizeof *rows), m = 0;
            for (int i = 0; i < b->n; i++)
                if (!is_val[i])
                    rows[m++] = i;
            float *M = malloc((size_t)d * d * sizeof *M), *bias = malloc((size_t)d * sizeof *bias);
            if (ims__whiten_fit(u, rows, m, d, wa, wr, M, bias, NULL))
                exit(1);
            xw = malloc((size_t)b->n * d * sizeof *xw),
            xaw = malloc((size_t)b->n * d * sizeof *xaw);
            ims__whiten_rows(M, bias, d, u, b->n, xw);
            ims__whiten_rows(M, bias, d, ua, b->n, xaw);
            free(u), free(ua), free(rows), free(M), free(bias);
            x = xw, xa = xaw, dims = &d1, n_use = 1;
        }
        if (kind < 0) {
            dim = d;
            e = malloc((size_t)b->n * d * sizeof *e), ea = malloc((size_t)b->n * d * sizeof *ea);
            ims_train_head *h = ims__head_alloc(IMS_TRAIN_LDA, d, dims, n_use, 1, 1, 0);
            for (int i = 0; i < b->n; i++) {
                ims__head_unit(h, x + (size_t)i * d, e + (size_t)i * d);
                ims__head_unit(h, xa + (size_t)i * d, ea + (size_t)i * d);
            }
            ims_train_head_free(h);
        } else {
            int nt = 0;
            for (int i = 0; i < b->n; i++)
                if (!is_val[i] || getenv("BENCH_LEAK")) {
                    memcpy(xt + (size_t)nt * d, x + (size_t)i * d, (size_t)d * sizeof *x);
                    memcpy(at + (size_t)nt * d, xa + (size_t)i * d, (size_t)d * sizeof *x);
                    lt[nt++] = b->labels[i];
                }
            ims_train_opts o;
            ims_train_opts_default(&o);
            if (kind == IMS_TRAIN_MLP)
                ims_train_opts_seed(&o, (uint64_t)s);
            o.kind = kind;
            o.seed = (uint64_t)s + 100;
            if (getenv("BENCH_W"))
                o.weight = (float)atof(getenv("BENCH_W"));
            if (getenv("BENCH_DIM") && kind != IMS_TRAIN_MLP)
                o.dim = atoi(getenv("BENCH_DIM"));
            if (with_aug)
                o.aug = at;
            if (getenv("BENCH_WRAW"))
                o.whiten = (float)atof(getenv("BENCH_WRAW"));
            if (getenv("BENCH_WHITEN"))
                o.whiten = 0;
            ims_train_head *h;
            ims_error err;
            if (ims_train_fit(xt, nt, d, dims, n_use, lt, b->n_classes, &o, &h, &err)) {
                fprintf(stderr, "%s: %s\n", method, err.msg);
                exit(1);
            }
            dim = ims_train_out_dim(h);
            e = malloc((size_t)b->n * dim * sizeof *e);
            ea = malloc((size_t)b->n * dim * sizeof *ea);
            ims_train_apply(h, x, b->n, e);
            ims_train_apply(h, xa, b->n, ea);
            r.w += ims_train_weight(h), r.shrink += ims_train_shrink(h);
            /* classifier accuracy on the held-out items */
            int C = b->n_classes, hit = 0, nv = 0;
            float *pr = malloc((size_t)b->n * C * sizeof *pr);
            ims_train_classify(h, x, b->n, pr);
            for (int i = 0; i < b->n; i++) {
                if (!is_val[i])
                    continue;
                int best = 0;
                for (int c = 1; c < C; c++)
                    best = pr[(size_t)i * C + c] > pr[(size_t)i * C + best] ? c : best;
                hit += best == b->labels[i], nv++;
            }
            r.acc += (double)hit / nv;
            if (getenv("BENCH_PRIOR") && kind == IMS_TRAIN_FUSION) {
                double ga = 0, ta = 2;
                int lg = 0;
                sscanf(getenv("BENCH_PRIOR"), "%lf,%lf,%d", &ga, &ta, &lg);
                float *pa = malloc((size_t)b->n * C * sizeof *pa);
                ims_train_classify(h, xa, b->n, pa);
                score_prior(b, e, ea, dim, d, ims_train_weight(h), pr, pa, ga, ta, lg, is_val, &r);
                prior_done = 1;
                free(pa);
            }
            free(pr);
            ims_train_head_free(h);
        }
        r.secs += (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (prior_done) {
            prior_done = 0;
        } else if (getenv("BENCH_RERANK") && kind == IMS_TRAIN_FUSION) {
            double al = 0, ta = 2;
            sscanf(getenv("BENCH_RERANK"), "%lf,%lf", &al, &ta);
            score_rerank(b, e, ea, dim, d, (float)(r.w - wsum_prev), al, ta, is_val, &r);
        } else {
            score(b, e, ea, dim, is_val, &r);
        }
        wsum_prev = r.w;
        free(e), free(ea), free(xw), free(xaw);
    }
    print_row(method, taps, &r, b->n_seeds);
    free(x0), free(xa0), free(is_val), free(xt), free(at), free(lt);
}

/* BENCH_ONLY=a,b,...: run only those methods (default: all). */
static int want(const char *method)
{
    const char *only = getenv("BENCH_ONLY");
    if (!only)
        return 1;
    size_t n = strlen(method);
    for (const char *p = only; (p = strstr(p, method)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || !p[n]))
            return 1;
    return 0;
}

static int parse_list(const char *s, int *out)
{
    int n = 0;
    while (*s && n < MAX_TAPS) {
        out[n++] = (int)strtol(s, (char **)&s, 10);
        if (*s == ',')
            s++;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *taps = NULL, *list = NULL, *orig = NULL, *dist = NULL;
    const char *use_s = NULL;
    int raw = 0, seed_tap = -1;
    bench b = {.n_seeds = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model"))
            model = v, i++;
        else if (!strcmp(a, "--taps"))
            taps = v, i++;
        else if (!strcmp(a, "--list"))
            list = v, i++;
        else if (!strcmp(a, "--orig"))
            orig = v, i++;
        else if (!strcmp(a, "--dist"))
            dist = v, i++;
        else if (!strcmp(a, "--seeds"))
            b.n_seeds = atoi(v), i++;
        else if (!strcmp(a, "--use"))
            use_s = v, i++;
        else if (!strcmp(a, "--seed-tap"))
            seed_tap = atoi(v), i++;
        else if (!strcmp(a, "--raw"))
            raw = 1;
        else {
            fprintf(stderr, "bad argument %s (see the comment atop bench/finetune_eval.c)\n", a);
            return 2;
        }
    }
    if (!model || !taps || !list || !orig || !dist) {
        fprintf(stderr, "usage: see bench/finetune_eval.c\n");
        return 2;
    }
    ims_error err;
    ims_nn_model *m;
    if (ims_nn_open(model, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(taps, "r");
    char line[4096];
    int off = 0;
    while (f && fgets(line, sizeof line, f) && b.n_taps < MAX_TAPS) {
        line[strcspn(line, "\n")] = 0;
        if (!*line)
            continue;
        int d;
        if (ims_nn_tap_dim(m, line, &d, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        const char *sl = strrchr(line, '/');
        snprintf(b.tap_name[b.n_taps], 256, "%.255s", line);
        (void)sl;
        b.tap_dim[b.n_taps] = d, b.tap_off[b.n_taps] = off, off += d;
        b.n_taps++;
    }
    if (f)
        fclose(f);
    int n1, d1, n2, d2;
    b.orig = read_fvecs(orig, &n1, &d1);
    b.dist = read_fvecs(dist, &n2, &d2);
    if (!b.orig || !b.dist || n1 != n2 || d1 != d2 || d1 != off) {
        fprintf(stderr, "feature files do not match the taps (%d vs %d)\n", d1, off);
        return 1;
    }
    b.n = n1, b.D = d1;
    if (getenv("BENCH_SQRT")) /* power normalisation experiment */
        for (size_t j = 0; j < (size_t)n1 * d1; j++) {
            b.orig[j] = b.orig[j] >= 0 ? sqrtf(b.orig[j]) : -sqrtf(-b.orig[j]);
            b.dist[j] = b.dist[j] >= 0 ? sqrtf(b.dist[j]) : -sqrtf(-b.dist[j]);
        }
    b.labels = malloc((size_t)b.n * sizeof *b.labels);
    char names[64][256];
    f = fopen(list, "r");
    int i = 0;
    while (f && fgets(line, sizeof line, f) && i < b.n) {
        line[strcspn(line, "\n")] = 0;
        char *sl = strrchr(line, '/');
        *sl = 0;
        sl = strrchr(line, '/');
        const char *g = sl ? sl + 1 : line;
        int c = 0;
        while (c < b.n_classes && strcmp(names[c], g))
            c++;
        if (c == b.n_classes)
            snprintf(names[b.n_classes++], 256, "%.255s", g);
        b.labels[i++] = c;
    }
    if (f)
        fclose(f);
    printf("# %s: %d items, %d categories, %d taps, %d split seeds\n", ims_nn_name(m), b.n,
           b.n_classes, b.n_taps, b.n_seeds);
    for (int t = 0; t < b.n_taps; t++)
        printf("#   tap %d: %s (%d)\n", t, b.tap_name[t], b.tap_dim[t]);
    if (raw) {
        for (int t = 0; t < b.n_taps; t++)
            run_method(&b, "raw", &t, 1, -1, 0);
        for (int t = 0; t < b.n_taps; t++)
            for (int s = t + 1; s < b.n_taps; s++) {
                int u2[2] = {t, s};
                run_method(&b, "raw", u2, 2, -1, 0);
            }
        return 0;
    }
    int use[MAX_TAPS], n_use = use_s ? parse_list(use_s, use) : 1;
    if (!use_s)
        use[0] = b.n_taps - 1;
    if (seed_tap < 0)
        seed_tap = b.n_taps - 1;
    if (want("raw"))
        run_method(&b, "raw", use, n_use, -1, 0);
    if (want("rawseed"))
        run_method(&b, "raw", &seed_tap, 1, -1, 0);
    if (want("seed"))
        run_method(&b, "seed", &seed_tap, 1, IMS_TRAIN_MLP, 0);
    if (want("lda"))
        run_method(&b, "lda", use, n_use, IMS_TRAIN_LDA, 0);
    if (want("fusion"))
        run_method(&b, "fusion", use, n_use, IMS_TRAIN_FUSION, 0);
    if (want("fusion+aug"))
        run_method(&b, "fusion+aug", use, n_use, IMS_TRAIN_FUSION, 1);
    if (want("lda+aug"))
        run_method(&b, "lda+aug", use, n_use, IMS_TRAIN_LDA, 1);
    ims_nn_close(m);
    return 0;
}
