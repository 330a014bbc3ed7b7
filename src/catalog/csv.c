/* SPDX-License-Identifier: MIT */
/*
 * csv.c — the metadata CSV, read whole and checked before ingest writes
 * anything.
 *
 * libcsv parses in strict mode (CSV_STRICT: a quote inside an unquoted
 * field or text after a closing quote is an error; CSV_STRICT_FINI: an
 * unterminated quoted field at the end is an error). RFC 4180 as found in
 * the wild: quoted fields with commas, doubled quotes and line breaks,
 * CRLF or LF line ends, a UTF-8 byte order mark (skipped). Blank lines are
 * ignored (libcsv does). Beyond the parser, a file is refused when a field
 * is not valid UTF-8 or holds a NUL byte, the header has an empty or a
 * repeated name, or a row has another number of fields than the header.
 *
 * Line numbers: the buffer is fed to libcsv one physical line (ended by
 * LF, CRLF or a lone CR) at a time, so the callbacks know the line they
 * fire on; a record's first line is its last line minus the line breaks
 * inside its quoted fields. Errors say "<file>: line N: what".
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <csv.h>

#include "catalog/catalog_int.h"

#define CSV_MAX_BYTES (1ll << 30)

/* Length of the valid UTF-8 sequence at s[0..n) (no overlongs,
 * surrogates, > U+10FFFF), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (b >= 0xC2 && b <= 0xDF)
        len = 2, cp = b & 0x1F;
    else if (b >= 0xE0 && b <= 0xEF)
        len = 3, cp = b & 0x0F;
    else if (b >= 0xF0 && b <= 0xF4)
        len = 4, cp = b & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int ims__utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = utf8_seq(s + i, n - i)))
            return 0;
    return 1;
}

void ims__utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0, len; i < n; i += len)
        if (!(len = utf8_seq(p + i, n - i)))
            p[i] = '?', len = 1;
}

typedef struct pstate {
    const char *where;
    ims__csv *t;
    long line;   /* physical line being fed (1-based) */
    long breaks; /* line breaks inside this record's fields so far */
    char **rec;  /* fields of the record being read */
    size_t n_rec, cap_rec;
    size_t cap_cells, cap_rows;
    int rc; /* first error */
    ims_error *err;
} pstate;

static int fail(pstate *p, int code, long line, const char *fmt, const char *arg)
{
    if (p->rc)
        return p->rc;
    char what[256];
    snprintf(what, sizeof what, fmt, arg);
    p->rc = ims_error_set(p->err, code, "%s: line %ld: %s", p->where, line, what);
    return p->rc;
}

/* libcsv field callback: check and keep one field. */
static void on_field(void *s, size_t len, void *ud)
{
    pstate *p = ud;
    if (p->rc)
        return;
    const unsigned char *b = s ? s : (const unsigned char *)"";
    for (size_t i = 0; i < len; i++)
        p->breaks += b[i] == '\n' || (b[i] == '\r' && (i + 1 == len || b[i + 1] != '\n'));
    if (memchr(b, 0, len)) {
        fail(p, IMS_EFORMAT, p->line, "%sNUL byte in a field", "");
        return;
    }
    if (!ims__utf8_valid(b, len)) {
        fail(p, IMS_EFORMAT, p->line, "%sinvalid UTF-8", "");
        return;
    }
    if (p->n_rec == p->cap_rec) {
        size_t nc = p->cap_rec ? p->cap_rec * 2 : 16;
        char **nr = ims_realloc(p->rec, nc * sizeof *nr);
        if (!nr) {
            fail(p, IMS_ENOMEM, p->line, "%sout of memory", "");
            return;
        }
        p->rec = nr, p->cap_rec = nc;
    }
    char *f = ims_malloc(len + 1);
    if (!f) {
        fail(p, IMS_ENOMEM, p->line, "%sout of memory", "");
        return;
    }
    memcpy(f, b, len);
    f[len] = '\0';
    p->rec[p->n_rec++] = f;
}

static void free_rec(pstate *p)
{
    for (size_t i = 0; i < p->n_rec; i++)
        ims_free(p->rec[i]);
    p->n_rec = 0;
}

/* The header record: unique, non-empty names. */
static void take_header(pstate *p, long start)
{
    ims__csv *t = p->t;
    for (size_t i = 0; i < p->n_rec; i++) {
        if (!p->rec[i][0]) {
            fail(p, IMS_EFORMAT, start, "%sempty column name in the header", "");
            return;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(p->rec[i], p->rec[j])) {
                fail(p, IMS_EFORMAT, start, "duplicate column '%s' in the header", p->rec[i]);
                return;
            }
    }
    t->header = p->rec;
    t->n_cols = p->n_rec;
    p->rec = NULL, p->n_rec = p->cap_rec = 0;
}

/* A data record: exactly n_cols fields, appended to the table. */
static void take_row(pstate *p, long start)
{
    ims__csv *t = p->t;
    if (p->n_rec != t->n_cols) {
        char what[96];
        snprintf(what, sizeof what, "%zu fields, the header has %zu", p->n_rec, t->n_cols);
        fail(p, IMS_EFORMAT, start, "%s", what);
        return;
    }
    if (t->n_rows == p->cap_rows) {
        size_t nc = p->cap_rows ? p->cap_rows * 2 : 256, bytes;
        if (!ims_size_mul3(nc, t->n_cols, sizeof(char *), &bytes)) {
            fail(p, IMS_ENOMEM, start, "%stoo many cells", "");
            return;
        }
        char **cells = ims_realloc(t->cells, bytes);
        if (cells)
            t->cells = cells;
        long *lines = cells ? ims_realloc(t->line, nc * sizeof *lines) : NULL;
        if (lines)
            t->line = lines;
        if (!cells || !lines) {
            fail(p, IMS_ENOMEM, start, "%sout of memory", "");
            return;
        }
        p->cap_rows = nc;
    }
    memcpy(t->cells + t->n_rows * t->n_cols, p->rec, t->n_cols * sizeof(char *));
    t->line[t->n_rows++] = start;
    p->n_rec = 0;
}

/* libcsv record callback. */
static void on_record(int ch, void *ud)
{
    pstate *p = ud;
    (void)ch;
    long start = p->line - p->breaks;
    p->breaks = 0;
    if (p->rc) {
        free_rec(p);
        return;
    }
    if (!p->t->header)
        take_header(p, start);
    else
        take_row(p, start);
    free_rec(p);
}

/* The end of the first physical line: LF, or a CR not followed by LF
 * (old Mac files; libcsv ends records there too). NULL if none. */
static const unsigned char *line_end(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] == '\n' || (b[i] == '\r' && i + 1 < n && b[i + 1] != '\n'))
            return b + i;
    return NULL;
}

int ims__csv_parse(const void *buf, size_t len, const char *where, ims__csv *out, ims_error *err)
{
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    if (len >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF)
        b += 3, len -= 3;
    struct csv_parser cp;
    if (csv_init(&cp, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return ims_error_set(err, IMS_ENOMEM, "%s: csv parser: out of memory", where);
    pstate p = {.where = where, .t = out, .line = 1, .err = err};
    size_t off = 0;
    long rec_start = 1; /* first line of the record being parsed */
    while (off < len && !p.rc) {
        if (cp.pstate == 0) /* libcsv's ROW_NOT_BEGUN: a record may start on this line */
            rec_start = p.line;
        const unsigned char *nl = line_end(b + off, len - off);
        size_t n = nl ? (size_t)(nl - (b + off)) + 1 : len - off;
        if (csv_parse(&cp, b + off, n, on_field, on_record, &p) != n && !p.rc) {
            int e = csv_error(&cp);
            fail(&p, e == CSV_ENOMEM ? IMS_ENOMEM : IMS_EFORMAT, p.line,
                 e == CSV_EPARSE ? "%smalformed quoted field (stray or unescaped quote)" : "%s",
                 e == CSV_EPARSE ? "" : csv_strerror(e));
        }
        off += n;
        if (nl && off < len)
            p.line++;
    }
    if (!p.rc && csv_fini(&cp, on_field, on_record, &p) != 0 && !p.rc)
        fail(&p, IMS_EFORMAT, rec_start,
             "%sunterminated quoted field (in the record starting on this line)", "");
    csv_free(&cp);
    free_rec(&p);
    ims_free(p.rec);
    if (!p.rc && !out->header)
        p.rc = ims_error_set(err, IMS_EFORMAT, "%s: line 1: empty CSV (no header)", where);
    if (p.rc)
        ims__csv_free(out);
    return p.rc;
}

int ims__csv_read(const char *path, ims__csv *out, ims_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return ims_error_set_errno(err, IMS_EIO, errno, "%s", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ims_error_set(err, IMS_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > CSV_MAX_BYTES) {
        fclose(f);
        return ims_error_set(err, IMS_ETOOBIG, "%s: CSV over 1 GiB", path);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = ims_malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return ims_error_set(err, IMS_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e || got != n) {
        ims_free(buf);
        return ims_error_set_errno(err, IMS_EIO, e, "%s: read failed", path);
    }
    int rc = ims__csv_parse(buf, n, path, out, err);
    ims_free(buf);
    return rc;
}

int ims__csv_column(const ims__csv *t, const char *name)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (!strcmp(t->header[i], name))
            return (int)i;
    return -1;
}

void ims__csv_free(ims__csv *t)
{
    for (size_t i = 0; i < t->n_cols; i++)
        ims_free(t->header[i]);
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        ims_free(t->cells[i]);
    ims_free(t->header);
    ims_free(t->cells);
    ims_free(t->line);
    memset(t, 0, sizeof *t);
}
