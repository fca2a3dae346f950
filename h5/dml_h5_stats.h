/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_h5_stats.h: the "stats" group's one reader and writer (h5/stats.c),
 * the layout a dataset's index and a model file share (docs/formats/
 * dataset.md, docs/formats/model.md). Part of libdml_h5, hidden like the
 * rest of it: io/ exports it as dml_stats_read_h5 and dml_stats_write_h5,
 * nn/ calls it directly so that the network needs no dataset library.
 */
#ifndef DML_H5_STATS_H
#define DML_H5_STATS_H

#include "dml_stats.h"
#include "dml_status.h"

#include <stdint.h>

/* Writes st into an open HDF5 group (an hid_t): datasets mean, std, min,
 * max, hist_lo, hist_hi, hist, label_counts (num_classes) and the attributes
 * global_mean, global_std. */
dml_status_t dml__stats_write_h5(int64_t group, const dml_stats_t *st, uint32_t num_classes);

/* Reads what dml__stats_write_h5 wrote into st, allocating its arrays;
 * DML_ERR_FORMAT if anything is missing or of other sizes (st then holds
 * nothing). Free with dml__stats_release. */
dml_status_t dml__stats_read_h5(int64_t group, uint64_t features, uint32_t num_classes,
                                dml_stats_t *st);

/* Frees st's arrays and zeroes it (NULL arrays are fine). */
void dml__stats_release(dml_stats_t *st);

#endif /* DML_H5_STATS_H */
