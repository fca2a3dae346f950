/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gpu.cu: the network library's device code, built by nvcc for DML_CUDA_ARCH
 * (sm_90 machine code and compute_90 PTX by default). Choosing and
 * describing devices is gpu_device.c's, in C; model.c hands a network whose
 * layers this file runs to dml__gpu_net_* (through the module's table, gpu.h).
 *
 * The arithmetic follows model.c's CPU path step by step (the bias rows
 * before the product in training, softmax with each row's maximum taken
 * off, the dropout masks from the same counter-based hash of seed, layer and
 * position, the loss summed on the host in double in sample order), so that
 * the two differ only by the order in which the matrix products add: the
 * GPU check (scripts/check-gpu) holds them to a relative 1e-4.
 */
#include "gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DML_GPU_MAX_LAYERS 64

static __thread char g_msg[512];

extern "C" const char *dml__gpu_error(void)
{
    return g_msg;
}

extern "C" int dml__gpu_fail(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof(g_msg), fmt, ap);
    va_end(ap);
    return code;
}

/* CUDA's out-of-memory from any call is DML_GPU_ERR_NO_MEMORY, so that the
 * caller names the model and its batch whichever call ran out. */
#define CUDA_TRY(call, what)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return dml__gpu_fail(                                                                  \
                e_ == cudaErrorMemoryAllocation ? DML_GPU_ERR_NO_MEMORY : (int)e_, "%s: %s (%s)",  \
                what, cudaGetErrorString(e_), cudaGetErrorName(e_));                               \
    } while (0)

#define CUBLAS_TRY(call, what)                                                                     \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return dml__gpu_fail(DML_GPU_ERR_CUBLAS, "%s: cuBLAS: %s", what,                       \
                                 cublasGetStatusString(s_));                                       \
    } while (0)

/* ---- the self-test ------------------------------------------------------------ */

/* y = 2x + 1 on n values: enough device code to prove the GPU loads this
 * build's image and computes with it. */
__global__ static void dml__selftest_kernel(const float *x, float *y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n)
        y[i] = 2.0f * x[i] + 1.0f;
}

extern "C" int dml__gpu_selftest(void)
{
    enum { N = 1000 };
    float h[N], *d = NULL;
    cudaError_t err;
    int i, wrong = 0;

    for (i = 0; i < N; i++)
        h[i] = (float)i;
    CUDA_TRY(cudaMalloc((void **)&d, 2 * N * sizeof(float)), "cudaMalloc");
    err = cudaMemcpy(d, h, N * sizeof(float), cudaMemcpyHostToDevice);
    if (err == cudaSuccess) {
        dml__selftest_kernel<<<(N + 255) / 256, 256>>>(d, d + N, N);
        /* A launch fails late where the image has no code for this GPU
         * (cudaErrorNoKernelImageForDevice): ask now. */
        err = cudaGetLastError();
    }
    if (err == cudaSuccess)
        err = cudaMemcpy(h, d + N, N * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (err != cudaSuccess)
        return dml__gpu_fail((int)err, "%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
    for (i = 0; i < N; i++)
        if (h[i] != 2.0f * (float)i + 1.0f)
            wrong = 1;
    return wrong ? dml__gpu_fail(DML_GPU_ERR_WRONG, "the self-test computed wrong values") : 0;
}

/* ---- kernels ---------------------------------------------------------------------- */

#define DML_THREADS 256
static unsigned dml__blocks(size_t n)
{
    return (unsigned)((n + DML_THREADS - 1) / DML_THREADS);
}

/* z[i][j] = b[j] (training: the product is added onto the bias rows, as the
 * CPU path does), or z[i][j] += b[j] (evaluation: after the product). */
__global__ static void dml__bias_kernel(float *z, const float *b, int n, int d, int add)
{
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (k < (size_t)n * d)
        z[k] = add ? z[k] + b[k % d] : b[k % d];
}

__global__ static void dml__relu_kernel(float *y, const float *x, size_t nz)
{
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (k < nz)
        y[k] = x[k] > 0.0f ? x[k] : 0.0f;
}

/* dy where the ReLU's output a was positive, else 0 (in place). */
__global__ static void dml__relu_backward_kernel(float *dy, const float *a, size_t nz)
{
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (k < nz)
        dy[k] = a[k] > 0.0f ? dy[k] : 0.0f;
}

/* model.c's dml__mix and dml__uniform: the same bits on either side. */
__device__ static double dml__uniform_dev(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

__global__ static void dml__dropout_kernel(float *y, uint8_t *mask, const float *x, size_t nz,
                                           uint64_t key, float keep, float inv)
{
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (k < nz) {
        uint8_t m = dml__uniform_dev(key ^ (uint64_t)k) < keep;
        mask[k] = m;
        y[k] = m ? x[k] * inv : 0.0f;
    }
}

__global__ static void dml__dropout_backward_kernel(float *dy, const uint8_t *mask, size_t nz,
                                                    float inv)
{
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (k < nz)
        dy[k] = mask[k] ? dy[k] * inv : 0.0f;
}

/* Softmax of each row of d in place, the row's maximum taken off first; one
 * thread a row (the output layer is narrow: one unit a class). */
__global__ static void dml__softmax_kernel(float *z, int n, int d)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x, j;

    if (i < n) {
        float *r = z + (size_t)i * d, mx = r[0], s = 0.0f;
        for (j = 1; j < d; j++)
            mx = r[j] > mx ? r[j] : mx;
        for (j = 0; j < d; j++) {
            r[j] = expf(r[j] - mx);
            s += r[j];
        }
        for (j = 0; j < d; j++)
            r[j] /= s;
    }
}

/* Each row's probability of its label, and whether the first largest is it. */
__global__ static void dml__rowstats_kernel(const float *p, const int32_t *y, int n, int d,
                                            float *py, int *ok)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x, j, best = 0;

    if (i < n) {
        const float *r = p + (size_t)i * d;
        for (j = 1; j < d; j++)
            if (r[j] > r[best])
                best = j;
        py[i] = r[y[i]];
        ok[i] = best == y[i];
    }
}

/* dL/dz of the output, scaled: softmax - onehot, times scale. */
__global__ static void dml__output_grad_kernel(float *dy, const float *p, const int32_t *y, int n,
                                               int d, float scale)
{
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (k < (size_t)n * d) {
        int i = (int)(k / d), j = (int)(k % d);
        float v = p[k] * scale;
        dy[k] = j == y[i] ? v - scale : v;
    }
}

/* db[j] = sum over the n rows of dy[i][j], rows in order (as the CPU adds). */
__global__ static void dml__colsum_kernel(float *db, const float *dy, int n, int d)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x, i;

    if (j < d) {
        float s = 0.0f;
        for (i = 0; i < n; i++)
            s += dy[(size_t)i * d + j];
        db[j] = s;
    }
}

/* ---- the network ---------------------------------------------------------------- */

struct dml__gpu_net {
    int device;
    int nl, classes, max_batch, in_sz;
    size_t np, max_elems;
    dml__gpu_layer_t L[DML_GPU_MAX_LAYERS];
    cublasHandle_t blas;
    cudaStream_t stream;
    float *params, *grads, *x; /* device */
    int32_t *y;
    float *out[DML_GPU_MAX_LAYERS];       /* each layer's own output (flatten: none) */
    const float *cur[DML_GPU_MAX_LAYERS]; /* this batch's output of each layer */
    uint8_t *mask[DML_GPU_MAX_LAYERS];
    float *g0, *g1; /* backward's gradients, max_batch x max_elems */
    float *py;
    int *ok;
    float *h_py, *h_grad; /* host staging */
    int *h_ok;
};

static int dml__alloc(void **p, size_t bytes, const char *what)
{
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);

    if (e == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&free_b, &total);
        return dml__gpu_fail(DML_GPU_ERR_NO_MEMORY,
                             "%s: %.1f MiB of GPU memory asked for, %.1f MiB free of %.1f", what,
                             bytes / 1048576.0, free_b / 1048576.0, total / 1048576.0);
    }
    CUDA_TRY(e, what);
    return 0;
}

extern "C" void dml__gpu_net_free(dml__gpu_net_t *g)
{
    int l;

    if (g == NULL)
        return;
    for (l = 0; l < g->nl; l++) {
        cudaFree(g->out[l]);
        cudaFree(g->mask[l]);
    }
    cudaFree(g->params);
    cudaFree(g->grads);
    cudaFree(g->x);
    cudaFree(g->y);
    cudaFree(g->g0);
    cudaFree(g->g1);
    cudaFree(g->py);
    cudaFree(g->ok);
    cudaFreeHost(g->h_py);
    cudaFreeHost(g->h_ok);
    cudaFreeHost(g->h_grad);
    if (g->blas != NULL)
        cublasDestroy(g->blas);
    if (g->stream != NULL)
        cudaStreamDestroy(g->stream);
    free(g);
}

static int dml__create(dml__gpu_net_t *g, const dml__gpu_layer_t *layers, int nlayers)
{
    const size_t nb = (size_t)g->max_batch;
    int l, rc;

    CUDA_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CUBLAS_TRY(cublasCreate(&g->blas), "cublasCreate");
    CUBLAS_TRY(cublasSetStream(g->blas, g->stream), "cublasSetStream");
    /* fp32 products in fp32: no TF32 (PyTorch's default for matmul too). */
    CUBLAS_TRY(cublasSetMathMode(g->blas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    for (l = 0; l < nlayers; l++) {
        const dml__gpu_layer_t *L = &layers[l];
        g->max_elems = (size_t)L->isz > g->max_elems ? (size_t)L->isz : g->max_elems;
        g->max_elems = (size_t)L->osz > g->max_elems ? (size_t)L->osz : g->max_elems;
        if (L->kind != DML_GPU_FLATTEN &&
            (rc = dml__alloc((void **)&g->out[l], nb * L->osz * sizeof(float), "a layer's output")))
            return rc;
        if (L->kind == DML_GPU_DROPOUT &&
            (rc = dml__alloc((void **)&g->mask[l], nb * L->osz, "a dropout mask")))
            return rc;
    }
    if ((rc = dml__alloc((void **)&g->params, g->np * sizeof(float), "the parameters")) ||
        (rc = dml__alloc((void **)&g->grads, g->np * sizeof(float), "the gradients")) ||
        (rc = dml__alloc((void **)&g->x, nb * g->in_sz * sizeof(float), "the input batch")) ||
        (rc = dml__alloc((void **)&g->y, nb * sizeof(int32_t), "the labels")) ||
        (rc = dml__alloc((void **)&g->g0, nb * g->max_elems * sizeof(float),
                         "backward's gradients")) ||
        (rc = dml__alloc((void **)&g->g1, nb * g->max_elems * sizeof(float),
                         "backward's gradients")) ||
        (rc = dml__alloc((void **)&g->py, nb * sizeof(float), "the loss")) ||
        (rc = dml__alloc((void **)&g->ok, nb * sizeof(int), "the loss")))
        return rc;
    CUDA_TRY(cudaMallocHost((void **)&g->h_py, nb * sizeof(float)), "cudaMallocHost");
    CUDA_TRY(cudaMallocHost((void **)&g->h_ok, nb * sizeof(int)), "cudaMallocHost");
    CUDA_TRY(cudaMallocHost((void **)&g->h_grad, (g->np ? g->np : 1) * sizeof(float)),
             "cudaMallocHost");
    return 0;
}

extern "C" int dml__gpu_net_create(int device, const dml__gpu_layer_t *layers, int nlayers,
                                   size_t nparams, int classes, int max_batch, dml__gpu_net_t **out)
{
    dml__gpu_net_t *g;
    int rc;

    *out = NULL;
    CUDA_TRY(cudaSetDevice(device), "cudaSetDevice");
    if (nlayers < 1 || nlayers > DML_GPU_MAX_LAYERS || layers[nlayers - 1].kind != DML_GPU_DENSE)
        return dml__gpu_fail(DML_GPU_ERR_WRONG, "the GPU path needs 1 to %d layers, the last dense",
                             DML_GPU_MAX_LAYERS);
    g = (dml__gpu_net_t *)calloc(1, sizeof(*g));
    if (g == NULL)
        return dml__gpu_fail(DML_GPU_ERR_NO_MEMORY, "no host memory");
    g->device = device;
    g->nl = nlayers;
    g->classes = classes;
    g->max_batch = max_batch;
    g->in_sz = layers[0].isz;
    g->np = nparams;
    memcpy(g->L, layers, (size_t)nlayers * sizeof(*layers));
    if ((rc = dml__create(g, layers, nlayers)) != 0) {
        dml__gpu_net_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* The batch in, the parameters in, then every layer forward and softmax. */
static int dml__forward(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y,
                        int n, int training, uint64_t dseed)
{
    const float *a;
    int l;

    CUDA_TRY(cudaSetDevice(g->device), "cudaSetDevice");
    CUDA_TRY(cudaMemcpyAsync(g->params, params, g->np * sizeof(float), cudaMemcpyHostToDevice,
                             g->stream),
             "copying the parameters to the GPU");
    CUDA_TRY(cudaMemcpyAsync(g->x, x, (size_t)n * g->in_sz * sizeof(float), cudaMemcpyHostToDevice,
                             g->stream),
             "copying the batch to the GPU");
    if (y != NULL)
        CUDA_TRY(cudaMemcpyAsync(g->y, y, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
                                 g->stream),
                 "copying the labels to the GPU");
    a = g->x;
    for (l = 0; l < g->nl; l++) {
        const dml__gpu_layer_t *L = &g->L[l];
        const size_t nz = (size_t)n * L->osz;
        float *z = g->out[l];

        switch (L->kind) {
        case DML_GPU_DENSE: {
            const float *w = g->params + L->poff, *b = w + (size_t)L->isz * L->osz;
            const float one = 1.0f, zero = 0.0f;
            /* Row-major z (n x osz) = a (n x isz) . W (isz x osz) is, to
             * column-major cuBLAS, z^T = W^T . a^T. */
            if (training)
                dml__bias_kernel<<<dml__blocks(nz), DML_THREADS, 0, g->stream>>>(z, b, n, L->osz,
                                                                                 0);
            CUBLAS_TRY(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, L->osz, n, L->isz, &one, w,
                                   L->osz, a, L->isz, training ? &one : &zero, z, L->osz),
                       "a dense layer's forward product");
            if (!training)
                dml__bias_kernel<<<dml__blocks(nz), DML_THREADS, 0, g->stream>>>(z, b, n, L->osz,
                                                                                 1);
            break;
        }
        case DML_GPU_RELU:
            dml__relu_kernel<<<dml__blocks(nz), DML_THREADS, 0, g->stream>>>(z, a, nz);
            break;
        case DML_GPU_DROPOUT:
            if (training && L->p > 0.0f) {
                const float keep = 1.0f - L->p;
                dml__dropout_kernel<<<dml__blocks(nz), DML_THREADS, 0, g->stream>>>(
                    z, g->mask[l], a, nz, dseed ^ ((uint64_t)(l + 1) << 56), keep, 1.0f / keep);
            } else {
                CUDA_TRY(
                    cudaMemcpyAsync(z, a, nz * sizeof(float), cudaMemcpyDeviceToDevice, g->stream),
                    "dropout");
            }
            break;
        case DML_GPU_FLATTEN:
            z = (float *)a; /* a view */
            break;
        }
        CUDA_TRY(cudaGetLastError(), "a layer's kernel");
        g->cur[l] = z;
        a = z;
    }
    dml__softmax_kernel<<<dml__blocks((size_t)n), DML_THREADS, 0, g->stream>>>(g->out[g->nl - 1], n,
                                                                               g->classes);
    CUDA_TRY(cudaGetLastError(), "softmax");
    return 0;
}

/* The loss on the host, as model.c's dml__loss sums it. */
static int dml__loss(dml__gpu_net_t *g, int n, double *loss_sum, int *correct)
{
    double loss = 0;
    int i, ok = 0;

    dml__rowstats_kernel<<<dml__blocks((size_t)n), DML_THREADS, 0, g->stream>>>(
        g->out[g->nl - 1], g->y, n, g->classes, g->py, g->ok);
    CUDA_TRY(cudaGetLastError(), "the loss");
    CUDA_TRY(cudaMemcpyAsync(g->h_py, g->py, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost,
                             g->stream),
             "copying the loss from the GPU");
    CUDA_TRY(
        cudaMemcpyAsync(g->h_ok, g->ok, (size_t)n * sizeof(int), cudaMemcpyDeviceToHost, g->stream),
        "copying the loss from the GPU");
    CUDA_TRY(cudaStreamSynchronize(g->stream), "the forward pass");
    for (i = 0; i < n; i++) {
        const float p = g->h_py[i];
        ok += g->h_ok[i];
        if (p != p)
            loss = NAN;
        else
            loss -= log(p > 1.17549435e-38f ? (double)p : 1.17549435e-38);
    }
    if (loss_sum)
        *loss_sum = loss;
    if (correct)
        *correct = ok;
    return 0;
}

extern "C" int dml__gpu_net_eval(dml__gpu_net_t *g, const float *params, const float *x,
                                 const int32_t *y, int n, float *probs, double *loss_sum,
                                 int *correct)
{
    int rc;

    if ((rc = dml__forward(g, params, x, y, n, 0, 0)) != 0)
        return rc;
    if (probs != NULL)
        CUDA_TRY(cudaMemcpyAsync(probs, g->out[g->nl - 1], (size_t)n * g->classes * sizeof(float),
                                 cudaMemcpyDeviceToHost, g->stream),
                 "copying the probabilities");
    if (y != NULL)
        return dml__loss(g, n, loss_sum, correct);
    CUDA_TRY(cudaStreamSynchronize(g->stream), "the forward pass");
    return 0;
}

extern "C" int dml__gpu_net_train(dml__gpu_net_t *g, const float *params, const float *x,
                                  const int32_t *y, int n, float scale, uint64_t dropout_seed,
                                  float *grads, double *loss_sum, int *correct,
                                  dml__gpu_ready_cb_t ready, void *ready_arg)
{
    float *dy = g->g0, *dx = g->g1, *t;
    const size_t nout = (size_t)n * g->classes;
    int l, rc;

    if ((rc = dml__forward(g, params, x, y, n, 1, dropout_seed)) != 0 ||
        (rc = dml__loss(g, n, loss_sum, correct)) != 0)
        return rc;
    dml__output_grad_kernel<<<dml__blocks(nout), DML_THREADS, 0, g->stream>>>(
        dy, g->out[g->nl - 1], g->y, n, g->classes, scale);
    CUDA_TRY(cudaGetLastError(), "the output's gradient");
    for (l = g->nl - 1; l >= 0; l--) {
        const dml__gpu_layer_t *L = &g->L[l];
        const float *a = l == 0 ? g->x : g->cur[l - 1];
        const size_t nin = (size_t)n * L->isz;

        if (L->pidx < 0 && !L->need_dx)
            break; /* nothing below needs a gradient */
        switch (L->kind) {
        case DML_GPU_DENSE: {
            const float one = 1.0f, zero = 0.0f;
            float *gw = g->grads + L->poff, *gb = gw + (size_t)L->isz * L->osz;
            const float *w = g->params + L->poff;
            size_t k;
            /* dW = a^T . dy: to cuBLAS, dW^T (osz x isz) = dy^T . a */
            CUBLAS_TRY(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, L->osz, L->isz, n, &one, dy,
                                   L->osz, a, L->isz, &zero, gw, L->osz),
                       "a dense layer's weight gradient");
            dml__colsum_kernel<<<dml__blocks((size_t)L->osz), DML_THREADS, 0, g->stream>>>(
                gb, dy, n, L->osz);
            CUDA_TRY(cudaGetLastError(), "a dense layer's bias gradient");
            CUDA_TRY(cudaMemcpyAsync(g->h_grad + L->poff, gw, L->np * sizeof(float),
                                     cudaMemcpyDeviceToHost, g->stream),
                     "copying a gradient");
            if (L->need_dx) {
                /* da = dy . W^T: to cuBLAS, da^T (isz x n) = W . dy^T */
                CUBLAS_TRY(cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->isz, n, L->osz, &one,
                                       w, L->osz, dy, L->osz, &zero, dx, L->isz),
                           "a dense layer's input gradient");
            }
            /* The layer's gradient, added into the host's as the CPU path
             * adds it: the reduction of it may start. */
            CUDA_TRY(cudaStreamSynchronize(g->stream), "a dense layer's backward pass");
            for (k = 0; k < L->np; k++)
                grads[L->poff + k] += g->h_grad[L->poff + k];
            if (ready != NULL)
                ready(ready_arg, L->pidx, L->poff, L->np);
            if (L->need_dx)
                t = dy, dy = dx, dx = t;
            break;
        }
        case DML_GPU_RELU:
            dml__relu_backward_kernel<<<dml__blocks(nin), DML_THREADS, 0, g->stream>>>(
                dy, g->cur[l], nin);
            break;
        case DML_GPU_DROPOUT:
            if (L->p > 0.0f)
                dml__dropout_backward_kernel<<<dml__blocks(nin), DML_THREADS, 0, g->stream>>>(
                    dy, g->mask[l], nin, 1.0f / (1.0f - L->p));
            break;
        case DML_GPU_FLATTEN:
            break;
        }
        CUDA_TRY(cudaGetLastError(), "a layer's backward kernel");
    }
    CUDA_TRY(cudaStreamSynchronize(g->stream), "the backward pass");
    return 0;
}
