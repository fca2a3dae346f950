/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * infer_private.h: what serve-batch/'s sources share: a part in memory, its
 * file (docs/formats/inference.md), and small helpers.
 */
#ifndef DML_INFER_PRIVATE_H
#define DML_INFER_PRIVATE_H

#include "dml_infer.h"
#include "dml_io.h"
#include "dml_nn.h"

typedef struct {
    uint32_t task, tasks;
    uint64_t first, count;
    int topk, ranks, batch;
    uint64_t features;
    double seconds; /* the task's wall time: load, read, compute, write */
    char model_hash[17], input_hash[17];
    uint64_t *id;
    int32_t *label, *pred, *tk_class; /* tk_class, tk_prob: count x topk */
    float *tk_prob;
    uint64_t *hist; /* features x DML_DATASET_HIST_BINS */
    double *lat;    /* seconds per batch */
    uint64_t nb;
} dml__part_t;

/* Writes the part under a temporary name in out, then renames it into place
 * (fsync of file and directory); cfg's on_part hears of it in between. */
dml_status_t dml__part_write(const char *out, const dml__part_t *p, const dml_infer_config_t *cfg);

/* Allocates a part's arrays for n samples, top-k, the histograms of
 * `features` (zeroed) and nb batch times, and sets those sizes; the record
 * fields are left as they are. Frees everything on failure. */
dml_status_t dml__part_alloc(dml__part_t *p, uint64_t n, int k, uint64_t features, uint64_t nb);

/* Reads a part whole and checks its record and checksum; arrays malloc'ed. */
dml_status_t dml__part_read(const char *path, dml__part_t *p);
void dml__part_free(dml__part_t *p);

/* Reads part `task` of the run in out and judges it against the manifest:
 * complete (p then holds it; free it), or missing, stale or corrupt (why
 * says how; p holds nothing). */
dml_part_state_t dml__part_load(const char *out, const dml_infer_manifest_t *m, uint32_t task,
                                dml__part_t *p, char *why, size_t len);

/* The CRC-32 over a part's arrays, in file order. */
uint32_t dml__part_crc(const dml__part_t *p);

/* The k (<= C) most probable classes of a row p[0..C), most probable first,
 * and their probabilities; ties go to the lower class, as the trainer's
 * accuracy counts them. */
void dml__topk(const float *p, int C, int k, int32_t *cls, float *prob);

/* The drift histograms of byte inputs (drift.c). bin8[f * 256 + v] is
 * feature f's histogram bin of byte value v (dml_stats_bin), which must not
 * fall as v grows. Counting the rows rows[0..nr) (each F bytes) is exact:
 * dml__drift_hist adds the same counts a lookup of every byte would, and
 * starts the counts again. */
typedef struct dml__drift dml__drift_t;
dml_status_t dml__drift_create(const uint8_t *bin8, uint64_t F, dml__drift_t **out);
void dml__drift_count(dml__drift_t *d, const uint8_t *const *rows, uint64_t nr);
void dml__drift_hist(dml__drift_t *d, uint64_t *hist); /* F x DML_DATASET_HIST_BINS */
void dml__drift_free(dml__drift_t *d);

dml_status_t dml__write_file_durably(const char *path, const char *text, int exclusive);

/* The model at path (a model file, a checkpoint, or a checkpoint directory's
 * newest sound checkpoint: ckpt/ resolves and verifies it), loaded for
 * batches of max_batch. */
dml_status_t dml__load_model(const char *path, int max_batch, dml_model_t **m,
                             dml_model_info_t *mi);

#endif /* DML_INFER_PRIVATE_H */
