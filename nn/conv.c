/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * conv.c: 2-D convolution, forward and backward.
 *
 * With oneDNN (the convolutions PyTorch's CPU path uses): its primitives in
 * the data layouts it chooses for this CPU (blocked by 16 channels on
 * AVX-512), with reorders from and to the network's NCHW around them. That
 * was measured against im2col with OpenBLAS, and against oneDNN kept on NCHW,
 * on the book's first layer and on a deeper one (docs/benchmarks/conv.md,
 * bench/conv_bench): faster than both, reorders included.
 *
 * Without oneDNN (configure --without-dnnl): im2col and BLAS, each sample's
 * windows laid out as the columns of a (C kh kw) x (OH OW) matrix and the
 * convolution one sgemm with the filters.
 */
#include "config.h"

#include "nn_private.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* bench/conv_bench builds the im2col path beside oneDNN's to compare them */
#if HAVE_DNNL && !defined(DML_CONV_IM2COL)
#define DML__DNNL 1
#include <dnnl.h>
#include <omp.h>
#else
#define DML__DNNL 0
#endif

#define DML__CONV_SLOTS 2 /* batch sizes kept: the full one and an epoch's last */

#if DML__DNNL
/* One tensor: the caller's array in NCHW (OIHW for weights) and the same
 * values in the layout a primitive wants, with the reorder between them;
 * where the layouts agree, both memories point at the caller's array and
 * there is no reorder. */
typedef struct {
    dnnl_memory_t user, mine;
    dnnl_primitive_t reorder; /* user -> mine (inputs) or mine -> user (outputs) */
    int own;                  /* mine has a buffer of its own */
} dml__tensor_t;

/* The primitives and tensors for one batch size. */
typedef struct {
    int n;                                    /* 0: unused */
    unsigned long long used;                  /* when last used (for replacing) */
    dnnl_primitive_t fwd, bww, bwd;           /* bwd: NULL where no input gradient */
    dml__tensor_t src, wei, bias, dst;        /* forward */
    dml__tensor_t src_w, ddst_w, dwei, dbias; /* backward (weights); src_w: unused where
                                                 forward's input layout serves */
    int src_w_own;
    dml__tensor_t ddst_d, wei_d, dsrc; /* backward (data) */
} dml__slot_t;
#endif

struct dml__conv {
    dml_layer_t l;
    int C, H, W, F, OH, OW, K; /* K: C kh kw */
    size_t ohw;
    int need_dx, relu; /* relu: the output goes through ReLU */
#if DML__DNNL
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    float *dw_tmp, *db_tmp; /* gradients before they are added */
    dml__slot_t slot[DML__CONV_SLOTS];
    unsigned long long clock;
#else
    int direct; /* 1x1, stride 1, no padding: the input is its own column matrix */
    float *col; /* K x OH OW */
#endif
};

/* The fields both implementations share, from the layer's bound shape. */
static dml__conv_t *dml__conv_new(const dml_layer_t *l, int need_dx, int relu)
{
    dml__conv_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->l = *l;
    c->C = l->in[0], c->H = l->in[1], c->W = l->in[2];
    c->F = l->units, c->OH = l->out[1], c->OW = l->out[2];
    c->K = c->C * l->kh * l->kw;
    c->ohw = (size_t)c->OH * c->OW;
    c->need_dx = need_dx;
    c->relu = relu;
    return c;
}

#if DML__DNNL

static dml_status_t dml__dnnl(dnnl_status_t s, const char *what)
{
    return s == dnnl_success
               ? DML_OK
               : dml_error_set(s == dnnl_out_of_memory ? DML_ERR_NO_MEMORY : DML_ERR_UNSUPPORTED,
                               "convolution: oneDNN's %s failed (status %d)", what, (int)s);
}

#define DNNL_TRY(call, what)                                                                       \
    do {                                                                                           \
        if ((st = dml__dnnl((call), what)) != DML_OK)                                              \
            goto out;                                                                              \
    } while (0)

static void dml__tensor_free(dml__tensor_t *t)
{
    if (t->reorder != NULL)
        dnnl_primitive_destroy(t->reorder);
    if (t->mine != NULL)
        dnnl_memory_destroy(t->mine);
    if (t->user != NULL)
        dnnl_memory_destroy(t->user);
    memset(t, 0, sizeof(*t));
}

static void dml__slot_free(dml__slot_t *s)
{
    dml__tensor_t *t[] = {&s->src,  &s->wei,   &s->bias,   &s->dst,   &s->src_w, &s->ddst_w,
                          &s->dwei, &s->dbias, &s->ddst_d, &s->wei_d, &s->dsrc};
    dnnl_primitive_t p[] = {s->fwd, s->bww, s->bwd};
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        dml__tensor_free(t[i]);
    for (i = 0; i < sizeof(p) / sizeof(p[0]); i++)
        if (p[i] != NULL)
            dnnl_primitive_destroy(p[i]);
    memset(s, 0, sizeof(*s));
}

/* A tensor in the caller's layout `user` and the primitive's `want`; input:
 * the reorder goes user -> mine, else mine -> user. */
static dnnl_status_t dml__tensor(dnnl_engine_t eng, const dnnl_memory_desc_t *user,
                                 const dnnl_memory_desc_t *want, int input, dml__tensor_t *t)
{
    dnnl_primitive_desc_t pd;
    dnnl_status_t s;

    if ((s = dnnl_memory_create(&t->user, user, eng, DNNL_MEMORY_NONE)) != dnnl_success)
        return s;
    t->own = !dnnl_memory_desc_equal(user, want);
    if ((s = dnnl_memory_create(&t->mine, want, eng,
                                t->own ? DNNL_MEMORY_ALLOCATE : DNNL_MEMORY_NONE)) != dnnl_success)
        return s;
    if (!t->own)
        return dnnl_success;
    s = input ? dnnl_reorder_primitive_desc_create(&pd, user, eng, want, eng, NULL)
              : dnnl_reorder_primitive_desc_create(&pd, want, eng, user, eng, NULL);
    if (s != dnnl_success)
        return s;
    s = dnnl_primitive_create(&t->reorder, pd);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/* Points a tensor at the caller's array; an input is reordered into the
 * primitive's layout. */
static dnnl_status_t dml__tensor_in(dml__conv_t *c, dml__tensor_t *t, const void *p)
{
    dnnl_status_t s = dnnl_memory_set_data_handle(t->user, (void *)p);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, t->user}, {DNNL_ARG_TO, t->mine}};

    if (s != dnnl_success)
        return s;
    if (!t->own)
        return dnnl_memory_set_data_handle(t->mine, (void *)p);
    return dnnl_primitive_execute(t->reorder, c->strm, 2, a);
}

/* Points an output tensor at the caller's array (before the primitive runs). */
static dnnl_status_t dml__tensor_out(dml__tensor_t *t, void *p)
{
    dnnl_status_t s = dnnl_memory_set_data_handle(t->user, p);

    return s != dnnl_success || t->own ? s : dnnl_memory_set_data_handle(t->mine, p);
}

/* After the primitive: an output in another layout reordered into the
 * caller's array. */
static dnnl_status_t dml__tensor_back(dml__conv_t *c, dml__tensor_t *t)
{
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, t->mine}, {DNNL_ARG_TO, t->user}};

    return t->own ? dnnl_primitive_execute(t->reorder, c->strm, 2, a) : dnnl_success;
}

#define MD(pd, what) dnnl_primitive_desc_query_md(pd, what, 0)

/* The primitives for batches of n, made the first time n comes. */
static dml_status_t dml__slot_for(dml__conv_t *c, int n, dml__slot_t **out)
{
    const dml_layer_t *l = &c->l;
    dnnl_memory_desc_t any_src, any_wei, any_dst, bias_md, u_src, u_wei, u_dst;
    dnnl_convolution_desc_t fd, wd, dd;
    dnnl_primitive_desc_t fpd = NULL, wpd = NULL, dpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_dims_t src_dims = {n, c->C, c->H, c->W}, wei_dims = {c->F, c->C, l->kh, l->kw},
                bias_dims = {c->F}, dst_dims = {n, c->F, c->OH, c->OW}, strides = {l->sh, l->sw},
                pad_l = {l->ph, l->pw}, pad_r;
    dml__slot_t *s = NULL;
    dml_status_t st = DML_OK;
    int i;

    for (i = 0; i < DML__CONV_SLOTS; i++)
        if (c->slot[i].n == n) {
            c->slot[i].used = ++c->clock;
            *out = &c->slot[i];
            return DML_OK;
        }
    for (i = 0; i < DML__CONV_SLOTS; i++)
        if (s == NULL || c->slot[i].used < s->used)
            s = &c->slot[i];
    dml__slot_free(s);
    /* the far side's padding: what makes the output size (where a stride
     * leaves input over, negative: none of it is read) */
    pad_r[0] = (c->OH - 1) * l->sh + l->kh - c->H - l->ph;
    pad_r[1] = (c->OW - 1) * l->sw + l->kw - c->W - l->pw;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&any_src, 4, src_dims, dnnl_f32, dnnl_format_tag_any),
             "layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&any_wei, 4, wei_dims, dnnl_f32, dnnl_format_tag_any),
             "layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&any_dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any),
             "layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bias_dims, dnnl_f32, dnnl_x), "layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&u_src, 4, src_dims, dnnl_f32, dnnl_nchw), "layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&u_wei, 4, wei_dims, dnnl_f32, dnnl_oihw), "layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&u_dst, 4, dst_dims, dnnl_f32, dnnl_nchw), "layout");
    DNNL_TRY(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                                &any_src, &any_wei, &bias_md, &any_dst, strides,
                                                pad_l, pad_r),
             "forward");
    if (c->relu) {
        /* the ReLU after the convolution, applied as its output is written */
        dnnl_post_ops_t po = NULL;
        dnnl_status_t ds = dnnl_post_ops_create(&po);
        if (ds == dnnl_success)
            ds = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        if (ds == dnnl_success)
            ds = dnnl_primitive_attr_create(&attr);
        if (ds == dnnl_success)
            ds = dnnl_primitive_attr_set_post_ops(attr, po);
        if (po != NULL)
            dnnl_post_ops_destroy(po);
        DNNL_TRY(ds, "ReLU after the convolution");
    }
    DNNL_TRY(dnnl_primitive_desc_create(&fpd, &fd, attr, c->eng, NULL), "forward");
    DNNL_TRY(dnnl_primitive_create(&s->fwd, fpd), "forward");
    DNNL_TRY(dml__tensor(c->eng, &u_src, MD(fpd, dnnl_query_src_md), 1, &s->src), "memory");
    DNNL_TRY(dml__tensor(c->eng, &u_wei, MD(fpd, dnnl_query_weights_md), 1, &s->wei), "memory");
    DNNL_TRY(dml__tensor(c->eng, &bias_md, &bias_md, 1, &s->bias), "memory");
    DNNL_TRY(dml__tensor(c->eng, &u_dst, MD(fpd, dnnl_query_dst_md), 0, &s->dst), "memory");

    DNNL_TRY(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &any_src,
                                                         &any_wei, &bias_md, &any_dst, strides,
                                                         pad_l, pad_r),
             "backward (weights)");
    DNNL_TRY(dnnl_primitive_desc_create(&wpd, &wd, NULL, c->eng, fpd), "backward (weights)");
    DNNL_TRY(dnnl_primitive_create(&s->bww, wpd), "backward (weights)");
    /* the weights' gradient may want the input laid out otherwise than the
     * forward pass did: then it gets its own copy */
    s->src_w_own = !dnnl_memory_desc_equal(MD(wpd, dnnl_query_src_md), MD(fpd, dnnl_query_src_md));
    if (s->src_w_own)
        DNNL_TRY(dml__tensor(c->eng, &u_src, MD(wpd, dnnl_query_src_md), 1, &s->src_w), "memory");
    DNNL_TRY(dml__tensor(c->eng, &u_dst, MD(wpd, dnnl_query_diff_dst_md), 1, &s->ddst_w), "memory");
    DNNL_TRY(dml__tensor(c->eng, &u_wei, MD(wpd, dnnl_query_diff_weights_md), 0, &s->dwei),
             "memory");
    DNNL_TRY(dml__tensor(c->eng, &bias_md, &bias_md, 0, &s->dbias), "memory");
    if (c->need_dx) {
        DNNL_TRY(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &any_src,
                                                          &any_wei, &any_dst, strides, pad_l,
                                                          pad_r),
                 "backward (data)");
        DNNL_TRY(dnnl_primitive_desc_create(&dpd, &dd, NULL, c->eng, fpd), "backward (data)");
        DNNL_TRY(dnnl_primitive_create(&s->bwd, dpd), "backward (data)");
        DNNL_TRY(dml__tensor(c->eng, &u_dst, MD(dpd, dnnl_query_diff_dst_md), 1, &s->ddst_d),
                 "memory");
        DNNL_TRY(dml__tensor(c->eng, &u_wei, MD(dpd, dnnl_query_weights_md), 1, &s->wei_d),
                 "memory");
        DNNL_TRY(dml__tensor(c->eng, &u_src, MD(dpd, dnnl_query_diff_src_md), 0, &s->dsrc),
                 "memory");
    }
    s->n = n;
    s->used = ++c->clock;
    *out = s;
out:
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    if (fpd != NULL)
        dnnl_primitive_desc_destroy(fpd);
    if (wpd != NULL)
        dnnl_primitive_desc_destroy(wpd);
    if (dpd != NULL)
        dnnl_primitive_desc_destroy(dpd);
    if (st != DML_OK)
        dml__slot_free(s);
    return st;
}

dml_status_t dml__conv_create(const dml_layer_t *l, int max_batch, int need_dx, int relu,
                              dml__conv_t **out)
{
    dml__conv_t *c = dml__conv_new(l, need_dx, relu);
    dml_status_t st = DML_OK;

    (void)max_batch;
    if (c == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a convolution");
    c->dw_tmp = malloc((size_t)c->F * (size_t)c->K * sizeof(float));
    c->db_tmp = malloc((size_t)c->F * sizeof(float));
    if (c->dw_tmp == NULL || c->db_tmp == NULL) {
        dml__conv_free(c);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a convolution");
    }
    DNNL_TRY(dnnl_engine_create(&c->eng, dnnl_cpu, 0), "CPU engine");
    DNNL_TRY(dnnl_stream_create(&c->strm, c->eng, dnnl_stream_default_flags), "stream");
out:
    if (st != DML_OK) {
        dml__conv_free(c);
        return st;
    }
    *out = c;
    return DML_OK;
}

void dml__conv_free(dml__conv_t *c)
{
    int i;

    if (c == NULL)
        return;
    for (i = 0; i < DML__CONV_SLOTS; i++)
        dml__slot_free(&c->slot[i]);
    if (c->strm)
        dnnl_stream_destroy(c->strm);
    if (c->eng)
        dnnl_engine_destroy(c->eng);
    free(c->dw_tmp);
    free(c->db_tmp);
    free(c);
}

dml_status_t dml__conv_forward(dml__conv_t *c, const float *x, const float *w, const float *b,
                               float *y, int n)
{
    dml__slot_t *s;
    dml_status_t st;

    if ((st = dml__slot_for(c, n, &s)) != DML_OK)
        return st;
    DNNL_TRY(dml__tensor_in(c, &s->src, x), "reorder");
    DNNL_TRY(dml__tensor_in(c, &s->wei, w), "reorder");
    DNNL_TRY(dml__tensor_in(c, &s->bias, b), "reorder");
    DNNL_TRY(dml__tensor_out(&s->dst, y), "memory");
    {
        dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, s->src.mine},
                               {DNNL_ARG_WEIGHTS, s->wei.mine},
                               {DNNL_ARG_BIAS, s->bias.mine},
                               {DNNL_ARG_DST, s->dst.mine}};
        DNNL_TRY(dnnl_primitive_execute(s->fwd, c->strm, 4, a), "forward");
    }
    DNNL_TRY(dml__tensor_back(c, &s->dst), "reorder");
    DNNL_TRY(dnnl_stream_wait(c->strm), "forward");
out:
    return st;
}

dml_status_t dml__conv_backward(dml__conv_t *c, const float *x, const float *w, const float *dy,
                                float *dw, float *db, float *dx, int n)
{
    dml__slot_t *s;
    dml_status_t st;
    size_t i, nw = (size_t)c->F * (size_t)c->K;

    /* the slot the forward pass used: its input, in oneDNN's layout, is
     * still there (x is the same array) */
    if ((st = dml__slot_for(c, n, &s)) != DML_OK)
        return st;
    if (s->src_w_own)
        DNNL_TRY(dml__tensor_in(c, &s->src_w, x), "reorder");
    DNNL_TRY(dml__tensor_in(c, &s->ddst_w, dy), "reorder");
    DNNL_TRY(dml__tensor_out(&s->dwei, c->dw_tmp), "memory");
    DNNL_TRY(dml__tensor_out(&s->dbias, c->db_tmp), "memory");
    {
        dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, s->src_w_own ? s->src_w.mine : s->src.mine},
                               {DNNL_ARG_DIFF_DST, s->ddst_w.mine},
                               {DNNL_ARG_DIFF_WEIGHTS, s->dwei.mine},
                               {DNNL_ARG_DIFF_BIAS, s->dbias.mine}};
        DNNL_TRY(dnnl_primitive_execute(s->bww, c->strm, 4, a), "backward (weights)");
    }
    DNNL_TRY(dml__tensor_back(c, &s->dwei), "reorder");
    if (dx != NULL && s->bwd != NULL) {
        DNNL_TRY(dml__tensor_in(c, &s->ddst_d, dy), "reorder");
        DNNL_TRY(dml__tensor_in(c, &s->wei_d, w), "reorder");
        DNNL_TRY(dml__tensor_out(&s->dsrc, dx), "memory");
        {
            dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_DST, s->ddst_d.mine},
                                   {DNNL_ARG_WEIGHTS, s->wei_d.mine},
                                   {DNNL_ARG_DIFF_SRC, s->dsrc.mine}};
            DNNL_TRY(dnnl_primitive_execute(s->bwd, c->strm, 3, a), "backward (data)");
        }
        DNNL_TRY(dml__tensor_back(c, &s->dsrc), "reorder");
    }
    DNNL_TRY(dnnl_stream_wait(c->strm), "backward");
    /* gradients accumulate (micro-batches): added, not written */
    for (i = 0; i < nw; i++)
        dw[i] += c->dw_tmp[i];
    for (i = 0; i < (size_t)c->F; i++)
        db[i] += c->db_tmp[i];
out:
    return st;
}

void dml_nn_set_threads(int n)
{
    /* oneDNN's OpenMP threads: the process's, as BLAS's */
    omp_set_num_threads(n > 0 ? n : 1);
}

#else /* im2col and BLAS */

dml_status_t dml__conv_create(const dml_layer_t *l, int max_batch, int need_dx, int relu,
                              dml__conv_t **out)
{
    dml__conv_t *c = dml__conv_new(l, need_dx, relu);

    (void)max_batch;
    if (c == NULL)
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a convolution");
    c->direct = l->kh == 1 && l->kw == 1 && l->sh == 1 && l->sw == 1 && l->ph == 0 && l->pw == 0;
    if (!c->direct && (c->col = malloc((size_t)c->K * c->ohw * sizeof(float))) == NULL) {
        const int k = c->K;
        const size_t ohw = c->ohw;
        free(c);
        return dml_error_set(DML_ERR_NO_MEMORY, "no memory for a convolution's %d x %zu columns", k,
                             ohw);
    }
    *out = c;
    return DML_OK;
}

void dml__conv_free(dml__conv_t *c)
{
    if (c == NULL)
        return;
    free(c->col);
    free(c);
}

/* One sample's columns: row (ch, i, j) holds, for each output position, the
 * input value under kernel tap (i, j) of channel ch (0 in the padding). */
static void dml__im2col(const dml__conv_t *c, const float *x, float *col)
{
    const dml_layer_t *l = &c->l;
    int ch, i, j, oy, ox;

    for (ch = 0; ch < c->C; ch++)
        for (i = 0; i < l->kh; i++)
            for (j = 0; j < l->kw; j++) {
                float *row = col + ((size_t)(ch * l->kh + i) * l->kw + j) * c->ohw;
                const float *xp = x + (size_t)ch * c->H * c->W;
                for (oy = 0; oy < c->OH; oy++) {
                    const int iy = oy * l->sh - l->ph + i;
                    float *r = row + (size_t)oy * c->OW;
                    if (iy < 0 || iy >= c->H) {
                        memset(r, 0, (size_t)c->OW * sizeof(float));
                        continue;
                    }
                    if (l->sw == 1 && l->pw == 0) {
                        memcpy(r, xp + (size_t)iy * c->W + j, (size_t)c->OW * sizeof(float));
                        continue;
                    }
                    for (ox = 0; ox < c->OW; ox++) {
                        const int ix = ox * l->sw - l->pw + j;
                        r[ox] = ix < 0 || ix >= c->W ? 0.0f : xp[(size_t)iy * c->W + ix];
                    }
                }
            }
}

/* The reverse: each column value added back to the input position it came
 * from (dx must be zero first). */
static void dml__col2im(const dml__conv_t *c, const float *col, float *dx)
{
    const dml_layer_t *l = &c->l;
    int ch, i, j, oy, ox;

    for (ch = 0; ch < c->C; ch++)
        for (i = 0; i < l->kh; i++)
            for (j = 0; j < l->kw; j++) {
                const float *row = col + ((size_t)(ch * l->kh + i) * l->kw + j) * c->ohw;
                float *xp = dx + (size_t)ch * c->H * c->W;
                for (oy = 0; oy < c->OH; oy++) {
                    const int iy = oy * l->sh - l->ph + i;
                    const float *r = row + (size_t)oy * c->OW;
                    if (iy < 0 || iy >= c->H)
                        continue;
                    for (ox = 0; ox < c->OW; ox++) {
                        const int ix = ox * l->sw - l->pw + j;
                        if (ix >= 0 && ix < c->W)
                            xp[(size_t)iy * c->W + ix] += r[ox];
                    }
                }
            }
}

dml_status_t dml__conv_forward(dml__conv_t *c, const float *x, const float *w, const float *b,
                               float *y, int n)
{
    const size_t isz = (size_t)c->C * c->H * c->W, osz = (size_t)c->F * c->ohw;
    int s, f;

    for (s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * isz, *col = xs;
        float *ys = y + (size_t)s * osz;
        if (!c->direct) {
            dml__im2col(c, xs, c->col);
            col = c->col;
        }
        /* y (F x OHW) = b + w (F x K) . col (K x OHW) */
        for (f = 0; f < c->F; f++)
            for (size_t k = 0; k < c->ohw; k++)
                ys[(size_t)f * c->ohw + k] = b[f];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->F, (int)c->ohw, c->K, 1.0f, w,
                    c->K, col, (int)c->ohw, 1.0f, ys, (int)c->ohw);
        if (c->relu)
            for (size_t k = 0; k < osz; k++)
                ys[k] = ys[k] > 0 ? ys[k] : 0;
    }
    return DML_OK;
}

dml_status_t dml__conv_backward(dml__conv_t *c, const float *x, const float *w, const float *dy,
                                float *dw, float *db, float *dx, int n)
{
    const size_t isz = (size_t)c->C * c->H * c->W, osz = (size_t)c->F * c->ohw;
    int s, f;

    for (s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * isz, *dys = dy + (size_t)s * osz, *col = xs;
        if (!c->direct) {
            dml__im2col(c, xs, c->col);
            col = c->col;
        }
        /* dw (F x K) += dy (F x OHW) . col^T (OHW x K) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->F, c->K, (int)c->ohw, 1.0f, dys,
                    (int)c->ohw, col, (int)c->ohw, 1.0f, dw, c->K);
        for (f = 0; f < c->F; f++) {
            const float *r = dys + (size_t)f * c->ohw;
            float sum = 0;
            for (size_t k = 0; k < c->ohw; k++)
                sum += r[k];
            db[f] += sum;
        }
        if (dx == NULL)
            continue;
        if (c->direct) {
            /* dx (C x HW) = w^T (C x F) . dy (F x HW) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->K, (int)c->ohw, c->F, 1.0f, w,
                        c->K, dys, (int)c->ohw, 0.0f, dx + (size_t)s * isz, (int)c->ohw);
            continue;
        }
        /* the columns' gradient (K x OHW) = w^T (K x F) . dy (F x OHW) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->K, (int)c->ohw, c->F, 1.0f, w, c->K,
                    dys, (int)c->ohw, 0.0f, c->col, (int)c->ohw);
        memset(dx + (size_t)s * isz, 0, isz * sizeof(float));
        dml__col2im(c, c->col, dx + (size_t)s * isz);
    }
    return DML_OK;
}

void dml_nn_set_threads(int n)
{
    (void)n; /* BLAS's threads are the tool's to set */
}

#endif
