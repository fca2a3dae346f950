/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_gpu_layers.c: the GPU path of the network (dml_model_set_device)
 * against the CPU path on the same weights and inputs: the training step's
 * loss, correct count and every gradient, each parameter layer announced in
 * the same order, again after the host's parameters changed (the GPU takes
 * them in for each batch), and evaluation's probabilities; fp32 held to a
 * relative 1e-4 (the order of the products' additions differs), dropout's
 * masks the same bits. The refusals need no GPU and run everywhere: a
 * network with a layer the GPU path does not run is refused naming it, and
 * a failed move leaves the model computing on the CPU.
 *
 * --need-gpu (test_gpu.sh) exits 77, skipped, where no GPU is seen.
 */
#include "config.h"

#include "dml_nn.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_gpus;
static dml_device_t g_gpu;

static dml_model_t *make(const char *text, uint64_t a, uint64_t b, uint64_t c, int rank,
                         int max_batch)
{
    uint64_t shape[3] = {a, b, c};
    dml_model_spec_t s;
    dml_model_t *m = NULL;

    if (dml_model_spec_parse(text, &s) != DML_OK ||
        dml_model_spec_bind(&s, rank, shape, 5) != DML_OK ||
        dml_model_create(&s, 11, max_batch, &m) != DML_OK)
        printf("\n  %s: %s\n", text, dml_error_message());
    return m;
}

static void test_refusals(void)
{
    dml_device_t fake;
    dml_model_t *m = make("conv2d(4,3),relu,maxpool(2),flatten,dense(5)", 1, 8, 8, 3, 4);
    float x[4 * 64] = {0};
    int32_t y[4] = {0, 1, 2, 3};
    double loss;
    int ok;

    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    /* Refused before CUDA is asked anything: the same here as on a GPU. */
    memset(&fake, 0, sizeof(fake));
    fake.kind = DML_DEVICE_CUDA;
    CU_ASSERT_EQUAL(dml_model_set_device(m, &fake), DML_ERR_UNSUPPORTED);
    printf("\n  %s\n", dml_error_message());
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "layer 1, conv2d(4,3)"));
    CU_ASSERT_EQUAL(dml_model_device(m)->kind, DML_DEVICE_CPU);
    dml_model_free(m);

    m = make("mlp:6-8-5", 6, 0, 0, 1, 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    if (g_gpus == 0) {
        /* No GPU: the move fails with the reason, and the model still
         * trains on the CPU. */
        CU_ASSERT_NOT_EQUAL(dml_model_set_device(m, &fake), DML_OK);
        printf("  no GPU: %s\n", dml_error_message());
        CU_ASSERT_EQUAL(dml_model_device(m)->kind, DML_DEVICE_CPU);
        CU_ASSERT_EQUAL(dml_model_train_step(m, x, y, 4, 0.25f, 1, &loss, &ok, NULL, NULL), DML_OK);
        CU_ASSERT(isfinite(loss));
    }
    CU_ASSERT_EQUAL(dml_model_set_device(m, NULL), DML_OK);
    CU_ASSERT_STRING_EQUAL(dml_model_device(m)->name, "cpu");
    dml_model_free(m);
}

typedef struct {
    int order[DML_MODEL_MAX_LAYERS];
    int n;
} ready_t;

static void on_ready(void *arg, int layer, size_t offset, size_t count)
{
    ready_t *r = arg;
    (void)offset;
    (void)count;
    if (r->n < DML_MODEL_MAX_LAYERS)
        r->order[r->n++] = layer;
}

/* max |a - b| / max(max |a|, tiny), over n values */
static double reldiff(const float *a, const float *b, size_t n)
{
    double d = 0, s = 1e-30;
    size_t k;

    for (k = 0; k < n; k++) {
        d = fmax(d, fabs((double)a[k] - (double)b[k]));
        s = fmax(s, fabs((double)a[k]));
    }
    return d / s;
}

static void compare(const char *text, uint64_t a, uint64_t b, uint64_t c, int rank, int n)
{
    const int max_batch = 64;
    dml_model_t *cpu = make(text, a, b, c, rank, max_batch),
                *gpu = make(text, a, b, c, rank, max_batch);
    size_t np, in = (size_t)(a * (b ? b : 1) * (c ? c : 1)), k;
    float *x, *pc, *pg;
    int32_t y[64];
    double lc, lg, worst = 0;
    int cc, cg, step, i;
    ready_t rc = {{0}, 0}, rg = {{0}, 0};

    CU_ASSERT_PTR_NOT_NULL_FATAL(cpu);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gpu);
    CU_ASSERT_EQUAL_FATAL(dml_model_set_device(gpu, &g_gpu), DML_OK);
    np = dml_model_nparams(cpu);
    x = malloc((size_t)max_batch * in * sizeof(float));
    pc = malloc((size_t)max_batch * 5 * sizeof(float));
    pg = malloc((size_t)max_batch * 5 * sizeof(float));
    for (k = 0; k < (size_t)max_batch * in; k++)
        x[k] = (float)sin(0.37 * (double)k) * 1.5f;
    for (i = 0; i < max_batch; i++)
        y[i] = (int32_t)((i * 7) % 5);
    for (step = 0; step < 3; step++) {
        dml_model_zero_grads(cpu);
        dml_model_zero_grads(gpu);
        rc.n = rg.n = 0;
        CU_ASSERT_EQUAL_FATAL(
            dml_model_train_step(cpu, x, y, n, 1.0f / n, 100 + step, &lc, &cc, on_ready, &rc),
            DML_OK);
        CU_ASSERT_EQUAL_FATAL(
            dml_model_train_step(gpu, x, y, n, 1.0f / n, 100 + step, &lg, &cg, on_ready, &rg),
            DML_OK);
        CU_ASSERT(fabs(lc - lg) <= 1e-5 * fabs(lc));
        CU_ASSERT_EQUAL(cc, cg);
        CU_ASSERT_EQUAL(rc.n, rg.n);
        CU_ASSERT(memcmp(rc.order, rg.order, sizeof(int) * (size_t)rc.n) == 0);
        worst = fmax(worst, reldiff(dml_model_grads(cpu), dml_model_grads(gpu), np));
        /* The host's parameters change between batches (the optimiser's
         * step): the GPU must compute with the new ones. */
        for (k = 0; k < np; k++) {
            dml_model_params(cpu)[k] -= 0.1f * dml_model_grads(cpu)[k];
            dml_model_params(gpu)[k] = dml_model_params(cpu)[k];
        }
    }
    CU_ASSERT(worst <= 1e-4);
    CU_ASSERT_EQUAL(dml_model_eval(cpu, x, y, n, pc, &lc, &cc), DML_OK);
    CU_ASSERT_EQUAL(dml_model_eval(gpu, x, y, n, pg, &lg, &cg), DML_OK);
    CU_ASSERT(reldiff(pc, pg, (size_t)n * 5) <= 1e-4);
    CU_ASSERT(fabs(lc - lg) <= 1e-5 * fabs(lc));
    printf("\n  %s, batch %d: gradients %.2e, probabilities %.2e (relative), loss %.9g vs %.9g",
           text, n, worst, reldiff(pc, pg, (size_t)n * 5), lc, lg);
    free(x);
    free(pc);
    free(pg);
    dml_model_free(cpu);
    dml_model_free(gpu);
}

static void test_against_cpu(void)
{
    compare("mlp:20-32-16-5", 20, 0, 0, 1, 37);
    compare("mlp:20-32-16-5", 20, 0, 0, 1, 64);
    compare("mlp:20-64-5:dropout=0.3", 20, 0, 0, 1, 50);
    compare("flatten,dense(24),relu,dropout(0.5),dense(5)", 2, 3, 4, 3, 33);
    compare("mlp:784-512-256-5", 784, 0, 0, 1, 64);
    printf("\n");
}

int main(int argc, char **argv)
{
    int need_gpu = argc > 1 && strcmp(argv[1], "--need-gpu") == 0;
    unsigned failures;
    CU_pSuite s;

    if (dml_nn_have_cuda() && dml_device_count(&g_gpus) != DML_OK) {
        fprintf(stderr, "test_gpu_layers: %s\n", dml_error_message());
        return 1;
    }
    if (need_gpu && g_gpus == 0) {
        printf("SKIP: no GPU visible to this process\n");
        return 77;
    }
    if (g_gpus > 0 && dml_device_select("cuda", 0, &g_gpu) != DML_OK) {
        fprintf(stderr, "test_gpu_layers: %s\n", dml_error_message());
        return 1;
    }
    printf("GPUs seen: %d%s\n", g_gpus,
           g_gpus ? "" : " (the comparison with the CPU path needs one)");
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("gpu layers", NULL, NULL);
    CU_add_test(s, "refusals: layers the GPU path lacks, no GPU", test_refusals);
    if (g_gpus > 0)
        CU_add_test(s, "GPU against CPU: training steps, evaluation", test_against_cpu);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
