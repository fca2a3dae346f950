/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * train.c: the training loop (see dml_train.h): epochs of data-parallel steps
 * over the loader's batches, gradient accumulation, clipping after the
 * reduction, the learning-rate schedule, a per-step agreement on metrics
 * (which also stops every rank together when the loss stops being finite),
 * evaluation after each epoch, and the model file.
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_crc.h"
#include "dml_h5.h"
#include "dml_mpi.h"
#include "dml_train.h"
#include "train_private.h"
#include "dml_clock.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct dml_trainer {
    MPI_Comm comm;
    int rank, size;
    dml_trainer_config_t cfg;
    dml_dataset_t *train, *test;
    dml_loader_t *ld, *eval_ld;
    dml_model_t *m;
    dml_opt_t *opt;
    dml_dp_t *dp;
    char device_note[512]; /* auto stayed on the CPU: why */
    uint64_t step, epoch;
    double ep[3];    /* this epoch so far: loss sum, correct, samples */
    double *history; /* per finished epoch: DML__HIST_COLS values */
    uint64_t nhistory;
    double sync_seconds;                 /* in the per-step metrics allreduce */
    double data_reported, comm_reported; /* totals at the last report */
    double last_ckpt;                    /* when the last checkpoint was taken (monotonic) */
    dml__watchdog_t *wd;                 /* while dml_trainer_run trains, if asked */
};

/* Progress, for the stall watchdog: before and after each collective. */
static inline void dml__beat(dml_trainer_t *tr)
{
    dml__watchdog_beat(tr->wd, tr->step, DML__WD_STEP);
}

/* A row of the metrics history: epoch, step, loss, accuracy, test loss, test
 * accuracy (NaN without a test set), samples per second. */
#define DML__HIST_COLS 7

void dml_trainer_config_init(dml_trainer_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->batch = 128;
    c->accum = 1;
    c->epochs = 10;
    dml_opt_config_init(&c->opt, DML_OPT_SGD);
    c->lr.kind = DML_LR_CONSTANT;
    c->lr.base = 0.05f;
    c->lr.gamma = 0.1f;
    c->shuffle = DML_SHUFFLE_FULL;
    c->cache = DML_CACHE_AUTO;
    c->prefetch = 4;
    c->log_every = 100;
    c->ckpt_keep = 3;
    dml_ckpt_config_init(&c->ckpt);
    c->deadline_margin = 60;
    c->stall_floor = 60;
}

void dml_trainer_free(dml_trainer_t *tr)
{
    if (tr == NULL)
        return;
    dml_dp_free(tr->dp);
    dml_loader_destroy(tr->eval_ld);
    dml_loader_destroy(tr->ld);
    dml_opt_free(tr->opt);
    dml_model_free(tr->m);
    dml_dataset_close(tr->test);
    dml_dataset_close(tr->train);
    free(tr->history);
    if (tr->comm != MPI_COMM_NULL)
        MPI_Comm_free(&tr->comm);
    free(tr);
}

dml_dp_mode_t dml_trainer_grad_reduce(const dml_trainer_t *tr)
{
    return dml_dp_mode(tr->dp);
}
dml_model_t *dml_trainer_model(dml_trainer_t *tr)
{
    return tr->m;
}
const char *dml_trainer_device_note(const dml_trainer_t *tr)
{
    return tr->device_note;
}

/* Puts the model on cfg.device; local: this rank's number on its node. */
static dml_status_t dml__place(dml_trainer_t *tr, int local)
{
    const char *want = tr->cfg.device;
    dml_device_t dev;
    dml_status_t st;

    if (want == NULL || strcmp(want, "cpu") == 0)
        return DML_OK;
    if ((st = dml_device_select(want, local, &dev)) != DML_OK || dev.kind == DML_DEVICE_CPU)
        return st;
    st = dml_model_set_device(tr->m, &dev);
    if (st == DML_ERR_UNSUPPORTED && strcmp(want, "auto") == 0) {
        /* A network the GPU path does not run yet stays on the CPU. */
        snprintf(tr->device_note, sizeof(tr->device_note), "%s", dml_error_message());
        dml_error_clear();
        return DML_OK;
    }
    return st;
}

void dml_trainer_progress(const dml_trainer_t *tr, uint64_t *step, uint64_t *epoch)
{
    *step = tr->step;
    *epoch = tr->epoch;
}

/* Local checks of the configuration against the datasets; binds the model
 * to the training data's sample shape. */
static dml_status_t dml__check(dml_trainer_t *tr)
{
    dml_trainer_config_t *c = &tr->cfg;
    const dml_schema_t *s = dml_dataset_schema(tr->train);
    dml_status_t st;

    if (c->batch < 1 || c->accum < 1 || c->epochs < 1)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "batch (%d), accumulation (%d) and epochs (%d) "
                             "must be at least 1",
                             c->batch, c->accum, c->epochs);
    if (!(c->lr.base > 0) || !isfinite(c->lr.base))
        return dml_error_set(DML_ERR_INVALID_ARG, "learning rate %g: must be positive",
                             (double)c->lr.base);
    if (c->clip < 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "gradient clipping norm %g: must be >= 0",
                             c->clip);
    if ((st = dml_model_spec_bind(&c->spec, s->rank, s->shape, s->num_classes)) != DML_OK)
        return dml_error_set(st, "%s: %s", c->train_dir, dml_error_message());
    if (tr->test != NULL) {
        const dml_schema_t *t = dml_dataset_schema(tr->test);
        int same = t->rank == s->rank;
        for (int i = 0; same && i < s->rank; i++)
            same = t->shape[i] == s->shape[i];
        if ((!same && !c->spec.mlp) || dml_schema_features(t) != dml_schema_features(s) ||
            t->num_classes > (uint32_t)c->spec.classes)
            return dml_error_set(
                DML_ERR_MISMATCH,
                "%s: samples of %llu features (rank %d) and %u "
                "classes do not fit the model trained on %s (%llu features, rank "
                "%d; %d outputs)",
                c->test_dir, (unsigned long long)dml_schema_features(t), t->rank, t->num_classes,
                c->train_dir, (unsigned long long)dml_schema_features(s), s->rank, c->spec.classes);
    }
    return DML_OK;
}

dml_status_t dml_trainer_create(MPI_Comm comm, const dml_trainer_config_t *cfg,
                                dml_trainer_t **tr_out)
{
    dml_trainer_t *tr = calloc(1, sizeof(*tr));
    dml_loader_config_t lc;
    dml_status_t st = DML_OK;
    MPI_Comm node;
    int local = 0;

    if (tr == NULL)
        return dml_mpi_agree(comm, dml_error_set(DML_ERR_NO_MEMORY, "no memory"), NULL);
    tr->comm = MPI_COMM_NULL;
    if (MPI_Comm_dup(comm, &tr->comm) != MPI_SUCCESS) {
        free(tr);
        return dml_error_set(DML_ERR_MPI, "MPI_Comm_dup for the trainer failed");
    }
    MPI_Comm_rank(tr->comm, &tr->rank);
    MPI_Comm_size(tr->comm, &tr->size);
    tr->cfg = *cfg;

    st = dml_dataset_open(cfg->train_dir, &tr->train);
    if (st == DML_OK && cfg->test_dir != NULL)
        st = dml_dataset_open(cfg->test_dir, &tr->test);
    if (st == DML_OK)
        st = dml__check(tr);
    if (st == DML_OK)
        st = dml_model_create(&tr->cfg.spec, cfg->seed, cfg->batch, &tr->m);
    /* The rank's number on its node chooses its GPU; collective, so every
     * rank asks, whatever failed before. */
    if (MPI_Comm_split_type(tr->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
    }
    if (st == DML_OK)
        st = dml__place(tr, local);
    if (st == DML_OK)
        st = dml_opt_create(&cfg->opt, dml_model_nparams(tr->m), &tr->opt);
    st = dml_mpi_agree(tr->comm, st, NULL);
    if (st != DML_OK)
        goto err;

    dml_loader_config_init(&lc);
    lc.batch = (uint64_t)cfg->batch;
    lc.seed = cfg->seed;
    lc.shuffle = cfg->shuffle;
    lc.cache = cfg->cache;
    lc.prefetch = cfg->prefetch;
    st = dml_loader_create(tr->train, tr->comm, &lc, &tr->ld);
    if (st != DML_OK)
        goto err;
    if (tr->test != NULL) {
        /* Evaluation sees the test data normalised as training saw its data. */
        lc.shuffle = DML_SHUFFLE_NONE;
        lc.norm_stats = dml_dataset_stats(tr->train);
        st = dml_loader_create(tr->test, tr->comm, &lc, &tr->eval_ld);
        if (st != DML_OK)
            goto err;
    }
    st = dml_dp_create(tr->comm, tr->m, cfg->grad_reduce, cfg->bucket_bytes, &tr->dp);
    if (st != DML_OK)
        goto err;
    /* A cosine schedule without a length decays over the whole run. */
    if (tr->cfg.lr.kind == DML_LR_COSINE && tr->cfg.lr.total == 0) {
        uint64_t per =
            (dml_loader_steps_per_epoch(tr->ld) + (uint64_t)cfg->accum - 1) / (uint64_t)cfg->accum;
        uint64_t all = per * (uint64_t)cfg->epochs;
        tr->cfg.lr.total = all > tr->cfg.lr.warmup ? all - tr->cfg.lr.warmup : 1;
    }
    *tr_out = tr;
    return DML_OK;
err:
    dml_trainer_free(tr);
    return st;
}

/* One pass over the test set; sums over ranks. */
static dml_status_t dml__evaluate(dml_trainer_t *tr, double *loss, double *acc)
{
    const dml_batch_t *b;
    double sums[3] = {0, 0, 0};
    dml_status_t st;

    for (;;) {
        double l = 0;
        int c = 0;
        st = dml_loader_next(tr->eval_ld, &b);
        if (st == DML_OK && b->n > 0)
            st = dml_model_eval(tr->m, b->x, b->y, (int)b->n, NULL, &l, &c);
        dml__beat(tr);
        st = dml_mpi_agree(tr->comm, st, NULL);
        if (st != DML_OK)
            return st;
        sums[0] += l;
        sums[1] += c;
        sums[2] += (double)b->n;
        if (b->epoch_end)
            break;
    }
    MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, tr->comm);
    *loss = sums[0] / sums[2];
    *acc = sums[1] / sums[2];
    return DML_OK;
}

static dml_status_t dml__history_add(dml_trainer_t *tr, const dml_progress_t *p)
{
    double *h = realloc(tr->history, sizeof(double) * DML__HIST_COLS * (tr->nhistory + 1)), *r;

    if (h == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the metrics history");
    tr->history = h;
    r = h + DML__HIST_COLS * tr->nhistory++;
    r[0] = (double)p->epoch;
    r[1] = (double)p->step;
    r[2] = p->loss;
    r[3] = p->accuracy;
    r[4] = p->has_test ? p->test_loss : NAN;
    r[5] = p->has_test ? p->test_accuracy : NAN;
    r[6] = p->samples_per_s;
    return DML_OK;
}

/* A checkpoint, reported through the progress callback. */
static dml_status_t dml__checkpoint_now(dml_trainer_t *tr, const char *reason, dml_progress_cb_t cb,
                                        void *arg)
{
    char path[4096];
    double t0 = dml__now();
    dml_status_t st;

    dml__beat(tr);
    st = dml_trainer_checkpoint(tr, path, sizeof(path));
    dml__watchdog_beat(tr->wd, tr->step, DML__WD_RARE);

    tr->last_ckpt = dml__now();
    if (st == DML_OK && cb != NULL) {
        dml_progress_t p;
        memset(&p, 0, sizeof(p));
        p.epoch = tr->epoch;
        p.step = tr->step;
        p.checkpoint = path;
        p.checkpoint_reason = reason;
        p.checkpoint_seconds = tr->last_ckpt - t0;
        st = dml_mpi_agree(tr->comm, cb(arg, &p), NULL);
    }
    return st;
}

static dml_status_t dml__run(dml_trainer_t *tr, dml_progress_cb_t cb, void *arg)
{
    const dml_trainer_config_t *c = &tr->cfg;
    double win[3] = {0, 0, 0}; /* loss sum, correct, samples since the last report */
    double t_win = dml__now(), t_ep = t_win, good_loss = 0, good_acc = 0;
    uint64_t good_step = 0;
    dml_status_t st = DML_OK;

    tr->last_ckpt = t_win;
    while (tr->epoch < (uint64_t)c->epochs) {
        const dml_batch_t *b = NULL;
        /* loss sum, correct, samples, then the requests to stop: a signal
         * seen on any rank, a checkpoint due by time, the deadline near (the
         * last two by rank 0's clock, so that every rank decides alike) */
        double local[6] = {0, 0, 0, 0, 0, 0}, global[6], t0;
        int micro = 0, last = 0;
        float lr;

        dml_model_zero_grads(tr->m);
        while (!last) {
            double l = 0;
            int corr = 0;
            dml__beat(tr);
            st = dml_mpi_agree(tr->comm, dml_loader_next(tr->ld, &b), NULL);
            if (st != DML_OK)
                return st;
            last = micro + 1 == c->accum || b->epoch_end;
            dml__beat(tr);
            st = dml_dp_step(tr->dp, b->x, b->y, (int)b->n, b->global_n,
                             c->seed * 0x9e3779b97f4a7c15ULL + tr->step * (uint64_t)c->accum +
                                 (uint64_t)micro,
                             last, &l, &corr);
            if (st != DML_OK)
                return st;
            local[0] += l;
            local[1] += corr;
            local[2] += (double)b->n;
            micro++;
        }
        lr = dml_lr_at(&c->lr, tr->step);
        dml__beat(tr);
        st = dml_dp_update(tr->dp, tr->opt, lr, micro, c->clip, NULL);
        if (st != DML_OK)
            return st;
        tr->step++;
        dml__beat(tr);
        if (c->on_step != NULL) {
            c->on_step(c->on_step_arg, tr->step);
            /* the caller's time (a test's hold), not a step's */
            dml__watchdog_beat(tr->wd, tr->step, DML__WD_CALLER);
        }

        /* Every rank learns the step's loss (metrics, and a common stop on
         * NaN) and whether anyone asked to stop. */
        t0 = dml__now();
        if (c->stop != NULL && *c->stop != 0)
            local[3] = 1;
        if (tr->rank == 0 && c->ckpt_dir != NULL && c->ckpt_seconds > 0 &&
            t0 - tr->last_ckpt >= c->ckpt_seconds)
            local[4] = 1;
        if (tr->rank == 0 && c->ckpt_dir != NULL && c->deadline > 0 &&
            (double)time(NULL) + c->deadline_margin >= c->deadline)
            local[5] = 1;
        dml__beat(tr);
        MPI_Allreduce(local, global, 6, MPI_DOUBLE, MPI_SUM, tr->comm);
        dml__beat(tr);
        tr->sync_seconds += dml__now() - t0;
        if (!isfinite(global[0]))
            return dml_error_set(DML_ERR_NUMERIC,
                                 "the training loss became %g at step %llu (epoch "
                                 "%llu); last good: step %llu, loss %.4f, accuracy %.4f",
                                 global[0], (unsigned long long)tr->step,
                                 (unsigned long long)tr->epoch + 1, (unsigned long long)good_step,
                                 good_loss, good_acc);
        good_step = tr->step;
        good_loss = global[0] / global[2];
        good_acc = global[1] / global[2];
        win[0] += global[0];
        win[1] += global[1];
        win[2] += global[2];
        tr->ep[0] += global[0];
        tr->ep[1] += global[1];
        tr->ep[2] += global[2];

        if (b->epoch_end || (c->log_every > 0 && tr->step % (uint64_t)c->log_every == 0)) {
            dml_progress_t p;
            double now = dml__now(), dt = now - t_win;
            double data = dml_loader_wait_seconds(tr->ld);
            double comm = dml_dp_wait_seconds(tr->dp) + tr->sync_seconds;
            memset(&p, 0, sizeof(p));
            p.epoch = tr->epoch + 1;
            p.step = tr->step;
            p.lr = lr;
            if (b->epoch_end) {
                tr->epoch++;
                p.is_epoch = 1;
                p.loss = tr->ep[0] / tr->ep[2];
                p.accuracy = tr->ep[1] / tr->ep[2];
                p.samples_per_s = tr->ep[2] / (now - t_ep);
                if (tr->eval_ld != NULL) {
                    st = dml__evaluate(tr, &p.test_loss, &p.test_accuracy);
                    if (st != DML_OK)
                        return st;
                    p.has_test = 1;
                }
                if ((st = dml__history_add(tr, &p)) != DML_OK)
                    return st;
            } else {
                p.loss = win[0] / win[2];
                p.accuracy = win[1] / win[2];
                p.samples_per_s = win[2] / dt;
            }
            p.data = dt > 0 ? (data - tr->data_reported) / dt : 0;
            p.comm = dt > 0 ? (comm - tr->comm_reported) / dt : 0;
            p.compute = 1 - p.data - p.comm;
            tr->data_reported = data;
            tr->comm_reported = comm;
            if (cb != NULL && (st = dml_mpi_agree(tr->comm, cb(arg, &p), NULL)) != DML_OK)
                return st;
            memset(win, 0, sizeof(win));
            t_win = dml__now();
            if (b->epoch_end) {
                memset(tr->ep, 0, sizeof(tr->ep));
                t_ep = t_win;
            }
        }

        if (c->ckpt_dir == NULL)
            continue;
        if (global[3] > 0 || global[5] > 0) {
            const char *why = global[3] > 0 ? "stop requested (signal)" : "time limit near";
            st = dml__checkpoint_now(tr, why, cb, arg);
            if (st != DML_OK)
                return st;
            return dml_error_set(DML_ERR_INTERRUPTED,
                                 "%s: stopped at step %llu (epoch %llu) after "
                                 "a checkpoint in %s",
                                 why, (unsigned long long)tr->step,
                                 (unsigned long long)tr->epoch + 1, c->ckpt_dir);
        }
        if (tr->epoch == (uint64_t)c->epochs) {
            st = dml__checkpoint_now(tr, "end of training", cb, arg);
        } else if (c->ckpt_every > 0 && tr->step % c->ckpt_every == 0) {
            st = dml__checkpoint_now(tr, "every N steps", cb, arg);
        } else if (global[4] > 0) {
            st = dml__checkpoint_now(tr, "every T seconds", cb, arg);
        }
        if (st != DML_OK)
            return st;
    }
    return DML_OK;
}

dml_status_t dml_trainer_run(dml_trainer_t *tr, dml_progress_cb_t cb, void *arg)
{
    dml_status_t st = DML_OK;

    if (tr->cfg.stall_timeout != 0 && tr->cfg.on_stall != NULL)
        st = dml__watchdog_start(tr->comm, tr->cfg.stall_timeout > 0 ? tr->cfg.stall_timeout : 0,
                                 tr->cfg.stall_floor > 0 ? tr->cfg.stall_floor : 60,
                                 tr->cfg.on_stall, tr->cfg.on_stall_arg, &tr->wd);
    if (st == DML_OK)
        st = dml__run(tr, cb, arg);
    dml__watchdog_stop(tr->wd);
    tr->wd = NULL;
    return st;
}

/* What the model file says of the training: the data (its path, content
 * hash, sample shape, classes and statistics, which batch inference
 * normalises with and measures drift against) and how far it went. Points
 * into the dataset: not to be freed. */
static void dml__model_info(const dml_trainer_t *tr, dml_model_info_t *info)
{
    const dml_schema_t *s = dml_dataset_schema(tr->train);

    memset(info, 0, sizeof(*info));
    snprintf(info->dataset, sizeof(info->dataset), "%s", tr->cfg.train_dir);
    snprintf(info->dataset_hash, sizeof(info->dataset_hash), "%s",
             dml_dataset_content_hash(tr->train));
    snprintf(info->normalisation, sizeof(info->normalisation), "global");
    info->feature_rank = s->rank;
    memcpy(info->feature_shape, s->shape, sizeof(info->feature_shape));
    info->data_classes = s->num_classes;
    info->class_names = s->class_names;
    info->stats = *dml_dataset_stats(tr->train);
    info->steps = tr->step;
    info->epochs = tr->epoch;
}

dml_status_t dml_trainer_save_model(dml_trainer_t *tr, const char *path)
{
    dml_status_t st = DML_OK;

    if (tr->rank == 0) {
        dml_model_info_t info;
        dml__model_info(tr, &info);
        /* The loader's prefetch thread reads HDF5 too: one caller at a time. */
        dml_io_hdf5_lock();
        st = dml_model_save(path, tr->m, &info);
        dml_io_hdf5_unlock();
    }
    return dml_mpi_agree(tr->comm, st, NULL);
}

dml_status_t dml_trainer_check_output_space(dml_trainer_t *tr, const char *path)
{
    char dir[4096], *slash;
    struct statvfs vfs;
    uint64_t need = 0, have;
    dml_status_t st = DML_OK;

    if (tr->rank == 0) {
        dml_model_info_t info;
        dml__model_info(tr, &info);
        dml_io_hdf5_lock();
        st = dml_model_file_size(tr->m, &info, &need);
        dml_io_hdf5_unlock();
        snprintf(dir, sizeof(dir), "%s", path);
        slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else
            slash[slash == dir ? 1 : 0] = '\0';
        if (st == DML_OK && statvfs(dir, &vfs) == 0) {
            have = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
            if (have < need)
                st = dml_error_set(DML_ERR_IO,
                                   "%s: the model file needs %llu bytes, its file "
                                   "system (%s) has %llu free: %s",
                                   path, (unsigned long long)need, dir, (unsigned long long)have,
                                   strerror(ENOSPC));
        }
    }
    return dml_mpi_agree(tr->comm, st, NULL);
}

/* ---- checkpoints --------------------------------------------------------- */

static const char *dml__opt_name(dml_opt_type_t t)
{
    return t == DML_OPT_SGD ? "sgd" : "adamw";
}

/* The effective configuration as text, for people reading a checkpoint. */
static void dml__config_text(const dml_trainer_t *tr, char *buf, size_t len)
{
    const dml_trainer_config_t *c = &tr->cfg;
    char spec[DML_MODEL_SPEC_MAX];

    dml_model_spec_format(&c->spec, spec, sizeof(spec));
    snprintf(
        buf, len,
        "model=%s\ntrain=%s\ntest=%s\nepochs=%d\nbatch=%d\naccum=%d\nranks=%d\n"
        "optimizer=%s\nlr=%g\nmomentum=%g\nnesterov=%d\nweight_decay=%g\nbeta1=%g\n"
        "beta2=%g\neps=%g\nschedule=%s\nwarmup=%llu\nstep_every=%llu\ngamma=%g\n"
        "cosine_total=%llu\nclip=%g\nseed=%llu\nshuffle=%s\ngrad_reduce=%s\n",
        spec, c->train_dir, c->test_dir ? c->test_dir : "", c->epochs, c->batch, c->accum, tr->size,
        dml__opt_name(c->opt.type), (double)c->lr.base, (double)c->opt.momentum, c->opt.nesterov,
        (double)c->opt.weight_decay, (double)c->opt.beta1, (double)c->opt.beta2, (double)c->opt.eps,
        c->lr.kind == DML_LR_CONSTANT ? "constant"
        : c->lr.kind == DML_LR_STEP   ? "step"
                                      : "cosine",
        (unsigned long long)c->lr.warmup, (unsigned long long)c->lr.step_every, (double)c->lr.gamma,
        (unsigned long long)c->lr.total, c->clip, (unsigned long long)c->seed,
        c->shuffle == DML_SHUFFLE_FULL     ? "full"
        : c->shuffle == DML_SHUFFLE_WINDOW ? "window"
                                           : "none",
        dml_dp_mode(tr->dp) == DML_DP_SHARED ? "shared" : "allreduce");
}

/* The model's arrays in a checkpoint: every rank's collective put. */
static dml_status_t dml__put_ckpt(void *arg, int64_t loc, const char *name, int64_t type,
                                  const uint64_t dims[2], const void *data)
{
    return dml_ckpt_put(arg, loc, name, type, dims, data);
}

/* Every rank's part of writing the state into an open checkpoint. */
static dml_status_t dml__ckpt_fill(dml_trainer_t *tr, dml_ckpt_writer_t *w)
{
    hid_t f = dml_ckpt_file(w), g = -1;
    dml_loader_state_t ls;
    dml_model_info_t info;
    char spec[DML_MODEL_SPEC_MAX], text[4096], name[32];
    uint64_t dims[2] = {dml_model_nparams(tr->m), 0}, seed = tr->cfg.seed;
    int32_t batch = tr->cfg.batch, accum = tr->cfg.accum;
    dml_status_t st = DML_OK;
    int i, meta = 0;

    dml_loader_get_state(tr->ld, &ls);
    dml_model_spec_format(&tr->cfg.spec, spec, sizeof(spec));
    dml__config_text(tr, text, sizeof(text));
    /* Attributes and groups are collective: every rank, same values. */
    if (dml__h5_attr_write_str(f, "model", spec) != 0 ||
        dml__h5_attr_write_str(f, "dataset", tr->cfg.train_dir) != 0 ||
        dml__h5_attr_write_str(f, "dataset_hash", dml_dataset_content_hash(tr->train)) != 0 ||
        dml__h5_attr_write_str(f, "config", text) != 0 ||
        dml__h5_attr_write(f, "seed", H5T_NATIVE_UINT64, 1, &seed) != 0 ||
        dml__h5_attr_write(f, "epoch", H5T_NATIVE_UINT64, 1, &tr->epoch) != 0 ||
        dml__h5_attr_write(f, "batch", H5T_NATIVE_INT32, 1, &batch) != 0 ||
        dml__h5_attr_write(f, "accum", H5T_NATIVE_INT32, 1, &accum) != 0 ||
        dml__h5_attr_write(f, "loader_epoch", H5T_NATIVE_UINT64, 1, &ls.epoch) != 0 ||
        dml__h5_attr_write(f, "loader_cursor", H5T_NATIVE_UINT64, 1, &ls.cursor) != 0 ||
        dml__h5_attr_write(f, "epoch_sums", H5T_NATIVE_DOUBLE, 3, tr->ep) != 0 ||
        dml__h5_attr_write_str(f, "optimizer", dml__opt_name(tr->cfg.opt.type)) != 0 ||
        dml__h5_attr_write(f, "optimizer_steps", H5T_NATIVE_UINT64, 1, dml_opt_steps(tr->opt)) != 0)
        meta = -1;
    if (meta == 0) {
        g = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        meta = g < 0 ? -1 : 0;
    }
    st = dml_mpi_agree(tr->comm,
                       meta == 0 ? DML_OK
                                 : dml_error_set(DML_ERR_IO,
                                                 "%s: cannot write "
                                                 "the checkpoint's attributes",
                                                 tr->cfg.ckpt_dir),
                       NULL);
    /* The "model" group is a model file's root (nn/model_file.c writes it). */
    if (st == DML_OK) {
        dml__model_info(tr, &info);
        st = dml_mpi_agree(tr->comm, dml_model_write_h5(g, tr->m, &info, dml__put_ckpt, w), NULL);
    }
    if (g >= 0)
        H5Gclose(g);
    g = -1;
    if (st == DML_OK) {
        g = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        st = dml_mpi_agree(tr->comm,
                           g < 0 ? dml_error_set(DML_ERR_IO,
                                                 "%s: cannot write the "
                                                 "checkpoint",
                                                 tr->cfg.ckpt_dir)
                                 : DML_OK,
                           NULL);
    }
    if (st == DML_OK)
        st = dml_dp_gather_state(tr->dp, tr->opt);
    for (i = 0; st == DML_OK && i < dml_opt_nbufs(tr->opt); i++) {
        snprintf(name, sizeof(name), "state%d", i);
        st = dml_ckpt_put(w, g, name, H5T_NATIVE_FLOAT, dims, dml_opt_buf(tr->opt, i));
    }
    if (st == DML_OK) {
        uint64_t hd[2] = {tr->nhistory, DML__HIST_COLS};
        st = dml_ckpt_put(w, f, "metrics", H5T_NATIVE_DOUBLE, hd, tr->history);
    }
    if (g >= 0)
        H5Gclose(g);
    return st;
}

dml_status_t dml_trainer_checkpoint(dml_trainer_t *tr, char *path_out, size_t len)
{
    dml_ckpt_writer_t *w = NULL;
    dml_status_t st;

    if (tr->cfg.ckpt_dir == NULL)
        return dml_error_set(DML_ERR_INVALID_ARG, "no checkpoint directory configured");
    /* The loader's prefetch thread reads HDF5 too. Its reads are
     * independent (no other rank waits on them), so holding the lock over
     * the checkpoint's collectives cannot deadlock across ranks. */
    dml_io_hdf5_lock();
    st = dml_ckpt_begin(tr->comm, tr->cfg.ckpt_dir, tr->step,
                        dml_model_nparams(tr->m) * sizeof(float) *
                                (1 + (uint64_t)dml_opt_nbufs(tr->opt)) +
                            dml_model_nbuffers(tr->m) * sizeof(float) +
                            tr->nhistory * DML__HIST_COLS * sizeof(double),
                        &tr->cfg.ckpt, &w);
    if (st == DML_OK) {
        st = dml__ckpt_fill(tr, w);
        if (st == DML_OK)
            st = dml_ckpt_commit(w, tr->cfg.ckpt_keep, path_out, len);
        else
            dml_ckpt_abort(w);
    }
    dml_io_hdf5_unlock();
    return st;
}

/* One rank's attempt at one checkpoint; nothing of tr changes unless it all
 * loads and fits. */
typedef struct {
    float *params, *bufs, **opt;
    double *history;
    uint64_t nhistory, step, epoch, opt_steps, seed;
    dml_loader_state_t ls;
    double ep[3];
    int world;
} dml__loaded_t;

static void dml__loaded_free(dml__loaded_t *l, int nbufs)
{
    int i;
    free(l->params);
    free(l->bufs);
    for (i = 0; l->opt && i < nbufs; i++)
        free(l->opt[i]);
    free(l->opt);
    free(l->history);
    memset(l, 0, sizeof(*l));
}

static dml_status_t dml__load_one(dml_trainer_t *tr, const char *path, dml__loaded_t *l)
{
    const size_t n = dml_model_nparams(tr->m), nbuf = dml_model_nbuffers(tr->m);
    const int nb = dml_opt_nbufs(tr->opt);
    char spec[DML_MODEL_SPEC_MAX], want[DML_MODEL_SPEC_MAX], hash[128] = "", opt[16] = "", name[32];
    hid_t f = -1, space, d;
    hsize_t hd[2] = {0, 0};
    dml_status_t st;
    int i;

    memset(l, 0, sizeof(*l));
    dml_model_spec_format(&tr->cfg.spec, want, sizeof(want));
    if ((st = dml_ckpt_open(path, &f)) != DML_OK)
        return st;
    if (dml__h5_attr_read_str(f, "model", spec, sizeof(spec)) != 0 ||
        dml__h5_attr_read_str(f, "dataset_hash", hash, sizeof(hash)) != 0 ||
        dml__h5_attr_read_str(f, "optimizer", opt, sizeof(opt)) != 0 ||
        dml__h5_attr_read(f, "step", H5T_NATIVE_UINT64, 1, &l->step) != 0 ||
        dml__h5_attr_read(f, "epoch", H5T_NATIVE_UINT64, 1, &l->epoch) != 0 ||
        dml__h5_attr_read(f, "seed", H5T_NATIVE_UINT64, 1, &l->seed) != 0 ||
        dml__h5_attr_read(f, "world_size", H5T_NATIVE_INT32, 1, &l->world) != 0 ||
        dml__h5_attr_read(f, "loader_epoch", H5T_NATIVE_UINT64, 1, &l->ls.epoch) != 0 ||
        dml__h5_attr_read(f, "loader_cursor", H5T_NATIVE_UINT64, 1, &l->ls.cursor) != 0 ||
        dml__h5_attr_read(f, "epoch_sums", H5T_NATIVE_DOUBLE, 3, l->ep) != 0 ||
        dml__h5_attr_read(f, "optimizer_steps", H5T_NATIVE_UINT64, 1, &l->opt_steps) != 0) {
        st = dml_error_set(DML_ERR_FORMAT, "%s: a training state attribute is missing", path);
        goto out;
    }
    if (strcmp(spec, want) != 0) {
        st = dml_error_set(DML_ERR_MISMATCH, "%s: saved for model %s, this run trains %s", path,
                           spec, want);
        goto out;
    }
    if (strcmp(hash, dml_dataset_content_hash(tr->train)) != 0) {
        st = dml_error_set(DML_ERR_MISMATCH,
                           "%s: saved for another training dataset (content "
                           "hash %.16s..., %s has %.16s...)",
                           path, hash, tr->cfg.train_dir, dml_dataset_content_hash(tr->train));
        goto out;
    }
    if (l->seed != tr->cfg.seed || strcmp(opt, dml__opt_name(tr->cfg.opt.type)) != 0) {
        st = dml_error_set(DML_ERR_MISMATCH,
                           "%s: saved with seed %llu and optimizer %s, this run "
                           "uses seed %llu and %s",
                           path, (unsigned long long)l->seed, opt, (unsigned long long)tr->cfg.seed,
                           dml__opt_name(tr->cfg.opt.type));
        goto out;
    }
    l->ls.seed = l->seed;
    l->params = malloc(n * sizeof(float));
    l->opt = calloc((size_t)nb + 1, sizeof(float *));
    if (l->params == NULL || l->opt == NULL) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
        goto out;
    }
    if ((st = dml_ckpt_get(f, "model/weights", H5T_NATIVE_FLOAT, n, l->params)) != DML_OK)
        goto out;
    if (nbuf > 0) {
        if ((l->bufs = malloc(nbuf * sizeof(float))) == NULL) {
            st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
            goto out;
        }
        if ((st = dml_ckpt_get(f, "model/buffers", H5T_NATIVE_FLOAT, nbuf, l->bufs)) != DML_OK)
            goto out;
    }
    for (i = 0; i < nb; i++) {
        snprintf(name, sizeof(name), "optimizer/state%d", i);
        if ((l->opt[i] = malloc(n * sizeof(float))) == NULL) {
            st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
            goto out;
        }
        if ((st = dml_ckpt_get(f, name, H5T_NATIVE_FLOAT, n, l->opt[i])) != DML_OK)
            goto out;
    }
    {
        dml__h5_quiet_t q;
        dml__h5_quiet_begin(&q);
        d = H5Dopen2(f, "metrics", H5P_DEFAULT);
        space = d >= 0 ? H5Dget_space(d) : -1;
        if (space < 0 || H5Sget_simple_extent_ndims(space) != 2 ||
            H5Sget_simple_extent_dims(space, hd, NULL) < 0 || hd[1] != DML__HIST_COLS)
            st = dml_error_set(DML_ERR_FORMAT, "%s: no metrics history of %d columns", path,
                               DML__HIST_COLS);
        if (space >= 0)
            H5Sclose(space);
        if (d >= 0)
            H5Dclose(d);
        dml__h5_quiet_end(&q);
        if (st != DML_OK)
            goto out;
    }
    l->nhistory = hd[0];
    if ((l->history = malloc(sizeof(double) * DML__HIST_COLS * (hd[0] + 1))) == NULL) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
        goto out;
    }
    st = dml_ckpt_get(f, "metrics", H5T_NATIVE_DOUBLE, hd[0] * DML__HIST_COLS, l->history);
out : {
    dml__h5_quiet_t q;
    dml__h5_quiet_begin(&q);
    H5Fclose(f);
    dml__h5_quiet_end(&q);
}
    if (st != DML_OK)
        dml__loaded_free(l, nb);
    return st;
}

dml_status_t dml_trainer_resume(dml_trainer_t *tr, const char *from, dml_skip_cb_t skip, void *arg,
                                dml_resume_info_t *info)
{
    /* The run's own checkpoint directory may not exist yet; anything else
     * named to resume from must. */
    const int dir_may_be_new = tr->cfg.ckpt_dir != NULL && strcmp(from, tr->cfg.ckpt_dir) == 0;
    dml_ckpt_entry_t *e = NULL, one;
    size_t n = 0, i;
    struct stat sb;
    char skipped[2048] = "";
    dml_status_t st = DML_OK;
    const int nb = dml_opt_nbufs(tr->opt);

    memset(info, 0, sizeof(*info));
    /* A file names one checkpoint; a directory holds many. Every rank looks
     * for itself (the directory is shared) and the answers are agreed on. */
    if (stat(from, &sb) == 0 && S_ISREG(sb.st_mode)) {
        memset(&one, 0, sizeof(one));
        snprintf(one.path, sizeof(one.path), "%s", from);
        e = &one;
        n = 1;
    } else if (stat(from, &sb) != 0 && (errno != ENOENT || !dir_may_be_new)) {
        st = dml_error_set_errno(errno, "%s: cannot resume from it", from);
    } else {
        st = dml_ckpt_list(from, &e, &n);
    }
    {
        unsigned long long mine = n, most = 0;
        st = dml_mpi_agree(tr->comm, st, NULL);
        MPI_Allreduce(&mine, &most, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, tr->comm);
        if (st == DML_OK && mine != most)
            st = dml_error_set(DML_ERR_NOT_FOUND,
                               "%s: this rank sees %llu checkpoints, another "
                               "%llu: is the directory on a shared file system?",
                               from, mine, most);
        st = dml_mpi_agree(tr->comm, st, NULL);
        if (st != DML_OK)
            goto out;
    }
    for (i = 0; i < n; i++) {
        dml__loaded_t l;
        /* Everything a resume reads is checked before it is used: every
         * array's checksum (those the resume does not read too) and the
         * attributes'. A committed checkpoint never changes, so rank 0's
         * answer holds for every rank; they then read what they need. */
        dml_io_hdf5_lock();
        st = tr->rank == 0 ? dml_ckpt_verify(e[i].path) : DML_OK;
        dml_io_hdf5_unlock();
        st = dml_mpi_agree(tr->comm, st, NULL);
        if (st == DML_OK) {
            dml_io_hdf5_lock();
            st = dml__load_one(tr, e[i].path, &l);
            dml_io_hdf5_unlock();
            st = dml_mpi_agree(tr->comm, st, NULL);
        }
        if (st != DML_OK) {
            size_t used = strlen(skipped);
            if (skip != NULL)
                skip(arg, dml_error_message());
            snprintf(skipped + used, sizeof(skipped) - used, "%s%s", used ? "; " : "",
                     dml_error_message());
            continue;
        }
        /* Loaded and fitting on every rank: make it the state. */
        st = dml_dp_set_params(tr->dp, l.params);
        if (st != DML_OK) {
            dml__loaded_free(&l, nb);
            goto out;
        }
        for (int b = 0; b < nb; b++)
            memcpy(dml_opt_buf(tr->opt, b), l.opt[b], dml_model_nparams(tr->m) * sizeof(float));
        if (l.bufs != NULL)
            memcpy(dml_model_buffers(tr->m), l.bufs, dml_model_nbuffers(tr->m) * sizeof(float));
        *dml_opt_steps(tr->opt) = l.opt_steps;
        tr->step = l.step;
        tr->epoch = l.epoch;
        memcpy(tr->ep, l.ep, sizeof(tr->ep));
        free(tr->history);
        tr->history = l.history;
        tr->nhistory = l.nhistory;
        l.history = NULL;
        st = dml_loader_set_state(tr->ld, &l.ls);
        info->world_size = l.world;
        dml__loaded_free(&l, nb);
        if (st != DML_OK)
            goto out;
        info->resumed = 1;
        snprintf(info->path, sizeof(info->path), "%s", e[i].path);
        info->step = tr->step;
        info->epoch = tr->epoch;
        goto out;
    }
    if (n > 0)
        st = dml_error_set(DML_ERR_NOT_FOUND,
                           "%s: no checkpoint loads (%s); move them away, or "
                           "start a new run with --resume never (which keeps them in "
                           "%s/earlier-run-*)",
                           from, skipped, from);
out:
    if (e != &one)
        free(e);
    return st;
}
