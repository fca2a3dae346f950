/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * spec.c: the model spec: parsing the text users write, binding it to the
 * data's shape (every layer's shapes, and the checks that they fit), and the
 * canonical text written back.
 */
#include "config.h"

#include "nn_private.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits that keep every size and index within int (BLAS and the loops
 * count in int) and the arrays within what a machine could hold. */
#define DML__DIM_MAX (1 << 20) /* a layer's units, filters, a side */
#define DML__KERNEL_MAX 64
#define DML__ELEMS_MAX (1L << 28) /* one sample's values at any layer */
#define DML__LAYER_PARAMS_MAX (1L << 30)
#define DML__PARAMS_MAX (1L << 31)

/* The book's three models (Distributed Machine Learning Patterns, the
 * project of its last chapter), by name. */
static const struct {
    const char *name, *spec;
} dml__presets[] = {
    {"cnn", "conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10)"},
    {"cnn-bn", "conv2d(32,3),batchnorm,relu,maxpool(2),flatten,dense(64),relu,dense(10)"},
    {"cnn-dropout", "conv2d(32,3),relu,maxpool(2),dropout(0.5),flatten,dense(64),relu,dense(10)"},
};

static const struct {
    const char *name;
    dml_layer_kind_t kind;
} dml__names[] = {
    {"dense", DML_LAYER_DENSE},         {"linear", DML_LAYER_DENSE},
    {"conv2d", DML_LAYER_CONV2D},       {"conv", DML_LAYER_CONV2D},
    {"maxpool", DML_LAYER_MAXPOOL},     {"maxpool2d", DML_LAYER_MAXPOOL},
    {"avgpool", DML_LAYER_AVGPOOL},     {"avgpool2d", DML_LAYER_AVGPOOL},
    {"batchnorm", DML_LAYER_BATCHNORM}, {"bn", DML_LAYER_BATCHNORM},
    {"dropout", DML_LAYER_DROPOUT},     {"flatten", DML_LAYER_FLATTEN},
    {"relu", DML_LAYER_RELU},
};

static const char *dml__kind_name(dml_layer_kind_t k)
{
    switch (k) {
    case DML_LAYER_DENSE:
        return "dense";
    case DML_LAYER_CONV2D:
        return "conv2d";
    case DML_LAYER_MAXPOOL:
        return "maxpool";
    case DML_LAYER_AVGPOOL:
        return "avgpool";
    case DML_LAYER_BATCHNORM:
        return "batchnorm";
    case DML_LAYER_DROPOUT:
        return "dropout";
    case DML_LAYER_FLATTEN:
        return "flatten";
    case DML_LAYER_RELU:
        return "relu";
    }
    return "?";
}

/* ---- parsing ---------------------------------------------------------------- */

/* "K" or "KHxKW", whole numbers in [lo, hi]. */
static int dml__pair(const char *v, int lo, int hi, int *a, int *b)
{
    char *end;
    long x, y;

    errno = 0;
    x = strtol(v, &end, 10);
    if (end == v || errno != 0 || x < lo || x > hi)
        return -1;
    if (*end == '\0') {
        *a = *b = (int)x;
        return 0;
    }
    if (*end != 'x')
        return -1;
    v = end + 1;
    y = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || y < lo || y > hi)
        return -1;
    *a = (int)x;
    *b = (int)y;
    return 0;
}

static int dml__int(const char *v, int lo, int hi, int *out)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || x < lo || x > hi)
        return -1;
    *out = (int)x;
    return 0;
}

static int dml__float(const char *v, float *out)
{
    char *end;
    double x;

    errno = 0;
    x = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !isfinite(x))
        return -1;
    *out = (float)x;
    return 0;
}

#define DML__ARGS_MAX 8

/* Cuts a layer's text, NAME or NAME(ARG, ...), in place into its name (name
 * keeps it) and its arguments (argv, *argc). NULL, or what is wrong. */
static const char *dml__split_args(char *name, char *argv[DML__ARGS_MAX], int *argc)
{
    char *args = strchr(name, '(');
    size_t len;

    *argc = 0;
    if (args == NULL)
        return NULL;
    len = strlen(args);
    if (len < 2 || args[len - 1] != ')')
        return "unbalanced parentheses";
    *args++ = '\0';
    args[len - 2] = '\0';
    if (*args == '\0')
        return NULL;
    for (char *a = args;; a++) {
        if (*argc == DML__ARGS_MAX)
            return "too many arguments";
        argv[(*argc)++] = a;
        a = strchr(a, ',');
        if (a == NULL)
            return NULL;
        *a = '\0';
    }
}

/* The argument is the one named name: given by that key, or without a key
 * in position at. */
static int dml__arg_is(const char *key, int i, int at, const char *name)
{
    return key != NULL ? strcmp(key, name) == 0 : i == at;
}

/* Argument i of layer l (key: its name, NULL where positional; a: its
 * value) into l. NULL, or what is wrong. */
static const char *dml__layer_arg(dml_layer_t *l, const char *key, int i, const char *a)
{
    switch (l->kind) {
    case DML_LAYER_DENSE:
        if (!dml__arg_is(key, i, 0, "units"))
            return "expected dense(UNITS)";
        if (dml__int(a, 1, DML__DIM_MAX, &l->units) != 0)
            return "units must be a whole number from 1 to 1048576";
        return NULL;
    case DML_LAYER_CONV2D:
        if (dml__arg_is(key, i, 0, "filters")) {
            if (dml__int(a, 1, DML__DIM_MAX, &l->units) != 0)
                return "filters must be a whole number from 1 to 1048576";
        } else if (dml__arg_is(key, i, 1, "kernel")) {
            if (dml__pair(a, 1, DML__KERNEL_MAX, &l->kh, &l->kw) != 0)
                return "kernel must be K or KHxKW, from 1 to 64";
        } else if (dml__arg_is(key, i, 2, "stride")) {
            if (dml__pair(a, 1, DML__KERNEL_MAX, &l->sh, &l->sw) != 0)
                return "stride must be S or SHxSW, from 1 to 64";
        } else if (dml__arg_is(key, i, 3, "padding")) {
            if (strcmp(a, "same") == 0)
                l->same = 1;
            else if (dml__pair(a, 0, DML__KERNEL_MAX, &l->ph, &l->pw) != 0)
                return "padding must be P, PHxPW (0 to 64) or same";
        } else {
            return "expected conv2d(FILTERS, KERNEL[, stride=S][, padding=P])";
        }
        return NULL;
    case DML_LAYER_MAXPOOL:
    case DML_LAYER_AVGPOOL:
        if (dml__arg_is(key, i, 0, "kernel")) {
            if (dml__pair(a, 1, DML__KERNEL_MAX, &l->kh, &l->kw) != 0)
                return "kernel must be K or KHxKW, from 1 to 64";
        } else if (dml__arg_is(key, i, 1, "stride")) {
            if (dml__pair(a, 1, DML__KERNEL_MAX, &l->sh, &l->sw) != 0)
                return "stride must be S or SHxSW, from 1 to 64";
            l->units = 1; /* stride given (dml__layer_complete) */
        } else {
            return "expected maxpool(K[, stride=S]) or avgpool(K[, stride=S])";
        }
        return NULL;
    case DML_LAYER_BATCHNORM:
        if (key != NULL && strcmp(key, "eps") == 0) {
            if (dml__float(a, &l->eps) != 0 || !(l->eps > 0) || l->eps > 1)
                return "eps must be in (0, 1]";
        } else if (key != NULL && strcmp(key, "momentum") == 0) {
            if (dml__float(a, &l->momentum) != 0 || !(l->momentum >= 0 && l->momentum <= 1))
                return "momentum must be in [0, 1]";
        } else {
            return "expected batchnorm or batchnorm(eps=E, momentum=M)";
        }
        return NULL;
    case DML_LAYER_DROPOUT:
        if (!dml__arg_is(key, i, 0, "p"))
            return "expected dropout(P)";
        if (dml__float(a, &l->p) != 0 || !(l->p >= 0 && l->p < 1))
            return "the dropout probability must be in [0, 1)";
        return NULL;
    case DML_LAYER_FLATTEN:
    case DML_LAYER_RELU:
        return "takes no arguments";
    }
    return NULL;
}

/* After its argc arguments: what layer l cannot do without, and the
 * defaults that depend on what was given. NULL, or what is missing. */
static const char *dml__layer_complete(dml_layer_t *l, int argc)
{
    switch (l->kind) {
    case DML_LAYER_DENSE:
        if (l->units == 0)
            return "expected dense(UNITS)";
        break;
    case DML_LAYER_CONV2D:
        if (l->units == 0 || l->kh == 0)
            return "expected conv2d(FILTERS, KERNEL[, stride=S][, padding=P])";
        if (l->same && (l->sh != 1 || l->sw != 1))
            return "padding=same needs stride 1";
        break;
    case DML_LAYER_MAXPOOL:
    case DML_LAYER_AVGPOOL:
        if (l->kh == 0)
            return "expected a window size, as in maxpool(2)";
        if (l->units == 0) { /* no stride given: the window's size */
            l->sh = l->kh;
            l->sw = l->kw;
        }
        l->units = 0;
        break;
    case DML_LAYER_DROPOUT:
        if (argc == 0)
            return "expected dropout(P)";
        break;
    default:
        break;
    }
    return NULL;
}

/* One layer's text: NAME or NAME(ARG, ...), spaces removed. */
static dml_status_t dml__parse_layer(const char *spec, int pos, char *name, dml_layer_t *l)
{
    char t[DML_MODEL_SPEC_MAX], *argv[DML__ARGS_MAX];
    const char *bad;
    int argc = 0, i, npos = 0;
    size_t k;

    /* the layer as written, for messages; name and args are cut up below */
    snprintf(t, sizeof(t), "%s", name);
    memset(l, 0, sizeof(*l));
    if ((bad = dml__split_args(name, argv, &argc)) != NULL)
        goto bad;
    for (k = 0; k < sizeof(dml__names) / sizeof(dml__names[0]); k++)
        if (strcmp(name, dml__names[k].name) == 0)
            break;
    if (k == sizeof(dml__names) / sizeof(dml__names[0]))
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"%s\": layer %d: unknown layer \"%s\" "
                             "(conv2d, maxpool, avgpool, batchnorm, dropout, flatten, dense, "
                             "relu)",
                             spec, pos, name);
    l->kind = dml__names[k].kind;
    l->sh = l->sw = 1;
    l->eps = 1e-5f;
    l->momentum = 0.1f;
    for (i = 0; i < argc; i++) {
        char *a = argv[i], *eq = strchr(a, '=');
        const char *key = NULL;
        if (eq != NULL) {
            *eq = '\0';
            key = a;
            a = eq + 1;
        } else if (npos++ != i) {
            bad = "a positional argument after a named one";
            goto bad;
        }
        if ((bad = dml__layer_arg(l, key, i, a)) != NULL)
            goto bad;
    }
    if ((bad = dml__layer_complete(l, argc)) != NULL)
        goto bad;
    return DML_OK;
bad:
    return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": layer %d (%s): %s", spec, pos, t, bad);
}

static dml_status_t dml__parse_mlp(const char *text, dml_model_spec_t *s)
{
    const char *p = text + 4;
    int dims[DML_MODEL_MAX_LAYERS + 1], nd = 0, i;
    float dropout = 0;
    char *end;

    for (;;) {
        long v;
        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 1 || v > DML__DIM_MAX)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "model \"%s\": layer sizes must be whole "
                                 "numbers from 1 to 1048576",
                                 text);
        if (nd > DML_MODEL_MAX_LAYERS / 3)
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": more than %d layers", text,
                                 DML_MODEL_MAX_LAYERS / 3);
        dims[nd++] = (int)v;
        p = end;
        if (*p != '-')
            break;
        p++;
    }
    if (nd < 2)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"%s\": needs at least an input and an "
                             "output size",
                             text);
    if (dims[nd - 1] < 2)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"%s\": the output layer needs at least 2 "
                             "classes",
                             text);
    if (*p == ':') {
        p++;
        if (strncmp(p, "dropout=", 8) != 0)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "model \"%s\": unknown option \"%s\" "
                                 "(dropout=P)",
                                 text, p);
        if (dml__float(p + 8, &dropout) != 0 || !(dropout >= 0 && dropout < 1))
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": dropout must be in [0, 1)",
                                 text);
    } else if (*p != '\0') {
        return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": unexpected \"%s\"", text, p);
    }
    /* dense, relu[, dropout] for each hidden layer; the last dense alone */
    for (i = 1; i < nd; i++) {
        dml_layer_t *l = &s->layer[s->nlayers++];
        memset(l, 0, sizeof(*l));
        l->kind = DML_LAYER_DENSE;
        l->units = dims[i];
        if (i == nd - 1)
            break;
        l = &s->layer[s->nlayers++];
        memset(l, 0, sizeof(*l));
        l->kind = DML_LAYER_RELU;
        if (dropout > 0) {
            l = &s->layer[s->nlayers++];
            memset(l, 0, sizeof(*l));
            l->kind = DML_LAYER_DROPOUT;
            l->p = dropout;
        }
    }
    s->mlp = 1;
    s->mlp_inputs = dims[0];
    s->mlp_dropout = dropout;
    return DML_OK;
}

dml_status_t dml_model_spec_parse(const char *text, dml_model_spec_t *spec)
{
    char buf[DML_MODEL_SPEC_MAX], *p, *t;
    dml_model_spec_t *s;
    dml_status_t st = DML_OK;
    size_t i, n = 0;
    int depth = 0;

    if (text == NULL || text[0] == '\0')
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"\": expected layers, as in "
                             "conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10), "
                             "mlp:784-512-256-10, or cnn, cnn-bn, cnn-dropout");
    for (i = 0; i < sizeof(dml__presets) / sizeof(dml__presets[0]); i++)
        if (strcmp(text, dml__presets[i].name) == 0)
            text = dml__presets[i].spec;
    /* Spaces are for people: "conv2d(32, 3), relu" reads as its unspaced form. */
    for (i = 0; text[i] != '\0'; i++) {
        if (isspace((unsigned char)text[i]))
            continue;
        if (n + 1 >= sizeof(buf))
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "model \"%.64s...\": longer than %d "
                                 "characters",
                                 text, DML_MODEL_SPEC_MAX - 1);
        buf[n++] = (char)tolower((unsigned char)text[i]);
    }
    buf[n] = '\0';
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a model spec");
    if (strncmp(buf, "mlp:", 4) == 0) {
        /* its input size is part of it: bound to flat samples of that size */
        uint64_t flat;
        if ((st = dml__parse_mlp(buf, s)) == DML_OK) {
            flat = (uint64_t)s->mlp_inputs;
            st = dml_model_spec_bind(s, 1, &flat, 0);
        }
        goto out;
    }
    /* Commas inside parentheses belong to the layer. */
    for (p = t = buf;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        if (depth < 0 || (depth > 0 && *p == '\0')) {
            st = dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": unbalanced parentheses", text);
            goto out;
        }
        if ((*p == ',' && depth == 0) || *p == '\0') {
            const int end = *p == '\0';
            *p = '\0';
            if (*t == '\0') {
                st = dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": layer %d is empty", text,
                                   s->nlayers + 1);
                goto out;
            }
            if (s->nlayers == DML_MODEL_MAX_LAYERS) {
                st = dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": more than %d layers", text,
                                   DML_MODEL_MAX_LAYERS);
                goto out;
            }
            st = dml__parse_layer(text, s->nlayers + 1, t, &s->layer[s->nlayers]);
            if (st != DML_OK)
                goto out;
            s->nlayers++;
            if (end)
                break;
            t = p + 1;
        }
    }
    if (s->layer[s->nlayers - 1].kind != DML_LAYER_DENSE) {
        char lt[64];
        dml_layer_format(&s->layer[s->nlayers - 1], lt, sizeof(lt));
        st = dml_error_set(DML_ERR_INVALID_ARG,
                           "model \"%s\": the last layer is %s; it must be "
                           "dense(CLASSES), the outputs softmax turns into probabilities",
                           text, lt);
        goto out;
    }
out:
    if (st == DML_OK)
        *spec = *s;
    free(s);
    return st;
}

/* ---- binding ------------------------------------------------------------------ */

static long dml__elems(const int *t)
{
    return (long)t[0] * t[1] * t[2];
}

size_t dml_layer_nparams(const dml_layer_t *l)
{
    switch (l->kind) {
    case DML_LAYER_DENSE:
        return (size_t)dml__elems(l->in) * (size_t)l->units + (size_t)l->units;
    case DML_LAYER_CONV2D:
        return (size_t)l->units * (size_t)l->in[0] * (size_t)l->kh * (size_t)l->kw +
               (size_t)l->units;
    case DML_LAYER_BATCHNORM:
        return 2 * (size_t)l->in[0];
    default:
        return 0;
    }
}

size_t dml_layer_nbuffers(const dml_layer_t *l)
{
    return l->kind == DML_LAYER_BATCHNORM ? 2 * (size_t)l->in[0] : 0;
}

/* Why a layer does not fit, into why: returns -1 so that callers can
 * return it. */
static int dml__nofit(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int dml__nofit(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* The sample's shape as the first layer's input (channels x height x
 * width), checked against the limits and an mlp:'s input layer. */
static dml_status_t dml__bind_input(const dml_model_spec_t *spec, const char *text, int rank,
                                    const uint64_t *shape, int cur[3])
{
    int i;

    if (rank < 1 || rank > 3)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"%s\": samples of rank %d (1 to 3 "
                             "dimensions can be bound)",
                             text, rank);
    for (i = 0; i < rank; i++)
        if (shape[i] < 1 || shape[i] > DML__DIM_MAX)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "model \"%s\": a sample dimension of %llu "
                                 "(1 to 1048576)",
                                 text, (unsigned long long)shape[i]);
    if (rank == 1) {
        cur[0] = (int)shape[0];
        cur[1] = cur[2] = 1;
    } else if (rank == 2) {
        cur[0] = 1;
        cur[1] = (int)shape[0];
        cur[2] = (int)shape[1];
    } else {
        cur[0] = (int)shape[0];
        cur[1] = (int)shape[1];
        cur[2] = (int)shape[2];
    }
    if (dml__elems(cur) > DML__ELEMS_MAX)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"%s\": samples of %ld values (at most "
                             "%ld)",
                             text, dml__elems(cur), DML__ELEMS_MAX);
    if (spec->mlp && dml__elems(cur) != spec->mlp_inputs)
        return dml_error_set(DML_ERR_MISMATCH,
                             "samples have %ld features, the model's input layer "
                             "has %d",
                             dml__elems(cur), spec->mlp_inputs);
    return DML_OK;
}

/* Layer l on input cur: cur becomes its output, flat whether that is a
 * vector; 0, or -1 with why it does not fit in why. */
static int dml__bind_layer(dml_layer_t *l, int cur[3], int *flat, char *why, size_t len)
{
    int oh, ow;

    switch (l->kind) {
    case DML_LAYER_DENSE:
        if (!*flat)
            return dml__nofit(why, len,
                              "its input is %dx%dx%d (channels x height x width); put flatten "
                              "before it",
                              cur[0], cur[1], cur[2]);
        cur[0] = l->units;
        break;
    case DML_LAYER_CONV2D:
        if (*flat)
            return dml__nofit(
                why, len, "its input is flat (%d values): a convolution needs an image", cur[0]);
        if (l->same) {
            /* PyTorch's padding="same": the total padding k - 1, the
             * extra one (even kernels) at the end; here symmetric only. */
            if (l->kh % 2 == 0 || l->kw % 2 == 0)
                return dml__nofit(
                    why, len, "padding=same needs an odd kernel (this build pads symmetrically)");
            l->ph = (l->kh - 1) / 2;
            l->pw = (l->kw - 1) / 2;
        }
        if (l->kh > cur[1] + 2 * l->ph || l->kw > cur[2] + 2 * l->pw)
            return dml__nofit(why, len,
                              "its %dx%d kernel is larger than its %dx%d input (padded %dx%d)",
                              l->kh, l->kw, cur[1], cur[2], cur[1] + 2 * l->ph, cur[2] + 2 * l->pw);
        if (l->ph >= l->kh || l->pw >= l->kw)
            return dml__nofit(why, len, "padding %dx%d: must be smaller than the kernel", l->ph,
                              l->pw);
        oh = (cur[1] + 2 * l->ph - l->kh) / l->sh + 1;
        ow = (cur[2] + 2 * l->pw - l->kw) / l->sw + 1;
        cur[0] = l->units;
        cur[1] = oh;
        cur[2] = ow;
        break;
    case DML_LAYER_MAXPOOL:
    case DML_LAYER_AVGPOOL:
        if (*flat)
            return dml__nofit(why, len, "its input is flat (%d values): pooling needs an image",
                              cur[0]);
        if (l->kh > cur[1] || l->kw > cur[2])
            return dml__nofit(why, len, "its %dx%d window is larger than its %dx%d input", l->kh,
                              l->kw, cur[1], cur[2]);
        cur[1] = (cur[1] - l->kh) / l->sh + 1;
        cur[2] = (cur[2] - l->kw) / l->sw + 1;
        break;
    case DML_LAYER_FLATTEN:
        cur[0] = (int)dml__elems(cur);
        cur[1] = cur[2] = 1;
        *flat = 1;
        break;
    case DML_LAYER_BATCHNORM:
    case DML_LAYER_DROPOUT:
    case DML_LAYER_RELU:
        break;
    }
    return 0;
}

/* The size limits on bound layer l (its output and its parameters) and on
 * the model's parameters so far (total, l's added); 0, or -1 with why. */
static int dml__layer_limits(const dml_layer_t *l, long *total, char *why, size_t len)
{
    size_t np;

    if (dml__elems(l->out) > DML__ELEMS_MAX)
        return dml__nofit(why, len, "%ld values per sample (at most %ld)", dml__elems(l->out),
                          DML__ELEMS_MAX);
    np = dml_layer_nparams(l);
    if (np > (size_t)DML__LAYER_PARAMS_MAX)
        return dml__nofit(why, len, "%zu parameters (at most %ld in one layer)", np,
                          DML__LAYER_PARAMS_MAX);
    *total += (long)np;
    if (*total > DML__PARAMS_MAX)
        return dml__nofit(why, len, "the model passes %ld parameters", DML__PARAMS_MAX);
    return 0;
}

dml_status_t dml_model_spec_bind(dml_model_spec_t *spec, int rank, const uint64_t *shape,
                                 uint32_t classes)
{
    char text[DML_MODEL_SPEC_MAX], lt[96], why[256];
    int cur[3], i, flat;
    long total = 0;
    dml_status_t st;

    dml_model_spec_format(spec, text, sizeof(text));
    if ((st = dml__bind_input(spec, text, rank, shape, cur)) != DML_OK)
        return st;
    memcpy(spec->in, cur, sizeof(cur));
    /* Flat: a vector of values (1-D data, after flatten or dense), which a
     * 1x1 image of channels is not. An mlp: is flat whatever the data's
     * shape (it always was). */
    flat = rank == 1;
    if (spec->mlp) {
        cur[0] = (int)dml__elems(cur);
        cur[1] = cur[2] = 1;
        flat = 1;
    }
    for (i = 0; i < spec->nlayers; i++) {
        dml_layer_t *l = &spec->layer[i];

        dml_layer_format(l, lt, sizeof(lt));
        memcpy(l->in, cur, sizeof(cur));
        if (dml__bind_layer(l, cur, &flat, why, sizeof(why)) != 0)
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": layer %d (%s): %s", text,
                                 i + 1, lt, why);
        memcpy(l->out, cur, sizeof(cur));
        if (dml__layer_limits(l, &total, why, sizeof(why)) != 0)
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": layer %d (%s): %s", text,
                                 i + 1, lt, why);
    }
    if (spec->layer[spec->nlayers - 1].out[0] < 2)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "model \"%s\": the output layer needs at least 2 "
                             "classes",
                             text);
    if (classes > (uint32_t)spec->layer[spec->nlayers - 1].out[0])
        return dml_error_set(DML_ERR_MISMATCH,
                             "model \"%s\": the data's labels go up to %u (%u "
                             "classes), outside the output layer's %d units",
                             text, classes - 1, classes, spec->layer[spec->nlayers - 1].out[0]);
    spec->classes = spec->layer[spec->nlayers - 1].out[0];
    spec->bound = 1;
    return DML_OK;
}

/* ---- text ------------------------------------------------------------------------ */

static size_t dml__put(char *buf, size_t len, size_t used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t dml__put(char *buf, size_t len, size_t used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (used >= len)
        return used;
    va_start(ap, fmt);
    n = vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
    return n < 0 ? len : used + (size_t)n;
}

static size_t dml__put_pair(char *buf, size_t len, size_t used, int a, int b)
{
    return a == b ? dml__put(buf, len, used, "%d", a) : dml__put(buf, len, used, "%dx%d", a, b);
}

void dml_layer_format(const dml_layer_t *l, char *buf, size_t len)
{
    size_t u = dml__put(buf, len, 0, "%s", dml__kind_name(l->kind));

    switch (l->kind) {
    case DML_LAYER_DENSE:
        dml__put(buf, len, u, "(%d)", l->units);
        break;
    case DML_LAYER_CONV2D:
        u = dml__put(buf, len, u, "(%d,", l->units);
        u = dml__put_pair(buf, len, u, l->kh, l->kw);
        if (l->sh != 1 || l->sw != 1) {
            u = dml__put(buf, len, u, ",stride=");
            u = dml__put_pair(buf, len, u, l->sh, l->sw);
        }
        if (l->same) {
            u = dml__put(buf, len, u, ",padding=same");
        } else if (l->ph != 0 || l->pw != 0) {
            u = dml__put(buf, len, u, ",padding=");
            u = dml__put_pair(buf, len, u, l->ph, l->pw);
        }
        dml__put(buf, len, u, ")");
        break;
    case DML_LAYER_MAXPOOL:
    case DML_LAYER_AVGPOOL:
        u = dml__put(buf, len, u, "(");
        u = dml__put_pair(buf, len, u, l->kh, l->kw);
        if (l->sh != l->kh || l->sw != l->kw) {
            u = dml__put(buf, len, u, ",stride=");
            u = dml__put_pair(buf, len, u, l->sh, l->sw);
        }
        dml__put(buf, len, u, ")");
        break;
    case DML_LAYER_BATCHNORM:
        if (l->eps != 1e-5f || l->momentum != 0.1f)
            dml__put(buf, len, u, "(eps=%g,momentum=%g)", (double)l->eps, (double)l->momentum);
        break;
    case DML_LAYER_DROPOUT:
        dml__put(buf, len, u, "(%g)", (double)l->p);
        break;
    case DML_LAYER_FLATTEN:
    case DML_LAYER_RELU:
        break;
    }
}

void dml_model_spec_format(const dml_model_spec_t *spec, char *buf, size_t len)
{
    size_t used = 0;
    int i;

    if (len == 0)
        return;
    buf[0] = '\0';
    if (spec->mlp) {
        used = dml__put(buf, len, 0, "mlp:%d", spec->mlp_inputs);
        for (i = 0; i < spec->nlayers; i++)
            if (spec->layer[i].kind == DML_LAYER_DENSE)
                used = dml__put(buf, len, used, "-%d", spec->layer[i].units);
        if (spec->mlp_dropout > 0)
            dml__put(buf, len, used, ":dropout=%g", (double)spec->mlp_dropout);
        return;
    }
    for (i = 0; i < spec->nlayers && used < len; i++) {
        char lt[96];
        dml_layer_format(&spec->layer[i], lt, sizeof(lt));
        used = dml__put(buf, len, used, "%s%s", i ? "," : "", lt);
    }
}
