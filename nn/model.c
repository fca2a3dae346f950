/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * model.c: the network's forward and backward passes over a sequence of
 * layers, on BLAS (dense layers) and conv.c's kernels (convolutions). A
 * model's spec, layout and arrays are model_arrays.c's (the model file
 * layer, which needs no BLAS); what computing adds to them, activations and
 * kernels, is made and freed here (model_private.h).
 *
 * Each layer writes its output into a buffer of its own, except where the
 * output can overwrite the input: ReLU and dropout work in place (a ReLU's
 * backward reads its own output, positive where its input was; dropout keeps
 * a byte mask), and flatten is only a view. No layer's backward needs its
 * own output overwritten this way: dense and convolution layers read their
 * input, pooling its recorded maxima, batch normalisation its normalised
 * input, kept apart. Backward runs from the last layer to the first layer
 * with parameters (no input gradient below it is computed) and reports each
 * parameter layer's gradient range as soon as it is final, so the caller
 * can start reducing it across ranks while earlier layers are computed.
 */
#include "config.h"

#include "dml_simd.h"
#include "model_private.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers: a counter-based mix, so masks and initial weights
 * depend only on (seed, position) ------------------------------------------- */

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

/* ---- the compute part of a model (model_private.h) ------------------------------- */

void dml__model_compute_free(dml_model_t *m)
{
    int l;

#ifdef HAVE_CUDA
    if (m->gpu != NULL)
        m->gops->net_free(m->gpu);
    m->gpu = NULL;
#endif
    for (l = 0; l < m->spec.nlayers; l++) {
        dml__lstate_t *s = &m->ls[l];
        if (!s->inplace)
            free(s->out);
        free(s->argmax);
        free(s->mask);
        free(s->xhat);
        free(s->mean);
        free(s->invstd);
        free(s->red);
        dml__conv_free(s->conv);
    }
    free(m->g0);
    free(m->g1);
    m->g0 = m->g1 = NULL;
}

static size_t dml__elems(const int *t)
{
    return (size_t)t[0] * (size_t)t[1] * (size_t)t[2];
}

/* n x count floats, or NULL where that overflows or there is no memory. */
static void *dml__alloc(size_t n, size_t count, size_t size)
{
    if (count != 0 && n > SIZE_MAX / size / count)
        return NULL;
    return malloc(n * count * size + 1);
}

/* Each layer's output buffer and what its backward keeps, for max_batch
 * samples; the layout (model_arrays.c) is made. On failure the caller frees
 * the model, and with it what was made here. */
dml_status_t dml__model_compute_alloc(dml_model_t *m)
{
    const dml_model_spec_t *spec = &m->spec;
    size_t n = (size_t)m->max_batch;
    int l, input_root = 1;

    m->max_elems = dml__elems(spec->in);
    for (l = 0; l < spec->nlayers; l++) {
        const dml_layer_t *L = &spec->layer[l];
        dml__lstate_t *s = &m->ls[l];
        const int C = L->in[0];
        if (s->osz > m->max_elems)
            m->max_elems = s->osz;
        /* In place where the input is the model's own buffer (never the
         * caller's input); flatten is a view of whatever it is given. */
        s->inplace = L->kind == DML_LAYER_FLATTEN ||
                     (!input_root && (L->kind == DML_LAYER_RELU || L->kind == DML_LAYER_DROPOUT));
        if (L->kind != DML_LAYER_FLATTEN)
            input_root = input_root && s->inplace;
        if (!s->inplace && (s->out = dml__alloc(n, s->osz, sizeof(float))) == NULL)
            goto nomem;
        switch (L->kind) {
        case DML_LAYER_CONV2D:
            /* a ReLU after the convolution is done by it (in place on its
             * output, which the ReLU's backward reads) */
            if (dml__conv_create(L, m->max_batch, s->need_dx,
                                 l + 1 < spec->nlayers && spec->layer[l + 1].kind == DML_LAYER_RELU,
                                 &s->conv) != DML_OK)
                return DML_ERR_NO_MEMORY; /* the detail is conv.c's */
            break;
        case DML_LAYER_MAXPOOL:
            if ((s->argmax = dml__alloc(n, s->osz, sizeof(int32_t))) == NULL)
                goto nomem;
            break;
        case DML_LAYER_DROPOUT:
            if ((s->mask = dml__alloc(n, s->osz, 1)) == NULL)
                goto nomem;
            break;
        case DML_LAYER_BATCHNORM:
            s->xhat = dml__alloc(n, s->isz, sizeof(float));
            s->mean = calloc((size_t)C, sizeof(float));
            s->invstd = calloc((size_t)C, sizeof(float));
            s->red = calloc(2 * (size_t)C + 1, sizeof(double));
            if (s->xhat == NULL || s->mean == NULL || s->invstd == NULL || s->red == NULL)
                goto nomem;
            break;
        default:
            break;
        }
    }
    m->g0 = dml__alloc(n, m->max_elems, sizeof(float));
    m->g1 = dml__alloc(n, m->max_elems, sizeof(float));
    if (m->g0 == NULL || m->g1 == NULL)
        goto nomem;
    /* Layers in place point at their input's buffer (the last one that owns
     * memory); flatten of the model's input is the input itself, set per
     * call. */
    for (l = 1; l < spec->nlayers; l++)
        if (m->ls[l].inplace)
            m->ls[l].out = m->ls[l - 1].out;
    return DML_OK;
nomem:
    return dml_error_set(DML_ERR_NO_MEMORY, "no memory for the model's activations (batch %d)",
                         m->max_batch);
}

/* ---- create ----------------------------------------------------------------- */

dml_status_t dml_model_create(const dml_model_spec_t *spec, uint64_t seed, int max_batch,
                              dml_model_t **model_out)
{
    dml_model_t *m;
    dml_status_t st;
    int k;

    if ((st = dml__model_alloc(spec, max_batch, &m)) != DML_OK)
        return st;
    for (k = 0; k < m->nplayers; k++) {
        const int l = m->player[k];
        const dml_layer_t *L = &m->spec.layer[l];
        const dml__lstate_t *s = &m->ls[l];
        float *p = m->params + s->poff;
        size_t nw = 0, i;
        double fan_in = 1;

        if (L->kind == DML_LAYER_BATCHNORM) {
            for (i = 0; i < (size_t)L->in[0]; i++) {
                p[i] = 1.0f;                                    /* scale */
                p[(size_t)L->in[0] + i] = 0.0f;                 /* shift */
                m->bufs[s->boff + i] = 0.0f;                    /* running mean */
                m->bufs[s->boff + (size_t)L->in[0] + i] = 1.0f; /* running variance */
            }
            continue;
        }
        if (L->kind == DML_LAYER_DENSE) {
            nw = s->isz * (size_t)L->units;
            fan_in = (double)s->isz;
        } else {
            nw = (size_t)L->units * (size_t)L->in[0] * (size_t)L->kh * (size_t)L->kw;
            fan_in = (double)L->in[0] * L->kh * L->kw;
        }
        /* He initialisation: normal(0, sqrt(2 / fan_in)) by Box-Muller. */
        for (i = 0; i < nw; i++) {
            uint64_t key = seed * 0x100000001b3ULL ^ ((uint64_t)k << 48) ^ i;
            double u1 = dml__uniform(key), u2 = dml__uniform(key ^ 0xa5a5a5a5a5a5a5a5ULL);
            p[i] = (float)(sqrt(2.0 / fan_in) * sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
        }
        memset(p + nw, 0, (s->np - nw) * sizeof(float));
    }
    *model_out = m;
    return DML_OK;
}

void dml_model_set_reduce(dml_model_t *m, dml_model_reduce_cb_t reduce, void *arg)
{
    m->reduce = reduce;
    m->reduce_arg = arg;
}

void dml_model_borrow_arrays(dml_model_t *m, float *params, float *grads)
{
    if (!m->borrowed) {
        free(m->params);
        free(m->grads);
    }
    m->params = params;
    m->grads = grads;
    m->borrowed = 1;
}

dml_status_t dml_model_own_arrays(dml_model_t *m)
{
    float *p, *g;

    if (!m->borrowed)
        return DML_OK;
    p = malloc(m->np * sizeof(float) + 1);
    g = calloc(m->np + 1, sizeof(float));
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

/* ---- elementwise kernels ------------------------------------------------------- */

static dml_status_t dml__check_labels(const dml_model_t *m, const int32_t *y, int n)
{
    int i, C = m->spec.classes;

    for (i = 0; y != NULL && i < n; i++)
        if (y[i] < 0 || y[i] >= C)
            return dml_error_set(DML_ERR_INVALID_ARG,
                                 "label %d of sample %d is outside the "
                                 "output layer's %d classes",
                                 (int)y[i], i, C);
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
 * over z, vectorised (DML_HOT): batch inference's elementwise work reads
 * each row once (docs/benchmarks/design-notes.md). The add and the select
 * round as two passes would. */
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

/* ReLU in blocks of 16, which -O2 vectorises (a plain loop is left scalar,
 * with a branch the sign of each value decides); y may be x. */
DML_HOT static void dml__relu(float *y, const float *x, size_t nz)
{
    size_t k = 0;
    int j;

    for (; k + 16 <= nz; k += 16)
        for (j = 0; j < 16; j++) {
            const float v = x[k + (size_t)j];
            y[k + (size_t)j] = v > 0.0f ? v : 0.0f;
        }
    for (; k < nz; k++)
        y[k] = x[k] > 0 ? x[k] : 0;
}

/* The gradient through ReLU: dy where the output a was positive, else 0 (dx
 * may be dy: in place). In
 * blocks of 16 with the choice made by a bit mask, which -O2 vectorises (a
 * float select it leaves as a branch per element); the same bits. */
DML_HOT static void dml__relu_backward(float *dx, const float *dy, const float *restrict a,
                                       size_t nz)
{
    size_t k = 0;
    int j;

    for (; k + 16 <= nz; k += 16)
        for (j = 0; j < 16; j++) {
            float v = dy[k + j];
            uint32_t bits, mask = -(uint32_t)(a[k + j] > 0);
            memcpy(&bits, &v, sizeof(bits));
            bits &= mask;
            memcpy(&v, &bits, sizeof(v));
            dx[k + j] = v;
        }
    for (; k < nz; k++)
        dx[k] = a[k] > 0 ? dy[k] : 0;
}

/* ---- pooling --------------------------------------------------------------------- */

/* v replaces the maximum so far: larger, or NaN where the maximum is not
 * (NaN propagates, as in PyTorch); of equal values the first stays. */
static inline int dml__beats(float v, float mx)
{
    return v > mx || (v != v && mx == mx);
}

/* One output row of 2x2, stride 2 pooling from input rows r0 and r1 (of
 * width w; at0: r0's index in the plane): the window's four values compared
 * in row-major order by the rule above, branch-free. */
static void dml__maxpool2_row(const float *r0, const float *r1, float *y, int32_t *arg, int ow,
                              int at0, int w)
{
    int ox;

    for (ox = 0; ox < ow; ox++) {
        const float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
        float m = a;
        int i = 0;
        if (dml__beats(b, m))
            m = b, i = 1;
        if (dml__beats(c, m))
            m = c, i = 2;
        if (dml__beats(d, m))
            m = d, i = 3;
        y[ox] = m;
        if (arg != NULL)
            arg[ox] = at0 + 2 * ox + (i & 1) + (i >> 1) * w;
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
/* The same, 16 outputs at a time on AVX-512: compilers do not vectorise the
 * stride-2 loads and the selects above, and the book's CNN spent much of
 * its training time there (docs/benchmarks/design-notes.md). Exactly the
 * same values and indices. */
__attribute__((target("avx512f"))) static void dml__maxpool2_row16(const float *r0, const float *r1,
                                                                   float *y, int32_t *arg, int ow,
                                                                   int at0, int w)
{
    const __m512i even =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i lane2 = _mm512_slli_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 1);
    int ox;

    for (ox = 0; ox < ow; ox += 16) {
        const int cnt = ow - ox < 16 ? ow - ox : 16, in = 2 * cnt;
        const __mmask16 mlo = (__mmask16)(in >= 16 ? 0xffff : (1u << in) - 1);
        const __mmask16 mhi = (__mmask16)(in > 16 ? (1u << (in - 16)) - 1 : 0);
        const __mmask16 mout = (__mmask16)(cnt == 16 ? 0xffff : (1u << cnt) - 1);
        const __m512 p0 = _mm512_maskz_loadu_ps(mlo, r0 + 2 * ox),
                     p1 = _mm512_maskz_loadu_ps(mhi, r0 + 2 * ox + 16);
        const __m512 q0 = _mm512_maskz_loadu_ps(mlo, r1 + 2 * ox),
                     q1 = _mm512_maskz_loadu_ps(mhi, r1 + 2 * ox + 16);
        const __m512 a = _mm512_permutex2var_ps(p0, even, p1),
                     b = _mm512_permutex2var_ps(p0, odd, p1);
        const __m512 c = _mm512_permutex2var_ps(q0, even, q1),
                     d = _mm512_permutex2var_ps(q0, odd, q1);
        __m512 m = a;
        __m512i i = _mm512_setzero_si512();
        __mmask16 t;
        /* beats: v > m, or v NaN where m is not */
#define DML__BEATS(v)                                                                              \
    (_mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) |                                                        \
     (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q)))
        t = DML__BEATS(b);
        m = _mm512_mask_blend_ps(t, m, b), i = _mm512_mask_blend_epi32(t, i, _mm512_set1_epi32(1));
        t = DML__BEATS(c);
        m = _mm512_mask_blend_ps(t, m, c), i = _mm512_mask_blend_epi32(t, i, _mm512_set1_epi32(w));
        t = DML__BEATS(d);
        m = _mm512_mask_blend_ps(t, m, d),
        i = _mm512_mask_blend_epi32(t, i, _mm512_set1_epi32(w + 1));
#undef DML__BEATS
        _mm512_mask_storeu_ps(y + ox, mout, m);
        if (arg != NULL)
            _mm512_mask_storeu_epi32(
                arg + ox, mout,
                _mm512_add_epi32(_mm512_add_epi32(i, lane2), _mm512_set1_epi32(at0 + 2 * ox)));
    }
}
#define DML__HAVE_POOL16 1
#else
#define DML__HAVE_POOL16 0
#endif

/* Max pooling of n x C planes; the first maximum of a window wins (as in
 * PyTorch), and its input index is kept for backward where argmax is set. */
static void dml__maxpool(const dml_layer_t *L, const float *x, float *y, int32_t *argmax, int n)
{
    const int C = L->in[0], H = L->in[1], W = L->in[2], OH = L->out[1], OW = L->out[2];
#if DML__HAVE_POOL16
    const int wide = __builtin_cpu_supports("avx512f");
#endif
    int p, oy, ox, i, j;

    for (p = 0; p < n * C; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *yp = y + (size_t)p * OH * OW;
        int32_t *ap = argmax ? argmax + (size_t)p * OH * OW : NULL;
        if (L->kh == 2 && L->kw == 2 && L->sh == 2 && L->sw == 2) {
            for (oy = 0; oy < OH; oy++) {
                const float *r0 = xp + (size_t)2 * oy * W, *r1 = r0 + W;
                int32_t *ar = ap ? ap + (size_t)oy * OW : NULL;
#if DML__HAVE_POOL16
                if (wide) {
                    dml__maxpool2_row16(r0, r1, yp + (size_t)oy * OW, ar, OW, 2 * oy * W, W);
                    continue;
                }
#endif
                dml__maxpool2_row(r0, r1, yp + (size_t)oy * OW, ar, OW, 2 * oy * W, W);
            }
            continue;
        }
        for (oy = 0; oy < OH; oy++)
            for (ox = 0; ox < OW; ox++) {
                const int y0 = oy * L->sh, x0 = ox * L->sw;
                int best = y0 * W + x0;
                for (i = 0; i < L->kh; i++)
                    for (j = 0; j < L->kw; j++) {
                        const int at = (y0 + i) * W + x0 + j;
                        if (dml__beats(xp[at], xp[best]))
                            best = at;
                    }
                yp[oy * OW + ox] = xp[best];
                if (ap)
                    ap[oy * OW + ox] = best;
            }
    }
}

/* Each output's gradient to its window's maximum. gate (may be NULL): the
 * pooled values, where a ReLU before the pooling is folded in: its gradient
 * passes where the maximum, its output, was positive. */
static void dml__maxpool_backward(const dml_layer_t *L, const float *dy, const int32_t *argmax,
                                  const float *gate, float *dx, int n)
{
    const size_t isz = dml__elems(L->in), plane = (size_t)L->in[1] * L->in[2];
    const size_t oplane = (size_t)L->out[1] * L->out[2];
    const int apart = L->kh <= L->sh && L->kw <= L->sw;
    size_t p, k;

    /* Windows that do not overlap (2x2, stride 2): each input position in
     * at most one window, so the gradient is stored, not added (no read of
     * what was there). */
    if (apart) {
        memset(dx, 0, (size_t)n * isz * sizeof(float));
        for (p = 0; p < (size_t)n * (size_t)L->in[0]; p++) {
            float *xp = dx + p * plane;
            const float *d = dy + p * oplane, *g = gate ? gate + p * oplane : NULL;
            const int32_t *a = argmax + p * oplane;
            for (k = 0; k < oplane; k++)
                xp[a[k]] = g == NULL || g[k] > 0 ? d[k] : 0.0f;
        }
        return;
    }
    memset(dx, 0, (size_t)n * isz * sizeof(float));
    for (p = 0; p < (size_t)n * (size_t)L->in[0]; p++)
        for (k = 0; k < oplane; k++) {
            const size_t o = p * oplane + k;
            if (gate == NULL || gate[o] > 0)
                dx[p * plane + (size_t)argmax[o]] += dy[o];
        }
}

static void dml__avgpool(const dml_layer_t *L, const float *x, float *y, int n)
{
    const int C = L->in[0], H = L->in[1], W = L->in[2], OH = L->out[1], OW = L->out[2];
    const float inv = 1.0f / (float)(L->kh * L->kw);
    int p, oy, ox, i, j;

    for (p = 0; p < n * C; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *yp = y + (size_t)p * OH * OW;
        for (oy = 0; oy < OH; oy++)
            for (ox = 0; ox < OW; ox++) {
                float s = 0;
                for (i = 0; i < L->kh; i++)
                    for (j = 0; j < L->kw; j++)
                        s += xp[(oy * L->sh + i) * W + ox * L->sw + j];
                yp[oy * OW + ox] = s * inv;
            }
    }
}

static void dml__avgpool_backward(const dml_layer_t *L, const float *dy, float *dx, int n)
{
    const int C = L->in[0], H = L->in[1], W = L->in[2], OH = L->out[1], OW = L->out[2];
    const float inv = 1.0f / (float)(L->kh * L->kw);
    int p, oy, ox, i, j;

    memset(dx, 0, (size_t)n * C * H * W * sizeof(float));
    for (p = 0; p < n * C; p++) {
        float *xp = dx + (size_t)p * H * W;
        const float *yp = dy + (size_t)p * OH * OW;
        for (oy = 0; oy < OH; oy++)
            for (ox = 0; ox < OW; ox++) {
                const float g = yp[oy * OW + ox] * inv;
                for (i = 0; i < L->kh; i++)
                    for (j = 0; j < L->kw; j++)
                        xp[(oy * L->sh + i) * W + ox * L->sw + j] += g;
            }
    }
}

/* ---- batch normalisation ------------------------------------------------------------ */

/* Sums n doubles over the ranks, where the caller gave a reduction. */
static dml_status_t dml__reduce(dml_model_t *m, double *buf, int n)
{
    return m->reduce != NULL ? m->reduce(m->reduce_arg, buf, n) : DML_OK;
}

/*
 * Training: the statistics of the whole batch (over the ranks), in double: a
 * channel's sum and sum of squares (and the count), reduced in one call. The
 * variance normalising is the biased one, the running variance takes the
 * unbiased one (as PyTorch's). n may be 0 (a rank without samples in a short
 * last step still takes part in the reduction and keeps the same running
 * statistics).
 */
static dml_status_t dml__bn_forward_train(dml_model_t *m, int l, const float *x, float *y, int n)
{
    const dml_layer_t *L = &m->spec.layer[l];
    dml__lstate_t *s = &m->ls[l];
    const int C = L->in[0];
    const size_t hw = (size_t)L->in[1] * L->in[2];
    const float *gamma = m->params + s->poff, *beta = gamma + C;
    float *rmean = m->bufs + s->boff, *rvar = rmean + C;
    double *red = s->red, cnt;
    dml_status_t st;
    int i, c;

    memset(red, 0, (2 * (size_t)C + 1) * sizeof(double));
    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++) {
            const float *xp = x + ((size_t)i * C + c) * hw;
            double s1 = 0, s2 = 0;
            size_t j;
            for (j = 0; j < hw; j++) {
                s1 += xp[j];
                s2 += (double)xp[j] * xp[j];
            }
            red[c] += s1;
            red[C + c] += s2;
        }
    red[2 * C] = (double)n * (double)hw;
    if ((st = dml__reduce(m, red, 2 * C + 1)) != DML_OK)
        return st;
    cnt = red[2 * C];
    if (cnt < 1)
        return DML_OK;
    for (c = 0; c < C; c++) {
        const double mean = red[c] / cnt, var = fmax(red[C + c] / cnt - mean * mean, 0.0);
        s->mean[c] = (float)mean;
        s->invstd[c] = (float)(1.0 / sqrt(var + (double)L->eps));
        rmean[c] = (float)((1.0 - L->momentum) * rmean[c] + L->momentum * mean);
        rvar[c] = (float)((1.0 - L->momentum) * rvar[c] +
                          L->momentum * (cnt > 1 ? var * cnt / (cnt - 1) : var));
    }
    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++) {
            const size_t o = ((size_t)i * C + c) * hw;
            const float mu = s->mean[c], is = s->invstd[c], g = gamma[c], b = beta[c];
            size_t j;
            for (j = 0; j < hw; j++) {
                const float xh = (x[o + j] - mu) * is;
                s->xhat[o + j] = xh;
                y[o + j] = g * xh + b;
            }
        }
    return DML_OK;
}

static void dml__bn_forward_eval(const dml_model_t *m, int l, const float *x, float *y, int n)
{
    const dml_layer_t *L = &m->spec.layer[l];
    const dml__lstate_t *s = &m->ls[l];
    const int C = L->in[0];
    const size_t hw = (size_t)L->in[1] * L->in[2];
    const float *gamma = m->params + s->poff, *beta = gamma + C;
    const float *rmean = m->bufs + s->boff, *rvar = rmean + C;
    int i, c;

    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++) {
            const size_t o = ((size_t)i * C + c) * hw;
            const float is = (float)(1.0 / sqrt((double)rvar[c] + (double)L->eps));
            const float a = gamma[c] * is, b = beta[c] - rmean[c] * a;
            size_t j;
            for (j = 0; j < hw; j++)
                y[o + j] = x[o + j] * a + b;
        }
}

/* dgamma += sum(dy * xhat), dbeta += sum(dy) (this rank's: the data-parallel
 * step sums gradients over the ranks); dx from the sums over the whole batch. */
static dml_status_t dml__bn_backward(dml_model_t *m, int l, const float *dy, float *dx, int n,
                                     int cb_layer, dml_grad_ready_cb_t cb, void *cb_arg)
{
    const dml_layer_t *L = &m->spec.layer[l];
    dml__lstate_t *s = &m->ls[l];
    const int C = L->in[0];
    const size_t hw = (size_t)L->in[1] * L->in[2];
    const float *gamma = m->params + s->poff;
    float *dgamma = m->grads + s->poff, *dbeta = dgamma + C;
    double *red = s->red, cnt;
    dml_status_t st;
    int i, c;

    memset(red, 0, (2 * (size_t)C + 1) * sizeof(double));
    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++) {
            const size_t o = ((size_t)i * C + c) * hw;
            double sd = 0, sdx = 0;
            size_t j;
            for (j = 0; j < hw; j++) {
                sd += dy[o + j];
                sdx += (double)dy[o + j] * s->xhat[o + j];
            }
            red[c] += sd;
            red[C + c] += sdx;
        }
    red[2 * C] = (double)n * (double)hw;
    for (c = 0; c < C; c++) {
        dgamma[c] += (float)red[C + c];
        dbeta[c] += (float)red[c];
    }
    if (cb != NULL)
        cb(cb_arg, cb_layer, s->poff, s->np);
    if (!s->need_dx)
        return DML_OK;
    if ((st = dml__reduce(m, red, 2 * C + 1)) != DML_OK)
        return st;
    cnt = red[2 * C];
    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++) {
            const size_t o = ((size_t)i * C + c) * hw;
            const float a = gamma[c] * s->invstd[c], md = (float)(red[c] / cnt);
            const float mdx = (float)(red[C + c] / cnt);
            size_t j;
            for (j = 0; j < hw; j++)
                dx[o + j] = a * (dy[o + j] - md - s->xhat[o + j] * mdx);
        }
    return DML_OK;
}

/* ---- forward and backward ------------------------------------------------------------ */

/* Forward pass; training applies dropout and batch statistics. Leaves the
 * probabilities in the last layer's output. */
static dml_status_t dml__forward(dml_model_t *m, const float *x, int n, int training,
                                 uint64_t dseed)
{
    const int NL = m->spec.nlayers;
    const float *a = x;
    dml_status_t st;
    int l;

    m->in = x;
    for (l = 0; l < NL; l++) {
        const dml_layer_t *L = &m->spec.layer[l];
        dml__lstate_t *s = &m->ls[l];
        const float *p = m->params + s->poff;
        /* Evaluation folds a following ReLU into a dense layer's bias pass. */
        const int fuse = !training && l + 1 < NL && m->spec.layer[l + 1].kind == DML_LAYER_RELU &&
                         m->ls[l + 1].inplace && L->kind == DML_LAYER_DENSE;
        float *z;

        if (s->inplace && (l == 0 || (L->kind == DML_LAYER_FLATTEN && a == x)))
            s->out = (float *)a; /* a view of the input: never written */
        else if (s->inplace)
            s->out = m->ls[l - 1].out;
        z = s->out;
        switch (L->kind) {
        case DML_LAYER_DENSE: {
            const int din = (int)s->isz, dout = L->units;
            const float *b = p + s->isz * (size_t)dout;
            int i;
            if (!training) {
                /* Inference (evaluation, dml-infer): z = a . W, then the bias
                 * (and ReLU) in one vectorised pass over z, the cheapest
                 * order; rounding differs from training's in the last bit. */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dout, din, 1.0f, a, din,
                            p, dout, 0.0f, z, dout);
                dml__bias_relu(z, b, n, dout, fuse);
                break;
            }
            /* z = a . W + b: the bias rows first, then sgemm adds onto them */
            for (i = 0; i < n; i++)
                memcpy(z + (size_t)i * dout, b, (size_t)dout * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dout, din, 1.0f, a, din, p,
                        dout, 1.0f, z, dout);
            break;
        }
        case DML_LAYER_CONV2D: {
            const size_t nw = (size_t)L->units * (size_t)L->in[0] * L->kh * L->kw;
            if ((st = dml__conv_forward(s->conv, a, p, p + nw, z, n)) != DML_OK)
                return st;
            break;
        }
        case DML_LAYER_MAXPOOL:
            dml__maxpool(L, a, z, training ? s->argmax : NULL, n);
            break;
        case DML_LAYER_AVGPOOL:
            dml__avgpool(L, a, z, n);
            break;
        case DML_LAYER_BATCHNORM:
            if (training) {
                if ((st = dml__bn_forward_train(m, l, a, z, n)) != DML_OK)
                    return st;
            } else {
                dml__bn_forward_eval(m, l, a, z, n);
            }
            break;
        case DML_LAYER_DROPOUT: {
            const size_t nz = (size_t)n * s->osz;
            const float keep = 1.0f - L->p, inv = 1.0f / keep;
            size_t k;
            if (!training || L->p == 0) {
                if (z != a)
                    memcpy(z, a, nz * sizeof(float));
                if (training)
                    memset(s->mask, 1, nz);
                break;
            }
            for (k = 0; k < nz; k++) {
                s->mask[k] = dml__uniform(dseed ^ ((uint64_t)(l + 1) << 56) ^ k) < keep;
                z[k] = s->mask[k] ? a[k] * inv : 0;
            }
            break;
        }
        case DML_LAYER_FLATTEN:
            break;
        case DML_LAYER_RELU:
            /* done by the layer before: a convolution always, a dense layer
             * in evaluation */
            if (l > 0 && s->inplace &&
                (m->spec.layer[l - 1].kind == DML_LAYER_CONV2D ||
                 (!training && m->spec.layer[l - 1].kind == DML_LAYER_DENSE)))
                break;
            dml__relu(z, a, (size_t)n * s->osz);
            break;
        }
        a = z;
    }
    dml__softmax(m->ls[NL - 1].out, n, m->spec.classes);
    return DML_OK;
}

static void dml__loss(const dml_model_t *m, const int32_t *y, int n, double *loss_sum, int *correct)
{
    const int C = m->spec.classes;
    const float *p = m->ls[m->spec.nlayers - 1].out;
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

/* What every batch entry point checks first; an empty batch (a rank
 * without samples in a short last step) has no loss and none right. */
static dml_status_t dml__batch_begin(dml_model_t *m, const int32_t *y, int n, double *loss_sum,
                                     int *correct)
{
    if (n < 0 || n > m->max_batch)
        return dml_error_set(DML_ERR_INVALID_ARG,
                             "batch of %d samples, the model was sized for "
                             "0..%d",
                             n, m->max_batch);
    if (n == 0) {
        if (loss_sum)
            *loss_sum = 0;
        if (correct)
            *correct = 0;
    }
    return dml__check_labels(m, y, n);
}

/* ---- the device ------------------------------------------------------------------- */

#ifdef HAVE_CUDA
/* A GPU failure as the caller sees it: out of memory names the model and
 * its batch; anything else CUDA's words. */
static dml_status_t dml__gpu_status(dml_model_t *m, const dml__gpu_ops_t *o, int rc)
{
    char spec[DML_MODEL_SPEC_MAX], dev[384];

    if (rc == 0)
        return DML_OK;
    dml_model_spec_format(&m->spec, spec, sizeof(spec));
    dml_device_format(&m->device, dev, sizeof(dev));
    if (rc == DML_GPU_ERR_NO_MEMORY)
        return dml_error_set(DML_ERR_NO_MEMORY, "%s on %s, batches of up to %d: %s", spec, dev,
                             m->max_batch, o->error());
    return dml_error_set(DML_ERR_UNSUPPORTED, "%s on %s: %s", spec, dev, o->error());
}
#endif

const dml_device_t *dml_model_device(const dml_model_t *m)
{
    return &m->device;
}

dml_status_t dml_model_set_device(dml_model_t *m, const dml_device_t *dev)
{
#ifdef HAVE_CUDA
    dml__gpu_layer_t gl[DML_MODEL_MAX_LAYERS];
    dml__gpu_net_t *g = NULL;
    const dml__gpu_ops_t *o;
    const char *why;
    int rc;
#endif
    char what[128];
    int l;

    if (dev == NULL || dev->kind == DML_DEVICE_CPU) {
#ifdef HAVE_CUDA
        if (m->gpu != NULL)
            m->gops->net_free(m->gpu);
        m->gpu = NULL;
#endif
        memset(&m->device, 0, sizeof(m->device));
        snprintf(m->device.name, sizeof(m->device.name), "cpu");
        return DML_OK;
    }
    /* What the GPU path runs, before anything is asked of CUDA: the refusal
     * names the layer with or without a GPU. */
    for (l = 0; l < m->spec.nlayers; l++) {
        const dml_layer_kind_t k = m->spec.layer[l].kind;
        if (k != DML_LAYER_DENSE && k != DML_LAYER_RELU && k != DML_LAYER_DROPOUT &&
            k != DML_LAYER_FLATTEN) {
            dml_layer_format(&m->spec.layer[l], what, sizeof(what));
            return dml_error_set(DML_ERR_UNSUPPORTED,
                                 "layer %d, %s: the GPU path runs dense, relu, dropout and flatten "
                                 "layers so far, not this one; use --device cpu",
                                 l + 1, what);
        }
    }
#ifdef HAVE_CUDA
    for (l = 0; l < m->spec.nlayers; l++) {
        const dml_layer_t *L = &m->spec.layer[l];
        const dml__lstate_t *s = &m->ls[l];
        gl[l].kind = L->kind == DML_LAYER_DENSE     ? DML_GPU_DENSE
                     : L->kind == DML_LAYER_RELU    ? DML_GPU_RELU
                     : L->kind == DML_LAYER_DROPOUT ? DML_GPU_DROPOUT
                                                    : DML_GPU_FLATTEN;
        gl[l].isz = (int)s->isz;
        gl[l].osz = (int)s->osz;
        gl[l].poff = s->poff;
        gl[l].np = s->np;
        gl[l].pidx = s->pidx;
        gl[l].need_dx = s->need_dx;
        gl[l].p = L->p;
    }
    if ((o = dml__gpu_ops(&why)) == NULL)
        return dml_error_set(DML_ERR_UNSUPPORTED, "cuda:%d: %s", dev->index, why);
    rc = o->net_create(dev->index, gl, m->spec.nlayers, m->np, m->spec.classes, m->max_batch, &g);
    if (rc != 0) {
        const dml_device_t prev = m->device;
        dml_status_t st;
        m->device = *dev; /* for the message */
        st = dml__gpu_status(m, o, rc);
        m->device = prev;
        return st;
    }
    if (m->gpu != NULL)
        m->gops->net_free(m->gpu);
    m->gpu = g;
    m->gops = o;
    m->device = *dev;
    return DML_OK;
#else
    return dml_error_set(DML_ERR_UNSUPPORTED, "this slurm-dml was built without the GPU path "
                                              "(configure found no CUDA); use --device cpu");
#endif
}

dml_status_t dml_model_eval(dml_model_t *m, const float *x, const int32_t *y, int n, float *probs,
                            double *loss_sum, int *correct)
{
    dml_status_t st;

    if ((st = dml__batch_begin(m, y, n, loss_sum, correct)) != DML_OK || n == 0)
        return st;
#ifdef HAVE_CUDA
    if (m->gpu != NULL)
        return dml__gpu_status(
            m, m->gops, m->gops->net_eval(m->gpu, m->params, x, y, n, probs, loss_sum, correct));
#endif
    if ((st = dml__forward(m, x, n, 0, 0)) != DML_OK)
        return st;
    if (probs != NULL)
        memcpy(probs, m->ls[m->spec.nlayers - 1].out,
               (size_t)n * (size_t)m->spec.classes * sizeof(float));
    if (y != NULL)
        dml__loss(m, y, n, loss_sum, correct);
    return DML_OK;
}

/* A rank without samples in a short last step: the reductions the others
 * make (batch normalisation's), in the same order, with nothing of its own,
 * so that none of them waits and its running statistics stay the same. */
static dml_status_t dml__train_empty(dml_model_t *m)
{
    dml_status_t st;
    int l;

    if (m->reduce == NULL)
        return DML_OK;
    for (l = 0; l < m->spec.nlayers; l++)
        if (m->spec.layer[l].kind == DML_LAYER_BATCHNORM &&
            (st = dml__bn_forward_train(m, l, NULL, NULL, 0)) != DML_OK)
            return st;
    for (l = m->spec.nlayers - 1; l >= 0; l--)
        if (m->spec.layer[l].kind == DML_LAYER_BATCHNORM && m->ls[l].need_dx &&
            (st = dml__bn_backward(m, l, NULL, NULL, 0, 0, NULL, NULL)) != DML_OK)
            return st;
    return DML_OK;
}

dml_status_t dml_model_train_step(dml_model_t *m, const float *x, const int32_t *y, int n,
                                  float scale, uint64_t dropout_seed, double *loss_sum,
                                  int *correct, dml_grad_ready_cb_t cb, void *cb_arg)
{
    const int NL = m->spec.nlayers;
    float *dy = m->g0, *dx = m->g1, *t;
    dml_status_t st;
    int l, i, j;

    if ((st = dml__batch_begin(m, y, n, loss_sum, correct)) != DML_OK)
        return st;
    if (n == 0)
        return dml__train_empty(m);
#ifdef HAVE_CUDA
    if (m->gpu != NULL)
        return dml__gpu_status(m, m->gops,
                               m->gops->net_train(m->gpu, m->params, x, y, n, scale, dropout_seed,
                                                  m->grads, loss_sum, correct, cb, cb_arg));
#endif
    if ((st = dml__forward(m, x, n, 1, dropout_seed)) != DML_OK)
        return st;
    dml__loss(m, y, n, loss_sum, correct);

    /* dL/dz of the output: (softmax - onehot), scaled to the global mean */
    {
        const int C = m->spec.classes;
        const float *p = m->ls[NL - 1].out;
        for (i = 0; i < n; i++) {
            for (j = 0; j < C; j++)
                dy[(size_t)i * C + j] = p[(size_t)i * C + j] * scale;
            dy[(size_t)i * C + y[i]] -= scale;
        }
    }
    for (l = NL - 1; l >= 0; l--) {
        const dml_layer_t *L = &m->spec.layer[l];
        dml__lstate_t *s = &m->ls[l];
        const float *a = l == 0 ? m->in : m->ls[l - 1].out;
        const size_t nin = (size_t)n * s->isz;
        float *gp = m->grads + s->poff;

        if (s->pidx < 0 && !s->need_dx)
            break; /* nothing below needs a gradient */
        switch (L->kind) {
        case DML_LAYER_DENSE: {
            const int din = (int)s->isz, dout = L->units;
            float *gb = gp + s->isz * (size_t)dout;
            /* dW += a^T . dz ; db += column sums of dz */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, din, dout, n, 1.0f, a, din, dy,
                        dout, 1.0f, gp, dout);
            for (i = 0; i < n; i++)
                for (j = 0; j < dout; j++)
                    gb[j] += dy[(size_t)i * dout + j];
            if (cb != NULL)
                cb(cb_arg, s->pidx, s->poff, s->np);
            if (!s->need_dx)
                break;
            /* da = dz . W^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, din, dout, 1.0f, dy, dout,
                        m->params + s->poff, dout, 0.0f, dx, din);
            t = dy, dy = dx, dx = t;
            break;
        }
        case DML_LAYER_CONV2D: {
            const size_t nw = (size_t)L->units * (size_t)L->in[0] * L->kh * L->kw;
            if ((st = dml__conv_backward(s->conv, a, m->params + s->poff, dy, gp, gp + nw,
                                         s->need_dx ? dx : NULL, n)) != DML_OK)
                return st;
            if (cb != NULL)
                cb(cb_arg, s->pidx, s->poff, s->np);
            t = dy, dy = dx, dx = t;
            break;
        }
        case DML_LAYER_MAXPOOL: {
            /* A ReLU before it (in place) is folded in: its backward pass
             * over the whole input would pass only what reaches the maxima,
             * where its output is the pooled value. */
            const int relu =
                l > 0 && m->spec.layer[l - 1].kind == DML_LAYER_RELU && m->ls[l - 1].inplace;
            dml__maxpool_backward(L, dy, s->argmax, relu ? s->out : NULL, dx, n);
            t = dy, dy = dx, dx = t;
            if (relu)
                l--; /* the ReLU's backward is done */
            break;
        }
        case DML_LAYER_AVGPOOL:
            dml__avgpool_backward(L, dy, dx, n);
            t = dy, dy = dx, dx = t;
            break;
        case DML_LAYER_BATCHNORM:
            if ((st = dml__bn_backward(m, l, dy, dx, n, s->pidx, cb, cb_arg)) != DML_OK)
                return st;
            t = dy, dy = dx, dx = t;
            break;
        case DML_LAYER_DROPOUT: {
            const float inv = 1.0f / (1.0f - L->p);
            size_t k;
            for (k = 0; k < nin; k++)
                dy[k] = s->mask[k] ? dy[k] * inv : 0;
            break;
        }
        case DML_LAYER_FLATTEN:
            break;
        case DML_LAYER_RELU:
            dml__relu_backward(dy, dy, s->out, nin);
            break;
        }
    }
    return DML_OK;
}
