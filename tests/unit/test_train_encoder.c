/* SPDX-License-Identifier: MIT */
/*
 * test_train_encoder.c — encoder.ism round trip on real photos: backbone
 * features of a few sample photos (two taps of mobilenet_v2_mid) train a
 * fusion head; the written encoder, opened like any model, gives through a
 * session's default tap the vector ims_train_apply gives from the cached
 * features (GEMM tolerance), and its classifier ims_train_classify's
 * probabilities over the category names; the same head writes the same
 * bytes (also from an open backbone, whose writer's SHA-256 is the file's);
 * truncated and corrupted encoder files are refused. Both with the
 * default PCA-whitened raw part (a DENSE d x d + L2NORM node pair in the
 * file) and with whitening off (no such nodes). Skips (77) without the
 * fetched model and photos.
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "core/core_int.h"
#include "imgsim/imgsim.h"
#include "imgsim/nn.h"
#include "imgsim/train.h"

#define PER_CLASS 5
#define N_CLASSES 3
#define N (PER_CLASS * N_CLASSES)

static const char *GROUPS[N_CLASSES] = {"Fruits", "Marine Fish", "Green Leafy Vegetables"};
#define PRE                                                                   \
    "StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/" \
    "StatefulPartitionedCall/StatefulPartitionedCall/predict/"
static const char *TAPS[2] = {PRE "feature_vector/SpatialSqueeze", PRE
                              "MobilenetV2/expanded_conv_13/project/BatchNorm/FusedBatchNormV3"};

/* The first PER_CLASS photos (sorted names) of a group folder. */
static int list_photos(const char *dir, char paths[][1024])
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort), m = 0;
    for (int i = 0; i < n; i++) {
        if (m < PER_CLASS && strstr(e[i]->d_name, ".jpeg"))
            snprintf(paths[m++], 1024, "%.700s/%.300s", dir, e[i]->d_name);
        free(e[i]);
    }
    if (n > 0)
        free(e);
    return m;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    if (fread(b, 1, *len, f) != *len)
        *len = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
}

/* Open enc, run every 4th photo through it and compare with the head's
 * own inference from the cached features x (n x d): *vdiff, *pdiff the
 * largest differences of the vectors and the probabilities. Returns the
 * dim of the "encoder/raw/whiten" node, 0 when it is absent. */
static int encoder_diff(const ims_train_head *h, const char *enc, const float *x, int d,
                        ims_image *const *img, double *vdiff, double *pdiff)
{
    ims_error err;
    ims_nn_model *e = NULL;
    *vdiff = *pdiff = 1e9;
    CHECK_RC(ims_nn_open(enc, &e, &err), IMS_OK);
    if (!e)
        return -1;
    CHECK_STR_EQ(ims_nn_name(e), "mobilenet_v2_mid-finetuned");
    CHECK_EQ(ims_nn_n_classes(e), N_CLASSES);
    CHECK_STR_EQ(ims_nn_class_name(e, 1), "Marine Fish");
    int wdim = 0;
    if (ims_nn_tap_dim(e, "encoder/raw/whiten", &wdim, &err))
        wdim = 0;
    ims_nn_session_opts eo = {.want_probs = 1, .max_batch = 1, .n_threads = 1};
    ims_nn_session *es = NULL;
    CHECK_RC(ims_nn_session_new(e, &eo, &es, &err), IMS_OK);
    int od = ims_train_out_dim(h);
    CHECK_EQ(ims_nn_session_dim(es), od);
    float *want = malloc(sizeof(float) * od), *got = malloc(sizeof(float) * od);
    float wp[N_CLASSES], gp[N_CLASSES];
    double max_diff = 0, max_pdiff = 0;
    for (int i = 0; es && i < N; i += 4) {
        ims_train_apply(h, x + (size_t)i * d, 1, want);
        ims_train_classify(h, x + (size_t)i * d, 1, wp);
        CHECK_RC(ims_nn_session_run_image(es, img[i], got, gp, &err), IMS_OK);
        for (int j = 0; j < od; j++)
            max_diff = fmax(max_diff, fabs(got[j] - want[j]));
        for (int c = 0; c < N_CLASSES; c++)
            max_pdiff = fmax(max_pdiff, fabs(gp[c] - wp[c]));
    }
    free(want), free(got);
    ims_nn_session_free(es);
    ims_nn_close(e);
    *vdiff = max_diff, *pdiff = max_pdiff;
    return wdim;
}

int main(void)
{
    const char *mdir = getenv("IMS_MODELS_DIR"), *ddir = getenv("IMS_DATA_DIR");
    char model[1024], dir[700], paths[N][1024];
    snprintf(model, sizeof model, "%.900s/mobilenet_v2_mid.ism", mdir ? mdir : "models");
    if (access(model, R_OK))
        return check_skip(model);
    int labels[N];
    for (int c = 0; c < N_CLASSES; c++) {
        snprintf(dir, sizeof dir, "%.600s/food/%s", ddir ? ddir : "data", GROUPS[c]);
        if (list_photos(dir, paths + c * PER_CLASS) != PER_CLASS)
            return check_skip(dir);
        for (int i = 0; i < PER_CLASS; i++)
            labels[c * PER_CLASS + i] = c;
    }
    ims_error err;
    ims_nn_model *m = NULL;
    CHECK_RC(ims_nn_open(model, &m, &err), IMS_OK);
    if (!m)
        return check_report();
    ims_nn_session_opts so = {.taps = TAPS, .n_taps = 2, .max_batch = 1, .n_threads = 1};
    ims_nn_session *s = NULL;
    CHECK_RC(ims_nn_session_new(m, &so, &s, &err), IMS_OK);
    int d = ims_nn_session_dim(s), dims[2];
    ims_nn_tap_dim(m, TAPS[0], &dims[0], &err);
    ims_nn_tap_dim(m, TAPS[1], &dims[1], &err);
    CHECK_EQ(dims[0] + dims[1], d);
    float *x = malloc(sizeof(float) * N * d);
    ims_image *img[N];
    for (int i = 0; i < N; i++) {
        CHECK_RC(ims_image_load_file(paths[i], NULL, &img[i], &err), IMS_OK);
        CHECK_RC(ims_nn_session_run_image(s, img[i], x + (size_t)i * d, NULL, &err), IMS_OK);
    }
    ims_nn_session_free(s);
    ims_nn_close(m);

    ims_train_opts o;
    ims_train_opts_default(&o);
    o.seed = 5;
    o.val_frac = 0.4f;
    ims_train_head *h = NULL;
    CHECK_RC(ims_train_fit(x, N, d, dims, 2, labels, N_CLASSES, &o, &h, &err), IMS_OK);
    if (!h)
        return check_report();
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char enc[1024], enc2[1024], bad[1024];
    snprintf(enc, sizeof enc, "%s/test_train_encoder.%d.ism", tmp, (int)getpid());
    snprintf(enc2, sizeof enc2, "%s/test_train_encoder2.%d.ism", tmp, (int)getpid());
    snprintf(bad, sizeof bad, "%s/test_train_encoder_bad.%d.ism", tmp, (int)getpid());
    CHECK_RC(ims_train_write_encoder(h, model, TAPS, GROUPS, NULL, enc, &err), IMS_OK);
    /* the same from the backbone already open, with the written bytes'
     * SHA-256 */
    ims_nn_model *bm = NULL;
    char hex[65] = "", fhex[65];
    CHECK_RC(ims_nn_open(model, &bm, &err), IMS_OK);
    CHECK_RC(ims_train_write_encoder_from(h, bm, TAPS, GROUPS, NULL, enc2, hex, &err), IMS_OK);
    ims_nn_close(bm);
    size_t l1 = 0, l2 = 0;
    unsigned char *b1 = slurp(enc, &l1), *b2 = slurp(enc2, &l2);
    CHECK(b1 && b2 && l1 == l2 && l1 > 0 && !memcmp(b1, b2, l1));
    if (b2) {
        ims__sha256_hex(b2, l2, fhex);
        CHECK_MSG(!strcmp(hex, fhex), "written SHA-256 %s, file's %s", hex, fhex);
    }

    /* the encoder is a model like any other; its raw part is whitened */
    CHECK_NEAR(ims_train_whiten(h), IMS_TRAIN_WHITEN_A, 0);
    double max_diff, max_pdiff;
    CHECK_EQ(encoder_diff(h, enc, x, d, img, &max_diff, &max_pdiff), d);
    CHECK_MSG(max_diff <= 2e-5, "encoder vs ims_train_apply: max diff %g", max_diff);
    CHECK_MSG(max_pdiff <= 1e-4, "encoder vs ims_train_classify: max diff %g", max_pdiff);
    printf("whitened encoder vs apply: max |diff| %.3g (vector), %.3g (probs)\n", max_diff,
           max_pdiff);

    /* whitening off: no whitening nodes, same agreement, another vector */
    ims_train_head *hp = NULL;
    o.whiten = 0;
    CHECK_RC(ims_train_fit(x, N, d, dims, 2, labels, N_CLASSES, &o, &hp, &err), IMS_OK);
    if (hp) {
        CHECK_NEAR(ims_train_whiten(hp), 0, 0);
        CHECK_RC(ims_train_write_encoder(hp, model, TAPS, GROUPS, NULL, enc2, &err), IMS_OK);
        size_t lp = 0;
        unsigned char *bp = slurp(enc2, &lp);
        CHECK(bp && lp + 4 * (size_t)d * (d + 1) <= l1); /* the d x d matrix + bias */
        free(bp);
        CHECK_EQ(encoder_diff(hp, enc2, x, d, img, &max_diff, &max_pdiff), 0);
        CHECK_MSG(max_diff <= 2e-5, "plain encoder vs ims_train_apply: max diff %g", max_diff);
        CHECK_MSG(max_pdiff <= 1e-4, "plain encoder vs ims_train_classify: max diff %g", max_pdiff);
        printf("plain encoder vs apply: max |diff| %.3g (vector), %.3g (probs)\n", max_diff,
               max_pdiff);
        int od = ims_train_out_dim(h);
        float *ew = malloc(sizeof(float) * od), *ep = malloc(sizeof(float) * od);
        ims_train_apply(h, x, 1, ew);
        ims_train_apply(hp, x, 1, ep);
        double dd = 0;
        for (int j = 0; j < d; j++)
            dd += fabs(ew[j] - ep[j]);
        CHECK_MSG(dd > 0.05, "whitened and plain raw parts differ by only %g", dd);
        free(ew), free(ep);
        ims_train_head_free(hp);
    }

    /* truncated and corrupted encoder files are refused */
    spit(bad, b1, l1 / 2);
    ims_nn_model *z = NULL;
    CHECK_RC(ims_nn_open(bad, &z, &err), IMS_ECORRUPT);
    b1[l1 - 100] ^= 0x40; /* in the head's weights at the end */
    spit(bad, b1, l1);
    CHECK_RC(ims_nn_open(bad, &z, &err), IMS_ECORRUPT);
    CHECK(z == NULL);

    /* a tap the head was not trained on is refused */
    const char *wrong[2] = {TAPS[1], TAPS[0]};
    CHECK_RC(ims_train_write_encoder(h, model, wrong, GROUPS, NULL, bad, &err), IMS_EINVAL);

    unlink(enc), unlink(enc2), unlink(bad);
    free(b1), free(b2), free(x);
    for (int i = 0; i < N; i++)
        ims_image_free(img[i]);
    ims_train_head_free(h);
    return check_report();
}
