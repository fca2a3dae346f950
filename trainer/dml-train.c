/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-train: data-parallel training of a feed-forward network on a sharded
 * dataset. Launch it with srun --mpi=pmix or mpirun; every rank reads its part
 * of each global batch, gradients are summed across ranks. The work is in
 * dml_train.h; this file runs it and prints. The settings (options,
 * --config file, --help, --print-config, the text the ranks compare) are
 * config_table.c's table, read and shown by config_parse.c (train_config.h).
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
#include "train_config.h"

#include <errno.h>
#include <jansson.h>
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
static const char *g_metrics_path;
static volatile sig_atomic_t g_stop;

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
static dml_status_t agree_options(const dml__train_settings_t *o)
{
    char mine[8192], theirs[8192], a[512], b[512];
    dml_status_t st = DML_OK;
    int i;

    dml__settings_text(o, mine, sizeof(mine));
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
static dml_status_t check_outputs(const dml__train_settings_t *o)
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
    if (o->train.ckpt_dir != NULL) {
        snprintf(index, sizeof(index), "%s/index.h5", o->train.ckpt_dir);
        if (dml__h5_file_format(index, kind, sizeof(kind)) == 0 &&
            strcmp(kind, DML_DATASET_FORMAT) == 0)
            return dml_error_set(DML_ERR_EXISTS,
                                 "--checkpoint-dir %s: is a dataset: checkpoints "
                                 "go to a directory of their own",
                                 o->train.ckpt_dir);
        if ((st = dml_ckpt_dir_prepare(o->train.ckpt_dir)) != DML_OK)
            return st;
    }
    return DML_OK;
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
static int stopped(const dml__train_settings_t *o)
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

/* Whether the command line asks for what needs no MPI: --help, --check,
 * --print-config (looked for in argv too, where parsing stopped at an
 * error before it, so that the error is printed here, not agreed on across
 * ranks). */
static int without_mpi(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--check") == 0 || strcmp(argv[i], "--help") == 0 ||
            strncmp(argv[i], "--print-config", 14) == 0)
            return 1;
    return 0;
}

/* The signals that checkpoint and stop, where checkpoints are written: a
 * bad --signals is an option error like any other. */
static int install_signals(const dml__train_settings_t *s)
{
    if (s->train.ckpt_dir == NULL || dml_ckpt_signals_install(s->signals, &g_stop) == DML_OK)
        return 0;
    dml_error_set(DML_ERR_INVALID_ARG, "--signals: %s", dml_error_message());
    return 2;
}

/* --help, --check and --print-config, answered from the command line and
 * the --config file alone: what a pipeline does before it submits
 * anything. rc is dml__settings_parse's. */
static int answer_without_mpi(const dml__train_settings_t *s, int rc)
{
    char *text;

    if (rc == 0)
        rc = install_signals(s);
    if (rc == 2) {
        dml_error("%s", dml_error_message());
        return 2;
    }
    if (rc == 1)
        text = dml__config_help();
    else if (s->print == DML__PRINT_JSON)
        text = dml__settings_json_text(s);
    else if (s->print == DML__PRINT_INI) {
        char none[1];
        size_t n = (size_t)dml__settings_ini_text(s, none, sizeof(none)) + 1;
        if ((text = malloc(n)) != NULL)
            dml__settings_ini_text(s, text, n);
    } else {
        printf("dml-train: options and model %s are valid\n", s->model);
        return 0;
    }
    if (text == NULL) {
        dml_error("no memory for the %s", rc == 1 ? "help" : "configuration");
        return 1;
    }
    fputs(text, stdout);
    if (s->print == DML__PRINT_JSON)
        putchar('\n');
    free(text);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}

/* Collective: every rank parsed its own command line (rc, parse's); the
 * ranks agree on any error, then on the settings. 0, or 2 once rank 0 has
 * printed why. */
static int agree_on_settings(const dml__train_settings_t *s, int rc)
{
    dml_status_t st;
    int failed_rank;

    if (rc == 0)
        rc = install_signals(s);
    st = dml_mpi_agree(MPI_COMM_WORLD, rc == 2 ? dml_error_status() : DML_OK, &failed_rank);
    if (st == DML_OK)
        st = agree_options(s);
    else if (failed_rank > 0 && g_rank == 0) {
        dml_error("rank %d: %s", failed_rank, dml_error_message());
        return 2;
    }
    if (st == DML_OK)
        return 0;
    if (g_rank == 0)
        dml_error("%s", dml_error_message());
    return 2;
}

/* Rank 0 asks slurmctld once for the job's end; the loop compares on rank
 * 0 only. */
static void ask_end_time(dml_trainer_config_t *cfg, uint32_t job)
{
    time_t end;

    if (g_rank != 0 || job == 0)
        return;
    if (dml__slurm_end_time(job, &end) != DML_OK) {
        dml_warn("%s; only signals stop training early", dml_error_message());
        return;
    }
    cfg->deadline = (double)end;
    if (end != 0)
        dml_info("job %u ends in %.0f s: checkpoint and stop %.0f s before", job,
                 difftime(end, time(NULL)), cfg->deadline_margin);
}

/* Rank 0's line on what is about to be trained, and how. */
static void say_what(const dml__train_settings_t *s, dml_trainer_t *tr, uint32_t job)
{
    const dml_trainer_config_t *cfg = &s->train;
    dml_model_t *m = dml_trainer_model(tr);
    const char *note = dml_trainer_device_note(tr);
    char spec[DML_MODEL_SPEC_MAX], device[384];

    if (g_rank != 0)
        return;
    if (job != 0)
        dml_info("Slurm job %u%s%s, restart %s, nodes %s", job,
                 getenv("SLURM_ARRAY_TASK_ID") ? " array task " : "",
                 getenv("SLURM_ARRAY_TASK_ID") ? getenv("SLURM_ARRAY_TASK_ID") : "",
                 getenv("SLURM_RESTART_COUNT") ? getenv("SLURM_RESTART_COUNT") : "0",
                 getenv("SLURM_JOB_NODELIST") ? getenv("SLURM_JOB_NODELIST") : "?");
    dml_model_spec_format(&cfg->spec, spec, sizeof(spec));
    if (dml_model_device(m)->kind == DML_DEVICE_CPU)
        snprintf(device, sizeof(device), "the CPU");
    else
        dml_device_format(dml_model_device(m), device, sizeof(device));
    dml_info("training %s on %s%s%s: %d ranks x batch %d x accum %d = global batch %d, %d epochs, "
             "%s lr %g (%s, warm-up %llu), momentum %g%s, weight decay %g, clip %g, seed %llu, "
             "%llu parameters, gradients summed by %s, on %s%s%s%s",
             spec, cfg->train_dir, cfg->test_dir ? ", testing on " : "",
             cfg->test_dir ? cfg->test_dir : "", g_size, cfg->batch, cfg->accum,
             g_size * cfg->batch * cfg->accum, cfg->epochs,
             cfg->opt.type == DML_OPT_SGD ? "SGD" : "AdamW", (double)cfg->lr.base,
             cfg->lr.kind == DML_LR_CONSTANT ? "constant"
             : cfg->lr.kind == DML_LR_STEP   ? "step"
                                             : "cosine",
             (unsigned long long)cfg->lr.warmup, (double)cfg->opt.momentum,
             cfg->opt.nesterov ? " (Nesterov)" : "", (double)cfg->opt.weight_decay, cfg->clip,
             (unsigned long long)cfg->seed, (unsigned long long)dml_model_nparams(m),
             dml_trainer_grad_reduce(tr) == DML_DP_SHARED ? "shared memory (one node)"
                                                          : "bucketed MPI allreduce",
             device, *note ? " (--device auto: " : "", note, *note ? ")" : "");
}

/* Collective: --resume never sets the directory's checkpoints aside (a new
 * run); otherwise training continues from the newest one that loads. */
static dml_status_t resume_or_begin(const dml__train_settings_t *s, dml_trainer_t *tr,
                                    dml_resume_info_t *ri)
{
    const char *dir = s->train.ckpt_dir;
    dml_status_t st;

    memset(ri, 0, sizeof(*ri));
    if (strcmp(s->resume, "never") == 0) {
        char moved[4096] = "";
        st = g_rank == 0 ? dml_ckpt_dir_set_aside(dir, moved, sizeof(moved)) : DML_OK;
        if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) == DML_OK && g_rank == 0 &&
            moved[0] != '\0')
            dml_info("--resume never: a new run in %s; the checkpoints of the run before it are "
                     "kept in %s",
                     dir, moved);
        return st;
    }
    if (dir == NULL && strcmp(s->resume, "auto") == 0)
        return DML_OK;
    st =
        dml_trainer_resume(tr, strcmp(s->resume, "auto") == 0 ? dir : s->resume, skipped, NULL, ri);
    if (st == DML_OK && g_rank == 0 && ri->resumed)
        dml_info("resumed from %s: step %llu, epoch %llu, saved by %d rank%s, now %d", ri->path,
                 (unsigned long long)ri->step, (unsigned long long)ri->epoch + 1, ri->world_size,
                 ri->world_size == 1 ? "" : "s", g_size);
    return st;
}

/* Collective: trains, writes the model, closes the metrics; the exit
 * status. */
static int train(const dml__train_settings_t *s, dml_trainer_t *tr)
{
    dml_status_t st = dml_trainer_run(tr, report, NULL);

    if (st == DML_OK && s->output != NULL)
        st = dml_trainer_save_model(tr, s->output);
    if (g_metrics != NULL) {
        if (fclose(g_metrics) != 0 && st == DML_OK)
            st = dml_error_set_errno(errno, "%s: cannot write the metrics", s->metrics);
        g_metrics = NULL;
    }
    if (st == DML_ERR_INTERRUPTED)
        return stopped(s);
    if (st != DML_OK) {
        if (g_rank == 0)
            dml_error("%s%s", dml_error_message(),
                      s->output && st == DML_ERR_NUMERIC ? " (no model written)" : "");
        return 1;
    }
    if (s->output != NULL && g_rank == 0)
        dml_info("model written to %s", s->output);
    return 0;
}

/* The settings outlive main's returns (the file's values back them). */
static dml__train_settings_t g_settings;

static void free_settings(void)
{
    dml__settings_free(&g_settings);
}

int main(int argc, char **argv)
{
    dml__train_settings_t *s = &g_settings;
    dml_trainer_config_t *cfg = &s->train;
    dml_trainer_t *tr = NULL;
    dml_resume_info_t ri;
#ifdef DML_TEST_HOOKS
    hold_t hold = {0, NULL};
#endif
    int provided, rc;
    uint32_t job;
    dml_status_t st;

    dml_log_init("dml-train", -1);
    dml__settings_init(s);
    atexit(free_settings);
    rc = dml__settings_parse(s, argc, argv);
    /* parse's result too: getopt takes --print or --hel for the option */
    if (without_mpi(argc, argv) || rc == 1 || s->check || s->print)
        return answer_without_mpi(s, rc);
    if (dml_tool_launch_check("dml-train"))
        return 2;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    dml_tool_hdf5_quiet();
    dml_log_set_rank(g_size > 1 ? g_rank : -1);
    if ((rc = agree_on_settings(s, rc)) != 0) {
        MPI_Finalize();
        return rc;
    }
    cfg->on_stall = stalled;
    st = g_rank == 0 ? check_outputs(s) : DML_OK;
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return fail_before_training(NULL, 1);

    job = slurm_job();
    if (cfg->ckpt_dir != NULL) {
        cfg->stop = &g_stop;
        /* A write past a file size limit must fail with EFBIG and be
         * reported, not kill the process half-way through a checkpoint. */
        signal(SIGXFSZ, SIG_IGN);
        ask_end_time(cfg, job);
    }
#ifdef DML_TEST_HOOKS
    test_hooks(cfg, &hold);
#endif
    /* how checkpoints are written: the environment's overrides (docs/checkpoints.md) */
    dml_ckpt_config_env(&cfg->ckpt);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(s->blas_threads);
    dml_nn_set_threads(s->blas_threads);
#endif

    if ((st = dml_trainer_create(MPI_COMM_WORLD, cfg, &tr)) != DML_OK)
        return fail_before_training(tr, 1);
    say_what(s, tr, job);
    if (s->output != NULL && dml_trainer_check_output_space(tr, s->output) != DML_OK)
        return fail_before_training(tr, 1);
    if (resume_or_begin(s, tr, &ri) != DML_OK)
        return fail_before_training(tr, 1);
    /* Metrics: continued where a run resumes, new otherwise. */
    st = DML_OK;
    if (s->metrics != NULL && g_rank == 0) {
        g_metrics_path = s->metrics;
        if ((g_metrics = fopen(s->metrics, ri.resumed ? "a" : "w")) == NULL)
            st = dml_error_set_errno(errno, "%s: cannot open the metrics file", s->metrics);
    }
    if ((st = dml_mpi_agree(MPI_COMM_WORLD, st, NULL)) != DML_OK)
        return fail_before_training(tr, 1);
    rc = train(s, tr);
    dml_trainer_free(tr);
    MPI_Finalize();
    return rc;
}
