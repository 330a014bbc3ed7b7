/* SPDX-License-Identifier: MIT */
/*
 * head.c — training entry point, model selection and inference of heads.
 *
 * ims_train_fit, for FUSION and LDA heads:
 *   1. u = unit taps of every row (train_int.h); stratified seeded split;
 *      FUSION with whitening (opts.whiten): the raw part r = whitened u,
 *      the whitening learned on the split's training rows (whiten.c);
 *      otherwise r = u;
 *   2. for each candidate shrinkage, an LDA fitted on the training rows
 *      (the shrinkage-independent parts once: ims__lda_prepare) embeds all
 *      rows; for each candidate weight w the fused similarity
 *      (r.r' + w^2 z.z') / (1 + w^2) of validation rows against all rows
 *      gives P@10 (hit = same category). With distorted copies (opts.aug)
 *      the copies of validation rows must still find their originals:
 *      instance recall@10 no worse than r's own; without them w is capped
 *      at IMS_TRAIN_W_MAX_BLIND, or, with whitening, fixed at
 *      IMS_TRAIN_W_WHITEN (only the shrinkage is searched). The best
 *      feasible pair wins (ties: the smaller w, then the smaller shrinkage);
 *   3. the LDA (and the whitening) are refitted on all rows with the chosen
 *      shrinkage (the reported validation accuracy is the chosen
 *      candidate's, step 2).
 * MLP heads train on the training rows with early stopping on validation
 * (mlp.c). The similarity matrices are computed once per candidate and
 * combined per weight, so the search costs little more than one fit.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim/imgsim.h"
#include "imgsim/nn.h"
#include "train/train_int.h"

#ifndef INST_MARGIN
#define INST_MARGIN 0.0 /* allowed instance r@10 drop on validation copies */
#endif
static const float SHRINKS[] = {0.05f, 0.1f, 0.2f, 0.35f, 0.5f, 0.7f};
static const float WEIGHTS[] = {0.0f,  0.25f, 0.35f, 0.5f, 0.6f, 0.7f,
                                0.85f, 1.0f,  1.25f, 1.5f, 2.0f};

void ims_train_opts_default(ims_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = IMS_TRAIN_FUSION;
    o->dim = 0;
    o->epochs = 200;
    o->batch = 32;
    o->lr = 1e-3f;
    o->weight_decay = 1e-4f;
    o->patience = 20;
    o->val_frac = 0.2f;
    o->shrink = 0;
    o->weight = -1;
    o->whiten = IMS_TRAIN_WHITEN_A;
}

void ims_train_opts_seed(ims_train_opts *o, uint64_t seed)
{
    ims_train_opts_default(o);
    o->kind = IMS_TRAIN_MLP;
    o->dim = 256;
    o->seed = seed;
}

ims_train_head *ims__head_alloc(int kind, int d, const int *tap_dims, int n_taps, int k,
                                int n_classes, int cls_on_proj)
{
    ims_train_head *h = ims_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->kind = kind, h->d = d, h->n_taps = n_taps, h->k = k, h->n_classes = n_classes;
    h->cls_on_proj = cls_on_proj;
    int cin = cls_on_proj ? k : d;
    h->tap_dims = ims_malloc((size_t)n_taps * sizeof *h->tap_dims);
    h->P = ims_calloc((size_t)d * k, sizeof *h->P);
    h->pb = ims_calloc((size_t)k, sizeof *h->pb);
    h->C = ims_calloc((size_t)cin * n_classes, sizeof *h->C);
    h->cb = ims_calloc((size_t)n_classes, sizeof *h->cb);
    if (!h->tap_dims || !h->P || !h->pb || !h->C || !h->cb) {
        ims_train_head_free(h);
        return NULL;
    }
    memcpy(h->tap_dims, tap_dims, (size_t)n_taps * sizeof *tap_dims);
    h->in_scale = kind == IMS_TRAIN_MLP ? sqrtf((float)d / n_taps) : 1.0f / sqrtf((float)n_taps);
    return h;
}

void ims_train_head_free(ims_train_head *h)
{
    if (!h)
        return;
    ims_free(h->tap_dims), ims_free(h->P), ims_free(h->pb), ims_free(h->C), ims_free(h->cb);
    ims_free(h->Wm), ims_free(h->wb);
    ims_free(h);
}

static void set_out_dim(ims_train_head *h)
{
    h->out_dim = h->kind == IMS_TRAIN_FUSION ? h->d + h->k : h->k;
}

void ims__head_unit(const ims_train_head *h, const float *x, float *u)
{
    int off = 0;
    for (int t = 0; t < h->n_taps; t++) {
        float s = ims__inv_l2(x + off, h->tap_dims[t]);
        for (int j = 0; j < h->tap_dims[t]; j++)
            u[off + j] = x[off + j] * s;
        off += h->tap_dims[t];
    }
    for (int j = 0; j < h->d; j++)
        u[j] *= h->in_scale;
}

/* p = act(u . P + pb) for one row. */
static void project(const ims_train_head *h, const float *u, float *p)
{
    for (int j = 0; j < h->k; j++)
        p[j] = 0;
    for (int t = 0; t < h->d; t++) {
        const float *w = h->P + (size_t)t * h->k;
        for (int j = 0; j < h->k; j++)
            p[j] += u[t] * w[j];
    }
    for (int j = 0; j < h->k; j++) {
        p[j] += h->pb[j];
        if (h->relu && p[j] < 0)
            p[j] = 0;
    }
}

/* Embedding of one row from u, its whitened raw part r (NULL: none) and
 * p (writes out only). */
static void embed_row(const ims_train_head *h, const float *u, const float *r, const float *p,
                      float *out)
{
    if (h->kind == IMS_TRAIN_FUSION) {
        float s = ims__inv_l2(p, h->k) * h->proj_w;
        const float *raw = r ? r : u;
        for (int j = 0; j < h->d; j++)
            out[j] = raw[j] * h->raw_w;
        for (int j = 0; j < h->k; j++)
            out[h->d + j] = p[j] * s;
    } else {
        memcpy(out, p, (size_t)h->k * sizeof *p);
    }
    float s = ims__inv_l2(out, h->out_dim);
    for (int j = 0; j < h->out_dim; j++)
        out[j] *= s;
}

/* Rows per block in apply: the whitening streams its d x d matrix once
 * per block, not once per row (same bytes either way). */
#define APPLY_BLK 16

void ims_train_apply(const ims_train_head *h, const float *x, int n, float *out)
{
    const int d = h->d, nw = h->Wm ? APPLY_BLK : 0;
    float *u = ims_malloc(((size_t)(APPLY_BLK + nw) * d + h->k) * sizeof *u);
    IMS_ASSERT(u); /* small: (16 or 32) x d + k floats */
    float *r = u + (size_t)APPLY_BLK * d, *p = r + (size_t)nw * d;
    for (int i0 = 0; i0 < n; i0 += APPLY_BLK) {
        int nb = IMS_MIN(APPLY_BLK, n - i0);
        for (int b = 0; b < nb; b++)
            ims__head_unit(h, x + (size_t)(i0 + b) * d, u + (size_t)b * d);
        if (nw)
            ims__whiten_rows(h->Wm, h->wb, d, u, nb, r);
        for (int b = 0; b < nb; b++) {
            project(h, u + (size_t)b * d, p);
            embed_row(h, u + (size_t)b * d, nw ? r + (size_t)b * d : NULL, p,
                      out + (size_t)(i0 + b) * h->out_dim);
        }
    }
    ims_free(u);
}

void ims_train_classify(const ims_train_head *h, const float *x, int n, float *probs)
{
    float *u = ims_malloc(((size_t)h->d + h->k) * sizeof *u);
    IMS_ASSERT(u);
    const int C = h->n_classes, cin = h->cls_on_proj ? h->k : h->d;
    for (int i = 0; i < n; i++) {
        ims__head_unit(h, x + (size_t)i * h->d, u);
        project(h, u, u + h->d);
        const float *v = h->cls_on_proj ? u + h->d : u;
        float *z = probs + (size_t)i * C;
        for (int c = 0; c < C; c++)
            z[c] = 0;
        for (int t = 0; t < cin; t++) {
            const float *w = h->C + (size_t)t * C;
            for (int c = 0; c < C; c++)
                z[c] += v[t] * w[c];
        }
        float mx = -INFINITY;
        for (int c = 0; c < C; c++) {
            z[c] += h->cb[c];
            mx = z[c] > mx ? z[c] : mx;
        }
        /* the formula of nn's SOFTMAX op */
        double sum = 0;
        for (int c = 0; c < C; c++) {
            z[c] = expf(z[c] - mx);
            sum += z[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < C; c++)
            z[c] *= inv;
    }
    ims_free(u);
}

int ims_train_kind_of(const ims_train_head *h) { return h->kind; }
int ims_train_in_dim(const ims_train_head *h) { return h->d; }
int ims_train_out_dim(const ims_train_head *h) { return h->out_dim; }
int ims_train_n_classes(const ims_train_head *h) { return h->n_classes; }
int ims_train_n_taps(const ims_train_head *h) { return h->n_taps; }
const int *ims_train_tap_dims(const ims_train_head *h) { return h->tap_dims; }
float ims_train_weight(const ims_train_head *h)
{
    return h->kind == IMS_TRAIN_FUSION ? h->proj_w : 0;
}
float ims_train_shrink(const ims_train_head *h) { return h->shrink; }
float ims_train_val_acc(const ims_train_head *h) { return h->val_acc; }
float ims_train_whiten(const ims_train_head *h) { return h->Wm ? h->white_a : 0; }

/* ---- fitting ---------------------------------------------------------------- */

/* Classifier accuracy of h on the rows of u listed in idx (u already unit). */
static double accuracy_on(const ims_train_head *h, const float *u, const int *idx, int m,
                          const int *labels, double *loss)
{
    const int C = h->n_classes;
    int hit = 0;
    double l = 0;
    float *z = ims_malloc((size_t)C * sizeof *z);
    IMS_ASSERT(z);
    for (int q = 0; q < m; q++) {
        const float *v = u + (size_t)idx[q] * h->d;
        for (int c = 0; c < C; c++)
            z[c] = h->cb[c];
        for (int t = 0; t < h->d; t++) {
            const float *w = h->C + (size_t)t * C;
            for (int c = 0; c < C; c++)
                z[c] += v[t] * w[c];
        }
        int b = 0;
        for (int c = 1; c < C; c++)
            b = z[c] > z[b] ? c : b;
        double s = 0;
        for (int c = 0; c < C; c++)
            s += exp((double)z[c] - z[b]);
        l += log(s) - (z[labels[idx[q]]] - z[b]);
        hit += b == labels[idx[q]];
    }
    ims_free(z);
    *loss = m ? l / m : 0;
    return m ? (double)hit / m : 0;
}

/* Unit projections z (m x k) of the unit rows u (m x d), for the search
 * (one BLAS product: its sums, not project()'s, which apply keeps). */
static void unit_proj(const ims_train_head *h, const float *u, int m, float *z)
{
    const int k = h->k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, h->d, 1.0f, u, h->d, h->P, k, 0.0f,
                z, k);
    for (int i = 0; i < m; i++) {
        float *zi = z + (size_t)i * k;
        for (int j = 0; j < k; j++) {
            zi[j] += h->pb[j];
            if (h->relu && zi[j] < 0)
                zi[j] = 0;
        }
        float s = ims__inv_l2(zi, k);
        for (int j = 0; j < k; j++)
            zi[j] *= s;
    }
}

typedef struct fit_ctx {
    const float *u, *ua; /* unit rows, unit copies (or NULL) */
    int n, d, n_classes;
    const int *labels;
    int *vidx, n_val; /* validation rows */
    float *tu;        /* training rows, compact */
    int *tl, n_tr;
    float *Su, *Sau; /* raw-part sims: val x all, copies x all */
    int whiten;      /* FUSION with a whitened raw part */
    const ims_train_opts *o;
} fit_ctx;

/* Step 2 of the essay: choose (shrink, w); fills *shrink, *w and the
 * validation accuracy of the chosen shrinkage's classifier. */
static int select_params(fit_ctx *c, int k_req, float *best_s, float *best_w, float *best_acc,
                         ims_error *err)
{
    const int n = c->n, nv = c->n_val;
    const int fusion = c->o->kind == IMS_TRAIN_FUSION;
    /* a fixed w: the caller's, or the whitened fusion's without copies */
    const float w_fix = c->o->weight >= 0               ? c->o->weight
                        : fusion && c->whiten && !c->ua ? IMS_TRAIN_W_WHITEN
                                                        : -1;
    int rc = IMS_ENOMEM;
    float *z = NULL, *za = NULL, *Sz = NULL, *Saz = NULL, *S = NULL;
    ims_train_head *t = NULL;
    ims__lda_prep prep = {0};
    z = ims_malloc((size_t)n * k_req * sizeof *z);
    za = c->ua ? ims_malloc((size_t)n * k_req * sizeof *za) : NULL;
    Sz = ims_malloc((size_t)nv * n * sizeof *Sz);
    Saz = ims_malloc((size_t)nv * n * sizeof *Saz);
    S = ims_malloc((size_t)nv * n * sizeof *S);
    if (!z || (c->ua && !za) || !Sz || !Saz || !S)
        goto done;
    double inst_u = 0;
    if (c->ua)
        ims__instance_recall(c->Sau, nv, n, c->vidx, NULL, &inst_u);
    double best = -1;
    *best_s = c->o->shrink > 0 ? c->o->shrink : 0.2f;
    *best_w = fusion ? (w_fix >= 0 ? w_fix : 0.5f) : 0;
    int n_s = c->o->shrink > 0 ? 1 : (int)IMS_ARRAY_LEN(SHRINKS);
    int n_w = !fusion || w_fix >= 0 ? 1 : (int)IMS_ARRAY_LEN(WEIGHTS);
    int n_cand = 0; /* candidates actually tried, for the progress total */
    for (int wi = 0; wi < n_w; wi++)
        n_cand += !(n_w > 1 && !c->ua && WEIGHTS[wi] > IMS_TRAIN_W_MAX_BLIND);
    n_cand *= n_s;
    int cand = 0;
    if ((rc = ims__lda_prepare(&prep, c->d, c->n_classes, c->tu, c->n_tr, c->tl, err)))
        goto done;
    rc = IMS_ENOMEM;
    for (int si = 0; si < n_s; si++) {
        float sh = c->o->shrink > 0 ? c->o->shrink : SHRINKS[si];
        int tap = c->d; /* one pseudo-tap: rows are unit already */
        t = ims__head_alloc(c->o->kind, c->d, &tap, 1, k_req, c->n_classes, 0);
        if (!t)
            goto done;
        t->in_scale = 1;
        if ((rc = ims__lda_solve(t, &prep, sh, err)))
            goto done;
        rc = IMS_ENOMEM;
        unit_proj(t, c->u, n, z);
        ims__sim(z, c->vidx, nv, z, n, t->k, Sz);
        if (c->ua) {
            unit_proj(t, c->ua, n, za);
            ims__sim(za, c->vidx, nv, z, n, t->k, Saz);
        }
        double vloss, vacc = accuracy_on(t, c->u, c->vidx, nv, c->labels, &vloss);
        for (int wi = 0; wi < n_w; wi++) {
            float w = !fusion ? 0 : w_fix >= 0 ? w_fix : WEIGHTS[wi];
            if (fusion && w_fix < 0 && !c->ua && w > IMS_TRAIN_W_MAX_BLIND)
                continue;
            double a = fusion ? 1.0 / (1 + (double)w * w) : 0, b = fusion ? w * w * a : 1;
            for (size_t j = 0; j < (size_t)nv * n; j++)
                S[j] = (float)(a * c->Su[j] + b * Sz[j]);
            double p10;
            ims__retrieval(S, nv, n, c->vidx, c->labels, NULL, NULL, &p10, NULL);
            int ok = 1;
            if (c->ua && fusion && w_fix < 0) {
                for (size_t j = 0; j < (size_t)nv * n; j++)
                    S[j] = (float)(a * c->Sau[j] + b * Saz[j]);
                double r10;
                ims__instance_recall(S, nv, n, c->vidx, NULL, &r10);
                ok = r10 >= inst_u - INST_MARGIN - 1e-9;
            }
            if (ok && p10 > best + 1e-9) {
                best = p10, *best_s = sh, *best_w = w, *best_acc = (float)vacc;
            }
            if (c->o->progress &&
                c->o->progress(c->o->progress_ud, ++cand, n_cand, (float)vloss, 0, (float)vacc))
                si = n_s; /* stop: keep the best so far */
        }
        ims_train_head_free(t);
        t = NULL;
    }
    rc = IMS_OK;
done:
    if (rc == IMS_ENOMEM)
        ims_error_set(err, rc, "train: out of memory");
    ims_train_head_free(t);
    ims__lda_prep_free(&prep);
    ims_free(z), ims_free(za), ims_free(Sz), ims_free(Saz), ims_free(S);
    return rc;
}

static int check_args(const float *x, int n, int d, const int *tap_dims, int n_taps,
                      const int *labels, int n_classes, ims_error *err)
{
    if (!x || !labels || !tap_dims || n < 1 || d < 1 || n_taps < 1 || n_classes < 1)
        return ims_error_set(err, IMS_EINVAL, "train: empty input");
    int64_t sum = 0;
    for (int t = 0; t < n_taps; t++) {
        if (tap_dims[t] < 1)
            return ims_error_set(err, IMS_EINVAL, "train: tap %d has dim %d", t, tap_dims[t]);
        sum += tap_dims[t];
    }
    if (sum != d)
        return ims_error_set(err, IMS_EINVAL, "train: tap dims sum to %lld, not %d", (long long)sum,
                             d);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return ims_error_set(err, IMS_EINVAL, "train: row %d has label %d outside [0,%d)", i,
                                 labels[i], n_classes);
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return ims_error_set(err, IMS_EINVAL, "train: row %zu has a non-finite value",
                                 i / (size_t)d);
    int *cnt = ims_calloc((size_t)n_classes, sizeof *cnt);
    if (!cnt)
        return ims_error_set(err, IMS_ENOMEM, "train: out of memory");
    for (int i = 0; i < n; i++)
        cnt[labels[i]]++;
    int multi = 0;
    for (int c = 0; c < n_classes; c++)
        multi += cnt[c] >= 2;
    ims_free(cnt);
    if (multi < 2)
        return ims_error_set(err, IMS_ESTATE,
                             "nothing to train: %s (the raw taps are used as they are)",
                             multi ? "only one category has two or more items"
                                   : "no category has two or more items");
    return IMS_OK;
}

/* The final whitening (all rows) depends on u alone, not on the search:
 * with a second thread it runs beside the search. Each fit is the same
 * single-threaded computation either way, so the bytes do not depend on
 * the thread count. */
typedef struct final_whiten {
    const float *u;
    int n, d;
    double a;
    float *M, *bias;
    int rc;
    ims_error err;
} final_whiten;

static void *final_whiten_run(void *arg)
{
    final_whiten *f = arg;
    f->rc = ims__whiten_fit(f->u, NULL, f->n, f->d, f->a, 0, f->M, f->bias, &f->err);
    return NULL;
}

int ims_train_fit(const float *x, int n, int d, const int *tap_dims, int n_taps, const int *labels,
                  int n_classes, const ims_train_opts *opts, ims_train_head **out, ims_error *err)
{
    IMS_ASSERT(out);
    *out = NULL;
    ims_nn_init(); /* OpenBLAS on one thread: the search's products (linalg.c) */
    ims_train_opts dflt;
    if (!opts) {
        ims_train_opts_default(&dflt);
        opts = &dflt;
    }
    int rc = check_args(x, n, d, tap_dims, n_taps, labels, n_classes, err);
    if (rc)
        return rc;
    if (opts->kind < IMS_TRAIN_FUSION || opts->kind > IMS_TRAIN_MLP)
        return ims_error_set(err, IMS_EINVAL, "train: unknown head kind %d", opts->kind);
    if (!(opts->whiten <= 1))
        return ims_error_set(err, IMS_EINVAL, "train: whitening shrinkage %g outside (0,1]",
                             (double)opts->whiten);
    const int mlp = opts->kind == IMS_TRAIN_MLP;
    int k = mlp ? (opts->dim > 0 ? opts->dim : 256)
                : (opts->dim > 0 ? IMS_MIN(opts->dim, n_classes - 1) : n_classes - 1);
    k = IMS_MAX(k, 1);
    fit_ctx c = {.n = n, .d = d, .n_classes = n_classes, .labels = labels, .o = opts};
    c.whiten = opts->kind == IMS_TRAIN_FUSION && opts->whiten > 0;
    float *ru = NULL;             /* whitened raw parts (search only) */
    float *sM = NULL, *sb = NULL; /* the split's whitening (search only) */
    final_whiten fw = {0};
    pthread_t fw_thread;
    int fw_state = 0; /* 1: on fw_thread, 2: done (here) */
    ims_train_head *h = ims__head_alloc(opts->kind, d, tap_dims, n_taps, k, n_classes, mlp);
    float *u = ims_malloc((size_t)n * d * sizeof *u);
    float *ua = opts->aug && !mlp ? ims_malloc((size_t)n * d * sizeof *ua) : NULL;
    unsigned char *is_val = ims_malloc((size_t)n);
    c.vidx = ims_malloc((size_t)n * sizeof *c.vidx);
    c.tl = ims_malloc((size_t)n * 2 * sizeof *c.tl);
    c.tu = ims_malloc((size_t)n * 2 * d * sizeof *c.tu);
    rc = IMS_ENOMEM;
    if (!h || !u || (opts->aug && !mlp && !ua) || !is_val || !c.vidx || !c.tl || !c.tu) {
        ims_error_set(err, rc, "train: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        ims__head_unit(h, x + (size_t)i * d, u + (size_t)i * d);
        if (ua)
            ims__head_unit(h, opts->aug + (size_t)i * d, ua + (size_t)i * d);
    }
    c.u = u, c.ua = ua;
    c.n_val = ims_train_split(labels, n, opts->val_frac, opts->seed, is_val);
    int nv = 0;
    for (int i = 0; i < n; i++) {
        if (is_val[i]) {
            c.vidx[nv++] = i;
        } else {
            memcpy(c.tu + (size_t)c.n_tr * d, u + (size_t)i * d, (size_t)d * sizeof *u);
            c.tl[c.n_tr++] = labels[i];
            if (ua) { /* copies are extra samples of their class */
                memcpy(c.tu + (size_t)c.n_tr * d, ua + (size_t)i * d, (size_t)d * sizeof *u);
                c.tl[c.n_tr++] = labels[i];
            }
        }
    }
    if (mlp) {
        if ((rc = ims__mlp_fit(h, u, n, labels, is_val, opts, err)))
            goto done;
        h->relu = 1;
    } else {
        float sh = opts->shrink > 0 ? opts->shrink : 0.2f;
        float w = opts->weight >= 0 ? opts->weight
                  : c.whiten && !ua ? IMS_TRAIN_W_WHITEN
                                    : IMS_TRAIN_W_MAX_BLIND;
        if (c.whiten) {
            h->Wm = ims_malloc((size_t)d * d * sizeof *h->Wm);
            h->wb = ims_malloc((size_t)d * sizeof *h->wb);
            if (!h->Wm || !h->wb) {
                ims_error_set(err, rc, "train: out of memory (whitening, %d x %d)", d, d);
                goto done;
            }
            h->white_a = opts->whiten;
        }
        if (nv > 0) {
            c.Su = ims_malloc((size_t)nv * n * sizeof *c.Su);
            c.Sau = ua ? ims_malloc((size_t)nv * n * sizeof *c.Sau) : NULL;
            if (!c.Su || (ua && !c.Sau)) {
                ims_error_set(err, rc, "train: out of memory");
                goto done;
            }
            const float *r = u, *ra = ua;
            if (c.whiten) { /* learned on the split's training rows */
                int *rows, m = 0;
                ru = ims_malloc((size_t)n * (ua ? 2 : 1) * d * sizeof *ru);
                rows = ims_malloc((size_t)n * sizeof *rows);
                sM = ims_malloc((size_t)d * d * sizeof *sM);
                sb = ims_malloc((size_t)d * sizeof *sb);
                if (!ru || !rows || !sM || !sb) {
                    ims_free(rows);
                    ims_error_set(err, rc, "train: out of memory");
                    goto done;
                }
                fw = (final_whiten){
                    .u = u, .n = n, .d = d, .a = opts->whiten, .M = h->Wm, .bias = h->wb};
                int threads = opts->threads > 0 ? opts->threads : ims_cpu_count();
                if (threads > 1 && !pthread_create(&fw_thread, NULL, final_whiten_run, &fw))
                    fw_state = 1;
                for (int i = 0; i < n; i++)
                    if (!is_val[i])
                        rows[m++] = i;
                rc = ims__whiten_fit(u, rows, m, d, opts->whiten, 0, sM, sb, err);
                ims_free(rows);
                if (rc)
                    goto done;
                ims__whiten_rows_search(sM, sb, d, u, n, ru);
                if (ua)
                    ims__whiten_rows_search(sM, sb, d, ua, n, ru + (size_t)n * d);
                r = ru, ra = ua ? ru + (size_t)n * d : NULL;
            }
            ims__sim(r, c.vidx, nv, r, n, d, c.Su);
            if (ua)
                ims__sim(ra, c.vidx, nv, r, n, d, c.Sau);
            ims_free(ru);
            ru = NULL;
            if ((rc = select_params(&c, k, &sh, &w, &h->val_acc, err)))
                goto done;
        }
        /* final whitening: all rows (not the copies); on fw_thread when
         * it started there */
        if (fw_state == 1) {
            pthread_join(fw_thread, NULL);
            fw_state = 2;
            if ((rc = fw.rc)) {
                if (err)
                    *err = fw.err;
                goto done;
            }
        } else if (c.whiten &&
                   (rc = ims__whiten_fit(u, NULL, n, d, opts->whiten, 0, h->Wm, h->wb, err))) {
            goto done;
        }
        /* final fit: all rows, and their copies */
        int n_all = 0;
        for (int i = 0; i < n; i++) {
            memcpy(c.tu + (size_t)n_all * d, u + (size_t)i * d, (size_t)d * sizeof *u);
            c.tl[n_all++] = labels[i];
            if (ua) {
                memcpy(c.tu + (size_t)n_all * d, ua + (size_t)i * d, (size_t)d * sizeof *u);
                c.tl[n_all++] = labels[i];
            }
        }
        if ((rc = ims__lda_fit(h, c.tu, n_all, c.tl, sh, err)))
            goto done;
        h->raw_w = opts->kind == IMS_TRAIN_FUSION ? 1.0f : 0.0f;
        h->proj_w = opts->kind == IMS_TRAIN_FUSION ? w : 1.0f;
    }
    set_out_dim(h);
    *out = h;
    h = NULL;
    rc = IMS_OK;
done:
    if (fw_state == 1) /* an error before the join: it still reads u, writes h */
        pthread_join(fw_thread, NULL);
    ims_free(sM), ims_free(sb);
    ims_train_head_free(h);
    ims_free(u), ims_free(ua), ims_free(is_val), ims_free(c.vidx), ims_free(c.tl);
    ims_free(c.tu), ims_free(c.Su), ims_free(c.Sau), ims_free(ru);
    return rc;
}
