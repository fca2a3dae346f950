/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * topo.c: the task mapping over hwloc (see dml_topo.h for the rules).
 * Everything here is computed from the topology object tree; nothing is bound
 * or set: the caller applies the answer.
 */
#include "config.h"

#include "dml_topo.h"

#include <errno.h>
#include <limits.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    hwloc_obj_t pci; /* the GPU's PCI device */
    char uuid[96];   /* GPU-... from NVML, or "" */
} dml__gpu_t;

typedef struct {
    hwloc_obj_t pci;
    char name[64];   /* mlx5_0 */
    int port;        /* first active port */
    char netdev[64]; /* its IPoIB device (ib0), or "" */
} dml__hca_t;

struct dml_topo {
    hwloc_topology_t t;
    dml_gpu_kind_t kind; /* of the GPUs in gpus[] */
    int ngpus, nhcas, neths;
    int hcas_down; /* InfiniBand HCAs with no active port */
    dml__gpu_t gpus[DML_TOPO_MAX_GPUS];
    dml__hca_t hcas[DML_TOPO_MAX_HCAS];
    hwloc_obj_t eths[DML_TOPO_MAX_HCAS]; /* Ethernet Net OS devices */
};

const char *dml_net_name(dml_net_t net)
{
    switch (net) {
    case DML_NET_IB:
        return "ib";
    case DML_NET_TCP:
        return "tcp";
    case DML_NET_SHM:
        return "shm";
    case DML_NET_AUTO:
        break;
    }
    return "auto";
}

static int dml__pci_cmp(const void *a, const void *b)
{
    const struct hwloc_pcidev_attr_s *x = &((const dml__gpu_t *)a)->pci->attr->pcidev;
    const struct hwloc_pcidev_attr_s *y = &((const dml__gpu_t *)b)->pci->attr->pcidev;

    if (x->domain != y->domain)
        return x->domain < y->domain ? -1 : 1;
    if (x->bus != y->bus)
        return x->bus < y->bus ? -1 : 1;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return (int)x->func - (int)y->func;
}

/* An OS device's PCI device, or NULL. */
static hwloc_obj_t dml__pci_of(hwloc_obj_t os)
{
    hwloc_obj_t p = os->parent;
    return p != NULL && p->type == HWLOC_OBJ_PCI_DEVICE ? p : NULL;
}

/* Whether PCI device o is a GPU, of which kind, whether a driver's OS
 * device (CUDA, NVML, ROCm SMI) hangs below it, and its NVIDIA UUID. AMD
 * display controllers (class 0300) count only with a ROCm device: servers'
 * and desktops' ordinary graphics share that class. */
static int dml__gpu_pci(hwloc_obj_t o, dml_gpu_kind_t *kind, int *driven, const char **uuid)
{
    const unsigned cls = o->attr->pcidev.class_id, vendor = o->attr->pcidev.vendor_id;
    hwloc_obj_t c;

    *driven = 0;
    *uuid = NULL;
    if (vendor == 0x10de && (cls >> 8) == 0x03)
        *kind = DML_GPU_NVIDIA;
    else if (vendor == 0x1002 && ((cls >> 8) == 0x03 || (cls >> 8) == 0x12))
        *kind = DML_GPU_AMD;
    else
        return 0;
    for (c = o->io_first_child; c != NULL; c = c->next_sibling) {
        if (c->type != HWLOC_OBJ_OS_DEVICE || c->name == NULL)
            continue;
        if ((c->attr->osdev.type == HWLOC_OBJ_OSDEV_COPROC ||
             c->attr->osdev.type == HWLOC_OBJ_OSDEV_GPU) &&
            (strncmp(c->name, "cuda", 4) == 0 || strncmp(c->name, "nvml", 4) == 0 ||
             strncmp(c->name, "rsmi", 4) == 0))
            *driven = 1;
        if (hwloc_obj_get_info_by_name(c, "NVIDIAUUID") != NULL)
            *uuid = hwloc_obj_get_info_by_name(c, "NVIDIAUUID");
    }
    return *kind == DML_GPU_NVIDIA || *driven || cls == 0x0380 || (cls >> 8) == 0x12;
}

static void dml__discover(dml_topo_t *tp)
{
    hwloc_obj_t o = NULL;

    /* GPUs: the node's NVIDIA GPUs, else its AMD ones (one kind is mapped).
     * If hwloc saw a driver's OS device for a kind, only the controllers
     * that have one count (the others are not driven, so CUDA or ROCm do not
     * number them); without those hwloc plugins, every one counts. */
    {
        int with_osdev[3] = {0, 0, 0}, count[3] = {0, 0, 0};
        dml_gpu_kind_t kind;
        const char *uuid;
        int driven;
        while ((o = hwloc_get_next_pcidev(tp->t, o)) != NULL)
            if (dml__gpu_pci(o, &kind, &driven, &uuid)) {
                with_osdev[kind] |= driven;
                count[kind]++;
            }
        tp->kind = count[DML_GPU_NVIDIA] ? DML_GPU_NVIDIA
                   : count[DML_GPU_AMD]  ? DML_GPU_AMD
                                         : DML_GPU_NONE;
        o = NULL;
        while (tp->kind != DML_GPU_NONE && (o = hwloc_get_next_pcidev(tp->t, o)) != NULL) {
            if (!dml__gpu_pci(o, &kind, &driven, &uuid) || kind != tp->kind ||
                (with_osdev[kind] && !driven) || tp->ngpus >= DML_TOPO_MAX_GPUS)
                continue;
            tp->gpus[tp->ngpus].pci = o;
            snprintf(tp->gpus[tp->ngpus].uuid, sizeof(tp->gpus[0].uuid), "%s", uuid ? uuid : "");
            tp->ngpus++;
        }
    }
    qsort(tp->gpus, (size_t)tp->ngpus, sizeof(dml__gpu_t), dml__pci_cmp);

    /* HCAs: OpenFabrics devices on InfiniBand controllers (class 0x0207) with
     * an active port (PortNState 4). Ethernet: network devices on Ethernet
     * controllers (class 0x0200). */
    o = NULL;
    while ((o = hwloc_get_next_osdev(tp->t, o)) != NULL) {
        hwloc_obj_t pci = dml__pci_of(o);
        if (pci == NULL)
            continue;
        if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS &&
            pci->attr->pcidev.class_id == 0x0207 && tp->nhcas < DML_TOPO_MAX_HCAS) {
            int port;
            for (port = 1; port <= 8; port++) {
                char key[32];
                const char *st;
                snprintf(key, sizeof(key), "Port%dState", port);
                st = hwloc_obj_get_info_by_name(o, key);
                if (st != NULL && strcmp(st, "4") == 0)
                    break;
            }
            if (port > 8)
                tp->hcas_down++;
            if (port <= 8) {
                dml__hca_t *h = &tp->hcas[tp->nhcas++];
                hwloc_obj_t c;
                h->pci = pci;
                h->port = port;
                snprintf(h->name, sizeof(h->name), "%s", o->name ? o->name : "?");
                h->netdev[0] = '\0';
                for (c = pci->io_first_child; c != NULL; c = c->next_sibling)
                    if (c->type == HWLOC_OBJ_OS_DEVICE &&
                        c->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK && c->name != NULL)
                        snprintf(h->netdev, sizeof(h->netdev), "%s", c->name);
            }
        } else if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK &&
                   (pci->attr->pcidev.class_id >> 8) == 0x02 &&
                   pci->attr->pcidev.class_id != 0x0207 && o->name != NULL &&
                   tp->neths < DML_TOPO_MAX_HCAS) {
            tp->eths[tp->neths++] = o;
        }
    }
}

/* The hwloc plugins (and components) the mapping has no use for. */
#define DML__HWLOC_PLUGINS_OFF "hwloc_gl,hwloc_opencl,hwloc_cuda,hwloc_levelzero"
static const char *const dml__components_off[] = {"gl", "opencl", "cuda", "levelzero"};

void dml_topo_limit_plugins(void)
{
    const char *have = getenv("HWLOC_PLUGINS_BLACKLIST");
    char both[1024];

    if (have == NULL || *have == '\0') {
        setenv("HWLOC_PLUGINS_BLACKLIST", DML__HWLOC_PLUGINS_OFF, 1);
    } else if (strstr(have, DML__HWLOC_PLUGINS_OFF) == NULL) {
        snprintf(both, sizeof(both), "%s,%s", have, DML__HWLOC_PLUGINS_OFF);
        setenv("HWLOC_PLUGINS_BLACKLIST", both, 1);
    }
}

/* xml_path, or buf[0..len), or (both NULL) this machine. */
static dml_status_t dml__load(const char *xml_path, const char *buf, size_t len,
                              dml_topo_t **topo_out)
{
    const char *what = xml_path ? xml_path : buf ? "the XML topology given" : "this machine";
    dml_topo_t *tp = calloc(1, sizeof(*tp));
    size_t i;

    if (tp == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a topology");
    if (hwloc_topology_init(&tp->t) != 0) {
        free(tp);
        return dml_error_set(DML_ERR_NO_MEMORY, "hwloc_topology_init failed");
    }
    hwloc_topology_set_io_types_filter(tp->t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    /* A second line behind dml_topo_limit_plugins, for a process in which
     * hwloc was already in use: these components then do not run. */
    for (i = 0; i < sizeof(dml__components_off) / sizeof(dml__components_off[0]); i++)
        hwloc_topology_set_components(tp->t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
                                      dml__components_off[i]);
    if ((xml_path != NULL && hwloc_topology_set_xml(tp->t, xml_path) != 0) ||
        (buf != NULL &&
         (len > INT_MAX || hwloc_topology_set_xmlbuffer(tp->t, buf, (int)len) != 0))) {
        hwloc_topology_destroy(tp->t);
        free(tp);
        return dml_error_set(DML_ERR_FORMAT, "%s: cannot read as an hwloc XML topology", what);
    }
    if (hwloc_topology_load(tp->t) != 0) {
        hwloc_topology_destroy(tp->t);
        free(tp);
        return dml_error_set(DML_ERR_FORMAT, "%s: hwloc cannot load this topology", what);
    }
    if (hwloc_get_nbobjs_by_type(tp->t, HWLOC_OBJ_PU) <= 0) {
        hwloc_topology_destroy(tp->t);
        free(tp);
        return dml_error_set(DML_ERR_FORMAT, "%s: a topology without processing units", what);
    }
    dml__discover(tp);
    *topo_out = tp;
    return DML_OK;
}

dml_status_t dml_topo_load(const char *xml_path, dml_topo_t **topo_out)
{
    return dml__load(xml_path, NULL, 0, topo_out);
}

dml_status_t dml_topo_load_buffer(const char *xml, size_t len, dml_topo_t **topo_out)
{
    return dml__load(NULL, xml, len, topo_out);
}

/* For topo_cache.c, within the mapping library. */
hwloc_topology_t dml__topo_hwloc(const dml_topo_t *topo);
hwloc_topology_t dml__topo_hwloc(const dml_topo_t *topo)
{
    return topo->t;
}

void dml_topo_free(dml_topo_t *topo)
{
    if (topo == NULL)
        return;
    hwloc_topology_destroy(topo->t);
    free(topo);
}

static int dml__excluded(const char *list, const char *name);

int dml_topo_gpus(const dml_topo_t *topo)
{
    return topo->ngpus;
}
dml_gpu_kind_t dml_topo_gpu_kind(const dml_topo_t *topo)
{
    return topo->kind;
}
int dml_topo_hcas(const dml_topo_t *topo)
{
    return topo->nhcas;
}
int dml_topo_hcas_down(const dml_topo_t *topo)
{
    return topo->hcas_down;
}

void dml_topo_usable_hcas(const dml_topo_t *topo, const char *exclude, char *buf, size_t len)
{
    size_t used = 0;
    int i;

    if (len > 0)
        buf[0] = '\0';
    for (i = 0; i < topo->nhcas && used + 80 < len; i++)
        if (!dml__excluded(exclude, topo->hcas[i].name))
            used += (size_t)snprintf(buf + used, len - used, "%s%s:%d", used ? "," : "",
                                     topo->hcas[i].name, topo->hcas[i].port);
}

const char *dml_gpu_visible_var(dml_gpu_kind_t kind)
{
    /* ROCm: ROCR_VISIBLE_DEVICES (what Slurm sets for AMD GPUs), not
     * HIP_VISIBLE_DEVICES, whose indices count only the GPUs ROCR lets
     * through: setting both to the same list would select twice. */
    return kind == DML_GPU_NVIDIA ? "CUDA_VISIBLE_DEVICES"
           : kind == DML_GPU_AMD  ? "ROCR_VISIBLE_DEVICES"
                                  : NULL;
}

const char *dml_topo_ucx_tls(dml_gpu_kind_t kind, dml_net_t net, int has_gpus, int tcp_only)
{
    static const char *const tls[3][4] = {
        /* none: */ {"rc,sm,self", "tcp,sm,self", "tcp,self", "sm,self"},
        /* NVIDIA: */
        {"rc,sm,cuda_copy,cuda_ipc,self", "tcp,sm,cuda_copy,cuda_ipc,self", "tcp,cuda_copy,self",
         "sm,cuda_copy,cuda_ipc,self"},
        /* AMD: */
        {"rc,sm,rocm_copy,rocm_ipc,self", "tcp,sm,rocm_copy,rocm_ipc,self", "tcp,rocm_copy,self",
         "sm,rocm_copy,rocm_ipc,self"}};
    int g = !has_gpus ? 0 : kind == DML_GPU_NVIDIA ? 1 : kind == DML_GPU_AMD ? 2 : 0;
    int n = net == DML_NET_IB ? 0 : net == DML_NET_SHM ? 3 : tcp_only ? 2 : 1;

    return tls[g][n];
}

/* ---- the step's GPU list ------------------------------------------------ */

typedef struct {
    char token[DML_TOPO_GPU_TOKEN]; /* as the task must name it */
    int node_gpu;                   /* index into the node's GPUs, -1 if unknown (MIG) */
} dml__sgpu_t;

static int dml__find_uuid(const dml_topo_t *tp, const char *uuid, size_t len)
{
    int i;

    for (i = 0; i < tp->ngpus; i++)
        if (strlen(tp->gpus[i].uuid) == len && strncmp(tp->gpus[i].uuid, uuid, len) == 0)
            return i;
    return -1;
}

/* Splits a comma list into at most max tokens; returns the count or -1. */
static int dml__split(const char *s, char tok[][DML_TOPO_GPU_TOKEN], int max)
{
    int n = 0;
    const char *p = s;

    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == max || len == 0 || len >= DML_TOPO_GPU_TOKEN)
            return -1;
        memcpy(tok[n], p, len);
        tok[n][len] = '\0';
        n++;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return n;
}

static dml_status_t dml__step_gpus(const dml_topo_t *tp, const dml_topo_request_t *req,
                                   dml__sgpu_t *sg, int *nsg)
{
    char loc[DML_TOPO_MAX_GPUS][DML_TOPO_GPU_TOKEN], vis[DML_TOPO_MAX_GPUS][DML_TOPO_GPU_TOKEN];
    int n, nv, i, j, unknown = 0;

    if (req->gpus != NULL && tp->ngpus == 0) {
        /* A node without GPUs: whatever names GPUs (a user's exported
         * CUDA_VISIBLE_DEVICES, Slurm's list of GPUs the plugin does not
         * drive) is not for this mapping. */
        if (req->note != NULL && req->gpus[0] != '\0')
            snprintf(req->note, req->note_len,
                     "GPU list \"%s\": this node has no GPU the "
                     "plugin maps; the list is left alone",
                     req->gpus);
        *nsg = 0;
        return DML_OK;
    }
    if (req->gpus == NULL) {
        for (i = 0; i < tp->ngpus; i++) {
            snprintf(sg[i].token, sizeof(sg[i].token), "%d", i);
            sg[i].node_gpu = i;
        }
        *nsg = tp->ngpus;
        return DML_OK;
    }
    n = dml__split(req->gpus, loc, DML_TOPO_MAX_GPUS);
    if (n < 0)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "GPU list \"%s\": expected comma-separated "
                             "indices, GPU- or MIG- identifiers (at most %d)",
                             req->gpus, DML_TOPO_MAX_GPUS);
    nv = n;
    if (req->visible != NULL) {
        nv = dml__split(req->visible, vis, DML_TOPO_MAX_GPUS);
        if (nv != n)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "CUDA_VISIBLE_DEVICES \"%s\" names %d GPUs, "
                                 "the step has %d (\"%s\")",
                                 req->visible, nv, n, req->gpus);
    }
    for (i = 0; i < n; i++) {
        const char *t = loc[i];
        char *end;
        long v;

        memcpy(sg[i].token, req->visible ? vis[i] : t, sizeof(sg[i].token));
        sg[i].node_gpu = -1;
        if (strncmp(t, "GPU-", 4) == 0) {
            sg[i].node_gpu = dml__find_uuid(tp, t, strlen(t));
        } else if (strncmp(t, "MIG-GPU-", 8) == 0) {
            /* MIG-GPU-<uuid>/<gi>/<ci>: a slice of GPU-<uuid>, local to it. */
            const char *slash = strchr(t + 4, '/');
            sg[i].node_gpu =
                dml__find_uuid(tp, t + 4, slash ? (size_t)(slash - t - 4) : strlen(t + 4));
        } else if (strncmp(t, "MIG-", 4) == 0) {
            sg[i].node_gpu = -1; /* MIG-<uuid>: its parent is not named; no locality */
        } else {
            v = strtol(t, &end, 10);
            if (*end != '\0' || v < 0)
                return dml_error_set(DML_ERR_INVALID_ARG,
                                     "GPU \"%s\": expected an index, GPU-... "
                                     "or MIG-...",
                                     t);
            sg[i].node_gpu = v < tp->ngpus ? (int)v : -1;
        }
        unknown += sg[i].node_gpu < 0 && strncmp(t, "MIG-", 4) != 0;
        /* Named twice, a GPU would go to two tasks that each take it for
         * their own (Slurm's lists never repeat one; a user's may). */
        for (j = 0; j < i; j++)
            if (strcmp(sg[j].token, sg[i].token) == 0)
                return dml_error_set(DML_ERR_INVALID_ARG,
                                     "GPU list \"%s\": GPU \"%s\" is named "
                                     "twice; each GPU can be given to one task only",
                                     req->visible ? req->visible : req->gpus, sg[i].token);
    }
    if (unknown > 0 && req->note != NULL)
        snprintf(req->note, req->note_len,
                 "GPU list \"%s\": %d of its GPUs are not among this "
                 "node's %d; they are handed out as named, without locality",
                 req->gpus, unknown, tp->ngpus);
    *nsg = n;
    return DML_OK;
}

/* ---- distances ----------------------------------------------------------- */

static int dml__depth(hwloc_obj_t o)
{
    int d = 0;
    while (o->parent != NULL) {
        o = o->parent;
        d++;
    }
    return d;
}

/* Deeper common ancestor = nearer. Walks parent links: hwloc's own helper
 * compares depths, which I/O objects do not have. */
static int dml__nearness(hwloc_topology_t t, hwloc_obj_t a, hwloc_obj_t b)
{
    hwloc_obj_t x, y;

    (void)t;
    for (x = a; x != NULL; x = x->parent)
        for (y = b; y != NULL; y = y->parent)
            if (x == y)
                return dml__depth(x);
    return 0;
}

static int dml__same_numa(hwloc_topology_t t, hwloc_obj_t a, hwloc_obj_t b)
{
    hwloc_obj_t x = hwloc_get_non_io_ancestor_obj(t, a), y = hwloc_get_non_io_ancestor_obj(t, b);
    return x && y && hwloc_bitmap_intersects(x->nodeset, y->nodeset);
}

static int dml__excluded(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;

    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* ---- the mapping --------------------------------------------------------- */

typedef struct {
    unsigned task;
    hwloc_obj_t from; /* the GPU's PCI device, or NULL (use the task's CPUs) */
    int best[DML_TOPO_MAX_HCAS], nbest;
} dml__pick_t;

static int dml__pick_cmp(const void *a, const void *b)
{
    const dml__pick_t *x = a, *y = b;
    if (x->nbest != y->nbest)
        return x->nbest - y->nbest;
    return (int)x->task - (int)y->task;
}

static void dml__append(char *buf, size_t len, const char *item)
{
    size_t l = strlen(buf);
    snprintf(buf + l, len - l, "%s%s", l ? "," : "", item);
}

/* Whether s is a CPU list hwloc may be given: numbers and ranges a-b
 * (a <= b) below DML__CPU_MAX, joined by commas. hwloc reads "-3" or "0-"
 * as ranges up to its largest index, and allocates bitmaps of that size. */
#define DML__CPU_MAX (1 << 20)
static int dml__cpulist_ok(const char *s)
{
    const char *p = s;

    if (*p == '\0')
        return 0;
    for (;;) {
        char *end;
        long a, b;
        if (*p < '0' || *p > '9')
            return 0;
        a = strtol(p, &end, 10);
        b = a;
        if (*end == '-') {
            if (end[1] < '0' || end[1] > '9')
                return 0;
            b = strtol(end + 1, &end, 10);
        }
        if (a < 0 || b < a || b >= DML__CPU_MAX)
            return 0;
        if (*end == '\0')
            return 1;
        if (*end != ',')
            return 0;
        p = end + 1;
    }
}

/* The objects of type unit whose CPUs meet where, in order (at most max). */
static unsigned dml__units(hwloc_topology_t t, hwloc_obj_type_t unit, hwloc_const_bitmap_t where,
                           hwloc_obj_t *out, unsigned max)
{
    hwloc_obj_t o = NULL;
    unsigned n = 0;

    while ((o = hwloc_get_next_obj_by_type(t, unit, o)) != NULL && n < max)
        if (hwloc_bitmap_intersects(o->cpuset, where))
            out[n++] = o;
    return n;
}

/* The PCI device of the step's GPU g, or NULL where the node's GPUs do not
 * include it (MIG-<uuid>, an index or UUID this node does not have). */
static hwloc_obj_t dml__sgpu_pci(const dml_topo_t *tp, const dml__sgpu_t *sg, int g)
{
    return sg[g].node_gpu >= 0 ? tp->gpus[sg[g].node_gpu].pci : NULL;
}

/* The CPUs the tasks may have: the topology's allowed ones, within
 * req->cpus where given (narrows allowed in place). */
static dml_status_t dml__allowed_cpus(const dml_topo_request_t *req, hwloc_bitmap_t allowed)
{
    if (req->cpus != NULL) {
        hwloc_bitmap_t want = dml__cpulist_ok(req->cpus) ? hwloc_bitmap_alloc() : NULL;
        if (want == NULL || hwloc_bitmap_list_sscanf(want, req->cpus) != 0) {
            hwloc_bitmap_free(want);
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "CPU list \"%s\": expected a list such as "
                                 "0-7,16",
                                 req->cpus);
        }
        hwloc_bitmap_and(allowed, allowed, want);
        hwloc_bitmap_free(want);
    }
    if (hwloc_bitmap_iszero(allowed))
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "CPU list \"%s\": none of these CPUs exists on "
                             "this node",
                             req->cpus ? req->cpus : "");
    return DML_OK;
}

/* Each task's GPUs among the step's nsg, in blocks. */
static dml_status_t dml__choose_gpus(const dml_topo_request_t *req, const dml__sgpu_t *sg, int nsg,
                                     dml_task_map_t *maps)
{
    unsigned T = req->ntasks, k;
    int per = 0, j;

    if (req->gpus_per_task > 0) {
        per = req->gpus_per_task;
        if ((long)per * T > nsg)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "%d GPUs per task for %u tasks needs %ld "
                                 "GPUs; the step has %d",
                                 per, T, (long)per * T, nsg);
    } else if (req->gpus_per_task == 0 && nsg >= (int)T) {
        per = nsg / (int)T;
    }
    for (k = 0; k < T; k++) {
        dml_task_map_t *m = &maps[k];
        int n = req->gpus_per_task < 0 || nsg == 0 ? 0 : per > 0 ? per : 1;
        for (j = 0; j < n; j++) {
            /* Blocks start at floor(k * nsg / T): with fewer tasks than
             * GPUs they spread over the node (its sockets) instead of
             * crowding its first GPUs; per * T <= nsg keeps them apart. */
            int g = (int)((uint64_t)k * (unsigned)nsg / T) + (per > 0 ? j : 0);
            m->gpu[m->ngpus++] = g;
            dml__append(m->visible, sizeof(m->visible), sg[g].token);
        }
        m->numa = -1;
    }
    return DML_OK;
}

/* Each task's locality domain from its GPUs: the allowed CPUs of the NUMA
 * node(s) they are attached to; empty where none of them is located (dom[]
 * is allocated here, one bitmap per task; cs is scratch). */
static dml_status_t dml__gpu_domains(const dml_topo_t *tp, const dml__sgpu_t *sg,
                                     hwloc_const_bitmap_t allowed, hwloc_bitmap_t cs, unsigned T,
                                     hwloc_bitmap_t *dom, dml_task_map_t *maps)
{
    hwloc_topology_t t = tp->t;
    unsigned k;
    int j;

    for (k = 0; k < T; k++) {
        hwloc_obj_t anc = NULL, pci;
        dom[k] = hwloc_bitmap_alloc();
        if (dom[k] == NULL)
            return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the task mapping");
        for (j = 0; j < maps[k].ngpus; j++) {
            if ((pci = dml__sgpu_pci(tp, sg, maps[k].gpu[j])) == NULL)
                continue;
            anc = hwloc_get_non_io_ancestor_obj(t, pci);
            if (anc != NULL) {
                hwloc_cpuset_from_nodeset(t, cs, anc->nodeset);
                hwloc_bitmap_or(dom[k], dom[k], cs);
            }
        }
        if (anc != NULL) {
            hwloc_bitmap_and(dom[k], dom[k], allowed);
            maps[k].gpu_local = !hwloc_bitmap_iszero(dom[k]);
        }
    }
    return DML_OK;
}

/* Tasks without GPU locality: if no task has any (CPU-only steps), in
 * blocks over the NUMA nodes with allowed CPUs, neighbours together,
 * and with fewer tasks than such nodes each task takes its share of
 * them (no core left idle); otherwise each to the NUMA node with the
 * fewest tasks so far. */
static void dml__place_unlocated(hwloc_topology_t t, hwloc_const_bitmap_t allowed, unsigned T,
                                 hwloc_bitmap_t *dom)
{
    hwloc_obj_t nodes[256];
    int nnuma = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    int nn = 0, count[256] = {0}, located = 0, i;
    unsigned k;

    for (i = 0; i < nnuma && nn < 256; i++) {
        hwloc_obj_t nd = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i);
        if (hwloc_bitmap_intersects(nd->cpuset, allowed))
            nodes[nn++] = nd;
    }
    for (k = 0; k < T; k++) {
        if (hwloc_bitmap_iszero(dom[k]))
            continue;
        located = 1;
        for (i = 0; i < nn; i++)
            if (hwloc_bitmap_intersects(nodes[i]->cpuset, dom[k]))
                count[i]++;
    }
    for (k = 0; k < T; k++) {
        int best = 0;
        if (!hwloc_bitmap_iszero(dom[k]))
            continue;
        if (nn == 0) {
            hwloc_bitmap_copy(dom[k], allowed);
            continue;
        }
        if (!located && T < (unsigned)nn) {
            int first = (int)((uint64_t)k * (unsigned)nn / T);
            int last = (int)((uint64_t)(k + 1) * (unsigned)nn / T);
            for (i = first; i < last; i++)
                hwloc_bitmap_or(dom[k], dom[k], nodes[i]->cpuset);
            hwloc_bitmap_and(dom[k], dom[k], allowed);
            continue;
        }
        if (!located)
            best = (int)((uint64_t)k * (unsigned)nn / T);
        else
            for (i = 1; i < nn; i++)
                if (count[i] < count[best])
                    best = i;
        count[best]++;
        hwloc_bitmap_and(dom[k], nodes[best]->cpuset, allowed);
    }
}

/* The cores of domain where, in order; its PUs where it has no Core objects
 * (hwloc reports none where the OS gives none); all the allowed CPUs if it
 * has no PU either (a NUMA node with memory only). */
static unsigned dml__domain_cores(hwloc_topology_t t, hwloc_const_bitmap_t where,
                                  hwloc_const_bitmap_t allowed, hwloc_obj_t *cores, unsigned max)
{
    unsigned n = dml__units(t, HWLOC_OBJ_CORE, where, cores, max);

    if (n == 0)
        n = dml__units(t, HWLOC_OBJ_PU, where, cores, max);
    if (n == 0)
        n = dml__units(t, HWLOC_OBJ_PU, allowed, cores, max);
    return n;
}

/* The first NUMA node the CPUs cs are in, or -1. */
static int dml__numa_of(hwloc_topology_t t, hwloc_const_bitmap_t cs)
{
    hwloc_bitmap_t ns = hwloc_bitmap_alloc();
    int numa = -1;

    if (ns != NULL) {
        hwloc_cpuset_to_nodeset(t, cs, ns);
        numa = hwloc_bitmap_first(ns);
        hwloc_bitmap_free(ns);
    }
    return numa;
}

/* Cores: each domain's allowed cores split among the tasks sharing it; the
 * task's memory node is the one its cores are in (cs is scratch). */
static dml_status_t dml__choose_cores(hwloc_topology_t t, hwloc_const_bitmap_t allowed,
                                      hwloc_bitmap_t *dom, hwloc_bitmap_t cs, unsigned T,
                                      dml_task_map_t *maps)
{
    unsigned k, j;

    for (k = 0; k < T; k++) {
        unsigned idx = 0, cnt = 0, ncores, c0, c1, c;
        hwloc_obj_t cores[4096];

        /* This task is the idx-th of the cnt tasks with its domain. */
        for (j = 0; j < T; j++) {
            if (hwloc_bitmap_isequal(dom[j], dom[k])) {
                if (j < k)
                    idx++;
                cnt++;
            }
        }
        ncores = dml__domain_cores(t, dom[k], allowed, cores, 4096);
        if (ncores == 0)
            return dml_error_set(DML_ERR_INVALID_ARG, "no allowed processing unit on this node");
        hwloc_bitmap_zero(cs);
        if (ncores >= cnt) {
            c0 = idx * ncores / cnt;
            c1 = (idx + 1) * ncores / cnt;
        } else {
            c0 = idx % ncores;
            c1 = c0 + 1;
        }
        for (c = c0; c < c1; c++)
            hwloc_bitmap_or(cs, cs, cores[c]->cpuset);
        hwloc_bitmap_and(cs, cs, allowed);
        maps[k].ncores = c1 - c0;
        hwloc_bitmap_list_snprintf(maps[k].cpus, sizeof(maps[k].cpus), cs);
        maps[k].numa = dml__numa_of(t, cs);
    }
    return DML_OK;
}

/* The usable ports nearest p->from (a GPU), or without one those local to
 * the task's domain: into p->best, every port that ties. */
static void dml__nearest_hcas(const dml_topo_t *tp, const int *usable, int nusable,
                              hwloc_const_bitmap_t domain, dml__pick_t *p)
{
    hwloc_topology_t t = tp->t;
    int bestnear = -1, bestnuma = -1, i;

    for (i = 0; i < nusable; i++) {
        const dml__hca_t *h = &tp->hcas[usable[i]];
        int near, numa;
        if (p->from != NULL) {
            near = dml__nearness(t, p->from, h->pci);
            numa = dml__same_numa(t, p->from, h->pci);
        } else {
            hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, h->pci);
            near = 0;
            numa = anc && hwloc_bitmap_intersects(anc->cpuset, domain);
        }
        if (near > bestnear || (near == bestnear && numa > bestnuma)) {
            bestnear = near;
            bestnuma = numa;
            p->nbest = 0;
        }
        if (near == bestnear && numa == bestnuma)
            p->best[p->nbest++] = usable[i];
    }
}

/* Gives each pick, in order, the least loaded of its nearest ports. */
static void dml__give_hcas(const dml_topo_t *tp, const dml__pick_t *picks, int npicks,
                           dml_task_map_t *maps)
{
    int load[DML_TOPO_MAX_HCAS] = {0}, i, l;

    for (i = 0; i < npicks; i++) {
        const dml__pick_t *p = &picks[i];
        dml_task_map_t *m = &maps[p->task];
        int b = p->best[0];
        char item[96];
        for (l = 1; l < p->nbest; l++)
            if (load[p->best[l]] < load[b])
                b = p->best[l];
        load[b]++;
        snprintf(item, sizeof(item), "%s:%d", tp->hcas[b].name, tp->hcas[b].port);
        if (strstr(m->hcas, item) == NULL)
            dml__append(m->hcas, sizeof(m->hcas), item);
        if (m->netdev[0] == '\0')
            snprintf(m->netdev, sizeof(m->netdev), "%s", tp->hcas[b].netdev);
        m->net = DML_NET_IB;
    }
    /* Keep each task's HCAs in the order of its GPUs' picks: sorting
     * above reordered them; the first is the one UCX uses. */
}

/* InfiniBand: the ports the site did not exclude, shared out among the
 * tasks' GPUs (picks: room for one per GPU of each task, or per task). */
static dml_status_t dml__choose_hcas(const dml_topo_t *tp, const dml_topo_request_t *req,
                                     const dml__sgpu_t *sg, hwloc_bitmap_t *dom, dml__pick_t *picks,
                                     dml_task_map_t *maps)
{
    int usable[DML_TOPO_MAX_HCAS], nusable = 0, npicks = 0, i, j;
    unsigned k;

    for (i = 0; i < tp->nhcas; i++)
        if (!dml__excluded(req->hca_exclude, tp->hcas[i].name))
            usable[nusable++] = i;
    if (req->net == DML_NET_IB && nusable == 0)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "--dml-net=ib: no active InfiniBand port on "
                             "this node%s",
                             tp->nhcas ? " (all excluded by the site)" : "");
    if (nusable == 0 || (req->net != DML_NET_AUTO && req->net != DML_NET_IB))
        return DML_OK;
    /* One pick per GPU of a task (one per task without GPUs); each pick's
     * nearest ports first, the picks with the fewest choices placed first
     * so that a port nobody else is near is not taken by a task that
     * had alternatives. */
    for (k = 0; k < req->ntasks; k++) {
        int n = maps[k].ngpus > 0 ? maps[k].ngpus : 1;
        for (j = 0; j < n; j++) {
            dml__pick_t *p = &picks[npicks++];
            p->task = k;
            p->from = maps[k].ngpus > 0 ? dml__sgpu_pci(tp, sg, maps[k].gpu[j]) : NULL;
            dml__nearest_hcas(tp, usable, nusable, dom[k], p);
        }
    }
    qsort(picks, (size_t)npicks, sizeof(*picks), dml__pick_cmp);
    dml__give_hcas(tp, picks, npicks, maps);
    return DML_OK;
}

/* The Ethernet device nearest from (a GPU), else local to the task's
 * CPUs, else the first. */
static hwloc_obj_t dml__nearest_eth(const dml_topo_t *tp, hwloc_obj_t from,
                                    hwloc_const_bitmap_t domain)
{
    hwloc_topology_t t = tp->t;
    hwloc_obj_t best = tp->eths[0];
    int bestnear = -1, i;

    for (i = 0; i < tp->neths; i++) {
        int near;
        if (from != NULL) {
            near = dml__nearness(t, from, tp->eths[i]);
        } else {
            hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, tp->eths[i]);
            near = anc && hwloc_bitmap_intersects(anc->cpuset, domain);
        }
        if (near > bestnear) {
            bestnear = near;
            best = tp->eths[i];
        }
    }
    return best;
}

/* The tasks without an InfiniBand port: shared memory where asked, else
 * TCP, over the site's device, loopback or the nearest Ethernet device. */
static void dml__choose_socket_net(const dml_topo_t *tp, const dml_topo_request_t *req,
                                   const dml__sgpu_t *sg, hwloc_bitmap_t *dom, dml_task_map_t *maps)
{
    unsigned k;

    for (k = 0; k < req->ntasks; k++) {
        dml_task_map_t *m = &maps[k];
        if (m->net == DML_NET_IB)
            continue;
        m->net = req->net == DML_NET_SHM ? DML_NET_SHM : DML_NET_TCP;
        if (req->netdev != NULL) {
            snprintf(m->netdev, sizeof(m->netdev), "%s", req->netdev);
        } else if (m->net == DML_NET_SHM) {
            snprintf(m->netdev, sizeof(m->netdev), "lo");
        } else if (tp->neths > 0) {
            hwloc_obj_t from = m->ngpus > 0 ? dml__sgpu_pci(tp, sg, m->gpu[0]) : NULL;
            snprintf(m->netdev, sizeof(m->netdev), "%s", dml__nearest_eth(tp, from, dom[k])->name);
        }
    }
}

dml_status_t dml_topo_map(const dml_topo_t *tp, const dml_topo_request_t *req, dml_task_map_t *maps)
{
    hwloc_topology_t t = tp->t;
    dml__sgpu_t sg[DML_TOPO_MAX_GPUS];
    hwloc_bitmap_t allowed = NULL, *dom = NULL, cs = NULL;
    dml__pick_t *picks = NULL;
    int nsg = 0;
    unsigned T = req->ntasks, k;
    dml_status_t status = DML_OK;

    if (T == 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "no tasks to map");
    if (req->note != NULL && req->note_len > 0)
        req->note[0] = '\0';
    if (req->netdev != NULL && strlen(req->netdev) >= DML_TOPO_NETDEV)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "network device \"%.80s...\": longer than %d "
                             "characters",
                             req->netdev, DML_TOPO_NETDEV - 1);
    status = dml__step_gpus(tp, req, sg, &nsg);
    if (status != DML_OK)
        return status;
    memset(maps, 0, sizeof(*maps) * T);

    allowed = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t));
    cs = hwloc_bitmap_alloc();
    dom = calloc(T, sizeof(*dom));
    picks = calloc((size_t)T * (DML_TOPO_MAX_GPUS + 1), sizeof(*picks));
    if (allowed == NULL || cs == NULL || dom == NULL || picks == NULL) {
        status = dml_error_set(DML_ERR_NO_MEMORY, "no memory for the task mapping");
        goto out;
    }
    /* Each step narrows what the next one chooses from: CPUs, then GPUs,
     * the domains near them, cores within those, then the network. */
    if ((status = dml__allowed_cpus(req, allowed)) != DML_OK ||
        (status = dml__choose_gpus(req, sg, nsg, maps)) != DML_OK ||
        (status = dml__gpu_domains(tp, sg, allowed, cs, T, dom, maps)) != DML_OK)
        goto out;
    dml__place_unlocated(t, allowed, T, dom);
    if ((status = dml__choose_cores(t, allowed, dom, cs, T, maps)) != DML_OK ||
        (status = dml__choose_hcas(tp, req, sg, dom, picks, maps)) != DML_OK)
        goto out;
    dml__choose_socket_net(tp, req, sg, dom, maps);
out:
    if (dom != NULL)
        for (k = 0; k < T; k++)
            hwloc_bitmap_free(dom[k]);
    free(dom);
    free(picks);
    hwloc_bitmap_free(cs);
    hwloc_bitmap_free(allowed);
    return status;
}
