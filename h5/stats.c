/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * stats.c: the training statistics' HDF5 group, read and written here only:
 * a dataset's index (io/) and a model file (nn/) hold the same group, and
 * keeping its one owner below both lets the network read and write model
 * files without the dataset library (and the MPI it brings).
 */
#include "config.h"

#include "dml_h5.h"
#include "dml_h5_stats.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

dml_status_t dml__stats_write_h5(int64_t group, const dml_stats_t *st, uint32_t num_classes)
{
    uint64_t dims[2] = {st->features, 0};
    hid_t g = (hid_t)group;

    if (dml__h5_write(g, "mean", H5T_NATIVE_DOUBLE, dims, st->mean) != 0 ||
        dml__h5_write(g, "std", H5T_NATIVE_DOUBLE, dims, st->std) != 0 ||
        dml__h5_write(g, "min", H5T_NATIVE_DOUBLE, dims, st->min) != 0 ||
        dml__h5_write(g, "max", H5T_NATIVE_DOUBLE, dims, st->max) != 0 ||
        dml__h5_write(g, "hist_lo", H5T_NATIVE_DOUBLE, dims, st->hist_lo) != 0 ||
        dml__h5_write(g, "hist_hi", H5T_NATIVE_DOUBLE, dims, st->hist_hi) != 0 ||
        dml__h5_attr_write(g, "global_mean", H5T_NATIVE_DOUBLE, 1, &st->global_mean) != 0 ||
        dml__h5_attr_write(g, "global_std", H5T_NATIVE_DOUBLE, 1, &st->global_std) != 0)
        return dml_error_set(DML_ERR_HDF5, "cannot write the statistics");
    dims[1] = DML_DATASET_HIST_BINS;
    if (dml__h5_write(g, "hist", H5T_NATIVE_UINT64, dims, st->hist) != 0)
        return dml_error_set(DML_ERR_HDF5, "cannot write the histograms");
    dims[0] = num_classes;
    dims[1] = 0;
    if (dml__h5_write(g, "label_counts", H5T_NATIVE_UINT64, dims, st->label_counts) != 0)
        return dml_error_set(DML_ERR_HDF5, "cannot write the label counts");
    return DML_OK;
}

dml_status_t dml__stats_read_h5(int64_t group, uint64_t features, uint32_t num_classes,
                                dml_stats_t *st)
{
    hid_t g = (hid_t)group;
    const uint64_t nf = features;

    memset(st, 0, sizeof(*st));
    st->features = nf;
    st->mean = calloc(nf, sizeof(double));
    st->std = calloc(nf, sizeof(double));
    st->min = calloc(nf, sizeof(double));
    st->max = calloc(nf, sizeof(double));
    st->hist_lo = calloc(nf, sizeof(double));
    st->hist_hi = calloc(nf, sizeof(double));
    st->hist = calloc(nf * DML_DATASET_HIST_BINS, sizeof(uint64_t));
    st->label_counts = calloc(num_classes ? num_classes : 1, sizeof(uint64_t));
    if (!st->mean || !st->std || !st->min || !st->max || !st->hist_lo || !st->hist_hi ||
        !st->hist || !st->label_counts) {
        dml__stats_release(st);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the statistics of %llu features",
                             (unsigned long long)nf);
    }
    if (dml__h5_read(g, "mean", H5T_NATIVE_DOUBLE, nf, 0, st->mean) != 0 ||
        dml__h5_read(g, "std", H5T_NATIVE_DOUBLE, nf, 0, st->std) != 0 ||
        dml__h5_read(g, "min", H5T_NATIVE_DOUBLE, nf, 0, st->min) != 0 ||
        dml__h5_read(g, "max", H5T_NATIVE_DOUBLE, nf, 0, st->max) != 0 ||
        dml__h5_read(g, "hist_lo", H5T_NATIVE_DOUBLE, nf, 0, st->hist_lo) != 0 ||
        dml__h5_read(g, "hist_hi", H5T_NATIVE_DOUBLE, nf, 0, st->hist_hi) != 0 ||
        dml__h5_read(g, "hist", H5T_NATIVE_UINT64, nf, DML_DATASET_HIST_BINS, st->hist) != 0 ||
        dml__h5_read(g, "label_counts", H5T_NATIVE_UINT64, num_classes, 0, st->label_counts) != 0 ||
        dml__h5_attr_read(g, "global_mean", H5T_NATIVE_DOUBLE, 1, &st->global_mean) != 0 ||
        dml__h5_attr_read(g, "global_std", H5T_NATIVE_DOUBLE, 1, &st->global_std) != 0) {
        dml__stats_release(st);
        return dml_error_set(DML_ERR_FORMAT,
                             "statistics (group stats) missing or not of %llu "
                             "features and %u classes",
                             (unsigned long long)nf, num_classes);
    }
    return DML_OK;
}

void dml__stats_release(dml_stats_t *st)
{
    free(st->mean);
    free(st->std);
    free(st->min);
    free(st->max);
    free(st->hist_lo);
    free(st->hist_hi);
    free(st->hist);
    free(st->label_counts);
    memset(st, 0, sizeof(*st));
}
