/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-topo: prints the task mapping the SPANK plugin would apply on a node,
 * for the local machine or a recorded hwloc XML topology. For admins checking
 * a node before enabling the plugin, and for tests.
 *
 *   dml-topo [--xml FILE] [--tasks N] [--gpus LIST] [--visible LIST]
 *            [--cpus LIST] [--gpus-per-task N|none] [--net auto|ib|tcp|shm]
 *            [--hca-exclude LIST] [--netdev NAME]
 */
#include "config.h"

#include "dml_log.h"
#include "dml_topo.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: dml-topo [OPTIONS]\n"
            "Prints, for each local task, the GPU(s), CPUs, NUMA node and network device\n"
            "that srun --dml-gpus would give it.\n\n"
            "  --xml FILE            an hwloc XML topology [this machine]\n"
            "  --tasks N             local tasks [1]\n"
            "  --gpus LIST           the step's GPUs: indices, GPU-/MIG- ids [all of the node's]\n"
            "  --visible LIST        the same GPUs as CUDA_VISIBLE_DEVICES names them\n"
            "  --cpus LIST           CPUs the step may use, e.g. 0-15 [all]\n"
            "  --gpus-per-task N     GPUs per task, or none [spread all]\n"
            "  --net auto|ib|tcp|shm network to set up [auto]\n"
            "  --hca-exclude LIST    HCAs never used, e.g. mlx5_8,mlx5_9\n"
            "  --netdev NAME         socket/TCP device to use [nearest Ethernet]\n");
}

/* --net's value into *net; -1 (said) when it is none of them. */
static int parse_net(const char *s, dml_net_t *net)
{
    if (strcmp(s, "auto") == 0)
        *net = DML_NET_AUTO;
    else if (strcmp(s, "ib") == 0)
        *net = DML_NET_IB;
    else if (strcmp(s, "tcp") == 0)
        *net = DML_NET_TCP;
    else if (strcmp(s, "shm") == 0)
        *net = DML_NET_SHM;
    else {
        dml_error("--net '%s': expected auto, ib, tcp or shm", s);
        return -1;
    }
    return 0;
}

/* The options into req and *xml. Returns -1 when they are sound and
 * dml-topo goes on, else the exit code (0 after --help). */
static int parse_args(int argc, char **argv, dml_topo_request_t *req, const char **xml)
{
    static const struct option opts[] = {{"xml", required_argument, 0, 'x'},
                                         {"tasks", required_argument, 0, 'n'},
                                         {"gpus", required_argument, 0, 'g'},
                                         {"visible", required_argument, 0, 'v'},
                                         {"cpus", required_argument, 0, 'c'},
                                         {"gpus-per-task", required_argument, 0, 'p'},
                                         {"net", required_argument, 0, 'N'},
                                         {"hca-exclude", required_argument, 0, 'e'},
                                         {"netdev", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char *end;
    long v;
    int c;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'x':
            *xml = optarg;
            break;
        case 'n':
            v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 4096) {
                dml_error("--tasks '%s': expected a number from 1 to 4096", optarg);
                return 2;
            }
            req->ntasks = (unsigned)v;
            break;
        case 'g':
            req->gpus = optarg;
            break;
        case 'v':
            req->visible = optarg;
            break;
        case 'c':
            req->cpus = optarg;
            break;
        case 'p':
            if (strcmp(optarg, "none") == 0) {
                req->gpus_per_task = -1;
                break;
            }
            v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > DML_TOPO_MAX_GPUS) {
                dml_error("--gpus-per-task '%s': expected none or a number from 1 to %d", optarg,
                          DML_TOPO_MAX_GPUS);
                return 2;
            }
            req->gpus_per_task = (int)v;
            break;
        case 'N':
            if (parse_net(optarg, &req->net) != 0)
                return 2;
            break;
        case 'e':
            req->hca_exclude = optarg;
            break;
        case 'd':
            req->netdev = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        dml_error("unexpected argument '%s' (see --help)", argv[optind]);
        return 2;
    }
    return -1;
}

/* The node's summary line, the mapping's note, and one line per task. */
static void print_mapping(const dml_topo_t *topo, const dml_topo_request_t *req,
                          const dml_task_map_t *maps, const char *xml)
{
    unsigned k;

    printf("# node: %d GPUs%s, %d active InfiniBand ports", dml_topo_gpus(topo),
           dml_topo_gpu_kind(topo) == DML_GPU_AMD ? " (AMD)" : "", dml_topo_hcas(topo));
    if (dml_topo_hcas_down(topo) > 0)
        printf(", %d InfiniBand HCAs with no active port", dml_topo_hcas_down(topo));
    printf("%s%s\n", xml ? "; topology " : "", xml ? xml : "");
    if (req->note[0] != '\0')
        printf("# note: %s\n", req->note);
    for (k = 0; k < req->ntasks; k++) {
        const dml_task_map_t *m = &maps[k];
        printf("task %u: gpus=%s cpus=%s cores=%u numa=%d net=%s hca=%s netdev=%s\n", k,
               m->ngpus ? m->visible : "-", m->cpus, m->ncores, m->numa, dml_net_name(m->net),
               m->hcas[0] ? m->hcas : "-", m->netdev[0] ? m->netdev : "-");
    }
}

int main(int argc, char **argv)
{
    dml_topo_request_t req;
    dml_task_map_t *maps;
    char note[512] = "";
    dml_topo_t *topo;
    const char *xml = NULL;
    int rc;

    dml_log_init("dml-topo", -1);
    dml_topo_limit_plugins();
    memset(&req, 0, sizeof(req));
    req.ntasks = 1;
    req.note = note;
    req.note_len = sizeof(note);
    if ((rc = parse_args(argc, argv, &req, &xml)) >= 0)
        return rc;
    if (dml_topo_load(xml, &topo) != DML_OK) {
        dml_error("%s", dml_error_message());
        return 1;
    }
    maps = calloc(req.ntasks, sizeof(*maps));
    if (maps == NULL || dml_topo_map(topo, &req, maps) != DML_OK) {
        dml_error("%s", maps ? dml_error_message() : "no memory");
        free(maps);
        dml_topo_free(topo);
        return 1;
    }
    print_mapping(topo, &req, maps, xml);
    free(maps);
    dml_topo_free(topo);
    return 0;
}
