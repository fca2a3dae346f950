/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_dp [cnn]: the data-parallel step on every rank of a real MPI job (run
 * by test_dp.sh at 1, 2, 3 and 4 ranks), both ways of summing the gradients
 * (bucketed allreduce, and shared memory where each rank updates a slice),
 * for an MLP and (cnn) a network of convolution, batch normalisation over
 * channels and over features, pooling and dense layers, whose batch
 * statistics are the whole batch's over the ranks:
 *  - N ranks with B samples each give the same summed gradient, and after
 *    optimiser steps the same weights, as one process with all N*B samples,
 *    also with gradient clipping (the norm is the whole gradient's) and
 *    accumulation over micro-batches;
 *  - the optimiser state gathered from the slices is the 1-process state;
 *  - two runs with the same seed and world size give bit-identical weights;
 *    at 2 ranks the two ways give bit-identical weights;
 *  - many small buckets give the same result as one (the same bits at 2
 *    ranks, within float rounding beyond);
 *  - a bad label on one rank stops every rank with the same message.
 */
#include "config.h"

#include "dml_train.h"
#include "dml_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

#define G 24 /* global batch: divisible by 1, 2, 3 and 4 */
#define IN_MAX 64

/* the model and its samples' shape */
static const char *SPEC = "mlp:20-32-16-4";
static int IN = 20, RANK = 1;
static uint64_t SHAPE[3] = {20, 0, 0};

static int rank, size, failures;

static void spec_of(dml_model_spec_t *spec)
{
    dml_model_spec_parse(SPEC, spec);
    dml_model_spec_bind(spec, RANK, SHAPE, 4);
}

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            failures++;                                                                            \
            fprintf(stderr, "rank %d: FAIL line %d: ", rank, __LINE__);                            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static void batch(int step, float *x, int32_t *y)
{
    int i, f;
    for (i = 0; i < G; i++) {
        for (f = 0; f < IN; f++)
            x[i * IN + f] = (float)sin(0.37 * (step * G + i) + 0.11 * f);
        y[i] = (i * 7 + step) % 4;
    }
}

/* Trains `steps` SGD steps; data parallel over the world (mode), or alone
 * (mode < 0); clip > 0 clips to that global norm, micro > 1 accumulates that
 * many micro-batches of the step's samples. Returns the model (caller frees);
 * *state_out (may be NULL) gets a copy of the optimiser's momentum. */
static dml_model_t *train(int steps, int mode, size_t bucket_bytes, double clip, int micro,
                          float **state_out)
{
    dml_model_spec_t spec;
    dml_model_t *m;
    dml_opt_config_t oc;
    dml_opt_t *o;
    dml_dp_t *dp = NULL;
    float x[G * IN_MAX];
    int32_t y[G];
    double loss, norm = 0;
    const int parallel = mode >= 0;
    int s, k, B = parallel ? G / size : G, off = parallel ? rank * (G / size) : 0;

    spec_of(&spec);
    dml_model_create(&spec, 11, G, &m);
    dml_opt_config_init(&oc, DML_OPT_SGD);
    dml_opt_create(&oc, dml_model_nparams(m), &o);
    if (parallel) {
        CHECK(dml_dp_create(MPI_COMM_WORLD, m, (dml_dp_mode_t)mode, bucket_bytes, &dp) == DML_OK,
              "dp_create: %s", dml_error_message());
        /* the way asked for is the way taken (one node here) */
        CHECK(dml_dp_mode(dp) == (mode == DML_DP_AUTO && size > 1 ? DML_DP_SHARED
                                  : mode == DML_DP_AUTO           ? DML_DP_ALLREDUCE
                                                                  : (dml_dp_mode_t)mode),
              "mode %d asked, %d taken", mode, (int)dml_dp_mode(dp));
    }
    for (s = 0; s < steps; s++) {
        batch(s, x, y);
        dml_model_zero_grads(m);
        for (k = 0; k < micro; k++) {
            /* micro-batch k: every micro-th sample of the rank's share */
            const int b = B / micro;
            float xm[G * IN_MAX];
            int32_t ym[G];
            int i;
            for (i = 0; i < b; i++) {
                memcpy(xm + i * IN, x + (off + i * micro + k) * IN, IN * sizeof(float));
                ym[i] = y[off + i * micro + k];
            }
            if (parallel)
                CHECK(dml_dp_step(dp, xm, ym, b, G / micro, (uint64_t)s, k == micro - 1, &loss,
                                  NULL) == DML_OK,
                      "dp_step: %s", dml_error_message());
            else
                dml_model_train_step(m, xm, ym, b, 1.0f / (float)(G / micro), (uint64_t)s, &loss,
                                     NULL, NULL, NULL);
        }
        if (parallel) {
            CHECK(dml_dp_update(dp, o, 0.05f, micro, clip, &norm) == DML_OK, "dp_update: %s",
                  dml_error_message());
        } else {
            float *g = dml_model_grads(m);
            size_t i;
            for (i = 0; micro > 1 && i < dml_model_nparams(m); i++)
                g[i] *= 1.0f / (float)micro;
            if (clip > 0)
                norm = dml_clip_grad_norm(g, dml_model_nparams(m), clip);
            dml_opt_step(o, dml_model_params(m), g, 0.05f);
        }
        if (clip > 0 && s == 0)
            CHECK(norm > clip, "the gradient norm %g is not above the clip %g: nothing tested",
                  norm, clip);
    }
    if (state_out != NULL) {
        if (parallel)
            CHECK(dml_dp_gather_state(dp, o) == DML_OK, "gather_state: %s", dml_error_message());
        *state_out = malloc(dml_model_nparams(m) * sizeof(float));
        memcpy(*state_out, dml_opt_buf(o, 0), dml_model_nparams(m) * sizeof(float));
    }
    dml_opt_free(o);
    dml_dp_free(dp);
    return m;
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1e-3 + fabs((double)b[i]));
        if (d > worst)
            worst = d;
    }
    return worst;
}

int main(int argc, char **argv)
{
    dml_model_t *ref, *par, *par2, *small;
    size_t np = 0;
    int any, mode;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1 && strcmp(argv[1], "cnn") == 0) {
        SPEC = "conv2d(4,3,padding=1),batchnorm,relu,maxpool(2),flatten,dense(8),batchnorm,relu,"
               "dense(4)";
        IN = 36;
        RANK = 2;
        SHAPE[0] = SHAPE[1] = 6;
    }
    if (rank == 0)
        printf("model %s\n", SPEC);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    if (G % size != 0) {
        if (rank == 0)
            fprintf(stderr, "test_dp: run on 1, 2, 3 or 4 ranks\n");
        MPI_Finalize();
        return 2;
    }

    for (mode = DML_DP_ALLREDUCE; mode <= DML_DP_SHARED; mode++) {
        const char *way = mode == DML_DP_SHARED ? "shared" : "allreduce";
        float *st_ref, *st_par;

        /* The gradient of one step: summed across ranks = one process, all samples. */
        ref = train(1, -1, 0, 0, 1, NULL);
        par = train(1, mode, 0, 0, 1, NULL);
        np = dml_model_nparams(ref);
        {
            /* After one step params differ from the initial ones by lr * grad: compare those. */
            double d = max_rel_diff(dml_model_params(par), dml_model_params(ref), np);
            CHECK(d < 1e-4, "%s, one step: weights differ from the 1-process run by %g (relative)",
                  way, d);
        }
        dml_model_free(ref);
        dml_model_free(par);

        /* Twenty steps: still the same update as one process with N*B,
         * and the momentum gathered from the slices is the whole one. */
        ref = train(20, -1, 0, 0, 1, &st_ref);
        par = train(20, mode, 0, 0, 1, &st_par);
        {
            double d = max_rel_diff(dml_model_params(par), dml_model_params(ref), np);
            double ds = max_rel_diff(st_par, st_ref, np);
            CHECK(d < 1e-3, "%s, 20 steps: weights differ from the 1-process run by %g", way, d);
            CHECK(ds < 1e-3,
                  "%s, 20 steps: the optimiser state differs from the 1-process run by "
                  "%g",
                  way, ds);
            if (rank == 0)
                printf("%d ranks, %s: 20 steps, largest relative difference to 1 process with "
                       "batch %d: weights %.2g, momentum %.2g\n",
                       size, way, G, d, ds);
        }
        free(st_ref);
        free(st_par);
        /* Batch normalisation's running statistics: the 1-process ones, and
         * the same bits on every rank (each rank keeps its own). */
        if (dml_model_nbuffers(par) > 0) {
            const size_t nb = dml_model_nbuffers(par);
            float *r0 = malloc(nb * sizeof(float));
            double d = max_rel_diff(dml_model_buffers(par), dml_model_buffers(ref), nb);
            CHECK(d < 1e-3, "%s: running statistics differ from the 1-process run by %g", way, d);
            memcpy(r0, dml_model_buffers(par), nb * sizeof(float));
            MPI_Bcast(r0, (int)nb, MPI_FLOAT, 0, MPI_COMM_WORLD);
            CHECK(memcmp(r0, dml_model_buffers(par), nb * sizeof(float)) == 0,
                  "%s: this rank's running statistics differ from rank 0's", way);
            if (rank == 0)
                printf("%d ranks, %s: running statistics, largest relative difference to 1 "
                       "process %.2g, the same bits on every rank\n",
                       size, way, d);
            free(r0);
        }
        /* Same seed, same world size: bit for bit. */
        par2 = train(20, mode, 0, 0, 1, NULL);
        CHECK(memcmp(dml_model_params(par), dml_model_params(par2), np * sizeof(float)) == 0,
              "%s: two runs with the same seed and world size differ", way);
        dml_model_free(par2);
        if (mode == DML_DP_SHARED && size <= 2) {
            /* one addition per element either way: the same bits */
            par2 = train(20, DML_DP_ALLREDUCE, 0, 0, 1, NULL);
            CHECK(memcmp(dml_model_params(par), dml_model_params(par2), np * sizeof(float)) == 0,
                  "2 ranks: shared and allreduce give different weights");
            dml_model_free(par2);
        }
        dml_model_free(ref);
        dml_model_free(par);

        /* Clipping to the whole gradient's norm, and 2 micro-batches per step. */
        ref = train(10, -1, 0, 0.05, 2, NULL);
        par = train(10, mode, 0, 0.05, 2, NULL);
        {
            double d = max_rel_diff(dml_model_params(par), dml_model_params(ref), np);
            CHECK(d < 1e-3,
                  "%s, clipped and accumulated: weights differ from the 1-process run "
                  "by %g",
                  way, d);
        }
        dml_model_free(ref);
        dml_model_free(par);
        /* Accumulated only (no clipping: shared sums and applies in one pass). */
        ref = train(10, -1, 0, 0, 2, NULL);
        par = train(10, mode, 0, 0, 2, NULL);
        {
            double d = max_rel_diff(dml_model_params(par), dml_model_params(ref), np);
            CHECK(d < 1e-3, "%s, accumulated: weights differ from the 1-process run by %g", way, d);
        }
        dml_model_free(ref);
        dml_model_free(par);
    }

    /* One bucket per layer (tiny buckets) against one bucket for all. */
    par = train(20, DML_DP_ALLREDUCE, 0, 0, 1, NULL);
    small = train(20, DML_DP_ALLREDUCE, 4, 0, 1, NULL);
    {
        dml_dp_t *dp;
        dml_model_t *m;
        dml_model_spec_t spec;
        spec_of(&spec);
        dml_model_create(&spec, 11, G, &m);
        dml_dp_create(MPI_COMM_WORLD, m, DML_DP_ALLREDUCE, 4, &dp);
        CHECK(dml_dp_buckets(dp) == dml_model_param_layers(m), "%d buckets for %d layers",
              dml_dp_buckets(dp), dml_model_param_layers(m));
        dml_dp_free(dp);
        dml_model_free(m);
        {
            const double d = max_rel_diff(dml_model_params(small), dml_model_params(par), np);
            if (rank == 0)
                printf("per-layer buckets against one bucket, %d ranks: largest relative "
                       "difference %.3g\n",
                       size, d);
            /* At 2 ranks each element is one addition either way: the same
             * bits. Beyond, the non-blocking and the blocking allreduce add
             * the ranks' parts in orders of their own, and 20 steps carry
             * the rounding up to 2e-5 on some BLAS kernels (OpenBLAS's
             * Prescott one): float rounding, bounded as for N ranks against
             * one process. */
            if (size == 2)
                CHECK(d == 0,
                      "2 ranks: per-layer buckets give other weights than one bucket "
                      "(largest relative difference %g); one addition each must give the same "
                      "bits",
                      d);
            else
                CHECK(d < 1e-4,
                      "per-layer buckets give other weights than one bucket: largest "
                      "relative difference %g",
                      d);
        }
    }
    dml_model_free(par);
    dml_model_free(small);

    /* Parameters set from outside (a checkpoint) reach every rank, also
     * the slices other ranks own. */
    {
        dml_model_spec_t spec;
        dml_model_t *m;
        dml_dp_t *dp;
        float *want;
        size_t i;
        spec_of(&spec);
        dml_model_create(&spec, 11, G, &m);
        dml_dp_create(MPI_COMM_WORLD, m, DML_DP_AUTO, 0, &dp);
        want = malloc(np * sizeof(float));
        for (i = 0; i < np; i++)
            want[i] = (float)i * 0.5f;
        CHECK(dml_dp_set_params(dp, want) == DML_OK, "set_params: %s", dml_error_message());
        CHECK(memcmp(dml_model_params(m), want, np * sizeof(float)) == 0,
              "parameters set by every rank's slice are not all there");
        dml_dp_free(dp);
        CHECK(memcmp(dml_model_params(m), want, np * sizeof(float)) == 0,
              "the model lost its parameters with the data-parallel state");
        free(want);
        dml_model_free(m);
    }

    /* A bad label on the last rank: every rank gets the same error. */
    {
        dml_model_spec_t spec;
        dml_model_t *m;
        dml_dp_t *dp;
        float x[G * IN_MAX];
        int32_t y[G];
        double loss;
        dml_status_t st;
        int B = G / size;
        char msg[256] = "", first[256];

        spec_of(&spec);
        dml_model_create(&spec, 11, G, &m);
        dml_dp_create(MPI_COMM_WORLD, m, DML_DP_AUTO, 0, &dp);
        batch(0, x, y);
        if (rank == size - 1)
            y[rank * B + 1] = 9;
        st = dml_dp_step(dp, x + rank * B * IN, y + rank * B, B, G, 0, 1, &loss, NULL);
        CHECK(st == DML_ERR_INVALID_ARG, "a bad label on rank %d gave status %d here", size - 1,
              st);
        snprintf(msg, sizeof(msg), "%s", dml_error_message());
        memcpy(first, msg, sizeof(first));
        MPI_Bcast(first, sizeof(first), MPI_CHAR, 0, MPI_COMM_WORLD);
        CHECK(strcmp(msg, first) == 0, "messages differ: '%s' vs rank 0's '%s'", msg, first);
        CHECK(strstr(msg, "label 9 of sample 1") != NULL, "unclear message: %s", msg);
        if (rank == 0)
            printf("bad label on rank %d: every rank stopped with: %s\n", size - 1, msg);
        /* The same in an accumulating (not reducing) micro-batch. */
        st = dml_dp_step(dp, x + rank * B * IN, y + rank * B, B, G, 0, 0, &loss, NULL);
        CHECK(st == DML_ERR_INVALID_ARG, "accumulating step: status %d here", st);
        dml_dp_free(dp);
        dml_model_free(m);
    }

    MPI_Allreduce(&failures, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%s\n", any ? "FAIL" : "PASS");
    MPI_Finalize();
    return any ? 1 : 0;
}
