/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * model_arrays.c: a model as its file knows it: the bound spec, each layer's
 * place in the flat arrays, and the parameter, gradient and buffer arrays.
 * With spec.c and model_file.c it is libdml_model, the model file layer,
 * which reads, verifies and writes model files without computing; model.c
 * adds the compute (activations, kernels) in libdml_nn, through the two
 * hooks model_private.h describes (model_nocompute.c where nothing computes).
 */
#include "config.h"

#include "model_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dml_model_free(dml_model_t *m)
{
    if (m == NULL)
        return;
    dml__model_compute_free(m);
    if (!m->borrowed) {
        free(m->params);
        free(m->grads);
    }
    free(m->bufs);
    free(m);
}

static size_t dml__elems(const int *t)
{
    return (size_t)t[0] * (size_t)t[1] * (size_t)t[2];
}

/* Each layer's place in the arrays, and the forward pass's floating-point
 * operations, from the bound spec. */
static void dml__model_layout(dml_model_t *m)
{
    const dml_model_spec_t *spec = &m->spec;
    size_t poff = 0, boff = 0;
    int l, any_params = 0;

    for (l = 0; l < spec->nlayers; l++) {
        const dml_layer_t *L = &spec->layer[l];
        dml__lstate_t *s = &m->ls[l];
        s->isz = dml__elems(L->in);
        s->osz = dml__elems(L->out);
        s->np = dml_layer_nparams(L);
        s->nb = dml_layer_nbuffers(L);
        s->poff = poff;
        s->boff = boff;
        poff += s->np;
        boff += s->nb;
        s->pidx = -1;
        s->need_dx = any_params;
        if (s->np > 0) {
            s->pidx = m->nplayers;
            m->player[m->nplayers++] = l;
            any_params = 1;
        }
        if (L->kind == DML_LAYER_DENSE)
            m->flops += 2.0 * (double)s->isz * (double)L->units;
        else if (L->kind == DML_LAYER_CONV2D)
            m->flops += 2.0 * (double)s->osz * (double)L->in[0] * L->kh * L->kw;
    }
    m->np = poff;
    m->nb = boff;
}

dml_status_t dml__model_alloc(const dml_model_spec_t *spec, int max_batch, dml_model_t **model_out)
{
    dml_model_t *m;
    dml_status_t st;

    if (!spec->bound || spec->nlayers < 1 || spec->nlayers > DML_MODEL_MAX_LAYERS || max_batch < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "model: %d layers%s, batch %d", spec->nlayers,
                             spec->bound ? "" : " not bound to a data shape", max_batch);
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the model");
    m->spec = *spec;
    m->max_batch = max_batch;
    snprintf(m->device.name, sizeof(m->device.name), "cpu");
    dml__model_layout(m);
    m->params = malloc(m->np * sizeof(float) + 1);
    m->grads = calloc(m->np + 1, sizeof(float));
    m->bufs = calloc(m->nb + 1, sizeof(float));
    if (m->params == NULL || m->grads == NULL || m->bufs == NULL) {
        const size_t np = m->np;
        dml_model_free(m);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a model of %zu parameters", np);
    }
    if ((st = dml__model_compute_alloc(m)) != DML_OK) {
        dml_model_free(m);
        return st;
    }
    *model_out = m;
    return DML_OK;
}

const dml_model_spec_t *dml_model_spec(const dml_model_t *m)
{
    return &m->spec;
}
size_t dml_model_nparams(const dml_model_t *m)
{
    return m->np;
}
size_t dml_model_nbuffers(const dml_model_t *m)
{
    return m->nb;
}
int dml_model_max_batch(const dml_model_t *m)
{
    return m->max_batch;
}
float *dml_model_params(dml_model_t *m)
{
    return m->params;
}
float *dml_model_grads(dml_model_t *m)
{
    return m->grads;
}
float *dml_model_buffers(dml_model_t *m)
{
    return m->bufs;
}
int dml_model_classes(const dml_model_t *m)
{
    return m->spec.classes;
}
double dml_model_flops(const dml_model_t *m)
{
    return m->flops;
}
int dml_model_param_layers(const dml_model_t *m)
{
    return m->nplayers;
}

void dml_model_layer_range(const dml_model_t *m, int l, size_t *offset, size_t *count)
{
    const dml__lstate_t *s = &m->ls[m->player[l]];
    *offset = s->poff;
    *count = s->np;
}
