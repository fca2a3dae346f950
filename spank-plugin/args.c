/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * args.c: parsing of the --dml-* option values and of the plugstack.conf
 * arguments. Defaults first, then each key=value; unknown keys are an error
 * (a typo in plugstack.conf must not silently change site policy).
 */
#include "config.h"

#include "args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dml_spank_config_defaults(dml_spank_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled_by_default = 0;
    cfg->bind = 1;
    cfg->override = 0;
    cfg->gpu_ipc = -1; /* auto */
    snprintf(cfg->cache, sizeof(cfg->cache), "%s", "/run/slurm-dml");
}

static int parse_bool(const char *key, const char *v, int *out, char *err, size_t errlen)
{
    if (strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 || strcmp(v, "1") == 0 ||
        strcmp(v, "true") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(v, "no") == 0 || strcmp(v, "off") == 0 || strcmp(v, "0") == 0 ||
        strcmp(v, "false") == 0) {
        *out = 0;
        return 0;
    }
    snprintf(err, errlen, "plugstack.conf: %s=%s: expected yes or no", key, v);
    return -1;
}

static int parse_str(const char *key, const char *v, char *out, size_t outlen, char *err,
                     size_t errlen)
{
    if (*v == '\0' || strlen(v) >= outlen) {
        snprintf(err, errlen, "plugstack.conf: %s: expected a value of 1 to %zu characters", key,
                 outlen - 1);
        return -1;
    }
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

int dml_spank_parse_config(int ac, char **av, dml_spank_config_t *cfg, char *err, size_t errlen)
{
    int i;

    dml_spank_config_defaults(cfg);
    for (i = 0; i < ac; i++) {
        const char *a = av[i], *eq = a ? strchr(a, '=') : NULL;
        char key[32];
        size_t klen;

        if (eq == NULL || eq == a || (klen = (size_t)(eq - a)) >= sizeof(key)) {
            snprintf(err, errlen,
                     "plugstack.conf: argument '%.64s': expected key=value (keys: "
                     "default, bind, override, gpu_ipc, topology, hca_exclude, netdev, cache)",
                     a ? a : "(null)");
            return -1;
        }
        memcpy(key, a, klen);
        key[klen] = '\0';
        eq++;
        if (strcmp(key, "default") == 0) {
            if (parse_bool(key, eq, &cfg->enabled_by_default, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "bind") == 0) {
            if (parse_bool(key, eq, &cfg->bind, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "override") == 0) {
            if (parse_bool(key, eq, &cfg->override, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "gpu_ipc") == 0) {
            if (strcmp(eq, "auto") == 0)
                cfg->gpu_ipc = -1;
            else if (parse_bool(key, eq, &cfg->gpu_ipc, err, errlen) != 0) {
                snprintf(err, errlen, "plugstack.conf: gpu_ipc=%s: expected auto, yes or no", eq);
                return -1;
            }
        } else if (strcmp(key, "topology") == 0) {
            if (parse_str(key, eq, cfg->topology, sizeof(cfg->topology), err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "hca_exclude") == 0) {
            if (parse_str(key, eq, cfg->hca_exclude, sizeof(cfg->hca_exclude), err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "netdev") == 0) {
            if (parse_str(key, eq, cfg->netdev, sizeof(cfg->netdev), err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "cache") == 0) {
            if (parse_str(key, eq, cfg->cache, sizeof(cfg->cache), err, errlen) != 0)
                return -1;
            if (strcmp(cfg->cache, "none") != 0 && cfg->cache[0] != '/') {
                snprintf(err, errlen,
                         "plugstack.conf: cache=%s: expected an absolute directory "
                         "or none",
                         cfg->cache);
                return -1;
            }
        } else {
            snprintf(err, errlen,
                     "plugstack.conf: unknown argument '%s' (keys: default, bind, "
                     "override, gpu_ipc, topology, hca_exclude, netdev, cache)",
                     key);
            return -1;
        }
    }
    return 0;
}

/* sbatch/salloc pass an option given without a value on to the job's steps
 * as the string "(null)" (SLURM_SPANK__SLURM_SPANK_OPTION_dml_dml_gpus). */
static int no_value(const char *v)
{
    return v == NULL || *v == '\0' || strcmp(v, "(null)") == 0;
}

int dml_spank_parse_gpus(const char *value, int *per_task, char *err, size_t errlen)
{
    char *end;
    long v;

    if (no_value(value) || strcmp(value, "auto") == 0) {
        *per_task = 0;
        return 0;
    }
    if (strcmp(value, "none") == 0) {
        *per_task = -1;
        return 0;
    }
    v = strtol(value, &end, 10);
    if (*end != '\0' || value[0] == '-' || value[0] == '+' || value[0] == ' ' || v < 1 ||
        v > DML_TOPO_MAX_GPUS) {
        snprintf(err, errlen, "--dml-gpus=%.32s: expected auto, none, or GPUs per task (1-%d)",
                 value, DML_TOPO_MAX_GPUS);
        return -1;
    }
    *per_task = (int)v;
    return 0;
}

int dml_spank_parse_net(const char *value, dml_net_t *net, char *err, size_t errlen)
{
    if (no_value(value) || strcmp(value, "auto") == 0)
        *net = DML_NET_AUTO;
    else if (strcmp(value, "ib") == 0)
        *net = DML_NET_IB;
    else if (strcmp(value, "tcp") == 0)
        *net = DML_NET_TCP;
    else if (strcmp(value, "shm") == 0)
        *net = DML_NET_SHM;
    else {
        snprintf(err, errlen, "--dml-net=%.32s: expected auto, ib, tcp or shm", value);
        return -1;
    }
    return 0;
}
