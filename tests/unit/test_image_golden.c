/* SPDX-License-Identifier: MIT */
/*
 * test_image_golden.c — bit-exactness against TF.js.
 *
 * tests/golden/preprocess_sha256.tsv holds, for 20 sample photos and both
 * input sizes (224, 299), the sha256 of the RGB bytes libjpeg-turbo decodes
 * and of the float32 input tensor TF.js 4.22.0's cpu backend builds with the
 * nsfwjs recipe. We decode $IMS_DATA_DIR/food/<group>/<code>.jpeg (fetched by
 * scripts/fetch-sample-data; skipped when absent), preprocess with
 * ims_preprocess_nsfwjs(), and require both hashes to match exactly.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sample_data.h"
#include "core/core_int.h"
#include "imgsim/image.h"
#include "imgsim/imgsim.h"

/* ---- the test ----------------------------------------------------------- */

int main(void)
{
    ims_init();

    const char *src = getenv("IMS_SOURCE_DIR"), *data = getenv("IMS_DATA_DIR");
    char tsv[4096], food[4096];
    snprintf(tsv, sizeof tsv, "%s/tests/golden/preprocess_sha256.tsv", src ? src : ".");
    snprintf(food, sizeof food, "%s/food", data ? data : "data");
    FILE *f = fopen(tsv, "r");
    CHECK_MSG(f != NULL, "cannot open %s", tsv);
    if (!f)
        return check_report();

    char line[512], want_rgb[65], want_in[65], code[16], path[8192];
    int size, n_rows = 0, n_rgb = 0, n_in = 0, n_missing = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%15s %d %64s %64s", code, &size, want_rgb,
                                     want_in) != 4)
            continue;
        n_rows++;
        if (!sample_find_photo(food, code, path, sizeof path)) {
            n_missing++;
            continue;
        }
        ims_image *img = NULL;
        ims_error err;
        int rc = ims_image_load_file(path, NULL, &img, &err);
        CHECK_MSG(rc == IMS_OK, "%s: %s", path, err.msg);
        if (rc)
            continue;
        char hex[65];
        ims__sha256_hex(img->rgb, (size_t)img->width * img->height * 3, hex);
        CHECK_MSG(strcmp(hex, want_rgb) == 0, "%s: rgb sha256 %s, want %s", code, hex,
                  want_rgb);
        n_rgb += strcmp(hex, want_rgb) == 0;

        ims_preprocess pp;
        ims_preprocess_nsfwjs(&pp, size);
        float *t = malloc(sizeof(float) * 3 * (size_t)size * size);
        CHECK_RC(ims_image_preprocess(img, &pp, t, &err), IMS_OK);
        /* little-endian float32 bytes, as TF.js's Float32Array on x86/arm */
        unsigned char *le = malloc(4 * 3 * (size_t)size * size);
        for (size_t i = 0; i < 3 * (size_t)size * size; i++) {
            uint32_t u;
            memcpy(&u, &t[i], 4);
            le[4 * i] = (unsigned char)u, le[4 * i + 1] = (unsigned char)(u >> 8);
            le[4 * i + 2] = (unsigned char)(u >> 16), le[4 * i + 3] = (unsigned char)(u >> 24);
        }
        ims__sha256_hex(le, 4 * 3 * (size_t)size * size, hex);
        CHECK_MSG(strcmp(hex, want_in) == 0, "%s@%d: input sha256 %s, want %s", code, size,
                  hex, want_in);
        n_in += strcmp(hex, want_in) == 0;
        free(le);
        free(t);
        ims_image_free(img);
    }
    fclose(f);
    CHECK_MSG(n_rows == 40, "%s: %d rows, want 40", tsv, n_rows);
    if (n_missing)
        return check_report() ? 1 : check_skip("sample photos (scripts/fetch-sample-data)");
    printf("golden: %d/%d rgb hashes and %d/%d input hashes match TF.js\n", n_rgb, n_rows,
           n_in, n_rows);
    return check_report();
}
