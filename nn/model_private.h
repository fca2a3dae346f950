/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * model_private.h: the model object's layout, shared by its two halves: the
 * part model files need (model_arrays.c: the spec, the parameters', gradients'
 * and buffers' arrays, in libdml_model with spec.c and model_file.c) and the
 * compute (model.c: activations, convolution kernels, the GPU path, in
 * libdml_nn; model_nocompute.c for file-only users). Not installed; hidden like the rest of
 * nn_private.h.
 */
#ifndef DML_MODEL_PRIVATE_H
#define DML_MODEL_PRIVATE_H

#include "nn_private.h"

#ifdef HAVE_CUDA
#include "gpu.h"
#endif

typedef struct {
    /* compute (model.c): activations and kernels for max_batch samples */
    float *out;           /* n x osz; the input's buffer where in place */
    int inplace;          /* out is the input's buffer (or the input itself: flatten) */
    int32_t *argmax;      /* maxpool, training: the input index of each output */
    uint8_t *mask;        /* dropout, training: kept */
    float *xhat;          /* batchnorm, training: the normalised input */
    float *mean, *invstd; /* batchnorm, training: this batch's, per channel */
    double *red;          /* batchnorm: sums to reduce over the ranks */
    dml__conv_t *conv;
    /* layout (model_arrays.c) */
    size_t poff, np; /* parameters: [poff, poff + np) */
    size_t boff, nb; /* buffers */
    int pidx;        /* index among the parameter layers, or -1 */
    int need_dx;     /* a layer below has parameters */
    size_t isz, osz; /* values per sample in and out */
} dml__lstate_t;

struct dml_model {
    /* the file layer's part (model_arrays.c): spec, layout, arrays */
    dml_model_spec_t spec;
    dml__lstate_t ls[DML_MODEL_MAX_LAYERS];
    int nplayers, player[DML_MODEL_MAX_LAYERS]; /* parameter layers' indices */
    size_t np, nb;
    float *params, *grads, *bufs;
    int borrowed; /* params and grads are the caller's */
    int max_batch;
    double flops;
    dml_device_t device; /* where it computes (dml_model_set_device) */
    /* the compute part (model.c) */
    size_t max_elems; /* per sample, any layer's input or output */
    const float *in;  /* the batch's input (not owned) */
    float *g0, *g1;   /* backward: gradients n x max_elems */
    dml_model_reduce_cb_t reduce;
    void *reduce_arg;
#ifdef HAVE_CUDA
    dml__gpu_net_t *gpu;        /* the GPU path's state, on device.kind CUDA */
    const dml__gpu_ops_t *gops; /* the GPU module's functions, with gpu */
#endif
};

/*
 * The compute part of a model, made by dml__model_alloc after the arrays
 * (each layer's activations and convolution kernels for max_batch samples)
 * and freed by dml_model_free before them. model_arrays.c calls them; they
 * are defined, strongly, twice, and whoever links libdml_model links exactly
 * one: model.c's, the real ones, in libdml_nn; model_nocompute.c's, which do
 * nothing, where model files are only read, verified and written (the
 * registry: libdml_registry and dml-registry), so that no BLAS, oneDNN or
 * OpenMP is linked and models hold their arrays alone. A link with neither
 * fails (an undefined hidden symbol), rather than making models that cannot
 * compute. Hidden: resolved when each library is linked, never across
 * libraries.
 */
__attribute__((visibility("hidden"))) dml_status_t dml__model_compute_alloc(dml_model_t *m);
__attribute__((visibility("hidden"))) void dml__model_compute_free(dml_model_t *m);

#endif /* DML_MODEL_PRIVATE_H */
