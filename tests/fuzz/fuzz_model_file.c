/* SPDX-License-Identifier: MIT */
/*
 * fuzz_model_file.c — untrusted bytes through the .ism parser
 * (ims__model_parse: magic, versions, checksums, bounds, then full graph
 * validation). Invariants: it either fails with one of the documented codes
 * and a message, or yields a graph that passes ims__graph_validate and whose
 * every query (taps, info, stats, class names) stays in bounds.
 *
 * Checksums stop a fuzzer at the door, so inputs whose first 4 bytes are
 * "FIX!" get their CRCs recomputed before parsing: the rest of the input
 * then reaches the decoder and the graph validator.
 * Replayed over tests/fuzz/corpus/model_file/ by ctest; build with
 * -fsanitize=fuzzer for real fuzzing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#define FUZZ_MAX_BYTES (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Recompute the section and header CRCs in place where they are in bounds. */
static void reseal(unsigned char *b, size_t len)
{
    if (len < 256)
        return;
    for (int s = 0; s < 5; s++) {
        unsigned char *e = b + 112 + 24 * s;
        uint64_t off = ims__get_u64(e + 8), n = ims__get_u64(e + 16);
        if (off <= len && n <= len - off)
            ims__put_u32(e + 4, ims__crc32c(0, b + off, (size_t)n));
    }
    uint32_t hs = ims__get_u32(b + 16);
    if (hs >= 24 && hs <= len) {
        ims__put_u32(b + 20, 0);
        ims__put_u32(b + 20, ims__crc32c(0, b, hs));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_BYTES) /* bail early on big inputs */
        return 0;
    ims_init();
    int fix = size >= 4 && !memcmp(data, "FIX!", 4);
    if (fix)
        data += 4, size -= 4;
    unsigned char *buf = ims_aligned_alloc(64, size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (fix)
        reseal(buf, size);
    ims_nn_model m;
    memset(&m, 0, sizeof m);
    ims_error err = {0};
    int rc = ims__model_parse(buf, size, &m.g, &err);
    if (rc != IMS_OK) {
        if ((rc != IMS_ECORRUPT && rc != IMS_EFORMAT && rc != IMS_EVERSION && rc != IMS_ENOMEM) ||
            !err.msg[0]) {
            fprintf(stderr, "fuzz_model_file: bad error %d (%s)\n", rc, err.msg);
            abort();
        }
        ims_aligned_free(buf);
        return 0;
    }
    if (ims__graph_validate(&m.g, &err) != IMS_OK) {
        fprintf(stderr, "fuzz_model_file: parsed graph fails validation: %s\n", err.msg);
        abort();
    }
    /* every query must stay in bounds */
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        ims_nn_print_info(&m, devnull);
        ims_nn_print_info_json(&m, devnull);
        fclose(devnull);
    }
    size_t params;
    double flops;
    ims_nn_stats(&m, &params, &flops);
    for (int i = 0; i < ims_nn_n_classes(&m); i++)
        if (!ims_nn_class_name(&m, i))
            abort();
    for (uint32_t i = 0; i < m.g.n_nodes; i++) {
        int dim;
        if (ims_nn_tap_dim(&m, ims__str(&m.g, m.g.nodes[i].name), &dim, &err) == IMS_OK &&
            dim < 1)
            abort();
    }
    for (uint32_t i = 0; i < m.g.n_aliases; i++) {
        int dim;
        ims_nn_tap_dim(&m, ims__str(&m.g, m.g.aliases[i].name), &dim, &err);
    }
    (void)ims_nn_default_tap(&m);
    (void)ims_nn_name(&m);
    ims__model_parsed_free(&m.g);
    ims_aligned_free(buf);
    return 0;
}
