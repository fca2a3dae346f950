/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * source.c: reading the formats datasets are converted from: IDX (as
 * Fashion-MNIST and MNIST ship, usually gzip-compressed; zlib reads both) and
 * CSV with a header line (RFC 4180, read by libcsv).
 */
#include "config.h"

#include "io_private.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* 16 GiB: past what a conversion in memory is for */
#define DML__IDX_MAX ((uint64_t)1 << 34)

dml_status_t dml_idx_read(const char *path, uint8_t **data, uint64_t dims[3], int *ndim)
{
    unsigned char hdr[4], be[4];
    uint64_t total = 1;
    uint8_t *buf = NULL;
    dml_status_t status;
    int nd, d, got;
    gzFile gz;

    gz = gzopen(path, "rb");
    if (gz == NULL)
        return dml_error_set_errno(errno ? errno : ENOENT, "%s: cannot open", path);
    /* magic: two zero bytes, the element type (0x08 = unsigned byte), ndim */
    if (gzread(gz, hdr, 4) != 4 || hdr[0] != 0 || hdr[1] != 0) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: not an IDX file (bad magic number)", path);
        goto err;
    }
    if (hdr[2] != 0x08) {
        status = dml_error_set(DML_ERR_FORMAT,
                               "%s: IDX element type 0x%02x; only unsigned bytes "
                               "(0x08) are supported",
                               path, hdr[2]);
        goto err;
    }
    nd = hdr[3];
    if (nd < 1 || nd > 3) {
        status =
            dml_error_set(DML_ERR_FORMAT, "%s: IDX with %d dimensions (1..3 supported)", path, nd);
        goto err;
    }
    for (d = 0; d < nd; d++) {
        if (gzread(gz, be, 4) != 4) {
            status = dml_error_set(DML_ERR_FORMAT, "%s: truncated IDX header", path);
            goto err;
        }
        dims[d] = (uint64_t)be[0] << 24 | (uint64_t)be[1] << 16 | (uint64_t)be[2] << 8 | be[3];
    }
    /* The product without overflow: three sizes of up to 2^32 each. */
    for (d = 0; d < nd; d++) {
        if (dims[d] == 0) {
            status = dml_error_set(DML_ERR_FORMAT,
                                   "%s: IDX header says dimension %d is 0: no "
                                   "data",
                                   path, d);
            goto err;
        }
        if (total > DML__IDX_MAX / dims[d]) {
            status = dml_error_set(
                DML_ERR_FORMAT,
                "%s: IDX header says %llu x %llu x %llu "
                "elements, more than the %llu read here (damaged header?)",
                path, (unsigned long long)dims[0], (unsigned long long)(nd > 1 ? dims[1] : 1),
                (unsigned long long)(nd > 2 ? dims[2] : 1), (unsigned long long)DML__IDX_MAX);
            goto err;
        }
        total *= dims[d];
    }
    buf = malloc(total);
    if (buf == NULL) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for %llu bytes", path,
                               (unsigned long long)total);
        goto err;
    }
    for (uint64_t off = 0; off < total; off += (uint64_t)got) {
        uint64_t want = total - off > (1u << 30) ? (1u << 30) : total - off;
        got = gzread(gz, buf + off, (unsigned)want);
        if (got <= 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            status = dml_error_set(DML_ERR_FORMAT, "%s: truncated: %llu of %llu data bytes (%s)",
                                   path, (unsigned long long)off, (unsigned long long)total,
                                   zerr != Z_OK && msg ? msg : "end of file");
            goto err;
        }
    }
    gzclose(gz);
    *data = buf;
    *ndim = nd;
    return DML_OK;
err:
    free(buf);
    gzclose(gz);
    return status;
}

/* ---- CSV ----------------------------------------------------------------
 *
 * libcsv parses (strict: a quote inside an unquoted field, or text after a
 * closing quote, is an error, and so is a quote left open at the end). The
 * file is fed to it one physical line at a time, so that every callback
 * knows the line it is on; a record is kept whole (its fields copied into
 * one buffer) and checked at its end, so that a wrong number of fields is
 * named before what the shifted fields would look like.
 */

/* Class numbers in a label column go up to this (exclusive). */
#define DML__CSV_MAX_CLASSES 65536
/* A field longer than this is refused (libcsv would grow its buffer to the
 * size of the file behind an unterminated quote). */
#define DML__CSV_FIELD_MAX ((size_t)256 << 20)
/* The progress callback is called after at least this many bytes. */
#define DML__CSV_PROGRESS_BYTES ((uint64_t)4 << 20)

typedef struct {
    const char *path, *label_column;
    dml_status_t status; /* the first failure; the rest of the file is not read */

    uint64_t line;     /* physical line being fed, from 1 */
    uint64_t rec_line; /* the line the current record starts on */
    /* the current record: fields as NUL-terminated strings in buf */
    char *buf;
    size_t used, cap;
    size_t *off, nfields, offcap;
    int first_null; /* its first field is empty and unquoted */

    /* where the last quote was opened, and closed (the file ending inside a
     * quoted field is named at its opening quote) */
    int inq;
    uint64_t open_line, open_col, close_line, close_col;

    int have_header;
    char **header;
    size_t ncols;
    long label_col;
    uint64_t nf;

    float *x;
    char (*labels)[DML_DATASET_NAME_MAX];
    uint64_t n, alloc;
    long maxlabel;
    uint64_t first_int, first_name;
    char int_example[DML_DATASET_NAME_MAX], name_example[DML_DATASET_NAME_MAX];
} dml__csv_t;

static int dml__cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static dml_status_t dml__csv_fail(dml__csv_t *c, dml_status_t st)
{
    if (c->status == DML_OK)
        c->status = st;
    return c->status;
}

static void *dml__csv_realloc(void *p, size_t size)
{
    return size > DML__CSV_FIELD_MAX + 4096 ? NULL : realloc(p, size);
}

/* libcsv: one field complete (s NULL: an empty unquoted field). */
static void dml__csv_field(void *s, size_t len, void *arg)
{
    dml__csv_t *c = arg;
    const char *f = s ? s : "";

    if (c->status != DML_OK)
        return;
    if (c->nfields == 0) {
        /* the record starts that many lines up when its first field (quoted)
         * holds line breaks */
        uint64_t nl = 0;
        const char *p = f;
        while ((p = memchr(p, '\n', len - (size_t)(p - f))) != NULL)
            nl++, p++;
        c->rec_line = c->line - nl;
        c->first_null = s == NULL;
    }
    if (strlen(f) != len) {
        dml__csv_fail(c, dml_error_set(DML_ERR_FORMAT,
                                       "%s:%llu: field %zu holds a NUL byte (not a "
                                       "text file?)",
                                       c->path, (unsigned long long)c->rec_line, c->nfields + 1));
        return;
    }
    if (c->nfields == c->offcap) {
        size_t nc = c->offcap ? c->offcap * 2 : 64;
        size_t *no = realloc(c->off, nc * sizeof(size_t));
        if (no == NULL) {
            dml__csv_fail(c, dml_error_set(DML_ERR_NO_MEMORY, "%s:%llu: no memory", c->path,
                                           (unsigned long long)c->line));
            return;
        }
        c->off = no;
        c->offcap = nc;
    }
    if (c->used + len + 1 > c->cap) {
        size_t nc = c->cap ? c->cap : 4096;
        char *nb;
        while (nc < c->used + len + 1)
            nc *= 2;
        if ((nb = realloc(c->buf, nc)) == NULL) {
            dml__csv_fail(c, dml_error_set(DML_ERR_NO_MEMORY, "%s:%llu: no memory", c->path,
                                           (unsigned long long)c->line));
            return;
        }
        c->buf = nb;
        c->cap = nc;
    }
    memcpy(c->buf + c->used, f, len + 1);
    c->off[c->nfields++] = c->used;
    c->used += len + 1;
}

static inline const char *dml__csv_get(const dml__csv_t *c, size_t k)
{
    return c->buf + c->off[k];
}

/* The header record: names, each once (a hash set: a header of a million
 * columns is checked in linear time), and the label column among them. */
static dml_status_t dml__csv_header(dml__csv_t *c)
{
    size_t k, nb = 16, *slot = NULL;

    c->ncols = c->nfields;
    c->header = calloc(c->ncols, sizeof(char *));
    while (nb < 2 * c->ncols)
        nb *= 2;
    slot = malloc(nb * sizeof(size_t));
    if (c->header == NULL || slot == NULL) {
        free(slot);
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for a header of %zu columns",
                             c->path, c->ncols);
    }
    memset(slot, 0xff, nb * sizeof(size_t)); /* SIZE_MAX: empty */
    for (k = 0; k < c->ncols; k++) {
        const char *name = dml__csv_get(c, k);
        size_t h;

        if ((c->header[k] = strdup(name)) == NULL) {
            free(slot);
            return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", c->path);
        }
        if (name[0] == '\0') {
            free(slot);
            return dml_error_set(DML_ERR_FORMAT,
                                 "%s:%llu: column %zu has no name in the header: "
                                 "every column needs one (pandas writes its row index so: "
                                 "to_csv(..., index=False) leaves it out)",
                                 c->path, (unsigned long long)c->rec_line, k + 1);
        }
        for (h = dml__fnv1a(DML_FNV1A_INIT, name, strlen(name)) & (nb - 1); slot[h] != SIZE_MAX;
             h = (h + 1) & (nb - 1)) {
            if (strcmp(c->header[slot[h]], name) == 0) {
                dml_status_t st = dml_error_set(
                    DML_ERR_FORMAT,
                    "%s:%llu: column \"%s\" appears twice in the header (columns "
                    "%zu and %zu): columns are told apart by name",
                    c->path, (unsigned long long)c->rec_line, name, slot[h] + 1, k + 1);
                free(slot);
                return st;
            }
        }
        slot[h] = k;
        if (strcmp(name, c->label_column) == 0)
            c->label_col = (long)k;
    }
    free(slot);
    if (c->label_col < 0)
        return dml_error_set(DML_ERR_NOT_FOUND, "%s: no column named \"%s\" in the header", c->path,
                             c->label_column);
    if (c->ncols < 2)
        return dml_error_set(DML_ERR_FORMAT, "%s: no feature columns besides \"%s\"", c->path,
                             c->label_column);
    c->nf = c->ncols - 1;
    c->have_header = 1;
    return DML_OK;
}

/* A label: a class number (a whole number) or a class name (not a number at
 * all); one kind per column. */
static dml_status_t dml__csv_label(dml__csv_t *c, const char *f)
{
    const unsigned long long line = (unsigned long long)c->rec_line;
    char *end;
    long v;

    if (strlen(f) >= DML_DATASET_NAME_MAX || f[0] == '\0')
        return dml_error_set(DML_ERR_FORMAT,
                             "%s:%llu: label \"%s\" is empty or longer than %d "
                             "bytes",
                             c->path, line, f, DML_DATASET_NAME_MAX - 1);
    strcpy(c->labels[c->n], f);
    errno = 0;
    v = strtol(f, &end, 10);
    if (*end == '\0' && errno == 0) {
        if (v < 0 || v >= DML__CSV_MAX_CLASSES)
            return dml_error_set(DML_ERR_FORMAT,
                                 "%s:%llu: label %s: class numbers go from 0 to "
                                 "%d (a label keeps its value as its class)",
                                 c->path, line, f, DML__CSV_MAX_CLASSES - 1);
        if (c->first_int == 0) {
            c->first_int = c->rec_line;
            snprintf(c->int_example, sizeof(c->int_example), "%s", f);
        }
        if (v > c->maxlabel)
            c->maxlabel = v;
    } else {
        (void)strtod(f, &end);
        if (*end == '\0' && end != f)
            return dml_error_set(DML_ERR_FORMAT,
                                 "%s:%llu: label \"%s\" in column \"%s\" is a "
                                 "number but not a whole one: a column of measurements is a "
                                 "feature, not a label (choose the class column with "
                                 "--label-column)",
                                 c->path, line, f, c->label_column);
        if (c->first_name == 0) {
            c->first_name = c->rec_line;
            snprintf(c->name_example, sizeof(c->name_example), "%s", f);
        }
    }
    if (c->first_int != 0 && c->first_name != 0)
        return dml_error_set(DML_ERR_FORMAT,
                             "%s:%llu: column \"%s\" mixes class numbers (\"%s\", "
                             "line %llu) and class names (\"%s\", line %llu): one kind per column",
                             c->path, line, c->label_column, c->int_example,
                             (unsigned long long)c->first_int, c->name_example,
                             (unsigned long long)c->first_name);
    return DML_OK;
}

/* A feature value: a finite number (a decimal comma is named as such). */
static dml_status_t dml__csv_value(dml__csv_t *c, size_t k, const char *f, float *out)
{
    char *end, hint[128] = "";

    errno = 0;
    *out = strtof(f, &end);
    if (end != f && *end == '\0' && errno != ERANGE && isfinite(*out))
        return DML_OK;
    if (strchr(f, ',') != NULL && strlen(f) < 64) {
        char dot[64], *p;
        snprintf(dot, sizeof(dot), "%s", f);
        if ((p = strchr(dot, ',')) != NULL && strchr(p + 1, ',') == NULL) {
            *p = '.';
            (void)strtod(dot, &end);
            if (end != dot && *end == '\0')
                snprintf(hint, sizeof(hint), " (a decimal comma? numbers are written %s)", dot);
        }
    }
    return dml_error_set(DML_ERR_FORMAT,
                         "%s:%llu: column \"%s\": \"%s\" is not a finite "
                         "number%s",
                         c->path, (unsigned long long)c->rec_line, c->header[k], f, hint);
}

/* A data record: as many fields as the header, a label and finite numbers. */
static dml_status_t dml__csv_row(dml__csv_t *c)
{
    uint64_t j = 0;
    size_t k;
    dml_status_t st;

    if (c->nfields != c->ncols)
        return dml_error_set(DML_ERR_FORMAT, "%s:%llu: %zu fields, the header has %zu%s", c->path,
                             (unsigned long long)c->rec_line, c->nfields, c->ncols,
                             c->nfields > c->ncols ? " (a field with a comma in it must be "
                                                     "quoted: \"1,5\")"
                                                   : "");
    if (c->n == c->alloc) {
        uint64_t na = c->alloc ? c->alloc * 2 : 1024;
        float *nx = realloc(c->x, na * c->nf * sizeof(float));
        char(*nl)[DML_DATASET_NAME_MAX] = NULL;
        if (nx != NULL) {
            c->x = nx;
            nl = realloc(c->labels, na * DML_DATASET_NAME_MAX);
        }
        if (nl == NULL)
            return dml_error_set(DML_ERR_NO_MEMORY,
                                 "%s: no memory at line %llu (%llu rows of %llu "
                                 "features read)",
                                 c->path, (unsigned long long)c->rec_line, (unsigned long long)c->n,
                                 (unsigned long long)c->nf);
        c->labels = nl;
        c->alloc = na;
    }
    for (k = 0; k < c->ncols; k++) {
        const char *f = dml__csv_get(c, k);
        if ((long)k == c->label_col)
            st = dml__csv_label(c, f);
        else
            st = dml__csv_value(c, k, f, &c->x[c->n * c->nf + j++]);
        if (st != DML_OK)
            return st;
    }
    c->n++;
    return DML_OK;
}

/* libcsv: a record ended. */
static void dml__csv_record(int ch, void *arg)
{
    dml__csv_t *c = arg;

    (void)ch;
    if (c->status == DML_OK) {
        if (!c->have_header)
            dml__csv_fail(c, dml__csv_header(c));
        else if (!(c->nfields == 1 && c->first_null)) /* a blank line */
            dml__csv_fail(c, dml__csv_row(c));
    }
    c->nfields = 0;
    c->used = 0;
}

/* Follows the quotes of a line that strict parsing accepted, to name the
 * opening quote of a field the file ends in. A quote right after a closing
 * one is an escaped quote ("") and opens nothing. */
static void dml__csv_quotes(dml__csv_t *c, const char *s, size_t len)
{
    const char *p = s;

    while ((p = memchr(p, '"', len - (size_t)(p - s))) != NULL) {
        uint64_t col = (uint64_t)(p - s) + 1;
        if (c->inq) {
            c->inq = 0;
            c->close_line = c->line;
            c->close_col = col;
        } else {
            c->inq = 1;
            if (!(c->close_line == c->line && c->close_col + 1 == col)) {
                c->open_line = c->line;
                c->open_col = col;
            }
        }
        p++;
    }
}

/* What strict parsing refused at byte `at` of the current line. */
static dml_status_t dml__csv_syntax(dml__csv_t *c, struct csv_parser *p, const char *s, size_t len,
                                    size_t at)
{
    const unsigned long long line = (unsigned long long)c->line;

    if (csv_error(p) == CSV_ENOMEM)
        return c->inq ? dml_error_set(DML_ERR_FORMAT,
                                      "%s:%llu:%llu: the quoted field opened here "
                                      "runs on for more than %zu MiB (is its closing quote "
                                      "missing?)",
                                      c->path, (unsigned long long)c->open_line,
                                      (unsigned long long)c->open_col, DML__CSV_FIELD_MAX >> 20)
                      : dml_error_set(DML_ERR_FORMAT, "%s:%llu: a field longer than %zu MiB",
                                      c->path, line, DML__CSV_FIELD_MAX >> 20);
    if (at < len && s[at] == '"')
        return dml_error_set(DML_ERR_FORMAT,
                             "%s:%llu:%zu: a quote inside an unquoted field (a "
                             "field with quotes in it is quoted as a whole, each quote doubled: "
                             "\"say \"\"hi\"\"\")",
                             c->path, line, at + 1);
    return dml_error_set(DML_ERR_FORMAT,
                         "%s:%llu:%zu: '%c' after the closing quote of a field "
                         "(a quote inside a quoted field is doubled: \"\"; a field ends at the "
                         "comma or the line end after its closing quote)",
                         c->path, line, at + 1,
                         at < len && s[at] >= 0x20 && s[at] < 0x7f ? s[at] : '?');
}

/* One physical line to libcsv; what strict parsing refuses is named at its
 * byte. The first failure is left in c->status. */
static void dml__csv_feed_line(dml__csv_t *c, struct csv_parser *p, const char *s, size_t n)
{
    size_t got;

    /* a UTF-8 byte order mark (spreadsheets write one) is no part of
     * the first column's name */
    if (c->line == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        s += 3, n -= 3;
    got = csv_parse(p, s, n, dml__csv_field, dml__csv_record, c);
    if (c->status != DML_OK)
        return;
    if (got != n) {
        dml__csv_fail(c, dml__csv_syntax(c, p, s, n, got));
        return;
    }
    dml__csv_quotes(c, s, n);
}

/* Reads the file at c->path through libcsv into c (header, rows, labels as
 * text), telling progress every DML__CSV_PROGRESS_BYTES and at the end. */
static dml_status_t dml__csv_parse(dml__csv_t *c, dml_csv_progress_cb_t progress, void *arg)
{
    struct csv_parser p;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t total = 0, done = 0, reported = 0;
    struct stat sb;
    FILE *fp;

    fp = fopen(c->path, "rb");
    if (fp == NULL)
        return dml_error_set_errno(errno, "%s: cannot open", c->path);
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode))
        total = (uint64_t)sb.st_size;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0) {
        fclose(fp);
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for the CSV parser", c->path);
    }
    csv_set_realloc_func(&p, dml__csv_realloc);
    csv_set_blk_size(&p, 4096);

    while (c->status == DML_OK && (len = getline(&line, &cap, fp)) > 0) {
        c->line++;
        done += (uint64_t)len;
        dml__csv_feed_line(c, &p, line, (size_t)len);
        if (c->status != DML_OK)
            break;
        if (progress != NULL && done - reported >= DML__CSV_PROGRESS_BYTES) {
            progress(arg, done, total, c->n);
            reported = done;
        }
    }
    if (c->status == DML_OK && ferror(fp))
        dml__csv_fail(c, dml_error_set_errno(errno ? errno : EIO, "%s: read failed at line %llu",
                                             c->path, (unsigned long long)c->line + 1));
    if (c->status == DML_OK && csv_fini(&p, dml__csv_field, dml__csv_record, c) != 0 &&
        c->status == DML_OK)
        dml__csv_fail(c, dml_error_set(DML_ERR_FORMAT,
                                       "%s:%llu:%llu: the quoted field opened "
                                       "here is never closed: the file ends inside it "
                                       "(unterminated quote)",
                                       c->path, (unsigned long long)c->open_line,
                                       (unsigned long long)c->open_col));
    csv_free(&p);
    fclose(fp);
    free(line);
    if (c->status == DML_OK && progress != NULL && done != reported)
        progress(arg, done, total, c->n);
    return c->status;
}

/* The class of each row: class numbers keep their value (classes 0..max);
 * class names are numbered in their byte order (strcmp), so that the
 * numbering does not depend on which name comes first, and *names_out gets
 * them (NULL for numbers). */
static dml_status_t dml__csv_classes(const dml__csv_t *c, int32_t **y_out, uint32_t *classes_out,
                                     char (**names_out)[DML_DATASET_NAME_MAX])
{
    char(*names)[DML_DATASET_NAME_MAX] = NULL;
    uint32_t nclasses = 0;
    int32_t *y;
    uint64_t i;

    y = malloc(c->n * sizeof(int32_t));
    if (y == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", c->path);
    if (c->first_name == 0) {
        nclasses = (uint32_t)c->maxlabel + 1;
        for (i = 0; i < c->n; i++)
            y[i] = (int32_t)strtol(c->labels[i], NULL, 10);
    } else {
        names = malloc(c->n * DML_DATASET_NAME_MAX);
        if (names == NULL) {
            free(y);
            return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", c->path);
        }
        memcpy(names, c->labels, c->n * DML_DATASET_NAME_MAX);
        qsort(names, c->n, DML_DATASET_NAME_MAX, dml__cmp_name);
        for (i = 0; i < c->n; i++)
            if (nclasses == 0 || strcmp(names[nclasses - 1], names[i]) != 0)
                memmove(names[nclasses++], names[i], DML_DATASET_NAME_MAX);
        for (i = 0; i < c->n; i++) {
            char(*hit)[DML_DATASET_NAME_MAX] =
                bsearch(c->labels[i], names, nclasses, DML_DATASET_NAME_MAX, dml__cmp_name);
            y[i] = (int32_t)(hit - names);
        }
    }
    *y_out = y;
    *classes_out = nclasses;
    *names_out = names;
    return DML_OK;
}

static void dml__csv_free(dml__csv_t *c)
{
    size_t k;

    if (c->header != NULL)
        for (k = 0; k < c->ncols; k++)
            free(c->header[k]);
    free(c->header);
    free(c->buf);
    free(c->off);
    free(c->labels);
    free(c->x);
}

dml_status_t dml_csv_read(const char *path, const char *label_column, float **x_out,
                          int32_t **y_out, uint64_t *n_out, uint64_t *features_out,
                          uint32_t *classes_out, char (**names_out)[DML_DATASET_NAME_MAX],
                          dml_csv_progress_cb_t progress, void *arg)
{
    dml__csv_t c;
    dml_status_t status;

    memset(&c, 0, sizeof(c));
    c.path = path;
    c.label_column = label_column;
    c.label_col = -1;
    c.maxlabel = -1;
    if ((status = dml__csv_parse(&c, progress, arg)) != DML_OK)
        goto out;
    if (!c.have_header) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: empty file (a header line is needed)", path);
        goto out;
    }
    if (c.n == 0) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: no data lines after the header", path);
        goto out;
    }
    if ((status = dml__csv_classes(&c, y_out, classes_out, names_out)) != DML_OK)
        goto out;
    *x_out = c.x;
    *n_out = c.n;
    *features_out = c.nf;
    c.x = NULL;
    dml_error_clear();
out:
    dml__csv_free(&c);
    return status;
}
