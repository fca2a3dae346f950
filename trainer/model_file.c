/*
 * model_file.c: loading a trained model for inference, from a model file
 * (dml-train --output, dml-ckpt export) or straight from a checkpoint, whose
 * "model" group is laid out as a model file's root (docs/formats/checkpoint.md).
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_crc.h"
#include "dml_h5util.h"
#include "dml_train.h"
#include "train_private.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DML_MODEL_FORMAT "slurm-dml model"

void dml_model_info_free(dml_model_info_t *info)
{
    if (info == NULL)
        return;
    free(info->class_names);
    dml_stats_free(&info->stats);
    memset(info, 0, sizeof(*info));
}

/* A directory means its newest checkpoint that verifies. */
static dml_status_t dml__resolve(const char *path, char *file, size_t len, int *is_dir)
{
    dml_ckpt_entry_t *e = NULL;
    size_t n = 0, i;
    struct stat sb;
    dml_status_t st;

    *is_dir = 0;
    if (stat(path, &sb) != 0)
        return dml_error_set_errno(errno, "model %s", path);
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(file, len, "%s", path);
        return DML_OK;
    }
    *is_dir = 1;
    if ((st = dml_ckpt_list(path, &e, &n)) != DML_OK)
        return st;
    for (i = 0; i < n; i++)
        if (dml_ckpt_verify(e[i].path) == DML_OK) {
            snprintf(file, len, "%s", e[i].path);
            free(e);
            return DML_OK;
        }
    free(e);
    return dml_error_set(DML_ERR_NOT_FOUND, "model %s: a directory without a checkpoint that "
                         "verifies (%zu found)", path, n);
}

dml_status_t dml_model_load(const char *path, int max_batch, dml_model_t **m_out,
                            dml_model_info_t *info)
{
    char file[4096], fmt[64];
    dml_model_t *m = NULL;
    hid_t f = -1, loc = -1, d = -1, str = -1;
    hsize_t dims[2];
    uint64_t h = DML_FNV1A_INIT;
    uint32_t want = 0, have;
    int32_t version = 0;
    int is_dir, i;
    size_t np;
    float *w;
    dml__h5_quiet_t q;
    dml_status_t st;

    *m_out = NULL;
    memset(info, 0, sizeof(*info));
    if ((st = dml__resolve(path, file, sizeof(file), &is_dir)) != DML_OK)
        return st;
    dml__h5_quiet_begin(&q);
    if (H5Fis_hdf5(file) <= 0 ||
        (f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: not a readable HDF5 file (truncated or "
                           "corrupt?)", file);
        goto out;
    }
    if (dml__h5_attr_read_str(f, "format", fmt, sizeof(fmt)) != 0)
        fmt[0] = '\0';
    if (strcmp(fmt, DML_CKPT_FORMAT) == 0) {
        /* A checkpoint: every dataset's checksum first (the directory case
         * verified already). */
        if (!is_dir && (st = dml_ckpt_verify(file)) != DML_OK)
            goto out;
        info->checkpoint = 1;
        loc = H5Gopen2(f, "model", H5P_DEFAULT);
    } else if (strcmp(fmt, DML_MODEL_FORMAT) == 0) {
        loc = H5Gopen2(f, "/", H5P_DEFAULT);
    } else {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: neither a slurm-dml model file nor a "
                           "checkpoint (format attribute \"%s\")", file, fmt);
        goto out;
    }
    snprintf(info->path, sizeof(info->path), "%s", file);
    st = dml_error_set(DML_ERR_FORMAT, "model %s: attributes missing or malformed (format, "
                       "version, model, dataset, dataset_hash, normalisation, feature_rank)", file);
    if (loc < 0 || dml__h5_attr_read_str(loc, "format", fmt, sizeof(fmt)) != 0 ||
        strcmp(fmt, DML_MODEL_FORMAT) != 0 ||
        dml__h5_attr_read(loc, "version", H5T_NATIVE_INT32, 1, &version) != 0 ||
        dml__h5_attr_read_str(loc, "model", info->spec_text, sizeof(info->spec_text)) != 0 ||
        dml__h5_attr_read_str(loc, "dataset", info->dataset, sizeof(info->dataset)) != 0 ||
        dml__h5_attr_read_str(loc, "dataset_hash", info->dataset_hash,
                              sizeof(info->dataset_hash)) != 0 ||
        dml__h5_attr_read_str(loc, "normalisation", info->normalisation,
                              sizeof(info->normalisation)) != 0 ||
        dml__h5_attr_read(loc, "feature_rank", H5T_NATIVE_INT32, 1, &info->feature_rank) != 0)
        goto out;
    if (version != 1) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: format version %d, this build reads 1", file,
                           (int)version);
        goto out;
    }
    if (strcmp(info->normalisation, "global") != 0) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: normalisation \"%s\" (this build knows "
                           "\"global\")", file, info->normalisation);
        goto out;
    }
    dml__h5_attr_read(loc, "steps", H5T_NATIVE_UINT64, 1, &info->steps);
    dml__h5_attr_read(loc, "epochs", H5T_NATIVE_UINT64, 1, &info->epochs);
    if ((st = dml_model_spec_parse(info->spec_text, &info->spec)) != DML_OK) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: %s", file, dml_error_message());
        goto out;
    }
    info->num_classes = (uint32_t)info->spec.dims[info->spec.nlayers];
    info->features = (uint64_t)info->spec.dims[0];
    /* no initialisation: the file's weights replace all of them */
    if ((st = dml__model_alloc(&info->spec, max_batch, &m)) != DML_OK)
        goto out;

    /* The weights: shape, checksum (where recorded: model files and
     * checkpoints both carry one), finiteness. */
    np = dml_model_nparams(m);
    w = dml_model_params(m);
    d = H5Dopen2(loc, "weights", H5P_DEFAULT);
    {
        hid_t sp = d < 0 ? -1 : H5Dget_space(d);
        int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
        if (sp >= 0)
            H5Sclose(sp);
        if (nd != 1 || dims[0] != np) {
            st = dml_error_set(DML_ERR_FORMAT, "model %s: weights missing or not the %zu "
                               "parameters of %s", file, np, info->spec_text);
            goto out;
        }
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) < 0) {
        st = dml_error_set(DML_ERR_IO, "model %s: cannot read the weights (damaged file?)", file);
        goto out;
    }
    have = dml_crc32(0, w, np * sizeof(float));
    if (dml__h5_attr_read(d, "crc32", H5T_NATIVE_UINT32, 1, &want) == 0 && want != have) {
        st = dml_error_set(DML_ERR_CHECKSUM, "model %s: weights have CRC-32 %08x, the file "
                           "recorded %08x: the file is damaged", file, have, want);
        goto out;
    }
    for (i = 0; (size_t)i < np; i++)
        if (!isfinite(w[i])) {
            st = dml_error_set(DML_ERR_FORMAT, "model %s: weight %d is not finite", file, i);
            goto out;
        }
    /* The model's identity in inference records: spec and weights (the
     * same for a checkpoint and the model file exported from it). */
    h = dml__fnv1a(h, info->spec_text, strlen(info->spec_text));
    h = dml__fnv1a(h, w, np * sizeof(float));
    snprintf(info->hash, sizeof(info->hash), "%016llx", (unsigned long long)h);

    info->class_names = calloc(info->num_classes, DML_DATASET_NAME_MAX);
    str = H5Tcopy(H5T_C_S1);
    if (info->class_names == NULL || str < 0 || H5Tset_size(str, DML_DATASET_NAME_MAX) < 0 ||
        dml__h5_read(loc, "class_names", str, info->num_classes, 0, info->class_names) != 0) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: class_names missing or not %u entries", file,
                           info->num_classes);
        goto out;
    }
    for (i = 0; (uint32_t)i < info->num_classes; i++)
        info->class_names[i][DML_DATASET_NAME_MAX - 1] = '\0';
    {
        hid_t g = H5Gopen2(loc, "stats", H5P_DEFAULT);
        st = g < 0 ? DML_ERR_FORMAT
                   : dml_stats_read_h5(g, info->features, info->num_classes, &info->stats);
        if (g >= 0)
            H5Gclose(g);
        if (st != DML_OK) {
            st = dml_error_set(DML_ERR_FORMAT, "model %s: the training statistics (group stats) "
                               "are missing or malformed", file);
            goto out;
        }
    }
    st = DML_OK;
    dml_error_clear();
out:
    if (str >= 0)
        H5Tclose(str);
    if (d >= 0)
        H5Dclose(d);
    if (loc >= 0)
        H5Gclose(loc);
    if (f >= 0)
        H5Fclose(f);
    dml__h5_quiet_end(&q);
    if (st != DML_OK) {
        dml_model_free(m);
        dml_model_info_free(info);
        return st;
    }
    *m_out = m;
    return DML_OK;
}
