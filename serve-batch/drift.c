/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * drift.c: the drift histograms of byte inputs, counted without a scatter
 * (see infer_private.h).
 *
 * A feature's bins are equal slices of [lo, hi], so its bin grows with the
 * byte's value: the bin is k or above exactly where the byte is at least
 * cut[k], the least value whose bin is k or above. Counting, for every k,
 * the rows at or above each cut is then a compare and an add per feature,
 * the same for all of them: 64 features at a time in a vector of byte
 * counters. The histogram is the difference of neighbouring counts. The
 * scatter it replaces (an increment at a looked-up bin per feature and row,
 * which no vector unit does) took over twice as long
 * (docs/benchmarks/design-notes.md).
 */
#include "config.h"

#include "dml_simd.h"
#include "infer_private.h"

#include <stdlib.h>
#include <string.h>

#define K (DML_DATASET_HIST_BINS - 1) /* cuts: bins 1..BINS-1 */
#define W 64                          /* features per vector */
#define CHUNK 255                     /* rows a byte counter holds */

typedef uint8_t dml__v64_t __attribute__((vector_size(W)));

struct dml__drift {
    uint64_t F, rows;
    uint8_t *cut;   /* [K][F]: cut[k - 1], 255 where none (see never) */
    uint8_t *never; /* [K][F]: no byte reaches the bin */
    uint64_t *ge;   /* [K][F]: rows at or above the cut */
};

dml_status_t dml__drift_create(const uint8_t *bin8, uint64_t F, dml__drift_t **out)
{
    dml__drift_t *d = calloc(1, sizeof(*d));
    uint64_t f, k;
    int v;

    *out = NULL;
    if (d == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the drift counts");
    d->F = F;
    d->cut = malloc(K * F);
    d->never = malloc(K * F);
    d->ge = calloc(K * F, sizeof(uint64_t));
    if (d->cut == NULL || d->never == NULL || d->ge == NULL) {
        dml__drift_free(d);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the drift counts of %llu features",
                             (unsigned long long)F);
    }
    for (f = 0; f < F; f++) {
        const uint8_t *t = bin8 + f * 256;
        for (v = 0; v < 256; v++)
            if (t[v] >= DML_DATASET_HIST_BINS || (v > 0 && t[v] < t[v - 1])) {
                dml__drift_free(d);
                return dml_error_set(DML_ERR_INVALID_ARG,
                                     "feature %llu: its histogram bins do "
                                     "not grow with the value",
                                     (unsigned long long)f);
            }
        /* cut k: the first value whose bin is k or above */
        for (k = 1; k <= K; k++) {
            d->never[(k - 1) * F + f] = 1;
            d->cut[(k - 1) * F + f] = 255;
        }
        for (k = 1, v = 0; v < 256; v++)
            for (; k <= t[v]; k++) {
                d->never[(k - 1) * F + f] = 0;
                d->cut[(k - 1) * F + f] = (uint8_t)v;
            }
    }
    *out = d;
    return DML_OK;
}

void dml__drift_free(dml__drift_t *d)
{
    if (d == NULL)
        return;
    free(d->cut), free(d->never), free(d->ge);
    free(d);
}

/* Up to CHUNK rows into ge, for the W features from f0 (lanes below skip
 * are features already counted: the last block overlaps the one before).
 * Rows outer, cuts inner, G counters at a time: each row's bytes are
 * loaded once per G cuts, and the counters stay in registers. */
#define G 16
DML_HOT static void dml__count_block(dml__drift_t *d, const uint8_t *const *rows, uint64_t nr,
                                     uint64_t f0, unsigned skip)
{
    const uint64_t F = d->F;
    uint64_t k0, i;
    unsigned j, g, ng;

    for (k0 = 0; k0 < K; k0 += G) {
        dml__v64_t c[G], a[G];
        ng = K - k0 < G ? (unsigned)(K - k0) : G;
        for (g = 0; g < G; g++) {
            /* a cut past the last is never reached: its counts are unused */
            if (g < ng)
                memcpy(&c[g], d->cut + (k0 + g) * F + f0, W);
            else
                memset(&c[g], 255, W);
            memset(&a[g], 0, W);
        }
        for (i = 0; i < nr; i++) {
            dml__v64_t x;
            memcpy(&x, rows[i] + f0, W);
#pragma GCC unroll 16
            for (g = 0; g < G; g++)
                a[g] -= (dml__v64_t)(x >= c[g]); /* true is all ones: -1 */
        }
        for (g = 0; g < ng; g++) {
            uint64_t *ge = d->ge + (k0 + g) * F + f0;
            for (j = skip; j < W; j++)
                ge[j] += a[g][j];
        }
    }
}

void dml__drift_count(dml__drift_t *d, const uint8_t *const *rows, uint64_t nr)
{
    const uint64_t F = d->F;
    uint64_t i, n, f0, k;

    d->rows += nr;
    if (F < W) {
        /* too narrow for a vector: one feature at a time */
        for (i = 0; i < nr; i++)
            for (k = 0; k < K; k++)
                for (f0 = 0; f0 < F; f0++)
                    d->ge[k * F + f0] += rows[i][f0] >= d->cut[k * F + f0];
        return;
    }
    for (i = 0; i < nr; i += n) {
        n = nr - i < CHUNK ? nr - i : CHUNK;
        for (f0 = 0; f0 + W <= F; f0 += W)
            dml__count_block(d, rows + i, n, f0, 0);
        if (f0 < F) /* the last W features, of which the first were counted */
            dml__count_block(d, rows + i, n, F - W, (unsigned)(W - (F - f0)));
    }
}

void dml__drift_hist(dml__drift_t *d, uint64_t *hist)
{
    const uint64_t F = d->F, H = DML_DATASET_HIST_BINS;
    uint64_t f, b;

    for (f = 0; f < F; f++) {
        uint64_t above = d->rows; /* rows in bin b or above, from b = 0 */
        for (b = 0; b < H; b++) {
            uint64_t next = 0;
            if (b + 1 < H && !d->never[b * F + f])
                next = d->ge[b * F + f];
            hist[f * H + b] += above - next;
            above = next;
        }
    }
    memset(d->ge, 0, K * F * sizeof(uint64_t));
    d->rows = 0;
}
