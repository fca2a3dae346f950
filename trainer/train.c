/*
 * train.c: the training loop (see dml_train.h): epochs of data-parallel steps
 * over the loader's batches, gradient accumulation, clipping after the
 * reduction, the learning-rate schedule, a per-step agreement on metrics
 * (which also stops every rank together when the loss stops being finite),
 * evaluation after each epoch, and the model file.
 */
#include "config.h"

#include "dml_h5util.h"
#include "dml_mpi.h"
#include "dml_train.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    uint64_t step, epoch;
    double sync_seconds;          /* in the per-step metrics allreduce */
    double data_reported, comm_reported; /* totals at the last report */
};

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
}

static double dml__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    if (tr->comm != MPI_COMM_NULL)
        MPI_Comm_free(&tr->comm);
    free(tr);
}

dml_model_t *dml_trainer_model(dml_trainer_t *tr) { return tr->m; }

/* Local checks of the configuration against the datasets. */
static dml_status_t dml__check(const dml_trainer_t *tr)
{
    const dml_trainer_config_t *c = &tr->cfg;
    const dml_schema_t *s = dml_dataset_schema(tr->train);
    const int in = c->spec.dims[0], out = c->spec.dims[c->spec.nlayers];
    uint64_t f = dml_schema_features(s);

    if (c->batch < 1 || c->accum < 1 || c->epochs < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "batch (%d), accumulation (%d) and epochs (%d) "
                             "must be at least 1", c->batch, c->accum, c->epochs);
    if (!(c->lr.base > 0) || !isfinite(c->lr.base))
        return dml_error_set(DML_ERR_INVALID_ARG, "learning rate %g: must be positive", (double)c->lr.base);
    if (c->clip < 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "gradient clipping norm %g: must be >= 0", c->clip);
    if ((uint64_t)in != f)
        return dml_error_set(DML_ERR_MISMATCH, "%s: samples have %llu features, the model's input "
                             "layer has %d", c->train_dir, (unsigned long long)f, in);
    if (s->num_classes > (uint32_t)out)
        return dml_error_set(DML_ERR_MISMATCH, "%s: labels go up to %u (%u classes), outside the "
                             "model's output layer of %d", c->train_dir, s->num_classes - 1,
                             s->num_classes, out);
    if (tr->test != NULL) {
        const dml_schema_t *t = dml_dataset_schema(tr->test);
        if (dml_schema_features(t) != f || t->num_classes > (uint32_t)out)
            return dml_error_set(DML_ERR_MISMATCH, "%s: %llu features and %u classes do not fit "
                                 "the model (%d inputs, %d outputs)", c->test_dir,
                                 (unsigned long long)dml_schema_features(t), t->num_classes, in,
                                 out);
    }
    return DML_OK;
}

dml_status_t dml_trainer_create(MPI_Comm comm, const dml_trainer_config_t *cfg,
                                dml_trainer_t **tr_out)
{
    dml_trainer_t *tr = calloc(1, sizeof(*tr));
    dml_loader_config_t lc;
    dml_status_t st = DML_OK;

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
        st = dml_model_create(&cfg->spec, cfg->seed, cfg->batch, &tr->m);
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
    st = dml_dp_create(tr->comm, tr->m, cfg->bucket_bytes, &tr->dp);
    if (st != DML_OK)
        goto err;
    /* A cosine schedule without a length decays over the whole run. */
    if (tr->cfg.lr.kind == DML_LR_COSINE && tr->cfg.lr.total == 0) {
        uint64_t per = (dml_loader_steps_per_epoch(tr->ld) + (uint64_t)cfg->accum - 1) / (uint64_t)cfg->accum;
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

dml_status_t dml_trainer_run(dml_trainer_t *tr, dml_progress_cb_t cb, void *arg)
{
    const dml_trainer_config_t *c = &tr->cfg;
    double win[3] = {0, 0, 0}, ep[3] = {0, 0, 0}; /* loss sum, correct, samples */
    double t_win = dml__now(), t_ep = t_win, good_loss = 0, good_acc = 0;
    uint64_t good_step = 0;
    dml_status_t st = DML_OK;

    while (tr->epoch < (uint64_t)c->epochs) {
        const dml_batch_t *b = NULL;
        double local[3] = {0, 0, 0}, global[3], t0;
        int micro = 0, last = 0;
        float lr;

        dml_model_zero_grads(tr->m);
        while (!last) {
            double l = 0;
            int corr = 0;
            st = dml_mpi_agree(tr->comm, dml_loader_next(tr->ld, &b), NULL);
            if (st != DML_OK)
                return st;
            last = micro + 1 == c->accum || b->epoch_end;
            st = dml_dp_step(tr->dp, b->x, b->y, (int)b->n, b->global_n,
                             c->seed * 0x9e3779b97f4a7c15ULL + tr->step * (uint64_t)c->accum + (uint64_t)micro,
                             last, &l, &corr);
            if (st != DML_OK)
                return st;
            local[0] += l;
            local[1] += corr;
            local[2] += (double)b->n;
            micro++;
        }
        if (micro > 1) {
            /* the mean over the micro-batches */
            float *g = dml_model_grads(tr->m), f = 1.0f / (float)micro;
            size_t i, n = dml_model_nparams(tr->m);
            for (i = 0; i < n; i++)
                g[i] *= f;
        }
        if (c->clip > 0)
            dml_clip_grad_norm(dml_model_grads(tr->m), dml_model_nparams(tr->m), c->clip);
        lr = dml_lr_at(&c->lr, tr->step);
        dml_opt_step(tr->opt, dml_model_params(tr->m), dml_model_grads(tr->m), lr);
        tr->step++;

        /* Every rank learns the step's loss: metrics, and a common stop. */
        t0 = dml__now();
        MPI_Allreduce(local, global, 3, MPI_DOUBLE, MPI_SUM, tr->comm);
        tr->sync_seconds += dml__now() - t0;
        if (!isfinite(global[0]))
            return dml_error_set(DML_ERR_NUMERIC, "the training loss became %g at step %llu (epoch "
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
        ep[0] += global[0];
        ep[1] += global[1];
        ep[2] += global[2];

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
                p.loss = ep[0] / ep[2];
                p.accuracy = ep[1] / ep[2];
                p.samples_per_s = ep[2] / (now - t_ep);
                if (tr->eval_ld != NULL) {
                    st = dml__evaluate(tr, &p.test_loss, &p.test_accuracy);
                    if (st != DML_OK)
                        return st;
                    p.has_test = 1;
                }
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
            if (cb != NULL)
                cb(arg, &p);
            memset(win, 0, sizeof(win));
            t_win = dml__now();
            if (b->epoch_end) {
                memset(ep, 0, sizeof(ep));
                t_ep = t_win;
            }
        }
    }
    return DML_OK;
}

/* Rank 0 writes the model file: a temporary name, fsync, rename (the
 * durable-write idiom), so that a crash never leaves a half-written model
 * under the real name. */
static dml_status_t dml__write_model(dml_trainer_t *tr, const char *path)
{
    const dml_schema_t *s = dml_dataset_schema(tr->train);
    char tmp[4096], spec[256];
    uint64_t dims[2] = {dml_model_nparams(tr->m), 0}, steps = tr->step, epochs = tr->epoch;
    int32_t version = 1, rank = s->rank;
    hid_t f = -1, g = -1, str = -1;
    dml__h5_quiet_t q;
    dml_status_t st = DML_OK;

    dml_model_spec_format(&tr->cfg.spec, spec, sizeof(spec));
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    /* The loader's prefetch thread reads HDF5 too: one caller at a time. */
    dml_io_hdf5_lock();
    dml__h5_quiet_begin(&q);
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        st = dml_error_set(DML_ERR_IO, "%s: cannot create the model file", tmp);
        goto out;
    }
    str = H5Tcopy(H5T_C_S1);
    if (str < 0 || H5Tset_size(str, DML_DATASET_NAME_MAX) < 0 ||
        dml__h5_attr_write_str(f, "format", "slurm-dml model") != 0 ||
        dml__h5_attr_write(f, "version", H5T_NATIVE_INT32, 1, &version) != 0 ||
        dml__h5_attr_write_str(f, "model", spec) != 0 ||
        dml__h5_attr_write_str(f, "dataset", tr->cfg.train_dir) != 0 ||
        dml__h5_attr_write_str(f, "dataset_hash", dml_dataset_content_hash(tr->train)) != 0 ||
        dml__h5_attr_write_str(f, "normalisation", "global") != 0 ||
        dml__h5_attr_write(f, "feature_rank", H5T_NATIVE_INT32, 1, &rank) != 0 ||
        dml__h5_attr_write(f, "steps", H5T_NATIVE_UINT64, 1, &steps) != 0 ||
        dml__h5_attr_write(f, "epochs", H5T_NATIVE_UINT64, 1, &epochs) != 0 ||
        dml__h5_write(f, "weights", H5T_NATIVE_FLOAT, dims, dml_model_params(tr->m)) != 0)
        goto fail;
    dims[0] = s->num_classes;
    if (dml__h5_write(f, "class_names", str, dims, s->class_names) != 0)
        goto fail;
    g = H5Gcreate2(f, "stats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0 || dml_stats_write_h5(g, dml_dataset_stats(tr->train), s->num_classes) != DML_OK)
        goto fail;
    H5Gclose(g);
    g = -1;
    if (H5Fclose(f) < 0) {
        f = -1;
        goto fail;
    }
    f = -1;
    if ((st = dml__fsync_path(tmp)) != DML_OK) {
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        st = dml_error_set_errno(errno, "%s: cannot rename to %s", tmp, path);
        unlink(tmp);
    }
    goto out;
fail:
    st = dml_error_set(DML_ERR_IO, "%s: cannot write the model file (disk full?)", tmp);
    if (g >= 0)
        H5Gclose(g);
    g = -1;
    if (f >= 0)
        H5Fclose(f);
    f = -1;
    unlink(tmp);
out:
    if (g >= 0)
        H5Gclose(g);
    if (f >= 0)
        H5Fclose(f);
    if (str >= 0)
        H5Tclose(str);
    dml__h5_quiet_end(&q);
    dml_io_hdf5_unlock();
    return st;
}

dml_status_t dml_trainer_save_model(dml_trainer_t *tr, const char *path)
{
    dml_status_t st = tr->rank == 0 ? dml__write_model(tr, path) : DML_OK;

    return dml_mpi_agree(tr->comm, st, NULL);
}
