/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * train_private.h: what the trainer library's files share and its users
 * do not see.
 */
#ifndef DML_TRAIN_PRIVATE_H
#define DML_TRAIN_PRIVATE_H

#include "dml_train.h"

/* Whether dml_opt_apply writes large parameter arrays with streaming
 * (non-temporal) stores: where ranks share them (dp.c), default off. */
void dml__opt_stream_stores(dml_opt_t *o, int on);

/* The stall watchdog (watchdog.c): collective start and stop over comm;
 * beats from the main thread at every collective it enters and leaves.
 * timeout > 0: a rank stuck that long is reported; 0: the limit is derived
 * from the times between beats (at least floor seconds). on_stall(arg,
 * report) is called from the watchdog's thread, on the rank that finds the
 * stall, with a report naming the ranks (host, PID, step) and the limit; it
 * ends the job. */
typedef struct dml__watchdog dml__watchdog_t;
/* What the time since the previous beat was: what the derived limit learns
 * from. */
typedef enum {
    DML__WD_STEP = 0, /* a part of a step: counts while recent */
    DML__WD_RARE,     /* a checkpoint: counts for the whole run */
    DML__WD_CALLER    /* the caller's own (on_step): does not count */
} dml__wd_kind_t;
dml_status_t dml__watchdog_start(MPI_Comm comm, double timeout, double floor,
                                 void (*on_stall)(void *, const char *), void *arg,
                                 dml__watchdog_t **out);
void dml__watchdog_beat(dml__watchdog_t *w, uint64_t step, dml__wd_kind_t kind);
void dml__watchdog_stop(dml__watchdog_t *w);

/* ---- the training state (train_state.c) --------------------------------
 *
 * Everything a checkpoint holds of a run, in one struct that train_state.c
 * alone saves and loads, in mirrored functions, through ckpt/ (the file,
 * its header and commit protocol) and nn/ (the model's group); the layout
 * is docs/formats/checkpoint.md. train.c fills one from the trainer to save
 * it and adopts a loaded one, and names no attribute or array.
 */

/* A row of the metrics history: epoch, step, loss, accuracy, test loss, test
 * accuracy (NaN without a test set), samples per second. */
#define DML__HIST_COLS 7

typedef struct {
    /* what the run is: a checkpoint of another run is not resumed */
    char model[DML_MODEL_SPEC_MAX]; /* the spec as text */
    char dataset[4096];             /* the training data's path */
    char dataset_hash[128];         /* and its content hash */
    char optimizer[16];             /* "sgd", "adamw" */
    char config[4096];              /* the effective configuration, for people */
    uint64_t seed;                  /* of weights, shuffling and dropout */
    int32_t batch, accum;
    /* where it is */
    uint64_t step, epoch;      /* optimiser steps and epochs done */
    dml_loader_state_t loader; /* the loader's position (seed: seed) */
    double epoch_sums[3];      /* this epoch so far: loss sum, correct, samples */
    uint64_t opt_steps;        /* the optimiser's step count */
    int world_size;            /* loaded: the ranks that wrote it */
    /* the arrays: the model (whose spec and sizes they have), its weights
     * and buffers, nopt optimiser buffers of as many values as the weights,
     * and nhistory rows of DML__HIST_COLS metrics. Saving borrows them (and
     * info, what the model group says of the training); loading allocates
     * them (dml__train_state_free). */
    dml_model_t *m;
    dml_model_info_t info;
    float *params, *buffers;
    int nopt;
    float *opt[2];
    double *history;
    uint64_t nhistory;
    int owned; /* the arrays are the state's (loaded) */
} dml_train_state_t;

/* About the bytes the arrays of s take in a checkpoint. */
uint64_t dml__train_state_bytes(const dml_train_state_t *s);

/* Collective over comm: checkpoint s->step of s in dir (dml_ckpt.h's
 * protocol; keep and cfg as there); path_out (may be NULL) gets its path.
 * Every rank returns the same status. */
dml_status_t dml__train_state_save(MPI_Comm comm, const dml_train_state_t *s, const char *dir,
                                   int keep, const dml_ckpt_config_t *cfg, char *path_out,
                                   size_t len);

/* Local: the state checkpointed at path, if it is of the run `run` describes
 * (model, dataset content, seed and optimizer: DML_ERR_MISMATCH naming the
 * file otherwise; run->m and run->nopt size the arrays). out is written only
 * on success; free it with dml__train_state_free. */
dml_status_t dml__train_state_load(const char *path, const dml_train_state_t *run,
                                   dml_train_state_t *out);
void dml__train_state_free(dml_train_state_t *s);

#endif /* DML_TRAIN_PRIVATE_H */
