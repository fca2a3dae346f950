/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_spank.c: the SPANK plugin. srun --dml-gpus maps each task to its GPU(s),
 * the cores and NUMA node near them and the nearest InfiniBand port (dml_topo.h),
 * binds the task there and sets up UCX, NCCL, Open MPI and the usual framework
 * variables (PyTorch's env:// rendezvous included) for that network.
 *
 * Contexts (Slurm 22.05):
 *  - init in slurmd (as root, once at its start): discover this node's
 *    topology (a PCI scan, ~10 ms) and keep it as XML in the cache directory,
 *    written as a root daemon must (topo_cache.c), so that each step loads
 *    it in ~2 ms instead;
 *  - init (every job context): parse plugstack.conf arguments, register the
 *    options (so srun, sbatch and salloc all accept them);
 *  - option callbacks (srun/sbatch/salloc, and again in slurmstepd): check
 *    the values, so that srun refuses bad ones before anything is launched;
 *  - user_init (slurmstepd, once per node and step): compute the node's
 *    mapping and the step's rendezvous address; an error here would only
 *    reach slurmd's log, so it is kept
 *  - task_init (each task, just before exec): report a kept error (the user
 *    sees it and the task fails), else bind and set the environment.
 * Batch and extern steps are left alone. hwloc is kept from loading its GL,
 * OpenCL, CUDA and Level Zero plugins into slurmd and slurmstepd.
 */
#include "config.h"

#include "args.h"
#include "dml_topo.h"
#include "rendezvous.h"
#include "ucx_probe.h"

#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <slurm/slurm.h>
#include <slurm/spank.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

SPANK_PLUGIN(dml, 1);

#define MPOL_PREFERRED 1

/*
 * Everything the plugin keeps between its callbacks, in one place (as pyxis
 * keeps its plugin_context): the option callbacks write into it, user_init
 * fills the mapping, task_init reads it, and slurm_spank_exit resets it, so
 * that a process that loads the plugin again starts from the defaults.
 */
struct dml_spank_ctx {
    dml_spank_config_t cfg;
    int requested; /* a --dml-* option was given */
    int per_task;  /* --dml-gpus value */
    int net_explicit;
    dml_net_t net;
    int verbose;
    int ipc_given;        /* --dml-gpu-ipc or --dml-gpu-isolate, else the site's */
    int ipc;              /* --dml-gpu-ipc (1), --dml-gpu-isolate (0) */
    int active;           /* user_init took this step: task_init maps its tasks */
    dml_task_map_t *maps; /* owned: freed by dml__ctx_reset */
    unsigned ntasks;
    char error[1024];
    char note[512];                      /* what the mapping passed over (verbose) */
    char step_visible[DML_TOPO_GPULIST]; /* all step GPUs, for their visibility */
    const char *gpu_var;                 /* CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES or NULL */
    dml_gpu_kind_t gpu_kind;
    char node_hcas[DML_TOPO_STR]; /* every usable port of the node */
    int hcas_down;                /* HCAs without an active port */
    char master_addr[256], master_port[16];
    int het;                /* a heterogeneous step: one world over its components */
    uint32_t world;         /* the step's tasks, all components together */
    char port_warning[512]; /* MASTER_PORT found in use on the first node */
    char set[2048];         /* what this task was given (DML_SPANK_MARKER) */
    /* The variables the plugin set in the enclosing task, if this step was
     * started from one (DML_SPANK_SET in the environment it inherited). */
    char inherited[2048];
};

/* All zero is the defaults (DML_NET_AUTO is 0): nothing asked, no step. */
static struct dml_spank_ctx ctx;

/* Frees what the context owns and puts back the defaults. */
static void dml__ctx_reset(void)
{
    free(ctx.maps);
    memset(&ctx, 0, sizeof(ctx));
}

static int opt_gpus(int val, const char *optarg, int remote)
{
    char err[256];

    (void)val;
    (void)remote;
    if (dml_spank_parse_gpus(optarg, &ctx.per_task, err, sizeof(err)) != 0) {
        slurm_error("dml: %s", err);
        return -1;
    }
    ctx.requested = 1;
    return 0;
}

static int opt_net(int val, const char *optarg, int remote)
{
    char err[256];

    (void)val;
    (void)remote;
    if (dml_spank_parse_net(optarg, &ctx.net, err, sizeof(err)) != 0) {
        slurm_error("dml: %s", err);
        return -1;
    }
    ctx.net_explicit = ctx.net != DML_NET_AUTO;
    ctx.requested = 1;
    return 0;
}

static int opt_verbose(int val, const char *optarg, int remote)
{
    (void)val;
    (void)optarg;
    (void)remote;
    ctx.verbose = 1;
    return 0;
}

static int opt_ipc(int val, const char *optarg, int remote)
{
    (void)optarg;
    (void)remote;
    ctx.ipc = val;
    ctx.ipc_given = 1;
    return 0;
}

/* A table, not state: Slurm takes it by a pointer that is not const. */
static struct spank_option dml__options[] = {
    {"dml-gpus", "[auto|N|none]",
     "Map each task to its GPU(s) and the cores, memory and InfiniBand port near them "
     "(auto: spread the step's GPUs; N: GPUs per task; none: cores and network only)",
     2, 0, opt_gpus},
    {"dml-net", "auto|ib|tcp|shm",
     "Set up UCX, NCCL and Open MPI for this network (auto: InfiniBand where a port is "
     "active, else TCP; shm: one node only)",
     1, 0, opt_net},
    {"dml-verbose", NULL, "Print each task's mapping, the variables set and what UCX finds", 0, 0,
     opt_verbose},
    {"dml-gpu-ipc", NULL,
     "Each task sees all of the step's GPUs, its own first (the default where a node runs more "
     "than one GPU task: NCCL and CUDA IPC need to see the peers)",
     0, 1, opt_ipc},
    {"dml-gpu-isolate", NULL, "Each task sees its own GPU(s) only", 0, 0, opt_ipc},
    SPANK_OPTIONS_TABLE_END};

/* slurmd's init: keep this node's topology where the steps will find it. */
static int slurmd_cache_topology(void)
{
    dml_topo_t *topo = NULL;

    if (ctx.cfg.topology[0] != '\0' || strcmp(ctx.cfg.cache, "none") == 0)
        return 0;
    /* A cache that cannot be written only costs time: log it and go on. */
    if (dml_topo_load(NULL, &topo) != DML_OK || dml_topo_cache_write(topo, ctx.cfg.cache) != DML_OK)
        slurm_info("dml: topology cache: %s; steps will discover the topology",
                   dml_error_message());
    dml_topo_free(topo);
    return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    spank_context_t where = spank_context();
    char err[512];
    int i;

    if (dml_spank_parse_config(ac, av, &ctx.cfg, err, sizeof(err)) != 0) {
        slurm_error("dml: %s", err);
        return -1;
    }
    if (where == S_CTX_SLURMD || where == S_CTX_REMOTE)
        dml_topo_limit_plugins();
    if (where == S_CTX_SLURMD)
        return slurmd_cache_topology();
    if (where != S_CTX_LOCAL && where != S_CTX_REMOTE && where != S_CTX_ALLOCATOR)
        return 0;
    for (i = 0; dml__options[i].name != NULL; i++) {
        if (spank_option_register(sp, &dml__options[i]) != ESPANK_SUCCESS) {
            slurm_error("dml: cannot register --%s", dml__options[i].name);
            return -1;
        }
    }
    return 0;
}

/* 1 if name is set and not empty; 0 if not; -1 if its value does not fit
 * in buf (for a GPU list: an error, never taken as absent, which would
 * quietly put another list in its place). */
static int get_env(spank_t sp, const char *name, char *buf, int len)
{
    spank_err_t rc = spank_getenv(sp, name, buf, len);

    if (rc == ESPANK_NOSPACE)
        return -1;
    return rc == ESPANK_SUCCESS && buf[0] != '\0';
}

/* This process's CPUs as a list ("0-3,8"): Slurm's and cgroups' limits. */
static int allowed_cpus(char *out, size_t len)
{
    cpu_set_t set;
    size_t used = 0;
    int c, start = -1;

    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return -1;
    out[0] = '\0';
    for (c = 0; c <= CPU_SETSIZE; c++) {
        int in = c < CPU_SETSIZE && CPU_ISSET(c, &set);
        if (in && start < 0)
            start = c;
        if (!in && start >= 0) {
            int n =
                start == c - 1
                    ? snprintf(out + used, len - used, "%s%d", used ? "," : "", start)
                    : snprintf(out + used, len - used, "%s%d-%d", used ? "," : "", start, c - 1);
            if (n < 0 || (size_t)n >= len - used)
                return -1;
            used += (size_t)n;
            start = -1;
        }
    }
    return 0;
}

/* Whether TCP port is free on this node for a listener such as PyTorch's
 * TCPStore (which sets SO_REUSEADDR: a port in TIME-WAIT is free to it). */
static int port_free(unsigned port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, ok;

    if (fd < 0)
        return 1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno != EADDRINUSE;
    close(fd);
    return ok;
}

static int env_u32(spank_t sp, const char *name, uint32_t *out)
{
    char buf[32], *end;
    unsigned long v;

    if (spank_getenv(sp, name, buf, sizeof(buf)) != ESPANK_SUCCESS || buf[0] < '0' || buf[0] > '9')
        return 0;
    v = strtoul(buf, &end, 10);
    if (*end != '\0' || v > UINT32_MAX)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

/*
 * The step's rendezvous for frameworks' env:// (PyTorch's MASTER_ADDR and
 * MASTER_PORT), the same on every node and task of the step. Rank 0 runs on
 * the step's first node (in a heterogeneous step: its first component's
 * first node), and the address is that node's NodeAddr as slurmctld knows it
 * (what other nodes reach it by; node names need not resolve, and on the
 * local test cluster they do not), else its name. The port is Slurm's
 * reservation for the step where the site configured one (MpiParams=ports:
 * no other step on the node has it), else derived from the ids of the job
 * (the heterogeneous job's leader: the same in every component) and step;
 * then the first node checks that it is free, and says so if not.
 */
static void rendezvous(spank_t sp, uint32_t job, uint32_t step)
{
    char nodes[4096], resv[256] = "", self[256] = "", marker[2048] = "", cur[16];
    spank_err_t have_port;
    node_info_msg_t *info = NULL;
    hostlist_t hl;
    char *first = NULL;
    uint32_t leader;
    int reserved;

    ctx.master_addr[0] = '\0';
    ctx.port_warning[0] = '\0';
    if (env_u32(sp, "SLURM_JOB_ID", &leader))
        job = leader;
    if (spank_getenv(sp, "SLURM_STEP_RESV_PORTS", resv, sizeof(resv)) != ESPANK_SUCCESS)
        resv[0] = '\0';
    reserved = dml_spank_resv_ports_ok(resv);
    snprintf(ctx.master_port, sizeof(ctx.master_port), "%u",
             dml_spank_master_port(job, step, resv));
    if (!(ctx.het && (get_env(sp, "SLURM_JOB_NODELIST_HET_GROUP_0", nodes, sizeof(nodes)) > 0 ||
                      get_env(sp, "SLURM_JOB_NODELIST_PACK_GROUP_0", nodes, sizeof(nodes)) > 0)) &&
        get_env(sp, "SLURM_STEP_NODELIST", nodes, sizeof(nodes)) <= 0 &&
        get_env(sp, "SLURM_JOB_NODELIST", nodes, sizeof(nodes)) <= 0)
        return;
    if ((hl = slurm_hostlist_create(nodes)) == NULL)
        return;
    first = slurm_hostlist_shift(hl);
    slurm_hostlist_destroy(hl);
    if (first == NULL)
        return;
    snprintf(ctx.master_addr, sizeof(ctx.master_addr), "%s", first);
    /* Without a reservation two steps may draw the same port: where rank 0
     * will listen, a port already taken is said before the step's rank 0
     * fails on it (or, worse, its other ranks join another step's store).
     * Only where the plugin sets MASTER_PORT (not the user's own). */
    if (spank_getenv(sp, DML_SPANK_MARKER, marker, sizeof(marker)) != ESPANK_SUCCESS)
        marker[0] = '\0';
    have_port = spank_getenv(sp, "MASTER_PORT", cur, sizeof(cur));
    if (!reserved && spank_getenv(sp, "SLURMD_NODENAME", self, sizeof(self)) == ESPANK_SUCCESS &&
        strcmp(self, first) == 0 &&
        (ctx.cfg.override || have_port == ESPANK_ENV_NOEXIST ||
         (have_port == ESPANK_SUCCESS && dml_spank_marked(marker, "MASTER_PORT", cur))) &&
        !port_free((unsigned)atoi(ctx.master_port)))
        snprintf(ctx.port_warning, sizeof(ctx.port_warning),
                 "MASTER_PORT %s is already in use on %s "
                 "(another step's rendezvous?): this step's rank 0 cannot listen there. Set "
                 "MASTER_PORT yourself, or ask the site to reserve ports for steps "
                 "(MpiParams=ports= in slurm.conf)",
                 ctx.master_port, self);
    if (slurm_load_node_single(&info, first, SHOW_ALL) == SLURM_SUCCESS && info != NULL &&
        info->record_count > 0 && info->node_array[0].node_addr != NULL &&
        info->node_array[0].node_addr[0] != '\0')
        snprintf(ctx.master_addr, sizeof(ctx.master_addr), "%s", info->node_array[0].node_addr);
    if (info != NULL)
        slurm_free_node_info_msg(info);
    free(first);
}

/* The step's tasks on all nodes: a heterogeneous step (srun A : B) is one
 * world: Slurm numbers its tasks across the components (SLURM_PROCID) and
 * counts them all in SLURM_STEP_NUM_TASKS, while each component's own count
 * is smaller. */
static void step_world(spank_t sp)
{
    uint32_t total = 0, step_tasks = 0;

    spank_get_item(sp, S_JOB_TOTAL_TASK_COUNT, &total);
    ctx.world = total;
    ctx.het = env_u32(sp, "SLURM_STEP_NUM_TASKS", &step_tasks) && step_tasks > total;
    if (ctx.het)
        ctx.world = step_tasks;
}

/* The site's topology file, else slurmd's cache, else discovery. Returns
 * -1 with ctx.error set when there is none. */
static int step_topology(dml_topo_t **topo)
{
    const char *why = NULL;

    if (ctx.cfg.topology[0] != '\0') {
        if (dml_topo_load(ctx.cfg.topology, topo) != DML_OK)
            why = dml_error_message();
    } else if (strcmp(ctx.cfg.cache, "none") == 0 ||
               dml_topo_cache_load(ctx.cfg.cache, topo) != DML_OK) {
        if (strcmp(ctx.cfg.cache, "none") != 0)
            snprintf(ctx.note, sizeof(ctx.note), "topology cache not used (%s)",
                     dml_error_message());
        if (dml_topo_load(NULL, topo) != DML_OK)
            why = dml_error_message();
    }
    if (why != NULL) {
        snprintf(ctx.error, sizeof(ctx.error), "%s", why);
        return -1;
    }
    return 0;
}

/* The step's GPUs as Slurm names them: the request points into it. */
typedef struct {
    char gpus[DML_TOPO_GPULIST], visible[DML_TOPO_GPULIST];
    int have_gpus, have_visible;
} step_gpus_t;

/* Fills req's GPU lists from the step's environment. SLURM_STEP_GPUS names
 * the node's GPUs (locality); the GPU kind's visibility variable names them
 * as the tasks must (renumbered under ConstrainDevices). Returns -1 with
 * ctx.error set when a list is too long to take whole. */
static int step_gpus(spank_t sp, const dml_topo_t *topo, step_gpus_t *sg, dml_topo_request_t *req)
{
    const char *gpus_var = "SLURM_STEP_GPUS";

    ctx.gpu_kind = dml_topo_gpu_kind(topo);
    ctx.gpu_var = dml_gpu_visible_var(ctx.gpu_kind);
    sg->have_gpus = get_env(sp, "SLURM_STEP_GPUS", sg->gpus, sizeof(sg->gpus));
    if (sg->have_gpus == 0)
        sg->have_gpus = get_env(sp, gpus_var = "SLURM_JOB_GPUS", sg->gpus, sizeof(sg->gpus));
    sg->have_visible =
        ctx.gpu_var != NULL ? get_env(sp, ctx.gpu_var, sg->visible, sizeof(sg->visible)) : 0;
    if (sg->have_gpus < 0 || sg->have_visible < 0) {
        snprintf(ctx.error, sizeof(ctx.error),
                 "%s is longer than the %zu characters of %d GPU "
                 "identifiers the plugin takes",
                 sg->have_gpus < 0 ? gpus_var : ctx.gpu_var, sizeof(sg->gpus) - 1,
                 DML_TOPO_MAX_GPUS);
        return -1;
    }
    if (sg->have_gpus) {
        req->gpus = sg->gpus;
        req->visible = sg->have_visible ? sg->visible : NULL;
    } else if (sg->have_visible) {
        req->gpus = sg->visible;
    } else if (ctx.gpu_var == NULL &&
               get_env(sp, "CUDA_VISIBLE_DEVICES", sg->visible, sizeof(sg->visible)) > 0) {
        req->gpus = sg->visible; /* a node without GPUs: passed over, and said so */
    }
    return 0;
}

/* Maps the node's tasks and keeps, for task_init, what they share: the
 * step's GPUs, the node's ports and the rendezvous. A failure is kept in
 * ctx.error. */
static void step_map(spank_t sp, const dml_topo_t *topo, const dml_topo_request_t *req,
                     const step_gpus_t *sg, uint32_t jobid, uint32_t stepid)
{
    ctx.maps = calloc(req->ntasks, sizeof(*ctx.maps));
    if (ctx.maps == NULL) {
        snprintf(ctx.error, sizeof(ctx.error), "no memory for %u task mappings", req->ntasks);
        return;
    }
    if (dml_topo_map(topo, req, ctx.maps) != DML_OK) {
        snprintf(ctx.error, sizeof(ctx.error), "%s", dml_error_message());
        return;
    }
    ctx.ntasks = req->ntasks;
    snprintf(ctx.step_visible, sizeof(ctx.step_visible), "%s",
             sg->have_visible ? sg->visible
             : sg->have_gpus  ? sg->gpus
                              : "");
    /* No GPU list (no GRES): the step has all of the node's GPUs. */
    if (req->gpus == NULL) {
        int g;
        size_t used = 0;
        for (g = 0; g < dml_topo_gpus(topo); g++)
            used += (size_t)snprintf(ctx.step_visible + used, sizeof(ctx.step_visible) - used,
                                     "%s%d", g ? "," : "", g);
    }
    dml_topo_usable_hcas(topo, req->hca_exclude, ctx.node_hcas, sizeof(ctx.node_hcas));
    ctx.hcas_down = dml_topo_hcas_down(topo);
    rendezvous(sp, jobid, stepid);
}

int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
    char cpus[DML_TOPO_STR], mapnote[256] = "";
    dml_topo_request_t req;
    dml_topo_t *topo = NULL;
    step_gpus_t sg;
    uint32_t jobid = 0, stepid = 0, ntasks = 0;

    (void)ac;
    (void)av;
    ctx.active = 0;
    if (spank_get_item(sp, S_JOB_STEPID, &stepid) != ESPANK_SUCCESS || stepid >= SLURM_BATCH_SCRIPT)
        return 0;
    if (!ctx.requested && !ctx.cfg.enabled_by_default)
        return 0;
    ctx.active = 1;
    if (spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &ntasks) != ESPANK_SUCCESS || ntasks == 0) {
        snprintf(ctx.error, sizeof(ctx.error), "cannot get the number of local tasks");
        return 0;
    }
    spank_get_item(sp, S_JOB_ID, &jobid);
    step_world(sp);
    if (step_topology(&topo) != 0)
        return 0;

    memset(&req, 0, sizeof(req));
    req.ntasks = ntasks;
    req.gpus_per_task = ctx.per_task; /* auto where only default=on asked */
    req.net = ctx.net;
    req.hca_exclude = ctx.cfg.hca_exclude[0] ? ctx.cfg.hca_exclude : NULL;
    req.netdev = ctx.cfg.netdev[0] ? ctx.cfg.netdev : NULL;
    req.note = mapnote;
    req.note_len = sizeof(mapnote);
    if (step_gpus(sp, topo, &sg, &req) != 0) {
        dml_topo_free(topo);
        return 0;
    }
    /* A recorded topology is another machine's: its CPUs are not ours. */
    if (ctx.cfg.topology[0] == '\0' && allowed_cpus(cpus, sizeof(cpus)) == 0)
        req.cpus = cpus;
    step_map(sp, topo, &req, &sg, jobid, stepid);
    if (mapnote[0] != '\0') {
        size_t used = strlen(ctx.note);
        snprintf(ctx.note + used, sizeof(ctx.note) - used, "%s%s", used ? "; " : "", mapnote);
    }
    dml_topo_free(topo);
    return 0;
}

/* Sets name=value for the task unless the user set it (or the site says
 * override); a value the plugin itself set for an enclosing step is not the
 * user's and is replaced. Returns 1 if set. */
static int set_var(spank_t sp, const char *name, const char *value, int force, char *log,
                   size_t loglen)
{
    static char cur[DML_TOPO_GPULIST + 1024];
    size_t l = strlen(log);
    spank_err_t rc = spank_getenv(sp, name, cur, sizeof(cur));

    /* NOSPACE: it exists, longer than cur (so not a value of the plugin's). */
    if (!force && !ctx.cfg.override && (rc == ESPANK_SUCCESS || rc == ESPANK_NOSPACE) &&
        !(rc == ESPANK_SUCCESS && dml_spank_marked(ctx.inherited, name, cur))) {
        snprintf(log + l, loglen - l, " %s(kept)", name);
        return 0;
    }
    if (spank_setenv(sp, name, value, 1) != ESPANK_SUCCESS)
        return 0;
    snprintf(log + l, loglen - l, " %s=%s", name, value);
    dml_spank_mark(ctx.set, sizeof(ctx.set), name, value);
    return 1;
}

static int apply_binding(const dml_task_map_t *m)
{
    cpu_set_t set;
    const char *p = m->cpus;

    CPU_ZERO(&set);
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        for (; a <= b && a < CPU_SETSIZE; a++)
            CPU_SET((int)a, &set);
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return -1;
    }
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        return -1;
    /* Preferred, not strict: memory comes from the task's NUMA node while
     * it has room, and from elsewhere rather than an OOM kill when not. */
    if (m->numa >= 0 && m->numa < 1024) {
        unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
        mask[m->numa / (8 * sizeof(unsigned long))] |= 1UL
                                                       << (m->numa % (8 * sizeof(unsigned long)));
        syscall(SYS_set_mempolicy, MPOL_PREFERRED, mask, (unsigned long)1024);
    }
    return 0;
}

/* The task's GPUs as it must see them: its own, then (ipc) the step's
 * others in order, so that device 0 is its own and NCCL and CUDA IPC still
 * see the GPUs of the node's other ranks. */
static void gpu_list(const dml_task_map_t *m, int ipc, char *out, size_t len)
{
    char tok[DML_TOPO_GPULIST], own[DML_TOPO_GPULIST + 2], pat[DML_TOPO_GPU_TOKEN + 2],
        *save = NULL, *t;

    snprintf(out, len, "%s", m->visible);
    if (!ipc || ctx.step_visible[0] == '\0')
        return;
    snprintf(tok, sizeof(tok), "%s", ctx.step_visible);
    snprintf(own, sizeof(own), ",%s,", m->visible);
    for (t = strtok_r(tok, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        snprintf(pat, sizeof(pat), ",%s,", t);
        if (strstr(own, pat) == NULL && strlen(out) + strlen(t) + 2 < len) {
            strcat(out, ",");
            strcat(out, t);
        }
    }
}

/* The task's GPUs are what --dml-gpus is for: always set. Where the node
 * runs more than one GPU task, each sees the others' GPUs after its own
 * (unless --dml-gpu-isolate): with one GPU each, NCCL cannot find the
 * NVLink between local ranks and CUDA IPC between them fails. */
static void task_set_gpus(spank_t sp, const dml_task_map_t *m, char *log, size_t loglen)
{
    char visible[DML_TOPO_GPULIST];
    unsigned k, gpu_tasks = 0;
    int ipc;

    for (k = 0; k < ctx.ntasks; k++)
        gpu_tasks += ctx.maps[k].ngpus > 0;
    ipc = ctx.ipc_given ? ctx.ipc : ctx.cfg.gpu_ipc >= 0 ? ctx.cfg.gpu_ipc : gpu_tasks > 1;
    if (m->ngpus > 0 && ctx.gpu_var != NULL) {
        gpu_list(m, ipc, visible, sizeof(visible));
        set_var(sp, ctx.gpu_var, visible, 1, log, loglen);
    }
}

/* The network variables of UCX, NCCL, Gloo and Open MPI for the task's
 * network. NCCL: every usable port of the node, the same on every rank
 * (NCCL picks each GPU's nearest NIC itself, and lists that differ between
 * ranks break its rings); "=": these names exactly, not as prefixes. UCX:
 * this task's own port. */
static void task_set_net(spank_t sp, const dml_task_map_t *m, char *log, size_t loglen)
{
    char hcas[DML_TOPO_STR + 1], ifname[72];

    snprintf(ifname, sizeof(ifname), "=%s", m->netdev);
    switch (m->net) {
    case DML_NET_IB: {
        char first[64];
        snprintf(first, sizeof(first), "%.*s", (int)strcspn(m->hcas, ","), m->hcas);
        snprintf(hcas, sizeof(hcas), "=%s", ctx.node_hcas);
        set_var(sp, "OMPI_MCA_pml", "ucx", 0, log, loglen);
        set_var(sp, "UCX_NET_DEVICES", first, 0, log, loglen);
        set_var(sp, "UCX_TLS", dml_topo_ucx_tls(ctx.gpu_kind, m->net, m->ngpus > 0, 0), 0, log,
                loglen);
        set_var(sp, "NCCL_IB_HCA", hcas, 0, log, loglen);
        if (m->netdev[0]) {
            set_var(sp, "NCCL_SOCKET_IFNAME", ifname, 0, log, loglen);
            set_var(sp, "GLOO_SOCKET_IFNAME", m->netdev, 0, log, loglen);
        }
        break;
    }
    case DML_NET_TCP:
    case DML_NET_SHM:
        /* Open MPI's UCX layer refuses to start without RDMA devices unless
         * told that any transport will do. */
        set_var(sp, "OMPI_MCA_pml", "ucx", 0, log, loglen);
        set_var(sp, "OMPI_MCA_pml_ucx_tls", "any", 0, log, loglen);
        set_var(sp, "OMPI_MCA_pml_ucx_devices", "any", 0, log, loglen);
        /* Asked for TCP: TCP only; chosen for want of InfiniBand: TCP
         * between nodes, shared memory within one. A GPU task gets its
         * vendor's GPU transports either way (dml_topo_ucx_tls). */
        set_var(sp, "UCX_TLS",
                dml_topo_ucx_tls(ctx.gpu_kind, m->net, m->ngpus > 0,
                                 m->net == DML_NET_TCP && ctx.net_explicit),
                0, log, loglen);
        if (m->net == DML_NET_TCP && m->netdev[0])
            set_var(sp, "UCX_NET_DEVICES", m->netdev, 0, log, loglen);
        set_var(sp, "NCCL_IB_DISABLE", "1", 0, log, loglen);
        if (m->netdev[0]) {
            set_var(sp, "NCCL_SOCKET_IFNAME", ifname, 0, log, loglen);
            set_var(sp, "GLOO_SOCKET_IFNAME", m->netdev, 0, log, loglen);
        }
        break;
    case DML_NET_AUTO:
        break;
    }
}

/* Threads per task, and the ranks, sizes and rendezvous of the
 * frameworks' env:// (PyTorch's torchrun variables). */
static void task_set_ranks(spank_t sp, const dml_task_map_t *m, int taskid, uint32_t global,
                           char *log, size_t loglen)
{
    char num[32];

    snprintf(num, sizeof(num), "%u", m->ncores ? m->ncores : 1);
    set_var(sp, "OMP_NUM_THREADS", num, 0, log, loglen);
    set_var(sp, "OPENBLAS_NUM_THREADS", num, 0, log, loglen);
    snprintf(num, sizeof(num), "%u", global);
    set_var(sp, "RANK", num, 0, log, loglen);
    snprintf(num, sizeof(num), "%d", taskid);
    set_var(sp, "LOCAL_RANK", num, 0, log, loglen);
    snprintf(num, sizeof(num), "%u", ctx.world);
    set_var(sp, "WORLD_SIZE", num, 0, log, loglen);
    snprintf(num, sizeof(num), "%u", ctx.ntasks);
    set_var(sp, "LOCAL_WORLD_SIZE", num, 0, log, loglen);
    if (ctx.master_addr[0] != '\0') {
        set_var(sp, "MASTER_ADDR", ctx.master_addr, 0, log, loglen);
        set_var(sp, "MASTER_PORT", ctx.master_port, 0, log, loglen);
    }
}

/* --dml-verbose: the task's mapping, what UCX itself finds within what the
 * task's variables allow, and the variables set (log). host is the node's
 * name where known. */
static void task_print_verbose(spank_t sp, const dml_task_map_t *m, int taskid, uint32_t global,
                               int bound, char *host, size_t hostlen, const char *log)
{
    char node[256], tls[256] = "", devs[256] = "", ucx[1024] = "";

    if (spank_getenv(sp, "SLURMD_NODENAME", node, sizeof(node)) == ESPANK_SUCCESS)
        snprintf(host, hostlen, "%s", node);
    spank_getenv(sp, "UCX_TLS", tls, sizeof(tls));
    spank_getenv(sp, "UCX_NET_DEVICES", devs, sizeof(devs));
    if (dml_ucx_probe(tls[0] ? tls : NULL, devs[0] ? devs : NULL, ucx, sizeof(ucx)) != 0)
        snprintf(ucx, sizeof(ucx), "(UCX not found)");
    fprintf(stderr,
            "dml: rank %u (local %d) on %s: gpu %s, cpus %s%s, numa %d, net %s, hca %s; "
            "ucx finds %s;%s%s%s\n",
            global, taskid, host, m->ngpus ? m->visible : "-", m->cpus,
            bound ? " (bound)" : " (not bound)", m->numa, dml_net_name(m->net),
            m->hcas[0] ? m->hcas : "-", ucx[0] ? ucx : "nothing", log,
            ctx.note[0] ? "; note: " : "", ctx.note);
    fflush(stderr);
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
    char log[16384] = "", host[256] = "?";
    const dml_task_map_t *m;
    uint32_t global = 0;
    int taskid = -1, bound = 0;

    (void)ac;
    (void)av;
    if (!ctx.active)
        return 0;
    if (ctx.error[0] != '\0') {
        slurm_error("dml: %s", ctx.error);
        return -1;
    }
    if (spank_get_item(sp, S_TASK_ID, &taskid) != ESPANK_SUCCESS || taskid < 0 ||
        (unsigned)taskid >= ctx.ntasks) {
        slurm_error("dml: local task id %d outside the %u mapped tasks", taskid, ctx.ntasks);
        return -1;
    }
    m = &ctx.maps[taskid];
    spank_get_item(sp, S_TASK_GLOBAL_ID, &global);
    /* In a heterogeneous step the rank is Slurm's over all components. */
    if (ctx.het && !env_u32(sp, "SLURM_PROCID", &global)) {
        slurm_error("dml: heterogeneous step: no SLURM_PROCID to number task %d by", taskid);
        return -1;
    }
    ctx.set[0] = '\0';
    if (spank_getenv(sp, DML_SPANK_MARKER, ctx.inherited, sizeof(ctx.inherited)) != ESPANK_SUCCESS)
        ctx.inherited[0] = '\0';

    if (ctx.cfg.bind && ctx.cfg.topology[0] == '\0') {
        if (apply_binding(m) != 0) {
            slurm_error("dml: cannot bind task %d to CPUs %s", taskid, m->cpus);
            return -1;
        }
        bound = 1;
    }
    task_set_gpus(sp, m, log, sizeof(log));
    task_set_net(sp, m, log, sizeof(log));
    task_set_ranks(sp, m, taskid, global, log, sizeof(log));
    /* What this step set, for a step started from inside this task. */
    spank_setenv(sp, DML_SPANK_MARKER, ctx.set, 1);
    if (taskid == 0 && ctx.port_warning[0] != '\0') {
        fprintf(stderr, "dml: warning: %s\n", ctx.port_warning);
        fflush(stderr);
    }

    /* No InfiniBand although the node has HCAs: the fast path is missing,
     * and users should know before they wonder why training is slow. */
    if (taskid == 0 && m->net == DML_NET_TCP && !ctx.net_explicit && ctx.hcas_down > 0)
        fprintf(stderr,
                "dml: warning: %s has %d InfiniBand HCA(s) but no active port: falling "
                "back to TCP\n",
                spank_getenv(sp, "SLURMD_NODENAME", host, sizeof(host)) == ESPANK_SUCCESS
                    ? host
                    : "this node",
                ctx.hcas_down);
    if (ctx.verbose)
        task_print_verbose(sp, m, taskid, global, bound, host, sizeof(host), log);
    return 0;
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
    (void)sp;
    (void)ac;
    (void)av;
    dml__ctx_reset();
    return 0;
}
