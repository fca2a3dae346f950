/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * infer.c: one array task's part of a batch-inference run (dml_infer_run)
 * and the manifest that pins what the run is.
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_h5.h"
#include "dml_infer.h"
#include "dml_io.h"
#include "dml_mpi.h"
#include "dml_nn.h"
#include "infer_private.h"
#include "dml_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

void dml_infer_config_init(dml_infer_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->tasks = 1;
    c->batch = 0;
    c->blas_threads = 1;
    c->topk = 3;
    c->verify = 1;
    c->drift_every = 4;
}

void dml_infer_slice(uint64_t n, uint64_t batch, uint32_t tasks, uint32_t task, uint64_t *first,
                     uint64_t *count)
{
    /* Whole batches, split evenly; 128-bit arithmetic keeps nb * task from
     * overflowing. */
    const uint64_t nb = batch ? n / batch + (n % batch != 0) : 0;
    uint64_t a = (uint64_t)((unsigned __int128)nb * task / tasks) * batch;
    uint64_t b = (uint64_t)((unsigned __int128)nb * (task + 1) / tasks) * batch;

    a = a < n ? a : n;
    b = b < n ? b : n;
    *first = a;
    *count = b - a;
}

/* ---- the manifest --------------------------------------------------------- */

static void dml__manifest_format(const dml_infer_manifest_t *m, char *buf, size_t len)
{
    snprintf(buf, len,
             "format slurm-dml inference run\nversion %d\nmodel %s\nmodel_hash %s\ninput %s\n"
             "input_hash %s\ntasks %u\nsamples %llu\ntopk %d\nbatch %d\nblas_threads %d\n"
             "device %s\n",
             DML_INFER_VERSION, m->model_path, m->model_hash, m->input_path, m->input_hash,
             m->tasks, (unsigned long long)m->samples, m->topk, m->batch, m->blas_threads,
             m->device[0] ? m->device : "cpu");
}

dml_status_t dml_infer_manifest_read(const char *out, dml_infer_manifest_t *m)
{
    char path[4200], line[4400], key[32];
    unsigned seen = 0;
    int version = 0;
    FILE *f;

    memset(m, 0, sizeof(*m));
    snprintf(m->device, sizeof(m->device), "cpu"); /* runs from before the GPU path */
    snprintf(path, sizeof(path), "%s/manifest", out);
    if ((f = fopen(path, "r")) == NULL)
        return errno == ENOENT ? dml_error_set(DML_ERR_NOT_FOUND,
                                               "%s: no inference run here "
                                               "(no manifest)",
                                               out)
                               : dml_error_set_errno(errno, "%s", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        char *v = strchr(line, ' ');
        size_t n;
        if (v == NULL || (size_t)(v - line) >= sizeof(key))
            continue;
        memcpy(key, line, (size_t)(v - line));
        key[v - line] = '\0';
        v++;
        n = strlen(v);
        if (n > 0 && v[n - 1] == '\n')
            v[--n] = '\0';
        if (strcmp(key, "version") == 0)
            version = atoi(v), seen |= 1;
        else if (strcmp(key, "model") == 0)
            snprintf(m->model_path, sizeof(m->model_path), "%s", v), seen |= 2;
        else if (strcmp(key, "model_hash") == 0)
            snprintf(m->model_hash, sizeof(m->model_hash), "%s", v), seen |= 4;
        else if (strcmp(key, "input") == 0)
            snprintf(m->input_path, sizeof(m->input_path), "%s", v), seen |= 8;
        else if (strcmp(key, "input_hash") == 0)
            snprintf(m->input_hash, sizeof(m->input_hash), "%s", v), seen |= 16;
        else if (strcmp(key, "tasks") == 0)
            m->tasks = (uint32_t)strtoul(v, NULL, 10), seen |= 32;
        else if (strcmp(key, "samples") == 0)
            m->samples = strtoull(v, NULL, 10), seen |= 64;
        else if (strcmp(key, "topk") == 0)
            m->topk = atoi(v), seen |= 128;
        else if (strcmp(key, "batch") == 0)
            m->batch = atoi(v), seen |= 256;
        else if (strcmp(key, "blas_threads") == 0)
            m->blas_threads = atoi(v), seen |= 512;
        else if (strcmp(key, "device") == 0)
            snprintf(m->device, sizeof(m->device), "%s", v);
    }
    fclose(f);
    /* Version 1 cut parts at floor(S*i/n), wherever a batch was: its parts
     * are not this version's, and only --replace may redo them. */
    if ((seen & 1) && version == 1)
        return dml_error_set(DML_ERR_FORMAT,
                             "%s: a run of an earlier slurm-dml (manifest "
                             "version 1, parts cut at other samples): use another output "
                             "directory, or --replace to redo every part",
                             path);
    if (seen != 1023 || version != DML_INFER_VERSION || m->tasks == 0 || m->topk < 1 ||
        m->topk > DML_INFER_MAX_TOPK || m->batch < 1 || m->blas_threads < 1 ||
        (strcmp(m->device, "cpu") != 0 && strcmp(m->device, "cuda") != 0))
        return dml_error_set(DML_ERR_FORMAT,
                             "%s: not a slurm-dml inference manifest of version "
                             "%d (damaged?)",
                             path, DML_INFER_VERSION);
    return DML_OK;
}

/* Written under a temporary name, its size reserved first, then committed
 * (dml__write_durably: fsync, rename, fsync of the directory). With exclusive set, link() instead
 * of rename(): of array tasks starting together, one creates the manifest and the others find it
 * (DML_ERR_EXISTS). */
dml_status_t dml__write_file_durably(const char *path, const char *text, int exclusive)
{
    return dml__write_durably(path, text, strlen(text), "file", exclusive);
}

dml_status_t dml__load_model(const char *path, int max_batch, dml_model_t **m, dml_model_info_t *mi)
{
    char file[4096];
    dml_status_t st = dml_ckpt_model_path(path, file, sizeof(file));

    return st != DML_OK ? st : dml_model_load(file, max_batch, m, mi);
}

static int dml__manifest_same(const dml_infer_manifest_t *a, const dml_infer_manifest_t *b)
{
    return strcmp(a->model_hash, b->model_hash) == 0 && strcmp(a->input_hash, b->input_hash) == 0 &&
           a->tasks == b->tasks && a->samples == b->samples && a->topk == b->topk &&
           a->batch == b->batch && a->blas_threads == b->blas_threads &&
           strcmp(a->device, b->device) == 0;
}

/* Rank 0: makes or checks OUT/manifest. */
static dml_status_t dml__manifest_settle(const dml_infer_config_t *cfg,
                                         const dml_infer_manifest_t *want)
{
    char path[4200], text[9000];
    dml_infer_manifest_t have;
    dml_status_t st;
    int tries;

    if (mkdir(cfg->out, 0755) != 0 && errno != EEXIST)
        return dml_error_set_errno(errno, "output directory %s", cfg->out);
    snprintf(path, sizeof(path), "%s/manifest", cfg->out);
    dml__manifest_format(want, text, sizeof(text));
    for (tries = 0; tries < 2; tries++) {
        st = dml_infer_manifest_read(cfg->out, &have);
        if (st == DML_ERR_NOT_FOUND) {
            st = dml__write_file_durably(path, text, 1);
            if (st == DML_ERR_EXISTS)
                continue; /* another task was first: check its manifest */
            return st;
        }
        if (st != DML_OK && !cfg->replace)
            return st;
        if (st == DML_OK && dml__manifest_same(&have, want))
            return DML_OK;
        if (cfg->replace)
            return dml__write_file_durably(path, text, 0);
        if (strcmp(have.model_hash, want->model_hash) != 0)
            return dml_error_set(DML_ERR_MISMATCH,
                                 "%s holds the parts of another model (%s, "
                                 "hash %s; this one is %s, hash %s): use another output "
                                 "directory, or --replace to redo every part",
                                 cfg->out, have.model_path, have.model_hash, want->model_path,
                                 want->model_hash);
        if (strcmp(have.input_hash, want->input_hash) != 0)
            return dml_error_set(DML_ERR_MISMATCH,
                                 "%s holds the parts of another input (%s, "
                                 "hash %s; this one is %s, hash %s): use another output "
                                 "directory, or --replace to redo every part",
                                 cfg->out, have.input_path, have.input_hash, want->input_path,
                                 want->input_hash);
        return dml_error_set(DML_ERR_MISMATCH,
                             "%s was split into %u parts with top-%d, batch %d "
                             "and %d BLAS thread(s) on %s (now %u parts, top-%d, batch %d, %d "
                             "thread(s) on %s): the same samples would come out in other bits; "
                             "use the run's settings, another output directory, or --replace",
                             cfg->out, have.tasks, have.topk, have.batch, have.blas_threads,
                             have.device, want->tasks, want->topk, want->batch, want->blas_threads,
                             want->device);
    }
    return dml_error_set(DML_ERR_IO, "%s: the manifest keeps changing under us", cfg->out);
}

/* ---- the device ------------------------------------------------------------- */

/* Collective: puts the model on cfg->device, each rank on the GPU of its rank
 * on the node; *kind the device kind, the same on every rank or an error
 * (parts computed on two kinds would differ in their bits). "auto" keeps a
 * network the GPU path does not run on the CPU. */
static dml_status_t dml__place(MPI_Comm comm, const dml_infer_config_t *cfg, dml_model_t *model,
                               dml_device_kind_t *kind, char *desc, size_t len)
{
    const char *want = cfg->device ? cfg->device : "cpu";
    dml_status_t st = DML_OK;
    dml_device_t dev;
    MPI_Comm node;
    int local = 0, k[2];

    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
    }
    if (strcmp(want, "cpu") != 0) {
        st = dml_device_select(want, local, &dev);
        if (st == DML_OK && dev.kind != DML_DEVICE_CPU) {
            st = dml_model_set_device(model, &dev);
            if (st == DML_ERR_UNSUPPORTED && strcmp(want, "auto") == 0) {
                dml_error_clear();
                st = DML_OK;
            }
        }
    }
    if ((st = dml_mpi_agree(comm, st, NULL)) != DML_OK)
        return st;
    *kind = dml_model_device(model)->kind;
    dml_device_format(dml_model_device(model), desc, len);
    k[0] = (int)*kind;
    k[1] = -(int)*kind;
    MPI_Allreduce(MPI_IN_PLACE, k, 2, MPI_INT, MPI_MAX, comm);
    if (k[0] != -k[1])
        return dml_error_set(DML_ERR_MISMATCH,
                             "--device %s: some ranks of this task found a GPU "
                             "and others none; a part is computed on one kind of device",
                             want);
    return DML_OK;
}

/* ---- the forward passes ---------------------------------------------------- */

/* Float inputs: normalise rows [0, m) of the batch exactly as the loader
 * does (16 at a time so the compiler vectorises the bulk), and count every
 * drift_every-th sample, by its index g0 + i in the input so that the counts
 * do not depend on how the input is split, into the drift histograms. */
static void dml__normalize_f32(const dml_stats_t *st, const float *raw, uint64_t m, uint64_t F,
                               float scale, float bias, uint64_t g0, uint64_t every, float *x,
                               uint64_t *hist)
{
    uint64_t i, f, k;

    for (i = 0; i < m; i++) {
        const float *r = raw + i * F;
        float *xr = x + i * F;
        for (f = 0; f + 16 <= F; f += 16)
            for (k = 0; k < 16; k++)
                xr[f + k] = r[f + k] * scale + bias;
        for (; f < F; f++)
            xr[f] = r[f] * scale + bias;
        if ((g0 + i) % every == 0)
            for (f = 0; f < F; f++)
                hist[f * DML_DATASET_HIST_BINS + (uint64_t)dml_stats_bin(st, f, r[f])]++;
    }
}

/* The batch's top-k classes and probabilities, and its predictions, at the
 * batch's place pos in the part. */
static void dml__batch_topk(const float *probs, uint64_t m, int C, int K, uint64_t pos,
                            dml__part_t *o)
{
    uint64_t i;

    for (i = 0; i < m; i++) {
        int32_t *cls = o->tk_class + (pos + i) * (uint64_t)K;
        dml__topk(probs + i * (uint64_t)C, C, K, cls, o->tk_prob + (pos + i) * (uint64_t)K);
        o->pred[pos + i] = cls[0];
    }
}

/* The batch's phase times to the caller's on_batch, where it set one:
 * at[] are the ends of read, drift count, normalise, forward, top-k. */
static void dml__batch_report(const dml_infer_config_t *cfg, uint64_t b, uint64_t m, uint64_t F,
                              double t0, const double at[5])
{
    if (cfg->on_batch != NULL) {
        dml_infer_batch_t bs = {b,
                                m,
                                cfg->batch,
                                F,
                                at[0] - t0,
                                at[1] - at[0],
                                at[2] - at[1],
                                at[3] - at[2],
                                at[4] - at[3],
                                at[4] - t0};
        cfg->on_batch(cfg->on_batch_arg, &bs);
    }
}

/* This rank's samples [first, first + n): read, normalise as in training,
 * count into the drift histograms, forward, top-k. */
static dml_status_t dml__compute(const dml_dataset_t *ds, dml_model_t *model,
                                 const dml_model_info_t *mi, const dml_infer_config_t *cfg,
                                 uint64_t first, dml__part_t *o)
{
    const dml_schema_t *sc = dml_dataset_schema(ds);
    const dml_stats_t *st = &mi->stats;
    const uint64_t F = mi->features, n = o->count;
    const int C = (int)mi->num_classes, K = cfg->topk, B = cfg->batch;
    const size_t xsz = dml_dtype_size(sc->dtype);
    float *x = NULL, *probs = NULL, scale, bias;
    uint8_t *raw = NULL, *bin8 = NULL;
    const uint8_t **rp = NULL;
    dml__drift_t *drift = NULL;
    dml_dataset_reader_t *rd = NULL;
    dml_status_t s;
    uint64_t pos, f, i, b = 0;

    /* Normalisation exactly as the loader does it: x * (1/std) - mean/std,
     * in float. */
    scale = (float)(1.0 / (st->global_std > 0 ? st->global_std : 1.0));
    bias = (float)(-st->global_mean / (st->global_std > 0 ? st->global_std : 1.0));
    raw = malloc(xsz * F * (size_t)B);
    x = malloc(sizeof(float) * F * (size_t)B);
    probs = malloc(sizeof(float) * (size_t)C * (size_t)B);
    if (sc->dtype == DML_DTYPE_UINT8) {
        /* Byte inputs take 256 values: a table of histogram bins per
         * feature makes the bin a lookup. */
        bin8 = malloc(F * 256);
        rp = malloc(sizeof(*rp) * (size_t)B);
        if (bin8) {
            for (f = 0; f < F; f++)
                for (i = 0; i < 256; i++)
                    bin8[f * 256 + i] = (uint8_t)dml_stats_bin(st, f, (double)i);
        }
    }
    if (!raw || !x || !probs || (sc->dtype == DML_DTYPE_UINT8 && (!bin8 || !rp))) {
        s = dml_error_set(DML_ERR_NO_MEMORY, "no memory for batches of %d samples", B);
        goto out;
    }
    if (sc->dtype == DML_DTYPE_UINT8 && (s = dml__drift_create(bin8, F, &drift)) != DML_OK)
        goto out;
    if ((s = dml_dataset_reader_open(ds, &rd)) != DML_OK)
        goto out;
    /* The part's labels and ids in one read each, not two more per batch. */
    if ((s = dml_dataset_reader_read(rd, first, n, NULL, o->label, o->id)) != DML_OK)
        goto out;
    for (pos = 0; pos < n; pos += (uint64_t)B, b++) {
        const uint64_t m = n - pos < (uint64_t)B ? n - pos : (uint64_t)B;
        const double t0 = dml__now();
        double at[5];
        if ((s = dml_dataset_reader_read(rd, first + pos, m, raw, NULL, NULL)) != DML_OK)
            goto out;
        at[0] = at[1] = dml__now();
        /* Every drift_every-th sample (by its index in the input, so that
         * the counts do not depend on how the input is split) is counted
         * into the drift histograms, then the batch is normalised exactly
         * as the loader does it. */
        if (sc->dtype == DML_DTYPE_UINT8) {
            const uint64_t every = (uint64_t)cfg->drift_every, g0 = first + pos;
            uint64_t nr = 0;
            for (i = (every - g0 % every) % every; i < m; i += every)
                rp[nr++] = raw + i * F;
            dml__drift_count(drift, rp, nr);
            at[1] = dml__now();
            dml_normalize_u8(raw, m * F, scale, bias, x);
        } else {
            dml__normalize_f32(st, (const float *)(const void *)raw, m, F, scale, bias, first + pos,
                               (uint64_t)cfg->drift_every, x, o->hist);
        }
        at[2] = dml__now();
        if ((s = dml_model_eval(model, x, NULL, (int)m, probs, NULL, NULL)) != DML_OK)
            goto out;
        at[3] = dml__now();
        dml__batch_topk(probs, m, C, K, pos, o);
        at[4] = dml__now();
        o->lat[b] = at[4] - t0;
        dml__batch_report(cfg, b, m, F, t0, at);
    }
    if (drift != NULL)
        dml__drift_hist(drift, o->hist);
    s = DML_OK;
out:
    dml_dataset_reader_close(rd);
    dml__drift_free(drift);
    free(raw), free(x), free(probs), free(bin8), free(rp);
    return s;
}

/* ---- the run --------------------------------------------------------------- */

static dml_status_t dml__check_fit(const dml_model_info_t *mi, const dml_dataset_t *ds,
                                   const dml_infer_config_t *cfg)
{
    const dml_schema_t *sc = dml_dataset_schema(ds);
    uint64_t F = dml_schema_features(sc);

    if (F != mi->features)
        return dml_error_set(DML_ERR_MISMATCH,
                             "model %s takes %llu inputs, input %s has %llu "
                             "features per sample",
                             mi->path, (unsigned long long)mi->features, cfg->input,
                             (unsigned long long)F);
    /* Layers that see an image (not an mlp:) need the same shape, not only
     * as many values: 784 values are not a 28x28 image unless the data say so. */
    if (!mi->spec.mlp) {
        int same = sc->rank == mi->feature_rank;
        for (int i = 0; same && i < sc->rank; i++)
            same = sc->shape[i] == mi->feature_shape[i];
        if (!same) {
            char a[64] = "", b[64] = "";
            for (int i = 0; i < sc->rank; i++)
                snprintf(a + strlen(a), sizeof(a) - strlen(a), "%s%llu", i ? "x" : "",
                         (unsigned long long)sc->shape[i]);
            for (int i = 0; i < mi->feature_rank; i++)
                snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%llu", i ? "x" : "",
                         (unsigned long long)mi->feature_shape[i]);
            return dml_error_set(DML_ERR_MISMATCH,
                                 "model %s was trained on samples of shape %s, "
                                 "input %s has shape %s",
                                 mi->path, b, cfg->input, a);
        }
    }
    if (sc->num_classes != mi->num_classes)
        return dml_error_set(DML_ERR_MISMATCH, "model %s has %u classes, input %s has %u", mi->path,
                             mi->num_classes, cfg->input, sc->num_classes);
    if (cfg->topk > (int)mi->num_classes)
        return dml_error_set(DML_ERR_INVALID_ARG, "top-%d: the model has only %u classes",
                             cfg->topk, mi->num_classes);
    return DML_OK;
}

static dml_status_t dml__check_config(const dml_infer_config_t *c)
{
    if (c->model == NULL || c->input == NULL || c->out == NULL)
        return dml_error_set(DML_ERR_INVALID_ARG, "a model, an input and an output directory are "
                                                  "required");
    if (c->tasks < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "%u parts: a run has at least 1", c->tasks);
    if (c->task >= c->tasks)
        return dml_error_set(DML_ERR_INVALID_ARG, "part %u of %u: parts are numbered 0 to %u",
                             c->task, c->tasks, c->tasks - 1);
    if (c->batch < 0 || c->batch > 1 << 20)
        return dml_error_set(DML_ERR_INVALID_ARG, "batch %d: must be 1..%d", c->batch, 1 << 20);
    if (c->blas_threads < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "BLAS threads %d: must be >= 1", c->blas_threads);
    if (c->drift_every < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "drift sampling every %d samples: must be >= 1",
                             c->drift_every);
    if (c->topk < 1 || c->topk > DML_INFER_MAX_TOPK)
        return dml_error_set(DML_ERR_INVALID_ARG, "top-k %d: must be 1..%d", c->topk,
                             DML_INFER_MAX_TOPK);
    return DML_OK;
}

/* Gathers one array of per-sample records to rank 0 (counts in elements). */
static dml_status_t dml__gather(MPI_Comm comm, const void *mine, int n, void *all,
                                const int *counts, const int *displs, MPI_Datatype t)
{
    int rc = MPI_Gatherv(mine, n, t, all, counts, displs, t, 0, comm);
    return rc == MPI_SUCCESS ? DML_OK : dml_mpi_error(rc, "gathering the results");
}

/* Rank 0: the batch size of the run in cfg->out, or the default for a new
 * run (or one --replace redoes). */
static int dml__run_batch(const dml_infer_config_t *cfg)
{
    dml_infer_manifest_t m;

    if (!cfg->replace && dml_infer_manifest_read(cfg->out, &m) == DML_OK)
        return m.batch;
    return DML_INFER_DEFAULT_BATCH;
}

/* Collective: checks the configuration, settles the batch size (no batch
 * given: the run's, which every part must share) and loads the model and
 * the input; every rank loads both (small next to the data). On failure
 * (the same on every rank) *model, *mi and *ds are freed again. */
static dml_status_t dml__open_inputs(MPI_Comm comm, int rank, dml_infer_config_t *cfg,
                                     dml_model_t **model, dml_model_info_t *mi, dml_dataset_t **ds)
{
    dml_status_t st = dml__check_config(cfg);

    if (st == DML_OK && cfg->batch == 0) {
        if (rank == 0)
            cfg->batch = dml__run_batch(cfg);
        MPI_Bcast(&cfg->batch, 1, MPI_INT, 0, comm);
    }
    if (st == DML_OK)
        st = dml__load_model(cfg->model, cfg->batch, model, mi);
    if (st == DML_OK)
        st = dml_dataset_open(cfg->input, ds);
    if (st == DML_OK)
        st = dml__check_fit(mi, *ds, cfg);
    if ((st = dml_mpi_agree(comm, st, NULL)) != DML_OK) {
        dml_dataset_close(*ds);
        dml_model_free(*model);
        dml_model_info_free(mi);
        *ds = NULL;
        *model = NULL;
    }
    return st;
}

/* The manifest this task's run would have: what pins its results. */
static void dml__manifest_fill(const dml_infer_config_t *cfg, const dml_model_info_t *mi,
                               const dml_dataset_t *ds, dml_device_kind_t kind,
                               dml_infer_manifest_t *man)
{
    memset(man, 0, sizeof(*man));
    if (realpath(cfg->model, man->model_path) == NULL)
        snprintf(man->model_path, sizeof(man->model_path), "%s", cfg->model);
    if (realpath(cfg->input, man->input_path) == NULL)
        snprintf(man->input_path, sizeof(man->input_path), "%s", cfg->input);
    snprintf(man->model_hash, sizeof(man->model_hash), "%s", mi->hash);
    snprintf(man->input_hash, sizeof(man->input_hash), "%s", dml_dataset_content_hash(ds));
    man->tasks = cfg->tasks;
    man->samples = dml_dataset_samples(ds);
    man->topk = cfg->topk;
    man->batch = cfg->batch;
    man->blas_threads = cfg->blas_threads;
    snprintf(man->device, sizeof(man->device), "%s", kind == DML_DEVICE_CUDA ? "cuda" : "cpu");
}

/* Collective: rank 0 makes or checks the run's manifest and judges this
 * task's part; *skip (every rank) when the part is complete already, and
 * res says whether a stale or corrupt part is redone, and why. */
static dml_status_t dml__part_settle(MPI_Comm comm, int rank, const dml_infer_config_t *cfg,
                                     const dml_infer_manifest_t *man, dml_infer_result_t *res,
                                     int *skip)
{
    dml_status_t st = DML_OK;
    int done = 0;

    if (rank == 0) {
        st = dml__manifest_settle(cfg, man);
        if (st == DML_OK) {
            dml_part_state_t ps = dml_infer_part_check(cfg->out, man, cfg->task, res->redone_why,
                                                       sizeof(res->redone_why));
            done = ps == DML_PART_COMPLETE;
            res->redone = ps == DML_PART_STALE || ps == DML_PART_CORRUPT;
        }
    }
    if ((st = dml_mpi_agree(comm, st, NULL)) != DML_OK)
        return st;
    MPI_Bcast(&done, 1, MPI_INT, 0, comm);
    *skip = done;
    return DML_OK;
}

/* Collective: the input slice [first, first + count) must be sound before
 * any result is made from it: the ranks split the shards it touches. */
static dml_status_t dml__verify_slice(MPI_Comm comm, int rank, int size, dml_dataset_t *ds,
                                      uint64_t first, uint64_t count)
{
    uint32_t s0 = dml_dataset_shard_of(ds, first), s1 = dml_dataset_shard_of(ds, first + count - 1),
             s;
    dml_status_t st = DML_OK;

    for (s = s0 + (uint32_t)rank; s <= s1 && st == DML_OK; s += (uint32_t)size)
        st = dml_dataset_validate(ds, s, 1, NULL, NULL, NULL);
    return dml_mpi_agree(comm, st, NULL);
}

/* Where each rank's records go in the part, in elements, for MPI_Gatherv:
 * per sample, per sample and class of the top-k, per batch. Rank 0's only;
 * one allocation, at cnt. */
typedef struct {
    int *cnt, *dsp, *cntk, *dspk, *cntb, *dspb;
} dml__fanin_t;

/* Rank 0: the fan-in's layout for the part's count samples over size ranks
 * (each rank's share as dml_infer_slice cuts it), and the part `all` that
 * receives it. */
static dml_status_t dml__fanin_layout(const dml_infer_config_t *cfg, int size, uint64_t count,
                                      uint64_t F, dml__fanin_t *fan, dml__part_t *all)
{
    const int k = cfg->topk;
    uint64_t nb = 0, a, n;
    dml__fanin_t l;
    dml_status_t st;
    int r;

    l.cnt = malloc(sizeof(int) * (size_t)size * 6);
    if (l.cnt == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory");
    l.dsp = l.cnt + size, l.cntk = l.cnt + 2 * size, l.dspk = l.cnt + 3 * size;
    l.cntb = l.cnt + 4 * size, l.dspb = l.cnt + 5 * size;
    for (r = 0; r < size; r++) {
        dml_infer_slice(count, (uint64_t)cfg->batch, (uint32_t)size, (uint32_t)r, &a, &n);
        if (n * (uint64_t)k > INT_MAX) {
            st = dml_error_set(DML_ERR_INVALID_ARG,
                               "part %u: %llu samples on one rank; "
                               "use more array tasks",
                               cfg->task, (unsigned long long)n);
            goto err;
        }
        l.cnt[r] = (int)n, l.dsp[r] = (int)a;
        l.cntk[r] = (int)n * k, l.dspk[r] = (int)a * k;
        l.cntb[r] = (int)((n + (uint64_t)cfg->batch - 1) / (uint64_t)cfg->batch);
        l.dspb[r] = (int)nb;
        nb += (uint64_t)l.cntb[r];
    }
    if ((st = dml__part_alloc(all, count, k, F, nb)) != DML_OK)
        goto err;
    *fan = l;
    return DML_OK;
err:
    free(l.cnt);
    return st;
}

/* Collective: the fan-in within the task; rank 0's `all` holds the part
 * (its records gathered, its histograms summed). */
static dml_status_t dml__fan_in(MPI_Comm comm, const dml__part_t *mine, dml__part_t *all,
                                const dml__fanin_t *l)
{
    const int n = (int)mine->count, k = mine->topk;
    dml_status_t st;
    int rc;

    if ((st = dml__gather(comm, mine->id, n, all->id, l->cnt, l->dsp, MPI_UINT64_T)) != DML_OK ||
        (st = dml__gather(comm, mine->label, n, all->label, l->cnt, l->dsp, MPI_INT32_T)) !=
            DML_OK ||
        (st = dml__gather(comm, mine->pred, n, all->pred, l->cnt, l->dsp, MPI_INT32_T)) != DML_OK ||
        (st = dml__gather(comm, mine->tk_class, n * k, all->tk_class, l->cntk, l->dspk,
                          MPI_INT32_T)) != DML_OK ||
        (st = dml__gather(comm, mine->tk_prob, n * k, all->tk_prob, l->cntk, l->dspk, MPI_FLOAT)) !=
            DML_OK ||
        (st = dml__gather(comm, mine->lat, (int)mine->nb, all->lat, l->cntb, l->dspb,
                          MPI_DOUBLE)) != DML_OK)
        return st;
    rc = MPI_Reduce(mine->hist, all->hist, (int)(mine->features * DML_DATASET_HIST_BINS),
                    MPI_UINT64_T, MPI_SUM, 0, comm);
    return rc == MPI_SUCCESS ? DML_OK : dml_mpi_error(rc, "summing the histograms");
}

dml_status_t dml_infer_run(MPI_Comm comm, const dml_infer_config_t *cfg_in, dml_infer_result_t *res)
{
    dml_infer_config_t c = *cfg_in, *cfg = &c;
    dml_model_t *model = NULL;
    dml_model_info_t mi;
    dml_dataset_t *ds = NULL;
    dml_infer_manifest_t man;
    dml__part_t mine, all;
    dml__fanin_t fan = {NULL, NULL, NULL, NULL, NULL, NULL};
    uint64_t first = 0, count = 0, my0, myn;
    int rank, size, skip = 0;
    dml_device_kind_t kind = DML_DEVICE_CPU;
    double t0 = dml__now();
    dml_status_t st;

    memset(res, 0, sizeof(*res));
    memset(&mi, 0, sizeof(mi));
    memset(&mine, 0, sizeof(mine));
    memset(&all, 0, sizeof(all));
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);

    if ((st = dml__open_inputs(comm, rank, cfg, &model, &mi, &ds)) != DML_OK)
        goto out;
    if ((st = dml__place(comm, cfg, model, &kind, res->device, sizeof(res->device))) != DML_OK)
        goto out;
    dml_infer_slice(dml_dataset_samples(ds), (uint64_t)cfg->batch, cfg->tasks, cfg->task, &first,
                    &count);
    res->batch = cfg->batch;
    res->first = first;
    res->count = count;
    snprintf(res->model_hash, sizeof(res->model_hash), "%s", mi.hash);
    snprintf(res->input_hash, sizeof(res->input_hash), "%s", dml_dataset_content_hash(ds));
    dml_infer_part_path(cfg->out, cfg->task, res->part, sizeof(res->part));

    /* The run's manifest, and whether this part is done already. */
    dml__manifest_fill(cfg, &mi, ds, kind, &man);
    if ((st = dml__part_settle(comm, rank, cfg, &man, res, &skip)) != DML_OK)
        goto out;
    if (skip) {
        res->skipped = 1;
        goto out;
    }
    if (cfg->verify && count > 0 &&
        (st = dml__verify_slice(comm, rank, size, ds, first, count)) != DML_OK)
        goto out;

    /* This rank's share of the part, in order: whole batches (the part
     * starts on a batch boundary). */
    dml_infer_slice(count, (uint64_t)cfg->batch, (uint32_t)size, (uint32_t)rank, &my0, &myn);
    st = dml__part_alloc(&mine, myn, cfg->topk, mi.features,
                         (myn + (uint64_t)cfg->batch - 1) / (uint64_t)cfg->batch);
    if (st == DML_OK)
        st = dml__compute(ds, model, &mi, cfg, first + my0, &mine);
    if (st == DML_OK && rank == 0)
        st = dml__fanin_layout(cfg, size, count, mi.features, &fan, &all);
    if ((st = dml_mpi_agree(comm, st, NULL)) != DML_OK)
        goto out;
    if ((st = dml__fan_in(comm, &mine, &all, &fan)) != DML_OK)
        goto out;
    if (rank == 0) {
        all.task = cfg->task, all.tasks = cfg->tasks, all.first = first;
        all.ranks = size, all.batch = cfg->batch;
        all.seconds = dml__now() - t0;
        snprintf(all.model_hash, sizeof(all.model_hash), "%s", mi.hash);
        snprintf(all.input_hash, sizeof(all.input_hash), "%s", dml_dataset_content_hash(ds));
        st = dml__part_write(cfg->out, &all, cfg);
    }
    st = dml_mpi_agree(comm, st, NULL);
out:
    res->seconds = dml__now() - t0;
    res->samples_per_s = res->skipped || res->seconds <= 0 ? 0 : (double)count / res->seconds;
    free(fan.cnt);
    dml__part_free(&mine);
    dml__part_free(&all);
    dml_dataset_close(ds);
    dml_model_free(model);
    dml_model_info_free(&mi);
    return st;
}
