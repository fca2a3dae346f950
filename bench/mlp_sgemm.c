/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mlp_sgemm: the sgemm-bound rate of an MLP, the reference for dml-infer's
 * and dml-train's throughput: only the matrix products, on the same BLAS,
 * timed over repetitions after a warm-up. Prints samples per second.
 *   forward: per layer, batch x dims[l] times dims[l] x dims[l+1];
 *   train:   those, and backward's dW = A^T dZ and (but for the first
 *            layer) dA = dZ W^T.
 *
 *   mlp_sgemm forward|train BATCH SECONDS DIM0 DIM1 ... DIMn
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dml_clock.h"

/* One batch: the forward products, and in training the backward ones (the
 * same buffers serve as activations and their gradients: only time counts). */
static void pass(int train, int B, int L, const int *dims, float *const *w, float *a, float *b,
                 float *g)
{
    int l;

    for (l = 0; l < L; l++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, dims[l + 1], dims[l], 1.0f,
                    l % 2 ? b : a, dims[l], w[l], dims[l + 1], 0.0f, l % 2 ? a : b, dims[l + 1]);
    if (!train)
        return;
    for (l = L - 1; l >= 0; l--) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dims[l], dims[l + 1], B, 1.0f, a,
                    dims[l], b, dims[l + 1], 1.0f, g, dims[l + 1]);
        if (l > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, dims[l], dims[l + 1], 1.0f, b,
                        dims[l + 1], w[l], dims[l + 1], 0.0f, a, dims[l]);
    }
}

int main(int argc, char **argv)
{
    int B, L, l, maxd = 0, reps = 0, train;
    int dims[32];
    float *w[32], *a, *b, *g;
    double secs, t0, t;

    if (argc < 6 || argc - 4 > 32 ||
        (strcmp(argv[1], "forward") != 0 && strcmp(argv[1], "train") != 0)) {
        fprintf(stderr, "usage: mlp_sgemm forward|train BATCH SECONDS DIM0 DIM1 ...\n");
        return 1;
    }
    train = strcmp(argv[1], "train") == 0;
    argv++, argc--;
    B = atoi(argv[1]);
    secs = atof(argv[2]);
    L = argc - 4;
    for (l = 0; l <= L; l++) {
        dims[l] = atoi(argv[3 + l]);
        maxd = dims[l] > maxd ? dims[l] : maxd;
    }
    a = calloc((size_t)B * maxd, sizeof(float));
    b = calloc((size_t)B * maxd, sizeof(float));
    g = calloc((size_t)maxd * maxd, sizeof(float));
    for (l = 0; l < L; l++) {
        size_t i, n = (size_t)dims[l] * dims[l + 1];
        w[l] = malloc(n * sizeof(float));
        for (i = 0; i < n; i++)
            w[l][i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    }
    for (size_t i = 0; i < (size_t)B * maxd; i++)
        a[i] = (float)(i % 255) / 255.0f;
    for (t0 = dml__now(); dml__now() - t0 < 0.3 || reps < 3; reps++) /* warm-up */
        pass(train, B, L, dims, w, a, b, g);
    reps = 0;
    t0 = dml__now();
    do {
        pass(train, B, L, dims, w, a, b, g);
        reps++;
        t = dml__now() - t0;
    } while (t < secs);
    printf("%.1f\n", (double)reps * B / t);
    return 0;
}
