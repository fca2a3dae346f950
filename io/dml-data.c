/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-data: make, inspect and validate slurm-dml datasets.
 *
 *   dml-data convert  --fashion-mnist[=DIR] | --idx-images F --idx-labels F | --csv F
 *                     --out DIR [--shards N | --shard-size N] [--val-fraction F] ...
 *   dml-data synth    --out DIR --samples N [--shape 28x28] [--classes C] ...
 *   dml-data inspect  DIR
 *   dml-data validate DIR...
 *
 * An MPI program: run it plain, or under srun/mpirun to write and check
 * shards on several ranks at once. The work is in io/ (dml_io.h); this file
 * parses arguments and prints.
 */
#include "config.h"

#include "dml_h5.h"
#include "dml_io.h"
#include "dml_log.h"
#include "dml_mpi.h"
#include "dml_tool.h"
#include "dml_clock.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const fmnist_classes[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                               "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                               "Bag",         "Ankle boot"};

static int g_rank, g_size;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: dml-data COMMAND [OPTIONS]\n"
            "\n"
            "Commands:\n"
            "  convert   make a dataset from Fashion-MNIST/IDX or CSV files\n"
            "  synth     make a synthetic, learnable classification dataset\n"
            "  inspect   print a dataset's schema, counts, shards and statistics\n"
            "  validate  check every shard against the index; exit 0 only when sound\n"
            "\n"
            "convert options:\n"
            "  --fashion-mnist[=DIR]   the Fashion-MNIST IDX files [" FMNIST_DIR "];\n"
            "                          writes OUT/train and OUT/test (and OUT/val)\n"
            "  --idx-images FILE --idx-labels FILE   one IDX pair (gzip or plain) into OUT\n"
            "  --csv FILE --label-column NAME        CSV (RFC 4180) with a header into OUT\n"
            "  --out DIR               output directory (required)\n"
            "  --shards N              number of shards\n"
            "  --shard-size N          samples per shard [10000] (when --shards is not given)\n"
            "  --val-fraction F        hold out this fraction of the training data as OUT/val\n"
            "                          (Fashion-MNIST) or OUT.val, chosen with --seed\n"
            "  --seed S                seed for the validation split [0]\n"
            "  --force                 replace an existing dataset (only once the new one is\n"
            "                          complete)\n"
            "\n"
            "synth options:\n"
            "  --out DIR --samples N   where, and how many samples (required)\n"
            "  --shape DxD...          feature shape, e.g. 784 or 28x28 [784]\n"
            "  --classes C             number of classes [10]\n"
            "  --dtype uint8|float32   stored feature type [uint8]\n"
            "  --noise X               noise around each class centre, 0..1 [0.5]\n"
            "  --seed S, --shards N, --shard-size N, --force   as for convert\n"
            "\n"
            "Run under srun or mpirun to write or validate shards on several ranks.\n"
            "Messages go to stderr; DML_LOG_LEVEL=debug shows more.\n");
}

/* ---- option parsing helpers ------------------------------------------- */

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (s[0] == '-' || *s == '\0' || *end != '\0' || errno != 0 || v < min) {
        if (g_rank == 0)
            dml_error("%s '%s': expected a whole number >= %llu", opt, s, (unsigned long long)min);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !(v >= lo && v <= hi)) {
        if (g_rank == 0)
            dml_error("%s '%s': expected a number from %g to %g", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_shape(const char *s, dml_schema_t *schema)
{
    char buf[128], *tok, *save = NULL;
    int d = 0;

    snprintf(buf, sizeof(buf), "%s", s);
    for (tok = strtok_r(buf, "x", &save); tok; tok = strtok_r(NULL, "x", &save)) {
        uint64_t v;
        if (d == DML_DATASET_MAX_RANK || parse_u64("--shape", tok, 1, &v) != 0) {
            if (g_rank == 0)
                dml_error("--shape '%s': expected 1 to %d positive sizes joined by 'x' (784, "
                          "28x28)",
                          s, DML_DATASET_MAX_RANK);
            return -1;
        }
        schema->shape[d++] = v;
    }
    if (d == 0) {
        if (g_rank == 0)
            dml_error("--shape '%s': empty", s);
        return -1;
    }
    schema->rank = d;
    return 0;
}

/* Prints a failure once (on rank 0: every rank has the same detail). */
static int report(dml_status_t st)
{
    if (st != DML_OK && g_rank == 0)
        dml_error("%s", dml_error_message());
    return st == DML_OK ? 0 : 1;
}

/* Rank 0: whether about `bytes` of new files fit where out goes (the free
 * space of its nearest existing ancestor), before anything is written. */
static dml_status_t space_check(const char *out, double bytes)
{
    char dir[4096], *slash;
    struct statvfs sv;
    double avail;

    snprintf(dir, sizeof(dir), "%s", out);
    while (statvfs(dir, &sv) != 0) {
        if ((slash = strrchr(dir, '/')) == NULL) {
            snprintf(dir, sizeof(dir), ".");
            if (statvfs(dir, &sv) != 0)
                return DML_OK; /* nothing to measure against: the writes will say */
            break;
        }
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    avail = (double)sv.f_bavail * (double)sv.f_frsize;
    if (bytes > avail)
        return dml_error_set(DML_ERR_NO_SPACE,
                             "%s: the dataset needs about %.3g GiB and %s has "
                             "%.3g GiB free",
                             out, bytes / 1073741824.0, dir, avail / 1073741824.0);
    return DML_OK;
}

/* Bytes a dataset of n samples takes on disk: features, label, id, a
 * little HDF5 metadata per shard, and the index's statistics (six doubles
 * and a histogram per feature). */
static double dataset_bytes(const dml_schema_t *schema, uint64_t n, uint32_t shards)
{
    const double nf = (double)dml_schema_features(schema);
    return (double)n * (nf * (double)dml_dtype_size(schema->dtype) + 12.0) + 8192.0 * shards +
           nf * 8.0 * (6 + DML_DATASET_HIST_BINS) + 65536.0;
}

/* Rank 0 reports long work every 10 s: which of its shards is done. */
static void progress(const char *out, uint32_t done, uint32_t of, double *last)
{
    const double now = dml__now();

    if (*last == 0)
        *last = now;
    if (g_rank != 0 || now - *last < 10)
        return;
    *last = now;
    dml_info("%s: %u of %u shards written (%.0f%%)", out, done, of, 100.0 * done / of);
}

/* ---- writing datasets from samples in memory --------------------------- */

typedef struct {
    uint64_t shards, shard_size;
    int force;
} shard_opts_t;

static uint32_t shard_count(const shard_opts_t *o, uint64_t n)
{
    uint64_t s = o->shards ? o->shards : (n + o->shard_size - 1) / o->shard_size;
    if (s > n)
        s = n;
    return (uint32_t)(s ? s : 1);
}

#ifdef DML_TEST_HOOKS
/* The tests' hook, built only with configure --enable-test-hooks:
 * DML_DATA_CRASH=shard kills the process with SIGKILL once its first shard
 * is written (a conversion killed midway, its .partial left behind). */
static void crash_after_shard(void)
{
    const char *e = getenv("DML_DATA_CRASH");
    if (e != NULL && strcmp(e, "shard") == 0)
        raise(SIGKILL);
}
#else
static void crash_after_shard(void)
{
}
#endif

/* One dataset a conversion writes: the samples sel[0..n) of an input. */
typedef struct {
    char dir[4200];
    const dml_schema_t *schema;
    const uint8_t *x;
    const int32_t *y;
    uint64_t *sel, n;
    const char *source;
    dml_dataset_writer_t *w;
} job_t;

/* Writes every job's shards (ranks round-robin) and commits the datasets
 * together: where one of them cannot be written, none replaces what is at
 * its place. Every destination was checked before the input was read. */
static dml_status_t write_jobs(job_t *jobs, int njobs, const shard_opts_t *o)
{
    dml_dataset_writer_t *ws[4];
    double bytes = 0, last = 0;
    dml_status_t st = DML_OK;
    int j, k;

    /* The free space for all of them, before anything is written. */
    for (j = 0; j < njobs; j++)
        bytes += dataset_bytes(jobs[j].schema, jobs[j].n, shard_count(o, jobs[j].n));
    if (g_rank == 0)
        st = space_check(jobs[0].dir, bytes);
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return st;
    for (j = 0; j < njobs; j++) {
        st = dml_dataset_writer_create(MPI_COMM_WORLD, jobs[j].dir, jobs[j].schema,
                                       shard_count(o, jobs[j].n), o->force, jobs[j].source,
                                       &jobs[j].w);
        if (st != DML_OK) {
            /* (a destination taken since the check): the others' empty
             * .partial directories are removed; every rank agreed */
            for (k = 0; k < j; k++)
                dml_dataset_writer_discard(jobs[k].w);
            return st;
        }
        ws[j] = jobs[j].w;
    }
    for (j = 0; j < njobs && st == DML_OK; j++) {
        const job_t *jb = &jobs[j];
        const size_t xsz =
            (size_t)dml_schema_features(jb->schema) * dml_dtype_size(jb->schema->dtype);
        uint32_t S = shard_count(o, jb->n), s;
        last = 0;
        for (s = (uint32_t)g_rank; s < S; s += (uint32_t)g_size) {
            uint64_t a = jb->n * s / S, b = jb->n * (s + 1) / S, i;
            uint8_t *sx = malloc((b - a) * xsz);
            int32_t *sy = malloc((b - a) * sizeof(int32_t));
            uint64_t *sid = malloc((b - a) * sizeof(uint64_t));
            if (sx == NULL || sy == NULL || sid == NULL) {
                st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for shard %u", jb->dir, s);
            } else {
                for (i = a; i < b; i++) {
                    memcpy(sx + (i - a) * xsz, jb->x + jb->sel[i] * xsz, xsz);
                    sy[i - a] = jb->y[jb->sel[i]];
                    sid[i - a] = jb->sel[i];
                }
                st = dml_dataset_writer_put(jb->w, s, b - a, sx, sy, sid);
            }
            free(sx);
            free(sy);
            free(sid);
            if (st != DML_OK)
                break; /* the commit tells every rank */
            crash_after_shard();
            progress(jb->dir, s + 1, S, &last);
        }
    }
    /* A failed put is this rank's: the commit agrees on it (and keeps none). */
    st = dml_dataset_writer_commit_all(ws, (size_t)njobs);
    if (st == DML_OK && g_rank == 0)
        for (j = 0; j < njobs; j++)
            dml_info("%s: %llu samples in %u shards", jobs[j].dir, (unsigned long long)jobs[j].n,
                     shard_count(o, jobs[j].n));
    return st;
}

/* Splits 0..n-1 into a seeded validation part and the rest, both sorted. */
static dml_status_t split_val(uint64_t n, double frac, uint64_t seed, uint64_t **train,
                              uint64_t *ntrain, uint64_t **val, uint64_t *nval)
{
    uint64_t nv = (uint64_t)llround(frac * (double)n), i, *perm, *mark;
    dml_status_t st;

    perm = malloc(n * sizeof(uint64_t));
    mark = calloc(n, sizeof(uint64_t));
    *train = malloc(n * sizeof(uint64_t));
    *val = malloc((nv ? nv : 1) * sizeof(uint64_t));
    if (!perm || !mark || !*train || !*val) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory for the validation split");
        goto out;
    }
    st = dml_loader_permutation(DML_SHUFFLE_FULL, seed, 0, n, 0, 0, perm);
    if (st != DML_OK)
        goto out;
    for (i = 0; i < nv; i++)
        mark[perm[i]] = 1;
    *ntrain = *nval = 0;
    for (i = 0; i < n; i++) {
        if (mark[i])
            (*val)[(*nval)++] = i;
        else
            (*train)[(*ntrain)++] = i;
    }
out:
    free(perm);
    free(mark);
    if (st != DML_OK) {
        free(*train);
        free(*val);
        *train = *val = NULL;
    }
    return st;
}

/* The jobs for one input (images or CSV rows x, labels y, n samples): all
 * of it into jobs[0].dir, or, with frac > 0, the seeded split into
 * jobs[0].dir and jobs[1].dir (the destinations are set by the caller);
 * *njobs gets 1 or 2. */
static dml_status_t plan_input(job_t *jobs, const dml_schema_t *schema, const uint8_t *x,
                               const int32_t *y, uint64_t n, double frac, uint64_t seed,
                               const char *source, int *njobs)
{
    uint64_t *train = NULL, *val = NULL, ntrain = n, nval = 0, i;
    int j;

    if (frac > 0) {
        dml_status_t st = split_val(n, frac, seed, &train, &ntrain, &val, &nval);
        if (st != DML_OK)
            return st;
        if (nval == 0 || ntrain == 0) {
            free(train);
            free(val);
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "--val-fraction %g of %llu samples leaves "
                                 "an empty part",
                                 frac, (unsigned long long)n);
        }
    } else {
        train = malloc(n * sizeof(uint64_t));
        if (train == NULL)
            return dml_error_set(DML_ERR_NO_MEMORY, "no memory");
        for (i = 0; i < n; i++)
            train[i] = i;
    }
    jobs[0].sel = train;
    jobs[0].n = ntrain;
    jobs[1].sel = val;
    jobs[1].n = nval;
    for (j = 0; j < 2; j++) {
        jobs[j].schema = schema;
        jobs[j].x = x;
        jobs[j].y = y;
        jobs[j].source = source;
    }
    *njobs = nval > 0 ? 2 : 1;
    return DML_OK;
}

/* Rank 0 checks every destination before any input is read or anything
 * written; all ranks agree. */
static dml_status_t check_destinations(char (*dirs)[4200], int n, int force)
{
    dml_status_t st = DML_OK;
    int j;

    for (j = 0; j < n && st == DML_OK && g_rank == 0; j++)
        st = dml_dataset_writer_check(dirs[j], force);
    return dml_mpi_agree(MPI_COMM_WORLD, st, NULL);
}

/* dml_csv_read's progress, printed by rank 0 every 10 s. */
typedef struct {
    const char *path;
    double last;
} csv_progress_t;

static void csv_progress(void *arg, uint64_t done, uint64_t total, uint64_t rows)
{
    csv_progress_t *cp = arg;
    const double now = dml__now();

    if (g_rank != 0 || now - cp->last < 10)
        return;
    cp->last = now;
    if (total > 0)
        dml_info("%s: %.3g of %.3g MiB read (%.0f%%), %llu rows", cp->path, done / 1048576.0,
                 total / 1048576.0, 100.0 * (double)done / (double)total, (unsigned long long)rows);
    else
        dml_info("%s: %.3g MiB read, %llu rows", cp->path, done / 1048576.0,
                 (unsigned long long)rows);
}

/* Reads an IDX image/label pair into x (uint8) and y. */
static dml_status_t read_idx_pair(const char *images, const char *labels, uint8_t **x, int32_t **y,
                                  uint64_t *n, dml_schema_t *schema)
{
    uint64_t di[3] = {0}, dl[3] = {0}, i;
    uint8_t *lab = NULL;
    int ni, nl, maxl = 0;
    dml_status_t st;

    st = dml_idx_read(images, x, di, &ni);
    if (st != DML_OK)
        return st;
    st = dml_idx_read(labels, &lab, dl, &nl);
    if (st != DML_OK)
        goto err;
    if (ni < 2 || nl != 1) {
        st = dml_error_set(DML_ERR_FORMAT,
                           "%s: expected images with 2 or 3 dimensions and labels "
                           "with 1 (got %d and %d)",
                           ni < 2 ? images : labels, ni, nl);
        goto err;
    }
    if (di[0] != dl[0]) {
        st = dml_error_set(DML_ERR_MISMATCH, "%s has %llu images but %s has %llu labels", images,
                           (unsigned long long)di[0], labels, (unsigned long long)dl[0]);
        goto err;
    }
    *n = di[0];
    *y = malloc(*n * sizeof(int32_t));
    if (*y == NULL) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory for labels");
        goto err;
    }
    for (i = 0; i < *n; i++) {
        (*y)[i] = lab[i];
        if (lab[i] > maxl)
            maxl = lab[i];
    }
    free(lab);
    schema->dtype = DML_DTYPE_UINT8;
    schema->rank = ni - 1;
    schema->shape[0] = di[1];
    schema->shape[1] = ni == 3 ? di[2] : 0;
    if (schema->num_classes == 0)
        schema->num_classes = (uint32_t)maxl + 1;
    return DML_OK;
err:
    free(*x);
    *x = NULL;
    free(lab);
    return st;
}

/* Class numbers keep their value, so labels 0 and 5 make six classes, four
 * of them empty: say so, loudly, since it is rarely meant. */
static void warn_empty_classes(const char *csv, const char *col, const int32_t *y, uint64_t n,
                               uint32_t classes)
{
    uint64_t *count = calloc(classes, sizeof(uint64_t)), i, empty = 0;
    char list[256] = "";
    size_t used = 0;
    uint32_t c;

    if (count == NULL)
        return;
    for (i = 0; i < n; i++)
        count[y[i]]++;
    for (c = 0; c < classes; c++)
        if (count[c] == 0 && empty++ < 12 && used < sizeof(list) - 16)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u", used ? ", " : "", c);
    if (empty > 0)
        dml_warn("%s: column \"%s\" holds class numbers up to %u, and %llu of the %u classes "
                 "have no sample (%s%s): class numbers keep their value; renumber them if that "
                 "is not meant",
                 csv, col, classes - 1, (unsigned long long)empty, classes, list,
                 empty > 12 ? ", ..." : "");
    free(count);
}

static int cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {{"fashion-mnist", optional_argument, 0, 'F'},
                                         {"idx-images", required_argument, 0, 'i'},
                                         {"idx-labels", required_argument, 0, 'l'},
                                         {"csv", required_argument, 0, 'c'},
                                         {"label-column", required_argument, 0, 'L'},
                                         {"out", required_argument, 0, 'o'},
                                         {"shards", required_argument, 0, 's'},
                                         {"shard-size", required_argument, 0, 'z'},
                                         {"val-fraction", required_argument, 0, 'v'},
                                         {"seed", required_argument, 0, 'S'},
                                         {"force", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *fm = NULL, *images = NULL, *labels = NULL, *csv = NULL, *labcol = NULL;
    const char *out = NULL;
    shard_opts_t o = {0, 10000, 0};
    double frac = 0;
    uint64_t seed = 0;
    int c, sources;
    dml_status_t st = DML_OK;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'F':
            fm = optarg ? optarg : FMNIST_DIR;
            break;
        case 'i':
            images = optarg;
            break;
        case 'l':
            labels = optarg;
            break;
        case 'c':
            csv = optarg;
            break;
        case 'L':
            labcol = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 's':
            if (parse_u64("--shards", optarg, 1, &o.shards))
                return 2;
            break;
        case 'z':
            if (parse_u64("--shard-size", optarg, 1, &o.shard_size))
                return 2;
            break;
        case 'v':
            if (parse_double("--val-fraction", optarg, 0, 0.9, &frac))
                return 2;
            break;
        case 'S':
            if (parse_u64("--seed", optarg, 0, &seed))
                return 2;
            break;
        case 'f':
            o.force = 1;
            break;
        case 'h':
            if (g_rank == 0)
                usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    sources = (fm != NULL) + (images != NULL || labels != NULL) + (csv != NULL);
    if (sources != 1 || out == NULL || (images != NULL) != (labels != NULL) ||
        (csv != NULL) != (labcol != NULL) || optind != argc) {
        if (g_rank == 0)
            dml_error("convert needs --out and exactly one source: --fashion-mnist, "
                      "--idx-images with --idx-labels, or --csv with --label-column (see --help)");
        return 2;
    }

    {
        /* Fashion-MNIST: OUT/train (OUT/val) and OUT/test; one IDX pair or a
         * CSV: OUT (and OUT.val). */
        const char *parts[2] = {"train", "t10k"};
        const int np = fm ? 2 : 1;
        char dirs[3][4200], src[2][8300];
        int ndirs = 0, njobs = 0, p, k, nj;
        dml_schema_t schema[2];
        uint8_t *x[2] = {NULL, NULL};
        float *xf = NULL;
        int32_t *y[2] = {NULL, NULL};
        uint64_t n[2] = {0, 0}, nf = 0;
        job_t jobs[4];

        memset(jobs, 0, sizeof(jobs));
        memset(schema, 0, sizeof(schema));
        if (fm) {
            snprintf(dirs[0], sizeof(dirs[0]), "%s/train", out);
            snprintf(dirs[1], sizeof(dirs[1]), "%s/val", out);
            snprintf(dirs[2], sizeof(dirs[2]), "%s/test", out);
            if (frac == 0)
                memmove(dirs[1], dirs[2], sizeof(dirs[1]));
            ndirs = frac > 0 ? 3 : 2;
        } else {
            snprintf(dirs[0], sizeof(dirs[0]), "%s", out);
            snprintf(dirs[1], sizeof(dirs[1]), "%s.val", out);
            ndirs = frac > 0 ? 2 : 1;
        }
        /* Every destination first: a blocked one is found before the
         * input is read, and nothing is replaced. */
        st = check_destinations(dirs, ndirs, o.force);

        if (st == DML_OK && csv == NULL) {
            for (p = 0; p < np && st == DML_OK; p++) {
                char img[4096], lab[4096];
                if (fm) {
                    snprintf(img, sizeof(img), "%s/%s-images-idx3-ubyte.gz", fm, parts[p]);
                    snprintf(lab, sizeof(lab), "%s/%s-labels-idx1-ubyte.gz", fm, parts[p]);
                    schema[p].num_classes = 10;
                    schema[p].class_names =
                        (char(*)[DML_DATASET_NAME_MAX])calloc(10, DML_DATASET_NAME_MAX);
                    if (schema[p].class_names)
                        for (c = 0; c < 10; c++)
                            snprintf(schema[p].class_names[c], DML_DATASET_NAME_MAX, "%s",
                                     fmnist_classes[c]);
                } else {
                    snprintf(img, sizeof(img), "%s", images);
                    snprintf(lab, sizeof(lab), "%s", labels);
                }
                snprintf(src[p], sizeof(src[p]), "idx:%s,%s", img, lab);
                st = dml_mpi_agree(MPI_COMM_WORLD,
                                   read_idx_pair(img, lab, &x[p], &y[p], &n[p], &schema[p]), NULL);
            }
            for (p = 0; p < np && st == DML_OK; p++) {
                st = plan_input(jobs + njobs, &schema[p], x[p], y[p], n[p], p == 0 ? frac : 0, seed,
                                src[p], &nj);
                if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) == DML_OK)
                    njobs += nj;
            }
        } else if (st == DML_OK) {
            csv_progress_t cp = {csv, 0};
            char(*cnames)[DML_DATASET_NAME_MAX] = NULL;

            cp.last = dml__now();
            st = dml_mpi_agree(MPI_COMM_WORLD,
                               dml_csv_read(csv, labcol, &xf, &y[0], &n[0], &nf,
                                            &schema[0].num_classes, &cnames, csv_progress, &cp),
                               NULL);
            if (st == DML_OK && cnames == NULL && g_rank == 0)
                warn_empty_classes(csv, labcol, y[0], n[0], schema[0].num_classes);
            if (st == DML_OK) {
                schema[0].dtype = DML_DTYPE_FLOAT32;
                schema[0].rank = 1;
                schema[0].shape[0] = nf;
                schema[0].class_names = cnames;
                snprintf(src[0], sizeof(src[0]), "csv:%s", csv);
                st = plan_input(jobs, &schema[0], (const uint8_t *)xf, y[0], n[0], frac, seed,
                                src[0], &nj);
                if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) == DML_OK)
                    njobs = nj;
            } else {
                free(cnames);
            }
        }
        if (st == DML_OK) {
            for (k = 0; k < njobs; k++)
                snprintf(jobs[k].dir, sizeof(jobs[k].dir), "%s", dirs[k]);
            st = write_jobs(jobs, njobs, &o);
        }
        for (k = 0; k < 4; k++)
            free(jobs[k].sel);
        for (p = 0; p < 2; p++) {
            free(x[p]);
            free(y[p]);
            free(schema[p].class_names);
        }
        free(xf);
    }
    return report(st);
}

/* ---- synth ------------------------------------------------------------- */

/* A per-sample generator seeded by (seed, sample id): the data does not
 * depend on how many ranks write it. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Each class has a random centre per feature; a sample is its centre plus
 * triangular noise (the sum of two uniforms: cheap and bounded). */
static void synth_sample(uint64_t seed, uint64_t id, uint32_t classes, uint64_t nf,
                         const float *centres, double noise, dml_dtype_t dtype, void *out,
                         int32_t *label)
{
    uint64_t state = mix64(seed * 0x9e3779b97f4a7c15ULL + id + 1), f, r = 0;
    uint32_t c = (uint32_t)(mix64(state ^ 0x5851f42d4c957f2dULL) % classes);
    const float *centre = centres + (uint64_t)c * nf;

    *label = (int32_t)c;
    for (f = 0; f < nf; f++) {
        double u, v;
        if ((f & 1) == 0)
            r = mix64(state += 0x9e3779b97f4a7c15ULL);
        u = (double)(uint32_t)(r >> ((f & 1) * 32)) / 4294967296.0;
        v = (double)(uint16_t)(r >> ((f & 1) * 32 + 8)) / 65536.0;
        u = centre[f] + noise * (u + v - 1.0);
        if (dtype == DML_DTYPE_UINT8) {
            double b = u * 255.0;
            ((uint8_t *)out)[f] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b + 0.5);
        } else {
            ((float *)out)[f] = (float)u;
        }
    }
}

static int cmd_synth(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"samples", required_argument, 0, 'n'},
                                         {"shape", required_argument, 0, 'p'},
                                         {"features", required_argument, 0, 'p'},
                                         {"classes", required_argument, 0, 'C'},
                                         {"dtype", required_argument, 0, 'd'},
                                         {"noise", required_argument, 0, 'N'},
                                         {"seed", required_argument, 0, 'S'},
                                         {"shards", required_argument, 0, 's'},
                                         {"shard-size", required_argument, 0, 'z'},
                                         {"force", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    shard_opts_t o = {0, 10000, 0};
    uint64_t n = 0, seed = 0, classes = 10, nf, k;
    double noise = 0.5;
    dml_schema_t schema;
    dml_dataset_writer_t *w;
    float *centres = NULL;
    dml_status_t st = DML_OK;
    uint32_t S, s;
    char src[256];
    double last = 0;
    int c;

    memset(&schema, 0, sizeof(schema));
    schema.dtype = DML_DTYPE_UINT8;
    schema.rank = 1;
    schema.shape[0] = 784;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'n':
            if (parse_u64("--samples", optarg, 1, &n))
                return 2;
            break;
        case 'p':
            if (parse_shape(optarg, &schema))
                return 2;
            break;
        case 'C':
            if (parse_u64("--classes", optarg, 1, &classes) || classes > 65536)
                return 2;
            break;
        case 'd':
            if (strcmp(optarg, "uint8") == 0)
                schema.dtype = DML_DTYPE_UINT8;
            else if (strcmp(optarg, "float32") == 0)
                schema.dtype = DML_DTYPE_FLOAT32;
            else {
                if (g_rank == 0)
                    dml_error("--dtype '%s': expected uint8 or float32", optarg);
                return 2;
            }
            break;
        case 'N':
            if (parse_double("--noise", optarg, 0, 1, &noise))
                return 2;
            break;
        case 'S':
            if (parse_u64("--seed", optarg, 0, &seed))
                return 2;
            break;
        case 's':
            if (parse_u64("--shards", optarg, 1, &o.shards))
                return 2;
            break;
        case 'z':
            if (parse_u64("--shard-size", optarg, 1, &o.shard_size))
                return 2;
            break;
        case 'f':
            o.force = 1;
            break;
        case 'h':
            if (g_rank == 0)
                usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (out == NULL || n == 0 || optind != argc) {
        if (g_rank == 0)
            dml_error("synth needs --out DIR and --samples N (see --help)");
        return 2;
    }
    schema.num_classes = (uint32_t)classes;
    nf = dml_schema_features(&schema);
    S = shard_count(&o, n);
    if (g_rank == 0)
        st = space_check(out, dataset_bytes(&schema, n, S));
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return report(st);
    snprintf(src, sizeof(src), "synth:seed=%llu,classes=%llu,noise=%g", (unsigned long long)seed,
             (unsigned long long)classes, noise);

    centres = malloc(classes * nf * sizeof(float));
    if (centres == NULL)
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory for %llu class centres",
                           (unsigned long long)classes);
    else
        for (k = 0; k < classes * nf; k++)
            centres[k] = (float)(0.2 + 0.6 * (double)(mix64(seed ^ mix64(k + 7)) >> 11) /
                                           9007199254740992.0);
    st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL);
    if (st != DML_OK) {
        free(centres);
        return report(st);
    }
    st = dml_dataset_writer_create(MPI_COMM_WORLD, out, &schema, S, o.force, src, &w);
    if (st != DML_OK) {
        free(centres);
        return report(st);
    }
    for (s = (uint32_t)g_rank; s < S && st == DML_OK; s += (uint32_t)g_size) {
        uint64_t a = n * s / S, b = n * (s + 1) / S, i;
        size_t xsz = (size_t)nf * dml_dtype_size(schema.dtype);
        uint8_t *x = malloc((b - a) * xsz);
        int32_t *y = malloc((b - a) * sizeof(int32_t));
        uint64_t *id = malloc((b - a) * sizeof(uint64_t));
        if (x == NULL || y == NULL || id == NULL) {
            st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for shard %u", out, s);
        } else {
            for (i = a; i < b; i++) {
                id[i - a] = i;
                synth_sample(seed, i, (uint32_t)classes, nf, centres, noise, schema.dtype,
                             x + (i - a) * xsz, &y[i - a]);
            }
            st = dml_dataset_writer_put(w, s, b - a, x, y, id);
        }
        free(x);
        free(y);
        free(id);
        if (st == DML_OK)
            crash_after_shard();
        progress(out, s + 1, S, &last);
    }
    free(centres);
    st = dml_dataset_writer_commit(w);
    if (st == DML_OK && g_rank == 0)
        dml_info("%s: %llu synthetic samples (%llu features, %llu classes) in %u shards", out,
                 (unsigned long long)n, (unsigned long long)nf, (unsigned long long)classes, S);
    return report(st);
}

/* ---- inspect and validate ---------------------------------------------- */

static int cmd_inspect(int argc, char **argv)
{
    dml_dataset_t *ds;
    const dml_schema_t *sc;
    const dml_stats_t *st;
    dml_status_t s;
    uint64_t total = 0;
    uint32_t i;
    int d;

    if (argc != 2 || argv[1][0] == '-') {
        if (g_rank == 0)
            dml_error("inspect takes one dataset directory (see --help)");
        return 2;
    }
    if (g_rank != 0)
        return 0;
    s = dml_dataset_open(argv[1], &ds);
    if (s != DML_OK) {
        dml_error("%s", dml_error_message());
        return 1;
    }
    sc = dml_dataset_schema(ds);
    st = dml_dataset_stats(ds);
    printf("dataset:      %s\n", dml_dataset_dir(ds));
    printf("format:       %s version %d\n", DML_DATASET_FORMAT, DML_DATASET_VERSION);
    printf("source:       %s\n", dml_dataset_source(ds));
    printf("content hash: %s\n", dml_dataset_content_hash(ds));
    printf("samples:      %llu in %u shards\n", (unsigned long long)dml_dataset_samples(ds),
           dml_dataset_shards(ds));
    printf("features:     %s, shape ", dml_dtype_name(sc->dtype));
    for (d = 0; d < sc->rank; d++)
        printf("%s%llu", d ? "x" : "", (unsigned long long)sc->shape[d]);
    printf(" (%llu per sample)\n", (unsigned long long)dml_schema_features(sc));
    /* what a model's first layer sees (dml-train --model, docs/training.md) */
    if (sc->rank == 1)
        printf("model input:  %llu values (flat: dense layers, mlp:)\n",
               (unsigned long long)sc->shape[0]);
    else
        printf("model input:  %llux%llux%llu (channels x height x width)\n",
               (unsigned long long)(sc->rank == 3 ? sc->shape[0] : 1),
               (unsigned long long)sc->shape[sc->rank == 3 ? 1 : 0],
               (unsigned long long)sc->shape[sc->rank == 3 ? 2 : 1]);
    printf("statistics:   mean %.4g, std %.4g (over all features)\n", st->global_mean,
           st->global_std);
    printf("classes:      %u\n", sc->num_classes);
    for (i = 0; i < sc->num_classes; i++)
        printf("  %3u %-24s %10llu samples\n", i, sc->class_names[i],
               (unsigned long long)st->label_counts[i]);
    printf("shards:\n");
    for (i = 0; i < dml_dataset_shards(ds); i++) {
        printf("  %-20s %10llu samples  crc32 %08x\n", dml_dataset_shard_name(ds, i),
               (unsigned long long)dml_dataset_shard_samples(ds, i), dml_dataset_shard_crc(ds, i));
        total += dml_dataset_shard_samples(ds, i);
    }
    dml_dataset_close(ds);
    return total > 0 ? 0 : 1;
}

static void print_problem(void *arg, dml_status_t status, const char *problem)
{
    (void)arg;
    (void)status;
    dml_error("%s", problem);
}

static int cmd_validate(int argc, char **argv)
{
    int a, bad = 0;

    if (argc < 2) {
        if (g_rank == 0)
            dml_error("validate takes one or more dataset directories (see --help)");
        return 2;
    }
    for (a = 1; a < argc; a++) {
        dml_dataset_t *ds = NULL;
        uint64_t mine = 0, all = 0;
        dml_status_t st;
        uint32_t s;

        /* Every rank reads the index; a broken one is reported once. */
        st = dml_mpi_agree(MPI_COMM_WORLD, dml_dataset_open(argv[a], &ds), NULL);
        if (st != DML_OK) {
            if (g_rank == 0)
                dml_error("%s", dml_error_message());
            dml_dataset_close(ds);
            bad = 1;
            continue;
        }
        /* Ranks split the shards; each names the problems it finds. */
        for (s = (uint32_t)g_rank; s < dml_dataset_shards(ds); s += (uint32_t)g_size) {
            uint64_t p = 0;
            dml_dataset_validate(ds, s, 1, print_problem, NULL, &p);
            mine += p;
        }
        MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        if (g_rank == 0) {
            if (all)
                dml_error("%s: %llu problems found; the dataset is not sound", argv[a],
                          (unsigned long long)all);
            else
                printf("%s: sound: %llu samples in %u shards, content hash %s\n", argv[a],
                       (unsigned long long)dml_dataset_samples(ds), dml_dataset_shards(ds),
                       dml_dataset_content_hash(ds));
        }
        bad |= all != 0;
        dml_dataset_close(ds);
    }
    return bad;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    int rc;

    dml_log_init("dml-data", -1);
    if (dml_tool_launch_check("dml-data"))
        return 2;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    dml_tool_hdf5_quiet();
    dml_log_set_rank(g_size > 1 ? g_rank : -1); /* no rank in a plain run */

    if (cmd == NULL) {
        if (g_rank == 0)
            usage(stderr);
        rc = 2;
    } else if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        if (g_rank == 0)
            usage(stdout);
        rc = 0;
    } else if (strcmp(cmd, "convert") == 0) {
        rc = cmd_convert(argc - 1, argv + 1);
    } else if (strcmp(cmd, "synth") == 0) {
        rc = cmd_synth(argc - 1, argv + 1);
    } else if (strcmp(cmd, "inspect") == 0) {
        rc = cmd_inspect(argc - 1, argv + 1);
    } else if (strcmp(cmd, "validate") == 0) {
        rc = cmd_validate(argc - 1, argv + 1);
    } else {
        if (g_rank == 0)
            dml_error("unknown command '%s' (convert, synth, inspect, validate; see --help)", cmd);
        rc = 2;
    }
    /* Usage errors are found identically on every rank; the rest agreed. */
    MPI_Finalize();
    return rc;
}
