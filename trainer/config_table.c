/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config_table.c: dml-train's settings, one table (train_config.h,
 * config_table_private.h), and the key=value text made from it. Each entry
 * is a setting's option name, type, where it lands (offsetof into
 * dml__train_settings_t, whose first member is the trainer's config), its
 * default where dml_trainer_config_init has none of it, its range and its
 * help. This part is linked into libdml_train (which uses the text of a
 * trainer config, the checkpoint's "config" attribute) and into dml-train;
 * it needs neither libinih nor jansson nor getopt. Every other form of a
 * setting (the getopt_long options and their checks, the --config file's
 * keys, --help, the JSON record) is config_parse.c's, dml-train's only. A
 * setting added to the table is in all of them, and the man page check
 * (tests/install/test_man.sh) fails until the page documents it.
 */
#include "config.h"

#include "config_table_private.h"
#include "train_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOOL DML__CFG_TOOL
#define RECORD DML__CFG_RECORD
#define CKPT DML__CFG_CKPT
#define NODEF DML__CFG_NODEF
#define UNSET0 DML__CFG_UNSET0
#define DEPENDS DML__CFG_DEPENDS

#define T(f) offsetof(dml__train_settings_t, train.f)
#define S(f) offsetof(dml__train_settings_t, f)

static const dml__cfg_choice_t optimizers[] = {
    {"sgd", DML_OPT_SGD}, {"adamw", DML_OPT_ADAMW}, {0, 0}};
static const dml__cfg_choice_t schedules[] = {
    {"constant", DML_LR_CONSTANT}, {"step", DML_LR_STEP}, {"cosine", DML_LR_COSINE}, {0, 0}};
static const dml__cfg_choice_t shuffles[] = {
    {"full", DML_SHUFFLE_FULL}, {"window", DML_SHUFFLE_WINDOW}, {"none", DML_SHUFFLE_NONE}, {0, 0}};
static const dml__cfg_choice_t caches[] = {
    {"auto", DML_CACHE_AUTO}, {"on", DML_CACHE_ON}, {"off", DML_CACHE_OFF}, {0, 0}};
static const dml__cfg_choice_t reduces[] = {
    {"auto", DML_DP_AUTO}, {"allreduce", DML_DP_ALLREDUCE}, {"shared", DML_DP_SHARED}, {0, 0}};
static const dml__cfg_choice_t stall_words[] = {{"auto", (int)DML_STALL_AUTO}, {0, 0}};
static const dml__cfg_choice_t print_forms[] = {
    {"ini", DML__PRINT_INI}, {"json", DML__PRINT_JSON}, {0, 0}};

/* The whole-number ranges' ends, as the messages have always named them. */
#define U_TERA 1000000000000ULL

/* One row a setting, laid out as the table it is. */
/* clang-format off */
const dml__cfg_entry_t dml__cfg_table[] = {
    {.name = "train", .type = CFG_STRING, .flags = NODEF, .off = T(train_dir), .arg = "DIR",
     .help = "training dataset (dml-data)"},
    {.name = "test", .type = CFG_STRING, .flags = NODEF, .off = T(test_dir), .arg = "DIR",
     .help = "held-out dataset, evaluated after every epoch"},
    {.name = "model", .type = CFG_MODEL, .flags = NODEF, .off = T(spec), .arg = "SPEC",
     .help = "layers, e.g. conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10); the "
         "book's cnn, cnn-bn, cnn-dropout; or mlp:784-512-256-10[:dropout=P] (docs/training.md)"},
    {.name = "epochs", .type = CFG_INT, .off = T(epochs), .imin = 1, .imax = 1000000, .arg = "N",
     .help = "passes over the training data"},
    {.name = "batch", .type = CFG_INT, .off = T(batch), .imin = 1, .imax = 1 << 20, .arg = "N",
     .help = "samples per rank per step; global batch = N x ranks x accum"},
    {.name = "accum", .type = CFG_INT, .off = T(accum), .imin = 1, .imax = 1 << 16, .arg = "K",
     .help = "micro-batches per optimiser step"},
    {.name = "optimizer", .type = CFG_ENUM, .off = T(opt.type), .choices = optimizers,
     .arg = "sgd|adamw", .help = "the optimiser"},
    {.name = "lr", .type = CFG_FLOAT, .off = T(lr.base), .min = 1e-30, .max = 1e30, .arg = "F",
     .help = "peak learning rate"},
    {.name = "momentum", .type = CFG_FLOAT, .flags = DEPENDS, .off = T(opt.momentum), .min = 0, .max = 0.999999,
     .arg = "F", .help = "SGD momentum", .note = " for SGD"},
    {.name = "nesterov", .type = CFG_BOOL, .flags = NODEF, .off = T(opt.nesterov),
     .help = "Nesterov momentum"},
    {.name = "weight-decay", .type = CFG_FLOAT, .flags = DEPENDS, .off = T(opt.weight_decay), .min = 0, .max = 1e3,
     .arg = "F", .help = "weight decay (SGD: L2 added to the gradient; AdamW: decoupled)",
     .note = " for SGD, 0.01 for AdamW"},
    {.name = "beta1", .type = CFG_FLOAT, .flags = RECORD, .off = T(opt.beta1)},
    {.name = "beta2", .type = CFG_FLOAT, .flags = RECORD, .off = T(opt.beta2)},
    {.name = "eps", .type = CFG_FLOAT, .flags = RECORD, .off = T(opt.eps)},
    {.name = "schedule", .type = CFG_ENUM, .off = T(lr.kind), .choices = schedules,
     .arg = "constant|step|cosine", .help = "learning-rate schedule"},
    {.name = "warmup", .type = CFG_U64, .off = T(lr.warmup), .imin = 0, .imax = U_TERA, .arg = "N",
     .help = "steps of linear warm-up"},
    {.name = "step-every", .type = CFG_U64, .flags = NODEF | UNSET0, .off = T(lr.step_every),
     .imin = 1, .imax = U_TERA, .arg = "N", .help = "step schedule: lr x gamma every N steps"},
    {.name = "gamma", .type = CFG_FLOAT, .off = T(lr.gamma), .min = 0, .max = 1, .arg = "F",
     .help = "step schedule's factor"},
    {.name = "cosine-total", .type = CFG_U64, .flags = RECORD, .off = T(lr.total)},
    {.name = "clip", .type = CFG_DOUBLE, .off = T(clip), .min = 0, .max = 1e12, .arg = "F",
     .help = "clip gradients to this global norm", .note = ": off"},
    {.name = "seed", .type = CFG_U64, .off = T(seed), .imin = 0, .imax = UINT64_MAX, .arg = "N",
     .help = "weights, sample order, dropout"},
    {.name = "shuffle", .type = CFG_ENUM, .off = T(shuffle), .choices = shuffles,
     .arg = "full|window|none", .help = "sample order"},
    {.name = "cache", .type = CFG_ENUM, .off = T(cache), .choices = caches, .arg = "auto|on|off",
     .help = "keep the dataset in memory: a copy per rank where the node's copies fit half its "
         "free memory, else one shared copy per node (on: even beyond)"},
    {.name = "prefetch", .type = CFG_INT, .off = T(prefetch), .imin = 0, .imax = 1024, .arg = "N",
     .help = "batches read ahead"},
    {.name = "blas-threads", .type = CFG_INT, .flags = TOOL, .off = S(blas_threads), .def = "1",
     .imin = 1, .imax = 1024, .arg = "N", .help = "BLAS and convolution threads per rank",
     .note = ": one rank per core"},
    {.name = "device", .type = CFG_STRING, .off = T(device), .def = "cpu",
     .arg = "cpu|cuda|cuda:N|auto",
     .help = "where the model computes: cuda, each rank the GPU of its rank on the node (the one "
         "Slurm or srun --dml-gpus gave it); auto: cuda where a GPU is seen and the network runs "
         "there (so far dense, relu, dropout, flatten; fp32), else the CPU",
     .want = "cpu, cuda, cuda:N or auto", .valid = dml_device_name_valid},
    {.name = "grad-reduce", .type = CFG_ENUM, .off = T(grad_reduce), .choices = reduces,
     .arg = "auto|allreduce|shared",
     .help = "how gradients are summed: shared: in memory shared by the ranks of one node, each "
         "rank updating a slice; allreduce: bucketed MPI allreduce; auto: shared where all ranks "
         "are on one node"},
    {.name = "bucket-kb", .type = CFG_KIB, .off = T(bucket_bytes), .def = "1024", .imin = 1,
     .imax = 1 << 22, .arg = "N", .help = "gradient bucket size for the allreduce"},
    {.name = "log-every", .type = CFG_INT, .off = T(log_every), .imin = 0, .imax = INT32_MAX,
     .arg = "N", .help = "steps between progress lines", .note = "; 0: epochs only"},
    {.name = "metrics", .type = CFG_STRING, .flags = TOOL | NODEF, .off = S(metrics), .arg = "FILE",
     .help = "progress as JSON lines (pandas.read_json(lines=True)); appended to when training "
         "resumes"},
    {.name = "output", .type = CFG_STRING, .flags = TOOL | NODEF, .off = S(output), .arg = "FILE",
     .help = "the trained model (HDF5), written only if training succeeds"},
    {.name = "checkpoint-dir", .type = CFG_STRING, .flags = CKPT | NODEF, .off = T(ckpt_dir),
     .arg = "DIR",
     .help = "write checkpoints here (a shared file system); with it, training resumes from DIR "
         "and stops cleanly on signals"},
    {.name = "checkpoint-every", .type = CFG_U64, .flags = CKPT, .off = T(ckpt_every), .imin = 0,
     .imax = 1000 * U_TERA, .arg = "N", .help = "every N optimiser steps", .note = ": off"},
    {.name = "checkpoint-seconds", .type = CFG_DOUBLE, .flags = CKPT, .off = T(ckpt_seconds),
     .min = 0, .max = 1e9, .arg = "T", .help = "every T seconds; also one at the end",
     .note = ": off"},
    {.name = "keep", .type = CFG_INT, .flags = CKPT, .off = T(ckpt_keep), .imin = 0,
     .imax = 1000000, .arg = "K", .help = "newest checkpoints kept", .note = "; 0: all"},
    {.name = "resume", .type = CFG_STRING, .flags = CKPT | TOOL, .off = S(resume), .def = "auto",
     .arg = "auto|never|PATH",
     .help = "auto: from the newest checkpoint of DIR's run that loads; never: a new run (DIR's "
         "checkpoints are moved to DIR/earlier-run-*); PATH: that file or directory"},
    {.name = "signals", .type = CFG_STRING, .flags = CKPT | TOOL, .off = S(signals),
     .def = "USR1,USR2,TERM", .arg = "LIST", .help = "checkpoint and stop on these; none"},
    {.name = "time-margin", .type = CFG_DOUBLE, .flags = CKPT, .off = T(deadline_margin), .min = 0,
     .max = 1e9, .arg = "S",
     .help = "in a Slurm job, checkpoint and stop S seconds before its end time (asked of "
         "slurmctld)"},
    {.name = "requeue", .type = CFG_BOOL, .flags = CKPT | TOOL | NODEF, .off = S(requeue),
     .help = "after such a stop, requeue the Slurm job through slurmctld (no scontrol needed); "
         "never a cancelled one"},
    {.name = "stall-timeout", .type = CFG_DOUBLE, .flags = CKPT, .off = T(stall_timeout),
     .def = "auto", .min = 0, .max = 1e9, .choices = stall_words, .arg = "auto|S",
     .help = "a rank not heard from, or not arriving where the others wait, for this long is named "
         "(host, PID, step) and the job ended with exit 75; auto: 10 x the slowest recent step or "
         "checkpoint, at least --stall-floor", .note = "; 0: never",
     .want = "auto, or seconds from 0 to 1e+09"},
    {.name = "stall-floor", .type = CFG_DOUBLE, .flags = CKPT, .off = T(stall_floor), .min = 1,
     .max = 1e9, .arg = "S", .help = "the least limit auto derives, in seconds"},
    {.name = "check", .type = CFG_ACTION, .flags = NODEF, .off = S(check),
     .help = "check the options, --config file and model spec, and exit (0: valid, 2: not); no "
         "MPI, no data read"},
    {.name = "config", .type = CFG_ACTION, .flags = NODEF, .off = S(config_file), .arg = "FILE",
     .help = "settings from an INI file: any setting above as key = value (the option without --; "
         "- or _ alike), optionally under [train]; options on the command line win"},
    {.name = "print-config", .type = CFG_ACTION, .flags = NODEF, .off = S(print),
     .choices = print_forms, .arg = "[=ini|json]",
     .help = "print the effective configuration (defaults, then the --config file, then the "
         "options) as a --config file or as JSON, and exit; no MPI, no data read"},
    {.name = "help", .type = CFG_ACTION, .flags = NODEF, .off = 0, .help = "this text"},
};
/* clang-format on */

#define NENTRIES (sizeof(dml__cfg_table) / sizeof(dml__cfg_table[0]))
const size_t dml__cfg_count = NENTRIES;
_Static_assert(NENTRIES <= DML__CFG_MAX, "the table outgrew the given[] flags");
_Static_assert(offsetof(dml__train_settings_t, train) == 0,
               "the trainer's config must come first: the table's offsets are into both");
_Static_assert(sizeof(dml_opt_type_t) == sizeof(int) && sizeof(dml_lr_kind_t) == sizeof(int) &&
                   sizeof(dml_shuffle_t) == sizeof(int) && sizeof(dml_cache_t) == sizeof(int) &&
                   sizeof(dml_dp_mode_t) == sizeof(int),
               "enum settings are stored as int");

const dml__cfg_entry_t *dml__cfg_named(const char *name)
{
    for (size_t i = 0; i < NENTRIES; i++)
        if (strcmp(dml__cfg_table[i].name, name) == 0)
            return &dml__cfg_table[i];
    return NULL;
}

const dml__cfg_entry_t *dml__cfg_keyed(const char *key, size_t len)
{
    for (size_t i = 0; i < NENTRIES; i++) {
        const char *n = dml__cfg_table[i].name;
        size_t k;
        if (dml__cfg_table[i].type == CFG_ACTION || (dml__cfg_table[i].flags & RECORD) ||
            strlen(n) != len)
            continue;
        for (k = 0; k < len && (key[k] == n[k] || (key[k] == '_' && n[k] == '-')); k++)
            ;
        if (k == len)
            return &dml__cfg_table[i];
    }
    return NULL;
}

const char *dml__cfg_key(const dml__cfg_entry_t *e, char *buf, size_t len)
{
    size_t i;
    for (i = 0; e->name[i] != '\0' && i + 1 < len; i++)
        buf[i] = e->name[i] == '-' ? '_' : e->name[i];
    buf[i] = '\0';
    return buf;
}

/* ---- text ---------------------------------------------------------------------- */

static const char *choice_of(const dml__cfg_choice_t *c, int value)
{
    for (; c != NULL && c->name != NULL; c++)
        if (c->value == value)
            return c->name;
    return NULL;
}

/* A number as people write it, in as few digits as give the value back
 * exactly (a float's, where it is stored as a float): equal text means
 * equal values, and a message shows 0.02 where %a would show
 * 0x1.47ae14p-6. */
static const char *shortest(double v, int is_float, char *buf, size_t len)
{
    for (int prec = 6; prec < 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (is_float ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            return buf;
    }
    snprintf(buf, len, "%.17g", v);
    return buf;
}

const char *dml__cfg_value_text(const dml__cfg_entry_t *e, const void *base, char *buf, size_t len)
{
    const void *p = DML__CFG_CPTR(base, e);
    const char *w;

    switch (e->type) {
    case CFG_STRING:
        /* unset where the default applies: the default (device NULL is cpu) */
        w = *(const char *const *)p;
        return w != NULL ? w : e->def != NULL ? e->def : "";
    case CFG_MODEL:
        dml_model_spec_format(p, buf, len);
        return buf;
    case CFG_INT:
    case CFG_BOOL:
        snprintf(buf, len, "%d", *(const int *)p);
        return buf;
    case CFG_U64:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p);
        return buf;
    case CFG_KIB:
        snprintf(buf, len, "%zu", (*(const size_t *)p ? *(const size_t *)p : 1 << 20) / 1024);
        return buf;
    case CFG_FLOAT:
        return shortest((double)*(const float *)p, 1, buf, len);
    case CFG_DOUBLE:
        for (const dml__cfg_choice_t *c = e->choices; c != NULL && c->name != NULL; c++)
            if ((double)c->value == *(const double *)p)
                return c->name;
        return shortest(*(const double *)p, 0, buf, len);
    case CFG_ENUM:
        w = choice_of(e->choices, *(const int *)p);
        return w != NULL ? w : "?";
    case CFG_ACTION:
        break;
    }
    return "";
}

/* key=value lines of the entries that pass `skip`, base as
 * dml__cfg_value_text's. given: NULL, every value as settled; else the
 * settings' given[], and a DEPENDS entry not given is written empty. */
static int text_of(const void *base, unsigned skip, int have_model, const unsigned char *given,
                   char *buf, size_t len)
{
    char key[64], val[DML_MODEL_SPEC_MAX];
    size_t at = 0;

    for (size_t i = 0; i < NENTRIES; i++) {
        const dml__cfg_entry_t *e = &dml__cfg_table[i];
        const char *v;
        if (e->type == CFG_ACTION || (e->flags & skip))
            continue;
        v = (e->type == CFG_MODEL && !have_model) ||
                    ((e->flags & UNSET0) && *(const uint64_t *)DML__CFG_CPTR(base, e) == 0) ||
                    ((e->flags & DEPENDS) && given != NULL && !given[i])
                ? ""
                : dml__cfg_value_text(e, base, val, sizeof(val));
        at += (size_t)snprintf(buf + (at < len ? at : len), at < len ? len - at : 0, "%s=%s\n",
                               dml__cfg_key(e, key, sizeof(key)), v);
    }
    return (int)at;
}

int dml__settings_text(const dml__train_settings_t *s, char *buf, size_t len)
{
    return text_of(s, RECORD, s->model != NULL, NULL, buf, len);
}

int dml__settings_ini_text(const dml__train_settings_t *s, char *buf, size_t len)
{
    return text_of(s, RECORD, s->model != NULL, s->given, buf, len);
}

int dml__trainer_config_text(const dml_trainer_config_t *c, int ranks, char *buf, size_t len)
{
    int n = text_of(c, TOOL, 1, NULL, buf, len);
    if (ranks > 0)
        n += snprintf(buf + ((size_t)n < len ? (size_t)n : len),
                      (size_t)n < len ? len - (size_t)n : 0, "ranks=%d\n", ranks);
    return n;
}
