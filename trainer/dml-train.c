/*
 * dml-train: data-parallel training of a feed-forward network on a sharded
 * dataset. Launch it with srun --mpi=pmix or mpirun; every rank reads its part
 * of each global batch, gradients are summed across ranks. The work is in
 * dml_train.h; this file parses the command line and prints.
 */
#include "config.h"

#include "dml_ckpt.h"
#include "dml_log.h"
#include "dml_mpi.h"
#include "dml_train.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

static int g_rank, g_size;
static FILE *g_metrics;
static volatile sig_atomic_t g_stop;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: srun --mpi=pmix dml-train --train DIR --model SPEC [OPTIONS]\n"
            "       mpirun -np N dml-train ...\n\n"
            "  --train DIR            training dataset (dml-data)\n"
            "  --test DIR             held-out dataset, evaluated after every epoch\n"
            "  --model SPEC           e.g. mlp:784-512-256-10 or mlp:784-256-10:dropout=0.2\n"
            "  --epochs N             [10]\n"
            "  --batch N              samples per rank per step [128]; global batch = N x ranks x accum\n"
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
            "  --blas-threads N       BLAS threads per rank [1: one rank per core]\n"
            "  --grad-reduce auto|allreduce|shared   how gradients are summed: shared:\n"
            "                         in memory shared by the ranks of one node, each rank\n"
            "                         updating a slice; allreduce: bucketed MPI allreduce;\n"
            "                         auto: shared where all ranks are on one node [auto]\n"
            "  --bucket-kb N          gradient bucket size for the allreduce [1024]\n"
            "  --log-every N          steps between progress lines [100; 0: epochs only]\n"
            "  --metrics FILE         progress as JSON lines (pandas.read_json(lines=True))\n"
            "  --output FILE          the trained model (HDF5), written only if training succeeds\n"
            "\nCheckpoints (see docs/checkpoints.md):\n"
            "  --checkpoint-dir DIR   write checkpoints here (a shared file system); with it,\n"
            "                         training resumes from DIR and stops cleanly on signals\n"
            "  --checkpoint-every N   every N optimiser steps [0: off]\n"
            "  --checkpoint-seconds T every T seconds [0: off]; also one at the end\n"
            "  --keep K               newest checkpoints kept [3; 0: all]\n"
            "  --resume auto|never|PATH  auto: from the newest checkpoint in the directory\n"
            "                         that loads [auto]; PATH: that file or directory\n"
            "  --signals LIST         checkpoint and stop on these [USR1,USR2,TERM]; none\n"
            "  --time-margin S        in a Slurm job, checkpoint and stop S seconds before\n"
            "                         its end time (asked of slurmctld) [60]\n"
            "  Exit status 75 means: checkpointed and stopped on request; requeue the job.\n"
            "  --config FILE          settings from an INI file: any option above as\n"
            "                         key = value (without --), optionally under [train];\n"
            "                         options on the command line win\n");
}

static int bad(const char *opt, const char *val, const char *want)
{
    if (g_rank == 0)
        dml_error("%s '%s': expected %s", opt, val, want);
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

/* ---- the configuration file ---------------------------------------------- */

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
        snprintf(a->why, sizeof(a->why), "unknown key '%s' (keys are dml-train's options without "
                 "the leading --; see --help)", name);
        return 0;
    }
    if (o->has_arg == no_argument) {
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0) {
            value = NULL;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0) {
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
 * with rc set on an error, which every rank finds alike. */
static char **with_config(int *argc, char **argv, const struct option *opts, int *rc)
{
    static char *args[1000];
    ini_args_t a = {opts, args, 0, ""};
    const char *file = NULL;
    char **out;
    int i, j, k, line;

    for (i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file == NULL)
        return argv;
    line = ini_parse(file, ini_entry, &a);
    if (line != 0) {
        /* Recorded, not printed: main agrees on it across ranks (the file
         * may be missing on one node only) and rank 0 prints it once. */
        if (line == -1)
            dml_error_set_errno(errno, "--config %s: cannot open", file);
        else
            dml_error_set(DML_ERR_INVALID_ARG, "%s:%d: %s", file, line,
                          a.why[0] ? a.why : "not an INI line (key = value)");
        *rc = 2;
        return NULL;
    }
    out = calloc((size_t)*argc + (size_t)a.n + 1, sizeof(char *));
    if (out == NULL) {
        dml_error_set(DML_ERR_NO_MEMORY, "--config %s: no memory", file);
        *rc = 2;
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
    return out;
}

static void skipped(void *arg, const char *why)
{
    (void)arg;
    if (g_rank == 0)
        dml_warn("passing over checkpoint %s", why);
}

static void report(void *arg, const dml_progress_t *p)
{
    (void)arg;
    if (g_rank != 0)
        return;
    if (p->checkpoint != NULL) {
        dml_info("checkpoint at step %llu (%s): %s in %.3f s", (unsigned long long)p->step,
                 p->checkpoint_reason, p->checkpoint, p->checkpoint_seconds);
        if (g_metrics != NULL) {
            fprintf(g_metrics, "{\"type\": \"checkpoint\", \"epoch\": %llu, \"step\": %llu, "
                    "\"seconds\": %.6f, \"reason\": \"%s\"}\n", (unsigned long long)p->epoch,
                    (unsigned long long)p->step, p->checkpoint_seconds, p->checkpoint_reason);
            fflush(g_metrics);
        }
        return;
    }
    if (p->is_epoch) {
        char test[96] = "";
        if (p->has_test)
            snprintf(test, sizeof(test), ", test loss %.4f acc %.4f", p->test_loss, p->test_accuracy);
        dml_info("epoch %llu step %llu: loss %.4f acc %.4f%s, %.0f samples/s, compute %.0f%% "
                 "comm %.0f%% data %.0f%%",
                 (unsigned long long)p->epoch, (unsigned long long)p->step, p->loss, p->accuracy,
                 test, p->samples_per_s, 100 * p->compute, 100 * p->comm, 100 * p->data);
    }
    else
        dml_info("epoch %llu step %llu: loss %.4f acc %.4f lr %.4g, %.0f samples/s, compute %.0f%% "
                 "comm %.0f%% data %.0f%%",
                 (unsigned long long)p->epoch, (unsigned long long)p->step, p->loss, p->accuracy,
                 p->lr, p->samples_per_s, 100 * p->compute, 100 * p->comm, 100 * p->data);
    if (g_metrics != NULL) {
        fprintf(g_metrics,
                "{\"type\": \"%s\", \"epoch\": %llu, \"step\": %llu, \"loss\": %.6g, \"accuracy\": "
                "%.6g, \"lr\": %.6g, \"samples_per_s\": %.6g, \"compute\": %.4f, \"comm\": %.4f, "
                "\"data\": %.4f",
                p->is_epoch ? "epoch" : "step", (unsigned long long)p->epoch,
                (unsigned long long)p->step, p->loss, p->accuracy, p->lr, p->samples_per_s,
                p->compute, p->comm, p->data);
        if (p->has_test)
            fprintf(g_metrics, ", \"test_loss\": %.6g, \"test_accuracy\": %.6g", p->test_loss,
                    p->test_accuracy);
        fputs("}\n", g_metrics);
        fflush(g_metrics);
    }
}

/*
 * The tests' way to act at a chosen step instead of racing the clock:
 * DML_TEST_HOLD=STEP:FILE makes every rank, once STEP optimiser steps are
 * done, wait while FILE exists, before it reads its stop flag; rank 0
 * creates FILE.held when it starts waiting, and FILE.stop once a signal
 * has reached it (Slurm delivers scancel's signals asynchronously). A test
 * waits for FILE.held, sends its signal (and waits for FILE.stop) or kills
 * the ranks, and removes FILE: a signal that came to any rank meanwhile is
 * acted on at that very step. Unset, nothing happens.
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

static void hold_setup(dml_trainer_config_t *cfg, hold_t *h)
{
    const char *e = getenv("DML_TEST_HOLD"), *colon;
    char *end;

    if (e == NULL || (colon = strchr(e, ':')) == NULL)
        return;
    h->step = strtoull(e, &end, 10);
    if (end != colon || colon[1] == '\0')
        return;
    h->file = colon + 1;
    cfg->on_step = hold_at;
    cfg->on_step_arg = h;
}

/* An agreed failure before training: rank 0 prints it, every rank leaves. */
static int fail_before_training(dml_trainer_t *tr)
{
    if (g_rank == 0)
        dml_error("%s", dml_error_message());
    dml_trainer_free(tr);
    if (g_metrics)
        fclose(g_metrics);
    MPI_Finalize();
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"train", required_argument, 0, 'T'},     {"test", required_argument, 0, 't'},
        {"model", required_argument, 0, 'm'},     {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'b'},     {"accum", required_argument, 0, 'a'},
        {"optimizer", required_argument, 0, 'o'}, {"lr", required_argument, 0, 'l'},
        {"momentum", required_argument, 0, 'M'},  {"nesterov", no_argument, 0, 'n'},
        {"weight-decay", required_argument, 0, 'w'}, {"schedule", required_argument, 0, 's'},
        {"warmup", required_argument, 0, 'W'},    {"step-every", required_argument, 0, 'E'},
        {"gamma", required_argument, 0, 'g'},     {"clip", required_argument, 0, 'c'},
        {"seed", required_argument, 0, 'S'},      {"shuffle", required_argument, 0, 'h' + 256},
        {"cache", required_argument, 0, 'C'},     {"prefetch", required_argument, 0, 'p'},
        {"blas-threads", required_argument, 0, 'B'}, {"bucket-kb", required_argument, 0, 'K'},
        {"log-every", required_argument, 0, 'L'}, {"metrics", required_argument, 0, 'j'},
        {"output", required_argument, 0, 'O'},    {"help", no_argument, 0, 'h'},
        {"config", required_argument, 0, 'F'},
        {"checkpoint-dir", required_argument, 0, 'D' + 256},
        {"checkpoint-every", required_argument, 0, 'N' + 256},
        {"checkpoint-seconds", required_argument, 0, 'Z' + 256},
        {"keep", required_argument, 0, 'k' + 256}, {"resume", required_argument, 0, 'r' + 256},
        {"signals", required_argument, 0, 'x' + 256},
        {"time-margin", required_argument, 0, 'y' + 256},
        {"grad-reduce", required_argument, 0, 'R' + 256}, {0, 0, 0, 0}};
    dml_trainer_config_t cfg;
    dml_trainer_t *tr = NULL;
    const char *model = NULL, *metrics = NULL, *output = NULL, *resume = "auto";
    const char *signals = "USR1,USR2,TERM";
    dml_resume_info_t ri;
    hold_t hold = {0, NULL};
    double v, momentum = -1, wd = -1;
    int provided, c, rc = 0, threads = 1, nesterov = 0, opt_type = DML_OPT_SGD;
    dml_status_t st;

    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    dml_log_init("dml-train", -1);
    dml_log_set_rank(g_size > 1 ? g_rank : -1);
    dml_trainer_config_init(&cfg);
    argv = with_config(&argc, argv, opts, &rc);
    if (dml_mpi_agree(MPI_COMM_WORLD, argv == NULL ? DML_ERR_INVALID_ARG : DML_OK, NULL) != DML_OK) {
        if (g_rank == 0)
            dml_error("%s", dml_error_message());
        MPI_Finalize();
        return 2;
    }

    /* Every rank parses the same arguments: all refuse alike, none waits. */
    while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'T': cfg.train_dir = optarg; break;
        case 't': cfg.test_dir = optarg; break;
        case 'm': model = optarg; break;
        case 'e': rc = num("--epochs", optarg, 1, 1e6, &v); cfg.epochs = (int)v; break;
        case 'b': rc = num("--batch", optarg, 1, 1 << 20, &v); cfg.batch = (int)v; break;
        case 'a': rc = num("--accum", optarg, 1, 1 << 16, &v); cfg.accum = (int)v; break;
        case 'o':
            if (strcmp(optarg, "sgd") == 0) opt_type = DML_OPT_SGD;
            else if (strcmp(optarg, "adamw") == 0) opt_type = DML_OPT_ADAMW;
            else rc = bad("--optimizer", optarg, "sgd or adamw");
            break;
        case 'l': rc = num("--lr", optarg, 1e-30, 1e30, &v); cfg.lr.base = (float)v; break;
        case 'M': rc = num("--momentum", optarg, 0, 0.999999, &momentum); break;
        case 'n': nesterov = 1; break;
        case 'w': rc = num("--weight-decay", optarg, 0, 1e3, &wd); break;
        case 's':
            if (strcmp(optarg, "constant") == 0) cfg.lr.kind = DML_LR_CONSTANT;
            else if (strcmp(optarg, "step") == 0) cfg.lr.kind = DML_LR_STEP;
            else if (strcmp(optarg, "cosine") == 0) cfg.lr.kind = DML_LR_COSINE;
            else rc = bad("--schedule", optarg, "constant, step or cosine");
            break;
        case 'W': rc = num("--warmup", optarg, 0, 1e12, &v); cfg.lr.warmup = (uint64_t)v; break;
        case 'E': rc = num("--step-every", optarg, 1, 1e12, &v); cfg.lr.step_every = (uint64_t)v; break;
        case 'g': rc = num("--gamma", optarg, 0, 1, &v); cfg.lr.gamma = (float)v; break;
        case 'c': rc = num("--clip", optarg, 0, 1e12, &cfg.clip); break;
        case 'S': rc = num("--seed", optarg, 0, 1e18, &v); cfg.seed = (uint64_t)v; break;
        case 'h' + 256:
            if (strcmp(optarg, "full") == 0) cfg.shuffle = DML_SHUFFLE_FULL;
            else if (strcmp(optarg, "window") == 0) cfg.shuffle = DML_SHUFFLE_WINDOW;
            else if (strcmp(optarg, "none") == 0) cfg.shuffle = DML_SHUFFLE_NONE;
            else rc = bad("--shuffle", optarg, "full, window or none");
            break;
        case 'C':
            if (strcmp(optarg, "auto") == 0) cfg.cache = DML_CACHE_AUTO;
            else if (strcmp(optarg, "on") == 0) cfg.cache = DML_CACHE_ON;
            else if (strcmp(optarg, "off") == 0) cfg.cache = DML_CACHE_OFF;
            else rc = bad("--cache", optarg, "auto, on or off");
            break;
        case 'p': rc = num("--prefetch", optarg, 0, 1024, &v); cfg.prefetch = (int)v; break;
        case 'B': rc = num("--blas-threads", optarg, 1, 1024, &v); threads = (int)v; break;
        case 'R' + 256:
            if (strcmp(optarg, "auto") == 0) cfg.grad_reduce = DML_DP_AUTO;
            else if (strcmp(optarg, "allreduce") == 0) cfg.grad_reduce = DML_DP_ALLREDUCE;
            else if (strcmp(optarg, "shared") == 0) cfg.grad_reduce = DML_DP_SHARED;
            else rc = bad("--grad-reduce", optarg, "auto, allreduce or shared");
            break;
        case 'K': rc = num("--bucket-kb", optarg, 1, 1 << 22, &v); cfg.bucket_bytes = (size_t)v * 1024; break;
        case 'L': rc = num("--log-every", optarg, 0, 1e12, &v); cfg.log_every = (int)v; break;
        case 'j': metrics = optarg; break;
        case 'O': output = optarg; break;
        case 'F': break; /* read by with_config */
        case 'D' + 256: cfg.ckpt_dir = optarg; break;
        case 'N' + 256: rc = num("--checkpoint-every", optarg, 0, 1e15, &v); cfg.ckpt_every = (uint64_t)v; break;
        case 'Z' + 256: rc = num("--checkpoint-seconds", optarg, 0, 1e9, &cfg.ckpt_seconds); break;
        case 'k' + 256: rc = num("--keep", optarg, 0, 1e6, &v); cfg.ckpt_keep = (int)v; break;
        case 'r' + 256: resume = optarg; break;
        case 'x' + 256: signals = optarg; break;
        case 'y' + 256: rc = num("--time-margin", optarg, 0, 1e9, &cfg.deadline_margin); break;
        case 'h':
            if (g_rank == 0)
                usage(stdout);
            MPI_Finalize();
            return 0;
        default: rc = 2; break;
        }
    }
    if (rc == 0 && (cfg.train_dir == NULL || model == NULL || optind != argc)) {
        if (g_rank == 0)
            dml_error("--train and --model are required (see --help)");
        rc = 2;
    }
    if (rc == 0 && dml_model_spec_parse(model, &cfg.spec) != DML_OK) {
        if (g_rank == 0)
            dml_error("--model: %s", dml_error_message());
        rc = 2;
    }
    if (rc == 0 && cfg.ckpt_dir != NULL && dml_ckpt_signals_install(signals, &g_stop) != DML_OK) {
        if (g_rank == 0)
            dml_error("--signals: %s", dml_error_message());
        rc = 2;
    }
    if (rc != 0) {
        MPI_Finalize();
        return rc;
    }
    if (cfg.ckpt_dir != NULL) {
        cfg.stop = &g_stop;
        /* A write past a file size limit must fail with EFBIG and be
         * reported, not kill the process half-way through a checkpoint. */
        signal(SIGXFSZ, SIG_IGN);
        /* Rank 0 asks slurmctld once; the loop compares on rank 0 only. */
        if (g_rank == 0 && getenv("SLURM_JOB_ID") != NULL) {
            time_t end;
            if (dml_ckpt_slurm_end_time(&end) == DML_OK) {
                cfg.deadline = (double)end;
                if (end != 0)
                    dml_info("job %s ends in %.0f s: checkpoint and stop %.0f s before",
                             getenv("SLURM_JOB_ID"), difftime(end, time(NULL)), cfg.deadline_margin);
            } else {
                dml_warn("%s; only signals stop training early", dml_error_message());
            }
        }
    }
    dml_opt_config_init(&cfg.opt, (dml_opt_type_t)opt_type);
    if (momentum >= 0)
        cfg.opt.momentum = (float)momentum;
    if (wd >= 0)
        cfg.opt.weight_decay = (float)wd;
    cfg.opt.nesterov = nesterov;
    hold_setup(&cfg, &hold);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif

    st = dml_trainer_create(MPI_COMM_WORLD, &cfg, &tr);
    if (st == DML_OK && cfg.ckpt_dir != NULL && g_rank == 0)
        st = dml_ckpt_dir_prepare(cfg.ckpt_dir);
    if (st == DML_OK && metrics != NULL && g_rank == 0 && (g_metrics = fopen(metrics, "w")) == NULL)
        st = dml_error_set_errno(errno, "%s: cannot open the metrics file", metrics);
    st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL);
    if (st != DML_OK)
        return fail_before_training(tr);
    if (g_rank == 0 && getenv("SLURM_JOB_ID") != NULL)
        dml_info("Slurm job %s%s%s, restart %s, nodes %s", getenv("SLURM_JOB_ID"),
                 getenv("SLURM_ARRAY_TASK_ID") ? " array task " : "",
                 getenv("SLURM_ARRAY_TASK_ID") ? getenv("SLURM_ARRAY_TASK_ID") : "",
                 getenv("SLURM_RESTART_COUNT") ? getenv("SLURM_RESTART_COUNT") : "0",
                 getenv("SLURM_JOB_NODELIST") ? getenv("SLURM_JOB_NODELIST") : "?");
    if (g_rank == 0) {
        char spec[256];
        dml_model_spec_format(&cfg.spec, spec, sizeof(spec));
        dml_info("training %s on %s%s%s: %d ranks x batch %d x accum %d = global batch %d, %d epochs, "
                 "%s lr %g (%s, warm-up %llu), momentum %g%s, weight decay %g, clip %g, seed %llu, "
                 "%llu parameters, gradients summed by %s",
                 spec, cfg.train_dir, cfg.test_dir ? ", testing on " : "",
                 cfg.test_dir ? cfg.test_dir : "", g_size, cfg.batch, cfg.accum,
                 g_size * cfg.batch * cfg.accum, cfg.epochs,
                 opt_type == DML_OPT_SGD ? "SGD" : "AdamW", (double)cfg.lr.base,
                 cfg.lr.kind == DML_LR_CONSTANT ? "constant" : cfg.lr.kind == DML_LR_STEP ? "step" : "cosine",
                 (unsigned long long)cfg.lr.warmup, (double)cfg.opt.momentum,
                 nesterov ? " (Nesterov)" : "", (double)cfg.opt.weight_decay, cfg.clip,
                 (unsigned long long)cfg.seed,
                 (unsigned long long)dml_model_nparams(dml_trainer_model(tr)),
                 dml_trainer_grad_reduce(tr) == DML_DP_SHARED ? "shared memory (one node)"
                                                               : "bucketed MPI allreduce");
    }
    if (strcmp(resume, "never") != 0 && (cfg.ckpt_dir != NULL || strcmp(resume, "auto") != 0)) {
        st = dml_trainer_resume(tr, strcmp(resume, "auto") == 0 ? cfg.ckpt_dir : resume, skipped,
                                NULL, &ri);
        if (st != DML_OK)
            return fail_before_training(tr);
        if (g_rank == 0 && ri.resumed)
            dml_info("resumed from %s: step %llu, epoch %llu, saved by %d rank%s, now %d",
                     ri.path, (unsigned long long)ri.step, (unsigned long long)ri.epoch,
                     ri.world_size, ri.world_size == 1 ? "" : "s", g_size);
    }
    st = dml_trainer_run(tr, report, NULL);
    if (st == DML_OK && output != NULL)
        st = dml_trainer_save_model(tr, output);
    if (st == DML_ERR_INTERRUPTED) {
        if (g_rank == 0)
            dml_info("%s; exit %d: requeue the job to continue", dml_error_message(),
                     DML_CKPT_EXIT_REQUEUE);
        rc = DML_CKPT_EXIT_REQUEUE;
    } else if (st != DML_OK) {
        if (g_rank == 0)
            dml_error("%s%s", dml_error_message(),
                      output && st == DML_ERR_NUMERIC ? " (no model written)" : "");
        rc = 1;
    } else if (output != NULL && g_rank == 0) {
        dml_info("model written to %s", output);
    }
    if (g_metrics)
        fclose(g_metrics);
    dml_trainer_free(tr);
    MPI_Finalize();
    return rc;
}
