/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nn_forward MODEL BATCH SECONDS: a model's own forward pass, alone, as the
 * bound of batch inference for any model: dml_model_eval on batches of
 * BATCH samples already in memory (normalised random values), warm, for
 * about SECONDS. Prints samples/s and the model's forward GFLOP/s.
 */
#include "config.h"

#include "dml_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "dml_clock.h"

int main(int argc, char **argv)
{
    dml_model_t *m;
    dml_model_info_t mi;
    float *x, *probs;
    double t0, t, secs;
    long n = 0;
    int B;

    if (argc != 4) {
        fprintf(stderr, "usage: nn_forward MODEL BATCH SECONDS\n");
        return 2;
    }
    B = atoi(argv[2]);
    secs = atof(argv[3]);
    if (B < 1 || dml_model_load(argv[1], B, &m, &mi) != DML_OK) {
        fprintf(stderr, "nn_forward: %s\n", dml_error_message());
        return 1;
    }
    dml_nn_set_threads(1);
    x = malloc((size_t)B * mi.features * sizeof(float));
    probs = malloc((size_t)B * mi.num_classes * sizeof(float));
    for (size_t i = 0; i < (size_t)B * mi.features; i++)
        x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    dml_model_eval(m, x, NULL, B, probs, NULL, NULL); /* warm-up */
    t0 = dml__now();
    do {
        if (dml_model_eval(m, x, NULL, B, probs, NULL, NULL) != DML_OK) {
            fprintf(stderr, "nn_forward: %s\n", dml_error_message());
            return 1;
        }
        n += B;
        t = dml__now() - t0;
    } while (t < secs);
    printf("%.1f %.2f\n", (double)n / t, (double)n * dml_model_flops(m) / t / 1e9);
    dml_model_free(m);
    dml_model_info_free(&mi);
    free(x);
    free(probs);
    return 0;
}
