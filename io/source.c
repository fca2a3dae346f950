/*
 * source.c: reading the formats datasets are converted from: IDX (as
 * Fashion-MNIST and MNIST ship, usually gzip-compressed; zlib reads both) and
 * CSV with a header line.
 */
#include "config.h"

#include "io_private.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        status = dml_error_set(DML_ERR_FORMAT, "%s: IDX element type 0x%02x; only unsigned bytes "
                               "(0x08) are supported", path, hdr[2]);
        goto err;
    }
    nd = hdr[3];
    if (nd < 1 || nd > 3) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: IDX with %d dimensions (1..3 supported)", path,
                               nd);
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
            status = dml_error_set(DML_ERR_FORMAT, "%s: IDX header says dimension %d is 0: no "
                                   "data", path, d);
            goto err;
        }
        if (total > DML__IDX_MAX / dims[d]) {
            status = dml_error_set(DML_ERR_FORMAT, "%s: IDX header says %llu x %llu x %llu "
                                   "elements, more than the %llu read here (damaged header?)",
                                   path, (unsigned long long)dims[0],
                                   (unsigned long long)(nd > 1 ? dims[1] : 1),
                                   (unsigned long long)(nd > 2 ? dims[2] : 1),
                                   (unsigned long long)DML__IDX_MAX);
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

/* Splits line at commas in place; strips one pair of surrounding quotes and
 * the line end. Returns the number of fields (at most max). */
static size_t dml__csv_split(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *p = line, *e;

    line[strcspn(line, "\r\n")] = '\0';
    while (n < max) {
        e = strchr(p, ',');
        if (e != NULL)
            *e = '\0';
        while (*p == ' ')
            p++;
        if (*p == '"') {
            size_t l = strlen(p);
            if (l >= 2 && p[l - 1] == '"') {
                p[l - 1] = '\0';
                p++;
            }
        }
        fields[n++] = p;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return n;
}

/* Class numbers in a label column go up to this (exclusive). */
#define DML__CSV_MAX_CLASSES 65536

static int dml__cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

dml_status_t dml_csv_read(const char *path, const char *label_column, float **x_out,
                          int32_t **y_out, uint64_t *n_out, uint64_t *features_out,
                          uint32_t *classes_out, char (**names_out)[DML_DATASET_NAME_MAX])
{
    char *line = NULL, **fields = NULL, **header = NULL;
    char (*labels)[DML_DATASET_NAME_MAX] = NULL, (*names)[DML_DATASET_NAME_MAX] = NULL;
    size_t cap = 0, ncols, k, k2;
    uint64_t n = 0, alloc = 0, lineno = 1, nf, i, first_int = 0, first_name = 0;
    long label_col = -1, maxlabel = -1;
    char int_example[DML_DATASET_NAME_MAX] = "", name_example[DML_DATASET_NAME_MAX] = "";
    float *x = NULL;
    int32_t *y = NULL;
    uint32_t nclasses = 0;
    dml_status_t status;
    FILE *fp;

    fp = fopen(path, "r");
    if (fp == NULL)
        return dml_error_set_errno(errno, "%s: cannot open", path);
    if (getline(&line, &cap, fp) < 0) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: empty file (a header line is needed)", path);
        goto err;
    }
    ncols = 1;
    for (k = 0; line[k]; k++)
        ncols += line[k] == ',';
    header = calloc(ncols, sizeof(char *));
    fields = calloc(ncols + 1, sizeof(char *));
    if (header == NULL || fields == NULL) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", path);
        goto err;
    }
    ncols = dml__csv_split(line, fields, ncols);
    for (k = 0; k < ncols; k++) {
        if ((header[k] = strdup(fields[k])) == NULL) {
            status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", path);
            goto err;
        }
        for (k2 = 0; k2 < k; k2++)
            if (strcmp(header[k2], header[k]) == 0) {
                status = dml_error_set(DML_ERR_FORMAT, "%s:1: column \"%s\" appears twice in the "
                                       "header (columns %zu and %zu): columns are told apart by "
                                       "name", path, header[k], k2 + 1, k + 1);
                goto err;
            }
        if (strcmp(fields[k], label_column) == 0)
            label_col = (long)k;
    }
    if (label_col < 0) {
        status = dml_error_set(DML_ERR_NOT_FOUND, "%s: no column named \"%s\" in the header",
                               path, label_column);
        goto err;
    }
    if (ncols < 2) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: no feature columns besides \"%s\"", path,
                               label_column);
        goto err;
    }
    nf = ncols - 1;

    while (getline(&line, &cap, fp) >= 0) {
        size_t got;
        char *end;
        uint64_t j = 0;

        lineno++;
        if (line[strspn(line, " \r\n")] == '\0')
            continue;
        got = dml__csv_split(line, fields, ncols + 1);
        if (got != ncols) {
            status = dml_error_set(DML_ERR_FORMAT, "%s:%llu: %zu fields, the header has %zu",
                                   path, (unsigned long long)lineno, got, ncols);
            goto err;
        }
        if (n == alloc) {
            uint64_t na = alloc ? alloc * 2 : 1024;
            float *nx = realloc(x, na * nf * sizeof(float));
            char (*nl)[DML_DATASET_NAME_MAX] = nx ? realloc(labels, na * DML_DATASET_NAME_MAX) : NULL;
            if (nx != NULL)
                x = nx;
            if (nl == NULL) {
                status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory at line %llu", path,
                                       (unsigned long long)lineno);
                goto err;
            }
            labels = nl;
            alloc = na;
        }
        for (k = 0; k < ncols; k++) {
            if ((long)k == label_col) {
                long v;
                if (strlen(fields[k]) >= DML_DATASET_NAME_MAX || fields[k][0] == '\0') {
                    status = dml_error_set(DML_ERR_FORMAT, "%s:%llu: label \"%s\" is empty or "
                                           "longer than %d bytes", path,
                                           (unsigned long long)lineno, fields[k],
                                           DML_DATASET_NAME_MAX - 1);
                    goto err;
                }
                strcpy(labels[n], fields[k]);
                /* A label is a class number (a whole number) or a class
                 * name (not a number at all); one kind per column. */
                errno = 0;
                v = strtol(fields[k], &end, 10);
                if (*end == '\0' && errno == 0) {
                    if (v < 0 || v >= DML__CSV_MAX_CLASSES) {
                        status = dml_error_set(DML_ERR_FORMAT, "%s:%llu: label %s: class numbers "
                                               "go from 0 to %d (a label keeps its value as "
                                               "its class)", path, (unsigned long long)lineno,
                                               fields[k], DML__CSV_MAX_CLASSES - 1);
                        goto err;
                    }
                    if (first_int == 0) {
                        first_int = lineno;
                        snprintf(int_example, sizeof(int_example), "%s", fields[k]);
                    }
                    if (v > maxlabel)
                        maxlabel = v;
                } else {
                    double dv;
                    errno = 0;
                    dv = strtod(fields[k], &end);
                    (void)dv;
                    if (*end == '\0' && end != fields[k]) {
                        status = dml_error_set(DML_ERR_FORMAT, "%s:%llu: label \"%s\" in column "
                                               "\"%s\" is a number but not a whole one: a "
                                               "column of measurements is a feature, not a "
                                               "label (choose the class column with "
                                               "--label-column)", path,
                                               (unsigned long long)lineno, fields[k],
                                               label_column);
                        goto err;
                    }
                    if (first_name == 0) {
                        first_name = lineno;
                        snprintf(name_example, sizeof(name_example), "%s", fields[k]);
                    }
                }
                if (first_int != 0 && first_name != 0) {
                    status = dml_error_set(DML_ERR_FORMAT, "%s:%llu: column \"%s\" mixes class "
                                           "numbers (\"%s\", line %llu) and class names "
                                           "(\"%s\", line %llu): one kind per column", path,
                                           (unsigned long long)lineno, label_column, int_example,
                                           (unsigned long long)first_int, name_example,
                                           (unsigned long long)first_name);
                    goto err;
                }
                continue;
            }
            errno = 0;
            x[n * nf + j] = strtof(fields[k], &end);
            if (end == fields[k] || *end != '\0' || errno == ERANGE || !isfinite(x[n * nf + j])) {
                status = dml_error_set(DML_ERR_FORMAT, "%s:%llu: column \"%s\": \"%s\" is not a "
                                       "finite number", path, (unsigned long long)lineno,
                                       header[k], fields[k]);
                goto err;
            }
            j++;
        }
        n++;
    }
    if (n == 0) {
        status = dml_error_set(DML_ERR_FORMAT, "%s: no data lines after the header", path);
        goto err;
    }
    y = malloc(n * sizeof(int32_t));
    if (y == NULL) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", path);
        goto err;
    }
    if (first_name == 0) {
        /* Class numbers keep their value: classes 0..max. */
        nclasses = (uint32_t)maxlabel + 1;
        for (i = 0; i < n; i++)
            y[i] = (int32_t)strtol(labels[i], NULL, 10);
    } else {
        /* Names: classes numbered in the byte order of the names (strcmp),
         * so the numbering does not depend on which name comes first. */
        names = malloc(n * DML_DATASET_NAME_MAX);
        if (names == NULL) {
            status = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory", path);
            goto err;
        }
        memcpy(names, labels, n * DML_DATASET_NAME_MAX);
        qsort(names, n, DML_DATASET_NAME_MAX, dml__cmp_name);
        for (i = 0; i < n; i++)
            if (nclasses == 0 || strcmp(names[nclasses - 1], names[i]) != 0)
                memmove(names[nclasses++], names[i], DML_DATASET_NAME_MAX);
        for (i = 0; i < n; i++) {
            char (*hit)[DML_DATASET_NAME_MAX] =
                bsearch(labels[i], names, nclasses, DML_DATASET_NAME_MAX, dml__cmp_name);
            y[i] = (int32_t)(hit - names);
        }
    }
    fclose(fp);
    for (k = 0; k < ncols; k++)
        free(header[k]);
    free(header);
    free(fields);
    free(labels);
    free(line);
    *x_out = x;
    *y_out = y;
    *n_out = n;
    *features_out = nf;
    *classes_out = nclasses;
    *names_out = names;
    return DML_OK;
err:
    fclose(fp);
    if (header != NULL)
        for (k = 0; k < ncols; k++)
            free(header[k]);
    free(header);
    free(fields);
    free(labels);
    free(names);
    free(line);
    free(x);
    free(y);
    return status;
}
