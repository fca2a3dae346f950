/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-infer: batch inference as Slurm array jobs (libdml_infer).
 *
 *   dml-infer run    --model M --input D --out DIR [--task I --tasks N] ...
 *   dml-infer status --out DIR [--array-list]
 *   dml-infer merge  --out DIR [--drift-threshold X] ...
 *
 * In an array job the part is the array index (SLURM_ARRAY_TASK_ID): submit
 * with --array=0-(N-1), and resubmit the parts `status` lists with exactly
 * those indices.
 */
#include "config.h"

#include "dml_infer.h"
#include "dml_log.h"
#include "dml_registry.h"
#include "dml_nn.h"

#include <hdf5.h>

#include "dml_tool.h"

#include <getopt.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: dml-infer COMMAND [OPTIONS]\n\n"
           "Commands:\n"
           "  run     compute one part of an inference run (one array task; may run on\n"
           "          several MPI ranks under srun)\n"
           "  status  which parts are complete, missing, stale or corrupt; the --array=\n"
           "          list that resubmits the rest. Exit 0: all complete, 3: not\n"
           "  merge   verify every part, write OUT/predictions.h5 and the report\n"
           "          (OUT/report.json, OUT/report.txt). Exit 3: parts missing\n\n"
           "run options:\n"
           "  --model PATH      model file, checkpoint, or checkpoint directory (newest);\n"
           "                    REGISTRY:REF a registry's version or alias (dml-registry)\n"
           "  --input DIR       dataset (dml-data's format)\n"
           "  --out DIR         the run's output directory\n"
           "  --task I          this part [SLURM_ARRAY_TASK_ID]\n"
           "  --tasks N         number of parts [the run's manifest, else\n"
           "                    SLURM_ARRAY_TASK_COUNT of an array starting at 0]\n"
           "  --batch B         samples per forward pass, the unit parts and ranks are\n"
           "                    cut in [the run's manifest, else 1024]\n"
           "  --blas-threads N  BLAS and convolution threads per rank [1: one rank per core]; the\n"
           "                    run's manifest records it (results depend on it)\n"
           "  --device cpu|cuda|cuda:N|auto   where the forward passes run: cuda, each rank\n"
           "                    the GPU of its rank on the node; auto: cuda where a GPU is\n"
           "                    seen and the network runs there (so far dense, relu,\n"
           "                    dropout, flatten), else the CPU; the manifest records the\n"
           "                    kind, which every part shares [cpu]\n"
           "  --topk K          class probabilities kept per sample [3]\n"
           "  --no-verify       skip the input shards' checksums\n"
           "  --drift-every K   count every K-th sample into the drift histograms [4]\n"
           "  --replace         OUT belongs to another model or input: redo it for this one\n\n"
           "status options:\n"
           "  --out DIR, --array-list (print only the indices to resubmit, e.g. 1,3)\n\n"
           "merge options:\n"
           "  --out DIR\n"
           "  --drift-threshold X   PSI above which a feature group counts as drifted [0.1]\n"
           "  --predictions FILE    [OUT/predictions.h5]\n"
           "  --report PREFIX       writes PREFIX.json and PREFIX.txt [OUT/report]\n\n"
           "Exit status: 0 done, 1 failed, 2 usage error, 3 parts not complete.\n"
           "Messages go to stderr; DML_LOG_LEVEL=debug shows more.\n");
}

static int parse_u32(const char *opt, const char *s, uint32_t *v)
{
    char *end;
    unsigned long x = strtoul(s, &end, 10);

    if (*s == '\0' || *end != '\0' || *s == '-' || x > 0xffffffffUL) {
        dml_error("%s '%s': not a non-negative integer", opt, s);
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

/* A whole number from lo to hi, or a message naming the option. */
static int parse_in(const char *opt, const char *s, uint32_t lo, uint32_t hi, uint32_t *v)
{
    if (parse_u32(opt, s, v) != 0)
        return -1;
    if (*v < lo || *v > hi) {
        dml_error("%s '%s': expected %u to %u", opt, s, lo, hi);
        return -1;
    }
    return 0;
}

enum {
    OPT_MODEL = 256,
    OPT_INPUT,
    OPT_OUT,
    OPT_TASK,
    OPT_TASKS,
    OPT_BATCH,
    OPT_TOPK,
    OPT_NOVERIFY,
    OPT_REPLACE,
    OPT_ARRAYLIST,
    OPT_DRIFT,
    OPT_PRED,
    OPT_REPORT,
    OPT_HELP,
    OPT_DRIFT_EVERY,
    OPT_BLAS_THREADS,
    OPT_DEVICE
};

static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                     {"input", required_argument, NULL, OPT_INPUT},
                                     {"out", required_argument, NULL, OPT_OUT},
                                     {"task", required_argument, NULL, OPT_TASK},
                                     {"tasks", required_argument, NULL, OPT_TASKS},
                                     {"batch", required_argument, NULL, OPT_BATCH},
                                     {"topk", required_argument, NULL, OPT_TOPK},
                                     {"no-verify", no_argument, NULL, OPT_NOVERIFY},
                                     {"replace", no_argument, NULL, OPT_REPLACE},
                                     {"array-list", no_argument, NULL, OPT_ARRAYLIST},
                                     {"drift-threshold", required_argument, NULL, OPT_DRIFT},
                                     {"predictions", required_argument, NULL, OPT_PRED},
                                     {"report", required_argument, NULL, OPT_REPORT},
                                     {"help", no_argument, NULL, OPT_HELP},
                                     {"drift-every", required_argument, NULL, OPT_DRIFT_EVERY},
                                     {"blas-threads", required_argument, NULL, OPT_BLAS_THREADS},
                                     {"device", required_argument, NULL, OPT_DEVICE},
                                     {NULL, 0, NULL, 0}};

typedef struct {
    dml_infer_config_t run;
    dml_infer_merge_config_t merge;
    int have_task, have_tasks, array_list;
} options_t;

static char g_model_path[4400];

static int parse(int argc, char **argv, options_t *o)
{
    uint32_t v;
    char *end;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_MODEL:
            o->run.model = optarg;
            break;
        case OPT_INPUT:
            o->run.input = optarg;
            break;
        case OPT_OUT:
            o->run.out = optarg;
            break;
        case OPT_TASK:
            if (parse_u32("--task", optarg, &o->run.task) != 0)
                return -1;
            o->have_task = 1;
            break;
        case OPT_TASKS:
            if (parse_in("--tasks", optarg, 1, 0xffffffffu, &o->run.tasks) != 0)
                return -1;
            o->have_tasks = 1;
            break;
        case OPT_BATCH:
            if (parse_in("--batch", optarg, 1, 1u << 20, &v) != 0)
                return -1;
            o->run.batch = (int)v;
            break;
        case OPT_BLAS_THREADS:
            if (parse_in("--blas-threads", optarg, 1, 1024, &v) != 0)
                return -1;
            o->run.blas_threads = (int)v;
            break;
        case OPT_DEVICE:
            if (!dml_device_name_valid(optarg)) {
                dml_error("--device '%s': expected cpu, cuda, cuda:N or auto", optarg);
                return -1;
            }
            o->run.device = optarg;
            break;
        case OPT_TOPK:
            if (parse_u32("--topk", optarg, &v) != 0)
                return -1;
            o->run.topk = v > 1000 ? -1 : (int)v;
            break;
        case OPT_NOVERIFY:
            o->run.verify = 0;
            break;
        case OPT_DRIFT_EVERY:
            if (parse_u32("--drift-every", optarg, &v) != 0)
                return -1;
            o->run.drift_every = v > 1000000 ? -1 : (int)v;
            break;
        case OPT_REPLACE:
            o->run.replace = 1;
            break;
        case OPT_ARRAYLIST:
            o->array_list = 1;
            break;
        case OPT_DRIFT:
            o->merge.drift_threshold = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(o->merge.drift_threshold > 0)) {
                dml_error("--drift-threshold '%s': not a positive number", optarg);
                return -1;
            }
            break;
        case OPT_PRED:
            o->merge.predictions = optarg;
            break;
        case OPT_REPORT:
            o->merge.report = optarg;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        dml_error("unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (o->run.out == NULL) {
        dml_error("--out DIR is required");
        return -1;
    }
    return 0;
}

/* The part and the number of parts, from the options or the array job. */
static int resolve_task(options_t *o)
{
    const char *id = getenv("SLURM_ARRAY_TASK_ID"), *cnt = getenv("SLURM_ARRAY_TASK_COUNT"),
               *min = getenv("SLURM_ARRAY_TASK_MIN");
    dml_infer_manifest_t m;

    if (!o->have_task) {
        if (id == NULL) {
            dml_error("no part given: use --task I (and --tasks N), or run as an array task");
            return -1;
        }
        if (parse_u32("SLURM_ARRAY_TASK_ID", id, &o->run.task) != 0)
            return -1;
    }
    if (o->have_tasks)
        return 0;
    if (dml_infer_manifest_read(o->run.out, &m) == DML_OK) {
        o->run.tasks = m.tasks;
        return 0;
    }
    if (cnt == NULL) {
        dml_error("no number of parts given: use --tasks N");
        return -1;
    }
    if (min != NULL && strcmp(min, "0") != 0) {
        dml_error("array indices start at %s: the array's indices are the part numbers, so "
                  "the first submission must be --array=0-N (or give --tasks)",
                  min);
        return -1;
    }
    return parse_u32("SLURM_ARRAY_TASK_COUNT", cnt, &o->run.tasks);
}

#ifdef DML_TEST_HOOKS
/* The tests' hook, built only with configure --enable-test-hooks:
 * DML_INFER_CRASH="TASK:FLAG" kills part TASK's process with SIGKILL once
 * its part is written under the temporary name but not yet committed (a
 * task killed midway), if the file FLAG exists; FLAG is removed first, so
 * that the rerun of the part goes through. */
static void crash_at(void *arg, uint32_t task, const char *phase)
{
    const char *e = arg, *colon = strchr(e, ':');
    char *end;

    if (colon == NULL || strcmp(phase, "written") != 0 || strtoul(e, &end, 10) != task ||
        end != colon)
        return;
    if (unlink(colon + 1) == 0)
        raise(SIGKILL);
}

static void test_hooks(dml_infer_config_t *c)
{
    const char *e = getenv("DML_INFER_CRASH");

    if (e != NULL && strchr(e, ':') != NULL) {
        c->on_part = crash_at;
        c->on_part_arg = (void *)e;
    }
}
#endif

static int cmd_run(options_t *o)
{
    dml_infer_result_t res;
    dml_status_t st;
    int provided, rank = 0, size = 1, rc;

    if (dml_tool_launch_check("dml-infer run"))
        return 2;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    dml_tool_hdf5_quiet();
    dml_log_set_rank(size > 1 ? rank : -1);
    rc = resolve_task(o);
    /* Every rank parsed the same options and environment: they agree. */
    if (rc != 0) {
        MPI_Finalize();
        return 2;
    }
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(o->run.blas_threads);
    dml_nn_set_threads(o->run.blas_threads);
#ifdef DML_TEST_HOOKS
    test_hooks(&o->run);
#endif
#endif
    st = dml_infer_run(MPI_COMM_WORLD, &o->run, &res);
    if (st != DML_OK) {
        if (rank == 0)
            dml_error("part %u of %u: %s (nothing written)", o->run.task, o->run.tasks,
                      dml_error_message());
        MPI_Finalize();
        return 1;
    }
    if (rank == 0) {
        if (res.skipped)
            dml_info("part %u of %u (samples %llu+%llu) is complete for model %s and input %s: "
                     "nothing to do",
                     o->run.task, o->run.tasks, (unsigned long long)res.first,
                     (unsigned long long)res.count, res.model_hash, res.input_hash);
        else {
            if (res.redone)
                dml_info("redone: %s", res.redone_why);
            dml_info("part %u of %u: %llu samples (%llu+) in batches of %d on %d rank(s) (%s) in "
                     "%.2f s, %.0f samples/s: %s",
                     o->run.task, o->run.tasks, (unsigned long long)res.count,
                     (unsigned long long)res.first, res.batch, size, res.device, res.seconds,
                     res.samples_per_s, res.part);
        }
    }
    MPI_Finalize();
    return 0;
}

static int cmd_status(options_t *o)
{
    dml_infer_manifest_t m;
    char why[1024], list[8192] = "";
    size_t used = 0;
    uint32_t t, done = 0;

    if (dml_infer_manifest_read(o->run.out, &m) != DML_OK) {
        dml_error("%s", dml_error_message());
        return 1;
    }
    for (t = 0; t < m.tasks; t++) {
        dml_part_state_t s = dml_infer_part_check(o->run.out, &m, t, why, sizeof(why));
        if (s == DML_PART_COMPLETE)
            done++;
        else if (used + 16 < sizeof(list))
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u", used ? "," : "", t);
        if (!o->array_list)
            printf("part %u: %s%s%s\n", t, dml_part_state_name(s),
                   s == DML_PART_COMPLETE ? "" : ": ", s == DML_PART_COMPLETE ? "" : why);
    }
    if (o->array_list) {
        if (done < m.tasks)
            printf("%s\n", list);
    } else {
        printf("%u of %u parts complete (model %s, input %s)\n", done, m.tasks, m.model_hash,
               m.input_hash);
        if (done < m.tasks)
            printf("resubmit: --array=%s\n", list);
    }
    return done == m.tasks ? 0 : DML_INFER_EXIT_INCOMPLETE;
}

/* Each part not complete, named; *arg counts them. */
static void report_part(void *arg, uint32_t task, dml_part_state_t s, const char *why)
{
    (*(uint32_t *)arg)++;
    dml_error("part %u is %s: %s", task, dml_part_state_name(s), why);
}

static int cmd_merge(options_t *o)
{
    char *text = NULL;
    uint32_t bad = 0;
    dml_status_t st = dml_infer_merge(o->run.out, &o->merge, report_part, &bad, &text);

    /* The hint only where parts are what is missing: a missing output
     * directory (--report nodir/rep) is no part's fault. */
    if (st == DML_ERR_NOT_FOUND && bad > 0) {
        dml_error("%s; `dml-infer status --out %s` lists the parts to rerun", dml_error_message(),
                  o->run.out);
        return DML_INFER_EXIT_INCOMPLETE;
    }
    if (st != DML_OK) {
        dml_error("merge of %s: %s (nothing written)", o->run.out, dml_error_message());
        return 1;
    }
    fputs(text, stdout);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    options_t o;
    const char *cmd;

    dml_log_init("dml-infer", -1);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    memset(&o, 0, sizeof(o));
    dml_infer_config_init(&o.run);
    dml_infer_merge_config_init(&o.merge);
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "status") != 0 && strcmp(cmd, "merge") != 0) {
        dml_error("unknown command '%s' (run, status or merge)", cmd);
        return 2;
    }
    if (parse(argc - 1, argv + 1, &o) != 0)
        return 2;
    if (o.run.model != NULL) {
        /* --model REGISTRY:REF: the registry's model file (an alias is read
         * once, here: a run's manifest pins the model by its hash). */
        int is_ref;
        char version[DML_REGISTRY_VERSION_LEN];
        dml_status_t st = dml_registry_resolve_spec(o.run.model, g_model_path, sizeof(g_model_path),
                                                    version, &is_ref);
        if (st != DML_OK) {
            dml_error("--model %s: %s", o.run.model, dml_error_message());
            /* a REF that names nothing is a usage error; a version whose
             * model file is damaged or replaced is a failure */
            return st == DML_ERR_NOT_FOUND || st == DML_ERR_INVALID_ARG ? 2 : 1;
        }
        if (is_ref) {
            dml_debug("--model %s: version %s, %s", o.run.model, version, g_model_path);
            o.run.model = g_model_path;
        }
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(&o);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(&o);
    return cmd_merge(&o);
}
