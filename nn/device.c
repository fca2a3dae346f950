/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * device.c: choosing the device a model computes on, and saying which.
 * What CUDA is asked goes through the GPU module (gpu.h, gpu_device.c),
 * loaded only here, when a GPU is asked for: a run on the CPU never loads
 * CUDA's libraries.
 */
#include "config.h"

#include "dml_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_CUDA
#include "gpu.h"
#endif

int dml_nn_have_cuda(void)
{
#ifdef HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

#ifdef HAVE_CUDA
/* The GPU module's table, or the reason there is none as the error. */
static dml_status_t dml__ops(const char *want, const dml__gpu_ops_t **ops)
{
    const char *why;

    if ((*ops = dml__gpu_ops(&why)) != NULL)
        return DML_OK;
    return dml_error_set(DML_ERR_UNSUPPORTED, "device '%s': %s; use --device cpu", want, why);
}

static dml_status_t dml__describe(const dml__gpu_ops_t *o, int index, dml_device_t *dev)
{
    memset(dev, 0, sizeof(*dev));
    dev->kind = DML_DEVICE_CUDA;
    dev->index = index;
    if (o->describe(index, dev->name, sizeof(dev->name), &dev->memory, &dev->cc_major,
                    &dev->cc_minor, dev->pci_bus_id, sizeof(dev->pci_bus_id)) != 0)
        return dml_error_set(DML_ERR_UNSUPPORTED, "cuda:%d: %s", index, o->error());
    return DML_OK;
}

/* Makes dev the thread's device and runs the build's code on it. */
static dml_status_t dml__check(const dml__gpu_ops_t *o, const dml_device_t *dev)
{
    char what[384];
    int rc;

    dml_device_format(dev, what, sizeof(what));
    rc = o->use(dev->index);
    if (rc == DML_GPU_ERR_NO_IMAGE)
        return dml_error_set(DML_ERR_UNSUPPORTED,
                             "%s: this build's GPU code does not run on it (%s): it was built for "
                             "the architectures in DML_CUDA_ARCH at configure time (sm_90 and "
                             "compute_90 PTX by default), and the PTX needs a driver as new as "
                             "the CUDA toolkit that built it; rebuild with this GPU's architecture",
                             what, o->error());
    if (rc == DML_GPU_ERR_WRONG)
        return dml_error_set(DML_ERR_NUMERIC, "%s: %s", what, o->error());
    if (rc != 0)
        return dml_error_set(DML_ERR_UNSUPPORTED, "%s: %s", what, o->error());
    return DML_OK;
}
#endif

dml_status_t dml_device_count(int *count)
{
    *count = 0;
#ifdef HAVE_CUDA
    const dml__gpu_ops_t *o;
    dml_status_t st = dml__ops("cuda", &o);

    if (st != DML_OK)
        return st;
    if (o->count(count) != 0)
        return dml_error_set(DML_ERR_UNSUPPORTED, "%s", o->error());
    return DML_OK;
#else
    return dml_error_set(DML_ERR_UNSUPPORTED,
                         "this slurm-dml was built without the GPU path (configure found no CUDA)");
#endif
}

int dml_device_name_valid(const char *name)
{
    char *end = NULL;
    long n;

    if (strcmp(name, "cpu") == 0 || strcmp(name, "cuda") == 0 || strcmp(name, "auto") == 0)
        return 1;
    if (strncmp(name, "cuda:", 5) != 0 || name[5] < '0' || name[5] > '9')
        return 0;
    n = strtol(name + 5, &end, 10);
    return n >= 0 && n < 1024 && *end == '\0';
}

dml_status_t dml_device_select(const char *want, int local_rank, dml_device_t *dev)
{
    int index = -1, count = 0;
    char *end;
    long n;

    memset(dev, 0, sizeof(*dev));
    dev->kind = DML_DEVICE_CPU;
    snprintf(dev->name, sizeof(dev->name), "cpu");
    if (want == NULL || strcmp(want, "cpu") == 0)
        return DML_OK;
    if (strncmp(want, "cuda:", 5) == 0) {
        n = strtol(want + 5, &end, 10);
        if (end == want + 5 || *end != '\0' || n < 0 || n > 1023)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "device '%s': expected cuda:N with N a GPU's number from 0", want);
        index = (int)n;
    } else if (strcmp(want, "cuda") != 0 && strcmp(want, "auto") != 0) {
        return dml_error_set(DML_ERR_INVALID_ARG, "device '%s': expected cpu, cuda, cuda:N or auto",
                             want);
    }
#ifdef HAVE_CUDA
    {
        const dml__gpu_ops_t *o;
        dml_status_t st = dml__ops(want, &o);

        if (st != DML_OK)
            return strcmp(want, "auto") == 0 ? DML_OK : st;
        if (o->count(&count) != 0)
            return dml_error_set(DML_ERR_UNSUPPORTED, "%s", o->error());
        if (count == 0) {
            if (strcmp(want, "auto") == 0)
                return DML_OK;
            return dml_error_set(DML_ERR_UNSUPPORTED,
                                 "device '%s': no GPU is visible to this process (CUDA: %s); "
                                 "under Slurm, ask for one (--gpus-per-task, or srun --dml-gpus "
                                 "with the plugin), or use --device cpu",
                                 want, o->error());
        }
        if (index >= count)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "device '%s': this process sees %d GPU%s (cuda:0 to cuda:%d)",
                                 want, count, count == 1 ? "" : "s", count - 1);
        if (index < 0)
            index = (local_rank < 0 ? 0 : local_rank) % count;
        st = dml__describe(o, index, dev);
        if (st == DML_OK)
            st = dml__check(o, dev);
        if (st != DML_OK) {
            dml_status_t keep = st;
            char msg[1024];

            /* The caller gets the CPU description back with the reason. */
            snprintf(msg, sizeof(msg), "%s", dml_error_message());
            memset(dev, 0, sizeof(*dev));
            dev->kind = DML_DEVICE_CPU;
            snprintf(dev->name, sizeof(dev->name), "cpu");
            return dml_error_set(keep, "%s", msg);
        }
        return DML_OK;
    }
#else
    (void)local_rank;
    (void)index;
    (void)count;
    if (strcmp(want, "auto") == 0)
        return DML_OK;
    return dml_error_set(DML_ERR_UNSUPPORTED,
                         "device '%s': this slurm-dml was built without the GPU path (configure "
                         "found no CUDA); use --device cpu, or rebuild with --with-cuda",
                         want);
#endif
}

void dml_device_format(const dml_device_t *dev, char *buf, size_t len)
{
    if (dev->kind == DML_DEVICE_CPU) {
        snprintf(buf, len, "cpu");
        return;
    }
    snprintf(buf, len, "cuda:%d (%s, sm_%d%d, %.0f GiB%s%s)", dev->index, dev->name, dev->cc_major,
             dev->cc_minor, (double)dev->memory / (1024.0 * 1024.0 * 1024.0),
             dev->pci_bus_id[0] ? ", " : "", dev->pci_bus_id);
}
