/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * args.h: the plugin's option values and plugstack.conf arguments, parsed
 * without Slurm so that the parser can be unit-tested and fuzzed.
 */
#ifndef DML_SPANK_ARGS_H
#define DML_SPANK_ARGS_H

#include "dml_topo.h"

#include <stddef.h>

/* Site policy from plugstack.conf: "required dml_spank.so key=value ...". */
typedef struct {
    int enabled_by_default; /* default=on: map every step, flag or not */
    int bind;               /* bind=yes: set CPU affinity and memory policy */
    int override;           /* override=yes: replace variables the user set */
    int gpu_ipc;            /* gpu_ipc=auto|yes|no: every task sees all of the step's
                               GPUs, its own first (-1 auto: where the node runs
                               more than one GPU task) [auto] */
    char topology[512];     /* topology=FILE: an hwloc XML instead of this node's */
    char hca_exclude[256];  /* hca_exclude=mlx5_8,mlx5_9 */
    char netdev[64];        /* netdev=NAME: the TCP/socket device */
    char cache[512];        /* cache=DIR: where slurmd keeps the node's topology
                               [/run/slurm-dml]; cache=none: discover each step */
} dml_spank_config_t;

void dml_spank_config_defaults(dml_spank_config_t *cfg);

/* Parses plugstack arguments; 0, or -1 with the reason in err. Unknown keys
 * and malformed values are refused, naming what is accepted. */
int dml_spank_parse_config(int ac, char **av, dml_spank_config_t *cfg, char *err, size_t errlen);

/* --dml-gpus[=auto|none|N]: *per_task 0 (auto), -1 (none) or N. */
int dml_spank_parse_gpus(const char *value, int *per_task, char *err, size_t errlen);

/* --dml-net=auto|ib|tcp|shm */
int dml_spank_parse_net(const char *value, dml_net_t *net, char *err, size_t errlen);

#endif /* DML_SPANK_ARGS_H */
