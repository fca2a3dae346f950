/*
 * infer_diag.h: included by serve-batch/infer.c only in bench/infer_diag
 * (built with -DDML_INFER_DIAG; never in libdml_infer or dml-infer).
 *
 * The bench's runs of dml-infer are set against the bound measured in
 * another process a second away, and this machine's speed moves by 1.5x
 * within seconds. Here every full batch after the first is followed, in the
 * same process, by the bound's bare sgemm calls (bench/mlp_sgemm's forward
 * pass, run twice, the second timed: warm, as in mlp_sgemm's loop), and the
 * batch's phases are timed. At the end it prints, on stderr, one line:
 *   DIAG batches N ratio MEDIAN Q1 Q3 read R drift D normalise X forward F topk T bare S
 * (ratio: bare sgemm time over the batch's, per batch; times: mean us per
 * batch).
 */
#ifndef DML_INFER_DIAG_H
#define DML_INFER_DIAG_H

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DML_DIAG_MAX 4096

static struct {
    double at, cur[5], ph[5], bare[DML_DIAG_MAX], batch[DML_DIAG_MAX];
    int n;
} dml__diag;

/* The end of phase i (0 read, 1 drift, 2 normalise, 3 forward, 4 top-k). */
static void dml__diag_mark(int i, double t0)
{
    double t = dml__infer_now();
    dml__diag.cur[i] = t - (i == 0 ? t0 : dml__diag.at);
    dml__diag.at = t;
}

static void dml__diag_bare(int B)
{
    static float *a, *b, *w[3];
    static const int d[4] = {784, 512, 256, 10};
    int l;

    if (a == NULL) {
        a = calloc((size_t)B * 784, sizeof(float));
        b = calloc((size_t)B * 784, sizeof(float));
        for (l = 0; l < 3; l++) {
            size_t i, n = (size_t)d[l] * d[l + 1];
            w[l] = malloc(n * sizeof(float));
            for (i = 0; i < n; i++)
                w[l][i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        }
        for (size_t i = 0; i < (size_t)B * 784; i++)
            a[i] = (float)(i % 255) / 255.0f;
    }
    for (l = 0; l < 3; l++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d[l + 1], d[l], 1.0f,
                    l % 2 ? b : a, d[l], w[l], d[l + 1], 0.0f, l % 2 ? a : b, d[l + 1]);
}

/* After batch b of m samples took lat seconds: the bare pass, paired. Only
 * full batches after the first count (the first is the warm-up), and only
 * for the model the bare pass mirrors. */
static void dml__diag_batch(uint64_t b, uint64_t m, int B, uint64_t F, double lat)
{
    double t;
    int i;

    if (b == 0 || m != (uint64_t)B || F != 784 || dml__diag.n == DML_DIAG_MAX)
        return;
    for (i = 0; i < 5; i++)
        dml__diag.ph[i] += dml__diag.cur[i];
    dml__diag_bare(B);
    t = dml__infer_now();
    dml__diag_bare(B);
    dml__diag.bare[dml__diag.n] = dml__infer_now() - t;
    dml__diag.batch[dml__diag.n++] = lat;
}

static int dml__diag_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void dml__diag_report(void)
{
    double r[DML_DIAG_MAX], bare = 0;
    int i, n = dml__diag.n;

    if (n == 0)
        return;
    for (i = 0; i < n; i++) {
        r[i] = dml__diag.bare[i] / dml__diag.batch[i];
        bare += dml__diag.bare[i];
    }
    qsort(r, (size_t)n, sizeof(double), dml__diag_cmp);
    fprintf(stderr,
            "DIAG batches %d ratio %.3f %.3f %.3f read %.0f drift %.0f normalise %.0f "
            "forward %.0f topk %.0f bare %.0f\n",
            n, r[n / 2], r[n / 4], r[3 * n / 4], 1e6 * dml__diag.ph[0] / n,
            1e6 * dml__diag.ph[1] / n, 1e6 * dml__diag.ph[2] / n, 1e6 * dml__diag.ph[3] / n,
            1e6 * dml__diag.ph[4] / n, 1e6 * bare / n);
}

#define DML_DIAG_MARK(i, t0) dml__diag_mark(i, t0)
#define DML_DIAG_BATCH(b, m, B, F, lat) dml__diag_batch(b, m, B, F, lat)
#define DML_DIAG_REPORT() dml__diag_report()

#endif /* DML_INFER_DIAG_H */
