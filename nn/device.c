/*
 * device.c: choosing the device a model computes on, and saying which.
 *
 * The CUDA runtime itself honours CUDA_VISIBLE_DEVICES (set per task by the
 * SPANK plugin or by Slurm's --gpus-per-task), so this file never reads the
 * environment: it numbers the GPUs as the runtime shows them.
 */
#include "config.h"

#include "dml_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_CUDA
#include "gpu.h"

#include <cuda_runtime.h>
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
/* cudaGetDeviceCount's failure where no GPU can be used: no driver, no
 * device, every device hidden. Anything else is a real error. */
static int dml__no_gpu(cudaError_t err)
{
    return err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
           err == cudaErrorInvalidDevice;
}

/* Why no GPU is seen, in the user's terms: "insufficient driver" is also
 * what the runtime says where there is no driver at all. */
static const char *dml__why(cudaError_t err, char *buf, size_t len)
{
    int driver = 0, runtime = 0;

    if (err != cudaErrorInsufficientDriver)
        return cudaGetErrorString(err);
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    if (driver == 0)
        snprintf(buf, len, "no NVIDIA driver is loaded on this host");
    else
        snprintf(buf, len, "the NVIDIA driver supports CUDA %d.%d, this build needs %d.%d", driver / 1000,
                 driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    return buf;
}

static dml_status_t dml__count(int *count, cudaError_t *why)
{
    cudaError_t err = cudaGetDeviceCount(count);

    *why = err;
    if (err == cudaSuccess)
        return DML_OK;
    *count = 0;
    /* The runtime remembers an initialisation failure; clear it so that the
     * next call asks again rather than repeating it. */
    (void)cudaGetLastError();
    if (dml__no_gpu(err))
        return DML_OK;
    {
        char reason[128];
        return dml_error_set(DML_ERR_UNSUPPORTED, "CUDA cannot count the GPUs: %s (%s)",
                             dml__why(err, reason, sizeof(reason)), cudaGetErrorName(err));
    }
}

static dml_status_t dml__describe(int index, dml_device_t *dev)
{
    struct cudaDeviceProp prop;
    cudaError_t err;

    memset(dev, 0, sizeof(*dev));
    dev->kind = DML_DEVICE_CUDA;
    dev->index = index;
    err = cudaGetDeviceProperties(&prop, index);
    if (err != cudaSuccess)
        return dml_error_set(DML_ERR_UNSUPPORTED, "cuda:%d: cannot read its properties: %s", index,
                             cudaGetErrorString(err));
    snprintf(dev->name, sizeof(dev->name), "%s", prop.name);
    dev->memory = (uint64_t)prop.totalGlobalMem;
    dev->cc_major = prop.major;
    dev->cc_minor = prop.minor;
    if (cudaDeviceGetPCIBusId(dev->pci_bus_id, (int)sizeof(dev->pci_bus_id), index) != cudaSuccess)
        dev->pci_bus_id[0] = '\0';
    return DML_OK;
}

/* Makes dev the thread's device and runs the build's code on it. */
static dml_status_t dml__check(const dml_device_t *dev)
{
    char what[384];
    cudaError_t err;
    int rc;

    dml_device_format(dev, what, sizeof(what));
    err = cudaSetDevice(dev->index);
    if (err != cudaSuccess)
        return dml_error_set(DML_ERR_UNSUPPORTED, "%s: cannot use it: %s (%s)", what,
                             cudaGetErrorString(err), cudaGetErrorName(err));
    rc = dml__gpu_selftest();
    if (rc == (int)cudaErrorNoKernelImageForDevice || rc == (int)cudaErrorUnsupportedPtxVersion)
        return dml_error_set(DML_ERR_UNSUPPORTED,
                             "%s: this build's GPU code does not run on it (%s): it was built for "
                             "the architectures in DML_CUDA_ARCH at configure time (sm_90 and "
                             "compute_90 PTX by default), and the PTX needs a driver as new as "
                             "the CUDA toolkit that built it; rebuild with this GPU's architecture",
                             what, dml__gpu_error());
    if (rc == DML_GPU_ERR_WRONG)
        return dml_error_set(DML_ERR_NUMERIC, "%s: %s", what, dml__gpu_error());
    if (rc != 0)
        return dml_error_set(DML_ERR_UNSUPPORTED, "%s: cannot run on it: %s", what, dml__gpu_error());
    return DML_OK;
}
#endif

dml_status_t dml_device_count(int *count)
{
    *count = 0;
#ifdef HAVE_CUDA
    cudaError_t why;
    return dml__count(count, &why);
#else
    return dml_error_set(DML_ERR_UNSUPPORTED,
                         "this slurm-dml was built without the GPU path (configure found no CUDA)");
#endif
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
        cudaError_t why;
        char reason[128];
        dml_status_t st = dml__count(&count, &why);

        if (st != DML_OK)
            return st;
        if (count == 0) {
            if (strcmp(want, "auto") == 0)
                return DML_OK;
            return dml_error_set(DML_ERR_UNSUPPORTED,
                                 "device '%s': no GPU is visible to this process (CUDA: %s); "
                                 "under Slurm, ask for one (--gpus-per-task, or srun --dml-gpus "
                                 "with the plugin), or use --device cpu",
                                 want, dml__why(why, reason, sizeof(reason)));
        }
        if (index >= count)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "device '%s': this process sees %d GPU%s (cuda:0 to cuda:%d)", want,
                                 count, count == 1 ? "" : "s", count - 1);
        if (index < 0)
            index = (local_rank < 0 ? 0 : local_rank) % count;
        st = dml__describe(index, dev);
        if (st == DML_OK)
            st = dml__check(dev);
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
