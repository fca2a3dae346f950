/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * slurm_job.h: the Slurm job control dml-train does (its end time, its
 * state, a requeue), through libslurm. The tool's, not a library's: job
 * control belongs where the tools use it, so that no storage or inference
 * library pulls libslurm in.
 */
#ifndef DML_SLURM_JOB_H
#define DML_SLURM_JOB_H

#include "dml_status.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * The end time of Slurm job `job` (the tool's SLURM_JOB_ID), asked of
 * slurmctld through libslurm. DML_ERR_UNSUPPORTED if built without Slurm,
 * *end = 0 if it has no limit.
 */
dml_status_t dml__slurm_end_time(uint32_t job, time_t *end);

/*
 * Requeues Slurm job `job` through libslurm (slurm_requeue, what `scontrol
 * requeue` does), so that a job whose training stopped after a checkpoint
 * starts again where no scontrol is at hand (a container, an array task's
 * step). The job must have been submitted requeueable (--requeue or the
 * site's JobRequeue=1). A job that was cancelled (scancel) is not requeued:
 * DML_ERR_INTERRUPTED.
 */
dml_status_t dml__slurm_requeue(uint32_t job);

/*
 * The state of Slurm job `job` as slurmctld has it (its base state, without
 * the COMPLETING that scontrol shows while the job's processes end):
 * "RUNNING", "CANCELLED" (scancel, by its user or an admin), "PREEMPTED",
 * "TIMEOUT", "NODE_FAIL"... A stop on SIGTERM is a preemption, the time
 * limit or a deliberate signal while the job is RUNNING, PREEMPTED or
 * TIMEOUT, and the end its user asked for where it is CANCELLED.
 */
dml_status_t dml__slurm_job_state(uint32_t job, char *state, size_t len);

#endif
