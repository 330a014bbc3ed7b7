/* SPDX-License-Identifier: MIT */
/*
 * test_catalog_csv.c — the strict metadata CSV reader (catalog/csv.c):
 * RFC 4180 quirks accepted (quoted commas, doubled quotes, embedded line
 * breaks, CRLF, BOM, blank lines, no final newline), malformed files
 * refused with the right line number, the UTF-8 validator.
 */
#include <string.h>

#include "catalog/catalog_int.h"
#include "check.h"

static int parse(const char *text, ims__csv *t, ims_error *err)
{
    return ims__csv_parse(text, strlen(text), "m.csv", t, err);
}

static const char *cell(const ims__csv *t, size_t row, size_t col)
{
    return row < t->n_rows && col < t->n_cols ? t->cells[row * t->n_cols + col] : "(none)";
}

/* Expect IMS_EFORMAT with "line N" and a fragment in the message. */
static void expect_bad(const char *text, int line, const char *frag)
{
    ims__csv t;
    ims_error err;
    char want[32];
    snprintf(want, sizeof want, "line %d:", line);
    int rc = parse(text, &t, &err);
    CHECK_RC(rc, IMS_EFORMAT);
    if (rc == IMS_EFORMAT) {
        CHECK_MSG(strstr(err.msg, want) != NULL, "want '%s' in: %s", want, err.msg);
        CHECK_MSG(strstr(err.msg, frag) != NULL, "want '%s' in: %s", frag, err.msg);
        CHECK_MSG(strncmp(err.msg, "m.csv: ", 7) == 0, "no file name: %s", err.msg);
    } else {
        ims__csv_free(&t);
    }
}

static void test_quirks(void)
{
    ims__csv t;
    ims_error err;
    const char *text = "\xEF\xBB\xBF"
                       "file,name,note\r\n"
                       "a.jpg,\"Apple, red\",plain\r\n"
                       "\r\n"
                       "b.jpg,\"Pear \"\"Williams\"\"\",\"two\r\nlines\"\r\n"
                       "c.jpg,Caf\xC3\xA9,\"x\n"
                       "y\n"
                       "z\"\n"
                       "d.jpg,,last";
    CHECK_RC(parse(text, &t, &err), IMS_OK);
    CHECK_EQ(t.n_cols, 3);
    CHECK_EQ(t.n_rows, 4);
    CHECK_STR_EQ(t.header[0], "file"); /* the BOM is not part of the name */
    CHECK_STR_EQ(cell(&t, 0, 1), "Apple, red");
    CHECK_STR_EQ(cell(&t, 1, 1), "Pear \"Williams\"");
    CHECK_STR_EQ(cell(&t, 1, 2), "two\r\nlines");
    CHECK_STR_EQ(cell(&t, 2, 1), "Caf\xC3\xA9");
    CHECK_STR_EQ(cell(&t, 2, 2), "x\ny\nz");
    CHECK_STR_EQ(cell(&t, 3, 1), "");
    CHECK_STR_EQ(cell(&t, 3, 2), "last");
    CHECK_EQ(t.line[0], 2);
    CHECK_EQ(t.line[1], 4); /* after a blank line */
    CHECK_EQ(t.line[2], 6);
    CHECK_EQ(t.line[3], 9);
    CHECK_EQ(ims__csv_column(&t, "note"), 2);
    CHECK_EQ(ims__csv_column(&t, "nope"), -1);
    ims__csv_free(&t);

    /* old Mac line ends (lone CR) count as lines too */
    CHECK_RC(parse("a,b\r1,2\r\r3,\"x\ry\"\r4,5", &t, &err), IMS_OK);
    CHECK_EQ(t.n_rows, 3);
    CHECK_EQ(t.line[0], 2);
    CHECK_EQ(t.line[1], 4);
    CHECK_EQ(t.line[2], 6);
    ims__csv_free(&t);
    expect_bad("a,b\r1,2\r3\r", 3, "1 fields");

    CHECK_RC(parse("only,header\n", &t, &err), IMS_OK);
    CHECK_EQ(t.n_rows, 0);
    ims__csv_free(&t);
}

static void test_malformed(void)
{
    expect_bad("a,b\n1,2\n3,\"unterminated\n4,5\n", 3, "unterminated");
    expect_bad("a,b\n1,2\n3\n", 3, "1 fields, the header has 2");
    expect_bad("a,b\n1,2,3\n", 2, "3 fields");
    expect_bad("a,b\n\"x\ny\",2,3\n", 2, "3 fields"); /* a record's first line */
    expect_bad("a,b,a\n1,2,3\n", 1, "duplicate column 'a'");
    expect_bad("a,,c\n1,2,3\n", 1, "empty column name");
    expect_bad("a,b\n1,\xC3\x28\n", 2, "invalid UTF-8");
    expect_bad("a,b\n1,\xED\xA0\x80\n", 2, "invalid UTF-8"); /* a surrogate */
    expect_bad("a,b\n1,x\"y\n", 2, "quote");                 /* stray quote */
    expect_bad("a,b\n1,\"x\"y\n", 2, "quote");               /* text after a closing quote */
    expect_bad("", 1, "empty CSV");
    char nul[] = "a,b\n1,x\0y\n";
    ims__csv t;
    ims_error err;
    CHECK_RC(ims__csv_parse(nul, sizeof nul - 1, "m.csv", &t, &err), IMS_EFORMAT);
    CHECK(strstr(err.msg, "NUL") != NULL);
    CHECK_RC(ims__csv_read("/nonexistent/m.csv", &t, &err), IMS_EIO);
}

static void test_utf8(void)
{
    CHECK(ims__utf8_valid((const unsigned char *)"plain", 5));
    CHECK(ims__utf8_valid((const unsigned char *)"\xE2\x82\xAC", 3));      /* euro */
    CHECK(ims__utf8_valid((const unsigned char *)"\xF0\x9F\x8D\x8E", 4));  /* emoji */
    CHECK(!ims__utf8_valid((const unsigned char *)"\xC0\xAF", 2));         /* overlong */
    CHECK(!ims__utf8_valid((const unsigned char *)"\xE0\x80\xAF", 3));     /* overlong */
    CHECK(!ims__utf8_valid((const unsigned char *)"\xF4\x90\x80\x80", 4)); /* > U+10FFFF */
    CHECK(!ims__utf8_valid((const unsigned char *)"\xE2\x82", 2));         /* cut short */
    CHECK(!ims__utf8_valid((const unsigned char *)"\xFF", 1));
}

int main(void)
{
    test_quirks();
    test_malformed();
    test_utf8();
    return check_report();
}
