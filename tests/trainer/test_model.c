/*
 * test_model.c: the trainer's compute core as training relies on it:
 * gradients equal finite differences for every layer and the loss (with and
 * without dropout), each layer's gradient is announced once it is final,
 * optimiser steps match hand-computed values, schedules and clipping behave,
 * and a small problem is learnt.
 */
#include "config.h"

#include "dml_train.h"
#include "train_private.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

static void test_spec(void)
{
    dml_model_spec_t s;
    char buf[128];

    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("mlp:784-512-256-10", &s), DML_OK);
    CU_ASSERT_EQUAL(s.nlayers, 3);
    CU_ASSERT_EQUAL(s.dims[0], 784);
    CU_ASSERT_EQUAL(s.dims[3], 10);
    CU_ASSERT_EQUAL(s.dropout, 0);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "mlp:784-512-256-10");
    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse("mlp:20-10:dropout=0.25", &s), DML_OK);
    CU_ASSERT_DOUBLE_EQUAL(s.dropout, 0.25, 1e-9);
    dml_model_spec_format(&s, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "mlp:20-10:dropout=0.25");

    CU_ASSERT_EQUAL(dml_model_spec_parse("cnn:1-2", &s), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "expected mlp:IN-H1-...-OUT"));
    CU_ASSERT_EQUAL(dml_model_spec_parse("mlp:784", &s), DML_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(dml_model_spec_parse("mlp:784-0-10", &s), DML_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(dml_model_spec_parse("mlp:784-512-1", &s), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "at least 2 classes"));
    CU_ASSERT_EQUAL(dml_model_spec_parse("mlp:4-2:dropout=1", &s), DML_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(dml_model_spec_parse("mlp:4-2:drop=0.1", &s), DML_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(dml_model_spec_parse("mlp:4-2x", &s), DML_ERR_INVALID_ARG);
}

/* The mean loss of a batch, as training sees it (same dropout masks). */
static double batch_loss(dml_model_t *m, const float *x, const int32_t *y, int n, uint64_t dseed)
{
    double loss = 0;
    if (dml_model_spec(m)->dropout > 0) {
        dml_model_train_step(m, x, y, n, 0.0f, dseed, &loss, NULL, NULL, NULL);
    } else {
        dml_model_eval(m, x, y, n, NULL, &loss, NULL);
    }
    return loss / n;
}

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

static void gradient_check(const char *spec_text)
{
    enum { N = 6 };
    dml_model_spec_t spec;
    dml_model_t *m;
    float x[N * 7], *p, *g, *ana;
    int32_t y[N];
    double loss;
    size_t np, i, bad = 0;
    announced_t a;
    const uint64_t dseed = 12345;
    int k;

    CU_ASSERT_EQUAL_FATAL(dml_model_spec_parse(spec_text, &spec), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&spec, 7, N, &m), DML_OK);
    for (k = 0; k < N * 7; k++)
        x[k] = (float)sin(1.3 * k) * 1.5f;
    for (k = 0; k < N; k++)
        y[k] = k % spec.dims[spec.nlayers];
    np = dml_model_nparams(m);
    p = dml_model_params(m);
    g = dml_model_grads(m);
    /* Biases start at zero, which puts ReLUs on their kink; move them off. */
    for (i = 0; i < np; i++)
        p[i] += 0.05f * (float)cos(0.7 * (double)i);

    memset(&a, 0, sizeof(a));
    dml_model_zero_grads(m);
    CU_ASSERT_EQUAL_FATAL(dml_model_train_step(m, x, y, N, 1.0f / N, dseed, &loss, NULL, on_ready, &a),
                          DML_OK);
    ana = malloc(np * sizeof(float));
    memcpy(ana, g, np * sizeof(float));

    /* Announced last layer first, each exactly its range, all covered. */
    CU_ASSERT_EQUAL(a.calls, spec.nlayers);
    for (k = 0; k < a.calls; k++) {
        size_t off, cnt;
        CU_ASSERT_EQUAL(a.order[k], spec.nlayers - 1 - k);
        dml_model_layer_range(m, a.order[k], &off, &cnt);
        CU_ASSERT_EQUAL(a.off[k], off);
        CU_ASSERT_EQUAL(a.cnt[k], cnt);
    }
    CU_ASSERT_EQUAL(a.off[a.calls - 1], 0);

    for (i = 0; i < np; i++) {
        const float h = 1e-3f, keep = p[i];
        double lp, lm, num;
        p[i] = keep + h;
        lp = batch_loss(m, x, y, N, dseed);
        p[i] = keep - h;
        lm = batch_loss(m, x, y, N, dseed);
        p[i] = keep;
        num = (lp - lm) / (2.0 * h);
        if (fabs(num - ana[i]) > 2e-3 + 3e-2 * fabs(num)) {
            if (bad++ < 5)
                fprintf(stderr, "%s: parameter %zu: backward %g, finite difference %g\n", spec_text,
                        i, (double)ana[i], num);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(ana);
    dml_model_free(m);
}

static void test_gradients(void) { gradient_check("mlp:7-5-4-3"); }
static void test_gradients_dropout(void) { gradient_check("mlp:7-6-5-3:dropout=0.3"); }

/* Gradients add up: two half batches equal one whole (accumulation). */
static void test_accumulation_and_labels(void)
{
    dml_model_spec_t spec;
    dml_model_t *m;
    float x[8 * 3], *whole;
    int32_t y[8] = {0, 1, 1, 0, 1, 0, 0, 1}, bad[2] = {0, 2};
    size_t i, np;
    double loss;
    int k;

    dml_model_spec_parse("mlp:3-4-2", &spec);
    CU_ASSERT_EQUAL_FATAL(dml_model_create(&spec, 1, 8, &m), DML_OK);
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
}

static void test_same_seed_same_model(void)
{
    dml_model_spec_t spec;
    dml_model_t *a, *b, *c;

    dml_model_spec_parse("mlp:10-8-3", &spec);
    dml_model_create(&spec, 42, 1, &a);
    dml_model_create(&spec, 42, 1, &b);
    dml_model_create(&spec, 43, 1, &c);
    CU_ASSERT_EQUAL(memcmp(dml_model_params(a), dml_model_params(b), dml_model_nparams(a) * 4), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(dml_model_params(a), dml_model_params(c), dml_model_nparams(a) * 4), 0);
    /* He initialisation: the first layer's weights have std near sqrt(2/10) */
    {
        double s = 0;
        int i;
        for (i = 0; i < 80; i++)
            s += (double)dml_model_params(a)[i] * dml_model_params(a)[i];
        CU_ASSERT(sqrt(s / 80) > 0.3 && sqrt(s / 80) < 0.6);
    }
    dml_model_free(a);
    dml_model_free(b);
    dml_model_free(c);
}

static void test_sgd(void)
{
    dml_opt_config_t c;
    dml_opt_t *o;
    float p[2] = {1, -2}, g[2] = {0.5f, 0.25f};

    dml_opt_config_init(&c, DML_OPT_SGD);
    c.momentum = 0.9f;
    c.weight_decay = 0.01f;
    CU_ASSERT_EQUAL_FATAL(dml_opt_create(&c, 2, &o), DML_OK);
    dml_opt_step(o, p, g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p[0], 0.949, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(p[1], -2.023, 1e-6);
    dml_opt_step(o, p, g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p[0], 0.852151, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(p[1], -2.066677, 1e-6);
    dml_opt_free(o);

    c.nesterov = 1;
    p[0] = 1;
    p[1] = -2;
    dml_opt_create(&c, 2, &o);
    dml_opt_step(o, p, g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p[0], 0.9031, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(p[1], -2.0437, 1e-6);
    CU_ASSERT_EQUAL(*dml_opt_steps(o), 1);
    CU_ASSERT_EQUAL(dml_opt_nbufs(o), 1);
    dml_opt_free(o);

    c.momentum = 1.0f;
    CU_ASSERT_EQUAL(dml_opt_create(&c, 2, &o), DML_ERR_INVALID_ARG);
}

/* A model large enough for the streaming update (where ranks share the
 * parameters, dml_opt_step writes big arrays with non-temporal stores),
 * with and without it: the same bits as the update
 * written out here, element by element, also from an address off a cache
 * line; and a range updates that range only, as the whole step would. */
static void sgd_large(int stream)
{
    enum { N = 100003 };
    dml_opt_config_t c;
    dml_opt_t *o, *r;
    float *pbuf = malloc((N + 1) * sizeof(float)), *p = pbuf + 1, *g = malloc(N * sizeof(float));
    float *want = malloc(N * sizeof(float)), *v = malloc(N * sizeof(float));
    float *q = malloc(N * sizeof(float));
    const float lr = 0.05f, m = 0.9f, wd = 0.001f;
    int i, step;

    CU_ASSERT_FATAL(pbuf && g && want && v && q);
    for (i = 0; i < N; i++) {
        p[i] = want[i] = q[i] = (float)sin(0.001 * i);
        g[i] = (float)cos(0.003 * i) * 0.1f;
    }
    dml_opt_config_init(&c, DML_OPT_SGD);
    c.momentum = m;
    c.weight_decay = wd;
    CU_ASSERT_EQUAL_FATAL(dml_opt_create(&c, N, &o), DML_OK);
    CU_ASSERT_EQUAL_FATAL(dml_opt_create(&c, N, &r), DML_OK);
    dml__opt_stream_stores(o, stream);
    dml__opt_stream_stores(r, stream);
    for (step = 1; step <= 3; step++) {
        dml_opt_step(o, p, g, lr);
        for (i = 0; i < N; i++) {
            volatile float d = g[i] + wd * want[i], t;
            t = m * v[i];
            v[i] = step == 1 ? d : t + d;
            t = lr * v[i];
            want[i] -= t;
        }
        /* two ranges that make the whole, the second one counted as no step */
        dml_opt_step_range(r, q, g, lr, 0, 70001);
        dml_opt_apply(r, q, g + 70001, lr, 70001, N - 70001);
    }
    CU_ASSERT_EQUAL(memcmp(p, want, N * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(q, want, N * sizeof(float)), 0);
    CU_ASSERT_EQUAL(*dml_opt_steps(r), 3);
    dml_opt_free(o);
    dml_opt_free(r);
    free(pbuf);
    free(g);
    free(want);
    free(v);
    free(q);
}

static void test_sgd_large(void)
{
    sgd_large(0);
    sgd_large(1);
}

static void test_adamw(void)
{
    dml_opt_config_t c;
    dml_opt_t *o;
    float p[1] = {1}, g[1] = {0.5f};

    dml_opt_config_init(&c, DML_OPT_ADAMW);
    c.weight_decay = 0.01f;
    CU_ASSERT_EQUAL_FATAL(dml_opt_create(&c, 1, &o), DML_OK);
    /* p = 1*(1 - 0.1*0.01) - (0.1/0.1) * 0.05 / (sqrt(0.00025)/sqrt(0.001) + 1e-8) */
    dml_opt_step(o, p, g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p[0], 0.899, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(dml_opt_buf(o, 0)[0], 0.05, 1e-7);
    /* (1 - beta2) in float is 0.00099999..., as in any float32 Adam */
    CU_ASSERT_DOUBLE_EQUAL(dml_opt_buf(o, 1)[0], 0.00025, 1e-8);
    CU_ASSERT_EQUAL(dml_opt_nbufs(o), 2);
    dml_opt_free(o);
}

static void test_schedules_and_clipping(void)
{
    dml_lr_schedule_t s = {DML_LR_CONSTANT, 0.1f, 0, 0, 0, 0};
    float g[2] = {3, 4};

    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 1000), 0.1, 1e-7);
    s.warmup = 10;
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 0), 0.01, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 4), 0.05, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 10), 0.1, 1e-7);
    s.kind = DML_LR_STEP;
    s.step_every = 100;
    s.gamma = 0.5f;
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 109), 0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 110), 0.05, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 310), 0.0125, 1e-7);
    s.kind = DML_LR_COSINE;
    s.total = 100;
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 10), 0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 60), 0.05, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 110), 0.0, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dml_lr_at(&s, 500), 0.0, 1e-7);

    CU_ASSERT_DOUBLE_EQUAL(dml_clip_grad_norm(g, 2, 10), 5.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(g[0], 3, 0);
    CU_ASSERT_DOUBLE_EQUAL(dml_clip_grad_norm(g, 2, 1), 5.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(g[0], 0.6, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(g[1], 0.8, 1e-5);
}

/* Two interleaved spirals are not linearly separable: a hidden layer must
 * learn them. */
static void test_learns(void)
{
    enum { N = 400, B = 50 };
    static float x[N * 2];
    static int32_t y[N];
    dml_model_spec_t spec;
    dml_model_t *m;
    dml_opt_config_t c;
    dml_opt_t *o;
    double loss;
    int i, e, correct, total = 0;

    for (i = 0; i < N; i++) {
        double t = 0.25 + 3.0 * (i / 2) / (N / 2), a = t * 2.5 + (i % 2) * M_PI;
        x[2 * i] = (float)(t * cos(a));
        x[2 * i + 1] = (float)(t * sin(a));
        y[i] = i % 2;
    }
    dml_model_spec_parse("mlp:2-64-64-2", &spec);
    dml_model_create(&spec, 3, B, &m);
    dml_opt_config_init(&c, DML_OPT_ADAMW);
    c.weight_decay = 0;
    dml_opt_create(&c, dml_model_nparams(m), &o);
    for (e = 0; e < 400; e++) {
        for (i = 0; i < N; i += B) {
            dml_model_zero_grads(m);
            dml_model_train_step(m, x + 2 * i, y + i, B, 1.0f / B, 0, &loss, NULL, NULL, NULL);
            dml_opt_step(o, dml_model_params(m), dml_model_grads(m), 0.01f);
        }
    }
    for (i = 0; i < N; i += B) {
        dml_model_eval(m, x + 2 * i, y + i, B, NULL, &loss, &correct);
        total += correct;
    }
    fprintf(stderr, "spirals: %d of %d right after training\n", total, N);
    CU_ASSERT(total >= 0.95 * N);
    dml_opt_free(o);
    dml_model_free(m);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("trainer compute core", NULL, NULL);
    CU_add_test(s, "model spec", test_spec);
    CU_add_test(s, "gradients = finite differences", test_gradients);
    CU_add_test(s, "gradients with dropout", test_gradients_dropout);
    CU_add_test(s, "accumulation and label checks", test_accumulation_and_labels);
    CU_add_test(s, "seeded He initialisation", test_same_seed_same_model);
    CU_add_test(s, "SGD momentum and Nesterov", test_sgd);
    CU_add_test(s, "SGD momentum, streamed and by range", test_sgd_large);
    CU_add_test(s, "AdamW", test_adamw);
    CU_add_test(s, "schedules and clipping", test_schedules_and_clipping);
    CU_add_test(s, "learns two spirals", test_learns);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
