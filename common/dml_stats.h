/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_stats.h: a dataset's training statistics (per-feature normalisation
 * values, histograms, label counts) and the size limits they share with
 * datasets: the one type that a dataset's index (io/, dml_io.h) and a model
 * file (nn/, dml_nn.h) both carry, kept below both so that the network needs
 * neither the dataset library nor MPI to read or write a model file.
 *
 * Only a type and constants: reading and writing the "stats" group is
 * h5/stats.c's (the one owner of that layout), reached through
 * dml_stats_read_h5 and dml_stats_write_h5 in dml_io.h.
 */
#ifndef DML_STATS_H
#define DML_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DML_DATASET_MAX_RANK 3   /* feature shape dimensions */
#define DML_DATASET_HIST_BINS 32 /* histogram bins per feature */
#define DML_DATASET_NAME_MAX 64  /* class and shard name bytes, with NUL */

/* Training statistics, per feature (arrays of features values). */
typedef struct {
    uint64_t features;
    double *mean, *std, *min, *max;
    double global_mean, global_std; /* over all features and samples */
    double *hist_lo, *hist_hi;      /* histogram range per feature */
    uint64_t *hist;                 /* [features][DML_DATASET_HIST_BINS] */
    uint64_t *label_counts;         /* [num_classes] */
} dml_stats_t;

#ifdef __cplusplus
}
#endif
#endif /* DML_STATS_H */
