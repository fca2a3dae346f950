/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * merge.c: the fan-in of an inference run: every part verified, one
 * predictions file, and the report (class counts, accuracy and confusion,
 * throughput and batch latency, drift against the training statistics).
 */
#include "config.h"

#include "dml_h5.h"
#include "dml_nn.h"
#include "infer_private.h"

#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void dml_infer_merge_config_init(dml_infer_merge_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->drift_threshold = 0.1;
}

double dml_psi(const uint64_t *expected, const uint64_t *actual, int bins)
{
    double se = 0, sa = 0, psi = 0;
    int b;

    for (b = 0; b < bins; b++)
        se += (double)expected[b], sa += (double)actual[b];
    if (se <= 0 || sa <= 0)
        return 0;
    for (b = 0; b < bins; b++) {
        double p = (double)expected[b] / se, q = (double)actual[b] / sa;
        p = p < 1e-4 ? 1e-4 : p;
        q = q < 1e-4 ? 1e-4 : q;
        psi += (q - p) * log(q / p);
    }
    return psi;
}

/* A growing text buffer. */
typedef struct {
    char *s;
    size_t n, cap;
    int failed;
} dml__buf_t;

static void dml__printf(dml__buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        {
            size_t cap = (b->cap + (size_t)k + 1) * 2;
            char *t = realloc(b->s, cap);
            if (t == NULL) {
                b->failed = 1;
                return;
            }
            b->s = t, b->cap = cap;
        }
    }
}

static int dml__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v. */
static double dml__pct(const double *v, uint64_t n, double q)
{
    uint64_t i;

    if (n == 0)
        return 0;
    i = (uint64_t)ceil(q * (double)n);
    return v[i > 0 ? i - 1 : 0];
}

static dml_status_t dml__write_predictions(const char *path, const dml_infer_manifest_t *m,
                                           const dml__part_t *all, const dml_model_info_t *mi)
{
    const uint64_t n = all->count, k = (uint64_t)all->topk;
    uint64_t dims[2];
    dml__h5_quiet_t q;
    dml_status_t st = DML_OK;
    hid_t f, str = -1;

    dml__h5_quiet_begin(&q);
    /* Built in memory, written whole (dml_h5.h says why). */
    f = dml__h5_create_image();
    if (f < 0) {
        dml__h5_quiet_end(&q);
        return dml_error_set(DML_ERR_HDF5, "%s: cannot make the predictions file in memory", path);
    }
    str = H5Tcopy(H5T_C_S1);
    dims[0] = n, dims[1] = 0;
    if (str < 0 || H5Tset_size(str, DML_DATASET_NAME_MAX) < 0 ||
        dml__h5_attr_write_str(f, "format", "slurm-dml predictions") != 0 ||
        dml__h5_attr_write_str(f, "model_hash", m->model_hash) != 0 ||
        dml__h5_attr_write_str(f, "model", m->model_path) != 0 ||
        dml__h5_attr_write_str(f, "input_hash", m->input_hash) != 0 ||
        dml__h5_attr_write_str(f, "input", m->input_path) != 0 ||
        dml__h5_write(f, "id", H5T_NATIVE_UINT64, dims, all->id) != 0 ||
        dml__h5_write(f, "pred", H5T_NATIVE_INT32, dims, all->pred) != 0 ||
        dml__h5_write(f, "label", H5T_NATIVE_INT32, dims, all->label) != 0 ||
        (dims[1] = k, dml__h5_write(f, "topk_class", H5T_NATIVE_INT32, dims, all->tk_class)) != 0 ||
        dml__h5_write(f, "topk_prob", H5T_NATIVE_FLOAT, dims, all->tk_prob) != 0 ||
        (dims[0] = mi->num_classes, dims[1] = 0,
         dml__h5_write(f, "class_names", str, dims, mi->class_names)) != 0)
        st = dml_error_set(DML_ERR_HDF5, "%s: cannot make the predictions file in memory", path);
    if (str >= 0)
        H5Tclose(str);
    if (st == DML_OK)
        st = dml__h5_image_commit(f, path, "predictions file", 0);
    else
        H5Fclose(f);
    dml__h5_quiet_end(&q);
    return st;
}

/* Concatenates the parts (in task order: sample order) into one. */
static dml_status_t dml__concat(dml__part_t *parts, uint32_t np, dml__part_t *all)
{
    uint64_t n = 0, nb = 0, F = parts[0].features, k = (uint64_t)parts[0].topk, o = 0, ob = 0, i;
    uint32_t t;
    dml_status_t st;

    memset(all, 0, sizeof(*all));
    for (t = 0; t < np; t++)
        n += parts[t].count, nb += parts[t].nb;
    if ((st = dml__part_alloc(all, n, (int)k, F, nb)) != DML_OK)
        return st;
    for (t = 0; t < np; t++) {
        const dml__part_t *p = &parts[t];
        memcpy(all->id + o, p->id, p->count * sizeof(uint64_t));
        memcpy(all->label + o, p->label, p->count * sizeof(int32_t));
        memcpy(all->pred + o, p->pred, p->count * sizeof(int32_t));
        memcpy(all->tk_class + o * k, p->tk_class, p->count * k * sizeof(int32_t));
        memcpy(all->tk_prob + o * k, p->tk_prob, p->count * k * sizeof(float));
        memcpy(all->lat + ob, p->lat, p->nb * sizeof(double));
        for (i = 0; i < F * DML_DATASET_HIST_BINS; i++)
            all->hist[i] += p->hist[i];
        all->seconds += p->seconds;
        o += p->count, ob += p->nb;
    }
    return DML_OK;
}

/* What the report says, worked out once for both its forms. */
typedef struct {
    uint64_t *counts;    /* predictions per class */
    uint64_t *conf;      /* confusion: label x prediction, labeled samples only */
    double *psi;         /* drift per feature group */
    double *lat;         /* batch latencies, sorted */
    uint64_t groups;     /* feature groups */
    uint64_t correct;    /* labeled samples predicted right */
    uint64_t flagged;    /* groups over the drift threshold */
    uint64_t gmax;       /* the group of the largest PSI */
    double maxpsi;       /* and that PSI */
    double rank_seconds; /* summed over every part's ranks */
} dml__summary_t;

static void dml__summary_free(dml__summary_t *s)
{
    free(s->counts), free(s->conf), free(s->psi), free(s->lat);
}

static dml_status_t dml__summarise(const dml_infer_manifest_t *m,
                                   const dml_infer_merge_config_t *cfg, const dml__part_t *parts,
                                   const dml__part_t *all, const dml_model_info_t *mi,
                                   const dml_schema_t *sc, dml__summary_t *s)
{
    const uint32_t C = mi->num_classes;
    const uint64_t n = all->count, F = all->features;
    uint64_t per, g, f, i;
    uint32_t t;

    memset(s, 0, sizeof(*s));
    s->counts = calloc(C, sizeof(uint64_t));
    s->conf = calloc((size_t)C * C, sizeof(uint64_t));
    /* Feature groups: the rows of an image (first dimension of the feature
     * shape), or each feature of a vector. */
    s->groups = sc->rank >= 2 ? sc->shape[0] : F;
    per = F / s->groups;
    s->psi = calloc(s->groups, sizeof(double));
    s->lat = malloc(sizeof(double) * (all->nb + 1));
    if (!s->counts || !s->conf || !s->psi || !s->lat) {
        dml__summary_free(s);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the report");
    }
    for (i = 0; i < n; i++) {
        s->counts[all->pred[i]]++;
        if (all->label[i] >= 0 && (uint32_t)all->label[i] < C) {
            s->conf[(size_t)all->label[i] * C + (size_t)all->pred[i]]++;
            s->correct += all->label[i] == all->pred[i];
        }
    }
    for (g = 0; g < s->groups; g++) {
        for (f = g * per; f < (g + 1) * per; f++)
            s->psi[g] += dml_psi(mi->stats.hist + f * DML_DATASET_HIST_BINS,
                                 all->hist + f * DML_DATASET_HIST_BINS, DML_DATASET_HIST_BINS);
        s->psi[g] /= (double)per;
        s->flagged += s->psi[g] > cfg->drift_threshold;
        if (s->psi[g] > s->maxpsi)
            s->maxpsi = s->psi[g], s->gmax = g;
    }
    for (t = 0; t < m->tasks; t++)
        s->rank_seconds += parts[t].seconds * parts[t].ranks;
    memcpy(s->lat, all->lat, all->nb * sizeof(double));
    qsort(s->lat, all->nb, sizeof(double), dml__cmp_double);
    return DML_OK;
}

/* JSON, for programs: written by jansson (docs/formats/inference.md).
 * Every number here is finite (counts, fractions, seconds, PSI of
 * clamped frequencies). */
static dml_status_t dml__report_json(const dml_infer_manifest_t *m,
                                     const dml_infer_merge_config_t *cfg, const dml__part_t *parts,
                                     const dml__part_t *all, const dml_model_info_t *mi,
                                     const dml_schema_t *sc, const dml__summary_t *s, char **js)
{
    const uint32_t C = mi->num_classes;
    const uint64_t n = all->count;
    json_t *r = NULL, *cc, *cm, *row, *ga;
    uint64_t g;
    uint32_t c, c2;

    r = json_pack("{s:s, s:i, s:{s:s, s:s, s:s}, s:{s:s, s:s}, s:I, s:I, s:i}", "format",
                  "slurm-dml inference report", "version", 1, "model", "path", m->model_path,
                  "hash", m->model_hash, "spec", mi->spec_text, "input", "path", m->input_path,
                  "hash", m->input_hash, "tasks", (json_int_t)m->tasks, "samples", (json_int_t)n,
                  "topk", m->topk);
    cc = json_object();
    cm = json_array();
    ga = json_array();
    if (r == NULL || cc == NULL || cm == NULL || ga == NULL)
        goto nomem;
    if (json_object_set(r, "class_counts", cc) != 0)
        goto nomem;
    for (c = 0; c < C; c++)
        if (json_object_set_new(cc, mi->class_names[c], json_integer((json_int_t)s->counts[c])) !=
            0)
            goto nomem;
    if (json_object_set_new(r, "labeled", json_true()) != 0 ||
        json_object_set_new(r, "accuracy", json_real(n ? (double)s->correct / (double)n : 0.0)) !=
            0 ||
        json_object_set_new(r, "correct", json_integer((json_int_t)s->correct)) != 0)
        goto nomem;
    for (c = 0; c < C; c++) {
        if ((row = json_array()) == NULL || json_array_append_new(cm, row) != 0)
            goto nomem;
        for (c2 = 0; c2 < C; c2++)
            if (json_array_append_new(row, json_integer((json_int_t)s->conf[(size_t)c * C + c2])) !=
                0)
                goto nomem;
    }
    for (g = 0; g < s->groups; g++)
        if (json_array_append_new(ga, json_real(s->psi[g])) != 0)
            goto nomem;
    if (json_object_set(r, "confusion", cm) != 0 ||
        json_object_set_new(r, "throughput",
                            json_pack("{s:f, s:f, s:f}", "task_seconds", all->seconds,
                                      "rank_seconds", s->rank_seconds, "samples_per_rank_second",
                                      s->rank_seconds > 0 ? (double)n / s->rank_seconds : 0.0)) !=
            0 ||
        json_object_set_new(r, "latency_ms",
                            json_pack("{s:i, s:I, s:f, s:f, s:f}", "batch", parts[0].batch,
                                      "batches", (json_int_t)all->nb, "p50",
                                      1e3 * dml__pct(s->lat, all->nb, 0.50), "p95",
                                      1e3 * dml__pct(s->lat, all->nb, 0.95), "p99",
                                      1e3 * dml__pct(s->lat, all->nb, 0.99))) != 0 ||
        json_object_set_new(r, "drift",
                            json_pack("{s:s, s:f, s:b, s:f, s:I, s:I, s:s, s:O}", "metric", "psi",
                                      "threshold", cfg->drift_threshold, "drifted", s->flagged > 0,
                                      "max", s->maxpsi, "max_group", (json_int_t)s->gmax,
                                      "groups_flagged", (json_int_t)s->flagged, "group_of",
                                      sc->rank >= 2 ? "row" : "feature", "groups", ga)) != 0)
        goto nomem;
    /* nine significant digits: an accuracy of up to 1e9 samples exactly */
    if ((*js = json_dumps(r, JSON_INDENT(2) | JSON_REAL_PRECISION(9))) == NULL)
        goto nomem;
    json_decref(r), json_decref(cc), json_decref(cm), json_decref(ga);
    return DML_OK;
nomem:
    json_decref(r), json_decref(cc), json_decref(cm), json_decref(ga);
    return dml_error_set(DML_ERR_FORMAT, "cannot make the JSON report: a path, spec or class "
                                         "name that is not UTF-8, or no memory");
}

/* Text, for people. */
static void dml__report_text(const dml_infer_manifest_t *m, const dml_infer_merge_config_t *cfg,
                             const dml__part_t *parts, const dml__part_t *all,
                             const dml_model_info_t *mi, const dml_schema_t *sc,
                             const dml__summary_t *s, dml__buf_t *tx)
{
    const uint32_t C = mi->num_classes;
    const uint64_t n = all->count;
    uint32_t c, c2;

    dml__printf(tx, "inference report: %llu samples in %u parts, model %s (%s), input %s\n",
                (unsigned long long)n, m->tasks, m->model_hash, mi->spec_text, m->input_path);
    dml__printf(tx, "accuracy %.4f (%llu of %llu)\n", n ? (double)s->correct / (double)n : 0.0,
                (unsigned long long)s->correct, (unsigned long long)n);
    dml__printf(tx, "%-16s %9s %9s %9s\n", "class", "predicted", "labeled", "recall");
    for (c = 0; c < C; c++) {
        uint64_t lab = 0;
        for (c2 = 0; c2 < C; c2++)
            lab += s->conf[(size_t)c * C + c2];
        dml__printf(tx, "%-16.16s %9llu %9llu %9.4f\n", mi->class_names[c],
                    (unsigned long long)s->counts[c], (unsigned long long)lab,
                    lab ? (double)s->conf[(size_t)c * C + c] / (double)lab : 0.0);
    }
    dml__printf(tx,
                "throughput %.0f samples/s per rank (%.2f rank-seconds); batch %d latency "
                "p50 %.2f ms, p95 %.2f ms, p99 %.2f ms\n",
                s->rank_seconds > 0 ? (double)n / s->rank_seconds : 0.0, s->rank_seconds,
                parts[0].batch, 1e3 * dml__pct(s->lat, all->nb, 0.50),
                1e3 * dml__pct(s->lat, all->nb, 0.95), 1e3 * dml__pct(s->lat, all->nb, 0.99));
    dml__printf(tx,
                "drift (PSI per %s vs the training data, threshold %g): %s; max %.4f at %s "
                "%llu, %llu of %llu groups flagged\n",
                sc->rank >= 2 ? "row" : "feature", cfg->drift_threshold,
                s->flagged ? "DRIFTED" : "none", s->maxpsi, sc->rank >= 2 ? "row" : "feature",
                (unsigned long long)s->gmax, (unsigned long long)s->flagged,
                (unsigned long long)s->groups);
}

static dml_status_t dml__report(const dml_infer_manifest_t *m, const dml_infer_merge_config_t *cfg,
                                const dml__part_t *parts, const dml__part_t *all,
                                const dml_model_info_t *mi, const dml_schema_t *sc, char **js,
                                dml__buf_t *tx)
{
    dml__summary_t s;
    dml_status_t st;

    if ((st = dml__summarise(m, cfg, parts, all, mi, sc, &s)) != DML_OK)
        return st;
    if ((st = dml__report_json(m, cfg, parts, all, mi, sc, &s, js)) != DML_OK) {
        dml__summary_free(&s);
        return st;
    }
    dml__report_text(m, cfg, parts, all, mi, sc, &s, tx);
    dml__summary_free(&s);
    if (tx->failed)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the report");
    return DML_OK;
}

dml_status_t dml_infer_merge(const char *out, const dml_infer_merge_config_t *cfg, dml_part_cb_t cb,
                             void *arg, char **text)
{
    dml_infer_manifest_t m;
    dml__part_t *parts = NULL, all;
    dml_model_info_t mi;
    dml_model_t *model = NULL;
    dml_dataset_t *ds = NULL;
    dml__buf_t tx = {0};
    char *js = NULL;
    char pred[4300], json[4300], txt[4300], why[1024];
    uint32_t t, bad = 0;
    dml_status_t st;

    memset(&all, 0, sizeof(all));
    memset(&mi, 0, sizeof(mi));
    if (text)
        *text = NULL;
    if ((st = dml_infer_manifest_read(out, &m)) != DML_OK)
        return st;
    if (cfg->predictions)
        snprintf(pred, sizeof(pred), "%s", cfg->predictions);
    else
        snprintf(pred, sizeof(pred), "%s/predictions.h5", out);
    snprintf(json, sizeof(json), "%s%s", cfg->report ? cfg->report : out,
             cfg->report ? ".json" : "/report.json");
    snprintf(txt, sizeof(txt), "%s%s", cfg->report ? cfg->report : out,
             cfg->report ? ".txt" : "/report.txt");
    /* The outputs replace earlier outputs of their kind only: never a part,
     * the manifest or anything else (checked before any work). */
    if ((st = dml__output_check(pred, "slurm-dml predictions", "predictions file", NULL, 0)) !=
            DML_OK ||
        (st = dml__output_check_text(json, "\"format\": \"slurm-dml inference report\"",
                                     "JSON inference report", NULL, 0)) != DML_OK ||
        (st = dml__output_check_text(txt, "inference report: ", "text inference report", NULL,
                                     0)) != DML_OK)
        return st;
    /* Every part read once: checked here, merged below. */
    parts = calloc(m.tasks, sizeof(*parts));
    if (parts == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for %u parts", m.tasks);
    for (t = 0; t < m.tasks; t++) {
        dml_part_state_t s = dml__part_load(out, &m, t, &parts[t], why, sizeof(why));
        if (s != DML_PART_COMPLETE) {
            bad++;
            if (cb)
                cb(arg, t, s, why);
        }
    }
    if (bad > 0) {
        st = dml_error_set(DML_ERR_NOT_FOUND,
                           "%s: %u of %u parts are not complete; nothing "
                           "merged",
                           out, bad, m.tasks);
        goto out;
    }
    /* The model (its training statistics and class names) and the input's
     * schema, both as the manifest names them. */
    if ((st = dml__load_model(m.model_path, 1, &model, &mi)) != DML_OK)
        goto out;
    if (strcmp(mi.hash, m.model_hash) != 0) {
        st = dml_error_set(DML_ERR_MISMATCH,
                           "model %s has changed since the run (hash %s, the "
                           "run's is %s)",
                           m.model_path, mi.hash, m.model_hash);
        goto out;
    }
    if ((st = dml_dataset_open(m.input_path, &ds)) != DML_OK)
        goto out;
    if ((st = dml__concat(parts, m.tasks, &all)) != DML_OK)
        goto out;
    if (all.features != mi.features) {
        st = dml_error_set(DML_ERR_MISMATCH, "%s: parts hold %llu features, the model %llu", out,
                           (unsigned long long)all.features, (unsigned long long)mi.features);
        goto out;
    }
    if ((st = dml__report(&m, cfg, parts, &all, &mi, dml_dataset_schema(ds), &js, &tx)) != DML_OK)
        goto out;
    if ((st = dml__write_predictions(pred, &m, &all, &mi)) != DML_OK ||
        (st = dml__write_file_durably(json, js, 0)) != DML_OK ||
        (st = dml__write_file_durably(txt, tx.s, 0)) != DML_OK)
        goto out;
    if (text) {
        *text = tx.s;
        tx.s = NULL;
    }
out:
    if (parts)
        for (t = 0; t < m.tasks; t++)
            dml__part_free(&parts[t]);
    free(parts);
    dml__part_free(&all);
    free(js), free(tx.s);
    dml_dataset_close(ds);
    dml_model_free(model);
    dml_model_info_free(&mi);
    return st;
}
