/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_loader: the loader's promises, checked on every rank of a real MPI
 * job (run by test_loader.sh at 1 to 4 ranks):
 *  - each epoch visits every sample exactly once across ranks, in the order of
 *    the seeded global permutation, whatever the world size;
 *  - every sample arrives with its own features and label, converted right;
 *  - resuming from a saved state continues the same sequence, also on another
 *    world size;
 *  - a bad dataset stops every rank with the same message, and none hangs.
 *
 * Modes: create DIR | check DIR | save DIR STATE STEPS | resume DIR STATE | bad DIR
 */
#include "config.h"

#include "dml_io.h"
#include "dml_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define N 1037
#define SHARDS 4
#define NF 12
#define NC 5
#define B 16
#define SEED 42

static int rank, size, failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (failures++ < 20) {                                                                 \
                fprintf(stderr, "rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__);                \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static uint8_t feature(uint64_t id, uint64_t f)
{
    return (uint8_t)((id * 7 + f * 3) % 251);
}

static int do_create(const char *dir)
{
    dml_schema_t s = {DML_DTYPE_UINT8, 2, {3, 4, 0}, NC, NULL};
    dml_dataset_writer_t *w;
    dml_status_t st;
    uint32_t k;

    st = dml_dataset_writer_create(MPI_COMM_WORLD, dir, &s, SHARDS, 1, "test_loader", &w);
    if (st != DML_OK)
        return fprintf(stderr, "create: %s\n", dml_error_message()), 1;
    for (k = (uint32_t)rank; k < SHARDS; k += (uint32_t)size) {
        uint64_t a = (uint64_t)N * k / SHARDS, b = (uint64_t)N * (k + 1) / SHARDS, i, f;
        uint8_t *x = malloc((b - a) * NF);
        int32_t *y = malloc((b - a) * 4);
        uint64_t *id = malloc((b - a) * 8);
        for (i = a; i < b; i++) {
            for (f = 0; f < NF; f++)
                x[(i - a) * NF + f] = feature(i, f);
            y[i - a] = (int32_t)(i % NC);
            id[i - a] = i;
        }
        dml_dataset_writer_put(w, k, b - a, x, y, id);
        free(x);
        free(y);
        free(id);
    }
    st = dml_dataset_writer_commit(w);
    if (st != DML_OK)
        return fprintf(stderr, "commit: %s\n", dml_error_message()), 1;
    return 0;
}

/* Checks one batch on this rank and against the permutation globally. Returns
 * the crc of the gathered global batch (rank 0) for a sequence fingerprint. */
static uLong check_batch(const dml_batch_t *b, const dml_loader_config_t *cfg, uLong crc)
{
    static uint64_t perm[N], perm_epoch = UINT64_MAX;
    static dml_shuffle_t perm_mode;
    static uint64_t gathered[N];
    int counts[64], displs[64], n = (int)b->n, r;
    uint64_t k, f;

    for (k = 0; k < b->n; k++) {
        uint64_t id = b->id[k];
        CHECK(id < N, "sample id %llu out of range", (unsigned long long)id);
        if (id >= N)
            continue;
        CHECK(b->y[k] == (int32_t)(id % NC), "sample %llu has label %d", (unsigned long long)id,
              b->y[k]);
        for (f = 0; f < NF; f++)
            if (b->x[k * NF + f] != (float)feature(id, f)) {
                CHECK(0, "sample %llu feature %llu is %g, expected %u", (unsigned long long)id,
                      (unsigned long long)f, b->x[k * NF + f], feature(id, f));
                break;
            }
    }
    MPI_Allgather(&n, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
    displs[0] = 0;
    for (r = 1; r < size; r++)
        displs[r] = displs[r - 1] + counts[r - 1];
    CHECK((uint64_t)(displs[size - 1] + counts[size - 1]) == b->global_n,
          "ranks hold %d samples, global_n %llu", displs[size - 1] + counts[size - 1],
          (unsigned long long)b->global_n);
    for (r = 1; r < size; r++)
        CHECK(abs(counts[r] - counts[0]) <= 1, "unbalanced: rank 0 has %d, rank %d has %d",
              counts[0], r, counts[r]);
    MPI_Allgatherv(b->id, n, MPI_UINT64_T, gathered, counts, displs, MPI_UINT64_T, MPI_COMM_WORLD);
    if (perm_epoch != b->epoch || perm_mode != cfg->shuffle) {
        dml_loader_permutation(cfg->shuffle, cfg->seed, b->epoch, N, cfg->window, cfg->block, perm);
        perm_epoch = b->epoch;
        perm_mode = cfg->shuffle;
    }
    for (k = 0; k < b->global_n; k++)
        if (gathered[k] != perm[b->pos + k]) {
            CHECK(0, "epoch %llu position %llu holds sample %llu, the permutation says %llu",
                  (unsigned long long)b->epoch, (unsigned long long)(b->pos + k),
                  (unsigned long long)gathered[k], (unsigned long long)perm[b->pos + k]);
            break;
        }
    CHECK(b->epoch_end == (b->pos + b->global_n == N), "epoch_end flag wrong at pos %llu",
          (unsigned long long)b->pos);
    return crc32_z(crc, (const Bytef *)gathered, b->global_n * sizeof(uint64_t));
}

/* Runs from the loader's position to the end of epoch `until`. */
static uLong run_until(dml_loader_t *ld, const dml_loader_config_t *cfg, uint64_t until,
                       uint64_t max_steps, uLong crc)
{
    const dml_batch_t *b;
    uint64_t steps = 0;

    while (steps < max_steps) {
        dml_status_t st = dml_loader_next(ld, &b);
        CHECK(st == DML_OK, "next: %s", dml_error_message());
        if (st != DML_OK)
            break;
        crc = check_batch(b, cfg, crc);
        steps++;
        if (b->epoch_end && b->epoch == until)
            break;
    }
    return crc;
}

static void check_permutation_is_one(void)
{
    static uint64_t perm[N];
    static int seen[N];
    dml_shuffle_t m;
    uint64_t i;

    for (m = DML_SHUFFLE_NONE; m <= DML_SHUFFLE_WINDOW; m++) {
        memset(seen, 0, sizeof(seen));
        dml_loader_permutation(m, SEED, 3, N, 100, 16, perm);
        for (i = 0; i < N; i++)
            seen[perm[i]]++;
        for (i = 0; i < N; i++)
            CHECK(seen[i] == 1, "mode %d: sample %llu appears %d times", (int)m,
                  (unsigned long long)i, seen[i]);
    }
    /* Different epochs shuffle differently; the same epoch identically. */
    {
        static uint64_t a[N], b[N];
        dml_loader_permutation(DML_SHUFFLE_FULL, SEED, 0, N, 0, 0, a);
        dml_loader_permutation(DML_SHUFFLE_FULL, SEED, 1, N, 0, 0, b);
        CHECK(memcmp(a, b, sizeof(a)) != 0, "epochs 0 and 1 have the same order");
        dml_loader_permutation(DML_SHUFFLE_FULL, SEED, 1, N, 0, 0, a);
        CHECK(memcmp(a, b, sizeof(a)) == 0, "the same epoch gave two orders");
    }
}

static int do_check(const char *dir)
{
    static const struct {
        dml_shuffle_t shuffle;
        dml_cache_t cache;
        int prefetch;
        uint64_t budget; /* 1: too small for a copy per rank, so one per node */
    } variants[] = {
        {DML_SHUFFLE_NONE, DML_CACHE_OFF, 0, 0},  {DML_SHUFFLE_FULL, DML_CACHE_OFF, 3, 0},
        {DML_SHUFFLE_FULL, DML_CACHE_ON, 3, 0},   {DML_SHUFFLE_WINDOW, DML_CACHE_OFF, 2, 0},
        {DML_SHUFFLE_WINDOW, DML_CACHE_ON, 0, 0}, {DML_SHUFFLE_FULL, DML_CACHE_OFF, 0, 0},
        {DML_SHUFFLE_FULL, DML_CACHE_ON, 2, 1},
    };
    dml_dataset_t *ds;
    size_t v;

    check_permutation_is_one();
    if (dml_dataset_open(dir, &ds) != DML_OK)
        return fprintf(stderr, "open: %s\n", dml_error_message()), 1;
    for (v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        dml_loader_config_t cfg;
        dml_loader_t *ld;
        dml_loader_state_t state, bad;
        uLong whole = crc32(0, NULL, 0), resumed = crc32(0, NULL, 0);

        dml_loader_config_init(&cfg);
        cfg.batch = B;
        cfg.seed = SEED;
        cfg.shuffle = variants[v].shuffle;
        cfg.cache = variants[v].cache;
        cfg.prefetch = variants[v].prefetch;
        cfg.cache_budget = variants[v].budget;
        cfg.window = 100;
        cfg.block = 16;
        cfg.norm = DML_NORM_NONE;

        if (dml_loader_create(ds, MPI_COMM_WORLD, &cfg, &ld) != DML_OK) {
            CHECK(0, "create: %s", dml_error_message());
            continue;
        }
        CHECK(dml_loader_cached(ld) == (cfg.cache == DML_CACHE_ON), "cache state");
        CHECK(dml_loader_cache_shared(ld) == (cfg.cache == DML_CACHE_ON && cfg.cache_budget == 1),
              "a shared cache is used exactly when a copy per rank does not fit");
        CHECK(dml_loader_threaded(ld) == (cfg.prefetch > 0), "prefetch thread state");
        CHECK(dml_loader_steps_per_epoch(ld) == (N + (uint64_t)size * B - 1) / ((uint64_t)size * B),
              "steps per epoch");
        /* Two whole epochs, straight through. */
        whole = run_until(ld, &cfg, 1, 100000, whole);
        dml_loader_get_state(ld, &state);
        CHECK(state.epoch == 2 && state.cursor == 0, "state after two epochs: %llu/%llu",
              (unsigned long long)state.epoch, (unsigned long long)state.cursor);
        dml_loader_destroy(ld);

        /* The same two epochs, stopped after 5 steps and resumed in a new loader. */
        dml_loader_create(ds, MPI_COMM_WORLD, &cfg, &ld);
        resumed = run_until(ld, &cfg, 1, 5, resumed);
        dml_loader_get_state(ld, &state);
        CHECK(state.epoch == 0 && state.cursor == 5ull * B * (uint64_t)size,
              "state after 5 steps: epoch %llu cursor %llu", (unsigned long long)state.epoch,
              (unsigned long long)state.cursor);
        dml_loader_destroy(ld);
        dml_loader_create(ds, MPI_COMM_WORLD, &cfg, &ld);
        bad = state;
        bad.seed = 7;
        CHECK(dml_loader_set_state(ld, &bad) == DML_ERR_MISMATCH, "a state of another seed "
                                                                  "was accepted");
        CHECK(strstr(dml_error_message(), "seed 7") != NULL, "unclear: %s", dml_error_message());
        CHECK(dml_loader_set_state(ld, &state) == DML_OK, "set_state: %s", dml_error_message());
        resumed = run_until(ld, &cfg, 1, 100000, resumed);
        CHECK(resumed == whole, "variant %zu: resumed sequence differs from uninterrupted", v);
        dml_loader_destroy(ld);
        if (rank == 0)
            printf("variant %zu (shuffle %d cache %d prefetch %d): sequence %08lx\n", v,
                   (int)cfg.shuffle, (int)cfg.cache, cfg.prefetch, whole);
    }
    dml_dataset_close(ds);
    return 0;
}

static void base_cfg(dml_loader_config_t *cfg)
{
    dml_loader_config_init(cfg);
    cfg->batch = B;
    cfg->seed = SEED;
    cfg->norm = DML_NORM_NONE;
    cfg->cache = DML_CACHE_OFF;
}

static int do_save(const char *dir, const char *statefile, uint64_t steps)
{
    dml_loader_config_t cfg;
    dml_loader_state_t st;
    dml_dataset_t *ds;
    dml_loader_t *ld;

    base_cfg(&cfg);
    if (dml_dataset_open(dir, &ds) != DML_OK ||
        dml_loader_create(ds, MPI_COMM_WORLD, &cfg, &ld) != DML_OK)
        return fprintf(stderr, "save: %s\n", dml_error_message()), 1;
    run_until(ld, &cfg, 1, steps, 0);
    dml_loader_get_state(ld, &st);
    if (rank == 0) {
        FILE *fp = fopen(statefile, "w");
        fprintf(fp, "%llu %llu %llu\n", (unsigned long long)st.seed, (unsigned long long)st.epoch,
                (unsigned long long)st.cursor);
        fclose(fp);
        printf("saved at epoch %llu cursor %llu on %d ranks\n", (unsigned long long)st.epoch,
               (unsigned long long)st.cursor, size);
    }
    dml_loader_destroy(ld);
    dml_dataset_close(ds);
    return 0;
}

static int do_resume(const char *dir, const char *statefile)
{
    unsigned long long s, e, c;
    dml_loader_config_t cfg;
    dml_loader_state_t st;
    dml_dataset_t *ds;
    dml_loader_t *ld;
    FILE *fp = fopen(statefile, "r");

    if (fp == NULL || fscanf(fp, "%llu %llu %llu", &s, &e, &c) != 3)
        return fprintf(stderr, "resume: cannot read %s\n", statefile), 1;
    fclose(fp);
    st.seed = s;
    st.epoch = e;
    st.cursor = c;
    base_cfg(&cfg);
    if (dml_dataset_open(dir, &ds) != DML_OK ||
        dml_loader_create(ds, MPI_COMM_WORLD, &cfg, &ld) != DML_OK ||
        dml_loader_set_state(ld, &st) != DML_OK)
        return fprintf(stderr, "resume: %s\n", dml_error_message()), 1;
    /* check_batch compares every global batch with the permutation at its
     * position, so the rest of the epoch must be exactly the uninterrupted one. */
    {
        const dml_batch_t *b;
        CHECK(dml_loader_next(ld, &b) == DML_OK, "next");
        CHECK(b->epoch == e && b->pos == c, "resumed at epoch %llu pos %llu, saved %llu/%llu",
              (unsigned long long)b->epoch, (unsigned long long)b->pos, e, c);
        check_batch(b, &cfg, 0);
    }
    run_until(ld, &cfg, e + 1, 100000, 0);
    if (rank == 0)
        printf("resumed at epoch %llu cursor %llu on %d ranks\n", e, c, size);
    dml_loader_destroy(ld);
    dml_dataset_close(ds);
    return 0;
}

static int do_bad(const char *dir)
{
    dml_loader_config_t cfg;
    dml_dataset_t *ds;
    dml_loader_t *ld = NULL;
    dml_status_t st;
    uLong mine, *all;
    int r;

    base_cfg(&cfg);
    st = dml_mpi_agree(MPI_COMM_WORLD, dml_dataset_open(dir, &ds), NULL);
    if (st == DML_OK) {
        st = dml_loader_create(ds, MPI_COMM_WORLD, &cfg, &ld);
        if (st == DML_OK)
            dml_loader_destroy(ld);
        dml_dataset_close(ds);
    }
    /* Every rank must hold the same status and message. */
    mine =
        crc32(crc32(0, NULL, 0), (const Bytef *)dml_error_message(), strlen(dml_error_message()));
    mine ^= (uLong)(unsigned)st;
    all = malloc((size_t)size * sizeof(uLong));
    MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG, all, 1, MPI_UNSIGNED_LONG, MPI_COMM_WORLD);
    for (r = 0; r < size; r++)
        CHECK(all[r] == all[0], "rank %d ended with another message than rank 0", r);
    free(all);
    if (rank == 0)
        printf("status %d: %s\n", (int)st, st == DML_OK ? "ok" : dml_error_message());
    return st == DML_OK ? 0 : 3;
}

int main(int argc, char **argv)
{
    int provided, rc = 2, any;

    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (provided != MPI_THREAD_MULTIPLE && rank == 0)
        fprintf(stderr, "note: MPI gives thread level %d, not MULTIPLE\n", provided);
    if (argc >= 3 && strcmp(argv[1], "create") == 0)
        rc = do_create(argv[2]);
    else if (argc >= 3 && strcmp(argv[1], "check") == 0)
        rc = do_check(argv[2]);
    else if (argc >= 5 && strcmp(argv[1], "save") == 0)
        rc = do_save(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    else if (argc >= 4 && strcmp(argv[1], "resume") == 0)
        rc = do_resume(argv[2], argv[3]);
    else if (argc >= 3 && strcmp(argv[1], "bad") == 0)
        rc = do_bad(argv[2]);
    else if (rank == 0)
        fprintf(stderr, "usage: test_loader create|check|save|resume|bad DIR ...\n");
    MPI_Allreduce(&failures, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && any)
        fprintf(stderr, "%d checks failed\n", any);
    MPI_Finalize();
    return any ? 1 : rc;
}
