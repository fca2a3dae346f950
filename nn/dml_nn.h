/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_nn.h: the network: a sequence of layers (dense, 2-D convolution, max
 * and average pooling, batch normalisation, dropout, flatten, ReLU) ending in
 * softmax cross-entropy, its forward and backward passes on the CPU, its
 * parameters and gradients in flat arrays, and its file format (the model
 * files dml-train writes and dml-infer reads; docs/formats/model.md).
 *
 * The trainer (dml_train.h) adds the optimisers, the data-parallel step and
 * the loop; batch inference (dml_infer.h) uses this library alone.
 *
 * Tensors are laid out as PyTorch lays them out: a batch of n samples of C
 * channels of H x W is n x C x H x W, row-major; flatten keeps that order;
 * convolution weights are filters x C x kh x kw. A dense layer's weights are
 * inputs x outputs (the transpose of torch.nn.Linear.weight).
 *
 * The parameters (weights, biases, batch normalisation's scale and shift) are
 * one contiguous float array, layer by layer, each layer's weights before its
 * bias; the gradients are a second array laid out alike. Batch
 * normalisation's running statistics are not parameters (no optimiser
 * touches them): they are the model's "buffers", a third array.
 *
 * Nothing here prints, exits, reads the environment or knows MPI: where batch
 * normalisation needs statistics over the whole data-parallel batch, the
 * caller supplies a reduction (dml_model_set_reduce).
 */
#ifndef DML_NN_H
#define DML_NN_H

#include "dml_stats.h" /* the training statistics a model file carries */
#include "dml_status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

#define DML_MODEL_MAX_LAYERS 64
#define DML_MODEL_SPEC_MAX 1024 /* a spec's text, with its terminating NUL */

/* ---- the spec ---------------------------------------------------------------
 *
 * Written by users on the command line and in config files:
 *
 *   mlp:784-512-256-10[:dropout=P]            dense layers with ReLU between
 *   conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10)
 *   cnn | cnn-bn | cnn-dropout                the book's three models
 *
 * Layers, separated by commas, each NAME or NAME(ARGS):
 *   conv2d(FILTERS, KERNEL[, stride=S][, padding=P|same])   (KERNEL: K or KHxKW)
 *   maxpool(K[, stride=S])   avgpool(K[, stride=S])          (stride: K)
 *   batchnorm[(eps=E, momentum=M)]                           (1e-5, 0.1)
 *   dropout(P)   flatten   dense(UNITS)   relu
 * The input shape comes from the data (dml_model_spec_bind); the last layer
 * is a dense layer with one unit per class.
 */
typedef enum {
    DML_LAYER_DENSE = 0,
    DML_LAYER_CONV2D,
    DML_LAYER_MAXPOOL,
    DML_LAYER_AVGPOOL,
    DML_LAYER_BATCHNORM,
    DML_LAYER_DROPOUT,
    DML_LAYER_FLATTEN,
    DML_LAYER_RELU
} dml_layer_kind_t;

typedef struct {
    dml_layer_kind_t kind;
    int units;                  /* dense: outputs; conv2d: filters */
    int kh, kw, sh, sw, ph, pw; /* conv2d, pooling: kernel, stride, padding */
    int same;                   /* conv2d: padding=same (the output keeps the input's size) */
    float p;                    /* dropout: the probability of dropping */
    float eps, momentum;        /* batchnorm */
    /* Filled by dml_model_spec_bind: input and output shapes, C x H x W
     * (a flat tensor of F values: F x 1 x 1). */
    int in[3], out[3];
} dml_layer_t;

typedef struct {
    int nlayers;
    dml_layer_t layer[DML_MODEL_MAX_LAYERS];
    int mlp;           /* given as mlp:...: written back so */
    int mlp_inputs;    /* mlp: its input size */
    float mlp_dropout; /* mlp: its dropout (kept in the text without hidden layers) */
    int bound;         /* shapes known (dml_model_spec_bind) */
    int in[3];         /* bound: the input, C x H x W */
    int classes;       /* bound: outputs of the last layer */
} dml_model_spec_t;

/* Parses text into spec (not yet bound to an input shape, except an mlp:,
 * whose input size is its first number: bound to F x 1 x 1). Refuses unknown
 * layers and options, sizes that are zero, negative or too large, naming the
 * layer (its position and text) and the reason. */
dml_status_t dml_model_spec_parse(const char *text, dml_model_spec_t *spec);

/*
 * Binds spec to one sample's feature shape (rank 1: F values; rank 2: H x W,
 * one channel; rank 3: C x H x W) and its number of classes: computes every
 * layer's shapes and checks that each layer fits its input (a window larger
 * than its input, a convolution on flat data, a dense layer on an image
 * without flatten, an output layer with fewer units than classes), that no
 * size overflows, and, for an mlp:, that its input size is the data's. The
 * message names the layer and the reason.
 */
dml_status_t dml_model_spec_bind(dml_model_spec_t *spec, int rank, const uint64_t *shape,
                                 uint32_t classes);

/* The spec in its canonical text (every default left out, the mlp: form
 * kept): what model files and checkpoints record, and what two specs are
 * compared by. */
void dml_model_spec_format(const dml_model_spec_t *spec, char *buf, size_t len);

/* A layer in the spec's text form ("maxpool(2)"), for messages. */
void dml_layer_format(const dml_layer_t *l, char *buf, size_t len);

/* Parameters and buffer values of layer l (0 for layers without). */
size_t dml_layer_nparams(const dml_layer_t *l);
size_t dml_layer_nbuffers(const dml_layer_t *l);

/* ---- the model --------------------------------------------------------------- */

typedef struct dml_model dml_model_t;

/* Bound spec, initialised weights: He (normal, std sqrt(2/fan_in)) for dense
 * and convolution weights, zero biases, batch normalisation's scale 1, shift
 * 0, running mean 0 and variance 1; from the seed alone, so every rank gets
 * the same model. max_batch sizes the activation buffers. */
dml_status_t dml_model_create(const dml_model_spec_t *spec, uint64_t seed, int max_batch,
                              dml_model_t **model_out);
void dml_model_free(dml_model_t *m);

const dml_model_spec_t *dml_model_spec(const dml_model_t *m);
size_t dml_model_nparams(const dml_model_t *m);
size_t dml_model_nbuffers(const dml_model_t *m);
int dml_model_max_batch(const dml_model_t *m);
float *dml_model_params(dml_model_t *m);
float *dml_model_grads(dml_model_t *m);
float *dml_model_buffers(dml_model_t *m);
/* Number of classes: outputs of the last layer. */
int dml_model_classes(const dml_model_t *m);
/* Floating-point operations of one sample's forward pass (multiply-adds
 * count two), for throughput bounds. */
double dml_model_flops(const dml_model_t *m);

/* Layers with parameters, in order: the units in which backward reports
 * gradients as final (dml_grad_ready_cb_t), and their ranges of the flat
 * arrays: [offset, offset + count). */
int dml_model_param_layers(const dml_model_t *m);
void dml_model_layer_range(const dml_model_t *m, int l, size_t *offset, size_t *count);

/* Batch normalisation in training uses statistics of the whole batch, which
 * in data-parallel training is spread over the ranks: reduce sums n doubles
 * in place over every rank (MPI_Allreduce in the trainer), the same on every
 * rank, so that every rank normalises alike and keeps the same running
 * statistics (as torch.nn.SyncBatchNorm does). NULL: this process's batch is
 * the whole batch. */
typedef dml_status_t (*dml_model_reduce_cb_t)(void *arg, double *buf, int n);
void dml_model_set_reduce(dml_model_t *m, dml_model_reduce_cb_t reduce, void *arg);

/* Called during backward when parameter layer l's gradient is final. */
typedef void (*dml_grad_ready_cb_t)(void *arg, int layer, size_t offset, size_t count);

/*
 * One forward and backward pass over n samples (x: n x the input's size,
 * normalised; y: labels). Gradients are ADDED to the flat gradient array (zero
 * it with dml_model_zero_grads; accumulating over micro-batches needs nothing
 * else), scaled by `scale` (1/global batch, so that summing over ranks gives
 * the global mean). *loss_sum gets the summed cross-entropy of the n samples,
 * *correct the number predicted right. dropout_seed makes dropout masks
 * reproducible (any value without dropout). Batch normalisation's running
 * statistics are updated. DML_ERR_INVALID_ARG for a label outside the output
 * layer, naming it; a failed reduction's status.
 */
dml_status_t dml_model_train_step(dml_model_t *m, const float *x, const int32_t *y, int n,
                                  float scale, uint64_t dropout_seed, double *loss_sum,
                                  int *correct, dml_grad_ready_cb_t cb, void *cb_arg);

/* Forward only (evaluation: no dropout, running statistics): probabilities
 * n x classes into probs (may be NULL), summed loss and correct count (if
 * y != NULL). A sample's result depends on the samples beside it in the call
 * only through the shape of the call (the BLAS and convolution kernels chosen
 * for it). */
dml_status_t dml_model_eval(dml_model_t *m, const float *x, const int32_t *y, int n, float *probs,
                            double *loss_sum, int *correct);

void dml_model_zero_grads(dml_model_t *m);

/* The model computes with the caller's parameter and gradient arrays (nparams
 * floats each: memory the ranks of a node share, in the trainer's shared
 * data-parallel step); its own are freed and nothing is copied. The caller
 * keeps them alive until dml_model_own_arrays, which goes back to arrays of
 * the model's own, the parameters' current values copied, the gradients
 * zero (or until dml_model_free, which leaves them alone). */
void dml_model_borrow_arrays(dml_model_t *m, float *params, float *grads);
dml_status_t dml_model_own_arrays(dml_model_t *m);

/* The threads the convolutions may use (oneDNN's OpenMP threads; BLAS's are
 * set apart, with openblas_set_num_threads): process-wide, for the tools to
 * set (a rank per core: 1). */
void dml_nn_set_threads(int n);

/* ---- devices -------------------------------------------------------------------
 *
 * Where a model computes: the CPU, or an NVIDIA GPU through CUDA where the
 * library was built with the GPU path (configure found CUDA, cuBLAS, cuDNN,
 * NCCL and nvcc). GPUs are numbered as the CUDA runtime numbers those this
 * process sees: under Slurm with the SPANK plugin's --dml-gpus (or
 * --gpus-per-task) that is the task's own GPU alone, number 0.
 */
typedef enum { DML_DEVICE_CPU = 0, DML_DEVICE_CUDA = 1 } dml_device_kind_t;

typedef struct {
    dml_device_kind_t kind;
    int index;              /* CUDA: the runtime's number of the GPU */
    char name[256];         /* the GPU's name as CUDA gives it; "cpu" */
    char pci_bus_id[32];    /* "0000:19:00.0": the one name nvidia-smi, hwloc and Slurm share */
    uint64_t memory;        /* CUDA: the GPU's memory, bytes */
    int cc_major, cc_minor; /* CUDA: compute capability (9.0: Hopper) */
} dml_device_t;

/* Whether this library was built with the GPU path. */
int dml_nn_have_cuda(void);

/* The GPUs this process sees. 0 where there are none (no GPU, no driver, an
 * empty CUDA_VISIBLE_DEVICES); DML_ERR_UNSUPPORTED where the library was
 * built without the GPU path. */
dml_status_t dml_device_count(int *count);

/*
 * Chooses the device for want: "cpu"; "cuda" (GPU local_rank modulo the
 * GPUs seen: each rank of a node its own while there are enough); "cuda:N";
 * "auto" (as "cuda" where a GPU is seen, else the CPU). A GPU chosen is
 * checked by running this build's GPU code on it, so that a GPU it was not
 * built for, a driver older than the toolkit or a GPU that is busy in
 * exclusive mode is refused here with CUDA's reason, not half-way into a
 * job. The messages say what was asked, what is seen and why.
 */
dml_status_t dml_device_select(const char *want, int local_rank, dml_device_t *dev);

/* Whether name is a device name dml_device_select takes: "cpu", "cuda",
 * "cuda:N" (N from 0 to 1023) or "auto". The name only: whether a GPU is
 * there is each rank's to find, at dml_device_select. The tools' one check. */
int dml_device_name_valid(const char *name);

/* "cuda:N (the GPU's name, sm_XY, its memory in GiB, its PCI bus id)" or "cpu". */
void dml_device_format(const dml_device_t *dev, char *buf, size_t len);

/*
 * Where model m computes from now on: the CPU (dev NULL or a CPU device), or
 * the GPU dml_device_select chose. The GPU path runs networks of dense,
 * ReLU, dropout and flatten layers (an mlp:) in fp32 with the same calls and
 * results as the CPU path, to rounding: for each batch the parameters are
 * copied to the GPU, and the batch's gradients copied back and added into
 * the gradient array, each parameter layer's as soon as it is final, so that
 * the optimiser, the data-parallel reduction and checkpoints work on the
 * host's arrays as they do on the CPU path. Refuses (DML_ERR_UNSUPPORTED) a
 * network with another layer, naming it, before asking anything of CUDA;
 * out of GPU memory is DML_ERR_NO_MEMORY naming the model, the batch and the
 * memory asked for. On failure the model stays on the device it was on.
 *
 * Not yet verified on a GPU (issue #25): scripts/check-gpu's gpu-layers
 * step (tests/nn/test_gpu_layers) compares it with the CPU path.
 */
dml_status_t dml_model_set_device(dml_model_t *m, const dml_device_t *dev);
const dml_device_t *dml_model_device(const dml_model_t *m);

/* ---- model files ---------------------------------------------------------------
 *
 * The format's one owner (docs/formats/model.md): a model file is an HDF5
 * file whose root holds it; a checkpoint holds the same layout in its "model"
 * group (docs/formats/checkpoint.md). Version 2 records the layers' spec and
 * the input shape, and the buffers; version-1 files (mlp: models) still load.
 */

/* What a model file says about its model and the data it was trained on. */
typedef struct {
    char path[4096];       /* the file loaded */
    int checkpoint;        /* it was a checkpoint (its "model" group) */
    int version;           /* of the format */
    dml_model_spec_t spec; /* bound */
    char spec_text[DML_MODEL_SPEC_MAX];
    char dataset[1024]; /* the training data, and its content hash */
    char dataset_hash[17];
    char normalisation[16]; /* "global": (x - mean) / std of stats */
    int32_t feature_rank;
    uint64_t feature_shape[DML_DATASET_MAX_RANK];
    uint64_t features;                         /* the product of the shape */
    uint32_t num_classes;                      /* the model's outputs */
    uint32_t data_classes;                     /* the training data's classes (<= num_classes) */
    char (*class_names)[DML_DATASET_NAME_MAX]; /* num_classes names: the data's, then "class<k>" */
    dml_stats_t stats;                         /* the training data's statistics */
    uint64_t steps, epochs;
    char hash[17]; /* of spec, weights and buffers: the model's identity */
} dml_model_info_t;

/*
 * Loads a model for inference from a model file or a checkpoint file (its
 * "model" group; a checkpoint directory is resolved to a file, and the whole
 * checkpoint verified, by dml_ckpt_model_path first). Checks the format, the
 * spec against the recorded input shape, the arrays' shapes and CRC-32, that
 * they are finite, and the file's checksum over spec, weights and every other
 * value where recorded (docs/formats/model.md). max_batch sizes the
 * activation buffers. Free with
 * dml_model_free and dml_model_info_free.
 */
dml_status_t dml_model_load(const char *path, int max_batch, dml_model_t **m_out,
                            dml_model_info_t *info);
void dml_model_info_free(dml_model_info_t *info);

/* Writes model m as a model file at path (format version 2) with what info
 * says of its training (dataset, dataset_hash, normalisation, feature_rank
 * and feature_shape, data_classes and as many class_names, stats, steps,
 * epochs; the rest is ignored): built in memory, then written whole to a
 * temporary name (its size reserved first: a full disk fails at once with
 * the OS's reason, leaving nothing behind), fsync'ed and renamed into place. */
dml_status_t dml_model_save(const char *path, dml_model_t *m, const dml_model_info_t *info);

/* The size in bytes of the model file dml_model_save would write for m and
 * info: a model's file keeps its size through training, so a tool can check
 * the space its output needs before the work. */
dml_status_t dml_model_file_size(dml_model_t *m, const dml_model_info_t *info, uint64_t *bytes);

/*
 * For writers that store the arrays their own way (a checkpoint's parallel,
 * checksummed writes): the model's layout at loc (an open HDF5 file or group,
 * hid_t passed as int64_t), every attribute and the stats group written here,
 * and each array (weights, buffers, class_names; dims[1] 0 for 1-D) handed to
 * put. Collective where put is: every rank makes the same calls.
 */
typedef dml_status_t (*dml_model_put_cb_t)(void *arg, int64_t loc, const char *name, int64_t type,
                                           const uint64_t dims[2], const void *data);
dml_status_t dml_model_write_h5(int64_t loc, dml_model_t *m, const dml_model_info_t *info,
                                dml_model_put_cb_t put, void *put_arg);

/* The group that holds a model inside another file (a checkpoint): where a
 * writer creates, and a reader opens, the loc of dml_model_write_h5 and
 * dml_model_read_h5. nn/ names the model's layout; no other component does. */
#define DML_MODEL_GROUP "model"

/*
 * The mirror of dml_model_write_h5, for readers that check the arrays their
 * own way (a checkpoint's checksummed reads): the layout at loc must be a
 * model of m's spec (DML_ERR_FORMAT, DML_ERR_MISMATCH); its weights, and its
 * buffers where m has any, are handed to get, which fills n values of the
 * native type `type`. get NULL: read here, each CRC-32 checked where recorded
 * and every value finite. m itself does not change: the arrays go to
 * weights (dml_model_nparams(m) values) and buffers (dml_model_nbuffers(m);
 * may be NULL where 0), dml_model_params(m) and dml_model_buffers(m) to load
 * into m, or the caller's, to adopt only once everything else loaded too.
 * Collective where get is: every rank makes the same calls.
 */
typedef dml_status_t (*dml_model_get_cb_t)(void *arg, int64_t loc, const char *name, int64_t type,
                                           uint64_t n, void *data);
dml_status_t dml_model_read_h5(int64_t loc, const dml_model_t *m, dml_model_get_cb_t get,
                               void *get_arg, float *weights, float *buffers);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_NN_H */
