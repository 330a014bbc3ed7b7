/* SPDX-License-Identifier: MIT */
/*
 * preprocess.c — decoded RGB bytes to a model's input tensor (NHWC float).
 *
 * Steps, in the order TF.js runs them for nsfwjs:
 *   1. scale: every byte x becomes a float32 v = x * scale. When scale is the
 *      float nearest 1/k for an integer k (1/255 for nsfwjs) the value is
 *      computed as TF.js's `div(255)` does: x / k in double, rounded once to
 *      float32 (x * (float)(1/255) would differ in the last bit);
 *   2. crop: IMS_CROP_STRETCH uses the whole image; IMS_CROP_CENTER the
 *      central rectangle with the target aspect ratio;
 *   3. resize: bilinear, mirroring tfjs-backend-cpu's ResizeBilinear kernel
 *      operation for operation: float32 inputs widened to double, the ratio
 *      effectiveInputSize / effectiveOutputSize, source coordinate
 *      ratio * r (align corners) or ratio * (r + 0.5) - 0.5 (half-pixel
 *      centres), floor clamped at 0 and ceil at size-1, then
 *      top = tl + (tr - tl) * fx, bottom likewise, v = top + (bottom - top) * fy,
 *      in double, stored as float32;
 *   4. normalise: (v - mean[c]) / std[c] in float, skipped when it is the
 *      identity (mean 0, std 1), so the nsfwjs tensor is exactly TF.js's.
 * The result for the nsfwjs recipe is bit-identical to TF.js's cpu backend
 * (tests/golden/preprocess_sha256.tsv, tests/unit/test_image_golden.c).
 *
 * Floating-point contraction (a*b+c fused into one FMA) would change the
 * rounding, so it is turned off for this file, whatever -march says. The
 * loop vectoriser gets GCC's dynamic cost model (-O2's "very cheap" one
 * refuses the row blend, whose length is not a known multiple of the
 * vector width): element-wise double operations and conversions round on
 * SIMD lanes exactly as in scalar code, so the bytes do not change.
 */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "vect-cost-model=dynamic")
#endif

#include <math.h>
#include <string.h>

#include "image/image_int.h"

void ims_preprocess_nsfwjs(ims_preprocess *pp, int size)
{
    IMS_ASSERT(pp);
    memset(pp, 0, sizeof *pp);
    pp->width = pp->height = size;
    pp->resize = IMS_RESIZE_BILINEAR_ALIGN_CORNERS;
    pp->crop = IMS_CROP_STRETCH;
    pp->scale = 1.0f / 255.0f;
    for (int c = 0; c < 3; c++)
        pp->mean[c] = 0.0f, pp->std[c] = 1.0f;
    pp->shrink_to = 0;
}

/* Byte -> scaled float32 table (step 1). */
static void scale_lut(float scale, float lut[256])
{
    double k = 1.0 / (double)scale;
    double kr = nearbyint(k);
    int is_recip = kr >= 1.0 && kr <= 1e6 && (float)(1.0 / kr) == scale;
    for (int x = 0; x < 256; x++)
        lut[x] = is_recip ? (float)((double)x / kr) : (float)x * scale;
}

/* Source rectangle of the crop (step 2). */
static void crop_rect(int w, int h, const ims_preprocess *pp, int *x0, int *y0, int *cw,
                      int *ch)
{
    *x0 = 0, *y0 = 0, *cw = w, *ch = h;
    if (pp->crop != IMS_CROP_CENTER)
        return;
    /* Compare aspect ratios exactly: w/h vs tw/th. */
    const int64_t tw = pp->width, th = pp->height;
    if ((int64_t)w * th > (int64_t)h * tw) { /* too wide: crop columns */
        int64_t c = ((int64_t)h * tw + th / 2) / th;
        *cw = (int)IMS_MAX(1, IMS_MIN(c, w));
        *x0 = (w - *cw) / 2;
    } else if ((int64_t)w * th < (int64_t)h * tw) { /* too tall: crop rows */
        int64_t c = ((int64_t)w * th + tw / 2) / tw;
        *ch = (int)IMS_MAX(1, IMS_MIN(c, h));
        *y0 = (h - *ch) / 2;
    }
}

int ims__preprocess_crop(int w, int h, const ims_preprocess *pp, int rect[4])
{
    crop_rect(w, h, pp, &rect[0], &rect[1], &rect[2], &rect[3]);
    return IMS_OK;
}

static int check_recipe(const ims_image *img, const ims_preprocess *pp, ims_error *err)
{
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return ims_error_set(err, IMS_EINVAL, "preprocess: empty image");
    if (pp->width <= 0 || pp->height <= 0 || pp->width > IMS__PREPROCESS_MAX_SIDE ||
        pp->height > IMS__PREPROCESS_MAX_SIDE)
        return ims_error_set(err, IMS_EINVAL, "preprocess: bad input size %dx%d (1..%d)",
                             pp->width, pp->height, IMS__PREPROCESS_MAX_SIDE);
    if (pp->resize != IMS_RESIZE_BILINEAR_ALIGN_CORNERS &&
        pp->resize != IMS_RESIZE_BILINEAR_HALF_PIXEL)
        return ims_error_set(err, IMS_EINVAL, "preprocess: unknown resize method %d",
                             pp->resize);
    if (pp->crop != IMS_CROP_STRETCH && pp->crop != IMS_CROP_CENTER)
        return ims_error_set(err, IMS_EINVAL, "preprocess: unknown crop mode %d", pp->crop);
    if (!isfinite(pp->scale) || pp->scale == 0.0f)
        return ims_error_set(err, IMS_EINVAL, "preprocess: bad scale %g", (double)pp->scale);
    for (int c = 0; c < 3; c++)
        if (!isfinite(pp->mean[c]) || !isfinite(pp->std[c]) || pp->std[c] == 0.0f)
            return ims_error_set(err, IMS_EINVAL, "preprocess: bad mean/std for channel %d",
                                 c);
    return IMS_OK;
}

/* o[i] = (float)(t[i] + (b[i] - t[i]) * fy) for i < n: element by element,
 * so on SIMD lanes the results are the scalar loop's, bit for bit. */
static void blend_rows(float *restrict o, const double *restrict t, const double *restrict b,
                       double fy, size_t n)
{
    for (size_t i = 0; i < n; i++)
        o[i] = (float)(t[i] + (b[i] - t[i]) * fy);
}

int ims_image_preprocess(const ims_image *img, const ims_preprocess *pp, float *out,
                         ims_error *err)
{
    IMS_ASSERT(pp && out);
    int rc = check_recipe(img, pp, err);
    if (rc)
        return rc;

    float lut[256];
    scale_lut(pp->scale, lut);
    int x0, y0, in_w, in_h;
    crop_rect(img->width, img->height, pp, &x0, &y0, &in_w, &in_h);
    const int out_w = pp->width, out_h = pp->height;
    const int align = pp->resize == IMS_RESIZE_BILINEAR_ALIGN_CORNERS;
    const int half = pp->resize == IMS_RESIZE_BILINEAR_HALF_PIXEL;
    const size_t stride = (size_t)img->width * 3;
    const unsigned char *base = img->rgb + (size_t)y0 * stride + (size_t)x0 * 3;

    /* As tfjs-backend-cpu ResizeBilinear (kernels/ResizeBilinear.ts). */
    const double eff_in_h = (align && out_h > 1) ? in_h - 1 : in_h;
    const double eff_in_w = (align && out_w > 1) ? in_w - 1 : in_w;
    const double eff_out_h = (align && out_h > 1) ? out_h - 1 : out_h;
    const double eff_out_w = (align && out_w > 1) ? out_w - 1 : out_w;
    const double row_ratio = eff_in_h / eff_out_h;
    const double col_ratio = eff_in_w / eff_out_w;

    /* The source columns and weight of every output column are the same
     * on every row: computed once (the same double operations as per
     * pixel, so the same values), as is each byte's value widened to
     * double (exact). */
    /* Each output row blends two source rows, each first interpolated
     * along x. Neighbouring output rows mostly share their source rows
     * (the photos are upscaled or mildly shrunk), so every source row is
     * interpolated along x once into one of two cached rows: the same
     * double operations on the same operands as the per-pixel formula
     * (t = tl + (tr - tl) fx, b likewise, then t + (b - t) fy), so the
     * same values, with about half the work. */
    const size_t row_n = (size_t)out_w * 3;
    size_t *cols = ims_malloc((size_t)out_w * 2 * sizeof *cols);
    double *fxs = ims_malloc((size_t)out_w * sizeof *fxs);
    double *hrow = ims_malloc(2 * row_n * sizeof *hrow);
    if (!cols || !fxs || !hrow) {
        ims_free(cols);
        ims_free(fxs);
        ims_free(hrow);
        return ims_error_set(err, IMS_ENOMEM, "preprocess: out of memory");
    }
    for (int c = 0; c < out_w; c++) {
        const double fc = half ? col_ratio * (c + 0.5) - 0.5 : col_ratio * c;
        const double c_lo = fmax(0.0, floor(fc));
        const double c_hi = fmin((double)(in_w - 1), ceil(fc));
        fxs[c] = fc - c_lo;
        cols[2 * c] = (size_t)c_lo * 3, cols[2 * c + 1] = (size_t)c_hi * 3;
    }
    double dlut[256];
    for (int x = 0; x < 256; x++)
        dlut[x] = lut[x];

    long cached[2] = {-1, -1}; /* source row held by hrow[k * row_n] */
    int next_slot = 0;
    float *o = out;
    for (int r = 0; r < out_h; r++) {
        const double fr = half ? row_ratio * (r + 0.5) - 0.5 : row_ratio * r;
        const double r_lo = fmax(0.0, floor(fr));
        const double fy = fr - r_lo;
        const double r_hi = fmin((double)(in_h - 1), ceil(fr));
        const long want[2] = {(long)r_lo, (long)r_hi};
        const double *h[2];
        for (int k = 0; k < 2; k++) {
            int slot = cached[0] == want[k] ? 0 : cached[1] == want[k] ? 1 : -1;
            if (slot < 0) {
                /* replace the slot the other wanted row does not use */
                slot = cached[next_slot] == want[1 - k] ? 1 - next_slot : next_slot;
                next_slot = 1 - slot;
                cached[slot] = want[k];
                const unsigned char *src = base + (size_t)want[k] * stride;
                double *hr = hrow + (size_t)slot * row_n;
                for (int c = 0; c < out_w; c++) {
                    const double fx = fxs[c];
                    const size_t il = cols[2 * c], ir = cols[2 * c + 1];
                    for (int d = 0; d < 3; d++) {
                        const double lft = dlut[src[il + d]], rgt = dlut[src[ir + d]];
                        hr[(size_t)c * 3 + d] = lft + (rgt - lft) * fx;
                    }
                }
            }
            h[k] = hrow + (size_t)slot * row_n;
        }
        blend_rows(o, h[0], h[1], fy, row_n);
        o += row_n;
    }
    ims_free(cols);
    ims_free(fxs);
    ims_free(hrow);

    int identity = 1;
    for (int c = 0; c < 3; c++)
        identity &= pp->mean[c] == 0.0f && pp->std[c] == 1.0f;
    if (!identity) {
        const size_t n = (size_t)out_w * out_h;
        for (size_t i = 0; i < n; i++)
            for (int d = 0; d < 3; d++)
                out[i * 3 + d] = (out[i * 3 + d] - pp->mean[d]) / pp->std[d];
    }
    return IMS_OK;
}
