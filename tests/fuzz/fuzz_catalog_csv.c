/* SPDX-License-Identifier: MIT */
/*
 * fuzz_catalog_csv.c — untrusted bytes through the metadata CSV reader
 * (ims__csv_parse, strict RFC 4180). Invariants: success gives a header of
 * unique non-empty names, every row has exactly n_cols valid UTF-8 cells
 * without NUL, row lines are increasing and within the input's line count;
 * failure is IMS_EFORMAT (or IMS_ENOMEM) with a message naming a line.
 * Replayed over tests/fuzz/corpus/catalog_csv/ by ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog_int.h"

#define FUZZ_MAX_BYTES (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bad(const char *what)
{
    fprintf(stderr, "fuzz_catalog_csv: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_BYTES)
        return 0;
    ims__csv t;
    ims_error err;
    int rc = ims__csv_parse(size ? data : (const uint8_t *)"", size, "f.csv", &t, &err);
    if (rc != IMS_OK) {
        if ((rc != IMS_EFORMAT && rc != IMS_ENOMEM) || err.code != rc ||
            strncmp(err.msg, "f.csv: line ", 12) != 0)
            bad(err.msg);
        return 0;
    }
    long lines = 1;
    for (size_t i = 0; i < size; i++) /* LF, CRLF and lone CR end a line */
        lines += data[i] == '\n' || (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n'));
    if (t.n_cols == 0)
        bad("no columns");
    for (size_t i = 0; i < t.n_cols; i++) {
        if (!t.header[i][0])
            bad("empty header name");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t.header[i], t.header[j]))
                bad("duplicate header name");
    }
    for (size_t r = 0; r < t.n_rows; r++) {
        if (t.line[r] < 2 || t.line[r] > lines || (r && t.line[r] <= t.line[r - 1]))
            bad("row line out of order");
        for (size_t k = 0; k < t.n_cols; k++) {
            const char *s = t.cells[r * t.n_cols + k];
            if (!ims__utf8_valid((const unsigned char *)s, strlen(s)))
                bad("invalid UTF-8 cell");
        }
    }
    ims__csv_free(&t);
    return 0;
}
