/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml-registry: the model registry from the command line and from jobs
 * (register, list, show, alias, rollback, verify, gc, resolve). No MPI and
 * no server: any job on any node may run it at the same time as others.
 * The work is in dml_registry.h.
 */
#include "config.h"

#include <hdf5.h>

#include "dml_json.h"
#include "dml_log.h"
#include "dml_nn.h"
#include "dml_registry.h"
#include "dml_tool.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: dml-registry --registry DIR COMMAND [ARGS] [OPTIONS]\n\n"
            "Commands:\n"
            "  register MODEL        add a model file or checkpoint as a version (its hash);\n"
            "                        prints the version. Registering it again changes nothing\n"
            "                        (--json: {\"version\", \"model\", \"existed\"})\n"
            "  list                  the versions, oldest first: version, time, name, spec,\n"
            "                        metrics, aliases (--json: the records)\n"
            "  show REF              a version's record with its lineage (JSON)\n"
            "  path REF              the model file of REF, for other tools (its hash\n"
            "                        checked: a replaced or changed file is refused;\n"
            "                        --json: {\"ref\", \"version\", \"path\"})\n"
            "  alias NAME REF        point alias NAME at REF (a compare-and-set with --expect;\n"
            "                        --json: {\"alias\", \"version\", \"previous\", \"changed\"})\n"
            "  alias NAME            the alias's version and history (JSON)\n"
            "  rollback NAME         the alias back to the version it named before\n"
            "                        (--to REF: to that one)\n"
            "  verify                check every version's record, model file and hash, and\n"
            "                        every alias; names what is damaged or foreign\n"
            "  hash MODEL            a model file's hash, the version it would be (no\n"
            "                        registry needed; --json: {\"model\", \"hash\"})\n"
            "  gc                    remove versions no alias names, except the newest\n"
            "                        --keep, and a killed registration's leftovers\n\n"
            "REF: an alias, a version (16 hex digits) or a unique prefix of 4 or more.\n"
            "dml-infer --model DIR:REF takes a registry's model the same way.\n\n"
            "Options:\n"
            "  --registry DIR        the registry (created by the first register) [DML_REGISTRY]\n"
            "  --name NAME           register: a name for the version (a variant's name)\n"
            "  --param KEY=VALUE     register: a hyperparameter (repeatable)\n"
            "  --metric KEY=NUMBER   register: a metric (repeatable), e.g. val_accuracy=0.91\n"
            "  --checkpoint PATH     register: the checkpoint the model came from\n"
            "  --lineage FILE        register: a JSON object of more lineage\n"
            "  --job ID              register: the job [SLURM_JOB_ID, or the array task's]\n"
            "  --expect REF|none     alias: set only if the alias names REF now (none: no\n"
            "                        such alias yet); exit 4 and change nothing otherwise\n"
            "  --note TEXT           alias, rollback: why, kept in the alias's history\n"
            "  --to REF              rollback: the version to go back to\n"
            "  --keep N              gc: newest versions kept even without an alias [3]\n"
            "  --dry-run             gc: say what would go\n"
            "  --json                list, register, path, hash, alias NAME REF: one JSON\n"
            "                        value on stdout, for scripts (show and alias NAME\n"
            "                        always print JSON)\n\n"
            "Exit status: 0 done, 1 failed (verify: problems found), 2 usage, 4 --expect\n"
            "did not hold. Messages go to stderr.\n");
}

enum {
    O_REG = 256,
    O_NAME,
    O_PARAM,
    O_METRIC,
    O_CKPT,
    O_LINEAGE,
    O_JOB,
    O_EXPECT,
    O_NOTE,
    O_TO,
    O_KEEP,
    O_DRY,
    O_JSON,
    O_HELP
};

static const struct option opts[] = {{"registry", required_argument, 0, O_REG},
                                     {"name", required_argument, 0, O_NAME},
                                     {"param", required_argument, 0, O_PARAM},
                                     {"metric", required_argument, 0, O_METRIC},
                                     {"checkpoint", required_argument, 0, O_CKPT},
                                     {"lineage", required_argument, 0, O_LINEAGE},
                                     {"job", required_argument, 0, O_JOB},
                                     {"expect", required_argument, 0, O_EXPECT},
                                     {"note", required_argument, 0, O_NOTE},
                                     {"to", required_argument, 0, O_TO},
                                     {"keep", required_argument, 0, O_KEEP},
                                     {"dry-run", no_argument, 0, O_DRY},
                                     {"json", no_argument, 0, O_JSON},
                                     {"help", no_argument, 0, O_HELP},
                                     {0, 0, 0, 0}};

typedef struct {
    const char *dir, *expect, *note, *to, *lineage_file;
    json_t *lineage; /* name, params, metrics, checkpoint, job */
    int keep, dry_run, json;
} options_t;

/* KEY=VALUE into obj[member][KEY]; numbers only for metrics. */
static int add_pair(json_t *lineage, const char *member, const char *opt, const char *kv,
                    int number)
{
    const char *eq = strchr(kv, '=');
    char key[256], *end;
    json_t *obj = json_object_get(lineage, member), *val;
    double x;

    if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
        dml_error("%s '%s': not KEY=VALUE", opt, kv);
        return -1;
    }
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    if (number) {
        errno = 0;
        x = strtod(eq + 1, &end);
        if (eq[1] == '\0' || *end != '\0' || errno != 0) {
            dml_error("%s %s: '%s' is not a number", opt, key, eq + 1);
            return -1;
        }
        val = json_real(x);
    } else {
        val = json_string(eq + 1);
    }
    if (obj == NULL) {
        obj = json_object();
        json_object_set_new(lineage, member, obj);
    }
    if (val == NULL || json_object_set_new(obj, key, val) != 0) {
        dml_error("%s '%s': not valid UTF-8 text", opt, kv);
        return -1;
    }
    return 0;
}

static void show_finding(void *arg, const char *entry, dml_status_t st, const char *detail)
{
    (void)arg;
    if (st == DML_OK)
        printf("ok       %s: %s\n", entry, detail);
    else
        printf("PROBLEM  %s: %s\n", entry, detail);
}

static void print_list(const char *text)
{
    json_t *arr = json_loads(text, 0, NULL), *v, *m, *x;
    size_t i, j;
    const char *k;

    printf("%-16s  %-20s  %-14s  %-24s  %-28s  %s\n", "VERSION", "REGISTERED", "NAME", "SPEC",
           "METRICS", "ALIASES");
    json_array_foreach(arr, i, v)
    {
        char metrics[256] = "", aliases[256] = "";
        size_t n = 0;
        m = json_object_get(v, "metrics");
        json_object_foreach(m, k, x) if (n < sizeof(metrics)) n += (size_t)snprintf(
            metrics + n, sizeof(metrics) - n, "%s%s=%.4g", n ? " " : "", k, json_number_value(x));
        n = 0;
        json_array_foreach(json_object_get(v, "aliases"), j, x) if (n < sizeof(aliases)) n +=
            (size_t)snprintf(aliases + n, sizeof(aliases) - n, "%s%s", n ? "," : "",
                             json_string_value(x));
        printf("%-16s  %-20s  %-14s  %-24.24s  %-28s  %s\n",
               json_string_value(json_object_get(v, "version")),
               json_string_value(json_object_get(v, "registered")),
               json_string_value(json_object_get(v, "name"))
                   ? json_string_value(json_object_get(v, "name"))
                   : "-",
               json_string_value(json_object_get(v, "spec")), *metrics ? metrics : "-",
               *aliases ? aliases : "-");
    }
    json_decref(arr);
}

/* Who does it, for an alias's history: user, host, job. */
static void who(char *buf, size_t len, const char *note)
{
    char host[256] = "?";
    struct passwd *pw = getpwuid(getuid());
    const char *job = getenv("SLURM_JOB_ID");

    gethostname(host, sizeof(host) - 1);
    snprintf(buf, len, "%s%s%s@%s%s%s", note ? note : "", note ? " (" : "", pw ? pw->pw_name : "?",
             host, job ? " job " : "", job ? job : "");
    if (note)
        strncat(buf, ")", len - strlen(buf) - 1);
}

/* The exit status of a failure the library described: its message, once. */
static int failed(void)
{
    dml_error("%s", dml_error_message());
    return 1;
}

/* The options, from DML_REGISTRY and the command line. Returns -1 to go on
 * with the command at argv[optind], or the exit status to stop with (--help:
 * 0; a bad option: 2, said). o->lineage is the caller's to free either way. */
static int parse_options(int argc, char **argv, options_t *o)
{
    int c;

    memset(o, 0, sizeof(*o));
    o->keep = 3;
    o->dir = getenv("DML_REGISTRY");
    o->lineage = json_object();
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case O_REG:
            o->dir = optarg;
            break;
        case O_NAME:
            json_object_set_new(o->lineage, "name", json_string(optarg));
            break;
        case O_PARAM:
            if (add_pair(o->lineage, "params", "--param", optarg, 0))
                return 2;
            break;
        case O_METRIC:
            if (add_pair(o->lineage, "metrics", "--metric", optarg, 1))
                return 2;
            break;
        case O_CKPT:
            json_object_set_new(o->lineage, "checkpoint", dml_json_str(optarg));
            break;
        case O_LINEAGE:
            o->lineage_file = optarg;
            break;
        case O_JOB:
            json_object_set_new(o->lineage, "job", json_string(optarg));
            break;
        case O_EXPECT:
            o->expect = optarg;
            break;
        case O_NOTE:
            o->note = optarg;
            break;
        case O_TO:
            o->to = optarg;
            break;
        case O_KEEP:
            o->keep = atoi(optarg);
            if (o->keep < 1 || strspn(optarg, "0123456789") != strlen(optarg)) {
                dml_error("--keep '%s': not a whole number of at least 1", optarg);
                return 2;
            }
            break;
        case O_DRY:
            o->dry_run = 1;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        case ':':
            dml_error("%s: needs a value (see --help)", argv[optind - 1]);
            return 2;
        default:
            dml_error("unknown option '%s' (see --help)", argv[optind - 1]);
            return 2;
        }
    }
    return -1;
}

/* A --json answer: one compact JSON value on a line of its own (obj is
 * consumed). jansson does the quoting; a value it cannot build is a failure.
 * Names from the command line or the file system go in through dml_json_str()
 * (which always makes one), and a command that changes the registry builds
 * its answer before the change, so that a done change is never reported as
 * a failure. */
static int print_json(json_t *obj)
{
    int rc = 0;

    if (obj == NULL || json_dumpf(obj, stdout, JSON_COMPACT) != 0 || putchar('\n') == EOF) {
        dml_error("writing the JSON answer failed");
        rc = 1;
    }
    json_decref(obj);
    return rc;
}

/* ---- the commands ----------------------------------------------------------
 *
 * Each takes its n arguments in args (their number already checked against
 * the command table below) and returns the exit status.
 */

/* hash needs no registry: a model file's hash is the version it would be. */
static int cmd_hash(char **args, int n, int json)
{
    int rc = 0;

    dml_model_t *m = NULL;
    dml_model_info_t info;

    if (n != 1) {
        dml_error("hash: give one model file (see --help)");
        return 2;
    }
    dml_tool_hdf5_quiet();
    memset(&info, 0, sizeof(info));
    if (dml_model_load(args[0], 1, &m, &info) != DML_OK)
        return failed();
    if (json)
        rc = print_json(json_pack("{s:o, s:s}", "model", dml_json_str(args[0]), "hash", info.hash));
    else
        printf("%s\n", info.hash);
    dml_model_free(m);
    dml_model_info_free(&info);
    return rc;
}

/* register's lineage gets what --lineage adds (the command line wins) and,
 * where --job named none, the job from Slurm's environment (an array task
 * as JOB_TASK). Returns -1 after saying what is wrong with the file. */
static int lineage_complete(const options_t *o)
{
    if (o->lineage_file != NULL) {
        json_error_t e;
        json_t *f = json_load_file(o->lineage_file, JSON_REJECT_DUPLICATES, &e);
        if (f == NULL || !json_is_object(f)) {
            dml_error("--lineage %s: not a JSON object (%s)", o->lineage_file,
                      f ? "another value" : e.text);
            json_decref(f);
            return -1;
        }
        json_object_update_missing(o->lineage, f);
        json_decref(f);
    }
    if (json_object_get(o->lineage, "job") == NULL && getenv("SLURM_JOB_ID") != NULL) {
        const char *aj = getenv("SLURM_ARRAY_JOB_ID"), *at = getenv("SLURM_ARRAY_TASK_ID");
        char job[64];
        if (aj && at)
            snprintf(job, sizeof(job), "%s_%s", aj, at);
        else
            snprintf(job, sizeof(job), "%s", getenv("SLURM_JOB_ID"));
        json_object_set_new(o->lineage, "job", json_string(job));
    }
    return 0;
}

static int cmd_register(const options_t *o, char **args, int n)
{
    char version[DML_REGISTRY_VERSION_LEN], *text;
    dml_registry_t *r = NULL;
    json_t *answer = NULL;
    int existed, rc = 0;

    (void)n;
    if (lineage_complete(o) != 0)
        return 2;
    text = json_dumps(o->lineage, 0);
    /* the answer's shape before the registration; its values after */
    if (o->json && (answer = json_pack("{s:s, s:o, s:b}", "version", "", "model",
                                       dml_json_str(args[0]), "existed", 0)) == NULL) {
        dml_error("no memory for the JSON answer");
        rc = 1;
        goto out;
    }
    if (dml_registry_open(o->dir, 1, &r) != DML_OK ||
        dml_registry_register(r, args[0], text, version, &existed) != DML_OK) {
        rc = failed();
        goto out;
    }
    if (answer != NULL) {
        json_object_set_new(answer, "version", json_string(version));
        json_object_set_new(answer, "existed", json_boolean(existed));
        rc = print_json(answer);
        answer = NULL;
    } else
        printf("%s\n", version);
    dml_info("%s: version %s %s", args[0], version,
             existed ? "was registered already: nothing changed" : "registered");
out:
    json_decref(answer);
    dml_registry_close(r);
    free(text);
    return rc;
}

static int cmd_list(const options_t *o, char **args, int n)
{
    dml_registry_t *r = NULL;
    char *text = NULL;
    int rc = 0;

    (void)args, (void)n;
    if (dml_registry_open(o->dir, 0, &r) != DML_OK || dml_registry_list_json(r, &text) != DML_OK) {
        rc = failed();
        goto out;
    }
    if (o->json)
        printf("%s\n", text);
    else
        print_list(text);
out:
    free(text);
    dml_registry_close(r);
    return rc;
}

static int cmd_show(const options_t *o, char **args, int n)
{
    dml_registry_t *r = NULL;
    char *text = NULL;
    int rc = 0;

    (void)n;
    if (dml_registry_open(o->dir, 0, &r) != DML_OK ||
        dml_registry_show_json(r, args[0], &text) != DML_OK) {
        rc = failed();
        goto out;
    }
    printf("%s\n", text);
out:
    free(text);
    dml_registry_close(r);
    return rc;
}

static int cmd_path(const options_t *o, char **args, int n)
{
    char version[DML_REGISTRY_VERSION_LEN], path[4400];
    dml_registry_t *r = NULL;
    int rc = 0;

    (void)n;
    if (dml_registry_open(o->dir, 0, &r) != DML_OK ||
        dml_registry_resolve_model(r, args[0], version, path, sizeof(path)) != DML_OK) {
        rc = failed();
        goto out;
    }
    if (o->json)
        rc = print_json(json_pack("{s:o, s:s, s:o}", "ref", dml_json_str(args[0]), "version",
                                  version, "path", dml_json_str(path)));
    else
        printf("%s\n", path);
out:
    dml_registry_close(r);
    return rc;
}

/* alias NAME shows the alias; alias NAME REF points it at REF. */
static int cmd_alias(const options_t *o, char **args, int n)
{
    char version[DML_REGISTRY_VERSION_LEN], prev[DML_REGISTRY_VERSION_LEN], note[1024];
    char *text = NULL;
    dml_registry_t *r = NULL;
    json_t *answer = NULL;
    dml_status_t st;
    int rc = 0;

    if (dml_registry_open(o->dir, 0, &r) != DML_OK)
        goto fail;
    if (n == 1) {
        if (dml_registry_alias_json(r, args[0], &text) != DML_OK)
            goto fail;
        printf("%s\n", text);
        goto out;
    }
    /* the answer's shape before the alias moves; its values after */
    if (o->json && (answer = json_pack("{s:o, s:s, s:n, s:b}", "alias", dml_json_str(args[0]),
                                       "version", "", "previous", "changed", 0)) == NULL) {
        dml_error("no memory for the JSON answer");
        rc = 1;
        goto out;
    }
    who(note, sizeof(note), o->note);
    st = dml_registry_alias_set(r, args[0], args[1], o->expect, note, prev);
    if (st == DML_ERR_MISMATCH) {
        /* --expect did not hold: a status of its own, for the script that
         * may try again */
        dml_error("%s", dml_error_message());
        rc = 4;
        goto out;
    }
    if (st != DML_OK || dml_registry_resolve(r, args[0], version, NULL, 0) != DML_OK)
        goto fail;
    if (answer != NULL) {
        json_object_set_new(answer, "version", json_string(version));
        json_object_set_new(answer, "previous", *prev ? json_string(prev) : json_null());
        json_object_set_new(answer, "changed", json_boolean(strcmp(prev, version) != 0));
        rc = print_json(answer);
        answer = NULL;
    } else
        printf("%s\n", version);
    if (strcmp(prev, version) == 0)
        dml_info("alias %s already names %s: unchanged", args[0], version);
    else
        dml_info("alias %s: %s -> %s", args[0], *prev ? prev : "(new)", version);
    goto out;
fail:
    rc = failed();
out:
    json_decref(answer);
    free(text);
    dml_registry_close(r);
    return rc;
}

static int cmd_rollback(const options_t *o, char **args, int n)
{
    char version[DML_REGISTRY_VERSION_LEN], prev[DML_REGISTRY_VERSION_LEN], note[1024];
    dml_registry_t *r = NULL;
    int rc = 0;

    (void)n;
    who(note, sizeof(note), o->note ? o->note : "rollback");
    if (dml_registry_open(o->dir, 0, &r) != DML_OK ||
        dml_registry_alias_rollback(r, args[0], o->to, note, version, prev) != DML_OK) {
        rc = failed();
        goto out;
    }
    printf("%s\n", version);
    dml_info("alias %s rolled back: %s -> %s", args[0], prev, version);
out:
    dml_registry_close(r);
    return rc;
}

/* verify: a PROBLEM line per damaged entry, and exit 1 when there is one. */
static int cmd_verify(const options_t *o, char **args, int n)
{
    dml_registry_t *r = NULL;
    int rc = 0, bad;

    (void)args, (void)n;
    if (dml_registry_open(o->dir, 0, &r) != DML_OK ||
        dml_registry_verify(r, show_finding, NULL, &bad) != DML_OK) {
        rc = failed();
        goto out;
    }
    if (bad > 0) {
        dml_error("%s: %d entr%s damaged or foreign (PROBLEM lines); the others are usable", o->dir,
                  bad, bad == 1 ? "y" : "ies");
        rc = 1;
        goto out;
    }
    printf("%s: every version and alias is sound\n", o->dir);
out:
    dml_registry_close(r);
    return rc;
}

static int cmd_gc(const options_t *o, char **args, int n)
{
    dml_registry_t *r = NULL;
    int rc = 0, gone;

    (void)args, (void)n;
    if (dml_registry_open(o->dir, 0, &r) != DML_OK ||
        dml_registry_gc(r, o->keep, o->dry_run, show_finding, NULL, &gone) != DML_OK) {
        rc = failed();
        goto out;
    }
    printf("%d entr%s %s\n", gone, gone == 1 ? "y" : "ies",
           o->dry_run ? "would be removed" : "removed");
out:
    dml_registry_close(r);
    return rc;
}

typedef int (*command_fn_t)(const options_t *o, char **args, int n);

/* The commands on a registry, with how many arguments each takes. */
static const struct {
    const char *name;
    int min_args, max_args;
    command_fn_t run;
} commands[] = {{"register", 1, 1, cmd_register}, {"list", 0, 0, cmd_list},
                {"show", 1, 1, cmd_show},         {"path", 1, 1, cmd_path},
                {"alias", 1, 2, cmd_alias},       {"rollback", 1, 1, cmd_rollback},
                {"verify", 0, 0, cmd_verify},     {"gc", 0, 0, cmd_gc}};

int main(int argc, char **argv)
{
    options_t o;
    const char *cmd;
    size_t i;
    int rc, n;

    dml_log_init("dml-registry", -1);
    if ((rc = parse_options(argc, argv, &o)) >= 0)
        goto out;
    rc = 2;
    if (optind >= argc) {
        usage(stderr);
        goto out;
    }
    cmd = argv[optind++];
    n = argc - optind;
    if (strcmp(cmd, "hash") == 0) {
        rc = cmd_hash(argv + optind, n, o.json);
        goto out;
    }
    if (o.dir == NULL || *o.dir == '\0') {
        dml_error("no registry: give --registry DIR (or set DML_REGISTRY)");
        goto out;
    }
    /* A damaged model file is reported by the library, naming it. */
    dml_tool_hdf5_quiet();
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            break;
    if (i == sizeof(commands) / sizeof(commands[0])) {
        dml_error("unknown command '%s' (see --help)", cmd);
        goto out;
    }
    if (n < commands[i].min_args || n > commands[i].max_args) {
        dml_error("%s: %s (see --help)", cmd,
                  n < commands[i].min_args ? "missing argument" : "too many arguments");
        goto out;
    }
    rc = commands[i].run(&o, argv + optind, n);
out:
    json_decref(o.lineage);
    return rc;
}
