/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_nn.c: the network library as training and inference rely on it: the
 * spec (parsing, presets, canonical text, every refusal naming its layer and
 * reason), shapes bound to the data, gradients equal to finite differences
 * for every layer (strides, padding, pooling windows that overlap and that
 * leave a remainder, batch normalisation over images and over flat values,
 * dropout with its masks), each parameter layer announced once its gradient
 * is final, max pooling's ties, batch normalisation's running statistics and
 * evaluation mode, accumulation over micro-batches and a rank without
 * samples. (The same layers against PyTorch: test_torch_ref.sh.)
 */
#include "config.h"

#include "dml_nn.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

static int parse_bind(const char *text, int rank, uint64_t a, uint64_t b, uint64_t c,
                      uint32_t classes, dml_model_spec_t *s)
{
    uint64_t shape[3] = {a, b, c};
    dml_status_t st = dml_model_spec_parse(text, s);
    return st != DML_OK ? st : dml_model_spec_bind(s, rank, shape, classes);
}

static void test_spec_text(void)
{
    dml_model_spec_t s;
    char buf[DML_MODEL_SPEC_MAX];

    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("mlp:784-512-256-10", &s), DML_OK);
    CU_ASSERT_EQUAL(s.nlayers, 5); /* dense relu dense relu dense */
    CU_ASSERT_EQUAL(s.layer[0].kind, DML_LAYER_DENSE);
    CU_ASSERT_EQUAL(s.layer[1].kind, DML_LAYER_RELU);
    CU_ASSERT_EQUAL(s.layer[4].units, 10);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "mlp:784-512-256-10");
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("mlp:20-10:dropout=0.25", &s), DML_OK);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "mlp:20-10:dropout=0.25");

    /* spaces, case and aliases read as the canonical form */
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("Conv2D(32, 3), ReLU, MaxPool2D(2), flatten, "
                                               "Linear(64), relu, dense(10)",
                                               &s),
                          DML_OK);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10)");
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("conv2d(8,3x5,stride=2,padding=1x2),avgpool(2,"
                                               "stride=1),batchnorm(eps=0.001,momentum=0.2),"
                                               "dropout(0.1),flatten,dense(3)",
                                               &s),
                          DML_OK);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "conv2d(8,3x5,stride=2,padding=1x2),avgpool(2,stride=1),"
                                "batchnorm(eps=0.001,momentum=0.2),dropout(0.1),flatten,dense(3)");
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("conv2d(filters=4,kernel=3,padding=same),flatten,"
                                               "dense(units=2)",
                                               &s),
                          DML_OK);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "conv2d(4,3,padding=same),flatten,dense(2)");

    /* the book's three models */
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("cnn", &s), DML_OK);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "conv2d(32,3),relu,maxpool(2),flatten,dense(64),relu,dense(10)");
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("cnn-bn", &s), DML_OK);
    CU_ASSERT_EQUAL(s.layer[1].kind, DML_LAYER_BATCHNORM);
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("cnn-dropout", &s), DML_OK);
    CU_ASSERT_EQUAL(s.layer[3].kind, DML_LAYER_DROPOUT);
}

/* Refused, and the message says where and why. */
static void refused(const char *text, int rank, uint64_t a, uint64_t b, uint64_t c,
                    uint32_t classes, const char *want)
{
    dml_model_spec_t s;
    int st = parse_bind(text, rank, a, b, c, classes, &s);

    CU_ASSERT_NOT_EQUAL(st, DML_OK);
    if (strstr(dml_error_message(), want) == NULL) {
        fprintf(stderr, "%s: expected \"%s\" in \"%s\"\n", text, want, dml_error_message());
        CU_FAIL("refusal message");
    }
}

static void test_spec_refused(void)
{
    refused("cnn:1-2", 1, 4, 0, 0, 2, "layer 1: unknown layer \"cnn:1-2\"");
    refused("conv2d(32,3),relu,pool(2),flatten,dense(10)", 2, 28, 28, 0, 10,
            "layer 3: unknown layer \"pool\"");
    refused("mlp:784", 1, 784, 0, 0, 10, "at least an input and an output");
    refused("mlp:784-0-10", 1, 784, 0, 0, 10, "whole numbers from 1");
    refused("mlp:784-512-1", 1, 784, 0, 0, 1, "at least 2 classes");
    refused("mlp:4-2:dropout=1", 1, 4, 0, 0, 2, "dropout must be in [0, 1)");
    refused("mlp:4-2:drop=0.1", 1, 4, 0, 0, 2, "unknown option");
    refused("mlp:4-2x", 1, 4, 0, 0, 2, "unexpected");
    refused("mlp:784-10", 2, 28, 27, 0, 10,
            "samples have 756 features, the model's input layer has 784");
    refused("conv2d(0,3),flatten,dense(10)", 2, 28, 28, 0, 10,
            "layer 1 (conv2d(0,3)): filters must be");
    refused("conv2d(-4,3),flatten,dense(10)", 2, 28, 28, 0, 10, "filters must be");
    refused("conv2d(8,0),flatten,dense(10)", 2, 28, 28, 0, 10, "kernel must be");
    refused("conv2d(8),flatten,dense(10)", 2, 28, 28, 0, 10, "expected conv2d(FILTERS, KERNEL");
    refused("conv2d(99999999,3),flatten,dense(10)", 2, 28, 28, 0, 10, "filters must be");
    refused("conv2d(8,3,stride=0),flatten,dense(10)", 2, 28, 28, 0, 10, "stride must be");
    refused("conv2d(8,3,padding=same,stride=2),flatten,dense(10)", 2, 28, 28, 0, 10,
            "padding=same needs stride 1");
    refused("conv2d(8,3,bias=no),flatten,dense(10)", 2, 28, 28, 0, 10, "expected conv2d(");
    refused("conv2d(8,3),flatten,dense(10)", 1, 784, 0, 0, 10,
            "layer 1 (conv2d(8,3)): its input is flat (784 values)");
    refused("conv2d(8,30),flatten,dense(10)", 2, 28, 28, 0, 10,
            "layer 1 (conv2d(8,30)): its 30x30 kernel is larger than its 28x28 input");
    refused("conv2d(8,3),maxpool(27),flatten,dense(10)", 2, 28, 28, 0, 10,
            "layer 2 (maxpool(27)): its 27x27 window is larger than its 26x26 input");
    refused("conv2d(8,3),dense(10)", 2, 28, 28, 0, 10,
            "layer 2 (dense(10)): its input is 8x26x26 (channels x height x width); put flatten");
    refused("flatten,dense(64),maxpool(2),dense(10)", 2, 28, 28, 0, 10,
            "layer 3 (maxpool(2)): its input is flat");
    refused("flatten,dense(64),relu", 2, 28, 28, 0, 10, "the last layer is relu; it must be dense");
    refused("flatten,dense(5)", 2, 28, 28, 0, 10,
            "labels go up to 9 (10 classes), outside the "
            "output layer's 5 units");
    refused("flatten,dense(1048576),dense(1048576),dense(10)", 2, 28, 28, 0, 10,
            "layer 3 (dense(1048576)): 1099512676352 parameters");
    refused("dropout(1.5),flatten,dense(10)", 2, 28, 28, 0, 10, "dropout probability must be in");
    refused("batchnorm(eps=0),flatten,dense(10)", 2, 28, 28, 0, 10, "eps must be in (0, 1]");
    refused("relu(2),flatten,dense(10)", 2, 28, 28, 0, 10, "layer 1 (relu(2)): takes no arguments");
    refused("conv2d(8,3,,flatten,dense(10)", 2, 28, 28, 0, 10, "unbalanced parentheses");
    refused("conv2d(8,3),,dense(10)", 2, 28, 28, 0, 10, "layer 2 is empty");
    refused("", 2, 28, 28, 0, 10, "expected layers");
}

static void test_shapes(void)
{
    dml_model_spec_t s;
    dml_model_t *m;

    /* 28x28 -> conv 3: 32x26x26 -> pool 2: 32x13x13 -> 5408 -> 64 -> 10 */
    CU_ASSERT_EQUAL_FATAL(parse_bind("cnn", 2, 28, 28, 0, 10, &s), DML_OK);
    CU_ASSERT_EQUAL(s.layer[0].out[0], 32);
    CU_ASSERT_EQUAL(s.layer[0].out[1], 26);
    CU_ASSERT_EQUAL(s.layer[2].out[1], 13);
    CU_ASSERT_EQUAL(s.layer[3].out[0], 5408);
    CU_ASSERT_EQUAL(s.classes, 10);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&s, 1, 4, &m), DML_OK);
    /* conv 32*9 + 32, dense 5408*64 + 64, dense 64*10 + 10 */
    CU_ASSERT_EQUAL(dml_model_nparams(m), 320 + 346176 + 650);
    CU_ASSERT_EQUAL(dml_model_param_layers(m), 3);
    CU_ASSERT_EQUAL(dml_model_nbuffers(m), 0);
    CU_ASSERT_DOUBLE_EQUAL(dml_model_flops(m), 2.0 * (32 * 676 * 9 + 5408 * 64 + 64 * 10), 1);
    dml_model_free(m);
    CU_ASSERT_EQUAL_FATAL(parse_bind("cnn-bn", 2, 28, 28, 0, 10, &s), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&s, 1, 4, &m), DML_OK);
    CU_ASSERT_EQUAL(dml_model_nparams(m), 320 + 64 + 346176 + 650);
    CU_ASSERT_EQUAL(dml_model_nbuffers(m), 64);
    dml_model_free(m);
    /* strides, padding, same, rectangular, channels from rank-3 data */
    CU_ASSERT_EQUAL_FATAL(parse_bind("conv2d(4,3x5,stride=2,padding=1x2),conv2d(2,3,padding=same),"
                                     "avgpool(2,stride=1),flatten,dense(3)",
                                     3, 3, 9, 11, 3, &s),
                          DML_OK);
    CU_ASSERT_EQUAL(s.layer[0].in[0], 3);
    CU_ASSERT_EQUAL(s.layer[0].out[1], 5); /* (9 + 2 - 3) / 2 + 1 */
    CU_ASSERT_EQUAL(s.layer[0].out[2], 6); /* (11 + 4 - 5) / 2 + 1 */
    CU_ASSERT_EQUAL(s.layer[1].out[1], 5);
    CU_ASSERT_EQUAL(s.layer[2].out[2], 5);
    CU_ASSERT_EQUAL(s.layer[3].out[0], 2 * 4 * 5);
}

/* ---- gradients ------------------------------------------------------------------ */

typedef struct {
    int calls, order[DML_MODEL_MAX_LAYERS];
    size_t off[DML_MODEL_MAX_LAYERS], cnt[DML_MODEL_MAX_LAYERS];
} announced_t;

static void on_ready(void *arg, int layer, size_t offset, size_t count)
{
    announced_t *a = arg;
    a->order[a->calls] = layer;
    a->off[a->calls] = offset;
    a->cnt[a->calls] = count;
    a->calls++;
}

static int has(const dml_model_spec_t *s, dml_layer_kind_t k)
{
    for (int l = 0; l < s->nlayers; l++)
        if (s->layer[l].kind == k)
            return 1;
    return 0;
}

/* The mean loss of a batch as training sees it: batch statistics and the
 * same dropout masks where the model has them, else evaluation's pass. */
static double batch_loss(dml_model_t *m, const float *x, const int32_t *y, int n, uint64_t dseed)
{
    const dml_model_spec_t *s = dml_model_spec(m);
    double loss = 0;

    if (has(s, DML_LAYER_DROPOUT) || has(s, DML_LAYER_BATCHNORM)) {
        float *g = dml_model_grads(m), *keep = malloc(dml_model_nparams(m) * sizeof(float));
        memcpy(keep, g, dml_model_nparams(m) * sizeof(float));
        dml_model_train_step(m, x, y, n, 0.0f, dseed, &loss, NULL, NULL, NULL);
        memcpy(g, keep, dml_model_nparams(m) * sizeof(float));
        free(keep);
    } else {
        dml_model_eval(m, x, y, n, NULL, &loss, NULL);
    }
    return loss / n;
}

/* Backward's gradients against central differences of the loss, in double
 * where it counts: every parameter, and the announcements' order and ranges. */
static void gradient_check(const char *text, int rank, uint64_t a, uint64_t b, uint64_t c)
{
    enum { N = 5 };
    uint64_t shape[3] = {a, b, c};
    dml_model_spec_t spec;
    dml_model_t *m;
    float *x, *p, *ana;
    int32_t y[N];
    double loss;
    size_t np, i, bad = 0, isz;
    announced_t an;
    const uint64_t dseed = 12345;
    int k;

    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse(text, &spec), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_bind(&spec, rank, shape, 3), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&spec, 7, N, &m), DML_OK);
    isz = (size_t)spec.in[0] * spec.in[1] * spec.in[2];
    x = malloc(N * isz * sizeof(float));
    for (i = 0; i < N * isz; i++)
        x[i] = (float)sin(1.3 * (double)i + 0.4) * 1.5f;
    for (k = 0; k < N; k++)
        y[k] = k % spec.classes;
    np = dml_model_nparams(m);
    p = dml_model_params(m);
    /* Biases start at zero, which puts ReLUs on their kink; move them off. */
    for (i = 0; i < np; i++)
        p[i] += 0.05f * (float)cos(0.7 * (double)i);

    memset(&an, 0, sizeof(an));
    dml_model_zero_grads(m);
    CU_ASSERT_EQUAL_FATAL(
        dml_model_train_step(m, x, y, N, 1.0f / N, dseed, &loss, NULL, on_ready, &an), DML_OK);
    ana = malloc(np * sizeof(float));
    memcpy(ana, dml_model_grads(m), np * sizeof(float));

    /* Announced last layer first, each exactly its range, all covered. */
    CU_ASSERT_EQUAL(an.calls, dml_model_param_layers(m));
    for (k = 0; k < an.calls; k++) {
        size_t off, cnt;
        CU_ASSERT_EQUAL(an.order[k], dml_model_param_layers(m) - 1 - k);
        dml_model_layer_range(m, an.order[k], &off, &cnt);
        CU_ASSERT_EQUAL(an.off[k], off);
        CU_ASSERT_EQUAL(an.cnt[k], cnt);
    }
    CU_ASSERT_EQUAL(an.off[an.calls - 1], 0);

    for (i = 0; i < np; i++) {
        const float keep = p[i];
        double num = 0;
        /* A step of 1e-3 can cross a kink (a ReLU's zero, a pooling
         * window's maximum changing hands) in a large model; where it
         * disagrees, a step of 1e-4 must agree. */
        for (float h = 1e-3f; h > 5e-5f; h /= 10) {
            double lp, lm;
            p[i] = keep + h;
            lp = batch_loss(m, x, y, N, dseed);
            p[i] = keep - h;
            lm = batch_loss(m, x, y, N, dseed);
            p[i] = keep;
            num = (lp - lm) / (2.0 * h);
            if (fabs(num - ana[i]) <= 2e-3 + 3e-2 * fabs(num))
                break;
        }
        if (fabs(num - ana[i]) > 2e-3 + 3e-2 * fabs(num)) {
            if (bad++ < 5)
                fprintf(stderr, "%s: parameter %zu: backward %g, finite difference %g\n", text, i,
                        (double)ana[i], num);
        }
    }
    if (bad)
        fprintf(stderr, "%s: %zu of %zu parameters differ\n", text, bad, np);
    CU_ASSERT_EQUAL(bad, 0);
    free(ana);
    free(x);
    dml_model_free(m);
}

static void test_grad_mlp(void)
{
    gradient_check("mlp:7-5-4-3", 1, 7, 0, 0);
    gradient_check("mlp:7-6-5-3:dropout=0.3", 1, 7, 0, 0);
}

static void test_grad_conv(void)
{
    /* a kernel tap beyond the input on every side, rectangular kernels and
     * strides that leave a remainder, two convolutions (the input gradient of
     * the second), 1x1 */
    gradient_check("conv2d(3,3),relu,flatten,dense(3)", 2, 6, 5, 0);
    gradient_check("conv2d(2,3x2,stride=2x1,padding=1),relu,conv2d(3,2,stride=2,padding=1x0),"
                   "flatten,dense(3)",
                   3, 2, 7, 6);
    gradient_check("conv2d(4,3,padding=same),relu,conv2d(2,1),flatten,dense(3)", 3, 2, 5, 5);
}

static void test_grad_pool(void)
{
    gradient_check("conv2d(2,2),maxpool(2),flatten,dense(3)", 2, 7, 7, 0);          /* remainder */
    gradient_check("conv2d(2,2),maxpool(3,stride=2),flatten,dense(3)", 2, 8, 8, 0); /* overlap */
    gradient_check("conv2d(2,2),avgpool(2),flatten,dense(3)", 2, 7, 6, 0);
    gradient_check("conv2d(2,2),avgpool(3x2,stride=1x2),flatten,dense(3)", 2, 6, 7, 0);
}

static void test_grad_bn_dropout(void)
{
    gradient_check("conv2d(3,3),batchnorm,relu,flatten,dense(3)", 2, 5, 5, 0);
    gradient_check("flatten,dense(6),batchnorm,relu,dense(3)", 2, 3, 3, 0); /* 1-D, per feature */
    gradient_check("batchnorm,conv2d(2,2),flatten,dense(3)", 3, 2, 4, 4);   /* first layer */
    gradient_check("conv2d(3,2),relu,dropout(0.4),maxpool(2),flatten,dense(3)", 2, 6, 6, 0);
    gradient_check("cnn-bn", 2, 10, 10, 0);
}

/* Max pooling: of equal values the first in the window (row-major) wins, as
 * in PyTorch, and gets the whole gradient. Channel 0 has the ties and alone
 * reaches the pooling (a 1x1 convolution of weights 1 and 0); channel 1's
 * weight gradient then sums channel 1 at the chosen positions. */
static void test_maxpool_ties(void)
{
    dml_model_spec_t s;
    dml_model_t *m;
    float x[32] = {1, 1, 0, 0, 1, 1, 0, 2, 3, 0, 5, 5, 0, 3, 5, 5};
    int32_t y = 0;
    double loss, dpool[4], want = 0;
    float probs[2];
    const float *p, *g;
    /* the first maximum of each window: (0,0), (1,3), (2,0), (2,2) */
    const int chosen[4] = {0, 7, 8, 10};
    int k;

    for (k = 0; k < 16; k++)
        x[16 + k] = (float)(k + 1);
    CU_ASSERT_EQUAL_FATAL(parse_bind("conv2d(1,1),maxpool(2),flatten,dense(2)", 3, 2, 4, 4, 2, &s),
                          DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&s, 1, 1, &m), DML_OK);
    dml_model_params(m)[0] = 1.0f; /* channel 0's weight */
    dml_model_params(m)[1] = 0.0f; /* channel 1's */
    dml_model_params(m)[2] = 0.0f; /* bias */
    dml_model_zero_grads(m);
    CU_ASSERT_EQUAL_FATAL(dml_model_train_step(m, x, &y, 1, 1.0f, 0, &loss, NULL, NULL, NULL),
                          DML_OK);
    p = dml_model_params(m);
    g = dml_model_grads(m);
    dml_model_eval(m, x, NULL, 1, probs, NULL, NULL);
    /* dense weights (4 x 2) from p[3]: the pooled values' gradients */
    for (k = 0; k < 4; k++) {
        dpool[k] = (probs[0] - 1.0) * p[3 + 2 * k] + probs[1] * p[3 + 2 * k + 1];
        want += dpool[k] * x[16 + chosen[k]];
    }
    CU_ASSERT_DOUBLE_EQUAL(g[1], want, 1e-5);
    if (fabs(g[1] - want) > 1e-5)
        fprintf(stderr, "ties: channel 1's weight gradient %g, first maxima give %g\n",
                (double)g[1], want);
    dml_model_free(m);
}

/* Batch normalisation: training normalises with the batch's statistics and
 * moves the running ones (momentum 0.1, unbiased variance); evaluation uses
 * the running ones. */
static void test_batchnorm_statistics(void)
{
    dml_model_spec_t s;
    dml_model_t *m;
    float x[4 * 2] = {1, 10, 2, 20, 3, 30, 6, 60}; /* 4 samples of 2 features */
    int32_t y[4] = {0, 1, 0, 1};
    double loss;
    float probs_a[8], probs_b[8];

    CU_ASSERT_EQUAL_FATAL(parse_bind("batchnorm,dense(2)", 1, 2, 0, 0, 2, &s), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&s, 1, 4, &m), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_train_step(m, x, y, 4, 0.25f, 0, &loss, NULL, NULL, NULL),
                          DML_OK);
    {
        const float *b = dml_model_buffers(m);
        /* feature 0: mean 3, unbiased variance (4+1+0+9)/3 */
        CU_ASSERT_DOUBLE_EQUAL(b[0], 0.1 * 3, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(b[1], 0.1 * 30, 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(b[2], 0.9 + 0.1 * 14.0 / 3, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(b[3], 0.9 + 0.1 * 1400.0 / 3, 1e-4);
    }
    /* evaluation: a sample's output does not depend on the batch */
    CU_ASSERT_EQUAL(dml_model_eval(m, x, NULL, 4, probs_a, NULL, NULL), DML_OK);
    CU_ASSERT_EQUAL(dml_model_eval(m, x + 2, NULL, 1, probs_b, NULL, NULL), DML_OK);
    CU_ASSERT_DOUBLE_EQUAL(probs_a[2], probs_b[0], 1e-6);
    dml_model_free(m);
}

/* Summing over micro-batches and ranks: two halves give the whole batch's
 * gradients (the data-parallel step relies on it); a rank with no samples
 * adds nothing; batch normalisation's statistics come from the reduction
 * (here: this process's own sums doubled, as two identical ranks would). */
static dml_status_t double_it(void *arg, double *buf, int n)
{
    int *calls = arg;
    (*calls)++;
    for (int i = 0; i < n; i++)
        buf[i] *= 2;
    return DML_OK;
}

static void test_accumulation(void)
{
    dml_model_spec_t s;
    dml_model_t *m;
    float x[8 * 3], *whole;
    int32_t y[8] = {0, 1, 1, 0, 1, 0, 0, 1}, bad[2] = {0, 2};
    size_t i, np;
    double loss;
    int k, calls = 0;

    CU_ASSERT_EQUAL_FATAL(parse_bind("mlp:3-4-2", 1, 3, 0, 0, 2, &s), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&s, 1, 8, &m), DML_OK);
    for (k = 0; k < 24; k++)
        x[k] = (float)cos(k);
    np = dml_model_nparams(m);
    dml_model_zero_grads(m);
    dml_model_train_step(m, x, y, 8, 1.0f / 8, 0, &loss, NULL, NULL, NULL);
    whole = malloc(np * sizeof(float));
    memcpy(whole, dml_model_grads(m), np * sizeof(float));
    dml_model_zero_grads(m);
    dml_model_train_step(m, x, y, 4, 1.0f / 8, 0, &loss, NULL, NULL, NULL);
    dml_model_train_step(m, x + 12, y + 4, 4, 1.0f / 8, 0, &loss, NULL, NULL, NULL);
    CU_ASSERT_EQUAL(dml_model_train_step(m, x, y, 0, 1.0f / 8, 0, &loss, NULL, NULL, NULL), DML_OK);
    CU_ASSERT_EQUAL(loss, 0);
    for (i = 0; i < np; i++)
        CU_ASSERT_DOUBLE_EQUAL(dml_model_grads(m)[i], whole[i], 1e-5);
    free(whole);

    CU_ASSERT_EQUAL(dml_model_train_step(m, x, bad, 2, 1, 0, &loss, NULL, NULL, NULL),
                    DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "label 2 of sample 1 is outside the output "
                                                       "layer's 2 classes"));
    CU_ASSERT_EQUAL(dml_model_train_step(m, x, y, 9, 1, 0, &loss, NULL, NULL, NULL),
                    DML_ERR_INVALID_ARG);
    /* Overflowed weights make the loss NaN, not the floor's finite value. */
    dml_model_params(m)[0] = INFINITY;
    dml_model_params(m)[1] = -INFINITY;
    CU_ASSERT_EQUAL(dml_model_eval(m, x, y, 8, NULL, &loss, NULL), DML_OK);
    CU_ASSERT(isnan(loss));
    dml_model_free(m);

    /* batch normalisation: the statistics of "two ranks" with the same
     * samples are this one's; forward and backward each reduce once per
     * layer, also on a rank without samples */
    CU_ASSERT_EQUAL_FATAL(parse_bind("dense(4),batchnorm,relu,dense(2)", 1, 3, 0, 0, 2, &s),
                          DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&s, 1, 8, &m), DML_OK);
    dml_model_zero_grads(m);
    dml_model_train_step(m, x, y, 8, 1.0f / 8, 0, &loss, NULL, NULL, NULL);
    whole = malloc(dml_model_nparams(m) * sizeof(float));
    memcpy(whole, dml_model_grads(m), dml_model_nparams(m) * sizeof(float));
    dml_model_set_reduce(m, double_it, &calls);
    dml_model_zero_grads(m);
    dml_model_train_step(m, x, y, 8, 1.0f / 16, 0, &loss, NULL, NULL, NULL);
    CU_ASSERT_EQUAL(calls, 2);
    for (i = 0; i < dml_model_nparams(m); i++)
        CU_ASSERT_DOUBLE_EQUAL(2 * dml_model_grads(m)[i], whole[i], 1e-5);
    CU_ASSERT_EQUAL(dml_model_train_step(m, NULL, NULL, 0, 1.0f / 16, 0, &loss, NULL, NULL, NULL),
                    DML_OK);
    CU_ASSERT_EQUAL(calls, 4);
    free(whole);
    dml_model_free(m);
}

static void test_same_seed_same_model(void)
{
    dml_model_spec_t s;
    dml_model_t *a, *b, *c;

    CU_ASSERT_EQUAL_FATAL(parse_bind("conv2d(4,3),flatten,dense(3)", 2, 5, 5, 0, 3, &s), DML_OK);
    dml_model_create(&s, 42, 1, &a);
    dml_model_create(&s, 42, 1, &b);
    dml_model_create(&s, 43, 1, &c);
    CU_ASSERT_EQUAL(memcmp(dml_model_params(a), dml_model_params(b), dml_model_nparams(a) * 4), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(dml_model_params(a), dml_model_params(c), dml_model_nparams(a) * 4),
                        0);
    /* He initialisation: the convolution's 36 weights have std near sqrt(2/9) */
    {
        double sum = 0;
        for (int i = 0; i < 36; i++)
            sum += (double)dml_model_params(a)[i] * dml_model_params(a)[i];
        CU_ASSERT(sqrt(sum / 36) > 0.3 && sqrt(sum / 36) < 0.65);
    }
    dml_model_free(a);
    dml_model_free(b);
    dml_model_free(c);
}

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("network", NULL, NULL);
    CU_add_test(s, "spec: text, presets, canonical form", test_spec_text);
    CU_add_test(s, "spec: refusals name the layer and the reason", test_spec_refused);
    CU_add_test(s, "shapes bound to the data", test_shapes);
    CU_add_test(s, "gradients: mlp, dropout", test_grad_mlp);
    CU_add_test(s, "gradients: convolutions", test_grad_conv);
    CU_add_test(s, "gradients: pooling", test_grad_pool);
    CU_add_test(s, "gradients: batch normalisation, dropout", test_grad_bn_dropout);
    CU_add_test(s, "max pooling ties", test_maxpool_ties);
    CU_add_test(s, "batch normalisation statistics", test_batchnorm_statistics);
    CU_add_test(s, "accumulation, empty ranks, reductions", test_accumulation);
    CU_add_test(s, "seeded He initialisation", test_same_seed_same_model);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
