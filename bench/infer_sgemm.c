/*
 * infer_sgemm: the sgemm-bound forward rate of an MLP, the reference for
 * dml-infer's throughput: only the matrix products of a forward pass
 * (batch x dims[l] times dims[l] x dims[l+1]), on the same BLAS, timed over
 * repetitions after a warm-up. Prints samples per second.
 *
 *   infer_sgemm BATCH SECONDS DIM0 DIM1 ... DIMn
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int B, L, l, maxd = 0, reps = 0;
    int dims[32];
    float *w[32], *a, *b;
    double secs, t0, t;

    if (argc < 5 || argc - 3 > 32) {
        fprintf(stderr, "usage: infer_sgemm BATCH SECONDS DIM0 DIM1 ...\n");
        return 1;
    }
    B = atoi(argv[1]);
    secs = atof(argv[2]);
    L = argc - 4;
    for (l = 0; l <= L; l++) {
        dims[l] = atoi(argv[3 + l]);
        maxd = dims[l] > maxd ? dims[l] : maxd;
    }
    a = calloc((size_t)B * maxd, sizeof(float));
    b = calloc((size_t)B * maxd, sizeof(float));
    for (l = 0; l < L; l++) {
        size_t i, n = (size_t)dims[l] * dims[l + 1];
        w[l] = malloc(n * sizeof(float));
        for (i = 0; i < n; i++)
            w[l][i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    }
    for (size_t i = 0; i < (size_t)B * maxd; i++)
        a[i] = (float)(i % 255) / 255.0f;
    for (t0 = now(); now() - t0 < 0.3 || reps < 3; reps++) /* warm-up */
        for (l = 0; l < L; l++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, dims[l + 1], dims[l], 1.0f,
                        l % 2 ? b : a, dims[l], w[l], dims[l + 1], 0.0f, l % 2 ? a : b, dims[l + 1]);
    reps = 0;
    t0 = now();
    do {
        for (l = 0; l < L; l++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, dims[l + 1], dims[l], 1.0f,
                        l % 2 ? b : a, dims[l], w[l], dims[l + 1], 0.0f, l % 2 ? a : b, dims[l + 1]);
        reps++;
        t = now() - t0;
    } while (t < secs);
    printf("%.1f\n", (double)reps * B / t);
    return 0;
}
