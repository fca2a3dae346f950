/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nn_ref SPEC C H W N OUT.h5: one training step of a network for
 * torch_ref.py to redo in PyTorch. Writes to OUT.h5 (plain HDF5, for h5py):
 * the spec (canonical text), the input x (N x C x H x W) and labels y, the
 * parameters and buffers before (params0, buffers0), evaluation's
 * probabilities (eval_probs), the training step's mean loss (train_loss),
 * gradients (grads), running statistics after it (buffers1) and the
 * parameters after one SGD step of learning rate 0.1 (params1); the dropout
 * seed (dropout_seed). H = W = 1 binds flat samples of C values.
 */
#include "config.h"

#include "dml_train.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

static void put(hid_t f, const char *name, hid_t type, hsize_t n, const void *data)
{
    hid_t sp = H5Screate_simple(1, &n, NULL), d;

    d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        fprintf(stderr, "nn_ref: cannot write %s\n", name);
        exit(1);
    }
    H5Dclose(d);
    H5Sclose(sp);
}

int main(int argc, char **argv)
{
    const uint64_t dseed = 0x5eed;
    dml_model_spec_t spec;
    dml_model_t *m;
    dml_opt_config_t oc;
    dml_opt_t *o;
    uint64_t shape[3];
    char text[DML_MODEL_SPEC_MAX];
    float *x, *probs;
    int32_t *y;
    double loss;
    size_t isz, i, np, nb;
    int n, rank;
    hid_t f;

    if (argc != 7) {
        fprintf(stderr, "usage: nn_ref SPEC C H W N OUT.h5\n");
        return 2;
    }
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    shape[0] = strtoull(argv[2], NULL, 10);
    shape[1] = strtoull(argv[3], NULL, 10);
    shape[2] = strtoull(argv[4], NULL, 10);
    n = atoi(argv[5]);
    rank = shape[1] == 1 && shape[2] == 1 ? 1 : 3;
    if (dml_model_spec_parse(argv[1], &spec) != DML_OK ||
        dml_model_spec_bind(&spec, rank, shape, 0) != DML_OK ||
        dml_model_create(&spec, 3, n, &m) != DML_OK) {
        fprintf(stderr, "nn_ref: %s\n", dml_error_message());
        return 1;
    }
    dml_model_spec_format(&spec, text, sizeof(text));
    isz = (size_t)shape[0] * shape[1] * shape[2];
    np = dml_model_nparams(m);
    nb = dml_model_nbuffers(m);
    x = malloc((size_t)n * isz * sizeof(float));
    y = malloc((size_t)n * sizeof(int32_t));
    probs = malloc((size_t)n * (size_t)spec.classes * sizeof(float));
    for (i = 0; i < (size_t)n * isz; i++)
        x[i] = (float)(sin(0.731 * (double)i + 0.2) * 1.7 + 0.3 * cos(0.011 * (double)i));
    for (i = 0; i < (size_t)n; i++)
        y[i] = (int32_t)((i * 7 + 3) % (size_t)spec.classes);
    /* biases and shifts off zero, scales off one: every parameter matters */
    for (i = 0; i < np; i++)
        dml_model_params(m)[i] += 0.03f * (float)cos(0.37 * (double)i);
    for (i = 0; i < nb; i++)
        dml_model_buffers(m)[i] += 0.2f * (float)fabs(sin(0.5 * (double)i));

    f = H5Fcreate(argv[6], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    {
        hid_t str = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a;
        H5Tset_size(str, strlen(text) + 1);
        a = H5Acreate2(f, "spec", str, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, str, text);
        H5Aclose(a);
        H5Sclose(sp);
        H5Tclose(str);
    }
    put(f, "shape", H5T_NATIVE_UINT64, 3, shape);
    put(f, "dropout_seed", H5T_NATIVE_UINT64, 1, &dseed);
    put(f, "x", H5T_NATIVE_FLOAT, (hsize_t)n * isz, x);
    put(f, "y", H5T_NATIVE_INT32, (hsize_t)n, y);
    put(f, "params0", H5T_NATIVE_FLOAT, np, dml_model_params(m));
    put(f, "buffers0", H5T_NATIVE_FLOAT, nb + 1, dml_model_buffers(m));

    dml_model_eval(m, x, NULL, n, probs, NULL, NULL);
    put(f, "eval_probs", H5T_NATIVE_FLOAT, (hsize_t)n * (hsize_t)spec.classes, probs);

    dml_model_zero_grads(m);
    if (dml_model_train_step(m, x, y, n, 1.0f / (float)n, dseed, &loss, NULL, NULL, NULL) !=
        DML_OK) {
        fprintf(stderr, "nn_ref: %s\n", dml_error_message());
        return 1;
    }
    loss /= n;
    put(f, "train_loss", H5T_NATIVE_DOUBLE, 1, &loss);
    put(f, "grads", H5T_NATIVE_FLOAT, np, dml_model_grads(m));
    put(f, "buffers1", H5T_NATIVE_FLOAT, nb + 1, dml_model_buffers(m));
    dml_opt_config_init(&oc, DML_OPT_SGD);
    oc.momentum = 0;
    dml_opt_create(&oc, np, &o);
    dml_opt_step(o, dml_model_params(m), dml_model_grads(m), 0.1f);
    put(f, "params1", H5T_NATIVE_FLOAT, np, dml_model_params(m));
    H5Fclose(f);
    dml_opt_free(o);
    dml_model_free(m);
    free(x);
    free(y);
    free(probs);
    return 0;
}
