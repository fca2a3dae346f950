/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * slurm_job.c: dml-train's Slurm job control (slurm_job.h), asked of
 * slurmctld through libslurm; without Slurm each call says it was built
 * without it.
 */
#include "config.h"

#include "slurm_job.h"

#include <stdio.h>
#include <string.h>

#ifdef HAVE_SLURM
#include <slurm/slurm.h>
#endif

dml_status_t dml__slurm_end_time(uint32_t job, time_t *end)
{
    *end = 0;
#ifdef HAVE_SLURM
    {
        time_t t = 0;
        slurm_init(NULL);
        if (slurm_get_end_time(job, &t) != SLURM_SUCCESS)
            return dml_error_set(DML_ERR_NOT_FOUND,
                                 "job %u: cannot get its end time from "
                                 "slurmctld: %s",
                                 job, slurm_strerror(slurm_get_errno()));
        /* An unlimited job reports an end time far away: no limit. */
        *end = t > time(NULL) + 300 * 86400L ? 0 : t;
        return DML_OK;
    }
#else
    return dml_error_set(DML_ERR_UNSUPPORTED,
                         "built without Slurm: the end time of job %u is "
                         "unknown",
                         job);
#endif
}

dml_status_t dml__slurm_job_state(uint32_t job, char *state, size_t len)
{
#ifdef HAVE_SLURM
    /* Slurm's own names (squeue's); libslurm does not export its table. */
    static const char *const names[] = {
        [JOB_PENDING] = "PENDING",     [JOB_RUNNING] = "RUNNING",     [JOB_SUSPENDED] = "SUSPENDED",
        [JOB_COMPLETE] = "COMPLETED",  [JOB_CANCELLED] = "CANCELLED", [JOB_FAILED] = "FAILED",
        [JOB_TIMEOUT] = "TIMEOUT",     [JOB_NODE_FAIL] = "NODE_FAIL", [JOB_PREEMPTED] = "PREEMPTED",
        [JOB_BOOT_FAIL] = "BOOT_FAIL", [JOB_DEADLINE] = "DEADLINE",   [JOB_OOM] = "OUT_OF_MEMORY"};
    job_info_msg_t *msg = NULL;
    uint32_t s;

    slurm_init(NULL);
    if (slurm_load_job(&msg, job, SHOW_ALL) != SLURM_SUCCESS)
        return dml_error_set(DML_ERR_NOT_FOUND, "job %u: cannot get its state from slurmctld: %s",
                             job, slurm_strerror(slurm_get_errno()));
    if (msg == NULL || msg->record_count < 1) {
        slurm_free_job_info_msg(msg);
        return dml_error_set(DML_ERR_NOT_FOUND, "job %u: slurmctld does not know it", job);
    }
    /* The base state: a cancelled job is also COMPLETING until its
     * processes are gone, which is what scontrol and squeue show. */
    s = msg->job_array[0].job_state & JOB_STATE_BASE;
    if (s < sizeof(names) / sizeof(names[0]))
        snprintf(state, len, "%s", names[s]);
    else
        snprintf(state, len, "state %u", s);
    slurm_free_job_info_msg(msg);
    return DML_OK;
#else
    (void)state, (void)len;
    return dml_error_set(DML_ERR_UNSUPPORTED,
                         "built without Slurm: the state of job %u is "
                         "unknown",
                         job);
#endif
}

dml_status_t dml__slurm_requeue(uint32_t job)
{
#ifdef HAVE_SLURM
    char state[32];

    /* slurmctld requeues a cancelled batch job as readily as a running one
     * (it is finished), which would bring back a job its user ended. */
    if (dml__slurm_job_state(job, state, sizeof(state)) == DML_OK &&
        strcmp(state, "CANCELLED") == 0)
        return dml_error_set(DML_ERR_INTERRUPTED, "job %u was cancelled (scancel): not requeued",
                             job);
    dml_error_clear();
    slurm_init(NULL);
    if (slurm_requeue(job, 0) != SLURM_SUCCESS)
        return dml_error_set(DML_ERR_REMOTE, "job %u: slurmctld refused to requeue it: %s", job,
                             slurm_strerror(slurm_get_errno()));
    return DML_OK;
#else
    return dml_error_set(DML_ERR_UNSUPPORTED, "built without Slurm: cannot requeue job %u", job);
#endif
}
