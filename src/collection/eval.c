/* SPDX-License-Identifier: MIT */
/*
 * eval.c — retrieval quality of a collection's encoder, held out.
 *
 * Protocol: the fine-tune's stratified, seeded validation split (same
 * seed, same labels in id order: ims_train_split). Heads for the three
 * encoders are trained on the training rows only (the shipped encoder.ism
 * is refit on all rows, so evaluating it on its own training rows would
 * flatter it):
 *   backbone:  the raw taps (each L2-normalised, concatenated);
 *   seed:      the tutorial's method, Dense-256 ReLU + softmax on the first
 *              tap, its 256-d layer as the embedding;
 *   finetuned: imgsim's head (ims_train_fit defaults: the raw part PCA-
 *              whitened, unless the fine-tune had --no-whiten) on all taps.
 * Each validation item queries all other items (exact search, cosine; the
 * collection holds no duplicates: ingest collapsed them): P@1/5/10 and
 * mAP@k with hit = same category. Instance recall: a seeded distorted copy
 * of each validation item (crop, flip, scale, colour jitter, JPEG
 * re-encode) queries all items and must find its original, at rank 1 /
 * within k. The classifier's accuracy on the validation rows, and the ANN
 * index's recall@k against exact search on the collection's own vectors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_int.h"
#include "core/core_int.h"
#include "imgsim/train.h"

int coll_labels(ims_catalog *cat, const int64_t *ids, size_t n, int *labels, char ***names,
                size_t *n_names, ims_error *err);
int coll_features(const char *dir, ims_catalog *cat, const coll_encoder *bb, const ims_pipe_opts *o,
                  int64_t **ids, size_t *n, float **x, int64_t *computed, ims_error *err);

typedef struct evalset {
    int n, d;
    const float *x; /* n x d raw features */
    const int *labels;
    const unsigned char *is_val;
    const float *xq; /* n_q x d raw features of the distorted copies */
    const int *q_of; /* row of the original of each copy */
    int n_q;
    int k;
} evalset;

/* Rank-based scores of an embedding (n x dim, unit rows; queries n_q x dim).
 * Category scores: each validation item queries the training items (the
 * gallery the head was trained on, as a shop's catalogue is; the query is
 * a photo the head never saw). Instance scores: each distorted copy
 * queries all items for its original. */
static int score_q(const evalset *s, const float *emb, const float *cq, const float *qemb, int dim,
                   ims_eval_scores *out, ims_error *err)
{
    memset(out, 0, sizeof *out);
    int k = s->k, kk = k > 10 ? k : 10;
    ims_hit *hits = ims_malloc((size_t)(kk + 1) * sizeof *hits);
    float *gal = ims_malloc((size_t)s->n * dim * sizeof(float));
    uint64_t *gid = ims_malloc((size_t)s->n * sizeof *gid);
    if (!hits || !gal || !gid) {
        ims_free(hits);
        ims_free(gal);
        ims_free(gid);
        return ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
    }
    size_t ng = 0;
    for (int i = 0; i < s->n; i++)
        if (!s->is_val[i]) {
            memcpy(gal + ng * dim, emb + (size_t)i * dim, (size_t)dim * sizeof(float));
            gid[ng++] = (uint64_t)i;
        }
    int n_val = 0, rc = IMS_OK;
    for (int i = 0; i < s->n && !rc; i++) {
        if (!s->is_val[i])
            continue;
        size_t nh = 0;
        rc = ims_flat_search(IMS_METRIC_COSINE, (uint32_t)dim, gal, ng, gid,
                             (cq ? cq : emb) + (size_t)i * dim, (size_t)kk, hits, &nh);
        int rel_total = 0;
        for (size_t j = 0; j < ng; j++)
            rel_total += s->labels[gid[j]] == s->labels[i];
        int got = 0, c1 = 0, c5 = 0, c10 = 0;
        double ap = 0;
        for (size_t h = 0; h < nh; h++) {
            int rank = (int)h + 1, rel = s->labels[hits[h].id] == s->labels[i];
            c1 += rank <= 1 && rel;
            c5 += rank <= 5 && rel;
            c10 += rank <= 10 && rel;
            if (rel && rank <= k) {
                got++;
                ap += (double)got / rank;
            }
        }
        out->p1 += c1;
        out->p5 += c5 / 5.0;
        out->p10 += c10 / 10.0;
        int denom = rel_total < k ? rel_total : k;
        out->map += denom ? ap / denom : 0;
        n_val++;
    }
    for (int q = 0; q < s->n_q && !rc; q++) {
        size_t nh = 0;
        rc = ims_flat_search(IMS_METRIC_COSINE, (uint32_t)dim, emb, (size_t)s->n, NULL,
                             qemb + (size_t)q * dim, (size_t)k, hits, &nh);
        for (size_t h = 0; h < nh; h++)
            if ((int)hits[h].id == s->q_of[q]) {
                out->inst_r1 += h == 0;
                out->inst_r10 += 1;
                break;
            }
    }
    ims_free(hits);
    ims_free(gal);
    ims_free(gid);
    if (rc)
        return ims_error_set(err, rc, "eval: exact search failed");
    if (n_val) {
        out->p1 /= n_val, out->p5 /= n_val, out->p10 /= n_val, out->map /= n_val;
    }
    if (s->n_q)
        out->inst_r1 /= s->n_q, out->inst_r10 /= s->n_q;
    return IMS_OK;
}

static int score(const evalset *s, const float *emb, const float *qemb, int dim,
                 ims_eval_scores *out, ims_error *err)
{
    return score_q(s, emb, NULL, qemb, dim, out, err);
}

/* Per-tap L2-normalised concatenation (the raw-taps encoder). */
static void raw_embed(const float *x, int n, const coll_encoder *bb, float *out)
{
    memcpy(out, x, (size_t)n * bb->dim * sizeof(float));
    coll_encoder_finish(bb, out, n);
}

/* Rows of x (n x d) whose is_val is `val`, copied out with their labels. */
static int subset(const float *x, const int *labels, const unsigned char *is_val, int n, int d,
                  int val, float **xs, int **ls, int *m)
{
    *m = 0;
    for (int i = 0; i < n; i++)
        *m += is_val[i] == val;
    *xs = ims_malloc((size_t)(*m ? *m : 1) * d * sizeof(float));
    *ls = ims_malloc((size_t)(*m ? *m : 1) * sizeof(int));
    if (!*xs || !*ls)
        return IMS_ENOMEM;
    for (int i = 0, j = 0; i < n; i++)
        if (is_val[i] == val) {
            memcpy(*xs + (size_t)j * d, x + (size_t)i * d, (size_t)d * sizeof(float));
            (*ls)[j++] = labels[i];
        }
    return IMS_OK;
}

/* Features of seeded distorted copies of the validation items. */
static int distorted_features(const char *dir, ims_catalog *cat, const coll_encoder *bb,
                              const int64_t *ids, const unsigned char *is_val, int n, float **xq,
                              int **q_of, int *n_q, ims_error *err)
{
    *n_q = 0;
    int n_val = 0;
    for (int i = 0; i < n; i++)
        n_val += is_val[i];
    *xq = ims_malloc((size_t)(n_val ? n_val : 1) * bb->dim * sizeof(float));
    *q_of = ims_malloc((size_t)(n_val ? n_val : 1) * sizeof(int));
    if (!*xq || !*q_of)
        return ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
    ims_nn_session *s = NULL;
    int rc = coll_encoder_session(bb, 1, 0, &s, err);
    for (int i = 0; !rc && i < n; i++) {
        if (!is_val[i])
            continue;
        char *path = NULL;
        ims_image *img = NULL, *dis = NULL;
        rc = ims_catalog_image_path(cat, ids[i], &path, err);
        if (!rc)
            rc = ims_image_load_file(path, NULL, &img, err);
        if (!rc)
            rc = ims_image_distort(img, 0x9e3779b97f4a7c15ull ^ (uint64_t)ids[i], &dis, err);
        if (!rc)
            rc = ims_nn_session_run_image(s, dis, *xq + (size_t)*n_q * bb->dim, NULL, err);
        if (!rc)
            (*q_of)[(*n_q)++] = i;
        ims_image_free(dis);
        ims_image_free(img);
        ims_free(path);
    }
    (void)dir;
    ims_nn_session_free(s);
    return rc;
}

/* The index's recall@k against exact search on the collection's vectors,
 * for the validation items as queries. -1 when there is no index. */
static int ann_recall(const char *dir, ims_catalog *cat, const int64_t *ids,
                      const unsigned char *is_val, int n, int k, double *recall, ims_error *err)
{
    *recall = -1;
    coll_encoder enc = {0};
    ims_hnsw *h = NULL;
    float *v = NULL;
    uint64_t *uids = NULL;
    ims_hit *a = NULL, *b = NULL;
    char *ip = coll_path(dir, "index.hnsw");
    int rc = coll_encoder_open(dir, cat, &enc, err);
    if (rc || !ip || ims_hnsw_open(ip, &h, NULL))
        goto done; /* no encoder or index yet: not measured */
    v = ims_malloc((size_t)(n ? n : 1) * enc.dim * sizeof(float));
    uids = ims_malloc((size_t)(n ? n : 1) * sizeof *uids);
    a = ims_malloc((size_t)k * sizeof *a);
    b = ims_malloc((size_t)k * sizeof *b);
    if (!v || !uids || !a || !b) {
        rc = ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
        goto done;
    }
    if (ims_catalog_get_vectors(cat, COLL_VECTORS, enc.stamp, (size_t)n, ids, v, enc.dim, NULL))
        goto done; /* vectors not current: not measured */
    for (int i = 0; i < n; i++)
        uids[i] = (uint64_t)ids[i];
    int64_t found = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (!is_val[i])
            continue;
        size_t na = 0, nb = 0;
        const float *q = v + (size_t)i * enc.dim;
        if (ims_hnsw_search(h, q, (size_t)k, NULL, a, &na) ||
            ims_flat_search(IMS_METRIC_COSINE, (uint32_t)enc.dim, v, (size_t)n, uids, q, (size_t)k,
                            b, &nb))
            continue;
        for (size_t x = 0; x < nb; x++)
            for (size_t y = 0; y < na; y++)
                if (a[y].id == b[x].id) {
                    found++;
                    break;
                }
        total += (int64_t)nb;
    }
    if (total)
        *recall = (double)found / (double)total;
done:
    ims_free(a);
    ims_free(b);
    ims_free(v);
    ims_free(uids);
    ims_free(ip);
    ims_hnsw_close(h);
    coll_encoder_close(&enc);
    return rc == IMS_ESTATE ? IMS_OK : rc;
}

int ims_coll_eval(const char *dir, int k, const ims_pipe_opts *o, ims_eval_result *r,
                  ims_error *err)
{
    memset(r, 0, sizeof *r);
    r->k = k = k > 0 ? k : 10;
    double t0 = ims_now();
    ims_catalog *cat = NULL;
    coll_encoder bb = {0};
    int64_t *ids = NULL;
    size_t n = 0, n_names = 0;
    float *x = NULL, *xq = NULL, *emb = NULL, *qemb = NULL, *xt = NULL, *x1 = NULL, *xq1 = NULL;
    int *labels = NULL, *q_of = NULL, *lt = NULL, n_q = 0, mt = 0;
    unsigned char *is_val = NULL;
    char **names = NULL, *seed_s = NULL;
    ims_train_head *fine = NULL, *seedh = NULL;
    int64_t computed = 0;
    int rc;
    if ((rc = ims_catalog_open(dir, 0, &cat, err)) || (rc = coll_backbone_open(dir, cat, &bb, err)))
        goto done;
    if ((rc = coll_features(dir, cat, &bb, o, &ids, &n, &x, &computed, err)))
        goto done;
    labels = ims_malloc((n ? n : 1) * sizeof *labels);
    is_val = ims_calloc(n ? n : 1, 1);
    if (!labels || !is_val) {
        rc = ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
        goto done;
    }
    if ((rc = coll_labels(cat, ids, n, labels, &names, &n_names, err)))
        goto done;
    ims_train_opts to;
    ims_train_opts_default(&to);
    if ((rc = ims_catalog_get_meta(cat, "finetune_seed", &seed_s, err)))
        goto done;
    to.seed = seed_s ? strtoull(seed_s, NULL, 10) : 1;
    char *white_s = NULL; /* the fine-tune's --no-whiten, if it was given */
    if ((rc = ims_catalog_get_meta(cat, "finetune_whiten", &white_s, err)))
        goto done;
    if (white_s && !strcmp(white_s, "0"))
        to.whiten = 0;
    ims_free(white_s);
    int n_val = ims_train_split(labels, (int)n, to.val_frac, to.seed, is_val);
    r->items = (int64_t)n;
    r->queries = n_val;
    if (n_val == 0) {
        rc = ims_error_set(err, IMS_ESTATE,
                           "%s: no validation items (need categories with 2+ items)", dir);
        goto done;
    }
    if ((rc = distorted_features(dir, cat, &bb, ids, is_val, (int)n, &xq, &q_of, &n_q, err)))
        goto done;
    evalset s = {(int)n, bb.dim, x, labels, is_val, xq, q_of, n_q, k};
    /* room for any head's output: raw taps + one LDA axis per class, or 256 */
    size_t big = (n > (size_t)n_q ? n : (size_t)n_q) + 1;
    size_t width = (size_t)bb.dim + n_names + 256;
    emb = ims_malloc(big * width * sizeof(float));
    qemb = ims_malloc(big * width * sizeof(float));
    if (!emb || !qemb) {
        rc = ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
        goto done;
    }
    /* backbone: raw taps */
    raw_embed(x, (int)n, &bb, emb);
    raw_embed(xq, n_q, &bb, qemb);
    if ((rc = score(&s, emb, qemb, bb.dim, &r->backbone, err)))
        goto done;
    /* heads are trained on the training rows only */
    if (subset(x, labels, is_val, (int)n, bb.dim, 0, &xt, &lt, &mt)) {
        rc = ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
        goto done;
    }
    if ((rc = ims_train_fit(xt, mt, bb.dim, bb.tap_dim, bb.n_taps, lt, (int)n_names, &to, &fine,
                            err)))
        goto done;
    int od = ims_train_out_dim(fine);
    ims_train_apply(fine, x, (int)n, emb);
    ims_train_apply(fine, xq, n_q, qemb);
    if ((rc = score(&s, emb, qemb, od, &r->finetuned, err)))
        goto done;
    {
        float *probs = ims_malloc((size_t)n * n_names * sizeof(float));
        if (!probs) {
            rc = ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
            goto done;
        }
        ims_train_classify(fine, x, (int)n, probs);
        int right = 0;
        for (size_t i = 0; i < n; i++) {
            if (!is_val[i])
                continue;
            int best = 0;
            for (size_t c = 1; c < n_names; c++)
                if (probs[i * n_names + c] > probs[i * n_names + best])
                    best = (int)c;
            right += best == labels[i];
        }
        r->classifier_accuracy = (double)right / n_val;
        ims_free(probs);
    }
    /* seed: Dense-256 ReLU + softmax on the first tap */
    {
        int d1 = bb.tap_dim[0];
        float *xt1 = ims_malloc((size_t)(mt ? mt : 1) * d1 * sizeof(float));
        x1 = ims_malloc(n * (size_t)d1 * sizeof(float));
        xq1 = ims_malloc((size_t)(n_q ? n_q : 1) * d1 * sizeof(float));
        if (!xt1 || !x1 || !xq1) {
            ims_free(xt1);
            rc = ims_error_set(err, IMS_ENOMEM, "eval: out of memory");
            goto done;
        }
        for (int i = 0; i < mt; i++)
            memcpy(xt1 + (size_t)i * d1, xt + (size_t)i * bb.dim, (size_t)d1 * sizeof(float));
        for (size_t i = 0; i < n; i++)
            memcpy(x1 + i * d1, x + i * bb.dim, (size_t)d1 * sizeof(float));
        for (int i = 0; i < n_q; i++)
            memcpy(xq1 + (size_t)i * d1, xq + (size_t)i * bb.dim, (size_t)d1 * sizeof(float));
        ims_train_opts so;
        ims_train_opts_seed(&so, to.seed);
        rc = ims_train_fit(xt1, mt, d1, &d1, 1, lt, (int)n_names, &so, &seedh, err);
        ims_free(xt1);
        if (rc)
            goto done;
        int sd = ims_train_out_dim(seedh);
        ims_train_apply(seedh, x1, (int)n, emb);
        ims_train_apply(seedh, xq1, n_q, qemb);
        if ((rc = score(&s, emb, qemb, sd, &r->seed, err)))
            goto done;
    }
    if ((rc = ann_recall(dir, cat, ids, is_val, (int)n, k, &r->ann_recall, err)))
        goto done;
done:
    r->seconds = ims_now() - t0;
    ims_train_head_free(fine);
    ims_train_head_free(seedh);
    if (names)
        ims_catalog_free_categories(names, NULL, n_names);
    ims_free(seed_s);
    ims_free(x);
    ims_free(xq);
    ims_free(x1);
    ims_free(xq1);
    ims_free(xt);
    ims_free(lt);
    ims_free(emb);
    ims_free(qemb);
    ims_free(labels);
    ims_free(q_of);
    ims_free(is_val);
    ims_free(ids);
    coll_encoder_close(&bb);
    ims_catalog_close(cat);
    return rc;
}
