/*
 * test_dp: the data-parallel step on every rank of a real MPI job (run by
 * test_dp.sh at 1, 2, 3 and 4 ranks):
 *  - N ranks with B samples each give the same summed gradient, and after
 *    optimiser steps the same weights, as one process with all N*B samples;
 *  - two runs with the same seed and world size give bit-identical weights;
 *  - many small buckets give the same result as one;
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
#define IN 20
#define SPEC "mlp:20-32-16-4"

static int rank, size, failures;

#define CHECK(c, ...)                                                      \
    do {                                                                   \
        if (!(c)) {                                                        \
            failures++;                                                    \
            fprintf(stderr, "rank %d: FAIL line %d: ", rank, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
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

/* Trains `steps` SGD steps; data parallel over the world, or alone. Returns
 * the model (caller frees). */
static dml_model_t *train(int steps, int parallel, size_t bucket_bytes)
{
    dml_model_spec_t spec;
    dml_model_t *m;
    dml_opt_config_t oc;
    dml_opt_t *o;
    dml_dp_t *dp = NULL;
    float x[G * IN];
    int32_t y[G];
    double loss;
    int s, B = parallel ? G / size : G, off = parallel ? rank * (G / size) : 0;

    dml_model_spec_parse(SPEC, &spec);
    dml_model_create(&spec, 11, G, &m);
    dml_opt_config_init(&oc, DML_OPT_SGD);
    dml_opt_create(&oc, dml_model_nparams(m), &o);
    if (parallel)
        CHECK(dml_dp_create(MPI_COMM_WORLD, m, bucket_bytes, &dp) == DML_OK, "dp_create");
    for (s = 0; s < steps; s++) {
        batch(s, x, y);
        dml_model_zero_grads(m);
        if (parallel)
            CHECK(dml_dp_step(dp, x + off * IN, y + off, B, G, (uint64_t)s, 1, &loss, NULL) == DML_OK,
                  "dp_step: %s", dml_error_message());
        else
            dml_model_train_step(m, x, y, G, 1.0f / G, (uint64_t)s, &loss, NULL, NULL, NULL);
        dml_opt_step(o, dml_model_params(m), dml_model_grads(m), 0.05f);
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
    size_t np;
    int any;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    if (G % size != 0) {
        if (rank == 0)
            fprintf(stderr, "test_dp: run on 1, 2, 3 or 4 ranks\n");
        MPI_Finalize();
        return 2;
    }

    /* The gradient of one step: summed across ranks = one process, all samples. */
    ref = train(1, 0, 0);
    par = train(1, 1, 0);
    np = dml_model_nparams(ref);
    {
        /* After one step params differ from the initial ones by lr * grad: compare those. */
        double d = max_rel_diff(dml_model_params(par), dml_model_params(ref), np);
        CHECK(d < 1e-4, "one step: weights differ from the 1-process run by %g (relative)", d);
    }
    dml_model_free(ref);
    dml_model_free(par);

    /* Twenty steps: still the same update as one process with N*B. */
    ref = train(20, 0, 0);
    par = train(20, 1, 0);
    {
        double d = max_rel_diff(dml_model_params(par), dml_model_params(ref), np);
        CHECK(d < 1e-3, "20 steps: weights differ from the 1-process run by %g", d);
        if (rank == 0)
            printf("%d ranks: 20 steps, largest relative difference to 1 process with batch %d: %.2g\n",
                   size, G, d);
    }
    /* Same seed, same world size: bit for bit. */
    par2 = train(20, 1, 0);
    CHECK(memcmp(dml_model_params(par), dml_model_params(par2), np * sizeof(float)) == 0,
          "two runs with the same seed and world size differ");
    /* One bucket per layer (tiny buckets) against one bucket for all. */
    small = train(20, 1, 4);
    {
        dml_dp_t *dp;
        dml_model_t *m;
        dml_model_spec_t spec;
        dml_model_spec_parse(SPEC, &spec);
        dml_model_create(&spec, 11, G, &m);
        dml_dp_create(MPI_COMM_WORLD, m, 4, &dp);
        CHECK(dml_dp_buckets(dp) == spec.nlayers, "%d buckets for %d layers", dml_dp_buckets(dp),
              spec.nlayers);
        dml_dp_free(dp);
        dml_model_free(m);
        CHECK(max_rel_diff(dml_model_params(small), dml_model_params(par), np) < 1e-5,
              "per-layer buckets give other weights than one bucket");
    }
    dml_model_free(ref);
    dml_model_free(par);
    dml_model_free(par2);
    dml_model_free(small);

    /* A bad label on the last rank: every rank gets the same error. */
    {
        dml_model_spec_t spec;
        dml_model_t *m;
        dml_dp_t *dp;
        float x[G * IN];
        int32_t y[G];
        double loss;
        dml_status_t st;
        int B = G / size;
        char msg[256] = "", first[256];

        dml_model_spec_parse(SPEC, &spec);
        dml_model_create(&spec, 11, G, &m);
        dml_dp_create(MPI_COMM_WORLD, m, 0, &dp);
        batch(0, x, y);
        if (rank == size - 1)
            y[rank * B + 1] = 9;
        st = dml_dp_step(dp, x + rank * B * IN, y + rank * B, B, G, 0, 1, &loss, NULL);
        CHECK(st == DML_ERR_INVALID_ARG, "a bad label on rank %d gave status %d here", size - 1, st);
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
