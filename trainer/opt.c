/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * opt.c: the optimisers (SGD with momentum and Nesterov, AdamW, with PyTorch's
 * update rules), the learning-rate schedules and gradient clipping.
 */
#include "config.h"

#include "dml_simd.h"
#include "dml_train.h"
#include "train_private.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DML__HAVE_STREAM 1
#else
#define DML__HAVE_STREAM 0
#endif

/* ---- optimisers ---------------------------------------------------------- */

struct dml_opt {
    dml_opt_config_t c;
    size_t n;
    float *buf[2];
    uint64_t steps;
    float adam_step, adam_sbc2; /* AdamW's bias corrections of this step */
    int stream;                 /* large parameter arrays by streaming stores */
};

void dml__opt_stream_stores(dml_opt_t *o, int on)
{
    o->stream = on;
}

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
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "optimiser: momentum and betas must be in [0, 1), "
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

int dml_opt_nbufs(const dml_opt_t *o)
{
    return o->c.type == DML_OPT_ADAMW ? 2 : 1;
}
float *dml_opt_buf(dml_opt_t *o, int i)
{
    return i >= 0 && i < 2 ? o->buf[i] : NULL;
}
uint64_t dml_opt_steps(const dml_opt_t *o)
{
    return o->steps;
}
void dml_opt_set_steps(dml_opt_t *o, uint64_t steps)
{
    o->steps = steps;
}

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
 * ownership); a streaming one does not (docs/benchmarks/design-notes.md).
 * Only there (dml__opt_stream_stores): a rank of its own finds
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

static int dml__sgd_momentum_stream(float *p, const float *g, float *v, size_t n, float lr,
                                    float wd, float m)
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
static int dml__sgd_momentum_stream(float *p, const float *g, float *v, size_t n, float lr,
                                    float wd, float m)
{
    (void)p, (void)g, (void)v, (void)n, (void)lr, (void)wd, (void)m;
    return 0;
}
#endif

/* AdamW on its own, so that it vectorises (DML_HOT: square root and division
 * are exactly rounded at any vector width, and nothing fuses: the same bits
 * on every CPU). */
DML_HOT static void dml__adamw(float *restrict p, const float *restrict g, float *restrict mo,
                               float *restrict ve, size_t n, float decay, float b1, float b2,
                               float step, float sbc2, float eps)
{
    size_t i;

    for (i = 0; i < n; i++) {
        p[i] *= decay;
        mo[i] = b1 * mo[i] + (1 - b1) * g[i];
        ve[i] = b2 * ve[i] + (1 - b2) * g[i] * g[i];
        p[i] -= step * mo[i] / (sqrtf(ve[i]) / sbc2 + eps);
    }
}

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
        const double bc1 = 1 - pow(c->beta1, (double)o->steps),
                     bc2 = 1 - pow(c->beta2, (double)o->steps);
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
        dml__adamw(p, g, o->buf[0] + off, o->buf[1] + off, n, 1 - lr * c->weight_decay, c->beta1,
                   c->beta2, o->adam_step, o->adam_sbc2, c->eps);
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
