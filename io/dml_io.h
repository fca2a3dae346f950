/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_io.h: sharded HDF5 datasets and the parallel data loader.
 *
 * A dataset is a directory of HDF5 shard files plus index.h5, which names the
 * shards with their sample counts and checksums and holds the schema, the
 * normalisation statistics, per-feature histograms (for drift measurement in
 * batch inference) and a content hash (docs/formats/dataset.md).
 *
 * Three parts:
 *  - dml_dataset_*: open an index, read its schema and statistics, validate
 *    shards against it.
 *  - dml_dataset_writer_*: write shards (several MPI ranks, different shards)
 *    and commit the index last, so an interrupted write never validates.
 *  - dml_loader_*: every rank's batches of one seeded global permutation per
 *    epoch, read through parallel HDF5 with prefetch, normalised to float;
 *    its position is a small state that resumes exactly, on any world size.
 *
 * Errors are dml_status_t with a detail in dml_error_message(); nothing here
 * prints. Functions marked "collective" must be called by every rank of the
 * communicator; they agree on failure, so all ranks return the same status.
 */
#ifndef DML_IO_H
#define DML_IO_H

#include "dml_stats.h"
#include "dml_status.h"

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

#define DML_DATASET_FORMAT "slurm-dml dataset"
#define DML_DATASET_VERSION 1
/* DML_DATASET_MAX_RANK, DML_DATASET_HIST_BINS, DML_DATASET_NAME_MAX and
 * dml_stats_t are dml_stats.h's, which model files share. */

typedef enum { DML_DTYPE_UINT8 = 0, DML_DTYPE_FLOAT32 = 1 } dml_dtype_t;

const char *dml_dtype_name(dml_dtype_t t);
size_t dml_dtype_size(dml_dtype_t t);

/* What a dataset holds. */
typedef struct {
    dml_dtype_t dtype;                    /* features as stored */
    int rank;                             /* 1..DML_DATASET_MAX_RANK */
    uint64_t shape[DML_DATASET_MAX_RANK]; /* one sample's feature shape */
    uint32_t num_classes;
    char (*class_names)[DML_DATASET_NAME_MAX]; /* num_classes names, or NULL */
} dml_schema_t;

/* Features per sample: the product of the shape. */
uint64_t dml_schema_features(const dml_schema_t *s);

/* Writes the statistics into an open HDF5 group (an hid_t): datasets mean,
 * std, min, max, hist_lo, hist_hi, hist, label_counts (num_classes) and the
 * attributes global_mean, global_std, as in a dataset's index and in a
 * model file (the same group: dml_nn.h's model files read and write it
 * without this library). */
dml_status_t dml_stats_write_h5(int64_t group, const dml_stats_t *st, uint32_t num_classes);

/* The histogram bin of value v for feature f (values outside clamp). */
int dml_stats_bin(const dml_stats_t *st, uint64_t f, double v);

/* Reads what dml_stats_write_h5 wrote (a model file's or an index's "stats"
 * group) into st, allocating its arrays; DML_ERR_FORMAT if anything is
 * missing or of other sizes. Free with dml_stats_free. */
dml_status_t dml_stats_read_h5(int64_t group, uint64_t features, uint32_t num_classes,
                               dml_stats_t *st);
void dml_stats_free(dml_stats_t *st);

typedef struct dml_dataset dml_dataset_t;

/*
 * Opens dir/index.h5 and reads schema, shard table and statistics. Local (no
 * MPI); cheap: shards are not opened. DML_ERR_NOT_FOUND if there is no index,
 * DML_ERR_FORMAT if it is not a slurm-dml dataset of a known version.
 */
dml_status_t dml_dataset_open(const char *dir, dml_dataset_t **ds_out);
void dml_dataset_close(dml_dataset_t *ds);

const char *dml_dataset_dir(const dml_dataset_t *ds);
const dml_schema_t *dml_dataset_schema(const dml_dataset_t *ds);
const dml_stats_t *dml_dataset_stats(const dml_dataset_t *ds);
uint64_t dml_dataset_samples(const dml_dataset_t *ds);
uint32_t dml_dataset_shards(const dml_dataset_t *ds);
/* Shard i's file name (relative to the directory), samples and checksum. */
const char *dml_dataset_shard_name(const dml_dataset_t *ds, uint32_t i);
uint64_t dml_dataset_shard_samples(const dml_dataset_t *ds, uint32_t i);
uint32_t dml_dataset_shard_crc(const dml_dataset_t *ds, uint32_t i);
/* 16 hex digits identifying the contents (schema, every shard's bytes). */
const char *dml_dataset_content_hash(const dml_dataset_t *ds);
/* Where the data came from, as the writer recorded it. */
const char *dml_dataset_source(const dml_dataset_t *ds);

/* Called once per problem that validation finds: "subject: cause". */
typedef void (*dml_problem_cb_t)(void *arg, dml_status_t status, const char *problem);

/*
 * Checks shards [first, first + count) against the index: file present and
 * readable as HDF5, datasets x/y/id present with the index's dtype, shape and
 * sample count, checksum, labels in [0, num_classes), finite features. Reports
 * every problem through cb (may be NULL) and returns DML_OK only if none was
 * found, else the status of the first. Local; ranks split the shards.
 */
dml_status_t dml_dataset_validate(const dml_dataset_t *ds, uint32_t first, uint32_t count,
                                  dml_problem_cb_t cb, void *arg, uint64_t *problems);

/* ---- reading a range of samples ----------------------------------------
 *
 * For batch inference: samples [first, first + n) in the dataset's order
 * (shard after shard), read with serial HDF5, no MPI: every task and rank
 * reads only its slice. Shards are opened when first touched and checked
 * against the index then (not their checksums: dml_dataset_validate).
 */
typedef struct dml_dataset_reader dml_dataset_reader_t;

dml_status_t dml_dataset_reader_open(const dml_dataset_t *ds, dml_dataset_reader_t **r_out);
void dml_dataset_reader_close(dml_dataset_reader_t *r);

/* Features as stored (n * features elements of the schema's dtype) into x,
 * labels into y, ids into id; any of them may be NULL. */
dml_status_t dml_dataset_reader_read(dml_dataset_reader_t *r, uint64_t first, uint64_t n, void *x,
                                     int32_t *y, uint64_t *id);

/* The shard holding sample `sample` (0-based, in dataset order). */
uint32_t dml_dataset_shard_of(const dml_dataset_t *ds, uint64_t sample);

/* ---- writing ---------------------------------------------------------- */

typedef struct dml_dataset_writer dml_dataset_writer_t;

/*
 * Collective over comm. Starts a dataset at dir, written into "dir.partial"
 * and renamed into place by dml_dataset_writer_commit. An existing dir is
 * refused (DML_ERR_EXISTS) unless replace is set, and then is only replaced
 * by the commit (and only if it is a dataset: a directory holding index.h5
 * and shard files, nothing else). "dir.partial" is made with a marker file
 * in it; one already there is removed only if it is such a directory left
 * by an interrupted write (the marker, shard files, index.h5), and anything
 * else there is refused (DML_ERR_EXISTS, naming it), untouched. class_names
 * may be NULL (classes are then named by number).
 */
dml_status_t dml_dataset_writer_create(MPI_Comm comm, const char *dir, const dml_schema_t *schema,
                                       uint32_t num_shards, int replace, const char *source,
                                       dml_dataset_writer_t **w_out);

/*
 * Local, changes nothing: whether dml_dataset_writer_create(dir, replace)
 * would accept the destination (the same checks on dir and "dir.partial").
 * For a tool that writes several datasets, to find a blocked one before
 * writing any.
 */
dml_status_t dml_dataset_writer_check(const char *dir, int replace);

/*
 * Local: writes shard `shard` (any rank, each shard once): n samples of
 * features x (n * features elements of the schema's dtype), labels y and
 * sample ids. Checks labels and finiteness first.
 */
dml_status_t dml_dataset_writer_put(dml_dataset_writer_t *w, uint32_t shard, uint64_t n,
                                    const void *x, const int32_t *y, const uint64_t *id);

/*
 * Collective: agrees that every rank wrote its shards, computes the statistics
 * (float features need a second pass over the written shards for histogram
 * ranges), writes index.h5 and moves the directory into place durably
 * (fsync, rename, fsync of the parent). Frees w on every path; on failure
 * removes "dir.partial".
 */
dml_status_t dml_dataset_writer_commit(dml_dataset_writer_t *w);

/*
 * Collective: commits n writers (created on the same communicator's ranks)
 * together, for datasets that belong together (a training set and its
 * validation set): each is completed as by dml_dataset_writer_commit, then
 * all are moved into place; if any fails, none is (a move that fails puts
 * back those moved before it, so the datasets they replace stay). Frees
 * every writer.
 */
dml_status_t dml_dataset_writer_commit_all(dml_dataset_writer_t **w, size_t n);

/* Local: frees a writer that will not be committed; leaves "dir.partial"
 * (marked: the next write of dir removes it). */
void dml_dataset_writer_abort(dml_dataset_writer_t *w);

/* Local: frees a writer that will not be committed and, on rank 0, removes
 * the "dir.partial" it made. Call it on every rank once no rank writes to it
 * any more (after they agreed on a failure). */
void dml_dataset_writer_discard(dml_dataset_writer_t *w);

/* ---- reading source formats ------------------------------------------- */

/*
 * Reads an IDX file (gzip-compressed or not), as Fashion-MNIST ships them:
 * images (ubyte, 3 dimensions) or labels (ubyte, 1 dimension). *data is
 * malloc'ed; dims gets up to 3 dimensions, *ndim their number.
 */
dml_status_t dml_idx_read(const char *path, uint8_t **data, uint64_t dims[3], int *ndim);

/*
 * Called while a CSV file is read, after every few MiB: bytes read so far of
 * bytes_total (0 when the size is not known: not a regular file) and the
 * data rows read. For a tool's progress line; the library prints nothing.
 */
typedef void (*dml_csv_progress_cb_t)(void *arg, uint64_t bytes_read, uint64_t bytes_total,
                                      uint64_t rows);

/*
 * Reads a CSV file with a header line (no name twice, none empty); the
 * column named label_column holds the labels, every other column a float
 * feature. CSV as RFC 4180 has it, read by libcsv: a field may be quoted,
 * and a quoted field may hold commas, line breaks and quotes (doubled: "");
 * lines may end in LF or CRLF; spaces around an unquoted field are not part
 * of it; blank lines are skipped; a UTF-8 byte order mark before the header
 * is ignored. A file that is not valid CSV (a quote inside an unquoted field,
 * text after a closing quote, a quote never closed) or a record with another
 * number of fields than the header is refused naming the file, the line
 * (and the column, for the syntax).
 *
 * A label column holds one kind: class numbers (whole numbers 0..65535,
 * each its own class: C = the largest + 1, some classes possibly without a
 * sample), or class names (anything not a number), numbered 0.. in the
 * byte order of the names. A number with a fraction (a measurement, not a
 * class), a negative or larger number, or numbers and names mixed are
 * refused naming the line. Outputs are malloc'ed; *names (num_classes
 * entries) only when labels were names, else NULL. progress may be NULL.
 * Linear in the size of the file, however many columns it has.
 */
dml_status_t dml_csv_read(const char *path, const char *label_column, float **x, int32_t **y,
                          uint64_t *n, uint64_t *features, uint32_t *num_classes,
                          char (**names)[DML_DATASET_NAME_MAX], dml_csv_progress_cb_t progress,
                          void *arg);

/* ---- the loader -------------------------------------------------------- */

typedef enum {
    DML_SHUFFLE_NONE = 0, /* sample order as stored: sequential reads */
    DML_SHUFFLE_FULL,     /* a uniform random permutation per epoch */
    DML_SHUFFLE_WINDOW    /* blocks in random order through a shuffle buffer:
                             bounded mixing for data beyond memory (rows are
                             still read one run at a time) */
} dml_shuffle_t;

typedef enum { DML_CACHE_AUTO = 0, DML_CACHE_ON, DML_CACHE_OFF } dml_cache_t;

typedef enum {
    DML_NORM_GLOBAL = 0, /* (x - global mean) / global std */
    DML_NORM_FEATURE,    /* per-feature mean and std (std floored) */
    DML_NORM_NONE        /* raw values as float */
} dml_norm_t;

/* out[i] = (float)in[i] * scale + bias for i < n: the loader's conversion of
 * stored bytes under a uniform normalisation (DML_NORM_GLOBAL, NONE), which
 * batch inference uses too, so that both give a model the same input bits.
 * In float, without fused multiply-add, vectorised for the CPU it runs on. */
void dml_normalize_u8(const uint8_t *in, uint64_t n, float scale, float bias, float *out);

typedef struct {
    uint64_t batch; /* samples per rank per step (> 0) */
    uint64_t seed;
    dml_shuffle_t shuffle;
    uint64_t window; /* DML_SHUFFLE_WINDOW: buffer samples [65536] */
    uint64_t block;  /* DML_SHUFFLE_WINDOW: block samples [256] */
    dml_cache_t cache;
    uint64_t cache_budget; /* bytes per node; 0: half of free memory. A copy per rank
                            * (huge pages) when all the node's fit, else one
                            * shared copy (AUTO: none if that does not fit) */
    int prefetch;          /* batches read ahead by the I/O thread; 0: none */
    int verify;            /* check shard checksums at create (ranks split) */
    dml_norm_t norm;
    /* Statistics to normalise with (a model's training statistics); NULL: the
     * dataset's own. */
    const dml_stats_t *norm_stats;
} dml_loader_config_t;

/* Defaults: batch 128, seed 0, full shuffle, cache auto, prefetch 4, verify. */
void dml_loader_config_init(dml_loader_config_t *cfg);

/* Where a loader is: enough to continue with exactly the same samples. The
 * permutation of an epoch is a function of (seed, epoch) alone, so no other
 * RNG state exists. cursor counts samples consumed globally in the epoch. */
typedef struct {
    uint64_t seed;
    uint64_t epoch;
    uint64_t cursor;
} dml_loader_state_t;

/* One rank's part of one global batch. Valid until the next call. */
typedef struct {
    uint64_t n;        /* samples on this rank (may be 0 in a short last step) */
    uint64_t global_n; /* samples in this global batch, all ranks */
    uint64_t epoch;
    uint64_t pos;       /* global position of this global batch in the epoch */
    int epoch_end;      /* this global batch ends its epoch */
    const float *x;     /* n * features, normalised */
    const int32_t *y;   /* n labels */
    const uint64_t *id; /* n sample ids */
} dml_batch_t;

typedef struct dml_loader dml_loader_t;

/*
 * Collective over comm: opens the shards with the MPI-IO driver, checks each
 * shard's datasets against the index (and the checksums, if cfg->verify),
 * fills the node cache if chosen (else, where the shards fit in half of the
 * node's available memory, has the kernel read them ahead in the background)
 * and starts the prefetch thread. The thread
 * makes HDF5 calls: while a loader exists, other HDF5 use in the process must
 * hold dml_io_hdf5_lock(). Prefetch needs MPI_THREAD_MULTIPLE (the MPI-IO
 * driver calls MPI from the thread); with less, batches are read on demand.
 */
dml_status_t dml_loader_create(dml_dataset_t *ds, MPI_Comm comm, const dml_loader_config_t *cfg,
                               dml_loader_t **ld_out);

/* Collective: stops the thread, closes the shards. */
void dml_loader_destroy(dml_loader_t *ld);

/*
 * Local: the rank's next batch. Epochs follow one another without end; the
 * caller stops where it likes (batch->epoch_end marks each epoch's last step,
 * which every rank reaches at the same call). A read error is this rank's
 * only: agree on it (dml_mpi_agree) before the next collective. With
 * prefetch, a caller that finds no batch ready polls for up to 200 us,
 * yielding the CPU, before it sleeps (not where the caller is pinned to one
 * CPU): waking a sleeper on an idle vCPU cost as much as making the batch.
 */
dml_status_t dml_loader_next(dml_loader_t *ld, const dml_batch_t **batch);

/* Local: the position after the last batch returned. */
void dml_loader_get_state(const dml_loader_t *ld, dml_loader_state_t *state);

/*
 * Collective: continue from state (saved at any world size). DML_ERR_MISMATCH
 * if the seed differs from the loader's or the cursor is past the epoch.
 */
dml_status_t dml_loader_set_state(dml_loader_t *ld, const dml_loader_state_t *state);

/* Global steps in one full epoch at this world size and batch. */
uint64_t dml_loader_steps_per_epoch(const dml_loader_t *ld);

/* Whether the node cache is in use, and whether prefetch runs in a thread. */
int dml_loader_cached(const dml_loader_t *ld);
/* 1 when the cache is one copy shared by the node's ranks (the budget did not
 * hold a copy per rank), 0 when each rank has its own or there is none. */
int dml_loader_cache_shared(const dml_loader_t *ld);
int dml_loader_threaded(const dml_loader_t *ld);

/* Seconds the caller spent waiting inside dml_loader_next so far. */
double dml_loader_wait_seconds(const dml_loader_t *ld);

/*
 * The sample order of an epoch: perm[i] is the sample index (0..n-1, in shard
 * order) at global position i. Exposed for tests and tools; n entries.
 */
dml_status_t dml_loader_permutation(dml_shuffle_t shuffle, uint64_t seed, uint64_t epoch,
                                    uint64_t n, uint64_t window, uint64_t block, uint64_t *perm);

/* Serialises HDF5 use between the loader's thread and the rest of a process
 * (parallel HDF5 is not thread-safe). Not recursive. */
void dml_io_hdf5_lock(void);
void dml_io_hdf5_unlock(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_IO_H */
