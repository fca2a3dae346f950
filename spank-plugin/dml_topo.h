/*
 * dml_topo.h: which GPU(s), CPU cores, NUMA node and network device each task
 * on a node should use. A plain library over an hwloc topology (the machine's
 * own or a recorded XML file); no Slurm in it. The SPANK plugin applies its
 * answer to each task; dml-topo prints it for admins and tests.
 *
 * The rules:
 *  - GPUs: the step's GPUs are spread evenly over the tasks in blocks (task t
 *    of T gets GPUs [t*G/T...]); with fewer GPUs than tasks, consecutive tasks
 *    share one.
 *  - Cores: a task's locality is its first GPU's NUMA domain (or, without
 *    GPUs, the NUMA nodes in turn); the allowed cores of a domain are split
 *    into equal contiguous parts among the tasks that share it.
 *  - Network: for each of a task's GPUs, the nearest active InfiniBand port by
 *    PCI topology (deepest common ancestor, then same NUMA node); among equally
 *    near ports the least used, so that no port idles while an equally near
 *    one is shared. Without an active port: TCP over the nearest Ethernet
 *    device, or shared memory when asked.
 */
#ifndef DML_TOPO_H
#define DML_TOPO_H

#include "dml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DML_TOPO_MAX_GPUS 64    /* per node */
#define DML_TOPO_MAX_HCAS 64    /* per node */
#define DML_TOPO_STR 1024

typedef enum { DML_NET_AUTO = 0, DML_NET_IB, DML_NET_TCP, DML_NET_SHM } dml_net_t;

const char *dml_net_name(dml_net_t net);

typedef struct dml_topo dml_topo_t;

/* Loads a topology: xml_path (an hwloc XML export), or this machine if NULL.
 * PCI and OS devices are kept: GPUs and NICs are found through them. */
dml_status_t dml_topo_load(const char *xml_path, dml_topo_t **topo_out);
void dml_topo_free(dml_topo_t *topo);

/* Writes the topology as hwloc XML to path, atomically (a temporary file
 * renamed into place), so that later loads skip the PCI scan. */
dml_status_t dml_topo_export(const dml_topo_t *topo, const char *path);

/* What the node has: GPUs (NVIDIA, in PCI bus order, as CUDA with
 * CUDA_DEVICE_ORDER=PCI_BUS_ID and NVML number them) and active IB ports. */
int dml_topo_gpus(const dml_topo_t *topo);
int dml_topo_hcas(const dml_topo_t *topo);

typedef struct {
    unsigned ntasks;         /* tasks of the step on this node (>= 1) */
    /* The step's GPUs, for locality: indices into the node's GPUs, GPU-UUIDs
     * or MIG-... identifiers, comma-separated (SLURM_STEP_GPUS, else
     * CUDA_VISIBLE_DEVICES). NULL: every GPU of the node. "": none. */
    const char *gpus;
    /* The same GPUs as the tasks must name them in CUDA_VISIBLE_DEVICES
     * (position by position; they differ under ConstrainDevices). NULL: gpus. */
    const char *visible;
    const char *cpus;        /* CPUs the step may use ("0-7,16"); NULL: all */
    int gpus_per_task;       /* 0: spread all; > 0: that many; -1: none */
    dml_net_t net;
    const char *hca_exclude; /* HCA names never used ("mlx5_8,mlx5_9"), or NULL */
    const char *netdev;      /* the TCP/socket device to use, or NULL: nearest */
} dml_topo_request_t;

typedef struct {
    int ngpus;
    int gpu[DML_TOPO_MAX_GPUS];   /* positions in the step's GPU list */
    char visible[DML_TOPO_STR];   /* CUDA_VISIBLE_DEVICES for the task */
    char cpus[DML_TOPO_STR];      /* its CPUs (PUs), list form "0-27,112-139" */
    unsigned ncores;              /* whole cores among them */
    int numa;                     /* OS index of its NUMA node, -1 if unknown */
    char hcas[DML_TOPO_STR];      /* "mlx5_0:1[,mlx5_1:1]" for IB, else "" */
    char netdev[64];              /* "ib0", "eno1", "lo" or "" */
    dml_net_t net;                /* IB, TCP or SHM */
    int gpu_local;                /* its cores are local to its first GPU */
} dml_task_map_t;

/*
 * Maps req->ntasks tasks; maps has that many entries. DML_ERR_INVALID_ARG
 * (with a message naming the value) for an unknown GPU, no allowed CPU, more
 * GPUs asked for than the step has, or IB asked for where no port is active.
 */
dml_status_t dml_topo_map(const dml_topo_t *topo, const dml_topo_request_t *req,
                          dml_task_map_t *maps);

#ifdef __cplusplus
}
#endif
#endif /* DML_TOPO_H */
