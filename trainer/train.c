/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * train.c: the training loop (see dml_train.h): epochs of data-parallel steps
 * over the loader's batches, gradient accumulation, clipping after the
 * reduction, the learning-rate schedule, a per-step agreement on metrics
 * (which also stops every rank together when the loss stops being finite),
 * evaluation after each epoch, and the model file. What a checkpoint holds
 * of a run is train_state.c's to save and load (train_private.h); this file
 * fills a state from the trainer and adopts one loaded, and has no HDF5.
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_mpi.h"
#include "dml_train.h"
#include "train_config.h"
#include "train_private.h"
#include "dml_clock.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Sums of a stretch of training (an epoch, a report's window, a pass over
 * the test set): reduced over the ranks as three doubles. */
typedef struct {
    double loss;    /* the sum of per-sample losses */
    double correct; /* samples classified right */
    double samples;
} dml__sums_t;

static void dml__sums_add(dml__sums_t *to, const dml__sums_t *s)
{
    to->loss += s->loss;
    to->correct += s->correct;
    to->samples += s->samples;
}

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
    dml__sums_t ep;  /* this epoch so far */
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
    dml__sums_t sums = {0, 0, 0};
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
        sums.loss += l;
        sums.correct += c;
        sums.samples += (double)b->n;
        if (b->epoch_end)
            break;
    }
    MPI_Allreduce(MPI_IN_PLACE, &sums, 3, MPI_DOUBLE, MPI_SUM, tr->comm);
    *loss = sums.loss / sums.samples;
    *acc = sums.correct / sums.samples;
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

/* What one step's agreement sums over the ranks, in one MPI_Allreduce of
 * doubles: the step's sums, then the requests to stop: a signal seen on any
 * rank, a checkpoint due by time, the deadline near (the last two by rank
 * 0's clock, so that every rank decides alike). */
typedef struct {
    dml__sums_t step;
    double stop, ckpt_due, deadline_near;
} dml__step_agreement_t;
#define DML__AGREEMENT_DOUBLES (sizeof(dml__step_agreement_t) / sizeof(double))
_Static_assert(sizeof(dml__step_agreement_t) == 6 * sizeof(double),
               "the agreement is reduced as an array of doubles");

/* The loop's own bookkeeping across steps (not saved: a resumed run starts
 * a new report window). */
typedef struct {
    dml__sums_t win; /* since the last report */
    double t_win, t_ep;
    /* the last step whose loss was finite, for the message when one is not */
    uint64_t good_step;
    double good_loss, good_acc;
} dml__loop_t;

/* One optimiser step's forward and backward passes: accum micro-batches (fewer
 * at the end of an epoch), gradients accumulated; this rank's sums into s.
 * b_out: the last batch; micro_out: how many. */
static dml_status_t dml__micro_batches(dml_trainer_t *tr, dml__sums_t *s, const dml_batch_t **b_out,
                                       int *micro_out)
{
    const dml_trainer_config_t *c = &tr->cfg;
    const dml_batch_t *b = NULL;
    int micro = 0, last = 0;
    dml_status_t st;

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
        s->loss += l;
        s->correct += corr;
        s->samples += (double)b->n;
        micro++;
    }
    *b_out = b;
    *micro_out = micro;
    return DML_OK;
}

/* Every rank learns the step's loss (metrics, and a common stop on NaN) and
 * whether anyone asked to stop; the sums go to the epoch and the window. */
static dml_status_t dml__step_agree(dml_trainer_t *tr, dml__loop_t *lp,
                                    dml__step_agreement_t *local, dml__step_agreement_t *global)
{
    const dml_trainer_config_t *c = &tr->cfg;
    const double t0 = dml__now();

    if (c->stop != NULL && *c->stop != 0)
        local->stop = 1;
    if (tr->rank == 0 && c->ckpt_dir != NULL && c->ckpt_seconds > 0 &&
        t0 - tr->last_ckpt >= c->ckpt_seconds)
        local->ckpt_due = 1;
    if (tr->rank == 0 && c->ckpt_dir != NULL && c->deadline > 0 &&
        (double)time(NULL) + c->deadline_margin >= c->deadline)
        local->deadline_near = 1;
    dml__beat(tr);
    MPI_Allreduce(local, global, (int)DML__AGREEMENT_DOUBLES, MPI_DOUBLE, MPI_SUM, tr->comm);
    dml__beat(tr);
    tr->sync_seconds += dml__now() - t0;
    if (!isfinite(global->step.loss))
        return dml_error_set(DML_ERR_NUMERIC,
                             "the training loss became %g at step %llu (epoch "
                             "%llu); last good: step %llu, loss %.4f, accuracy %.4f",
                             global->step.loss, (unsigned long long)tr->step,
                             (unsigned long long)tr->epoch + 1, (unsigned long long)lp->good_step,
                             lp->good_loss, lp->good_acc);
    lp->good_step = tr->step;
    lp->good_loss = global->step.loss / global->step.samples;
    lp->good_acc = global->step.correct / global->step.samples;
    dml__sums_add(&lp->win, &global->step);
    dml__sums_add(&tr->ep, &global->step);
    return DML_OK;
}

/* The progress report, through cb: at the end of each epoch (with the
 * evaluation, and a row of the metrics history) and every log_every steps. */
static dml_status_t dml__report(dml_trainer_t *tr, dml__loop_t *lp, const dml_batch_t *b, float lr,
                                dml_progress_cb_t cb, void *arg)
{
    const dml_trainer_config_t *c = &tr->cfg;
    dml_progress_t p;
    double now, dt, data, comm;
    dml_status_t st;

    if (!b->epoch_end && !(c->log_every > 0 && tr->step % (uint64_t)c->log_every == 0))
        return DML_OK;
    now = dml__now();
    dt = now - lp->t_win;
    data = dml_loader_wait_seconds(tr->ld);
    comm = dml_dp_wait_seconds(tr->dp) + tr->sync_seconds;
    memset(&p, 0, sizeof(p));
    p.epoch = tr->epoch + 1;
    p.step = tr->step;
    p.lr = lr;
    if (b->epoch_end) {
        tr->epoch++;
        p.is_epoch = 1;
        p.loss = tr->ep.loss / tr->ep.samples;
        p.accuracy = tr->ep.correct / tr->ep.samples;
        p.samples_per_s = tr->ep.samples / (now - lp->t_ep);
        if (tr->eval_ld != NULL) {
            st = dml__evaluate(tr, &p.test_loss, &p.test_accuracy);
            if (st != DML_OK)
                return st;
            p.has_test = 1;
        }
        if ((st = dml__history_add(tr, &p)) != DML_OK)
            return st;
    } else {
        p.loss = lp->win.loss / lp->win.samples;
        p.accuracy = lp->win.correct / lp->win.samples;
        p.samples_per_s = lp->win.samples / dt;
    }
    p.data = dt > 0 ? (data - tr->data_reported) / dt : 0;
    p.comm = dt > 0 ? (comm - tr->comm_reported) / dt : 0;
    p.compute = 1 - p.data - p.comm;
    tr->data_reported = data;
    tr->comm_reported = comm;
    if (cb != NULL && (st = dml_mpi_agree(tr->comm, cb(arg, &p), NULL)) != DML_OK)
        return st;
    memset(&lp->win, 0, sizeof(lp->win));
    lp->t_win = dml__now();
    if (b->epoch_end) {
        memset(&tr->ep, 0, sizeof(tr->ep));
        lp->t_ep = lp->t_win;
    }
    return DML_OK;
}

/* The checkpoints the loop takes, by what every rank agreed on (g): on a
 * request to stop (and then it stops: DML_ERR_INTERRUPTED), at the end of
 * training, every N steps, every T seconds. */
static dml_status_t dml__checkpoint_due(dml_trainer_t *tr, const dml__step_agreement_t *g,
                                        dml_progress_cb_t cb, void *arg)
{
    const dml_trainer_config_t *c = &tr->cfg;
    dml_status_t st = DML_OK;

    if (c->ckpt_dir == NULL)
        return DML_OK;
    if (g->stop > 0 || g->deadline_near > 0) {
        const char *why = g->stop > 0 ? "stop requested (signal)" : "time limit near";
        st = dml__checkpoint_now(tr, why, cb, arg);
        if (st != DML_OK)
            return st;
        return dml_error_set(DML_ERR_INTERRUPTED,
                             "%s: stopped at step %llu (epoch %llu) after "
                             "a checkpoint in %s",
                             why, (unsigned long long)tr->step, (unsigned long long)tr->epoch + 1,
                             c->ckpt_dir);
    }
    if (tr->epoch == (uint64_t)c->epochs)
        st = dml__checkpoint_now(tr, "end of training", cb, arg);
    else if (c->ckpt_every > 0 && tr->step % c->ckpt_every == 0)
        st = dml__checkpoint_now(tr, "every N steps", cb, arg);
    else if (g->ckpt_due > 0)
        st = dml__checkpoint_now(tr, "every T seconds", cb, arg);
    return st;
}

static dml_status_t dml__run(dml_trainer_t *tr, dml_progress_cb_t cb, void *arg)
{
    const dml_trainer_config_t *c = &tr->cfg;
    dml__loop_t lp;
    dml_status_t st;

    memset(&lp, 0, sizeof(lp));
    lp.t_win = lp.t_ep = tr->last_ckpt = dml__now();
    while (tr->epoch < (uint64_t)c->epochs) {
        dml__step_agreement_t local, global;
        const dml_batch_t *b = NULL;
        int micro = 0;
        float lr;

        memset(&local, 0, sizeof(local));
        if ((st = dml__micro_batches(tr, &local.step, &b, &micro)) != DML_OK)
            return st;
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
        if ((st = dml__step_agree(tr, &lp, &local, &global)) != DML_OK ||
            (st = dml__report(tr, &lp, b, lr, cb, arg)) != DML_OK ||
            (st = dml__checkpoint_due(tr, &global, cb, arg)) != DML_OK)
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
    dml_trainer_config_t c = tr->cfg;

    c.grad_reduce = dml_dp_mode(tr->dp); /* the way chosen, not auto */
    dml__trainer_config_text(&c, tr->size, buf, len);
}

/* The trainer's state as a checkpoint holds it (train_private.h): its
 * arrays borrowed, valid while the trainer does not step. */
static void dml__state_of(dml_trainer_t *tr, dml_train_state_t *s)
{
    int i;

    memset(s, 0, sizeof(*s));
    dml_model_spec_format(&tr->cfg.spec, s->model, sizeof(s->model));
    snprintf(s->dataset, sizeof(s->dataset), "%s", tr->cfg.train_dir);
    snprintf(s->dataset_hash, sizeof(s->dataset_hash), "%s", dml_dataset_content_hash(tr->train));
    snprintf(s->optimizer, sizeof(s->optimizer), "%s", dml__opt_name(tr->cfg.opt.type));
    dml__config_text(tr, s->config, sizeof(s->config));
    s->seed = tr->cfg.seed;
    s->batch = tr->cfg.batch;
    s->accum = tr->cfg.accum;
    s->step = tr->step;
    s->epoch = tr->epoch;
    dml_loader_get_state(tr->ld, &s->loader);
    s->epoch_sums[0] = tr->ep.loss;
    s->epoch_sums[1] = tr->ep.correct;
    s->epoch_sums[2] = tr->ep.samples;
    s->opt_steps = dml_opt_steps(tr->opt);
    s->world_size = tr->size;
    s->m = tr->m;
    dml__model_info(tr, &s->info);
    s->params = dml_model_params(tr->m);
    s->buffers = dml_model_buffers(tr->m);
    s->nopt = dml_opt_nbufs(tr->opt);
    for (i = 0; i < s->nopt; i++)
        s->opt[i] = dml_opt_buf(tr->opt, i);
    s->history = tr->history;
    s->nhistory = tr->nhistory;
}

dml_status_t dml_trainer_checkpoint(dml_trainer_t *tr, char *path_out, size_t len)
{
    dml_train_state_t *s;
    dml_status_t st;

    if (tr->cfg.ckpt_dir == NULL)
        return dml_error_set(DML_ERR_INVALID_ARG, "no checkpoint directory configured");
    /* the state holds the configuration's text and the model's info: kept
     * off the stack of a loop that may run on a small one */
    s = malloc(sizeof(*s));
    st = dml_mpi_agree(
        tr->comm, s == NULL ? dml_error_set(DML_ERR_NO_MEMORY, "no memory to checkpoint") : DML_OK,
        NULL);
    if (st != DML_OK) {
        free(s);
        return st;
    }
    /* The loader's prefetch thread reads HDF5 too. Its reads are
     * independent (no other rank waits on them), so holding the lock over
     * the checkpoint's collectives cannot deadlock across ranks. */
    dml_io_hdf5_lock();
    /* each rank's slice of the optimiser's state made whole first */
    st = dml_dp_gather_state(tr->dp, tr->opt);
    if (st == DML_OK) {
        dml__state_of(tr, s);
        st = dml__train_state_save(tr->comm, s, tr->cfg.ckpt_dir, tr->cfg.ckpt_keep, &tr->cfg.ckpt,
                                   path_out, len);
    }
    dml_io_hdf5_unlock();
    free(s);
    return st;
}

/* Makes a loaded state the trainer's; collective (the parameters may be one
 * array that the node's ranks share). */
static dml_status_t dml__adopt(dml_trainer_t *tr, dml_train_state_t *s)
{
    dml_status_t st = dml_dp_set_params(tr->dp, s->params);
    int b;

    if (st != DML_OK)
        return st;
    for (b = 0; b < s->nopt; b++)
        memcpy(dml_opt_buf(tr->opt, b), s->opt[b], dml_model_nparams(tr->m) * sizeof(float));
    if (s->buffers != NULL)
        memcpy(dml_model_buffers(tr->m), s->buffers, dml_model_nbuffers(tr->m) * sizeof(float));
    dml_opt_set_steps(tr->opt, s->opt_steps);
    tr->step = s->step;
    tr->epoch = s->epoch;
    tr->ep.loss = s->epoch_sums[0];
    tr->ep.correct = s->epoch_sums[1];
    tr->ep.samples = s->epoch_sums[2];
    free(tr->history);
    tr->history = s->history;
    tr->nhistory = s->nhistory;
    s->history = NULL;
    return dml_loader_set_state(tr->ld, &s->loader);
}

/* One rank's attempt at the checkpoint at path: loaded whole, and checked
 * against this run, before anything of tr changes. */
static dml_status_t dml__load_one(dml_trainer_t *tr, const char *path, dml_train_state_t *out)
{
    dml_train_state_t *run = malloc(sizeof(*run));
    dml_status_t st;

    if (run == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
    dml__state_of(tr, run);
    dml_io_hdf5_lock();
    st = dml__train_state_load(path, run, out);
    dml_io_hdf5_unlock();
    free(run);
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
        dml_train_state_t l;
        /* Everything a resume reads is checked before it is used: every
         * array's checksum (those the resume does not read too) and the
         * attributes'. A committed checkpoint never changes, so rank 0's
         * answer holds for every rank; they then read what they need. */
        dml_io_hdf5_lock();
        st = tr->rank == 0 ? dml_ckpt_verify(e[i].path) : DML_OK;
        dml_io_hdf5_unlock();
        st = dml_mpi_agree(tr->comm, st, NULL);
        if (st == DML_OK) {
            dml_status_t mine = dml__load_one(tr, e[i].path, &l);
            st = dml_mpi_agree(tr->comm, mine, NULL);
            /* loaded here, but not on another rank */
            if (mine == DML_OK && st != DML_OK)
                dml__train_state_free(&l);
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
        st = dml__adopt(tr, &l);
        info->world_size = l.world_size;
        dml__train_state_free(&l);
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
