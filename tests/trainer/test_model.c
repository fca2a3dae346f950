/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_model.c: the trainer's optimisers as training relies on them:
 * optimiser steps match hand-computed values (and PyTorch's rules),
 * streamed and by range alike, schedules and clipping behave, and a network
 * learns a small problem with them. (The network's own checks: tests/nn.)
 */
#include "config.h"

#include "dml_train.h"
#include "train_private.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
void openblas_set_num_threads(int);
#endif

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
    CU_ASSERT_EQUAL(dml_opt_steps(o), 1);
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
    CU_ASSERT_EQUAL(dml_opt_steps(r), 3);
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

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;

#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(1);
#endif
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("optimisers", NULL, NULL);
    CU_add_test(s, "SGD momentum and Nesterov", test_sgd);
    CU_add_test(s, "SGD momentum, streamed and by range", test_sgd_large);
    CU_add_test(s, "AdamW", test_adamw);
    CU_add_test(s, "schedules and clipping", test_schedules_and_clipping);
    CU_add_test(s, "learns two spirals", test_learns);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
