/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dp.c: summing the gradients of a data-parallel step (see dml_train.h).
 *
 * Two ways, chosen at creation:
 *
 * ALLREDUCE. The model announces each layer's gradient as final, last layer
 * first. A bucket covers whole layers; once its lowest layer is announced,
 * its MPI_Iallreduce starts, and every announcement also tests the buckets
 * in flight, since Open MPI progresses non-blocking collectives only when
 * called. The last bucket (the first layers) becomes final when backward is
 * done: nothing is left to hide it behind, and it is reduced with the
 * blocking MPI_Allreduce, whose tuned algorithms move the same bytes faster
 * than the non-blocking schedule (docs/benchmarks/design-notes.md).
 *
 * SHARED, where every rank is on one node. With one rank per core there is
 * no idle core for communication to hide behind, and an allreduce followed
 * by the same optimiser step on every rank moves and updates every byte on
 * every rank. Here the parameters live once, in memory the node's ranks
 * share (an MPI-3 shared window), each rank's gradients in its own segment
 * of a second one. After backward the ranks meet once; each then sums its
 * slice of the parameters' gradients straight from the others' segments (in
 * rank order: the same sum on every run) and runs the optimiser on that
 * slice alone; a second meeting publishes the new parameters. No gradient
 * byte is copied, and each rank does 1/size of the optimiser's work. The
 * optimiser's state is then valid on each rank for its slice only, and is
 * gathered (dml_dp_gather_state) before a checkpoint writes it.
 *
 * Shared-window accesses follow MPI-3's unified-memory rules: the windows
 * are locked once (lock_all), and every meeting is MPI_Win_sync, a barrier,
 * MPI_Win_sync, so that what one rank wrote before it is seen by the others
 * after it.
 */
#include "config.h"

#include "dml_train.h"
#include "dml_mpi.h"
#include "dml_simd.h"
#include "train_private.h"
#include "dml_clock.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

typedef struct {
    size_t off, count;
    int low_layer; /* the bucket is final once this layer is */
    MPI_Request req;
} dml__bucket_t;

struct dml_dp {
    MPI_Comm comm;
    MPI_Comm bncomm; /* batch normalisation's statistics: their own order of collectives */
    dml_model_t *m;
    dml_dp_mode_t mode, mode_asked;
    int rank, size;
    int nb, next; /* buckets, and the next one to start */
    dml__bucket_t b[DML_MODEL_MAX_LAYERS];
    dml_status_t failed;
    double wait;
    /* SHARED: the windows, every rank's gradient segment, and the slice
     * [lo, hi) this rank sums and updates; ALLREDUCE: [0, np) */
    MPI_Win pwin, gwin;
    float **seg;
    size_t lo, hi;
};

/* Where rank r's slice of np parameters starts: whole cache lines (16
 * floats), so that no two ranks write the same line. */
static size_t dml__slice_start(size_t np, int r, int size)
{
    size_t lines = (np + 15) / 16, at = lines * (size_t)r / (size_t)size * 16;
    return at < np ? at : np;
}

/* The first cache line at or after p (the same offset into the shared
 * memory on every rank: windows map at page boundaries). */
static float *dml__line_up(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* What one rank wrote to the windows before it, all see after it. */
static int dml__meet(dml_dp_t *dp)
{
    int rc;

    MPI_Win_sync(dp->pwin);
    MPI_Win_sync(dp->gwin);
    rc = MPI_Barrier(dp->comm);
    MPI_Win_sync(dp->pwin);
    MPI_Win_sync(dp->gwin);
    return rc;
}

/* Collective: the SHARED set-up, or an agreed failure (then nothing is
 * left of it and the model keeps its own arrays). */
static dml_status_t dml__shared_create(dml_dp_t *dp)
{
    const size_t np = dml_model_nparams(dp->m);
    /* 16 floats more, to start each array on a cache line (Open MPI's
     * windows start 8 bytes into one) */
    const MPI_Aint bytes = (MPI_Aint)((np + 16) * sizeof(float));
    MPI_Info info = MPI_INFO_NULL;
    struct statvfs vfs;
    MPI_Aint sz;
    float *mine = NULL, *shared = NULL;
    dml_status_t st = DML_OK;
    int r, du, rc;

    dp->pwin = dp->gwin = MPI_WIN_NULL;
    /* Open MPI backs shared windows with files in /dev/shm, and a window it
     * cannot make there stops the job (MPI errors are fatal): look first. */
    if (dp->rank == 0 && statvfs("/dev/shm", &vfs) == 0 &&
        (double)vfs.f_bavail * (double)vfs.f_frsize < 2.0 * (double)bytes * (dp->size + 1))
        st = dml_error_set(DML_ERR_NO_SPACE,
                           "/dev/shm: %.0f MiB free, too little for the shared "
                           "gradient reduction's %.0f MiB",
                           (double)vfs.f_bavail * (double)vfs.f_frsize / 1048576.0,
                           (double)bytes * (dp->size + 1) / 1048576.0);
    dp->seg = calloc((size_t)dp->size, sizeof(*dp->seg));
    if (dp->seg == NULL && st == DML_OK)
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory");
    if ((st = dml_mpi_agree(dp->comm, st, NULL)) != DML_OK) {
        free(dp->seg);
        dp->seg = NULL;
        return st;
    }
    /* The parameters once, from rank 0; each rank's gradient segment apart
     * (non-contiguous: page-aligned, and placed where that rank touches it). */
    rc = MPI_Win_allocate_shared(dp->rank == 0 ? bytes : 0, sizeof(float), MPI_INFO_NULL, dp->comm,
                                 &shared, &dp->pwin);
    if (rc == MPI_SUCCESS) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "alloc_shared_noncontig", "true");
        rc = MPI_Win_allocate_shared(bytes, sizeof(float), info, dp->comm, &mine, &dp->gwin);
        MPI_Info_free(&info);
    }
    if (rc != MPI_SUCCESS)
        st = dml_mpi_error(rc, "MPI_Win_allocate_shared for the node's shared parameters");
    if ((st = dml_mpi_agree(dp->comm, st, NULL)) != DML_OK)
        goto fail;
    MPI_Win_shared_query(dp->pwin, 0, &sz, &du, &shared);
    shared = dml__line_up(shared);
    for (r = 0; r < dp->size; r++) {
        MPI_Win_shared_query(dp->gwin, r, &sz, &du, &dp->seg[r]);
        dp->seg[r] = dml__line_up(dp->seg[r]);
    }
    mine = dp->seg[dp->rank];
    MPI_Win_lock_all(MPI_MODE_NOCHECK, dp->pwin);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, dp->gwin);
    /* Every rank initialised the same parameters from the seed: rank 0's
     * become the shared ones. */
    if (dp->rank == 0)
        memcpy(shared, dml_model_params(dp->m), np * sizeof(float));
    memset(mine, 0, np * sizeof(float));
    dml__meet(dp);
    dml_model_borrow_arrays(dp->m, shared, mine);
    dp->lo = dml__slice_start(np, dp->rank, dp->size);
    dp->hi = dml__slice_start(np, dp->rank + 1, dp->size);
    return DML_OK;
fail:
    if (dp->gwin != MPI_WIN_NULL)
        MPI_Win_free(&dp->gwin);
    if (dp->pwin != MPI_WIN_NULL)
        MPI_Win_free(&dp->pwin);
    free(dp->seg);
    dp->seg = NULL;
    return st;
}

/* Batch normalisation's sums over the whole batch. On a communicator of
 * their own: the gradient buckets' non-blocking reductions start in between
 * them on ranks with samples but not on a rank without (which makes only
 * these), and collectives on one communicator must come in one order. */
static dml_status_t dml__bn_reduce(void *arg, double *buf, int n)
{
    dml_dp_t *dp = arg;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, dp->bncomm);

    return rc == MPI_SUCCESS ? DML_OK : dml_mpi_error(rc, "MPI_Allreduce of batch statistics");
}

dml_status_t dml_dp_create(MPI_Comm comm, dml_model_t *model, dml_dp_mode_t mode,
                           size_t bucket_bytes, dml_dp_t **dp_out)
{
    const int L = dml_model_param_layers(model);
    dml_dp_t *dp = calloc(1, sizeof(*dp));
    dml_status_t st = DML_OK;
    MPI_Comm node = MPI_COMM_NULL;
    size_t off, cnt;
    int l, rc, nodesize = 0;

    if (dp == NULL)
        return dml_mpi_agree(comm, dml_error_set(DML_ERR_NO_MEMORY, "no memory"), NULL);
    if (bucket_bytes == 0)
        bucket_bytes = 1 << 20;
    rc = MPI_Comm_dup(comm, &dp->comm);
    if (rc != MPI_SUCCESS) {
        free(dp);
        return dml_mpi_error(rc, "MPI_Comm_dup for gradient reduction");
    }
    MPI_Comm_rank(dp->comm, &dp->rank);
    MPI_Comm_size(dp->comm, &dp->size);
    rc = MPI_Comm_dup(comm, &dp->bncomm);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&dp->comm);
        free(dp);
        return dml_mpi_error(rc, "MPI_Comm_dup for batch normalisation");
    }
    dp->m = model;
    dp->mode_asked = mode;
    dp->pwin = dp->gwin = MPI_WIN_NULL;
    dp->lo = 0;
    dp->hi = dml_model_nparams(model);
    /* From the last layer backwards: a bucket closes once it holds
     * bucket_bytes, so the last layer's gradients leave first. */
    for (l = L - 1; l >= 0; l--) {
        dml__bucket_t *bk;
        dml_model_layer_range(model, l, &off, &cnt);
        if (dp->nb == 0 || dp->b[dp->nb - 1].count * sizeof(float) >= bucket_bytes) {
            bk = &dp->b[dp->nb++];
            bk->count = 0;
        }
        bk = &dp->b[dp->nb - 1];
        bk->off = off;
        bk->count += cnt;
        bk->low_layer = l;
        bk->req = MPI_REQUEST_NULL;
    }

    /* SHARED needs every rank on one node (the same shared-memory domain);
     * AUTO takes it there when there is more than one rank. */
    if (mode != DML_DP_ALLREDUCE) {
        rc = MPI_Comm_split_type(dp->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
        if (rc == MPI_SUCCESS)
            MPI_Comm_size(node, &nodesize);
        if (node != MPI_COMM_NULL)
            MPI_Comm_free(&node);
        /* the same answer everywhere: the smallest node's view */
        MPI_Allreduce(MPI_IN_PLACE, &nodesize, 1, MPI_INT, MPI_MIN, dp->comm);
        if (dml_model_nparams(model) > (size_t)INT_MAX - 16) {
            /* MPI counts are ints */
            if (mode == DML_DP_SHARED)
                st = dml_error_set(DML_ERR_INVALID_ARG,
                                   "shared gradient reduction: %zu parameters "
                                   "are more than MPI can count",
                                   dml_model_nparams(model));
            mode = DML_DP_ALLREDUCE;
        } else if (nodesize != dp->size) {
            if (mode == DML_DP_SHARED)
                st = dml_error_set(DML_ERR_INVALID_ARG,
                                   "shared gradient reduction needs every "
                                   "rank on one node; these %d ranks are on several (use "
                                   "allreduce or auto)",
                                   dp->size);
            mode = DML_DP_ALLREDUCE;
        } else if (mode == DML_DP_AUTO) {
            mode = dp->size > 1 ? DML_DP_SHARED : DML_DP_ALLREDUCE;
        }
    }
    /* Where the windows cannot be had (no room in /dev/shm), AUTO falls
     * back; asked for by name, the failure is the answer. */
    if (st == DML_OK && mode == DML_DP_SHARED) {
        st = dml__shared_create(dp);
        if (st != DML_OK && dp->mode_asked == DML_DP_AUTO) {
            st = DML_OK;
            mode = DML_DP_ALLREDUCE;
        }
    }
    dp->mode = mode;
    if (st != DML_OK) {
        MPI_Comm_free(&dp->bncomm);
        MPI_Comm_free(&dp->comm);
        free(dp);
        return st;
    }
    if (dp->size > 1)
        dml_model_set_reduce(model, dml__bn_reduce, dp);
    *dp_out = dp;
    return DML_OK;
}

void dml_dp_free(dml_dp_t *dp)
{
    int i;

    if (dp == NULL)
        return;
    for (i = 0; i < dp->nb; i++)
        if (dp->b[i].req != MPI_REQUEST_NULL)
            MPI_Wait(&dp->b[i].req, MPI_STATUS_IGNORE);
    if (dp->mode == DML_DP_SHARED) {
        /* The model outlives the windows: it gets arrays of its own back
         * (should there be no memory for them, it must not keep pointers
         * into freed windows either: then it is left without). */
        if (dml_model_own_arrays(dp->m) != DML_OK)
            dml_model_borrow_arrays(dp->m, NULL, NULL);
        MPI_Win_unlock_all(dp->gwin);
        MPI_Win_unlock_all(dp->pwin);
        MPI_Win_free(&dp->gwin);
        MPI_Win_free(&dp->pwin);
        free(dp->seg);
    }
    dml_model_set_reduce(dp->m, NULL, NULL);
    MPI_Comm_free(&dp->bncomm);
    MPI_Comm_free(&dp->comm);
    free(dp);
}

dml_dp_mode_t dml_dp_mode(const dml_dp_t *dp)
{
    return dp->mode;
}
int dml_dp_buckets(const dml_dp_t *dp)
{
    return dp->nb;
}
double dml_dp_wait_seconds(const dml_dp_t *dp)
{
    return dp->wait;
}

void dml_dp_slice(const dml_dp_t *dp, size_t *offset, size_t *count)
{
    *offset = dp->lo;
    *count = dp->hi - dp->lo;
}

void dml_dp_bucket_range(const dml_dp_t *dp, int b, size_t *offset, size_t *count)
{
    *offset = dp->b[b].off;
    *count = dp->b[b].count;
}

static void dml__on_ready(void *arg, int layer, size_t offset, size_t count)
{
    dml_dp_t *dp = arg;
    float *g = dml_model_grads(dp->m);
    int i, flag, rc;

    (void)offset;
    (void)count;
    while (dp->next < dp->nb && dp->b[dp->next].low_layer >= layer) {
        dml__bucket_t *bk = &dp->b[dp->next++];
        if (dp->next == dp->nb) {
            /* the last: same order of collectives on every rank, so it may
             * run while earlier buckets are still in flight */
            const double t0 = dml__now();
            rc = MPI_Allreduce(MPI_IN_PLACE, g + bk->off, (int)bk->count, MPI_FLOAT, MPI_SUM,
                               dp->comm);
            dp->wait += dml__now() - t0;
            bk->req = MPI_REQUEST_NULL;
            if (rc != MPI_SUCCESS && dp->failed == DML_OK)
                dp->failed = dml_mpi_error(rc, "MPI_Allreduce of the last gradient bucket");
            continue;
        }
        rc = MPI_Iallreduce(MPI_IN_PLACE, g + bk->off, (int)bk->count, MPI_FLOAT, MPI_SUM, dp->comm,
                            &bk->req);
        if (rc != MPI_SUCCESS && dp->failed == DML_OK)
            dp->failed = dml_mpi_error(rc, "MPI_Iallreduce of a gradient bucket");
    }
    for (i = 0; i < dp->next; i++)
        if (dp->b[i].req != MPI_REQUEST_NULL)
            MPI_Test(&dp->b[i].req, &flag, MPI_STATUS_IGNORE);
}

/* SHARED: elements [i, i + n) of every rank's gradients summed in rank
 * order (the same sum on every run), divided by micro when it is > 1. */
DML_HOT static void dml__sum_block(const dml_dp_t *dp, size_t i, size_t n, int micro,
                                   float *restrict acc)
{
    const float *s0 = dp->seg[0] + i;
    size_t j;
    int r;

    for (j = 0; j < n; j++)
        acc[j] = s0[j];
    for (r = 1; r < dp->size; r++) {
        const float *restrict sr = dp->seg[r] + i;
        for (j = 0; j < n; j++)
            acc[j] += sr[j];
    }
    if (micro > 1) {
        const float f = 1.0f / (float)micro;
        for (j = 0; j < n; j++)
            acc[j] *= f;
    }
}

dml_status_t dml_dp_step(dml_dp_t *dp, const float *x, const int32_t *y, int n, uint64_t global_n,
                         uint64_t dropout_seed, int reduce, double *loss_sum, int *correct)
{
    const int C = dml_model_classes(dp->m);
    dml_status_t st = DML_OK;
    double t0;
    int i;

    /* Check what could fail on one rank only before anyone communicates. */
    if (n < 0 || n > dml_model_max_batch(dp->m))
        st = dml_error_set(DML_ERR_INVALID_ARG,
                           "a batch of %d samples on this rank; the model "
                           "was sized for 0..%d",
                           n, dml_model_max_batch(dp->m));
    for (i = 0; i < n && st == DML_OK; i++)
        if (y[i] < 0 || y[i] >= C)
            st = dml_error_set(DML_ERR_INVALID_ARG,
                               "label %d of sample %d is outside the output "
                               "layer's %d classes",
                               (int)y[i], i, C);
    if (global_n == 0 && st == DML_OK)
        st = dml_error_set(DML_ERR_INVALID_ARG, "a global batch of 0 samples");
    /* Agreed on every micro-batch, not only the reducing one: a rank that
     * returned early from an accumulating step would leave the others
     * waiting in the next collective. */
    st = dml_mpi_agree(dp->comm, st, NULL);
    if (st != DML_OK)
        return st;

    dp->next = 0;
    dp->failed = DML_OK;
    /* A rank with no samples in a short last step still reduces (the
     * model makes batch normalisation's reductions with nothing of its own,
     * and the buckets start here). */
    st = dml_model_train_step(dp->m, x, y, n, 1.0f / (float)global_n, dropout_seed, loss_sum,
                              correct,
                              reduce && dp->mode == DML_DP_ALLREDUCE ? dml__on_ready : NULL, dp);
    if (n == 0 && reduce && dp->mode == DML_DP_ALLREDUCE)
        dml__on_ready(dp, 0, 0, 0);
    if (!reduce)
        return st;
    if (dp->mode == DML_DP_SHARED) {
        /* every rank's gradients complete; dml_dp_update sums the slice */
        int rc;
        t0 = dml__now();
        rc = dml__meet(dp);
        dp->wait += dml__now() - t0;
        if (rc != MPI_SUCCESS && st == DML_OK)
            st = dml_mpi_error(rc, "MPI_Barrier before summing the gradients");
        return st;
    }
    t0 = dml__now();
    for (i = 0; i < dp->nb; i++)
        if (dp->b[i].req != MPI_REQUEST_NULL &&
            MPI_Wait(&dp->b[i].req, MPI_STATUS_IGNORE) != MPI_SUCCESS && dp->failed == DML_OK)
            dp->failed = dml_error_set(DML_ERR_MPI, "MPI_Wait on a gradient bucket failed");
    dp->wait += dml__now() - t0;
    return st != DML_OK ? st : dp->failed;
}

/* SHARED without clipping: the slice summed a block at a time, each block
 * applied by the optimiser while it is in L1 (one pass, nothing written
 * back to the gradients). */
static void dml__shared_update(dml_dp_t *dp, dml_opt_t *opt, float lr, int micro)
{
    float *params = dml_model_params(dp->m);
    float acc[2048];
    size_t i, n;

    dml_opt_next(opt, lr);
    for (i = dp->lo; i < dp->hi; i += n) {
        n = dp->hi - i < 2048 ? dp->hi - i : 2048;
        dml__sum_block(dp, i, n, micro, acc);
        dml_opt_apply(opt, params, acc, lr, i, n);
    }
}

dml_status_t dml_dp_update(dml_dp_t *dp, dml_opt_t *opt, float lr, int micro, double clip,
                           double *norm_out)
{
    float *g = dml_model_grads(dp->m) + dp->lo;
    const size_t n = dp->hi - dp->lo;
    double norm = 0, t0;
    size_t i;
    int rc = MPI_SUCCESS, rc2;

    dml__opt_stream_stores(opt, dp->mode == DML_DP_SHARED);
    if (dp->mode == DML_DP_SHARED && clip > 0) {
        /* The norm is the whole gradient's: the slice is summed into this
         * rank's segment (only this rank reads that part of it now), its
         * squares added across ranks, then clipped and applied. */
        double ss = 0;
        float acc[2048];
        size_t k;
        for (i = dp->lo; i < dp->hi; i += k) {
            /* through acc: the segment written is also one of those read */
            k = dp->hi - i < 2048 ? dp->hi - i : 2048;
            dml__sum_block(dp, i, k, micro, acc);
            memcpy(g + (i - dp->lo), acc, k * sizeof(float));
        }
        for (i = 0; i < n; i++)
            ss += (double)g[i] * g[i];
        rc = MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, dp->comm);
        norm = sqrt(ss);
        if (norm > clip) {
            const float f = (float)(clip / (norm + 1e-6));
            for (i = 0; i < n; i++)
                g[i] *= f;
        }
        dml_opt_step_range(opt, dml_model_params(dp->m), dml_model_grads(dp->m), lr, dp->lo, n);
    } else if (dp->mode == DML_DP_SHARED) {
        dml__shared_update(dp, opt, lr, micro);
    } else {
        if (micro > 1) {
            /* the mean over the micro-batches */
            const float f = 1.0f / (float)micro;
            for (i = 0; i < n; i++)
                g[i] *= f;
        }
        if (clip > 0)
            norm = dml_clip_grad_norm(g, n, clip);
        dml_opt_step(opt, dml_model_params(dp->m), g, lr);
    }
    if (norm_out != NULL)
        *norm_out = norm;
    if (dp->mode != DML_DP_SHARED)
        return DML_OK;
    /* the new parameters, seen by every rank before its next forward */
    t0 = dml__now();
    rc2 = dml__meet(dp);
    dp->wait += dml__now() - t0;
    if (rc == MPI_SUCCESS)
        rc = rc2;
    return rc == MPI_SUCCESS ? DML_OK : dml_mpi_error(rc, "the shared parameter update");
}

dml_status_t dml_dp_gather_state(dml_dp_t *dp, dml_opt_t *opt)
{
    int *counts, *displs, r, b, rc = MPI_SUCCESS;
    const size_t np = dml_model_nparams(dp->m);

    if (dp->mode != DML_DP_SHARED)
        return DML_OK;
    counts = malloc(2 * (size_t)dp->size * sizeof(int));
    if (counts == NULL)
        return dml_mpi_agree(dp->comm, dml_error_set(DML_ERR_NO_MEMORY, "no memory"), NULL);
    displs = counts + dp->size;
    for (r = 0; r < dp->size; r++) {
        displs[r] = (int)dml__slice_start(np, r, dp->size);
        counts[r] = (int)dml__slice_start(np, r + 1, dp->size) - displs[r];
    }
    for (b = 0; b < dml_opt_nbufs(opt) && rc == MPI_SUCCESS; b++)
        rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, dml_opt_buf(opt, b), counts, displs,
                            MPI_FLOAT, dp->comm);
    free(counts);
    return rc == MPI_SUCCESS ? DML_OK : dml_mpi_error(rc, "MPI_Allgatherv of the optimiser state");
}

dml_status_t dml_dp_set_params(dml_dp_t *dp, const float *params)
{
    float *p = dml_model_params(dp->m);
    int rc;

    /* SHARED: one array for the node; each rank writes its own slice */
    memcpy(p + dp->lo, params + dp->lo, (dp->hi - dp->lo) * sizeof(float));
    if (dp->mode != DML_DP_SHARED)
        return DML_OK;
    rc = dml__meet(dp);
    return rc == MPI_SUCCESS ? DML_OK
                             : dml_mpi_error(rc, "MPI_Barrier after setting the parameters");
}
