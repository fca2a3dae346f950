/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gpu.h: the GPU module of the network library, dml_nn_cuda.so (gpu.cu,
 * built by nvcc, and gpu_device.c, where configure found CUDA), and how
 * libdml_nn reaches it: through one table of functions, dml_nn_cuda_ops,
 * that gpu_load.c finds with dlopen the first time a GPU is asked for.
 * Why a module: CUDA's libraries (cuBLAS's alone is hundreds of MiB, whose
 * constructors take a third of a second) are then loaded by the runs that
 * use a GPU only, and the same build runs on nodes without CUDA.
 * Not installed; hidden from the library's users. Plain C types only, so
 * that both compilers read it alike. Each function returns 0 on success,
 * else a nonzero code with its text in error() (the calling thread's last).
 */
#ifndef DML_NN_GPU_H
#define DML_NN_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The codes: CUDA's errors are their cudaError_t; these come after them. */
enum {
    DML_GPU_ERR_WRONG = 100000,  /* the self-test ran and computed wrong values */
    DML_GPU_ERR_CUBLAS = 100001, /* a cuBLAS call failed */
    DML_GPU_ERR_NO_MEMORY = 100002,
    DML_GPU_ERR_NO_IMAGE = 100003 /* the module has no code this GPU runs (its sm_XX, or PTX
                                     newer than the driver) */
};

/* The text of the calling thread's last failure ("cudaMalloc of 12 MiB: out
 * of memory"). */
const char *dml__gpu_error(void);

/* Runs a small kernel on the current device and checks what it computed:
 * the GPU can run this build's device code (its sm_XX code, or the PTX the
 * driver compiles). DML_GPU_ERR_WRONG where it ran but computed wrong. */
int dml__gpu_selftest(void);

/* ---- a network of dense, ReLU, dropout and flatten layers -------------------
 *
 * The same arithmetic as model.c's CPU path, on the GPU, in fp32: for each
 * batch the host's parameters are copied in, and the gradients the batch
 * gives are copied back and added into the host's array, parameter layer by
 * parameter layer as each is final (so the trainer's reduction, optimiser
 * and checkpoints work on the host as they do for the CPU path). */
enum { DML_GPU_DENSE = 0, DML_GPU_RELU, DML_GPU_DROPOUT, DML_GPU_FLATTEN };

typedef struct {
    int kind;        /* DML_GPU_* */
    int isz, osz;    /* values per sample in and out */
    size_t poff, np; /* dense: weights (isz x osz, row-major), then osz biases */
    int pidx;        /* index among the parameter layers, or -1 */
    int need_dx;     /* a layer below has parameters */
    float p;         /* dropout: the probability of dropping */
} dml__gpu_layer_t;

typedef struct dml__gpu_net dml__gpu_net_t;

/* On GPU device (the runtime's number): each call below makes it the
 * calling thread's current device first. */
int dml__gpu_net_create(int device, const dml__gpu_layer_t *layers, int nlayers, size_t nparams,
                        int classes, int max_batch, dml__gpu_net_t **out);
void dml__gpu_net_free(dml__gpu_net_t *g);

/* Called when parameter layer pidx's gradient has been added to the host's. */
typedef void (*dml__gpu_ready_cb_t)(void *arg, int pidx, size_t offset, size_t count);

/*
 * One batch of n (1..max_batch) samples, x n x the input's size, y the labels
 * (checked by the caller): forward and backward, *loss_sum and *correct as
 * model.c computes them (the loss summed on the host, in double, in sample
 * order), scale and dropout_seed as dml_model_train_step takes them;
 * grads += this batch's gradients.
 */
int dml__gpu_net_train(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y,
                       int n, float scale, uint64_t dropout_seed, float *grads, double *loss_sum,
                       int *correct, dml__gpu_ready_cb_t ready, void *ready_arg);

/* Forward only (no dropout): probs n x classes (may be NULL); *loss_sum and
 * *correct where y is not NULL. */
int dml__gpu_net_eval(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y,
                      int n, float *probs, double *loss_sum, int *correct);

/* Sets the calling thread's error text; returns code. */
int dml__gpu_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the module's table (gpu_device.c), and libdml_nn's way to it --------------- */

#define DML_GPU_ABI 1 /* changes whenever the table below does */

typedef struct {
    int abi; /* DML_GPU_ABI as the module was built */
    const char *(*error)(void);
    /* The GPUs this process sees; 0 with the reason in error() where none
     * can be used (no driver, no GPU, every one hidden); nonzero: CUDA
     * failed otherwise. */
    int (*count)(int *count);
    int (*describe)(int index, char *name, size_t name_len, uint64_t *memory, int *cc_major,
                    int *cc_minor, char *pci_bus_id, size_t pci_len);
    /* Makes index the calling thread's device and runs the self-test on it:
     * 0, DML_GPU_ERR_NO_IMAGE, DML_GPU_ERR_WRONG or another failure. */
    int (*use)(int index);
    /* dml__gpu_net_* above; out of GPU memory is DML_GPU_ERR_NO_MEMORY. */
    int (*net_create)(int device, const dml__gpu_layer_t *layers, int nlayers, size_t nparams,
                      int classes, int max_batch, dml__gpu_net_t **out);
    void (*net_free)(dml__gpu_net_t *g);
    int (*net_train)(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y,
                     int n, float scale, uint64_t dropout_seed, float *grads, double *loss_sum,
                     int *correct, dml__gpu_ready_cb_t ready, void *ready_arg);
    int (*net_eval)(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y, int n,
                    float *probs, double *loss_sum, int *correct);
} dml__gpu_ops_t;

#define DML_GPU_MODULE "dml_nn_cuda.so"
#define DML_GPU_OPS_SYMBOL "dml_nn_cuda_ops"

/* libdml_nn (gpu_load.c): the module's table, loaded on the first call from
 * beside libdml_nn itself (the build tree), from slurm-dml/ beside it (an
 * installed tree, wherever it was moved) or from the pkglibdir configure
 * chose; NULL with *why saying what was tried and what failed. */
const dml__gpu_ops_t *dml__gpu_ops(const char **why);

#ifdef __cplusplus
}
#endif
#endif /* DML_NN_GPU_H */
