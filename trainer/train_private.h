/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * train_private.h: what the trainer library's files share and its users
 * do not see.
 */
#ifndef DML_TRAIN_PRIVATE_H
#define DML_TRAIN_PRIVATE_H

#include "dml_train.h"

/* Whether dml_opt_apply writes large parameter arrays with streaming
 * (non-temporal) stores: where ranks share them (dp.c), default off. */
void dml__opt_stream_stores(dml_opt_t *o, int on);

/* The stall watchdog (watchdog.c): collective start and stop over comm;
 * beats from the main thread at every collective it enters and leaves.
 * timeout > 0: a rank stuck that long is reported; 0: the limit is derived
 * from the times between beats (at least floor seconds). on_stall(arg,
 * report) is called from the watchdog's thread, on the rank that finds the
 * stall, with a report naming the ranks (host, PID, step) and the limit; it
 * ends the job. */
typedef struct dml__watchdog dml__watchdog_t;
/* What the time since the previous beat was: what the derived limit learns
 * from. */
typedef enum {
    DML__WD_STEP = 0, /* a part of a step: counts while recent */
    DML__WD_RARE,     /* a checkpoint: counts for the whole run */
    DML__WD_CALLER    /* the caller's own (on_step): does not count */
} dml__wd_kind_t;
dml_status_t dml__watchdog_start(MPI_Comm comm, double timeout, double floor,
                                 void (*on_stall)(void *, const char *), void *arg,
                                 dml__watchdog_t **out);
void dml__watchdog_beat(dml__watchdog_t *w, uint64_t step, dml__wd_kind_t kind);
void dml__watchdog_stop(dml__watchdog_t *w);

#endif /* DML_TRAIN_PRIVATE_H */
