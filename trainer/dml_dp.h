/*
 * dml_dp.h: the data-parallel step. Every rank runs forward and backward on
 * its part of the global batch; gradients are summed across ranks in buckets,
 * each bucket's non-blocking allreduce (MPI_Iallreduce) starting as soon as
 * backward has made its layers final, so that communication hides behind the
 * earlier layers' compute (the pattern of PyTorch DDP and Horovod).
 *
 * Buckets are fixed ranges of the flat gradient array, cut from the last
 * layer backwards, so the reduction is the same on every run: a run is
 * bit-for-bit reproducible for a given seed and world size.
 */
#ifndef DML_DP_H
#define DML_DP_H

#include "dml_train.h"

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_dp dml_dp_t;

/* Collective. bucket_bytes: at least this much per bucket (whole layers; the
 * first, last-layer bucket may be smaller); 0: 1 MiB. */
dml_status_t dml_dp_create(MPI_Comm comm, dml_model_t *model, size_t bucket_bytes,
                           dml_dp_t **dp_out);
void dml_dp_free(dml_dp_t *dp);

/* Number of buckets, and bucket b's range of the flat arrays. */
int dml_dp_buckets(const dml_dp_t *dp);
void dml_dp_bucket_range(const dml_dp_t *dp, int b, size_t *offset, size_t *count);

/*
 * Collective. Adds this rank's n samples' gradients (scaled 1/global_n) to
 * the model's gradient array and, if reduce is set, sums the array across
 * ranks. With gradient accumulation, call with reduce = 0 for all but the
 * last micro-batch. A bad label on any rank is agreed on first: every rank
 * returns the same error and no rank is left in a reduction. loss_sum and
 * correct are this rank's (sum them across ranks for metrics).
 */
dml_status_t dml_dp_step(dml_dp_t *dp, const float *x, const int32_t *y, int n, uint64_t global_n,
                         uint64_t dropout_seed, int reduce, double *loss_sum, int *correct);

/* Seconds spent inside MPI waiting for the last buckets, so far. */
double dml_dp_wait_seconds(const dml_dp_t *dp);

#ifdef __cplusplus
}
#endif
#endif /* DML_DP_H */
