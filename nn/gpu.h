/*
 * gpu.h: the GPU code of the network library (gpu.cu, built by nvcc where
 * configure found CUDA), as the library's C files call it. Not installed;
 * hidden from the library's users. Plain C types only, so that both
 * compilers read it alike. Each function returns 0 on success, else a
 * nonzero code with its text in dml__gpu_error() (the calling thread's
 * last), and runs on the calling thread's current device.
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
    DML_GPU_ERR_WRONG = 100000,   /* the self-test ran and computed wrong values */
    DML_GPU_ERR_CUBLAS = 100001,  /* a cuBLAS call failed */
    DML_GPU_ERR_NO_MEMORY = 100002
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
    int kind;                 /* DML_GPU_* */
    int isz, osz;             /* values per sample in and out */
    size_t poff, np;          /* dense: weights (isz x osz, row-major), then osz biases */
    int pidx;                 /* index among the parameter layers, or -1 */
    int need_dx;              /* a layer below has parameters */
    float p;                  /* dropout: the probability of dropping */
} dml__gpu_layer_t;

typedef struct dml__gpu_net dml__gpu_net_t;

/* On GPU device (the runtime's number): each call below makes it the
 * calling thread's current device first. */
int dml__gpu_net_create(int device, const dml__gpu_layer_t *layers, int nlayers, size_t nparams,
                        int classes, int max_batch, dml__gpu_net_t **out);
void dml__gpu_net_free(dml__gpu_net_t *g);

/* Called when parameter layer pidx's gradient has been added to the host's. */
typedef void (*dml__gpu_ready_fn)(void *arg, int pidx, size_t offset, size_t count);

/*
 * One batch of n (1..max_batch) samples, x n x the input's size, y the labels
 * (checked by the caller): forward and backward, *loss_sum and *correct as
 * model.c computes them (the loss summed on the host, in double, in sample
 * order), scale and dropout_seed as dml_model_train_step takes them;
 * grads += this batch's gradients.
 */
int dml__gpu_net_train(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y,
                       int n, float scale, uint64_t dropout_seed, float *grads, double *loss_sum,
                       int *correct, dml__gpu_ready_fn ready, void *ready_arg);

/* Forward only (no dropout): probs n x classes (may be NULL); *loss_sum and
 * *correct where y is not NULL. */
int dml__gpu_net_eval(dml__gpu_net_t *g, const float *params, const float *x, const int32_t *y,
                      int n, float *probs, double *loss_sum, int *correct);

#ifdef __cplusplus
}
#endif
#endif /* DML_NN_GPU_H */
