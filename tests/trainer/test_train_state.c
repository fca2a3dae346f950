/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_train_state: the training state's save and load mirror each other
 * (train_state.c, issue #41): every field saved is the field loaded, at any
 * rank count; a checkpoint of another run (model, seed) is refused naming
 * the file; and nn/'s dml_model_read_h5 reads the checkpoint's model group
 * directly too. Usage: test_train_state DIR [parallel] (every rank writing
 * through MPI-IO). The internals are compiled in (the library hides them).
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_nn.h"
#include "train_private.h"

#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_check.h"

static int failures, rank;

static dml_model_t *model_of(const char *text, uint64_t seed)
{
    dml_model_spec_t spec;
    dml_model_t *m = NULL;
    const uint64_t shape[1] = {6};

    if (dml_model_spec_parse(text, &spec) != DML_OK ||
        dml_model_spec_bind(&spec, 1, shape, 3) != DML_OK ||
        dml_model_create(&spec, seed, 4, &m) != DML_OK)
        return NULL;
    return m;
}

int main(int argc, char **argv)
{
    static char names[3][DML_DATASET_NAME_MAX] = {"a", "b", "c"};
    dml_train_state_t s, l, run;
    dml_ckpt_config_t cfg;
    dml_model_t *m, *other;
    float *mom;
    double hist[2 * DML__HIST_COLS], sd[36];
    static uint64_t hist_bins[6 * DML_DATASET_HIST_BINS], labels[3] = {5, 6, 7};
    char path[4096] = "";
    size_t n, i;
    int all = 0;
    dml_status_t st;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc < 2) {
        MPI_Finalize();
        return 2;
    }
    m = model_of("mlp:6-5-3", 7);
    other = model_of("mlp:6-4-3", 7);
    CHECK(m != NULL && other != NULL, "models: %s", dml_error_message());
    if (m == NULL || other == NULL)
        goto out;
    n = dml_model_nparams(m);
    mom = malloc(n * sizeof(float));
    for (i = 0; i < n; i++)
        mom[i] = (float)i * 0.5f - 1;
    for (i = 0; i < 2 * DML__HIST_COLS; i++)
        hist[i] = (double)i / 3;
    for (i = 0; i < 36; i++)
        sd[i] = i >= 6 && i < 12 ? 1 : (double)i;

    memset(&s, 0, sizeof(s));
    dml_model_spec_format(dml_model_spec(m), s.model, sizeof(s.model));
    snprintf(s.dataset, sizeof(s.dataset), "/data/x");
    snprintf(s.dataset_hash, sizeof(s.dataset_hash), "0123456789abcdef");
    snprintf(s.optimizer, sizeof(s.optimizer), "sgd");
    snprintf(s.config, sizeof(s.config), "model=%s\nbatch=4\n", s.model);
    s.seed = 11;
    s.batch = 4;
    s.accum = 2;
    s.step = 123;
    s.epoch = 2;
    s.loader.seed = 11;
    s.loader.epoch = 2;
    s.loader.cursor = 40;
    s.epoch_sums[0] = 1.25;
    s.epoch_sums[1] = 30;
    s.epoch_sums[2] = 40;
    s.opt_steps = 122;
    s.m = m;
    snprintf(s.info.dataset, sizeof(s.info.dataset), "/data/x");
    snprintf(s.info.dataset_hash, sizeof(s.info.dataset_hash), "0123456789abcdef");
    snprintf(s.info.normalisation, sizeof(s.info.normalisation), "global");
    s.info.feature_rank = 1;
    s.info.feature_shape[0] = 6;
    s.info.data_classes = 3;
    s.info.class_names = names;
    /* the training data's statistics, which the model group records */
    s.info.stats.features = 6;
    s.info.stats.mean = sd;
    s.info.stats.std = sd + 6;
    s.info.stats.min = sd + 12;
    s.info.stats.max = sd + 18;
    s.info.stats.hist_lo = sd + 24;
    s.info.stats.hist_hi = sd + 30;
    s.info.stats.hist = hist_bins;
    s.info.stats.label_counts = labels;
    s.info.stats.global_std = 1;
    s.params = dml_model_params(m);
    s.buffers = NULL;
    s.nopt = 1;
    s.opt[0] = mom;
    s.history = hist;
    s.nhistory = 2;

    dml_ckpt_config_init(&cfg);
    if (argc > 2 && strcmp(argv[2], "parallel") == 0)
        cfg.single_max = 0; /* every rank through MPI-IO */
    st = dml__train_state_save(MPI_COMM_WORLD, &s, argv[1], 0, &cfg, path, sizeof(path));
    CHECK(st == DML_OK, "save: %s", dml_error_message());
    if (st != DML_OK)
        goto out_free;
    CHECK(dml_ckpt_verify(path) == DML_OK, "verify: %s", dml_error_message());

    /* the mirror: what was saved is what loads */
    run = s;
    st = dml__train_state_load(path, &run, &l);
    CHECK(st == DML_OK, "load: %s", dml_error_message());
    if (st == DML_OK) {
        CHECK(strcmp(l.model, s.model) == 0 && strcmp(l.dataset, s.dataset) == 0 &&
                  strcmp(l.dataset_hash, s.dataset_hash) == 0 &&
                  strcmp(l.optimizer, s.optimizer) == 0 && strcmp(l.config, s.config) == 0,
              "texts differ");
        CHECK(l.seed == s.seed && l.batch == s.batch && l.accum == s.accum && l.step == s.step &&
                  l.epoch == s.epoch && l.opt_steps == s.opt_steps,
              "numbers differ");
        CHECK(l.loader.seed == s.loader.seed && l.loader.epoch == s.loader.epoch &&
                  l.loader.cursor == s.loader.cursor,
              "loader position differs");
        CHECK(memcmp(l.epoch_sums, s.epoch_sums, sizeof(s.epoch_sums)) == 0, "epoch sums differ");
        CHECK(l.world_size > 0, "world size %d", l.world_size);
        CHECK(memcmp(l.params, s.params, n * sizeof(float)) == 0, "weights differ");
        CHECK(l.nopt == 1 && memcmp(l.opt[0], mom, n * sizeof(float)) == 0, "momentum differs");
        CHECK(l.nhistory == 2 && memcmp(l.history, hist, sizeof(hist)) == 0, "history differs");
        dml__train_state_free(&l);
    }

    /* another run's checkpoint: refused, the file named */
    run.seed = 12;
    st = dml__train_state_load(path, &run, &l);
    CHECK(st == DML_ERR_MISMATCH && strstr(dml_error_message(), path) != NULL,
          "another seed: %d %s", st, dml_error_message());
    run = s;
    dml_model_spec_format(dml_model_spec(other), run.model, sizeof(run.model));
    run.m = other;
    st = dml__train_state_load(path, &run, &l);
    CHECK(st == DML_ERR_MISMATCH && strstr(dml_error_message(), "saved for model") != NULL,
          "another model: %d %s", st, dml_error_message());

    /* nn/'s reader alone, on the checkpoint's model group (no callback) */
    {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t g = f < 0 ? -1 : H5Gopen2(f, DML_MODEL_GROUP, H5P_DEFAULT);
        float *w = malloc(n * sizeof(float));
        CHECK(g >= 0 && w != NULL, "cannot open the model group");
        if (g >= 0 && w != NULL) {
            st = dml_model_read_h5(g, m, NULL, NULL, w, NULL);
            CHECK(st == DML_OK && memcmp(w, dml_model_params(m), n * sizeof(float)) == 0,
                  "direct read: %s", dml_error_message());
            st = dml_model_read_h5(g, other, NULL, NULL, w, NULL);
            CHECK(st == DML_ERR_MISMATCH, "direct read as another model: %d", st);
        }
        free(w);
        if (g >= 0)
            H5Gclose(g);
        if (f >= 0)
            H5Fclose(f);
    }
out_free:
    free(mom);
out:
    dml_model_free(m);
    dml_model_free(other);
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return all == 0 ? 0 : 1;
}
