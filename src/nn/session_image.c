/* SPDX-License-Identifier: MIT */
/*
 * session_image.c — ims_nn_session_run_image (kept apart from session.c so
 * that programs using only ims_nn_session_run do not pull in the image
 * module).
 */
#include "exec_int.h"

int ims_nn_session_run_image(ims_nn_session *s, const ims_image *img, float *features,
                             float *probs, ims_error *err)
{
    if (!s || !img)
        return ims_error_set(err, IMS_EINVAL, "run_image: NULL argument");
    const ims_preprocess *pp = &s->g->pp;
    size_t n;
    if (!ims_size_mul3((size_t)pp->width, (size_t)pp->height, 3, &n))
        return ims_error_set(err, IMS_ETOOBIG, "run_image: input too large");
    float *x = ims_aligned_alloc(64, n * sizeof(float));
    if (!x)
        return ims_error_set(err, IMS_ENOMEM, "run_image: out of memory");
    int rc = ims_image_preprocess(img, pp, x, err);
    if (!rc)
        rc = ims_nn_session_run(s, x, 1, features, probs, err);
    ims_aligned_free(x);
    return rc;
}
