/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * model_nocompute.c: the model's compute hooks (model_private.h) for
 * file-only users of the model file layer (libdml_model). The registry
 * (libdml_registry and dml-registry) hashes, verifies and copies model files
 * without ever running one, and must not link libdml_nn's compute (BLAS,
 * oneDNN, OpenMP): it links this instead of model.c, and its models hold
 * their arrays alone. Whoever links libdml_model links exactly one of the
 * two, explicitly; forgetting both is a link error, not a model that
 * cannot compute.
 */
#include "config.h"

#include "model_private.h"

dml_status_t dml__model_compute_alloc(dml_model_t *m)
{
    (void)m;
    return DML_OK;
}

void dml__model_compute_free(dml_model_t *m)
{
    (void)m;
}
