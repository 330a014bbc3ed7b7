/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tfjs_import.c — untrusted bytes through the TF.js importer
 * (ims__tfjs_import: model.json parse, weightsManifest, shard decode and
 * dequantisation, layers- and graph-model translation, graph validation).
 *
 * Input layout: the model.json text, one NUL byte, then the bytes of the
 * single weight shard, which is written as "group1-shard1of1" beside the
 * model.json (the name every seed's manifest uses; other names are simply
 * missing files). Both files live in a private temp directory made once per
 * process. Invariants: the import either fails with one of the documented
 * codes and a message, or yields a graph that passes ims__graph_validate.
 * Replayed over tests/fuzz/corpus/tfjs_import/ by ctest; build with
 * -fsanitize=fuzzer for real fuzzing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgsim/imgsim.h"
#include "nn/nn_int.h"

#define FUZZ_MAX_BYTES (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void cleanup(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/model.json", g_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/group1-shard1of1", g_dir);
    unlink(p);
    rmdir(g_dir);
}

static int put(const char *name, const void *b, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_BYTES) /* bail early on big inputs */
        return 0;
    if (!g_dir[0]) {
        ims_init();
        ims_log_set_level(IMS_LOG_ERROR);
        snprintf(g_dir, sizeof g_dir, "/tmp/ims-fuzz-tfjs-XXXXXX");
        if (!mkdtemp(g_dir))
            abort();
        atexit(cleanup);
    }
    const uint8_t *nul = size ? memchr(data, 0, size) : NULL;
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *shard = nul ? nul + 1 : data + size;
    size_t shard_len = size - json_len - (nul ? 1 : 0);
    if (put("model.json", data, json_len) || put("group1-shard1of1", shard, shard_len))
        abort();
    char path[128];
    snprintf(path, sizeof path, "%s/model.json", g_dir);
    ims__graph g;
    memset(&g, 0, sizeof g);
    ims_error err = {0};
    int rc = ims__tfjs_import(path, NULL, &g, &err);
    if (rc != IMS_OK) {
        if ((rc != IMS_ECORRUPT && rc != IMS_EFORMAT && rc != IMS_EUNSUPPORTED &&
             rc != IMS_ETOOBIG && rc != IMS_EINVAL && rc != IMS_ENOMEM && rc != IMS_EIO) ||
            !err.msg[0]) {
            fprintf(stderr, "fuzz_tfjs_import: bad error %d (%s)\n", rc, err.msg);
            abort();
        }
    } else if (ims__graph_validate(&g, &err) != IMS_OK) {
        fprintf(stderr, "fuzz_tfjs_import: imported graph fails validation: %s\n", err.msg);
        abort();
    }
    ims__graph_release(&g);
    return 0;
}
