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
#include "dml_json.h"
#include "dml_log.h"
#include "dml_mpi.h"
#include "dml_tool.h"
#include "dml_clock.h"

#include <errno.h>
#include <jansson.h>
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
            "inspect and validate options:\n"
            "  --json                  for scripts: one JSON object on stdout (inspect: the\n"
            "                          dataset's record; validate: {\"datasets\": [{\"path\",\n"
            "                          \"sound\", \"problems\", \"samples\", \"shards\",\n"
            "                          \"content_hash\"} or {\"path\", \"sound\": false, "
            "\"error\"}]})\n"
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

/* ---- convert ------------------------------------------------------------ */

/* The kinds of input convert reads; each is one reader in convert_sources. */
typedef enum { SRC_FASHION_MNIST, SRC_IDX, SRC_CSV } convert_kind_t;

/* What `dml-data convert` was asked to do. */
typedef struct {
    convert_kind_t kind;
    const char *fm, *images, *labels, *csv, *labcol, *out;
    shard_opts_t o;
    double frac;
    uint64_t seed;
} convert_opts_t;

/* The inputs a reader leaves in memory (up to two parts: Fashion-MNIST's
 * training and test sets), and the jobs planned over them; all freed by
 * convert_input_free. */
typedef struct {
    int nparts;
    dml_schema_t schema[2];
    uint8_t *x[2]; /* uint8 images, or (CSV) float32 rows */
    int32_t *y[2];
    uint64_t n[2];
    char src[2][8300];
    job_t jobs[4];
    int njobs;
} convert_input_t;

/* Returns -1 when the options are sound and convert goes on, else the
 * exit code (0 after --help). */
static int convert_parse(int argc, char **argv, convert_opts_t *co)
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
    int c, sources;

    memset(co, 0, sizeof(*co));
    co->o.shard_size = 10000;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'F':
            co->fm = optarg ? optarg : FMNIST_DIR;
            break;
        case 'i':
            co->images = optarg;
            break;
        case 'l':
            co->labels = optarg;
            break;
        case 'c':
            co->csv = optarg;
            break;
        case 'L':
            co->labcol = optarg;
            break;
        case 'o':
            co->out = optarg;
            break;
        case 's':
            if (parse_u64("--shards", optarg, 1, &co->o.shards))
                return 2;
            break;
        case 'z':
            if (parse_u64("--shard-size", optarg, 1, &co->o.shard_size))
                return 2;
            break;
        case 'v':
            if (parse_double("--val-fraction", optarg, 0, 0.9, &co->frac))
                return 2;
            break;
        case 'S':
            if (parse_u64("--seed", optarg, 0, &co->seed))
                return 2;
            break;
        case 'f':
            co->o.force = 1;
            break;
        case 'h':
            if (g_rank == 0)
                usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    sources = (co->fm != NULL) + (co->images != NULL || co->labels != NULL) + (co->csv != NULL);
    if (sources != 1 || co->out == NULL || (co->images != NULL) != (co->labels != NULL) ||
        (co->csv != NULL) != (co->labcol != NULL) || optind != argc) {
        if (g_rank == 0)
            dml_error("convert needs --out and exactly one source: --fashion-mnist, "
                      "--idx-images with --idx-labels, or --csv with --label-column (see --help)");
        return 2;
    }
    co->kind = co->fm ? SRC_FASHION_MNIST : co->csv ? SRC_CSV : SRC_IDX;
    return -1;
}

/* Where convert writes, in the order of the jobs: Fashion-MNIST makes
 * OUT/train (OUT/val) and OUT/test; any other source OUT (and OUT.val).
 * Returns how many. */
static int convert_destinations(const convert_opts_t *co, char (*dirs)[4200])
{
    if (co->kind == SRC_FASHION_MNIST) {
        snprintf(dirs[0], sizeof(dirs[0]), "%s/train", co->out);
        snprintf(dirs[1], sizeof(dirs[1]), "%s/val", co->out);
        snprintf(dirs[2], sizeof(dirs[2]), "%s/test", co->out);
        if (co->frac == 0)
            memmove(dirs[1], dirs[2], sizeof(dirs[1]));
        return co->frac > 0 ? 3 : 2;
    }
    snprintf(dirs[0], sizeof(dirs[0]), "%s", co->out);
    snprintf(dirs[1], sizeof(dirs[1]), "%s.val", co->out);
    return co->frac > 0 ? 2 : 1;
}

/* Reads one IDX pair as input part p; every rank agrees on the outcome. */
static dml_status_t convert_idx_part(const char *img, const char *lab, int p, convert_input_t *in)
{
    snprintf(in->src[p], sizeof(in->src[p]), "idx:%s,%s", img, lab);
    return dml_mpi_agree(MPI_COMM_WORLD,
                         read_idx_pair(img, lab, &in->x[p], &in->y[p], &in->n[p], &in->schema[p]),
                         NULL);
}

/* Fashion-MNIST: its training and test IDX pairs, with the published class
 * names. */
static dml_status_t convert_read_fashion_mnist(const convert_opts_t *co, convert_input_t *in)
{
    static const char *const parts[2] = {"train", "t10k"};
    dml_status_t st = DML_OK;
    int p, c;

    in->nparts = 2;
    for (p = 0; p < 2 && st == DML_OK; p++) {
        char img[4096], lab[4096];
        snprintf(img, sizeof(img), "%s/%s-images-idx3-ubyte.gz", co->fm, parts[p]);
        snprintf(lab, sizeof(lab), "%s/%s-labels-idx1-ubyte.gz", co->fm, parts[p]);
        in->schema[p].num_classes = 10;
        in->schema[p].class_names = (char(*)[DML_DATASET_NAME_MAX])calloc(10, DML_DATASET_NAME_MAX);
        if (in->schema[p].class_names)
            for (c = 0; c < 10; c++)
                snprintf(in->schema[p].class_names[c], DML_DATASET_NAME_MAX, "%s",
                         fmnist_classes[c]);
        st = convert_idx_part(img, lab, p, in);
    }
    return st;
}

/* One IDX image/label pair. */
static dml_status_t convert_read_idx(const convert_opts_t *co, convert_input_t *in)
{
    char img[4096], lab[4096];

    in->nparts = 1;
    snprintf(img, sizeof(img), "%s", co->images);
    snprintf(lab, sizeof(lab), "%s", co->labels);
    return convert_idx_part(img, lab, 0, in);
}

/* A CSV file with a header: float32 features, the label column's class
 * numbers or names. */
static dml_status_t convert_read_csv(const convert_opts_t *co, convert_input_t *in)
{
    csv_progress_t cp = {co->csv, 0};
    char(*cnames)[DML_DATASET_NAME_MAX] = NULL;
    float *xf = NULL;
    uint64_t nf = 0;
    dml_status_t st;

    in->nparts = 1;
    cp.last = dml__now();
    st = dml_mpi_agree(MPI_COMM_WORLD,
                       dml_csv_read(co->csv, co->labcol, &xf, &in->y[0], &in->n[0], &nf,
                                    &in->schema[0].num_classes, &cnames, csv_progress, &cp),
                       NULL);
    in->x[0] = (uint8_t *)xf;
    if (st != DML_OK) {
        free(cnames);
        return st;
    }
    if (cnames == NULL && g_rank == 0)
        warn_empty_classes(co->csv, co->labcol, in->y[0], in->n[0], in->schema[0].num_classes);
    in->schema[0].dtype = DML_DTYPE_FLOAT32;
    in->schema[0].rank = 1;
    in->schema[0].shape[0] = nf;
    in->schema[0].class_names = cnames;
    snprintf(in->src[0], sizeof(in->src[0]), "csv:%s", co->csv);
    return DML_OK;
}

/* A reader of one kind of input: it reads its parts into memory, the same
 * on every rank, and all ranks agree on the outcome. A new kind of input is
 * one more reader here and one more option in convert_parse. */
typedef dml_status_t (*convert_reader_t)(const convert_opts_t *co, convert_input_t *in);

static const convert_reader_t convert_sources[] = {
    [SRC_FASHION_MNIST] = convert_read_fashion_mnist,
    [SRC_IDX] = convert_read_idx,
    [SRC_CSV] = convert_read_csv,
};

/* The jobs over what was read: the validation split comes from the first
 * part (the training data) only. */
static dml_status_t convert_plan(const convert_opts_t *co, convert_input_t *in)
{
    dml_status_t st = DML_OK;
    int p, nj = 0;

    for (p = 0; p < in->nparts && st == DML_OK; p++) {
        st = plan_input(in->jobs + in->njobs, &in->schema[p], in->x[p], in->y[p], in->n[p],
                        p == 0 ? co->frac : 0, co->seed, in->src[p], &nj);
        if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) == DML_OK)
            in->njobs += nj;
    }
    return st;
}

static void convert_input_free(convert_input_t *in)
{
    int k;

    for (k = 0; k < 4; k++)
        free(in->jobs[k].sel);
    for (k = 0; k < 2; k++) {
        free(in->x[k]);
        free(in->y[k]);
        free(in->schema[k].class_names);
    }
}

static int cmd_convert(int argc, char **argv)
{
    convert_opts_t co;
    convert_input_t in;
    char dirs[3][4200];
    int rc, ndirs, k;
    dml_status_t st;
    _Static_assert(sizeof(in.jobs[0].dir) == sizeof(dirs[0]), "a destination is copied whole");

    if ((rc = convert_parse(argc, argv, &co)) >= 0)
        return rc;
    memset(&in, 0, sizeof(in));
    ndirs = convert_destinations(&co, dirs);
    /* Every destination first: a blocked one is found before the input is
     * read, and nothing is replaced. */
    st = check_destinations(dirs, ndirs, co.o.force);
    if (st == DML_OK)
        st = convert_sources[co.kind](&co, &in);
    if (st == DML_OK)
        st = convert_plan(&co, &in);
    if (st == DML_OK) {
        for (k = 0; k < in.njobs; k++)
            memcpy(in.jobs[k].dir, dirs[k], sizeof(in.jobs[k].dir));
        st = write_jobs(in.jobs, in.njobs, &co.o);
    }
    convert_input_free(&in);
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

/* What `dml-data synth` was asked to make. */
typedef struct {
    const char *out;
    shard_opts_t o;
    uint64_t n, seed, classes;
    double noise;
    dml_schema_t schema;
} synth_opts_t;

/* Returns -1 when the options are sound and synth goes on, else the exit
 * code (0 after --help). */
static int synth_parse(int argc, char **argv, synth_opts_t *so)
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
    int c;

    memset(so, 0, sizeof(*so));
    so->o.shard_size = 10000;
    so->classes = 10;
    so->noise = 0.5;
    so->schema.dtype = DML_DTYPE_UINT8;
    so->schema.rank = 1;
    so->schema.shape[0] = 784;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            so->out = optarg;
            break;
        case 'n':
            if (parse_u64("--samples", optarg, 1, &so->n))
                return 2;
            break;
        case 'p':
            if (parse_shape(optarg, &so->schema))
                return 2;
            break;
        case 'C':
            if (parse_u64("--classes", optarg, 1, &so->classes) || so->classes > 65536)
                return 2;
            break;
        case 'd':
            if (strcmp(optarg, "uint8") == 0)
                so->schema.dtype = DML_DTYPE_UINT8;
            else if (strcmp(optarg, "float32") == 0)
                so->schema.dtype = DML_DTYPE_FLOAT32;
            else {
                if (g_rank == 0)
                    dml_error("--dtype '%s': expected uint8 or float32", optarg);
                return 2;
            }
            break;
        case 'N':
            if (parse_double("--noise", optarg, 0, 1, &so->noise))
                return 2;
            break;
        case 'S':
            if (parse_u64("--seed", optarg, 0, &so->seed))
                return 2;
            break;
        case 's':
            if (parse_u64("--shards", optarg, 1, &so->o.shards))
                return 2;
            break;
        case 'z':
            if (parse_u64("--shard-size", optarg, 1, &so->o.shard_size))
                return 2;
            break;
        case 'f':
            so->o.force = 1;
            break;
        case 'h':
            if (g_rank == 0)
                usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (so->out == NULL || so->n == 0 || optind != argc) {
        if (g_rank == 0)
            dml_error("synth needs --out DIR and --samples N (see --help)");
        return 2;
    }
    so->schema.num_classes = (uint32_t)so->classes;
    return -1;
}

/* Every class's centre, nf features each, drawn from the seed alone (the
 * same on every rank); all ranks agree on the outcome. */
static dml_status_t synth_centres(const synth_opts_t *so, uint64_t nf, float **centres_out)
{
    float *centres = malloc(so->classes * nf * sizeof(float));
    dml_status_t st = DML_OK;
    uint64_t k;

    if (centres == NULL)
        st = dml_error_set(DML_ERR_NO_MEMORY, "no memory for %llu class centres",
                           (unsigned long long)so->classes);
    else
        for (k = 0; k < so->classes * nf; k++)
            centres[k] = (float)(0.2 + 0.6 * (double)(mix64(so->seed ^ mix64(k + 7)) >> 11) /
                                           9007199254740992.0);
    st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL);
    if (st != DML_OK) {
        free(centres);
        return st;
    }
    *centres_out = centres;
    return DML_OK;
}

/* Generates and puts this rank's shards (ranks round-robin) of S. It stops
 * at the first failure, which stays with the writer: the commit agrees on
 * it. */
static void synth_put_shards(const synth_opts_t *so, dml_dataset_writer_t *w, const float *centres,
                             uint64_t nf, uint32_t S)
{
    const size_t xsz = (size_t)nf * dml_dtype_size(so->schema.dtype);
    const uint64_t n = so->n;
    dml_status_t st = DML_OK;
    double last = 0;
    uint32_t s;

    for (s = (uint32_t)g_rank; s < S && st == DML_OK; s += (uint32_t)g_size) {
        uint64_t a = n * s / S, b = n * (s + 1) / S, i;
        uint8_t *x = malloc((b - a) * xsz);
        int32_t *y = malloc((b - a) * sizeof(int32_t));
        uint64_t *id = malloc((b - a) * sizeof(uint64_t));
        if (x == NULL || y == NULL || id == NULL) {
            st = dml_error_set(DML_ERR_NO_MEMORY, "%s: no memory for shard %u", so->out, s);
        } else {
            for (i = a; i < b; i++) {
                id[i - a] = i;
                synth_sample(so->seed, i, (uint32_t)so->classes, nf, centres, so->noise,
                             so->schema.dtype, x + (i - a) * xsz, &y[i - a]);
            }
            st = dml_dataset_writer_put(w, s, b - a, x, y, id);
        }
        free(x);
        free(y);
        free(id);
        if (st == DML_OK)
            crash_after_shard();
        progress(so->out, s + 1, S, &last);
    }
}

static int cmd_synth(int argc, char **argv)
{
    synth_opts_t so;
    dml_dataset_writer_t *w;
    float *centres = NULL;
    dml_status_t st = DML_OK;
    uint64_t nf;
    uint32_t S;
    char src[256];
    int rc;

    if ((rc = synth_parse(argc, argv, &so)) >= 0)
        return rc;
    nf = dml_schema_features(&so.schema);
    S = shard_count(&so.o, so.n);
    if (g_rank == 0)
        st = space_check(so.out, dataset_bytes(&so.schema, so.n, S));
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return report(st);
    snprintf(src, sizeof(src), "synth:seed=%llu,classes=%llu,noise=%g", (unsigned long long)so.seed,
             (unsigned long long)so.classes, so.noise);
    if ((st = synth_centres(&so, nf, &centres)) != DML_OK)
        return report(st);
    st = dml_dataset_writer_create(MPI_COMM_WORLD, so.out, &so.schema, S, so.o.force, src, &w);
    if (st != DML_OK) {
        free(centres);
        return report(st);
    }
    synth_put_shards(&so, w, centres, nf, S);
    free(centres);
    st = dml_dataset_writer_commit(w);
    if (st == DML_OK && g_rank == 0)
        dml_info("%s: %llu synthetic samples (%llu features, %llu classes) in %u shards", so.out,
                 (unsigned long long)so.n, (unsigned long long)nf, (unsigned long long)so.classes,
                 S);
    return report(st);
}

/* ---- inspect and validate ---------------------------------------------- */

/* --json (inspect, validate): what scripts read instead of the lines meant
 * for people, one object on stdout (jansson). A string that is not UTF-8 (a
 * path's bytes) has its bytes above ASCII as '?': JSON strings are Unicode
 * and cannot carry them (dml_json_str(), dml_json.h). */

/* Prints (and frees) a --json answer: 0, or -1 when it could not be made. */
static int json_print(json_t *j)
{
    int rc = j != NULL && json_dumpf(j, stdout, JSON_COMPACT) == 0 ? 0 : -1;

    if (rc == 0)
        putchar('\n');
    json_decref(j);
    return rc;
}

/* The one --json among a command's arguments, removed from them. */
static int take_json_flag(int *argc, char **argv)
{
    int i, j, found = 0;

    for (i = j = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            found = 1;
        else
            argv[j++] = argv[i];
    }
    *argc = j;
    return found;
}

static json_t *inspect_json(const dml_dataset_t *ds)
{
    const dml_schema_t *sc = dml_dataset_schema(ds);
    const dml_stats_t *st = dml_dataset_stats(ds);
    json_t *shape = json_array(), *classes = json_array(), *shards = json_array();
    char crc[9];
    uint32_t i;
    int d;

    for (d = 0; d < sc->rank; d++)
        json_array_append_new(shape, json_integer((json_int_t)sc->shape[d]));
    for (i = 0; i < sc->num_classes; i++)
        json_array_append_new(classes, json_pack("{s:I,s:o,s:I}", "class", (json_int_t)i, "name",
                                                 dml_json_str(sc->class_names[i]), "samples",
                                                 (json_int_t)st->label_counts[i]));
    for (i = 0; i < dml_dataset_shards(ds); i++) {
        snprintf(crc, sizeof(crc), "%08x", dml_dataset_shard_crc(ds, i));
        json_array_append_new(
            shards,
            json_pack("{s:o,s:I,s:s}", "name", dml_json_str(dml_dataset_shard_name(ds, i)),
                      "samples", (json_int_t)dml_dataset_shard_samples(ds, i), "crc32", crc));
    }
    return json_pack(
        "{s:o,s:s,s:i,s:o,s:s,s:I,s:s,s:o,s:I,s:f,s:f,s:o,s:o}", "dataset",
        dml_json_str(dml_dataset_dir(ds)), "format", DML_DATASET_FORMAT, "format_version",
        DML_DATASET_VERSION, "source", dml_json_str(dml_dataset_source(ds)), "content_hash",
        dml_dataset_content_hash(ds), "samples", (json_int_t)dml_dataset_samples(ds), "dtype",
        dml_dtype_name(sc->dtype), "shape", shape, "features", (json_int_t)dml_schema_features(sc),
        "mean", st->global_mean, "std", st->global_std, "classes", classes, "shards", shards);
}

static int cmd_inspect(int argc, char **argv)
{
    dml_dataset_t *ds;
    const dml_schema_t *sc;
    const dml_stats_t *st;
    dml_status_t s;
    uint64_t total = 0;
    uint32_t i;
    int d, json = take_json_flag(&argc, argv);

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
    for (i = 0; i < dml_dataset_shards(ds); i++)
        total += dml_dataset_shard_samples(ds, i);
    if (json) {
        int rc = json_print(inspect_json(ds));

        dml_dataset_close(ds);
        if (rc != 0) {
            dml_error("%s: cannot write the JSON answer (no memory)", argv[1]);
            return 1;
        }
        return total > 0 ? 0 : 1;
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
    for (i = 0; i < dml_dataset_shards(ds); i++)
        printf("  %-20s %10llu samples  crc32 %08x\n", dml_dataset_shard_name(ds, i),
               (unsigned long long)dml_dataset_shard_samples(ds, i), dml_dataset_shard_crc(ds, i));
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
    int a, bad = 0, json = take_json_flag(&argc, argv);
    json_t *list = json ? json_array() : NULL;

    if (argc < 2) {
        if (g_rank == 0)
            dml_error("validate takes one or more dataset directories (see --help)");
        return 2;
    }
    /* --json: {"datasets": [one object per DIR, in order]}; the problems
     * themselves still go to stderr, named */
    for (a = 1; a < argc; a++) {
        dml_dataset_t *ds = NULL;
        uint64_t mine = 0, all = 0;
        dml_status_t st;
        uint32_t s;

        /* Every rank reads the index; a broken one is reported once. */
        st = dml_mpi_agree(MPI_COMM_WORLD, dml_dataset_open(argv[a], &ds), NULL);
        if (st != DML_OK) {
            if (g_rank == 0) {
                dml_error("%s", dml_error_message());
                if (json)
                    json_array_append_new(
                        list, json_pack("{s:o,s:b,s:o}", "path", dml_json_str(argv[a]), "sound", 0,
                                        "error", dml_json_str(dml_error_message())));
            }
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
        if (g_rank == 0 && json)
            json_array_append_new(list, json_pack("{s:o,s:b,s:I,s:I,s:I,s:s}", "path",
                                                  dml_json_str(argv[a]), "sound", all == 0,
                                                  "problems", (json_int_t)all, "samples",
                                                  (json_int_t)dml_dataset_samples(ds), "shards",
                                                  (json_int_t)dml_dataset_shards(ds),
                                                  "content_hash", dml_dataset_content_hash(ds)));
        if (g_rank == 0) {
            if (all)
                dml_error("%s: %llu problems found; the dataset is not sound", argv[a],
                          (unsigned long long)all);
            else if (!json)
                printf("%s: sound: %llu samples in %u shards, content hash %s\n", argv[a],
                       (unsigned long long)dml_dataset_samples(ds), dml_dataset_shards(ds),
                       dml_dataset_content_hash(ds));
        }
        bad |= all != 0;
        dml_dataset_close(ds);
    }
    if (json && g_rank == 0 && json_print(json_pack("{s:o}", "datasets", list)) != 0) {
        dml_error("cannot write the JSON answer (no memory)");
        return 1;
    }
    if (json && g_rank != 0)
        json_decref(list);
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
