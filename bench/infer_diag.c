/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * infer_diag run --model M --input I --out O --task T --tasks N [--no-verify]:
 * one part of a dml-infer run (libdml_infer, as dml-infer runs it), watched
 * batch by batch through dml_infer_config_t's on_batch.
 *
 * The bench's runs of dml-infer are set against the bound measured in
 * another process a second away, and this machine's speed moves by 1.5x
 * within seconds. Here every full batch after the first is followed, in the
 * same process, by the bound's bare sgemm calls (bench/mlp_sgemm's forward
 * pass, run twice, the second timed: warm, as in mlp_sgemm's loop), and the
 * batch's phases are those the library reports. At the end it prints, on
 * stderr, one line:
 *   DIAG batches N ratio MEDIAN Q1 Q3 read R drift D normalise X forward F topk T bare S
 * (ratio: bare sgemm time over the batch's, per batch; times: mean us per
 * batch).
 */
#include "config.h"

#include "dml_infer.h"
#include "dml_nn.h"

#include <cblas.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dml_clock.h"

#define DIAG_MAX 4096

static struct {
    double ph[5], bare[DIAG_MAX], batch[DIAG_MAX];
    int n;
} diag;

/* mlp:784-512-256-10's forward products at batch B */
static void bare(int B)
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

/* Only full batches after the first count (the first is the warm-up), and
 * only for the model the bare pass mirrors. */
static void on_batch(void *arg, const dml_infer_batch_t *bt)
{
    double t;

    (void)arg;
    if (bt->index == 0 || bt->samples != (uint64_t)bt->batch || bt->features != 784 ||
        diag.n == DIAG_MAX)
        return;
    diag.ph[0] += bt->read, diag.ph[1] += bt->drift, diag.ph[2] += bt->normalise;
    diag.ph[3] += bt->forward, diag.ph[4] += bt->topk;
    bare(bt->batch);
    t = dml__now();
    bare(bt->batch);
    diag.bare[diag.n] = dml__now() - t;
    diag.batch[diag.n++] = bt->total;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"input", required_argument, 0, 'i'},
                                         {"out", required_argument, 0, 'o'},
                                         {"task", required_argument, 0, 't'},
                                         {"tasks", required_argument, 0, 'T'},
                                         {"no-verify", no_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    dml_infer_config_t cfg;
    dml_infer_result_t res;
    double r[DIAG_MAX], sum = 0;
    int c, i;

    MPI_Init(&argc, &argv);
    dml_infer_config_init(&cfg);
    cfg.tasks = 1;
    if (argc < 2 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: infer_diag run --model M --input I --out O [--task T --tasks N] "
                        "[--no-verify]\n");
        return 2;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
        switch (c) {
        case 'm':
            cfg.model = optarg;
            break;
        case 'i':
            cfg.input = optarg;
            break;
        case 'o':
            cfg.out = optarg;
            break;
        case 't':
            cfg.task = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'T':
            cfg.tasks = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            cfg.verify = 0;
            break;
        default:
            return 2;
        }
    cfg.on_batch = on_batch;
    if (dml_infer_run(MPI_COMM_WORLD, &cfg, &res) != DML_OK) {
        fprintf(stderr, "infer_diag: %s\n", dml_error_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (diag.n > 0) {
        for (i = 0; i < diag.n; i++) {
            r[i] = diag.bare[i] / diag.batch[i];
            sum += diag.bare[i];
        }
        qsort(r, (size_t)diag.n, sizeof(double), cmp);
        fprintf(stderr,
                "DIAG batches %d ratio %.3f %.3f %.3f read %.0f drift %.0f normalise %.0f "
                "forward %.0f topk %.0f bare %.0f\n",
                diag.n, r[diag.n / 2], r[diag.n / 4], r[3 * diag.n / 4], 1e6 * diag.ph[0] / diag.n,
                1e6 * diag.ph[1] / diag.n, 1e6 * diag.ph[2] / diag.n, 1e6 * diag.ph[3] / diag.n,
                1e6 * diag.ph[4] / diag.n, 1e6 * sum / diag.n);
    }
    MPI_Finalize();
    return 0;
}
