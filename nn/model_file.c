/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * model_file.c: the model file format's one reader and writer
 * (docs/formats/model.md). A model file's root, and a checkpoint's "model"
 * group, hold: the attributes (format, version, model spec, the data's feature
 * shape, dataset and its content hash, normalisation, steps, epochs), the
 * arrays weights (and buffers, where the model has batch normalisation) with
 * their CRC-32, class_names, and the training data's statistics (group
 * stats). Version 1 (mlp: models, no feature shape, no buffers) still loads.
 * A checkpoint is ckpt/'s to resolve and verify (dml_ckpt_model_path); read
 * here is only its "model" group, each array's checksum checked.
 * The attribute checksum ties the spec and every other value to the weights
 * (each array's CRC-32 only says the array is whole, not that it belongs to
 * the spec beside it); files written before it have none and load with the
 * checks they had.
 */
#include "config.h"

#include "dml_crc.h"
#include "dml_h5.h"
#include "dml_h5_stats.h"
#include "nn_private.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DML_MODEL_FORMAT "slurm-dml model"
#define DML_MODEL_VERSION 2
#define DML_CKPT_FORMAT "slurm-dml checkpoint" /* ckpt/'s files hold a model in "model" */

void dml_model_info_free(dml_model_info_t *info)
{
    if (info == NULL)
        return;
    free(info->class_names);
    dml__stats_release(&info->stats);
    memset(info, 0, sizeof(*info));
}

/* A float array of exactly n values at loc, its CRC-32 checked where
 * recorded, every value finite. */
static dml_status_t dml__read_array(hid_t loc, const char *file, const char *name, size_t n,
                                    float *buf)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT), sp = -1;
    hsize_t dims[2];
    uint32_t want = 0, have;
    dml_status_t st = DML_OK;
    size_t i;
    int nd;

    sp = d < 0 ? -1 : H5Dget_space(d);
    nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
    if (nd != 1 || dims[0] != n) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: %s missing or not %zu values", file, name, n);
        goto out;
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = dml_error_set(DML_ERR_IO, "model %s: cannot read %s (damaged file?)", file, name);
        goto out;
    }
    have = dml_crc32(0, buf, n * sizeof(float));
    if (dml__h5_attr_read(d, "crc32", H5T_NATIVE_UINT32, 1, &want) == 0 && want != have) {
        st = dml_error_set(DML_ERR_CHECKSUM,
                           "model %s: %s have CRC-32 %08x, the file recorded "
                           "%08x: the file is damaged",
                           file, name, have, want);
        goto out;
    }
    for (i = 0; i < n; i++)
        if (!isfinite(buf[i])) {
            st = dml_error_set(DML_ERR_FORMAT, "model %s: %s value %zu is not finite", file, name,
                               i);
            goto out;
        }
out:
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    return st;
}

/* Strings into the checksum with their NUL, so that "ab","c" and "a","bc"
 * differ. */
static uint64_t dml__fnv1a_str(uint64_t h, const char *s, size_t max)
{
    size_t n = strnlen(s, max - 1);
    return dml__fnv1a(dml__fnv1a(h, s, n), "", 1);
}

/*
 * The checksum a model file records (attribute "checksum", docs/formats/
 * model.md): FNV-1a 64 continued from hash, the model's identity over spec,
 * weights and buffers, over everything else the file says: the feature shape
 * the spec is bound to, the normalisation and the statistics it takes
 * (and that drift is measured against), the class names the outputs are
 * reported by, and the lineage. No value of the file can then change without
 * the load noticing, and the registry's versions keep their names (the hash).
 */
static uint64_t dml__model_checksum(uint64_t hash, const dml_model_info_t *info,
                                    const char *normalisation)
{
    const dml_stats_t *st = &info->stats;
    const uint64_t nf = st->features, nc = info->data_classes;
    uint64_t h = hash;
    int32_t rank = info->feature_rank;

    h = dml__fnv1a(h, &rank, sizeof(rank));
    h = dml__fnv1a(h, info->feature_shape, (size_t)rank * sizeof(uint64_t));
    h = dml__fnv1a_str(h, normalisation, sizeof(info->normalisation));
    h = dml__fnv1a_str(h, info->dataset, sizeof(info->dataset));
    h = dml__fnv1a_str(h, info->dataset_hash, sizeof(info->dataset_hash));
    h = dml__fnv1a(h, &info->steps, sizeof(info->steps));
    h = dml__fnv1a(h, &info->epochs, sizeof(info->epochs));
    h = dml__fnv1a(h, &nf, sizeof(nf));
    h = dml__fnv1a(h, &st->global_mean, sizeof(double));
    h = dml__fnv1a(h, &st->global_std, sizeof(double));
    if (nf > 0) {
        h = dml__fnv1a(h, st->mean, nf * sizeof(double));
        h = dml__fnv1a(h, st->std, nf * sizeof(double));
        h = dml__fnv1a(h, st->min, nf * sizeof(double));
        h = dml__fnv1a(h, st->max, nf * sizeof(double));
        h = dml__fnv1a(h, st->hist_lo, nf * sizeof(double));
        h = dml__fnv1a(h, st->hist_hi, nf * sizeof(double));
        h = dml__fnv1a(h, st->hist, nf * DML_DATASET_HIST_BINS * sizeof(uint64_t));
    }
    h = dml__fnv1a(h, &nc, sizeof(nc));
    if (nc > 0 && st->label_counts != NULL)
        h = dml__fnv1a(h, st->label_counts, nc * sizeof(uint64_t));
    for (uint64_t c = 0; c < nc; c++)
        h = dml__fnv1a_str(h, info->class_names[c], DML_DATASET_NAME_MAX);
    return h;
}

/* The model's identity (info->hash): spec, weights and buffers. */
static uint64_t dml__model_hash(const char *spec, dml_model_t *m)
{
    uint64_t h = DML_FNV1A_INIT;

    h = dml__fnv1a(h, spec, strlen(spec));
    h = dml__fnv1a(h, dml_model_params(m), dml_model_nparams(m) * sizeof(float));
    if (dml_model_nbuffers(m) > 0)
        h = dml__fnv1a(h, dml_model_buffers(m), dml_model_nbuffers(m) * sizeof(float));
    return h;
}

/* The spec, bound to the recorded feature shape. */
static dml_status_t dml__read_spec(hid_t loc, const char *file, dml_model_info_t *info)
{
    uint64_t shape[DML_DATASET_MAX_RANK];
    dml_status_t st;
    int r;

    if ((st = dml_model_spec_parse(info->spec_text, &info->spec)) != DML_OK)
        return dml_error_set(DML_ERR_FORMAT, "model %s: %s", file, dml_error_message());
    if (info->feature_rank < 1 || info->feature_rank > DML_DATASET_MAX_RANK)
        return dml_error_set(DML_ERR_FORMAT, "model %s: feature_rank %d", file,
                             (int)info->feature_rank);
    if (info->version >= 2) {
        if (dml__h5_attr_read(loc, "feature_shape", H5T_NATIVE_UINT64, (size_t)info->feature_rank,
                              info->feature_shape) != 0)
            return dml_error_set(DML_ERR_FORMAT,
                                 "model %s: feature_shape missing or not %d "
                                 "values",
                                 file, (int)info->feature_rank);
        memcpy(shape, info->feature_shape, sizeof(shape));
        r = info->feature_rank;
    } else {
        /* Version 1 recorded no shape: an mlp: is flat. */
        if (!info->spec.mlp)
            return dml_error_set(DML_ERR_FORMAT,
                                 "model %s: a version-1 file of a model other "
                                 "than mlp:",
                                 file);
        shape[0] = (uint64_t)info->spec.mlp_inputs;
        r = 1;
        info->feature_shape[0] = shape[0];
    }
    if ((st = dml_model_spec_bind(&info->spec, r, shape, 0)) != DML_OK)
        return dml_error_set(DML_ERR_FORMAT, "model %s: %s", file, dml_error_message());
    info->features = 1;
    for (int i = 0; i < r; i++)
        info->features *= shape[i];
    info->num_classes = (uint32_t)info->spec.classes;
    return DML_OK;
}

/* The file at file opened read-only, and the group that holds the model in
 * it: the root of a model file, "model" in a checkpoint (info->checkpoint
 * says which). *f and *loc stay -1 where not opened; the caller closes what
 * was. */
static dml_status_t dml__open_model(const char *file, dml_model_info_t *info, hid_t *f, hid_t *loc)
{
    char fmt[64];

    if (H5Fis_hdf5(file) <= 0 || (*f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: not a readable HDF5 file (truncated or "
                             "corrupt?)",
                             file);
    if (dml__h5_attr_read_str(*f, "format", fmt, sizeof(fmt)) != 0)
        fmt[0] = '\0';
    if (strcmp(fmt, DML_CKPT_FORMAT) == 0) {
        info->checkpoint = 1;
        *loc = H5Gopen2(*f, DML_MODEL_GROUP, H5P_DEFAULT);
    } else if (strcmp(fmt, DML_MODEL_FORMAT) == 0) {
        *loc = H5Gopen2(*f, "/", H5P_DEFAULT);
    } else {
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: neither a slurm-dml model file nor a "
                             "checkpoint (format attribute \"%s\")",
                             file, fmt);
    }
    return DML_OK;
}

/* The model's attributes (loc may be -1: a checkpoint without its "model"
 * group), its version and normalisation ones checked; steps and epochs are
 * optional. */
static dml_status_t dml__read_attrs(hid_t loc, const char *file, dml_model_info_t *info)
{
    char fmt[64];
    int32_t version = 0;

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
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: attributes missing or malformed (format, "
                             "version, model, dataset, dataset_hash, normalisation, feature_rank)",
                             file);
    if (version < 1 || version > DML_MODEL_VERSION)
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: format version %d, this build reads 1 to %d", file,
                             (int)version, DML_MODEL_VERSION);
    info->version = version;
    if (strcmp(info->normalisation, "global") != 0)
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: normalisation \"%s\" (this build knows "
                             "\"global\")",
                             file, info->normalisation);
    dml__h5_attr_read(loc, "steps", H5T_NATIVE_UINT64, 1, &info->steps);
    dml__h5_attr_read(loc, "epochs", H5T_NATIVE_UINT64, 1, &info->epochs);
    return DML_OK;
}

/* Class names: the training data's, as many as it had classes (at most
 * the model's outputs); outputs beyond are named by number. */
static dml_status_t dml__read_class_names(hid_t loc, const char *file, dml_model_info_t *info)
{
    hid_t d = H5Dopen2(loc, "class_names", H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
    hid_t str = -1;
    hsize_t cd[2] = {0, 0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, cd, NULL);
    dml_status_t st = DML_OK;
    uint32_t i;

    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    if (nd != 1 || cd[0] < 1 || cd[0] > info->num_classes)
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: class_names missing or not 1 to %u "
                             "entries",
                             file, info->num_classes);
    info->data_classes = (uint32_t)cd[0];
    info->class_names = calloc(info->num_classes, DML_DATASET_NAME_MAX);
    str = H5Tcopy(H5T_C_S1);
    if (info->class_names == NULL || str < 0 || H5Tset_size(str, DML_DATASET_NAME_MAX) < 0 ||
        dml__h5_read(loc, "class_names", str, info->data_classes, 0, info->class_names) != 0) {
        st = dml_error_set(DML_ERR_FORMAT, "model %s: class_names unreadable", file);
        goto out;
    }
    for (i = 0; i < info->num_classes; i++) {
        if (i >= info->data_classes)
            snprintf(info->class_names[i], DML_DATASET_NAME_MAX, "class%u", i);
        info->class_names[i][DML_DATASET_NAME_MAX - 1] = '\0';
    }
out:
    if (str >= 0)
        H5Tclose(str);
    return st;
}

/* The training data's statistics (group stats). */
static dml_status_t dml__read_stats(hid_t loc, const char *file, dml_model_info_t *info)
{
    hid_t g = H5Gopen2(loc, "stats", H5P_DEFAULT);
    dml_status_t st = g < 0
                          ? DML_ERR_FORMAT
                          : dml__stats_read_h5(g, info->features, info->data_classes, &info->stats);

    if (g >= 0)
        H5Gclose(g);
    if (st != DML_OK)
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: the training statistics (group stats) "
                             "are missing or malformed",
                             file);
    return DML_OK;
}

/* The attribute checksum, where the file has one (files written before it
 * load without): read last, when every value it covers is. hash is the
 * model's identity (dml__model_hash). */
static dml_status_t dml__check_checksum(hid_t loc, const char *file, const dml_model_info_t *info,
                                        uint64_t hash)
{
    htri_t has_sum = H5Aexists(loc, "checksum");
    char want[32], have[17];

    if (has_sum < 0)
        return dml_error_set(DML_ERR_FORMAT,
                             "model %s: cannot tell whether it has a checksum "
                             "(damaged attributes?)",
                             file);
    if (has_sum == 0)
        return DML_OK;
    snprintf(have, sizeof(have), "%016llx",
             (unsigned long long)dml__model_checksum(hash, info, info->normalisation));
    if (dml__h5_attr_read_str(loc, "checksum", want, sizeof(want)) != 0)
        return dml_error_set(DML_ERR_FORMAT, "model %s: attribute checksum unreadable", file);
    if (strcmp(want, have) != 0)
        return dml_error_set(DML_ERR_CHECKSUM,
                             "model %s: checksum %s over the spec \"%s\", the "
                             "weights and the other attributes, the file recorded %s: the file "
                             "was changed after it was written (or is damaged)",
                             file, have, info->spec_text, want);
    return DML_OK;
}

/* The model's arrays: weights, and buffers where it has them, each through
 * dml__read_array as dml_model_read_h5's plain reader reads them (CRC-32,
 * finite values). Not dml_model_read_h5 itself: it refuses a spec text that
 * is not in the canonical form, which files load with here. */
static dml_status_t dml__read_arrays(hid_t loc, const char *file, dml_model_t *m)
{
    dml_status_t st;

    if ((st = dml__read_array(loc, file, "weights", dml_model_nparams(m), dml_model_params(m))) !=
        DML_OK)
        return st;
    if (dml_model_nbuffers(m) > 0)
        return dml__read_array(loc, file, "buffers", dml_model_nbuffers(m), dml_model_buffers(m));
    return DML_OK;
}

dml_status_t dml_model_load(const char *path, int max_batch, dml_model_t **m_out,
                            dml_model_info_t *info)
{
    char file[4096];
    dml_model_t *m = NULL;
    hid_t f = -1, loc = -1;
    uint64_t h;
    struct stat sb;
    dml__h5_quiet_t q;
    dml_status_t st;

    *m_out = NULL;
    memset(info, 0, sizeof(*info));
    if (stat(path, &sb) != 0)
        return dml_error_set_errno(errno, "model %s", path);
    if (S_ISDIR(sb.st_mode))
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model %s: a directory (of checkpoints? "
                             "dml_ckpt_model_path picks the newest sound one)",
                             path);
    snprintf(file, sizeof(file), "%s", path);
    dml__h5_quiet_begin(&q);
    if ((st = dml__open_model(file, info, &f, &loc)) != DML_OK)
        goto out;
    snprintf(info->path, sizeof(info->path), "%s", file);
    if ((st = dml__read_attrs(loc, file, info)) != DML_OK)
        goto out;
    if ((st = dml__read_spec(loc, file, info)) != DML_OK)
        goto out;
    /* no initialisation: the file's weights replace all of them */
    if ((st = dml__model_alloc(&info->spec, max_batch, &m)) != DML_OK)
        goto out;
    if ((st = dml__read_arrays(loc, file, m)) != DML_OK)
        goto out;
    /* The model's identity in inference records: spec and weights (and
     * buffers), the same for a checkpoint and the model file exported from
     * it. */
    h = dml__model_hash(info->spec_text, m);
    snprintf(info->hash, sizeof(info->hash), "%016llx", (unsigned long long)h);
    if ((st = dml__read_class_names(loc, file, info)) != DML_OK ||
        (st = dml__read_stats(loc, file, info)) != DML_OK ||
        (st = dml__check_checksum(loc, file, info, h)) != DML_OK)
        goto out;
    st = DML_OK;
    dml_error_clear();
out:
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

/* ---- writing -------------------------------------------------------------------- */

dml_status_t dml_model_write_h5(int64_t loc, dml_model_t *m, const dml_model_info_t *info,
                                dml_model_put_cb_t put, void *put_arg)
{
    char spec[DML_MODEL_SPEC_MAX], checksum[17];
    const char *norm = info->normalisation[0] ? info->normalisation : "global";
    uint64_t dims[2] = {0, 0};
    int32_t version = DML_MODEL_VERSION, rank = info->feature_rank;
    hid_t g = -1, str = -1;
    dml_status_t st = DML_OK;

    dml_model_spec_format(dml_model_spec(m), spec, sizeof(spec));
    if (rank < 1 || rank > DML_DATASET_MAX_RANK || info->data_classes < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "model file: feature rank %d, %u classes",
                             (int)rank, info->data_classes);
    snprintf(checksum, sizeof(checksum), "%016llx",
             (unsigned long long)dml__model_checksum(dml__model_hash(spec, m), info, norm));
    if (dml__h5_attr_write_str(loc, "format", DML_MODEL_FORMAT) != 0 ||
        dml__h5_attr_write(loc, "version", H5T_NATIVE_INT32, 1, &version) != 0 ||
        dml__h5_attr_write_str(loc, "model", spec) != 0 ||
        dml__h5_attr_write_str(loc, "dataset", info->dataset) != 0 ||
        dml__h5_attr_write_str(loc, "dataset_hash", info->dataset_hash) != 0 ||
        dml__h5_attr_write_str(loc, "normalisation", norm) != 0 ||
        dml__h5_attr_write(loc, "feature_rank", H5T_NATIVE_INT32, 1, &rank) != 0 ||
        dml__h5_attr_write(loc, "feature_shape", H5T_NATIVE_UINT64, (size_t)rank,
                           info->feature_shape) != 0 ||
        dml__h5_attr_write(loc, "steps", H5T_NATIVE_UINT64, 1, &info->steps) != 0 ||
        dml__h5_attr_write(loc, "epochs", H5T_NATIVE_UINT64, 1, &info->epochs) != 0 ||
        dml__h5_attr_write_str(loc, "checksum", checksum) != 0)
        return dml_error_set(DML_ERR_IO, "cannot write the model's attributes (disk full?)");
    g = H5Gcreate2(loc, "stats", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0 || dml__stats_write_h5(g, &info->stats, info->data_classes) != DML_OK) {
        st = dml_error_set(DML_ERR_IO, "cannot write the model's training statistics (disk full?)");
        goto out;
    }
    dims[0] = dml_model_nparams(m);
    if ((st = put(put_arg, loc, "weights", H5T_NATIVE_FLOAT, dims, dml_model_params(m))) != DML_OK)
        goto out;
    dims[0] = dml_model_nbuffers(m);
    if (dims[0] > 0 &&
        (st = put(put_arg, loc, "buffers", H5T_NATIVE_FLOAT, dims, dml_model_buffers(m))) != DML_OK)
        goto out;
    str = H5Tcopy(H5T_C_S1);
    if (str < 0 || H5Tset_size(str, DML_DATASET_NAME_MAX) < 0) {
        st = dml_error_set(DML_ERR_HDF5, "cannot make a string type");
        goto out;
    }
    dims[0] = info->data_classes;
    st = put(put_arg, loc, "class_names", str, dims, info->class_names);
out:
    if (str >= 0)
        H5Tclose(str);
    if (g >= 0)
        H5Gclose(g);
    return st;
}

/* The mirror of dml__put_plain: a float array read whole, its CRC-32 checked
 * where recorded and every value finite (dml__read_array). */
static dml_status_t dml__get_plain(void *arg, int64_t loc, const char *name, int64_t type,
                                   uint64_t n, void *data)
{
    dml__h5_quiet_t q;
    dml_status_t st;

    if (H5Tequal(type, H5T_NATIVE_FLOAT) <= 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "model %s: %s: only float arrays are read here",
                             (const char *)arg, name);
    dml__h5_quiet_begin(&q);
    st = dml__read_array(loc, arg, name, n, data);
    dml__h5_quiet_end(&q);
    return st;
}

dml_status_t dml_model_read_h5(int64_t loc, const dml_model_t *m, dml_model_get_cb_t get,
                               void *get_arg, float *weights, float *buffers)
{
    char spec[DML_MODEL_SPEC_MAX], have[DML_MODEL_SPEC_MAX], fmt[64], file[4096] = "?";
    int32_t version = 0;
    dml__h5_quiet_t q;
    dml_status_t st = DML_OK;

    /* messages name the file, as the writer's checkpoint or model file */
    H5Fget_name(loc, file, sizeof(file));
    if (get == NULL) {
        get = dml__get_plain;
        get_arg = file;
    }
    dml_model_spec_format(dml_model_spec(m), spec, sizeof(spec));
    dml__h5_quiet_begin(&q);
    if (dml__h5_attr_read_str(loc, "format", fmt, sizeof(fmt)) != 0 ||
        strcmp(fmt, DML_MODEL_FORMAT) != 0 ||
        dml__h5_attr_read(loc, "version", H5T_NATIVE_INT32, 1, &version) != 0 || version < 1 ||
        version > DML_MODEL_VERSION || dml__h5_attr_read_str(loc, "model", have, sizeof(have)) != 0)
        st = dml_error_set(DML_ERR_FORMAT,
                           "model %s: not a model of format versions 1 to %d (format, version "
                           "or model attribute missing)",
                           file, DML_MODEL_VERSION);
    dml__h5_quiet_end(&q);
    if (st != DML_OK)
        return st;
    if (strcmp(have, spec) != 0)
        return dml_error_set(DML_ERR_MISMATCH, "model %s: saved for model %s, this one is %s", file,
                             have, spec);
    if ((st = get(get_arg, loc, "weights", H5T_NATIVE_FLOAT, dml_model_nparams(m), weights)) !=
        DML_OK)
        return st;
    if (dml_model_nbuffers(m) > 0)
        st = get(get_arg, loc, "buffers", H5T_NATIVE_FLOAT, dml_model_nbuffers(m), buffers);
    return st;
}

/* A model file's arrays: written whole, floats with their CRC-32. */
static dml_status_t dml__put_plain(void *arg, int64_t loc, const char *name, int64_t type,
                                   const uint64_t dims[2], const void *data)
{
    const char *path = arg;

    if (dml__h5_write(loc, name, type, dims, data) != 0)
        return dml_error_set(DML_ERR_IO, "%s: cannot write %s (disk full?)", path, name);
    if (H5Tequal(type, H5T_NATIVE_FLOAT) > 0) {
        uint32_t crc = dml_crc32(0, data, dims[0] * sizeof(float));
        hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
        int rc = d < 0 ? -1 : dml__h5_attr_write(d, "crc32", H5T_NATIVE_UINT32, 1, &crc);
        if (d >= 0)
            H5Dclose(d);
        if (rc != 0)
            return dml_error_set(DML_ERR_IO, "%s: cannot write %s (disk full?)", path, name);
    }
    return DML_OK;
}

/* The model file built in memory (dml_h5.h says why): its bytes (buf
 * not NULL: malloc'd, the caller frees them) or only its size (buf NULL:
 * read without a copy). name is what messages call it. */
static dml_status_t dml__model_image(dml_model_t *m, const dml_model_info_t *info, const char *name,
                                     void **buf, size_t *n)
{
    hid_t f;
    ssize_t size = -1;
    dml__h5_quiet_t q;
    dml_status_t st;

    dml__h5_quiet_begin(&q);
    f = dml__h5_create_image();
    if (f < 0) {
        dml__h5_quiet_end(&q);
        return dml_error_set(DML_ERR_HDF5, "%s: cannot make the model file in memory", name);
    }
    st = dml_model_write_h5(f, m, info, dml__put_plain, (void *)name);
    if (st == DML_OK && buf != NULL) {
        if ((st = dml__h5_image_take(f, buf, n)) != DML_OK)
            st = dml_error_set(st, "%s: cannot make the model file in memory", name);
        f = -1; /* closed by dml__h5_image_take */
    } else if (st == DML_OK) {
        if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 || (size = H5Fget_file_image(f, NULL, 0)) <= 0)
            st = dml_error_set(DML_ERR_HDF5, "%s: cannot make the model file in memory", name);
        else
            *n = (size_t)size;
    }
    if (f >= 0)
        H5Fclose(f);
    dml__h5_quiet_end(&q);
    return st;
}

/* Written whole: a disk too full for it is refused before a byte is
 * written, with the OS's reason, and leaves no temporary behind. */
dml_status_t dml_model_save(const char *path, dml_model_t *m, const dml_model_info_t *info)
{
    void *buf = NULL;
    size_t n = 0;
    dml_status_t st = dml__model_image(m, info, path, &buf, &n);

    if (st == DML_OK)
        st = dml__write_durably(path, buf, n, "model file", 0);
    free(buf);
    return st;
}

dml_status_t dml_model_file_size(dml_model_t *m, const dml_model_info_t *info, uint64_t *bytes)
{
    size_t n = 0;
    dml_status_t st = dml__model_image(m, info, "model file", NULL, &n);

    if (st == DML_OK)
        *bytes = n;
    return st;
}
