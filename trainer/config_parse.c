/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config_parse.c: dml-train's settings read and shown, from the table of
 * config_table.c (train_config.h, config_table_private.h): the getopt_long
 * options and their checks, the --config INI file (libinih), --help and the
 * JSON record (jansson: --print-config=json, what the pipeline keeps of
 * each variant). Linked into the dml-train tool only, which alone needs
 * libinih and jansson; libdml_train has only config_table.c's text.
 */
#include "config.h"

#include "config_table_private.h"
#include "dml_status.h"
#include "train_config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RECORD DML__CFG_RECORD
#define CKPT DML__CFG_CKPT
#define NODEF DML__CFG_NODEF
#define UNSET0 DML__CFG_UNSET0
#define DEPENDS DML__CFG_DEPENDS

/* ---- values ------------------------------------------------------------------ */

/* "a, b or c" */
static void choices_text(const dml__cfg_choice_t *c, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; c[i].name != NULL && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s",
                               i == 0          ? ""
                               : c[i + 1].name ? ", "
                                               : " or ",
                               c[i].name);
}

static const dml__cfg_choice_t *choice_named(const dml__cfg_choice_t *c, const char *name)
{
    for (; c != NULL && c->name != NULL; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static int whole(const char *val, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(val, &end, 10);
    if (*val == '\0' || *val == '-' || *val == '+' || *end != '\0' || errno != 0 || v < lo ||
        v > hi)
        return -1;
    *out = v;
    return 0;
}

static int real(const char *val, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(val, &end);
    if (*val == '\0' || *end != '\0' || errno != 0 || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int truth(const char *val)
{
    if (strcmp(val, "true") == 0 || strcmp(val, "yes") == 0 || strcmp(val, "1") == 0)
        return 1;
    if (strcmp(val, "false") == 0 || strcmp(val, "no") == 0 || strcmp(val, "0") == 0)
        return 0;
    return -1;
}

/* Sets e from val (NULL: a flag given on the command line). 0, or -1 with
 * what val should have been in want. */
static int set_value(dml__train_settings_t *s, const dml__cfg_entry_t *e, const char *val,
                     char *want, size_t wlen)
{
    void *p = DML__CFG_PTR(s, e);
    const dml__cfg_choice_t *c;
    uint64_t u = 0;
    double v = 0;
    int b;

    switch (e->type) {
    case CFG_STRING:
        if (e->valid != NULL && !e->valid(val))
            goto bad;
        *(const char **)p = val;
        break;
    case CFG_MODEL:
        s->model = val;
        break;
    case CFG_INT:
    case CFG_U64:
    case CFG_KIB:
        if (whole(val, e->imin, e->imax, &u) != 0) {
            snprintf(want, wlen, "a whole number from %llu to %llu", (unsigned long long)e->imin,
                     (unsigned long long)e->imax);
            return -1;
        }
        if (e->type == CFG_INT)
            *(int *)p = (int)u;
        else if (e->type == CFG_U64)
            *(uint64_t *)p = u;
        else
            *(size_t *)p = (size_t)u * 1024;
        break;
    case CFG_FLOAT:
    case CFG_DOUBLE:
        if ((c = choice_named(e->choices, val)) != NULL)
            v = c->value;
        else if (real(val, e->min, e->max, &v) != 0) {
            if (e->want == NULL)
                snprintf(want, wlen, "a number from %g to %g", e->min, e->max);
            goto bad;
        }
        if (e->type == CFG_FLOAT)
            *(float *)p = (float)v;
        else
            *(double *)p = v;
        break;
    case CFG_BOOL:
        if ((b = val == NULL ? 1 : truth(val)) < 0) {
            snprintf(want, wlen, "true or false");
            return -1;
        }
        *(int *)p = b;
        break;
    case CFG_ENUM:
        if ((c = choice_named(e->choices, val)) == NULL) {
            choices_text(e->choices, want, wlen);
            return -1;
        }
        *(int *)p = c->value;
        break;
    case CFG_ACTION:
        break;
    }
    s->given[e - dml__cfg_table] = 1;
    return 0;
bad:
    if (e->want != NULL)
        snprintf(want, wlen, "%s", e->want);
    return -1;
}

void dml__settings_init(dml__train_settings_t *s)
{
    char want[128];

    memset(s, 0, sizeof(*s));
    dml_trainer_config_init(&s->train);
    for (size_t i = 0; i < dml__cfg_count; i++)
        if (dml__cfg_table[i].def != NULL)
            (void)set_value(s, &dml__cfg_table[i], dml__cfg_table[i].def, want, sizeof(want));
    memset(s->given, 0, sizeof(s->given));
}

void dml__settings_free(dml__train_settings_t *s)
{
    for (size_t i = 0; i < s->nowned; i++)
        free(s->owned[i]);
    free(s->owned);
    s->owned = NULL;
    s->nowned = 0;
}

/* ---- JSON ----------------------------------------------------------------------- */

static json_t *value_json(const dml__cfg_entry_t *e, const dml__train_settings_t *s, int *digits17)
{
    const void *p = DML__CFG_CPTR(s, e);
    char buf[DML_MODEL_SPEC_MAX];
    const char *w;
    double v;

    if ((e->flags & UNSET0) && *(const uint64_t *)p == 0)
        return json_null();
    switch (e->type) {
    case CFG_STRING:
        w = *(const char *const *)p;
        return w != NULL ? json_string(w) : e->def != NULL ? json_string(e->def) : json_null();
    case CFG_MODEL:
        return s->model != NULL ? json_string(dml__cfg_value_text(e, s, buf, sizeof(buf)))
                                : json_null();
    case CFG_INT:
        return json_integer(*(const int *)p);
    case CFG_U64:
        /* JSON integers are int64 in jansson; a seed above that as a string */
        if (*(const uint64_t *)p > (uint64_t)INT64_MAX)
            return json_string(dml__cfg_value_text(e, s, buf, sizeof(buf)));
        return json_integer((json_int_t) * (const uint64_t *)p);
    case CFG_KIB:
        return json_integer(
            (json_int_t)strtoll(dml__cfg_value_text(e, s, buf, sizeof(buf)), NULL, 10));
    case CFG_BOOL:
        return json_boolean(*(const int *)p);
    case CFG_FLOAT:
    case CFG_DOUBLE:
        w = dml__cfg_value_text(e, s, buf, sizeof(buf));
        if (w != buf) /* a word: "auto" */
            return json_string(w);
        /* the number the text names, so that 0.05 is 0.05, not the float's
         * 0.05000000074505806 */
        v = strtod(buf, NULL);
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v)
            *digits17 = 1;
        return json_real(v);
    case CFG_ENUM:
        return json_string(dml__cfg_value_text(e, s, buf, sizeof(buf)));
    case CFG_ACTION:
        break;
    }
    return json_null();
}

static json_t *settings_json(const dml__train_settings_t *s, int *digits17)
{
    json_t *o = json_object();
    char key[64];

    for (size_t i = 0; o != NULL && i < dml__cfg_count; i++) {
        if (dml__cfg_table[i].type == CFG_ACTION)
            continue;
        if (json_object_set_new(o, dml__cfg_key(&dml__cfg_table[i], key, sizeof(key)),
                                value_json(&dml__cfg_table[i], s, digits17)) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

json_t *dml__settings_json(const dml__train_settings_t *s)
{
    int digits17 = 0;
    return settings_json(s, &digits17);
}

char *dml__settings_json_text(const dml__train_settings_t *s)
{
    int digits17 = 0;
    json_t *o = settings_json(s, &digits17);
    char *text;

    if (o == NULL)
        return NULL;
    /* 15 digits where they read back exactly (0.05, not 0.050000000000000003) */
    text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                             JSON_REAL_PRECISION(digits17 ? 17 : 15));
    json_decref(o);
    return text;
}

/* ---- the configuration file ---------------------------------------------------
 *
 * libinih parses it, but reads a line into a buffer of INI_MAX_LINE bytes
 * and goes on with the rest of a longer line as if it were a line of its
 * own (the tail of a comment becomes a setting), and reads an indented line
 * as the continuation of the key before it. So the file is read whole first
 * and refused, with its true line number, where libinih would misread it: a
 * line too long, bytes that are not text, an indented line, a setting given
 * twice. What passes is plain INI, which libinih reads as written. */

#define CONFIG_MAX_BYTES (1 << 20)
/* libinih's buffer holds the line, its newline and a NUL */
#define CONFIG_MAX_LINE (INI_MAX_LINE - 2)

/* The whole file into *buf (len bytes), or the error recorded. */
static dml_status_t read_whole(const char *file, char **buf, size_t *len)
{
    struct stat sb;
    dml_status_t st;
    FILE *f;

    if (stat(file, &sb) != 0)
        return dml_error_set_errno(errno, "--config %s: cannot open", file);
    if (!S_ISREG(sb.st_mode))
        return dml_error_set(DML_ERR_INVALID_ARG, "--config %s: is %s, not a configuration file",
                             file, S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file");
    if (sb.st_size > CONFIG_MAX_BYTES)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "--config %s: %lld bytes, more than a configuration file has (at "
                             "most %d)",
                             file, (long long)sb.st_size, CONFIG_MAX_BYTES);
    if ((f = fopen(file, "rb")) == NULL)
        return dml_error_set_errno(errno, "--config %s: cannot open", file);
    if ((*buf = malloc((size_t)sb.st_size + 1)) == NULL) {
        st = dml_error_set(DML_ERR_NO_MEMORY, "--config %s: no memory", file);
        goto out;
    }
    *len = fread(*buf, 1, (size_t)sb.st_size, f);
    st = DML_OK;
    if (ferror(f)) {
        st = dml_error_set_errno(errno ? errno : EIO, "--config %s: cannot read", file);
        free(*buf);
        *buf = NULL;
    }
out:
    fclose(f);
    return st;
}

/* Line `line` (p, n bytes, no newline) as libinih would read it, or the error recorded. */
static dml_status_t check_line(const char *file, int line, const char *p, size_t n)
{
    size_t k;

    if (n > CONFIG_MAX_LINE)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "%s:%d: a line of %zu bytes; lines of up to %d are read (give a "
                             "longer value on the command line)",
                             file, line, n, CONFIG_MAX_LINE);
    for (k = 0; k < n; k++) {
        const unsigned char c = (unsigned char)p[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "%s:%d: byte 0x%02x at column %zu: not a text file", file, line, c,
                                 k + 1);
    }
    for (k = 0; k < n && (p[k] == ' ' || p[k] == '\t'); k++)
        ;
    if (k > 0 && k < n && p[k] != '#' && p[k] != ';')
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "%s:%d: an indented line, which INI reads as the continuation of "
                             "the value before it: start it at the beginning of the line",
                             file, line);
    return DML_OK;
}

/* A setting's line in [train] (keys before any section are [train]'s, as
 * ini_entry reads them): refused where the setting came before, under
 * either spelling. first[] holds each entry's first line. Unknown keys are
 * left to ini_entry, which names them. */
static dml_status_t check_twice(const char *file, int line, const char *p, size_t n, int *first)
{
    const dml__cfg_entry_t *e;
    size_t kl = 0;

    while (kl < n && p[kl] != '=' && p[kl] != ':')
        kl++;
    while (kl > 0 && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
        kl--;
    if ((e = dml__cfg_keyed(p, kl)) == NULL)
        return DML_OK;
    if (first[e - dml__cfg_table] != 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "%s:%d: '%.*s' is given twice (first on line %d)",
                             file, line, (int)kl, p, first[e - dml__cfg_table]);
    first[e - dml__cfg_table] = line;
    return DML_OK;
}

static dml_status_t config_prescan(const char *file)
{
    int first[DML__CFG_MAX] = {0}, line = 0, in_train = 1;
    dml_status_t rc;
    size_t len = 0, at = 0;
    char *buf = NULL;

    if ((rc = read_whole(file, &buf, &len)) != DML_OK)
        return rc;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) /* a UTF-8 byte order mark */
        at = 3;
    while (rc == 0 && at < len) {
        const char *p = buf + at;
        size_t end = at, n;
        line++;
        while (end < len && buf[end] != '\n')
            end++;
        n = end - at;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        rc = check_line(file, line, p, n);
        if (rc == 0 && n > 0 && p[0] == '[') {
            /* "[]" is read as no section at all */
            in_train = strncmp(p, "[]", 2) == 0 || strncmp(p, "[train]", 7) == 0;
        } else if (rc == 0 && n > 0 && p[0] != '#' && p[0] != ';' && in_train)
            rc = check_twice(file, line, p, n, first);
        at = end + 1;
    }
    free(buf);
    return rc;
}

typedef struct {
    dml__train_settings_t *s;
    char why[512];
} ini_ctx_t;

/* One key = value of the file onto the settings. Returning 0 makes
 * ini_parse report this line, with why. */
static int ini_entry(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx_t *a = user;
    dml__train_settings_t *s = a->s;
    const dml__cfg_entry_t *e;
    char want[128] = "", *copy, **more;

    if (section[0] != '\0' && strcmp(section, "train") != 0) {
        snprintf(a->why, sizeof(a->why), "section [%s]: only [train] is read", section);
        return 0;
    }
    if ((e = dml__cfg_keyed(name, strlen(name))) == NULL) {
        snprintf(a->why, sizeof(a->why),
                 "unknown key '%s' (keys are dml-train's options without the leading --; see "
                 "--help)",
                 name);
        return 0;
    }
    /* "key =" leaves the setting unset, as --print-config=ini writes one:
     * a path or the model not given, a number whose 0 is "not set", or one
     * whose default depends on another setting (momentum and weight decay:
     * the optimiser's, whichever optimiser the command line then names) */
    if (value[0] == '\0' &&
        (e->type == CFG_STRING || e->type == CFG_MODEL || (e->flags & (UNSET0 | DEPENDS))))
        return 1;
    if ((copy = strdup(value)) == NULL ||
        (more = realloc(s->owned, (s->nowned + 1) * sizeof(char *))) == NULL) {
        free(copy);
        snprintf(a->why, sizeof(a->why), "no memory");
        return 0;
    }
    s->owned = more;
    s->owned[s->nowned++] = copy;
    if (set_value(s, e, copy, want, sizeof(want)) != 0) {
        snprintf(a->why, sizeof(a->why), "%s = %s: expected %s", name, value, want);
        return 0;
    }
    return 1;
}

static int read_config(dml__train_settings_t *s, const char *file)
{
    ini_ctx_t a = {s, ""};
    int line;

    if (config_prescan(file) != 0)
        return 2;
    line = ini_parse(file, ini_entry, &a);
    if (line == 0)
        return 0;
    if (line == -1)
        dml_error_set_errno(errno, "--config %s: cannot open", file);
    else
        dml_error_set(DML_ERR_INVALID_ARG, "%s:%d: %s", file, line,
                      a.why[0] ? a.why : "not an INI line (key = value)");
    return 2;
}

/* ---- the command line ------------------------------------------------------------ */

/* getopt_long's options: entry i is 256 + i. */
static void make_options(struct option *o)
{
    size_t n = 0;

    for (size_t i = 0; i < dml__cfg_count; i++) {
        const dml__cfg_entry_t *e = &dml__cfg_table[i];
        if (e->flags & RECORD)
            continue;
        o[n].name = e->name;
        o[n].has_arg = e->type == CFG_BOOL || (e->type == CFG_ACTION && e->arg == NULL)
                           ? no_argument
                       : e->choices != NULL && e->type == CFG_ACTION ? optional_argument
                                                                     : required_argument;
        o[n].flag = NULL;
        o[n++].val = 256 + (int)i;
    }
    memset(&o[n], 0, sizeof(o[n]));
}

static int bad(const char *opt, const char *val, const char *want)
{
    dml_error_set(DML_ERR_INVALID_ARG, "%s '%s': expected %s", opt, val, want);
    return 2;
}

/* --help, --check, --config, --print-config; 1 for --help. */
static int action(dml__train_settings_t *s, const dml__cfg_entry_t *e, const char *val)
{
    const dml__cfg_choice_t *c;

    if (strcmp(e->name, "help") == 0)
        return 1;
    if (strcmp(e->name, "check") == 0)
        s->check = 1;
    else if (strcmp(e->name, "config") == 0)
        s->config_file = val; /* read before the options */
    else if (val == NULL)
        s->print = DML__PRINT_INI;
    else if ((c = choice_named(e->choices, val)) != NULL)
        s->print = c->value;
    else
        return bad("--print-config", val, "ini or json");
    return 0;
}

/* Where the optimiser's defaults depend on the optimiser chosen, they are
 * its, wherever in the command line or file it came. */
static void settle_optimizer(dml__train_settings_t *s)
{
    const dml_opt_config_t given = s->train.opt;
    const dml__cfg_entry_t *mom = dml__cfg_named("momentum"), *wd = dml__cfg_named("weight-decay");

    dml_opt_config_init(&s->train.opt, given.type);
    if (s->given[mom - dml__cfg_table])
        s->train.opt.momentum = given.momentum;
    if (s->given[wd - dml__cfg_table])
        s->train.opt.weight_decay = given.weight_decay;
    s->train.opt.nesterov = given.nesterov;
}

/* What holds only of the whole: required settings, the spec. */
static int settle(dml__train_settings_t *s, int argc, char **argv)
{
    if (!s->print && (s->train.train_dir == NULL || s->model == NULL)) {
        dml_error_set(DML_ERR_INVALID_ARG, "--train and --model are required (see --help)");
        return 2;
    }
    if (optind != argc) {
        dml_error_set(DML_ERR_INVALID_ARG, "unexpected argument '%s' (see --help)", argv[optind]);
        return 2;
    }
    if (s->model != NULL && dml_model_spec_parse(s->model, &s->train.spec) != DML_OK) {
        dml_error_set(DML_ERR_INVALID_ARG, "--model: %s", dml_error_message());
        return 2;
    }
    if (strcmp(s->resume, "never") == 0 && s->train.ckpt_dir == NULL) {
        dml_error_set(DML_ERR_INVALID_ARG, "--resume never: without --checkpoint-dir there is "
                                           "nothing to resume from anyway");
        return 2;
    }
    settle_optimizer(s);
    return 0;
}

int dml__settings_parse(dml__train_settings_t *s, int argc, char **argv)
{
    struct option opts[DML__CFG_MAX + 1];
    const char *file = NULL;
    char name[80], want[128];
    int c, rc = 0;

    /* The file first, so that the command line wins over it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file != NULL && read_config(s, file) != 0)
        return 2;
    make_options(opts);
    opterr = 0; /* getopt's own messages would come from every rank */
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const dml__cfg_entry_t *e =
            c >= 256 && c < 256 + (int)dml__cfg_count ? &dml__cfg_table[c - 256] : NULL;
        if (c == ':') {
            dml_error_set(DML_ERR_INVALID_ARG, "%s: needs a value (see --help)", argv[optind - 1]);
            return 2;
        }
        if (e == NULL) {
            dml_error_set(DML_ERR_INVALID_ARG, "unknown option '%s' (see --help)",
                          argv[optind - 1]);
            return 2;
        }
        if (e->type == CFG_ACTION) {
            rc = action(s, e, optarg);
            continue;
        }
        if (set_value(s, e, optarg, want, sizeof(want)) != 0) {
            snprintf(name, sizeof(name), "--%s", e->name);
            rc = bad(name, optarg, want);
        }
    }
    return rc != 0 ? rc : settle(s, argc, argv);
}

/* ---- --help ---------------------------------------------------------------------- */

/* text from column col on, wrapped at word breaks to lines of at most 79
 * columns, each next line indented by 25 (a word longer than that stays
 * whole). */
static void wrap(FILE *out, const char *text, int col)
{
    while (*text != '\0') {
        size_t room = col < 79 ? (size_t)(79 - col) : 1, n = strlen(text), k;
        if (n > room) {
            for (k = room; k > 0 && text[k] != ' '; k--)
                ;
            if (k == 0)
                for (k = room; text[k] != '\0' && text[k] != ' '; k++)
                    ;
            n = k;
        }
        fprintf(out, "%.*s\n", (int)n, text);
        text += n;
        while (*text == ' ')
            text++;
        if (*text != '\0')
            fprintf(out, "%25s", "");
        col = 25;
    }
}

static void help_entry(FILE *out, const dml__cfg_entry_t *e, const dml__train_settings_t *def)
{
    char head[64], text[1024], val[64];
    int n;

    n = snprintf(head, sizeof(head), "  --%s%s%s", e->name,
                 e->arg == NULL || e->arg[0] == '[' ? "" : " ", e->arg ? e->arg : "");
    if (e->flags & NODEF)
        snprintf(text, sizeof(text), "%s", e->help);
    else
        snprintf(text, sizeof(text), "%s [%s%s]", e->help,
                 dml__cfg_value_text(e, def, val, sizeof(val)), e->note ? e->note : "");
    /* a long option and value on a line of their own */
    if (n < 24)
        fprintf(out, "%s%*s", head, 25 - n, "");
    else
        fprintf(out, "%s\n%25s", head, "");
    wrap(out, text, 25);
}

char *dml__config_help(void)
{
    dml__train_settings_t def;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    if (out == NULL)
        return NULL;
    dml__settings_init(&def);
    fputs("Usage: srun --mpi=pmix dml-train --train DIR --model SPEC [OPTIONS]\n"
          "       mpirun -np N dml-train ...\n\n",
          out);
    for (size_t i = 0; i < dml__cfg_count; i++)
        if (!(dml__cfg_table[i].flags & (RECORD | CKPT)) && dml__cfg_table[i].type != CFG_ACTION)
            help_entry(out, &dml__cfg_table[i], &def);
    fputs("\nCheckpoints (see docs/checkpoints.md):\n", out);
    for (size_t i = 0; i < dml__cfg_count; i++)
        if (dml__cfg_table[i].flags & CKPT)
            help_entry(out, &dml__cfg_table[i], &def);
    fputs("  Exit status 75 means: checkpointed and stopped on request; requeue the job.\n"
          "  143: checkpointed and stopped because the job was cancelled (scancel): not\n"
          "  requeued; submit it again to continue.\n\n",
          out);
    for (size_t i = 0; i < dml__cfg_count; i++)
        if (dml__cfg_table[i].type == CFG_ACTION)
            help_entry(out, &dml__cfg_table[i], &def);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
