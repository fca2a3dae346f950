/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * train_state.c: the training state's one owner in a checkpoint. A run's
 * state (dml_train_state_t, train_private.h) is saved and loaded here, by
 * mirrored functions, attribute for attribute and array for array, so that
 * what is written and what is read cannot drift apart. The file itself (its
 * header, checksums and commit protocol) is ckpt/'s; the model's group is
 * nn/'s (dml_model_write_h5 and dml_model_read_h5); this file names only
 * the trainer's own attributes and arrays (docs/formats/checkpoint.md).
 * train.c fills a state to save and adopts one loaded, without HDF5.
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_mpi.h"
#include "dml_nn.h"
#include "train_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The optimiser's buffers: group "optimizer", datasets state0, state1. */
#define DML__OPT_GROUP "optimizer"
#define DML__METRICS "metrics"

static void dml__opt_name_of(int i, char *buf, size_t len)
{
    snprintf(buf, len, "state%d", i);
}

uint64_t dml__train_state_bytes(const dml_train_state_t *s)
{
    return dml_model_nparams(s->m) * sizeof(float) * (1 + (uint64_t)s->nopt) +
           dml_model_nbuffers(s->m) * sizeof(float) + s->nhistory * DML__HIST_COLS * sizeof(double);
}

/* ---- saving ------------------------------------------------------------- */

/* nn/'s arrays, through the checkpoint's collective, checksummed puts. */
static dml_status_t dml__put_model(void *arg, int64_t loc, const char *name, int64_t type,
                                   const uint64_t dims[2], const void *data)
{
    return dml_ckpt_put(arg, loc, name, type, dims, data);
}

/* Every rank, the same calls with the same values: parallel HDF5 creates
 * attributes collectively, so a rank that stopped at its first failure
 * while the others went on would leave the file's metadata diverged (and
 * its close hung). Every put is made; the first failure is kept, and the
 * caller agrees on it. */
static void dml__keep_first(dml_status_t r, dml_status_t *st, char *why, size_t len)
{
    if (r != DML_OK && *st == DML_OK) {
        *st = r;
        snprintf(why, len, "%s", dml_error_message());
    }
}

static dml_status_t dml__attrs_put(dml_ckpt_writer_t *w, const dml_train_state_t *s)
{
    dml_status_t st = DML_OK;
    char why[512] = "";

    dml__keep_first(dml_ckpt_put_str(w, "model", s->model), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_str(w, "dataset", s->dataset), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_str(w, "dataset_hash", s->dataset_hash), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_str(w, "config", s->config), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_u64(w, "seed", s->seed), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_u64(w, "epoch", s->epoch), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_i32(w, "batch", s->batch), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_i32(w, "accum", s->accum), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_u64(w, "loader_epoch", s->loader.epoch), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_u64(w, "loader_cursor", s->loader.cursor), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_f64s(w, "epoch_sums", 3, s->epoch_sums), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_str(w, "optimizer", s->optimizer), &st, why, sizeof(why));
    dml__keep_first(dml_ckpt_put_u64(w, "optimizer_steps", s->opt_steps), &st, why, sizeof(why));
    return st == DML_OK ? DML_OK : dml_error_set(st, "%s", why);
}

/* Collective: s into the open checkpoint w. */
static dml_status_t dml__state_put(MPI_Comm comm, dml_ckpt_writer_t *w, const dml_train_state_t *s)
{
    const uint64_t dims[2] = {dml_model_nparams(s->m), 0};
    const uint64_t hd[2] = {s->nhistory, DML__HIST_COLS};
    dml_ckpt_loc_t g = -1;
    char name[32];
    dml_status_t st;
    int i;

    st = dml_mpi_agree(comm, dml__attrs_put(w, s), NULL);
    if (st == DML_OK)
        st = dml_ckpt_group_create(w, DML_MODEL_GROUP, &g);
    /* The model group is a model file's root: nn/ writes it. */
    if (st == DML_OK)
        st = dml_mpi_agree(comm, dml_model_write_h5(g, s->m, &s->info, dml__put_model, w), NULL);
    dml_ckpt_group_close(g);
    g = -1;
    if (st == DML_OK)
        st = dml_ckpt_group_create(w, DML__OPT_GROUP, &g);
    for (i = 0; st == DML_OK && i < s->nopt; i++) {
        dml__opt_name_of(i, name, sizeof(name));
        st = dml_ckpt_put_floats(w, g, name, dims, s->opt[i]);
    }
    dml_ckpt_group_close(g);
    if (st == DML_OK)
        st = dml_ckpt_put_doubles(w, DML_CKPT_ROOT, DML__METRICS, hd, s->history);
    return st;
}

dml_status_t dml__train_state_save(MPI_Comm comm, const dml_train_state_t *s, const char *dir,
                                   int keep, const dml_ckpt_config_t *cfg, char *path_out,
                                   size_t len)
{
    dml_ckpt_writer_t *w = NULL;
    dml_status_t st;

    st = dml_ckpt_begin(comm, dir, s->step, dml__train_state_bytes(s), cfg, &w);
    if (st != DML_OK)
        return st;
    st = dml__state_put(comm, w, s);
    if (st != DML_OK) {
        dml_ckpt_abort(w);
        return st;
    }
    return dml_ckpt_commit(w, keep, path_out, len);
}

/* ---- loading: the mirror of saving --------------------------------------- */

/* nn/'s arrays, through the checkpoint's checksummed reads. */
static dml_status_t dml__get_model(void *arg, int64_t loc, const char *name, int64_t type,
                                   uint64_t n, void *data)
{
    (void)arg;
    return dml_ckpt_get(loc, name, type, n, data);
}

static dml_status_t dml__attrs_get(dml_ckpt_reader_t *r, dml_train_state_t *s)
{
    /* rank-local reads: the first failure ends the series */
    dml_status_t st = dml_ckpt_get_str(r, "model", s->model, sizeof(s->model));

    if (st == DML_OK)
        st = dml_ckpt_get_str(r, "dataset", s->dataset, sizeof(s->dataset));
    if (st == DML_OK)
        st = dml_ckpt_get_str(r, "dataset_hash", s->dataset_hash, sizeof(s->dataset_hash));
    if (st == DML_OK)
        st = dml_ckpt_get_str(r, "config", s->config, sizeof(s->config));
    if (st == DML_OK)
        st = dml_ckpt_get_u64(r, "seed", &s->seed);
    if (st == DML_OK)
        st = dml_ckpt_get_u64(r, "epoch", &s->epoch);
    if (st == DML_OK)
        st = dml_ckpt_get_i32(r, "batch", &s->batch);
    if (st == DML_OK)
        st = dml_ckpt_get_i32(r, "accum", &s->accum);
    if (st == DML_OK)
        st = dml_ckpt_get_u64(r, "loader_epoch", &s->loader.epoch);
    if (st == DML_OK)
        st = dml_ckpt_get_u64(r, "loader_cursor", &s->loader.cursor);
    if (st == DML_OK)
        st = dml_ckpt_get_f64s(r, "epoch_sums", 3, s->epoch_sums);
    if (st == DML_OK)
        st = dml_ckpt_get_str(r, "optimizer", s->optimizer, sizeof(s->optimizer));
    if (st == DML_OK)
        st = dml_ckpt_get_u64(r, "optimizer_steps", &s->opt_steps);
    s->loader.seed = s->seed;
    return st;
}

/* Whether the checkpoint at path (its attributes in s) is of the run `run`
 * describes: checked before its arrays are read. */
static dml_status_t dml__same_run(const char *path, const dml_train_state_t *run,
                                  const dml_train_state_t *s)
{
    if (strcmp(s->model, run->model) != 0)
        return dml_error_set(DML_ERR_MISMATCH, "%s: saved for model %s, this run trains %s", path,
                             s->model, run->model);
    if (strcmp(s->dataset_hash, run->dataset_hash) != 0)
        return dml_error_set(DML_ERR_MISMATCH,
                             "%s: saved for another training dataset (content "
                             "hash %.16s..., %s has %.16s...)",
                             path, s->dataset_hash, run->dataset, run->dataset_hash);
    if (s->seed != run->seed || strcmp(s->optimizer, run->optimizer) != 0)
        return dml_error_set(DML_ERR_MISMATCH,
                             "%s: saved with seed %llu and optimizer %s, this run "
                             "uses seed %llu and %s",
                             path, (unsigned long long)s->seed, s->optimizer,
                             (unsigned long long)run->seed, run->optimizer);
    return DML_OK;
}

/* The arrays, sized by run's model and optimiser, into s's own memory. */
static dml_status_t dml__arrays_get(const char *path, dml_ckpt_reader_t *r,
                                    const dml_train_state_t *run, dml_train_state_t *s)
{
    const size_t n = dml_model_nparams(run->m), nbuf = dml_model_nbuffers(run->m);
    uint64_t hd[2] = {0, 0};
    dml_ckpt_loc_t g = -1;
    char name[32];
    dml_status_t st;
    int i;

    s->m = run->m;
    s->nopt = run->nopt;
    s->owned = 1;
    s->params = malloc(n * sizeof(float));
    s->buffers = nbuf > 0 ? malloc(nbuf * sizeof(float)) : NULL;
    if (s->params == NULL || (nbuf > 0 && s->buffers == NULL))
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
    for (i = 0; i < s->nopt; i++)
        if ((s->opt[i] = malloc(n * sizeof(float))) == NULL)
            return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);

    if ((st = dml_ckpt_group_open(r, DML_MODEL_GROUP, &g)) != DML_OK)
        return st;
    st = dml_model_read_h5(g, run->m, dml__get_model, NULL, s->params, s->buffers);
    dml_ckpt_group_close(g);
    if (st != DML_OK)
        return st;

    if ((st = dml_ckpt_group_open(r, DML__OPT_GROUP, &g)) != DML_OK)
        return st;
    for (i = 0; st == DML_OK && i < s->nopt; i++) {
        dml__opt_name_of(i, name, sizeof(name));
        st = dml_ckpt_get_floats(r, g, name, n, s->opt[i]);
    }
    dml_ckpt_group_close(g);
    if (st != DML_OK)
        return st;

    if (dml_ckpt_dims(r, DML_CKPT_ROOT, DML__METRICS, hd) != DML_OK || hd[1] != DML__HIST_COLS)
        return dml_error_set(DML_ERR_FORMAT, "%s: no metrics history of %d columns", path,
                             DML__HIST_COLS);
    s->nhistory = hd[0];
    /* a row more than held: never malloc(0), and room for the next epoch */
    if ((s->history = malloc(sizeof(double) * DML__HIST_COLS * (hd[0] + 1))) == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
    return dml_ckpt_get_doubles(r, DML_CKPT_ROOT, DML__METRICS, hd[0] * DML__HIST_COLS, s->history);
}

void dml__train_state_free(dml_train_state_t *s)
{
    int i;

    if (s == NULL || !s->owned)
        return;
    free(s->params);
    free(s->buffers);
    for (i = 0; i < 2; i++)
        free(s->opt[i]);
    free(s->history);
    memset(s, 0, sizeof(*s));
}

dml_status_t dml__train_state_load(const char *path, const dml_train_state_t *run,
                                   dml_train_state_t *out)
{
    dml_train_state_t *s = calloc(1, sizeof(*s));
    dml_ckpt_reader_t *r = NULL;
    dml_ckpt_header_t h;
    dml_status_t st;

    if (s == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory to load it", path);
    if ((st = dml_ckpt_open(path, &h, &r)) != DML_OK)
        goto out;
    s->step = h.step;
    s->world_size = h.world_size;
    if ((st = dml__attrs_get(r, s)) != DML_OK)
        goto out;
    if ((st = dml__same_run(path, run, s)) != DML_OK)
        goto out;
    st = dml__arrays_get(path, r, run, s);
out:
    dml_ckpt_close(r);
    if (st == DML_OK)
        *out = *s;
    else
        dml__train_state_free(s);
    free(s);
    return st;
}
