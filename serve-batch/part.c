/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * part.c: the part files of an inference run: writing one durably, reading
 * and checking one, and the state of a part against the run's manifest.
 */
#include "config.h"

#include "dml_crc.h"
#include "dml_h5.h"
#include "infer_private.h"

#include <errno.h>
#include <signal.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void dml_infer_part_path(const char *out, uint32_t task, char *buf, size_t len)
{
    snprintf(buf, len, "%s/part-%05u.h5", out, task);
}

const char *dml_part_state_name(dml_part_state_t s)
{
    switch (s) {
    case DML_PART_COMPLETE:
        return "complete";
    case DML_PART_MISSING:
        return "missing";
    case DML_PART_STALE:
        return "stale";
    case DML_PART_CORRUPT:
        return "corrupt";
    }
    return "?";
}

uint32_t dml__part_crc(const dml__part_t *p)
{
    const size_t n = p->count, k = (size_t)p->topk;
    uint32_t c = 0;

    c = dml_crc32(c, p->id, n * sizeof(uint64_t));
    c = dml_crc32(c, p->label, n * sizeof(int32_t));
    c = dml_crc32(c, p->pred, n * sizeof(int32_t));
    c = dml_crc32(c, p->tk_class, n * k * sizeof(int32_t));
    c = dml_crc32(c, p->tk_prob, n * k * sizeof(float));
    c = dml_crc32(c, p->hist, p->features * DML_DATASET_HIST_BINS * sizeof(uint64_t));
    c = dml_crc32(c, p->lat, p->nb * sizeof(double));
    return c;
}

/* 0-row datasets are written empty (H5Dwrite refuses a NULL buffer, and
 * there is nothing to write). */
static int dml__put(hid_t f, const char *name, hid_t type, uint64_t d0, uint64_t d1,
                    const void *buf)
{
    uint64_t dims[2] = {d0, d1};
    static const char none[8];

    return dml__h5_write(f, name, type, dims, d0 ? buf : none);
}

dml_status_t dml__part_write(const char *out, const dml__part_t *p, const dml_infer_config_t *cfg)
{
    char path[4200], tmp[4300], host[256] = "";
    const uint64_t n = p->count, k = (uint64_t)p->topk;
    uint32_t crc = dml__part_crc(p), version = DML_INFER_VERSION;
    int64_t now = (int64_t)time(NULL);
    int32_t ranks = p->ranks, topk = p->topk, batch = p->batch;
    dml__h5_quiet_t q;
    dml_status_t st = DML_OK;
    void *img = NULL;
    size_t size = 0;
    hid_t f;

    dml_infer_part_path(out, p->task, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s/.part-%05u.h5.tmp.%ld", out, p->task, (long)getpid());
    gethostname(host, sizeof(host) - 1);
    dml__h5_quiet_begin(&q);
    /* Built in memory, written whole (dml_h5.h says why). */
    f = dml__h5_create_image();
    if (f < 0) {
        dml__h5_quiet_end(&q);
        return dml_error_set(DML_ERR_HDF5, "%s: cannot make the part in memory", path);
    }
    /* The arrays first, the record (attributes, checksum last) after them. */
    if (dml__put(f, "id", H5T_NATIVE_UINT64, n, 0, p->id) != 0 ||
        dml__put(f, "label", H5T_NATIVE_INT32, n, 0, p->label) != 0 ||
        dml__put(f, "pred", H5T_NATIVE_INT32, n, 0, p->pred) != 0 ||
        dml__put(f, "topk_class", H5T_NATIVE_INT32, n, k, p->tk_class) != 0 ||
        dml__put(f, "topk_prob", H5T_NATIVE_FLOAT, n, k, p->tk_prob) != 0 ||
        dml__put(f, "hist", H5T_NATIVE_UINT64, p->features, DML_DATASET_HIST_BINS, p->hist) != 0 ||
        dml__put(f, "batch_seconds", H5T_NATIVE_DOUBLE, p->nb, 0, p->lat) != 0 ||
        dml__h5_attr_write_str(f, "format", DML_INFER_PART_FORMAT) != 0 ||
        dml__h5_attr_write(f, "version", H5T_NATIVE_UINT32, 1, &version) != 0 ||
        dml__h5_attr_write(f, "task", H5T_NATIVE_UINT32, 1, &p->task) != 0 ||
        dml__h5_attr_write(f, "tasks", H5T_NATIVE_UINT32, 1, &p->tasks) != 0 ||
        dml__h5_attr_write(f, "first", H5T_NATIVE_UINT64, 1, &p->first) != 0 ||
        dml__h5_attr_write(f, "count", H5T_NATIVE_UINT64, 1, &p->count) != 0 ||
        dml__h5_attr_write(f, "topk", H5T_NATIVE_INT32, 1, &topk) != 0 ||
        dml__h5_attr_write(f, "ranks", H5T_NATIVE_INT32, 1, &ranks) != 0 ||
        dml__h5_attr_write(f, "batch", H5T_NATIVE_INT32, 1, &batch) != 0 ||
        dml__h5_attr_write(f, "seconds", H5T_NATIVE_DOUBLE, 1, &p->seconds) != 0 ||
        dml__h5_attr_write(f, "finished", H5T_NATIVE_INT64, 1, &now) != 0 ||
        dml__h5_attr_write_str(f, "host", host) != 0 ||
        dml__h5_attr_write_str(f, "model_hash", p->model_hash) != 0 ||
        dml__h5_attr_write_str(f, "input_hash", p->input_hash) != 0 ||
        dml__h5_attr_write(f, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0)
        st = dml_error_set(DML_ERR_HDF5, "%s: cannot make the part in memory", path);
    if (st == DML_OK) {
        st = dml__h5_image_take(f, &img, &size);
        if (st != DML_OK)
            st = dml_error_set(st, "%s: cannot make the part in memory", path);
    } else {
        H5Fclose(f);
    }
    dml__h5_quiet_end(&q);
    if (st == DML_OK)
        st = dml__write_tmp(tmp, path, img, size, "part");
    free(img);
    if (st != DML_OK)
        return st;
    if (cfg->on_part != NULL)
        cfg->on_part(cfg->on_part_arg, p->task, "written");
    return dml__commit_written(tmp, path, 0);
}

void dml__part_free(dml__part_t *p)
{
    free(p->id), free(p->label), free(p->pred), free(p->tk_class), free(p->tk_prob);
    free(p->hist), free(p->lat);
    memset(p, 0, sizeof(*p));
}

dml_status_t dml__part_alloc(dml__part_t *p, uint64_t n, int k, uint64_t features, uint64_t nb)
{
    p->count = n, p->topk = k, p->features = features, p->nb = nb;
    p->id = malloc(sizeof(uint64_t) * (n + 1));
    p->label = malloc(sizeof(int32_t) * (n + 1));
    p->pred = malloc(sizeof(int32_t) * (n + 1));
    p->tk_class = malloc(sizeof(int32_t) * (n * (uint64_t)k + 1));
    p->tk_prob = malloc(sizeof(float) * (n * (uint64_t)k + 1));
    p->hist = calloc(features * DML_DATASET_HIST_BINS + 1, sizeof(uint64_t));
    p->lat = malloc(sizeof(double) * (nb + 1));
    if (!p->id || !p->label || !p->pred || !p->tk_class || !p->tk_prob || !p->hist || !p->lat) {
        dml__part_free(p);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the results of %llu samples",
                             (unsigned long long)n);
    }
    return DML_OK;
}

static int dml__rows(hid_t f, const char *name, uint64_t *d0)
{
    hsize_t dims[2] = {0, 0};
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), s = d < 0 ? -1 : H5Dget_space(d);
    int nd = s < 0 ? -1 : H5Sget_simple_extent_dims(s, dims, NULL);

    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    *d0 = dims[0];
    return nd;
}

static int dml__get(hid_t f, const char *name, hid_t type, uint64_t d0, uint64_t d1, void *buf)
{
    return d0 == 0 ? 0 : dml__h5_read(f, name, type, d0, d1, buf);
}

dml_status_t dml__part_read(const char *path, dml__part_t *p)
{
    char fmt[64] = "";
    uint32_t version = 0, crc = 0;
    uint64_t n, k, fr;
    dml__h5_quiet_t q;
    dml_status_t st;
    hid_t f;

    memset(p, 0, sizeof(*p));
    dml__h5_quiet_begin(&q);
    if (access(path, F_OK) != 0) {
        dml__h5_quiet_end(&q);
        return dml_error_set(DML_ERR_NOT_FOUND, "%s: no such part", path);
    }
    f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f < 0) {
        dml__h5_quiet_end(&q);
        return dml_error_set(DML_ERR_FORMAT, "%s: not a readable HDF5 file (truncated?)", path);
    }
    st = dml_error_set(DML_ERR_FORMAT, "%s: its record (attributes) is missing or malformed", path);
    if (dml__h5_attr_read_str(f, "format", fmt, sizeof(fmt)) != 0 ||
        strcmp(fmt, DML_INFER_PART_FORMAT) != 0 ||
        dml__h5_attr_read(f, "version", H5T_NATIVE_UINT32, 1, &version) != 0)
        goto out;
    if (version != DML_INFER_VERSION) {
        /* sound, but cut and recorded as another version cuts them */
        st = dml_error_set(DML_ERR_MISMATCH,
                           "%s: a part of format version %u (this is version "
                           "%d)",
                           path, version, DML_INFER_VERSION);
        goto out;
    }
    if (dml__h5_attr_read(f, "task", H5T_NATIVE_UINT32, 1, &p->task) != 0 ||
        dml__h5_attr_read(f, "tasks", H5T_NATIVE_UINT32, 1, &p->tasks) != 0 ||
        dml__h5_attr_read(f, "first", H5T_NATIVE_UINT64, 1, &p->first) != 0 ||
        dml__h5_attr_read(f, "count", H5T_NATIVE_UINT64, 1, &p->count) != 0 ||
        dml__h5_attr_read(f, "topk", H5T_NATIVE_INT32, 1, &p->topk) != 0 ||
        dml__h5_attr_read(f, "ranks", H5T_NATIVE_INT32, 1, &p->ranks) != 0 ||
        dml__h5_attr_read(f, "batch", H5T_NATIVE_INT32, 1, &p->batch) != 0 ||
        dml__h5_attr_read(f, "seconds", H5T_NATIVE_DOUBLE, 1, &p->seconds) != 0 ||
        dml__h5_attr_read_str(f, "model_hash", p->model_hash, sizeof(p->model_hash)) != 0 ||
        dml__h5_attr_read_str(f, "input_hash", p->input_hash, sizeof(p->input_hash)) != 0 ||
        dml__h5_attr_read(f, "crc32", H5T_NATIVE_UINT32, 1, &crc) != 0 || p->topk < 1 ||
        p->topk > DML_INFER_MAX_TOPK)
        goto out;
    n = p->count, k = (uint64_t)p->topk;
    if (dml__rows(f, "hist", &fr) != 2 || dml__rows(f, "batch_seconds", &p->nb) != 1)
        goto out;
    if ((st = dml__part_alloc(p, n, p->topk, fr, p->nb)) != DML_OK)
        goto out;
    st = dml_error_set(DML_ERR_FORMAT,
                       "%s: arrays missing or not of the %llu rows its record "
                       "says",
                       path, (unsigned long long)n);
    if (dml__get(f, "id", H5T_NATIVE_UINT64, n, 0, p->id) != 0 ||
        dml__get(f, "label", H5T_NATIVE_INT32, n, 0, p->label) != 0 ||
        dml__get(f, "pred", H5T_NATIVE_INT32, n, 0, p->pred) != 0 ||
        dml__get(f, "topk_class", H5T_NATIVE_INT32, n, k, p->tk_class) != 0 ||
        dml__get(f, "topk_prob", H5T_NATIVE_FLOAT, n, k, p->tk_prob) != 0 ||
        dml__get(f, "hist", H5T_NATIVE_UINT64, fr, DML_DATASET_HIST_BINS, p->hist) != 0 ||
        dml__get(f, "batch_seconds", H5T_NATIVE_DOUBLE, p->nb, 0, p->lat) != 0)
        goto out;
    if (dml__part_crc(p) != crc) {
        st = dml_error_set(DML_ERR_CHECKSUM, "%s: checksum %08x, its record says %08x: damaged",
                           path, dml__part_crc(p), crc);
        goto out;
    }
    st = DML_OK;
out:
    H5Fclose(f);
    dml__h5_quiet_end(&q);
    if (st != DML_OK)
        dml__part_free(p);
    return st;
}

dml_part_state_t dml__part_load(const char *out, const dml_infer_manifest_t *m, uint32_t task,
                                dml__part_t *p, char *why, size_t len)
{
    char path[4200], buf[512];
    uint64_t first, count;
    dml_status_t st;
    dml_part_state_t s = DML_PART_COMPLETE;

    if (why == NULL)
        why = buf, len = sizeof(buf);
    why[0] = '\0';
    dml_infer_part_path(out, task, path, sizeof(path));
    st = dml__part_read(path, p);
    if (st == DML_ERR_NOT_FOUND) {
        snprintf(why, len, "%s: not written yet", path);
        return DML_PART_MISSING;
    }
    if (st != DML_OK) {
        snprintf(why, len, "%s", dml_error_message());
        return st == DML_ERR_MISMATCH ? DML_PART_STALE : DML_PART_CORRUPT;
    }
    dml_infer_slice(m->samples, (uint64_t)m->batch, m->tasks, task, &first, &count);
    if (strcmp(p->model_hash, m->model_hash) != 0)
        snprintf(why, len, "%s: made by model %s, the run's model is %s", path, p->model_hash,
                 m->model_hash),
            s = DML_PART_STALE;
    else if (strcmp(p->input_hash, m->input_hash) != 0)
        snprintf(why, len, "%s: made from input %s, the run's input is %s", path, p->input_hash,
                 m->input_hash),
            s = DML_PART_STALE;
    else if (p->task != task || p->tasks != m->tasks || p->first != first || p->count != count ||
             p->topk != m->topk || p->batch != m->batch)
        snprintf(why, len,
                 "%s: part %u of %u (samples %llu+%llu, top-%d, batch %d), the run "
                 "wants part %u of %u (samples %llu+%llu, top-%d, batch %d)",
                 path, p->task, p->tasks, (unsigned long long)p->first,
                 (unsigned long long)p->count, p->topk, p->batch, task, m->tasks,
                 (unsigned long long)first, (unsigned long long)count, m->topk, m->batch),
            s = DML_PART_STALE;
    if (s != DML_PART_COMPLETE)
        dml__part_free(p);
    return s;
}

dml_part_state_t dml_infer_part_check(const char *out, const dml_infer_manifest_t *m, uint32_t task,
                                      char *why, size_t len)
{
    dml__part_t p;
    dml_part_state_t s = dml__part_load(out, m, task, &p, why, len);

    if (s == DML_PART_COMPLETE)
        dml__part_free(&p);
    return s;
}
