/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * rendezvous.h: the step's env:// rendezvous port (PyTorch's MASTER_PORT) and
 * the record of which variables the plugin set, without Slurm, so that both
 * can be unit-tested.
 */
#ifndef DML_SPANK_RENDEZVOUS_H
#define DML_SPANK_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

/* The variable that records, for a task, the variables the plugin set in
 * it, as NAME:HASH (a hash of the value set), comma-separated. A step
 * started from inside such a task (srun --dml-gpus --pty bash, then srun in
 * that shell) finds them in its environment: those still holding the value
 * the plugin gave them are the enclosing step's, not the user's, and are set
 * anew; one the user changed since is the user's. */
#define DML_SPANK_MARKER "DML_SPANK_SET"

/* The step's MASTER_PORT, the same on every node and task of the step.
 * resv_ports: SLURM_STEP_RESV_PORTS ("31001-31003", "31001,31004-31005"), or
 * NULL: its last port, which Slurm reserved for this step alone on its nodes
 * (Slurm reserves one per local task plus one: MPI libraries that use the
 * reservation take them from the first, by local rank). Without a valid
 * reservation: a port in [DML_PORT_BASE, DML_PORT_BASE + DML_PORT_SPAN)
 * from a mix of the job and step ids, which spreads concurrent steps and
 * jobs over the whole range but cannot rule out two sharing one. */
#define DML_PORT_BASE 12000
#define DML_PORT_SPAN 20768 /* up to 32767: below the kernel's ephemeral ports */
unsigned dml_spank_master_port(uint32_t job, uint32_t step, const char *resv_ports);

/* Whether a reserved port list is valid (what dml_spank_master_port uses). */
int dml_spank_resv_ports_ok(const char *resv_ports);

/* Appends name=value's record to the marker's value in buf (len bytes);
 * 0, or -1 if it does not fit (buf unchanged). */
int dml_spank_mark(char *buf, size_t len, const char *name, const char *value);

/* Whether the marker (NULL: none) records name with this value. */
int dml_spank_marked(const char *marker, const char *name, const char *value);

#endif /* DML_SPANK_RENDEZVOUS_H */
