/* SPDX-License-Identifier: MIT */
/*
 * test_oracle.c — the CNN engine judged by TensorFlow.js.
 *
 * tests/golden/oracle/<model>.jsonl (scripts/make-oracle-fixtures) holds, for
 * 20 sample photos (the first of each food group) and each of the three
 * nsfwjs models, what TF.js 4.22 (cpu backend) computed from the photo as
 * decoded by libjpeg-turbo: the RGB and input-tensor sha256, the 5 class
 * probabilities and the pooled vectors of several named taps.
 *
 * For every model and photo this test decodes the JPEG with our image
 * module, preprocesses it with the model's recipe, and
 *   - when the input tensor's sha256 equals the oracle's (same input, so
 *     only the network can differ): requires every probability within 1e-3
 *     and every tap's cosine similarity >= 0.9999;
 *   - otherwise (our decode + preprocess differ): reports it and requires
 *     the end-to-end tolerances, probabilities within 0.01, cosine >= 0.999.
 * It prints the worst case per model (max |dprob|, min cosine per tap).
 * Every model runs twice over the same photos: at batch 1 (threads inside
 * each op) and at batch 4 on 2 threads (whole images in parallel, the path
 * `imgsim embed` takes by default), with the same tolerances.
 *
 * Needs models/<name>.ism (scripts/fetch-models) and data/food (scripts/
 * fetch-sample-data); skips (77) without them unless IMS_REQUIRE_ASSETS=1.
 * IMS_ORACLE_MAX_IMAGES=N limits the photos per model. Unoptimised or
 * sanitizer builds check the first 3 photos of each model by default (a
 * Debug+ASan InceptionV3 takes ~20 s per photo); optimised builds all 20.
 */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sample_data.h"
#include "core/core_int.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"
#include "imgsim/nn.h"

/* ---- the test ----------------------------------------------------------- */

#define MAX_TAPS 8

static const char *const MODELS[] = {"mobilenet_v2", "inception_v3", "mobilenet_v2_mid"};

static double cosine(const float *a, const double *b, int n)
{
    double s = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i], na += (double)a[i] * a[i], nb += b[i] * b[i];
    if (na == 0 && nb == 0)
        return 1;
    return s / sqrt(na * nb);
}

/* Read the fixture's JSON lines into a JSON array. */
static json_t *read_fixture(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (n <= 1)
            continue;
        json_error_t e;
        json_t *r = json_loads(line, 0, &e);
        if (!r) {
            fprintf(stderr, "%s:%d: %s\n", path, e.line, e.text);
            json_decref(all);
            all = NULL;
            break;
        }
        json_array_append_new(all, r);
    }
    free(line);
    fclose(f);
    return all;
}

typedef struct stats {
    int n_images, n_sha_match, n_rgb_match;
    double max_dprob;
    double min_cos[MAX_TAPS];
} stats;

static void run_model(const char *models, const char *food, const char *src, const char *name,
                      int max_images)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.ism", models, name);
    ims_nn_model *m = NULL;
    ims_error err = {0};
    int rc = ims_nn_open(path, &m, &err);
    CHECK_MSG(rc == IMS_OK, "%s: %s", path, err.msg);
    if (rc)
        return;
    snprintf(path, sizeof path, "%s/tests/golden/oracle/%s.jsonl", src, name);
    json_t *fx = read_fixture(path);
    CHECK_MSG(fx && json_array_size(fx) > 0, "%s: cannot read the fixture", path);
    if (!fx || !json_array_size(fx)) {
        json_decref(fx);
        ims_nn_close(m);
        return;
    }
    /* taps as named in the fixture; one session computes them all */
    json_t *taps0 = json_object_get(json_array_get(fx, 0), "taps");
    int n_taps = (int)json_array_size(taps0);
    const char *tap_names[MAX_TAPS], *tap_keys[MAX_TAPS];
    int tap_dim[MAX_TAPS], tap_off[MAX_TAPS], dim = 0;
    if (n_taps < 1 || n_taps > MAX_TAPS)
        abort();
    for (int t = 0; t < n_taps; t++) {
        json_t *tp = json_array_get(taps0, (size_t)t);
        tap_names[t] = json_string_value(json_object_get(tp, "layer"));
        tap_keys[t] = json_string_value(json_object_get(tp, "name"));
        rc = ims_nn_tap_dim(m, tap_names[t], &tap_dim[t], &err);
        CHECK_MSG(rc == IMS_OK, "%s: tap %s: %s", name, tap_names[t], err.msg);
        if (rc) {
            json_decref(fx);
            ims_nn_close(m);
            return;
        }
        CHECK_EQ(tap_dim[t], json_integer_value(json_object_get(tp, "dim")));
        tap_off[t] = dim;
        dim += tap_dim[t];
    }
    const ims_preprocess *pp = ims_nn_preprocess(m);
    size_t n_in = (size_t)pp->width * pp->height * 3;
    int n_rows = (int)json_array_size(fx) < max_images ? (int)json_array_size(fx) : max_images;
    int n_cls = ims_nn_n_classes(m);
    CHECK_EQ(n_cls, 5);
    /* decode and preprocess every photo once; `row` maps an input to its fixture line */
    float *input = malloc((size_t)n_rows * n_in * sizeof(float));
    int *row = malloc((size_t)n_rows * sizeof *row), *same = malloc((size_t)n_rows * sizeof *same);
    int *rgb_same = malloc((size_t)n_rows * sizeof *rgb_same), n_imgs = 0;
    float *feat = malloc((size_t)n_rows * dim * sizeof(float));
    float *probs = malloc((size_t)n_rows * n_cls * sizeof(float));
    double *ref = malloc((size_t)dim * sizeof(double));
    if (!input || !row || !same || !rgb_same || !feat || !probs || !ref)
        abort();
    for (int i = 0; i < n_rows; i++) {
        json_t *r = json_array_get(fx, (size_t)i);
        const char *code = json_string_value(json_object_get(r, "code"));
        char photo[8192], hex[65];
        if (!sample_find_photo(food, code, photo, sizeof photo)) {
            CHECK_MSG(0, "%s: photo %s not found under %s", name, code, food);
            continue;
        }
        ims_image *img = NULL;
        rc = ims_image_load_file(photo, NULL, &img, &err);
        CHECK_MSG(rc == IMS_OK, "%s: %s", photo, err.msg);
        if (rc)
            continue;
        ims__sha256_hex(img->rgb, (size_t)img->width * img->height * 3, hex);
        rgb_same[n_imgs] = !strcmp(hex, json_string_value(json_object_get(r, "rgb_sha256")));
        float *in = input + (size_t)n_imgs * n_in;
        rc = ims_image_preprocess(img, pp, in, &err);
        ims_image_free(img);
        CHECK_MSG(rc == IMS_OK, "%s: preprocess: %s", photo, err.msg);
        if (rc)
            continue;
        ims__sha256_hex(in, n_in * sizeof(float), hex);
        same[n_imgs] = !strcmp(hex, json_string_value(json_object_get(r, "input_sha256")));
        if (!same[n_imgs])
            fprintf(stderr,
                    "%s %s: input tensor differs from the oracle's (rgb %s); "
                    "checking end to end with the looser tolerances\n",
                    name, code, rgb_same[n_imgs] ? "same" : "differs");
        row[n_imgs++] = i;
    }

    /* batch 1 with threads inside each op (all CPUs), then whole images in
     * parallel (batch 4, 2 threads: the image-parallel path users get by
     * default from `imgsim embed`) */
    static const int MODES[2][2] = {{1, 0}, {4, 2}};
    for (int mode = 0; mode < 2; mode++) {
        int max_batch = MODES[mode][0], n_threads = MODES[mode][1];
        ims_nn_session_opts so = {.taps = tap_names,
                                  .n_taps = n_taps,
                                  .want_probs = 1,
                                  .max_batch = max_batch,
                                  .n_threads = n_threads};
        ims_nn_session *s = NULL;
        rc = ims_nn_session_new(m, &so, &s, &err);
        CHECK_MSG(rc == IMS_OK, "%s: session: %s", name, err.msg);
        if (rc)
            break;
        CHECK_EQ(ims_nn_session_dim(s), dim);
        double t0 = ims_now();
        for (int i = 0; i < n_imgs && !rc; i += max_batch) {
            int n = n_imgs - i < max_batch ? n_imgs - i : max_batch;
            rc = ims_nn_session_run(s, input + (size_t)i * n_in, n, feat + (size_t)i * dim,
                                    probs + (size_t)i * n_cls, &err);
            CHECK_MSG(rc == IMS_OK, "%s: run: %s", name, err.msg);
        }
        double dt = ims_now() - t0;
        ims_nn_session_free(s);
        if (rc)
            break;
        stats st = {0};
        for (int t = 0; t < n_taps; t++)
            st.min_cos[t] = 1;
        for (int i = 0; i < n_imgs; i++) {
            json_t *r = json_array_get(fx, (size_t)row[i]);
            const char *code = json_string_value(json_object_get(r, "code"));
            const float *f = feat + (size_t)i * dim, *pr = probs + (size_t)i * n_cls;
            st.n_images++;
            st.n_sha_match += same[i];
            st.n_rgb_match += rgb_same[i];
            double tol_p = same[i] ? 1e-3 : 1e-2, tol_c = same[i] ? 0.9999 : 0.999;
            json_t *jp = json_object_get(r, "probs");
            for (int k = 0; k < n_cls; k++) {
                double want = json_number_value(json_array_get(jp, (size_t)k));
                double d = fabs(pr[k] - want);
                if (d > st.max_dprob)
                    st.max_dprob = d;
                CHECK_MSG(d <= tol_p, "%s %s (batch %d, %d threads): prob[%d] = %.6f, oracle %.6f",
                          name, code, max_batch, n_threads, k, (double)pr[k], want);
            }
            json_t *jt = json_object_get(r, "taps");
            for (int t = 0; t < n_taps; t++) {
                json_t *v = json_object_get(json_array_get(jt, (size_t)t), "v");
                CHECK_EQ(json_array_size(v), tap_dim[t]);
                if ((int)json_array_size(v) != tap_dim[t])
                    continue;
                for (int k = 0; k < tap_dim[t]; k++)
                    ref[k] = json_number_value(json_array_get(v, (size_t)k));
                double c = cosine(f + tap_off[t], ref, tap_dim[t]);
                if (c < st.min_cos[t])
                    st.min_cos[t] = c;
                CHECK_MSG(c >= tol_c, "%s %s (batch %d, %d threads): tap %s cosine %.6f < %g", name,
                          code, max_batch, n_threads, tap_names[t], c, tol_c);
            }
        }
        printf("%s (batch %d, threads %d): %d images, input sha256 equal %d/%d (rgb %d/%d), "
               "max |dprob| %.3g, %.2f s/image\n",
               name, max_batch, n_threads, st.n_images, st.n_sha_match, st.n_images, st.n_rgb_match,
               st.n_images, st.max_dprob, st.n_images ? dt / st.n_images : 0.0);
        for (int t = 0; t < n_taps; t++)
            printf("  %-10s min cosine %.9f (1-cos %.1e)  %s (%d)\n", tap_keys[t], st.min_cos[t],
                   1 - st.min_cos[t], tap_names[t], tap_dim[t]);
        CHECK_MSG(st.n_images > 0, "%s: no image checked", name);
    }
    free(input);
    free(row);
    free(same);
    free(rgb_same);
    free(feat);
    free(probs);
    free(ref);
    json_decref(fx);
    ims_nn_close(m);
}

int main(void)
{
    ims_init();
    const char *models = getenv("IMS_MODELS_DIR"), *data = getenv("IMS_DATA_DIR"),
               *src = getenv("IMS_SOURCE_DIR");
    if (!models || !data || !src)
        return check_skip("IMS_MODELS_DIR, IMS_DATA_DIR, IMS_SOURCE_DIR not set (run via ctest)");
    char path[4096], food[4096];
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.ism", models, MODELS[i]);
        if (access(path, R_OK))
            return check_skip("models/*.ism missing (run scripts/fetch-models)");
    }
    snprintf(food, sizeof food, "%s/food", data);
    if (access(food, R_OK))
        return check_skip("data/food missing (run scripts/fetch-sample-data)");
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
    int max_images = 3;
#else
    int max_images = 1000;
#endif
    const char *mx = getenv("IMS_ORACLE_MAX_IMAGES");
    if (mx && atoi(mx) > 0)
        max_images = atoi(mx);
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++)
        run_model(models, food, src, MODELS[i], max_images);
    return check_report();
}
