/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_train.h: the data-parallel trainer: the optimisers and learning-rate
 * schedules that update a network's parameters (the network itself, its
 * layers and model files, is dml_nn.h), the data-parallel step that sums the
 * gradients across MPI ranks, and the training loop with its checkpoints.
 *
 * The network's backward pass reports each layer's gradient range as soon
 * as it is final, so the data-parallel step can start reducing it across
 * ranks (non-blocking allreduce of buckets) while the earlier layers are
 * still being computed. Nothing here prints.
 */
#ifndef DML_TRAIN_H
#define DML_TRAIN_H

#include "dml_ckpt.h"
#include "dml_io.h"
#include "dml_nn.h"
#include "dml_status.h"

#include <mpi.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

/* ---- optimisers ------------------------------------------------------- */

typedef enum { DML_OPT_SGD = 0, DML_OPT_ADAMW } dml_opt_type_t;

typedef struct {
    dml_opt_type_t type;
    float momentum;          /* SGD */
    int nesterov;            /* SGD */
    float beta1, beta2, eps; /* AdamW */
    float weight_decay;      /* SGD: L2 added to the gradient; AdamW: decoupled */
} dml_opt_config_t;

void dml_opt_config_init(dml_opt_config_t *c, dml_opt_type_t type);

typedef struct dml_opt dml_opt_t;

dml_status_t dml_opt_create(const dml_opt_config_t *c, size_t nparams, dml_opt_t **opt_out);
void dml_opt_free(dml_opt_t *o);

/* One update of params from grads at learning rate lr. */
void dml_opt_step(dml_opt_t *o, float *params, const float *grads, float lr);
/* The same update of elements [off, off + n) only (of params, grads and the
 * state): a rank's slice where the ranks share the parameters. Counts as one
 * step, as dml_opt_step does. */
void dml_opt_step_range(dml_opt_t *o, float *params, const float *grads, float lr, size_t off,
                        size_t n);
/* dml_opt_step_range in parts, for a caller that has the gradient a block
 * at a time: dml_opt_next counts the step (once), then dml_opt_apply
 * updates elements [off, off + n) of params and of the state from g[0..n). */
void dml_opt_next(dml_opt_t *o, float lr);
void dml_opt_apply(dml_opt_t *o, float *params, const float *g, float lr, size_t off, size_t n);

/* The optimiser's state (momentum, or Adam's moments and step count), for
 * checkpoints: nbufs float arrays of nparams each, and the step count (set
 * when a checkpoint is resumed; Adam's bias correction follows it). */
int dml_opt_nbufs(const dml_opt_t *o);
float *dml_opt_buf(dml_opt_t *o, int i);
uint64_t dml_opt_steps(const dml_opt_t *o);
void dml_opt_set_steps(dml_opt_t *o, uint64_t steps);

/* ---- learning rate and clipping ---------------------------------------- */

typedef enum { DML_LR_CONSTANT = 0, DML_LR_STEP, DML_LR_COSINE } dml_lr_kind_t;

typedef struct {
    dml_lr_kind_t kind;
    float base;          /* peak learning rate */
    uint64_t warmup;     /* steps of linear warm-up from 0 */
    uint64_t step_every; /* DML_LR_STEP: multiply by gamma every so many steps */
    float gamma;
    uint64_t total; /* DML_LR_COSINE: steps to decay over (to 0) */
} dml_lr_schedule_t;

float dml_lr_at(const dml_lr_schedule_t *s, uint64_t step);

/* Scales g (n floats) so that its L2 norm is at most max_norm; returns the
 * norm before clipping. Call after the gradients are summed across ranks. */
double dml_clip_grad_norm(float *g, size_t n, double max_norm);

/* ---- the data-parallel step --------------------------------------------
 *
 * Every rank runs forward and backward on its part of the global batch, and
 * the gradients are summed across ranks in one of two ways:
 *
 * DML_DP_ALLREDUCE: in buckets, each bucket's non-blocking allreduce
 * (MPI_Iallreduce) starting as soon as backward has made its layers final,
 * so that communication hides behind the earlier layers' compute (the
 * pattern of PyTorch DDP and Horovod); the last bucket, final only when
 * backward is done, is reduced with the blocking MPI_Allreduce. Every rank
 * then holds the whole sum and updates every parameter.
 *
 * DML_DP_SHARED, where every rank is on one node: the parameters are one
 * array in memory the ranks share (MPI-3 shared windows), each rank sums
 * one slice of the gradient straight from the others' memory and updates
 * that slice of the parameters (the optimiser's work is divided, and no
 * gradient byte is copied). The model's parameter and gradient arrays are
 * the shared ones from dml_dp_create to dml_dp_free.
 *
 * Either way the summation order is fixed, so a run is bit-for-bit
 * reproducible for a given seed, world size and way.
 */

typedef struct dml_dp dml_dp_t;

typedef enum {
    DML_DP_AUTO = 0, /* SHARED where there are several ranks, all on one node */
    DML_DP_ALLREDUCE,
    DML_DP_SHARED /* fails (DML_ERR_INVALID_ARG) where the ranks span nodes */
} dml_dp_mode_t;

/* Collective. bucket_bytes (ALLREDUCE): at least this much per bucket (whole
 * layers; the first, last-layer bucket may be smaller); 0: 1 MiB. In SHARED
 * the model's parameters become rank 0's (every rank initialised them from
 * the same seed). AUTO takes ALLREDUCE where the shared memory cannot be had
 * (/dev/shm too small). Every rank returns the same status. */
dml_status_t dml_dp_create(MPI_Comm comm, dml_model_t *model, dml_dp_mode_t mode,
                           size_t bucket_bytes, dml_dp_t **dp_out);
/* Collective where the mode is SHARED. The model keeps its parameters. */
void dml_dp_free(dml_dp_t *dp);

/* The way chosen (never AUTO). */
dml_dp_mode_t dml_dp_mode(const dml_dp_t *dp);

/* Number of buckets, and bucket b's range of the flat arrays. */
int dml_dp_buckets(const dml_dp_t *dp);
void dml_dp_bucket_range(const dml_dp_t *dp, int b, size_t *offset, size_t *count);

/* The range of the flat arrays this rank sums and updates: all of them in
 * ALLREDUCE, its slice in SHARED. */
void dml_dp_slice(const dml_dp_t *dp, size_t *offset, size_t *count);

/*
 * Collective (also with reduce = 0). Adds this rank's n samples' gradients
 * (scaled 1/global_n) to the model's gradient array and, if reduce is set,
 * sums them across ranks: the whole array in ALLREDUCE, this rank's slice
 * (dml_dp_slice) in SHARED. With gradient accumulation, call with reduce = 0
 * for all but the last micro-batch. A bad label on any rank is agreed on
 * first: every rank returns the same error and none is left waiting in a
 * collective. loss_sum and correct are this rank's (sum them across ranks
 * for metrics).
 */
dml_status_t dml_dp_step(dml_dp_t *dp, const float *x, const int32_t *y, int n, uint64_t global_n,
                         uint64_t dropout_seed, int reduce, double *loss_sum, int *correct);

/*
 * Collective, after the reducing dml_dp_step: the update. The summed
 * gradient is divided by micro (its number of micro-batches), clipped to a
 * global L2 norm of clip (0: no clipping; *norm_out, may be NULL, gets the
 * norm before clipping) and applied by opt at learning rate lr. On return
 * every rank sees the new parameters.
 */
dml_status_t dml_dp_update(dml_dp_t *dp, dml_opt_t *opt, float lr, int micro, double clip,
                           double *norm_out);

/* Collective: the optimiser's whole state on every rank (in SHARED each rank
 * keeps only its slice current): call before writing it out. */
dml_status_t dml_dp_gather_state(dml_dp_t *dp, dml_opt_t *opt);

/* Collective: sets the parameters to params (np floats, the same on every
 * rank), e.g. from a checkpoint. */
dml_status_t dml_dp_set_params(dml_dp_t *dp, const float *params);

/* Seconds spent in MPI after backward, so far: reducing the last bucket
 * (blocking: there is nothing left to overlap it with) or meeting the other
 * ranks and summing the slice, and waiting for the others. */
double dml_dp_wait_seconds(const dml_dp_t *dp);

/* ---- the training loop ----------------------------------------------------
 *
 * dml_trainer_* runs epochs of data-parallel training over a dataset (io/),
 * evaluates on a held-out dataset after each epoch, and reports progress
 * through a callback (the library prints nothing). All of the training state
 * lives in the trainer: model, optimiser, step and epoch, loader position.
 */

typedef struct {
    const char *train_dir; /* required */
    const char *test_dir;  /* NULL: no evaluation */
    dml_model_spec_t spec; /* dml_model_spec_parse; bound to the training data's shape by
                              dml_trainer_create */
    uint64_t seed;         /* weights, sample order, dropout */
    int batch;             /* samples per rank per micro-batch */
    int accum;             /* micro-batches per optimiser step (>= 1) */
    int epochs;
    dml_opt_config_t opt;
    dml_lr_schedule_t lr; /* cosine with total 0: decays over all epochs */
    double clip;          /* max global gradient norm; 0: none */
    dml_shuffle_t shuffle;
    dml_cache_t cache;
    int prefetch;
    size_t bucket_bytes;       /* 0: 1 MiB */
    dml_dp_mode_t grad_reduce; /* DML_DP_AUTO */
    int log_every;             /* steps between step reports; 0: epochs only */
    /* Where the model computes (dml_device_select's names): NULL or "cpu";
     * "cuda" or "cuda:N" (each rank the GPU of its rank on the node, modulo
     * the GPUs it sees), refused where there is none or the network has a
     * layer the GPU path lacks; "auto": "cuda" where a GPU is seen and the
     * network runs there, else the CPU (dml_trainer_device_note says why). */
    const char *device;

    /* Checkpoints (ckpt/, docs/formats/checkpoint.md); ckpt_dir NULL: none. */
    const char *ckpt_dir;
    uint64_t ckpt_every;    /* optimiser steps between checkpoints; 0: not by steps */
    double ckpt_seconds;    /* seconds between checkpoints; 0: not by time */
    int ckpt_keep;          /* newest checkpoints kept [3]; 0: all */
    dml_ckpt_config_t ckpt; /* how they are written (dml_ckpt.h) [its defaults] */
    /* Set (by a signal handler, on any rank) to checkpoint at the next step
     * boundary and stop with DML_ERR_INTERRUPTED. May be NULL. */
    volatile sig_atomic_t *stop;
    /* The job's end (seconds since the epoch; 0: none): checkpoint and stop
     * once it is closer than deadline_margin seconds. Rank 0's clock rules. */
    double deadline;
    double deadline_margin;
    /* Called on every rank after each optimiser step (step: the steps done
     * so far), before the ranks agree on the step's metrics and on whether
     * to stop, so that a signal that arrives during the call is acted on at
     * this step. May be NULL. The tool's test hook uses it to pause a run at
     * a chosen step (docs/checkpoints.md). */
    void (*on_step)(void *arg, uint64_t step);
    void *on_step_arg;
    /* The stall watchdog: while dml_trainer_run trains, a rank that has not
     * been heard from, or has not moved while the others wait in a
     * collective for it, for stall_timeout seconds is reported through
     * on_stall (called once, from a thread of the library, on the rank that
     * finds it) with a report naming each such rank (host, PID, last step)
     * and the limit. on_stall ends the job (MPI_Abort): the others cannot
     * leave their collective. 0 or no on_stall: no watchdog.
     * DML_STALL_AUTO: the limit is derived from the run, 10 times the
     * slowest recent step (any rank's) or checkpoint, and at least
     * stall_floor seconds [60]. Needs MPI_THREAD_MULTIPLE. */
    double stall_timeout;
    double stall_floor;
    void (*on_stall)(void *arg, const char *report);
    void *on_stall_arg;
} dml_trainer_config_t;

/* stall_timeout: derive the limit from the run's own step times. */
#define DML_STALL_AUTO (-1.0)

void dml_trainer_config_init(dml_trainer_config_t *c);

typedef struct {
    int is_epoch;          /* 0: a step report, 1: the end of an epoch */
    uint64_t epoch, step;  /* step: optimiser steps so far */
    double loss, accuracy; /* training, over the steps since the last report */
    double lr, samples_per_s;
    double compute, comm, data; /* shares of the time since the last report */
    int has_test;
    double test_loss, test_accuracy;
    /* A checkpoint report (is_epoch 0): its path, what made it, its cost. */
    const char *checkpoint;
    const char *checkpoint_reason;
    double checkpoint_seconds;
} dml_progress_t;

/* Called on every rank; a status other than DML_OK on any rank (an output
 * that cannot be written) stops training on every rank with that status
 * and its detail (the ranks agree on it right after the call). */
typedef dml_status_t (*dml_progress_cb_t)(void *arg, const dml_progress_t *p);

typedef struct dml_trainer dml_trainer_t;

/* Collective: opens the datasets, checks that the model fits them (input
 * size, classes), creates model, optimiser and loaders. Every rank returns
 * the same status. */
dml_status_t dml_trainer_create(MPI_Comm comm, const dml_trainer_config_t *cfg,
                                dml_trainer_t **tr_out);
void dml_trainer_free(dml_trainer_t *tr);

/* Collective: trains cfg->epochs epochs (the rest of them, after a resume).
 * DML_ERR_NUMERIC (on every rank) if the loss stops being finite; the message
 * names the step and the last good metrics. DML_ERR_INTERRUPTED after a
 * checkpoint taken on cfg->stop or before cfg->deadline: the caller exits
 * with DML_CKPT_EXIT_REQUEUE. */
dml_status_t dml_trainer_run(dml_trainer_t *tr, dml_progress_cb_t cb, void *arg);

/* Rank 0 writes the model file (HDF5: weights, spec, the training data's
 * normalisation statistics and content hash), to a temporary name renamed
 * into place; other ranks only agree. Collective. */
dml_status_t dml_trainer_save_model(dml_trainer_t *tr, const char *path);

/* Before training: whether path's file system has room for the model file
 * (a model's file keeps its size through training), so that a full disk is
 * found before the work, not after it. Collective; rank 0 checks. */
dml_status_t dml_trainer_check_output_space(dml_trainer_t *tr, const char *path);

dml_model_t *dml_trainer_model(dml_trainer_t *tr);
/* "auto" that stayed on the CPU with a GPU in sight: why ("" otherwise). */
const char *dml_trainer_device_note(const dml_trainer_t *tr);
/* How the gradients are summed (dml_dp_mode). */
dml_dp_mode_t dml_trainer_grad_reduce(const dml_trainer_t *tr);

/* Steps and epochs done so far. */
void dml_trainer_progress(const dml_trainer_t *tr, uint64_t *step, uint64_t *epoch);

/* Collective: a checkpoint of the whole training state now, in
 * cfg->ckpt_dir (see docs/formats/checkpoint.md). path_out may be NULL. */
dml_status_t dml_trainer_checkpoint(dml_trainer_t *tr, char *path_out, size_t len);

/* Called on every rank for each checkpoint passed over while resuming, with
 * the reason (the checkpoint's path and the cause). */
typedef void (*dml_skip_cb_t)(void *arg, const char *why);

typedef struct {
    int resumed; /* 0: nothing to resume from */
    char path[4096];
    uint64_t step, epoch;
    int world_size; /* of the run that saved it */
} dml_resume_info_t;

/*
 * Collective: continues from the newest checkpoint that loads, in `from` (a
 * checkpoint directory, or one checkpoint file). Each one that does not load
 * (damaged, incomplete, or from another model, dataset or seed) is reported
 * through skip and passed over for the next older. The saving run's world
 * size may differ from this one's: the loader continues with the same global
 * sample sequence. DML_OK with info->resumed 0 if `from` holds no
 * checkpoint; DML_ERR_NOT_FOUND, naming every one passed over, if it holds
 * some and none loads (so that a damaged directory is never silently
 * trained over).
 */
dml_status_t dml_trainer_resume(dml_trainer_t *tr, const char *from, dml_skip_cb_t skip, void *arg,
                                dml_resume_info_t *info);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_TRAIN_H */
