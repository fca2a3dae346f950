/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gpu_device.c: the GPU module's C half (dml_nn_cuda.so, gpu.h): counting,
 * describing and checking devices through the CUDA runtime, and the one
 * table libdml_nn finds the module's functions by.
 *
 * The CUDA runtime itself honours CUDA_VISIBLE_DEVICES (set per task by the
 * SPANK plugin or by Slurm's --gpus-per-task), so this file never reads the
 * environment: it numbers the GPUs as the runtime shows them.
 */
#include "gpu.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

/* cudaGetDeviceCount's failure where no GPU can be used: no driver, no
 * device, every device hidden. Anything else is a real error. */
static int no_gpu(cudaError_t err)
{
    return err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
           err == cudaErrorInvalidDevice;
}

/* Why no GPU is seen, in the user's terms: "insufficient driver" is also
 * what the runtime says where there is no driver at all. */
static const char *why(cudaError_t err, char *buf, size_t len)
{
    int driver = 0, runtime = 0;

    if (err != cudaErrorInsufficientDriver)
        return cudaGetErrorString(err);
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    if (driver == 0)
        snprintf(buf, len, "no NVIDIA driver is loaded on this host");
    else
        snprintf(buf, len, "the NVIDIA driver supports CUDA %d.%d, this build needs %d.%d",
                 driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    return buf;
}

static int count(int *n)
{
    cudaError_t err = cudaGetDeviceCount(n);
    char reason[128];

    if (err == cudaSuccess)
        return 0;
    *n = 0;
    /* The runtime remembers an initialisation failure; clear it so that the
     * next call asks again rather than repeating it. */
    (void)cudaGetLastError();
    if (no_gpu(err)) {
        dml__gpu_fail(0, "%s", why(err, reason, sizeof(reason)));
        return 0;
    }
    return dml__gpu_fail((int)err, "CUDA cannot count the GPUs: %s (%s)",
                         why(err, reason, sizeof(reason)), cudaGetErrorName(err));
}

static int describe(int index, char *name, size_t name_len, uint64_t *memory, int *cc_major,
                    int *cc_minor, char *pci_bus_id, size_t pci_len)
{
    struct cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, index);

    if (err != cudaSuccess)
        return dml__gpu_fail((int)err, "cannot read its properties: %s", cudaGetErrorString(err));
    snprintf(name, name_len, "%s", prop.name);
    *memory = (uint64_t)prop.totalGlobalMem;
    *cc_major = prop.major;
    *cc_minor = prop.minor;
    if (cudaDeviceGetPCIBusId(pci_bus_id, (int)pci_len, index) != cudaSuccess)
        pci_bus_id[0] = '\0';
    return 0;
}

static int use(int index)
{
    cudaError_t err = cudaSetDevice(index);
    int rc;

    if (err != cudaSuccess)
        return dml__gpu_fail((int)err, "cannot use it: %s (%s)", cudaGetErrorString(err),
                             cudaGetErrorName(err));
    rc = dml__gpu_selftest();
    if (rc == (int)cudaErrorNoKernelImageForDevice || rc == (int)cudaErrorUnsupportedPtxVersion)
        return DML_GPU_ERR_NO_IMAGE; /* the text is the self-test's */
    return rc;
}

/* The module's one exported symbol (gpu.h's DML_GPU_OPS_SYMBOL). */
__attribute__((visibility("default"))) const dml__gpu_ops_t dml_nn_cuda_ops = {
    .abi = DML_GPU_ABI,
    .error = dml__gpu_error,
    .count = count,
    .describe = describe,
    .use = use,
    .net_create = dml__gpu_net_create,
    .net_free = dml__gpu_net_free,
    .net_train = dml__gpu_net_train,
    .net_eval = dml__gpu_net_eval,
};
