/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * conv_bench: the convolution implementations measured against each other in
 * one process, on one thread, alternating, for the choice nn/conv.c makes
 * (docs/benchmarks/conv.md):
 *   im2col  nn/conv.c: each sample's windows as columns, one BLAS sgemm
 *   dnnl    oneDNN's convolution primitives on the network's own NCHW
 *           layout (no reorders), forward training, backward weights (and
 *           bias), backward data
 * For each shape: forward, and backward (weights, bias and, where the layer
 * is not the first, data), ms per batch, median of the runs; and whether
 * the two agree (largest difference over the largest value).
 *
 * conv_bench N C H W F K [RUNS]
 */
#include "config.h"

#include "nn_private.h"

#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dml_clock.h"

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        dnnl_status_t s_ = (x);                                                                    \
        if (s_ != dnnl_success) {                                                                  \
            fprintf(stderr, "conv_bench: %s: oneDNN status %d\n", #x, (int)s_);                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp);
    return v[n / 2];
}

static double rel(const float *a, const float *b, size_t n)
{
    double d = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

typedef struct {
    dnnl_primitive_t fwd, bww, r_src, r_dst, r_ddst, r_dwei_back, r_wei;
    dnnl_memory_t src, wei, dst, ddst, dwei, bias, dbias; /* oneDNN's layouts */
} dnnl_blocked_t;

typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    dnnl_primitive_t fwd, bww, bwd;
    dnnl_memory_t src, wei, bias, dst, dsrc, dwei, dbias, ddst;
} dnnl_conv_t;

static const char *impl(const_dnnl_primitive_desc_t pd)
{
    const char *s = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success && s
               ? s
               : "?";
}

static void dnnl_setup(dnnl_conv_t *c, int n, int C, int H, int W, int F, int K, int OH, int OW,
                       float *x, float *w, float *b, float *y, float *dx, float *dw, float *db,
                       float *dy, int need_dx)
{
    dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md;
    dnnl_convolution_desc_t fd, wd, dd;
    dnnl_primitive_desc_t fpd, wpd, dpd;
    dnnl_dims_t src_dims = {n, C, H, W}, wei_dims = {F, C, K, K}, bias_dims = {F},
                dst_dims = {n, F, OH, OW}, strides = {1, 1}, pad = {0, 0};

    CHECK(dnnl_engine_create(&c->eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&c->strm, c->eng, dnnl_stream_default_flags));
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&wei_md, 4, wei_dims, dnnl_f32, dnnl_oihw));
    CHECK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bias_dims, dnnl_f32, dnnl_x));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                             &src_md, &wei_md, &bias_md, &dst_md, strides, pad,
                                             pad));
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, c->eng, NULL));
    CHECK(dnnl_primitive_create(&c->fwd, fpd));
    CHECK(dnnl_convolution_backward_weights_desc_init(
        &wd, dnnl_convolution_direct, &src_md, &wei_md, &bias_md, &dst_md, strides, pad, pad));
    CHECK(dnnl_primitive_desc_create(&wpd, &wd, NULL, c->eng, fpd));
    CHECK(dnnl_primitive_create(&c->bww, wpd));
    if (need_dx) {
        CHECK(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &src_md,
                                                       &wei_md, &dst_md, strides, pad, pad));
        CHECK(dnnl_primitive_desc_create(&dpd, &dd, NULL, c->eng, fpd));
        CHECK(dnnl_primitive_create(&c->bwd, dpd));
        fprintf(stderr, "oneDNN backward data: %s\n", impl(dpd));
    }
    fprintf(stderr, "oneDNN forward: %s; backward weights: %s\n", impl(fpd), impl(wpd));
    CHECK(dnnl_memory_create(&c->src, &src_md, c->eng, x));
    CHECK(dnnl_memory_create(&c->wei, &wei_md, c->eng, w));
    CHECK(dnnl_memory_create(&c->bias, &bias_md, c->eng, b));
    CHECK(dnnl_memory_create(&c->dst, &dst_md, c->eng, y));
    CHECK(dnnl_memory_create(&c->dsrc, &src_md, c->eng, dx));
    CHECK(dnnl_memory_create(&c->dwei, &wei_md, c->eng, dw));
    CHECK(dnnl_memory_create(&c->dbias, &bias_md, c->eng, db));
    CHECK(dnnl_memory_create(&c->ddst, &dst_md, c->eng, dy));
}

static dnnl_primitive_t reorder(dnnl_engine_t eng, const dnnl_memory_desc_t *from,
                                const dnnl_memory_desc_t *to)
{
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    CHECK(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL));
    CHECK(dnnl_primitive_create(&p, pd));
    return p;
}

/* The same convolution with oneDNN choosing its layouts (format "any", as
 * PyTorch's mkldnn path does), and the reorders from and to NCHW that the
 * rest of the network's layers would need, timed with it. */
static void blocked_setup(dnnl_conv_t *c, dnnl_blocked_t *b, int n, int C, int H, int W, int F,
                          int K, int OH, int OW)
{
    dnnl_memory_desc_t any_src, any_wei, any_dst, bias_md, u_src, u_wei, u_dst;
    const dnnl_memory_desc_t *src_md, *wei_md, *dst_md, *dwei_md;
    dnnl_convolution_desc_t fd, wd;
    dnnl_primitive_desc_t fpd, wpd;
    dnnl_dims_t src_dims = {n, C, H, W}, wei_dims = {F, C, K, K}, bias_dims = {F},
                dst_dims = {n, F, OH, OW}, strides = {1, 1}, pad = {0, 0};

    CHECK(dnnl_memory_desc_init_by_tag(&any_src, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&any_wei, 4, wei_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&any_dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bias_dims, dnnl_f32, dnnl_x));
    CHECK(dnnl_memory_desc_init_by_tag(&u_src, 4, src_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&u_wei, 4, wei_dims, dnnl_f32, dnnl_oihw));
    CHECK(dnnl_memory_desc_init_by_tag(&u_dst, 4, dst_dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                             &any_src, &any_wei, &bias_md, &any_dst, strides, pad,
                                             pad));
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, c->eng, NULL));
    CHECK(dnnl_primitive_create(&b->fwd, fpd));
    CHECK(dnnl_convolution_backward_weights_desc_init(
        &wd, dnnl_convolution_direct, &any_src, &any_wei, &bias_md, &any_dst, strides, pad, pad));
    CHECK(dnnl_primitive_desc_create(&wpd, &wd, NULL, c->eng, fpd));
    CHECK(dnnl_primitive_create(&b->bww, wpd));
    fprintf(stderr, "oneDNN, its own layouts: forward %s; backward weights %s\n", impl(fpd),
            impl(wpd));
    src_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0);
    wei_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);
    dst_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);
    dwei_md = dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0);
    CHECK(dnnl_memory_create(&b->src, src_md, c->eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b->wei, wei_md, c->eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b->dst, dst_md, c->eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b->ddst, dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_dst_md, 0),
                             c->eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b->dwei, dwei_md, c->eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b->bias, &bias_md, c->eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&b->dbias, &bias_md, c->eng, DNNL_MEMORY_ALLOCATE));
    b->r_src = reorder(c->eng, &u_src, src_md);
    b->r_wei = reorder(c->eng, &u_wei, wei_md);
    b->r_dst = reorder(c->eng, dst_md, &u_dst);
    b->r_ddst =
        reorder(c->eng, &u_dst, dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_dst_md, 0));
    b->r_dwei_back = reorder(c->eng, dwei_md, &u_wei);
}

static void run_reorder(dnnl_stream_t s, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    CHECK(dnnl_primitive_execute(r, s, 2, a));
}

int main(int argc, char **argv)
{
    int n, C, H, W, F, K, runs, OH, OW, r, need_dx;
    dml_layer_t l;
    dml__conv_t *conv;
    dnnl_conv_t dc;
    dnnl_blocked_t bl;
    float *x, *w, *b, *y1, *y2, *dy, *dw1, *dw2, *db1, *db2, *dx1, *dx2;
    double *t[6];
    size_t xs, ys, ws;

    if (argc < 7) {
        fprintf(stderr, "usage: conv_bench N C H W F K [RUNS]\n");
        return 2;
    }
    n = atoi(argv[1]), C = atoi(argv[2]), H = atoi(argv[3]), W = atoi(argv[4]);
    F = atoi(argv[5]), K = atoi(argv[6]);
    runs = argc > 7 ? atoi(argv[7]) : 30;
    need_dx = C > 1; /* a first layer (C = 1 here) needs no input gradient */
    OH = H - K + 1, OW = W - K + 1;
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    dnnl_set_max_cpu_isa(dnnl_cpu_isa_all);
    memset(&l, 0, sizeof(l));
    l.kind = DML_LAYER_CONV2D;
    l.units = F, l.kh = l.kw = K, l.sh = l.sw = 1;
    l.in[0] = C, l.in[1] = H, l.in[2] = W;
    l.out[0] = F, l.out[1] = OH, l.out[2] = OW;
    xs = (size_t)n * C * H * W, ys = (size_t)n * F * OH * OW, ws = (size_t)F * C * K * K;
    x = malloc(xs * 4), dx1 = malloc(xs * 4), dx2 = malloc(xs * 4);
    y1 = malloc(ys * 4), y2 = malloc(ys * 4), dy = malloc(ys * 4);
    w = malloc(ws * 4), dw1 = malloc(ws * 4), dw2 = malloc(ws * 4);
    b = malloc((size_t)F * 4), db1 = malloc((size_t)F * 4), db2 = malloc((size_t)F * 4);
    for (size_t i = 0; i < xs; i++)
        x[i] = (float)sin(0.1 * (double)i);
    for (size_t i = 0; i < ys; i++)
        dy[i] = (float)cos(0.07 * (double)i) * 1e-3f;
    for (size_t i = 0; i < ws; i++)
        w[i] = (float)sin(0.3 * (double)i) * 0.2f;
    for (int i = 0; i < F; i++)
        b[i] = 0.01f * (float)i;
    if (dml__conv_create(&l, n, need_dx, 0, &conv) != DML_OK)
        return 1;
    dnnl_setup(&dc, n, C, H, W, F, K, OH, OW, x, w, b, y2, dx2, dw2, db2, dy, need_dx);
    blocked_setup(&dc, &bl, n, C, H, W, F, K, OH, OW);
    for (int k = 0; k < 6; k++)
        t[k] = malloc((size_t)runs * sizeof(double));
    for (r = -3; r < runs; r++) {
        double t0;
        /* im2col */
        t0 = dml__now();
        dml__conv_forward(conv, x, w, b, y1, n);
        if (r >= 0)
            t[0][r] = dml__now() - t0;
        memset(dw1, 0, ws * 4), memset(db1, 0, (size_t)F * 4);
        t0 = dml__now();
        dml__conv_backward(conv, x, w, dy, dw1, db1, need_dx ? dx1 : NULL, n);
        if (r >= 0)
            t[1][r] = dml__now() - t0;
        /* oneDNN */
        t0 = dml__now();
        {
            dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, dc.src},
                                   {DNNL_ARG_WEIGHTS, dc.wei},
                                   {DNNL_ARG_BIAS, dc.bias},
                                   {DNNL_ARG_DST, dc.dst}};
            CHECK(dnnl_primitive_execute(dc.fwd, dc.strm, 4, a));
            CHECK(dnnl_stream_wait(dc.strm));
        }
        if (r >= 0)
            t[2][r] = dml__now() - t0;
        t0 = dml__now();
        {
            dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, dc.src},
                                   {DNNL_ARG_DIFF_DST, dc.ddst},
                                   {DNNL_ARG_DIFF_WEIGHTS, dc.dwei},
                                   {DNNL_ARG_DIFF_BIAS, dc.dbias}};
            CHECK(dnnl_primitive_execute(dc.bww, dc.strm, 4, a));
            if (need_dx) {
                dnnl_exec_arg_t d[] = {{DNNL_ARG_DIFF_DST, dc.ddst},
                                       {DNNL_ARG_WEIGHTS, dc.wei},
                                       {DNNL_ARG_DIFF_SRC, dc.dsrc}};
                CHECK(dnnl_primitive_execute(dc.bwd, dc.strm, 3, d));
            }
            CHECK(dnnl_stream_wait(dc.strm));
        }
        if (r >= 0)
            t[3][r] = dml__now() - t0;
        /* oneDNN in its own layouts, with the reorders from and to NCHW
         * (the weights' each step: the optimiser updates them in OIHW) */
        t0 = dml__now();
        run_reorder(dc.strm, bl.r_src, dc.src, bl.src);
        run_reorder(dc.strm, bl.r_wei, dc.wei, bl.wei);
        {
            dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, bl.src},
                                   {DNNL_ARG_WEIGHTS, bl.wei},
                                   {DNNL_ARG_BIAS, dc.bias},
                                   {DNNL_ARG_DST, bl.dst}};
            CHECK(dnnl_primitive_execute(bl.fwd, dc.strm, 4, a));
        }
        run_reorder(dc.strm, bl.r_dst, bl.dst, dc.dst);
        CHECK(dnnl_stream_wait(dc.strm));
        if (r >= 0)
            t[4][r] = dml__now() - t0;
        t0 = dml__now();
        run_reorder(dc.strm, bl.r_ddst, dc.ddst, bl.ddst);
        {
            dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, bl.src},
                                   {DNNL_ARG_DIFF_DST, bl.ddst},
                                   {DNNL_ARG_DIFF_WEIGHTS, bl.dwei},
                                   {DNNL_ARG_DIFF_BIAS, dc.dbias}};
            CHECK(dnnl_primitive_execute(bl.bww, dc.strm, 4, a));
        }
        run_reorder(dc.strm, bl.r_dwei_back, bl.dwei, dc.dwei);
        CHECK(dnnl_stream_wait(dc.strm));
        if (r >= 0)
            t[5][r] = dml__now() - t0;
    }
    printf("  oneDNN in its own layouts with reorders: forward %.3f ms, backward weights %.3f ms\n",
           1e3 * median(t[4], runs), 1e3 * median(t[5], runs));
    printf(
        "conv %dx%dx%d -> %d filters %dx%d, batch %d%s: forward im2col %.3f ms, oneDNN %.3f ms; "
        "backward im2col %.3f ms, oneDNN %.3f ms; differences: output %.1e, weight gradient %.1e, "
        "bias gradient %.1e%s\n",
        C, H, W, F, K, K, n, need_dx ? " (with input gradient)" : "", 1e3 * median(t[0], runs),
        1e3 * median(t[2], runs), 1e3 * median(t[1], runs), 1e3 * median(t[3], runs),
        rel(y1, y2, ys), rel(dw1, dw2, ws), rel(db1, db2, (size_t)F), need_dx ? "" : "");
    if (need_dx)
        printf("  input gradient difference %.1e\n", rel(dx1, dx2, xs));
    return 0;
}
