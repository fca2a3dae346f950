/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_infer.h: batch inference as a sharded, idempotent service over Slurm
 * array jobs (libdml_infer).
 *
 * An inference run is an output directory. Its manifest pins what the run is
 * (the model's and the input's identity, the number of parts, top-k, the
 * batch size and BLAS threads); array task i of n computes part i, a run of
 * whole batches of the input (dml_infer_slice), forward passes on BLAS, on
 * one or more MPI ranks, each rank taking whole batches too. Every sample is
 * thus computed in the same batch, at the same row, by the same BLAS calls,
 * however the run is split: a matrix product's rows depend on the shape of
 * the call on some BLAS kernels (OpenBLAS's Haswell sgemm) and on its thread
 * count on all, and the predictions must not depend on the split. A part
 * is written under a temporary name and committed by a rename; its record
 * (attributes: sample range, model hash, input hash, checksum of its arrays)
 * says what it holds, so a complete part is never computed twice and a stale
 * or damaged one is redone. The merge is the fan-in: it verifies every part
 * and writes one predictions file and a report (docs/serve-batch.md,
 * docs/formats/inference.md).
 *
 * Errors are dml_status_t with a detail; nothing here prints. Functions
 * marked "collective" agree on failure across the communicator.
 */
#ifndef DML_INFER_H
#define DML_INFER_H

#include "dml_status.h"

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

#define DML_INFER_PART_FORMAT "slurm-dml inference part"
#define DML_INFER_VERSION 2
#define DML_INFER_MAX_TOPK 16
#define DML_INFER_DEFAULT_BATCH 1024

/* The exit status of `dml-infer status` and `merge` when parts are missing
 * (2 is a usage error, as for every slurm-dml tool; 1 any other failure). */
#define DML_INFER_EXIT_INCOMPLETE 3

/* What a run is; the manifest file (OUT/manifest) in memory. */
typedef struct {
    char model_path[4096];
    char model_hash[17];
    char input_path[4096];
    char input_hash[17];
    uint32_t tasks;   /* parts */
    uint64_t samples; /* of the input */
    int topk;
    int batch;        /* samples per forward pass: the unit of every split */
    int blas_threads; /* BLAS threads per rank (a product's bits depend on it) */
    char device[8];   /* "cpu" or "cuda": where the parts are computed (their bits
                         depend on it); a manifest without it: "cpu" */
} dml_infer_manifest_t;

/* One batch of a run, for a caller that watches them (dml_infer_config_t's
 * on_batch: progress, profiling): its place and where its time went. */
typedef struct {
    uint64_t index;    /* the batch's number in this rank's share, from 0 */
    uint64_t samples;  /* in it (the last may be short) */
    int batch;         /* the run's batch size */
    uint64_t features; /* per sample */
    /* seconds: reading the rows, the drift counts, normalising, the forward
     * pass, top-k; and the whole batch */
    double read, drift, normalise, forward, topk, total;
} dml_infer_batch_t;

typedef struct {
    const char *model;    /* model file, checkpoint or checkpoint directory */
    const char *input;    /* dataset directory (io/ format) */
    const char *out;      /* output directory */
    uint32_t task, tasks; /* this part of how many */
    int batch;            /* samples per forward pass; 0: the run's manifest's,
                             else DML_INFER_DEFAULT_BATCH [0] */
    int blas_threads;     /* the BLAS threads the caller runs with, per rank:
                             recorded and checked, not set [1] */
    int topk;             /* probabilities kept per sample [3] */
    const char *device;   /* dml_device_select's name: NULL or "cpu", "cuda", "cuda:N",
                             "auto" (each rank its node-local GPU) [cpu] */
    int verify;           /* check the input's shard checksums first [1] */
    int replace;          /* a manifest of another model or input is replaced */
    int drift_every;      /* histogram every k-th sample (by input index) [4] */
    /* Called on the computing rank after each batch (may be NULL). */
    void (*on_batch)(void *arg, const dml_infer_batch_t *b);
    void *on_batch_arg;
    /* Called by the rank that writes the part once it is written under its
     * temporary name and before it is committed (phase "written"), for tests
     * that kill a task there. May be NULL. */
    void (*on_part)(void *arg, uint32_t task, const char *phase);
    void *on_part_arg;
} dml_infer_config_t;

void dml_infer_config_init(dml_infer_config_t *c);

/* Samples [*first, *first + *count) of part task of tasks, for n samples in
 * batches of `batch`: the ceil(n / batch) batches are split evenly (the
 * first parts take one more where they do not divide), so every part
 * starts at a multiple of batch and only the input's last batch is short.
 * Parts may be empty where there are more parts than batches. Also how a
 * part is split over its ranks. */
void dml_infer_slice(uint64_t n, uint64_t batch, uint32_t tasks, uint32_t task, uint64_t *first,
                     uint64_t *count);

typedef struct {
    int skipped;           /* the part was complete already: nothing done */
    char part[4096];       /* its path */
    uint64_t first, count; /* its samples */
    int batch;             /* the run's batch size */
    double seconds;        /* reading, forward passes and writing */
    double samples_per_s;
    char model_hash[17], input_hash[17];
    int redone; /* a stale or damaged part was there and was redone */
    char redone_why[512];
    char device[384]; /* rank 0's device (dml_device_format) */
} dml_infer_result_t;

/*
 * Collective over comm (the ranks of one array task): computes part
 * cfg->task unless it is complete for the same model and input. Model and
 * input are checked against each other (input size, classes) and the input
 * slice is validated before anything is written. DML_ERR_MISMATCH when the
 * output directory belongs to another model, input, number of parts, top-k,
 * batch size or BLAS thread count (unless cfg->replace).
 */
dml_status_t dml_infer_run(MPI_Comm comm, const dml_infer_config_t *cfg, dml_infer_result_t *res);

/* ---- status and merge (local, no MPI) ----------------------------------- */

typedef enum {
    DML_PART_COMPLETE = 0,
    DML_PART_MISSING, /* no part (perhaps a partial write left behind) */
    DML_PART_STALE,   /* a sound part of another model, input or split */
    DML_PART_CORRUPT  /* unreadable, malformed or failing its checksum */
} dml_part_state_t;

const char *dml_part_state_name(dml_part_state_t s);

/* The manifest of the run in out. DML_ERR_NOT_FOUND if there is none. */
dml_status_t dml_infer_manifest_read(const char *out, dml_infer_manifest_t *m);

/* Part task's path in out ("part-00003.h5"). */
void dml_infer_part_path(const char *out, uint32_t task, char *buf, size_t len);

/* The state of part `task` against the manifest; why: the reason when it is
 * not complete (may be NULL). */
dml_part_state_t dml_infer_part_check(const char *out, const dml_infer_manifest_t *m, uint32_t task,
                                      char *why, size_t len);

typedef struct {
    double drift_threshold;  /* PSI above which a feature group is flagged [0.1] */
    const char *predictions; /* NULL: OUT/predictions.h5 */
    const char *report;      /* NULL: OUT/report (.json and .txt) */
} dml_infer_merge_config_t;

void dml_infer_merge_config_init(dml_infer_merge_config_t *c);

/* Called for each part that is not complete (merge refuses then). */
typedef void (*dml_part_cb_t)(void *arg, uint32_t task, dml_part_state_t s, const char *why);

/*
 * The fan-in: verifies every part (reporting each one not complete through
 * cb and returning DML_ERR_NOT_FOUND naming how many), then writes the
 * predictions file and the report (JSON and text), each under a temporary
 * name renamed into place. *text gets the text report (malloc'ed; may be
 * NULL).
 */
dml_status_t dml_infer_merge(const char *out, const dml_infer_merge_config_t *cfg, dml_part_cb_t cb,
                             void *arg, char **text);

/* Population stability index of two histograms of `bins` counts, with each
 * bin's share floored at 1e-4 (empty bins would give infinities). */
double dml_psi(const uint64_t *expected, const uint64_t *actual, int bins);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_INFER_H */
