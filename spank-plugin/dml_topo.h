/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_topo.h: which GPU(s), CPU cores, NUMA node and network device each task
 * on a node should use. A plain library over an hwloc topology (the machine's
 * own or a recorded XML file); no Slurm in it. The SPANK plugin applies its
 * answer to each task; dml-topo prints it for admins and tests.
 *
 * The rules:
 *  - GPUs: the node's NVIDIA GPUs, else its AMD ones. The step's GPUs are
 *    spread evenly over the tasks in blocks starting at GPU floor(t*G/T) for
 *    task t of T, so that with N GPUs per task and fewer tasks than GPUs the
 *    tasks still land on every socket; with fewer GPUs than tasks,
 *    consecutive tasks share one. A GPU the node does not have (a user's
 *    stray CUDA_VISIBLE_DEVICES, a GPU hwloc does not see) is never an
 *    error: on a node without GPUs the list is ignored, elsewhere such a GPU
 *    is handed out as named, without locality.
 *  - Cores: a task's locality is its first GPU's NUMA domain (or, without
 *    GPUs, the NUMA nodes in turn; with fewer such tasks than NUMA nodes,
 *    each takes an equal share of them); the allowed cores of a domain are split
 *    into equal contiguous parts among the tasks that share it (its PUs
 *    where it has no Core objects).
 *  - Network: for each of a task's GPUs, the nearest active InfiniBand port by
 *    PCI topology (deepest common ancestor, then same NUMA node); among equally
 *    near ports the least used, so that no port idles while an equally near
 *    one is shared. Without an active port: TCP over the nearest Ethernet
 *    device, or shared memory when asked.
 */
#ifndef DML_TOPO_H
#define DML_TOPO_H

#include "dml_status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DML_TOPO_MAX_GPUS 64 /* per node */
#define DML_TOPO_MAX_HCAS 64 /* per node */
#define DML_TOPO_STR 1024
/* A GPU list: up to DML_TOPO_MAX_GPUS identifiers of up to 95 characters
 * (MIG-GPU-<uuid>/<gi>/<ci>) and their commas: 28 MIG UUIDs already pass
 * 1023 characters. */
#define DML_TOPO_GPU_TOKEN 96
#define DML_TOPO_GPULIST (DML_TOPO_MAX_GPUS * DML_TOPO_GPU_TOKEN)
/* A network device name (netdev), terminating NUL included. */
#define DML_TOPO_NETDEV 64

typedef enum { DML_NET_AUTO = 0, DML_NET_IB, DML_NET_TCP, DML_NET_SHM } dml_net_t;

const char *dml_net_name(dml_net_t net);

typedef struct dml_topo dml_topo_t;

/* Loads a topology: xml_path (an hwloc XML export), or this machine if NULL.
 * PCI and OS devices are kept: GPUs and NICs are found through them.
 * hwloc's GL, OpenCL, CUDA and Level Zero components are not used: the
 * mapping needs none of them, and the CUDA one would start the CUDA driver
 * inside slurmstepd. */
dml_status_t dml_topo_load(const char *xml_path, dml_topo_t **topo_out);
/* The same from an XML document in memory (len bytes, NUL not needed). */
dml_status_t dml_topo_load_buffer(const char *xml, size_t len, dml_topo_t **topo_out);
void dml_topo_free(dml_topo_t *topo);

/* Keeps hwloc from loading its GL and OpenCL plugins into this process
 * (they bring libX11 and libOpenCL along), and its CUDA and Level Zero ones:
 * sets HWLOC_PLUGINS_BLACKLIST, which hwloc reads when a process first uses
 * it. For the SPANK plugin and dml-topo, called before the first load; a
 * library call that changes the environment, on the caller's request. */
void dml_topo_limit_plugins(void);

/* ---- the topology cache (slurmd's init writes it as root; steps read it).
 * The directory (an absolute path) is made (0755) if missing, and used only
 * if it is a directory reached without following any link (each component
 * of its path is opened with O_NOFOLLOW), owned by root and writable by
 * nobody else; the file is written as a new temporary (O_EXCL, never through a
 * link) with mode 0644 whatever the umask, then renamed into place. A cache
 * is loaded only if it is a regular file owned by root and writable by no
 * one else, and was written on this host by this hwloc: anything else is
 * refused (DML_ERR_MISMATCH, DML_ERR_PERMISSION, ...), naming why, and the
 * caller discovers the topology instead. */
dml_status_t dml_topo_cache_write(const dml_topo_t *topo, const char *dir);
dml_status_t dml_topo_cache_load(const char *dir, dml_topo_t **topo_out);

typedef enum { DML_GPU_NONE = 0, DML_GPU_NVIDIA, DML_GPU_AMD } dml_gpu_kind_t;

/* What the node has: GPUs (NVIDIA, else AMD; in PCI bus order, as CUDA with
 * CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML and ROCm number them), their kind,
 * active IB ports, and InfiniBand HCAs with no active port. */
int dml_topo_gpus(const dml_topo_t *topo);
dml_gpu_kind_t dml_topo_gpu_kind(const dml_topo_t *topo);
int dml_topo_hcas(const dml_topo_t *topo);
int dml_topo_hcas_down(const dml_topo_t *topo);

/* The variable a task's GPUs are chosen with for that kind of GPU:
 * CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, or NULL. */
const char *dml_gpu_visible_var(dml_gpu_kind_t kind);

/* UCX_TLS for a task: the network's transports (rc for InfiniBand, tcp, sm
 * within a node) and, for a task with GPUs, the GPU vendor's memory
 * transports whatever the network: cuda_copy,cuda_ipc for NVIDIA,
 * rocm_copy,rocm_ipc for AMD (without them UCX cannot move GPU buffers, and
 * GPUs of one node would talk through host memory). tcp_only: TCP asked for
 * explicitly, so no shared memory and no GPU IPC between processes, only the
 * GPU copy transport that moves GPU buffers to and from the TCP path. */
const char *dml_topo_ucx_tls(dml_gpu_kind_t kind, dml_net_t net, int has_gpus, int tcp_only);

/* The node's usable InfiniBand ports (active, not in exclude), in PCI order,
 * as "mlx5_0:1,mlx5_1:1": the same on every task of the node. */
void dml_topo_usable_hcas(const dml_topo_t *topo, const char *exclude, char *buf, size_t len);

typedef struct {
    unsigned ntasks; /* tasks of the step on this node (>= 1) */
    /* The step's GPUs, for locality: indices into the node's GPUs, GPU-UUIDs
     * or MIG-... identifiers, comma-separated (SLURM_STEP_GPUS, else
     * CUDA_VISIBLE_DEVICES). NULL: every GPU of the node. "": none. */
    const char *gpus;
    /* The same GPUs as the tasks must name them in CUDA_VISIBLE_DEVICES
     * (position by position; they differ under ConstrainDevices). NULL: gpus. */
    const char *visible;
    const char *cpus;  /* CPUs the step may use ("0-7,16"); NULL: all */
    int gpus_per_task; /* 0: spread all; > 0: that many; -1: none */
    dml_net_t net;
    const char *hca_exclude; /* HCA names never used ("mlx5_8,mlx5_9"), or NULL */
    const char *netdev;      /* the TCP/socket device to use (< DML_TOPO_NETDEV
                                characters), or NULL: nearest */
    /* Out, may be NULL: what was passed over and why ("GPU list \"0\":
     * this node has no GPU; the list is not used"), or "". */
    char *note;
    size_t note_len;
} dml_topo_request_t;

typedef struct {
    int ngpus;
    int gpu[DML_TOPO_MAX_GPUS];     /* positions in the step's GPU list */
    char visible[DML_TOPO_GPULIST]; /* CUDA_VISIBLE_DEVICES for the task */
    char cpus[DML_TOPO_STR];        /* its CPUs (PUs), list form "0-27,112-139" */
    unsigned ncores;                /* whole cores among them */
    int numa;                       /* OS index of its NUMA node, -1 if unknown */
    char hcas[DML_TOPO_STR];        /* "mlx5_0:1[,mlx5_1:1]" for IB, else "" */
    char netdev[DML_TOPO_NETDEV];   /* "ib0", "eno1", "lo" or "" */
    dml_net_t net;                  /* IB, TCP or SHM */
    int gpu_local;                  /* its cores are local to its first GPU */
} dml_task_map_t;

/*
 * Maps req->ntasks tasks; maps has that many entries. DML_ERR_INVALID_ARG
 * (with a message naming the value) for a malformed GPU or CPU list, a GPU
 * named twice (it would be handed to two tasks), no allowed CPU, more GPUs
 * asked for than the step has, IB asked for where no port is active, or a
 * netdev name too long; never for a GPU this node does not have (req->note
 * says what was passed over).
 */
dml_status_t dml_topo_map(const dml_topo_t *topo, const dml_topo_request_t *req,
                          dml_task_map_t *maps);

#ifdef __cplusplus
}
#endif
#endif /* DML_TOPO_H */
