/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nn_private.h: what the network library's files share; not installed, and
 * hidden from the library's users (-fvisibility=hidden).
 */
#ifndef DML_NN_PRIVATE_H
#define DML_NN_PRIVATE_H

#include "dml_nn.h"

/* A model of a bound spec with its buffers, its parameters not initialised:
 * for a caller that fills every one of them (loading a model file, whose
 * weights replace them all, skips dml_model_create's initialisation). */
dml_status_t dml__model_alloc(const dml_model_spec_t *spec, int max_batch, dml_model_t **model_out);

/* ---- convolution (conv.c) ----------------------------------------------------- */

typedef struct dml__conv dml__conv_t;

/* A convolution layer's kernels, for batches of up to max_batch; need_dx:
 * backward computes the input's gradient (not for a network's first layer
 * with parameters); relu: the forward pass's output goes through ReLU (the
 * layer after it, done as the output is written). */
dml_status_t dml__conv_create(const dml_layer_t *l, int max_batch, int need_dx, int relu,
                              dml__conv_t **out);
void dml__conv_free(dml__conv_t *c);
/* y = conv(x, w) + b for n samples (and ReLU, where created so). */
dml_status_t dml__conv_forward(dml__conv_t *c, const float *x, const float *w, const float *b,
                               float *y, int n);
/* Right after the forward pass of the same n samples x: dw += dL/dw,
 * db += dL/db, and dx = dL/dx where dx is not NULL. */
dml_status_t dml__conv_backward(dml__conv_t *c, const float *x, const float *w, const float *dy,
                                float *dw, float *db, float *dx, int n);

#endif /* DML_NN_PRIVATE_H */
