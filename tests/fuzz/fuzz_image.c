/* SPDX-License-Identifier: MIT */
/*
 * fuzz_image.c — untrusted bytes through ims_image_load_memory() (a small
 * pixel limit, so no input can ask for much memory) and, when it decodes,
 * through both preprocessing recipes. Invariants: a decoded image has
 * positive size within the limit and a known format; every error code is one
 * of the documented ones; preprocessed values are finite and in [0, 1];
 * ims_image_check_memory() gives the same code and message, and for a
 * decoded image the same size and format.
 * Replayed over tests/fuzz/corpus/image/ by ctest; build with
 * -fsanitize=fuzzer for real fuzzing.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim/image.h"
#include "imgsim/imgsim.h"

#define FUZZ_MAX_PIXELS (512u * 512u)
#define FUZZ_MAX_BYTES (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether the decode and the check each give one verdict on these bytes:
 * libvips's WebP loader runs libwebp with threads, and on some corrupt
 * lossless streams the verdict varies from run to run and from process to
 * process (found by fuzz-ci; the corpus's webp-lossless-unstable-decode
 * passes 0-6 decodes in 200, with or without the check; valgrind, which
 * serialises threads, finds no uninitialised read). A check that disagrees
 * with the decode where either of them, run again, changes its verdict is
 * that instability, not a check bug; a real one disagrees every time. */
static int same_verdict(int rc, const char *msg, int rc2, const char *msg2)
{
    return rc == rc2 && (!rc || !strcmp(msg, msg2));
}

static int verdicts_stable(const uint8_t *data, size_t size, const ims_image_opts *opts, int rc,
                           const char *msg, int rc_check, const char *msg_check)
{
    for (int i = 0; i < 64; i++) {
        ims_image *again = NULL;
        ims_image_info info;
        ims_error e;
        int rc2 = ims_image_load_memory(data, size, opts, &again, &e);
        ims_image_free(again);
        if (!same_verdict(rc, msg, rc2, e.msg))
            return 0;
        rc2 = ims_image_check_memory(data, size, opts, &info, &e);
        if (!same_verdict(rc_check, msg_check, rc2, e.msg))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_BYTES) /* bail early on big inputs */
        return 0;
    ims_init();
    ims_image_opts opts = {.max_pixels = FUZZ_MAX_PIXELS};
    ims_image *img = NULL;
    ims_error err;
    int rc = ims_image_load_memory(size ? data : (const uint8_t *)"", size, &opts, &img, &err);
    ims_image_info info;
    ims_error err_check;
    int rc_check =
        ims_image_check_memory(size ? data : (const uint8_t *)"", size, &opts, &info, &err_check);
    if ((rc_check != rc || (rc && strcmp(err_check.msg, err.msg)) ||
         (!rc && (info.width != img->width || info.height != img->height ||
                  strcmp(info.format, img->format)))) &&
        verdicts_stable(size ? data : (const uint8_t *)"", size, &opts, rc, err.msg, rc_check,
                        err_check.msg)) {
        fprintf(stderr, "fuzz_image: the check (%d: %s) disagrees with the decode (%d: %s)\n",
                rc_check, err_check.msg, rc, err.msg);
        abort();
    }
    if (rc != IMS_OK) {
        if (img || (rc != IMS_ECORRUPT && rc != IMS_EFORMAT && rc != IMS_ETOOBIG &&
                    rc != IMS_EUNSUPPORTED && rc != IMS_ENOMEM) ||
            err.code != rc || !err.msg[0]) {
            fprintf(stderr, "fuzz_image: bad error %d (%s)\n", rc, err.msg);
            abort();
        }
        return 0;
    }
    if (img->width <= 0 || img->height <= 0 ||
        (uint64_t)img->width * (uint64_t)img->height > FUZZ_MAX_PIXELS || !img->format[0])
        abort();
    static const int sizes[2] = {7, 33};
    float *t = malloc(sizeof(float) * 3 * 33 * 33);
    for (int k = 0; k < 2 && t; k++) {
        ims_preprocess pp;
        ims_preprocess_nsfwjs(&pp, sizes[k]);
        pp.resize = k ? IMS_RESIZE_BILINEAR_HALF_PIXEL : IMS_RESIZE_BILINEAR_ALIGN_CORNERS;
        pp.crop = k ? IMS_CROP_CENTER : IMS_CROP_STRETCH;
        if (ims_image_preprocess(img, &pp, t, NULL) != IMS_OK)
            abort();
        for (int i = 0; i < 3 * sizes[k] * sizes[k]; i++)
            if (!isfinite(t[i]) || t[i] < 0.0f || t[i] > 1.0f)
                abort();
    }
    free(t);
    ims_image_free(img);
    return 0;
}
