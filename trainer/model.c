/*
 * model.c: the MLP's forward and backward passes on BLAS (cblas_sgemm), the
 * optimisers and learning-rate schedules.
 *
 * Layout of the flat arrays: for each layer l, W_l (dims[l] x dims[l+1],
 * row-major) then b_l (dims[l+1]). Activations are kept per layer for the
 * backward pass; the ReLU derivative is read back from them (a kept, positive
 * activation passes its gradient, scaled by 1/(1-p) under inverted dropout;
 * everything else does not), so no separate dropout mask is stored.
 */
#include "config.h"

#include "dml_simd.h"
#include "dml_train.h"
#include "train_private.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DML__HAVE_STREAM 1
#else
#define DML__HAVE_STREAM 0
#endif

struct dml_model {
    dml_model_spec_t spec;
    size_t np;
    float *params, *grads;
    int borrowed;                         /* params and grads are the caller's */
    size_t woff[DML_MODEL_MAX_LAYERS], boff[DML_MODEL_MAX_LAYERS];
    int max_batch, max_dim;
    const float *in;                      /* the batch's input (not owned) */
    float *act[DML_MODEL_MAX_LAYERS + 1]; /* act[1..L]: post-activation; act[L]: probabilities */
    float *d0, *d1;                       /* backward deltas, n x max_dim each */
};

/* ---- the spec ------------------------------------------------------------ */

dml_status_t dml_model_spec_parse(const char *text, dml_model_spec_t *spec)
{
    dml_model_spec_t s;
    const char *p;
    char *end;

    memset(&s, 0, sizeof(s));
    if (text == NULL || strncmp(text, "mlp:", 4) != 0)
        return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": expected mlp:IN-H1-...-OUT, e.g. "
                             "mlp:784-512-256-10", text ? text : "");
    p = text + 4;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1 << 20)
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": layer sizes must be whole "
                                 "numbers from 1 to 1048576", text);
        if (s.nlayers > DML_MODEL_MAX_LAYERS)
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": more than %d layers", text,
                                 DML_MODEL_MAX_LAYERS);
        s.dims[s.nlayers++] = (int)v;
        p = end;
        if (*p != '-')
            break;
        p++;
    }
    s.nlayers--; /* sizes counted; weight layers are one fewer */
    if (s.nlayers < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": needs at least an input and an "
                             "output size", text);
    if (s.dims[s.nlayers] < 2)
        return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": the output layer needs at least 2 "
                             "classes", text);
    if (*p == ':') {
        p++;
        if (strncmp(p, "dropout=", 8) != 0)
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": unknown option \"%s\" "
                                 "(dropout=P)", text, p);
        s.dropout = strtof(p + 8, &end);
        if (end == p + 8 || *end != '\0' || !(s.dropout >= 0 && s.dropout < 1))
            return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": dropout must be in [0, 1)",
                                 text);
    } else if (*p != '\0') {
        return dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": unexpected \"%s\"", text, p);
    }
    *spec = s;
    return DML_OK;
}

void dml_model_spec_format(const dml_model_spec_t *spec, char *buf, size_t len)
{
    size_t used;
    int l;

    used = (size_t)snprintf(buf, len, "mlp:");
    for (l = 0; l <= spec->nlayers && used < len; l++)
        used += (size_t)snprintf(buf + used, len - used, "%s%d", l ? "-" : "", spec->dims[l]);
    if (spec->dropout > 0 && used < len)
        snprintf(buf + used, len - used, ":dropout=%g", (double)spec->dropout);
}

/* ---- random numbers: a counter-based mix, so masks and initial weights
 * depend only on (seed, position) ----------------------------------------- */

static uint64_t dml__mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double dml__uniform(uint64_t key)
{
    return ((double)(dml__mix(key) >> 11) + 0.5) / 9007199254740992.0;
}

/* ---- create -------------------------------------------------------------- */

void dml_model_free(dml_model_t *m)
{
    int l;

    if (m == NULL)
        return;
    if (!m->borrowed) {
        free(m->params);
        free(m->grads);
    }
    for (l = 1; l <= m->spec.nlayers; l++)
        free(m->act[l]);
    free(m->d0);
    free(m->d1);
    free(m);
}

dml_status_t dml__model_alloc(const dml_model_spec_t *spec, int max_batch, dml_model_t **model_out)
{
    dml_model_t *m;
    size_t off = 0;
    int l;

    if (spec->nlayers < 1 || spec->nlayers > DML_MODEL_MAX_LAYERS || max_batch < 1)
        return dml_error_set(DML_ERR_INVALID_ARG, "model: %d layers, batch %d", spec->nlayers,
                             max_batch);
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the model");
    m->spec = *spec;
    m->max_batch = max_batch;
    for (l = 0; l <= spec->nlayers; l++)
        if (spec->dims[l] > m->max_dim)
            m->max_dim = spec->dims[l];
    for (l = 0; l < spec->nlayers; l++) {
        m->woff[l] = off;
        off += (size_t)spec->dims[l] * (size_t)spec->dims[l + 1];
        m->boff[l] = off;
        off += (size_t)spec->dims[l + 1];
    }
    m->np = off;
    m->params = malloc(off * sizeof(float));
    m->grads = calloc(off, sizeof(float));
    m->d0 = malloc((size_t)max_batch * (size_t)m->max_dim * sizeof(float));
    m->d1 = malloc((size_t)max_batch * (size_t)m->max_dim * sizeof(float));
    for (l = 1; l <= spec->nlayers; l++)
        m->act[l] = malloc((size_t)max_batch * (size_t)spec->dims[l] * sizeof(float));
    if (m->params == NULL || m->grads == NULL || m->d0 == NULL || m->d1 == NULL) {
        dml_model_free(m);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a model of %zu parameters", off);
    }
    for (l = 1; l <= spec->nlayers; l++)
        if (m->act[l] == NULL) {
            dml_model_free(m);
            return dml_error_set(DML_ERR_NO_MEMORY, "no memory for activations (batch %d)",
                                 max_batch);
        }
    *model_out = m;
    return DML_OK;
}

dml_status_t dml_model_create(const dml_model_spec_t *spec, uint64_t seed, int max_batch,
                              dml_model_t **model_out)
{
    dml_model_t *m;
    dml_status_t st;
    size_t i;
    int l;

    if ((st = dml__model_alloc(spec, max_batch, &m)) != DML_OK)
        return st;
    /* He initialisation: normal(0, sqrt(2 / fan_in)) by Box-Muller. */
    for (l = 0; l < spec->nlayers; l++) {
        size_t nw = (size_t)spec->dims[l] * (size_t)spec->dims[l + 1];
        double sd = sqrt(2.0 / spec->dims[l]);
        for (i = 0; i < nw; i++) {
            uint64_t key = seed * 0x100000001b3ULL ^ ((uint64_t)l << 48) ^ i;
            double u1 = dml__uniform(key), u2 = dml__uniform(key ^ 0xa5a5a5a5a5a5a5a5ULL);
            m->params[m->woff[l] + i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
        }
        memset(m->params + m->boff[l], 0, (size_t)spec->dims[l + 1] * sizeof(float));
    }
    *model_out = m;
    return DML_OK;
}

const dml_model_spec_t *dml_model_spec(const dml_model_t *m) { return &m->spec; }
size_t dml_model_nparams(const dml_model_t *m) { return m->np; }
int dml_model_max_batch(const dml_model_t *m) { return m->max_batch; }
float *dml_model_params(dml_model_t *m) { return m->params; }
float *dml_model_grads(dml_model_t *m) { return m->grads; }

void dml_model_layer_range(const dml_model_t *m, int l, size_t *offset, size_t *count)
{
    *offset = m->woff[l];
    *count = (size_t)m->spec.dims[l] * (size_t)m->spec.dims[l + 1] + (size_t)m->spec.dims[l + 1];
}

void dml__model_borrow_arrays(dml_model_t *m, float *params, float *grads)
{
    if (!m->borrowed) {
        free(m->params);
        free(m->grads);
    }
    m->params = params;
    m->grads = grads;
    m->borrowed = 1;
}

dml_status_t dml__model_own_arrays(dml_model_t *m)
{
    float *p, *g;

    if (!m->borrowed)
        return DML_OK;
    p = malloc(m->np * sizeof(float));
    g = calloc(m->np, sizeof(float));
    if (p == NULL || g == NULL) {
        free(p);
        free(g);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a model of %zu parameters", m->np);
    }
    memcpy(p, m->params, m->np * sizeof(float));
    m->params = p;
    m->grads = g;
    m->borrowed = 0;
    return DML_OK;
}

void dml_model_zero_grads(dml_model_t *m)
{
    memset(m->grads, 0, m->np * sizeof(float));
}

/* ---- forward and backward ----------------------------------------------- */

static dml_status_t dml__check_labels(const dml_model_t *m, const int32_t *y, int n)
{
    int i, C = m->spec.dims[m->spec.nlayers];

    for (i = 0; y != NULL && i < n; i++)
        if (y[i] < 0 || y[i] >= C)
            return dml_error_set(DML_ERR_INVALID_ARG, "label %d of sample %d is outside the "
                                 "output layer's %d classes", (int)y[i], i, C);
    return DML_OK;
}

/* Softmax of each of n rows of d, stable: each row's maximum subtracted. */
static void dml__softmax(float *z, int n, int d)
{
    int i, j;

    for (i = 0; i < n; i++) {
        float *r = z + (size_t)i * d, mx = r[0], s = 0;
        for (j = 1; j < d; j++)
            mx = r[j] > mx ? r[j] : mx;
        for (j = 0; j < d; j++) {
            r[j] = expf(r[j] - mx);
            s += r[j];
        }
        for (j = 0; j < d; j++)
            r[j] /= s;
    }
}

/* z[i][j] += b[j] for n rows of d, and the ReLU if relu is set, in one pass
 * over z (batch inference: 2% of its time before, one pass and DML_HOT's
 * AVX-512 clone halved it). The add and the select round as the two passes
 * did. */
DML_HOT static void dml__bias_relu(float *restrict z, const float *restrict b, int n, int d,
                                   int relu)
{
    int i, j;

    for (i = 0; i < n; i++) {
        float *restrict r = z + (size_t)i * d;
        if (relu)
            for (j = 0; j < d; j++) {
                const float v = r[j] + b[j];
                r[j] = v > 0.0f ? v : 0.0f;
            }
        else
            for (j = 0; j < d; j++)
                r[j] += b[j];
    }
}

/* Forward pass; training applies dropout. Leaves probabilities in act[L]. */
static void dml__forward(dml_model_t *m, const float *x, int n, int training, uint64_t dseed)
{
    const int L = m->spec.nlayers;
    const float keep = 1.0f - m->spec.dropout, inv = 1.0f / keep;
    int l, i, j;

    m->in = x;
    for (l = 0; l < L; l++) {
        const int din = m->spec.dims[l], dout = m->spec.dims[l + 1];
        const float *a = l == 0 ? x : m->act[l];
        const float *b = m->params + m->boff[l];
        float *z = m->act[l + 1];

        if (!training) {
            /* Inference (evaluation, dml-infer): z = a . W, then the bias
             * and the ReLU in one vectorised pass over z, the cheapest
             * order; rounding differs from training's in the last bit. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dout, din, 1.0f, a, din,
                        m->params + m->woff[l], dout, 0.0f, z, dout);
            dml__bias_relu(z, b, n, dout, l < L - 1);
            if (l == L - 1)
                dml__softmax(z, n, dout);
            continue;
        }
        /* z = a . W + b: the bias rows first, then sgemm adds onto them */
        for (i = 0; i < n; i++)
            memcpy(z + (size_t)i * dout, b, (size_t)dout * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dout, din, 1.0f, a, din,
                    m->params + m->woff[l], dout, 1.0f, z, dout);
        if (l < L - 1) {
            size_t k = 0, nz = (size_t)n * dout;
            /* ReLU in blocks of 16, which -O2 vectorises (a plain loop is
             * left scalar, with a branch the sign of each value decides). */
            for (; k + 16 <= nz; k += 16)
                for (j = 0; j < 16; j++) {
                    const float v = z[k + (size_t)j];
                    z[k + (size_t)j] = v > 0.0f ? v : 0.0f;
                }
            for (; k < nz; k++)
                z[k] = z[k] > 0 ? z[k] : 0;
            if (training && m->spec.dropout > 0)
                for (k = 0; k < nz; k++)
                    z[k] = dml__uniform(dseed ^ ((uint64_t)(l + 1) << 56) ^ k) < keep ? z[k] * inv : 0;
        } else {
            dml__softmax(z, n, dout);
        }
    }
}

static void dml__loss(const dml_model_t *m, const int32_t *y, int n, double *loss_sum, int *correct)
{
    const int C = m->spec.dims[m->spec.nlayers];
    const float *p = m->act[m->spec.nlayers];
    double loss = 0;
    int i, j, ok = 0;

    for (i = 0; i < n; i++) {
        const float *r = p + (size_t)i * C;
        int best = 0;
        for (j = 1; j < C; j++)
            if (r[j] > r[best])
                best = j;
        ok += best == y[i];
        /* A probability of 0 would give inf: floor it at the smallest normal
         * float. NaN (weights that overflowed) must come through, so that
         * training stops on it. */
        if (r[y[i]] != r[y[i]])
            loss = NAN;
        else
            loss -= log(r[y[i]] > 1.17549435e-38f ? (double)r[y[i]] : 1.17549435e-38);
    }
    if (loss_sum)
        *loss_sum = loss;
    if (correct)
        *correct = ok;
}

dml_status_t dml_model_eval(dml_model_t *m, const float *x, const int32_t *y, int n, float *probs,
                            double *loss_sum, int *correct)
{
    dml_status_t st;

    if (n < 0 || n > m->max_batch)
        return dml_error_set(DML_ERR_INVALID_ARG, "batch of %d samples, the model was sized for "
                             "%d", n, m->max_batch);
    if ((st = dml__check_labels(m, y, n)) != DML_OK)
        return st;
    dml__forward(m, x, n, 0, 0);
    if (probs != NULL)
        memcpy(probs, m->act[m->spec.nlayers],
               (size_t)n * (size_t)m->spec.dims[m->spec.nlayers] * sizeof(float));
    if (y != NULL)
        dml__loss(m, y, n, loss_sum, correct);
    return DML_OK;
}

/* The gradient through ReLU (and dropout's scaling): da where the layer's
 * output a was positive, else 0. In blocks of 16 with the choice made by a
 * bit mask, which -O2 vectorises (a float select it leaves as a branch per
 * element); the result is the same, bit for bit. */
static void dml__relu_backward(float *restrict da, const float *restrict a, size_t nz, float d)
{
    size_t k = 0;
    int j;

    for (; k + 16 <= nz; k += 16)
        for (j = 0; j < 16; j++) {
            float v = da[k + j] * d;
            uint32_t bits, mask = -(uint32_t)(a[k + j] > 0);
            memcpy(&bits, &v, sizeof(bits));
            bits &= mask;
            memcpy(&v, &bits, sizeof(v));
            da[k + j] = v;
        }
    for (; k < nz; k++)
        da[k] = a[k] > 0 ? da[k] * d : 0;
}

dml_status_t dml_model_train_step(dml_model_t *m, const float *x, const int32_t *y, int n,
                                  float scale, uint64_t dropout_seed, double *loss_sum,
                                  int *correct, dml_grad_ready_cb_t cb, void *cb_arg)
{
    const int L = m->spec.nlayers;
    const float inv = 1.0f / (1.0f - m->spec.dropout);
    float *dz = m->d0, *da = m->d1, *t;
    dml_status_t st;
    int l, i, j;

    if (n < 1 || n > m->max_batch)
        return dml_error_set(DML_ERR_INVALID_ARG, "batch of %d samples, the model was sized for "
                             "1..%d", n, m->max_batch);
    if ((st = dml__check_labels(m, y, n)) != DML_OK)
        return st;
    dml__forward(m, x, n, 1, dropout_seed);
    dml__loss(m, y, n, loss_sum, correct);

    /* dL/dz of the output: (softmax - onehot), scaled to the global mean */
    {
        const int C = m->spec.dims[L];
        const float *p = m->act[L];
        for (i = 0; i < n; i++) {
            for (j = 0; j < C; j++)
                dz[(size_t)i * C + j] = p[(size_t)i * C + j] * scale;
            dz[(size_t)i * C + y[i]] -= scale;
        }
    }
    for (l = L - 1; l >= 0; l--) {
        const int din = m->spec.dims[l], dout = m->spec.dims[l + 1];
        const float *a = l == 0 ? m->in : m->act[l];
        float *gw = m->grads + m->woff[l], *gb = m->grads + m->boff[l];

        /* dW += a^T . dz ; db += column sums of dz */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, din, dout, n, 1.0f, a, din, dz, dout,
                    1.0f, gw, dout);
        for (i = 0; i < n; i++)
            for (j = 0; j < dout; j++)
                gb[j] += dz[(size_t)i * dout + j];
        if (cb != NULL)
            cb(cb_arg, l, m->woff[l], (size_t)din * dout + (size_t)dout);
        if (l == 0)
            break;
        /* da = dz . W^T, then through ReLU (and dropout) of layer l */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, din, dout, 1.0f, dz, dout,
                    m->params + m->woff[l], dout, 0.0f, da, din);
        dml__relu_backward(da, a, (size_t)n * din, m->spec.dropout > 0 ? inv : 1.0f);
        t = dz;
        dz = da;
        da = t;
    }
    return DML_OK;
}

/* ---- optimisers ---------------------------------------------------------- */

struct dml_opt {
    dml_opt_config_t c;
    size_t n;
    float *buf[2];
    uint64_t steps;
    float adam_step, adam_sbc2; /* AdamW's bias corrections of this step */
    int stream;                 /* large parameter arrays by streaming stores */
};

void dml__opt_stream_stores(dml_opt_t *o, int on) { o->stream = on; }

void dml_opt_config_init(dml_opt_config_t *c, dml_opt_type_t type)
{
    memset(c, 0, sizeof(*c));
    c->type = type;
    c->momentum = type == DML_OPT_SGD ? 0.9f : 0;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = type == DML_OPT_ADAMW ? 0.01f : 0;
}

dml_status_t dml_opt_create(const dml_opt_config_t *c, size_t nparams, dml_opt_t **opt_out)
{
    dml_opt_t *o = calloc(1, sizeof(*o));
    int k, nb = c->type == DML_OPT_ADAMW ? 2 : 1;

    if (o == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the optimiser");
    if (c->momentum < 0 || c->momentum >= 1 || c->weight_decay < 0 || c->beta1 < 0 ||
        c->beta1 >= 1 || c->beta2 < 0 || c->beta2 >= 1 || !(c->eps > 0)) {
        free(o);
        return dml_error_set(DML_ERR_INVALID_ARG, "optimiser: momentum and betas must be in [0, 1), "
                             "weight decay >= 0, eps > 0");
    }
    o->c = *c;
    o->n = nparams;
    for (k = 0; k < nb; k++) {
        o->buf[k] = calloc(nparams, sizeof(float));
        if (o->buf[k] == NULL) {
            dml_opt_free(o);
            return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the optimiser state");
        }
    }
    *opt_out = o;
    return DML_OK;
}

void dml_opt_free(dml_opt_t *o)
{
    if (o == NULL)
        return;
    free(o->buf[0]);
    free(o->buf[1]);
    free(o);
}

int dml_opt_nbufs(const dml_opt_t *o) { return o->c.type == DML_OPT_ADAMW ? 2 : 1; }
float *dml_opt_buf(dml_opt_t *o, int i) { return i >= 0 && i < 2 ? o->buf[i] : NULL; }
uint64_t *dml_opt_steps(dml_opt_t *o) { return &o->steps; }

/* The update rules of PyTorch's SGD (dampening 0) and AdamW, so that users
 * moving between the two get the same hyper-parameter meanings. */
DML_HOT static void dml__sgd_momentum(float *restrict p, const float *restrict g, float *restrict v,
                              size_t n, float lr, float wd, float m)
{
    size_t i;

    /* a plain loop: GCC left the same one cut in blocks of 16 scalar */
    for (i = 0; i < n; i++) {
        const float d = g[i] + wd * p[i];
        v[i] = m * v[i] + d;
        p[i] -= lr * v[i];
    }
}

/*
 * The same update with the new parameters written by non-temporal stores,
 * where the ranks of a node share a large model's parameters (dp.c): every
 * line a rank writes is one the other ranks read in their forward pass, and
 * an ordinary store must first take it back from their caches (a read for
 * ownership); a streaming one does not. On 2 ranks sharing the reference
 * model this was faster in 3 of 4 alternating runs (by 4-28%; the machine
 * is noisy). Only there (dml__opt_stream_stores): a rank of its own finds
 * its parameters in the L3 cache at the next forward pass, where streaming
 * stores would have sent them out to memory. The same multiplies and adds,
 * in the same order and without fusing, as dml__sgd_momentum: the same
 * bits. x86-64 only; returns 0 where it does not apply.
 */
#define DML__STREAM_MIN (1 << 16) /* parameters (256 KiB), past what a core keeps */
#if DML__HAVE_STREAM
#define DML__SGD_ONE(i)                                                                            \
    do {                                                                                           \
        const float d_ = g[i] + wd * p[i];                                                         \
        v[i] = m * v[i] + d_;                                                                      \
        p[i] -= lr * v[i];                                                                         \
    } while (0)

__attribute__((target("avx512f"), optimize("fp-contract=off"))) static void
dml__sgd_stream16(float *restrict p, const float *restrict g, float *restrict v, size_t n, float lr,
                  float wd, float m)
{
    const __m512 M = _mm512_set1_ps(m), LR = _mm512_set1_ps(lr), WD = _mm512_set1_ps(wd);
    size_t i = 0;

    for (; i < n && ((uintptr_t)(p + i) & 63) != 0; i++) /* to a line boundary */
        DML__SGD_ONE(i);
    for (; i + 16 <= n; i += 16) {
        const __m512 pp = _mm512_load_ps(p + i);
        const __m512 d = _mm512_add_ps(_mm512_loadu_ps(g + i), _mm512_mul_ps(WD, pp));
        const __m512 vv = _mm512_add_ps(_mm512_mul_ps(M, _mm512_loadu_ps(v + i)), d);
        _mm512_storeu_ps(v + i, vv);
        _mm512_stream_ps(p + i, _mm512_sub_ps(pp, _mm512_mul_ps(LR, vv)));
    }
    for (; i < n; i++)
        DML__SGD_ONE(i);
}

__attribute__((optimize("fp-contract=off"))) static void
dml__sgd_stream4(float *restrict p, const float *restrict g, float *restrict v, size_t n, float lr,
                 float wd, float m)
{
    const __m128 M = _mm_set1_ps(m), LR = _mm_set1_ps(lr), WD = _mm_set1_ps(wd);
    size_t i = 0;

    for (; i < n && ((uintptr_t)(p + i) & 15) != 0; i++)
        DML__SGD_ONE(i);
    for (; i + 4 <= n; i += 4) {
        const __m128 pp = _mm_load_ps(p + i);
        const __m128 d = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(WD, pp));
        const __m128 vv = _mm_add_ps(_mm_mul_ps(M, _mm_loadu_ps(v + i)), d);
        _mm_storeu_ps(v + i, vv);
        _mm_stream_ps(p + i, _mm_sub_ps(pp, _mm_mul_ps(LR, vv)));
    }
    for (; i < n; i++)
        DML__SGD_ONE(i);
}

static int dml__sgd_momentum_stream(float *p, const float *g, float *v, size_t n, float lr, float wd,
                                    float m)
{
    if (__builtin_cpu_supports("avx512f"))
        dml__sgd_stream16(p, g, v, n, lr, wd, m);
    else
        dml__sgd_stream4(p, g, v, n, lr, wd, m);
    /* streaming stores are weakly ordered: done before anyone reads */
    _mm_sfence();
    return 1;
}
#else
static int dml__sgd_momentum_stream(float *p, const float *g, float *v, size_t n, float lr, float wd,
                                    float m)
{
    (void)p, (void)g, (void)v, (void)n, (void)lr, (void)wd, (void)m;
    return 0;
}
#endif

void dml_opt_step(dml_opt_t *o, float *p, const float *g, float lr)
{
    dml_opt_step_range(o, p, g, lr, 0, o->n);
}

void dml_opt_step_range(dml_opt_t *o, float *params, const float *grads, float lr, size_t off,
                        size_t n)
{
    dml_opt_next(o, lr);
    dml_opt_apply(o, params, grads + off, lr, off, n);
}

void dml_opt_next(dml_opt_t *o, float lr)
{
    const dml_opt_config_t *c = &o->c;

    o->steps++;
    if (c->type == DML_OPT_ADAMW) {
        const double bc1 = 1 - pow(c->beta1, (double)o->steps), bc2 = 1 - pow(c->beta2, (double)o->steps);
        o->adam_step = (float)(lr / bc1);
        o->adam_sbc2 = (float)sqrt(bc2);
    }
}

void dml_opt_apply(dml_opt_t *o, float *params, const float *g, float lr, size_t off, size_t n)
{
    const dml_opt_config_t *c = &o->c;
    float *p = params + off;
    size_t i;

    if (c->type == DML_OPT_SGD && c->momentum > 0 && !c->nesterov && o->steps > 1) {
        /* The common case, on its own so that it vectorises (DML_HOT; the
         * same operations, rounded alike, as the general loop below). */
        if (!o->stream || o->n < DML__STREAM_MIN ||
            !dml__sgd_momentum_stream(p, g, o->buf[0] + off, n, lr, c->weight_decay, c->momentum))
            dml__sgd_momentum(p, g, o->buf[0] + off, n, lr, c->weight_decay, c->momentum);
    } else if (c->type == DML_OPT_SGD) {
        float *v = o->buf[0] + off;
        for (i = 0; i < n; i++) {
            float d = g[i] + c->weight_decay * p[i];
            if (c->momentum > 0) {
                v[i] = o->steps == 1 ? d : c->momentum * v[i] + d;
                d = c->nesterov ? d + c->momentum * v[i] : v[i];
            }
            p[i] -= lr * d;
        }
    } else {
        float *mo = o->buf[0] + off, *ve = o->buf[1] + off;
        const float step = o->adam_step, sbc2 = o->adam_sbc2;
        for (i = 0; i < n; i++) {
            p[i] *= 1 - lr * c->weight_decay;
            mo[i] = c->beta1 * mo[i] + (1 - c->beta1) * g[i];
            ve[i] = c->beta2 * ve[i] + (1 - c->beta2) * g[i] * g[i];
            p[i] -= step * mo[i] / (sqrtf(ve[i]) / sbc2 + c->eps);
        }
    }
}

/* ---- schedules and clipping ---------------------------------------------- */

float dml_lr_at(const dml_lr_schedule_t *s, uint64_t step)
{
    uint64_t t;

    if (step < s->warmup)
        return s->base * (float)(step + 1) / (float)s->warmup;
    t = step - s->warmup;
    switch (s->kind) {
    case DML_LR_STEP:
        return s->step_every ? s->base * powf(s->gamma, (float)(t / s->step_every)) : s->base;
    case DML_LR_COSINE:
        if (s->total == 0)
            return s->base;
        if (t > s->total)
            t = s->total;
        return (float)(0.5 * s->base * (1 + cos(M_PI * (double)t / (double)s->total)));
    case DML_LR_CONSTANT:
        break;
    }
    return s->base;
}

double dml_clip_grad_norm(float *g, size_t n, double max_norm)
{
    double ss = 0, norm;
    size_t i;

    for (i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float f = (float)(max_norm / (norm + 1e-6));
        for (i = 0; i < n; i++)
            g[i] *= f;
    }
    return norm;
}
