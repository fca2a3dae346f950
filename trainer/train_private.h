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
 * on_stall(arg, report) is called from the watchdog's thread, on the rank
 * that finds the stall, with a report naming the ranks (host, PID, step);
 * it ends the job. */
typedef struct dml__watchdog dml__watchdog_t;
dml_status_t dml__watchdog_start(MPI_Comm comm, double timeout, void (*on_stall)(void *, const char *),
                                 void *arg, dml__watchdog_t **out);
void dml__watchdog_beat(dml__watchdog_t *w, uint64_t step);
void dml__watchdog_stop(dml__watchdog_t *w);

#endif /* DML_TRAIN_PRIVATE_H */
