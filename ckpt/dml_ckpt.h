/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_ckpt.h: coordinated checkpoints in parallel HDF5, and what a training
 * job needs to know to take them in time (signals, the Slurm end time).
 *
 * A checkpoint is one HDF5 file, DIR/ckpt-<step>.h5, written by every rank of
 * a communicator through the MPI-IO driver. Arrays are stored whole, in their
 * global shape, each rank writing a slice, so that any number of ranks can
 * read them back; every dataset carries a CRC-32 of its bytes. What goes into
 * the file is the caller's (the trainer writes its state, see
 * docs/formats/checkpoint.md); this library owns the commit protocol:
 *
 *   1. every rank writes DIR/ckpt-<step>.h5.tmp collectively;
 *   2. every rank fsyncs what it wrote with its own POSIX writes, closes
 *      the file and reports success (an agreement: one failure
 *      aborts the checkpoint on all ranks and removes the temporary);
 *   3. rank 0 fsyncs the file and renames it into place;
 *   4. rank 0 points DIR/latest at it (a symlink replaced by rename) and
 *      fsyncs DIR once for both renames;
 *   5. a thread of rank 0 deletes the oldest checkpoints beyond the newest
 *      `keep`, after the commit returned.
 *
 * Only a name without ".tmp" is ever taken for a checkpoint, and a file gets
 * that name only after it is complete and durable, so a crash at any point
 * leaves the previous checkpoint the newest one. Loading (dml_ckpt_list,
 * dml_ckpt_verify) needs no MPI: dml-ckpt and batch inference use it alone.
 */
#ifndef DML_CKPT_H
#define DML_CKPT_H

#include "dml_status.h"

#include <hdf5.h>
#include <mpi.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports what this header declares, and nothing else (it is
 * built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

#define DML_CKPT_FORMAT "slurm-dml checkpoint"
/* 2: the attributes are checksummed too (root attribute attrs_crc32) */
#define DML_CKPT_VERSION 2

/* The exit status of a trainer that checkpointed and stopped on request (a
 * signal or the time limit): "requeue me". EX_TEMPFAIL of sysexits.h. */
#define DML_CKPT_EXIT_REQUEUE 75

/* ---- writing ------------------------------------------------------------ */

/* Local: creates dir (and its parents) if missing and checks that files can
 * be made there: call it at start, so that a bad directory is refused before
 * hours of training rather than at the first checkpoint. */
dml_status_t dml_ckpt_dir_prepare(const char *dir);

/*
 * Local: a new run in dir (dml-train --resume never). A checkpoint
 * directory belongs to one run: resuming takes its newest checkpoint, and
 * pruning keeps its newest ones, by step. Checkpoints of an earlier run left
 * there would be taken for the new run's (a step number higher than the new
 * run's), so they are moved, with "latest", into dir/earlier-run-<time>/
 * (kept, never deleted), and the scratch files (.spare.h5, temporaries) are
 * removed. moved gets that directory, or "" if dir held no checkpoint.
 */
dml_status_t dml_ckpt_dir_set_aside(const char *dir, char *moved, size_t len);

typedef struct dml_ckpt_writer dml_ckpt_writer_t;

/* How checkpoints are written: what a tool may tune (dml-train takes them
 * from DML_CKPT_SINGLE_MAX, DML_CKPT_PIECE and DML_CKPT_REUSE,
 * docs/checkpoints.md); the library reads no environment. */
typedef struct {
    uint64_t single_max; /* up to this many bytes of state rank 0 writes the
                            checkpoint alone with POSIX writes [64 MiB] */
    uint64_t piece;      /* large arrays are written in pieces of this many
                            bytes, each started on the disk as the next is
                            copied (at least a page) [2 MiB]; 0: one write */
    int reuse;           /* a pruned checkpoint rank 0 wrote alone is kept as
                            DIR/.spare.h5 and the next written into its
                            blocks [1] */
    /* Called on every rank at each phase of the commit protocol ("begin",
     * "put", "closed", "renamed", "latest"; dml_ckpt_commit), for tests that
     * crash a run there. May be NULL. */
    void (*on_phase)(void *arg, const char *phase, int rank);
    void *on_phase_arg;
} dml_ckpt_config_t;

void dml_ckpt_config_init(dml_ckpt_config_t *c);

/*
 * Collective: starts checkpoint `step` in dir (created if missing), removing
 * temporaries that a crashed writer left behind, and creates the temporary
 * file: with the MPI-IO driver, or where rank 0 writes alone (up to
 * cfg->single_max bytes) with POSIX writes, in dir/.spare.h5's blocks if
 * there is one. Every rank returns the same status.
 *
 * The checkpoint's collectives run on a duplicate of comm, made at its first
 * checkpoint and kept as an attribute of comm until comm is freed.
 *
 * expect_bytes (about what the arrays will take) is checked against the
 * file system's free space and the file size limit first, and a checkpoint
 * that cannot fit is refused (DML_ERR_NO_SPACE) before anything is written:
 * parallel HDF5 cannot reliably close a file after a failed write (its
 * ranks' error paths part ways and may wait on each other for ever).
 */
dml_status_t dml_ckpt_begin(MPI_Comm comm, const char *dir, uint64_t step, uint64_t expect_bytes,
                            const dml_ckpt_config_t *cfg, dml_ckpt_writer_t **w_out);

/* The open file (write attributes and groups there, collectively: every rank
 * the same calls with the same values, as parallel HDF5 requires). The
 * typed calls below do it without HDF5; this is for benchmarks and tests
 * that write raw arrays. */
hid_t dml_ckpt_file(const dml_ckpt_writer_t *w);

/* A place in a checkpoint that holds attributes and arrays: the file's root
 * (DML_CKPT_ROOT) or a group made by dml_ckpt_group_create or opened by
 * dml_ckpt_group_open. It is an HDF5 id (what nn/'s put and get callbacks
 * pass on), but callers need not know: they name places, not HDF5. */
typedef int64_t dml_ckpt_loc_t;
#define DML_CKPT_ROOT ((dml_ckpt_loc_t)0)

/*
 * The caller's attributes, on the checkpoint's root. Collective in HDF5's
 * sense: every rank makes the same calls with the same values; a failure
 * is not agreed here (agree once after a series, dml_mpi_agree). The names
 * this library writes itself (format, version, step, world_size, created,
 * attrs_crc32: dml_ckpt_header_t) are refused with DML_ERR_INVALID_ARG.
 */
dml_status_t dml_ckpt_put_str(dml_ckpt_writer_t *w, const char *name, const char *value);
dml_status_t dml_ckpt_put_u64(dml_ckpt_writer_t *w, const char *name, uint64_t value);
dml_status_t dml_ckpt_put_i32(dml_ckpt_writer_t *w, const char *name, int32_t value);
dml_status_t dml_ckpt_put_f64s(dml_ckpt_writer_t *w, const char *name, size_t n,
                               const double *values);

/* Collective: creates group `name` under the root; every rank returns the
 * same status. Close it with dml_ckpt_group_close. */
dml_status_t dml_ckpt_group_create(dml_ckpt_writer_t *w, const char *name, dml_ckpt_loc_t *g_out);
/* Closes a group of a writer or a reader (DML_CKPT_ROOT and -1: nothing). */
void dml_ckpt_group_close(dml_ckpt_loc_t g);

/* Collective: dml_ckpt_put of float or double arrays (dims as there). */
dml_status_t dml_ckpt_put_floats(dml_ckpt_writer_t *w, dml_ckpt_loc_t loc, const char *name,
                                 const uint64_t dims[2], const float *buf);
dml_status_t dml_ckpt_put_doubles(dml_ckpt_writer_t *w, dml_ckpt_loc_t loc, const char *name,
                                  const uint64_t dims[2], const double *buf);

/*
 * Collective: dataset `name` under loc, of dims[0] (x dims[1], 0 for 1-D)
 * elements of the native type `type`, from buf, which holds the whole array
 * on every rank (data-parallel state is replicated). Each rank writes its
 * share of the rows: an array of cfg->piece bytes (2 MiB) or more with
 * its own POSIX writes to the array's place in the file, in pieces started
 * on the disk one by one, a smaller one in one collective write (rank 0
 * writes all of a checkpoint of up to cfg->single_max bytes). Every rank
 * returns the same status; on failure call dml_ckpt_abort.
 */
dml_status_t dml_ckpt_put(dml_ckpt_writer_t *w, hid_t loc, const char *name, hid_t type,
                          const uint64_t dims[2], const void *buf);

/*
 * Collective: the commit protocol above. Checksums every dataset that has
 * none yet (those written with plain HDF5 calls), closes, agrees, and on
 * success renames into place, moves "latest" and keeps the newest `keep`
 * checkpoints (keep < 1: all); of those pruned, one that rank 0 wrote alone
 * stays as dir/.spare.h5, and the next such checkpoint is written into its
 * blocks (cfg->reuse 0: none kept). path_out (may be NULL) gets the
 * final path.
 * Frees w in every case; on failure the temporary is gone and the previous
 * checkpoints are untouched.
 */
dml_status_t dml_ckpt_commit(dml_ckpt_writer_t *w, int keep, char *path_out, size_t len);

/* Collective: abandons the checkpoint (removes the temporary), frees w. */
void dml_ckpt_abort(dml_ckpt_writer_t *w);

/* ---- finding and checking checkpoints (local, no MPI) -------------------- */

typedef struct {
    uint64_t step;
    char path[4096];
    int64_t mtime; /* seconds since the epoch */
    uint64_t bytes;
} dml_ckpt_entry_t;

/*
 * The committed checkpoints in dir, newest (highest step) first, in a
 * malloc'ed array (free it). *n = 0 and DML_OK if there are none or dir does
 * not exist. Temporaries are not listed.
 */
dml_status_t dml_ckpt_list(const char *dir, dml_ckpt_entry_t **entries, size_t *n);

/*
 * Local: whether the file at path is a complete, sound checkpoint: the
 * format and version, every dataset's checksum and (version 2) the checksum
 * over every attribute (the step, the loader's position...). DML_OK, or the
 * first problem (DML_ERR_FORMAT, DML_ERR_CHECKSUM, ...) with a detail naming
 * the file and the dataset or attributes.
 */
dml_status_t dml_ckpt_verify(const char *path);

/* The file that holds the model at path, for loading it (dml_model_load,
 * dml_nn.h): a checkpoint directory's newest checkpoint that verifies; a
 * checkpoint file, once it verifies; any other path as it is (a model file,
 * checked where it is loaded). Local. */
dml_status_t dml_ckpt_model_path(const char *path, char *file, size_t len);

/* What this library stamps on every checkpoint it writes (dml_ckpt_begin),
 * read back by dml_ckpt_open: callers never name these attributes. */
typedef struct {
    uint64_t step;      /* the step dml_ckpt_begin was given */
    int32_t world_size; /* ranks that wrote it */
    int64_t created;    /* seconds since the epoch, rank 0's clock */
    int32_t version;    /* format version, 1 to DML_CKPT_VERSION */
} dml_ckpt_header_t;

typedef struct dml_ckpt_reader dml_ckpt_reader_t;

/* Opens a checkpoint read-only (no MPI-IO: every rank reads what it needs)
 * after checking its format and version, which with the step, world size
 * and time of writing go to hdr (may be NULL). Close with dml_ckpt_close,
 * under dml_io_hdf5_lock if a loader runs. Local. */
dml_status_t dml_ckpt_open(const char *path, dml_ckpt_header_t *hdr, dml_ckpt_reader_t **r_out);
void dml_ckpt_close(dml_ckpt_reader_t *r);
/* The file's root as an HDF5 id, for a tool that walks every object
 * (dml-ckpt inspect); valid until dml_ckpt_close. */
dml_ckpt_loc_t dml_ckpt_root(const dml_ckpt_reader_t *r);

/* The caller's root attributes, mirrors of dml_ckpt_put_*: DML_ERR_FORMAT,
 * naming the file and the attribute, if one is missing or not of n values. */
dml_status_t dml_ckpt_get_str(dml_ckpt_reader_t *r, const char *name, char *buf, size_t len);
dml_status_t dml_ckpt_get_u64(dml_ckpt_reader_t *r, const char *name, uint64_t *value);
dml_status_t dml_ckpt_get_i32(dml_ckpt_reader_t *r, const char *name, int32_t *value);
dml_status_t dml_ckpt_get_f64s(dml_ckpt_reader_t *r, const char *name, size_t n, double *values);

/* Opens group `name` under the root (DML_ERR_FORMAT if there is none). */
dml_status_t dml_ckpt_group_open(dml_ckpt_reader_t *r, const char *name, dml_ckpt_loc_t *g_out);

/* The shape of dataset `name` under loc: dims[1] 0 for a 1-D one. */
dml_status_t dml_ckpt_dims(dml_ckpt_reader_t *r, dml_ckpt_loc_t loc, const char *name,
                           uint64_t dims[2]);

/* dml_ckpt_get of float or double arrays, mirrors of dml_ckpt_put_floats
 * and dml_ckpt_put_doubles. */
dml_status_t dml_ckpt_get_floats(dml_ckpt_reader_t *r, dml_ckpt_loc_t loc, const char *name,
                                 uint64_t n, float *buf);
dml_status_t dml_ckpt_get_doubles(dml_ckpt_reader_t *r, dml_ckpt_loc_t loc, const char *name,
                                  uint64_t n, double *buf);

/* Reads a whole dataset of n elements as the native type `type` into buf and
 * checks its CRC-32. DML_ERR_FORMAT if its shape is not n elements. loc: a
 * group of an open checkpoint, an HDF5 handle (for callbacks that pass HDF5
 * types on, such as nn/'s dml_model_get_cb_t), never DML_CKPT_ROOT: the
 * typed calls above take that. */
dml_status_t dml_ckpt_get(hid_t loc, const char *name, hid_t type, uint64_t n, void *buf);

/* ---- when to checkpoint ------------------------------------------------- */

/*
 * Installs a handler for each of the signals in the comma-separated list
 * ("USR1,USR2,TERM", "none" for none) that only sets *flag (to the signal's
 * number), leaving the work to the next step boundary.
 */
dml_status_t dml_ckpt_signals_install(const char *list, volatile sig_atomic_t *flag);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DML_CKPT_H */
