/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-train: data-parallel training of a feed-forward network on a sharded
 * dataset. Launch it with srun --mpi=pmix or mpirun; every rank reads its part
 * of each global batch, gradients are summed across ranks. The work is in
 * dml_train.h; this file parses the command line and prints.
 *
 * Every rank parses the same command line. Whatever it finds wrong is
 * recorded, not printed, and the ranks agree on it before anything else, so
 * that an error on one rank (a --config file that differs on one node, an
 * option given to one rank only) stops every rank with one message instead
 * of leaving the others waiting in a collective; then the ranks check that
 * they were all given the same configuration.
 */
#include "config.h"

#include "ckpt_env.h"
#include "dml_ckpt.h"
#include "dml_h5.h"
#include "dml_log.h"
#include "dml_mpi.h"
#include "dml_tool.h"
#include "dml_train.h"
#include "slurm_job.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

static int g_rank, g_size;
static FILE *g_metrics;
static const char *g_metrics_path;
static volatile sig_atomic_t g_stop;

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: srun --mpi=pmix dml-train --train DIR --model SPEC [OPTIONS]\n"
        "       mpirun -np N dml-train ...\n\n"
        "  --train DIR            training dataset (dml-data)\n"
        "  --test DIR             held-out dataset, evaluated after every epoch\n"
        "  --model SPEC           layers, e.g. "
        "conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10);\n"
        "                         the book's cnn, cnn-bn, cnn-dropout; or "
        "mlp:784-512-256-10[:dropout=P]\n"
        "                         (docs/training.md)\n"
        "  --epochs N             [10]\n"
        "  --batch N              samples per rank per step [128]; global batch = N x ranks x "
        "accum\n"
        "  --accum K              micro-batches per optimiser step [1]\n"
        "  --optimizer sgd|adamw  [sgd]\n"
        "  --lr F                 peak learning rate [0.05]\n"
        "  --momentum F           SGD momentum [0.9]\n"
        "  --nesterov             Nesterov momentum\n"
        "  --weight-decay F       [0 for SGD, 0.01 for AdamW]\n"
        "  --schedule constant|step|cosine   [constant]\n"
        "  --warmup N             steps of linear warm-up [0]\n"
        "  --step-every N, --gamma F   step schedule: lr x gamma every N steps [gamma 0.1]\n"
        "  --clip F               clip gradients to this global norm [off]\n"
        "  --seed N               weights, sample order, dropout [0]\n"
        "  --shuffle full|window|none   [full]\n"
        "  --cache auto|on|off    keep the dataset in memory: a copy per rank where the\n"
        "                         node's copies fit half its free memory, else one\n"
        "                         shared copy per node (on: even beyond) [auto]\n"
        "  --prefetch N           batches read ahead [4]\n"
        "  --blas-threads N       BLAS and convolution threads per rank [1: one rank per core]\n"
        "  --device cpu|cuda|cuda:N|auto   where the model computes: cuda, each rank the\n"
        "                         GPU of its rank on the node (the one Slurm or srun\n"
        "                         --dml-gpus gave it); auto: cuda where a GPU is seen and\n"
        "                         the network runs there (so far dense, relu, dropout,\n"
        "                         flatten; fp32), else the CPU [cpu]\n"
        "  --grad-reduce auto|allreduce|shared   how gradients are summed: shared:\n"
        "                         in memory shared by the ranks of one node, each rank\n"
        "                         updating a slice; allreduce: bucketed MPI allreduce;\n"
        "                         auto: shared where all ranks are on one node [auto]\n"
        "  --bucket-kb N          gradient bucket size for the allreduce [1024]\n"
        "  --log-every N          steps between progress lines [100; 0: epochs only]\n"
        "  --metrics FILE         progress as JSON lines (pandas.read_json(lines=True));\n"
        "                         appended to when training resumes\n"
        "  --output FILE          the trained model (HDF5), written only if training succeeds\n"
        "\nCheckpoints (see docs/checkpoints.md):\n"
        "  --checkpoint-dir DIR   write checkpoints here (a shared file system); with it,\n"
        "                         training resumes from DIR and stops cleanly on signals\n"
        "  --checkpoint-every N   every N optimiser steps [0: off]\n"
        "  --checkpoint-seconds T every T seconds [0: off]; also one at the end\n"
        "  --keep K               newest checkpoints kept [3; 0: all]\n"
        "  --resume auto|never|PATH  auto: from the newest checkpoint of DIR's run that\n"
        "                         loads [auto]; never: a new run (DIR's checkpoints are\n"
        "                         moved to DIR/earlier-run-*); PATH: that file or directory\n"
        "  --signals LIST         checkpoint and stop on these [USR1,USR2,TERM]; none\n"
        "  --time-margin S        in a Slurm job, checkpoint and stop S seconds before\n"
        "                         its end time (asked of slurmctld) [60]\n"
        "  --requeue              after such a stop, requeue the Slurm job through\n"
        "                         slurmctld (no scontrol needed); never a cancelled one\n"
        "  --stall-timeout auto|S a rank not heard from, or not arriving where the others\n"
        "                         wait, for this long is named (host, PID, step) and the\n"
        "                         job ended with exit 75; auto: 10 x the slowest recent\n"
        "                         step or checkpoint, at least --stall-floor [auto; 0: never]\n"
        "  --stall-floor S        the least limit auto derives, in seconds [60]\n"
        "  Exit status 75 means: checkpointed and stopped on request; requeue the job.\n"
        "  143: checkpointed and stopped because the job was cancelled (scancel): not\n"
        "  requeued; submit it again to continue.\n"
        "  --check                check the options, --config file and model spec, and\n"
        "                         exit (0: valid, 2: not); no MPI, no data read\n"
        "  --config FILE          settings from an INI file: any option above as\n"
        "                         key = value (without --), optionally under [train];\n"
        "                         options on the command line win\n");
}

/* ---- option values --------------------------------------------------------
 * A bad value is recorded (dml_error_set) and agreed on by every rank. */

static int bad(const char *opt, const char *val, const char *want)
{
    dml_error_set(DML_ERR_INVALID_ARG, "%s '%s': expected %s", opt, val, want);
    return 2;
}

static int num(const char *opt, const char *val, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(val, &end);
    if (*val == '\0' || *end != '\0' || errno != 0 || !(*out >= lo && *out <= hi)) {
        char want[96];
        snprintf(want, sizeof(want), "a number from %g to %g", lo, hi);
        return bad(opt, val, want);
    }
    return 0;
}

/* A whole number from lo to hi (messages print the limits as integers). */
static int inum(const char *opt, const char *val, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(val, &end, 10);
    if (*val == '\0' || *val == '-' || *val == '+' || *end != '\0' || errno != 0 || v < lo ||
        v > hi) {
        char want[96];
        snprintf(want, sizeof(want), "a whole number from %llu to %llu", (unsigned long long)lo,
                 (unsigned long long)hi);
        return bad(opt, val, want);
    }
    *out = v;
    return 0;
}

/* ---- the configuration file ------------------------------------------------
 *
 * libinih parses it, but reads a line into a buffer of INI_MAX_LINE bytes
 * and goes on with the rest of a longer line as if it were a line of its
 * own (the tail of a comment becomes a setting), and reads an indented line
 * as the continuation of the key before it. So the file is read whole first
 * and refused, with its true line number, where libinih would misread it: a
 * line too long, bytes that are not text, an indented line, a key given
 * twice. What passes is plain INI, which libinih reads as written. */

#define CONFIG_MAX_BYTES (1 << 20)
/* libinih's buffer holds the line, its newline and a NUL */
#define CONFIG_MAX_LINE (INI_MAX_LINE - 2)
#define CONFIG_MAX_KEYS 256

static int config_prescan(const char *file)
{
    struct {
        char section[64], key[64];
        int line;
    } seen[CONFIG_MAX_KEYS];
    /* Keys before any section are [train]'s (ini_entry reads them so): a
     * key there and again under [train] is given twice. */
    char section[64] = "train", *buf = NULL;
    size_t len, at = 0, nseen = 0, i;
    struct stat sb;
    FILE *f = NULL;
    int line = 0, rc = 2;

    if (stat(file, &sb) != 0) {
        dml_error_set_errno(errno, "--config %s: cannot open", file);
        return 2;
    }
    if (!S_ISREG(sb.st_mode)) {
        dml_error_set(DML_ERR_INVALID_ARG, "--config %s: is %s, not a configuration file", file,
                      S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file");
        return 2;
    }
    if (sb.st_size > CONFIG_MAX_BYTES) {
        dml_error_set(DML_ERR_INVALID_ARG,
                      "--config %s: %lld bytes, more than a configuration "
                      "file has (at most %d)",
                      file, (long long)sb.st_size, CONFIG_MAX_BYTES);
        return 2;
    }
    if ((f = fopen(file, "rb")) == NULL) {
        dml_error_set_errno(errno, "--config %s: cannot open", file);
        return 2;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        dml_error_set(DML_ERR_NO_MEMORY, "--config %s: no memory", file);
        goto out;
    }
    len = fread(buf, 1, (size_t)sb.st_size, f);
    if (ferror(f)) {
        dml_error_set_errno(errno ? errno : EIO, "--config %s: cannot read", file);
        goto out;
    }
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) /* a UTF-8 byte order mark */
        at = 3;
    while (at < len) {
        size_t end = at, n, k;
        const char *p;
        line++;
        while (end < len && buf[end] != '\n')
            end++;
        n = end - at;
        if (n > 0 && buf[at + n - 1] == '\r')
            n--;
        if (n > CONFIG_MAX_LINE) {
            dml_error_set(DML_ERR_INVALID_ARG,
                          "%s:%d: a line of %zu bytes; lines of up to %d "
                          "are read (give a longer value on the command line)",
                          file, line, n, CONFIG_MAX_LINE);
            goto out;
        }
        for (k = 0; k < n; k++) {
            const unsigned char c = (unsigned char)buf[at + k];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                dml_error_set(DML_ERR_INVALID_ARG,
                              "%s:%d: byte 0x%02x at column %zu: not a "
                              "text file",
                              file, line, c, k + 1);
                goto out;
            }
        }
        p = buf + at;
        for (k = 0; k < n && (p[k] == ' ' || p[k] == '\t'); k++)
            ;
        if (k < n && p[k] != '#' && p[k] != ';') {
            if (k > 0) {
                dml_error_set(DML_ERR_INVALID_ARG,
                              "%s:%d: an indented line, which INI reads as "
                              "the continuation of the value before it: start it at the "
                              "beginning of the line",
                              file, line);
                goto out;
            }
            if (p[0] == '[') {
                const char *close = memchr(p, ']', n);
                size_t sl = close ? (size_t)(close - p - 1) : 0;
                snprintf(section, sizeof(section), "%.*s", (int)(sl < 63 ? sl : 63), p + 1);
                if (section[0] == '\0') /* "[]": read as no section at all */
                    snprintf(section, sizeof(section), "train");
            } else {
                size_t kl = 0;
                while (kl < n && p[kl] != '=' && p[kl] != ':')
                    kl++;
                while (kl > 0 && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
                    kl--;
                for (i = 0; i < nseen; i++)
                    if (strcmp(seen[i].section, section) == 0 && strlen(seen[i].key) == kl &&
                        strncmp(seen[i].key, p, kl) == 0) {
                        dml_error_set(DML_ERR_INVALID_ARG,
                                      "%s:%d: '%s' is given twice (first on "
                                      "line %d)",
                                      file, line, seen[i].key, seen[i].line);
                        goto out;
                    }
                if (nseen < CONFIG_MAX_KEYS && kl < sizeof(seen[0].key)) {
                    snprintf(seen[nseen].section, sizeof(seen[0].section), "%s", section);
                    snprintf(seen[nseen].key, sizeof(seen[0].key), "%.*s", (int)kl, p);
                    seen[nseen++].line = line;
                }
            }
        }
        at = end + 1;
    }
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

typedef struct {
    const struct option *opts;
    char **args;
    int n;
    char why[256];
} ini_args_t;

/* Each key becomes "--key=value" (or "--flag"), checked against the options
 * here so that the file's line can be named. Returning 0 makes ini_parse
 * report this line. */
static int ini_entry(void *user, const char *section, const char *name, const char *value)
{
    ini_args_t *a = user;
    const struct option *o;
    char *arg;

    if (section[0] != '\0' && strcmp(section, "train") != 0) {
        snprintf(a->why, sizeof(a->why), "section [%s]: only [train] is read", section);
        return 0;
    }
    for (o = a->opts; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            break;
    if (o->name == NULL || strcmp(name, "config") == 0 || strcmp(name, "help") == 0) {
        snprintf(a->why, sizeof(a->why),
                 "unknown key '%s' (keys are dml-train's options without "
                 "the leading --; see --help)",
                 name);
        return 0;
    }
    if (o->has_arg == no_argument) {
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0) {
            value = NULL;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                   strcmp(value, "0") == 0) {
            return 1;
        } else {
            snprintf(a->why, sizeof(a->why), "%s = %s: expected true or false", name, value);
            return 0;
        }
    }
    arg = malloc(strlen(name) + (value ? strlen(value) : 0) + 4);
    if (arg == NULL) {
        snprintf(a->why, sizeof(a->why), "no memory");
        return 0;
    }
    sprintf(arg, value ? "--%s=%s" : "--%s", name, value ? value : "");
    a->args[a->n++] = arg;
    return a->n < 1000;
}

/* Finds --config FILE in argv and returns a new argv with the file's settings
 * before the command line's (getopt takes the last value: flags win). NULL
 * with the detail recorded on an error. The new argv lives as long as the
 * process, as argv does (the options point into it): freed at exit. */
static char **g_config_argv;

static void free_config_argv(void)
{
    free(g_config_argv);
}

static char **with_config(int *argc, char **argv, const struct option *opts)
{
    static char *args[1000];
    char **out;
    ini_args_t a = {opts, args, 0, ""};
    const char *file = NULL;
    int i, j, k, line;

    for (i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file == NULL)
        return argv;
    if (config_prescan(file) != 0)
        return NULL;
    line = ini_parse(file, ini_entry, &a);
    if (line != 0) {
        if (line == -1)
            dml_error_set_errno(errno, "--config %s: cannot open", file);
        else
            dml_error_set(DML_ERR_INVALID_ARG, "%s:%d: %s", file, line,
                          a.why[0] ? a.why : "not an INI line (key = value)");
        return NULL;
    }
    out = calloc((size_t)*argc + (size_t)a.n + 1, sizeof(char *));
    if (out == NULL) {
        dml_error_set(DML_ERR_NO_MEMORY, "--config %s: no memory", file);
        return NULL;
    }
    out[0] = argv[0];
    for (k = 1, j = 0; j < a.n; j++)
        out[k++] = args[j];
    for (i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0)
            continue;
        out[k++] = argv[i];
    }
    *argc = k;
    g_config_argv = out;
    atexit(free_config_argv);
    return out;
}

/* ---- progress ---------------------------------------------------------- */

static void skipped(void *arg, const char *why)
{
    (void)arg;
    if (g_rank == 0)
        dml_warn("passing over checkpoint %s", why);
}

/* A metrics line could not be written (a full disk): training stops, on
 * every rank (the trainer agrees on the callback's status). */
static dml_status_t metrics_flush(void)
{
    if (fflush(g_metrics) != 0 || ferror(g_metrics))
        return dml_error_set_errno(errno ? errno : EIO, "%s: cannot write the metrics",
                                   g_metrics_path);
    return DML_OK;
}

/* A JSON number, or null where the value is not finite (a diverged loss):
 * JSON has no NaN or infinity, and pandas reads null as NaN. */
static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* One metrics line, written by jansson (one object per line, keys in the
 * order given, six significant digits as the log shows). Takes o. */
static dml_status_t metrics_line(json_t *o)
{
    int rc;

    if (o == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s: cannot make a metrics line", g_metrics_path);
    rc = json_dumpf(o, g_metrics, JSON_REAL_PRECISION(6));
    json_decref(o);
    if (rc != 0 || fputc('\n', g_metrics) == EOF)
        return dml_error_set_errno(errno ? errno : EIO, "%s: cannot write the metrics",
                                   g_metrics_path);
    return metrics_flush();
}

static dml_status_t report(void *arg, const dml_progress_t *p)
{
    json_t *o;

    (void)arg;
    if (g_rank != 0)
        return DML_OK;
    if (p->checkpoint != NULL) {
        dml_info("checkpoint at step %llu (%s): %s in %.3f s", (unsigned long long)p->step,
                 p->checkpoint_reason, p->checkpoint, p->checkpoint_seconds);
        if (g_metrics == NULL)
            return DML_OK;
        return metrics_line(json_pack("{s:s, s:I, s:I, s:o, s:s}", "type", "checkpoint", "epoch",
                                      (json_int_t)p->epoch, "step", (json_int_t)p->step, "seconds",
                                      jnum(p->checkpoint_seconds), "reason", p->checkpoint_reason));
    }
    if (p->is_epoch) {
        char test[96] = "";
        if (p->has_test)
            snprintf(test, sizeof(test), ", test loss %.4f acc %.4f", p->test_loss,
                     p->test_accuracy);
        dml_info("epoch %llu step %llu: loss %.4f acc %.4f%s, %.0f samples/s, compute %.0f%% "
                 "comm %.0f%% data %.0f%%",
                 (unsigned long long)p->epoch, (unsigned long long)p->step, p->loss, p->accuracy,
                 test, p->samples_per_s, 100 * p->compute, 100 * p->comm, 100 * p->data);
    } else
        dml_info("epoch %llu step %llu: loss %.4f acc %.4f lr %.4g, %.0f samples/s, compute %.0f%% "
                 "comm %.0f%% data %.0f%%",
                 (unsigned long long)p->epoch, (unsigned long long)p->step, p->loss, p->accuracy,
                 p->lr, p->samples_per_s, 100 * p->compute, 100 * p->comm, 100 * p->data);
    if (g_metrics == NULL)
        return DML_OK;
    o = json_pack("{s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "type",
                  p->is_epoch ? "epoch" : "step", "epoch", (json_int_t)p->epoch, "step",
                  (json_int_t)p->step, "loss", jnum(p->loss), "accuracy", jnum(p->accuracy), "lr",
                  jnum(p->lr), "samples_per_s", jnum(p->samples_per_s), "compute", jnum(p->compute),
                  "comm", jnum(p->comm), "data", jnum(p->data));
    if (o != NULL && p->has_test &&
        (json_object_set_new(o, "test_loss", jnum(p->test_loss)) != 0 ||
         json_object_set_new(o, "test_accuracy", jnum(p->test_accuracy)) != 0)) {
        json_decref(o);
        o = NULL;
    }
    return metrics_line(o);
}

#ifdef DML_TEST_HOOKS
/*
 * The tests' hooks, built only with configure --enable-test-hooks
 * (scripts/test-all): fault injection at a chosen point, so that no test
 * races the clock.
 *
 * DML_TEST_HOLD=STEP:FILE makes every rank, once STEP optimiser steps are
 * done, wait while FILE exists, before it reads its stop flag; rank 0
 * creates FILE.held when it starts waiting, and FILE.stop once a signal
 * has reached it (Slurm delivers scancel's signals asynchronously). A test
 * waits for FILE.held, sends its signal (and waits for FILE.stop) or kills
 * the ranks, and removes FILE: a signal that came to any rank meanwhile is
 * acted on at that very step.
 *
 * DML_CKPT_CRASH=PHASE[@RANK] kills the process (SIGKILL, as a node failure
 * would) at that phase of the checkpoint commit (dml_ckpt_config_t's
 * on_phase), on every rank or on RANK only.
 */
typedef struct {
    uint64_t step;
    const char *file;
} hold_t;

static void hold_at(void *arg, uint64_t step)
{
    const hold_t *h = arg;
    char held[4200], stop[4200];
    int told = 0;
    FILE *f;

    if (step != h->step || access(h->file, F_OK) != 0)
        return;
    snprintf(held, sizeof(held), "%s.held", h->file);
    snprintf(stop, sizeof(stop), "%s.stop", h->file);
    if (g_rank == 0 && (f = fopen(held, "w")) != NULL)
        fclose(f);
    while (access(h->file, F_OK) == 0) {
        if (g_rank == 0 && g_stop && !told && (f = fopen(stop, "w")) != NULL) {
            fclose(f);
            told = 1;
        }
        usleep(20000);
    }
    if (g_rank == 0)
        unlink(held);
}

static void crash_at(void *arg, const char *phase, int rank)
{
    const char *want = arg, *at = strchr(want, '@');
    size_t len = at ? (size_t)(at - want) : strlen(want);

    if (strlen(phase) == len && strncmp(want, phase, len) == 0 &&
        (at == NULL || atoi(at + 1) == rank))
        raise(SIGKILL);
}

static void test_hooks(dml_trainer_config_t *cfg, hold_t *h)
{
    const char *e = getenv("DML_TEST_HOLD"), *colon, *crash = getenv("DML_CKPT_CRASH");
    char *end;

    if (crash != NULL && *crash != '\0') {
        cfg->ckpt.on_phase = crash_at;
        cfg->ckpt.on_phase_arg = (void *)crash;
    }
    if (e == NULL || (colon = strchr(e, ':')) == NULL)
        return;
    h->step = strtoull(e, &end, 10);
    if (end != colon || colon[1] == '\0')
        return;
    h->file = colon + 1;
    cfg->on_step = hold_at;
    cfg->on_step_arg = h;
}
#endif

/* The stall watchdog found a rank that does not come (called once, from its
 * thread): the others cannot leave the collective they wait in, so the job
 * ends here, with the status that makes train.sbatch requeue it: it resumes
 * from the newest checkpoint, on the nodes Slurm gives it then. */
static void stalled(void *arg, const char *report)
{
    (void)arg;
    dml_error("stalled: %s; ending the job (exit %d): requeued, it resumes from the newest "
              "checkpoint",
              report, DML_CKPT_EXIT_REQUEUE);
    /* The launcher (mpirun, slurmstepd) forwards output asynchronously and
     * MPI_Abort ends it at once: give the line a moment to get out. */
    fflush(stderr);
    sleep(1);
    MPI_Abort(MPI_COMM_WORLD, DML_CKPT_EXIT_REQUEUE);
}

/* ---- what every rank must share ------------------------------------------ */

typedef struct {
    dml_trainer_config_t cfg;
    const char *model, *metrics, *output, *resume, *signals;
    double momentum, wd;
    int threads, nesterov, opt_type, requeue;
} options_t;

/* A number as people write it, in as few digits as give the value back
 * exactly (a float's, where it is stored as a float): equal text means equal
 * values, and a message shows 0.02 where %a would show 0x1.47ae14p-6. */
static const char *shortest(double v, int is_float, char *buf, size_t len)
{
    int prec;

    for (prec = 6; prec < 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (is_float ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            return buf;
    }
    snprintf(buf, len, "%.17g", v);
    return buf;
}

/* The effective configuration, one setting a line, each as an option's
 * value is written (names, not enum numbers; numbers exactly, in decimal):
 * what the ranks compare and what the message about a difference quotes. */
static void options_text(const options_t *o, char *buf, size_t len)
{
    static const char *const opt_names[] = {[DML_OPT_SGD] = "sgd", [DML_OPT_ADAMW] = "adamw"};
    static const char *const sched_names[] = {
        [DML_LR_CONSTANT] = "constant", [DML_LR_STEP] = "step", [DML_LR_COSINE] = "cosine"};
    static const char *const shuffle_names[] = {
        [DML_SHUFFLE_NONE] = "none", [DML_SHUFFLE_FULL] = "full", [DML_SHUFFLE_WINDOW] = "window"};
    static const char *const cache_names[] = {
        [DML_CACHE_AUTO] = "auto", [DML_CACHE_ON] = "on", [DML_CACHE_OFF] = "off"};
    static const char *const reduce_names[] = {
        [DML_DP_AUTO] = "auto", [DML_DP_ALLREDUCE] = "allreduce", [DML_DP_SHARED] = "shared"};
    const dml_trainer_config_t *c = &o->cfg;
    char lr[40], mom[40], wd[40], gamma[40], clip[40], ckpt_s[40], margin[40], stall[40],
        floor_s[40];

    snprintf(buf, len,
             "train=%s\ntest=%s\nmodel=%s\nepochs=%d\nbatch=%d\naccum=%d\noptimizer=%s\nlr=%s\n"
             "momentum=%s\nnesterov=%d\nweight-decay=%s\nschedule=%s\nwarmup=%llu\n"
             "step-every=%llu\ngamma=%s\nclip=%s\nseed=%llu\nshuffle=%s\ncache=%s\nprefetch=%d\n"
             "blas-threads=%d\ngrad-reduce=%s\nbucket-kb=%zu\nlog-every=%d\nmetrics=%s\n"
             "output=%s\ncheckpoint-dir=%s\ncheckpoint-every=%llu\ncheckpoint-seconds=%s\n"
             "keep=%d\nresume=%s\nsignals=%s\ntime-margin=%s\nrequeue=%d\nstall-timeout=%s\n"
             "stall-floor=%s\ndevice=%s\n",
             c->train_dir ? c->train_dir : "", c->test_dir ? c->test_dir : "",
             o->model ? o->model : "", c->epochs, c->batch, c->accum, opt_names[o->opt_type & 1],
             shortest((double)c->lr.base, 1, lr, sizeof(lr)),
             o->momentum < 0 ? "(default)" : shortest(o->momentum, 0, mom, sizeof(mom)),
             o->nesterov, o->wd < 0 ? "(default)" : shortest(o->wd, 0, wd, sizeof(wd)),
             sched_names[(unsigned)c->lr.kind % 3], (unsigned long long)c->lr.warmup,
             (unsigned long long)c->lr.step_every,
             shortest((double)c->lr.gamma, 1, gamma, sizeof(gamma)),
             shortest(c->clip, 0, clip, sizeof(clip)), (unsigned long long)c->seed,
             shuffle_names[(unsigned)c->shuffle % 3], cache_names[(unsigned)c->cache % 3],
             c->prefetch, o->threads, reduce_names[(unsigned)c->grad_reduce % 3],
             c->bucket_bytes / 1024, c->log_every, o->metrics ? o->metrics : "",
             o->output ? o->output : "", c->ckpt_dir ? c->ckpt_dir : "",
             (unsigned long long)c->ckpt_every,
             shortest(c->ckpt_seconds, 0, ckpt_s, sizeof(ckpt_s)), c->ckpt_keep, o->resume,
             o->signals, shortest(c->deadline_margin, 0, margin, sizeof(margin)), o->requeue,
             c->stall_timeout < 0 ? "auto" : shortest(c->stall_timeout, 0, stall, sizeof(stall)),
             shortest(c->stall_floor, 0, floor_s, sizeof(floor_s)), c->device ? c->device : "cpu");
}

/* Line n (from 0) of text into out. */
static void nth_line(const char *text, int n, char *out, size_t len)
{
    const char *p = text, *e;

    while (n-- > 0 && (p = strchr(p, '\n')) != NULL)
        p++;
    if (p == NULL) {
        snprintf(out, len, "(nothing)");
        return;
    }
    e = strchr(p, '\n');
    snprintf(out, len, "%.*s", e ? (int)(e - p) : (int)strlen(p), p);
}

/* Collective: every rank's effective configuration is rank 0's, or every
 * rank fails naming the first setting that differs (training with several
 * models or batch sizes at once runs on, silently wrong, or hangs). */
static dml_status_t agree_options(const options_t *o)
{
    char mine[8192], theirs[8192], a[512], b[512];
    dml_status_t st = DML_OK;
    int i;

    options_text(o, mine, sizeof(mine));
    memcpy(theirs, mine, sizeof(theirs));
    MPI_Bcast(theirs, (int)sizeof(theirs), MPI_CHAR, 0, MPI_COMM_WORLD);
    if (strcmp(mine, theirs) != 0) {
        for (i = 0;; i++) {
            nth_line(mine, i, a, sizeof(a));
            nth_line(theirs, i, b, sizeof(b));
            if (strcmp(a, b) != 0)
                break;
        }
        st = dml_error_set(DML_ERR_MISMATCH,
                           "rank %d was started with %s, rank 0 with %s: every "
                           "rank must be given the same options (and the same --config file)",
                           g_rank, a, b);
    }
    return dml_mpi_agree(MPI_COMM_WORLD, st, NULL);
}

/* Rank 0, before training: every output can be written, and none replaces
 * an input or a file of another kind (docs/training.md). */
static dml_status_t check_outputs(const options_t *o)
{
    const char *inputs[1] = {o->resume};
    char index[4300], kind[128];
    dml_status_t st;

    if (o->output != NULL &&
        (st = dml__output_check(o->output, "slurm-dml model", "model file", inputs, 1)) != DML_OK)
        return st;
    if (o->metrics != NULL &&
        (st = dml__output_check_text(o->metrics, "{\"type\": ", "metrics file", NULL, 0)) != DML_OK)
        return st;
    if (o->cfg.ckpt_dir != NULL) {
        snprintf(index, sizeof(index), "%s/index.h5", o->cfg.ckpt_dir);
        if (dml__h5_file_format(index, kind, sizeof(kind)) == 0 &&
            strcmp(kind, DML_DATASET_FORMAT) == 0)
            return dml_error_set(DML_ERR_EXISTS,
                                 "--checkpoint-dir %s: is a dataset: checkpoints "
                                 "go to a directory of their own",
                                 o->cfg.ckpt_dir);
        if ((st = dml_ckpt_dir_prepare(o->cfg.ckpt_dir)) != DML_OK)
            return st;
    }
    return DML_OK;
}

/* ---- the command line ----------------------------------------------------- */

static const struct option opts[] = {{"train", required_argument, 0, 'T'},
                                     {"test", required_argument, 0, 't'},
                                     {"model", required_argument, 0, 'm'},
                                     {"epochs", required_argument, 0, 'e'},
                                     {"batch", required_argument, 0, 'b'},
                                     {"accum", required_argument, 0, 'a'},
                                     {"optimizer", required_argument, 0, 'o'},
                                     {"lr", required_argument, 0, 'l'},
                                     {"momentum", required_argument, 0, 'M'},
                                     {"nesterov", no_argument, 0, 'n'},
                                     {"weight-decay", required_argument, 0, 'w'},
                                     {"schedule", required_argument, 0, 's'},
                                     {"warmup", required_argument, 0, 'W'},
                                     {"step-every", required_argument, 0, 'E'},
                                     {"gamma", required_argument, 0, 'g'},
                                     {"clip", required_argument, 0, 'c'},
                                     {"seed", required_argument, 0, 'S'},
                                     {"shuffle", required_argument, 0, 'h' + 256},
                                     {"cache", required_argument, 0, 'C'},
                                     {"prefetch", required_argument, 0, 'p'},
                                     {"blas-threads", required_argument, 0, 'B'},
                                     {"bucket-kb", required_argument, 0, 'K'},
                                     {"log-every", required_argument, 0, 'L'},
                                     {"metrics", required_argument, 0, 'j'},
                                     {"output", required_argument, 0, 'O'},
                                     {"help", no_argument, 0, 'h'},
                                     {"config", required_argument, 0, 'F'},
                                     {"check", no_argument, 0, 'X' + 256},
                                     {"checkpoint-dir", required_argument, 0, 'D' + 256},
                                     {"checkpoint-every", required_argument, 0, 'N' + 256},
                                     {"checkpoint-seconds", required_argument, 0, 'Z' + 256},
                                     {"keep", required_argument, 0, 'k' + 256},
                                     {"resume", required_argument, 0, 'r' + 256},
                                     {"signals", required_argument, 0, 'x' + 256},
                                     {"time-margin", required_argument, 0, 'y' + 256},
                                     {"requeue", no_argument, 0, 'q' + 256},
                                     {"stall-timeout", required_argument, 0, 'z' + 256},
                                     {"stall-floor", required_argument, 0, 'f' + 256},
                                     {"grad-reduce", required_argument, 0, 'R' + 256},
                                     {"device", required_argument, 0, 'd' + 256},
                                     {0, 0, 0, 0}};

/* Parses argv into o; 0, 1 for --help, or 2 with the detail recorded. */
static int parse_options(int argc, char **argv, options_t *o)
{
    dml_trainer_config_t *cfg = &o->cfg;
    uint64_t u;
    double v;
    int c, rc = 0;

    opterr = 0; /* getopt's own messages would come from every rank */
    while (rc == 0 && (c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            cfg->train_dir = optarg;
            break;
        case 't':
            cfg->test_dir = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case 'e':
            rc = inum("--epochs", optarg, 1, 1000000, &u);
            cfg->epochs = (int)u;
            break;
        case 'b':
            rc = inum("--batch", optarg, 1, 1 << 20, &u);
            cfg->batch = (int)u;
            break;
        case 'a':
            rc = inum("--accum", optarg, 1, 1 << 16, &u);
            cfg->accum = (int)u;
            break;
        case 'o':
            if (strcmp(optarg, "sgd") == 0)
                o->opt_type = DML_OPT_SGD;
            else if (strcmp(optarg, "adamw") == 0)
                o->opt_type = DML_OPT_ADAMW;
            else
                rc = bad("--optimizer", optarg, "sgd or adamw");
            break;
        case 'l':
            rc = num("--lr", optarg, 1e-30, 1e30, &v);
            cfg->lr.base = (float)v;
            break;
        case 'M':
            rc = num("--momentum", optarg, 0, 0.999999, &o->momentum);
            break;
        case 'n':
            o->nesterov = 1;
            break;
        case 'w':
            rc = num("--weight-decay", optarg, 0, 1e3, &o->wd);
            break;
        case 's':
            if (strcmp(optarg, "constant") == 0)
                cfg->lr.kind = DML_LR_CONSTANT;
            else if (strcmp(optarg, "step") == 0)
                cfg->lr.kind = DML_LR_STEP;
            else if (strcmp(optarg, "cosine") == 0)
                cfg->lr.kind = DML_LR_COSINE;
            else
                rc = bad("--schedule", optarg, "constant, step or cosine");
            break;
        case 'W':
            rc = inum("--warmup", optarg, 0, 1000000000000ULL, &cfg->lr.warmup);
            break;
        case 'E':
            rc = inum("--step-every", optarg, 1, 1000000000000ULL, &cfg->lr.step_every);
            break;
        case 'g':
            rc = num("--gamma", optarg, 0, 1, &v);
            cfg->lr.gamma = (float)v;
            break;
        case 'c':
            rc = num("--clip", optarg, 0, 1e12, &cfg->clip);
            break;
        case 'S':
            rc = inum("--seed", optarg, 0, UINT64_MAX, &cfg->seed);
            break;
        case 'h' + 256:
            if (strcmp(optarg, "full") == 0)
                cfg->shuffle = DML_SHUFFLE_FULL;
            else if (strcmp(optarg, "window") == 0)
                cfg->shuffle = DML_SHUFFLE_WINDOW;
            else if (strcmp(optarg, "none") == 0)
                cfg->shuffle = DML_SHUFFLE_NONE;
            else
                rc = bad("--shuffle", optarg, "full, window or none");
            break;
        case 'C':
            if (strcmp(optarg, "auto") == 0)
                cfg->cache = DML_CACHE_AUTO;
            else if (strcmp(optarg, "on") == 0)
                cfg->cache = DML_CACHE_ON;
            else if (strcmp(optarg, "off") == 0)
                cfg->cache = DML_CACHE_OFF;
            else
                rc = bad("--cache", optarg, "auto, on or off");
            break;
        case 'p':
            rc = inum("--prefetch", optarg, 0, 1024, &u);
            cfg->prefetch = (int)u;
            break;
        case 'B':
            rc = inum("--blas-threads", optarg, 1, 1024, &u);
            o->threads = (int)u;
            break;
        case 'R' + 256:
            if (strcmp(optarg, "auto") == 0)
                cfg->grad_reduce = DML_DP_AUTO;
            else if (strcmp(optarg, "allreduce") == 0)
                cfg->grad_reduce = DML_DP_ALLREDUCE;
            else if (strcmp(optarg, "shared") == 0)
                cfg->grad_reduce = DML_DP_SHARED;
            else
                rc = bad("--grad-reduce", optarg, "auto, allreduce or shared");
            break;
        case 'K':
            rc = inum("--bucket-kb", optarg, 1, 1 << 22, &u);
            cfg->bucket_bytes = (size_t)u * 1024;
            break;
        case 'L':
            rc = inum("--log-every", optarg, 0, INT32_MAX, &u);
            cfg->log_every = (int)u;
            break;
        case 'j':
            o->metrics = optarg;
            break;
        case 'd' + 256:
            if (dml_device_name_valid(optarg))
                cfg->device = optarg;
            else
                rc = bad("--device", optarg, "cpu, cuda, cuda:N or auto");
            break;
        case 'O':
            o->output = optarg;
            break;
        case 'F':
            break; /* read by with_config */
        case 'X' + 256:
            break; /* seen by main before MPI */
        case 'D' + 256:
            cfg->ckpt_dir = optarg;
            break;
        case 'N' + 256:
            rc = inum("--checkpoint-every", optarg, 0, 1000000000000000ULL, &cfg->ckpt_every);
            break;
        case 'Z' + 256:
            rc = num("--checkpoint-seconds", optarg, 0, 1e9, &cfg->ckpt_seconds);
            break;
        case 'k' + 256:
            rc = inum("--keep", optarg, 0, 1000000, &u);
            cfg->ckpt_keep = (int)u;
            break;
        case 'r' + 256:
            o->resume = optarg;
            break;
        case 'x' + 256:
            o->signals = optarg;
            break;
        case 'y' + 256:
            rc = num("--time-margin", optarg, 0, 1e9, &cfg->deadline_margin);
            break;
        case 'q' + 256:
            o->requeue = 1;
            break;
        case 'z' + 256:
            if (strcmp(optarg, "auto") == 0)
                cfg->stall_timeout = DML_STALL_AUTO;
            else if (num("--stall-timeout", optarg, 0, 1e9, &cfg->stall_timeout) != 0)
                rc = bad("--stall-timeout", optarg, "auto, or seconds from 0 to 1e+09");
            break;
        case 'f' + 256:
            rc = num("--stall-floor", optarg, 1, 1e9, &cfg->stall_floor);
            break;
        case 'h':
            return 1;
        case ':':
            dml_error_set(DML_ERR_INVALID_ARG, "%s: needs a value (see --help)", argv[optind - 1]);
            return 2;
        default:
            dml_error_set(DML_ERR_INVALID_ARG, "unknown option '%s' (see --help)",
                          argv[optind - 1]);
            return 2;
        }
    }
    if (rc != 0)
        return rc;
    if (cfg->train_dir == NULL || o->model == NULL) {
        dml_error_set(DML_ERR_INVALID_ARG, "--train and --model are required (see --help)");
        return 2;
    }
    if (optind != argc) {
        dml_error_set(DML_ERR_INVALID_ARG, "unexpected argument '%s' (see --help)", argv[optind]);
        return 2;
    }
    if (dml_model_spec_parse(o->model, &cfg->spec) != DML_OK) {
        dml_error_set(DML_ERR_INVALID_ARG, "--model: %s", dml_error_message());
        return 2;
    }
    if (strcmp(o->resume, "never") == 0 && cfg->ckpt_dir == NULL) {
        dml_error_set(DML_ERR_INVALID_ARG, "--resume never: without --checkpoint-dir there is "
                                           "nothing to resume from anyway");
        return 2;
    }
    if (cfg->ckpt_dir != NULL && dml_ckpt_signals_install(o->signals, &g_stop) != DML_OK) {
        dml_error_set(DML_ERR_INVALID_ARG, "--signals: %s", dml_error_message());
        return 2;
    }
    return 0;
}

/* The Slurm job this runs in (SLURM_JOB_ID), or 0. */
static uint32_t slurm_job(void)
{
    const char *id = getenv("SLURM_JOB_ID");
    char *end;
    unsigned long v;

    if (id == NULL || *id == '\0')
        return 0;
    v = strtoul(id, &end, 10);
    return *end == '\0' && v <= UINT32_MAX ? (uint32_t)v : 0;
}

/* An agreed failure before training: rank 0 prints it, every rank leaves. */
static int fail_before_training(dml_trainer_t *tr, int rc)
{
    if (g_rank == 0)
        dml_error("%s", dml_error_message());
    dml_trainer_free(tr);
    if (g_metrics)
        fclose(g_metrics);
    MPI_Finalize();
    return rc;
}

/* The exit status of a run whose job was cancelled: 128 + SIGTERM, what a
 * shell reports of a process that scancel's SIGTERM ended. Anything but 75
 * tells train.sbatch not to requeue. */
#define EXIT_CANCELLED 143

/*
 * After a checkpoint and stop: exit 75, the job requeued if asked; but not
 * where the job was cancelled. scancel, a preemption and the time limit all
 * send SIGTERM; only slurmctld's state of the job tells them apart
 * (CANCELLED, or PREEMPTED, TIMEOUT, still RUNNING), and a requeue of a
 * cancelled job would bring it back two minutes later, against its user's
 * word. Rank 0 asks, every rank exits alike.
 */
static int stopped(const options_t *o)
{
    const uint32_t job = slurm_job();
    char why[1024], state[32] = "";
    int cancelled = 0;

    snprintf(why, sizeof(why), "%s", dml_error_message());
    if (g_rank == 0 && job != 0) {
        if (dml__slurm_job_state(job, state, sizeof(state)) == DML_OK)
            cancelled = strcmp(state, "CANCELLED") == 0;
        else
            dml_warn("%s; taking the stop for a preemption (exit %d)", dml_error_message(),
                     DML_CKPT_EXIT_REQUEUE);
    }
    MPI_Bcast(&cancelled, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (g_rank != 0)
        return cancelled ? EXIT_CANCELLED : DML_CKPT_EXIT_REQUEUE;
    if (cancelled) {
        dml_info("%s; job %u was cancelled (scancel): not requeued, exit %d; to continue, submit "
                 "it again: it resumes from the checkpoint",
                 why, job, EXIT_CANCELLED);
        return EXIT_CANCELLED;
    }
    dml_info("%s; exit %d: requeue the job to continue", why, DML_CKPT_EXIT_REQUEUE);
    if (!o->requeue)
        return DML_CKPT_EXIT_REQUEUE;
    if (job == 0)
        dml_warn("--requeue: not in a Slurm job (no SLURM_JOB_ID): nothing to requeue");
    else if (dml__slurm_requeue(job) != DML_OK)
        dml_error("--requeue: %s", dml_error_message());
    else
        dml_info("requeued job %u through slurmctld: Slurm starts it again after its requeue "
                 "delay (about two minutes; `scontrol update jobid=%u StartTime=now` lifts it) "
                 "and it resumes from the checkpoint",
                 job, job);
    return DML_CKPT_EXIT_REQUEUE;
}

int main(int argc, char **argv)
{
    options_t o;
    dml_trainer_config_t *cfg = &o.cfg;
    dml_trainer_t *tr = NULL;
    dml_resume_info_t ri;
#ifdef DML_TEST_HOOKS
    hold_t hold = {0, NULL};
#endif
    int provided, rc = 0, failed_rank;
    uint32_t job;
    dml_status_t st;

    dml_log_init("dml-train", -1);
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--check") != 0)
            continue;
        /* Options, --config and model spec checked without MPI or data: what
         * a pipeline does before it submits anything. */
        memset(&o, 0, sizeof(o));
        dml_trainer_config_init(cfg);
        o.resume = "auto";
        o.signals = "USR1,USR2,TERM";
        argv = with_config(&argc, argv, opts);
        rc = argv == NULL ? 2 : parse_options(argc, argv, &o);
        if (rc == 2) {
            dml_error("%s", dml_error_message());
            return 2;
        }
        if (rc == 0)
            printf("dml-train: options and model %s are valid\n", o.model);
        return 0;
    }
    if (dml_tool_launch_check("dml-train"))
        return 2;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    dml_tool_hdf5_quiet();
    dml_log_set_rank(g_size > 1 ? g_rank : -1);

    memset(&o, 0, sizeof(o));
    dml_trainer_config_init(cfg);
    o.resume = "auto";
    o.signals = "USR1,USR2,TERM";
    o.momentum = o.wd = -1;
    o.threads = 1;
    o.opt_type = DML_OPT_SGD;
    cfg->stall_timeout = DML_STALL_AUTO;
    cfg->on_stall = stalled;
    argv = with_config(&argc, argv, opts);
    rc = argv == NULL ? 2 : parse_options(argc, argv, &o);
    /* Every rank parsed its own command line: agree before anything else. */
    st = dml_mpi_agree(MPI_COMM_WORLD, rc == 2 ? dml_error_status() : DML_OK, &failed_rank);
    if (st != DML_OK) {
        if (g_rank == 0) {
            if (failed_rank > 0)
                dml_error("rank %d: %s", failed_rank, dml_error_message());
            else
                dml_error("%s", dml_error_message());
        }
        MPI_Finalize();
        return 2;
    }
    if (rc == 1) {
        if (g_rank == 0)
            usage(stdout);
        MPI_Finalize();
        return 0;
    }
    if (agree_options(&o) != DML_OK) {
        if (g_rank == 0)
            dml_error("%s", dml_error_message());
        MPI_Finalize();
        return 2;
    }
    st = g_rank == 0 ? check_outputs(&o) : DML_OK;
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return fail_before_training(NULL, 1);

    job = slurm_job();
    if (cfg->ckpt_dir != NULL) {
        cfg->stop = &g_stop;
        /* A write past a file size limit must fail with EFBIG and be
         * reported, not kill the process half-way through a checkpoint. */
        signal(SIGXFSZ, SIG_IGN);
        /* Rank 0 asks slurmctld once; the loop compares on rank 0 only. */
        if (g_rank == 0 && job != 0) {
            time_t end;
            if (dml__slurm_end_time(job, &end) == DML_OK) {
                cfg->deadline = (double)end;
                if (end != 0)
                    dml_info("job %u ends in %.0f s: checkpoint and stop %.0f s before", job,
                             difftime(end, time(NULL)), cfg->deadline_margin);
            } else {
                dml_warn("%s; only signals stop training early", dml_error_message());
            }
        }
    }
    dml_opt_config_init(&cfg->opt, (dml_opt_type_t)o.opt_type);
    if (o.momentum >= 0)
        cfg->opt.momentum = (float)o.momentum;
    if (o.wd >= 0)
        cfg->opt.weight_decay = (float)o.wd;
    cfg->opt.nesterov = o.nesterov;
#ifdef DML_TEST_HOOKS
    test_hooks(cfg, &hold);
#endif
    /* how checkpoints are written: the environment's overrides (docs/checkpoints.md) */
    dml_ckpt_config_env(&cfg->ckpt);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(o.threads);
    dml_nn_set_threads(o.threads);
#endif

    st = dml_trainer_create(MPI_COMM_WORLD, cfg, &tr);
    if (st != DML_OK)
        return fail_before_training(tr, 1);
    if (g_rank == 0 && job != 0)
        dml_info("Slurm job %u%s%s, restart %s, nodes %s", job,
                 getenv("SLURM_ARRAY_TASK_ID") ? " array task " : "",
                 getenv("SLURM_ARRAY_TASK_ID") ? getenv("SLURM_ARRAY_TASK_ID") : "",
                 getenv("SLURM_RESTART_COUNT") ? getenv("SLURM_RESTART_COUNT") : "0",
                 getenv("SLURM_JOB_NODELIST") ? getenv("SLURM_JOB_NODELIST") : "?");
    if (g_rank == 0) {
        char spec[DML_MODEL_SPEC_MAX], device[384];
        dml_model_spec_format(&cfg->spec, spec, sizeof(spec));
        if (dml_model_device(dml_trainer_model(tr))->kind == DML_DEVICE_CPU)
            snprintf(device, sizeof(device), "the CPU");
        else
            dml_device_format(dml_model_device(dml_trainer_model(tr)), device, sizeof(device));
        dml_info(
            "training %s on %s%s%s: %d ranks x batch %d x accum %d = global batch %d, %d epochs, "
            "%s lr %g (%s, warm-up %llu), momentum %g%s, weight decay %g, clip %g, seed %llu, "
            "%llu parameters, gradients summed by %s, on %s%s%s%s",
            spec, cfg->train_dir, cfg->test_dir ? ", testing on " : "",
            cfg->test_dir ? cfg->test_dir : "", g_size, cfg->batch, cfg->accum,
            g_size * cfg->batch * cfg->accum, cfg->epochs,
            o.opt_type == DML_OPT_SGD ? "SGD" : "AdamW", (double)cfg->lr.base,
            cfg->lr.kind == DML_LR_CONSTANT ? "constant"
            : cfg->lr.kind == DML_LR_STEP   ? "step"
                                            : "cosine",
            (unsigned long long)cfg->lr.warmup, (double)cfg->opt.momentum,
            o.nesterov ? " (Nesterov)" : "", (double)cfg->opt.weight_decay, cfg->clip,
            (unsigned long long)cfg->seed,
            (unsigned long long)dml_model_nparams(dml_trainer_model(tr)),
            dml_trainer_grad_reduce(tr) == DML_DP_SHARED ? "shared memory (one node)"
                                                         : "bucketed MPI allreduce",
            device, *dml_trainer_device_note(tr) ? " (--device auto: " : "",
            dml_trainer_device_note(tr), *dml_trainer_device_note(tr) ? ")" : "");
    }
    if (o.output != NULL && dml_trainer_check_output_space(tr, o.output) != DML_OK)
        return fail_before_training(tr, 1);
    memset(&ri, 0, sizeof(ri));
    if (strcmp(o.resume, "never") == 0) {
        /* A new run: the directory's checkpoints are an earlier run's. */
        char moved[4096] = "";
        st = g_rank == 0 ? dml_ckpt_dir_set_aside(cfg->ckpt_dir, moved, sizeof(moved)) : DML_OK;
        if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
            return fail_before_training(tr, 1);
        if (g_rank == 0 && moved[0] != '\0')
            dml_info("--resume never: a new run in %s; the checkpoints of the run before it are "
                     "kept in %s",
                     cfg->ckpt_dir, moved);
    } else if (cfg->ckpt_dir != NULL || strcmp(o.resume, "auto") != 0) {
        st = dml_trainer_resume(tr, strcmp(o.resume, "auto") == 0 ? cfg->ckpt_dir : o.resume,
                                skipped, NULL, &ri);
        if (st != DML_OK)
            return fail_before_training(tr, 1);
        if (g_rank == 0 && ri.resumed)
            dml_info("resumed from %s: step %llu, epoch %llu, saved by %d rank%s, now %d", ri.path,
                     (unsigned long long)ri.step, (unsigned long long)ri.epoch + 1, ri.world_size,
                     ri.world_size == 1 ? "" : "s", g_size);
    }
    /* Metrics: continued where a run resumes, new otherwise. */
    if (o.metrics != NULL && g_rank == 0) {
        g_metrics_path = o.metrics;
        if ((g_metrics = fopen(o.metrics, ri.resumed ? "a" : "w")) == NULL)
            st = dml_error_set_errno(errno, "%s: cannot open the metrics file", o.metrics);
    }
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return fail_before_training(tr, 1);

    st = dml_trainer_run(tr, report, NULL);
    if (st == DML_OK && o.output != NULL)
        st = dml_trainer_save_model(tr, o.output);
    if (g_metrics != NULL) {
        if (fclose(g_metrics) != 0 && st == DML_OK)
            st = dml_error_set_errno(errno, "%s: cannot write the metrics", o.metrics);
        g_metrics = NULL;
    }
    if (st == DML_ERR_INTERRUPTED) {
        rc = stopped(&o);
    } else if (st != DML_OK) {
        if (g_rank == 0)
            dml_error("%s%s", dml_error_message(),
                      o.output && st == DML_ERR_NUMERIC ? " (no model written)" : "");
        rc = 1;
    } else if (o.output != NULL && g_rank == 0) {
        dml_info("model written to %s", o.output);
    }
    dml_trainer_free(tr);
    MPI_Finalize();
    return rc;
}
